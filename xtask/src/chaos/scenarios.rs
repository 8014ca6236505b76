//! The scenarios of the fault suite: issue 9's faults and issue 14's restarts, each with
//! its expected result computed from its own input.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use flight_model::FlightRecord;
use futures::future::LocalBoxFuture;
use localstack::process::Signal;

use super::corpus::{Expected, poison_corpus};
use super::fake_api::{FakeApi, Fault};
use super::rig::{Rig, http_get, produce_raw, redeliveries};
use super::{Ctx, Outcome, p50_max};

/// One scenario of the suite.
pub struct Scenario {
    /// Its name, for `--only` and the report.
    pub name: &'static str,
    /// What it does.
    pub about: &'static str,
    /// The longest the full version may take.
    pub bound: Duration,
    /// The longest the quick version may take.
    pub quick_bound: Duration,
    /// The scenario.
    pub run: for<'a> fn(&'a Ctx) -> LocalBoxFuture<'a, anyhow::Result<Outcome>>,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Every scenario, in the order they run.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "poison-corpus",
            about: "malformed and poison records (NUL bytes, 1 MB values, 10k-deep nesting …) among valid ones",
            bound: secs(180),
            quick_bound: secs(90),
            run: |c| Box::pin(poison(c)),
        },
        Scenario {
            name: "opensky-faults",
            about: "429 + Retry-After, 5xx, 4xx, a hang, truncated/HTML/huge bodies, token 401 from a fake OpenSky",
            bound: secs(240),
            quick_bound: secs(120),
            run: |c| Box::pin(opensky_faults(c)),
        },
        Scenario {
            name: "broker-outage-live",
            about: "the broker down for longer than the live producer's delivery timeout",
            bound: secs(300),
            quick_bound: secs(120),
            run: |c| Box::pin(broker_outage(c)),
        },
        Scenario {
            name: "broker-kill9-restart",
            about: "the broker killed (-9) and restarted on the same storage mid-stream, then stopped and restarted",
            bound: secs(300),
            quick_bound: secs(120),
            run: |c| Box::pin(broker_kill(c)),
        },
        Scenario {
            name: "processor-kill9",
            about: "the processor killed (-9) at random moments during a replay, restarted at once under its instance id",
            bound: secs(900),
            quick_bound: secs(150),
            run: |c| Box::pin(processor_kill(c)),
        },
        Scenario {
            name: "sigterm-mid-batch",
            about: "SIGTERM while a batch is in hand: exit 0 after its commit, nothing redelivered",
            bound: secs(180),
            quick_bound: secs(90),
            run: |c| Box::pin(sigterm(c)),
        },
        Scenario {
            name: "postgres-restart-outage",
            about: "PostgreSQL restarted mid-stream, refusing, then hanging; /readyz 503 meanwhile",
            bound: secs(420),
            quick_bound: secs(150),
            run: |c| Box::pin(postgres_faults(c)),
        },
        Scenario {
            name: "disk-full",
            about: "the table's tablespace runs out of space, then gets more",
            bound: secs(240),
            quick_bound: secs(120),
            run: |c| Box::pin(disk_full(c)),
        },
        Scenario {
            name: "replicas",
            about: "three replicas in one group, one killed (-9) repeatedly, one added mid-stream",
            bound: secs(420),
            quick_bound: secs(150),
            run: |c| Box::pin(replicas(c)),
        },
    ]
}

/// Records from fixture snapshots, at least `n` of them (fewer copies per snapshot keeps
/// the producer's batches realistic).
fn records(ctx: &Ctx, offset: usize, n: usize) -> anyhow::Result<Expected> {
    let mut expected = Expected::default();
    let mut k = offset;
    while expected.keys.len() < n {
        expected.add_body(&ctx.fixtures.snapshot(k, 50))?;
        k += 50;
    }
    Ok(expected)
}

/// Produces `records` in `chunks` spread evenly over `over`, in the background.
fn paced(
    bootstrap: String,
    records: &[FlightRecord],
    over: Duration,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let values: Vec<(String, Vec<u8>)> = records
        .iter()
        .map(|r| (r.icao24.clone(), r.to_json()))
        .collect();
    tokio::spawn(async move {
        let ticks = (over.as_millis() / 250).max(1) as usize;
        let chunk = values.len().div_ceil(ticks).max(1);
        let started = Instant::now();
        for (i, part) in values.chunks(chunk).enumerate() {
            produce_raw(&bootstrap, part).await?;
            let next = started + Duration::from_millis(250 * (i as u64 + 1));
            tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        }
        Ok(())
    })
}

