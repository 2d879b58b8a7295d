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
///
/// # Errors
/// [`Error::Io`] naming `path`; `path` is untouched on failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
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
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path().join("a/b")).unwrap();
        run.write_json("x.json", &[1, 2]).unwrap();
        run.write_json("x.json", &[3]).unwrap();
        assert_eq!(std::fs::read_to_string(run.file("x.json")).unwrap(), "[\n  3\n]\n");
        assert_eq!(std::fs::read_dir(run.path()).unwrap().count(), 1);
    }
}
