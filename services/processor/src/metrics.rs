//! Prometheus metrics, updated once per batch and served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label naming a rejection reason (a `flight_model::Rejection::reason` code).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason code.
    pub reason: String,
}

/// Label naming a source partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// The topic.
    pub topic: String,
    /// The partition number.
    pub partition: String,
}

/// Every metric the processor exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Records consumed from `flights`.
    pub records_in: Counter,
    /// Rows inserted into `flight_data`.
    pub rows_written: Counter,
    /// Valid records whose row was already there.
    pub duplicates_skipped: Counter,
    /// Records sent to the DLQ, by reason.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Time from a batch's first record to its offsets being committed.
    pub batch_duration: Histogram,
    /// Records behind the end of each assigned partition, from librdkafka's statistics.
    pub consumer_lag: Family<PartitionLabel, Gauge>,
}

impl Metrics {
    /// Creates and registers every metric; every rejection reason starts at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let records_in = Counter::default();
        let rows_written = Counter::default();
        let duplicates_skipped = Counter::default();
        let rejected = Family::<ReasonLabel, Counter>::default();
        let batch_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let consumer_lag = Family::<PartitionLabel, Gauge>::default();
        registry.register(
            "flightdeck_records_in",
            "Records consumed from the flights topic",
            records_in.clone(),
        );
        registry.register(
            "flightdeck_rows_written",
            "Rows inserted into flight_data",
            rows_written.clone(),
        );
        registry.register(
            "flightdeck_duplicates_skipped",
            "Valid records already present in flight_data (replays, redeliveries)",
            duplicates_skipped.clone(),
        );
        registry.register(
            "flightdeck_records_rejected",
            "Records sent to the DLQ, by reason",
            rejected.clone(),
        );
        registry.register(
            "flightdeck_batch_duration_seconds",
            "Time from a batch's first record to its offsets being committed",
            batch_duration.clone(),
        );
        registry.register(
            "flightdeck_consumer_lag_records",
            "Records between the committed position and the end of each assigned partition",
            consumer_lag.clone(),
        );
        for reason in flight_model::Rejection::REASONS {
            let _ = rejected.get_or_create(&ReasonLabel {
                reason: reason.into(),
            });
        }
        Self {
            registry,
            records_in,
            rows_written,
            duplicates_skipped,
            rejected,
            batch_duration,
            consumer_lag,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_follow_the_flightdeck_convention() {
        let m = Metrics::new();
        m.records_in.inc_by(3);
        m.rejected
            .get_or_create(&ReasonLabel {
                reason: "malformed".into(),
            })
            .inc();
        let text = m.encode();
        assert!(text.contains("flightdeck_records_in_total 3"), "{text}");
        assert!(
            text.contains("flightdeck_records_rejected_total{reason=\"malformed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("flightdeck_records_rejected_total{reason=\"negative_velocity\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("flightdeck_batch_duration_seconds_bucket"),
            "{text}"
        );
    }
}
