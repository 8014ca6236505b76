//! The producer's configuration: one clap struct, every flag with an environment
//! fallback where a deployment sets it, and [`Config::validate`], which touches no network.
//!
//! The OAuth2 client secret is a [`Secret`]: it is hidden from `--help`, from `Debug`
//! output and therefore from every log line and error.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;

use crate::{Error, Result};

/// The OpenSky REST API root.
pub const DEFAULT_API_URL: &str = "https://opensky-network.org/api";
/// OpenSky's OAuth2 token endpoint (client credentials flow).
pub const DEFAULT_TOKEN_URL: &str =
    "https://auth.opensky-network.org/auth/realms/opensky-network/protocol/openid-connect/token";
/// Seconds between polls without credentials.
pub const ANONYMOUS_INTERVAL_SECS: u64 = 10;
/// Seconds between polls with credentials.
pub const AUTHENTICATED_INTERVAL_SECS: u64 = 5;
/// How long one HTTP request to OpenSky may take, connecting included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Produce OpenSky flight positions to Kafka, live or from recorded responses.
///
/// Without --replay the producer polls OpenSky's /states/all until SIGINT or SIGTERM
/// (or --polls successful polls). With --replay it produces the given recorded
/// responses once, prints a JSON summary line to stdout and exits.
#[derive(Debug, Clone, Parser)]
#[command(name = "producer", version)]
pub struct Config {
    /// Kafka bootstrap servers: a comma-separated list of HOST:PORT.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        value_name = "HOSTS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,

    /// Kafka topic the flight records are produced to (key: icao24, value: JSON).
    #[arg(long, env = "FLIGHTS_TOPIC", default_value = flight_model::FLIGHTS_TOPIC)]
    pub topic: String,

    /// Replay these recorded OpenSky /states/all responses instead of polling the API.
    ///
    /// Every file is read and decoded before anything is produced: one bad file fails
    /// the run and nothing is produced. Prints
    /// {"files":N,"produced":N,"dropped_unpositioned":N} as the last stdout line.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub replay: Vec<PathBuf>,

    /// Root URL of the OpenSky REST API; the producer polls {api-url}/states/all.
    #[arg(long, env = "OPENSKY_API_URL", value_name = "URL", default_value = DEFAULT_API_URL)]
    pub api_url: String,

    /// Only poll the area inside this box, in WGS-84 degrees: LAMIN,LOMIN,LAMAX,LOMAX.
    #[arg(
        long,
        env = "OPENSKY_BBOX",
        value_name = "LAMIN,LOMIN,LAMAX,LOMAX",
        allow_hyphen_values = true
    )]
    pub bbox: Option<BoundingBox>,

    /// Ask OpenSky for the aircraft category too (the `extended=1` query parameter).
    #[arg(long)]
    pub extended: bool,

    /// OpenSky API client id; with --client-secret the producer authenticates (OAuth2
    /// client credentials), which allows more requests and a shorter --interval.
    #[arg(long, env = "OPENSKY_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,

    /// OpenSky API client secret, used with --client-id. Prefer the environment
    /// variable: a flag is visible in the process list.
    #[arg(
        long,
        env = "OPENSKY_CLIENT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<Secret>,

    /// OpenSky's OAuth2 token endpoint, used when a client id and secret are set.
    #[arg(long, env = "OPENSKY_TOKEN_URL", value_name = "URL", default_value = DEFAULT_TOKEN_URL)]
    pub token_url: String,

    /// Seconds between polls [default: 10 anonymous, 5 authenticated].
    #[arg(long, env = "OPENSKY_POLL_INTERVAL_SECS", value_name = "SECS")]
    pub interval: Option<u64>,

    /// Stop after this many successful polls, once the broker acknowledged every record,
    /// and exit 0. Without it the producer polls until SIGINT or SIGTERM.
    #[arg(long, value_name = "N")]
    pub polls: Option<u64>,

    /// Seconds one HTTP request to OpenSky may take, connecting and reading the body
    /// included; a request that hangs longer is abandoned and retried.
    #[arg(long, env = "OPENSKY_TIMEOUT_SECS", value_name = "SECS", default_value_t = REQUEST_TIMEOUT.as_secs())]
    pub request_timeout_secs: u64,

    /// Live mode: where /healthz, /readyz (a Kafka broker answers) and /metrics are served.
    #[arg(
        long,
        env = "HTTP_ADDR",
        value_name = "ADDR",
        default_value = "127.0.0.1:18081"
    )]
    pub http_addr: std::net::SocketAddr,

    /// Live mode: seconds librdkafka keeps trying to deliver a record before the snapshot
    /// is produced again as a whole (it is retried until the broker has all of it).
    #[arg(
        long,
        env = "KAFKA_DELIVERY_TIMEOUT_SECS",
        value_name = "SECS",
        default_value_t = 60
    )]
    pub delivery_timeout_secs: u64,
}

