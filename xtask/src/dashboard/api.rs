//! Superset's REST API, as the dashboard checks use it: log in, list the dashboard's
//! charts, and ask for a chart's data the way the saved chart asks for it.
//!
//! Charts on Superset's current plugins answer `/api/v1/chart/{id}/data` from their saved
//! query context (JWT). The deck.gl charts (the positions map) still use the legacy
//! `/superset/explore_json/` endpoint, which only accepts a browser session: for those
//! the client also logs in through the login form, like the browser does.

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

/// A logged-in API client.
pub struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
    /// The `session` cookie of a form login, made on first use of the legacy endpoint.
    session: tokio::sync::OnceCell<String>,
    username: String,
    password: String,
}

/// A chart as the dashboard lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct DashboardChart {
    /// Its id in this Superset.
    pub id: i64,
    /// Its title.
    pub slice_name: String,
}

/// One query result of `/api/v1/chart/{id}/data`.
#[derive(Debug, Clone, Deserialize)]
pub struct QueryResult {
    /// The columns of `data`, in order.
    pub colnames: Vec<String>,
    /// The rows, as objects keyed by column.
    #[serde(default)]
    pub data: Vec<serde_json::Map<String, Value>>,
    /// Superset's error when the query failed.
    #[serde(default)]
    pub error: Option<String>,
}

impl Api {
    /// Logs in with a password (`/api/v1/security/login`).
    pub async fn login(base: &str, username: &str, password: &str) -> anyhow::Result<Self> {
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
        }
        // NB: no redirects followed: the form login answers 302 with the session cookie.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("build an HTTP client")?;
        let response = client
            .post(format!("{base}/api/v1/security/login"))
            .json(&serde_json::json!({
                "username": username,
                "password": password,
                "provider": "db",
                "refresh": false,
            }))
            .send()
            .await
            .with_context(|| format!("log in to Superset at {base}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "Superset refused the login of {username} ({status}): {}",
                response.text().await.unwrap_or_default()
            );
        }
        let token: Token = response.json().await.context("read the login token")?;
        Ok(Self {
            client,
            base: base.to_owned(),
            token: token.access_token,
            session: tokio::sync::OnceCell::new(),
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }

    /// Logs in through the login form (CSRF token from the API), keeping the cookie.
    async fn session(&self) -> anyhow::Result<&str> {
        self.session
            .get_or_try_init(|| async {
                let response = self
                    .client
                    .get(format!("{}/api/v1/security/csrf_token/", self.base))
                    .bearer_auth(&self.token)
                    .send()
                    .await
                    .context("GET the CSRF token")?;
                let cookie =
                    session_cookie(&response).context("no session cookie with the CSRF token")?;
                let csrf: Value = response.json().await.context("read the CSRF token")?;
                let csrf = csrf["result"].as_str().context("CSRF token")?.to_owned();
                let response = self
                    .client
                    .post(format!("{}/login/", self.base))
                    .header(reqwest::header::COOKIE, format!("session={cookie}"))
                    .form(&[
                        ("csrf_token", csrf.as_str()),
                        ("username", self.username.as_str()),
                        ("password", self.password.as_str()),
                    ])
                    .send()
                    .await
                    .context("POST the login form")?;
                let status = response.status();
                match session_cookie(&response) {
                    Some(cookie) if status.is_redirection() => Ok(cookie),
                    _ => bail!("the login form refused {} ({status})", self.username),
                }
            })
            .await
            .map(String::as_str)
    }

    /// The payload of a legacy chart (deck.gl) from `/superset/explore_json/`, computed
    /// from the chart's saved parameters; Superset's errors become an error.
    pub async fn legacy_chart_data(&self, id: i64) -> anyhow::Result<Value> {
        let session = self.session().await?;
        let form_data = serde_json::json!({ "slice_id": id }).to_string();
        let response = self
            .client
            .get(format!("{}/superset/explore_json/", self.base))
            .query(&[("form_data", form_data.as_str()), ("force", "true")])
            .header(reqwest::header::COOKIE, format!("session={session}"))
            .send()
            .await
            .context("GET /superset/explore_json/")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if let Some(error) = body.pointer("/errors/0/message") {
            bail!(
                "Superset answered {status}: {}",
                error.as_str().unwrap_or_default()
            );
        }
        if !status.is_success() {
            bail!("Superset answered {status}: {body}");
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    /// The charts on the dashboard `slug`.
    pub async fn dashboard_charts(&self, slug: &str) -> anyhow::Result<Vec<DashboardChart>> {
        let (status, body) = self
            .get(&format!("/api/v1/dashboard/{slug}/charts"))
            .await?;
        if !status.is_success() {
            bail!("Superset has no dashboard {slug:?} ({status}): {body}");
        }
        serde_json::from_value(body["result"].clone()).context("read the dashboard's charts")
    }

    /// The chart's data, queried with the query context saved with it; an error carries
    /// Superset's own message.
    pub async fn chart_data(&self, id: i64) -> anyhow::Result<Vec<QueryResult>> {
        let (status, body) = self
            .get(&format!("/api/v1/chart/{id}/data/?force=true"))
            .await?;
        if !status.is_success() {
            let message = body
                .get("message")
                .or_else(|| body.pointer("/errors/0/message"))
                .map_or_else(
                    || body.to_string(),
                    |m| m.as_str().map_or(m.to_string(), str::to_owned),
                );
            bail!("Superset answered {status}: {message}");
        }
        serde_json::from_value(body["result"].clone()).context("read the chart's data")
    }
}

/// The value of the `session` cookie a response sets.
fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}
