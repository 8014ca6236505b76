//! Schema checks of every Kubernetes document.
//!
//! Built-in kinds are deserialized into the `k8s-openapi` type of their apiVersion/kind and
//! serialized back. k8s-openapi ignores fields it does not know, so a field that is in the
//! file but not in the round trip is one the API server would drop too: a typo or a wrong
//! indentation. Custom resources are validated against the CRD of their apiVersion
//! ([`super::schema`]), with their `metadata` round-tripped through k8s-openapi's
//! `ObjectMeta` the same way; the k3d config against k3d's JSON schema; a kustomization
//! against the struct of [`super::crds`].

use std::collections::BTreeSet;

use k8s_openapi::Resource;
use k8s_openapi::api::{apps, autoscaling, batch, core, networking, policy, rbac};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::Finding;
use super::crds;
use super::schema::to_json;
use super::upstream::{CATALOGUE_PATH, Upstream};
use super::yaml::{Doc, Seg, YamlFile, path_string};

macro_rules! builtins {
    ($($ty:ty),* $(,)?) => {
        /// Round-trips `text` through the k8s-openapi type of `api_version`/`kind`.
        fn builtin_roundtrip(api_version: &str, kind: &str, text: &str) -> Option<Result<Value, serde_yaml::Error>> {
            $(
                if api_version == <$ty as Resource>::API_VERSION && kind == <$ty as Resource>::KIND {
                    return Some(roundtrip::<$ty>(text));
                }
            )*
            None
        }

        /// The apiVersions under which a built-in `kind` is served.
        fn builtin_api_versions(kind: &str) -> Vec<&'static str> {
            let mut out = Vec::new();
            $(
                if kind == <$ty as Resource>::KIND {
                    out.push(<$ty as Resource>::API_VERSION);
                }
            )*
            out
        }
    };
}

builtins!(
    core::v1::ConfigMap,
    core::v1::Secret,
    core::v1::Service,
    core::v1::ServiceAccount,
    core::v1::Namespace,
    core::v1::PersistentVolumeClaim,
    core::v1::Pod,
    core::v1::LimitRange,
    core::v1::ResourceQuota,
    apps::v1::Deployment,
    apps::v1::StatefulSet,
    apps::v1::DaemonSet,
    batch::v1::Job,
    batch::v1::CronJob,
    networking::v1::NetworkPolicy,
    networking::v1::Ingress,
    rbac::v1::Role,
    rbac::v1::RoleBinding,
    rbac::v1::ClusterRole,
    rbac::v1::ClusterRoleBinding,
    policy::v1::PodDisruptionBudget,
    autoscaling::v2::HorizontalPodAutoscaler,
);

fn roundtrip<T: DeserializeOwned + Serialize>(text: &str) -> Result<Value, serde_yaml::Error> {
    let typed: T = serde_yaml::from_str(text)?;
    serde_yaml::to_value(&typed)
}

/// Schema findings of one document; kinds whose upstream schema is not in reach go to
/// `unchecked`.
pub fn check(
    file: &YamlFile,
    doc: &Doc,
    upstream: &Upstream,
    unchecked: &mut BTreeSet<String>,
) -> Vec<Finding> {
    let rel = &file.rel;
    let Some((api_version, kind)) = doc.type_meta() else {
        return vec![Finding::new(
            rel,
            doc.first_line,
            "document has no string `apiVersion` and `kind`",
            "every YAML document under infrastructure/ is a Kubernetes object: add apiVersion and kind",
        )];
    };
    if let Some(result) = builtin_roundtrip(api_version, kind, &doc.text) {
        return match result {
            Ok(back) => lost_fields(rel, doc, kind, &doc.value, &back, Vec::new()),
            Err(error) => vec![type_error(rel, doc, kind, &error)],
        };
    }
    if let Some(result) = crds::check(api_version, kind, &doc.text) {
        return match result {
            Ok(()) => Vec::new(),
            Err(error) => vec![type_error(rel, doc, kind, &error)],
        };
    }
    if let Some(mut findings) = upstream.crds.check(file, doc) {
        findings.extend(metadata(rel, doc, kind));
        return findings;
    }
    if let Some((_, _, schema)) = upstream
        .schemas
        .iter()
        .find(|(av, k, _)| av == api_version && k == kind)
    {
        return schema
            .violations(&to_json(&doc.value))
            .into_iter()
            .map(|violation| {
                let at = path_string(&violation.path);
                let message = if violation.allowed.is_empty() {
                    format!("{kind} {}: `{at}`: {}", doc.name(), violation.message)
                } else {
                    format!("{kind} {}: unknown field `{at}`", doc.name())
                };
                Finding::new(
                    rel,
                    doc.line_of(&violation.path),
                    message,
                    super::schema::did_you_mean(
                        &violation.path,
                        &violation.allowed,
                        &format!("k3d's JSON schema of {api_version} {kind}"),
                    ),
                )
            })
            .collect();
    }
    let served: Vec<String> = builtin_api_versions(kind)
        .into_iter()
        .map(str::to_string)
        .chain(upstream.crds.api_versions(kind))
        .chain(crds::api_version_of(kind).map(str::to_string))
        .chain(
            upstream
                .schemas
                .iter()
                .filter(|(_, k, _)| k == kind)
                .map(|(av, _, _)| av.clone()),
        )
        .collect();
    let line = doc.line_of(&[Seg::Key("apiVersion".into())]);
    if !served.is_empty() {
        return vec![Finding::new(
            rel,
            line,
            format!("wrong apiVersion `{api_version}` for {kind}"),
            format!("use `apiVersion: {}`", served[0]),
        )];
    }
    if !upstream.complete() {
        // Its CRD may be among the files that could not be had.
        unchecked.insert(format!("{api_version} {kind}: no schema in reach"));
        return Vec::new();
    }
    vec![Finding::new(
        rel,
        line,
        format!("no schema for {api_version} {kind}"),
        format!(
            "use a kind the lint knows, or add its CRD to {CATALOGUE_PATH} (custom resource) or xtask/src/lint/manifests.rs (built-in)"
        ),
    )]
}

