//! tch-cifar10: the classic PyTorch CIFAR-10 training program (LeNet-style `Net`, cross-entropy,
//! SGD with momentum, StepLR, 50 epochs) on libtorch through `tch`, computing the same numbers
//! as PyTorch step for step.
//!
//! Modules, one a concern: [`data`] (CIFAR-10 binary files, verified download,
//! image folders, validation split, normalisation), [`model`] (`Net`),
//! [`train`] (loop, schedule, evaluation), [`report`] (progress, metrics files, charts),
//! [`config`], [`device`], [`info`], [`error`]; [`checkpoint`] (model file, training state),
//! [`eval`] and [`predict`] (using a saved model), [`softmax`] (the classifier head's mathematics);
//! [`cuda`] loads libtorch's CUDA library where a driver is present; [`parity`] writes what
//! `scripts/compare-pytorch` compares; [`sweep`] runs many trainings (grids, random search,
//! seeds) as child processes and ranks them.

pub mod checkpoint;
pub mod config;
pub mod cuda;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod info;
pub mod model;
pub mod parity;
pub mod predict;
pub mod report;
pub mod run_dir;
pub mod safe_fs;
pub mod softmax;
pub mod sweep;
pub mod train;

use std::{path::Path, sync::atomic::AtomicBool};

pub use config::TrainConfig;
pub use data::{
    download::{Checksum, DownloadOptions},
    folder::ResizeFilter,
    DatasetKind,
};
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

/// `tch-cifar10 train`: validates `cfg`, loads the dataset from `cfg.data_dir`, creates the run
/// directory with `config.json`, trains and tests, reporting each epoch through `reporter` and
/// to `metrics.jsonl`, and saving the training state there; at the end saves the model as
/// `model.safetensors`, writes `summary.json` and draws `curves.png` (a chart that cannot be
/// drawn is only logged). `stop` (a Ctrl-C flag) makes it save and return [`Error::Interrupted`].
///
/// # Errors
/// An invalid configuration (checked before anything is read or written), missing or malformed
/// data, an unavailable device, an unwritable run directory, a diverged or interrupted run.
pub fn run_train(cfg: &TrainConfig, reporter: &mut dyn Reporter, stop: Option<&AtomicBool>) -> Result<TrainRun> {
    cfg.validate()?;
    cfg.device.resolve()?;
    let (train_set, test_set) = load_data(cfg)?;
    // The run directory is made only once the data is known good.
    let mut cfg = cfg.clone();
    let run_dir = RunDir::create(cfg.out_dir.get_or_insert_with(RunDir::default_path).clone())?;
    if run_dir.file(checkpoint::state::FILE).exists() {
        return Err(Error::InvalidConfig {
            field: "out",
            value: run_dir.path().display().to_string(),
            expected: "a new run directory: this one holds a run (continue it with --resume, or pick another --out)".into(),
        });
    }
    run_dir.write_json(CONFIG_FILE, &cfg)?;
    let session = train::Session { run_dir: Some(&run_dir), resume: None, stop };
    train_and_report(&cfg, (train_set, test_set), reporter, session, &run_dir)
}

