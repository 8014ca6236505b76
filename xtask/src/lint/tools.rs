//! Checks that run external tools: the rendered kustomizations, `terraform fmt`, the
//! flake's syntax, the DAG import test and the workflows against GitHub's schema. A
//! missing tool skips its check loudly; under `CI=true` it fails naming the install
//! command ([`crate::skips`]).

use std::path::Path;

use xshell::{Shell, cmd};

use super::Finding;
use super::policy::unpinned_image;
use super::yaml::{Seg, parse_file};
use crate::skips::{self, install};

/// Whether `tool` is on `PATH`.
pub fn has_tool(tool: &str) -> bool {
    localstack::tools::on_path(tool).is_some()
}

/// Runs every tool-based check; `dags` includes the DAG import test.
pub fn run_all(sh: &Shell, root: &Path, dags: bool) -> anyhow::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    if has_tool("kubectl") {
        findings.extend(kustomize(sh, root)?);
    } else {
        skips::tool_missing(
            "lint: rendering the kustomizations",
            "kubectl",
            install::KUBECTL,
        )?;
    }
    if has_tool("terraform") {
        findings.extend(terraform_fmt(sh)?);
    } else {
        skips::tool_missing(
            "lint: `terraform fmt -check`",
            "terraform",
            install::TERRAFORM,
        )?;
    }
    if root.join("flake.nix").exists() {
        if has_tool("nix-instantiate") {
            let out = cmd!(sh, "nix-instantiate --parse flake.nix")
                .quiet()
                .ignore_status()
                .output()?;
            if !out.status.success() {
                let error = String::from_utf8_lossy(&out.stderr).trim().to_string();
                findings.push(Finding::new(
                    Path::new("flake.nix"),
                    0,
                    format!("does not parse: {error}"),
                    "fix the Nix syntax",
                ));
            }
        } else {
            skips::tool_missing(
                "lint: `nix-instantiate --parse flake.nix`",
                "nix-instantiate",
                install::NIX,
            )?;
        }
    }
    if dags {
        if has_tool("python3") {
            findings.extend(super::dags::run(sh, root)?);
        } else {
            skips::tool_missing("lint: the DAG import test", "python3", install::PYTHON)?;
        }
    }
    if has_tool("python3") {
        findings.extend(super::environment::schema_check(sh, root)?);
    } else {
        skips::tool_missing(
            "lint: the GitHub workflow schema check (check-jsonschema)",
            "python3",
            install::PYTHON,
        )?;
    }
    Ok(findings)
}

/// Renders every directory with a kustomization.yaml and checks the rendered images.
pub fn kustomize(sh: &Shell, root: &Path) -> anyhow::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for path in crate::files::with_endings(&root.join("infrastructure"), &["kustomization.yaml"])? {
        let dir = path.parent().unwrap_or(root);
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let out = cmd!(sh, "kubectl kustomize {dir}")
            .quiet()
            .ignore_status()
            .output()?;
        if !out.status.success() {
            let error = String::from_utf8_lossy(&out.stderr).trim().to_string();
            findings.push(Finding::new(
                &rel,
                1,
                format!("`kubectl kustomize` fails: {error}"),
                "fix the kustomization or the resources it lists",
            ));
            continue;
        }
        let rendered = parse_file(rel.clone(), &String::from_utf8_lossy(&out.stdout));
        for doc in &rendered.docs {
            let mut images = Vec::new();
            super::policy::walk(&doc.value, &mut Vec::new(), &mut |path, value| {
                if let (Some(Seg::Key(key)), Some(image)) = (path.last(), value.as_str())
                    && key == "image"
                {
                    images.push(image.to_string());
                }
            });
            for problem in images.iter().filter_map(|image| unpinned_image(image)) {
                findings.push(Finding::new(
                    &rel,
                    1,
                    format!(
                        "rendered {} {}: {problem}",
                        doc.type_meta().map_or("?", |t| t.1),
                        doc.name()
                    ),
                    "make `images[].name` match the image written in the resource exactly",
                ));
            }
        }
    }
    Ok(findings)
}

fn terraform_fmt(sh: &Shell) -> anyhow::Result<Vec<Finding>> {
    let out = cmd!(
        sh,
        "terraform fmt -check -recursive infrastructure/terraform"
    )
    .quiet()
    .ignore_status()
    .output()?;
    if out.status.success() {
        return Ok(Vec::new());
    }
    let listed = String::from_utf8_lossy(&out.stdout);
    let mut findings: Vec<Finding> = listed
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|file| {
            Finding::new(
                &Path::new("infrastructure/terraform").join(file.trim()),
                0,
                "not formatted as `terraform fmt` would",
                "run `terraform fmt -recursive infrastructure/terraform`",
            )
        })
        .collect();
    if findings.is_empty() {
        let error = String::from_utf8_lossy(&out.stderr).trim().to_string();
        findings.push(Finding::new(
            Path::new("infrastructure/terraform"),
            0,
            format!("`terraform fmt -check` fails: {error}"),
            "fix the HCL syntax",
        ));
    }
    Ok(findings)
}
