//! Terminal progress: indicatif bars, shown only when stderr is a terminal and not `--quiet`.
//! One bar per table (rows, rows/s, ETA from the catalog's estimate when it has one); a finished
//! table's bar stays on screen with its true row count, as a per-table summary.

use std::cell::RefCell;
use std::io::IsTerminal;

use dbfixtures::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bars {
    current: RefCell<Option<ProgressBar>>,
}

impl Bars {
    /// Bars on stderr when it is a terminal and output is not silenced; otherwise None.
    pub fn for_stderr(quiet: bool) -> Option<Bars> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Bars {
            current: RefCell::new(None),
        })
    }
}

impl Progress for Bars {
    fn table_started(&self, table: &str, estimate: Option<u64>) {
        let style = match estimate.filter(|&n| n > 0) {
            Some(_) => ProgressStyle::with_template(
                "{prefix:>28.bold} [{bar:30}] {human_pos}/{human_len} rows {per_sec:0} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
            None => ProgressBar::new_spinner().style().clone(),
        };
        let bar = ProgressBar::with_draw_target(estimate, ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(table.to_string());
        *self.current.borrow_mut() = Some(bar);
    }

    fn rows(&self, rows: u64) {
        if let Some(b) = self.current.borrow().as_ref() {
            b.inc(rows);
        }
    }

    fn table_finished(&self, table: &str, rows: u64) {
        if let Some(b) = self.current.borrow_mut().take() {
            // The estimate was only an estimate: end the bar at the true count.
            b.set_style(
                ProgressStyle::with_template("{prefix:>28.bold} {msg}").expect("valid template"),
            );
            b.finish_with_message(count(rows, "row"));
        } else {
            eprintln!("{table:>28} {}", count(rows, "row"));
        }
    }

    fn message(&self, text: &str) {
        eprintln!("{text}");
    }

    fn note(&self, text: &str) {
        self.message(text);
    }
}

/// Without bars (stderr is not a terminal): only the notes, one line each.
pub struct NotesOnly;

impl Progress for NotesOnly {
    fn note(&self, text: &str) {
        eprintln!("{text}");
    }
}

/// `1 row`, `2 rows`, `0 rows`: every count in a message agrees with its noun. The nouns used
/// (row, table, file, sequence) all take a plain `s`.
pub(crate) fn count(n: impl TryInto<u64>, noun: &str) -> String {
    let n: u64 = n.try_into().unwrap_or(u64::MAX);
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(super::count(0u64, "row"), "0 rows");
        assert_eq!(super::count(1usize, "table"), "1 table");
        assert_eq!(super::count(2u64, "file"), "2 files");
    }
}
