//! PyTorch's own weights files (`torch.save(net.state_dict(), 'cifar_net.pth')`) load as the
//! same weights saved with safetensors do (the same logits, to the bit), through `eval`,
//! `predict` and `finetune --from` alike; float16, bfloat16 and float64 weights are cast to
//! float32 as `load_state_dict` casts them; everything else PyTorch users save is refused with
//! what it is. The files are made by tests/common/pth_files.py with the venv's torch (skipped
//! without it, except under `CI=true`).

mod common;

use std::{path::Path, process::Command};

use common::venv;
use tch::{nn::Module, Device, Kind, Tensor};
use tch_cifar10::{
    checkpoint::{load_model, model_file::read_model_file, ClassSource},
    model::Net,
    Error,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn bits(t: &Tensor) -> Vec<u32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap().iter().map(|x| x.to_bits()).collect()
}

/// A float32 tensor `name` of a safetensors file.
fn read_f32(path: &Path, name: &str) -> Tensor {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = st.tensor(name).unwrap();
    let values: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    Tensor::from_slice(&values).view(&view.shape().iter().map(|&d| d as i64).collect::<Vec<_>>()[..])
}

fn logits(net: &Net, xs: &Tensor) -> Tensor {
    tch::no_grad(|| net.forward(xs))
}

/// The error's text, asserting it is a `BadModelFile` naming `path`.
fn refused(path: &Path) -> String {
    let err = load_model(path, Device::Cpu).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::BadModelFile { .. }), "{}: expected BadModelFile, got {err:?}", path.display());
    assert!(text.contains(&path.display().to_string()), "{text}");
    text
}

/// The files of pth_files.py in a fresh folder, or `None` when the test is skipped.
fn files(test: &str) -> Option<tempfile::TempDir> {
    let py = venv::python_or_skip(test, "torch, safetensors")?;
    let dir = tempfile::tempdir().unwrap();
    venv::run_script(&py, "pth_files.py", &[dir.path().as_os_str()]);
    Some(dir)
}

#[test]
fn torch_save_files_load_as_their_safetensors_twins_and_refusals_say_what_a_file_is() -> TestResult {
    let Some(dir) = files("the torch.save test") else { return Ok(()) };
    let p = |name: &str| dir.path().join(name);
    let xs = read_f32(&p("logits.safetensors"), "input");
    let reference = load_model(&p("state_dict.safetensors"), Device::Cpu)?;
    let want = logits(&reference.net, &xs);
    // PyTorch's own logits for these weights, to float32 rounding of a different summation order.
    let pytorch = read_f32(&p("logits.safetensors"), "logits");
    assert!((&want - &pytorch).abs().max().double_value(&[]) <= 1e-6);

    // An OrderedDict with or without `_metadata`, a dict, pickle protocol 4, strided views.
    for name in ["state_dict.pth", "no_metadata.pth", "plain_dict.pth", "protocol4.pth", "strided.pth"] {
        let loaded = load_model(&p(name), Device::Cpu)?;
        assert_eq!(loaded.class_source, ClassSource::Cifar10Default, "{name}");
        assert_eq!(bits(&logits(&loaded.net, &xs)), bits(&want), "{name}");
        for ((n, a), (_, b)) in loaded.net.parameters().iter().zip(reference.net.parameters()) {
            assert_eq!(bits(a), bits(b), "{name}: {n}");
        }
    }

    // float16, bfloat16, float64, in either format: PyTorch's cast to float32, to the bit.
    for dtype in ["F16", "BF16", "F64"] {
        let want = logits(&load_model(&p(&format!("{dtype}_as_F32.safetensors")), Device::Cpu)?.net, &xs);
        for file in [format!("{dtype}.pth"), format!("{dtype}.safetensors")] {
            let model = read_model_file(&p(&file))?;
            assert!(model.tensors.iter().all(|(_, t)| t.kind() == Kind::Float), "{file}");
            let loaded = load_model(&p(&file), Device::Cpu)?;
            assert_eq!(bits(&logits(&loaded.net, &xs)), bits(&want), "{file}");
        }
    }

    // What each other file is, said in words, with what to do.
    let cases: [(&str, &[&str]); 13] = [
        ("module.pth", &["whole pickled module", "`__main__.Net`", "torch.save(net.state_dict(), path)"]),
        ("dataparallel.pth", &["missing tensor(s) conv1.weight", "unexpected tensor(s) module.conv1.bias", "prefix `module.`", "net.module.state_dict()"]),
        ("compiled.pth", &["prefix `_orig_mod.`", "torch.compile", "net._orig_mod.state_dict()", "k.removeprefix('_orig_mod.')"]),
        ("checkpoint.pth", &["prefix `model_state_dict.`", "torch.save(checkpoint['model_state_dict'], path)"]),
        ("torchscript.pt", &["TorchScript archive", "constants of the traced graph", "the model file it was exported from", "torch.jit.load(path).state_dict()"]),
        ("tensor.pth", &["holding a tensor, not a state_dict"]),
        ("legacy.pth", &["before 1.6", "save it again"]),
        ("pickle.pkl", &["a Python pickle", "not the zip archive torch.save writes"]),
        ("other.zip", &["a zip archive, but not one torch.save wrote", "no data.pkl", "notes/readme.txt"]),
        ("int64.pth", &["tensor fc1.bias has dtype I64, expected a floating-point dtype"]),
        ("nan.pth", &["tensor fc2.weight holds 1 NaN and 0 infinite value(s)", "flat index 365"]),
        ("overflow.pth", &["tensor fc1.bias holds 0 NaN and 1 infinite value(s) after the cast to float32", "flat index 0"]),
        ("logits.safetensors", &["missing tensor(s) conv1.weight", "unexpected tensor(s) input, logits"]),
    ];
    for (name, words) in cases {
        let text = refused(&p(name));
        for w in words {
            assert!(text.contains(w), "{name}: want {w:?} in {text}");
        }
    }
    // Every refusal says what is accepted when the file is not a model file at all.
    for name in ["legacy.pth", "pickle.pkl"] {
        assert!(refused(&p(name)).contains("torch.save(net.state_dict(), path)"), "{name}");
    }
    Ok(())
}

