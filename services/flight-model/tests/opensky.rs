//! Decoding real and recorded OpenSky responses into wire records.

use std::collections::BTreeMap;
use std::path::Path;

use flight_model::{FlightRecord, StatesResponse, validate};

const QUIRKS: &str = include_str!("fixtures/states-quirks.json");

fn quirks() -> Vec<FlightRecord> {
    let extracted = StatesResponse::from_json(QUIRKS.as_bytes())
        .expect("fixture decodes")
        .into_records();
    assert_eq!(
        extracted.dropped_unpositioned, 1,
        "one vector has no position"
    );
    extracted.records
}

fn by_icao(records: &[FlightRecord], icao24: &str) -> FlightRecord {
    records
        .iter()
        .find(|r| r.icao24 == icao24)
        .unwrap_or_else(|| panic!("{icao24} in fixture"))
        .clone()
}

#[test]
fn positioned_vectors_become_records_and_unpositioned_ones_are_dropped() {
    let records = quirks();
    assert_eq!(records.len(), 7);
    assert!(records.iter().all(|r| r.icao24 != "4ca7b5"));
    assert!(records.iter().all(|r| r.snapshot_time == 1_649_392_659));
}

#[test]
fn callsigns_are_trimmed_and_empty_ones_become_null() {
    let records = quirks();
    assert_eq!(
        by_icao(&records, "4b1816").callsign.as_deref(),
        Some("SWR1951")
    );
    assert_eq!(by_icao(&records, "3c6444").callsign, None, "\"\" is null");
    assert_eq!(
        by_icao(&records, "e4917c").callsign,
        None,
        "spaces only is null"
    );
    assert_eq!(
        by_icao(&records, "c0173b").callsign.as_deref(),
        Some("ACA850")
    );
}

#[test]
fn integer_floats_decode_as_floats() {
    let r = by_icao(&quirks(), "3c6444");
    assert_eq!((r.longitude, r.latitude), (8.0, 50.0));
    assert_eq!(r.baro_altitude, Some(9144.0));
    assert_eq!(r.velocity, Some(230.0));
    assert_eq!(r.vertical_rate, Some(0.0));
}

#[test]
fn squawk_keeps_leading_zeros_and_category_is_read_when_extended() {
    let records = quirks();
    let r = by_icao(&records, "3c6444");
    assert_eq!(r.squawk.as_deref(), Some("0505"));
    assert_eq!(r.category, Some(2));
    assert_eq!(by_icao(&records, "c0173b").category, None, "17-field row");
}

#[test]
fn flarm_negative_track_negative_altitude_and_old_positions_are_valid_data() {
    let records = quirks();
    let flarm = by_icao(&records, "3ddc6b");
    assert_eq!(flarm.origin_country, None, "empty origin_country is null");
    assert_eq!(flarm.position_source, 3);
    assert_eq!(flarm.true_track, Some(-120.5));
    assert_eq!(by_icao(&records, "e4917c").baro_altitude, Some(-30.48));
    let old = by_icao(&records, "ab1644");
    assert_eq!(old.snapshot_time - old.time_position, 4 * 3600);
    let now = 1_649_392_700;
    for r in &records {
        assert_eq!(validate(r, now), Ok(()), "{} is valid", r.icao24);
    }
}

#[test]
fn records_survive_the_wire_unchanged() {
    for r in quirks() {
        assert_eq!(FlightRecord::from_json(&r.to_json()).expect("decodes"), r);
    }
}

#[test]
fn null_states_is_an_empty_response() {
    let response =
        StatesResponse::from_json(br#"{"time": 1649392659, "states": null}"#).expect("decodes");
    assert!(response.states.is_empty());
}

#[test]
fn what_is_not_a_response_is_an_error_saying_what_is_wrong() {
    for (body, expected) in [
        (&b"<html>502 Bad Gateway</html>"[..], "expected value"),
        (br#"{"time": 1, "states": [["abc"]]}"#, "missing `callsign`"),
        (br#"{"time": 1, "states": [[1, null, "x", 1, 1, 1, 1, null, false, null, null, null, null, null, null, false, 0]]}"#, "field 0 `icao24`"),
        (br#"{"states": []}"#, "missing field `time`"),
        (br#"{"time": 1649392659, "states": [["#, "EOF"),
    ] {
        let err = StatesResponse::from_json(body).expect_err("must fail").to_string();
        assert!(err.contains(expected), "{err:?} should mention {expected:?}");
        assert!(err.starts_with("not an OpenSky /api/states/all response"), "{err}");
    }
}

/// The real recorded response in `../shared/opensky/`, when the checkout has it beside.
#[test]
fn the_real_recorded_response_decodes_as_documented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/opensky/states-2022-04-08.json");
    let Ok(body) = std::fs::read(&path) else {
        eprintln!("skipped: {} is not beside this checkout", path.display());
        return;
    };
    let response = StatesResponse::from_json(&body).expect("real response decodes");
    assert_eq!(response.states.len(), 4181);
    let snapshot_time = response.time;
    let extracted = response.into_records();
    assert_eq!(extracted.dropped_unpositioned, 56);
    assert_eq!(extracted.records.len(), 4125);
    let countries: BTreeMap<_, usize> = extracted
        .records
        .iter()
        .filter_map(|r| r.origin_country.as_deref())
        .fold(BTreeMap::new(), |mut m, c| {
            *m.entry(c).or_default() += 1;
            m
        });
    assert_eq!(countries.len(), 86);
    for r in &extracted.records {
        assert_eq!(validate(r, snapshot_time + 60), Ok(()), "{r:?}");
        assert!(
            r.callsign
                .as_deref()
                .is_none_or(|c| !c.is_empty() && c.trim() == c)
        );
    }
}
