//! The flightdeck producer: polls the OpenSky REST API, or replays recorded responses,
//! and produces one `flights` record per positioned state vector (see `DESIGN.md`).
//!
//! [`replay`] and [`live`] are the two modes; [`opensky`] is the HTTP client (with
//! OAuth2 client credentials), [`retry`] the pure policy deciding when to poll again
//! (built on the services' one retry policy, the `retry` crate), [`kafka`] the producer
//! that counts what the broker acknowledged, and [`http`] the live mode's `/healthz`,
//! `/readyz` and `/metrics`.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::time::Duration;

pub mod config;
pub mod http;
pub mod kafka;
pub mod live;
pub mod metrics;
pub mod opensky;
pub mod replay;
pub mod retry;
pub mod telemetry;

pub use config::Config;

/// Everything that can go wrong in the producer.
///
/// No variant carries the OAuth2 client secret or an access token, so every error can
/// be logged as it is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or environment variable has a value the producer cannot work with.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A replay file could not be read.
    #[error("cannot read replay file {}", path.display())]
    ReadReplayFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A replay file is not an OpenSky `/api/states/all` response.
    #[error("cannot replay {}", path.display())]
    DecodeReplayFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: flight_model::DecodeError,
    },

    /// The HTTP client could not be built (no TLS backend).
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),

    /// librdkafka refused the producer configuration.
    #[error("cannot create the Kafka producer")]
    CreateProducer(#[source] KafkaCause),

    /// No broker answered a metadata request within the allowed time.
    #[error("Kafka broker at {bootstrap_servers} is unreachable (gave up after {waited:?})")]
    BrokerUnreachable {
        /// The `--bootstrap-servers` that were tried.
        bootstrap_servers: String,
        /// How long the producer kept trying.
        waited: Duration,
        /// The last error librdkafka reported.
        #[source]
        source: KafkaCause,
    },

    /// The broker did not acknowledge every record.
    #[error("{failed} of {total} records were not acknowledged by the Kafka broker")]
    Delivery {
        /// Records that failed.
        failed: usize,
        /// Records sent.
        total: usize,
        /// Positions (in the order given) of the records refused for good: too large
        /// for the producer or the topic, so sending them again cannot help.
        refused: Vec<usize>,
        /// The first failure.
        #[source]
        first: KafkaCause,
    },

    /// The HTTP listener could not start.
    #[error("cannot serve HTTP on {addr} (set HTTP_ADDR to a free address)")]
    Http {
        /// The address it tried.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// Records still queued at shutdown were not delivered in time.
    #[error("{queued} records were still queued for the Kafka broker when the flush timed out")]
    Flush {
        /// Records librdkafka still held.
        queued: i32,
        /// The flush error.
        #[source]
        source: KafkaCause,
    },

    /// No TCP connection to OpenSky (or its token endpoint) could be made.
    #[error("OpenSky is unreachable ({url})")]
    Unreachable {
        /// The URL requested, without credentials.
        url: String,
        /// The connection error.
        #[source]
        source: reqwest::Error,
    },

    /// OpenSky did not answer in time.
    #[error("OpenSky did not answer in time ({url})")]
    Timeout {
        /// The URL requested.
        url: String,
        /// The timeout error.
        #[source]
        source: reqwest::Error,
    },

    /// Any other transport failure (a reset connection, a broken body stream).
    #[error("request to OpenSky failed ({url})")]
    Transport {
        /// The URL requested.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },

    /// OpenSky answered with a 5xx status.
    #[error("OpenSky answered HTTP {status} (server error) for {url}")]
    ServerError {
        /// The status code.
        status: u16,
        /// The URL requested.
        url: String,
    },

    /// OpenSky answered 200 with a body that is not a states response.
    #[error("OpenSky's response body could not be decoded ({url})")]
    DecodeResponse {
        /// The URL requested.
        url: String,
        /// What is wrong with the body.
        #[source]
        source: flight_model::DecodeError,
    },

    /// OpenSky answered a 4xx status that retrying will not fix (bad query, wrong URL).
    #[error(
        "OpenSky rejected the request to {url} with HTTP {status}; retrying will not help: check the URL and the query flags"
    )]
    Rejected {
        /// The status code.
        status: u16,
        /// The URL requested.
        url: String,
    },

    /// OpenSky answered 401 even to a freshly fetched access token.
    #[error("OpenSky answered HTTP 401 to a freshly fetched access token ({url})")]
    Unauthorized {
        /// The URL requested.
        url: String,
    },

    /// The token endpoint refused the client credentials.
    #[error(
        "the OpenSky token endpoint rejected the credentials of client id {client_id:?} \
         with HTTP {status} ({url}); check OPENSKY_CLIENT_ID and OPENSKY_CLIENT_SECRET"
    )]
    CredentialsRejected {
        /// The client id (never the secret).
        client_id: String,
        /// The status code.
        status: u16,
        /// The token endpoint.
        url: String,
    },

    /// The token endpoint answered 429 or a 5xx status.
    #[error("the OpenSky token endpoint is unavailable: HTTP {status} ({url})")]
    TokenUnavailable {
        /// The status code.
        status: u16,
        /// The token endpoint.
        url: String,
    },

    /// The token endpoint answered 200 with something that is not an OAuth2 token.
    #[error("the OpenSky token endpoint's answer is not an OAuth2 token response ({url})")]
    DecodeToken {
        /// The token endpoint.
        url: String,
        /// What is wrong with it. `access_token` is read as a string, so this never quotes it.
        #[source]
        source: serde_json::Error,
    },
}

