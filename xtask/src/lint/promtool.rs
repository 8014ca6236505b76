//! The alerting rules, checked by Prometheus itself: `promtool check rules` on the rule
//! groups of every PrometheusRule, and `promtool test rules` on the unit tests beside
//! them (`<name>.test.promtool`: each alert fires on the series it is written for and
//! stays quiet on a healthy one).
//!
//! promtool reads plain rule files, not the PrometheusRule custom resource, so the
//! resource's `spec` is written to `rules.yaml` in a temporary directory next to a copy of
//! the tests, whose `rule_files: [rules.yaml]` then names it. Without promtool the step
//! is skipped loudly, and fails under `CI=true`.

use std::path::Path;

use anyhow::Context;
use xshell::{Shell, cmd};

use super::Finding;
use super::tools::has_tool;
use super::yaml::load_tree;

/// How to get promtool.
const INSTALL: &str = "apt-get install prometheus (Debian ships promtool with it), or nix develop";

/// Every PrometheusRule under `infrastructure/`, checked and unit-tested.
pub fn run(sh: &Shell, root: &Path) -> anyhow::Result<Vec<Finding>> {
    if !has_tool("promtool") {
        if crate::skips::in_ci() {
            return Ok(vec![Finding::new(
                Path::new("infrastructure"),
                0,
                "promtool is not installed, so the alerting rules cannot be checked (CI=true)",
                INSTALL,
            )]);
        }
        eprintln!(
            "lint: SKIPPED the alerting rules' checks and unit tests: `promtool` not found ({INSTALL})"
        );
        return Ok(Vec::new());
    }
    let mut findings = Vec::new();
    for file in load_tree(root)? {
        for doc in &file.docs {
            if doc
                .type_meta()
                .is_some_and(|(_, kind)| kind == "PrometheusRule")
            {
                findings.extend(check(sh, root, &file.rel, doc.value.get("spec"))?);
            }
        }
    }
    Ok(findings)
}

fn check(
    sh: &Shell,
    root: &Path,
    rel: &Path,
    spec: Option<&serde_yaml::Value>,
) -> anyhow::Result<Vec<Finding>> {
    let Some(spec) = spec else {
        return Ok(vec![Finding::new(
            rel,
            0,
            "PrometheusRule without spec",
            "add spec.groups",
        )]);
    };
    let dir = tempfile::tempdir().context("create a temporary directory")?;
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, serde_yaml::to_string(spec)?).context("write the rule groups")?;
    let out = cmd!(sh, "promtool check rules {rules}")
        .quiet()
        .ignore_status()
        .output()?;
    if !out.status.success() {
        return Ok(vec![Finding::new(
            rel,
            0,
            format!(
                "`promtool check rules` rejects the rule groups:\n{}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "fix the expression or field promtool names",
        )]);
    }
    let tests_rel = rel.with_extension("test.promtool");
    let tests = root.join(&tests_rel);
    if !tests.exists() {
        return Ok(vec![Finding::new(
            rel,
            0,
            format!(
                "the alerting rules have no unit tests ({} is missing)",
                tests_rel.display()
            ),
            "write `promtool test rules` tests: for each alert a series it fires on and a healthy one",
        )]);
    }
    let copy = dir.path().join("rules.test.promtool");
    std::fs::copy(&tests, &copy).with_context(|| format!("copy {}", tests.display()))?;
    let out = cmd!(sh, "promtool test rules {copy}")
        .quiet()
        .ignore_status()
        .output()?;
    if !out.status.success() {
        return Ok(vec![Finding::new(
            &tests_rel,
            0,
            format!(
                "`promtool test rules` fails:\n{}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            format!(
                "fix the rule in {} or the test's expectation",
                rel.display()
            ),
        )]);
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed rules pass, and a copy whose rejection threshold is raised past what
    /// the tests feed it fails naming the test file: the tests can fail.
    #[test]
    fn the_committed_rules_pass_their_tests_and_a_broken_threshold_fails_them() {
        if !has_tool("promtool") {
            assert!(
                !crate::skips::in_ci(),
                "promtool is missing under CI=true: {INSTALL}"
            );
            eprintln!("SKIPPED: promtool not found ({INSTALL})");
            return;
        }
        let sh = Shell::new().expect("shell");
        let root = crate::project_root();
        assert_eq!(run(&sh, &root).expect("promtool runs"), Vec::new());

        let broken = tempfile::tempdir().expect("tempdir");
        let monitoring = broken.path().join("infrastructure/k8s/monitoring");
        std::fs::create_dir_all(&monitoring).expect("mkdir");
        let rules = std::fs::read_to_string(root.join("infrastructure/k8s/monitoring/rules.yaml"))
            .expect("rules.yaml");
        assert!(rules.contains("> 0.05"));
        std::fs::write(
            monitoring.join("rules.yaml"),
            rules.replace("> 0.05", "> 0.5"),
        )
        .expect("write");
        std::fs::copy(
            root.join("infrastructure/k8s/monitoring/rules.test.promtool"),
            monitoring.join("rules.test.promtool"),
        )
        .expect("copy");
        let findings = run(&sh, broken.path()).expect("promtool runs");
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!(
            findings[0].file,
            Path::new("infrastructure/k8s/monitoring/rules.test.promtool")
        );
        assert!(
            findings[0].message.contains("FlightdeckRejectionRateHigh"),
            "{}",
            findings[0].message
        );
    }
}
