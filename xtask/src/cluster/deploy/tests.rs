//! `up` executing its plan: the tools it runs are fakes that record their argv
//! ([`crate::cluster::fakes`]), the Kubernetes API is a verifier of every request
//! ([`crate::cluster::verifier`]), the checkout a real git repository, the image a real
//! OCI layout. Paused time: the waits take no time.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use xshell::Shell;

use super::super::fakes::FakeTools;
use super::super::plan::{self, ClusterState, Plan, PlannedImage, UpFacts};
use super::super::snapshot::{self, Checkout, ImageTag};
use super::super::source::{IN_CLUSTER_URL, Source};
use super::super::verifier::{
    Exchange, Expect, Reply, Scenario, Verifier, application_at, deployment, forensics_exchanges,
};
use super::super::wait::Timeouts;
use super::{Connect, Deployment};
use crate::images::built::{self, Built};
use crate::up::deploy;

const APPS: &str = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/processing/deployments";
const GIT_PODS: &str = "/api/v1/namespaces/argocd/pods";

/// A checkout of a tiny platform: the setting, the app of apps, one child Application
/// synced from the checkout, our processor and a Job on our Superset image.
struct Repo {
    dir: tempfile::TempDir,
    sh: Shell,
    tools: FakeTools,
    image: Built,
    superset: Built,
}

fn write(root: &Path, file: &str, text: &str) {
    let path = root.join(file);
    fs::create_dir_all(path.parent().expect("a parent")).expect("create directories");
    fs::write(path, text).expect("write a file");
}

fn application_yaml(name: &str, path: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: argocd\nspec:\n  project: default\n  source:\n    repoURL: {IN_CLUSTER_URL}\n    targetRevision: deploy\n    path: {path}\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: processing\n"
    )
}

fn checkout(push_report: &str) -> Repo {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path();
    write(
        root,
        "infrastructure/source.yaml",
        &format!("repoURL: {IN_CLUSTER_URL}\ntargetRevision: deploy\n"),
    );
    write(
        root,
        "infrastructure/k8s/root-app.yaml",
        &application_yaml("flightdeck-root", "infrastructure/k8s/apps"),
    );
    write(
        root,
        "infrastructure/k8s/apps/flightdeck.yaml",
        &application_yaml("flightdeck", "infrastructure/k8s/flightdeck"),
    );
    write(
        root,
        "infrastructure/k8s/flightdeck/processor.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: processor\nspec:\n  template:\n    spec:\n      containers:\n        - name: processor\n          image: flightdeck/processor\n",
    );
    write(
        root,
        "infrastructure/k8s/flightdeck/dashboard-import.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: import\nspec:\n  template:\n    spec:\n      containers:\n        - name: import\n          image: flightdeck/superset\n",
    );
    write(root, ".gitignore", "target/\n");
    let image =
        built::write_test_image(&root.join("target/images"), "processor", "v1").expect("an image");
    let superset =
        built::write_test_image(&root.join("target/images"), "superset", "v1").expect("an image");

    let tools = FakeTools::new();
    for tool in ["k3d", "cargo", "kubectl"] {
        tools.ok(tool);
    }
    tools.tool(
        "terraform",
        "case \"$2\" in apply) [ -f \"$FAKE_TERRAFORM_FAILS\" ] && { echo 'Error: Kubernetes cluster unreachable' >&2; exit 1; } ;; esac; exit 0",
    );
    tools.git(&["push"], &format!("printf '{push_report}' \"$5\""));
    let sh = Shell::new().expect("a shell");
    sh.change_dir(root);
    sh.set_var("PATH", tools.path());
    sh.set_var("GIT_CONFIG_GLOBAL", "/dev/null");
    sh.set_var("GIT_CONFIG_NOSYSTEM", "1");
    sh.set_var("FAKE_TERRAFORM_FAILS", root.join("terraform-fails"));
    for line in [
        vec!["init", "--quiet", "--initial-branch=main"],
        vec!["add", "--all"],
        vec![
            "-c",
            "user.name=dev",
            "-c",
            "user.email=dev@example.org",
            "commit",
            "--quiet",
            "--no-gpg-sign",
            "-m",
            "first",
        ],
    ] {
        xshell::cmd!(sh, "git {line...}")
            .env("GIT_AUTHOR_DATE", "1700000000 +0000")
            .env("GIT_COMMITTER_DATE", "1700000000 +0000")
            .quiet()
            .run()
            .expect("set up the repository");
    }
    Repo {
        dir,
        sh,
        tools,
        image,
        superset,
    }
}

