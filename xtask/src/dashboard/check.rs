//! The dashboard shows the truth: every chart's data, as Superset computes it from the
//! chart's saved query, equals the same aggregate written independently in SQL and run
//! straight against PostgreSQL.
//!
//! Each chart of the export needs an entry in [`EXPECTED`]: a chart added without one
//! fails the check, so no chart goes unchecked. A chart Superset cannot compute (a column
//! missing from its dataset, a broken metric) fails naming the chart.

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use sqlx::PgPool;

use super::api::{Api, QueryResult};
use super::export::Export;
use super::instance::SLUG;

/// The aggregate a chart must show: the columns of Superset's answer to compare, and SQL
/// returning exactly those columns (numbers as `float8`), in any row order.
struct Expected {
    key: &'static str,
    /// Which endpoint the browser loads this chart from.
    source: Source,
    columns: &'static [&'static str],
    sql: &'static str,
}

/// Where a chart's data comes from.
#[derive(Clone, Copy)]
enum Source {
    /// `/api/v1/chart/{id}/data` with the saved query context.
    QueryContext,
    /// The legacy `/superset/explore_json/` of deck.gl charts: `data.features[].position`
    /// as `[longitude, latitude]`, compared as `(latitude, longitude)`.
    DeckPositions,
}

/// `head`, the window of the latest-positions dataset (the hour before the newest
/// snapshot), then `tail`, as one `&'static str`.
macro_rules! const_format_window {
    ($head:literal, $tail:literal) => {
        concat!(
            $head,
            "snapshot_time > (SELECT max(snapshot_time) FROM flight_data) - interval '1 hour'",
            $tail
        )
    };
}

const EXPECTED: &[Expected] = &[
    Expected {
        key: "charts__flights_per_origin_country.yaml",
        source: Source::QueryContext,
        columns: &["origin_country", "aircraft"],
        // Distinct aircraft per country, not the dataset's DISTINCT ON: the same number
        // reached another way.
        sql: const_format_window!(
            "SELECT origin_country, count(DISTINCT icao24)::float8 FROM flight_data WHERE ",
            " GROUP BY 1"
        ),
    },
    Expected {
        key: "charts__positions.yaml",
        source: Source::DeckPositions,
        columns: &["latitude", "longitude"],
        // The row of each aircraft with no later row in the window.
        sql: const_format_window!(
            "SELECT latitude, longitude FROM flight_data f WHERE ",
            " AND NOT EXISTS (SELECT 1 FROM flight_data g WHERE g.icao24 = f.icao24 \
              AND g.time_position > f.time_position AND g.snapshot_time > \
              (SELECT max(snapshot_time) FROM flight_data) - interval '1 hour')"
        ),
    },
    Expected {
        key: "charts__rows_landed.yaml",
        source: Source::QueryContext,
        columns: &["ingested_at", "rows"],
        sql: "SELECT (extract(epoch FROM date_trunc('minute', ingested_at)) * 1000)::float8, \
              count(*)::float8 FROM flight_data GROUP BY 1",
    },
];

/// One row as compared: numbers as `f64`, so `3` from JSON equals `3.0` from SQL.
type Row = Vec<Cell>;

#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Cell {
    Null,
    Number(f64),
    Text(String),
    Other(String),
}

fn cell(value: &Value) -> Cell {
    match value {
        Value::Null => Cell::Null,
        Value::Number(n) => n
            .as_f64()
            .map_or_else(|| Cell::Other(n.to_string()), Cell::Number),
        Value::String(s) => Cell::Text(s.clone()),
        other => Cell::Other(other.to_string()),
    }
}

fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    rows
}

/// What the check saw, per chart title: the number of rows compared.
pub type Checked = BTreeMap<String, usize>;

