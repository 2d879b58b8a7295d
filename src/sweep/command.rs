//! A trial's command line: [`to_args`], the inverse of the `train` command line, and the
//! shell-quoted form that `sweep --print-commands` prints.

use std::ffi::{OsStr, OsString};

use crate::{
    config::{value_name, RecipeConfig, TrainConfig},
    recipe::{optim::OptimizerKind, schedule::LrScheduleKind},
    error::{Error, Result},
};

/// The `tch-cifar10` arguments that make `cfg`: `train` (or `finetune` when `cfg.init_from` is
/// set) followed by every field as its flag, defaults included, so the command means the same
/// whatever later versions take as defaults. Parsing them gives `cfg` back (tested in
/// `src/cli.rs`).
///
/// Every field is named here (the destructuring has no `..`), so a field added to
/// [`TrainConfig`] does not compile until it has its flag.
pub fn to_args(cfg: &TrainConfig) -> Vec<OsString> {
    let TrainConfig {
        data_dir,
        epochs,
        batch_size,
        learning_rate,
        momentum,
        step_size,
        gamma,
        seed,
        device,
        threads,
        eval_every,
        dataset,
        resize_filter,
        val_size,
        split_test,
        early_stop_patience,
        checkpoint_every,
        init_from,
        freeze,
        out_dir,
        tensorboard,
        kernels,
        cuda_graphs,
        deterministic,
        recipe,
        extended_from: _, // a record of the run's history, not a setting of a new run
    } = cfg;
    let mut args: Vec<OsString> = Vec::new();
    let mut flag = |name: &str, value: &dyn AsRef<OsStr>| {
        args.push(format!("--{name}").into());
        args.push(value.as_ref().to_os_string());
    };
    // `{:?}` prints the shortest decimal that parses back to the same f64.
    let float = |x: &f64| format!("{x:?}");
    if let Some(from) = init_from {
        flag("from", from);
        flag("freeze", &value_name(freeze));
    }
    flag("data-dir", data_dir);
    flag("dataset", &value_name(dataset));
    flag("resize-filter", &value_name(resize_filter));
    flag("val-size", &val_size.to_string());
    if let Some(f) = split_test {
        flag("split-test", &format!("{f:?}"));
    }
    if let Some(p) = early_stop_patience {
        flag("early-stop-patience", &p.to_string());
    }
    flag("epochs", &epochs.to_string());
    flag("batch-size", &batch_size.to_string());
    flag("lr", &float(learning_rate));
    flag("momentum", &float(momentum));
    flag("step-size", &step_size.to_string());
    flag("gamma", &float(gamma));
    flag("seed", &seed.to_string());
    flag("device", &device.to_string());
    if let Some(n) = threads {
        flag("threads", &n.to_string());
    }
    if let Some(n) = eval_every {
        flag("eval-every", &n.to_string());
    }
    flag("checkpoint-every", &checkpoint_every.to_string());
    flag("kernels", &value_name(kernels));
    flag("cuda-graphs", &value_name(cuda_graphs));
    if let Some(out) = out_dir {
        flag("out", out);
    }
    recipe_args(recipe, &mut flag);
    let subcommand = if init_from.is_some() { "finetune" } else { "train" };
    args.insert(0, subcommand.into());
    if *tensorboard {
        args.push("--tensorboard".into());
    }
    if *deterministic {
        args.push("--deterministic".into());
    }
    args.extend(switches(recipe).map(OsString::from));
    args
}

