//! What "ready" means for each kind of object `cargo xtask up` waits for, read from the
//! object's own status the way its operator reports it.
//!
//! | kind | ready when |
//! |---|---|
//! | Argo CD `Application` | `status.sync.status` is `Synced` and `status.health.status` is `Healthy` |
//! | Strimzi `Kafka` | condition `Ready` is `True` for the current `metadata.generation` |
//! | CloudNativePG `Cluster` | condition `Ready` is `True` |
//! | `Deployment` | condition `Available` is `True` and every replica is updated and available |

use std::fmt;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

use super::str_at;

/// A kind of object the platform is ready when every one of them is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `argoproj.io/v1alpha1` `Application`.
    Application,
    /// `kafka.strimzi.io/v1beta2` `Kafka`.
    Kafka,
    /// `postgresql.cnpg.io/v1` `Cluster`.
    PgCluster,
    /// `apps/v1` `Deployment`.
    Deployment,
}

impl Kind {
    /// The API resource to list and watch.
    pub fn api_resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            Kind::Application => ("argoproj.io", "v1alpha1", "Application", "applications"),
            Kind::Kafka => ("kafka.strimzi.io", "v1beta2", "Kafka", "kafkas"),
            Kind::PgCluster => ("postgresql.cnpg.io", "v1", "Cluster", "clusters"),
            Kind::Deployment => ("apps", "v1", "Deployment", "deployments"),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    /// The CustomResourceDefinition that must exist before the kind can be watched.
    pub fn crd(self) -> Option<String> {
        let resource = self.api_resource();
        (!resource.group.starts_with("apps"))
            .then(|| format!("{}.{}", resource.plural, resource.group))
    }

    /// The name people know the kind by.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Application => "Application",
            Kind::Kafka => "Kafka",
            Kind::PgCluster => "Cluster",
            Kind::Deployment => "Deployment",
        }
    }
}

/// One object `up` waits for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ComponentId {
    /// A component of `kind` at `namespace/name`.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind.label(), self.namespace, self.name)
    }
}

/// Where a component is on its way to ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The object does not exist (yet), or its kind is not installed yet.
    Missing,
    /// It exists and is on its way.
    Progressing,
    /// It reports a failure; it may still recover (operators retry).
    Failing,
    /// Ready, as defined in the module docs.
    Ready,
}

/// What a component's status says, summarised for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Where it is.
    pub phase: Phase,
    /// One line, e.g. `OutOfSync/Progressing` or `Cluster in healthy state`.
    pub summary: String,
    /// The reasons: conditions and messages that are not plain "all good".
    pub conditions: Vec<String>,
    /// Whether its controller has started on it (an Argo CD sync ran, or the object
    /// exists for the other kinds): the per-component timeout runs from then on.
    pub started: bool,
}

impl State {
    /// A component that does not exist, with why.
    pub fn missing(summary: impl Into<String>) -> Self {
        Self {
            phase: Phase::Missing,
            summary: summary.into(),
            conditions: Vec::new(),
            started: false,
        }
    }
}

/// The state of `object`, an object of `kind`.
pub fn evaluate(kind: Kind, object: &DynamicObject) -> State {
    let status = object.data.get("status").unwrap_or(&Value::Null);
    let generation = object.metadata.generation;
    match kind {
        Kind::Application => application(status),
        Kind::Kafka => ready_condition(status, generation, |_| None),
        Kind::PgCluster => ready_condition(status, None, |status| {
            str_at(status, &["phase"]).map(str::to_owned)
        }),
        Kind::Deployment => deployment(object.data.get("spec"), status, generation),
    }
}

/// Every condition of `status` as `Type=Status (Reason): message`.
fn conditions(status: &Value) -> Vec<(String, String, String)> {
    status
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let field = |k| str_at(c, &[k]).unwrap_or_default().to_owned();
            let mut detail = field("reason");
            let message = field("message");
            if !message.is_empty() {
                detail = if detail.is_empty() {
                    message
                } else {
                    format!("{detail}: {message}")
                };
            }
            (field("type"), field("status"), detail)
        })
        .collect()
}

