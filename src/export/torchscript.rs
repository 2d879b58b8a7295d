//! TorchScript export: `Net.forward` recorded by libtorch's tracer (tch's
//! `CModule::create_by_tracing`, the tracer behind `torch.jit.trace`) and saved as a TorchScript
//! archive (`CModule::save`, as `torch.jit.save`), loadable with `torch.jit.load` in Python and
//! `torch::jit::load` in C++ (or tch's `CModule::load`).
//!
//! The trace records the tensor operations `forward` runs (`aten::conv2d`, `relu`,
//! `max_pool2d`, `flatten`, `linear`), the ones PyTorch's `Net` runs, with the weights as
//! constants of the graph; none of them reads the batch size, so the module runs on any batch,
//! whatever [`TRACE_BATCH`] was. Input and output are described in [`crate::export`].

use std::path::Path;

use tch::{nn::Module, CModule, Device, Kind, Tensor};

use crate::{
    data::{CHANNELS, IMAGE_SIDE},
    error::{Error, Result},
    model::Net,
};

/// Batch size of the example input the trace runs on (the saved module takes any).
pub const TRACE_BATCH: i64 = 2;

/// Traces `net` and saves the module to `path`; `out` is the path errors name (`path` is its
/// temporary sibling).
///
/// libtorch writes the archive into an anonymous in-memory file (`memfd_create`), and this
/// function copies it to `path` with Rust's I/O: libtorch's archive writer throws from a
/// destructor when a write fails (a full disk), which aborts the process, while a failed Rust
/// write is an error like any other.
///
/// # Errors
/// [`Error::Torch`] when the trace fails; [`Error::Io`] naming `out` when the archive cannot be
/// made or `path` cannot be written (a full disk).
pub(crate) fn save(net: &Net, path: &Path, out: &Path) -> Result<()> {
    use std::io::{Read, Seek};
    let module = trace(net)?;
    let io = |cause: std::io::Error| Error::Io { path: out.to_path_buf(), cause };
    // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new descriptor
    // or -1, checked before it is owned.
    let fd = unsafe { libc::memfd_create(c"tch-cifar10-torchscript".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor owned by nothing else.
    let mut memory = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    module
        .save(format!("/proc/self/fd/{fd}"))
        .map_err(|e| io(std::io::Error::other(format!("libtorch cannot write the TorchScript archive: {e}"))))?;
    let mut archive = Vec::new();
    memory.rewind().and_then(|()| memory.read_to_end(&mut archive)).map_err(io)?;
    std::fs::write(path, &archive).map_err(io)
}

/// `net.forward` as a TorchScript module with one method, `forward`.
///
/// # Errors
/// [`Error::Torch`] when libtorch's tracer fails (a parameter that requires grad, for one:
/// freeze the variables first).
pub(crate) fn trace(net: &Net) -> Result<CModule> {
    let example = Tensor::zeros([TRACE_BATCH, CHANNELS, IMAGE_SIDE, IMAGE_SIDE], (Kind::Float, Device::Cpu));
    let mut forward = |xs: &[Tensor]| vec![net.forward(&xs[0])];
    Ok(tch::no_grad(|| CModule::create_by_tracing("Net", "forward", &[example], &mut forward))?)
}
