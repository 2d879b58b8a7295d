//! The training objective: `nn.CrossEntropyLoss(label_smoothing=eps)` (the reference: `eps = 0`).
//! The formula and its gradient are in [`crate::softmax`]; here is how each step kind computes
//! it: the reference step calls the very libtorch function PyTorch's `F.cross_entropy` calls,
//! and the fast CPU kernels take the soft targets [`Objective::target`].

use tch::{Reduction, Tensor};

use crate::error::Result;

/// The loss a run trains with.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Objective {
    /// `label_smoothing`, in `[0, 1)`.
    pub label_smoothing: f64,
}

impl Objective {
    /// The batch-mean loss of `logits` `[B, K]` against `labels` `[B]`, as PyTorch computes it:
    /// `log_softmax` + `nll_loss` without smoothing (tch's `cross_entropy_for_logits`, which is
    /// what `F.cross_entropy` runs then), ATen's `cross_entropy_loss` with it.
    ///
    /// # Errors
    /// A libtorch error (a label outside the classes).
    pub fn loss(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        Ok(match self.label_smoothing {
            0.0 => logits.f_log_softmax(-1, tch::Kind::Float)?.f_nll_loss(labels, None::<Tensor>, Reduction::Mean, -100)?,
            eps => logits.f_cross_entropy_loss(labels, None::<Tensor>, Reduction::Mean, -100, eps)?,
        })
    }

    /// The soft target of class `class` for an image labelled `label` among `classes`:
    /// `(1 - eps) [class = label] + eps / classes`, in float32.
    #[inline]
    pub fn target(&self, class: usize, label: usize, classes: usize) -> f32 {
        let eps = self.label_smoothing;
        let q = if class == label { 1.0 - eps } else { 0.0 } + eps / classes as f64;
        q as f32
    }
}
