//! Replay mode: produce recorded OpenSky responses once, then exit.
//!
//! All or nothing up front: every file is read and decoded (and its records counted)
//! before the first record is sent, so a bad file fails the run with nothing produced.
//! Then the files are produced one after the other, in the order given, and the run
//! succeeds only if the broker acknowledged every positioned vector of every file.
//! The summary line on stdout is what `cargo xtask e2e` reads.
//!
//! NB: memory is bounded by the largest file, not by the whole replay: the check pass
//! keeps only counts, and the produce pass decodes a file again, produces it, waits for
//! its acknowledgements and drops it before reading the next. Holding every decoded file
//! at once took 429 MiB on a replay of one million records; decoding each file twice costs
//! a little CPU instead. A file changed between the two passes fails the run, naming it.

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
        drop(bytes);
        let extracted = response.into_records();
        Ok(Self {
            path: path.to_owned(),
            records: extracted.records,
            dropped_unpositioned: extracted.dropped_unpositioned,
        })
    }

    /// What the plan keeps of this file: its counts.
    fn counts(&self) -> PlannedFile {
        PlannedFile {
            path: self.path.clone(),
            records: self.records.len(),
            dropped_unpositioned: self.dropped_unpositioned,
        }
    }
}

/// A replay file checked by [`ReplayPlan::load`]: only its counts are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Where it is.
    pub path: PathBuf,
    /// Positioned vectors: the records it produces.
    pub records: usize,
    /// Vectors without a position.
    pub dropped_unpositioned: usize,
}

/// Every replay file, checked, in the order given.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayPlan {
    /// The files.
    pub files: Vec<PlannedFile>,
}

impl ReplayPlan {
    /// Reads and decodes every file, one at a time, keeping only their counts; the first
    /// that fails is the error, naming it.
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let files = paths
            .iter()
            .map(|path| ReplayFile::load(path).map(|file| file.counts()))
            .collect::<Result<_>>()?;
        Ok(Self { files })
    }

    /// The files decoded again, one at a time, in order: each item is decoded only when
    /// the iterator reaches it, so at most one file's records are in memory at once.
    pub fn decoded(&self) -> impl Iterator<Item = Result<ReplayFile>> + '_ {
        self.files.iter().map(|planned| {
            let file = ReplayFile::load(&planned.path)?;
            if file.counts() != *planned {
                // The check pass promised these counts; producing something else would
                // make the summary line lie.
                return Err(Error::InvalidConfig(format!(
                    "replay file {} changed while it was being replayed",
                    planned.path.display()
                )));
            }
            Ok(file)
        })
    }

    /// How many records there are to produce.
    pub fn record_count(&self) -> usize {
        self.files.iter().map(|file| file.records).sum()
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

/// Replays `config.replay`: check every file, wait for the broker (up to
/// [`BROKER_WAIT`]), then produce file by file, each fully acknowledged before the next.
pub async fn run(config: &Config) -> Result<ReplaySummary> {
    let plan = ReplayPlan::load(&config.replay)?;
    info!(
        files = plan.files.len(),
        records = plan.record_count(),
        dropped_unpositioned = plan.dropped_unpositioned(),
        "checked every replay file"
    );
    let producer = FlightProducer::new(&config.bootstrap_servers, &config.topic)?;
    producer.wait_for_broker(Some(BROKER_WAIT)).await?;
    let mut produced = 0;
    for file in plan.decoded() {
        let file = file?;
        produced += producer.produce(&file.records).await?;
    }
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
