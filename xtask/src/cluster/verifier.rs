//! A verifier of the Kubernetes API calls a test scenario makes, in the style of kube-rs'
//! controller-rs `fixtures.rs`: the scenario lists the requests it expects, in order
//! (method, path, the query parameters and body fields that matter), each with its
//! answer. A request that is not the next one expected is a failure, and so is an
//! expected request that never came; [`Verifier::finish`] reports both.
//!
//! Requests travel over real HTTP/1.1 on in-memory pipes: every call of the client gets
//! its own hyper client connection to a hyper server that plays the scenario. That keeps
//! the tests deterministic under tokio's paused clock, and lets a port-forward upgrade to
//! a WebSocket exactly as it does against an API server.
//!
//! Watches from several watchers run concurrently, so their order relative to each other
//! is not the code's to decide: a scenario can put exchanges in named lanes
//! ([`Scenario::lane`]). Order is enforced within a lane; lanes interleave freely. A
//! sequential scenario uses one lane, so its whole order is checked.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use kube::client::Body;
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Message, protocol::Role};

/// What a request must look like.
#[derive(Debug, Clone)]
pub struct Expect {
    method: Method,
    path: String,
    /// `Some(true)`: a watch (`watch=true`); `Some(false)`: not a watch; `None`: either.
    watch: Option<bool>,
    query: Vec<(String, String)>,
    body: Vec<(String, Value)>,
}

