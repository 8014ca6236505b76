//! The consume loop: gather a batch, validate, write rows and DLQ records, then commit.
//!
//! Offsets are committed only after the batch's rows are committed in PostgreSQL and its
//! DLQ records are acknowledged (see the crate docs for the guarantee this gives). What a
//! failure means is [`retry`]'s decision: a transient one (connection, timeout, shutdown,
//! full disk) is retried with backoff while nothing is committed and `/readyz` says so; a
//! permanent one (PostgreSQL refusing a value) splits the batch until the records at fault
//! are isolated, and those go to the DLQ while the rest lands.
//!
//! The member is static when `GROUP_INSTANCE_ID` is set, and a watchdog replaces the
//! consumer when it sits idle while the group's work waits (see [`crate::health`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flight_model::validate::decode_and_validate;
use flight_model::{FlightRecord, Rejection};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use retry::{Backoff, Class};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::dlq::{Dlq, Rejected};
use crate::health::Health;
use crate::metrics::{FailureLabel, Metrics, PartitionLabel, ReasonLabel};
use crate::sink::Rows;
use crate::{Config, Error, Result};

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

/// Logs rebalances, reports them to [`Health`], and turns librdkafka's statistics into
/// the consumer-lag gauge.
pub struct Context {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
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
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
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

/// The consumer type the processor uses.
pub type LoggedConsumer = StreamConsumer<Context>;

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
    if let Some(id) = config.group_instance_id.as_ref().filter(|_| static_member) {
        // Static membership (KIP-345): a restarted member with this id takes its old
        // place, partitions included, without a rebalance or a session timeout.
        c.set("group.instance.id", id);
    }
    c
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
    let consumer: LoggedConsumer =
        client_config(config, static_member).create_with_context(Context { metrics, health })?;
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

/// What one attempt to write some rows came to, once transient failures are behind it.
enum Written {
    /// Rows newly inserted.
    Rows(u64),
    /// PostgreSQL refused the data (a permanent error).
    Refused(sqlx::Error),
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
    /// Consumes until `stop` turns true, then writes and commits the batch in hand.
    pub async fn run(
        self,
        mut consumer: Arc<LoggedConsumer>,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let (batch_size, linger) = (self.config.batch_size, self.config.batch_linger());
        let mut batch: Vec<OwnedMessage> = Vec::with_capacity(batch_size);
        let mut started = Instant::now();
        let mut watchdog = tokio::time::interval(WATCHDOG);
        let mut rejoins = 0_u64;
        loop {
            if *stop.borrow() {
                break;
            }
            let deadline = tokio::time::Instant::from_std(started + linger);
            let receiver = consumer.clone();
            tokio::select! {
                _ = stop.changed() => break,
                () = tokio::time::sleep_until(deadline), if !batch.is_empty() => {
                    self.flush(&consumer, &mut batch, started, &mut stop).await?;
                }
                received = receiver.recv() => match received {
                    Ok(message) => {
                        self.health.received();
                        // The fault suite counts redeliveries from these (trace level only).
                        tracing::trace!(partition = message.partition(), offset = message.offset(), "record received");
                        if batch.is_empty() {
                            started = Instant::now();
                        }
                        batch.push(message.detach());
                        if batch.len() >= batch_size {
                            self.flush(&consumer, &mut batch, started, &mut stop).await?;
                        }
                    }
                    Err(error) => {
                        self.fenced(&consumer)?;
                        tracing::warn!(%error, "kafka consume error");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
                _ = watchdog.tick() => {
                    self.fenced(&consumer)?;
                    if batch.is_empty() && self.health.verdict(Instant::now(), Ok(())).rejoin {
                        drop(receiver);
                        rejoins += 1;
                        consumer = self.rejoin(consumer, rejoins, &mut stop).await?;
                    }
                }
            }
        }
        if !batch.is_empty() {
            self.flush(&consumer, &mut batch, started, &mut stop)
                .await?;
        }
        tracing::info!("processor stopped; every consumed record is written and committed");
        Ok(())
    }

    /// Fails when the broker fenced this member because another one uses its instance id.
    fn fenced(&self, consumer: &LoggedConsumer) -> Result<()> {
        match consumer.client().fatal_error() {
            Some((RDKafkaErrorCode::FencedInstanceId, detail)) => Err(Error::Fenced {
                id: self.config.group_instance_id.clone().unwrap_or_default(),
                group: self.config.group_id.clone(),
                detail,
            }),
            _ => Ok(()),
        }
    }

    /// Replaces the consumer with a fresh one; `rejoins` counts the replacements so far.
    ///
    /// NB: a fresh consumer rather than a re-subscription: re-subscribing keeps
    /// librdkafka's member id and generation, the very state the broker disagrees about,
    /// while a fresh consumer joins exactly as a restarted process does, which is what
    /// brings a static member its partitions back. Every second rejoin is dynamic (no
    /// instance id): a coordinator still waiting for a departed static member (tansu 0.6
    /// only expires members when a dynamic member joins or heartbeats) forms the group
    /// again once a dynamic member joins; the next rejoin is static again.
    async fn rejoin(
        &self,
        old: Arc<LoggedConsumer>,
        rejoins: u64,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Arc<LoggedConsumer>> {
        let verdict = self.health.verdict(Instant::now(), Ok(()));
        let static_member = self.config.group_instance_id.is_some() && rejoins % 2 == 1;
        tracing::warn!(
            held = ?self.health.held(),
            rejoins,
            static_member,
            state = %verdict.details.replace('\n', "; "),
            "idle while the group's work waits for longer than the session timeout: rejoining the group with a fresh consumer"
        );
        self.metrics.consumer_rejoins.inc();
        self.metrics.partitions_held.set(0);
        // Closing waits for the broker: off the async threads. The old member must be
        // gone before the new one joins under the same instance id.
        let _ = tokio::task::spawn_blocking(move || drop(old)).await;
        self.health.rejoined(Instant::now());
        connect(
            &self.config,
            static_member,
            self.metrics.clone(),
            self.health.clone(),
            stop,
        )
        .await
    }

    /// Validates, writes and commits one batch.
    pub async fn flush(
        &self,
        consumer: &Arc<LoggedConsumer>,
        batch: &mut Vec<OwnedMessage>,
        started: Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<BatchOutcome> {
        let now = unix_now();
        let messages = std::mem::take(batch);
        let ranges = offset_ranges(&messages);
        tracing::debug!(records = messages.len(), offsets = %ranges, "batch received");
        let mut rows = Rows::default();
        let mut valid = Vec::new();
        let mut rejected = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            match verdict(message, now) {
                Ok(record) => {
                    rows.push(record);
                    valid.push(index);
                }
                Err(rejection) => rejected.push(reject(message, &rejection)),
            }
        }
        let written = rows.len() as u64;
        let inserted = self
            .write(rows, &messages, &valid, now, &mut rejected, stop)
            .await?;
        self.dlq.send_all(&rejected, stop).await?;
        self.commit(consumer, next_offsets(&messages)).await;
        let outcome = BatchOutcome {
            records: messages.len() as u64,
            inserted,
            duplicates: (written - inserted).saturating_sub(
                rejected
                    .iter()
                    .filter(|r| r.reason == "rejected_by_database")
                    .count() as u64,
            ),
            rejected: rejected.len() as u64,
        };
        self.record(&outcome, &rejected, started, &ranges);
        Ok(outcome)
    }

    /// Writes the valid records of a batch. A permanent error splits the rows in halves
    /// until the records PostgreSQL refuses are isolated: those join `rejected` (reason
    /// `rejected_by_database`) and every other row lands.
    async fn write(
        &self,
        rows: Rows,
        messages: &[OwnedMessage],
        valid: &[usize],
        now: i64,
        rejected: &mut Vec<Rejected>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<u64> {
        let mut inserted = 0;
        let mut pending = vec![(rows, valid)];
        while let Some((rows, part)) = pending.pop() {
            match self.insert(&rows, stop).await? {
                Written::Rows(n) => inserted += n,
                Written::Refused(error) => {
                    self.metrics
                        .failures
                        .get_or_create(&FailureLabel::new("write", Class::Permanent))
                        .inc();
                    if let [index] = part {
                        let message = &messages[*index];
                        let rejection = refused(&error);
                        rejected.push(reject(message, &rejection));
                    } else {
                        tracing::warn!(%error, rows = part.len(), "PostgreSQL refused the rows with a data error: splitting them to isolate the records at fault");
                        let (left, right) = part.split_at(part.len() / 2);
                        pending.push((rows_of(messages, right, now), right));
                        pending.push((rows_of(messages, left, now), left));
                    }
                }
            }
        }
        Ok(inserted)
    }

    /// Inserts `rows`, retrying transient failures with backoff until they succeed or
    /// shutdown is requested; `/readyz` reports the retry meanwhile.
    async fn insert(&self, rows: &Rows, stop: &mut watch::Receiver<bool>) -> Result<Written> {
        let mut attempt = 0;
        loop {
            let error = match rows.insert(&self.pool).await {
                Ok(n) => {
                    if attempt > 0 {
                        tracing::info!(
                            attempts = attempt + 1,
                            "the batch is written after retrying"
                        );
                        self.health.retrying(None);
                    }
                    return Ok(Written::Rows(n));
                }
                Err(Error::Database(error)) if retry::postgres(&error) == Class::Permanent => {
                    return Ok(Written::Refused(error));
                }
                Err(error) => error,
            };
            attempt += 1;
            self.metrics
                .failures
                .get_or_create(&FailureLabel::new("write", Class::Transient))
                .inc();
            self.health
                .retrying(Some(format!("writing {} rows: {error}", rows.len())));
            let delay = Backoff::SERVICE.random_delay(attempt);
            tracing::warn!(%error, rows = rows.len(), attempt, retry_in = ?delay, "writing the batch failed: retrying, nothing is committed meanwhile");
            if !retry::sleep_unless_stopped(delay, stop).await {
                return Err(Error::Interrupted("postgres"));
            }
        }
    }

    async fn commit(&self, consumer: &Arc<LoggedConsumer>, offsets: BTreeMap<(String, i32), i64>) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in offsets {
            if let Err(error) = tpl.add_partition_offset(&topic, partition, Offset::Offset(next)) {
                tracing::error!(%error, topic, partition, "cannot name the offset to commit");
            }
        }
        let consumer = consumer.clone();
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

    fn record(
        &self,
        outcome: &BatchOutcome,
        rejected: &[Rejected],
        started: Instant,
        ranges: &str,
    ) {
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
            offsets = ranges,
            ms = elapsed.as_millis() as u64,
            "batch committed"
        );
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn verdict(message: &OwnedMessage, now: i64) -> Result<FlightRecord, Rejection> {
    match message.payload() {
        Some(payload) => decode_and_validate(payload, now),
        None => Err(Rejection::Malformed("the record has no value".into())),
    }
}

/// The valid records at `indices`, decoded again (only after PostgreSQL refused a batch).
fn rows_of(messages: &[OwnedMessage], indices: &[usize], now: i64) -> Rows {
    let mut rows = Rows::default();
    for &index in indices {
        if let Ok(record) = verdict(&messages[index], now) {
            rows.push(record);
        }
    }
    rows
}

/// The rejection for a row PostgreSQL refused on its own.
fn refused(error: &sqlx::Error) -> Rejection {
    match error.as_database_error() {
        Some(db) => Rejection::RejectedByDatabase {
            sqlstate: db.code().map(|c| c.into_owned()).unwrap_or_default(),
            message: db.message().to_owned(),
        },
        None => Rejection::RejectedByDatabase {
            sqlstate: String::new(),
            message: error.to_string(),
        },
    }
}

fn reject(message: &OwnedMessage, rejection: &Rejection) -> Rejected {
    tracing::warn!(
        reason = rejection.reason(),
        detail = %rejection,
        partition = message.partition(),
        offset = message.offset(),
        "record rejected"
    );
    Rejected {
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        reason: rejection.reason(),
        detail: rejection.to_string(),
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
    }
}

/// The offset to commit per partition: one past the last record of the batch.
fn next_offsets(messages: &[OwnedMessage]) -> BTreeMap<(String, i32), i64> {
    let mut offsets = BTreeMap::new();
    for m in messages {
        let next = offsets
            .entry((m.topic().to_owned(), m.partition()))
            .or_insert(0);
        *next = (*next).max(m.offset() + 1);
    }
    offsets
}

/// `partition:first-last` per partition, e.g. `0:100-199 2:40-87`, for the batch logs.
fn offset_ranges(messages: &[OwnedMessage]) -> String {
    let mut ranges: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for m in messages {
        let range = ranges
            .entry(m.partition())
            .or_insert((m.offset(), m.offset()));
        range.0 = range.0.min(m.offset());
        range.1 = range.1.max(m.offset());
    }
    ranges
        .iter()
        .map(|(p, (first, last))| format!("{p}:{first}-{last}"))
        .collect::<Vec<_>>()
        .join(" ")
}
