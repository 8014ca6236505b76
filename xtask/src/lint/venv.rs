//! Python virtualenvs for the lint's Python tools, cached under `~/.cache/flightdeck/`:
//! one per requirements file and Python version (a new requirements file makes a new
//! virtualenv), created on first use and marked complete only once installed.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use xshell::{Shell, cmd};

/// FNV-1a: a stable, dependency-free fingerprint of the requirements.
fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `~/.cache/flightdeck/<name>-<fingerprint>` with `requirements` installed; `what`
/// names it in the message printed when it has to be created.
pub fn cached(sh: &Shell, name: &str, requirements: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(requirements)
        .with_context(|| format!("read {}", requirements.display()))?;
    let python_version = cmd!(sh, "python3 --version")
        .quiet()
        .read()
        .context("run python3 --version")?;
    let dir = localstack::tools::cache_dir()?.join(format!(
        "{name}-{:016x}",
        fingerprint(&(text + &python_version))
    ));
    let done = dir.join(".flightdeck-complete");
    if done.exists() {
        return Ok(dir);
    }
    eprintln!(
        "lint: creating the {what} virtualenv in {} (first use only)",
        dir.display()
    );
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("remove the incomplete {}", dir.display()))?;
    }
    cmd!(sh, "python3 -m venv {dir}")
        .quiet()
        .run()
        .context("create the virtualenv")?;
    let pip = dir.join("bin/pip");
    cmd!(
        sh,
        "{pip} install --quiet --disable-pip-version-check -r {requirements}"
    )
    .run()
    .with_context(|| format!("install {}", requirements.display()))?;
    std::fs::write(&done, "").context("mark the virtualenv complete")?;
    Ok(dir)
}
