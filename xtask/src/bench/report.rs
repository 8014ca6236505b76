//! The bench's results: a table on stdout, the targets met or not, JSON under `target/bench/`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use xshell::{Shell, cmd};

use super::stages::{Latency, Results, Run};
use super::{Plan, Stage};

/// Which process does a stage's work (its CPU and memory are the stage's own).
fn client_role(label: &str) -> &'static str {
    match label.split_whitespace().next().unwrap_or_default() {
        "copy" => "copy",
        "sink" => "sink",
        "drain" => "drain",
        "processor" => "processor",
        "python" => "python",
        _ => "producer",
    }
}

/// The medians of one label over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// What ran.
    pub label: String,
    /// Median rows per second.
    pub rate: f64,
    /// Slowest and fastest round.
    pub rate_range: (f64, f64),
    /// Median rate relative to raw COPY in the same round.
    pub vs_copy: Option<f64>,
    /// Median CPU microseconds per row of the process doing the work.
    pub client_cpu_us_per_row: f64,
    /// Median CPU microseconds per row of PostgreSQL (every backend).
    pub postgres_cpu_us_per_row: f64,
    /// Median CPU microseconds per row of the broker.
    pub broker_cpu_us_per_row: f64,
    /// Largest peak RSS of the working process, MiB.
    pub peak_rss_mib: f64,
}

/// A target of issue 11, met or not, with the figure.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is asked.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// Whether it holds (`None`: not measured in this run).
    pub met: Option<bool>,
}

/// Everything written to the JSON file.
#[derive(Debug, Serialize)]
pub struct Report {
    machine: BTreeMap<String, String>,
    versions: BTreeMap<String, String>,
    records: u64,
    rounds: u32,
    batch_size: u64,
    stages: Vec<Stage>,
    load: Option<Run>,
    runs: Vec<Run>,
    summary: Vec<Summary>,
    latency: Option<Latency>,
    targets: Vec<Target>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn per_row_us(run: &Run, role: &str) -> f64 {
    run.usage.get(role).map_or(0.0, |u| u.cpu_seconds) * 1e6 / run.rows.max(1) as f64
}

fn summarise(runs: &[Run]) -> Vec<Summary> {
    let mut labels: Vec<&str> = Vec::new();
    for r in runs {
        if !labels.contains(&r.label.as_str()) {
            labels.push(&r.label);
        }
    }
    let copy_rate = |round: u32| {
        runs.iter()
            .find(|r| r.round == round && r.stage == Stage::Copy)
            .map(Run::rate)
    };
    labels
        .into_iter()
        .map(|label| {
            let mine: Vec<&Run> = runs.iter().filter(|r| r.label == label).collect();
            let role = client_role(label);
            let rates: Vec<f64> = mine.iter().map(|r| r.rate()).collect();
            let ratios: Vec<f64> = mine
                .iter()
                .filter_map(|r| copy_rate(r.round).map(|c| r.rate() / c))
                .collect();
            Summary {
                label: label.to_owned(),
                rate: median(rates.clone()),
                rate_range: (
                    rates.iter().copied().fold(f64::INFINITY, f64::min),
                    rates.iter().copied().fold(0.0, f64::max),
                ),
                vs_copy: (!ratios.is_empty()).then(|| median(ratios)),
                client_cpu_us_per_row: median(mine.iter().map(|r| per_row_us(r, role)).collect()),
                postgres_cpu_us_per_row: median(
                    mine.iter().map(|r| per_row_us(r, "postgres")).collect(),
                ),
                broker_cpu_us_per_row: median(
                    mine.iter().map(|r| per_row_us(r, "broker")).collect(),
                ),
                peak_rss_mib: mine
                    .iter()
                    .filter_map(|r| r.usage.get(role).map(|u| u.peak_rss_mib))
                    .fold(0.0, f64::max),
            }
        })
        .collect()
}

/// Median over rounds of `a`'s rate divided by `b`'s, both from the same round.
fn paired(runs: &[Run], a: &str, b: &str, f: impl Fn(&Run, &Run) -> f64) -> Option<f64> {
    let v: Vec<f64> = runs
        .iter()
        .filter(|r| r.label == a)
        .filter_map(|ra| {
            runs.iter()
                .find(|rb| rb.label == b && rb.round == ra.round)
                .map(|rb| f(ra, rb))
        })
        .collect();
    (!v.is_empty()).then(|| median(v))
}

fn targets(results: &Results) -> Vec<Target> {
    let runs = &results.runs;
    let mut out = Vec::new();
    let mut check = |target: &str, value: Option<f64>, unit: &str, ok: &dyn Fn(f64) -> bool| {
        out.push(Target {
            target: target.to_owned(),
            measured: value.map_or_else(|| "not measured".to_owned(), |v| format!("{v:.2}{unit}")),
            met: value.map(ok),
        });
    };
    let copy = "copy (raw binary COPY)";
    check(
        "processor end to end >= 0.95 x the consume-only ceiling",
        paired(runs, "processor", "drain (consume only)", |a, b| {
            a.rate() / b.rate()
        }),
        " x",
        &|v| v >= 0.95,
    );
    check(
        "processor write path alone >= 0.8 x raw COPY",
        paired(runs, "sink optimistic", copy, |a, b| a.rate() / b.rate()),
        " x",
        &|v| v >= 0.8,
    );
    check(
        "PostgreSQL CPU per row of the write path <= 1.15 x raw COPY's",
        paired(runs, "sink optimistic", copy, |a, b| {
            per_row_us(a, "postgres") / per_row_us(b, "postgres").max(1e-9)
        }),
        " x",
        &|v| v <= 1.15,
    );
    check(
        "processor CPU per row >= 5 x better than the Python baseline",
        paired(runs, "python baseline", "processor", |a, b| {
            per_row_us(a, "python") / per_row_us(b, "processor").max(1e-9)
        }),
        " x",
        &|v| v >= 5.0,
    );
    check(
        "processor throughput >= 1.5 x the Python baseline (through this broker)",
        paired(runs, "processor", "python baseline", |a, b| {
            a.rate() / b.rate()
        }),
        " x",
        &|v| v >= 1.5,
    );
    check(
        "produce -> visible p99 <= 250 ms",
        results.latency.as_ref().map(|l| l.p99_ms),
        " ms",
        &|v| v <= 250.0,
    );
    let peak = |role: &str| {
        runs.iter()
            .chain(results.load.iter())
            .filter_map(|r| r.usage.get(role).map(|u| u.peak_rss_mib))
            .reduce(f64::max)
    };
    check(
        "processor peak RSS <= 64 MiB",
        peak("processor"),
        " MiB",
        &|v| v <= 64.0,
    );
    check(
        "replay producer peak RSS <= 64 MiB",
        peak("producer"),
        " MiB",
        &|v| v <= 64.0,
    );
    out
}

/// The versions of everything measured.
pub fn versions(sh: &Shell, results: &Results, python: Option<&Path>) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("postgresql".into(), results.postgres.clone());
    v.insert("broker".into(), results.broker.clone());
    v.insert("flightdeck".into(), env!("CARGO_PKG_VERSION").into());
    if let Ok(rustc) = cmd!(sh, "rustc --version").quiet().read() {
        v.insert("rustc".into(), rustc);
    }
    if let Some(python) = python
        && let Ok(version) = cmd!(sh, "{python} --version").quiet().read()
    {
        v.insert("python".into(), version);
        let pins =
            std::fs::read_to_string(crate::project_root().join("xtask/src/bench/requirements.txt"))
                .unwrap_or_default();
        for line in pins.lines() {
            if let Some((name, version)) = line.split_once("==") {
                v.insert(
                    name.trim().into(),
                    version.split_whitespace().next().unwrap_or("").into(),
                );
            }
        }
    }
    v
}

