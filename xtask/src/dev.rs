//! `cargo xtask dev`: the whole pipeline on this machine, no Docker, no cluster.
//!
//! PostgreSQL and a Kafka-protocol broker run as local processes with their data under
//! `target/flightdeck/` (kept between runs), then the processor and the producer, and
//! Apache Superset with the flightdeck dashboard (see [`crate::dashboard`]) for whoever is
//! looking: not with `--once`, which only waits for the data. Ctrl-C stops everything in
//! order: producer, processor (which finishes and commits its batch), Superset, broker,
//! database. A dashboard that cannot start (install failed, export rejected) is reported
//! and the pipeline runs without it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use localstack::{Broker, BrokerKind, Postgres};
use xshell::Shell;

use crate::dashboard::{self, Superset};
use crate::pipeline::{self, Endpoints, Observer};

/// Port of the local PostgreSQL started by `dev`.
const POSTGRES_PORT: u16 = 55432;
/// Port of the local broker started by `dev`.
const BROKER_PORT: u16 = 19092;
/// Port of the processor's /healthz, /readyz and /metrics.
const PROCESSOR_HTTP_PORT: u16 = 18080;

/// Run the pipeline locally: live OpenSky data, or recorded responses with --replay.
#[derive(Debug, clap::Args)]
pub struct Dev {
    /// Replay these recorded OpenSky /api/states/all responses (one JSON response per
    /// file) instead of polling the live API. Works offline.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    replay: Vec<PathBuf>,

    /// With --replay: exit as soon as every replayed record is in flight_data or the DLQ,
    /// printing a summary with those counts.
    #[arg(long, requires = "replay")]
    once: bool,

    /// Use this PostgreSQL instead of starting one (e.g. postgres://user:pw@host:5432/db).
    #[arg(long, env = "DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,

    /// Use this Kafka cluster instead of starting a broker (host:port[,host:port]).
    #[arg(long, value_name = "HOSTS")]
    bootstrap_servers: Option<String>,

    /// Do not start Superset (the dashboard). `--once` never starts it.
    #[arg(long)]
    no_dashboard: bool,

    /// Serve the dashboard (Superset) on this port of 127.0.0.1.
    #[arg(long, value_name = "PORT", default_value_t = dashboard::DEFAULT_PORT)]
    dashboard_port: u16,
}

