//! The DAG import test: `dags/tests/` run with the pinned Airflow of `dags/requirements.txt`
//! in a virtualenv cached under `~/.cache/flightdeck/` (created on first use, about one and
//! a half minutes with a warm network; a new requirements file makes a new virtualenv).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use xshell::{Shell, cmd};

use super::Finding;

/// FNV-1a: a stable, dependency-free fingerprint of the requirements.
fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `~/.cache/flightdeck/airflow-venv-<fingerprint>`, created when missing.
fn venv(sh: &Shell, root: &Path) -> anyhow::Result<PathBuf> {
    let requirements = root.join("dags/requirements.txt");
    let text = std::fs::read_to_string(&requirements).context("read dags/requirements.txt")?;
    let python_version = cmd!(sh, "python3 --version")
        .quiet()
        .read()
        .context("run python3 --version")?;
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    let dir = cache.join("flightdeck").join(format!(
        "airflow-venv-{:016x}",
        fingerprint(&(text + &python_version))
    ));
    let done = dir.join(".flightdeck-complete");
    if done.exists() {
        return Ok(dir);
    }
    eprintln!(
        "lint: creating the Airflow virtualenv for the DAG import test in {} (first use: about 2 minutes)",
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
    .context("install dags/requirements.txt")?;
    std::fs::write(&done, "").context("mark the virtualenv complete")?;
    Ok(dir)
}

/// Runs the DAG tests; a failure is one finding on `dags/pipeline.py` with the output.
pub fn run(sh: &Shell, root: &Path) -> anyhow::Result<Vec<Finding>> {
    let python = venv(sh, root)?.join("bin/python");
    let tests = root.join("dags/tests");
    let out = cmd!(sh, "{python} -m unittest discover -s {tests} -p test_*.py")
        .quiet()
        .ignore_status()
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // unittest's summary ("Ran 4 tests in 1.9s" / "OK") ends stderr; Airflow's logs precede it.
    let summary: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("Ran ") || l.starts_with("OK") || l.starts_with("FAILED"))
        .collect();
    if out.status.success() {
        eprintln!("lint: DAG import test: {}", summary.join(", "));
        return Ok(Vec::new());
    }
    let tail: Vec<&str> = stderr
        .lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Ok(vec![Finding::new(
        Path::new("dags/pipeline.py"),
        0,
        format!("the DAG import test fails:\n{}", tail.join("\n")),
        "run the test by hand with the virtualenv's python: `python -m unittest discover -s dags/tests`",
    )])
}
