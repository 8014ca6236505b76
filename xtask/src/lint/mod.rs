//! `cargo xtask lint`: validates everything under `infrastructure/` (and `dags/`) offline.
//!
//! Nothing in `infrastructure/` can be applied on a developer machine, so this is what keeps
//! it honest. Each check reports [`Finding`]s that name `file:line`, what is wrong and the
//! fix; the command exits non-zero when there is any.
//!
//! - [`manifests`]: every YAML document parses; built-in kinds round-trip through the
//!   `k8s-openapi` type of their apiVersion/kind without losing a field; custom resources
//!   are valid against the `openAPIV3Schema` (and CEL rules) of their CRD ([`schema`]).
//! - [`helm`]: the Helm values of Argo CD Applications and Terraform `helm_release`s set
//!   only keys their chart has, and satisfy its `values.schema.json`.
//! - [`upstream`]: those CRDs, chart values and schemas, at the versions pinned in
//!   `infrastructure/upstream.toml`, from a mirror, the cache or the network.
//! - [`policy`]: pinned images and chart versions (our own `flightdeck/<service>` images
//!   stay untagged: `cargo xtask up` writes the build's digest tag into what it deploys),
//!   Argo CD conventions (sync waves, automated prune + selfHeal, `CreateNamespace=true`),
//!   pod security of our workloads.
//! - [`source`]: every git source (the app of apps, each Application synced from git,
//!   Airflow's DAG git-sync) names the one setting of `infrastructure/source.yaml`.
//! - [`secrets`]: nothing that looks like a committed credential.
//! - [`environment`]: the pinned environment: workflows (actions pinned by SHA, GitHub's
//!   schema), the devcontainer, `flake.lock`, `.envrc` and the k3s image.
//! - [`tools`]: `kubectl kustomize`, `terraform fmt -check`, `nix-instantiate --parse`, the
//!   DAG import test and the workflow schema check. A missing tool skips its check loudly
//!   (and `cargo xtask ci` lists it); under `CI=true` it fails, naming the install command.
//! - [`promtool`]: the alerting rules through `promtool check rules` and their unit tests
//!   through `promtool test rules` (skipped loudly without promtool; fails under `CI=true`).

mod cel;
mod crds;
mod dags;
mod environment;
mod helm;
mod manifests;
mod policy;
mod promtool;
mod schema;
mod secrets;
mod security;
mod source;
mod terraform;
mod tools;
mod upstream;
pub(crate) mod venv;
pub(crate) mod yaml;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
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
    /// First write `repoURL` and `targetRevision` of infrastructure/source.yaml into the
    /// app of apps, every Application synced from git and Airflow's DAG git-sync.
    #[arg(long)]
    pub fix_source: bool,
}

impl Lint {
    /// Runs every check and prints the findings; fails when there is at least one.
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let root = sh.current_dir();
        if self.fix_source {
            let changed = source::fix(&root, &yaml::load_tree(&root)?)?;
            println!("lint: wrote the source setting into {changed} place(s)");
        }
        let Report {
            mut findings,
            unchecked,
            warnings,
        } = lint_report(&root)?;
        if !self.offline_only {
            findings.extend(tools::run_all(sh, &root, !self.skip_dags)?);
            findings.extend(promtool::run(sh, &root)?);
        }
        if !unchecked.is_empty() {
            eprintln!(
                "lint: not checked, no upstream files in reach:\n  {}",
                unchecked.into_iter().collect::<Vec<_>>().join("\n  ")
            );
        }
        for warning in &warnings {
            eprintln!("lint: warning: {warning}");
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

/// What the checks built into the xtask found.
#[derive(Debug, Default)]
pub struct Report {
    /// The problems.
    pub findings: Vec<Finding>,
    /// What could not be checked for want of its upstream files: `chart airflow 1.20.0: …`.
    pub unchecked: BTreeSet<String>,
    /// What is allowed but should not stay so (the Superset base image not pinned yet).
    pub warnings: Vec<String>,
}

/// Every check that needs no external tool, on the tree rooted at `root`.
#[cfg(test)]
pub fn lint_tree(root: &Path) -> anyhow::Result<Vec<Finding>> {
    lint_report(root).map(|report| report.findings)
}

/// [`lint_tree`], with what it could not check.
pub fn lint_report(root: &Path) -> anyhow::Result<Report> {
    let upstream = upstream::shared()?;
    let files = yaml::load_tree(root)?;
    let mut findings = Vec::new();
    let mut unchecked = BTreeSet::new();
    for file in &files {
        findings.extend(file.parse_errors.iter().cloned());
        for doc in &file.docs {
            findings.extend(manifests::check(file, doc, upstream, &mut unchecked));
            findings.extend(policy::check_document(file, doc));
            findings.extend(secrets::check_document(file, doc));
            if doc.type_meta() == Some(("argoproj.io/v1alpha1", "Application")) {
                helm::check_application(upstream, file, doc, &mut findings, &mut unchecked);
            }
        }
    }
    helm::check_terraform(upstream, root, &mut findings, &mut unchecked)?;
    findings.extend(policy::check_tree(&files));
    findings.extend(source::check(root, &files));
    findings.extend(terraform::check(root)?);
    findings.extend(secrets::check_text_files(root)?);
    findings.extend(environment::check(root)?);
    let mut warnings = Vec::new();
    superset_pin(root, &mut findings, &mut warnings)?;
    findings.sort();
    findings.dedup();
    Ok(Report {
        findings,
        unchecked,
        warnings,
    })
}

/// The Superset base image's pin: a digest, or empty (a warning: the next
/// `cargo xtask images --superset` fills it, and it must be committed then); anything
/// else is a finding.
fn superset_pin(
    root: &Path,
    findings: &mut Vec<Finding>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    use crate::images::superset::pin::{self, PIN_FILE, Pin};
    use anyhow::Context as _;
    let text = match std::fs::read_to_string(root.join(PIN_FILE)) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error).context(format!("read {PIN_FILE}")),
    };
    match pin::parse(&text) {
        Ok(Pin::Digest(_)) => {}
        Ok(Pin::Empty) => warnings.push(pin::describe(root)),
        Err(error) => findings.push(Finding::new(
            Path::new(PIN_FILE),
            error.line,
            error.message,
            format!(
                "one line `{}@sha256:<hex>`, or none (the next build pins it)",
                pin::BASE
            ),
        )),
    }
    Ok(())
}
