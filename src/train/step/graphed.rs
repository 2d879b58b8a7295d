//! The graphed step (`--cuda-graphs`, on CUDA): the eager step captured once as a CUDA graph
//! and replayed for every full batch, so a step is one graph launch instead of some 80 to 100
//! kernel launches, which bound a network this small on a GPU. The numbers are the eager
//! step's: the graph replays the very kernels the eager step queues.
//!
//! How (PyTorch's "whole network capture", `torch.cuda.graph`; see [`crate::cuda_graph`]):
//! * the first [`WARMUP_STEPS`] steps of a run are real eager steps on a side stream: the first
//!   creates the momentum buffers, the others let cuDNN and cuBLAS allocate their workspaces;
//! * then one full step (gather by a static index tensor, normalise, forward, loss, backward,
//!   the SGD update, the loss and the correct count written to static scalars) is captured on
//!   the side stream and replayed; each later full batch copies its indices into the static
//!   index tensor (device to device), replays, and adds the static figures to the epoch's
//!   tally with two small eager ops;
//! * the learning rate is a constant of the captured update, so a `StepLR` change recaptures;
//! * a ragged last batch (another shape) runs eagerly.
//!
//! Checkpoints, resume, Ctrl-C, validation and evaluation are the loop's and stay eager.

use tch::{Device, Kind, Tensor};

use super::{Batch, Step, Tally};
use crate::{
    config::{CudaGraphs, TrainConfig},
    recipe::optim::OptimizerKind,
    cuda_graph::{self, capture, on_stream, CudaGraph, CudaStream, MempoolId},
    error::Result,
    model::Net,
};

/// Eager steps before the first capture.
pub(crate) const WARMUP_STEPS: usize = 3;

/// An eager step, captured (see the module doc).
pub(crate) struct Graphed {
    eager: Box<dyn Step>,
    device: usize,
    batch_size: usize,
    side: CudaStream,
    graph: Option<CudaGraph>,
    warmup_left: usize,
    index: Tensor,
    loss: Tensor,
    correct: Tensor,
}

impl Graphed {
    /// Wraps `eager` for full batches of `batch_size` on `cuda:device`.
    ///
    /// # Errors
    /// [`crate::Error::CudaShim`] when the shim cannot make a stream.
    pub(crate) fn new(eager: Box<dyn Step>, device: usize, batch_size: usize) -> Result<Graphed> {
        let on = (Kind::Int64, Device::Cuda(device));
        Ok(Graphed {
            eager,
            device,
            batch_size,
            side: CudaStream::from_pool(device)?,
            graph: None,
            warmup_left: WARMUP_STEPS,
            index: Tensor::zeros([batch_size as i64], on),
            loss: Tensor::zeros([1], (Kind::Float, Device::Cuda(device))),
            correct: Tensor::zeros([], on),
        })
    }

    /// The captured body: the eager step on the static index, into the static figures.
    fn body(eager: &mut dyn Step, net: &Net, b: &Batch<'_>, index: &Tensor, loss: &Tensor, correct: &Tensor) -> Result<()> {
        let _ = correct.shallow_clone().zero_();
        let mut tally = Tally { losses: loss.shallow_clone(), correct: correct.shallow_clone() };
        eager.step(net, &Batch { index, step: 0, ..*b }, &mut tally)
    }
}

impl Step for Graphed {
    fn name(&self) -> &'static str {
        "graphed"
    }

    fn begin_epoch(&mut self, epoch: usize, lr: f64) -> Result<()> {
        // The rate is baked into the captured update: a new rate, a new capture.
        if self.graph.is_some() {
            tracing::debug!("epoch {epoch}: learning rate {lr:e}, recapturing the step");
        }
        self.graph = None;
        self.eager.begin_epoch(epoch, lr)
    }

    fn step(&mut self, net: &Net, b: &Batch<'_>, tally: &mut Tally) -> Result<()> {
        if b.index.size()[0] != self.batch_size as i64 {
            return self.eager.step(net, b, tally); // the ragged last batch
        }
        if self.warmup_left > 0 {
            self.warmup_left -= 1;
            let eager = &mut self.eager;
            return on_stream(&self.side, self.device, || eager.step(net, b, tally));
        }
        self.index.copy_(b.index);
        if self.graph.is_none() {
            let mut graph = CudaGraph::new()?;
            let (eager, index, loss, correct) = (&mut self.eager, &self.index, &self.loss, &self.correct);
            capture(&mut graph, &self.side, MempoolId::PRIVATE, || Graphed::body(eager.as_mut(), net, b, index, loss, correct))?;
            self.graph = Some(graph);
        }
        self.graph.as_mut().expect("captured above").replay()?;
        tally.losses.get(b.step as i64).copy_(&self.loss.get(0));
        tally.correct += &self.correct;
        Ok(())
    }

    fn optimizer_state(&self) -> Vec<(String, Tensor)> {
        self.eager.optimizer_state()
    }

    fn restore_optimizer_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        self.eager.restore_optimizer_state(state)
    }
}

