//! `sweep --slurm`: the unfinished trials as one Slurm job array, submitted with `sbatch`, and
//! the array task that runs one trial (`sweep --run-trial`).
//!
//! The batch script (written to `DIR/slurm/sweep.sbatch` once `sbatch` accepted it, so that a
//! user can read and resubmit it) names the job after the sweep folder ([`job_name`]), asks for
//! one task per unfinished trial (`--array` of the trials' 1-based positions, a `--array=%N`
//! throttle given with `--slurm-arg` kept), `--cpus-per-task` of the trial's threads, logs in
//! `DIR/slurm/`, then any `--slurm-arg` as given, and `exec`s `tch-cifar10 sweep --run-trial
//! $SLURM_ARRAY_TASK_ID --out DIR`. That task `exec`s the trial's `train` (or `train --resume`
//! when the trial folder holds its `config.json`), its output in the trial's `train.log`: one
//! process, so that the signals Slurm sends (SIGTERM on `scancel`, a time limit or preemption;
//! SIGUSR1 with `--signal=B:USR1@60`) reach the run itself, which saves its state and exits 130;
//! a requeued or resubmitted task resumes it.
//!
//! A submission that an array of the same sweep is pending or running for (`squeue --name`) is
//! refused; a failed one (`sbatch` missing, or refusing an argument) leaves the sweep folder as
//! it was and records nothing. Sbatch's options: <https://slurm.schedmd.com/sbatch.html>.

use std::{
    ffi::OsString,
    fmt::Write as _,
    io::Write as _,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use sha2::{Digest, Sha256};

use super::{command::shell_line, results::{self, Status}, SweepOptions, Trial};
use crate::{
    error::{Error, Result},
    run_dir::{write_atomic, RunDir},
};

/// The folder of the batch script, the Slurm logs and the submission record.
pub const SLURM_DIR: &str = "slurm";
/// The batch script last submitted.
pub const SCRIPT_FILE: &str = "sweep.sbatch";
/// One line per accepted submission: `{"job_id": ..., "trials": [...]}`.
pub const JOBS_FILE: &str = "jobs.jsonl";

/// What `sweep --slurm` adds to a sweep.
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    /// `--slurm-arg`: sbatch options, in order (`--partition=gpu`, `--time=2:00:00`,
    /// `--array=%4` for a throttle).
    pub args: Vec<String>,
}

/// What a submission did.
#[derive(Clone, Debug, PartialEq)]
pub struct Submission {
    /// Slurm's job id of the array; `None` when every trial had finished (nothing submitted).
    pub job_id: Option<String>,
    /// The trials submitted (their ids).
    pub trials: Vec<String>,
}

/// The job name of the sweep in `dir` (absolute): `tch-cifar10-sweep-` and 12 hex digits of the
/// SHA-256 of its path, so that two sweeps never share one and `squeue --name` finds this one's.
pub fn job_name(dir: &Path) -> String {
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("tch-cifar10-sweep-{hex}")
}

fn slurm_error(command: &str, reason: impl Into<String>) -> Error {
    Error::Slurm { command: command.to_string(), reason: reason.into() }
}

