//! The flightdeck data contract: decoding OpenSky `/api/states/all` responses, the
//! `flights` wire format and the processor's validation rules (see `DESIGN.md`).
//!
//! The producer uses [`opensky`] to turn a response into [`FlightRecord`]s; the processor
//! uses [`FlightRecord::from_json`] and [`validate`] on what it consumes. [`redact_url`]
//! keeps passwords out of what the services and the xtask show.

pub mod opensky;
pub mod redact;
pub mod validate;
pub mod wire;

pub use opensky::{DecodeError, Extracted, StateVector, StatesResponse};
pub use redact::redact_url;
pub use validate::{Rejection, validate};
pub use wire::FlightRecord;

/// The Kafka topic the producer writes and the processor reads.
pub const FLIGHTS_TOPIC: &str = "flights";
/// The topic invalid records are sent to, unchanged, with headers naming the reason.
pub const DLQ_TOPIC: &str = "flights.dlq";
/// The processor's consumer group.
pub const PROCESSOR_GROUP: &str = "flightdeck-processor";
/// DLQ header naming why a record was rejected (a [`Rejection::reason`] code).
pub const HEADER_REASON: &str = "flightdeck.reason";
/// DLQ header with the human-readable detail of the rejection.
pub const HEADER_DETAIL: &str = "flightdeck.detail";
/// DLQ header naming the topic the rejected record was read from.
pub const HEADER_SOURCE_TOPIC: &str = "flightdeck.source.topic";
/// DLQ header naming the partition the rejected record was read from.
pub const HEADER_SOURCE_PARTITION: &str = "flightdeck.source.partition";
/// DLQ header naming the offset the rejected record was read from.
pub const HEADER_SOURCE_OFFSET: &str = "flightdeck.source.offset";
