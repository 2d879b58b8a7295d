//! The `tch-cifar10` binary: parses the command line, sets up logging on stderr, calls one
//! library function per subcommand, prints results on stdout, and turns errors into a message
//! and exit status 1.

mod cli;

use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command};
use tch_cifar10::{
    info,
    report::{self, chart, progress},
    Error, LogReporter, ProgressReporter, Reporter, TrainConfig,
};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Before anything can ask libtorch about CUDA: it caches the first answer.
    if let Err(e) = tch_cifar10::cuda::load_cuda_library() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
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
        Err(e) if matches!(e.downcast_ref::<Error>(), Some(Error::Interrupted { .. } | Error::SweepInterrupted { .. })) => {
            eprintln!("{}", report::escape::escape_control_lines(&e.to_string()));
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {}", report::escape::escape_control_lines(&format!("{e:#}"))); // names from files
            ExitCode::FAILURE
        }
    }
}

/// Set by the first Ctrl-C: training saves its state after the current step and stops.
static STOP: AtomicBool = AtomicBool::new(false);

/// First Ctrl-C: ask the run to save and stop; a second one exits at once.
fn install_ctrl_c() {
    let handler = || {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        // Through the log writer, so that progress bars do not draw over it.
        let _ = writeln!(progress::LogWriter, "\ninterrupt: saving the training state after this step (Ctrl-C again to quit now)");
    };
    if let Err(e) = ctrlc::set_handler(handler) {
        tracing::warn!("no Ctrl-C handler ({e}): an interrupt will lose the epoch in progress");
    }
}

/// Bars on a terminal unless --quiet; plain log lines otherwise.
fn reporter_for(quiet: bool) -> Box<dyn Reporter> {
    if progress::wanted(quiet) { Box::new(ProgressReporter::new()) } else { Box::new(LogReporter) }
}

/// Prints a finished (or failed) `train`/`finetune` run: results on stdout.
fn finish_train(run: tch_cifar10::Result<tch_cifar10::TrainRun>, quiet: bool) -> anyhow::Result<()> {
    let run = run.map_err(|e| match e {
        e @ Error::Interrupted { .. } => anyhow::Error::new(e),
        e @ (Error::Download { .. } | Error::Checksum { .. } | Error::BadArchive { .. } | Error::IncompleteData { .. }) => {
            anyhow::Error::new(e).context("download failed")
        }
        e => anyhow::Error::new(e).context("training failed"),
    })?;
    print!("{}", report::result_table(&run.summary));
    if !quiet {
        print!("{}", report::run_table(&run.summary, run.run_dir.path(), &run.artifacts));
    }
    Ok(())
}

fn run(command: Command, quiet: bool) -> anyhow::Result<()> {
    match command {
        Command::Finetune(args) => {
            anyhow::ensure!(args.train.resume.is_none(), "finetune starts a run: continue one with `tch-cifar10 train --resume DIR`");
            install_ctrl_c();
            let extras = args.train.extras(quiet)?;
            let run = tch_cifar10::run_train(&TrainConfig::from(args), &extras, reporter_for(quiet).as_mut(), Some(&STOP));
            finish_train(run, quiet)?;
        }
        Command::Train(args) => {
            install_ctrl_c();
            let mut reporter = reporter_for(quiet);
            let run = match args.resume.clone() {
                Some(dir) => {
                    let opts = tch_cifar10::ResumeOptions {
                        device: args.device,
                        threads: args.threads,
                        data_dir: args.data_dir.clone(),
                        kernels: args.kernels,
                        cuda_graphs: args.cuda_graphs,
                        deterministic: args.deterministic,
                    };
                    tch_cifar10::resume_train(&dir, &opts, reporter.as_mut(), Some(&STOP))
                }
                None => {
                    let extras = args.extras(quiet)?;
                    tch_cifar10::run_train(&TrainConfig::from(args), &extras, reporter.as_mut(), Some(&STOP))
                }
            };
            finish_train(run, quiet)?;
        }
        Command::Plot(args) => {
            let out = chart::plot_labelled(&args.runs, &args.labels, args.out.as_deref()).context("plot failed")?;
            println!("{}", out.display());
        }
        Command::Download(args) => {
            let dir = tch_cifar10::run_download(&args.source.options(&args.data_dir, quiet)).context("download failed")?;
            println!("CIFAR-10 is ready in {}", dir.display());
        }
        Command::Eval(args) => {
            let opts = tch_cifar10::eval::EvalOptions { progress: progress::wanted(quiet), ..(&args).into() };
            let report = tch_cifar10::eval::run_eval(&opts).context("evaluation failed")?;
            if let Some(png) = &args.confusion_png {
                chart::confusion_matrix_png(png, &report.confusion.rows(), &report.classes).context("confusion matrix")?;
                tracing::info!("confusion matrix drawn in {}", png.display());
            }
            if let (Some(png), Some(rows)) = (&args.robustness_png, &report.corruptions) {
                let rows: Vec<_> = rows.iter().map(|r| (r.corruption.clone(), r.accuracy.clone())).collect();
                chart::severity_png(png, &rows, report.accuracy).context("robustness chart")?;
                tracing::info!("accuracy against severity drawn in {}", png.display());
            }
            if let Some(png) = &args.reliability_png {
                let bins: Vec<_> = report.calibration.bins.iter().map(|b| (b.lower, b.upper, b.images, b.confidence, b.accuracy)).collect();
                let title = format!("Reliability diagram (ECE {:.2} %)", 100.0 * report.calibration.ece);
                chart::reliability_png(png, &title, &bins).context("reliability diagram")?;
                tracing::info!("reliability diagram drawn in {}", png.display());
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
        }
        Command::Predict(args) => {
            let predictions = tch_cifar10::predict::run_predict(&(&args).into()).context("prediction failed")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&predictions)?);
            } else {
                predictions.iter().for_each(|p| print!("{p}"));
            }
        }
        Command::Calibrate(args) => {
            let report = tch_cifar10::calibrate::run_calibrate(&(&args).into()).context("calibration failed")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
        }
        Command::Export(args) => {
            let exported = tch_cifar10::export::run_export(&(&args).into()).context("export failed")?;
            println!("{}", exported.out.display());
        }
        Command::Sweep(args) => {
            install_ctrl_c();
            let outcome = tch_cifar10::sweep::run(&args.request(quiet)?, Some(&STOP)).context("sweep failed")?;
            print!("{}", outcome.report);
            outcome.status()?;
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
