//! The OpenSky REST client: `GET {api_url}/states/all`, anonymous or with an OAuth2
//! client-credentials bearer token, and what each answer means.
//!
//! [`OpenSkyClient::poll`] makes one request and classifies the answer: a decoded
//! [`Snapshot`], a rate limit with the server's retry-after, or an [`Error`] that says
//! whether retrying can help ([`Error::is_retryable`]). It never sleeps and never
//! retries by itself, except once after a 401 with a fresh token; when to poll again is
//! [`crate::retry`]'s decision. Tokens are refreshed [`TOKEN_REFRESH_MARGIN`] before
//! they expire. Neither the client secret nor a token is ever logged or put in an error.

use std::time::{Duration, Instant};

use flight_model::{FlightRecord, StatesResponse};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use tracing::{debug, info};

use crate::config::{BoundingBox, Config, Secret};
use crate::{Error, Result};

/// How long before its expiry an access token is replaced.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// The header in which OpenSky says how long to wait after a 429.
pub const RETRY_AFTER_HEADER: &str = "X-Rate-Limit-Retry-After-Seconds";
/// The header in which OpenSky reports the API credits left today.
pub const REMAINING_HEADER: &str = "X-Rate-Limit-Remaining";

/// What the client needs to know, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct OpenSkySettings {
    /// The API root; the client requests `{api_url}/states/all`.
    pub api_url: String,
    /// Restrict the answer to this area.
    pub bbox: Option<BoundingBox>,
    /// Ask for the aircraft category (`extended=1`).
    pub extended: bool,
    /// OAuth2 client credentials; `None` polls anonymously.
    pub credentials: Option<Credentials>,
    /// How long one request may take, connecting and reading the body included.
    pub request_timeout: Duration,
}

/// OAuth2 client credentials and where to trade them for a token.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The token endpoint.
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The client secret (its `Debug` is redacted).
    pub client_secret: Secret,
}

impl OpenSkySettings {
    /// The settings a validated [`Config`] asks for.
    pub fn from_config(config: &Config) -> Self {
        Self {
            api_url: config.api_url.clone(),
            bbox: config.bbox,
            extended: config.extended,
            credentials: config.credentials().map(|(id, secret)| Credentials {
                token_url: config.token_url.clone(),
                client_id: id.to_owned(),
                client_secret: secret.clone(),
            }),
            request_timeout: Duration::from_secs(config.request_timeout_secs),
        }
    }
}

/// What one poll brought.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    /// A decoded response.
    Snapshot(Snapshot),
    /// HTTP 429: OpenSky wants the client to wait (`None` when it did not say how long).
    RateLimited {
        /// The `X-Rate-Limit-Retry-After-Seconds` header.
        retry_after: Option<Duration>,
    },
}

/// One decoded `/states/all` response, ready to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The response's `time` (Unix seconds).
    pub time: i64,
    /// One record per positioned state vector, in response order.
    pub records: Vec<FlightRecord>,
    /// Vectors without a position, not produced.
    pub dropped_unpositioned: usize,
    /// API credits left, when OpenSky said (`X-Rate-Limit-Remaining`).
    pub remaining_credits: Option<i64>,
}

/// A client for OpenSky's `/states/all`. See the module docs.
#[derive(Debug)]
pub struct OpenSkyClient {
    http: reqwest::Client,
    states_url: String,
    query: Vec<(&'static str, String)>,
    auth: Option<TokenSource>,
}

impl OpenSkyClient {
    /// Builds the client; touches no network.
    pub fn new(settings: OpenSkySettings) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("flightdeck-producer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::HttpClient)?;
        let mut query = Vec::new();
        if let Some(bbox) = settings.bbox {
            query.extend(bbox.query());
        }
        if settings.extended {
            query.push(("extended", "1".to_owned()));
        }
        Ok(Self {
            http,
            states_url: format!("{}/states/all", settings.api_url.trim_end_matches('/')),
            query,
            auth: settings.credentials.map(|credentials| TokenSource {
                credentials,
                token: None,
            }),
        })
    }

    /// Whether requests carry an OAuth2 bearer token.
    pub fn is_authenticated(&self) -> bool {
        self.auth.is_some()
    }

    /// The URL polled, without its query string.
    pub fn states_url(&self) -> &str {
        &self.states_url
    }

