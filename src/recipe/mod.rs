//! Training recipes beyond the tutorial, each a pure piece the training loop and the steps call,
//! each computing what its PyTorch or torchvision counterpart computes (and mirrored by the
//! PyTorch side of the parity proof, `scripts/pytorch_reference.py`):
//!
//! * [`augment`]: `RandomCrop(32, padding)` and `RandomHorizontalFlip()`, with the reference's
//!   draws from the global generator;
//! * [`optim`]: `SGD` (momentum, dampening, Nesterov, weight decay), `Adam`, `AdamW`;
//! * [`schedule`]: `StepLR`, `MultiStepLR`, `CosineAnnealingLR`, `OneCycleLR`, a piecewise
//!   `LambdaLR`, and a `LinearLR` warm-up through `SequentialLR`;
//! * [`loss`]: cross-entropy with label smoothing.
//!
//! [`RecipeConfig`] holds the settings (a field of [`crate::config::TrainConfig`], which builds
//! each piece's spec); the loop ([`crate::train`]) owns the draws and the schedule, the step
//! kinds own the optimizer.

pub mod augment;
pub mod loss;
pub mod optim;
pub mod schedule;

use serde::{Deserialize, Serialize};

use self::{augment::Augment, loss::Objective, optim::OptimizerKind, schedule::LrScheduleKind};

/// The training recipe: augmentation ([`crate::recipe::augment`]), the optimizer
/// ([`crate::recipe::optim`]), the learning-rate schedule ([`crate::recipe::schedule`]) and label
/// smoothing ([`crate::recipe::loss`]). `Default` is the reference program: no augmentation,
/// `SGD(momentum)` (with `TrainConfig::momentum`), `StepLR` (with `step_size` and `gamma`),
/// plain cross-entropy. Every field names PyTorch's argument.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecipeConfig {
    /// `RandomCrop(32, padding=P)` of each training image: `Some(P)`.
    pub random_crop: Option<u32>,
    /// `RandomHorizontalFlip()` of each training image.
    pub hflip: bool,
    /// `torch.optim` class.
    pub optimizer: OptimizerKind,
    /// `weight_decay`; `None`: the class's default (0, AdamW 0.01).
    pub weight_decay: Option<f64>,
    /// SGD's `dampening`.
    pub dampening: f64,
    /// SGD's `nesterov`.
    pub nesterov: bool,
    /// Adam's and AdamW's `betas`.
    pub betas: (f64, f64),
    /// Adam's and AdamW's `eps`.
    pub eps: f64,
    /// Adam's and AdamW's `amsgrad`.
    pub amsgrad: bool,
    /// `CrossEntropyLoss(label_smoothing=...)`.
    pub label_smoothing: f64,
    /// The learning-rate schedule.
    pub lr_schedule: LrScheduleKind,
    /// `multistep` and `piecewise`: epochs (of the main schedule) where the rate changes.
    pub milestones: Vec<usize>,
    /// `piecewise`: the factor of `lr` before the first milestone, after it, ...
    pub lr_factors: Vec<f64>,
    /// `cosine`: `eta_min`.
    pub eta_min: f64,
    /// Epochs of `LinearLR` warm-up in front of the schedule (0: none).
    pub warmup_epochs: usize,
    /// The warm-up's `start_factor` (PyTorch's default, 1/3).
    pub warmup_start_factor: f64,
    /// `onecycle`: `pct_start`.
    pub pct_start: f64,
    /// `onecycle`: `div_factor` (the first rate is `lr / div_factor`).
    pub div_factor: f64,
    /// `onecycle`: `final_div_factor` (the last rate is the first `/ final_div_factor`).
    pub final_div_factor: f64,
    /// `onecycle`: `cycle_momentum` (SGD's momentum or Adam's beta1 between 0.85 and 0.95).
    pub cycle_momentum: bool,
}

impl Default for RecipeConfig {
    fn default() -> Self {
        RecipeConfig {
            random_crop: None,
            hflip: false,
            optimizer: OptimizerKind::Sgd,
            weight_decay: None,
            dampening: 0.0,
            nesterov: false,
            betas: (0.9, 0.999),
            eps: 1e-8,
            amsgrad: false,
            label_smoothing: 0.0,
            lr_schedule: LrScheduleKind::Step,
            milestones: Vec::new(),
            lr_factors: Vec::new(),
            eta_min: 0.0,
            warmup_epochs: 0,
            warmup_start_factor: 1.0 / 3.0,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
            cycle_momentum: true,
        }
    }
}

impl RecipeConfig {
    /// The augmentation of training samples.
    pub fn augment(&self) -> Augment {
        Augment { random_crop: self.random_crop, hflip: self.hflip }
    }

    /// The loss.
    pub fn objective(&self) -> Objective {
        Objective { label_smoothing: self.label_smoothing }
    }

    /// `weight_decay`, the class's default when not set.
    pub fn weight_decay(&self) -> f64 {
        self.weight_decay.unwrap_or_else(|| self.optimizer.default_weight_decay())
    }
}
