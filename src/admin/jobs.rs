//! The three admin jobs: their flags, how each runs here, its endpoint on a server, and how
//! its report prints (lines on a terminal, one JSON line otherwise).

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use indicatif::HumanBytes;
use marina_registry::Registry;
use marina_registry::gc::{Options, Progress, Report};
use marina_registry::integrity::{self, CheckProgress};
use marina_registry::usage::Usage;
use serde_json::{Value, json};

use super::Bar;

/// `marina gc`'s flags; the storage comes from the same flags, environment and file as serving.
#[derive(clap::Args, Debug)]
pub(crate) struct GcArgs {
    /// Print what each policy and rule would delete, and delete nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    settings: crate::config::ServeArgs,
}

/// `marina fsck`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct FsckArgs {
    /// Move corrupt content into quarantine/ and drop links, tags and referrer entries that
    /// name nothing.
    #[arg(long)]
    repair: bool,
    #[command(flatten)]
    settings: crate::config::ServeArgs,
}

/// `marina du`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct DuArgs {
    #[command(flatten)]
    settings: crate::config::ServeArgs,
}

/// An admin job.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Job {
    Gc { dry_run: bool },
    Fsck { repair: bool },
    Du,
}

impl Job {
    pub(crate) fn gc(args: &GcArgs) -> Self {
        Self::Gc {
            dry_run: args.dry_run,
        }
    }

    pub(crate) fn fsck(args: &FsckArgs) -> Self {
        Self::Fsck {
            repair: args.repair,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Gc { .. } => "gc",
            Self::Fsck { .. } => "fsck",
            Self::Du => "du",
        }
    }

    /// Its path and query on a server.
    pub(super) fn endpoint(self) -> String {
        match self {
            Self::Gc { dry_run } => format!("/admin/gc?dry_run={dry_run}"),
            Self::Fsck { repair } => format!("/admin/fsck?repair={repair}"),
            Self::Du => "/admin/du".to_owned(),
        }
    }

    /// Runs it in this process, showing progress on `bar`.
    pub(super) async fn run_here(self, registry: &Registry, bar: &Bar) -> anyhow::Result<Value> {
        let report = match self {
            Self::Gc { dry_run } => {
                let progress = Arc::new(Progress::default());
                let shown = Arc::clone(&progress);
                let look = move || json!(shown.snapshot());
                let work = registry.collect_garbage(Options { dry_run }, &progress);
                json!(watch(self, work, look, bar).await?)
            }
            Self::Fsck { repair } => {
                let progress = Arc::new(CheckProgress::default());
                let shown = Arc::clone(&progress);
                let look = move || fsck_progress(&shown);
                let work = registry.check_integrity(repair, &progress);
                json!(watch(self, work, look, bar).await?)
            }
            Self::Du => {
                let progress = Arc::new(Progress::default());
                let shown = Arc::clone(&progress);
                let look = move || json!(shown.snapshot());
                json!(watch(self, registry.usage(&progress), look, bar).await?)
            }
        };
        bar.finish();
        Ok(report)
    }

    /// A progress line as words.
    pub(super) fn describe_progress(self, p: &Value) -> String {
        let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
        match self {
            Self::Gc { .. } => format!(
                "{}: {} objects scanned, {} freed ({})",
                p.get("phase").and_then(Value::as_str).unwrap_or(""),
                n("objects_scanned"),
                n("objects_freed"),
                HumanBytes(n("bytes_freed"))
            ),
            Self::Fsck { .. } => format!(
                "{} contents re-hashed ({}), {} entries checked, {} problems",
                n("contents"),
                HumanBytes(n("bytes")),
                n("entries"),
                n("problems")
            ),
            Self::Du => format!("{} objects listed", n("objects_scanned")),
        }
    }

