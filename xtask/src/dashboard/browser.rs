//! The dashboard as a person sees it: headless Chromium logs in through Superset's login
//! page, opens the dashboard, waits until every chart has rendered without an error box
//! and saves a PNG screenshot.
//!
//! NB: Chromium is driven through chromedriver (W3C WebDriver) with the `fantoccini`
//! crate: Debian ships chromedriver built from the same sources as its chromium
//! (`chromium-driver`), so the two always match, and fantoccini's dependencies (hyper,
//! serde) are already in the tree, where a DevTools-protocol crate (chromiumoxide,
//! headless_chrome) compiles megabytes of generated protocol bindings.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::{ClientBuilder, Locator};
use localstack::process::{Managed, wait_until};
use serde::Deserialize;

use crate::skips::in_ci;

/// How to get the browser.
const INSTALL: &str = "apt-get install chromium chromium-driver";
/// How long the charts may take to render.
const RENDER_TIMEOUT: Duration = Duration::from_secs(90);

/// What the browser test saw.
#[derive(Debug)]
pub enum Outcome {
    /// Every chart rendered; the screenshot is at this path.
    Passed {
        /// The PNG.
        screenshot: PathBuf,
        /// Chart titles, as rendered.
        charts: Vec<String>,
    },
    /// chromium or chromedriver is missing (outside CI): the reason.
    Skipped(String),
}

/// The state of every chart on the page, read by [`CHARTS_JS`].
#[derive(Debug, Deserialize)]
struct PageState {
    charts: Vec<ChartState>,
}

#[derive(Debug, Deserialize)]
struct ChartState {
    title: String,
    loading: bool,
    error: Option<String>,
    empty: bool,
    drawn: bool,
}

/// Reads the dashboard's chart holders: title, spinner, error alert, empty state, and
/// whether something was drawn (an ECharts or deck.gl canvas with a size).
const CHARTS_JS: &str = r#"
const holders = [...document.querySelectorAll('.dashboard-component-chart-holder')];
return JSON.stringify({ charts: holders.map(h => {
  const title = (h.querySelector('.header-title, [data-test="editable-title"]') || {}).textContent || '';
  const error = h.querySelector('.ant-alert-error, [data-test="alert-error"], .error-alert, [role="alert"]');
  const canvas = [...h.querySelectorAll('canvas')].some(c => c.width > 0 && c.height > 0);
  return {
    title: title.trim(),
    loading: !!h.querySelector('.loading, [data-test="loading-indicator"]'),
    error: error ? error.textContent.trim().slice(0, 300) : null,
    empty: !!h.querySelector('.ant-empty, [data-test="no-results"], .empty-state'),
    drawn: canvas || !!h.querySelector('svg.echarts, .echarts-for-react canvas'),
  };
})});
"#;

/// The chromium binary: `FLIGHTDECK_CHROMIUM`, Debian's real binary, else `chromium` on PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FLIGHTDECK_CHROMIUM") {
        return Some(path.into());
    }
    // NB: /usr/bin/chromium is a shell wrapper; chromedriver talks to the real binary.
    let debian = Path::new("/usr/lib/chromium/chromium");
    if debian.is_file() {
        return Some(debian.to_owned());
    }
    localstack::tools::on_path("chromium")
        .or_else(|| localstack::tools::on_path("chromium-browser"))
}

