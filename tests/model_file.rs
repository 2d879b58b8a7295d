//! The model file: round trip, PyTorch's layout, atomic writes, and a clear error (never a
//! panic) for every kind of bad file. All data synthetic.

mod common;

use std::{collections::HashMap, path::Path};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_cifar10::{
    checkpoint::{
        load_model, load_model_with_classes,
        model_file::{read_model_file, CIFAR10_CLASS_NAMES},
        save_model, ClassSource, MODEL_FILE,
    },
    model::Net,
    DeviceSpec, Error, MemoryReporter, TrainConfig,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NAMES: [&str; 10] = [
    "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
    "fc3.weight", "fc3.bias",
];

fn seeded_net(seed: i64, classes: i64) -> (nn::VarStore, Net) {
    let _rng = tch_cifar10::rng::lock_global_rng();
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), classes);
    net.init_pytorch();
    (vs, net)
}

fn bits(t: &Tensor) -> Vec<u32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap().iter().map(|x| x.to_bits()).collect()
}

fn names(k: usize) -> Vec<String> {
    (0..k).map(|i| format!("c{i}")).collect()
}

/// A tensor's name, shape and dtype.
type Spec = (&'static str, Vec<usize>, Dtype);

/// A safetensors file holding zero-filled tensors as `tensors` describes them, and metadata.
fn write_raw(path: &Path, tensors: &[Spec], meta: Option<HashMap<String, String>>) {
    let data: Vec<Vec<u8>> =
        tensors.iter().map(|(_, s, d)| vec![0u8; s.iter().product::<usize>() * d.bitsize() / 8]).collect();
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .zip(&data)
        .map(|((n, s, d), bytes)| (*n, TensorView::new(*d, s.clone(), bytes).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, meta).unwrap()).unwrap();
}

/// The shapes of a Net with `k` outputs, in PyTorch order.
fn net_shapes(k: usize) -> Vec<Spec> {
    let shapes: [Vec<usize>; 10] = [
        vec![6, 3, 5, 5], vec![6], vec![16, 6, 5, 5], vec![16], vec![120, 400], vec![120], vec![84, 120], vec![84],
        vec![k, 84], vec![k],
    ];
    NAMES.iter().zip(shapes).map(|(n, s)| (*n, s, Dtype::F32)).collect()
}

/// The error's text, asserting it is a `BadModelFile` naming `path`.
fn bad_model_file(err: Error, path: &Path) -> String {
    let text = err.to_string();
    assert!(matches!(err, Error::BadModelFile { .. }), "expected BadModelFile, got {err:?}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    text
}

#[test]
fn round_trip_is_bit_exact_with_classes_and_version() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(MODEL_FILE);
    let (_vs, net) = seeded_net(3, 10);
    let classes = names(10);
    save_model(&path, &net, &classes)?;
    let loaded = load_model(&path, Device::Cpu)?;
    assert_eq!(loaded.classes, classes);
    assert_eq!(loaded.class_source, ClassSource::File);
    assert_eq!(loaded.written_by.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    for ((n, a), (m, b)) in net.parameters().iter().zip(loaded.net.parameters()) {
        assert_eq!((n, bits(a)), (&m, bits(b)));
    }
    let xs = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
    assert_eq!(bits(&net.forward(&xs)), bits(&loaded.net.forward(&xs)));
    Ok(())
}

#[test]
fn layout_is_pytorchs_state_dict() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("m.safetensors");
    let (_vs, net) = seeded_net(1, 4);
    save_model(&path, &net, &names(4))?;
    let bytes = std::fs::read(&path)?;
    let st = SafeTensors::deserialize(&bytes)?;
    let mut got: Vec<_> = st.names().into_iter().map(String::from).collect();
    got.sort();
    let mut want: Vec<_> = NAMES.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
    for (name, shape, _) in net_shapes(4) {
        let t = st.tensor(name)?;
        assert_eq!((t.dtype(), t.shape()), (Dtype::F32, &shape[..]), "{name}");
    }
    let (_, header) = SafeTensors::read_metadata(&bytes)?;
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta["format"], "pt");
    assert_eq!(meta["classes"], r#"["c0","c1","c2","c3"]"#);
    Ok(())
}

#[test]
fn saving_replaces_atomically_and_fails_cleanly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(MODEL_FILE);
    let (_vs, a) = seeded_net(1, 10);
    let (_vs2, b) = seeded_net(2, 10);
    save_model(&path, &a, &names(10))?;
    save_model(&path, &b, &names(10))?;
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 1, "no temporary file left behind");
    let loaded = load_model(&path, Device::Cpu)?;
    assert_eq!(bits(loaded.net.parameters()[0].1), bits(b.parameters()[0].1));

    // Wrong class count: nothing is written, the old file stays.
    let before = std::fs::read(&path)?;
    let err = save_model(&path, &a, &names(3)).unwrap_err();
    assert!(err.to_string().contains("classes"), "{err}");
    assert_eq!(std::fs::read(&path)?, before);
    // An unwritable place is an I/O error naming the file.
    let nowhere = dir.path().join("missing-dir").join(MODEL_FILE);
    let err = save_model(&nowhere, &a, &names(10)).unwrap_err();
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("missing-dir"), "{err}");
    Ok(())
}

