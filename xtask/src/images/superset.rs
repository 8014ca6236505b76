//! The cluster's Superset image: the official `apache/superset` release, pinned by digest,
//! plus one layer holding the PostgreSQL driver, built without Docker like the service
//! images.
//!
//! Since 4.1 the official image ships without database drivers, and the chart's answer
//! (`pip install` in a bootstrap script at every pod start, as root, from the internet)
//! is neither pinned nor offline. Instead the base image is copied once by digest with
//! skopeo into an OCI layout cached under `~/.cache/flightdeck/images/`, the
//! `psycopg2-binary` wheel (the version and hashes of the local Superset's requirements)
//! is unpacked into the image's virtualenv as a new layer, and a new config and manifest
//! are written around the base's layers, which are reused byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use super::layer::{self, Tree, sha256_digest};
use super::oci::{Image, canonical_json};

/// The official image, by tag (for people) and digest (what is pulled).
pub const BASE: &str = "docker.io/apache/superset:6.0.0";
/// NB: the digest of `BASE` (linux/amd64 manifest). Docker Hub could not be reached where
/// this was written, so it is pinned on the first build with network access: `cargo xtask
/// images --superset` prints the command when it is empty.
pub const BASE_DIGEST: &str = "";
/// The virtualenv's site-packages in the official image (Python 3.10).
pub const SITE_PACKAGES: &str = "app/.venv/lib/python3.10/site-packages";
/// The Python tag of the wheels the image can load.
const PYTHON_TAG: &str = "cp310";
/// The derived image's name and tag: the Superset release and the driver's version.
pub const NAME: &str = "flightdeck/superset";

/// The driver pin, read from the local Superset's requirements (one source of pins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    /// `2.9.10`.
    pub version: String,
    /// Every allowed `sha256:` of its distributions.
    pub hashes: Vec<String>,
}

/// Reads the `psycopg2-binary==X` entry and its hashes from a hashed requirements file.
pub fn driver_pin(requirements: &str) -> Result<Driver> {
    let mut lines = requirements
        .lines()
        .skip_while(|l| !l.starts_with("psycopg2-binary=="));
    let first = lines
        .next()
        .context("psycopg2-binary is not pinned in the Superset requirements")?;
    let version = first
        .trim_start_matches("psycopg2-binary==")
        .trim_end_matches('\\')
        .trim()
        .to_owned();
    let hashes = lines
        .map(str::trim)
        .take_while(|l| l.starts_with("--hash="))
        .map(|l| {
            l.trim_start_matches("--hash=")
                .trim_end_matches('\\')
                .trim()
                .to_owned()
        })
        .collect::<Vec<_>>();
    ensure!(
        !hashes.is_empty(),
        "psycopg2-binary=={version} has no hashes"
    );
    Ok(Driver { version, hashes })
}

/// The image tag: `<superset version>-psycopg2-<driver version>`.
pub fn tag(driver: &Driver) -> String {
    let superset = BASE.rsplit(':').next().unwrap_or_default();
    format!("{superset}-psycopg2-{}", driver.version)
}

/// An OCI image layout read from disk: its blobs by digest and the manifest of one tag.
#[derive(Debug)]
pub struct Layout {
    /// `sha256:…` → bytes (only the blobs the manifest references).
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// The image manifest.
    pub manifest: Value,
    /// The image config.
    pub config: Value,
}

impl Layout {
    /// Reads the image of `tag` (its `org.opencontainers.image.ref.name`) from `dir`.
    pub fn read(dir: &Path, tag: &str) -> Result<Self> {
        let blob = |digest: &str| -> Result<Vec<u8>> {
            let path = dir.join("blobs").join(digest.replacen(':', "/", 1));
            let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
            ensure!(
                sha256_digest(&bytes) == digest,
                "{} does not match its digest",
                path.display()
            );
            Ok(bytes)
        };
        let index: Value = serde_json::from_slice(
            &std::fs::read(dir.join("index.json"))
                .with_context(|| format!("read {}/index.json", dir.display()))?,
        )?;
        let entry = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .with_context(|| format!("{} has no image tagged {tag}", dir.display()))?;
        let manifest_digest = entry["digest"].as_str().context("index entry digest")?;
        let manifest: Value = serde_json::from_slice(&blob(manifest_digest)?)?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .context("manifest config digest")?
            .to_owned();
        let mut blobs = BTreeMap::new();
        let config_bytes = blob(&config_digest)?;
        let config: Value = serde_json::from_slice(&config_bytes)?;
        blobs.insert(config_digest, config_bytes);
        for layer in manifest["layers"].as_array().context("manifest layers")? {
            let digest = layer["digest"].as_str().context("layer digest")?;
            blobs.insert(digest.to_owned(), blob(digest)?);
        }
        Ok(Self {
            blobs,
            manifest,
            config,
        })
    }
}

