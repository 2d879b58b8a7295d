//! scripts/gpu-check, the one-shot GPU check, tried on the CPU with tiny synthetic data: its
//! runs finish, its one table and its JSON report come out, tch-cifar10 and the PyTorch programs
//! agree step for step (on the CPU, bit for bit), the shim's smoke test passes its CPU checks,
//! and no target is judged off a GPU. The GPU
//! figures themselves come only from a run on a CUDA machine.
//!
//! Needs the Python venv that scripts/setup-libtorch links as `.torch-venv` (or
//! `TCH_CIFAR10_PYTHON`); skipped with a message without it, except under CI (`CI=true`).

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

/// The Python with torch, torchvision and safetensors, or `None` after saying why not.
fn python_or_skip() -> Option<PathBuf> {
    let py = std::env::var_os("TCH_CIFAR10_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".torch-venv/bin/python"));
    let ok = py.exists()
        && Command::new(&py).args(["-c", "import torch, torchvision, safetensors"]).output().is_ok_and(|o| o.status.success());
    if ok {
        return Some(py);
    }
    let why = format!("no Python with torch, torchvision and safetensors at {} (scripts/setup-libtorch makes it)", py.display());
    assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "CI=true, so the gpu-check test must run: {why}");
    let _ = writeln!(std::io::stderr(), "SKIPPED gpu-check test: {why}");
    None
}

#[test]
fn gpu_check_runs_on_the_cpu_and_reports_one_table_and_json() {
    let Some(py) = python_or_skip() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("report.json");
    let o = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu-check"))
        .env("TCH_CIFAR10_PYTHON", &py)
        .env_remove("OUT")
        .args(["--bin", env!("CARGO_BIN_EXE_tch-cifar10"), "--device", "cpu", "--synthetic", "120", "--epochs", "1"])
        .args(["--threads", "1", "--seed", "5"])
        .arg("--work")
        .arg(tmp.path().join("work"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("scripts/gpu-check runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "gpu-check failed:\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    for needle in ["CUDA shim        not applicable", "tch-cifar10 eager", "PyTorch reference", "PyTorch resident", "target (issue 11)"] {
        assert!(stdout.contains(needle), "the table lacks {needle:?}:\n{stdout}");
    }
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for run in ["tch-eager", "pytorch-reference", "pytorch-resident"] {
        assert_eq!(r["runs"][run]["status"], "ok", "{run}: {:#}", r["runs"][run]);
        let s = r["runs"][run]["seconds"]["median"].as_f64().unwrap_or(0.0);
        assert!(s > 0.0, "{run} has no seconds per epoch: {:#}", r["runs"][run]);
    }
    // 120 images in batches of 100: 2 steps, identical on the CPU, as tests/parity.rs checks at length.
    for pair in ["eager-vs-reference", "resident-vs-reference"] {
        let p = &r["pairs"][pair];
        assert_eq!((p["steps"].as_u64(), p["identical_steps"].as_u64()), (Some(2), Some(2)), "{pair}: {p:#}");
        assert_eq!(p["largest_step_loss_diff"], 0.0, "{pair}: {p:#}");
        assert_eq!(p["params"]["differing"], 0, "{pair}: {p:#}");
        assert_eq!(p["test_acc_diff"], 0.0, "{pair}: {p:#}");
    }
    // Where the binary can run a graphed step, the CPU runs it eagerly: the same numbers.
    if r["config"]["cuda_graphs_flag"] == true {
        assert_eq!(r["runs"]["tch-graphed"]["status"], "ok", "{:#}", r["runs"]["tch-graphed"]);
        assert_eq!(r["pairs"]["graphed-vs-eager"]["largest_step_loss_diff"], 0.0, "{:#}", r["pairs"]);
    } else {
        assert_eq!(r["runs"]["tch-graphed"]["status"], "skipped", "{:#}", r["runs"]["tch-graphed"]);
    }
    // The shim, checked from PyTorch's process: its cuDNN switches, and its graph calls failing
    // cleanly without a GPU.
    let smoke = &r["shim_smoke"];
    if env!("TCH_CIFAR10_CUDA_SHIM_BUILT").is_empty() {
        assert_eq!(smoke["status"], "skipped", "{smoke:#}");
    } else {
        assert_eq!((&smoke["status"], &smoke["result"]["ok"]), (&"ok".into(), &true.into()), "{smoke:#}");
        assert_eq!(smoke["result"]["checks"]["cudnn_deterministic_seen_by_torch"], true, "{smoke:#}");
        assert!(stdout.contains("CUDA shim smoke test") && stdout.contains("checks passed"), "{stdout}");
    }
    let targets = r["targets"].as_array().unwrap();
    assert!(!targets.is_empty() && targets.iter().all(|t| t["met"].is_null()), "no target is judged on a CPU: {targets:#?}");
}

#[test]
fn gpu_check_names_a_missing_binary_or_data() {
    let Some(py) = python_or_skip() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu-check");
    let missing_bin = tmp.path().join("no-binary");
    let missing_data = tmp.path().join("no-data.tar.gz");
    for (args, needle) in [
        (vec!["--bin", missing_bin.to_str().unwrap()], format!("--bin {}", missing_bin.display())),
        (
            vec!["--bin", env!("CARGO_BIN_EXE_tch-cifar10"), "--device", "cpu", "--data", missing_data.to_str().unwrap()],
            format!("--data {}: no such file", missing_data.display()),
        ),
        (vec!["--epochs", "0"], "--epochs must be at least 1".to_string()),
    ] {
        let o = Command::new(&script).env("TCH_CIFAR10_PYTHON", &py).env_remove("OUT").args(&args).arg("--work").arg(tmp.path().join("w")).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&needle), "{args:?}: {err:?} lacks {needle:?}");
    }
}
