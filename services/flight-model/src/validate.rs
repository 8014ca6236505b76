//! The processor's validation rules (`DESIGN.md`, "Validation").
//!
//! Only what cannot be a real position report is rejected. A negative `true_track`
//! (FLARM), a negative `baro_altitude` or a position hours old is data, not an error.

use std::fmt;

use crate::wire::{FlightRecord, WireRecord};

/// 2000-01-01T00:00:00Z: every time must be after it.
pub const EARLIEST_TIME: i64 = 946_684_800;
/// How far in the future a time may lie, in seconds.
pub const MAX_FUTURE_SECS: i64 = 3_600;
/// The longest text field, in bytes.
///
/// NB: PostgreSQL refuses a btree index entry over 2,704 bytes (`origin_country` is
/// indexed), so a longer value fails the whole INSERT. Real callsigns have 8 characters
/// and country names fewer than 60: 1,024 bytes leaves room and keeps every row storable.
pub const MAX_TEXT_BYTES: usize = 1_024;

/// Why a record was rejected. [`Rejection::reason`] is the stable code used in the DLQ
/// header and the `reason` metric label; `Display` gives the detail.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// The value is not a wire-format record (bad JSON, wrong type, missing field).
    Malformed(String),
    /// `icao24` is not 6 lowercase hex digits.
    InvalidIcao24(String),
    /// Latitude outside [-90, 90] or not finite.
    LatitudeOutOfRange(f64),
    /// Longitude outside [-180, 180] or not finite.
    LongitudeOutOfRange(f64),
    /// A time before 2000-01-01 or more than an hour in the future.
    TimeOutOfRange {
        /// Which time field.
        field: &'static str,
        /// Its value in Unix seconds.
        value: i64,
    },
    /// `position_source` outside 0..=3.
    PositionSourceOutOfRange(i16),
    /// `category` outside 0..=20.
    CategoryOutOfRange(i16),
    /// `velocity` below zero.
    NegativeVelocity(f64),
    /// A float field that is NaN or infinite.
    NonFinite(&'static str),
    /// A text field holds a NUL byte, which PostgreSQL cannot store in `text`.
    TextContainsNul(&'static str),
    /// A text field is longer than [`MAX_TEXT_BYTES`].
    TextTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        bytes: usize,
    },
    /// An integer that does not fit its column (`smallint` for `position_source` and
    /// `category`).
    OutOfColumnRange {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// PostgreSQL refused the row with a data error that no rule foresaw; the processor
    /// isolated it by splitting its batch.
    RejectedByDatabase {
        /// The SQLSTATE code.
        sqlstate: String,
        /// PostgreSQL's message.
        message: String,
    },
}

impl Rejection {
    /// Every reason code, for metrics that start at zero.
    pub const REASONS: [&'static str; 13] = [
        "malformed",
        "invalid_icao24",
        "latitude_out_of_range",
        "longitude_out_of_range",
        "time_out_of_range",
        "position_source_out_of_range",
        "category_out_of_range",
        "negative_velocity",
        "non_finite_float",
        "text_contains_nul",
        "text_too_long",
        "value_out_of_column_range",
        "rejected_by_database",
    ];

    /// The stable, machine-readable reason code.
    pub fn reason(&self) -> &'static str {
        let index = match self {
            Self::Malformed(_) => 0,
            Self::InvalidIcao24(_) => 1,
            Self::LatitudeOutOfRange(_) => 2,
            Self::LongitudeOutOfRange(_) => 3,
            Self::TimeOutOfRange { .. } => 4,
            Self::PositionSourceOutOfRange(_) => 5,
            Self::CategoryOutOfRange(_) => 6,
            Self::NegativeVelocity(_) => 7,
            Self::NonFinite(_) => 8,
            Self::TextContainsNul(_) => 9,
            Self::TextTooLong { .. } => 10,
            Self::OutOfColumnRange { .. } => 11,
            Self::RejectedByDatabase { .. } => 12,
        };
        Self::REASONS[index]
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "not a flights wire-format record: {e}"),
            Self::InvalidIcao24(v) => write!(f, "icao24 {v:?} is not 6 lowercase hex digits"),
            Self::LatitudeOutOfRange(v) => write!(f, "latitude {v} is outside [-90, 90]"),
            Self::LongitudeOutOfRange(v) => write!(f, "longitude {v} is outside [-180, 180]"),
            Self::TimeOutOfRange { field, value } => write!(
                f,
                "{field} {value} is before 2000-01-01 or more than an hour in the future"
            ),
            Self::PositionSourceOutOfRange(v) => write!(f, "position_source {v} is not 0..=3"),
            Self::CategoryOutOfRange(v) => write!(f, "category {v} is not 0..=20"),
            Self::NegativeVelocity(v) => write!(f, "velocity {v} is negative"),
            Self::NonFinite(field) => write!(f, "{field} is not a finite number"),
            Self::TextContainsNul(field) => {
                write!(
                    f,
                    "{field} contains a NUL byte, which PostgreSQL text cannot store"
                )
            }
            Self::TextTooLong { field, bytes } => write!(
                f,
                "{field} is {bytes} bytes long, over the limit of {MAX_TEXT_BYTES}"
            ),
            Self::OutOfColumnRange { field, value } => {
                write!(f, "{field} {value} does not fit its smallint column")
            }
            Self::RejectedByDatabase { sqlstate, message } => {
                write!(
                    f,
                    "PostgreSQL refused the row: {message} (SQLSTATE {sqlstate})"
                )
            }
        }
    }
}

