//! The command line: `tch-cifar10 train`, `download`, `plot`, `info`, `eval`, `predict`,
//! `export` and `sweep`.
//! Argument structs convert into the library's one [`TrainConfig`]; their defaults are read from
//! it, so they cannot drift.

use std::path::{Path, PathBuf};

use clap::{ArgAction, Args, Parser, Subcommand};
use tch_cifar10::{
    sweep::{
        prune::PruneRule,
        space::{self, Param, Space, Spec},
        slurm::SlurmOptions, SweepOptions, SweepRequest, SweepSpec,
    },
    config::{CudaGraphs, Freeze, Kernels, RecipeConfig},
    recipe::{
        augment::{Augment, CROP_FLIP},
        optim::OptimizerKind,
        schedule::LrScheduleKind,
    },
    data::download::{CIFAR10_URL, DEFAULT_MAX_DOWNLOAD_BYTES, DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME, MAX_BYTES_ENV, MD5_ENV, SHA256_ENV, URL_ENV},
    calibrate::CalibrateOptions,
    eval::EvalOptions,
    export::{self, ExportFormat, ExportOptions},
    predict::{self, PredictOptions},
    Checksum, DatasetKind, DeviceSpec, DownloadOptions, ResizeFilter, RunExtras, TrainConfig,
};

/// The classic PyTorch CIFAR-10 LeNet training program on libtorch, with the same numbers as PyTorch.
#[derive(Debug, Parser)]
#[command(name = "tch-cifar10", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace). `RUST_LOG` (e.g. `RUST_LOG=debug`)
    /// overrides the level set by -v and -q.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print only the result: no progress bars and no per-epoch lines; stdout carries the
    /// command's result and nothing else (for train, the test accuracy and the accuracy per
    /// class); stderr only warnings and errors (-qq: errors only). -q and --quiet are the same
    /// flag.
    ///
    /// Without it, progress bars are drawn when stderr is a terminal, and one log line per epoch
    /// is written otherwise (CI logs, files).
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the reference Net (50 epochs of SGD with momentum and StepLR by default), then test it.
    Train(TrainArgs),
    /// Download the CIFAR-10 binary release, verify its checksum and unpack it (nothing is
    /// fetched when a complete copy is already there).
    Download(DownloadArgs),
    /// Draw loss and accuracy per epoch of one or more runs (their metrics.jsonl) into one PNG.
    Plot(PlotArgs),
    /// Fine-tune a trained model on a dataset (usually `--dataset folder`): its weights, a new
    /// fc3 for the dataset's classes, optionally frozen conv layers, then the same loop as train.
    Finetune(FinetuneArgs),
    /// Show the libtorch version, CUDA support, visible GPUs and CPU threads.
    Info(InfoArgs),
    /// Train over a grid or random draws of hyperparameters and several seeds, each trial a run
    /// directory under OUT/trials/, then rank the settings (mean ± std over seeds) and chart them.
    /// Rerunning the same command resumes it.
    Sweep(Box<SweepArgs>),
    /// Evaluate a saved model on a test set (CIFAR-10 or an image folder; a run's own by
    /// default): loss, accuracy, per-class accuracy, confusion matrix.
    Eval(EvalArgs),
    /// Classify images (PNG, JPEG, BMP, PPM, PGM, TIFF, WebP) with a saved model: the top-k
    /// classes with softmax probabilities.
    Predict(PredictArgs),
    /// Write a saved model as TorchScript or ONNX for deployment (input: float32 [batch, 3, 32,
    /// 32] normalised as in training; output: logits [batch, classes]; any batch size).
    Export(ExportArgs),
    /// Print a shell completion script for SHELL on stdout (e.g. `tch-cifar10 completions bash >
    /// ~/.local/share/bash-completion/completions/tch-cifar10`).
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout (e.g. `tch-cifar10 man > ~/.local/share/man/man1/tch-cifar10.1`).
    Man,
    /// Temperature scaling: fit one temperature T on a validation split (logits / T before the
    /// softmax, minimising the NLL), report the calibration of the test split before and after,
    /// and store T in the model file, which eval and predict then apply.
    Calibrate(CalibrateArgs),
}

