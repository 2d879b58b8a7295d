//! Standard output that goes away: every command that prints results (`info`, `predict`,
//! `eval`, `train -q`, `sweep --print-commands`, `export`, `plot`) stops quietly with status 0
//! when the reader of its pipe has gone (`| head`), as Unix tools do, and with a one-line error
//! and status 1 when the output cannot be written (a full disk, `/dev/full`); never a panic.

mod common;

use std::{
    path::Path,
    process::{Command, Output, Stdio},
};

use tch::{nn, Device};
use tch_cifar10::{checkpoint::save_model, model::Net};

/// Where stdout goes.
#[derive(Clone, Copy, Debug)]
enum Sink {
    /// A pipe whose reading end is already closed: every write fails with EPIPE.
    ClosedPipe,
    /// `/dev/full`: every write fails with ENOSPC.
    Full,
}

fn run(sink: Sink, args: &[&str]) -> Output {
    let stdout = match sink {
        Sink::ClosedPipe => {
            let (reader, writer) = std::io::pipe().unwrap();
            drop(reader);
            Stdio::from(writer)
        }
        Sink::Full => Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap()),
    };
    Command::new(env!("CARGO_BIN_EXE_tch-cifar10"))
        .args(args)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_printing_command_survives_a_closed_pipe_and_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::synthetic_cifar(20, 10, 4);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), 4);
    let model = dir.path().join("model.safetensors");
    save_model(&model, &net, &common::class_names(4)).unwrap();
    let image = dir.path().join("a.png");
    image::RgbImage::from_pixel(32, 32, image::Rgb([10, 200, 30])).save(&image).unwrap();
    let d = s(data.path());
    let commands: Vec<(&str, Vec<String>)> = vec![
        ("info", vec!["info".into()]),
        ("completions", vec!["completions".into(), "bash".into()]),
        ("man", vec!["man".into()]),
        ("predict", vec!["predict".into(), "--checkpoint".into(), s(&model).into(), s(&image).into()]),
        ("eval", vec!["eval".into(), "--checkpoint".into(), s(&model).into(), "--data-dir".into(), d.into()]),
        (
            "train -q",
            ["-q", "train", "--epochs", "1", "--batch-size", "10", "--threads", "1", "--data-dir", d, "--out"]
                .iter()
                .map(|a| a.to_string())
                .chain([dir.path().join("run-SINK").display().to_string()])
                .collect(),
        ),
        (
            "sweep --print-commands",
            ["sweep", "--lr", "1e-3,1e-2", "--epochs", "1", "--data-dir", d, "--print-commands", "--out"]
                .iter()
                .map(|a| a.to_string())
                .chain([dir.path().join("sweep-SINK").display().to_string()])
                .collect(),
        ),
    ];
    for sink in [Sink::ClosedPipe, Sink::Full] {
        for (name, args) in &commands {
            let args: Vec<String> = args.iter().map(|a| a.replace("SINK", &format!("{sink:?}"))).collect();
            let o = run(sink, &args.iter().map(String::as_str).collect::<Vec<_>>());
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{name} {sink:?}: {stderr}");
            match sink {
                Sink::ClosedPipe => {
                    assert_eq!(o.status.code(), Some(0), "{name}: {stderr}");
                    assert!(!stderr.contains("error"), "{name} stops quietly: {stderr}");
                }
                Sink::Full => {
                    assert_eq!(o.status.code(), Some(1), "{name}: {stderr}");
                    assert!(stderr.contains("error: cannot write the results to standard output: No space left on device"), "{name}: {stderr}");
                }
            }
        }
        // The training run finished and kept its files whatever became of stdout.
        assert!(dir.path().join(format!("run-{sink:?}/summary.json")).is_file(), "{sink:?}");
    }
}

/// stderr as a terminal shows it: `train` run under `script` (a pseudo-terminal), with `TERM`
/// and `NO_COLOR` as given; `None` when `script` is missing.
fn on_a_terminal(data: &Path, out: &Path, term: &str, no_color: Option<&str>) -> Option<String> {
    let bin = env!("CARGO_BIN_EXE_tch-cifar10");
    let cmd = format!(
        "{bin} train --epochs 2 --batch-size 10 --threads 1 --data-dir {} --out {} >/dev/null",
        shlex::try_quote(s(data)).unwrap(),
        shlex::try_quote(s(out)).unwrap()
    );
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"]).env("TERM", term).env("OMP_WAIT_POLICY", "PASSIVE").env_remove("NO_COLOR");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    let o = c.output().ok()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// An SGR sequence (`ESC [ ... m`): a colour or text attribute.
fn has_colour(text: &str) -> bool {
    text.split("\x1b[").skip(1).any(|seq| seq.trim_start_matches(|c: char| c.is_ascii_digit() || c == ';').starts_with('m'))
}

#[test]
fn no_color_and_term_dumb_turn_off_colours_and_bars_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::synthetic_cifar(40, 10, 4);
    let Some(coloured) = on_a_terminal(data.path(), &dir.path().join("a"), "xterm-256color", None) else {
        eprintln!("skipped: no `script` command to make a pseudo-terminal");
        return;
    };
    assert!(has_colour(&coloured), "a colour terminal gets colours: {coloured:?}");
    for (term, no_color, what) in [("xterm-256color", Some("1"), "NO_COLOR=1"), ("dumb", None, "TERM=dumb")] {
        let out = dir.path().join(what.replace('=', "-"));
        let text = on_a_terminal(data.path(), &out, term, no_color).unwrap();
        assert!(!has_colour(&text), "{what}: no colour: {text:?}");
        assert!(text.contains("epoch"), "{what}: the log is still there: {text:?}");
        if term == "dumb" {
            assert!(!text.contains('\x1b'), "TERM=dumb: no escape sequence at all (no bars): {text:?}");
        }
    }
    // An empty NO_COLOR does not count (no-color.org).
    assert!(has_colour(&on_a_terminal(data.path(), &dir.path().join("e"), "xterm-256color", Some("")).unwrap()));
}
