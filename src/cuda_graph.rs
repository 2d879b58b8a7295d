//! CUDA graphs, CUDA streams and the cuDNN switches, through tch-cifar10's CUDA shim.
//!
//! tch 0.24 has no CUDA-graph API (tch-rs issue 631) and no setter for cuDNN's deterministic
//! mode, so `csrc/cuda_shim.cpp` wraps the C++ API that PyTorch's own Python bindings use
//! (`at::cuda::CUDAGraph`, `c10::cuda::CUDAStream`, `at::globalContext()`) in plain C
//! functions. build.rs compiles it into `libtch_cifar10_cuda.so` where libtorch has its CUDA
//! library and the CUDA headers are present; this module `dlopen`s that library, once, and only
//! after [`crate::cuda::load_cuda_library`] has loaded `libtorch_cuda.so`. A CPU host therefore
//! never maps it and keeps the memory saving described in [`crate::cuda`]. Every C++ exception
//! comes back as an [`Error::CudaShim`], never a crash.
//!
//! Where the shim is looked for, first match wins:
//! 1. `TCH_CIFAR10_CUDA_SHIM`: a path to the library (only that one), or `0` to not load it;
//! 2. next to the running executable (build.rs copies it to `target/<profile>/`, so the binary
//!    and `libtch_cifar10_cuda.so` can be moved together);
//! 3. where build.rs built it (`OUT_DIR`).
//!
//! [`status`] says which happened: loaded (from where), missing (and why), or not applicable
//! (libtorch's CUDA library is not loaded).
//!
//! # Using it for a graphed training step
//! This is how `torch.cuda.graph` and PyTorch's "whole network capture" recipe use the same C++
//! calls (torch/cuda/graphs.py; the CUDA-graphs section of PyTorch's CUDA semantics notes):
//! 1. Once per run: `set_cudnn_deterministic(true)` and `set_cudnn_benchmark(false)` for
//!    `--deterministic`. Make a side stream `let side = CudaStream::from_pool(dev)?` (capture is
//!    refused on the legacy default stream, which is where tch runs everything otherwise).
//! 2. Static buffers, allocated before any capture and never reallocated: the resident data
//!    (already on the GPU), an `i64` index tensor `[batch_size]`, the gathered images
//!    `[batch_size, 3, 32, 32]` and labels `[batch_size]`, and a scalar `f32` loss. Every op in
//!    the captured step writes into tensors whose storage stays alive until the graph is reset
//!    (the graph replays fixed addresses): gather with `index_select` into fresh tensors is fine
//!    *inside* the capture (they live in the graph's pool), but anything the host reads or
//!    writes between replays (the indices, the loss) must be a static tensor made outside the
//!    capture, written with `copy_` (the indices before `replay`, the loss inside the step).
//! 3. Warm-up, as real steps of the run: the first SGD step creates the momentum buffers (their
//!    addresses must exist before capture) and a few more steps let cuDNN/cuBLAS pick and
//!    allocate their workspaces. Run them on the side stream: [`on_stream`]`(&side, dev, ||
//!    step())` (the side stream first waits for the current stream, and the current stream
//!    waits for it afterwards, as PyTorch's recipe does).
//! 4. Capture one full step (index gather, normalise, forward, loss, `zero_grad` then backward,
//!    the SGD update, `loss_static.copy_(&loss)`) with [`capture`]`(&mut graph, &side, pool,
//!    || step())`. It does what `with torch.cuda.graph(g, pool)` does: synchronise, empty the
//!    allocator's cache, make `side` current, `capture_begin(pool)`, run the body,
//!    `capture_end`, restore the stream. Nothing in the body may synchronise with the host
//!    (no `double_value`, `f64::try_from`, `to_device(Cpu)`, no `.item()`-style checks, no
//!    printing a tensor): those fail the capture. The captured work is *not* executed by the
//!    capture, so the captured step must be replayed once for that batch (or the batch taken
//!    eagerly before capture, as the warm-up does).
//!    Gradients: libtorch's `zero_grad()` (the one `tch`'s optimizer and so
//!    `train::sgd::Sgd::backward_step` call first) sets them to none, a host-only change, so the
//!    eager step can be captured as it is: the captured backward allocates the `.grad` tensors
//!    from the graph's pool, as in PyTorch's whole-network example, and every replay overwrites
//!    them. The momentum buffers must exist before capture (made by the first, eager, step) and
//!    are updated in place.
//! 5. Each later full batch: `index_static.copy_(&batch_indices)` (best from the epoch's
//!    permutation kept on the GPU: a device-to-device copy, no host wait), `graph.replay()?`,
//!    and read `loss_static` only when the epoch needs it (a read waits for the GPU: add it up
//!    on the GPU and check for a non-finite loss once per logging interval, not per step). A
//!    ragged last batch runs eagerly (same parameters, another shape).
//! 6. The learning rate is baked into the captured SGD kernels as a constant: at each StepLR
//!    change, `graph.reset()?` and capture again (sharing the memory pool:
//!    `capture_begin(graph.pool()?)` or one [`graph_pool_handle`] for all graphs), or keep one
//!    graph per rate. Drop the graphs before the tensors they use.
//! 7. Replays run on the *current* stream; replay with the default stream current (the eager
//!    steps and evaluation also run there), which orders them with everything else, or call
//!    [`synchronize`] before reading results on the host.
//!
//! The LeNet step draws no random numbers (no dropout), so no CUDA generator needs registering
//! with the graph.

