//! The one training configuration: defaults equal the reference program, validated once,
//! serialised with a run.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::train::finetune::Freeze;

use crate::{
    data::{folder::ResizeFilter, DatasetKind},
    device::DeviceSpec,
    error::{Error, Result},
};

/// PyTorch's default CPU generator seed (`torch.initial_seed()` in a fresh process): the
/// reference program never calls `torch.manual_seed`, so this seed reproduces it unmodified.
pub const PYTORCH_DEFAULT_SEED: i64 = 67_280_421_310_721;

/// Everything that decides a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Folder holding `cifar-10-batches-bin/` (or the `.bin` files themselves).
    pub data_dir: PathBuf,
    /// Passes over the training set (reference: 50).
    pub epochs: usize,
    /// Images per SGD step (reference: 100).
    pub batch_size: usize,
    /// Initial learning rate (reference: `SGD(lr=0.001)`).
    pub learning_rate: f64,
    /// SGD momentum (reference: 0.9).
    pub momentum: f64,
    /// `StepLR(step_size=20)`: epochs between learning-rate decays.
    pub step_size: usize,
    /// `StepLR(gamma=0.1)`: factor applied at each decay.
    pub gamma: f64,
    /// `torch.manual_seed(seed)`: decides the initial weights and every epoch's shuffle.
    pub seed: i64,
    /// Where to train.
    pub device: DeviceSpec,
    /// libtorch intra-op threads; `None` keeps libtorch's default (the physical cores).
    pub threads: Option<usize>,
    /// Evaluate on the test set every N epochs as well as at the end; `None`: only at the end.
    pub eval_every: Option<usize>,
    /// The kind of dataset in `data_dir`.
    #[serde(default)]
    pub dataset: DatasetKind,
    /// Filter for resizing image-folder images that are not 32x32.
    #[serde(default)]
    pub resize_filter: ResizeFilter,
    /// Training images held out for validation each epoch (`random_split` seeded by `seed`);
    /// 0: none, the reference.
    #[serde(default)]
    pub val_size: usize,
    /// Stop when validation accuracy has not improved for this many epochs, keeping the best
    /// epoch's weights; `None`: never (the reference). Needs `val_size`.
    #[serde(default)]
    pub early_stop_patience: Option<usize>,
    /// Save the training state every N epochs (and after the last, and on Ctrl-C).
    pub checkpoint_every: usize,
    /// Fine-tuning: start from these trained weights (a model file or a run directory) instead
    /// of PyTorch's initialisation.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// Fine-tuning: parameters held fixed.
    #[serde(default)]
    pub freeze: Freeze,
    /// The run directory (`config.json`, metrics, checkpoints); `None`: `runs/YYYYMMDD-HHMMSS`.
    pub out_dir: Option<PathBuf>,
    /// Also write TensorBoard event files into the run directory (`report::tensorboard`).
    #[serde(default)]
    pub tensorboard: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data_dir: PathBuf::from("data"),
            epochs: 50,
            batch_size: 100,
            learning_rate: 1e-3,
            momentum: 0.9,
            step_size: 20,
            gamma: 0.1,
            seed: PYTORCH_DEFAULT_SEED,
            device: DeviceSpec::Auto,
            threads: None,
            eval_every: None,
            dataset: DatasetKind::Cifar10,
            resize_filter: ResizeFilter::Bilinear,
            val_size: 0,
            early_stop_patience: None,
            checkpoint_every: 1,
            init_from: None,
            freeze: Freeze::None,
            out_dir: None,
            tensorboard: false,
        }
    }
}

