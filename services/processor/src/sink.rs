//! Writing batches into `flight_data`, idempotently, at the speed of `COPY`.
//!
//! [`Rows::insert`] writes a batch in one transaction and returns how many rows were new;
//! the others were already there (a replay, a redelivery after a crash) or repeated within
//! the batch, and change nothing. The primary key `(icao24, time_position)` decides.
//!
//! # How a batch is written, and why
//!
//! [`WriteMethod::Optimistic`], the default: keys repeated inside the batch are dropped
//! in memory, then the rows go by binary `COPY` straight into `flight_data`. `COPY` has
//! no `ON CONFLICT`, so a batch that collides with rows already in the table (a unique
//! violation, SQLSTATE 23505) rolls back and is written again by the conflict-safe
//! [`WriteMethod::Staged`] path: binary `COPY` into a per-connection temporary table, then
//! one `INSERT … SELECT … ON CONFLICT DO NOTHING`. Either way the batch is one
//! transaction and the counts are exact (the `COPY`'s row count, or the `INSERT`'s).
//! After a collision the next batches go straight to the staged path, until one of them
//! turns out all new or [`RETRY_OPTIMISTIC_EVERY`] batches have gone by: a live feed
//! repeating positions, or the redelivery after a crash, then costs one wasted `COPY`,
//! not one per batch.
//!
//! Measured with `cargo xtask bench` (stage `sink`: the write path fed from memory, batches
//! of 5,000 one after the other; 1,000,000 rows, PostgreSQL 15, 2 cores, medians of three
//! interleaved rounds, each against a raw binary `COPY` of the same rows in its round):
//!
//! | method | rows/s × raw `COPY` | PostgreSQL CPU per row × raw `COPY` |
//! |---|---:|---:|
//! | optimistic `COPY` | 0.85 | 1.08 |
//! | optimistic `COPY`, the same rows again (all duplicates: staged after one collision) | 1.09 | 0.81 |
//! | staged (`COPY` to a temporary table + `INSERT … ON CONFLICT`) | 0.54 | 1.7 |
//! | `INSERT … SELECT FROM UNNEST … ON CONFLICT` (this crate's first) | 0.48 | 2.0 |
//!
//! `ON CONFLICT` inserts row by row, each with a speculative insertion, where `COPY`
//! inserts many rows per heap and WAL operation; staging the rows first does not change
//! that. Only a `COPY` into `flight_data` itself reaches the limit, so that is the path
//! whenever the batch is new. The fallback is the staged path: it costs PostgreSQL less than
//! the `UNNEST` statement, and takes any number of colliding rows in one statement.

mod binary;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flight_model::FlightRecord;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

use crate::{Config, Error, Result};

/// The columns every write names, in the order [`Rows`] encodes them.
macro_rules! columns {
    () => {
        "icao24, callsign, origin_country, time_position, last_contact, longitude, latitude, \
         baro_altitude, on_ground, velocity, true_track, vertical_rate, geo_altitude, squawk, \
         spi, position_source, category, snapshot_time"
    };
}
const COLUMNS: &str = columns!();
/// How many columns that is.
const FIELDS: i16 = 18;

/// Creates the staging table of [`WriteMethod::Staged`] unless this connection has it:
/// temporary, so private to the connection, unlogged and without indexes or constraints;
/// emptied at every commit.
const STAGE: &str = concat!(
    "SET LOCAL client_min_messages = warning; ",
    "CREATE TEMPORARY TABLE IF NOT EXISTS flight_data_stage ON COMMIT DELETE ROWS AS SELECT ",
    columns!(),
    " FROM flight_data WITH NO DATA"
);
/// Moves the staged batch into `flight_data`, skipping keys it already holds.
const FROM_STAGE: &str = concat!(
    "INSERT INTO flight_data (",
    columns!(),
    ") SELECT ",
    columns!(),
    " FROM flight_data_stage ON CONFLICT (icao24, time_position) DO NOTHING"
);

/// A batch of valid records, column by column.
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