    /// Requests `/states/all` once (twice after a 401: with a fresh token) and says what
    /// came back.
    pub async fn poll(&mut self) -> Result<PollOutcome> {
        let mut response = self.get_states(false).await?;
        if response.status() == StatusCode::UNAUTHORIZED && self.auth.is_some() {
            info!("OpenSky answered 401 to the access token: fetching a fresh one and retrying");
            response = self.get_states(true).await?;
            if response.status() == StatusCode::UNAUTHORIZED {
                return Err(Error::Unauthorized {
                    url: self.states_url.clone(),
                });
            }
        }
        self.read(response).await
    }

    async fn get_states(&mut self, fresh_token: bool) -> Result<reqwest::Response> {
        let mut request = self.http.get(&self.states_url).query(&self.query);
        if let Some(auth) = &mut self.auth {
            if fresh_token {
                auth.token = None;
            }
            let bearer = auth.bearer(&self.http).await?;
            request = request.bearer_auth(bearer.expose());
        }
        request
            .send()
            .await
            .map_err(|e| transport_error(&self.states_url, e))
    }

    async fn read(&self, response: reqwest::Response) -> Result<PollOutcome> {
        let status = response.status();
        let url = &self.states_url;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Ok(PollOutcome::RateLimited {
                retry_after: header_number::<u64>(response.headers(), RETRY_AFTER_HEADER)
                    .map(Duration::from_secs),
            });
        }
        if status.is_server_error() {
            return Err(Error::ServerError {
                status: status.as_u16(),
                url: url.clone(),
            });
        }
        if !status.is_success() {
            return Err(Error::Rejected {
                status: status.as_u16(),
                url: url.clone(),
            });
        }
        let remaining_credits = header_number::<i64>(response.headers(), REMAINING_HEADER);
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(url, e))?;
        let decoded = StatesResponse::from_json(&body).map_err(|source| Error::DecodeResponse {
            url: url.clone(),
            source,
        })?;
        let time = decoded.time;
        let extracted = decoded.into_records();
        debug!(bytes = body.len(), "decoded an OpenSky response");
        Ok(PollOutcome::Snapshot(Snapshot {
            time,
            records: extracted.records,
            dropped_unpositioned: extracted.dropped_unpositioned,
            remaining_credits,
        }))
    }
}

/// Fetches access tokens with the client credentials and keeps the current one.
#[derive(Debug)]
struct TokenSource {
    credentials: Credentials,
    token: Option<AccessToken>,
}

#[derive(Debug)]
struct AccessToken {
    bearer: Secret,
    refresh_at: Instant,
}

/// The token endpoint's answer; other fields (`token_type`, `scope`…) are ignored.
#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: Secret,
    expires_in: u64,
}

impl TokenSource {
    /// The current token, fetching a new one when there is none or it is about to expire.
    async fn bearer(&mut self, http: &reqwest::Client) -> Result<Secret> {
        if let Some(token) = &self.token
            && Instant::now() < token.refresh_at
        {
            return Ok(token.bearer.clone());
        }
        let token = self.fetch(http).await?;
        let bearer = token.bearer.clone();
        self.token = Some(token);
        Ok(bearer)
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<AccessToken> {
        let Credentials {
            token_url,
            client_id,
            client_secret,
        } = &self.credentials;
        let requested_at = Instant::now();
        let response = http
            .post(token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", client_secret.expose()),
            ])
            .send()
            .await
            .map_err(|e| transport_error(token_url, e))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(Error::TokenUnavailable {
                status: status.as_u16(),
                url: token_url.clone(),
            });
        }
        if !status.is_success() {
            return Err(Error::CredentialsRejected {
                client_id: client_id.clone(),
                status: status.as_u16(),
                url: token_url.clone(),
            });
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(token_url, e))?;
        let answer: TokenResponse =
            serde_json::from_slice(&body).map_err(|source| Error::DecodeToken {
                url: token_url.clone(),
                source,
            })?;
        info!(
            expires_in_secs = answer.expires_in,
            "fetched an OpenSky access token"
        );
        // NB: the lifetime counts from the request, not the answer, so a slow token
        // endpoint cannot make us use a token after it has expired.
        let lifetime = Duration::from_secs(answer.expires_in);
        Ok(AccessToken {
            bearer: answer.access_token,
            refresh_at: requested_at + lifetime.saturating_sub(TOKEN_REFRESH_MARGIN),
        })
    }
}

/// Sorts a reqwest failure into the cause the live loop reports.
fn transport_error(url: &str, source: reqwest::Error) -> Error {
    let url = url.to_owned();
    // NB: a connect timeout is both; it means unreachable, so that is checked first.
    if source.is_connect() {
        Error::Unreachable { url, source }
    } else if source.is_timeout() {
        Error::Timeout { url, source }
    } else {
        Error::Transport { url, source }
    }
}

fn header_number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}
