//! One image layer: a file tree written as a normalised, reproducible tar.gz.
//!
//! Normalised means: entries sorted by path (parents first), owner `0:0` with no user
//! or group names, every mtime the build's `SOURCE_DATE_EPOCH`, and a gzip header
//! without a timestamp or file name, at a fixed compression level. The same tree and
//! epoch always give the same bytes, and so the same digest.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result, bail};
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

/// What a path in a layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory with these permission bits.
    Dir { mode: u32 },
    /// A regular file with these permission bits and contents.
    File { mode: u32, data: Vec<u8> },
}

/// The files of one layer, keyed by their path relative to `/` (`etc/passwd`).
///
/// NB: a `BTreeMap` orders paths bytewise, which puts every directory before what it
/// holds (`etc` < `etc/ssl` < `etc/ssl/certs`): the tar needs no other sorting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    /// Adds a directory (and its parents, mode 0755).
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        let path = normalise(path)?;
        self.parents(&path);
        self.nodes.insert(path, Node::Dir { mode });
        Ok(())
    }

    /// Adds a regular file (and its parent directories, mode 0755).
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<()> {
        let path = normalise(path)?;
        if let Some(Node::Dir { .. }) = self.nodes.get(&path) {
            bail!("`{path}` is already a directory in this layer");
        }
        self.parents(&path);
        self.nodes.insert(path, Node::File { mode, data });
        Ok(())
    }

    /// The paths in the order they are written.
    #[cfg(test)]
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// True when the layer holds nothing.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn parents(&mut self, path: &str) {
        for (i, _) in path.match_indices('/') {
            self.nodes
                .entry(path[..i].to_owned())
                .or_insert(Node::Dir { mode: 0o755 });
        }
    }

    /// Writes the tree as an uncompressed tar with every mtime set to `epoch`.
    pub fn to_tar(&self, epoch: u64) -> Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, node) in &self.nodes {
            // NB: ustar headers leave the user and group name fields empty; only numeric ids.
            let mut header = Header::new_ustar();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(epoch);
            let data: &[u8] = match node {
                Node::Dir { mode } => {
                    header.set_entry_type(EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    &[]
                }
                Node::File { mode, data } => {
                    header.set_entry_type(EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    data
                }
            };
            builder
                .append_data(&mut header, path, data)
                .with_context(|| format!("add `{path}` to the layer"))?;
        }
        builder.into_inner().context("finish the layer tar")
    }
}

/// Rejects paths that would escape the root or name it, and drops a leading `/`.
fn normalise(path: &str) -> Result<String> {
    let path = path.trim_start_matches('/');
    if path.is_empty()
        || path.ends_with('/')
        || path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
    {
        bail!("`{path}` is not a plain path inside the image");
    }
    Ok(path.to_owned())
}

/// A layer packed for an image.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The gzip-compressed tar: the blob.
    pub gz: Vec<u8>,
    /// `sha256:<hex>` of the uncompressed tar (config `rootfs.diff_ids`).
    pub diff_id: String,
    /// Bytes of the uncompressed tar: what the layer costs on disk once unpacked.
    pub uncompressed_size: u64,
}

/// Compresses a tree into a layer blob.
pub fn pack(tree: &Tree, epoch: u64) -> Result<Packed> {
    let tar = tree.to_tar(epoch)?;
    let gz = gzip(&tar)?;
    Ok(Packed {
        diff_id: sha256_digest(&tar),
        uncompressed_size: tar.len() as u64,
        gz,
    })
}

/// gzip with fixed settings: level 6, header mtime 0, no file name, OS "unknown".
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::with_capacity(data.len() / 2), Compression::new(6));
    encoder.write_all(data).context("compress the layer")?;
    encoder.finish().context("finish compressing the layer")
}

/// `sha256:<lowercase hex>`, the form OCI descriptors use.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(order_reversed: bool) -> Result<Tree> {
        let mut entries = vec![
            ("usr/local/bin/producer", 0o755, b"\x7fELF".to_vec()),
            (
                "etc/passwd",
                0o644,
                b"root:x:0:0::/:/sbin/nologin\n".to_vec(),
            ),
            ("etc/ssl/certs/ca-certificates.crt", 0o644, b"PEM".to_vec()),
        ];
        if order_reversed {
            entries.reverse();
        }
        let mut tree = Tree::default();
        for (path, mode, data) in entries {
            tree.file(path, mode, data)?;
        }
        tree.dir("/tmp", 0o1777)?;
        Ok(tree)
    }

    #[test]
    fn entries_are_sorted_with_parents_before_children() -> Result<()> {
        let tree = sample(false)?;
        let paths: Vec<_> = tree.paths().collect();
        assert_eq!(
            paths,
            [
                "etc",
                "etc/passwd",
                "etc/ssl",
                "etc/ssl/certs",
                "etc/ssl/certs/ca-certificates.crt",
                "tmp",
                "usr",
                "usr/local",
                "usr/local/bin",
                "usr/local/bin/producer",
            ]
        );
        Ok(())
    }

    #[test]
    fn tar_headers_are_normalised() -> Result<()> {
        let tar = sample(false)?.to_tar(1_700_000_000)?;
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries()? {
            let entry = entry?;
            let header = entry.header();
            let path = entry.path()?.display().to_string();
            assert_eq!(header.uid()?, 0, "{path}");
            assert_eq!(header.gid()?, 0, "{path}");
            assert_eq!(header.mtime()?, 1_700_000_000, "{path}");
            assert_eq!(header.username()?, Some(""), "{path}");
            assert_eq!(header.groupname()?, Some(""), "{path}");
            seen.push((path, header.mode()?));
        }
        assert!(seen.contains(&("tmp".into(), 0o1777)), "{seen:?}");
        assert!(
            seen.contains(&("usr/local/bin/producer".into(), 0o755)),
            "{seen:?}"
        );
        assert!(seen.contains(&("etc".into(), 0o755)), "{seen:?}");
        Ok(())
    }

    #[test]
    fn the_same_tree_packs_to_the_same_digest_whatever_the_insertion_order() -> Result<()> {
        let a = pack(&sample(false)?, 42)?;
        let b = pack(&sample(true)?, 42)?;
        assert_eq!(a.diff_id, b.diff_id);
        assert_eq!(a.gz, b.gz);
        // A different epoch is a different layer.
        assert_ne!(pack(&sample(false)?, 43)?.diff_id, a.diff_id);
        Ok(())
    }

    #[test]
    fn gzip_header_has_no_timestamp_or_name() -> Result<()> {
        let gz = gzip(b"hello")?;
        assert_eq!(
            &gz[..4],
            &[0x1f, 0x8b, 8, 0],
            "magic, deflate, no FNAME/FCOMMENT flags"
        );
        assert_eq!(&gz[4..8], &[0, 0, 0, 0], "mtime");
        assert_eq!(gz[9], 255, "OS");
        Ok(())
    }

    #[test]
    fn paths_outside_the_root_are_rejected() -> Result<()> {
        let mut tree = Tree::default();
        for bad in [
            "",
            "/",
            "../etc/passwd",
            "etc//passwd",
            "etc/./passwd",
            "etc/",
        ] {
            assert!(
                tree.file(bad, 0o644, vec![]).is_err(),
                "{bad:?} was accepted"
            );
        }
        tree.dir("etc", 0o755)?;
        let err = tree
            .file("etc", 0o644, vec![])
            .expect_err("a file over a directory");
        assert!(err.to_string().contains("already a directory"), "{err}");
        Ok(())
    }
}
