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
pub mod schedule;
pub mod sgd;
mod validation;

use std::time::Instant;

use tch::{nn, nn::Module, Device, Kind, Tensor};

pub use eval::{evaluate, EvalMetrics};
pub use sgd::Sgd;

use crate::{
    config::TrainConfig,
    data::{normalize, Dataset},
    error::{Error, Result},
    model::Net,
    report::{EpochMetrics, Reporter},
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
    /// Wall-clock seconds of the whole run (training and evaluation, not data loading).
    pub seconds: f64,
}

/// Trains the reference `Net` on `train` and evaluates it on `test`, reporting each epoch.
///
/// # Errors
/// An invalid configuration, an unavailable device, a non-finite loss, or a libtorch error.
pub fn train(cfg: &TrainConfig, train: &Dataset, test: &Dataset, reporter: &mut dyn Reporter) -> Result<TrainOutcome> {
    cfg.validate()?;
    let device = cfg.device.resolve()?;
    if let Some(n) = cfg.threads {
        tch::set_num_threads(n as i32);
    }
    let start = Instant::now();
    // --val-size: the split seeds the global generator itself, so it comes before manual_seed.
    let mut val = validation::Validation::new(cfg, train, device)?;
    let train = val.as_ref().map_or(train, |v| &v.train);

    // torch.manual_seed(seed); net = Net(): drawn on the CPU in PyTorch's order, then moved.
    let rng = schedule::lock_global_rng();
    tch::manual_seed(cfg.seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), train.classes.len() as i64);
    net.init_pytorch();
    let seeds = schedule::shuffle_seeds(cfg);
    drop(rng);
    vs.set_device(device);

    let mut opt = Sgd::new(&vs, &net.parameters(), cfg.learning_rate, cfg.momentum)?;
    let (train_d, test_d) = (train.to_device(device), test.to_device(device));
    let n = train_d.len();
    let steps = n.div_ceil(cfg.batch_size);

    let mut last = cfg.epochs;
    for (epoch, &seed) in (1..=cfg.epochs).zip(&seeds) {
        let lr = schedule::step_lr(cfg, epoch);
        opt.set_lr(lr);
        let t0 = Instant::now();
        let perm = schedule::epoch_permutation(seed, n).to_device(device);
        let losses = Tensor::zeros([steps as i64], (Kind::Float, device));
        let mut correct = Tensor::zeros([], (Kind::Int64, device));
        for (step, idx) in perm.split(cfg.batch_size as i64, 0).iter().enumerate() {
            let xs = normalize(&train_d.images.index_select(0, idx));
            let ys = train_d.labels.index_select(0, idx);
            let logits = net.forward(&xs);
            let loss = logits.cross_entropy_for_logits(&ys);
            opt.backward_step(&loss); // zero_grad(); loss.backward(); step()
            losses.get(step as i64).copy_(&loss.detach());
            correct += logits.argmax(-1, false).eq_tensor(&ys).sum(Kind::Int64);
        }
        // The one read of the epoch: per-step losses and the correct count.
        let step_losses = Vec::<f32>::try_from(&losses)?;
        let correct = correct.int64_value(&[]);
        if let Some(step) = step_losses.iter().position(|l| !l.is_finite()) {
            return Err(Error::NonFiniteLoss { epoch, step: step + 1 });
        }
        // running_loss += loss.item(): a sequential float64 sum, as Python's.
        let train_loss = step_losses.iter().fold(0f64, |s, &l| s + f64::from(l)) / steps as f64;
        let seconds = t0.elapsed().as_secs_f64();
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
        if val.as_mut().is_some_and(|v| v.after_epoch(epoch, &net, &vs, reporter)) {
            last = epoch;
            break;
        }
    }
    let weights_epoch = val.as_ref().map_or(last, |v| v.finish(&vs, last));
    let test = evaluate(&net, &test_d, cfg.batch_size);
    reporter.evaluated(weights_epoch, &test);
    Ok(TrainOutcome { vs, net, device, test, seconds: start.elapsed().as_secs_f64() })
}
