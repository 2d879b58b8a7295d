//! The recipes beyond the tutorial: every schedule's rates are the floats PyTorch's schedulers
//! compute (through the venv's PyTorch), and every bad recipe value is refused naming its flag,
//! before any folder is made, by `train`, `finetune` and `sweep` alike. (Training with each
//! recipe is checked against PyTorch bit for bit in tests/parity.rs, and resumed exactly in
//! tests/resume.rs.)

mod common;

use std::{
    path::Path,
    process::{Command, Output},
};

use tch_cifar10::{
    config::RecipeConfig,
    recipe::{optim::OptimizerKind, schedule::LrScheduleKind},
    sweep::command::to_args,
    TrainConfig,
};

/// The flags of `cfg` that scripts/pytorch_reference.py takes (the schedule's and optimizer's).
fn pytorch_flags(cfg: &TrainConfig) -> Vec<String> {
    const TAKES_VALUE: [&str; 19] = [
        "--lr", "--momentum", "--step-size", "--gamma", "--epochs", "--optimizer", "--weight-decay", "--dampening", "--betas",
        "--eps", "--lr-schedule", "--milestones", "--lr-factors", "--eta-min", "--warmup-epochs", "--warmup-start-factor",
        "--pct-start", "--div-factor", "--final-div-factor",
    ];
    let args: Vec<String> = to_args(cfg).into_iter().map(|a| a.into_string().unwrap()).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if TAKES_VALUE.contains(&a.as_str()) || a == "--cycle-momentum" {
            out.extend([a.clone(), args[i + 1].clone()]);
            i += 2;
        } else {
            if ["--nesterov", "--amsgrad"].contains(&a.as_str()) {
                out.push(a.clone());
            }
            i += 1;
        }
    }
    out
}

/// PyTorch's (lr, momentum) bits for every step of `cfg` at `steps` steps per epoch.
fn pytorch_rates(py: &Path, cfg: &TrainConfig, steps: usize) -> (Vec<u64>, Vec<u64>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dev/schedule_rates.py");
    let o = Command::new(py).arg(script).args(pytorch_flags(cfg)).args(["--steps-per-epoch", &steps.to_string()]).output().unwrap();
    assert!(o.status.success(), "{:?}: {}", pytorch_flags(cfg), String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let bits = |k: &str| v[k].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect::<Vec<_>>();
    (bits("lr"), bits("momentum"))
}

fn recipe(epochs: usize, lr: f64, r: RecipeConfig) -> TrainConfig {
    TrainConfig { epochs, learning_rate: lr, recipe: r, ..TrainConfig::default() }
}

#[test]
fn every_schedule_gives_pytorchs_floats() {
    let Some(py) = common::venv::python_or_skip("every_schedule_gives_pytorchs_floats", "torch, torchvision") else { return };
    use LrScheduleKind::*;
    let adam = |r: RecipeConfig| RecipeConfig { optimizer: OptimizerKind::Adam, ..r };
    let cases: Vec<(TrainConfig, usize)> = vec![
        // The reference: StepLR(20, 0.1) over 50 epochs.
        (TrainConfig::default(), 1),
        (TrainConfig { step_size: 3, gamma: 0.7, ..recipe(40, 0.1, RecipeConfig { warmup_epochs: 4, ..Default::default() }) }, 1),
        (TrainConfig { gamma: 0.3, ..recipe(30, 0.05, RecipeConfig { lr_schedule: Multistep, milestones: vec![5, 12, 20], ..Default::default() }) }, 1),
        // CosineAnnealingLR's recursion over a long run, with and without eta_min and a warm-up.
        (recipe(200, 0.1, RecipeConfig { lr_schedule: Cosine, ..Default::default() }), 1),
        (recipe(97, 0.03, RecipeConfig { lr_schedule: Cosine, eta_min: 1e-4, warmup_epochs: 7, warmup_start_factor: 0.01, ..Default::default() }), 1),
        // The tutorial's piecewise function: 0.001 before epoch 20, 0.01 before 40, then 0.001.
        (recipe(50, 0.001, RecipeConfig { lr_schedule: Piecewise, milestones: vec![20, 40], lr_factors: vec![1.0, 10.0, 1.0], ..Default::default() }), 1),
        (recipe(12, 0.002, RecipeConfig { lr_schedule: Piecewise, milestones: vec![3], lr_factors: vec![0.5, 3.0], warmup_epochs: 2, ..Default::default() }), 1),
        // OneCycleLR per batch, cycling SGD's momentum, Adam's beta1, or neither.
        (recipe(30, 0.1, RecipeConfig { lr_schedule: Onecycle, ..Default::default() }), 17),
        (recipe(5, 0.01, adam(RecipeConfig { lr_schedule: Onecycle, pct_start: 0.45, div_factor: 10.0, final_div_factor: 1e3, ..Default::default() })), 23),
        (recipe(4, 0.01, RecipeConfig { lr_schedule: Onecycle, cycle_momentum: false, ..Default::default() }), 10),
        (recipe(10, 0.01, adam(RecipeConfig { lr_schedule: Constant, warmup_epochs: 3, ..Default::default() })), 1),
        (recipe(3, 0.01, RecipeConfig { lr_schedule: Constant, ..Default::default() }), 1),
    ];
    for (cfg, steps) in cases {
        cfg.validate().unwrap();
        let (want_lr, want_m) = pytorch_rates(&py, &cfg, steps);
        let mut schedule = cfg.schedule_spec(steps).schedule();
        let (mut lr, mut m) = (vec![], vec![]);
        for _ in 0..cfg.epochs {
            for _ in 0..steps {
                lr.push(schedule.rates().lr.to_bits());
                m.push(schedule.rates().momentum.to_bits());
                schedule.after_step();
            }
            schedule.after_epoch();
        }
        let flags = pytorch_flags(&cfg);
        assert_eq!(lr.len(), want_lr.len(), "{flags:?}");
        if let Some(i) = (0..lr.len()).find(|&i| lr[i] != want_lr[i]) {
            panic!("{flags:?}: step {i}: lr {} against PyTorch's {}", f64::from_bits(lr[i]), f64::from_bits(want_lr[i]));
        }
        assert_eq!(m, want_m, "{flags:?}: momentum");
    }
}

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tch-cifar10")).args(args).output().expect("the binary runs")
}

