//! The `marina` binary: parse the command line, then serve the registry (the default) or run
//! a subcommand (`marina bench`, `marina config check`, `marina gc`, `fsck`, `du`).

mod admin;
mod auth;
mod bench;
mod check;
mod config;
mod logging;
mod metrics;
mod serve;

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

/// What `marina --version` prints: the version, the commit it was built from, the target, and
/// what is built in.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("MARINA_COMMIT"),
    "\ntarget: ",
    env!("MARINA_TARGET"),
    "\nfeatures: storage (filesystem, s3), tls (rustls, aws-lc-rs), auth (htpasswd, tokens, \
     external issuers, mTLS), metrics (prometheus)"
);

/// marina: an OCI Distribution registry.
#[derive(Parser, Debug)]
#[command(
    name = "marina",
    version = VERSION,
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
    Bench(Box<bench::BenchArgs>),
    /// Work with the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Collect garbage and apply retention once, against the same storage as serving (on a
    /// folder a running server holds, the server does it); --dry-run only reports.
    Gc(Box<admin::GcArgs>),
    /// Re-hash every blob and check every link, tag, referrer entry and index child; exits 1
    /// when anything is wrong; --repair quarantines corrupt blobs and drops dangling links.
    Fsck(Box<admin::FsckArgs>),
    /// Bytes per repository, exclusive and shared.
    Du(Box<admin::DuArgs>),
}

/// `marina config ...`.
#[derive(clap::Subcommand, Debug)]
enum ConfigCommand {
    /// Validate the configuration (the same flags, environment and file as serving), print
    /// every setting with where it came from (secrets redacted), and check the storage, TLS
    /// and auth files; exits non-zero if anything fails.
    Check(Box<config::ServeArgs>),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Some(Command::Bench(args)) => bench(*args),
        Some(Command::Config(ConfigCommand::Check(_))) => {
            let check = matches
                .subcommand_matches("config")
                .and_then(|m| m.subcommand_matches("check"))
                .expect("clap parsed config check");
            check::run(check)
        }
        Some(Command::Gc(args)) => admin_command(admin::Job::gc(&args), &matches),
        Some(Command::Fsck(args)) => admin_command(admin::Job::fsck(&args), &matches),
        Some(Command::Du(_)) => admin_command(admin::Job::Du, &matches),
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

/// Runs `marina gc`, `fsck` or `du` with the settings its own flags resolve to.
fn admin_command(job: admin::Job, matches: &ArgMatches) -> ExitCode {
    let sub = matches
        .subcommand_matches(job.name())
        .expect("clap parsed the subcommand");
    admin::command(job, sub)
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
