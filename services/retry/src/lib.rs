//! The one retry policy of the flightdeck services (producer and processor alike): which
//! failures are transient, which are permanent, and how long to wait before trying again.
//!
//! Like Vector's `RetryLogic`, the decision is made once, here, from the error's kind and
//! never from its message text:
//!
//! - **Transient**: the world is briefly unavailable (a connection lost or refused, a
//!   timeout, a server shutting down or restarting, a full disk, a rate limit, a 5xx).
//!   Back off and try the same thing again; commit nothing meanwhile.
//! - **Permanent**: this input is wrong and will stay wrong (PostgreSQL refused a value,
//!   a record too big for any topic). Retrying cannot help: isolate the input, dead-letter
//!   it with its reason, and go on with the rest.
//!
//! For a poller of a remote API (the producer and OpenSky) every answer is transient: a
//! 4xx says the request or the credentials are wrong *now*, and an operator can fix that
//! (a new secret, an unblocked address) while the service keeps trying at a capped
//! backoff; what is permanent there is a record too big for its topic ([`kafka`]).
//!
//! PostgreSQL errors are classified by SQLSTATE class (the first two characters of the
//! code): only classes 22 (data exception), 23 (integrity constraint violation) and 54
//! (program limit exceeded, e.g. an index row too big) are data errors that belong to the
//! rows written. Everything else, including errors that need an operator (a missing table,
//! a revoked privilege), is retried: dead-lettering good records because of a deployment
//! mistake would lose them, and the processor reports the retry on `/readyz` instead.

use std::time::Duration;

use tokio::sync::watch;

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Wait and try the same thing again.
    Transient,
    /// The input itself is at fault: retrying cannot help.
    Permanent,
}

impl Class {
    /// `"transient"` or `"permanent"`, the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
        }
    }
}

/// Classifies a PostgreSQL (sqlx) error by its SQLSTATE class.
pub fn postgres(error: &sqlx::Error) -> Class {
    match error {
        sqlx::Error::Database(db) => db.code().map_or(Class::Transient, |code| sqlstate(&code)),
        // A value sqlx could not even encode can never be written.
        sqlx::Error::Encode(_) => Class::Permanent,
        // Io, Tls, PoolTimedOut, PoolClosed, Protocol (a broken connection), WorkerCrashed
        // and the rest: the connection or the pool, not the data.
        _ => Class::Transient,
    }
}

/// Classifies a SQLSTATE code (`"22021"`, `"08006"` …).
pub fn sqlstate(code: &str) -> Class {
    match code.get(..2) {
        // 22 data exception (a NUL byte, a value out of range, a bad encoding),
        // 23 integrity constraint violation, 54 program limit exceeded (an index row
        // over the btree limit, a statement too complex).
        Some("22" | "23" | "54") => Class::Permanent,
        // 08 connection, 53 insufficient resources (disk full, out of memory, too many
        // connections), 57 operator intervention (admin shutdown, crash shutdown, query
        // canceled), 40 transaction rollback (deadlock, serialization), 58 system error
        // (I/O), 55 object not in prerequisite state (lock not available), XX internal,
        // 42/28 (a missing table, a revoked privilege, bad credentials: an operator fixes
        // them, and no record is to blame): all retried.
        _ => Class::Transient,
    }
}

/// Classifies a Kafka client error, for a record that was being produced.
pub fn kafka(error: &rdkafka::error::KafkaError) -> Class {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match error.rdkafka_error_code() {
        // The record is larger than the producer or the topic accepts: sending it again
        // unchanged fails again.
        Some(Code::MessageSizeTooLarge | Code::InvalidMessageSize | Code::InvalidRecord) => {
            Class::Permanent
        }
        _ => Class::Transient,
    }
}

/// Exponential backoff with "equal jitter": the wait before attempt `n` lies between half
/// and all of `initial * 2^(n-1)`, capped at `max`.
///
/// Half of it is fixed so a retry never comes immediately; the other half is random so
/// many clients that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub initial: Duration,
    /// The ceiling of every wait.
    pub max: Duration,
}

impl Backoff {
    /// The processor's waits on PostgreSQL and Kafka: 0.5 s, 1 s, 2 s … capped at 30 s.
    pub const SERVICE: Self = Self {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(30),
    };

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

    /// [`Self::delay`] with a random jitter.
    pub fn random_delay(&self, attempt: u32) -> Duration {
        self.delay(attempt, fastrand::f64())
    }
}

/// Sleeps for `delay` unless `stop` turns true first; returns whether to go on.
pub async fn sleep_unless_stopped(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        _ = stop.changed() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn data_errors_are_permanent_and_the_rest_transient_by_sqlstate_class() {
        for permanent in ["22021", "22003", "22P05", "23502", "54000"] {
            assert_eq!(sqlstate(permanent), Class::Permanent, "{permanent}");
        }
        for transient in [
            "08006", "08001", "57P01", "57P03", "57014", "53100", "53300", "40P01", "58030",
            "42P01", "42501", "28P01", "XX000", "",
        ] {
            assert_eq!(sqlstate(transient), Class::Transient, "{transient:?}");
        }
    }

    #[test]
    fn connection_and_pool_failures_are_transient() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(postgres(&io), Class::Transient);
        assert_eq!(postgres(&sqlx::Error::PoolTimedOut), Class::Transient);
        assert_eq!(postgres(&sqlx::Error::PoolClosed), Class::Transient);
    }

    #[test]
    fn a_record_too_large_is_permanent_and_a_dead_broker_transient() {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode as Code;
        assert_eq!(
            kafka(&KafkaError::MessageProduction(Code::MessageSizeTooLarge)),
            Class::Permanent
        );
        for code in [
            Code::MessageTimedOut,
            Code::AllBrokersDown,
            Code::BrokerTransportFailure,
            Code::NotEnoughReplicas,
        ] {
            assert_eq!(
                kafka(&KafkaError::MessageProduction(code)),
                Class::Transient,
                "{code:?}"
            );
        }
    }

    fn backoff() -> Backoff {
        Backoff {
            initial: 2 * SECOND,
            max: 300 * SECOND,
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
            assert_eq!(b.delay(attempt, 1.0), b.max, "attempt {attempt}");
            assert_eq!(b.delay(attempt, 0.0), b.max / 2, "attempt {attempt}");
        }
        assert!(Backoff::SERVICE.random_delay(40) <= 30 * SECOND);
    }

    #[test]
    fn jitter_spreads_waits_over_the_upper_half_and_out_of_range_jitter_is_clamped() {
        let b = backoff();
        let mut rng = fastrand::Rng::with_seed(7);
        let waits: Vec<Duration> = (0..1_000).map(|_| b.delay(5, rng.f64())).collect();
        let (low, high) = (16 * SECOND, 32 * SECOND);
        assert!(waits.iter().all(|w| (low..=high).contains(w)));
        let min = waits.iter().min().copied().unwrap_or_default();
        let max = waits.iter().max().copied().unwrap_or_default();
        assert!(min < 18 * SECOND && max > 30 * SECOND, "{min:?}..{max:?}");
        assert_eq!(b.delay(5, -3.0), low);
        assert_eq!(b.delay(5, 42.0), high);
        assert_eq!(b.delay(5, f64::NAN), low);
    }

    #[tokio::test]
    async fn a_stop_cuts_the_sleep_short() {
        let (tx, mut rx) = watch::channel(false);
        let sleeper =
            tokio::spawn(async move { sleep_unless_stopped(3600 * SECOND, &mut rx).await });
        tx.send(true).expect("send");
        assert!(!sleeper.await.expect("joins"));
    }
}
