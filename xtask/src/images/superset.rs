//! The cluster's Superset image, `flightdeck/superset`: the official `apache/superset`
//! release, pinned by digest ([`pin`]), plus one layer holding the PostgreSQL driver,
//! built without Docker like the service images.
//!
//! Since 4.1 the official image ships without database drivers, and the chart's answer
//! (`pip install` in a bootstrap script at every pod start, as root, from the internet)
//! is neither pinned nor offline. Instead the base image is copied once by digest with
//! skopeo into an OCI layout cached under `~/.cache/flightdeck/images/`, the
//! `psycopg2-binary` wheel (the version and hashes of the local Superset's requirements)
//! is unpacked into the image's virtualenv as a new layer, and a new config and manifest
//! are written around the base's layers, which are reused byte for byte.
//!
//! The image is tagged like the service images, `<version>-<12 hex digits of its digest>`
//! (the version being `<superset release>-psycopg2-<driver version>`), and its only
//! timestamp is the base image's own creation time: the same base and driver give the same
//! digest on every machine and every commit, so `cargo xtask up` rolls the Superset pods
//! when, and only when, what is in the image changed. A build whose image is already in
//! the output directory writes nothing.

pub mod pin;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use xshell::Shell;

use super::layer::{self, Tree, sha256_digest};
use super::oci::{self, Image, canonical_json};
use super::output::{self, Written};
use super::stamp::rfc3339;

/// The virtualenv's site-packages in the official image (Python 3.10).
pub const SITE_PACKAGES: &str = "app/.venv/lib/python3.10/site-packages";
/// The Python tag of the wheels the image can load.
const PYTHON_TAG: &str = "cp310";
/// The derived image's name.
pub const NAME: &str = "flightdeck/superset";
/// Its directory under the images' output directory, as `cargo xtask images` names it.
pub const BIN: &str = "superset";

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

/// The version part of the image tag: `<superset release>-psycopg2-<driver version>`;
/// the digest's 12 hex digits follow it.
pub fn version(driver: &Driver) -> String {
    format!("{}-psycopg2-{}", pin::release(), driver.version)
}

/// An OCI image layout on disk, read as far as the manifest and config of one tag; the
/// layers are read only when a new image is written ([`Layout::blobs`]).
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    /// The image manifest.
    pub manifest: Value,
    /// The image config.
    pub config: Value,
    config_digest: String,
}

impl Layout {
    /// Reads the image of `tag` (its `org.opencontainers.image.ref.name`) from `dir`.
    pub fn read(dir: &Path, tag: &str) -> Result<Self> {
        let index: Value = serde_json::from_slice(
            &std::fs::read(dir.join("index.json"))
                .with_context(|| format!("read {}/index.json", dir.display()))?,
        )
        .with_context(|| format!("parse {}/index.json", dir.display()))?;
        let entry = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .with_context(|| format!("{} has no image tagged {tag}", dir.display()))?;
        let manifest_digest = entry["digest"].as_str().context("index entry digest")?;
        let manifest: Value = serde_json::from_slice(&read_blob(dir, manifest_digest)?)
            .context("parse the base manifest")?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .context("manifest config digest")?
            .to_owned();
        let config: Value = serde_json::from_slice(&read_blob(dir, &config_digest)?)
            .context("parse the base config")?;
        Ok(Self {
            dir: dir.to_owned(),
            manifest,
            config,
            config_digest,
        })
    }

    /// The config and every layer, by digest, each checked against its digest.
    pub fn blobs(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut blobs = BTreeMap::new();
        blobs.insert(
            self.config_digest.clone(),
            read_blob(&self.dir, &self.config_digest)?,
        );
        for layer in self.manifest["layers"]
            .as_array()
            .context("manifest layers")?
        {
            let digest = layer["digest"].as_str().context("layer digest")?;
            blobs.insert(digest.to_owned(), read_blob(&self.dir, digest)?);
        }
        Ok(blobs)
    }

    /// The platform the image is for, as its config says (`linux/amd64`).
    pub fn platform(&self) -> String {
        format!(
            "{}/{}",
            self.config["os"].as_str().unwrap_or("?"),
            self.config["architecture"].as_str().unwrap_or("?")
        )
    }

