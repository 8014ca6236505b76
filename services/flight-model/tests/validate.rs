//! The validation rules of `DESIGN.md`, one boundary at a time.

use flight_model::validate::{EARLIEST_TIME, decode_and_validate};
use flight_model::{FlightRecord, Rejection, validate};

const NOW: i64 = 1_649_392_700;

fn valid() -> FlightRecord {
    FlightRecord {
        icao24: "3c6444".into(),
        callsign: Some("DLH9LF".into()),
        origin_country: Some("Germany".into()),
        time_position: 1_649_392_655,
        last_contact: 1_649_392_658,
        longitude: 8.5412,
        latitude: 50.0335,
        baro_altitude: Some(11277.6),
        on_ground: false,
        velocity: Some(230.1),
        true_track: Some(85.2),
        vertical_rate: Some(0.0),
        geo_altitude: Some(11600.2),
        squawk: Some("1000".into()),
        spi: false,
        position_source: 0,
        category: None,
        snapshot_time: 1_649_392_659,
    }
}

fn reason(f: impl FnOnce(&mut FlightRecord)) -> Option<&'static str> {
    let mut r = valid();
    f(&mut r);
    validate(&r, NOW).err().map(|e| e.reason())
}

#[test]
fn the_design_example_is_valid() {
    assert_eq!(validate(&valid(), NOW), Ok(()));
}

#[test]
fn icao24_must_be_six_lowercase_hex_digits() {
    for bad in ["3C6444", "3c644", "3c64445", "3c644g", "", "~3c644"] {
        assert_eq!(
            reason(|r| r.icao24 = bad.into()),
            Some("invalid_icao24"),
            "{bad:?}"
        );
    }
}

#[test]
fn coordinates_are_bounded_and_finite() {
    assert_eq!(reason(|r| r.latitude = 90.0), None);
    assert_eq!(reason(|r| r.latitude = -90.0), None);
    assert_eq!(reason(|r| r.longitude = 180.0), None);
    assert_eq!(reason(|r| r.longitude = -180.0), None);
    assert_eq!(
        reason(|r| r.latitude = 90.0001),
        Some("latitude_out_of_range")
    );
    assert_eq!(
        reason(|r| r.latitude = f64::NAN),
        Some("latitude_out_of_range")
    );
    assert_eq!(
        reason(|r| r.longitude = -180.5),
        Some("longitude_out_of_range")
    );
    assert_eq!(
        reason(|r| r.longitude = f64::INFINITY),
        Some("longitude_out_of_range")
    );
}

#[test]
fn times_lie_after_2000_and_at_most_an_hour_ahead() {
    assert_eq!(
        reason(|r| r.time_position = EARLIEST_TIME),
        Some("time_out_of_range")
    );
    assert_eq!(reason(|r| r.time_position = EARLIEST_TIME + 1), None);
    assert_eq!(reason(|r| r.last_contact = NOW + 3600), None);
    assert_eq!(
        reason(|r| r.last_contact = NOW + 3601),
        Some("time_out_of_range")
    );
    assert_eq!(reason(|r| r.snapshot_time = 0), Some("time_out_of_range"));
    // Hours old is data.
    assert_eq!(reason(|r| r.time_position = NOW - 6 * 3600), None);
}

#[test]
fn enumerations_and_velocity_are_bounded() {
    assert_eq!(reason(|r| r.position_source = 3), None);
    assert_eq!(
        reason(|r| r.position_source = 4),
        Some("position_source_out_of_range")
    );
    assert_eq!(
        reason(|r| r.position_source = -1),
        Some("position_source_out_of_range")
    );
    assert_eq!(reason(|r| r.category = Some(20)), None);
    assert_eq!(
        reason(|r| r.category = Some(21)),
        Some("category_out_of_range")
    );
    assert_eq!(reason(|r| r.velocity = Some(0.0)), None);
    assert_eq!(
        reason(|r| r.velocity = Some(-0.1)),
        Some("negative_velocity")
    );
}

#[test]
fn real_feed_oddities_are_data_not_errors() {
    assert_eq!(reason(|r| r.true_track = Some(-170.0)), None);
    assert_eq!(reason(|r| r.baro_altitude = Some(-60.96)), None);
    assert_eq!(reason(|r| r.origin_country = None), None);
}