impl TrainConfig {
    /// Checks every value once, before any work starts.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        fn bad(field: &'static str, value: impl ToString, expected: &str) -> Result<()> {
            Err(Error::InvalidConfig { field, value: value.to_string(), expected: expected.to_string() })
        }
        let finite_pos = |x: f64| x.is_finite() && x > 0.0;
        if self.epochs == 0 {
            return bad("epochs", self.epochs, "at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch-size", self.batch_size, "at least 1");
        }
        if !finite_pos(self.learning_rate) {
            return bad("lr", self.learning_rate, "a finite number above 0");
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad("momentum", self.momentum, "a number in [0, 1)");
        }
        if self.step_size == 0 {
            return bad("step-size", self.step_size, "at least 1");
        }
        if !(finite_pos(self.gamma) && self.gamma <= 1.0) {
            return bad("gamma", self.gamma, "a number in (0, 1]");
        }
        if self.seed < 0 {
            return bad("seed", self.seed, "a non-negative integer");
        }
        if self.threads == Some(0) {
            return bad("threads", 0, "at least 1");
        }
        if self.freeze != Freeze::None && self.init_from.is_none() {
            return bad("freeze", "features", "fine-tuning: --freeze needs trained weights (--from)");
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint-every", 0, "at least 1");
        }
        if self.eval_every == Some(0) {
            return bad("eval-every", 0, "at least 1");
        }
        match self.early_stop_patience {
            Some(0) => return bad("early-stop-patience", 0, "at least 1"),
            Some(p) if self.val_size == 0 => return bad("early-stop-patience", p, "needs a validation split (--val-size N)"),
            _ => {}
        }
        Ok(())
    }

    /// Whether the test set is evaluated after `epoch` (1-based): every `eval_every` epochs and
    /// after the last.
    pub fn evaluates_after(&self, epoch: usize) -> bool {
        epoch == self.epochs || self.eval_every.is_some_and(|n| epoch % n == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_reference_schedule_and_valid() {
        let c = TrainConfig::default();
        assert_eq!((c.epochs, c.batch_size, c.step_size), (50, 100, 20));
        assert_eq!((c.learning_rate, c.momentum, c.gamma), (1e-3, 0.9, 0.1));
        c.validate().unwrap();
    }

    #[test]
    fn each_bad_value_is_named() {
        let cases: [(&str, fn(&mut TrainConfig)); 12] = [
            ("checkpoint-every", |c| c.checkpoint_every = 0),
            ("epochs", |c| c.epochs = 0),
            ("batch-size", |c| c.batch_size = 0),
            ("lr", |c| c.learning_rate = -0.1),
            ("lr", |c| c.learning_rate = f64::NAN),
            ("momentum", |c| c.momentum = 1.0),
            ("step-size", |c| c.step_size = 0),
            ("gamma", |c| c.gamma = 0.0),
            ("threads", |c| c.threads = Some(0)),
            ("eval-every", |c| c.eval_every = Some(0)),
            ("early-stop-patience", |c| (c.val_size, c.early_stop_patience) = (100, Some(0))),
            ("early-stop-patience", |c| c.early_stop_patience = Some(3)),
        ];
        for (field, set) in cases {
            let mut c = TrainConfig::default();
            set(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid {field} =")), "{err}");
        }
    }

    #[test]
    fn evaluates_every_n_and_at_the_end() {
        let c = TrainConfig { epochs: 7, eval_every: Some(3), ..TrainConfig::default() };
        let at: Vec<_> = (1..=7).filter(|&e| c.evaluates_after(e)).collect();
        assert_eq!(at, [3, 6, 7]);
        let c = TrainConfig { epochs: 7, ..TrainConfig::default() };
        assert_eq!((1..=7).filter(|&e| c.evaluates_after(e)).count(), 1);
    }

    #[test]
    fn round_trips_through_json() {
        let c = TrainConfig {
            device: DeviceSpec::Cuda(1),
            threads: Some(2),
            dataset: DatasetKind::Folder,
            resize_filter: ResizeFilter::Lanczos3,
            val_size: 5000,
            early_stop_patience: Some(4),
            ..TrainConfig::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""dataset":"folder""#) && json.contains(r#""resize_filter":"lanczos3""#), "{json}");
        let back: TrainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn a_config_without_the_data_fields_reads_as_the_reference() {
        let mut json = serde_json::to_value(TrainConfig::default()).unwrap();
        for field in ["dataset", "resize_filter", "val_size", "early_stop_patience"] {
            json.as_object_mut().unwrap().remove(field);
        }
        assert_eq!(serde_json::from_value::<TrainConfig>(json).unwrap(), TrainConfig::default());
    }
}
