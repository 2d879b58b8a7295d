//! The one training configuration: defaults equal the reference program, validated once,
//! serialised with a run.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{
    data::{folder::ResizeFilter, DatasetKind},
    device::DeviceSpec,
    error::{Error, Result},
    recipe::{
        augment::MAX_PADDING,
        optim::{OptimizerKind, OptimizerSpec},
        schedule::{LrScheduleKind, ScheduleSpec},
    },
};

pub use crate::recipe::RecipeConfig;

/// The command-line name of a `--flag VALUE` choice (`cifar10`, `adamw`, `cosine`).
pub fn value_name<T: clap::ValueEnum>(value: &T) -> String {
    value.to_possible_value().expect("value enums have no skipped variants").get_name().to_string()
}

/// PyTorch's default CPU generator seed (`torch.initial_seed()` in a fresh process): the
/// reference program never calls `torch.manual_seed`, so this seed reproduces it unmodified.
pub const PYTORCH_DEFAULT_SEED: i64 = 67_280_421_310_721;

/// Which parameters `--freeze` holds fixed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Freeze {
    /// Train every layer.
    #[default]
    None,
    /// Hold the convolutional feature extractor (`conv1`, `conv2`) fixed; train `fc1`..`fc3`.
    Features,
}

/// Most epochs a run may ask for: every epoch's shuffle seed is drawn at the start, as the
/// reference's DataLoaders draw them (100,000 epochs: 2.4 MB of seeds, under a second).
pub const MAX_EPOCHS: usize = 100_000;
/// Largest batch: a batch is one tensor of `batch * 3 * 32 * 32` floats (1,000,000: 12 GB).
pub const MAX_BATCH_SIZE: usize = 1_000_000;
/// Most libtorch threads (`--threads`).
pub const MAX_THREADS: usize = 1024;
/// Most images a split may have (`--val-size`): `i32` indexing in libtorch kernels stays safe.
pub const MAX_IMAGES: usize = 100_000_000;

/// How each training step is computed (`--kernels`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// The PyTorch program's ops in its order and layout: bit for bit its numbers on the CPU.
    #[default]
    Reference,
    /// The same mathematics with faster kernels: the rounding differs from the reference, nothing
    /// else. On the CPU, this crate's own kernels (the batch in SIMD lanes, one thread barrier a
    /// step, the same bits at any thread count); elsewhere, libtorch's in channels-last layout.
    Fast,
}

/// Whether a CUDA run captures its step as a CUDA graph (`--cuda-graphs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CudaGraphs {
    /// On a CUDA device where the CUDA shim is loaded; eager otherwise (said once in the log).
    #[default]
    Auto,
    /// Always; an error on the CPU or without the shim.
    On,
    /// Never: eager steps.
    Off,
}

