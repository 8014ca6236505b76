//! `cargo xtask bench`: the project's own benchmark, on the local stack, release build.
//!
//! It generates N real-shaped records (the e2e fixtures, time-shifted: see [`data`]),
//! starts PostgreSQL and the broker on free ports under `target/bench/`, loads the topic
//! once with the real replay producer, and then runs the stages round after round
//! (interleaved, so each ratio compares figures taken minutes apart, not hours):
//!
//! | stage | what |
//! |---|---|
//! | `copy` | one binary `COPY` of the same rows into an identical table: the limit |
//! | `sink` | the processor's write path fed from memory, no broker, once per write method |
//! | `drain` | a consumer that only receives: the broker's ceiling |
//! | `processor` | the processor binary end to end: pre-loaded topic, fresh group, empty table; the clock stops at the commit of the last row |
//! | `python` | the Python baseline (`baseline.py`) on the same topic and table |
//! | `latency` | produce → row visible at a fixed rate, once after the rounds |
//!
//! CPU seconds and peak memory of every process come from `/proc` ([`procstat`]); row
//! visibility from PostgreSQL's commit timestamps (`track_commit_timestamp`), so no
//! polling skews the clock. Results: a table on stdout and JSON in `target/bench/`.
//! Ratios inside one run are what matter: the machine is shared and noisy.

mod data;
mod procstat;
mod report;
mod stages;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::pipeline;

/// Run the benchmark: throughput, CPU and memory of every part, and the Python baseline.
#[derive(Debug, clap::Args)]
pub struct Bench {
    /// Records to generate and push through each stage.
    #[arg(long, default_value_t = 1_000_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub records: u64,

    /// Rounds of every throughput stage, interleaved.
    #[arg(long, default_value_t = 3, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,

    /// A smoke run: 100,000 records, one round, a 10 s latency stage (what CI runs; its
    /// figures are printed, not asserted).
    #[arg(long, conflicts_with_all = ["records", "rounds", "latency_seconds"])]
    pub quick: bool,

    /// Only these stages (comma-separated); default: all.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "STAGE")]
    pub stages: Vec<Stage>,

    /// Records per processor batch (its BATCH_SIZE), for the processor, sink and Python.
    #[arg(long, default_value_t = 5000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_size: u64,

    /// Records per second of the latency stage.
    #[arg(long, default_value_t = 5000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub latency_rate: u64,

    /// Seconds of the latency stage.
    #[arg(long, default_value_t = 60, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub latency_seconds: u64,

    /// Where tansu keeps the topics: `sqlite` (durable, what `dev` and `e2e` run) or
    /// `memory` (takes the broker out of the way, to compare the consumers).
    #[arg(long, value_enum, default_value = "sqlite", value_name = "ENGINE")]
    pub broker_storage: BrokerStorage,
}

/// tansu's storage engine for the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokerStorage {
    /// Durable sqlite, as `dev` and `e2e` run it.
    Sqlite,
    /// In memory.
    Memory,
}

/// A part of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Raw binary COPY of the rows into an identical table.
    Copy,
    /// The processor's write path fed from memory.
    Sink,
    /// A consumer that only drains the topic.
    Drain,
    /// The processor end to end.
    Processor,
    /// The Python baseline end to end.
    Python,
    /// Produce → row-visible latency at a fixed rate.
    Latency,
    /// Loading the topic with the replay producer (always, before the others; not a choice).
    #[value(skip)]
    Load,
}

/// Set by Ctrl-C; every wait of the bench checks it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Fails once Ctrl-C was pressed, so the caller unwinds and every process is stopped.
pub fn check_interrupt() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted: every process the bench started was stopped");
    }
    Ok(())
}

/// What a run needs to know.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Records per stage.
    pub records: u64,
    /// Rounds.
    pub rounds: u32,
    /// Stages, in run order.
    pub stages: Vec<Stage>,
    /// Processor batch size.
    pub batch_size: u64,
    /// Latency stage rate (records/s) and length (s).
    pub latency_rate: u64,
    /// Latency stage length in seconds.
    pub latency_seconds: u64,
    /// tansu's storage engine.
    pub broker_storage: BrokerStorage,
}

impl Bench {
    /// `cargo xtask bench --quick`.
    pub fn quick() -> Self {
        Self {
            records: 1_000_000,
            rounds: 3,
            quick: true,
            stages: Vec::new(),
            batch_size: 5000,
            latency_rate: 5000,
            latency_seconds: 60,
            broker_storage: BrokerStorage::Sqlite,
        }
    }

    fn plan(&self) -> Plan {
        let mut stages = if self.stages.is_empty() {
            vec![
                Stage::Copy,
                Stage::Sink,
                Stage::Drain,
                Stage::Processor,
                Stage::Python,
                Stage::Latency,
            ]
        } else {
            self.stages.clone()
        };
        stages.sort();
        stages.dedup();
        let (records, rounds, latency_seconds) = if self.quick {
            (100_000, 1, 10)
        } else {
            (self.records, self.rounds, self.latency_seconds)
        };
        Plan {
            records,
            rounds,
            stages,
            batch_size: self.batch_size,
            latency_rate: self.latency_rate,
            latency_seconds,
            broker_storage: self.broker_storage,
        }
    }

    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let plan = self.plan();
        let out = pipeline::target_dir(sh).join("bench");
        std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
        check_disk(sh, &out, &plan)?;
        let root = sh.current_dir();
        let cycle =
            data::Cycle::from_fixtures(&crate::files::json_in(&root.join("xtask/fixtures/e2e"))?)?;

