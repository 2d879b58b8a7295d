//! Link settings for the libtorch named by `LIBTORCH` (see `.cargo/config.toml`).
//!
//! * An rpath to `$LIBTORCH/lib`, so the binary runs without `LD_LIBRARY_PATH`.
//! * `TCH_CIFAR10_LIBTORCH_DIR`: that libtorch (empty without `LIBTORCH`); `src/cuda.rs` looks
//!   for `libtorch_cuda.so` in its `lib` when the rpath does not find it. The binary does not
//!   link that library (the default `--as-needed` drops it, as nothing calls it directly): it is
//!   `dlopen`ed at run time where an NVIDIA driver is present, which saves about 350 MB of
//!   memory on machines without one.
//! * `TCH_CIFAR10_LIBTORCH_VERSION`: the version of that libtorch, for `tch-cifar10 info`.
//! * `$OUT_DIR/onnx_proto/`: Rust types for ONNX's protobuf messages, generated from the
//!   vendored `src/export/onnx.proto` by rust-protobuf's pure-Rust codegen (no `protoc`), for
//!   `export --format onnx` (see `src/export/onnx.rs`).

use std::path::PathBuf;

/// ONNX's schema, as released with onnx 1.23.2 (`onnx/onnx.proto` of its wheel).
const ONNX_PROTO: &str = "src/export/onnx.proto";

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={ONNX_PROTO}");
    protobuf_codegen::Codegen::new()
        .pure()
        .include("src/export")
        .input(ONNX_PROTO)
        .cargo_out_dir("onnx_proto")
        .run_from_script();
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        println!("cargo:rustc-env=TCH_CIFAR10_LIBTORCH_VERSION=unknown");
        println!("cargo:rustc-env=TCH_CIFAR10_LIBTORCH_DIR=");
        return;
    };
    let version = std::fs::read_to_string(libtorch.join("version.py"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("__version__ = '").map(|v| v.trim_end_matches('\'').to_string())))
        .or_else(|| std::fs::read_to_string(libtorch.join("build-version")).ok().map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=TCH_CIFAR10_LIBTORCH_VERSION={version}");
    println!("cargo:rustc-env=TCH_CIFAR10_LIBTORCH_DIR={}", libtorch.display());
    let lib = libtorch.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
