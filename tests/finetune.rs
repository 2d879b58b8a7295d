//! Fine-tuning: starting from trained weights beats starting from scratch for the same few
//! steps, fc3 is resized for the new classes, and frozen layers stay unchanged to the bit.

mod common;

use std::process::Command;

use tch::Tensor;
use tch_cifar10::{
    checkpoint::model_file, data::cifar, train, config::Freeze, DeviceSpec, MemoryReporter, TrainConfig,
};

fn cfg(epochs: usize) -> TrainConfig {
    TrainConfig { epochs, batch_size: 10, learning_rate: 0.01, seed: 11, device: DeviceSpec::Cpu, ..TrainConfig::default() }
}

/// A model trained on 4 synthetic classes, saved as `model.safetensors` under the returned folder.
fn pretrained() -> tempfile::TempDir {
    let data = common::synthetic_cifar(400, 40, 4);
    let (tr, te) = cifar::load(data.path()).unwrap();
    let out = train::train(&cfg(4), &tr, &te, &mut MemoryReporter::default(), Default::default()).unwrap();
    assert!(out.test.accuracy > 0.9, "pretraining reached only {}", out.test.accuracy);
    model_file::save_model(&data.path().join(model_file::MODEL_FILE), &out.net, &tr.classes).unwrap();
    data
}

fn params(net: &tch_cifar10::model::Net) -> Vec<(String, Tensor)> {
    net.parameters().iter().map(|(n, p)| (n.to_string(), p.detach().copy())).collect()
}

#[test]
fn finetuning_beats_scratch_and_frozen_layers_stay_put() {
    let pre = pretrained();
    let from = pre.path().join(model_file::MODEL_FILE);
    let saved = model_file::read_model_file(&from).unwrap();
    // A new task: 3 classes (others than the pretraining's names), few images, one short epoch.
    let data = tempfile::tempdir().unwrap();
    let names: Vec<String> = ["red", "green", "blue"].map(String::from).to_vec();
    common::write_cifar_bin(data.path(), &common::learnable_records(40, 3, 21), &common::learnable_records(90, 3, 22), &names);
    let (tr, te) = cifar::load(data.path()).unwrap();

    let run = |c: TrainConfig| train::train(&c, &tr, &te, &mut MemoryReporter::default(), Default::default()).unwrap();
    let scratch = run(cfg(1));
    let tuned = run(TrainConfig { init_from: Some(pre.path().to_path_buf()), ..cfg(1) });
    let frozen = run(TrainConfig { init_from: Some(from.clone()), freeze: Freeze::Features, ..cfg(1) });
    eprintln!("accuracy: scratch {}, fine-tuned {}, frozen features {}", scratch.test.accuracy, tuned.test.accuracy, frozen.test.accuracy);
    assert!(tuned.test.accuracy > scratch.test.accuracy + 0.2, "fine-tuning did not beat scratch");
    assert!(frozen.test.accuracy > scratch.test.accuracy + 0.2, "frozen fine-tuning did not beat scratch");

    let after = params(&frozen.net);
    assert_eq!(after[9].1.size(), [3], "fc3 has the new class count");
    for ((name, p), (_, w)) in after.iter().zip(&saved.tensors) {
        if name.starts_with("conv") {
            assert!(p.equal(w), "{name} changed although frozen");
        } else if name.starts_with("fc1") || name.starts_with("fc2") {
            assert!(!p.equal(w), "{name} was not trained");
        }
    }
    // Without freezing, the conv layers train too.
    assert!(!params(&tuned.net)[0].1.equal(&saved.tensors[0].1));
}

#[test]
fn finetune_command_and_its_errors() {
    let pre = pretrained();
    let data = common::synthetic_cifar(30, 10, 3);
    let bin = env!("CARGO_BIN_EXE_tch-cifar10");
    let d = data.path().to_str().unwrap();
    let out = data.path().join("ft");
    let o = Command::new(bin)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .args(["finetune", "--from", pre.path().to_str().unwrap(), "--freeze", "features", "--data-dir", d])
        .args(["--epochs", "1", "--batch-size", "10", "--device", "cpu", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["freeze"], "features");
    let model = model_file::read_model_file(&out.join(model_file::MODEL_FILE)).unwrap();
    assert_eq!(model.outputs, 3);
    // The starting model on the target test set is epoch 0: a metrics line without training
    // figures, the summary's "before", stdout's before -> after, and a log line saying fc3 is new.
    let records = tch_cifar10::report::metrics::read_metrics(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(records.iter().map(|r| r.epoch).collect::<Vec<_>>(), [0, 1]);
    assert_eq!((records[0].train_loss, records[0].test_acc.is_some(), records[1].train_loss.is_some()), (None, true, true));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!((summary["epochs"].as_u64(), summary["before_test_acc"].as_f64()), (Some(1), records[0].test_acc));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("before ->"), "{stdout}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("before fine-tuning") && stderr.contains("untrained"), "{stderr}");
    assert!(out.join("curves.png").is_file());

    let missing = data.path().join("no-model.safetensors");
    let o = Command::new(bin)
        .args(["finetune", "--from", missing.to_str().unwrap(), "--data-dir", d, "--epochs", "1", "--device", "cpu"])
        .args(["--out", data.path().join("ft2").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-model.safetensors"), "{}", String::from_utf8_lossy(&o.stderr));

    // --freeze is a finetune flag.
    let o = Command::new(bin).args(["train", "--freeze", "features"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}
