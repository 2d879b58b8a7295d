//! A run's directory (`train --out runs/NAME`): `config.json`, metrics, charts and checkpoints.
//! Every file is written atomically (a temporary file in the same folder, then a rename), so an
//! interrupted write never leaves a half-written file in place of a good one.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::error::{Error, Result};

/// The lock file inside a run folder (see [`RunDir::lock`]).
pub const LOCK_FILE: &str = ".lock";

/// The configuration file inside a run directory.
pub const CONFIG_FILE: &str = "config.json";
/// The files a run writes; a folder holding any of them is a run.
pub const RUN_FILES: [&str; 6] =
    ["config.json", "checkpoint.safetensors", "model.safetensors", "metrics.jsonl", "summary.json", "curves.png"];

/// The lock file used instead of `flock` where the filesystem does not support it (see
/// [`RunDir::lock`]): created exclusively, holding `HOST PID`, removed on release.
pub const FALLBACK_LOCK_FILE: &str = ".lock.excl";

/// A test hook: when set (to `ENOSYS`, `EOPNOTSUPP` or `ENOLCK`, or an errno number), every
/// `flock` of a run folder fails with that error, as on a filesystem without locking, so that
/// the fallback of [`RunDir::lock`] can be tested on one that has it.
pub const FLOCK_ERRNO_HOOK: &str = "TCH_CIFAR10_TEST_FLOCK_ERRNO";

/// A held run-folder lock (see [`RunDir::lock`]); released when dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: Option<std::fs::File>,
    /// The fallback lock file, removed on drop.
    fallback: Option<PathBuf>,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if let Some(path) = &self.fallback {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether `flock` failed because the filesystem does not support it (Lustre or NFS mounted
/// without locking), rather than because another process holds the lock.
fn unsupported(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EOPNOTSUPP | libc::ENOLCK))
}

