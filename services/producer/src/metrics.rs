//! The live producer's Prometheus metrics, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Label naming why a poll failed (an [`crate::Error::cause`]: `http_404`, `timeout` …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    /// The cause.
    pub cause: String,
}

/// Every metric the live producer exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Polls that brought a snapshot.
    pub polls: Counter,
    /// Failed polls, by cause; 429s count as `http_429`.
    pub poll_failures: Family<CauseLabel, Counter>,
    /// Records the broker acknowledged.
    pub records_produced: Counter,
    /// Vectors without a position, not produced.
    pub dropped_unpositioned: Counter,
    /// Attempts to produce a snapshot that the broker did not fully acknowledge.
    pub delivery_failures: Counter,
    /// Records refused for good (too large for the topic), dropped.
    pub records_refused: Counter,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            polls: Counter::default(),
            poll_failures: Family::default(),
            records_produced: Counter::default(),
            dropped_unpositioned: Counter::default(),
            delivery_failures: Counter::default(),
            records_refused: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "flightdeck_opensky_polls",
            "Polls of OpenSky that brought a snapshot",
            metrics.polls.clone(),
        );
        registry.register(
            "flightdeck_opensky_poll_failures",
            "Failed polls of OpenSky by cause (http_<status>, timeout, unreachable, bad_body, token_http_<status> …); every one is retried",
            metrics.poll_failures.clone(),
        );
        registry.register(
            "flightdeck_records_produced",
            "Records the Kafka broker acknowledged",
            metrics.records_produced.clone(),
        );
        registry.register(
            "flightdeck_records_dropped_unpositioned",
            "State vectors without a position, not produced",
            metrics.dropped_unpositioned.clone(),
        );
        registry.register(
            "flightdeck_snapshot_delivery_failures",
            "Attempts to produce a snapshot that the broker did not fully acknowledge (the snapshot is produced again)",
            metrics.delivery_failures.clone(),
        );
        registry.register(
            "flightdeck_records_refused",
            "Records refused for good because they are too large for the topic, dropped",
            metrics.records_refused.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts one failed poll.
    pub fn poll_failed(&self, cause: &str) {
        self.poll_failures
            .get_or_create(&CauseLabel {
                cause: cause.into(),
            })
            .inc();
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
    fn failures_are_counted_by_cause() {
        let m = Metrics::new();
        m.poll_failed("http_404");
        m.poll_failed("http_404");
        m.records_produced.inc_by(7);
        let text = m.encode();
        assert!(
            text.contains("flightdeck_opensky_poll_failures_total{cause=\"http_404\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("flightdeck_records_produced_total 7"),
            "{text}"
        );
        assert!(
            text.contains("flightdeck_snapshot_delivery_failures_total 0"),
            "{text}"
        );
    }
}