#[test]
fn a_plain_pytorch_state_dict_gets_cifar10_names_or_the_callers() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state_dict.safetensors");
    write_raw(&path, &net_shapes(10), None);
    let loaded = load_model(&path, Device::Cpu)?;
    assert_eq!(loaded.classes, CIFAR10_CLASS_NAMES);
    assert_eq!((loaded.class_source, loaded.written_by), (ClassSource::Cifar10Default, None));

    let mine: Vec<String> = "plane car bird cat deer dog frog horse ship truck".split(' ').map(String::from).collect();
    let loaded = load_model_with_classes(&path, Device::Cpu, Some(&mine))?;
    assert_eq!((loaded.classes, loaded.class_source), (mine, ClassSource::User));

    let err = load_model_with_classes(&path, Device::Cpu, Some(&names(3))).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { field: "classes", .. }), "{err:?}");

    // Not 10 outputs and no names: the caller must name them.
    write_raw(&path, &net_shapes(7), None);
    let text = bad_model_file(load_model(&path, Device::Cpu).unwrap_err(), &path);
    assert!(text.contains("--classes") && text.contains("7 outputs"), "{text}");
    let loaded = load_model_with_classes(&path, Device::Cpu, Some(&names(7)))?;
    assert_eq!(loaded.net.parameters()[9].1.size(), [7]);
    Ok(())
}

#[test]
fn mismatched_files_are_named_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.safetensors");
    let mut cases: Vec<(&str, Vec<Spec>)> = Vec::new();
    cases.push(("missing tensor(s) fc3.bias", net_shapes(10)[..9].to_vec()));
    let mut extra = net_shapes(10);
    extra.push(("fc4.weight", vec![2, 2], Dtype::F32));
    cases.push(("unexpected tensor(s) fc4.weight", extra));
    let mut shape = net_shapes(10);
    shape[0].1 = vec![6, 3, 3, 3];
    cases.push(("tensor conv1.weight has shape [6, 3, 3, 3], expected [6, 3, 5, 5]", shape));
    let mut fc3 = net_shapes(10);
    fc3[9].1 = vec![9];
    cases.push(("tensor fc3.bias has shape [9], expected [10]", fc3));
    let mut dtype = net_shapes(10);
    dtype[4].2 = Dtype::I64;
    cases.push(("tensor fc1.weight has dtype I64, expected a floating-point dtype: F32 (float32), or F16, BF16 or F64", dtype));
    let mut dtype = net_shapes(10);
    dtype[9].2 = Dtype::BOOL;
    cases.push(("tensor fc3.bias has dtype BOOL, expected a floating-point dtype", dtype));
    cases.push(("fc3.weight has 1 output(s); a classifier needs at least 2", net_shapes(1)));
    for (want, tensors) in cases {
        write_raw(&path, &tensors, None);
        let text = bad_model_file(load_model(&path, Device::Cpu).unwrap_err(), &path);
        assert!(text.contains(want), "want {want:?} in {text}");
    }

    for (classes, want) in [("not json", "not a JSON array"), (r#"["a","b"]"#, "2 name(s)"), (r#"["a","","c","d","e","f","g","h","i","j"]"#, "blank")] {
        write_raw(&path, &net_shapes(10), Some(HashMap::from([("classes".to_string(), classes.to_string())])));
        let text = bad_model_file(load_model(&path, Device::Cpu).unwrap_err(), &path);
        assert!(text.contains(want), "want {want:?} in {text}");
    }
    Ok(())
}