impl Dev {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let launched = Instant::now();
        // Fail before starting anything when a file cannot be replayed.
        for file in &self.replay {
            let body =
                std::fs::read(file).with_context(|| format!("--replay {}", file.display()))?;
            flight_model::StatesResponse::from_json(&body)
                .with_context(|| format!("--replay {}", file.display()))?;
        }
        let with_dashboard = !self.no_dashboard && !self.once;
        if with_dashboard && localstack::port_open(self.dashboard_port) {
            bail!(
                "port {} is already in use, so the dashboard (Superset) cannot listen there \
                 (is another `cargo xtask dev` running?): pass --dashboard-port with a free \
                 port, or --no-dashboard",
                self.dashboard_port
            );
        }
        let bins = pipeline::build_services(sh, pipeline::Profile::Dev)?;
        // A failed install is reported and the pipeline runs without the dashboard.
        let installed = with_dashboard
            .then(|| dashboard::install::ensure(&sh.current_dir()))
            .and_then(|r| {
                r.map_err(|e| {
                    eprintln!(
                        "flightdeck: no dashboard this run: {e:#}\n\
                         flightdeck: the pipeline runs without it; to retry, run the same \
                         `cargo xtask dev` again (or pass --no-dashboard)"
                    )
                })
                .ok()
            });
        let data = pipeline::target_dir(sh).join("flightdeck");
        let postgres = match &self.database_url {
            Some(_) => None,
            None => Some(start_postgres(&data)?),
        };
        let superset = match &installed {
            Some(installed) => self
                .start_superset(sh, installed, postgres.as_ref(), &data)
                .map_err(|e| eprintln!("flightdeck: no dashboard this run: {e:#}"))
                .ok(),
            None => None,
        };
        let broker = match &self.bootstrap_servers {
            Some(_) => None,
            None => Some(start_broker(&data)?),
        };
        let at = Endpoints {
            database_url: self
                .database_url
                .clone()
                .unwrap_or_else(|| postgres.as_ref().map(Postgres::url).unwrap_or_default()),
            bootstrap_servers: self.bootstrap_servers.clone().unwrap_or_else(|| {
                broker
                    .as_ref()
                    .map(Broker::bootstrap_servers)
                    .unwrap_or_default()
            }),
        };
        let runtime = tokio::runtime::Runtime::new()?;
        let result = runtime.block_on(self.run_pipeline(&bins, &at, &data, superset, launched));
        // Stop the broker before the database, after the services and Superset (dropped
        // inside).
        drop(broker);
        drop(postgres);
        if result.is_ok() && !self.once {
            eprintln!("flightdeck: stopped; data kept in {}", data.display());
        }
        result
    }

    /// Starts Superset reading `postgres` through its read-only role (or `--database-url`).
    fn start_superset(
        &self,
        sh: &Shell,
        installed: &dashboard::Installed,
        postgres: Option<&Postgres>,
        data: &std::path::Path,
    ) -> anyhow::Result<Superset> {
        let database_uri = match (postgres, &self.database_url) {
            (Some(postgres), _) => {
                postgres.ensure_reader()?;
                postgres.reader_url()
            }
            (None, Some(url)) => {
                eprintln!(
                    "flightdeck: the dashboard reads --database-url with its own role (a \
                     read-only role is created only in the local PostgreSQL)"
                );
                url.clone()
            }
            (None, None) => bail!("no database for the dashboard"),
        };
        let export = dashboard::Export::read(&sh.current_dir())?;
        Superset::start(
            installed,
            &export,
            &dashboard::Options {
                dir: data.join("superset"),
                port: self.dashboard_port,
                database_uri: dashboard::sqlalchemy_uri(&database_uri),
            },
        )
    }

    async fn run_pipeline(
        &self,
        bins: &pipeline::Binaries,
        at: &Endpoints,
        data: &std::path::Path,
        mut superset: Option<Superset>,
        launched: Instant,
    ) -> anyhow::Result<()> {
        localstack::topics::create_flightdeck_topics(&at.bootstrap_servers).await?;
        let logs = data.join("logs");
        let mut processor =
            pipeline::start_processor(bins, at, PROCESSOR_HTTP_PORT, &logs.join("processor.log"))?;
        let observer = Observer::connect(at).await?;
        eprintln!(
            "flightdeck: postgres  {}\nflightdeck: kafka     {}\nflightdeck: metrics   http://127.0.0.1:{PROCESSOR_HTTP_PORT}/metrics\nflightdeck: logs      {}",
            flight_model::redact_url(&at.database_url),
            at.bootstrap_servers,
            logs.display()
        );
        if let Some(superset) = &superset {
            let password = if superset.new_password {
                format!(
                    "password {} (shown once; kept in {})",
                    superset.admin_password,
                    superset.password_file().display()
                )
            } else {
                format!("password in {}", superset.password_file().display())
            };
            eprintln!(
                "flightdeck: dashboard {} (starting; user {}, {password})",
                superset.dashboard_url(),
                dashboard::instance::ADMIN
            );
        }
        let rows_before = wait_for_table(&observer, &mut processor).await?;
        let dlq_before = observer.dlq_records()?;

        let mut producer = None;
        let replayed = if self.replay.is_empty() {
            eprintln!("flightdeck: streaming live OpenSky data (Ctrl-C stops)");
            producer = Some(pipeline::start_live_producer(
                bins,
                at,
                &logs.join("producer.log"),
            )?);
            None
        } else {
            eprintln!("flightdeck: replaying {} file(s)", self.replay.len());
            Some(pipeline::replay(bins, at, &self.replay)?)
        };

        let mut status = status_line();
        let mut producer_log = LogFollower::new(logs.join("producer.log"));
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let started = Instant::now();
        let mut dashboard_ready = false;
        loop {
            processor.ensure_running()?;
            if let Some(p) = producer.as_mut() {
                p.ensure_running()?;
            }
            for line in producer_log.new_warnings() {
                status.println(format!("producer: {line}"));
            }
            if let Some(s) = superset.as_mut()
                && !dashboard_ready
            {
                match s.ready().await {
                    Ok(true) => {
                        dashboard_ready = true;
                        status.println(format!(
                            "flightdeck: dashboard ready at {} ({}s after start)",
                            s.dashboard_url(),
                            launched.elapsed().as_secs()
                        ));
                    }
                    Ok(false) => {}
                    Err(e) => {
                        status.println(format!("flightdeck: the dashboard stopped: {e:#}"));
                        superset = None;
                    }
                }
            }
            let rows = observer.rows().await.unwrap_or(rows_before);
            let rejected = observer.dlq_records()? - dlq_before;
            let lag = observer.lag()?;
            status.set_message(format!(
                "{} rows in flight_data ({:+} this run) · {rejected} rejected to flights.dlq · lag {lag} · {}s",
                rows,
                rows - rows_before,
                started.elapsed().as_secs()
            ));
            if let (true, Some(summary)) = (self.once, replayed)
                && lag == 0
            {
                status.finish_and_clear();
                println!(
                    "replayed {} record(s) from {} file(s) ({} vector(s) without a position dropped by the producer)\n\
                     {} new row(s) in flight_data ({} already there), {} record(s) to flights.dlq; flight_data holds {} row(s)",
                    summary.produced,
                    summary.files,
                    summary.dropped_unpositioned,
                    rows - rows_before,
                    summary.produced as i64 - (rows - rows_before) - rejected,
                    rejected,
                    rows
                );
                break;
            }
            tokio::select! {
                _ = &mut ctrl_c => {
                    status.finish_and_clear();
                    eprintln!("flightdeck: stopping");
                    break;
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        drop(producer);
        match processor.stop() {
            Some(s) if !s.success() => bail!(
                "the processor exited with {s}; see {}",
                processor.log().display()
            ),
            _ => Ok(()),
        }
    }
}

fn start_postgres(data: &std::path::Path) -> anyhow::Result<Postgres> {
    if localstack::port_open(POSTGRES_PORT) {
        bail!(
            "port {POSTGRES_PORT} is already in use (is another `cargo xtask dev` running?): stop it, \
             or pass --database-url to use a running PostgreSQL"
        );
    }
    eprintln!(
        "flightdeck: starting PostgreSQL (data in {})",
        data.join("postgres").display()
    );
    Postgres::start(&data.join("postgres"), POSTGRES_PORT, true).context("start PostgreSQL")
}

fn start_broker(data: &std::path::Path) -> anyhow::Result<Broker> {
    if localstack::port_open(BROKER_PORT) {
        bail!(
            "port {BROKER_PORT} is already in use (is another `cargo xtask dev` running?): stop it, \
             or pass --bootstrap-servers to use a running Kafka"
        );
    }
    let kind = BrokerKind::detect()?;
    eprintln!(
        "flightdeck: starting {} (data in {})",
        kind.name(),
        data.join("broker").display()
    );
    Broker::start(&data.join("broker"), BROKER_PORT, kind).context("start the broker")
}

/// Waits for the processor to migrate; returns the rows already in the table.
async fn wait_for_table(
    observer: &Observer,
    processor: &mut localstack::process::Managed,
) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        processor.ensure_running()?;
        if let Some(rows) = observer.rows().await {
            return Ok(rows);
        }
        if Instant::now() > deadline {
            bail!(
                "the processor did not become ready; see {}",
                processor.log().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The live one-line summary: a spinner on a terminal, a plain line every 10 s otherwise.
struct Status {
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
}

fn status_line() -> Status {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    Status {
        bar,
        last_line: None,
    }
}

impl Status {
    fn set_message(&mut self, message: String) {
        match &self.bar {
            Some(bar) => bar.set_message(message),
            None if self
                .last_line
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) =>
            {
                eprintln!("flightdeck: {message}");
                self.last_line = Some(Instant::now());
            }
            None => {}
        }
    }

    fn println(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish_and_clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Follows a log file and returns its new WARN/ERROR lines.
struct LogFollower {
    path: PathBuf,
    offset: usize,
}

impl LogFollower {
    /// Follows from the current end: earlier runs' lines are not news.
    fn new(path: PathBuf) -> Self {
        let offset = std::fs::metadata(&path).map_or(0, |m| m.len() as usize);
        Self { path, offset }
    }

    fn new_warnings(&mut self) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        let fresh = text.get(self.offset..).unwrap_or_default();
        self.offset = text.len();
        fresh
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_owned)
            .collect()
    }
}
