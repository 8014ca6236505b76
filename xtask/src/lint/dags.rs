//! The DAG import test: `dags/tests/` run with the pinned Airflow of `dags/requirements.txt`
//! in a virtualenv cached under `~/.cache/flightdeck/` (created on first use, about one and
//! a half minutes with a warm network; a new requirements file makes a new virtualenv).

use std::path::{Path, PathBuf};

use xshell::{Shell, cmd};

use super::Finding;

/// The cached virtualenv with the pinned Airflow of `dags/requirements.txt` (about two
/// minutes to create with a warm network).
fn venv(sh: &Shell, root: &Path) -> anyhow::Result<PathBuf> {
    super::venv::cached(
        sh,
        "airflow-venv",
        &root.join("dags/requirements.txt"),
        "Airflow (DAG import test)",
    )
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