/// Everything that decides a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Folder holding `cifar-10-batches-bin/` (or the `.bin` files themselves).
    pub data_dir: PathBuf,
    /// Passes over the training set (reference: 50).
    pub epochs: usize,
    /// Images per SGD step (reference: 100).
    pub batch_size: usize,
    /// Initial learning rate (reference: `SGD(lr=0.001)`).
    pub learning_rate: f64,
    /// SGD momentum (reference: 0.9).
    pub momentum: f64,
    /// `StepLR(step_size=20)`: epochs between learning-rate decays.
    pub step_size: usize,
    /// `StepLR(gamma=0.1)`: factor applied at each decay.
    pub gamma: f64,
    /// `torch.manual_seed(seed)`: decides the initial weights and every epoch's shuffle.
    pub seed: i64,
    /// Where to train.
    pub device: DeviceSpec,
    /// libtorch intra-op threads; `None` keeps libtorch's default (the physical cores).
    pub threads: Option<usize>,
    /// Evaluate on the test set every N epochs as well as at the end; `None`: only at the end.
    pub eval_every: Option<usize>,
    /// The kind of dataset in `data_dir`.
    #[serde(default)]
    pub dataset: DatasetKind,
    /// Filter for resizing image-folder images that are not 32x32.
    #[serde(default)]
    pub resize_filter: ResizeFilter,
    /// Training images held out for validation each epoch (`random_split` seeded by `seed`);
    /// 0: none, the reference.
    #[serde(default)]
    pub val_size: usize,
    /// `--dataset folder` with one class-folder tree (`data_dir/<class>/...`, no `train/` and
    /// `test/`): this fraction of its images is the test set, split as
    /// `random_split(ImageFolder(data_dir), [n - k, k], generator=torch.Generator().manual_seed(seed))`
    /// with `k = round(fraction * n)` ([`crate::data::folder::load_tree`]). `None`: the tree has
    /// `train/` and `test/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_test: Option<f64>,
    /// Stop when validation accuracy has not improved for this many epochs, keeping the best
    /// epoch's weights; `None`: never (the reference). Needs `val_size`.
    #[serde(default)]
    pub early_stop_patience: Option<usize>,
    /// Save the training state every N epochs (and after the last, and on Ctrl-C).
    pub checkpoint_every: usize,
    /// Fine-tuning: start from these trained weights (a model file or a run directory) instead
    /// of PyTorch's initialisation.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// Fine-tuning: parameters held fixed.
    #[serde(default)]
    pub freeze: Freeze,
    /// How each step is computed; only `reference` is PyTorch's numbers to the bit.
    #[serde(default)]
    pub kernels: Kernels,
    /// On CUDA: capture the step as a CUDA graph (the same numbers as eager steps).
    #[serde(default)]
    pub cuda_graphs: CudaGraphs,
    /// On CUDA: cuDNN's deterministic algorithms and no benchmark search, so that runs repeat
    /// exactly (the CPU is deterministic already).
    #[serde(default)]
    pub deterministic: bool,
    /// The run directory (`config.json`, metrics, checkpoints); `None`: `runs/YYYYMMDD-HHMMSS`.
    pub out_dir: Option<PathBuf>,
    /// Also write TensorBoard event files into the run directory (`report::tensorboard`).
    #[serde(default)]
    pub tensorboard: bool,
    /// Augmentation, optimizer, schedule and loss beyond the tutorial (the default: the
    /// reference's).
    #[serde(default)]
    pub recipe: RecipeConfig,
    /// The lengths this run had before `train --resume DIR --epochs N` extended it, oldest
    /// first (empty for a run trained at its length from the start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extended_from: Vec<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data_dir: PathBuf::from("data"),
            epochs: 50,
            batch_size: 100,
            learning_rate: 1e-3,
            momentum: 0.9,
            step_size: 20,
            gamma: 0.1,
            seed: PYTORCH_DEFAULT_SEED,
            device: DeviceSpec::Auto,
            threads: None,
            eval_every: None,
            dataset: DatasetKind::Cifar10,
            resize_filter: ResizeFilter::Bilinear,
            val_size: 0,
            split_test: None,
            early_stop_patience: None,
            checkpoint_every: 1,
            init_from: None,
            freeze: Freeze::None,
            kernels: Kernels::Reference,
            cuda_graphs: CudaGraphs::Auto,
            deterministic: false,
            out_dir: None,
            tensorboard: false,
            recipe: RecipeConfig::default(),
            extended_from: Vec::new(),
        }
    }
}

