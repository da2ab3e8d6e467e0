//! Progress bars and spinners on stderr (indicatif), hidden when stderr is not a terminal or
//! with `--quiet`, so logs and `--json` stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes.
#[derive(Debug, Clone)]
pub struct Progress {
    multi: MultiProgress,
    visible: bool,
    quiet: bool,
}

impl Progress {
    /// Progress on stderr when it is a terminal and `quiet` is off.
    pub fn new(quiet: bool) -> Self {
        let visible = !quiet && std::io::stderr().is_terminal();
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            visible,
            quiet,
        }
    }

    /// Whether bars are drawn.
    pub fn visible(&self) -> bool {
        self.visible
    }

    /// A spinner with `message` (finish it with `finish_and_clear`).
    pub fn spinner(&self, message: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// A bar of `len` steps with `template` (indicatif syntax).
    pub fn bar(&self, len: u64, template: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    }

    /// Prints a line above the bars (or plainly when they are hidden) on stderr; nothing with
    /// `quiet`.
    pub fn println(&self, line: &str) {
        if self.quiet {
            return;
        }
        if self.visible {
            let _ = self.multi.println(line);
        } else {
            eprintln!("{line}");
        }
    }
}