impl Expect {
    fn new(method: Method, path: &str, watch: Option<bool>) -> Self {
        Self {
            method,
            path: path.to_owned(),
            watch,
            query: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `GET path` that is not a watch: a list, or a get of one object.
    pub fn get(path: &str) -> Self {
        Self::new(Method::GET, path, Some(false))
    }

    /// `GET path?watch=true`.
    pub fn watch(path: &str) -> Self {
        Self::new(Method::GET, path, Some(true))
    }

    /// `POST path`.
    pub fn post(path: &str) -> Self {
        Self::new(Method::POST, path, None)
    }

    /// `PATCH path`.
    pub fn patch(path: &str) -> Self {
        Self::new(Method::PATCH, path, None)
    }

    /// `DELETE path`.
    pub fn delete(path: &str) -> Self {
        Self::new(Method::DELETE, path, None)
    }

    /// The query parameter `key` must be `value`.
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The JSON body's value at `pointer` (RFC 6901, e.g. `/spec/replicas`) must be `value`.
    pub fn body(mut self, pointer: &str, value: Value) -> Self {
        self.body.push((pointer.to_owned(), value));
        self
    }

    /// Answers the request with `reply`.
    pub fn reply(self, reply: Reply) -> Exchange {
        Exchange {
            expect: self,
            reply,
            optional: false,
            repeated: false,
        }
    }

    /// Whether `seen` is this request; `Err` says what differs.
    fn check(&self, seen: &Seen) -> Result<(), String> {
        if seen.method != self.method || seen.path != self.path {
            return Err(format!("expected {self}"));
        }
        let watch = seen.query_value("watch") == Some("true");
        if let Some(expected) = self.watch
            && expected != watch
        {
            return Err(format!("expected {self}"));
        }
        for (key, value) in &self.query {
            if seen.query_value(key) != Some(value.as_str()) {
                return Err(format!("query `{key}` should be `{value}` ({self})"));
            }
        }
        for (pointer, value) in &self.body {
            let found = seen.body.as_ref().and_then(|b| b.pointer(pointer));
            if found != Some(value) {
                return Err(format!(
                    "body at `{pointer}` should be {value}, is {} ({self})",
                    found.map_or("absent".to_owned(), Value::to_string)
                ));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        match self.watch {
            Some(true) => write!(f, " (watch)")?,
            Some(false) if self.method == Method::GET => write!(f, " (no watch)")?,
            _ => {}
        }
        for (key, value) in &self.query {
            write!(f, " {key}={value}")?;
        }
        for (pointer, value) in &self.body {
            write!(f, " body{pointer}={value}")?;
        }
        Ok(())
    }
}

/// The answer to an expected request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `200` with this JSON object.
    Json(Value),
    /// `200` with a list of these items (resourceVersion 100).
    List(Vec<Value>),
    /// A watch stream with these `(type, object)` events that then ends.
    Events(Vec<(&'static str, Value)>),
    /// A watch stream with these events that then stays open, saying nothing more.
    EventsThenOpen(Vec<(&'static str, Value)>),
    /// `200` with this text (a container log).
    Text(String),
    /// A `Status` error with this HTTP code.
    Status(u16),
    /// No answer at all: the request hangs (an API server that stopped answering).
    Hang,
    /// `101 Switching Protocols` to a port-forward of `port` that echoes what it receives.
    EchoPort(u16),
}

/// One expected request and its answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    expect: Expect,
    reply: Reply,
    /// Not a failure when it never comes.
    optional: bool,
    repeated: bool,
}

impl Exchange {
    /// Any number of times, none included, as the last exchange of a lane: a watch in
    /// its steady state, which the watcher opens again each time its idle timeout (the
    /// 290 s of `timeoutSeconds` plus a margin) ends it.
    pub fn repeatedly(mut self) -> Self {
        self.optional = true;
        self.repeated = true;
        self
    }
}

/// Every expected exchange, by lane.
#[derive(Debug, Default)]
pub struct Scenario {
    lanes: BTreeMap<String, VecDeque<Exchange>>,
}

/// The lane of sequential scenarios.
const MAIN: &str = "main";

impl Scenario {
    /// An empty scenario: any request fails it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Expects `exchange` after everything added so far to the main lane.
    pub fn then(self, exchange: Exchange) -> Self {
        self.lane(MAIN, [exchange])
    }

    /// Expects `exchanges`, in order, in the lane `name` (order across lanes is free).
    pub fn lane(mut self, name: &str, exchanges: impl IntoIterator<Item = Exchange>) -> Self {
        self.lanes
            .entry(name.to_owned())
            .or_default()
            .extend(exchanges);
        self
    }

    /// Expects every exchange of `exchanges` in the main lane.
    pub fn then_all(self, exchanges: impl IntoIterator<Item = Exchange>) -> Self {
        self.lane(MAIN, exchanges)
    }
}

/// A request as it arrived.
struct Seen {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
}

impl Seen {
    fn query_value(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if !self.query.is_empty() {
            let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, "?{}", query.join("&"))?;
        }
        if let Some(body) = &self.body {
            let text = body.to_string();
            let short: String = text.chars().take(300).collect();
            write!(f, " {short}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct State {
    lanes: BTreeMap<String, VecDeque<Exchange>>,
    failures: Vec<String>,
    /// Every request, as seen, for the failure report.
    seen: Vec<String>,
}

impl State {
    /// The reply for `seen`, or a failure.
    fn answer(&mut self, seen: &Seen) -> Result<Reply, String> {
        self.seen.push(seen.to_string());
        let mut mismatches = Vec::new();
        for (lane, queue) in &mut self.lanes {
            let Some(head) = queue.front() else { continue };
            match head.expect.check(seen) {
                Ok(()) if head.repeated => return Ok(head.reply.clone()),
                Ok(()) => return Ok(queue.pop_front().expect("a head").reply),
                Err(why) => mismatches.push(format!("lane {lane}: {why}")),
            }
        }
        // Not next in any lane: later in one (out of order), or not expected at all.
        let later = self.lanes.iter().find_map(|(lane, queue)| {
            queue
                .iter()
                .skip(1)
                .position(|e| e.expect.check(seen).is_ok())
                .map(|i| (lane.clone(), i + 1))
        });
        let failure = match later {
            Some((lane, position)) => format!(
                "out of order: {seen} came {position} request(s) early in lane {lane}; still expected first: {}",
                mismatches.join("; ")
            ),
            None if mismatches.is_empty() => {
                format!("unexpected: {seen} (every expected request was already made)")
            }
            None => format!("unexpected: {seen}; {}", mismatches.join("; ")),
        };
        self.failures.push(failure.clone());
        Err(failure)
    }
}

/// The scripted API server: a kube [`kube::Client`] talks to it.
#[derive(Clone)]
pub struct Verifier {
    state: Arc<Mutex<State>>,
}

impl Verifier {
    /// A client whose requests are checked against `scenario`, and its verifier.
    pub fn start(scenario: Scenario) -> (kube::Client, Verifier) {
        let verifier = Verifier {
            state: Arc::new(Mutex::new(State {
                lanes: scenario.lanes,
                ..State::default()
            })),
        };
        let client = kube::Client::new(Transport(verifier.clone()), "default");
        (client, verifier)
    }

    /// Panics with every unexpected, out-of-order or missing request.
    pub fn finish(&self) {
        if let Err(report) = self.check() {
            panic!("{report}");
        }
    }

    /// `Err` with a report of every unexpected, out-of-order or missing request.
    pub fn check(&self) -> Result<(), String> {
        let state = self.state.lock().expect("verifier state");
        let missing: Vec<String> = state
            .lanes
            .iter()
            .flat_map(|(lane, queue)| {
                queue
                    .iter()
                    .filter(|e| !e.optional)
                    .map(move |e| format!("lane {lane}: {}", e.expect))
            })
            .collect();
        if state.failures.is_empty() && missing.is_empty() {
            return Ok(());
        }
        let mut report = String::from("the Kubernetes API calls differ from the scenario\n");
        for failure in &state.failures {
            let _ = writeln!(report, "  {failure}");
        }
        for expected in &missing {
            let _ = writeln!(report, "  missing: {expected}");
        }
        let _ = writeln!(report, "requests made, in order:");
        for seen in &state.seen {
            let _ = writeln!(report, "  {seen}");
        }
        Err(report)
    }

    /// Every request made so far, as `METHOD path?query body`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().expect("verifier state").seen.clone()
    }
}

type ServerBody = BoxBody<Bytes, Infallible>;

/// The tower service of the client: one in-memory HTTP/1.1 connection per request.
#[derive(Clone)]
struct Transport(Verifier);

impl tower::Service<Request<Body>> for Transport {
    type Response = Response<Incoming>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let verifier = self.0.clone();
        Box::pin(async move {
            let (client_io, server_io) = tokio::io::duplex(1 << 20);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let verifier = verifier.clone();
                    async move { Ok::<_, Infallible>(verifier.serve(request).await) }
                });
                // NB: an error here is the client dropping a watch it no longer needs.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(server_io), service)
                    .with_upgrades()
                    .await;
            });
            let (mut send, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(client_io)).await?;
            tokio::spawn(async move {
                let _ = connection.with_upgrades().await;
            });
            Ok(send.send_request(request).await?)
        })
    }
}

impl Verifier {
    /// Plays the scenario for one request.
    async fn serve(&self, request: Request<Incoming>) -> Response<ServerBody> {
        let (parts, body) = request.into_parts();
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let seen = Seen {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            body: serde_json::from_slice(&bytes).ok(),
        };
        let reply = self.state.lock().expect("verifier state").answer(&seen);
        match reply {
            Ok(reply) => respond(reply, Request::from_parts(parts, ())).await,
            Err(failure) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &status_object(500, &format!("verifier: {failure}")),
            ),
        }
    }
}

fn full(bytes: impl Into<Bytes>) -> ServerBody {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: StatusCode, value: &Value) -> Response<ServerBody> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(full(serde_json::to_vec(value).expect("json")))
        .expect("a response")
}

