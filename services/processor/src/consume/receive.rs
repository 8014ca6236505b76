//! The receive thread: polls the consumer, decodes and validates every record into the
//! batch in the making, hands batches to the writer, sends the commits of durable offsets
//! and serves librdkafka's callbacks (rebalances, commit results, statistics), which
//! librdkafka runs from `poll`, on this thread.
//!
//! Batching is natural: while the writer is busy, records gather (up to `BATCH_SIZE`,
//! then receiving pauses and librdkafka's bounded prefetch queue fills); the moment the
//! writer is free it gets whatever is ready. Only when the writer is already free does a
//! batch wait for more records, for at most `BATCH_LINGER_MS` since its first one.
//!
//! NB: a thread of its own with a plain [`rdkafka::consumer::BaseConsumer`] rather than a
//! task on the async runtime: receiving and decoding (the processor's main CPU cost) run
//! beside the writer on the other core, a ready record costs one `poll` instead of a trip
//! through the scheduler, and callbacks and commits share one thread, which is what makes
//! "never commit a partition no longer held" hold without races ([`super::ledger`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver as Inbox, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::{mpsc, watch};

use super::batch::Batch;
use super::ledger::Ledger;
use super::{LoggedConsumer, WATCHDOG};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::{Config, Error, Result};

/// How long one `poll` waits when the batch is empty.
const POLL: Duration = Duration::from_millis(100);
/// How long one `poll` waits while records are in hand and the writer is busy: how late,
/// at most, a writer that frees up gets them.
const BUSY_POLL: Duration = Duration::from_millis(5);

/// The thread's state; [`Receiver::run`] consumes it.
pub struct Receiver {
    /// The configuration (batch size, linger, and to create a fresh consumer).
    pub config: Config,
    /// Offsets and assignment epochs.
    pub ledger: Arc<Ledger>,
    /// What `/readyz` reports.
    pub health: Arc<Health>,
    /// Metrics (for a fresh consumer).
    pub metrics: Arc<Metrics>,
    /// The runtime, to connect a fresh consumer when rejoining.
    pub runtime: tokio::runtime::Handle,
    /// Turns true on shutdown.
    pub stop: watch::Receiver<bool>,
    /// Batches to the writer.
    pub batches: mpsc::Sender<Batch>,
    /// From the writer: it is free, with the batch it finished (to reuse its buffers).
    pub idle: Inbox<Option<Batch>>,
}

/// The epochs of the partitions held, as of the ledger's last change.
struct Epochs {
    seen: u64,
    held: BTreeMap<i32, u64>,
}

impl Epochs {
    fn of(&mut self, ledger: &Ledger, partition: i32) -> u64 {
        let changes = ledger.changes();
        if changes != self.seen {
            self.seen = changes;
            self.held = ledger.epochs();
        }
        // 0 is never an epoch: a record of a partition not held is never committed.
        self.held.get(&partition).copied().unwrap_or(0)
    }
}

/// What the writer is doing, as far as the receive thread knows.
struct Writer {
    idle: bool,
    /// A finished batch to fill next.
    spare: Option<Batch>,
}

impl Writer {
    fn freed(&mut self, finished: Option<Batch>) {
        self.idle = true;
        if finished.is_some() {
            self.spare = finished;
        }
    }
}