impl Repo {
    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The plan of `up` on a machine without the cluster.
    fn plan(&self) -> Plan {
        plan::up(&UpFacts {
            cluster: ClusterState::Absent,
            kubeconfig: "/home/dev/.kube/config".into(),
            images: ["processor", "superset"]
                .map(|bin| PlannedImage {
                    name: format!("flightdeck/{bin}"),
                    archive: format!("target/images/{bin}/{bin}.tar"),
                })
                .to_vec(),
            build_images: true,
            source: self.source(),
        })
    }

    fn source(&self) -> Source {
        Source::read(self.root()).expect("the setting")
    }

    /// The snapshot `up` will push: computed ahead, since it is deterministic.
    fn expected_snapshot(&self) -> String {
        let checkout = Checkout::inspect(&self.sh).expect("a checkout");
        let tags = [&self.image, &self.superset].map(|image| ImageTag {
            name: image.name.clone(),
            tag: image.tag.clone(),
        });
        snapshot::create(&self.sh, &checkout, &tags)
            .expect("a snapshot")
            .commit
    }

    fn deploy(
        &self,
        runtime: &tokio::runtime::Runtime,
        client: kube::Client,
    ) -> anyhow::Result<(Duration, Option<String>)> {
        let connect: Connect = Box::new(move || {
            let client = client.clone();
            Box::pin(async move { Ok(client) })
        });
        let deployment = Deployment {
            target: self.root().join("target"),
            source: self.source(),
            checkout: Some(Checkout::inspect(&self.sh).expect("a checkout")),
            images: ["processor", "superset"]
                .map(|bin| built::planned_in(&self.root().join("target/images"), bin))
                .to_vec(),
            timeouts: Timeouts {
                component: Duration::from_secs(600),
                total: Duration::from_secs(1800),
            },
        };
        deploy(&self.sh, runtime, connect, &self.plan(), deployment)
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime")
}

fn git_server_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "flightdeck-git-5d9c7-abcde", "namespace": "argocd"},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn find_git_server() -> Exchange {
    Expect::get(GIT_PODS)
        .query("labelSelector", "app.kubernetes.io/name=flightdeck-git")
        .reply(Reply::List(vec![git_server_pod()]))
}

fn refresh(name: &str) -> Exchange {
    Expect::patch(&format!("{APPS}/{name}"))
        .body(
            "/metadata/annotations/argocd.argoproj.io~1refresh",
            json!("normal"),
        )
        .reply(Reply::Json(application_at(name, IN_CLUSTER_URL, "x", 3)))
}

/// The wait: both Applications at `revision`, the processor available.
fn wait_at(scenario: Scenario, revision: &str) -> Scenario {
    scenario
        .then(Expect::get(APPS).reply(Reply::List(vec![
            application_at("flightdeck-root", IN_CLUSTER_URL, revision, 10),
            application_at("flightdeck", IN_CLUSTER_URL, revision, 11),
        ])))
        .then(
            Expect::watch(APPS)
                .reply(Reply::EventsThenOpen(vec![]))
                .repeatedly(),
        )
        .lane(
            "deployments",
            [
                Expect::get(DEPLOYMENTS).reply(Reply::List(vec![deployment("processor")])),
                Expect::watch(DEPLOYMENTS)
                    .reply(Reply::EventsThenOpen(vec![]))
                    .repeatedly(),
            ],
        )
}

/// Every command line `up` ran, with the push's local port as `<port>`.
fn calls(tools: &FakeTools) -> Vec<String> {
    tools
        .calls()
        .into_iter()
        .map(|call| match call.find("git://127.0.0.1:") {
            Some(at) => {
                let rest = &call[at + "git://127.0.0.1:".len()..];
                let end = rest.find('/').unwrap_or(rest.len());
                format!("{}git://127.0.0.1:<port>{}", &call[..at], &rest[end..])
            }
            None => call,
        })
        .collect()
}

