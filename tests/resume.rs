//! Checkpoints and exact resume: a run stopped (by the stop flag, Ctrl-C or a kill) and resumed
//! ends with exactly the weights of an uninterrupted run; bad checkpoints are clear errors that
//! overwrite nothing.

mod common;

use std::{
    path::Path,
    process::Command,
    sync::atomic::AtomicBool,
};

use tch_cifar10::{
    checkpoint::state,
    config::{Kernels, RecipeConfig},
    data::cifar,
    recipe::{optim::OptimizerKind, schedule::LrScheduleKind},
    train, DeviceSpec, EpochMetrics, Error, EvalMetrics, MemoryReporter, Reporter, RunDir, TrainConfig,
};

fn config(dir: &Path) -> TrainConfig {
    TrainConfig {
        data_dir: dir.to_path_buf(),
        epochs: 3,
        batch_size: 10,
        learning_rate: 0.01,
        step_size: 2,
        seed: 3,
        device: DeviceSpec::Cpu,
        eval_every: Some(1),
        ..TrainConfig::default()
    }
}

fn expected_params() -> Vec<(&'static str, Vec<i64>)> {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = tch_cifar10::model::Net::new(&vs.root(), 3);
    net.parameters().iter().map(|(n, p)| (*n, p.size())).collect()
}

fn final_tensors(run: &Path) -> Vec<(String, tch::Tensor)> {
    let ck = state::load(&run.join(state::FILE), &expected_params()).unwrap();
    ck.weights.into_iter().chain(ck.optimizer).collect()
}

fn same(a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((n, x), (m, y))| n == m && x.equal(y))
}

#[test]
fn stopped_and_resumed_equals_uninterrupted() {
    let data = common::synthetic_cifar(60, 20, 3);
    let (tr, te) = cifar::load(data.path()).unwrap();
    let cfg = config(data.path());

    let full_dir = RunDir::create(data.path().join("full")).unwrap();
    let mut full = MemoryReporter::default();
    let session = train::Session { run_dir: Some(&full_dir), ..Default::default() };
    let full_out = train::train(&cfg, &tr, &te, &mut full, session).unwrap();

    let dir = RunDir::create(data.path().join("stopped")).unwrap();
    let flag = AtomicBool::new(false);
    let mut first = common::StopAfter { inner: MemoryReporter::default(), stop_after: 1, flag: &flag };
    let session = train::Session { run_dir: Some(&dir), stop: Some(&flag), ..Default::default() };
    match train::train(&cfg, &tr, &te, &mut first, session) {
        Err(Error::Interrupted { epoch: 2, step: 0, run_dir }) => assert_eq!(run_dir.as_deref(), Some(dir.path())),
        other => panic!("expected an interruption at epoch 2, step 0: {other:?}"),
    }
    let ck = state::load(&dir.file(state::FILE), &expected_params()).unwrap();
    assert_eq!((ck.state.epoch, ck.state.step), (1, 0));
    assert_eq!(ck.optimizer.len(), 10);

    let mut second = MemoryReporter::default();
    let session = train::Session { run_dir: Some(&dir), resume: Some(ck), ..Default::default() };
    let resumed = train::train(&cfg, &tr, &te, &mut second, session).unwrap();

    assert!(same(&final_tensors(full_dir.path()), &final_tensors(dir.path())), "weights and momentum differ");
    assert_eq!(resumed.test, full_out.test);
    let losses = |r: &MemoryReporter| r.epochs.iter().map(|e| (e.epoch, e.step_losses.clone())).collect::<Vec<_>>();
    assert_eq!([losses(&first.inner), losses(&second)].concat(), losses(&full));
    assert_eq!(second.evals.iter().map(|(e, _)| *e).collect::<Vec<_>>(), [2, 3]);
}

/// Sets the stop flag after step `step` (1-based) of epoch `epoch`, recording everything.
struct StopAtStep<'a> {
    inner: MemoryReporter,
    at: (usize, usize),
    epoch: usize,
    flag: &'a AtomicBool,
}

