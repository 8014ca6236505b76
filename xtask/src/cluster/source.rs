//! Where Argo CD and Airflow's git-sync read the platform from: the one setting in
//! [`SETTING`], and the in-cluster git server that serves the checkout by default.
//!
//! By default the source is [`IN_CLUSTER_URL`]: a `git daemon` inside the k3d cluster
//! (`infrastructure/k3d/git-server.yaml`) to which `cargo xtask up` pushes a snapshot
//! commit of the working tree ([`super::snapshot`]), so what Argo CD syncs is exactly what
//! is checked out, uncommitted edits included. Pointing the setting at a remote
//! repository (a shared or cloud cluster) makes every Application and the DAG git-sync
//! read that instead; `cargo xtask lint` checks that every one of them names exactly the
//! setting, and `cargo xtask lint --fix-source` writes it into them.

use std::path::Path;

use anyhow::{Context, bail, ensure};
use serde::Deserialize;

/// The file that decides the source.
pub const SETTING: &str = "infrastructure/source.yaml";
/// The manifest of the in-cluster git server (applied by `up`, not by Argo CD: it must
/// run before Argo CD can read anything).
pub const GIT_SERVER_MANIFEST: &str = "infrastructure/k3d/git-server.yaml";
/// Namespace of the git server: Argo CD's, which exists once Terraform ran.
pub const GIT_NAMESPACE: &str = "argocd";
/// Name of its Deployment and Service, and its pods' `app.kubernetes.io/name`.
pub const GIT_SERVER: &str = "flightdeck-git";
/// The git protocol's port.
pub const GIT_PORT: u16 = 9418;
/// The repository's path on the server.
pub const GIT_REPOSITORY: &str = "flightdeck.git";
/// The repository URL inside the cluster.
pub const IN_CLUSTER_URL: &str = "git://flightdeck-git.argocd.svc.cluster.local/flightdeck.git";

/// The setting: a git repository and the branch to sync.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The repository, e.g. [`IN_CLUSTER_URL`] or `https://github.com/you/flightdeck.git`.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// The branch (for the in-cluster server: the branch `up` pushes the snapshot to).
    #[serde(rename = "targetRevision")]
    pub target_revision: String,
}

impl Source {
    /// Reads [`SETTING`] under `root`.
    pub fn read(root: &Path) -> anyhow::Result<Self> {
        let file = root.join(SETTING);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("read {} (the git source setting)", file.display()))?;
        Self::parse(&text).with_context(|| format!("{SETTING} is not a valid source setting"))
    }

    /// Parses the setting's text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let source: Source = serde_yaml::from_str(text)
            .context("expected exactly `repoURL: <git URL>` and `targetRevision: <branch>`")?;
        ensure!(!source.repo_url.trim().is_empty(), "repoURL is empty");
        ensure!(
            source.repo_url.contains("://") || source.repo_url.contains('@'),
            "repoURL `{}` is not a git URL (git://, https:// or ssh)",
            source.repo_url
        );
        if !is_branch_name(&source.target_revision) {
            bail!(
                "targetRevision `{}` is not a branch name (letters, digits, `-`, `_`, `.`, `/`)",
                source.target_revision
            );
        }
        Ok(source)
    }

    /// Whether the source is the checkout served inside the cluster.
    pub fn in_cluster(&self) -> bool {
        self.repo_url == IN_CLUSTER_URL
    }

    /// The ref `up` pushes the snapshot to.
    pub fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.target_revision)
    }
}

/// A conservative subset of what `git check-ref-format --branch` accepts.
fn is_branch_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.contains("..")
        && !name.contains("//")
        && !name.ends_with(".lock")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_setting_is_the_checkout_served_in_the_cluster() {
        let source = Source::read(&crate::project_root()).expect("the setting");
        assert!(source.in_cluster(), "{source:?}");
        assert_eq!(source.branch_ref(), "refs/heads/deploy");
    }

    #[test]
    fn a_setting_names_a_git_url_and_a_branch() {
        let remote =
            Source::parse("repoURL: https://github.com/you/flightdeck.git\ntargetRevision: main\n")
                .expect("a remote repository");
        assert!(!remote.in_cluster());
        for (text, problem) in [
            ("repoURL: x\ntargetRevision: main\n", "not a git URL"),
            (
                "repoURL: git://h/r.git\ntargetRevision: 'a b'\n",
                "not a branch name",
            ),
            (
                "repoURL: git://h/r.git\ntargetRevision: -x\n",
                "not a branch name",
            ),
            ("repoURL: git://h/r.git\n", "targetRevision"),
            (
                "repoURL: git://h/r.git\ntargetRevision: main\npath: x\n",
                "unknown field",
            ),
        ] {
            let error = format!("{:#}", Source::parse(text).expect_err(text));
            assert!(error.contains(problem), "{text}: {error}");
        }
    }

    #[test]
    fn the_git_server_manifest_serves_the_in_cluster_url() {
        let docs = super::super::documents(&crate::project_root().join(GIT_SERVER_MANIFEST))
            .expect("the git server manifest");
        let of = |kind: &str| {
            docs.iter()
                .find(|d| d["kind"].as_str() == Some(kind))
                .unwrap_or_else(|| panic!("a {kind}"))
        };
        let service = of("Service");
        assert_eq!(service["metadata"]["name"].as_str(), Some(GIT_SERVER));
        assert_eq!(
            service["metadata"]["namespace"].as_str(),
            Some(GIT_NAMESPACE)
        );
        assert_eq!(
            service["spec"]["ports"][0]["port"].as_u64(),
            Some(u64::from(GIT_PORT))
        );
        let deployment = of("Deployment");
        assert_eq!(deployment["metadata"]["name"].as_str(), Some(GIT_SERVER));
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"].as_str(),
            Some(GIT_SERVER)
        );
        assert_eq!(
            IN_CLUSTER_URL,
            format!("git://{GIT_SERVER}.{GIT_NAMESPACE}.svc.cluster.local/{GIT_REPOSITORY}")
        );
    }
}
