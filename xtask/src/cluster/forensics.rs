//! What to keep when `up` or `e2e --cluster` fails: the YAML of the interesting objects,
//! the events and every container's log of the affected namespaces, written to
//! `target/forensics/<UTC timestamp>/` (uploaded as an artifact by the k3d workflow).
//!
//! Layout: `summary.txt` (what was stuck and why), then per namespace `events.txt`,
//! `<resource>.yaml` and `logs/<pod>_<container>.log` (`…_previous.log` for a container
//! that restarted). Secrets are never collected. A part that cannot be read is noted in
//! its file instead: forensics must not hide the original failure.
//!
//! Every caller (a stuck wait, a failed step of `up`, a failed `e2e --cluster`) goes
//! through [`save`], so one time limit, [`TIME_LIMIT`], bounds them all: an API server
//! that stopped answering cannot hide the failure behind a hang.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, LogParams};
use kube::{Client, ResourceExt};

/// The longest collecting forensics may take, wherever it is collected.
pub const TIME_LIMIT: Duration = Duration::from_secs(180);

/// Resources whose YAML is saved: `(group, version, kind, plural)`.
pub const RESOURCES: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "Pod", "pods"),
    ("", "v1", "Service", "services"),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("batch", "v1", "Job", "jobs"),
    ("argoproj.io", "v1alpha1", "Application", "applications"),
    ("kafka.strimzi.io", "v1beta2", "Kafka", "kafkas"),
    (
        "kafka.strimzi.io",
        "v1beta2",
        "KafkaNodePool",
        "kafkanodepools",
    ),
    ("kafka.strimzi.io", "v1beta2", "KafkaTopic", "kafkatopics"),
    ("postgresql.cnpg.io", "v1", "Cluster", "clusters"),
];

/// Lines of each container log kept.
const LOG_LINES: i64 = 2000;

/// `<target>/forensics/<UTC timestamp>`, e.g. `target/forensics/20261122T181230Z`.
pub fn new_dir(target: &Path) -> PathBuf {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    target.join("forensics").join(stamp)
}

/// Collects forensics of `namespaces` into a new `<target>/forensics/<timestamp>/`
/// within [`TIME_LIMIT`]; returns the line that tells the user where they are (or why
/// there are none).
pub async fn save(
    client: &Client,
    target: &Path,
    summary: &str,
    namespaces: &BTreeSet<String>,
) -> String {
    let dir = new_dir(target);
    match tokio::time::timeout(TIME_LIMIT, collect(client, &dir, summary, namespaces)).await {
        Ok(Ok(())) => format!("forensics (logs, events, YAML) in {}", dir.display()),
        Ok(Err(error)) => format!("collecting forensics failed too: {error:#}"),
        Err(_) => format!(
            "collecting forensics took longer than {}s; what was written is in {}",
            TIME_LIMIT.as_secs(),
            dir.display()
        ),
    }
}

/// Writes `summary` and everything above for `namespaces` into `dir`.
pub async fn collect(
    client: &Client,
    dir: &Path,
    summary: &str,
    namespaces: &BTreeSet<String>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut text = format!(
        "collected {} by cargo xtask\nnamespaces: {}\n\n{summary}\n",
        jiff::Timestamp::now(),
        namespaces.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    if !text.ends_with('\n') {
        text.push('\n');
    }
    write(&dir.join("summary.txt"), &text)?;
    for namespace in namespaces {
        let ns_dir = dir.join(namespace);
        std::fs::create_dir_all(ns_dir.join("logs"))
            .with_context(|| format!("create {}", ns_dir.display()))?;
        write(&ns_dir.join("events.txt"), &events(client, namespace).await)?;
        for &(group, version, kind, plural) in RESOURCES {
            let resource = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, kind),
                plural,
            );
            if let Some(yaml) = objects_yaml(client, namespace, &resource).await {
                write(&ns_dir.join(format!("{plural}.yaml")), &yaml)?;
            }
        }
        logs(client, namespace, &ns_dir.join("logs")).await?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// The namespace's events, oldest first, one per line.
async fn events(client: &Client, namespace: &str) -> String {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(error) => return format!("could not list events: {error}\n"),
    };
    let mut rows: Vec<(String, String)> = list
        .into_iter()
        .map(|e| {
            let when = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
                .unwrap_or_default();
            let object = format!(
                "{}/{}",
                e.involved_object.kind.unwrap_or_default(),
                e.involved_object.name.unwrap_or_default()
            );
            let line = format!(
                "{when}  {:<7} {:<24} {object:<48} {} (x{})",
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default().trim(),
                e.count.unwrap_or(1)
            );
            (when, line)
        })
        .collect();
    rows.sort();
    let mut out = String::new();
    for (_, line) in rows {
        let _ = writeln!(out, "{line}");
    }
    if out.is_empty() {
        out.push_str("no events\n");
    }
    out
}

/// The namespace's objects of `resource` as YAML documents, without managed fields;
/// `None` when there are none or the kind is not installed.
async fn objects_yaml(client: &Client, namespace: &str, resource: &ApiResource) -> Option<String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    let list = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.is_not_found() => return None,
        Err(error) => return Some(format!("# could not list {}: {error}\n", resource.plural)),
    };
    if list.is_empty() {
        return None;
    }
    let mut out = String::new();
    for mut object in list {
        object.metadata.managed_fields = None;
        object.types.get_or_insert_with(|| kube::api::TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        });
        out.push_str("---\n");
        match serde_yaml::to_string(&object) {
            Ok(yaml) => out.push_str(&yaml),
            Err(error) => {
                let _ = writeln!(out, "# {}: {error}", object.name_any());
            }
        }
    }
    Some(out)
}

/// Every container's log (and the previous one's, after a restart) into `dir`.
async fn logs(client: &Client, namespace: &str, dir: &Path) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(error) => {
            return write(
                &dir.join("_error.txt"),
                &format!("could not list pods: {error}\n"),
            );
        }
    };
    for pod in pods {
        let name = pod.name_any();
        let statuses: Vec<_> = pod
            .status
            .iter()
            .flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .chain(s.container_statuses.iter())
            })
            .flatten()
            .map(|s| (s.name.clone(), s.restart_count))
            .collect();
        for (container, restarts) in statuses {
            let previous_runs: &[bool] = if restarts > 0 {
                &[false, true]
            } else {
                &[false]
            };
            for &previous in previous_runs {
                let params = LogParams {
                    container: Some(container.clone()),
                    tail_lines: Some(LOG_LINES),
                    timestamps: true,
                    previous,
                    ..LogParams::default()
                };
                let text = match api.logs(&name, &params).await {
                    Ok(text) => text,
                    Err(error) => format!("could not read the log: {error}\n"),
                };
                let suffix = if previous { "_previous" } else { "" };
                write(&dir.join(format!("{name}_{container}{suffix}.log")), &text)?;
            }
        }
    }
    Ok(())
}
