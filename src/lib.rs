//! tch-cifar10: the classic PyTorch CIFAR-10 training program (LeNet-style `Net`, cross-entropy,
//! SGD with momentum, StepLR, 50 epochs) on libtorch through `tch`, computing the same numbers
//! as PyTorch step for step.
//!
//! Modules, one a concern: [`data`] (CIFAR-10 binary files, verified download, image folders,
//! validation split, normalisation), [`model`] (`Net`),
//! [`train`] (loop, schedule, evaluation), [`report`] (where figures go), [`config`], [`device`],
//! [`info`], [`error`].

pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod info;
pub mod model;
pub mod report;
pub mod run_dir;
pub mod train;

pub use config::TrainConfig;
pub use data::{
    download::{Checksum, DownloadOptions},
    folder::ResizeFilter,
    DatasetKind,
};
pub use device::DeviceSpec;
pub use error::{Error, Result};
pub use report::{EpochMetrics, LogReporter, MemoryReporter, Reporter};
pub use run_dir::RunDir;
pub use train::{EvalMetrics, TrainOutcome};

/// A finished `train` command.
#[derive(Debug)]
pub struct TrainRun {
    /// The trained model and its final test figures.
    pub outcome: TrainOutcome,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// Where the run's files are.
    pub run_dir: RunDir,
}

/// `tch-cifar10 train`: validates `cfg`, creates the run directory with `config.json`, loads
/// the dataset from `cfg.data_dir`, trains and tests, reporting each epoch through `reporter`.
///
/// # Errors
/// An invalid configuration (checked before anything is read or written), missing or malformed
/// data, an unavailable device, an unwritable run directory, or a diverged run.
pub fn run_train(cfg: &TrainConfig, reporter: &mut dyn Reporter) -> Result<TrainRun> {
    cfg.validate()?;
    cfg.device.resolve()?;
    let t0 = std::time::Instant::now();
    let (train_set, test_set) = data::load(cfg.dataset, &cfg.data_dir, cfg.resize_filter, cfg.threads)?;
    tracing::info!(
        "loaded {} training and {} test images from {} in {:.2} s",
        train_set.len(), test_set.len(), cfg.data_dir.display(), t0.elapsed().as_secs_f64()
    );
    // The run directory is made only once the data is known good.
    let mut cfg = cfg.clone();
    let run_dir = RunDir::create(cfg.out_dir.get_or_insert_with(RunDir::default_path).clone())?;
    run_dir.write_json("config.json", &cfg)?;
    let outcome = train::train(&cfg, &train_set, &test_set, reporter)?;
    Ok(TrainRun { outcome, classes: train_set.classes, run_dir })
}

/// `tch-cifar10 download` (and `train --download`): makes sure a complete, verified CIFAR-10 is
/// in `opts.data_dir`, downloading it only when it is not. Returns the folder of `.bin` files.
///
/// # Errors
/// See [`data::download::ensure`].
pub fn run_download(opts: &DownloadOptions) -> Result<std::path::PathBuf> {
    data::download::ensure(opts)
}
