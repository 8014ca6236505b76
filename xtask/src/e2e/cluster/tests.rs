//! The write half of `e2e --cluster` against a verified Kubernetes API
//! ([`crate::cluster::verifier`]): every request in order, with the body fields that
//! matter; paused time.

use serde_json::{Value, json};

use super::images::Builds;
use super::replay::ReplayJob;
use super::*;
use crate::cluster::verifier::{Expect, Reply, Scenario, Verifier, forensics_exchanges};
use crate::images::built::Built;

const APPS: &str = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications";
const PRODUCER: &str = "/apis/apps/v1/namespaces/processing/deployments/producer";
const PODS: &str = "/api/v1/namespaces/processing/pods";
const JOBS: &str = "/apis/batch/v1/namespaces/processing/jobs";
const CONFIGMAPS: &str = "/api/v1/namespaces/processing/configmaps";
const IMAGE: &str = "flightdeck/producer:0.1.0-3f2a9c0d1b7e";

fn automated() -> Value {
    json!({"prune": true, "selfHeal": true})
}

fn app(name: &str, automated: Value) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {"syncPolicy": {"automated": automated, "syncOptions": ["CreateNamespace=true"]}}})
}

fn pause(name: &str, setting: Value) -> [crate::cluster::verifier::Exchange; 2] {
    [
        Expect::get(&format!("{APPS}/{name}")).reply(Reply::Json(app(name, setting))),
        Expect::patch(&format!("{APPS}/{name}"))
            .body("/spec/syncPolicy/automated", Value::Null)
            .reply(Reply::Json(app(name, Value::Null))),
    ]
}

fn restore(name: &str, setting: Value) -> crate::cluster::verifier::Exchange {
    Expect::patch(&format!("{APPS}/{name}"))
        .body("/spec/syncPolicy/automated", setting.clone())
        .reply(Reply::Json(app(name, setting)))
}

fn producer_deployment(replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "producer", "namespace": "processing"},
        "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "producer"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": "producer"}},
                "spec": {"containers": [{"name": "producer", "image": IMAGE,
                    "env": [{"name": "KAFKA_BOOTSTRAP_SERVERS", "value": "flightdeck-kafka-bootstrap.kafka:9092"}]}]}}}})
}

fn live_producer_pods(items: Vec<Value>) -> crate::cluster::verifier::Exchange {
    Expect::get(PODS)
        .query(
            "labelSelector",
            "app.kubernetes.io/name=producer,!flightdeck.io/e2e",
        )
        .reply(Reply::List(items))
}

#[tokio::test(start_paused = true)]
async fn auto_sync_is_paused_on_both_applications_and_each_gets_its_own_setting_back() {
    // The child had auto-sync without selfHeal: that, not the root's, comes back.
    let child = json!({"prune": true});
    let scenario = Scenario::new()
        .then_all(pause("flightdeck-root", automated()))
        .then_all(pause("flightdeck", child.clone()))
        .then(
            Expect::patch(PRODUCER)
                .body("/spec/replicas", json!(0))
                .reply(Reply::Json(producer_deployment(0))),
        )
        .then(live_producer_pods(vec![
            json!({"metadata": {"name": "producer-1"}}),
        ]))
        .then(live_producer_pods(vec![]))
        // Restored child first, then the root.
        .then(restore("flightdeck", child))
        .then(restore("flightdeck-root", automated()));
    let (client, verifier) = Verifier::start(scenario);
    let mut paused = Vec::new();
    pause_live_producer(&client, &mut paused)
        .await
        .expect("paused");
    restore_auto_sync(&client, &paused).await.expect("restored");
    verifier.finish();
}

#[tokio::test(start_paused = true)]
async fn a_pause_that_fails_half_way_restores_what_it_paused() {
    let scenario = Scenario::new()
        .then_all(pause("flightdeck-root", automated()))
        .then(Expect::get(&format!("{APPS}/flightdeck")).reply(Reply::Status(404)))
        .then(restore("flightdeck-root", automated()));
    let (client, verifier) = Verifier::start(scenario);
    let mut paused = Vec::new();
    let error = pause_live_producer(&client, &mut paused)
        .await
        .expect_err("the child Application is missing");
    assert!(
        format!("{error:#}").contains("read the Application flightdeck"),
        "{error:#}"
    );
    restore_auto_sync(&client, &paused).await.expect("restored");
    verifier.finish();
}

