//! `tch-cifar10 sweep`: many `train` runs over a search space and seeds, resumable, with a
//! table of results and charts.
//!
//! A sweep folder holds `sweep.json` (the space and options, [`SweepSpec`]), one ordinary run
//! directory per trial under `trials/<id>/`, and the results ([`results`]). Each trial runs as a
//! child process of this binary (`tch-cifar10 -q train ... --out DIR/trials/<id>`, its output
//! in `train.log` there): thread count, the global generator, the Ctrl-C flag and the CUDA
//! context are per process, and `--print-commands` prints exactly the commands the sweep runs.
//! The sweep plans from the trial folders' own files (finished if `summary.json`, resumed with
//! `train --resume` if `config.json`, which starts again a trial killed before its first
//! checkpoint, else new), prunes by sending a run the SIGINT a user's Ctrl-C
//! would, and builds its tables from `summary.json` and `metrics.jsonl`; it never calls the
//! training code itself.

pub mod command;
pub(crate) mod jobs;
pub mod prune;
pub mod results;
pub mod slurm;
pub mod space;

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::{atomic::AtomicBool, Mutex},
};

use serde::{Deserialize, Serialize};

use self::{
    command::to_args,
    jobs::{Event, Exit, Job, Pruning},
    prune::PruneRule,
    results::{Row, Status},
    space::{Space, Spec},
};
use crate::{
    config::TrainConfig,
    data::download::DownloadOptions,
    device::DeviceSpec,
    error::{Error, Result},
    report::tensorboard::{self, Domain},
    run_dir::RunDir,
    safe_fs,
};

/// The sweep's record in its folder.
pub const SWEEP_FILE: &str = "sweep.json";
/// The folder of the trials' run directories.
pub const TRIALS_DIR: &str = "trials";

/// What decides a sweep's trials, saved as `sweep.json`: running the same sweep again must
/// give the same one (only the device, threads and TensorBoard output may change).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// The swept parameters.
    pub space: Space,
    /// The training seeds each setting runs with.
    pub seeds: Vec<i64>,
    /// Draws of the distributions (`--trials`).
    pub trials: Option<usize>,
    /// The seed of the draws (`--sweep-seed`).
    pub sweep_seed: u64,
    /// `--prune`: when trials that are behind are stopped.
    pub prune: Option<PruneRule>,
    /// Every other `train` setting, as given.
    pub base: TrainConfig,
}

/// A sweep to run or print.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// The sweep folder.
    pub dir: PathBuf,
    /// The space and options.
    pub spec: SweepSpec,
    /// Trials run at a time.
    pub jobs: usize,
    /// Download CIFAR-10 first (`--download`).
    pub download: Option<DownloadOptions>,
}

/// What `tch-cifar10 sweep` is asked to do.
#[derive(Clone, Debug)]
pub enum SweepRequest {
    /// Run the trials not finished yet, then build the results.
    Run(SweepOptions),
    /// Print each unfinished trial's command (after writing `sweep.json`).
    PrintCommands(SweepOptions),
    /// Build the results of the sweep in this folder from whatever finished.
    Collect(PathBuf),
    /// Submit the unfinished trials to Slurm as one job array (`--slurm`), and return.
    Slurm(SweepOptions, slurm::SlurmOptions),
}

/// What a sweep did.
#[derive(Debug)]
pub struct SweepOutcome {
    /// The sweep folder.
    pub dir: PathBuf,
    /// What goes to stdout: the results table (and where the files are), or the commands.
    pub report: String,
    /// Trials that failed, with why.
    pub failed: Vec<(String, String)>,
    /// Whether the run was stopped (Ctrl-C) before every trial ended.
    pub interrupted: bool,
}

