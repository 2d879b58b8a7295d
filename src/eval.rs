//! `tch-cifar10 eval`: a saved model (see [`crate::checkpoint::model_file`]) on the CIFAR-10
//! test split, as the reference's closing test loop computes it: mean of the batch-mean losses,
//! accuracy, accuracy per class, and the confusion matrix (rows: true class, columns: predicted),
//! as a text table or JSON.

use std::{fmt, path::PathBuf};

use serde::Serialize;

use crate::{
    checkpoint::{load_model_with_classes, ClassSource},
    config::MAX_BATCH_SIZE,
    data,
    device::{device_name, DeviceSpec},
    error::{Error, Result},
    report::escape_control,
    train::evaluate::{evaluate_with_confusion, ConfusionMatrix},
};

/// What `eval` evaluates, and where.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// A model file, or a run directory holding `model.safetensors`.
    pub checkpoint: PathBuf,
    /// Folder holding `cifar-10-batches-bin/` (or the `.bin` files themselves).
    pub data_dir: PathBuf,
    /// Where to evaluate.
    pub device: DeviceSpec,
    /// Images per forward pass (the loss is the mean of batch means, as the reference's).
    pub batch_size: usize,
    /// Class names overriding (or supplying) the file's.
    pub classes: Option<Vec<String>>,
}

/// Accuracy of one class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassAccuracy {
    /// Class name.
    pub class: String,
    /// Test images of this class.
    pub images: u64,
    /// Fraction of them classified right.
    pub accuracy: f64,
}

/// The result of `eval`; `Display` is the text report, `Serialize` the `--json` one.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// The model file evaluated.
    pub checkpoint: PathBuf,
    /// The test file's folder.
    pub data_dir: PathBuf,
    /// The device used (`cpu`, `cuda:0`).
    pub device: String,
    /// Test images evaluated.
    pub images: usize,
    /// Mean over batches of the batch-mean cross-entropy.
    pub loss: f64,
    /// Fraction of images classified right.
    pub accuracy: f64,
    /// Per class, in label order.
    pub per_class: Vec<ClassAccuracy>,
    /// Class names, in label order (the rows and columns of `confusion`).
    pub classes: Vec<String>,
    /// `confusion[label][predicted]`: test images of class `label` predicted as `predicted`.
    pub confusion: ConfusionMatrix,
}

/// Runs `eval`: loads the model and the test split, evaluates, and reports.
///
/// # Errors
/// An invalid batch size or device, a missing or bad model file, missing or malformed data, or a
/// model whose number of outputs differs from the data's number of classes.
pub fn run_eval(opts: &EvalOptions) -> Result<EvalReport> {
    if !(1..=MAX_BATCH_SIZE).contains(&opts.batch_size) {
        return Err(Error::InvalidConfig {
            field: "batch-size",
            value: opts.batch_size.to_string(),
            expected: format!("1 to {MAX_BATCH_SIZE}"),
        });
    }
    let device = opts.device.resolve()?;
    let path = crate::run_state::model_file(&opts.checkpoint)?;
    let model = load_model_with_classes(&path, device, opts.classes.as_deref())?;
    if model.class_source == ClassSource::Cifar10Default {
        tracing::info!("{} names no classes; using CIFAR-10's ({})", path.display(), crate::report::escape::names(&model.classes));
    }
    let test = data::cifar::load_test(&opts.data_dir)?;
    if test.classes.len() != model.classes.len() {
        return Err(Error::InvalidConfig {
            field: "checkpoint",
            value: path.display().to_string(),
            expected: format!(
                "a model with one output per class of the data ({} in {}); it has {}",
                test.classes.len(),
                opts.data_dir.display(),
                model.classes.len()
            ),
        });
    }
    if test.classes != model.classes {
        tracing::warn!(
            "class names differ: the data has {}, the model {}; reporting the model's",
            crate::report::escape::names(&test.classes),
            crate::report::escape::names(&model.classes)
        );
    }
    let (m, confusion) = evaluate_with_confusion(&model.net, &test.to_device(device), opts.batch_size);
    if !m.loss.is_finite() {
        // NaN or infinite logits make the loss so; their argmax would be meaningless.
        return Err(Error::NonFiniteOutput { path, what: format!("the test loss is {}", m.loss) });
    }
    let per_class = model
        .classes
        .iter()
        .zip(confusion.totals())
        .zip(&m.per_class_accuracy)
        .map(|((class, images), &accuracy)| ClassAccuracy { class: class.clone(), images, accuracy })
        .collect();
    Ok(EvalReport {
        checkpoint: path,
        data_dir: opts.data_dir.clone(),
        device: device_name(device),
        images: m.images,
        loss: m.loss,
        accuracy: m.accuracy,
        per_class,
        classes: model.classes,
        confusion,
    })
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Class names and paths come from files: printed with their control characters escaped.
        let path = self.checkpoint.display().to_string();
        writeln!(f, "Model: {} ({} classes, on {})", escape_control(&path), self.classes.len(), self.device)?;
        // The reference program's closing lines.
        writeln!(f, "Accuracy of the network on the {} test images: {:.2} %", self.images, 100.0 * self.accuracy)?;
        writeln!(f, "Test loss: {:.4}", self.loss)?;
        let names: Vec<_> = self.classes.iter().map(|c| escape_control(c)).collect();
        let name_w = names.iter().map(|c| c.chars().count()).max().unwrap_or(0).max(5);
        for c in &self.per_class {
            let class = escape_control(&c.class);
            writeln!(f, "Accuracy for class: {class:name_w$} is {:5.1} %  ({} images)", 100.0 * c.accuracy, c.images)?;
        }
        writeln!(f)?;
        writeln!(f, "Confusion matrix (rows: true class, columns: predicted class by number):")?;
        let k = self.classes.len();
        let max = self.confusion.rows().iter().flatten().copied().max().unwrap_or(0);
        let cell_w = max.to_string().len().max(k.saturating_sub(1).to_string().len()) + 1;
        let idx_w = k.saturating_sub(1).to_string().len();
        let label_w = idx_w + 1 + name_w;
        write!(f, "{:label_w$} |", "")?;
        for j in 0..k {
            write!(f, "{j:>cell_w$}")?;
        }
        writeln!(f)?;
        writeln!(f, "{}-+{}", "-".repeat(label_w), "-".repeat(cell_w * k))?;
        for (i, row) in self.confusion.rows().iter().enumerate() {
            write!(f, "{i:>idx_w$} {:name_w$} |", names[i])?;
            for n in row {
                write!(f, "{n:>cell_w$}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
