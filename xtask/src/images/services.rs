//! Which images there are: one per `bin` target of every crate under `services/`.
//!
//! Read from `cargo metadata`, so a service added later gets an image without any
//! change here.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use xshell::{Shell, cmd};

/// One service binary, and so one image `flightdeck/<bin>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The cargo package that owns the binary (`cargo build -p <package>`).
    pub package: String,
    /// The binary target's name: the image name and its entrypoint.
    pub bin: String,
    /// The package version: the first half of the image tag.
    pub version: String,
    /// The package description, copied into the image's labels.
    pub description: Option<String>,
    /// The package licence expression, copied into the image's labels.
    pub license: Option<String>,
}

/// The services of the workspace and where cargo puts their binaries.
#[derive(Debug)]
pub struct Workspace {
    /// Every service binary, sorted by name.
    pub services: Vec<Service>,
    /// cargo's target directory (honours `CARGO_TARGET_DIR`).
    pub target_dir: PathBuf,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    target_directory: PathBuf,
    workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
    description: Option<String>,
    license: Option<String>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
}

impl Workspace {
    /// Runs `cargo metadata` for the workspace in `sh`'s directory.
    pub fn load(sh: &Shell) -> Result<Self> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let metadata = cmd!(sh, "{cargo} metadata --no-deps --format-version 1")
            .quiet()
            .read()
            .context("run `cargo metadata` to find the services")?;
        Self::from_metadata(&metadata)
    }

    /// Parses the output of `cargo metadata --no-deps --format-version 1`.
    pub fn from_metadata(json: &str) -> Result<Self> {
        let metadata: Metadata =
            serde_json::from_str(json).context("parse the output of `cargo metadata`")?;
        let services_dir = metadata.workspace_root.join("services");
        let mut services: Vec<Service> = metadata
            .packages
            .iter()
            .filter(|package| package.manifest_path.starts_with(&services_dir))
            .flat_map(|package| {
                package
                    .targets
                    .iter()
                    .filter(|target| target.kind.iter().any(|kind| kind == "bin"))
                    .map(move |target| Service {
                        package: package.name.clone(),
                        bin: target.name.clone(),
                        version: package.version.clone(),
                        description: package.description.clone(),
                        license: package.license.clone(),
                    })
            })
            .collect();
        services.sort_by(|a, b| a.bin.cmp(&b.bin));
        if services.is_empty() {
            bail!(
                "no binary targets under {}: nothing to build images of",
                services_dir.display()
            );
        }
        Ok(Self {
            services,
            target_dir: metadata.target_directory,
        })
    }

    /// The services named by `--service`, or all of them when none is named.
    pub fn select(&self, names: &[String]) -> Result<Vec<Service>> {
        if names.is_empty() {
            return Ok(self.services.clone());
        }
        let mut selected = Vec::new();
        for name in names {
            let Some(service) = self.services.iter().find(|service| &service.bin == name) else {
                bail!(
                    "unknown service `{name}`: the services are {}",
                    self.names().join(", ")
                );
            };
            if !selected.contains(service) {
                selected.push(service.clone());
            }
        }
        selected.sort_by(|a, b| a.bin.cmp(&b.bin));
        Ok(selected)
    }

    /// Every service name, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.services
            .iter()
            .map(|service| service.bin.as_str())
            .collect()
    }

    /// Where `cargo build --release` leaves a binary.
    pub fn release_binary(&self, service: &Service) -> PathBuf {
        self.target_dir.join("release").join(&service.bin)
    }

    /// The default output directory: `<target dir>/images`.
    pub fn default_out(&self) -> PathBuf {
        Path::new(&self.target_dir).join("images")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METADATA: &str = r#"{
      "workspace_root": "/w",
      "target_directory": "/w/target",
      "packages": [
        {"name": "xtask", "version": "0.1.0", "manifest_path": "/w/xtask/Cargo.toml",
         "description": null, "license": null,
         "targets": [{"name": "xtask", "kind": ["bin"]}]},
        {"name": "flight-model", "version": "0.1.0", "manifest_path": "/w/services/flight-model/Cargo.toml",
         "description": null, "license": null,
         "targets": [{"name": "flight_model", "kind": ["lib"]}]},
        {"name": "producer", "version": "0.2.0", "manifest_path": "/w/services/producer/Cargo.toml",
         "description": "polls", "license": "Apache-2.0",
         "targets": [{"name": "producer", "kind": ["lib"]}, {"name": "producer", "kind": ["bin"]}]},
        {"name": "processor", "version": "0.1.0", "manifest_path": "/w/services/processor/Cargo.toml",
         "description": null, "license": "Apache-2.0",
         "targets": [{"name": "processor", "kind": ["bin"]}, {"name": "replay", "kind": ["bin"]}]}
      ]
    }"#;

    fn workspace() -> Result<Workspace> {
        Workspace::from_metadata(METADATA)
    }

    #[test]
    fn every_bin_target_under_services_is_a_service() -> Result<()> {
        let ws = workspace()?;
        assert_eq!(ws.names(), ["processor", "producer", "replay"]);
        let replay = &ws.services[2];
        assert_eq!(
            (replay.package.as_str(), replay.version.as_str()),
            ("processor", "0.1.0")
        );
        assert_eq!(
            ws.release_binary(replay),
            Path::new("/w/target/release/replay")
        );
        assert_eq!(ws.default_out(), Path::new("/w/target/images"));
        Ok(())
    }

    #[test]
    fn no_service_flag_selects_all_and_names_are_deduplicated() -> Result<()> {
        let ws = workspace()?;
        assert_eq!(ws.select(&[])?.len(), 3);
        let picked = ws.select(&["producer".into(), "processor".into(), "producer".into()])?;
        let names: Vec<_> = picked.iter().map(|s| s.bin.as_str()).collect();
        assert_eq!(names, ["processor", "producer"]);
        Ok(())
    }

    #[test]
    fn unknown_service_is_an_error_listing_the_services() -> Result<()> {
        let err = workspace()?
            .select(&["consumer".into()])
            .expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown service `consumer`: the services are processor, producer, replay"
        );
        Ok(())
    }

    #[test]
    fn a_workspace_without_service_binaries_is_an_error() {
        let json = r#"{"workspace_root": "/w", "target_directory": "/w/target", "packages": []}"#;
        let err = Workspace::from_metadata(json)
            .expect_err("no services")
            .to_string();
        assert!(err.contains("no binary targets under /w/services"), "{err}");
    }
}
