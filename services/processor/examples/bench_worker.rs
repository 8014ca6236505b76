//! The measuring end of `cargo xtask bench`: release-built, one job per run, one JSON
//! line on stdout (`{"rows":N,"new":N,"seconds":S}`: rows handled, rows the table did
//! not have yet, wall-clock seconds).
//!
//! - `copy`: every record of the replay files in one binary `COPY` (the processor's
//!   encoder, no conflict handling) into a table: the limit any write path can reach.
//! - `sink`: the processor's write path fed from memory, no broker: batches of
//!   `--batch-size` records pushed into [`Rows`] and written with `--method`, one after
//!   the other as the consume loop does.
//! - `drain`: a consumer that only receives, in a fresh group, until it has seen every
//!   record the topic held when it started, with the processor's fetch settings: the
//!   broker's ceiling for the processor's consumer.
//!
//! Decoding the files into memory happens before the clock starts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use flight_model::{FlightRecord, StatesResponse};
use processor::sink::{Rows, WriteMethod};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sqlx::PgPool;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    job: Job,
}

#[derive(Subcommand)]
enum Job {
    /// One binary COPY of every record into TABLE.
    Copy {
        /// Directory of replay files (*.json).
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        table: String,
    },
    /// The processor's write path, batch after batch.
    Sink {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        batch_size: usize,
        #[arg(long, value_enum)]
        method: WriteMethod,
    },
    /// Receive every record of TOPIC and nothing else.
    Drain {
        #[arg(long)]
        bootstrap_servers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        group: String,
        /// Records to receive before stopping.
        #[arg(long)]
        records: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (rows, new, seconds) = match Cli::parse().job {
        Job::Copy {
            data,
            database_url,
            table,
        } => {
            let pool = PgPool::connect(&database_url).await?;
            let mut rows = Rows::default();
            for r in records(&data)? {
                rows.push(r);
            }
            let all: Vec<usize> = (0..rows.len()).collect();
            let mut conn = pool.acquire().await?;
            let started = Instant::now();
            let copied = rows.copy_in(&mut conn, &table, &all).await?;
            let seconds = started.elapsed().as_secs_f64();
            drop(conn);
            linger(pool).await;
            (rows.len() as u64, copied, seconds)
        }
        Job::Sink {
            data,
            database_url,
            batch_size,
            method,
        } => {
            let pool = PgPool::connect(&database_url).await?;
            let mut records = records(&data)?.into_iter();
            let started = Instant::now();
            let mut handled = 0;
            let mut inserted = 0;
            loop {
                let mut rows = Rows::default();
                for r in records.by_ref().take(batch_size) {
                    rows.push(r);
                }
                if rows.is_empty() {
                    break;
                }
                handled += rows.len() as u64;
                inserted += rows.insert_with(&pool, method).await?;
            }
            let seconds = started.elapsed().as_secs_f64();
            linger(pool).await;
            (handled, inserted, seconds)
        }
        Job::Drain {
            bootstrap_servers,
            topic,
            group,
            records,
        } => {
            let (seen, seconds) = drain(&bootstrap_servers, &topic, &group, records)?;
            (seen, 0, seconds)
        }
    };
    println!(
        "{}",
        serde_json::json!({ "rows": rows, "new": new, "seconds": seconds })
    );
    Ok(())
}

/// Every record of every `*.json` replay file in `dir`, in file-name order.
fn records(dir: &Path) -> anyhow::Result<Vec<FlightRecord>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let body = std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
        let response =
            StatesResponse::from_json(&body).with_context(|| format!("{}", file.display()))?;
        out.extend(response.into_records().records);
    }
    Ok(out)
}

/// Keeps the connections open a moment after the work, so the bench's /proc sampler
/// sees the PostgreSQL backends' final CPU time before they exit.
async fn linger(pool: PgPool) {
    tokio::time::sleep(Duration::from_millis(400)).await;
    pool.close().await;
}

fn drain(bootstrap: &str, topic: &str, group: &str, want: u64) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    // NB: the processor's fetch and prefetch settings, librdkafka's defaults otherwise:
    // this measures what the broker gives the processor's consumer, not a tuned client.
    let consumer: BaseConsumer = processor::consume::fetch_settings(&mut ClientConfig::new())
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut seen = 0;
    let deadline = started + Duration::from_secs(1800);
    while seen < want {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => seen += 1,
            Some(Err(e)) => eprintln!("drain: {e}"),
            None if Instant::now() > deadline => bail!("drained only {seen} of {want} records"),
            None => {}
        }
    }
    Ok((seen, started.elapsed().as_secs_f64()))
}
