//! Text from files is data, not terminal control: class names from a model file or
//! `batches.meta.txt` and image file names holding escape sequences (`ESC ] 0 ; pwned BEL`
//! retitles a terminal, `ESC [ 31 m` turns it red) are printed escaped by `eval`, `predict`,
//! `train` and in error messages, and `--json` output stays JSON holding the names as they are.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use tch::{nn, Device};
use tch_cifar10::{checkpoint::save_model, model::Net};

const RETITLE: &str = "\x1b]0;pwned\x07cat";
const RED: &str = "\x1b[31mdog";
const RETITLE_SHOWN: &str = "\\x1b]0;pwned\\x07cat";
const RED_SHOWN: &str = "\\x1b[31mdog";

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tch-cifar10")).args(args).output().expect("the binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// No byte of terminal control: ESC, BEL or any other C0 control but the line feed.
fn assert_inert(out: &[u8], what: &str) {
    let text = String::from_utf8_lossy(out);
    assert!(!out.iter().any(|&b| b < 0x20 && b != b'\n' || b == 0x7f), "{what} holds control bytes: {text:?}");
}

/// A 4-class model whose metadata names the classes `names`.
fn model(dir: &Path, names: [&str; 4]) -> PathBuf {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), 4);
    let path = dir.join("model.safetensors");
    save_model(&path, &net, &names.map(String::from)).unwrap();
    path
}

#[test]
fn eval_prints_class_names_from_a_model_file_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::synthetic_cifar(20, 8, 4);
    let m = model(dir.path(), [RETITLE, RED, "bird", "Flugzeug\u{e4}"]);
    let args = ["eval", "--device", "cpu", "--checkpoint", s(&m), "--data-dir", s(data.path())];
    let o = bin(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_inert(&o.stdout, "eval's table");
    assert_inert(&o.stderr, "eval's log");
    let text = String::from_utf8(o.stdout).unwrap();
    for want in [RETITLE_SHOWN, RED_SHOWN, "Flugzeug\u{e4}", &format!("Accuracy for class: {RETITLE_SHOWN} is")] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    let o = bin(&[&args[..], &["--json"]].concat());
    assert!(o.status.success());
    assert_inert(&o.stdout, "eval --json");
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["classes"], serde_json::json!([RETITLE, RED, "bird", "Flugzeug\u{e4}"]), "JSON keeps the names as they are");
}

#[test]
fn predict_prints_file_and_class_names_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path(), [RETITLE, RED, "bird", "fish"]);
    let image = dir.path().join("img\x1b[2J.png");
    image::RgbImage::from_pixel(32, 32, image::Rgb([9, 99, 199])).save(&image).unwrap();
    let args = ["predict", "--device", "cpu", "--checkpoint", s(&m), "--top-k", "4", s(&image)];
    let o = bin(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_inert(&o.stdout, "predict's lines");
    let text = String::from_utf8(o.stdout).unwrap();
    for want in [RETITLE_SHOWN, RED_SHOWN, "img\\x1b[2J.png"] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    let o = bin(&[&args[..], &["--json"]].concat());
    assert!(o.status.success());
    assert_inert(&o.stdout, "predict --json");
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json[0]["path"], s(&image));
    let classes: Vec<&str> = json[0]["top"].as_array().unwrap().iter().map(|c| c["class"].as_str().unwrap()).collect();
    assert!(classes.contains(&RETITLE) && classes.contains(&RED), "{classes:?}");

    // An error naming a file: escaped too.
    let missing = dir.path().join("gone\x1b]0;pwned\x07.png");
    let o = bin(&["predict", "--device", "cpu", "--checkpoint", s(&m), s(&missing)]);
    assert_eq!(o.status.code(), Some(1));
    assert_inert(&o.stderr, "predict's error");
    assert!(String::from_utf8_lossy(&o.stderr).contains("gone\\x1b]0;pwned\\x07.png"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn train_prints_class_names_from_batches_meta_escaped() {
    let data = tempfile::tempdir().unwrap();
    let names: Vec<String> = [RETITLE, RED, "bird"].map(String::from).to_vec();
    common::write_cifar_bin(data.path(), &common::learnable_records(30, 3, 1), &common::learnable_records(9, 3, 2), &names);
    let out = data.path().join("run");
    let o = bin(&["train", "--data-dir", s(data.path()), "--device", "cpu", "--epochs", "1", "--batch-size", "10", "--out", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_inert(&o.stdout, "train's result table");
    assert_inert(&o.stderr, "train's log");
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains(&format!("{RETITLE_SHOWN}  ")) && text.contains(&format!("{RED_SHOWN}  ")), "{text}");
    // summary.json holds them as they are, in JSON.
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["classes"], serde_json::json!([RETITLE, RED, "bird"]));
}

/// A line break in a class name cannot forge a log line: the "class names differ" warning of
/// `eval` (and `export`'s note) shows it as `\n`, on the warning's own line.
#[test]
fn a_line_break_in_a_class_name_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::synthetic_cifar(20, 8, 4);
    let m = model(dir.path(), ["cat\nERROR forged: run rm -rf", "dog", "bird", "fish"]);
    let o = bin(&["eval", "--device", "cpu", "--checkpoint", s(&m), "--data-dir", s(data.path())]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(stderr.contains("class names differ") && stderr.contains("cat\\nERROR forged"), "{stderr}");
    assert!(stderr.lines().all(|l| !l.starts_with("ERROR forged")), "a forged line: {stderr}");
}
