//! `cargo xtask doctor`, `up`, `down` and `lint` as a user runs them, with scripted
//! stand-ins for docker, k3d and the other tools on an otherwise empty `PATH`; each
//! stand-in records its argv, so a test can tell that nothing was created.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
}

/// Writes an executable `name` into `dir` that records its argv in `calls.log`, then
/// runs `script` (POSIX sh).
fn fake(dir: &Path, name: &str, script: &str) {
    let path = dir.join(name);
    let log = dir.join("calls.log");
    fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s' {name} >> '{log}'; for a in \"$@\"; do printf ' %s' \"$a\" >> '{log}'; done; echo >> '{log}'\n{script}\n",
            log = log.display()
        ),
    )
    .expect("write a fake tool");
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
    // The real git, unrecorded: `up` reads the checkout with it.
    let git = dir.path().join("git");
    fs::write(
        &git,
        format!(
            "#!/bin/sh\nexec '{}' \"$@\"\n",
            localstack::tools::on_path("git")
                .expect("`git` is installed")
                .display()
        ),
    )
    .expect("write git");
    fs::set_permissions(&git, fs::Permissions::from_mode(0o755)).expect("make it executable");
    dir
}

fn with_k3d(dir: &Path, clusters_json: &str) {
    fake(
        dir,
        "k3d",
        &format!(
            "case \"$1\" in version) echo 'k3d version v5.8.3';; cluster) [ \"$2\" = list ] && echo '{clusters_json}';; esac"
        ),
    );
}

fn calls(dir: &Path) -> String {
    fs::read_to_string(dir.join("calls.log")).unwrap_or_default()
}

fn xtask(path: &Path, args: &[&str], env: &[(&str, &str)]) -> (Output, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("PATH", path)
        .env("RUST_BACKTRACE", "0")
        .env("HOME", "/home/dev")
        .env_remove("KUBECONFIG")
        .env_remove("CI")
        // Its skips are this test's doing, not the outer `cargo xtask ci`'s to report.
        .env_remove("FLIGHTDECK_SKIPPED_LOG")
        // The plan shows the image archives under the target directory: the checkout's.
        .env("CARGO_TARGET_DIR", workspace_root().join("target"))
        .envs(env.iter().copied())
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
    let (output, text) = xtask(path.path(), &["doctor"], &[]);
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
    let (output, text) = xtask(path.path(), &["doctor"], &[]);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("`cargo xtask up` has everything it needs."),
        "{text}"
    );
    assert!(
        text.contains("terraform         1.10.5"),
        "OpenTofu counts as terraform:\n{text}"
    );
    assert!(
        text.contains("Superset base image: docker.io/apache/superset:6.0.0 "),
        "doctor says whether the base is pinned:\n{text}"
    );
}

#[test]
fn up_dry_run_on_a_fresh_machine_plans_to_deploy_the_checkout_with_digest_tags() {
    let path = tools(true);
    with_k3d(path.path(), "[]");
    let (output, text) = xtask(path.path(), &["up", "--dry-run"], &[]);
    assert!(output.status.success(), "{text}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // What is checked out differs from run to run; the rest is the plan.
    let deploys = stdout
        .lines()
        .find(|l| l.starts_with("It deploys the checkout: "))
        .unwrap_or_else(|| panic!("no `It deploys the checkout` line in\n{stdout}"));
    assert!(
        deploys.ends_with("(served to Argo CD by the git server in the cluster)."),
        "{deploys}"
    );
    let plan = stdout.replace(
        deploys,
        "It deploys the checkout: [branch, commit, uncommitted files]",
    );
    assert!(
        !plan.contains("github.com") && !plan.contains(&"0".repeat(12)),
        "{plan}"
    );
    insta::assert_snapshot!(plan);
    assert!(
        !calls(path.path()).contains("cluster create"),
        "a dry run runs nothing:\n{}",
        calls(path.path())
    );
}

#[test]
fn up_dry_run_on_a_running_cluster_does_not_recreate_it() {
    let path = tools(true);
    with_k3d(
        path.path(),
        r#"[{"name":"flightdeck","serversRunning":1,"serversCount":1}]"#,
    );
    let (output, text) = xtask(path.path(), &["up", "--dry-run"], &[]);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("(skipped: it exists and runs)"), "{text}");
    assert!(!text.contains("$ k3d cluster create"), "{text}");
}

#[test]
fn up_without_a_docker_daemon_fails_with_the_fix_before_creating_anything() {
    let path = tools(false);
    with_k3d(path.path(), "[]");
    let (output, text) = xtask(path.path(), &["up"], &[]);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("`cargo xtask up` needs tools that are missing"),
        "{text}"
    );
    assert!(text.contains("fix: start the Docker daemon"), "{text}");
    let calls = calls(path.path());
    assert!(
        !calls.contains("k3d cluster") && !calls.contains("terraform -chdir"),
        "nothing is created:\n{calls}"
    );
}

#[test]
fn up_refuses_a_cluster_of_the_same_name_that_someone_else_made() {
    let path = tools(true);
    with_k3d(
        path.path(),
        r#"[{"name":"flightdeck","serversRunning":1,"serversCount":1,"nodes":[{"name":"k3d-flightdeck-server-0","role":"server","runtimeLabels":{"k3d.cluster":"flightdeck","app":"k3d"}}]}]"#,
    );
    let (output, text) = xtask(path.path(), &["up"], &[]);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("a k3d cluster named `flightdeck` already exists, but it was not created from infrastructure/k3d/cluster.yaml"),
        "{text}"
    );
    let made = calls(path.path());
    assert_eq!(
        made.lines()
            .filter(|l| l.starts_with("k3d cluster"))
            .collect::<Vec<_>>(),
        ["k3d cluster list -o json"],
        "only looked:\n{made}"
    );
    let (output, text) = xtask(path.path(), &["down"], &[]);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("`cargo xtask down` does not delete someone else's cluster"),
        "{text}"
    );
    assert!(!calls(path.path()).contains("k3d cluster delete"));
}

#[test]
fn down_without_a_cluster_has_nothing_to_delete() {
    let path = tools(true);
    with_k3d(path.path(), "[]");
    let (output, text) = xtask(path.path(), &["down", "--dry-run"], &[]);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("(skipped: there is none)"), "{text}");
}

#[test]
fn lint_without_kubectl_fails_under_ci_naming_it_and_skips_loudly_elsewhere() {
    let path = tempfile::tempdir().expect("a directory without kubectl");
    let (output, text) = xtask(path.path(), &["lint", "--skip-dags"], &[("CI", "true")]);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("lint: rendering the kustomizations cannot run: `kubectl` is not installed, and under CI=true no check is skipped. Install it:"),
        "{text}"
    );

    let (output, text) = xtask(path.path(), &["lint", "--skip-dags"], &[]);
    assert!(output.status.success(), "{text}");
    for skipped in [
        "SKIPPED lint: rendering the kustomizations: `kubectl` is not installed",
        "SKIPPED lint: `terraform fmt -check`: `terraform` is not installed",
        "SKIPPED lint: `nix-instantiate --parse flake.nix`: `nix-instantiate` is not installed",
    ] {
        assert!(text.contains(skipped), "no `{skipped}` in\n{text}");
    }
}
