//! The steps `up` and `down` take, as data: built from what is already there
//! ([`UpFacts`]), printed before anything runs (`--dry-run` stops there), and
//! snapshot-tested, so a reviewer sees exactly what will run on their machine.
//!
//! Most steps are command lines. A few run inside the xtask, because they need the
//! Kubernetes API or values only known once an earlier step ran: the snapshot commit of
//! the checkout ([`super::snapshot`]), its push to the in-cluster git server through a
//! port-forward, the refresh of the Argo CD Applications, and the wait.

use std::fmt;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use xshell::{Shell, cmd};

use super::source::{
    GIT_NAMESPACE, GIT_PORT, GIT_REPOSITORY, GIT_SERVER, GIT_SERVER_MANIFEST, Source,
};
use super::{CLUSTER, CONFIG, CONTEXT, ROOT_APP, TERRAFORM_DIR, UI_INGRESS};

/// The runtime label `infrastructure/k3d/cluster.yaml` puts on the cluster's nodes: a
/// cluster of the same name without it was made by someone else.
pub const CONFIG_LABEL: &str = "dev.flightdeck.config";

/// One thing a plan does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run this command line.
    Run(Vec<String>),
    /// Delete this file if it exists.
    Remove(String),
    /// Commit the working tree with these images tagged (in-process, see `snapshot`).
    Snapshot(Vec<String>),
    /// Push the snapshot to the in-cluster git server, through a port-forward.
    Push(Source),
    /// Ask Argo CD to compare every Application synced from the source again now.
    Refresh(Source),
    /// Wait for every component with Kubernetes watches (in-process, see `wait`).
    Wait,
    /// Nothing to do, and why.
    Skip(String),
}

/// A titled action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What it is for.
    pub title: String,
    /// What it does.
    pub action: Action,
}

/// Steps in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The steps.
    pub steps: Vec<Step>,
}

impl Plan {
    fn push(&mut self, title: impl Into<String>, action: Action) {
        self.steps.push(Step {
            title: title.into(),
            action,
        });
    }

    fn run(&mut self, title: &str, line: &[&str]) {
        self.push(
            title,
            Action::Run(line.iter().map(|s| s.to_string()).collect()),
        );
    }
}

/// A command line as a shell would read it back.
pub fn quoted(line: &[String]) -> String {
    line.iter()
        .map(|arg| {
            if !arg.is_empty()
                && arg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,~+".contains(&b))
            {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `git push` of the snapshot, with the local end of the port-forward.
pub fn push_line(source: &Source, port: &str, commit: &str) -> Vec<String> {
    [
        "git",
        "push",
        "--porcelain",
        "--force",
        &format!("git://127.0.0.1:{port}/{GIT_REPOSITORY}"),
        &format!("{commit}:{}", source.branch_ref()),
    ]
    .map(String::from)
    .to_vec()
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "{:>2}. {}", i + 1, step.title)?;
            match &step.action {
                Action::Run(line) => writeln!(f, "      $ {}", quoted(line))?,
                Action::Remove(path) => writeln!(f, "      $ rm -f {path}")?,
                Action::Snapshot(images) => {
                    writeln!(
                        f,
                        "      (in-process: `git add --all` into a temporary index, then `git commit-tree`; your index, HEAD and branches stay as they are)"
                    )?;
                    for image in images {
                        writeln!(
                            f,
                            "      {image} -> {image}:<version>-<first 12 hex digits of its digest>"
                        )?;
                    }
                }
                Action::Push(source) => {
                    writeln!(
                        f,
                        "      (in-process: port-forward <port> to {GIT_NAMESPACE}/{GIT_SERVER}:{GIT_PORT})"
                    )?;
                    writeln!(
                        f,
                        "      $ {}",
                        quoted(&push_line(source, "<port>", "<snapshot>"))
                    )?;
                }
                Action::Refresh(source) => writeln!(
                    f,
                    "      (in-process: annotate each Application synced from {} argocd.argoproj.io/refresh=normal)",
                    source.repo_url
                )?,
                Action::Wait => writeln!(f, "      (kube watches, in-process)")?,
                Action::Skip(why) => writeln!(f, "      (skipped: {why})")?,
            }
        }
        Ok(())
    }
}

/// The k3d cluster as `k3d cluster list` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterState {
    /// No such cluster.
    Absent,
    /// It exists but its server is stopped.
    Stopped,
    /// It exists and its server runs.
    Running,
    /// A cluster of that name that was not made from [`CONFIG`], and why we think so.
    Foreign(String),
}

/// [`CLUSTER`]'s state on this machine, from `k3d cluster list -o json`; `None` when k3d
/// does not answer (not installed, or Docker not running).
pub fn listed_cluster_state(sh: &Shell) -> anyhow::Result<Option<ClusterState>> {
    match cmd!(sh, "k3d cluster list -o json")
        .quiet()
        .ignore_stderr()
        .read()
    {
        Ok(json) => cluster_state(&json).map(Some),
        Err(_) => Ok(None),
    }
}

