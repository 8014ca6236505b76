//! `cargo xtask doctor`, `up --dry-run` and `down --dry-run` as a user runs them, with
//! scripted stand-ins for docker, k3d and the other tools on an otherwise empty `PATH`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// Writes an executable `name` into `dir` that runs `script` (POSIX sh).
fn fake(dir: &Path, name: &str, script: &str) {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("write a fake tool");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("make it executable");
}

/// Tools that work, as on a machine ready for `up`; `docker info` reports the daemon.
fn tools(daemon: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let info = if daemon {
        "echo 28.2.2"
    } else {
        "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2; exit 1"
    };
    fake(
        dir.path(),
        "docker",
        &format!(
            "case \"$1\" in --version) echo 'Docker version 28.2.2, build e6534b4';; info) {info};; esac"
        ),
    );
    fake(dir.path(), "kubectl", "echo 'Client Version: v1.33.4'");
    fake(dir.path(), "terraform", "echo 'OpenTofu v1.10.5'");
    fake(dir.path(), "skopeo", "echo 'skopeo version 1.20.0'");
    fake(dir.path(), "python3", "echo 'Python 3.13.7'");
    dir
}

fn with_k3d(dir: &Path, clusters_json: &str) {
    fake(
        dir,
        "k3d",
        &format!(
            "case \"$1\" in version) echo 'k3d version v5.8.3';; cluster) echo '{clusters_json}';; esac"
        ),
    );
}

fn xtask(path: &Path, args: &[&str]) -> (Output, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("PATH", path)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the xtask binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

#[test]
fn doctor_names_what_up_lacks_with_its_fix_and_fails() {
    let path = tools(false);
    let (output, text) = xtask(path.path(), &["doctor"]);
    assert!(!output.status.success(), "{text}");
    for expected in [
        "`cargo xtask up` cannot run here: missing docker daemon, k3d.",
        "k3d (up, down, e2e --cluster): `k3d` is not on PATH",
        "fix: `nix develop` (flake.nix pins k3d)",
        "docker daemon (up, down, e2e --cluster): `docker info --format {{.ServerVersion}}` fails: Cannot connect to the Docker daemon",
        "fix: start the Docker daemon",
        "missing nix",
    ] {
        assert!(text.contains(expected), "no `{expected}` in\n{text}");
    }
}

#[test]
fn doctor_passes_when_up_has_every_tool() {
    let path = tools(true);
    with_k3d(path.path(), "[]");
    let (output, text) = xtask(path.path(), &["doctor"]);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("`cargo xtask up` has everything it needs."),
        "{text}"
    );
    assert!(
        text.contains("terraform         1.10.5"),
        "OpenTofu counts as terraform:\n{text}"
    );
}

#[test]
fn up_dry_run_prints_every_command_line_and_runs_none() {
    let path = tools(true);
    with_k3d(path.path(), "[]");
    let (output, text) = xtask(path.path(), &["up", "--dry-run"]);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("$ k3d cluster create --config infrastructure/k3d/cluster.yaml"),
        "{text}"
    );
    assert!(
        text.contains(
            "$ kubectl --context k3d-flightdeck apply -f infrastructure/k8s/root-app.yaml"
        ),
        "{text}"
    );
    assert!(!text.contains("==> [1/"), "a dry run runs nothing:\n{text}");
}

#[test]
fn up_dry_run_on_a_running_cluster_does_not_recreate_it() {
    let path = tools(true);
    with_k3d(
        path.path(),
        r#"[{"name":"flightdeck","serversRunning":1,"serversCount":1}]"#,
    );
    let (output, text) = xtask(path.path(), &["up", "--dry-run"]);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("(skipped: it exists and runs)"), "{text}");
    assert!(!text.contains("cluster create"), "{text}");
}

#[test]
fn down_without_a_cluster_has_nothing_to_delete() {
    let path = tools(true);
    with_k3d(path.path(), "[]");
    let (output, text) = xtask(path.path(), &["down", "--dry-run"]);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("(skipped: there is none)"), "{text}");
}
