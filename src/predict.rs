//! `tch-cifar10 predict`: the top-k classes of a saved model, with softmax probabilities
//! ([`crate::softmax`]), for images of any size in the formats of torchvision's `ImageFolder`
//! (PNG, JPEG, BMP, PPM, PGM, TIFF, WebP), read and bounded by [`crate::data::image_file`].
//!
//! Each image is prepared as training prepares CIFAR-10: decoded to 8-bit RGB (greyscale is
//! replicated to three channels; an alpha channel is dropped, as PIL's `convert("RGB")` does),
//! resized to 32x32 when it is not already (see [`RESIZE_FILTER`]; the aspect ratio is not kept,
//! as `transforms.Resize((32, 32))`), laid out `uint8 [3, 32, 32]` (CHW) and normalised by
//! [`crate::data::normalize`], the same ops as `ToTensor()` + `Normalize(0.5, 0.5)`.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde::Serialize;
use tch::{nn::Module, Device, Kind, Tensor};

use crate::{
    checkpoint::load_model_with_classes,
    config::Kernels,
    kernels::lenet::{self, LeNet},
    train::step::fast_cpu::{view, weights},
    data::{
        folder::ResizeFilter,
        image_file, normalize, CHANNELS, IMAGE_SIDE,
    },
    device::DeviceSpec,
    error::{Error, Result},
    report::escape_control,
    softmax::softmax,
};

/// The resize filter, as named in `--help`: bilinear (the `image` crate's triangle filter, its
/// support widened when shrinking, so it averages like PIL's antialiased bilinear resize).
pub const RESIZE_FILTER: &str = "bilinear (triangle, antialiased)";

/// Images per forward pass: bounds memory for long lists.
const CHUNK: usize = 256;

/// What `predict` classifies, and how.
#[derive(Clone, Debug)]
pub struct PredictOptions {
    /// A model file, or a run directory holding `model.safetensors`.
    pub checkpoint: PathBuf,
    /// Image files (PNG, JPEG, BMP, PPM, PGM, TIFF, WebP), or folders: every image under one,
    /// recursively (by extension, as image folders are read), in sorted order.
    pub images: Vec<PathBuf>,
    /// Classes reported per image (at most the model's class count).
    pub top_k: usize,
    /// Where to run the model.
    pub device: DeviceSpec,
    /// Class names overriding (or supplying) the file's.
    pub classes: Option<Vec<String>>,
    /// `Fast` on the CPU: the logits from this crate's kernels (see [`crate::config::Kernels`]);
    /// libtorch's forward otherwise.
    pub kernels: Kernels,
    /// Ignore the model file's temperature: the softmax of the raw logits.
    pub no_temperature: bool,
    /// Draw each image with its saliency map into this PNG ([`crate::explain`]).
    pub explain: Option<PathBuf>,
}

/// One class and its probability.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassProbability {
    /// Class name.
    pub class: String,
    /// Class index (the label).
    pub index: usize,
    /// Softmax probability.
    pub probability: f64,
}

/// The top classes of one image, most probable first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// The image file.
    pub path: PathBuf,
    /// The `top_k` most probable classes, in decreasing probability.
    pub top: Vec<ClassProbability>,
}

impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The file name and the class names come from files: their control characters escaped.
        writeln!(f, "{}", escape_control(&self.path.display().to_string()))?;
        let names: Vec<_> = self.top.iter().map(|c| escape_control(&c.class)).collect();
        let w = names.iter().map(|c| c.chars().count()).max().unwrap_or(0);
        for (name, c) in names.iter().zip(&self.top) {
            writeln!(f, "  {name:w$}  {:6.2} %", 100.0 * c.probability)?;
        }
        Ok(())
    }
}

