//! `--tensorboard`: the event files of a sweep's trials (each a `train --tensorboard` run) hold
//! every epoch's figures of `metrics.jsonl` under the documented tags, and the HParams data;
//! read back both by our reader (CRCs checked) and by TensorBoard's own
//! (`scripts/dev/read_tensorboard.py` in `.torch-venv`). Without `.torch-venv` (or `tensorboard` in
//! it) the Python half is skipped with the reason printed, except when `CI=true`: then it fails.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;
use tch_cifar10::report::{metrics::read_metrics, tensorboard::read_scalars};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// What TensorBoard itself reads from the log directory `dir` (`scripts/dev/read_tensorboard.py`
/// in the venv), or `None` when the venv lacks `tensorboard` (skipped, except under `CI=true`).
fn tensorboard_reads(dir: &Path) -> Result<Option<Value>, Box<dyn std::error::Error>> {
    let Some(py) = common::venv::python_or_skip("TensorBoard's reader", "tensorboard") else { return Ok(None) };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dev/read_tensorboard.py");
    let o = Command::new(py).arg(script).arg(dir).output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Ok(Some(serde_json::from_slice(&o.stdout)?))
}

/// `(tag, step, value)` of `run`'s scalars in what [`tensorboard_reads`] returned, sorted.
fn scalars(tb: &Value, run: &str) -> Vec<(String, i64, f32)> {
    let mut got: Vec<(String, i64, f32)> = tb["scalars"][run]
        .as_object()
        .unwrap_or_else(|| panic!("no scalars for {run}: {tb}"))
        .iter()
        .flat_map(|(tag, points)| points.as_array().unwrap().iter().map(move |p| (tag.clone(), p[0].as_i64().unwrap(), p[1].as_f64().unwrap() as f32)))
        .collect();
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    got
}

fn event_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// `(tag, epoch, value)` of every figure in a run's `metrics.jsonl`, as the event file should
/// hold them (float32, as `SummaryWriter.add_scalar` writes).
fn expected(run: &Path) -> Vec<(String, i64, f32)> {
    let mut out = Vec::new();
    for r in read_metrics(&run.join("metrics.jsonl")).unwrap() {
        let e = r.epoch as i64;
        let mut put = |tag: &str, v: Option<f64>| {
            if let Some(v) = v {
                out.push((tag.to_string(), e, v as f32));
            }
        };
        put("Loss/train", r.train_loss);
        put("Accuracy/train", r.train_acc);
        put("LearningRate", Some(r.lr));
        put("Loss/val", r.val_loss);
        put("Accuracy/val", r.val_acc);
        put("Loss/test", r.test_loss);
        put("Accuracy/test", r.test_acc);
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

#[test]
fn event_files_hold_every_epoch_and_the_hyperparameters() -> TestResult {
    let data = common::synthetic_cifar(40, 10, 3);
    let out = data.path().join("sweep");
    let o = Command::new(env!("CARGO_BIN_EXE_tch-cifar10"))
        .args(["sweep", "--data-dir", data.path().to_str().unwrap(), "--out", out.to_str().unwrap(), "--device", "cpu"])
        .args(["--lr", "0.01,0.05", "--epochs", "2", "--batch-size", "10", "--val-size", "10", "--eval-every", "1", "--seeds", "4"])
        .args(["--jobs", "2", "--tensorboard"])
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let runs = ["trials/t001-lr=1e-2-seed=4", "trials/t002-lr=5e-2-seed=4"];
    for run in runs {
        let mut got = read_scalars(&event_file(&out.join(run)))?;
        got.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let want = expected(&out.join(run));
        assert_eq!(want.len(), 2 * 7, "every figure of both epochs");
        assert_eq!(got, want, "{run}");
    }

    let Some(tb) = tensorboard_reads(&out)? else { return Ok(()) };
    for run in runs {
        assert_eq!(scalars(&tb, run), expected(&out.join(run)), "{run}");

        let start = &tb["hparams"][run]["_hparams_/session_start_info"]["sessionStartInfo"];
        let lr = if run.contains("lr=1e-2") { 0.01 } else { 0.05 };
        assert_eq!(start["hparams"]["lr"], lr, "{start}");
        assert_eq!((start["hparams"]["seed"].as_f64(), start["hparams"]["batch-size"].as_f64()), (Some(4.0), Some(10.0)), "{start}");
        assert_eq!(
            start["groupName"],
            format!("lr={lr} momentum=0.9 batch-size=10 step-size=20 gamma=0.1 epochs=2 optimizer=sgd lr-schedule=step weight-decay=0 label-smoothing=0 augment=none warmup-epochs=0")
        );
        assert_eq!((start["hparams"]["optimizer"].as_str(), start["hparams"]["augment"].as_str()), (Some("sgd"), Some("none")), "{start}");
        assert_eq!(tb["hparams"][run]["_hparams_/session_end_info"]["sessionEndInfo"]["status"], "STATUS_SUCCESS");
    }
    // The sweep's experiment, in the log directory's own run: the swept parameter and the seed.
    let experiment = &tb["hparams"]["."]["_hparams_/experiment"]["experiment"];
    let names: Vec<&str> = experiment["hparamInfos"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["lr", "seed"], "{experiment}");
    assert_eq!(experiment["hparamInfos"][0]["domainDiscrete"], serde_json::json!([0.01, 0.05]));
    let metrics: Vec<&str> = experiment["metricInfos"].as_array().unwrap().iter().map(|m| m["name"]["tag"].as_str().unwrap()).collect();
    assert_eq!(metrics, ["Accuracy/val", "Loss/val", "Accuracy/test", "Loss/test", "Accuracy/train", "Loss/train"]);
    Ok(())
}

/// Panics in `epoch_end` of `epoch`, after the reporters before it (TensorBoard's among them)
/// have written that epoch: a crash between two checkpoints.
struct CrashAfter(usize);

impl tch_cifar10::Reporter for CrashAfter {
    fn epoch_end(&mut self, m: &tch_cifar10::report::EpochMetrics) {
        assert!(m.epoch != self.0, "simulated crash after epoch {}", self.0);
    }
}

/// A run that crashed after epoch 3 with its last checkpoint at epoch 2 (`--checkpoint-every
/// 2`), then resumed, trains epoch 3 again: its new event file starts with a purge at step 3
/// (`SessionLog.START`, as `SummaryWriter(purge_step=3)` writes), so TensorBoard's own reader
/// shows one value per step and tag, the resumed run's.
#[test]
fn a_resumed_run_purges_the_steps_it_trains_again() -> TestResult {
    let data = common::synthetic_cifar(40, 10, 3);
    let run = data.path().join("run");
    let cfg = tch_cifar10::TrainConfig {
        data_dir: data.path().to_path_buf(),
        out_dir: Some(run.clone()),
        epochs: 4,
        batch_size: 10,
        checkpoint_every: 2,
        tensorboard: true,
        device: tch_cifar10::DeviceSpec::Cpu,
        ..Default::default()
    };
    let crashed = std::panic::catch_unwind(|| tch_cifar10::run_train(&cfg, &Default::default(), &mut CrashAfter(3), None));
    assert!(crashed.is_err(), "the run crashed");
    let opts = tch_cifar10::ResumeOptions { device: Some(tch_cifar10::DeviceSpec::Cpu), ..Default::default() };
    tch_cifar10::resume_train(&run, &opts, &mut tch_cifar10::MemoryReporter::default(), None)?;

    let Some(tb) = tensorboard_reads(&run)? else { return Ok(()) };
    assert_eq!(scalars(&tb, "."), expected(&run), "one value per step and tag, those of metrics.jsonl");
    Ok(())
}
