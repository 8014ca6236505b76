//! The offsets: which partitions this consumer holds, which offsets are durable, and
//! committing them, asynchronously, only for partitions still held.
//!
//! Every assignment of a partition gets a fresh *epoch*. A batch remembers the epoch each
//! of its records was received under ([`Span`]); once the writer has made the batch
//! durable (rows committed in PostgreSQL, DLQ records acknowledged) it hands the spans
//! here, and the next commit sends one past each partition's last durable offset, but
//! only where that epoch is still the partition's current one. A partition revoked (or
//! revoked and assigned again) in between is never committed with the old epoch's
//! offsets: its records are fetched again from the last committed offset by whoever holds
//! it now, and the key makes that redelivery change nothing.
//!
//! Batches are written one after the other, so offsets become durable in order per
//! partition; one commit at a time is in flight ([`Ledger::commit_due`]), so they also
//! reach the broker in order, and a later batch's offsets never go out before an earlier
//! batch is durable. The commits and the rebalance callbacks both run on the receive
//! thread (librdkafka calls back from `poll`), so no revocation can slip in between
//! checking a partition and committing it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::LoggedConsumer;
use super::batch::Span;

/// How long a commit may go unanswered before the next one is sent anyway.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// How long to wait before committing again after a commit failed.
const AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Per partition: the epoch and the next offset to commit.
pub type Offsets = BTreeMap<i32, (u64, i64)>;

#[derive(Debug, Default)]
struct Inner {
    /// The last epoch handed out.
    epoch: u64,
    /// The partitions held, with the epoch of their assignment.
    held: BTreeMap<i32, u64>,
    /// Durable, not yet sent.
    durable: Offsets,
    /// Sent, not yet answered.
    sent: Offsets,
    /// Commits sent and not answered.
    in_flight: u32,
    /// When the last commit was sent.
    sent_at: Option<Instant>,
    /// No commit before this (after a failure).
    not_before: Option<Instant>,
}

/// Shared by the consumer's callbacks, the receive thread and the writer.
#[derive(Debug)]
pub struct Ledger {
    topic: String,
    inner: Mutex<Inner>,
    /// Bumped at every assignment change, so the receive thread knows when to look again.
    changes: AtomicU64,
}

