//! The write path against a real PostgreSQL: every [`WriteMethod`] stores the same rows
//! with exact counts and is idempotent, and the binary `COPY` encoder produces exactly
//! the bytes PostgreSQL itself produces for those rows.

use flight_model::FlightRecord;
use futures::TryStreamExt;
use localstack::Postgres;
use processor::sink::{self, Rows, WriteMethod};
use sqlx::PgPool;
use sqlx::postgres::PgPoolCopyExt;

/// A record with every kind of value the feed sends: NULLs, negative and integral
/// floats, an empty-string-free callsign, a FLARM track.
fn record(i: u32) -> FlightRecord {
    FlightRecord {
        icao24: format!("{:06x}", 0x3c0000 + i),
        callsign: (!i.is_multiple_of(4)).then(|| format!("DLH{i}")),
        origin_country: (!i.is_multiple_of(5)).then(|| "Germany".to_owned()),
        time_position: 1_649_392_000 + i64::from(i),
        last_contact: 1_649_392_010 + i64::from(i),
        longitude: 8.5 + f64::from(i) / 1000.0,
        latitude: -33.25,
        baro_altitude: (!i.is_multiple_of(3)).then_some(-30.48),
        on_ground: i.is_multiple_of(2),
        velocity: Some(230.0),
        true_track: Some(-120.5),
        vertical_rate: (!i.is_multiple_of(6)).then_some(0.0),
        geo_altitude: None,
        squawk: Some("0505".into()),
        spi: i.is_multiple_of(7),
        position_source: (i % 4) as i16,
        category: i.is_multiple_of(2).then_some(20),
        snapshot_time: 1_649_392_020,
    }
}

fn rows(records: impl IntoIterator<Item = FlightRecord>) -> Rows {
    let mut rows = Rows::default();
    for r in records {
        rows.push(r);
    }
    rows
}

async fn database() -> (Postgres, PgPool, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = localstack::free_port().expect("port");
    let server = Postgres::start(&dir.path().join("pg"), port, false).expect("start PostgreSQL");
    let pool = PgPool::connect(&server.url()).await.expect("connect");
    sink::migrate(&pool).await.expect("migrate");
    (server, pool, dir)
}

/// Every column of every row, in key order, as text: what "the same rows" means.
async fn table(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT (icao24, callsign, origin_country, time_position, last_contact, longitude, \
         latitude, baro_altitude, on_ground, velocity, true_track, vertical_rate, geo_altitude, \
         squawk, spi, position_source, category, snapshot_time)::text \
         FROM flight_data ORDER BY icao24, time_position",
    )
    .fetch_all(pool)
    .await
    .expect("read flight_data")
}

async fn empty(pool: &PgPool) {
    sqlx::query("TRUNCATE flight_data")
        .execute(pool)
        .await
        .expect("truncate");
}

#[tokio::test]
async fn every_write_method_stores_the_same_rows_counts_exactly_and_is_idempotent() {
    let (_server, pool, _dir) = database().await;
    let mut reference = None;
    for method in [
        WriteMethod::Unnest,
        WriteMethod::Staged,
        WriteMethod::Optimistic,
    ] {
        empty(&pool).await;
        // 0..100 new, then a batch with 50 of them again, 50 new, and one key twice.
        let first = rows((0..100).map(record));
        assert_eq!(
            first.insert_with(&pool, method).await.expect("write"),
            100,
            "{method:?}"
        );
        let second = rows((50..150).map(record).chain([record(120)]));
        assert_eq!(
            second.insert_with(&pool, method).await.expect("write"),
            50,
            "{method:?}: 50 already there, one repeated within the batch"
        );
        let again = rows((0..150).map(record));
        assert_eq!(
            again.insert_with(&pool, method).await.expect("write"),
            0,
            "{method:?}: a replay changes nothing"
        );
        let landed = table(&pool).await;
        assert_eq!(landed.len(), 150, "{method:?}");
        match &reference {
            None => reference = Some(landed),
            Some(reference) => assert_eq!(&landed, reference, "{method:?} stores other values"),
        }
    }
}

#[tokio::test]
async fn the_default_write_goes_back_to_copy_once_the_collisions_stop() {
    let (_server, pool, _dir) = database().await;
    // Collide: half of the batch is there already.
    assert_eq!(
        rows((0..10).map(record))
            .insert(&pool)
            .await
            .expect("write"),
        10
    );
    assert_eq!(
        rows((5..20).map(record))
            .insert(&pool)
            .await
            .expect("write"),
        10
    );
    // Then new rows only, several batches: all land, every count exact.
    for start in [20, 40, 60] {
        let batch = rows((start..start + 20).map(record));
        assert_eq!(batch.insert(&pool).await.expect("write"), 20);
    }
    assert_eq!(table(&pool).await.len(), 80);
}

#[tokio::test]
async fn the_binary_copy_encoding_is_byte_for_byte_what_postgres_sends_for_the_same_rows() {
    let (_server, pool, _dir) = database().await;
    let batch = rows((0..40).map(record));
    batch
        .insert_with(&pool, WriteMethod::Unnest)
        .await
        .expect("write through the INSERT path");

    let exported: Vec<u8> = pool
        .copy_out_raw(
            "COPY (SELECT icao24, callsign, origin_country, time_position, last_contact, \
             longitude, latitude, baro_altitude, on_ground, velocity, true_track, vertical_rate, \
             geo_altitude, squawk, spi, position_source, category, snapshot_time \
             FROM flight_data ORDER BY icao24, time_position) TO STDOUT (FORMAT binary)",
        )
        .await
        .expect("copy out")
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .expect("read the copy");

    assert_eq!(batch.to_binary_copy(), exported);
}

#[tokio::test]
async fn a_value_postgres_cannot_store_fails_the_write_as_a_data_error_with_its_sqlstate() {
    let (_server, pool, _dir) = database().await;
    for method in [WriteMethod::Staged, WriteMethod::Optimistic] {
        let mut bad = record(1);
        bad.callsign = Some("A\u{0}B".into());
        let error = rows([record(0), bad])
            .insert_with(&pool, method)
            .await
            .expect_err("text with a NUL byte");
        let processor::Error::Database(sqlx::Error::Database(db)) = &error else {
            panic!("{method:?}: not a database error: {error:?}");
        };
        // Class 22, data exception: the record's fault, not the connection's.
        assert_eq!(db.code().as_deref(), Some("22021"), "{method:?}: {db}");

        let mut far = record(2);
        far.time_position = i64::MAX;
        let error = rows([far])
            .insert_with(&pool, method)
            .await
            .expect_err("a time no timestamp can hold");
        let processor::Error::Database(sqlx::Error::Database(db)) = &error else {
            panic!("{method:?}: not a database error: {error:?}");
        };
        assert_eq!(db.code().as_deref(), Some("22008"), "{method:?}: {db}");
        assert!(table(&pool).await.is_empty(), "{method:?}: nothing landed");
    }
}
