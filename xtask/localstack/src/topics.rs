//! Creating the flightdeck topics on a broker.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

/// Partitions of the `flights` topic: one per processor replica at most.
pub const FLIGHTS_PARTITIONS: i32 = 3;
/// `max.message.bytes` of `flights`: Kafka's default, spelled out because the DLQ's must
/// be at least this.
pub const FLIGHTS_MAX_MESSAGE_BYTES: usize = 1_048_588;
/// `max.message.bytes` of `flights.dlq`: the processor's default `DLQ_MAX_MESSAGE_BYTES`
/// (8 MiB), so every record `flights` accepted can be dead-lettered with its headers.
pub const DLQ_MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Creates `flights` (3 partitions) and `flights.dlq` (1 partition, a larger record
/// limit) unless they exist.
pub async fn create_flightdeck_topics(bootstrap_servers: &str) -> anyhow::Result<()> {
    let flights = FLIGHTS_MAX_MESSAGE_BYTES.to_string();
    let dlq = DLQ_MAX_MESSAGE_BYTES.to_string();
    create_topics_with(
        bootstrap_servers,
        &[
            (
                "flights",
                FLIGHTS_PARTITIONS,
                &[("max.message.bytes", &flights)],
            ),
            ("flights.dlq", 1, &[("max.message.bytes", &dlq)]),
        ],
    )
    .await
}

/// Creates each `(name, partitions)` topic with replication factor 1, keeping existing ones.
pub async fn create_topics(bootstrap_servers: &str, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    let topics: Vec<TopicSpec<'_>> = topics
        .iter()
        .map(|&(name, partitions)| (name, partitions, &[][..]))
        .collect();
    create_topics_with(bootstrap_servers, &topics).await
}

/// One topic to create: name, partitions, and topic configs.
pub type TopicSpec<'a> = (&'a str, i32, &'a [(&'a str, &'a str)]);

/// Creates each topic with replication factor 1 and its configs, keeping existing ones.
pub async fn create_topics_with(
    bootstrap_servers: &str,
    topics: &[TopicSpec<'_>],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .create()
        .context("create a Kafka admin client")?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions, configs)| {
            configs.iter().fold(
                NewTopic::new(name, *partitions, TopicReplication::Fixed(1)),
                |topic, (key, value)| topic.set(key, value),
            )
        })
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
