//! Verified download of the official CIFAR-10 binary release (`cifar-10-binary.tar.gz`, from
//! <https://www.cs.toronto.edu/~kriz/cifar.html>), as the reference's `CIFAR10(download=True)`.
//!
//! Nothing is left half-done: the archive streams to `DIR/cifar-10-binary.tar.gz.part`, its
//! checksum is verified, it is unpacked into a temporary folder beside the target, every expected
//! file and its size is checked, and only then is `cifar-10-batches-bin/` renamed into place.
//! A complete dataset already in place means no request at all. Transient failures (connection
//! errors and cuts, timeouts, HTTP 429 and 5xx) are retried with exponential backoff, resuming
//! the `.part` file with an HTTP `Range` request; a cut download is kept so the next run resumes it.
//!
//! What a server or an archive may do is bounded. The download stops as soon as more than
//! [`OFFICIAL_ARCHIVE_BYTES`] arrive (or are announced) with the official checksum, or more than
//! [`DownloadOptions::max_bytes`] with another one. Unpacking creates only regular files and
//! folders inside the target: a symbolic or hard link, a device or a FIFO in the archive is
//! refused, naming the member; each file is refused as soon as it unpacks past its expected size
//! ([`UnpackLimits`]), and so is an archive that unpacks past its bound in all. A file the download
//! writes (the `.part`, the unpacked files) is never written through a link.
//!
//! Without a network: an archive given with `--archive FILE` (or a `file://` URL), or a
//! `cifar-10-binary.tar.gz` or `cifar-10-python.tar.gz` lying in the data folder, is verified by
//! the same checksum rules (the official MD5 of either release unless `--sha256`/`--md5` name
//! another) and unpacked the same way, without a request; the archive itself is left in place.
//! A download slower than [`DownloadOptions::speed_limit`] bytes/s for
//! [`DownloadOptions::speed_time`] stops with an error and keeps its bytes for the next run to
//! resume (curl's `--speed-limit`/`--speed-time` rule).

use std::{
    fs::{self, File},
    io::{self, Read, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use indicatif::ProgressBar;
use md5::Md5;
use sha2::{Digest, Sha256};

use super::cifar::{python, META_FILE, RECORD_BYTES, SUBDIR, TEST_FILE, TRAIN_FILES};
use crate::{
    error::{Error, Result},
    safe_fs::{self, file_type_name},
};

/// The official archive.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// MD5 of the official archive, as published on the CIFAR-10 page (and used by torchvision).
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// Environment variable naming a mirror URL (`--url` wins over it).
pub const URL_ENV: &str = "TCH_CIFAR10_URL";
/// Environment variable giving the mirror archive's SHA-256 (`--sha256` wins over it).
pub const SHA256_ENV: &str = "TCH_CIFAR10_SHA256";
/// Environment variable giving the mirror archive's MD5 (`--md5` wins over it).
pub const MD5_ENV: &str = "TCH_CIFAR10_MD5";
/// File name of the archive in the data folder while it downloads (with `.part` appended).
pub const ARCHIVE_NAME: &str = "cifar-10-binary.tar.gz";
/// The python release's file name, as torchvision downloads it (`CIFAR10(download=True)`).
pub const PYTHON_ARCHIVE_NAME: &str = "cifar-10-python.tar.gz";
/// MD5 of the official python release, as published on the CIFAR-10 page (torchvision's
/// `CIFAR10.tgz_md5`).
pub const CIFAR10_PYTHON_MD5: &str = "c58f30108f718f92721af3b95e74349a";
/// Size of the official python release in bytes.
pub const OFFICIAL_PYTHON_ARCHIVE_BYTES: u64 = 170_498_071;
/// Default of [`DownloadOptions::speed_limit`]: 1 KiB/s (`--speed-limit`).
pub const DEFAULT_SPEED_LIMIT: u64 = 1024;
/// Default of [`DownloadOptions::speed_time`]: 60 s (`--speed-time`).
pub const DEFAULT_SPEED_TIME: Duration = Duration::from_secs(60);
/// Environment variable giving [`DownloadOptions::max_bytes`] (`--max-download-bytes` wins).
pub const MAX_BYTES_ENV: &str = "TCH_CIFAR10_MAX_DOWNLOAD_BYTES";
/// Records in each file of the official release.
pub const OFFICIAL_RECORDS_PER_FILE: u64 = 10_000;
/// Size of the official archive (`cifar-10-binary.tar.gz`, MD5 [`CIFAR10_MD5`]) in bytes.
pub const OFFICIAL_ARCHIVE_BYTES: u64 = 170_052_171;
/// Default bound on an archive with another checksum than the official one: 1 GiB.
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 1 << 30;
/// Members of `cifar-10-batches-bin/` unpacked at most (the official archive has 9, the folder
/// included).
pub const MAX_ARCHIVE_MEMBERS: usize = 1000;

/// The expected digest of the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// MD5, 32 lowercase hex digits.
    Md5(String),
    /// SHA-256, 64 lowercase hex digits.
    Sha256(String),
}

impl Checksum {
    /// The official archive's MD5.
    pub fn official() -> Checksum {
        Checksum::Md5(CIFAR10_MD5.to_string())
    }

    /// An MD5 given as hex (any case).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `hex` is 32 hex digits.
    pub fn md5(hex: &str) -> Result<Checksum> {
        Self::parse("md5", hex, 32).map(Checksum::Md5)
    }

    /// A SHA-256 given as hex (any case).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `hex` is 64 hex digits.
    pub fn sha256(hex: &str) -> Result<Checksum> {
        Self::parse("sha256", hex, 64).map(Checksum::Sha256)
    }

    fn parse(field: &'static str, hex: &str, digits: usize) -> Result<String> {
        let hex = hex.trim();
        if hex.len() == digits && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(hex.to_ascii_lowercase())
        } else {
            Err(Error::InvalidConfig { field, value: hex.to_string(), expected: format!("{digits} hex digits") })
        }
    }

    /// `"md5"` or `"sha256"`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Md5(_) => "md5",
            Checksum::Sha256(_) => "sha256",
        }
    }

    /// The expected digest, lowercase hex.
    pub fn hex(&self) -> &str {
        match self {
            Checksum::Md5(h) | Checksum::Sha256(h) => h,
        }
    }

    /// The digest of the file at `path`, lowercase hex, with this checksum's algorithm. `path`
    /// is a file the download wrote: a symbolic link there is refused, not followed.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read or is not a regular file.
    pub fn digest_file(&self, path: &Path) -> Result<String> {
        let (file, _) = safe_fs::open_regular_no_follow(path, u64::MAX)?;
        self.digest(file, path)
    }

    /// As [`Checksum::digest_file`], for a file of the user's (`--archive`): a link to a regular
    /// file is followed.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read or is not a regular file.
    pub fn digest_file_following(&self, path: &Path) -> Result<String> {
        let (file, _) = safe_fs::open_regular(path, u64::MAX)?;
        self.digest(file, path)
    }

    fn digest(&self, file: File, path: &Path) -> Result<String> {
        fn hash<D: Digest>(mut file: File, path: &Path) -> Result<String> {
            let mut hasher = D::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = file.read(&mut buf).map_err(Error::io(path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
        }
        match self {
            Checksum::Md5(_) => hash::<Md5>(file, path),
            Checksum::Sha256(_) => hash::<Sha256>(file, path),
        }
    }
}

/// What to fetch, where to put it, and how patiently.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// The folder that receives `cifar-10-batches-bin/` (created when missing).
    pub data_dir: PathBuf,
    /// The archive's URL (the official one, or a mirror of it).
    pub url: String,
    /// The archive's expected digest.
    pub checksum: Checksum,
    /// Tries in all for transient failures (at least 1).
    pub attempts: u32,
    /// Wait before the first retry; doubled before each further one.
    pub retry_delay: Duration,
    /// Limit for connecting, and for each read of the response (so a stalled server fails
    /// instead of hanging; a slow but moving download never times out).
    pub timeout: Duration,
    /// Draw a progress bar on stderr (only ever when stderr is a terminal).
    pub progress: bool,
    /// Most bytes accepted for an archive with another checksum than the official one: a larger
    /// announced size is refused before the body is read, and the download stops as soon as
    /// more arrive. With the official checksum the bound is the official size,
    /// [`OFFICIAL_ARCHIVE_BYTES`], instead.
    pub max_bytes: u64,
    /// A local archive to unpack instead of downloading (`--archive FILE`; a `file://` URL gives
    /// one too). `None`: an archive named [`ARCHIVE_NAME`] or [`PYTHON_ARCHIVE_NAME`] in the data
    /// folder, else the download.
    pub archive: Option<PathBuf>,
    /// Bytes per second below which a download is too slow (0: no rule), measured over
    /// [`DownloadOptions::speed_time`].
    pub speed_limit: u64,
    /// How long a download may stay below [`DownloadOptions::speed_limit`] before it stops.
    pub speed_time: Duration,
}