#[test]
fn garbage_and_truncated_files_are_errors_not_panics() -> TestResult {
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("good.safetensors");
    let (_vs, net) = seeded_net(5, 10);
    save_model(&good, &net, &names(10))?;
    let bytes = std::fs::read(&good)?;
    let path = dir.path().join("bad.safetensors");

    std::fs::write(&path, b"this is not a model\n")?;
    let text = bad_model_file(load_model(&path, Device::Cpu).unwrap_err(), &path);
    assert!(text.contains("not a safetensors file"), "{text}");

    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    for cut in [0, 3, 8, 9, header_end / 2, header_end, header_end + 1, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut])?;
        bad_model_file(load_model(&path, Device::Cpu).unwrap_err(), &path);
    }
    // Flipped bytes anywhere in the header: an error or (a harmless flip in the JSON's spacing) a
    // good load, never a panic.
    let mut rng = common::Rng::new(9);
    for _ in 0..300 {
        let mut b = bytes.clone();
        let at = rng.below(header_end as u64) as usize;
        b[at] ^= 1 << rng.below(8);
        std::fs::write(&path, &b)?;
        if let Err(e) = load_model(&path, Device::Cpu) {
            bad_model_file(e, &path);
        }
    }
    let err = load_model(&dir.path().join("absent.safetensors"), Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("absent.safetensors"), "{err}");
    Ok(())
}

#[test]
fn files_that_are_no_model_file_say_what_they_look_like() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("model.pth");
    let cases: [(&[u8], &str); 7] = [
        (b"", "an empty file (0 bytes)"),
        (b"epoch,loss\n1,2.3\n", "text, starting \"epoch,loss\""),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "an image"),
        (b"\x1f\x8b\x08\0\0\0\0\0\0\x03abc", "gzip-compressed data"),
        (b"\x80\x04\x95\x10\0\0\0\0\0\0\0}\x94.", "a Python pickle"),
        (b"\x89HDF\r\n\x1a\n\0\0", "an HDF5 file"),
        (b"\x00\xff\x10\x20\x30\x40\x50\x60\x70\x80", "10 bytes of unrecognised binary data, starting 00 ff 10 20"),
    ];
    for (bytes, want) in cases {
        std::fs::write(&path, bytes)?;
        let text = bad_model_file(load_model(&path, Device::Cpu).unwrap_err(), &path);
        assert!(text.contains(want), "want {want:?} in {text}");
        assert!(text.contains("not a safetensors file nor a PyTorch torch.save archive"), "{text}");
        assert!(text.contains("torch.save(net.state_dict(), path)"), "what is accepted: {text}");
    }
    // A directory or a device is refused before a byte is read (safe_fs), naming the path.
    let err = load_model(dir.path(), Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("a directory"), "{err}");
    Ok(())
}

/// A safetensors file of `net`'s parameters as `kind` (no metadata), as PyTorch users save
/// half-precision or double weights.
fn write_as(path: &Path, net: &Net, kind: Kind) {
    let tensors: Vec<(String, Tensor)> = net.parameters().iter().map(|(n, t)| (n.to_string(), t.to_kind(kind))).collect();
    let dtype = match kind {
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Double => Dtype::F64,
        _ => Dtype::F32,
    };
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| {
            let mut bytes = vec![0u8; t.numel() * kind.elt_size_in_bytes()];
            t.copy_data_u8(&mut bytes, t.numel());
            bytes
        })
        .collect();
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .zip(&data)
        .map(|((n, t), b)| (n.as_str(), TensorView::new(dtype, t.size().iter().map(|&d| d as usize).collect(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None::<HashMap<String, String>>).unwrap()).unwrap();
}

#[test]
fn half_bfloat16_and_double_weights_are_cast_to_float32_as_pytorch_does() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_vs, net) = seeded_net(6, 10);
    let xs = Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu));
    for kind in [Kind::Half, Kind::BFloat16, Kind::Double] {
        let path = dir.path().join(format!("{kind:?}.safetensors"));
        write_as(&path, &net, kind);
        let loaded = load_model(&path, Device::Cpu)?;
        // load_state_dict's `param.copy_(stored)`: the stored values converted to float32.
        for ((n, a), (_, b)) in loaded.net.parameters().iter().zip(net.parameters()) {
            assert_eq!(a.kind(), Kind::Float);
            assert_eq!(bits(a), bits(&b.to_kind(kind).to_kind(Kind::Float)), "{kind:?} {n}");
        }
        let _ = loaded.net.forward(&xs);
    }
    // float64 holds every float32 exactly: the very same net.
    let loaded = load_model(&dir.path().join("Double.safetensors"), Device::Cpu)?;
    assert_eq!(bits(&loaded.net.forward(&xs)), bits(&net.forward(&xs)));
    Ok(())
}

