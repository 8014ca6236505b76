//! The wait of `cargo xtask up` against a scripted Kubernetes API ([`super::mock`]), in
//! paused time: minutes of timeouts take milliseconds.

use std::time::Duration;

use super::mock::{self, Reply, Script, application, crashing_pod, deployment, kafka};
use super::progress::Lines;
use super::status::{ComponentId, Kind};
use super::wait::{Cause, Timeouts, wait_ready};

const APPS: &str = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications";
const KAFKAS: &str = "/apis/kafka.strimzi.io/v1beta2/namespaces/kafka/kafkas";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/processing/deployments";

const TIMEOUTS: Timeouts = Timeouts {
    component: Duration::from_secs(600),
    total: Duration::from_secs(1800),
};

fn expected() -> Vec<ComponentId> {
    vec![
        ComponentId::new(Kind::Application, "argocd", "flightdeck-root"),
        ComponentId::new(Kind::Application, "argocd", "kafka"),
        ComponentId::new(Kind::Kafka, "kafka", "flightdeck"),
        ComponentId::new(Kind::Deployment, "processing", "processor"),
    ]
}

fn healthy_rest(script: Script) -> Script {
    script
        .on(KAFKAS, [Reply::List(vec![kafka(true)])])
        .on(DEPLOYMENTS, [Reply::List(vec![deployment("processor")])])
}

fn output(lines: Lines<Vec<u8>>) -> String {
    String::from_utf8(lines.into_inner()).expect("utf-8")
}