/// `tch-cifar10 train --resume DIR`: continues the run in `dir` from its last saved state, with
/// its saved configuration (only the device and thread count may change: the numbers do not
/// depend on them on the CPU). Ends with exactly the weights of an uninterrupted run.
///
/// # Errors
/// A missing or unreadable `config.json` or checkpoint (nothing is overwritten then), and
/// everything [`run_train`] can return.
pub fn resume_train(
    dir: &Path,
    device: Option<DeviceSpec>,
    threads: Option<usize>,
    reporter: &mut dyn Reporter,
    stop: Option<&AtomicBool>,
) -> Result<TrainRun> {
    let run_dir = RunDir::open(dir)?;
    let config_path = run_dir.file(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).map_err(Error::io(&config_path))?;
    let mut cfg: TrainConfig = serde_json::from_str(&text).map_err(|e| Error::BadCheckpoint {
        path: config_path.clone(),
        reason: format!("not a tch-cifar10 run configuration ({e})"),
    })?;
    cfg.device = device.unwrap_or(cfg.device);
    cfg.threads = threads.or(cfg.threads);
    cfg.out_dir = Some(dir.to_path_buf());
    cfg.validate()?;
    cfg.device.resolve()?;
    let (train_set, test_set) = load_data(&cfg)?;
    let expected: Vec<(&str, Vec<i64>)> = {
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let net = model::Net::new(&vs.root(), train_set.classes.len() as i64);
        net.parameters().iter().map(|(n, p)| (*n, p.size())).collect()
    };
    let ck = checkpoint::state::load(&run_dir.file(checkpoint::state::FILE), &expected)?;
    tracing::info!("resuming {} after epoch {}, step {}", dir.display(), ck.state.epoch, ck.state.step);
    let session = train::Session { run_dir: Some(&run_dir), resume: Some(ck), stop };
    train_and_report(&cfg, (train_set, test_set), reporter, session, &run_dir)
}

/// Trains with `metrics.jsonl` written alongside `reporter`, then saves `model.safetensors`,
/// writes `summary.json` and draws `curves.png` in `run_dir`.
fn train_and_report(
    cfg: &TrainConfig,
    (train_set, test_set): (data::Dataset, data::Dataset),
    reporter: &mut dyn Reporter,
    session: train::Session,
    run_dir: &RunDir,
) -> Result<TrainRun> {
    let mut metrics = MetricsLog::new(run_dir.file(METRICS_FILE));
    let mut tensorboard = report::tensorboard::TensorBoard::new(cfg, run_dir.path());
    let outcome = train::train(cfg, &train_set, &test_set, &mut Fanout(vec![&mut metrics, &mut tensorboard, reporter]), session)?;
    checkpoint::save_model(&run_dir.file(checkpoint::MODEL_FILE), &outcome.net, &train_set.classes)?;
    let records = metrics.finish()?;
    let device = device::device_name(outcome.device);
    let summary = Summary::new(cfg, &records, &outcome.test, &train_set.classes, outcome.seconds, &device);
    run_dir.write_json(SUMMARY_FILE, &summary)?;
    let mut artifacts: Vec<_> =
        [CONFIG_FILE, checkpoint::state::FILE, checkpoint::MODEL_FILE, METRICS_FILE, SUMMARY_FILE]
            .map(|f| run_dir.file(f))
            .into_iter()
            .filter(|f| f.is_file())
            .collect();
    let label = run_dir.path().file_name().map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned());
    match chart::curves_png(&run_dir.file(CURVES_FILE), &[RunCurves { label, records }]) {
        Ok(()) => artifacts.push(run_dir.file(CURVES_FILE)),
        Err(e) => tracing::warn!("no chart: {e}"),
    }
    Ok(TrainRun { outcome, classes: train_set.classes, run_dir: run_dir.clone(), summary, artifacts })
}

/// The configuration file inside a run directory.
pub const CONFIG_FILE: &str = "config.json";

fn load_data(cfg: &TrainConfig) -> Result<(data::Dataset, data::Dataset)> {
    let t0 = std::time::Instant::now();
    let (train_set, test_set) = data::load(cfg.dataset, &cfg.data_dir, cfg.resize_filter, cfg.threads)?;
    tracing::info!(
        "loaded {} training and {} test images from {} in {:.2} s",
        train_set.len(), test_set.len(), cfg.data_dir.display(), t0.elapsed().as_secs_f64()
    );
    Ok((train_set, test_set))
}

/// `tch-cifar10 download` (and `train --download`): makes sure a complete, verified CIFAR-10 is
/// in `opts.data_dir`, downloading it only when it is not. Returns the folder of `.bin` files.
///
/// # Errors
/// See [`data::download::ensure`].
pub fn run_download(opts: &DownloadOptions) -> Result<std::path::PathBuf> {
    data::download::ensure(opts)
}
