//! How libtorch's OpenMP threads wait for work, set before libtorch is loaded.
//!
//! libtorch (the PyPI build this crate links) runs its intra-op threads on GNU OpenMP (libgomp).
//! Between parallel regions a libgomp thread spins on the CPU before it sleeps: by default for
//! 300,000 iterations (libgomp's `GOMP_SPINCOUNT` default when `OMP_WAIT_POLICY` is unset; see the
//! libgomp manual, "GOMP_SPINCOUNT" and "OMP_WAIT_POLICY"). On a quiet machine that saves a
//! wake-up per operator; on a busy one the spinning threads take the cores from the processes
//! (and the threads) that have work, and an epoch of the reference mode gets 5 to 14 times slower
//! instead of the 2 times of its fair share. `OMP_WAIT_POLICY=PASSIVE` (no spinning) holds up
//! under load but costs a fifth to a third on a quiet machine; a short spin ([`SPIN_COUNT`])
//! keeps most of the quiet speed and gives the cores back quickly.
//!
//! libgomp reads these variables once, in its constructor, when the dynamic loader maps it: before
//! `main`. So [`reexec`] (first thing in `main`) executes the binary again, same arguments and
//! process id, with `GOMP_SPINCOUNT` set, unless the user set `OMP_WAIT_POLICY` or
//! `GOMP_SPINCOUNT` (their value always wins and is never changed). The marker variable [`MARKER`]
//! stops a second re-execution and tells [`in_force`] that the program set the value; child
//! processes (`sweep` trials) inherit both and do not re-execute.
//!
//! The LLVM OpenMP runtime (libtorch on macOS) reads `OMP_WAIT_POLICY` but not `GOMP_SPINCOUNT`.

use std::ffi::OsString;

use serde::Serialize;

/// The `GOMP_SPINCOUNT` the program sets when the user set neither variable: spin iterations
/// before a waiting libgomp thread sleeps (libgomp's default is 300,000; `PASSIVE` is 0).
/// A count in the low thousands spins for microseconds: on a quiet machine a thread still
/// catches the next operator's work before it sleeps, on a busy one it gives its core back almost
/// at once (`scripts/bench --load N` measures both). Override it with either environment variable.
pub const SPIN_COUNT: u64 = 3000;

/// libgomp's wait policy variable (`ACTIVE` or `PASSIVE`).
pub const OMP_WAIT_POLICY: &str = "OMP_WAIT_POLICY";
/// libgomp's spin count variable (a count, optionally with a `k`, `M`, `G` or `T` suffix, or
/// `infinite`).
pub const GOMP_SPINCOUNT: &str = "GOMP_SPINCOUNT";
/// Set (to the spin count) by the program when it set `GOMP_SPINCOUNT` and executed itself again.
pub const MARKER: &str = "TCH_CIFAR10_SPINCOUNT_SET";

/// Executes this binary again with `GOMP_SPINCOUNT` = [`SPIN_COUNT`] set, unless the user set
/// `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT`, or this process is already the re-executed one. Returns
/// only when no re-execution is needed (`Ok`) or it failed (`Err`: the program then runs on
/// libgomp's defaults). Call it first thing in `main`, before any thread is started.
///
/// # Errors
/// The binary's path could not be found, or `execve` failed.
#[cfg(unix)]
pub fn reexec() -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    if [OMP_WAIT_POLICY, GOMP_SPINCOUNT, MARKER].iter().any(|v| std::env::var_os(v).is_some()) {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let count = SPIN_COUNT.to_string();
    // `exec` returns only on failure.
    Err(std::process::Command::new(exe).arg0(arg0).args(args).env(GOMP_SPINCOUNT, &count).env(MARKER, &count).exec())
}

/// Does nothing where there is no `exec` (see the unix version).
///
/// # Errors
/// None.
#[cfg(not(unix))]
pub fn reexec() -> std::io::Result<()> {
    Ok(())
}

/// Who chose the wait behaviour in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The user set `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT`.
    User,
    /// The program set `GOMP_SPINCOUNT` and executed itself again ([`reexec`]).
    Program,
    /// Neither: libgomp's defaults (the re-execution failed or was not tried).
    Default,
}

