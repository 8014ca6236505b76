//! `cargo xtask ci`: exactly what CI runs. Green here means green there.

use xshell::{Shell, cmd};

/// Run fmt, clippy, every test, the offline lint, the local e2e and the quick fault suite.
#[derive(Debug, clap::Args)]
pub struct Ci {}

impl Ci {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        step("cargo fmt --check");
        cmd!(sh, "cargo fmt --all --check").run()?;
        step("cargo clippy");
        cmd!(
            sh,
            "cargo clippy --workspace --all-targets --locked -- -D warnings"
        )
        .run()?;
        step("cargo test");
        cmd!(sh, "cargo test --workspace --locked").run()?;
        step("cargo xtask lint");
        crate::lint::Lint {
            skip_dags: false,
            offline_only: false,
        }
        .run(sh)?;
        step("cargo xtask e2e");
        crate::e2e::E2e {
            fixtures: Vec::new(),
            cluster: None,
        }
        .run(sh)?;
        step("cargo xtask chaos --quick");
        crate::chaos::Chaos {
            quick: true,
            only: Vec::new(),
            list: false,
        }
        .run(sh)?;
        eprintln!("ci: every step passed");
        Ok(())
    }
}

fn step(name: &str) {
    eprintln!("\nci: ── {name} ──");
}