/// [`CLUSTER`]'s state from the output of `k3d cluster list -o json`.
pub fn cluster_state(list_json: &str) -> anyhow::Result<ClusterState> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Listed {
        name: String,
        #[serde(default)]
        servers_running: u32,
        #[serde(default)]
        nodes: Vec<Node>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Node {
        #[serde(default)]
        role: String,
        #[serde(default)]
        runtime_labels: std::collections::BTreeMap<String, String>,
    }
    let listed: Vec<Listed> =
        serde_json::from_str(list_json.trim()).context("parse `k3d cluster list -o json`")?;
    let Some(cluster) = listed.iter().find(|c| c.name == CLUSTER) else {
        return Ok(ClusterState::Absent);
    };
    // NB: only a node whose labels are listed at all (k3d's own `k3d.cluster` among them)
    // can prove a cluster foreign; an older k3d that lists none is taken at its word.
    let foreign = cluster.nodes.iter().find(|n| {
        n.role == "server"
            && n.runtime_labels.contains_key("k3d.cluster")
            && !n.runtime_labels.contains_key(CONFIG_LABEL)
    });
    Ok(match foreign {
        Some(_) => ClusterState::Foreign(format!(
            "its server node has no `{CONFIG_LABEL}` label, which {CONFIG} sets"
        )),
        None if cluster.servers_running == 0 => ClusterState::Stopped,
        None => ClusterState::Running,
    })
}

/// The error for a cluster of our name that someone else made.
pub fn foreign_cluster(why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "a k3d cluster named `{CLUSTER}` already exists, but it was not created from {CONFIG} ({why}). \
         Nothing was changed. Fix: if it is a leftover you can lose, delete it with \
         `k3d cluster delete {CLUSTER}` and run `cargo xtask up` again; if it is someone else's, \
         leave it and stop it first (`k3d cluster stop {CLUSTER}`) before deleting anything"
    )
}

/// An image `up` imports, as the plan shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedImage {
    /// `flightdeck/processor`.
    pub name: String,
    /// The docker archive `cargo xtask images` writes, as shown (`target/images/…`).
    pub archive: String,
}

/// What `up` finds before it starts.
#[derive(Debug, Clone)]
pub struct UpFacts {
    /// The cluster's state.
    pub cluster: ClusterState,
    /// The kubeconfig file k3d writes into and Terraform reads.
    pub kubeconfig: String,
    /// The images `cargo xtask images` builds.
    pub images: Vec<PlannedImage>,
    /// Build and import the images (`--skip-images` turns it off).
    pub build_images: bool,
    /// Where Argo CD reads the platform from.
    pub source: Source,
}

