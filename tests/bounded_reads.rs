//! No file we read may make memory or time grow without bound: a link to `/dev/zero` (or a FIFO)
//! in place of `config.json`, `checkpoint.safetensors`, a model file, a `.bin` batch,
//! `batches.meta.txt` or `metrics.jsonl` is a prompt error naming the file, from the library and
//! from the binary as a user runs it. And an I/O error says its cause once.

mod common;

use std::{
    os::unix::fs::symlink,
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use tch_cifar10::{data::cifar, report::metrics, DeviceSpec, TrainConfig};

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tch-cifar10")).args(args).output().expect("the binary runs")
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `args`, expecting exit status 1 within a few seconds and a message naming `file` as a
/// device (what `/dev/zero` is). Returns stderr.
fn refuses_promptly(args: &[&str], file: &str) -> String {
    let t0 = Instant::now();
    let o = bin(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(t0.elapsed() < Duration::from_secs(60), "{args:?} took {:?}", t0.elapsed());
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.contains(file) && err.contains("not a regular file (a device)"), "{args:?}: {err}");
    err
}

fn make_fifo(path: &Path) {
    let c = std::ffi::CString::new(path_str(path)).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn cifar_files_that_are_devices_or_fifos_are_refused_at_once() {
    for name in ["batches.meta.txt", "data_batch_3.bin", "test_batch.bin"] {
        let data = common::synthetic_cifar(20, 10, 3);
        let file = data.path().join(cifar::SUBDIR).join(name);
        std::fs::remove_file(&file).unwrap();
        symlink("/dev/zero", &file).unwrap();
        let t0 = Instant::now();
        let err = cifar::load(data.path()).unwrap_err().to_string();
        assert!(t0.elapsed() < Duration::from_secs(5), "{name}: {:?}", t0.elapsed());
        assert!(err.contains(&file.display().to_string()) && err.contains("a device"), "{err}");

        // A FIFO with no writer: refused, not waited on.
        std::fs::remove_file(&file).unwrap();
        make_fifo(&file);
        let err = cifar::load(data.path()).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains("a FIFO"), "{err}");
    }
    // Through the binary, as a user would meet it.
    let data = common::synthetic_cifar(20, 10, 3);
    let meta = data.path().join(cifar::SUBDIR).join("batches.meta.txt");
    std::fs::remove_file(&meta).unwrap();
    symlink("/dev/zero", &meta).unwrap();
    let out = data.path().join("run");
    refuses_promptly(&["train", "--data-dir", path_str(data.path()), "--device", "cpu", "--out", path_str(&out)], "batches.meta.txt");
    assert!(!out.exists());
}

#[test]
fn a_batch_file_past_its_bound_is_refused_before_it_is_read() {
    let data = common::synthetic_cifar(20, 10, 3);
    let file = data.path().join(cifar::SUBDIR).join("data_batch_2.bin");
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    // A sparse file: a whole number of records, one record past the bound, no disk used.
    let records = tch_cifar10::safe_fs::MAX_CIFAR_BATCH_BYTES / common::RECORD as u64 + 1;
    f.set_len(records * common::RECORD as u64).unwrap();
    let err = cifar::load(data.path()).unwrap_err().to_string();
    assert!(err.contains("data_batch_2.bin") && err.contains("more than the 200000000 bytes"), "{err}");
}

/// A run folder that `--resume` would take: `config.json` for data in `data`.
fn run_folder(data: &Path) -> tempfile::TempDir {
    let run = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        data_dir: data.to_path_buf(),
        epochs: 1,
        batch_size: 10,
        device: DeviceSpec::Cpu,
        out_dir: Some(run.path().to_path_buf()),
        ..TrainConfig::default()
    };
    std::fs::write(run.path().join("config.json"), serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    run
}

#[test]
fn run_files_that_are_devices_are_refused_at_once() {
    let data = common::synthetic_cifar(20, 10, 3);

    // config.json
    let run = run_folder(data.path());
    let config = run.path().join("config.json");
    std::fs::remove_file(&config).unwrap();
    symlink("/dev/zero", &config).unwrap();
    refuses_promptly(&["train", "--resume", path_str(run.path())], "config.json");

    // checkpoint.safetensors, after a good config.json and data.
    let run = run_folder(data.path());
    let checkpoint = run.path().join("checkpoint.safetensors");
    symlink("/dev/zero", &checkpoint).unwrap();
    refuses_promptly(&["train", "--resume", path_str(run.path()), "--device", "cpu"], "checkpoint.safetensors");
    assert!(std::fs::symlink_metadata(&checkpoint).unwrap().file_type().is_symlink(), "nothing was overwritten");

    // A model file given to eval and predict.
    let model = run.path().join("model.safetensors");
    symlink("/dev/zero", &model).unwrap();
    refuses_promptly(&["eval", "--device", "cpu", "--checkpoint", path_str(&model), "--data-dir", path_str(data.path())], "model.safetensors");
    refuses_promptly(&["predict", "--device", "cpu", "--checkpoint", path_str(&model), "x.png"], "model.safetensors");

    // metrics.jsonl, read by plot (and by a resumed run).
    let metrics_file = run.path().join("metrics.jsonl");
    symlink("/dev/zero", &metrics_file).unwrap();
    let err = metrics::read_metrics(&metrics_file).unwrap_err().to_string();
    assert!(err.contains("metrics.jsonl") && err.contains("a device"), "{err}");
    let o = bin(&["plot", path_str(run.path())]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("metrics.jsonl") && err.contains("a device"), "{err}");
}

#[test]
fn an_io_error_says_its_cause_once() {
    // A folder where a file is expected: `Is a directory (os error 21)` was printed twice.
    let data = common::synthetic_cifar(20, 10, 3);
    let dir = tempfile::tempdir().unwrap();
    let steps = dir.path().join("steps.jsonl");
    std::fs::create_dir(&steps).unwrap();
    let out = dir.path().join("run");
    let o = bin(&[
        "train", "--data-dir", path_str(data.path()), "--device", "cpu", "--epochs", "1", "--batch-size", "10",
        "--out", path_str(&out), "--steps-jsonl", path_str(&steps),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&steps.display().to_string()), "{err}");
    assert_eq!(err.matches("os error 21").count(), 1, "{err}");

    // A folder without a model file or checkpoint: what it holds, and what was expected.
    let o = bin(&["predict", "--device", "cpu", "--checkpoint", path_str(dir.path()), "x.png"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("a run folder holding model.safetensors or checkpoint.safetensors; this folder holds no run"), "{err}");

    // An OS error proper: a run folder's config.json that is a folder.
    let run = tempfile::tempdir().unwrap();
    std::fs::create_dir(run.path().join("config.json")).unwrap();
    let o = bin(&["train", "--resume", path_str(run.path())]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("config.json") && err.matches("directory").count() == 1, "{err}");

    // A file where a folder is expected, read past the end: a cause from the OS.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let o = bin(&["eval", "--device", "cpu", "--checkpoint", path_str(&file.join("model.safetensors"))]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("os error 20").count(), 1, "{err}");
}
