//! Project rules beyond schemas: pinned versions, Argo CD conventions, pod security.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::Finding;
use super::yaml::{Doc, Seg, YamlFile};

/// Where the Argo CD Applications of the app of apps live.
const APPS_DIR: &str = "infrastructure/k8s/apps";
const SYNC_WAVE: &str = "argocd.argoproj.io/sync-wave";

/// Calls `visit(path, value)` for every node of `value`.
pub fn walk(value: &Value, path: &mut Vec<Seg>, visit: &mut dyn FnMut(&[Seg], &Value)) {
    visit(path, value);
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                if let Some(key) = key.as_str() {
                    path.push(Seg::Key(key.to_string()));
                    walk(child, path, visit);
                    path.pop();
                }
            }
        }
        Value::Sequence(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                walk(child, path, visit);
                path.pop();
            }
        }
        _ => {}
    }
}

fn key(path: &[Seg]) -> Option<&str> {
    match path.last() {
        Some(Seg::Key(key)) => Some(key),
        _ => None,
    }
}

fn child(path: &[Seg], name: &str) -> Vec<Seg> {
    let mut out = path.to_vec();
    out.push(Seg::Key(name.to_string()));
    out
}

/// Why an image reference is not pinned, if it is not. Our own images
/// (`flightdeck/<service>`) are the other way round: untagged in git, because
/// `cargo xtask up` writes the tag of the build (derived from its digest) into the
/// snapshot it deploys, and a tag written in git would go stale.
pub fn unpinned_image(reference: &str) -> Option<String> {
    if crate::cluster::snapshot::is_our_untagged_image(reference) {
        return None;
    }
    if let Some(rest) = reference.strip_prefix(crate::cluster::snapshot::OUR_IMAGES)
        && !rest.contains('/')
    {
        return Some(format!(
            "our image `{reference}` is tagged in git: leave it as `{}{}`, `cargo xtask up` deploys it with the tag of the build",
            crate::cluster::snapshot::OUR_IMAGES,
            rest.split([':', '@']).next().unwrap_or(rest)
        ));
    }
    if reference.contains("@sha256:") {
        return None;
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    match last.split_once(':') {
        None => Some(format!("image `{reference}` has no tag")),
        Some((_, "")) => Some(format!("image `{reference}` has an empty tag")),
        Some((_, tag)) if tag == "latest" || tag.contains('*') => {
            Some(format!("image `{reference}` uses the moving tag `{tag}`"))
        }
        Some(_) => None,
    }
}

/// Why a chart version is not an exact version, if it is not.
pub fn unpinned_version(version: &str) -> Option<String> {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    let exact = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (!exact).then(|| format!("chart version `{version}` is not an exact version"))
}

/// Image references of one document: `(path, reference)`.
fn image_refs(doc: &Doc) -> Vec<(Vec<Seg>, String)> {
    let mut out = Vec::new();
    walk(&doc.value, &mut Vec::new(), &mut |path, value| {
        match (key(path), value) {
            (Some("image" | "imageName"), Value::String(reference)) => {
                out.push((path.to_vec(), reference.clone()))
            }
            // Helm values: `image: {repository: ..., tag: ...}`.
            (Some("image"), Value::Mapping(map)) => {
                if let Some(repository) = map.get("repository").and_then(Value::as_str) {
                    let tag = map.get("tag").map(|t| {
                        serde_yaml::to_string(t)
                            .unwrap_or_default()
                            .trim()
                            .to_string()
                    });
                    let reference = match tag.as_deref() {
                        None | Some("~" | "null" | "''") => repository.to_string(),
                        Some(tag) => format!("{repository}:{}", tag.trim_matches(['"', '\''])),
                    };
                    out.push((path.to_vec(), reference));
                }
            }
            // Environment variables that carry an image (`FLIGHTDECK_PRODUCER_IMAGE`).
            (_, Value::Mapping(map)) => {
                let name = map.get("name").and_then(Value::as_str).unwrap_or_default();
                if let (true, Some(reference)) = (
                    name.ends_with("_IMAGE"),
                    map.get("value").and_then(Value::as_str),
                ) {
                    out.push((child(path, "value"), reference.to_string()));
                }
            }
            _ => {}
        }
    });
    out
}

/// Rules that look at one document.
pub fn check_document(file: &YamlFile, doc: &Doc) -> Vec<Finding> {
    let mut findings = Vec::new();
    match doc.type_meta() {
        Some(("argoproj.io/v1alpha1", "Application")) => {
            check_application(file, doc, &mut findings)
        }
        Some((_, "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "CronJob" | "Pod")) => {
            super::security::check_workload(file, doc, &mut findings)
        }
        _ => {}
    }
    findings
}

fn check_application(file: &YamlFile, doc: &Doc, findings: &mut Vec<Finding>) {
    let rel = &file.rel;
    let name = doc.name().to_string();
    let spec = &doc.value["spec"];
    let mut sources: Vec<(Vec<Seg>, &Value)> = Vec::new();
    if spec.get("source").is_some() {
        sources.push((
            vec![Seg::Key("spec".into()), Seg::Key("source".into())],
            &spec["source"],
        ));
    }
    if let Some(list) = spec.get("sources").and_then(Value::as_sequence) {
        for (i, source) in list.iter().enumerate() {
            sources.push((
                vec![
                    Seg::Key("spec".into()),
                    Seg::Key("sources".into()),
                    Seg::Index(i),
                ],
                source,
            ));
        }
    }
    for (path, source) in sources {
        if source.get("chart").is_none() {
            continue;
        }
        let revision_path = child(&path, "targetRevision");
        let problem = match source.get("targetRevision") {
            Some(Value::String(revision)) => unpinned_version(revision),
            Some(other) => Some(format!(
                "targetRevision `{}` is not a string",
                serde_yaml::to_string(other).unwrap_or_default().trim()
            )),
            None => Some("Helm source without targetRevision (follows the latest chart)".into()),
        };
        if let Some(problem) = problem {
            findings.push(Finding::new(
                rel,
                doc.line_of(&revision_path),
                format!("Application {name}: {problem}"),
                "pin the exact chart version as a quoted string, e.g. `targetRevision: \"1.20.0\"`",
            ));
        }
    }
    let policy = &spec["syncPolicy"];
    let automated = &policy["automated"];
    if automated["prune"].as_bool() != Some(true) || automated["selfHeal"].as_bool() != Some(true) {
        let path = [
            Seg::Key("spec".into()),
            Seg::Key("syncPolicy".into()),
            Seg::Key("automated".into()),
        ];
        findings.push(Finding::new(
            rel,
            doc.line_of(&path),
            format!("Application {name}: sync is not automated with prune and selfHeal"),
            "set `spec.syncPolicy.automated: {prune: true, selfHeal: true}`",
        ));
    }
    let options = policy["syncOptions"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    if !options
        .iter()
        .any(|o| o.as_str() == Some("CreateNamespace=true"))
    {
        let path = [Seg::Key("spec".into()), Seg::Key("syncPolicy".into())];
        findings.push(Finding::new(
            rel,
            doc.line_of(&path),
            format!("Application {name}: no `CreateNamespace=true` sync option"),
            "add `CreateNamespace=true` to `spec.syncPolicy.syncOptions`",
        ));
    }
    if rel.starts_with(APPS_DIR) {
        let wave = doc.value["metadata"]["annotations"][SYNC_WAVE].as_str();
        if wave.is_none_or(|w| w.trim().parse::<i32>().is_err()) {
            let path = [Seg::Key("metadata".into()), Seg::Key("annotations".into())];
            findings.push(Finding::new(rel, doc.line_of(&path), format!("Application {name}: missing or non-integer `{SYNC_WAVE}` annotation"), format!("add `{SYNC_WAVE}: \"N\"` (a quoted integer): 0 operators, 1 data services, 2 topics/databases, 3 our services, 4 Airflow/Superset")));
        }
    }
}

/// Rules that need every file: kustomize-managed images, pinned images.
pub fn check_tree(files: &[YamlFile]) -> Vec<Finding> {
    let mut findings = Vec::new();
    // Images set by a kustomization apply to the resources under its directory.
    let mut managed: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
    for file in files {
        for doc in &file.docs {
            if doc.type_meta().map(|(_, kind)| kind) != Some("Kustomization") {
                continue;
            }
            let dir = file.rel.parent().unwrap_or(Path::new("")).to_path_buf();
            for (i, image) in doc.value["images"]
                .as_sequence()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let Some(name) = image["name"].as_str() else {
                    continue;
                };
                let new_name = image["newName"].as_str().unwrap_or(name);
                let reference = match (image["digest"].as_str(), image["newTag"].as_str()) {
                    (Some(digest), _) => format!("{new_name}@{digest}"),
                    (None, Some(tag)) => format!("{new_name}:{tag}"),
                    (None, None) => new_name.to_string(),
                };
                let path = [Seg::Key("images".into()), Seg::Index(i)];
                if let Some(problem) = unpinned_image(&reference) {
                    findings.push(Finding::new(
                        &file.rel,
                        doc.line_of(&path),
                        problem,
                        "set `newTag` (or `digest`) of this images entry",
                    ));
                }
                managed.insert(name.to_string(), (dir.clone(), reference));
            }
        }
    }
    for file in files {
        for doc in &file.docs {
            for (path, reference) in image_refs(doc) {
                let line = doc.line_of(&path);
                let repository = reference.split('@').next().unwrap_or(&reference);
                let repository = match repository.rsplit_once(':') {
                    Some((repo, tag)) if !tag.contains('/') => repo,
                    _ => repository,
                };
                if let Some((dir, pinned)) = managed.get(repository) {
                    if file.rel.starts_with(dir) && repository == reference {
                        continue;
                    }
                    if &reference != pinned {
                        findings.push(Finding::new(&file.rel, line, format!("image `{reference}` differs from `{pinned}` set in {}/kustomization.yaml", dir.display()), "use the same tag in both places (`cargo xtask images` prints it)"));
                    }
                    continue;
                }
                if let Some(problem) = unpinned_image(&reference) {
                    let fix = if reference.starts_with(crate::cluster::snapshot::OUR_IMAGES) {
                        "remove the tag (and any digest)"
                    } else {
                        "pin a released tag (or a digest) instead"
                    };
                    findings.push(Finding::new(&file.rel, line, problem, fix));
                }
            }
        }
    }
    findings
}
