//! The processor binary against a real PostgreSQL and a real Kafka-protocol broker.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use flight_model::FlightRecord;
use localstack::Stack;
use localstack::process::Managed;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::PgPool;

fn record(i: u32) -> FlightRecord {
    FlightRecord {
        icao24: format!("{:06x}", 0xa00000 + i),
        callsign: Some(format!("TST{i}")),
        origin_country: Some(
            if i.is_multiple_of(3) {
                "Germany"
            } else {
                "France"
            }
            .into(),
        ),
        time_position: 1_649_392_000 + i64::from(i % 7),
        last_contact: 1_649_392_010,
        longitude: 8.5,
        latitude: 50.0,
        baro_altitude: Some(-15.0),
        on_ground: false,
        velocity: Some(230.0),
        true_track: Some(-90.0),
        vertical_rate: None,
        geo_altitude: None,
        squawk: Some("0505".into()),
        spi: false,
        position_source: 0,
        category: None,
        snapshot_time: 1_649_392_020,
    }
}

async fn produce(bootstrap: &str, values: &[(Option<String>, Option<Vec<u8>>)]) {
    produce_to(bootstrap, "flights", values).await;
}

async fn produce_to(bootstrap: &str, topic: &str, values: &[(Option<String>, Option<Vec<u8>>)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer");
    let mut pending = Vec::new();
    for (key, value) in values {
        let mut r: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic);
        if let Some(k) = key {
            r = r.key(k.as_str());
        }
        if let Some(v) = value {
            r = r.payload(v.as_slice());
        }
        pending.push(producer.send_result(r).expect("enqueue"));
    }
    for p in pending {
        p.await.expect("delivery future").expect("delivered");
    }
}

fn valid(range: std::ops::Range<u32>) -> Vec<(Option<String>, Option<Vec<u8>>)> {
    range
        .map(|i| {
            let r = record(i);
            (Some(r.icao24.clone()), Some(r.to_json()))
        })
        .collect()
}

fn start_processor(stack: &Stack, dir: &Path, name: &str, batch_size: usize) -> (Managed, u16) {
    start_processor_with(stack, dir, name, batch_size, &[])
}

fn start_processor_with(
    stack: &Stack,
    dir: &Path,
    name: &str,
    batch_size: usize,
    env: &[(&str, &str)],
) -> (Managed, u16) {
    let port = localstack::free_port().expect("port");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_processor"));
    cmd.env("DATABASE_URL", stack.database_url())
        .env("KAFKA_BOOTSTRAP_SERVERS", stack.bootstrap_servers())
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("BATCH_SIZE", batch_size.to_string())
        .env("BATCH_LINGER_MS", "50")
        .env("GROUP_INSTANCE_ID", name)
        .env("RUST_LOG", "info");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let process =
        Managed::spawn(name, cmd, &dir.join(format!("{name}.log"))).expect("spawn processor");
    (process, port)
}

async fn count(pool: &PgPool) -> i64 {
    // -1 until the processor has created the table.
    sqlx::query_scalar("SELECT count(*) FROM flight_data")
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}