use std::{
    ffi::{c_char, c_void, CStr, CString},
    marker::PhantomData,
    path::{Path, PathBuf},
    ptr::NonNull,
    sync::OnceLock,
};

use serde::Serialize;

use crate::error::{Error, Result};

/// The environment variable naming the shim to load (`0` turns it off).
pub const SHIM_ENV: &str = "TCH_CIFAR10_CUDA_SHIM";
/// The shim's file name.
pub const SHIM_LIBRARY: &str = "libtch_cifar10_cuda.so";
/// The `tcc_abi_version()` this module was written for (`TCC_ABI_VERSION` in the C++).
const ABI_VERSION: i32 = 1;

/// Whether the shim is usable in this process, and why (not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ShimStatus {
    /// Loaded from `path`; its functions can be called.
    Loaded { path: PathBuf },
    /// libtorch's CUDA library is loaded but the shim is not: not built, not found, turned off,
    /// or failed to load, as `reason` says.
    Missing { reason: String },
    /// libtorch's CUDA library is not loaded (a CPU host), so the shim is not loaded either.
    NotApplicable { reason: String },
}

impl std::fmt::Display for ShimStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShimStatus::Loaded { path } => write!(f, "loaded from {}", path.display()),
            ShimStatus::Missing { reason } => write!(f, "missing: {reason}"),
            ShimStatus::NotApplicable { reason } => write!(f, "not applicable: {reason}"),
        }
    }
}

/// An error message from the shim (malloc'd; freed by `tcc_free_error`), or null.
type ShimError = *mut c_char;

