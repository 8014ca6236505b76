//! `cargo xtask up`: the whole platform on a local k3d cluster, in one command, running
//! what is checked out.
//!
//! Checks the machine first (the tools and the Docker daemon as `doctor` does, the host
//! ports, a cluster of our name made by someone else, a checkout with a commit): each
//! problem is one message with its fix, before anything is created. Then it creates the
//! cluster from `infrastructure/k3d/cluster.yaml` unless it exists, builds the service
//! images and the Superset image ([`crate::images::superset`]: the official release by
//! its pinned digest plus the PostgreSQL driver) and imports them under their
//! digest-derived tags, applies Terraform
//! (namespaces, Argo CD, generated secrets), starts the in-cluster git server, pushes a
//! snapshot commit of the working tree to it ([`crate::cluster::snapshot`]), applies the
//! app of apps and waits with Kubernetes watches until every Application is Synced and
//! Healthy at that revision, Kafka and the Postgres clusters are Ready and our
//! Deployments are available. The plan is printed first ([`crate::cluster::plan`]); a
//! second run with nothing changed pushes nothing and changes nothing. When a step or
//! the wait fails, forensics go to `target/forensics/<timestamp>/`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use xshell::Shell;

use crate::cluster::deploy::{Connect, Deployer, Deployment};
use crate::cluster::plan::{self, ClusterState, Plan, PlannedImage, UpFacts};
use crate::cluster::snapshot::{Checkout, short};
use crate::cluster::source::{self, Source};
use crate::cluster::{self, CONTEXT, preflight, progress, wait::Timeouts};
use crate::images::built;
use crate::images::superset::pin::{self, Pin};

/// Create the k3d cluster (unless it exists), deploy the checkout and wait until it is ready.
#[derive(Debug, clap::Args)]
pub struct Up {
    /// Print the steps (every command line) and what would be deployed, and stop
    /// without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not build and import the images (the services' and Superset's): deploy the
    /// tags of the last build (target/images), which must still be in the cluster.
    #[arg(long)]
    pub skip_images: bool,
    /// The longest one component may take once its controller started on it
    /// (e.g. `90s`, `10m`). Applications of a later sync wave start when their turn comes.
    #[arg(long, default_value = "15m", value_parser = cluster::parse_duration, value_name = "DURATION")]
    pub component_timeout: Duration,
    /// The longest the whole wait may take.
    #[arg(long, default_value = "40m", value_parser = cluster::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

impl Up {
    /// Runs the plan; fails naming the stuck component (with forensics) or the failed step.
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let root = sh.current_dir();
        let source = Source::read(&root)?;
        // A checkout with nothing to deploy fails here, before anything else.
        let checkout = if source.in_cluster() {
            Some(Checkout::inspect(sh)?)
        } else {
            None
        };
        if !self.dry_run {
            crate::doctor::require_up_tools()?;
        }
        // A pin of Superset's base that cannot be read fails before anything is created;
        // an empty one is filled by the image build (which says so).
        if !self.skip_images {
            match pin::read(&root)? {
                Pin::Digest(_) => {}
                Pin::Empty => eprintln!("up: note: {}", pin::describe(&root)),
            }
        }
        let cluster = cluster_state(sh, self.dry_run)?;
        if let ClusterState::Foreign(why) = &cluster {
            return Err(plan::foreign_cluster(why));
        }
        let target = crate::pipeline::target_dir(sh);
        let images = built::planned(sh)?;
        let facts = UpFacts {
            cluster: cluster.clone(),
            kubeconfig: cluster::kubeconfig_path().display().to_string(),
            images: images
                .iter()
                .map(|image| PlannedImage {
                    name: image.name.clone(),
                    archive: shown(&root, &image.archive),
                })
                .collect(),
            build_images: !self.skip_images,
            source: source.clone(),
        };
        let plan = plan::up(&facts);
        println!("cargo xtask up: the plan\n\n{plan}");
        match &checkout {
            Some(checkout) => println!(
                "It deploys {} (served to Argo CD by the git server in the cluster).",
                checkout.describe()
            ),
            None => println!(
                "It deploys {} at {} ({}): not this working tree.",
                source.repo_url,
                source.target_revision,
                source::SETTING
            ),
        }
        // A cluster that is created or started binds the ports; a running one holds them.
        let binds_ports = matches!(cluster, ClusterState::Absent | ClusterState::Stopped);
        if self.dry_run {
            if binds_ports
                && let Err(error) = preflight::require_free_ports(&preflight::CLUSTER_PORTS)
            {
                eprintln!("up: warning: {error:#}");
            }
            return Ok(());
        }
        if binds_ports {
            preflight::require_free_ports(&preflight::CLUSTER_PORTS)?;
        }
        let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
        let connect: Connect = Box::new(|| Box::pin(cluster::client()));
        let deployment = Deployment {
            target,
            source,
            checkout,
            images,
            timeouts: Timeouts {
                component: self.component_timeout,
                total: self.timeout,
            },
        };
        let (took, snapshot) = deploy(sh, &runtime, connect, &plan, deployment)?;
        println!("{}", ready_message(took, snapshot.as_deref()));
        Ok(())
    }
}

