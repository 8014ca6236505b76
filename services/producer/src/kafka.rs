//! The Kafka side: a librdkafka `FutureProducer` writing [`FlightRecord`]s to the
//! `flights` topic, key `icao24`, value [`FlightRecord::to_json`].
//!
//! Guarantee: [`FlightProducer::produce`] returns only once the broker acknowledged every
//! record (`acks=all`), or fails naming how many it did not. With idempotence on,
//! librdkafka's own retries add no duplicates; a replay or a restart can still produce a
//! record twice, which the processor's idempotent table absorbs (at least once).
//!
//! NB: a record is given up after `message.timeout.ms` (60 s), not never: the live loop
//! then produces the *whole snapshot* again, with backoff, until every record is
//! acknowledged (see [`crate::live`]). That was chosen over an infinite timeout because a
//! failed attempt is visible (a log line, a metric, `/readyz`), because a librdkafka
//! instance left in a fatal state by a broker that lost its idempotence state can be
//! replaced between attempts, and because the keys `(icao24, time_position)` make the
//! records already acknowledged by an earlier attempt land once in the table.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use flight_model::FlightRecord;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, ClientContext};
use tracing::{debug, info, warn};

use crate::{Error, KafkaCause, Result};
use ::retry::Backoff;

/// How long one metadata request may take when checking that the broker is reachable.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits between broker reachability checks.
const BROKER_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(10),
};
/// How long [`FlightProducer::flush`] waits for records still in librdkafka's queue.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a record may wait for its acknowledgement unless said otherwise.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The librdkafka settings of the producer.
pub fn client_config(bootstrap_servers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap_servers)
        // Names this client in broker logs and metrics.
        .set("client.id", "flightdeck-producer")
        // librdkafka retries failed sends by itself; idempotence makes those retries
        // neither duplicate nor reorder records within a partition.
        .set("enable.idempotence", "true")
        // A record counts as delivered only once every in-sync replica has it. Implied
        // by idempotence; spelled out because the delivery guarantee rests on it.
        .set("acks", "all")
        // A snapshot (thousands of records) is produced in one burst: wait up to 20 ms
        // to fill batches (default 5 ms); the poll interval is seconds, so this is free.
        .set("linger.ms", "20")
        // Give up on a record after 60 s instead of the default 5 min, so a replay
        // against a dead broker fails within minutes rather than hanging.
        .set("message.timeout.ms", "60000");
    config
}

/// Routes librdkafka's own logs and errors into `tracing`, without the flood.
///
/// NB: while no broker answers, librdkafka reports the failed connection on every
/// reconnect, many times a second, at error level. The producer reports that itself,
/// once per attempt with the bootstrap servers ([`FlightProducer::wait_for_broker`]),
/// or as failed deliveries, so those reports go to `debug` and everything else to `warn`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogContext;

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let serious = matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        );
        if serious && !is_connection_noise(facility, message) {
            warn!(target: "librdkafka", facility, "{message}");
        } else {
            debug!(target: "librdkafka", facility, "{message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown) => {
                debug!(target: "librdkafka", %error, reason, "broker connection failed");
            }
            _ => warn!(target: "librdkafka", %error, reason, "librdkafka error"),
        }
    }
}

fn is_connection_noise(facility: &str, message: &str) -> bool {
    facility == "FAIL" || message.contains("Connection refused") || message.contains("Connect to")
}

/// A producer for the flights topic. Cheap to share by reference.
pub struct FlightProducer {
    producer: FutureProducer<LogContext>,
    topic: String,
    bootstrap_servers: String,
}

impl std::fmt::Debug for FlightProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightProducer")
            .field("topic", &self.topic)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

impl FlightProducer {
    /// Creates the producer; librdkafka connects in the background.
    pub fn new(bootstrap_servers: &str, topic: &str) -> Result<Self> {
        Self::with_delivery_timeout(bootstrap_servers, topic, DELIVERY_TIMEOUT)
    }

