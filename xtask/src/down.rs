//! `cargo xtask down`: deletes the k3d cluster and the Terraform state that described it.
//! Succeeds when there is no cluster (or no k3d at all): there is nothing to delete.
//! Refuses a cluster of the same name that was not made from our k3d config.

use xshell::Shell;

use crate::cluster::plan::{self, ClusterState};

/// Delete the k3d cluster and its Terraform state; succeeds when there is none.
#[derive(Debug, clap::Args)]
pub struct Down {
    /// Print the steps and stop without running anything.
    #[arg(long)]
    pub dry_run: bool,
}

impl Down {
    /// Deletes what exists.
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let cluster = match plan::listed_cluster_state(sh)? {
            Some(state) => state,
            None => {
                eprintln!(
                    "down: `k3d cluster list` failed (is k3d installed, does Docker run?): no cluster to delete"
                );
                ClusterState::Absent
            }
        };
        let plan = plan::down(&cluster, &plan::terraform_state_files(&sh.current_dir()))?;
        println!("cargo xtask down: the plan\n\n{plan}");
        if self.dry_run {
            return Ok(());
        }
        plan::execute(sh, &plan, |action| {
            anyhow::bail!("`down` has no in-process step: {action:?}")
        })?;
        println!("\nno k3d cluster {} any more", crate::cluster::CLUSTER);
        Ok(())
    }
}