impl DownloadOptions {
    /// The official archive into `data_dir`: 4 tries, 1 s backoff doubling, 30 s timeouts, a
    /// progress bar when stderr is a terminal, [`DEFAULT_MAX_DOWNLOAD_BYTES`] for a mirror's
    /// archive.
    pub fn new(data_dir: impl Into<PathBuf>) -> DownloadOptions {
        DownloadOptions {
            data_dir: data_dir.into(),
            url: CIFAR10_URL.to_string(),
            checksum: Checksum::official(),
            attempts: 4,
            retry_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
            progress: crate::report::progress::stderr_terminal().cursor,
            max_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            archive: None,
            speed_limit: DEFAULT_SPEED_LIMIT,
            speed_time: DEFAULT_SPEED_TIME,
        }
    }

    /// The local archive to use instead of a download, if any: `archive`, a `file://` URL, or
    /// an archive of either release's name in the data folder.
    fn local_archive(&self) -> Option<PathBuf> {
        if let Some(a) = &self.archive {
            return Some(a.clone());
        }
        if let Some(path) = file_url_path(&self.url) {
            return Some(path);
        }
        [ARCHIVE_NAME, PYTHON_ARCHIVE_NAME]
            .iter()
            .map(|name| self.data_dir.join(name))
            .find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
    }

    /// Whether the checksum is the official archive's, so the exact official sizes are expected.
    fn is_official(&self) -> bool {
        self.checksum == Checksum::official()
    }

    /// The most bytes the archive may have: the official size with the official checksum,
    /// [`DownloadOptions::max_bytes`] otherwise.
    pub fn byte_limit(&self) -> u64 {
        if self.is_official() {
            OFFICIAL_ARCHIVE_BYTES
        } else {
            self.max_bytes
        }
    }

    /// The bound in words, for messages.
    fn limit_words(&self) -> String {
        if self.is_official() {
            format!("the official archive's {OFFICIAL_ARCHIVE_BYTES} bytes")
        } else {
            format!("the --max-download-bytes bound of {} bytes", self.max_bytes)
        }
    }
}

