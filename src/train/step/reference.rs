//! The reference step: the PyTorch program's inner loop, op for op, so the numbers are PyTorch's
//! to the bit on the CPU.
//!
//! ```python
//! optimizer.zero_grad()
//! outputs = net(inputs)                      # inputs: [augmentation,] ToTensor() + Normalize(0.5, 0.5)
//! loss = criterion(outputs, labels)          # nn.CrossEntropyLoss([label_smoothing]): batch mean
//! loss.backward()
//! optimizer.step()                           # SGD(lr, momentum[, ...]), Adam or AdamW
//! ```

use tch::{nn::Module, Tensor};

use super::{Batch, Step, Tally};
use crate::{
    config::TrainConfig,
    data::normalize,
    error::Result,
    model::Net,
    recipe::{loss::Objective, optim::TensorOptimizer},
};

/// The reference step over [`TensorOptimizer`] (`torch.optim`'s update rules, op for op).
#[derive(Debug)]
pub(crate) struct Reference {
    opt: TensorOptimizer,
    objective: Objective,
}

impl Reference {
    /// `optim.SGD(net.parameters(), lr, momentum, ...)` (or `Adam`, `AdamW`) and the run's loss.
    pub(crate) fn new(cfg: &TrainConfig, net: &Net) -> Reference {
        Reference { opt: TensorOptimizer::new(cfg.optimizer_spec(), &net.parameters()), objective: cfg.recipe.objective() }
    }
}

impl Step for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn begin_epoch(&mut self, _epoch: usize, _lr: f64) -> Result<()> {
        Ok(())
    }

    fn step(&mut self, net: &Net, b: &Batch<'_>, tally: &mut Tally) -> Result<()> {
        let xs = normalize(&b.images_u8()?);
        let ys = b.labels.f_index_select(0, b.index)?;
        let logits = net.forward(&xs);
        let loss = self.objective.loss(&logits, &ys)?;
        self.opt.set_rates(b.rates);
        self.opt.backward_step(&loss)?; // zero_grad(); loss.backward(); step()
        tally.record(b.step, &loss, &logits, &ys);
        Ok(())
    }

    fn optimizer_state(&self) -> Vec<(String, Tensor)> {
        self.opt.state()
    }

    fn restore_optimizer_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        self.opt.restore(state)
    }
}
