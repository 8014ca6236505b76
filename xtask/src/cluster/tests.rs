//! The wait of `cargo xtask up` against a verified Kubernetes API ([`super::verifier`]),
//! in paused time: minutes of timeouts take milliseconds. Each watched collection is a
//! lane: its list, then its watch, in that order; the watches of several collections
//! interleave as they will.

use std::time::Duration;

use serde_json::json;

use super::progress::Lines;
use super::status::{ComponentId, Kind};
use super::verifier::{
    Exchange, Expect, Reply, Scenario, Verifier, application, application_at, deployment,
    forensics_exchanges, kafka,
};
use super::wait::{Cause, Goal, Timeouts, wait_ready};

const APPS: &str = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications";
const KAFKAS: &str = "/apis/kafka.strimzi.io/v1beta2/namespaces/kafka/kafkas";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/processing/deployments";

const TIMEOUTS: Timeouts = Timeouts {
    component: Duration::from_secs(600),
    total: Duration::from_secs(1800),
};

fn goal() -> Goal {
    Goal::components(vec![
        ComponentId::new(Kind::Application, "argocd", "flightdeck-root"),
        ComponentId::new(Kind::Application, "argocd", "kafka"),
        ComponentId::new(Kind::Kafka, "kafka", "flightdeck"),
        ComponentId::new(Kind::Deployment, "processing", "processor"),
    ])
}

/// A collection that is listed once and then watched (a watch that stays quiet).
pub fn listed(path: &str, items: Vec<serde_json::Value>) -> [Exchange; 2] {
    [
        Expect::get(path).reply(Reply::List(items)),
        Expect::watch(path)
            .query("resourceVersion", "100")
            .reply(Reply::EventsThenOpen(vec![]))
            .repeatedly(),
    ]
}

fn healthy_rest(scenario: Scenario) -> Scenario {
    scenario
        .lane("kafkas", listed(KAFKAS, vec![kafka(true)]))
        .lane(
            "deployments",
            listed(DEPLOYMENTS, vec![deployment("processor")]),
        )
}

fn output(lines: Lines<Vec<u8>>) -> String {
    String::from_utf8(lines.into_inner()).expect("utf-8")
}

