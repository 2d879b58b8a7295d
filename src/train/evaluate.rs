//! Test-set evaluation, as the reference's `with torch.no_grad():` loop over the unshuffled test
//! `DataLoader`: mean of the per-batch mean losses, accuracy, accuracy per class, and (for
//! `tch-cifar10 eval`) the confusion matrix.

use serde::Serialize;
use tch::{nn::Module, Kind, Tensor};

use crate::{
    data::{normalize, Dataset},
    error::{Error, Result},
    kernels::lenet::{LeNet, IMAGE},
    model::Net,
    report::EvalMetrics,
    train::step::fast_cpu::{unfit, view, weights},
};

/// Evaluates `model` on `data` (already on the model's device) in batches of `batch_size`.
pub fn evaluate(model: &impl Module, data: &Dataset, batch_size: usize) -> EvalMetrics {
    evaluate_with_confusion(model, data, batch_size).0
}

/// [`evaluate`], also returning the confusion matrix. The matrix is counted on the device, one
/// `bincount` of `label * K + prediction` per batch, and read once at the end; the accuracies
/// come from it (the diagonal over the row sums).
pub fn evaluate_with_confusion(model: &impl Module, data: &Dataset, batch_size: usize) -> (EvalMetrics, ConfusionMatrix) {
    let (m, c, _) = evaluate_inner(&|xs| model.forward(&normalize(xs)), data, batch_size, false);
    (m, c)
}

/// [`evaluate_with_confusion`], also returning every image's logits, `float32 [N, classes]` on
/// the data's device, in the data's order (for the calibration figures of `eval`). `model` gets
/// each batch as stored, `uint8 [B, 3, 32, 32]`, and normalises it itself (with
/// [`normalize`], or inside this crate's kernels).
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
            let logits = model(xs);
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

/// [`evaluate_with_confusion`] on this crate's CPU kernels (`--kernels fast` on the CPU): the
/// logits of each batch from [`LeNet::logits`] and the rest on the host, the same figures within
/// rounding (each image's loss `logsumexp(z) - z[label]` in float32, as libtorch's
/// `cross_entropy`; the batch means and their sum in float64; the prediction the first largest
/// logit, as `argmax`). No libtorch operator runs, so none of its threads wake.
///
/// # Errors
/// `data` or a parameter of `net` that is not a contiguous CPU tensor of the expected type and
/// shape, or a label outside the network's classes.
pub(crate) fn evaluate_on_kernels(kernels: &mut LeNet, net: &Net, data: &Dataset, batch_size: usize) -> Result<(EvalMetrics, ConfusionMatrix)> {
    let w = weights(net)?;
    let k = w[9].len();
    if data.images.dim() != 4 || data.images.size()[1..] != [3, 32, 32] {
        return Err(unfit("the images", &data.images, "[N, 3, 32, 32]"));
    }
    let (images, labels) = (view::<u8>("the images", &data.images, Kind::Uint8)?, view::<i64>("the labels", &data.labels, Kind::Int64)?);
    if labels.len() * IMAGE != images.len() {
        return Err(unfit("the labels", &data.labels, &format!("one per image ({})", images.len() / IMAGE)));
    }
    if let Some(y) = labels.iter().find(|y| !(0..k as i64).contains(y)) {
        return Err(Error::InvalidConfig { field: "label", value: y.to_string(), expected: format!("a class of the network's {k} outputs") });
    }
    let mut confusion = ConfusionMatrix { classes: k, counts: vec![0; k * k] };
    let (mut loss_sum, mut batches) = (0f64, 0usize);
    for (xs, ys) in images.chunks(batch_size.max(1) * IMAGE).zip(labels.chunks(batch_size.max(1))) {
        let logits = kernels.logits(&w, xs);
        let mut batch_loss = 0f64;
        for (z, &y) in logits.chunks(k).zip(ys) {
            let (mut m, mut arg) = (z[0], 0);
            for (c, &v) in z.iter().enumerate().skip(1) {
                if v > m {
                    (m, arg) = (v, c);
                }
            }
            let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
            batch_loss += f64::from(lse - z[y as usize]);
            confusion.counts[y as usize * k + arg] += 1;
        }
        loss_sum += batch_loss / ys.len() as f64;
        batches += 1;
    }
    let hits: u64 = (0..k).map(|i| confusion.get(i, i)).sum();
    let metrics = EvalMetrics {
        loss: loss_sum / batches.max(1) as f64,
        accuracy: hits as f64 / data.len().max(1) as f64,
        per_class_accuracy: confusion.per_class_accuracy(),
        images: data.len(),
    };
    Ok((metrics, confusion))
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

    /// A PyTorch-initialised `Net` and `n` random images of `classes` labels.
    fn synthetic(classes: i64, n: i64, seed: i64) -> (tch::nn::VarStore, Net, Dataset) {
        let _rng = crate::rng::lock_global_rng();
        tch::manual_seed(seed);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), classes);
        net.init_pytorch();
        let images = Tensor::randint(256, [n, 3, 32, 32], (Kind::Uint8, Device::Cpu));
        let labels = Tensor::randint(classes, [n], (Kind::Int64, Device::Cpu));
        (vs, net, Dataset { images, labels, classes: (0..classes).map(|c| c.to_string()).collect() })
    }

    #[test]
    fn the_kernels_evaluate_as_libtorch_within_rounding_at_any_thread_count() {
        // 47 images in batches of 10: a ragged last batch, whose mean has another divisor.
        let (_vs, net, data) = synthetic(10, 47, 5);
        let (want, want_confusion) = evaluate_with_confusion(&net, &data, 10);
        for threads in [1, 2, 4] {
            let mut k = LeNet::new(10, threads).unwrap();
            let (got, confusion) = evaluate_on_kernels(&mut k, &net, &data, 10).unwrap();
            assert_eq!(confusion, want_confusion, "{threads} threads: every image predicted alike");
            assert!((got.loss - want.loss).abs() < 1e-5 * want.loss, "{threads} threads: loss {} against {}", got.loss, want.loss);
            assert_eq!((got.accuracy, &got.per_class_accuracy, got.images), (want.accuracy, &want.per_class_accuracy, want.images));
        }
    }

    #[test]
    fn the_kernels_refuse_a_label_outside_the_classes_and_images_of_another_shape() {
        let (_vs, net, data) = synthetic(4, 6, 6);
        let mut k = LeNet::new(4, 1).unwrap();
        let with = |images: Tensor, labels: Tensor| Dataset { images, labels, classes: data.classes.clone() };
        let bad = with(data.images.shallow_clone(), Tensor::from_slice(&[0i64, 1, 2, 3, 4, 0]));
        let err = evaluate_on_kernels(&mut k, &net, &bad, 4).unwrap_err().to_string();
        assert!(err.contains("label") && err.contains('4') && err.contains("4 outputs"), "{err}");
        let small = with(Tensor::zeros([6, 3, 16, 16], (Kind::Uint8, Device::Cpu)), data.labels.shallow_clone());
        let err = evaluate_on_kernels(&mut k, &net, &small, 4).unwrap_err().to_string();
        assert!(err.contains("[N, 3, 32, 32]"), "{err}");
        let floats = with(data.images.to_kind(Kind::Float), data.labels.shallow_clone());
        assert!(evaluate_on_kernels(&mut k, &net, &floats, 4).is_err());
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
