//! Seeing a run: `metrics.jsonl` and `summary.json` hold the documented fields, charts are PNGs
//! of the documented size for one and several runs, output to a pipe holds no control
//! characters, and `--quiet` prints only the final result. All on tiny synthetic data.

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicBool, Ordering},
};

use serde_json::Value;
use tch_cifar10::{
    report::{
        chart::{self, RunCurves, CONFUSION_SIZE, CURVES_SIZE},
        metrics::read_metrics,
    },
    DeviceSpec, EpochRecord, MemoryReporter, Reporter, Summary, TrainConfig,
};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Width, height and RGB pixels of a PNG file; fails unless it decodes as one.
fn read_png(path: &Path) -> TestResult<(u32, u32, Vec<[u8; 3]>)> {
    let mut reader = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path)?)).read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG too large")?];
    let info = reader.next_frame(&mut buf)?;
    let channels = info.color_type.samples();
    let pixels = buf[..info.buffer_size()].chunks(channels).map(|p| [p[0], p[1], p[2]]).collect();
    Ok((info.width, info.height, pixels))
}

fn tiny_config(data: &Path, out: &Path) -> TrainConfig {
    TrainConfig {
        data_dir: data.to_path_buf(),
        epochs: 3,
        batch_size: 10,
        device: DeviceSpec::Cpu,
        threads: Some(1),
        eval_every: Some(2),
        out_dir: Some(out.to_path_buf()),
        ..TrainConfig::default()
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("a JSON object").keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn metrics_and_summary_hold_the_documented_fields() -> TestResult {
    let data = common::synthetic_cifar(60, 20, 10);
    let out = tempfile::tempdir()?;
    let run_path = out.path().join("run");
    let cfg = tiny_config(data.path(), &run_path);
    let mut memory = MemoryReporter::default();
    let run = tch_cifar10::run_train(&cfg, &Default::default(), &mut memory, None)?;

    // Every line: exactly the documented fields, test figures only after evaluated epochs (2: --eval-every 2; 3: the end).
    let text = std::fs::read_to_string(run_path.join("metrics.jsonl"))?;
    let lines: Vec<Value> = text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 3);
    let base = ["epoch", "lr", "train_loss", "train_acc", "seconds", "images_per_sec", "device"];
    let with_test = [&base[..], &["test_loss", "test_acc"]].concat();
    assert_eq!(keys(&lines[0]), set(&base));
    assert_eq!(keys(&lines[1]), set(&with_test));
    assert_eq!(keys(&lines[2]), set(&with_test));

    // ... and they parse into typed records agreeing with what the reporter was told.
    let records = read_metrics(&run_path.join("metrics.jsonl"))?;
    assert_eq!(records.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2, 3]);
    for (r, m) in records.iter().zip(&memory.epochs) {
        assert_eq!((r.lr, r.train_loss, r.train_acc, r.seconds), (m.lr, Some(m.train_loss), Some(m.train_acc), m.seconds));
        assert_eq!(r.device, "cpu");
        assert!(r.images_per_sec > 0.0 && r.train_acc.is_some_and(|a| (0.0..=1.0).contains(&a)));
    }
    assert_eq!(records[1].test_loss, Some(memory.evals[0].1.loss));
    assert_eq!((records[2].test_loss, records[2].test_acc), (Some(run.outcome.test.loss), Some(run.outcome.test.accuracy)));

    // summary.json: the documented fields, the config as run, the final test figures.
    let summary_json: Value = serde_json::from_str(&std::fs::read_to_string(run_path.join("summary.json"))?)?;
    let documented = [
        "config", "device", "epochs", "test_loss", "test_acc", "test_images", "classes", "per_class_accuracy",
        "total_seconds", "seconds_per_epoch", "images_per_sec", "versions",
    ];
    assert_eq!(keys(&summary_json), set(&documented));
    assert_eq!(keys(&summary_json["versions"]), set(&["tch_cifar10", "libtorch", "cuda", "cudnn"]));
    let summary: Summary = serde_json::from_value(summary_json)?;
    assert_eq!(summary, run.summary);
    assert_eq!(summary.config, cfg);
    assert_eq!((summary.test_acc, summary.test_images, summary.epochs), (run.outcome.test.accuracy, 20, 3));
    assert_eq!(summary.per_class_accuracy, run.outcome.test.per_class_accuracy);
    assert_eq!(summary.classes, common::class_names(10));
    assert_eq!(summary.versions.tch_cifar10, env!("CARGO_PKG_VERSION"));

    // The chart of the run, and the list of what was written.
    assert_eq!(read_png(&run_path.join("curves.png"))?.0, CURVES_SIZE.0);
    let names: Vec<_> = run.artifacts.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["config.json", "checkpoint.safetensors", "model.safetensors", "metrics.jsonl", "summary.json", "curves.png"]);
    Ok(())
}

