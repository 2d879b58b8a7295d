//! `sweep --slurm` and its array tasks (`sweep --run-trial`): the bad inputs with stand-in
//! `sbatch`/`squeue` scripts (missing, failing, a sweep already queued), the batch script and
//! the record of a submission, a task running and then resuming its trial; and, where a Slurm
//! cluster answers (`scripts/slurm-local up`), a 4-trial sweep on it with one task cancelled
//! mid-run and resubmitted, giving the same results as the sweep run locally.

mod common;

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tch-cifar10"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `sweep` over 2 learning rates x 2 seeds on `data`, into `out`, with `extra`.
fn sweep(data: &Path, out: &Path, epochs: &str, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["sweep", "--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--device", "cpu"])
        .args(["--lr", "0.01,0.02", "--seeds", "1,2", "--epochs", epochs, "--batch-size", "10", "--threads", "1"])
        .args(extra);
    c
}

/// Every file under `dir` with its bytes (nothing when `dir` does not exist).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.insert(p.clone(), Vec::new());
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A folder of stand-in Slurm commands: `name` -> shell script body.
fn fake_slurm(dir: &Path, commands: &[(&str, &str)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, body) in commands {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

#[test]
fn slurm_with_print_commands_is_refused_before_anything_is_written() {
    let data = common::synthetic_cifar(20, 10, 3);
    let out = data.path().join("s");
    let o = sweep(data.path(), &out, "1", &["--slurm", "--print-commands"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("--slurm") && text(&o.stderr).contains("--print-commands"), "{}", text(&o.stderr));
    let o = sweep(data.path(), &out, "1", &["--slurm-arg=--partition=x"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "--slurm-arg without --slurm: {}", text(&o.stderr));
    assert!(!out.exists());
}

/// sbatch missing, sbatch refusing an argument (its standard error shown), an --array that is
/// not a throttle, an array of the sweep still queued: each a clear error, with the sweep
/// folder as it was (new or holding the sweep already) and nothing recorded as submitted.
#[test]
fn failed_submissions_leave_the_sweep_folder_as_it_was() -> TestResult {
    let data = common::synthetic_cifar(20, 10, 3);
    let empty_queue = ("squeue", "exit 0");
    let refusing = ("sbatch", "/bin/cat > /dev/null; echo 'sbatch: error: invalid partition specified: nope' >&2; exit 1");
    let cases: [(&str, Vec<(&str, &str)>, &[&str], &str); 4] = [
        ("missing", vec![empty_queue], &[], "sbatch: not found on the PATH"),
        ("refusing", vec![empty_queue, refusing], &["--slurm-arg=--partition=nope"], "invalid partition specified: nope"),
        ("array", vec![empty_queue, ("sbatch", "echo 1")], &["--slurm-arg=--array=1-9"], "invalid slurm-arg = --array=1-9"),
        ("queued", vec![("squeue", "echo '77_1 RUNNING'; echo '77_[2-4] PENDING'"), ("sbatch", "echo 1")], &[], "77_1 RUNNING, 77_[2-4] PENDING"),
    ];
    for (what, commands, extra, want) in cases {
        let fakes = fake_slurm(&data.path().join(what), &commands);
        for existing in [false, true] {
            let out = data.path().join(format!("{what}-{existing}"));
            if existing {
                // A sweep folder made before, by --print-commands.
                let o = sweep(data.path(), &out, "1", &["--print-commands"]).output()?;
                assert!(o.status.success(), "{}", text(&o.stderr));
            }
            let before = snapshot(&out);
            let o = sweep(data.path(), &out, "1", &["--slurm"]).args(extra).env("PATH", &fakes).output()?;
            let stderr = text(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{what}: {stderr}");
            assert!(stderr.contains(want) && !stderr.contains("panicked"), "{what}: {stderr}");
            assert!(o.stdout.is_empty(), "{what}: {}", text(&o.stdout));
            assert_eq!(snapshot(&out), before, "{what}: the sweep folder changed");
            assert_eq!(out.exists(), existing, "{what}");
        }
    }
    Ok(())
}

/// A submission prints the job id, writes the batch script sbatch was given and records the
/// job; a task (`--run-trial`) runs its trial, then finds it finished; a trial left with only
/// `config.json` (killed before its first checkpoint) is started again by its task; the next
/// submission leaves out the finished trials.
#[test]
fn a_submission_records_its_script_and_tasks_run_or_resume_their_trials() -> TestResult {
    let data = common::synthetic_cifar(20, 10, 3);
    let out = data.path().join("s");
    let stdin = data.path().join("submitted.sh");
    let sbatch = format!("/bin/cat > {}; echo '4242;local'", stdin.display());
    let fakes = fake_slurm(data.path(), &[("squeue", "exit 0"), ("sbatch", &sbatch)]);
    let o = sweep(data.path(), &out, "1", &["--slurm", "--slurm-arg=--time=5", "--slurm-arg", "--array=%2"]).env("PATH", &fakes).output()?;
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "4242\n");
    let script = std::fs::read_to_string(out.join("slurm/sweep.sbatch"))?;
    assert_eq!(script, std::fs::read_to_string(&stdin)?);
    for line in ["#SBATCH --array=1,2,3,4%2\n", "#SBATCH --cpus-per-task=1\n", "#SBATCH --time=5\n", "sweep --run-trial \"${SLURM_ARRAY_TASK_ID:?}\""] {
        assert!(script.contains(line), "{line} not in\n{script}");
    }
    let jobs = std::fs::read_to_string(out.join("slurm/jobs.jsonl"))?;
    let record: Value = serde_json::from_str(jobs.trim())?;
    assert_eq!(record["job_id"], "4242");
    assert_eq!(record["trials"].as_array().map(Vec::len), Some(4));

    // Tasks 1 and 3 run; task 2 was killed before its first checkpoint.
    let task = |n: &str| bin().args(["sweep", "--run-trial", n, "--out", out.to_str().unwrap(), "--threads", "1"]).output().unwrap();
    for n in ["1", "3"] {
        let o = task(n);
        assert!(o.status.success(), "task {n}: {}", text(&o.stderr));
    }
    let o = task("1");
    assert!(o.status.success() && text(&o.stderr).contains("already finished"), "{}", text(&o.stderr));
    // The ids of the plan, from the results of what has finished.
    let o = bin().args(["sweep", "--collect", out.to_str().unwrap()]).output()?;
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ids: Vec<String> = std::fs::read_to_string(out.join("results.jsonl"))?
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    let (first, second) = (out.join("trials").join(&ids[0]), out.join("trials").join(&ids[1]));
    assert!(first.join("summary.json").is_file() && !second.exists());
    // Trial 2 (trial 1 with lr 0.02) as a kill in its first epoch leaves it.
    std::fs::create_dir_all(&second)?;
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(first.join("config.json"))?)?;
    cfg["learning_rate"] = 0.02.into();
    std::fs::write(second.join("config.json"), serde_json::to_vec(&cfg)?)?;
    let o = task("2");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("resuming t002"), "{}", text(&o.stderr));
    assert!(std::fs::read_to_string(second.join("train.log"))?.contains("starts from its first step"));
    assert!(second.join("summary.json").is_file());
    let o = task("9");
    assert!(text(&o.stderr).contains("invalid run-trial = 9: a trial's position in the sweep, 1 to 4"), "{}", text(&o.stderr));

    let o = sweep(data.path(), &out, "1", &["--slurm"]).env("PATH", &fakes).output()?;
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(std::fs::read_to_string(&stdin)?.contains("#SBATCH --array=4\n"));
    Ok(())
}

/// Whether a Slurm cluster answers here; otherwise says how to get one (or fails, in CI).
fn slurm_or_skip(test: &str) -> bool {
    let up = Command::new("sinfo").arg("--noheader").output().is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if !up {
        assert!(
            std::env::var_os("TCH_CIFAR10_REQUIRE_SLURM").is_none(),
            "{test}: TCH_CIFAR10_REQUIRE_SLURM is set but no Slurm cluster answers (`scripts/slurm-local up`)"
        );
        // Straight to stderr, past the test harness's capture, so that the skip shows.
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED {test}: no Slurm cluster answers `sinfo`; to run it: `sudo scripts/slurm-local up` (a one-node cluster), \
             `cargo test --test slurm`, then `sudo scripts/slurm-local down`"
        );
    }
    up
}

fn squeue(job: &str) -> String {
    let o = Command::new("squeue").args(["--noheader", "--jobs", job, "--format=%i %T"]).output().unwrap();
    text(&o.stdout)
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The per-trial figures of results.jsonl, all but the timings.
fn figures(dir: &Path) -> Vec<BTreeMap<String, Value>> {
    let rows = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
    rows.lines()
        .map(|l| {
            let row: BTreeMap<String, Value> = serde_json::from_str(l).unwrap();
            row.into_iter().filter(|(k, _)| !k.contains("seconds") && !k.contains("per_sec")).collect()
        })
        .collect()
}

/// On a real Slurm: a 4-trial sweep submitted as an array; one running task cancelled
/// (`scancel`: SIGTERM, the trial saves its state); the sweep submitted again runs only that
/// trial, resumed; `sweep --collect` then gives the figures of the same sweep run locally with
/// `--jobs 2`, every one but the seconds.
#[test]
fn a_sweep_on_slurm_survives_a_cancelled_task_and_equals_the_local_sweep() -> TestResult {
    if !slurm_or_skip("a_sweep_on_slurm_survives_a_cancelled_task_and_equals_the_local_sweep") {
        return Ok(());
    }
    let data = common::synthetic_cifar(1000, 50, 3);
    let epochs = "4";
    let local = data.path().join("local");
    let o = sweep(data.path(), &local, epochs, &["--jobs", "2", "-q"]).output()?;
    assert!(o.status.success(), "{}", text(&o.stderr));

    let out = data.path().join("slurm");
    // An argument Slurm rejects: its error, and no sweep folder.
    let o = sweep(data.path(), &out, epochs, &["--slurm", "--slurm-arg=--partition=no-such-partition"]).output()?;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("sbatch: exited with status 1") && text(&o.stderr).contains("no-such-partition"), "{}", text(&o.stderr));
    assert!(!out.exists());

    let o = sweep(data.path(), &out, epochs, &["--slurm"]).output()?;
    assert!(o.status.success(), "{}", text(&o.stderr));
    let job = text(&o.stdout).trim().to_string();
    assert!(job.parse::<u64>().is_ok(), "a job id: {job:?}");
    // Cancel the first task seen running once its trial has a checkpoint or a finished epoch.
    let mut cancelled = None;
    wait_for("a running task with an epoch done", Duration::from_secs(300), || {
        for line in squeue(&job).lines() {
            let mut words = line.split_whitespace();
            let (Some(id), Some("RUNNING")) = (words.next(), words.next()) else { continue };
            let Some(task) = id.split('_').nth(1).and_then(|t| t.parse::<usize>().ok()) else { continue };
            let trial = std::fs::read_dir(out.join("trials")).ok().and_then(|mut d| {
                d.find_map(|e| e.ok().map(|e| e.path()).filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&format!("t{task:03}-"))))
            });
            if let Some(trial) = trial.filter(|t| t.join("metrics.jsonl").metadata().is_ok_and(|m| m.len() > 0) && !t.join("summary.json").exists()) {
                assert!(Command::new("scancel").arg(id).status().unwrap().success());
                cancelled = Some(trial);
                return true;
            }
        }
        false
    });
    let cancelled = cancelled.unwrap();
    wait_for("the array to end", Duration::from_secs(600), || squeue(&job).trim().is_empty());
    let log = std::fs::read_to_string(cancelled.join("train.log"))?;
    assert!(log.contains("SIGTERM") && log.contains("--resume"), "the cancelled trial saved its state:\n{log}");
    assert!(cancelled.join("checkpoint.safetensors").is_file() && !cancelled.join("summary.json").exists());

    let o = sweep(data.path(), &out, epochs, &["--slurm"]).output()?;
    assert!(o.status.success(), "{}", text(&o.stderr));
    let again = text(&o.stdout).trim().to_string();
    assert!(text(&o.stderr).contains("1 of the 4 trials"), "{}", text(&o.stderr));
    wait_for("the second array to end", Duration::from_secs(600), || squeue(&again).trim().is_empty());
    // The task's own log (before it became the trial's run) says it resumed the trial.
    let task_log: String = std::fs::read_dir(out.join("slurm"))?
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().contains(&format!("-{again}_")))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let trial_id = cancelled.file_name().unwrap().to_str().unwrap();
    assert!(task_log.contains(&format!("resuming {trial_id}")), "{task_log}");

    let o = bin().args(["sweep", "--collect", out.to_str().unwrap()]).output()?;
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (a, b) = (figures(&local), figures(&out));
    assert_eq!(a.len(), 4);
    assert!(a.iter().all(|r| r["status"] == "done"), "{a:?}");
    assert_eq!(a, b);
    Ok(())
}
