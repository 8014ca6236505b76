//! The pinned developer and CI environment: GitHub workflows, the devcontainer, the flake
//! and its lock, `.envrc` and the k3d cluster's node image.
//!
//! Offline rules, each on the files that exist: every action is pinned by a full commit
//! SHA and every workflow declares its `permissions`; the devcontainer's image is pinned
//! by digest, its features by exact version, and it enters `nix develop` and runs
//! `cargo xtask doctor`; every `flake.lock` node is locked by `rev` and `narHash` and the
//! lock has an entry for every input of `flake.nix`; `.envrc` uses the flake; the k3s
//! image is pinned by digest; and none of these files holds a credential. The workflows
//! are also validated against GitHub's schema, by `check-jsonschema` ([`schema_check`]).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;
use xshell::{Shell, cmd};

use super::Finding;

/// The workflows, `*.yml` and `*.yaml` under `.github/workflows`.
pub fn workflows(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    crate::files::with_endings(&root.join(".github/workflows"), &[".yaml", ".yml"])
}

/// A rule on one file: its path relative to the root and its text.
type Rule = fn(&Path, &str) -> Vec<Finding>;

/// Every offline rule above.
pub fn check(root: &Path) -> anyhow::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for path in workflows(root)? {
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let text = read(&path)?;
        findings.extend(workflow(&rel, &text));
    }
    let checks: [(&str, Rule); 4] = [
        (".devcontainer/devcontainer.json", devcontainer),
        ("flake.lock", flake_lock),
        (".envrc", envrc),
        ("infrastructure/k3d/cluster.yaml", k3s_image),
    ];
    for (file, rule) in checks {
        let path = root.join(file);
        if path.is_file() {
            findings.extend(rule(Path::new(file), &read(&path)?));
        }
    }
    if root.join("flake.lock").is_file() && root.join("flake.nix").is_file() {
        findings.extend(flake_inputs_locked(
            &read(&root.join("flake.nix"))?,
            &read(&root.join("flake.lock"))?,
        ));
    }
    for dir in [".github", ".devcontainer"] {
        for path in crate::files::with_endings(&root.join(dir), &[".yaml", ".yml", ".json"])? {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            for (i, line) in read(&path)?.lines().enumerate() {
                if let Some(problem) = super::secrets::line_problem(line, false) {
                    findings.push(Finding::new(
                        &rel,
                        i + 1,
                        problem,
                        "use `${{ secrets.NAME }}` or a generated credential",
                    ));
                }
            }
        }
    }
    Ok(findings)
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
}