fn status_object(code: u16, message: &str) -> Value {
    let reason = match code {
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        _ => "InternalError",
    };
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
}

fn events_body(events: Vec<(&'static str, Value)>, stay_open: bool) -> ServerBody {
    let frames = events.into_iter().map(|(kind, object)| {
        let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("json");
        line.push(b'\n');
        Ok::<_, Infallible>(Frame::data(Bytes::from(line)))
    });
    let stream = futures::stream::iter(frames);
    if stay_open {
        BodyExt::boxed(StreamBody::new(stream.chain(futures::stream::pending())))
    } else {
        BodyExt::boxed(StreamBody::new(stream))
    }
}

async fn respond(reply: Reply, request: Request<()>) -> Response<ServerBody> {
    match reply {
        Reply::Json(value) => json_response(StatusCode::OK, &value),
        Reply::List(items) => json_response(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "List",
                "metadata": {"resourceVersion": "100"}, "items": items}),
        ),
        Reply::Events(events) => Response::new(events_body(events, false)),
        Reply::EventsThenOpen(events) => Response::new(events_body(events, true)),
        Reply::Text(text) => Response::new(full(text)),
        Reply::Status(code) => json_response(
            StatusCode::from_u16(code).expect("a status code"),
            &status_object(code, &format!("scripted {code}")),
        ),
        Reply::Hang => std::future::pending().await,
        Reply::EchoPort(port) => echo_port(request, port),
    }
}

