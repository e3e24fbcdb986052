//! Progress reporting for long admin commands: a progress bar on a
//! terminal, periodic log lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use wharf_storage::Progress;

pub(crate) struct Reporter {
    bar: Option<ProgressBar>,
    what: &'static str,
    last_log: Instant,
}

impl Reporter {
    pub(crate) fn new(what: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(what);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Reporter {
            bar,
            what,
            last_log: Instant::now(),
        }
    }

    pub(crate) fn update(&mut self, p: &Progress) {
        let msg = format!("{} {} items, {} bytes", p.phase, p.done, p.bytes);
        match &self.bar {
            Some(bar) => bar.set_message(msg),
            None => {
                if self.last_log.elapsed() >= Duration::from_secs(5) {
                    self.last_log = Instant::now();
                    tracing::info!(command = self.what, "{msg}");
                }
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
