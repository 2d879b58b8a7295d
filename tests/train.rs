//! The training loop really learns, is reproducible, and stops on a diverged loss.

mod common;

use tch_cifar10::{data::cifar, train, DeviceSpec, Error, MemoryReporter, TrainConfig};

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 20,
        learning_rate: 0.01,
        step_size: 3,
        seed: 1,
        device: DeviceSpec::Cpu,
        ..TrainConfig::default()
    }
}

#[test]
fn learns_a_learnable_synthetic_set() {
    let tmp = common::synthetic_cifar(400, 200, 4);
    let (tr, te) = cifar::load(tmp.path()).unwrap();
    let cfg = TrainConfig { eval_every: Some(2), ..config(5) };
    let mut rep = MemoryReporter::default();
    let out = train::train(&cfg, &tr, &te, &mut rep, Default::default()).unwrap();
    assert!(out.test.accuracy >= 0.9, "test accuracy {} below 0.9", out.test.accuracy);
    assert_eq!(rep.epochs.len(), 5);
    let lrs: Vec<f64> = rep.epochs.iter().map(|e| e.lr).collect();
    assert_eq!(lrs, [0.01, 0.01, 0.01, 0.01 * 0.1, 0.01 * 0.1]);
    assert!(rep.epochs[4].train_loss < rep.epochs[0].train_loss);
    assert_eq!(rep.epochs[0].step_losses.len(), 20); // 400 images / batch 20
    // Evaluated after epochs 2 and 4, and at the end.
    assert_eq!(rep.evals.iter().map(|(e, _)| *e).collect::<Vec<_>>(), [2, 4, 5]);
    assert_eq!(rep.evals[2].1, out.test);
    assert_eq!(out.test.per_class_accuracy.len(), 4);
}

#[test]
fn same_seed_same_run_other_seed_other_run() {
    let tmp = common::synthetic_cifar(100, 20, 3);
    let (tr, te) = cifar::load(tmp.path()).unwrap();
    let losses = |seed| {
        let mut rep = MemoryReporter::default();
        train::train(&TrainConfig { seed, ..config(2) }, &tr, &te, &mut rep, Default::default()).unwrap();
        rep.epochs.iter().flat_map(|e| e.step_losses.clone()).collect::<Vec<f32>>()
    };
    let a = losses(5);
    assert_eq!(a, losses(5), "bit-identical for the same seed");
    assert_ne!(a, losses(6));
}

#[test]
fn a_diverging_run_stops_naming_epoch_and_step() {
    let tmp = common::synthetic_cifar(100, 20, 3);
    let (tr, te) = cifar::load(tmp.path()).unwrap();
    let cfg = TrainConfig { learning_rate: 1e12, ..config(3) };
    match train::train(&cfg, &tr, &te, &mut MemoryReporter::default(), Default::default()) {
        Err(Error::NonFiniteLoss { epoch, step }) => {
            assert_eq!(epoch, 1);
            assert!((2..=5).contains(&step), "step {step}");
        }
        other => panic!("expected a non-finite loss error, got {other:?}"),
    }
}
