//! Typed schemas of the custom resources flightdeck uses, written from each project's
//! documented CRD reference and limited to the fields such manifests set.
//!
//! Every struct denies unknown fields: a misspelt or misplaced field fails here instead of
//! being pruned (or rejected) by the API server. Free-form parts (Helm values, Kafka
//! `config`, pod templates) are `serde_yaml::Value`.

// NB: these structs exist to be deserialized: serde reads their fields, nothing else does.
#![allow(dead_code)]

mod argocd;
mod cnpg;
mod k3d;
mod kustomize;
mod prometheus;
mod strimzi;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

/// Parses a document's text into one typed schema.
type Checker = fn(&str) -> Result<(), serde_yaml::Error>;

/// Every custom kind the lint knows, with its apiVersion and checker.
const KINDS: &[(&str, &str, Checker)] = &[
    (
        "argoproj.io/v1alpha1",
        "Application",
        parse::<argocd::Application>,
    ),
    ("kafka.strimzi.io/v1beta2", "Kafka", parse::<strimzi::Kafka>),
    (
        "kafka.strimzi.io/v1beta2",
        "KafkaNodePool",
        parse::<strimzi::KafkaNodePool>,
    ),
    (
        "kafka.strimzi.io/v1beta2",
        "KafkaTopic",
        parse::<strimzi::KafkaTopic>,
    ),
    ("postgresql.cnpg.io/v1", "Cluster", parse::<cnpg::Cluster>),
    (
        "monitoring.coreos.com/v1",
        "PodMonitor",
        parse::<prometheus::PodMonitor>,
    ),
    (
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        parse::<prometheus::PrometheusRule>,
    ),
    (
        "kustomize.config.k8s.io/v1beta1",
        "Kustomization",
        parse::<kustomize::Kustomization>,
    ),
    // The cluster `cargo xtask up` creates (infrastructure/k3d/cluster.yaml).
    ("k3d.io/v1alpha5", "Simple", parse::<k3d::Simple>),
];

fn parse<T: DeserializeOwned>(text: &str) -> Result<(), serde_yaml::Error> {
    serde_yaml::from_str::<T>(text).map(|_| ())
}

/// Checks `text` against the typed schema of `api_version`/`kind`; `None` when the lint
/// has no schema for that pair.
pub fn check(api_version: &str, kind: &str, text: &str) -> Option<Result<(), serde_yaml::Error>> {
    KINDS
        .iter()
        .find(|(av, k, _)| *av == api_version && *k == kind)
        .map(|(_, _, parse)| parse(text))
}

/// The apiVersion of a custom `kind` the lint knows.
pub fn api_version_of(kind: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(_, k, _)| *k == kind)
        .map(|(av, _, _)| *av)
}

/// `metadata` of a custom resource.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Object name.
    pub name: String,
    /// Namespace; the Application's destination when absent.
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Finalizers.
    #[serde(default)]
    pub finalizers: Vec<String>,
}

/// Compute resources (`requests`/`limits`), as in a core/v1 container.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Minimum resources.
    pub requests: Option<BTreeMap<String, Quantity>>,
    /// Maximum resources.
    pub limits: Option<BTreeMap<String, Quantity>>,
}

/// A Kubernetes quantity: `100m`, `1Gi` or a plain number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    /// `100m`, `1Gi`.
    Text(String),
    /// `1`, `0.5`.
    Number(f64),
}

/// A reference to a Secret or ConfigMap in the same namespace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRef {
    /// Object name.
    pub name: String,
}

/// A label selector, as in core/v1.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must match exactly.
    pub match_labels: Option<BTreeMap<String, String>>,
    /// Set-based requirements.
    pub match_expressions: Option<Vec<Value>>,
}
