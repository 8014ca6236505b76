//! Every git source agrees with the one setting, `infrastructure/source.yaml`
//! ([`crate::cluster::source`]): the app of apps, every Application synced from git
//! (a source without `chart`) and Airflow's DAG git-sync (`dags.gitSync.repo`, `branch`
//! and `ref` in a Helm source's `valuesObject`) name its `repoURL` and `targetRevision`.
//! `cargo xtask lint --fix-source` writes the setting into each of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_yaml::Value;

use super::Finding;
use super::yaml::{Doc, Seg, YamlFile};
use crate::cluster::source::{SETTING, Source};

const FIX: &str =
    "run `cargo xtask lint --fix-source`: it writes infrastructure/source.yaml's value here";

/// One place that must name the setting's value.
struct Place {
    file: PathBuf,
    line: usize,
    what: String,
    found: Option<String>,
    wanted: String,
}

fn key(name: &str) -> Seg {
    Seg::Key(name.to_owned())
}

/// Every place of `doc` (an Application) that names a git source.
fn places(file: &YamlFile, doc: &Doc, source: &Source, out: &mut Vec<Place>) {
    let name = doc.name().to_owned();
    let spec = &doc.value["spec"];
    let mut sources: Vec<(Vec<Seg>, &Value)> = Vec::new();
    if spec.get("source").is_some() {
        sources.push((vec![key("spec"), key("source")], &spec["source"]));
    }
    for (i, each) in spec["sources"]
        .as_sequence()
        .into_iter()
        .flatten()
        .enumerate()
    {
        sources.push((vec![key("spec"), key("sources"), Seg::Index(i)], each));
    }
    let mut add = |path: Vec<Seg>, value: &Value, what: String, wanted: &str| {
        out.push(Place {
            file: file.rel.clone(),
            line: doc.line_of(&path),
            what,
            found: value.as_str().map(str::to_owned),
            wanted: wanted.to_owned(),
        });
    };
    for (path, each) in sources {
        if each.get("chart").is_none() {
            for (field, wanted) in [
                ("repoURL", &source.repo_url),
                ("targetRevision", &source.target_revision),
            ] {
                let mut at = path.clone();
                at.push(key(field));
                add(
                    at,
                    &each[field],
                    format!("Application {name}: {field}"),
                    wanted,
                );
            }
            continue;
        }
        let git_sync = &each["helm"]["valuesObject"]["dags"]["gitSync"];
        if git_sync["enabled"].as_bool() != Some(true) {
            continue;
        }
        let mut base = path.clone();
        base.extend(["helm", "valuesObject", "dags", "gitSync"].map(key));
        // NB: git-sync v4 (the chart's) reads `ref`; `branch` is v3's name for it.
        for (field, wanted) in [
            ("repo", &source.repo_url),
            ("branch", &source.target_revision),
            ("ref", &source.target_revision),
        ] {
            let mut at = base.clone();
            at.push(key(field));
            add(
                at,
                &git_sync[field],
                format!("Application {name}: the DAG git-sync's {field}"),
                wanted,
            );
        }
    }
}

/// The places that disagree with the setting, or a finding about the setting itself.
fn disagreements(root: &Path, files: &[YamlFile]) -> Result<Vec<Place>, Finding> {
    let has_root_app = root.join(crate::cluster::ROOT_APP).is_file();
    if !root.join(SETTING).is_file() && !has_root_app {
        return Ok(Vec::new());
    }
    let source = Source::read(root).map_err(|error| {
        Finding::new(
            Path::new(SETTING),
            0,
            format!("{error:#}"),
            "write `repoURL: <git URL>` and `targetRevision: <branch>` (see the comments in the committed file)",
        )
    })?;
    let mut all = Vec::new();
    for file in files {
        for doc in &file.docs {
            if doc.type_meta() == Some(("argoproj.io/v1alpha1", "Application")) {
                places(file, doc, &source, &mut all);
            }
        }
    }
    Ok(all
        .into_iter()
        .filter(|p| p.found.as_deref() != Some(p.wanted.as_str()))
        .collect())
}

/// Findings for every git source that does not name the setting.
pub fn check(root: &Path, files: &[YamlFile]) -> Vec<Finding> {
    match disagreements(root, files) {
        Ok(places) => places
            .into_iter()
            .map(|p| {
                let found = p.found.as_deref().unwrap_or("nothing");
                Finding::new(
                    &p.file,
                    p.line,
                    format!(
                        "{} is `{found}`, the source setting ({SETTING}) says `{}`",
                        p.what, p.wanted
                    ),
                    FIX,
                )
            })
            .collect(),
        Err(finding) => vec![finding],
    }
}