impl Ledger {
    /// An empty ledger for `topic`: nothing held.
    pub fn new(topic: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            inner: Mutex::new(Inner::default()),
            changes: AtomicU64::new(0),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut inner)
    }

    /// A number that changes whenever the assignment does.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// The partitions held and the epoch of each one's assignment.
    pub fn epochs(&self) -> BTreeMap<i32, u64> {
        self.with(|i| i.held.clone())
    }

    /// `partitions` were assigned: each gets a fresh epoch.
    pub fn assigned(&self, partitions: &[i32]) {
        self.with(|i| {
            for &p in partitions {
                i.epoch += 1;
                i.held.insert(p, i.epoch);
            }
        });
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// `partitions` are being taken away: what is durable of them is committed now, then
    /// they are forgotten (batches of theirs still being written are never committed).
    pub fn revoking(&self, consumer: &LoggedConsumer, partitions: &[i32]) {
        let last = self.with(|i| {
            let offsets: Offsets = partitions
                .iter()
                .filter_map(|p| i.durable.remove(p).map(|o| (*p, o)))
                .filter(|(p, (epoch, _))| i.held.get(p) == Some(epoch))
                .collect();
            for p in partitions {
                i.held.remove(p);
                i.sent.remove(p);
            }
            if !offsets.is_empty() {
                i.in_flight += 1;
                i.sent_at = Some(Instant::now());
            }
            offsets
        });
        self.changes.fetch_add(1, Ordering::AcqRel);
        if !last.is_empty() {
            tracing::debug!(offsets = ?last, "committing the durable offsets of revoked partitions");
            self.send(consumer, last, CommitMode::Async);
        }
    }

    /// The consumer was replaced: nothing is held, nothing is owed.
    pub fn clear(&self) {
        self.with(|i| {
            i.held.clear();
            i.durable.clear();
            i.sent.clear();
            i.in_flight = 0;
            i.sent_at = None;
        });
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// The writer made a batch durable: these spans may be committed.
    pub fn durable<'a>(&self, spans: impl IntoIterator<Item = (&'a i32, &'a Span)>) {
        self.with(|i| {
            for (&partition, span) in spans {
                merge(&mut i.durable, partition, (span.epoch, span.last + 1));
            }
        });
    }

    /// Whether durable offsets wait for their commit (sent or not).
    pub fn pending(&self) -> bool {
        self.with(|i| !i.durable.is_empty() || i.in_flight > 0)
    }

    /// Sends the durable offsets of the partitions still held, asynchronously, unless a
    /// commit is still unanswered (then they go with the next one, in order).
    pub fn commit_due(&self, consumer: &LoggedConsumer) {
        let now = Instant::now();
        let offsets = self.with(|i| {
            let answered = i.in_flight == 0
                || i.sent_at
                    .is_none_or(|at| now.duration_since(at) > ANSWER_WITHIN);
            if !answered || i.not_before.is_some_and(|t| now < t) || i.durable.is_empty() {
                return Offsets::new();
            }
            let offsets = committable(&i.held, std::mem::take(&mut i.durable));
            if !offsets.is_empty() {
                i.in_flight += 1;
                i.sent_at = Some(now);
                for (&p, &o) in &offsets {
                    merge(&mut i.sent, p, o);
                }
            }
            offsets
        });
        if !offsets.is_empty() {
            self.send(consumer, offsets, CommitMode::Async);
        }
    }

    /// Commits every durable offset of the partitions still held and waits for the
    /// broker's answer (at shutdown, when no rebalance can run any more: nobody polls).
    pub fn commit_now(&self, consumer: &LoggedConsumer) -> KafkaResult<()> {
        let offsets = self.with(|i| {
            let mut all = std::mem::take(&mut i.sent);
            for (p, o) in std::mem::take(&mut i.durable) {
                merge(&mut all, p, o);
            }
            committable(&i.held, all)
        });
        if offsets.is_empty() {
            return Ok(());
        }
        consumer.commit(&self.list(&offsets), CommitMode::Sync)?;
        tracing::debug!(?offsets, "offsets committed");
        Ok(())
    }

    /// librdkafka's answer to an asynchronous commit.
    pub fn committed(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let failed = result.is_err();
        self.with(|i| {
            i.in_flight = i.in_flight.saturating_sub(1);
            if failed {
                // Sent again with the next commit, if the partition is still held then.
                for (p, o) in std::mem::take(&mut i.sent) {
                    merge(&mut i.durable, p, o);
                }
                i.not_before = Some(Instant::now() + AFTER_FAILURE);
            } else if i.in_flight == 0 {
                i.sent.clear();
            }
        });
        match result {
            Ok(()) => tracing::debug!(offsets = ?names(offsets), "offsets committed"),
            // A rebalance in progress, the coordinator moving, the broker away: the
            // offsets go again with the next commit; the records stay durable anyway.
            Err(error) => {
                tracing::warn!(%error, offsets = ?names(offsets), "offset commit failed; retrying with the next commit")
            }
        }
    }

    fn send(&self, consumer: &LoggedConsumer, offsets: Offsets, mode: CommitMode) {
        if let Err(error) = consumer.commit(&self.list(&offsets), mode) {
            // Refused before it was sent (e.g. the consumer is closing): no callback follows.
            tracing::warn!(%error, ?offsets, "offset commit refused; the records after the last committed offset will be redelivered");
            self.with(|i| i.in_flight = i.in_flight.saturating_sub(1));
        }
    }

    fn list(&self, offsets: &Offsets) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for (&partition, &(_, next)) in offsets {
            if let Err(error) =
                tpl.add_partition_offset(&self.topic, partition, Offset::Offset(next))
            {
                tracing::error!(%error, partition, next, "cannot name the offset to commit");
            }
        }
        tpl
    }
}

