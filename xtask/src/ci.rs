//! `cargo xtask ci`: exactly what CI runs. Green here means green there.
//!
//! A check whose tool is missing fails under `CI=true` with the install command; outside
//! CI it is skipped, and the run ends with one line naming every skipped check and why
//! ([`crate::skips`]), whether it ran here (the lint) or in a test.

use anyhow::Context as _;
use xshell::Shell;

use crate::pipeline::cargo;
use crate::skips;

/// Run fmt, clippy, every test, the offline lint, the local e2e, the quick fault suite and
/// a quick bench.
#[derive(Debug, clap::Args)]
pub struct Ci {}

impl Ci {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let log = crate::pipeline::target_dir(sh).join("ci-skipped.txt");
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        std::fs::write(&log, "").with_context(|| format!("clear {}", log.display()))?;
        // The tests cargo starts append the checks they skip here.
        let _log = sh.push_env(skips::LOG_ENV, &log);
        let result = steps(sh);
        let summary = skips::summary(&skips::all(&log));
        match result {
            Ok(()) => {
                eprintln!("ci: every step passed");
                eprintln!("{summary}");
                Ok(())
            }
            Err(error) => {
                eprintln!("{summary}");
                Err(error)
            }
        }
    }
}

fn steps(sh: &Shell) -> anyhow::Result<()> {
    step("cargo fmt --check");
    // NB: through `pipeline::cargo`, without what `cargo run` set for the xtask, so these
    // builds share fingerprints with the tests' and the services' builds.
    cargo(sh).args(["fmt", "--all", "--check"]).run()?;
    step("cargo clippy");
    cargo(sh)
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])
        .run()?;
    step("cargo test");
    cargo(sh).args(["test", "--workspace", "--locked"]).run()?;
    step("cargo xtask lint");
    crate::lint::Lint {
        skip_dags: false,
        offline_only: false,
        fix_source: false,
    }
    .run(sh)?;
    step("cargo xtask e2e");
    crate::e2e::E2e {
        fixtures: Vec::new(),
        cluster: None,
        no_dashboard: false,
    }
    .run(sh)?;
    step("cargo xtask chaos --quick");
    crate::chaos::Chaos {
        quick: true,
        only: Vec::new(),
        list: false,
    }
    .run(sh)?;
    step("cargo xtask bench --quick");
    // A smoke run: it proves the bench works from a fresh clone; its figures are
    // printed, not asserted (CI machines are too noisy for thresholds).
    crate::bench::Bench::quick().run(sh)
}

fn step(name: &str) {
    eprintln!("\nci: ── {name} ──");
}
