//! Running trials: `--jobs N` workers take trials off one queue, each running its trial as a
//! child process of this binary and reporting to the caller's thread, which alone prints (as fd's
//! `src/exec/job.rs` workers feed one output thread). Each trial's outcome comes from its
//! process's exit status: 0 finished, 130 stopped with its state saved (Ctrl-C, or the pruning
//! below), anything else failed.
//!
//! Children run in their own process group, so a Ctrl-C at the terminal reaches only the sweep;
//! on it, or on any stop signal of [`crate::signals`] (SIGTERM, SIGHUP, SIGUSR1), the sweep
//! sends each running child one SIGINT (the child saves its state and exits 130, as `train`
//! does on any of those signals). On Linux a child also gets SIGINT if the sweep dies (killed), so a
//! killed sweep leaves resumable trials, not orphaned runs. Pruning sends the same SIGINT.

use std::{
    collections::{BTreeMap, VecDeque},
    ffi::OsString,
    fs::{File, OpenOptions},
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Mutex,
    },
    time::Duration,
};

use super::{
    prune::{self, PruneRule, Verdict},
    results::{self, Marker, FAILED_FILE, LOG_FILE, PRUNED_FILE},
};
use crate::{report::metrics::SUMMARY_FILE, run_dir::RunDir};

/// How often a worker looks at its child (exit, stop flag, new epochs).
const POLL: Duration = Duration::from_millis(100);
/// The exit status of a run stopped by a signal after saving its state.
const INTERRUPTED: i32 = crate::signals::INTERRUPTED_STATUS as i32;

/// One trial to run.
#[derive(Clone, Debug)]
pub struct Job {
    /// The trial's index in the plan.
    pub index: usize,
    /// The trial's folder.
    pub dir: PathBuf,
    /// The arguments after the program.
    pub args: Vec<OsString>,
    /// Whether the trial is still to be judged by the pruning rule (not when it had passed the
    /// epoch before a rerun).
    pub judge: bool,
}

/// How a trial's run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Exit {
    /// It finished (`summary.json` written).
    Done,
    /// The pruning rule stopped it, for this reason.
    Pruned(String),
    /// It stopped with its state saved, on the sweep's stop.
    Interrupted,
    /// It failed, for this reason (the last line of its log, or how it ended).
    Failed(String),
}

/// What the workers tell the caller's thread.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The trial's process started.
    Started(usize),
    /// The trial's process ended.
    Finished(usize, Exit),
}

/// The pruning rule with the figures it compares: each trial's best validation accuracy up to
/// the rule's epoch, by trial index.
#[derive(Debug)]
pub struct Pruning {
    /// The rule.
    pub rule: PruneRule,
    /// Figures so far (those of trials finished before this run included).
    pub peers: Mutex<BTreeMap<usize, f64>>,
}

/// Runs `jobs` with `workers` processes at a time, calling `on_event` on this thread as they
/// start and end. No job starts once `stop` is set; running ones are sent SIGINT.
pub fn run(program: &Path, jobs: Vec<Job>, workers: usize, stop: Option<&AtomicBool>, pruning: Option<&Pruning>, mut on_event: impl FnMut(Event)) {
    let queue = Mutex::new(VecDeque::from(jobs));
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            let (tx, queue) = (tx.clone(), &queue);
            scope.spawn(move || loop {
                if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                    break;
                }
                let Some(job) = queue.lock().expect("no worker panics holding the queue").pop_front() else { break };
                let _ = tx.send(Event::Started(job.index));
                let exit = run_one(program, &job, stop, pruning);
                let _ = tx.send(Event::Finished(job.index, exit));
            });
        }
        drop(tx);
        rx.iter().for_each(&mut on_event);
    });
}

/// Asks process `pid` to save and stop, as a Ctrl-C does.
fn interrupt(pid: u32) {
    // SAFETY: kill(2) with a valid signal number has no memory effects; a pid that has already
    // exited (and not yet been reaped by us, so not reused) only makes it fail.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGINT);
    }
}

