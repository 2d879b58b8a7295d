//! `tch-cifar10 calibrate`: temperature scaling of a saved model ([`crate::eval::temperature`]).
//! Fits one temperature on the validation split (the run's own `--val-size` split, rebuilt from
//! its `config.json`, or one given here), reports the calibration figures of the test split
//! before and after ([`crate::eval::calibration`]), and writes the model file again with the
//! temperature in its metadata, which `eval` and `predict` then apply.

use std::{fmt, path::PathBuf};

use serde::Serialize;

use crate::{
    checkpoint::{load_model_with_classes, model_path, save_model_with_temperature},
    config::MAX_BATCH_SIZE,
    data::{self, split},
    error::{Error, Result},
    eval::{
        calibration::{self, Calibration},
        check_classes, data_choice, forward, run_config, temperature, EvalOptions,
    },
    report::escape_control,
    train::evaluate::evaluate_with_logits,
};

/// What `calibrate` fits, on what, and where it writes.
#[derive(Clone, Debug)]
pub struct CalibrateOptions {
    /// The model file (or a run directory), and the data flags, as `eval` takes them.
    pub eval: EvalOptions,
    /// Validation images held out of the training split [default: the run's `--val-size`].
    pub val_size: Option<usize>,
    /// Seed of the held-out split [default: the run's `--seed`].
    pub seed: Option<i64>,
    /// The model file to write [default: the model file itself, when it is a `.safetensors`].
    pub out: Option<PathBuf>,
}

/// Figures of one split, before and after the temperature.
#[derive(Clone, Debug, Serialize)]
pub struct BeforeAfter {
    /// Images of the split.
    pub images: usize,
    /// Fraction classified right (the same before and after: the argmax does not change).
    pub accuracy: f64,
    /// The raw logits' calibration.
    pub before: Calibration,
    /// The calibration of the logits divided by the temperature.
    pub after: Calibration,
}

/// The result of `calibrate`; `Display` is the text report, `Serialize` the `--json` one.
#[derive(Clone, Debug, Serialize)]
pub struct CalibrateReport {
    /// The model file read.
    pub checkpoint: PathBuf,
    /// The model file written, with the temperature.
    pub out: PathBuf,
    /// The fitted temperature.
    pub temperature: f64,
    /// The fit: golden-section search on log T minimising the validation NLL.
    pub method: String,
    /// The validation split the temperature was fitted on.
    pub validation: BeforeAfter,
    /// The test split.
    pub test: BeforeAfter,
}

/// Runs `calibrate` (see the module doc). Nothing is written unless every step succeeded.
///
/// # Errors
/// A bad batch size, device, model file or data (as `eval`); no validation split (the run was
/// trained without `--val-size` and none is given); an output that is not a `.safetensors` file
/// when none is given for a PyTorch file; an unwritable output.
pub fn run_calibrate(opts: &CalibrateOptions) -> Result<CalibrateReport> {
    let e = &opts.eval;
    if !(1..=MAX_BATCH_SIZE).contains(&e.batch_size) {
        return Err(Error::InvalidConfig { field: "batch-size", value: e.batch_size.to_string(), expected: format!("1 to {MAX_BATCH_SIZE}") });
    }
    let path = model_path(&e.checkpoint);
    let out = match &opts.out {
        Some(out) => out.clone(),
        None if path.extension().is_some_and(|x| x == "safetensors") => path.clone(),
        None => {
            return Err(Error::InvalidConfig {
                field: "out",
                value: "(none)".into(),
                expected: format!("a .safetensors file to write the calibrated model to: {} is not one, and is left as it is", path.display()),
            })
        }
    };
    let run = run_config(&e.checkpoint)?;
    let val_size = opts.val_size.or(run.as_ref().map(|c| c.val_size)).filter(|&n| n > 0).ok_or_else(|| Error::InvalidConfig {
        field: "val-size",
        value: "0".into(),
        expected: format!(
            "a validation split to fit the temperature on, and {} has none: train with --val-size N (for example 5000), \
             which keeps N training images out of training, then calibrate that run; or pass --val-size N (and --seed S) \
             here, for a model that was not trained on those images",
            e.checkpoint.display()
        ),
    })?;
    let seed = opts.seed.or(run.as_ref().map(|c| c.seed)).unwrap_or(crate::config::TrainConfig::default().seed);
    let device = e.device.resolve()?;
    let model = load_model_with_classes(&path, device, e.classes.as_deref())?;
    let choice = data_choice(e)?;
    let (train, test) = data::load(choice.dataset, &choice.data_dir, choice.resize_filter, None)?;
    check_classes(&test.classes, &model.classes, model.class_source, choice.dataset, &path, &choice.data_dir)?;
    let (_, val) = split::holdout(&train, val_size, seed)?;
    drop(train);
    let net = forward::forward(&model.net, e.kernels, None);
    let split_logits = |d: &data::Dataset| {
        let (m, _, logits) = evaluate_with_logits(&|xs| net.evaluate(xs), &d.to_device(device), e.batch_size);
        (m.accuracy, logits)
    };
    let (val_acc, val_logits) = split_logits(&val);
    let t = temperature::fit_temperature(&val_logits, &val.labels);
    if !(1.001 * temperature::T_MIN..=0.999 * temperature::T_MAX).contains(&t) {
        tracing::warn!(
            "the fitted temperature {t:.4} is at the end of the range searched ({} to {}): the validation NLL keeps falling \
             beyond it (every validation image right, or none), so a larger validation split tells more",
            temperature::T_MIN,
            temperature::T_MAX
        );
    }
    let figures = |acc: f64, logits: &tch::Tensor, labels: &tch::Tensor| BeforeAfter {
        images: labels.size()[0] as usize,
        accuracy: acc,
        before: calibration::calibration(logits, labels),
        after: calibration::calibration(&(logits / t), labels),
    };
    let validation = figures(val_acc, &val_logits, &val.labels);
    let (test_acc, test_logits) = split_logits(&test);
    let test = figures(test_acc, &test_logits, &test.labels);
    save_model_with_temperature(&out, &model.net, &model.classes, Some(t))?;
    Ok(CalibrateReport {
        checkpoint: path,
        out,
        temperature: t,
        method: format!(
            "golden-section search on log T in [{}, {}] minimising the validation NLL (to {} in log T)",
            temperature::T_MIN,
            temperature::T_MAX,
            temperature::TOLERANCE
        ),
        validation,
        test,
    })
}

impl fmt::Display for CalibrateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Temperature: {:.4} (fitted on {} validation images)", self.temperature, self.validation.images)?;
        for (name, s) in [("validation", &self.validation), ("test", &self.test)] {
            writeln!(f, "{name:10}  accuracy {:6.2} %  (unchanged)", 100.0 * s.accuracy)?;
            writeln!(
                f,
                "{:10}  ECE {:.2} % -> {:.2} %   MCE {:.2} % -> {:.2} %   NLL {:.4} -> {:.4}   Brier {:.4} -> {:.4}",
                "",
                100.0 * s.before.ece,
                100.0 * s.after.ece,
                100.0 * s.before.mce,
                100.0 * s.after.mce,
                s.before.nll,
                s.after.nll,
                s.before.brier,
                s.after.brier
            )?;
        }
        writeln!(f, "Written to {} (eval and predict apply it; --no-temperature shows the raw logits)", escape_control(&self.out.display().to_string()))
    }
}
