//! How the user started this program, for the commands that hints and errors suggest: a hint
//! written as `tch-cifar10 train --resume DIR` gives "command not found" to someone who ran
//! `target/release/tch-cifar10`, so hints name the program as it was invoked (`argv[0]` as
//! typed: a bare name was found on the `PATH`, a path works from the same folder), as git and
//! cargo name themselves in their hints.

use std::sync::OnceLock;

/// The name used before [`set_invoked_as`] is called (library callers, tests) and when
/// `argv[0]` is missing or not UTF-8.
pub const DEFAULT_NAME: &str = "tch-cifar10";

static INVOKED_AS: OnceLock<String> = OnceLock::new();

/// Records `argv[0]` (the binary calls it first thing with `std::env::args_os().next()`); later
/// calls are ignored. A name that a shell would split is quoted.
pub fn set_invoked_as(argv0: Option<std::ffi::OsString>) {
    let name = argv0
        .and_then(|a| a.into_string().ok())
        .filter(|a| !a.is_empty())
        .map(|a| shlex::try_quote(&a).map(|q| q.into_owned()).unwrap_or(a))
        .unwrap_or_else(|| DEFAULT_NAME.to_string());
    let _ = INVOKED_AS.set(name);
}

/// The program's name as the user invoked it, ready to paste into a shell: `tch-cifar10`,
/// `target/release/tch-cifar10`, `./tch-cifar10`.
pub fn name() -> &'static str {
    INVOKED_AS.get().map_or(DEFAULT_NAME, String::as_str)
}

/// `name()` followed by `args`: a command line for a hint (`tch-cifar10 train --resume runs/a`).
/// Arguments that a shell would split or expand are quoted.
pub fn command(args: &[&str]) -> String {
    let mut line = name().to_string();
    for a in args {
        line.push(' ');
        line.push_str(&shlex::try_quote(a).map_or_else(|_| (*a).to_string(), |q| q.into_owned()));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_quote_what_a_shell_would_split() {
        // Before set_invoked_as, the name is the default (this test binary never sets it).
        assert_eq!(command(&["train", "--resume", "runs/a b"]), "tch-cifar10 train --resume 'runs/a b'");
        assert_eq!(command(&["eval", "--checkpoint", "runs/x"]), "tch-cifar10 eval --checkpoint runs/x");
    }
}
