//! A local Kafka-protocol broker: Apache Kafka in KRaft mode, or tansu.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::process::{Managed, wait_until};
use crate::tools;

/// Which broker implementation runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerKind {
    /// Apache Kafka from the scripts in this directory (`kafka-server-start.sh` & co).
    Kafka {
        /// The directory holding the scripts.
        bin: PathBuf,
    },
    /// tansu with its durable sqlite storage engine.
    Tansu {
        /// The tansu binary.
        bin: PathBuf,
    },
}

impl BrokerKind {
    /// Apache Kafka when its scripts are on `PATH`, else tansu (installed on first use).
    ///
    /// `FLIGHTDECK_BROKER=tansu` or `=kafka` overrides the choice.
    pub fn detect() -> anyhow::Result<Self> {
        let wanted = std::env::var("FLIGHTDECK_BROKER").unwrap_or_default();
        let kafka =
            tools::on_path("kafka-server-start.sh").and_then(|p| p.parent().map(Path::to_path_buf));
        match (wanted.as_str(), kafka) {
            ("" | "kafka", Some(bin)) => Ok(Self::Kafka { bin }),
            ("kafka", None) => bail!(
                "FLIGHTDECK_BROKER=kafka but kafka-server-start.sh is not on PATH: run inside `nix develop` \
                 or install Apache Kafka and put its bin/ on PATH"
            ),
            ("" | "tansu", _) => Ok(Self::Tansu {
                bin: tools::tansu()?,
            }),
            (other, _) => bail!("FLIGHTDECK_BROKER={other:?}: expected `kafka` or `tansu`"),
        }
    }

    /// A short name for messages.
    pub fn name(&self) -> String {
        match self {
            Self::Kafka { .. } => "Apache Kafka".into(),
            Self::Tansu { .. } => format!("tansu {}", tools::TANSU_VERSION),
        }
    }
}

/// A running local broker.
#[derive(Debug)]
pub struct Broker {
    port: u16,
    kind: BrokerKind,
    dir: PathBuf,
    process: Managed,
}

impl Broker {
    /// Starts the broker on `127.0.0.1:port` with its data under `dir` (kept across restarts).
    pub fn start(dir: &Path, port: u16, kind: BrokerKind) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let log = dir.join("broker.log");
        let cmd = match &kind {
            BrokerKind::Tansu { bin } => tansu_command(bin, dir, port, TANSU_SQLITE),
            BrokerKind::Kafka { bin } => kafka_command(bin, dir, port)?,
        };
        let mut process = Managed::spawn("broker", cmd, &log)?;
        wait_until(&mut process, &kind.name(), Duration::from_secs(120), || {
            crate::port_open(port)
        })?;
        Ok(Self {
            port,
            kind,
            dir: dir.to_owned(),
            process,
        })
    }

    /// Kills the broker with `signal` (SIGKILL: a crash; SIGTERM: a clean stop) and waits
    /// for it to exit; its data stays.
    pub fn kill(&mut self, signal: crate::process::Signal) {
        self.process.signal_and_wait(signal);
    }

    /// Starts the broker again on the same port and storage (after [`Self::kill`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.stop();
        let (dir, port, kind) = (self.dir.clone(), self.port, self.kind.clone());
        *self = Self::start(&dir, port, kind)?;
        Ok(())
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Which broker this is.
    pub fn kind(&self) -> &BrokerKind {
        &self.kind
    }

    /// Fails when the broker process has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.process.ensure_running()
    }

    /// Stops the broker.
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// tansu's durable storage, in `tansu.db` of the broker's directory.
///
/// NB: the sqlite engine is durable: topic data and committed group offsets survive a
/// broker restart, which `memory://` would not. tansu resolves the path against its
/// working directory (an absolute path loses its leading slash), hence the relative path
/// and the `current_dir` of [`tansu_command`].
pub const TANSU_SQLITE: &str = "sqlite://tansu.db";

/// tansu serving `127.0.0.1:port` from `dir` with the storage engine `storage`
/// ([`TANSU_SQLITE`], or `memory://…` where nothing must outlive the process).
pub fn tansu_command(bin: &Path, dir: &Path, port: u16, storage: &str) -> Command {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(bin);
    cmd.arg("broker")
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", storage])
        .current_dir(dir)
        .env(
            "RUST_LOG",
            std::env::var("FLIGHTDECK_BROKER_LOG").unwrap_or_else(|_| "warn".into()),
        );
    cmd
}

fn kafka_command(bin: &Path, dir: &Path, port: u16) -> anyhow::Result<Command> {
    let controller_port = crate::free_port()?;
    let data = dir.join("kraft");
    let config = dir.join("server.properties");
    std::fs::write(
        &config,
        format!(
            "# generated by localstack for one local KRaft node\n\
             process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller_port}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={}\n\
             num.partitions=1\n\
             offsets.topic.replication.factor=1\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n\
             auto.create.topics.enable=false\n",
            data.display()
        ),
    )
    .context("write server.properties")?;
    if !data.join("meta.properties").exists() {
        let out = Command::new(bin.join("kafka-storage.sh"))
            .args([
                "format",
                "--ignore-formatted",
                "-t",
                "MkU3OEVBNTcwNTJENDM2Qg",
                "-c",
            ])
            .arg(&config)
            .output()
            .context("run kafka-storage.sh format")?;
        if !out.status.success() {
            bail!(
                "kafka-storage.sh format failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let mut cmd = Command::new(bin.join("kafka-server-start.sh"));
    cmd.arg(&config).env("LOG_DIR", dir.join("logs"));
    Ok(cmd)
}
