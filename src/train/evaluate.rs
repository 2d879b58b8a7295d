//! Test-set evaluation, as the reference's `with torch.no_grad():` loop over the unshuffled test
//! `DataLoader`: mean of the per-batch mean losses, accuracy, accuracy per class, and (for
//! `tch-cifar10 eval`) the confusion matrix.

use serde::Serialize;
use tch::{nn::Module, Kind, Tensor};

use crate::{
    data::{normalize, Dataset},
    report::EvalMetrics,
};

/// Evaluates `model` on `data` (already on the model's device) in batches of `batch_size`.
pub fn evaluate(model: &impl Module, data: &Dataset, batch_size: usize) -> EvalMetrics {
    evaluate_with_confusion(model, data, batch_size).0
}

/// [`evaluate`], also returning the confusion matrix. The matrix is counted on the device, one
/// `bincount` of `label * K + prediction` per batch, and read once at the end; the accuracies
/// come from it (the diagonal over the row sums).
pub fn evaluate_with_confusion(model: &impl Module, data: &Dataset, batch_size: usize) -> (EvalMetrics, ConfusionMatrix) {
    let (m, c, _) = evaluate_inner(&|xs| model.forward(xs), data, batch_size, false);
    (m, c)
}

/// [`evaluate_with_confusion`], also returning every image's logits, `float32 [N, classes]` on
/// the data's device, in the data's order (for the calibration figures of `eval`).
pub fn evaluate_with_logits(model: &dyn Fn(&Tensor) -> Tensor, data: &Dataset, batch_size: usize) -> (EvalMetrics, ConfusionMatrix, Tensor) {
    let (m, c, logits) = evaluate_inner(model, data, batch_size, true);
    (m, c, logits.expect("logits kept when asked"))
}

fn evaluate_inner(model: &dyn Fn(&Tensor) -> Tensor, data: &Dataset, batch_size: usize, keep: bool) -> (EvalMetrics, ConfusionMatrix, Option<Tensor>) {
    let k = data.classes.len() as i64;
    tch::no_grad(|| {
        let device = data.images.device();
        // Python's `test_loss += loss.item()`: a sequential float64 sum, kept on the device.
        let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
        let mut batches = 0usize;
        let mut counts = Tensor::zeros([k * k], (Kind::Int64, device));
        let mut kept = Vec::new();
        for (xs, ys) in data.images.split(batch_size as i64, 0).iter().zip(data.labels.split(batch_size as i64, 0)) {
            let logits = model(&normalize(xs));
            if keep {
                kept.push(logits.to_kind(Kind::Float));
            }
            loss_sum += logits.cross_entropy_for_logits(&ys).to_kind(Kind::Double);
            batches += 1;
            let cells = &ys * k + logits.argmax(-1, false);
            counts += cells.bincount::<Tensor>(None, k * k);
        }
        let counts = Vec::<i64>::try_from(counts).expect("int64 counts");
        let confusion = ConfusionMatrix { classes: k as usize, counts: counts.iter().map(|&c| c as u64).collect() };
        let hits: u64 = (0..confusion.classes).map(|i| confusion.get(i, i)).sum();
        let metrics = EvalMetrics {
            loss: loss_sum.double_value(&[]) / batches.max(1) as f64,
            accuracy: hits as f64 / data.len().max(1) as f64,
            per_class_accuracy: confusion.per_class_accuracy(),
            images: data.len(),
        };
        let logits = keep.then(|| if kept.is_empty() { Tensor::zeros([0, k], (Kind::Float, device)) } else { Tensor::cat(&kept, 0) });
        (metrics, confusion, logits)
    })
}

/// Counts of (true label, predicted class) pairs over a split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfusionMatrix {
    classes: usize,
    /// Row-major `[true label][predicted class]`.
    counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// A matrix from rows indexed by true label, each holding counts indexed by prediction.
    ///
    /// # Panics
    /// When the rows are not all as long as there are rows (a programming error).
    pub fn from_rows(rows: &[Vec<u64>]) -> ConfusionMatrix {
        assert!(rows.iter().all(|r| r.len() == rows.len()), "a confusion matrix is square");
        ConfusionMatrix { classes: rows.len(), counts: rows.concat() }
    }

    /// Number of classes (rows and columns).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Images of class `label` predicted as `predicted`.
    pub fn get(&self, label: usize, predicted: usize) -> u64 {
        self.counts[label * self.classes + predicted]
    }

    /// Rows indexed by true label, each holding counts indexed by prediction.
    pub fn rows(&self) -> Vec<Vec<u64>> {
        self.counts.chunks(self.classes.max(1)).map(<[u64]>::to_vec).collect()
    }

    /// Images of each true class (row sums).
    pub fn totals(&self) -> Vec<u64> {
        self.counts.chunks(self.classes.max(1)).map(|r| r.iter().sum()).collect()
    }

    /// Accuracy of each class: the diagonal over the row sums (0 for a class with no image).
    pub fn per_class_accuracy(&self) -> Vec<f64> {
        self.totals()
            .iter()
            .enumerate()
            .map(|(i, &t)| if t == 0 { 0.0 } else { self.get(i, i) as f64 / t as f64 })
            .collect()
    }
}

impl Serialize for ConfusionMatrix {
    /// As rows: `[[count of label 0 predicted 0, ..], ..]`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.rows().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    /// "Predicts" by reading the class out of the first pixel: logits are one-hot at pixel value.
    #[derive(Debug)]
    struct PixelOracle(i64);

    impl Module for PixelOracle {
        fn forward(&self, xs: &Tensor) -> Tensor {
            // normalize maps byte b to (b/255 - 0.5)/0.5; undo it for the first pixel.
            let b = ((xs.select(1, 0).select(1, 0).select(1, 0) * 0.5 + 0.5) * 255.0).round().to_kind(Kind::Int64);
            b.one_hot(self.0).to_kind(Kind::Float)
        }
    }

    #[test]
    fn confusion_counts_label_by_prediction() {
        // Labels and predictions chosen by hand: rows are labels, columns predictions.
        let labels = [0i64, 0, 1, 2, 2, 2, 1];
        let preds = [0u8, 1, 1, 2, 0, 2, 1];
        let images = Tensor::zeros([7, 3, 32, 32], (Kind::Uint8, Device::Cpu));
        for (i, &p) in preds.iter().enumerate() {
            let _ = images.get(i as i64).get(0).get(0).get(0).fill_(i64::from(p));
        }
        let data = Dataset { images, labels: Tensor::from_slice(&labels), classes: vec!["a".into(), "b".into(), "c".into()] };
        let (m, c) = evaluate_with_confusion(&PixelOracle(3), &data, 3);
        assert_eq!(c.rows(), [vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 2]]);
        assert_eq!(m.per_class_accuracy, [0.5, 1.0, 2.0 / 3.0]);
        assert_eq!(m.accuracy, 5.0 / 7.0);
        assert_eq!(serde_json::to_string(&c).unwrap(), "[[1,1,0],[0,2,0],[1,0,2]]");
    }
}
