//! `/healthz` (the process runs), `/readyz` (the instance is doing its share: PostgreSQL
//! and the broker answer, no write is being retried, and it is not idle while the group's
//! work waits; see [`crate::health`]) and `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use sqlx::PgPool;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::{Error, Result};

/// What the handlers need.
#[derive(Clone)]
pub struct State {
    /// The database pool.
    pub pool: PgPool,
    /// What the consume loop and the group monitor report.
    pub health: Arc<Health>,
    /// The metrics to expose.
    pub metrics: Arc<Metrics>,
}

/// Binds `addr` and serves in the background; returns the bound address.
pub async fn serve(addr: SocketAddr, state: State) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| Error::Http { addr, error })?;
    let bound = listener
        .local_addr()
        .map_err(|error| Error::Http { addr, error })?;
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
    let postgres = match db {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 2 s".into()),
    };
    let verdict = state.health.verdict(Instant::now(), postgres);
    let status = if verdict.not_ready.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, verdict.body())
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
