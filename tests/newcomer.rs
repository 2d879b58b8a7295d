//! What a newcomer meets first: `scripts/install` puts the binary on the PATH, the program's
//! hints name it as it was invoked (`tch-cifar10` from the PATH, a path when called by one),
//! `completions` and `man` print what shells and `man` read, and a data folder that looks like
//! an image folder gets the `--dataset folder` hint instead of a download suggestion.

mod common;

use std::{
    path::Path,
    process::{Command, Output},
};

const BIN: &str = env!("CARGO_BIN_EXE_tch-cifar10");

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn install_links_the_binary_and_hints_name_it_as_invoked() {
    let prefix = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install");
    let o = Command::new(&script)
        .args(["--binary", BIN, "--prefix", prefix.path().to_str().unwrap()])
        .env("PATH", "/usr/bin:/bin") // the prefix is not on it
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    let link = prefix.path().join("tch-cifar10");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(BIN).canonicalize().unwrap());
    assert!(out.contains("is not on your PATH"), "{out}");

    // From the PATH, by its bare name: the hint is pasteable as it stands.
    let empty = tempfile::tempdir().unwrap();
    let path = format!("{}:/usr/bin:/bin", prefix.path().display());
    let o = Command::new("tch-cifar10").args(["train", "--resume", empty.path().to_str().unwrap()]).env("PATH", &path).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("holds no run (no config.json); start one there with `tch-cifar10 train --out {}`", empty.path().display())), "{err}");
    // By a path: the hint uses that path.
    let o = Command::new(&link).args(["train", "--resume", empty.path().to_str().unwrap()]).output().unwrap();
    assert!(stderr(&o).contains(&format!("`{} train --out", link.display())), "{}", stderr(&o));
}

#[test]
fn completions_and_the_man_page() {
    for (shell, needle) in [("bash", "complete -F _tch__cifar10"), ("zsh", "#compdef tch-cifar10"), ("fish", "complete -c tch-cifar10")] {
        let o = Command::new(BIN).args(["completions", shell]).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && out.contains(needle), "{shell}: {out:.300}");
        assert!(out.contains("resume") && out.contains("archive"), "{shell}: flags of the subcommands are completed");
    }
    let o = Command::new(BIN).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bash") && stderr(&o).contains("zsh"), "{}", stderr(&o));

    let o = Command::new(BIN).arg("man").output().unwrap();
    let man = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && man.contains(".TH tch-cifar10 1"), "{man:.300}");
    assert!(man.contains(".TH tch-cifar10-train 1") && man.contains("resume"), "one page per subcommand, with its flags");
}

#[test]
fn an_image_folder_without_dataset_folder_gets_that_hint() {
    let names = common::class_names(2);
    let data = common::images::synthetic_folder(4, 2, &names, "png");
    let o = Command::new(BIN)
        .args(["train", "--data-dir", data.path().to_str().unwrap(), "--out", data.path().join("run").to_str().unwrap()])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("holds train/ and test/ folders, as image folders do: for those, add `--dataset folder`"), "{err}");
    assert!(!err.contains("download"), "no download suggestion for an image folder: {err}");

    // A folder with nothing: how to get CIFAR-10, with or without a network.
    let empty = tempfile::tempdir().unwrap();
    let o = Command::new(BIN).args(["train", "--data-dir", empty.path().to_str().unwrap()]).output().unwrap();
    let err = stderr(&o);
    assert!(err.contains(&format!("run `{BIN} download --data-dir {}`", empty.path().display())), "{err}");
    assert!(err.contains("--archive FILE"), "{err}");
}
