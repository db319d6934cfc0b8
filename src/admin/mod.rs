//! The admin commands `marina gc`, `marina fsck` and `marina du`: each runs against the same
//! storage as serving, here (S3, or a folder no server holds), or by asking the server that
//! holds the folder through its `/admin/...` endpoint; a spinner shows progress on a terminal.

mod jobs;
mod remote;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::ArgMatches;
use indicatif::{ProgressBar, ProgressStyle};
use marina_registry::Registry;

use crate::config::{Settings, StorageConfig};
pub(crate) use jobs::{DuArgs, FsckArgs, GcArgs, Job};

/// Runs an admin command; exits 2 on a bad configuration, 1 when the job failed or found
/// something wrong.
pub(crate) fn command(job: Job, matches: &ArgMatches) -> ExitCode {
    let settings = match Settings::resolve(matches) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("marina {}: {e}", job.name());
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the runtime starts");
    match runtime.block_on(run(&job, &settings)) {
        Ok(report) => job.print(&report),
        Err(e) => {
            eprintln!("marina {}: {e:#}", job.name());
            ExitCode::FAILURE
        }
    }
}

/// Runs here, unless a server holds the storage folder: then asks it.
async fn run(job: &Job, settings: &Settings) -> anyhow::Result<serde_json::Value> {
    if let StorageConfig::Filesystem { path } = &settings.storage
        && marina_store::filesystem::FileStore::open(path).is_err()
    {
        return remote::ask(job, settings).await;
    }
    let store = crate::serve::open_store(&settings.storage).await?;
    let registry = Registry::new(store, settings.registry.clone());
    job.run_here(&registry, &Bar::new()).await
}

/// A spinner with a message on a terminal; nothing otherwise.
#[derive(Clone)]
pub(crate) struct Bar(Option<ProgressBar>);

impl Bar {
    pub(crate) fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .expect("the template is valid"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self(Some(bar))
    }

    pub(crate) fn say(&self, message: String) {
        if let Some(bar) = &self.0 {
            bar.set_message(message);
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