/// How [`Rows::insert_with`] writes a batch. All three are idempotent and count exactly;
/// they differ only in speed (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteMethod {
    /// One `INSERT … SELECT FROM UNNEST($1, … $18) ON CONFLICT DO NOTHING`: every
    /// column bound as one array.
    Unnest,
    /// Binary `COPY` into a temporary table, then `INSERT … SELECT … ON CONFLICT DO NOTHING`.
    Staged,
    /// Binary `COPY` straight into `flight_data`; [`WriteMethod::Staged`] when it collides.
    Optimistic,
}

/// After a collision, batches skip the optimistic `COPY` until this many have gone by.
pub const RETRY_OPTIMISTIC_EVERY: u32 = 16;

/// Batches left before the optimistic `COPY` is tried again (0: try it now).
///
/// NB: process-wide on purpose: it is a hint about the data (is this stream replaying
/// rows the table has?), not about a connection, and a wrong hint costs speed only.
static OPTIMISM_COOLDOWN: AtomicU32 = AtomicU32::new(0);

/// Bytes encoded before they are sent (about 400 rows).
///
/// NB: small enough that PostgreSQL starts on a batch while the rest is still being
/// encoded, so the two overlap; large enough that a batch is a handful of writes. It
/// also bounds the memory of a batch in flight.
const SEND_CHUNK: usize = 64 * 1024;

/// Applies `$op` to every column of a [`Rows`].
macro_rules! each_column {
    ($rows:expr, $op:ident $(, $arg:expr)?) => {{
        let r = $rows;
        r.icao24.$op($($arg)?);
        r.callsign.$op($($arg)?);
        r.origin_country.$op($($arg)?);
        r.time_position.$op($($arg)?);
        r.last_contact.$op($($arg)?);
        r.longitude.$op($($arg)?);
        r.latitude.$op($($arg)?);
        r.baro_altitude.$op($($arg)?);
        r.on_ground.$op($($arg)?);
        r.velocity.$op($($arg)?);
        r.true_track.$op($($arg)?);
        r.vertical_rate.$op($($arg)?);
        r.geo_altitude.$op($($arg)?);
        r.squawk.$op($($arg)?);
        r.spi.$op($($arg)?);
        r.position_source.$op($($arg)?);
        r.category.$op($($arg)?);
        r.snapshot_time.$op($($arg)?);
    }};
}