fn expected_calls(snapshot: &str, through: usize) -> Vec<String> {
    let all = [
        "k3d cluster create --config infrastructure/k3d/cluster.yaml".to_owned(),
        "cargo xtask images --superset".to_owned(),
        "k3d image import --cluster flightdeck target/images/processor/processor.tar target/images/superset/superset.tar".to_owned(),
        "terraform -chdir=infrastructure/terraform init -input=false".to_owned(),
        "terraform -chdir=infrastructure/terraform apply -input=false -auto-approve -var kube_context=k3d-flightdeck -var kubeconfig_path=/home/dev/.kube/config".to_owned(),
        "kubectl --context k3d-flightdeck apply -f infrastructure/k3d/git-server.yaml".to_owned(),
        "kubectl --context k3d-flightdeck --namespace argocd rollout status deployment/flightdeck-git --timeout=180s".to_owned(),
        format!("git push --porcelain --force git://127.0.0.1:<port>/flightdeck.git {snapshot}:refs/heads/deploy"),
        "kubectl --context k3d-flightdeck apply -f infrastructure/k8s/root-app.yaml".to_owned(),
        "kubectl --context k3d-flightdeck apply -f infrastructure/k3d/ui-ingress.yaml".to_owned(),
    ];
    all[..through].to_vec()
}

#[test]
fn up_runs_its_plan_in_order_pushes_the_snapshot_and_waits_for_its_revision() {
    let repo = checkout("*\\t%s\\t[new branch]\\nDone\\n");
    let snapshot = repo.expected_snapshot();
    let runtime = paused_runtime();
    let _context = runtime.enter();
    let scenario = wait_at(
        Scenario::new()
            .then(find_git_server())
            // Refresh: every Application synced from the checkout, by name.
            .then(Expect::get(APPS).reply(Reply::List(vec![
                application_at("flightdeck-root", IN_CLUSTER_URL, "old", 1),
                application_at("flightdeck", IN_CLUSTER_URL, "old", 2),
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                    "metadata": {"name": "strimzi-operator", "namespace": "argocd"},
                    "spec": {"source": {"repoURL": "https://strimzi.io/charts/", "chart": "strimzi-kafka-operator"}}}),
            ])))
            .then(refresh("flightdeck"))
            .then(refresh("flightdeck-root")),
        &snapshot,
    );
    let (client, verifier) = Verifier::start(scenario);

    let (_, deployed) = repo.deploy(&runtime, client).expect("up succeeds");
    verifier.finish();

    assert_eq!(deployed.as_deref(), Some(snapshot.as_str()));
    assert_eq!(calls(&repo.tools), expected_calls(&snapshot, 10));
    // The snapshot carries the image's digest tag; the working tree does not.
    let spec = format!("{snapshot}:infrastructure/k8s/flightdeck/processor.yaml");
    let deployed = xshell::cmd!(repo.sh, "git show {spec}")
        .read()
        .expect("git show");
    assert!(
        deployed.contains(&format!("image: flightdeck/processor:{}", repo.image.tag)),
        "{deployed}"
    );
    assert!(repo.image.tag.starts_with("0.1.0-") && repo.image.tag.len() == "0.1.0-".len() + 12);
    // Superset's image too, by the tag of the build that was imported.
    let spec = format!("{snapshot}:infrastructure/k8s/flightdeck/dashboard-import.yaml");
    let job = xshell::cmd!(repo.sh, "git show {spec}")
        .read()
        .expect("git show");
    assert!(
        job.contains(&format!("image: flightdeck/superset:{}", repo.superset.tag)),
        "{job}"
    );
}

#[test]
fn a_second_up_with_nothing_changed_pushes_nothing_and_refreshes_nothing() {
    let repo = checkout("=\\t%s\\t[up to date]\\nDone\\n");
    let snapshot = repo.expected_snapshot();
    let runtime = paused_runtime();
    let _context = runtime.enter();
    // No refresh: the verifier fails on any request to the Applications but the wait's.
    let scenario = wait_at(Scenario::new().then(find_git_server()), &snapshot);
    let (client, verifier) = Verifier::start(scenario);
    repo.deploy(&runtime, client).expect("up succeeds");
    verifier.finish();
    assert_eq!(calls(&repo.tools), expected_calls(&snapshot, 10));
}

