//! Each rule on a small broken example, and the real files clean.

use std::path::Path;

use super::*;

fn messages(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .map(|f| format!("{}:{}: {}", f.file.display(), f.line, f.message))
        .collect()
}

#[test]
fn actions_must_be_pinned_by_commit_sha() {
    let text = "name: ci\non: push\npermissions:\n  contents: read\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: actions/checkout@v5\n      - uses: actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0\n      - uses: ./.github/actions/local\n      - name: cache\n        uses: \"actions/cache@main\"\n";
    let found = messages(&workflow(Path::new(".github/workflows/ci.yaml"), text));
    assert_eq!(
        found,
        [
            ".github/workflows/ci.yaml:9: action `actions/checkout@v5` is not pinned by a full commit SHA",
            ".github/workflows/ci.yaml:13: action `actions/cache@main` is not pinned by a full commit SHA",
        ]
    );
}

#[test]
fn a_workflow_declares_its_permissions() {
    let found = messages(&workflow(
        Path::new("w.yaml"),
        "name: x\non: push\njobs: {}\n",
    ));
    assert_eq!(
        found,
        ["w.yaml:1: the workflow does not declare its `permissions`"]
    );
}

#[test]
fn the_devcontainer_pins_its_image_and_features_and_enters_the_flake() {
    let text = r#"{
  "image": "mcr.microsoft.com/devcontainers/base:bookworm",
  "features": {
    "ghcr.io/devcontainers/features/nix:1": {},
    "ghcr.io/devcontainers/features/docker-in-docker:2.12.2": {}
  },
  "postCreateCommand": "cargo build"
}"#;
    let found = messages(&devcontainer(Path::new("d.json"), text));
    assert_eq!(
        found,
        [
            "d.json:2: image `mcr.microsoft.com/devcontainers/base:bookworm` is not pinned by digest",
            "d.json:4: feature `ghcr.io/devcontainers/features/nix:1` is not pinned to an exact version",
            "d.json:7: `postCreateCommand` does not run `nix develop`",
            "d.json:7: `postCreateCommand` does not run `cargo xtask doctor`",
        ]
    );
}

#[test]
fn every_flake_input_is_locked_by_rev_and_nar_hash() {
    let lock = r#"{"nodes": {
  "nixpkgs": {"locked": {"rev": "17de0b976395537756f30a3e78f2f06e5cec89ed", "narHash": ""}},
  "root": {"inputs": {"nixpkgs": "nixpkgs"}}
}, "root": "root", "version": 7}"#;
    let found = messages(&flake_lock(Path::new("flake.lock"), lock));
    assert_eq!(
        found,
        ["flake.lock:2: input `nixpkgs` is not locked by `narHash`"]
    );
    let nix = "{\n  inputs = {\n    nixpkgs.url = \"github:NixOS/nixpkgs\";\n    crane = {\n      url = \"github:ipetkov/crane\";\n    };\n  };\n}\n";
    let found = messages(&flake_inputs_locked(nix, lock));
    assert_eq!(
        found,
        ["flake.nix:4: input `crane` has no entry in flake.lock"]
    );
}

#[test]
fn the_k3s_image_is_pinned_by_digest() {
    let found = messages(&k3s_image(
        Path::new("c.yaml"),
        "kind: Simple\nimage: rancher/k3s:v1.33.13-k3s2\n",
    ));
    assert_eq!(
        found,
        ["c.yaml:2: the k3s image `rancher/k3s:v1.33.13-k3s2` is not pinned by digest"]
    );
}

#[test]
fn the_committed_environment_is_clean() {
    let findings = check(&crate::project_root()).expect("the checks run");
    assert!(findings.is_empty(), "{:#?}", messages(&findings));
}
