//! Datasets held resident as one `uint8` image tensor per split, and the batch normalisation
//! of the reference's `transforms.Compose([ToTensor(), Normalize((0.5,)*3, (0.5,)*3)])`.
//!
//! Sources: [`cifar`] (the official binary files), [`download`] (fetching them, verified),
//! [`folder`] (image folders); [`split`] holds out a validation subset.

pub mod cifar;
pub mod download;
pub mod folder;
pub mod split;

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// Image side length.
pub const IMAGE_SIDE: i64 = 32;
/// Colour channels.
pub const CHANNELS: i64 = 3;

/// One split of a dataset: `images` is `uint8 [N, 3, 32, 32]` (CHW, as `ToTensor()` lays it out),
/// `labels` is `int64 [N]` with values in `0..classes.len()`.
#[derive(Debug)]
pub struct Dataset {
    /// `uint8 [N, 3, 32, 32]`.
    pub images: Tensor,
    /// `int64 [N]`.
    pub labels: Tensor,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same split with both tensors on `device` (uploaded once; batches are gathered there).
    pub fn to_device(&self, device: Device) -> Dataset {
        Dataset {
            images: self.images.to_device(device),
            labels: self.labels.to_device(device),
            classes: self.classes.clone(),
        }
    }
}

/// Where the images come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// The CIFAR-10 binary release: `DIR/cifar-10-batches-bin/*.bin`.
    #[default]
    Cifar10,
    /// Image folders: `DIR/train/<class>/*` and `DIR/test/<class>/*` (PNG, JPEG).
    Folder,
}

/// Loads the training and test splits of a `kind` dataset from `dir`; image folders are decoded
/// on `threads` threads with `filter` resizing images that are not 32x32.
///
/// # Errors
/// Those of [`cifar::load`] and [`folder::load`].
pub fn load(kind: DatasetKind, dir: &Path, filter: folder::ResizeFilter, threads: Option<usize>) -> Result<(Dataset, Dataset)> {
    match kind {
        DatasetKind::Cifar10 => cifar::load(dir),
        DatasetKind::Folder => folder::load(dir, filter, threads),
    }
}

/// `uint8 [B, 3, 32, 32]` -> `float32`, normalised with the reference's ops to the bit:
/// `ToTensor()` is `img.to(float32).div(255)`; `Normalize(0.5, 0.5)` is `.sub_(mean).div_(std)`.
pub fn normalize(xs: &Tensor) -> Tensor {
    xs.to_kind(Kind::Float).divide_scalar(255).subtract_scalar(0.5).divide_scalar(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_maps_bytes_to_minus_one_one() {
        let xs = Tensor::from_slice(&[0u8, 51, 255]);
        let ys = Vec::<f32>::try_from(normalize(&xs)).unwrap();
        // (51 / 255 - 0.5) / 0.5 = -0.6 in float32, as PyTorch gives it.
        assert_eq!(ys, [-1.0, ((51f32 / 255.0) - 0.5) / 0.5, 1.0]);
    }
}
