//! Whether the softmax's confidences can be trusted: the calibration figures of a classifier's
//! logits against the labels.
//!
//! With `p_i = softmax(z_i)` the probabilities of image `i` (computed in `f64`), its confidence
//! `c_i = max_k p_ik` and its prediction `argmax_k p_ik`:
//!
//! * **ECE**, the expected calibration error of Guo, Pleiss, Sun and Weinberger, "On Calibration
//!   of Modern Neural Networks" (ICML 2017), eq. 3: the confidences are cut into [`BINS`] = 15
//!   equal-width bins `B_m = {i : c_i in ((m-1)/M, m/M]}`, and
//!   `ECE = sum_m |B_m|/n * |acc(B_m) - conf(B_m)|`, with `acc` the fraction right and `conf`
//!   the mean confidence in the bin. (torchmetrics' `MulticlassCalibrationError(n_bins=15,
//!   norm="l1")` bins as `[(m-1)/M, m/M)`, which differs only for a confidence exactly on a bin
//!   edge.)
//! * **MCE**, the maximum calibration error (the same paper, eq. 5): `max_m |acc(B_m) - conf(B_m)|`
//!   over the non-empty bins.
//! * **NLL**: the mean of `-log p_iy` (the cross-entropy of the logits, as `nn.CrossEntropyLoss`
//!   over the whole set at once).
//! * **Brier score** (Brier 1950), multiclass: the mean over images of `sum_k (p_ik - [y_i = k])^2`,
//!   between 0 and 2.

use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// Equal-width confidence bins of the ECE (Guo et al. use 15).
pub const BINS: usize = 15;

/// One bin of the reliability diagram.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bin {
    /// Lower edge of the confidences in the bin (excluded).
    pub lower: f64,
    /// Upper edge (included).
    pub upper: f64,
    /// Images whose confidence falls in the bin.
    pub images: u64,
    /// Their mean confidence (0 for an empty bin).
    pub confidence: f64,
    /// The fraction of them classified right (0 for an empty bin).
    pub accuracy: f64,
}

/// The calibration figures of a set of predictions (see the module doc).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Calibration {
    /// Expected calibration error over [`BINS`] equal-width bins, a fraction in `[0, 1]`.
    pub ece: f64,
    /// Maximum calibration error over the non-empty bins, in `[0, 1]`.
    pub mce: f64,
    /// Mean negative log-likelihood of the labels (nats).
    pub nll: f64,
    /// Multiclass Brier score, in `[0, 2]`.
    pub brier: f64,
    /// The bins, in increasing confidence.
    pub bins: Vec<Bin>,
}

/// The calibration figures of `logits` (`[N, K]`, any float kind and device) against `labels`
/// (`int64 [N]`, in `0..K`). `N = 0` gives zeros.
pub fn calibration(logits: &Tensor, labels: &Tensor) -> Calibration {
    let (probs, labels, k) = host_probabilities(logits, labels);
    from_probabilities(&probs, &labels, k)
}

/// Softmax probabilities in `f64`, row-major `[N, K]`, with the labels, on the host.
fn host_probabilities(logits: &Tensor, labels: &Tensor) -> (Vec<f64>, Vec<i64>, usize) {
    let k = logits.size().get(1).copied().unwrap_or(0) as usize;
    let probs = tch::no_grad(|| logits.to_device(Device::Cpu).to_kind(Kind::Double).softmax(-1, Kind::Double));
    let probs = Vec::<f64>::try_from(probs.flatten(0, -1)).expect("float64 probabilities");
    let labels = Vec::<i64>::try_from(labels.to_device(Device::Cpu).to_kind(Kind::Int64)).expect("int64 labels");
    (probs, labels, k)
}