/// `flock(fd, LOCK_EX | LOCK_NB)`, or the error of [`FLOCK_ERRNO_HOOK`].
fn flock_exclusive(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    if let Ok(v) = std::env::var(FLOCK_ERRNO_HOOK) {
        let errno = match v.as_str() {
            "ENOSYS" => libc::ENOSYS,
            "EOPNOTSUPP" => libc::EOPNOTSUPP,
            "ENOLCK" => libc::ENOLCK,
            n => n.parse().unwrap_or(libc::ENOLCK),
        };
        return Err(std::io::Error::from_raw_os_error(errno));
    }
    // SAFETY: flock on a file descriptor the caller owns.
    match unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// This machine's host name (`gethostname(2)`), or `unknown-host`.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether process `pid` of this machine runs.
fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    pid > 0 && (unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Set once the fallback has been announced: it is said once per process.
static FALLBACK_SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The folder of one training run.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates (or reuses) the folder at `path`.
    ///
    /// # Errors
    /// [`Error::Io`] when the folder cannot be created.
    pub fn create(path: impl Into<PathBuf>) -> Result<RunDir> {
        let path = path.into();
        std::fs::create_dir_all(&path).map_err(Error::io(&path))?;
        Ok(RunDir { path })
    }

    /// The folder at `path`, which may not exist yet (nothing is created or checked).
    pub fn at(path: impl Into<PathBuf>) -> RunDir {
        RunDir { path: path.into() }
    }

    /// An existing run folder.
    ///
    /// # Errors
    /// [`Error::Io`] when `path` is not a directory.
    pub fn open(path: impl Into<PathBuf>) -> Result<RunDir> {
        let path = path.into();
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => Ok(RunDir { path }),
            Ok(_) => Err(Error::Io { path, cause: std::io::Error::other("not a directory") }),
            Err(e) => Err(Error::Io { path, cause: e }),
        }
    }

    /// The default `runs/YYYYMMDD-HHMMSS` (UTC) for a new run.
    pub fn default_path() -> PathBuf {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        PathBuf::from("runs").join(utc_stamp(secs))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path()/name`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Takes the folder's advisory lock (`flock` on `.lock` inside it, holding this process's id)
    /// for as long as the returned guard lives: two runs, or a run and its `--resume`, never
    /// write one folder at once. The lock goes with the process, also on `kill -9`.
    ///
    /// Where the filesystem does not support `flock` (it fails with ENOSYS, EOPNOTSUPP or
    /// ENOLCK: Lustre, NFS mounted without locking), the lock is instead the exclusive creation
    /// of [`FALLBACK_LOCK_FILE`] holding `HOST PID`, removed when the guard is dropped; this is
    /// logged once per process. A lock file left by a killed process of this host is removed;
    /// one of another host is reported with the file to delete.
    ///
    /// # Errors
    /// [`Error::RunInUse`] naming the folder and the process (and host, with the fallback)
    /// holding it; [`Error::Io`] when the lock file cannot be opened or `flock` fails otherwise.
    pub fn lock(&self) -> Result<RunLock> {
        self.lock_with(flock_exclusive)
    }

    /// [`RunDir::lock`] with `flock` given (the tests' failing one).
    fn lock_with(&self, flock: impl Fn(std::os::fd::RawFd) -> std::io::Result<()>) -> Result<RunLock> {
        use std::os::unix::{fs::OpenOptionsExt, io::AsRawFd};
        let path = self.file(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(Error::io(&path))?;
        match flock(file.as_raw_fd()) {
            Ok(()) => {}
            Err(e) if unsupported(&e) => {
                if !FALLBACK_SAID.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    tracing::warn!(
                        "{}: flock is not supported on this filesystem ({e}); run folders are locked with a {FALLBACK_LOCK_FILE} file holding host and process id instead",
                        path.display()
                    );
                }
                return self.lock_file();
            }
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                let holder = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok());
                return Err(Error::RunInUse { path: self.path.clone(), pid: holder, host: None });
            }
            Err(e) => return Err(Error::Io { path, cause: e }),
        }
        file.set_len(0).and_then(|()| write!(file, "{}", std::process::id())).map_err(Error::io(&path))?;
        Ok(RunLock { _file: Some(file), fallback: None })
    }

    /// The fallback lock: creates [`FALLBACK_LOCK_FILE`] exclusively (`O_CREAT | O_EXCL`,
    /// atomic on NFS 3 and later and on Lustre), holding `HOST PID`.
    fn lock_file(&self) -> Result<RunLock> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.file(FALLBACK_LOCK_FILE);
        let host = host_name();
        for _ in 0..3 {
            let created = std::fs::OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).open(&path);
            match created {
                Ok(mut f) => {
                    writeln!(f, "{host} {}", std::process::id()).and_then(|()| f.sync_all()).map_err(|e| {
                        let _ = std::fs::remove_file(&path);
                        Error::Io { path: path.clone(), cause: e }
                    })?;
                    return Ok(RunLock { _file: None, fallback: Some(path) });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = crate::safe_fs::read_text(&path, 4096).unwrap_or_default();
                    let mut words = text.split_whitespace();
                    let (holder_host, pid) = (words.next().unwrap_or("").to_string(), words.next().and_then(|p| p.parse::<u32>().ok()));
                    match pid {
                        Some(pid) if holder_host == host && !alive(pid as i32) => {
                            tracing::info!("removed {}, left by process {pid}, which is gone", path.display());
                            let _ = std::fs::remove_file(&path);
                        }
                        // Being written by its creator this instant: look again.
                        None if text.is_empty() => std::thread::sleep(std::time::Duration::from_millis(50)),
                        _ => {
                            return Err(Error::RunInUse {
                                path: self.path.clone(),
                                pid,
                                host: Some((if holder_host.is_empty() { "an unknown host".into() } else { holder_host }, path.clone())),
                            })
                        }
                    }
                }
                Err(e) => return Err(Error::Io { path, cause: e }),
            }
        }
        Err(Error::RunInUse { path: self.path.clone(), pid: None, host: Some(("an unknown host".into(), path)) })
    }

    /// The run files already in the folder (a folder holding any of them is a run).
    pub fn run_files(&self) -> Vec<&'static str> {
        RUN_FILES.iter().copied().filter(|f| self.file(f).symlink_metadata().is_ok()).collect()
    }

    /// Removes the temporary files (`.NAME.tmp-PID`) that writers which no longer run left
    /// behind (a `kill -9` mid-write); those of live processes stay. Returns how many went.
    pub fn remove_stale_temporaries(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.path) else { return 0 };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix('.')).and_then(|n| n.rsplit_once(".tmp-")).and_then(|(_, p)| p.parse::<i32>().ok()) else {
                continue;
            };
            if !alive(pid) && entry.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(entry.path()).is_ok() {
                tracing::info!("removed {}, left by process {pid}, which is gone", entry.path().display());
                removed += 1;
            }
        }
        removed
    }

    /// Writes `value` as pretty JSON to `name`, atomically.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn write_json(&self, name: &str, value: &impl Serialize) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(value).expect("run files serialise to JSON");
        text.push(b'\n');
        write_atomic(&self.file(name), &text)
    }
}

/// Writes `bytes` to `path` through a temporary sibling, synced, then renamed over `path`.
/// Only a regular file is ever replaced: a device (`/dev/null`), FIFO, socket, link or folder
/// at `path` is an error, checked before anything is written.
///
/// # Errors
/// [`Error::Io`] naming `path`; `path` is untouched on failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => {
            let what = crate::safe_fs::file_type_name(&m.file_type());
            let cause = std::io::Error::new(std::io::ErrorKind::AlreadyExists, format!("this is {what}, not a regular file; only a regular file is replaced"));
            return Err(Error::Io { path: path.to_path_buf(), cause });
        }
        _ => {}
    }
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = crate::safe_fs::create_file_io(&tmp)?; // never through a link left there
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io { path: path.to_path_buf(), cause: e }
    })
}

/// `YYYYMMDD-HHMMSS` for Unix time `secs` (UTC), by the civil-from-days algorithm.
fn utc_stamp(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        // 2026-11-28 16:17:26 UTC, from `date -u -d @1795882646`.
        assert_eq!(utc_stamp(1_795_882_646), "20261128-161726");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000"); // a leap day
    }

    #[test]
    fn a_locked_folder_names_its_holder_and_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path()).unwrap();
        let held = run.lock().unwrap();
        // flock locks belong to the open file description: a second open in this process
        // conflicts as a second process would.
        let err = run.lock().unwrap_err().to_string();
        assert!(err.contains(&format!("in use by process {}", std::process::id())), "{err}");
        drop(held);
        run.lock().unwrap();
    }

    /// Where flock is not supported, the lock is a file holding host and pid: held, it names
    /// them (never a flock holder); released, it is gone; left by a dead process of this host,
    /// it is taken over; left by another host, it is named with the file to delete.
    #[test]
    fn without_flock_the_lock_is_a_file_holding_host_and_pid() {
        for errno in [libc::ENOSYS, libc::EOPNOTSUPP, libc::ENOLCK] {
            let fails = move |_| Err(std::io::Error::from_raw_os_error(errno));
            let dir = tempfile::tempdir().unwrap();
            let run = RunDir::create(dir.path()).unwrap();
            let file = run.file(FALLBACK_LOCK_FILE);
            let held = run.lock_with(fails).unwrap();
            let host = host_name();
            assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{host} {}\n", std::process::id()));
            let err = run.lock_with(fails).unwrap_err().to_string();
            assert!(err.contains(&format!("in use by process {} on {host}", std::process::id())) && err.contains(FALLBACK_LOCK_FILE), "{err}");
            drop(held);
            assert!(!file.exists());

            std::fs::write(&file, format!("{host} {}\n", i32::MAX - 7)).unwrap(); // no such process
            let taken = run.lock_with(fails).unwrap();
            assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{host} {}\n", std::process::id()));
            drop(taken);

            std::fs::write(&file, "node17 4242\n").unwrap();
            let err = run.lock_with(fails).unwrap_err().to_string();
            assert!(err.contains("process 4242 on node17") && err.contains(&format!("delete {}", file.display())), "{err}");
        }
        // Another failure of flock is an I/O error naming the lock file, not "in use".
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path()).unwrap();
        let err = run.lock_with(|_| Err(std::io::Error::from_raw_os_error(libc::EBADF))).unwrap_err().to_string();
        assert!(err.contains(LOCK_FILE) && !err.contains("in use"), "{err}");
    }

    #[test]
    fn stale_temporaries_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path()).unwrap();
        let dead = format!(".checkpoint.safetensors.tmp-{}", i32::MAX - 7); // no such process
        let live = format!(".metrics.jsonl.tmp-{}", std::process::id());
        for f in [&dead, &live] {
            std::fs::write(run.file(f), b"x").unwrap();
        }
        assert_eq!(run.remove_stale_temporaries(), 1);
        assert!(!run.file(&dead).exists() && run.file(&live).exists());
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path().join("a/b")).unwrap();
        run.write_json("x.json", &[1, 2]).unwrap();
        run.write_json("x.json", &[3]).unwrap();
        assert_eq!(std::fs::read_to_string(run.file("x.json")).unwrap(), "[\n  3\n]\n");
        assert_eq!(std::fs::read_dir(run.path()).unwrap().count(), 1);
    }
}
