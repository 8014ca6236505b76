//! The producer's replay as a Kubernetes Job: the fixtures shipped in a ConfigMap, the
//! image and broker read from the live producer Deployment, the summary line read from
//! the pod's log.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use localstack::process::last_lines;
use serde_json::json;

use super::{E2E_LABEL, FIXTURES_CONFIGMAP, NAMESPACE};
use crate::pipeline::ReplaySummary;

/// How long one replay Job may take.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

/// The replay Job's template: the live producer's image and broker, the fixtures mounted.
pub struct ReplayJob {
    image: String,
    bootstrap: String,
    files: Vec<String>,
    run_id: u64,
}

impl ReplayJob {
    /// Ships the fixtures in the ConfigMap and reads image and broker from the producer.
    pub async fn prepare(client: &kube::Client, fixtures: &[PathBuf]) -> anyhow::Result<Self> {
        let mut data = std::collections::BTreeMap::new();
        for file in fixtures {
            let name = file_name(file)?;
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("read {}", file.display()))?;
            data.insert(name, text);
        }
        let files = data
            .keys()
            .map(|name| format!("/fixtures/{name}"))
            .collect();
        let map: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": FIXTURES_CONFIGMAP, "labels": {E2E_LABEL: "fixtures"}},
            "data": data,
        }))?;
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
        maps.patch(
            FIXTURES_CONFIGMAP,
            &PatchParams::apply("flightdeck-e2e").force(),
            &Patch::Apply(&map),
        )
        .await
        .context("ship the fixtures in a ConfigMap")?;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
        let producer = deployments
            .get("producer")
            .await
            .context("read the producer Deployment")?;
        let container = producer
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.into_iter().next())
            .context("the producer Deployment has no container")?;
        let bootstrap = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "KAFKA_BOOTSTRAP_SERVERS")
            .and_then(|e| e.value.clone())
            .context("the producer has no KAFKA_BOOTSTRAP_SERVERS")?;
        Ok(Self {
            image: container.image.context("the producer has no image")?,
            bootstrap,
            files,
            run_id: SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
        })
    }

    /// The same Jobs under a fixed run id (tests know their names in advance).
    #[cfg(test)]
    pub fn with_run_id(mut self, run_id: u64) -> Self {
        self.run_id = run_id;
        self
    }

    /// The Job `name`: the producer replaying every fixture once, locked down like the
    /// producer Deployment, and labelled so the `allow-kafka` NetworkPolicy applies.
    fn job(&self, name: &str) -> anyhow::Result<Job> {
        let labels = json!({"app.kubernetes.io/name": "producer", "app.kubernetes.io/part-of": "flightdeck", E2E_LABEL: "replay"});
        let mut args = vec!["--replay".to_owned()];
        args.extend(self.files.iter().cloned());
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": labels},
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 3600, "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "producer", "image": self.image, "imagePullPolicy": "IfNotPresent", "args": args,
                        "env": [{"name": "KAFKA_BOOTSTRAP_SERVERS", "value": self.bootstrap}],
                        "volumeMounts": [{"name": "fixtures", "mountPath": "/fixtures", "readOnly": true}],
                        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]}}}],
                    "volumes": [{"name": "fixtures", "configMap": {"name": FIXTURES_CONFIGMAP}}]}}}
        }))
        .context("build the replay Job")
    }

    /// Runs replay number `n` to completion; returns the producer's summary and the pod
    /// that ran it.
    pub async fn run(&self, client: &kube::Client, n: u32) -> anyhow::Result<(ReplaySummary, Pod)> {
        let name = format!("flightdeck-e2e-replay-{}-{n}", self.run_id);
        let job = self.job(&name)?;
        let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
        jobs.create(&PostParams::default(), &job)
            .await
            .with_context(|| format!("create the Job {name}"))?;
        let finished = |job: Option<&Job>| {
            job.and_then(|j| j.status.as_ref())
                .is_some_and(|s| s.succeeded.unwrap_or(0) > 0 || s.failed.unwrap_or(0) > 0)
        };
        let done = tokio::time::timeout(JOB_TIMEOUT, await_condition(jobs, &name, finished))
            .await
            .with_context(|| {
                format!(
                    "the Job {name} did not finish within {} s",
                    JOB_TIMEOUT.as_secs()
                )
            })??;
        let (pod, log) = job_pod_and_log(client, &name).await?;
        let succeeded = done
            .and_then(|j| j.status)
            .and_then(|s| s.succeeded)
            .unwrap_or(0)
            > 0;
        ensure!(
            succeeded,
            "the replay Job {name} failed; its log:\n{}",
            last_lines(&log, 30)
        );
        // NB: the pod log interleaves stderr (the producer's log) with the summary line
        // on stdout: the last line that parses as a summary is it.
        let summary = log
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str(line.trim()).ok())
            .with_context(|| {
                format!(
                    "no summary line in the log of {name}:\n{}",
                    last_lines(&log, 30)
                )
            })?;
        Ok((summary, pod))
    }
}

fn file_name(file: &Path) -> anyhow::Result<String> {
    Ok(file
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no file name", file.display()))?
        .to_owned())
}

/// The Job's pod and its log.
async fn job_pod_and_log(client: &kube::Client, job: &str) -> anyhow::Result<(Pod, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .with_context(|| format!("list the pods of the Job {job}"))?;
    let pod = list
        .items
        .into_iter()
        .next()
        .with_context(|| format!("the Job {job} has no pod"))?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let log = pods
        .logs(&name, &Default::default())
        .await
        .with_context(|| format!("read the log of {name}"))?;
    Ok((pod, log))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_job_runs_the_live_producer_s_image_on_the_shipped_fixtures() {
        let replay = ReplayJob {
            image: "flightdeck/producer:0.1.0-3f2a9c0d1b7e".into(),
            bootstrap: "flightdeck-kafka-bootstrap.kafka:9092".into(),
            files: vec![
                "/fixtures/states-1649392659.json".into(),
                "/fixtures/states-1649392669.json".into(),
            ],
            run_id: 1_700_000_000,
        };
        let job = replay
            .job("flightdeck-e2e-replay-1700000000-1")
            .expect("a Job");
        insta::assert_yaml_snapshot!(job);
    }
}
