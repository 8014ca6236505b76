//! The pin of the official Superset image: [`PIN_FILE`], committed, holds the digest of
//! the linux/amd64 manifest of [`BASE`], and every build copies the image by that digest.
//!
//! While the file holds no digest (a fresh release, or a machine that could not reach
//! Docker Hub when the pin was written), the first build resolves the tag once with
//! `skopeo inspect --raw`, picks the linux/amd64 manifest of the index, writes the digest
//! into the file and says loudly that it should be committed. From then on the tag is
//! never read again: a digest the registry no longer serves is an error naming the file,
//! never a silent move to whatever the tag points at today.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use xshell::{Shell, cmd};

use super::super::layer::sha256_digest;

/// The official image, by tag: what the pin file pins.
pub const BASE: &str = "docker.io/apache/superset:6.0.0";
/// The committed pin, relative to the project root.
pub const PIN_FILE: &str = "infrastructure/superset/base-image.lock";
/// The platform the cluster's nodes run (k3d on amd64 machines and GitHub's runners).
const PLATFORM: (&str, &str) = ("linux", "amd64");

/// What the pin file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// No digest yet: the file is absent or holds only comments.
    Empty,
    /// `sha256:<hex>` of [`BASE`]'s linux/amd64 manifest.
    Digest(String),
}

/// Why a pin file cannot be used, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinError {
    /// The line at fault.
    pub line: usize,
    /// What is wrong, with the fix.
    pub message: String,
}

/// The comment a pin file starts with: what it is and how it gets its digest.
pub fn header() -> String {
    format!(
        "# The official Superset image `cargo xtask images --superset` (run by `cargo xtask up`)\n\
         # builds flightdeck/superset on: the {}/{} manifest of {BASE},\n\
         # pinned by digest on the one line below (`<image>:<tag>@sha256:<hex>`).\n\
         #\n\
         # Without that line the next build resolves the tag once with `skopeo inspect --raw`,\n\
         # writes the line and says so: commit this file then. Every later build copies the image\n\
         # by this digest, so what is deployed never moves. To move to another release, change\n\
         # BASE in xtask/src/images/superset/pin.rs and delete the line.\n",
        PLATFORM.0, PLATFORM.1
    )
}

/// Reads the pin from the text of a pin file.
pub fn parse(text: &str) -> Result<Pin, PinError> {
    let mut pin = Pin::Empty;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if pin != Pin::Empty {
            return Err(PinError {
                line: line_no,
                message: "a second pin: the file holds one `<image>:<tag>@sha256:<hex>` line"
                    .into(),
            });
        }
        let Some((reference, digest)) = line.split_once('@') else {
            return Err(PinError {
                line: line_no,
                message: format!("`{line}` is not `{BASE}@sha256:<64 hex digits>`"),
            });
        };
        if reference != BASE {
            return Err(PinError {
                line: line_no,
                message: format!(
                    "the pin is for `{reference}`, but the build starts from `{BASE}`: delete the line, \
                     and the next `cargo xtask images --superset` pins {BASE} (then commit the file)"
                ),
            });
        }
        if !is_sha256(digest) {
            return Err(PinError {
                line: line_no,
                message: format!(
                    "`{digest}` is not a digest (`sha256:` and 64 lowercase hex digits)"
                ),
            });
        }
        pin = Pin::Digest(digest.to_owned());
    }
    Ok(pin)
}

fn is_sha256(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The pin under `root`; an absent file is [`Pin::Empty`].
pub fn read(root: &Path) -> Result<Pin> {
    let path = root.join(PIN_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Pin::Empty),
        Err(error) => return Err(error).with_context(|| format!("read {}", path.display())),
    };
    parse(&text).map_err(|e| anyhow::anyhow!("{PIN_FILE}:{}: {}", e.line, e.message))
}

