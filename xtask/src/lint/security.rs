//! Pod security of our own workloads: every pod runs as non-root with a read-only root
//! file system, all capabilities dropped, no privilege escalation and the RuntimeDefault
//! seccomp profile (the "restricted" Pod Security Standard, plus a read-only root).

use serde_yaml::Value;

use super::Finding;
use super::yaml::{Doc, Seg, YamlFile};

/// The path of the pod spec inside a workload of `kind`.
fn pod_spec_path(kind: &str) -> Vec<Seg> {
    let keys: &[&str] = match kind {
        "Pod" => &["spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &["spec", "template", "spec"],
    };
    keys.iter().map(|k| Seg::Key((*k).to_string())).collect()
}

fn get<'a>(value: &'a Value, path: &[Seg]) -> &'a Value {
    path.iter().fold(value, |v, seg| match seg {
        Seg::Key(k) => &v[k.as_str()],
        Seg::Index(i) => &v[*i],
    })
}

/// Adds a finding for every container of the workload in `doc` that is not locked down.
pub fn check_workload(file: &YamlFile, doc: &Doc, findings: &mut Vec<Finding>) {
    let Some((_, kind)) = doc.type_meta() else {
        return;
    };
    let spec_path = pod_spec_path(kind);
    let spec = get(&doc.value, &spec_path);
    let pod = &spec["securityContext"];
    for list in ["initContainers", "containers"] {
        for (i, container) in spec[list].as_sequence().into_iter().flatten().enumerate() {
            let mut path = spec_path.clone();
            path.extend([Seg::Key(list.into()), Seg::Index(i)]);
            let sc = &container["securityContext"];
            let mut missing = Vec::new();
            if sc["runAsNonRoot"]
                .as_bool()
                .or(pod["runAsNonRoot"].as_bool())
                != Some(true)
            {
                missing.push("runAsNonRoot: true");
            }
            let seccomp = sc["seccompProfile"]["type"]
                .as_str()
                .or(pod["seccompProfile"]["type"].as_str());
            if seccomp != Some("RuntimeDefault") {
                missing.push("seccompProfile.type: RuntimeDefault");
            }
            if sc["readOnlyRootFilesystem"].as_bool() != Some(true) {
                missing.push("readOnlyRootFilesystem: true");
            }
            if sc["allowPrivilegeEscalation"].as_bool() != Some(false) {
                missing.push("allowPrivilegeEscalation: false");
            }
            let drops_all = sc["capabilities"]["drop"]
                .as_sequence()
                .is_some_and(|d| d.iter().any(|c| c.as_str() == Some("ALL")));
            if !drops_all {
                missing.push("capabilities.drop: [ALL]");
            }
            if missing.is_empty() {
                continue;
            }
            let name = container["name"].as_str().unwrap_or("?");
            findings.push(Finding::new(
                &file.rel,
                doc.line_of(&path),
                format!("{kind} {}: container `{name}` lacks {}", doc.name(), missing.join(", ")),
                "set them in the container's securityContext (runAsNonRoot and seccompProfile may sit in the pod's)",
            ));
        }
    }
}
