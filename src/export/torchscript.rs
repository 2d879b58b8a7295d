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
/// # Errors
/// [`Error::Torch`] when the trace fails; [`Error::Io`] naming `out` when libtorch cannot write
/// `path`.
pub(crate) fn save(net: &Net, path: &Path, out: &Path) -> Result<()> {
    let module = trace(net)?;
    module.save(path).map_err(|e| Error::Io {
        path: out.to_path_buf(),
        cause: std::io::Error::other(format!("libtorch cannot write the TorchScript archive: {e}")),
    })
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
