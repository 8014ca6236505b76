//! `cargo xtask lint`: validates everything under `infrastructure/` (and `dags/`) offline.
//!
//! Nothing in `infrastructure/` can be applied on a developer machine, so this is what keeps
//! it honest. Each check reports [`Finding`]s that name `file:line`, what is wrong and the
//! fix; the command exits non-zero when there is any.
//!
//! - [`manifests`]: every YAML document parses; built-in kinds round-trip through the
//!   `k8s-openapi` type of their apiVersion/kind without losing a field; the custom
//!   resources we use deserialize into the typed structs of [`crds`].
//! - [`policy`]: pinned images and chart versions, Argo CD conventions (sync waves,
//!   automated prune + selfHeal, `CreateNamespace=true`, one repoURL), pod security of our
//!   workloads.
//! - [`secrets`]: nothing that looks like a committed credential.
//! - [`environment`]: the pinned environment: workflows (actions pinned by SHA, GitHub's
//!   schema), the devcontainer, `flake.lock`, `.envrc` and the k3s image.
//! - [`tools`]: `kubectl kustomize`, `terraform fmt -check`, `nix-instantiate --parse`, the
//!   DAG import test and the workflow schema check, each when its tool is installed.

mod crds;
mod dags;
mod environment;
mod manifests;
mod policy;
mod secrets;
mod security;
mod terraform;
mod tools;
pub(crate) mod venv;
mod yaml;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use xshell::Shell;

/// Validate the infrastructure manifests, Terraform and DAGs offline.
#[derive(Debug, clap::Args)]
pub struct Lint {
    /// Skip the DAG import test (it creates a cached Airflow virtualenv under
    /// `~/.cache/flightdeck/` on first use, which takes about two minutes).
    #[arg(long)]
    pub skip_dags: bool,
    /// Skip the checks that run external tools (kubectl, terraform, nix, python3):
    /// only the checks built into the xtask run.
    #[arg(long)]
    pub offline_only: bool,
}

impl Lint {
    /// Runs every check and prints the findings; fails when there is at least one.
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let root = sh.current_dir();
        let mut findings = lint_tree(&root)?;
        if !self.offline_only {
            findings.extend(tools::run_all(sh, &root, !self.skip_dags)?);
        }
        if findings.is_empty() {
            println!("lint: infrastructure/ and dags/ are clean");
            return Ok(());
        }
        for finding in &findings {
            eprintln!("{finding}");
        }
        anyhow::bail!("lint: {} finding(s)", findings.len())
    }
}

/// One problem: where it is, what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// The file, relative to the project root.
    pub file: PathBuf,
    /// 1-based line; 0 when the finding is about the whole file.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Finding {
    /// A finding at `file:line`.
    pub fn new(
        file: &Path,
        line: usize,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            file: file.to_path_buf(),
            line,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}\n    fix: {}",
            self.file.display(),
            self.line,
            self.message,
            self.fix
        )
    }
}

/// Every check that needs no external tool, on the tree rooted at `root`.
pub fn lint_tree(root: &Path) -> anyhow::Result<Vec<Finding>> {
    let files = yaml::load_tree(root)?;
    let mut findings = Vec::new();
    for file in &files {
        findings.extend(file.parse_errors.iter().cloned());
        for doc in &file.docs {
            findings.extend(manifests::check(file, doc));
            findings.extend(policy::check_document(file, doc));
            findings.extend(secrets::check_document(file, doc));
        }
    }
    findings.extend(policy::check_tree(&files));
    findings.extend(terraform::check(root)?);
    findings.extend(secrets::check_text_files(root)?);
    findings.extend(environment::check(root)?);
    findings.sort();
    findings.dedup();
    Ok(findings)
}

/// Every file under `dir` (recursively) whose name ends with one of `extensions`,
/// sorted, skipping hidden directories such as `.terraform/`.
fn files_with_extension(dir: &Path, extensions: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::Context as _;
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("read directory {}", dir.display()))?;
        for entry in entries {
            let path = entry.context("read directory entry")?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                if !name.starts_with('.') {
                    stack.push(path);
                }
            } else if extensions.iter().any(|ext| name.ends_with(ext)) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}