/// The files of a wheel (a zip), placed under `site-packages` in a new layer tree.
pub fn wheel_tree(wheel: &Path) -> Result<Tree> {
    // NB: the wheel is unpacked with Python's zipfile (already required for the local
    // Superset) rather than another Rust dependency; the result is read back and
    // normalised into the layer like every other file.
    let unpacked = tempfile::tempdir().context("create a temporary directory")?;
    let status = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(wheel)
        .arg(unpacked.path())
        .status()
        .context("unpack the wheel with `python3 -m zipfile`")?;
    ensure!(status.success(), "unpacking {} failed", wheel.display());
    let mut tree = Tree::default();
    let mut stack = vec![unpacked.path().to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let rel = path
                .strip_prefix(unpacked.path())?
                .to_string_lossy()
                .into_owned();
            let target = format!("{SITE_PACKAGES}/{rel}");
            if path.is_dir() {
                tree.dir(&target, 0o755)?;
                stack.push(path);
            } else {
                let executable = rel.ends_with(".so");
                let data = std::fs::read(&path)?;
                tree.file(&target, if executable { 0o755 } else { 0o644 }, data)?;
            }
        }
    }
    ensure!(!tree.is_empty(), "{} holds no files", wheel.display());
    Ok(tree)
}

/// The derived image: the base's layers, then `layer`; config and manifest rewritten.
/// Returns the OCI layout files (path → bytes) and the manifest digest.
pub fn derive(
    base: &Layout,
    added: &layer::Packed,
    what: &str,
    created: &str,
    tags: &[String],
) -> Result<(BTreeMap<String, Vec<u8>>, String)> {
    let mut config = base.config.clone();
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .context("base config has no rootfs.diff_ids")?
        .push(json!(added.diff_id));
    let history = config
        .as_object_mut()
        .context("base config is not an object")?
        .entry("history")
        .or_insert_with(|| json!([]));
    history
        .as_array_mut()
        .context("base config history is not a list")?
        .push(json!({"created": created, "created_by": format!("cargo xtask images: {what}")}));
    let config_bytes = canonical_json(&config)?;
    let config_digest = sha256_digest(&config_bytes);
    let layer_digest = sha256_digest(&added.gz);

    let mut manifest = base.manifest.clone();
    manifest["config"]["digest"] = json!(config_digest);
    manifest["config"]["size"] = json!(config_bytes.len());
    let layer_type = match manifest["mediaType"].as_str() {
        Some("application/vnd.docker.distribution.manifest.v2+json") => {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        }
        _ => "application/vnd.oci.image.layer.v1.tar+gzip",
    };
    manifest["layers"]
        .as_array_mut()
        .context("base manifest has no layers")?
        .push(json!({"mediaType": layer_type, "digest": layer_digest, "size": added.gz.len()}));
    let manifest_bytes = canonical_json(&manifest)?;
    let manifest_digest = sha256_digest(&manifest_bytes);

    let mut files = BTreeMap::new();
    for (digest, bytes) in &base.blobs {
        files.insert(blob_path(digest), bytes.clone());
    }
    files.insert(blob_path(&config_digest), config_bytes);
    files.insert(blob_path(&layer_digest), added.gz.clone());
    files.insert(blob_path(&manifest_digest), manifest_bytes.clone());
    let manifest_type = manifest["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_owned();
    let entries: Vec<Value> = tags
        .iter()
        .map(|tag| {
            json!({
                "mediaType": manifest_type,
                "digest": manifest_digest,
                "size": manifest_bytes.len(),
                "annotations": {
                    "io.containerd.image.name": format!("docker.io/{NAME}:{tag}"),
                    "org.opencontainers.image.ref.name": tag,
                },
            })
        })
        .collect();
    files.insert(
        "index.json".into(),
        canonical_json(&json!({"schemaVersion": 2, "manifests": entries}))?,
    );
    files.insert(
        "oci-layout".into(),
        canonical_json(&json!({"imageLayoutVersion": "1.0.0"}))?,
    );
    Ok((files, manifest_digest))
}

/// Builds the derived image from `base` (an OCI layout and tag; by default the pinned
/// official image, copied once), as an [`Image`] ready for [`super::output::write`].
pub fn build(
    root: &Path,
    base: Option<(PathBuf, String)>,
    stamp: &super::stamp::Stamp,
) -> Result<Image> {
    let cache = cache_dir()?;
    let requirements = root.join(crate::dashboard::install::REQUIREMENTS);
    let driver = driver_pin(
        &std::fs::read_to_string(&requirements)
            .with_context(|| format!("read {}", requirements.display()))?,
    )?;
    let (dir, base_tag) = match base {
        Some(base) => base,
        None => (fetch_base(&cache)?, "base".to_owned()),
    };
    let base = Layout::read(&dir, &base_tag)?;
    let wheel = fetch_wheel(&cache, &driver)?;
    let added = layer::pack(&wheel_tree(&wheel)?, stamp.epoch)?;
    let tags = [tag(&driver), "latest".to_owned()];
    let what = format!("psycopg2-binary {} into {SITE_PACKAGES}", driver.version);
    let (layout, digest) = derive(&base, &added, &what, &stamp.created, &tags)?;
    let manifest: Value = serde_json::from_slice(&layout[&blob_path(&digest)])?;
    let docker_manifest = canonical_json(&json!([{
        "Config": blob_path(manifest["config"]["digest"].as_str().context("config digest")?),
        "RepoTags": tags.iter().map(|t| format!("{NAME}:{t}")).collect::<Vec<_>>(),
        "Layers": manifest["layers"].as_array().context("layers")?.iter()
            .map(|l| l["digest"].as_str().map(blob_path).context("layer digest"))
            .collect::<Result<Vec<_>>>()?,
    }]))?;
    let compressed_size = layout
        .iter()
        .filter(|(path, _)| path.starts_with("blobs/"))
        .map(|(_, blob)| blob.len() as u64)
        .sum();
    Ok(Image {
        name: NAME.to_owned(),
        tags,
        digest,
        // NB: the base's unpacked size is not known without unpacking it; what this
        // build adds is.
        uncompressed_size: added.uncompressed_size,
        compressed_size,
        layout,
        docker_manifest,
    })
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

/// The cache of base layouts and wheels: `~/.cache/flightdeck/images/`.
pub fn cache_dir() -> Result<PathBuf> {
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(cache.join("flightdeck").join("images"))
}

/// The base layout, copied by digest with skopeo on first use.
pub fn fetch_base(cache: &Path) -> Result<PathBuf> {
    if BASE_DIGEST.is_empty() {
        bail!(
            "the digest of {BASE} is not pinned yet: run\n  skopeo inspect --override-os linux \
             --override-arch amd64 --format '{{{{.Digest}}}}' docker://{BASE}\nand write it into \
             BASE_DIGEST in xtask/src/images/superset.rs (or pass --superset-base oci:DIR:TAG)"
        );
    }
    let dir = cache.join(format!("superset-base-{}", BASE_DIGEST.replace(':', "-")));
    if dir.join("index.json").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache)?;
    let repository = BASE.rsplit_once(':').map_or(BASE, |(r, _)| r);
    let source = format!("docker://{repository}@{BASE_DIGEST}");
    println!(
        "==> copying {source} into {} (first use only)",
        dir.display()
    );
    let status = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--override-os",
            "linux",
            "--override-arch",
            "amd64",
        ])
        .arg(&source)
        .arg(format!("oci:{}:base", dir.display()))
        .status()
        .context("run skopeo (install it: apt-get install skopeo)")?;
    ensure!(status.success(), "skopeo could not copy {source}");
    Ok(dir)
}

