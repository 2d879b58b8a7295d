//! `tch-cifar10 export`: the TorchScript file runs in libtorch (tch's `CModule::load`, the C++
//! loader) and in Python's `torch.jit.load`, the ONNX file passes `onnx.checker` and runs in
//! onnxruntime, both on batch sizes other than the traced one and with our logits (to 1e-6 and
//! 1e-5); and every bad input is an error naming the file or flag, leaving nothing behind.
//!
//! The Python half (scripts/dev/export_check.py, run with the `.torch-venv` Python that
//! scripts/setup-libtorch makes) is skipped with the reason printed when that Python lacks
//! torch, safetensors, onnx or onnxruntime, except when `CI=true`: then it fails.

mod common;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use tch::{nn, nn::Module, CModule, Device, Tensor};
use tch_cifar10::{
    checkpoint::save_model,
    export::{onnx, run_export, ExportFormat, ExportOptions},
    model::Net,
    Error,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Class names of the test model: 5 outputs, so that nothing can lean on CIFAR-10's 10.
fn class_names() -> Vec<String> {
    ["cat", "dog", "bird", "fish", "frog"].map(String::from).to_vec()
}

/// A 5-class Net with known weights: uniform in `+-2/sqrt(fan_in)` (twice PyTorch's initial
/// bound, so that logits are near 1 rather than 0.1, nearer a trained model's) from the tests'
/// SplitMix generator, not the global one.
fn known_net(seed: u64) -> (nn::VarStore, Net) {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), class_names().len() as i64);
    let mut rng = common::Rng::new(seed);
    tch::no_grad(|| {
        for pair in net.parameters().chunks(2) {
            let fan_in: i64 = pair[0].1.size()[1..].iter().product();
            let bound = 2.0 / (fan_in as f64).sqrt();
            for (_, p) in pair {
                let values = uniform(&mut rng, p.numel(), bound);
                p.shallow_clone().copy_(&Tensor::from_slice(&values).view(p.size().as_slice()));
            }
        }
    });
    (vs, net)
}

fn uniform(rng: &mut common::Rng, n: usize, bound: f64) -> Vec<f32> {
    (0..n).map(|_| ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * bound as f32).collect()
}

/// `batch` normalised images, values in [-1, 1).
fn images(batch: i64, seed: u64) -> Tensor {
    let mut rng = common::Rng::new(seed);
    Tensor::from_slice(&uniform(&mut rng, (batch * 3 * 32 * 32) as usize, 1.0)).view([batch, 3, 32, 32])
}

/// A run directory holding the known net's `model.safetensors`.
fn run_dir(dir: &Path) -> Result<(PathBuf, Net, nn::VarStore), Box<dyn std::error::Error>> {
    let (vs, net) = known_net(12);
    let run = dir.join("run");
    std::fs::create_dir(&run)?;
    save_model(&run.join("model.safetensors"), &net, &class_names())?;
    Ok((run, net, vs))
}

fn opts(checkpoint: &Path, format: ExportFormat, out: &Path) -> ExportOptions {
    ExportOptions { checkpoint: checkpoint.to_path_buf(), format, out: out.to_path_buf(), force: false, classes: None, no_temperature: false }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// The file names in `dir`, sorted (to see that a failed export left no temporary file).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn torchscript_runs_in_libtorch_on_any_batch_with_our_logits() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (run, net, _vs) = run_dir(dir.path())?;
    let out = dir.path().join("net.pt");
    let exported = run_export(&opts(&run, ExportFormat::Torchscript, &out))?;
    assert_eq!((exported.out.as_path(), exported.classes.clone()), (out.as_path(), class_names()));
    assert_eq!(exported.model_file, run.join("model.safetensors"));

    // The C++ loader (torch::jit::load, through tch), on batches other than the traced one.
    let module = CModule::load(&out)?;
    for batch in [1, 3, 7] {
        let xs = images(batch, batch as u64);
        let theirs = tch::no_grad(|| module.forward_ts(&[&xs]))?;
        let ours = tch::no_grad(|| net.forward(&xs));
        let diff = max_abs_diff(&ours, &theirs);
        eprintln!("libtorch CModule::load, batch {batch}: max |logit difference| = {diff:e}");
        assert!(diff <= 1e-6, "batch {batch}: {diff}");
    }
    assert_eq!(listing(dir.path()), ["net.pt", "run"]);
    Ok(())
}

