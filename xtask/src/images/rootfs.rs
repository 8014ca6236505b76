//! What goes into an image: the binary, its runtime closure, and a minimal `/etc`.
//!
//! Three layers, from the least to the most often changed, so registries and
//! `k3d image import` share the first two between services and between releases:
//!
//! 1. `base`: `/etc/passwd` and `/etc/group` with the `nonroot` user (65532), the
//!    host's CA bundle, `/etc/nsswitch.conf`, an empty world-writable `/tmp`;
//! 2. `runtime`: the dynamic loader and every shared library the binary links, found
//!    with `ldd` and copied from the host at the path the loader will look for them;
//! 3. `app`: the binary itself at `/usr/local/bin/<bin>`.
//!
//! There is no shell, no package manager and nothing else: the image can only run
//! its entrypoint.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use super::layer::Tree;

/// The unprivileged user the images run as (distroless' `nonroot`).
pub const NONROOT_ID: u32 = 65532;
/// The CA bundle copied from the host, at the same path in the image.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where the binary lives in the image.
pub const BIN_DIR: &str = "/usr/local/bin";

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
                      nonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnonroot:x:65532:\n";
// NB: glibc reads this for user and host lookups; without it, it guesses.
const NSSWITCH: &str = "passwd: files\ngroup: files\nhosts: files dns\n";

/// The layer every service image starts with; it only depends on the host's CA bundle.
pub fn base() -> Result<Tree> {
    let certs = fs::read(CA_BUNDLE).with_context(|| {
        format!("read the CA bundle {CA_BUNDLE} (install it: `apt-get install ca-certificates`)")
    })?;
    let mut tree = Tree::default();
    tree.file("etc/passwd", 0o644, PASSWD.into())?;
    tree.file("etc/group", 0o644, GROUP.into())?;
    tree.file("etc/nsswitch.conf", 0o644, NSSWITCH.into())?;
    tree.file(CA_BUNDLE, 0o644, certs)?;
    tree.dir("tmp", 0o1777)?;
    Ok(tree)
}

/// The loader and shared libraries `binary` needs, copied from the host.
///
/// Symlinks are resolved: each library lands as a regular file at the path `ldd`
/// names (`/lib64/ld-linux-x86-64.so.2`, `/lib/x86_64-linux-gnu/libc.so.6`), which is
/// where the loader looks, whatever the host's links point at.
pub fn runtime(sh: &Shell, binary: &Path) -> Result<Tree> {
    let output = cmd!(sh, "ldd {binary}")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| {
            format!(
                "run `ldd {}` to list its shared libraries",
                binary.display()
            )
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let libraries = match parse_ldd(&stdout) {
        Ok(libraries) if output.status.success() || is_static(&stdout, &stderr) => libraries,
        Ok(_) => bail!("`ldd {}` failed: {}", binary.display(), stderr.trim()),
        Err(err) => {
            return Err(err.context(format!("resolve the libraries of {}", binary.display())));
        }
    };
    let mut tree = Tree::default();
    for library in libraries {
        let real =
            fs::canonicalize(&library).with_context(|| format!("resolve the library {library}"))?;
        let data =
            fs::read(&real).with_context(|| format!("read the library {}", real.display()))?;
        tree.file(&library, 0o755, data)?;
    }
    Ok(tree)
}

/// The layer holding the binary itself.
pub fn app(binary: &Path, bin: &str) -> Result<Tree> {
    let data = fs::read(binary).with_context(|| format!("read the binary {}", binary.display()))?;
    let mut tree = Tree::default();
    tree.file(&format!("{BIN_DIR}/{bin}"), 0o755, data)?;
    Ok(tree)
}

/// A statically linked binary has no runtime closure: `ldd` says so and exits 1.
fn is_static(stdout: &str, stderr: &str) -> bool {
    [stdout, stderr]
        .iter()
        .any(|text| text.contains("not a dynamic executable") || text.contains("statically linked"))
}

/// The absolute paths in `ldd` output, in order, without duplicates.
///
/// Lines look like `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)`, or
/// `/lib64/ld-linux-x86-64.so.2 (0x…)` for the loader, or `linux-vdso.so.1 (0x…)` for
/// the kernel's vDSO, which is no file. A library the loader cannot find is an error.
pub fn parse_ldd(output: &str) -> Result<Vec<String>> {
    let mut paths = Vec::new();
    for line in output
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        let (name, target) = match line.split_once("=>") {
            Some((name, target)) => (name.trim(), target.trim()),
            None => (line, ""),
        };
        if target.starts_with("not found") {
            bail!("the shared library {name} is not installed on this machine");
        }
        for part in [name, target] {
            // Drop the load address: `/lib/libc.so.6 (0x00007f…)`.
            let path = part.split(" (").next().unwrap_or_default().trim();
            if path.starts_with('/') && !paths.iter().any(|seen| seen == path) {
                paths.push(path.to_owned());
            }
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_loader_and_libraries_but_not_the_vdso() -> Result<()> {
        let out = "\tlinux-vdso.so.1 (0x00007ffc8a1f6000)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f2f)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2e)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f30)\n\
                   \tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f2d)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2e)\n";
        assert_eq!(
            parse_ldd(out)?,
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2",
                "/lib/x86_64-linux-gnu/libm.so.6",
            ]
        );
        Ok(())
    }

    #[test]
    fn a_loader_named_by_two_paths_lands_at_both() -> Result<()> {
        let out =
            "\t/lib64/ld-linux-x86-64.so.2 => /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 (0x1)\n";
        assert_eq!(
            parse_ldd(out)?,
            [
                "/lib64/ld-linux-x86-64.so.2",
                "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
            ]
        );
        Ok(())
    }

    #[test]
    fn a_missing_library_is_an_error_naming_it() -> Result<()> {
        let out = "\tlibssl.so.3 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n";
        let err = parse_ldd(out).expect_err("an error").to_string();
        assert_eq!(
            err,
            "the shared library libssl.so.3 is not installed on this machine"
        );
        Ok(())
    }

    #[test]
    fn static_binaries_have_an_empty_closure() -> Result<()> {
        assert!(parse_ldd("\tnot a dynamic executable\n")?.is_empty());
        assert!(parse_ldd("\tstatically linked\n")?.is_empty());
        assert!(is_static("", "\tnot a dynamic executable\n"));
        assert!(!is_static("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n", ""));
        Ok(())
    }

    #[test]
    fn base_layer_has_the_nonroot_user_the_ca_bundle_and_a_sticky_tmp() -> Result<()> {
        // NB: needs the host's CA bundle, as the xtask itself does.
        let tree = base()?;
        let paths: Vec<_> = tree.paths().collect();
        for expected in [
            "etc/passwd",
            "etc/group",
            "etc/ssl/certs/ca-certificates.crt",
            "tmp",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
        assert!(
            PASSWD
                .lines()
                .any(|l| l.starts_with("nonroot:x:65532:65532:"))
        );
        assert!(GROUP.lines().any(|l| l == "nonroot:x:65532:"));
        assert!(
            !paths
                .iter()
                .any(|p| p.starts_with("bin") || p.ends_with("/sh"))
        );
        Ok(())
    }
}
