//! Live progress on standard error: a status line redrawn in place on a terminal, one plain
//! line per interval otherwise (logs, CI), nothing unless asked for.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug)]
pub enum Progress {
    Off,
    Lines,
    Bar(ProgressBar),
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        if !enabled {
            return Progress::Off;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines;
        }
        let bar = ProgressBar::new_spinner();
        let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress::Bar(bar)
    }

    pub fn enabled(&self) -> bool {
        !matches!(self, Progress::Off)
    }

    /// Shows the status of the latest interval.
    pub fn show(&self, line: String) {
        match self {
            Progress::Off => {}
            Progress::Lines => eprintln!("{line}"),
            Progress::Bar(bar) => bar.set_message(line),
        }
    }

    /// Removes the live line before the report is printed.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
