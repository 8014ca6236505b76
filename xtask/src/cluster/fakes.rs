//! Stand-ins for the tools `up` runs (k3d, terraform, kubectl, cargo, docker, git...):
//! POSIX shell scripts in a temporary directory that is the whole `PATH` of the
//! [`xshell::Shell`] under test. Each records its argv, one line per call, so a test
//! asserts exactly which commands ran, in which order, with which arguments; a tool that
//! is not faked does not exist for the code under test.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A directory of fake tools and the log of their calls.
pub struct FakeTools {
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl FakeTools {
    /// An empty `PATH`: every tool is missing until it is added.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("calls.log");
        fs::write(&log, "").expect("create the call log");
        Self { dir, log }
    }

    /// Adds `name`: it records its argv, then runs `script` (POSIX sh, with `"$@"`).
    pub fn tool(&self, name: &str, script: &str) -> &Self {
        let path = self.dir.path().join(name);
        let record = format!(
            "printf '%s' {name} >> '{log}'; for a in \"$@\"; do printf ' %s' \"$a\" >> '{log}'; done; echo >> '{log}'",
            log = self.log.display()
        );
        fs::write(&path, format!("#!/bin/sh\n{record}\n{script}\n")).expect("write a fake tool");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("make it executable");
        self
    }

    /// Adds `name` that records its argv and succeeds silently.
    pub fn ok(&self, name: &str) -> &Self {
        self.tool(name, "exit 0")
    }

    /// Adds `git`: the real git (found on this process' `PATH`) for everything but the
    /// subcommands in `faked`, which record their argv and run `script` instead.
    pub fn git(&self, faked: &[&str], script: &str) -> &Self {
        let real = which("git");
        let cases = faked.join("|");
        let path = self.dir.path().join("git");
        let record = format!(
            "printf '%s' git >> '{log}'; for a in \"$@\"; do printf ' %s' \"$a\" >> '{log}'; done; echo >> '{log}'",
            log = self.log.display()
        );
        fs::write(
            &path,
            format!(
                "#!/bin/sh\ncase \"$1\" in\n  {cases})\n    {record}\n    {script}\n    ;;\n  *) exec '{}' \"$@\" ;;\nesac\n",
                real.display()
            ),
        )
        .expect("write the fake git");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("make it executable");
        self
    }

    /// The `PATH` value: only the fakes.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Every recorded call, in order, as `tool arg arg...`.
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .expect("read the call log")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The full path of `tool` on this process' `PATH`.
pub fn which(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{tool}` is not installed"))
}
