//! Decoding of OpenSky `/api/states/all` responses as the real feed sends them.
//!
//! The real feed differs from the documentation (see `DESIGN.md`): `callsign` is `""`
//! rather than null and padded with spaces, floats arrive as JSON integers, rows have 17
//! fields, or 18 with `extended=1`, and `states` is null when nothing is in view.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};

use crate::wire::FlightRecord;

/// A whole `/api/states/all` response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StatesResponse {
    /// The time (Unix seconds) the state vectors are associated with.
    pub time: i64,
    /// The state vectors; the API sends `null` when there are none.
    #[serde(deserialize_with = "null_as_empty")]
    pub states: Vec<StateVector>,
}

/// Why a response could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("not an OpenSky /api/states/all response: {0}")]
// NB: no `#[source]`: the message already carries the cause, and an error chain would
// print it twice.
pub struct DecodeError(serde_json::Error);

impl From<serde_json::Error> for DecodeError {
    fn from(e: serde_json::Error) -> Self {
        Self(e)
    }
}

/// The records a response yields, and how many vectors were dropped for lack of a position.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Extracted {
    /// One wire record per positioned state vector, in response order.
    pub records: Vec<FlightRecord>,
    /// Vectors without `time_position`, `longitude` or `latitude`.
    pub dropped_unpositioned: usize,
}

impl StatesResponse {
    /// Decodes a response body.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Turns every positioned vector into a wire record and counts the others.
    pub fn into_records(self) -> Extracted {
        let snapshot_time = self.time;
        let mut out = Extracted {
            records: Vec::with_capacity(self.states.len()),
            dropped_unpositioned: 0,
        };
        for state in self.states {
            match state.into_record(snapshot_time) {
                Some(record) => out.records.push(record),
                None => out.dropped_unpositioned += 1,
            }
        }
        out
    }
}

/// One row of `states`, field for field as the API documents it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StateVector {
    /// Index 0: transponder address.
    pub icao24: String,
    /// Index 1: callsign, may be `""` and padded with spaces.
    pub callsign: Option<String>,
    /// Index 2: country of registration, may be `""`.
    pub origin_country: Option<String>,
    /// Index 3: time of the last position update.
    pub time_position: Option<i64>,
    /// Index 4: time of the last message.
    pub last_contact: i64,
    /// Index 5.
    pub longitude: Option<f64>,
    /// Index 6.
    pub latitude: Option<f64>,
    /// Index 7.
    pub baro_altitude: Option<f64>,
    /// Index 8.
    pub on_ground: bool,
    /// Index 9.
    pub velocity: Option<f64>,
    /// Index 10.
    pub true_track: Option<f64>,
    /// Index 11.
    pub vertical_rate: Option<f64>,
    // Index 12, `sensors`, is always null in anonymous responses and not kept.
    /// Index 13.
    pub geo_altitude: Option<f64>,
    /// Index 14.
    pub squawk: Option<String>,
    /// Index 15.
    pub spi: bool,
    /// Index 16.
    pub position_source: i16,
    /// Index 17, only with `extended=1`.
    pub category: Option<i16>,
}

impl StateVector {
    /// The wire record for this vector, or `None` when it has no position.
    pub fn into_record(self, snapshot_time: i64) -> Option<FlightRecord> {
        Some(FlightRecord {
            time_position: self.time_position?,
            longitude: self.longitude?,
            latitude: self.latitude?,
            icao24: self.icao24,
            callsign: trimmed(self.callsign),
            origin_country: trimmed(self.origin_country),
            last_contact: self.last_contact,
            baro_altitude: self.baro_altitude,
            on_ground: self.on_ground,
            velocity: self.velocity,
            true_track: self.true_track,
            vertical_rate: self.vertical_rate,
            geo_altitude: self.geo_altitude,
            squawk: self.squawk,
            spi: self.spi,
            position_source: self.position_source,
            category: self.category,
            snapshot_time,
        })
    }
}

fn trimmed(value: Option<String>) -> Option<String> {
    let value = value?;
    let trimmed = value.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.len() == value.len() {
        Some(value)
    } else {
        Some(trimmed.to_owned())
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<StateVector>, D::Error> {
    Ok(Option::<Vec<StateVector>>::deserialize(d)?.unwrap_or_default())
}

impl<'de> Deserialize<'de> for StateVector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(StateVectorVisitor)
    }
}

struct StateVectorVisitor;

/// Reads the next element, naming the field in the error when it is missing or mistyped.
fn field<'de, A, T>(seq: &mut A, index: usize, name: &'static str) -> Result<T, A::Error>
where
    A: SeqAccess<'de>,
    T: Deserialize<'de>,
{
    match seq.next_element::<T>() {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(de::Error::custom(format_args!(
            "state vector has {index} fields, expected at least 17 (missing `{name}`)"
        ))),
        Err(e) => Err(de::Error::custom(format_args!(
            "field {index} `{name}`: {e}"
        ))),
    }
}

impl<'de> Visitor<'de> for StateVectorVisitor {
    type Value = StateVector;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a state vector: an array of 17 or 18 fields")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StateVector, A::Error> {
        let mut v = StateVector {
            icao24: field(&mut seq, 0, "icao24")?,
            callsign: field(&mut seq, 1, "callsign")?,
            origin_country: field(&mut seq, 2, "origin_country")?,
            time_position: field(&mut seq, 3, "time_position")?,
            last_contact: field(&mut seq, 4, "last_contact")?,
            longitude: field(&mut seq, 5, "longitude")?,
            latitude: field(&mut seq, 6, "latitude")?,
            baro_altitude: field(&mut seq, 7, "baro_altitude")?,
            on_ground: field(&mut seq, 8, "on_ground")?,
            velocity: field(&mut seq, 9, "velocity")?,
            true_track: field(&mut seq, 10, "true_track")?,
            vertical_rate: field(&mut seq, 11, "vertical_rate")?,
            ..StateVector::default()
        };
        field::<_, IgnoredAny>(&mut seq, 12, "sensors")?;
        v.geo_altitude = field(&mut seq, 13, "geo_altitude")?;
        v.squawk = field(&mut seq, 14, "squawk")?;
        v.spi = field(&mut seq, 15, "spi")?;
        v.position_source = field(&mut seq, 16, "position_source")?;
        v.category = seq
            .next_element::<Option<i16>>()
            .map_err(|e| de::Error::custom(format_args!("field 17 `category`: {e}")))?
            .flatten();
        // Fields a later API version may append are ignored rather than rejected.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(v)
    }
}
