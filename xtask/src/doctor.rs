//! `cargo xtask doctor`: every external tool the xtask calls, the version found and the
//! version expected, and the exact fix for what is missing or too old.
//!
//! It exits non-zero when something `cargo xtask up` needs is missing, so scripts (and
//! the devcontainer's `postCreateCommand`) can stop early with a clear message. Under
//! `nix develop` every tool comes from `flake.lock` and the check passes.

mod tools;

use std::fmt::Write as _;
use std::process::Command;

use xshell::Shell;

use self::tools::{Need, TOOLS, Tool, version};

/// Check the tools the xtask calls, with fixes; fails when `up` cannot run.
#[derive(Debug, clap::Args)]
pub struct Doctor {}

/// One row of the report.
struct Row {
    name: String,
    found: String,
    expected: String,
    need: Need,
    problem: Option<String>,
    fix: String,
}

fn probe(tool: &Tool) -> Row {
    let mut row = probe_placeholder(tool);
    let (program, args) = tool.probe.split_first().expect("a probe command");
    match Command::new(program).args(args).output() {
        Err(_) => {
            row.found = "not found".into();
            row.problem = Some(format!("`{program}` is not on PATH"));
        }
        Ok(out) if !out.status.success() => {
            let error = String::from_utf8_lossy(&out.stderr);
            let first = error
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("failed");
            row.found = "not working".into();
            row.problem = Some(format!(
                "`{}` fails: {}",
                tool.probe.join(" "),
                first.trim()
            ));
        }
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            match version(&text) {
                None => {
                    row.found = "unknown version".into();
                    row.problem = Some(format!(
                        "cannot read a version from `{}`",
                        tool.probe.join(" ")
                    ));
                }
                Some(v) => {
                    row.found = format!("{}.{}.{}", v.0, v.1, v.2);
                    if v < tool.minimum {
                        row.problem =
                            Some(format!("{} is older than {}", row.found, tool.expected));
                    }
                }
            }
        }
    }
    row
}

/// PostgreSQL server binaries and the broker, found the way the local stack finds them.
fn local_stack_rows() -> Vec<Row> {
    // The server binaries the local stack runs (initdb, postgres, createdb), found as it
    // finds them: on PATH or in Debian's /usr/lib/postgresql/*/bin.
    let postgres = match localstack::postgres::bin_dir() {
        Ok(dir) => {
            let out = Command::new(dir.join("postgres")).arg("--version").output();
            let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            match text.ok().as_deref().and_then(version) {
                Some((major, minor, patch)) => (format!("{major}.{minor}.{patch}"), None),
                None => (
                    "unknown version".to_owned(),
                    Some(format!("`{}/postgres --version` fails", dir.display())),
                ),
            }
        }
        Err(error) => ("not found".to_owned(), Some(format!("{error:#}"))),
    };
    let tansu = localstack::tools::tansu_path();
    let broker = if let Some(kafka) = localstack::tools::on_path("kafka-server-start.sh") {
        (format!("Apache Kafka ({})", kafka.display()), None)
    } else if tansu.is_file() {
        (format!("tansu {}", localstack::tools::TANSU_VERSION), None)
    } else {
        (
            "not installed yet".to_owned(),
            Some("installed on first use (15-20 minutes)".to_owned()),
        )
    };
    vec![
        Row {
            name: "postgres server".into(),
            found: postgres.0,
            expected: "initdb, postgres, createdb".into(),
            need: Need::Local,
            problem: postgres.1,
            fix: "`nix develop`, or `apt-get install postgresql`".into(),
        },
        Row {
            name: "broker".into(),
            found: broker.0,
            expected: format!(
                "kafka-server-start.sh, or tansu {}",
                localstack::tools::TANSU_VERSION
            ),
            need: Need::Local,
            problem: broker.1,
            fix: format!(
                "`nix develop` (Apache Kafka), or let the first `cargo xtask e2e` install tansu into {}",
                tansu.display()
            ),
        },
    ]
}