/// The producer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A Kafka client error as the cause of an [`Error`]: shown whole, and the end of the chain.
///
/// NB: rdkafka's `KafkaError` prints its error code and returns the same code again as its
/// `source()`, so an error chain (`{:#}`, `{:?}`, [`error_chain`]) walked through it would
/// print the code twice.
#[derive(Debug)]
pub struct KafkaCause(pub rdkafka::error::KafkaError);

impl std::fmt::Display for KafkaCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for KafkaCause {}

impl Error {
    /// Whether this is a failure of OpenSky (the API or its token endpoint), which the
    /// live loop always retries: it never exits on what the API answers.
    pub fn is_retryable(&self) -> bool {
        self.cause().is_some()
    }

    /// A short, stable name of an OpenSky failure's cause (`http_404`, `timeout` …): the
    /// `cause` label of the failure metric, and what "the same failure again" means for
    /// logging each distinct cause once. `None` for failures that are not OpenSky's.
    pub fn cause(&self) -> Option<String> {
        Some(match self {
            Self::Unreachable { .. } => "unreachable".into(),
            Self::Timeout { .. } => "timeout".into(),
            Self::Transport { .. } => "transport".into(),
            Self::ServerError { status, .. } | Self::Rejected { status, .. } => {
                format!("http_{status}")
            }
            Self::DecodeResponse { .. } => "bad_body".into(),
            Self::Unauthorized { .. } => "http_401_fresh_token".into(),
            Self::CredentialsRejected { status, .. } | Self::TokenUnavailable { status, .. } => {
                format!("token_http_{status}")
            }
            Self::DecodeToken { .. } => "token_bad_body".into(),
            _ => return None,
        })
    }

    /// What an operator can do about an OpenSky failure.
    pub fn fix(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => {
                "check the network route to OpenSky (DNS, proxy, egress policy) and OPENSKY_API_URL"
            }
            Self::Timeout { .. } | Self::Transport { .. } => {
                "OpenSky is slow or the connection drops: nothing to change, the producer retries"
            }
            Self::ServerError { .. } | Self::TokenUnavailable { .. } => {
                "a problem on OpenSky's side: nothing to change, the producer retries"
            }
            Self::DecodeResponse { .. } | Self::DecodeToken { .. } => {
                "OpenSky answered something that is not its JSON (a proxy's page, a cut body): check OPENSKY_API_URL and any proxy"
            }
            Self::Rejected {
                status: 401 | 403, ..
            }
            | Self::Unauthorized { .. }
            | Self::CredentialsRejected {
                status: 401 | 403, ..
            } => {
                "check OPENSKY_CLIENT_ID and OPENSKY_CLIENT_SECRET, or OpenSky refuses this network address (cloud providers' addresses are often blocked)"
            }
            Self::Rejected { status: 404, .. } => "check OPENSKY_API_URL (it must end in /api)",
            Self::Rejected { .. } => {
                "check OPENSKY_API_URL and the query flags (--bbox, --extended)"
            }
            Self::CredentialsRejected { .. } => {
                "check OPENSKY_TOKEN_URL and the client credentials"
            }
            _ => "see the error",
        }
    }
}

/// Formats an error with its whole `source()` chain on one line, for log fields.
///
/// A cause whose text its error already ends with (`flight_model::DecodeError` shows its
/// serde error and returns it as the source) is not repeated.
pub fn error_chain(error: &dyn StdError) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    use super::*;

    #[test]
    fn every_cause_is_shown_once_in_an_error_chain() {
        let decode = flight_model::StatesResponse::from_json(b"{\"time\": \"noon\"}")
            .expect_err("not a states response");
        let cases = [
            (
                Error::Delivery {
                    failed: 1,
                    total: 3,
                    refused: vec![0],
                    first: KafkaCause(KafkaError::MessageProduction(
                        RDKafkaErrorCode::MessageSizeTooLarge,
                    )),
                },
                "Message size too large",
            ),
            (
                Error::BrokerUnreachable {
                    bootstrap_servers: "127.0.0.1:9092".into(),
                    waited: Duration::from_secs(30),
                    source: KafkaCause(KafkaError::MetadataFetch(
                        RDKafkaErrorCode::BrokerTransportFailure,
                    )),
                },
                "Broker transport failure",
            ),
            (
                Error::ReadReplayFile {
                    path: "states.json".into(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                },
                "no such file",
            ),
            (
                Error::DecodeResponse {
                    url: "https://opensky-network.org/api/states/all".into(),
                    source: decode,
                },
                "invalid type",
            ),
        ];
        for (error, cause) in cases {
            let chain = error_chain(&error);
            let error = anyhow::Error::from(error).context("poll opensky");
            for text in [format!("{error:#}"), format!("{error:?}"), chain] {
                assert_eq!(text.matches(cause).count(), 1, "{text}");
            }
        }
    }
}