#[test]
fn eval_predict_and_finetune_take_a_pth_and_log_the_cast() -> TestResult {
    let Some(dir) = files("the torch.save command test") else { return Ok(()) };
    let data = common::synthetic_cifar(30, 20, 10);
    let bin = env!("CARGO_BIN_EXE_tch-cifar10");
    let image = dir.path().join("img.png");
    common::images::record_image(&common::learnable_records(1, 10, 3)[0]).save(&image)?;
    for model in ["state_dict.pth", "F16.pth"] {
        let model = dir.path().join(model);
        let out = dir.path().join(format!("ft-{}", model.file_stem().unwrap().to_string_lossy()));
        let (m, d, o) = (model.to_str().unwrap(), data.path().to_str().unwrap(), out.to_str().unwrap());
        let runs: [&[&str]; 3] = [
            &["eval", "--checkpoint", m, "--data-dir", d],
            &["predict", "--checkpoint", m, image.to_str().unwrap()],
            &["finetune", "--from", m, "--data-dir", d, "--epochs", "1", "--batch-size", "10", "--out", o],
        ];
        for args in runs {
            let o = Command::new(bin).args(args).args(["--device", "cpu"]).output()?;
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "{args:?}: {stderr}");
            let cast = format!("{m}: tensors stored as F16 cast to float32");
            assert_eq!(stderr.contains(&cast), m.ends_with("F16.pth"), "{args:?}: {stderr}");
        }
    }
    Ok(())
}

/// A `torch.save` archive whose `data.pkl` is 1 MB of MARK opcodes is refused before any
/// unpickler sees it, naming the file (made here with the `zip` crate, no Python needed).
#[test]
fn a_data_pkl_of_nested_marks_is_refused_before_decoding() -> TestResult {
    use std::io::Write;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bomb.pth");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path)?);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("bomb/data.pkl", opts)?;
    zip.write_all(&[b"\x80\x02".to_vec(), vec![b'('; 1_000_000]].concat())?;
    zip.start_file("bomb/version", opts)?;
    zip.write_all(b"3\n")?;
    zip.finish()?;
    let err = read_model_file(&path).err().expect("refused").to_string();
    assert!(err.contains("bomb.pth") && err.contains("data.pkl") && err.contains("more than 64 MARKs open at once"), "{err}");
    Ok(())
}
