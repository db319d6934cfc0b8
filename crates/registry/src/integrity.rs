//! Integrity checks (`marina fsck`): re-hash every stored content, and check every link, tag,
//! referrer entry and index child against what it names; with repair, move corrupt content
//! into `quarantine/` and drop links that name nothing.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{StreamExt as _, TryStreamExt as _};
use marina_oci::{Digest, Manifest};
use marina_store::Key;
use serde::{Deserialize, Serialize};

use crate::gc::Progress;
use crate::gc::scan::RepoKeys;
use crate::manifests::referenced;
use crate::{Registry, Result, keys};

/// Contents hashed at once (hashing is CPU-bound).
const HASHING_IN_FLIGHT: usize = 4;

/// What is wrong with an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Content whose bytes do not hash to its digest, or a manifest that does not parse.
    Corrupt,
    /// Something a manifest needs that its repository lacks.
    Missing,
    /// A link, tag or referrer entry that names nothing.
    Dangling,
}

/// One problem found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Problem {
    /// The repository, unless it is shared content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// What is wrong.
    pub fault: Fault,
    /// The storage key at fault.
    pub key: String,
    /// In words.
    pub detail: String,
    /// Whether `--repair` fixed it.
    pub repaired: bool,
}

/// What a check found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Contents re-hashed.
    pub contents_checked: u64,
    /// Bytes re-hashed.
    pub bytes_hashed: u64,
    /// Links, tags and referrer entries checked.
    pub entries_checked: u64,
    /// Every problem, by repository.
    pub problems: Vec<Problem>,
}

/// Counters a check updates as it goes.
#[derive(Debug, Default)]
pub struct CheckProgress {
    contents: AtomicU64,
    bytes: AtomicU64,
    entries: AtomicU64,
    problems: AtomicU64,
}

impl CheckProgress {
    /// `(contents hashed, bytes hashed, entries checked, problems)` so far.
    #[must_use]
    pub fn snapshot(&self) -> [u64; 4] {
        [&self.contents, &self.bytes, &self.entries, &self.problems]
            .map(|c| c.load(Ordering::Relaxed))
    }
}

/// A found problem, before repair.
struct Finding {
    repository: Option<String>,
    fault: Fault,
    key: Key,
    detail: String,
}

