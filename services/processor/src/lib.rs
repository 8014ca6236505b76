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
pub mod http;
pub mod metrics;
pub mod sink;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;

pub use config::Config;

/// Everything that stops the processor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// PostgreSQL refused or failed a query.
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the migrations failed.
    #[error("migrate flight_data schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A flag or variable has a value that cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// The HTTP listener could not start.
    #[error("serve http on {addr}: {source}")]
    Http {
        /// The address it tried.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Shutdown was requested while a dependency was still unreachable.
    #[error("stopped while {0} was unreachable")]
    Interrupted(&'static str),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Connects to PostgreSQL and the broker (retrying), migrates, serves HTTP and consumes
/// until `shutdown` completes; then finishes the current batch and commits.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Arc::new(metrics::Metrics::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested: finishing the current batch");
        let _ = stop_tx.send(true);
    });
    let pool = sink::connect(&config, stop_rx.clone()).await?;
    sink::migrate(&pool).await?;
    let consumer = consume::connect(&config, metrics.clone(), stop_rx.clone()).await?;
    let dlq = dlq::Dlq::new(&config)?;
    let http = http::serve(
        config.http_addr,
        http::State {
            pool: pool.clone(),
            consumer: consumer.clone(),
            metrics: metrics.clone(),
            topic: config.topic.clone(),
        },
    )
    .await?;
    tracing::info!(
        topic = config.topic,
        group = config.group_id,
        http = %http,
        database = %config.redacted_database_url(),
        "processor running"
    );
    let pipeline = consume::Pipeline {
        consumer,
        dlq,
        pool,
        metrics,
        batch_size: config.batch_size,
        linger: config.batch_linger(),
    };
    pipeline.run(stop_rx).await
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
