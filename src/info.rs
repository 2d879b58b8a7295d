//! `tch-cifar10 info`: what this build of libtorch can do on this machine.

use serde::Serialize;

/// Versions, CUDA support and threads, as `info` prints them.
#[derive(Clone, Debug, Serialize)]
pub struct Info {
    /// This crate's version.
    pub version: &'static str,
    /// The libtorch this binary was built against (`torch.__version__` of that build).
    pub libtorch: &'static str,
    /// Whether libtorch's CUDA library is loaded in this process (it answers the cuDNN query).
    pub cuda_library_loaded: bool,
    /// Why it was or was not loaded (see [`crate::cuda`]).
    pub cuda_library_reason: String,
    /// CUDA runtime version the library was built with, as `major.minor`, when loaded.
    pub cudart: Option<String>,
    /// cuDNN version, as `major.minor.patch`, when loaded.
    pub cudnn: Option<String>,
    /// The CUDA shim (CUDA graphs, cuDNN switches; see [`crate::cuda_graph`]): loaded (from
    /// where), missing (why), or not applicable (libtorch's CUDA library is not loaded).
    pub cuda_shim: crate::cuda_graph::ShimStatus,
    /// CUDA devices visible to this process.
    pub cuda_devices: i64,
    /// libtorch intra-op threads: what `train` uses without `--threads` (libtorch's default is the
    /// number of physical cores; `OMP_NUM_THREADS` changes it).
    pub threads: i32,
    /// Logical CPUs of this machine.
    pub logical_cpus: usize,
    /// How libtorch's OpenMP threads wait for work, and who chose it (see [`crate::wait_policy`]).
    pub thread_wait: crate::wait_policy::WaitPolicy,
}

/// A libtorch context query that raises (rather than returns) when the CUDA library is absent.
fn cuda_query(f: unsafe extern "C" fn() -> i64) -> Option<i64> {
    // SAFETY: a plain libtorch query; any C++ exception is caught by torch-sys and left in its
    // error slot, which is read (and cleared) right after.
    let v = unsafe { f() };
    let err = unsafe { torch_sys::get_and_reset_last_err() };
    if err.is_null() {
        Some(v)
    } else {
        // SAFETY: torch-sys allocates the message with malloc and hands it to the caller.
        unsafe { libc_free(err.cast()) };
        None
    }
}

extern "C" {
    #[link_name = "free"]
    fn libc_free(p: *mut std::ffi::c_void);
}

/// Gathers [`Info`] for this process.
pub fn info() -> Info {
    let cudnn = cuda_query(torch_sys::at_context_version_cudnn);
    let cudart = cuda_query(torch_sys::at_context_version_cudart);
    Info {
        version: env!("CARGO_PKG_VERSION"),
        libtorch: env!("TCH_CIFAR10_LIBTORCH_VERSION"),
        cuda_library_loaded: cudnn.is_some(),
        cuda_library_reason: crate::cuda::cuda_load().map_or_else(
            || "not loaded at start (a library caller did not call cuda::load_cuda_library)".to_string(),
            |l| l.reason.clone(),
        ),
        // cudart 13000 -> 13.0; cudnn 91002 -> 9.10.2 (cuDNN 9 encodes major*10000 + minor*100 + patch).
        cudart: cudart.map(|v| format!("{}.{}", v / 1000, v % 1000 / 10)),
        cudnn: cudnn.map(|v| format!("{}.{}.{}", v / 10000, v % 10000 / 100, v % 100)),
        cuda_shim: crate::cuda_graph::status(),
        cuda_devices: tch::Cuda::device_count(),
        threads: tch::get_num_threads(),
        logical_cpus: crate::device::logical_cpus().unwrap_or(1),
        thread_wait: crate::wait_policy::in_force(),
    }
}

impl std::fmt::Display for Info {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
        writeln!(f, "tch-cifar10      {}", self.version)?;
        writeln!(f, "libtorch         {}", self.libtorch)?;
        let loaded = if self.cuda_library_loaded { "loaded" } else { "not loaded (CPU only)" };
        writeln!(f, "CUDA library     {loaded}: {}", self.cuda_library_reason)?;
        writeln!(f, "CUDA runtime     {}", or_none(&self.cudart))?;
        writeln!(f, "cuDNN            {}", or_none(&self.cudnn))?;
        writeln!(f, "CUDA shim        {}", self.cuda_shim)?;
        writeln!(f, "CUDA devices     {}", self.cuda_devices)?;
        writeln!(f, "CPU threads      {} (libtorch), {} logical CPUs", self.threads, self.logical_cpus)?;
        write!(f, "thread wait      {}", self.thread_wait)
    }
}
