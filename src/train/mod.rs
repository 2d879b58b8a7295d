//! The reference training loop:
//!
//! ```python
//! torch.manual_seed(seed); net = Net().to(device)
//! optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
//! scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.1)
//! for epoch in range(50):
//!     for inputs, labels in trainloader:            # batch 100, shuffle=True
//!         optimizer.zero_grad()
//!         loss = criterion(net(inputs), labels)     # nn.CrossEntropyLoss(), mean over the batch
//!         loss.backward(); optimizer.step()
//!         running_loss += loss.item()
//!     scheduler.step()
//! ```
//!
//! One loop ([`train`]) for every way of computing a step: the start in PyTorch's RNG order
//! ([`init`]), one epoch ([`epoch`]), the step itself behind the [`step::Step`] seam, checkpoint
//! decisions as a pure function ([`checkpointing`]), validation and early stopping
//! ([`validation`]). The data stay resident on the device as `uint8`; each batch is gathered by
//! index and normalised there. Per-step losses and correct counts stay on the device and are
//! read once per epoch, so the host never waits on a step.

mod checkpointing;
mod draws;
pub mod early_stop;
mod epoch;
pub mod evaluate;
pub mod finetune;
mod init;
pub(crate) mod step;

pub(crate) use step::preflight;
mod validation;

use std::{sync::atomic::AtomicBool, time::Instant};

use tch::{nn, Device};

pub use evaluate::{evaluate, evaluate_with_confusion, ConfusionMatrix};

use crate::{
    checkpoint::state::{Checkpoint, TrainState},
    config::TrainConfig,
    data::{DataFingerprint, Dataset},
    error::{Error, Result},
    model::Net,
    report::{EpochRecord, EvalMetrics, Reporter, TrainStart},
    run_dir::RunDir,
};
use epoch::EpochEnd;
use step::Step;

/// What a finished run returns.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The trained variables (`conv1.weight` ... `fc3.bias`), on the training device.
    pub vs: nn::VarStore,
    /// The trained model.
    pub net: Net,
    /// The device trained on.
    pub device: Device,
    /// The final test evaluation.
    pub test: EvalMetrics,
    /// Seconds of training and evaluation (over all sessions of a resumed run; not data loading).
    pub seconds: f64,
}

/// What a run needs beyond its numbers: where it saves checkpoints, what it resumes from, and
/// a flag that asks it to stop (set by a Ctrl-C handler).
#[derive(Debug, Default)]
pub struct Session<'a> {
    /// Saves `checkpoint.safetensors` there every `cfg.checkpoint_every` epochs and on a stop.
    pub run_dir: Option<&'a RunDir>,
    /// Continue from this training state instead of the first epoch.
    pub resume: Option<Checkpoint>,
    /// When set, the loop stops after the current step (saving its state when there is a run
    /// directory) and returns [`Error::Interrupted`].
    pub stop: Option<&'a AtomicBool>,
    /// What the run trains on, recorded in each checkpoint (see [`Dataset::fingerprint`]).
    pub data: Option<DataFingerprint>,
}

/// Trains `Net` on `train` and evaluates it on `test`, reporting each epoch. `cfg` must have
/// passed [`TrainConfig::validate`] (the run boundary, [`crate::run::run_train`], checks it once).
///
/// # Errors
/// An unavailable device, a non-finite loss, a checkpoint that does not fit, a stop request
/// ([`Error::Interrupted`], after saving), or a libtorch error.
pub fn train(cfg: &TrainConfig, train: &Dataset, test: &Dataset, reporter: &mut dyn Reporter, session: Session) -> Result<TrainOutcome> {
    let device = cfg.device.resolve()?;
    if let Some(n) = cfg.threads {
        if let Some(cpus) = crate::device::logical_cpus().filter(|&cpus| n > cpus) {
            tracing::warn!("--threads {n} is more than this machine's {cpus} CPUs: the extra threads only take turns");
        }
        tch::set_num_threads(n as i32);
    }
    tracing::info!("{}", cfg.recipe_pytorch());
    let start = init::start(cfg, train, device, &session)?;
    let mut step = step::build(cfg, &start.net, device)?;
    if let Some(ck) = &session.resume {
        step.restore_optimizer_state(&ck.optimizer)?;
    }
    fit(cfg, start, step.as_mut(), (train, test), reporter, &session)
}