fn machine() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(
        "cores".into(),
        std::thread::available_parallelism()
            .map_or(0, |n| n.get())
            .to_string(),
    );
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if let Some(model) = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
    {
        m.insert("cpu".into(), model.1.trim().to_owned());
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let Some(total) = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")) {
        m.insert("memory".into(), total.trim().to_owned());
    }
    if let Ok(kernel) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        m.insert("kernel".into(), kernel.trim().to_owned());
    }
    m
}

impl Report {
    /// Summarises the results.
    pub fn new(plan: &Plan, results: Results, versions: BTreeMap<String, String>) -> Self {
        let summary = summarise(&results.runs);
        let targets = targets(&results);
        Self {
            machine: machine(),
            versions,
            records: plan.records,
            rounds: plan.rounds,
            batch_size: plan.batch_size,
            stages: plan.stages.clone(),
            load: results.load,
            runs: results.runs,
            summary,
            latency: results.latency,
            targets,
        }
    }

    /// The table printed at the end.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "\nflightdeck bench: {} records, {} round(s), batch {}, {} cores; {}; PostgreSQL {}",
            self.records,
            self.rounds,
            self.batch_size,
            self.machine.get("cores").map_or("?", String::as_str),
            self.versions.get("broker").map_or("?", String::as_str),
            self.versions.get("postgresql").map_or("?", String::as_str),
        );
        let _ = writeln!(
            t,
            "\n| stage | rows/s (median) | min–max | × raw COPY | CPU µs/row (itself) | PostgreSQL µs/row | broker µs/row | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        let load = self
            .load
            .as_ref()
            .map(|r| summarise(std::slice::from_ref(r)));
        for s in load.iter().flatten().chain(&self.summary) {
            let _ = writeln!(
                t,
                "| {} | {:.0} | {:.0}–{:.0} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                s.label,
                s.rate,
                s.rate_range.0,
                s.rate_range.1,
                s.vs_copy
                    .map_or_else(|| "".to_owned(), |v| format!("{v:.2}")),
                s.client_cpu_us_per_row,
                s.postgres_cpu_us_per_row,
                s.broker_cpu_us_per_row,
                s.peak_rss_mib
            );
        }
        if let Some(l) = &self.latency {
            let processor = l
                .usage
                .get("processor-latency")
                .copied()
                .unwrap_or_default();
            let _ = writeln!(
                t,
                "\nlatency, produce → row visible (commit timestamp) at {:.0} records/s, {} records: \
                 p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; processor {:.1} CPU s, peak RSS {:.1} MiB",
                l.rate,
                l.records,
                l.p50_ms,
                l.p99_ms,
                l.max_ms,
                processor.cpu_seconds,
                processor.peak_rss_mib
            );
        }
        let _ = writeln!(t, "\n| target | measured | met |\n|---|---:|---|");
        for target in &self.targets {
            let met = match target.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "–",
            };
            let _ = writeln!(t, "| {} | {} | {met} |", target.target, target.measured);
        }
        t
    }

    /// Writes the JSON report and `latest.json`; returns the report's path.
    pub fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = dir.join(format!("bench-{stamp}.json"));
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, &json).with_context(|| format!("write {}", path.display()))?;
        std::fs::write(dir.join("latest.json"), &json).context("write latest.json")?;
        Ok(path)
    }
}
