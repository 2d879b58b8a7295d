//! Image-folder datasets, as torchvision's `ImageFolder`: `DIR/train/<class>/...` and
//! `DIR/test/<class>/...`, PNG and JPEG files, classes from the sorted subfolder names of `train/`
//! (any number from 2 up). Samples are ordered as `ImageFolder` orders them (class by class; in a
//! class, folder by folder and file by file, sorted), so a shuffle replayed from PyTorch picks the
//! same images. Hidden files and folders, and files with other extensions, are skipped.
//!
//! Images are converted to RGB as torchvision's loader does (`PIL.Image.convert("RGB")`:
//! greyscale is replicated, alpha is dropped) and those that are not 32x32 are resized with the
//! chosen [`ResizeFilter`]. Decoding runs in parallel (rayon), once per run, into the resident
//! `uint8` tensor the training loop gathers batches from.

use std::{
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{cifar::IMAGE_BYTES, Dataset, CHANNELS, IMAGE_SIDE};
use crate::error::{Error, Result};

/// Subfolder of the training split.
pub const TRAIN_DIR: &str = "train";
/// Subfolder of the test split.
pub const TEST_DIR: &str = "test";
/// File extensions read as images (any case).
pub const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The filter that resizes images that are not 32x32 (see `image::imageops::FilterType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeFilter {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear (triangle), antialiased when shrinking, as torchvision's default `Resize`.
    #[default]
    Bilinear,
    /// Bicubic (Catmull-Rom).
    Bicubic,
    /// Gaussian.
    Gaussian,
    /// Lanczos with a window of 3.
    Lanczos3,
}

impl From<ResizeFilter> for image::imageops::FilterType {
    fn from(f: ResizeFilter) -> Self {
        use image::imageops::FilterType as F;
        match f {
            ResizeFilter::Nearest => F::Nearest,
            ResizeFilter::Bilinear => F::Triangle,
            ResizeFilter::Bicubic => F::CatmullRom,
            ResizeFilter::Gaussian => F::Gaussian,
            ResizeFilter::Lanczos3 => F::Lanczos3,
        }
    }
}

/// Loads `dir/train` and `dir/test`, decoding on `threads` threads (`None`: one per CPU).
///
/// # Errors
/// [`Error::BadDataset`] for a missing split folder, fewer than 2 classes, an empty class
/// folder, or test classes that are not the training classes; [`Error::BadImage`] naming an
/// undecodable image; [`Error::Io`].
pub fn load(dir: &Path, filter: ResizeFilter, threads: Option<usize>) -> Result<(Dataset, Dataset)> {
    let (classes, train_files) = scan(&dir.join(TRAIN_DIR))?;
    let (test_classes, test_files) = scan(&dir.join(TEST_DIR))?;
    if test_classes != classes {
        let missing: Vec<_> = classes.iter().filter(|c| !test_classes.contains(c)).collect();
        let extra: Vec<_> = test_classes.iter().filter(|c| !classes.contains(c)).collect();
        return Err(Error::BadDataset {
            path: dir.join(TEST_DIR),
            reason: format!(
                "the test classes are not the training classes: missing {missing:?}, not in {TRAIN_DIR}/ {extra:?}"
            ),
        });
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.unwrap_or(0)).build().map_err(|e| Error::BadDataset {
        path: dir.to_path_buf(),
        reason: format!("cannot start decoding threads: {e}"),
    })?;
    let decode_split = |files: &Files| pool.install(|| decode_all(files, filter, &classes));
    Ok((decode_split(&train_files)?, decode_split(&test_files)?))
}

/// Image files with their labels.
type Files = Vec<(PathBuf, i64)>;

/// Class names (sorted subfolders) and every image file with its label, in `ImageFolder` order.
fn scan(split: &Path) -> Result<(Vec<String>, Files)> {
    let bad = |reason: String| Error::BadDataset { path: split.to_path_buf(), reason };
    if !split.is_dir() {
        return Err(bad("no such folder; an image-folder dataset has train/<class>/ and test/<class>/".to_string()));
    }
    let mut classes = Vec::new();
    for entry in fs::read_dir(split).map_err(Error::io(split))? {
        let entry = entry.map_err(Error::io(split))?;
        let name = entry.file_name();
        if entry.path().is_dir() && !is_hidden(&name) {
            classes.push(name.into_string().map_err(|n| bad(format!("class folder name {n:?} is not UTF-8")))?);
        }
    }
    classes.sort();
    if classes.len() < 2 {
        return Err(bad(format!("found {} class folder(s) {classes:?}; need at least 2", classes.len())));
    }
    let mut files = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_dir = split.join(class);
        let start = files.len();
        walk(&class_dir, label as i64, &mut files)?;
        if files.len() == start {
            return Err(Error::BadDataset {
                path: class_dir,
                reason: format!("class folder holds no image ({})", EXTENSIONS.join(", ")),
            });
        }
    }
    Ok((classes, files))
}

/// Appends the images under `dir` (recursively) in `sorted(os.walk(dir))` order: folders sorted
/// by their whole path as a string, files by name within each. (That is not depth-first:
/// `a/b` < `a/b c` < `a/b/c`, as ' ' sorts before '/'.)
fn walk(dir: &Path, label: i64, files: &mut Files) -> Result<()> {
    let mut folders = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let mut here = Vec::new();
        for entry in fs::read_dir(&folder).map_err(Error::io(&folder))? {
            let path = entry.map_err(Error::io(&folder))?.path();
            if is_hidden(path.file_name().unwrap_or_default()) {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().and_then(OsStr::to_str).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())) {
                here.push(path);
            } else {
                tracing::debug!("skipping {} (not {})", path.display(), EXTENSIONS.join(", "));
            }
        }
        here.sort();
        folders.push((folder, here));
    }
    folders.sort_by(|(a, _), (b, _)| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
    files.extend(folders.into_iter().flat_map(|(_, here)| here).map(|p| (p, label)));
    Ok(())
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Decodes every file in parallel into one split.
fn decode_all(files: &[(PathBuf, i64)], filter: ResizeFilter, classes: &[String]) -> Result<Dataset> {
    let mut pixels = vec![0u8; files.len() * IMAGE_BYTES];
    pixels.par_chunks_mut(IMAGE_BYTES).zip(files.par_iter()).try_for_each(|(out, (path, _))| decode(path, filter, out))?;
    let labels: Vec<i64> = files.iter().map(|&(_, label)| label).collect();
    let images = Tensor::from_slice(&pixels).view([files.len() as i64, CHANNELS, IMAGE_SIDE, IMAGE_SIDE]);
    Ok(Dataset { images, labels: Tensor::from_slice(&labels), classes: classes.to_vec() })
}

/// Reads a PNG or JPEG (the format is sniffed from the content, not the extension) as 32x32
/// 8-bit RGB: greyscale replicated, alpha dropped, resized with `filter` when it is not 32x32
/// (the aspect ratio is not kept). The one image reader of training folders and `predict`.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::BadImage`] naming it when it is not a
/// PNG or JPEG, does not decode, or is empty.
pub(crate) fn read_rgb32(path: &Path, filter: ResizeFilter) -> Result<image::RgbImage> {
    let bad = |reason: String| Error::BadImage { path: path.to_path_buf(), reason };
    let bytes = fs::read(path).map_err(Error::io(path))?;
    let format = match image::guess_format(&bytes) {
        Ok(f @ (image::ImageFormat::Png | image::ImageFormat::Jpeg)) => f,
        Ok(other) => return Err(bad(format!("{other:?} images are not supported; use PNG or JPEG"))),
        Err(_) => return Err(bad("not a PNG or JPEG file (unrecognised content)".into())),
    };
    // The reader applies the `image` crate's default limits (no decompression bombs).
    let img = image::ImageReader::with_format(std::io::Cursor::new(&bytes), format)
        .decode()
        .map_err(|e| bad(format!("cannot decode: {e}")))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(bad("the image is empty".to_string()));
    }
    let side = IMAGE_SIDE as u32;
    let rgb = img.to_rgb8();
    Ok(if rgb.dimensions() == (side, side) { rgb } else { image::imageops::resize(&rgb, side, side, filter.into()) })
}

