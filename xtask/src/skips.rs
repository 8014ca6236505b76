//! Checks that cannot run because a tool is missing. Under `CI=true` that is a failure
//! naming the install command: CI must never pass by skipping. Elsewhere the check is
//! skipped loudly and recorded, so `cargo xtask ci` ends with one line listing every
//! check it skipped and why, including those skipped inside `cargo test` (which append
//! to the file named by [`LOG_ENV`]).

use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

/// The environment variable naming the file skipped checks are appended to, one per
/// line (`cargo xtask ci` sets it for the processes it starts).
pub const LOG_ENV: &str = "FLIGHTDECK_SKIPPED_LOG";

/// How to install each tool a check may need.
pub mod install {
    /// kubectl (with its built-in kustomize).
    pub const KUBECTL: &str = "`nix develop`, or https://kubernetes.io/docs/tasks/tools/#kubectl";
    /// Terraform, or OpenTofu as `terraform`.
    pub const TERRAFORM: &str = "`nix develop` (OpenTofu as `terraform`), or https://developer.hashicorp.com/terraform/install";
    /// `nix-instantiate`.
    pub const NIX: &str =
        "`apt-get install nix-bin` (Debian), or Nix from https://nixos.org/download";
    /// Python 3 with venv.
    pub const PYTHON: &str = "`apt-get install python3 python3-venv`, or `nix develop`";
}

static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Whether this runs in CI (`CI=true`, as GitHub Actions and `.ci/run` set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// `check` needs `tool`, which is not installed: fails under CI, else skips loudly.
pub fn tool_missing(check: &str, tool: &str, install: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !in_ci(),
        "{check} cannot run: `{tool}` is not installed, and under CI=true no check is skipped. Install it: {install}"
    );
    eprintln!("SKIPPED {check}: `{tool}` is not installed (install: {install})");
    record(&format!("{check} (`{tool}` not installed)"));
    Ok(())
}

/// Remembers a skipped check for `cargo xtask ci`'s summary.
fn record(line: &str) {
    SKIPPED
        .lock()
        .expect("skipped checks")
        .push(line.to_owned());
    if let Some(path) = std::env::var_os(LOG_ENV) {
        // NB: best effort: a summary line must not fail the check it summarises.
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// Every check skipped in this process and in the log at `log`, each once, in order.
pub fn all(log: &Path) -> Vec<String> {
    let mut out: Vec<String> = SKIPPED.lock().expect("skipped checks").clone();
    if let Ok(text) = std::fs::read_to_string(log) {
        out.extend(text.lines().map(str::to_owned));
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|line| seen.insert(line.clone()));
    out
}

/// The line `cargo xtask ci` ends with.
pub fn summary(skipped: &[String]) -> String {
    if skipped.is_empty() {
        "ci: no check was skipped".to_owned()
    } else {
        format!(
            "ci: SKIPPED {} check(s): {}",
            skipped.len(),
            skipped.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_lists_every_skipped_check_once() {
        let log = tempfile::NamedTempFile::new().expect("a file");
        std::fs::write(
            log.path(),
            "images: skopeo reads both formats (`skopeo` not installed)\nlint: kustomize (`kubectl` not installed)\n",
        )
        .expect("write");
        let skipped = all(log.path());
        assert!(skipped.contains(&"lint: kustomize (`kubectl` not installed)".to_owned()));
        assert_eq!(summary(&[]), "ci: no check was skipped");
        assert_eq!(
            summary(&["a (x)".into(), "b (y)".into()]),
            "ci: SKIPPED 2 check(s): a (x); b (y)"
        );
    }
}
