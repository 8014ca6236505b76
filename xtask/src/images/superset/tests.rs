//! The Superset image: the driver layer on an unchanged base, the pin file, and the
//! resolution and copy of the pinned base against a fake `skopeo` that records its argv.

use std::path::Path;

use super::pin::{self, BASE, PIN_FILE, Pin};
use super::*;
use crate::cluster::fakes::FakeTools;
use crate::images::layer::pack;

/// When the test base image was created: the derived image's only timestamp.
const BASE_CREATED: &str = "2025-11-20T10:15:00Z";
const BASE_CREATED_EPOCH: u64 = 1_763_633_700;

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
    assert_eq!(version(&driver), "6.0.0-psycopg2-2.9.10");
    Ok(())
}

/// A small base image written as an OCI layout, like skopeo writes the real one.
fn base_layout(dir: &Path) -> Result<()> {
    let mut tree = Tree::default();
    tree.dir(SITE_PACKAGES, 0o755)?;
    tree.file("app/.venv/bin/python", 0o755, b"#!python".to_vec())?;
    let base_layer = pack(&tree, 1)?;
    let config = canonical_json(&json!({
        "architecture": "amd64", "os": "linux", "created": BASE_CREATED,
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
    std::fs::create_dir_all(dir)?;
    let wheel = dir.join("psycopg2_binary-2.9.10-cp310-cp310-manylinux_2_17_x86_64.whl");
    let status = Command::new("python3")
        .args(["-m", "zipfile", "-c"])
        .arg(&wheel)
        .arg(src.join("psycopg2"))
        .status()?;
    ensure!(status.success(), "zip");
    std::fs::remove_dir_all(&src)?;
    Ok(wheel)
}

#[test]
fn the_driver_layer_goes_on_top_of_the_unchanged_base_layers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let base_dir = dir.path().join("base");
    base_layout(&base_dir)?;
    let base = Layout::read(&base_dir, "base")?;
    assert_eq!(base.platform(), "linux/amd64");
    assert_eq!(base.created_epoch()?, BASE_CREATED_EPOCH);
    let tree = wheel_tree(&wheel(&dir.path().join("wheel"))?)?;
    let added = pack(&tree, 7)?;
    let derived = derive(
        &base,
        &added,
        "psycopg2-binary 2.9.10",
        "1970-01-01T00:00:07Z",
        "6.0.0-psycopg2-2.9.10",
    )?;
    assert_eq!(
        derived.tags[0],
        format!(
            "6.0.0-psycopg2-2.9.10-{}",
            &derived.digest["sha256:".len().."sha256:".len() + 12]
        ),
        "the tag ends in the first 12 hex digits of the digest"
    );
    assert_eq!(derived.tags[1], "latest");

    // Written out with the base's blobs, the new layout reads back with one more layer.
    let out = dir.path().join("derived");
    let mut files = derived.files;
    for (digest, bytes) in base.blobs()? {
        files.insert(blob_path(&digest), bytes);
    }
    for (path, bytes) in &files {
        let file = out.join(path);
        std::fs::create_dir_all(file.parent().context("parent")?)?;
        std::fs::write(file, bytes)?;
    }
    let back = Layout::read(&out, &derived.tags[0])?;
    let layers = back.manifest["layers"].as_array().context("layers")?;
    assert_eq!(layers.len(), 2);
    assert_eq!(
        layers[0], base.manifest["layers"][0],
        "the base layer is reused as is"
    );
    let diff_ids = back.config["rootfs"]["diff_ids"]
        .as_array()
        .context("diff_ids")?;
    assert_eq!(diff_ids.len(), 2);
    assert_eq!(diff_ids[1], added.diff_id.as_str());
    assert_eq!(
        back.config["config"]["User"], "superset",
        "the base config is kept"
    );
    assert_eq!(
        back.config["history"][1]["created_by"],
        "cargo xtask images: psycopg2-binary 2.9.10"
    );

    // The driver lands in the image's site-packages.
    let blobs = back.blobs()?;
    let tar =
        flate2::read::GzDecoder::new(&blobs[layers[1]["digest"].as_str().context("digest")?][..]);
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
        let output = Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:{}", out.display(), derived.tags[0]))
            .output()?;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(sha256_digest(&output.stdout), derived.digest);
    }
    Ok(())
}

const AMD64: &str = "sha256:2f3b1c0e9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";
const ARM64: &str = "sha256:9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b";

/// What `skopeo inspect --raw` prints for a multi-platform image pushed by BuildKit (as
/// Superset's release workflow does): an OCI image index whose attestation manifests
/// are listed with the platform `unknown/unknown` and point at the image they describe.
fn buildkit_index() -> String {
    let attestation = |of: &str, digest: &str| {
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": 566,
            "annotations": {"vnd.docker.reference.digest": of,
                            "vnd.docker.reference.type": "attestation-manifest"},
            "platform": {"architecture": "unknown", "os": "unknown"}})
    };
    serde_json::to_string_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            attestation(AMD64, &format!("sha256:{}", "a".repeat(64))),
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": ARM64, "size": 3267,
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": AMD64, "size": 3267,
             "platform": {"architecture": "amd64", "os": "linux"}},
            attestation(ARM64, &format!("sha256:{}", "b".repeat(64))),
        ]
    }))
    .expect("JSON")
}

