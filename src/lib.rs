//! tch-cifar10: the classic PyTorch CIFAR-10 training program (LeNet-style `Net`, cross-entropy,
//! SGD with momentum, StepLR, 50 epochs) on libtorch through `tch`, computing the same numbers
//! as PyTorch step for step.
//!
//! The table of contents, one module a concern:
//!
//! * a run: [`run`] (its life cycle: run folder, `config.json`, data, training, model file,
//!   summary, chart), [`config`] (the one [`TrainConfig`]), [`train`] (the one loop, the step
//!   seam, schedule, evaluation, validation), [`recipe`] (augmentation, optimizers, schedules,
//!   label smoothing), [`model`] (`Net`), `kernels` (the CPU kernels of
//!   `--kernels fast`: one SGD step of `Net`, threads and SIMD), [`rng`] (libtorch's global
//!   generator, and its MT19937 continued in Rust), [`ops`] (ATen calls tch lacks), [`run_dir`];
//! * data: [`data`] (CIFAR-10 files, verified download, image folders, validation split,
//!   normalisation), [`safe_fs`] (bounded reads of regular files);
//! * results: [`report`] (reporters, progress, metrics files, per-step losses, TensorBoard
//!   event files, charts), [`bars`] (the process's one set of progress bars);
//! * many runs: [`sweep`] (grids, random search, seeds, as child processes; ranked tables);
//! * saved models: [`checkpoint`] (model file, training state), [`eval`] and [`predict`] (the
//!   subcommands; `eval` also holds the calibration figures and temperature scaling),
//!   [`calibrate`] (fits the temperature), [`explain`] (saliency maps), [`export`] (TorchScript, ONNX), [`softmax`] (the classifier head's
//!   mathematics);
//! * the process: [`signals`] (SIGINT, SIGTERM, SIGHUP, SIGUSR1: save and stop);
//! * the machine: [`device`], [`cuda`] (loads libtorch's CUDA library where a driver is
//!   present), [`cuda_graph`] (the CUDA shim: graphs, streams, cuDNN switches), [`wait_policy`] (how
//!   libtorch's OpenMP threads wait, set before libtorch loads), [`info`]; [`error`].

pub mod bars;
pub mod calibrate;
pub mod checkpoint;
pub mod config;
pub mod cuda;
pub mod cuda_graph;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod explain;
pub mod export;
pub mod info;
pub(crate) mod kernels;
pub mod model;
pub mod ops;
pub mod pickle_guard;
pub mod predict;
pub mod program;
pub mod recipe;
pub mod report;
pub mod rng;
pub mod run;
pub mod run_dir;
pub mod run_state;
pub mod safe_fs;
pub mod signals;
pub mod softmax;
pub mod sweep;
pub mod train;
pub mod wait_policy;

pub use config::TrainConfig;
pub use data::{
    download::{Checksum, DownloadOptions},
    folder::ResizeFilter,
    DatasetKind,
};
pub use device::DeviceSpec;
pub use error::{Error, Result};
pub use report::{
    progress::ProgressReporter, EpochMetrics, EpochRecord, EvalMetrics, LogReporter, MemoryReporter, Reporter, Summary,
};
pub use run::{resume_train, run_download, run_train, ResumeOptions, RunExtras, TrainRun, CONFIG_FILE};
pub use run_dir::RunDir;
pub use train::TrainOutcome;

