//! Running the stages: the stack, the topic load, the interleaved rounds and the latency run.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use localstack::process::Managed;
use localstack::{Broker, BrokerKind, Postgres};
use processor::sink::WriteMethod;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;

use super::data::Cycle;
use super::procstat::{Sampler, Usage};
use super::{Binaries, BrokerStorage, Plan, Stage, check_interrupt};

/// The topic the throughput stages read (loaded once).
const TOPIC: &str = "flights";
/// The topic of the latency stage (empty until it starts).
const LATENCY_TOPIC: &str = "flights-latency";

/// One measured run of one stage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    /// Round (1-based); 0 for the one-off topic load and latency runs.
    pub round: u32,
    /// The stage.
    pub stage: Stage,
    /// What exactly ran (`sink` names its write method).
    pub label: String,
    /// Rows (or records) handled.
    pub rows: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// CPU and memory per process role.
    pub usage: BTreeMap<String, Usage>,
}

impl Run {
    /// Rows per second.
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.seconds.max(1e-9)
    }
}

/// The latency stage's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    /// Records produced (and landed).
    pub records: u64,
    /// Records per second actually produced.
    pub rate: f64,
    /// Produce → commit of the row, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Worst, milliseconds.
    pub max_ms: f64,
    /// The processor's usage meanwhile.
    pub usage: BTreeMap<String, Usage>,
}

/// Everything measured.
#[derive(Debug, Clone)]
pub struct Results {
    /// The replay producer loading the topic.
    pub load: Option<Run>,
    /// Every throughput run, in the order run.
    pub runs: Vec<Run>,
    /// The latency stage.
    pub latency: Option<Latency>,
    /// `SHOW server_version`.
    pub postgres: String,
    /// The broker's name and version.
    pub broker: String,
}

struct Bench<'a> {
    plan: &'a Plan,
    bins: &'a Binaries,
    files: Vec<PathBuf>,
    data: &'a Path,
    dir: &'a Path,
    database_url: String,
    bootstrap: String,
    pool: PgPool,
    sampler: Sampler,
}

/// Starts the stack under `out/stack`, loads the topic, runs every round and the latency stage.
pub async fn run(
    plan: &Plan,
    bins: &Binaries,
    python: Option<&Path>,
    data: &Path,
    cycle: &Cycle,
    out: &Path,
) -> anyhow::Result<Results> {
    let dir = out.join("stack");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clear {}", dir.display()))?;
    }
    eprintln!(
        "bench: starting PostgreSQL and the broker under {}",
        dir.display()
    );
    let postgres = start_postgres(&dir.join("postgres"))?;
    let kind = BrokerKind::detect()?;
    let broker_port = localstack::free_port()?;
    let (mut broker, broker_name) = match (plan.broker_storage, kind) {
        (BrokerStorage::Sqlite, kind) => {
            let name = kind.name();
            (
                LocalBroker::Started(Broker::start(&dir.join("broker"), broker_port, kind)?),
                name,
            )
        }
        (BrokerStorage::Memory, BrokerKind::Tansu { bin }) => (
            LocalBroker::Memory(tansu_in_memory(&bin, &dir.join("broker"), broker_port)?),
            format!(
                "tansu {} (memory storage)",
                localstack::tools::TANSU_VERSION
            ),
        ),
        (BrokerStorage::Memory, BrokerKind::Kafka { .. }) => {
            bail!("--broker-storage memory is tansu's; run with FLIGHTDECK_BROKER=tansu")
        }
    };
    let bootstrap = format!("127.0.0.1:{broker_port}");
    localstack::topics::create_topics(
        &bootstrap,
        &[
            (TOPIC, localstack::topics::FLIGHTS_PARTITIONS),
            (flight_model::DLQ_TOPIC, 1),
            (LATENCY_TOPIC, localstack::topics::FLIGHTS_PARTITIONS),
        ],
    )
    .await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&postgres.url())
        .await
        .context("connect to the bench's PostgreSQL")?;
    prepare_tables(&pool).await?;
    let sampler = Sampler::start();
    sampler.watch("postgres", postmaster_pid(&postgres)?);
    if let Some(pid) = pid_listening_on(broker_port) {
        sampler.watch("broker", pid);
    }
    let bench = Bench {
        plan,
        bins,
        files: crate::files::json_in(data)?,
        data,
        dir: &dir,
        database_url: postgres.url(),
        bootstrap,
        pool,
        sampler,
    };
    let postgres_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&bench.pool)
        .await?;

    let needs_topic = plan
        .stages
        .iter()
        .any(|s| matches!(s, Stage::Drain | Stage::Processor | Stage::Python));
    let load = if needs_topic {
        Some(bench.load_topic().await?)
    } else {
        None
    };
    let mut runs = Vec::new();
    for round in 1..=plan.rounds {
        for &stage in &plan.stages {
            check_interrupt()?;
            match stage {
                Stage::Copy => runs.push(bench.copy(round).await?),
                Stage::Sink => {
                    for (method, replayed) in [
                        (WriteMethod::Optimistic, true),
                        (WriteMethod::Staged, false),
                        (WriteMethod::Unnest, false),
                    ] {
                        runs.extend(bench.sink(round, method, replayed).await?);
                    }
                }
                Stage::Drain => runs.push(bench.drain(round).await?),
                Stage::Processor => {
                    runs.push(bench.end_to_end(round, Stage::Processor, None).await?)
                }
                Stage::Python => runs.push(bench.end_to_end(round, Stage::Python, python).await?),
                Stage::Latency | Stage::Load => {}
            }
        }
    }
    let latency = if plan.stages.contains(&Stage::Latency) {
        Some(bench.latency(cycle).await?)
    } else {
        None
    };
    drop(bench);
    // The broker before the database, as everywhere.
    broker.stop();
    drop(postgres);
    Ok(Results {
        load,
        runs,
        latency,
        postgres: postgres_version,
        broker: broker_name,
    })
}

