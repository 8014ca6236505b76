//! Stand-ins for the tools `up` runs (k3d, terraform, kubectl, cargo, docker, git...):
//! POSIX shell scripts in a temporary directory that is the whole `PATH` of the
//! [`xshell::Shell`] under test. Each records its argv, one line per call, so a test
//! asserts exactly which commands ran, in which order, with which arguments; a tool that
//! is not faked does not exist for the code under test.
//!
//! NB: a fake is a symlink to one dispatcher script, written once per machine, that runs
//! the tool's script (`.<name>.sh`, read by `sh`, never executed itself). Executing a file
//! that was just written fails now and then with "Text file busy" (ETXTBSY) when tests
//! run in parallel: a process another thread is spawning at that moment inherits the
//! write descriptor until it `exec`s. Scripts that are only read cannot hit that.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The dispatcher every fake links to: it runs `.<its own name>.sh` beside the link.
const DISPATCHER: &str = "#!/bin/sh\nexec /bin/sh \"${0%/*}/.${0##*/}.sh\" \"$@\"\n";

/// The dispatcher's path, written (once, atomically) when it is missing or differs.
fn dispatcher() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join("flightdeck-fake-tools");
        let path = dir.join("dispatch-v1");
        if fs::read_to_string(&path).ok().as_deref() == Some(DISPATCHER) {
            return path;
        }
        fs::create_dir_all(&dir).expect("create the dispatcher's directory");
        let staged = tempfile::NamedTempFile::new_in(&dir).expect("a temporary file");
        fs::write(staged.path(), DISPATCHER).expect("write the dispatcher");
        fs::set_permissions(staged.path(), fs::Permissions::from_mode(0o755))
            .expect("make it executable");
        staged.persist(&path).expect("put the dispatcher in place");
        // NB: a process forked while it was being written holds its descriptor until it
        // `exec`s, which takes far less than this.
        std::thread::sleep(std::time::Duration::from_millis(200));
        path
    })
}

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
        let record = format!(
            "printf '%s' {name} >> '{log}'; for a in \"$@\"; do printf ' %s' \"$a\" >> '{log}'; done; echo >> '{log}'",
            log = self.log.display()
        );
        self.install(name, &format!("{record}\n{script}\n"));
        self
    }

    /// Makes `name` run `script`: the script beside the link to the dispatcher.
    fn install(&self, name: &str, script: &str) {
        fs::write(self.dir.path().join(format!(".{name}.sh")), script).expect("write a fake tool");
        let link = self.dir.path().join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(dispatcher(), &link).expect("link a fake tool");
        }
    }

    /// Adds `name` that records its argv and succeeds silently.
    pub fn ok(&self, name: &str) -> &Self {
        self.tool(name, "exit 0")
    }

    /// Adds `git`: the real git (found on this process' `PATH`) for everything but the
    /// subcommands in `faked`, which record their argv and run `script` instead.
    pub fn git(&self, faked: &[&str], script: &str) -> &Self {
        let real = localstack::tools::on_path("git").expect("`git` is installed");
        let cases = faked.join("|");
        let record = format!(
            "printf '%s' git >> '{log}'; for a in \"$@\"; do printf ' %s' \"$a\" >> '{log}'; done; echo >> '{log}'",
            log = self.log.display()
        );
        self.install(
            "git",
            &format!(
                "case \"$1\" in\n  {cases})\n    {record}\n    {script}\n    ;;\n  *) exec '{}' \"$@\" ;;\nesac\n",
                real.display()
            ),
        );
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