/// Keeps the later of two commits of a partition: a newer epoch wins, then the higher offset.
fn merge(offsets: &mut Offsets, partition: i32, (epoch, next): (u64, i64)) {
    let entry = offsets.entry(partition).or_insert((epoch, next));
    if epoch > entry.0 || (epoch == entry.0 && next > entry.1) {
        *entry = (epoch, next);
    }
}

/// The offsets whose epoch is still their partition's current one.
fn committable(held: &BTreeMap<i32, u64>, offsets: Offsets) -> Offsets {
    offsets
        .into_iter()
        .filter(|(p, (epoch, _))| held.get(p) == Some(epoch))
        .collect()
}

fn names(tpl: &TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}@{:?}", e.topic(), e.partition(), e.offset()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(epoch: u64, first: i64, last: i64) -> Span {
        Span { epoch, first, last }
    }

    /// What `commit_due` would send, without a consumer.
    fn due(ledger: &Ledger) -> Offsets {
        ledger.with(|i| committable(&i.held, std::mem::take(&mut i.durable)))
    }

    #[test]
    fn a_durable_batch_commits_one_past_its_last_offset_per_partition() {
        let ledger = Ledger::new("flights");
        ledger.assigned(&[0, 1]);
        let epochs = ledger.epochs();
        let spans = BTreeMap::from([(0, span(epochs[&0], 100, 199)), (1, span(epochs[&1], 7, 9))]);
        ledger.durable(&spans);
        assert_eq!(
            due(&ledger),
            Offsets::from([(0, (epochs[&0], 200)), (1, (epochs[&1], 10))])
        );
    }

    #[test]
    fn later_batches_move_the_offset_forward_never_back() {
        let ledger = Ledger::new("flights");
        ledger.assigned(&[0]);
        let e = ledger.epochs()[&0];
        ledger.durable(&BTreeMap::from([(0, span(e, 0, 99))]));
        ledger.durable(&BTreeMap::from([(0, span(e, 100, 149))]));
        assert_eq!(due(&ledger), Offsets::from([(0, (e, 150))]));
    }

    #[test]
    fn a_partition_no_longer_held_is_never_committed() {
        let ledger = Ledger::new("flights");
        ledger.assigned(&[0, 1]);
        let epochs = ledger.epochs();
        // Partition 1 is revoked while its batch is still being written ...
        ledger.with(|i| i.held.remove(&1));
        ledger.durable(&BTreeMap::from([
            (0, span(epochs[&0], 0, 9)),
            (1, span(epochs[&1], 0, 9)),
        ]));
        assert_eq!(due(&ledger), Offsets::from([(0, (epochs[&0], 10))]));
        // ... or revoked and assigned again: the old assignment's offsets stay uncommitted.
        ledger.assigned(&[1]);
        ledger.durable(&BTreeMap::from([(1, span(epochs[&1], 10, 19))]));
        assert_eq!(due(&ledger), Offsets::new());
        let fresh = ledger.epochs()[&1];
        assert!(fresh > epochs[&1]);
        ledger.durable(&BTreeMap::from([(1, span(fresh, 0, 19))]));
        assert_eq!(due(&ledger), Offsets::from([(1, (fresh, 20))]));
    }

    #[test]
    fn a_failed_commit_goes_again_with_the_next_one() {
        let ledger = Ledger::new("flights");
        ledger.assigned(&[0]);
        let e = ledger.epochs()[&0];
        ledger.durable(&BTreeMap::from([(0, span(e, 0, 9))]));
        // As `commit_due` does, then the broker says no.
        ledger.with(|i| {
            let sent = committable(&i.held, std::mem::take(&mut i.durable));
            i.sent = sent;
            i.in_flight = 1;
        });
        assert!(ledger.pending());
        ledger.committed(
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::RebalanceInProgress,
            )),
            &TopicPartitionList::new(),
        );
        ledger.durable(&BTreeMap::from([(0, span(e, 10, 14))]));
        assert_eq!(due(&ledger), Offsets::from([(0, (e, 15))]));
    }
}
