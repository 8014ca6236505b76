//! The steps of `up` that run inside the xtask ([`Action::Snapshot`], [`Action::Push`],
//! [`Action::Refresh`], [`Action::Wait`]) and what they share: the Kubernetes client
//! (made once the cluster exists), the snapshot commit, whether it was new.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;
use xshell::Shell;

use super::plan::{Action, push_line, quoted};
use super::progress::Progress;
use super::snapshot::{self, Checkout, ImageTag, Snapshot, short};
use super::source::{GIT_NAMESPACE, GIT_PORT, GIT_SERVER, Source};
use super::status::Kind;
use super::wait::Timeouts;
use crate::images::built::{self, Planned};

/// How the client is made: `cluster::client` for real, a verifier's in tests.
pub type Connect = Box<dyn Fn() -> Pin<Box<dyn Future<Output = anyhow::Result<kube::Client>>>>>;

/// What the in-process steps deploy, besides the plan.
pub struct Deployment {
    /// cargo's target directory (forensics go to `<target>/forensics/`).
    pub target: PathBuf,
    /// Where Argo CD reads from.
    pub source: Source,
    /// What is checked out (`None` when the source is a remote repository).
    pub checkout: Option<Checkout>,
    /// The images `cargo xtask images` builds.
    pub images: Vec<Planned>,
    /// How long the wait may take.
    pub timeouts: Timeouts,
}

/// The state the in-process steps share.
pub struct Deployer<'a> {
    /// The shell the commands run in (its `PATH`, its directory: the checkout).
    pub sh: &'a Shell,
    /// What is deployed.
    pub deployment: Deployment,
    /// Shows the wait.
    pub progress: Box<dyn Progress>,
    runtime: &'a tokio::runtime::Runtime,
    connect: Connect,
    client: Option<kube::Client>,
    snapshot: Option<Snapshot>,
    pushed: bool,
    /// How long the wait took, once it is over.
    pub took: Option<Duration>,
    /// Whether the wait ran (it writes its own forensics when it fails).
    pub waited: bool,
}

impl<'a> Deployer<'a> {
    /// A deployer that connects with `connect` when a step first needs the cluster.
    pub fn new(
        sh: &'a Shell,
        runtime: &'a tokio::runtime::Runtime,
        connect: Connect,
        deployment: Deployment,
        progress: Box<dyn Progress>,
    ) -> Self {
        Self {
            sh,
            deployment,
            progress,
            runtime,
            connect,
            client: None,
            snapshot: None,
            pushed: false,
            took: None,
            waited: false,
        }
    }

    /// The commit deployed, once the snapshot step ran.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// The cluster's client, made on first use.
    pub fn client(&mut self) -> anyhow::Result<kube::Client> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = self.runtime.block_on((self.connect)())?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Performs one in-process action of the plan.
    pub fn step(&mut self, action: &Action) -> anyhow::Result<()> {
        match action {
            Action::Snapshot(_) => self.commit(),
            Action::Push(_) => self.push(),
            Action::Refresh(_) => self.refresh(),
            Action::Wait => self.wait(),
            other => bail!("not an in-process step: {other:?}"),
        }
    }

    fn commit(&mut self) -> anyhow::Result<()> {
        let mut tags = Vec::new();
        for planned in &self.deployment.images {
            let image = built::read(planned)?;
            eprintln!("    {} -> {}", image.name, image.reference());
            tags.push(ImageTag {
                name: image.name,
                tag: image.tag,
            });
        }
        let checkout = self
            .deployment
            .checkout
            .as_ref()
            .context("no checkout to commit: the source is not the in-cluster git server")?;
        let snapshot = snapshot::create(self.sh, checkout, &tags)?;
        eprintln!(
            "    snapshot {} of {}",
            short(&snapshot.commit),
            checkout.describe()
        );
        for file in &snapshot.retagged {
            eprintln!("    tagged the images in {file}");
        }
        self.snapshot = Some(snapshot);
        Ok(())
    }

    fn push(&mut self) -> anyhow::Result<()> {
        let commit = self
            .snapshot
            .as_ref()
            .context("no snapshot to push: the snapshot step did not run")?
            .commit
            .clone();
        let client = self.client()?;
        let line = self.runtime.block_on(async {
            let pods: Api<Pod> = Api::namespaced(client, GIT_NAMESPACE);
            let pod = ready_pod(&pods).await?;
            let forward = super::portforward::forward(
                pods,
                &pod,
                GIT_PORT,
                SocketAddr::from(([127, 0, 0, 1], 0)),
            )
            .await?;
            let line = push_line(
                &self.deployment.source,
                &forward.local.port().to_string(),
                &commit,
            );
            eprintln!("    $ {}", quoted(&line));
            // NB: run without blocking the runtime, which serves the port-forward.
            let output = tokio::process::Command::new(&line[0])
                .args(&line[1..])
                .current_dir(self.sh.current_dir())
                .env("PATH", self.sh.var_os("PATH").unwrap_or_default())
                .env("GIT_TERMINAL_PROMPT", "0")
                .output()
                .await
                .context("run `git push`")?;
            drop(forward);
            anyhow::Ok((line, output))
        });
        let (line, output) = line?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "`{}` failed: {}{}",
                quoted(&line),
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        self.pushed = pushed(&stdout, &self.deployment.source.branch_ref())?;
        if self.pushed {
            eprintln!(
                "    the git server's {} is now {}",
                self.deployment.source.target_revision,
                short(&commit)
            );
        } else {
            eprintln!(
                "    the git server already has {}: nothing changed",
                short(&commit)
            );
        }
        Ok(())
    }

