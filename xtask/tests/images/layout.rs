//! Reading a built image back without a container runtime: the OCI layout (index →
//! manifest → config and layers, every blob checked against its digest), unpacking its
//! layers into a directory and running a command inside that directory with `chroot`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail, ensure};
use flate2::read::GzDecoder;
use oci_spec::image::{
    ANNOTATION_REF_NAME, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
};
use sha2::{Digest, Sha256};

/// One image read back from its OCI layout.
pub struct OnDisk {
    /// `sha256:<hex>` of the manifest.
    pub digest: String,
    /// The index's `org.opencontainers.image.ref.name`s, in order.
    pub tags: Vec<String>,
    /// The image configuration.
    pub config: ImageConfiguration,
    /// The compressed layer blobs, base first.
    pub layers: Vec<Vec<u8>>,
}

/// Reads a layout the way a runtime does, checking each blob against its digest.
pub fn read_layout(layout: &Path) -> Result<OnDisk> {
    let blob = |digest: &str| -> Result<Vec<u8>> {
        let path = layout.join("blobs").join(digest.replacen(':', "/", 1));
        let bytes = fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let actual = format!("sha256:{:x}", Sha256::digest(&bytes));
        ensure!(actual == digest, "blob {digest} hashes to {actual}");
        Ok(bytes)
    };
    let index = ImageIndex::from_file(layout.join("index.json"))?;
    let first = index
        .manifests()
        .first()
        .context("the index lists no manifest")?;
    let digest = first.digest().to_string();
    let mut tags = Vec::new();
    for desc in index.manifests() {
        ensure!(
            desc.digest().as_ref() == digest,
            "every tag names the same manifest"
        );
        let annotations = desc
            .annotations()
            .as_ref()
            .context("index entry annotations")?;
        tags.push(
            annotations
                .get(ANNOTATION_REF_NAME)
                .context("ref name")?
                .clone(),
        );
    }
    let manifest = ImageManifest::from_reader(blob(&digest)?.as_slice())?;
    ensure!(manifest.config().media_type() == &MediaType::ImageConfig);
    let config =
        ImageConfiguration::from_reader(blob(manifest.config().digest().as_ref())?.as_slice())?;
    let mut layers = Vec::new();
    for desc in manifest.layers() {
        ensure!(
            desc.media_type() == &MediaType::ImageLayerGzip,
            "{:?}",
            desc.media_type()
        );
        layers.push(blob(desc.digest().as_ref())?);
    }
    Ok(OnDisk {
        digest,
        tags,
        config,
        layers,
    })
}

/// What a layer entry looked like in its tar header.
pub struct Entry {
    pub path: String,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// Neither a user nor a group name is recorded.
    pub names_empty: bool,
}

/// Unpacks the layers into `root` in order; returns every entry and the total tar bytes.
pub fn unpack(layers: &[Vec<u8>], root: &Path) -> Result<(Vec<Entry>, u64)> {
    let mut entries = Vec::new();
    let mut uncompressed = 0;
    for gz in layers {
        let mut tar = Vec::new();
        GzDecoder::new(gz.as_slice())
            .read_to_end(&mut tar)
            .context("gunzip a layer")?;
        uncompressed += tar.len() as u64;
        let mut archive = tar::Archive::new(tar.as_slice());
        archive.set_preserve_permissions(true);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let header = entry.header();
            entries.push(Entry {
                path: entry.path()?.display().to_string(),
                kind: header.entry_type(),
                mode: header.mode()?,
                uid: header.uid()?,
                gid: header.gid()?,
                mtime: header.mtime()?,
                names_empty: header.username()?.unwrap_or_default().is_empty()
                    && header.groupname()?.unwrap_or_default().is_empty(),
            });
            ensure!(entry.unpack_in(root)?, "a layer entry escapes the root");
        }
    }
    Ok((entries, uncompressed))
}

/// The full path of a host tool, on this process' PATH or in the sbin dirs.
fn which(tool: &str) -> Result<PathBuf> {
    localstack::tools::on_path(tool)
        .or_else(|| {
            ["/usr/sbin", "/sbin"]
                .map(|dir| Path::new(dir).join(tool))
                .into_iter()
                .find(|candidate| candidate.is_file())
        })
        .with_context(|| format!("`{tool}` is not installed"))
}

fn is_root() -> Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("run `id -u`")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs `argv` inside `root` with only `env` set: as `user` under real root, else as
/// a mapped root in a user namespace (`unshare --map-root-user`).
pub fn run_in_root(root: &Path, user: &str, argv: &[String], env: &[String]) -> Result<Output> {
    // NB: resolved before `env_clear`, or the image's PATH would be searched for them.
    let chroot = which("chroot")?;
    let mut cmd = if is_root()? {
        let mut cmd = Command::new(chroot);
        cmd.arg(format!("--userspec={user}"));
        cmd
    } else {
        let mut cmd = Command::new(which("unshare")?);
        cmd.arg("--map-root-user").arg(chroot);
        cmd
    };
    cmd.arg(root).args(argv).env_clear();
    for pair in env {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("`{pair}` is not KEY=VALUE");
        };
        cmd.env(key, value);
    }
    cmd.output().context("run chroot")
}
