//! Reaching the cluster's PostgreSQL and Kafka from the host: port-forwards made with
//! `kube`, and the processor's own database URL pointed through them.

use std::net::SocketAddr;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};

use super::{KAFKA_HOST_PORT, NAMESPACE};
use crate::cluster::portforward::{self, Forward};
use crate::pipeline::Endpoints;

/// Port-forwards to the Postgres primary and the Kafka broker; the endpoints through them.
pub async fn forward(client: &kube::Client) -> anyhow::Result<(Endpoints, Vec<Forward>)> {
    let first_pod = |namespace: &str, labels: &str| {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let labels = labels.to_owned();
        async move {
            let list = pods.list(&ListParams::default().labels(&labels)).await?;
            let name = list
                .items
                .into_iter()
                .find_map(|p| p.metadata.name)
                .with_context(|| format!("no running pod with labels {labels}"))?;
            anyhow::Ok((pods, name))
        }
    };
    let (pg_pods, primary) = first_pod(
        "database",
        "cnpg.io/cluster=flightdeck-pg,cnpg.io/instanceRole=primary",
    )
    .await?;
    let (kafka_pods, broker) = first_pod(
        "kafka",
        "strimzi.io/cluster=flightdeck,strimzi.io/broker-role=true",
    )
    .await?;
    let pg = portforward::forward(
        pg_pods,
        &primary,
        5432,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await?;
    let mut forwards = vec![];
    let local = SocketAddr::from(([127, 0, 0, 1], KAFKA_HOST_PORT));
    forwards.push(portforward::forward(kafka_pods.clone(), &broker, KAFKA_HOST_PORT, local).await.with_context(
        || format!("port {KAFKA_HOST_PORT} must be free: the broker advertises localhost:{KAFKA_HOST_PORT}"),
    )?);
    // `localhost` may resolve to ::1 first; without IPv6 this one is simply absent.
    let local_v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, KAFKA_HOST_PORT));
    if let Ok(v6) = portforward::forward(kafka_pods, &broker, KAFKA_HOST_PORT, local_v6).await {
        forwards.push(v6);
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret = secrets
        .get("flightdeck-db")
        .await
        .context("read the processor's database secret")?;
    let uri = secret
        .data
        .as_ref()
        .and_then(|d| d.get("uri"))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .context("the secret flightdeck-db has no `uri`")?;
    let database_url = through(&uri, pg.local)?;
    forwards.push(pg);
    let at = Endpoints {
        database_url,
        bootstrap_servers: format!("localhost:{KAFKA_HOST_PORT}"),
    };
    Ok((at, forwards))
}

/// `uri` with its host and port replaced by `local`.
fn through(uri: &str, local: SocketAddr) -> anyhow::Result<String> {
    let at = uri
        .rfind('@')
        .context("the database URI has no credentials")?;
    let path = uri[at..].find('/').map_or(uri.len(), |p| at + p);
    Ok(format!("{}@{local}{}", &uri[..at], &uri[path..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_uri_is_rewritten_to_the_forwarded_port() {
        let uri = "postgresql://flightdeck:s3cr@t@flightdeck-pg-rw.database.svc.cluster.local:5432/flightdeck";
        let local = SocketAddr::from(([127, 0, 0, 1], 41234));
        assert_eq!(
            through(uri, local).expect("a URI with credentials"),
            "postgresql://flightdeck:s3cr@t@127.0.0.1:41234/flightdeck"
        );
    }
}