/// The loop itself, over any [`Step`].
fn fit(
    cfg: &TrainConfig,
    init::Start { vs, net, mut draws, mut state, mut val, finetune }: init::Start,
    step: &mut dyn Step,
    (train, test): (&Dataset, &Dataset),
    reporter: &mut dyn Reporter,
    session: &Session,
) -> Result<TrainOutcome> {
    let t0 = Instant::now();
    let device = vs.device();
    let train = val.as_ref().map_or(train, |v| &v.train);
    let (train_d, test_d) = (train.to_device(device), test.to_device(device));
    // Only finite weights are ever saved: a run that diverges keeps its last good checkpoint.
    let save = |step: &dyn Step, state: &TrainState, val: &Option<validation::Validation>| match session.run_dir {
        Some(dir) => match net.first_non_finite() {
            Some(name) => Err(Error::NonFinite { epoch: state.epoch, what: format!("parameter {name}") }),
            None => {
                let state = TrainState { data: session.data.clone(), ..state.clone() };
                checkpointing::save(dir, cfg, &net, step, &state, validation::kept_weights(val))
            }
        },
        None => Ok(()),
    };
    let finite = |epoch: usize, split: &str, m: EvalMetrics| match m.loss.is_finite() {
        true => Ok(m),
        false => Err(Error::NonFinite { epoch, what: format!("the {split} loss") }),
    };
    reporter.train_start(&TrainStart {
        first_epoch: state.epoch + 1,
        last_record: state.last_record.clone(),
        epochs: cfg.epochs,
        steps_per_epoch: train_d.len().div_ceil(cfg.batch_size),
        batch_size: cfg.batch_size,
        train_images: train_d.len(),
        device: crate::device::device_name(device),
    });
    tracing::debug!("{} steps", step.name());

    // A run that stopped early (and is resumed) has nothing left to train.
    let stopped = val.as_ref().is_some_and(validation::Validation::stopped);
    let first = if stopped { cfg.epochs } else { state.epoch };
    // The last epoch trained: the one early stopping ended the run at, else the last.
    let mut last = if stopped { state.epoch } else { cfg.epochs };
    // The learning-rate schedule at the start of the first epoch to run (a pure replay).
    let steps = train_d.len().div_ceil(cfg.batch_size);
    let mut schedule = cfg.schedule_spec(steps).schedule().advanced(first, steps, 0);
    for _ in 0..first {
        draws.skip_epoch();
    }
    // Fine-tuning: the starting model on the target test set, as epoch 0 (the tutorial's "before").
    if let (Some(new_head), 0) = (finetune, first) {
        let t = finite(0, "test", evaluate(&net, &test_d, cfg.batch_size))?;
        let head = if new_head { "; fc3 is new, untrained: chance level is expected" } else { "" };
        tracing::info!("before fine-tuning: test loss {:.4}, test accuracy {:.2} %{head}", t.loss, 100.0 * t.accuracy);
        reporter.before_training(&t, schedule.rates().lr);
    }
    let augment = cfg.recipe.augment();
    for epoch in first + 1..=cfg.epochs {
        let epoch_draws = draws.next_epoch();
        let lr = schedule.rates().lr;
        step.begin_epoch(epoch, lr)?;
        reporter.epoch_start(epoch, lr);
        let plan = epoch::Plan { epoch, draws: &epoch_draws, augment, batch_size: cfg.batch_size };
        let m = match epoch::run(&plan, &mut schedule, &state, step, &net, &train_d, reporter, session.stop)? {
            EpochEnd::Done(m) => m,
            EpochEnd::Stopped(stopped) => {
                save(step, &stopped, &val)?;
                let run_dir = session.run_dir.map(|d| d.path().to_path_buf());
                return Err(Error::Interrupted { epoch, step: stopped.step, run_dir });
            }
        };
        let mut record = EpochRecord::new(&m, &crate::device::device_name(device));
        state = TrainState { epoch, seconds: state.seconds + m.seconds, ..TrainState::default() };
        reporter.epoch_end(&m);
        // --val-size: validate; --early-stop-patience: keep the best weights, maybe stop.
        let early_stop = match val.as_mut() {
            Some(v) => {
                let (m, stop) = v.after_epoch(epoch, &net, &vs, step, &mut state)?;
                (record.val_loss, record.val_acc) = (Some(m.loss), Some(m.accuracy));
                reporter.validated(epoch, &m);
                stop
            }
            None => false,
        };
        // The last epoch's test figures come from the final evaluation below.
        if cfg.evaluates_after(epoch) && epoch < cfg.epochs && !early_stop {
            let t = finite(epoch, "test", step.evaluate(&net, &test_d, cfg.batch_size)?)?;
            (record.test_loss, record.test_acc) = (Some(t.loss), Some(t.accuracy));
            reporter.evaluated(epoch, &t);
        }
        state.last_record = Some(record);
        schedule.after_epoch();
        if checkpointing::due(epoch, cfg.epochs, cfg.checkpoint_every, early_stop) {
            save(step, &state, &val)?;
        }
        if early_stop {
            last = epoch;
            break;
        }
    }
    // The final test figures belong to the last epoch's line (`metrics.jsonl`, TensorBoard's
    // step), also where early stopping restored an earlier epoch's weights, which that line
    // then names.
    let weights_epoch = val.as_ref().map_or(last, |v| v.finish(&vs, last));
    let test = finite(weights_epoch, "test", step.evaluate(&net, &test_d, cfg.batch_size)?)?;
    if weights_epoch != last {
        reporter.weights_restored(last, weights_epoch);
    }
    reporter.evaluated(last, &test);
    reporter.train_end();
    let resumed_seconds = session.resume.as_ref().map_or(0.0, |ck| ck.state.seconds + ck.state.partial_seconds);
    Ok(TrainOutcome { vs, net, device, test, seconds: resumed_seconds + t0.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use tch::{Kind, Tensor};

    use super::{
        step::{Batch, Step, Tally},
        *,
    };
    use crate::{config::TrainConfig, device::DeviceSpec, report::MemoryReporter, rng};

    /// A step that trains nothing and records the indices, rates and augmentation draws of every
    /// batch it is given.
    #[derive(Default)]
    struct Probe {
        batches: Vec<Vec<i64>>,
        epochs: Vec<(usize, f64)>,
        rates: Vec<crate::recipe::optim::Rates>,
        draws: Vec<Vec<crate::recipe::augment::SampleDraw>>,
    }

    impl Step for Probe {
        fn name(&self) -> &'static str {
            "probe"
        }
        fn begin_epoch(&mut self, epoch: usize, lr: f64) -> Result<()> {
            self.epochs.push((epoch, lr));
            Ok(())
        }
        fn step(&mut self, _net: &Net, b: &Batch<'_>, _tally: &mut Tally) -> Result<()> {
            self.batches.push(Vec::<i64>::try_from(b.index).unwrap());
            self.rates.push(b.rates);
            self.draws.push(b.augment.map_or(vec![], |(_, d)| d.to_vec()));
            Ok(())
        }
        fn optimizer_state(&self) -> Vec<(String, tch::Tensor)> {
            Vec::new()
        }
        fn restore_optimizer_state(&mut self, _: &[(String, tch::Tensor)]) -> Result<()> {
            Ok(())
        }
    }

    fn data(n: i64) -> Dataset {
        Dataset {
            images: Tensor::zeros([n, 3, 32, 32], (Kind::Uint8, Device::Cpu)),
            labels: Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(3),
            classes: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    fn config() -> TrainConfig {
        TrainConfig { epochs: 2, batch_size: 4, step_size: 1, seed: 11, device: DeviceSpec::Cpu, ..TrainConfig::default() }
    }

    /// The batches of each epoch as the reference's DataLoader gives them: `randperm(n)` from
    /// that epoch's seed, cut into `batch_size` pieces.
    fn reference_batches(start: &init::Start, epochs: usize, n: usize, batch_size: usize) -> Vec<Vec<i64>> {
        let mut draws = start.draws.clone();
        let seeds: Vec<i64> = (0..epochs).map(|_| draws.next_epoch().seed).collect();
        seeds
            .iter()
            .flat_map(|&s| {
                let perm = Vec::<i64>::try_from(rng::epoch_permutation(s, n)).unwrap();
                perm.chunks(batch_size).map(<[i64]>::to_vec).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_loop_feeds_the_epoch_permutations_in_order() {
        let (cfg, train, test) = (config(), data(10), data(3));
        let start = init::start(&cfg, &train, Device::Cpu, &Session::default()).unwrap();
        let want = reference_batches(&start, 2, 10, 4);
        let mut probe = Probe::default();
        fit(&cfg, start, &mut probe, (&train, &test), &mut MemoryReporter::default(), &Session::default()).unwrap();
        assert_eq!(probe.batches.len(), 6); // 2 epochs of 3 batches (4, 4, 2)
        assert_eq!(probe.batches, want);
        assert_eq!(probe.epochs, [(1, 1e-3), (2, 1e-4)]); // StepLR(step_size=1, gamma=0.1)
    }

    #[test]
    fn each_batch_gets_its_images_draws_and_the_schedules_rates() {
        use crate::{config::RecipeConfig, recipe::schedule::LrScheduleKind};
        let recipe = RecipeConfig { random_crop: Some(2), hflip: true, lr_schedule: LrScheduleKind::Onecycle, ..Default::default() };
        let cfg = TrainConfig { recipe, learning_rate: 0.1, ..config() };
        let (train, test) = (data(10), data(3));
        let start = init::start(&cfg, &train, Device::Cpu, &Session::default()).unwrap();
        let mut draws = start.draws.clone();
        let epochs: Vec<_> = (0..2).map(|_| draws.next_epoch()).collect();
        let mut probe = Probe::default();
        fit(&cfg, start, &mut probe, (&train, &test), &mut MemoryReporter::default(), &Session::default()).unwrap();
        // Batches of 4, 4, 2: each gets its slice of its epoch's draws, in permutation order.
        let want: Vec<_> = epochs.iter().flat_map(|e| e.samples.chunks(4).map(<[_]>::to_vec).collect::<Vec<_>>()).collect();
        assert_eq!(probe.draws, want);
        assert!(want.iter().flatten().all(|d| d.top <= 4 && d.left <= 4));
        // OneCycleLR steps after every batch: six different rates, as the schedule gives them.
        let mut schedule = cfg.schedule_spec(3).schedule();
        let rates: Vec<_> = (0..6).map(|_| (schedule.rates(), schedule.after_step()).0).collect();
        assert_eq!(probe.rates, rates);
        assert_eq!(probe.epochs, [(1, rates[0].lr), (2, rates[3].lr)]);
    }

    #[test]
    fn a_resume_at_step_k_skips_exactly_k_batches() {
        let (cfg, train, test) = (config(), data(10), data(3));
        for k in 0..3 {
            let fresh = init::start(&cfg, &train, Device::Cpu, &Session::default()).unwrap();
            let weights = fresh.net.parameters().iter().map(|(n, p)| (n.to_string(), p.copy())).collect();
            let want = reference_batches(&fresh, 2, 10, 4);
            let state = TrainState { step: k, partial_losses: vec![0.5; k], ..TrainState::default() };
            let session = Session { resume: Some(Checkpoint { state, weights, optimizer: vec![], best: vec![] }), ..Default::default() };
            let start = init::start(&cfg, &train, Device::Cpu, &session).unwrap();
            let mut probe = Probe::default();
            let mut memory = MemoryReporter::default();
            fit(&cfg, start, &mut probe, (&train, &test), &mut memory, &session).unwrap();
            assert_eq!(probe.batches, want[k..], "resumed at step {k}");
            // The skipped steps' losses are kept: epoch 1 still has 3 step losses.
            assert_eq!(memory.epochs[0].step_losses.len(), 3);
        }
    }

    /// Trains nothing; poisons `fc3.bias` with a NaN at the last step of epoch `at`.
    struct Poison {
        at: usize,
        epoch: usize,
    }

    impl Step for Poison {
        fn name(&self) -> &'static str {
            "poison"
        }
        fn begin_epoch(&mut self, epoch: usize, _lr: f64) -> Result<()> {
            self.epoch = epoch;
            Ok(())
        }
        fn step(&mut self, net: &Net, b: &Batch<'_>, _tally: &mut Tally) -> Result<()> {
            if self.epoch == self.at && b.step == 2 {
                let (_, bias) = net.parameters()[9];
                let _ = tch::no_grad(|| bias.shallow_clone().get(0).fill_(f64::NAN));
            }
            Ok(())
        }
        fn optimizer_state(&self) -> Vec<(String, tch::Tensor)> {
            Vec::new()
        }
        fn restore_optimizer_state(&mut self, _: &[(String, tch::Tensor)]) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn weights_gone_non_finite_are_never_saved() {
        let (cfg, train, test) = (config(), data(10), data(3));
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::create(tmp.path()).unwrap();
        let session = Session { run_dir: Some(&dir), ..Default::default() };
        let start = init::start(&cfg, &train, Device::Cpu, &session).unwrap();
        let mut poison = Poison { at: 2, epoch: 0 };
        let saved = std::sync::Mutex::new(None);
        struct Snapshot<'a>(&'a RunDir, &'a std::sync::Mutex<Option<Vec<u8>>>);
        impl Reporter for Snapshot<'_> {
            fn epoch_start(&mut self, epoch: usize, _lr: f64) {
                if epoch == 2 {
                    *self.1.lock().unwrap() = std::fs::read(self.0.file(crate::checkpoint::state::FILE)).ok();
                }
            }
        }
        let err = fit(&cfg, start, &mut poison, (&train, &test), &mut Snapshot(&dir, &saved), &session).unwrap_err();
        assert!(matches!(&err, Error::NonFinite { epoch: 2, what } if what == "parameter fc3.bias"), "{err}");
        let after = std::fs::read(dir.file(crate::checkpoint::state::FILE)).unwrap();
        assert_eq!(Some(after), saved.into_inner().unwrap(), "the checkpoint of epoch 1 must stay as it was");
    }

    #[test]
    fn a_stop_without_a_run_directory_stops_and_says_nothing_was_saved() {
        let (cfg, train, test) = (config(), data(10), data(3));
        let stop = AtomicBool::new(true);
        let session = Session { stop: Some(&stop), ..Default::default() };
        let start = init::start(&cfg, &train, Device::Cpu, &session).unwrap();
        let mut probe = Probe::default();
        let err = fit(&cfg, start, &mut probe, (&train, &test), &mut MemoryReporter::default(), &session).unwrap_err();
        assert!(matches!(err, Error::Interrupted { epoch: 1, step: 0, run_dir: None }), "{err}");
        assert!(err.to_string().contains("nothing was saved"), "{err}");
        assert!(probe.batches.is_empty());
    }
}
