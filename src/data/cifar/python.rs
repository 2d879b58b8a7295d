//! Reader for the CIFAR-10 python release (`cifar-10-python.tar.gz`, described at
//! <https://www.cs.toronto.edu/~kriz/cifar.html>), the layout that PyTorch's tutorial leaves
//! with `torchvision.datasets.CIFAR10(root='./data', download=True)`:
//! `cifar-10-batches-py/data_batch_1`..`data_batch_5` and `test_batch`, each a pickled `dict`
//! whose `data` is a numpy `uint8` array of N x 3072 (per image the 1024 red, 1024 green and
//! 1024 blue bytes of a 32x32 image, row-major: the binary release's pixel order) and whose
//! `labels` is a list of N ints; and `batches.meta`, a pickled `dict` whose `label_names` lists
//! the class names (index = label).
//!
//! The official files are Python 2 pickles (protocol 2, keys and strings as byte strings);
//! files written again by Python 3 have `str` keys (protocols 2 to 5). Both are read, as
//! torchvision reads them (`pickle.load(f, encoding="latin1")`: byte strings are Latin-1).
//! Parsing is serde-pickle's, which runs no code: a numpy array comes back as the arguments
//! that would rebuild it, `(version, shape, dtype state, is_fortran, raw bytes)` for protocols
//! up to 4 (`numpy.core.multiarray._reconstruct` and `ndarray.__setstate__`) and
//! `(raw bytes, dtype state, shape, order)` for protocol 5 (`numpy.core.numeric._frombuffer`).
//! Those carry the shape and the element size (through the byte count), not the dtype's name,
//! so an `int8` array would pass for `uint8`; every other kind of array is refused.
//!
//! Every file is checked: a pickle that is not such a `dict`, an array of another shape or
//! element size, a label count that is not the image count, or a label outside the classes is
//! an [`Error::BadDataset`] naming the file and what is wrong.

use std::path::{Path, PathBuf};

use serde_pickle::{DeOptions, HashableValue, Value};
use tch::Tensor;

use super::binary::IMAGE_BYTES;
use crate::{
    data::{Dataset, CHANNELS, IMAGE_SIDE},
    error::{Error, Result},
    safe_fs,
};

/// The folder the official archive unpacks to.
pub const SUBDIR: &str = "cifar-10-batches-py";
/// Training files, in the order torchvision concatenates them.
pub const TRAIN_FILES: [&str; 5] = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"];
/// The test file.
pub const TEST_FILE: &str = "test_batch";
/// The pickled metadata, with the class names under `label_names`.
pub const META_FILE: &str = "batches.meta";

/// Loads the training and test splits from `dir`, a folder holding the pickled batches.
///
/// # Errors
/// A missing or unreadable file, or one that is not a CIFAR-10 batch, named.
pub(crate) fn load(dir: &Path) -> Result<(Dataset, Dataset)> {
    let classes = read_classes(&dir.join(META_FILE))?;
    let train = read_split(&TRAIN_FILES.map(|f| dir.join(f)), &classes)?;
    let test = read_split(&[dir.join(TEST_FILE)], &classes)?;
    Ok((train, test))
}

/// Loads only the test split from `dir`, a folder holding the pickled batches.
///
/// # Errors
/// As [`load`].
pub(crate) fn load_test(dir: &Path) -> Result<Dataset> {
    let classes = read_classes(&dir.join(META_FILE))?;
    read_split(&[dir.join(TEST_FILE)], &classes)
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadDataset { path: path.to_path_buf(), reason: reason.into() }
}

/// The pickled `dict` in `path`.
fn read_dict(path: &Path) -> Result<std::collections::BTreeMap<HashableValue, Value>> {
    let bytes = safe_fs::read_regular(path, safe_fs::MAX_DATA_BATCH_BYTES)?;
    crate::pickle_guard::check(&bytes)
        .map_err(|reason| bad(path, format!("not a readable Python pickle ({reason}); expected a CIFAR-10 python batch")))?;
    // replace_unresolved_globals: numpy's classes become None; keep_restore_state: an array
    // keeps the arguments that rebuild it (shape, dtype state, raw bytes).
    let options = DeOptions::new().replace_unresolved_globals().keep_restore_state();
    match serde_pickle::value_from_slice(&bytes, options) {
        Ok(Value::Dict(dict)) => Ok(dict),
        Ok(other) => Err(bad(path, format!("the pickle holds {}, expected a dict (a CIFAR-10 python batch)", kind_of(&other)))),
        Err(e) => Err(bad(path, format!("not a readable Python pickle ({e}); expected a CIFAR-10 python batch"))),
    }
}

