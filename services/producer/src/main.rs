//! `producer`: polls OpenSky (or replays recorded responses) and produces flight records
//! to Kafka. Everything but flag parsing and exit codes lives in the library.

use anyhow::Context;
use clap::Parser;
use producer::{Config, live, replay, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init()
        .map_err(|e| anyhow::anyhow!(e))
        .context("set up logging")?;
    config.validate().context("check the configuration")?;
    if config.replay.is_empty() {
        live::run(&config, live::shutdown_signal())
            .await
            .context("poll opensky")?;
    } else {
        let summary = replay::run(&config)
            .await
            .context("replay recorded responses")?;
        // The last stdout line: `cargo xtask e2e` parses it.
        println!("{}", summary.to_json_line());
    }
    Ok(())
}