/// The wheel of the pinned driver for the image's Python, downloaded with pip (hashes
/// checked) into the cache on first use.
pub fn fetch_wheel(cache: &Path, driver: &Driver) -> Result<PathBuf> {
    let dir = cache.join(format!("psycopg2-binary-{}-{PYTHON_TAG}", driver.version));
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
    };
    if let Some(wheel) = find() {
        return Ok(wheel);
    }
    std::fs::create_dir_all(&dir)?;
    let requirement = dir.join("requirement.txt");
    let hashes: String = driver
        .hashes
        .iter()
        .map(|h| format!(" --hash={h}"))
        .collect();
    std::fs::write(
        &requirement,
        format!("psycopg2-binary=={}{hashes}\n", driver.version),
    )?;
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--require-hashes",
        ])
        .args([
            "--only-binary",
            ":all:",
            "--implementation",
            "cp",
            "--python-version",
            "3.10",
        ])
        .args(["--platform", "manylinux2014_x86_64", "-d"])
        .arg(&dir)
        .arg("-r")
        .arg(&requirement)
        .status()
        .context("run pip download")?;
    ensure!(
        status.success(),
        "pip could not download psycopg2-binary=={}",
        driver.version
    );
    find().context("pip downloaded no wheel")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::layer::pack;

    #[test]
    fn the_driver_pin_comes_from_the_superset_requirements() -> Result<()> {
        let text = std::fs::read_to_string(
            crate::project_root().join(crate::dashboard::install::REQUIREMENTS),
        )?;
        let driver = driver_pin(&text)?;
        assert_eq!(driver.version, "2.9.10");
        assert!(driver.hashes.len() > 10, "{:?}", driver.hashes);
        assert!(
            driver
                .hashes
                .iter()
                .all(|h| h.starts_with("sha256:") && h.len() == 71)
        );
        assert_eq!(tag(&driver), "6.0.0-psycopg2-2.9.10");
        Ok(())
    }

    /// A small base image written as an OCI layout, like skopeo writes the real one.
    fn base_layout(dir: &Path) -> Result<()> {
        let mut tree = Tree::default();
        tree.dir(SITE_PACKAGES, 0o755)?;
        tree.file("app/.venv/bin/python", 0o755, b"#!python".to_vec())?;
        let base_layer = pack(&tree, 1)?;
        let config = canonical_json(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"User": "superset", "Env": ["PATH=/app/.venv/bin:/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [base_layer.diff_id]},
            "history": [{"created_by": "base"}],
        }))?;
        let manifest = canonical_json(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256_digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": sha256_digest(&base_layer.gz), "size": base_layer.gz.len()}],
        }))?;
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs)?;
        for bytes in [&config, &manifest, &base_layer.gz] {
            let digest = sha256_digest(bytes);
            std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes)?;
        }
        std::fs::write(
            dir.join("index.json"),
            canonical_json(&json!({"schemaVersion": 2, "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha256_digest(&manifest), "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": "base"}}]}))?,
        )?;
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(())
    }

    /// A wheel-shaped zip, made with Python's zipfile like a real one.
    fn wheel(dir: &Path) -> Result<PathBuf> {
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("psycopg2"))?;
        std::fs::write(
            src.join("psycopg2/__init__.py"),
            "from ._psycopg import *\n",
        )?;
        std::fs::write(src.join("psycopg2/_psycopg.so"), b"\x7fELF")?;
        let wheel = dir.join("psycopg2_binary-2.9.10-cp310-cp310-manylinux_2_17_x86_64.whl");
        let status = Command::new("python3")
            .args(["-m", "zipfile", "-c"])
            .arg(&wheel)
            .arg(src.join("psycopg2"))
            .status()?;
        ensure!(status.success(), "zip");
        Ok(wheel)
    }

    #[test]
    fn the_driver_layer_goes_on_top_of_the_unchanged_base_layers() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let base_dir = dir.path().join("base");
        base_layout(&base_dir)?;
        let base = Layout::read(&base_dir, "base")?;
        let tree = wheel_tree(&wheel(dir.path())?)?;
        let added = pack(&tree, 7)?;
        let tags = ["6.0.0-psycopg2-2.9.10".to_owned()];
        let (files, digest) = derive(
            &base,
            &added,
            "psycopg2-binary 2.9.10",
            "1970-01-01T00:00:07Z",
            &tags,
        )?;

        // Written out, the new layout reads back as an image with one more layer.
        let out = dir.path().join("derived");
        for (path, bytes) in &files {
            let file = out.join(path);
            std::fs::create_dir_all(file.parent().context("parent")?)?;
            std::fs::write(file, bytes)?;
        }
        let derived = Layout::read(&out, &tags[0])?;
        assert_eq!(
            sha256_digest(&files[&format!("blobs/{}", digest.replacen(':', "/", 1))]),
            digest
        );
        let layers = derived.manifest["layers"].as_array().context("layers")?;
        assert_eq!(layers.len(), 2);
        assert_eq!(
            layers[0], base.manifest["layers"][0],
            "the base layer is reused as is"
        );
        let diff_ids = derived.config["rootfs"]["diff_ids"]
            .as_array()
            .context("diff_ids")?;
        assert_eq!(diff_ids.len(), 2);
        assert_eq!(diff_ids[1], added.diff_id.as_str());
        assert_eq!(
            derived.config["config"]["User"], "superset",
            "the base config is kept"
        );
        assert_eq!(
            derived.config["history"][1]["created_by"],
            "cargo xtask images: psycopg2-binary 2.9.10"
        );

        // The driver lands in the image's site-packages.
        let tar = flate2::read::GzDecoder::new(
            &derived.blobs[layers[1]["digest"].as_str().context("digest")?][..],
        );
        let mut paths: Vec<String> = tar::Archive::new(tar)
            .entries()?
            .map(|e| Ok(e?.path()?.to_string_lossy().into_owned()))
            .collect::<Result<_>>()?;
        paths.sort();
        assert!(
            paths.contains(&format!("{SITE_PACKAGES}/psycopg2/_psycopg.so")),
            "{paths:?}"
        );

        // skopeo, when installed, reads the derived layout like any other image.
        if localstack::tools::on_path("skopeo").is_some() {
            let out = Command::new("skopeo")
                .args(["inspect", "--raw"])
                .arg(format!(
                    "oci:{}:{}",
                    dir.path().join("derived").display(),
                    tags[0]
                ))
                .output()?;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(sha256_digest(&out.stdout), digest);
        }
        Ok(())
    }
}
