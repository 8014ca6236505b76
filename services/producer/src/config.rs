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
        match (&self.client_id, &self.client_secret) {
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
        Ok(())
    }

    /// The OAuth2 client credentials, when both halves are set.
    pub fn credentials(&self) -> Option<(&str, &Secret)> {
        match (&self.client_id, &self.client_secret) {
            (Some(id), Some(secret)) => Some((id, secret)),
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;

    /// Parses `args`, ignoring what a developer's environment sets for the flags these
    /// tests are about (clap reads `OPENSKY_CLIENT_ID` and friends as fallbacks).
    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["producer"];
        argv.extend_from_slice(args);
        let matches = Config::command().get_matches_from(argv);
        let mut config = Config::from_arg_matches(&matches).expect("arguments parse");
        let from_env =
            |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::EnvVariable);
        if from_env("client_id") {
            config.client_id = None;
        }
        if from_env("client_secret") {
            config.client_secret = None;
        }
        if from_env("interval") {
            config.interval = None;
        }
        if from_env("bbox") {
            config.bbox = None;
        }
        config
    }

    #[test]
    fn the_client_secret_is_not_in_the_debug_output() {
        let config = parse(&[
            "--client-id",
            "alice-api-client",
            "--client-secret",
            "hunter2-s3cr3t",
        ]);
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2-s3cr3t"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
        assert!(
            debug.contains("alice-api-client"),
            "the id is not secret: {debug}"
        );
    }

    #[test]
    fn a_bbox_parses_in_lamin_lomin_lamax_lomax_order() {
        let config = parse(&["--bbox", "45.8389,5.9962,47.8229,10.5226"]);
        let bbox = config.bbox.expect("bbox set");
        assert_eq!(
            (bbox.lamin, bbox.lomin, bbox.lamax, bbox.lomax),
            (45.8389, 5.9962, 47.8229, 10.5226)
        );
        config.validate().expect("a valid box");
    }

    #[test]
    fn a_bbox_with_negative_coordinates_parses() {
        let config = parse(&["--bbox", "-34.1,-58.6,-33.9,-58.3"]);
        config.validate().expect("a valid box in the south-west");
    }

    #[test]
    fn a_bbox_with_three_numbers_is_a_parse_error() {
        let err = Config::try_parse_from(["producer", "--bbox", "1,2,3"]).expect_err("must fail");
        assert!(
            err.to_string()
                .contains("expected 4 comma-separated numbers"),
            "{err}"
        );
    }

    #[test]
    fn a_bbox_outside_the_globe_or_upside_down_is_rejected_by_validate() {
        for (bbox, expected) in [
            ("91,0,92,1", "LAMIN 91 is not a latitude in [-90, 90]"),
            ("0,-181,1,1", "LOMIN -181 is not a longitude in [-180, 180]"),
            ("50,0,40,1", "LAMIN 50 must be below LAMAX 40"),
            ("40,10,50,5", "LOMIN 10 must be below LOMAX 5"),
        ] {
            let err = parse(&["--bbox", bbox])
                .validate()
                .expect_err(bbox)
                .to_string();
            assert!(err.contains(expected), "{bbox}: {err}");
            assert!(err.contains("--bbox"), "{bbox}: {err}");
        }
    }

    #[test]
    fn half_of_the_credentials_is_rejected() {
        let err = parse(&["--client-id", "alice"])
            .validate()
            .expect_err("must fail");
        assert!(err.to_string().contains("without --client-secret"), "{err}");
        let err = parse(&["--client-secret", "s3cr3t"])
            .validate()
            .expect_err("must fail");
        assert!(err.to_string().contains("without --client-id"), "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn the_interval_defaults_to_10_s_anonymous_and_5_s_authenticated() {
        assert_eq!(parse(&[]).poll_interval(), Duration::from_secs(10));
        let authenticated = parse(&["--client-id", "a", "--client-secret", "b"]);
        assert_eq!(authenticated.poll_interval(), Duration::from_secs(5));
        assert_eq!(
            parse(&["--interval", "30"]).poll_interval(),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn zero_interval_and_zero_polls_are_rejected() {
        assert!(parse(&["--interval", "0"]).validate().is_err());
        assert!(parse(&["--polls", "0"]).validate().is_err());
    }

    #[test]
    fn replay_takes_several_files() {
        let config = parse(&["--replay", "a.json", "b.json"]);
        assert_eq!(
            config.replay,
            [PathBuf::from("a.json"), PathBuf::from("b.json")]
        );
    }
}
