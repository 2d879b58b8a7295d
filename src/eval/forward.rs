//! The forward pass that `eval`, `calibrate` and `predict` run on a loaded [`Net`]: which
//! kernels compute it (`--kernels`, chosen in [`forward`] and nowhere else) and the temperature
//! that divides the logits (see [`super::temperature`]).
//!
//! The CPU kernels of `--kernels fast` compute whole SGD steps and have no forward-only entry
//! point yet, so evaluation's fast path is libtorch's, as the fast step on CUDA runs it:
//! channels-last (NHWC) input and ReLU after each max-pool ([`Net::forward_pool_first`], the same
//! function). `reference` is the PyTorch program's `net(images)`, bit for bit.

use tch::{nn::Module, Tensor};

use crate::{config::Kernels, model::Net, train::step::fast::channels_last};

/// `net` as evaluation runs it: `float32 [B, 3, 32, 32]` normalised images -> `[B, classes]`
/// logits divided by the temperature.
#[derive(Debug)]
pub struct EvalForward<'a> {
    net: &'a Net,
    kernels: Kernels,
    temperature: Option<f64>,
}

/// The forward pass of `net` with `kernels`, its logits divided by `temperature` when one is
/// given (`None`: the raw logits, bit for bit the network's).
pub fn forward(net: &Net, kernels: Kernels, temperature: Option<f64>) -> EvalForward<'_> {
    EvalForward { net, kernels, temperature }
}

impl EvalForward<'_> {
    /// `float32 [B, 3, 32, 32]` -> `float32 [B, classes]`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let logits = match self.kernels {
            Kernels::Reference => Module::forward(self.net, xs),
            Kernels::Fast => self.net.forward_pool_first(&channels_last(xs)),
        };
        match self.temperature {
            Some(t) => logits / t,
            None => logits,
        }
    }
}