/// Runs `predict`: loads the model, then classifies every image in order.
///
/// # Errors
/// `top_k` of 0; a bad device; a missing or bad model file; an image that cannot be read or
/// decoded (named in the error; nothing is reported until every image decoded).
pub fn run_predict(opts: &PredictOptions) -> Result<Vec<Prediction>> {
    if opts.top_k == 0 {
        return Err(Error::InvalidConfig { field: "top-k", value: "0".into(), expected: "at least 1".into() });
    }
    let device = opts.device.resolve()?;
    let model_file = crate::run_state::model_file(&opts.checkpoint)?;
    let model = load_model_with_classes(&model_file, device, opts.classes.as_deref())?;
    let k = opts.top_k.min(model.classes.len());
    if k < opts.top_k {
        tracing::warn!("--top-k {}: the model has {} classes; showing all {k}", opts.top_k, model.classes.len());
    }
    let temperature = model.temperature.filter(|_| !opts.no_temperature);
    if let Some(t) = temperature {
        tracing::info!("probabilities of the logits divided by the model's temperature {t:.4} (--no-temperature for the raw ones)");
    }
    let mut kernels = match (opts.kernels, device) {
        (Kernels::Fast, Device::Cpu) => Some(
            LeNet::new(model.classes.len(), lenet::threads())
                .map_err(|e| Error::Torch(tch::TchError::Kind(format!("fast CPU kernels: starting threads: {e}"))))?,
        ),
        _ => None,
    };
    // A folder stands for the images under it (recursively), in their sorted order.
    let mut images = Vec::with_capacity(opts.images.len());
    for path in &opts.images {
        if path.is_dir() {
            images.extend(crate::data::folder::images_under(path)?);
        } else {
            images.push(path.clone());
        }
    }
    let mut out = Vec::with_capacity(images.len());
    let mut explained = Vec::new();
    for paths in images.chunks(CHUNK) {
        let images = paths.iter().map(|p| load_image(p)).collect::<Result<Vec<_>>>()?;
        let xs = Tensor::stack(&images, 0);
        if opts.explain.is_some() {
            let maps = crate::explain::saliency(&|xs| model.net.forward(xs), &normalize(&xs.to_device(device)));
            explained.push((xs.shallow_clone(), maps));
        }
        let logits = match kernels.as_mut() {
            Some(k) => {
                let bytes = view::<u8>("the images", &xs, Kind::Uint8)?;
                Tensor::from_slice(&k.logits(&weights(&model.net)?, bytes)).view([paths.len() as i64, -1])
            }
            None => tch::no_grad(|| model.net.forward(&normalize(&xs.to_device(device)))),
        };
        let logits = match temperature {
            Some(t) => logits / t,
            None => logits,
        };
        let (probs, idx, finite) = tch::no_grad(|| {
            let finite = Vec::<bool>::try_from(logits.isfinite().all_dim(-1, false).to_device(Device::Cpu)).unwrap_or_default();
            let (p, i) = softmax(&logits).topk(k as i64, -1, true, true);
            (p.to_kind(Kind::Double), i, finite)
        });
        if let Some(bad) = finite.iter().position(|ok| !ok) {
            let what = format!("NaN or infinite logits for {}", paths[bad].display());
            return Err(Error::NonFiniteOutput { path: model_file, what });
        }
        let probs = Vec::<f64>::try_from(probs.to_device(Device::Cpu).flatten(0, -1))?;
        let idx = Vec::<i64>::try_from(idx.to_device(Device::Cpu).flatten(0, -1))?;
        for (i, path) in paths.iter().enumerate() {
            let top = (0..k)
                .map(|j| {
                    let index = idx[i * k + j] as usize;
                    ClassProbability { class: model.classes[index].clone(), index, probability: probs[i * k + j] }
                })
                .collect();
            out.push(Prediction { path: path.clone(), top });
        }
    }
    if let Some(png) = &opts.explain {
        let (images, maps): (Vec<Tensor>, Vec<Tensor>) = explained.into_iter().unzip();
        crate::explain::draw(png, &Tensor::cat(&images, 0), &Tensor::cat(&maps, 0))?;
        tracing::info!("saliency maps (gradient of the top logit) drawn in {}", png.display());
    }
    Ok(out)
}

/// Reads an image (the format is sniffed from the content, not the extension) as
/// `uint8 [3, 32, 32]` RGB, resized with [`RESIZE_FILTER`] when it is not 32x32.
///
/// # Errors
/// [`Error::Io`] naming the file when it cannot be opened or is not a regular file;
/// [`Error::BadImage`] naming it when it is not in a supported format, is truncated, does not
/// decode, or is out of the bounds of [`crate::data::image_file`] (the message gives its
/// dimensions).
pub fn load_image(path: &Path) -> Result<Tensor> {
    let rgb = image_file::read_rgb32(path, ResizeFilter::Bilinear)?;
    // HWC bytes -> CHW, as ToTensor() lays them out.
    Ok(Tensor::from_slice(rgb.as_raw()).view([IMAGE_SIDE, IMAGE_SIDE, CHANNELS]).permute([2, 0, 1]).contiguous())
}
