//! `cargo xtask up`: the whole platform on a local k3d cluster, in one command.
//!
//! Checks the tools (as `doctor` does), creates the cluster from
//! `infrastructure/k3d/cluster.yaml` unless it exists, builds the service images and
//! imports them, applies Terraform (namespaces, Argo CD, generated secrets) and the app of
//! apps, then waits with Kubernetes watches until every Application is Synced and
//! Healthy, Kafka and the Postgres clusters are Ready and our Deployments are available.
//! The plan is printed first ([`crate::cluster::plan`]); on a healthy cluster a second
//! run changes nothing. When the wait fails it names the stuck component and writes
//! forensics to `target/forensics/<timestamp>/`.

use std::time::Duration;

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::cluster::plan::{self, ClusterState, UpFacts};
use crate::cluster::{self, CONTEXT, progress, wait::Timeouts};

/// Create the k3d cluster (unless it exists) and wait until everything on it is ready.
#[derive(Debug, clap::Args)]
pub struct Up {
    /// Print the steps (every command line) and stop without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not build and import the service images: keep those already in the cluster.
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
        if !self.dry_run {
            crate::doctor::require_up_tools()?;
        }
        let root = sh.current_dir();
        let target = crate::pipeline::target_dir(sh);
        let facts = UpFacts {
            cluster: cluster_state(sh, self.dry_run)?,
            kubeconfig: cluster::kubeconfig_path().display().to_string(),
            target: target
                .strip_prefix(&root)
                .unwrap_or(&target)
                .display()
                .to_string(),
            images: cluster::service_images(&root)?,
            build_images: !self.skip_images,
        };
        let plan = plan::up(&facts);
        println!("cargo xtask up: the plan\n\n{plan}");
        if self.dry_run {
            return Ok(());
        }
        std::fs::create_dir_all(target.join("k3d")).context("create target/k3d")?;
        let timeouts = Timeouts {
            component: self.component_timeout,
            total: self.timeout,
        };
        let mut took = Duration::ZERO;
        let mut waited = false;
        let result = plan::execute(sh, &plan, || {
            waited = true;
            let expected = cluster::expected_components(&root)?;
            let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
            took = runtime.block_on(async {
                let client = cluster::client().await?;
                let mut progress = progress::for_stderr();
                cluster::ready_or_forensics(
                    &client,
                    &expected,
                    timeouts,
                    progress.as_mut(),
                    &target,
                )
                .await
            })?;
            Ok(())
        });
        if let Err(error) = result {
            // The wait writes its own forensics; a failed step (Terraform waiting for
            // Argo CD, an apply) gets the base namespaces' when the cluster answers.
            if !waited {
                step_forensics(&target, &error);
            }
            return Err(error);
        }
        println!("{}", ready_message(took));
        Ok(())
    }
}

/// Best effort: forensics of `argocd` and `kube-system` after a failed step.
fn step_forensics(target: &std::path::Path, error: &anyhow::Error) {
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        return;
    };
    let dir = cluster::forensics::new_dir(target);
    let namespaces: std::collections::BTreeSet<String> =
        ["argocd", "kube-system"].map(String::from).into();
    let summary = format!("cargo xtask up failed: {error:#}");
    let written = runtime.block_on(async {
        let client = cluster::client().await?;
        let collect = cluster::forensics::collect(&client, &dir, &summary, &namespaces);
        tokio::time::timeout(Duration::from_secs(120), collect).await?
    });
    match written {
        Ok(()) => eprintln!("up: forensics (logs, events, YAML) in {}", dir.display()),
        Err(_) => eprintln!("up: no forensics: the cluster does not answer"),
    }
}

/// The cluster's state; in a dry run without k3d, assumed absent.
fn cluster_state(sh: &Shell, dry_run: bool) -> anyhow::Result<ClusterState> {
    match cmd!(sh, "k3d cluster list -o json")
        .quiet()
        .ignore_stderr()
        .read()
    {
        Ok(json) => plan::cluster_state(&json),
        Err(_) if dry_run => {
            eprintln!(
                "up: `k3d cluster list` failed (is k3d installed?): planning for a new cluster"
            );
            Ok(ClusterState::Absent)
        }
        Err(error) => Err(error).context("list the k3d clusters (`k3d cluster list -o json`)"),
    }
}

/// What `up` prints at the end: where everything is.
pub fn ready_message(took: Duration) -> String {
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
    let mut out = format!(
        "\nflightdeck is up on the k3d cluster {} (ready after {}).\n\n",
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
