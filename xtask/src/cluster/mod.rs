//! The k3d cluster that `cargo xtask up`, `down` and `e2e --cluster k3d` drive: its
//! names, the kube client for it, and which objects must be ready before it is usable.
//!
//! - [`plan`]: the steps `up` and `down` take, as data (snapshot-tested).
//! - [`source`]: the one setting for where Argo CD reads the platform from, and the
//!   in-cluster git server that serves the checkout.
//! - [`snapshot`]: the deterministic commit of the working tree `up` pushes there.
//! - [`deploy`]: the in-process steps of `up`: snapshot, push, refresh, wait.
//! - [`preflight`]: what `up` checks before it creates anything.
//! - [`status`]: what "ready" means for each kind, read from the object's status.
//! - [`wait`]: waits for every component with Kubernetes watches (never polling kubectl),
//!   with a per-component and a total timeout, showing [`progress`].
//! - [`forensics`]: when something is stuck, its logs, events and YAML on disk, within
//!   one time limit wherever it is collected.
//! - [`portforward`]: a local TCP port forwarded to a pod.

pub mod deploy;
pub mod forensics;
pub mod plan;
pub mod portforward;
pub mod preflight;
pub mod progress;
pub mod snapshot;
pub mod source;
pub mod status;
pub mod wait;

#[cfg(test)]
pub mod fakes;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub mod verifier;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use self::status::{ComponentId, Kind};

/// The k3d cluster's name (`metadata.name` of [`CONFIG`]).
pub const CLUSTER: &str = "flightdeck";
/// The kubeconfig context k3d writes for it.
pub const CONTEXT: &str = "k3d-flightdeck";
/// The k3d cluster configuration.
pub const CONFIG: &str = "infrastructure/k3d/cluster.yaml";
/// Ingresses that expose the UIs through the cluster's load balancer.
pub const UI_INGRESS: &str = "infrastructure/k3d/ui-ingress.yaml";
/// The Terraform root module.
pub const TERRAFORM_DIR: &str = "infrastructure/terraform";
/// The Argo CD app of apps.
pub const ROOT_APP: &str = "infrastructure/k8s/root-app.yaml";
/// Where the Applications of the app of apps live.
pub const APPS_DIR: &str = "infrastructure/k8s/apps";

/// A kube client for the k3d cluster's context, whatever the current context is.
pub async fn client() -> anyhow::Result<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: Some(CONTEXT.to_owned()),
        ..Default::default()
    };
    let config = kube::Config::from_kubeconfig(&options)
        .await
        .with_context(|| format!("read the kubeconfig context {CONTEXT} (run `cargo xtask up`)"))?;
    kube::Client::try_from(config).context("create a Kubernetes client")
}

/// The kubeconfig file k3d writes into and Terraform reads: the first entry of
/// `KUBECONFIG`, else `~/.kube/config`.
pub fn kubeconfig_path() -> PathBuf {
    if let Some(paths) = std::env::var_os("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&paths).find(|p| !p.as_os_str().is_empty())
    {
        return first;
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".kube/config")
}

/// Every YAML document of `file`, read as `cargo xtask lint` reads it, as JSON values
/// like the objects the API server returns.
fn documents(file: &Path) -> anyhow::Result<Vec<Value>> {
    crate::lint::yaml::load_file(Path::new(""), file)?
        .into_values()?
        .iter()
        .map(|doc| serde_json::to_value(doc).with_context(|| format!("{}", file.display())))
        .collect()
}

/// The string at `path` (mapping keys) in `value`.
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
}

