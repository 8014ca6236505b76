//! `cargo xtask images`: daemonless, reproducible OCI images of every service binary.
//!
//! For every `bin` target of every crate under `services/` (see [`services`]) it runs
//! `cargo build --release`, then writes the image itself, with no Docker daemon or
//! container runtime: the binary, its shared libraries and a minimal `/etc`
//! ([`rootfs`]), as normalised tar.gz layers ([`layer`]), described by OCI documents
//! ([`oci`]), written as an OCI layout plus a `docker load` archive ([`output`]).
//!
//! Two runs on the same commit give the same digests: every timestamp comes from
//! `SOURCE_DATE_EPOCH` or the commit time ([`stamp`]). [`built`] reads an image back
//! (its digest-derived tag and digests) for `up` and `e2e --cluster`.
//!
//! `--superset` also builds the cluster's Superset image ([`superset`]): the official
//! release by digest (pinned in a committed file, [`superset::pin`]) plus a layer with the
//! PostgreSQL driver, under the same kind of digest-derived tag.

pub mod built;
mod layer;
mod oci;
mod output;
mod rootfs;
mod services;
mod stamp;
pub mod superset;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use self::oci::Image;
use self::output::Written;
use self::services::{Service, Workspace};
use self::stamp::Stamp;

/// The largest an image may be once unpacked; checked after every build.
const BUDGET_BYTES: u64 = 25 * 1000 * 1000;

/// Build an OCI image for every service binary, without Docker.
#[derive(Debug, clap::Args)]
pub struct Images {
    /// Build only this service's image (the binary name, e.g. `producer`); repeat for
    /// more. Without it, every binary of every crate under `services/` gets one.
    #[arg(long = "service", value_name = "NAME")]
    services: Vec<String>,
    /// Directory the images are written to, one `<DIR>/<binary>/` each holding `oci/`
    /// (an OCI image layout) and `<binary>.tar` (for `docker load -i`).
    /// [default: target/images]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// After building, copy both tags of every image to this registry with skopeo,
    /// as `REGISTRY/flightdeck/<binary>:<tag>` (e.g. `localhost:5000`). Log in first
    /// with `skopeo login` when the registry needs credentials.
    #[arg(long, value_name = "REGISTRY")]
    push: Option<String>,
    /// With --push: talk to the registry over plain HTTP or without checking its TLS
    /// certificate, as a local k3d registry needs.
    #[arg(long, requires = "push")]
    insecure: bool,
    /// Also build `flightdeck/superset`: the official Superset image (pinned by digest in
    /// infrastructure/superset/base-image.lock, copied once with skopeo into
    /// ~/.cache/flightdeck/images/) plus a layer with the PostgreSQL driver. Needs network
    /// access the first time; an empty pin file is filled then (commit it).
    #[arg(long)]
    superset: bool,
    /// With --superset: start from this OCI layout instead of the official image, as
    /// `DIR:TAG` (e.g. a local copy made with `skopeo copy … oci:DIR:TAG`).
    #[arg(long, requires = "superset", value_name = "DIR:TAG")]
    superset_base: Option<String>,
}

/// An image that was built and written.
struct Built {
    image: Image,
    written: Written,
}

impl Images {
    /// Builds the selected images, prints a summary table and pushes them if asked.
    pub fn run(self, sh: &Shell) -> Result<()> {
        if self.push.is_some() {
            require_skopeo(sh)?;
        }
        let workspace = Workspace::load(sh)?;
        let selected = workspace.select(&self.services)?;
        let out = match self.out {
            // Relative to where the command was started, as a person typing it expects.
            Some(out) => std::env::current_dir()
                .context("read the current directory")?
                .join(out),
            None => workspace.default_out(),
        };
        let stamp = Stamp::resolve(sh)?;

        let mut packages: Vec<&str> = selected.iter().map(|s| s.package.as_str()).collect();
        packages.sort_unstable();
        packages.dedup();
        let package_args = packages.iter().flat_map(|p| ["-p", p]);
        println!("==> building release binaries ({})", packages.join(", "));
        // NB: cargo prints its own errors; nothing has been written to `out` yet.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        cmd!(sh, "{cargo} build --release {package_args...}")
            .run()
            .context("build the release binaries")?;

        println!(
            "==> packing images into {} (SOURCE_DATE_EPOCH={})",
            out.display(),
            stamp.epoch
        );
        let base = layer::pack(&rootfs::base()?, stamp.epoch)?;
        let mut built = Vec::new();
        for service in &selected {
            println!("==> packing flightdeck/{}", service.bin);
            built.push(build(sh, &workspace, service, &stamp, &base, &out)?);
        }

        if self.superset {
            println!("==> building {}", superset::NAME);
            let base = match &self.superset_base {
                Some(spec) => {
                    let (dir, tag) = spec
                        .rsplit_once(':')
                        .with_context(|| format!("--superset-base {spec}: expected DIR:TAG"))?;
                    superset::Base::Layout(PathBuf::from(dir), tag.to_owned())
                }
                None => superset::Base::Pinned,
            };
            let (image, written) = superset::build(sh, &superset::cache_dir()?, base, &out)?;
            built.push(Built { image, written });
        }

        print_summary(&built);
        let over: Vec<&str> = built
            .iter()
            // NB: the Superset image is the official one plus a driver; the budget is ours.
            .filter(|b| b.image.name != superset::NAME && b.image.uncompressed_size > BUDGET_BYTES)
            .map(|b| b.image.name.as_str())
            .collect();
        if !over.is_empty() {
            bail!(
                "{} over the {} budget: look at what the binary links (`ldd`) and its size",
                over.join(", "),
                human(BUDGET_BYTES)
            );
        }
        if let Some(registry) = &self.push {
            push(sh, &built, registry, self.insecure)?;
        }
        Ok(())
    }
}

