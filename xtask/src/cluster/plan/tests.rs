//! The plans of `up` and `down` as a reviewer reads them: snapshots of the command lines.

use super::*;

fn facts(cluster: ClusterState) -> UpFacts {
    UpFacts {
        cluster,
        kubeconfig: "~/.kube/config".into(),
        target: "target".into(),
        images: crate::cluster::service_images(&crate::project_root()).expect("kustomization"),
        build_images: true,
    }
}

#[test]
fn up_on_a_fresh_machine_creates_everything() {
    insta::assert_snapshot!(up(&facts(ClusterState::Absent)).to_string());
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
fn down_deletes_the_cluster_and_its_terraform_state() {
    let state = vec![format!("{TERRAFORM_DIR}/terraform.tfstate")];
    insta::assert_snapshot!(down(ClusterState::Running, &state).to_string());
}

#[test]
fn down_without_a_cluster_does_nothing() {
    let plan = down(ClusterState::Absent, &[]);
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.steps[0].action, Action::Skip("there is none".into()));
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
    let running = r#"[{"name":"flightdeck","serversRunning":1,"serversCount":1,"nodes":[]}]"#;
    assert_eq!(
        cluster_state(running).expect("a list"),
        ClusterState::Running
    );
    assert!(cluster_state("no json").is_err());
}

#[test]
fn arguments_with_spaces_are_quoted() {
    let line = ["echo".to_owned(), "a b".to_owned(), "it's".to_owned()];
    assert_eq!(quoted(&line), r"echo 'a b' 'it'\''s'");
}