impl SweepOutcome {
    /// `Ok` when every trial ended as planned.
    ///
    /// # Errors
    /// [`Error::SweepInterrupted`] when stopped, [`Error::BadSweep`] naming the failed trials.
    pub fn status(&self) -> Result<()> {
        if self.interrupted {
            return Err(Error::SweepInterrupted { dir: self.dir.clone() });
        }
        if !self.failed.is_empty() {
            let list = self.failed.iter().map(|(id, why)| format!("{id}: {why}")).collect::<Vec<_>>().join("\n  ");
            return Err(Error::BadSweep {
                path: self.dir.join(TRIALS_DIR),
                reason: format!("{} trial(s) failed (see train.log in their folders; a rerun tries them again):\n  {list}", self.failed.len()),
            });
        }
        Ok(())
    }
}

/// One planned run.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// Its position in the plan (0-based).
    pub index: usize,
    /// `t003-lr=1e-3-seed=1`: the position (1-based), the swept values and the seed.
    pub id: String,
    /// The swept values without the seed (`lr=1e-3`): what tells its setting from the others.
    pub setting_label: String,
    /// Its folder, `DIR/trials/<id>` (absolute).
    pub dir: PathBuf,
    /// Its configuration (paths absolute, `out_dir` = `dir`).
    pub cfg: TrainConfig,
}

/// The trials of `spec` in the sweep folder `dir`: seed by seed, each setting of the space in
/// order (see [`space::expand`]).
///
/// # Errors
/// A space that does not expand ([`space::expand`]), or a trial whose configuration is invalid
/// (the flag and value are named).
pub fn plan(dir: &Path, spec: &SweepSpec) -> Result<Vec<Trial>> {
    let settings = space::expand(&spec.space, spec.trials, spec.sweep_seed)?;
    let varying = spec.space.varying();
    let total = settings.len().checked_mul(spec.seeds.len()).filter(|t| *t <= space::MAX_TRIALS).ok_or_else(|| {
        space::too_large(
            "seeds",
            spec.seeds.len().to_string(),
            settings.len().checked_mul(spec.seeds.len()),
            &format!("{} settings x {} seeds", settings.len(), spec.seeds.len()),
        )
    })?;
    let width = total.to_string().len().max(3);
    let dir = std::path::absolute(dir).map_err(Error::io(dir))?;
    let mut base = spec.base.clone();
    base.data_dir = std::path::absolute(&base.data_dir).map_err(Error::io(&base.data_dir))?;
    if let Some(from) = &base.init_from {
        base.init_from = Some(std::path::absolute(from).map_err(Error::io(from))?);
    }
    let labels = space::labels(&settings, &varying);
    let mut trials = Vec::with_capacity(total);
    for &seed in &spec.seeds {
        for (setting, values) in settings.iter().zip(&labels) {
            let index = trials.len();
            let values = values.clone();
            let id = [vec![format!("t{:0width$}", index + 1)], values.clone(), vec![format!("seed={seed}")]].concat().join("-");
            let trial_dir = dir.join(TRIALS_DIR).join(&id);
            let mut cfg = setting.apply(&base);
            cfg.seed = seed;
            cfg.out_dir = Some(trial_dir.clone());
            cfg.validate().map_err(|e| match e {
                // Name the combination of the space that does not go together.
                Error::InvalidConfig { field, value, expected } if !values.is_empty() => {
                    Error::InvalidConfig { field, value, expected: format!("{expected} (in the sweep's setting {})", values.join(" ")) }
                }
                other => other,
            })?;
            trials.push(Trial { index, id, setting_label: values.join(" "), dir: trial_dir, cfg });
        }
    }
    Ok(trials)
}

/// `tch-cifar10 sweep`: runs, prints or collects (see [`SweepRequest`]); `stop` (the Ctrl-C
/// flag) stops the run, each running trial saving its state.
///
/// # Errors
/// Bad options (named), a sweep folder holding another sweep ([`Error::SweepMismatch`]), an
/// unreadable `sweep.json`, a failed download, results that cannot be written. Failed trials
/// are not errors here: see [`SweepOutcome::status`].
pub fn run(request: &SweepRequest, stop: Option<&AtomicBool>) -> Result<SweepOutcome> {
    match request {
        SweepRequest::Run(opts) => run_trials(opts, stop),
        SweepRequest::PrintCommands(opts) => print_commands(opts),
        SweepRequest::Slurm(opts, slurm) => submit_to_slurm(opts, slurm),
        SweepRequest::Collect(dir) => {
            let spec = read_spec(dir)?;
            let trials = plan(dir, &spec)?;
            let report = build_results(dir, &spec, &trials)?;
            Ok(SweepOutcome { dir: dir.clone(), report, failed: Vec::new(), interrupted: false })
        }
    }
}

