//! `tch-cifar10 eval`: a trained run's model, reloaded, gives the figures the run reported, plus a
//! consistent confusion matrix, as text and JSON; bad inputs are named errors. Synthetic data.

mod common;

use std::process::Command;

use tch_cifar10::{
    data::cifar,
    config::Kernels,
    eval::{run_eval, EvalOptions},
    DatasetKind, DeviceSpec, MemoryReporter, TrainConfig,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Trains 2 epochs on a small learnable set with `classes` classes; returns (data, run dir, run).
fn trained(classes: u8) -> (tempfile::TempDir, tempfile::TempDir, tch_cifar10::TrainRun) {
    let data = common::synthetic_cifar(120, 45, classes);
    let out = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        data_dir: data.path().to_path_buf(),
        epochs: 2,
        batch_size: 10,
        learning_rate: 0.01,
        seed: 11,
        device: DeviceSpec::Cpu,
        threads: Some(1),
        out_dir: Some(out.path().join("run")),
        ..TrainConfig::default()
    };
    let run = tch_cifar10::run_train(&cfg, &Default::default(), &mut MemoryReporter::default(), None).unwrap();
    (data, out, run)
}

fn opts(checkpoint: &std::path::Path, data: &std::path::Path) -> EvalOptions {
    EvalOptions { data_dir: Some(data.to_path_buf()), ..EvalOptions::new(checkpoint) }
}

#[test]
fn eval_reproduces_the_runs_final_test_figures() -> TestResult {
    let (data, _out, run) = trained(3);
    let mut o = opts(run.run_dir.path(), data.path()); // a run directory finds model.safetensors
    o.batch_size = 10; // the run's batch size: the same batch means, so the same loss
    let report = run_eval(&o)?;
    let t = &run.outcome.test;
    assert_eq!((report.loss, report.accuracy, report.images), (t.loss, t.accuracy, t.images));
    assert_eq!(report.classes, common::class_names(3));
    // The confusion matrix agrees with the accuracies: 15 test images per class, diagonal hits.
    let rows = report.confusion.rows();
    assert_eq!(report.confusion.totals(), [15, 15, 15]);
    let hits: u64 = (0..3).map(|i| rows[i][i]).sum();
    assert_eq!(hits as f64 / 45.0, report.accuracy);
    for (i, c) in report.per_class.iter().enumerate() {
        assert_eq!((c.images, c.accuracy), (15, t.per_class_accuracy[i]));
        assert_eq!(c.accuracy, rows[i][i] as f64 / 15.0);
    }
    Ok(())
}

#[test]
fn cli_prints_text_and_json() -> TestResult {
    let (data, _out, run) = trained(3);
    let bin = env!("CARGO_BIN_EXE_tch-cifar10");
    let base = ["eval", "--device", "cpu", "--checkpoint"];
    let model = run.run_dir.file("model.safetensors");
    let out = Command::new(bin).args(base).arg(&model).arg("--data-dir").arg(data.path()).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout)?;
    for want in ["Accuracy of the network on the 45 test images", "Test loss", "Accuracy for class: class2", "Confusion matrix", "0 class0 |"] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    let out = Command::new(bin).args(base).arg(&model).arg("--data-dir").arg(data.path()).arg("--json").output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["images"], 45);
    assert_eq!(json["classes"], serde_json::json!(["class0", "class1", "class2"]));
    let confusion: Vec<Vec<u64>> = serde_json::from_value(json["confusion"].clone())?;
    assert_eq!(confusion.iter().map(|r| r.iter().sum::<u64>()).collect::<Vec<_>>(), [15, 15, 15]);
    assert_eq!(json["per_class"][1]["images"], 15);
    Ok(())
}