/// The shim's functions (see csrc/cuda_shim.cpp for what each does).
struct Api {
    free_error: unsafe extern "C" fn(ShimError),
    device_synchronize: unsafe extern "C" fn() -> ShimError,
    empty_cache: unsafe extern "C" fn() -> ShimError,
    stream_from_pool: unsafe extern "C" fn(i32, *mut *mut c_void) -> ShimError,
    stream_current: unsafe extern "C" fn(i32, *mut *mut c_void) -> ShimError,
    stream_delete: unsafe extern "C" fn(*mut c_void),
    stream_is_default: unsafe extern "C" fn(*const c_void, *mut i32) -> ShimError,
    stream_wait_stream: unsafe extern "C" fn(*const c_void, *const c_void) -> ShimError,
    stream_enter: unsafe extern "C" fn(*const c_void, *mut *mut c_void) -> ShimError,
    stream_exit: unsafe extern "C" fn(*mut c_void),
    graph_pool_handle: unsafe extern "C" fn(*mut u64, *mut u64) -> ShimError,
    graph_new: unsafe extern "C" fn(*mut *mut c_void) -> ShimError,
    graph_delete: unsafe extern "C" fn(*mut c_void),
    graph_capture_begin: unsafe extern "C" fn(*mut c_void, u64, u64) -> ShimError,
    graph_capture_end: unsafe extern "C" fn(*mut c_void) -> ShimError,
    graph_replay: unsafe extern "C" fn(*mut c_void) -> ShimError,
    graph_reset: unsafe extern "C" fn(*mut c_void) -> ShimError,
    graph_pool: unsafe extern "C" fn(*mut c_void, *mut u64, *mut u64) -> ShimError,
    set_cudnn_deterministic: unsafe extern "C" fn(i32) -> ShimError,
    cudnn_deterministic: unsafe extern "C" fn(*mut i32) -> ShimError,
    set_cudnn_benchmark: unsafe extern "C" fn(i32) -> ShimError,
    cudnn_benchmark: unsafe extern "C" fn(*mut i32) -> ShimError,
    set_deterministic_algorithms: unsafe extern "C" fn(i32, i32) -> ShimError,
    deterministic_algorithms: unsafe extern "C" fn(*mut i32) -> ShimError,
}

/// The outcome of the one attempt to load the shim.
struct Shim {
    status: ShimStatus,
    api: Option<Api>,
}

static SHIM: OnceLock<Shim> = OnceLock::new();

/// Whether the shim is loaded, loading it on the first call made once libtorch's CUDA library is
/// loaded. Never loads anything while that library is not loaded (the answer is then
/// [`ShimStatus::NotApplicable`], asked again on the next call).
pub fn status() -> ShimStatus {
    match shim() {
        Ok(s) => s.status.clone(),
        Err(status) => status,
    }
}

/// The loaded shim, or why there is none.
fn shim() -> std::result::Result<&'static Shim, ShimStatus> {
    match crate::cuda::cuda_load() {
        None => {
            return Err(ShimStatus::NotApplicable {
                reason: "libtorch's CUDA library was not loaded (cuda::load_cuda_library was not called)".to_string(),
            })
        }
        // `info` prints the loader's reason on its own line.
        Some(l) if !l.loaded => {
            return Err(ShimStatus::NotApplicable { reason: "libtorch's CUDA library is not loaded".to_string() })
        }
        Some(_) => {}
    }
    Ok(SHIM.get_or_init(|| match locate().and_then(|path| load(&path).map(|api| (path, api))) {
        Ok((path, api)) => Shim { status: ShimStatus::Loaded { path }, api: Some(api) },
        Err(reason) => Shim { status: ShimStatus::Missing { reason }, api: None },
    }))
}

/// The loaded shim's functions.
///
/// # Errors
/// [`Error::CudaShim`] naming `call` when the shim is not loaded, with the reason.
fn api(call: &'static str) -> Result<&'static Api> {
    match shim() {
        Ok(Shim { api: Some(api), .. }) => Ok(api),
        Ok(s) => Err(Error::CudaShim { call, reason: format!("the CUDA shim is {}", s.status) }),
        Err(status) => Err(Error::CudaShim { call, reason: format!("the CUDA shim is {status}") }),
    }
}

/// The shim file to load, by the order in the module doc.
fn locate() -> std::result::Result<PathBuf, String> {
    if let Some(v) = std::env::var_os(SHIM_ENV).filter(|v| !v.is_empty()) {
        if matches!(v.to_string_lossy().trim().to_ascii_lowercase().as_str(), "0" | "off" | "false" | "no") {
            return Err(format!("{SHIM_ENV}={} turns it off", v.to_string_lossy()));
        }
        let path = PathBuf::from(&v);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{SHIM_ENV}={}: no such file (expected the path of {SHIM_LIBRARY})", path.display()))
        };
    }
    let beside_exe = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join(SHIM_LIBRARY)));
    let built = Some(env!("TCH_CIFAR10_CUDA_SHIM_BUILT")).filter(|p| !p.is_empty()).map(PathBuf::from);
    if let Some(found) = beside_exe.iter().chain(built.iter()).find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = beside_exe.iter().chain(built.iter()).map(|p| p.display().to_string()).collect();
    let skipped = env!("TCH_CIFAR10_CUDA_SHIM_SKIPPED");
    Err(if built.is_none() && !skipped.is_empty() {
        format!("not built with this binary ({skipped}) and not found at {}", looked.join(" or "))
    } else {
        format!("{SHIM_LIBRARY} not found (looked at {}; {SHIM_ENV} names another)", looked.join(" and "))
    })
}

