//! The workloads, each timed on one registry: big pushes (monolithic and chunked) and the big
//! pull in MiB/s, manifest and small-blob GETs in requests per second over many connections,
//! small pushes in blobs per second, and the latency of tag and catalog pages.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use reqwest::Url;
use reqwest::header::HeaderMap;
use sha2::{Digest as _, Sha256};
use tokio::task::JoinSet;

use super::client::{RegistryClient, docker_manifest_accept};
use super::data::{Blob, Random, digest_string};
use super::fixtures::{Fixtures, SMALL_BLOB, StoredBlob};
use super::progress::{Progress, Unit};
use super::report::Figure;
use super::stats::percentile_ms;
use super::{Case, Plan, Workload};

const MIB: f64 = 1024.0 * 1024.0;

/// Entries asked for per listing page.
const PAGE_SIZE: usize = 100;

/// Untimed page requests first, so caches are as warm as in steady use.
const PAGE_WARMUP: usize = 10;

/// Measures `case` once on the registry of `fixtures`, setting up what it needs first.
pub(crate) async fn measure(
    case: Case,
    plan: &Plan,
    fixtures: &mut Fixtures,
) -> anyhow::Result<Vec<Figure>> {
    let label = format!("{case} on {}", fixtures.client.label);
    match case.workload {
        Workload::PushBig => push_big(plan, fixtures, label).await,
        Workload::PushChunked => push_chunked(plan, fixtures, label).await,
        Workload::PullBig => pull_big(plan, fixtures, label).await,
        Workload::ManifestGet => manifest_get(plan, fixtures, label).await,
        Workload::BlobGetSmall => blob_get_small(plan, fixtures, label).await,
        Workload::SmallPush => small_push(plan, fixtures, label).await,
        Workload::TagsPage => tags_page(plan, fixtures, case.scale.unwrap_or(0), label).await,
        Workload::CatalogPage => catalog_page(plan, fixtures, case.scale.unwrap_or(0), label).await,
    }
}

/// One POST, then one PUT carrying the whole blob.
async fn push_big(
    plan: &Plan,
    fixtures: &mut Fixtures,
    label: String,
) -> anyhow::Result<Vec<Figure>> {
    let stored = new_big_blob(plan, fixtures, "push-big");
    let size = stored.blob.size;
    let progress = Progress::start(label, Unit::Bytes, Some(size));
    let started = Instant::now();
    let body = stored.blob.body(0..size, progress.counter());
    fixtures
        .client
        .push_blob(&stored.repo, &stored.digest, size, body)
        .await?;
    Ok(pushed(fixtures, stored, started))
}

/// One POST, PATCHes of `--chunk-size` with `Content-Range`, then a PUT with no body.
async fn push_chunked(
    plan: &Plan,
    fixtures: &mut Fixtures,
    label: String,
) -> anyhow::Result<Vec<Figure>> {
    let stored = new_big_blob(plan, fixtures, "push-chunked");
    let size = stored.blob.size;
    let client = &fixtures.client;
    let progress = Progress::start(label, Unit::Bytes, Some(size));
    let started = Instant::now();
    let mut location = client.start_upload(&stored.repo).await?;
    for start in (0..size).step_by(usize::try_from(plan.chunk_size)?) {
        let chunk = start..(start + plan.chunk_size).min(size);
        let body = stored.blob.body(chunk.clone(), progress.counter());
        location = client.patch_chunk(location, chunk, body).await?;
    }
    client
        .finish_upload(location, &stored.digest, 0, Bytes::new().into())
        .await?;
    Ok(pushed(fixtures, stored, started))
}

/// GETs of the big blob, one after another for `--duration` (at least `MIN_PULLS`), so one
/// scheduling hiccup in a sub-second transfer does not decide the figure. The timed GETs only
/// count bytes: hashing in the client would make the client the bottleneck on a small machine
/// and hide the registry's speed. A last, untimed GET checks the bytes against the digest.
async fn pull_big(
    plan: &Plan,
    fixtures: &mut Fixtures,
    label: String,
) -> anyhow::Result<Vec<Figure>> {
    const MIN_PULLS: u32 = 3;
    let stored = fixtures.big_blob(plan.big_size, &label).await?;
    let url = fixtures
        .client
        .url(&format!("/v2/{}/blobs/{}", stored.repo, stored.digest))?;
    let expect_length = |length: u64, digest: &str| {
        ensure!(
            length == stored.blob.size && digest == stored.digest,
            "GET {url} returned {length} bytes with digest {digest}; expected {} bytes with {}",
            stored.blob.size,
            stored.digest
        );
        Ok(())
    };
    let progress = Progress::start(label, Unit::Bytes, None);
    let started = Instant::now();
    let (mut pulled, mut pulls) = (0, 0);
    while pulls < MIN_PULLS || started.elapsed() < plan.duration {
        let length = fetch(fixtures, &url, None, |n| progress.add(n)).await?;
        expect_length(length, &stored.digest)?;
        (pulled, pulls) = (pulled + length, pulls + 1);
    }
    let elapsed = started.elapsed();
    drop(progress);
    let mut hasher = Sha256::new();
    let length = fetch(fixtures, &url, Some(&mut hasher), |_| {}).await?;
    expect_length(length, &digest_string(hasher))?;
    Ok(vec![Figure::rate("MiB/s", mib_per_second(pulled, elapsed))])
}

