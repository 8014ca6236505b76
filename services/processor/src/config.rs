//! The processor's configuration: flags with environment-variable fallbacks.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use flight_model::redact_url;

use crate::{Error, Result};

/// The default largest DLQ record: 8 MiB, eight times the `flights` topic's 1 MiB, so any
/// record `flights` accepted fits with its headers.
pub const DLQ_MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// The longest `group.instance.id` accepted (Kafka's limit for names).
pub const MAX_INSTANCE_ID_LEN: usize = 249;

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

    /// This replica's stable name in the group (Kafka static membership, KIP-345): a
    /// restarted processor with the same name gets its partitions back at once instead of
    /// waiting out the dead one's session. In Kubernetes the pod name (downward API); on
    /// the local stack one name per replica. Unset: dynamic membership.
    #[arg(long, env = "GROUP_INSTANCE_ID")]
    pub group_instance_id: Option<String>,

    /// Largest DLQ record in bytes, key and headers included; the `flights.dlq` topic's
    /// `max.message.bytes` must be at least this. A rejected record that does not fit is
    /// stored truncated, with headers saying so.
    #[arg(long, env = "DLQ_MAX_MESSAGE_BYTES", default_value_t = DLQ_MAX_MESSAGE_BYTES)]
    pub dlq_max_message_bytes: usize,

    /// How long sending to the DLQ may keep failing (for any reason but size) before the
    /// processor stops with an error rather than commit past the records, in seconds.
    #[arg(long, env = "DLQ_GIVE_UP_AFTER_SECS", default_value_t = 300)]
    pub dlq_give_up_after_secs: u64,

    /// Most records written in one transaction.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 5000)]
    pub batch_size: usize,

    /// How long a batch may wait for more records while the writer is free, in
    /// milliseconds. While the writer is busy records gather anyway (natural batching),
    /// so this only trades latency for fewer, larger transactions at low rates.
    #[arg(long, env = "BATCH_LINGER_MS", default_value_t = 20)]
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
        if let Some(id) = &self.group_instance_id {
            validate_instance_id(id)?;
        }
        if self.dlq_max_message_bytes < 64 * 1024 {
            return Err(Error::Config(
                "DLQ_MAX_MESSAGE_BYTES (--dlq-max-message-bytes) must be at least 65536".into(),
            ));
        }
        Ok(())
    }

    /// How long DLQ sends may fail before the processor stops.
    pub fn dlq_give_up_after(&self) -> Duration {
        Duration::from_secs(self.dlq_give_up_after_secs)
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
            .field("group_instance_id", &self.group_instance_id)
            .field("dlq_max_message_bytes", &self.dlq_max_message_bytes)
            .field("dlq_give_up_after_secs", &self.dlq_give_up_after_secs)
            .field("batch_size", &self.batch_size)
            .field("batch_linger_ms", &self.batch_linger_ms)
            .field("http_addr", &self.http_addr)
            .field("db_max_connections", &self.db_max_connections)
            .finish()
    }
}

/// Checks a `group.instance.id` the way the broker will, naming the variable.
pub fn validate_instance_id(id: &str) -> Result<()> {
    const VARIABLE: &str = "GROUP_INSTANCE_ID (--group-instance-id)";
    if id.trim().is_empty() {
        return Err(Error::Config(format!(
            "{VARIABLE} is empty: set a stable name per replica (the pod name in Kubernetes) \
             or unset it for dynamic membership"
        )));
    }
    if id.len() > MAX_INSTANCE_ID_LEN {
        return Err(Error::Config(format!(
            "{VARIABLE} is {} characters long; the broker accepts at most {MAX_INSTANCE_ID_LEN}",
            id.len()
        )));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::Config(format!(
            "{VARIABLE} {id:?} contains {bad:?}; use only ASCII letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> std::result::Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("processor").chain(args.iter().copied()))
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
    fn a_bad_instance_id_is_a_startup_error_naming_the_variable() {
        let base = ["--database-url", "postgres://a@b/c", "--group-instance-id"];
        for (id, says) in [
            ("", "is empty"),
            ("  ", "is empty"),
            (&"p".repeat(250), "at most 249"),
            ("processor 0", "contains ' '"),
        ] {
            let c = config(&[&base[..], &[id]].concat()).expect("parses");
            let err = c.validate().expect_err("invalid").to_string();
            assert!(err.contains("GROUP_INSTANCE_ID"), "{err}");
            assert!(err.contains(says), "{err}");
        }
        let c = config(&[&base[..], &[&"p".repeat(249)]].concat()).expect("parses");
        assert_eq!(c.validate().ok(), Some(()));
        let c = config(&[&base[..], &["processor-7d9f-x2k4q"]].concat()).expect("parses");
        assert_eq!(c.validate().ok(), Some(()));
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