/// `dlopen`s the shim, checks its ABI version and resolves every function. The library is
/// never closed.
// The transmutes take their types from the `Api` fields they fill (see the SAFETY note below).
#[allow(clippy::missing_transmute_annotations)]
fn load(path: &Path) -> std::result::Result<Api, String> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| format!("{}: path holds a NUL byte", path.display()))?;
    // SAFETY: a plain dlopen of the shim, whose only initialisers are libtorch's (already loaded).
    let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("{} failed to load: {}", path.display(), crate::cuda::dlerror()));
    }
    let sym = |name: &str| -> std::result::Result<*mut c_void, String> {
        let cname = CString::new(name).expect("symbol names hold no NUL byte");
        // SAFETY: dlsym on the handle opened above.
        let p = unsafe { libc::dlsym(handle, cname.as_ptr()) };
        if p.is_null() {
            Err(format!("{}: no symbol {name} (a shim from another tch-cifar10 version?)", path.display()))
        } else {
            Ok(p)
        }
    };
    // SAFETY (for every transmute below): each symbol is the `extern "C"` function of that name
    // in csrc/cuda_shim.cpp, whose signature is the field's type, for the ABI version checked.
    let version: unsafe extern "C" fn() -> i32 = unsafe { std::mem::transmute(sym("tcc_abi_version")?) };
    let v = unsafe { version() };
    if v != ABI_VERSION {
        return Err(format!("{} has shim ABI version {v}, this binary needs {ABI_VERSION} (rebuild it)", path.display()));
    }
    macro_rules! f {
        ($name:literal) => {
            unsafe { std::mem::transmute(sym($name)?) }
        };
    }
    Ok(Api {
        free_error: f!("tcc_free_error"),
        device_synchronize: f!("tcc_device_synchronize"),
        empty_cache: f!("tcc_empty_cache"),
        stream_from_pool: f!("tcc_stream_from_pool"),
        stream_current: f!("tcc_stream_current"),
        stream_delete: f!("tcc_stream_delete"),
        stream_is_default: f!("tcc_stream_is_default"),
        stream_wait_stream: f!("tcc_stream_wait_stream"),
        stream_enter: f!("tcc_stream_enter"),
        stream_exit: f!("tcc_stream_exit"),
        graph_pool_handle: f!("tcc_graph_pool_handle"),
        graph_new: f!("tcc_graph_new"),
        graph_delete: f!("tcc_graph_delete"),
        graph_capture_begin: f!("tcc_graph_capture_begin"),
        graph_capture_end: f!("tcc_graph_capture_end"),
        graph_replay: f!("tcc_graph_replay"),
        graph_reset: f!("tcc_graph_reset"),
        graph_pool: f!("tcc_graph_pool"),
        set_cudnn_deterministic: f!("tcc_set_cudnn_deterministic"),
        cudnn_deterministic: f!("tcc_cudnn_deterministic"),
        set_cudnn_benchmark: f!("tcc_set_cudnn_benchmark"),
        cudnn_benchmark: f!("tcc_cudnn_benchmark"),
        set_deterministic_algorithms: f!("tcc_set_deterministic_algorithms"),
        deterministic_algorithms: f!("tcc_deterministic_algorithms"),
    })
}