/// `calibrate`'s flags.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Model file (model.safetensors, or a PyTorch state_dict), or a run directory holding
    /// model.safetensors (whose config.json gives the data and the validation split).
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// The dataset's folder, as `train --data-dir` (the training split is read for the
    /// validation images) [default: a run directory's own, else data].
    #[arg(long, value_name = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// cifar10 or folder [default: a run directory's own, else cifar10].
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Filter that resizes folder images that are not 32x32 [default: a run directory's own,
    /// else bilinear].
    #[arg(long, value_enum)]
    pub resize_filter: Option<ResizeFilter>,
    /// Validation images held out of the training split, as `train --val-size` [default: the
    /// run's; a run trained without one, or a model file, needs it, and then the model must not
    /// have trained on those images].
    #[arg(long, value_name = "N")]
    pub val_size: Option<usize>,
    /// Seed of the held-out split, as `train --seed` [default: the run's].
    #[arg(long, allow_hyphen_values = true)]
    pub seed: Option<i64>,
    /// The calibrated model file to write [default: the model file itself, for a .safetensors].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// How the forward pass is computed, as `eval --kernels`.
    #[arg(long, value_enum, default_value_t = Kernels::Reference)]
    pub kernels: Kernels,
    /// Images per forward pass.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value_t = TrainConfig::default().device)]
    pub device: DeviceSpec,
    /// Class names, comma-separated, in label order [default: the model file's].
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub classes: Option<Vec<String>>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl From<&CalibrateArgs> for CalibrateOptions {
    fn from(a: &CalibrateArgs) -> CalibrateOptions {
        CalibrateOptions {
            eval: EvalOptions {
                data_dir: a.data_dir.clone(),
                dataset: a.dataset,
                resize_filter: a.resize_filter,
                device: a.device,
                batch_size: a.batch_size,
                classes: a.classes.clone(),
                kernels: a.kernels,
                ..EvalOptions::new(&a.checkpoint)
            },
            val_size: a.val_size,
            seed: a.seed,
            out: a.out.clone(),
        }
    }
}

/// `train`'s flags; defaults are the reference program's.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Folder holding `cifar-10-batches-bin/` or `cifar-10-batches-py/` (or their files
    /// themselves); with `--dataset folder`, holding `train/<class>/` and `test/<class>/`
    /// [default: data; a resumed run: the run's, and another folder must hold the same data].
    #[arg(long, value_name = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// cifar10: the official binary files; folder: image folders as torchvision's ImageFolder
    /// reads them (PNG, JPEG, BMP, PPM, PGM, TIFF, WebP), classes from the sorted subfolder names
    /// (the last layer gets that many outputs).
    #[arg(long, value_enum, default_value_t = TrainConfig::default().dataset)]
    pub dataset: DatasetKind,
    /// Filter that resizes folder images that are not 32x32 (bilinear is antialiased, as
    /// torchvision's Resize).
    #[arg(long, value_enum, default_value_t = TrainConfig::default().resize_filter)]
    pub resize_filter: ResizeFilter,
    /// Download and verify CIFAR-10 into --data-dir first, unless a complete copy is there.
    #[arg(long)]
    pub download: bool,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Hold out N training images (a seeded random split, as torch's random_split) and report
    /// validation loss and accuracy after each epoch. 0: none.
    #[arg(long, value_name = "N", default_value_t = TrainConfig::default().val_size)]
    pub val_size: usize,
    /// With --dataset folder and one class-folder tree (DIR/<class>/..., no train/ and test/):
    /// test on this fraction of its images, split by --seed as torch's random_split.
    #[arg(long, value_name = "FRACTION")]
    pub split_test: Option<f64>,
    /// Stop when validation accuracy has not improved for P epochs, keeping the best epoch's
    /// weights (needs --val-size).
    #[arg(long, value_name = "P")]
    pub early_stop_patience: Option<usize>,
    /// Passes over the training set [default: 50; with --resume: the run's, and a larger N
    /// trains the run (finished or not) to N epochs].
    #[arg(long, value_name = "EPOCHS")]
    pub epochs: Option<usize>,
    /// Images per SGD step.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// Initial learning rate.
    #[arg(long, default_value_t = TrainConfig::default().learning_rate, allow_hyphen_values = true)]
    pub lr: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = TrainConfig::default().momentum, allow_hyphen_values = true)]
    pub momentum: f64,
    /// StepLR: epochs between learning-rate decays.
    #[arg(long, default_value_t = TrainConfig::default().step_size)]
    pub step_size: usize,
    /// StepLR: factor applied to the learning rate at each decay.
    #[arg(long, default_value_t = TrainConfig::default().gamma, allow_hyphen_values = true)]
    pub gamma: f64,
    /// `torch.manual_seed(seed)`; the default is PyTorch's own unseeded default, so a run without
    /// --seed matches the reference program as written.
    #[arg(long, default_value_t = TrainConfig::default().seed, allow_hyphen_values = true)]
    pub seed: i64,
    /// auto (CUDA when available), cpu, cuda or cuda:N [default: auto; a resumed run: the run's].
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// libtorch intra-op threads, and the worker threads of --kernels fast on the CPU (at most
    /// one per CPU) [default: libtorch's, the physical cores; a resumed run: the run's, which a
    /// reference-mode run on the CPU must keep].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also evaluate on the test set every N epochs.
    #[arg(long, value_name = "N")]
    pub eval_every: Option<usize>,
    /// Save the training state every N epochs (always after the last, and on Ctrl-C).
    #[arg(long, value_name = "N", default_value_t = TrainConfig::default().checkpoint_every)]
    pub checkpoint_every: usize,
    /// Run directory for config.json, metrics and checkpoints [default: runs/YYYYMMDD-HHMMSS].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// How each step is computed: reference (PyTorch's ops, bit for bit its numbers on the CPU)
    /// or fast (the same mathematics with faster kernels, the rounding differs: on the CPU our
    /// own, the same bits at any --threads; on CUDA libtorch's in channels-last layout)
    /// [default: reference; a resumed run keeps its own, and another value is refused].
    #[arg(long, value_enum)]
    pub kernels: Option<Kernels>,
    /// On CUDA, capture each step as a CUDA graph and replay it (the same numbers as eager
    /// steps, far fewer kernel launches): auto (when the CUDA shim is loaded), on (an error
    /// where it cannot be), off [default: auto].
    #[arg(long, value_enum)]
    pub cuda_graphs: Option<CudaGraphs>,
    /// On CUDA, cuDNN's deterministic algorithms and no benchmark search, so runs repeat exactly.
    #[arg(long)]
    pub deterministic: bool,
    /// Continue the run in DIR from its last saved state, with its saved settings (only
    /// --device, --threads, --data-dir (the same data), --cuda-graphs, --deterministic, and
    /// --kernels equal to the run's may be given too). The result equals the uninterrupted run's
    /// bit for bit on the same kind of device with the same data and kernels; a reference-mode
    /// run on the CPU also keeps its thread count (libtorch's sums depend on it: another
    /// --threads is refused there). With --epochs N above the run's length, trains it
    /// (finished or not) to N epochs.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "batch_size", "lr", "momentum", "step_size", "gamma", "seed",
        "eval_every", "checkpoint_every", "out", "dataset", "resize_filter", "download", "val_size",
        "early_stop_patience", "steps_jsonl", "tensorboard", "augment", "random_crop", "hflip", "optimizer",
        "weight_decay", "dampening", "nesterov", "betas", "eps", "amsgrad", "label_smoothing", "lr_schedule",
        "milestones", "lr_factors", "eta_min", "warmup_epochs", "warmup_start_factor", "pct_start", "div_factor",
        "final_div_factor", "cycle_momentum",
    ])]
    pub resume: Option<PathBuf>,
    /// Also write TensorBoard event files (per-epoch loss, accuracy and learning rate, and the
    /// hyperparameters for the HParams view) into the run directory: `tensorboard --logdir runs`.
    #[arg(long)]
    pub tensorboard: bool,
    /// Also write every step's loss as JSON lines, `{"epoch", "step", "loss"}` (for
    /// scripts/compare-pytorch and scripts/dev/compare_kernels.py).
    #[arg(long, value_name = "PATH")]
    pub steps_jsonl: Option<PathBuf>,
    #[command(flatten)]
    pub recipe: RecipeArgs,
}

/// `--augment`: a named set of augmentations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AugmentPreset {
    /// None (the reference).
    None,
    /// The standard CIFAR-10 augmentation: RandomCrop(32, padding=4) and RandomHorizontalFlip().
    CropFlip,
}

/// The recipe flags of `train`, `finetune` and `sweep` (see `docs/recipes.md`); each names
/// PyTorch's argument, and each default is the reference program's.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Recipe (augmentation, optimizer, schedule, loss)")]
pub struct RecipeArgs {
    /// crop-flip: torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip() on each
    /// training image (the same as --random-crop 4 --hflip); none [default: none].
    #[arg(long, value_enum, value_name = "PRESET", conflicts_with_all = ["random_crop", "hflip"])]
    pub augment: Option<AugmentPreset>,
    /// RandomCrop(32, padding=PAD): pad each training image with PAD zero pixels, cut a random
    /// 32x32 window.
    #[arg(long, value_name = "PAD")]
    pub random_crop: Option<u32>,
    /// RandomHorizontalFlip(): mirror each training image with probability 0.5.
    #[arg(long)]
    pub hflip: bool,
    /// The torch.optim class: sgd (the reference), adam, adamw.
    #[arg(long, value_enum, default_value_t = RecipeConfig::default().optimizer)]
    pub optimizer: OptimizerKind,
    /// weight_decay: L2 added to the gradient (sgd, adam) or decoupled (adamw) [default: 0,
    /// adamw 0.01].
    #[arg(long, value_name = "X", allow_hyphen_values = true)]
    pub weight_decay: Option<f64>,
    /// SGD's dampening of the momentum.
    #[arg(long, value_name = "X", default_value_t = RecipeConfig::default().dampening, allow_hyphen_values = true)]
    pub dampening: f64,
    /// SGD's Nesterov momentum (needs a momentum and zero dampening).
    #[arg(long)]
    pub nesterov: bool,
    /// Adam's and AdamW's betas [default: 0.9,0.999].
    #[arg(long, value_name = "B1,B2", value_parser = parse_betas, allow_hyphen_values = true)]
    pub betas: Option<(f64, f64)>,
    /// Adam's and AdamW's eps.
    #[arg(long, value_name = "X", default_value_t = RecipeConfig::default().eps, allow_hyphen_values = true)]
    pub eps: f64,
    /// Adam's and AdamW's AMSGrad variant.
    #[arg(long)]
    pub amsgrad: bool,
    /// CrossEntropyLoss(label_smoothing=EPS), in [0, 1).
    #[arg(long, value_name = "EPS", default_value_t = RecipeConfig::default().label_smoothing, allow_hyphen_values = true)]
    pub label_smoothing: f64,
    /// The learning-rate schedule: step (StepLR, the reference), multistep (MultiStepLR),
    /// cosine (CosineAnnealingLR over the run), onecycle (OneCycleLR with max_lr = --lr, stepped
    /// every batch), piecewise (LambdaLR: --lr times --lr-factors between --milestones),
    /// constant.
    #[arg(long, value_enum, value_name = "SCHEDULE", default_value_t = RecipeConfig::default().lr_schedule)]
    pub lr_schedule: LrScheduleKind,
    /// multistep and piecewise: the epochs where the rate changes, counted after the warm-up
    /// (for example 20,40).
    #[arg(long, value_name = "EPOCHS", value_delimiter = ',')]
    pub milestones: Vec<usize>,
    /// piecewise: the factor of --lr before the first milestone, after it, ... (one more than
    /// the milestones; the tutorial's function is --lr 0.001 --milestones 20,40 --lr-factors 1,10,1).
    #[arg(long, value_name = "FACTORS", value_delimiter = ',', allow_hyphen_values = true)]
    pub lr_factors: Vec<f64>,
    /// cosine: eta_min, the last rate.
    #[arg(long, value_name = "X", default_value_t = RecipeConfig::default().eta_min, allow_hyphen_values = true)]
    pub eta_min: f64,
    /// A linear warm-up over the first N epochs (LinearLR, then the schedule through
    /// SequentialLR).
    #[arg(long, value_name = "N", default_value_t = RecipeConfig::default().warmup_epochs)]
    pub warmup_epochs: usize,
    /// The warm-up's first factor of --lr (LinearLR's start_factor) [default: 1/3].
    #[arg(long, value_name = "X", allow_hyphen_values = true)]
    pub warmup_start_factor: Option<f64>,
    /// onecycle: pct_start, the fraction of the steps that raise the rate.
    #[arg(long, value_name = "X", default_value_t = RecipeConfig::default().pct_start, allow_hyphen_values = true)]
    pub pct_start: f64,
    /// onecycle: div_factor; the first rate is --lr / div_factor.
    #[arg(long, value_name = "X", default_value_t = RecipeConfig::default().div_factor, allow_hyphen_values = true)]
    pub div_factor: f64,
    /// onecycle: final_div_factor; the last rate is the first / final_div_factor.
    #[arg(long, value_name = "X", default_value_t = RecipeConfig::default().final_div_factor, allow_hyphen_values = true)]
    pub final_div_factor: f64,
    /// onecycle: cycle_momentum, SGD's momentum (or Adam's beta1) from 0.95 to 0.85 and back.
    #[arg(long, value_name = "BOOL", default_value_t = RecipeConfig::default().cycle_momentum, action = ArgAction::Set)]
    pub cycle_momentum: bool,
}