/// Runs a Slurm command, giving its standard output, or an error with its standard error.
fn slurm_command(program: &str, args: &[String], stdin: Option<&str>) -> Result<String> {
    let mut command = Command::new(program);
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().map_err(|e| {
        let reason = if e.kind() == std::io::ErrorKind::NotFound {
            "not found on the PATH: --slurm needs Slurm's commands (sbatch, squeue), as on a cluster's login node".to_string()
        } else {
            format!("cannot start it: {e}")
        };
        slurm_error(program, reason)
    })?;
    // A command that refuses its arguments may exit before reading: its status and standard
    // error say why, not the broken pipe.
    let wrote = match (stdin, child.stdin.take()) {
        (Some(text), Some(mut pipe)) => pipe.write_all(text.as_bytes()),
        _ => Ok(()),
    };
    let out = child.wait_with_output().map_err(|e| slurm_error(program, format!("lost it: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let how = out.status.code().map_or_else(|| "was killed by a signal".to_string(), |c| format!("exited with status {c}"));
        return Err(slurm_error(program, if stderr.is_empty() { how } else { format!("{how}: {stderr}") }));
    }
    wrote.map_err(|e| slurm_error(program, format!("cannot write the batch script to it: {e}")))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The array of the sweep's trials still to run: their 1-based positions (`2,4`), with the
/// throttle of an `--array=%N` among `args` (which is taken out of them).
///
/// # Errors
/// [`Error::InvalidConfig`] for an `--array` that is not only a throttle.
fn array_spec(trials: &[&Trial], args: &mut Vec<String>) -> Result<String> {
    let mut spec = trials.iter().map(|t| (t.index + 1).to_string()).collect::<Vec<_>>().join(",");
    let mut kept = Vec::new();
    for arg in args.drain(..) {
        let value = arg.strip_prefix("--array=").or_else(|| arg.strip_prefix("-a"));
        match value {
            Some(v) if v.starts_with('%') && v[1..].parse::<u32>().is_ok_and(|n| n > 0) => spec.push_str(v),
            Some(v) => {
                return Err(Error::InvalidConfig {
                    field: "slurm-arg",
                    value: arg.clone(),
                    expected: format!("no --array but a throttle such as --array=%4: the sweep makes one array task per unfinished trial ({v:?} given)"),
                })
            }
            None => kept.push(arg),
        }
    }
    *args = kept;
    Ok(spec)
}

/// The batch script for `trials` of the sweep in `dir` (absolute), run by `program`.
///
/// # Errors
/// [`Error::InvalidConfig`] for a bad `--array` in `opts.args` or a word no shell can take.
fn batch_script(program: &Path, dir: &Path, trials: &[&Trial], opts: &SlurmOptions, threads: usize, device: &str) -> Result<String> {
    let mut args = opts.args.clone();
    let array = array_spec(trials, &mut args)?;
    let logs = dir.join(SLURM_DIR);
    // sbatch reads quoted words in #SBATCH lines; plain options stay as written.
    let plain = |w: &str| w.chars().all(|c| c.is_ascii_alphanumeric() || "-_=%:,./@+[]".contains(c));
    let quote = |words: &[OsString]| match words[0].to_str().filter(|w| plain(w)) {
        Some(w) => Ok(format!("#SBATCH {w}")),
        None => shell_line(OsString::from("#SBATCH").as_os_str(), words).map(|l| l.replacen("'#SBATCH'", "#SBATCH", 1)),
    };
    let mut s = String::from("#!/bin/bash\n");
    let _ = writeln!(s, "# Written by `tch-cifar10 sweep --slurm`: one array task per unfinished trial of the sweep in");
    let _ = writeln!(s, "# {} (the task id is the trial's position); each task runs its trial, or", dir.display());
    let _ = writeln!(s, "# resumes it from its folder. Resubmit with `sbatch` on this file, or run the sweep command again.");
    let mut lines = vec![
        format!("--job-name={}", job_name(dir)),
        format!("--array={array}"),
        "--ntasks=1".to_string(),
        format!("--cpus-per-task={threads}"),
        format!("--output={}/%x-%A_%a.log", logs.display()),
        "--open-mode=append".to_string(),
    ];
    lines.extend(args);
    for line in lines {
        let _ = writeln!(s, "{}", quote(&[line.into()])?);
    }
    let run: Vec<OsString> = vec![
        "sweep".into(),
        "--run-trial".into(),
        "${SLURM_ARRAY_TASK_ID:?}".into(),
        "--out".into(),
        dir.as_os_str().into(),
        "--threads".into(),
        threads.to_string().into(),
        "--device".into(),
        device.into(),
    ];
    let line = shell_line(program.as_os_str(), &run)?.replace("'${SLURM_ARRAY_TASK_ID:?}'", "\"${SLURM_ARRAY_TASK_ID:?}\"");
    let _ = writeln!(s, "exec {line}");
    Ok(s)
}

/// The jobs of this sweep that Slurm still holds (pending, running, completing): `ID STATE`.
fn queued(dir: &Path) -> Result<Vec<String>> {
    let out = slurm_command("squeue", &["--noheader".into(), format!("--name={}", job_name(dir)), "--format=%i %T".into()], None)?;
    Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}

/// Undoes what a failed submission made: the files and folders in `made`, newest first.
fn roll_back(made: &[PathBuf]) {
    for path in made.iter().rev() {
        let _ = if path.is_dir() { std::fs::remove_dir(path) } else { std::fs::remove_file(path) };
    }
}

/// `sweep --slurm`: submits the sweep's unfinished trials (`trials`, checked and planned by the
/// caller, not yet written) as one job array, `threads` CPUs each, then records it. Returns
/// what was submitted; nothing when every trial has finished.
///
/// # Errors
/// [`Error::Slurm`] when `squeue` or `sbatch` is missing or fails (their standard error
/// included), or an array of this sweep is still queued; [`Error::InvalidConfig`] for a bad
/// `--slurm-arg`. The sweep folder is then as it was.
pub(crate) fn submit(opts: &SweepOptions, slurm: &SlurmOptions, trials: &[Trial], threads: usize) -> Result<Submission> {
    let dir = std::path::absolute(&opts.dir).map_err(Error::io(&opts.dir))?;
    let left: Vec<&Trial> = trials.iter().filter(|t| !matches!(results::status(&t.dir).0, Status::Done | Status::Pruned)).collect();
    if left.is_empty() {
        return Ok(Submission { job_id: None, trials: Vec::new() });
    }
    let program = std::env::current_exe().map_err(Error::io("tch-cifar10"))?;
    let script = batch_script(&program, &dir, &left, slurm, threads, &opts.spec.base.device.to_string())?;
    let held = queued(&dir)?;
    if !held.is_empty() {
        return Err(slurm_error(
            "squeue",
            format!(
                "an array of this sweep ({}) is still queued or running: {}; wait for it to end (or `scancel` it), then run the same command again to submit what is left",
                job_name(&dir),
                held.join(", ")
            ),
        ));
    }
    // Made before sbatch (its tasks write their logs there), undone if it fails.
    let mut made = Vec::new();
    for d in [dir.clone(), dir.join(SLURM_DIR)] {
        if !d.exists() {
            std::fs::create_dir_all(&d).map_err(Error::io(&d))?;
            made.push(d);
        }
    }
    let spec_file = dir.join(super::SWEEP_FILE);
    if !spec_file.exists() {
        made.push(spec_file);
    }
    let submitted = RunDir::at(&dir).write_json(super::SWEEP_FILE, &opts.spec).and_then(|()| slurm_command("sbatch", &["--parsable".into()], Some(&script)));
    let out = match submitted {
        Ok(out) => out,
        Err(e) => {
            roll_back(&made);
            return Err(e);
        }
    };
    // `--parsable`: `ID` or `ID;CLUSTER`.
    let job_id = out.trim().split(';').next().unwrap_or_default().to_string();
    let ids: Vec<String> = left.iter().map(|t| t.id.clone()).collect();
    let slurm_dir = RunDir::at(dir.join(SLURM_DIR));
    write_atomic(&slurm_dir.file(SCRIPT_FILE), script.as_bytes())?;
    let line = serde_json::json!({ "job_id": job_id, "trials": ids });
    let jobs = slurm_dir.file(JOBS_FILE);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&jobs)
        .and_then(|mut f| writeln!(f, "{line}"))
        .map_err(Error::io(&jobs))?;
    Ok(Submission { job_id: Some(job_id), trials: ids })
}

/// `sweep --run-trial N --out DIR` (an array task): runs the trial at position `position`
/// (1-based) of the sweep in `dir` in place of this process (`exec`), with `threads` and
/// `device`: `train --resume` when its folder holds `config.json`, else its whole command; its
/// output appended to its `train.log`. A finished trial returns `Ok` at once.
///
/// # Errors
/// An unreadable `sweep.json`, a position outside the plan, an unwritable trial folder, a
/// failed `exec`.
pub fn run_trial(dir: &Path, position: usize, threads: Option<usize>, device: Option<crate::device::DeviceSpec>) -> Result<()> {
    let spec = super::read_spec(dir)?;
    let trials = super::plan(dir, &spec)?;
    let Some(mut trial) = position.checked_sub(1).and_then(|i| trials.get(i)).cloned() else {
        return Err(Error::InvalidConfig {
            field: "run-trial",
            value: position.to_string(),
            expected: format!("a trial's position in the sweep, 1 to {}", trials.len()),
        });
    };
    trial.cfg.threads = threads.or(trial.cfg.threads);
    trial.cfg.device = device.unwrap_or(trial.cfg.device);
    let (status, _) = results::status(&trial.dir);
    if matches!(status, Status::Done | Status::Pruned) {
        tracing::info!("{}: already finished, nothing to run", trial.id);
        return Ok(());
    }
    let _ = std::fs::remove_file(trial.dir.join(results::FAILED_FILE));
    RunDir::create(&trial.dir)?;
    let log_path = trial.dir.join(results::LOG_FILE);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(Error::io(&log_path))?;
    let err = log.try_clone().map_err(Error::io(&log_path))?;
    let args = super::trial_args(&trial);
    let verb = if super::resumable(&trial) { "resuming" } else { "starting" };
    tracing::info!("{verb} {} (its output in {})", trial.id, log_path.display());
    let program = std::env::current_exe().map_err(Error::io("tch-cifar10"))?;
    let e = Command::new(&program).args(&args).stdin(Stdio::null()).stdout(log).stderr(err).exec();
    Err(Error::Io { path: program, cause: e })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::TrainConfig, sweep::{plan, space::{Param, Space, Spec}, SweepSpec}};

    fn trials(dir: &Path) -> Vec<Trial> {
        let space = Space([(Param::Lr, Spec::parse(Param::Lr, "1e-3,1e-2").unwrap())].into_iter().collect());
        plan(dir, &SweepSpec { space, seeds: vec![0, 1], trials: None, sweep_seed: 0, prune: None, base: TrainConfig::default() }).unwrap()
    }

    #[test]
    fn the_batch_script_has_one_task_per_trial_left_and_passes_the_arguments_on() {
        let dir = Path::new("/sweeps/my sweep");
        let all = trials(dir);
        let left: Vec<&Trial> = [&all[1], &all[3]].into();
        let opts = SlurmOptions { args: vec!["--partition=gpu".into(), "--array=%1".into(), "--gres=gpu:1".into()] };
        let s = batch_script(Path::new("/bin/tch-cifar10"), dir, &left, &opts, 3, "cpu").unwrap();
        let name = job_name(dir);
        let want = format!(
            "#SBATCH --job-name={name}\n#SBATCH --array=2,4%1\n#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=3\n\
             #SBATCH '--output=/sweeps/my sweep/slurm/%x-%A_%a.log'\n#SBATCH --open-mode=append\n\
             #SBATCH --partition=gpu\n#SBATCH --gres=gpu:1\n\
             exec /bin/tch-cifar10 sweep --run-trial \"${{SLURM_ARRAY_TASK_ID:?}}\" --out '/sweeps/my sweep' --threads 3 --device cpu\n"
        );
        assert!(s.starts_with("#!/bin/bash\n") && s.ends_with(&want), "{s}");
        assert_eq!(name.len(), "tch-cifar10-sweep-".len() + 12);
        assert_ne!(job_name(Path::new("/sweeps/other")), name);

        // An --array that is not a throttle is refused, naming it.
        let bad = SlurmOptions { args: vec!["--array=1-4".into()] };
        let err = batch_script(Path::new("/bin/x"), dir, &left, &bad, 1, "cpu").unwrap_err().to_string();
        assert!(err.starts_with("invalid slurm-arg = --array=1-4") && err.contains("throttle"), "{err}");
    }
}
