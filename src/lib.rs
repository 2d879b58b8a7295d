//! tch-cifar10: the classic PyTorch CIFAR-10 training program (LeNet-style `Net`, cross-entropy,
//! SGD with momentum, StepLR, 50 epochs) on libtorch through `tch`, computing the same numbers
//! as PyTorch step for step.
//!
//! Modules, one a concern: [`data`] (CIFAR-10 binary files, normalisation), [`model`] (`Net`),
//! [`train`] (loop, schedule, evaluation), [`report`] (progress, metrics files, charts),
//! [`config`], [`device`], [`info`], [`error`].

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
pub use device::DeviceSpec;
pub use error::{Error, Result};
pub use report::{progress::ProgressReporter, EpochMetrics, EpochRecord, LogReporter, MemoryReporter, Reporter, Summary};
pub use run_dir::RunDir;
pub use train::{EvalMetrics, TrainOutcome};

use report::{
    chart::{self, RunCurves, CURVES_FILE},
    metrics::{MetricsLog, METRICS_FILE, SUMMARY_FILE},
    Fanout,
};

/// A finished `train` command.
#[derive(Debug)]
pub struct TrainRun {
    /// The trained model and its final test figures.
    pub outcome: TrainOutcome,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// Where the run's files are.
    pub run_dir: RunDir,
    /// What `summary.json` holds.
    pub summary: Summary,
    /// The files written in the run directory, in order.
    pub artifacts: Vec<std::path::PathBuf>,
}

/// `tch-cifar10 train`: validates `cfg`, creates the run directory with `config.json`, loads
/// CIFAR-10 from `cfg.data_dir`, trains and tests, reporting each epoch through `reporter` and to
/// `metrics.jsonl`; at the end writes `summary.json` and draws `curves.png`.
///
/// # Errors
/// An invalid configuration (checked before anything is read or written), missing or malformed
/// data, an unavailable device, an unwritable run directory, or a diverged run. A chart that
/// cannot be drawn is only logged.
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
    let mut metrics = MetricsLog::new(run_dir.file(METRICS_FILE));
    let outcome = train::train(&cfg, &train_set, &test_set, &mut Fanout(vec![&mut metrics, reporter]))?;
    let records = metrics.finish()?;
    let device = device::device_name(outcome.device);
    let summary = Summary::new(&cfg, &records, &outcome.test, &train_set.classes, outcome.seconds, &device);
    run_dir.write_json(SUMMARY_FILE, &summary)?;
    let mut artifacts: Vec<_> = ["config.json", METRICS_FILE, SUMMARY_FILE].map(|f| run_dir.file(f)).into();
    let label = run_dir.path().file_name().map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned());
    match chart::curves_png(&run_dir.file(CURVES_FILE), &[RunCurves { label, records }]) {
        Ok(()) => artifacts.push(run_dir.file(CURVES_FILE)),
        Err(e) => tracing::warn!("no chart: {e}"),
    }
    Ok(TrainRun { outcome, classes: train_set.classes, run_dir, summary, artifacts })
}
