//! `tch-cifar10 eval`: a saved model (see [`crate::checkpoint::model_file`]) on the test split of
//! any dataset `train` reads (CIFAR-10 in its binary or python layout, or an image folder), as the
//! reference's closing test loop computes it: mean of the batch-mean losses, accuracy, accuracy
//! per class, and the confusion matrix (rows: true class, columns: predicted), as a text table or
//! JSON. Given a run folder, it reads the run's own data (its `config.json`) unless told otherwise.

pub mod calibration;
pub mod corruptions;
pub mod forward;
pub mod temperature;

use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{
    checkpoint::{load_model_with_classes, ClassSource},
    config::{Kernels, TrainConfig, MAX_BATCH_SIZE},
    data::{self, folder::ResizeFilter, DatasetKind},
    device::{device_name, DeviceSpec},
    error::{Error, Result},
    report::escape_control,
    run::CONFIG_FILE,
    safe_fs,
    train::evaluate::{evaluate_with_logits, ConfusionMatrix},
};

/// What `eval` evaluates, and where.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// A model file, or a run directory holding `model.safetensors`.
    pub checkpoint: PathBuf,
    /// The dataset's folder (as `train --data-dir`) [`None`: the run's, for a run directory
    /// with a `config.json`; else `data`].
    pub data_dir: Option<PathBuf>,
    /// The dataset's kind [`None`: the run's, or CIFAR-10].
    pub dataset: Option<DatasetKind>,
    /// The filter resizing folder images that are not 32x32 [`None`: the run's, or bilinear].
    pub resize_filter: Option<ResizeFilter>,
    /// Where to evaluate.
    pub device: DeviceSpec,
    /// Images per forward pass (the loss is the mean of batch means, as the reference's).
    pub batch_size: usize,
    /// Class names overriding (or supplying) the file's.
    pub classes: Option<Vec<String>>,
    /// How the forward pass is computed (see [`forward`]).
    pub kernels: Kernels,
    /// Ignore the model file's temperature (`--no-temperature`): the raw logits.
    pub no_temperature: bool,
    /// `--corruptions`: `all` or comma-separated names of [`corruptions::NAMES`].
    pub corruptions: Option<String>,
    /// `--fgsm`: comma-separated epsilons in units of 1/255.
    pub fgsm: Option<String>,
    /// Seed of the corruptions' noise.
    pub seed: i64,
    /// A progress bar over the corrupted and perturbed test sets (on a terminal).
    pub progress: bool,
}

impl EvalOptions {
    /// Options for `checkpoint` with every other setting at its default: the run's data (or
    /// CIFAR-10 in `data`), the CPU, the reference kernels, batches of the training default.
    pub fn new(checkpoint: &Path) -> EvalOptions {
        EvalOptions {
            checkpoint: checkpoint.to_path_buf(),
            data_dir: None,
            dataset: None,
            resize_filter: None,
            device: DeviceSpec::Cpu,
            batch_size: TrainConfig::default().batch_size,
            classes: None,
            kernels: Kernels::Reference,
            no_temperature: false,
            corruptions: None,
            fgsm: None,
            seed: 0,
            progress: false,
        }
    }
}

/// The test data `eval` reads: a flag's value, else the run's (`config.json` beside the model
/// in a run directory), else the default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataChoice {
    /// The dataset's folder.
    pub data_dir: PathBuf,
    /// Its kind.
    pub dataset: DatasetKind,
    /// The resize filter for folder images.
    pub resize_filter: ResizeFilter,
}

/// The configuration of the run in `checkpoint` (its `config.json`), when it is a run directory
/// holding one.
///
/// # Errors
/// [`Error::BadCheckpoint`] naming a `config.json` that cannot be read as a run configuration.
pub fn run_config(checkpoint: &Path) -> Result<Option<TrainConfig>> {
    let config = checkpoint.join(CONFIG_FILE);
    if !(checkpoint.is_dir() && config.is_file()) {
        return Ok(None);
    }
    let text = safe_fs::read_text(&config, safe_fs::MAX_TEXT_FILE_BYTES)?;
    let cfg = serde_json::from_str(&text)
        .map_err(|e| Error::BadCheckpoint { path: config.clone(), reason: format!("not a tch-cifar10 run configuration ({e})") })?;
    Ok(Some(cfg))
}

