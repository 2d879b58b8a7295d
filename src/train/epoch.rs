//! One epoch of the loop: the reference `for inputs, labels in trainloader:` over the epoch's
//! `randperm`, in batches (each with its images' augmentation draws and the schedule's rates),
//! skipping the steps a stopped run had already done, honouring a stop request between steps,
//! and reading the device once at the end.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use super::{
    draws::EpochDraws,
    step::{Batch, Step, Tally},
};
use crate::{
    checkpoint::state::TrainState,
    data::Dataset,
    error::{Error, Result},
    model::Net,
    recipe::{augment::Augment, schedule::Schedule},
    report::{EpochMetrics, Reporter},
    rng,
};

/// What an epoch runs: its number (1-based), its draws, the augmentation, the batch size.
pub(crate) struct Plan<'a> {
    pub epoch: usize,
    pub draws: &'a EpochDraws,
    pub augment: Augment,
    pub batch_size: usize,
}

/// How an epoch ended.
pub(crate) enum EpochEnd {
    /// Every step ran: the epoch's figures.
    Done(EpochMetrics),
    /// A stop request came before step `state.step` (0-based): the state to save, with the
    /// figures of the steps done.
    Stopped(Box<TrainState>),
}

/// Runs the epoch of `plan` over `data` (resident on the device) in the order `randperm(n)`
/// seeded by the plan's seed, through `step`, with the rates of `schedule` (positioned at the
/// epoch's start; stepped after each step when it steps per batch). `resumed` is the state saved
/// by a run stopped in this epoch (its `step` steps are skipped and their figures kept), or the
/// default.
///
/// # Errors
/// [`Error::NonFiniteLoss`] naming the first bad step, a libtorch error.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    plan: &Plan<'_>,
    schedule: &mut Schedule,
    resumed: &TrainState,
    step: &mut dyn Step,
    net: &Net,
    data: &Dataset,
    reporter: &mut dyn Reporter,
    stop: Option<&AtomicBool>,
) -> Result<EpochEnd> {
    let t0 = Instant::now();
    let Plan { epoch, draws, augment, batch_size } = *plan;
    let lr = schedule.rates().lr;
    let n = data.len();
    let steps = n.div_ceil(batch_size);
    let skip = resumed.step;
    let perm = rng::epoch_permutation(draws.seed, n).to_device(data.images.device());
    let mut tally = Tally::new(steps, data.images.device());
    // The losses of the steps run in this process, read from the device once.
    let read = |tally: &Tally, upto: usize| -> Result<Vec<f32>> {
        let mut losses = resumed.partial_losses.clone();
        losses.extend(Vec::<f32>::try_from(tally.losses.narrow(0, skip as i64, (upto - skip) as i64))?);
        Ok(losses)
    };
    for _ in 0..skip {
        schedule.after_step();
    }
    for (i, index) in perm.split(batch_size as i64, 0).iter().enumerate().skip(skip) {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Ok(EpochEnd::Stopped(Box::new(TrainState {
                step: i,
                partial_losses: read(&tally, i)?,
                partial_correct: resumed.partial_correct + tally.correct.int64_value(&[]),
                partial_seconds: resumed.partial_seconds + t0.elapsed().as_secs_f64(),
                ..resumed.clone()
            })));
        }
        let rows = i * batch_size..((i + 1) * batch_size).min(n);
        let augment = (!augment.is_none()).then(|| (augment, &draws.samples[rows]));
        let batch = Batch { images: &data.images, labels: &data.labels, index, step: i, rates: schedule.rates(), augment };
        step.step(net, &batch, &mut tally)?;
        schedule.after_step();
        reporter.step_end(i + 1, &tally.losses); // reads nothing unless the reporter does, rarely
    }
    // The one read of the epoch: per-step losses and the correct count.
    let step_losses = read(&tally, steps)?;
    let correct = resumed.partial_correct + tally.correct.int64_value(&[]);
    if let Some(i) = step_losses.iter().position(|l| !l.is_finite()) {
        return Err(Error::NonFiniteLoss { epoch, step: i + 1 });
    }
    // running_loss += loss.item(): a sequential float64 sum, as Python's.
    let train_loss = step_losses.iter().fold(0f64, |s, &l| s + f64::from(l)) / steps as f64;
    let seconds = resumed.partial_seconds + t0.elapsed().as_secs_f64();
    Ok(EpochEnd::Done(EpochMetrics {
        epoch,
        lr,
        train_loss,
        train_acc: correct as f64 / n as f64,
        seconds,
        images_per_sec: n as f64 / seconds,
        step_losses,
    }))
}