    /// When the image was created (its config's `created`), in Unix seconds; 0 when the
    /// config does not say.
    pub fn created_epoch(&self) -> Result<u64> {
        let Some(created) = self.config["created"].as_str() else {
            return Ok(0);
        };
        let at: jiff::Timestamp = created
            .parse()
            .with_context(|| format!("the base config's `created` is `{created}`"))?;
        Ok(u64::try_from(at.as_second()).unwrap_or(0))
    }
}

fn read_blob(dir: &Path, digest: &str) -> Result<Vec<u8>> {
    let path = dir.join(blob_path(digest));
    let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    ensure!(
        sha256_digest(&bytes) == digest,
        "{} does not match its digest",
        path.display()
    );
    Ok(bytes)
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

/// The derived image's new files, before the base's blobs join them.
#[derive(Debug)]
pub struct Derived {
    /// Layout path → bytes: the new config, the added layer, the manifest, `index.json`,
    /// `oci-layout`.
    pub files: BTreeMap<String, Vec<u8>>,
    /// `sha256:…` of the manifest.
    pub digest: String,
    /// `<version>-<12 hex digits of the digest>`, then `latest`.
    pub tags: [String; 2],
    /// The manifest.
    pub manifest: Value,
}

/// The derived image: the base's layers, then `added`; config and manifest rewritten,
/// tagged `<version>-<12 hex digits of the digest>` and `latest`.
pub fn derive(
    base: &Layout,
    added: &layer::Packed,
    what: &str,
    created: &str,
    version: &str,
) -> Result<Derived> {
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
    let digest = sha256_digest(&manifest_bytes);
    let tags = [oci::tag(version, &digest)?, "latest".to_owned()];

    let mut files = BTreeMap::new();
    files.insert(blob_path(&config_digest), config_bytes);
    files.insert(blob_path(&layer_digest), added.gz.clone());
    files.insert(blob_path(&digest), manifest_bytes.clone());
    let manifest_type = manifest["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_owned();
    let entries: Vec<Value> = tags
        .iter()
        .map(|tag| {
            json!({
                "mediaType": manifest_type,
                "digest": digest,
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
    Ok(Derived {
        files,
        digest,
        tags,
        manifest,
    })
}

/// Where the base comes from: the pinned official image, or a layout given by hand.
#[derive(Debug, Clone)]
pub enum Base {
    /// The digest in [`pin::PIN_FILE`] (pinned now if the file holds none), copied once
    /// into the cache.
    Pinned,
    /// This OCI layout directory and tag (`--superset-base DIR:TAG`).
    Layout(PathBuf, String),
}

/// Builds `flightdeck/superset` into `<out>/superset/` (OCI layout and docker archive)
/// unless that already holds exactly this image. `sh` runs skopeo from the checkout;
/// `cache` keeps the base layout and the wheel.
pub fn build(sh: &Shell, cache: &Path, base: Base, out: &Path) -> Result<(Image, Written)> {
    let root = sh.current_dir();
    let requirements = root.join(crate::dashboard::install::REQUIREMENTS);
    let driver = driver_pin(
        &std::fs::read_to_string(&requirements)
            .with_context(|| format!("read {}", requirements.display()))?,
    )?;
    let (dir, base_tag) = match base {
        Base::Layout(dir, tag) => (dir, tag),
        Base::Pinned => {
            let digest = pin::ensure(sh, &root)?;
            (fetch_base(sh, cache, &digest)?, "base".to_owned())
        }
    };
    let base = Layout::read(&dir, &base_tag)?;
    ensure!(
        base.platform() == "linux/amd64",
        "the Superset base image in {} is for {}, not linux/amd64 (the platform of the cluster's nodes)",
        dir.display(),
        base.platform()
    );
    // NB: the base's own creation time, not the commit's: the image only changes when
    // the base or the driver does, so a new commit does not roll the Superset pods.
    let epoch = base.created_epoch()?;
    let wheel = fetch_wheel(cache, &driver)?;
    let added = layer::pack(&wheel_tree(&wheel)?, epoch)?;
    let what = format!("psycopg2-binary {} into {SITE_PACKAGES}", driver.version);
    let derived = derive(&base, &added, &what, &rfc3339(epoch), &version(&driver))?;

    let manifest = &derived.manifest;
    let sizes: u64 = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().into_iter().flatten())
        .filter_map(|d| d["size"].as_u64())
        .sum();
    let manifest_size = derived.files[&blob_path(&derived.digest)].len() as u64;
    let mut image = Image {
        name: NAME.to_owned(),
        tags: derived.tags.clone(),
        digest: derived.digest.clone(),
        // NB: the base's unpacked size is not known without unpacking it; what this
        // build adds is.
        uncompressed_size: added.uncompressed_size,
        compressed_size: sizes + manifest_size,
        layout: derived.files,
        docker_manifest: docker_manifest(manifest, &derived.tags)?,
    };
    let planned = super::built::planned_in(out, BIN);
    if let Ok(existing) = super::built::read(&planned)
        && existing.digest == image.digest
        && existing.tag == image.tags[0]
        && planned.archive.is_file()
    {
        println!(
            "==> {NAME}:{} is already in {}: nothing to write",
            image.tags[0],
            out.join(BIN).display()
        );
        return Ok((
            image,
            Written {
                layout: planned.layout,
                archive: planned.archive,
            },
        ));
    }
    for (digest, bytes) in base.blobs()? {
        image.layout.insert(blob_path(&digest), bytes);
    }
    let written = output::write(&image, BIN, out, epoch).context("write the Superset image")?;
    Ok((image, written))
}

/// docker's `manifest.json` for `manifest`, which makes the layout a `docker load` archive.
fn docker_manifest(manifest: &Value, tags: &[String; 2]) -> Result<Vec<u8>> {
    canonical_json(&json!([{
        "Config": blob_path(manifest["config"]["digest"].as_str().context("config digest")?),
        "RepoTags": tags.iter().map(|t| format!("{NAME}:{t}")).collect::<Vec<_>>(),
        "Layers": manifest["layers"].as_array().context("layers")?.iter()
            .map(|l| l["digest"].as_str().map(blob_path).context("layer digest"))
            .collect::<Result<Vec<_>>>()?,
    }]))
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

/// The cache of base layouts and wheels: `~/.cache/flightdeck/images/`.
pub fn cache_dir() -> Result<PathBuf> {
    Ok(localstack::tools::cache_dir()?.join("images"))
}

/// The base layout of `digest`, copied by digest with skopeo on first use into `cache`
/// (complete or not at all: the copy lands in a temporary directory renamed at the end).
pub fn fetch_base(sh: &Shell, cache: &Path, digest: &str) -> Result<PathBuf> {
    let dir = cache.join(format!("superset-base-{}", digest.replace(':', "-")));
    if dir.join("index.json").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache).with_context(|| format!("create {}", cache.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".superset-base.partial-")
        .tempdir_in(cache)
        .with_context(|| format!("create a directory in {}", cache.display()))?;
    let source = pin::source(digest);
    println!(
        "==> copying {source} into {} (once per machine: hundreds of MB)",
        dir.display()
    );
    // NB: skopeo refuses to copy without a signature policy; the digest is the check
    // here (skopeo verifies what it pulls against it), hence `--insecure-policy`.
    let copy = Command::new("skopeo")
        .env("PATH", sh.var_os("PATH").unwrap_or_default())
        .args([
            "--insecure-policy",
            "copy",
            "--override-os",
            "linux",
            "--override-arch",
            "amd64",
        ])
        .arg(&source)
        .arg(format!("oci:{}:base", staging.path().display()))
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .context("run skopeo (install it: `apt-get install skopeo`, or `nix develop`)")?;
    let stderr = String::from_utf8_lossy(&copy.stderr);
    if !copy.status.success() {
        // NB: the registry's error code, as skopeo prints it, tells a digest that is
        // gone from a network that is.
        if stderr.contains("manifest unknown") || stderr.contains("MANIFEST_UNKNOWN") {
            bail!(
                "the pinned {} ({digest}, in {}) no longer resolves: the registry does not have that \
                 digest any more. Fix: delete the pin line of {} so the next build pins the tag again, \
                 check the new image, and commit the file.\nskopeo: {}",
                pin::BASE,
                pin::PIN_FILE,
                pin::PIN_FILE,
                stderr.trim()
            );
        }
        bail!(
            "skopeo could not copy {source} (the pin in {}): {}\nIt needs Docker Hub once per \
             machine; offline, build with `--superset-base DIR:TAG` from a copy of the image",
            pin::PIN_FILE,
            stderr.trim()
        );
    }
    let staged = staging.keep();
    std::fs::rename(&staged, &dir)
        .with_context(|| format!("move {} to {}", staged.display(), dir.display()))?;
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
