//! The dead-letter queue: rejected records go to `flights.dlq` unchanged, with headers
//! naming the reason and where the record came from.
//!
//! The DLQ always accepts. Its producer's `message.max.bytes` is
//! [`Config::dlq_max_message_bytes`] (8 MiB by default; the topic is created with at least
//! that), so any record `flights` accepted fits. A record that still does not fit, because
//! the configured limit or the broker's is smaller, is stored with its value truncated and
//! the headers `flightdeck.truncated`, `flightdeck.original.size` saying so (besides the
//! source topic, partition and offset every DLQ record carries). Any other failure is
//! retried with backoff; when sends keep failing for [`Config::dlq_give_up_after`] the
//! processor stops with an error naming the topic, and the batch is never committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flight_model::{
    HEADER_DETAIL, HEADER_REASON, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
};
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use retry::{Backoff, Class};
use tokio::sync::watch;

use crate::health::Health;
use crate::metrics::{FailureLabel, Metrics};
use crate::{Config, Error, Result};

/// DLQ header set to `true` on a record whose value was cut to fit.
pub const HEADER_TRUNCATED: &str = "flightdeck.truncated";
/// DLQ header with the original value's size in bytes, on a truncated record.
pub const HEADER_ORIGINAL_SIZE: &str = "flightdeck.original.size";
/// Room kept for the key, the headers and the record's framing.
const OVERHEAD: usize = 16 * 1024;

/// One record to dead-letter.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original value, unchanged.
    pub payload: Option<Vec<u8>>,
    /// The reason code.
    pub reason: &'static str,
    /// What exactly is wrong.
    pub detail: String,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// A producer for the DLQ topic.
pub struct Dlq {
    producer: FutureProducer,
    topic: String,
    max_bytes: usize,
    give_up_after: Duration,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl Dlq {
    /// Creates the producer (no network traffic yet).
    pub fn new(config: &Config, metrics: Arc<Metrics>, health: Arc<Health>) -> Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            // Retries never duplicate or reorder a DLQ record.
            .set("enable.idempotence", "true")
            // Durable means acknowledged by every in-sync replica: only then are the
            // source offsets committed.
            .set("acks", "all")
            // Fail a delivery after 30 s so a dead broker surfaces as a retried error
            // instead of a silent stall.
            .set("message.timeout.ms", "30000")
            // As large as the DLQ topic accepts (default 1 MB would refuse the very
            // records most likely to be rejected: the huge ones).
            .set(
                "message.max.bytes",
                config.dlq_max_message_bytes.to_string(),
            )
            .create()?;
        Ok(Self {
            producer,
            topic: config.dlq_topic.clone(),
            max_bytes: config.dlq_max_message_bytes,
            give_up_after: config.dlq_give_up_after(),
            metrics,
            health,
        })
    }

    /// Sends every record and waits until the broker acknowledged all of them. Transient
    /// failures are retried with backoff for up to the give-up time; a record too large is
    /// truncated further and sent again.
    pub async fn send_all(
        &self,
        records: &[Rejected],
        stop: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        // Per record: the most value bytes it may carry.
        let mut pending: Vec<(&Rejected, usize)> = records
            .iter()
            .map(|r| (r, self.max_bytes.saturating_sub(OVERHEAD)))
            .collect();
        let started = Instant::now();
        let mut attempt = 0;
        while !pending.is_empty() {
            let mut deliveries = Vec::with_capacity(pending.len());
            for &(r, limit) in &pending {
                deliveries.push((r, limit, self.enqueue(r, limit).await));
            }
            let mut failed = Vec::new();
            let mut last_error = None;
            for (r, limit, delivery) in deliveries {
                let error = match delivery {
                    Ok(future) => match future.await {
                        Ok(Ok(_)) => continue,
                        Ok(Err((error, _))) => error,
                        Err(_) => KafkaError::Canceled,
                    },
                    Err(error) => error,
                };
                let class = retry::kafka(&error);
                self.metrics
                    .failures
                    .get_or_create(&FailureLabel::new("dlq", class))
                    .inc();
                tracing::warn!(%error, class = class.as_str(), partition = r.partition, offset = r.offset, "dlq delivery failed");
                match class {
                    // Too large for the broker even so: halve what the value may keep.
                    Class::Permanent => failed.push((r, (limit / 2).max(1024))),
                    Class::Transient => failed.push((r, limit)),
                }
                last_error = Some(error);
            }
            pending = failed;
            if let Some(error) = last_error {
                let waited = started.elapsed();
                if waited >= self.give_up_after {
                    self.health.retrying(None);
                    return Err(Error::DlqUnavailable {
                        topic: self.topic.clone(),
                        waited,
                        error,
                    });
                }
                attempt += 1;
                self.health.retrying(Some(format!(
                    "sending {} record(s) to {}: {error}",
                    pending.len(),
                    self.topic
                )));
                if !retry::sleep_unless_stopped(Backoff::SERVICE.random_delay(attempt), stop).await
                {
                    return Err(Error::Interrupted("the DLQ topic"));
                }
            }
        }
        self.health.retrying(None);
        Ok(())
    }

    async fn enqueue(
        &self,
        r: &Rejected,
        limit: usize,
    ) -> Result<rdkafka::producer::DeliveryFuture, KafkaError> {
        let partition = r.partition.to_string();
        let offset = r.offset.to_string();
        let value = r.payload.as_deref();
        let original_size = value.map_or(0, <[u8]>::len).to_string();
        let truncated = value.is_some_and(|v| v.len() > limit);
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: HEADER_REASON,
                value: Some(r.reason),
            })
            .insert(Header {
                key: HEADER_DETAIL,
                value: Some(&r.detail),
            })
            .insert(Header {
                key: HEADER_SOURCE_TOPIC,
                value: Some(&r.topic),
            })
            .insert(Header {
                key: HEADER_SOURCE_PARTITION,
                value: Some(&partition),
            })
            .insert(Header {
                key: HEADER_SOURCE_OFFSET,
                value: Some(&offset),
            });
        if truncated {
            headers = headers
                .insert(Header {
                    key: HEADER_TRUNCATED,
                    value: Some("true"),
                })
                .insert(Header {
                    key: HEADER_ORIGINAL_SIZE,
                    value: Some(&original_size),
                });
            self.metrics.dlq_truncated.inc();
            tracing::warn!(
                original_size,
                kept = limit,
                partition = r.partition,
                offset = r.offset,
                "dlq record too large: storing it truncated"
            );
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = &r.key {
            // A key is never over a few bytes in `flights`, but a poison record's could be.
            record = record.key(&key[..key.len().min(OVERHEAD / 4)]);
        }
        if let Some(value) = value {
            record = record.payload(&value[..value.len().min(limit)]);
        }
        // The local queue holds 100 000 records; when it is full, wait for room.
        loop {
            match self.producer.send_result(record) {
                Ok(future) => return Ok(future),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
}
