//! Where a run's figures go. The training loop reports through [`Reporter`]; the binary shows
//! them as progress bars on a terminal ([`progress::ProgressReporter`]) or as one log line per
//! epoch otherwise ([`LogReporter`]), the run directory keeps them ([`metrics::MetricsLog`]:
//! `metrics.jsonl`, `summary.json`) and draws them ([`chart`]: `curves.png`), and tests collect
//! them in memory ([`MemoryReporter`]).

pub mod chart;
pub mod escape;
pub mod metrics;
pub mod progress;
pub mod steps;
pub mod tensorboard;
mod text;

use std::{fmt::Write, path::PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

pub use escape::escape_control;
pub use metrics::{EpochRecord, Summary};

/// Figures of one training epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// Mean over steps of the batch-mean training loss (the reference's `running_loss / len(trainloader)`).
    pub train_loss: f64,
    /// Fraction of training images classified right during the epoch (before each step's update).
    pub train_acc: f64,
    /// Wall-clock seconds of the epoch's training steps.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_sec: f64,
    /// Every step's loss, in order (kept for parity checks; not logged).
    #[serde(skip)]
    pub step_losses: Vec<f32>,
}

/// Loss and accuracy on one split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Mean over batches of the batch-mean cross-entropy.
    pub loss: f64,
    /// Fraction of images whose argmax logit is the label.
    pub accuracy: f64,
    /// Accuracy of each class, indexed by label (NaN-free: a class with no image gets 0).
    pub per_class_accuracy: Vec<f64>,
    /// Images evaluated.
    pub images: usize,
}

/// What a run is about to do, told to reporters once before the first epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainStart {
    /// The first epoch to train (1, or later for a resumed run).
    pub first_epoch: usize,
    /// A resumed run: the `metrics.jsonl` line of the last epoch done, as the checkpoint keeps
    /// it (the file may have lost it to a kill).
    pub last_record: Option<EpochRecord>,
    /// The last epoch.
    pub epochs: usize,
    /// SGD steps per epoch.
    pub steps_per_epoch: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Training images per epoch.
    pub train_images: usize,
    /// The device, as PyTorch names it (`cpu`, `cuda:0`).
    pub device: String,
}

/// Receives a run's figures as they are produced. Every method does nothing by default.
///
/// The calls of a run: `train_start`, then per epoch `epoch_start`, `step_end` per step,
/// `epoch_end`, then `validated` and `evaluated` when those happen after the epoch; finally
/// `train_end`.
pub trait Reporter {
    /// Once, before the first epoch.
    fn train_start(&mut self, _s: &TrainStart) {}
    /// Before each epoch's first step, with the learning rate of the epoch.
    fn epoch_start(&mut self, _epoch: usize, _lr: f64) {}
    /// After each step (`step` is 1-based). `losses` holds the epoch's per-step losses on the
    /// training device, filled from the epoch's first `step_end` (step 1, or later when a run
    /// resumes mid-epoch) up to `step`. Reading it waits for the device to finish every queued
    /// step, so an implementation reads it rarely (the loop itself never does per step).
    fn step_end(&mut self, _step: usize, _losses: &Tensor) {}
    /// After each epoch's training steps.
    fn epoch_end(&mut self, _m: &EpochMetrics) {}
    /// After each evaluation on the validation split, with the epoch it followed.
    fn validated(&mut self, _epoch: usize, _m: &EvalMetrics) {}
    /// After each evaluation on the test set, with the epoch it followed.
    fn evaluated(&mut self, _epoch: usize, _m: &EvalMetrics) {}
    /// Before the final test evaluation (reported as `evaluated(last, ..)`), when early
    /// stopping restored the weights of an earlier epoch, `weights_epoch`: the model the run
    /// ends with, and the final test figures measure.
    fn weights_restored(&mut self, _last: usize, _weights_epoch: usize) {}
    /// A fine-tuning run, before its first epoch: the starting model on the test set (epoch 0),
    /// and the first epoch's learning rate. By default, reported as an evaluation at epoch 0.
    fn before_training(&mut self, m: &EvalMetrics, _lr: f64) {
        self.evaluated(0, m);
    }
    /// Once, after the final evaluation.
    fn train_end(&mut self) {}
}

/// Logs each epoch and evaluation at `info` level on stderr.
#[derive(Debug, Default)]
pub struct LogReporter;

impl Reporter for LogReporter {
    fn epoch_end(&mut self, m: &EpochMetrics) {
        tracing::info!(
            "epoch {:>3}  lr {:.0e}  train loss {:.4}  train acc {:>6.2}%  {:.2} s  {:.0} img/s",
            m.epoch, m.lr, m.train_loss, 100.0 * m.train_acc, m.seconds, m.images_per_sec
        );
    }