impl Api {
    /// Turns a shim return value into a `Result`, freeing the message.
    fn check(&self, call: &'static str, e: ShimError) -> Result<()> {
        if e.is_null() {
            return Ok(());
        }
        // SAFETY: a non-null return is a NUL-terminated malloc'd message owned by the caller.
        let reason = unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned();
        unsafe { (self.free_error)(e) };
        Err(Error::CudaShim { call, reason })
    }
}

/// Calls a getter returning a C `int` flag.
fn get_flag(call: &'static str, f: impl FnOnce(&Api) -> unsafe extern "C" fn(*mut i32) -> ShimError) -> Result<bool> {
    let api = api(call)?;
    let mut v = 0;
    // SAFETY: the getter writes one int through the pointer.
    api.check(call, unsafe { f(api)(&mut v) })?;
    Ok(v != 0)
}

/// A CUDA device index as the shim takes it.
fn device_index(device: usize) -> Result<i32> {
    i32::try_from(device).map_err(|_| Error::InvalidConfig {
        field: "device",
        value: format!("cuda:{device}"),
        expected: "a CUDA device index below 2^31".to_string(),
    })
}

/// `torch.backends.cudnn.deterministic = on`: cuDNN picks only deterministic algorithms.
///
/// # Errors
/// [`Error::CudaShim`] when the shim is not loaded.
pub fn set_cudnn_deterministic(on: bool) -> Result<()> {
    let api = api("set_cudnn_deterministic")?;
    // SAFETY: a plain call into the shim.
    api.check("set_cudnn_deterministic", unsafe { (api.set_cudnn_deterministic)(on.into()) })
}

/// `torch.backends.cudnn.deterministic`.
///
/// # Errors
/// [`Error::CudaShim`] when the shim is not loaded.
pub fn cudnn_deterministic() -> Result<bool> {
    get_flag("cudnn_deterministic", |a| a.cudnn_deterministic)
}

/// `torch.backends.cudnn.benchmark = on`: cuDNN times candidate algorithms for each new input
/// shape and keeps the fastest (not repeatable from run to run; off by default).
///
/// # Errors
/// [`Error::CudaShim`] when the shim is not loaded.
pub fn set_cudnn_benchmark(on: bool) -> Result<()> {
    let api = api("set_cudnn_benchmark")?;
    // SAFETY: a plain call into the shim.
    api.check("set_cudnn_benchmark", unsafe { (api.set_cudnn_benchmark)(on.into()) })
}

/// `torch.backends.cudnn.benchmark`.
///
/// # Errors
/// [`Error::CudaShim`] when the shim is not loaded.
pub fn cudnn_benchmark() -> Result<bool> {
    get_flag("cudnn_benchmark", |a| a.cudnn_benchmark)
}

/// `torch.use_deterministic_algorithms(on, warn_only=warn_only)`: every op that has only a
/// nondeterministic CUDA implementation then raises (or warns). On CUDA, cuBLAS also needs
/// `CUBLAS_WORKSPACE_CONFIG=:4096:8` in the environment before the first cuBLAS call.
///
/// # Errors
/// [`Error::CudaShim`] when the shim is not loaded.
pub fn set_deterministic_algorithms(on: bool, warn_only: bool) -> Result<()> {
    let api = api("set_deterministic_algorithms")?;
    // SAFETY: a plain call into the shim.
    api.check("set_deterministic_algorithms", unsafe { (api.set_deterministic_algorithms)(on.into(), warn_only.into()) })
}

/// `torch.are_deterministic_algorithms_enabled()`.
///
/// # Errors
/// [`Error::CudaShim`] when the shim is not loaded.
pub fn deterministic_algorithms() -> Result<bool> {
    get_flag("deterministic_algorithms", |a| a.deterministic_algorithms)
}

/// `torch.cuda.synchronize()`: waits for all work queued on the current CUDA device.
///
/// # Errors
/// [`Error::CudaShim`] when the shim is not loaded or CUDA reports an error (no device, an
/// earlier kernel failed).
pub fn synchronize() -> Result<()> {
    let api = api("synchronize")?;
    // SAFETY: a plain call into the shim.
    api.check("synchronize", unsafe { (api.device_synchronize)() })
}

