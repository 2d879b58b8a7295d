//! The reference method's steps 1 and 4, off by default: hold out `--val-size` training images
//! ([`crate::data::split::holdout`]), evaluate them after every epoch, and with
//! `--early-stop-patience` stop when validation accuracy stalls, keeping the best weights.
//! The training loop calls [`Validation::new`], [`Validation::after_epoch`] and
//! [`Validation::finish`]; without a split none of this runs and nothing is drawn. The
//! early-stopping state travels in the training checkpoint, so a resumed run goes on exactly.

use tch::{nn, Device, Tensor};

use super::{
    early_stop::{EarlyStopping, Verdict},
    step::Step,
};
use crate::{
    checkpoint::state::{Checkpoint, TrainState},
    config::TrainConfig,
    data::{split, Dataset},
    error::Result,
    model::Net,
    report::EvalMetrics,
};

/// The split and the per-epoch validation state of one run.
pub(crate) struct Validation {
    /// The training images left after the split (on the CPU, as loaded).
    pub(crate) train: Dataset,
    val: Dataset,
    batch_size: usize,
    stopper: Option<EarlyStopping>,
}

impl Validation {
    /// Splits `train` when `cfg.val_size > 0`; `None` otherwise. Seeds libtorch's global
    /// generator (see [`split::holdout`]), so it must run before the run's `manual_seed`. A
    /// resumed run takes its early-stopping state from `resume`.
    ///
    /// # Errors
    /// A `--val-size` that leaves no training image.
    pub(crate) fn new(cfg: &TrainConfig, train: &Dataset, device: Device, resume: Option<&Checkpoint>) -> Result<Option<Validation>> {
        if cfg.val_size == 0 {
            return Ok(None);
        }
        let (train, val) = split::holdout(train, cfg.val_size, cfg.seed)?;
        tracing::info!("held out {} of {} training images for validation", val.len(), train.len() + val.len());
        Ok(Some(Validation {
            train,
            val: val.to_device(device),
            batch_size: cfg.batch_size,
            stopper: cfg.early_stop_patience.map(|p| match resume {
                Some(ck) => EarlyStopping::resume(p, ck.state.best, ck.state.epochs_without_improvement, ck.best.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()),
                None => EarlyStopping::new(p),
            }),
        }))
    }

    /// Evaluates the validation split after `epoch` (as `step` evaluates); records the early-stopping state in
    /// `state` (for the checkpoint). Returns the figures (for the loop to report) and whether to
    /// stop.
    pub(crate) fn after_epoch(
        &mut self,
        epoch: usize,
        net: &Net,
        vs: &nn::VarStore,
        step: &mut dyn Step,
        state: &mut TrainState,
    ) -> Result<(EvalMetrics, bool)> {
        let m = step.evaluate(net, &self.val, self.batch_size)?;
        let Some(stopper) = self.stopper.as_mut() else { return Ok((m, false)) };
        let verdict = stopper.observe(epoch, m.accuracy);
        (state.best, state.epochs_without_improvement) = (stopper.best(), stopper.stale());
        match verdict {
            Verdict::Improved => stopper.save(vs),
            Verdict::Wait => {}
            Verdict::Stop => {
                let p = stopper.patience();
                tracing::info!("early stop after epoch {epoch}: no better validation accuracy for {p} epoch{}", if p == 1 { "" } else { "s" });
                return Ok((m, true));
            }
        }
        Ok((m, false))
    }

    /// After the last epoch trained (`last`): with early stopping, restores the best epoch's
    /// weights. Returns the epoch the model's weights are now from.
    pub(crate) fn finish(&self, vs: &nn::VarStore, last: usize) -> usize {
        match self.stopper.as_ref().and_then(|s| s.best().map(|b| (s, b))) {
            Some((stopper, (epoch, accuracy))) => {
                stopper.restore(vs);
                tracing::info!("keeping the weights of epoch {epoch} (validation accuracy {:.2}%)", 100.0 * accuracy);
                epoch
            }
            None => last,
        }
    }

    /// Whether early stopping has already ended this run (a resumed run that had stopped).
    pub(crate) fn stopped(&self) -> bool {
        self.stopper.as_ref().is_some_and(EarlyStopping::stopped)
    }
}

/// The early-stopping weights to save in a checkpoint (none without early stopping).
pub(crate) fn kept_weights(val: &Option<Validation>) -> Vec<(String, Tensor)> {
    val.as_ref().and_then(|v| v.stopper.as_ref()).map_or_else(Vec::new, EarlyStopping::weights)
}