/// Checks the options, creates the folder and writes `sweep.json`, or checks that the one
/// there records the same sweep.
fn open(opts: &SweepOptions) -> Result<Vec<Trial>> {
    let trials = check(opts)?;
    RunDir::create(&opts.dir)?.write_json(SWEEP_FILE, &opts.spec)?;
    Ok(trials)
}

/// Checks the options, and that the folder's `sweep.json` (if any) records the same sweep;
/// writes nothing.
fn check(opts: &SweepOptions) -> Result<Vec<Trial>> {
    let spec = &opts.spec;
    if opts.jobs == 0 {
        return Err(Error::InvalidConfig { field: "jobs", value: "0".into(), expected: "at least 1".into() });
    }
    if spec.seeds.is_empty() {
        return Err(Error::InvalidConfig { field: "seeds", value: String::new(), expected: "at least one seed".into() });
    }
    if let Some(rule) = spec.prune {
        if spec.base.val_size == 0 {
            return Err(Error::InvalidConfig {
                field: "prune",
                value: format!("after epoch {}", rule.after_epoch),
                expected: "a validation split: pruning compares validation accuracy (give --val-size N)".into(),
            });
        }
        if rule.after_epoch == 0 {
            return Err(Error::InvalidConfig { field: "prune-after", value: "0".into(), expected: "at least 1".into() });
        }
    }
    let trials = plan(&opts.dir, spec)?; // every trial's configuration is valid before anything is written
    let path = opts.dir.join(SWEEP_FILE);
    if path.exists() {
        let saved = read_spec(&opts.dir)?;
        let differences = differences(&saved, spec);
        if !differences.is_empty() {
            return Err(Error::SweepMismatch { dir: opts.dir.clone(), differences });
        }
    }
    Ok(trials)
}

/// `sweep --slurm`: submits the unfinished trials as one Slurm job array ([`slurm::submit`])
/// with `--threads` CPUs a trial (1 when not given); the report is the job id.
fn submit_to_slurm(opts: &SweepOptions, slurm_opts: &slurm::SlurmOptions) -> Result<SweepOutcome> {
    if let Some(rule) = opts.spec.prune {
        return Err(Error::InvalidConfig {
            field: "prune",
            value: format!("after epoch {}", rule.after_epoch),
            expected: "no --prune with --slurm: pruning compares trials as one sweep process runs them (run the sweep locally to prune)".into(),
        });
    }
    let threads = opts.spec.base.threads.unwrap_or(1);
    let trials = with_threads(check(opts)?, Some(threads));
    if let Some(download) = &opts.download {
        crate::data::download::ensure(download)?;
    }
    let submission = slurm::submit(opts, slurm_opts, &trials, threads)?;
    let report = match &submission.job_id {
        None => {
            tracing::info!("all {} trials are finished: nothing to submit (`sweep --collect {}` builds the results)", trials.len(), opts.dir.display());
            String::new()
        }
        Some(id) => {
            tracing::info!(
                "submitted job array {id} to Slurm: {} of the {} trials ({}), {threads} CPU(s) each; logs in {}; `tch-cifar10 sweep --collect {}` builds the results once they end",
                submission.trials.len(),
                trials.len(),
                submission.trials.join(", "),
                opts.dir.join(slurm::SLURM_DIR).display(),
                opts.dir.display()
            );
            format!("{id}\n")
        }
    };
    Ok(SweepOutcome { dir: opts.dir.clone(), report, failed: Vec::new(), interrupted: false })
}

