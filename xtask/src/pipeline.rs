//! The pieces `dev` and `e2e` share: building the services, running them against a
//! database and a broker, and watching what lands.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use localstack::process::Managed;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Deserialize;
use sqlx::PgPool;
use xshell::Shell;

/// The built service binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `producer`.
    pub producer: PathBuf,
    /// `processor`.
    pub processor: PathBuf,
}

/// How the services are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `dev` and `e2e`.
    ///
    /// NB: the `dev` profile on purpose. It is the profile `cargo test` and `cargo clippy`
    /// already build, so a warm checkout has every dependency compiled, and an edit to a
    /// service rebuilds in seconds; the dependencies (serde, librdkafka, sqlx) are
    /// optimised anyway (`[profile.dev.package."*"] opt-level = 1` in the workspace
    /// manifest), which is all the e2e's thousands of records need.
    Dev,
    /// `chaos` and `bench`: the binaries the images ship, at the price of minutes of thin
    /// LTO per edit.
    Release,
}

/// Builds the producer and the processor.
pub fn build_services(sh: &Shell, profile: Profile) -> anyhow::Result<Binaries> {
    let (flag, dir) = match profile {
        Profile::Dev => (None, "debug"),
        Profile::Release => (Some("--release"), "release"),
    };
    eprintln!("flightdeck: building producer and processor ({dir})");
    cargo(sh)
        .args(["build", "--quiet", "-p", "producer", "-p", "processor"])
        .args(flag)
        .run()
        .context("build the services")?;
    let dir = target_dir(sh).join(dir);
    Ok(Binaries {
        producer: dir.join("producer"),
        processor: dir.join("processor"),
    })
}

/// Variables `cargo run` sets for the program it runs (the xtask): they describe the
/// xtask's package, not the user's settings.
///
/// NB: a nested `cargo build` must not inherit them. Build scripts such as ring's declare
/// `rerun-if-env-changed=CARGO_MANIFEST_DIR` (and `CARGO_PKG_*`), so a build that sees
/// them and one that does not (the outer `cargo run`, the tests) keep invalidating each
/// other's fingerprints: every `cargo xtask e2e` recompiled ring, rustls, reqwest, kube,
/// the services and the xtask itself, a minute of a warm run that takes seconds.
const SET_BY_CARGO_RUN: &[&str] = &[
    "CARGO",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_RUSTC_CURRENT_DIR",
];

/// `cargo` with the environment the user's shell gave the xtask, minus what `cargo run`
/// added (see [`SET_BY_CARGO_RUN`]), so nested builds share fingerprints with the outer one.
pub fn cargo(sh: &Shell) -> xshell::Cmd<'_> {
    let mut cmd = sh.cmd("cargo");
    for name in SET_BY_CARGO_RUN {
        cmd = cmd.env_remove(name);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("CARGO_PKG_")) {
            cmd = cmd.env_remove(name);
        }
    }
    cmd
}

/// `target/` of the workspace, honouring `CARGO_TARGET_DIR`.
pub fn target_dir(sh: &Shell) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| sh.current_dir().join("target"), PathBuf::from)
}

/// Where the pipeline's servers are.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// PostgreSQL URL.
    pub database_url: String,
    /// Kafka bootstrap servers.
    pub bootstrap_servers: String,
}

/// The processor's `GROUP_INSTANCE_ID` on the local stack (its only replica).
pub const LOCAL_INSTANCE_ID: &str = "processor-0";

/// Starts the processor with its output in `log`, serving HTTP on `http_port`.
pub fn start_processor(
    bins: &Binaries,
    at: &Endpoints,
    http_port: u16,
    log: &Path,
) -> anyhow::Result<Managed> {
    let mut cmd = Command::new(&bins.processor);
    cmd.env("DATABASE_URL", &at.database_url)
        .env("KAFKA_BOOTSTRAP_SERVERS", &at.bootstrap_servers)
        .env("HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        // NB: the local stack runs one replica; a stable instance id (static membership)
        // gets its partitions back within seconds after a restart instead of waiting out
        // the previous run's session on the durable broker.
        .env("GROUP_INSTANCE_ID", LOCAL_INSTANCE_ID)
        .env("BATCH_LINGER_MS", "100");
    Managed::spawn("processor", cmd, log)
}

/// Starts the live producer with its output in `log`.
pub fn start_live_producer(bins: &Binaries, at: &Endpoints, log: &Path) -> anyhow::Result<Managed> {
    let mut cmd = Command::new(&bins.producer);
    cmd.env("KAFKA_BOOTSTRAP_SERVERS", &at.bootstrap_servers);
    Managed::spawn("producer", cmd, log)
}

/// What the producer's replay mode reports on its last stdout line.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ReplaySummary {
    /// Files replayed.
    pub files: usize,
    /// Records produced and acknowledged.
    pub produced: usize,
    /// Vectors without a position, not produced.
    pub dropped_unpositioned: usize,
}