/// `torch.cuda.empty_cache()`: returns the caching allocator's unused blocks to the driver.
///
/// # Errors
/// [`Error::CudaShim`] when the shim is not loaded or CUDA reports an error.
pub fn empty_cache() -> Result<()> {
    let api = api("empty_cache")?;
    // SAFETY: a plain call into the shim.
    api.check("empty_cache", unsafe { (api.empty_cache)() })
}

/// A memory-pool id of libtorch's CUDA caching allocator (`MempoolId_t`, a pair). Graphs
/// captured into one pool share its memory; safe when they replay in the order of capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MempoolId(pub u64, pub u64);

impl MempoolId {
    /// "No pool given": the graph gets a private pool of its own.
    pub const PRIVATE: MempoolId = MempoolId(0, 0);
}

/// `torch.cuda.graph_pool_handle()`: a new pool id to share among graphs.
///
/// # Errors
/// [`Error::CudaShim`] when the shim is not loaded.
pub fn graph_pool_handle() -> Result<MempoolId> {
    let api = api("graph_pool_handle")?;
    let (mut a, mut b) = (0, 0);
    // SAFETY: writes two integers through the pointers.
    api.check("graph_pool_handle", unsafe { (api.graph_pool_handle)(&mut a, &mut b) })?;
    Ok(MempoolId(a, b))
}

/// A CUDA stream (`torch.cuda.Stream`): a handle to one of libtorch's streams.
pub struct CudaStream {
    raw: NonNull<c_void>,
    api: &'static Api,
}

// SAFETY: the handle is a value copy of a `c10::cuda::CUDAStream` (a device index and a stream
// id), usable from any thread.
unsafe impl Send for CudaStream {}

impl CudaStream {
    fn make(call: &'static str, device: usize, f: fn(&Api) -> unsafe extern "C" fn(i32, *mut *mut c_void) -> ShimError) -> Result<CudaStream> {
        let api = api(call)?;
        let device = device_index(device)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: on success the shim writes a new handle, released in Drop.
        api.check(call, unsafe { f(api)(device, &mut raw) })?;
        let raw = NonNull::new(raw).ok_or(Error::CudaShim { call, reason: "the shim returned no stream".to_string() })?;
        Ok(CudaStream { raw, api })
    }

    /// `torch.cuda.Stream(device)`: a stream from libtorch's pool for `cuda:device`, not the
    /// default stream (the one to capture graphs and run warm-up steps on).
    ///
    /// # Errors
    /// [`Error::CudaShim`] when the shim is not loaded or the device does not exist.
    pub fn from_pool(device: usize) -> Result<CudaStream> {
        CudaStream::make("CudaStream::from_pool", device, |a| a.stream_from_pool)
    }

    /// `torch.cuda.current_stream(device)`: the stream tch's operations on `cuda:device` are
    /// queued on by this thread now (the default stream unless a [`StreamGuard`] is alive).
    ///
    /// # Errors
    /// [`Error::CudaShim`] when the shim is not loaded or the device does not exist.
    pub fn current(device: usize) -> Result<CudaStream> {
        CudaStream::make("CudaStream::current", device, |a| a.stream_current)
    }

    /// Whether this is its device's legacy default stream, where capture is refused.
    ///
    /// # Errors
    /// [`Error::CudaShim`] on a CUDA error.
    pub fn is_default(&self) -> Result<bool> {
        let mut v = 0;
        // SAFETY: a live handle; writes one int.
        self.api.check("CudaStream::is_default", unsafe { (self.api.stream_is_default)(self.raw.as_ptr(), &mut v) })?;
        Ok(v != 0)
    }

    /// `self.wait_stream(other)`: work queued on `self` from now on starts only after the work
    /// already queued on `other` (an event, not a host wait).
    ///
    /// # Errors
    /// [`Error::CudaShim`] on a CUDA error.
    pub fn wait_stream(&self, other: &CudaStream) -> Result<()> {
        // SAFETY: two live handles.
        self.api.check("CudaStream::wait_stream", unsafe { (self.api.stream_wait_stream)(self.raw.as_ptr(), other.raw.as_ptr()) })
    }

