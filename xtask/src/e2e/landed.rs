//! What landed in PostgreSQL and the DLQ, read back and checked: the assertions every
//! end-to-end run shares, whatever it runs on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use flight_model::{StatesResponse, validate};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use crate::pipeline::Observer;

/// What the fixtures say should land, computed from the files alone.
#[derive(Debug, Default)]
pub struct Expected {
    /// Positioned vectors the producer sends.
    pub produced: usize,
    /// Distinct `(icao24, time_position)` among the valid ones.
    pub rows: usize,
    /// Valid records per origin country (`None`: no country).
    pub per_country: BTreeMap<Option<String>, usize>,
    /// Invalid records.
    pub rejected: usize,
}

impl Expected {
    /// Decodes and validates the fixtures with `flight-model`.
    pub fn from_fixtures(files: &[PathBuf]) -> anyhow::Result<Self> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Self::default();
        for file in files {
            let body = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
            let records = StatesResponse::from_json(&body)
                .with_context(|| format!("decode {}", file.display()))?
                .into_records()
                .records;
            out.produced += records.len();
            for r in records {
                if validate(&r, now).is_err() {
                    out.rejected += 1;
                } else if seen.insert((r.icao24.clone(), r.time_position)) {
                    out.rows += 1;
                    *out.per_country.entry(r.origin_country).or_default() += 1;
                }
            }
        }
        Ok(out)
    }
}

/// One `flight_data` row as the snapshot shows it.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Row {
    icao24: String,
    callsign: Option<String>,
    origin_country: Option<String>,
    time_position: String,
    last_contact: String,
    longitude: f64,
    latitude: f64,
    baro_altitude: Option<f64>,
    on_ground: bool,
    velocity: Option<f64>,
    true_track: Option<f64>,
    vertical_rate: Option<f64>,
    geo_altitude: Option<f64>,
    squawk: Option<String>,
    spi: bool,
    position_source: i16,
    category: Option<i16>,
    snapshot_time: String,
    ingested_at: String,
}

/// One DLQ record as the snapshot shows it.
#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadLetter {
    key: String,
    reason: String,
    detail: String,
    source_topic: String,
    value: String,
}

/// Everything read back after a run.
#[derive(Debug, Serialize)]
pub struct Landed {
    /// Rows in `flight_data`.
    pub rows: i64,
    /// Rows per origin country.
    pub per_country: BTreeMap<String, i64>,
    /// The first rows by key.
    pub first_rows: Vec<Row>,
    /// Every DLQ record, sorted.
    pub dlq: Vec<DeadLetter>,
    /// md5 of the whole table in key order, `ingested_at` included.
    #[serde(skip)]
    pub table_digest: String,
}

