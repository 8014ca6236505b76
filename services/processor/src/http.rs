//! `/healthz` (the process runs), `/readyz` (PostgreSQL and the broker answer) and
//! `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use rdkafka::consumer::Consumer;
use sqlx::PgPool;

use crate::consume::LoggedConsumer;
use crate::metrics::Metrics;
use crate::{Error, Result};

/// What the handlers need.
#[derive(Clone)]
pub struct State {
    /// The database pool.
    pub pool: PgPool,
    /// The Kafka consumer, for a metadata round trip.
    pub consumer: Arc<LoggedConsumer>,
    /// The metrics to expose.
    pub metrics: Arc<Metrics>,
    /// The consumed topic.
    pub topic: String,
}

/// Binds `addr` and serves in the background; returns the bound address.
pub async fn serve(addr: SocketAddr, state: State) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Http { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Http { addr, source })?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(%e, "http server stopped");
        }
    });
    Ok(bound)
}

async fn readyz(Extract(state): Extract<State>) -> impl IntoResponse {
    let db = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&state.pool),
    )
    .await;
    let db_ok = matches!(db, Ok(Ok(_)));
    let consumer = state.consumer.clone();
    let topic = state.topic.clone();
    let kafka_ok = tokio::task::spawn_blocking(move || {
        consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(2))
            .is_ok()
    })
    .await
    .unwrap_or(false);
    let body = format!(
        "postgres: {}\nkafka: {}\n",
        if db_ok { "ok" } else { "unreachable" },
        if kafka_ok { "ok" } else { "unreachable" }
    );
    let status = if db_ok && kafka_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

async fn metrics(Extract(state): Extract<State>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
