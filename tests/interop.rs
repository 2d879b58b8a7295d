//! Weights between PyTorch and us, both directions (scripts/interop.py run with the Python that
//! scripts/setup-libtorch links as `.torch-venv`): our model file loads into the reference Python
//! `Net` with `load_state_dict(strict=True)`, a PyTorch `state_dict` saved with safetensors loads
//! into ours, and both sides give the same logits on the same input (to 1e-6).
//!
//! Without `.torch-venv` (or without torch and safetensors in it) the test is skipped with the
//! reason printed, except when `CI=true`: then it fails.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_cifar10::{
    checkpoint::{load_model, model_file::CIFAR10_CLASS_NAMES, save_model, ClassSource},
    model::Net,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The venv's Python, if it has torch and safetensors; else why not.
fn python() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = root.join(".torch-venv/bin/python");
    if !py.exists() {
        return Err(format!("{} not found (run scripts/setup-libtorch)", py.display()));
    }
    let out = Command::new(&py)
        .args(["-c", "import torch, safetensors.torch"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} lacks torch or safetensors (run scripts/setup-libtorch): {}",
            py.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(py)
}

fn script(py: &Path, args: &[&std::ffi::OsStr]) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/interop.py");
    let out = Command::new(py).arg(script).args(args).output()?;
    if !out.status.success() {
        return Err(format!("interop.py {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn write_tensor(path: &Path, name: &str, t: &Tensor) -> TestResult {
    let t = t.to_kind(Kind::Float).contiguous();
    let values = Vec::<f32>::try_from(t.flatten(0, -1))?;
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let shape = t.size().iter().map(|&d| d as usize).collect();
    let view = TensorView::new(Dtype::F32, shape, &data)?;
    std::fs::write(path, safetensors::serialize([(name, view)], None::<HashMap<String, String>>)?)?;
    Ok(())
}

fn read_tensor(path: &Path, name: &str) -> Result<Tensor, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path)?;
    let st = SafeTensors::deserialize(&bytes)?;
    let view = st.tensor(name)?;
    assert_eq!(view.dtype(), Dtype::F32);
    let values: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    Ok(Tensor::from_slice(&values).view(&shape[..]))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn weights_cross_both_ways_with_the_same_logits() -> TestResult {
    let py = match python() {
        Ok(py) => py,
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => panic!("CI=true, so this must run: {reason}"),
        Err(reason) => {
            eprintln!("skipping the PyTorch interop test: {reason}");
            return Ok(());
        }
    };
    let _rng = tch_cifar10::rng::lock_global_rng(); // this test seeds and draws from the global generator
    let dir = tempfile::tempdir()?;
    let path = |name: &str| dir.path().join(name);

    // A fixed input, normalised range, shared by both sides through a file.
    tch::manual_seed(41);
    let xs = Tensor::rand([5, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    write_tensor(&path("input.safetensors"), "input", &xs)?;
    let input = path("input.safetensors");

    // Ours -> PyTorch and PyTorch -> ours, in one run of the script (one torch start-up).
    tch::manual_seed(42);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), 10);
    net.init_pytorch();
    let classes: Vec<String> = (0..10).map(|i| format!("kind-{i}")).collect();
    save_model(&path("ours.safetensors"), &net, &classes)?;
    let (logits, exported) = (path("logits.safetensors"), path("pt.safetensors"));
    let summary = script(
        &py,
        &[
            "both".as_ref(), path("ours.safetensors").as_os_str(), exported.as_os_str(), "--seed".as_ref(), "7".as_ref(),
            "--input".as_ref(), input.as_os_str(), "--logits-out".as_ref(), logits.as_os_str(),
        ],
    )?;

    // Ours loaded with load_state_dict(strict=True) (the script fails otherwise): same logits,
    // class names carried in the metadata.
    assert_eq!(summary["load"]["classes"], serde_json::json!(classes));
    assert_eq!(summary["load"]["written_by"], env!("CARGO_PKG_VERSION"));
    let ours = tch::no_grad(|| net.forward(&xs));
    let theirs = read_tensor(&logits, "logits")?;
    assert_eq!(theirs.size(), [5, 10]);
    let diff = max_abs_diff(&ours, &theirs);
    assert!(diff <= 1e-6, "ours -> PyTorch: logits differ by {diff}");

    // A plain PyTorch state_dict (no metadata; 10 outputs, so CIFAR-10 class names): same logits.
    assert_eq!(summary["export"]["classes"], 10);
    let loaded = load_model(&exported, Device::Cpu)?;
    assert_eq!(loaded.class_source, ClassSource::Cifar10Default);
    assert_eq!(loaded.classes, CIFAR10_CLASS_NAMES.map(String::from));
    let ours = tch::no_grad(|| loaded.net.forward(&xs));
    let theirs = read_tensor(&logits, "exported")?;
    let diff = max_abs_diff(&ours, &theirs);
    assert!(diff <= 1e-6, "PyTorch -> ours: logits differ by {diff}");
    // And the weights are PyTorch's own draw: `torch.manual_seed(7); Net()` is our init with seed 7.
    tch::manual_seed(7);
    let vs7 = nn::VarStore::new(Device::Cpu);
    let net7 = Net::new(&vs7.root(), 10);
    net7.init_pytorch();
    for ((name, a), (_, b)) in net7.parameters().iter().zip(loaded.net.parameters()) {
        assert_eq!(max_abs_diff(a, b), 0.0, "{name}");
    }
    Ok(())
}
