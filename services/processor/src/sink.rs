//! Writing batches into `flight_data`: one `INSERT … SELECT FROM UNNEST(…)` per batch.
//!
//! NB: UNNEST sends each column as one array parameter, so a batch of thousands of rows
//! is a single round trip and a single statement (one transaction), with no per-row
//! statements. `ON CONFLICT DO NOTHING` keeps replays idempotent, and the affected-row
//! count tells inserted rows from duplicates.

use std::time::Duration;

use flight_model::FlightRecord;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};
use tokio::sync::watch;

use crate::{Config, Error, Result};

const INSERT: &str = "\
INSERT INTO flight_data (icao24, callsign, origin_country, time_position, last_contact,
    longitude, latitude, baro_altitude, on_ground, velocity, true_track, vertical_rate,
    geo_altitude, squawk, spi, position_source, category, snapshot_time)
SELECT icao24, callsign, origin_country, to_timestamp(time_position), to_timestamp(last_contact),
    longitude, latitude, baro_altitude, on_ground, velocity, true_track, vertical_rate,
    geo_altitude, squawk, spi, position_source, category, to_timestamp(snapshot_time)
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::float8[],
    $7::float8[], $8::float8[], $9::bool[], $10::float8[], $11::float8[], $12::float8[],
    $13::float8[], $14::text[], $15::bool[], $16::int2[], $17::int2[], $18::int8[])
    AS u(icao24, callsign, origin_country, time_position, last_contact, longitude, latitude,
        baro_altitude, on_ground, velocity, true_track, vertical_rate, geo_altitude, squawk,
        spi, position_source, category, snapshot_time)
ON CONFLICT (icao24, time_position) DO NOTHING";

/// A batch of valid records, column by column, ready to bind as arrays.
#[derive(Debug, Default)]
pub struct Rows {
    icao24: Vec<String>,
    callsign: Vec<Option<String>>,
    origin_country: Vec<Option<String>>,
    time_position: Vec<i64>,
    last_contact: Vec<i64>,
    longitude: Vec<f64>,
    latitude: Vec<f64>,
    baro_altitude: Vec<Option<f64>>,
    on_ground: Vec<bool>,
    velocity: Vec<Option<f64>>,
    true_track: Vec<Option<f64>>,
    vertical_rate: Vec<Option<f64>>,
    geo_altitude: Vec<Option<f64>>,
    squawk: Vec<Option<String>>,
    spi: Vec<bool>,
    position_source: Vec<i16>,
    category: Vec<Option<i16>>,
    snapshot_time: Vec<i64>,
}

impl Rows {
    /// Appends one record, moving its strings.
    pub fn push(&mut self, r: FlightRecord) {
        self.icao24.push(r.icao24);
        self.callsign.push(r.callsign);
        self.origin_country.push(r.origin_country);
        self.time_position.push(r.time_position);
        self.last_contact.push(r.last_contact);
        self.longitude.push(r.longitude);
        self.latitude.push(r.latitude);
        self.baro_altitude.push(r.baro_altitude);
        self.on_ground.push(r.on_ground);
        self.velocity.push(r.velocity);
        self.true_track.push(r.true_track);
        self.vertical_rate.push(r.vertical_rate);
        self.geo_altitude.push(r.geo_altitude);
        self.squawk.push(r.squawk);
        self.spi.push(r.spi);
        self.position_source.push(r.position_source);
        self.category.push(r.category);
        self.snapshot_time.push(r.snapshot_time);
    }

    /// How many rows the batch holds.
    pub fn len(&self) -> usize {
        self.icao24.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.icao24.is_empty()
    }

    /// Inserts every row in one statement; returns how many were new.
    pub async fn insert(&self, pool: &PgPool) -> Result<u64> {
        if self.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(INSERT)
            .bind(&self.icao24)
            .bind(&self.callsign)
            .bind(&self.origin_country)
            .bind(&self.time_position)
            .bind(&self.last_contact)
            .bind(&self.longitude)
            .bind(&self.latitude)
            .bind(&self.baro_altitude)
            .bind(&self.on_ground)
            .bind(&self.velocity)
            .bind(&self.true_track)
            .bind(&self.vertical_rate)
            .bind(&self.geo_altitude)
            .bind(&self.squawk)
            .bind(&self.spi)
            .bind(&self.position_source)
            .bind(&self.category)
            .bind(&self.snapshot_time)
            .execute(pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Connects to PostgreSQL, retrying with backoff and saying plainly what is unreachable.
pub async fn connect(config: &Config, mut stop: watch::Receiver<bool>) -> Result<PgPool> {
    use retry::{Backoff, sleep_unless_stopped};
    let mut attempt = 0;
    loop {
        // NB: a plain connection first: a pool would only report "timed out" where this
        // says "connection refused" or "password authentication failed".
        let result = sqlx::PgConnection::connect(&config.database_url).await;
        match result {
            Ok(probe) => {
                let _ = probe.close().await;
                let pool = PgPoolOptions::new()
                    .max_connections(config.db_max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(&config.database_url)
                    .await?;
                return Ok(pool);
            }
            Err(error) => {
                attempt += 1;
                let delay = Backoff::SERVICE.random_delay(attempt);
                tracing::warn!(
                    database = %config.redacted_database_url(),
                    %error,
                    retry_in = ?delay,
                    "postgres unreachable"
                );
                if !sleep_unless_stopped(delay, &mut stop).await {
                    return Err(Error::Interrupted("postgres"));
                }
            }
        }
    }
}

/// Applies `migrations/` (embedded at compile time).
pub async fn migrate(pool: &PgPool) -> Result<()> {
    sqlx::migrate!("./migrations").run(pool).await?;
    Ok(())
}