impl TrainConfig {
    /// Checks every value once, before any work starts.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        fn bad(field: &'static str, value: impl ToString, expected: &str) -> Result<()> {
            Err(Error::InvalidConfig { field, value: value.to_string(), expected: expected.to_string() })
        }
        // Rates are applied to float32 tensors: beyond float32's range they are infinite or zero.
        let float32_pos = |x: f64| x.is_finite() && x >= f64::from(f32::MIN_POSITIVE) && x <= f64::from(f32::MAX);
        if !(1..=MAX_EPOCHS).contains(&self.epochs) {
            return bad("epochs", self.epochs, &format!("1 to {MAX_EPOCHS}"));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return bad("batch-size", self.batch_size, &format!("1 to {MAX_BATCH_SIZE}"));
        }
        if !float32_pos(self.learning_rate) {
            return bad("lr", format!("{:?}", self.learning_rate), "a number above 0 that float32 can hold (1.2e-38 to 3.4e38)");
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad("momentum", format!("{:?}", self.momentum), "a number in [0, 1)");
        }
        if self.step_size == 0 {
            return bad("step-size", self.step_size, "at least 1");
        }
        if !(float32_pos(self.gamma) && self.gamma <= 1.0) {
            return bad("gamma", format!("{:?}", self.gamma), "a number in (0, 1] that float32 can hold (at least 1.2e-38)");
        }
        if self.seed < 0 {
            return bad("seed", self.seed, "a non-negative integer");
        }
        if let Some(t) = self.threads.filter(|t| !(1..=MAX_THREADS).contains(t)) {
            return bad("threads", t, &format!("1 to {MAX_THREADS}"));
        }
        if self.val_size > MAX_IMAGES {
            return bad("val-size", self.val_size, &format!("at most {MAX_IMAGES}"));
        }
        if let Some(f) = self.split_test {
            if !(f > 0.0 && f < 1.0) {
                return bad("split-test", format!("{f:?}"), "a fraction strictly between 0 and 1 (e.g. 0.2)");
            }
            if self.dataset != DatasetKind::Folder {
                return bad("split-test", format!("{f:?}"), "--dataset folder: it splits one class-folder tree into train and test");
            }
        }
        if self.freeze != Freeze::None && self.init_from.is_none() {
            return bad("freeze", "features", "fine-tuning: --freeze needs trained weights (--from)");
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint-every", 0, "at least 1");
        }
        if self.eval_every == Some(0) {
            return bad("eval-every", 0, "at least 1");
        }
        match self.early_stop_patience {
            Some(0) => return bad("early-stop-patience", 0, "at least 1"),
            Some(p) if self.val_size == 0 => return bad("early-stop-patience", p, "needs a validation split (--val-size N)"),
            _ => {}
        }
        self.validate_recipe()
    }

    /// The recipe's checks: ranges, and flags that do not apply to the chosen optimizer or
    /// schedule (given with a value other than their default).
    fn validate_recipe(&self) -> Result<()> {
        fn bad(field: &'static str, value: impl ToString, expected: &str) -> Result<()> {
            Err(Error::InvalidConfig { field, value: value.to_string(), expected: expected.to_string() })
        }
        let (r, d) = (&self.recipe, RecipeConfig::default());
        let finite_non_negative = |x: f64| x.is_finite() && x >= 0.0;
        let unit = |x: f64| x.is_finite() && (0.0..1.0).contains(&x);
        let positive = |x: f64| x.is_finite() && x > 0.0 && x <= f64::from(f32::MAX);
        let sgd = r.optimizer == OptimizerKind::Sgd;
        let name = r.optimizer.pytorch_name();
        if let Some(p) = r.random_crop.filter(|&p| p > MAX_PADDING) {
            return bad("random-crop", p, &format!("a padding of 0 to {MAX_PADDING} pixels"));
        }
        if let Some(w) = r.weight_decay.filter(|&w| !finite_non_negative(w)) {
            return bad("weight-decay", format!("{w:?}"), "a number at least 0");
        }
        if !unit(r.label_smoothing) {
            return bad("label-smoothing", format!("{:?}", r.label_smoothing), "a number in [0, 1)");
        }
        let f = |x: f64| format!("{x:?}");
        if !sgd {
            let sgd_only = [
                ("momentum", self.momentum != TrainConfig::default().momentum, f(self.momentum)),
                ("dampening", r.dampening != d.dampening, f(r.dampening)),
                ("nesterov", r.nesterov, "true".to_string()),
            ];
            for (field, set, value) in sgd_only {
                if set {
                    return bad(field, value, &format!("only with --optimizer sgd; it does not apply to {name} (whose first moment is --betas)"));
                }
            }
            if !(unit(r.betas.0) && unit(r.betas.1)) {
                return bad("betas", format!("{:?},{:?}", r.betas.0, r.betas.1), "two numbers in [0, 1)");
            }
            if !finite_non_negative(r.eps) {
                return bad("eps", format!("{:?}", r.eps), "a number at least 0");
            }
        } else {
            let adam_only =
                [("betas", r.betas != d.betas, format!("{:?},{:?}", r.betas.0, r.betas.1)), ("eps", r.eps != d.eps, f(r.eps)), ("amsgrad", r.amsgrad, "true".to_string())];
            for (field, set, value) in adam_only {
                if set {
                    return bad(field, value, "only with --optimizer adam or adamw; it does not apply to SGD");
                }
            }
            if !(r.dampening.is_finite() && (0.0..=1.0).contains(&r.dampening)) {
                return bad("dampening", format!("{:?}", r.dampening), "a number in [0, 1]");
            }
            if r.nesterov && (self.momentum == 0.0 || r.dampening != 0.0) {
                return bad("nesterov", "true", "a momentum above 0 and zero dampening (PyTorch's rule)");
            }
        }
        let kind = r.lr_schedule;
        let schedule = format!("--lr-schedule {}", value_name(&kind));
        let uses = |kinds: &[LrScheduleKind]| kinds.contains(&kind);
        use LrScheduleKind::*;
        let not_for = |flag: &'static str, value: Option<String>, kinds: &[LrScheduleKind]| -> Result<()> {
            match value {
                Some(value) if !uses(kinds) => {
                    let names: Vec<String> = kinds.iter().map(value_name).collect();
                    bad(flag, value, &format!("only with --lr-schedule {}; it does not apply to {schedule}", names.join(" or ")))
                }
                _ => Ok(()),
            }
        };
        let list = |xs: &[String]| xs.join(",");
        let given = |set: bool, value: String| set.then_some(value);
        not_for("step-size", given(self.step_size != TrainConfig::default().step_size, self.step_size.to_string()), &[Step])?;
        not_for("gamma", given(self.gamma != TrainConfig::default().gamma, f(self.gamma)), &[Step, Multistep])?;
        not_for("milestones", given(!r.milestones.is_empty(), list(&r.milestones.iter().map(ToString::to_string).collect::<Vec<_>>())), &[Multistep, Piecewise])?;
        not_for("lr-factors", given(!r.lr_factors.is_empty(), list(&r.lr_factors.iter().map(|x| f(*x)).collect::<Vec<_>>())), &[Piecewise])?;
        not_for("eta-min", given(r.eta_min != d.eta_min, f(r.eta_min)), &[Cosine])?;
        for (flag, set, value) in [
            ("pct-start", r.pct_start != d.pct_start, f(r.pct_start)),
            ("div-factor", r.div_factor != d.div_factor, f(r.div_factor)),
            ("final-div-factor", r.final_div_factor != d.final_div_factor, f(r.final_div_factor)),
            ("cycle-momentum", r.cycle_momentum != d.cycle_momentum, r.cycle_momentum.to_string()),
        ] {
            not_for(flag, given(set, value), &[Onecycle])?;
        }
        if r.warmup_start_factor != d.warmup_start_factor && r.warmup_epochs == 0 {
            return bad("warmup-start-factor", f(r.warmup_start_factor), "only with --warmup-epochs N (it is the warm-up's first factor)");
        }
        if !(r.warmup_start_factor.is_finite() && r.warmup_start_factor > 0.0 && r.warmup_start_factor <= 1.0) {
            return bad("warmup-start-factor", format!("{:?}", r.warmup_start_factor), "a number in (0, 1] (LinearLR's rule)");
        }
        if !finite_non_negative(r.eta_min) {
            return bad("eta-min", format!("{:?}", r.eta_min), "a number at least 0");
        }
        if let Some(f) = r.lr_factors.iter().find(|&&f| !positive(f)) {
            return bad("lr-factors", format!("{f:?}"), "numbers above 0");
        }
        if !(r.pct_start.is_finite() && r.pct_start > 0.0 && r.pct_start < 1.0) {
            return bad("pct-start", format!("{:?}", r.pct_start), "a number in (0, 1)");
        }
        for (flag, x) in [("div-factor", r.div_factor), ("final-div-factor", r.final_div_factor)] {
            if !positive(x) {
                return bad(flag, format!("{x:?}"), "a number above 0");
            }
        }
        // Milestones, warm-up length, OneCycle's phases (the last needs the steps per epoch:
        // checked again with the data, see `check_with_data`).
        self.check_schedule(Some(if kind == Onecycle { 1 << 20 } else { 1 }))
    }

    /// The schedule's checks that need the number of training images (OneCycle's phases);
    /// before any folder is made.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the flag.
    pub fn check_with_data(&self, train_images: usize) -> Result<()> {
        self.check_schedule(Some(train_images.div_ceil(self.batch_size).max(1)))
    }

    fn check_schedule(&self, steps_per_epoch: Option<usize>) -> Result<()> {
        let Some(steps) = steps_per_epoch else { return Ok(()) };
        // (Before the data is known, OneCycle is checked with many steps per epoch, for which
        // only its data-dependent check cannot fail.)
        match self.schedule_spec(steps).problem() {
            Some((field, value, expected)) => Err(Error::InvalidConfig { field, value, expected }),
            None => Ok(()),
        }
    }

    /// The run's recipe in PyTorch's terms, one line (logged when a run starts):
    /// `transforms: RandomCrop(32, padding=4), RandomHorizontalFlip(); optimizer: SGD(lr=0.05,
    /// momentum=0.9, nesterov=True, weight_decay=0.0005); schedule: CosineAnnealingLR(T_max=50,
    /// eta_min=0); loss: CrossEntropyLoss(label_smoothing=0.1)`.
    pub fn recipe_pytorch(&self) -> String {
        let (r, o) = (&self.recipe, self.optimizer_spec());
        let mut transforms = Vec::new();
        if let Some(p) = r.random_crop {
            transforms.push(format!("RandomCrop(32, padding={p})"));
        }
        if r.hflip {
            transforms.push("RandomHorizontalFlip()".to_string());
        }
        transforms.push("ToTensor(), Normalize(0.5, 0.5)".to_string());
        let optimizer = match o.kind {
            OptimizerKind::Sgd => format!(
                "SGD(lr={:?}, momentum={:?}{}{}, weight_decay={:?})",
                o.lr,
                o.momentum,
                if o.dampening != 0.0 { format!(", dampening={:?}", o.dampening) } else { String::new() },
                if o.nesterov { ", nesterov=True" } else { "" },
                o.weight_decay
            ),
            kind => format!(
                "{}(lr={:?}, betas=({:?}, {:?}), eps={:?}, weight_decay={:?}{})",
                kind.pytorch_name(),
                o.lr,
                o.momentum,
                o.beta2,
                o.eps,
                o.weight_decay,
                if o.amsgrad { ", amsgrad=True" } else { "" }
            ),
        };
        let main = match r.lr_schedule {
            LrScheduleKind::Step => format!("StepLR(step_size={}, gamma={:?})", self.step_size, self.gamma),
            LrScheduleKind::Multistep => format!("MultiStepLR(milestones={:?}, gamma={:?})", r.milestones, self.gamma),
            LrScheduleKind::Cosine => format!("CosineAnnealingLR(T_max={}, eta_min={:?})", self.epochs.saturating_sub(r.warmup_epochs), r.eta_min),
            LrScheduleKind::Onecycle => format!(
                "OneCycleLR(max_lr={:?}, pct_start={:?}, div_factor={:?}, final_div_factor={:?}, cycle_momentum={}) per batch",
                self.learning_rate,
                r.pct_start,
                r.div_factor,
                r.final_div_factor,
                if r.cycle_momentum { "True" } else { "False" }
            ),
            LrScheduleKind::Piecewise => format!("LambdaLR(factors {:?} from milestones {:?})", r.lr_factors, r.milestones),
            LrScheduleKind::Constant => "none".to_string(),
        };
        let schedule = match r.warmup_epochs {
            0 => main,
            w => format!("LinearLR(start_factor={:?}, total_iters={w}) then {main}", r.warmup_start_factor),
        };
        let loss = match r.label_smoothing {
            0.0 => "CrossEntropyLoss()".to_string(),
            eps => format!("CrossEntropyLoss(label_smoothing={eps:?})"),
        };
        format!("transforms: {}; optimizer: {optimizer}; schedule: {schedule}; loss: {loss}", transforms.join(", "))
    }

    /// The optimizer's hyperparameters at the start of the run (before any schedule).
    pub fn optimizer_spec(&self) -> OptimizerSpec {
        let r = &self.recipe;
        let sgd = r.optimizer == OptimizerKind::Sgd;
        OptimizerSpec {
            kind: r.optimizer,
            lr: self.learning_rate,
            momentum: if sgd { self.momentum } else { r.betas.0 },
            dampening: r.dampening,
            nesterov: r.nesterov,
            weight_decay: r.weight_decay(),
            beta2: r.betas.1,
            eps: r.eps,
            amsgrad: r.amsgrad,
        }
    }

    /// The learning-rate schedule's spec, for epochs of `steps_per_epoch` steps.
    pub fn schedule_spec(&self, steps_per_epoch: usize) -> ScheduleSpec {
        ScheduleSpec {
            recipe: self.recipe.clone(),
            lr: self.learning_rate,
            momentum: self.optimizer_spec().momentum,
            epochs: self.epochs,
            steps_per_epoch,
            step_size: self.step_size,
            gamma: self.gamma,
        }
    }

    /// Whether the test set is evaluated after `epoch` (1-based): every `eval_every` epochs and
    /// after the last.
    pub fn evaluates_after(&self, epoch: usize) -> bool {
        epoch == self.epochs || self.eval_every.is_some_and(|n| epoch % n == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_reference_schedule_and_valid() {
        let c = TrainConfig::default();
        assert_eq!((c.epochs, c.batch_size, c.step_size), (50, 100, 20));
        assert_eq!((c.learning_rate, c.momentum, c.gamma), (1e-3, 0.9, 0.1));
        c.validate().unwrap();
    }

    #[test]
    fn each_bad_value_is_named() {
        let cases: [(&str, fn(&mut TrainConfig)); 19] = [
            ("checkpoint-every", |c| c.checkpoint_every = 0),
            ("epochs", |c| c.epochs = 0),
            ("batch-size", |c| c.batch_size = 0),
            ("lr", |c| c.learning_rate = -0.1),
            ("lr", |c| c.learning_rate = f64::NAN),
            ("momentum", |c| c.momentum = 1.0),
            ("step-size", |c| c.step_size = 0),
            ("gamma", |c| c.gamma = 0.0),
            ("threads", |c| c.threads = Some(0)),
            ("eval-every", |c| c.eval_every = Some(0)),
            ("early-stop-patience", |c| (c.val_size, c.early_stop_patience) = (100, Some(0))),
            ("early-stop-patience", |c| c.early_stop_patience = Some(3)),
            // Issue 13: values that panicked or ran away before.
            ("batch-size", |c| c.batch_size = 1 << 63),
            ("epochs", |c| c.epochs = 1_000_000_000_000),
            ("lr", |c| c.learning_rate = 1e308),
            ("lr", |c| c.learning_rate = 1e-300),
            ("gamma", |c| c.gamma = 1e-300),
            ("threads", |c| c.threads = Some(2_147_483_648)),
            ("val-size", |c| c.val_size = usize::MAX),
        ];
        for (field, set) in cases {
            let mut c = TrainConfig::default();
            set(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid {field} =")), "{err}");
        }
    }

    #[test]
    fn the_recipe_reads_as_pytorch_code() {
        let reference = TrainConfig::default().recipe_pytorch();
        assert_eq!(
            reference,
            "transforms: ToTensor(), Normalize(0.5, 0.5); optimizer: SGD(lr=0.001, momentum=0.9, weight_decay=0.0); \
             schedule: StepLR(step_size=20, gamma=0.1); loss: CrossEntropyLoss()"
        );
        let recipe = RecipeConfig {
            random_crop: Some(4),
            hflip: true,
            optimizer: OptimizerKind::Adamw,
            lr_schedule: LrScheduleKind::Cosine,
            warmup_epochs: 5,
            label_smoothing: 0.1,
            ..RecipeConfig::default()
        };
        let text = TrainConfig { recipe, ..TrainConfig::default() }.recipe_pytorch();
        for part in [
            "RandomCrop(32, padding=4), RandomHorizontalFlip()",
            "AdamW(lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)",
            "LinearLR(start_factor=0.3333333333333333, total_iters=5) then CosineAnnealingLR(T_max=45, eta_min=0.0)",
            "CrossEntropyLoss(label_smoothing=0.1)",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }

    #[test]
    fn evaluates_every_n_and_at_the_end() {
        let c = TrainConfig { epochs: 7, eval_every: Some(3), ..TrainConfig::default() };
        let at: Vec<_> = (1..=7).filter(|&e| c.evaluates_after(e)).collect();
        assert_eq!(at, [3, 6, 7]);
        let c = TrainConfig { epochs: 7, ..TrainConfig::default() };
        assert_eq!((1..=7).filter(|&e| c.evaluates_after(e)).count(), 1);
    }

    #[test]
    fn round_trips_through_json() {
        let c = TrainConfig {
            device: DeviceSpec::Cuda(1),
            threads: Some(2),
            dataset: DatasetKind::Folder,
            resize_filter: ResizeFilter::Lanczos3,
            val_size: 5000,
            early_stop_patience: Some(4),
            ..TrainConfig::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""dataset":"folder""#) && json.contains(r#""resize_filter":"lanczos3""#), "{json}");
        let back: TrainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn a_config_without_the_data_fields_reads_as_the_reference() {
        let mut json = serde_json::to_value(TrainConfig::default()).unwrap();
        for field in ["dataset", "resize_filter", "val_size", "early_stop_patience"] {
            json.as_object_mut().unwrap().remove(field);
        }
        assert_eq!(serde_json::from_value::<TrainConfig>(json).unwrap(), TrainConfig::default());
    }
}