/// `--betas B1,B2`.
fn parse_betas(text: &str) -> Result<(f64, f64), String> {
    let parts: Vec<&str> = text.split(',').collect();
    let [b1, b2] = parts[..] else { return Err(format!("expected two numbers B1,B2, got {text:?}")) };
    let num = |t: &str| t.trim().parse::<f64>().map_err(|e| format!("{t:?}: {e}"));
    Ok((num(b1)?, num(b2)?))
}

impl From<RecipeArgs> for RecipeConfig {
    fn from(a: RecipeArgs) -> RecipeConfig {
        let d = RecipeConfig::default();
        let augment = match a.augment {
            Some(AugmentPreset::CropFlip) => CROP_FLIP,
            Some(AugmentPreset::None) | None => Augment { random_crop: a.random_crop, hflip: a.hflip },
        };
        RecipeConfig {
            random_crop: augment.random_crop,
            hflip: augment.hflip,
            optimizer: a.optimizer,
            weight_decay: a.weight_decay,
            dampening: a.dampening,
            nesterov: a.nesterov,
            betas: a.betas.unwrap_or(d.betas),
            eps: a.eps,
            amsgrad: a.amsgrad,
            label_smoothing: a.label_smoothing,
            lr_schedule: a.lr_schedule,
            milestones: a.milestones,
            lr_factors: a.lr_factors,
            eta_min: a.eta_min,
            warmup_epochs: a.warmup_epochs,
            warmup_start_factor: a.warmup_start_factor.unwrap_or(d.warmup_start_factor),
            pct_start: a.pct_start,
            div_factor: a.div_factor,
            final_div_factor: a.final_div_factor,
            cycle_momentum: a.cycle_momentum,
        }
    }
}