/// Accepts the WebSocket upgrade of a port-forward and echoes the data channel.
fn echo_port(mut request: Request<()>, port: u16) -> Response<ServerBody> {
    let key = request
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
        .unwrap_or_default();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        // As the kubelet does: the first frame of each channel (data 0, error 1) names
        // the port, little-endian.
        let [low, high] = port.to_le_bytes();
        for channel in [0u8, 1] {
            if socket
                .send(Message::binary(vec![channel, low, high]))
                .await
                .is_err()
            {
                return;
            }
        }
        while let Some(Ok(message)) = socket.next().await {
            let echo = match message {
                Message::Binary(data) if data.first() == Some(&0) && data.len() > 1 => data,
                Message::Close(_) => return,
                _ => continue,
            };
            if socket.send(Message::binary(echo.to_vec())).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", "v4.channel.k8s.io")
        .body(full(Bytes::new()))
        .expect("a response")
}

/// A list response's item: an Argo CD Application with this sync and health status.
pub fn application(name: &str, sync: &str, health: &str, version: u32) -> Value {
    let mut status = json!({"sync": {"status": sync}, "health": {"status": health}});
    if health != "Missing" {
        status["operationState"] = json!({"phase": "Succeeded", "message": "successfully synced"});
    }
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd", "resourceVersion": version.to_string()},
        "spec": {"destination": {"namespace": name}},
        "status": status})
}

/// [`application`] synced from `repo` at `revision`.
pub fn application_at(name: &str, repo: &str, revision: &str, version: u32) -> Value {
    let mut app = application(name, "Synced", "Healthy", version);
    app["spec"]["source"] = json!({"repoURL": repo, "path": format!("infrastructure/k8s/{name}")});
    app["status"]["sync"]["revision"] = json!(revision);
    app
}

/// A Strimzi Kafka whose Ready condition is `ready`.
pub fn kafka(ready: bool) -> Value {
    json!({"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "Kafka",
        "metadata": {"name": "flightdeck", "namespace": "kafka", "resourceVersion": "7", "generation": 1},
        "status": {"observedGeneration": 1, "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

/// An available Deployment.
pub fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "processing", "resourceVersion": "9", "generation": 1},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": 1,
            "conditions": [{"type": "Available", "status": "True"}]}})
}

/// A pod with one container `container` that restarted once.
pub fn crashing_pod(namespace: &str, name: &str, container: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "3"},
        "spec": {"containers": [{"name": container, "image": "quay.io/strimzi/kafka"}]},
        "status": {"containerStatuses": [{"name": container, "restartCount": 1, "ready": false,
            "image": "quay.io/strimzi/kafka", "imageID": "", "started": false}]}})
}

/// The resources forensics saves (see `forensics::RESOURCES`), as their collection paths.
pub fn forensics_paths(namespace: &str) -> Vec<String> {
    super::forensics::RESOURCES
        .iter()
        .map(|&(group, version, _, plural)| {
            if group.is_empty() {
                format!("/api/{version}/namespaces/{namespace}/{plural}")
            } else {
                format!("/apis/{group}/{version}/namespaces/{namespace}/{plural}")
            }
        })
        .collect()
}

