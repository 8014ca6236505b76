//! The e2e's dashboard step: the replayed data through the real Superset, with the
//! dashboard as code imported as the cluster imports it. Every chart's data, asked from
//! Superset's API, must equal the same aggregate computed in SQL; a real browser must
//! render every chart without an error box (screenshot kept under `target/e2e/`); and a
//! dataset missing a column a chart uses must make the check fail naming that chart, so
//! the check is known to be able to fail.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use localstack::Stack;
use sqlx::PgPool;

use crate::dashboard::instance::ADMIN;
use crate::dashboard::{self, Export, Options, Superset, api::Api, browser, check};

/// The dataset and column the negative check removes, and the chart that must then fail.
const BROKEN: (&str, &str, &str) = (
    "datasets__flightdeck__latest_positions.yaml",
    "origin_country",
    "Flights per origin country",
);

/// Runs the dashboard step against the e2e's stack; `dir` is the run's directory.
pub async fn run(root: &Path, dir: &Path, stack: &Stack, pool: &PgPool) -> anyhow::Result<()> {
    let installed = dashboard::install::ensure(root)?;
    let export = Export::read(root)?;
    stack.postgres.ensure_reader()?;
    let started = Instant::now();
    eprintln!(
        "e2e: starting Superset {} with the dashboard as code",
        dashboard::install::VERSION
    );
    let mut superset = Superset::start(
        &installed,
        &export,
        &Options {
            dir: dir.join("superset"),
            port: localstack::free_port()?,
            database_uri: dashboard::sqlalchemy_uri(&stack.postgres.reader_url()),
        },
    )?;
    superset.wait_ready(Duration::from_secs(180)).await?;
    eprintln!(
        "e2e: Superset serves the dashboard after {}s",
        started.elapsed().as_secs()
    );

    let api = Api::login(&superset.base_url(), ADMIN, &superset.admin_password).await?;
    let checked = check::charts_equal_sql(&api, &export, pool).await?;
    for (chart, rows) in &checked {
        eprintln!("e2e: chart {chart:?}: {rows} row(s), equal to SQL");
    }

    let titles: Vec<String> = export.charts()?.into_iter().map(|c| c.slice_name).collect();
    let screenshot = dir.join("dashboard.png");
    match browser::check(
        &superset.base_url(),
        &superset.dashboard_url(),
        ADMIN,
        &superset.admin_password,
        &titles,
        &[BROKEN.2],
        &screenshot,
    )
    .await?
    {
        browser::Outcome::Passed { screenshot, charts } => eprintln!(
            "e2e: the browser rendered {} chart(s) without an error; screenshot {}",
            charts.len(),
            screenshot.display()
        ),
        browser::Outcome::Skipped(why) => {
            eprintln!("e2e: !!! the browser test was SKIPPED: {why} (CI=true makes this fail)")
        }
    }

    let (dataset, column, chart) = BROKEN;
    superset
        .reimport(&export.without_column(dataset, column)?)
        .context("import the export without a column")?;
    let error = check::charts_equal_sql(&api, &export, pool)
        .await
        .err()
        .with_context(|| format!("the chart check passed with {column} removed from {dataset}"))?;
    let message = format!("{error:#}");
    ensure!(
        message.contains(&format!("chart {chart:?}")),
        "removing {column} from {dataset} failed the check without naming {chart:?}: {message}"
    );
    eprintln!(
        "e2e: without {column} in its dataset the check fails naming {chart:?}, as it must:\n  {}",
        message.lines().nth(1).unwrap_or_default().trim()
    );
    Ok(())
}
