//! `cargo xtask e2e`: the committed fixtures through the real producer, broker, processor
//! and PostgreSQL, with insta snapshots of what landed.
//!
//! The run replays `xtask/fixtures/e2e/*.json`, checks counts against what the fixtures
//! themselves say (computed independently with `flight-model`), snapshots the table and
//! the DLQ, replays the same files again and checks the table did not change. Then the
//! dashboard step ([`dashboard`]): Superset with the dashboard as code, every chart's data
//! equal to SQL, and a real browser rendering it. Every process is stopped when the run
//! ends, pass or fail.

pub mod cluster;
pub mod dashboard;
pub mod landed;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};
use localstack::Stack;
use xshell::Shell;

use crate::pipeline::{self, Endpoints, Observer};

/// How long the processor may take to commit a replay, locally and in the cluster.
pub const DRAINED: Duration = Duration::from_secs(120);

/// Replay the committed fixtures end to end and compare with the committed snapshots.
#[derive(Debug, clap::Args)]
pub struct E2e {
    /// Fixtures to replay (default: every xtask/fixtures/e2e/*.json, in name order).
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub fixtures: Vec<PathBuf>,
    /// Run against a cluster instead of a local stack: `k3d` is the one `cargo xtask up`
    /// creates (its live producer is paused for the run, its table emptied).
    #[arg(long, value_enum, value_name = "KIND")]
    pub cluster: Option<ClusterKind>,
    /// Skip the dashboard step (Superset: chart data against SQL, the browser test).
    #[arg(long)]
    pub no_dashboard: bool,
}

/// A cluster `e2e` can run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterKind {
    /// The local k3d cluster of `cargo xtask up`.
    K3d,
}

impl E2e {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        // The committed snapshots describe the committed fixtures; other files are checked
        // against what they themselves say (counts, rows per country, DLQ size) only.
        let snapshots = self.fixtures.is_empty();
        let fixtures = if snapshots {
            default_fixtures(sh)?
        } else {
            self.fixtures
        };
        if self.cluster == Some(ClusterKind::K3d) {
            return cluster::run(sh, &fixtures, snapshots);
        }
        let expected = landed::Expected::from_fixtures(&fixtures)?;
        let bins = pipeline::build_services(sh, pipeline::Profile::Dev)?;
        let dir = pipeline::target_dir(sh).join("e2e");
        // A previous run's state must not leak into this one.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            eprintln!(
                "e2e: starting PostgreSQL and the broker under {}",
                dir.display()
            );
            let stack = Stack::start_ephemeral(&dir).await?;
            let at = Endpoints {
                database_url: stack.database_url(),
                bootstrap_servers: stack.bootstrap_servers(),
            };
            let mut processor = pipeline::start_processor(
                &bins,
                &at,
                localstack::free_port()?,
                &dir.join("processor.log"),
            )?;
            let observer = Observer::connect(&at).await?;

            eprintln!("e2e: replaying {} fixture(s)", fixtures.len());
            let summary = pipeline::replay(&bins, &at, &fixtures)?;
            ensure!(
                summary.produced == expected.produced,
                "produced {} records, the fixtures hold {}",
                summary.produced,
                expected.produced
            );
            observer.wait_drained(Some(&mut processor), DRAINED).await?;
            let first = landed::Landed::read(&observer, &at.bootstrap_servers).await?;
            first.assert_matches(&expected)?;
            if snapshots {
                first.assert_snapshots();
            } else {
                eprintln!(
                    "e2e: custom fixtures: counts checked against the files, snapshots skipped"
                );
            }

            eprintln!("e2e: replaying the same fixtures again");
            pipeline::replay(&bins, &at, &fixtures)?;
            observer.wait_drained(Some(&mut processor), DRAINED).await?;
            let second = landed::Landed::read(&observer, &at.bootstrap_servers).await?;
            second.assert_replay_changed_nothing(&first)?;
            let status = processor.stop();
            ensure!(
                status.is_some_and(|s| s.success()),
                "the processor did not exit cleanly on SIGTERM: {status:?}"
            );
            if self.no_dashboard {
                eprintln!("e2e: --no-dashboard: the dashboard step was skipped");
            } else {
                dashboard::run(sh.current_dir().as_path(), &dir, &stack, &observer.pool).await?;
            }
            eprintln!(
                "e2e: passed: {} rows, {} countries, {} DLQ records; the replay changed nothing",
                first.rows,
                first.per_country.len(),
                first.dlq.len()
            );
            anyhow::Ok(())
        })
    }
}

fn default_fixtures(sh: &Shell) -> anyhow::Result<Vec<PathBuf>> {
    let dir = sh.current_dir().join("xtask/fixtures/e2e");
    let files = crate::files::json_in(&dir)?;
    ensure!(!files.is_empty(), "no fixtures in {}", dir.display());
    Ok(files)
}
