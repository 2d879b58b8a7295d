//! The forward pass that `eval`, `calibrate` and `predict` run on a loaded [`Net`]: which
//! kernels compute it (`--kernels`, chosen in [`forward`] and nowhere else) and the temperature
//! that divides the logits (see [`super::temperature`]).
//!
//! `reference` is the PyTorch program's `net(images)`, bit for bit. `fast` on the CPU evaluates
//! whole images on this crate's own kernels ([`EvalForward::evaluate`]: the training step's
//! forward pass, `LeNet::logits`, which needs no libtorch thread after loading); a forward pass
//! whose input gradient is wanted (FGSM, saliency) and `fast` elsewhere run libtorch's fast path,
//! as the fast step on CUDA runs it: channels-last (NHWC) input and ReLU after each max-pool
//! ([`Net::forward_pool_first`], the same function).

use std::cell::RefCell;

use tch::{nn::Module, Device, Kind, Tensor};

use crate::{
    config::Kernels,
    data::normalize,
    error::{Error, Result},
    kernels::lenet::{self, LeNet},
    model::Net,
    train::step::{
        fast::channels_last,
        fast_cpu::{view, weights},
    },
};

/// `net` as evaluation runs it: `float32 [B, 3, 32, 32]` normalised images -> `[B, classes]`
/// logits divided by the temperature.
pub struct EvalForward<'a> {
    net: &'a Net,
    kernels: Kernels,
    temperature: Option<f64>,
    /// The crate's CPU kernels, for `fast` on the CPU ([`EvalForward::on_device`]).
    cpu_kernels: Option<RefCell<LeNet>>,
}

impl std::fmt::Debug for EvalForward<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalForward")
            .field("kernels", &self.kernels)
            .field("temperature", &self.temperature)
            .field("cpu_kernels", &self.cpu_kernels.is_some())
            .finish_non_exhaustive()
    }
}

/// The forward pass of `net` with `kernels`, its logits divided by `temperature` when one is
/// given (`None`: the raw logits, bit for bit the network's).
pub fn forward(net: &Net, kernels: Kernels, temperature: Option<f64>) -> EvalForward<'_> {
    EvalForward { net, kernels, temperature, cpu_kernels: None }
}

impl EvalForward<'_> {
    /// For `fast` on the CPU, starts the crate's kernels (their worker threads), which
    /// [`EvalForward::evaluate`] then uses.
    ///
    /// # Errors
    /// [`Error::Torch`] when the worker threads cannot start.
    pub fn on_device(mut self, device: Device, classes: usize) -> Result<Self> {
        if self.kernels == Kernels::Fast && device == Device::Cpu {
            let k = LeNet::new(classes, lenet::threads())
                .map_err(|e| Error::Torch(tch::TchError::Kind(format!("fast CPU kernels: starting threads: {e}"))))?;
            self.cpu_kernels = Some(RefCell::new(k));
        }
        Ok(self)
    }

    /// The logits of whole images as stored, `uint8 [B, 3, 32, 32]` -> `float32 [B, classes]`:
    /// on the crate's kernels when [`EvalForward::on_device`] started them (they normalise as
    /// [`normalize`] does), else [`EvalForward::forward`] of the normalised batch. No gradient
    /// flows.
    pub fn evaluate(&self, images: &Tensor) -> Tensor {
        let kernels = self.cpu_kernels.as_ref().and_then(|k| {
            let (bytes, w) = (view::<u8>("the images", images, Kind::Uint8).ok()?, weights(self.net).ok()?);
            Some(Tensor::from_slice(&k.borrow_mut().logits(&w, bytes)).view([images.size()[0], -1]))
        });
        match kernels {
            Some(logits) => match self.temperature {
                Some(t) => logits / t,
                None => logits,
            },
            // Libtorch's path, also for a batch the kernels cannot take (not on the CPU).
            None => tch::no_grad(|| self.forward(&normalize(images))),
        }
    }

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
