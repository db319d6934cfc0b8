//! One garbage collection run: purge stale uploads, mark and doom, publish the sweep, settle,
//! mark again, delete what both passes doomed, in [`Kind`] order, and withdraw the sweep.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use futures_util::{StreamExt as _, TryStreamExt as _};
use marina_store::Key;
use serde::{Deserialize, Serialize};

use super::mark::{RefsCache, doom_global, now_ms};
use super::scan::RepoKeys;
use super::sweeps::{SWEEP_LIMIT, SweepList};
use super::{Doomed, Kind, Phase, Progress};
use crate::{Registry, Result, keys, metrics};

/// Keys deleted together: the S3 backend sends them a thousand a request; the filesystem
/// syncs once per call, so fewer, larger calls cost fewer syncs.
const DELETE_CHUNK: usize = 10_000;
/// Content sizes read at once before deleting.
const READS_IN_FLIGHT: usize = 32;

/// What a run is asked to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Only report what would be deleted.
    pub dry_run: bool,
}

/// What a run found and did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Whether it only reported.
    pub dry_run: bool,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Repositories that have keys.
    pub repositories: usize,
    /// Keys listed, over both passes.
    pub objects_scanned: u64,
    /// Stale upload sessions purged.
    pub uploads_purged: usize,
    /// Objects deleted (none in a dry run).
    pub objects_freed: u64,
    /// Bytes of content deleted.
    pub bytes_freed: u64,
    /// Deleted (or, in a dry run, doomed) objects by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Milliseconds spent in each phase that ran (`marking`, `settling`, `rechecking`,
    /// `sweeping`).
    #[serde(default)]
    pub phases_ms: BTreeMap<String, u64>,
    /// In a dry run, every doomed object; otherwise empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub doomed: Vec<Doomed>,
}

/// One marking pass over everything.
struct Pass {
    doomed: Vec<Doomed>,
    repos: Vec<RepoKeys>,
}

impl Registry {
    /// Runs garbage collection and retention once.
    ///
    /// # Errors
    /// When the store fails; what was deleted before stays deleted, and the next run goes on.
    pub async fn collect_garbage(&self, options: Options, progress: &Progress) -> Result<Report> {
        let started = Instant::now();
        let outcome = self.run(options, progress, started).await;
        metrics::record_gc_run(outcome.as_ref().ok(), started.elapsed());
        progress.enter(Phase::Done);
        match &outcome {
            Ok(report) => tracing::info!(
                dry_run = report.dry_run,
                duration_ms = report.duration_ms,
                scanned = report.objects_scanned,
                freed = report.objects_freed,
                bytes_freed = report.bytes_freed,
                phases_ms = ?report.phases_ms,
                "garbage collection finished"
            ),
            Err(e) => tracing::error!(error = %e, "garbage collection failed"),
        }
        outcome
    }

    async fn run(&self, options: Options, progress: &Progress, started: Instant) -> Result<Report> {
        progress.enter(Phase::Uploads);
        let uploads_purged = if options.dry_run {
            0
        } else {
            self.remove_dead_sweeps().await?;
            self.purge_stale_uploads().await?
        };
        progress.enter(Phase::Marking);
        let cache = RefsCache::default();
        let marking = Instant::now();
        let first = self.pass(&cache, progress).await?;
        let mut phases_ms = BTreeMap::from([("marking".to_owned(), millis(marking))]);
        let mut report = Report {
            dry_run: options.dry_run,
            duration_ms: 0,
            repositories: first.repos.len(),
            objects_scanned: 0,
            uploads_purged,
            objects_freed: 0,
            bytes_freed: 0,
            by_kind: BTreeMap::new(),
            phases_ms: BTreeMap::new(),
            doomed: Vec::new(),
        };
        if options.dry_run {
            let mut doomed = first.doomed;
            doomed.sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
            report.by_kind = count_kinds(&doomed);
            report.doomed = doomed;
        } else if !first.doomed.is_empty() {
            let deleted = self
                .sweep(first.doomed, &cache, progress, &mut phases_ms)
                .await?;
            report.by_kind = count_kinds(&deleted);
        }
        report.phases_ms = phases_ms;
        let snapshot = progress.snapshot();
        report.objects_scanned = snapshot.objects_scanned;
        report.objects_freed = snapshot.objects_freed;
        report.bytes_freed = snapshot.bytes_freed;
        report.duration_ms = millis(started);
        Ok(report)
    }