#[tokio::test(start_paused = true)]
async fn a_live_producer_that_does_not_stop_fails_after_the_time_limit() {
    let mut scenario = Scenario::new()
        .then_all(pause("flightdeck-root", automated()))
        .then_all(pause("flightdeck", automated()))
        .then(
            Expect::patch(PRODUCER)
                .body("/spec/replicas", json!(0))
                .reply(Reply::Json(producer_deployment(0))),
        );
    for _ in 0..60 {
        scenario = scenario.then(live_producer_pods(vec![
            json!({"metadata": {"name": "producer-1"}}),
        ]));
    }
    let (client, verifier) = Verifier::start(scenario);
    let started = tokio::time::Instant::now();
    let error = pause_live_producer(&client, &mut Vec::new())
        .await
        .expect_err("the pod never goes");
    verifier.finish();
    assert_eq!(started.elapsed().as_secs(), 118);
    assert_eq!(
        error.to_string(),
        "the live producer's pods did not stop within 120 s"
    );
}

fn job(name: &str, status: Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "processing", "resourceVersion": "5"},
        "spec": {"template": {"spec": {"containers": [{"name": "producer", "image": IMAGE}],
            "restartPolicy": "Never"}}},
        "status": status})
}

fn replay_pod(job: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{job}-x7k2p"), "namespace": "processing",
            "labels": {"job-name": job}},
        "status": {"containerStatuses": [{"name": "producer", "ready": false, "restartCount": 0,
            "image": format!("docker.io/{IMAGE}"),
            "imageID": format!("docker.io/flightdeck/producer@sha256:3f2a9c0d1b7e{}", "1".repeat(52))}]}})
}

/// The requests of one replay Job named `name` that ends with `status`, its log `log`.
fn replay_exchanges(
    name: &str,
    status: Value,
    log: &str,
) -> Vec<crate::cluster::verifier::Exchange> {
    vec![
        Expect::post(JOBS)
            .body("/metadata/name", json!(name))
            .body("/spec/template/spec/containers/0/image", json!(IMAGE))
            .body(
                "/spec/template/spec/containers/0/args",
                json!(["--replay", "/fixtures/a.json", "/fixtures/b.json"]),
            )
            .body("/spec/backoffLimit", json!(0))
            .reply(Reply::Json(job(name, json!({})))),
        Expect::get(JOBS)
            .query("fieldSelector", &format!("metadata.name={name}"))
            .reply(Reply::List(vec![job(name, json!({"active": 1}))])),
        Expect::watch(JOBS)
            .query("fieldSelector", &format!("metadata.name={name}"))
            .reply(Reply::EventsThenOpen(vec![("MODIFIED", job(name, status))])),
        Expect::get(PODS)
            .query("labelSelector", &format!("job-name={name}"))
            .reply(Reply::List(vec![replay_pod(name)])),
        Expect::get(&format!("{PODS}/{name}-x7k2p/log")).reply(Reply::Text(log.to_owned())),
    ]
}

fn fixtures() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files: Vec<PathBuf> = ["a.json", "b.json"]
        .iter()
        .map(|name| {
            let path = dir.path().join(name);
            std::fs::write(
                &path,
                format!("{{\"time\": 1, \"states\": [], \"file\": \"{name}\"}}"),
            )
            .expect("write a fixture");
            path
        })
        .collect();
    (dir, files)
}

