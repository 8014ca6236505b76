//! Argo CD `Application` (argoproj.io/v1alpha1), after the Application CRD reference
//! ("application.yaml" in the Argo CD docs' declarative setup).

use serde::Deserialize;
use serde_yaml::Value;

use super::Metadata;

/// An Argo CD Application.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Application {
    /// `argoproj.io/v1alpha1`.
    pub api_version: String,
    /// `Application`.
    pub kind: String,
    /// Object metadata (sync-wave annotation, finalizers).
    pub metadata: Metadata,
    /// The desired state.
    pub spec: ApplicationSpec,
}

/// `spec` of an Application.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// AppProject name.
    pub project: String,
    /// A single source.
    pub source: Option<Source>,
    /// Several sources (Helm chart plus a `ref: values` git source).
    pub sources: Option<Vec<Source>>,
    /// Where the manifests go.
    pub destination: Destination,
    /// Automated sync and sync options.
    pub sync_policy: Option<SyncPolicy>,
    /// Differences to ignore.
    pub ignore_differences: Option<Vec<Value>>,
    /// Free-form information shown in the UI.
    pub info: Option<Vec<Value>>,
    /// How many sync results to keep.
    pub revision_history_limit: Option<i64>,
}

/// A source of manifests: a git path or a Helm chart.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Source {
    /// Git repository or Helm repository URL.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Git revision, or the chart version of a Helm source.
    pub target_revision: Option<String>,
    /// Directory in a git repository.
    pub path: Option<String>,
    /// Chart name of a Helm repository source.
    pub chart: Option<String>,
    /// Name under which other sources refer to this one (`$values`).
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// Source name (multi-source applications).
    pub name: Option<String>,
    /// Helm options.
    pub helm: Option<Helm>,
    /// Kustomize options.
    pub kustomize: Option<Value>,
    /// Plain-directory options.
    pub directory: Option<Directory>,
    /// Config management plugin.
    pub plugin: Option<Value>,
}

/// Helm options of a source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Helm {
    /// Helm release name.
    pub release_name: Option<String>,
    /// Values files, relative to the chart or `$ref/...`.
    pub value_files: Option<Vec<String>>,
    /// Values as a YAML string.
    pub values: Option<String>,
    /// Values as a YAML object.
    pub values_object: Option<Value>,
    /// `--set` parameters.
    pub parameters: Option<Vec<Value>>,
    /// `--set-file` parameters.
    pub file_parameters: Option<Vec<Value>>,
    /// Skip the chart's CRDs.
    pub skip_crds: Option<bool>,
    /// Skip the chart's schema validation.
    pub skip_schema_validation: Option<bool>,
    /// Pass repository credentials to every domain.
    pub pass_credentials: Option<bool>,
    /// Ignore value files that do not exist.
    pub ignore_missing_value_files: Option<bool>,
    /// Helm version (`v3`).
    pub version: Option<String>,
    /// Namespace given to the templates.
    pub namespace: Option<String>,
    /// Kubernetes version given to the templates.
    pub kube_version: Option<String>,
    /// API versions given to the templates.
    pub api_versions: Option<Vec<String>>,
}

/// Plain-directory options of a source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Directory {
    /// Recurse into sub-directories.
    pub recurse: Option<bool>,
    /// Glob of files to include.
    pub include: Option<String>,
    /// Glob of files to exclude.
    pub exclude: Option<String>,
    /// Jsonnet options.
    pub jsonnet: Option<Value>,
}

/// Destination cluster and namespace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Destination {
    /// API server URL.
    pub server: Option<String>,
    /// Cluster name (instead of `server`).
    pub name: Option<String>,
    /// Default namespace of the manifests.
    pub namespace: Option<String>,
}

/// `spec.syncPolicy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Automated sync.
    pub automated: Option<Automated>,
    /// Options such as `CreateNamespace=true`.
    pub sync_options: Option<Vec<String>>,
    /// Retries of a failed sync.
    pub retry: Option<Value>,
    /// Labels and annotations of a namespace Argo CD creates.
    pub managed_namespace_metadata: Option<Value>,
}

/// `spec.syncPolicy.automated`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Automated {
    /// Delete resources no longer in git.
    pub prune: Option<bool>,
    /// Revert changes made in the cluster.
    pub self_heal: Option<bool>,
    /// Allow syncing to an empty set of resources.
    pub allow_empty: Option<bool>,
    /// Switch automation on or off (Argo CD 3.x).
    pub enabled: Option<bool>,
}