/// The figures from probabilities (row-major `[N, K]`, each row summing to 1) and labels.
pub fn from_probabilities(probs: &[f64], labels: &[i64], k: usize) -> Calibration {
    let n = labels.len();
    let mut count = [0u64; BINS];
    let mut conf_sum = [0f64; BINS];
    let mut right = [0u64; BINS];
    let (mut nll, mut brier) = (0f64, 0f64);
    for (row, &y) in probs.chunks(k.max(1)).zip(labels) {
        let (pred, c) = row.iter().copied().enumerate().fold((0, f64::NEG_INFINITY), |best, (j, p)| if p > best.1 { (j, p) } else { best });
        // The bin ((m-1)/M, m/M] holding c: ceil(c * M) - 1, clamped (c = 0 joins the first).
        let m = ((c * BINS as f64).ceil() as usize).clamp(1, BINS) - 1;
        count[m] += 1;
        conf_sum[m] += c;
        right[m] += u64::from(pred as i64 == y);
        let y = y as usize;
        nll -= row[y].ln();
        brier += row.iter().enumerate().map(|(j, &p)| (p - f64::from(u8::from(j == y))).powi(2)).sum::<f64>();
    }
    let bins: Vec<Bin> = (0..BINS)
        .map(|m| {
            let (images, nf) = (count[m], count[m].max(1) as f64);
            Bin {
                lower: m as f64 / BINS as f64,
                upper: (m + 1) as f64 / BINS as f64,
                images,
                confidence: conf_sum[m] / nf,
                accuracy: right[m] as f64 / nf,
            }
        })
        .collect();
    let total = n.max(1) as f64;
    let gaps = bins.iter().filter(|b| b.images > 0).map(|b| (b.images, (b.accuracy - b.confidence).abs()));
    Calibration {
        ece: gaps.clone().map(|(c, g)| c as f64 / total * g).sum(),
        mce: gaps.map(|(_, g)| g).fold(0.0, f64::max),
        nll: nll / total,
        brier: brier / total,
        bins,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes; in each confidence group, a fraction right equal to the confidence: 0.8 on
    /// 5 images with 4 right, 0.6 on 5 with 3 right. ECE and MCE are 0.
    #[test]
    fn confidences_equal_to_accuracies_give_zero_ece() {
        let mut probs = Vec::new();
        let mut labels = Vec::new();
        for (c, n, hits) in [(0.8, 5, 4), (0.6, 5, 3)] {
            for i in 0..n {
                probs.extend([c, 1.0 - c]);
                labels.push(if i < hits { 0 } else { 1 });
            }
        }
        let cal = from_probabilities(&probs, &labels, 2);
        assert!(cal.ece.abs() < 1e-12 && cal.mce.abs() < 1e-12, "{cal:?}");
        assert_eq!(cal.bins.iter().map(|b| b.images).sum::<u64>(), 10);
        // By hand: NLL = (4 ln(1/0.8) + ln(1/0.2) + 3 ln(1/0.6) + 2 ln(1/0.4)) / 10; Brier: a
        // right answer at c scores 2(1-c)^2, a wrong one 2c^2.
        let nll = (4.0 * -(0.8f64.ln()) - 0.2f64.ln() - 3.0 * 0.6f64.ln() - 2.0 * 0.4f64.ln()) / 10.0;
        let brier = (4.0 * 2.0 * 0.04 + 2.0 * 0.64 + 3.0 * 2.0 * 0.16 + 2.0 * 2.0 * 0.36) / 10.0;
        assert!((cal.nll - nll).abs() < 1e-12 && (cal.brier - brier).abs() < 1e-12, "{cal:?}");
    }

    #[test]
    fn an_overconfident_model_has_the_gap_as_its_ece() {
        // Confidence 0.9 on every image, half of them right: ECE = MCE = 0.4, in bin 14 (13/15, 14/15].
        let probs: Vec<f64> = (0..10).flat_map(|_| [0.9, 0.1]).collect();
        let labels: Vec<i64> = (0..10).map(|i| i % 2).collect();
        let cal = from_probabilities(&probs, &labels, 2);
        assert!((cal.ece - 0.4).abs() < 1e-12 && (cal.mce - 0.4).abs() < 1e-12, "{cal:?}");
        assert_eq!(cal.bins[13].images, 10);
        // A confidence on an edge belongs to the bin it closes: 1 is in (14/15, 1].
        let cal = from_probabilities(&[1.0, 0.0], &[0], 2);
        assert_eq!((cal.bins[14].images, cal.ece), (1, 0.0));
    }

    #[test]
    fn logits_go_through_softmax() {
        let logits = Tensor::from_slice(&[0f32, 0.0, 2.0, 0.0]).view([2, 2]);
        let cal = calibration(&logits, &Tensor::from_slice(&[0i64, 0]));
        let p = 1.0 / (1.0 + (-2f64).exp());
        assert!((cal.nll - (2f64.ln() - p.ln()) / 2.0).abs() < 1e-7, "{cal:?}");
    }
}
