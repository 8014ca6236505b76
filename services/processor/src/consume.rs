//! The consume loop: gather a batch, validate, write rows and DLQ records, then commit.
//!
//! Offsets are committed only after the batch's rows are committed in PostgreSQL and its
//! DLQ records are acknowledged (see the crate docs for the guarantee this gives).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flight_model::Rejection;
use flight_model::validate::decode_and_validate;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::dlq::{Dlq, Rejected};
use crate::metrics::{Metrics, PartitionLabel, ReasonLabel};
use crate::sink::{Rows, backoff, sleep_unless_stopped};
use crate::{Config, Error, Result};

/// Logs rebalances and turns librdkafka's statistics into the consumer-lag gauge.
pub struct Context {
    metrics: Arc<Metrics>,
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
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect()
}

/// The consumer type the processor uses.
pub type LoggedConsumer = StreamConsumer<Context>;

/// Creates the consumer, waits until the broker answers (retrying with backoff and saying
/// plainly which servers are unreachable), and subscribes.
pub async fn connect(
    config: &Config,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> Result<Arc<LoggedConsumer>> {
    let consumer: LoggedConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", &config.group_id)
        // Offsets are committed by hand, after the batch is durable.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group starts at the beginning of the topic: nothing produced is skipped.
        .set("auto.offset.reset", "earliest")
        // Statistics every 5 s feed the consumer-lag gauge.
        .set("statistics.interval.ms", "5000")
        .create_with_context(Context { metrics })?;
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
        .unwrap_or(Err(rdkafka::error::KafkaError::Canceled));
        match result {
            Ok(()) => break,
            Err(error) => {
                let delay = backoff(attempt);
                tracing::warn!(
                    bootstrap_servers = config.bootstrap_servers,
                    %error,
                    retry_in = ?delay,
                    "kafka unreachable"
                );
                if !sleep_unless_stopped(delay, &mut stop).await {
                    return Err(Error::Interrupted("kafka"));
                }
                attempt += 1;
            }
        }
    }
    consumer.subscribe(&[&config.topic])?;
    Ok(consumer)
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Records in the batch.
    pub records: u64,
    /// Rows newly inserted.
    pub inserted: u64,
    /// Valid records whose row already existed.
    pub duplicates: u64,
    /// Records sent to the DLQ.
    pub rejected: u64,
}

/// The running pipeline.
pub struct Pipeline {
    /// Subscribed consumer.
    pub consumer: Arc<LoggedConsumer>,
    /// DLQ producer.
    pub dlq: Dlq,
    /// Database pool.
    pub pool: PgPool,
    /// Metrics to update per batch.
    pub metrics: Arc<Metrics>,
    /// Most records per batch.
    pub batch_size: usize,
    /// Longest a batch waits for more records.
    pub linger: Duration,
}

impl Pipeline {
    /// Consumes until `stop` turns true, then writes and commits the batch in hand.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut batch: Vec<OwnedMessage> = Vec::with_capacity(self.batch_size);
        let mut started = Instant::now();
        loop {
            if *stop.borrow() {
                break;
            }
            let deadline = tokio::time::Instant::from_std(started + self.linger);
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep_until(deadline), if !batch.is_empty() => {
                    self.flush(&mut batch, started, &mut stop).await?;
                }
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        if batch.is_empty() {
                            started = Instant::now();
                        }
                        batch.push(message.detach());
                        if batch.len() >= self.batch_size {
                            self.flush(&mut batch, started, &mut stop).await?;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "kafka consume error");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
            }
        }
        if !batch.is_empty() {
            self.flush(&mut batch, started, &mut stop).await?;
        }
        tracing::info!("processor stopped; every consumed record is written and committed");
        Ok(())
    }

    /// Validates, writes and commits one batch.
    pub async fn flush(
        &self,
        batch: &mut Vec<OwnedMessage>,
        started: Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<BatchOutcome> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut rows = Rows::default();
        let mut rejected = Vec::new();
        let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let records = batch.len() as u64;
        for message in batch.drain(..) {
            let next = offsets
                .entry((message.topic().to_owned(), message.partition()))
                .or_insert(0);
            *next = (*next).max(message.offset() + 1);
            let verdict = match message.payload() {
                Some(payload) => decode_and_validate(payload, now),
                None => Err(Rejection::Malformed("the record has no value".into())),
            };
            match verdict {
                Ok(record) => rows.push(record),
                Err(rejection) => {
                    tracing::warn!(
                        reason = rejection.reason(),
                        detail = %rejection,
                        partition = message.partition(),
                        offset = message.offset(),
                        "record rejected"
                    );
                    rejected.push(Rejected {
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().map(<[u8]>::to_vec),
                        reason: rejection.reason(),
                        detail: rejection.to_string(),
                        topic: message.topic().to_owned(),
                        partition: message.partition(),
                        offset: message.offset(),
                    });
                }
            }
        }
        self.dlq.send_all(&rejected, stop).await?;
        let mut attempt = 0;
        let inserted = loop {
            match rows.insert(&self.pool).await {
                Ok(n) => break n,
                Err(error) => {
                    let delay = backoff(attempt);
                    tracing::warn!(%error, rows = rows.len(), retry_in = ?delay, "writing the batch failed");
                    if !sleep_unless_stopped(delay, stop).await {
                        return Err(Error::Interrupted("postgres"));
                    }
                    attempt += 1;
                }
            }
        };
        self.commit(offsets).await;
        let outcome = BatchOutcome {
            records,
            inserted,
            duplicates: rows.len() as u64 - inserted,
            rejected: rejected.len() as u64,
        };
        self.record(&outcome, &rejected, started);
        Ok(outcome)
    }

    async fn commit(&self, offsets: BTreeMap<(String, i32), i64>) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in offsets {
            if let Err(error) = tpl.add_partition_offset(&topic, partition, Offset::Offset(next)) {
                tracing::error!(%error, topic, partition, "cannot name the offset to commit");
            }
        }
        let consumer = self.consumer.clone();
        let result =
            tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await;
        match result {
            Ok(Ok(())) => {}
            // After a rebalance the partition belongs to another member, which starts
            // from the last committed offset: the batch is redelivered and skipped as
            // duplicates, so nothing is lost.
            Ok(Err(error)) => {
                tracing::warn!(%error, "offset commit failed; the batch will be redelivered")
            }
            Err(error) => {
                tracing::warn!(%error, "offset commit task failed; the batch will be redelivered")
            }
        }
    }

    fn record(&self, outcome: &BatchOutcome, rejected: &[Rejected], started: Instant) {
        let m = &self.metrics;
        m.records_in.inc_by(outcome.records);
        m.rows_written.inc_by(outcome.inserted);
        m.duplicates_skipped.inc_by(outcome.duplicates);
        for r in rejected {
            m.rejected
                .get_or_create(&ReasonLabel {
                    reason: r.reason.into(),
                })
                .inc();
        }
        let elapsed = started.elapsed();
        m.batch_duration.observe(elapsed.as_secs_f64());
        tracing::info!(
            records = outcome.records,
            inserted = outcome.inserted,
            duplicates = outcome.duplicates,
            rejected = outcome.rejected,
            ms = elapsed.as_millis() as u64,
            "batch committed"
        );
    }
}
