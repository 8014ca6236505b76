//! The processor binary: parse flags, set up logging, run until SIGTERM/SIGINT.

use clap::Parser;
use processor::{Config, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init();
    config.validate()?;
    processor::run(config, processor::shutdown_signal()).await
}
