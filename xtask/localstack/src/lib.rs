//! The embedded default stack: PostgreSQL and a Kafka-protocol broker as local processes.
//!
//! `cargo xtask dev` keeps their data under `target/flightdeck/`; `cargo xtask e2e` and the
//! integration tests start a throw-away stack in a temporary directory on free ports.
//! Every process is stopped when its handle is dropped, so a failing test or a panic
//! leaves nothing running.
//!
//! The broker is Apache Kafka (KRaft, one node) when its scripts are on `PATH` — as under
//! `nix develop` — and otherwise tansu, a Kafka-protocol broker written in Rust, installed
//! once at a pinned version (see [`tools`]).

pub mod broker;
pub mod postgres;
pub mod process;
pub mod tools;
pub mod topics;

use std::net::TcpListener;
use std::path::Path;

use anyhow::Context;

pub use broker::{Broker, BrokerKind};
pub use postgres::Postgres;

/// A running PostgreSQL and broker, stopped (broker first) when dropped.
#[derive(Debug)]
pub struct Stack {
    /// The broker; dropped before PostgreSQL.
    pub broker: Broker,
    /// The database server.
    pub postgres: Postgres,
}

impl Stack {
    /// Starts a throw-away stack under `dir` on free ports, with the flightdeck topics.
    pub async fn start_ephemeral(dir: &Path) -> anyhow::Result<Self> {
        let postgres = Postgres::start(&dir.join("postgres"), free_port()?, false)?;
        let broker = Broker::start(&dir.join("broker"), free_port()?, BrokerKind::detect()?)?;
        topics::create_flightdeck_topics(&broker.bootstrap_servers()).await?;
        Ok(Self { broker, postgres })
    }

    /// The database URL (no password: the local server trusts loopback connections).
    pub fn database_url(&self) -> String {
        self.postgres.url()
    }

    /// The broker's bootstrap servers.
    pub fn bootstrap_servers(&self) -> String {
        self.broker.bootstrap_servers()
    }
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("find a free local port")?;
    Ok(listener.local_addr()?.port())
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        std::time::Duration::from_millis(200),
    )
    .is_ok()
}