/// Writes `digest` into the pin file under `root`, keeping its comments (or writing
/// [`header`] when there are none).
pub fn write(root: &Path, digest: &str) -> Result<()> {
    let path = root.join(PIN_FILE);
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    let mut comments: String = existing
        .lines()
        .filter(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    if comments.trim().is_empty() {
        comments = header();
    }
    let text = format!("{}\n{BASE}@{digest}\n", comments.trim_end());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
}

/// The digest of the linux/amd64 manifest in `raw`, what `skopeo inspect --raw` prints:
/// an OCI image index or a Docker manifest list (attestation manifests, which BuildKit
/// lists with the platform `unknown/unknown`, are skipped), or a single manifest, whose
/// digest is that of its bytes.
pub fn platform_digest(raw: &[u8]) -> Result<String> {
    let document: Value = serde_json::from_slice(raw)
        .context("`skopeo inspect --raw` printed something that is not JSON")?;
    let Some(manifests) = document["manifests"].as_array() else {
        if document["config"].is_object() && document["layers"].is_array() {
            // NB: a single-platform image; its platform is checked on the config once
            // copied (`build`), where the architecture is written.
            return Ok(sha256_digest(raw));
        }
        bail!("`skopeo inspect --raw` printed neither an image index nor a manifest");
    };
    let platform = |m: &Value| {
        (
            m["platform"]["os"].as_str().unwrap_or("?").to_owned(),
            m["platform"]["architecture"]
                .as_str()
                .unwrap_or("?")
                .to_owned(),
        )
    };
    let images: Vec<&Value> = manifests
        .iter()
        .filter(|m| m["annotations"]["vnd.docker.reference.type"] != "attestation-manifest")
        .collect();
    // NB: amd64 has no variants in practice; a listed one (`v2`, `v3`) is still amd64,
    // but the entry without a variant is what a client pulling by tag gets.
    let mut matching: Vec<&&Value> = images
        .iter()
        .filter(|m| platform(m) == (PLATFORM.0.to_owned(), PLATFORM.1.to_owned()))
        .collect();
    matching.sort_by_key(|m| m["platform"]["variant"].is_string());
    let Some(chosen) = matching.first() else {
        let listed: Vec<String> = images
            .iter()
            .map(|m| {
                let (os, arch) = platform(m);
                format!("{os}/{arch}")
            })
            .collect();
        bail!(
            "{BASE} has no {}/{} image (it lists {})",
            PLATFORM.0,
            PLATFORM.1,
            if listed.is_empty() {
                "none".to_owned()
            } else {
                listed.join(", ")
            }
        );
    };
    let digest = chosen["digest"]
        .as_str()
        .context("the linux/amd64 entry of the index has no digest")?;
    anyhow::ensure!(
        is_sha256(digest),
        "the linux/amd64 entry of the index has the digest `{digest}`, not a sha256 one"
    );
    Ok(digest.to_owned())
}

/// Asks the registry once, with `skopeo inspect --raw`, which manifest [`BASE`] is for
/// linux/amd64 today.
pub fn resolve(sh: &Shell) -> Result<String> {
    let source = format!("docker://{BASE}");
    let output = cmd!(sh, "skopeo inspect --raw {source}")
        .quiet()
        .ignore_status()
        .output()
        .map_err(|error| {
            anyhow::anyhow!(
                "{PIN_FILE} holds no digest yet, and pinning it needs skopeo, which could not be run ({error}): \
                 install it (`apt-get install skopeo`, or `nix develop`) and build again"
            )
        })?;
    if !output.status.success() {
        bail!(
            "`skopeo inspect --raw {source}` failed: {}\nPinning {BASE} needs Docker Hub once; \
             with no network, build with `--superset-base DIR:TAG` from a copy of the image",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    platform_digest(&output.stdout).with_context(|| format!("read the index of {BASE}"))
}

/// The pinned digest; when there is none yet, resolved now, written into the pin file
/// and announced loudly.
pub fn ensure(sh: &Shell, root: &Path) -> Result<String> {
    if let Pin::Digest(digest) = read(root)? {
        return Ok(digest);
    }
    println!("==> {PIN_FILE} holds no digest: resolving {BASE} once with skopeo");
    let digest = resolve(sh)?;
    write(root, &digest)?;
    let rule = "=".repeat(78);
    println!(
        "\n{rule}\nPINNED {BASE} ({}/{}) to\n  {digest}\nwritten to {PIN_FILE}: COMMIT THIS FILE.\n\
         Every later build copies exactly this image; until it is committed, another\n\
         checkout would pin whatever the tag points at then.\n{rule}\n",
        PLATFORM.0, PLATFORM.1
    );
    Ok(digest)
}

/// One line for a person: whether the base is pinned (`doctor`, `lint`).
pub fn describe(root: &Path) -> String {
    match read(root) {
        Ok(Pin::Digest(digest)) => format!("{BASE} pinned to {digest} ({PIN_FILE})"),
        Ok(Pin::Empty) => format!(
            "{BASE} is not pinned yet: {PIN_FILE} holds no digest. The first \
             `cargo xtask images --superset` (run by `cargo xtask up`) resolves it with skopeo and writes it; commit the file then"
        ),
        Err(error) => format!("{error:#}"),
    }
}

/// The copy source of the pinned image: by digest, never by tag.
pub fn source(digest: &str) -> String {
    let repository = BASE.rsplit_once(':').map_or(BASE, |(r, _)| r);
    format!("docker://{repository}@{digest}")
}

/// The release of [`BASE`] (`6.0.0`).
pub fn release() -> &'static str {
    BASE.rsplit(':').next().unwrap_or_default()
}