/// `dict[key]` for a `str` key (Python 3) or a byte-string key (Python 2).
fn take(dict: &mut std::collections::BTreeMap<HashableValue, Value>, key: &str) -> Option<Value> {
    dict.remove(&HashableValue::String(key.to_string())).or_else(|| dict.remove(&HashableValue::Bytes(key.as_bytes().to_vec())))
}

/// A Python word for a parsed value, for error messages.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::None => "None (or an object that is not a plain Python value)",
        Value::Bool(_) => "a bool",
        Value::I64(_) | Value::Int(_) => "an int",
        Value::F64(_) => "a float",
        Value::Bytes(_) => "a byte string",
        Value::String(_) => "a str",
        Value::List(_) => "a list",
        Value::Tuple(_) => "a tuple (or an object such as a numpy array)",
        Value::Set(_) | Value::FrozenSet(_) => "a set",
        Value::Dict(_) => "a dict",
    }
}

/// A text value: `str`, or a Python 2 byte string read as Latin-1 (torchvision's encoding).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bytes(b) => Some(b.iter().map(|&c| char::from(c)).collect()),
        _ => None,
    }
}

/// Class names from `batches.meta`'s `label_names`.
fn read_classes(path: &Path) -> Result<Vec<String>> {
    let mut meta = read_dict(path)?;
    let names = match take(&mut meta, "label_names") {
        Some(Value::List(names)) => names,
        Some(other) => return Err(bad(path, format!("`label_names` is {}, expected a list of class names", kind_of(&other)))),
        None => return Err(bad(path, "no `label_names` entry; expected the CIFAR-10 class names there")),
    };
    let classes = names
        .iter()
        .map(|n| text(n).ok_or_else(|| bad(path, format!("`label_names` holds {}, expected strings", kind_of(n)))))
        .collect::<Result<Vec<_>>>()?;
    if !(2..=256).contains(&classes.len()) || classes.iter().any(|c| c.trim().is_empty()) {
        return Err(bad(path, format!("`label_names` has {} names (blank ones not allowed); expected between 2 and 256", classes.len())));
    }
    Ok(classes)
}

/// Reads and concatenates batch files into one split.
fn read_split(paths: &[PathBuf], classes: &[String]) -> Result<Dataset> {
    let mut images = Vec::with_capacity(paths.len());
    let mut labels = Vec::new();
    for path in paths {
        let (batch, batch_labels) = read_batch(path, classes)?;
        images.push(batch);
        labels.extend(batch_labels);
    }
    let images = if images.len() == 1 { images.pop().expect("one batch") } else { Tensor::f_cat(&images, 0)? };
    Ok(Dataset { images, labels: Tensor::from_slice(&labels), classes: classes.to_vec() })
}

