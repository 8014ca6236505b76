//! The consume pipeline: a receive thread polls, decodes and validates records into the
//! next batch while the writer writes the current one; offsets are committed
//! asynchronously once a batch is durable.
//!
//! ```text
//! receive thread ──(the next batch, handed over the moment the writer is free)──► writer
//!   poll, decode, validate                                        COPY into flight_data,
//!   rebalances, commits ◄──(durable offsets, via the ledger)─────  DLQ sends
//! ```
//!
//! Offsets are committed only after the batch's rows are committed in PostgreSQL and its
//! DLQ records are acknowledged (see the crate docs for the guarantee this gives), in order
//! per partition, and only for partitions this consumer still holds ([`ledger`]). The
//! writer retries transient failures and isolates the records PostgreSQL refuses
//! ([`write`]); batching is natural ([`receive`]).
//!
//! The member is static when `GROUP_INSTANCE_ID` is set, and a watchdog replaces the
//! consumer when it sits idle while the group's work waits (see [`crate::health`]).

mod batch;
pub mod ledger;
mod receive;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use retry::Backoff;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};

use crate::dlq::Dlq;
use crate::health::Health;
use crate::metrics::{Metrics, PartitionLabel};
use crate::{Config, Error, Result};
use ledger::Ledger;
pub use write::BatchOutcome;

/// How long the broker keeps a silent member's partitions. NB: 30 s instead of
/// librdkafka's 45 s: a static member restarted under its own name gets them back at
/// once anyway, so this only bounds how long the partitions of a member that never comes
/// back (a pod replaced under a new name) sit idle.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the member tells the broker it is alive: a tenth of the session, so a
/// rebalance is noticed within seconds and a few lost heartbeats never expire a session.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// Longest time between two polls before the member is considered stuck and leaves the
/// group. NB: 5 min, longer than a PostgreSQL restart or outage the batch in hand is
/// retried through, so that batch is committed by the member that wrote it; a processor
/// stuck longer than that hands its partitions to the others.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);
/// How often the watchdog looks at [`Health`].
const WATCHDOG: Duration = Duration::from_secs(1);

/// Logs rebalances, reports them to [`Health`] and the [`Ledger`], hands commit results
/// to the ledger, and turns librdkafka's statistics into the consumer-lag gauge.
pub struct Context {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    ledger: Arc<Ledger>,
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                // librdkafka reports partition -1 (internal) and -1 lag when unknown.
                if partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .get_or_create(&PartitionLabel {
                            topic: topic.clone(),
                            partition: partition.to_string(),
                        })
                        .set(p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            // The broker being away is reported by the monitor and /readyz.
            Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown) => {
                tracing::debug!(%error, reason, "kafka connection failed")
            }
            _ => tracing::warn!(%error, reason, "kafka client error"),
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // What is durable of them is committed while they are still ours; batches of
            // theirs still in the pipeline are written but never committed.
            self.ledger.revoking(consumer, &ids(tpl));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.ledger.assigned(&ids(tpl));
                self.health.assigned(&ids(tpl));
                tracing::info!(partitions = ?names(tpl), held = ?self.health.held(), "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                self.health.revoked(&ids(tpl));
                tracing::info!(partitions = ?names(tpl), held = ?self.health.held(), "partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
        self.metrics
            .partitions_held
            .set(self.health.held().len() as i64);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.ledger.committed(result, offsets);
    }
}

fn ids(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

fn names(tpl: &TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect()
}

/// The consumer type the processor uses: polled by the receive thread.
pub type LoggedConsumer = BaseConsumer<Context>;

/// The consumer's librdkafka settings; `static_member` uses `GROUP_INSTANCE_ID` when set.
pub fn client_config(config: &Config, static_member: bool) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", &config.group_id)
        // Offsets are committed by hand, after the batch is durable.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group starts at the beginning of the topic: nothing produced is skipped.
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            SESSION_TIMEOUT.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            HEARTBEAT_INTERVAL.as_millis().to_string(),
        )
        .set(
            "max.poll.interval.ms",
            MAX_POLL_INTERVAL.as_millis().to_string(),
        )
        // Statistics every 5 s feed the consumer-lag gauge.
        .set("statistics.interval.ms", "5000");
    fetch_settings(&mut c);
    if let Some(id) = config.group_instance_id.as_ref().filter(|_| static_member) {
        // Static membership (KIP-345): a restarted member with this id takes its old
        // place, partitions included, without a rebalance or a session timeout.
        c.set("group.instance.id", id);
    }
    c
}

