//! The `Kustomization` file (kustomize.config.k8s.io/v1beta1), after the kustomize
//! reference of kubectl's built-in kustomize (v5).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

/// A kustomization.yaml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kustomization {
    /// `kustomize.config.k8s.io/v1beta1`.
    pub api_version: String,
    /// `Kustomization`.
    pub kind: String,
    /// Optional metadata.
    pub metadata: Option<Value>,
    /// Namespace of every resource.
    pub namespace: Option<String>,
    /// Name prefix.
    pub name_prefix: Option<String>,
    /// Name suffix.
    pub name_suffix: Option<String>,
    /// Files and directories.
    pub resources: Option<Vec<String>>,
    /// Components.
    pub components: Option<Vec<String>>,
    /// Labels added to every resource.
    pub labels: Option<Vec<Label>>,
    /// Deprecated labels (selectors too).
    pub common_labels: Option<BTreeMap<String, String>>,
    /// Annotations added to every resource.
    pub common_annotations: Option<BTreeMap<String, String>>,
    /// Image overrides: the one place where our tags are set.
    pub images: Option<Vec<Image>>,
    /// Patches.
    pub patches: Option<Vec<Value>>,
    /// Replica overrides.
    pub replicas: Option<Vec<Value>>,
    /// Replacements.
    pub replacements: Option<Vec<Value>>,
    /// ConfigMap generators.
    pub config_map_generator: Option<Vec<Value>>,
    /// Secret generators.
    pub secret_generator: Option<Vec<Value>>,
    /// Generator options.
    pub generator_options: Option<Value>,
    /// Order of the output.
    pub sort_options: Option<Value>,
    /// Build metadata.
    pub build_metadata: Option<Vec<String>>,
}

/// An entry of `labels`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Label {
    /// The labels.
    pub pairs: BTreeMap<String, String>,
    /// Add them to selectors too.
    pub include_selectors: Option<bool>,
    /// Add them to pod templates too.
    pub include_templates: Option<bool>,
    /// Extra field specs.
    pub fields: Option<Vec<Value>>,
}

/// An entry of `images`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Image {
    /// Image name as written in the resources.
    pub name: String,
    /// Replacement name.
    pub new_name: Option<String>,
    /// Tag.
    pub new_tag: Option<String>,
    /// Digest (`sha256:...`).
    pub digest: Option<String>,
}