/// `sweep`'s flags: the search space, the sweep's own options, and every `train` flag (which
/// each trial gets). The six hyperparameters below take lists or distributions here; `train`'s
/// own flags of those names are renamed out of the way ([`train_flag_in_sweep`]), so
/// `TrainArgs` is flattened whole and a new `train` flag reaches the trials with no change here.
#[derive(Debug, Args)]
#[command(mut_args(train_flag_in_sweep))]
pub struct SweepArgs {
    /// Initial learning rates: a list (a grid: `1e-3,1e-2`) or a distribution drawn --trials
    /// times (`loguniform:1e-4:1e-1`, `uniform:A:B`, `choice:A,B,...`) [default: train's].
    #[arg(long = "lr", id = "sweep_lr", value_name = "VALUES", allow_hyphen_values = true)]
    pub lr: Option<String>,
    /// SGD momentum values: a list or a distribution, as --lr [default: train's].
    #[arg(long = "momentum", id = "sweep_momentum", value_name = "VALUES", allow_hyphen_values = true)]
    pub momentum: Option<String>,
    /// Batch sizes: a list or a distribution, as --lr (draws are rounded) [default: train's].
    #[arg(long = "batch-size", id = "sweep_batch_size", value_name = "VALUES")]
    pub batch_size: Option<String>,
    /// StepLR step sizes: a list or a distribution, as --lr [default: train's].
    #[arg(long = "step-size", id = "sweep_step_size", value_name = "VALUES")]
    pub step_size: Option<String>,
    /// StepLR decay factors: a list or a distribution, as --lr [default: train's].
    #[arg(long = "gamma", id = "sweep_gamma", value_name = "VALUES", allow_hyphen_values = true)]
    pub gamma: Option<String>,
    /// Epochs: a list or a distribution, as --lr [default: train's].
    #[arg(long = "epochs", id = "sweep_epochs", value_name = "VALUES")]
    pub epochs: Option<String>,
    /// Weight decays: a list or a distribution, as --lr [default: train's].
    #[arg(long = "weight-decay", id = "sweep_weight_decay", value_name = "VALUES", allow_hyphen_values = true)]
    pub weight_decay: Option<String>,
    /// Label smoothing values: a list or a distribution, as --lr [default: train's].
    #[arg(long = "label-smoothing", id = "sweep_label_smoothing", value_name = "VALUES", allow_hyphen_values = true)]
    pub label_smoothing: Option<String>,
    /// SGD dampening values: a list or a distribution, as --lr [default: train's].
    #[arg(long = "dampening", id = "sweep_dampening", value_name = "VALUES", allow_hyphen_values = true)]
    pub dampening: Option<String>,
    /// Cosine eta_min values: a list or a distribution, as --lr [default: train's].
    #[arg(long = "eta-min", id = "sweep_eta_min", value_name = "VALUES", allow_hyphen_values = true)]
    pub eta_min: Option<String>,
    /// Warm-up epochs: a list or a distribution, as --lr (draws are rounded) [default: train's].
    #[arg(long = "warmup-epochs", id = "sweep_warmup_epochs", value_name = "VALUES", allow_hyphen_values = true)]
    pub warmup_epochs: Option<String>,
    /// RandomCrop paddings: a list or a distribution, as --lr (draws are rounded) [default: train's].
    #[arg(long = "random-crop", id = "sweep_random_crop", value_name = "VALUES", allow_hyphen_values = true)]
    pub random_crop: Option<String>,
    /// OneCycleLR pct_start values: a list or a distribution, as --lr [default: train's].
    #[arg(long = "pct-start", id = "sweep_pct_start", value_name = "VALUES", allow_hyphen_values = true)]
    pub pct_start: Option<String>,
    /// Optimizers: a list of sgd, adam, adamw, or choice:... [default: train's].
    #[arg(long = "optimizer", id = "sweep_optimizer", value_name = "VALUES", allow_hyphen_values = true)]
    pub optimizer: Option<String>,
    /// Schedules: a list of step, multistep, cosine, onecycle, piecewise, constant, or choice:...
    /// [default: train's].
    #[arg(long = "lr-schedule", id = "sweep_lr_schedule", value_name = "VALUES", allow_hyphen_values = true)]
    pub lr_schedule: Option<String>,
    /// Augmentations: a list of none, crop-flip, or choice:... [default: train's].
    #[arg(long = "augment", id = "sweep_augment", value_name = "VALUES", allow_hyphen_values = true)]
    pub augment: Option<String>,
    /// RandomHorizontalFlip: false, true, or both (false,true); alone, true [default: train's].
    #[arg(long = "hflip", id = "sweep_hflip", value_name = "VALUES", num_args = 0..=1, default_missing_value = "true")]
    pub hflip: Option<String>,
    /// Nesterov momentum: false, true, or both (false,true); alone, true [default: train's].
    #[arg(long = "nesterov", id = "sweep_nesterov", value_name = "VALUES", num_args = 0..=1, default_missing_value = "true")]
    pub nesterov: Option<String>,
    /// AMSGrad: false, true, or both (false,true); alone, true [default: train's].
    #[arg(long = "amsgrad", id = "sweep_amsgrad", value_name = "VALUES", num_args = 0..=1, default_missing_value = "true")]
    pub amsgrad: Option<String>,
    /// Adam eps values: a list or a distribution, as --lr [default: train's].
    #[arg(long = "eps", id = "sweep_eps", value_name = "VALUES", allow_hyphen_values = true)]
    pub eps: Option<String>,
    /// Warm-up start factors: a list or a distribution, as --lr [default: train's].
    #[arg(long = "warmup-start-factor", id = "sweep_warmup_start_factor", value_name = "VALUES", allow_hyphen_values = true)]
    pub warmup_start_factor: Option<String>,
    /// OneCycleLR div_factor values: a list or a distribution, as --lr [default: train's].
    #[arg(long = "div-factor", id = "sweep_div_factor", value_name = "VALUES", allow_hyphen_values = true)]
    pub div_factor: Option<String>,
    /// OneCycleLR final_div_factor values: a list or a distribution, as --lr [default: train's].
    #[arg(long = "final-div-factor", id = "sweep_final_div_factor", value_name = "VALUES", allow_hyphen_values = true)]
    pub final_div_factor: Option<String>,
    /// OneCycleLR cycle_momentum: false, true, or both (false,true) [default: train's].
    #[arg(long = "cycle-momentum", id = "sweep_cycle_momentum", value_name = "VALUES", allow_hyphen_values = true)]
    pub cycle_momentum: Option<String>,
    /// The space as a JSON or TOML file instead (or as well, for other parameters): keys as the
    /// flags above (lr, momentum, batch-size, ..., optimizer, augment); values a list of numbers
    /// or names, a number, or a string as on the command line ("loguniform:1e-4:1e-1").
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
    /// Random search: draw the distributions N times (crossed with any lists).
    #[arg(long, value_name = "N")]
    pub trials: Option<usize>,
    /// Seed of the random draws: the same seed, the same trials.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub sweep_seed: u64,
    /// Training seeds each setting runs with: a list (0,1,2) or a range (0..5 = 0 to 4)
    /// [default: --seed].
    #[arg(long, value_name = "SEEDS", conflicts_with = "seed")]
    pub seeds: Option<String>,
    /// Trials run at a time (each a process; on the CPU each gets cores / N threads unless
    /// --threads says otherwise).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Stop trials that are behind: after epoch --prune-after, a trial whose best validation
    /// accuracy is below the median of the trials that got there (3 or more) stops (needs
    /// --val-size).
    #[arg(long)]
    pub prune: bool,
    /// The epoch after which --prune judges each trial.
    #[arg(long, value_name = "E", default_value_t = 1, requires = "prune")]
    pub prune_after: usize,
    /// Print one `tch-cifar10 train` command per unfinished trial (for GNU parallel or a Slurm
    /// array) instead of running them; `sweep --collect OUT` then builds the results.
    #[arg(long)]
    pub print_commands: bool,
    /// Submit the unfinished trials to Slurm as one job array (sbatch; --threads CPUs a trial,
    /// 1 unless given), print its job id and return; run it again once the array ended to
    /// submit what is left; `sweep --collect OUT` then builds the results (see docs/slurm.md).
    #[arg(long, conflicts_with_all = ["print_commands", "prune"])]
    pub slurm: bool,
    /// An sbatch option for --slurm, passed on as given (repeatable): --slurm-arg=--partition=gpu
    /// --slurm-arg=--time=1:00:00 --slurm-arg=--array=%4 (a throttle).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true, requires = "slurm")]
    pub slurm_arg: Vec<String>,
    /// Run the trial at this position (1-based) of the sweep in --out in place of this process
    /// (a --slurm array task, $SLURM_ARRAY_TASK_ID): resumes it when its folder holds a run.
    #[arg(long, value_name = "N", hide = true, conflicts_with_all = ["slurm", "print_commands"])]
    pub run_trial: Option<usize>,
    /// Build the results table, results.csv/.jsonl and charts of the sweep in DIR from whatever
    /// trials finished, running nothing.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "out", "sweep_lr", "sweep_momentum", "sweep_batch_size", "sweep_step_size", "sweep_gamma",
        "sweep_epochs", "space", "trials", "seeds", "jobs", "prune", "print_commands", "slurm", "run_trial",
    ])]
    pub collect: Option<PathBuf>,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// `train`'s flags inside `sweep`: that of a swept parameter is hidden and renamed
/// `--train-NAME`, keeping its default (the sweep's flag of that name replaces it); `--out`
/// names the sweep's folder; `--resume` is hidden (a sweep resumes itself), and so is
/// `--steps-jsonl` (one run's file; refused in a sweep); the others are unchanged.
fn train_flag_in_sweep(arg: clap::Arg) -> clap::Arg {
    let long = match arg.get_id().as_str() {
        "out" => return arg.help("The sweep's folder: sweep.json, the trials' run directories (trials/<id>/), the results"),
        "resume" | "steps_jsonl" => return arg.hide(true),
        "lr" => "train-lr",
        "momentum" => "train-momentum",
        "batch_size" => "train-batch-size",
        "step_size" => "train-step-size",
        "gamma" => "train-gamma",
        "epochs" => "train-epochs",
        "weight_decay" => "train-weight-decay",
        "label_smoothing" => "train-label-smoothing",
        "dampening" => "train-dampening",
        "eta_min" => "train-eta-min",
        "warmup_epochs" => "train-warmup-epochs",
        "random_crop" => "train-random-crop",
        "pct_start" => "train-pct-start",
        "optimizer" => "train-optimizer",
        "lr_schedule" => "train-lr-schedule",
        "augment" => "train-augment",
        "hflip" => "train-hflip",
        "nesterov" => "train-nesterov",
        "amsgrad" => "train-amsgrad",
        "eps" => "train-eps",
        "warmup_start_factor" => "train-warmup-start-factor",
        "div_factor" => "train-div-factor",
        "final_div_factor" => "train-final-div-factor",
        "cycle_momentum" => "train-cycle-momentum",
        _ => return arg,
    };
    arg.long(long).hide(true)
}