/// Runs `plan` in `sh`, the in-process steps against the cluster `connect` reaches;
/// returns how long the wait took and the revision deployed. A failed step leaves
/// forensics of Argo CD's and the system's namespaces (a stuck wait its own).
pub fn deploy(
    sh: &Shell,
    runtime: &tokio::runtime::Runtime,
    connect: Connect,
    plan: &Plan,
    deployment: Deployment,
) -> anyhow::Result<(Duration, Option<String>)> {
    std::fs::create_dir_all(&deployment.target)
        .with_context(|| format!("create {}", deployment.target.display()))?;
    let mut deployer = Deployer::new(sh, runtime, connect, deployment, progress::for_stderr());
    let result = plan::execute(sh, plan, |action| deployer.step(action));
    if let Err(error) = result {
        if deployer.waited {
            return Err(error);
        }
        let saved = deployer.step_forensics(&error);
        return Err(anyhow::anyhow!("{error:#}\n{saved}"));
    }
    Ok((
        deployer.took.unwrap_or_default(),
        deployer.snapshot().map(|s| s.commit.clone()),
    ))
}

/// `path` relative to `root` when it is inside it, as the plan shows it.
fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The cluster's state; in a dry run without k3d, assumed absent.
fn cluster_state(sh: &Shell, dry_run: bool) -> anyhow::Result<ClusterState> {
    match plan::listed_cluster_state(sh)? {
        Some(state) => Ok(state),
        None if dry_run => {
            eprintln!(
                "up: `k3d cluster list` failed (is k3d installed?): planning for a new cluster"
            );
            Ok(ClusterState::Absent)
        }
        None => anyhow::bail!(
            "list the k3d clusters: `k3d cluster list -o json` failed (is k3d installed, does \
             Docker run? `cargo xtask doctor` checks both)"
        ),
    }
}

/// What `up` prints at the end: what runs and where everything is.
pub fn ready_message(took: Duration, revision: Option<&str>) -> String {
    let password = |output: &str| {
        format!(
            "terraform -chdir={} output -raw {output}",
            cluster::TERRAFORM_DIR
        )
    };
    let rows = [
        (
            "Argo CD",
            "argocd",
            format!(
                "kubectl --context {CONTEXT} -n argocd get secret argocd-initial-admin-secret -o jsonpath='{{.data.password}}' | base64 -d"
            ),
        ),
        ("Grafana", "grafana", password("grafana_admin_password")),
        ("Airflow", "airflow", password("airflow_admin_password")),
        ("Superset", "superset", password("superset_admin_password")),
    ];
    let running = match revision {
        Some(revision) => format!(", running snapshot {}", short(revision)),
        None => String::new(),
    };
    let mut out = format!(
        "\nflightdeck is up on the k3d cluster {}{running} (ready after {}).\n\n",
        cluster::CLUSTER,
        progress::elapsed(took)
    );
    for (name, host, password) in rows {
        out.push_str(&format!(
            "  {name:<9} http://{host}.localhost:8080   user admin, password: {password}\n"
        ));
    }
    out.push_str(&format!(
        "\n  kubectl --context {CONTEXT} -n argocd get applications\n  test it: cargo xtask e2e --cluster k3d    remove it: cargo xtask down\n"
    ));
    out
}
