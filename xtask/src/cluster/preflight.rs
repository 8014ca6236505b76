//! What `up` and `e2e --cluster` check before they create or change anything, so that a
//! machine that cannot run them gets one clear message with the fix and nothing half
//! made: the tools and the Docker daemon (as `doctor` checks them), the host ports the
//! cluster or the test listens on, and a cluster of our name that someone else made.

use std::net::{Ipv4Addr, TcpListener};

/// The host ports `up` needs when it creates the cluster, what uses each and where it is
/// set (`infrastructure/k3d/cluster.yaml`; a test keeps them in step).
pub const CLUSTER_PORTS: [(u16, &str); 2] = [
    (
        8080,
        "the UIs (ports[0] in infrastructure/k3d/cluster.yaml)",
    ),
    (
        6550,
        "the Kubernetes API (kubeAPI.hostPort in infrastructure/k3d/cluster.yaml)",
    ),
];

/// The host port `e2e --cluster` forwards Kafka's `host` listener to.
pub const E2E_KAFKA_PORT: (u16, &str) = (
    9094,
    "the port-forward to Kafka's `host` listener, which advertises localhost:9094 (infrastructure/k8s/kafka/cluster/kafka.yaml)",
);

/// Fails naming every port of `ports` that something already listens on on 127.0.0.1.
pub fn require_free_ports(ports: &[(u16, &str)]) -> anyhow::Result<()> {
    let taken: Vec<String> = ports
        .iter()
        .filter(|(port, _)| TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_err())
        .map(|(port, what)| {
            format!(
                "  port {port} on 127.0.0.1 is taken; it is for {what}.\n      fix: stop what listens there (`ss -ltnp 'sport = :{port}'` names it), or change the port where it is set"
            )
        })
        .collect();
    anyhow::ensure!(
        taken.is_empty(),
        "nothing was created: a port the cluster needs is in use:\n{}",
        taken.join("\n")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_named_with_its_use_and_the_fix() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
        let port = listener.local_addr().expect("its address").port();
        let error = require_free_ports(&[(port, "the test")]).expect_err("the port is taken");
        let message = error.to_string();
        assert!(
            message.contains(&format!(
                "port {port} on 127.0.0.1 is taken; it is for the test."
            )),
            "{message}"
        );
        assert!(
            message.contains(&format!("ss -ltnp 'sport = :{port}'")),
            "{message}"
        );
        drop(listener);
        require_free_ports(&[(port, "the test")]).expect("free again");
    }

    #[test]
    fn the_ports_are_the_ones_the_k3d_config_maps() {
        let text = std::fs::read_to_string(crate::project_root().join(super::super::CONFIG))
            .expect("cluster.yaml");
        let config: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
        assert_eq!(config["kubeAPI"]["hostPort"].as_str(), Some("6550"));
        assert_eq!(
            config["ports"][0]["port"].as_str(),
            Some("127.0.0.1:8080:80")
        );
        assert_eq!(CLUSTER_PORTS.map(|(port, _)| port), [8080, 6550]);
    }
}
