//! The marking half of a pass: per repository, what tags, index children, configs, layers and
//! referrers keep reachable, and what is left to doom; then the contents no link keeps.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use marina_oci::{Digest, Manifest, ManifestKind};
use marina_store::Key;

use super::scan::RepoKeys;
use super::{Doomed, Kind};
use crate::retention::{Retention, TagAge};
use crate::stamp::{self, Stamped};
use crate::{Registry, Result, keys};

/// Store reads in flight while judging one repository.
const READS_IN_FLIGHT: usize = 32;

/// What a manifest references, read once per run (content never changes).
#[derive(Debug, Default)]
pub(super) struct Refs {
    children: Vec<Digest>,
    blobs: Vec<Digest>,
    /// The content is missing or not a manifest: keep every blob of its repository.
    unreadable: bool,
}

/// The references of the manifests read so far in a run.
#[derive(Debug, Default)]
pub(super) struct RefsCache(Mutex<HashMap<Digest, Arc<Refs>>>);

/// One repository's verdict.
#[derive(Debug, Default)]
pub(super) struct Verdict {
    pub(super) doomed: Vec<Doomed>,
    /// The digests whose links survive: their contents stay.
    pub(super) live: Vec<Digest>,
    /// Whether nothing survives, so its catalog entry goes.
    pub(super) empty: bool,
}

/// A repository's manifests and tags, read.
struct Read {
    /// Manifest digest -> its link (media type and stamp).
    manifests: HashMap<Digest, Stamped>,
    /// Tag -> its value (digest and push time).
    tags: Vec<(String, Stamped)>,
}

impl Registry {
    /// Judges one repository: marks from its tags (after its policy's pruning), from every
    /// manifest unless the policy deletes untagged ones, and from whatever is younger than
    /// the grace period; dooms what stays unmarked and old. In a proxy's cache, manifests last
    /// pulled before `evict_before` are no roots, and tags naming them go.
    pub(super) async fn judge(
        &self,
        repo: &RepoKeys,
        cache: &RefsCache,
        now_ms: u64,
        evict_before: Option<u64>,
    ) -> Result<Verdict> {
        let policy = self.retention_for(repo.name.as_str());
        let read = self.read_repo(repo).await?;
        let grace = self.config.gc_grace;
        let young = |s: &Stamped| s.age(now_ms) < grace;
        let evicted: HashSet<String> = read
            .manifests
            .iter()
            .filter(|(_, link)| evict_before.is_some_and(|cutoff| link.at_ms < cutoff))
            .map(|(d, _)| d.to_string())
            .collect();
        let mut verdict = Verdict::default();
        let mut dropped = dropped_tags(policy, &read.tags, now_ms);
        dropped.extend(
            read.tags
                .iter()
                .filter(|(_, value)| evicted.contains(&value.payload))
                .map(|(name, _)| name.as_str()),
        );
        let mut roots: Vec<Digest> = read
            .tags
            .iter()
            .filter(|(name, _)| !dropped.contains(name.as_str()))
            .filter_map(|(_, value)| value.payload.parse().ok())
            .collect();
        if evict_before.is_some() {
            let kept = read
                .manifests
                .keys()
                .filter(|d| !evicted.contains(&d.to_string()));
            roots.extend(kept.cloned());
        } else if !policy.is_some_and(|p| p.delete_untagged) {
            roots.extend(read.manifests.keys().cloned());
        }
        roots.extend(
            read.manifests
                .iter()
                .filter(|(_, link)| young(link))
                .map(|(d, _)| d.clone()),
        );
        let marks = self.mark(repo, &read, roots, cache).await?;
        for (name, value) in read
            .tags
            .iter()
            .filter(|(n, _)| dropped.contains(n.as_str()))
        {
            let reason = if evicted.contains(&value.payload) {
                "evicted from the proxy's cache (max_age, max_bytes)".to_owned()
            } else {
                policy.map(Retention::describe).unwrap_or_default()
            };
            verdict.doom(repo, Kind::Tag, format!("_tags/{name}"), name, reason);
        }
        self.doom_manifests(repo, &read, &marks, policy, &mut verdict);
        self.doom_blobs(repo, &marks, now_ms, &mut verdict).await?;
        let surviving_tags = read.tags.len() - dropped.len();
        verdict.empty = verdict.live.is_empty() && surviving_tags == 0 && repo.others == 0;
        Ok(verdict)
    }