fn application(status: &Value) -> State {
    let sync = str_at(status, &["sync", "status"]).unwrap_or("Unknown");
    let health = str_at(status, &["health", "status"]).unwrap_or("Unknown");
    let mut reasons: Vec<String> = conditions(status)
        .into_iter()
        .map(|(kind, _, detail)| format!("{kind}: {detail}"))
        .collect();
    if let Some(message) = str_at(status, &["health", "message"]) {
        reasons.push(format!("health: {message}"));
    }
    let operation = str_at(status, &["operationState", "phase"]);
    if let (Some(phase), Some(message)) =
        (operation, str_at(status, &["operationState", "message"]))
        && phase != "Succeeded"
    {
        reasons.push(format!("sync operation {phase}: {message}"));
    }
    let failed_operation = matches!(operation, Some("Failed" | "Error"));
    let phase = if sync == "Synced" && health == "Healthy" {
        Phase::Ready
    } else if health == "Degraded"
        || failed_operation
        || reasons.iter().any(|r| r.contains("Error"))
    {
        Phase::Failing
    } else {
        Phase::Progressing
    };
    State {
        phase,
        summary: format!("{sync}/{health}"),
        conditions: reasons,
        started: operation.is_some() || !matches!(health, "Missing" | "Unknown"),
    }
}

/// Strimzi and CloudNativePG: a `Ready` condition, plus an optional phase line.
fn ready_condition(
    status: &Value,
    generation: Option<i64>,
    summary: impl Fn(&Value) -> Option<String>,
) -> State {
    let all = conditions(status);
    let ready = all
        .iter()
        .any(|(kind, value, _)| kind == "Ready" && value == "True");
    // A Ready condition about an older spec does not count (Strimzi keeps it while it
    // rolls the brokers after a change).
    let observed = status.get("observedGeneration").and_then(Value::as_i64);
    let current = match (generation, observed) {
        (Some(generation), Some(observed)) => observed >= generation,
        _ => true,
    };
    let reasons: Vec<String> = all
        .iter()
        .filter(|(_, value, _)| !(value == "True" && ready))
        .map(|(kind, value, detail)| format!("{kind}={value}: {detail}"))
        .collect();
    let phase = if ready && current {
        Phase::Ready
    } else {
        Phase::Progressing
    };
    let summary = summary(status).unwrap_or_else(|| match phase {
        Phase::Ready => "Ready".to_owned(),
        _ if all.is_empty() => "no status yet".to_owned(),
        _ => "not ready".to_owned(),
    });
    State {
        phase,
        summary,
        conditions: reasons,
        started: true,
    }
}

fn deployment(spec: Option<&Value>, status: &Value, generation: Option<i64>) -> State {
    let wanted = spec
        .and_then(|s| s.get("replicas"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let count = |key: &str| status.get(key).and_then(Value::as_i64).unwrap_or(0);
    let (updated, available) = (count("updatedReplicas"), count("availableReplicas"));
    let observed = status.get("observedGeneration").and_then(Value::as_i64);
    let all = conditions(status);
    let is = |kind: &str, value: &str| all.iter().any(|(k, v, _)| k == kind && v == value);
    let deadline_exceeded = all.iter().any(|(k, v, detail)| {
        k == "Progressing" && v == "False" && detail.starts_with("ProgressDeadlineExceeded")
    });
    let current =
        matches!((generation, observed), (Some(g), Some(o)) if o >= g) || generation.is_none();
    let phase = if is("Available", "True") && current && updated >= wanted && available >= wanted {
        Phase::Ready
    } else if deadline_exceeded || is("ReplicaFailure", "True") {
        Phase::Failing
    } else {
        Phase::Progressing
    };
    State {
        phase,
        summary: format!("{available}/{wanted} available, {updated} updated"),
        conditions: all
            .into_iter()
            .filter(|(_, value, _)| phase != Phase::Ready || value != "True")
            .map(|(kind, value, detail)| format!("{kind}={value}: {detail}"))
            .collect(),
        started: true,
    }
}

#[cfg(test)]
mod tests;