/// Packs and writes the image of one service.
fn build(
    sh: &Shell,
    workspace: &Workspace,
    service: &Service,
    stamp: &Stamp,
    base: &layer::Packed,
    out: &std::path::Path,
) -> Result<Built> {
    let binary = workspace.release_binary(service);
    let mut layers = vec![("base: users, CA certificates, /tmp", base.clone())];
    let runtime = rootfs::runtime(sh, &binary)?;
    if !runtime.is_empty() {
        layers.push((
            "runtime: loader and shared libraries",
            layer::pack(&runtime, stamp.epoch)?,
        ));
    }
    let app = rootfs::app(&binary, &service.bin)?;
    layers.push(("app: the binary", layer::pack(&app, stamp.epoch)?));
    let image = oci::assemble(service, stamp, &layers)
        .with_context(|| format!("assemble the image of {}", service.bin))?;
    let written = output::write(&image, &service.bin, out, stamp.epoch)
        .with_context(|| format!("write the image of {}", service.bin))?;
    Ok(Built { image, written })
}

/// The table at the end: what was built, how big it is, and where it is.
fn print_summary(built: &[Built]) {
    println!();
    println!(
        "{:<24} {:<36} {:>10} {:>10}  {:<6} DIGEST",
        "IMAGE", "TAG", "SIZE", "GZIPPED", "BUDGET"
    );
    for Built { image, .. } in built {
        let budget = if image.uncompressed_size <= BUDGET_BYTES {
            "ok"
        } else {
            "OVER"
        };
        println!(
            "{:<24} {:<36} {:>10} {:>10}  {:<6} {}",
            image.name,
            image.tags[0],
            human(image.uncompressed_size),
            human(image.compressed_size),
            budget,
            image.digest
        );
    }
    println!(
        "\nbudget: {} unpacked per image; also tagged `latest`",
        human(BUDGET_BYTES)
    );
    for Built { written, .. } in built {
        println!("  {}  (docker load -i)", written.archive.display());
        println!("  {}  (skopeo copy oci:…)", written.layout.display());
    }
}

/// Decimal megabytes, as the budget is written.
fn human(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// Fails with how to install skopeo when it is missing.
fn require_skopeo(sh: &Shell) -> Result<()> {
    cmd!(sh, "skopeo --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .map_err(|_| {
            anyhow::anyhow!(
                "`--push` copies images with skopeo, which is not installed: install the package \
             `skopeo` (`apt-get install skopeo`, or nix: `nix shell nixpkgs#skopeo`)"
            )
        })
}

/// Copies every tag of every image to `registry` with `skopeo copy`.
fn push(sh: &Shell, built: &[Built], registry: &str, insecure: bool) -> Result<()> {
    let registry = registry.trim_end_matches('/');
    let tls: &[&str] = if insecure {
        &["--dest-tls-verify=false"]
    } else {
        &[]
    };
    // NB: skopeo refuses to copy without a signature policy file. Images we just built
    // need no signature check, so where the machine has no policy (Debian containers,
    // the devcontainer) the copy runs with the permissive default instead of failing.
    let home_policy = std::env::var_os("HOME")
        .map(|h| std::path::PathBuf::from(h).join(".config/containers/policy.json"));
    let has_policy = std::path::Path::new("/etc/containers/policy.json").exists()
        || home_policy.is_some_and(|p| p.exists());
    let policy: &[&str] = if has_policy {
        &[]
    } else {
        &["--insecure-policy"]
    };
    for Built { image, written } in built {
        for tag in &image.tags {
            let src = format!("oci:{}:{tag}", written.layout.display());
            let dest = format!("docker://{registry}/{}:{tag}", image.name);
            println!("==> pushing {dest}");
            cmd!(sh, "skopeo {policy...} copy --quiet {tls...} {src} {dest}")
                .run()
                .with_context(|| format!("push {dest}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_shown_in_decimal_megabytes() {
        assert_eq!(human(BUDGET_BYTES), "25.0 MB");
        assert_eq!(human(12_345_678), "12.3 MB");
    }
}