/// Runs one trial to its end.
fn run_one(program: &Path, job: &Job, stop: Option<&AtomicBool>, pruning: Option<&Pruning>) -> Exit {
    let _ = std::fs::remove_file(job.dir.join(FAILED_FILE));
    let log = match RunDir::create(&job.dir).and_then(|_| open_log(&job.dir.join(LOG_FILE))) {
        Ok(log) => log,
        Err(e) => return failed(job, format!("cannot start: {e}")),
    };
    let mut command = Command::new(program);
    command.args(&job.args).stdin(Stdio::null()).process_group(0);
    match log.try_clone() {
        Ok(out) => command.stdout(out).stderr(log),
        Err(e) => return failed(job, format!("cannot start: {}: {e}", job.dir.join(LOG_FILE).display())),
    };
    // SAFETY: signal(2) and prctl(PR_SET_PDEATHSIG) are async-signal-safe and touch no memory
    // of the parent. The death signal fires when the spawning thread ends; this worker thread
    // waits for the child first.
    unsafe {
        command.pre_exec(|| {
            // A sweep started as a background job of a script (`tch-cifar10 sweep ... &`)
            // inherits SIGINT ignored, and so would every trial: give them the default back, so
            // that the stop (a SIGINT) reaches each one.
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
            Ok(())
        });
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return failed(job, format!("cannot start {}: {e}", program.display())),
    };
    let (mut judged, mut signalled, mut pruned) = (!job.judge || pruning.is_none(), false, None);
    let status: ExitStatus = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return failed(job, format!("lost its process: {e}"));
            }
        }
        if !signalled && stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            interrupt(child.id());
            signalled = true;
        }
        if let (false, Some(p)) = (judged, pruning) {
            if let Some(verdict) = judge(job, p) {
                judged = true;
                if let Verdict::Prune(why) = verdict {
                    if !signalled {
                        interrupt(child.id());
                        signalled = true;
                    }
                    pruned = Some(why);
                }
            }
        }
        std::thread::sleep(POLL);
    };
    // A run signalled before its Ctrl-C handler was installed dies of the SIGINT itself, having
    // saved nothing: the same outcome, to be run again from its last state.
    let code = if signalled && status.signal() == Some(libc::SIGINT) { Some(INTERRUPTED) } else { status.code() };
    match (code, pruned) {
        (Some(0), _) if job.dir.join(SUMMARY_FILE).is_file() => Exit::Done,
        (Some(0), _) => failed(job, format!("exited 0 without writing {SUMMARY_FILE}")),
        (Some(INTERRUPTED), Some(why)) => {
            let marker = Marker { reason: why.clone(), epoch: pruning.map(|p| p.rule.after_epoch) };
            match RunDir::open(&job.dir).and_then(|d| d.write_json(PRUNED_FILE, &marker)) {
                Ok(()) => Exit::Pruned(why),
                Err(e) => failed(job, format!("pruned ({why}) but the marker cannot be written: {e}")),
            }
        }
        (Some(INTERRUPTED), None) if signalled => Exit::Interrupted,
        (code, _) => {
            let how = code.map_or_else(|| "was killed by a signal".to_string(), |c| format!("exited with status {c}"));
            let last = last_line(&job.dir.join(LOG_FILE));
            failed(job, if last.is_empty() { how } else { format!("{how}: {last}") })
        }
    }
}

/// Judges the trial once it has reached the rule's epoch: `None` before. Its figure joins the
/// peers' either way.
fn judge(job: &Job, p: &Pruning) -> Option<Verdict> {
    let records = results::read_records(&job.dir);
    if !records.iter().any(|r| r.epoch >= p.rule.after_epoch) {
        return None;
    }
    let Some(value) = results::best_val_up_to(&records, p.rule.after_epoch) else { return Some(Verdict::Continue) };
    let mut peers = p.peers.lock().expect("no worker panics holding the peers");
    let others: Vec<f64> = peers.iter().filter(|(i, _)| **i != job.index).map(|(_, v)| *v).collect();
    peers.insert(job.index, value);
    Some(prune::decide(&p.rule, value, &others))
}

/// Records the failure in the trial folder (`failed.json`) and returns it.
fn failed(job: &Job, reason: String) -> Exit {
    let marker = Marker { reason: reason.clone(), epoch: None };
    if let Err(e) = RunDir::create(&job.dir).and_then(|d| d.write_json(FAILED_FILE, &marker)) {
        tracing::warn!("{e}");
    }
    Exit::Failed(reason)
}

fn open_log(path: &Path) -> crate::Result<File> {
    OpenOptions::new().create(true).append(true).open(path).map_err(crate::Error::io(path))
}

