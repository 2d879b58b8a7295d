//! tch-cifar10: the classic PyTorch CIFAR-10 training program (LeNet-style `Net`, cross-entropy,
//! SGD with momentum, StepLR, 50 epochs) on libtorch through `tch`, computing the same numbers
//! as PyTorch step for step.
//!
//! Modules, one a concern: [`data`] (CIFAR-10 binary files, normalisation), [`model`] (`Net`),
//! [`train`] (loop, schedule, evaluation), [`report`] (where figures go), [`config`], [`device`],
//! [`info`], [`error`]; [`cuda`] loads libtorch's CUDA library where a driver is present;
//! [`parity`] writes what `scripts/compare-pytorch` compares.

pub mod config;
pub mod cuda;
pub mod data;
pub mod device;
pub mod error;
pub mod info;
pub mod model;
pub mod parity;
pub mod report;
pub mod train;

pub use config::TrainConfig;
pub use device::DeviceSpec;
pub use error::{Error, Result};
pub use report::{EpochMetrics, LogReporter, MemoryReporter, Reporter};
pub use train::{EvalMetrics, TrainOutcome};

/// `tch-cifar10 train`: validates `cfg`, loads CIFAR-10 from `cfg.data_dir`, trains and tests,
/// logging each epoch through `reporter`.
///
/// # Errors
/// An invalid configuration (checked before any data is read), missing or malformed data, an
/// unavailable device, or a diverged run.
pub fn run_train(cfg: &TrainConfig, reporter: &mut dyn Reporter) -> Result<(TrainOutcome, Vec<String>)> {
    cfg.validate()?;
    cfg.device.resolve()?;
    let t0 = std::time::Instant::now();
    let (train_set, test_set) = data::cifar::load(&cfg.data_dir)?;
    tracing::info!(
        "loaded {} training and {} test images from {} in {:.2} s",
        train_set.len(), test_set.len(), cfg.data_dir.display(), t0.elapsed().as_secs_f64()
    );
    let outcome = train::train(cfg, &train_set, &test_set, reporter)?;
    Ok((outcome, train_set.classes))
}
