//! The k3d cluster configuration (`k3d.io/v1alpha5`, kind `Simple`), after k3d's own
//! JSON schema for that version (`pkg/config/v1alpha5/schema.json`): every object there
//! sets `additionalProperties: false`, as these structs deny unknown fields.

use serde::Deserialize;
use serde_yaml::Value;

/// `infrastructure/k3d/cluster.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Simple {
    /// `k3d.io/v1alpha5`.
    pub api_version: String,
    /// `Simple`.
    pub kind: String,
    /// The cluster name.
    pub metadata: Option<Metadata>,
    /// Server nodes (at least 1).
    pub servers: Option<u32>,
    /// Agent nodes.
    pub agents: Option<u32>,
    /// Where the Kubernetes API listens on the host.
    #[serde(rename = "kubeAPI")]
    pub kube_api: Option<KubeApi>,
    /// The k3s node image: pinned by digest.
    pub image: Option<String>,
    /// Docker network.
    pub network: Option<String>,
    /// Subnet of that network.
    pub subnet: Option<String>,
    /// Cluster token.
    pub token: Option<String>,
    /// Volume mounts.
    pub volumes: Option<Vec<Filtered>>,
    /// Manifests k3s applies at start.
    pub manifests: Option<Vec<Value>>,
    /// Port mappings from the host.
    pub ports: Option<Vec<Port>>,
    /// k3d, k3s, kubeconfig and runtime options.
    pub options: Option<Options>,
    /// Environment variables of nodes.
    pub env: Option<Vec<Value>>,
    /// Registries to create, use or configure.
    pub registries: Option<Value>,
    /// Extra /etc/hosts entries.
    pub host_aliases: Option<Vec<Value>>,
}

/// `metadata`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The cluster name (k3d prefixes contexts with `k3d-`).
    pub name: String,
}

/// `kubeAPI`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeApi {
    /// Host name in the kubeconfig.
    pub host: Option<String>,
    /// Host IP the API binds.
    #[serde(rename = "hostIP")]
    pub host_ip: Option<String>,
    /// Host port, as a string.
    pub host_port: Option<String>,
}

/// A volume with node filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Filtered {
    /// `host:container`.
    pub volume: String,
    /// Which nodes.
    pub node_filters: Option<Vec<String>>,
}

/// A port mapping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Port {
    /// `[ip:]hostPort:containerPort`.
    pub port: String,
    /// Which nodes (`loadbalancer`, `server:0`).
    pub node_filters: Option<Vec<String>>,
}

/// `options`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Options {
    /// k3d's own options.
    pub k3d: Option<K3dOptions>,
    /// k3s arguments and node labels.
    pub k3s: Option<Value>,
    /// What happens to the kubeconfig.
    pub kubeconfig: Option<Kubeconfig>,
    /// Container runtime options.
    pub runtime: Option<Value>,
}

/// `options.k3d`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct K3dOptions {
    /// Wait for the servers.
    pub wait: Option<bool>,
    /// How long (`60s`).
    pub timeout: Option<String>,
    /// No load balancer.
    pub disable_loadbalancer: Option<bool>,
    /// No image volume.
    pub disable_image_volume: Option<bool>,
    /// Keep a half-created cluster.
    pub disable_rollback: Option<bool>,
    /// Load balancer overrides.
    pub loadbalancer: Option<Value>,
}

/// `options.kubeconfig`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kubeconfig {
    /// Write the context into the default kubeconfig.
    pub update_default_kubeconfig: Option<bool>,
    /// Make it the current context.
    pub switch_current_context: Option<bool>,
}
