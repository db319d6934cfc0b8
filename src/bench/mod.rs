//! `marina bench`: a load generator for any OCI registry. Its options, the list of workloads,
//! and the run itself: each case on each registry in turn (A B A B ...), then the table and
//! the JSON file.

mod auth;
mod client;
mod data;
mod fixtures;
mod progress;
mod report;
mod stats;
mod workloads;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use client::RegistryClient;
use data::Random;
use fixtures::Fixtures;
use report::{Measurement, Report};

/// Options of `marina bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// The registry to load (A), e.g. http://127.0.0.1:5000.
    #[arg(long, value_name = "URL")]
    url: String,
    /// A second registry (B): every workload runs on A then B, `--rounds` times, and the
    /// table shows the ratio.
    #[arg(long, value_name = "URL")]
    compare: Option<String>,
    /// Also write every figure to this JSON file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Comma-separated workloads, or `all`: push-big, push-chunked, pull-big, manifest-get,
    /// blob-get-small, small-push, tags-page, catalog-page.
    #[arg(long, value_name = "LIST", default_value = "all", value_parser = parse_workloads)]
    workloads: Selection,
    /// Size of the big blob, e.g. 64MiB or 1GiB.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    big_size: u64,
    /// Size of each PATCH in push-chunked.
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = parse_size)]
    chunk_size: u64,
    /// How long each requests-per-second workload is timed, e.g. 10s (after a short warm-up).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Connections for manifest-get and blob-get-small.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// Clients pushing at once in small-push.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    push_clients: u32,
    /// Tag counts for tags-page, comma-separated.
    #[arg(long, value_name = "N,N", value_delimiter = ',', default_value = "5000,100000", value_parser = clap::value_parser!(u32).range(1..))]
    tags: Vec<u32>,
    /// Repositories for catalog-page.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    repos: u32,
    /// Timed page requests in tags-page and catalog-page.
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    page_requests: u32,
    /// Repositories are named `<prefix>-<random>/...`, so runs never collide.
    #[arg(long, value_name = "NAME", default_value = "bench")]
    repo_prefix: String,
    /// Sign in as USER:PASSWORD where a registry asks (Basic, or a Bearer token per
    /// repository from its token service, renewed every 2 minutes).
    #[arg(long, value_name = "USER:PASSWORD")]
    auth: Option<auth::Credentials>,
    /// How many times each workload alternates between the registries.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Flush this machine's dirty page cache (sync(2)) before each measurement, so writes one
    /// registry left for the kernel to flush later are not paid for by the next measurement.
    /// For registries whose storage is on this machine.
    #[arg(long)]
    settle: bool,
}

/// A workload, as named on the command line and in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    PushBig,
    PushChunked,
    PullBig,
    ManifestGet,
    BlobGetSmall,
    SmallPush,
    TagsPage,
    CatalogPage,
}

impl Workload {
    /// Every workload, in the order they run: pushes before the pull that reuses their blob.
    const ALL: [Self; 8] = [
        Self::PushBig,
        Self::PushChunked,
        Self::PullBig,
        Self::ManifestGet,
        Self::BlobGetSmall,
        Self::SmallPush,
        Self::TagsPage,
        Self::CatalogPage,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::PushBig => "push-big",
            Self::PushChunked => "push-chunked",
            Self::PullBig => "pull-big",
            Self::ManifestGet => "manifest-get",
            Self::BlobGetSmall => "blob-get-small",
            Self::SmallPush => "small-push",
            Self::TagsPage => "tags-page",
            Self::CatalogPage => "catalog-page",
        }
    }
}

impl serde::Serialize for Workload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A workload at one scale: `tags-page` has one case per tag count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Case {
    pub(crate) workload: Workload,
    /// Tags or repositories listed; none for the other workloads.
    pub(crate) scale: Option<usize>,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scale {
            Some(scale) => write!(f, "{} {scale}", self.workload.name()),
            None => f.write_str(self.workload.name()),
        }
    }
}

/// The workloads chosen with `--workloads`.
#[derive(Debug, Clone)]
struct Selection(Vec<Workload>);

fn parse_workloads(list: &str) -> Result<Selection, String> {
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim) {
        match Workload::ALL.iter().find(|w| w.name() == name) {
            Some(workload) => chosen.push(*workload),
            None if name == "all" => chosen.extend(Workload::ALL),
            None => {
                let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
                return Err(format!(
                    "unknown workload {name:?}: expected all or {}",
                    names.join(", ")
                ));
            }
        }
    }
    Ok(Selection(chosen))
}

