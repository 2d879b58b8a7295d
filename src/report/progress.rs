//! Progress bars on a terminal, with `indicatif`: one bar for the steps of the current epoch
//! (step, running loss, images/s, ETA of the epoch) above one for the whole run (epochs done,
//! elapsed time, ETA of the run). Bars are drawn only when stderr is a terminal (not
//! `TERM=dumb`) and the user did not ask for `--quiet` ([`wanted`]), coloured unless `NO_COLOR`
//! is set ([`terminal`]); otherwise the binary uses [`LogReporter`]'s plain
//! one-line-per-epoch logs, so CI logs and redirected output hold no control characters.
//!
//! Log lines and bars share stderr: [`LogWriter`] (the tracing subscriber's writer) hides the
//! bars while it writes a line, then redraws them below it.
//!
//! The running loss needs a read from the device, which waits for every queued step; it is
//! read once every [`LOSS_READ_EVERY`] steps, and only while a bar is drawn.

use std::{
    io::{IsTerminal, Write},
};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use tch::{Kind, Tensor};

use super::{EpochMetrics, EvalMetrics, LogReporter, Reporter, TrainStart};
use crate::bars::BARS;

/// Steps between two reads of the running loss from the device.
pub const LOSS_READ_EVERY: usize = 50;

/// Whether to draw progress bars: stderr is a terminal that can move its cursor (not
/// `TERM=dumb`) and `--quiet` was not given.
pub fn wanted(quiet: bool) -> bool {
    !quiet && stderr_terminal().cursor
}

/// What stderr's terminal may be sent, from [`terminal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terminal {
    /// Progress bars (cursor movement): a terminal whose `TERM` is not `dumb`.
    pub cursor: bool,
    /// Colours: a terminal that can move its cursor, and `NO_COLOR` unset or empty
    /// (<https://no-color.org>).
    pub colour: bool,
}

/// The decision of [`Terminal`] from whether the stream is a terminal and the values of
/// `TERM` and `NO_COLOR`.
pub fn terminal(is_terminal: bool, term: Option<&str>, no_color: Option<&str>) -> Terminal {
    let cursor = is_terminal && term != Some("dumb");
    Terminal { cursor, colour: cursor && no_color.is_none_or(str::is_empty) }
}

/// [`terminal`] for this process's stderr and environment.
pub fn stderr_terminal() -> Terminal {
    let var = |name| std::env::var(name).ok();
    terminal(std::io::stderr().is_terminal(), var("TERM").as_deref(), var("NO_COLOR").as_deref())
}

/// Whether the running loss is read after `step` (1-based): every [`LOSS_READ_EVERY`] steps,
/// and never when no bar is drawn.
fn reads_loss_after(step: usize, drawn: bool) -> bool {
    drawn && step.is_multiple_of(LOSS_READ_EVERY)
}

/// The `tracing` subscriber's writer for stderr: writes each log line with the bars hidden.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        BARS.suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

/// Progress bars for training, plus [`LogReporter`]'s epoch lines printed above them.
#[derive(Debug)]
pub struct ProgressReporter {
    log: LogReporter,
    steps: ProgressBar,
    run: ProgressBar,
    steps_per_epoch: u64,
    first_epoch: u64,
    drawn: bool,
    /// The current epoch, and its first step in this process (later than 1 after a resume).
    epoch: u64,
    first_step: Option<usize>,
}

impl Default for ProgressReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressReporter {
    /// Bars on stderr; they appear at the start of training.
    pub fn new() -> ProgressReporter {
        ProgressReporter {
            log: LogReporter,
            steps: ProgressBar::hidden(),
            run: ProgressBar::hidden(),
            steps_per_epoch: 1,
            first_epoch: 1,
            drawn: false,
            epoch: 1,
            first_step: None,
        }
    }

    fn clear(&mut self) {
        for bar in [&self.steps, &self.run] {
            bar.finish_and_clear();
            BARS.remove(bar);
        }
    }
}

