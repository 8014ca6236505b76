//! How `up` shows the components it waits for: one live line per component on a
//! terminal ([`Bars`]), one printed line per change elsewhere, such as CI logs ([`Lines`]).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::status::{ComponentId, Phase, State};

/// Receives every state change and a regular tick while `up` waits.
pub trait Progress: Send {
    /// `id` is now in `state`, `elapsed` after the wait began.
    fn changed(&mut self, id: &ComponentId, state: &State, elapsed: Duration);
    /// Called about once a second with the components not ready yet.
    fn tick(&mut self, waiting: &[&ComponentId], elapsed: Duration);
    /// The wait is over; `message` says how it ended.
    fn finish(&mut self, message: &str);
}

/// Bars on a terminal, lines otherwise.
pub fn for_stderr() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars::new())
    } else {
        Box::new(Lines::new(std::io::stderr()))
    }
}

/// `1m05s`, `12s`.
pub fn elapsed(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

fn mark(phase: Phase) -> &'static str {
    match phase {
        Phase::Ready => "ready",
        Phase::Failing => "FAILING",
        Phase::Progressing => "waiting",
        Phase::Missing => "missing",
    }
}

/// Plain lines: one per change, and a reminder of what is left every 30 seconds.
pub struct Lines<W> {
    out: W,
    next_reminder: Duration,
}

impl<W: Write + Send> Lines<W> {
    /// Lines written to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            next_reminder: Duration::from_secs(30),
        }
    }

    /// What was written (for tests).
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write + Send> Progress for Lines<W> {
    fn changed(&mut self, id: &ComponentId, state: &State, elapsed: Duration) {
        let _ = writeln!(
            self.out,
            "[{:>6}] {id}: {} ({})",
            self::elapsed(elapsed),
            mark(state.phase),
            state.summary
        );
        for condition in &state.conditions {
            let _ = writeln!(self.out, "           {condition}");
        }
    }

    fn tick(&mut self, waiting: &[&ComponentId], elapsed: Duration) {
        if elapsed < self.next_reminder || waiting.is_empty() {
            return;
        }
        self.next_reminder = elapsed + Duration::from_secs(30);
        let names: Vec<String> = waiting.iter().map(|id| id.to_string()).collect();
        let _ = writeln!(
            self.out,
            "[{:>6}] waiting for {}: {}",
            self::elapsed(elapsed),
            waiting.len(),
            names.join(", ")
        );
    }

    fn finish(&mut self, message: &str) {
        let _ = writeln!(self.out, "{message}");
    }
}

/// One spinner line per component and a total line with the elapsed time.
pub struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    rows: BTreeMap<ComponentId, ProgressBar>,
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::new();
        let total = multi.add(ProgressBar::new_spinner());
        total.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        total.enable_steady_tick(Duration::from_millis(200));
        Self {
            multi,
            total,
            rows: BTreeMap::new(),
        }
    }

    fn row(&mut self, id: &ComponentId) -> &ProgressBar {
        let multi = &self.multi;
        self.rows.entry(id.clone()).or_insert_with(|| {
            let row = multi.add(ProgressBar::new_spinner());
            row.set_style(
                ProgressStyle::with_template("  {prefix:<44} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            row.set_prefix(id.to_string());
            row
        })
    }
}

impl Progress for Bars {
    fn changed(&mut self, id: &ComponentId, state: &State, _elapsed: Duration) {
        let mut message = format!("{:<8} {}", mark(state.phase), state.summary);
        if let Some(first) = state.conditions.first() {
            message.push_str(&format!(" — {first}"));
        }
        self.row(id).set_message(message);
    }

    fn tick(&mut self, waiting: &[&ComponentId], _elapsed: Duration) {
        let total = self.rows.len().max(waiting.len());
        self.total.set_message(format!(
            "{} of {total} components ready",
            total - waiting.len()
        ));
    }

    fn finish(&mut self, message: &str) {
        for row in self.rows.values() {
            row.finish();
        }
        self.total.finish_with_message(message.to_owned());
    }
}