impl SweepArgs {
    /// The request: collect, print or run, with the space and the base configuration.
    ///
    /// # Errors
    /// A flag that `sweep` does not take (`--resume`, `--steps-jsonl`), no `--out`, a bad space
    /// value or file, a parameter given in both, bad `--seeds`, `--download` with folders.
    pub fn request(self, quiet: bool) -> anyhow::Result<SweepRequest> {
        if let Some(dir) = self.collect {
            return Ok(SweepRequest::Collect(dir));
        }
        anyhow::ensure!(self.train.resume.is_none(), "sweep resumes by itself: run the same sweep command again (--resume is for one run)");
        anyhow::ensure!(self.train.steps_jsonl.is_none(), "--steps-jsonl is for one run, not a sweep");
        let dir = self.train.out.clone().ok_or_else(|| anyhow::anyhow!("sweep needs --out DIR, the sweep's folder"))?;
        let download = self.train.extras(quiet)?.download;
        let mut space = match &self.space {
            Some(file) => Space::from_file(file)?,
            None => Space::default(),
        };
        for (param, text) in [
            (Param::Lr, &self.lr),
            (Param::Momentum, &self.momentum),
            (Param::BatchSize, &self.batch_size),
            (Param::StepSize, &self.step_size),
            (Param::Gamma, &self.gamma),
            (Param::Epochs, &self.epochs),
            (Param::WeightDecay, &self.weight_decay),
            (Param::LabelSmoothing, &self.label_smoothing),
            (Param::Dampening, &self.dampening),
            (Param::EtaMin, &self.eta_min),
            (Param::WarmupEpochs, &self.warmup_epochs),
            (Param::RandomCrop, &self.random_crop),
            (Param::PctStart, &self.pct_start),
            (Param::Optimizer, &self.optimizer),
            (Param::LrSchedule, &self.lr_schedule),
            (Param::Augment, &self.augment),
            (Param::Hflip, &self.hflip),
            (Param::Nesterov, &self.nesterov),
            (Param::Amsgrad, &self.amsgrad),
            (Param::Eps, &self.eps),
            (Param::WarmupStartFactor, &self.warmup_start_factor),
            (Param::DivFactor, &self.div_factor),
            (Param::FinalDivFactor, &self.final_div_factor),
            (Param::CycleMomentum, &self.cycle_momentum),
        ] {
            let Some(text) = text else { continue };
            if space.0.insert(param, Spec::parse(param, text)?).is_some() {
                anyhow::bail!("--{param} is given both on the command line and in {}", self.space.unwrap_or_default().display());
            }
        }
        let base = TrainConfig { out_dir: None, ..TrainConfig::from(self.train) };
        let seeds = match &self.seeds {
            Some(text) => space::parse_seeds(text)?,
            None => vec![base.seed],
        };
        let spec = SweepSpec {
            space,
            seeds,
            trials: self.trials,
            sweep_seed: self.sweep_seed,
            prune: self.prune.then_some(PruneRule { after_epoch: self.prune_after }),
            base,
        };
        let opts = SweepOptions { dir, spec, jobs: self.jobs, download };
        Ok(if self.print_commands {
            SweepRequest::PrintCommands(opts)
        } else if self.slurm {
            SweepRequest::Slurm(opts, SlurmOptions { args: self.slurm_arg })
        } else {
            SweepRequest::Run(opts)
        })
    }
}

/// `finetune`'s flags: the trained weights, what to freeze, and every `train` flag.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// Trained weights: a model file (`model.safetensors`, ours or a PyTorch state_dict saved
    /// with safetensors) or a run directory.
    #[arg(long, value_name = "CHECKPOINT")]
    pub from: PathBuf,
    /// Parameters to hold fixed: `features` freezes conv1 and conv2.
    #[arg(long, value_enum, default_value_t = Freeze::None)]
    pub freeze: Freeze,
    #[command(flatten)]
    pub train: TrainArgs,
}

impl From<FinetuneArgs> for TrainConfig {
    fn from(a: FinetuneArgs) -> TrainConfig {
        TrainConfig { init_from: Some(a.from), freeze: a.freeze, ..TrainConfig::from(a.train) }
    }
}

impl From<TrainArgs> for TrainConfig {
    fn from(a: TrainArgs) -> TrainConfig {
        TrainConfig {
            data_dir: a.data_dir.unwrap_or_else(|| TrainConfig::default().data_dir),
            epochs: a.epochs.unwrap_or(TrainConfig::default().epochs),
            batch_size: a.batch_size,
            learning_rate: a.lr,
            momentum: a.momentum,
            step_size: a.step_size,
            gamma: a.gamma,
            seed: a.seed,
            device: a.device.unwrap_or_default(),
            threads: a.threads,
            eval_every: a.eval_every,
            checkpoint_every: a.checkpoint_every,
            dataset: a.dataset,
            resize_filter: a.resize_filter,
            val_size: a.val_size,
            split_test: a.split_test,
            early_stop_patience: a.early_stop_patience,
            out_dir: a.out,
            tensorboard: a.tensorboard,
            init_from: None,
            freeze: Default::default(),
            kernels: a.kernels.unwrap_or_default(),
            cuda_graphs: a.cuda_graphs.unwrap_or_default(),
            deterministic: a.deterministic,
            recipe: a.recipe.into(),
            extended_from: Vec::new(),
        }
    }
}

impl TrainArgs {
    /// What the run does besides training: `--download` (with a progress bar unless `quiet`)
    /// and `--steps-jsonl`.
    ///
    /// # Errors
    /// `--download` with `--dataset folder`.
    pub fn extras(&self, quiet: bool) -> anyhow::Result<RunExtras> {
        let download = if self.download {
            anyhow::ensure!(self.dataset == DatasetKind::Cifar10, "--download fetches CIFAR-10; it does not apply to --dataset folder");
            Some(self.source.options(self.data_dir.as_deref().unwrap_or(&TrainConfig::default().data_dir), quiet))
        } else {
            None
        };
        Ok(RunExtras { download, steps_jsonl: self.steps_jsonl.clone() })
    }
}

/// Where the archive comes from: the official URL and checksum unless told otherwise.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Archive to download (a mirror of cifar-10-binary.tar.gz; file:///PATH for a local one).
    #[arg(long, env = URL_ENV, default_value = CIFAR10_URL)]
    pub url: String,
    /// Expected SHA-256 of the archive, hex [default: none; the official archive is checked by its MD5].
    #[arg(long, env = SHA256_ENV, value_parser = |s: &str| Checksum::sha256(s), conflicts_with = "md5")]
    pub sha256: Option<Checksum>,
    /// Expected MD5 of the archive, hex.
    #[arg(long, env = MD5_ENV, value_parser = |s: &str| Checksum::md5(s))]
    pub md5: Option<Checksum>,
    /// Most bytes to download for an archive given by --sha256/--md5 (a larger announced size is
    /// refused up front; the download stops once more arrive). With the official checksum the
    /// official archive's size, 170052171 bytes, is the bound instead.
    #[arg(long, env = MAX_BYTES_ENV, value_name = "BYTES", default_value_t = DEFAULT_MAX_DOWNLOAD_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_download_bytes: u64,
    /// Unpack this archive (cifar-10-binary.tar.gz or torchvision's cifar-10-python.tar.gz)
    /// instead of downloading; verified as a download is. Without it, an archive of either name
    /// in the data folder is used, and a file:// --url names one too.
    #[arg(long, value_name = "FILE")]
    pub archive: Option<PathBuf>,
    /// Stop a download slower than this many bytes/s for --speed-time seconds (0: never), keeping
    /// what arrived for the next run to resume (as curl's --speed-limit).
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = DEFAULT_SPEED_LIMIT)]
    pub speed_limit: u64,
    /// Seconds a download may stay below --speed-limit (as curl's --speed-time).
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_SPEED_TIME.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub speed_time: u64,
}

impl SourceArgs {
    /// Download options for `data_dir`; a progress bar on a terminal unless `quiet`.
    pub fn options(&self, data_dir: &Path, quiet: bool) -> DownloadOptions {
        DownloadOptions {
            url: self.url.clone(),
            progress: !quiet,
            checksum: self.sha256.clone().or_else(|| self.md5.clone()).unwrap_or_else(Checksum::official),
            max_bytes: self.max_download_bytes,
            archive: self.archive.clone(),
            speed_limit: self.speed_limit,
            speed_time: std::time::Duration::from_secs(self.speed_time),
            ..DownloadOptions::new(data_dir)
        }
    }
}

