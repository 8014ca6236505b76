//! The flightdeck processor: `flights` → validation → `flight_data`, invalid records →
//! `flights.dlq`.
//!
//! # Delivery guarantee
//!
//! At least once into an idempotent table. A batch's offsets are committed only after its
//! PostgreSQL transaction has committed and every DLQ record of the batch has been
//! acknowledged by the broker (`acks=all`). A crash at any moment therefore re-delivers at
//! most the uncommitted batch, and `ON CONFLICT (icao24, time_position) DO NOTHING` makes
//! the replay a no-op: the table holds every valid record exactly once. DLQ records may
//! be duplicated by such a replay. This assumes the broker keeps acknowledged records and
//! committed offsets across restarts (Kafka does; tansu does with its sqlite engine).

pub mod config;
pub mod consume;
pub mod dlq;
pub mod group;
pub mod health;
pub mod http;
pub mod metrics;
pub mod sink;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;

pub use config::Config;

/// Everything that stops the processor.
///
/// NB: every variant's message carries its cause, and no variant returns that cause again
/// as its `source()`. The logs show a variant on its own (`%error`), so it must say why;
/// and sqlx's and rdkafka's errors already repeat their own cause as their source, so an
/// error chain (`{:#}`, `{:?}`) walked past our variant would print every cause twice.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// PostgreSQL refused or failed a query.
    #[error("postgres: {0}")]
    Database(sqlx::Error),
    /// Applying the migrations failed.
    #[error("migrate flight_data schema: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(rdkafka::error::KafkaError),
    /// A flag or variable has a value that cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// The HTTP listener could not start.
    #[error("serve http on {addr}: {error}")]
    Http {
        /// The address it tried.
        addr: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// Shutdown was requested while a dependency was still unreachable.
    #[error("stopped while {0} was unreachable")]
    Interrupted(&'static str),
    /// The DLQ topic refused records for too long; nothing past them was committed.
    #[error(
        "could not write rejected records to {topic} for {waited:?}: stopping without \
         committing past them (they are consumed again after a restart): {error}"
    )]
    DlqUnavailable {
        /// The DLQ topic.
        topic: String,
        /// How long sends kept failing.
        waited: std::time::Duration,
        /// The last failure.
        error: rdkafka::error::KafkaError,
    },
    /// Another processor on this machine already runs under this instance id.
    #[error(
        "GROUP_INSTANCE_ID {id:?} is already used by another processor on this machine \
         (lock {}): give every replica its own id", lock.display()
    )]
    InstanceIdInUse {
        /// The clashing id.
        id: String,
        /// The lock file.
        lock: std::path::PathBuf,
    },
    /// The broker fenced this instance: another process uses the same instance id.
    #[error(
        "group.instance.id {id:?} is already used by another processor in group {group}: \
         the broker fenced this one ({detail}); give every replica its own GROUP_INSTANCE_ID"
    )]
    Fenced {
        /// The clashing id.
        id: String,
        /// The group.
        group: String,
        /// librdkafka's words.
        detail: String,
    },
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(error)
    }
}