        eprintln!("bench: building the services and the bench worker (release)");
        let bins = build(sh)?;
        let python = if plan.stages.contains(&Stage::Python) {
            Some(python(sh, &root)?)
        } else {
            None
        };
        eprintln!(
            "bench: generating {} records in files of {}",
            plan.records,
            data::RECORDS_PER_FILE
        );
        let files = data::generate(&cycle, plan.records, &out.join("data"))?;

        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            tokio::spawn(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("\nbench: Ctrl-C: stopping every process it started");
                    INTERRUPTED.store(true, Ordering::Relaxed);
                }
            });
            let results =
                stages::run(&plan, &bins, python.as_deref(), &files, &cycle, &out).await?;
            let versions = report::versions(sh, &results, python.as_deref());
            let report = report::Report::new(&plan, results, versions);
            print!("{}", report.table());
            let path = report.write(&out)?;
            eprintln!("bench: results in {}", path.display());
            anyhow::Ok(())
        })
    }
}

/// The release binaries the bench runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The processor, as shipped.
    pub processor: PathBuf,
    /// The producer, as shipped.
    pub producer: PathBuf,
    /// `services/processor/examples/bench_worker.rs`.
    pub worker: PathBuf,
}

fn build(sh: &Shell) -> anyhow::Result<Binaries> {
    // NB: two builds: the example pulls in the processor's dev-dependencies, whose
    // features would otherwise be unified into the binaries under test, which must be
    // the ones `cargo xtask images` ships.
    let services = pipeline::build_services(sh, pipeline::Profile::Release)?;
    pipeline::cargo(sh)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "processor",
            "--example",
            "bench_worker",
        ])
        .run()
        .context("build the bench worker")?;
    Ok(Binaries {
        processor: services.processor,
        producer: services.producer,
        worker: pipeline::target_dir(sh).join("release/examples/bench_worker"),
    })
}

/// The Python of the cached baseline virtualenv (created on first use).
fn python(sh: &Shell, root: &Path) -> anyhow::Result<PathBuf> {
    let venv = crate::lint::venv::cached(
        sh,
        "bench-venv",
        &root.join("xtask/src/bench/requirements.txt"),
        "Python baseline (confluent-kafka, psycopg)",
    )
    .context("install the Python baseline (needs python3 with venv and pip)")?;
    Ok(venv.join("bin/python"))
}

/// Fails before anything starts when the disk holding `target/` cannot take the run.
fn check_disk(sh: &Shell, dir: &Path, plan: &Plan) -> anyhow::Result<()> {
    // Per record: the replay files (~0.2 KB), the broker's copy (~0.7 KB), and two tables
    // with their indexes (~0.5 KB each); plus PostgreSQL's WAL (up to 1 GiB) and the
    // latency stage. Generous on purpose: running out halfway wastes the whole run.
    let need =
        plan.records * 2_048 + (plan.latency_rate * plan.latency_seconds) * 2_048 + (2 << 30);
    let df = cmd!(sh, "df -Pk {dir}").quiet().read().context("run df")?;
    let available = df
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok())
        .context("read df's output")?
        * 1024;
    if available < need {
        bail!(
            "not enough disk for {} records: the bench needs about {} GiB free under {}, \
             there are {:.1} GiB; free some space or pass a smaller --records",
            plan.records,
            need.div_ceil(1 << 30),
            dir.display(),
            available as f64 / f64::from(1 << 30)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: Bench,
    }

    fn parse(args: &[&str]) -> Result<Bench, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.bench)
    }

    #[test]
    fn ci_runs_exactly_what_the_quick_flag_runs() {
        let flag = parse(&["--quick"]).expect("parses");
        assert_eq!(format!("{flag:?}"), format!("{:?}", Bench::quick()));
        let plan = flag.plan();
        assert_eq!(
            (plan.records, plan.rounds, plan.latency_seconds),
            (100_000, 1, 10)
        );
        assert_eq!(plan.stages.len(), 6);
    }

    #[test]
    fn zero_records_an_unknown_stage_and_quick_with_a_count_are_clap_errors() {
        for args in [
            &["--records", "0"][..],
            &["--stages", "copy,teleport"],
            &["--rounds", "0"],
            &["--quick", "--records", "5"],
        ] {
            let error = parse(args).expect_err("rejected");
            assert!(
                matches!(
                    error.kind(),
                    clap::error::ErrorKind::ValueValidation
                        | clap::error::ErrorKind::InvalidValue
                        | clap::error::ErrorKind::ArgumentConflict
                ),
                "{args:?}: {error}"
            );
        }
    }

    #[test]
    fn stages_run_in_a_fixed_order_once_each() {
        let plan = parse(&["--stages", "python,copy,python"])
            .expect("parses")
            .plan();
        assert_eq!(plan.stages, [Stage::Copy, Stage::Python]);
    }
}
