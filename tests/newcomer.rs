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

/// The README's commands for a first run, as written there (read from the README, so a changed
/// flag there is run here), on a small synthetic CIFAR-10 in `data/` of a fresh folder: the
/// one-epoch smoke run, then the cheat sheet's resume-for-more-epochs, eval and predict lines
/// with `runs/NAME` as that run.
#[test]
fn the_readmes_first_commands_run_as_written() {
    let readme = include_str!("../README.md");
    let line = |needle: &str| -> Vec<String> {
        let l = readme.lines().find(|l| l.starts_with("tch-cifar10 ") && l.contains(needle)).unwrap_or_else(|| panic!("README has no `{needle}` line"));
        let cmd = l.split(" # ").next().unwrap().trim().replace("runs/NAME", "runs/smoke");
        shlex::split(&cmd).unwrap()[1..].to_vec()
    };
    let data = common::synthetic_cifar(30, 10, 3);
    let cwd = data.path();
    // `data/` in the working folder, as the README has it.
    std::fs::create_dir(cwd.join("data")).unwrap();
    std::fs::rename(cwd.join("cifar-10-batches-bin"), cwd.join("data/cifar-10-batches-bin")).unwrap();
    let run = |args: &[String]| {
        let o = Command::new(BIN).args(args).args(["--device", "cpu"]).current_dir(cwd).env("OMP_WAIT_POLICY", "PASSIVE").output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let smoke = line("--out runs/smoke");
    assert!(run(&smoke).contains("Accuracy of the network on the 10 test images"));
    assert!(cwd.join("runs/smoke/summary.json").is_file());
    // `train --resume runs/NAME --epochs 80`, shortened to 2 epochs here.
    let mut more = line("--epochs 80");
    let at = more.iter().position(|a| a == "80").unwrap();
    more[at] = "2".into();
    run(&more);
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(cwd.join("runs/smoke/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs"], 2);
    assert!(run(&line("eval --checkpoint")).contains("class"));
    // `predict ... cat.jpg`: a 32x32 image of that name.
    image::RgbImage::from_pixel(32, 32, image::Rgb([200, 30, 30])).save(cwd.join("cat.jpg")).unwrap();
    assert!(run(&line("predict --checkpoint")).contains("cat.jpg"));
}