#[tokio::test(start_paused = true)]
async fn applications_progressing_to_healthy_end_the_wait() {
    let scenario = healthy_rest(Scenario::new()).lane(
        "applications",
        [
            Expect::get(APPS).reply(Reply::List(vec![
                application("flightdeck-root", "Synced", "Healthy", 1),
                application("kafka", "OutOfSync", "Missing", 2),
            ])),
            Expect::watch(APPS)
                .query("resourceVersion", "100")
                .reply(Reply::EventsThenOpen(vec![
                    ("MODIFIED", application("kafka", "Synced", "Progressing", 3)),
                    ("MODIFIED", application("kafka", "Synced", "Healthy", 4)),
                ])),
        ],
    );
    let (client, verifier) = Verifier::start(scenario);
    let mut progress = Lines::new(Vec::new());
    let took = wait_ready(&client, &goal(), TIMEOUTS, &mut progress)
        .await
        .expect("everything becomes ready");
    verifier.finish();
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
async fn an_application_is_ready_only_at_the_revision_up_pushed() {
    const REPO: &str = "git://flightdeck-git.argocd.svc.cluster.local/flightdeck.git";
    let old = "1111111111111111111111111111111111111111";
    let new = "2222222222222222222222222222222222222222";
    let scenario = healthy_rest(Scenario::new()).lane(
        "applications",
        [
            Expect::get(APPS).reply(Reply::List(vec![
                application_at("flightdeck-root", REPO, new, 1),
                application_at("kafka", REPO, old, 2),
            ])),
            Expect::watch(APPS)
                .query("resourceVersion", "100")
                .reply(Reply::EventsThenOpen(vec![(
                    "MODIFIED",
                    application_at("kafka", REPO, new, 3),
                )])),
        ],
    );
    let (client, verifier) = Verifier::start(scenario);
    let mut goal = goal();
    for name in ["flightdeck-root", "kafka"] {
        goal.revisions.insert(
            ComponentId::new(Kind::Application, "argocd", name),
            new.to_owned(),
        );
    }
    let mut progress = Lines::new(Vec::new());
    wait_ready(&client, &goal, TIMEOUTS, &mut progress)
        .await
        .expect("ready once Argo CD reports the new revision");
    verifier.finish();
    let out = output(progress);
    assert!(
        out.contains(
            "Application argocd/kafka: waiting (Synced/Healthy at 111111111111, waiting for revision 222222222222)"
        ),
        "{out}"
    );
    assert!(
        out.contains("Application argocd/kafka: ready (Synced/Healthy)"),
        "{out}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_degraded_application_is_named_times_out_and_leaves_forensics() {
    let mut degraded = application("kafka", "Synced", "Degraded", 2);
    degraded["status"]["health"]["message"] =
        "StatefulSet kafka/flightdeck-dual-role: 0 of 1 replicas ready".into();
    let scenario = healthy_rest(Scenario::new())
        .lane(
            "applications",
            listed(
                APPS,
                vec![
                    application("flightdeck-root", "Synced", "Healthy", 1),
                    degraded,
                ],
            ),
        )
        // Then forensics of the namespaces involved, one after the other.
        .then_all(forensics_exchanges("argocd", &[]))
        .then_all(forensics_exchanges(
            "kafka",
            &[("flightdeck-dual-role-0", "kafka")],
        ));
    let (client, verifier) = Verifier::start(scenario);
    let target = tempfile::tempdir().expect("a temporary directory");
    let mut progress = Lines::new(Vec::new());
    let started = tokio::time::Instant::now();

    let error = super::ready_or_forensics(&client, &goal(), TIMEOUTS, &mut progress, target.path())
        .await
        .expect_err("a degraded application never becomes ready");
    verifier.finish();

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
    let events = std::fs::read_to_string(run.join("kafka/events.txt")).expect("events");
    assert!(
        events.contains("Back-off restarting failed container"),
        "{events}"
    );
    assert!(run.join("kafka/pods.yaml").is_file());
    for (log, text) in [
        ("flightdeck-dual-role-0_kafka.log", "scripted log line\n"),
        (
            "flightdeck-dual-role-0_kafka_previous.log",
            "scripted previous log line\n",
        ),
    ] {
        assert_eq!(
            std::fs::read_to_string(run.join("kafka/logs").join(log)).expect(log),
            text
        );
    }
    let requests = verifier.requests().join("\n");
    assert!(
        !requests.contains("/secrets"),
        "forensics never read secrets:\n{requests}"
    );
}

#[tokio::test(start_paused = true)]
async fn forensics_of_an_api_server_that_stopped_answering_end_at_the_shared_time_limit() {
    let scenario =
        Scenario::new().then(Expect::get("/api/v1/namespaces/kafka/events").reply(Reply::Hang));
    let (client, verifier) = Verifier::start(scenario);
    let target = tempfile::tempdir().expect("a temporary directory");
    let started = tokio::time::Instant::now();
    let namespaces = ["kafka".to_owned()].into();
    let line = super::forensics::save(&client, target.path(), "stuck", &namespaces).await;
    verifier.finish();
    assert_eq!(started.elapsed(), super::forensics::TIME_LIMIT);
    assert!(
        line.starts_with("collecting forensics took longer than 180s; what was written is in "),
        "{line}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_watch_resumes_and_a_gone_watch_lists_again() {
    let scenario = healthy_rest(Scenario::new()).lane(
        "applications",
        [
            Expect::get(APPS).reply(Reply::List(vec![
                application("flightdeck-root", "Synced", "Healthy", 1),
                application("kafka", "Synced", "Progressing", 2),
            ])),
            // The connection drops: the watcher watches again from the same version.
            Expect::watch(APPS)
                .query("resourceVersion", "100")
                .reply(Reply::Events(vec![])),
            // The version is too old (410 Gone): the watcher lists again.
            Expect::watch(APPS)
                .query("resourceVersion", "100")
                .reply(Reply::Events(vec![(
                    "ERROR",
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": "too old resource version", "reason": "Expired", "code": 410}),
                )])),
            Expect::get(APPS).reply(Reply::List(vec![
                application("flightdeck-root", "Synced", "Healthy", 5),
                application("kafka", "Synced", "Healthy", 6),
            ])),
            Expect::watch(APPS)
                .reply(Reply::EventsThenOpen(vec![]))
                .repeatedly(),
        ],
    );
    let (client, verifier) = Verifier::start(scenario);
    let mut progress = Lines::new(Vec::new());
    wait_ready(&client, &goal(), TIMEOUTS, &mut progress)
        .await
        .expect("ready after the watch came back");
    verifier.finish();
}

#[tokio::test(start_paused = true)]
async fn a_kind_whose_crd_is_not_installed_yet_is_waited_for() {
    let scenario = Scenario::new()
        .lane(
            "applications",
            listed(
                APPS,
                vec![
                    application("flightdeck-root", "Synced", "Healthy", 1),
                    application("kafka", "Synced", "Healthy", 2),
                ],
            ),
        )
        .lane(
            "kafkas",
            [
                Expect::get(KAFKAS).reply(Reply::Status(404)),
                Expect::get(KAFKAS).reply(Reply::Status(404)),
                Expect::get(KAFKAS).reply(Reply::List(vec![kafka(true)])),
                Expect::watch(KAFKAS)
                    .reply(Reply::EventsThenOpen(vec![]))
                    .repeatedly(),
            ],
        )
        .lane(
            "deployments",
            listed(DEPLOYMENTS, vec![deployment("processor")]),
        );
    let (client, verifier) = Verifier::start(scenario);
    let mut progress = Lines::new(Vec::new());
    wait_ready(&client, &goal(), TIMEOUTS, &mut progress)
        .await
        .expect("ready once the CRD exists");
    verifier.finish();
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
    let scenario = healthy_rest(Scenario::new()).lane(
        "applications",
        listed(
            APPS,
            vec![application("flightdeck-root", "Synced", "Healthy", 1)],
        ),
    );
    let (client, verifier) = Verifier::start(scenario);
    let mut progress = Lines::new(Vec::new());
    let stuck = wait_ready(&client, &goal(), TIMEOUTS, &mut progress)
        .await
        .expect_err("the kafka Application never appears");
    verifier.finish();
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
fn every_application_synced_from_git_must_report_the_pushed_revision() {
    let root = crate::project_root();
    let source = super::source::Source::read(&root).expect("the setting");
    let goal = super::goal(&root, &source, Some("abc")).expect("a goal");
    let names: Vec<&str> = goal.revisions.keys().map(|id| id.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "flightdeck",
            "flightdeck-root",
            "kafka",
            "kafka-topics",
            "monitoring",
            "postgres",
            "superset-dashboards",
            "tool-databases"
        ]
    );
    assert!(goal.revisions.values().all(|r| r == "abc"));
}

#[test]
fn the_cluster_name_matches_the_k3d_config() {
    let docs = super::documents(&crate::project_root().join(super::CONFIG)).expect("cluster.yaml");
    assert_eq!(
        super::str_at(&docs[0], &["metadata", "name"]),
        Some(super::CLUSTER)
    );
}

#[test]
fn timeouts_read_as_people_write_them() {
    let secs = std::time::Duration::from_secs;
    for (text, want) in [
        ("90s", secs(90)),
        ("10m", secs(600)),
        ("1h", secs(3600)),
        ("1h30m", secs(5400)),
        (" 600 ", secs(600)),
    ] {
        assert_eq!(super::parse_duration(text), Ok(want), "{text}");
    }
    for text in ["ten minutes", "10x", "-5m", ""] {
        let error = super::parse_duration(text).expect_err(text);
        assert!(error.contains(text.trim()), "{error}");
    }
}
