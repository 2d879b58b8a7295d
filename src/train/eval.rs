//! Test-set evaluation, as the reference's `with torch.no_grad():` loop over the unshuffled test
//! `DataLoader`: mean of the per-batch mean losses, accuracy, and accuracy per class.

use serde::{Deserialize, Serialize};
use tch::{nn::Module, Kind, Tensor};

use crate::data::{normalize, Dataset};

/// Loss and accuracy on one split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Mean over batches of the batch-mean cross-entropy.
    pub loss: f64,
    /// Fraction of images whose argmax logit is the label.
    pub accuracy: f64,
    /// Accuracy of each class, indexed by label (NaN-free: a class with no image gets 0).
    pub per_class_accuracy: Vec<f64>,
    /// Images evaluated.
    pub images: usize,
}

/// Evaluates `model` on `data` (already on the model's device) in batches of `batch_size`.
pub fn evaluate(model: &impl Module, data: &Dataset, batch_size: usize) -> EvalMetrics {
    let classes = data.classes.len() as i64;
    tch::no_grad(|| {
        let device = data.images.device();
        // Python's `test_loss += loss.item()`: a sequential float64 sum, kept on the device.
        let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
        let mut batches = 0usize;
        let mut correct = Tensor::zeros([classes], (Kind::Int64, device));
        for (xs, ys) in data.images.split(batch_size as i64, 0).iter().zip(data.labels.split(batch_size as i64, 0)) {
            let logits = model.forward(&normalize(xs));
            loss_sum += logits.cross_entropy_for_logits(&ys).to_kind(Kind::Double);
            batches += 1;
            let hits = ys.masked_select(&logits.argmax(-1, false).eq_tensor(&ys));
            correct += hits.bincount::<Tensor>(None, classes);
        }
        let totals = Vec::<i64>::try_from(data.labels.bincount::<Tensor>(None, classes)).expect("int64 counts");
        let correct = Vec::<i64>::try_from(correct).expect("int64 counts");
        let hits: i64 = correct.iter().sum();
        EvalMetrics {
            loss: loss_sum.double_value(&[]) / batches.max(1) as f64,
            accuracy: hits as f64 / data.len().max(1) as f64,
            per_class_accuracy: correct.iter().zip(&totals).map(|(&c, &t)| if t == 0 { 0.0 } else { c as f64 / t as f64 }).collect(),
            images: data.len(),
        }
    })
}