/// Asks the run to stop once `epoch` has ended.
struct StopAfter<'a>(usize, &'a AtomicBool);

impl Reporter for StopAfter<'_> {
    fn epoch_end(&mut self, m: &tch_cifar10::EpochMetrics) {
        if m.epoch == self.0 {
            self.1.store(true, Ordering::Relaxed);
        }
    }
}

#[test]
fn a_resumed_run_has_every_epoch_once_in_its_metrics() -> TestResult {
    let data = common::synthetic_cifar(60, 20, 10);
    let out = tempfile::tempdir()?;
    let (whole, stopped) = (out.path().join("whole"), out.path().join("stopped"));
    tch_cifar10::run_train(&tiny_config(data.path(), &whole), &Default::default(), &mut MemoryReporter::default(), None)?;
    let stop = AtomicBool::new(false);
    let err = tch_cifar10::run_train(&tiny_config(data.path(), &stopped), &Default::default(), &mut StopAfter(2, &stop), Some(&stop)).unwrap_err();
    assert!(matches!(err, tch_cifar10::Error::Interrupted { epoch: 3, .. }), "{err}");
    assert_eq!(read_metrics(&stopped.join("metrics.jsonl"))?.len(), 2, "the epochs done before the stop");
    tch_cifar10::resume_train(&stopped, &Default::default(), &mut MemoryReporter::default(), None)?;
    // Same epochs and figures as the uninterrupted run (on the CPU, bit for bit), timings aside.
    let strip = |rs: Vec<EpochRecord>| -> Vec<_> { rs.into_iter().map(|r| (r.epoch, r.lr, r.train_loss, r.train_acc, r.test_loss)).collect() };
    assert_eq!(strip(read_metrics(&stopped.join("metrics.jsonl"))?), strip(read_metrics(&whole.join("metrics.jsonl"))?));
    Ok(())
}

fn records(epochs: usize, offset: f64) -> Vec<EpochRecord> {
    (1..=epochs)
        .map(|e| EpochRecord {
            epoch: e,
            lr: if e <= epochs / 2 { 1e-3 } else { 1e-4 },
            train_loss: Some(2.0 - offset - e as f64 * 0.05),
            train_acc: Some(0.2 + offset + e as f64 * 0.01),
            val_loss: Some(2.1 - e as f64 * 0.04),
            val_acc: Some(0.2 + e as f64 * 0.008),
            test_loss: (e % 5 == 0).then_some(2.1 - e as f64 * 0.04),
            test_acc: (e % 5 == 0).then_some(0.2 + e as f64 * 0.008),
            test_weights_epoch: None,
            seconds: 1.0,
            images_per_sec: 1000.0,
            device: "cpu".to_string(),
        })
        .collect()
}

/// Share of pixels of exactly `color`.
fn share_of(pixels: &[[u8; 3]], color: [u8; 3]) -> f64 {
    pixels.iter().filter(|&&p| p == color).count() as f64 / pixels.len() as f64
}

#[test]
fn curves_are_pngs_of_the_documented_size_for_one_and_several_runs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (one, several) = (dir.path().join("one.png"), dir.path().join("several.png"));
    let run = |label: &str, offset| RunCurves { label: label.to_string(), records: records(20, offset) };
    chart::curves_png(&one, &[run("a", 0.0)])?;
    chart::curves_png(&several, &[run("a", 0.0), run("b", 0.1), run("c", 0.2)])?;

    let (w, h, one_px) = read_png(&one)?;
    assert_eq!((w, h), CURVES_SIZE);
    let (w, h, several_px) = read_png(&several)?;
    assert_eq!((w, h), CURVES_SIZE);
    // Curves were drawn: one run's splits in blue, orange, green; the second and third runs
    // add their own colours (matplotlib's tab10 orange and green) which one run's chart lacks
    // in the same amounts. White is the background.
    assert!(share_of(&one_px, [255, 255, 255]) < 0.95);
    let blue = [31, 119, 180];
    assert!(share_of(&one_px, blue) > 0.001 && share_of(&several_px, blue) > 0.001);
    assert!(share_of(&several_px, [214, 39, 40]) == 0.0, "only three runs: no fourth colour");
    assert_ne!(one_px, several_px);

    let empty = chart::curves_png(&dir.path().join("none.png"), &[RunCurves { label: "x".into(), records: vec![] }]);
    assert!(empty.unwrap_err().to_string().contains("no epochs"));
    Ok(())
}

