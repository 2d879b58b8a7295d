//! The `tch-cifar10` binary: parses the command line, sets up logging on stderr, calls one
//! library function per subcommand, prints results on stdout, and turns errors into a message
//! and exit status 1.

mod cli;

use std::{io::IsTerminal, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command};
use tch_cifar10::{
    info,
    report::{self, chart, progress},
    LogReporter, ProgressReporter, Reporter, TrainConfig,
};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match (cli.verbose, cli.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v > 1 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)))
        .with_writer(progress::LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    match run(cli.command, cli.quiet > 0) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, quiet: bool) -> anyhow::Result<()> {
    match command {
        Command::Train(args) => {
            let cfg = TrainConfig::from(args);
            // Bars on a terminal unless --quiet; plain log lines otherwise.
            let mut reporter: Box<dyn Reporter> =
                if progress::wanted(quiet) { Box::new(ProgressReporter::new()) } else { Box::new(LogReporter) };
            let run = tch_cifar10::run_train(&cfg, reporter.as_mut()).context("training failed")?;
            print!("{}", report::result_table(&run.summary));
            if !quiet {
                print!("{}", report::run_table(&run.summary, run.run_dir.path(), &run.artifacts));
            }
        }
        Command::Plot(args) => {
            let out = chart::plot_runs(&args.runs, args.out.as_deref()).context("plot failed")?;
            println!("{}", out.display());
        }
        Command::Info(args) => {
            let info = info::info();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("{info}");
            }
        }
    }
    Ok(())
}
