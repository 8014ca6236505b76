//! Each kind's readiness, from objects shaped like the ones its operator writes.

use super::*;
use serde_json::json;

fn object(value: Value) -> DynamicObject {
    serde_json::from_value(value).expect("a valid object")
}

#[test]
fn an_application_is_ready_only_when_synced_and_healthy() {
    let app = |sync: &str, health: &str| {
        evaluate(
            Kind::Application,
            &object(json!({"metadata": {"name": "kafka"},
                "status": {"sync": {"status": sync}, "health": {"status": health}}})),
        )
    };
    assert_eq!(app("Synced", "Healthy").phase, Phase::Ready);
    assert_eq!(app("OutOfSync", "Healthy").phase, Phase::Progressing);
    assert_eq!(app("Synced", "Progressing").phase, Phase::Progressing);
    let degraded = app("Synced", "Degraded");
    assert_eq!(degraded.phase, Phase::Failing);
    assert_eq!(degraded.summary, "Synced/Degraded");
    assert!(degraded.started);
    assert!(
        !app("OutOfSync", "Missing").started,
        "a later sync wave has not started"
    );
}

#[test]
fn an_application_names_its_conditions_and_failed_sync() {
    let state = evaluate(
        Kind::Application,
        &object(json!({"metadata": {"name": "kafka"}, "status": {
            "sync": {"status": "OutOfSync"}, "health": {"status": "Missing"},
            "conditions": [{"type": "ComparisonError", "message": "repository not found"}],
            "operationState": {"phase": "Failed", "message": "one or more objects failed to apply"}}})),
    );
    assert_eq!(state.phase, Phase::Failing);
    assert_eq!(
        state.conditions,
        [
            "ComparisonError: repository not found",
            "sync operation Failed: one or more objects failed to apply"
        ]
    );
}

#[test]
fn kafka_is_ready_when_its_ready_condition_is_about_the_current_generation() {
    let kafka = |observed: i64, ready: &str| {
        evaluate(
            Kind::Kafka,
            &object(json!({"metadata": {"name": "flightdeck", "generation": 2},
                "status": {"observedGeneration": observed, "conditions": [
                    {"type": "Ready", "status": ready}]}})),
        )
    };
    assert_eq!(kafka(2, "True").phase, Phase::Ready);
    assert_eq!(kafka(1, "True").phase, Phase::Progressing);
    let not_ready = evaluate(
        Kind::Kafka,
        &object(
            json!({"metadata": {"name": "flightdeck"}, "status": {"conditions": [
            {"type": "NotReady", "status": "True", "reason": "Creating", "message": "Kafka cluster is being deployed"}]}}),
        ),
    );
    assert_eq!(not_ready.phase, Phase::Progressing);
    assert_eq!(
        not_ready.conditions,
        ["NotReady=True: Creating: Kafka cluster is being deployed"]
    );
}

#[test]
fn a_postgres_cluster_shows_its_phase() {
    let state = evaluate(
        Kind::PgCluster,
        &object(json!({"metadata": {"name": "flightdeck-pg"}, "status": {
            "phase": "Setting up primary",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ClusterIsNotReady"}]}})),
    );
    assert_eq!(state.phase, Phase::Progressing);
    assert_eq!(state.summary, "Setting up primary");
    assert_eq!(state.conditions, ["Ready=False: ClusterIsNotReady"]);
}

#[test]
fn a_deployment_is_ready_when_every_replica_is_updated_and_available() {
    let deployment = |available: i64, reason: &str| {
        evaluate(
            Kind::Deployment,
            &object(json!({"metadata": {"name": "processor", "generation": 3},
                "spec": {"replicas": 1},
                "status": {"observedGeneration": 3, "updatedReplicas": 1, "availableReplicas": available,
                    "conditions": [
                        {"type": "Available", "status": if available > 0 { "True" } else { "False" }},
                        {"type": "Progressing", "status": if reason.is_empty() { "True" } else { "False" }, "reason": reason}]}})),
        )
    };
    assert_eq!(deployment(1, "").phase, Phase::Ready);
    assert_eq!(deployment(0, "").phase, Phase::Progressing);
    let stuck = deployment(0, "ProgressDeadlineExceeded");
    assert_eq!(stuck.phase, Phase::Failing);
    assert_eq!(stuck.summary, "0/1 available, 1 updated");
}

#[test]
fn only_custom_kinds_need_a_crd() {
    assert_eq!(
        Kind::Kafka.crd().as_deref(),
        Some("kafkas.kafka.strimzi.io")
    );
    assert_eq!(Kind::Deployment.crd(), None);
}
