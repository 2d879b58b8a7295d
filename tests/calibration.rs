//! Calibration figures of `eval`: the ECE equals torchmetrics' `MulticlassCalibrationError(n_bins=15,
//! norm="l1")` on the same logits (the venv's Python), and `eval` reports them as text, JSON and
//! a reliability diagram. Synthetic data.

mod common;

use std::process::Command;

use tch::{Kind, Tensor};
use tch_cifar10::eval::calibration::calibration;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn ece_matches_torchmetrics() -> TestResult {
    let Some(py) = common::venv::python_or_skip("ece_matches_torchmetrics", "torch, torchmetrics") else { return Ok(()) };
    tch::manual_seed(3);
    for (n, k, scale) in [(2000i64, 10i64, 3.0), (500, 3, 1.0), (100, 10, 8.0)] {
        let logits = Tensor::randn([n, k], (Kind::Float, tch::Device::Cpu)) * scale;
        let labels = Tensor::randint(k, [n], (Kind::Int64, tch::Device::Cpu));
        // Make the model right more often than chance: the label's logit raised on half the images.
        let boost = Tensor::rand([n], (Kind::Float, tch::Device::Cpu)).lt(0.5).to_kind(Kind::Float) * 2.0;
        let logits = logits.scatter_add(1, &labels.unsqueeze(1), &boost.unsqueeze(1));
        let ours = calibration(&logits, &labels);
        let rows: Vec<Vec<f32>> = (0..n).map(|i| Vec::<f32>::try_from(logits.get(i)).unwrap()).collect();
        let json = serde_json::json!({ "logits": rows, "labels": Vec::<i64>::try_from(&labels)? });
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), serde_json::to_vec(&json)?)?;
        let theirs: f64 = common::venv::run_script(&py, "calibration_error.py", &[file.path().as_os_str()]).trim().parse()?;
        // torchmetrics works in float32; we in float64 from the same float32 logits.
        assert!((ours.ece - theirs).abs() < 1e-5, "n {n}, k {k}: ours {} torchmetrics {theirs}", ours.ece);
        assert!(ours.ece > 0.005, "a test that cannot fail: ECE {}", ours.ece);
    }
    Ok(())
}

#[test]
fn eval_reports_calibration_and_draws_the_reliability_diagram() -> TestResult {
    let data = common::synthetic_cifar(120, 45, 3);
    let out = tempfile::tempdir()?;
    let bin = env!("CARGO_BIN_EXE_tch-cifar10");
    let run = out.path().join("run");
    let o = Command::new(bin)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .args(["-q", "train", "--epochs", "1", "--batch-size", "10", "--seed", "3", "--device", "cpu", "--threads", "1", "--data-dir"])
        .arg(data.path())
        .arg("--out")
        .arg(&run)
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = out.path().join("reliability.png");
    let o = Command::new(bin)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .args(["eval", "--json", "--checkpoint"])
        .arg(&run)
        .arg("--reliability-png")
        .arg(&png)
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let cal = &json["calibration"];
    let bins = cal["bins"].as_array().unwrap();
    assert_eq!(bins.len(), 15);
    assert_eq!(bins.iter().map(|b| b["images"].as_u64().unwrap()).sum::<u64>(), 45);
    // ECE recomputed from the bins: sum of |acc - conf| weighted by the share of images.
    let ece: f64 = bins.iter().map(|b| b["images"].as_f64().unwrap() / 45.0 * (b["accuracy"].as_f64().unwrap() - b["confidence"].as_f64().unwrap()).abs()).sum();
    assert!((cal["ece"].as_f64().unwrap() - ece).abs() < 1e-12, "{cal}");
    // NLL over the whole set equals the loss when the whole set is one batch; here, close to it.
    assert!(cal["nll"].as_f64().unwrap() > 0.0 && cal["brier"].as_f64().unwrap() > 0.0);
    let img = image::open(&png)?;
    assert_eq!((img.width(), img.height()), tch_cifar10::report::chart::RELIABILITY_SIZE);
    Ok(())
}

/// Labels drawn from softmax(z) make z calibrated (T = 1); the logits s * z then fit T = s.
#[test]
fn the_fitted_temperature_recovers_a_logit_scale() {
    use tch_cifar10::eval::temperature::fit_temperature;
    tch::manual_seed(7);
    let z = Tensor::randn([20_000, 10], (Kind::Double, tch::Device::Cpu)) * 2.0;
    let labels = z.softmax(-1, Kind::Double).multinomial(1, true).squeeze_dim(1);
    for s in [0.5, 3.0] {
        let t = fit_temperature(&(&z * s), &labels);
        // The sampling noise of 20,000 labels moves the fit by about 1 %.
        assert!((t / s - 1.0).abs() < 0.05, "scale {s}: T = {t}");
    }
}

fn run_cli(args: &[std::ffi::OsString]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tch-cifar10")).env("OMP_WAIT_POLICY", "PASSIVE").args(args).output().unwrap()
}