/// One batch: `uint8 [N, 3, 32, 32]` images and their labels.
fn read_batch(path: &Path, classes: &[String]) -> Result<(Tensor, Vec<i64>)> {
    let mut dict = read_dict(path)?;
    let data = take(&mut dict, "data").ok_or_else(|| bad(path, "no `data` entry; expected the images there (a CIFAR-10 python batch)"))?;
    let (shape, bytes, fortran) = array(data).map_err(|reason| bad(path, format!("`data`: {reason}")))?;
    let n = match shape[..] {
        [n, width] if width == IMAGE_BYTES && n.checked_mul(IMAGE_BYTES) == Some(bytes.len()) => n,
        _ => {
            let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(0);
            let element = bytes.len().checked_div(numel).map(|size| format!(" of {size}-byte elements")).unwrap_or_default();
            return Err(bad(path, format!("`data` is an array of shape {shape:?}{element}; expected uint8 of shape [N, {IMAGE_BYTES}]")));
        }
    };
    if n == 0 {
        return Err(bad(path, "`data` holds no image"));
    }
    let labels = match take(&mut dict, "labels") {
        Some(Value::Tuple(l)) if is_array(&l) => {
            return Err(bad(path, format!("`labels` is a numpy array; expected a list of {n} ints, as the official files hold")))
        }
        Some(Value::List(l) | Value::Tuple(l)) => l,
        Some(other) => return Err(bad(path, format!("`labels` is {}, expected a list of {n} ints", kind_of(&other)))),
        None => return Err(bad(path, "no `labels` entry; expected one label per image there")),
    };
    if labels.len() != n {
        return Err(bad(path, format!("{} labels for {n} images", labels.len())));
    }
    let labels = labels
        .iter()
        .enumerate()
        .map(|(i, l)| match l {
            Value::I64(k) if (0..classes.len() as i64).contains(k) => Ok(*k),
            Value::I64(k) => Err(bad(path, format!("label {k} of image {i} is not below the {} classes", classes.len()))),
            other => Err(bad(path, format!("label {i} is {}, expected an int", kind_of(other)))),
        })
        .collect::<Result<Vec<_>>>()?;
    let side = IMAGE_SIDE;
    let images = if fortran {
        // Column-major bytes: [3072, N] row-major, transposed.
        Tensor::from_slice(&bytes).view([IMAGE_BYTES as i64, n as i64]).tr().contiguous()
    } else {
        Tensor::from_slice(&bytes)
    };
    Ok((images.view([n as i64, CHANNELS, side, side]), labels))
}

/// Whether a tuple is what serde-pickle leaves of a numpy array (see [`array`]).
fn is_array(parts: &[Value]) -> bool {
    matches!(parts, [Value::I64(_), _, _, Value::Bool(_), _] | [Value::Bytes(_), Value::Tuple(_), Value::Tuple(_), _])
}

/// A pickled numpy array as serde-pickle leaves it (see the module doc): its shape, raw bytes,
/// and whether they are in Fortran (column-major) order. Refuses arrays of multi-byte or
/// object elements.
fn array(value: Value) -> std::result::Result<(Vec<usize>, Vec<u8>, bool), String> {
    let not_array = |v: &Value| format!("{}, expected a numpy uint8 array", kind_of(v));
    let Value::Tuple(parts) = value else { return Err(not_array(&value)) };
    let (shape, dtype, fortran, bytes) = match <[Value; 5]>::try_from(parts) {
        // _reconstruct + __setstate__: (version, shape, dtype, is_fortran, raw bytes)
        Ok([Value::I64(_), shape, dtype, Value::Bool(fortran), Value::Bytes(bytes)]) => (shape, dtype, fortran, bytes),
        Ok(_) => return Err("a numpy array this reader does not understand (an object array, or not an array)".into()),
        Err(parts) => match <[Value; 4]>::try_from(parts) {
            // Protocol 5's _frombuffer: (raw bytes, dtype, shape, order)
            Ok([Value::Bytes(bytes), dtype, shape, order]) => {
                let fortran = text(&order).as_deref() == Some("F");
                (shape, dtype, fortran, bytes)
            }
            _ => return Err("a tuple or object that is not a numpy array, expected a numpy uint8 array".into()),
        },
    };
    // The dtype's state: (version, byte order, ...); '|' means "not applicable", a 1-byte type.
    let one_byte = match &dtype {
        Value::Tuple(state) => state.get(1).and_then(text).as_deref() == Some("|"),
        _ => false,
    };
    let shape = match shape {
        Value::Tuple(dims) | Value::List(dims) => dims
            .iter()
            .map(|d| match d {
                Value::I64(d) if *d >= 0 => Ok(*d as usize),
                _ => Err("an array whose shape is not a tuple of sizes".to_string()),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        _ => return Err("an array whose shape is not a tuple of sizes".into()),
    };
    if !one_byte {
        return Err(format!("an array of shape {shape:?} with elements of more than one byte; expected uint8"));
    }
    Ok((shape, bytes, fortran))
}
