//! The CUDA shim (`libtch_cifar10_cuda.so`, src/cuda_graph.rs): built by build.rs where
//! libtorch's CUDA library and the CUDA headers are; loaded only once libtorch's CUDA library is
//! (`TCH_CIFAR10_CUDA=1` loads that library without a GPU); its cuDNN switches are libtorch's
//! own; without a GPU its CUDA calls are errors, not crashes; every way of not loading it is
//! reported by `info`.
//!
//! This test binary loads libtorch's CUDA library into its own process (every test calls
//! [`forced`] first, which sets `TCH_CIFAR10_CUDA=1` once, before anything else reads the
//! environment); the "not loaded" cases run the binary in a child process.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use serde_json::Value;
use tch_cifar10::cuda_graph::{self, CudaGraph, CudaStream, ShimStatus, SHIM_ENV, SHIM_LIBRARY};

/// Loads libtorch's CUDA library into this process (once), as `TCH_CIFAR10_CUDA=1` makes the
/// binary do.
fn forced() -> &'static tch_cifar10::cuda::CudaLoad {
    static LOAD: OnceLock<&'static tch_cifar10::cuda::CudaLoad> = OnceLock::new();
    LOAD.get_or_init(|| {
        std::env::set_var(tch_cifar10::cuda::ENV, "1");
        std::env::remove_var(SHIM_ENV);
        tch_cifar10::cuda::load_cuda_library().expect("TCH_CIFAR10_CUDA=1 is valid")
    })
}

/// The libtorch this crate was built against, resolved.
fn libtorch() -> Option<PathBuf> {
    Some(env!("TCH_CIFAR10_LIBTORCH_DIR")).filter(|d| !d.is_empty()).and_then(|d| Path::new(d).canonicalize().ok())
}

fn libtorch_has_cuda() -> bool {
    libtorch().is_some_and(|d| d.join("lib/libtorch_cuda.so").is_file())
}

/// Whether scripts/setup-libtorch installed the CUDA headers next to this libtorch (a wheel in
/// `<venv>/lib/pythonX.Y/site-packages/torch`, headers in `<venv>/cuda-headers`).
fn headers_installed() -> bool {
    libtorch()
        .and_then(|t| t.ancestors().nth(4).map(|venv| venv.join("cuda-headers/.complete")))
        .is_some_and(|marker| marker.is_file())
}