/// The `sweep.json` in `dir`.
///
/// # Errors
/// [`Error::Io`] or [`Error::BadSweep`] naming the file.
pub fn read_spec(dir: &Path) -> Result<SweepSpec> {
    let path = dir.join(SWEEP_FILE);
    let text = safe_fs::read_text(&path, safe_fs::MAX_TEXT_FILE_BYTES)?;
    serde_json::from_str(&text).map_err(|e| Error::BadSweep { path, reason: format!("not a tch-cifar10 sweep record: {e}") })
}

/// The sweep as flags and values (`--lr` -> `0.001,0.01`), leaving out what may change
/// between runs of one sweep (device, threads, TensorBoard output, the folder).
fn flags(spec: &SweepSpec) -> BTreeMap<String, String> {
    let base = TrainConfig { device: DeviceSpec::Auto, threads: None, tensorboard: false, out_dir: None, ..spec.base.clone() };
    let args: Vec<String> = to_args(&base).into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let mut map = BTreeMap::from([("command".to_string(), args[0].clone())]);
    let mut words = args[1..].iter().peekable();
    while let Some(flag) = words.next() {
        let value = match words.peek() {
            Some(v) if !v.starts_with("--") => words.next().cloned().unwrap_or_default(),
            _ => "on".to_string(),
        };
        map.insert(flag.clone(), value);
    }
    for (param, spec) in &spec.space.0 {
        map.insert(format!("--{param}"), spec.to_string());
    }
    map.remove("--seed");
    map.insert("--seeds".into(), spec.seeds.iter().map(i64::to_string).collect::<Vec<_>>().join(","));
    if let Some(n) = spec.trials {
        map.insert("--trials".into(), n.to_string());
        map.insert("--sweep-seed".into(), spec.sweep_seed.to_string());
    }
    map.insert("--prune-after".into(), spec.prune.map_or_else(|| "off".to_string(), |p| p.after_epoch.to_string()));
    map
}

/// What differs between the sweep recorded (`saved`) and the one asked for (`now`), one line
/// per flag.
pub fn differences(saved: &SweepSpec, now: &SweepSpec) -> Vec<String> {
    let (a, b) = (flags(saved), flags(now));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let show = |v: Option<&String>| v.map_or_else(|| "not set".to_string(), Clone::clone);
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {} in sweep.json, {} now", show(a.get(k)), show(b.get(k))))
        .collect()
}

/// Whether `trial` has started: its folder holds `config.json`, and `train --resume` continues
/// it from its saved training state (stopped, or failed after it), or starts it again with the
/// recorded settings when it was killed before its first checkpoint.
fn resumable(trial: &Trial) -> bool {
    trial.dir.join(crate::run::CONFIG_FILE).is_file()
}

/// The arguments that run `trial`: `train --resume` when it is [`resumable`], else its whole
/// configuration.
fn trial_args(trial: &Trial) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-q".into()];
    if resumable(trial) {
        args.extend(["train".into(), "--resume".into(), trial.dir.clone().into_os_string(), "--device".into(), trial.cfg.device.to_string().into()]);
        if let Some(n) = trial.cfg.threads {
            args.extend(["--threads".into(), n.to_string().into()]);
        }
    } else {
        args.extend(to_args(&trial.cfg));
    }
    args
}

/// Threads per trial: with `--jobs N` on the CPU, the cores shared out (`--threads` when given);
/// on a GPU, libtorch's default. Also the line that says what will run.
fn threads_per_trial(opts: &SweepOptions) -> Result<(Option<usize>, String)> {
    let cores = crate::device::logical_cpus().unwrap_or(1);
    let device = opts.spec.base.device.resolve()?;
    if device.is_cuda() {
        let threads = opts.spec.base.threads;
        let what = format!("{} job(s) sharing {}", opts.jobs, crate::device::device_name(device));
        return Ok((threads, what));
    }
    let threads = opts.spec.base.threads.unwrap_or((cores / opts.jobs).max(1));
    if opts.jobs * threads > cores {
        tracing::warn!(
            "{} jobs x {threads} threads = {} threads on {cores} cores: the trials will slow each other down (lower --jobs or --threads)",
            opts.jobs,
            opts.jobs * threads
        );
    }
    Ok((Some(threads), format!("{} job(s) x {threads} thread(s) on the CPU ({cores} cores)", opts.jobs)))
}