    fn refresh(&mut self) -> anyhow::Result<()> {
        if !self.pushed {
            eprintln!("    skipped: the revision is the one Argo CD already has");
            return Ok(());
        }
        let client = self.client()?;
        let repo = self.deployment.source.repo_url.clone();
        self.runtime.block_on(async {
            let apps: Api<DynamicObject> =
                Api::namespaced_with(client, GIT_NAMESPACE, &Kind::Application.api_resource());
            let list = apps
                .list(&ListParams::default())
                .await
                .context("list the Argo CD Applications")?;
            let mut names: Vec<String> = list
                .items
                .iter()
                .filter(|app| app.data["spec"]["source"]["repoURL"].as_str() == Some(&repo))
                .filter_map(|app| app.metadata.name.clone())
                .collect();
            names.sort();
            let patch =
                json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}});
            for name in &names {
                apps.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .with_context(|| format!("ask Argo CD to refresh the Application {name}"))?;
            }
            eprintln!("    refreshed {}", names.join(", "));
            anyhow::Ok(())
        })
    }

    fn wait(&mut self) -> anyhow::Result<()> {
        self.waited = true;
        let root = self.sh.current_dir();
        let revision = self.snapshot.as_ref().map(|s| s.commit.clone());
        let goal = super::goal(&root, &self.deployment.source, revision.as_deref())?;
        let client = self.client()?;
        let took = self.runtime.block_on(super::ready_or_forensics(
            &client,
            &goal,
            self.deployment.timeouts,
            self.progress.as_mut(),
            &self.deployment.target,
        ))?;
        self.took = Some(took);
        Ok(())
    }

    /// Forensics of Argo CD's and the system's namespaces after a failed step; the line
    /// saying where they are. Bounded like every forensics collection.
    pub fn step_forensics(&mut self, error: &anyhow::Error) -> String {
        let summary = format!("cargo xtask up failed: {error:#}");
        let namespaces: BTreeSet<String> = [GIT_NAMESPACE, "kube-system"].map(String::from).into();
        let client = match &self.client {
            Some(client) => Ok(client.clone()),
            None => match self.runtime.block_on(async {
                tokio::time::timeout(super::forensics::TIME_LIMIT, (self.connect)()).await
            }) {
                Ok(Ok(client)) => Ok(client),
                Ok(Err(error)) => Err(format!("{error:#}")),
                Err(_) => Err("no answer".to_owned()),
            },
        };
        match client {
            Ok(client) => self.runtime.block_on(super::forensics::save(
                &client,
                &self.deployment.target,
                &summary,
                &namespaces,
            )),
            Err(why) => format!("no forensics: the cluster does not answer ({why})"),
        }
    }
}

/// The name of a ready git server pod.
async fn ready_pod(pods: &Api<Pod>) -> anyhow::Result<String> {
    let selector = format!("app.kubernetes.io/name={GIT_SERVER}");
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .context("find the git server's pod")?;
    list.items
        .into_iter()
        .find(|pod| {
            pod.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .and_then(|pod| pod.metadata.name)
        .with_context(|| {
            format!(
                "no ready pod of the git server: `kubectl --context {} -n {GIT_NAMESPACE} get pods -l {selector}` shows why",
                super::CONTEXT
            )
        })
}

/// Whether `git push --porcelain` updated `reference` (`false`: it was up to date).
pub fn pushed(porcelain: &str, reference: &str) -> anyhow::Result<bool> {
    for line in porcelain.lines() {
        let mut fields = line.split('\t');
        let (Some(flag), Some(refs)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !refs.ends_with(&format!(":{reference}")) {
            continue;
        }
        return match flag {
            "=" => Ok(false),
            " " | "+" | "*" => Ok(true),
            _ => bail!(
                "the git server refused the snapshot: {}",
                fields.collect::<Vec<_>>().join(" ")
            ),
        };
    }
    bail!("`git push --porcelain` did not report {reference}:\n{porcelain}")
}

#[cfg(test)]
mod tests;