/// `tch-cifar10 info --json` with `env` set (and `TCH_CIFAR10_CUDA_SHIM` removed unless given).
fn info(env: &[(&str, &str)]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tch-cifar10"));
    cmd.args(["info", "--json"]).env_remove(SHIM_ENV).env_remove("TCH_CIFAR10_CUDA");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("the binary runs");
    assert!(o.status.success(), "info failed with {env:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("info --json prints JSON")
}

fn shim_state(v: &Value) -> (&str, &str) {
    let s = &v["cuda_shim"];
    let state = s["state"].as_str().unwrap_or_else(|| panic!("info has cuda_shim.state: {v}"));
    (state, s["reason"].as_str().or(s["path"].as_str()).unwrap_or(""))
}

#[test]
fn the_shim_is_built_where_libtorch_has_cuda_and_the_headers_are() {
    forced();
    let built = env!("TCH_CIFAR10_CUDA_SHIM_BUILT");
    let skipped = env!("TCH_CIFAR10_CUDA_SHIM_SKIPPED");
    if !(libtorch_has_cuda() && headers_installed()) {
        eprintln!("this libtorch lacks the CUDA library or the headers: only the reason for not building is checked");
        assert!(built.is_empty() || Path::new(built).is_file());
        assert!(built.is_empty() != skipped.is_empty(), "built={built:?} skipped={skipped:?}");
        return;
    }
    assert!(skipped.is_empty(), "the shim should have been built here: {skipped}");
    assert!(Path::new(built).is_file(), "{built} missing");
    let beside_binary = Path::new(env!("CARGO_BIN_EXE_tch-cifar10")).with_file_name(SHIM_LIBRARY);
    assert!(beside_binary.is_file(), "build.rs copies the shim next to the binary: {} missing", beside_binary.display());
    assert_eq!(std::fs::read(built).unwrap(), std::fs::read(&beside_binary).unwrap(), "the copy is the built shim");
}

#[test]
fn the_shim_loads_with_the_cuda_library_and_its_cudnn_switches_are_libtorchs() {
    let load = forced();
    let status = cuda_graph::status();
    if !load.loaded {
        assert!(matches!(status, ShimStatus::NotApplicable { .. }), "{status:?}");
        assert!(cuda_graph::set_cudnn_deterministic(true).is_err());
        return;
    }
    if !env!("TCH_CIFAR10_CUDA_SHIM_SKIPPED").is_empty() {
        let ShimStatus::Missing { reason } = &status else { panic!("{status:?}") };
        assert!(reason.contains("not built"), "{reason}");
        let err = cuda_graph::set_cudnn_deterministic(true).unwrap_err().to_string();
        assert!(err.contains("set_cudnn_deterministic") && err.contains("not built"), "{err}");
        return;
    }
    assert!(matches!(status, ShimStatus::Loaded { .. }), "{status:?}");
    for on in [true, false, true] {
        cuda_graph::set_cudnn_deterministic(on).unwrap();
        assert_eq!(cuda_graph::cudnn_deterministic().unwrap(), on);
    }
    // Set through tch's own binding (torch-sys), read through the shim: one libtorch context.
    tch::Cuda::cudnn_set_benchmark(true);
    assert!(cuda_graph::cudnn_benchmark().unwrap());
    cuda_graph::set_cudnn_benchmark(false).unwrap();
    assert!(!cuda_graph::cudnn_benchmark().unwrap());
    cuda_graph::set_deterministic_algorithms(true, true).unwrap();
    assert!(cuda_graph::deterministic_algorithms().unwrap());
    cuda_graph::set_deterministic_algorithms(false, false).unwrap();
    assert!(!cuda_graph::deterministic_algorithms().unwrap());
}

/// Without a GPU every CUDA call of the shim is a libtorch error returned as a value (the C++
/// exception never crosses into Rust); with one, a captured graph replays its work.
#[test]
fn graphs_and_streams_work_on_a_gpu_and_are_errors_without_one() {
    forced();
    if !matches!(cuda_graph::status(), ShimStatus::Loaded { .. }) {
        assert!(CudaGraph::new().is_err() && CudaStream::from_pool(0).is_err());
        return;
    }
    if tch::Cuda::device_count() == 0 {
        for err in [
            CudaGraph::new().err().map(|e| e.to_string()),
            CudaStream::from_pool(0).err().map(|e| e.to_string()),
            CudaStream::current(0).err().map(|e| e.to_string()),
            cuda_graph::synchronize().err().map(|e| e.to_string()),
        ] {
            let err = err.expect("no GPU: the call fails");
            assert!(err.starts_with("CUDA shim: ") && err.contains("CUDA"), "{err}");
        }
        return;
    }
    // A GPU: capture `x += 1` on a side stream, replay it three times.
    let device = tch::Device::Cuda(0);
    let x = tch::Tensor::zeros([4], (tch::Kind::Float, device));
    let side = CudaStream::from_pool(0).unwrap();
    assert!(!side.is_default().unwrap());
    assert!(CudaStream::current(0).unwrap().is_default().unwrap());
    let mut graph = CudaGraph::new().unwrap();
    let mut x2 = x.shallow_clone();
    cuda_graph::capture(&mut graph, &side, cuda_graph::MempoolId::PRIVATE, || {
        let _ = x2.g_add_scalar_(1.0);
        Ok(())
    })
    .unwrap();
    assert_eq!(x.sum(tch::Kind::Float).double_value(&[]), 0.0, "capture records, it does not run");
    for _ in 0..3 {
        graph.replay().unwrap();
    }
    cuda_graph::synchronize().unwrap();
    assert_eq!(Vec::<f32>::try_from(x.to_device(tch::Device::Cpu)).unwrap(), vec![3.0; 4]);
    assert_ne!(graph.pool().unwrap(), cuda_graph::MempoolId::PRIVATE);
    // Capturing on the default stream is refused, as PyTorch refuses it.
    let default = CudaStream::current(0).unwrap();
    let mut g2 = CudaGraph::new().unwrap();
    let err = cuda_graph::capture(&mut g2, &default, cuda_graph::MempoolId::PRIVATE, || Ok(())).unwrap_err();
    assert!(err.to_string().contains("capture_begin"), "{err}");
}

#[test]
fn info_reports_not_applicable_without_the_cuda_library_and_never_opens_the_shim() {
    forced();
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join(SHIM_LIBRARY);
    std::fs::write(&broken, b"not a shared library").unwrap();
    // With the CUDA library off, even a broken shim named explicitly is not opened.
    let v = info(&[("TCH_CIFAR10_CUDA", "0"), (SHIM_ENV, broken.to_str().unwrap())]);
    assert_eq!(v["cuda_library_loaded"], false, "{v}");
    assert_eq!(shim_state(&v), ("not_applicable", "libtorch's CUDA library is not loaded"), "{v}");
    let o = Command::new(env!("CARGO_BIN_EXE_tch-cifar10")).arg("info").env("TCH_CIFAR10_CUDA", "0").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("CUDA shim        not applicable: libtorch's CUDA library is not loaded"), "{text}");
}