/// The broker the bench started; stopped when dropped.
enum LocalBroker {
    /// As `localstack` starts it (durable storage).
    Started(Broker),
    /// tansu with `memory://` storage.
    Memory(Managed),
}

impl LocalBroker {
    fn stop(&mut self) {
        match self {
            Self::Started(broker) => broker.stop(),
            Self::Memory(process) => {
                process.stop();
            }
        }
    }
}

/// tansu keeping everything in memory: the broker out of the way of the consumers.
fn tansu_in_memory(bin: &Path, dir: &Path, port: u16) -> anyhow::Result<Managed> {
    let cmd = localstack::broker::tansu_command(bin, dir, port, "memory://tansu/");
    let mut process = Managed::spawn("broker", cmd, &dir.join("broker.log"))?;
    localstack::process::wait_until(&mut process, "tansu", Duration::from_secs(60), || {
        localstack::port_open(port)
    })?;
    Ok(process)
}

/// PostgreSQL as the throw-away test servers run it (no fsync), plus commit timestamps.
///
/// NB: `track_commit_timestamp` needs a restart, and `localstack` passes no settings, so
/// the server starts once, takes the settings with `ALTER SYSTEM` (its own
/// `postgresql.auto.conf`) and starts again. It starts "durable" so that the restart
/// keeps the data directory; the settings then turn fsync off like the e2e's server.
fn start_postgres(dir: &Path) -> anyhow::Result<Postgres> {
    let port = localstack::free_port()?;
    let first = Postgres::start(dir, port, true).context("start PostgreSQL")?;
    let url = first.url();
    let settings = [
        "track_commit_timestamp = on",
        "fsync = off",
        "synchronous_commit = off",
        "full_page_writes = off",
    ];
    let out = Command::new(localstack::postgres::bin_dir()?.join("psql"))
        .args([&url, "-v", "ON_ERROR_STOP=1", "-q"])
        .args(
            settings
                .iter()
                .flat_map(|s| ["-c".to_owned(), format!("ALTER SYSTEM SET {s}")]),
        )
        .output()
        .context("run psql")?;
    ensure!(
        out.status.success(),
        "configure PostgreSQL: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(first);
    Postgres::start(dir, port, true).context("restart PostgreSQL")
}

async fn prepare_tables(pool: &PgPool) -> anyhow::Result<()> {
    let on: String = sqlx::query_scalar("SHOW track_commit_timestamp")
        .fetch_one(pool)
        .await?;
    ensure!(
        on == "on",
        "PostgreSQL did not take track_commit_timestamp=on"
    );
    // A server kept from an earlier run (as root, outside the checkout) starts clean.
    sqlx::raw_sql("DROP TABLE IF EXISTS flight_data, flight_data_copy, _sqlx_migrations")
        .execute(pool)
        .await?;
    processor::sink::migrate(pool).await?;
    sqlx::raw_sql("CREATE TABLE flight_data_copy (LIKE flight_data INCLUDING ALL)")
        .execute(pool)
        .await?;
    Ok(())
}

fn postmaster_pid(postgres: &Postgres) -> anyhow::Result<u32> {
    let file = postgres.data_dir().join("data/postmaster.pid");
    std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
        .with_context(|| format!("read the server's pid from {}", file.display()))
}

/// The process whose command line names `127.0.0.1:port` (the broker we started).
fn pid_listening_on(port: u16) -> Option<u32> {
    let needle = format!("127.0.0.1:{port}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains(&needle)
            .then_some(pid)
    })
}

