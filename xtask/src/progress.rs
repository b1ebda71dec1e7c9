//! Progress bars: the one place that draws them (libraries only report through
//! `search_core::Progress`).

use std::sync::Arc;

use bench_runner::ProgressFactory;
use indicatif::{ProgressBar, ProgressStyle};
use search_core::Progress;

/// A progress bar that clears itself when dropped.
pub struct Bar(ProgressBar);

impl Progress for Bar {
    fn set_total(&self, total: u64) {
        self.0.set_length(total);
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// A bar for `prefix` counting `unit`s; hidden when `quiet`.
pub fn bar(quiet: bool, prefix: &str, unit: &str) -> Bar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix:>8}} [{{bar:40.cyan/blue}}] {{pos}}/{{len}} {unit} ({{elapsed}}, eta {{eta}})"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_owned());
    Bar(bar)
}

/// One bar per engine build, for `bench_runner::RunOptions::progress`.
pub fn build_bars() -> ProgressFactory {
    Arc::new(|engine: &str| Box::new(bar(false, engine, "rows")) as Box<dyn Progress>)
}