impl Reporter for StopAtStep<'_> {
    fn epoch_start(&mut self, epoch: usize, _lr: f64) {
        self.epoch = epoch;
    }
    fn step_end(&mut self, step: usize, _losses: &tch::Tensor) {
        if (self.epoch, step) == self.at {
            self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn epoch_end(&mut self, m: &EpochMetrics) {
        self.inner.epoch_end(m);
    }
    fn evaluated(&mut self, epoch: usize, m: &EvalMetrics) {
        self.inner.evaluated(epoch, m);
    }
}

/// With augmentation, every optimizer and a per-batch schedule, in both step kinds: a run
/// stopped in the middle of an epoch and resumed ends with the uninterrupted run's weights and
/// optimizer state, bit for bit, and the same step losses (the draws, the rates and Adam's step
/// count all continue where they were).
#[test]
fn recipes_resume_mid_epoch_exactly() {
    let data = common::synthetic_cifar(60, 20, 3);
    let (tr, te) = cifar::load(data.path()).unwrap();
    let recipes = [
        ("adamw onecycle crop-flip", Kernels::Reference, RecipeConfig {
            random_crop: Some(4), hflip: true, optimizer: OptimizerKind::Adamw, lr_schedule: LrScheduleKind::Onecycle, ..Default::default()
        }),
        ("sgd nesterov cosine warm-up smoothing", Kernels::Reference, RecipeConfig {
            random_crop: Some(2), weight_decay: Some(5e-4), nesterov: true, label_smoothing: 0.1,
            lr_schedule: LrScheduleKind::Cosine, warmup_epochs: 1, ..Default::default()
        }),
        ("fast adam amsgrad crop-flip", Kernels::Fast, RecipeConfig {
            random_crop: Some(4), hflip: true, optimizer: OptimizerKind::Adam, amsgrad: true, label_smoothing: 0.2, ..Default::default()
        }),
    ];
    for (what, kernels, recipe) in recipes {
        let cfg = TrainConfig { kernels, recipe, step_size: 20, eval_every: None, ..config(data.path()) };
        let full_dir = RunDir::create(data.path().join(format!("full {what}"))).unwrap();
        let mut full = MemoryReporter::default();
        let session = train::Session { run_dir: Some(&full_dir), ..Default::default() };
        train::train(&cfg, &tr, &te, &mut full, session).unwrap();

        let dir = RunDir::create(data.path().join(format!("stopped {what}"))).unwrap();
        let flag = AtomicBool::new(false);
        let mut first = StopAtStep { inner: MemoryReporter::default(), at: (2, 3), epoch: 0, flag: &flag };
        let session = train::Session { run_dir: Some(&dir), stop: Some(&flag), ..Default::default() };
        match train::train(&cfg, &tr, &te, &mut first, session) {
            Err(Error::Interrupted { epoch: 2, step: 3, .. }) => {}
            other => panic!("{what}: expected an interruption at epoch 2, step 3: {other:?}"),
        }
        let ck = state::load(&dir.file(state::FILE), &expected_params()).unwrap();
        assert_eq!((ck.state.epoch, ck.state.step), (1, 3), "{what}");
        let mut second = MemoryReporter::default();
        let session = train::Session { run_dir: Some(&dir), resume: Some(ck), ..Default::default() };
        train::train(&cfg, &tr, &te, &mut second, session).unwrap();

        let (a, b) = (final_tensors(full_dir.path()), final_tensors(dir.path()));
        assert!(a.len() >= 20, "{what}: the optimizer's state is saved ({} tensors)", a.len());
        assert!(same(&a, &b), "{what}: weights or optimizer state differ");
        let losses = |r: &MemoryReporter| r.epochs.iter().map(|e| (e.epoch, e.lr, e.step_losses.clone())).collect::<Vec<_>>();
        assert_eq!([losses(&first.inner), losses(&second)].concat(), losses(&full), "{what}");
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tch-cifar10"))
}

fn train_args(data: &Path, out: &Path, epochs: &str) -> Vec<String> {
    [
        "train", "--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--epochs", epochs,
        "--batch-size", "10", "--lr", "0.01", "--seed", "3", "--device", "cpu", "--threads", "1",
    ]
    .map(String::from)
    .to_vec()
}

/// Ctrl-C (SIGINT) mid-run saves the state and exits 130 naming the resume command; `kill -9`
/// loses only the epoch in progress. Either way, resuming gives the uninterrupted run's final
/// weights and momentum, wherever the signal landed.
#[test]
fn interrupted_or_killed_then_resumed_equals_uninterrupted() {
    let data = common::synthetic_cifar(400, 20, 3);
    for recipe in [&[][..], &["--augment", "crop-flip", "--optimizer", "adamw", "--lr-schedule", "onecycle"][..]] {
        interrupted_or_killed(&data, recipe);
    }
}

/// SIGTERM (`scancel`, a time limit, preemption), SIGHUP and SIGUSR1 (`sbatch --signal`) stop a
/// run as Ctrl-C does: saved mid-epoch, exit status 130, and the resumed run ends with exactly
/// the uninterrupted run's weights and momentum.
#[test]
fn sigterm_sighup_and_sigusr1_save_and_resume_exactly() {
    let data = common::synthetic_cifar(400, 20, 3);
    signalled_then_resumed(&data, &[], &["TERM", "HUP", "USR1"]);
}

fn interrupted_or_killed(data: &tempfile::TempDir, recipe: &[&str]) {
    signalled_then_resumed(data, recipe, &["INT", "KILL"]);
}

fn signalled_then_resumed(data: &tempfile::TempDir, recipe: &[&str], signals: &[&str]) {
    let args = |out: &Path| [train_args(data.path(), out, "4"), recipe.iter().map(|s| s.to_string()).collect()].concat();
    let full = data.path().join(format!("full{}", recipe.len()));
    let o = bin().args(args(&full)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    for &signal in signals {
        let stopped = data.path().join(format!("{signal}{}", recipe.len()));
        let child = bin().args(args(&stopped)).stderr(std::process::Stdio::piped()).spawn().unwrap();
        // Signal once the first checkpoint is on disk, i.e. during epoch 2 or later.
        let t0 = std::time::Instant::now();
        while !stopped.join(state::FILE).exists() && t0.elapsed().as_secs() < 60 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
        let o = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        if o.status.success() {
            eprintln!("{signal}: the run finished before the signal landed; nothing to resume");
        } else {
            if signal != "KILL" {
                assert_eq!(o.status.code(), Some(130), "{stderr}");
                assert!(stderr.contains(&format!("--resume {}", stopped.display())), "{stderr}");
            }
            let ck = state::load(&stopped.join(state::FILE), &expected_params()).unwrap();
            eprintln!("{signal}: stopped after epoch {}, step {}", ck.state.epoch, ck.state.step);
            let o = bin().args(["train", "--resume", stopped.to_str().unwrap()]).output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        assert!(same(&final_tensors(&full), &final_tensors(&stopped)), "{signal} {recipe:?}");
    }
}

/// A second signal quits at once, also during the final test evaluation (where libtorch's
/// threads are busy and running the exit handlers used to crash the process): exit status 130,
/// no crash, no panic, and the checkpoint whole.
#[test]
fn a_second_signal_exits_at_once_with_the_interrupted_status() {
    // A large test split: the final evaluation takes a while after the one checkpoint.
    let data = common::synthetic_cifar(40, 3000, 3);
    for attempt in 0..4 {
        let run = data.path().join(format!("twice{attempt}"));
        let mut child = bin().args(train_args(data.path(), &run, "1")).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let t0 = std::time::Instant::now();
        while !run.join(state::FILE).exists() && t0.elapsed().as_secs() < 60 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
            std::thread::sleep(std::time::Duration::from_millis(2));
            libc::kill(pid, libc::SIGTERM);
        }
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert!(!stderr.contains("panicked") && !stderr.contains("Invalid"), "attempt {attempt}: {stderr}");
        if status.success() {
            eprintln!("attempt {attempt}: the run finished before the signals landed");
        } else {
            assert_eq!(status.code(), Some(130), "attempt {attempt}: {status:?}: {stderr}");
            eprintln!("attempt {attempt}: {}", stderr.lines().last().unwrap_or_default());
        }
        state::load(&run.join(state::FILE), &expected_params()).unwrap();
    }
}

#[test]
fn bad_checkpoints_are_named_errors_and_overwrite_nothing() {
    let data = common::synthetic_cifar(20, 10, 3);
    let run = data.path().join("run");
    let o = bin().args(train_args(data.path(), &run, "1")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ck_path = run.join(state::FILE);
    let good = std::fs::read(&ck_path).unwrap();
    // A finished run is refused before its checkpoint is read.
    common::unfinish(&run);

    // A new run into a directory that holds one is refused.
    let o = bin().args(train_args(data.path(), &run, "1")).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));

    for (what, bytes) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("garbage", b"not a checkpoint at all".to_vec()),
        ("empty", vec![]),
    ] {
        std::fs::write(&ck_path, &bytes).unwrap();
        let before: Vec<_> = std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().path()).collect();
        let o = bin().args(["train", "--resume", run.to_str().unwrap()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains(&ck_path.display().to_string()) && !stderr.contains("panicked"), "{what}: {stderr}");
        assert_eq!(std::fs::read(&ck_path).unwrap(), bytes, "{what}: checkpoint rewritten");
        let after: Vec<_> = std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(before, after, "{what}: files added or removed");
    }

    // A checkpoint of another model (a different class count) does not fit.
    std::fs::write(&ck_path, &good).unwrap();
    let ck = state::load(&ck_path, &expected_params()).unwrap();
    let other: Vec<(&str, Vec<i64>)> =
        expected_params().into_iter().map(|(n, s)| if n == "fc3.bias" { (n, vec![7]) } else { (n, s) }).collect();
    let err = state::load(&ck_path, &other).unwrap_err().to_string();
    assert!(err.contains("fc3.bias") && err.contains("[7]"), "{err}");
    assert_eq!(ck.state.epoch, 1);

    // NaN in a weight or in a momentum buffer: the tensor is named, not the learning rate.
    for target in ["conv2.weight", "momentum_buffer.fc1.bias"] {
        let mut ck = state::load(&ck_path, &expected_params()).unwrap();
        let t = ck.weights.iter_mut().chain(ck.optimizer.iter_mut()).find(|(n, _)| n == target).map(|(_, t)| t).unwrap();
        *t = t.copy().fill_(f64::NAN);
        state::save(&ck_path, &ck).unwrap();
        let o = bin().args(["train", "--resume", run.to_str().unwrap()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&format!("tensor {target} holds")) && stderr.contains("NaN") && stderr.contains("damaged or edited"), "{stderr}");
        assert!(!stderr.contains("lower --lr"), "{stderr}");
        std::fs::write(&ck_path, &good).unwrap();
    }

    let missing = data.path().join("nope");
    let o = bin().args(["train", "--resume", missing.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&missing.display().to_string()));
}

/// A finished run (its summary.json written) is not resumed: a clear error, and every file of
/// the run as it was.
#[test]
fn resuming_a_finished_run_is_refused_and_changes_nothing() {
    let data = common::synthetic_cifar(40, 20, 3);
    let out = data.path().join("done");
    let cfg = TrainConfig { epochs: 1, out_dir: Some(out.clone()), ..config(data.path()) };
    tch_cifar10::run_train(&cfg, &Default::default(), &mut MemoryReporter::default(), None).unwrap();
    let snapshot = || -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files.iter().map(|f| (f.display().to_string(), std::fs::read(f).unwrap())).collect()
    };
    let before = snapshot();
    assert!(before.iter().any(|(f, _)| f.ends_with("summary.json")));
    let err = tch_cifar10::resume_train(&out, &Default::default(), &mut MemoryReporter::default(), None).unwrap_err().to_string();
    // The folder's state, and the commands that work: train it further, or evaluate it.
    assert!(err.contains("holds a finished run (1 epoch), so there is nothing to resume (nothing was changed)"), "{err}");
    assert!(err.contains(&format!("`tch-cifar10 train --resume {} --epochs N` (N above 1)", out.display())), "{err}");
    assert!(err.contains(&format!("`tch-cifar10 eval --checkpoint {}`", out.display())), "{err}");
    assert_eq!(snapshot(), before);
}