/// Makes sure a complete CIFAR-10 binary dataset is in `opts.data_dir`, downloading and
/// unpacking it when it is not. Returns the folder holding the `.bin` files.
///
/// With the official checksum every batch file must be exactly 10,000 records; with another
/// checksum (an archive of your own) each must be a positive whole number of records.
///
/// # Errors
/// [`Error::InvalidConfig`] (`data_dir` is not a folder), [`Error::Download`] (HTTP status,
/// timeout, connection failure after the retries, an archive larger than
/// [`DownloadOptions::byte_limit`]), [`Error::Checksum`] (expected vs got),
/// [`Error::BadArchive`] (unreadable archive, a member that is not a regular file or folder, a
/// missing member or a wrong size), [`Error::IncompleteData`] (an incomplete
/// `cifar-10-batches-bin/`, or a link or file of that name, is in the way), [`Error::Io`] (a
/// `.part` that is not a regular file, among others). On any error the dataset folder is as it
/// was; only a cut download's `.part` file is kept, for the next run to resume.
pub fn ensure(opts: &DownloadOptions) -> Result<PathBuf> {
    let official = opts.is_official();
    match fs::metadata(&opts.data_dir) {
        Ok(m) if !m.is_dir() => {
            let kind = if m.is_file() { "a file" } else { file_type_name(&m.file_type()) };
            return Err(Error::InvalidConfig {
                field: "data-dir",
                value: opts.data_dir.display().to_string(),
                expected: format!("it is {kind}, expected a folder"),
            });
        }
        _ => {}
    }
    let target = opts.data_dir.join(SUBDIR);
    for dir in [&target, &opts.data_dir] {
        if check_members(dir, official).is_ok() {
            tracing::info!("CIFAR-10 is already complete in {}; nothing to download", dir.display());
            return Ok(dir.clone());
        }
    }
    let python_target = opts.data_dir.join(python::SUBDIR);
    if check_python_members(&python_target).is_ok() {
        tracing::info!("CIFAR-10 (python layout) is already complete in {}; nothing to download", python_target.display());
        return Ok(python_target);
    }
    if let Some(archive) = opts.local_archive() {
        return install_local(opts, &archive);
    }
    // What is in the way is looked at, not followed: a link of that name is not ours to fill.
    match fs::symlink_metadata(&target) {
        Ok(m) if m.is_dir() => {
            if fs::read_dir(&target).map_err(Error::io(&target))?.next().is_some() {
                let reason = check_members(&target, official).expect_err("checked incomplete above");
                return Err(Error::IncompleteData { path: target, reason });
            }
        }
        Ok(m) => {
            let reason = format!("it is {}, not a folder", file_type_name(&m.file_type()));
            return Err(Error::IncompleteData { path: target, reason });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&target)(e)),
    }
    fs::create_dir_all(&opts.data_dir).map_err(Error::io(&opts.data_dir))?;

    let part = opts.data_dir.join(format!("{ARCHIVE_NAME}.part"));
    safe_fs::written_file_len(&part)?; // a link, folder or device there is refused, not followed
    let resumed = fetch(opts, &part)?;
    if let Err(e) = verify(opts, &part) {
        if !resumed {
            return Err(e);
        }
        // The kept bytes may be from another file (the mirror changed): once more from scratch.
        tracing::warn!("{e}; downloading again from the start");
        fetch(opts, &part)?;
        verify(opts, &part)?;
    }
    let installed = install(&part, &opts.data_dir, &UnpackLimits::new(official));
    // A verified archive that does not unpack is not fixed by downloading it again.
    fs::remove_file(&part).map_err(Error::io(&part))?;
    let target = installed?;
    tracing::info!("CIFAR-10 is ready in {}", target.display());
    Ok(target)
}

/// The path of a `file://` URL (`file:///abs/path` or `file://localhost/abs/path`, with `%XX`
/// escapes decoded); `None` for any other URL.
fn file_url_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("file://")?;
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).and_then(|&b| hex(b)), bytes.get(i + 2).and_then(|&b| hex(b))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
}

/// Verifies and unpacks a local archive (see [`DownloadOptions::local_archive`]); the archive
/// stays where it is. With the official checksum (no `--sha256`/`--md5`), either official
/// release's MD5 is accepted.
fn install_local(opts: &DownloadOptions, archive: &Path) -> Result<PathBuf> {
    let official = opts.is_official();
    let limit = if official { OFFICIAL_ARCHIVE_BYTES.max(OFFICIAL_PYTHON_ARCHIVE_BYTES) } else { opts.max_bytes };
    let (file, len) = safe_fs::open_regular(archive, u64::MAX)?;
    drop(file);
    if len > limit {
        let words = if official { "either official CIFAR-10 archive".to_string() } else { opts.limit_words() };
        return Err(Error::BadArchive {
            path: archive.to_path_buf(),
            reason: format!("it is {len} bytes, more than {words} (give its checksum with --sha256/--md5, and --max-download-bytes)"),
        });
    }
    tracing::info!("using the archive {} (no download)", archive.display());
    let actual = opts.checksum.digest_file_following(archive)?;
    let accepted: Vec<&str> = if official { vec![CIFAR10_MD5, CIFAR10_PYTHON_MD5] } else { vec![opts.checksum.hex()] };
    if !accepted.contains(&actual.as_str()) {
        return Err(Error::Checksum {
            path: archive.to_path_buf(),
            algorithm: opts.checksum.algorithm(),
            expected: if official {
                format!("{CIFAR10_MD5} ({ARCHIVE_NAME}) or {CIFAR10_PYTHON_MD5} ({PYTHON_ARCHIVE_NAME})")
            } else {
                opts.checksum.hex().to_string()
            },
            actual,
            kept: true,
        });
    }
    tracing::info!("{} {} verified", opts.checksum.algorithm(), actual);
    let target = install(archive, &opts.data_dir, &UnpackLimits::new(official && actual == CIFAR10_MD5))?;
    tracing::info!("CIFAR-10 is ready in {}", target.display());
    Ok(target)
}

