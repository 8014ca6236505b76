//! `cargo xtask`: the one entry point that builds, runs and tests flightdeck.
//!
//! `main` only parses flags, makes one [`xshell::Shell`] rooted at the workspace and
//! dispatches; every command lives in its own module.

mod bench;
mod chaos;
mod ci;
mod cluster;
mod dashboard;
mod dev;
mod doctor;
mod down;
mod e2e;
mod files;
mod images;
mod lint;
mod pipeline;
mod skips;
mod up;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use xshell::Shell;

/// flightdeck automation. Run `cargo xtask <command> --help` for a command's flags.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline on this machine: PostgreSQL, a Kafka broker, processor, producer.
    Dev(dev::Dev),
    /// Replay the committed fixtures through the real pipeline and check what lands.
    E2e(e2e::E2e),
    /// Inject faults on purpose (kill -9, broker and database outages, poison records…) and prove nothing is lost.
    Chaos(chaos::Chaos),
    /// Everything CI runs: fmt, clippy, tests, lint, the local e2e, a quick fault suite and a quick bench.
    Ci(ci::Ci),
    /// Measure the pipeline: throughput, CPU and memory of every part, latency, Python baseline.
    Bench(bench::Bench),
    /// Build daemonless, reproducible OCI images of the services.
    Images(images::Images),
    /// Validate the infrastructure manifests offline.
    Lint(lint::Lint),
    /// Create the local k3d cluster with everything on it and wait until it is ready.
    Up(up::Up),
    /// Delete the local k3d cluster (succeeds when there is none).
    Down(down::Down),
    /// Check the tools the xtask calls and say how to fix what is missing.
    Doctor(doctor::Doctor),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match cli.command {
        Command::Dev(cmd) => cmd.run(&sh),
        Command::E2e(cmd) => cmd.run(&sh),
        Command::Chaos(cmd) => cmd.run(&sh),
        Command::Ci(cmd) => cmd.run(&sh),
        Command::Bench(cmd) => cmd.run(&sh),
        Command::Images(cmd) => cmd.run(&sh),
        Command::Lint(cmd) => cmd.run(&sh),
        Command::Up(cmd) => cmd.run(&sh),
        Command::Down(cmd) => cmd.run(&sh),
        Command::Doctor(cmd) => cmd.run(&sh),
    }
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
