//! End-to-end checks of `cargo xtask images`, without a container runtime.
//!
//! The xtask binary builds every service image into `$CARGO_TARGET_TMPDIR/images-a`;
//! the tests then read each image the way a runtime would ([`layout`]), unpack it into
//! a temporary root and run its entrypoint there with `chroot`, as the image's user.
//! A second build into `images-b` must give identical bytes. `skopeo` reads both output
//! formats (a missing skopeo fails the test under `CI=true`, and is a loud skip elsewhere).
//!
//! NB: the first build compiles the services in release mode (minutes on a cold cache).

mod layout;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, ensure};

use self::layout::{read_layout, run_in_root, unpack};

const BUDGET_BYTES: u64 = 25 * 1000 * 1000;

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
}

/// Runs `xtask images --out <out> <args>`; its stderr is echoed and returned.
fn xtask_images(out: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<Output> {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("images")
        .arg("--out")
        .arg(out)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(workspace_root())
        .stderr(Stdio::piped())
        .output()
        .context("run the xtask binary")?;
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    println!("{}", String::from_utf8_lossy(&output.stdout));
    Ok(output)
}

/// Builds every image into a fresh `$CARGO_TARGET_TMPDIR/<name>`.
fn build_into(name: &str, envs: &[(&str, &str)]) -> Result<PathBuf> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    if out.exists() {
        fs::remove_dir_all(&out)?;
    }
    let output = xtask_images(&out, &[], envs)?;
    ensure!(
        output.status.success(),
        "`xtask images` failed: {:?}",
        output.status
    );
    Ok(out)
}

/// The build every test reads, made once per test run.
fn first_build() -> Result<&'static Path> {
    static OUT: OnceLock<Option<PathBuf>> = OnceLock::new();
    let out = OUT.get_or_init(|| {
        build_into("images-a", &[])
            .map_err(|e| eprintln!("{e:#}"))
            .ok()
    });
    out.as_deref()
        .context("the first `xtask images` build failed (see its output)")
}

/// Every `<out>/<bin>` directory: one per image, sorted.
fn images_in(out: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut images = Vec::new();
    for entry in fs::read_dir(out)? {
        let path = entry?.path();
        if path.is_dir() {
            let name = path.file_name().context("image directory name")?;
            images.push((name.to_string_lossy().into_owned(), path));
        }
    }
    images.sort();
    ensure!(!images.is_empty(), "no images in {}", out.display());
    Ok(images)
}

#[test]
fn every_service_image_runs_its_entrypoint_with_version_in_a_chroot() -> Result<()> {
    let images = images_in(first_build()?)?;
    let names: BTreeSet<_> = images.iter().map(|(bin, _)| bin.as_str()).collect();
    assert!(
        names.is_superset(&BTreeSet::from(["processor", "producer"])),
        "{names:?}"
    );
    for (bin, dir) in images {
        let image = read_layout(&dir.join("oci"))?;
        let config = image.config.config().as_ref().context("config")?;
        let (version, short) = image.tags[0].rsplit_once('-').context("versioned tag")?;
        assert_eq!(
            short,
            &image.digest["sha256:".len()..][..12],
            "tag names the digest"
        );
        assert_eq!(image.tags[1], "latest");

        let root = tempfile::tempdir()?;
        unpack(&image.layers, root.path())?;
        let mut argv = config.entrypoint().clone().context("entrypoint")?;
        argv.push("--version".to_owned());
        let env = config.env().clone().unwrap_or_default();
        let user = config.user().as_deref().context("user")?;
        let output = run_in_root(root.path(), user, &argv, &env)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        println!("{bin}: {argv:?} as {user} printed {stdout:?}");
        assert!(
            output.status.success(),
            "{bin} did not start in its image: {output:?}"
        );
        assert_eq!(stdout.trim(), format!("{bin} {version}"));
    }
    Ok(())
}