/// The requests forensics makes for `namespace`, where `pods` are its pods (each with
/// one container that restarted once, so two logs each), answered with `objects` for the
/// pods list and empty lists elsewhere.
pub fn forensics_exchanges(namespace: &str, pods: &[(&str, &str)]) -> Vec<Exchange> {
    let pod_objects: Vec<Value> = pods
        .iter()
        .map(|(pod, container)| crashing_pod(namespace, pod, container))
        .collect();
    let mut out = vec![
        Expect::get(&format!("/api/v1/namespaces/{namespace}/events")).reply(Reply::List(vec![
            json!({"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": "e1", "namespace": namespace},
                "involvedObject": {"kind": "Pod", "name": "x"},
                "reason": "BackOff", "message": "Back-off restarting failed container",
                "type": "Warning", "count": 3, "lastTimestamp": "2026-01-01T00:00:00Z"}),
        ])),
    ];
    for path in forensics_paths(namespace) {
        let items = if path.ends_with("/pods") {
            pod_objects.clone()
        } else {
            Vec::new()
        };
        out.push(Expect::get(&path).reply(Reply::List(items)));
    }
    out.push(
        Expect::get(&format!("/api/v1/namespaces/{namespace}/pods"))
            .reply(Reply::List(pod_objects)),
    );
    for (pod, container) in pods {
        let log = format!("/api/v1/namespaces/{namespace}/pods/{pod}/log");
        out.push(
            Expect::get(&log)
                .query("container", container)
                .reply(Reply::Text("scripted log line\n".into())),
        );
        out.push(
            Expect::get(&log)
                .query("container", container)
                .query("previous", "true")
                .reply(Reply::Text("scripted previous log line\n".into())),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    //! The verifier itself: it must fail on each kind of mistake it exists to catch.

    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams};

    use super::*;

    const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/processing/deployments";

    async fn scale(client: &kube::Client, name: &str, replicas: i32) -> kube::Result<Deployment> {
        let api: Api<Deployment> = Api::namespaced(client.clone(), "processing");
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
    }

    fn expect_scale(name: &str, replicas: i32) -> Exchange {
        Expect::patch(&format!("{DEPLOYMENTS}/{name}"))
            .body("/spec/replicas", json!(replicas))
            .reply(Reply::Json(deployment(name)))
    }

    #[tokio::test]
    async fn the_expected_requests_in_order_pass() {
        let (client, verifier) = Verifier::start(
            Scenario::new()
                .then(expect_scale("producer", 0))
                .then(expect_scale("processor", 2)),
        );
        scale(&client, "producer", 0).await.expect("scaled");
        scale(&client, "processor", 2).await.expect("scaled");
        verifier.finish();
    }

    #[tokio::test]
    async fn a_missing_request_fails() {
        let (client, verifier) = Verifier::start(
            Scenario::new()
                .then(expect_scale("producer", 0))
                .then(expect_scale("processor", 2)),
        );
        scale(&client, "producer", 0).await.expect("scaled");
        let report = verifier
            .check()
            .expect_err("the processor was never scaled");
        assert!(
            report.contains("missing: lane main: PATCH /apis/apps/v1/namespaces/processing/deployments/processor body/spec/replicas=2"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn an_unexpected_request_fails_and_is_answered_with_an_error() {
        let (client, verifier) = Verifier::start(Scenario::new().then(expect_scale("producer", 0)));
        scale(&client, "producer", 0).await.expect("scaled");
        let error = scale(&client, "producer", 1)
            .await
            .expect_err("an unexpected request gets a 500");
        assert!(
            error.to_string().contains("verifier: unexpected"),
            "{error}"
        );
        let report = verifier.check().expect_err("one request too many");
        assert!(report.contains("unexpected: PATCH"), "{report}");
    }

    #[tokio::test]
    async fn requests_out_of_order_fail() {
        let (client, verifier) = Verifier::start(
            Scenario::new()
                .then(expect_scale("producer", 0))
                .then(expect_scale("processor", 2)),
        );
        let _ = scale(&client, "processor", 2).await;
        let report = verifier.check().expect_err("processor before producer");
        assert!(report.contains("out of order"), "{report}");
    }

    #[tokio::test]
    async fn a_wrong_body_field_fails() {
        let (client, verifier) = Verifier::start(Scenario::new().then(expect_scale("producer", 0)));
        let _ = scale(&client, "producer", 1).await;
        let report = verifier.check().expect_err("replicas 1, not 0");
        assert!(
            report.contains("body at `/spec/replicas` should be 0, is 1"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn lanes_interleave_but_keep_their_own_order() {
        let (client, verifier) = Verifier::start(
            Scenario::new()
                .lane(
                    "a",
                    [expect_scale("producer", 0), expect_scale("producer", 1)],
                )
                .lane("b", [expect_scale("processor", 2)]),
        );
        scale(&client, "producer", 0).await.expect("a first");
        scale(&client, "processor", 2).await.expect("b in between");
        scale(&client, "producer", 1).await.expect("a second");
        verifier.finish();
    }
}
