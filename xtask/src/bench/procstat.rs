//! CPU seconds and peak memory of the bench's processes, read from `/proc`.
//!
//! A background thread samples every watched process and its descendants (PostgreSQL's
//! backends are children of the postmaster) every [`INTERVAL`]. A stage's CPU time is what
//! each process accumulated between the stage's [`Mark`] and its end; a process that exits
//! loses at most one interval, so the bench keeps its short-lived workers alive a moment
//! after their work. Peak memory is the kernel's high-water mark (`VmHWM`) for processes
//! started within the stage, and the largest sampled `VmRSS` for the long-lived servers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the sampler reads `/proc`.
const INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Default)]
struct Process {
    role: String,
    /// utime + stime, in clock ticks, at the last sample.
    ticks: u64,
    /// `VmHWM` at the last sample, KiB.
    hwm_kib: u64,
    /// Largest `VmRSS` seen since the last [`Sampler::mark`], KiB.
    max_rss_kib: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Watched roots: pid → role.
    roots: BTreeMap<u32, String>,
    /// Every process seen: pid → its figures.
    seen: BTreeMap<u32, Process>,
}

/// The sampler; stops when dropped.
pub struct Sampler {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    ticks_per_second: f64,
}

/// What every process had accumulated at the start of a stage.
#[derive(Debug, Clone)]
pub struct Mark {
    ticks: BTreeMap<u32, u64>,
}

/// One role's share of a stage.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    /// CPU seconds (user + system).
    pub cpu_seconds: f64,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: f64,
}

impl Sampler {
    /// Starts sampling (nothing is watched yet).
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, flag) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                sample(&s);
                std::thread::sleep(INTERVAL);
            }
        });
        Self {
            state,
            stop,
            ticks_per_second: clock_ticks(),
        }
    }

    /// Watches `pid` and its descendants under `role`.
    pub fn watch(&self, role: &str, pid: u32) {
        if let Ok(mut s) = self.state.lock() {
            s.roots.insert(pid, role.to_owned());
        }
        sample(&self.state);
    }

    /// Samples now, then notes where every process stands.
    pub fn mark(&self) -> Mark {
        sample(&self.state);
        let Ok(mut s) = self.state.lock() else {
            return Mark {
                ticks: BTreeMap::new(),
            };
        };
        for p in s.seen.values_mut() {
            p.max_rss_kib = 0;
        }
        Mark {
            ticks: s.seen.iter().map(|(pid, p)| (*pid, p.ticks)).collect(),
        }
    }

    /// Samples now, then sums each role's usage since `mark`.
    pub fn since(&self, mark: &Mark) -> BTreeMap<String, Usage> {
        sample(&self.state);
        let mut out: BTreeMap<String, Usage> = BTreeMap::new();
        let Ok(s) = self.state.lock() else {
            return out;
        };
        for (pid, p) in &s.seen {
            let usage = out.entry(p.role.clone()).or_default();
            let before = mark.ticks.get(pid).copied().unwrap_or(0);
            usage.cpu_seconds += p.ticks.saturating_sub(before) as f64 / self.ticks_per_second;
            // Born within the stage: its whole life's peak; else the stage's largest sample.
            let peak = if mark.ticks.contains_key(pid) {
                p.max_rss_kib
            } else {
                p.hwm_kib
            };
            usage.peak_rss_mib = usage.peak_rss_mib.max(peak as f64 / 1024.0);
        }
        out
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn sample(state: &Mutex<State>) {
    // Parent links of every process, to find descendants of the roots.
    let mut parent: BTreeMap<u32, u32> = BTreeMap::new();
    let mut stats: BTreeMap<u32, u64> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses and may hold spaces.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        if let (Some(ppid), Some(utime), Some(stime)) = (field(4), field(14), field(15)) {
            parent.insert(pid, ppid as u32);
            stats.insert(pid, utime + stime);
        }
    }
    let Ok(mut s) = state.lock() else {
        return;
    };
    for (&pid, &ticks) in &stats {
        let mut role = None;
        let mut at = pid;
        for _ in 0..16 {
            if let Some(r) = s.roots.get(&at) {
                role = Some(r.clone());
                break;
            }
            match parent.get(&at) {
                Some(&p) if p > 1 => at = p,
                _ => break,
            }
        }
        let Some(role) = role else { continue };
        let (hwm, rss) = memory(pid);
        let p = s.seen.entry(pid).or_default();
        p.role = role;
        p.ticks = p.ticks.max(ticks);
        p.hwm_kib = p.hwm_kib.max(hwm);
        p.max_rss_kib = p.max_rss_kib.max(rss);
    }
}

/// `VmHWM` and `VmRSS` of a process, KiB (0 once it has exited).
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kib("VmHWM:"), kib("VmRSS:"))
}

/// Clock ticks per second of `/proc/*/stat` times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