/// `calibrate` on a run with a validation split: T stored in the model file; eval and predict
/// apply it (argmax unchanged), --no-temperature shows the raw logits; export refuses to drop it
/// silently; a model with its logits scaled by 4 fits 4 T. Without a validation split: a named
/// error, and the model file is left as it was.
#[test]
fn calibrate_stores_the_temperature_that_eval_predict_and_export_respect() -> TestResult {
    use tch_cifar10::{calibrate::*, checkpoint::model_file, eval::*};
    let data = common::synthetic_cifar(300, 60, 3);
    let out = tempfile::tempdir()?;
    let run = out.path().join("run");
    let os = |s: &str| std::ffi::OsString::from(s);
    let train = |dir: &std::path::Path, val: &str| {
        run_cli(&[
            os("-q"), os("train"), os("--epochs"), os("1"), os("--batch-size"), os("10"), os("--seed"), os("3"),
            os("--device"), os("cpu"), os("--threads"), os("1"), os("--val-size"), os(val), os("--data-dir"), data.path().into(),
            os("--out"), dir.into(),
        ])
    };
    let o = train(&run, "60");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = run.join("model.safetensors");
    let raw = run_eval(&EvalOptions::new(&run))?;
    assert_eq!(raw.temperature, None);

    let opts = CalibrateOptions { eval: EvalOptions::new(&run), val_size: None, seed: None, out: None };
    let report = run_calibrate(&opts)?;
    let t = report.temperature;
    // One epoch at the tutorial's rate: a model right on some validation images only, so the
    // NLL has its minimum inside the searched range.
    assert!(report.validation.accuracy < 1.0 && t > 0.02 && t < 50.0, "{report:?}");
    assert_eq!(model_file::read_model_file(&model)?.temperature, Some(t));
    assert_eq!(report.test.accuracy, raw.accuracy);
    assert_eq!((report.validation.images, report.test.images), (60, 60));
    assert!(report.validation.after.nll <= report.validation.before.nll, "{report:?}");

    // eval applies T: the same accuracy and confusion, the NLL of logits / T; --no-temperature: raw.
    let scaled = run_eval(&EvalOptions::new(&run))?;
    assert_eq!((scaled.temperature, scaled.accuracy, scaled.confusion.rows()), (Some(t), raw.accuracy, raw.confusion.rows()));
    assert!((scaled.calibration.nll - report.test.after.nll).abs() < 1e-9);
    let unscaled = run_eval(&EvalOptions { no_temperature: true, ..EvalOptions::new(&run) })?;
    assert_eq!((unscaled.temperature, unscaled.loss), (None, raw.loss));

    // predict: the same top class, the probabilities of logits / T.
    let png = out.path().join("img.png");
    common::images::record_image(&common::learnable_records(1, 3, 9)[0]).save(&png)?;
    let predict = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![os("predict"), os("--json"), os("--top-k"), os("3"), os("--checkpoint"), model.clone().into(), png.clone().into()];
        args.extend(extra.iter().map(|s| os(s)));
        let o = run_cli(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let (with_t, without) = (predict(&[]), predict(&["--no-temperature"]));
    assert_eq!(with_t[0]["top"][0]["index"], without[0]["top"][0]["index"]);
    let p = |v: &serde_json::Value| v[0]["top"][0]["probability"].as_f64().unwrap();
    assert!((p(&with_t) - p(&without)).abs() > 1e-6, "the temperature changed nothing");

    // export refuses to drop T silently; --no-temperature exports the raw logits.
    let onnx = out.path().join("m.onnx");
    let o = run_cli(&[os("export"), os("--checkpoint"), run.clone().into(), os("--format"), os("onnx"), os("--out"), onnx.clone().into()]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("temperature") && stderr.contains("--no-temperature"), "{stderr}");
    assert!(!onnx.exists(), "nothing written");
    let o = run_cli(&[os("export"), os("--checkpoint"), run.clone().into(), os("--format"), os("onnx"), os("--out"), onnx.clone().into(), os("--no-temperature")]);
    assert!(o.status.success() && onnx.is_file(), "{}", String::from_utf8_lossy(&o.stderr));

    // fc3 times 4 (a power of two): the logits scale by 4, and the fit gives 4 T.
    let loaded = tch_cifar10::checkpoint::load_model(&model, tch::Device::Cpu)?;
    tch::no_grad(|| {
        for (name, p) in loaded.net.parameters() {
            if name.starts_with("fc3") {
                let _ = p.shallow_clone().g_mul_scalar_(4.0);
            }
        }
    });
    let times4 = out.path().join("times4.safetensors");
    model_file::save_model(&times4, &loaded.net, &loaded.classes)?;
    let e = EvalOptions { data_dir: Some(data.path().to_path_buf()), ..EvalOptions::new(&times4) };
    let r4 = run_calibrate(&CalibrateOptions { eval: e, val_size: Some(60), seed: Some(3), out: None })?;
    // 4 T to 1e-3 (not exactly: this one-epoch model's logits differ by a few hundredths between
    // classes, where the last bits of the forward pass move the fit by about 1e-4 of T).
    assert!((r4.temperature / t - 4.0).abs() < 4e-3, "{} vs 4 x {t}", r4.temperature);

    // No validation split: the error says how to get one, and nothing is written.
    let plain = out.path().join("plain");
    assert!(train(&plain, "0").status.success());
    let before = std::fs::read(plain.join("model.safetensors"))?;
    let err = run_calibrate(&CalibrateOptions { eval: EvalOptions::new(&plain), val_size: None, seed: None, out: None }).unwrap_err().to_string();
    assert!(err.contains("--val-size N") && err.contains("plain"), "{err}");
    assert_eq!(std::fs::read(plain.join("model.safetensors"))?, before);
    let o = run_cli(&[os("calibrate"), os("--checkpoint"), plain.clone().into()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("validation split"), "{}", String::from_utf8_lossy(&o.stderr));
    Ok(())
}