fn outcome(landed: super::rig::Landed, ok: bool, figures: String) -> Outcome {
    Outcome {
        pass: ok && landed.lost == 0 && landed.duplicated == 0 && landed.extra == 0,
        figures: format!(
            "{figures}; rows={} lost={} duplicated={} unexpected={}",
            landed.rows, landed.lost, landed.duplicated, landed.extra
        ),
        lost: landed.lost,
        duplicated: landed.duplicated,
        skipped: None,
    }
}

/// Waits until `check` holds (polling), or `timeout`.
async fn until(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Batches committed by one start of one replica (`batch committed`, records > 0).
fn first_batch(rig: &Rig, replica: usize, start: usize) -> Option<SystemTime> {
    let log = rig.replicas[replica].logs.get(start)?;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["fields"]["message"] == "batch committed"
                && v["fields"]["records"].as_u64().unwrap_or(0) > 0
        })
        .and_then(|v| v["timestamp"].as_str()?.parse::<jiff::Timestamp>().ok())
        .map(SystemTime::from)
}

/// Returns as soon as start `start` of replica `replica` logs its next `record received`
/// (or after 5 s): a batch is being gathered, consumed and not committed.
async fn batch_in_flight(rig: &Rig, replica: usize, start: usize) {
    let received = || {
        std::fs::read_to_string(&rig.replicas[replica].logs[start])
            .unwrap_or_default()
            .matches("\"record received\"")
            .count()
    };
    let before = received();
    let deadline = Instant::now() + secs(5);
    while received() == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn count(rig: &Rig, message: &str) -> usize {
    rig.log_events()
        .iter()
        .filter(|e| e.message.starts_with(message))
        .count()
}

async fn poison(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut rig = Rig::start(&ctx.root, "poison-corpus", &ctx.bins).await?;
    let mut expected = records(ctx, 0, if ctx.quick { 500 } else { 2_000 })?;
    let template = expected
        .records
        .iter()
        .find(|r| flight_model::validate(r, super::corpus::now()).is_ok())
        .cloned()
        .context("the fixtures hold a valid record")?;
    let corpus = poison_corpus(&template, ctx.quick);
    // The reason each must get, from flight-model's own rules: the corpus must be right.
    for p in &corpus {
        let got = flight_model::validate::decode_and_validate(&p.value, super::corpus::now())
            .err()
            .map(|r| r.reason());
        anyhow::ensure!(
            got == p.reason,
            "corpus: {} gets {got:?}, not {:?}",
            p.name,
            p.reason
        );
    }
    expected.add(template.clone());
    // A rule PostgreSQL enforces that no validation rule knows: only the classification
    // of the write's error (SQLSTATE 23514) and the batch split can isolate this record.
    let mut unforeseen = template.clone();
    unforeseen.callsign = Some("UNFORESEEN".into());
    unforeseen.time_position += 1;
    let mut corpus = corpus;
    corpus.push(super::corpus::Poison {
        name: "a value only a database constraint refuses",
        value: unforeseen.to_json(),
        reason: Some("rejected_by_database"),
    });
    let mut values: Vec<(String, Vec<u8>)> = Vec::new();
    let stride = expected.records.len() / corpus.len();
    for (i, r) in expected.records.iter().enumerate() {
        if i % stride == 0
            && let Some(p) = corpus.get(i / stride)
        {
            values.push((format!("poison-{}", i / stride), p.value.clone()));
        }
        values.push((r.icao24.clone(), r.to_json()));
    }
    rig.add_processor("p0")?;
    until(secs(60), async || table_exists(&rig).await).await;
    sqlx::query(
        "ALTER TABLE flight_data ADD CONSTRAINT chaos_unforeseen \
         CHECK (callsign IS DISTINCT FROM 'UNFORESEEN')",
    )
    .execute(&rig.pool)
    .await
    .context("add the unforeseen constraint")?;
    produce_raw(&rig.stack.bootstrap_servers(), &values).await?;
    let landed = rig.wait_landed(&expected.keys, secs(60)).await?;
    let rejected: Vec<_> = corpus.iter().filter(|p| p.reason.is_some()).collect();
    let want = rejected.len() + expected.invalid;
    let mut dlq = Vec::new();
    until(secs(30), async || {
        dlq = rig.dlq().unwrap_or_default();
        dlq.len() >= want
    })
    .await;
    let mut missing = Vec::new();
    for p in &rejected {
        let found = dlq.iter().any(|(value, headers)| {
            let same = value == &p.value
                || (headers.get("flightdeck.truncated").is_some() && p.value.starts_with(value));
            same && headers.get("flightdeck.reason").map(String::as_str) == p.reason
        });
        if !found {
            missing.push(p.name);
        }
    }
    let largest = rejected.iter().map(|p| p.value.len()).max().unwrap_or(0);
    let ok = missing.is_empty() && dlq.len() == want;
    Ok(outcome(
        landed,
        ok,
        format!(
            "valid={} poison={} in DLQ with their reason={}/{} (largest {} B) other invalid={} dlq={}{}",
            expected.keys.len(),
            rejected.len(),
            rejected.len() - missing.len(),
            rejected.len(),
            largest,
            expected.invalid,
            dlq.len(),
            if missing.is_empty() {
                String::new()
            } else {
                format!(" MISSING {missing:?}")
            }
        ),
    ))
}

async fn opensky_faults(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut rig = Rig::start(&ctx.root, "opensky-faults", &ctx.bins).await?;
    let timeout = if ctx.quick { 3 } else { 5 };
    let huge = if ctx.quick { 8 << 20 } else { 50 << 20 };
    let script = vec![
        vec![Fault::RateLimit(3)],
        vec![Fault::Status(503), Fault::Status(500)],
        vec![Fault::Hang(secs(timeout + 10))],
        vec![Fault::Truncated],
        vec![Fault::Html],
        vec![Fault::Huge(huge)],
        vec![Fault::Status(404)],
        vec![Fault::Status(403)],
    ];
    let snapshots = ctx.fixtures.snapshots(100_000, script.len() + 1, 20);
    let api = FakeApi::start(snapshots.clone()).await?;
    api.inject_token([401, 401]);
    rig.add_processor("p0")?;
    let port = rig.start_producer(
        &api.api_url(),
        &[
            ("OPENSKY_CLIENT_ID", "chaos"),
            ("OPENSKY_CLIENT_SECRET", "chaos-secret"),
            ("OPENSKY_TOKEN_URL", &api.token_url()),
            ("OPENSKY_TIMEOUT_SECS", &timeout.to_string()),
        ],
    )?;
    // One fault burst after each served snapshot, so backoffs stay short.
    for faults in script {
        let served = api.served().len();
        let ok = until(secs(60), async || {
            api.served().len() > served || rig.ensure_running().is_err()
        })
        .await;
        rig.ensure_running()?;
        anyhow::ensure!(ok, "the producer fetched no snapshot within 60 s");
        api.inject(faults);
    }
    until(secs(90), async || api.remaining() == 0).await;
    rig.ensure_running()?;
    let mut expected = Expected::default();
    for body in api.served() {
        expected.add_body(&body)?;
    }
    let landed = rig.wait_landed(&expected.keys, secs(60)).await?;
    let metrics = http_get(port, "/metrics").await;
    let ready = http_get(port, "/readyz").await;
    let requests = api.requests();
    let after = |answer: &str| {
        let at = requests
            .iter()
            .position(|r| r.path == "states" && r.answer.starts_with(answer))?;
        let next = requests[at + 1..].iter().find(|r| r.path == "states")?;
        Some(next.at.duration_since(requests[at].at))
    };
    let rate_wait = after("RateLimit").unwrap_or_default();
    let hang_wait = after("Hang").unwrap_or(secs(999));
    let mut checks = Vec::new();
    if rate_wait < secs(3) {
        checks.push(format!("Retry-After 3 s not honoured ({rate_wait:?})"));
    }
    if hang_wait >= secs(timeout + 10) {
        checks.push(format!(
            "hang not abandoned within the timeout ({hang_wait:?})"
        ));
    }
    for cause in [
        "http_429",
        "http_503",
        "timeout",
        "bad_body",
        "http_404",
        "http_403",
        "token_http_401",
    ] {
        if !metrics.contains(&format!("cause=\"{cause}\"")) {
            checks.push(format!("no {cause} counted"));
        }
    }
    if !ready.starts_with("HTTP/1.1 200") {
        checks.push("producer /readyz not 200".into());
    }
    Ok(outcome(
        landed,
        checks.is_empty(),
        format!(
            "snapshots served={} requests={} wait after 429={:.1}s hang abandoned after {:.1}s producer alive{}",
            api.served().len(),
            requests.len(),
            rate_wait.as_secs_f64(),
            hang_wait.as_secs_f64(),
            if checks.is_empty() {
                String::new()
            } else {
                format!(" PROBLEMS {checks:?}")
            }
        ),
    ))
}

async fn broker_outage(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut rig = Rig::start(&ctx.root, "broker-outage-live", &ctx.bins).await?;
    let (count, timeout, down) = if ctx.quick { (5, 3, 8) } else { (40, 10, 35) };
    let api = FakeApi::start(ctx.fixtures.snapshots(200_000, count, 20)).await?;
    rig.add_processor("p0")?;
    let port = rig.start_producer(
        &api.api_url(),
        &[("KAFKA_DELIVERY_TIMEOUT_SECS", &timeout.to_string())],
    )?;
    until(secs(60), async || api.served().len() >= 2).await;
    rig.stack.broker.kill(Signal::SIGTERM);
    let stopped = Instant::now();
    let mut unready = false;
    while stopped.elapsed() < secs(down) {
        unready |= http_get(port, "/readyz").await.starts_with("HTTP/1.1 503");
        rig.ensure_running()?;
        tokio::time::sleep(secs(1)).await;
    }
    rig.stack.broker.restart()?;
    until(secs(180), async || api.remaining() == 0).await;
    rig.ensure_running()?;
    let mut expected = Expected::default();
    for body in api.served() {
        expected.add_body(&body)?;
    }
    let landed = rig.wait_landed(&expected.keys, secs(120)).await?;
    rig.ensure_running()?;
    let metrics = http_get(port, "/metrics").await;
    let retried = metrics
        .lines()
        .find(|l| l.starts_with("flightdeck_snapshot_delivery_failures_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(outcome(
        landed,
        retried > 0 && unready,
        format!(
            "down {down}s > delivery timeout {timeout}s; snapshots fetched={} all landed; snapshot re-deliveries={retried}; producer /readyz 503 while down={unready}; producer never exited",
            api.served().len()
        ),
    ))
}

async fn broker_kill(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut rig = Rig::start(&ctx.root, "broker-kill9-restart", &ctx.bins).await?;
    let snapshots = if ctx.quick { 10 } else { 30 };
    let api = FakeApi::start(ctx.fixtures.snapshots(300_000, snapshots, 50)).await?;
    rig.add_processor("p0")?;
    rig.start_producer(&api.api_url(), &[("KAFKA_DELIVERY_TIMEOUT_SECS", "10")])?;
    until(secs(60), async || api.served().len() >= 3).await;
    rig.stack.broker.kill(Signal::SIGKILL);
    tokio::time::sleep(secs(2)).await;
    rig.stack.broker.restart()?;
    if !ctx.quick {
        until(secs(90), async || api.served().len() >= snapshots / 2).await;
        rig.stack.broker.kill(Signal::SIGTERM);
        tokio::time::sleep(secs(3)).await;
        rig.stack.broker.restart()?;
    }
    until(secs(180), async || api.remaining() == 0).await;
    rig.ensure_running()?;
    let mut expected = Expected::default();
    for body in api.served() {
        expected.add_body(&body)?;
    }
    let landed = rig.wait_landed(&expected.keys, secs(120)).await?;
    rig.ensure_running()?;
    Ok(outcome(
        landed,
        true,
        format!(
            "kill -9{} and restart on the same storage; snapshots fetched={}; producer and processor recovered unattended; rejoins={}",
            if ctx.quick { "" } else { ", then SIGTERM," },
            api.served().len(),
            count(&rig, "idle while"),
        ),
    ))
}

async fn processor_kill(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut rig = Rig::start(&ctx.root, "processor-kill9", &ctx.bins).await?;
    let (total, kills) = if ctx.quick {
        (12_000, 3)
    } else {
        (200_000, 20)
    };
    let expected = records(ctx, 400_000, total)?.valid_only();
    rig.add_processor("p0")?;
    let feed = paced(
        rig.stack.bootstrap_servers(),
        &expected.records,
        secs(kills as u64 * 8),
    );
    let mut never_resumed = 0;
    let mut restarts = Vec::new();
    for kill in 0..=kills {
        let start = rig.replicas[0].logs.len() - 1;
        let resumed = until(secs(60), async || first_batch(&rig, 0, start).is_some()).await;
        if let Some(at) = first_batch(&rig, 0, start)
            && start > 0
        {
            restarts.push(
                at.duration_since(rig.replicas[0].started[start])
                    .unwrap_or_default(),
            );
        }
        if !resumed {
            never_resumed += 1;
        }
        if kill == kills {
            break;
        }
        // A random moment, then the next record consumed: the crash is mid-batch (records
        // consumed, not committed), which the redeliveries then prove.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(300..3_000))).await;
        batch_in_flight(&rig, 0, start).await;
        rig.stop_processor(0, Signal::SIGKILL);
        rig.start_processor(0)?;
    }
    feed.await??;
    let landed = rig.wait_landed(&expected.keys, secs(180)).await?;
    let events = rig.log_events();
    let redelivered = redeliveries(&events);
    let absorbed: u64 = events
        .iter()
        .filter(|e| e.message == "batch committed")
        .map(|e| e.fields["duplicates"].as_u64().unwrap_or(0))
        .sum();
    let rejoins = count(&rig, "idle while");
    let (p50, max) = p50_max(&restarts);
    let ok = never_resumed == 0
        && redelivered > 0
        && restarts.len() == kills
        && p50 <= secs(10)
        && max <= secs(20);
    Ok(outcome(
        landed,
        ok,
        format!(
            "records={} kills={kills} restart->first batch p50={:.1}s max={:.1}s (targets 10s/20s) never resumed={never_resumed} rejoins={rejoins} redeliveries={redelivered} rows written twice and absorbed by the key={}",
            expected.records.len(),
            p50.as_secs_f64(),
            max.as_secs_f64(),
            // The input repeats some positions itself (as the real feed does).
            absorbed.saturating_sub((expected.records.len() - expected.keys.len()) as u64),
        ),
    ))
}

async fn sigterm(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut rig = Rig::start(&ctx.root, "sigterm-mid-batch", &ctx.bins).await?;
    let (total, stops) = if ctx.quick { (5_000, 1) } else { (40_000, 5) };
    let expected = records(ctx, 600_000, total)?.valid_only();
    // Long batches: a stop nearly always finds one in hand.
    rig.processor_env("BATCH_LINGER_MS", "1500");
    rig.add_processor("p0")?;
    let feed = paced(
        rig.stack.bootstrap_servers(),
        &expected.records,
        secs(stops as u64 * 6 + 4),
    );
    let mut clean = 0;
    for _ in 0..stops {
        let start = rig.replicas[0].logs.len() - 1;
        until(secs(60), async || first_batch(&rig, 0, start).is_some()).await;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(300..1_500))).await;
        let status = rig.stop_processor(0, Signal::SIGTERM);
        let said = std::fs::read_to_string(&rig.replicas[0].logs[start])
            .unwrap_or_default()
            .contains("every consumed record is written and committed");
        if status.is_some_and(|s| s.success()) && said {
            clean += 1;
        }
        rig.start_processor(0)?;
    }
    feed.await??;
    let landed = rig.wait_landed(&expected.keys, secs(120)).await?;
    let redelivered = redeliveries(&rig.log_events());
    Ok(outcome(
        landed,
        clean == stops && redelivered == 0,
        format!(
            "SIGTERM x{stops}: exit 0 after the commit={clean}/{stops} redeliveries={redelivered}"
        ),
    ))
}

