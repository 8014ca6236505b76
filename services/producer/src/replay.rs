//! Replay mode: produce recorded OpenSky responses once, then exit.
//!
//! All or nothing up front: every file is read and decoded before the first record is
//! sent, so a bad file fails the run with nothing produced. After that every positioned
//! vector of every file is produced, in file order, and the run succeeds only if the
//! broker acknowledged all of them. The summary line on stdout is what `cargo xtask e2e`
//! reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flight_model::{FlightRecord, StatesResponse};
use serde::Serialize;
use tracing::info;

use crate::config::Config;
use crate::kafka::FlightProducer;
use crate::{Error, Result};

/// How long a replay waits for an unreachable broker before failing.
pub const BROKER_WAIT: Duration = Duration::from_secs(60);

/// One decoded replay file.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// One record per positioned state vector, in file order.
    pub records: Vec<FlightRecord>,
    /// Vectors without a position.
    pub dropped_unpositioned: usize,
}

impl ReplayFile {
    /// Reads and decodes one recorded `/states/all` response.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::ReadReplayFile {
            path: path.to_owned(),
            source,
        })?;
        let response =
            StatesResponse::from_json(&bytes).map_err(|source| Error::DecodeReplayFile {
                path: path.to_owned(),
                source,
            })?;
        let extracted = response.into_records();
        Ok(Self {
            path: path.to_owned(),
            records: extracted.records,
            dropped_unpositioned: extracted.dropped_unpositioned,
        })
    }
}

/// Every replay file, decoded, in the order given.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayPlan {
    /// The files.
    pub files: Vec<ReplayFile>,
}

impl ReplayPlan {
    /// Reads and decodes every file; the first that fails is the error, naming it.
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let files = paths
            .iter()
            .map(|path| ReplayFile::load(path))
            .collect::<Result<_>>()?;
        Ok(Self { files })
    }

    /// Every record to produce, file after file.
    pub fn records(&self) -> impl Iterator<Item = &FlightRecord> {
        self.files.iter().flat_map(|file| &file.records)
    }

    /// How many records there are to produce.
    pub fn record_count(&self) -> usize {
        self.files.iter().map(|file| file.records.len()).sum()
    }

    /// How many vectors all files dropped for lack of a position.
    pub fn dropped_unpositioned(&self) -> usize {
        self.files
            .iter()
            .map(|file| file.dropped_unpositioned)
            .sum()
    }

    /// The summary of this plan once `produced` records were acknowledged.
    pub fn summary(&self, produced: usize) -> ReplaySummary {
        ReplaySummary {
            files: self.files.len(),
            produced,
            dropped_unpositioned: self.dropped_unpositioned(),
        }
    }
}

/// What a replay did; printed as the last stdout line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// Files replayed.
    pub files: usize,
    /// Records the broker acknowledged.
    pub produced: usize,
    /// Vectors dropped for lack of a position.
    pub dropped_unpositioned: usize,
}

impl ReplaySummary {
    /// `{"files":N,"produced":N,"dropped_unpositioned":N}`.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Replays `config.replay`: decode all, wait for the broker (up to [`BROKER_WAIT`]),
/// produce all, wait for every acknowledgement.
pub async fn run(config: &Config) -> Result<ReplaySummary> {
    let plan = ReplayPlan::load(&config.replay)?;
    info!(
        files = plan.files.len(),
        records = plan.record_count(),
        dropped_unpositioned = plan.dropped_unpositioned(),
        "decoded every replay file"
    );
    let producer = FlightProducer::new(&config.bootstrap_servers, &config.topic)?;
    producer.wait_for_broker(Some(BROKER_WAIT)).await?;
    let produced = producer.produce(plan.records()).await?;
    producer.flush().await?;
    let summary = plan.summary(produced);
    info!(
        files = summary.files,
        produced = summary.produced,
        dropped_unpositioned = summary.dropped_unpositioned,
        topic = %config.topic,
        "replay acknowledged by the broker"
    );
    Ok(summary)
}
