//! One scenario's world: PostgreSQL and the broker on free ports under
//! `target/chaos/<scenario>/`, processor replicas and a live producer as release-built
//! processes, a producer of the suite's own for paced input, and what the suite reads back
//! (rows, DLQ records, and the processors' JSON logs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use localstack::Stack;
use localstack::process::{Managed, Signal};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use sqlx::PgPool;

use super::corpus::Key;
use crate::e2e::landed::{DlqOffsets, read_dlq};
use crate::pipeline::Binaries;

/// One processor replica: a stable instance id, restarted under it after a kill.
#[derive(Debug)]
pub struct Replica {
    /// Its `GROUP_INSTANCE_ID`.
    pub name: String,
    /// The running process (`None` after a kill until it is started again).
    pub process: Option<Managed>,
    /// Its HTTP port.
    pub http_port: u16,
    /// One log per start, in order.
    pub logs: Vec<PathBuf>,
    /// When each start happened.
    pub started: Vec<SystemTime>,
}

/// A scenario's stack and processes; every process stops when it is dropped.
pub struct Rig {
    /// Where everything of this scenario lives.
    pub dir: PathBuf,
    /// The binaries under test.
    pub bins: Binaries,
    /// Processor replicas, in the order they were added.
    pub replicas: Vec<Replica>,
    /// The live producer, when one runs.
    pub producer: Option<Managed>,
    /// A pool on the flightdeck database.
    pub pool: PgPool,
    extra_env: Vec<(String, String)>,
    /// PostgreSQL and the broker. NB: the last field, so it is dropped (stopped) after
    /// the services that use it.
    pub stack: Stack,
}

impl Rig {
    /// Starts a fresh stack under `root/name`.
    pub async fn start(root: &Path, name: &str, bins: &Binaries) -> anyhow::Result<Self> {
        let dir = root.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        let stack = Stack::start_ephemeral(&dir).await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&stack.database_url())
            .await
            .context("connect to the scenario's PostgreSQL")?;
        Ok(Self {
            dir,
            bins: bins.clone(),
            replicas: Vec::new(),
            producer: None,
            pool,
            extra_env: Vec::new(),
            stack,
        })
    }

    /// Sets an environment variable for every processor started from now on.
    pub fn processor_env(&mut self, key: &str, value: &str) {
        self.extra_env.push((key.into(), value.into()));
    }

    /// Adds a replica named `name` and starts it; returns its index.
    pub fn add_processor(&mut self, name: &str) -> anyhow::Result<usize> {
        self.replicas.push(Replica {
            name: name.into(),
            process: None,
            http_port: localstack::free_port()?,
            logs: Vec::new(),
            started: Vec::new(),
        });
        let index = self.replicas.len() - 1;
        self.start_processor(index)?;
        Ok(index)
    }

    /// Starts replica `index` (again) under its instance id, with a log of its own.
    pub fn start_processor(&mut self, index: usize) -> anyhow::Result<()> {
        let (database_url, bootstrap) = (self.stack.database_url(), self.stack.bootstrap_servers());
        let replica = &mut self.replicas[index];
        let log = self.dir.join(format!(
            "processor-{}-{}.log",
            replica.name,
            replica.logs.len()
        ));
        let mut cmd = Command::new(&self.bins.processor);
        cmd.env("DATABASE_URL", database_url)
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .env("HTTP_ADDR", format!("127.0.0.1:{}", replica.http_port))
            .env("GROUP_INSTANCE_ID", &replica.name)
            .env("BATCH_LINGER_MS", "100")
            .env("LOG_FORMAT", "json")
            // `record received` (trace) names every record consumed: redeliveries.
            .env("RUST_LOG", "info,processor::consume=trace");
        for (key, value) in &self.extra_env {
            cmd.env(key, value);
        }
        replica.started.push(SystemTime::now());
        replica.process = Some(Managed::spawn("processor", cmd, &log)?);
        replica.logs.push(log);
        Ok(())
    }

    /// Stops replica `index` with `signal` (SIGKILL: a crash) and waits for it to exit.
    pub fn stop_processor(
        &mut self,
        index: usize,
        signal: Signal,
    ) -> Option<std::process::ExitStatus> {
        self.replicas[index]
            .process
            .take()
            .and_then(|mut p| p.signal_and_wait(signal))
    }

    /// Starts the live producer polling `api_url`, with extra environment.
    pub fn start_producer(&mut self, api_url: &str, env: &[(&str, &str)]) -> anyhow::Result<u16> {
        let port = localstack::free_port()?;
        let mut cmd = Command::new(&self.bins.producer);
        cmd.env("KAFKA_BOOTSTRAP_SERVERS", self.stack.bootstrap_servers())
            .env("OPENSKY_API_URL", api_url)
            .env("OPENSKY_POLL_INTERVAL_SECS", "1")
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info");
        for (key, value) in env {
            cmd.env(key, value);
        }
        self.producer = Some(Managed::spawn(
            "producer",
            cmd,
            &self.dir.join("producer.log"),
        )?);
        Ok(port)
    }

    /// Fails when a process that should run has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(p) = &mut self.producer {
            p.ensure_running()?;
        }
        for r in &mut self.replicas {
            if let Some(p) = &mut r.process {
                p.ensure_running()?;
            }
        }
        Ok(())
    }

    /// Every key in `flight_data` and the row count (which the primary key makes equal,
    /// unless the table lost it).
    pub async fn rows(&self) -> anyhow::Result<(BTreeSet<Key>, i64)> {
        let keys: Vec<(String, i64)> = sqlx::query_as(
            "SELECT icao24, extract(epoch FROM time_position)::int8 FROM flight_data",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default();
        let count = keys.len() as i64;
        Ok((keys.into_iter().collect(), count))
    }

    /// Waits until every key of `expected` is in the table or `timeout` passes, checking
    /// the processes meanwhile; returns the lost keys' count and the rows beyond `expected`.
    pub async fn wait_landed(
        &mut self,
        expected: &BTreeSet<Key>,
        timeout: Duration,
    ) -> anyhow::Result<Landed> {
        let deadline = Instant::now() + timeout;
        loop {
            let (found, rows) = self.rows().await?;
            let lost = expected.difference(&found).count();
            if lost == 0 || Instant::now() > deadline {
                let extra = found.difference(expected).count();
                return Ok(Landed {
                    lost,
                    extra,
                    duplicated: (rows - found.len() as i64) as usize,
                    rows: rows as usize,
                });
            }
            self.ensure_running()?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every DLQ record: value and headers.
    pub fn dlq(&self) -> anyhow::Result<Vec<DeadLetter>> {
        let records = read_dlq(&self.stack.bootstrap_servers(), &DlqOffsets::new())?;
        Ok(records.into_iter().map(|r| (r.value, r.headers)).collect())
    }

    /// Every processor log line of every start, parsed.
    pub fn log_events(&self) -> Vec<LogEvent> {
        self.replicas
            .iter()
            .flat_map(|r| r.logs.iter())
            .flat_map(|log| read_events(log))
            .collect()
    }
}

/// A DLQ record: its value and its headers.
pub type DeadLetter = (Vec<u8>, BTreeMap<String, String>);

/// What landed against what was expected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Landed {
    /// Expected keys missing from the table.
    pub lost: usize,
    /// Rows whose key nobody expected.
    pub extra: usize,
    /// Rows beyond one per key (impossible while the primary key holds).
    pub duplicated: usize,
    /// Rows in the table.
    pub rows: usize,
}

/// One JSON log line of a processor.
#[derive(Debug, Clone)]
pub struct LogEvent {
    /// The message.
    pub message: String,
    /// The structured fields.
    pub fields: Value,
}

fn read_events(log: &Path) -> Vec<LogEvent> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|v| LogEvent {
            message: v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            fields: v["fields"].clone(),
        })
        .collect()
}

