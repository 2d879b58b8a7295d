//! Link settings for the libtorch named by `LIBTORCH` (see `.cargo/config.toml`), and the CUDA
//! shim.
//!
//! * An rpath to `$LIBTORCH/lib`, so the binary runs without `LD_LIBRARY_PATH`.
//! * `TCH_CIFAR10_LIBTORCH_DIR`: that libtorch (empty without `LIBTORCH`); `src/cuda.rs` looks
//!   for `libtorch_cuda.so` in its `lib` when the rpath does not find it. The binary does not
//!   link that library (the default `--as-needed` drops it, as nothing calls it directly): it is
//!   `dlopen`ed at run time where an NVIDIA driver is present, which saves about 350 MB of
//!   memory on machines without one.
//! * `TCH_CIFAR10_LIBTORCH_VERSION`: the version of that libtorch, for `tch-cifar10 info`.
//! * The CUDA shim (`csrc/cuda_shim.cpp`: CUDA graphs, streams, cuDNN switches; see
//!   `src/cuda_graph.rs`), compiled as its own shared library `libtch_cifar10_cuda.so` into
//!   `OUT_DIR` and copied next to the binary (`target/<profile>/`), only where libtorch has its
//!   CUDA library (`lib/libtorch_cuda.so`, `lib/libc10_cuda.so`) and the CUDA headers are found
//!   (see [`cuda_includes`]). Otherwise a cargo warning says what is missing, and the binary
//!   builds without it. `TCH_CIFAR10_CUDA_SHIM_BUILT` is the shim's path in `OUT_DIR`, or empty;
//!   `TCH_CIFAR10_CUDA_SHIM_SKIPPED` says why it was not built (empty when it was).
//! * The ops shim (`csrc/ops.cpp`: `add_` with `alpha`, `addcmul_`/`addcdiv_` with `value`, a
//!   gradient set to None; see `src/ops.rs`), compiled against libtorch's headers into a
//!   static library linked into the crate. It is required: without `LIBTORCH` the build stops
//!   with a message.

use std::path::{Path, PathBuf};

/// The shim's source and the name of the library it becomes.
const SHIM_SOURCE: &str = "csrc/cuda_shim.cpp";
const SHIM_LIBRARY: &str = "libtch_cifar10_cuda.so";
/// The ops shim (linked statically, CPU and CUDA alike).
const OPS_SOURCE: &str = "csrc/ops.cpp";
/// Extra CUDA include folders (`:`-separated), for a libtorch that is not the PyPI wheel that
/// `scripts/setup-libtorch` installs (for example a libtorch zip with a CUDA toolkit's
/// `include`, which holds `cuda_runtime_api.h`, `crt/host_config.h` and `nv/target`).
const INCLUDE_ENV: &str = "TCH_CIFAR10_CUDA_INCLUDE";

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed={INCLUDE_ENV}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={SHIM_SOURCE}");
    println!("cargo:rerun-if-changed={OPS_SOURCE}");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        panic!("LIBTORCH is not set: the ops shim ({OPS_SOURCE}) needs libtorch's headers (run scripts/setup-libtorch, or set LIBTORCH)");
    };
    build_ops(&libtorch);
    let version = std::fs::read_to_string(libtorch.join("version.py"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("__version__ = '").map(|v| v.trim_end_matches('\'').to_string())))
        .or_else(|| std::fs::read_to_string(libtorch.join("build-version")).ok().map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=TCH_CIFAR10_LIBTORCH_VERSION={version}");
    println!("cargo:rustc-env=TCH_CIFAR10_LIBTORCH_DIR={}", libtorch.display());
    let lib = libtorch.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    match build_shim(&libtorch) {
        Ok(path) => {
            println!("cargo:rustc-env=TCH_CIFAR10_CUDA_SHIM_BUILT={}", path.display());
            println!("cargo:rustc-env=TCH_CIFAR10_CUDA_SHIM_SKIPPED=");
        }
        Err(why) => shim_not_built(&why),
    }
}

/// Compiles `csrc/ops.cpp` against `libtorch`'s headers into a static library that cargo links
/// into the crate (its symbols resolve against libtorch_cpu and c10, which tch links).
fn build_ops(libtorch: &Path) {
    cc::Build::new()
        .cpp(true)
        .file(OPS_SOURCE)
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .opt_level(2)
        .warnings(false)
        .compile("tch_cifar10_ops");
}

/// Records (and warns) that the shim was not built, and why.
fn shim_not_built(why: &str) {
    let why = why.replace(['\n', '\r'], " ");
    println!("cargo:warning=CUDA shim ({SHIM_LIBRARY}) not built: {why}; training on CUDA will not use CUDA graphs");
    println!("cargo:rustc-env=TCH_CIFAR10_CUDA_SHIM_BUILT=");
    println!("cargo:rustc-env=TCH_CIFAR10_CUDA_SHIM_SKIPPED={why}");
}

