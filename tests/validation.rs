//! The validation split (`--val-size`) and early stopping (`--early-stop-patience`): the split
//! is PyTorch's `random_split`, disjoint and reproducible; validation is reported every epoch;
//! early stopping triggers when validation accuracy plateaus and keeps the best epoch's weights.

mod common;

use std::sync::atomic::AtomicBool;

use tch::{Kind, Tensor};
use tch_cifar10::{
    checkpoint::state,
    data::{cifar, split, Dataset},
    train::{self, Session},
    DeviceSpec, Error, MemoryReporter, RunDir, TrainConfig,
};

/// `n` blank images labelled 0..n, so labels identify images.
fn numbered(n: i64) -> Dataset {
    Dataset {
        images: Tensor::zeros([n, 3, 32, 32], (Kind::Uint8, tch::Device::Cpu)),
        labels: Tensor::arange(n, (Kind::Int64, tch::Device::Cpu)),
        classes: (0..n).map(|i| i.to_string()).collect(),
    }
}

fn labels(d: &Dataset) -> Vec<i64> {
    Vec::<i64>::try_from(&d.labels).unwrap()
}

#[test]
fn the_split_is_random_split_disjoint_and_reproducible() {
    let data = numbered(20);
    let (tr, val) = split::holdout(&data, 5, 7).unwrap();
    // PyTorch 2.11: random_split(range(20), [15, 5], generator=torch.Generator().manual_seed(7)).
    assert_eq!(labels(&val), [0, 10, 13, 6, 5]);
    assert_eq!(labels(&tr), [15, 17, 9, 12, 7, 1, 19, 3, 4, 11, 18, 8, 2, 14, 16]);
    assert_eq!(tr.images.size(), [15, 3, 32, 32]);

    let (tr2, val2) = split::holdout(&data, 5, 7).unwrap();
    assert_eq!((labels(&tr2), labels(&val2)), (labels(&tr), labels(&val)));
    let mut all = [labels(&tr), labels(&val)].concat();
    all.sort();
    assert_eq!(all, (0..20).collect::<Vec<_>>(), "disjoint and covering");
    assert_ne!(labels(&split::holdout(&data, 5, 8).unwrap().1), labels(&val), "another seed, another split");

    for bad in [0, 20, 21] {
        let err = split::holdout(&data, bad, 7).unwrap_err().to_string();
        assert!(err.starts_with(&format!("invalid val-size = {bad}")), "{err}");
    }
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig { epochs, batch_size: 20, learning_rate: 0.01, seed: 3, device: DeviceSpec::Cpu, ..TrainConfig::default() }
}

#[test]
fn validation_is_reported_each_epoch_on_held_out_images() {
    let tmp = common::synthetic_cifar(200, 40, 4);
    let (tr, te) = cifar::load(tmp.path()).unwrap();
    let cfg = TrainConfig { val_size: 40, ..config(3) };
    let mut rep = MemoryReporter::default();
    train::train(&cfg, &tr, &te, &mut rep, Default::default()).unwrap();
    assert_eq!(rep.validations.iter().map(|(e, m)| (*e, m.images)).collect::<Vec<_>>(), [(1, 40), (2, 40), (3, 40)]);
    assert_eq!(rep.epochs[0].step_losses.len(), 8, "160 training images left / batch 20");
    assert!(rep.validations[2].1.loss < rep.validations[0].1.loss);

    // Without --val-size nothing is validated and all 200 images train.
    let mut rep = MemoryReporter::default();
    train::train(&config(1), &tr, &te, &mut rep, Default::default()).unwrap();
    assert!(rep.validations.is_empty());
    assert_eq!(rep.epochs[0].step_losses.len(), 10);
}

#[test]
fn early_stopping_triggers_on_a_plateau_and_keeps_the_best_weights() {
    let tmp = common::synthetic_cifar(300, 40, 4);
    let (tr, te) = cifar::load(tmp.path()).unwrap();
    let (epochs, patience) = (40, 3);
    let cfg = TrainConfig { val_size: 60, early_stop_patience: Some(patience), ..config(epochs) };
    let mut rep = MemoryReporter::default();
    let out = train::train(&cfg, &tr, &te, &mut rep, Default::default()).unwrap();

    let accs: Vec<f64> = rep.validations.iter().map(|(_, m)| m.accuracy).collect();
    let stopped = rep.epochs.len();
    assert!(stopped < epochs, "no early stop in {epochs} epochs: {accs:?}");
    assert_eq!(rep.validations.len(), stopped);
    // The best epoch is the first to reach the highest accuracy, `patience` epochs before the stop.
    let top = accs.iter().cloned().fold(f64::MIN, f64::max);
    let best = accs.iter().position(|&a| a == top).unwrap() + 1;
    assert_eq!(stopped, best + patience, "{accs:?}");

    // The model kept is the best epoch's: on the validation split it gives that epoch's figures
    // to the bit, not those of the last epoch trained.
    let (_, val) = split::holdout(&tr, 60, cfg.seed).unwrap();
    let again = train::evaluate(&out.net, &val, cfg.batch_size);
    assert_eq!(again, rep.validations[best - 1].1);
    assert_ne!(again.loss, rep.validations[stopped - 1].1.loss);
    // The final test evaluation is reported on the last epoch trained, saying whose weights.
    assert_eq!(rep.evals.last().unwrap().0, stopped);
}

