//! Run-time loading of libtorch's CUDA library (`libtorch_cuda.so`).
//!
//! The binary does not link `libtorch_cuda.so` (nothing calls into it directly, so the linker's
//! `--as-needed` drops it). Loaded, it costs about 350 MB of resident memory and a tenth of a
//! second per start, which is wasted on a machine without a GPU. So `main` calls
//! [`load_cuda_library`] first thing: where an NVIDIA driver is present it `dlopen`s the library
//! with `RTLD_NOW | RTLD_GLOBAL`, whose static initialisers register libtorch's CUDA hooks;
//! libtorch then answers CUDA questions as if the library had been linked. libtorch caches its
//! answer to the first CUDA question, so nothing may ask it about CUDA before this call.
//!
//! `TCH_CIFAR10_CUDA` overrides the detection: `1` always loads the library, `0` never does,
//! `auto` (or unset) loads it when `/proc/driver/nvidia` exists or `libcuda.so.1` can be opened.

use std::{
    ffi::{CStr, CString},
    path::Path,
    sync::OnceLock,
};

use crate::error::{Error, Result};

/// The environment variable that overrides the detection.
pub const ENV: &str = "TCH_CIFAR10_CUDA";
/// The library loaded.
const LIBRARY: &str = "libtorch_cuda.so";

/// What [`load_cuda_library`] did, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaLoad {
    /// Whether `libtorch_cuda.so` is loaded into this process.
    pub loaded: bool,
    /// Why it was or was not loaded, for `info` and the logs.
    pub reason: String,
}

static LOAD: OnceLock<CudaLoad> = OnceLock::new();

/// What [`load_cuda_library`] did in this process, if it was called.
pub fn cuda_load() -> Option<&'static CudaLoad> {
    LOAD.get()
}

/// `TCH_CIFAR10_CUDA`: `Some(true)` force, `Some(false)` never, `None` detect.
fn mode() -> Result<Option<bool>> {
    let Some(v) = std::env::var_os(ENV) else { return Ok(None) };
    match v.to_string_lossy().trim().to_ascii_lowercase().as_str() {
        "" | "auto" => Ok(None),
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" => Ok(Some(false)),
        _ => Err(Error::InvalidConfig {
            field: ENV,
            value: v.to_string_lossy().into_owned(),
            expected: "1 (load libtorch's CUDA library), 0 (do not) or auto (load it where an NVIDIA driver is present)"
                .to_string(),
        }),
    }
}

/// The last `dlerror()` message.
pub(crate) fn dlerror() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string valid until the next dl* call.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown dlopen error".to_string()
    } else {
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// `dlopen(name, flags)`; the handle is never closed when `keep`.
fn dlopen(name: &str, flags: i32, keep: bool) -> std::result::Result<(), String> {
    let c = CString::new(name).map_err(|_| format!("{name}: path holds a NUL byte"))?;
    // SAFETY: a plain dlopen of a shared library; its initialisers are libtorch's or the driver's.
    let handle = unsafe { libc::dlopen(c.as_ptr(), flags) };
    if handle.is_null() {
        return Err(dlerror());
    }
    if !keep {
        // SAFETY: the handle came from the dlopen above and nothing from it is used.
        unsafe { libc::dlclose(handle) };
    }
    Ok(())
}

/// Whether an NVIDIA driver is present, with the evidence.
fn driver() -> std::result::Result<String, String> {
    if Path::new("/proc/driver/nvidia").exists() {
        return Ok("NVIDIA driver present (/proc/driver/nvidia)".to_string());
    }
    match dlopen("libcuda.so.1", libc::RTLD_LAZY | libc::RTLD_LOCAL, false) {
        Ok(()) => Ok("NVIDIA driver library libcuda.so.1 found".to_string()),
        Err(_) => Err(format!("no NVIDIA driver (no /proc/driver/nvidia, no libcuda.so.1); {ENV}=1 loads it anyway")),
    }
}

/// Loads `libtorch_cuda.so` from the binary's rpath (or `LD_LIBRARY_PATH`), then from the
/// libtorch this binary was built against.
fn load() -> std::result::Result<(), String> {
    let flags = libc::RTLD_NOW | libc::RTLD_GLOBAL;
    dlopen(LIBRARY, flags, true).or_else(|first| match env!("TCH_CIFAR10_LIBTORCH_DIR") {
        "" => Err(first),
        dir => dlopen(&format!("{dir}/lib/{LIBRARY}"), flags, true).map_err(|_| first),
    })
}

/// Loads libtorch's CUDA library where an NVIDIA driver is present (or as `TCH_CIFAR10_CUDA`
/// says), once per process; later calls return the first answer. Call it before anything asks
/// libtorch about CUDA.
///
/// # Errors
/// [`Error::InvalidConfig`] when `TCH_CIFAR10_CUDA` is not `0`, `1` or `auto`.
pub fn load_cuda_library() -> Result<&'static CudaLoad> {
    if let Some(done) = LOAD.get() {
        return Ok(done);
    }
    let why = match mode()? {
        Some(false) => Err(format!("{ENV}=0 says not to")),
        Some(true) => Ok(format!("{ENV}=1 asks for it")),
        None => driver(),
    };
    let outcome = match why {
        Err(why) => CudaLoad { loaded: false, reason: why },
        Ok(why) => match load() {
            Ok(()) => CudaLoad { loaded: true, reason: why },
            Err(e) => CudaLoad { loaded: false, reason: format!("{why}, but {LIBRARY} failed to load: {e}") },
        },
    };
    Ok(LOAD.get_or_init(|| outcome))
}