/// The CUDA include folders the shim needs: `cuda_runtime_api.h` (the wheel's
/// `site-packages/nvidia/cu13/include`), `crt/host_config.h` and `nv/target` (which the wheel
/// lacks: `scripts/setup-libtorch` installs them from the `nvidia-cuda-crt` and
/// `nvidia-cuda-cccl` packages into `<venv>/cuda-headers/nvidia/cu13/include`), plus any in
/// `TCH_CIFAR10_CUDA_INCLUDE`.
///
/// # Errors
/// Which header no candidate folder holds, and where it looked.
fn cuda_includes(libtorch: &Path) -> Result<Vec<PathBuf>, String> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os(INCLUDE_ENV).map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect()).unwrap_or_default();
    // A wheel: LIBTORCH is <venv>/lib/pythonX.Y/site-packages/torch.
    if let Ok(torch) = libtorch.canonicalize() {
        if let Some(site) = torch.parent() {
            dirs.push(site.join("nvidia/cu13/include"));
            if let Some(venv) = site.ancestors().nth(3).filter(|v| v.join("pyvenv.cfg").is_file()) {
                let headers = venv.join("cuda-headers");
                // Rebuild once scripts/setup-libtorch has installed them (a missing path is
                // always "changed", so the warning repeats until they are there).
                println!("cargo:rerun-if-changed={}", headers.join(".complete").display());
                dirs.push(headers.join("nvidia/cu13/include"));
            }
        }
    }
    let mut found = Vec::new();
    for header in ["cuda_runtime_api.h", "crt/host_config.h", "nv/target"] {
        match dirs.iter().find(|d| d.join(header).exists()) {
            Some(d) if !found.contains(d) => found.push(d.clone()),
            Some(_) => {}
            None => {
                let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
                return Err(format!(
                    "no CUDA header {header} (looked in {}); run scripts/setup-libtorch, or set {INCLUDE_ENV}",
                    if looked.is_empty() { "no folder".to_string() } else { looked.join(", ") }
                ));
            }
        }
    }
    Ok(found)
}

/// The CUDA runtime library to link (the shim's inline libtorch headers call it directly): the
/// wheel's `nvidia/cu13/lib/libcudart.so.13`, a libtorch zip's own `lib/libcudart-*.so*`, or
/// the `lib64`/`lib` beside a `TCH_CIFAR10_CUDA_INCLUDE` folder (a CUDA toolkit's). Returns its
/// folder and file name.
fn cudart(libtorch: &Path) -> Result<(PathBuf, String), String> {
    let mut dirs = Vec::new();
    if let Some(site) = libtorch.canonicalize().ok().and_then(|t| t.parent().map(Path::to_path_buf)) {
        dirs.push(site.join("nvidia/cu13/lib"));
    }
    dirs.push(libtorch.join("lib"));
    for include in std::env::var_os(INCLUDE_ENV).iter().flat_map(std::env::split_paths) {
        if let Some(root) = include.parent() {
            dirs.extend([root.join("lib64"), root.join("lib")]);
        }
    }
    for dir in &dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("libcudart") && n.contains(".so"))
            .collect();
        names.sort();
        if let Some(name) = names.into_iter().next() {
            return Ok((dir.clone(), name));
        }
    }
    Err(format!("no libcudart*.so* in {}", dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" or ")))
}

/// Compiles `csrc/cuda_shim.cpp` into `OUT_DIR/libtch_cifar10_cuda.so` and copies it next to the
/// binary. Returns the path in `OUT_DIR`.
///
/// # Errors
/// Why it was not built: no CUDA libtorch, missing headers, or the compiler's message.
fn build_shim(libtorch: &Path) -> Result<PathBuf, String> {
    let lib = libtorch.join("lib");
    for needed in ["libtorch_cuda.so", "libc10_cuda.so"] {
        if !lib.join(needed).is_file() {
            return Err(format!("{} has no {needed} (a CPU-only libtorch)", lib.display()));
        }
    }
    let includes = cuda_includes(libtorch)?;
    let (cudart_dir, cudart_name) = cudart(libtorch)?;
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let out = out_dir.join(SHIM_LIBRARY);
    // The C++ compiler cargo's target uses (CXX, CXXFLAGS, ...), with cc's target flags.
    let compiler = cc::Build::new().cpp(true).debug(false).opt_level(2).pic(true).try_get_compiler().map_err(|e| e.to_string())?;
    let mut cmd = compiler.to_command();
    cmd.args(["-std=c++17", "-shared", "-fvisibility=hidden", "-D_GLIBCXX_USE_CXX11_ABI=1", "-w"])
        .arg("-I")
        .arg(libtorch.join("include"))
        .arg("-I")
        .arg(libtorch.join("include/torch/csrc/api/include"));
    for dir in &includes {
        cmd.arg("-I").arg(dir);
    }
    cmd.arg(SHIM_SOURCE)
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-L{}", cudart_dir.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-ltorch_cuda", "-ltorch_cpu", "-lc10_cuda", "-lc10"])
        .arg(format!("-l:{cudart_name}"))
        .arg("-Wl,--no-undefined");
    let output = cmd.output().map_err(|e| format!("cannot run the C++ compiler {:?}: {e}", compiler.path()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).take(3).collect();
        let message = if first.is_empty() { "no message".to_string() } else { first.join(" | ") };
        return Err(format!("the C++ compiler {:?} failed ({}): {message}", compiler.path(), output.status));
    }
    copy_next_to_binary(&out_dir, &out);
    Ok(out)
}

/// Copies the shim to `target/<profile>/` (three folders above `OUT_DIR`, which is
/// `target/<profile>/build/<crate>-<hash>/out`), where `src/cuda_graph.rs` looks first, so the
/// binary and its shim can be copied together. A failure only warns: the binary also finds the
/// copy in `OUT_DIR`.
fn copy_next_to_binary(out_dir: &Path, shim: &Path) {
    let Some(profile_dir) = out_dir.ancestors().nth(3) else { return };
    let dest = profile_dir.join(SHIM_LIBRARY);
    let tmp = profile_dir.join(format!(".{SHIM_LIBRARY}.tmp"));
    if let Err(e) = std::fs::copy(shim, &tmp).and_then(|_| std::fs::rename(&tmp, &dest)) {
        let _ = std::fs::remove_file(&tmp);
        println!("cargo:warning=could not copy {} to {}: {e}", shim.display(), dest.display());
    }
}
