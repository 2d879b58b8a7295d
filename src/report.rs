//! Where a run's figures go. The training loop reports through [`Reporter`]; the binary logs
//! them with `tracing` ([`LogReporter`]), tests collect them in memory ([`MemoryReporter`]).

use serde::{Deserialize, Serialize};

use crate::train::EvalMetrics;

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

/// Receives a run's figures as they are produced.
pub trait Reporter {
    /// After each epoch's training steps.
    fn epoch_end(&mut self, _m: &EpochMetrics) {}
    /// After each evaluation on the test set, with the epoch it followed.
    fn evaluated(&mut self, _epoch: usize, _m: &EvalMetrics) {}
    /// After each epoch's evaluation on the held-out validation split (`--val-size`).
    fn validated(&mut self, _epoch: usize, _m: &EvalMetrics) {}
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

    fn evaluated(&mut self, epoch: usize, m: &EvalMetrics) {
        tracing::info!("epoch {epoch:>3}  test loss {:.4}  test acc {:.2}%", m.loss, 100.0 * m.accuracy);
    }

    fn validated(&mut self, epoch: usize, m: &EvalMetrics) {
        tracing::info!("epoch {epoch:>3}  val loss {:.4}  val acc {:.2}%", m.loss, 100.0 * m.accuracy);
    }
}

/// Keeps every figure in memory (for tests and library users).
#[derive(Debug, Default)]
pub struct MemoryReporter {
    /// Every epoch's figures, in order.
    pub epochs: Vec<EpochMetrics>,
    /// Every evaluation, with the epoch it followed.
    pub evals: Vec<(usize, EvalMetrics)>,
    /// Every validation, with its epoch.
    pub vals: Vec<(usize, EvalMetrics)>,
}

impl Reporter for MemoryReporter {
    fn epoch_end(&mut self, m: &EpochMetrics) {
        self.epochs.push(m.clone());
    }

    fn evaluated(&mut self, epoch: usize, m: &EvalMetrics) {
        self.evals.push((epoch, m.clone()));
    }

    fn validated(&mut self, epoch: usize, m: &EvalMetrics) {
        self.vals.push((epoch, m.clone()));
    }
}