/// How much the consumer fetches and keeps ahead of the pipeline. The bench's
/// consume-only client uses the same, so the ceiling it measures is this consumer's.
pub fn fetch_settings(c: &mut ClientConfig) -> &mut ClientConfig {
    // How long the broker may hold a fetch while it has less than `fetch.min.bytes` (1)
    // to send. NB: tansu 0.6 holds every fetch this long (half of it from 250 ms up),
    // data or not, so this is the floor of produce → visible latency: librdkafka's 500 ms
    // made every fetch take 250 ms. A broker with nothing new answers 40 times a second.
    c.set("fetch.wait.max.ms", "25")
        // The most one fetch response may carry, over all partitions, and per partition.
        // NB: smaller than librdkafka's 50 MiB: a response is held in memory whole until
        // its last record is polled. 1 MiB per partition is `flights`' largest record;
        // a larger one still comes through (KIP-74), alone.
        .set("fetch.max.bytes", (4 << 20).to_string())
        .set("max.partition.fetch.bytes", (1 << 20).to_string())
        // The prefetch queue: librdkafka fetches ahead until it holds this many records
        // per partition or this many KiB in all. NB: the default (100,000 records, 64 MiB)
        // filled while a batch was written and was most of the processor's 95 MiB peak;
        // 8 MiB is about 20,000 real records, four batches at the default `BATCH_SIZE`,
        // enough to keep the receive thread busy while the broker answers the next fetch.
        .set("queued.min.messages", "10000")
        .set("queued.max.messages.kbytes", "8192")
        // How long a partition waits for its next fetch once the queue holds that much.
        // NB: librdkafka's 1 s is made for queues ten times as deep: with these, every
        // fetch of a fast partition stalled it for a second.
        .set("fetch.queue.backoff.ms", "20")
}

/// Creates the consumer, waits until the broker answers (retrying with backoff and saying
/// plainly which servers are unreachable), and subscribes.
pub async fn connect(
    config: &Config,
    static_member: bool,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: &mut watch::Receiver<bool>,
) -> Result<Arc<LoggedConsumer>> {
    let ledger = Arc::new(Ledger::new(&config.topic));
    connect_with(config, static_member, ledger, metrics, health, stop).await
}

/// [`connect`], reporting to `ledger` (a rejoin keeps the one it had).
async fn connect_with(
    config: &Config,
    static_member: bool,
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: &mut watch::Receiver<bool>,
) -> Result<Arc<LoggedConsumer>> {
    let consumer: LoggedConsumer =
        client_config(config, static_member).create_with_context(Context {
            metrics,
            health,
            ledger,
        })?;
    let consumer = Arc::new(consumer);
    let mut attempt = 0;
    loop {
        let probe = consumer.clone();
        let topic = config.topic.clone();
        let result = tokio::task::spawn_blocking(move || {
            probe
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .map(|_| ())
        })
        .await
        .unwrap_or(Err(KafkaError::Canceled));
        match result {
            Ok(()) => break,
            Err(error) => {
                attempt += 1;
                let delay = Backoff::SERVICE.random_delay(attempt);
                tracing::warn!(
                    bootstrap_servers = config.bootstrap_servers,
                    %error,
                    retry_in = ?delay,
                    "kafka unreachable"
                );
                if !retry::sleep_unless_stopped(delay, stop).await {
                    return Err(Error::Interrupted("kafka"));
                }
            }
        }
    }
    consumer.subscribe(&[&config.topic])?;
    Ok(consumer)
}

/// The running pipeline.
pub struct Pipeline {
    /// The configuration (to create a fresh consumer when rejoining).
    pub config: Config,
    /// DLQ producer.
    pub dlq: Dlq,
    /// Database pool.
    pub pool: PgPool,
    /// Metrics to update per batch.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` reports.
    pub health: Arc<Health>,
}

impl Pipeline {
    /// Consumes until `stop` turns true, then writes the batches in hand and commits
    /// their offsets before it returns.
    pub async fn run(
        self,
        consumer: Arc<LoggedConsumer>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let ledger = consumer.context().ledger.clone();
        // NB: capacity 1, and the receive thread only sends when the writer said it is
        // free: one batch being written, one being gathered, nothing queued between.
        let (batches, to_write) = mpsc::channel(1);
        let (idle, from_writer) = std::sync::mpsc::channel();
        let receiver = receive::Receiver {
            config: self.config.clone(),
            ledger: ledger.clone(),
            health: self.health.clone(),
            metrics: self.metrics.clone(),
            runtime: tokio::runtime::Handle::current(),
            stop: stop.clone(),
            batches,
            idle: from_writer,
        };
        let receiving = std::thread::Builder::new()
            .name("receive".into())
            .spawn(move || receiver.run(consumer))
            .context("start the receive thread")?;
        let writer = write::Writer {
            dlq: self.dlq,
            pool: self.pool,
            ledger: ledger.clone(),
            metrics: self.metrics,
            health: self.health,
        };
        let written = writer.run(to_write, idle, stop).await;
        let received = tokio::task::spawn_blocking(move || receiving.join())
            .await
            .context("join the receive thread")?;
        let consumer = match received {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("the receive thread panicked"),
        };
        // Nobody polls any more, so no rebalance can come between this commit and its
        // partitions. Closing the consumer waits for the broker: off the async threads.
        let committed = tokio::task::spawn_blocking(move || {
            let committed = ledger.commit_now(&consumer);
            drop(consumer);
            committed
        })
        .await
        .context("commit the last offsets")?;
        written?;
        match committed {
            Ok(()) => {
                tracing::info!("processor stopped; every consumed record is written and committed")
            }
            Err(error) => tracing::warn!(
                %error,
                "processor stopped; every consumed record is written, but committing the last \
                 offsets failed: those records will be redelivered (and change nothing)"
            ),
        }
        Ok(())
    }
}
