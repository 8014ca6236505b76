//! Reading back what `cargo xtask images` wrote, for `up` (which deploys each image under
//! its digest-derived tag) and `e2e --cluster` (which checks the cluster runs exactly
//! these digests): the OCI layout's index names the tags, its manifest the config.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use xshell::Shell;

use super::services::Workspace;

/// An image as `up` will find it once `cargo xtask images` ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// `flightdeck/<bin>`.
    pub name: String,
    /// The binary.
    pub bin: String,
    /// Its docker archive, for `k3d image import`.
    pub archive: PathBuf,
    /// Its OCI layout directory.
    pub layout: PathBuf,
}

/// Every image `cargo xtask images --superset` builds (one per service binary, then
/// Superset's), without building.
pub fn planned(sh: &Shell) -> Result<Vec<Planned>> {
    let workspace = Workspace::load(sh)?;
    let out = workspace.default_out();
    Ok(workspace
        .services
        .iter()
        .map(|service| service.bin.as_str())
        .chain([super::superset::BIN])
        .map(|bin| planned_in(&out, bin))
        .collect())
}

/// The files of the image of `bin` under `out`.
pub fn planned_in(out: &Path, bin: &str) -> Planned {
    let dir = out.join(bin);
    Planned {
        name: format!("flightdeck/{bin}"),
        bin: bin.to_owned(),
        archive: dir.join(format!("{bin}.tar")),
        layout: dir.join("oci"),
    }
}

/// A built image: its tag and digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// `flightdeck/<bin>`.
    pub name: String,
    /// `<version>-<first 12 hex digits of the manifest digest>`.
    pub tag: String,
    /// `sha256:…` of the manifest: the image's identity (`docker.io/…@sha256:…`).
    pub digest: String,
    /// `sha256:…` of the config: the image id a container runtime reports.
    pub config_digest: String,
}

impl Built {
    /// `flightdeck/<bin>:<tag>`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

/// Reads the image of `planned` from its OCI layout.
pub fn read(planned: &Planned) -> Result<Built> {
    let index_file = planned.layout.join("index.json");
    let text = std::fs::read_to_string(&index_file).with_context(|| {
        format!(
            "no image of {} in {}: run `cargo xtask images --superset` (or `cargo xtask up`, which builds it)",
            planned.bin,
            planned.layout.display()
        )
    })?;
    let index: Value =
        serde_json::from_str(&text).with_context(|| format!("parse {}", index_file.display()))?;
    let manifests = index["manifests"]
        .as_array()
        .with_context(|| format!("{}: no manifests", index_file.display()))?;
    let mut tag = None;
    let mut digest = None;
    for manifest in manifests {
        let name = manifest["annotations"]["org.opencontainers.image.ref.name"].as_str();
        if let Some(name) = name.filter(|n| *n != "latest") {
            tag = Some(name.to_owned());
            digest = manifest["digest"].as_str().map(str::to_owned);
        }
    }
    let (Some(tag), Some(digest)) = (tag, digest) else {
        bail!(
            "{}: no versioned tag (is it an image of `cargo xtask images`?)",
            index_file.display()
        );
    };
    let blob = planned
        .layout
        .join("blobs")
        .join(digest.replacen(':', "/", 1));
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(&blob).with_context(|| format!("read {}", blob.display()))?,
    )
    .with_context(|| format!("parse {}", blob.display()))?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .with_context(|| format!("{}: no config digest", blob.display()))?
        .to_owned();
    Ok(Built {
        name: planned.name.clone(),
        tag,
        digest,
        config_digest,
    })
}

/// Writes a small image of `bin` (a file with `content` as its binary) under `out`, as
/// `cargo xtask images` would, for tests of what reads it back.
#[cfg(test)]
pub fn write_test_image(out: &Path, bin: &str, content: &str) -> Result<Built> {
    use super::services::Service;
    use super::{layer, oci, output, stamp::Stamp};
    let service = Service {
        package: bin.into(),
        bin: bin.into(),
        version: "0.1.0".into(),
        description: None,
        license: None,
    };
    let mut tree = layer::Tree::default();
    tree.file(
        &format!("usr/local/bin/{bin}"),
        0o755,
        content.as_bytes().to_vec(),
    )?;
    let image = oci::assemble(
        &service,
        &Stamp::new(7, None),
        &[("app", layer::pack(&tree, 7)?)],
    )?;
    output::write(&image, bin, out, 7)?;
    read(&planned_in(out, bin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::oci::{Image, assemble};
    use crate::images::services::Service;
    use crate::images::stamp::Stamp;
    use crate::images::{layer, output};

    fn image() -> Result<Image> {
        let service = Service {
            package: "producer".into(),
            bin: "producer".into(),
            version: "0.1.0".into(),
            description: None,
            license: None,
        };
        let mut tree = layer::Tree::default();
        tree.file("usr/local/bin/producer", 0o755, b"bin".to_vec())?;
        assemble(
            &service,
            &Stamp::new(7, None),
            &[("app", layer::pack(&tree, 7)?)],
        )
    }

    #[test]
    fn a_written_image_reads_back_with_its_tag_and_digests() -> Result<()> {
        let image = image()?;
        let out = tempfile::tempdir()?;
        output::write(&image, "producer", out.path(), 7)?;
        let planned = planned_in(out.path(), "producer");
        assert!(
            planned.archive.is_file(),
            "the docker archive is where `up` imports it from"
        );
        let built = read(&planned)?;
        assert_eq!(built.tag, image.tags[0]);
        assert_eq!(built.digest, image.digest);
        assert_eq!(
            built.reference(),
            format!("flightdeck/producer:{}", image.tags[0])
        );
        assert!(built.config_digest.starts_with("sha256:"));
        assert_ne!(built.config_digest, built.digest);
        Ok(())
    }

    #[test]
    fn a_missing_image_says_how_to_build_it() {
        let out = tempfile::tempdir().expect("a directory");
        let error = read(&planned_in(out.path(), "processor")).expect_err("nothing built");
        assert!(
            format!("{error:#}").contains("run `cargo xtask images --superset`"),
            "{error:#}"
        );
    }
}