fn unique(prefix: &str, round: u32) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{round}-{nanos}")
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Bench<'_> {
    fn log(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    /// Runs a worker job to its end; returns its rows handled, rows new, seconds.
    async fn worker(&self, role: &str, args: &[&str]) -> anyhow::Result<(u64, u64, f64)> {
        let mut cmd = Command::new(&self.bins.worker);
        cmd.args(args);
        let log = self.log(role);
        let _ = std::fs::remove_file(&log);
        let mut child = Managed::spawn(role, cmd, &log)?;
        if let Some(pid) = child.pid() {
            self.sampler.watch(role, pid);
        }
        loop {
            check_interrupt()?;
            if let Some(status) = child.try_status() {
                ensure!(
                    status.success(),
                    "the bench worker ({role}) failed ({status}):\n{}",
                    localstack::process::tail(&log, 20)
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = std::fs::read_to_string(&log)?;
        let line = text
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .context("the worker printed no result")?;
        let v: serde_json::Value = serde_json::from_str(line)?;
        Ok((
            v["rows"].as_u64().unwrap_or(0),
            v["new"].as_u64().unwrap_or(0),
            v["seconds"].as_f64().unwrap_or(0.0),
        ))
    }

    async fn truncate(&self, table: &str) -> anyhow::Result<()> {
        sqlx::raw_sql(&format!("TRUNCATE {table}"))
            .execute(&self.pool)
            .await?;
        // Vacuum and checkpoint now, not in the middle of the next stage.
        sqlx::raw_sql("CHECKPOINT").execute(&self.pool).await?;
        Ok(())
    }

    fn say(&self, run: &Run) {
        eprintln!(
            "bench: round {} {:<20} {:>10} rows in {:>7.2} s = {:>8.0} rows/s",
            run.round,
            run.label,
            run.rows,
            run.seconds,
            run.rate()
        );
    }

    async fn load_topic(&self) -> anyhow::Result<Run> {
        eprintln!(
            "bench: loading {} records into `{TOPIC}` with the replay producer",
            self.plan.records
        );
        let mark = self.sampler.mark();
        let started = Instant::now();
        let mut cmd = Command::new(&self.bins.producer);
        cmd.arg("--replay")
            .args(&self.files)
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.bootstrap)
            .env("FLIGHTS_TOPIC", TOPIC);
        let log = self.log("producer");
        let mut producer = Managed::spawn("producer", cmd, &log)?;
        if let Some(pid) = producer.pid() {
            self.sampler.watch("producer", pid);
        }
        let mut last_say = Instant::now();
        let status = loop {
            check_interrupt()?;
            if let Some(status) = producer.try_status() {
                break status;
            }
            if last_say.elapsed() > Duration::from_secs(10) {
                eprintln!(
                    "bench: … producing ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
                last_say = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let seconds = started.elapsed().as_secs_f64();
        ensure!(
            status.success(),
            "the replay producer failed ({status}):\n{}",
            localstack::process::tail(&log, 20)
        );
        let summary = std::fs::read_to_string(&log)?
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<crate::pipeline::ReplaySummary>(l).ok())
            .context("the producer printed no summary")?;
        ensure!(
            summary.produced as u64 == self.plan.records,
            "the producer produced {} records, the bench generated {}",
            summary.produced,
            self.plan.records
        );
        let run = Run {
            round: 0,
            stage: Stage::Load,
            label: "load (replay producer)".into(),
            rows: self.plan.records,
            seconds,
            usage: self.sampler.since(&mark),
        };
        self.say(&run);
        Ok(run)
    }

    async fn copy(&self, round: u32) -> anyhow::Result<Run> {
        self.truncate("flight_data_copy").await?;
        let mark = self.sampler.mark();
        let data = self.data.display().to_string();
        let (rows, new, seconds) = self
            .worker(
                "copy",
                &[
                    "copy",
                    "--data",
                    &data,
                    "--database-url",
                    &self.database_url,
                    "--table",
                    "flight_data_copy",
                ],
            )
            .await?;
        ensure!(
            rows == self.plan.records && new == rows,
            "COPY stored {new} of {rows} rows, expected {}",
            self.plan.records
        );
        let run = Run {
            round,
            stage: Stage::Copy,
            label: "copy (raw binary COPY)".into(),
            rows,
            seconds,
            usage: self.sampler.since(&mark),
        };
        self.say(&run);
        Ok(run)
    }

    /// The write path on an empty table; `replayed`: then the same rows again, every one
    /// a duplicate (what a redelivery after a crash writes).
    async fn sink(
        &self,
        round: u32,
        method: WriteMethod,
        replayed: bool,
    ) -> anyhow::Result<Vec<Run>> {
        self.truncate("flight_data").await?;
        let data = self.data.display().to_string();
        let batch = self.plan.batch_size.to_string();
        let name = match method {
            WriteMethod::Optimistic => "optimistic",
            WriteMethod::Staged => "staged",
            WriteMethod::Unnest => "unnest",
        };
        let mut runs = Vec::new();
        for (label, expect_new) in std::iter::once((format!("sink {name}"), self.plan.records))
            .chain(replayed.then(|| (format!("sink {name}, replayed"), 0)))
        {
            let mark = self.sampler.mark();
            let (rows, new, seconds) = self
                .worker(
                    "sink",
                    &[
                        "sink",
                        "--data",
                        &data,
                        "--database-url",
                        &self.database_url,
                        "--batch-size",
                        &batch,
                        "--method",
                        name,
                    ],
                )
                .await?;
            ensure!(
                rows == self.plan.records && new == expect_new,
                "{label}: {new} new rows of {rows}, expected {expect_new} of {}",
                self.plan.records
            );
            let run = Run {
                round,
                stage: Stage::Sink,
                label,
                rows,
                seconds,
                usage: self.sampler.since(&mark),
            };
            self.say(&run);
            runs.push(run);
        }
        Ok(runs)
    }

    async fn drain(&self, round: u32) -> anyhow::Result<Run> {
        let mark = self.sampler.mark();
        let group = unique("bench-drain", round);
        let records = self.plan.records.to_string();
        let (rows, _, seconds) = self
            .worker(
                "drain",
                &[
                    "drain",
                    "--bootstrap-servers",
                    &self.bootstrap,
                    "--topic",
                    TOPIC,
                    "--group",
                    &group,
                    "--records",
                    &records,
                ],
            )
            .await?;
        let run = Run {
            round,
            stage: Stage::Drain,
            label: "drain (consume only)".into(),
            rows,
            seconds,
            usage: self.sampler.since(&mark),
        };
        self.say(&run);
        Ok(run)
    }

    fn start_processor(&self, role: &str, topic: &str, group: &str) -> anyhow::Result<Managed> {
        let mut cmd = Command::new(&self.bins.processor);
        cmd.env("DATABASE_URL", &self.database_url)
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.bootstrap)
            .env("FLIGHTS_TOPIC", topic)
            .env("GROUP_ID", group)
            .env("BATCH_SIZE", self.plan.batch_size.to_string())
            .env(
                "HTTP_ADDR",
                format!("127.0.0.1:{}", localstack::free_port()?),
            );
        let log = self.log(role);
        let _ = std::fs::remove_file(&log);
        let process = Managed::spawn(role, cmd, &log)?;
        if let Some(pid) = process.pid() {
            self.sampler.watch(role, pid);
        }
        Ok(process)
    }

    /// The processor or the Python baseline on the loaded topic, fresh group, empty table.
    async fn end_to_end(
        &self,
        round: u32,
        stage: Stage,
        python: Option<&Path>,
    ) -> anyhow::Result<Run> {
        self.truncate("flight_data").await?;
        let group = unique(&format!("bench-{stage:?}").to_lowercase(), round);
        let lag = GroupLag::new(&self.bootstrap, &group, TOPIC)?;
        let mark = self.sampler.mark();
        let started = now_seconds();
        let (mut process, role, label) = match (stage, python) {
            (Stage::Python, Some(python)) => {
                let mut cmd = Command::new(python);
                cmd.arg(crate::project_root().join("xtask/src/bench/baseline.py"))
                    .args([&self.bootstrap, TOPIC, &group, &self.database_url])
                    .arg(self.plan.batch_size.to_string());
                let log = self.log("python");
                let _ = std::fs::remove_file(&log);
                let process = Managed::spawn("python", cmd, &log)?;
                if let Some(pid) = process.pid() {
                    self.sampler.watch("python", pid);
                }
                (process, "python", "python baseline")
            }
            _ => (
                self.start_processor("processor", TOPIC, &group)?,
                "processor",
                "processor",
            ),
        };
        self.wait_committed(&mut process, &lag, role).await?;
        let usage = self.sampler.since(&mark);
        let status = process.stop();
        let (rows, last_commit): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), extract(epoch FROM max(pg_xact_commit_timestamp(xmin)))::float8 \
             FROM flight_data",
        )
        .fetch_one(&self.pool)
        .await?;
        ensure!(
            rows as u64 == self.plan.records,
            "{label} stored {rows} rows of {} (exit {status:?}); see {}",
            self.plan.records,
            process.log().display()
        );
        let run = Run {
            round,
            stage,
            label: label.into(),
            rows: rows as u64,
            seconds: last_commit.unwrap_or(started) - started,
            usage,
        };
        self.say(&run);
        Ok(run)
    }

    /// Waits until `process`'s group has committed every record of its topic.
    async fn wait_committed(
        &self,
        process: &mut Managed,
        lag: &GroupLag,
        role: &str,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last_say = Instant::now();
        loop {
            check_interrupt()?;
            process.ensure_running()?;
            let (done, total) = lag.committed()?;
            if total > 0 && done >= total {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(1800) {
                bail!(
                    "{role} committed {done} of {total} records in 30 minutes; its log:\n{}",
                    localstack::process::tail(process.log(), 30)
                );
            }
            if last_say.elapsed() > Duration::from_secs(10) {
                eprintln!("bench: … {role}: {done}/{total} records committed");
                last_say = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn latency(&self, cycle: &Cycle) -> anyhow::Result<Latency> {
        let total = self.plan.latency_rate * self.plan.latency_seconds;
        eprintln!(
            "bench: latency: {} records/s for {} s through the processor",
            self.plan.latency_rate, self.plan.latency_seconds
        );
        self.truncate("flight_data").await?;
        let group = unique("bench-latency", 0);
        let mut process = self.start_processor("processor-latency", LATENCY_TOPIC, &group)?;
        let producer = latency_producer(&self.bootstrap)?;
        // Warm up: one record through, so the clock starts with the group joined.
        let warm = record(cycle, total + 1_000)?;
        send(&producer, &warm).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM flight_data")
            .fetch_one(&self.pool)
            .await?
            == 0
        {
            check_interrupt()?;
            process.ensure_running()?;
            ensure!(
                Instant::now() < deadline,
                "the processor did not start consuming in 2 minutes"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sqlx::raw_sql("TRUNCATE flight_data")
            .execute(&self.pool)
            .await?;

        let mark = self.sampler.mark();
        let mut sent_at: HashMap<(String, i64), f64> = HashMap::with_capacity(total as usize);
        let mut pending = Vec::with_capacity(total as usize);
        let tick = Duration::from_millis(10);
        let per_tick = (self.plan.latency_rate as f64 * tick.as_secs_f64()).max(1.0);
        let mut interval = tokio::time::interval(tick);
        let started = Instant::now();
        let mut produced = 0u64;
        let mut owed = 0.0;
        while produced < total {
            interval.tick().await;
            check_interrupt()?;
            owed += per_tick;
            while owed >= 1.0 && produced < total {
                let (key, time_position, value) = record(cycle, produced)?;
                let now = now_seconds();
                let delivery = producer
                    .send_result(FutureRecord::to(LATENCY_TOPIC).key(&key).payload(&value))
                    .map_err(|(e, _)| e)
                    .context("produce")?;
                pending.push(delivery);
                sent_at.insert((key, time_position), now);
                produced += 1;
                owed -= 1.0;
            }
        }
        let rate = produced as f64 / started.elapsed().as_secs_f64();
        for delivery in pending {
            delivery
                .await
                .context("delivery dropped")?
                .map_err(|(e, _)| e)
                .context("deliver")?;
        }
        let lag = GroupLag::new(&self.bootstrap, &group, LATENCY_TOPIC)?;
        self.wait_committed(&mut process, &lag, "processor (latency)")
            .await?;
        let usage = self.sampler.since(&mark);
        process.stop();
        let landed: Vec<(String, i64, f64)> = sqlx::query_as(
            "SELECT icao24, extract(epoch FROM time_position)::int8, \
             extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 FROM flight_data",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut millis: Vec<f64> = landed
            .into_iter()
            .filter_map(|(icao24, tp, committed)| {
                sent_at
                    .get(&(icao24, tp))
                    .map(|sent| (committed - sent) * 1000.0)
            })
            .collect();
        ensure!(
            millis.len() as u64 == produced,
            "{} of {produced} latency records landed",
            millis.len()
        );
        millis.sort_by(f64::total_cmp);
        let at = |q: f64| millis[((millis.len() - 1) as f64 * q).round() as usize];
        let latency = Latency {
            records: produced,
            rate,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
            usage,
        };
        eprintln!(
            "bench: latency at {:.0} records/s: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            latency.rate, latency.p50_ms, latency.p99_ms, latency.max_ms
        );
        Ok(latency)
    }
}

/// Record `j` of the generated sequence as the producer would send it: key, time, value.
fn record(cycle: &Cycle, j: u64) -> anyhow::Result<(String, i64, Vec<u8>)> {
    let state = cycle.state(j);
    let body = serde_json::json!({ "time": cycle.time_of(j), "states": [state] });
    let mut records = flight_model::StatesResponse::from_json(body.to_string().as_bytes())?
        .into_records()
        .records;
    let r = records
        .pop()
        .context("a generated vector without a position")?;
    Ok((r.icao24.clone(), r.time_position, r.to_json()))
}

/// A producer with the replay producer's settings (`services/producer/src/kafka.rs`):
/// the latency measured is the pipeline's, batching included.
fn latency_producer(bootstrap: &str) -> anyhow::Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .create()
        .context("create the latency producer")
}

async fn send(
    producer: &FutureProducer,
    (key, _, value): &(String, i64, Vec<u8>),
) -> anyhow::Result<()> {
    producer
        .send(
            FutureRecord::to(LATENCY_TOPIC).key(key).payload(value),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .context("produce the warm-up record")?;
    Ok(())
}

/// Reads how far a consumer group has committed on a topic.
struct GroupLag {
    consumer: BaseConsumer,
    topic: String,
}

impl GroupLag {
    fn new(bootstrap: &str, group: &str, topic: &str) -> anyhow::Result<Self> {
        // NB: never subscribes, so it never joins the group it reads.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("create a Kafka client")?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
        })
    }

    /// (records committed, records in the topic).
    fn committed(&self) -> anyhow::Result<(i64, i64)> {
        let timeout = Duration::from_secs(10);
        let metadata = self.consumer.fetch_metadata(Some(&self.topic), timeout)?;
        let mut tpl = TopicPartitionList::new();
        let mut total = 0;
        let mut low = Vec::new();
        for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
            tpl.add_partition(&self.topic, p.id());
            let (lo, hi) = self
                .consumer
                .fetch_watermarks(&self.topic, p.id(), timeout)?;
            total += hi - lo;
            low.push(lo);
        }
        let committed = self.consumer.committed_offsets(tpl, timeout)?;
        let done = committed
            .elements()
            .iter()
            .zip(low)
            .map(|(e, lo)| match e.offset() {
                Offset::Offset(o) => o - lo,
                _ => 0,
            })
            .sum();
        Ok((done, total))
    }
}