#[test]
fn the_linux_amd64_manifest_is_picked_from_an_index_or_a_manifest_list() -> Result<()> {
    assert_eq!(pin::platform_digest(buildkit_index().as_bytes())?, AMD64);

    let manifest_list = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
             "digest": ARM64, "size": 2401,
             "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
             "digest": AMD64, "size": 2401,
             "platform": {"architecture": "amd64", "os": "linux"}},
        ]
    });
    assert_eq!(
        pin::platform_digest(manifest_list.to_string().as_bytes())?,
        AMD64
    );

    // A single-platform image: the digest of the manifest's own bytes.
    let single = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:00","size":2},"layers":[]}"#;
    assert_eq!(pin::platform_digest(single)?, sha256_digest(single));

    let arm_only = json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": ARM64, "size": 1,
         "platform": {"architecture": "arm64", "os": "linux"}}]});
    let error = pin::platform_digest(arm_only.to_string().as_bytes()).expect_err("no amd64");
    assert_eq!(
        error.to_string(),
        format!("{BASE} has no linux/amd64 image (it lists linux/arm64)")
    );
    Ok(())
}

#[test]
fn the_pin_file_holds_one_digest_of_the_base_or_nothing() {
    assert_eq!(pin::parse(&pin::header()), Ok(Pin::Empty));
    assert_eq!(pin::parse(""), Ok(Pin::Empty));
    let pinned = format!("{}\n{BASE}@{AMD64}\n", pin::header());
    assert_eq!(pin::parse(&pinned), Ok(Pin::Digest(AMD64.to_owned())));

    let other = format!("# a comment\ndocker.io/apache/superset:5.0.0@{AMD64}\n");
    let error = pin::parse(&other).expect_err("another release");
    assert_eq!(error.line, 2);
    assert!(
        error
            .message
            .starts_with("the pin is for `docker.io/apache/superset:5.0.0`, but the build starts from `docker.io/apache/superset:6.0.0`: delete the line"),
        "{}",
        error.message
    );
    let error = pin::parse(&format!("{BASE}@sha256:abc\n")).expect_err("not a digest");
    assert_eq!(error.line, 1);
    assert!(error.message.contains("`sha256:abc` is not a digest"));
    let error = pin::parse(&format!("{BASE}@{AMD64}\n{BASE}@{ARM64}\n")).expect_err("two");
    assert_eq!(error.line, 2);
}

#[test]
fn the_committed_pin_file_is_readable_and_says_how_it_is_filled() -> Result<()> {
    let root = crate::project_root();
    let text = std::fs::read_to_string(root.join(PIN_FILE))?;
    assert!(
        text.starts_with(&pin::header()),
        "{PIN_FILE} starts with pin::header():\n{text}"
    );
    // Either state is valid in git; lint warns while it is empty.
    pin::read(&root)?;
    Ok(())
}

/// A checkout with the requirements and the pin file, a cache holding the driver's wheel
/// (no pip), and a fake `skopeo` that records its argv: `inspect --raw` prints
/// `index`, `copy` writes the small base layout to its destination (or, when
/// `copy_fails` is given, prints it to stderr and fails).
struct Machine {
    root: tempfile::TempDir,
    cache: tempfile::TempDir,
    out: tempfile::TempDir,
    tools: FakeTools,
    sh: Shell,
}