#[test]
fn every_float_must_be_finite() {
    assert_eq!(
        reason(|r| r.geo_altitude = Some(f64::NAN)),
        Some("non_finite_float")
    );
    assert_eq!(
        reason(|r| r.baro_altitude = Some(f64::NEG_INFINITY)),
        Some("non_finite_float")
    );
}

#[test]
fn undecodable_values_are_rejected_as_malformed_with_the_cause() {
    for (bytes, cause) in [
        (&b"{not json"[..], "key must be a string"),
        (br#"{"icao24": 5}"#, "invalid type"),
        (br#"{"icao24": "3c6444"}"#, "missing field"),
        (b"", "EOF"),
    ] {
        let err = decode_and_validate(bytes, NOW).expect_err("rejected");
        assert_eq!(err.reason(), "malformed");
        assert!(
            err.to_string().contains(cause),
            "{err} should mention {cause}"
        );
    }
    let ok = decode_and_validate(&valid().to_json(), NOW).expect("valid record");
    assert_eq!(ok, valid());
}

#[test]
fn every_rejection_has_a_distinct_stable_reason() {
    let all = [
        Rejection::Malformed(String::new()),
        Rejection::InvalidIcao24(String::new()),
        Rejection::LatitudeOutOfRange(0.0),
        Rejection::LongitudeOutOfRange(0.0),
        Rejection::TimeOutOfRange {
            field: "x",
            value: 0,
        },
        Rejection::PositionSourceOutOfRange(0),
        Rejection::CategoryOutOfRange(0),
        Rejection::NegativeVelocity(0.0),
        Rejection::NonFinite("x"),
        Rejection::TextContainsNul("x"),
        Rejection::TextTooLong {
            field: "x",
            bytes: 0,
        },
        Rejection::OutOfColumnRange {
            field: "x",
            value: 0,
        },
        Rejection::RejectedByDatabase {
            sqlstate: String::new(),
            message: String::new(),
        },
    ];
    let reasons: Vec<_> = all.iter().map(Rejection::reason).collect();
    assert_eq!(reasons, Rejection::REASONS);
}

#[test]
fn text_postgresql_cannot_store_is_a_data_error_of_its_own() {
    assert_eq!(
        reason(|r| r.callsign = Some("A\0B".into())),
        Some("text_contains_nul")
    );
    assert_eq!(
        reason(|r| r.origin_country = Some("\0".into())),
        Some("text_contains_nul")
    );
    assert_eq!(
        reason(|r| r.squawk = Some("7\u{0}00".into())),
        Some("text_contains_nul")
    );
    let limit = flight_model::validate::MAX_TEXT_BYTES;
    assert_eq!(reason(|r| r.origin_country = Some("x".repeat(limit))), None);
    assert_eq!(
        reason(|r| r.origin_country = Some("x".repeat(limit + 1))),
        Some("text_too_long")
    );
    // The JSON escape is how such a record actually arrives.
    let json = String::from_utf8(valid().to_json())
        .expect("utf-8")
        .replace("DLH9LF", "A\\u0000B");
    let err = decode_and_validate(json.as_bytes(), NOW).expect_err("rejected");
    assert_eq!(err.reason(), "text_contains_nul", "{err}");
    assert!(err.to_string().contains("callsign"), "{err}");
}

#[test]
fn integers_beyond_their_smallint_column_are_named_as_such() {
    let json = String::from_utf8(valid().to_json()).expect("utf-8");
    for (from, to, field) in [
        (
            "\"position_source\":0",
            "\"position_source\":40000",
            "position_source",
        ),
        ("\"category\":null", "\"category\":-32769", "category"),
    ] {
        let bad = json.replace(from, to);
        assert_ne!(bad, json, "{from} is in the record");
        let err = decode_and_validate(bad.as_bytes(), NOW).expect_err("rejected");
        assert_eq!(err.reason(), "value_out_of_column_range", "{err}");
        assert!(err.to_string().contains(field), "{err}");
    }
    // In range for the column but not for the rules: the rule's own reason.
    let bad = json.replace("\"position_source\":0", "\"position_source\":7");
    let err = decode_and_validate(bad.as_bytes(), NOW).expect_err("rejected");
    assert_eq!(err.reason(), "position_source_out_of_range");
}
