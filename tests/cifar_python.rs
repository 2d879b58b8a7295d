//! The CIFAR-10 python layout (`cifar-10-batches-py/`, what torchvision downloads): the same
//! images written as Python 2 pickles (as the official files are) and as Python 3 pickles
//! (protocols 2 to 5) load to exactly the tensors of the binary layout, and to what
//! torchvision's `CIFAR10` reads from those files; each malformed file is an error naming it.
//! The pickles are made by tests/common/cifar_python.py with the venv's numpy (skipped without
//! it, except under `CI=true`) from synthetic records.

mod common;

use std::{path::Path, process::Command};

use common::{class_names, learnable_records, venv, write_cifar_bin};
use safetensors::SafeTensors;
use tch::{Device, Tensor};
use tch_cifar10::{
    checkpoint::save_model,
    data::{cifar, cifar::Layout, Dataset},
    model::Net,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn bytes(t: &Tensor) -> Vec<u8> {
    Vec::<u8>::try_from(t.flatten(0, -1)).unwrap()
}

fn labels(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t).unwrap()
}

fn assert_same(a: &Dataset, b: &Dataset, what: &str) {
    assert_eq!((a.images.size(), a.images.kind()), (b.images.size(), b.images.kind()), "{what}");
    assert_eq!(bytes(&a.images), bytes(&b.images), "{what}: images");
    assert_eq!(labels(&a.labels), labels(&b.labels), "{what}: labels");
    assert_eq!(a.classes, b.classes, "{what}: classes");
}

/// A split as torchvision's `CIFAR10` gives it: `[N, 32, 32, 3]` image bytes (HWC), labels,
/// class names.
type TorchvisionSplit = (Vec<u8>, Vec<i64>, Vec<String>);

/// torchvision's view of a split, from the script's dump.
fn torchvision(path: &Path, split: &str) -> Result<TorchvisionSplit, Box<dyn std::error::Error>> {
    let file = std::fs::read(path)?;
    let st = SafeTensors::deserialize(&file)?;
    let data = st.tensor(&format!("{split}_data"))?.data().to_vec();
    let targets = st.tensor(&format!("{split}_targets"))?.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
    let (_, meta) = SafeTensors::read_metadata(&file)?;
    let classes = serde_json::from_str(&meta.metadata().as_ref().unwrap()["classes"])?;
    Ok((data, targets, classes))
}

#[test]
fn python_pickles_load_as_the_binary_files_and_as_torchvision_reads_them() -> TestResult {
    let Some(py) = venv::python_or_skip("the python-layout test", "numpy, torchvision, safetensors") else { return Ok(()) };
    let bin = tempfile::tempdir()?;
    // 23 training images over five files (5, 5, 5, 5, 3), 7 test images.
    let classes = class_names(10);
    write_cifar_bin(bin.path(), &learnable_records(23, 10, 5), &learnable_records(7, 10, 6), &classes);
    let (train, test) = cifar::load(bin.path())?;
    let out = tempfile::tempdir()?;
    venv::run_script(&py, "cifar_python.py", &["good".as_ref(), bin.path().as_os_str(), out.path().as_os_str()]);

    for style in ["py2", "py3-2", "py3-3", "py3-4", "py3-5"] {
        let root = out.path().join(style);
        let found = cifar::find(&root)?;
        assert_eq!((found.layout, found.dir.clone()), (Layout::Python, root.join("cifar-10-batches-py")), "{style}");
        let (tr, te) = cifar::load(&root)?;
        assert_same(&tr, &train, &format!("{style} train"));
        assert_same(&te, &test, &format!("{style} test"));
        // The folder itself is found too, and eval's test-only load agrees.
        assert_same(&cifar::load_test(&found.dir)?, &test, &format!("{style} load_test"));

        // torchvision's CIFAR10 on the same files: HWC images, the same bytes and labels.
        for (split, ours) in [("train", &tr), ("test", &te)] {
            let (data, targets, names) = torchvision(&root.join("torchvision.safetensors"), split)?;
            assert_eq!(data, bytes(&ours.images.permute([0, 2, 3, 1]).contiguous()), "{style} {split}: torchvision's images");
            assert_eq!(targets, labels(&ours.labels), "{style} {split}: torchvision's labels");
            assert_eq!(names, classes, "{style}: torchvision's classes");
        }
    }

    // With both layouts in one folder the binary one is read; the log says which was found.
    std::fs::rename(out.path().join("py2/cifar-10-batches-py"), bin.path().join("cifar-10-batches-py"))?;
    assert_eq!(cifar::find(bin.path())?.layout, Layout::Binary);
    let model = bin.path().join("model.safetensors");
    let vs = tch::nn::VarStore::new(Device::Cpu);
    save_model(&model, &Net::new(&vs.root(), 10), &classes)?;
    for (dir, says) in [(bin.path().to_path_buf(), "binary layout"), (bin.path().join("cifar-10-batches-py"), "python")] {
        let o = Command::new(env!("CARGO_BIN_EXE_tch-cifar10"))
            .args(["eval", "--device", "cpu", "--checkpoint"])
            .arg(&model)
            .arg("--data-dir")
            .arg(&dir)
            .output()?;
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{stderr}");
        assert!(stderr.contains(&format!("CIFAR-10 in the {says}")) && stderr.contains(&dir.display().to_string()), "{stderr}");
    }
    Ok(())
}

