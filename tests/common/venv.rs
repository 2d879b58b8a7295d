//! The Python that `scripts/setup-libtorch` links as `.torch-venv` (torch, torchvision, numpy,
//! safetensors), for tests that make PyTorch users' files with PyTorch itself. Without it a test
//! is skipped with the reason printed, except when `CI=true`: then it fails.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The venv's Python, if it can `import {modules}` (a comma-separated list); else why not.
pub fn python(modules: &str) -> Result<PathBuf, String> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".torch-venv/bin/python");
    if !py.exists() {
        return Err(format!("{} not found (run scripts/setup-libtorch)", py.display()));
    }
    let out = Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} cannot import {modules} (run scripts/setup-libtorch): {}",
            py.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(py)
}

/// [`python`], or `None` after printing why `test` is skipped; under `CI=true` a missing
/// Python fails the test instead.
pub fn python_or_skip(test: &str, modules: &str) -> Option<PathBuf> {
    match python(modules) {
        Ok(py) => Some(py),
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => panic!("CI=true, so {test} must run: {reason}"),
        Err(reason) => {
            eprintln!("skipping {test}: {reason}");
            None
        }
    }
}

/// Runs the script `tests/common/<script>` with `args`; its stdout, or a panic with its stderr.
pub fn run_script(py: &Path, script: &str, args: &[&std::ffi::OsStr]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common").join(script);
    let out = Command::new(py).arg(&path).args(args).output().expect("the venv's Python runs");
    assert!(out.status.success(), "{script} {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