fn with_threads(mut trials: Vec<Trial>, threads: Option<usize>) -> Vec<Trial> {
    for t in &mut trials {
        t.cfg.threads = threads;
    }
    trials
}

/// `sweep --print-commands`: one shell line per trial not finished, as the sweep would run it.
fn print_commands(opts: &SweepOptions) -> Result<SweepOutcome> {
    let (threads, _) = threads_per_trial(opts)?;
    let trials = with_threads(open(opts)?, threads);
    let program = std::env::current_exe().map_err(Error::io("tch-cifar10"))?;
    let (mut report, mut finished) = (String::new(), 0);
    for t in &trials {
        let (status, _) = results::status(&t.dir);
        if matches!(status, Status::Done | Status::Pruned) {
            finished += 1;
            continue;
        }
        let _ = writeln!(report, "{}", command::shell_line(program.as_os_str(), &trial_args(t))?);
    }
    // On the log, so that standard output stays one command a line.
    match (finished, trials.len()) {
        (0, _) => {}
        (f, n) if f == n => tracing::info!("all {n} trials are finished: no command to print (`sweep --collect {}` builds the results)", opts.dir.display()),
        (f, n) => tracing::info!("{f} of the {n} trials are finished and left out"),
    }
    Ok(SweepOutcome { dir: opts.dir.clone(), report, failed: Vec::new(), interrupted: false })
}

/// Runs the trials that are not finished, `opts.jobs` at a time, then builds the results.
fn run_trials(opts: &SweepOptions, stop: Option<&AtomicBool>) -> Result<SweepOutcome> {
    let (threads, how) = threads_per_trial(opts)?;
    let trials = with_threads(open(opts)?, threads);
    // One sweep per folder at a time (each trial's own folder is locked by its child too).
    let _lock = RunDir::at(&opts.dir).lock()?;
    if let Some(download) = &opts.download {
        crate::data::download::ensure(download)?;
    }
    let spec = &opts.spec;
    let statuses: Vec<Status> = trials.iter().map(|t| results::status(&t.dir).0).collect();
    let pruning = spec.prune.map(|rule| Pruning { rule, peers: Mutex::new(BTreeMap::new()) });
    let mut jobs = Vec::new();
    for (t, status) in trials.iter().zip(&statuses) {
        let mut judge = true;
        if let Some(p) = &pruning {
            // Trials past the epoch (finished, pruned or resumed) count as peers and are not judged again.
            if let Some(value) = results::best_val_up_to(&results::read_records(&t.dir), p.rule.after_epoch) {
                p.peers.lock().expect("no thread holds the peers yet").insert(t.index, value);
                judge = false;
            }
        }
        if !matches!(status, Status::Done | Status::Pruned) {
            jobs.push(Job { index: t.index, dir: t.dir.clone(), args: trial_args(t), judge });
        }
    }
    let count = |s: Status| statuses.iter().filter(|x| **x == s).count();
    let resumes: Vec<bool> = trials.iter().map(resumable).collect();
    let to_resume = jobs.iter().filter(|j| resumes[j.index]).count();
    tracing::info!(
        "sweep {}: {} trials ({} setting(s) x {} seed(s)); {} done, {} pruned, {} to resume, {} to run; {how}",
        opts.dir.display(),
        trials.len(),
        trials.len() / spec.seeds.len(),
        spec.seeds.len(),
        count(Status::Done),
        count(Status::Pruned),
        to_resume,
        jobs.len() - to_resume
    );
    if spec.base.tensorboard {
        tensorboard::write_experiment(&opts.dir, &format!("tch-cifar10 sweep {}", opts.dir.display()), &hparam_domains(spec))?;
    }

    let program = std::env::current_exe().map_err(Error::io("tch-cifar10"))?;
    let by_val = spec.base.val_size > 0;
    let total = trials.len();
    let mut best: Option<(f64, String)> = trials.iter().zip(&statuses).filter(|(_, s)| **s == Status::Done).filter_map(|(t, _)| rank(t, by_val)).reduce(better);
    let (mut failed, mut interrupted) = (Vec::new(), false);
    jobs::run(&program, jobs, opts.jobs, stop, pruning.as_ref(), |event| match event {
        Event::Started(i) => {
            let verb = if resumes[i] { "resume" } else { "start " };
            tracing::info!("[{}/{total}] {verb} {}", i + 1, trials[i].id);
        }
        Event::Finished(i, exit) => {
            let t = &trials[i];
            let what = match &exit {
                Exit::Done => {
                    let row = results::row(t);
                    if let Some(r) = rank(t, by_val) {
                        best = Some(best.take().map_or(r.clone(), |b| better(b, r)));
                    }
                    figures(&row)
                }
                Exit::Pruned(why) => format!("pruned: {why}"),
                Exit::Interrupted => {
                    interrupted = true;
                    "stopped, state saved".to_string()
                }
                Exit::Failed(why) => {
                    failed.push((t.id.clone(), why.clone()));
                    format!("FAILED: {why}")
                }
            };
            let best = best.as_ref().map_or_else(String::new, |(v, id)| format!("; best so far {:.2} % ({id})", 100.0 * v));
            tracing::info!("[{}/{total}] {} {what}{best}", i + 1, t.id);
        }
    });
    interrupted |= stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst));
    let report = build_results(&opts.dir, spec, &trials)?;
    Ok(SweepOutcome { dir: opts.dir.clone(), report, failed, interrupted })
}