/// Everything `up` does, in order.
pub fn up(facts: &UpFacts) -> Plan {
    let mut plan = Plan::default();
    match &facts.cluster {
        ClusterState::Absent | ClusterState::Foreign(_) => plan.run(
            &format!("create the k3d cluster {CLUSTER} (k3s pinned by digest in {CONFIG})"),
            &["k3d", "cluster", "create", "--config", CONFIG],
        ),
        ClusterState::Stopped => {
            plan.run(
                &format!("start the stopped k3d cluster {CLUSTER}"),
                &["k3d", "cluster", "start", CLUSTER],
            );
        }
        ClusterState::Running => plan.push(
            format!("create the k3d cluster {CLUSTER}"),
            Action::Skip("it exists and runs".into()),
        ),
    }
    if matches!(facts.cluster, ClusterState::Stopped | ClusterState::Running) {
        plan.run(
            &format!("make sure the kubeconfig has the context {CONTEXT}"),
            &[
                "k3d",
                "kubeconfig",
                "merge",
                CLUSTER,
                "--kubeconfig-merge-default",
                "--kubeconfig-switch-context=false",
            ],
        );
    }
    if facts.build_images {
        plan.run(
            "build the service images and Superset's (the same inputs give the same digests, so the same tags; \
             Superset's base by the digest in infrastructure/superset/base-image.lock, copied once)",
            &["cargo", "xtask", "images", "--superset"],
        );
        let mut line = vec!["k3d", "image", "import", "--cluster", CLUSTER];
        line.extend(facts.images.iter().map(|i| i.archive.as_str()));
        plan.run(
            "import them into the cluster's nodes, tagged <version>-<first 12 hex digits of the digest>",
            &line,
        );
    } else {
        plan.push(
            "build and import the images",
            Action::Skip(
                "--skip-images: the tags of the last build in target/images are deployed".into(),
            ),
        );
    }
    let kube_context = format!("kube_context={CONTEXT}");
    let kubeconfig = format!("kubeconfig_path={}", facts.kubeconfig);
    let chdir = format!("-chdir={TERRAFORM_DIR}");
    plan.run(
        "install the pinned Terraform providers",
        &["terraform", &chdir, "init", "-input=false"],
    );
    plan.run(
        "namespaces, Argo CD and the generated secrets (changes nothing when they exist)",
        &[
            "terraform",
            &chdir,
            "apply",
            "-input=false",
            "-auto-approve",
            "-var",
            &kube_context,
            "-var",
            &kubeconfig,
        ],
    );
    if facts.source.in_cluster() {
        plan.run(
            "the git server Argo CD and Airflow read the checkout from",
            &[
                "kubectl",
                "--context",
                CONTEXT,
                "apply",
                "-f",
                GIT_SERVER_MANIFEST,
            ],
        );
        plan.run(
            "wait until it answers",
            &[
                "kubectl",
                "--context",
                CONTEXT,
                "--namespace",
                GIT_NAMESPACE,
                "rollout",
                "status",
                &format!("deployment/{GIT_SERVER}"),
                "--timeout=180s",
            ],
        );
        plan.push(
            "commit a snapshot of the working tree (uncommitted edits included) with the images' tags in infrastructure/k8s/",
            Action::Snapshot(facts.images.iter().map(|i| i.name.clone()).collect()),
        );
        plan.push(
            format!(
                "push it to the branch {} of the git server (nothing when the cluster already has it)",
                facts.source.target_revision
            ),
            Action::Push(facts.source.clone()),
        );
    } else {
        plan.push(
            "deploy the checkout",
            Action::Skip(format!(
                "{} names {} at {}: Argo CD syncs what is pushed there, not this working tree",
                super::source::SETTING,
                facts.source.repo_url,
                facts.source.target_revision
            )),
        );
    }
    plan.run(
        "the app of apps: Argo CD syncs everything else from the source",
        &["kubectl", "--context", CONTEXT, "apply", "-f", ROOT_APP],
    );
    if facts.source.in_cluster() {
        plan.push(
            "tell Argo CD about the new revision now rather than at its next poll",
            Action::Refresh(facts.source.clone()),
        );
    }
    plan.run(
        "expose the UIs on http://<name>.localhost:8080",
        &["kubectl", "--context", CONTEXT, "apply", "-f", UI_INGRESS],
    );
    plan.push(
        if facts.source.in_cluster() {
            "wait until every Application is Synced and Healthy at the snapshot's revision, Kafka and the Postgres clusters are Ready and our Deployments are available"
        } else {
            "wait until every Application is Synced and Healthy, Kafka and the Postgres clusters are Ready and our Deployments are available"
        },
        Action::Wait,
    );
    plan
}

/// Everything `down` does: delete the cluster, then the Terraform state of it.
pub fn down(cluster: &ClusterState, state_files: &[String]) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    match cluster {
        ClusterState::Absent => plan.push(
            format!("delete the k3d cluster {CLUSTER}"),
            Action::Skip("there is none".into()),
        ),
        ClusterState::Foreign(why) => bail!(
            "a k3d cluster named `{CLUSTER}` exists but was not created from {CONFIG} ({why}): \
             `cargo xtask down` does not delete someone else's cluster. If it is yours to lose: \
             `k3d cluster delete {CLUSTER}`"
        ),
        ClusterState::Stopped | ClusterState::Running => plan.run(
            &format!("delete the k3d cluster {CLUSTER} and its volumes"),
            &["k3d", "cluster", "delete", CLUSTER],
        ),
    }
    for file in state_files {
        plan.push(
            "forget the Terraform state of the deleted cluster (it only held its generated passwords)",
            Action::Remove(file.clone()),
        );
    }
    Ok(plan)
}

/// Runs `plan` step by step in `sh`; `in_process` performs the in-process actions.
pub fn execute(
    sh: &Shell,
    plan: &Plan,
    mut in_process: impl FnMut(&Action) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let total = plan.steps.len();
    for (i, step) in plan.steps.iter().enumerate() {
        eprintln!("\n==> [{}/{total}] {}", i + 1, step.title);
        match &step.action {
            Action::Run(line) => {
                eprintln!("    $ {}", quoted(line));
                let (program, args) = line.split_first().context("an empty command line")?;
                cmd!(sh, "{program} {args...}")
                    .run()
                    .with_context(|| format!("step {}: `{}` failed", i + 1, quoted(line)))?;
            }
            Action::Remove(path) => {
                let path = sh.current_dir().join(path);
                if path.exists() {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("remove {}", path.display()))?;
                }
            }
            Action::Skip(why) => eprintln!("    skipped: {why}"),
            other => {
                in_process(other).with_context(|| format!("step {}: {}", i + 1, step.title))?
            }
        }
    }
    Ok(())
}

/// Terraform state files that exist under `root`.
pub fn terraform_state_files(root: &Path) -> Vec<String> {
    ["terraform.tfstate", "terraform.tfstate.backup"]
        .iter()
        .map(|name| format!("{TERRAFORM_DIR}/{name}"))
        .filter(|rel| root.join(rel).exists())
        .collect()
}

#[cfg(test)]
mod tests;
