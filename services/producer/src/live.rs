//! Live mode: poll OpenSky, produce each snapshot, repeat until told to stop.
//!
//! One poll at a time: a snapshot's records are all acknowledged by the broker before
//! the next poll, so a slow broker slows polling instead of piling records up. OpenSky
//! failures are logged and retried as [`crate::retry`] decides; Kafka failures and
//! answers that mean the configuration is wrong end the run with an error. SIGINT or
//! SIGTERM stops polling (an in-flight request is abandoned, records already sent are
//! awaited) and the run ends successfully, as it does after `--polls` snapshots.

use std::future::Future;

use tokio::time::{Instant, sleep_until};
use tracing::{info, warn};

use crate::config::Config;
use crate::kafka::FlightProducer;
use crate::opensky::{OpenSkyClient, OpenSkySettings, PollOutcome};
use crate::retry::{Next, RetryPolicy};
use crate::{Error, Result, error_chain};

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

/// Polls until `shutdown` completes, `config.polls` snapshots were produced, or an error
/// that retrying cannot fix.
pub async fn run(config: &Config, shutdown: impl Future<Output = ()>) -> Result<LiveSummary> {
    let mut client = OpenSkyClient::new(OpenSkySettings::from_config(config))?;
    let producer = FlightProducer::new(&config.bootstrap_servers, &config.topic)?;
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
        "polling OpenSky"
    );

    let mut failures = 0;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            result = client.poll() => result,
            () = &mut shutdown => break,
        };
        let next = policy.next(&result, failures, fastrand::f64());
        let wake = match next {
            // `Stop` only ever follows an error, which ends the run.
            Next::Stop => return result.map(|_| summary),
            Next::Retry { after, attempt } => {
                failures = attempt;
                let retry_in_secs = after.as_secs_f64();
                match &result {
                    Err(error) => warn!(
                        retry_in_secs,
                        attempt,
                        error = %error_chain(error),
                        "{}",
                        retry_message(error)
                    ),
                    Ok(_) => warn!(
                        retry_in_secs,
                        attempt, "OpenSky rate limit reached (HTTP 429): waiting"
                    ),
                }
                Instant::now() + after
            }
            Next::Poll { after } => {
                failures = 0;
                if let Ok(PollOutcome::Snapshot(snapshot)) = result {
                    // NB: not raced against `shutdown`: records handed to librdkafka are
                    // always awaited, so a stop never loses what a poll fetched.
                    let produced = producer.produce(&snapshot.records).await?;
                    summary.polls += 1;
                    summary.produced += produced as u64;
                    summary.dropped_unpositioned += snapshot.dropped_unpositioned as u64;
                    info!(
                        produced,
                        dropped_unpositioned = snapshot.dropped_unpositioned,
                        snapshot_time = snapshot.time,
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
        "stopped polling; every record was acknowledged"
    );
    Ok(summary)
}

/// The log message for a failed poll that will be retried.
fn retry_message(error: &Error) -> &'static str {
    match error {
        Error::Unreachable { .. } => "OpenSky is unreachable: the producer keeps retrying",
        Error::Timeout { .. } => "OpenSky did not answer in time: retrying",
        Error::ServerError { .. } => "OpenSky answered with a server error: retrying",
        Error::DecodeResponse { .. } => "OpenSky's answer could not be decoded: retrying",
        Error::TokenUnavailable { .. } | Error::DecodeToken { .. } => {
            "no OpenSky access token could be fetched: retrying"
        }
        Error::Unauthorized { .. } => "OpenSky refused a fresh access token: retrying",
        _ => "polling OpenSky failed: retrying",
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