#[test]
fn each_malformed_python_file_is_an_error_naming_it() -> TestResult {
    let Some(py) = venv::python_or_skip("the python-layout error test", "numpy") else { return Ok(()) };
    let bin = tempfile::tempdir()?;
    write_cifar_bin(bin.path(), &learnable_records(25, 10, 1), &learnable_records(5, 10, 2), &class_names(10));
    let out = tempfile::tempdir()?;
    venv::run_script(&py, "cifar_python.py", &["bad".as_ref(), bin.path().as_os_str(), out.path().as_os_str()]);
    // Each case's file and the words its error must hold (from the defect the script made).
    let cases: [(&str, &str, &[&str]); 11] = [
        ("label_range", "test_batch", &["label 10 of image 2 is not below the 10 classes"]),
        ("float_data", "data_batch_2", &["shape [5, 3072]", "more than one byte", "expected uint8"]),
        ("wrong_shape", "data_batch_3", &["shape [5, 1024]", "expected uint8 of shape [N, 3072]"]),
        ("label_count", "data_batch_1", &["4 labels for 5 images"]),
        ("no_labels", "data_batch_4", &["no `labels` entry"]),
        ("labels_not_ints", "data_batch_4", &["label 0 is a str, expected an int"]),
        ("labels_array", "data_batch_3", &["`labels` is a numpy array; expected a list of 5 ints"]),
        ("no_label_names", "batches.meta", &["no `label_names` entry"]),
        ("one_class", "batches.meta", &["`label_names` has 1 names", "between 2 and 256"]),
        ("not_a_dict", "data_batch_5", &["holds a list, expected a dict"]),
        ("object_array", "data_batch_2", &["numpy array this reader does not understand"]),
    ];
    for (case, file, words) in cases {
        let root = out.path().join(case);
        let err = cifar::load(&root).unwrap_err().to_string();
        assert!(err.contains(&root.join("cifar-10-batches-py").join(file).display().to_string()), "{case}: {err}");
        for w in words {
            assert!(err.contains(w), "{case}: want {w:?} in {err}");
        }
    }

    // Not a pickle at all, and a missing file: named too.
    let dir = out.path().join("label_range/cifar-10-batches-py");
    std::fs::write(dir.join("test_batch"), b"\x00\x01 not a pickle")?;
    let err = cifar::load(&dir).unwrap_err().to_string();
    assert!(err.contains("test_batch") && err.contains("not a readable Python pickle"), "{err}");
    // 1 MB of MARK opcodes (4 GB of decoder stacks, unguarded): refused before decoding.
    std::fs::write(dir.join("test_batch"), [b"\x80\x02".to_vec(), vec![b'('; 1_000_000]].concat())?;
    let err = cifar::load(&dir).unwrap_err().to_string();
    assert!(err.contains("test_batch") && err.contains("more than 64 MARKs open at once"), "{err}");
    std::fs::remove_file(dir.join("test_batch"))?;
    let err = cifar::load(&dir).unwrap_err().to_string();
    assert!(err.contains("test_batch"), "{err}");
    Ok(())
}

#[test]
fn not_found_names_both_layouts() {
    let tmp = tempfile::tempdir().unwrap();
    let err = cifar::load(tmp.path()).unwrap_err().to_string();
    for want in [
        "data_batch_1.bin (binary layout",
        "data_batch_1 (python layout",
        &tmp.path().join("cifar-10-batches-bin").display().to_string(),
        &tmp.path().join("cifar-10-batches-py").display().to_string(),
        "cifar-10-binary.tar.gz",
        "cifar-10-python.tar.gz",
    ] {
        assert!(err.contains(want), "want {want:?} in {err}");
    }
}
