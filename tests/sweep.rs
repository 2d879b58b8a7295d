//! `tch-cifar10 sweep` end to end on small synthetic data: results files, rerun skipping
//! finished trials, a sweep stopped midway resuming to the same results, `--print-commands`
//! run one by one giving the sweep's results, the space-mismatch error, deterministic random
//! search, pruning, and failed trials.

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tch-cifar10"))
}

fn run(args: &[String]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `sweep --data-dir DATA --out OUT --device cpu` and `extra`.
fn sweep_args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["sweep", "--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--device", "cpu"]
        .map(String::from)
        .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The rows of `results.jsonl`.
fn rows(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("results.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The figures of each row that do not depend on timing.
fn figures(dir: &Path) -> Vec<BTreeMap<String, Value>> {
    let keep = ["id", "setting", "status", "seed", "lr", "best_val_acc", "best_val_epoch", "final_val_acc", "final_val_loss", "final_test_acc", "final_test_loss", "epochs_run"];
    rows(dir).into_iter().map(|r| keep.iter().map(|k| (k.to_string(), r[k].clone())).collect()).collect()
}

/// The trial folders, in plan order.
fn trial_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir.join("trials")).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    dirs
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn a_grid_sweep_writes_its_results_and_its_commands_run_one_by_one_give_the_same() -> TestResult {
    let data = common::synthetic_cifar(60, 20, 3);
    let out = data.path().join("sweep");
    let args = sweep_args(data.path(), &out, &["--lr", "0.01,0.05", "--seeds", "0,1", "--epochs", "2", "--batch-size", "10", "--val-size", "20", "--jobs", "2"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));

    // The table: settings best first, mean ± std over 2 seeds, ranked by validation.
    let stdout = text(&o.stdout);
    assert!(stdout.starts_with("Settings ranked by best validation accuracy"), "{stdout}");
    for setting in ["lr=1e-2", "lr=5e-2"] {
        assert!(stdout.lines().any(|l| l.contains(setting) && l.contains(" 2 ") && l.contains('±')), "{setting}: {stdout}");
    }
    // One progress line per trial started and finished, with the running best.
    let stderr = text(&o.stderr);
    assert_eq!(stderr.matches("] start ").count(), 4, "{stderr}");
    assert_eq!(stderr.matches("best so far").count(), 4, "{stderr}");
    let threads = (std::thread::available_parallelism()?.get() / 2).max(1);
    assert!(stderr.contains(&format!("2 job(s) x {threads} thread(s) on the CPU")), "{stderr}");

    // results.csv and results.jsonl: one row per trial with every field.
    let csv = std::fs::read_to_string(out.join("results.csv"))?;
    let header = csv.lines().next().unwrap();
    assert_eq!(header, "id,setting,status,reason,seed,lr,momentum,batch_size,step_size,gamma,epochs,optimizer,lr_schedule,weight_decay,label_smoothing,random_crop,hflip,warmup_epochs,best_val_acc,best_val_epoch,final_val_acc,final_val_loss,final_test_acc,final_test_loss,epochs_run,seconds");
    assert_eq!(csv.lines().count(), 5);
    let rows = rows(&out);
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["t001-lr=1e-2-seed=0", "t002-lr=5e-2-seed=0", "t003-lr=1e-2-seed=1", "t004-lr=5e-2-seed=1"]);
    for r in &rows {
        assert_eq!((r["status"].as_str(), r["epochs_run"].as_u64(), r["batch_size"].as_u64()), (Some("done"), Some(2), Some(10)), "{r}");
        for k in ["best_val_acc", "final_val_acc", "final_val_loss", "final_test_acc", "final_test_loss", "seconds"] {
            assert!(r[k].as_f64().is_some_and(f64::is_finite), "{k}: {r}");
        }
    }
    // Each trial is an ordinary run directory; the numbers in the rows are the runs' own.
    for (dir, r) in trial_dirs(&out).iter().zip(&rows) {
        for file in ["config.json", "metrics.jsonl", "summary.json", "model.safetensors", "curves.png", "train.log"] {
            assert!(dir.join(file).is_file(), "{}/{file}", dir.display());
        }
        let summary: Value = serde_json::from_slice(&std::fs::read(dir.join("summary.json"))?)?;
        assert_eq!(summary["test_acc"], r["final_test_acc"]);
        assert_eq!(summary["config"]["seed"], r["seed"]);
        assert_eq!(summary["config"]["threads"], threads, "--jobs 2: half the cores each");
    }
    for chart in ["top-curves.png", "val-acc-vs-lr.png"] {
        assert!(out.join(chart).is_file(), "{chart}");
    }

    // Rerun: every trial is finished, nothing runs, the results are rebuilt the same.
    let before: Vec<_> = trial_dirs(&out).iter().map(|d| modified(&d.join("summary.json"))).collect();
    let csv_before = std::fs::read(out.join("results.csv"))?;
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("4 done, 0 pruned, 0 to resume, 0 to run"), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("] start "));
    assert_eq!(trial_dirs(&out).iter().map(|d| modified(&d.join("summary.json"))).collect::<Vec<_>>(), before);
    assert_eq!(std::fs::read(out.join("results.csv"))?, csv_before);

    // --print-commands in another folder, each line run by itself, then --collect: the same figures.
    let other = data.path().join("by-hand");
    let print = [sweep_args(data.path(), &other, &["--lr", "0.01,0.05", "--seeds", "0,1", "--epochs", "2", "--batch-size", "10", "--val-size", "20", "--jobs", "2"]), vec!["--print-commands".into()]].concat();
    let o = run(&print);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines: Vec<String> = text(&o.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for line in &lines {
        let words = shlex::split(line).unwrap();
        assert_eq!(words[0], env!("CARGO_BIN_EXE_tch-cifar10"));
        assert!(words.windows(2).any(|w| w[0] == "--out" && w[1].contains("/by-hand/trials/t0")), "{line}");
        let o = Command::new(&words[0]).args(&words[1..]).output()?;
        assert!(o.status.success(), "{line}: {}", text(&o.stderr));
    }
    let o = run(&["sweep".into(), "--collect".into(), other.to_str().unwrap().into()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(figures(&other), figures(&out));
    // All finished: nothing left to print, and the log says so.
    let o = run(&print);
    assert_eq!(text(&o.stdout), "");
    assert!(text(&o.stderr).contains("all 4 trials are finished: no command to print"), "{}", text(&o.stderr));
    Ok(())
}

/// A stop signal to the sweep (SIGTERM here, as Slurm or `kill` sends; Ctrl-C's SIGINT alike)
/// is passed on to the running trial, which saves its state; the same command then
/// skips the finished trial, resumes the stopped one and runs the rest, to the results of a
/// sweep never stopped.
#[test]
fn a_sweep_stopped_midway_skips_finished_and_resumes_unfinished_trials_to_the_same_results() -> TestResult {
    let data = common::synthetic_cifar(300, 20, 3);
    let flags = ["--lr", "0.01,0.02,0.03", "--seeds", "3", "--epochs", "4", "--batch-size", "10", "--val-size", "30", "--jobs", "1"];
    let whole = data.path().join("whole");
    let o = run(&sweep_args(data.path(), &whole, &flags));
    assert!(o.status.success(), "{}", text(&o.stderr));

    let out = data.path().join("stopped");
    let args = sweep_args(data.path(), &out, &flags);
    let child = bin().args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    // Stop once the second trial has saved its first epoch: the first is finished then.
    let second = out.join("trials/t002-lr=2e-2-seed=3/checkpoint.safetensors");
    let t0 = Instant::now();
    while !second.exists() && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
    let o = child.wait_with_output()?;
    let stderr = text(&o.stderr);
    let first = out.join("trials/t001-lr=1e-2-seed=3");
    let finished_at = modified(&first.join("summary.json"));
    if o.status.success() {
        eprintln!("the sweep finished before the signal landed; nothing to resume");
    } else {
        assert_eq!(o.status.code(), Some(130), "{stderr}");
        assert!(stderr.contains("SIGTERM: saving") && stderr.contains("sweep interrupted") && stderr.contains("run the same command again"), "{stderr}");
        assert!(stderr.contains("t002-lr=2e-2-seed=3 stopped, state saved"), "{stderr}");
        assert!(!out.join("trials/t002-lr=2e-2-seed=3/summary.json").exists());
        assert!(!out.join("trials/t003-lr=3e-2-seed=3").exists(), "no trial starts after the stop");
        // The table of what finished so far is printed and written.
        assert!(text(&o.stdout).contains("Not finished:"), "{}", text(&o.stdout));
        let status: Vec<String> = rows(&out).iter().map(|r| r["status"].as_str().unwrap().to_string()).collect();
        assert_eq!(status, ["done", "interrupted", "pending"]);

        let o = run(&args);
        let stderr = text(&o.stderr);
        assert!(o.status.success(), "{stderr}");
        assert!(stderr.contains("1 done, 0 pruned, 1 to resume, 1 to run"), "{stderr}");
        assert!(stderr.contains("resume t002-lr=2e-2-seed=3") && !stderr.contains("t001-lr=1e-2-seed=3 done"), "{stderr}");
    }
    assert_eq!(modified(&first.join("summary.json")), finished_at, "the finished trial is not run again");
    assert_eq!(figures(&out), figures(&whole));
    Ok(())
}

#[test]
fn a_changed_space_in_an_existing_folder_is_an_error_saying_what_differs() -> TestResult {
    let data = common::synthetic_cifar(10, 5, 2);
    let out = data.path().join("sweep");
    let o = run(&sweep_args(data.path(), &out, &["--lr", "0.01,0.02", "--seeds", "0,1", "--epochs", "2", "--print-commands"]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Device and threads may change between runs of one sweep.
    let o = run(&sweep_args(data.path(), &out, &["--lr", "0.01,0.02", "--seeds", "0,1", "--epochs", "2", "--threads", "2", "--print-commands"]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let saved = std::fs::read_to_string(out.join("sweep.json"))?;

    let o = run(&sweep_args(data.path(), &out, &["--lr", "0.01", "--momentum", "0.8", "--seeds", "0..3", "--epochs", "2", "--print-commands"]));
    assert_eq!(o.status.code(), Some(1));
    let stderr = text(&o.stderr);
    assert!(stderr.contains(&format!("{} holds another sweep", out.display())), "{stderr}");
    for line in ["--lr: 0.01,0.02 in sweep.json, 0.01 now", "--momentum: 0.9 in sweep.json, 0.8 now", "--seeds: 0,1 in sweep.json, 0,1,2 now"] {
        assert!(stderr.contains(line), "{line}: {stderr}");
    }
    assert!(!stderr.contains("--epochs"), "only what differs: {stderr}");
    assert_eq!(std::fs::read_to_string(out.join("sweep.json"))?, saved, "sweep.json is left as it was");
    Ok(())
}

#[test]
fn random_search_is_the_same_for_the_same_sweep_seed_and_a_space_file_equals_the_flags() -> TestResult {
    let data = common::synthetic_cifar(10, 5, 2);
    let commands = |name: &str, extra: &[&str]| -> Vec<String> {
        let out = data.path().join(name);
        let o = run(&[sweep_args(data.path(), &out, extra), vec!["--print-commands".into()]].concat());
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout).lines().map(|l| l.replace(&format!("/{name}/"), "/DIR/")).collect()
    };
    let space = ["--lr", "loguniform:1e-4:1e-1", "--momentum", "uniform:0.8:0.99", "--batch-size", "choice:10,20", "--trials", "3"];
    let a = commands("a", &[&space[..], &["--sweep-seed", "5"]].concat());
    assert_eq!(a.len(), 3);
    assert_eq!(a, commands("b", &[&space[..], &["--sweep-seed", "5"]].concat()));
    assert_ne!(a, commands("c", &[&space[..], &["--sweep-seed", "6"]].concat()));
    // Each draw within its range, in the command and the folder's name.
    for line in &a {
        let words = shlex::split(line).unwrap();
        let value = |flag: &str| words[words.iter().position(|w| w == flag).unwrap() + 1].parse::<f64>().unwrap();
        assert!((1e-4..=1e-1).contains(&value("--lr")) && (0.8..=0.99).contains(&value("--momentum")), "{line}");
        assert!([10.0, 20.0].contains(&value("--batch-size")), "{line}");
        assert!(line.contains("-lr=") && line.contains("-momentum=") && line.contains("-batch-size="), "{line}");
    }

    let json = data.path().join("space.json");
    std::fs::write(&json, r#"{"lr": "loguniform:1e-4:1e-1", "momentum": "uniform:0.8:0.99", "batch-size": "choice:10,20"}"#)?;
    let from_file = commands("d", &["--space", json.to_str().unwrap(), "--trials", "3", "--sweep-seed", "5"]);
    assert_eq!(from_file, a);
    let o = run(&[sweep_args(data.path(), &data.path().join("e"), &["--space", json.to_str().unwrap(), "--lr", "0.1", "--trials", "3"]), vec!["--print-commands".into()]].concat());
    assert!(text(&o.stderr).contains("--lr is given both on the command line and in"), "{}", text(&o.stderr));
    Ok(())
}

/// `--prune`: three trials already at 100 % validation accuracy after epoch 1 (made here as
/// pruned peers), so a fourth with a learning rate too small to learn is behind the median and
/// stopped after epoch 1, with the reason recorded; a rerun leaves it pruned.
#[test]
fn prune_stops_a_trial_behind_the_median_and_records_why() -> TestResult {
    let data = common::synthetic_cifar(600, 20, 3);
    let out = data.path().join("sweep");
    let args = sweep_args(data.path(), &out, &["--lr", "0.01,0.02,0.03,1e-6", "--epochs", "20", "--batch-size", "10", "--val-size", "30", "--prune", "--prune-after", "1"]);
    let o = run(&[args.clone(), vec!["--print-commands".into()]].concat());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let dirs: Vec<PathBuf> = text(&o.stdout)
        .lines()
        .map(|l| {
            let words = shlex::split(l).unwrap();
            PathBuf::from(&words[words.iter().position(|w| w == "--out").unwrap() + 1])
        })
        .collect();
    assert_eq!(dirs.len(), 4);
    for dir in &dirs[..3] {
        std::fs::create_dir_all(dir)?;
        let record = r#"{"epoch":1,"lr":0.01,"train_loss":0.1,"train_acc":1.0,"val_loss":0.1,"val_acc":1.0,"seconds":1.0,"images_per_sec":1.0,"device":"cpu"}"#;
        std::fs::write(dir.join("metrics.jsonl"), format!("{record}\n"))?;
        std::fs::write(dir.join("pruned.json"), r#"{"reason": "made by the test", "epoch": 1}"#)?;
    }

    let o = run(&args);
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("0 done, 3 pruned, 0 to resume, 1 to run"), "{stderr}");
    let marker: Value = serde_json::from_slice(&std::fs::read(dirs[3].join("pruned.json"))?)?;
    let reason = marker["reason"].as_str().unwrap();
    assert!(reason.starts_with("best validation accuracy") && reason.ends_with("by epoch 1, below the median 100.00 % of 3 other trials"), "{reason}");
    assert!(!dirs[3].join("summary.json").exists());
    let last = &rows(&out)[3];
    assert_eq!((last["status"].as_str(), last["reason"].as_str()), (Some("pruned"), Some(reason)));
    assert!(last["epochs_run"].as_u64().unwrap() < 20, "{last}");
    assert!(text(&o.stdout).contains("pruned"), "{}", text(&o.stdout));

    let metrics = std::fs::read(dirs[3].join("metrics.jsonl"))?;
    let o = run(&args);
    assert!(o.status.success());
    assert!(text(&o.stderr).contains("0 done, 4 pruned, 0 to resume, 0 to run"), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(dirs[3].join("metrics.jsonl"))?, metrics, "a pruned trial is not resumed");

    // Pruning compares validation accuracy: it needs a validation split.
    let o = run(&sweep_args(data.path(), &data.path().join("x"), &["--lr", "0.01,0.02", "--prune"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--val-size"), "{}", text(&o.stderr));
    Ok(())
}

/// A trial that fails (here a learning rate that diverges) is recorded with its reason, the
/// others finish, and the sweep exits 1 naming it after printing the table; ranking without a
/// validation split says it uses the test set.
#[test]
fn a_failed_trial_is_reported_and_makes_the_sweep_exit_1() -> TestResult {
    let data = common::synthetic_cifar(30, 10, 3);
    let out = data.path().join("sweep");
    let o = run(&sweep_args(data.path(), &out, &["--lr", "0.01,1e30", "--epochs", "1", "--batch-size", "10", "--jobs", "2", "-q"]));
    assert_eq!(o.status.code(), Some(1));
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(stdout.contains("ranked by final TEST accuracy"), "{stdout}");
    assert!(stderr.contains("1 trial(s) failed") && stderr.contains("t002-lr=1e30-seed=") && stderr.contains("non-finite"), "{stderr}");
    assert!(!stderr.contains("] start "), "-q prints no progress: {stderr}");
    let rows = rows(&out);
    assert_eq!((rows[0]["status"].as_str(), rows[1]["status"].as_str()), (Some("done"), Some("failed")));
    assert!(rows[1]["reason"].as_str().unwrap().contains("non-finite training loss"), "{}", rows[1]);
    Ok(())
}

#[test]
fn a_sweep_folder_in_use_is_refused_naming_the_process() {
    let data = common::synthetic_cifar(40, 10, 3);
    let dir = data.path().join("sweep");
    std::fs::create_dir_all(&dir).unwrap();
    let _held = tch_cifar10::RunDir::at(&dir).lock().unwrap(); // as a sweep in progress would
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tch-cifar10"))
        .args(["sweep", "--out", dir.to_str().unwrap(), "--data-dir", data.path().to_str().unwrap()])
        .args(["--lr", "1e-2", "--epochs", "1", "--batch-size", "10", "--device", "cpu", "-q"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("is in use by process {}", std::process::id())), "{err}");
}

/// A sweep over recipes: named values (`--optimizer sgd,adamw`, `--augment none,crop-flip`) and
/// a number (`--label-smoothing`) give trials named by value, each trained with its recipe
/// (its `config.json`), a results table that shows the names, and `--print-commands` lines that
/// carry the recipe flags.
#[test]
fn a_sweep_over_recipes_names_its_trials_by_value_and_trains_each_recipe() -> TestResult {
    let data = common::synthetic_cifar(40, 20, 3);
    let out = data.path().join("recipes");
    let extra = [
        "--optimizer", "sgd,adamw", "--augment", "none,crop-flip", "--label-smoothing", "0.1", "--lr-schedule", "cosine",
        "--epochs", "2", "--batch-size", "10", "--threads", "1", "-q",
    ];
    let o = run(&sweep_args(data.path(), &out, &extra));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let names: Vec<String> = trial_dirs(&out).iter().map(|d| d.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names[3].contains("optimizer=adamw") && names[3].contains("augment=crop-flip"), "{names:?}");
    let table = text(&o.stdout);
    assert!(table.contains("optimizer=adamw augment=crop-flip"), "{table}");
    for dir in trial_dirs(&out) {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let cfg: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
        let recipe = &cfg["recipe"];
        assert_eq!(recipe["optimizer"], if name.contains("adamw") { "adamw" } else { "sgd" }, "{name}");
        assert_eq!(recipe["hflip"], name.contains("crop-flip"), "{name}");
        assert_eq!((recipe["label_smoothing"].as_f64(), recipe["lr_schedule"].as_str()), (Some(0.1), Some("cosine")), "{name}");
    }
    let o = run(&sweep_args(data.path(), &data.path().join("printed"), &[&extra[..], &["--print-commands"]].concat()));
    let lines = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(lines.lines().filter(|l| l.contains("--optimizer adamw") && l.contains("--hflip") && l.contains("--random-crop 4")).count() == 1, "{lines}");
    // A combination of the space that does not go together is named, before any folder.
    let bad = data.path().join("bad");
    let o = run(&sweep_args(data.path(), &bad, &["--optimizer", "sgd,adam", "--nesterov", "--epochs", "1"]));
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("nesterov = true") && err.contains("in the sweep's setting optimizer=adam"), "{err}");
    // --augment sets what --hflip sets: not both.
    let o = run(&sweep_args(data.path(), &bad, &["--augment", "none,crop-flip", "--hflip", "--epochs", "1"]));
    assert!(text(&o.stderr).contains("either --augment or --hflip"), "{}", text(&o.stderr));
    assert!(!bad.exists());
    Ok(())
}
