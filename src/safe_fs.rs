//! File access for inputs we do not control: read only regular files, never more than a stated
//! number of bytes, and never follow a link for a file we write.
//!
//! A symbolic link *to a regular file* may be read (users link data and models around); a link
//! to a device (`/dev/zero`), a FIFO or a directory is refused before a byte is read (and before
//! it is opened, so a FIFO cannot block the open), and a file larger than its kind's bound is
//! refused before it is read, so no input can make memory grow without bound. A file this
//! program writes (a download's `.part`, a temporary file) is never followed through a link and
//! never a device or FIFO: [`create_file`], [`append_file`]. Every error names the file and
//! says what was expected.

use std::{
    fs::{File, FileType, OpenOptions},
    io::{self, Read},
    os::unix::fs::OpenOptionsExt,
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
/// Bound on one CIFAR-10 binary batch file (`data_batch_N.bin`, `test_batch.bin`): the
/// official ones are 30,730,000 bytes (10,000 records of 3,073 bytes); this allows about
/// 65,000 records a file.
pub const MAX_CIFAR_BATCH_BYTES: u64 = 200_000_000;
/// Bound on a run's `metrics.jsonl` (about 300 bytes an epoch: some 800,000 epochs).
pub const MAX_METRICS_FILE_BYTES: u64 = 256 << 20;

fn refused(path: &Path, why: String) -> Error {
    Error::Io { path: path.to_path_buf(), cause: io::Error::other(why) }
}

/// Refuses `path`, of type `t`, where a regular file is expected.
fn not_regular(path: &Path, t: &FileType) -> Error {
    refused(path, not_regular_why(t))
}

fn not_regular_why(t: &FileType) -> String {
    if t.is_symlink() {
        "a symbolic link, expected a regular file (a file this program writes is never followed through a link: remove the link)".into()
    } else {
        format!("not a regular file ({}); expected a file", file_type_name(t))
    }
}

/// An error of opening `path`; the `ELOOP` of `O_NOFOLLOW` on a link is said in words.
fn open_error(path: &Path, e: io::Error) -> Error {
    match std::fs::symlink_metadata(path) {
        Ok(m) if e.raw_os_error() == Some(libc::ELOOP) => not_regular(path, &m.file_type()),
        _ => Error::io(path)(e),
    }
}

/// Opens `path` for reading when it is (or links to) a regular file of at most `limit` bytes;
/// returns the file and its size.
///
/// # Errors
/// [`Error::Io`] naming `path`: missing, unreadable, not a regular file (a directory, device,
/// FIFO or socket, also behind a link), or larger than `limit` bytes.
pub fn open_regular(path: &Path, limit: u64) -> Result<(File, u64)> {
    open_bounded(path, limit, true)
}

/// [`open_regular`] for a file this program wrote (a download's `.part`): a symbolic link at
/// `path` is refused, not followed.
///
/// # Errors
/// As [`open_regular`], and [`Error::Io`] naming `path` when it is a symbolic link.
pub fn open_regular_no_follow(path: &Path, limit: u64) -> Result<(File, u64)> {
    open_bounded(path, limit, false)
}

fn open_bounded(path: &Path, limit: u64, follow: bool) -> Result<(File, u64)> {
    // Looked at before opening: opening a FIFO waits for a writer, opening a device may act.
    let meta = if follow { std::fs::metadata(path) } else { std::fs::symlink_metadata(path) };
    let meta = meta.map_err(Error::io(path))?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta.file_type()));
    }
    // Checked again on the file opened, in case `path` was replaced in between; non-blocking
    // so that a FIFO put there meanwhile cannot block (no effect on a regular file).
    let flags = libc::O_NONBLOCK | if follow { 0 } else { libc::O_NOFOLLOW };
    let file = OpenOptions::new().read(true).custom_flags(flags).open(path).map_err(|e| open_error(path, e))?;
    let meta = file.metadata().map_err(Error::io(path))?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta.file_type()));
    }
    if meta.len() > limit {
        return Err(refused(path, format!("{} bytes, more than the {limit} bytes such a file may have", meta.len())));
    }
    Ok((file, meta.len()))
}

