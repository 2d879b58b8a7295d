//! The built binary: exit status and messages for bad input, `info`, and the CUDA link.

mod common;

use std::process::{Command, Output};

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tch-cifar10")).args(args).output().expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn missing_data_directory_exits_1_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-data");
    let out_dir = tmp.path().join("run");
    let o = bin(&["train", "--data-dir", missing.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("error:") && err.contains(&missing.display().to_string()), "{err}");
    assert!(!out_dir.exists(), "no run directory is made for a run that cannot start");
}

#[test]
fn bad_flags_are_usage_errors() {
    for (args, needle) in [
        (&["train", "--batch-size", "0"][..], "batch-size"),
        (&["train", "--lr", "-1"], "lr"),
        (&["train", "--device", "tpu"], "auto, cpu, cuda, cuda:N"),
        (&["train", "--epochs", "many"], "--epochs"),
    ] {
        let o = bin(args);
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error() {
    let o = bin(&["info", "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    if info["cuda_devices"].as_i64() != Some(0) {
        return; // a machine with a GPU: nothing to check here
    }
    let tmp = common::synthetic_cifar(10, 5, 2);
    let o = bin(&["train", "--data-dir", tmp.path().to_str().unwrap(), "--device", "cuda", "--epochs", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("device cuda:0 is not available"), "{}", stderr(&o));
}

#[test]
fn trains_end_to_end_and_writes_the_run_directory() {
    let tmp = common::synthetic_cifar(50, 20, 2);
    let run = tmp.path().join("run");
    let o = bin(&[
        "train", "--data-dir", tmp.path().to_str().unwrap(), "--epochs", "1", "--batch-size", "10",
        "--device", "cpu", "--out", run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("Accuracy of the network on the 20 test images"), "{stdout}");
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["epochs"], 1);
    assert_eq!(cfg["batch_size"], 10);
}

/// The binary loads libtorch's CUDA library whenever the libtorch it was built with ships one
/// (otherwise it would silently never see a GPU); the cuDNN query answers only when it is loaded.
#[test]
fn links_libtorch_cuda_when_libtorch_ships_it() {
    let libtorch = std::path::PathBuf::from(env!("TCH_CIFAR10_LIBTORCH_DIR"));
    let ships_cuda = libtorch.join("lib/libtorch_cuda.so").exists();
    let o = bin(&["info", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["cuda_library_loaded"], ships_cuda, "{info}");
    assert_eq!(info["cudnn"].is_string(), ships_cuda, "{info}");
}
