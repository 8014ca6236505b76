//! The live producer's `/healthz` (the process runs), `/readyz` (a Kafka broker answers:
//! OpenSky being down or refusing is not the producer being unready, it is retried) and
//! `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::kafka::FlightProducer;
use crate::metrics::Metrics;
use crate::{Error, Result};

/// What the handlers need.
#[derive(Clone)]
pub struct State {
    /// A producer client of its own, for the metadata round trip of `/readyz`.
    pub kafka: Arc<FlightProducer>,
    /// The metrics to expose.
    pub metrics: Arc<Metrics>,
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
    match state.kafka.reachable(Duration::from_secs(2)).await {
        Ok(()) => (StatusCode::OK, "ready\nkafka: ok\n".to_owned()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: kafka unreachable: {e}\nkafka: {e}\n"),
        ),
    }
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