    fn validated(&mut self, epoch: usize, m: &EvalMetrics) {
        tracing::info!("epoch {epoch:>3}  val loss {:.4}  val acc {:.2}%", m.loss, 100.0 * m.accuracy);
    }

    fn evaluated(&mut self, epoch: usize, m: &EvalMetrics) {
        tracing::info!("epoch {epoch:>3}  test loss {:.4}  test acc {:.2}%", m.loss, 100.0 * m.accuracy);
    }
}

/// Keeps every figure in memory (for tests and library users).
#[derive(Debug, Default)]
pub struct MemoryReporter {
    /// Every epoch's figures, in order.
    pub epochs: Vec<EpochMetrics>,
    /// Every validation, with the epoch it followed.
    pub validations: Vec<(usize, EvalMetrics)>,
    /// Every evaluation, with the epoch it followed.
    pub evals: Vec<(usize, EvalMetrics)>,
}

impl Reporter for MemoryReporter {
    fn epoch_end(&mut self, m: &EpochMetrics) {
        self.epochs.push(m.clone());
    }

    fn validated(&mut self, epoch: usize, m: &EvalMetrics) {
        self.validations.push((epoch, m.clone()));
    }

    fn evaluated(&mut self, epoch: usize, m: &EvalMetrics) {
        self.evals.push((epoch, m.clone()));
    }
}

/// Passes every call to each reporter in turn.
pub struct Fanout<'a>(pub Vec<&'a mut dyn Reporter>);

impl Reporter for Fanout<'_> {
    fn train_start(&mut self, s: &TrainStart) {
        self.0.iter_mut().for_each(|r| r.train_start(s));
    }
    fn epoch_start(&mut self, epoch: usize, lr: f64) {
        self.0.iter_mut().for_each(|r| r.epoch_start(epoch, lr));
    }
    fn step_end(&mut self, step: usize, losses: &Tensor) {
        self.0.iter_mut().for_each(|r| r.step_end(step, losses));
    }
    fn epoch_end(&mut self, m: &EpochMetrics) {
        self.0.iter_mut().for_each(|r| r.epoch_end(m));
    }
    fn validated(&mut self, epoch: usize, m: &EvalMetrics) {
        self.0.iter_mut().for_each(|r| r.validated(epoch, m));
    }
    fn evaluated(&mut self, epoch: usize, m: &EvalMetrics) {
        self.0.iter_mut().for_each(|r| r.evaluated(epoch, m));
    }
    fn weights_restored(&mut self, last: usize, weights_epoch: usize) {
        self.0.iter_mut().for_each(|r| r.weights_restored(last, weights_epoch));
    }
    fn before_training(&mut self, m: &EvalMetrics, lr: f64) {
        self.0.iter_mut().for_each(|r| r.before_training(m, lr));
    }
    fn train_end(&mut self) {
        self.0.iter_mut().for_each(|r| r.train_end());
    }
}

/// The final result, as `train` prints it on stdout (all that `--quiet` prints): the overall
/// test accuracy and loss in the reference program's words, then the accuracy of each class.
pub fn result_table(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Accuracy of the network on the {} test images: {:.2} %", s.test_images, 100.0 * s.test_acc);
    let _ = writeln!(out, "Test loss: {:.4}", s.test_loss);
    if let Some(before) = s.before_test_acc {
        let _ = writeln!(out, "Fine-tuning: test accuracy {:.2} % before -> {:.2} % after", 100.0 * before, 100.0 * s.test_acc);
    }
    let names: Vec<_> = s.classes.iter().map(|c| escape_control(c)).collect(); // names come from files
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max("class".len());
    let _ = writeln!(out, "\n{:width$}  accuracy", "class");
    for (name, acc) in names.iter().zip(&s.per_class_accuracy) {
        let _ = writeln!(out, "{name:width$}  {:>6.1} %", 100.0 * acc);
    }
    out
}

/// How the run went and where its files are, printed after [`result_table`] unless `--quiet`.
pub fn run_table(s: &Summary, run_dir: &std::path::Path, artifacts: &[PathBuf]) -> String {
    let names: Vec<String> =
        artifacts.iter().map(|p| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())).collect();
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(out, "epochs     {} on {}", s.epochs, s.device);
    let _ = writeln!(out, "per epoch  {:.2} s ({:.0} images/s)", s.seconds_per_epoch, s.images_per_sec);
    let _ = writeln!(out, "total      {:.1} s", s.total_seconds);
    let _ = writeln!(out, "run        {}/", escape_control(&run_dir.display().to_string()));
    let _ = writeln!(out, "files      {}", names.join("  "));
    out
}