/// Findings for the fields of `orig` that the round trip `back` lost, under `prefix`.
fn lost_fields(
    rel: &std::path::Path,
    doc: &Doc,
    kind: &str,
    orig: &Value,
    back: &Value,
    prefix: Vec<Seg>,
) -> Vec<Finding> {
    let mut lost = Vec::new();
    diff(orig, back, &mut prefix.clone(), &mut lost);
    lost.into_iter()
        .map(|(path, what)| {
            Finding::new(
                rel,
                doc.line_of(&path),
                format!(
                    "{kind} {}: field `{}` {what}",
                    doc.name(),
                    path_string(&path)
                ),
                "check the spelling and the indentation against the Kubernetes API reference",
            )
        })
        .collect()
}

/// A custom resource's `metadata`, round-tripped through k8s-openapi's ObjectMeta.
fn metadata(rel: &std::path::Path, doc: &Doc, kind: &str) -> Vec<Finding> {
    let Some(meta) = doc.value.get("metadata") else {
        return Vec::new();
    };
    let path = vec![Seg::Key("metadata".into())];
    let back = serde_yaml::from_value::<ObjectMeta>(meta.clone())
        .and_then(|typed| serde_yaml::to_value(&typed));
    match back {
        Ok(back) => lost_fields(rel, doc, kind, meta, &back, path),
        Err(error) => vec![Finding::new(
            rel,
            doc.line_of(&path),
            format!("{kind} {}: metadata: {error}", doc.name()),
            "metadata is an ObjectMeta: name, namespace, labels and annotations (string values), finalizers",
        )],
    }
}

fn type_error(rel: &std::path::Path, doc: &Doc, kind: &str, error: &serde_yaml::Error) -> Finding {
    // serde_yaml appends " at line L column C" (lines of the document): the finding's
    // line already says where.
    let mut message = error.to_string();
    if let Some(at) = message.find(" at line ") {
        message.truncate(at);
    }
    Finding::new(
        rel,
        doc.error_line(error),
        format!("{kind} {}: {message}", doc.name()),
        "fix the field name, type or indentation to match the resource's schema",
    )
}

/// Collects every path of `orig` that `back` lost or changed.
fn diff(orig: &Value, back: &Value, path: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, String)>) {
    match (orig, back) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (key, value) in a {
                let name = match key {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                path.push(Seg::Key(name));
                match b.get(key) {
                    Some(back_value) => diff(value, back_value, path, out),
                    None if value.is_null() => {}
                    None => out.push((
                        path.clone(),
                        "is not part of the schema (dropped on apply)".into(),
                    )),
                }
                path.pop();
            }
        }
        (Value::Sequence(a), Value::Sequence(b)) => {
            for (i, value) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                match b.get(i) {
                    Some(back_value) => diff(value, back_value, path, out),
                    None => out.push((path.clone(), "is dropped on apply".into())),
                }
                path.pop();
            }
        }
        (Value::Tagged(a), _) => diff(&a.value, back, path, out),
        (a, b) if scalar_text(a).is_some() && scalar_text(a) == scalar_text(b) => {}
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (Value::Mapping(a), Value::Null) if a.is_empty() => {}
        (a, b) => out.push((
            path.clone(),
            format!("changes from `{}` to `{}` on apply", short(a), short(b)),
        )),
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn short(value: &Value) -> String {
    let text = serde_yaml::to_string(value).unwrap_or_default();
    let text = text.trim().replace('\n', " ");
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}