    /// Publishes `doomed`, waits for writes in flight, marks again and deletes what is still
    /// doomed; withdraws the sweep whatever happens. Returns what it deleted.
    async fn sweep(
        &self,
        doomed: Vec<Doomed>,
        cache: &RefsCache,
        progress: &Progress,
        phases_ms: &mut BTreeMap<String, u64>,
    ) -> Result<Vec<Doomed>> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).expect("the OS random source works");
        let key = keys::sweep(&hex::encode(id)).expect("hex is a run id");
        let list = SweepList {
            published_ms: now_ms(),
            keys: doomed.iter().map(|d| d.key.clone()).collect(),
        };
        self.store.put(&key, list.encode()).await?;
        let published = Instant::now();
        let outcome = self
            .confirm_and_delete(doomed, cache, progress, published, phases_ms)
            .await;
        self.store.delete(&key).await?;
        outcome
    }

    async fn confirm_and_delete(
        &self,
        doomed: Vec<Doomed>,
        cache: &RefsCache,
        progress: &Progress,
        published: Instant,
        phases_ms: &mut BTreeMap<String, u64>,
    ) -> Result<Vec<Doomed>> {
        progress.enter(Phase::Settling);
        super::sweeps::settle(&*self.store).await;
        phases_ms.insert("settling".into(), millis(published));
        progress.enter(Phase::Rechecking);
        let rechecking = Instant::now();
        let second = self.pass(cache, progress).await?;
        phases_ms.insert("rechecking".into(), millis(rechecking));
        let again: HashSet<&str> = second.doomed.iter().map(|d| d.key.as_str()).collect();
        let confirmed: Vec<Doomed> = doomed
            .into_iter()
            .filter(|d| again.contains(d.key.as_str()))
            .collect();
        let mut confirmed = still_unreferenced(confirmed, &second.repos);
        confirmed.sort_by_key(|d| d.kind);
        progress.enter(Phase::Sweeping);
        let sweeping = Instant::now();
        let mut deleted = Vec::with_capacity(confirmed.len());
        for kind in kinds_in(&confirmed) {
            let batch: Vec<Doomed> = confirmed
                .iter()
                .filter(|d| d.kind == kind)
                .cloned()
                .collect();
            if published.elapsed() > SWEEP_LIMIT {
                tracing::warn!("the sweep ran out of time; the next run deletes the rest");
                break;
            }
            self.delete_all(&batch, progress, published).await?;
            deleted.extend(batch);
        }
        phases_ms.insert("sweeping".into(), millis(sweeping));
        Ok(deleted)
    }

    /// Deletes one kind's keys, a chunk at a time, while the sweep's time lasts.
    async fn delete_all(
        &self,
        batch: &[Doomed],
        progress: &Progress,
        published: Instant,
    ) -> Result<()> {
        for chunk in batch.chunks(DELETE_CHUNK) {
            if published.elapsed() > SWEEP_LIMIT {
                return Ok(());
            }
            let keys: Vec<Key> = chunk
                .iter()
                .map(|d| Key::new(d.key.clone()).expect("doomed keys were listed"))
                .collect();
            let sizes = if chunk[0].kind == Kind::Content {
                self.sizes_of(&keys).await?
            } else {
                vec![0; keys.len()]
            };
            self.store.delete_many(&keys).await?;
            for (key, size) in keys.iter().zip(sizes) {
                tracing::debug!(%key, "collected");
                progress.freed(size);
            }
        }
        Ok(())
    }

    /// The sizes of contents about to go (0 for one already gone).
    async fn sizes_of(&self, keys: &[Key]) -> Result<Vec<u64>> {
        futures_util::stream::iter(keys.iter().cloned())
            .map(|key| async move {
                match self.store.size(&key).await {
                    Ok(size) => Ok(size),
                    Err(e) if e.is_not_found() => Ok(0),
                    Err(e) => Err(crate::Error::from(e)),
                }
            })
            .buffered(READS_IN_FLIGHT)
            .try_collect()
            .await
    }

    /// One marking pass: every repository judged, then contents and catalog entries.
    async fn pass(&self, cache: &RefsCache, progress: &Progress) -> Result<Pass> {
        let now = now_ms();
        let repos = self.scan_repos(progress).await?;
        let cutoffs = self.eviction_cutoffs(&repos, now).await?;
        let mut doomed = Vec::new();
        let mut live = HashSet::new();
        let mut present = HashSet::new();
        for repo in &repos {
            let evict_before = self.cutoff_of(&cutoffs, &repo.name);
            let verdict = self.judge(repo, cache, now, evict_before).await?;
            doomed.extend(verdict.doomed);
            live.extend(verdict.live);
            if !verdict.empty {
                present.insert(repo.name.to_string());
            }
        }
        for digest in self.scan_contents(progress).await? {
            if !live.contains(&digest) {
                let key = keys::blob(&digest);
                let why = "no repository links it";
                doomed.push(doom_global(&key, Kind::Content, digest.to_string(), why));
            }
        }
        for name in self.scan_catalog(progress).await? {
            if !present.contains(&name) {
                let key = Key::new(format!("catalog/{name}{}", keys::REPO_MARKER))
                    .expect("listed catalog entries are keys");
                let mut entry = doom_global(
                    &key,
                    Kind::CatalogEntry,
                    name.clone(),
                    "the repository is empty",
                );
                entry.repository = Some(name);
                doomed.push(entry);
            }
        }
        Ok(Pass { doomed, repos })
    }

    /// Deletes the sweeps of collectors that died: published long enough ago that they can
    /// delete nothing more, whatever the clocks of their replicas said.
    async fn remove_dead_sweeps(&self) -> Result<()> {
        let dead_after = u64::try_from((SWEEP_LIMIT * 2).as_millis()).unwrap_or(u64::MAX);
        for id in self.store.list(&keys::sweeps(), None, 1000).await? {
            let Some(key) = keys::sweep(&id) else {
                continue;
            };
            let published = match self.store.get(&key).await {
                Ok(raw) => SweepList::decode(&raw).published_ms,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            if now_ms().saturating_sub(published) > dead_after {
                tracing::info!(sweep = %id, "removing the sweep of a collector that stopped");
                self.store.delete(&key).await?;
            }
        }
        Ok(())
    }
}