impl Receiver {
    /// Receives from `consumer` (subscribed; the only reference to it, so that a rejoin
    /// closes it) until `stop` turns true or the writer stops; then hands the batch in
    /// hand to the writer and returns the consumer (for the final commit).
    pub fn run(mut self, mut consumer: Arc<LoggedConsumer>) -> Result<Arc<LoggedConsumer>> {
        let (size, linger) = (self.config.batch_size, self.config.batch_linger());
        let mut batch = Batch::new(&self.config.topic, size);
        let mut writer = Writer {
            idle: false,
            spare: None,
        };
        let mut epochs = Epochs {
            seen: u64::MAX,
            held: BTreeMap::new(),
        };
        let mut watchdog = Instant::now() + WATCHDOG;
        let mut rejoins = 0_u64;
        loop {
            loop {
                match self.idle.try_recv() {
                    Ok(finished) => writer.freed(finished),
                    Err(TryRecvError::Empty) => break,
                    // The writer stopped (its error says why).
                    Err(TryRecvError::Disconnected) => return Ok(consumer),
                }
            }
            self.ledger.commit_due(&consumer);
            if *self.stop.borrow() {
                break;
            }
            let now = Instant::now();
            if now >= watchdog {
                watchdog = now + WATCHDOG;
                self.fenced(&consumer)?;
                let quiet = batch.is_empty() && writer.idle && !self.ledger.pending();
                if quiet && self.health.verdict(now, Ok(())).rejoin {
                    rejoins += 1;
                    consumer = self.rejoin(consumer, rejoins)?;
                    continue;
                }
            }
            let age = batch.started().map_or(Duration::ZERO, |t| t.elapsed());
            if !batch.is_empty() && writer.idle && (batch.len() >= size || age >= linger) {
                let next = writer
                    .spare
                    .take()
                    .unwrap_or_else(|| Batch::new(&self.config.topic, size));
                if self
                    .batches
                    .blocking_send(std::mem::replace(&mut batch, next))
                    .is_err()
                {
                    return Ok(consumer);
                }
                writer.idle = false;
                continue;
            }
            if batch.len() >= size {
                // Full while the writer is busy: wait for it.
                match self.idle.recv_timeout(POLL) {
                    Ok(finished) => writer.freed(finished),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Ok(consumer),
                }
                continue;
            }
            let timeout = match (batch.is_empty(), writer.idle) {
                (true, _) => POLL,
                (false, true) => linger.saturating_sub(age),
                (false, false) => BUSY_POLL,
            };
            self.receive(&consumer, &mut batch, &mut epochs, timeout)?;
        }
        self.finish(consumer, batch, writer)
    }

    /// One `poll`, then whatever else is ready without waiting, up to a full batch.
    fn receive(
        &self,
        consumer: &LoggedConsumer,
        batch: &mut Batch,
        epochs: &mut Epochs,
        timeout: Duration,
    ) -> Result<()> {
        let now = unix_now();
        let mut received = 0;
        let mut polled = consumer.poll(timeout);
        loop {
            match polled {
                None => break,
                Some(Ok(message)) => {
                    let epoch = epochs.of(&self.ledger, message.partition());
                    batch.add(&message, epoch, now);
                    received += 1;
                    if batch.len() >= self.config.batch_size {
                        break;
                    }
                }
                Some(Err(error)) => {
                    self.fenced(consumer)?;
                    tracing::warn!(%error, "kafka consume error");
                    if received == 0 {
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    break;
                }
            }
            polled = consumer.poll(Duration::ZERO);
        }
        if received > 0 {
            self.health.received();
        }
        Ok(())
    }

    /// On shutdown: the batch in hand goes to the writer once it is free. Dropping the
    /// sender then ends the writer after that batch.
    fn finish(
        self,
        consumer: Arc<LoggedConsumer>,
        batch: Batch,
        mut writer: Writer,
    ) -> Result<Arc<LoggedConsumer>> {
        if !batch.is_empty() {
            tracing::debug!(
                records = batch.len(),
                "stopping: the batch in hand is written first"
            );
            while !writer.idle {
                match self.idle.recv() {
                    Ok(finished) => writer.freed(finished),
                    Err(_) => return Ok(consumer),
                }
            }
            let _ = self.batches.blocking_send(batch);
        }
        Ok(consumer)
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
    fn rejoin(&mut self, old: Arc<LoggedConsumer>, rejoins: u64) -> Result<Arc<LoggedConsumer>> {
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
        // The old member must be gone before the new one joins under the same instance
        // id (closing waits for the broker; this thread may block).
        drop(old);
        self.ledger.clear();
        self.health.rejoined(Instant::now());
        self.runtime.block_on(super::connect_with(
            &self.config,
            static_member,
            self.ledger.clone(),
            self.metrics.clone(),
            self.health.clone(),
            &mut self.stop,
        ))
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
