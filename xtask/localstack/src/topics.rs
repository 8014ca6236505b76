//! Creating the flightdeck topics on a broker.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

/// Partitions of the `flights` topic: one per processor replica at most.
pub const FLIGHTS_PARTITIONS: i32 = 3;

/// Creates `flights` (3 partitions) and `flights.dlq` (1 partition) unless they exist.
pub async fn create_flightdeck_topics(bootstrap_servers: &str) -> anyhow::Result<()> {
    create_topics(
        bootstrap_servers,
        &[("flights", FLIGHTS_PARTITIONS), ("flights.dlq", 1)],
    )
    .await
}

/// Creates each `(name, partitions)` topic with replication factor 1, keeping existing ones.
pub async fn create_topics(bootstrap_servers: &str, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .create()
        .context("create a Kafka admin client")?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    // A broker that has just opened its port may not answer admin requests yet.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match admin.create_topics(&new, &options).await {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((topic, code)) => {
                            bail!("create topic {topic} on {bootstrap_servers}: {code}")
                        }
                    }
                }
                return Ok(());
            }
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(%e, "broker not ready for admin requests yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("create topics on {bootstrap_servers}"));
            }
        }
    }
}
