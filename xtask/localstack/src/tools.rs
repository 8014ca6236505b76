//! Finding, and when needed installing, the external programs the local stack runs.
//!
//! tansu is installed with `cargo install` at a pinned version into a cache shared by
//! every checkout (`$FLIGHTDECK_TOOLS_DIR`, default `~/.cache/flightdeck/tools`).
//! NB: the cache lives outside `target/` on purpose: the install compiles for about
//! 15-20 minutes on a two-core machine, and `cargo clean` or a fresh clone should not
//! pay that again.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The tansu version the stack is tested with.
pub const TANSU_VERSION: &str = "0.6.0";
/// The cargo features tansu is built with: `libsql` gives the durable sqlite engine.
pub const TANSU_FEATURES: &str = "libsql,dynostore";

/// The first `name` on `PATH` that is a file.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The project's cache shared by every checkout: `~/.cache/flightdeck`
/// (`$XDG_CACHE_HOME/flightdeck` when that is set). Pinned tools, virtualenvs, image bases
/// and upstream schemas live below it, each in a directory of its own.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    use etcetera::BaseStrategy as _;
    let base = etcetera::choose_base_strategy()
        .context("find the home directory (for ~/.cache/flightdeck)")?;
    Ok(base.cache_dir().join("flightdeck"))
}

/// Where pinned tools are installed: `$FLIGHTDECK_TOOLS_DIR`, else `tools/` in
/// [`cache_dir`] (in the temporary directory when there is no home).
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLIGHTDECK_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    cache_dir()
        .unwrap_or_else(|_| std::env::temp_dir().join("flightdeck"))
        .join("tools")
}

/// Where the pinned tansu binary lives once installed.
pub fn tansu_path() -> PathBuf {
    tools_dir()
        .join(format!("tansu-{TANSU_VERSION}"))
        .join("bin")
        .join("tansu")
}

/// The pinned tansu, installing it first when it is missing.
pub fn tansu() -> anyhow::Result<PathBuf> {
    let path = tansu_path();
    if path.is_file() {
        return Ok(path);
    }
    // Test binaries start stacks in parallel: one installs, the others wait for it.
    let dir = tools_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let lock =
        std::fs::File::create(dir.join("install.lock")).context("create the install lock")?;
    lock.lock().context("wait for another tansu install")?;
    if !path.is_file() {
        install_tansu(&path)?;
    }
    Ok(path)
}

fn install_tansu(path: &Path) -> anyhow::Result<()> {
    let root = path
        .parent()
        .and_then(Path::parent)
        .context("tansu path has a root")?;
    eprintln!(
        "flightdeck: installing tansu {TANSU_VERSION} (a Kafka-protocol broker) into {}\n\
         flightdeck: this happens once and compiles for about 15-20 minutes; cargo's progress follows",
        root.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["install", "--locked", &format!("tansu@{TANSU_VERSION}")])
        .args(["--features", TANSU_FEATURES, "--root"])
        .arg(root)
        // Our workspace's target dir and toolchain file must not leak into the install.
        .env_remove("CARGO_TARGET_DIR")
        .current_dir(std::env::temp_dir())
        .status()
        .context("run `cargo install tansu`")?;
    if !status.success() || !path.is_file() {
        bail!(
            "installing tansu failed ({status}); run it by hand to see why:\n  \
             cargo install --locked tansu@{TANSU_VERSION} --features {TANSU_FEATURES} --root {}",
            root.display()
        );
    }
    Ok(())
}
