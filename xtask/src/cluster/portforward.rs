//! A local TCP port forwarded to a pod's port through the Kubernetes API
//! (`Api::<Pod>::portforward`, the same WebSocket `kubectl port-forward` uses).
//!
//! Every accepted connection gets its own forwarding stream, so clients that open
//! several connections (a sqlx pool, librdkafka) work. The listener stops when the
//! [`Forward`] is dropped.

use std::net::SocketAddr;

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running forward; dropping it stops listening (open connections end with it).
pub struct Forward {
    /// The local address it listens on.
    pub local: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on `local` (port 0: any free port) and forwards each connection to `port`
/// of the pod `pod`.
pub async fn forward(
    pods: Api<Pod>,
    pod: &str,
    port: u16,
    local: SocketAddr,
) -> anyhow::Result<Forward> {
    let listener = TcpListener::bind(local)
        .await
        .with_context(|| format!("listen on {local} to forward to pod {pod}:{port}"))?;
    let local = listener
        .local_addr()
        .context("read the forwarded address")?;
    let pod = pod.to_owned();
    let task = tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            let pods = pods.clone();
            let pod = pod.clone();
            tokio::spawn(async move {
                if let Err(error) = relay(&pods, &pod, port, connection).await {
                    eprintln!("port-forward to {pod}:{port}: {error:#}");
                }
            });
        }
    });
    Ok(Forward { local, task })
}

async fn relay(
    pods: &Api<Pod>,
    pod: &str,
    port: u16,
    mut connection: TcpStream,
) -> anyhow::Result<()> {
    let mut forwarder = pods
        .portforward(pod, &[port])
        .await
        .with_context(|| format!("open a port-forward to {pod}:{port}"))?;
    let mut upstream = forwarder
        .take_stream(port)
        .context("the port-forward has no stream for the port")?;
    // NB: an error here is the client or the pod closing the connection.
    let _ = tokio::io::copy_bidirectional(&mut connection, &mut upstream).await;
    drop(upstream);
    forwarder.join().await.context("finish the port-forward")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::cluster::verifier::{Expect, Reply, Scenario, Verifier};

    #[tokio::test]
    async fn each_connection_is_forwarded_to_the_pod_port_through_the_api() {
        let scenario = Scenario::new().then(
            Expect::get("/api/v1/namespaces/argocd/pods/flightdeck-git-5d9c7-abcde/portforward")
                .query("ports", "9418")
                .reply(Reply::EchoPort(9418)),
        );
        let (client, verifier) = Verifier::start(scenario);
        let pods: Api<Pod> = Api::namespaced(client, "argocd");
        let forward = forward(
            pods,
            "flightdeck-git-5d9c7-abcde",
            9418,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .expect("listening");
        let mut connection = TcpStream::connect(forward.local)
            .await
            .expect("connect to the local end");
        connection
            .write_all(b"0032git-upload-pack /flightdeck.git")
            .await
            .expect("write");
        let mut echoed = [0u8; 35];
        connection.read_exact(&mut echoed).await.expect("read back");
        assert_eq!(&echoed, b"0032git-upload-pack /flightdeck.git");
        drop(connection);
        drop(forward);
        verifier.finish();
    }
}