/// Checks the python layout's files in `dir`: the five training batches, the test batch and
/// `batches.meta`, each a non-empty regular file (their contents are checked when read).
pub(crate) fn check_python_members(dir: &Path) -> Result<(), String> {
    for name in python::TRAIN_FILES.iter().chain([&python::TEST_FILE, &python::META_FILE]) {
        match fs::symlink_metadata(dir.join(name)) {
            Ok(m) if m.is_file() && m.len() > 0 => {}
            Ok(_) => return Err(format!("{name} is empty or not a regular file")),
            Err(_) => return Err(format!("{name} is missing")),
        }
    }
    Ok(())
}

/// Checks the dataset files in `dir`: the five training batches and the test batch with their
/// sizes, and a non-empty class list. Returns what is wrong, for an error message.
pub(crate) fn check_members(dir: &Path, official: bool) -> Result<(), String> {
    for name in TRAIN_FILES.iter().chain([&TEST_FILE]) {
        let size = fs::metadata(dir.join(name)).ok().filter(|m| m.is_file()).map(|m| m.len());
        let record = RECORD_BYTES as u64;
        match size {
            None => return Err(format!("{name} is missing")),
            Some(n) if official && n != OFFICIAL_RECORDS_PER_FILE * record => {
                return Err(format!("{name} is {n} bytes, expected {}", OFFICIAL_RECORDS_PER_FILE * record))
            }
            Some(n) if n == 0 || n % record != 0 => {
                return Err(format!("{name} is {n} bytes, not a positive whole number of {record}-byte records"))
            }
            Some(_) => {}
        }
    }
    match fs::metadata(dir.join(META_FILE)) {
        Ok(m) if m.is_file() && m.len() > 0 => Ok(()),
        Ok(_) => Err(format!("{META_FILE} is empty")),
        Err(_) => Err(format!("{META_FILE} is missing")),
    }
}

/// Checks the `.part` file's digest, removing it when wrong.
fn verify(opts: &DownloadOptions, part: &Path) -> Result<()> {
    let actual = opts.checksum.digest_file(part)?;
    if actual == opts.checksum.hex() {
        tracing::info!("{} {} verified", opts.checksum.algorithm(), actual);
        return Ok(());
    }
    fs::remove_file(part).map_err(Error::io(part))?;
    Err(Error::Checksum {
        path: part.to_path_buf(),
        algorithm: opts.checksum.algorithm(),
        expected: opts.checksum.hex().to_string(),
        actual,
        kept: false,
    })
}

/// How much unpacking may write: each file of `cifar-10-batches-bin/` is refused as soon as it
/// unpacks past its bound, and the archive as soon as its uncompressed tar stream (headers,
/// padding and members outside the folder included) passes `stream`.
#[derive(Clone, Debug)]
pub(crate) struct UnpackLimits {
    /// A batch file (`data_batch_N.bin`, `test_batch.bin`).
    pub batch: u64,
    /// Any other file (`batches.meta.txt`, `readme.html`, ...).
    pub other: u64,
    /// The whole uncompressed tar stream.
    pub stream: u64,
}

impl UnpackLimits {
    /// With the official checksum, a batch is exactly 10,000 records (30,730,000 bytes); with
    /// another, at most [`safe_fs::MAX_CIFAR_BATCH_BYTES`] (what the reader accepts). Other
    /// files: [`safe_fs::MAX_TEXT_FILE_BYTES`]. The stream: six batches and 64 MiB more.
    pub fn new(official: bool) -> UnpackLimits {
        let batch = if official { OFFICIAL_RECORDS_PER_FILE * RECORD_BYTES as u64 } else { safe_fs::MAX_CIFAR_BATCH_BYTES };
        UnpackLimits { batch, other: safe_fs::MAX_TEXT_FILE_BYTES, stream: 6 * batch + (64 << 20) }
    }

    /// The bound of the member at `rel` (a path under one of the two folders). A python
    /// release's pickled batch (about 31 MB in the official one) is bounded by
    /// [`safe_fs::MAX_CIFAR_BATCH_BYTES`], whatever the checksum.
    fn for_member(&self, rel: &Path) -> u64 {
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if rel.starts_with(python::SUBDIR) {
            if python::TRAIN_FILES.contains(&name) || name == python::TEST_FILE {
                safe_fs::MAX_CIFAR_BATCH_BYTES
            } else {
                self.other
            }
        } else if TRAIN_FILES.contains(&name) || name == TEST_FILE {
            self.batch
        } else {
            self.other
        }
    }
}