/// The recipe's flags: the optimizer's and the schedule's (those of another optimizer or
/// schedule are left out: they must be at their defaults, which `validate` checks), the
/// augmentation and the loss. Switches are written as `--flag true|false` where the parser takes
/// a value, as a bare `--flag` when set otherwise.
fn recipe_args(r: &RecipeConfig, flag: &mut dyn FnMut(&str, &dyn AsRef<OsStr>)) {
    let RecipeConfig {
        random_crop,
        hflip: _,
        optimizer,
        weight_decay,
        dampening,
        nesterov: _,
        betas,
        eps,
        amsgrad: _,
        label_smoothing,
        lr_schedule,
        milestones,
        lr_factors,
        eta_min,
        warmup_epochs,
        warmup_start_factor,
        pct_start,
        div_factor,
        final_div_factor,
        cycle_momentum,
    } = r;
    let float = |x: &f64| format!("{x:?}");
    let list = |xs: &[String]| xs.join(",");
    if let Some(p) = random_crop {
        flag("random-crop", &p.to_string());
    }
    flag("optimizer", &value_name(optimizer));
    if let Some(w) = weight_decay {
        flag("weight-decay", &float(w));
    }
    match optimizer {
        OptimizerKind::Sgd => flag("dampening", &float(dampening)),
        OptimizerKind::Adam | OptimizerKind::Adamw => {
            flag("betas", &format!("{:?},{:?}", betas.0, betas.1));
            flag("eps", &float(eps));
        }
    }
    flag("label-smoothing", &float(label_smoothing));
    flag("lr-schedule", &value_name(lr_schedule));
    use LrScheduleKind::*;
    if matches!(lr_schedule, Multistep | Piecewise) {
        flag("milestones", &list(&milestones.iter().map(ToString::to_string).collect::<Vec<_>>()));
    }
    if *lr_schedule == Piecewise {
        flag("lr-factors", &list(&lr_factors.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>()));
    }
    if *lr_schedule == Cosine {
        flag("eta-min", &float(eta_min));
    }
    flag("warmup-epochs", &warmup_epochs.to_string());
    if *warmup_epochs > 0 {
        flag("warmup-start-factor", &float(warmup_start_factor));
    }
    if *lr_schedule == Onecycle {
        flag("pct-start", &float(pct_start));
        flag("div-factor", &float(div_factor));
        flag("final-div-factor", &float(final_div_factor));
        flag("cycle-momentum", &cycle_momentum.to_string());
    }
    // The bare switches (`--hflip`, `--nesterov`, `--amsgrad`) come last: see `switches`.
}

/// The recipe's bare switches that are set (`--hflip`, `--nesterov`, `--amsgrad`).
fn switches(r: &RecipeConfig) -> impl Iterator<Item = &'static str> {
    [("--hflip", r.hflip), ("--nesterov", r.nesterov), ("--amsgrad", r.amsgrad)].into_iter().filter(|(_, on)| *on).map(|(f, _)| f)
}

/// `program args...` as one line for a POSIX shell, each word quoted where it needs it.
///
/// # Errors
/// [`Error::InvalidConfig`] for a word that is not UTF-8 or holds a NUL byte (it cannot be
/// printed as a shell word).
pub fn shell_line(program: &OsStr, args: &[OsString]) -> Result<String> {
    std::iter::once(program)
        .chain(args.iter().map(OsString::as_os_str))
        .map(|word| {
            let bad = |why: &str| Error::InvalidConfig {
                field: "print-commands",
                value: word.to_string_lossy().into_owned(),
                expected: format!("a word a shell can take ({why})"),
            };
            let text = word.to_str().ok_or_else(|| bad("it is not UTF-8"))?;
            shlex::try_quote(text).map(|q| q.into_owned()).map_err(|_| bad("it holds a NUL byte"))
        })
        .collect::<Result<Vec<_>>>()
        .map(|words| words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_becomes_a_flag() {
        let cfg = TrainConfig { threads: Some(2), out_dir: Some("runs/a b".into()), tensorboard: true, ..TrainConfig::default() };
        let args: Vec<String> = to_args(&cfg).into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(args[0], "train");
        for pair in [["--lr", "0.001"], ["--momentum", "0.9"], ["--threads", "2"], ["--out", "runs/a b"], ["--dataset", "cifar10"]] {
            assert!(args.windows(2).any(|w| w == pair), "{pair:?} in {args:?}");
        }
        assert_eq!(args.last().map(String::as_str), Some("--tensorboard"));
        assert!(!args.iter().any(|a| a == "--from" || a == "--eval-every"));
    }

    #[test]
    fn shell_lines_quote_what_needs_it() {
        let line = shell_line(OsStr::new("/bin/tch-cifar10"), &["train".into(), "--out".into(), "runs/a b".into(), "it's".into()]).unwrap();
        assert_eq!(line, r#"/bin/tch-cifar10 train --out 'runs/a b' "it's""#);
        assert_eq!(shlex::split(&line).unwrap(), ["/bin/tch-cifar10", "train", "--out", "runs/a b", "it's"]);
        let err = shell_line(OsStr::new("x"), &["a\0b".into()]).unwrap_err().to_string();
        assert!(err.contains("NUL"), "{err}");
    }
}
