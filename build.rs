//! Link settings for the libtorch named by `LIBTORCH` (see `.cargo/config.toml`).
//!
//! * An rpath to `$LIBTORCH/lib`, so the binary runs without `LD_LIBRARY_PATH`.
//! * A forced link of `libtorch_cuda.so` when that libtorch ships it: the binary uses none of its
//!   symbols directly, so the default `--as-needed` drops it and libtorch then never sees a GPU.
//! * `TCH_CIFAR10_LIBTORCH_VERSION`: the version of that libtorch, for `tch-cifar10 info`.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
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
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