fn is_sha(text: &str) -> bool {
    text.len() == 40
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn is_digest(reference: &str) -> bool {
    reference
        .split_once("@sha256:")
        .is_some_and(|(_, hex)| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Actions pinned by commit SHA, and a top-level `permissions`.
fn workflow(rel: &Path, text: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let Some(value) = trimmed.strip_prefix("uses:") else {
            continue;
        };
        let reference = value
            .split('#')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches(['"', '\'']);
        if reference.starts_with("./")
            || (reference.starts_with("docker://") && is_digest(reference))
        {
            continue;
        }
        match reference.rsplit_once('@') {
            Some((_, version)) if is_sha(version) => {}
            _ => findings.push(Finding::new(
                rel,
                i + 1,
                format!("action `{reference}` is not pinned by a full commit SHA"),
                "use `owner/repo@<40-hex commit SHA> # vX.Y.Z` (the release's commit)",
            )),
        }
    }
    if !text.lines().any(|l| l.starts_with("permissions:")) {
        findings.push(Finding::new(
            rel,
            1,
            "the workflow does not declare its `permissions`",
            "add a top-level `permissions:` with the least it needs (`contents: read`)",
        ));
    }
    findings
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(1, |i| i + 1)
}

fn devcontainer(rel: &Path, text: &str) -> Vec<Finding> {
    let config: Value = match serde_json::from_str(text) {
        Ok(config) => config,
        Err(error) => {
            return vec![Finding::new(
                rel,
                error.line(),
                format!("not plain JSON: {error}"),
                "keep devcontainer.json free of comments and trailing commas",
            )];
        }
    };
    let mut findings = Vec::new();
    let image = config["image"].as_str().unwrap_or_default();
    if !is_digest(image) {
        findings.push(Finding::new(
            rel,
            line_of(text, "\"image\""),
            format!("image `{image}` is not pinned by digest"),
            "use `name:tag@sha256:<digest>`",
        ));
    }
    for feature in config["features"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        let version = feature.rsplit_once(':').map(|(_, v)| v).unwrap_or_default();
        let exact =
            version.split('.').count() == 3 && version.split('.').all(|p| p.parse::<u32>().is_ok());
        if !exact && !is_digest(feature) {
            findings.push(Finding::new(
                rel,
                line_of(text, feature),
                format!("feature `{feature}` is not pinned to an exact version"),
                "use `ghcr.io/devcontainers/features/<name>:X.Y.Z`",
            ));
        }
    }
    let post_create = config["postCreateCommand"].to_string();
    for needed in ["nix develop", "cargo xtask doctor"] {
        if !post_create.contains(needed) {
            findings.push(Finding::new(
                rel,
                line_of(text, "postCreateCommand"),
                format!("`postCreateCommand` does not run `{needed}`"),
                "use `nix develop --command cargo xtask doctor`",
            ));
        }
    }
    findings
}

fn flake_lock(rel: &Path, text: &str) -> Vec<Finding> {
    let lock: Value = match serde_json::from_str(text) {
        Ok(lock) => lock,
        Err(error) => {
            return vec![Finding::new(
                rel,
                error.line(),
                format!("does not parse: {error}"),
                "run `nix flake lock`",
            )];
        }
    };
    let mut findings = Vec::new();
    for (name, node) in lock["nodes"].as_object().into_iter().flatten() {
        if name == "root" {
            continue;
        }
        let locked = &node["locked"];
        for key in ["rev", "narHash"] {
            if locked[key].as_str().is_none_or(str::is_empty) {
                findings.push(Finding::new(
                    rel,
                    line_of(text, &format!("\"{name}\": {{")),
                    format!("input `{name}` is not locked by `{key}`"),
                    "run `nix flake lock` and commit flake.lock",
                ));
            }
        }
    }
    findings
}

/// Every input of flake.nix (`name.url = …` or `name = { url = …`) is a root input of the lock.
fn flake_inputs_locked(nix: &str, lock: &str) -> Vec<Finding> {
    let Ok(lock) = serde_json::from_str::<Value>(lock) else {
        return Vec::new();
    };
    let root_inputs = &lock["nodes"]["root"]["inputs"];
    let mut findings = Vec::new();
    for (i, line) in nix.lines().enumerate() {
        let line = line.trim();
        let name = line
            .strip_suffix("= {")
            .filter(|_| {
                nix.lines()
                    .nth(i + 1)
                    .is_some_and(|next| next.trim().starts_with("url ="))
            })
            .or_else(|| line.split_once(".url =").map(|(name, _)| name))
            .map(str::trim);
        if let Some(name) = name.filter(|n| !n.contains(['.', ' ']))
            && root_inputs.get(name).is_none()
        {
            findings.push(Finding::new(
                Path::new("flake.nix"),
                i + 1,
                format!("input `{name}` has no entry in flake.lock"),
                "run `nix flake lock` and commit flake.lock",
            ));
        }
    }
    findings
}

fn envrc(rel: &Path, text: &str) -> Vec<Finding> {
    if text.lines().any(|l| l.trim() == "use flake") {
        return Vec::new();
    }
    vec![Finding::new(
        rel,
        1,
        "does not `use flake`",
        "make `.envrc` say `use flake`",
    )]
}

fn k3s_image(rel: &Path, text: &str) -> Vec<Finding> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| Some((i, line.trim().strip_prefix("image:")?.trim())))
        .filter(|(_, image)| !is_digest(image))
        .map(|(i, image)| {
            Finding::new(
                rel,
                i + 1,
                format!("the k3s image `{image}` is not pinned by digest"),
                "use `rancher/k3s:<tag>@sha256:<digest>`",
            )
        })
        .collect()
}

/// The PyPI `check-jsonschema` this lint installs, pinned with its dependencies.
const REQUIREMENTS: &str = "xtask/src/lint/check-jsonschema-requirements.txt";

/// Validates every workflow against the GitHub workflow schema `check-jsonschema`
/// vendors (`--builtin-schema vendor.github-workflows`, offline once installed).
pub fn schema_check(sh: &Shell, root: &Path) -> anyhow::Result<Vec<Finding>> {
    let files = workflows(root)?;
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let venv = super::venv::cached(
        sh,
        "check-jsonschema-venv",
        &root.join(REQUIREMENTS),
        "check-jsonschema",
    )?;
    let program = venv.join("bin/check-jsonschema");
    let count = files.len();
    let out = cmd!(
        sh,
        "{program} --builtin-schema vendor.github-workflows {files...}"
    )
    .quiet()
    .ignore_status()
    .output()?;
    if out.status.success() {
        eprintln!(
            "lint: {} workflow(s) match the GitHub workflow schema",
            count
        );
        return Ok(Vec::new());
    }
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(vec![Finding::new(
        Path::new(".github/workflows"),
        0,
        format!(
            "a workflow does not match the GitHub workflow schema:\n{}",
            report.trim()
        ),
        "fix the keys check-jsonschema names (https://docs.github.com/actions/reference/workflow-syntax-for-github-actions)",
    )])
}

#[cfg(test)]
mod tests;