async fn wait_for(
    what: &str,
    process: &mut Managed,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        process.ensure_running().expect("processor running");
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            localstack::process::tail(process.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A DLQ record: its value and its headers.
type DeadLetter = (Vec<u8>, Vec<(String, String)>);

/// Every DLQ record, once there are at least `expected` (rows land before their batch's
/// DLQ records are acknowledged, so a test that saw its rows waits for those).
fn dlq_records(bootstrap: &str, expected: i64) -> Vec<DeadLetter> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "pipeline-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(30);
    let high = loop {
        let (_, high) = consumer
            .fetch_watermarks("flights.dlq", 0, Duration::from_secs(10))
            .expect("watermarks");
        if high >= expected || Instant::now() > deadline {
            break high;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("flights.dlq", 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (out.len() as i64) < high && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((m.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    out
}

fn header<'a>(headers: &'a [(String, String)], key: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_records_land_once_and_invalid_ones_reach_the_dlq_with_their_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = Stack::start_ephemeral(dir.path())
        .await
        .expect("local stack");
    let mut bad_lat = record(999);
    bad_lat.latitude = 91.0;
    let mut bad_icao = record(998);
    bad_icao.icao24 = "XYZ123".into();
    let invalid: Vec<(Option<String>, Option<Vec<u8>>)> = vec![
        (Some("junk".into()), Some(b"{not json".to_vec())),
        (
            Some("wrongtype".into()),
            Some(br#"{"icao24": 42}"#.to_vec()),
        ),
        (Some(bad_lat.icao24.clone()), Some(bad_lat.to_json())),
        (Some("XYZ123".into()), Some(bad_icao.to_json())),
        (Some("empty".into()), None),
    ];
    let mut all = valid(0..50);
    all.splice(10..10, invalid.clone());
    // Every valid record twice: a replay must not add rows.
    all.extend(valid(0..50));
    produce(&stack.bootstrap_servers(), &all).await;

    let (mut processor, http_port) = start_processor(&stack, dir.path(), "processor", 16);
    let pool = PgPool::connect(&stack.database_url())
        .await
        .expect("connect");
    wait_for(
        "50 rows",
        &mut processor,
        Duration::from_secs(60),
        async || count(&pool).await == 50,
    )
    .await;
    let dlq = dlq_records(&stack.bootstrap_servers(), 5);
    assert_eq!(dlq.len(), 5, "every invalid record is dead-lettered once");
    // Records of different keys sit in different partitions: match by payload, not order.
    let expected = [
        "malformed",
        "malformed",
        "latitude_out_of_range",
        "invalid_icao24",
        "malformed",
    ];
    for ((_, original), reason) in invalid.iter().zip(expected) {
        let original = original.as_deref().unwrap_or_default();
        let (_, headers) = dlq
            .iter()
            .find(|(payload, _)| payload.as_slice() == original)
            .unwrap_or_else(|| {
                panic!(
                    "{} dead-lettered unchanged",
                    String::from_utf8_lossy(original)
                )
            });
        assert_eq!(header(headers, "flightdeck.reason"), reason, "{headers:?}");
        assert_eq!(header(headers, "flightdeck.source.topic"), "flights");
        assert!(
            header(headers, "flightdeck.source.offset")
                .parse::<i64>()
                .is_ok(),
            "{headers:?}"
        );
        assert!(
            header(headers, "flightdeck.source.partition")
                .parse::<i32>()
                .is_ok(),
            "{headers:?}"
        );
        assert!(!header(headers, "flightdeck.detail").is_empty());
    }

    let client = reqwest_free_get(http_port, "/readyz").await;
    assert!(client.starts_with("HTTP/1.1 200"), "{client}");
    let metrics = reqwest_free_get(http_port, "/metrics").await;
    assert!(
        metrics.contains("flightdeck_rows_written_total 50"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flightdeck_duplicates_skipped_total 50"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flightdeck_records_rejected_total{reason=\"malformed\"} 3"),
        "{metrics}"
    );

    let status = processor.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM exits 0: {status:?}"
    );
    let row: (String, Option<String>, f64, Option<String>) =
        sqlx::query_as("SELECT icao24, origin_country, baro_altitude, squawk FROM flight_data ORDER BY icao24 LIMIT 1")
            .fetch_one(&pool)
            .await
            .expect("row");
    assert_eq!(
        row,
        (
            "a00000".into(),
            Some("Germany".into()),
            -15.0,
            Some("0505".into())
        )
    );
}

/// A plain HTTP/1.1 GET, so the test needs no HTTP client crate.
async fn reqwest_free_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Before the processor listens: an empty answer, for callers that poll.
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_processor_killed_mid_stream_restarts_without_losing_or_duplicating_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = Stack::start_ephemeral(dir.path())
        .await
        .expect("local stack");
    const TOTAL: u32 = 20_000;
    produce(&stack.bootstrap_servers(), &valid(0..TOTAL)).await;
    let pool = PgPool::connect(&stack.database_url())
        .await
        .expect("connect");

    let (mut first, _) = start_processor(&stack, dir.path(), "processor", 500);
    wait_for(
        "some rows",
        &mut first,
        Duration::from_secs(120),
        async || count(&pool).await > 0,
    )
    .await;
    // SIGKILL: no chance to finish the batch or commit.
    let landed_before_kill = {
        drop(first.stop_with(nix_sigkill(), Duration::from_secs(5)));
        count(&pool).await
    };
    assert!(
        landed_before_kill < i64::from(TOTAL),
        "killed mid-stream ({landed_before_kill} rows)"
    );

    // Restarted under its own instance id, as a container in its pod.
    let (mut second, _) = start_processor(&stack, dir.path(), "processor", 500);
    wait_for(
        "every row",
        &mut second,
        Duration::from_secs(180),
        async || count(&pool).await >= i64::from(TOTAL),
    )
    .await;
    second.stop();
    assert_eq!(
        count(&pool).await,
        i64::from(TOTAL),
        "every record exactly once"
    );
}

fn nix_sigkill() -> localstack::process::Signal {
    localstack::process::Signal::SIGKILL
}

#[test]
fn an_unreachable_database_is_named_with_its_password_redacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = localstack::free_port().expect("port");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_processor"));
    cmd.env(
        "DATABASE_URL",
        format!("postgres://app:hunter2@127.0.0.1:{closed}/flights"),
    )
    .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    .env("HTTP_ADDR", "127.0.0.1:0");
    let mut process = Managed::spawn("processor", cmd, &dir.path().join("p.log")).expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = std::fs::read_to_string(process.log()).unwrap_or_default();
        if log.matches("postgres unreachable").count() >= 2 || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        process.try_status().is_none(),
        "keeps retrying instead of exiting:\n{log}"
    );
    process.stop();
    assert!(
        log.matches("postgres unreachable").count() >= 2,
        "retries with a clear message:\n{log}"
    );
    assert!(
        log.contains(&format!("app:***@127.0.0.1:{closed}/flights")),
        "names where:\n{log}"
    );
    assert!(!log.contains("hunter2"), "password leaked:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nul_byte_in_a_callsign_is_dead_lettered_and_the_thousand_records_after_it_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = Stack::start_ephemeral(dir.path())
        .await
        .expect("local stack");
    let poison = String::from_utf8(record(5_000).to_json())
        .expect("utf-8")
        .replace("TST5000", "A\\u0000B");
    assert!(poison.contains(r#""callsign":"A\u0000B""#), "{poison}");
    // The poison first, then 1,000 valid records, all under one key: one partition, in order.
    let mut all = vec![(Some("a01388".to_owned()), Some(poison.clone().into_bytes()))];
    all.extend(
        valid(0..1_000)
            .into_iter()
            .map(|(_, v)| (Some("a01388".to_owned()), v)),
    );
    produce(&stack.bootstrap_servers(), &all).await;

    let started = Instant::now();
    let (mut processor, _) = start_processor(&stack, dir.path(), "processor", 5_000);
    let pool = PgPool::connect(&stack.database_url())
        .await
        .expect("connect");
    wait_for(
        "1,000 rows",
        &mut processor,
        Duration::from_secs(60),
        async || count(&pool).await == 1_000,
    )
    .await;
    let dlq = dlq_records(&stack.bootstrap_servers(), 1);
    let landed_in = started.elapsed();
    assert_eq!(dlq.len(), 1, "the poison record alone is dead-lettered");
    let (payload, headers) = &dlq[0];
    assert_eq!(payload.as_slice(), poison.as_bytes(), "unchanged");
    assert_eq!(header(headers, "flightdeck.reason"), "text_contains_nul");
    assert!(
        header(headers, "flightdeck.detail").contains("callsign"),
        "{headers:?}"
    );
    assert!(
        landed_in < Duration::from_secs(30),
        "within seconds: {landed_in:?}"
    );
    eprintln!("1,000 rows and 1 DLQ record {landed_in:?} after the processor started");
    processor.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_error_no_rule_foresaw_is_isolated_by_splitting_the_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = Stack::start_ephemeral(dir.path())
        .await
        .expect("local stack");
    let pool = PgPool::connect(&stack.database_url())
        .await
        .expect("connect");
    // Migrate first, then add a rule PostgreSQL enforces and the processor does not know.
    // Same instance id as the processor below: a restart, as the kubelet does it.
    let (mut first, _) = start_processor(&stack, dir.path(), "processor", 100);
    wait_for(
        "the table",
        &mut first,
        Duration::from_secs(60),
        async || count(&pool).await >= 0,
    )
    .await;
    first.stop();
    sqlx::query("ALTER TABLE flight_data ADD CONSTRAINT no_poison CHECK (callsign <> 'POISON')")
        .execute(&pool)
        .await
        .expect("add constraint");
    let mut all = valid(0..300);
    for at in [17, 150, 299] {
        let mut poison = record(at);
        poison.callsign = Some("POISON".into());
        all[at as usize].1 = Some(poison.to_json());
    }
    produce(&stack.bootstrap_servers(), &all).await;
    let (mut processor, http_port) = start_processor(&stack, dir.path(), "processor", 1_000);
    wait_for(
        "297 rows",
        &mut processor,
        Duration::from_secs(60),
        async || count(&pool).await == 297,
    )
    .await;
    let dlq = dlq_records(&stack.bootstrap_servers(), 3);
    assert_eq!(dlq.len(), 3, "exactly the three records at fault");
    for (_, headers) in &dlq {
        assert_eq!(header(headers, "flightdeck.reason"), "rejected_by_database");
        assert!(
            header(headers, "flightdeck.detail").contains("23514"),
            "{headers:?}"
        );
    }
    let metrics = reqwest_free_get(http_port, "/metrics").await;
    let permanent = metrics
        .lines()
        .find(|l| l.starts_with("flightdeck_failures_total{stage=\"write\",class=\"permanent\"}"))
        .unwrap_or_default();
    assert!(!permanent.ends_with(" 0"), "{metrics}");
    processor.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_too_large_for_the_dlq_is_stored_truncated_with_its_original_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = Stack::start_ephemeral(dir.path())
        .await
        .expect("local stack");
    let huge: Vec<u8> = (0..300_000u32).map(|i| b"{x"[(i % 2) as usize]).collect();
    let mut all = valid(0..10);
    all.push((Some("huge".into()), Some(huge.clone())));
    produce(&stack.bootstrap_servers(), &all).await;
    let (mut processor, http_port) = start_processor_with(
        &stack,
        dir.path(),
        "processor",
        100,
        &[("DLQ_MAX_MESSAGE_BYTES", "100000")],
    );
    let pool = PgPool::connect(&stack.database_url())
        .await
        .expect("connect");
    wait_for(
        "10 rows",
        &mut processor,
        Duration::from_secs(60),
        async || count(&pool).await == 10,
    )
    .await;
    let dlq = dlq_records(&stack.bootstrap_servers(), 1);
    assert_eq!(dlq.len(), 1);
    let (payload, headers) = &dlq[0];
    assert_eq!(header(headers, "flightdeck.reason"), "malformed");
    assert_eq!(header(headers, "flightdeck.truncated"), "true");
    assert_eq!(header(headers, "flightdeck.original.size"), "300000");
    assert_eq!(header(headers, "flightdeck.source.topic"), "flights");
    assert!(
        payload.len() < 100_000 && huge.starts_with(payload),
        "a prefix of the original"
    );
    let metrics = reqwest_free_get(http_port, "/metrics").await;
    assert!(
        metrics.contains("flightdeck_dlq_truncated_total 1"),
        "{metrics}"
    );
    processor.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_holding_no_partition_while_another_sits_on_the_work_is_not_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = Stack::start_ephemeral(dir.path())
        .await
        .expect("local stack");
    // One partition, so one member holds everything.
    localstack::topics::create_topics(&stack.bootstrap_servers(), &[("solo", 1)])
        .await
        .expect("topic");
    produce_to(&stack.bootstrap_servers(), "solo", &valid(0..100)).await;
    let hog: rdkafka::consumer::StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", stack.bootstrap_servers())
        .set("group.id", "solo-group")
        // Member ids start with the client id and the range assignor gives the only
        // partition to the first id in order: the hog's.
        .set("client.id", "a-hog")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "30000")
        .create()
        .expect("hog");
    hog.subscribe(&["solo"]).expect("subscribe");
    // The hog joins and holds the partition, consuming nothing and committing nothing.
    let deadline = Instant::now() + Duration::from_secs(60);
    while hog.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the hog never got the partition");
        let _ = tokio::time::timeout(Duration::from_millis(200), hog.recv()).await;
    }
    let hog_task = tokio::spawn(async move {
        // Keep polling (so the hog stays in the group) without committing anything.
        loop {
            let _ = hog.recv().await;
        }
    });
    let (mut processor, http_port) = start_processor_with(
        &stack,
        dir.path(),
        "idle",
        100,
        &[("FLIGHTS_TOPIC", "solo"), ("GROUP_ID", "solo-group")],
    );
    let mut last = String::new();
    wait_for(
        "/readyz to say no partitions",
        &mut processor,
        Duration::from_secs(120),
        async || {
            last = reqwest_free_get(http_port, "/readyz").await;
            last.contains("no partitions")
        },
    )
    .await;
    assert!(last.starts_with("HTTP/1.1 503"), "{last}");
    assert!(last.contains("partitions held: none (of 1)"), "{last}");
    assert!(last.contains("group lag: 100 records"), "{last}");
    hog_task.abort();
    processor.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_processor_with_the_same_instance_id_stops_naming_the_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = Stack::start_ephemeral(dir.path())
        .await
        .expect("local stack");
    let id = format!("clash-{}", std::process::id());
    let (mut first, port) = start_processor(&stack, dir.path(), &id, 100);
    wait_for(
        "the first to serve",
        &mut first,
        Duration::from_secs(60),
        async || !reqwest_free_get(port, "/healthz").await.is_empty(),
    )
    .await;
    let (mut second, _) = start_processor_with(
        &stack,
        dir.path(),
        "second",
        100,
        &[("GROUP_INSTANCE_ID", &id)],
    );
    let status = second.wait().expect("the second exits");
    let log = std::fs::read_to_string(second.log()).unwrap_or_default();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!("GROUP_INSTANCE_ID \"{id}\" is already used")),
        "{log}"
    );
    first.ensure_running().expect("the first goes on");
    first.stop();
}
