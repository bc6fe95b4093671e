//! Progress on long runs: a bar on stderr when stderr is a terminal,
//! nothing otherwise (pipes, files and CI logs stay clean).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar for one reading of the log. Clones share the bar.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar labelled `what`, drawn only when stderr is a terminal.
    pub fn new(what: &str) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_message(what.to_owned());
        Self { bar }
    }

    /// A bar that draws nothing.
    pub fn hidden() -> Self {
        Self {
            bar: ProgressBar::hidden(),
        }
    }

    /// Starts counting towards about `estimate` records (0: unknown).
    pub fn start(&self, estimate: u64) {
        let style = if estimate > 0 {
            self.bar.set_length(estimate);
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {human_pos}/{human_len} records, {per_sec}, {eta} left",
            )
        } else {
            ProgressStyle::with_template("{spinner} {msg}: {human_pos} records, {per_sec}")
        };
        if let Ok(style) = style {
            self.bar.set_style(style.progress_chars("=> "));
        }
    }

    pub fn advance(&self, records: u64) {
        self.bar.inc(records);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
