//! The OpenMP wait settings are in place before libtorch (and its libgomp) loads, and the user's
//! own setting wins. libgomp prints the settings it read at load time when `OMP_DISPLAY_ENV` is
//! `verbose` (one block a load), which shows what it actually uses, not only what the
//! environment says.

use std::process::{Command, Output};

/// The binary with `vars` set and both wait variables otherwise removed (the test runner's own
/// environment may set them).
fn bin(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tch-cifar10"));
    cmd.args(args).env_remove("OMP_WAIT_POLICY").env_remove("GOMP_SPINCOUNT").env_remove("TCH_CIFAR10_SPINCOUNT_SET");
    cmd.env("OMP_DISPLAY_ENV", "verbose");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

/// The `GOMP_SPINCOUNT` of each libgomp load, in order, as libgomp printed them.
fn loads(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("GOMP_SPINCOUNT = '")?.strip_suffix('\'').map(str::to_string))
        .collect()
}

fn info(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["thread_wait"].clone()
}

#[test]
fn without_a_user_setting_the_program_sets_a_short_spin_before_libgomp_loads() {
    let o = bin(&["info", "--json"], &[]);
    // First load: libgomp's default; the re-executed process: the program's value, and no third.
    assert_eq!(loads(&o), ["300000", &tch_cifar10::wait_policy::SPIN_COUNT.to_string()]);
    let w = info(&o);
    assert_eq!(w["gomp_spincount"], tch_cifar10::wait_policy::SPIN_COUNT.to_string());
    assert_eq!(w["omp_wait_policy"], serde_json::Value::Null);
    assert_eq!(w["source"], "program");
    let text = bin(&["info"], &[]);
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(out.contains("thread wait      GOMP_SPINCOUNT=3000 (set by tch-cifar10 at start"), "{out}");
}

#[test]
fn the_users_spin_count_or_wait_policy_wins_and_nothing_is_executed_again() {
    let o = bin(&["info", "--json"], &[("GOMP_SPINCOUNT", "12345")]);
    assert_eq!(loads(&o), ["12345"]);
    let w = info(&o);
    assert_eq!((w["gomp_spincount"].as_str(), w["source"].as_str()), (Some("12345"), Some("user")));

    let o = bin(&["info", "--json"], &[("OMP_WAIT_POLICY", "passive")]);
    assert_eq!(loads(&o).len(), 1, "no re-execution when the user set OMP_WAIT_POLICY");
    let w = info(&o);
    assert_eq!((w["omp_wait_policy"].as_str(), w["gomp_spincount"].as_str(), w["source"].as_str()), (Some("passive"), None, Some("user")));
}

#[test]
fn a_value_libgomp_ignores_is_named_in_a_warning() {
    let o = bin(&["info", "--json"], &[("GOMP_SPINCOUNT", "lots")]);
    let w = info(&o);
    assert_eq!(w["source"], "user");
    let ignored = w["ignored"].as_str().unwrap();
    assert!(ignored.contains("GOMP_SPINCOUNT=\"lots\"") && ignored.contains("expected a count"), "{ignored}");
    assert!(String::from_utf8_lossy(&o.stderr).contains(ignored), "warned on stderr");
    let o = bin(&["info", "--json"], &[("OMP_WAIT_POLICY", "sleepy")]);
    assert!(info(&o)["ignored"].as_str().unwrap().contains("expected ACTIVE or PASSIVE"));
}

#[test]
fn the_re_executed_process_keeps_the_arguments_and_the_exit_status() {
    // A usage error (status 2) and a bad value (status 1), each reported once.
    let o = bin(&["train", "--epochs", "many"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(loads(&o).len(), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--epochs"));
    let o = bin(&["train", "--batch-size", "0"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("batch-size").count(), 1, "{err}");
}