async fn postgres_faults(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut rig = Rig::start(&ctx.root, "postgres-restart-outage", &ctx.bins).await?;
    let (restarts, outage, hang) = if ctx.quick { (1, 8, 6) } else { (2, 60, 60) };
    let span = 12 + restarts * 6 + outage + hang;
    let expected = records(ctx, 800_000, span as usize * 250)?.valid_only();
    rig.add_processor("p0")?;
    let port = rig.replicas[0].http_port;
    let feed = paced(rig.stack.bootstrap_servers(), &expected.records, secs(span));
    let mut figures = String::new();
    let progress = async |rig: &Rig| rig.rows().await.map(|(_, n)| n).unwrap_or(0);
    for _ in 0..restarts {
        tokio::time::sleep(secs(8)).await;
        eprintln!("chaos:   restarting PostgreSQL");
        let before = progress(&rig).await;
        rig.stack.postgres.restart()?;
        let back = Instant::now();
        until(secs(60), async || progress(&rig).await > before).await;
        let _ = write!(
            figures,
            "restart: progress {:.1}s after; ",
            back.elapsed().as_secs_f64()
        );
    }
    eprintln!("chaos:   PostgreSQL down for {outage}s");
    let before_outage = progress(&rig).await;
    rig.stack.postgres.stop();
    let mut unready_down = false;
    let down = Instant::now();
    while down.elapsed() < secs(outage) {
        let r = http_get(port, "/readyz").await;
        unready_down |= r.starts_with("HTTP/1.1 503");
        rig.ensure_running()?;
        tokio::time::sleep(secs(1)).await;
    }
    rig.stack.postgres.restart()?;
    let back = Instant::now();
    until(secs(60), async || progress(&rig).await > before_outage).await;
    let _ = write!(
        figures,
        "{outage}s refusing: /readyz 503={unready_down}, progress {:.1}s after; ",
        back.elapsed().as_secs_f64()
    );
    tokio::time::sleep(secs(3)).await;
    eprintln!("chaos:   PostgreSQL hanging (SIGSTOP) for {hang}s");
    rig.stack.postgres.freeze(true)?;
    let mut unready_hung = false;
    let hung = Instant::now();
    while hung.elapsed() < secs(hang) {
        unready_hung |= http_get(port, "/readyz").await.starts_with("HTTP/1.1 503");
        tokio::time::sleep(secs(1)).await;
    }
    rig.stack.postgres.freeze(false)?;
    let _ = write!(figures, "{hang}s hanging: /readyz 503={unready_hung}");
    eprintln!("chaos:   waiting for every row");
    feed.await??;
    let landed = rig.wait_landed(&expected.keys, secs(120)).await?;
    Ok(outcome(landed, unready_down && unready_hung, figures))
}