/// Every component `up` waits for, read from the repository: the root Application and
/// every Application in [`APPS_DIR`], and each Kafka, CloudNativePG Cluster and
/// Deployment those Applications sync from this repository.
pub fn expected_components(root: &Path) -> anyhow::Result<Vec<ComponentId>> {
    let mut out = Vec::new();
    let mut apps = vec![root.join(ROOT_APP)];
    apps.extend(yaml_files(&root.join(APPS_DIR))?);
    for file in apps {
        for app in documents(&file)? {
            let name = str_at(&app, &["metadata", "name"])
                .with_context(|| format!("{}: an Application without a name", file.display()))?;
            let namespace = str_at(&app, &["metadata", "namespace"]).unwrap_or("argocd");
            out.push(ComponentId::new(Kind::Application, namespace, name));
            let Some(path) = str_at(&app, &["spec", "source", "path"]) else {
                continue; // a Helm chart: its Application's health covers it
            };
            if path == APPS_DIR {
                continue; // the app of apps
            }
            let destination =
                str_at(&app, &["spec", "destination", "namespace"]).unwrap_or("default");
            for file in yaml_files(&root.join(path))? {
                for doc in documents(&file)? {
                    let kind = match (str_at(&doc, &["apiVersion"]), str_at(&doc, &["kind"])) {
                        (Some(v), Some("Kafka")) if v.starts_with("kafka.strimzi.io/") => {
                            Kind::Kafka
                        }
                        (Some(v), Some("Cluster")) if v.starts_with("postgresql.cnpg.io/") => {
                            Kind::PgCluster
                        }
                        (Some("apps/v1"), Some("Deployment")) => Kind::Deployment,
                        _ => continue,
                    };
                    let name = str_at(&doc, &["metadata", "name"]).unwrap_or("?");
                    let namespace = str_at(&doc, &["metadata", "namespace"]).unwrap_or(destination);
                    out.push(ComponentId::new(kind, namespace, name));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The YAML files under `dir`, recursively, sorted; `dir` must exist (an Application
/// syncs it).
fn yaml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    crate::files::with_endings(dir, &[".yaml", ".yml"])
}

/// Waits until everything in `goal` is ready; when something is stuck or the total
/// timeout runs out, writes forensics under `<target>/forensics/` and fails with what is
/// stuck, why, and where the forensics are.
pub async fn ready_or_forensics(
    client: &kube::Client,
    goal: &wait::Goal,
    timeouts: wait::Timeouts,
    progress: &mut dyn progress::Progress,
    target: &Path,
) -> anyhow::Result<std::time::Duration> {
    match wait::wait_ready(client, goal, timeouts, progress).await {
        Ok(took) => Ok(took),
        Err(stuck) => {
            let report = stuck.to_string();
            let saved = forensics::save(client, target, &report, &stuck.namespaces()).await;
            anyhow::bail!("{report}{saved}")
        }
    }
}

/// The Applications (the root and its children) whose git source is `source`: those that
/// must report the revision `up` pushed.
pub fn source_applications(
    root: &Path,
    source: &source::Source,
) -> anyhow::Result<Vec<ComponentId>> {
    let mut out = Vec::new();
    let mut files = vec![root.join(ROOT_APP)];
    files.extend(yaml_files(&root.join(APPS_DIR))?);
    for file in files {
        for app in documents(&file)? {
            if str_at(&app, &["spec", "source", "repoURL"]) != Some(source.repo_url.as_str())
                || str_at(&app, &["spec", "source", "chart"]).is_some()
            {
                continue;
            }
            let name = str_at(&app, &["metadata", "name"])
                .with_context(|| format!("{}: an Application without a name", file.display()))?;
            let namespace = str_at(&app, &["metadata", "namespace"]).unwrap_or("argocd");
            out.push(ComponentId::new(Kind::Application, namespace, name));
        }
    }
    out.sort();
    Ok(out)
}

/// What `up` waits for: every component, and when `revision` is given, the source's
/// Applications at that revision.
pub fn goal(
    root: &Path,
    source: &source::Source,
    revision: Option<&str>,
) -> anyhow::Result<wait::Goal> {
    let mut goal = wait::Goal::components(expected_components(root)?);
    if let Some(revision) = revision {
        for id in source_applications(root, source)? {
            goal.revisions.insert(id, revision.to_owned());
        }
    }
    Ok(goal)
}

/// Parses `90s`, `10m`, `1h`, `1h30m` (jiff's friendly format) or plain seconds (`600`),
/// for the timeout flags.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(seconds));
    }
    let duration: jiff::SignedDuration = text
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 90s, 10m or 1h"))?;
    std::time::Duration::try_from(duration).map_err(|_| format!("`{text}` is negative"))
}