    /// Reads every manifest link and tag of a repository.
    async fn read_repo(&self, repo: &RepoKeys) -> Result<Read> {
        let name = &repo.name;
        let manifests = futures_util::stream::iter(repo.manifests.iter().cloned())
            .map(|d| async move {
                let link = self.read_link_cold(&keys::manifest_link(name, &d)).await?;
                Ok::<_, crate::Error>(link.map(|l| (d, l)))
            })
            .buffer_unordered(READS_IN_FLIGHT)
            .try_filter_map(|found| async move { Ok(found) })
            .try_collect()
            .await?;
        let tags = futures_util::stream::iter(repo.tags.iter().cloned())
            .map(|t| async move {
                let value = self.read_link_cold(&keys::tag(name, &t)).await?;
                Ok::<_, crate::Error>(value.map(|v| (t.to_string(), v)))
            })
            .buffer_unordered(READS_IN_FLIGHT)
            .try_filter_map(|found| async move { Ok(found) })
            .try_collect()
            .await?;
        Ok(Read { manifests, tags })
    }

    /// Everything reachable from `roots` in the repository: manifests through index children
    /// and referrers of marked subjects, blobs through configs and layers.
    async fn mark(
        &self,
        repo: &RepoKeys,
        read: &Read,
        mut roots: Vec<Digest>,
        cache: &RefsCache,
    ) -> Result<Marks> {
        let mut by_subject: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
        for (subject, referrer) in &repo.referrers {
            by_subject.entry(subject).or_default().push(referrer);
        }
        let mut marks = Marks::default();
        while let Some(digest) = roots.pop() {
            let Some(link) = read.manifests.get(&digest) else {
                continue;
            };
            if !marks.manifests.insert(digest.clone()) {
                continue;
            }
            let refs = self.refs(&digest, &link.payload, cache).await?;
            marks.keep_all_blobs |= refs.unreadable;
            marks.blobs.extend(refs.blobs.iter().cloned());
            roots.extend(refs.children.iter().cloned());
            let referrers = by_subject.get(&digest).into_iter().flatten();
            roots.extend(referrers.map(|d| (*d).clone()));
        }
        Ok(marks)
    }

    /// What a manifest references, from the run's cache or its content.
    async fn refs(
        &self,
        digest: &Digest,
        media_type: &str,
        cache: &RefsCache,
    ) -> Result<Arc<Refs>> {
        if let Some(refs) = cache.get(digest) {
            return Ok(refs);
        }
        let refs = match self.store.get_cold(&keys::blob(digest)).await {
            Ok(body) => Refs::of(&body, media_type),
            Err(e) if e.is_not_found() => Refs::unreadable(),
            Err(e) => return Err(e.into()),
        };
        if refs.unreadable {
            tracing::warn!(%digest, "a manifest's content is missing or unreadable: its repository's blobs are all kept");
        }
        Ok(cache.put(digest.clone(), refs))
    }

    /// Dooms unmarked manifests (all old: the young were roots) with their referrer entries,
    /// and referrer entries whose manifest is gone.
    fn doom_manifests(
        &self,
        repo: &RepoKeys,
        read: &Read,
        marks: &Marks,
        policy: Option<&Retention>,
        verdict: &mut Verdict,
    ) {
        let untagged = policy.map_or_else(String::new, |p| {
            format!("untagged, retention {:?}: delete_untagged", p.pattern_text)
        });
        let mut doomed_manifests = HashSet::new();
        for digest in read.manifests.keys() {
            if marks.manifests.contains(digest) {
                verdict.live.push(digest.clone());
                continue;
            }
            doomed_manifests.insert(digest);
            let rest = format!("_manifests/{}/{}", digest.algorithm(), digest.hex());
            verdict.doom(
                repo,
                Kind::Manifest,
                rest,
                &digest.to_string(),
                untagged.clone(),
            );
        }
        for (subject, referrer) in &repo.referrers {
            let gone = !read.manifests.contains_key(referrer);
            if gone || doomed_manifests.contains(referrer) {
                let rest = format!(
                    "_referrers/{}/{}/{}-{}",
                    subject.algorithm(),
                    subject.hex(),
                    referrer.algorithm(),
                    referrer.hex()
                );
                let why = if gone {
                    "its manifest is gone"
                } else {
                    "its manifest goes"
                };
                verdict.doom(
                    repo,
                    Kind::Referrer,
                    rest,
                    &referrer.to_string(),
                    why.into(),
                );
            }
        }
    }