const ROW_SQL: &str = "SELECT icao24, callsign, origin_country,
    to_char(time_position AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS time_position,
    to_char(last_contact AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_contact,
    longitude, latitude, baro_altitude, on_ground, velocity, true_track, vertical_rate,
    geo_altitude, squawk, spi, position_source, category,
    to_char(snapshot_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS snapshot_time,
    ingested_at::text AS ingested_at
FROM flight_data ORDER BY icao24, time_position LIMIT 6";

/// Where each DLQ partition ended at some moment: a run reads only what came after.
pub type DlqOffsets = BTreeMap<i32, i64>;

/// The current end of every DLQ partition (on a cluster that already saw other runs).
pub fn dlq_end_offsets(bootstrap_servers: &str) -> anyhow::Result<DlqOffsets> {
    let topic = flight_model::DLQ_TOPIC;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut out = DlqOffsets::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        out.insert(p.id(), consumer.fetch_watermarks(topic, p.id(), timeout)?.1);
    }
    Ok(out)
}

impl Landed {
    /// Reads the table through `observer` and the whole DLQ from `bootstrap_servers`.
    pub async fn read(observer: &Observer, bootstrap_servers: &str) -> anyhow::Result<Self> {
        Self::read_since(observer, bootstrap_servers, &DlqOffsets::new()).await
    }

    /// Like [`Landed::read`], with only the DLQ records after `since`.
    pub async fn read_since(
        observer: &Observer,
        bootstrap_servers: &str,
        since: &DlqOffsets,
    ) -> anyhow::Result<Self> {
        let pool = &observer.pool;
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM flight_data")
            .fetch_one(pool)
            .await?;
        let per_country: Vec<(Option<String>, i64)> = sqlx::query_as(
            "SELECT origin_country, count(*) FROM flight_data GROUP BY 1 ORDER BY 1 NULLS FIRST",
        )
        .fetch_all(pool)
        .await?;
        let first_rows = sqlx::query_as::<_, Row>(ROW_SQL).fetch_all(pool).await?;
        let table_digest: String = sqlx::query_scalar(
            "SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY icao24, time_position)), '') FROM flight_data t",
        )
        .fetch_one(pool)
        .await?;
        let mut dlq: Vec<DeadLetter> = read_dlq(bootstrap_servers, since)?
            .into_iter()
            .map(DeadLetter::from)
            .collect();
        dlq.sort();
        Ok(Self {
            rows,
            per_country: per_country
                .into_iter()
                .map(|(c, n)| (c.unwrap_or_else(|| "(none)".into()), n))
                .collect(),
            first_rows,
            dlq,
            table_digest,
        })
    }

    /// Counts and invariants against what the fixtures say.
    pub fn assert_matches(&self, expected: &Expected) -> anyhow::Result<()> {
        ensure!(
            self.rows == expected.rows as i64,
            "flight_data holds {} rows, the fixtures have {} valid positions",
            self.rows,
            expected.rows
        );
        let want: BTreeMap<String, i64> = expected
            .per_country
            .iter()
            .map(|(c, n)| (c.clone().unwrap_or_else(|| "(none)".into()), *n as i64))
            .collect();
        ensure!(
            self.per_country == want,
            "rows per country {:?}, the fixtures say {want:?}",
            self.per_country
        );
        ensure!(
            self.dlq.len() == expected.rejected,
            "{} DLQ records, the fixtures have {} invalid",
            self.dlq.len(),
            expected.rejected
        );
        Ok(())
    }

    /// After the same input was replayed again: the table is byte for byte what it was
    /// after `first`, and the DLQ received the invalid records once more.
    pub fn assert_replay_changed_nothing(&self, first: &Landed) -> anyhow::Result<()> {
        ensure!(
            self.table_digest == first.table_digest,
            "the second replay changed flight_data ({} rows before, {} after)",
            first.rows,
            self.rows
        );
        ensure!(
            self.dlq.len() == 2 * first.dlq.len(),
            "the second replay dead-lettered {} records, expected {} again",
            self.dlq.len().saturating_sub(first.dlq.len()),
            first.dlq.len()
        );
        Ok(())
    }

    /// Compares with the committed snapshots (`ingested_at` redacted).
    pub fn assert_snapshots(&self) {
        insta::assert_yaml_snapshot!("rows_per_country", (self.rows, &self.per_country));
        insta::assert_yaml_snapshot!("first_rows_by_key", &self.first_rows, {
            "[].ingested_at" => "[timestamp]",
        });
        insta::assert_yaml_snapshot!("dead_letters", &self.dlq);
    }
}

/// One DLQ record as the broker stores it.
#[derive(Debug, Clone)]
pub struct DlqRecord {
    /// The key, as the processor received it.
    pub key: Vec<u8>,
    /// The value, unchanged (or truncated, with `flightdeck.truncated`).
    pub value: Vec<u8>,
    /// The headers naming the reason and the source.
    pub headers: BTreeMap<String, String>,
}

impl From<DlqRecord> for DeadLetter {
    fn from(record: DlqRecord) -> Self {
        let header = |name: &str| record.headers.get(name).cloned().unwrap_or_default();
        DeadLetter {
            key: String::from_utf8_lossy(&record.key).into_owned(),
            reason: header(flight_model::HEADER_REASON),
            detail: header(flight_model::HEADER_DETAIL),
            source_topic: header(flight_model::HEADER_SOURCE_TOPIC),
            value: String::from_utf8_lossy(&record.value).into_owned(),
        }
    }
}

/// Every DLQ record after `since` (every one when `since` is empty), partition by
/// partition; fails when the records there are not all read within a minute.
pub fn read_dlq(bootstrap_servers: &str, since: &DlqOffsets) -> anyhow::Result<Vec<DlqRecord>> {
    let topic = flight_model::DLQ_TOPIC;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", "flightdeck-dlq-reader")
        .set("enable.auto.commit", "false")
        // DLQ records are up to 8 MiB (`max.message.bytes` of flights.dlq).
        .set("fetch.message.max.bytes", "10485760")
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut tpl = TopicPartitionList::new();
    let mut expected = 0;
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
        let start = since.get(&p.id()).copied().unwrap_or(low).max(low);
        expected += high - start;
        tpl.add_partition_offset(topic, p.id(), Offset::Offset(start))?;
    }
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < expected {
        ensure!(
            Instant::now() < deadline,
            "read {} of {expected} DLQ records",
            out.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = message?;
        let headers = m
            .headers()
            .into_iter()
            .flat_map(|h| h.iter())
            .map(|h| {
                let value = String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
                (h.key.to_owned(), value)
            })
            .collect();
        out.push(DlqRecord {
            key: m.key().unwrap_or_default().to_vec(),
            value: m.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    Ok(out)
}