impl From<rdkafka::error::KafkaError> for Error {
    fn from(error: rdkafka::error::KafkaError) -> Self {
        Self::Kafka(error)
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Connects to PostgreSQL and the broker (retrying), migrates, serves HTTP and consumes
/// until `shutdown` completes; then finishes the current batch and commits.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let _instance = lock_instance_id(&config)?;
    let metrics = Arc::new(metrics::Metrics::new());
    let health = Arc::new(health::Health::new(&config.topic, consume::SESSION_TIMEOUT));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested: finishing the current batch");
        let _ = stop_tx.send(true);
    });
    let pool = sink::connect(&config, stop_rx.clone()).await?;
    sink::migrate(&pool).await?;
    let consumer =
        consume::connect(&config, true, metrics.clone(), health.clone(), &mut stop_rx).await?;
    group::spawn(&config, health.clone(), metrics.clone(), stop_rx.clone())?;
    let dlq = dlq::Dlq::new(&config, metrics.clone(), health.clone())?;
    let http = http::serve(
        config.http_addr,
        http::State {
            pool: pool.clone(),
            health: health.clone(),
            metrics: metrics.clone(),
        },
    )
    .await?;
    tracing::info!(
        topic = config.topic,
        group = config.group_id,
        instance = config.group_instance_id.as_deref().unwrap_or("(dynamic membership)"),
        http = %http,
        database = %config.redacted_database_url(),
        "processor running"
    );
    if config.group_instance_id.is_none() {
        tracing::warn!(
            "GROUP_INSTANCE_ID is not set: dynamic membership, so a restarted processor waits \
             out its predecessor's session before it gets partitions"
        );
    }
    let pipeline = consume::Pipeline {
        config,
        dlq,
        pool,
        metrics,
        health,
    };
    pipeline.run(consumer, stop_rx).await
}

/// Takes a lock named after the brokers, the group and the instance id, so a second processor started with
/// the same id on this machine stops at once naming it (the broker would otherwise fence one
/// of them, or, on brokers that do not fence, let both consume the same partitions). Held
/// until the process exits. Where the lock cannot be created (a read-only root file system,
/// as in the cluster, where pod names are unique anyway) there is no local check.
fn lock_instance_id(config: &Config) -> Result<Option<std::fs::File>> {
    let Some(id) = &config.group_instance_id else {
        return Ok(None);
    };
    // Same id, same group, same brokers: the same member. Another stack on this machine
    // (a test, a second `dev`) may reuse the name.
    let cluster = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&config.bootstrap_servers, &config.group_id).hash(&mut hasher);
        hasher.finish()
    };
    let lock = std::env::temp_dir().join(format!("flightdeck-processor-{cluster:016x}-{id}.lock"));
    let Ok(file) = std::fs::File::create(&lock) else {
        tracing::debug!(lock = %lock.display(), "no instance lock (read-only file system)");
        return Ok(None);
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::InstanceIdInUse {
            id: id.clone(),
            lock,
        }),
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::debug!(%e, lock = %lock.display(), "no instance lock");
            Ok(None)
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    use super::Error;

    /// `error` as `main` shows it: in an anyhow chain, one line (`{:#}`) and the report
    /// (`{:?}`).
    fn shown(error: Error) -> [String; 2] {
        let error = anyhow::Error::from(error).context("run the processor");
        [format!("{error:#}"), format!("{error:?}")]
    }

    #[test]
    fn every_cause_is_shown_once_in_an_error_chain() {
        let cases = [
            (
                Error::from(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "connection refused by 10.0.0.7",
                ))),
                "connection refused by 10.0.0.7",
            ),
            (
                Error::from(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::BrokerTransportFailure,
                )),
                "Broker transport failure",
            ),
            (
                Error::DlqUnavailable {
                    topic: "flights.dlq".into(),
                    waited: std::time::Duration::from_secs(300),
                    error: KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                },
                "Message size too large",
            ),
        ];
        for (error, cause) in cases {
            for text in shown(error) {
                assert_eq!(text.matches(cause).count(), 1, "{text}");
            }
        }
    }

    #[test]
    fn an_error_chain_reads_as_one_sentence_per_cause() {
        let error = Error::Http {
            addr: ([127, 0, 0, 1], 8080).into(),
            error: std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use"),
        };
        let [line, report] = shown(error);
        assert_eq!(
            line,
            "run the processor: serve http on 127.0.0.1:8080: address in use"
        );
        // NB: a prefix and a count: with RUST_BACKTRACE set, anyhow appends a backtrace.
        assert!(
            report.starts_with(
                "run the processor\n\nCaused by:\n    serve http on 127.0.0.1:8080: address in use"
            ),
            "{report}"
        );
        assert_eq!(report.matches("address in use").count(), 1, "{report}");
    }
}
