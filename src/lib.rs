//! tch-cifar10: the classic PyTorch CIFAR-10 training program (LeNet-style `Net`, cross-entropy,
//! SGD with momentum, StepLR, 50 epochs) on libtorch through `tch`, computing the same numbers
//! as PyTorch step for step.
//!
//! Modules, one a concern: [`data`] (CIFAR-10 binary files, normalisation), [`model`] (`Net`),
//! [`train`] (loop, schedule, evaluation), [`report`] (where figures go), [`config`], [`device`],
//! [`info`], [`error`]; [`checkpoint`] (the model file), [`eval`] and [`predict`] (using a saved
//! model), [`softmax`] (the classifier head's mathematics).

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod info;
pub mod model;
pub mod predict;
pub mod report;
pub mod run_dir;
pub mod softmax;
pub mod train;

pub use config::TrainConfig;
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
/// CIFAR-10 from `cfg.data_dir`, trains and tests, reporting each epoch through `reporter`, and
/// saves the trained model as `model.safetensors` in the run directory.
///
/// # Errors
/// An invalid configuration (checked before anything is read or written), missing or malformed
/// data, an unavailable device, an unwritable run directory, or a diverged run.
pub fn run_train(cfg: &TrainConfig, reporter: &mut dyn Reporter) -> Result<TrainRun> {
    cfg.validate()?;
    cfg.device.resolve()?;
    let t0 = std::time::Instant::now();
    let (train_set, test_set) = data::cifar::load(&cfg.data_dir)?;
    tracing::info!(
        "loaded {} training and {} test images from {} in {:.2} s",
        train_set.len(), test_set.len(), cfg.data_dir.display(), t0.elapsed().as_secs_f64()
    );
    // The run directory is made only once the data is known good.
    let mut cfg = cfg.clone();
    let run_dir = RunDir::create(cfg.out_dir.get_or_insert_with(RunDir::default_path).clone())?;
    run_dir.write_json("config.json", &cfg)?;
    let outcome = train::train(&cfg, &train_set, &test_set, reporter)?;
    checkpoint::save_model(&run_dir.file(checkpoint::MODEL_FILE), &outcome.net, &train_set.classes)?;
    Ok(TrainRun { outcome, classes: train_set.classes, run_dir })
}
