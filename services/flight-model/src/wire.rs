//! The `flights` wire format: one JSON object per state vector, keyed by `icao24`.

use serde::{Deserialize, Serialize};

/// One position report as it travels through Kafka.
///
/// Field names follow the OpenSky documentation; times are integer Unix seconds;
/// `snapshot_time` is the `time` of the response the vector came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlightRecord {
    /// ICAO 24-bit transponder address, 6 lowercase hex digits.
    pub icao24: String,
    /// Callsign, trimmed; `None` when the feed sent none.
    pub callsign: Option<String>,
    /// Country of registration, trimmed; `None` when empty (FLARM positions).
    pub origin_country: Option<String>,
    /// Time of the last position update.
    pub time_position: i64,
    /// Time of the last message of any kind.
    pub last_contact: i64,
    /// WGS-84 longitude in degrees.
    pub longitude: f64,
    /// WGS-84 latitude in degrees.
    pub latitude: f64,
    /// Barometric altitude in metres; can be negative.
    pub baro_altitude: Option<f64>,
    /// Whether the aircraft reported being on the ground.
    pub on_ground: bool,
    /// Ground speed in m/s.
    pub velocity: Option<f64>,
    /// Track in degrees clockwise from north; FLARM sends -180..0.
    pub true_track: Option<f64>,
    /// Vertical rate in m/s.
    pub vertical_rate: Option<f64>,
    /// Geometric altitude in metres.
    pub geo_altitude: Option<f64>,
    /// Transponder code, leading zeros kept.
    pub squawk: Option<String>,
    /// Special purpose indicator.
    pub spi: bool,
    /// 0 ADS-B, 1 ASTERIX, 2 MLAT, 3 FLARM.
    pub position_source: i16,
    /// Aircraft category, only present with `extended=1`.
    #[serde(default)]
    pub category: Option<i16>,
    /// The `time` of the response this vector came from.
    pub snapshot_time: i64,
}

impl FlightRecord {
    /// Decodes one Kafka record value.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Encodes the record as the Kafka record value.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings, numbers and booleans always serialises; non-finite
        // floats become `null`, which validation then rejects downstream.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// [`FlightRecord`] as decoded from the wire, with the `smallint` fields read as `i64`
/// so that a value out of the column's range is named as such instead of failing the
/// whole decode.
#[derive(Debug, Deserialize)]
pub(crate) struct WireRecord {
    icao24: String,
    callsign: Option<String>,
    origin_country: Option<String>,
    time_position: i64,
    last_contact: i64,
    longitude: f64,
    latitude: f64,
    baro_altitude: Option<f64>,
    on_ground: bool,
    velocity: Option<f64>,
    true_track: Option<f64>,
    vertical_rate: Option<f64>,
    geo_altitude: Option<f64>,
    squawk: Option<String>,
    spi: bool,
    position_source: i64,
    #[serde(default)]
    category: Option<i64>,
    snapshot_time: i64,
}

impl WireRecord {
    /// Narrows the integer fields to their columns.
    pub(crate) fn into_record(self) -> Result<FlightRecord, crate::Rejection> {
        let smallint = |field: &'static str, value: i64| {
            i16::try_from(value).map_err(|_| crate::Rejection::OutOfColumnRange { field, value })
        };
        Ok(FlightRecord {
            position_source: smallint("position_source", self.position_source)?,
            category: self.category.map(|c| smallint("category", c)).transpose()?,
            icao24: self.icao24,
            callsign: self.callsign,
            origin_country: self.origin_country,
            time_position: self.time_position,
            last_contact: self.last_contact,
            longitude: self.longitude,
            latitude: self.latitude,
            baro_altitude: self.baro_altitude,
            on_ground: self.on_ground,
            velocity: self.velocity,
            true_track: self.true_track,
            vertical_rate: self.vertical_rate,
            geo_altitude: self.geo_altitude,
            squawk: self.squawk,
            spi: self.spi,
            snapshot_time: self.snapshot_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_example_round_trips_unchanged() {
        let json = r#"{"icao24":"3c6444","callsign":"DLH9LF","origin_country":"Germany","time_position":1649392655,"last_contact":1649392658,"longitude":8.5412,"latitude":50.0335,"baro_altitude":11277.6,"on_ground":false,"velocity":230.1,"true_track":85.2,"vertical_rate":0.0,"geo_altitude":11600.2,"squawk":"1000","spi":false,"position_source":0,"category":null,"snapshot_time":1649392659}"#;
        let record = FlightRecord::from_json(json.as_bytes()).expect("design example decodes");
        assert_eq!(record.icao24, "3c6444");
        assert_eq!(record.baro_altitude, Some(11277.6));
        assert_eq!(String::from_utf8(record.to_json()).expect("utf-8"), json);
    }

    #[test]
    fn missing_category_reads_as_null() {
        let json = r#"{"icao24":"3c6444","callsign":null,"origin_country":null,"time_position":1649392655,"last_contact":1649392658,"longitude":8.5,"latitude":50.0,"baro_altitude":null,"on_ground":true,"velocity":null,"true_track":null,"vertical_rate":null,"geo_altitude":null,"squawk":null,"spi":false,"position_source":0,"snapshot_time":1649392659}"#;
        let record = FlightRecord::from_json(json.as_bytes()).expect("decodes");
        assert_eq!(record.category, None);
    }

    #[test]
    fn a_missing_required_field_is_an_error_naming_it() {
        let err = FlightRecord::from_json(br#"{"icao24":"3c6444"}"#).expect_err("must fail");
        assert!(err.to_string().contains("missing field"), "{err}");
    }
}