/// The report and whether `up` can run.
fn report(rows: &[Row]) -> (String, bool) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<17} {:<26} {:<44} {:<25} STATUS",
        "TOOL", "FOUND", "EXPECTED", "NEEDED BY"
    );
    for row in rows {
        let status = if row.problem.is_none() {
            "ok"
        } else {
            "MISSING"
        };
        let found: String = row.found.chars().take(26).collect();
        let _ = writeln!(
            out,
            "{:<17} {found:<26} {:<44} {:<25} {status}",
            row.name,
            row.expected,
            row.need.label()
        );
    }
    let problems: Vec<&Row> = rows.iter().filter(|r| r.problem.is_some()).collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "\nTo fix:");
        for row in &problems {
            let _ = writeln!(
                out,
                "  {} ({}): {}",
                row.name,
                row.need.label(),
                row.problem.as_deref().unwrap_or_default()
            );
            let _ = writeln!(out, "      fix: {}", row.fix);
        }
    }
    let blocking: Vec<&str> = problems
        .iter()
        .filter(|r| r.need == Need::Up)
        .map(|r| r.name.as_str())
        .collect();
    if blocking.is_empty() {
        let _ = writeln!(out, "\n`cargo xtask up` has everything it needs.");
    } else {
        let _ = writeln!(
            out,
            "\n`cargo xtask up` cannot run here: missing {}.",
            blocking.join(", ")
        );
    }
    let environment: Vec<&str> = problems
        .iter()
        .filter(|r| r.need == Need::Env)
        .map(|r| r.name.as_str())
        .collect();
    if !environment.is_empty() {
        let _ = writeln!(
            out,
            "The pinned environment is not available either: missing {}. With Nix, `nix develop` provides every tool above at the versions flake.lock pins.",
            environment.join(", ")
        );
    }
    (out, blocking.is_empty())
}

/// Probes `tools`; the docker daemon row only when the docker CLI works.
fn probe_all<'a>(tools: impl Iterator<Item = &'a Tool>) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for tool in tools {
        let cli_missing = rows
            .iter()
            .any(|r| r.name == "docker" && r.problem.is_some());
        if tool.name == "docker daemon" && cli_missing {
            // Without the CLI, "the daemon is not reachable" would only repeat it.
            rows.push(Row {
                found: "unknown".into(),
                problem: Some("needs the docker CLI first".into()),
                ..probe_placeholder(tool)
            });
        } else {
            rows.push(probe(tool));
        }
    }
    rows
}

fn probe_placeholder(tool: &Tool) -> Row {
    Row {
        name: tool.name.to_owned(),
        found: String::new(),
        expected: tool.expected.to_owned(),
        need: tool.need,
        problem: None,
        fix: tool.fix.to_owned(),
    }
}

/// The check `up` runs first: fails with every fix when a tool it needs is missing.
pub fn require_up_tools() -> anyhow::Result<()> {
    let rows = probe_all(TOOLS.iter().filter(|t| t.need == Need::Up));
    let mut message = String::new();
    for row in rows.iter().filter(|r| r.problem.is_some()) {
        let _ = writeln!(
            message,
            "  {}: {}
      fix: {}",
            row.name,
            row.problem.as_deref().unwrap_or_default(),
            row.fix
        );
    }
    anyhow::ensure!(
        message.is_empty(),
        "`cargo xtask up` needs tools that are missing (`cargo xtask doctor` lists all):\n{message}"
    );
    Ok(())
}

impl Doctor {
    /// Prints the report; fails when a tool `up` needs is missing or too old.
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let mut rows = probe_all(TOOLS.iter());
        rows.extend(local_stack_rows());
        let (text, up_ready) = report(&rows);
        println!("{text}");
        println!(
            "Superset base image: {}",
            crate::images::superset::pin::describe(&sh.current_dir())
        );
        anyhow::ensure!(up_ready, "doctor: a tool `cargo xtask up` needs is missing");
        Ok(())
    }
}
