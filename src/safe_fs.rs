//! File access for inputs we do not control: read only regular files, never more than a stated
//! number of bytes, and never follow a link for a file we write.
//!
//! A symbolic link *to a regular file* may be read (users link data and models around); a link
//! to a device (`/dev/zero`), a FIFO or a directory is refused before a byte is read, and a file
//! larger than its kind's bound is refused before it is read, so no input can make memory grow
//! without bound. Every error names the file and says what was expected.

use std::{
    fs::File,
    io::Read,
    path::Path,
};

use crate::error::{Error, Result};

/// Bound on a model file (`model.safetensors`, a `torch.save` archive): the `Net` is 248 KB;
/// a 10,000-class head would be 3.4 MB.
pub const MAX_MODEL_FILE_BYTES: u64 = 64 << 20;
/// Bound on a training checkpoint (weights, momentum and best weights: three models).
pub const MAX_CHECKPOINT_BYTES: u64 = 3 * MAX_MODEL_FILE_BYTES;
/// Bound on one image file (a 32x32 image is a few KB; photographs are a few MB).
pub const MAX_IMAGE_FILE_BYTES: u64 = 64 << 20;
/// Bound on one pickled CIFAR-10 batch (`cifar-10-batches-py/data_batch_1`: an official one
/// holds 10,000 images in 31 MB).
pub const MAX_DATA_BATCH_BYTES: u64 = 512 << 20;
/// Bound on a small text or JSON file of a run (`config.json`, `batches.meta.txt`, ...).
pub const MAX_TEXT_FILE_BYTES: u64 = 16 << 20;

fn refused(path: &Path, why: String) -> Error {
    Error::Io { path: path.to_path_buf(), source: std::io::Error::other(why) }
}

/// Opens `path` for reading when it is (or links to) a regular file of at most `limit` bytes;
/// returns the file and its size.
///
/// # Errors
/// [`Error::Io`] naming `path`: missing, unreadable, not a regular file (a directory, device,
/// FIFO or socket, also behind a link), or larger than `limit` bytes.
pub fn open_regular(path: &Path, limit: u64) -> Result<(File, u64)> {
    let file = File::open(path).map_err(Error::io(path))?;
    let meta = file.metadata().map_err(Error::io(path))?;
    if !meta.is_file() {
        return Err(refused(path, format!("not a regular file ({}); expected a file", file_type_name(&meta.file_type()))));
    }
    if meta.len() > limit {
        return Err(refused(path, format!("{} bytes, more than the {limit} bytes such a file may have", meta.len())));
    }
    Ok((file, meta.len()))
}

/// Reads the whole of `path` (see [`open_regular`]), never more than `limit` bytes even when
/// the file grows while it is read.
///
/// # Errors
/// As [`open_regular`], and [`Error::Io`] for a failed read.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path, limit)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(Error::io(path))?;
    if bytes.len() as u64 > limit {
        return Err(refused(path, format!("grew past the {limit} bytes such a file may have while it was read")));
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
///
/// # Errors
/// As [`read_regular`], and [`Error::Io`] when the bytes are not UTF-8.
pub fn read_text(path: &Path, limit: u64) -> Result<String> {
    String::from_utf8(read_regular(path, limit)?).map_err(|_| refused(path, "not UTF-8 text".into()))
}

/// A word for the kind of a file that is not a regular file.
pub fn file_type_name(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_and_links_to_them_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, b"hello").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert_eq!(read_regular(&f, 5).unwrap(), b"hello");
        assert_eq!(read_text(&link, 5).unwrap(), "hello");
        let err = read_regular(&f, 4).unwrap_err().to_string();
        assert!(err.contains("a.txt") && err.contains("5 bytes, more than the 4"), "{err}");
    }

    #[test]
    fn refuses_devices_directories_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = read_regular(&zero, 1 << 20).unwrap_err().to_string();
        assert!(err.contains("zero") && err.contains("a device"), "{err}");
        let err = read_regular(dir.path(), 1 << 20).unwrap_err().to_string();
        assert!(err.contains("a directory") || err.contains("Is a directory"), "{err}");
    }
}
