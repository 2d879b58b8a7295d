//! `--kernels fast`: it trains, it stays close to the reference step for step (the same
//! mathematics, other rounding), it resumes exactly within the fast mode, and `--resume` refuses
//! another kernel choice than the run's.

mod common;

use std::{path::Path, process::Command, sync::atomic::AtomicBool};

use tch_cifar10::{
    checkpoint::state, config::Kernels, data::cifar, train, DeviceSpec, MemoryReporter, RunDir, TrainConfig,
};

fn config(kernels: Kernels) -> TrainConfig {
    TrainConfig { epochs: 3, batch_size: 20, learning_rate: 0.01, step_size: 2, seed: 4, device: DeviceSpec::Cpu, kernels, ..TrainConfig::default() }
}

fn step_losses(r: &MemoryReporter) -> Vec<f32> {
    r.epochs.iter().flat_map(|e| e.step_losses.clone()).collect()
}

#[test]
fn fast_trains_and_follows_the_reference_within_rounding() {
    let tmp = common::synthetic_cifar(400, 200, 4);
    let (tr, te) = cifar::load(tmp.path()).unwrap();
    let (mut fast, mut reference) = (MemoryReporter::default(), MemoryReporter::default());
    let out = train::train(&config(Kernels::Fast), &tr, &te, &mut fast, Default::default()).unwrap();
    train::train(&config(Kernels::Reference), &tr, &te, &mut reference, Default::default()).unwrap();
    assert!(out.test.accuracy >= 0.9, "fast test accuracy {}", out.test.accuracy);
    let (f, r) = (step_losses(&fast), step_losses(&reference));
    assert_eq!(f.len(), 60);
    // The first steps (same weights, same batches) differ by float32 rounding only.
    let worst = f.iter().zip(&r).take(20).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "largest difference over the first 20 steps: {worst}");
    assert_ne!(f, r, "the fast kernels round differently: if they are identical the mode does nothing");
}

#[test]
fn a_fast_run_resumes_exactly_within_the_fast_mode() {
    let data = common::synthetic_cifar(60, 20, 3);
    let (tr, te) = cifar::load(data.path()).unwrap();
    let cfg = TrainConfig { batch_size: 10, ..config(Kernels::Fast) };
    let full_dir = RunDir::create(data.path().join("full")).unwrap();
    train::train(&cfg, &tr, &te, &mut MemoryReporter::default(), train::Session { run_dir: Some(&full_dir), ..Default::default() }).unwrap();

    let dir = RunDir::create(data.path().join("stopped")).unwrap();
    let flag = AtomicBool::new(false);
    let mut first = common::StopAfter { inner: MemoryReporter::default(), stop_after: 1, flag: &flag };
    let session = train::Session { run_dir: Some(&dir), stop: Some(&flag), ..Default::default() };
    assert!(train::train(&cfg, &tr, &te, &mut first, session).is_err());
    let expected: Vec<(&str, Vec<i64>)> = {
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let net = tch_cifar10::model::Net::new(&vs.root(), 3);
        net.parameters().iter().map(|(n, p)| (*n, p.size())).collect()
    };
    let ck = state::load(&dir.file(state::FILE), &expected).unwrap();
    let session = train::Session { run_dir: Some(&dir), resume: Some(ck), ..Default::default() };
    train::train(&cfg, &tr, &te, &mut MemoryReporter::default(), session).unwrap();

    let a = state::load(&full_dir.file(state::FILE), &expected).unwrap();
    let b = state::load(&dir.file(state::FILE), &expected).unwrap();
    for ((n, x), (_, y)) in a.weights.iter().chain(&a.optimizer).zip(b.weights.iter().chain(&b.optimizer)) {
        assert!(x.equal(y), "{n} differs after the resume");
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tch-cifar10"))
}

fn train(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let args = ["train", "--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--epochs", "1", "--batch-size", "10", "--device", "cpu"];
    bin().args(args).args(extra).output().unwrap()
}

#[test]
fn kernels_are_recorded_and_another_choice_is_refused_on_resume() {
    let data = common::synthetic_cifar(40, 20, 3);
    let run = data.path().join("run");
    let o = train(data.path(), &run, &["--kernels", "fast", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    assert!(config.contains(r#""kernels": "fast""#), "{config}");
    common::unfinish(&run);

    let o = bin().args(["train", "--resume", run.to_str().unwrap(), "--kernels", "reference"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("invalid kernels = reference") && err.contains("fast"), "{err}");
    // The same choice is fine: the run finishes (its last evaluation and summary).
    let o = bin().args(["train", "--resume", run.to_str().unwrap(), "--kernels", "fast", "-q"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(run.join("summary.json").is_file());
}

#[test]
fn cuda_graphs_on_the_cpu_is_refused_before_a_run_folder_and_auto_trains_eagerly() {
    let data = common::synthetic_cifar(20, 10, 3);
    let run = data.path().join("graphed");
    let o = train(data.path(), &run, &["--cuda-graphs", "on"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("invalid cuda-graphs = on: a CUDA device; this run trains on cpu"), "{err}");
    assert!(!run.exists());
    // auto (the default) and --deterministic change nothing on the CPU.
    let o = train(data.path(), &run, &["--cuda-graphs", "auto", "--deterministic", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_fast_runs_test_pass_on_the_kernels_agrees_with_libtorchs() {
    // The test figures of a fast CPU run come from the crate's kernels; libtorch's forward on
    // the same final weights gives the same predictions and the loss within rounding.
    let tmp = common::synthetic_cifar(200, 130, 4);
    let (tr, te) = cifar::load(tmp.path()).unwrap();
    let cfg = TrainConfig { epochs: 2, ..config(Kernels::Fast) };
    let out = train::train(&cfg, &tr, &te, &mut MemoryReporter::default(), Default::default()).unwrap();
    let want = train::evaluate(&out.net, &te, cfg.batch_size);
    assert!(want.accuracy > 0.4, "a network that learnt something (chance is 0.25): {}", want.accuracy);
    assert_eq!((out.test.accuracy, &out.test.per_class_accuracy), (want.accuracy, &want.per_class_accuracy));
    assert!((out.test.loss - want.loss).abs() < 1e-5 * want.loss, "{} against {}", out.test.loss, want.loss);
}