impl Registry {
    /// Checks the whole store; with `repair`, quarantines corrupt content and drops dangling
    /// links, tags and referrer entries (what a manifest misses cannot be made up).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn check_integrity(&self, repair: bool, progress: &CheckProgress) -> Result<Report> {
        let listing = Progress::default();
        let digests = self.scan_contents(&listing).await?;
        let corrupt = self.rehash(&digests, progress).await?;
        let bad: HashSet<&Digest> = corrupt.iter().map(|(d, _)| d).collect();
        let present: HashSet<&Digest> = digests.iter().filter(|d| !bad.contains(d)).collect();
        let mut findings: Vec<Finding> = corrupt
            .iter()
            .map(|(d, detail)| Finding {
                repository: None,
                fault: Fault::Corrupt,
                key: keys::blob(d),
                detail: detail.clone(),
            })
            .collect();
        for repo in self.scan_repos(&listing).await? {
            findings.extend(self.check_repo(&repo, &present, progress).await?);
        }
        progress
            .problems
            .store(findings.len() as u64, Ordering::Relaxed);
        let mut problems = Vec::with_capacity(findings.len());
        for finding in findings {
            let repaired = repair && self.repair(&finding).await?;
            problems.push(Problem {
                repository: finding.repository,
                fault: finding.fault,
                key: finding.key.to_string(),
                detail: finding.detail,
                repaired,
            });
        }
        let [contents_checked, bytes_hashed, entries_checked, _] = progress.snapshot();
        Ok(Report {
            contents_checked,
            bytes_hashed,
            entries_checked,
            problems,
        })
    }

    /// Re-hashes every content; returns the corrupt ones, with what they hash to.
    async fn rehash(
        &self,
        digests: &[Digest],
        progress: &CheckProgress,
    ) -> Result<Vec<(Digest, String)>> {
        let checked = futures_util::stream::iter(digests.iter().cloned())
            .map(|digest| async move {
                let actual = self.hash_content(&digest, progress).await?;
                progress.contents.fetch_add(1, Ordering::Relaxed);
                Ok::<_, crate::Error>((actual != digest).then(|| {
                    let detail = format!("content of {digest} hashes to {actual}");
                    (digest, detail)
                }))
            })
            .buffer_unordered(HASHING_IN_FLIGHT)
            .try_filter_map(|found| async move { Ok(found) });
        checked.try_collect().await
    }

    async fn hash_content(&self, digest: &Digest, progress: &CheckProgress) -> Result<Digest> {
        let key = keys::blob(digest);
        let size = self.store.size(&key).await?;
        let mut hasher = digest.algorithm().hasher();
        let mut bytes = self.store.read(&key, 0..size).await?;
        while let Some(chunk) = bytes.try_next().await? {
            progress
                .bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            hasher.update(&chunk);
        }
        Ok(hasher.finish())
    }

    /// One repository's links, tags, referrer entries, and what its manifests need.
    async fn check_repo(
        &self,
        repo: &RepoKeys,
        present: &HashSet<&Digest>,
        progress: &CheckProgress,
    ) -> Result<Vec<Finding>> {
        let name = repo.name.to_string();
        let mut found = Vec::new();
        let mut finding = |fault, key: String, detail: String| {
            let key = Key::new(key).expect("keys come from a listing");
            found.push(Finding {
                repository: Some(name.clone()),
                fault,
                key,
                detail,
            });
        };
        let blobs: HashSet<&Digest> = repo.blobs.iter().collect();
        let manifests: HashSet<&Digest> = repo.manifests.iter().collect();
        for (digest, key) in repo.links() {
            progress.entries.fetch_add(1, Ordering::Relaxed);
            if !present.contains(digest) {
                finding(
                    Fault::Dangling,
                    key,
                    format!("links {digest}, whose content is missing or corrupt"),
                );
            }
        }
        for digest in repo.manifests.iter().filter(|d| present.contains(d)) {
            let body = self.store.get_cold(&keys::blob(digest)).await?;
            let media_type = self
                .read_link(&keys::manifest_link(&repo.name, digest))
                .await?;
            let media_type = media_type.map(|l| l.payload).filter(|m| !m.is_empty());
            let link = keys::manifest_link(&repo.name, digest).to_string();
            let Ok(manifest) = Manifest::parse(&body, media_type.as_deref()) else {
                let detail = format!("manifest {digest} does not parse");
                finding(Fault::Corrupt, link, detail);
                continue;
            };
            // A mirror fetches what a manifest references when a client asks for it.
            let fetched_on_demand = self.is_proxied(&repo.name);
            for (needed, is_blob) in referenced(&manifest)
                .into_iter()
                .filter(|_| !fetched_on_demand)
            {
                let (held, what) = if is_blob {
                    (blobs.contains(&needed), "blob")
                } else {
                    (manifests.contains(&needed), "child manifest")
                };
                if !held {
                    let detail = format!(
                        "manifest {digest} needs {what} {needed}, which the repository lacks"
                    );
                    finding(Fault::Missing, link.clone(), detail);
                }
            }
        }
        for tag in &repo.tags {
            progress.entries.fetch_add(1, Ordering::Relaxed);
            let value = self.read_link_cold(&keys::tag(&repo.name, tag)).await?;
            let target = value.and_then(|v| v.payload.parse::<Digest>().ok());
            if !target.is_some_and(|d| manifests.contains(&d) && present.contains(&d)) {
                let key = keys::tag(&repo.name, tag).to_string();
                finding(
                    Fault::Dangling,
                    key,
                    format!("tag {tag} names no manifest of the repository"),
                );
            }
        }
        for (subject, referrer) in &repo.referrers {
            progress.entries.fetch_add(1, Ordering::Relaxed);
            if !(manifests.contains(referrer) && present.contains(referrer)) {
                let key = keys::referrer(&repo.name, subject, referrer).to_string();
                finding(
                    Fault::Dangling,
                    key,
                    format!(
                        "referrer entry of {subject} names {referrer}, which the repository lacks"
                    ),
                );
            }
        }
        Ok(found)
    }

    /// Quarantines corrupt content or drops a dangling entry; returns whether it did.
    async fn repair(&self, finding: &Finding) -> Result<bool> {
        match finding.fault {
            Fault::Missing => Ok(false),
            Fault::Corrupt if finding.repository.is_some() => Ok(false),
            Fault::Corrupt => {
                self.quarantine(&finding.key).await?;
                Ok(true)
            }
            Fault::Dangling => {
                self.store.delete(&finding.key).await?;
                Ok(true)
            }
        }
    }

    /// Moves content under `quarantine/`, streaming, then deletes it from `blobs/`.
    async fn quarantine(&self, key: &Key) -> Result<()> {
        let rest = key.as_str().strip_prefix("blobs/").unwrap_or(key.as_str());
        let staged = Key::new(format!("quarantine/.staging/{}", rest.replace('/', "-")))
            .expect("built from a listed key");
        let to = Key::new(format!("quarantine/{rest}")).expect("built from a listed key");
        let size = self.store.size(key).await?;
        let bytes = self.store.read(key, 0..size).await?;
        let input = Box::pin(bytes.map_err(std::io::Error::other));
        let appended = self.store.append(&staged, 0, input).await?;
        let parts: Vec<marina_store::Part> = appended.part.into_iter().collect();
        self.store
            .promote(&staged, &parts, appended.length, &to)
            .await?;
        self.store.delete(key).await?;
        tracing::warn!(%key, quarantine = %to, "moved corrupt content into quarantine");
        Ok(())
    }
}
