//! The dead-letter queue: invalid records go to `flights.dlq` unchanged, with headers
//! naming the reason and where the record came from.

use std::time::Duration;

use flight_model::{
    HEADER_DETAIL, HEADER_REASON, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;

use crate::sink::{backoff, sleep_unless_stopped};
use crate::{Config, Error, Result};

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
}

impl Dlq {
    /// Creates the producer (no network traffic yet).
    pub fn new(config: &Config) -> Result<Self> {
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
            .create()?;
        Ok(Self {
            producer,
            topic: config.dlq_topic.clone(),
        })
    }

    /// Sends every record and waits until the broker acknowledged all of them, retrying
    /// failed deliveries until they succeed or shutdown is requested.
    pub async fn send_all(
        &self,
        records: &[Rejected],
        stop: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        let mut pending: Vec<&Rejected> = records.iter().collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            let mut futures = Vec::with_capacity(pending.len());
            for r in &pending {
                futures.push((*r, self.enqueue(r).await));
            }
            let mut failed = Vec::new();
            for (r, delivery) in futures {
                match delivery {
                    Some(future) => match future.await {
                        Ok(Ok(_)) => {}
                        Ok(Err((error, _))) => {
                            tracing::warn!(%error, partition = r.partition, offset = r.offset, "dlq delivery failed");
                            failed.push(r);
                        }
                        Err(_) => failed.push(r),
                    },
                    None => failed.push(r),
                }
            }
            pending = failed;
            if !pending.is_empty() {
                if !sleep_unless_stopped(backoff(attempt), stop).await {
                    return Err(Error::Interrupted("the DLQ topic"));
                }
                attempt += 1;
            }
        }
        Ok(())
    }

    async fn enqueue(&self, r: &Rejected) -> Option<rdkafka::producer::DeliveryFuture> {
        let partition = r.partition.to_string();
        let offset = r.offset.to_string();
        let headers = OwnedHeaders::new()
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
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = &r.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &r.payload {
            record = record.payload(payload.as_slice());
        }
        // The local queue holds 100 000 records; when it is full, wait for room.
        for _ in 0..600 {
            match self.producer.send_result(record) {
                Ok(future) => return Some(future),
                Err((error, returned)) => {
                    tracing::debug!(%error, "dlq queue full, waiting");
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        None
    }
}
