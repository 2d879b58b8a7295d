//! A run's life: validate the configuration (once), load the data, make the run directory with
//! `config.json`, train ([`crate::train::train`]) with `metrics.jsonl` written as it goes, then
//! save the model file, `summary.json` and `curves.png`. One [`run_train`] for a new run (train
//! and finetune), one [`resume_train`] to continue one.

use std::{
    path::{Path, PathBuf},
    sync::atomic::AtomicBool,
};

use crate::{
    checkpoint::{self, state::TrainState},
    config::{CudaGraphs, Kernels, TrainConfig},
    data::{self, download::DownloadOptions},
    device::{self, DeviceSpec},
    error::{Error, Result},
    model,
    report::{
        chart::{self, RunCurves, CURVES_FILE},
        metrics::{MetricsLog, METRICS_FILE, SUMMARY_FILE},
        steps::StepsJsonl,
        tensorboard::TensorBoard,
        Fanout, Reporter, Summary,
    },
    run_dir::RunDir,
    run_state::{self, RunState},
    safe_fs,
    train::{self, TrainOutcome},
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

/// What a new run does besides training: fetch CIFAR-10 first (`--download`), and write every
/// step's loss (the hidden `--steps-jsonl`, for `scripts/compare-pytorch`).
#[derive(Clone, Debug, Default)]
pub struct RunExtras {
    /// Download and verify CIFAR-10 into the data folder first, unless a complete copy is there.
    pub download: Option<DownloadOptions>,
    /// Write every step's loss to this file ([`StepsJsonl`]).
    pub steps_jsonl: Option<PathBuf>,
}

/// `tch-cifar10 train` and `finetune`: validates `cfg` (once, before anything is fetched, read or
/// written), downloads CIFAR-10 when `extras` asks, loads the dataset from `cfg.data_dir`,
/// creates the run directory with `config.json`, trains and tests, reporting each epoch through
/// `reporter` and to `metrics.jsonl`, and saving the training state there; at the end saves the
/// model as `model.safetensors`, writes `summary.json` and draws `curves.png` (a chart that
/// cannot be drawn is only logged). `stop` (a Ctrl-C flag) makes it save and return
/// [`Error::Interrupted`].
///
/// # Errors
/// An invalid configuration, a failed download, missing or malformed data, an unavailable
/// device, an unwritable run directory, a diverged or interrupted run.
pub fn run_train(cfg: &TrainConfig, extras: &RunExtras, reporter: &mut dyn Reporter, stop: Option<&AtomicBool>) -> Result<TrainRun> {
    cfg.validate()?;
    train::preflight(cfg, cfg.device.resolve()?)?;
    if let Some(opts) = &extras.download {
        run_download(opts)?;
    }
    let mut cfg = cfg.clone();
    let run_dir = RunDir::at(cfg.out_dir.get_or_insert_with(RunDir::default_path).clone());
    refuse_a_run(&run_dir)?; // before the data is read
    let (train_set, test_set) = load_data(&cfg)?;
    data::split::check_size(cfg.val_size, train_set.len())?;
    cfg.check_with_data(train_set.len() - cfg.val_size)?;
    // The run directory is made only once the data and settings are known good.
    let run_dir = RunDir::create(run_dir.path())?;
    let _lock = run_dir.lock()?;
    refuse_a_run(&run_dir)?; // again under the lock: another process may have started one
    run_dir.remove_stale_temporaries();
    run_dir.write_json(CONFIG_FILE, &cfg)?;
    let mut steps = extras.steps_jsonl.as_deref().map(StepsJsonl::create).transpose()?;
    let mut reporters: Vec<&mut dyn Reporter> = vec![reporter];
    if let Some(s) = steps.as_mut() {
        reporters.push(s);
    }
    let session = train::Session { run_dir: Some(&run_dir), resume: None, stop, data: Some(train_set.fingerprint()) };
    let run = train_and_report(&cfg, (train_set, test_set), &mut Fanout(reporters), session, &run_dir);
    steps.map_or(Ok(()), StepsJsonl::finish)?;
    run
}

/// What `train --resume` may say besides the run folder: the device and the thread count may
/// change (the numbers do not depend on them on the CPU); any other setting must be the run's.
#[derive(Clone, Debug, Default)]
pub struct ResumeOptions {
    /// Train on this device instead of the run's.
    pub device: Option<DeviceSpec>,
    /// Use this many libtorch threads instead of the run's setting.
    pub threads: Option<usize>,
    /// Read the data from here instead of the run's `data_dir` (a run started with a relative
    /// path, resumed from another folder); it must be the same data (checked by its fingerprint).
    pub data_dir: Option<PathBuf>,
    /// `--kernels`: refused when it is not the run's.
    pub kernels: Option<Kernels>,
    /// `--cuda-graphs`: how this session computes its steps on CUDA (the same numbers).
    pub cuda_graphs: Option<CudaGraphs>,
    /// `--deterministic`: cuDNN's deterministic algorithms for this session.
    pub deterministic: bool,
    /// `--epochs N`: train the run to N epochs, more than it asked for (finished or not). The
    /// schedule is recomputed for the new length and the new length recorded in `config.json`
    /// (`epochs`, and the old one in `extended_from`).
    pub epochs: Option<usize>,
}

/// `tch-cifar10 train --resume DIR`: continues the run in `dir` from its last saved state, with
/// its saved configuration (see [`ResumeOptions`]). Ends with exactly the weights of an
/// uninterrupted run. A run killed before its first checkpoint (`config.json` and no
/// `checkpoint.safetensors`) starts again from its first step with the recorded settings.
///
/// # Errors
/// A missing or unreadable `config.json` or checkpoint (nothing is overwritten then), a setting
/// that differs from the run's, and everything [`run_train`] can return.
pub fn resume_train(dir: &Path, opts: &ResumeOptions, reporter: &mut dyn Reporter, stop: Option<&AtomicBool>) -> Result<TrainRun> {
    let run_dir = RunDir::open(dir)?;
    let _lock = run_dir.lock()?;
    run_dir.remove_stale_temporaries();
    // The summary is written last: a run that has one for its length is finished, and a
    // resume would only evaluate it again and rewrite its files.
    let state = RunState::of(&run_dir)?;
    let cannot = |why: String| Err(Error::InvalidConfig { field: "resume", value: dir.display().to_string(), expected: why });
    let config_path = run_dir.file(CONFIG_FILE);
    if state == RunState::Empty {
        return cannot(run_state::nothing_to_resume(dir, &state));
    }
    let text = safe_fs::read_text(&config_path, safe_fs::MAX_TEXT_FILE_BYTES)?;
    let mut cfg: TrainConfig = serde_json::from_str(&text).map_err(|e| Error::BadCheckpoint {
        path: config_path.clone(),
        reason: format!("not a tch-cifar10 run configuration ({e})"),
    })?;
    let extension = extension(dir, &state, &cfg, opts.epochs)?;
    if extension.is_none() && matches!(state, RunState::Finished { .. }) {
        return cannot(run_state::nothing_to_resume(dir, &state));
    }
    let recorded = extension.map(|n| {
        let mut c = cfg.clone();
        c.extended_from.push(c.epochs);
        c.epochs = n;
        c
    });
    if let Some(r) = &recorded {
        (cfg.epochs, cfg.extended_from) = (r.epochs, r.extended_from.clone());
    }
    if let Some(k) = opts.kernels.filter(|&k| k != cfg.kernels) {
        return Err(Error::InvalidConfig {
            field: "kernels",
            value: format!("{k:?}").to_lowercase(),
            expected: format!("the run's own setting, {:?}, on --resume (a run resumes exactly only with the kernels it began with)", cfg.kernels).to_lowercase(),
        });
    }
    cfg.device = opts.device.unwrap_or(cfg.device);
    cfg.threads = opts.threads.or(cfg.threads);
    cfg.data_dir = opts.data_dir.clone().unwrap_or(cfg.data_dir);
    cfg.cuda_graphs = opts.cuda_graphs.unwrap_or(cfg.cuda_graphs);
    cfg.deterministic |= opts.deterministic;
    cfg.out_dir = Some(dir.to_path_buf());
    cfg.validate()?;
    train::preflight(&cfg, cfg.device.resolve()?)?;
    let (train_set, test_set) = load_data(&cfg)?;
    let expected: Vec<(&str, Vec<i64>)> = {
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let net = model::Net::new(&vs.root(), train_set.classes.len() as i64);
        net.parameters().iter().map(|(n, p)| (*n, p.size())).collect()
    };
    let ck_path = run_dir.file(checkpoint::state::FILE);
    if ck_path.symlink_metadata().is_err() {
        // Killed before its first checkpoint (kill -9, the OOM killer, a node lost in epoch 1):
        // nothing of the run is kept but its settings, so it starts again from its first step.
        tracing::warn!("{} holds no {}: the run starts from its first step with the settings in {CONFIG_FILE}", dir.display(), checkpoint::state::FILE);
        data::split::check_size(cfg.val_size, train_set.len())?;
        cfg.check_with_data(train_set.len() - cfg.val_size)?;
        run_dir.write_json(CONFIG_FILE, &cfg)?;
        let session = train::Session { run_dir: Some(&run_dir), resume: None, stop, data: Some(train_set.fingerprint()) };
        return train_and_report(&cfg, (train_set, test_set), reporter, session, &run_dir);
    }
    let mut ck = checkpoint::state::load(&ck_path, &expected)?;
    if let Some(saved) = ck.state.config.as_mut() {
        // The new length is the one change an extension makes to the run's settings (also when
        // an extension was stopped before its first checkpoint).
        if recorded.is_some() || (saved.epochs < cfg.epochs && cfg.extended_from.contains(&saved.epochs)) {
            (saved.epochs, saved.extended_from) = (cfg.epochs, cfg.extended_from.clone());
        }
    }
    check_resumable(&cfg, &ck.state, train_set.len(), &ck_path)?;
    check_threads(&cfg, ck.state.threads)?;
    let data = train_set.fingerprint();
    if let Some(saved) = ck.state.data.as_ref().filter(|&saved| *saved != data) {
        return Err(Error::BadCheckpoint {
            path: ck_path,
            reason: format!(
                "the run was trained on other data: {} images of {} classes with digest {} then, {} images of {} classes with digest {} in {} now; \
                 a run resumes exactly only on the same data (restore it, or start a new run)",
                saved.images, saved.classes.len(), &saved.digest[..16.min(saved.digest.len())],
                data.images, data.classes.len(), &data.digest[..16.min(data.digest.len())], cfg.data_dir.display()
            ),
        });
    }
    if let Some(r) = &recorded {
        run_dir.write_json(CONFIG_FILE, r)?;
        // The finished run's summary (its final test) is kept beside the new one.
        let summary = run_dir.file(SUMMARY_FILE);
        if summary.is_file() {
            let kept = run_dir.file(&format!("summary-{}-epochs.json", r.extended_from.last().expect("recorded")));
            std::fs::rename(&summary, &kept).map_err(Error::io(&summary))?;
            tracing::info!("the summary of the finished run is kept as {}", kept.display());
        }
        let from = r.extended_from.last().expect("an extension records the old length");
        let same = if cfg.recipe.lr_schedule.depends_on_length() {
            format!(
                "the {:?} schedule depends on the run's length: it is recomputed for {} epochs from epoch {}, so this run \
                 differs from one started with --epochs {}",
                cfg.recipe.lr_schedule, r.epochs, ck.state.epoch + 1, r.epochs
            )
            .to_lowercase()
        } else {
            format!("its schedule depends on the epoch alone, so it ends as a run started with --epochs {} would", r.epochs)
        };
        tracing::info!("extending {} from {from} to {} epochs (recorded in {CONFIG_FILE}); {same}", dir.display(), r.epochs);
    }
    // In the numbering of "interrupted at epoch E, step S": the epoch it stopped in, 1-based.
    match ck.state.step {
        0 => tracing::info!("resuming {} after epoch {}", dir.display(), ck.state.epoch),
        step => tracing::info!("resuming {} at epoch {}, step {step}", dir.display(), ck.state.epoch + 1),
    }
    let session = train::Session { run_dir: Some(&run_dir), resume: Some(ck), stop, data: Some(data) };
    train_and_report(&cfg, (train_set, test_set), reporter, session, &run_dir)
}

/// Refuses a resume of a reference-mode run on the CPU with another libtorch thread count than
/// it computed with (`then`): libtorch splits its sums by thread, so the result would be neither
/// run's. The fast kernels give the same bits at any thread count, and on CUDA the count only
/// affects the CPU side, so those may change it.
///
/// # Errors
/// [`Error::InvalidConfig`] for `threads`, naming both counts and the flag that works.
fn check_threads(cfg: &TrainConfig, then: Option<usize>) -> Result<()> {
    let on_cpu = matches!(cfg.device.resolve(), Ok(tch::Device::Cpu));
    let now = cfg.threads.unwrap_or_else(|| tch::get_num_threads().max(1) as usize);
    match then {
        Some(then) if cfg.kernels == Kernels::Reference && on_cpu && now != then => Err(Error::InvalidConfig {
            field: "threads",
            value: now.to_string(),
            expected: format!(
                "the run's own {then} on --resume: it computed with {then} libtorch threads, and the reference mode's sums \
                 depend on the thread count, so a resume with {now} would match neither run; resume with --threads {then} \
                 (a resume is bit for bit with the run's kernels, thread count, data and device)"
            ),
        }),
        _ => Ok(()),
    }
}

/// Refuses a folder that already holds a run (any run file).
///
/// # Errors
/// [`Error::InvalidConfig`] for `--out`, saying what state the run there is in and the command
/// that works (continue it, extend it, or another folder).
fn refuse_a_run(run_dir: &RunDir) -> Result<()> {
    if run_dir.run_files().is_empty() {
        return Ok(());
    }
    let state = RunState::of(run_dir).unwrap_or(RunState::NoCheckpoint { files: run_dir.run_files() });
    Err(Error::InvalidConfig {
        field: "out",
        value: run_dir.path().display().to_string(),
        expected: run_state::out_taken(run_dir.path(), &state),
    })
}

/// The length `--epochs N` extends the run in `dir` to, `None` when it does not extend it (no
/// `--epochs`, or the run's own length).
///
/// # Errors
/// [`Error::InvalidConfig`] for `epochs` when N is below the run's length, or the run was ended
/// by early stopping; each says the folder's state and the command that works.
fn extension(dir: &Path, state: &RunState, cfg: &TrainConfig, epochs: Option<usize>) -> Result<Option<usize>> {
    let Some(n) = epochs.filter(|&n| n != cfg.epochs) else { return Ok(None) };
    let bad = |expected: String| Err(Error::InvalidConfig { field: "epochs", value: n.to_string(), expected });
    if n < cfg.epochs {
        let d = dir.to_string_lossy();
        let next = match state {
            RunState::Finished { .. } => crate::program::command(&["eval", "--checkpoint", &d]),
            _ => crate::program::command(&["train", "--resume", &d]),
        };
        return bad(format!(
            "more than the run's {} epochs: a run can be trained longer, not shorter ({d} holds {}; `{next}` is what works)",
            cfg.epochs,
            state.describe()
        ));
    }
    if let RunState::Finished { trained, epochs } = state {
        if trained < epochs {
            return bad(format!("none for this run: {}", run_state::nothing_to_resume(dir, state)));
        }
    }
    Ok(Some(n))
}

/// Checks that the training state at `path` continues the run that `cfg` (from `config.json`,
/// with the device and thread count of this session) describes, on `train_images` images: the
/// same settings as when it was saved, and a position inside the run.
///
/// # Errors
/// [`Error::BadCheckpoint`] naming the first setting that differs (an edited `config.json`) or
/// the inconsistency.
fn check_resumable(cfg: &TrainConfig, state: &TrainState, train_images: usize, path: &Path) -> Result<()> {
    let bad = |reason: String| Err(Error::BadCheckpoint { path: path.to_path_buf(), reason });
    if let Some(saved) = &state.config {
        // Only the device, the thread count, how CUDA runs the steps (the same numbers), where
        // the data is read from (the same data: its fingerprint is checked) and the folder's own
        // path may change.
        let comparable = |c: &TrainConfig| {
            let neutral = TrainConfig {
                device: DeviceSpec::Auto,
                threads: None,
                out_dir: None,
                cuda_graphs: CudaGraphs::Auto,
                deterministic: false,
                data_dir: PathBuf::new(),
                ..c.clone()
            };
            let mut v = serde_json::to_value(neutral)
                .expect("configurations serialise to JSON");
            std::mem::take(v.as_object_mut().expect("a configuration is a JSON object"))
        };
        let (now, then) = (comparable(cfg), comparable(saved));
        if let Some((key, value)) = now.iter().find(|(k, v)| then.get(*k) != Some(*v)) {
            let was = then.get(key).map_or_else(|| "absent".to_string(), ToString::to_string);
            return bad(format!(
                "{CONFIG_FILE} says {key} = {value}, but the run was trained with {was}; a resumed run keeps its settings \
                 (only --device, --threads, --data-dir, --cuda-graphs and --deterministic may change): restore {CONFIG_FILE}, or start a new run"
            ));
        }
    }
    let steps = train_images.saturating_sub(cfg.val_size).div_ceil(cfg.batch_size);
    if state.epoch > cfg.epochs || state.step >= steps.max(1) || state.partial_losses.len() != state.step {
        return bad(format!(
            "it stands at epoch {} step {} ({} step losses), which is not a point of this run ({} epochs of {steps} steps)",
            state.epoch,
            state.step,
            state.partial_losses.len(),
            cfg.epochs
        ));
    }
    Ok(())
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
    let mut tensorboard = TensorBoard::new(cfg, run_dir.path());
    let outcome = train::train(cfg, &train_set, &test_set, &mut Fanout(vec![&mut metrics, &mut tensorboard, reporter]), session)?;
    if let Some(name) = outcome.net.first_non_finite() {
        return Err(Error::NonFinite { epoch: cfg.epochs, what: format!("parameter {name}") });
    }
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

pub use crate::run_dir::CONFIG_FILE;

fn load_data(cfg: &TrainConfig) -> Result<(data::Dataset, data::Dataset)> {
    let t0 = std::time::Instant::now();
    let (train_set, test_set) = match cfg.split_test {
        Some(fraction) => data::folder::load_tree(&cfg.data_dir, cfg.resize_filter, cfg.threads, fraction, cfg.seed)?,
        None => data::load(cfg.dataset, &cfg.data_dir, cfg.resize_filter, cfg.threads)?,
    };
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
