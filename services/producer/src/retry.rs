//! When to poll OpenSky again, as pure functions: the caller passes the jitter, so the
//! policy is tested without clocks or randomness.
//!
//! After a snapshot the next poll follows the interval. After a 429 the producer waits
//! what `X-Rate-Limit-Retry-After-Seconds` says, or backs off when the header is absent.
//! After any other failure (a 4xx or 5xx, a timeout, no connection, an undecodable body,
//! refused credentials) it backs off exponentially with jitter ([`::retry::Backoff`],
//! the services' one backoff), capped at [`MAX_BACKOFF`]: the live producer never exits
//! on what OpenSky answers.

use std::time::Duration;

use crate::Result;
use crate::opensky::PollOutcome;

/// The longest wait between two attempts after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub use ::retry::Backoff;

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
            Err(_) => Next::Retry {
                after: self.backoff.delay(attempt, jitter),
                attempt,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::opensky::Snapshot;

    const SECOND: Duration = Duration::from_secs(1);

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
    fn a_server_error_and_a_rejection_both_back_off_from_the_interval() {
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
        assert_eq!(
            policy.next(&rejected, 7, 1.0),
            Next::Retry {
                after: MAX_BACKOFF,
                attempt: 8
            },
            "a 4xx is retried too, at the capped backoff"
        );
    }
}
