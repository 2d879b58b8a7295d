//! Verified download of the official CIFAR-10 binary release (`cifar-10-binary.tar.gz`, from
//! <https://www.cs.toronto.edu/~kriz/cifar.html>), as the reference's `CIFAR10(download=True)`.
//!
//! Nothing is left half-done: the archive streams to `DIR/cifar-10-binary.tar.gz.part`, its
//! checksum is verified, it is unpacked into a temporary folder beside the target, every expected
//! file and its size is checked, and only then is `cifar-10-batches-bin/` renamed into place.
//! A complete dataset already in place means no request at all. Transient failures (connection
//! errors and cuts, timeouts, HTTP 429 and 5xx) are retried with exponential backoff, resuming
//! the `.part` file with an HTTP `Range` request; a cut download is kept so the next run resumes it.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, IsTerminal, Read, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use md5::Md5;
use sha2::{Digest, Sha256};

use super::cifar::{META_FILE, RECORD_BYTES, SUBDIR, TEST_FILE, TRAIN_FILES};
use crate::error::{Error, Result};

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
/// Records in each file of the official release.
pub const OFFICIAL_RECORDS_PER_FILE: u64 = 10_000;

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

    /// The digest of the file at `path`, lowercase hex, with this checksum's algorithm.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read.
    pub fn digest_file(&self, path: &Path) -> Result<String> {
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
        let file = File::open(path).map_err(Error::io(path))?;
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
}

impl DownloadOptions {
    /// The official archive into `data_dir`: 4 tries, 1 s backoff doubling, 30 s timeouts, a
    /// progress bar when stderr is a terminal.
    pub fn new(data_dir: impl Into<PathBuf>) -> DownloadOptions {
        DownloadOptions {
            data_dir: data_dir.into(),
            url: CIFAR10_URL.to_string(),
            checksum: Checksum::official(),
            attempts: 4,
            retry_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
            progress: io::stderr().is_terminal(),
        }
    }

    /// Whether the checksum is the official archive's, so the exact official sizes are expected.
    fn is_official(&self) -> bool {
        self.checksum == Checksum::official()
    }
}

/// Makes sure a complete CIFAR-10 binary dataset is in `opts.data_dir`, downloading and
/// unpacking it when it is not. Returns the folder holding the `.bin` files.
///
/// With the official checksum every batch file must be exactly 10,000 records; with another
/// checksum (an archive of your own) each must be a positive whole number of records.
///
/// # Errors
/// [`Error::Download`] (HTTP status, timeout, connection failure after the retries),
/// [`Error::Checksum`] (expected vs got), [`Error::BadArchive`] (unreadable archive, a missing
/// member or a wrong size), [`Error::IncompleteData`] (an incomplete `cifar-10-batches-bin/` is
/// in the way), [`Error::Io`]. On any error the dataset folder is as it was; only a cut
/// download's `.part` file is kept, for the next run to resume.
pub fn ensure(opts: &DownloadOptions) -> Result<PathBuf> {
    let official = opts.is_official();
    let target = opts.data_dir.join(SUBDIR);
    for dir in [&target, &opts.data_dir] {
        if check_members(dir, official).is_ok() {
            tracing::info!("CIFAR-10 is already complete in {}; nothing to download", dir.display());
            return Ok(dir.clone());
        }
    }
    if let Ok(mut entries) = fs::read_dir(&target) {
        if entries.next().is_some() {
            let reason = check_members(&target, official).expect_err("checked incomplete above");
            return Err(Error::IncompleteData { path: target, reason });
        }
    } else if target.exists() {
        return Err(Error::IncompleteData { path: target, reason: "it is not a folder".to_string() });
    }
    fs::create_dir_all(&opts.data_dir).map_err(Error::io(&opts.data_dir))?;

    let part = opts.data_dir.join(format!("{ARCHIVE_NAME}.part"));
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
    let installed = install(&part, &opts.data_dir, &target, official);
    // A verified archive that does not unpack is not fixed by downloading it again.
    fs::remove_file(&part).map_err(Error::io(&part))?;
    installed?;
    tracing::info!("CIFAR-10 is ready in {}", target.display());
    Ok(target)
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
    })
}

/// Unpacks `cifar-10-batches-bin/` from the archive into a temporary folder in `data_dir`,
/// checks it, and renames it to `target`. The temporary folder goes away on any error.
fn install(archive: &Path, data_dir: &Path, target: &Path, official: bool) -> Result<()> {
    let bad = |reason: String| Error::BadArchive { path: archive.to_path_buf(), reason };
    let tmp = tempfile::Builder::new().prefix(".cifar-10-batches-bin.tmp").tempdir_in(data_dir).map_err(Error::io(data_dir))?;
    let file = File::open(archive).map_err(Error::io(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let entries = tar.entries().map_err(|e| bad(format!("not a gzip-compressed tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("unreadable archive: {e}")))?;
        let path = entry.path().map_err(|e| bad(format!("bad member name: {e}")))?.into_owned();
        if path.starts_with(SUBDIR) {
            // `unpack_in` refuses members that would land outside `tmp`.
            entry.unpack_in(tmp.path()).map_err(|e| bad(format!("cannot unpack {}: {e}", path.display())))?;
        }
    }
    let unpacked = tmp.path().join(SUBDIR);
    check_members(&unpacked, official).map_err(|reason| bad(format!("archive member {SUBDIR}/{reason}")))?;
    if target.is_dir() {
        fs::remove_dir(target).map_err(Error::io(target))?; // empty: checked by `ensure`
    }
    fs::rename(&unpacked, target).map_err(Error::io(target))?;
    Ok(())
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
    let bar = if opts.progress && io::stderr().is_terminal() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("the progress template is valid"),
    );
    bar.set_message(ARCHIVE_NAME);
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
                let kept = fs::metadata(part).map_or(0, |m| m.len());
                let mut reason = f.reason;
                if f.transient {
                    reason += &format!(" (gave up after {attempts} {})", if attempts == 1 { "try" } else { "tries" });
                }
                if kept > 0 {
                    reason += &format!("; the {kept} bytes received are kept in {} and the next run resumes them", part.display());
                }
                return Err(Error::Download { url: opts.url.clone(), reason });
            }
        }
    }
    unreachable!("the last try returns")
}

/// One request: resumes from the `.part` file's length with `Range` when it is not empty.
fn fetch_once(agent: &ureq::Agent, opts: &DownloadOptions, part: &Path, bar: &ProgressBar, resumed: &mut bool) -> Result<(), Failure> {
    let have = fs::metadata(part).map_or(0, |m| m.len());
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
        200 => (0, response.body().content_length()),
        206 => {
            let range = response.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
            match parse_content_range(range) {
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
    let file = if start == 0 {
        File::create(part)
    } else {
        *resumed = true;
        bar.suspend(|| tracing::info!("resuming at byte {start}"));
        OpenOptions::new().append(true).open(part)
    };
    let mut file = file.map_err(|e| Failure::permanent(format!("cannot write {}: {e}", part.display())))?;
    if let Some(total) = total {
        bar.set_length(total);
    }
    bar.set_position(start);
    let mut got = start;
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
        file.write_all(&buf[..n]).map_err(|e| Failure::permanent(format!("cannot write {}: {e}", part.display())))?;
        got += n as u64;
        bar.set_position(got);
    }
    file.sync_all().map_err(|e| Failure::permanent(format!("cannot write {}: {e}", part.display())))?;
    match total {
        Some(t) if got < t => Err(Failure::transient(format!("connection closed after {}", of_total(got)))),
        _ => Ok(()),
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

    #[test]
    fn content_range_is_parsed() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