/// The venv's Python, if it has what scripts/dev/export_check.py imports; else why not.
fn python() -> Result<PathBuf, String> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".torch-venv/bin/python");
    if !py.exists() {
        return Err(format!("{} not found (run scripts/setup-libtorch)", py.display()));
    }
    let out = Command::new(&py)
        .args(["-c", "import torch, safetensors, onnx, onnxruntime"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} lacks torch, safetensors, onnx or onnxruntime (run scripts/setup-libtorch): {}",
            py.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(py)
}

fn write_inputs(path: &Path, inputs: &[(&str, &Tensor)]) -> TestResult {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = inputs
        .iter()
        .map(|(name, t)| {
            let values = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
            let shape = t.size().iter().map(|&d| d as usize).collect();
            (name.to_string(), shape, values.iter().flat_map(|v| v.to_le_bytes()).collect())
        })
        .collect();
    let views = data
        .iter()
        .map(|(name, shape, bytes)| Ok((name.as_str(), TensorView::new(Dtype::F32, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    std::fs::write(path, safetensors::serialize(views, None::<HashMap<String, String>>)?)?;
    Ok(())
}

fn read_logits(path: &Path) -> Result<HashMap<String, Tensor>, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path)?;
    let st = SafeTensors::deserialize(&bytes)?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        assert_eq!(view.dtype(), Dtype::F32);
        let values: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        out.insert(name, Tensor::from_slice(&values).view(shape.as_slice()));
    }
    Ok(out)
}

#[test]
fn exports_run_in_pytorch_and_onnxruntime_with_our_logits() -> TestResult {
    let py = match python() {
        Ok(py) => py,
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => panic!("CI=true, so this must run: {reason}"),
        Err(reason) => {
            eprintln!("skipping the PyTorch / onnxruntime export test: {reason}");
            return Ok(());
        }
    };
    let dir = tempfile::tempdir()?;
    let (run, net, _vs) = run_dir(dir.path())?;
    let (pt, onnx_file) = (dir.path().join("net.pt"), dir.path().join("net.onnx"));
    run_export(&opts(&run, ExportFormat::Torchscript, &pt))?;
    // The model file itself, as eval and predict also take it.
    run_export(&opts(&run.join("model.safetensors"), ExportFormat::Onnx, &onnx_file))?;

    // Batches of 3 and 7: neither is the traced batch (2), and they differ from each other.
    let (x3, x7) = (images(3, 31), images(7, 71));
    let (input, logits) = (dir.path().join("input.safetensors"), dir.path().join("logits.safetensors"));
    write_inputs(&input, &[("x3", &x3), ("x7", &x7)])?;
    let out = Command::new(&py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dev/export_check.py"))
        .arg("--input").arg(&input)
        .arg("--logits-out").arg(&logits)
        .arg("--torchscript").arg(&pt)
        .arg("--onnx").arg(&onnx_file)
        .output()?;
    assert!(out.status.success(), "export_check.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let theirs = read_logits(&logits)?;

    for (name, xs) in [("x3", &x3), ("x7", &x7)] {
        let ours = tch::no_grad(|| net.forward(xs));
        let ts = max_abs_diff(&ours, &theirs[&format!("torchscript.{name}")]);
        let ort = max_abs_diff(&ours, &theirs[&format!("onnx.{name}")]);
        let scale = ours.abs().max().double_value(&[]);
        eprintln!("{name}: max |logit| {scale:.3}; max |logit difference|: torch.jit.load {ts:e}, onnxruntime {ort:e}");
        assert!(ts <= 1e-6, "TorchScript, {name}: {ts}");
        assert!(ort <= 1e-5, "ONNX, {name}: {ort}");
    }

    // What the ONNX file declares, as onnx reads it (check_model(full_check=True) passed).
    let o = &summary["onnx"];
    assert_eq!(o["opset"][""], onnx::OPSET);
    assert_eq!(o["ir_version"], onnx::IR_VERSION);
    assert_eq!(o["inputs"], serde_json::json!({"input": ["batch", 3, 32, 32]}));
    assert_eq!(o["outputs"], serde_json::json!({"logits": ["batch", 5]}));
    assert_eq!(
        o["ops"],
        serde_json::json!(["Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Relu", "Gemm", "Relu", "Gemm"])
    );
    let expected: serde_json::Map<String, serde_json::Value> =
        net.parameters().iter().map(|(n, t)| (n.to_string(), serde_json::json!(t.size()))).collect();
    assert_eq!(o["initializers"], serde_json::Value::Object(expected));
    let classes = serde_json::to_string(&class_names())?;
    assert_eq!(o["metadata"]["classes"], classes.as_str());
    assert_eq!(o["runtime_metadata"]["classes"], classes.as_str());
    // The traced graph runs the ops PyTorch's Net runs (nn.Conv2d traces to aten::_convolution too),
    // with the weights as constants.
    let ts = &summary["torchscript"];
    assert_eq!(
        ts["ops"],
        serde_json::json!([
            "aten::_convolution", "aten::relu", "aten::max_pool2d", "aten::_convolution", "aten::relu",
            "aten::max_pool2d", "aten::flatten", "aten::linear", "aten::relu", "aten::linear", "aten::relu", "aten::linear"
        ])
    );
    assert_eq!(ts["parameters"], 0);
    Ok(())
}

fn bin(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tch-cifar10")).args(args).output().expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cli_exports_and_prints_the_file_and_refuses_an_unknown_format() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (run, _net, _vs) = run_dir(dir.path())?;
    let out = dir.path().join("net.onnx");
    let o = bin(&["export".as_ref(), "--checkpoint".as_ref(), run.as_os_str(), "--format".as_ref(), "onnx".as_ref(), "--out".as_ref(), out.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8(o.stdout)?, format!("{}\n", out.display()));
    assert!(std::fs::metadata(&out)?.len() > 240_000, "the weights alone are 62006 float32");

    let other = dir.path().join("net.tflite");
    let o = bin(&["export".as_ref(), "--checkpoint".as_ref(), run.as_os_str(), "--format".as_ref(), "tflite".as_ref(), "--out".as_ref(), other.as_os_str()]);
    assert_eq!(o.status.code(), Some(2), "a usage error");
    let err = stderr(&o);
    assert!(err.contains("invalid value 'tflite' for '--format <FORMAT>'") && err.contains("[possible values: torchscript, onnx]"), "{err}");
    assert!(!other.exists());
    Ok(())
}

#[test]
fn a_missing_or_bad_checkpoint_is_an_error_naming_it_and_writes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("net.pt");
    let missing = dir.path().join("no-such-run");
    for format in [ExportFormat::Torchscript, ExportFormat::Onnx] {
        let err = run_export(&opts(&missing, format, &out)).unwrap_err();
        assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("no-such-run"), "{err}");
    }
    let bad = dir.path().join("notes.safetensors");
    std::fs::write(&bad, "not a model")?;
    let err = run_export(&opts(&bad, ExportFormat::Onnx, &out)).unwrap_err();
    assert!(matches!(err, Error::BadModelFile { .. }) && err.to_string().contains("notes.safetensors"), "{err}");
    assert_eq!(listing(dir.path()), ["notes.safetensors"], "nothing written, no temporary left");

    let o = bin(&["export".as_ref(), "--checkpoint".as_ref(), missing.as_os_str(), "--format".as_ref(), "onnx".as_ref(), "--out".as_ref(), out.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("export failed") && err.contains(&missing.display().to_string()), "{err}");
    Ok(())
}

#[test]
fn an_unwritable_out_is_an_error_naming_it_and_an_existing_one_needs_force() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (run, _net, _vs) = run_dir(dir.path())?;

    // A folder that does not exist, and a "folder" that is a file.
    let in_missing = dir.path().join("missing/net.onnx");
    let err = run_export(&opts(&run, ExportFormat::Onnx, &in_missing)).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing/net.onnx") && err.to_string().contains("cannot use the folder"), "{err}");
    let in_file = run.join("model.safetensors").join("net.pt");
    let err = run_export(&opts(&run, ExportFormat::Torchscript, &in_file)).unwrap_err();
    assert!(err.to_string().contains(&in_file.display().to_string()) && err.to_string().contains("is not a folder"), "{err}");
    // A directory.
    let err = run_export(&opts(&run, ExportFormat::Onnx, &run)).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { field: "out", .. }) && err.to_string().contains("directory"), "{err}");

    // An existing file stays as it was without --force, and is replaced whole with it.
    let out = dir.path().join("net.onnx");
    std::fs::write(&out, "keep me")?;
    for format in [ExportFormat::Torchscript, ExportFormat::Onnx] {
        let err = run_export(&opts(&run, format, &out)).unwrap_err();
        assert!(err.to_string().contains(&out.display().to_string()) && err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(&out)?, "keep me");
    }
    let o = bin(&["export".as_ref(), "--checkpoint".as_ref(), run.as_os_str(), "--format".as_ref(), "onnx".as_ref(), "--out".as_ref(), out.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("pass --force to replace it"), "{}", stderr(&o));
    run_export(&ExportOptions { force: true, ..opts(&run, ExportFormat::Onnx, &out) })?;
    assert!(std::fs::read(&out)?.len() > 240_000);
    assert_eq!(listing(dir.path()), ["net.onnx", "run"], "no temporary left");
    Ok(())
}

/// `--force` replaces a regular file only: a FIFO, a link and a folder at `--out` stay as they
/// are (run as root, `--out /dev/null` once turned the device into a regular file). The same
/// rule holds for every file the program writes over (`plot --out` here).
#[test]
fn force_replaces_only_a_regular_file() -> TestResult {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir()?;
    let (run, _net, _vs) = run_dir(dir.path())?;
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap())?;
    // SAFETY: a NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link)?;
    let line = r#"{"epoch":1,"lr":0.1,"train_loss":1,"train_acc":0.5,"test_loss":1,"test_acc":0.5,"seconds":1,"images_per_sec":1,"device":"cpu"}"#;
    std::fs::write(run.join("metrics.jsonl"), format!("{line}\n"))?;
    for (out, what) in [(&fifo, "a FIFO"), (&link, "a symbolic link")] {
        for format in [ExportFormat::Torchscript, ExportFormat::Onnx] {
            let err = run_export(&ExportOptions { force: true, ..opts(&run, format, out) }).unwrap_err().to_string();
            assert!(err.contains(&format!("this is {what}, which --force never replaces")), "{err}");
        }
        let o = Command::new(env!("CARGO_BIN_EXE_tch-cifar10")).arg("plot").arg(&run).arg("--out").arg(out).output()?;
        assert_eq!(o.status.code(), Some(1), "plot over {what}");
        assert!(stderr(&o).contains(&format!("this is {what}, not a regular file")), "{}", stderr(&o));
    }
    assert!(std::fs::symlink_metadata(&fifo)?.file_type().is_fifo(), "the FIFO is still a FIFO");
    assert!(std::fs::symlink_metadata(&link)?.file_type().is_symlink(), "the link is still a link");
    assert!(!dir.path().join("elsewhere").exists());
    Ok(())
}

