//! Live mode: poll OpenSky, produce each snapshot, repeat until told to stop.
//!
//! One poll at a time: a snapshot's records are all acknowledged by the broker before
//! the next poll, so a slow broker slows polling instead of piling records up.
//!
//! The producer never exits on what OpenSky answers: every failure (a 4xx or 5xx, a bad
//! body, a timeout, refused credentials) is counted by cause, logged once per distinct
//! cause with what to fix, and retried as [`crate::retry`] decides (backoff capped at
//! five minutes). Nor does it exit on a broker outage: a snapshot the broker did not fully
//! acknowledge is produced again, whole, with backoff, until it has every record (the
//! table's key absorbs the records an earlier attempt delivered); only a record too large
//! for the topic is dropped, counted and logged. `/readyz` says whether a broker answers.
//! SIGINT or SIGTERM stops polling (an in-flight request is abandoned, records already
//! sent are awaited) and the run ends successfully, as it does after `--polls` snapshots.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ::retry::Backoff;
use flight_model::FlightRecord;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::kafka::FlightProducer;
use crate::metrics::Metrics;
use crate::opensky::{OpenSkyClient, OpenSkySettings, PollOutcome};
use crate::retry::{Next, RetryPolicy};
use crate::{Error, Result, error_chain, http};

/// Waits between attempts to produce a snapshot the broker did not fully acknowledge.
const DELIVERY_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(30),
};

/// What a live run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveSummary {
    /// Polls that brought a snapshot.
    pub polls: u64,
    /// Records the broker acknowledged.
    pub produced: u64,
    /// Vectors dropped for lack of a position.
    pub dropped_unpositioned: u64,
}

/// Polls until `shutdown` completes or `config.polls` snapshots were produced.
pub async fn run(config: &Config, shutdown: impl Future<Output = ()>) -> Result<LiveSummary> {
    let mut client = OpenSkyClient::new(OpenSkySettings::from_config(config))?;
    let mut producer = new_producer(config)?;
    let metrics = Arc::new(Metrics::new());
    let addr = http::serve(
        config.http_addr,
        http::State {
            kafka: Arc::new(new_producer(config)?),
            metrics: metrics.clone(),
        },
    )
    .await?;
    let policy = RetryPolicy::new(config.poll_interval());
    let mut summary = LiveSummary::default();
    tokio::pin!(shutdown);

    tokio::select! {
        ready = producer.wait_for_broker(None) => ready?,
        () = &mut shutdown => return Ok(summary),
    }
    info!(
        url = client.states_url(),
        authenticated = client.is_authenticated(),
        interval_secs = policy.interval.as_secs(),
        polls = config.polls,
        http = %addr,
        "polling OpenSky"
    );

    let mut failures = 0;
    let mut causes = Causes::default();
    let mut undelivered = false;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            result = client.poll() => result,
            () = &mut shutdown => break,
        };
        let wake = match policy.next(&result, failures, fastrand::f64()) {
            Next::Retry { after, attempt } => {
                failures = attempt;
                causes.failed(&result, &metrics, attempt, after);
                Instant::now() + after
            }
            Next::Poll { after } => {
                causes.recovered(failures);
                failures = 0;
                if let Ok(PollOutcome::Snapshot(snapshot)) = result {
                    let time = snapshot.time;
                    let dropped = snapshot.dropped_unpositioned;
                    let Some(produced) = deliver(
                        config,
                        &mut producer,
                        snapshot.records,
                        &metrics,
                        &mut shutdown,
                    )
                    .await?
                    else {
                        undelivered = true;
                        break;
                    };
                    summary.polls += 1;
                    summary.produced += produced as u64;
                    summary.dropped_unpositioned += dropped as u64;
                    metrics.polls.inc();
                    metrics.records_produced.inc_by(produced as u64);
                    metrics.dropped_unpositioned.inc_by(dropped as u64);
                    info!(
                        produced,
                        dropped_unpositioned = dropped,
                        snapshot_time = time,
                        remaining_credits = snapshot.remaining_credits,
                        poll = summary.polls,
                        "poll produced"
                    );
                    if config.polls.is_some_and(|limit| summary.polls >= limit) {
                        break;
                    }
                }
                started + after
            }
        };
        tokio::select! {
            () = sleep_until(wake) => {}
            () = &mut shutdown => break,
        }
    }

    producer.flush().await?;
    info!(
        polls = summary.polls,
        produced = summary.produced,
        dropped_unpositioned = summary.dropped_unpositioned,
        undelivered_snapshot = undelivered,
        "stopped polling"
    );
    Ok(summary)
}

