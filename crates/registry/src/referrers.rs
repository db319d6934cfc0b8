//! Referrers: one descriptor per manifest that names a subject, kept under that subject so a
//! listing costs O(its referrers).

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use marina_oci::{Descriptor, Digest, RepoName};

use crate::{Registry, Result, keys};

/// How many descriptors are read at once when listing.
const READ_AHEAD: usize = 16;

/// One page of a subject's referrers.
#[derive(Debug, Clone)]
pub struct ReferrersPage {
    /// The descriptors, in the order of their digests.
    pub descriptors: Vec<Descriptor>,
    /// Where the next page starts (pass it as `last`), while referrers remain.
    pub next: Option<String>,
}

impl Registry {
    /// A page of the referrers of `subject`, optionally only those of one artifact type: up to
    /// `n` stored referrers after `last`, cut short before their descriptors pass `max_bytes`.
    /// Only the page is read. A filtered page may hold fewer than `n`; `next` says whether
    /// more remain.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        window: (Option<&str>, usize, usize),
    ) -> Result<ReferrersPage> {
        match self.route(repo) {
            Some(route) => {
                self.proxied_referrers(&route, repo, subject, artifact_type, window)
                    .await
            }
            None => {
                self.local_referrers(repo, subject, artifact_type, window)
                    .await
            }
        }
    }

    /// A page of the referrers this store holds.
    pub(crate) async fn local_referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        (last, n, max_bytes): (Option<&str>, usize, usize),
    ) -> Result<ReferrersPage> {
        let prefix = keys::referrers(repo, subject);
        let mut names = self
            .store
            .list(&prefix, last, n.max(1).saturating_add(1))
            .await?;
        let mut more = names.len() > n.max(1);
        names.truncate(n.max(1));
        let read: Vec<(String, Option<(usize, Descriptor)>)> = futures_util::stream::iter(names)
            .map(|name| self.referrer(&prefix, name))
            .buffered(READ_AHEAD)
            .try_collect()
            .await?;
        let (mut descriptors, mut bytes, mut cursor) = (Vec::new(), 0, None);
        for (name, found) in read {
            if let Some((size, descriptor)) = found {
                if bytes + size > max_bytes && cursor.is_some() {
                    more = true;
                    break;
                }
                bytes += size;
                let wanted =
                    artifact_type.is_none_or(|t| descriptor.artifact_type.as_deref() == Some(t));
                if wanted {
                    descriptors.push(descriptor);
                }
            }
            cursor = Some(name);
        }
        Ok(ReferrersPage {
            descriptors,
            next: cursor.filter(|_| more),
        })
    }

    /// One stored referrer: its name, and its descriptor with its size, unless it is gone or
    /// unreadable.
    async fn referrer(
        &self,
        prefix: &marina_store::Key,
        name: String,
    ) -> Result<(String, Option<(usize, Descriptor)>)> {
        let key = marina_store::Key::new(format!("{prefix}{name}")).expect("listed key is valid");
        let found = match self.store.get(&key).await {
            Ok(raw) => serde_json::from_slice(&raw).ok().map(|d| (raw.len(), d)),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        Ok((name, found))
    }

    pub(crate) async fn add_referrer(
        &self,
        repo: &RepoName,
        subject: &Digest,
        descriptor: &Descriptor,
    ) -> Result<()> {
        let json = serde_json::to_vec(descriptor).expect("descriptor serializes");
        let key = keys::referrer(repo, subject, &descriptor.digest);
        self.store.put(&key, Bytes::from(json)).await?;
        Ok(())
    }
}
