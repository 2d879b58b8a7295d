//! The process's one set of progress bars on stderr (`indicatif`'s `MultiProgress`): training's
//! bars ([`crate::report::progress`]) and a download's bar ([`bytes_bar`]) are drawn together,
//! and log lines are written with the bars hidden (`report::progress::LogWriter`). A module of
//! its own, below both `data` and `report`, so neither imports the other for it.

use std::sync::LazyLock;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Every bar of the process, drawn on stderr (hidden when stderr is not a terminal).
pub(crate) static BARS: LazyLock<MultiProgress> = LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// A bar counting `total` units of work (`eval --corruptions`: one test set each), in the
/// process's one bar set, hidden unless `show`.
pub fn count_bar(total: u64, message: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{msg} [{bar:30.cyan/blue}] {pos}/{len}  {elapsed} (ETA {eta})")
            .expect("the count bar template is valid")
            .progress_chars("=> "),
    );
    BARS.add(bar.with_message(message.to_string()))
}

/// A bar for a transfer of `total` bytes (a download; `None` until the size is known, then
/// `set_length`), in the process's one bar set, hidden unless `show`.
pub fn bytes_bar(total: Option<u64>, message: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::no_length().with_style(
        ProgressStyle::with_template(if crate::report::progress::stderr_terminal().colour {
            "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes}  {bytes_per_sec}  ETA {eta}"
        } else {
            "{msg} [{bar:30}] {bytes}/{total_bytes}  {bytes_per_sec}  ETA {eta}"
        })
            .expect("the download bar template is valid")
            .progress_chars("=> "),
    );
    if let Some(n) = total {
        bar.set_length(n);
    }
    BARS.add(bar.with_message(message.to_string()))
}