/// Replays `files` through the real producer; fails with its error when it fails.
pub fn replay(bins: &Binaries, at: &Endpoints, files: &[PathBuf]) -> anyhow::Result<ReplaySummary> {
    let out = Command::new(&bins.producer)
        .arg("--replay")
        .args(files)
        .env("KAFKA_BOOTSTRAP_SERVERS", &at.bootstrap_servers)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("run the producer")?;
    if !out.status.success() {
        bail!(
            "the producer failed to replay {} file(s) ({})",
            files.len(),
            out.status
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("read the producer's summary line {last:?}"))
}

/// Reads counters of the pipeline's state.
pub struct Observer {
    consumer: BaseConsumer,
    /// Pool on the flightdeck database.
    pub pool: PgPool,
}

impl Observer {
    /// Connects to both servers.
    pub async fn connect(at: &Endpoints) -> anyhow::Result<Self> {
        // NB: the processor's group id, but this client never subscribes, so it never
        // joins the group: it only reads the group's committed offsets.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &at.bootstrap_servers)
            .set("group.id", flight_model::PROCESSOR_GROUP)
            .set("enable.auto.commit", "false")
            .create()
            .context("create a Kafka client")?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&at.database_url)
            .await
            .with_context(|| {
                format!(
                    "connect to postgres at {}",
                    flight_model::redact_url(&at.database_url)
                )
            })?;
        Ok(Self { consumer, pool })
    }

    /// Rows in `flight_data`, or `None` before the processor created the table.
    pub async fn rows(&self) -> Option<i64> {
        sqlx::query_scalar("SELECT count(*) FROM flight_data")
            .fetch_one(&self.pool)
            .await
            .ok()
    }

    /// Records in the DLQ topic.
    pub fn dlq_records(&self) -> anyhow::Result<i64> {
        let mut total = 0;
        for partition in self.partitions(flight_model::DLQ_TOPIC)? {
            let (low, high) =
                self.consumer
                    .fetch_watermarks(flight_model::DLQ_TOPIC, partition, TIMEOUT)?;
            total += high - low;
        }
        Ok(total)
    }

    /// Records in `flights` the processor group has not committed yet.
    pub fn lag(&self) -> anyhow::Result<i64> {
        let topic = flight_model::FLIGHTS_TOPIC;
        let mut tpl = TopicPartitionList::new();
        let mut high = Vec::new();
        for partition in self.partitions(topic)? {
            tpl.add_partition(topic, partition);
            high.push(self.consumer.fetch_watermarks(topic, partition, TIMEOUT)?);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, TIMEOUT)
            .context("read committed offsets")?;
        let mut lag = 0;
        for (element, (low, high)) in committed.elements().iter().zip(high) {
            let position = match element.offset() {
                Offset::Offset(o) => o,
                _ => low,
            };
            lag += (high - position).max(0);
        }
        Ok(lag)
    }

    fn partitions(&self, topic: &str) -> anyhow::Result<Vec<i32>> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .context("read topic metadata")?;
        Ok(metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect())
    }

    /// Waits until the table exists and the processor group has committed everything in
    /// `flights`. `processor`, when it runs on this machine, must keep running, and the end
    /// of its log ends the error.
    pub async fn wait_drained(
        &self,
        mut processor: Option<&mut Managed>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(processor) = processor.as_deref_mut() {
                processor.ensure_running()?;
            }
            if self.rows().await.is_some() && self.lag()? == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = processor.map_or_else(String::new, |processor| {
                    format!(
                        "; its log:\n{}",
                        localstack::process::tail(processor.log(), 30)
                    )
                });
                bail!("the processor did not catch up within {timeout:?}{log}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);
