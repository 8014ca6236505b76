//! The bench's records: the committed e2e fixtures, time-shifted into as many real-shaped
//! OpenSky responses as asked for, every key `(icao24, time_position)` unique.
//!
//! The fixtures' valid, positioned vectors (the ones the processor stores; duplicates of
//! a key kept once) form one cycle. Copy `c` of the cycle moves `time_position` and
//! `last_contact` back by `c × shift`, where `shift` exceeds the spread of any aircraft's
//! positions within the cycle, so no two copies share a key. Files hold
//! [`RECORDS_PER_FILE`] vectors (the size of a real whole-world response) and are cached:
//! the same count gives the same files.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use flight_model::StatesResponse;
use flight_model::validate::validate;
use serde_json::{Value, json};

/// Vectors per generated response: about what OpenSky's `/states/all` returns worldwide.
pub const RECORDS_PER_FILE: u64 = 10_000;
/// Bumped when the generator changes, so cached files are made again.
const GENERATOR: u32 = 1;

/// The fixtures' valid vectors, one cycle, and the shift between cycles.
#[derive(Debug, Clone)]
pub struct Cycle {
    /// Raw OpenSky state arrays, each positioned and valid.
    states: Vec<Value>,
    /// Seconds between copies of the cycle.
    shift: i64,
    /// The newest response time among the fixtures.
    time: i64,
}

impl Cycle {
    /// Reads the cycle from the fixture files.
    pub fn from_fixtures(files: &[PathBuf]) -> anyhow::Result<Self> {
        let mut states = Vec::new();
        let mut keys = HashSet::new();
        let mut spread: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        let mut time = 0;
        for file in files {
            let body = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
            let raw: Value = serde_json::from_slice(&body)
                .with_context(|| format!("parse {}", file.display()))?;
            let snapshot = raw["time"].as_i64().context("a response without `time`")?;
            time = time.max(snapshot);
            for state in raw["states"].as_array().into_iter().flatten() {
                let one = json!({ "time": snapshot, "states": [state] }).to_string();
                let Ok(response) = StatesResponse::from_json(one.as_bytes()) else {
                    continue;
                };
                let Some(record) = response.into_records().records.pop() else {
                    continue;
                };
                // Valid "now": the fixtures' own time, so their hour-ahead rule holds.
                if validate(&record, snapshot).is_err()
                    || !keys.insert((record.icao24.clone(), record.time_position))
                {
                    continue;
                }
                let entry = spread
                    .entry(record.icao24.clone())
                    .or_insert((record.time_position, record.time_position));
                entry.0 = entry.0.min(record.time_position);
                entry.1 = entry.1.max(record.time_position);
                states.push(state.clone());
            }
        }
        ensure!(!states.is_empty(), "the fixtures hold no valid vector");
        let widest = spread.values().map(|(lo, hi)| hi - lo).max().unwrap_or(0);
        Ok(Self {
            states,
            shift: (widest + 1).max(10),
            time,
        })
    }

    /// Vector `j` of the endless sequence: cycle copy `j / len`, shifted back.
    pub fn state(&self, j: u64) -> Value {
        let len = self.states.len() as u64;
        let back = (j / len) as i64 * self.shift;
        let mut state = self.states[(j % len) as usize].clone();
        for index in [3, 4] {
            if let Some(t) = state[index].as_i64() {
                state[index] = json!(t - back);
            }
        }
        state
    }

    /// The response time of a file whose first vector is `j`.
    pub fn time_of(&self, j: u64) -> i64 {
        self.time - (j / self.states.len() as u64) as i64 * self.shift
    }
}

/// Writes (or finds cached) `records` vectors as replay files under `root`; returns the
/// directory holding them.
pub fn generate(cycle: &Cycle, records: u64, root: &Path) -> anyhow::Result<PathBuf> {
    let dir = root.join(format!("records-{records}-v{GENERATOR}"));
    let done = dir.join(".complete");
    if done.exists() {
        return Ok(dir);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let files = records.div_ceil(RECORDS_PER_FILE);
    for f in 0..files {
        let first = f * RECORDS_PER_FILE;
        let last = (first + RECORDS_PER_FILE).min(records);
        let states: Vec<Value> = (first..last).map(|j| cycle.state(j)).collect();
        let body = json!({ "time": cycle.time_of(first), "states": states });
        let path = dir.join(format!("states-{f:05}.json"));
        std::fs::write(&path, body.to_string())
            .with_context(|| format!("write {}", path.display()))?;
    }
    std::fs::write(&done, "").context("mark the generated files complete")?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::json_in;

    fn fixtures() -> Vec<PathBuf> {
        let dir = crate::project_root().join("xtask/fixtures/e2e");
        json_in(&dir).expect("fixtures")
    }

    #[test]
    fn generated_records_are_valid_and_every_key_is_unique() {
        let cycle = Cycle::from_fixtures(&fixtures()).expect("cycle");
        let dir = tempfile::tempdir().expect("temp dir");
        let out = generate(&cycle, 25_001, dir.path()).expect("generate");

        let mut keys = HashSet::new();
        let mut count = 0;
        for file in json_in(&out).expect("files") {
            let body = std::fs::read(&file).expect("read");
            let response = StatesResponse::from_json(&body).expect("an OpenSky response");
            let extracted = response.into_records();
            assert_eq!(extracted.dropped_unpositioned, 0);
            for record in extracted.records {
                validate(&record, cycle.time).expect("valid");
                assert!(
                    keys.insert((record.icao24.clone(), record.time_position)),
                    "{} at {} twice",
                    record.icao24,
                    record.time_position
                );
                count += 1;
            }
        }
        assert_eq!(count, 25_001);
        assert_eq!(json_in(&out).expect("files").len(), 3);
    }
}