/// Records delivered to processors more than once: every `record received` of every
/// start, minus the distinct (partition, offset) among them.
pub fn redeliveries(events: &[LogEvent]) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    for e in events.iter().filter(|e| e.message == "record received") {
        total += 1;
        seen.insert((e.fields["partition"].as_i64(), e.fields["offset"].as_i64()));
    }
    total - seen.len() as u64
}

/// Produces `(key, value)` pairs to `flights` and waits for every acknowledgement.
pub async fn produce_raw(bootstrap: &str, values: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        // The poison corpus holds records of about 1 MB.
        .set("message.max.bytes", "2000000")
        .create()?;
    let mut pending = Vec::new();
    for (key, value) in values {
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(flight_model::FLIGHTS_TOPIC)
            .key(key.as_str())
            .payload(value.as_slice());
        pending.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| anyhow::anyhow!("enqueue a record: {e}"))?,
        );
    }
    for p in pending {
        match p.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => bail!("the broker refused a record: {e}"),
            Err(_) => bail!("the producer was dropped"),
        }
    }
    Ok(())
}

/// A plain HTTP/1.1 GET on `127.0.0.1:port`; empty when nothing answers.
pub async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .ok()?;
        let mut out = String::new();
        stream.read_to_string(&mut out).await.ok()?;
        Some(out)
    };
    tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(partition: i64, offset: i64) -> LogEvent {
        LogEvent {
            message: "record received".into(),
            fields: serde_json::json!({ "partition": partition, "offset": offset }),
        }
    }

    #[test]
    fn redeliveries_count_records_received_more_than_once() {
        let mut events: Vec<LogEvent> = (0..100).map(|o| received(0, o)).collect();
        events.extend((0..50).map(|o| received(1, o)));
        // Killed before committing 90..99 of partition 0: received again.
        events.extend((90..120).map(|o| received(0, o)));
        assert_eq!(redeliveries(&events), 10);
        assert_eq!(redeliveries(&events[..150]), 0);
    }
}