/// Streams a GET to its end, hashing when asked; returns the byte count.
async fn fetch(
    fixtures: &Fixtures,
    url: &reqwest::Url,
    mut hasher: Option<&mut Sha256>,
    mut on_chunk: impl FnMut(u64),
) -> anyhow::Result<u64> {
    let mut response = fixtures.client.get_stream(url).await?;
    let mut length = 0u64;
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("reading GET {url}"))?
    {
        if let Some(hasher) = hasher.as_deref_mut() {
            hasher.update(&chunk);
        }
        length += chunk.len() as u64;
        on_chunk(chunk.len() as u64);
    }
    Ok(length)
}

/// GETs of a manifest by tag, with docker's `Accept` headers, over `--connections`.
async fn manifest_get(
    plan: &Plan,
    fixtures: &mut Fixtures,
    label: String,
) -> anyhow::Result<Vec<Figure>> {
    let repo = fixtures.image_repo().await?;
    let url = fixtures
        .client
        .url(&format!("/v2/{repo}/manifests/latest"))?;
    let target = Arc::new(Get::new(&fixtures.client, url, docker_manifest_accept()));
    let rate = per_second(plan, plan.connections, label, "req", move || {
        let target = target.clone();
        async move { target.fetch().await.map(drop) }
    })
    .await?;
    Ok(vec![Figure::rate("req/s", rate)])
}

/// GETs of a 4 KiB blob over `--connections`.
async fn blob_get_small(
    plan: &Plan,
    fixtures: &mut Fixtures,
    label: String,
) -> anyhow::Result<Vec<Figure>> {
    let stored = fixtures.small_blob().await?;
    let url = fixtures
        .client
        .url(&format!("/v2/{}/blobs/{}", stored.repo, stored.digest))?;
    let target = Arc::new(Get::new(&fixtures.client, url, HeaderMap::new()));
    let rate = per_second(plan, plan.connections, label, "req", move || {
        let target = target.clone();
        async move {
            let length = target.fetch().await?;
            ensure!(
                length as u64 == SMALL_BLOB,
                "GET {} returned {length} bytes, not {SMALL_BLOB}",
                target.url
            );
            Ok(())
        }
    })
    .await?;
    Ok(vec![Figure::rate("req/s", rate)])
}

/// POST then PUT of distinct 4 KiB blobs, from `--push-clients` clients.
async fn small_push(
    plan: &Plan,
    fixtures: &mut Fixtures,
    label: String,
) -> anyhow::Result<Vec<Figure>> {
    let repo: Arc<str> = fixtures.repo("small-push").into();
    let client = fixtures.client.clone();
    let seed = fixtures.new_seed();
    let pushed = Arc::new(AtomicU64::new(0));
    let rate = per_second(plan, plan.push_clients, label, "blobs", move || {
        let (client, repo) = (client.clone(), repo.clone());
        let n = pushed.fetch_add(1, Ordering::Relaxed);
        let blob = Blob {
            seed: Random::new(seed ^ n).next_u64(),
            size: SMALL_BLOB,
        };
        async move { client.push_small_blob(&repo, blob.bytes()).await.map(drop) }
    })
    .await?;
    Ok(vec![Figure::rate("blobs/s", rate)])
}

/// `GET tags/list?n=100&last=<random tag>` on a repository with `count` tags.
async fn tags_page(
    plan: &Plan,
    fixtures: &mut Fixtures,
    count: usize,
    label: String,
) -> anyhow::Result<Vec<Figure>> {
    let client = fixtures.client.clone();
    let tagged = fixtures.tagged(count, &label).await?;
    let base = client.url(&format!("/v2/{}/tags/list", tagged.repo))?;
    let mut random = Random::new(count as u64);
    let tags = &tagged.tags;
    let next = move || page_url(&base, &tags[random.below(tags.len())]);
    page_latencies(plan, &client, label, next).await
}

