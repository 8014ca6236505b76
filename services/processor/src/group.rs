//! The group monitor: every few seconds, the group's committed offsets against the end of
//! every partition of the topic, reported to [`Health`] and the lag gauges.
//!
//! NB: a client of its own that never subscribes: it reads the group's offsets without
//! joining the group, so it keeps working while the consumer is stuck or being replaced,
//! which is exactly when its answer matters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::health::{GroupSnapshot, Health};
use crate::metrics::{Metrics, PartitionLabel};
use crate::{Config, Result};

/// How often the monitor looks.
pub const INTERVAL: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the monitor task; it ends when `stop` turns true.
pub fn spawn(
    config: &Config,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .create()?;
    let client = Arc::new(client);
    let topic = config.topic.clone();
    tokio::spawn(async move {
        loop {
            let (c, t) = (client.clone(), topic.clone());
            let snapshot = tokio::task::spawn_blocking(move || look(&c, &t))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            if let Ok(snapshot) = &snapshot {
                for (partition, (lag, _)) in &snapshot.partitions {
                    metrics
                        .group_lag
                        .get_or_create(&PartitionLabel {
                            topic: topic.clone(),
                            partition: partition.to_string(),
                        })
                        .set(*lag);
                }
            }
            health.observed(snapshot, Instant::now());
            if !retry::sleep_unless_stopped(INTERVAL, &mut stop).await {
                return;
            }
        }
    });
    Ok(())
}

/// One look: every partition's end offset and the group's committed offset.
fn look(client: &BaseConsumer, topic: &str) -> Result<GroupSnapshot, String> {
    let metadata = client
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(|e| e.to_string())?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!("topic {topic} has no partitions (does it exist?)"));
    }
    let mut tpl = TopicPartitionList::new();
    let mut watermarks = BTreeMap::new();
    for &partition in &partitions {
        tpl.add_partition(topic, partition);
        let marks = client
            .fetch_watermarks(topic, partition, TIMEOUT)
            .map_err(|e| e.to_string())?;
        watermarks.insert(partition, marks);
    }
    let committed = client
        .committed_offsets(tpl, TIMEOUT)
        .map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for element in committed.elements() {
        let Some(&(low, high)) = watermarks.get(&element.partition()) else {
            continue;
        };
        let position = match element.offset() {
            Offset::Offset(o) => o.max(low),
            _ => low,
        };
        out.insert(element.partition(), ((high - position).max(0), position));
    }
    Ok(GroupSnapshot { partitions: out })
}
