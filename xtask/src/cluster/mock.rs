//! A scripted Kubernetes API for tests: kube's [`Client`] over a `tower-test` mock
//! service, answering each resource path from a queue of [`Reply`]s.
//!
//! Once a scripted path's queue is empty, its watches never answer (a watch that stays
//! open) and its lists repeat the last list (nothing changes any more). A path that is
//! not scripted answers lists with an empty list, logs with one line and watches never.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One answer of the scripted API.
pub enum Reply {
    /// A list of these objects.
    List(Vec<Value>),
    /// A watch that sends these `(type, object)` events, then ends.
    Watch(Vec<(&'static str, Value)>),
    /// An error `Status` with this HTTP code.
    Status(u16),
}

/// Paths and their replies, in order.
#[derive(Default)]
pub struct Script {
    routes: HashMap<String, VecDeque<Reply>>,
}

impl Script {
    /// Adds `replies` for `path` (e.g. `/apis/apps/v1/namespaces/processing/deployments`).
    pub fn on(mut self, path: &str, replies: impl IntoIterator<Item = Reply>) -> Self {
        self.routes
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
        self
    }
}

/// Every request seen, as `METHOD path?query`.
pub type Log = Arc<Mutex<Vec<String>>>;

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(value).expect("json")))
        .expect("a response")
}

fn status(code: u16) -> Response<Body> {
    let reason = if code == 404 {
        "NotFound"
    } else {
        "InternalError"
    };
    json_response(
        StatusCode::from_u16(code).expect("a status code"),
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("scripted {code}"), "reason": reason, "code": code}),
    )
}

fn list(items: Vec<Value>) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "100"}, "items": items}),
    )
}

/// A client whose requests are answered by `script`, and the log of those requests.
pub fn client(script: Script) -> (Client, Log) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log: Log = Arc::default();
    let seen = log.clone();
    let mut routes = script.routes;
    tokio::spawn(async move {
        // Responders of requests that are never answered: dropping one would fail it.
        let mut open = Vec::new();
        let mut last_lists: HashMap<String, Vec<Value>> = HashMap::new();
        while let Some((request, respond)) = handle.next_request().await {
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or_default().to_owned();
            let watch = query.contains("watch=true");
            seen.lock()
                .expect("log")
                .push(format!("{} {path}?{query}", request.method()));
            let reply = match routes.get_mut(&path) {
                Some(queue) => match queue.pop_front() {
                    Some(reply) => reply,
                    None if watch => {
                        open.push(respond);
                        continue;
                    }
                    None => Reply::List(last_lists.get(&path).cloned().unwrap_or_default()),
                },
                None if watch => {
                    open.push(respond);
                    continue;
                }
                None if path.ends_with("/log") => {
                    respond
                        .send_response(Response::new(Body::from(b"scripted log line\n".to_vec())));
                    continue;
                }
                None => Reply::List(Vec::new()),
            };
            respond.send_response(match reply {
                Reply::List(items) => {
                    last_lists.insert(path, items.clone());
                    list(items)
                }
                Reply::Status(code) => status(code),
                Reply::Watch(events) => {
                    let mut body = Vec::new();
                    for (kind, object) in events {
                        serde_json::to_writer(&mut body, &json!({"type": kind, "object": object}))
                            .expect("json");
                        body.push(b'\n');
                    }
                    Response::new(Body::from(body))
                }
            });
        }
    });
    (Client::new(service, "default"), log)
}

/// An Argo CD Application with this sync and health status.
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

/// A pod with one container that restarted once.
pub fn crashing_pod(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "3"},
        "spec": {"containers": [{"name": "kafka", "image": "quay.io/strimzi/kafka"}]},
        "status": {"containerStatuses": [{"name": "kafka", "restartCount": 1, "ready": false,
            "image": "quay.io/strimzi/kafka", "imageID": "", "started": false}]}})
}
