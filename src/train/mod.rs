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
//! The data stay resident on the device as `uint8`; each batch is gathered by index and
//! normalised there. Per-step losses and correct counts stay on the device and are read once
//! per epoch, so the host never waits on a step.

pub mod early_stop;
mod eval;
pub mod finetune;
pub mod schedule;
pub mod sgd;
mod validation;

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use tch::{nn, nn::Module, Device, Kind, Tensor};

pub use eval::{evaluate, evaluate_with_confusion, ConfusionMatrix, EvalMetrics};
pub use sgd::Sgd;

use crate::{
    checkpoint::{
        self,
        state::{Checkpoint, TrainState},
    },
    config::TrainConfig,
    data::{normalize, Dataset},
    error::{Error, Result},
    model::Net,
    report::{EpochMetrics, Reporter, TrainStart},
    run_dir::RunDir,
};

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
    /// Continue from this checkpoint instead of the first epoch.
    pub resume: Option<Checkpoint>,
    /// When set, the loop saves its state after the current step and returns [`Error::Interrupted`].
    pub stop: Option<&'a AtomicBool>,
}

/// Trains the reference `Net` on `train` and evaluates it on `test`, reporting each epoch.
///
/// # Errors
/// An invalid configuration, an unavailable device, a non-finite loss, a checkpoint that does
/// not fit, a stop request ([`Error::Interrupted`], after saving), or a libtorch error.
pub fn train(
    cfg: &TrainConfig,
    train: &Dataset,
    test: &Dataset,
    reporter: &mut dyn Reporter,
    session: Session,
) -> Result<TrainOutcome> {
    cfg.validate()?;
    let device = cfg.device.resolve()?;
    if let Some(n) = cfg.threads {
        tch::set_num_threads(n as i32);
    }
    let start = Instant::now();
    // --val-size: the split seeds the global generator itself, so it comes before manual_seed.
    let mut val = validation::Validation::new(cfg, train, device, session.resume.as_ref())?;
    let train = val.as_ref().map_or(train, |v| &v.train);

    // torch.manual_seed(seed); net = Net(): drawn on the CPU in PyTorch's order, then moved.
    // A resumed run draws them too, so that the shuffle seeds drawn next are the same.
    let rng = schedule::lock_global_rng();
    tch::manual_seed(cfg.seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), train.classes.len() as i64);
    net.init_pytorch();
    let seeds = schedule::shuffle_seeds(cfg);
    drop(rng);
    if let (Some(from), None) = (&cfg.init_from, &session.resume) {
        finetune::load_pretrained(&net, from, &train.classes)?;
    }
    let mut state = TrainState::default();
    if let Some(ck) = &session.resume {
        tch::no_grad(|| {
            for ((_, p), (_, w)) in net.parameters().iter().zip(&ck.weights) {
                p.shallow_clone().copy_(w);
            }
        });
        state = ck.state.clone();
    }
    vs.set_device(device);
    finetune::freeze(&net, cfg.freeze);

    let mut opt = Sgd::new(&vs, &net.parameters(), cfg.learning_rate, cfg.momentum)?;
    if let Some(ck) = &session.resume {
        opt.restore_momentum(&ck.momentum, schedule::step_lr(cfg, state.epoch + 1))?;
    }
    let (train_d, test_d) = (train.to_device(device), test.to_device(device));
    let n = train_d.len();
    let steps = n.div_ceil(cfg.batch_size);
    let save = |opt: &Sgd, state: &TrainState, best: Vec<(String, Tensor)>| -> Result<()> {
        let Some(dir) = session.run_dir else { return Ok(()) };
        let weights = net.parameters().iter().map(|(n, p)| (n.to_string(), p.shallow_clone())).collect();
        let ck = Checkpoint { state: state.clone(), weights, momentum: opt.momentum_buffers(), best };
        checkpoint::state::save(&dir.file(checkpoint::state::FILE), &ck)
    };
    reporter.train_start(&TrainStart {
        first_epoch: state.epoch + 1,
        epochs: cfg.epochs,
        steps_per_epoch: steps,
        batch_size: cfg.batch_size,
        train_images: n,
        device: crate::device::device_name(device),
    });

    // A run that stopped early (and is resumed) has nothing left to train.
    let first = if val.as_ref().is_some_and(validation::Validation::stopped) { cfg.epochs } else { state.epoch };
    let mut last = cfg.epochs;
    for (epoch, &seed) in (1..=cfg.epochs).zip(&seeds).skip(first) {
        let lr = schedule::step_lr(cfg, epoch);
        opt.set_lr(lr);
        reporter.epoch_start(epoch, lr);
        let t0 = Instant::now();
        // A run stopped mid-epoch resumes after the steps it had done, with their figures.
        let skip = std::mem::take(&mut state.step);
        let mut step_losses = std::mem::take(&mut state.partial_losses);
        let (prefix_correct, prefix_seconds) = (state.partial_correct, state.partial_seconds);
        let perm = schedule::epoch_permutation(seed, n).to_device(device);
        let losses = Tensor::zeros([steps as i64], (Kind::Float, device));
        let mut correct = Tensor::zeros([], (Kind::Int64, device));
        for (step, idx) in perm.split(cfg.batch_size as i64, 0).iter().enumerate().skip(skip) {
            if session.stop.is_some_and(|s| s.load(Ordering::Relaxed)) && session.run_dir.is_some() {
                step_losses.extend(Vec::<f32>::try_from(losses.narrow(0, skip as i64, (step - skip) as i64))?);
                let stopped = TrainState {
                    step,
                    partial_losses: step_losses,
                    partial_correct: prefix_correct + correct.int64_value(&[]),
                    partial_seconds: prefix_seconds + t0.elapsed().as_secs_f64(),
                    ..state
                };
                save(&opt, &stopped, validation::kept_weights(&val))?;
                let run_dir = session.run_dir.map(|d| d.path().to_path_buf()).unwrap_or_default();
                return Err(Error::Interrupted { epoch, step, run_dir });
            }
            let xs = normalize(&train_d.images.index_select(0, idx));
            let ys = train_d.labels.index_select(0, idx);
            let logits = net.forward(&xs);
            let loss = logits.cross_entropy_for_logits(&ys);
            opt.backward_step(&loss); // zero_grad(); loss.backward(); step()
            losses.get(step as i64).copy_(&loss.detach());
            correct += logits.argmax(-1, false).eq_tensor(&ys).sum(Kind::Int64);
            reporter.step_end(step + 1, &losses); // reads nothing unless the reporter does, rarely
        }
        // The one read of the epoch: per-step losses and the correct count.
        step_losses.extend(Vec::<f32>::try_from(losses.narrow(0, skip as i64, (steps - skip) as i64))?);
        let correct = prefix_correct + correct.int64_value(&[]);
        if let Some(step) = step_losses.iter().position(|l| !l.is_finite()) {
            return Err(Error::NonFiniteLoss { epoch, step: step + 1 });
        }
        // running_loss += loss.item(): a sequential float64 sum, as Python's.
        let train_loss = step_losses.iter().fold(0f64, |s, &l| s + f64::from(l)) / steps as f64;
        let seconds = prefix_seconds + t0.elapsed().as_secs_f64();
        state = TrainState { epoch, seconds: state.seconds + seconds, ..TrainState::default() };
        reporter.epoch_end(&EpochMetrics {
            epoch,
            lr,
            train_loss,
            train_acc: correct as f64 / n as f64,
            seconds,
            images_per_sec: n as f64 / seconds,
            step_losses,
        });
        if cfg.evaluates_after(epoch) && epoch < cfg.epochs {
            reporter.evaluated(epoch, &evaluate(&net, &test_d, cfg.batch_size));
        }
        // --val-size: validate; --early-stop-patience: keep the best weights, maybe stop.
        let stop = val.as_mut().is_some_and(|v| v.after_epoch(epoch, &net, &vs, reporter, &mut state));
        if stop || epoch % cfg.checkpoint_every == 0 || epoch == cfg.epochs {
            save(&opt, &state, validation::kept_weights(&val))?;
        }
        if stop {
            last = epoch;
            break;
        }
    }
    let weights_epoch = val.as_ref().map_or(last, |v| v.finish(&vs, last));
    let test = evaluate(&net, &test_d, cfg.batch_size);
    reporter.evaluated(weights_epoch, &test);
    reporter.train_end();
    let resumed_seconds = session.resume.as_ref().map_or(0.0, |ck| ck.state.seconds + ck.state.partial_seconds);
    Ok(TrainOutcome { vs, net, device, test, seconds: resumed_seconds + start.elapsed().as_secs_f64() })
}
