//! `cargo xtask e2e --cluster k3d`: the local e2e's replay and snapshots, against the
//! platform `cargo xtask up` runs.
//!
//! - Before anything changes: the Kafka port-forward's host port must be free, and the
//!   images `cargo xtask up` built must be the ones the processor pods and the Superset
//!   web pods run (read from their status, not from the manifests).
//! - The deployed processor does the work. The live producer would add real flights to
//!   the table, so it is paused for the run: auto-sync of the app of apps and of the
//!   `flightdeck` Application is switched off (each one's setting remembered) and the
//!   producer scaled to 0; at the end each Application gets its own setting back, the
//!   child first, and Argo CD restores the producer from git.
//! - The table is emptied once the processor caught up; the DLQ cannot be emptied, so the
//!   run reads only what comes after its end offsets ([`landed::Landed::read_since`]).
//! - The producer image replays the committed fixtures as a Kubernetes Job, the fixtures
//!   shipped in a ConfigMap; its summary line is read from the pod's log, and its pod
//!   must run the producer image just built.
//! - The test reaches PostgreSQL and Kafka through port-forwards made with `kube`. Kafka
//!   is read from the host: the broker pod's `host` listener advertises `localhost:9094`
//!   (infrastructure/k8s/kafka/cluster/kafka.yaml), so forwarding local port 9094 to it
//!   gives a client that follows the broker's metadata exactly that address. That keeps
//!   one implementation of the DLQ read and of the assertions ([`landed`]), not a second
//!   one parsing a Job's output.
//!
//! On failure the run writes forensics of `processing`, `kafka` and `database`, within
//! the one time limit of [`crate::cluster::forensics::save`].

mod images;
mod reach;
mod replay;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use xshell::Shell;

use self::images::Builds;
use self::reach::forward;
use self::replay::ReplayJob;
use super::landed::{self, Expected, Landed};
use crate::cluster::status::Kind;
use crate::cluster::wait::{Goal, Timeouts};
use crate::cluster::{self, preflight, progress};
use crate::pipeline::{self, Observer};

const NAMESPACE: &str = "processing";
const FIXTURES_CONFIGMAP: &str = "flightdeck-e2e-fixtures";
const E2E_LABEL: &str = "flightdeck.io/e2e";
/// The Kafka listener that advertises `localhost:9094` (see the module docs).
const KAFKA_HOST_PORT: u16 = preflight::E2E_KAFKA_PORT.0;
/// The Applications whose auto-sync is paused: the app of apps first (so it cannot
/// undo the child), then ours, which owns the producer.
const PAUSED_APPS: [&str; 2] = ["flightdeck-root", "flightdeck"];
const READY: Timeouts = Timeouts {
    component: Duration::from_secs(300),
    total: Duration::from_secs(600),
};
/// How long the live producer's pods may take to stop.
const PRODUCER_STOP: Duration = Duration::from_secs(120);

/// Runs the cluster e2e with `fixtures`; `snapshots` compares with the committed ones.
pub fn run(sh: &Shell, fixtures: &[PathBuf], snapshots: bool) -> anyhow::Result<()> {
    let expected = Expected::from_fixtures(fixtures)?;
    let root = sh.current_dir();
    let target = pipeline::target_dir(sh);
    // Before anything changes in the cluster.
    preflight::require_free_ports(&[preflight::E2E_KAFKA_PORT])?;
    let builds = Builds::read(&target.join("images"))?;
    // NB: the rdkafka reads block their thread; the port-forwards need others.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let first = runtime.block_on(async {
        let client = cluster::client().await?;
        eprintln!("e2e --cluster k3d: checking that every component is ready");
        let goal = Goal::components(cluster::expected_components(&root)?);
        let mut progress = progress::for_stderr();
        cluster::ready_or_forensics(&client, &goal, READY, progress.as_mut(), &target).await?;
        drop(progress);
        builds.check_processor(&client).await?;
        builds.check_superset(&client).await?;

        let mut paused = Vec::new();
        let result = match pause_live_producer(&client, &mut paused).await {
            Ok(()) => replay_and_check(&client, fixtures, &expected, &builds).await,
            Err(error) => Err(error),
        };
        conclude(&client, &target, result, &paused).await
    })?;
    if snapshots {
        first.assert_snapshots();
    } else {
        eprintln!("e2e: custom fixtures: counts checked against the files, snapshots skipped");
    }
    eprintln!(
        "e2e --cluster k3d: passed: {} rows, {} countries, {} DLQ records; the replay changed nothing",
        first.rows,
        first.per_country.len(),
        first.dlq.len()
    );
    Ok(())
}

/// Ends a run that paused `paused`: on failure, forensics first (they must see the failed
/// Job's pod), then auto-sync restored and the e2e objects deleted, pass or fail.
async fn conclude(
    client: &kube::Client,
    target: &std::path::Path,
    result: anyhow::Result<Landed>,
    paused: &[(String, Value)],
) -> anyhow::Result<Landed> {
    if let Err(error) = &result {
        let namespaces: BTreeSet<String> =
            ["processing", "kafka", "database"].map(String::from).into();
        let report = format!("e2e --cluster k3d failed: {error:#}");
        let saved = cluster::forensics::save(client, target, &report, &namespaces).await;
        eprintln!("e2e: {saved}");
    }
    let restored = restore_auto_sync(client, paused).await;
    let cleaned = delete_e2e_objects(client).await;
    let first = result?;
    restored?;
    cleaned?;
    Ok(first)
}