    /// `with torch.cuda.stream(self):` makes this stream (and its device) current on this
    /// thread until the guard is dropped. Drop guards in the reverse order of entering.
    ///
    /// # Errors
    /// [`Error::CudaShim`] on a CUDA error.
    pub fn enter(&self) -> Result<StreamGuard<'_>> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: a live handle; on success the shim writes a guard, released in Drop.
        self.api.check("CudaStream::enter", unsafe { (self.api.stream_enter)(self.raw.as_ptr(), &mut raw) })?;
        let raw = NonNull::new(raw)
            .ok_or(Error::CudaShim { call: "CudaStream::enter", reason: "the shim returned no guard".to_string() })?;
        Ok(StreamGuard { raw, api: self.api, _stream: PhantomData })
    }
}

impl Drop for CudaStream {
    fn drop(&mut self) {
        // SAFETY: the handle came from the shim and is released once.
        unsafe { (self.api.stream_delete)(self.raw.as_ptr()) }
    }
}

/// While alive, its stream is this thread's current CUDA stream (a `c10::cuda::CUDAStreamGuard`);
/// dropping it restores the previous stream and device. Not `Send`: the current stream belongs
/// to a thread.
pub struct StreamGuard<'a> {
    raw: NonNull<c_void>,
    api: &'static Api,
    _stream: PhantomData<(&'a CudaStream, *const ())>,
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: the guard came from the shim and is released once, on its thread.
        unsafe { (self.api.stream_exit)(self.raw.as_ptr()) }
    }
}

/// Runs `body` with `stream` current, ordered after the work already queued on the current
/// stream of `cuda:device`, and that stream ordered after `body`'s work: PyTorch's recipe for
/// warm-up iterations before a capture (`s.wait_stream(torch.cuda.current_stream())`, `with
/// torch.cuda.stream(s): ...`, `torch.cuda.current_stream().wait_stream(s)`).
///
/// # Errors
/// `body`'s error, or [`Error::CudaShim`] on a CUDA error.
pub fn on_stream<T>(stream: &CudaStream, device: usize, body: impl FnOnce() -> Result<T>) -> Result<T> {
    let current = CudaStream::current(device)?;
    stream.wait_stream(&current)?;
    let out = {
        let _guard = stream.enter()?;
        body()
    };
    current.wait_stream(stream)?;
    out
}

/// A CUDA graph (`torch.cuda.CUDAGraph`): work captured once from a stream, replayed with one
/// launch. The graph replays fixed memory addresses: every tensor its work reads or writes must
/// outlive it (or its [`reset`](CudaGraph::reset)).
pub struct CudaGraph {
    raw: NonNull<c_void>,
    api: &'static Api,
}

// SAFETY: `at::cuda::CUDAGraph` holds no thread-local state; it may be used from another thread
// (one at a time, which `&mut`/`!Sync` ensures).
unsafe impl Send for CudaGraph {}

impl CudaGraph {
    /// An empty graph.
    ///
    /// # Errors
    /// [`Error::CudaShim`] when the shim is not loaded or CUDA is not usable (no device).
    pub fn new() -> Result<CudaGraph> {
        let api = api("CudaGraph::new")?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: on success the shim writes a new graph, released in Drop.
        api.check("CudaGraph::new", unsafe { (api.graph_new)(&mut raw) })?;
        let raw = NonNull::new(raw).ok_or(Error::CudaShim { call: "CudaGraph::new", reason: "the shim returned no graph".to_string() })?;
        Ok(CudaGraph { raw, api })
    }

