//! The processor's configuration: flags with environment-variable fallbacks.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::{Error, Result};

/// Consume `flights`, validate, write `flight_data`, send invalid records to `flights.dlq`.
#[derive(Clone, Parser)]
#[command(name = "processor", version, about)]
pub struct Config {
    /// PostgreSQL URL, e.g. postgres://user:password@host:5432/db. The password never
    /// appears in logs or errors.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,

    /// The topic to consume.
    #[arg(long, env = "FLIGHTS_TOPIC", default_value = flight_model::FLIGHTS_TOPIC)]
    pub topic: String,

    /// Where invalid records go, unchanged, with headers naming the reason.
    #[arg(long, env = "DLQ_TOPIC", default_value = flight_model::DLQ_TOPIC)]
    pub dlq_topic: String,

    /// The consumer group; replicas in one group share the partitions.
    #[arg(long, env = "GROUP_ID", default_value = flight_model::PROCESSOR_GROUP)]
    pub group_id: String,

    /// Most records written in one transaction.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 5000)]
    pub batch_size: usize,

    /// How long a batch may wait for more records before it is written, in milliseconds.
    #[arg(long, env = "BATCH_LINGER_MS", default_value_t = 200)]
    pub batch_linger_ms: u64,

    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Most PostgreSQL connections held open.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 4)]
    pub db_max_connections: u32,
}

impl Config {
    /// Checks values without touching the network.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::Config("--batch-size must be at least 1".into()));
        }
        if self.db_max_connections < 2 {
            // One connection serves /readyz while the other writes a batch.
            return Err(Error::Config(
                "--db-max-connections must be at least 2".into(),
            ));
        }
        if !(self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return Err(Error::Config(format!(
                "--database-url {} is not a postgres:// URL",
                self.redacted_database_url()
            )));
        }
        if self.bootstrap_servers.trim().is_empty() {
            return Err(Error::Config("--bootstrap-servers is empty".into()));
        }
        if self.topic == self.dlq_topic {
            return Err(Error::Config("--topic and --dlq-topic must differ".into()));
        }
        Ok(())
    }

    /// The batch linger as a duration.
    pub fn batch_linger(&self) -> Duration {
        Duration::from_millis(self.batch_linger_ms)
    }

    /// The database URL with its password replaced by `***`.
    pub fn redacted_database_url(&self) -> String {
        redact_url(&self.database_url)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &self.redacted_database_url())
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topic", &self.topic)
            .field("dlq_topic", &self.dlq_topic)
            .field("group_id", &self.group_id)
            .field("batch_size", &self.batch_size)
            .field("batch_linger_ms", &self.batch_linger_ms)
            .field("http_addr", &self.http_addr)
            .field("db_max_connections", &self.db_max_connections)
            .finish()
    }
}

/// Replaces the password of `scheme://user:password@host/...` with `***`; also the value of
/// a `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            let (start, end) = (scheme_end + 3 + colon + 1, scheme_end + 3 + at);
            out.replace_range(start..end, "***");
        }
    }
    if let Some(pos) = out.find("password=") {
        let start = pos + "password=".len();
        let end = out[start..].find('&').map_or(out.len(), |i| start + i);
        out.replace_range(start..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> std::result::Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("processor").chain(args.iter().copied()))
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://app:s3cr%40t@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(
            redact_url("postgres://db/x?user=a&password=hunter2&x=1"),
            "postgres://db/x?user=a&password=***&x=1"
        );
        assert_eq!(redact_url("postgres://a:b@c@d/x"), "postgres://a:***@d/x");
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let c = config(&["--database-url", "postgres://app:hunter2@db/x"]).expect("parses");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("app:***@db"), "{shown}");
    }

    #[test]
    fn impossible_values_are_explained() {
        let c =
            config(&["--database-url", "postgres://a@b/c", "--batch-size", "0"]).expect("parses");
        assert_eq!(
            c.validate().expect_err("invalid").to_string(),
            "configuration: --batch-size must be at least 1"
        );
        let c = config(&["--database-url", "mysql://a:pw@b/c"]).expect("parses");
        let err = c.validate().expect_err("invalid").to_string();
        assert!(
            err.contains("mysql://a:***@b/c is not a postgres:// URL"),
            "{err}"
        );
        assert!(config(&["--database-url", "postgres://a@b/c", "--batch-sise", "3"]).is_err());
    }

    #[test]
    fn defaults_match_the_design() {
        let c = config(&["--database-url", "postgres://a@b/c"]).expect("parses");
        assert_eq!(c.validate().ok(), Some(()));
        assert_eq!(
            (c.topic.as_str(), c.dlq_topic.as_str()),
            ("flights", "flights.dlq")
        );
        assert_eq!(c.group_id, "flightdeck-processor");
    }
}
