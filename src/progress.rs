//! How `im-server import` shows where it is: a progress bar per table when standard error is a
//! terminal (indicatif), plain lines every few seconds when it goes to a log, where a bar's
//! redraws would be noise; and the final report, a table of rows per table and a list of what
//! was skipped or mended.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::domain::import::{ImportReport, Progress};

/// A bar per table, on standard error.
#[derive(Default)]
pub struct Bar {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bar {
    fn with<T>(&self, f: impl FnOnce(&mut Option<ProgressBar>) -> T) -> T {
        let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut bar)
    }
}

impl Progress for Bar {
    fn start(&self, table: &'static str, total: u64) {
        let bar = ProgressBar::new(total);
        let style = ProgressStyle::with_template(
            "{prefix:>14} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(table);
        self.with(|slot| *slot = Some(bar));
    }

    fn advance(&self, rows: u64) {
        self.with(|slot| {
            if let Some(bar) = slot {
                bar.inc(rows);
            }
        });
    }

    fn finish(&self, _: &'static str) {
        self.with(|slot| {
            if let Some(bar) = slot.take() {
                bar.finish();
            }
        });
    }

    fn step(&self, what: &'static str) {
        eprintln!("{what:>14} ...");
    }
}

/// Lines on standard error: one when a table begins, one every [`Lines::EVERY`] within it, one
/// when it ends.
#[derive(Default)]
pub struct Lines {
    state: Mutex<LineState>,
}

#[derive(Default)]
struct LineState {
    table: &'static str,
    total: u64,
    done: u64,
    started: Option<Instant>,
    said: Option<Instant>,
}

impl Lines {
    const EVERY: Duration = Duration::from_secs(5);

    fn with<T>(&self, f: impl FnOnce(&mut LineState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }
}

impl Progress for Lines {
    fn start(&self, table: &'static str, total: u64) {
        self.with(|state| {
            *state = LineState {
                table,
                total,
                done: 0,
                started: Some(Instant::now()),
                said: Some(Instant::now()),
            };
        });
        eprintln!("import: {table}: {total} rows to read");
    }

    fn advance(&self, rows: u64) {
        self.with(|state| {
            state.done += rows;
            if state.said.is_some_and(|said| said.elapsed() >= Self::EVERY) {
                state.said = Some(Instant::now());
                let percent = (state.done * 100).checked_div(state.total).unwrap_or(100);
                eprintln!(
                    "import: {}: {}/{} ({percent}%)",
                    state.table, state.done, state.total
                );
            }
        });
    }

    fn finish(&self, table: &'static str) {
        let (done, secs) = self.with(|state| {
            (
                state.done,
                state.started.map_or(0.0, |s| s.elapsed().as_secs_f64()),
            )
        });
        eprintln!("import: {table}: {done} rows read in {secs:.1} s");
    }

    fn step(&self, what: &'static str) {
        eprintln!("import: {what}");
    }
}

/// The report printed at the end of an import.
pub fn render_report(from: &str, report: &ImportReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nimport from {from}{}",
        if report.dry_run {
            " (dry run: rolled back, nothing written)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "{:<14} {:>10} {:>10} {:>8} {:>8}",
        "table", "read", "written", "mended", "skipped"
    );
    for t in &report.tables {
        let _ = writeln!(
            out,
            "{:<14} {:>10} {:>10} {:>8} {:>8}",
            t.table, t.read, t.written, t.mended, t.skipped
        );
    }
    if report.issues.is_empty() {
        let _ = writeln!(out, "\nevery row imported as it was");
    } else {
        let _ = writeln!(out, "\nnot imported as they were (the original's ids):");
        for issue in &report.issues {
            let examples = issue
                .examples
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let more = if issue.count > issue.examples.len() as u64 {
                ", …"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {}: {} {} — {} (e.g. {examples}{more})",
                issue.table,
                issue.count,
                if issue.skipped { "skipped" } else { "mended" },
                issue.what,
            );
        }
    }
    if report.replaced_admin {
        let _ = writeln!(
            out,
            "\nthe bootstrap `admin` of the first start was replaced by the imported users"
        );
    }
    let secs = report.elapsed.as_secs_f64();
    let messages = report.messages_written();
    let _ = writeln!(
        out,
        "{messages} messages in {secs:.1} s ({:.0} messages/s)",
        if secs > 0.0 {
            messages as f64 / secs
        } else {
            0.0
        }
    );
    out
}