fn prepare_exchanges() -> Vec<crate::cluster::verifier::Exchange> {
    vec![
        Expect::patch(&format!("{CONFIGMAPS}/{FIXTURES_CONFIGMAP}"))
            .query("fieldManager", "flightdeck-e2e")
            .query("force", "true")
            .body(
                "/data/a.json",
                json!("{\"time\": 1, \"states\": [], \"file\": \"a.json\"}"),
            )
            .body("/metadata/labels/flightdeck.io~1e2e", json!("fixtures"))
            .reply(Reply::Json(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": FIXTURES_CONFIGMAP, "namespace": "processing"}}))),
        Expect::get(PRODUCER).reply(Reply::Json(producer_deployment(1))),
    ]
}

#[tokio::test(start_paused = true)]
async fn the_replay_job_is_created_and_its_summary_read_from_its_log() {
    let name = "flightdeck-e2e-replay-1700000000-1";
    let log = "2026-01-01T00:00:00Z INFO producing\n{\"files\":2,\"produced\":412,\"dropped_unpositioned\":3}\n2026-01-01T00:00:01Z INFO flushed\n";
    let scenario = Scenario::new()
        .then_all(prepare_exchanges())
        .then_all(replay_exchanges(name, json!({"succeeded": 1}), log));
    let (client, verifier) = Verifier::start(scenario);
    let (_dir, files) = fixtures();
    let job = ReplayJob::prepare(&client, &files)
        .await
        .expect("prepared")
        .with_run_id(1_700_000_000);
    let (summary, pod) = job.run(&client, 1).await.expect("the replay ran");
    verifier.finish();
    assert_eq!(
        (
            summary.files,
            summary.produced,
            summary.dropped_unpositioned
        ),
        (2, 412, 3)
    );
    let builds = Builds {
        processor: built("processor", "0123456789ab"),
        producer: Built {
            name: "flightdeck/producer".into(),
            tag: "0.1.0-3f2a9c0d1b7e".into(),
            digest: format!("sha256:3f2a9c0d1b7e{}", "1".repeat(52)),
            config_digest: format!("sha256:{}", "9".repeat(64)),
        },
        superset: superset_build(),
    };
    builds
        .check_replay(&pod)
        .expect("the Job runs the producer just built");
}

#[tokio::test(start_paused = true)]
async fn a_failed_replay_job_fails_with_the_end_of_its_log() {
    let name = "flightdeck-e2e-replay-1700000000-1";
    let scenario = Scenario::new()
        .then_all(prepare_exchanges())
        .then_all(replay_exchanges(
            name,
            json!({"failed": 1}),
            "ERROR broker transport failure: flightdeck-kafka-bootstrap.kafka:9092\n",
        ));
    let (client, verifier) = Verifier::start(scenario);
    let (_dir, files) = fixtures();
    let job = ReplayJob::prepare(&client, &files)
        .await
        .expect("prepared")
        .with_run_id(1_700_000_000);
    let error = job.run(&client, 1).await.expect_err("the Job failed");
    verifier.finish();
    assert_eq!(
        error.to_string(),
        format!(
            "the replay Job {name} failed; its log:\nERROR broker transport failure: flightdeck-kafka-bootstrap.kafka:9092"
        )
    );
}

fn built(bin: &str, hex: &str) -> Built {
    Built {
        name: format!("flightdeck/{bin}"),
        tag: format!("0.1.0-{hex}"),
        digest: format!("sha256:{hex}{}", "0".repeat(52)),
        config_digest: format!("sha256:{}", "c".repeat(64)),
    }
}

fn superset_build() -> Built {
    Built {
        name: "flightdeck/superset".into(),
        tag: "6.0.0-psycopg2-2.9.10-5e7a0c9d2b41".into(),
        digest: format!("sha256:5e7a0c9d2b41{}", "2".repeat(52)),
        config_digest: format!("sha256:{}", "8".repeat(64)),
    }
}

fn superset_pod(name: &str, image: &str, image_id: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "superset",
            "labels": {"app": "superset", "release": "superset"}},
        "status": {"phase": "Running", "containerStatuses": [{"name": "superset", "ready": true,
            "restartCount": 0, "image": image, "imageID": image_id}]}})
}

fn running_superset_pods(items: Vec<Value>) -> crate::cluster::verifier::Exchange {
    Expect::get("/api/v1/namespaces/superset/pods")
        .query("labelSelector", "app=superset,release=superset")
        .query("fieldSelector", "status.phase=Running")
        .reply(Reply::List(items))
}

