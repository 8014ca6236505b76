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

/// Label naming a failure: where it happened and whether it was retried.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabel {
    /// `write` (PostgreSQL) or `dlq` (the DLQ topic).
    pub stage: String,
    /// `transient` (retried) or `permanent` (the records were isolated).
    pub class: String,
}

impl FailureLabel {
    /// The label for `stage` and `class`.
    pub fn new(stage: &str, class: retry::Class) -> Self {
        Self {
            stage: stage.into(),
            class: class.as_str().into(),
        }
    }
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
    /// The whole group's lag per partition (committed offset to end), from the monitor.
    pub group_lag: Family<PartitionLabel, Gauge>,
    /// Failed writes and DLQ sends, by stage and class.
    pub failures: Family<FailureLabel, Counter>,
    /// DLQ records stored truncated because they exceeded the DLQ's size limit.
    pub dlq_truncated: Counter,
    /// Times this instance replaced its consumer to rejoin the group.
    pub consumer_rejoins: Counter,
    /// Partitions this instance holds.
    pub partitions_held: Gauge,
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
        let group_lag = Family::<PartitionLabel, Gauge>::default();
        let failures = Family::<FailureLabel, Counter>::default();
        let dlq_truncated = Counter::default();
        let consumer_rejoins = Counter::default();
        let partitions_held = Gauge::default();
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
        registry.register(
            "flightdeck_group_lag_records",
            "Records between the group's committed offset and the end of each partition",
            group_lag.clone(),
        );
        registry.register(
            "flightdeck_failures",
            "Failed PostgreSQL writes (stage=write) and DLQ sends (stage=dlq): transient ones \
             are retried, permanent ones isolate and dead-letter the records at fault",
            failures.clone(),
        );
        registry.register(
            "flightdeck_dlq_truncated",
            "DLQ records stored truncated because they exceeded the DLQ's size limit",
            dlq_truncated.clone(),
        );
        registry.register(
            "flightdeck_consumer_rejoins",
            "Times this instance replaced its consumer because it sat idle while work waited",
            consumer_rejoins.clone(),
        );
        registry.register(
            "flightdeck_partitions_held",
            "Partitions of the flights topic this instance holds",
            partitions_held.clone(),
        );
        for stage in ["write", "dlq"] {
            for class in [retry::Class::Transient, retry::Class::Permanent] {
                let _ = failures.get_or_create(&FailureLabel::new(stage, class));
            }
        }
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
            group_lag,
            failures,
            dlq_truncated,
            consumer_rejoins,
            partitions_held,
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
        for line in [
            "flightdeck_failures_total{stage=\"write\",class=\"transient\"} 0",
            "flightdeck_failures_total{stage=\"dlq\",class=\"permanent\"} 0",
            "flightdeck_dlq_truncated_total 0",
            "flightdeck_consumer_rejoins_total 0",
            "flightdeck_records_rejected_total{reason=\"text_contains_nul\"} 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    /// Every sample name the exposition can carry: counters as `<name>_total`, histograms
    /// as `<name>_bucket|_sum|_count`, gauges as they are.
    fn exported_names(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
                (words.next(), words.next(), words.next(), words.next())
            {
                match kind {
                    "counter" => {
                        names.insert(format!("{name}_total"));
                    }
                    "histogram" => {
                        for suffix in ["_bucket", "_sum", "_count"] {
                            names.insert(format!("{name}{suffix}"));
                        }
                    }
                    _ => {
                        names.insert(name.to_owned());
                    }
                }
            }
        }
        names
    }

    /// NB: the alerting rules and the Grafana dashboard name the processor's series by
    /// hand; a renamed or misspelt metric would leave an alert that can never fire and a
    /// panel that stays empty, with no error anywhere. The producer's series are left to
    /// its own crate.
    #[test]
    fn every_series_the_monitoring_queries_is_one_the_processor_exports() {
        let metrics = Metrics::new();
        // A family shows in the exposition once it has a series.
        let partition = PartitionLabel {
            topic: "flights".into(),
            partition: "0".into(),
        };
        metrics.consumer_lag.get_or_create(&partition).set(1);
        metrics.group_lag.get_or_create(&partition).set(1);
        let exported = exported_names(&metrics.encode());
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../infrastructure/k8s/monitoring"
        );
        let mut checked = 0;
        for file in ["rules.yaml", "grafana-dashboard.yaml"] {
            let path = format!("{dir}/{file}");
            let text = std::fs::read_to_string(&path).expect("the monitoring manifests");
            for (i, line) in text.lines().enumerate() {
                let mut rest = line;
                while let Some(at) = rest.find("flightdeck_") {
                    let name: String = rest[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    rest = &rest[at + name.len()..];
                    if PRODUCER_SERIES.iter().any(|p| name.starts_with(p)) {
                        continue;
                    }
                    assert!(
                        exported.contains(&name),
                        "{file}:{}: `{name}` is not a series the processor exports; it has:\n  {}",
                        i + 1,
                        exported.iter().cloned().collect::<Vec<_>>().join("\n  ")
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 0, "no flightdeck_ series found in {dir}");
    }

    /// Series of the producer (services/producer/src/metrics.rs), not checked here.
    const PRODUCER_SERIES: &[&str] = &[
        "flightdeck_opensky_",
        "flightdeck_records_produced",
        "flightdeck_records_dropped_unpositioned",
        "flightdeck_snapshot_delivery_failures",
        "flightdeck_records_refused",
    ];
}
