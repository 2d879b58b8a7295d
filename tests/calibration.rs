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
