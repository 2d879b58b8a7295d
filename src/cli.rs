//! The command line: `tch-cifar10 train`, `tch-cifar10 plot` and `tch-cifar10 info`. Argument structs convert into
//! the library's one [`TrainConfig`]; their defaults are read from it, so they cannot drift.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};
use tch_cifar10::{DeviceSpec, TrainConfig};

/// The classic PyTorch CIFAR-10 LeNet training program on libtorch, with the same numbers as PyTorch.
#[derive(Debug, Parser)]
#[command(name = "tch-cifar10", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace). `RUST_LOG` (e.g. `RUST_LOG=debug`)
    /// overrides the level set by -v and -q.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print only the final result: no progress bars and no per-epoch lines; stdout carries the
    /// test accuracy and the accuracy per class, nothing else; stderr only warnings and errors
    /// (-qq: errors only). -q and --quiet are the same flag.
    ///
    /// Without it, progress bars are drawn when stderr is a terminal, and one log line per epoch
    /// is written otherwise (CI logs, files).
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the reference Net (50 epochs of SGD with momentum and StepLR by default), then test it.
    Train(TrainArgs),
    /// Draw loss and accuracy per epoch of one or more runs (their metrics.jsonl) into one PNG.
    Plot(PlotArgs),
    /// Show the libtorch version, CUDA support, visible GPUs and CPU threads.
    Info(InfoArgs),
}

/// `train`'s flags; defaults are the reference program's.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Folder holding `cifar-10-batches-bin/` (or the `.bin` files themselves).
    #[arg(long, default_value_os_t = TrainConfig::default().data_dir)]
    pub data_dir: PathBuf,
    /// Passes over the training set.
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    /// Images per SGD step.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// Initial learning rate.
    #[arg(long, default_value_t = TrainConfig::default().learning_rate, allow_negative_numbers = true)]
    pub lr: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = TrainConfig::default().momentum, allow_negative_numbers = true)]
    pub momentum: f64,
    /// StepLR: epochs between learning-rate decays.
    #[arg(long, default_value_t = TrainConfig::default().step_size)]
    pub step_size: usize,
    /// StepLR: factor applied to the learning rate at each decay.
    #[arg(long, default_value_t = TrainConfig::default().gamma, allow_negative_numbers = true)]
    pub gamma: f64,
    /// `torch.manual_seed(seed)`; the default is PyTorch's own unseeded default, so a run without
    /// --seed matches the reference program as written.
    #[arg(long, default_value_t = TrainConfig::default().seed, allow_negative_numbers = true)]
    pub seed: i64,
    /// auto (CUDA when available), cpu, cuda or cuda:N [default: auto; with --resume: the run's].
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// libtorch intra-op threads [default: libtorch's, the physical cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also evaluate on the test set every N epochs.
    #[arg(long, value_name = "N")]
    pub eval_every: Option<usize>,
    /// Save the training state every N epochs (always after the last, and on Ctrl-C).
    #[arg(long, value_name = "N", default_value_t = TrainConfig::default().checkpoint_every)]
    pub checkpoint_every: usize,
    /// Run directory for config.json, metrics and checkpoints [default: runs/YYYYMMDD-HHMMSS].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in DIR from its last saved state, with its saved settings (only --device
    /// and --threads may be given too). The result equals an uninterrupted run.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "data_dir", "epochs", "batch_size", "lr", "momentum", "step_size", "gamma", "seed",
        "eval_every", "checkpoint_every", "out",
    ])]
    pub resume: Option<PathBuf>,
}

impl From<TrainArgs> for TrainConfig {
    fn from(a: TrainArgs) -> TrainConfig {
        TrainConfig {
            data_dir: a.data_dir,
            epochs: a.epochs,
            batch_size: a.batch_size,
            learning_rate: a.lr,
            momentum: a.momentum,
            step_size: a.step_size,
            gamma: a.gamma,
            seed: a.seed,
            device: a.device.unwrap_or_default(),
            threads: a.threads,
            eval_every: a.eval_every,
            checkpoint_every: a.checkpoint_every,
            out_dir: a.out,
        }
    }
}

/// `plot`'s arguments.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run directories (or their metrics.jsonl files), from this program or the PyTorch
    /// reference script; several are overlaid, one colour each.
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<PathBuf>,
    /// The PNG to write [default: RUN/curves.png for one run, ./curves.png for several].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `info`'s flags.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn train_defaults_are_the_config_defaults() {
        let cli = Cli::try_parse_from(["tch-cifar10", "train"]).unwrap();
        let Command::Train(args) = cli.command else { panic!("expected train") };
        assert_eq!(TrainConfig::from(args), TrainConfig::default());
    }

    #[test]
    fn quiet_is_the_long_form_of_q_and_plot_needs_a_run() {
        for args in [["tch-cifar10", "-q", "train"], ["tch-cifar10", "--quiet", "train"], ["tch-cifar10", "train", "--quiet"]] {
            assert_eq!(Cli::try_parse_from(args).unwrap().quiet, 1, "{args:?}");
        }
        assert!(Cli::try_parse_from(["tch-cifar10", "-q", "-v", "train"]).is_err());
        assert!(Cli::try_parse_from(["tch-cifar10", "plot"]).is_err());
        let cli = Cli::try_parse_from(["tch-cifar10", "plot", "a", "b", "--out", "c.png"]).unwrap();
        let Command::Plot(args) = cli.command else { panic!("expected plot") };
        assert_eq!((args.runs.len(), args.out), (2, Some(PathBuf::from("c.png"))));
    }

    #[test]
    fn resume_takes_only_device_and_threads() {
        let ok = ["tch-cifar10", "train", "--resume", "r", "--device", "cpu", "--threads", "2"];
        assert!(Cli::try_parse_from(ok).is_ok());
        let err = Cli::try_parse_from(["tch-cifar10", "train", "--resume", "r", "--epochs", "3"]).unwrap_err();
        assert!(err.to_string().contains("--epochs"), "{err}");
    }

    #[test]
    fn bad_device_is_rejected_by_the_parser() {
        let err = Cli::try_parse_from(["tch-cifar10", "train", "--device", "gpu"]).unwrap_err();
        assert!(err.to_string().contains("auto, cpu, cuda, cuda:N"), "{err}");
    }
}