#[test]
fn images_hold_only_the_runtime_closure_within_budget() -> Result<()> {
    let host_certs = fs::read("/etc/ssl/certs/ca-certificates.crt")?;
    for (bin, dir) in images_in(first_build()?)? {
        let image = read_layout(&dir.join("oci"))?;
        let config = image.config.config().as_ref().context("config")?;
        assert_eq!(config.user().as_deref(), Some("65532:65532"));
        let entrypoint = config.entrypoint().clone().unwrap_or_default();
        assert_eq!(entrypoint, [format!("/usr/local/bin/{bin}")]);
        let env = config.env().clone().unwrap_or_default();
        assert!(
            env.contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".into()),
            "{env:?}"
        );
        assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");

        let root = tempfile::tempdir()?;
        let (entries, uncompressed) = unpack(&image.layers, root.path())?;
        assert!(
            uncompressed <= BUDGET_BYTES,
            "{bin} is {uncompressed} bytes unpacked"
        );
        let epoch = entries.first().context("empty image")?.mtime;
        for e in &entries {
            let what = &e.path;
            assert_eq!(
                (e.uid, e.gid, e.mtime),
                (0, 0, epoch),
                "{bin}: {what} not normalised"
            );
            assert!(e.names_empty, "{bin}: {what} carries a user or group name");
        }
        assert_eq!(
            image.config.created().as_deref(),
            Some(rfc3339_of(epoch)?.as_str())
        );

        let files: BTreeSet<&str> = entries
            .iter()
            .filter(|e| e.kind == tar::EntryType::Regular)
            .map(|e| e.path.as_str())
            .collect();
        let binary = format!("usr/local/bin/{bin}");
        let etc = [
            "etc/group",
            "etc/nsswitch.conf",
            "etc/passwd",
            "etc/ssl/certs/ca-certificates.crt",
        ];
        for path in &files {
            let library =
                (path.starts_with("lib") || path.contains("/lib")) && path.contains(".so");
            let known = etc.contains(path) || *path == binary || library;
            assert!(known, "{bin}: unexpected file {path} in the image");
        }
        for expected in etc.iter().chain([&binary.as_str()]) {
            assert!(files.contains(expected), "{bin}: {expected} missing");
        }
        assert!(
            files.iter().any(|p| p.contains("ld-linux")),
            "{bin}: no dynamic loader"
        );
        assert!(!root.path().join("bin/sh").exists(), "{bin}: has a shell");
        assert!(!root.path().join("usr/bin").exists(), "{bin}: has /usr/bin");
        let tmp = entries
            .iter()
            .find(|e| e.path.trim_end_matches('/') == "tmp")
            .context("/tmp")?;
        assert_eq!((tmp.kind, tmp.mode), (tar::EntryType::Directory, 0o1777));
        let passwd = fs::read_to_string(root.path().join("etc/passwd"))?;
        assert!(
            passwd
                .lines()
                .any(|l| l.starts_with("nonroot:x:65532:65532:")),
            "{passwd}"
        );
        let group = fs::read_to_string(root.path().join("etc/group"))?;
        assert!(
            group.lines().any(|l| l.starts_with("nonroot:x:65532:")),
            "{group}"
        );
        let certs = fs::read(root.path().join("etc/ssl/certs/ca-certificates.crt"))?;
        assert!(
            certs == host_certs,
            "{bin}: the CA bundle is not the host's"
        );
    }
    Ok(())
}

/// RFC 3339 of `epoch` from `date`, independent of the xtask's own formatting.
fn rfc3339_of(epoch: u64) -> Result<String> {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .context("run date")?;
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[test]
fn building_twice_gives_identical_digests() -> Result<()> {
    let a = first_build()?;
    // Another time zone and output path must not leak into the bytes.
    let b = build_into("images-b", &[("TZ", "Pacific/Kiritimati")])?;
    let (images_a, images_b) = (images_in(a)?, images_in(&b)?);
    let names =
        |images: &[(String, PathBuf)]| images.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&images_a), names(&images_b));
    for ((bin, dir_a), (_, dir_b)) in images_a.iter().zip(&images_b) {
        let first = read_layout(&dir_a.join("oci"))?;
        let second = read_layout(&dir_b.join("oci"))?;
        println!("{bin}: {} and {}", first.digest, second.digest);
        assert_eq!(
            first.digest, second.digest,
            "{bin}: digests differ between two builds"
        );
        let archive = |dir: &Path| fs::read(dir.join(format!("{bin}.tar")));
        assert!(
            archive(dir_a)? == archive(dir_b)?,
            "{bin}: docker archives differ"
        );
    }
    Ok(())
}