fn new_producer(config: &Config) -> Result<FlightProducer> {
    FlightProducer::with_delivery_timeout(
        &config.bootstrap_servers,
        &config.topic,
        config.delivery_timeout(),
    )
}

/// Produces a snapshot until the broker acknowledged every record, producing it again as
/// a whole with backoff after a failed attempt. Returns how many records were produced,
/// or `None` when shutdown came first (said loudly: that snapshot is not delivered).
async fn deliver<F: Future<Output = ()>>(
    config: &Config,
    producer: &mut FlightProducer,
    mut records: Vec<FlightRecord>,
    metrics: &Metrics,
    shutdown: &mut Pin<&mut F>,
) -> Result<Option<usize>> {
    let mut attempt = 0;
    loop {
        // NB: not raced against `shutdown`: records handed to librdkafka are always
        // awaited, so a stop never abandons what it already sent.
        let (failed, total, first) = match producer.produce(&records).await {
            Ok(produced) => {
                if attempt > 0 {
                    info!(
                        produced,
                        attempts = attempt + 1,
                        "the snapshot is delivered after retrying"
                    );
                }
                return Ok(Some(produced));
            }
            Err(Error::Delivery {
                failed,
                total,
                refused,
                first,
            }) => {
                if !refused.is_empty() {
                    error!(
                        refused = refused.len(),
                        largest_bytes = refused.iter().map(|&i| records[i].to_json().len()).max(),
                        "records too large for the topic are dropped: they can never be produced"
                    );
                    metrics.records_refused.inc_by(refused.len() as u64);
                    let mut index = 0;
                    records.retain(|_| {
                        index += 1;
                        !refused.contains(&(index - 1))
                    });
                }
                (failed - refused.len(), total, first)
            }
            Err(other) => return Err(other),
        };
        if failed == 0 {
            continue;
        }
        attempt += 1;
        metrics.delivery_failures.inc();
        // NB: every attempt after a failure uses a fresh librdkafka producer (a new
        // producer id, sequences from zero). A broker restarted under an idempotent
        // producer may have lost or kept its sequence state (tansu then refuses every
        // later record of the old id), and a fatal error leaves the instance unusable;
        // nothing is in flight here, so replacing it costs nothing.
        if let Some(fatal) = producer.fatal_error() {
            warn!(fatal, "the Kafka producer hit a fatal error");
        }
        *producer = new_producer(config)?;
        let retry_in = DELIVERY_BACKOFF.random_delay(attempt);
        warn!(
            failed,
            total,
            attempt,
            retry_in_secs = retry_in.as_secs_f64(),
            error = %error_chain(&first),
            "the broker did not acknowledge the whole snapshot: producing it again (records delivered twice land once)"
        );
        tokio::select! {
            () = tokio::time::sleep(retry_in) => {}
            () = shutdown.as_mut() => {
                error!(
                    records = records.len(),
                    "stopping with a snapshot the broker has not fully acknowledged"
                );
                return Ok(None);
            }
        }
    }
}

/// Logs each distinct cause of failed polls once (then at debug level), and the recovery.
#[derive(Debug, Default)]
struct Causes {
    current: Option<String>,
}

impl Causes {
    fn failed(
        &mut self,
        result: &Result<PollOutcome>,
        metrics: &Metrics,
        attempt: u32,
        retry_in: Duration,
    ) {
        let retry_in_secs = retry_in.as_secs_f64();
        let cause = match result {
            Err(error) => error.cause().unwrap_or_else(|| "other".into()),
            Ok(_) => "http_429".into(),
        };
        metrics.poll_failed(&cause);
        if self.current.as_deref() == Some(cause.as_str()) {
            debug!(
                cause,
                attempt, retry_in_secs, "OpenSky poll failed again, same cause"
            );
            return;
        }
        match result {
            Err(error) => warn!(
                cause,
                attempt,
                retry_in_secs,
                error = %error_chain(error),
                fix = error.fix(),
                "OpenSky poll failed: retrying until it answers (logged once per cause)"
            ),
            Ok(_) => warn!(
                cause,
                attempt, retry_in_secs, "OpenSky rate limit reached (HTTP 429): waiting"
            ),
        }
        self.current = Some(cause);
    }

    fn recovered(&mut self, failures: u32) {
        if let Some(cause) = self.current.take() {
            info!(failures, last_cause = cause, "OpenSky answers again");
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes and Airflow send).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => info!("SIGINT received: stopping"),
        () = terminate => info!("SIGTERM received: stopping"),
    }
}
