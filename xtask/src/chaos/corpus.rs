//! The chaos suite's input: OpenSky snapshots made from the committed fixtures, shifted so
//! every copy has keys of its own, the records they hold, and the poison corpus.
//!
//! What each input should produce is computed here, from the input alone, with
//! `flight-model`'s own decoding and validation: the suite never asks the pipeline what
//! it expected.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use flight_model::{FlightRecord, StatesResponse, validate};
use serde_json::Value;

/// A row's key in `flight_data`.
pub type Key = (String, i64);

/// Time shift between two copies of the fixtures: longer than the span of any fixture's
/// positions, so copies never share a key; prime, so no two fixture times line up.
const SHIFT_SECS: i64 = 20_011;
/// Copies per shift cycle; past it the addresses are moved too (times must stay in the
/// past to be valid).
const COPIES_PER_CYCLE: usize = 4_000;

/// The committed fixtures, parsed once.
#[derive(Debug, Clone)]
pub struct Fixtures {
    responses: Vec<Value>,
}

impl Fixtures {
    /// Reads every `*.json` in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut responses = Vec::new();
        for file in crate::files::json_in(dir)? {
            let text = std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
            responses.push(
                serde_json::from_slice(&text)
                    .with_context(|| format!("parse {}", file.display()))?,
            );
        }
        ensure!(!responses.is_empty(), "no fixtures in {}", dir.display());
        Ok(Self { responses })
    }

    /// Copy `k` of one fixture response (`k` picks which one too), shifted.
    fn copy(&self, k: usize) -> Value {
        let mut response = self.responses[k % self.responses.len()].clone();
        let copy = k / self.responses.len();
        let shift = (copy % COPIES_PER_CYCLE) as i64 * SHIFT_SECS;
        let moved = (copy / COPIES_PER_CYCLE) as u32 * 0x010101;
        if let Some(time) = response["time"].as_i64() {
            response["time"] = (time + shift).into();
        }
        if let Some(states) = response["states"].as_array_mut() {
            for state in states {
                for field in [3, 4] {
                    if let Some(t) = state[field].as_i64() {
                        state[field] = (t + shift).into();
                    }
                }
                if let Some(icao) = state[0].as_str().and_then(hex24) {
                    state[0] = format!("{:06x}", (icao + moved) & 0xff_ffff).into();
                }
            }
        }
        response
    }

    /// One `/states/all` body made of `copies` fixture copies starting at copy `first`.
    pub fn snapshot(&self, first: usize, copies: usize) -> Vec<u8> {
        let mut merged = self.copy(first);
        for k in first + 1..first + copies {
            let more = self.copy(k);
            if let (Some(into), Some(from)) =
                (merged["states"].as_array_mut(), more["states"].as_array())
            {
                into.extend(from.iter().cloned());
            }
        }
        serde_json::to_vec(&merged).unwrap_or_default()
    }

    /// `count` snapshots of `copies` copies each, the `n`th from copy `n * copies`.
    pub fn snapshots(&self, offset: usize, count: usize, copies: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|n| self.snapshot(offset + n * copies, copies))
            .collect()
    }
}