/// Drops from what both passes doomed the content that a surviving link still names, and the
/// catalog entry of a repository that keeps a key. Pass 2 doomed them assuming every link it
/// doomed goes, but a link pass 1 never saw (written between the passes) is not deleted.
fn still_unreferenced(confirmed: Vec<Doomed>, repos: &[RepoKeys]) -> Vec<Doomed> {
    let going: HashSet<&str> = confirmed.iter().map(|d| d.key.as_str()).collect();
    let mut named = HashSet::new();
    let mut kept_repos = HashSet::new();
    for repo in repos {
        let mut keeps = repo.others > 0;
        for (digest, key) in repo.links() {
            if !going.contains(key.as_str()) {
                named.insert(keys::blob(digest).to_string());
                keeps = true;
            }
        }
        keeps |= repo.entries().any(|key| !going.contains(key.as_str()));
        if keeps {
            kept_repos.insert(repo.name.to_string());
        }
    }
    confirmed
        .into_iter()
        .filter(|d| match d.kind {
            Kind::Content => !named.contains(&d.key),
            Kind::CatalogEntry => !d
                .repository
                .as_ref()
                .is_some_and(|r| kept_repos.contains(r)),
            _ => true,
        })
        .collect()
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn kinds_in(doomed: &[Doomed]) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = doomed.iter().map(|d| d.kind).collect();
    kinds.dedup();
    kinds
}

fn count_kinds(doomed: &[Doomed]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for d in doomed {
        let name = serde_json::to_value(d.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}
