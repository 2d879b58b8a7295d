//! CIFAR-10 as its two official releases lay it out on disk
//! (<https://www.cs.toronto.edu/~kriz/cifar.html>), both read directly:
//!
//! * the binary release ([`binary`]): `cifar-10-batches-bin/`, what `tch-cifar10 download`
//!   fetches;
//! * the python release ([`python`]): `cifar-10-batches-py/`, pickled batches, what PyTorch's
//!   tutorial leaves with `torchvision.datasets.CIFAR10(root='./data', download=True)`.
//!
//! [`find`] says which layout a folder holds (the binary one first when both are there), and
//! [`load`] logs which one it read. The same images give the same tensors in either layout:
//! `uint8 [N, 3, 32, 32]` images, `int64 [N]` labels, the training files concatenated in
//! torchvision's order.

pub mod binary;
pub mod python;

use std::{
    fmt,
    path::{Path, PathBuf},
};

pub use binary::{IMAGE_BYTES, META_FILE, RECORD_BYTES, SUBDIR, TEST_FILE, TRAIN_FILES};

use super::Dataset;
use crate::error::{Error, Result};

/// Which release's files a folder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `data_batch_1.bin` ... (`cifar-10-binary.tar.gz`).
    Binary,
    /// `data_batch_1` ... as pickles (`cifar-10-python.tar.gz`, torchvision's download).
    Python,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Binary => "binary",
            Layout::Python => "python (pickled batches, as torchvision downloads them)",
        })
    }
}

impl Layout {
    /// The file that tells this layout's folder: its first training file, or with `test_only`
    /// its test file.
    fn marker(self, test_only: bool) -> &'static str {
        match (self, test_only) {
            (Layout::Binary, false) => binary::TRAIN_FILES[0],
            (Layout::Binary, true) => binary::TEST_FILE,
            (Layout::Python, false) => python::TRAIN_FILES[0],
            (Layout::Python, true) => python::TEST_FILE,
        }
    }
}

/// A folder holding one layout's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// Which layout.
    pub layout: Layout,
    /// The folder holding its files.
    pub dir: PathBuf,
}

/// Where the files are under `dir`, in this order: `dir/cifar-10-batches-bin`, `dir` itself
/// holding the `.bin` files, `dir/cifar-10-batches-py`, `dir` itself holding the pickles.
/// A layout is recognised by its first training file.
///
/// # Errors
/// [`Error::DataNotFound`] listing every place looked at, for both layouts, and how to get
/// the data.
pub fn find(dir: &Path) -> Result<Located> {
    find_for(dir, false)
}

/// As [`find`], recognising a layout by its test file with `test_only` (all `eval` reads).
fn find_for(dir: &Path, test_only: bool) -> Result<Located> {
    let candidates = [
        (Layout::Binary, dir.join(binary::SUBDIR)),
        (Layout::Binary, dir.to_path_buf()),
        (Layout::Python, dir.join(python::SUBDIR)),
        (Layout::Python, dir.to_path_buf()),
    ];
    if let Some((layout, d)) = candidates.iter().find(|(layout, d)| d.join(layout.marker(test_only)).is_file()) {
        return Ok(Located { layout: *layout, dir: d.clone() });
    }
    Err(Error::DataNotFound {
        wanted: format!(
            "{} (binary layout, {}/) or {} (python layout, {}/)",
            Layout::Binary.marker(test_only),
            binary::SUBDIR,
            Layout::Python.marker(test_only),
            python::SUBDIR
        ),
        looked: vec![dir.join(binary::SUBDIR), dir.join(python::SUBDIR), dir.to_path_buf()],
        hint: not_found_hint(dir),
    })
}

/// What to do when `dir` holds no CIFAR-10: `--dataset folder` when it looks like an image
/// folder (`train/` and `test/` subfolders), otherwise how to get the data, with the command
/// named as the user invoked the program.
fn not_found_hint(dir: &Path) -> String {
    let shown = dir.to_string_lossy();
    if dir.join("train").is_dir() && dir.join("test").is_dir() {
        return format!(
            "{shown} holds train/ and test/ folders, as image folders do: for those, add `--dataset folder` \
             (e.g. `{}`)",
            crate::program::command(&["train", "--dataset", "folder", "--data-dir", &shown])
        );
    }
    // One tree of class folders holding images: an image folder without its train/test split.
    let image_classes = std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && std::fs::read_dir(p).is_ok_and(|mut files| files.any(|f| f.is_ok_and(|f| crate::data::folder::has_image_extension(&f.path())))))
            .count()
    });
    if image_classes >= 2 {
        return format!(
            "{shown} holds {image_classes} folders of images, as one class-folder tree does: for that, add \
             `--dataset folder --split-test 0.2` (e.g. `{}`)",
            crate::program::command(&["train", "--dataset", "folder", "--split-test", "0.2", "--data-dir", &shown])
        );
    }
    format!(
        "run `{}` (or `train --download`; without a network it unpacks a cifar-10-binary.tar.gz or \
         cifar-10-python.tar.gz that you put in {shown}, or one given with `--archive FILE`), or unpack the official \
         archive there yourself (torchvision's `datasets.CIFAR10(root=DIR, download=True)` leaves the python layout)",
        crate::program::command(&["download", "--data-dir", &shown])
    )
}

/// The folder holding the CIFAR-10 files under `dir` (see [`find`]).
///
/// # Errors
/// As [`find`].
pub fn locate(dir: &Path) -> Result<PathBuf> {
    Ok(find(dir)?.dir)
}

/// Loads the training and test splits from `dir` (see [`find`]), logging which layout it read.
///
/// # Errors
/// [`Error::DataNotFound`]; a missing or malformed file, named, with what is wrong in it.
pub fn load(dir: &Path) -> Result<(Dataset, Dataset)> {
    let found = found(dir, false)?;
    match found.layout {
        Layout::Binary => binary::load(&found.dir),
        Layout::Python => python::load(&found.dir),
    }
}

/// Loads only the test split from `dir` (see [`find`]; a folder needs only the test file and
/// the class names), for `eval`.
///
/// # Errors
/// As [`load`].
pub fn load_test(dir: &Path) -> Result<Dataset> {
    let found = found(dir, true)?;
    match found.layout {
        Layout::Binary => binary::load_test(&found.dir),
        Layout::Python => python::load_test(&found.dir),
    }
}

fn found(dir: &Path, test_only: bool) -> Result<Located> {
    let found = find_for(dir, test_only)?;
    tracing::info!("CIFAR-10 in the {} layout, in {}", found.layout, found.dir.display());
    Ok(found)
}
