//! The `marina` binary: parse the command line, then serve the registry (or run a subcommand).

mod config;
mod logging;
mod serve;

use clap::{CommandFactory, FromArgMatches, Parser};

/// marina: an OCI Distribution registry.
#[derive(Parser, Debug)]
#[command(name = "marina", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    serve: config::ServeArgs,
}

fn main() -> std::process::ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let _ = cli.serve;
    let settings = match config::Settings::resolve(&matches) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("marina: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    logging::init(&settings.log);
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    match serve::run(settings) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("marina: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