/// `download`'s flags.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Folder to put `cifar-10-batches-bin/` in (created when missing).
    #[arg(long, default_value_os_t = TrainConfig::default().data_dir)]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// `plot`'s arguments.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run directories (or their metrics.jsonl files), from this program or the PyTorch
    /// reference script; several are overlaid, one colour each.
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<PathBuf>,
    /// The PNG to write [default: RUN/curves.png for one run, ./curves.png for several].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The legend's name of each RUN, in order (repeat once per RUN) [default: a run
    /// directory's name; a metrics file's own name, or its folder's for metrics.jsonl].
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
}

/// `eval`'s flags.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model file (model.safetensors, or a PyTorch state_dict saved with safetensors or torch.save), or a run
    /// directory holding model.safetensors.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// Folder holding `cifar-10-batches-bin/` or `cifar-10-batches-py/` (only the test file and
    /// the class names are read); with `--dataset folder`, holding `test/<class>/` [default: a
    /// run directory's own (its config.json), else data].
    #[arg(long, value_name = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// cifar10 or folder, as `train --dataset` [default: a run directory's own, else cifar10].
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Filter that resizes folder images that are not 32x32 [default: a run directory's own, else
    /// bilinear].
    #[arg(long, value_enum)]
    pub resize_filter: Option<ResizeFilter>,
    /// How the forward pass is computed: reference (PyTorch's ops, bit for bit) or fast
    /// (libtorch's channels-last kernels; the same function, rounded differently).
    #[arg(long, value_enum, default_value_t = Kernels::Reference)]
    pub kernels: Kernels,
    /// Images per forward pass (the loss is the mean of the batch means, as the reference's).
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value_t = TrainConfig::default().device)]
    pub device: DeviceSpec,
    /// Class names, comma-separated, in label order [default: the model file's; for a file
    /// without names and 10 outputs, CIFAR-10's airplane,automobile,...,truck].
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub classes: Option<Vec<String>>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also draw the confusion matrix into this PNG file.
    #[arg(long, value_name = "FILE")]
    pub confusion_png: Option<PathBuf>,
    /// Also draw the reliability diagram (accuracy against confidence in 15 bins, with the
    /// images per bin) into this PNG file.
    #[arg(long, value_name = "FILE")]
    pub reliability_png: Option<PathBuf>,
    /// Ignore a calibrated model's temperature (`calibrate`): the figures of the raw logits.
    #[arg(long)]
    pub no_temperature: bool,
    /// Also the accuracy under CIFAR-10-C corruptions computed from the test images, at
    /// severities 1 to 5: `all`, or names among gaussian_noise, shot_noise, impulse_noise,
    /// gaussian_blur, brightness, contrast, pixelate, jpeg_compression.
    #[arg(long, value_name = "NAMES")]
    pub corruptions: Option<String>,
    /// Also the accuracy under the fast gradient sign method at each epsilon, in units of 1/255
    /// of the pixel range (for example 1,4).
    #[arg(long, value_name = "EPS", allow_hyphen_values = true)]
    pub fgsm: Option<String>,
    /// Seed of the corruptions' noise.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub seed: i64,
    /// With --corruptions, also draw accuracy against severity into this PNG file.
    #[arg(long, value_name = "FILE", requires = "corruptions")]
    pub robustness_png: Option<PathBuf>,
}

impl From<&EvalArgs> for EvalOptions {
    fn from(a: &EvalArgs) -> EvalOptions {
        EvalOptions {
            checkpoint: a.checkpoint.clone(),
            data_dir: a.data_dir.clone(),
            dataset: a.dataset,
            resize_filter: a.resize_filter,
            device: a.device,
            batch_size: a.batch_size,
            classes: a.classes.clone(),
            kernels: a.kernels,
            no_temperature: a.no_temperature,
            corruptions: a.corruptions.clone(),
            fgsm: a.fgsm.clone(),
            seed: a.seed,
            progress: false,
        }
    }
}

/// `predict`'s flags.
#[derive(Debug, Args)]
#[command(after_help = format!(
    "Each image is converted to RGB (greyscale replicated, alpha dropped), resized to 32x32 with a {} \
     filter when it is not 32x32 (aspect ratio not kept), and normalised as in training.",
    predict::RESIZE_FILTER
))]
pub struct PredictArgs {
    /// Model file (model.safetensors, or a PyTorch state_dict saved with safetensors or torch.save), or a run
    /// directory holding model.safetensors.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// Image files (PNG, JPEG, BMP, PPM, PGM, TIFF, WebP), of any size up to 65535 pixels a side
    /// and 89,478,485 pixels, or folders: every image under one (recursively, by extension).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Classes shown per image, most probable first (at most the model's class count).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..), value_name = "K")]
    pub top_k: u16,
    /// auto (CUDA when available), cpu, cuda or cuda:N. The CPU is the default: for a few
    /// images it answers before CUDA has started.
    #[arg(long, default_value_t = DeviceSpec::Cpu)]
    pub device: DeviceSpec,
    /// Class names, comma-separated, in label order [default: the model file's; for a file
    /// without names and 10 outputs, CIFAR-10's airplane,automobile,...,truck].
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub classes: Option<Vec<String>>,
    /// reference (libtorch's forward) or fast (on the CPU: this crate's kernels, the same logits
    /// within rounding; elsewhere libtorch's).
    #[arg(long, value_enum, default_value_t = Kernels::Reference)]
    pub kernels: Kernels,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Ignore a calibrated model's temperature: the softmax of the raw logits.
    #[arg(long)]
    pub no_temperature: bool,
    /// Also draw each image, upscaled 8 times, beside its saliency map (the gradient of the top
    /// class's logit with respect to the input, in red) into this PNG file, one row per image.
    #[arg(long, value_name = "OUT.png")]
    pub explain: Option<PathBuf>,
}

impl From<&PredictArgs> for PredictOptions {
    fn from(a: &PredictArgs) -> PredictOptions {
        PredictOptions {
            checkpoint: a.checkpoint.clone(),
            images: a.images.clone(),
            top_k: usize::from(a.top_k),
            device: a.device,
            classes: a.classes.clone(),
            kernels: a.kernels,
            no_temperature: a.no_temperature,
            explain: a.explain.clone(),
        }
    }
}

/// `export`'s flags.
#[derive(Debug, Args)]
#[command(after_help = format!(
    "The exported model takes what PyTorch's Net takes: input `input`, float32 [batch, 3, 32, 32], RGB, \
     normalised as in training, (x / 255 - 0.5) / 0.5 for bytes x (ToTensor + Normalize(0.5, 0.5)); \
     it returns `logits`, float32 [batch, classes], before softmax. ONNX: opset {}, the batch \
     dimension named `{}`, class names in metadata_props[\"classes\"]. TorchScript: a traced \
     `forward`, without class names.",
    export::onnx::OPSET,
    export::onnx::BATCH,
))]
pub struct ExportArgs {
    /// Model file (model.safetensors, or a PyTorch state_dict saved with safetensors or torch.save), or a run
    /// directory holding model.safetensors.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// File format to write.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// File to write (its folder must exist). Written into a temporary folder beside it, then
    /// moved into place, so a failed export leaves nothing behind.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace the file at --out if there is one (without it, an existing file is an error).
    #[arg(long)]
    pub force: bool,
    /// Export a calibrated model's raw logits, without its temperature (without this flag, a
    /// model file holding a temperature is refused: the exported graph has no place for it).
    #[arg(long)]
    pub no_temperature: bool,
    /// Class names, comma-separated, in label order, for the ONNX metadata [default: the model
    /// file's; for a file without names and 10 outputs, CIFAR-10's airplane,automobile,...,truck].
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub classes: Option<Vec<String>>,
}

impl From<&ExportArgs> for ExportOptions {
    fn from(a: &ExportArgs) -> ExportOptions {
        ExportOptions {
            checkpoint: a.checkpoint.clone(),
            format: a.format,
            out: a.out.clone(),
            force: a.force,
            classes: a.classes.clone(),
            no_temperature: a.no_temperature,
        }
    }
}