/// With early stopping the final test figures still reach `metrics.jsonl`'s last line (which
/// names the epoch whose weights they measure) and TensorBoard at that line's step, after every
/// step written before; `summary.json` holds the same figures.
#[test]
fn an_early_stopped_run_writes_its_final_test_figures_on_its_last_line() {
    use tch_cifar10::report::{metrics::read_metrics, tensorboard::read_scalars};
    let data = common::synthetic_cifar(300, 40, 4);
    let out = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        data_dir: data.path().to_path_buf(),
        out_dir: Some(out.path().join("run")),
        val_size: 60,
        early_stop_patience: Some(3),
        tensorboard: true,
        ..config(40)
    };
    let run = tch_cifar10::run_train(&cfg, &Default::default(), &mut MemoryReporter::default(), None).unwrap();
    let records = read_metrics(&run.run_dir.file("metrics.jsonl")).unwrap();
    let last = records.last().unwrap();
    assert!(last.epoch < 40, "stopped early");
    assert_eq!((last.test_loss, last.test_acc), (Some(run.summary.test_loss), Some(run.summary.test_acc)));
    let best = last.test_weights_epoch.expect("the line names the weights' epoch");
    assert_eq!(best + 3, last.epoch);
    assert!(records[..records.len() - 1].iter().all(|r| r.test_weights_epoch.is_none()));
    let events = std::fs::read_dir(run.run_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."))
        .unwrap();
    let scalars = read_scalars(&events).unwrap();
    let test: Vec<(i64, f32)> = scalars.iter().filter(|(t, _, _)| t == "Accuracy/test").map(|(_, s, v)| (*s, *v)).collect();
    assert_eq!(test.last(), Some(&(last.epoch as i64, run.summary.test_acc as f32)));
    let steps: Vec<i64> = scalars.iter().map(|(_, s, _)| *s).collect();
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "steps never go back: {steps:?}");
}

fn checkpoint(dir: &RunDir) -> state::Checkpoint {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = tch_cifar10::model::Net::new(&vs.root(), 4);
    let expected: Vec<_> = net.parameters().iter().map(|(n, p)| (*n, p.size())).collect();
    state::load(&dir.file(state::FILE), &expected).unwrap()
}

#[test]
fn early_stopping_resumes_exactly_and_a_stopped_run_stays_stopped() {
    let data = common::synthetic_cifar(300, 40, 4);
    let (tr, te) = cifar::load(data.path()).unwrap();
    let cfg = TrainConfig { val_size: 60, early_stop_patience: Some(3), ..config(40) };
    let full_dir = RunDir::create(data.path().join("full")).unwrap();
    let mut full = MemoryReporter::default();
    let full_out = train::train(&cfg, &tr, &te, &mut full, Session { run_dir: Some(&full_dir), ..Default::default() }).unwrap();
    let stopped = full.epochs.len();
    assert!(stopped < 40);
    let ck = checkpoint(&full_dir);
    assert_eq!((ck.state.epoch, ck.state.epochs_without_improvement), (stopped, 3), "the early stop is saved");
    assert_eq!(ck.best.len(), 10);

    // Interrupted after the epoch before the stop, while waiting for an improvement, then resumed.
    let dir = RunDir::create(data.path().join("interrupted")).unwrap();
    let flag = AtomicBool::new(false);
    let mut first = common::StopAfter { inner: MemoryReporter::default(), stop_after: stopped - 1, flag: &flag };
    let session = Session { run_dir: Some(&dir), stop: Some(&flag), ..Default::default() };
    assert!(matches!(train::train(&cfg, &tr, &te, &mut first, session), Err(Error::Interrupted { .. })));
    let mut second = MemoryReporter::default();
    let session = Session { run_dir: Some(&dir), resume: Some(checkpoint(&dir)), ..Default::default() };
    let resumed = train::train(&cfg, &tr, &te, &mut second, session).unwrap();
    assert_eq!(second.epochs.len(), 1, "one more epoch, then the same early stop");
    assert_eq!([first.inner.validations, second.validations.clone()].concat(), full.validations);
    assert_eq!(resumed.test, full_out.test);
    assert_eq!(second.evals, full.evals);

    // Resuming the run that stopped early trains nothing and keeps the same weights.
    let mut third = MemoryReporter::default();
    let session = Session { run_dir: Some(&full_dir), resume: Some(checkpoint(&full_dir)), ..Default::default() };
    let again = train::train(&cfg, &tr, &te, &mut third, session).unwrap();
    assert!(third.epochs.is_empty() && third.validations.is_empty());
    assert_eq!(again.test, full_out.test);
}

#[test]
fn the_binary_logs_validation_and_refuses_patience_without_a_split() {
    let tmp = common::synthetic_cifar(60, 20, 2);
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tch-cifar10"))
            .args(["train", "--data-dir", tmp.path().to_str().unwrap(), "--epochs", "2", "--batch-size", "10"])
            .args(["--device", "cpu", "--out", tmp.path().join("run").to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--early-stop-patience", "2"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("invalid early-stop-patience = 2: needs a validation split (--val-size N)"), "{err}");

    let o = run(&["--val-size", "10", "--early-stop-patience", "5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("held out 10 of 60 training images"), "{err}");
    assert!(err.contains("epoch   1  val loss") && err.contains("epoch   2  val loss"), "{err}");
    // metrics.jsonl carries the validation figures of each epoch.
    let metrics = std::fs::read_to_string(tmp.path().join("run").join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["val_loss"].is_f64() && l["val_acc"].is_f64()), "{metrics}");
}