/// Switches off auto-sync (root first, so it cannot undo the child), remembering each
/// Application's setting in `paused`, then scales the live producer to zero and waits
/// until its pods are gone.
async fn pause_live_producer(
    client: &kube::Client,
    paused: &mut Vec<(String, Value)>,
) -> anyhow::Result<()> {
    eprintln!("e2e: pausing the live producer (auto-sync off, replicas 0)");
    let apps: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "argocd", &Kind::Application.api_resource());
    for app in PAUSED_APPS {
        let current = apps
            .get(app)
            .await
            .with_context(|| format!("read the Application {app}"))?;
        let automated = current.data["spec"]["syncPolicy"]["automated"].clone();
        let patch = json!({"spec": {"syncPolicy": {"automated": null}}});
        apps.patch(app, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("switch off auto-sync of the Application {app}"))?;
        paused.push((app.to_owned(), automated));
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    deployments
        .patch(
            "producer",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .context("scale the producer to 0")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let live =
        ListParams::default().labels(&format!("app.kubernetes.io/name=producer,!{E2E_LABEL}"));
    let poll = Duration::from_secs(2);
    let started = tokio::time::Instant::now();
    loop {
        if pods
            .list(&live)
            .await
            .context("list producer pods")?
            .items
            .is_empty()
        {
            return Ok(());
        }
        if started.elapsed() + poll >= PRODUCER_STOP {
            bail!(
                "the live producer's pods did not stop within {} s",
                PRODUCER_STOP.as_secs()
            );
        }
        tokio::time::sleep(poll).await;
    }
}

/// Gives every paused Application its own auto-sync setting back, the child first; Argo
/// CD then restores the producer's replicas from git.
async fn restore_auto_sync(
    client: &kube::Client,
    paused: &[(String, Value)],
) -> anyhow::Result<()> {
    let apps: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "argocd", &Kind::Application.api_resource());
    let mut failed = Vec::new();
    for (app, automated) in paused.iter().rev() {
        let patch = json!({"spec": {"syncPolicy": {"automated": automated}}});
        if let Err(error) = apps
            .patch(app, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            failed.push(format!("{app}: {error}"));
        }
    }
    ensure!(
        failed.is_empty(),
        "switching auto-sync back on failed (`kubectl --context {} -n argocd edit application <name>` restores `spec.syncPolicy.automated`): {}",
        cluster::CONTEXT,
        failed.join("; ")
    );
    if !paused.is_empty() {
        eprintln!("e2e: auto-sync is back on: Argo CD restores the live producer");
    }
    Ok(())
}

async fn delete_e2e_objects(client: &kube::Client) -> anyhow::Result<()> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    jobs.delete_collection(
        &DeleteParams::background(),
        &ListParams::default().labels(E2E_LABEL),
    )
    .await
    .context("delete the replay Jobs")?;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    match maps
        .delete(FIXTURES_CONFIGMAP, &DeleteParams::default())
        .await
    {
        Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
        Err(error) => Err(error).context("delete the fixtures ConfigMap"),
    }
}

/// Everything between pausing and restoring: the replay twice and every check.
async fn replay_and_check(
    client: &kube::Client,
    fixtures: &[PathBuf],
    expected: &Expected,
    builds: &Builds,
) -> anyhow::Result<Landed> {
    let (at, _forwards) = forward(client).await?;
    let observer = Observer::connect(&at).await?;
    observer.wait_drained(None, crate::e2e::DRAINED).await?;
    sqlx::query("TRUNCATE flight_data")
        .execute(&observer.pool)
        .await
        .context("empty flight_data before the replay")?;
    let since = landed::dlq_end_offsets(&at.bootstrap_servers)?;
    let job = ReplayJob::prepare(client, fixtures).await?;

    eprintln!("e2e: replaying {} fixture(s) in a Job", fixtures.len());
    let (summary, pod) = job.run(client, 1).await?;
    builds.check_replay(&pod)?;
    ensure!(
        summary.produced == expected.produced,
        "produced {} records, the fixtures hold {}",
        summary.produced,
        expected.produced
    );
    observer.wait_drained(None, crate::e2e::DRAINED).await?;
    let first = Landed::read_since(&observer, &at.bootstrap_servers, &since).await?;
    first.assert_matches(expected)?;

    eprintln!("e2e: replaying the same fixtures again");
    job.run(client, 2).await?;
    observer.wait_drained(None, crate::e2e::DRAINED).await?;
    let second = Landed::read_since(&observer, &at.bootstrap_servers, &since).await?;
    second.assert_replay_changed_nothing(&first)?;
    Ok(first)
}

#[cfg(test)]
mod tests;