fn hex24(s: &str) -> Option<u32> {
    (s.len() == 6 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

/// What a body should become: the records the producer sends, the keys that must land.
#[derive(Debug, Default, Clone)]
pub struct Expected {
    /// Records produced (positioned vectors).
    pub records: Vec<FlightRecord>,
    /// Distinct keys of the valid records.
    pub keys: BTreeSet<Key>,
    /// Records the processor must reject.
    pub invalid: usize,
}

impl Expected {
    /// Adds what one `/states/all` body holds.
    pub fn add_body(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let records = StatesResponse::from_json(body)?.into_records().records;
        for r in records {
            self.add(r);
        }
        Ok(())
    }

    /// Only the valid records: the streams of the restart and outage scenarios carry as
    /// few rejects as the real feed (the poison scenario covers the DLQ).
    pub fn valid_only(mut self) -> Self {
        let now = now();
        self.records.retain(|r| validate(r, now).is_ok());
        self.invalid = 0;
        self
    }

    /// Adds one record the producer sends.
    pub fn add(&mut self, r: FlightRecord) {
        if validate(&r, now()).is_ok() {
            self.keys.insert((r.icao24.clone(), r.time_position));
        } else {
            self.invalid += 1;
        }
        self.records.push(r);
    }
}

/// Now in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One record of the poison corpus: what is sent and the reason it must be rejected with
/// (`None`: it is valid and must land).
#[derive(Debug, Clone)]
pub struct Poison {
    /// What it is, for the report.
    pub name: &'static str,
    /// The record's value.
    pub value: Vec<u8>,
    /// The reason code expected in the DLQ header.
    pub reason: Option<&'static str>,
}

/// The malformed and poison records of issue 9, each with the reason it must get.
pub fn poison_corpus(template: &FlightRecord, quick: bool) -> Vec<Poison> {
    let json = |r: &FlightRecord| r.to_json();
    let with = |f: &dyn Fn(&mut FlightRecord)| {
        let mut r = template.clone();
        f(&mut r);
        json(&r)
    };
    // The template with known values, so the text edits below find what they replace.
    let known = String::from_utf8(with(&|r| {
        r.callsign = Some("CHAOS1".into());
        r.longitude = 12.25;
        r.on_ground = false;
        r.position_source = 0;
    }))
    .unwrap_or_default();
    let edit = |from: &str, to: &str| known.replace(from, to).into_bytes();
    // Incompressible: random letters, so no broker or TOAST compression shrinks it.
    let incompressible = |n: usize| -> String {
        let mut rng = fastrand::Rng::with_seed(n as u64);
        (0..n).map(|_| rng.alphanumeric()).collect()
    };
    let big = if quick { 300_000 } else { 1_000_000 };
    let mut out = vec![
        Poison {
            name: "random bytes",
            value: (0..512).map(|i| (i * 7919 % 251) as u8).collect(),
            reason: Some("malformed"),
        },
        Poison {
            name: "wrong type",
            value: edit("\"on_ground\":false", "\"on_ground\":\"no\""),
            reason: Some("malformed"),
        },
        Poison {
            name: "10k-deep nesting",
            value: format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            reason: Some("malformed"),
        },
        Poison {
            name: "huge number",
            value: edit(
                "\"longitude\":12.25",
                &format!("\"longitude\":1{}", "0".repeat(400)),
            ),
            reason: Some("malformed"),
        },
        Poison {
            name: "latitude out of range",
            value: with(&|r| r.latitude = 91.0),
            reason: Some("latitude_out_of_range"),
        },
        Poison {
            name: "NUL in callsign",
            value: edit("\"callsign\":\"CHAOS1\"", "\"callsign\":\"A\\u0000B\""),
            reason: Some("text_contains_nul"),
        },
        Poison {
            name: "NUL in origin_country",
            value: with(&|r| r.origin_country = Some("Ger\0many".into())),
            reason: Some("text_contains_nul"),
        },
        Poison {
            name: "smallint overflow",
            value: edit("\"position_source\":0", "\"position_source\":70000"),
            reason: Some("value_out_of_column_range"),
        },
        Poison {
            name: "incompressible origin_country",
            value: with(&|r| r.origin_country = Some(incompressible(big))),
            reason: Some("text_too_long"),
        },
        Poison {
            name: "large invalid record",
            value: with(&|r| {
                r.callsign = Some(incompressible(big * 6 / 10));
                r.velocity = Some(-1.0);
            }),
            reason: Some("negative_velocity"),
        },
        Poison {
            name: "large malformed value",
            value: incompressible(big).into_bytes(),
            reason: Some("malformed"),
        },
    ];
    // Every record above was valid before it was broken: prove the template is.
    out.push(Poison {
        name: "the template itself",
        value: json(template),
        reason: None,
    });
    out
}