/// What in the recipe a captured step cannot replay: a value that changes every step would be
/// baked into the graph (OneCycleLR's rates, Adam's bias corrections), and so would the
/// augmentation's per-sample crops and flips. `None` when the recipe can be captured.
pub(crate) fn uncapturable(cfg: &TrainConfig) -> Option<&'static str> {
    let r = &cfg.recipe;
    if r.optimizer != OptimizerKind::Sgd {
        Some("Adam's step changes every step (its bias corrections)")
    } else if r.lr_schedule.per_step() {
        Some("OneCycleLR changes the rates every step")
    } else if !r.augment().is_none() {
        Some("augmentation draws new crops and flips every step")
    } else {
        None
    }
}

/// Whether `--cuda-graphs` can be honoured on `device`: `on` needs a CUDA device, the loaded
/// CUDA shim and a recipe it can capture ([`uncapturable`]). Checked before a run folder is
/// made, and again by [`wanted`].
///
/// # Errors
/// [`crate::Error::InvalidConfig`] for `--cuda-graphs on` on the CPU, without the shim, or with
/// a recipe it cannot capture.
pub(crate) fn check(cfg: &TrainConfig, device: Device) -> Result<()> {
    let (choice, bad) = (cfg.cuda_graphs, |expected: String| Err(crate::Error::InvalidConfig { field: "cuda-graphs", value: "on".into(), expected }));
    if let (CudaGraphs::On, Some(why)) = (choice, uncapturable(cfg)) {
        return bad(format!("a recipe it can capture: {why} (use --cuda-graphs off)"));
    }
    match (choice, device) {
        (CudaGraphs::On, Device::Cuda(_)) => match cuda_graph::status() {
            cuda_graph::ShimStatus::Loaded { .. } => Ok(()),
            other => bad(format!("the CUDA shim, which is {other}")),
        },
        (CudaGraphs::On, _) => {
            bad(format!("a CUDA device; this run trains on {} (use --device cuda, or --cuda-graphs off)", crate::device::device_name(device)))
        }
        _ => Ok(()),
    }
}

/// Whether a run on `device` uses the graphed step, given `--cuda-graphs`; says once in the log
/// why not where `auto` falls back to eager steps on CUDA.
///
/// # Errors
/// As [`check`].
pub(crate) fn wanted(cfg: &TrainConfig, device: Device) -> Result<bool> {
    check(cfg, device)?;
    match (cfg.cuda_graphs, device) {
        (CudaGraphs::Off, _) | (_, Device::Cpu | Device::Mps | Device::Vulkan) => Ok(false),
        (_, Device::Cuda(_)) if uncapturable(cfg).is_some() => {
            tracing::info!("CUDA graphs off: {}; training eagerly", uncapturable(cfg).unwrap_or_default());
            Ok(false)
        }
        (_, Device::Cuda(_)) => match cuda_graph::status() {
            cuda_graph::ShimStatus::Loaded { .. } => Ok(true),
            other => {
                tracing::info!("CUDA graphs off: the CUDA shim is {other}; training eagerly");
                Ok(false)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::RecipeConfig, recipe::schedule::LrScheduleKind};

    #[test]
    fn recipes_that_change_every_step_are_not_captured() {
        let with = |recipe: RecipeConfig| TrainConfig { recipe, cuda_graphs: CudaGraphs::On, ..TrainConfig::default() };
        let sgd = RecipeConfig { weight_decay: Some(5e-4), nesterov: true, label_smoothing: 0.1, lr_schedule: LrScheduleKind::Cosine, ..Default::default() };
        assert_eq!(uncapturable(&with(sgd)), None);
        for (recipe, why) in [
            (RecipeConfig { optimizer: OptimizerKind::Adamw, ..Default::default() }, "Adam"),
            (RecipeConfig { lr_schedule: LrScheduleKind::Onecycle, ..Default::default() }, "OneCycleLR"),
            (RecipeConfig { hflip: true, ..Default::default() }, "augmentation"),
        ] {
            let cfg = with(recipe);
            assert!(uncapturable(&cfg).is_some_and(|w| w.contains(why)), "{why}");
            let err = check(&cfg, Device::Cpu).unwrap_err().to_string();
            assert!(err.contains("cuda-graphs") && err.contains(why) && err.contains("--cuda-graphs off"), "{err}");
            // auto falls back to eager steps instead.
            assert!(!wanted(&TrainConfig { cuda_graphs: CudaGraphs::Auto, ..cfg }, Device::Cpu).unwrap());
        }
    }
}
