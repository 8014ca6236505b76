//! Prometheus Operator `PodMonitor` and `PrometheusRule` (monitoring.coreos.com/v1), after
//! the prometheus-operator API reference.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

use super::{LabelSelector, Metadata};

/// Scrape configuration for pods.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodMonitor {
    /// `monitoring.coreos.com/v1`.
    pub api_version: String,
    /// `PodMonitor`.
    pub kind: String,
    /// Metadata.
    pub metadata: Metadata,
    /// What to scrape.
    pub spec: PodMonitorSpec,
}

/// `spec` of a PodMonitor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodMonitorSpec {
    /// Pods to scrape.
    pub selector: LabelSelector,
    /// Namespaces of those pods.
    pub namespace_selector: Option<NamespaceSelector>,
    /// Endpoints of each pod.
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
    /// Label that becomes the `job` label.
    pub job_label: Option<String>,
    /// Pod labels copied to the series.
    pub pod_target_labels: Option<Vec<String>>,
    /// Sample limit per scrape.
    pub sample_limit: Option<u64>,
    /// Target limit.
    pub target_limit: Option<u64>,
    /// Attach node or namespace metadata.
    pub attach_metadata: Option<Value>,
}

/// `spec.namespaceSelector`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Every namespace.
    pub any: Option<bool>,
    /// These namespaces.
    pub match_names: Option<Vec<String>>,
}

/// `spec.podMetricsEndpoints[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodMetricsEndpoint {
    /// Container port name.
    pub port: Option<String>,
    /// Container port number.
    pub port_number: Option<u16>,
    /// Deprecated target port.
    pub target_port: Option<Value>,
    /// HTTP path, default `/metrics`.
    pub path: Option<String>,
    /// `http` or `https`.
    pub scheme: Option<String>,
    /// URL parameters.
    pub params: Option<BTreeMap<String, Vec<String>>>,
    /// Scrape interval, e.g. `15s`.
    pub interval: Option<String>,
    /// Scrape timeout.
    pub scrape_timeout: Option<String>,
    /// Keep the target's labels on conflicts.
    pub honor_labels: Option<bool>,
    /// Keep the target's timestamps.
    pub honor_timestamps: Option<bool>,
    /// Relabelings before the scrape.
    pub relabelings: Option<Vec<Value>>,
    /// Relabelings of the samples.
    pub metric_relabelings: Option<Vec<Value>>,
    /// TLS options.
    pub tls_config: Option<Value>,
    /// Basic auth.
    pub basic_auth: Option<Value>,
    /// Authorization header.
    pub authorization: Option<Value>,
    /// OAuth2.
    pub oauth2: Option<Value>,
    /// Follow redirects.
    pub follow_redirects: Option<bool>,
    /// HTTP/2.
    pub enable_http2: Option<bool>,
    /// Scrape running pods only.
    pub filter_running: Option<bool>,
    /// Proxy URL.
    pub proxy_url: Option<String>,
}

/// Alerting and recording rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusRule {
    /// `monitoring.coreos.com/v1`.
    pub api_version: String,
    /// `PrometheusRule`.
    pub kind: String,
    /// Metadata.
    pub metadata: Metadata,
    /// The rule groups.
    pub spec: PrometheusRuleSpec,
}

/// `spec` of a PrometheusRule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusRuleSpec {
    /// Rule groups.
    pub groups: Vec<RuleGroup>,
}

/// A rule group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleGroup {
    /// Group name.
    pub name: String,
    /// Evaluation interval.
    pub interval: Option<String>,
    /// Query offset.
    pub query_offset: Option<String>,
    /// Limit of alerts or series.
    pub limit: Option<u64>,
    /// Thanos partial response strategy.
    pub partial_response_strategy: Option<String>,
    /// Labels added to every rule.
    pub labels: Option<BTreeMap<String, String>>,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// An alerting (`alert`) or recording (`record`) rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// Alert name.
    pub alert: Option<String>,
    /// Recorded series name.
    pub record: Option<String>,
    /// PromQL expression.
    pub expr: String,
    /// How long the condition must hold.
    #[serde(rename = "for")]
    pub for_duration: Option<String>,
    /// How long an alert keeps firing after it resolved.
    pub keep_firing_for: Option<String>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations (summary, description).
    pub annotations: Option<BTreeMap<String, String>>,
}