/// The wait settings libgomp read when this process started, and who chose them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WaitPolicy {
    /// `OMP_WAIT_POLICY` at start, if set.
    pub omp_wait_policy: Option<String>,
    /// `GOMP_SPINCOUNT` at start, if set.
    pub gomp_spincount: Option<String>,
    /// Who set them.
    pub source: Source,
    /// A value libgomp ignores (it then keeps its default), said in words.
    pub ignored: Option<String>,
}

/// The variables of this process's environment at start (`/proc/self/environ`: what libgomp read
/// when it was loaded, whatever the process changed since), or the current environment where
/// that file cannot be read.
fn start_environment() -> Vec<(OsString, OsString)> {
    #[cfg(target_os = "linux")]
    if let Ok(bytes) = std::fs::read("/proc/self/environ") {
        use std::os::unix::ffi::OsStrExt;
        return bytes
            .split(|&b| b == 0)
            .filter_map(|kv| {
                let eq = kv.iter().position(|&b| b == b'=')?;
                Some((std::ffi::OsStr::from_bytes(&kv[..eq]).to_owned(), std::ffi::OsStr::from_bytes(&kv[eq + 1..]).to_owned()))
            })
            .collect();
    }
    std::env::vars_os().collect()
}

/// The wait settings in force in this process (see [`WaitPolicy`]).
pub fn in_force() -> WaitPolicy {
    let env = start_environment();
    let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.to_string_lossy().into_owned());
    let (policy, count, marker) = (get(OMP_WAIT_POLICY), get(GOMP_SPINCOUNT), get(MARKER));
    let source = match (&policy, &count, &marker) {
        (None, Some(c), Some(m)) if c == m => Source::Program,
        (None, None, _) => Source::Default,
        _ => Source::User,
    };
    let ignored = match (&policy, &count) {
        (Some(p), _) if !valid_policy(p) => Some(format!("{OMP_WAIT_POLICY}={p:?} is ignored by libgomp: expected ACTIVE or PASSIVE")),
        (_, Some(c)) if !valid_spin_count(c) => Some(format!(
            "{GOMP_SPINCOUNT}={c:?} is ignored by libgomp: expected a count (optionally with a k, M, G or T suffix) or infinite"
        )),
        _ => None,
    };
    WaitPolicy { omp_wait_policy: policy, gomp_spincount: count, source, ignored }
}

/// libgomp's parse of `OMP_WAIT_POLICY` (`env.c`, `parse_wait_policy`).
fn valid_policy(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "active" | "passive")
}

/// libgomp's parse of `GOMP_SPINCOUNT` (`env.c`, `parse_spincount`): a decimal count with an
/// optional k, M, G or T suffix, or `infinite`/`infinity`, spaces around allowed (a leading sign,
/// which libgomp's `strtoull` would take, is refused).
fn valid_spin_count(v: &str) -> bool {
    let v = v.trim();
    if v.eq_ignore_ascii_case("infinite") || v.eq_ignore_ascii_case("infinity") {
        return true;
    }
    let digits = v.trim_end_matches(|c: char| "kKmMgGtT".contains(c)).trim_end();
    v.len() - v.trim_end_matches(|c: char| "kKmMgGtT".contains(c)).len() <= 1
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
}

impl std::fmt::Display for WaitPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: Vec<String> = [(OMP_WAIT_POLICY, &self.omp_wait_policy), (GOMP_SPINCOUNT, &self.gomp_spincount)]
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        match self.source {
            Source::User => write!(f, "{} (set by the user)", set.join(" "))?,
            Source::Program => write!(f, "{} (set by tch-cifar10 at start; set {OMP_WAIT_POLICY} or {GOMP_SPINCOUNT} to choose)", set.join(" "))?,
            Source::Default => write!(f, "libgomp's defaults (spin 300000, then sleep; the re-execution that sets {GOMP_SPINCOUNT}={SPIN_COUNT} did not happen)")?,
        }
        match &self.ignored {
            Some(why) => write!(f, "; {why}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libgomp_values_are_recognised_and_others_flagged() {
        // As libgomp's env.c parses them (a sign, which strtoull would take, is refused here).
        for ok in ["0", "3000", " 30k ", "2M", "1G", "infinite", "INFINITY"] {
            assert!(valid_spin_count(ok), "{ok}");
        }
        for bad in ["", "abc", "3.5", "10kk", "k"] {
            assert!(!valid_spin_count(bad), "{bad}");
        }
        assert!(valid_policy("passive") && valid_policy("ACTIVE"));
        assert!(!valid_policy("sleepy") && !valid_policy(""));
    }
}
