//! `cargo xtask chaos`: the fault suite. Each scenario starts its own stack (real
//! PostgreSQL, real broker, release builds of the services), injects one class of fault
//! on purpose, and checks the result against a count computed from its input alone.
//!
//! One line per scenario, `PASS|FAIL name: figures`, then `chaos: lost=… duplicated=…`.
//! Every scenario has a time bound; `--quick` runs a smaller version of each (what
//! `cargo xtask ci` runs). A scenario that cannot run here (no `mount` for the disk-full
//! one) fails under `CI=true` and is reported as skipped otherwise.

mod corpus;
mod fake_api;
mod rig;
mod scenarios;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use xshell::Shell;

use crate::pipeline::{self, Binaries};

/// Inject faults on purpose and prove nothing is lost: `PASS|FAIL name: figures` per scenario.
#[derive(Debug, clap::Args)]
pub struct Chaos {
    /// A smaller version of every scenario, under five minutes in all (what CI runs).
    #[arg(long)]
    pub quick: bool,
    /// Run only this scenario (repeatable); `--list` names them.
    #[arg(long = "only", value_name = "SCENARIO")]
    pub only: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
}

/// What a scenario found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Whether every check held.
    pub pass: bool,
    /// The figures, for the report line.
    pub figures: String,
    /// Expected rows missing.
    pub lost: usize,
    /// Rows beyond one per key.
    pub duplicated: usize,
    /// Skipped (only outside CI): why.
    pub skipped: Option<String>,
}

/// What every scenario gets.
pub struct Ctx {
    /// Where the scenarios' stacks live (`target/chaos/`).
    pub root: PathBuf,
    /// The release binaries.
    pub bins: Binaries,
    /// The committed fixtures.
    pub fixtures: corpus::Fixtures,
    /// The small version.
    pub quick: bool,
}

impl Chaos {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let all = scenarios::all();
        if self.list {
            for s in &all {
                println!("{:<26} {}", s.name, s.about);
            }
            return Ok(());
        }
        for name in &self.only {
            if !all.iter().any(|s| s.name == name) {
                bail!("no scenario {name:?}; `cargo xtask chaos --list` names them");
            }
        }
        let bins = pipeline::build_services(sh, pipeline::Profile::Release)?;
        let ctx = Ctx {
            root: pipeline::target_dir(sh).join("chaos"),
            bins,
            fixtures: corpus::Fixtures::load(&sh.current_dir().join("xtask/fixtures/e2e"))?,
            quick: self.quick,
        };
        let started = Instant::now();
        let queue: Vec<&scenarios::Scenario> = all
            .iter()
            .filter(|s| self.only.is_empty() || self.only.iter().any(|o| o == s.name))
            .collect();
        // NB: the quick suite runs two scenarios at a time (each on its own stack, ports and
        // runtime): they mostly wait on restarts and paced streams, and that keeps `ci`
        // under five minutes. The full suite runs one at a time, so its timings stand alone.
        let jobs = if self.quick { 2 } else { 1 };
        let queue = std::sync::Mutex::new(queue.into_iter());
        let results = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..jobs {
                scope.spawn(|| {
                    let runtime = match tokio::runtime::Runtime::new() {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("chaos: cannot start a runtime: {e}");
                            return;
                        }
                    };
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                        let Some(scenario) = next else { return };
                        let result = self.one(&ctx, &runtime, scenario);
                        results
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(result);
                    }
                });
            }
        });
        let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        let (mut lost, mut duplicated, mut failed, mut skipped) = (0, 0, Vec::new(), Vec::new());
        for (name, outcome) in &results {
            lost += outcome.lost;
            duplicated += outcome.duplicated;
            match (&outcome.skipped, outcome.pass) {
                (Some(_), _) => skipped.push(*name),
                (None, false) => failed.push(*name),
                (None, true) => {}
            }
        }
        println!(
            "chaos: lost={lost} duplicated={duplicated} failed={} skipped={} in {}s",
            failed.len(),
            skipped.len(),
            started.elapsed().as_secs()
        );
        if !skipped.is_empty() {
            eprintln!(
                "chaos: SKIPPED (not run on this machine): {}",
                skipped.join(", ")
            );
        }
        if !failed.is_empty() {
            bail!(
                "chaos: {} scenario(s) failed: {}",
                failed.len(),
                failed.join(", ")
            );
        }
        Ok(())
    }
}

impl Chaos {
    /// Runs one scenario within its bound and prints its line.
    fn one(
        &self,
        ctx: &Ctx,
        runtime: &tokio::runtime::Runtime,
        scenario: &scenarios::Scenario,
    ) -> (&'static str, Outcome) {
        let bound = if self.quick {
            scenario.quick_bound
        } else {
            scenario.bound
        };
        eprintln!("chaos: {} (at most {}s) …", scenario.name, bound.as_secs());
        let began = Instant::now();
        let outcome = runtime.block_on(async {
            match tokio::time::timeout(bound, (scenario.run)(ctx)).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(error)) => Outcome {
                    figures: format!("error: {error:#}"),
                    ..Outcome::default()
                },
                Err(_) => Outcome {
                    figures: format!("did not finish within {}s", bound.as_secs()),
                    ..Outcome::default()
                },
            }
        });
        let secs = began.elapsed().as_secs();
        let line = match (&outcome.skipped, outcome.pass) {
            (Some(why), _) => format!("SKIP {}: {why}", scenario.name),
            (None, true) => format!("PASS {}: {} ({secs}s)", scenario.name, outcome.figures),
            (None, false) => format!("FAIL {}: {} ({secs}s)", scenario.name, outcome.figures),
        };
        println!("{line}");
        (scenario.name, outcome)
    }
}

/// The median and the maximum of `values`.
fn p50_max(values: &[Duration]) -> (Duration, Duration) {
    let mut sorted = values.to_vec();
    sorted.sort();
    let p50 = sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default();
    (p50, sorted.last().copied().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_lower_middle() {
        let s = Duration::from_secs;
        assert_eq!(p50_max(&[s(9), s(1), s(5), s(7)]), (s(5), s(9)));
        assert_eq!(p50_max(&[s(3)]), (s(3), s(3)));
        assert_eq!(p50_max(&[]), (s(0), s(0)));
    }
}
