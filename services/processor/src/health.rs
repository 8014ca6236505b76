//! What this instance knows about its own health, for `/readyz` and the rejoin watchdog.
//!
//! The consume loop and the consumer's rebalance callbacks report what they do (partitions
//! assigned and revoked, records received, a write being retried); a monitor task reports
//! the group's committed offsets and the topic's end offsets. [`Health::verdict`] turns
//! that into the readiness answer and the decision to rejoin the group.
//!
//! A partition is *stuck* when it has lag and its committed offset has not moved for
//! longer than the session timeout: nobody is working on it. An instance that received
//! nothing for that long while a partition is stuck rejoins (unless it is retrying a
//! write, which explains the stall); while it also holds no partition it is not ready.
//! A surplus replica (more replicas than partitions) holds nothing but sees no stuck
//! partition: it stays ready and says it is idle on purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The group's progress on one partition, as the monitor last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    /// Records between the group's committed offset and the end of the partition.
    pub lag: i64,
    /// The group's committed offset (the low watermark when nothing is committed).
    pub committed: i64,
    /// Since when `committed` has had this value.
    pub since: Instant,
}

/// One look at the group by the monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    /// Per partition: (lag, committed offset).
    pub partitions: BTreeMap<i32, (i64, i64)>,
}

#[derive(Debug)]
struct Inner {
    held: BTreeSet<i32>,
    kafka: Result<(), String>,
    progress: BTreeMap<i32, PartitionProgress>,
    retrying: Option<(String, Instant)>,
    last_received: Instant,
}

/// Shared between the consume loop, the consumer callbacks, the monitor and `/readyz`.
#[derive(Debug)]
pub struct Health {
    topic: String,
    session_timeout: Duration,
    inner: Mutex<Inner>,
}

/// What [`Health::verdict`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Why the instance is not ready; empty when it is.
    pub not_ready: Vec<String>,
    /// Whether the instance should rejoin the group now.
    pub rejoin: bool,
    /// Human-readable state, one fact per line.
    pub details: String,
}