/// `GET /v2/_catalog?n=100&last=<random repository>` with `count` repositories made.
async fn catalog_page(
    plan: &Plan,
    fixtures: &mut Fixtures,
    count: usize,
    label: String,
) -> anyhow::Result<Vec<Figure>> {
    let client = fixtures.client.clone();
    let repos = fixtures.catalog(count, &label).await?;
    let base = client.url("/v2/_catalog")?;
    let mut random = Random::new(count as u64);
    let next = move || page_url(&base, &repos[random.below(repos.len())]);
    page_latencies(plan, &client, label, next).await
}

/// A blob of `--big-size` fresh bytes, its digest computed before any timing.
/// A finished big push: its rate since `started`, and the blob kept for pull-big.
fn pushed(fixtures: &mut Fixtures, stored: StoredBlob, started: Instant) -> Vec<Figure> {
    let rate = mib_per_second(stored.blob.size, started.elapsed());
    fixtures.remember_big_blob(stored);
    vec![Figure::rate("MiB/s", rate)]
}

fn new_big_blob(plan: &Plan, fixtures: &mut Fixtures, what: &str) -> StoredBlob {
    let blob = fixtures.new_blob(plan.big_size);
    StoredBlob {
        repo: fixtures.repo(what),
        digest: blob.digest(),
        blob,
    }
}

fn mib_per_second(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / MIB / elapsed.as_secs_f64()
}

/// A GET repeated many times: the URL and headers are built once.
struct Get {
    client: RegistryClient,
    url: Url,
    headers: HeaderMap,
}

impl Get {
    fn new(client: &RegistryClient, url: Url, headers: HeaderMap) -> Self {
        Self {
            client: client.clone(),
            url,
            headers,
        }
    }

    /// One GET, body read whole; returns the body's length.
    async fn fetch(&self) -> anyhow::Result<usize> {
        self.client.get_len(&self.url, &self.headers).await
    }
}

/// Runs `operation` in a loop on `workers` tasks for a warm-up and then `--duration`; returns
/// how many completed per second within the timed window. The first error stops every worker.
async fn per_second<F, Fut>(
    plan: &Plan,
    workers: usize,
    label: String,
    unit: &'static str,
    operation: F,
) -> anyhow::Result<f64>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let progress = Progress::start(label, Unit::Items(unit), None);
    let begin = Instant::now() + (plan.duration / 5).min(Duration::from_secs(1));
    let end = begin + plan.duration;
    let timed = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let (operation, done, timed) = (operation.clone(), progress.counter(), timed.clone());
        tasks.spawn(async move {
            loop {
                operation().await?;
                let now = Instant::now();
                if now >= end {
                    return Ok::<_, anyhow::Error>(());
                }
                done.fetch_add(1, Ordering::Relaxed);
                if now >= begin {
                    timed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(finished) = tasks.join_next().await {
        finished.context("a load task panicked")??;
    }
    Ok(timed.load(Ordering::Relaxed) as f64 / plan.duration.as_secs_f64())
}

/// `<base>?n=100&last=<last>`.
fn page_url(base: &Url, last: &str) -> Url {
    let mut url = base.clone();
    url.query_pairs_mut()
        .append_pair("n", &PAGE_SIZE.to_string())
        .append_pair("last", last);
    url
}

/// Latency of `--page-requests` sequential GETs of the pages `next` names: p50, p90, p99.
async fn page_latencies(
    plan: &Plan,
    client: &RegistryClient,
    label: String,
    mut next: impl FnMut() -> Url,
) -> anyhow::Result<Vec<Figure>> {
    let no_headers = HeaderMap::new();
    for _ in 0..PAGE_WARMUP {
        client.get_len(&next(), &no_headers).await?;
    }
    let progress = Progress::start(label, Unit::Items("req"), Some(plan.page_requests as u64));
    let mut samples = Vec::with_capacity(plan.page_requests);
    for _ in 0..plan.page_requests {
        let url = next();
        let started = Instant::now();
        client.get_len(&url, &no_headers).await?;
        samples.push(started.elapsed());
        progress.add(1);
    }
    Ok(["p50", "p90", "p99"]
        .into_iter()
        .zip([50.0, 90.0, 99.0])
        .map(|(name, p)| Figure::latency(name, percentile_ms(&mut samples, p)))
        .collect())
}