/// Resolves the data flags of `opts` against the run's `config.json` when `opts.checkpoint` is a
/// run directory holding one.
///
/// # Errors
/// [`Error::BadCheckpoint`] naming a `config.json` that cannot be read as a run configuration.
pub fn data_choice(opts: &EvalOptions) -> Result<DataChoice> {
    let all_given = opts.data_dir.is_some() && opts.dataset.is_some() && opts.resize_filter.is_some();
    let run = if all_given { None } else { run_config(&opts.checkpoint)? };
    if let Some(cfg) = &run {
        tracing::info!("the run's data: {} ({:?})", cfg.data_dir.display(), cfg.dataset);
    }
    let d = run.unwrap_or_default();
    Ok(DataChoice {
        data_dir: opts.data_dir.clone().unwrap_or(d.data_dir),
        dataset: opts.dataset.unwrap_or(d.dataset),
        resize_filter: opts.resize_filter.unwrap_or(d.resize_filter),
    })
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
    /// The dataset's folder.
    pub data_dir: PathBuf,
    /// The dataset's kind.
    pub dataset: DatasetKind,
    /// The kernels of the forward pass.
    pub kernels: Kernels,
    /// The temperature the logits were divided by (the model file's, unless `--no-temperature`).
    pub temperature: Option<f64>,
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
    /// ECE, MCE, NLL, Brier score and the reliability bins of the softmax (see [`calibration`]).
    pub calibration: calibration::Calibration,
    /// `--corruptions`: the accuracy under each corruption at severities 1 to 5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corruptions: Option<Vec<CorruptionAccuracy>>,
    /// `--corruptions`: the mean accuracy over every corruption and severity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_corruption_accuracy: Option<f64>,
    /// `--fgsm`: the accuracy under FGSM at each epsilon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fgsm: Option<Vec<FgsmAccuracy>>,
}

/// Accuracy under one corruption.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CorruptionAccuracy {
    /// Its name (see [`corruptions::NAMES`]).
    pub corruption: String,
    /// Fractions right at severities 1 to 5.
    pub accuracy: Vec<f64>,
}

/// Accuracy under FGSM at one epsilon.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FgsmAccuracy {
    /// Epsilon in units of 1/255 of the pixel range.
    pub epsilon: f64,
    /// Fraction of the test images classified right after the perturbation.
    pub accuracy: f64,
}

/// Runs `eval`: loads the model and the test split, evaluates, and reports.
///
/// # Errors
/// An invalid batch size or device, a missing or bad model file, missing or malformed data, a
/// model whose number of outputs differs from the data's number of classes, or (an image
/// folder) whose class names are not the folder's.
pub fn run_eval(opts: &EvalOptions) -> Result<EvalReport> {
    if !(1..=MAX_BATCH_SIZE).contains(&opts.batch_size) {
        return Err(Error::InvalidConfig {
            field: "batch-size",
            value: opts.batch_size.to_string(),
            expected: format!("1 to {MAX_BATCH_SIZE}"),
        });
    }
    // Every flag is checked before anything is read or written.
    let names = opts.corruptions.as_deref().map(corruptions::parse_names).transpose()?;
    let epsilons = opts.fgsm.as_deref().map(corruptions::parse_epsilons).transpose()?;
    let device = opts.device.resolve()?;
    let path = crate::run_state::model_file(&opts.checkpoint)?;
    let model = load_model_with_classes(&path, device, opts.classes.as_deref())?;
    if model.class_source == ClassSource::Cifar10Default {
        tracing::info!("{} names no classes; using CIFAR-10's ({})", path.display(), crate::report::escape::names(&model.classes));
    }
    let choice = data_choice(opts)?;
    let test = data::load_test(choice.dataset, &choice.data_dir, choice.resize_filter, None)?;
    check_classes(&test.classes, &model.classes, model.class_source, choice.dataset, &path, &choice.data_dir)?;
    let temperature = model.temperature.filter(|_| !opts.no_temperature);
    if let Some(t) = temperature {
        tracing::info!("{}: logits divided by its temperature {t:.4} (--no-temperature for the raw ones)", path.display());
    }
    let net = forward::forward(&model.net, opts.kernels, temperature).on_device(device, model.classes.len())?;
    let (m, confusion, logits) = evaluate_with_logits(&|xs| net.evaluate(xs), &test.to_device(device), opts.batch_size);
    if !m.loss.is_finite() {
        // NaN or infinite logits make the loss so; their argmax would be meaningless.
        return Err(Error::NonFiniteOutput { path, what: format!("the test loss is {}", m.loss) });
    }
    let calibration = calibration::calibration(&logits, &test.labels);
    // Gradients (FGSM) need libtorch's forward; whole images go through `evaluate`.
    let forward = |xs: &tch::Tensor| net.forward(xs);
    let evaluate = |xs: &tch::Tensor| net.evaluate(xs);
    let sets = names.as_ref().map_or(0, |n| n.len() * corruptions::SEVERITIES) + epsilons.as_ref().map_or(0, Vec::len);
    let bar = crate::bars::count_bar(sets as u64, "robustness", opts.progress && sets > 0);
    let corruption_rows = names.map(|names| {
        names
            .iter()
            .map(|&name| {
                let accuracy = (1..=corruptions::SEVERITIES)
                    .map(|severity| {
                        let images = corruptions::corrupt(&test.images, name, severity, opts.seed).to_device(device);
                        let set = data::Dataset { images, labels: test.labels.to_device(device), classes: test.classes.clone() };
                        let accuracy = evaluate_with_logits(&evaluate, &set, opts.batch_size).0.accuracy;
                        bar.inc(1);
                        accuracy
                    })
                    .collect();
                CorruptionAccuracy { corruption: name.to_string(), accuracy }
            })
            .collect::<Vec<_>>()
    });
    let mean_corruption_accuracy = corruption_rows.as_ref().map(|rows| {
        let all: Vec<f64> = rows.iter().flat_map(|r| r.accuracy.iter().copied()).collect();
        all.iter().sum::<f64>() / all.len().max(1) as f64
    });
    let fgsm = epsilons.map(|eps| {
        let (images, labels) = (test.images.to_device(device), test.labels.to_device(device));
        eps.iter()
            .map(|&e| {
                let accuracy = corruptions::fgsm_accuracy(&forward, &images, &labels, e / 255.0, opts.batch_size);
                bar.inc(1);
                FgsmAccuracy { epsilon: e, accuracy }
            })
            .collect()
    });
    bar.finish_and_clear();
    let per_class = model
        .classes
        .iter()
        .zip(confusion.totals())
        .zip(&m.per_class_accuracy)
        .map(|((class, images), &accuracy)| ClassAccuracy { class: class.clone(), images, accuracy })
        .collect();
    Ok(EvalReport {
        checkpoint: path,
        data_dir: choice.data_dir,
        dataset: choice.dataset,
        kernels: opts.kernels,
        temperature,
        device: device_name(device),
        images: m.images,
        loss: m.loss,
        accuracy: m.accuracy,
        per_class,
        classes: model.classes,
        confusion,
        calibration,
        corruptions: corruption_rows,
        mean_corruption_accuracy,
        fgsm,
    })
}

