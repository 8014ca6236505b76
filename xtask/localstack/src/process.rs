//! Child processes that stop when dropped, with their output in a log file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
pub use nix::sys::signal::Signal;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// A child process; dropping it sends `stop_signal` and waits, then kills it.
#[derive(Debug)]
pub struct Managed {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    stop_signal: Signal,
    grace: Duration,
}

impl Managed {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    ///
    /// NB: the child gets its own process group, so a Ctrl-C in the terminal reaches only
    /// the xtask, which then stops the children in order (producer, processor, broker,
    /// database) instead of all of them at once.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open log file {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {name} ({:?})", cmd.get_program()))?;
        tracing::debug!(name, pid = child.id(), log = %log.display(), "started");
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
            stop_signal: Signal::SIGTERM,
            grace: Duration::from_secs(30),
        })
    }

    /// Uses `signal` instead of SIGTERM to stop the process, waiting at most `grace`.
    pub fn stop_with(mut self, signal: Signal, grace: Duration) -> Self {
        self.stop_signal = signal;
        self.grace = grace;
        self
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where the process's output goes.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The exit status if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Fails with the end of the log when the process has already exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.try_status() {
            None => Ok(()),
            Some(status) => anyhow::bail!(
                "{} exited ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 20)
            ),
        }
    }

    /// Sends the stop signal and waits for the process to exit (killing it after the grace).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let pid = Pid::from_raw(i32::try_from(child.id()).ok()?);
        let _ = kill(pid, self.stop_signal);
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                tracing::debug!(name = self.name, %status, "stopped");
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(name = self.name, "did not stop in time: killing it");
        let _ = child.kill();
        child.wait().ok()
    }

    /// Sends `signal` and waits for the process to exit (for at most the grace period,
    /// then kills it); the handle is spent afterwards.
    pub fn signal_and_wait(&mut self, signal: Signal) -> Option<ExitStatus> {
        self.stop_signal = signal;
        self.stop()
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        let child = self.child.as_mut().context("process already stopped")?;
        let status = child.wait()?;
        self.child = None;
        Ok(status)
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of a log file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    last_lines(&std::fs::read_to_string(path).unwrap_or_default(), n)
}

/// The last `n` lines of `text` (a tool's output, a pod's log), for error messages.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits until `ready()` holds, failing when `process` exits or `timeout` passes.
pub fn wait_until(
    process: &mut Managed,
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        process.ensure_running()?;
        if ready() {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{what} not ready after {timeout:?}; last lines of {}:\n{}",
                process.log().display(),
                tail(process.log(), 20)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
