//! Schema checks of every Kubernetes document.
//!
//! Built-in kinds are deserialized into the `k8s-openapi` type of their apiVersion/kind and
//! serialized back. k8s-openapi ignores fields it does not know, so a field that is in the
//! file but not in the round trip is one the API server would drop too: a typo or a wrong
//! indentation. Custom resources go through the `deny_unknown_fields` structs of
//! [`super::crds`] instead.

use k8s_openapi::Resource;
use k8s_openapi::api::{apps, autoscaling, batch, core, networking, policy, rbac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::Finding;
use super::crds;
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

/// Schema findings of one document.
pub fn check(file: &YamlFile, doc: &Doc) -> Vec<Finding> {
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
            Ok(back) => {
                let mut lost = Vec::new();
                diff(&doc.value, &back, &mut Vec::new(), &mut lost);
                lost.into_iter()
                    .map(|(path, what)| {
                        Finding::new(
                            rel,
                            doc.line_of(&path),
                            format!("{kind} {}: field `{}` {what}", doc.name(), path_string(&path)),
                            "check the spelling and the indentation against the Kubernetes API reference",
                        )
                    })
                    .collect()
            }
            Err(error) => vec![type_error(rel, doc, kind, &error)],
        };
    }
    if let Some(result) = crds::check(api_version, kind, &doc.text) {
        return match result {
            Ok(()) => Vec::new(),
            Err(error) => vec![type_error(rel, doc, kind, &error)],
        };
    }
    let served: Vec<&str> = builtin_api_versions(kind)
        .into_iter()
        .chain(crds::api_version_of(kind))
        .collect();
    let line = doc.line_of(&[Seg::Key("apiVersion".into())]);
    if served.is_empty() {
        vec![Finding::new(
            rel,
            line,
            format!("no schema for {api_version} {kind}"),
            "use a kind the lint knows, or add it to xtask/src/lint/manifests.rs (built-in) or xtask/src/lint/crds/ (custom resource)",
        )]
    } else {
        vec![Finding::new(
            rel,
            line,
            format!("wrong apiVersion `{api_version}` for {kind}"),
            format!("use `apiVersion: {}`", served.join("` or `")),
        )]
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