async fn disk_full(ctx: &Ctx) -> anyhow::Result<Outcome> {
    if !nix::unistd::Uid::effective().is_root() {
        let why = "mounting a small tmpfs for the table needs root".to_owned();
        anyhow::ensure!(
            std::env::var("CI").is_err(),
            "{why} (CI=true: run the suite as root)"
        );
        return Ok(Outcome {
            skipped: Some(why),
            ..Outcome::default()
        });
    }
    let mut rig = Rig::start(&ctx.root, "disk-full", &ctx.bins).await?;
    let mount = Tmpfs::mount(&format!("chaos-disk-{}", std::process::id()), "1m")?;
    let space = mount.path.join("pg");
    std::fs::create_dir_all(&space)?;
    if let Some(user) = rig.stack.postgres.run_as() {
        nix::unistd::chown(&space, Some(user.uid), Some(user.gid))?;
    }
    rig.add_processor("p0")?;
    until(secs(60), async || {
        rig.rows().await.is_ok_and(|(_, n)| n == 0) && table_exists(&rig).await
    })
    .await;
    sqlx::query(&format!(
        "CREATE TABLESPACE chaos_small LOCATION '{}'",
        space.display()
    ))
    .execute(&rig.pool)
    .await
    .context("create the tablespace")?;
    sqlx::query("ALTER TABLE flight_data SET TABLESPACE chaos_small")
        .execute(&rig.pool)
        .await
        .context("move the table")?;
    let expected = records(ctx, 1_000_000, if ctx.quick { 10_000 } else { 40_000 })?.valid_only();
    let port = rig.replicas[0].http_port;
    let feed = paced(rig.stack.bootstrap_servers(), &expected.records, secs(10));
    let full = until(secs(90), async || {
        http_get(port, "/readyz").await.contains("retrying a write")
    })
    .await;
    let committed_then = committed(&rig)?;
    tokio::time::sleep(secs(5)).await;
    let committed_later = committed(&rig)?;
    mount.resize("512m")?;
    feed.await??;
    let landed = rig.wait_landed(&expected.keys, secs(120)).await?;
    let metrics = http_get(port, "/metrics").await;
    let transient = metrics
        .contains("flightdeck_failures_total{stage=\"write\",class=\"transient\"}")
        && !metrics.contains("flightdeck_failures_total{stage=\"write\",class=\"transient\"} 0");
    Ok(outcome(
        landed,
        full && committed_then == committed_later && transient,
        format!(
            "disk full -> /readyz 503 retrying={full}; no offset committed while unwritten={}; resumed after more space",
            committed_then == committed_later
        ),
    ))
}