/// Writes the setting into every git source that disagrees with it; returns how many
/// values it changed.
pub fn fix(root: &Path, files: &[YamlFile]) -> anyhow::Result<usize> {
    let places = disagreements(root, files).map_err(|f| anyhow::anyhow!("{f}"))?;
    let mut by_file: BTreeMap<PathBuf, Vec<Place>> = BTreeMap::new();
    for place in places {
        by_file.entry(place.file.clone()).or_default().push(place);
    }
    let mut changed = 0;
    for (rel, places) in by_file {
        let path = root.join(&rel);
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
        for place in places {
            let line = lines
                .get_mut(place.line.wrapping_sub(1))
                .with_context(|| format!("{}:{}: no such line", rel.display(), place.line))?;
            let Some(at) = line.find(": ") else {
                anyhow::bail!(
                    "{}:{}: {} is not a `key: value` line: write `{}` there by hand",
                    rel.display(),
                    place.line,
                    place.what,
                    place.wanted
                );
            };
            // A trailing comment stays.
            let rest = &line[at + 2..];
            let comment = rest.find(" #").map_or("", |c| &rest[c..]);
            *line = format!("{}{}{comment}", &line[..at + 2], place.wanted);
            changed += 1;
        }
        std::fs::write(&path, lines.join("\n"))
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_APP: &str = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: flightdeck-root\n  namespace: argocd\nspec:\n  project: default\n  source:\n    repoURL: git://flightdeck-git.argocd.svc.cluster.local/flightdeck.git\n    targetRevision: deploy\n    path: infrastructure/k8s/apps\n";
    const CHILD: &str = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: kafka\nspec:\n  source:\n    repoURL: https://github.com/someone/flightdeck.git\n    targetRevision: main\n    path: infrastructure/k8s/kafka\n";
    const AIRFLOW: &str = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: airflow\nspec:\n  source:\n    repoURL: https://airflow.apache.org\n    chart: airflow\n    targetRevision: 1.20.0\n    helm:\n      valuesObject:\n        dags:\n          gitSync:\n            enabled: true\n            repo: https://github.com/someone/flightdeck.git  # DAGs\n            branch: deploy\n            ref: main\n";

    fn tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("a directory");
        for (file, text) in [
            (
                "infrastructure/source.yaml",
                "repoURL: git://flightdeck-git.argocd.svc.cluster.local/flightdeck.git\ntargetRevision: deploy\n",
            ),
            ("infrastructure/k8s/root-app.yaml", ROOT_APP),
            ("infrastructure/k8s/apps/kafka.yaml", CHILD),
            ("infrastructure/k8s/apps/airflow.yaml", AIRFLOW),
        ] {
            let path = root.path().join(file);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        root
    }

    fn findings(root: &Path) -> Vec<String> {
        let files = super::super::yaml::load_tree(root).expect("YAML");
        check(root, &files)
            .iter()
            .map(|f| format!("{}:{}: {}", f.file.display(), f.line, f.message))
            .collect()
    }

    #[test]
    fn every_git_source_and_the_dag_git_sync_must_name_the_setting() {
        let root = tree();
        assert_eq!(
            findings(root.path()),
            [
                "infrastructure/k8s/apps/airflow.yaml:15: Application airflow: the DAG git-sync's repo is `https://github.com/someone/flightdeck.git`, the source setting (infrastructure/source.yaml) says `git://flightdeck-git.argocd.svc.cluster.local/flightdeck.git`",
                "infrastructure/k8s/apps/airflow.yaml:17: Application airflow: the DAG git-sync's ref is `main`, the source setting (infrastructure/source.yaml) says `deploy`",
                "infrastructure/k8s/apps/kafka.yaml:7: Application kafka: repoURL is `https://github.com/someone/flightdeck.git`, the source setting (infrastructure/source.yaml) says `git://flightdeck-git.argocd.svc.cluster.local/flightdeck.git`",
                "infrastructure/k8s/apps/kafka.yaml:8: Application kafka: targetRevision is `main`, the source setting (infrastructure/source.yaml) says `deploy`",
            ]
        );
    }

    #[test]
    fn fix_source_writes_the_setting_everywhere_and_then_the_tree_agrees() {
        let root = tree();
        let files = super::super::yaml::load_tree(root.path()).expect("YAML");
        assert_eq!(fix(root.path(), &files).expect("fixed"), 4);
        assert_eq!(findings(root.path()), Vec::<String>::new());
        let airflow =
            std::fs::read_to_string(root.path().join("infrastructure/k8s/apps/airflow.yaml"))
                .expect("read");
        assert!(
            airflow.contains("            repo: git://flightdeck-git.argocd.svc.cluster.local/flightdeck.git # DAGs\n            branch: deploy\n            ref: deploy\n"),
            "{airflow}"
        );
        // Pointing the one setting elsewhere moves every source with it.
        std::fs::write(
            root.path().join(SETTING),
            "repoURL: https://github.com/you/flightdeck.git\ntargetRevision: main\n",
        )
        .expect("write");
        let files = super::super::yaml::load_tree(root.path()).expect("YAML");
        assert_eq!(fix(root.path(), &files).expect("fixed"), 7);
        assert_eq!(findings(root.path()), Vec::<String>::new());
    }

    #[test]
    fn a_broken_setting_is_one_finding_on_it() {
        let root = tree();
        std::fs::write(root.path().join(SETTING), "repoURL: nowhere\n").expect("write");
        let found = findings(root.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("infrastructure/source.yaml:0: "),
            "{found:?}"
        );
    }
}
