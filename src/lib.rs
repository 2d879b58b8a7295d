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
pub use train::{EvalMetrics, TrainOutcome};

/// `tch-cifar10 train`: validates `cfg`, loads the dataset from `cfg.data_dir`, trains and tests,
/// logging each epoch through `reporter`.
///
/// # Errors
/// An invalid configuration (checked before any data is read), missing or malformed data, an
/// unavailable device, or a diverged run.
pub fn run_train(cfg: &TrainConfig, reporter: &mut dyn Reporter) -> Result<(TrainOutcome, Vec<String>)> {
    cfg.validate()?;
    cfg.device.resolve()?;
    let t0 = std::time::Instant::now();
    let (train_set, test_set) = data::load(cfg.dataset, &cfg.data_dir, cfg.resize_filter, cfg.threads)?;
    tracing::info!(
        "loaded {} training and {} test images from {} in {:.2} s",
        train_set.len(), test_set.len(), cfg.data_dir.display(), t0.elapsed().as_secs_f64()
    );
    let outcome = train::train(cfg, &train_set, &test_set, reporter)?;
    Ok((outcome, train_set.classes))
}

/// `tch-cifar10 download` (and `train --download`): makes sure a complete, verified CIFAR-10 is
/// in `opts.data_dir`, downloading it only when it is not. Returns the folder of `.bin` files.
///
/// # Errors
/// See [`data::download::ensure`].
pub fn run_download(opts: &DownloadOptions) -> Result<std::path::PathBuf> {
    data::download::ensure(opts)
}
