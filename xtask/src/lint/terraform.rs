//! Pinned versions in Terraform: the chart `version` of every `helm_release` (directly or
//! through a variable's default) and every provider in `required_providers`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::Finding;
use super::policy::unpinned_version;

/// A block such as `resource "helm_release" "argocd" { ... }`: its header, lines and file.
struct Block {
    file: PathBuf,
    header: String,
    first_line: usize,
    /// `(file line, text)` of the lines at depth 1 inside the block.
    body: Vec<(usize, String)>,
}

/// Top-level and nested blocks of one file, found by brace depth (HCL as we write it:
/// one block header per line, `{` at its end).
fn blocks(file: &Path, text: &str) -> Vec<Block> {
    let mut open: Vec<Block> = Vec::new();
    let mut done = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or_default().trim();
        if code.ends_with('{') {
            open.push(Block {
                file: file.to_path_buf(),
                header: code.trim_end_matches('{').trim().to_string(),
                first_line: i + 1,
                body: Vec::new(),
            });
            continue;
        }
        if code.starts_with('}') {
            if let Some(block) = open.pop() {
                done.push(block);
            }
            continue;
        }
        if let Some(block) = open.last_mut() {
            block.body.push((i + 1, code.to_string()));
        }
    }
    done
}

fn attribute<'a>(block: &'a Block, name: &str) -> Option<(usize, &'a str)> {
    block.body.iter().find_map(|(line, code)| {
        let (key, value) = code.split_once('=')?;
        (key.trim() == name).then_some((*line, value.trim()))
    })
}

/// Findings of every `.tf` file under `root/infrastructure/terraform`.
pub fn check(root: &Path) -> anyhow::Result<Vec<Finding>> {
    let mut all = Vec::new();
    for path in crate::files::with_endings(&root.join("infrastructure/terraform"), &[".tf"])? {
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        all.extend(blocks(&rel, &text));
    }
    let mut findings = Vec::new();
    for block in &all {
        if block.header.starts_with("resource \"helm_release\"") {
            check_release(block, &all, &mut findings);
        }
        // Provider entries inside required_providers: `helm = {` with `source` and `version`.
        if block.header.contains('=')
            && attribute(block, "source").is_some()
            && let Some((line, version)) = attribute(block, "version")
            && let Some(problem) = unpinned_version(version.trim_matches('"'))
        {
            let provider = block.header.trim_end_matches(['=', ' ']);
            let problem = problem.replace("chart version", "version constraint");
            findings.push(Finding::new(
                &block.file,
                line,
                format!("provider {provider}: {problem}"),
                "pin the exact provider version, e.g. `version = \"3.0.2\"`",
            ));
        }
    }
    Ok(findings)
}

fn check_release(block: &Block, all: &[Block], findings: &mut Vec<Finding>) {
    let Some((line, value)) = attribute(block, "version") else {
        findings.push(Finding::new(
            &block.file,
            block.first_line,
            format!("{} has no chart version", block.header),
            "add `version = \"X.Y.Z\"` (the exact chart version)",
        ));
        return;
    };
    let (line, file, version) =
        if let Some(variable) = value.strip_prefix("var.") {
            let header = format!("variable \"{variable}\"");
            match all.iter().find(|b| b.header == header).and_then(|b| {
                attribute(b, "default").map(|(l, v)| (l, b.file.clone(), v.to_string()))
            }) {
                Some(found) => found,
                None => {
                    findings.push(Finding::new(
                        &block.file,
                        line,
                        format!("chart version comes from `var.{variable}`, which has no default"),
                        "give the variable an exact default version",
                    ));
                    return;
                }
            }
        } else {
            (line, block.file.clone(), value.to_string())
        };
    if let Some(problem) = unpinned_version(version.trim_matches('"')) {
        findings.push(Finding::new(
            &file,
            line,
            format!("{}: {problem}", block.header),
            "pin the exact chart version, e.g. `8.5.0`",
        ));
    }
}