impl Rows {
    /// An empty batch with room for `capacity` rows.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut rows = Self::default();
        each_column!(&mut rows, reserve, capacity);
        rows
    }

    /// Removes every row, keeping the memory for the next batch.
    pub fn clear(&mut self) {
        each_column!(self, clear);
    }

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

    /// Writes every row in one transaction; returns how many were new.
    pub async fn insert(&self, pool: &PgPool) -> Result<u64> {
        self.insert_with(pool, WriteMethod::Optimistic).await
    }

    /// Writes every row in one transaction with `method`; returns how many were new.
    pub async fn insert_with(&self, pool: &PgPool, method: WriteMethod) -> Result<u64> {
        if self.is_empty() {
            return Ok(0);
        }
        match method {
            WriteMethod::Unnest => self.insert_unnest(pool).await,
            WriteMethod::Staged => self.insert_staged(pool).await,
            WriteMethod::Optimistic => self.insert_optimistic(pool).await,
        }
    }

    async fn insert_optimistic(&self, pool: &PgPool) -> Result<u64> {
        let cooldown = OPTIMISM_COOLDOWN.load(Ordering::Relaxed);
        if cooldown > 0 {
            let inserted = self.insert_staged(pool).await?;
            // A batch that was all new would have gone through `COPY`: back to it.
            let next = if inserted == self.len() as u64 {
                0
            } else {
                cooldown - 1
            };
            OPTIMISM_COOLDOWN.store(next, Ordering::Relaxed);
            return Ok(inserted);
        }
        let unique = self.first_of_each_key();
        let mut tx = pool.begin().await?;
        let copied = self.copy_in(&mut tx, "flight_data", &unique).await;
        match copied {
            Ok(inserted) => {
                tx.commit().await?;
                Ok(inserted)
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                tx.rollback().await?;
                OPTIMISM_COOLDOWN.store(RETRY_OPTIMISTIC_EVERY, Ordering::Relaxed);
                tracing::debug!(
                    rows = self.len(),
                    "the batch collides with rows already written: staged write"
                );
                self.insert_staged(pool).await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn insert_staged(&self, pool: &PgPool) -> Result<u64> {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(STAGE).execute(&mut *tx).await?;
        let all: Vec<usize> = (0..self.len()).collect();
        self.copy_in(&mut tx, "flight_data_stage", &all).await?;
        let done = sqlx::query(FROM_STAGE).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Indices of the first row of every key, in order: what a `COPY` may send.
    fn first_of_each_key(&self) -> Vec<usize> {
        let mut seen = HashSet::with_capacity(self.len());
        (0..self.len())
            .filter(|&i| seen.insert((self.icao24[i].as_str(), self.time_position[i])))
            .collect()
    }

    /// Binary `COPY` of the rows at `indices` into `table` (which has [`COLUMNS`]) on
    /// `conn`; returns how many rows PostgreSQL stored. No conflict handling: a
    /// duplicate key fails the statement.
    pub async fn copy_in(
        &self,
        conn: &mut PgConnection,
        table: &str,
        indices: &[usize],
    ) -> Result<u64, sqlx::Error> {
        let mut copy = conn
            .copy_in_raw(&format!(
                "COPY {table} ({COLUMNS}) FROM STDIN (FORMAT binary)"
            ))
            .await?;
        let mut buf = Vec::with_capacity(SEND_CHUNK + 1024);
        buf.extend_from_slice(binary::HEADER);
        for &i in indices {
            self.encode(i, &mut buf);
            if buf.len() >= SEND_CHUNK {
                if let Err(e) = copy.send(buf.as_slice()).await {
                    // The server may already have rejected the data: its error is
                    // the one that says why.
                    return Err(copy.finish().await.err().unwrap_or(e));
                }
                buf.clear();
            }
        }
        buf.extend_from_slice(binary::TRAILER);
        copy.send(buf).await?;
        copy.finish().await
    }

    /// Appends row `i` in binary `COPY` format, columns in [`COLUMNS`] order.
    fn encode(&self, i: usize, buf: &mut Vec<u8>) {
        let mut row = binary::RowWriter::start(buf, FIELDS);
        row.text(&self.icao24[i]);
        row.opt_text(self.callsign[i].as_deref());
        row.opt_text(self.origin_country[i].as_deref());
        row.timestamptz(self.time_position[i]);
        row.timestamptz(self.last_contact[i]);
        row.float8(self.longitude[i]);
        row.float8(self.latitude[i]);
        row.opt_float8(self.baro_altitude[i]);
        row.bool(self.on_ground[i]);
        row.opt_float8(self.velocity[i]);
        row.opt_float8(self.true_track[i]);
        row.opt_float8(self.vertical_rate[i]);
        row.opt_float8(self.geo_altitude[i]);
        row.opt_text(self.squawk[i].as_deref());
        row.bool(self.spi[i]);
        row.int2(self.position_source[i]);
        row.opt_int2(self.category[i]);
        row.timestamptz(self.snapshot_time[i]);
    }

    /// The rows in binary `COPY` format, header and trailer included (for tests and
    /// the bench: what [`Rows::copy_in`] sends).
    pub fn to_binary_copy(&self) -> Vec<u8> {
        let mut buf = binary::HEADER.to_vec();
        for i in 0..self.len() {
            self.encode(i, &mut buf);
        }
        buf.extend_from_slice(binary::TRAILER);
        buf
    }

    async fn insert_unnest(&self, pool: &PgPool) -> Result<u64> {
        let done = sqlx::query(UNNEST)
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

/// [`WriteMethod::Unnest`]: each column one array parameter, so a batch is one statement.
const UNNEST: &str = "\
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