fn machine(pin_text: Option<&str>, index: &str, copy_fails: Option<&str>) -> Result<Machine> {
    let root = tempfile::tempdir()?;
    let requirements = root.path().join(crate::dashboard::install::REQUIREMENTS);
    std::fs::create_dir_all(requirements.parent().context("parent")?)?;
    std::fs::write(
        &requirements,
        format!(
            "psycopg2-binary==2.9.10 \\\n    --hash=sha256:{}\n",
            "0".repeat(64)
        ),
    )?;
    if let Some(text) = pin_text {
        let file = root.path().join(PIN_FILE);
        std::fs::create_dir_all(file.parent().context("parent")?)?;
        std::fs::write(file, text)?;
    }
    let cache = tempfile::tempdir()?;
    wheel(
        &cache
            .path()
            .join(format!("psycopg2-binary-2.9.10-{PYTHON_TAG}")),
    )?;
    let base = root.path().join("fixture-base");
    base_layout(&base)?;
    let index_file = root.path().join("fixture-index.json");
    std::fs::write(&index_file, index)?;
    let copy = match copy_fails {
        Some(message) => format!("echo '{message}' >&2; exit 1"),
        None => format!(
            "dest=\"${{last#oci:}}\"; dest=\"${{dest%:base}}\"; mkdir -p \"$dest\" && cp -R '{}'/. \"$dest\"/",
            base.display()
        ),
    };
    let tools = FakeTools::new();
    tools.tool(
        "skopeo",
        &format!(
            "PATH=/usr/bin:/bin\nfor a in \"$@\"; do last=\"$a\"; done\ncase \"$1\" in\n  inspect) cat '{}' ;;\n  --insecure-policy) {copy} ;;\n  *) exit 2 ;;\nesac",
            index_file.display()
        ),
    );
    let sh = Shell::new()?;
    sh.change_dir(root.path());
    sh.set_var("PATH", tools.path());
    Ok(Machine {
        root,
        cache,
        out: tempfile::tempdir()?,
        tools,
        sh,
    })
}

impl Machine {
    fn build(&self) -> Result<(Image, Written)> {
        build(&self.sh, self.cache.path(), Base::Pinned, self.out.path())
    }

    /// The recorded calls, with the copy's temporary destination as `<staging>`.
    fn calls(&self) -> Vec<String> {
        self.tools
            .calls()
            .into_iter()
            .map(|call| match call.find(" oci:") {
                Some(at) if call.ends_with(":base") => {
                    format!("{} oci:<staging>:base", &call[..at])
                }
                _ => call,
            })
            .collect()
    }
}

fn copy_call(digest: &str) -> String {
    format!(
        "skopeo --insecure-policy copy --override-os linux --override-arch amd64 docker://docker.io/apache/superset@{digest} oci:<staging>:base"
    )
}

#[test]
fn an_empty_pin_is_resolved_once_with_skopeo_then_every_build_copies_that_digest() -> Result<()> {
    let machine = machine(Some(&pin::header()), &buildkit_index(), None)?;
    let (image, written) = machine.build()?;
    assert_eq!(
        machine.calls(),
        [
            "skopeo inspect --raw docker://docker.io/apache/superset:6.0.0".to_owned(),
            copy_call(AMD64),
        ]
    );
    let pinned = std::fs::read_to_string(machine.root.path().join(PIN_FILE))?;
    assert_eq!(
        pinned,
        format!("{}\n{BASE}@{AMD64}\n", pin::header().trim_end()),
        "the digest is written under the file's comments"
    );
    assert_eq!(
        pin::read(machine.root.path())?,
        Pin::Digest(AMD64.to_owned())
    );

    // Tagged like the services: the version, then 12 hex digits of the digest.
    let hex = &image.digest["sha256:".len()..];
    assert_eq!(
        image.tags[0],
        format!("6.0.0-psycopg2-2.9.10-{}", &hex[..12])
    );
    let read_back =
        crate::images::built::read(&crate::images::built::planned_in(machine.out.path(), BIN))?;
    assert_eq!(read_back.name, NAME);
    assert_eq!(read_back.tag, image.tags[0]);
    assert_eq!(read_back.digest, image.digest);
    assert!(written.archive.is_file());
    let config: Value = serde_json::from_slice(&std::fs::read(
        written.layout.join(blob_path(&read_back.config_digest)),
    )?)?;
    assert_eq!(
        config["history"][1]["created"], BASE_CREATED,
        "the only timestamp is the base's own"
    );

    // Again: the pin and the cached base are used, and the image in place is kept.
    let before = std::fs::metadata(&written.archive)?.modified()?;
    let (again, _) = machine.build()?;
    assert_eq!(
        again.digest, image.digest,
        "the same inputs, the same image"
    );
    assert_eq!(
        machine.calls().len(),
        2,
        "no skopeo call: {:?}",
        machine.calls()
    );
    assert_eq!(
        std::fs::metadata(&written.archive)?.modified()?,
        before,
        "nothing was rewritten"
    );

    // On another machine (an empty cache) the base is copied by the pinned digest; the
    // tag is not looked at again.
    std::fs::remove_dir_all(
        machine
            .cache
            .path()
            .join(format!("superset-base-{}", AMD64.replace(':', "-"))),
    )?;
    let (elsewhere, _) = machine.build()?;
    assert_eq!(elsewhere.digest, image.digest);
    assert_eq!(machine.calls()[2..], [copy_call(AMD64)]);
    Ok(())
}

