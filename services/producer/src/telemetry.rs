//! Logging: `tracing` to stderr (stdout carries the replay summary), filtered by
//! `RUST_LOG` (default `info`), as text or, with `LOG_FORMAT=json`, one JSON object a line.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Installs the global subscriber; librdkafka's `log` records are forwarded to it too.
pub fn init() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in log files.
        .with_ansi(std::io::stderr().is_terminal());
    match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().try_init(),
        _ => builder.try_init(),
    }
}
