//! The plans of `up` and `down` as a reviewer reads them: snapshots of the command lines.

use super::*;

fn facts(cluster: ClusterState) -> UpFacts {
    UpFacts {
        cluster,
        kubeconfig: "~/.kube/config".into(),
        images: ["processor", "producer", "superset"]
            .map(|bin| PlannedImage {
                name: format!("flightdeck/{bin}"),
                archive: format!("target/images/{bin}/{bin}.tar"),
            })
            .to_vec(),
        build_images: true,
        source: Source::read(&crate::project_root()).expect("infrastructure/source.yaml"),
    }
}

#[test]
fn up_on_a_fresh_machine_creates_everything() {
    let plan = up(&facts(ClusterState::Absent)).to_string();
    assert!(
        !plan.contains("github.com") && !plan.contains(&"0".repeat(12)),
        "the checkout is deployed, with digest tags: {plan}"
    );
    insta::assert_snapshot!(plan);
}

#[test]
fn up_on_a_running_cluster_creates_nothing_new() {
    let plan = up(&facts(ClusterState::Running));
    assert!(
        !plan.to_string().contains("cluster create"),
        "an existing cluster is never recreated"
    );
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn up_with_a_remote_source_deploys_no_snapshot() {
    let mut facts = facts(ClusterState::Running);
    facts.source =
        Source::parse("repoURL: https://git.example.org/flightdeck.git\ntargetRevision: main\n")
            .expect("a remote source");
    let plan = up(&facts);
    assert!(
        !plan.steps.iter().any(|s| matches!(
            s.action,
            Action::Snapshot(_) | Action::Push(_) | Action::Refresh(_)
        )),
        "{plan}"
    );
    assert!(
        plan.to_string().contains(
            "(skipped: infrastructure/source.yaml names https://git.example.org/flightdeck.git at main: Argo CD syncs what is pushed there, not this working tree)"
        ),
        "{plan}"
    );
    assert!(!plan.to_string().contains(GIT_SERVER_MANIFEST), "{plan}");
}

#[test]
fn down_deletes_the_cluster_and_its_terraform_state() {
    let state = vec![format!("{TERRAFORM_DIR}/terraform.tfstate")];
    insta::assert_snapshot!(
        down(&ClusterState::Running, &state)
            .expect("a plan")
            .to_string()
    );
}

#[test]
fn down_without_a_cluster_does_nothing() {
    let plan = down(&ClusterState::Absent, &[]).expect("a plan");
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.steps[0].action, Action::Skip("there is none".into()));
}

#[test]
fn down_refuses_a_cluster_someone_else_made() {
    let error =
        down(&ClusterState::Foreign("no label".into()), &[]).expect_err("not ours to delete");
    assert!(
        error
            .to_string()
            .contains("`cargo xtask down` does not delete someone else's cluster"),
        "{error}"
    );
}

#[test]
fn the_cluster_state_comes_from_k3d_s_json() {
    assert_eq!(
        cluster_state("[]\n").expect("empty list"),
        ClusterState::Absent
    );
    let listed = r#"[{"name":"other","serversRunning":1},{"name":"flightdeck","serversRunning":0,"serversCount":1}]"#;
    assert_eq!(
        cluster_state(listed).expect("a list"),
        ClusterState::Stopped
    );
    let running = r#"[{"name":"flightdeck","serversRunning":1,"serversCount":1,"nodes":[
        {"name":"k3d-flightdeck-server-0","role":"server","runtimeLabels":{"k3d.cluster":"flightdeck","dev.flightdeck.config":"infrastructure/k3d/cluster.yaml"}},
        {"name":"k3d-flightdeck-serverlb","role":"loadbalancer","runtimeLabels":{"k3d.cluster":"flightdeck"}}]}]"#;
    assert_eq!(
        cluster_state(running).expect("a list"),
        ClusterState::Running
    );
    assert!(cluster_state("no json").is_err());
}

#[test]
fn a_cluster_of_our_name_without_our_label_is_someone_else_s() {
    let foreign = r#"[{"name":"flightdeck","serversRunning":1,"serversCount":1,"nodes":[
        {"name":"k3d-flightdeck-server-0","role":"server","runtimeLabels":{"k3d.cluster":"flightdeck","app":"k3d"}}]}]"#;
    let state = cluster_state(foreign).expect("a list");
    let ClusterState::Foreign(why) = &state else {
        panic!("{state:?}");
    };
    let message = foreign_cluster(why).to_string();
    assert!(
        message.contains("was not created from infrastructure/k3d/cluster.yaml"),
        "{message}"
    );
    assert!(message.contains("Nothing was changed"), "{message}");
    assert!(
        message.contains("`k3d cluster delete flightdeck`"),
        "{message}"
    );
}

#[test]
fn the_k3d_config_carries_the_label_that_marks_our_cluster() {
    let text = std::fs::read_to_string(crate::project_root().join(CONFIG)).expect("cluster.yaml");
    let config: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    let labels = config["options"]["runtime"]["labels"]
        .as_sequence()
        .expect("runtime labels");
    assert!(
        labels.iter().any(|l| {
            l["label"].as_str() == Some(&format!("{CONFIG_LABEL}={CONFIG}"))
                && l["nodeFilters"][0].as_str() == Some("server:*")
        }),
        "{labels:?}"
    );
}

#[test]
fn push_reports_are_read_from_git_s_porcelain_output() {
    use crate::cluster::deploy::pushed;
    let reference = "refs/heads/deploy";
    let new =
        "To git://127.0.0.1:4000/flightdeck.git\n*\tabc:refs/heads/deploy\t[new branch]\nDone\n";
    assert!(pushed(new, reference).expect("new branch"));
    let forced = "To git://127.0.0.1:4000/flightdeck.git\n+\tabc:refs/heads/deploy\t1a2b...3c4d (forced update)\nDone\n";
    assert!(pushed(forced, reference).expect("forced"));
    let same =
        "To git://127.0.0.1:4000/flightdeck.git\n=\tabc:refs/heads/deploy\t[up to date]\nDone\n";
    assert!(!pushed(same, reference).expect("up to date"));
    let refused = "To git://x\n!\tabc:refs/heads/deploy\t[remote rejected] (pushes only through kubectl port-forward)\nDone\n";
    assert!(
        pushed(refused, reference)
            .expect_err("refused")
            .to_string()
            .contains("the git server refused the snapshot")
    );
    assert!(pushed("Done\n", reference).is_err());
}

#[test]
fn arguments_with_spaces_are_quoted() {
    let line = ["echo".to_owned(), "a b".to_owned(), "it's".to_owned()];
    assert_eq!(quoted(&line), r"echo 'a b' 'it'\''s'");
}
