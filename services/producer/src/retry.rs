//! When to poll OpenSky again, as pure functions: the caller passes the jitter, so the
//! policy is tested without clocks or randomness.
//!
//! After a snapshot the next poll follows the interval. After a 429 the producer waits
//! what `X-Rate-Limit-Retry-After-Seconds` says, or backs off when the header is absent.
//! After a retryable failure (5xx, timeout, no connection, an undecodable body) it backs
//! off exponentially with jitter, capped at [`MAX_BACKOFF`]. Anything else stops it.

use std::time::Duration;

use crate::Result;
use crate::opensky::PollOutcome;

/// The longest wait between two attempts after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Exponential backoff with "equal jitter": the wait before attempt `n` lies between
/// half and all of `initial * 2^(n-1)`, capped at `max`.
///
/// Half of it is fixed so a retry never comes immediately; the other half is random so
/// many producers that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub initial: Duration,
    /// The ceiling of every wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait before retry `attempt` (1 for the first failure in a row), with `jitter`
    /// in `[0, 1]` (values outside are clamped, NaN counts as 0).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let ceiling = self.initial.saturating_mul(1 << doublings).min(self.max);
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        ceiling.mul_f64(0.5 + 0.5 * jitter)
    }
}

/// What the live loop does after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The poll brought a snapshot: poll again `after` the start of this one.
    Poll {
        /// The interval.
        after: Duration,
    },
    /// The poll failed or was rate-limited: try again `after` now.
    Retry {
        /// How long to wait.
        after: Duration,
        /// How many polls in a row have now failed (1 after the first).
        attempt: u32,
    },
    /// The poll failed in a way retrying cannot fix.
    Stop,
}

/// The live loop's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Time between successful polls.
    pub interval: Duration,
    /// Waits after failures.
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// Polls every `interval`; after failures backs off from `interval` up to [`MAX_BACKOFF`],
    /// so a failing OpenSky is never asked more often than a healthy one.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            backoff: Backoff {
                initial: interval.min(MAX_BACKOFF),
                max: MAX_BACKOFF,
            },
        }
    }

    /// Decides what follows `result`, after `failures` failed polls in a row before it.
    pub fn next(&self, result: &Result<PollOutcome>, failures: u32, jitter: f64) -> Next {
        let attempt = failures.saturating_add(1);
        match result {
            Ok(PollOutcome::Snapshot(_)) => Next::Poll {
                after: self.interval,
            },
            Ok(PollOutcome::RateLimited { retry_after }) => Next::Retry {
                after: retry_after.unwrap_or_else(|| self.backoff.delay(attempt, jitter)),
                attempt,
            },
            Err(error) if error.is_retryable() => Next::Retry {
                after: self.backoff.delay(attempt, jitter),
                attempt,
            },
            Err(_) => Next::Stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::opensky::Snapshot;

    const SECOND: Duration = Duration::from_secs(1);

    fn backoff() -> Backoff {
        Backoff {
            initial: 2 * SECOND,
            max: MAX_BACKOFF,
        }
    }

    #[test]
    fn backoff_doubles_per_attempt_between_half_and_all_of_the_ceiling() {
        let b = backoff();
        for (attempt, ceiling) in [(1, 2), (2, 4), (3, 8), (4, 16), (8, 256)] {
            let ceiling = Duration::from_secs(ceiling);
            assert_eq!(b.delay(attempt, 0.0), ceiling / 2, "attempt {attempt}");
            assert_eq!(b.delay(attempt, 1.0), ceiling, "attempt {attempt}");
        }
    }

    #[test]
    fn backoff_never_exceeds_the_cap_even_after_many_failures() {
        let b = backoff();
        for attempt in [9, 10, 31, 32, 1_000, u32::MAX] {
            assert_eq!(b.delay(attempt, 1.0), MAX_BACKOFF, "attempt {attempt}");
            assert_eq!(b.delay(attempt, 0.0), MAX_BACKOFF / 2, "attempt {attempt}");
        }
    }

    #[test]
    fn jitter_spreads_waits_over_the_upper_half_and_out_of_range_jitter_is_clamped() {
        let b = backoff();
        let mut rng = fastrand::Rng::with_seed(7);
        let waits: Vec<Duration> = (0..1_000).map(|_| b.delay(5, rng.f64())).collect();
        let (low, high) = (16 * SECOND, 32 * SECOND);
        assert!(
            waits.iter().all(|w| (low..=high).contains(w)),
            "all in [16 s, 32 s]"
        );
        let min = waits.iter().min().copied().unwrap_or_default();
        let max = waits.iter().max().copied().unwrap_or_default();
        assert!(
            min < 18 * SECOND && max > 30 * SECOND,
            "spread: {min:?}..{max:?}"
        );
        assert_eq!(b.delay(5, -3.0), low);
        assert_eq!(b.delay(5, 42.0), high);
        assert_eq!(b.delay(5, f64::NAN), low);
    }

    fn snapshot() -> Result<PollOutcome> {
        Ok(PollOutcome::Snapshot(Snapshot {
            time: 1_649_392_659,
            records: Vec::new(),
            dropped_unpositioned: 0,
            remaining_credits: None,
        }))
    }

    #[test]
    fn after_a_snapshot_the_next_poll_follows_the_interval() {
        let policy = RetryPolicy::new(10 * SECOND);
        assert_eq!(
            policy.next(&snapshot(), 3, 0.5),
            Next::Poll { after: 10 * SECOND }
        );
    }

    #[test]
    fn a_429_waits_what_the_header_says_regardless_of_backoff() {
        let policy = RetryPolicy::new(10 * SECOND);
        let limited = Ok(PollOutcome::RateLimited {
            retry_after: Some(7 * SECOND),
        });
        assert_eq!(
            policy.next(&limited, 4, 1.0),
            Next::Retry {
                after: 7 * SECOND,
                attempt: 5
            }
        );
    }

    #[test]
    fn a_429_without_the_header_backs_off() {
        let policy = RetryPolicy::new(10 * SECOND);
        let limited = Ok(PollOutcome::RateLimited { retry_after: None });
        assert_eq!(
            policy.next(&limited, 1, 1.0),
            Next::Retry {
                after: 20 * SECOND,
                attempt: 2
            }
        );
    }

    #[test]
    fn a_server_error_backs_off_from_the_interval_and_a_rejection_stops() {
        let policy = RetryPolicy::new(5 * SECOND);
        let server_error = Err(Error::ServerError {
            status: 503,
            url: "http://127.0.0.1/api/states/all".into(),
        });
        assert_eq!(
            policy.next(&server_error, 0, 1.0),
            Next::Retry {
                after: 5 * SECOND,
                attempt: 1
            }
        );
        let rejected = Err(Error::Rejected {
            status: 400,
            url: "http://127.0.0.1/api/states/all".into(),
        });
        assert_eq!(policy.next(&rejected, 0, 1.0), Next::Stop);
    }
}