#[test]
fn mismatches_and_missing_files_are_named() -> TestResult {
    let (_data, _out, run) = trained(3);
    let other = common::synthetic_cifar(20, 8, 4);
    let err = run_eval(&opts(run.run_dir.path(), other.path())).unwrap_err().to_string();
    assert!(err.contains("model.safetensors") && err.contains("4 in") && err.contains("it has 3"), "{err}");

    let missing = run.run_dir.path().join("nope.safetensors");
    let err = run_eval(&opts(&missing, other.path())).unwrap_err().to_string();
    assert!(err.contains("nope.safetensors"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_tch-cifar10"))
        .args(["eval", "--device", "cpu", "--checkpoint"])
        .arg(&missing)
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("evaluation failed") && stderr.contains("nope.safetensors"), "{stderr}");
    Ok(())
}

#[test]
fn eval_needs_only_the_test_file_and_names_it_when_missing() -> TestResult {
    let (data, _out, run) = trained(3);
    let src = data.path().join(cifar::SUBDIR);
    let only_test = tempfile::tempdir()?;
    let dst = only_test.path().join(cifar::SUBDIR);
    std::fs::create_dir(&dst)?;
    for f in [cifar::TEST_FILE, cifar::META_FILE] {
        std::fs::copy(src.join(f), dst.join(f))?;
    }
    let full = run_eval(&opts(run.run_dir.path(), data.path()))?;
    let test_only = run_eval(&opts(run.run_dir.path(), only_test.path()))?;
    assert_eq!((test_only.loss, test_only.accuracy, test_only.images), (full.loss, full.accuracy, full.images));
    std::fs::remove_file(dst.join(cifar::TEST_FILE))?;
    let err = run_eval(&opts(run.run_dir.path(), only_test.path())).unwrap_err().to_string();
    assert!(err.contains("test_batch.bin") && err.contains("test_batch ("), "{err}");
    Ok(())
}

/// A model with finite weights whose logits overflow: `fc1` and `fc2` at +-1e20 give NaN
/// logits, and `fc3.bias` at +-3e38 finite logits with an infinite loss. `eval` and `predict`
/// refuse both (exit 1, naming the model file) instead of printing NaN or inf figures.
#[test]
fn overflowing_logits_are_an_error_in_eval_and_predict() -> TestResult {
    let (data, out, run) = trained(10);
    let model = run.run_dir.file("model.safetensors");
    let image = out.path().join("cat.png");
    image::RgbImage::from_pixel(32, 32, image::Rgb([120, 40, 200])).save(&image)?;
    let nan = |name: &str, t: tch::Tensor| if name == "fc1.weight" || name == "fc2.weight" { t.sign() * 1e20 } else { t };
    let inf = |name: &str, t: tch::Tensor| {
        if name == "fc3.bias" {
            let mut b = vec![-3e38f32; 10];
            b[0] = 3e38;
            tch::Tensor::from_slice(&b)
        } else {
            t
        }
    };
    let bin = env!("CARGO_BIN_EXE_tch-cifar10");
    for (name, edit, why) in [("nan", &nan as &dyn Fn(&str, tch::Tensor) -> tch::Tensor, "the test loss is NaN"), ("inf", &inf, "the test loss is inf")] {
        let edited: Vec<(String, tch::Tensor)> =
            tch::Tensor::read_safetensors(&model)?.into_iter().map(|(n, t)| { let t = edit(&n, t); (n, t) }).collect();
        let path = out.path().join(format!("{name}.safetensors"));
        tch::Tensor::write_safetensors(&edited, &path)?;
        assert!(edited.iter().all(|(_, t)| t.isfinite().all().int64_value(&[]) == 1), "the weights stay finite");
        let o = Command::new(bin).args(["eval", "--checkpoint"]).arg(&path).arg("--data-dir").arg(data.path()).output()?;
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(&format!("{name}.safetensors: the model's outputs are not finite ({why})")), "{stderr}");
        assert!(o.stdout.is_empty(), "no accuracy printed: {}", String::from_utf8_lossy(&o.stdout));
        if name == "nan" {
            let o = Command::new(bin).args(["predict", "--checkpoint"]).arg(&path).arg(&image).output()?;
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{stderr}");
            assert!(stderr.contains("outputs are not finite (NaN or infinite logits for") && stderr.contains("cat.png"), "{stderr}");
            assert!(!String::from_utf8_lossy(&o.stdout).contains("NaN"), "no NaN printed");
        }
    }
    Ok(())
}

/// A run trained on an image folder: `eval` of its run directory reads the same folder's test
/// split by itself (the run's config.json), and gives the run's own figures.
#[test]
fn eval_of_a_folder_run_reads_the_runs_folder() -> TestResult {
    let names = common::class_names(3);
    let data = common::images::synthetic_folder(60, 30, &names, "png");
    let out = tempfile::tempdir()?;
    let cfg = TrainConfig {
        data_dir: data.path().to_path_buf(),
        dataset: DatasetKind::Folder,
        epochs: 1,
        batch_size: 10,
        learning_rate: 0.01,
        seed: 5,
        device: DeviceSpec::Cpu,
        threads: Some(1),
        out_dir: Some(out.path().join("run")),
        ..TrainConfig::default()
    };
    let run = tch_cifar10::run_train(&cfg, &Default::default(), &mut MemoryReporter::default(), None)?;
    let o = EvalOptions { batch_size: 10, ..EvalOptions::new(run.run_dir.path()) };
    let report = run_eval(&o)?;
    let t = &run.outcome.test;
    assert_eq!((report.loss, report.accuracy, report.images), (t.loss, t.accuracy, 30));
    assert_eq!((report.dataset, report.data_dir.as_path()), (DatasetKind::Folder, data.path()));

    // The same from the command line, the flags given instead of the run's folder.
    let bin = env!("CARGO_BIN_EXE_tch-cifar10");
    let model = run.run_dir.file("model.safetensors");
    let out = Command::new(bin)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .args(["eval", "--device", "cpu", "--batch-size", "10", "--dataset", "folder", "--json", "--checkpoint"])
        .arg(&model)
        .arg("--data-dir")
        .arg(data.path())
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!((json["accuracy"].as_f64(), json["dataset"].as_str()), (Some(t.accuracy), Some("folder")));

    // --kernels fast (on the CPU, the crate's own kernels): the same function, rounded
    // differently: the same prediction for every image, the loss within rounding.
    let fast = run_eval(&EvalOptions { kernels: Kernels::Fast, ..o.clone() })?;
    assert_eq!(fast.confusion, report.confusion, "the same prediction for every image");
    assert_eq!(fast.accuracy, report.accuracy);
    assert!((fast.loss - report.loss).abs() < 1e-5, "{} vs {}", fast.loss, report.loss);
    assert_eq!(fast.kernels, Kernels::Fast);

    // A folder whose classes are not the model's: named, both sides.
    let other_names: Vec<String> = ["cat", "class1", "class2"].map(String::from).to_vec();
    let other = common::images::synthetic_folder(6, 6, &other_names, "png");
    let bad = EvalOptions { data_dir: Some(other.path().to_path_buf()), ..o.clone() };
    let err = run_eval(&bad).unwrap_err().to_string();
    assert!(err.contains("model.safetensors") && err.contains("\"cat\"") && err.contains("\"class0\""), "{err}");
    // A flag overrides the run's setting: no CIFAR-10 files in the image folder, and the error says what it looked for.
    let err = run_eval(&EvalOptions { dataset: Some(DatasetKind::Cifar10), ..o }).unwrap_err().to_string();
    assert!(err.contains("test_batch"), "{err}");
    Ok(())
}
