//! Disk usage per repository (`marina du`), from the same listing garbage collection marks
//! from: each stored content counts as exclusive to the one repository that links it, or as
//! shared when several do.

use std::collections::HashMap;

use futures_util::{StreamExt as _, TryStreamExt as _};
use marina_oci::Digest;
use serde::{Deserialize, Serialize};

use crate::gc::Progress;
use crate::{Registry, Result, keys};

/// Content sizes read at once.
const SIZES_IN_FLIGHT: usize = 32;

/// One repository's usage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoUsage {
    /// The repository.
    pub repository: String,
    /// Bytes of content no other repository links.
    pub exclusive_bytes: u64,
    /// Bytes of content other repositories link too.
    pub shared_bytes: u64,
    /// Blob and manifest links.
    pub links: usize,
}

/// The whole store's usage.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Per repository, largest exclusive usage first.
    pub repositories: Vec<RepoUsage>,
    /// Bytes of all linked content, each counted once.
    pub linked_bytes: u64,
    /// Bytes of content no repository links (garbage collection's to free).
    pub unlinked_bytes: u64,
}

impl Registry {
    /// Measures every repository's usage.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn usage(&self, progress: &Progress) -> Result<Usage> {
        let repos = self.scan_repos(progress).await?;
        let contents = self.scan_contents(progress).await?;
        let sizes = self.sizes(contents).await?;
        let mut linkers: HashMap<&Digest, usize> = HashMap::new();
        for repo in &repos {
            for (digest, _) in repo.links() {
                *linkers.entry(digest).or_default() += 1;
            }
        }
        let size = |d: &Digest| sizes.get(d).copied().unwrap_or(0);
        let mut usage = Usage::default();
        for repo in &repos {
            let mut line = RepoUsage {
                repository: repo.name.to_string(),
                exclusive_bytes: 0,
                shared_bytes: 0,
                links: 0,
            };
            for (digest, _) in repo.links() {
                line.links += 1;
                match linkers.get(digest) {
                    Some(1) => line.exclusive_bytes += size(digest),
                    _ => line.shared_bytes += size(digest),
                }
            }
            usage.repositories.push(line);
        }
        usage.linked_bytes = linkers.keys().map(|d| size(d)).sum();
        usage.unlinked_bytes = sizes
            .iter()
            .filter(|(d, _)| !linkers.contains_key(d))
            .map(|(_, s)| s)
            .sum();
        usage.repositories.sort_by(|a, b| {
            b.exclusive_bytes
                .cmp(&a.exclusive_bytes)
                .then(a.repository.cmp(&b.repository))
        });
        Ok(usage)
    }

    /// The size of each content (a content that vanished meanwhile is left out).
    async fn sizes(&self, contents: Vec<Digest>) -> Result<HashMap<Digest, u64>> {
        futures_util::stream::iter(contents)
            .map(|digest| async move {
                match self.store.size(&keys::blob(&digest)).await {
                    Ok(size) => Ok(Some((digest, size))),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(crate::Error::from(e)),
                }
            })
            .buffer_unordered(SIZES_IN_FLIGHT)
            .try_filter_map(|found| async move { Ok(found) })
            .try_collect()
            .await
    }
}