    /// Dooms blob links no marked manifest references and older than the grace period.
    async fn doom_blobs(
        &self,
        repo: &RepoKeys,
        marks: &Marks,
        now_ms: u64,
        verdict: &mut Verdict,
    ) -> Result<()> {
        let unmarked: Vec<Digest> = repo
            .blobs
            .iter()
            .filter(|d| {
                let kept = marks.keep_all_blobs || marks.blobs.contains(*d);
                if kept {
                    verdict.live.push((*d).clone());
                }
                !kept
            })
            .cloned()
            .collect();
        let grace = self.config.gc_grace;
        let name = &repo.name;
        let stamps: Vec<(Digest, Option<Stamped>)> = futures_util::stream::iter(unmarked)
            .map(|d| async move {
                let link = self.read_link_cold(&keys::blob_link(name, &d)).await?;
                Ok::<_, crate::Error>((d, link))
            })
            .buffer_unordered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        for (digest, link) in stamps {
            match link {
                Some(link) if link.age(now_ms) < grace => verdict.live.push(digest),
                Some(_) => {
                    let rest = format!("_blobs/{}/{}", digest.algorithm(), digest.hex());
                    let why = format!(
                        "no manifest uses it, older than the grace of {}",
                        secs(grace)
                    );
                    verdict.doom(repo, Kind::BlobLink, rest, &digest.to_string(), why);
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// What marking reached in a repository.
#[derive(Debug, Default)]
struct Marks {
    manifests: HashSet<Digest>,
    blobs: HashSet<Digest>,
    keep_all_blobs: bool,
}

impl Verdict {
    fn doom(&mut self, repo: &RepoKeys, kind: Kind, rest: String, what: &str, reason: String) {
        let key = format!("repos/{}/{rest}", repo.name);
        self.doomed.push(Doomed {
            key,
            kind,
            repository: Some(repo.name.to_string()),
            what: what.to_owned(),
            reason,
        });
    }
}

impl Refs {
    fn of(body: &[u8], media_type: &str) -> Self {
        let Ok(manifest) = Manifest::parse(body, Some(media_type).filter(|m| !m.is_empty())) else {
            return Self::unreadable();
        };
        let digests = |ds: &[marina_oci::Descriptor]| ds.iter().map(|d| d.digest.clone()).collect();
        let mut blobs: Vec<Digest> = digests(&manifest.layers);
        blobs.extend(manifest.config.iter().map(|c| c.digest.clone()));
        Self {
            children: match manifest.kind {
                ManifestKind::Index => digests(&manifest.manifests),
                ManifestKind::Image => Vec::new(),
            },
            blobs,
            unreadable: false,
        }
    }

    fn unreadable() -> Self {
        Self {
            unreadable: true,
            ..Self::default()
        }
    }
}

impl RefsCache {
    fn get(&self, digest: &Digest) -> Option<Arc<Refs>> {
        self.lock().get(digest).cloned()
    }

    fn put(&self, digest: Digest, refs: Refs) -> Arc<Refs> {
        let refs = Arc::new(refs);
        self.lock().insert(digest, Arc::clone(&refs));
        refs
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<Refs>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The tags a policy drops.
fn dropped_tags<'a>(
    policy: Option<&Retention>,
    tags: &'a [(String, Stamped)],
    now_ms: u64,
) -> HashSet<&'a str> {
    let Some(policy) = policy else {
        return HashSet::new();
    };
    let ages: Vec<TagAge<'a>> = tags
        .iter()
        .map(|(name, value)| TagAge {
            name: name.as_str(),
            at_ms: value.at_ms,
        })
        .collect();
    policy.tags_to_drop(&ages, now_ms).into_iter().collect()
}

/// A duration as the dry run prints it.
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// The key of a doomed object whose key is not under a repository.
pub(super) fn doom_global(key: &Key, kind: Kind, what: String, reason: &str) -> Doomed {
    Doomed {
        key: key.to_string(),
        kind,
        repository: None,
        what,
        reason: reason.to_owned(),
    }
}

/// The stamp time now, for one pass.
pub(super) fn now_ms() -> u64 {
    stamp::now_ms()
}