fn parse_size(value: &str) -> Result<u64, String> {
    crate::config::parse::size(value)
        .filter(|n| *n > 0)
        .map(|n| n as u64)
        .ok_or_else(|| "expected a size such as 4MiB, 64MiB or 1GiB".to_owned())
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    crate::config::parse::duration(value)
        .ok_or_else(|| "expected whole seconds such as 10 or 10s".to_owned())
}

/// The validated options the workloads read.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) big_size: u64,
    pub(crate) chunk_size: u64,
    pub(crate) duration: Duration,
    pub(crate) connections: usize,
    pub(crate) push_clients: usize,
    pub(crate) page_requests: usize,
    settle: bool,
    cases: Vec<Case>,
}

impl Plan {
    fn new(args: &BenchArgs) -> Self {
        let mut tags: Vec<usize> = args.tags.iter().map(|&n| n as usize).collect();
        tags.sort_unstable();
        tags.dedup();
        let cases = Workload::ALL
            .into_iter()
            .filter(|w| args.workloads.0.contains(w))
            .flat_map(|workload| {
                let scales = match workload {
                    Workload::TagsPage => tags.iter().copied().map(Some).collect(),
                    Workload::CatalogPage => vec![Some(args.repos as usize)],
                    _ => vec![None],
                };
                scales
                    .into_iter()
                    .map(move |scale| Case { workload, scale })
            })
            .collect();
        Self {
            big_size: args.big_size,
            chunk_size: args.chunk_size,
            duration: args.duration,
            connections: args.connections as usize,
            push_clients: args.push_clients as usize,
            page_requests: args.page_requests as usize,
            settle: args.settle,
            cases,
        }
    }

    /// The options as recorded in the JSON file.
    fn describe(&self, args: &BenchArgs, root: &str) -> serde_json::Value {
        serde_json::json!({
            "big_size_bytes": self.big_size,
            "chunk_size_bytes": self.chunk_size,
            "duration_secs": self.duration.as_secs_f64(),
            "connections": self.connections,
            "push_clients": self.push_clients,
            "tags": args.tags,
            "repos": args.repos,
            "page_requests": self.page_requests,
            "rounds": args.rounds,
            "repository_root": root,
        })
    }
}

/// Runs the benchmark; `Ok(false)` when a workload was aborted.
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(bench(args))
}

async fn bench(args: BenchArgs) -> anyhow::Result<bool> {
    let plan = Plan::new(&args);
    let mut random = Random::from_entropy();
    let root = format!("{}-{:08x}", args.repo_prefix, random.next_u64() >> 32);
    let mut registries = Vec::new();
    for (label, url) in [("A", Some(&args.url)), ("B", args.compare.as_ref())] {
        if let Some(url) = url {
            let client = RegistryClient::new(label, url, args.auth.clone()).await?;
            client
                .ping()
                .await
                .with_context(|| format!("registry {label} at {url} does not answer"))?;
            registries.push(Fixtures::new(client, &root, random.next_u64()));
        }
    }
    eprintln!("marina bench: repositories under {root}/");
    let mut report = Report {
        registries: registries
            .iter()
            .map(|r| (r.client.label, r.client.base().to_owned()))
            .collect(),
        measurements: Vec::new(),
    };
    for &case in &plan.cases {
        for round in 1..=args.rounds {
            for fixtures in &mut registries {
                report
                    .measurements
                    .push(measure(case, round, &plan, fixtures).await);
            }
        }
    }
    println!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path, plan.describe(&args, &root))?;
    }
    Ok(!report.has_failures())
}

/// One case on one registry; an error aborts only this measurement, and is reported.
async fn measure(case: Case, round: u32, plan: &Plan, fixtures: &mut Fixtures) -> Measurement {
    let registry = fixtures.client.label;
    if plan.settle {
        // A failed sync only leaves the measurement as it would be without --settle.
        let _ = tokio::task::spawn_blocking(rustix::fs::sync).await;
    }
    let (figures, error) = match workloads::measure(case, plan, fixtures).await {
        Ok(figures) => {
            let shown: Vec<String> = figures.iter().map(ToString::to_string).collect();
            eprintln!("{case} on {registry}: {}", shown.join(", "));
            (figures, None)
        }
        Err(e) => {
            eprintln!("marina bench: {case} on {registry} aborted: {e:#}");
            (Vec::new(), Some(format!("{e:#}")))
        }
    };
    Measurement {
        case,
        registry,
        round,
        figures,
        error,
    }
}