/// `net` with `value` written at flat index `at` of parameter `param` (0-based, PyTorch order).
fn poisoned(dir: &Path, name: &str, param: usize, at: i64, value: f64) -> std::path::PathBuf {
    let (_vs, net) = seeded_net(7, 10);
    tch::no_grad(|| {
        let _ = net.parameters()[param].1.view(-1).get(at).fill_(value);
    });
    let path = dir.join(name);
    save_model(&path, &net, &names(10)).unwrap();
    path
}

#[test]
fn non_finite_weights_are_refused_by_read_eval_predict_and_finetune() -> TestResult {
    let dir = tempfile::tempdir()?;
    let nan = poisoned(dir.path(), "nan.safetensors", 6, 100, f64::NAN); // fc2.weight
    let inf = poisoned(dir.path(), "inf.safetensors", 1, 2, f64::NEG_INFINITY); // conv1.bias
    let text = bad_model_file(read_model_file(&nan).unwrap_err(), &nan);
    assert!(text.contains("tensor fc2.weight holds 1 NaN and 0 infinite value(s) (the first at flat index 100)"), "{text}");
    let text = bad_model_file(read_model_file(&inf).unwrap_err(), &inf);
    assert!(text.contains("tensor conv1.bias holds 0 NaN and 1 infinite value(s) (the first at flat index 2)"), "{text}");

    // Every command that loads a model stops with that error (exit 1), and writes no run.
    let data = common::synthetic_cifar(20, 10, 10);
    let img = dir.path().join("img.png");
    common::images::record_image(&common::learnable_records(1, 10, 1)[0]).save(&img)?;
    let (m, d, out) = (nan.to_str().unwrap(), data.path().to_str().unwrap(), dir.path().join("ft"));
    let runs: [&[&str]; 3] = [
        &["eval", "--checkpoint", m, "--data-dir", d],
        &["predict", "--checkpoint", m, img.to_str().unwrap()],
        &["finetune", "--from", m, "--data-dir", d, "--epochs", "1", "--out", out.to_str().unwrap()],
    ];
    for args in runs {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_tch-cifar10")).args(args).args(["--device", "cpu"]).output()?;
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(m) && stderr.contains("tensor fc2.weight holds 1 NaN"), "{args:?}: {stderr}");
    }
    assert!(!out.join(MODEL_FILE).exists(), "finetune wrote no model");
    Ok(())
}

#[test]
fn saving_the_same_net_twice_gives_the_same_bytes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_vs, net) = seeded_net(4, 5);
    let first = dir.path().join("a.safetensors");
    save_model(&first, &net, &names(5))?;
    let bytes = std::fs::read(&first)?;
    // Three metadata entries: a map written in hash order would differ within a few saves.
    for i in 0..20 {
        let again = dir.path().join(format!("{i}.safetensors"));
        save_model(&again, &net, &names(5))?;
        assert!(std::fs::read(&again)? == bytes, "save {i} differs from the first");
    }
    // Still a safetensors file, its header keys in sorted order.
    let header_len = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    assert_eq!(header_len % 8, 0);
    let header = std::str::from_utf8(&bytes[8..8 + header_len])?;
    let meta = header.find(r#""__metadata__":{"classes":"#).zip(header.find(r#""format":"pt","tch_cifar10_version":"#));
    assert!(meta.is_some_and(|(a, b)| a < b), "{header}");
    assert_eq!(read_model_file(&first)?.classes, Some(names(5)));
    Ok(())
}

#[test]
fn read_model_file_gives_tensors_in_pytorch_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(MODEL_FILE);
    let (_vs, net) = seeded_net(8, 3);
    save_model(&path, &net, &names(3))?;
    let file = read_model_file(&path)?;
    assert_eq!(file.outputs, 3);
    let got: Vec<_> = file.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(got, NAMES);
    Ok(())
}

#[test]
fn train_saves_the_final_model_in_the_run_directory() -> TestResult {
    let data = common::synthetic_cifar(60, 20, 3);
    let out = tempfile::tempdir()?;
    let cfg = TrainConfig {
        data_dir: data.path().to_path_buf(),
        epochs: 1,
        batch_size: 20,
        seed: 4,
        device: DeviceSpec::Cpu,
        threads: Some(1),
        out_dir: Some(out.path().join("run")),
        ..TrainConfig::default()
    };
    let run = tch_cifar10::run_train(&cfg, &Default::default(), &mut MemoryReporter::default(), None)?;
    let loaded = load_model(&run.run_dir.file(MODEL_FILE), Device::Cpu)?;
    assert_eq!(loaded.classes, common::class_names(3));
    for ((_, a), (_, b)) in run.outcome.net.parameters().iter().zip(loaded.net.parameters()) {
        assert_eq!(bits(a), bits(b));
    }
    Ok(())
}