/// Decodes one image into `out` as 32x32 RGB, CHW (as `ToTensor()` lays it out).
fn decode(path: &Path, filter: ResizeFilter, out: &mut [u8]) -> Result<()> {
    let rgb = read_rgb32(path, filter)?;
    let plane = (IMAGE_SIDE * IMAGE_SIDE) as usize;
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..CHANNELS as usize {
            out[c * plane + i] = px[c];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_orders_as_os_walk_sorted() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for f in ["b.png", "a.PNG", "sub/x.jpg", "sub/deeper/w.png", "sub b/y.jpeg", "notes.txt", ".hidden.png", ".git/z.png"] {
            let p = d.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, b"").unwrap();
        }
        let mut files = Vec::new();
        walk(d, 3, &mut files).unwrap();
        let names: Vec<_> = files.iter().map(|(p, _)| p.strip_prefix(d).unwrap().to_str().unwrap().to_string()).collect();
        // Python: [os.path.join(r, f) for r, _, fs in sorted(os.walk(d)) for f in sorted(fs)],
        // less the hidden and non-image files: "sub" < "sub b" < "sub/deeper" (' ' < '/').
        assert_eq!(names, ["a.PNG", "b.png", "sub/x.jpg", "sub b/y.jpeg", "sub/deeper/w.png"]);
        assert!(files.iter().all(|&(_, l)| l == 3));
    }
}
