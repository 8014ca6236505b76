//! Apache Superset in a virtualenv cached under `~/.cache/flightdeck/`, installed once with
//! `pip install --require-hashes` from the committed, hashed requirements set.
//!
//! The virtualenv's name carries a fingerprint of the requirements file and the Python
//! version, so a changed pin makes a new one and nothing is ever upgraded in place. It is
//! marked complete only once pip succeeded and the metadata template exists, so an
//! interrupted install starts again from scratch on the next run.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use localstack::process::last_lines;
use sha2::{Digest, Sha256};

/// The Superset release, the same as the cluster's image.
pub const VERSION: &str = "6.0.0";
/// The hashed requirements, relative to the project root.
pub const REQUIREMENTS: &str = "xtask/src/dashboard/superset-requirements.txt";
/// Python versions the pinned wheels exist for (numpy 1.26 stops at 3.12).
const PYTHONS: std::ops::RangeInclusive<u32> = 10..=12;

/// An installed Superset: its virtualenv and the empty metadata database to copy.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The virtualenv.
    pub venv: PathBuf,
}

impl Installed {
    /// `<venv>/bin/<name>`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.venv.join("bin").join(name)
    }

    /// A metadata database with Superset's schema and roles, and no user: copied for each
    /// new instance instead of migrating one from nothing (a minute and a half).
    pub fn template(&self) -> PathBuf {
        self.venv.join("metadata-template.db")
    }

    /// pip's log of the install, beside the virtualenv.
    pub fn log(&self) -> PathBuf {
        PathBuf::from(format!("{}.log", self.venv.display()))
    }

    /// Identifies this installation in an instance's stamp.
    pub fn id(&self) -> String {
        self.venv
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The Python that creates the virtualenv: `FLIGHTDECK_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("FLIGHTDECK_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The installed Superset, installing it first when needed (minutes, with progress).
pub fn ensure(root: &Path) -> anyhow::Result<Installed> {
    let requirements = root.join(REQUIREMENTS);
    let text =
        std::fs::read(&requirements).with_context(|| format!("read {}", requirements.display()))?;
    let python = python();
    let version = python_version(&python)?;
    // Comments do not change what is installed: only the requirement lines count.
    let pins: String = String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let fingerprint = hex::encode(
        &Sha256::new()
            .chain_update(pins.as_bytes())
            .chain_update(version.as_bytes())
            .finalize(),
    );
    let cache = localstack::tools::cache_dir()?;
    let installed = Installed {
        venv: cache.join(format!("superset-{VERSION}-{}", &fingerprint[..12])),
    };
    let done = installed.venv.join(".flightdeck-complete");
    if done.exists() {
        return Ok(installed);
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("create {}", cache.display()))?;
    // `dev` and `e2e` may install at the same time: one installs, the other waits.
    let lock = std::fs::File::create(cache.join("superset-install.lock"))
        .context("create the Superset install lock")?;
    lock.lock().context("wait for another Superset install")?;
    if done.exists() {
        return Ok(installed);
    }
    let started = Instant::now();
    eprintln!(
        "flightdeck: installing Apache Superset {VERSION} with Python {version} into {}\n\
         flightdeck: first use only: about 160 pinned packages (~750 MB), 5 minutes or so; \
         pip's log: {}",
        installed.venv.display(),
        installed.log().display()
    );
    install(&python, &installed, &requirements).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\nretry: run the same command again (the install starts over), or by hand:\n  \
             {python} -m venv {venv} && {venv}/bin/pip install --require-hashes --no-deps -r {req}",
            venv = installed.venv.display(),
            req = requirements.display(),
        )
    })?;
    create_template(&installed)?;
    std::fs::write(&done, "").context("mark the Superset install complete")?;
    eprintln!(
        "flightdeck: Superset {VERSION} installed in {}s",
        started.elapsed().as_secs()
    );
    Ok(installed)
}

/// `3.11` of the interpreter, failing with what to do when it cannot run Superset.
fn python_version(python: &str) -> anyhow::Result<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])",
        ])
        .output();
    let fix = "install Python 3.10-3.12 with venv (Debian: `apt-get install python3 python3-venv`) \
               or point FLIGHTDECK_PYTHON at one";
    let out = match out {
        Ok(out) if out.status.success() => out,
        Ok(out) => bail!(
            "`{python}` cannot create virtualenvs ({}): {fix}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => bail!("`{python}` not found ({e}): {fix}"),
    };
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let minor = version
        .strip_prefix("3.")
        .and_then(|m| m.parse::<u32>().ok());
    if !minor.is_some_and(|m| PYTHONS.contains(&m)) {
        bail!(
            "Superset {VERSION}'s pinned packages need Python 3.10-3.12, `{python}` is {version}: {fix}"
        );
    }
    Ok(version)
}

fn install(python: &str, installed: &Installed, requirements: &Path) -> anyhow::Result<()> {
    let venv = &installed.venv;
    if venv.exists() {
        std::fs::remove_dir_all(venv)
            .with_context(|| format!("remove the incomplete {}", venv.display()))?;
    }
    let status = Command::new(python)
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .with_context(|| format!("run {python} -m venv"))?;
    if !status.success() {
        bail!("`{python} -m venv {}` failed ({status})", venv.display());
    }
    let log_path = installed.log();
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("create {}", log_path.display()))?;
    let mut child = Command::new(installed.bin("pip"))
        .args([
            "install",
            "--require-hashes",
            // NB: every dependency is pinned in the file (uv resolved it); pip's own
            // resolver would re-request `shillelagh[gsheetsapi]` unpinned and refuse
            // under --require-hashes. `pip check` below proves the set is complete.
            "--no-deps",
            "--no-input",
            "--progress-bar",
            "off",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(requirements)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run pip")?;
    // pip's stderr (errors, warnings) joins its stdout in the log, read on a thread.
    let stderr = child.stderr.take().context("pip's stderr")?;
    let errors = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let progress = Progress::new();
    let mut packages = 0;
    for line in BufReader::new(child.stdout.take().context("pip's stdout")?)
        .lines()
        .map_while(Result::ok)
    {
        writeln!(log, "{line}").ok();
        if line.starts_with("Collecting ") {
            packages += 1;
        }
        progress.update(packages, &line);
    }
    let status = child.wait().context("wait for pip")?;
    let errors = errors.join().unwrap_or_default();
    for line in &errors {
        writeln!(log, "{line}").ok();
    }
    progress.finish();
    if !status.success() {
        let tail: Vec<&str> = errors
            .iter()
            .rev()
            .take(15)
            .rev()
            .map(String::as_str)
            .collect();
        bail!(
            "installing Superset {VERSION} failed (pip {status}; no network? see {}):\n{}",
            log_path.display(),
            tail.join("\n")
        );
    }
    let check = Command::new(installed.bin("pip"))
        .args(["check", "--disable-pip-version-check"])
        .output()
        .context("run pip check")?;
    if !check.status.success() {
        bail!(
            "the pinned Superset requirements are incomplete or conflict (`pip check`):\n{}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
    Ok(())
}

/// Builds the empty metadata database every instance starts from.
fn create_template(installed: &Installed) -> anyhow::Result<()> {
    eprintln!(
        "flightdeck: creating Superset's metadata schema and roles (first use only, ~1.5 min)"
    );
    let dir = tempfile::tempdir().context("create a temporary directory")?;
    let db = dir.path().join("superset.db");
    let config = dir.path().join("superset_config.py");
    std::fs::write(
        &config,
        format!(
            "SECRET_KEY = {:?}\nSQLALCHEMY_DATABASE_URI = {:?}\n",
            hex::encode(&super::instance::random_bytes()?),
            format!("sqlite:///{}", db.display())
        ),
    )?;
    for args in [&["db", "upgrade"][..], &["init"][..]] {
        let out = Command::new(installed.bin("superset"))
            .args(args)
            .env("SUPERSET_CONFIG_PATH", &config)
            .env("SUPERSET_HOME", dir.path())
            .output()
            .context("run superset")?;
        if !out.status.success() {
            bail!(
                "`superset {}` failed while creating the metadata template:\n{}",
                args.join(" "),
                last_lines(&String::from_utf8_lossy(&out.stderr), 20)
            );
        }
    }
    std::fs::copy(&db, installed.template()).context("keep the metadata template")?;
    Ok(())
}

/// pip's progress: a spinner on a terminal, a line every 30 s otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    last: std::cell::Cell<Instant>,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            last: std::cell::Cell::new(Instant::now()),
        }
    }

    fn update(&self, packages: usize, line: &str) {
        let line: String = line.chars().take(90).collect();
        match &self.bar {
            Some(bar) => bar.set_message(format!("pip: {packages} packages · {line}")),
            None if self.last.get().elapsed() >= Duration::from_secs(30) => {
                eprintln!(
                    "flightdeck: installing Superset: {packages} packages collected, {}s",
                    self.started.elapsed().as_secs()
                );
                self.last.set(Instant::now());
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Lowercase hex, for fingerprints and generated secrets.
pub mod hex {
    /// `bytes` as lowercase hex digits.
    pub fn encode(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