/// Whether skopeo is installed. When it is not, the test that needs it fails under
/// `CI=true` with the install command; elsewhere it is skipped loudly and appended to
/// the list `cargo xtask ci` ends with (the file named by `FLIGHTDECK_SKIPPED_LOG`, as
/// the xtask's own `skips` module does).
fn skopeo_installed() -> Result<bool> {
    let found = Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Ok(true);
    }
    let check = "images: skopeo reads the OCI layout and the docker archive";
    let install = "`apt-get install skopeo`, or `nix develop`";
    let in_ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    ensure!(
        !in_ci,
        "{check} cannot run: `skopeo` is not installed, and under CI=true no check is skipped. Install it: {install}"
    );
    eprintln!("SKIPPED {check}: `skopeo` is not installed (install: {install})");
    if let Some(log) = std::env::var_os("FLIGHTDECK_SKIPPED_LOG") {
        use std::io::Write as _;
        let mut file = fs::OpenOptions::new().create(true).append(true).open(log)?;
        writeln!(file, "{check} (`skopeo` not installed)")?;
    }
    Ok(false)
}

fn skopeo(args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .context("run skopeo")?;
    ensure!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout).unwrap_or_default())
}

#[test]
fn skopeo_reads_the_oci_layout_and_the_docker_archive() -> Result<()> {
    if !skopeo_installed()? {
        return Ok(());
    }
    for (bin, dir) in images_in(first_build()?)? {
        let image = read_layout(&dir.join("oci"))?;
        for tag in &image.tags {
            let oci = format!("oci:{}:{tag}", dir.join("oci").display());
            let inspected = skopeo(&["inspect", &oci])?;
            assert_eq!(inspected["Digest"], image.digest.as_str(), "{bin}:{tag}");
        }
        let archive = format!(
            "docker-archive:{}",
            dir.join(format!("{bin}.tar")).display()
        );
        let inspected = skopeo(&["inspect", &archive])?;
        let diff_ids = image.config.rootfs().diff_ids();
        assert_eq!(inspected["Layers"], serde_json::json!(diff_ids), "{bin}");
        // A copy reads every blob of the archive and checks it against the config.
        let copy = tempfile::tempdir()?;
        skopeo(&[
            "copy",
            "--quiet",
            &archive,
            &format!("oci:{}:copy", copy.path().display()),
        ])?;
        println!("skopeo read {bin} from both formats");
    }
    Ok(())
}

#[test]
fn unknown_service_is_an_error_listing_the_services() -> Result<()> {
    let out = tempfile::tempdir()?;
    let output = xtask_images(out.path(), &["--service", "consumer"], &[])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("unknown service `consumer`: the services are "),
        "{stderr}"
    );
    assert!(
        stderr.contains("processor") && stderr.contains("producer"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_dir(out.path())?.count(),
        0,
        "something was written"
    );
    Ok(())
}

#[test]
fn a_failing_build_leaves_the_previous_image_untouched() -> Result<()> {
    let out = tempfile::tempdir()?;
    let previous = out.path().join("producer");
    fs::create_dir(&previous)?;
    fs::write(previous.join("marker"), "previous image")?;
    // A cargo whose `build` fails the way a compile error does; everything else is real.
    let fake = out.path().join("fake-cargo");
    let real = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1\" = build ]; then echo 'error: could not compile `producer`' >&2; exit 101; fi\nexec '{real}' \"$@\"\n"
        ),
    )?;
    ensure!(
        Command::new("chmod")
            .arg("+x")
            .arg(&fake)
            .status()?
            .success()
    );

    let fake = fake.to_str().context("utf-8 temp path")?;
    let output = xtask_images(out.path(), &["--service", "producer"], &[("CARGO", fake)])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("could not compile `producer`"),
        "cargo's error is shown: {stderr}"
    );
    assert!(stderr.contains("build the release binaries"), "{stderr}");
    let left = fs::read_dir(out.path())?.count();
    assert_eq!(
        left, 2,
        "only the previous image and the fake cargo are left"
    );
    assert_eq!(
        fs::read_to_string(previous.join("marker"))?,
        "previous image"
    );
    Ok(())
}