#[test]
fn plot_reads_run_directories_including_the_pytorch_scripts() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (ours, theirs) = (dir.path().join("rust"), dir.path().join("pytorch"));
    std::fs::create_dir_all(&ours)?;
    std::fs::create_dir_all(&theirs)?;
    let lines: Vec<String> = records(6, 0.0).iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
    std::fs::write(ours.join("metrics.jsonl"), lines.join("\n") + "\n")?;
    // Another writer: explicit nulls, fields this crate does not know, no trailing newline.
    std::fs::write(
        theirs.join("metrics.jsonl"),
        "{\"epoch\":1,\"lr\":0.001,\"train_loss\":2.2,\"train_acc\":0.15,\"val_loss\":null,\"val_acc\":null,\
         \"test_loss\":2.1,\"test_acc\":0.2,\"seconds\":9.5,\"images_per_sec\":5263.1,\"device\":\"cpu\",\"torch\":\"2.11.0\"}\n\n\
         {\"epoch\":2,\"lr\":0.001,\"train_loss\":2.0,\"train_acc\":0.25,\"seconds\":9.1,\"images_per_sec\":5494.5,\"device\":\"cpu\"}",
    )?;
    assert_eq!(read_metrics(&theirs.join("metrics.jsonl"))?.len(), 2);

    // One run: curves.png in its directory; several: where --out says.
    assert_eq!(chart::plot_runs(std::slice::from_ref(&ours), None)?, ours.join("curves.png"));
    assert_eq!(read_png(&ours.join("curves.png"))?.0, CURVES_SIZE.0);
    let out = dir.path().join("both.png");
    assert_eq!(chart::plot_runs(&[ours.clone(), theirs.join("metrics.jsonl")], Some(&out))?, out);
    assert_eq!((read_png(&out)?.0, read_png(&out)?.1), CURVES_SIZE);

    // A missing run and a bad line are named.
    let err = chart::plot_runs(&[dir.path().join("nope")], None).unwrap_err().to_string();
    assert!(err.contains("nope") && err.contains("metrics.jsonl"), "{err}");
    std::fs::write(theirs.join("metrics.jsonl"), "{\"epoch\":1,\"lr\":0.001}\nnot json\n")?;
    let err = chart::plot_runs(std::slice::from_ref(&theirs), None).unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("missing field"), "{err}");
    Ok(())
}

#[test]
fn confusion_matrix_is_a_png_of_the_documented_size() -> TestResult {
    let dir = tempfile::tempdir()?;
    let classes = common::class_names(10);
    // Mostly right: 90 on the diagonal, 10 spread over the row.
    let matrix: Vec<Vec<u64>> = (0..10).map(|t| (0..10).map(|p| if t == p { 90 } else { u64::from((t + p) % 9 == 0) * 10 }).collect()).collect();
    let path = dir.path().join("confusion.png");
    chart::confusion_matrix_png(&path, &matrix, &classes)?;
    let (w, h, px) = read_png(&path)?;
    assert_eq!((w, h), CONFUSION_SIZE);
    // The diagonal's cells are the darkest shade: a share of 0.9 of the row, shaded by its square
    // root from white to RGB(8, 48, 107), is RGB(21, 59, 115).
    let dark = px.iter().filter(|p| p[2] > 100 && p[2] < 140 && p[0] < 60).count();
    assert!(dark > 10 * 30 * 30, "{dark} dark pixels for ten diagonal cells");
    Ok(())
}

fn tch_cifar10(args: &[&str]) -> TestResult<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_tch-cifar10")).args(args).env_remove("RUST_LOG").env_remove("NO_COLOR").output()?)
}

fn train_args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["train", "--epochs", "2", "--batch-size", "10", "--threads", "1", "--device", "cpu"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--data-dir".into(), data.display().to_string(), "--out".into(), out.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn control_characters(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().copied().filter(|&b| (b < 0x20 && b != b'\n') || b == 0x7f).collect()
}