    /// Prints the report; fsck exits 1 when it found a problem.
    pub(super) fn print(self, report: &Value) -> ExitCode {
        if !std::io::stdout().is_terminal() {
            println!("{report}");
            return self.exit_code(report);
        }
        let lines = match self {
            Self::Gc { .. } => serde_json::from_value(report.clone()).map(|r| gc_lines(&r)),
            Self::Fsck { .. } => serde_json::from_value(report.clone()).map(|r| fsck_lines(&r)),
            Self::Du => serde_json::from_value(report.clone()).map(|u| du_lines(&u)),
        };
        match lines {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(_) => println!("{report}"),
        }
        self.exit_code(report)
    }

    fn exit_code(self, report: &Value) -> ExitCode {
        let problems = report.get("problems").and_then(Value::as_array);
        match self {
            Self::Fsck { .. } if problems.is_some_and(|p| !p.is_empty()) => ExitCode::FAILURE,
            _ => ExitCode::SUCCESS,
        }
    }
}

/// Awaits `work`, showing `look()` on `bar` every 200 ms.
async fn watch<T, E>(
    job: Job,
    work: impl Future<Output = Result<T, E>>,
    look: impl Fn() -> Value,
    bar: &Bar,
) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            done = &mut work => return Ok(done?),
            _ = tick.tick() => bar.say(job.describe_progress(&look())),
        }
    }
}

fn fsck_progress(p: &CheckProgress) -> Value {
    let [contents, bytes, entries, problems] = p.snapshot();
    json!({ "contents": contents, "bytes": bytes, "entries": entries, "problems": problems })
}

fn gc_lines(r: &Report) -> Vec<String> {
    let mut lines: Vec<String> = r
        .doomed
        .iter()
        .map(|d| {
            let kind = serde_json::to_value(d.kind).unwrap_or_default();
            let repository = d.repository.as_deref().unwrap_or("(shared)");
            let kind = kind.as_str().unwrap_or("");
            format!("would delete {kind} {repository} {}: {}", d.what, d.reason)
        })
        .collect();
    let verb = if r.dry_run { "would free" } else { "freed" };
    let objects = if r.dry_run {
        r.doomed.len() as u64
    } else {
        r.objects_freed
    };
    let counts: Vec<String> = r.by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    lines.push(format!(
        "{} repositories, {} objects scanned in {} ms; {verb} {objects} objects ({} of content){}",
        r.repositories,
        r.objects_scanned,
        r.duration_ms,
        HumanBytes(r.bytes_freed),
        if counts.is_empty() {
            String::new()
        } else {
            format!(": {}", counts.join(", "))
        },
    ));
    lines
}

fn fsck_lines(r: &integrity::Report) -> Vec<String> {
    let mut lines: Vec<String> = r
        .problems
        .iter()
        .map(|p| {
            let fault = serde_json::to_value(p.fault).unwrap_or_default();
            let repository = p.repository.as_deref().unwrap_or("(shared)");
            let repaired = if p.repaired { " (repaired)" } else { "" };
            format!(
                "{} {repository} {}: {}{repaired}",
                fault.as_str().unwrap_or(""),
                p.key,
                p.detail
            )
        })
        .collect();
    lines.push(format!(
        "{} contents re-hashed ({}), {} entries checked: {} problems",
        r.contents_checked,
        HumanBytes(r.bytes_hashed),
        r.entries_checked,
        r.problems.len()
    ));
    lines
}

fn du_lines(u: &Usage) -> Vec<String> {
    let mut lines = vec![format!(
        "{:>12} {:>12} {:>7}  repository",
        "exclusive", "shared", "links"
    )];
    for r in &u.repositories {
        lines.push(format!(
            "{:>12} {:>12} {:>7}  {}",
            HumanBytes(r.exclusive_bytes).to_string(),
            HumanBytes(r.shared_bytes).to_string(),
            r.links,
            r.repository
        ));
    }
    lines.push(format!(
        "linked content {} (each counted once); unlinked {} (garbage collection frees it)",
        HumanBytes(u.linked_bytes),
        HumanBytes(u.unlinked_bytes)
    ));
    lines
}