/// Checks that a model with `model` classes (named by `source`) can be evaluated on data with
/// `data` classes: the same count always; for an image folder (whose class names are its
/// folders' names) the same names, unless the model names none of its own.
///
/// # Errors
/// [`Error::InvalidConfig`] for `checkpoint`, naming the model file, the data folder and the
/// classes missing on either side.
pub fn check_classes(data: &[String], model: &[String], source: ClassSource, kind: DatasetKind, path: &Path, data_dir: &Path) -> Result<()> {
    if data.len() != model.len() {
        return Err(Error::InvalidConfig {
            field: "checkpoint",
            value: path.display().to_string(),
            expected: format!(
                "a model with one output per class of the data ({} in {}); it has {}",
                data.len(),
                data_dir.display(),
                model.len()
            ),
        });
    }
    if data != model {
        let only_data: Vec<_> = data.iter().filter(|c| !model.contains(c)).collect();
        let only_model: Vec<_> = model.iter().filter(|c| !data.contains(c)).collect();
        if kind == DatasetKind::Folder && source != ClassSource::Cifar10Default {
            return Err(Error::InvalidConfig {
                field: "checkpoint",
                value: path.display().to_string(),
                expected: format!(
                    "a model of the classes of {} ({}); the model's are {} (only in the data: {only_data:?}; only in the model: {only_model:?}; \
                     a different order counts too: pass --classes to name the model's outputs)",
                    data_dir.display(),
                    crate::report::escape::names(data),
                    crate::report::escape::names(model)
                ),
            });
        }
        tracing::warn!(
            "class names differ: the data has {}, the model {}; reporting the model's",
            crate::report::escape::names(data),
            crate::report::escape::names(model)
        );
    }
    Ok(())
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Class names and paths come from files: printed with their control characters escaped.
        let path = self.checkpoint.display().to_string();
        writeln!(f, "Model: {} ({} classes, on {})", escape_control(&path), self.classes.len(), self.device)?;
        // The reference program's closing lines.
        writeln!(f, "Accuracy of the network on the {} test images: {:.2} %", self.images, 100.0 * self.accuracy)?;
        writeln!(f, "Test loss: {:.4}", self.loss)?;
        if let Some(t) = self.temperature {
            writeln!(f, "Temperature: {t:.4} (the model file's; the loss and calibration are of the logits divided by it)")?;
        }
        let c = &self.calibration;
        writeln!(
            f,
            "Calibration: ECE {:.2} % ({} bins), MCE {:.2} %, NLL {:.4}, Brier {:.4}",
            100.0 * c.ece,
            calibration::BINS,
            100.0 * c.mce,
            c.nll,
            c.brier
        )?;
        let names: Vec<_> = self.classes.iter().map(|c| escape_control(c)).collect();
        let name_w = names.iter().map(|c| c.chars().count()).max().unwrap_or(0).max(5);
        for c in &self.per_class {
            let class = escape_control(&c.class);
            writeln!(f, "Accuracy for class: {class:name_w$} is {:5.1} %  ({} images)", 100.0 * c.accuracy, c.images)?;
        }
        writeln!(f)?;
        if let (Some(rows), Some(mean)) = (&self.corruptions, self.mean_corruption_accuracy) {
            writeln!(f, "Accuracy under corruption (%), severities 1 to 5:")?;
            for r in rows {
                write!(f, "  {:18}", r.corruption)?;
                for a in &r.accuracy {
                    write!(f, "{:7.2}", 100.0 * a)?;
                }
                writeln!(f)?;
            }
            writeln!(f, "Mean corruption accuracy: {:.2} %", 100.0 * mean)?;
            writeln!(f)?;
        }
        if let Some(rows) = &self.fgsm {
            for r in rows {
                writeln!(f, "Accuracy under FGSM, epsilon {}/255: {:.2} %", r.epsilon, 100.0 * r.accuracy)?;
            }
            writeln!(f)?;
        }
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
