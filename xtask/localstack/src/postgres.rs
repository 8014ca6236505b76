//! A local PostgreSQL server: `initdb` once, then `postgres` as a child process.
//!
//! PostgreSQL refuses to run as root, so when the xtask runs as root (CI, containers) the
//! server runs as `nobody`. The server listens on 127.0.0.1 only and trusts loopback
//! connections: the URL carries no password because there is none to leak.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, User, chown};

use crate::process::{Managed, wait_until};

/// The role and database flightdeck uses on the local server.
pub const USER: &str = "flightdeck";
/// The database name on the local server.
pub const DATABASE: &str = "flightdeck";
/// The read-only role dashboards connect as (the cluster's is named the same).
pub const READER: &str = "flightdeck_reader";

/// A running local PostgreSQL.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    data_dir: PathBuf,
    durable: bool,
    run_as: Option<User>,
    process: Managed,
}

impl Postgres {
    /// Initialises `dir` if it is new and starts the server on `port`.
    ///
    /// `durable = false` turns fsync off: for throw-away test clusters only.
    pub fn start(dir: &Path, port: u16, durable: bool) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let run_as = if Uid::effective().is_root() {
            Some(User::from_name("nobody")?.context(
                "PostgreSQL cannot run as root and there is no `nobody` user to run it as",
            )?)
        } else {
            None
        };
        let data_dir = match &run_as {
            Some(user) if !reachable_by_others(dir) => {
                let alt = fallback_dir(dir);
                // A throw-away cluster must start empty, like its directory under `dir`.
                if !durable && alt.exists() {
                    std::fs::remove_dir_all(&alt)
                        .with_context(|| format!("clear {}", alt.display()))?;
                }
                tracing::info!(
                    wanted = %dir.display(),
                    using = %alt.display(),
                    "PostgreSQL runs as `nobody`, which cannot reach the project folder: keeping its data elsewhere"
                );
                prepare_dir(&alt, user)?;
                alt
            }
            Some(user) => {
                prepare_dir(dir, user)?;
                dir.to_owned()
            }
            None => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("create {}", dir.display()))?;
                dir.to_owned()
            }
        };
        let pgdata = data_dir.join("data");
        if !pgdata.join("PG_VERSION").exists() {
            tracing::info!(data = %pgdata.display(), "initialising a PostgreSQL cluster");
            let mut initdb = Command::new(bin.join("initdb"));
            initdb.arg("-D").arg(&pgdata).args([
                "-U",
                USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ]);
            if !durable {
                initdb.arg("--no-sync");
            }
            as_user(&mut initdb, run_as.as_ref());
            let out = initdb.output().context("run initdb")?;
            if !out.status.success() {
                bail!(
                    "initdb failed for {}:\n{}",
                    pgdata.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let process = spawn_server(&bin, &data_dir, port, durable, run_as.as_ref())?;
        let server = Self {
            port,
            data_dir,
            durable,
            run_as,
            process,
        };
        server.create_database(&bin)?;
        Ok(server)
    }

    /// Stops the server (fast shutdown) and starts it again on the same data and port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.stop();
        self.process = spawn_server(
            &bin_dir()?,
            &self.data_dir,
            self.port,
            self.durable,
            self.run_as.as_ref(),
        )?;
        Ok(())
    }

    /// Freezes (`true`) or thaws (`false`) the server and every backend: connections
    /// stay open and nothing answers, like a hung server.
    ///
    /// NB: each backend calls `setsid()`, so the postmaster's process group holds only
    /// the postmaster: the children are found by their parent id in `/proc`.
    pub fn freeze(&self, frozen: bool) -> anyhow::Result<()> {
        let signal = if frozen {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        let postmaster = self.process.pid().context("PostgreSQL is not running")?;
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // `pid (comm) state ppid …`; comm may hold spaces, so split after the ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        for pid in pids {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
            // A backend may exit meanwhile: that is fine.
            let _ = nix::sys::signal::kill(pid, signal);
        }
        Ok(())
    }

    /// The user the server runs as (`None`: the current one).
    pub fn run_as(&self) -> Option<&User> {
        self.run_as.as_ref()
    }

    /// `postgres://flightdeck@127.0.0.1:PORT/flightdeck`.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the cluster's files and log live.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `postgres://flightdeck_reader@127.0.0.1:PORT/flightdeck`: the read-only role of
    /// [`Postgres::ensure_reader`].
    pub fn reader_url(&self) -> String {
        format!("postgres://{READER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// Creates the read-only role [`READER`] unless it exists: it may read every table of
    /// `public`, including those `flightdeck` creates later, and nothing else. Its
    /// sessions are read-only too, so even a function cannot write through it.
    pub fn ensure_reader(&self) -> anyhow::Result<()> {
        let sql = format!(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN \
                 CREATE ROLE {READER} LOGIN; \
               END IF; \
             END $$;\n\
             ALTER ROLE {READER} SET default_transaction_read_only = on;\n\
             GRANT CONNECT ON DATABASE {DATABASE} TO {READER};\n\
             GRANT USAGE ON SCHEMA public TO {READER};\n\
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER};\n\
             ALTER DEFAULT PRIVILEGES FOR ROLE {USER} IN SCHEMA public GRANT SELECT ON TABLES TO {READER};\n"
        );
        let out = Command::new(bin_dir()?.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args(["-d", DATABASE, "-v", "ON_ERROR_STOP=1", "-q", "-c", &sql])
            .output()
            .context("run psql")?;
        if !out.status.success() {
            bail!(
                "create the read-only role {READER} on port {}: {}",
                self.port,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Stops the server (fast shutdown).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    fn create_database(&self, bin: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(bin.join("createdb"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    USER,
                    DATABASE,
                ])
                .output()
                .context("run createdb")?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || stderr.contains("already exists") {
                return Ok(());
            }
            // The server accepts connections before it accepts logins ("starting up").
            if Instant::now() > deadline {
                bail!("create database {DATABASE} on port {}: {stderr}", self.port);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Starts `postgres` on `data_dir/data` and waits until it accepts connections.
fn spawn_server(
    bin: &Path,
    data_dir: &Path,
    port: u16,
    durable: bool,
    run_as: Option<&User>,
) -> anyhow::Result<Managed> {
    let pgdata = data_dir.join("data");
    let mut postgres = Command::new(bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(&pgdata)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "unix_socket_directories="])
        .args(["-c", "max_connections=50"]);
    if !durable {
        postgres.args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]);
    }
    as_user(&mut postgres, run_as);
    // NB: SIGINT is PostgreSQL's "fast" shutdown: open transactions roll back, everything
    // committed is on disk.
    let mut process = Managed::spawn("postgres", postgres, &data_dir.join("postgres.log"))?
        .stop_with(Signal::SIGINT, Duration::from_secs(30));
    wait_until(&mut process, "PostgreSQL", Duration::from_secs(60), || {
        crate::port_open(port)
    })?;
    Ok(process)
}

fn as_user(cmd: &mut Command, user: Option<&User>) {
    if let Some(user) = user {
        cmd.uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .env("HOME", "/tmp");
    }
}

fn prepare_dir(dir: &Path, user: &User) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    chown(dir, Some(user.uid), Some(Gid::from_raw(user.gid.as_raw())))
        .with_context(|| format!("hand {} to {}", dir.display(), user.name))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Whether every existing ancestor of `dir` lets other users through.
fn reachable_by_others(dir: &Path) -> bool {
    dir.ancestors()
        .skip(1)
        .filter_map(|p| std::fs::metadata(p).ok())
        .all(|m| m.permissions().mode() & 0o001 != 0)
}

fn fallback_dir(dir: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    PathBuf::from(format!(
        "/var/tmp/flightdeck-postgres/{:016x}",
        hasher.finish()
    ))
}

/// The directory holding `initdb` and `postgres`: from `PATH`, else Debian's newest
/// `/usr/lib/postgresql/*/bin`.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    // NB: the real directory, not a symlink farm such as /usr/local/bin that may link
    // initdb and postgres but not createdb.
    if let Some(dir) = crate::tools::on_path("initdb")
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
        && dir.join("postgres").exists()
        && dir.join("createdb").exists()
    {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin: \
         install them with `apt-get install postgresql` (Debian/Ubuntu), `nix develop`, or pass --database-url",
    )
}