    /// `capture_begin(pool)`: from now on, the work queued on the current stream (which must
    /// not be the default stream: see [`capture`]) is recorded, not run. `pool` is
    /// [`MempoolId::PRIVATE`] for a pool of its own, or another graph's [`pool`](Self::pool)
    /// or a [`graph_pool_handle`] to share one.
    ///
    /// # Errors
    /// [`Error::CudaShim`]: the default stream is current, a capture is under way, CUDA error.
    pub fn capture_begin(&mut self, pool: MempoolId) -> Result<()> {
        // SAFETY: a live graph.
        self.api.check("CudaGraph::capture_begin", unsafe { (self.api.graph_capture_begin)(self.raw.as_ptr(), pool.0, pool.1) })
    }

    /// `capture_end()`: stops recording and instantiates the graph.
    ///
    /// # Errors
    /// [`Error::CudaShim`]: no capture under way, or the captured work broke a capture rule (a
    /// host synchronisation, work on another stream not joined back).
    pub fn capture_end(&mut self) -> Result<()> {
        // SAFETY: a live graph.
        self.api.check("CudaGraph::capture_end", unsafe { (self.api.graph_capture_end)(self.raw.as_ptr()) })
    }

    /// `replay()`: launches the captured work on the current stream.
    ///
    /// # Errors
    /// [`Error::CudaShim`]: nothing captured, or a CUDA error.
    pub fn replay(&mut self) -> Result<()> {
        // SAFETY: a live graph.
        self.api.check("CudaGraph::replay", unsafe { (self.api.graph_replay)(self.raw.as_ptr()) })
    }

    /// `reset()`: drops the captured work and the graph's hold on its memory pool; the graph can
    /// capture again.
    ///
    /// # Errors
    /// [`Error::CudaShim`] on a CUDA error.
    pub fn reset(&mut self) -> Result<()> {
        // SAFETY: a live graph.
        self.api.check("CudaGraph::reset", unsafe { (self.api.graph_reset)(self.raw.as_ptr()) })
    }

    /// `pool()`: this graph's memory-pool id, to capture another graph into the same pool.
    ///
    /// # Errors
    /// [`Error::CudaShim`]: the graph has not begun a capture.
    pub fn pool(&self) -> Result<MempoolId> {
        let (mut a, mut b) = (0, 0);
        // SAFETY: a live graph; writes two integers.
        self.api.check("CudaGraph::pool", unsafe { (self.api.graph_pool)(self.raw.as_ptr(), &mut a, &mut b) })?;
        Ok(MempoolId(a, b))
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        // SAFETY: the graph came from the shim and is released once.
        unsafe { (self.api.graph_delete)(self.raw.as_ptr()) }
    }
}

/// `with torch.cuda.graph(graph, pool=pool, stream=stream): body()`: synchronises the device,
/// empties the allocator's cache, makes `stream` current, begins the capture, runs `body`
/// (whose work is recorded, not run), ends the capture and restores the current stream. When
/// `body` fails the capture is still ended and the graph reset, and `body`'s error returned.
///
/// # Errors
/// `body`'s error, or [`Error::CudaShim`] (a capture rule broken, a CUDA error).
pub fn capture<T>(graph: &mut CudaGraph, stream: &CudaStream, pool: MempoolId, body: impl FnOnce() -> Result<T>) -> Result<T> {
    synchronize()?;
    empty_cache()?;
    let _guard = stream.enter()?;
    graph.capture_begin(pool)?;
    match body() {
        Ok(v) => {
            graph.capture_end()?;
            Ok(v)
        }
        Err(e) => {
            // Leave the stream out of capture mode; the broken capture's own error is secondary.
            let _ = graph.capture_end();
            let _ = graph.reset();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_prints_its_state_and_reason() {
        let s = ShimStatus::Missing { reason: "not built".into() };
        assert_eq!(s.to_string(), "missing: not built");
        let v = serde_json::to_value(ShimStatus::Loaded { path: "/x/libtch_cifar10_cuda.so".into() }).unwrap();
        assert_eq!(v, serde_json::json!({"state": "loaded", "path": "/x/libtch_cifar10_cuda.so"}));
        let v = serde_json::to_value(ShimStatus::NotApplicable { reason: "r".into() }).unwrap();
        assert_eq!(v, serde_json::json!({"state": "not_applicable", "reason": "r"}));
    }
}