/// What is at `path`, a file this program writes: `None` when nothing is, its length when it is
/// a regular file (not a link to one).
///
/// # Errors
/// [`Error::Io`] naming `path` when it is a symbolic link, a directory, a device, a FIFO or a
/// socket, or cannot be looked at.
pub fn written_file_len(path: &Path) -> Result<Option<u64>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(m) => Err(not_regular(path, &m.file_type())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path)(e)),
    }
}

/// Creates `path` empty for writing, replacing a regular file there; never writes through a
/// link at `path` (or into a device or FIFO), and never truncates a file that has other names
/// (hard links): the old file is removed and a new one made with `O_EXCL`.
///
/// # Errors
/// [`Error::Io`] naming `path`: something other than a regular file is there, or it cannot be
/// removed or created.
pub fn create_file(path: &Path) -> Result<File> {
    create_file_io(path).map_err(|e| open_error(path, e))
}

/// [`create_file`] as an [`io::Result`], for code that names the file itself.
pub(crate) fn create_file_io(path: &Path) -> io::Result<File> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => std::fs::remove_file(path)?,
        Ok(m) => return Err(io::Error::other(not_regular_why(&m.file_type()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // O_EXCL never follows a link, so a link made since the look above fails here.
    OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Opens the regular file `path` for appending; never follows a link at `path`, never opens a
/// device or FIFO.
///
/// # Errors
/// [`Error::Io`] naming `path`: missing, not a regular file (a symbolic link among others), or
/// not writable.
pub fn append_file(path: &Path) -> Result<File> {
    written_file_len(path)?; // a FIFO or device is refused before it is opened
    let file = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| open_error(path, e))?;
    let meta = file.metadata().map_err(Error::io(path))?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta.file_type()));
    }
    Ok(file)
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
        // A FIFO with no writer: refused at once, not waited on.
        let fifo = fifo_in(dir.path());
        let t0 = std::time::Instant::now();
        let err = read_regular(&fifo, 1 << 20).unwrap_err().to_string();
        assert!(err.contains("fifo") && err.contains("a FIFO"), "{err}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    }

    fn fifo_in(dir: &Path) -> std::path::PathBuf {
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        fifo
    }

    #[test]
    fn files_we_write_are_never_followed_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.txt");
        std::fs::write(&outside, b"keep me").unwrap();
        let link = dir.path().join("x.part");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        for err in [
            append_file(&link).unwrap_err(),
            create_file(&link).unwrap_err(),
            open_regular_no_follow(&link, 100).unwrap_err(),
            written_file_len(&link).unwrap_err(),
        ] {
            let msg = err.to_string();
            assert!(msg.contains("x.part") && msg.contains("a symbolic link"), "{msg}");
        }
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        // Following is still fine for reading a user's file.
        assert_eq!(open_regular(&link, 100).unwrap().1, 7);

        // A FIFO or a directory is not written either.
        let fifo = fifo_in(dir.path());
        let msg = append_file(&fifo).unwrap_err().to_string();
        assert!(msg.contains("a FIFO"), "{msg}");
        let msg = create_file(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("a directory"), "{msg}");
    }

    #[test]
    fn create_replaces_a_regular_file_without_touching_its_other_names() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"old").unwrap();
        std::fs::hard_link(&a, &b).unwrap();
        create_file(&a).unwrap().write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"new");
        assert_eq!(std::fs::read(&b).unwrap(), b"old");
        append_file(&a).unwrap().write_all(b"er").unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"newer");
        assert_eq!(written_file_len(&a).unwrap(), Some(5));
        assert_eq!(written_file_len(&dir.path().join("none")).unwrap(), None);
        let msg = append_file(&dir.path().join("none")).unwrap_err().to_string();
        assert!(msg.contains("none"), "{msg}");
    }
}
