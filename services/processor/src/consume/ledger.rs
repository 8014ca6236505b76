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
//! partition, and a later batch's offsets never go out before an earlier batch is
//! durable; they go out in that order on the one connection to the group coordinator,
//! which handles them in order. The commits and the rebalance callbacks both run on the
//! receive thread (librdkafka calls back from `poll`), so no revocation can slip in
//! between checking a partition and committing it.
//!
//! NB: librdkafka reports nothing back for an asynchronous `rd_kafka_commit` when the
//! client uses the event API, as rust-rdkafka's does (no `offset_commit_cb`, no reply
//! queue: see `rd_kafka_cgrp_propagate_commit_result`), so no commit waits for an answer.
//! Instead the last offsets sent go once more [`RESEND_AFTER`] later unless newer ones
//! went out meanwhile: a commit lost to a coordinator moving or a rebalance is made good
//! within seconds, and one lost twice only means those records are fetched again after a
//! restart (the key absorbs them).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::LoggedConsumer;
use super::batch::Span;

/// How long after the last commit its offsets are sent once more (see the module docs).
const RESEND_AFTER: Duration = Duration::from_secs(3);
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
    /// The latest offsets sent, per partition.
    sent: Offsets,
    /// When `sent` goes out once more, unless newer offsets go out before.
    resend_at: Option<Instant>,
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
            // What was sent goes again too: that commit may have been lost.
            let mut offsets = Offsets::new();
            for p in partitions {
                for o in [i.sent.remove(p), i.durable.remove(p)]
                    .into_iter()
                    .flatten()
                {
                    merge(&mut offsets, *p, o);
                }
            }
            let offsets = committable(&i.held, offsets);
            for p in partitions {
                i.held.remove(p);
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
            i.resend_at = None;
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

    /// Whether durable offsets wait for their commit (or for its second sending).
    pub fn pending(&self) -> bool {
        self.with(|i| !i.durable.is_empty() || i.resend_at.is_some())
    }

    /// Sends the new durable offsets of the partitions still held, asynchronously; with
    /// none new, sends the last ones once more when that is due (see the module docs).
    pub fn commit_due(&self, consumer: &LoggedConsumer) {
        let offsets = self.with(|i| due(i, Instant::now()));
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

    /// librdkafka's answer to a commit, when it gives one (see the module docs).
    pub fn committed(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if result.is_err() {
            self.with(|i| {
                // Sent again with the next commit, if the partition is still held then.
                for (p, o) in i.sent.clone() {
                    merge(&mut i.durable, p, o);
                }
                i.not_before = Some(Instant::now() + AFTER_FAILURE);
            });
        }
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
            // Refused before it was sent (e.g. the consumer is closing).
            tracing::warn!(%error, ?offsets, "offset commit refused; the records after the last committed offset will be redelivered");
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

/// What [`Ledger::commit_due`] sends at `now`: the new durable offsets of the partitions
/// still held, else the last ones once more when their second sending is due.
fn due(i: &mut Inner, now: Instant) -> Offsets {
    if i.not_before.is_some_and(|t| now < t) {
        return Offsets::new();
    }
    let offsets = committable(&i.held, std::mem::take(&mut i.durable));
    if !offsets.is_empty() {
        for (&p, &o) in &offsets {
            merge(&mut i.sent, p, o);
        }
        i.resend_at = Some(now + RESEND_AFTER);
        return offsets;
    }
    if i.resend_at.is_some_and(|t| now >= t) {
        i.resend_at = None;
        return committable(&i.held, i.sent.clone());
    }
    Offsets::new()
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

    /// What `commit_due` would send at `now`, without a consumer.
    fn sent_at(ledger: &Ledger, now: Instant) -> Offsets {
        ledger.with(|i| due(i, now))
    }

    fn sent_now(ledger: &Ledger) -> Offsets {
        sent_at(ledger, Instant::now())
    }

    #[test]
    fn a_durable_batch_commits_one_past_its_last_offset_per_partition() {
        let ledger = Ledger::new("flights");
        ledger.assigned(&[0, 1]);
        let epochs = ledger.epochs();
        let spans = BTreeMap::from([(0, span(epochs[&0], 100, 199)), (1, span(epochs[&1], 7, 9))]);
        ledger.durable(&spans);
        assert_eq!(
            sent_now(&ledger),
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
        assert_eq!(sent_now(&ledger), Offsets::from([(0, (e, 150))]));
    }

    #[test]
    fn every_durable_batch_is_sent_at_once_without_waiting_for_an_answer() {
        // librdkafka gives no answer to an asynchronous commit here: waiting for one
        // held every commit after the first back.
        let ledger = Ledger::new("flights");
        ledger.assigned(&[0]);
        let e = ledger.epochs()[&0];
        ledger.durable(&BTreeMap::from([(0, span(e, 0, 9))]));
        assert_eq!(sent_now(&ledger), Offsets::from([(0, (e, 10))]));
        ledger.durable(&BTreeMap::from([(0, span(e, 10, 19))]));
        assert_eq!(sent_now(&ledger), Offsets::from([(0, (e, 20))]));
    }

    #[test]
    fn the_last_offsets_go_once_more_unless_newer_ones_went_out() {
        let ledger = Ledger::new("flights");
        ledger.assigned(&[0, 1]);
        let epochs = ledger.epochs();
        let start = Instant::now();
        ledger.durable(&BTreeMap::from([(0, span(epochs[&0], 0, 9))]));
        assert_eq!(sent_at(&ledger, start).len(), 1);
        assert!(ledger.pending(), "the second sending is still owed");
        assert_eq!(sent_at(&ledger, start + RESEND_AFTER / 2), Offsets::new());
        // A newer batch of the other partition goes out: the resend covers both.
        ledger.durable(&BTreeMap::from([(1, span(epochs[&1], 0, 4))]));
        let later = start + RESEND_AFTER / 2;
        assert_eq!(
            sent_at(&ledger, later),
            Offsets::from([(1, (epochs[&1], 5))])
        );
        assert_eq!(sent_at(&ledger, start + RESEND_AFTER), Offsets::new());
        let both = Offsets::from([(0, (epochs[&0], 10)), (1, (epochs[&1], 5))]);
        assert_eq!(sent_at(&ledger, later + RESEND_AFTER), both);
        // Once only.
        assert!(!ledger.pending());
        assert_eq!(sent_at(&ledger, later + 10 * RESEND_AFTER), Offsets::new());
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
        assert_eq!(sent_now(&ledger), Offsets::from([(0, (epochs[&0], 10))]));
        // ... or revoked and assigned again: the old assignment's offsets stay uncommitted,
        // and are not sent again either.
        ledger.assigned(&[1]);
        ledger.durable(&BTreeMap::from([(1, span(epochs[&1], 10, 19))]));
        assert_eq!(sent_now(&ledger), Offsets::new());
        let fresh = ledger.epochs()[&1];
        assert!(fresh > epochs[&1]);
        ledger.durable(&BTreeMap::from([(1, span(fresh, 0, 19))]));
        assert_eq!(sent_now(&ledger), Offsets::from([(1, (fresh, 20))]));
        let resent = sent_at(&ledger, Instant::now() + RESEND_AFTER);
        assert_eq!(
            resent,
            Offsets::from([(0, (epochs[&0], 10)), (1, (fresh, 20))])
        );
    }

    #[test]
    fn a_failed_commit_goes_again_with_the_next_one() {
        let ledger = Ledger::new("flights");
        ledger.assigned(&[0]);
        let e = ledger.epochs()[&0];
        ledger.durable(&BTreeMap::from([(0, span(e, 0, 9))]));
        assert_eq!(sent_now(&ledger).len(), 1);
        // Should the broker's answer come and say no:
        ledger.committed(
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::RebalanceInProgress,
            )),
            &TopicPartitionList::new(),
        );
        ledger.durable(&BTreeMap::from([(0, span(e, 10, 14))]));
        assert_eq!(
            sent_at(&ledger, Instant::now() + AFTER_FAILURE),
            Offsets::from([(0, (e, 15))])
        );
    }
}