/// Compares every chart of the dashboard with PostgreSQL; fails naming each chart whose
/// data differs or that Superset could not compute.
pub async fn charts_equal_sql(
    api: &Api,
    export: &Export,
    pool: &PgPool,
) -> anyhow::Result<Checked> {
    let on_dashboard = api.dashboard_charts(SLUG).await?;
    let mut failures = Vec::new();
    let mut checked = Checked::new();
    for chart in export.charts()? {
        let name = &chart.slice_name;
        let Some(expected) = EXPECTED.iter().find(|e| e.key == chart.key) else {
            failures.push(format!(
                "chart {name:?} ({}) has no SQL to compare with: add it to EXPECTED in \
                 xtask/src/dashboard/check.rs",
                chart.key
            ));
            continue;
        };
        let Some(id) = on_dashboard
            .iter()
            .find(|c| &c.slice_name == name)
            .map(|c| c.id)
        else {
            failures.push(format!(
                "chart {name:?} ({}) is not on the dashboard",
                chart.key
            ));
            continue;
        };
        match compare(api, id, expected, pool).await {
            Ok(rows) => {
                checked.insert(name.clone(), rows);
            }
            Err(e) => failures.push(format!("chart {name:?} ({}): {e:#}", chart.key)),
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of the dashboard's charts do not show what PostgreSQL holds:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(checked)
}

async fn compare(api: &Api, id: i64, expected: &Expected, pool: &PgPool) -> anyhow::Result<usize> {
    let shown = match expected.source {
        Source::QueryContext => query_context_rows(api, id, expected).await?,
        Source::DeckPositions => deck_positions(api, id).await?,
    };
    let truth = sorted(sql_rows(pool, expected).await?);
    ensure!(
        !truth.is_empty(),
        "PostgreSQL has no rows for it: nothing to compare (was anything replayed?)"
    );
    ensure!(
        shown == truth,
        "Superset shows {} row(s) {shown:?}, PostgreSQL says {} row(s) {truth:?}",
        shown.len(),
        truth.len()
    );
    Ok(shown.len())
}

async fn deck_positions(api: &Api, id: i64) -> anyhow::Result<Vec<Row>> {
    let payload = api.legacy_chart_data(id).await?;
    let features = payload
        .pointer("/data/features")
        .and_then(Value::as_array)
        .context("Superset's answer has no data.features")?;
    features
        .iter()
        .map(|f| {
            let position = f["position"]
                .as_array()
                .context("a feature without a position")?;
            ensure!(
                position.len() == 2,
                "position {position:?} is not [longitude, latitude]"
            );
            Ok(vec![cell(&position[1]), cell(&position[0])])
        })
        .collect::<anyhow::Result<Vec<Row>>>()
        .map(sorted)
}

async fn query_context_rows(api: &Api, id: i64, expected: &Expected) -> anyhow::Result<Vec<Row>> {
    let results = api.chart_data(id).await?;
    let result: &QueryResult = results
        .first()
        .context("Superset returned no query result")?;
    if let Some(error) = &result.error {
        bail!("Superset could not compute it: {error}");
    }
    for column in expected.columns {
        ensure!(
            result.colnames.iter().any(|c| c == column),
            "Superset's answer has no column {column:?} (it has {:?})",
            result.colnames
        );
    }
    Ok(sorted(
        result
            .data
            .iter()
            .map(|row| {
                expected
                    .columns
                    .iter()
                    .map(|c| cell(row.get(*c).unwrap_or(&Value::Null)))
                    .collect()
            })
            .collect(),
    ))
}

async fn sql_rows(pool: &PgPool, expected: &Expected) -> anyhow::Result<Vec<Row>> {
    use sqlx::{Column, Row as _, TypeInfo};
    let rows = sqlx::query(expected.sql)
        .fetch_all(pool)
        .await
        .with_context(|| format!("run {}", expected.sql))?;
    rows.iter()
        .map(|row| {
            row.columns()
                .iter()
                .map(|column| {
                    let i = column.ordinal();
                    Ok(match column.type_info().name() {
                        "FLOAT8" => row
                            .try_get::<Option<f64>, _>(i)?
                            .map_or(Cell::Null, Cell::Number),
                        "TEXT" => row
                            .try_get::<Option<String>, _>(i)?
                            .map_or(Cell::Null, Cell::Text),
                        other => bail!(
                            "column {} of type {other}: cast it to float8 or text",
                            column.name()
                        ),
                    })
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chart_of_the_export_has_its_sql() {
        let export = Export::read(&crate::project_root()).expect("export");
        let keys: Vec<String> = export
            .charts()
            .expect("charts")
            .into_iter()
            .map(|c| c.key)
            .collect();
        let mut with_sql: Vec<&str> = EXPECTED.iter().map(|e| e.key).collect();
        with_sql.sort_unstable();
        assert_eq!(keys, with_sql);
        assert!(
            EXPECTED
                .iter()
                .take(2)
                .all(|e| e.sql.contains("- interval '1 hour'"))
        );
    }

    #[test]
    fn json_integers_equal_sql_floats() {
        assert_eq!(cell(&serde_json::json!(3)), Cell::Number(3.0));
        assert_eq!(cell(&serde_json::json!(null)), Cell::Null);
        assert_ne!(cell(&serde_json::json!("3")), Cell::Number(3.0));
    }
}