    /// [`Self::new`] giving up on a record after `timeout` instead of 60 s.
    pub fn with_delivery_timeout(
        bootstrap_servers: &str,
        topic: &str,
        timeout: Duration,
    ) -> Result<Self> {
        let producer = client_config(bootstrap_servers)
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .create_with_context(LogContext)
            .map_err(|error| Error::CreateProducer(KafkaCause(error)))?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            bootstrap_servers: bootstrap_servers.to_owned(),
        })
    }

    /// Waits until a broker answers a metadata request, retrying with backoff and
    /// logging each failed attempt; with `give_up_after` it fails once that much time
    /// has passed, else it tries for ever.
    pub async fn wait_for_broker(&self, give_up_after: Option<Duration>) -> Result<()> {
        let started = Instant::now();
        let mut attempt = 0_u32;
        loop {
            attempt = attempt.saturating_add(1);
            // The last attempt ends when the time allowed is up, not a timeout later.
            let timeout = give_up_after.map_or(METADATA_TIMEOUT, |limit| {
                METADATA_TIMEOUT
                    .min(limit.saturating_sub(started.elapsed()))
                    .max(Duration::from_millis(100))
            });
            let error = match self.fetch_metadata(timeout).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let waited = started.elapsed();
            let mut retry_in = BROKER_BACKOFF.delay(attempt, fastrand::f64());
            if let Some(limit) = give_up_after {
                if waited >= limit {
                    return Err(Error::BrokerUnreachable {
                        bootstrap_servers: self.bootstrap_servers.clone(),
                        waited,
                        source: KafkaCause(error),
                    });
                }
                retry_in = retry_in.min(limit - waited);
            }
            warn!(
                bootstrap_servers = %self.bootstrap_servers,
                attempt,
                retry_in_secs = retry_in.as_secs_f64(),
                error = %crate::error_chain(&error),
                "Kafka broker unreachable: retrying"
            );
            tokio::time::sleep(retry_in).await;
        }
    }

    async fn fetch_metadata(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        // NB: librdkafka's metadata call blocks its thread for up to `timeout`.
        let metadata = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(Some(&topic), timeout)
        })
        .await
        .map_err(|_| KafkaError::MetadataFetch(RDKafkaErrorCode::Fail))??;
        match metadata.topics().iter().find(|t| t.name() == self.topic) {
            Some(topic) if topic.error().is_none() => info!(
                bootstrap_servers = %self.bootstrap_servers,
                topic = %self.topic,
                partitions = topic.partitions().len(),
                "connected to Kafka"
            ),
            _ => warn!(
                bootstrap_servers = %self.bootstrap_servers,
                topic = %self.topic,
                "connected to Kafka, but the topic does not exist yet: records wait for it \
                 until message.timeout.ms (60 s)"
            ),
        }
        Ok(())
    }

    /// Produces `records` in order, all in flight at once, and returns how many the
    /// broker acknowledged once every one is settled. Any failure is an error.
    pub async fn produce<'a>(
        &self,
        records: impl IntoIterator<Item = &'a FlightRecord>,
    ) -> Result<usize> {
        let mut pending: VecDeque<(usize, DeliveryFuture)> = VecDeque::new();
        let mut tally = Tally::default();
        for (position, record) in records.into_iter().enumerate() {
            let value = record.to_json();
            let mut next = FutureRecord::to(&self.topic)
                .key(record.icao24.as_bytes())
                .payload(&value);
            loop {
                match self.producer.send_result(next) {
                    Ok(delivery) => {
                        pending.push_back((position, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // librdkafka's local queue is full: wait for the oldest record
                        // in flight to settle, which makes room, then try again.
                        next = back;
                        match pending.pop_front() {
                            Some((at, delivery)) => tally.settle(at, delivery.await),
                            None => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    Err((error, _)) => {
                        tally.fail(position, error);
                        break;
                    }
                }
            }
        }
        for (at, delivery) in pending {
            tally.settle(at, delivery.await);
        }
        tally.into_result()
    }

    /// librdkafka's fatal error, when this instance can no longer produce (an idempotent
    /// producer whose sequence state the broker lost): the caller makes a new one.
    pub fn fatal_error(&self) -> Option<String> {
        self.producer
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code:?}: {reason}"))
    }

    /// Whether a broker answers a metadata request for the topic within `timeout`.
    pub async fn reachable(&self, timeout: Duration) -> Result<(), String> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
    }

    /// Waits for anything still queued in librdkafka (nothing, after [`Self::produce`]).
    pub async fn flush(&self) -> Result<()> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(FLUSH_TIMEOUT))
            .await
            .unwrap_or(Err(KafkaError::Flush(RDKafkaErrorCode::Fail)))
            .map_err(|error| Error::Flush {
                queued: self.producer.in_flight_count(),
                source: KafkaCause(error),
            })
    }
}

/// Delivery results of one [`FlightProducer::produce`] call.
#[derive(Debug, Default)]
struct Tally {
    acknowledged: usize,
    failed: usize,
    refused: Vec<usize>,
    first_error: Option<KafkaError>,
}

impl Tally {
    fn settle(&mut self, at: usize, delivery: <DeliveryFuture as std::future::Future>::Output) {
        match delivery {
            Ok(Ok(_)) => self.acknowledged += 1,
            Ok(Err((error, _message))) => self.fail(at, error),
            // The producer was dropped before the record settled.
            Err(_canceled) => self.fail(at, KafkaError::Canceled),
        }
    }

    fn fail(&mut self, at: usize, error: KafkaError) {
        self.failed += 1;
        // The one retry policy decides: a record too large is refused for good.
        if ::retry::kafka(&error) == ::retry::Class::Permanent {
            self.refused.push(at);
        }
        self.first_error.get_or_insert(error);
    }

    fn into_result(self) -> Result<usize> {
        match self.first_error {
            None => Ok(self.acknowledged),
            Some(first) => Err(Error::Delivery {
                failed: self.failed,
                total: self.failed + self.acknowledged,
                refused: self.refused,
                first: KafkaCause(first),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_is_idempotent_and_waits_for_all_replicas() {
        let config = client_config("127.0.0.1:9092");
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_an_error_naming_the_bootstrap_servers() {
        // Port 1 on loopback: nothing listens there, and no packet leaves the machine.
        let producer = FlightProducer::new("127.0.0.1:1", "flights").expect("producer");
        let err = producer
            .wait_for_broker(Some(Duration::from_secs(2)))
            .await
            .expect_err("nothing listens on port 1");
        assert!(matches!(err, Error::BrokerUnreachable { .. }), "{err:?}");
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    }

    #[test]
    fn a_tally_with_a_failure_is_an_error_counting_every_record() {
        let mut tally = Tally {
            acknowledged: 3,
            ..Tally::default()
        };
        tally.fail(0, KafkaError::Canceled);
        tally.fail(
            1,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        );
        let err = tally.into_result().expect_err("two failed");
        assert!(
            matches!(&err, Error::Delivery { refused, .. } if refused == &[1]),
            "only the record too large is refused for good: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            "2 of 5 records were not acknowledged by the Kafka broker"
        );
    }
}
