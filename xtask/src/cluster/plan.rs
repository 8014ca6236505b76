//! The command lines `up` and `down` run, as data: built from what is already there
//! ([`UpFacts`]), printed before anything runs (`--dry-run` stops there), and
//! snapshot-tested, so a reviewer sees exactly what will run on their machine.

use std::fmt;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use xshell::{Shell, cmd};

use super::{CLUSTER, CONFIG, CONTEXT, ROOT_APP, ServiceImage, TERRAFORM_DIR, UI_INGRESS};

/// One thing a plan does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run this command line.
    Run(Vec<String>),
    /// Delete this file if it exists.
    Remove(String),
    /// Wait for every component with Kubernetes watches (done in-process, see `wait`).
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

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "{:>2}. {}", i + 1, step.title)?;
            match &step.action {
                Action::Run(line) => writeln!(f, "      $ {}", quoted(line))?,
                Action::Remove(path) => writeln!(f, "      $ rm -f {path}")?,
                Action::Wait => writeln!(f, "      (kube watches, in-process)")?,
                Action::Skip(why) => writeln!(f, "      (skipped: {why})")?,
            }
        }
        Ok(())
    }
}

/// The k3d cluster as `k3d cluster list` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// No such cluster.
    Absent,
    /// It exists but its server is stopped.
    Stopped,
    /// It exists and its server runs.
    Running,
}

/// [`CLUSTER`]'s state from the output of `k3d cluster list -o json`.
pub fn cluster_state(list_json: &str) -> anyhow::Result<ClusterState> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Listed {
        name: String,
        #[serde(default)]
        servers_running: u32,
    }
    let listed: Vec<Listed> =
        serde_json::from_str(list_json.trim()).context("parse `k3d cluster list -o json`")?;
    Ok(match listed.iter().find(|c| c.name == CLUSTER) {
        None => ClusterState::Absent,
        Some(c) if c.servers_running == 0 => ClusterState::Stopped,
        Some(_) => ClusterState::Running,
    })
}

/// What `up` finds before it starts.
#[derive(Debug, Clone)]
pub struct UpFacts {
    /// The cluster's state.
    pub cluster: ClusterState,
    /// The kubeconfig file k3d writes into and Terraform reads.
    pub kubeconfig: String,
    /// cargo's target directory, as it should be shown (`target`).
    pub target: String,
    /// The service images the manifests reference.
    pub images: Vec<ServiceImage>,
    /// Build and import the images (`--skip-images` turns it off).
    pub build_images: bool,
}

/// Everything `up` does, in order.
pub fn up(facts: &UpFacts) -> Plan {
    let mut plan = Plan::default();
    match facts.cluster {
        ClusterState::Absent => plan.run(
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
    if facts.cluster != ClusterState::Absent {
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
            "build the service images (reproducible: an unchanged tree gives the same digests)",
            &["cargo", "xtask", "images"],
        );
        let mut archives = Vec::new();
        for image in &facts.images {
            let layout = format!("oci:{}/images/{}/oci:latest", facts.target, image.bin);
            let archive = format!("{}/k3d/{}.tar", facts.target, image.bin);
            plan.push(
                format!("clear the previous archive of {}", image.bin),
                Action::Remove(archive.clone()),
            );
            plan.run(
                &format!("name {} as the manifests reference it", image.bin),
                // NB: local files only, nothing to verify a signature of; without
                // --insecure-policy skopeo insists on /etc/containers/policy.json.
                &[
                    "skopeo",
                    "--insecure-policy",
                    "copy",
                    "--quiet",
                    &layout,
                    &format!("docker-archive:{archive}:{}", image.reference),
                ],
            );
            archives.push(archive);
        }
        let mut line = vec!["k3d", "image", "import", "--cluster", CLUSTER];
        line.extend(archives.iter().map(String::as_str));
        plan.run("import the images into the cluster's nodes", &line);
    } else {
        plan.push(
            "build and import the service images",
            Action::Skip("--skip-images".into()),
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
    plan.run(
        "the app of apps: Argo CD syncs everything else from git",
        &["kubectl", "--context", CONTEXT, "apply", "-f", ROOT_APP],
    );
    plan.run(
        "expose the UIs on http://<name>.localhost:8080",
        &["kubectl", "--context", CONTEXT, "apply", "-f", UI_INGRESS],
    );
    plan.push(
        "wait until every Application is Synced and Healthy, Kafka and the Postgres clusters are Ready and our Deployments are available",
        Action::Wait,
    );
    plan
}

/// Everything `down` does: delete the cluster, then the Terraform state of it.
pub fn down(cluster: ClusterState, state_files: &[String]) -> Plan {
    let mut plan = Plan::default();
    if cluster == ClusterState::Absent {
        plan.push(
            format!("delete the k3d cluster {CLUSTER}"),
            Action::Skip("there is none".into()),
        );
    } else {
        plan.run(
            &format!("delete the k3d cluster {CLUSTER} and its volumes"),
            &["k3d", "cluster", "delete", CLUSTER],
        );
    }
    for file in state_files {
        plan.push(
            "forget the Terraform state of the deleted cluster (it only held its generated passwords)",
            Action::Remove(file.clone()),
        );
    }
    plan
}

/// Runs `plan` step by step in `sh`; `wait` performs [`Action::Wait`].
pub fn execute(
    sh: &Shell,
    plan: &Plan,
    mut wait: impl FnMut() -> anyhow::Result<()>,
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
            Action::Wait => wait()?,
            Action::Skip(why) => eprintln!("    skipped: {why}"),
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
