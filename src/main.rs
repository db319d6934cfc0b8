//! The `marina` binary: parse the command line, then serve the registry (the default) or run
//! a subcommand (`marina bench`).

mod auth;
mod bench;
mod config;
mod logging;
mod metrics;
mod serve;

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

/// marina: an OCI Distribution registry.
#[derive(Parser, Debug)]
#[command(
    name = "marina",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: config::ServeArgs,
}

/// What to do instead of serving.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Load-test a registry (any OCI registry) and print a table; compare two with --compare.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Some(Command::Bench(args)) => bench(args),
        None => serve(&matches),
    }
}

fn serve(matches: &ArgMatches) -> ExitCode {
    let settings = match config::Settings::resolve(matches) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("marina: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(&settings.log);
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    match serve::run(settings, matches.clone()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("marina: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: bench::BenchArgs) -> ExitCode {
    match bench::run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("marina bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