/// Unpacks `cifar-10-batches-bin/` (or the python release's `cifar-10-batches-py/`) from the
/// archive into a temporary folder in `data_dir`, checks it, and renames it into `data_dir`.
/// Returns the folder made. The temporary folder goes away on any error.
fn install(archive: &Path, data_dir: &Path, limits: &UnpackLimits) -> Result<PathBuf> {
    let official = limits.batch == OFFICIAL_RECORDS_PER_FILE * RECORD_BYTES as u64;
    let bad = |reason: String| Error::BadArchive { path: archive.to_path_buf(), reason };
    let tmp = tempfile::Builder::new().prefix(".cifar-10-batches.tmp").tempdir_in(data_dir).map_err(Error::io(data_dir))?;
    unpack(archive, tmp.path(), limits)?;
    let (subdir, unpacked) = if tmp.path().join(SUBDIR).exists() || !tmp.path().join(python::SUBDIR).exists() {
        let unpacked = tmp.path().join(SUBDIR);
        check_tree(&unpacked).map_err(|reason| bad(format!("unpacked {reason}")))?;
        check_members(&unpacked, official).map_err(|reason| bad(format!("archive member {SUBDIR}/{reason}")))?;
        (SUBDIR, unpacked)
    } else {
        let unpacked = tmp.path().join(python::SUBDIR);
        check_tree(&unpacked).map_err(|reason| bad(format!("unpacked {reason}")))?;
        check_python_members(&unpacked).map_err(|reason| bad(format!("archive member {}/{reason}", python::SUBDIR)))?;
        (python::SUBDIR, unpacked)
    };
    let target = data_dir.join(subdir);
    // What is in the way is looked at, not followed: a link of that name is not ours to fill.
    match fs::symlink_metadata(&target) {
        Ok(m) if m.is_dir() => {
            if fs::read_dir(&target).map_err(Error::io(&target))?.next().is_some() {
                return Err(Error::IncompleteData { path: target, reason: "a folder that is not empty".to_string() });
            }
            fs::remove_dir(&target).map_err(Error::io(&target))?;
        }
        Ok(m) => {
            let reason = format!("it is {}, not a folder", file_type_name(&m.file_type()));
            return Err(Error::IncompleteData { path: target, reason });
        }
        Err(_) => {}
    }
    fs::rename(&unpacked, &target).map_err(Error::io(&target))?;
    Ok(target)
}

/// Unpacks the members under `cifar-10-batches-bin/` of the gzip-compressed tar `archive` into
/// `dir`, creating only folders and regular files, each within its bound (see
/// [`UnpackLimits`]); other members are read past. A member's name as given in errors comes
/// from the archive, so it is quoted and escaped (`{:?}`).
///
/// # Errors
/// [`Error::BadArchive`] naming the member: a symbolic or hard link, a device, a FIFO (with its
/// type), a path leaving the folder, a file past its bound, too many members, an unreadable or
/// oversized archive; [`Error::Io`] when a file cannot be written.
pub(crate) fn unpack(archive: &Path, dir: &Path, limits: &UnpackLimits) -> Result<()> {
    let bad = |reason: String| Error::BadArchive { path: archive.to_path_buf(), reason };
    let (file, _) = safe_fs::open_regular_no_follow(archive, u64::MAX)?;
    let stream = Bounded::new(flate2::read::GzDecoder::new(io::BufReader::new(file)), limits.stream);
    let past_bound = stream.exceeded.clone();
    let stream_error = |what: &str, e: io::Error| {
        if past_bound.get() {
            bad(format!("it unpacks to more than {} bytes, more than a CIFAR-10 archive can (refused while unpacking)", limits.stream))
        } else {
            bad(format!("{what}: {e}"))
        }
    };
    let mut tar = tar::Archive::new(stream);
    let entries = tar.entries().map_err(|e| stream_error("not a gzip-compressed tar archive", e))?;
    let mut members = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(|e| stream_error("unreadable archive", e))?;
        let name = entry.path().map_err(|e| bad(format!("bad member name: {e}")))?.into_owned();
        let Some(rel) = member_path(&name).map_err(|why| bad(format!("member {name:?} {why}")))? else { continue };
        members += 1;
        if members > MAX_ARCHIVE_MEMBERS {
            return Err(bad(format!("more than {MAX_ARCHIVE_MEMBERS} members in {SUBDIR}/ (the official archive has 9)")));
        }
        let kind = entry.header().entry_type();
        let dest = dir.join(&rel);
        match kind {
            tar::EntryType::Directory => fs::create_dir_all(&dest).map_err(Error::io(&dest))?,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse
                if rel == Path::new(SUBDIR) || rel == Path::new(python::SUBDIR) =>
            {
                return Err(bad(format!("member {name:?} is a regular file, expected a folder")));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let limit = limits.for_member(&rel);
                if entry.size() > limit {
                    return Err(bad(format!(
                        "member {name:?} declares {} bytes, more than the {limit} bytes such a file may have",
                        entry.size()
                    )));
                }
                let parent = dest.parent().expect("a member under the folder has a parent");
                fs::create_dir_all(parent).map_err(Error::io(parent))?;
                let mut out = safe_fs::create_file(&dest)?;
                let copied = io::copy(&mut (&mut entry).take(limit + 1), &mut out)
                    .map_err(|e| stream_error(&format!("cannot unpack {name:?}"), e))?;
                if copied > limit {
                    return Err(bad(format!(
                        "member {name:?} unpacks past the {limit} bytes such a file may have (refused while unpacking)"
                    )));
                }
            }
            _ => {
                let to = match entry.link_name() {
                    Ok(Some(t)) if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) => format!(" to {t:?}"),
                    _ => String::new(),
                };
                return Err(bad(format!(
                    "member {name:?} is {}{to}: an archive may only create regular files and folders in {SUBDIR}/",
                    member_type_name(kind)
                )));
            }
        }
    }
    Ok(())
}

/// The member `name` relative to the archive's root when it is under `cifar-10-batches-bin/`
/// or `cifar-10-batches-py/`
/// (`./` prefixes dropped), `None` when it is elsewhere (read past), and an error for a name
/// that is absolute or climbs out with `..`.
fn member_path(name: &Path) -> Result<Option<PathBuf>, &'static str> {
    use std::path::Component;
    let mut rel = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err("leaves the folder it is unpacked in (an absolute path or `..`)")
            }
        }
    }
    Ok((rel.starts_with(SUBDIR) || rel.starts_with(python::SUBDIR)).then_some(rel))
}