#[test]
fn a_pinned_digest_that_no_longer_resolves_is_a_clear_error() -> Result<()> {
    let gone = format!(
        "time=\"2025-11-30T10:00:00Z\" level=fatal msg=\"initializing source docker://docker.io/apache/superset@{AMD64}: reading manifest {AMD64} in docker.io/apache/superset: manifest unknown\""
    );
    let machine = machine(
        Some(&format!("{}\n{BASE}@{AMD64}\n", pin::header())),
        &buildkit_index(),
        Some(&gone),
    )?;
    let error = machine.build().expect_err("the digest is gone");
    let message = format!("{error:#}");
    assert!(
        message.starts_with(&format!(
            "the pinned {BASE} ({AMD64}, in {PIN_FILE}) no longer resolves: the registry does not have that digest any more. Fix: delete the pin line of {PIN_FILE}"
        )),
        "{message}"
    );
    assert_eq!(
        machine.calls(),
        [copy_call(AMD64)],
        "a pinned digest is never looked up by tag"
    );
    assert!(
        !machine.out.path().join(BIN).exists(),
        "nothing was written"
    );
    assert!(
        std::fs::read_dir(machine.cache.path())?
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains("superset-base")),
        "no half-copied base is left in the cache"
    );
    Ok(())
}

#[test]
fn pinning_without_skopeo_says_how_to_install_it_and_writes_nothing() -> Result<()> {
    let machine = machine(None, &buildkit_index(), None)?;
    let empty = FakeTools::new();
    machine.sh.set_var("PATH", empty.path());
    let error = machine.build().expect_err("no skopeo");
    let message = format!("{error:#}");
    assert!(
        message.starts_with(&format!(
            "{PIN_FILE} holds no digest yet, and pinning it needs skopeo, which could not be run"
        )),
        "{message}"
    );
    assert!(message.contains("`apt-get install skopeo`"), "{message}");
    assert!(!machine.root.path().join(PIN_FILE).exists());
    Ok(())
}

#[test]
fn a_base_for_another_platform_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    base_layout(dir.path())?;
    // Rewrite the config as arm64 under a new digest, as another platform's image has.
    let base = Layout::read(dir.path(), "base")?;
    let mut config = base.config.clone();
    config["architecture"] = json!("arm64");
    let config = canonical_json(&config)?;
    let mut manifest = base.manifest.clone();
    manifest["config"]["digest"] = json!(sha256_digest(&config));
    manifest["config"]["size"] = json!(config.len());
    let manifest = canonical_json(&manifest)?;
    for bytes in [&config, &manifest] {
        std::fs::write(dir.path().join(blob_path(&sha256_digest(bytes))), bytes)?;
    }
    std::fs::write(
        dir.path().join("index.json"),
        canonical_json(&json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256_digest(&manifest), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "base"}}]}))?,
    )?;
    let machine = machine(None, &buildkit_index(), None)?;
    let error = build(
        &machine.sh,
        machine.cache.path(),
        Base::Layout(dir.path().to_owned(), "base".into()),
        machine.out.path(),
    )
    .expect_err("arm64");
    assert!(
        error
            .to_string()
            .ends_with("is for linux/arm64, not linux/amd64 (the platform of the cluster's nodes)"),
        "{error}"
    );
    Ok(())
}
