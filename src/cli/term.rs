//! Terminal progress: indicatif bars, shown only when stderr is a terminal and not `--quiet`.
//! One bar per table (rows, rows/s, ETA from the catalog's estimate when it has one).

use std::cell::RefCell;
use std::io::IsTerminal;

use dbfixtures::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bars {
    multi: MultiProgress,
    current: RefCell<Option<ProgressBar>>,
}

impl Bars {
    /// Bars on stderr when it is a terminal and output is not silenced; otherwise None.
    pub fn for_stderr(quiet: bool) -> Option<Bars> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            current: RefCell::new(None),
        })
    }
}

impl Progress for Bars {
    fn table_started(&self, table: &str, estimate: Option<u64>) {
        let bar = match estimate.filter(|&n| n > 0) {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{prefix:>24.bold} [{bar:30}] {human_pos}/~{human_len} rows {per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix:>24.bold} {spinner} {human_pos} rows {per_sec}")
                    .expect("valid template"),
            ),
        };
        bar.set_prefix(table.to_string());
        *self.current.borrow_mut() = Some(self.multi.add(bar));
    }

    fn rows(&self, rows: u64) {
        if let Some(b) = self.current.borrow().as_ref() {
            b.inc(rows);
        }
    }

    fn table_finished(&self, table: &str, rows: u64) {
        if let Some(b) = self.current.borrow_mut().take() {
            // The estimate was only an estimate: end the bar at the true count.
            b.set_length(rows);
            b.set_position(rows);
            b.finish_and_clear();
            let _ = self.multi.println(format!("{table:>24} {rows} rows"));
        }
    }

    fn message(&self, text: &str) {
        let _ = self.multi.println(text);
    }
}