/// `completions`' argument.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `info`'s flags.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every `tch-cifar10 ...` command shown in the README and the docs parses with today's
    /// flags, so a renamed or removed flag breaks this test rather than a user's paste. Shown
    /// synopses with `[optional]` parts or `...` are not commands and are skipped.
    #[test]
    fn every_command_in_the_docs_parses() {
        let pages: &[(&str, &str)] = &[
            ("README.md", include_str!("../README.md")),
            ("docs/install.md", include_str!("../docs/install.md")),
            ("docs/training.md", include_str!("../docs/training.md")),
            ("docs/recipes.md", include_str!("../docs/recipes.md")),
            ("docs/data.md", include_str!("../docs/data.md")),
            ("docs/checkpoints.md", include_str!("../docs/checkpoints.md")),
            ("docs/evaluation.md", include_str!("../docs/evaluation.md")),
            ("docs/watching.md", include_str!("../docs/watching.md")),
            ("docs/sweeps.md", include_str!("../docs/sweeps.md")),
            ("docs/fidelity.md", include_str!("../docs/fidelity.md")),
            ("docs/performance.md", include_str!("../docs/performance.md")),
            ("docs/gpu.md", include_str!("../docs/gpu.md")),
        ];
        let mut checked = 0;
        for (page, text) in pages {
            for command in documented_commands(text) {
                if command.contains('[') || command.contains("...") {
                    continue;
                }
                let words = shlex::split(&command).unwrap_or_else(|| panic!("{page}: unbalanced quotes in `{command}`"));
                if let Err(e) = Cli::try_parse_from(&words) {
                    panic!("{page}: `{command}` does not parse:\n{e}");
                }
                checked += 1;
            }
        }
        assert!(checked >= 40, "only {checked} documented commands found: is the extraction broken?");
    }

    /// The `tch-cifar10 ...` commands in the shell code blocks of a Markdown page: continuation
    /// lines joined, a `$ ` prompt, `# comments`, pipes and redirections cut off, and the
    /// command found after `&&` or `eval "$(`.
    fn documented_commands(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut in_block = false;
        let mut pending = String::new();
        for line in text.lines() {
            if let Some(fence) = line.trim_start().strip_prefix("```") {
                // Shell blocks only: `text` blocks hold output.
                in_block = !in_block && ["sh", "bash", "console", "shell"].contains(&fence.trim());
                continue;
            }
            if !in_block {
                continue;
            }
            let line = line.trim();
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            let full = std::mem::take(&mut pending) + line;
            let full = full.strip_prefix("$ ").unwrap_or(&full);
            let Some(at) = full.find("tch-cifar10 ").filter(|&i| i == 0 || full[..i].ends_with("&& ")) else { continue };
            let mut cmd = &full[at..];
            for cut in [" # ", " | ", " > ", " 2>"] {
                if let Some(i) = cmd.find(cut) {
                    cmd = &cmd[..i];
                }
            }
            out.push(cmd.trim().to_string());
        }
        out
    }

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn train_defaults_are_the_config_defaults() {
        let cli = Cli::try_parse_from(["tch-cifar10", "train"]).unwrap();
        let Command::Train(args) = cli.command else { panic!("expected train") };
        assert_eq!(TrainConfig::from(args), TrainConfig::default());
    }

    #[test]
    fn data_flags_reach_the_config() {
        let cli = Cli::try_parse_from([
            "tch-cifar10", "train", "--dataset", "folder", "--resize-filter", "lanczos3", "--val-size", "500",
            "--early-stop-patience", "3",
        ])
        .unwrap();
        let Command::Train(args) = cli.command else { panic!("expected train") };
        assert!(args.extras(false).unwrap().download.is_none());
        let cfg = TrainConfig::from(args);
        assert_eq!((cfg.dataset, cfg.resize_filter), (DatasetKind::Folder, ResizeFilter::Lanczos3));
        assert_eq!((cfg.val_size, cfg.early_stop_patience), (500, Some(3)));
    }

    #[test]
    fn download_flags_give_the_checksum_and_refuse_folders() {
        let sha = "ab".repeat(32);
        let cli = Cli::try_parse_from(["tch-cifar10", "download", "--url", "http://m/x.tgz", "--sha256", &sha]).unwrap();
        let Command::Download(args) = cli.command else { panic!("expected download") };
        let opts = args.source.options(&args.data_dir, true);
        assert!(!opts.progress);
        assert_eq!((opts.url.as_str(), opts.checksum), ("http://m/x.tgz", Checksum::Sha256(sha.clone())));
        assert_eq!(opts.max_bytes, DEFAULT_MAX_DOWNLOAD_BYTES);
        let cli = Cli::try_parse_from(["tch-cifar10", "train", "--download", "--max-download-bytes", "5000"]).unwrap();
        let Command::Train(args) = cli.command else { panic!("expected train") };
        assert_eq!(args.extras(true).unwrap().download.unwrap().max_bytes, 5000);
        assert!(Cli::try_parse_from(["tch-cifar10", "download", "--max-download-bytes", "0"]).is_err());

        let err = Cli::try_parse_from(["tch-cifar10", "download", "--md5", "xyz"]).unwrap_err().to_string();
        assert!(err.contains("32 hex digits"), "{err}");
        let cli = Cli::try_parse_from(["tch-cifar10", "train", "--download", "--dataset", "folder"]).unwrap();
        let Command::Train(args) = cli.command else { panic!("expected train") };
        assert!(args.extras(false).is_err());
    }

    #[test]
    fn quiet_is_the_long_form_of_q_and_plot_needs_a_run() {
        for args in [["tch-cifar10", "-q", "train"], ["tch-cifar10", "--quiet", "train"], ["tch-cifar10", "train", "--quiet"]] {
            assert_eq!(Cli::try_parse_from(args).unwrap().quiet, 1, "{args:?}");
        }
        assert!(Cli::try_parse_from(["tch-cifar10", "-q", "-v", "train"]).is_err());
        assert!(Cli::try_parse_from(["tch-cifar10", "plot"]).is_err());
        let cli = Cli::try_parse_from(["tch-cifar10", "plot", "a", "b", "--out", "c.png"]).unwrap();
        let Command::Plot(args) = cli.command else { panic!("expected plot") };
        assert_eq!((args.runs.len(), args.out), (2, Some(PathBuf::from("c.png"))));
    }

    #[test]
    fn resume_takes_only_device_and_threads() {
        let ok = ["tch-cifar10", "train", "--resume", "r", "--device", "cpu", "--threads", "2"];
        assert!(Cli::try_parse_from(ok).is_ok());
        let err = Cli::try_parse_from(["tch-cifar10", "train", "--resume", "r", "--lr", "3"]).unwrap_err();
        assert!(err.to_string().contains("--lr"), "{err}");
        // --epochs extends the run.
        let cli = Cli::try_parse_from(["tch-cifar10", "train", "--resume", "r", "--epochs", "3"]).unwrap();
        let Command::Train(args) = cli.command else { panic!("expected train") };
        assert_eq!(args.epochs, Some(3));
    }

    #[test]
    fn predict_needs_an_image_and_a_positive_top_k() {
        assert!(Cli::try_parse_from(["tch-cifar10", "predict", "--checkpoint", "m"]).is_err());
        assert!(Cli::try_parse_from(["tch-cifar10", "predict", "--checkpoint", "m", "--top-k", "0", "a.png"]).is_err());
        let cli = Cli::try_parse_from(["tch-cifar10", "predict", "--checkpoint", "m", "a.png", "b.jpg"]).unwrap();
        let Command::Predict(args) = cli.command else { panic!("expected predict") };
        assert_eq!((args.images.len(), args.top_k), (2, 3));
    }

    #[test]
    fn classes_are_comma_separated() {
        let cli = Cli::try_parse_from(["tch-cifar10", "eval", "--checkpoint", "m", "--classes", "a,b,c"]).unwrap();
        let Command::Eval(args) = cli.command else { panic!("expected eval") };
        assert_eq!(args.classes.unwrap(), ["a", "b", "c"]);
    }

    /// `to_args` is the inverse of this parser: every field survives the round trip.
    #[test]
    fn to_args_round_trips_through_the_parser() {
        use tch_cifar10::sweep::command::to_args;
        let every_field = TrainConfig {
            data_dir: PathBuf::from("my data"),
            epochs: 7,
            batch_size: 13,
            learning_rate: 0.1 + 0.2, // 0.30000000000000004: the last bit must survive
            momentum: 0.85,
            step_size: 3,
            gamma: 0.5,
            seed: 42,
            device: DeviceSpec::Cuda(1),
            threads: Some(3),
            eval_every: Some(2),
            dataset: DatasetKind::Folder,
            resize_filter: ResizeFilter::Lanczos3,
            val_size: 100,
            split_test: Some(0.25),
            early_stop_patience: Some(4),
            checkpoint_every: 2,
            init_from: Some(PathBuf::from("runs/a/model.safetensors")),
            freeze: Freeze::Features,
            out_dir: Some(PathBuf::from("runs/it's")),
            tensorboard: true,
            kernels: Kernels::Fast,
            cuda_graphs: CudaGraphs::Off,
            deterministic: true,
            recipe: RecipeConfig {
                random_crop: Some(4),
                hflip: true,
                weight_decay: Some(5e-4),
                nesterov: true,
                label_smoothing: 0.1,
                lr_schedule: LrScheduleKind::Cosine,
                eta_min: 1e-5,
                warmup_epochs: 2,
                warmup_start_factor: 0.25,
                ..RecipeConfig::default()
            },
            extended_from: Vec::new(), // a record of the run's history, not a flag (to_args leaves it out)
        };
        let train = TrainConfig { init_from: None, freeze: Freeze::None, ..every_field.clone() };
        let adamw = TrainConfig {
            recipe: RecipeConfig {
                optimizer: OptimizerKind::Adamw,
                betas: (0.8, 0.99),
                eps: 1e-7,
                amsgrad: true,
                random_crop: Some(0),
                lr_schedule: LrScheduleKind::Onecycle,
                pct_start: 0.25,
                div_factor: 10.0,
                final_div_factor: 100.0,
                cycle_momentum: false,
                ..RecipeConfig::default()
            },
            ..TrainConfig::default()
        };
        let piecewise = TrainConfig {
            recipe: RecipeConfig {
                optimizer: OptimizerKind::Adam,
                dampening: 0.0,
                lr_schedule: LrScheduleKind::Piecewise,
                milestones: vec![2, 4],
                lr_factors: vec![1.0, 10.0, 0.5],
                ..RecipeConfig::default()
            },
            ..TrainConfig::default()
        };
        let multistep = TrainConfig {
            recipe: RecipeConfig { dampening: 0.5, lr_schedule: LrScheduleKind::Multistep, milestones: vec![3], ..RecipeConfig::default() },
            ..TrainConfig::default()
        };
        for cfg in [every_field, train, TrainConfig::default(), adamw, piecewise, multistep] {
            let args = std::iter::once("tch-cifar10".into()).chain(to_args(&cfg));
            let parsed = match Cli::try_parse_from(args).unwrap().command {
                Command::Train(a) => TrainConfig::from(a),
                Command::Finetune(a) => TrainConfig::from(a),
                other => panic!("{other:?}"),
            };
            assert_eq!(parsed, cfg);
        }
    }

    fn sweep(args: &[&str]) -> Result<SweepRequest, String> {
        let cli = Cli::try_parse_from(["tch-cifar10", "sweep"].iter().chain(args)).map_err(|e| e.to_string())?;
        let Command::Sweep(args) = cli.command else { panic!("expected sweep") };
        args.request(true).map_err(|e| e.to_string())
    }

    #[test]
    fn the_show_sweep_parses_into_its_space_and_seeds() {
        let request = sweep(&[
            "--out", "runs/sweep", "--data-dir", "data", "--lr", "1e-3,3e-3,1e-2", "--seeds", "0,1,2", "--epochs", "5",
            "--val-size", "5000", "--jobs", "2", "--device", "cpu", "--tensorboard",
        ])
        .unwrap();
        let SweepRequest::Run(opts) = request else { panic!("expected a run") };
        assert_eq!((opts.dir, opts.jobs), (PathBuf::from("runs/sweep"), 2));
        let spec = opts.spec;
        assert_eq!(spec.space.0[&Param::Lr], Spec::Grid(vec![1e-3, 3e-3, 1e-2]));
        assert_eq!(spec.space.0[&Param::Epochs], Spec::Grid(vec![5.0]));
        assert_eq!(spec.seeds, [0, 1, 2]);
        assert_eq!((spec.base.val_size, spec.base.device, spec.base.tensorboard), (5000, DeviceSpec::Cpu, true));
        assert_eq!(spec.base.out_dir, None, "the sweep folder is not a run directory");
        // Unswept parameters keep train's defaults; the trials' folders come from the plan.
        assert_eq!(spec.base.learning_rate, TrainConfig::default().learning_rate);
        let SweepRequest::PrintCommands(_) = sweep(&["--out", "d", "--lr", "uniform:0.1:0.2", "--trials", "3", "--print-commands"]).unwrap() else {
            panic!("expected print")
        };
        let SweepRequest::Collect(dir) = sweep(&["--collect", "d"]).unwrap() else { panic!("expected collect") };
        assert_eq!(dir, PathBuf::from("d"));
    }

    #[test]
    fn bad_sweeps_are_refused_naming_the_flag() {
        for (args, needle) in [
            (&["--out", "d", "--lr", "fast"][..], "invalid lr = fast"),
            (&["--out", "d", "--seeds", "0..0"], "invalid seeds"),
            (&["--out", "d", "--seed", "1", "--seeds", "0,1"], "--seed"),
            (&["--out", "d", "--prune-after", "2"], "--prune"),
            (&["--collect", "d", "--lr", "0.1"], "--lr"),
            (&["--out", "d", "--resume", "r"], "--resume"),
            (&["--lr", "0.1"], "--out"),
        ] {
            let err = sweep(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn plot_takes_one_label_per_run() {
        let cli = Cli::try_parse_from(["tch-cifar10", "plot", "a", "b", "--label", "PyTorch", "--label", "tch"]).unwrap();
        let Command::Plot(args) = cli.command else { panic!("expected plot") };
        assert_eq!(args.labels, ["PyTorch", "tch"]);
    }

    #[test]
    fn export_needs_a_known_format_and_an_out_file() {
        let ok = ["tch-cifar10", "export", "--checkpoint", "r", "--format", "onnx", "--out", "m.onnx"];
        let Command::Export(args) = Cli::try_parse_from(ok).unwrap().command else { panic!("expected export") };
        let opts = ExportOptions::from(&args);
        assert_eq!((opts.format, opts.force, opts.out), (ExportFormat::Onnx, false, PathBuf::from("m.onnx")));
        let err = Cli::try_parse_from(["tch-cifar10", "export", "--checkpoint", "r", "--format", "tflite", "--out", "m"]).unwrap_err();
        assert!(err.to_string().contains("[possible values: torchscript, onnx]"), "{err}");
        assert!(Cli::try_parse_from(["tch-cifar10", "export", "--checkpoint", "r", "--format", "onnx"]).is_err());
    }

    #[test]
    fn bad_device_is_rejected_by_the_parser() {
        let err = Cli::try_parse_from(["tch-cifar10", "train", "--device", "gpu"]).unwrap_err();
        assert!(err.to_string().contains("auto, cpu, cuda, cuda:N"), "{err}");
    }
}