#[test]
fn info_says_where_the_shim_was_loaded_from_or_why_it_is_missing() {
    forced();
    if !libtorch_has_cuda() {
        let v = info(&[("TCH_CIFAR10_CUDA", "1")]);
        assert_eq!(shim_state(&v).0, "not_applicable", "{v}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let absent = tmp.path().join("nowhere").join(SHIM_LIBRARY);
    let broken = tmp.path().join(SHIM_LIBRARY);
    std::fs::write(&broken, b"not a shared library").unwrap();
    // A real library without the shim's functions: libtorch's own c10.
    let other = libtorch().unwrap().join("lib/libc10.so");
    let cases: [(&str, &str, &[&str]); 4] = [
        (absent.to_str().unwrap(), "missing", &[SHIM_ENV, "no such file", absent.to_str().unwrap()]),
        (broken.to_str().unwrap(), "missing", &["failed to load", broken.to_str().unwrap()]),
        (other.to_str().unwrap(), "missing", &["no symbol tcc_abi_version"]),
        ("0", "missing", &["TCH_CIFAR10_CUDA_SHIM=0 turns it off"]),
    ];
    for (shim, state, needles) in cases {
        let v = info(&[("TCH_CIFAR10_CUDA", "1"), (SHIM_ENV, shim)]);
        assert_eq!(v["cuda_library_loaded"], true, "{v}");
        let (got, reason) = shim_state(&v);
        assert_eq!(got, state, "{SHIM_ENV}={shim}: {v}");
        for n in needles {
            assert!(reason.contains(n), "{SHIM_ENV}={shim}: {reason:?} lacks {n:?}");
        }
    }
    // Unset: the copy next to the binary, when this build made one.
    let v = info(&[("TCH_CIFAR10_CUDA", "1")]);
    if env!("TCH_CIFAR10_CUDA_SHIM_BUILT").is_empty() {
        let (state, reason) = shim_state(&v);
        assert_eq!(state, "missing", "{v}");
        assert!(reason.contains("not built"), "{reason}");
    } else {
        let beside_binary = Path::new(env!("CARGO_BIN_EXE_tch-cifar10")).with_file_name(SHIM_LIBRARY);
        assert_eq!(shim_state(&v), ("loaded", beside_binary.to_str().unwrap()), "{v}");
    }
}