/// A full disk during a TorchScript export (a 64 KiB tmpfs, mounted in a user and mount
/// namespace with `unshare`, so no root is needed) is an error naming `--out`, status 1, and
/// leaves nothing behind: no abort in libtorch, no `.NAME.tmp-*` folder. ONNX the same.
#[test]
fn a_full_disk_fails_cleanly_in_both_formats() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (run, _net, _vs) = run_dir(dir.path())?;
    let small = dir.path().join("small");
    std::fs::create_dir(&small)?;
    let bin = env!("CARGO_BIN_EXE_tch-cifar10");
    let probe = Command::new("unshare").args(["-rm", "sh", "-c"]).arg(format!("mount -t tmpfs -o size=64k tmpfs '{}'", small.display())).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot mount a small tmpfs with `unshare -rm` here (no user namespaces)");
        return Ok(());
    }
    for format in ["torchscript", "onnx"] {
        let script = format!(
            "mount -t tmpfs -o size=64k tmpfs '{s}' && '{bin}' export --checkpoint '{r}' --format {format} --out '{s}/net'; status=$?; ls -A '{s}'; exit $status",
            s = small.display(),
            r = run.display()
        );
        let o = Command::new("unshare").args(["-rm", "sh", "-c", &script]).env("OMP_WAIT_POLICY", "PASSIVE").output()?;
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{format}: {err}");
        assert!(err.contains("export failed") && err.contains("/small/net") && err.contains("No space left on device"), "{format}: {err}");
        assert!(!err.contains("terminate called"), "{err}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "", "{format}: nothing left in the full folder");
    }
    Ok(())
}