impl Config {
    /// Checks what clap cannot: value ranges and flags that only work together.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::InvalidConfig(message));
        if self.bootstrap_servers.trim().is_empty() {
            return invalid("--bootstrap-servers (KAFKA_BOOTSTRAP_SERVERS) is empty".into());
        }
        if self.topic.trim().is_empty() {
            return invalid("--topic (FLIGHTS_TOPIC) is empty".into());
        }
        for (flag, url) in [
            ("--api-url", &self.api_url),
            ("--token-url", &self.token_url),
        ] {
            if let Err(e) = reqwest::Url::parse(url) {
                return invalid(format!("{flag} {url:?} is not a URL: {e}"));
            }
        }
        if let Some(bbox) = &self.bbox {
            bbox.validate()?;
        }
        match (self.client_id(), self.client_secret()) {
            (Some(_), None) => {
                return invalid(
                    "--client-id (OPENSKY_CLIENT_ID) is set without --client-secret \
                     (OPENSKY_CLIENT_SECRET): set both, or neither to poll anonymously"
                        .into(),
                );
            }
            (None, Some(_)) => {
                return invalid(
                    "--client-secret (OPENSKY_CLIENT_SECRET) is set without --client-id \
                     (OPENSKY_CLIENT_ID): set both, or neither to poll anonymously"
                        .into(),
                );
            }
            _ => {}
        }
        if self.interval == Some(0) {
            return invalid("--interval must be at least 1 second".into());
        }
        if self.polls == Some(0) {
            return invalid("--polls must be at least 1".into());
        }
        if self.request_timeout_secs == 0 {
            return invalid(
                "--request-timeout-secs (OPENSKY_TIMEOUT_SECS) must be at least 1".into(),
            );
        }
        if self.delivery_timeout_secs == 0 {
            return invalid(
                "--delivery-timeout-secs (KAFKA_DELIVERY_TIMEOUT_SECS) must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// The OAuth2 client credentials, when both halves are set.
    pub fn credentials(&self) -> Option<(&str, &Secret)> {
        self.client_id().zip(self.client_secret())
    }

    // NB: a blank value counts as unset: a Kubernetes Secret with empty keys, or
    // `OPENSKY_CLIENT_ID=` in a shell, means "anonymous", not "authenticate as ''".
    fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref().filter(|id| !id.trim().is_empty())
    }

    fn client_secret(&self) -> Option<&Secret> {
        self.client_secret
            .as_ref()
            .filter(|secret| !secret.expose().trim().is_empty())
    }

    /// How long librdkafka tries to deliver a record.
    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_secs(self.delivery_timeout_secs)
    }

    /// The time between polls: `--interval`, else 5 s authenticated and 10 s anonymous.
    pub fn poll_interval(&self) -> Duration {
        let default = if self.credentials().is_some() {
            AUTHENTICATED_INTERVAL_SECS
        } else {
            ANONYMOUS_INTERVAL_SECS
        };
        Duration::from_secs(self.interval.unwrap_or(default))
    }
}

/// A string that must never be printed: `Debug` and `Display` show `[redacted]`.
///
/// Used for the OAuth2 client secret and the access tokens it buys.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An area to poll, in WGS-84 degrees (OpenSky's `lamin`, `lomin`, `lamax`, `lomax`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    /// Southern edge.
    pub lamin: f64,
    /// Western edge.
    pub lomin: f64,
    /// Northern edge.
    pub lamax: f64,
    /// Eastern edge.
    pub lomax: f64,
}

impl BoundingBox {
    /// Checks that latitudes lie in [-90, 90], longitudes in [-180, 180], and that each
    /// minimum is below its maximum (OpenSky has no boxes across the antimeridian).
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::InvalidConfig(format!("--bbox: {message}")));
        for (name, value) in [("LAMIN", self.lamin), ("LAMAX", self.lamax)] {
            if !(-90.0..=90.0).contains(&value) {
                return invalid(format!("{name} {value} is not a latitude in [-90, 90]"));
            }
        }
        for (name, value) in [("LOMIN", self.lomin), ("LOMAX", self.lomax)] {
            if !(-180.0..=180.0).contains(&value) {
                return invalid(format!("{name} {value} is not a longitude in [-180, 180]"));
            }
        }
        if self.lamin >= self.lamax {
            return invalid(format!(
                "LAMIN {} must be below LAMAX {} (the order is LAMIN,LOMIN,LAMAX,LOMAX)",
                self.lamin, self.lamax
            ));
        }
        if self.lomin >= self.lomax {
            return invalid(format!(
                "LOMIN {} must be below LOMAX {} (the order is LAMIN,LOMIN,LAMAX,LOMAX)",
                self.lomin, self.lomax
            ));
        }
        Ok(())
    }

    /// The query parameters OpenSky expects.
    pub fn query(&self) -> [(&'static str, String); 4] {
        [
            ("lamin", self.lamin.to_string()),
            ("lomin", self.lomin.to_string()),
            ("lamax", self.lamax.to_string()),
            ("lomax", self.lomax.to_string()),
        ]
    }
}

impl FromStr for BoundingBox {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let values = s
            .split(',')
            .map(|part| {
                let part = part.trim();
                part.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("{part:?} is not a number of degrees"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        match values[..] {
            [lamin, lomin, lamax, lomax] => Ok(Self {
                lamin,
                lomin,
                lamax,
                lomax,
            }),
            _ => Err(format!(
                "expected 4 comma-separated numbers LAMIN,LOMIN,LAMAX,LOMAX, got {}",
                values.len()
            )),
        }
    }
}
