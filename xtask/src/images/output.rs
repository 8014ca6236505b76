//! Writing an image to disk: `<out>/<bin>/oci/` (an OCI image layout) and
//! `<out>/<bin>/<bin>.tar` (the same files plus docker's `manifest.json`, the format
//! `docker save` writes since Docker 25, which `docker load`, `k3d image import`,
//! `ctr images import` and `skopeo` all read).
//!
//! Everything is written into a temporary directory next to the destination and
//! renamed into place at the end: a failure leaves the previous image (or nothing),
//! never half of one.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tar::{EntryType, Header};

use super::oci::Image;

/// Where a written image lives.
#[derive(Debug, Clone)]
pub struct Written {
    /// The OCI image layout directory: `skopeo copy oci:<layout>:<tag> …`.
    pub layout: PathBuf,
    /// The docker archive: `docker load -i <archive>`.
    pub archive: PathBuf,
}

/// Writes `image` as `<out>/<bin>/`, replacing an older one only once it is complete.
pub fn write(image: &Image, bin: &str, out: &Path, epoch: u64) -> Result<Written> {
    fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{bin}.partial-"))
        .tempdir_in(out)
        .with_context(|| format!("create a staging directory in {}", out.display()))?;

    let layout_dir = staging.path().join("oci");
    for (path, bytes) in &image.layout {
        let file = layout_dir.join(path);
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        }
        fs::write(&file, bytes).with_context(|| format!("write {}", file.display()))?;
    }
    let mut members: BTreeMap<&str, &[u8]> = image
        .layout
        .iter()
        .map(|(path, bytes)| (path.as_str(), bytes.as_slice()))
        .collect();
    members.insert("manifest.json", &image.docker_manifest);
    let archive_name = format!("{bin}.tar");
    write_archive(&staging.path().join(&archive_name), &members, epoch)?;

    let dest = out.join(bin);
    replace_dir(staging.keep(), &dest)?;
    Ok(Written {
        layout: dest.join("oci"),
        archive: dest.join(archive_name),
    })
}

/// A plain tar of `members` (sorted, normalised like the layers), with their directories.
fn write_archive(path: &Path, members: &BTreeMap<&str, &[u8]>, epoch: u64) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut builder = tar::Builder::new(BufWriter::new(file));
    let mut dirs_written: Vec<String> = Vec::new();
    for (name, bytes) in members {
        for (i, _) in name.match_indices('/') {
            let dir = format!("{}/", &name[..i]);
            if !dirs_written.contains(&dir) {
                append(&mut builder, &dir, EntryType::Directory, 0o755, &[], epoch)?;
                dirs_written.push(dir);
            }
        }
        append(&mut builder, name, EntryType::Regular, 0o644, bytes, epoch)?;
    }
    let mut writer = builder.into_inner().context("finish the image archive")?;
    writer
        .flush()
        .with_context(|| format!("write {}", path.display()))?;
    writer
        .get_ref()
        .sync_all()
        .with_context(|| format!("sync {}", path.display()))
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    kind: EntryType,
    mode: u32,
    data: &[u8],
    epoch: u64,
) -> Result<()> {
    let mut header = Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(epoch);
    header.set_size(data.len() as u64);
    builder
        .append_data(&mut header, path, data)
        .with_context(|| format!("add {path} to the image archive"))
}

/// Moves the complete `new` directory to `dest`, removing what was there before.
///
/// NB: rename cannot replace a non-empty directory, so the old one is first moved
/// aside; in between there is briefly no image at `dest`, but never a partial one.
fn replace_dir(new: PathBuf, dest: &Path) -> Result<()> {
    let result = (|| {
        if dest.exists() {
            let parent = dest.parent().unwrap_or(Path::new("."));
            let old = tempfile::Builder::new()
                .prefix(".old-")
                .tempdir_in(parent)
                .context("create a directory for the previous image")?;
            let aside = old.path().join("image");
            fs::rename(dest, &aside)
                .with_context(|| format!("move the previous {} aside", dest.display()))?;
            fs::rename(&new, dest)
                .with_context(|| format!("move the new image to {}", dest.display()))?;
            drop(old); // removes the previous image
        } else {
            fs::rename(&new, dest)
                .with_context(|| format!("move the new image to {}", dest.display()))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&new);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_swaps_whole_directories() -> Result<()> {
        let out = tempfile::tempdir()?;
        let dest = out.path().join("producer");
        for generation in ["one", "two"] {
            let new = out.path().join(format!("new-{generation}"));
            fs::create_dir(&new)?;
            fs::write(new.join(generation), generation)?;
            replace_dir(new, &dest)?;
        }
        let left = fs::read_dir(out.path())?
            .map(|e| Ok(e?.file_name()))
            .collect::<Result<Vec<_>>>()?;
        assert_eq!(left, ["producer"], "staging or old directories left behind");
        let files = fs::read_dir(&dest)?
            .map(|e| Ok(e?.file_name()))
            .collect::<Result<Vec<_>>>()?;
        assert_eq!(files, ["two"]);
        Ok(())
    }

    #[test]
    fn archive_members_are_sorted_with_their_directories() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.tar");
        let members = BTreeMap::from([
            ("oci-layout", b"{}".as_slice()),
            ("blobs/sha256/bb", b"b".as_slice()),
            ("blobs/sha256/aa", b"a".as_slice()),
            ("manifest.json", b"[]".as_slice()),
        ]);
        write_archive(&path, &members, 5)?;
        let bytes = fs::read(&path)?;
        let mut archive = tar::Archive::new(bytes.as_slice());
        let names = archive
            .entries()?
            .map(|e| Ok(e?.path()?.display().to_string()))
            .collect::<Result<Vec<_>>>()?;
        assert_eq!(
            names,
            [
                "blobs/",
                "blobs/sha256/",
                "blobs/sha256/aa",
                "blobs/sha256/bb",
                "manifest.json",
                "oci-layout"
            ]
        );
        // Writing again gives the same bytes.
        write_archive(&path, &members, 5)?;
        assert_eq!(fs::read(&path)?, bytes);
        Ok(())
    }
}
