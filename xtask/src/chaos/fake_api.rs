//! A fake OpenSky API on a local port: serves recorded-shaped snapshots in order and, when
//! told, the faults the live producer must survive (429 with Retry-After, 5xx, 4xx, a hang,
//! a truncated body, an HTML page, a huge body, a token endpoint answering 401).
//!
//! It keeps what it served, so a scenario's expected rows come from the snapshots the
//! producer actually fetched, and when each request came, so waits can be checked.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

/// What the next request to `/api/states/all` gets instead of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This status with an empty body.
    Status(u16),
    /// 429 with `X-Rate-Limit-Retry-After-Seconds`.
    RateLimit(u64),
    /// No answer for this long.
    Hang(Duration),
    /// The first half of the next snapshot (which is served whole later).
    Truncated,
    /// A proxy's HTML error page with status 200.
    Html,
    /// A 200 body of this many bytes that is not JSON.
    Huge(usize),
}

/// One request the API answered.
#[derive(Debug, Clone)]
pub struct Request {
    /// When it came.
    pub at: Instant,
    /// `states` or `token`.
    pub path: &'static str,
    /// What it got: `snapshot`, `429`, `hang` …
    pub answer: String,
}

#[derive(Debug, Default)]
struct Inner {
    snapshots: VecDeque<Vec<u8>>,
    served: Vec<Vec<u8>>,
    faults: VecDeque<Fault>,
    token_faults: VecDeque<u16>,
    requests: Vec<Request>,
}

/// The running fake API; it stops with the runtime that serves it.
#[derive(Debug, Clone)]
pub struct FakeApi {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl FakeApi {
    /// Serves `snapshots` in order on a free local port; once they are all served it
    /// answers 429 with a 5 s Retry-After.
    pub async fn start(snapshots: Vec<Vec<u8>>) -> anyhow::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner {
            snapshots: snapshots.into(),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/api/states/all", get(states))
            .route("/token", post(token))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, inner })
    }

    /// `http://127.0.0.1:PORT/api`, the producer's `OPENSKY_API_URL`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The token endpoint, the producer's `OPENSKY_TOKEN_URL`.
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Queues faults for the next state requests, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.with(|i| i.faults.extend(faults));
    }

    /// Queues statuses for the next token requests, in order.
    pub fn inject_token(&self, statuses: impl IntoIterator<Item = u16>) {
        self.with(|i| i.token_faults.extend(statuses));
    }

    /// The snapshots served so far.
    pub fn served(&self) -> Vec<Vec<u8>> {
        self.with(|i| i.served.clone())
    }

    /// How many snapshots are still to serve.
    pub fn remaining(&self) -> usize {
        self.with(|i| i.snapshots.len())
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.with(|i| i.requests.clone())
    }
}

type Shared = Arc<Mutex<Inner>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

async fn states(State(shared): State<Shared>) -> Response {
    let (fault, next) = {
        let mut inner = lock(&shared);
        let fault = inner.faults.pop_front();
        let next = match &fault {
            None => inner.snapshots.pop_front(),
            Some(Fault::Truncated) => inner.snapshots.front().cloned(),
            Some(_) => None,
        };
        if fault.is_none()
            && let Some(body) = &next
        {
            inner.served.push(body.clone());
        }
        let answer = match (&fault, &next) {
            (None, Some(_)) => "snapshot".to_owned(),
            (None, None) => "429 (all served)".to_owned(),
            (Some(f), _) => format!("{f:?}"),
        };
        inner.requests.push(Request {
            at: Instant::now(),
            path: "states",
            answer,
        });
        (fault, next)
    };
    match (fault, next) {
        (None, Some(body)) => json(body),
        (None, None) => rate_limited(5),
        (Some(Fault::RateLimit(secs)), _) => rate_limited(secs),
        (Some(Fault::Status(status)), _) => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        (Some(Fault::Hang(how_long)), _) => {
            tokio::time::sleep(how_long).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        (Some(Fault::Truncated), body) => {
            let body = body.unwrap_or_else(|| b"{\"time\":1,\"states\":[]}".to_vec());
            json(body[..body.len() / 2].to_vec())
        }
        (Some(Fault::Html), _) => Response::builder()
            .header(header::CONTENT_TYPE, "text/html")
            .body(Body::from(
                "<html><body><h1>502 Bad Gateway</h1>nginx</body></html>",
            ))
            .unwrap_or_default(),
        (Some(Fault::Huge(bytes)), _) => {
            let mut body = vec![b' '; bytes];
            body[0] = b'<';
            json(body)
        }
    }
}

fn rate_limited(secs: u64) -> Response {
    Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header("X-Rate-Limit-Retry-After-Seconds", secs.to_string())
        .body(Body::empty())
        .unwrap_or_default()
}

fn json(body: Vec<u8>) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

async fn token(State(shared): State<Shared>) -> Response {
    let fault = {
        let mut inner = lock(&shared);
        let fault = inner.token_faults.pop_front();
        inner.requests.push(Request {
            at: Instant::now(),
            path: "token",
            answer: fault.map_or("token".into(), |s| s.to_string()),
        });
        fault
    };
    match fault {
        Some(status) => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::UNAUTHORIZED)
            .into_response(),
        None => json(
            br#"{"access_token":"chaos-token","expires_in":1800,"token_type":"Bearer"}"#.to_vec(),
        ),
    }
}