/// The kind of a tar member, in words.
fn member_type_name(t: tar::EntryType) -> &'static str {
    use tar::EntryType as T;
    match t {
        T::Regular | T::Continuous | T::GNUSparse => "a regular file",
        T::Directory => "a folder",
        T::Symlink => "a symbolic link",
        T::Link => "a hard link",
        T::Char => "a character device",
        T::Block => "a block device",
        T::Fifo => "a FIFO",
        _ => "a special member (not a file or folder)",
    }
}

/// Checks that `dir` and everything in it, looked at without following links, are folders and
/// regular files. Returns what is wrong, for an error message.
fn check_tree(dir: &Path) -> Result<(), String> {
    let meta = fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is {}, expected a folder", dir.display(), file_type_name(&meta.file_type())));
    }
    for entry in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let t = entry.file_type().map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if t.is_dir() {
            check_tree(&entry.path())?;
        } else if !t.is_file() {
            return Err(format!("{} is {}, expected a regular file", entry.path().display(), file_type_name(&t)));
        }
    }
    Ok(())
}

/// A reader that fails, setting `exceeded`, once more than `limit` bytes have been read.
struct Bounded<R> {
    inner: R,
    left: u64,
    exceeded: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R> Bounded<R> {
    fn new(inner: R, limit: u64) -> Bounded<R> {
        Bounded { inner, left: limit, exceeded: Default::default() }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the bound is asked for, so that reaching it exactly is not an error.
        let want = buf.len().min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.exceeded.set(true);
            return Err(io::Error::other("the archive unpacks past its bound"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Why one try failed, and whether another may succeed.
struct Failure {
    reason: String,
    transient: bool,
}

impl Failure {
    fn transient(reason: impl Into<String>) -> Failure {
        Failure { reason: reason.into(), transient: true }
    }
    fn permanent(reason: impl Into<String>) -> Failure {
        Failure { reason: reason.into(), transient: false }
    }
}

/// Downloads `opts.url` into `part`, retrying transient failures with backoff and resuming what
/// is already there. Returns whether bytes from before this call (or an earlier try) were kept.
fn fetch(opts: &DownloadOptions, part: &Path) -> Result<bool> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        .user_agent(concat!("tch-cifar10/", env!("CARGO_PKG_VERSION")))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    tracing::info!("downloading {} to {}", opts.url, part.display());
    // In the process's one bar set, so log lines print above it rather than through it.
    let bar = crate::bars::bytes_bar(None, ARCHIVE_NAME, opts.progress && crate::report::progress::stderr_terminal().cursor);
    let mut delay = opts.retry_delay;
    let mut resumed = false;
    let attempts = opts.attempts.max(1);
    for attempt in 1..=attempts {
        match fetch_once(&agent, opts, part, &bar, &mut resumed) {
            Ok(()) => {
                bar.finish_and_clear();
                return Ok(resumed);
            }
            Err(f) if f.transient && attempt < attempts => {
                bar.suspend(|| {
                    tracing::warn!("{}; retrying in {:.1} s (try {}/{attempts})", f.reason, delay.as_secs_f64(), attempt + 1)
                });
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(f) => {
                bar.abandon();
                let kept = fs::symlink_metadata(part).map_or(0, |m| m.len());
                let mut reason = f.reason;
                if f.transient {
                    reason += &format!(" (gave up after {attempts} {})", if attempts == 1 { "try" } else { "tries" });
                }
                if kept > 0 {
                    reason += &format!("; the {kept} bytes received are kept in {} and the next run resumes them", part.display());
                }
                reason += &format!(
                    ". Without a network: fetch {ARCHIVE_NAME} (or {PYTHON_ARCHIVE_NAME}) elsewhere and put it in {}, \
                     or pass --archive FILE; it is verified and unpacked the same way",
                    opts.data_dir.display()
                );
                return Err(Error::Download { url: opts.url.clone(), reason });
            }
        }
    }
    unreachable!("the last try returns")
}

/// One request: resumes from the `.part` file's length with `Range` when it is not empty.
/// Never writes past [`DownloadOptions::byte_limit`]: a larger announced size is refused before
/// the body is read, and a body that runs past it is cut there and its `.part` removed.
fn fetch_once(agent: &ureq::Agent, opts: &DownloadOptions, part: &Path, bar: &ProgressBar, resumed: &mut bool) -> Result<(), Failure> {
    let permanent = |e: Error| Failure::permanent(e.to_string());
    let limit = opts.byte_limit();
    let mut have = safe_fs::written_file_len(part).map_err(permanent)?.unwrap_or(0);
    if have > limit {
        // Longer than any archive accepted: it cannot verify, so start again.
        fs::remove_file(part).map_err(|e| permanent(Error::io(part)(e)))?;
        have = 0;
    }
    let too_big = |size: u64| {
        let _ = fs::remove_file(part);
        Failure::permanent(format!(
            "the server announces {size} bytes, more than {} (nothing was downloaded)",
            opts.limit_words()
        ))
    };
    let mut request = agent.get(&opts.url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = request.call().map_err(|e| match e {
        ureq::Error::Timeout(_) => {
            Failure::transient(format!("timed out: no answer within {:.1} s ({e})", opts.timeout.as_secs_f64()))
        }
        ureq::Error::Io(_) | ureq::Error::HostNotFound | ureq::Error::ConnectionFailed | ureq::Error::Protocol(_) => {
            Failure::transient(format!("request failed: {e}"))
        }
        _ => Failure::permanent(format!("request failed: {e}")),
    })?;
    let status = response.status();
    let (start, total) = match status.as_u16() {
        200 => match response.body().content_length() {
            Some(t) if t > limit => return Err(too_big(t)),
            t => (0, t),
        },
        206 => {
            let range = response.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
            match parse_content_range(range) {
                Some((_, Some(total))) if total > limit => return Err(too_big(total)),
                Some((first, total)) if first == have => (have, total),
                _ => {
                    // Not the range asked for: start over rather than splice wrong bytes.
                    let _ = fs::remove_file(part);
                    return Err(Failure::transient(format!("the server answered Range bytes={have}- with Content-Range {range:?}")));
                }
            }
        }
        // The kept file is already whole (or longer than the file): the checksum decides.
        416 if have > 0 => {
            *resumed = true;
            return Ok(());
        }
        429 | 500..=599 => return Err(Failure::transient(format!("HTTP status {status}"))),
        _ => return Err(Failure::permanent(format!("HTTP status {status}"))),
    };
    // Never through a link at `part` (see `safe_fs`).
    let file = if start == 0 {
        safe_fs::create_file(part)
    } else {
        *resumed = true;
        bar.suspend(|| tracing::info!("resuming at byte {start}"));
        safe_fs::append_file(part)
    };
    let mut file = file.map_err(|e| Failure::permanent(format!("cannot write {e}")))?;
    if let Some(total) = total {
        bar.set_length(total);
    }
    bar.set_position(start);
    let mut got = start;
    let mut speed = SpeedRule::new(opts.speed_limit, opts.speed_time, got);
    let mut body = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let of_total = |got: u64| total.map_or(format!("{got} bytes"), |t| format!("{got} of {t} bytes"));
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.flush();
                let what = if e.kind() == io::ErrorKind::TimedOut { "timed out" } else { "connection failed" };
                return Err(Failure::transient(format!("{what} after {}: {e}", of_total(got))));
            }
        };
        if got + n as u64 > limit {
            drop(file);
            let _ = fs::remove_file(part);
            return Err(Failure::permanent(format!(
                "more than {} arrived: stopped there, and the partial file was removed",
                opts.limit_words()
            )));
        }
        file.write_all(&buf[..n]).map_err(|e| Failure::permanent(format!("cannot write {}: {e}", part.display())))?;
        got += n as u64;
        bar.set_position(got);
        if let Some(slow) = speed.check(got, std::time::Instant::now()) {
            let _ = file.sync_all();
            // Not retried: a server this slow stays slow; the next run resumes the bytes kept.
            return Err(Failure::permanent(format!(
                "too slow: {slow} after {}, below the --speed-limit of {} bytes/s for --speed-time {} s",
                of_total(got),
                opts.speed_limit,
                opts.speed_time.as_secs_f64()
            )));
        }
    }
    file.sync_all().map_err(|e| Failure::permanent(format!("cannot write {}: {e}", part.display())))?;
    match total {
        Some(t) if got < t => Err(Failure::transient(format!("connection closed after {}", of_total(got)))),
        _ => Ok(()),
    }
}

/// curl's low-speed rule (`--speed-limit`, `--speed-time`): a transfer whose rate stays below
/// `limit` bytes/s over a whole window of `time` fails. Windows follow each other; each starts
/// where the last ended.
struct SpeedRule {
    limit: u64,
    time: Duration,
    window_start: std::time::Instant,
    window_bytes_at_start: u64,
}

impl SpeedRule {
    fn new(limit: u64, time: Duration, got: u64) -> SpeedRule {
        SpeedRule { limit, time, window_start: std::time::Instant::now(), window_bytes_at_start: got }
    }

    /// `Some(what was measured)` when the window ending `now` (with `got` bytes in all) was too
    /// slow; `None` otherwise (and a new window starts once one is complete).
    fn check(&mut self, got: u64, now: std::time::Instant) -> Option<String> {
        if self.limit == 0 || self.time.is_zero() {
            return None;
        }
        let elapsed = now.duration_since(self.window_start);
        if elapsed < self.time {
            return None;
        }
        let bytes = got - self.window_bytes_at_start;
        let rate = bytes as f64 / elapsed.as_secs_f64();
        if rate < self.limit as f64 {
            return Some(format!("{bytes} bytes in the last {:.1} s ({rate:.1} bytes/s)", elapsed.as_secs_f64()));
        }
        (self.window_start, self.window_bytes_at_start) = (now, got);
        None
    }
}

/// `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`) -> (FIRST, TOTAL).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let first = range.split_once('-')?.0.trim().parse().ok()?;
    Some((first, total.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_parse_and_name_bad_values() {
        assert_eq!(Checksum::md5(&CIFAR10_MD5.to_uppercase()).unwrap(), Checksum::official());
        let err = Checksum::sha256("abc").unwrap_err().to_string();
        assert_eq!(err, "invalid sha256 = abc: 64 hex digits");
        assert!(Checksum::md5(&"g".repeat(32)).is_err());
    }

    #[test]
    fn digests_match_known_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").unwrap();
        // RFC 1321 and FIPS 180-2 test vectors for "abc".
        assert_eq!(Checksum::official().digest_file(&path).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            Checksum::Sha256(String::new()).digest_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// A `.tar.gz` in `dir` of `members` (name, declared size, data), as headers of `kind`.
    fn archive(dir: &Path, members: &[(&str, tar::EntryType, u64, &[u8])]) -> PathBuf {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for &(name, kind, size, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(size);
            h.set_mode(0o644);
            h.set_path(name).unwrap();
            h.set_cksum();
            // The raw header and the data given (which may be shorter than declared).
            tar.get_mut().write_all(h.as_bytes()).unwrap();
            tar.get_mut().write_all(data).unwrap();
            tar.get_mut().write_all(&vec![0; (512 - data.len() % 512) % 512]).unwrap();
        }
        let bytes = tar.into_inner().unwrap().finish().unwrap();
        let path = dir.join("a.tar.gz");
        fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_member_declaring_more_than_its_bound_is_refused_before_a_byte_is_written() {
        use tar::EntryType::{Directory, Regular};
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        // The official bound is exact: 10,000 records. The archive declares 2.1 GB but holds 1 KB.
        let official = OFFICIAL_RECORDS_PER_FILE * RECORD_BYTES as u64;
        for (size, data_len) in [(official + 1, 1024), (2_100_000_000, 1024)] {
            let a = archive(dir.path(), &[
                ("cifar-10-batches-bin/", Directory, 0, b""),
                ("cifar-10-batches-bin/data_batch_1.bin", Regular, size, &vec![0u8; data_len]),
            ]);
            let msg = unpack(&a, &out, &UnpackLimits::new(true)).unwrap_err().to_string();
            let want = format!("member \"cifar-10-batches-bin/data_batch_1.bin\" declares {size} bytes, more than the 30730000 bytes");
            assert!(msg.contains(&want), "{msg}");
            assert!(!out.join("cifar-10-batches-bin/data_batch_1.bin").exists());
        }
        // A file of exactly the bound is fine.
        let small = UnpackLimits { batch: 3073, other: 10, stream: 1 << 20 };
        let a = archive(dir.path(), &[("cifar-10-batches-bin/test_batch.bin", Regular, 3073, &[1u8; 3073])]);
        unpack(&a, &out, &small).unwrap();
        assert_eq!(fs::read(out.join("cifar-10-batches-bin/test_batch.bin")).unwrap().len(), 3073);
        let a = archive(dir.path(), &[("cifar-10-batches-bin/readme.html", Regular, 11, b"hello world")]);
        let msg = unpack(&a, &out, &small).unwrap_err().to_string();
        assert!(msg.contains("declares 11 bytes, more than the 10 bytes"), "{msg}");
    }

    #[test]
    fn an_archive_unpacking_past_its_bound_is_refused_while_unpacking() {
        use tar::EntryType::Regular;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        // Members outside the folder are read past, not written, but still count.
        let junk = vec![0u8; 100_000];
        let a = archive(dir.path(), &[("junk/a", Regular, 100_000, &junk), ("junk/b", Regular, 100_000, &junk)]);
        let limits = UnpackLimits { batch: 3073, other: 10, stream: 150_000 };
        let msg = unpack(&a, &out, &limits).unwrap_err().to_string();
        assert!(msg.contains("unpacks to more than 150000 bytes") && msg.contains("refused while unpacking"), "{msg}");
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
        // The same within the bound: nothing is written (the members are not in the folder).
        unpack(&a, &out, &UnpackLimits { stream: 300_000, ..limits }).unwrap();
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    }

    #[test]
    fn bounded_reads_up_to_the_bound_and_fails_past_it() {
        let mut ok = Bounded::new(&[7u8; 100][..], 100);
        let mut buf = Vec::new();
        assert_eq!(ok.read_to_end(&mut buf).unwrap(), 100);
        assert!(!ok.exceeded.get());
        let mut past = Bounded::new(&[7u8; 101][..], 100);
        assert!(past.read_to_end(&mut Vec::new()).is_err());
        assert!(past.exceeded.get());
    }

    #[test]
    fn member_paths_stay_inside_the_folder() {
        assert_eq!(member_path(Path::new("./cifar-10-batches-bin/x.bin")), Ok(Some(PathBuf::from("cifar-10-batches-bin/x.bin"))));
        assert_eq!(member_path(Path::new("readme.html")), Ok(None));
        assert!(member_path(Path::new("cifar-10-batches-bin/../../etc/x")).is_err());
        assert!(member_path(Path::new("/cifar-10-batches-bin/x")).is_err());
    }

    #[test]
    fn byte_limits_are_the_official_size_or_the_option() {
        let opts = DownloadOptions::new("d");
        assert_eq!(opts.byte_limit(), 170_052_171);
        let opts = DownloadOptions { checksum: Checksum::sha256(&"0".repeat(64)).unwrap(), max_bytes: 1234, ..opts };
        assert_eq!(opts.byte_limit(), 1234);
    }

    #[test]
    fn the_speed_rule_fails_a_window_below_the_limit_only() {
        let t0 = std::time::Instant::now();
        let mut rule = SpeedRule { limit: 100, time: Duration::from_secs(10), window_start: t0, window_bytes_at_start: 0 };
        // Inside the first window nothing is judged, however slow.
        assert_eq!(rule.check(1, t0 + Duration::from_secs(9)), None);
        // 1,000 bytes in 10 s is exactly the limit: fine, and a new window starts there.
        assert_eq!(rule.check(1000, t0 + Duration::from_secs(10)), None);
        // 5 more bytes (one every 2 s) in the next 10 s: too slow.
        let slow = rule.check(1005, t0 + Duration::from_secs(20)).unwrap();
        assert!(slow.starts_with("5 bytes in the last 10.0 s (0.5 bytes/s)"), "{slow}");
        let mut off = SpeedRule { limit: 0, ..rule };
        assert_eq!(off.check(1005, t0 + Duration::from_secs(100)), None);
    }

    #[test]
    fn file_urls_name_local_paths() {
        assert_eq!(file_url_path("file:///srv/a%20b/cifar-10-binary.tar.gz"), Some(PathBuf::from("/srv/a b/cifar-10-binary.tar.gz")));
        assert_eq!(file_url_path("file://localhost/x.tar.gz"), Some(PathBuf::from("/x.tar.gz")));
        assert_eq!(file_url_path("https://example.org/x.tar.gz"), None);
    }

    #[test]
    fn content_range_is_parsed() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