impl Health {
    /// A fresh state: nothing held, nothing known about the group yet.
    pub fn new(topic: &str, session_timeout: Duration) -> Self {
        Self {
            topic: topic.to_owned(),
            session_timeout,
            inner: Mutex::new(Inner {
                held: BTreeSet::new(),
                kafka: Err("not checked yet".into()),
                progress: BTreeMap::new(),
                retrying: None,
                last_received: Instant::now(),
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut inner)
    }

    /// Partitions this instance was given.
    pub fn assigned(&self, partitions: &[i32]) {
        self.with(|i| i.held.extend(partitions));
    }

    /// Partitions taken from this instance.
    pub fn revoked(&self, partitions: &[i32]) {
        self.with(|i| partitions.iter().for_each(|p| _ = i.held.remove(p)));
    }

    /// The consumer was replaced: it holds nothing until its first assignment, and it
    /// gets a full session timeout before the watchdog judges it.
    pub fn rejoined(&self, now: Instant) {
        self.with(|i| {
            i.held.clear();
            i.last_received = now;
        });
    }

    /// Partitions this instance holds now.
    pub fn held(&self) -> Vec<i32> {
        self.with(|i| i.held.iter().copied().collect())
    }

    /// The consume loop received a record.
    pub fn received(&self) {
        self.with(|i| i.last_received = Instant::now());
    }

    /// A write or DLQ send is being retried for `reason` (`None`: it went through).
    pub fn retrying(&self, reason: Option<String>) {
        self.with(|i| match reason {
            Some(reason) => {
                let since = i.retrying.take().map_or_else(Instant::now, |(_, s)| s);
                i.retrying = Some((reason, since));
            }
            None => i.retrying = None,
        });
    }

    /// The monitor's latest look at the group, or why it could not look.
    pub fn observed(&self, snapshot: Result<GroupSnapshot, String>, now: Instant) {
        self.with(|i| match snapshot {
            Err(error) => i.kafka = Err(error),
            Ok(snapshot) => {
                i.kafka = Ok(());
                let mut progress = BTreeMap::new();
                for (partition, (lag, committed)) in snapshot.partitions {
                    let since = match i.progress.get(&partition) {
                        Some(before) if before.committed == committed => before.since,
                        _ => now,
                    };
                    progress.insert(
                        partition,
                        PartitionProgress {
                            lag,
                            committed,
                            since,
                        },
                    );
                }
                i.progress = progress;
            }
        });
    }

    /// Readiness and the rejoin decision at `now`, given whether PostgreSQL answered.
    pub fn verdict(&self, now: Instant, postgres: Result<(), String>) -> Verdict {
        let session = self.session_timeout;
        self.with(|i| {
            let stuck: Vec<(i32, i64, Duration)> = i
                .progress
                .iter()
                .filter(|(_, p)| p.lag > 0 && now.saturating_duration_since(p.since) > session)
                .map(|(&partition, p)| (partition, p.lag, now.saturating_duration_since(p.since)))
                .collect();
            let idle = now.saturating_duration_since(i.last_received);
            let partitions = i.progress.len();
            let group_lag: i64 = i.progress.values().map(|p| p.lag).sum();
            let mut not_ready = Vec::new();
            if let Err(e) = &postgres {
                not_ready.push(format!("postgres unreachable: {e}"));
            }
            if let Err(e) = &i.kafka {
                not_ready.push(format!("kafka unreachable: {e}"));
            }
            if let Some((reason, since)) = &i.retrying {
                not_ready.push(format!(
                    "retrying a write for {}s: {reason}",
                    now.saturating_duration_since(*since).as_secs()
                ));
            }
            if i.held.is_empty() && !stuck.is_empty() {
                not_ready.push(format!(
                    "no partitions: this instance holds none while the group's lag of \
                     {group_lag} records has not moved for more than the session timeout ({}s)",
                    session.as_secs()
                ));
            }
            let rejoin = idle > session && !stuck.is_empty() && i.retrying.is_none();

            let mut details = String::new();
            let _ = writeln!(details, "postgres: {}", status(&postgres));
            let _ = writeln!(details, "kafka: {}", status(&i.kafka));
            let held: Vec<String> = i
                .held
                .iter()
                .map(|p| format!("{}/{p}", self.topic))
                .collect();
            if held.is_empty() {
                let _ = write!(details, "partitions held: none (of {partitions})");
                if partitions > 0 && stuck.is_empty() {
                    let _ = write!(
                        details,
                        "; the group's other members hold every partition: replicas beyond \
                         the {partitions} partitions of {} stay idle",
                        self.topic
                    );
                }
                details.push('\n');
            } else {
                let _ = writeln!(
                    details,
                    "partitions held: {} (of {partitions})",
                    held.join(", ")
                );
            }
            let _ = writeln!(details, "group lag: {group_lag} records");
            for (partition, lag, for_) in &stuck {
                let _ = writeln!(
                    details,
                    "stuck: {}/{partition} has {lag} records waiting and its committed offset \
                     has not moved for {}s",
                    self.topic,
                    for_.as_secs()
                );
            }
            Verdict {
                not_ready,
                rejoin,
                details,
            }
        })
    }
}

fn status(result: &Result<(), String>) -> &str {
    match result {
        Ok(()) => "ok",
        Err(e) => e,
    }
}

impl Verdict {
    /// The `/readyz` body: `ready` or `not ready: …`, then the details.
    pub fn body(&self) -> String {
        if self.not_ready.is_empty() {
            format!("ready\n{}", self.details)
        } else {
            format!("not ready: {}\n{}", self.not_ready.join("; "), self.details)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_secs(30);

    fn group(partitions: &[(i32, i64, i64)]) -> Result<GroupSnapshot, String> {
        Ok(GroupSnapshot {
            partitions: partitions
                .iter()
                .map(|&(p, lag, committed)| (p, (lag, committed)))
                .collect(),
        })
    }

    #[test]
    fn an_instance_holding_nothing_while_work_waits_is_not_ready_and_rejoins() {
        let health = Health::new("flights", SESSION);
        let t0 = Instant::now();
        health.observed(group(&[(0, 500, 100)]), t0);
        let early = health.verdict(t0 + Duration::from_secs(5), Ok(()));
        assert!(early.not_ready.is_empty(), "{early:?}");
        assert!(!early.rejoin);
        let later = t0 + SESSION + Duration::from_secs(1);
        health.observed(group(&[(0, 700, 100)]), later);
        let verdict = health.verdict(later, Ok(()));
        assert!(
            verdict.body().contains("no partitions"),
            "{}",
            verdict.body()
        );
        assert!(verdict.rejoin, "{verdict:?}");
        assert!(
            verdict.details.contains("group lag: 700"),
            "{}",
            verdict.details
        );
        health.rejoined(later);
        assert!(
            !health.verdict(later, Ok(())).rejoin,
            "a fresh member gets a session"
        );
    }

    #[test]
    fn a_surplus_replica_is_ready_and_says_why_it_is_idle() {
        let health = Health::new("flights", SESSION);
        let t0 = Instant::now();
        health.observed(group(&[(0, 50, 100), (1, 0, 40)]), t0);
        let later = t0 + 2 * SESSION;
        // Others consume: the committed offsets move.
        health.observed(group(&[(0, 20, 180), (1, 3, 90)]), later);
        let verdict = health.verdict(later, Ok(()));
        assert!(verdict.not_ready.is_empty(), "{}", verdict.body());
        assert!(!verdict.rejoin);
        assert!(
            verdict.details.contains("replicas beyond the 2 partitions"),
            "{}",
            verdict.details
        );
    }

    #[test]
    fn a_retried_write_is_not_ready_and_never_triggers_a_rejoin() {
        let health = Health::new("flights", SESSION);
        let t0 = Instant::now();
        health.assigned(&[0, 1]);
        health.observed(group(&[(0, 500, 100)]), t0);
        health.retrying(Some("postgres: connection refused".into()));
        let later = t0 + 2 * SESSION;
        health.observed(group(&[(0, 900, 100)]), later);
        let verdict = health.verdict(later, Ok(()));
        assert!(
            verdict.body().contains("retrying a write"),
            "{}",
            verdict.body()
        );
        assert!(
            verdict.body().contains("connection refused"),
            "{}",
            verdict.body()
        );
        assert!(!verdict.rejoin);
        assert!(
            verdict.details.contains("flights/0, flights/1"),
            "{}",
            verdict.details
        );
        health.retrying(None);
        assert!(
            health.verdict(later, Ok(())).rejoin,
            "held but idle and stuck: rejoin"
        );
    }

    #[test]
    fn an_unreachable_dependency_is_named() {
        let health = Health::new("flights", SESSION);
        let verdict = health.verdict(Instant::now(), Err("connection refused".into()));
        assert!(
            verdict
                .body()
                .starts_with("not ready: postgres unreachable"),
            "{}",
            verdict.body()
        );
        assert!(
            verdict.body().contains("kafka unreachable"),
            "{}",
            verdict.body()
        );
    }
}