#[tokio::test(start_paused = true)]
async fn applications_progressing_to_healthy_end_the_wait() {
    let script = healthy_rest(Script::default()).on(
        APPS,
        [
            Reply::List(vec![
                application("flightdeck-root", "Synced", "Healthy", 1),
                application("kafka", "OutOfSync", "Missing", 2),
            ]),
            Reply::Watch(vec![
                ("MODIFIED", application("kafka", "Synced", "Progressing", 3)),
                ("MODIFIED", application("kafka", "Synced", "Healthy", 4)),
            ]),
        ],
    );
    let (client, _) = mock::client(script);
    let mut progress = Lines::new(Vec::new());
    let took = wait_ready(&client, &expected(), TIMEOUTS, &mut progress)
        .await
        .expect("everything becomes ready");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let out = output(progress);
    for line in [
        "Application argocd/kafka: waiting (OutOfSync/Missing)",
        "Application argocd/kafka: waiting (Synced/Progressing)",
        "Application argocd/kafka: ready (Synced/Healthy)",
        "Kafka kafka/flightdeck: ready (Ready)",
        "Deployment processing/processor: ready (1/1 available, 1 updated)",
        "every component is ready after",
    ] {
        assert!(out.contains(line), "no `{line}` in\n{out}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_degraded_application_is_named_times_out_and_leaves_forensics() {
    let mut degraded = application("kafka", "Synced", "Degraded", 2);
    degraded["status"]["health"]["message"] =
        "StatefulSet kafka/flightdeck-dual-role: 0 of 1 replicas ready".into();
    let script = healthy_rest(Script::default())
        .on(
            APPS,
            [Reply::List(vec![
                application("flightdeck-root", "Synced", "Healthy", 1),
                degraded,
            ])],
        )
        .on(
            "/api/v1/namespaces/kafka/pods",
            [Reply::List(vec![crashing_pod(
                "kafka",
                "flightdeck-dual-role-0",
            )])],
        );
    let (client, requests) = mock::client(script);
    let target = tempfile::tempdir().expect("a temporary directory");
    let mut progress = Lines::new(Vec::new());
    let started = tokio::time::Instant::now();

    let error =
        super::ready_or_forensics(&client, &expected(), TIMEOUTS, &mut progress, target.path())
            .await
            .expect_err("a degraded application never becomes ready");

    assert_eq!(
        started.elapsed().as_secs(),
        600,
        "the per-component timeout"
    );
    let message = format!("{error:#}");
    assert!(
        message.starts_with("Application argocd/kafka is stuck: not ready 10m00s after it started"),
        "{message}"
    );
    assert!(
        message.contains("health: StatefulSet kafka/flightdeck-dual-role: 0 of 1 replicas ready"),
        "{message}"
    );
    assert!(
        message.contains("forensics (logs, events, YAML) in"),
        "{message}"
    );

    let runs: Vec<_> = std::fs::read_dir(target.path().join("forensics"))
        .expect("a forensics directory")
        .map(|e| e.expect("an entry").path())
        .collect();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    let summary = std::fs::read_to_string(run.join("summary.txt")).expect("summary.txt");
    assert!(summary.contains("namespaces: argocd, kafka"), "{summary}");
    assert!(
        summary.contains("Application argocd/kafka: Failing, Synced/Degraded"),
        "{summary}"
    );
    assert!(run.join("kafka/events.txt").is_file());
    assert!(run.join("kafka/pods.yaml").is_file());
    for log in [
        "flightdeck-dual-role-0_kafka.log",
        "flightdeck-dual-role-0_kafka_previous.log",
    ] {
        let text = std::fs::read_to_string(run.join("kafka/logs").join(log)).expect(log);
        assert_eq!(text, "scripted log line\n");
    }
    let requests = requests.lock().expect("log").join("\n");
    assert!(
        !requests.contains("/secrets"),
        "forensics never read secrets:\n{requests}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_watch_resumes_and_a_gone_watch_lists_again() {
    let script = healthy_rest(Script::default()).on(
        APPS,
        [
            Reply::List(vec![
                application("flightdeck-root", "Synced", "Healthy", 1),
                application("kafka", "Synced", "Progressing", 2),
            ]),
            // The connection drops: the watcher watches again from the same version.
            Reply::Watch(vec![]),
            // The version is too old (410 Gone): the watcher lists again.
            Reply::Watch(vec![(
                "ERROR",
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "too old resource version", "reason": "Expired", "code": 410}),
            )]),
            Reply::List(vec![
                application("flightdeck-root", "Synced", "Healthy", 5),
                application("kafka", "Synced", "Healthy", 6),
            ]),
        ],
    );
    let (client, requests) = mock::client(script);
    let mut progress = Lines::new(Vec::new());
    wait_ready(&client, &expected(), TIMEOUTS, &mut progress)
        .await
        .expect("ready after the watch came back");
    let requests = requests.lock().expect("log");
    let to_apps: Vec<&String> = requests.iter().filter(|r| r.contains(APPS)).collect();
    let lists = to_apps.iter().filter(|r| !r.contains("watch=true")).count();
    let watches = to_apps.iter().filter(|r| r.contains("watch=true")).count();
    assert_eq!((lists, watches), (2, 2), "{to_apps:#?}");
    assert!(
        to_apps[2].contains("resourceVersion=100"),
        "a dropped watch resumes from the listed version: {}",
        to_apps[2]
    );
}

#[tokio::test(start_paused = true)]
async fn a_kind_whose_crd_is_not_installed_yet_is_waited_for() {
    let script = Script::default()
        .on(
            APPS,
            [Reply::List(vec![
                application("flightdeck-root", "Synced", "Healthy", 1),
                application("kafka", "Synced", "Healthy", 2),
            ])],
        )
        .on(
            KAFKAS,
            [
                Reply::Status(404),
                Reply::Status(404),
                Reply::List(vec![kafka(true)]),
            ],
        )
        .on(DEPLOYMENTS, [Reply::List(vec![deployment("processor")])]);
    let (client, _) = mock::client(script);
    let mut progress = Lines::new(Vec::new());
    wait_ready(&client, &expected(), TIMEOUTS, &mut progress)
        .await
        .expect("ready once the CRD exists");
    let out = output(progress);
    assert!(
        out.contains("Kafka kafka/flightdeck: missing (waiting for CRD kafkas.kafka.strimzi.io)"),
        "{out}"
    );
    assert!(
        out.contains("Kafka kafka/flightdeck: ready (Ready)"),
        "{out}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_component_that_never_appears_ends_with_the_total_timeout() {
    let script = Script::default()
        .on(
            APPS,
            [Reply::List(vec![application(
                "flightdeck-root",
                "Synced",
                "Healthy",
                1,
            )])],
        )
        .on(KAFKAS, [Reply::List(vec![kafka(true)])])
        .on(DEPLOYMENTS, [Reply::List(vec![deployment("processor")])]);
    let (client, _) = mock::client(script);
    let mut progress = Lines::new(Vec::new());
    let stuck = wait_ready(&client, &expected(), TIMEOUTS, &mut progress)
        .await
        .expect_err("the kafka Application never appears");
    assert_eq!(stuck.cause, Cause::Total);
    assert_eq!(stuck.not_ready.len(), 1);
    assert_eq!(
        stuck.not_ready[0].id,
        ComponentId::new(Kind::Application, "argocd", "kafka")
    );
    assert_eq!(stuck.not_ready[0].state.summary, "not created yet");
}

#[test]
fn the_repository_lists_every_component_up_waits_for() {
    let components = super::expected_components(&crate::project_root()).expect("components");
    let lines: Vec<String> = components.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn the_cluster_name_matches_the_k3d_config() {
    let docs = super::documents(&crate::project_root().join(super::CONFIG)).expect("cluster.yaml");
    assert_eq!(
        super::str_at(&docs[0], &["metadata", "name"]),
        Some(super::CLUSTER)
    );
}