/// A finished trial's ranking figure and id.
fn rank(t: &Trial, by_val: bool) -> Option<(f64, String)> {
    results::row(t).rank_value(by_val).map(|v| (v, t.id.clone()))
}

fn better(a: (f64, String), b: (f64, String)) -> (f64, String) {
    if b.0 > a.0 { b } else { a }
}

/// `val 55.10 % (epoch 4), test 54.32 %, 12.3 s`.
fn figures(r: &Row) -> String {
    let mut parts = Vec::new();
    if let (Some(v), Some(e)) = (r.best_val_acc, r.best_val_epoch) {
        parts.push(format!("best val {:.2} % (epoch {e})", 100.0 * v));
    }
    if let Some(t) = r.final_test_acc {
        parts.push(format!("test {:.2} %", 100.0 * t));
    }
    parts.push(format!("{:.1} s", r.seconds));
    format!("done: {}", parts.join(", "))
}

/// The swept parameters and the seed, with their domains, for TensorBoard's HParams view.
fn hparam_domains(spec: &SweepSpec) -> Vec<(&'static str, Domain)> {
    let mut out: Vec<(&'static str, Domain)> = spec
        .space
        .0
        .iter()
        .filter(|(p, _)| spec.space.varying().contains(p))
        .map(|(p, s)| {
            let domain = match s {
                Spec::Grid(v) | Spec::Choice(v) if p.choices().is_some() => Domain::Names(v.iter().map(|&x| p.show(x)).collect()),
                Spec::Grid(v) | Spec::Choice(v) => Domain::Discrete(v.clone()),
                Spec::Uniform(a, b) | Spec::LogUniform(a, b) => Domain::Interval(*a, *b),
            };
            (p.flag(), domain)
        })
        .collect();
    out.push(("seed", Domain::Discrete(spec.seeds.iter().map(|s| *s as f64).collect())));
    out
}

/// Writes `results.csv`, `results.jsonl` and the charts; returns the table and the files.
fn build_results(dir: &Path, spec: &SweepSpec, trials: &[Trial]) -> Result<String> {
    let rows: Vec<Row> = trials.iter().map(results::row).collect();
    let by_val = spec.base.val_size > 0;
    let mut files = results::write_rows(dir, &rows)?;
    files.extend(results::charts(dir, trials, &rows, &spec.space.varying(), by_val));
    let mut report = results::table(&rows, by_val);
    let names: Vec<String> = files.iter().filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    let ended = rows.iter().filter(|r| matches!(r.status, Status::Done | Status::Pruned)).count();
    let of = if ended == rows.len() { format!("{ended} trials") } else { format!("{ended} of {} trials finished", rows.len()) };
    let _ = writeln!(report, "\nsweep      {}/ ({of} in {TRIALS_DIR}/)", dir.display());
    let _ = writeln!(report, "files      {}", names.join("  "));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(lr: &str, seeds: &[i64]) -> SweepSpec {
        let space = Space([(space::Param::Lr, Spec::parse(space::Param::Lr, lr).unwrap())].into_iter().collect());
        SweepSpec { space, seeds: seeds.to_vec(), trials: None, sweep_seed: 0, prune: None, base: TrainConfig::default() }
    }

    #[test]
    fn trials_go_seed_by_seed_with_readable_ids_and_absolute_folders() {
        let trials = plan(Path::new("runs/s"), &spec("1e-3,1e-2", &[0, 1])).unwrap();
        let ids: Vec<&str> = trials.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["t001-lr=1e-3-seed=0", "t002-lr=1e-2-seed=0", "t003-lr=1e-3-seed=1", "t004-lr=1e-2-seed=1"]);
        let t = &trials[3];
        assert_eq!((t.setting_label.as_str(), t.cfg.learning_rate, t.cfg.seed), ("lr=1e-2", 1e-2, 1));
        assert!(t.dir.is_absolute() && t.dir.ends_with("runs/s/trials/t004-lr=1e-2-seed=1"), "{}", t.dir.display());
        assert_eq!(t.cfg.out_dir.as_deref(), Some(t.dir.as_path()));
        assert!(t.cfg.data_dir.is_absolute());
        // A value train refuses is refused before anything runs, naming the flag.
        let err = plan(Path::new("s"), &spec("1e-3,-1", &[0])).unwrap_err().to_string();
        assert!(err.starts_with("invalid lr = -1"), "{err}");
    }

    #[test]
    fn differences_name_each_flag_and_ignore_device_threads_and_tensorboard() {
        let a = spec("1e-3,1e-2", &[0, 1]);
        let mut b = a.clone();
        (b.base.threads, b.base.device, b.base.tensorboard) = (Some(3), DeviceSpec::Cuda(0), true);
        assert!(differences(&a, &b).is_empty());
        b.base.val_size = 500;
        b.seeds = vec![0];
        b.prune = Some(PruneRule { after_epoch: 2 });
        assert_eq!(
            differences(&a, &b),
            [
                "--prune-after: off in sweep.json, 2 now",
                "--seeds: 0,1 in sweep.json, 0 now",
                "--val-size: 0 in sweep.json, 500 now",
            ]
        );
        let c = spec("1e-3", &[0, 1]);
        assert_eq!(differences(&a, &c), ["--lr: 0.001,0.01 in sweep.json, 0.001 now"]);
    }

    #[test]
    fn a_trial_with_a_saved_state_resumes_even_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let t = plan(dir.path(), &spec("1e-3", &[0])).unwrap().remove(0);
        let args = |t: &Trial| trial_args(t).into_iter().map(|a| a.into_string().unwrap()).collect::<Vec<_>>();
        assert_eq!(args(&t)[..2], ["-q", "train"]);
        assert!(args(&t).contains(&"--lr".to_string()));
        std::fs::create_dir_all(&t.dir).unwrap();
        std::fs::write(t.dir.join(results::FAILED_FILE), r#"{"reason": "diverged"}"#).unwrap();
        std::fs::write(t.dir.join(crate::run::CONFIG_FILE), b"{}").unwrap();
        assert_eq!(results::status(&t.dir), (Status::Failed, "diverged".to_string()));
        assert_eq!(args(&t), ["-q", "train", "--resume", t.dir.to_str().unwrap(), "--device", "auto"]);
    }
}