#[test]
fn output_to_a_pipe_is_plain_lines() -> TestResult {
    let data = common::synthetic_cifar(40, 20, 10);
    let out = tempfile::tempdir()?;
    let args = train_args(data.path(), &out.path().join("run"), &[]);
    let output = tch_cifar10(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let (stdout, stderr) = (String::from_utf8(output.stdout.clone())?, String::from_utf8(output.stderr.clone())?);
    assert!(output.status.success(), "{stderr}");
    // No bars, colours, carriage returns or cursor moves: only printable text and newlines.
    assert_eq!(control_characters(&output.stderr), Vec::<u8>::new(), "{stderr:?}");
    assert_eq!(control_characters(&output.stdout), Vec::<u8>::new(), "{stdout:?}");
    // One log line per epoch on stderr, the results and where they are on stdout.
    assert_eq!(stderr.lines().filter(|l| l.contains("train loss")).count(), 2, "{stderr}");
    assert!(stdout.starts_with("Accuracy of the network on the 20 test images: "), "{stdout}");
    assert!(stdout.contains("files      config.json  checkpoint.safetensors  model.safetensors  metrics.jsonl  summary.json  curves.png"), "{stdout}");
    Ok(())
}

#[test]
fn quiet_prints_only_the_final_result() -> TestResult {
    let data = common::synthetic_cifar(40, 20, 10);
    let out = tempfile::tempdir()?;
    let run = |dir: &str, extra: &[&str]| -> TestResult<Output> {
        let args = train_args(data.path(), &out.path().join(dir), extra);
        tch_cifar10(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let quiet = run("quiet", &["--quiet"])?;
    assert!(quiet.status.success());
    assert_eq!(String::from_utf8(quiet.stderr)?, "", "nothing but warnings on stderr");
    let stdout = String::from_utf8(quiet.stdout)?;
    let lines: Vec<&str> = stdout.lines().collect();
    // The overall accuracy and loss, a blank line, the header, one line per class.
    assert_eq!(lines.len(), 2 + 1 + 1 + 10, "{stdout}");
    assert!(lines[0].starts_with("Accuracy of the network on the 20 test images: ") && lines[1].starts_with("Test loss: "));
    assert!(lines[4..].iter().zip(common::class_names(10)).all(|(l, c)| l.starts_with(&c) && l.ends_with(" %")), "{stdout}");
    // The same run without --quiet prints the same result (same seed, one thread), then more.
    let full = run("full", &[])?;
    let full_stdout = String::from_utf8(full.stdout)?;
    assert!(full_stdout.starts_with(&stdout) && full_stdout.len() > stdout.len(), "{full_stdout}");
    // -q is the same flag.
    let q = run("q", &["-q"])?;
    assert_eq!(String::from_utf8(q.stdout)?, stdout);
    // Still every artifact.
    assert!(["metrics.jsonl", "summary.json", "curves.png"].iter().all(|f| out.path().join("quiet").join(f).is_file()));
    Ok(())
}

#[test]
fn plot_command_prints_the_chart_path() -> TestResult {
    let dir = tempfile::tempdir()?;
    let run: PathBuf = dir.path().join("r");
    std::fs::create_dir_all(&run)?;
    let lines: Vec<String> = records(4, 0.0).iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
    std::fs::write(run.join("metrics.jsonl"), lines.join("\n"))?;
    let out = dir.path().join("c.png");
    let output = tch_cifar10(&["plot", run.to_str().unwrap(), "--out", out.to_str().unwrap()])?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8(output.stdout)?.trim_end(), out.display().to_string());
    assert_eq!(read_png(&out)?.0, CURVES_SIZE.0);
    let bad = tch_cifar10(&["plot", dir.path().join("missing").to_str().unwrap()])?;
    assert!(!bad.status.success() && String::from_utf8(bad.stderr)?.contains("missing"));
    Ok(())
}


#[test]
fn eval_draws_the_confusion_matrix() -> TestResult {
    let data = common::synthetic_cifar(40, 20, 10);
    let out = tempfile::tempdir()?;
    let run = out.path().join("run");
    let cfg = TrainConfig { epochs: 1, eval_every: None, ..tiny_config(data.path(), &run) };
    tch_cifar10::run_train(&cfg, &Default::default(), &mut MemoryReporter::default(), None)?;
    let png = out.path().join("confusion.png");
    let (run_s, data_s, png_s) = (run.to_str().unwrap(), data.path().to_str().unwrap(), png.to_str().unwrap());
    let o = tch_cifar10(&["eval", "--checkpoint", run_s, "--data-dir", data_s, "--device", "cpu", "--confusion-png", png_s, "--json"])?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice::<Value>(&o.stdout)?; // stdout stays JSON
    assert_eq!(read_png(&png)?.0, CONFUSION_SIZE.0);
    Ok(())
}