/// Logs in as `user`, opens `dashboard_url`, waits for every chart and saves `screenshot`.
/// `expected` are the chart titles that must be on the page; `nonempty` those that must
/// show data.
pub async fn check(
    base_url: &str,
    dashboard_url: &str,
    user: &str,
    password: &str,
    expected: &[String],
    nonempty: &[&str],
    screenshot: &Path,
) -> anyhow::Result<Outcome> {
    let (Some(chromium), Some(driver)) = (chromium(), localstack::tools::on_path("chromedriver"))
    else {
        let why = format!("chromium or chromedriver not found: {INSTALL}");
        if in_ci() {
            bail!("the browser test cannot run under CI=true: {why}");
        }
        return Ok(Outcome::Skipped(why));
    };
    let dir = screenshot
        .parent()
        .context("screenshot path has a parent")?;
    std::fs::create_dir_all(dir)?;
    let port = localstack::free_port()?;
    let mut cmd = Command::new(&driver);
    cmd.arg(format!("--port={port}"));
    let mut chromedriver = Managed::spawn("chromedriver", cmd, &dir.join("chromedriver.log"))?;
    wait_until(
        &mut chromedriver,
        "chromedriver",
        Duration::from_secs(20),
        || localstack::port_open(port),
    )?;
    let profile = tempfile::tempdir().context("create a browser profile directory")?;
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), "chrome".into());
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1600,1100",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .with_context(|| format!("start {} through chromedriver", chromium.display()))?;
    let result = drive(
        &client,
        base_url,
        dashboard_url,
        user,
        password,
        expected,
        nonempty,
        screenshot,
    )
    .await;
    client.close().await.ok();
    chromedriver.stop();
    result
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    client: &fantoccini::Client,
    base_url: &str,
    dashboard_url: &str,
    user: &str,
    password: &str,
    expected: &[String],
    nonempty: &[&str],
    screenshot: &Path,
) -> anyhow::Result<Outcome> {
    // Log in through the form, as a person does.
    client.goto(&format!("{base_url}/login/")).await?;
    let username = client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("input#username, input[name='username']"))
        .await
        .context("the login page shows no username field")?;
    username.send_keys(user).await?;
    client
        .find(Locator::Css("input#password, input[name='password']"))
        .await
        .context("the login page shows no password field")?
        .send_keys(password)
        .await?;
    client
        .find(Locator::Css("button[type='submit']"))
        .await
        .context("the login page shows no submit button")?
        .click()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.current_url().await?.path().starts_with("/login") {
        if Instant::now() > deadline {
            let page = client.find(Locator::Css("body")).await?.text().await?;
            bail!(
                "logging in as {user} failed: still on the login page after 30 s; it says: {}",
                page.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    client.goto(dashboard_url).await?;
    let deadline = Instant::now() + RENDER_TIMEOUT;
    let state = loop {
        let json = client.execute(CHARTS_JS, vec![]).await?;
        let state: PageState = serde_json::from_str(json.as_str().unwrap_or("{}"))
            .with_context(|| format!("read the page's chart state {json}"))?;
        let errors: Vec<String> = state
            .charts
            .iter()
            .filter_map(|c| c.error.as_ref().map(|e| format!("{:?}: {e}", c.title)))
            .collect();
        if !errors.is_empty() {
            save(client, screenshot).await?;
            bail!(
                "the dashboard shows an error box (screenshot {}):\n  {}",
                screenshot.display(),
                errors.join("\n  ")
            );
        }
        let settled = state.charts.len() >= expected.len()
            && state
                .charts
                .iter()
                .all(|c| !c.loading && (c.drawn || c.empty));
        if settled {
            break state;
        }
        if Instant::now() > deadline {
            save(client, screenshot).await?;
            bail!(
                "the dashboard's charts did not all render within {RENDER_TIMEOUT:?} \
                 (screenshot {}): {:?}",
                screenshot.display(),
                state.charts
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Let the last frame (map tiles, animations) settle before the picture.
    tokio::time::sleep(Duration::from_secs(2)).await;
    save(client, screenshot).await?;
    let titles: Vec<String> = state.charts.iter().map(|c| c.title.clone()).collect();
    for title in expected {
        if !titles.contains(title) {
            bail!("the dashboard has no chart {title:?}; it shows {titles:?}");
        }
    }
    for title in nonempty {
        if state
            .charts
            .iter()
            .any(|c| c.title == *title && (c.empty || !c.drawn))
        {
            bail!(
                "the chart {title:?} is empty in the browser (screenshot {})",
                screenshot.display()
            );
        }
    }
    Ok(Outcome::Passed {
        screenshot: screenshot.to_owned(),
        charts: titles,
    })
}

async fn save(client: &fantoccini::Client, path: &Path) -> anyhow::Result<()> {
    let png = client.screenshot().await.context("take a screenshot")?;
    std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
}
