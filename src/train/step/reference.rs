//! The reference step: the PyTorch program's inner loop, op for op, so the numbers are PyTorch's
//! to the bit on the CPU.
//!
//! ```python
//! optimizer.zero_grad()
//! outputs = net(inputs)                      # inputs: ToTensor() + Normalize(0.5, 0.5) of the batch
//! loss = criterion(outputs, labels)          # nn.CrossEntropyLoss(): mean over the batch
//! loss.backward()
//! optimizer.step()                           # SGD(lr, momentum)
//! ```

use tch::{nn, nn::Module, Tensor};

use super::{Batch, Step, Tally};
use crate::{config::TrainConfig, data::normalize, error::Result, model::Net, train::Sgd};

/// The reference step over libtorch's SGD (see [`Sgd`]).
#[derive(Debug)]
pub(crate) struct Reference {
    opt: Sgd,
}

impl Reference {
    /// `optim.SGD(net.parameters(), lr=cfg.learning_rate, momentum=cfg.momentum)`.
    ///
    /// # Errors
    /// A libtorch error creating the optimizer.
    pub(crate) fn new(cfg: &TrainConfig, vs: &nn::VarStore, net: &Net) -> Result<Reference> {
        Ok(Reference { opt: Sgd::new(vs, &net.parameters(), cfg.learning_rate, cfg.momentum)? })
    }
}

impl Step for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn begin_epoch(&mut self, _epoch: usize, lr: f64) -> Result<()> {
        self.opt.set_lr(lr);
        Ok(())
    }

    fn step(&mut self, net: &Net, b: &Batch<'_>, tally: &mut Tally) -> Result<()> {
        let xs = normalize(&b.images.index_select(0, b.index));
        let ys = b.labels.index_select(0, b.index);
        let logits = net.forward(&xs);
        let loss = logits.cross_entropy_for_logits(&ys);
        self.opt.backward_step(&loss); // zero_grad(); loss.backward(); step()
        tally.record(b.step, &loss, &logits, &ys);
        Ok(())
    }

    fn momentum_buffers(&self) -> Vec<(String, Tensor)> {
        self.opt.momentum_buffers()
    }

    fn restore_momentum(&mut self, buffers: &[(String, Tensor)], lr: f64) -> Result<()> {
        self.opt.restore_momentum(buffers, lr)
    }
}