/// A reference-mode run on the CPU resumes only with the thread count it computed with
/// (libtorch's sums depend on it); the fast kernels, the same bits at any count, may change it.
#[test]
fn a_reference_run_resumes_only_with_its_own_thread_count() {
    let data = common::synthetic_cifar(40, 10, 3);
    for (kernels, other_threads_ok) in [("reference", false), ("fast", true)] {
        let run = data.path().join(kernels);
        let o = bin().args(train_args(data.path(), &run, "2")).args(["--kernels", kernels]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(state::load(&run.join(state::FILE), &expected_params()).unwrap().state.threads, Some(1));
        common::unfinish(&run);
        let o = bin().args(["train", "--resume", run.to_str().unwrap(), "--threads", "2"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        if other_threads_ok {
            assert!(o.status.success(), "{kernels}: {stderr}");
        } else {
            assert_eq!(o.status.code(), Some(1), "{stderr}");
            assert!(stderr.contains("invalid threads = 2: the run's own 1 on --resume") && stderr.contains("resume with --threads 1"), "{stderr}");
            assert!(!run.join("summary.json").exists(), "nothing was run");
            let o = bin().args(["train", "--resume", run.to_str().unwrap()]).output().unwrap();
            assert!(o.status.success(), "its own count (recorded in config.json): {}", String::from_utf8_lossy(&o.stderr));
        }
    }
}

/// A run killed before its first checkpoint (kill -9, the OOM killer, a lost node) leaves
/// `config.json` and no checkpoint: `train --resume` starts it from its first step with the
/// recorded settings (not those of the command line) and ends as the uninterrupted run.
#[test]
fn a_run_killed_before_its_first_checkpoint_resumes_from_its_first_step() {
    let data = common::synthetic_cifar(60, 20, 3);
    let full = data.path().join("full");
    let o = bin().args(train_args(data.path(), &full, "2")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // What the killed run left: its settings, and a torn metrics line.
    let killed = data.path().join("killed");
    std::fs::create_dir(&killed).unwrap();
    std::fs::copy(full.join("config.json"), killed.join("config.json")).unwrap();
    std::fs::write(killed.join("metrics.jsonl"), b"{\"epoch\": 1, \"lo").unwrap();
    // A new run there is refused, naming --resume.
    let o = bin().args(train_args(data.path(), &killed, "2")).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--resume") && stderr.contains("config.json"), "{stderr}");

    let o = bin().args(["train", "--resume", killed.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("starts from its first step"), "{stderr}");
    assert!(same(&final_tensors(&full), &final_tensors(&killed)), "weights or momentum differ");
    let epochs = |run: &Path| std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count();
    assert_eq!((epochs(&full), epochs(&killed)), (2, 2));
    // A second resume finds it finished.
    let o = bin().args(["train", "--resume", killed.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
}