/// Every bad recipe value the issue names, and each flag that does not apply to the chosen
/// optimizer or schedule, is refused by `train`, `finetune` and `sweep` with the flag and what
/// was expected, exit status 1 or 2, and no folder made.
#[test]
fn bad_recipe_values_are_refused_naming_the_flag_before_any_folder() {
    let data = common::synthetic_cifar(30, 10, 3);
    let d = data.path().to_str().unwrap();
    let model = data.path().join("model");
    // A model file for finetune: a short real run.
    let o = bin(&["train", "--data-dir", d, "--epochs", "1", "--batch-size", "10", "--device", "cpu", "--out", model.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cases: [(&[&str], &str, &str); 22] = [
        (&["--label-smoothing", "1"], "label-smoothing", "[0, 1)"),
        (&["--label-smoothing", "-0.1"], "label-smoothing", "[0, 1)"),
        (&["--weight-decay", "-1e-4"], "weight-decay", "at least 0"),
        (&["--lr-schedule", "exponential"], "exponential", "step, multistep, cosine, onecycle, piecewise, constant"),
        (&["--lr-schedule", "multistep", "--milestones", "4,2"], "milestones", "increasing order"),
        (&["--lr-schedule", "multistep", "--milestones", "2,2"], "milestones", "increasing order"),
        (&["--lr-schedule", "multistep"], "milestones", "at least one epoch"),
        (&["--lr-schedule", "multistep", "--milestones", "9"], "milestones", "epochs below 5"),
        (&["--lr-schedule", "cosine", "--warmup-epochs", "5"], "warmup-epochs", "fewer epochs than the run's 5"),
        (&["--lr-schedule", "onecycle", "--warmup-epochs", "1"], "warmup-epochs", "none with --lr-schedule onecycle"),
        (&["--optimizer", "adam", "--betas", "0.9,1.0"], "betas", "[0, 1)"),
        (&["--optimizer", "adamw", "--betas", "-0.1,0.99"], "betas", "[0, 1)"),
        (&["--optimizer", "adam", "--nesterov"], "nesterov = true", "only with --optimizer sgd"),
        (&["--optimizer", "adam", "--momentum", "0.5"], "momentum = 0.5", "only with --optimizer sgd"),
        (&["--optimizer", "adamw", "--dampening", "0.1"], "dampening", "--optimizer sgd"),
        (&["--amsgrad"], "amsgrad = true", "only with --optimizer adam or adamw"),
        (&["--betas", "0.8,0.9"], "betas = 0.8,0.9", "only with --optimizer adam or adamw"),
        (&["--nesterov", "--dampening", "0.5"], "nesterov", "zero dampening"),
        (&["--lr-schedule", "cosine", "--milestones", "2"], "milestones", "--lr-schedule multistep or piecewise"),
        (&["--eta-min", "0.1"], "eta-min = 0.1", "only with --lr-schedule cosine"),
        (&["--lr-schedule", "piecewise", "--milestones", "2", "--lr-factors", "1,2,3"], "lr-factors", "2 factors"),
        (&["--random-crop", "40"], "random-crop", "0 to 32"),
    ];
    for (command, lead) in [("train", vec![]), ("finetune", vec!["--from", model.to_str().unwrap()]), ("sweep", vec!["--lr", "0.01,0.1"])] {
        for (flags, needle, expected) in &cases {
            let out = data.path().join(format!("{command}-out"));
            let mut args = vec![command];
            args.extend(&lead);
            args.extend(["--data-dir", d, "--epochs", "5", "--batch-size", "10", "--device", "cpu", "--out", out.to_str().unwrap()]);
            args.extend(*flags);
            let o = bin(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(matches!(o.status.code(), Some(1 | 2)), "{command} {flags:?}: {:?} {err}", o.status.code());
            assert!(err.contains(needle) && err.contains(expected), "{command} {flags:?}: {err}");
            assert!(!err.contains("panicked"), "{command} {flags:?}: {err}");
            assert!(!out.exists(), "{command} {flags:?}: a folder was made");
        }
    }
}

/// OneCycleLR's phases need the number of batches, known once the data is read: still refused
/// before the run folder is made.
#[test]
fn a_onecycle_too_short_for_its_phases_is_refused_with_the_data() {
    let data = common::synthetic_cifar(20, 10, 3);
    let out = data.path().join("run");
    let o = bin(&[
        "train", "--data-dir", data.path().to_str().unwrap(), "--epochs", "1", "--batch-size", "10", "--device", "cpu",
        "--lr-schedule", "onecycle", "--out", out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("pct-start") && err.contains("only 2 steps") && err.contains("--epochs"), "{err}");
    assert!(!out.exists());
}
