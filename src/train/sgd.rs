//! SGD with momentum whose state can be saved and restored exactly.
//!
//! The arithmetic is libtorch's own `torch::optim::SGD` (tch's `nn::Sgd`), the same ops as
//! Python's `torch.optim.SGD` (`buf = grad.clone()` on the first step, then
//! `buf.mul_(momentum).add_(grad)`; `param.add_(buf, alpha=-lr)`), so numbers match PyTorch. tch
//! hides that optimizer's momentum buffers, so this keeps a shadow copy updated with the very
//! same two ops (bit-identical by construction), and restores a saved buffer by priming: one
//! step at learning rate 0 whose gradient is exactly the saved buffer, which the C++ optimizer
//! then clones as its own (`param + (-0) * buf == param`).

use tch::{nn, nn::OptimizerConfig, Tensor};

use crate::error::Result;

/// `torch.optim.SGD(params, lr, momentum)` (no dampening, no Nesterov, no weight decay) with
/// readable momentum buffers.
pub struct Sgd {
    opt: nn::Optimizer,
    momentum: f64,
    /// `(name, parameter, momentum buffer once a step has run)`, in `named_parameters()` order.
    params: Vec<(String, Tensor, Option<Tensor>)>,
}

impl std::fmt::Debug for Sgd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sgd").field("momentum", &self.momentum).field("params", &self.params.len()).finish()
    }
}

impl Sgd {
    /// An optimizer over every trainable variable of `vs`; `params` names them (PyTorch's names)
    /// for the saved state.
    ///
    /// # Errors
    /// A libtorch error creating the optimizer.
    pub fn new(vs: &nn::VarStore, params: &[(&str, &Tensor)], lr: f64, momentum: f64) -> Result<Sgd> {
        let opt = nn::sgd(momentum, 0.0, 0.0, false).build(vs, lr)?;
        let params = params.iter().map(|(n, p)| (n.to_string(), p.shallow_clone(), None)).collect();
        Ok(Sgd { opt, momentum, params })
    }

    /// Sets the learning rate (what `scheduler.step()` does between epochs).
    pub fn set_lr(&mut self, lr: f64) {
        self.opt.set_lr(lr);
    }

    /// `optimizer.zero_grad(); loss.backward(); optimizer.step()`.
    pub fn backward_step(&mut self, loss: &Tensor) {
        self.opt.backward_step(loss);
        tch::no_grad(|| {
            for (_, p, buf) in &mut self.params {
                let grad = p.grad();
                if !grad.defined() {
                    continue; // frozen: the C++ optimizer skips it too
                }
                match buf {
                    None => *buf = Some(grad.copy()),
                    Some(b) => {
                        let _ = b.g_mul_scalar_(self.momentum).g_add_(&grad);
                    }
                }
            }
        });
    }

    /// The momentum buffers so far, by parameter name (none before the first step).
    pub fn momentum_buffers(&self) -> Vec<(String, Tensor)> {
        self.params.iter().filter_map(|(n, _, b)| b.as_ref().map(|b| (n.clone(), b.shallow_clone()))).collect()
    }

    /// Installs saved momentum buffers (by parameter name) in the optimizer, leaving every
    /// parameter unchanged; the next step continues exactly as the run that saved them.
    ///
    /// # Errors
    /// A libtorch error (for example a buffer of the wrong shape).
    pub fn restore_momentum(&mut self, buffers: &[(String, Tensor)], lr: f64) -> Result<()> {
        if buffers.is_empty() {
            return Ok(());
        }
        // d/dp sum(p * buf) = 1 * buf = buf exactly; parameters without a buffer get no gradient.
        let mut loss: Option<Tensor> = None;
        for (name, p, shadow) in &mut self.params {
            if let Some((_, b)) = buffers.iter().find(|(n, _)| n == name) {
                let b = b.to_device(p.device()).detach();
                let term = p.f_mul(&b)?.sum(tch::Kind::Float);
                loss = Some(match loss {
                    None => term,
                    Some(l) => l + term,
                });
                *shadow = Some(b);
            }
        }
        let loss = loss.expect("at least one buffer matched a parameter");
        self.opt.set_lr(0.0);
        self.opt.backward_step(&loss);
        self.opt.zero_grad();
        self.opt.set_lr(lr);
        Ok(())
    }
}
