//! Datasets held resident as one `uint8` image tensor per split, and the batch normalisation
//! of the reference's `transforms.Compose([ToTensor(), Normalize((0.5,)*3, (0.5,)*3)])`.
//!
//! Sources: [`cifar`] (the official binary or python files), [`download`] (fetching them,
//! verified), [`folder`] (image folders, read by [`image_file`]); [`split`] holds out a
//! validation subset.

pub mod cifar;
pub mod download;
pub mod folder;
pub mod image_file;
mod pnm;
mod tiff;
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

    /// A digest of the split, to tell whether two runs saw the same data (`train --resume`):
    /// the image count, the class names, and a SHA-256 over the raw `uint8` images (`[N, 3, 32,
    /// 32]`, row-major) followed by the `int64` labels (little-endian). Reads the images once,
    /// a thousand at a time (150 MB for CIFAR-10's 50,000 training images).
    pub fn fingerprint(&self) -> DataFingerprint {
        use sha2::{Digest, Sha256};
        const CHUNK: i64 = 1000;
        let n = self.len() as i64;
        let mut hasher = Sha256::new();
        let mut buf = Vec::new();
        for start in (0..n).step_by(CHUNK as usize) {
            let chunk = self.images.narrow(0, start, CHUNK.min(n - start)).to_device(Device::Cpu).contiguous();
            let numel = chunk.numel();
            buf.resize(numel, 0);
            chunk.copy_data_u8(&mut buf, numel); // images are uint8 (the Dataset invariant)
            hasher.update(&buf);
        }
        let labels = Vec::<i64>::try_from(self.labels.to_device(Device::Cpu)).expect("labels are int64 (the Dataset invariant)");
        for label in labels {
            hasher.update(label.to_le_bytes());
        }
        let digest = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        DataFingerprint { images: self.len(), classes: self.classes.clone(), digest }
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

/// What a split held, in a few bytes: see [`Dataset::fingerprint`]. Two splits with equal
/// fingerprints hold the same images, labels and class names, in the same order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFingerprint {
    /// Number of images.
    pub images: usize,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// SHA-256 (lower-case hex) of the images' bytes, then the labels as little-endian `i64`.
    pub digest: String,
}

/// Where the images come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// CIFAR-10 as released: `DIR/cifar-10-batches-bin/*.bin` or, as torchvision downloads
    /// it, `DIR/cifar-10-batches-py/` (pickles).
    #[default]
    Cifar10,
    /// Image folders: `DIR/train/<class>/*` and `DIR/test/<class>/*` (the formats of
    /// torchvision's `ImageFolder`: PNG, JPEG, BMP, PPM, PGM, TIFF, WebP).
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

/// Loads only the test split of a `kind` dataset from `dir` (for `eval`): CIFAR-10 needs only
/// its test file and class names, an image folder only `test/<class>/`.
///
/// # Errors
/// Those of [`cifar::load_test`] and [`folder::load_test`].
pub fn load_test(kind: DatasetKind, dir: &Path, filter: folder::ResizeFilter, threads: Option<usize>) -> Result<Dataset> {
    match kind {
        DatasetKind::Cifar10 => cifar::load_test(dir),
        DatasetKind::Folder => folder::load_test(dir, filter, threads),
    }
}

