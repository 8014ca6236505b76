//! The tools `cargo xtask doctor` checks: how to ask each for its version, the oldest
//! version that works, what needs it and how to install it.

/// What a tool is for; `Up` tools are required for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `cargo xtask up`, `down` and `e2e --cluster k3d`.
    Up,
    /// `cargo xtask dev` and `e2e` (the local stack).
    Local,
    /// The pinned environment (`nix develop`) and the lint's flake check.
    Env,
    /// Looking at the local database by hand.
    Optional,
}

impl Need {
    pub fn label(self) -> &'static str {
        match self {
            Need::Up => "up, down, e2e --cluster",
            Need::Local => "dev, e2e (local)",
            Need::Env => "nix develop, lint",
            Need::Optional => "by hand (optional)",
        }
    }
}

/// One tool and how to check it.
pub struct Tool {
    /// What the report calls it.
    pub name: &'static str,
    /// The command printing its version.
    pub probe: &'static [&'static str],
    /// The oldest version that works, `(major, minor, patch)`.
    pub minimum: (u64, u64, u64),
    /// The expectation, as shown.
    pub expected: &'static str,
    /// What needs it.
    pub need: Need,
    /// How to install or repair it.
    pub fix: &'static str,
}

const NIX_FIX: &str = "install Nix (https://nixos.org/download, or the devcontainer) and run `nix develop`: flake.nix pins every tool of this report";

/// Every tool probed by running it, in report order (the docker CLI before its daemon).
pub const TOOLS: &[Tool] = &[
    Tool {
        name: "docker",
        // NB: `docker version` fails as a whole when the daemon is down; this does not.
        probe: &["docker", "--version"],
        minimum: (24, 0, 0),
        expected: ">= 24 (Docker Engine CLI)",
        need: Need::Up,
        fix: "install Docker Engine (https://docs.docker.com/engine/install/) or open the devcontainer (docker-in-docker)",
    },
    Tool {
        name: "docker daemon",
        probe: &["docker", "info", "--format", "{{.ServerVersion}}"],
        minimum: (24, 0, 0),
        expected: "running, >= 24",
        need: Need::Up,
        fix: "start the Docker daemon (`sudo systemctl start docker`, or Docker Desktop) and make sure your user may use it (`docker info` works); in the devcontainer docker-in-docker starts it",
    },
    Tool {
        name: "k3d",
        probe: &["k3d", "version"],
        minimum: (5, 5, 0),
        expected: ">= 5.5 (config k3d.io/v1alpha5)",
        need: Need::Up,
        fix: "`nix develop` (flake.nix pins k3d), or `curl -fsSL https://raw.githubusercontent.com/k3d-io/k3d/main/install.sh | TAG=v5.8.3 bash`",
    },
    Tool {
        name: "kubectl",
        probe: &["kubectl", "version", "--client"],
        minimum: (1, 32, 0),
        expected: "1.32-1.34 (k3s is 1.33)",
        need: Need::Up,
        fix: "`nix develop`, or https://kubernetes.io/docs/tasks/tools/#kubectl",
    },
    Tool {
        name: "git",
        probe: &["git", "--version"],
        // NB: `up` commits the working tree with plumbing (`rev-parse --git-path`,
        // `commit-tree --no-gpg-sign`) and pushes it to the cluster's git server.
        minimum: (2, 20, 0),
        expected: ">= 2.20",
        need: Need::Up,
        fix: "`nix develop`, or `apt-get install git`",
    },
    Tool {
        name: "terraform",
        probe: &["terraform", "version"],
        minimum: (1, 5, 0),
        expected: ">= 1.5 (versions.tf), Terraform or OpenTofu",
        need: Need::Up,
        fix: "`nix develop` (OpenTofu as `terraform`), or https://developer.hashicorp.com/terraform/install",
    },
    Tool {
        name: "skopeo",
        probe: &["skopeo", "--version"],
        minimum: (1, 9, 0),
        expected: ">= 1.9",
        // NB: `up` builds the Superset image on the official one, which skopeo resolves
        // (to pin it) and copies by digest on a machine's first build; it also copies
        // images to a registry (`images --push`) and the images test reads them.
        need: Need::Up,
        fix: "`nix develop`, or `apt-get install skopeo`",
    },
    Tool {
        name: "nix",
        probe: &["nix", "--version"],
        // NB: the floor the locked crane documents.
        minimum: (2, 31, 2),
        expected: ">= 2.31.2 with flakes (crane's floor)",
        need: Need::Env,
        fix: NIX_FIX,
    },
    Tool {
        name: "python3",
        probe: &["python3", "--version"],
        minimum: (3, 9, 0),
        expected: ">= 3.9 with venv",
        // NB: `up` unpacks the PostgreSQL driver's wheel into the Superset image with
        // Python's zipfile (and downloads it with pip once); the lint's DAG test and the
        // local Superset need it too.
        need: Need::Up,
        fix: "`nix develop`, or `apt-get install python3 python3-venv`",
    },
    Tool {
        name: "psql",
        probe: &["psql", "--version"],
        minimum: (13, 0, 0),
        expected: ">= 13",
        need: Need::Optional,
        fix: "`nix develop`, or `apt-get install postgresql-client`",
    },
];

/// The first `major.minor[.patch]` in `text`.
pub fn version(text: &str) -> Option<(u64, u64, u64)> {
    let bytes = text.as_bytes();
    (0..bytes.len()).find_map(|start| {
        if !bytes[start].is_ascii_digit() || (start > 0 && bytes[start - 1].is_ascii_digit()) {
            return None;
        }
        let rest = &text[start..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let mut parts = rest[..end].split('.').map(|p| p.parse::<u64>().ok());
        let (major, minor) = (parts.next()??, parts.next()??);
        Some((major, minor, parts.next().flatten().unwrap_or(0)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_each_tool_s_output() {
        assert_eq!(
            version("k3d version v5.8.3\nk3s version v1.31.5-k3s1 (default)"),
            Some((5, 8, 3))
        );
        assert_eq!(
            version("Client Version: v1.32.4-dispatcher\nKustomize Version: v5.5.0"),
            Some((1, 32, 4))
        );
        assert_eq!(
            version("Terraform v1.11.4\non linux_amd64"),
            Some((1, 11, 4))
        );
        assert_eq!(version("OpenTofu v1.10.5"), Some((1, 10, 5)));
        assert_eq!(version("skopeo version 1.9.3"), Some((1, 9, 3)));
        assert_eq!(version("nix (Nix) 2.28.3"), Some((2, 28, 3)));
        assert_eq!(version("28.2.2\n"), Some((28, 2, 2)));
        assert_eq!(version("psql (PostgreSQL) 17"), None);
        assert_eq!(version("no digits"), None);
    }
}