async fn table_exists(rig: &Rig) -> bool {
    sqlx::query("SELECT 1 FROM flight_data LIMIT 1")
        .fetch_optional(&rig.pool)
        .await
        .is_ok()
}

/// The processor group's committed offsets on `flights`.
fn committed(rig: &Rig) -> anyhow::Result<Vec<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", rig.stack.bootstrap_servers())
        .set("group.id", flight_model::PROCESSOR_GROUP)
        .create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..localstack::topics::FLIGHTS_PARTITIONS {
        tpl.add_partition(flight_model::FLIGHTS_TOPIC, p);
    }
    let offsets = consumer.committed_offsets(tpl, secs(10))?;
    Ok(offsets
        .elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(-1))
        .collect())
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs {
    path: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(name: &str, size: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path)?;
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&path)
            .status()
            .context("run mount")?;
        anyhow::ensure!(
            status.success(),
            "mount a tmpfs on {} failed",
            path.display()
        );
        Ok(Self { path })
    }

    fn resize(&self, size: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()?;
        anyhow::ensure!(status.success(), "remount {}", self.path.display());
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

async fn replicas(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut rig = Rig::start(&ctx.root, "replicas", &ctx.bins).await?;
    let (total, kills) = if ctx.quick { (10_000, 2) } else { (60_000, 6) };
    let expected = records(ctx, 1_200_000, total)?.valid_only();
    for name in ["p0", "p1", "p2"] {
        rig.add_processor(name)?;
    }
    let feed = paced(
        rig.stack.bootstrap_servers(),
        &expected.records,
        secs(kills as u64 * 9 + 10),
    );
    tokio::time::sleep(secs(8)).await;
    let mut added = None;
    for kill in 0..kills {
        // Mid-stream, a fourth replica joins: one more than the partitions.
        if kill == kills / 2 {
            added = Some(rig.add_processor("p3")?);
        }
        rig.stop_processor(1, Signal::SIGKILL);
        rig.start_processor(1)?;
        tokio::time::sleep(secs(9)).await;
    }
    feed.await??;
    let landed = rig.wait_landed(&expected.keys, secs(120)).await?;
    rig.ensure_running()?;
    let added = added.context("a replica was added")?;
    let ready = http_get(rig.replicas[added].http_port, "/readyz").await;
    let standby_ok = ready.starts_with("HTTP/1.1 200")
        && (holds_partitions(&rig, added) || ready.contains("replicas beyond the 3 partitions"));
    let events = rig.log_events();
    let assigned = events
        .iter()
        .filter(|e| e.message == "partitions assigned")
        .count();
    Ok(outcome(
        landed,
        standby_ok,
        format!(
            "p0..p2 with p1 killed -9 x{kills} (restarted under its id), p3 added mid-stream (ready, {}); rebalances logged={assigned} rejoins={} redeliveries={}",
            if holds_partitions(&rig, added) {
                "holds a partition"
            } else {
                "an idle standby"
            },
            count(&rig, "idle while"),
            redeliveries(&events)
        ),
    ))
}

/// Whether the latest start of replica `index` holds a partition now.
fn holds_partitions(rig: &Rig, index: usize) -> bool {
    let Some(log) = rig.replicas[index].logs.last() else {
        return false;
    };
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            matches!(
                v["fields"]["message"].as_str(),
                Some("partitions assigned" | "partitions revoked")
            )
        })
        .and_then(|v| v["fields"]["held"].as_str().map(|h| h != "[]"))
        .unwrap_or(false)
}