/// Checks a decoded record against the rules, with `now` in Unix seconds.
pub fn validate(r: &FlightRecord, now: i64) -> Result<(), Rejection> {
    if !is_icao24(&r.icao24) {
        return Err(Rejection::InvalidIcao24(r.icao24.clone()));
    }
    if !(r.latitude.is_finite() && (-90.0..=90.0).contains(&r.latitude)) {
        return Err(Rejection::LatitudeOutOfRange(r.latitude));
    }
    if !(r.longitude.is_finite() && (-180.0..=180.0).contains(&r.longitude)) {
        return Err(Rejection::LongitudeOutOfRange(r.longitude));
    }
    let latest = now.saturating_add(MAX_FUTURE_SECS);
    for (field, value) in [
        ("time_position", r.time_position),
        ("last_contact", r.last_contact),
        ("snapshot_time", r.snapshot_time),
    ] {
        if value <= EARLIEST_TIME || value > latest {
            return Err(Rejection::TimeOutOfRange { field, value });
        }
    }
    if !(0..=3).contains(&r.position_source) {
        return Err(Rejection::PositionSourceOutOfRange(r.position_source));
    }
    if let Some(category) = r.category
        && !(0..=20).contains(&category)
    {
        return Err(Rejection::CategoryOutOfRange(category));
    }
    for (field, value) in [
        ("baro_altitude", r.baro_altitude),
        ("velocity", r.velocity),
        ("true_track", r.true_track),
        ("vertical_rate", r.vertical_rate),
        ("geo_altitude", r.geo_altitude),
    ] {
        if value.is_some_and(|v| !v.is_finite()) {
            return Err(Rejection::NonFinite(field));
        }
    }
    if let Some(velocity) = r.velocity
        && velocity < 0.0
    {
        return Err(Rejection::NegativeVelocity(velocity));
    }
    for (field, value) in [
        ("callsign", &r.callsign),
        ("origin_country", &r.origin_country),
        ("squawk", &r.squawk),
    ] {
        let Some(text) = value else { continue };
        if text.contains('\0') {
            return Err(Rejection::TextContainsNul(field));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(Rejection::TextTooLong {
                field,
                bytes: text.len(),
            });
        }
    }
    Ok(())
}

fn is_icao24(s: &str) -> bool {
    s.len() == 6 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Decodes and validates one Kafka record value in one step.
///
/// Integers are read wider than their columns, so a `position_source` of 40000 is
/// `value_out_of_column_range`, not `malformed`.
pub fn decode_and_validate(bytes: &[u8], now: i64) -> Result<FlightRecord, Rejection> {
    let wire: WireRecord =
        serde_json::from_slice(bytes).map_err(|e| Rejection::Malformed(e.to_string()))?;
    let record = wire.into_record()?;
    validate(&record, now)?;
    Ok(record)
}
