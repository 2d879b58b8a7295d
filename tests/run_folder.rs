//! Flags and stored state are validated before any work, and a run folder's history is never
//! lost (issue 13, sections 3 and 4): out-of-range flags, edited `config.json`, two runs on one
//! folder, a kill before the last epoch's metrics line, a finished run without its checkpoint.

mod common;

use std::{path::Path, process::Command};

use tch_cifar10::RunDir;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tch-cifar10"))
}

fn train(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let args = ["train", "--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--device", "cpu", "-q"];
    let batch: &[&str] = if extra.contains(&"--batch-size") { &[] } else { &["--batch-size", "10"] };
    let threads: &[&str] = if extra.contains(&"--threads") { &[] } else { &["--threads", "1"] };
    bin().args(args).args(batch).args(threads).args(extra).output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn out_of_range_flags_are_refused_before_a_run_folder_is_made() {
    let data = common::synthetic_cifar(20, 10, 3);
    let cases: [(&[&str], &str); 6] = [
        (&["--batch-size", "9223372036854775808"], "invalid batch-size = 9223372036854775808: 1 to 1000000"),
        (&["--lr", "1e308"], "invalid lr = 1e308"),
        (&["--gamma", "1e-300"], "invalid gamma = 1e-300"),
        (&["--threads", "2147483648"], "invalid threads = 2147483648: 1 to 1024"),
        (&["--epochs", "1000000000000"], "invalid epochs = 1000000000000: 1 to 100000"),
        (&["--epochs", "1000000000"], "invalid epochs = 1000000000: 1 to 100000"),
    ];
    for (i, (flags, want)) in cases.iter().enumerate() {
        let out = data.path().join(format!("run{i}"));
        let o = train(data.path(), &out, flags);
        assert_eq!(o.status.code(), Some(1), "{flags:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{flags:?}: {}", stderr(&o));
        assert!(!out.exists(), "{flags:?} made the run folder");
    }
    let o = bin().args(["eval", "--checkpoint", "x", "--batch-size", "9223372036854775808"]).output().unwrap();
    assert!(stderr(&o).contains("invalid batch-size = 9223372036854775808"), "{}", stderr(&o));
}

#[test]
fn resume_refuses_an_edited_config_naming_the_setting() {
    let data = common::synthetic_cifar(40, 10, 3);
    let run = data.path().join("run");
    assert!(train(data.path(), &run, &["--epochs", "1"]).status.success());
    common::unfinish(&run);
    let original = std::fs::read_to_string(run.join("config.json")).unwrap();
    for (from, to, key) in [(r#""batch_size": 10"#, r#""batch_size": 7"#, "batch_size"), (r#""learning_rate": 0.001"#, r#""learning_rate": 0.5"#, "learning_rate")] {
        assert!(original.contains(from), "{original}");
        std::fs::write(run.join("config.json"), original.replace(from, to)).unwrap();
        let o = bin().args(["train", "--resume", run.to_str().unwrap(), "-q"]).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains(&format!("config.json says {key} =")), "{}", stderr(&o));
    }
    // The device may change (the thread count too, but not for a reference-mode run on the CPU:
    // tests/resume.rs).
    std::fs::write(run.join("config.json"), &original).unwrap();
    let o = bin().args(["train", "--resume", run.to_str().unwrap(), "--threads", "1", "--device", "cpu", "-q"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_locked_run_folder_names_the_process_holding_it() {
    let data = common::synthetic_cifar(20, 10, 3);
    let run = RunDir::create(data.path().join("busy")).unwrap();
    let _held = run.lock().unwrap(); // as a run in progress would
    let o = train(data.path(), run.path(), &["--epochs", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&format!("is in use by process {}", std::process::id())), "{}", stderr(&o));
    let o = bin().args(["train", "--resume", run.path().to_str().unwrap()]).output().unwrap();
    assert!(stderr(&o).contains("is in use by process"), "{}", stderr(&o));
}

#[test]
fn a_metrics_line_lost_to_a_kill_comes_back_on_resume() {
    let data = common::synthetic_cifar(40, 10, 3);
    let run = data.path().join("run");
    assert!(train(data.path(), &run, &["--epochs", "2"]).status.success());
    let whole = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let lines: Vec<&str> = whole.lines().collect();
    assert_eq!(lines.len(), 2);
    // As after `kill -9` during the final test evaluation: the checkpoint says 2 epochs, the
    // metrics file has 1, and there is no summary yet.
    std::fs::write(run.join("metrics.jsonl"), format!("{}\n", lines[0])).unwrap();
    common::unfinish(&run);
    let o = bin().args(["train", "--resume", run.to_str().unwrap(), "-q"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(), whole);
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs"], 2);
}

#[test]
fn a_folder_holding_any_run_file_is_a_run() {
    let data = common::synthetic_cifar(20, 10, 3);
    let run = data.path().join("finished");
    assert!(train(data.path(), &run, &["--epochs", "1"]).status.success());
    std::fs::remove_file(run.join("checkpoint.safetensors")).unwrap();
    let model = std::fs::read(run.join("model.safetensors")).unwrap();
    let o = train(data.path(), &run, &["--epochs", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("holds a finished run (1 epoch); pick another --out"), "{}", stderr(&o));
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), model, "the finished run's model was overwritten");
}

#[test]
fn resume_on_other_data_is_refused_naming_both() {
    let data = common::synthetic_cifar(40, 10, 3);
    let other = common::synthetic_cifar(30, 10, 3);
    let run = data.path().join("run");
    assert!(train(data.path(), &run, &["--epochs", "1"]).status.success());
    common::unfinish(&run);
    // The training files change under the run.
    let bin = |d: &Path| d.join("cifar-10-batches-bin");
    for f in std::fs::read_dir(bin(other.path())).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), bin(data.path()).join(f.file_name())).unwrap();
    }
    let o = bin_cmd_resume(&run);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("trained on other data: 40 images of 3 classes") && err.contains("30 images of 3 classes"), "{err}");
}