impl Reporter for ProgressReporter {
    fn train_start(&mut self, s: &TrainStart) {
        self.clear();
        let batch_size = s.batch_size as f64;
        let colour = stderr_terminal().colour;
        let bar = |colours: &str| if colour { format!("{{wide_bar:{colours}}}") } else { "{wide_bar}".to_string() };
        let step_style = ProgressStyle::with_template(&format!(
            "{{prefix:>11}} {} {{pos:>5}}/{{len}} steps  loss {{msg:6}}  {{ips:>11}}  ETA {{eta:>3}}",
            bar(".cyan/blue")
        ))
        .expect("the step bar template is valid")
        .with_key("ips", move |st: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} img/s", st.per_sec() * batch_size);
        })
        .progress_chars("=> ");
        let steps_per_epoch = s.steps_per_epoch.max(1) as u64;
        let (first, last) = (s.first_epoch as u64, s.epochs as u64);
        let run_style = ProgressStyle::with_template(&format!(
            "{{prefix:>11}} {} {{done:>11}} epochs  {{elapsed:>3}} elapsed  ETA {{eta:>3}}",
            bar(".green/white")
        ))
            .expect("the run bar template is valid")
            .with_key("done", move |st: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/{}", first - 1 + st.pos() / steps_per_epoch, last);
            })
            .progress_chars("=> ");
        let epochs_left = (last + 1).saturating_sub(first);
        (self.steps_per_epoch, self.first_epoch, self.drawn) = (steps_per_epoch, first, !BARS.is_hidden());
        self.steps = BARS.add(ProgressBar::new(steps_per_epoch).with_style(step_style).with_message("-"));
        self.run = BARS.add(ProgressBar::new(epochs_left * steps_per_epoch).with_style(run_style).with_prefix("run"));
    }

    fn epoch_start(&mut self, epoch: usize, _lr: f64) {
        (self.epoch, self.first_step) = (epoch as u64, None);
        self.steps.reset();
        self.steps.set_message("-");
        self.steps.set_prefix(format!("epoch {epoch}"));
    }

    fn step_end(&mut self, step: usize, losses: &Tensor) {
        let first = *self.first_step.get_or_insert(step);
        self.steps.set_position(step as u64);
        self.run.set_position((self.epoch - self.first_epoch) * self.steps_per_epoch + step as u64);
        if reads_loss_after(step, self.drawn) {
            // The mean of this epoch's losses so far (those of this process, after a resume).
            let done = losses.f_narrow(0, first as i64 - 1, (step + 1 - first) as i64);
            let mean = done.and_then(|l| l.f_mean(Kind::Float)).and_then(|m| m.f_double_value(&[]));
            if let Ok(loss) = mean {
                self.steps.set_message(format!("{loss:.4}"));
            }
        }
    }

    fn epoch_end(&mut self, m: &EpochMetrics) {
        self.log.epoch_end(m);
        // Keeps the run bar exact whatever the steps told (a shorter last epoch, skipped calls).
        self.run.set_position((m.epoch as u64 + 1).saturating_sub(self.first_epoch) * self.steps_per_epoch);
    }

    fn validated(&mut self, epoch: usize, m: &EvalMetrics) {
        self.log.validated(epoch, m);
    }

    fn evaluated(&mut self, epoch: usize, m: &EvalMetrics) {
        self.log.evaluated(epoch, m);
    }

    fn train_end(&mut self) {
        self.clear();
    }
}

impl Drop for ProgressReporter {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_and_term_dumb_are_honoured() {
        let on = Terminal { cursor: true, colour: true };
        assert_eq!(terminal(true, Some("xterm-256color"), None), on);
        assert_eq!(terminal(true, None, Some("")), on, "an empty NO_COLOR does not count");
        assert_eq!(terminal(true, Some("xterm"), Some("1")), Terminal { cursor: true, colour: false });
        assert_eq!(terminal(true, Some("dumb"), None), Terminal { cursor: false, colour: false });
        assert_eq!(terminal(false, Some("xterm"), None), Terminal { cursor: false, colour: false });
    }

    #[test]
    fn loss_is_read_every_fifty_steps_and_only_when_drawn() {
        let reads: Vec<usize> = (1..=200).filter(|&s| reads_loss_after(s, true)).collect();
        assert_eq!(reads, [50, 100, 150, 200]);
        assert!((1..=200).all(|s| !reads_loss_after(s, false)));
    }

    #[test]
    fn the_running_loss_is_read_only_when_drawn() {
        let mut r = ProgressReporter::new();
        let start = TrainStart { first_epoch: 1, last_record: None, epochs: 2, steps_per_epoch: 100, batch_size: 10, train_images: 1000, device: "cpu".into() };
        r.train_start(&start);
        r.epoch_start(1, 0.1);
        let losses = Tensor::zeros([100], (Kind::Float, tch::Device::Cpu));
        for step in 1..=100 {
            r.step_end(step, &losses);
        }
        // Unless the tests' stderr is a terminal, the bars are hidden and nothing was read.
        assert_eq!(r.steps.message() == "-", BARS.is_hidden(), "{}", r.steps.message());
        assert_eq!(r.steps.position(), 100);
    }
}