#[test]
fn up_waits_until_argo_cd_reports_the_new_revision() {
    let repo = checkout("+\\t%s\\t1111111...2222222 (forced update)\\nDone\\n");
    let snapshot = repo.expected_snapshot();
    let runtime = paused_runtime();
    let _context = runtime.enter();
    let scenario = Scenario::new()
        .then(find_git_server())
        .then(Expect::get(APPS).reply(Reply::List(vec![application_at(
            "flightdeck-root",
            IN_CLUSTER_URL,
            "old",
            1,
        )])))
        .then(refresh("flightdeck-root"))
        .then(Expect::get(APPS).reply(Reply::List(vec![
            application_at("flightdeck-root", IN_CLUSTER_URL, "old", 10),
            application_at("flightdeck", IN_CLUSTER_URL, "old", 11),
        ])))
        // Argo CD reports the new revision on both, a minute later.
        .then(Expect::watch(APPS).reply(Reply::EventsThenOpen(vec![
            (
                "MODIFIED",
                application_at("flightdeck", IN_CLUSTER_URL, &snapshot, 12),
            ),
            (
                "MODIFIED",
                application_at("flightdeck-root", IN_CLUSTER_URL, &snapshot, 13),
            ),
        ])))
        .lane(
            "deployments",
            [
                Expect::get(DEPLOYMENTS).reply(Reply::List(vec![deployment("processor")])),
                Expect::watch(DEPLOYMENTS)
                    .reply(Reply::EventsThenOpen(vec![]))
                    .repeatedly(),
            ],
        );
    let (client, verifier) = Verifier::start(scenario);
    repo.deploy(&runtime, client)
        .expect("ready at the new revision");
    verifier.finish();
}

#[test]
fn a_failed_step_stops_up_and_leaves_forensics_of_argo_cd_and_the_system() {
    let repo = checkout("*\\t%s\\t[new branch]\\nDone\\n");
    fs::write(repo.root().join("terraform-fails"), "").expect("make terraform fail");
    let runtime = paused_runtime();
    let _context = runtime.enter();
    let scenario = Scenario::new()
        .then_all(forensics_exchanges(
            "argocd",
            &[("argocd-server-7d8f9-xyz12", "server")],
        ))
        .then_all(forensics_exchanges("kube-system", &[]));
    let (client, verifier) = Verifier::start(scenario);

    let error = repo
        .deploy(&runtime, client)
        .expect_err("terraform apply fails");
    verifier.finish();

    let message = format!("{error:#}");
    assert!(
        message.starts_with("step 5: `terraform -chdir=infrastructure/terraform apply"),
        "{message}"
    );
    assert!(
        message.contains("\nforensics (logs, events, YAML) in "),
        "{message}"
    );
    assert_eq!(
        calls(&repo.tools),
        expected_calls("", 5),
        "nothing runs after the failed step"
    );
    let runs: Vec<_> = fs::read_dir(repo.root().join("target/forensics"))
        .expect("forensics")
        .map(|e| e.expect("an entry").path())
        .collect();
    assert_eq!(runs.len(), 1);
    let summary = fs::read_to_string(runs[0].join("summary.txt")).expect("summary");
    assert!(
        summary.contains("namespaces: argocd, kube-system"),
        "{summary}"
    );
    assert!(
        summary.contains("cargo xtask up failed: step 5"),
        "{summary}"
    );
    assert!(
        runs[0]
            .join("argocd/logs/argocd-server-7d8f9-xyz12_server.log")
            .is_file()
    );
}

#[test]
fn a_git_server_that_is_not_ready_stops_up_before_the_app_of_apps() {
    let repo = checkout("*\\t%s\\t[new branch]\\nDone\\n");
    let runtime = paused_runtime();
    let _context = runtime.enter();
    let mut pod = git_server_pod();
    pod["status"]["conditions"][0]["status"] = json!("False");
    let scenario = Scenario::new()
        .then(
            Expect::get(GIT_PODS)
                .query("labelSelector", "app.kubernetes.io/name=flightdeck-git")
                .reply(Reply::List(vec![pod])),
        )
        .then_all(forensics_exchanges("argocd", &[]))
        .then_all(forensics_exchanges("kube-system", &[]));
    let (client, verifier) = Verifier::start(scenario);
    let error = repo
        .deploy(&runtime, client)
        .expect_err("no ready git server");
    verifier.finish();
    let message = format!("{error:#}");
    assert!(
        message.contains("no ready pod of the git server: `kubectl --context k3d-flightdeck -n argocd get pods -l app.kubernetes.io/name=flightdeck-git` shows why"),
        "{message}"
    );
    assert_eq!(calls(&repo.tools), expected_calls("", 7));
}