/// The last non-empty line of a log (its error message), without the `error: ` prefix.
fn last_line(path: &Path) -> String {
    let text = crate::safe_fs::read_text(path, crate::safe_fs::MAX_TEXT_FILE_BYTES).unwrap_or_default();
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    line.trim().trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(index: usize, dir: &Path, script: &str) -> Job {
        Job { index, dir: dir.join(format!("t{index}")), args: vec!["-c".into(), script.into()], judge: false }
    }

    /// `sh` stands in for the trial processes: the outcome comes from the exit status and files.
    #[test]
    fn exit_statuses_become_outcomes_and_every_job_runs_once() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = vec![
            job(0, dir.path(), "echo training; echo '{}' > summary.json"),
            job(1, dir.path(), "echo 'error: non-finite training loss' >&2; exit 1"),
            job(2, dir.path(), "exit 0"),
            job(3, dir.path(), "kill -9 $$"),
        ];
        // The children run in the trial folder's parent: make the scripts write into their own.
        let jobs: Vec<Job> = jobs
            .into_iter()
            .map(|mut j| {
                let script = format!("cd {} && {}", j.dir.display(), j.args[1].to_str().unwrap());
                j.args[1] = script.into();
                j
            })
            .collect();
        let mut events = Vec::new();
        run(Path::new("/bin/sh"), jobs, 2, None, None, |e| events.push(e));
        let mut finished: Vec<(usize, Exit)> = events.iter().filter_map(|e| match e { Event::Finished(i, x) => Some((*i, x.clone())), _ => None }).collect();
        finished.sort_by_key(|f| f.0);
        assert_eq!(events.iter().filter(|e| matches!(e, Event::Started(_))).count(), 4);
        assert_eq!(finished[0].1, Exit::Done);
        assert_eq!(finished[1].1, Exit::Failed("exited with status 1: non-finite training loss".into()));
        assert_eq!(finished[2].1, Exit::Failed("exited 0 without writing summary.json".into()));
        assert_eq!(finished[3].1, Exit::Failed("was killed by a signal".into()));
        assert!(dir.path().join("t1").join(FAILED_FILE).is_file());
        assert_eq!(std::fs::read_to_string(dir.path().join("t0").join(LOG_FILE)).unwrap(), "training\n");
    }

    #[test]
    fn a_run_killed_by_the_stop_before_it_could_save_is_interrupted_not_failed() {
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(true); // set before the child starts: it dies of the SIGINT
        let job = job(0, dir.path(), "exec sleep 5");
        assert_eq!(run_one(Path::new("/bin/sh"), &job, Some(&stop), None), Exit::Interrupted);
        assert!(!job.dir.join(FAILED_FILE).exists());
    }

    #[test]
    fn the_stop_reaches_trials_of_a_sweep_started_with_sigint_ignored() {
        // As a script's `tch-cifar10 sweep ... &` starts it: SIGINT ignored, which children
        // inherit. Only this module's tests start processes in this test binary, and every one
        // goes through `run_one`, which gives its child the default back.
        // SAFETY: signal(2) changes only this process's disposition, restored below.
        let old = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(true);
        let exit = run_one(Path::new("/bin/sh"), &job(0, dir.path(), "exec sleep 5"), Some(&stop), None);
        // SAFETY: as above.
        unsafe { libc::signal(libc::SIGINT, old) };
        assert_eq!(exit, Exit::Interrupted);
    }

    #[test]
    fn a_stop_interrupts_running_jobs_and_starts_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        // Saves and exits 130 on SIGINT, as train does, once it says it is ready.
        let ready = dir.path().join("ready");
        let script = format!("trap 'exit 130' INT; touch {}; while true; do sleep 0.05; done", ready.display());
        let jobs = (0..3).map(|i| job(i, dir.path(), &script)).collect();
        let mut events = Vec::new();
        run(Path::new("/bin/sh"), jobs, 1, Some(&stop), None, |e| {
            if e == Event::Started(0) {
                let t0 = std::time::Instant::now();
                while !ready.exists() && t0.elapsed() < Duration::from_secs(30) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                stop.store(true, Ordering::SeqCst);
            }
            events.push(e);
        });
        assert_eq!(events, [Event::Started(0), Event::Finished(0, Exit::Interrupted)]);
    }
}
