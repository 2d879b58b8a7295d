//! The step seam: how one SGD step is computed (`optimizer.zero_grad()`, forward, cross-entropy,
//! `loss.backward()`, `optimizer.step()`), apart from everything around it. Batch order,
//! mid-epoch resume, stop, checkpoints, validation and reporting belong to the one loop in
//! [`super::train`]; a [`Step`] owns its optimizer (and whatever buffers it keeps) and only
//! computes.
//!
//! Kinds: [`reference::Reference`] (bit for bit the PyTorch program on the CPU) and, for
//! `--kernels fast` (the same mathematics, faster kernels, other rounding),
//! [`fast_cpu::FastCpu`] on the CPU (this crate's own kernels) and [`fast::Fast`] elsewhere
//! (libtorch's kernels in channels-last layout);
//! on CUDA either one may be captured and replayed as a CUDA graph ([`graphed::Graphed`],
//! `--cuda-graphs`).
//! [`build`] is the one place that reads the configuration to choose one.

pub(crate) mod fast;
pub(crate) mod fast_cpu;
pub(crate) mod graphed;
pub(crate) mod reference;

use tch::{Device, Kind, Tensor};

use crate::{
    config::{Kernels, TrainConfig},
    data::Dataset,
    error::Result,
    report::EvalMetrics,
    model::Net,
    recipe::{
        augment::{Augment, SampleDraw},
        optim::Rates,
    },
};

/// One batch of a shuffled epoch: the resident training data and the indices of this step's
/// images.
pub(crate) struct Batch<'a> {
    /// `uint8 [N, 3, 32, 32]`, on the training device.
    pub images: &'a Tensor,
    /// `int64 [N]`, on the training device.
    pub labels: &'a Tensor,
    /// `int64 [B]`: this step's rows of `images` (a slice of the epoch's `randperm`), on the device.
    pub index: &'a Tensor,
    /// 0-based step within the epoch.
    pub step: usize,
    /// The optimizer's learning rate and momentum (or Adam's `beta1`) for this step, from the
    /// schedule.
    pub rates: Rates,
    /// The augmentation of this batch's images, one draw per row of `index`; `None`: none.
    pub augment: Option<(Augment, &'a [SampleDraw])>,
}

impl Batch<'_> {
    /// The batch's `uint8 [B, 3, 32, 32]` images, augmented when the run augments (the
    /// reference's transforms before `ToTensor()`).
    ///
    /// # Errors
    /// A libtorch error.
    pub(crate) fn images_u8(&self) -> Result<Tensor> {
        let xs = self.images.f_index_select(0, self.index)?;
        match self.augment {
            Some((aug, draws)) => aug.apply(&xs, draws),
            None => Ok(xs),
        }
    }
}

/// The epoch's figures as they accumulate on the device, read by the loop once per epoch.
pub(crate) struct Tally {
    /// `float32 [steps]`: each step's batch-mean loss.
    pub losses: Tensor,
    /// `int64 []`: training images classified right so far (before each step's update).
    pub correct: Tensor,
}

impl Tally {
    /// Zeros for an epoch of `steps` steps.
    pub(crate) fn new(steps: usize, device: Device) -> Tally {
        Tally {
            losses: Tensor::zeros([steps as i64], (Kind::Float, device)),
            correct: Tensor::zeros([], (Kind::Int64, device)),
        }
    }

    /// Records step `step` (0-based): its loss, and how many of `logits`' argmaxes are `ys`.
    pub(crate) fn record(&mut self, step: usize, loss: &Tensor, logits: &Tensor, ys: &Tensor) {
        self.losses.get(step as i64).copy_(&loss.detach());
        self.correct += logits.argmax(-1, false).eq_tensor(ys).sum(Kind::Int64);
    }
}

/// How one SGD step is computed. Implementations own the optimizer.
pub(crate) trait Step {
    /// The name recorded in logs (`reference`, ...).
    fn name(&self) -> &'static str;
    /// Called before each epoch's first step with the epoch's first learning rate.
    ///
    /// # Errors
    /// A libtorch error (a step that prepares kernels for the rate).
    fn begin_epoch(&mut self, epoch: usize, lr: f64) -> Result<()>;
    /// One SGD step on `batch`, recorded in `tally`.
    ///
    /// # Errors
    /// A libtorch error.
    fn step(&mut self, net: &Net, batch: &Batch<'_>, tally: &mut Tally) -> Result<()>;
    /// Evaluates `net` on `data` (resident on the training device) in batches of `batch_size`:
    /// the test pass after an epoch and validation. By default libtorch's forward
    /// ([`crate::train::evaluate`]); the fast CPU step uses its own kernels.
    ///
    /// # Errors
    /// Data the step's kernels cannot read.
    fn evaluate(&mut self, net: &Net, data: &Dataset, batch_size: usize) -> Result<EvalMetrics> {
        Ok(super::evaluate::evaluate(net, data, batch_size))
    }
    /// The optimizer's state under PyTorch's names (`momentum_buffer.fc1.weight`,
    /// `exp_avg.fc1.weight`, ...; none before the first step), for the checkpoint.
    fn optimizer_state(&self) -> Vec<(String, Tensor)>;
    /// Installs saved optimizer state, leaving the parameters unchanged.
    ///
    /// # Errors
    /// A name this optimizer does not keep, or a tensor of the wrong shape.
    fn restore_optimizer_state(&mut self, state: &[(String, Tensor)]) -> Result<()>;
}

/// Checks, before any work, that the configuration's step can run on `device`.
///
/// # Errors
/// `--cuda-graphs on` where it cannot apply.
pub(crate) fn preflight(cfg: &TrainConfig, device: Device) -> Result<()> {
    graphed::check(cfg, device)
}

/// The step the configuration asks for, over `net`'s trainable parameters. The only reader of
/// `--kernels`, `--cuda-graphs` and `--deterministic`.
///
/// # Errors
/// A libtorch error creating the optimizer; `--cuda-graphs on` or `--deterministic` where they
/// cannot apply (no CUDA device, no CUDA shim).
pub(crate) fn build(cfg: &TrainConfig, net: &Net, device: Device) -> Result<Box<dyn Step>> {
    if let (true, Device::Cuda(_)) = (cfg.deterministic, device) {
        crate::cuda_graph::set_cudnn_deterministic(true).and_then(|()| crate::cuda_graph::set_cudnn_benchmark(false)).map_err(|e| {
            crate::Error::InvalidConfig { field: "deterministic", value: "true".into(), expected: format!("the CUDA shim to set cuDNN's switches ({e})") }
        })?;
    }
    let eager: Box<dyn Step> = match cfg.kernels {
        Kernels::Reference => Box::new(reference::Reference::new(cfg, net)),
        Kernels::Fast if device == Device::Cpu => Box::new(fast_cpu::FastCpu::new(cfg, net)?),
        Kernels::Fast => Box::new(fast::Fast::new(cfg, net)),
    };
    Ok(match (graphed::wanted(cfg, device)?, device) {
        (true, Device::Cuda(index)) => Box::new(graphed::Graphed::new(eager, index, cfg.batch_size)?),
        _ => eager,
    })
}