#[tokio::test(start_paused = true)]
async fn superset_must_run_the_image_up_built_and_an_older_one_is_named() {
    let build = superset_build();
    let current = format!("docker.io/{}", build.reference());
    let scenario = Scenario::new()
        .then(running_superset_pods(vec![superset_pod(
            "superset-7c9d5-k2x8p",
            &current,
            &build.config_digest,
        )]))
        .then(running_superset_pods(vec![
            superset_pod("superset-7c9d5-k2x8p", &current, &build.config_digest),
            superset_pod(
                "superset-5b8f4-q9w2z",
                "docker.io/flightdeck/superset:6.0.0-psycopg2-2.9.10-ffffffffffff",
                &format!("sha256:{}", "f".repeat(64)),
            ),
        ]))
        .then(running_superset_pods(vec![]));
    let (client, verifier) = Verifier::start(scenario);
    let builds = Builds {
        processor: built("processor", "0123456789ab"),
        producer: built("producer", "3f2a9c0d1b7e"),
        superset: build,
    };
    builds
        .check_superset(&client)
        .await
        .expect("the pod runs the build");
    let error = builds
        .check_superset(&client)
        .await
        .expect_err("one pod still runs an older build");
    assert!(
        error.to_string().starts_with(
            "pod superset-5b8f4-q9w2z (container superset) runs docker.io/flightdeck/superset:6.0.0-psycopg2-2.9.10-ffffffffffff"
        ),
        "{error}"
    );
    let error = builds.check_superset(&client).await.expect_err("no pod");
    assert!(
        error
            .to_string()
            .starts_with("no running Superset pod in superset"),
        "{error}"
    );
    verifier.finish();
}

#[tokio::test(start_paused = true)]
async fn a_processor_running_an_older_build_fails_before_anything_is_paused() {
    let old = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "processor-6c9f8-x2x7q", "namespace": "processing"},
        "status": {"containerStatuses": [{"name": "processor", "ready": true, "restartCount": 0,
            "image": "docker.io/flightdeck/processor:0.1.0-ffffffffffff",
            "imageID": format!("sha256:{}", "f".repeat(64))}]}});
    let scenario = Scenario::new().then(
        Expect::get(PODS)
            .query("labelSelector", "app.kubernetes.io/name=processor")
            .reply(Reply::List(vec![old])),
    );
    let (client, verifier) = Verifier::start(scenario);
    let builds = Builds {
        processor: built("processor", "0123456789ab"),
        producer: built("producer", "3f2a9c0d1b7e"),
        superset: superset_build(),
    };
    let error = builds
        .check_processor(&client)
        .await
        .expect_err("an older processor runs");
    verifier.finish();
    assert!(
        error
            .to_string()
            .starts_with("pod processor-6c9f8-x2x7q (container processor) runs docker.io/flightdeck/processor:0.1.0-ffffffffffff"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_mid_e2e_leaves_forensics_then_restores_auto_sync_and_cleans_up() {
    let scenario = Scenario::new()
        .then_all(forensics_exchanges(
            "database",
            &[("flightdeck-pg-1", "postgres")],
        ))
        .then_all(forensics_exchanges("kafka", &[]))
        .then_all(forensics_exchanges(
            "processing",
            &[("flightdeck-e2e-replay-1700000000-1-x7k2p", "producer")],
        ))
        .then(restore("flightdeck", automated()))
        .then(restore("flightdeck-root", automated()))
        .then(
            Expect::delete(JOBS)
                .query("labelSelector", E2E_LABEL)
                .body("/propagationPolicy", json!("Background"))
                .reply(Reply::List(vec![])),
        )
        .then(
            Expect::delete(&format!("{CONFIGMAPS}/{FIXTURES_CONFIGMAP}")).reply(Reply::Status(404)),
        );
    let (client, verifier) = Verifier::start(scenario);
    let target = tempfile::tempdir().expect("a temporary directory");
    let paused = vec![
        ("flightdeck-root".to_owned(), automated()),
        ("flightdeck".to_owned(), automated()),
    ];
    let error = conclude(
        &client,
        target.path(),
        Err(anyhow::anyhow!("produced 3 records, the fixtures hold 412")),
        &paused,
    )
    .await
    .expect_err("the run failed");
    verifier.finish();
    assert_eq!(
        error.to_string(),
        "produced 3 records, the fixtures hold 412"
    );
    let runs: Vec<_> = std::fs::read_dir(target.path().join("forensics"))
        .expect("forensics")
        .map(|e| e.expect("an entry").path())
        .collect();
    assert_eq!(runs.len(), 1);
    let summary = std::fs::read_to_string(runs[0].join("summary.txt")).expect("summary");
    assert!(
        summary.contains("e2e --cluster k3d failed: produced 3 records, the fixtures hold 412"),
        "{summary}"
    );
    assert!(
        runs[0]
            .join("processing/logs/flightdeck-e2e-replay-1700000000-1-x7k2p_producer_previous.log")
            .is_file()
    );
}
