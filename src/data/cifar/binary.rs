//! Reader for the official CIFAR-10 binary release (`cifar-10-binary.tar.gz`, described at
//! <https://www.cs.toronto.edu/~kriz/cifar.html>): `data_batch_1.bin`..`data_batch_5.bin` and
//! `test_batch.bin`, each a run of 3073-byte records (one label byte, then the 1024 red, 1024
//! green and 1024 blue bytes of a 32x32 image, row-major), and `batches.meta.txt`, one class name
//! a line. Every file is checked: a size that is not a whole number of records, or a label outside
//! the classes, is an error naming the file and the byte offset.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use tch::{Kind, Tensor};

use crate::{
    data::{Dataset, CHANNELS, IMAGE_SIDE},
    error::{Error, Result},
    safe_fs,
};

/// Bytes of one image (3 x 32 x 32).
pub const IMAGE_BYTES: usize = (CHANNELS * IMAGE_SIDE * IMAGE_SIDE) as usize;
/// Bytes of one record: the label, then the image.
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Records read and copied at a time (about 3 MB).
const CHUNK_RECORDS: usize = 1000;
/// The folder the official archive unpacks to.
pub const SUBDIR: &str = "cifar-10-batches-bin";
/// Training files, in the order torchvision concatenates them.
pub const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
/// The test file.
pub const TEST_FILE: &str = "test_batch.bin";
/// Class names, one a line.
pub const META_FILE: &str = "batches.meta.txt";

/// Loads the training and test splits from `dir`, a folder holding the `.bin` files.
///
/// # Errors
/// A missing file, a size that is not a whole number of records, a bad label.
pub(crate) fn load(dir: &Path) -> Result<(Dataset, Dataset)> {
    let classes = read_classes(&dir.join(META_FILE))?;
    let train = read_split(&TRAIN_FILES.map(|f| dir.join(f)), &classes)?;
    let test = read_split(&[dir.join(TEST_FILE)], &classes)?;
    Ok((train, test))
}

/// Loads only the test split from `dir`, a folder holding the `.bin` files.
///
/// # Errors
/// As [`load`].
pub(crate) fn load_test(dir: &Path) -> Result<Dataset> {
    let classes = read_classes(&dir.join(META_FILE))?;
    read_split(&[dir.join(TEST_FILE)], &classes)
}

/// Class names from `batches.meta.txt`, blank lines ignored.
fn read_classes(path: &Path) -> Result<Vec<String>> {
    let text = safe_fs::read_text(path, safe_fs::MAX_TEXT_FILE_BYTES)?;
    let classes: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if !(2..=256).contains(&classes.len()) {
        return Err(Error::BadDataFile {
            path: path.to_path_buf(),
            offset: 0,
            reason: format!("expected between 2 and 256 class names, one a line, found {}", classes.len()),
        });
    }
    Ok(classes)
}

/// Reads and concatenates record files into one split, checking every record's label.
fn read_split(paths: &[PathBuf], classes: &[String]) -> Result<Dataset> {
    let (files, sizes): (Vec<_>, Vec<_>) = paths
        .iter()
        .map(|p| {
            let (file, len) = safe_fs::open_regular(p, safe_fs::MAX_CIFAR_BATCH_BYTES)?;
            if len == 0 || len % RECORD_BYTES as u64 != 0 {
                let whole = len / RECORD_BYTES as u64 * RECORD_BYTES as u64;
                return Err(Error::BadDataFile {
                    path: p.clone(),
                    offset: whole,
                    reason: format!(
                        "size {len} is not a positive whole number of {RECORD_BYTES}-byte records (truncated or not a CIFAR-10 batch)"
                    ),
                });
            }
            Ok((file, len as usize / RECORD_BYTES))
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    let n: usize = sizes.iter().sum();
    let side = IMAGE_SIDE;
    // Filled a chunk of records at a time, so peak memory is the split plus two small buffers,
    // not the split plus a whole file (and its tensor copy).
    let images = Tensor::zeros([n as i64, CHANNELS, side, side], (Kind::Uint8, tch::Device::Cpu));
    let mut labels = Vec::with_capacity(n);
    let mut buf = vec![0u8; CHUNK_RECORDS * RECORD_BYTES];
    let mut start = 0i64;
    for ((path, &count), mut file) in paths.iter().zip(&sizes).zip(files) {
        let mut done = 0;
        while done < count {
            let k = CHUNK_RECORDS.min(count - done);
            let bytes = &mut buf[..k * RECORD_BYTES];
            file.read_exact(bytes).map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => Error::BadDataFile {
                    path: path.clone(),
                    offset: (done * RECORD_BYTES) as u64,
                    reason: "file changed size while being read".to_string(),
                },
                _ => Error::Io { path: path.clone(), cause: e },
            })?;
            for (j, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
                let (i, label) = (done + j, record[0]);
                if label as usize >= classes.len() {
                    return Err(Error::BadDataFile {
                        path: path.clone(),
                        offset: (i * RECORD_BYTES) as u64,
                        reason: format!("label {label} of record {i} is not below the {} classes", classes.len()),
                    });
                }
                labels.push(i64::from(label));
            }
            let chunk = Tensor::from_slice(bytes).view([k as i64, RECORD_BYTES as i64]);
            let pixels = chunk.narrow(1, 1, IMAGE_BYTES as i64).view([k as i64, CHANNELS, side, side]);
            images.narrow(0, start + done as i64, k as i64).copy_(&pixels); // a view: fills `images`
            done += k;
        }
        start += count as i64;
    }
    Ok(Dataset { images, labels: Tensor::from_slice(&labels), classes: classes.to_vec() })
}