fn bin_cmd_resume(run: &Path) -> std::process::Output {
    bin().args(["train", "--resume", run.to_str().unwrap(), "-q"]).output().unwrap()
}

#[test]
fn a_failed_start_leaves_no_run_folder_behind() {
    let data = common::synthetic_cifar(40, 10, 3);
    let run = data.path().join("bad");
    let o = train(data.path(), &run, &["--epochs", "1", "--val-size", "40"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid val-size = 40: between 1 and 39"), "{}", stderr(&o));
    assert!(!run.exists(), "the refused run left {:?}", std::fs::read_dir(&run).map(|d| d.count()));
    // So the same folder takes the corrected command.
    assert!(train(data.path(), &run, &["--epochs", "1", "--val-size", "10"]).status.success());
}

#[test]
fn a_run_with_a_relative_data_dir_resumes_elsewhere_with_data_dir() {
    let data = common::synthetic_cifar(40, 10, 3);
    let o = bin()
        .current_dir(data.path())
        .args(["train", "--data-dir", ".", "--out", "run", "--epochs", "1", "--batch-size", "10", "--device", "cpu", "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let run = data.path().join("run");
    common::unfinish(&run);
    // From another folder "." is not the data; --data-dir says where it is.
    let o = bin().current_dir("/").args(["train", "--resume", run.to_str().unwrap(), "-q"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = bin()
        .current_dir("/")
        .args(["train", "--resume", run.to_str().unwrap(), "--data-dir", data.path().to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `metrics.jsonl` without the timings (which differ from run to run).
fn metrics_without_timings(run: &Path) -> Vec<serde_json::Value> {
    String::from_utf8(read(&run.join("metrics.jsonl")))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("seconds");
            o.remove("images_per_sec");
            v
        })
        .collect()
}

/// `train --resume RUN --epochs N` trains a finished run further; with StepLR (a function of the
/// epoch) it ends with the weights of a run started with N epochs, bit for bit, and records the
/// new length; the finished run's summary is kept.
#[test]
fn a_finished_run_extended_with_more_epochs_equals_a_run_started_with_them() {
    let data = common::synthetic_cifar(30, 10, 3);
    let (short, long) = (data.path().join("short"), data.path().join("long"));
    // --step-size 1: the rate changes every epoch, also across the extension.
    assert!(train(data.path(), &short, &["--epochs", "2", "--step-size", "1", "--lr", "0.01"]).status.success());
    assert!(train(data.path(), &long, &["--epochs", "4", "--step-size", "1", "--lr", "0.01"]).status.success());
    let o = bin().args(["train", "--resume", short.to_str().unwrap(), "--epochs", "4", "--threads", "1"]).output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("extending") && err.contains("from 2 to 4 epochs") && err.contains("as a run started with --epochs 4 would"), "{err}");
    assert_eq!(read(&short.join("model.safetensors")), read(&long.join("model.safetensors")), "weights differ");
    assert_eq!(metrics_without_timings(&short), metrics_without_timings(&long));
    let config: serde_json::Value = serde_json::from_slice(&read(&short.join("config.json"))).unwrap();
    assert_eq!((config["epochs"].as_u64(), config["extended_from"].clone()), (Some(4), serde_json::json!([2])));
    let kept: serde_json::Value = serde_json::from_slice(&read(&short.join("summary-2-epochs.json"))).unwrap();
    assert_eq!(kept["epochs"], 2);
    let summary: serde_json::Value = serde_json::from_slice(&read(&short.join("summary.json"))).unwrap();
    assert_eq!(summary["epochs"], 4);

    // Now finished at 4: a plain resume says so, and names both commands that work.
    let o = bin().args(["train", "--resume", short.to_str().unwrap()]).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let me = env!("CARGO_BIN_EXE_tch-cifar10");
    assert!(err.contains(&format!("holds a finished run (4 epochs), so there is nothing to resume")), "{err}");
    assert!(err.contains(&format!("`{me} train --resume {} --epochs N` (N above 4)", short.display())), "{err}");
    // Fewer epochs than the run's: refused, with its state.
    let o = bin().args(["train", "--resume", short.to_str().unwrap(), "--epochs", "3"]).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("invalid epochs = 3: more than the run's 4 epochs: a run can be trained longer, not shorter"), "{err}");
    assert_eq!(read(&short.join("model.safetensors")), read(&long.join("model.safetensors")), "a refusal changed the run");
}

/// Cosine depends on the run's length: an extension says that it is not a run started with
/// the new length, and trains on.
#[test]
fn extending_a_cosine_run_says_it_differs_from_a_longer_run() {
    let data = common::synthetic_cifar(20, 10, 3);
    let run = data.path().join("cos");
    assert!(train(data.path(), &run, &["--epochs", "2", "--lr-schedule", "cosine", "--lr", "0.01"]).status.success());
    let o = bin().args(["train", "--resume", run.to_str().unwrap(), "--epochs", "3", "--threads", "1"]).output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("the cosine schedule depends on the run's length: it is recomputed for 3 epochs from epoch 3"), "{err}");
    assert!(err.contains("differs from one started with --epochs 3"), "{err}");
}

/// Reusing the folder of an unfinished run as --out: the state, and the resume command as the
/// program was invoked (here by its full path).
#[test]
fn out_on_an_unfinished_run_names_its_state_and_the_resume_command() {
    let data = common::synthetic_cifar(20, 10, 3);
    let run = data.path().join("half");
    assert!(train(data.path(), &run, &["--epochs", "1"]).status.success());
    common::unfinish(&run);
    let o = train(data.path(), &run, &["--epochs", "1"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let me = env!("CARGO_BIN_EXE_tch-cifar10");
    let want = format!(
        "holds an unfinished run (its checkpoint is after epoch 1 of 1); continue it with `{me} train --resume {}`",
        run.display()
    );
    assert!(err.contains(&want), "{err}");
}

/// `eval`, `predict` and `export` on a run that has no model file yet use its checkpoint's
/// weights and say so; the checkpoint given as a file is a model file too.
#[test]
fn an_unfinished_run_and_its_checkpoint_serve_as_model_files() {
    let data = common::synthetic_cifar(20, 10, 3);
    let run = data.path().join("r");
    assert!(train(data.path(), &run, &["--epochs", "1"]).status.success());
    let eval = |model: &Path| {
        let o = bin()
            .args(["eval", "--device", "cpu", "--json", "--data-dir", data.path().to_str().unwrap(), "--checkpoint", model.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        // The figures, less the model file's path (which names the file used).
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let used = v.as_object_mut().unwrap().remove("checkpoint").unwrap();
        (v, format!("{}\nused {used}", stderr(&o)))
    };
    let (finished, _) = eval(&run);
    // The checkpoint file itself: its current weights (equal to the model's after the last epoch).
    let (from_file, log) = eval(&run.join("checkpoint.safetensors"));
    assert_eq!(from_file, finished);
    assert!(log.contains("is a training checkpoint: using its weights after epoch 1 of 1"), "{log}");
    // A run folder without model.safetensors (killed before the end).
    std::fs::remove_file(run.join("model.safetensors")).unwrap();
    common::unfinish(&run);
    let (unfinished, log) = eval(&run);
    assert_eq!(unfinished, finished);
    assert!(log.contains("holds an unfinished run (its checkpoint is after epoch 1 of 1) and no model.safetensors yet: using the weights of its checkpoint.safetensors"), "{log}");
    let onnx = data.path().join("m.onnx");
    let o = bin().args(["export", "--checkpoint", run.to_str().unwrap(), "--format", "onnx", "--out", onnx.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success() && onnx.is_file(), "{}", stderr(&o));
}

/// On a filesystem without flock (simulated by the documented test hook), runs lock their
/// folder with a lock file holding host and pid, say so once, and a folder locked by another
/// host's run is refused naming that host, process and the file, never a flock holder.
#[test]
fn without_flock_runs_lock_with_a_file_and_say_so_once() {
    let data = common::synthetic_cifar(20, 10, 3);
    let run = data.path().join("nfs");
    for errno in ["ENOSYS", "EOPNOTSUPP", "ENOLCK"] {
        let o = bin()
            .env(tch_cifar10::run_dir::FLOCK_ERRNO_HOOK, errno)
            .args(["train", "--data-dir", data.path().to_str().unwrap(), "--out", run.to_str().unwrap()])
            .args(["--device", "cpu", "--threads", "1", "--batch-size", "10", "--epochs", "1"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{errno}: {}", stderr(&o));
        assert_eq!(stderr(&o).matches("flock is not supported").count(), 1, "{errno}: {}", stderr(&o));
        assert!(!run.join(tch_cifar10::run_dir::FALLBACK_LOCK_FILE).exists(), "{errno}: the lock file is left");
        std::fs::remove_dir_all(&run).unwrap();
    }
    std::fs::create_dir(&run).unwrap();
    std::fs::write(run.join(tch_cifar10::run_dir::FALLBACK_LOCK_FILE), "node17 4242\n").unwrap();
    let o = bin().env(tch_cifar10::run_dir::FLOCK_ERRNO_HOOK, "ENOLCK").args(["-q", "train", "--data-dir", data.path().to_str().unwrap()])
        .args(["--out", run.to_str().unwrap(), "--device", "cpu", "--epochs", "1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("in use by process 4242 on node17") && stderr(&o).contains(".lock.excl"), "{}", stderr(&o));
    assert!(!run.join("config.json").exists());
}

/// A run that early stopping ended is finished for good: `--epochs N` is refused with its state.
#[test]
fn a_run_ended_by_early_stopping_is_not_extended() {
    let data = common::synthetic_cifar(30, 10, 3);
    let run = data.path().join("stopped");
    // A rate too small to change any prediction: no validation gain after epoch 1, so
    // patience 1 stops the run after epoch 2 of 5.
    let o = train(data.path(), &run, &["--epochs", "5", "--val-size", "10", "--early-stop-patience", "1", "--lr", "1e-30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = bin().args(["train", "--resume", run.to_str().unwrap(), "--epochs", "8"]).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("invalid epochs = 8: none for this run"), "{err}");
    assert!(err.contains("holds a finished run (early stopping ended it after epoch 2 of 5)"), "{err}");
    assert!(err.contains(&format!("evaluate it with `{} eval --checkpoint {}`", env!("CARGO_BIN_EXE_tch-cifar10"), run.display())), "{err}");
}
