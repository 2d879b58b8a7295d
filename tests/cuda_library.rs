//! The binary loads libtorch's CUDA library at run time (src/cuda.rs): where an NVIDIA driver is
//! present, or when `TCH_CIFAR10_CUDA=1` forces it; never with `TCH_CIFAR10_CUDA=0`. `info`
//! says which happened and why. Checked through `tch-cifar10 info --json`, with the peak
//! resident memory of each run read from `wait4`.

use std::{
    io::Read,
    path::Path,
    process::{Command, Stdio},
};

use serde_json::Value;

/// Runs `tch-cifar10 info --json` with `TCH_CIFAR10_CUDA` set to `cuda` (or unset); returns the
/// exit success, stdout, stderr and the peak resident memory in KiB.
#[allow(clippy::zombie_processes)] // reaped by wait4 below
fn run_info(cuda: Option<&str>) -> (bool, String, String, i64) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tch-cifar10"));
    cmd.args(["info", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    match cuda {
        Some(v) => cmd.env("TCH_CIFAR10_CUDA", v),
        None => cmd.env_remove("TCH_CIFAR10_CUDA"),
    };
    let mut child = cmd.spawn().expect("the binary starts");
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    // Reap the child with wait4 (not Child::wait) to get its own peak RSS.
    let mut status = 0;
    // SAFETY: rusage is plain data, filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, out, err, usage.ru_maxrss)
}

fn info(cuda: Option<&str>) -> (Value, i64) {
    let (ok, out, err, rss) = run_info(cuda);
    assert!(ok, "info failed with TCH_CIFAR10_CUDA={cuda:?}: {err}");
    (serde_json::from_str(&out).expect("info --json prints JSON"), rss)
}

/// Whether this machine has an NVIDIA driver, by the same evidence src/cuda.rs uses.
fn driver_present() -> bool {
    if Path::new("/proc/driver/nvidia").exists() {
        return true;
    }
    // SAFETY: dlopen of the driver library, closed right away.
    let h = unsafe { libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
    if !h.is_null() {
        unsafe { libc::dlclose(h) };
    }
    !h.is_null()
}

/// Whether the libtorch this binary was built against ships the CUDA library.
fn libtorch_has_cuda() -> bool {
    let dir = env!("TCH_CIFAR10_LIBTORCH_DIR");
    !dir.is_empty() && Path::new(dir).join("lib/libtorch_cuda.so").exists()
}

fn reason(v: &Value) -> &str {
    v["cuda_library_reason"].as_str().expect("info has cuda_library_reason")
}

#[test]
fn default_loads_cuda_only_where_a_driver_is_present() {
    let (v, _) = info(None);
    if driver_present() && libtorch_has_cuda() {
        assert_eq!(v["cuda_library_loaded"], true, "{v}");
        assert!(reason(&v).contains("NVIDIA driver"), "{v}");
    } else {
        assert_eq!(v["cuda_library_loaded"], false, "{v}");
        assert!(v["cudnn"].is_null() && v["cuda_devices"] == 0, "{v}");
        if !driver_present() {
            assert!(reason(&v).contains("no NVIDIA driver") && reason(&v).contains("TCH_CIFAR10_CUDA=1"), "{v}");
        }
    }
}

#[test]
fn forced_load_answers_cudnn_and_costs_memory_that_the_default_saves() {
    let (forced, forced_rss) = info(Some("1"));
    let (off, off_rss) = info(Some("0"));
    assert_eq!(off["cuda_library_loaded"], false, "{off}");
    assert!(off["cudnn"].is_null(), "{off}");
    assert!(reason(&off).contains("TCH_CIFAR10_CUDA=0"), "{off}");
    if !libtorch_has_cuda() {
        eprintln!("this libtorch has no libtorch_cuda.so (a CPU build): only its failure to load is checked");
        assert_eq!(forced["cuda_library_loaded"], false, "{forced}");
        assert!(reason(&forced).contains("failed to load"), "{forced}");
        return;
    }
    assert_eq!(forced["cuda_library_loaded"], true, "{forced}");
    assert!(reason(&forced).contains("TCH_CIFAR10_CUDA=1"), "{forced}");
    let cudnn = forced["cudnn"].as_str().expect("cuDNN answers once the library is loaded");
    assert_eq!(cudnn.split('.').filter(|p| p.parse::<u32>().is_ok()).count(), 3, "{cudnn}");
    // Measured on the 2-core development machine: about 475 MB with the library, 120 MB without.
    assert!(
        forced_rss - off_rss > 150 * 1024,
        "loading libtorch_cuda should cost well over 150 MB: {forced_rss} KiB loaded vs {off_rss} KiB not"
    );
}

#[test]
fn a_bad_setting_is_an_error_naming_the_variable() {
    let (ok, _, err, _) = run_info(Some("maybe"));
    assert!(!ok);
    assert!(err.contains("TCH_CIFAR10_CUDA") && err.contains("maybe"), "{err}");
}

/// Where a GPU is visible (the library loaded as the binary loads it), normalising on CUDA gives
/// the CPU's values, which are the reference DataLoader's, for every byte.
#[test]
fn normalize_on_cuda_gives_the_cpu_values() {
    let load = tch_cifar10::cuda::load_cuda_library().expect("TCH_CIFAR10_CUDA is valid");
    if !tch::Cuda::is_available() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("SKIPPED normalize_on_cuda_gives_the_cpu_values: no CUDA device ({})\n", load.reason).as_bytes(),
        );
        return;
    }
    let bytes = tch::Tensor::from_slice(&(0..=255u8).collect::<Vec<_>>());
    let cpu = Vec::<f32>::try_from(tch_cifar10::data::normalize(&bytes)).unwrap();
    let cuda = tch_cifar10::data::normalize(&bytes.to_device(tch::Device::Cuda(0)));
    let cuda = Vec::<f32>::try_from(cuda.to_device(tch::Device::Cpu)).unwrap();
    let differ: Vec<usize> = (0..256).filter(|&i| cpu[i].to_bits() != cuda[i].to_bits()).collect();
    assert!(differ.is_empty(), "bytes normalised differently on CUDA: {differ:?}");
}