/// `uint8 [B, 3, 32, 32]` -> `float32`, normalised with the reference's ops to the bit:
/// `ToTensor()` is `img.to(float32).div(255)`; `Normalize(0.5, 0.5)` is `.sub_(mean).div_(std)`.
///
/// The reference's DataLoader does this on the CPU. CUDA divides by a host scalar as a
/// multiplication by its float reciprocal, which gives another value for 111 of the 256 bytes;
/// on CUDA the divisor is therefore a device tensor, for which CUDA divides (correctly rounded,
/// as the CPU). Subtracting 0.5 and dividing by 0.5 (times 2) are exact either way.
///
/// The three arithmetic ops run in place on the converted batch (the same kernels as the
/// out-of-place ones, so the same values), which saves three batch-sized allocations a step.
pub fn normalize(xs: &Tensor) -> Tensor {
    let mut xs = xs.to_kind(Kind::Float);
    let _ = match xs.device() {
        Device::Cpu => xs.divide_scalar_(255),
        device => xs.divide_(&Tensor::full([], 255, (Kind::Float, device))), // a fill, no host copy
    };
    let _ = xs.subtract_scalar_(0.5).divide_scalar_(0.5);
    xs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(labels: &[i64]) -> Dataset {
        let n = labels.len() as i64;
        let images = Tensor::arange(n * 3 * 32 * 32, (Kind::Int64, Device::Cpu)).remainder(251).to_kind(Kind::Uint8).view([n, 3, 32, 32]);
        Dataset { images, labels: Tensor::from_slice(labels), classes: vec!["a".into(), "b".into()] }
    }

    #[test]
    fn fingerprint_changes_with_any_pixel_label_or_class_name() {
        let data = tiny(&[0, 1, 1]);
        let fp = data.fingerprint();
        assert_eq!((fp.images, fp.classes.clone(), fp.digest.len()), (3, vec!["a".to_string(), "b".to_string()], 64));
        assert_eq!(tiny(&[0, 1, 1]).fingerprint(), fp, "a function of the content only");
        let pixel = tiny(&[0, 1, 1]);
        let _ = pixel.images.get(2).get(1).get(31).get(30).fill_(7); // one byte of the last image
        assert_ne!(pixel.fingerprint().digest, fp.digest);
        let label = tiny(&[0, 1, 0]);
        assert_ne!(label.fingerprint().digest, fp.digest);
        let mut names = tiny(&[0, 1, 1]);
        names.classes[1] = "c".into();
        assert_ne!(names.fingerprint(), fp);
        // Serialisable, for the training checkpoint.
        let json = serde_json::to_string(&fp).unwrap();
        assert_eq!(serde_json::from_str::<DataFingerprint>(&json).unwrap(), fp);
    }

    #[test]
    fn fingerprint_is_sha256_of_images_then_labels() {
        use sha2::{Digest, Sha256};
        let data = tiny(&[1, 0]);
        let mut bytes = Vec::<u8>::try_from(data.images.flatten(0, -1)).unwrap();
        bytes.extend([1i64, 0].iter().flat_map(|l| l.to_le_bytes()));
        let want: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(data.fingerprint().digest, want);
    }

    #[test]
    fn normalize_maps_bytes_to_minus_one_one() {
        let xs = Tensor::from_slice(&[0u8, 51, 255]);
        let ys = Vec::<f32>::try_from(normalize(&xs)).unwrap();
        // (51 / 255 - 0.5) / 0.5 = -0.6 in float32, as PyTorch gives it.
        assert_eq!(ys, [-1.0, ((51f32 / 255.0) - 0.5) / 0.5, 1.0]);
    }

    #[test]
    fn normalize_divides_every_byte_as_torchvision_does() {
        let bytes: Vec<u8> = (0..=255).collect();
        let ys = Vec::<f32>::try_from(normalize(&Tensor::from_slice(&bytes))).unwrap();
        // ToTensor's float32 division by 255, then Normalize's (x - 0.5) / 0.5, in f32.
        let want: Vec<f32> = bytes.iter().map(|&b| (f32::from(b) / 255.0 - 0.5) / 0.5).collect();
        assert_eq!(ys.iter().map(|y| y.to_bits()).collect::<Vec<_>>(), want.iter().map(|y| y.to_bits()).collect::<Vec<_>>());
        // Multiplying by the reciprocal instead (CUDA's way with a host scalar) differs.
        let by_reciprocal = bytes.iter().filter(|&&b| f32::from(b) * (1.0 / 255.0f32) != f32::from(b) / 255.0).count();
        assert!(by_reciprocal > 100, "{by_reciprocal}");
    }
}
