//! Blobs in a repository: size, ranged reads, commit from staging, links, mounts and deletes.

use std::ops::Range;

use marina_oci::{Digest, RepoName};
use marina_store::{Content, Key};

use crate::stamp::{self, Stamped};
use crate::{Error, Registry, Result, keys};

/// A byte range as a `Range` header asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive).
    FromTo(u64, u64),
    /// `bytes=a-`.
    From(u64),
    /// `bytes=-n`: the last n bytes.
    Last(u64),
}

impl ByteRange {
    /// The half-open range this selects in a blob of `size` bytes, the end clamped to the
    /// blob; `None` when nothing of it lies in the blob.
    #[must_use]
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        let (start, end) = match self {
            Self::FromTo(a, b) if a <= b => (a, b.saturating_add(1).min(size)),
            Self::FromTo(..) => return None,
            Self::From(a) => (a, size),
            Self::Last(n) if n > 0 => (size.saturating_sub(n), size),
            Self::Last(_) => return None,
        };
        (start < end).then_some(start..end)
    }
}

/// An open blob: its total size, the range being sent, and the bytes.
pub struct BlobRead {
    /// The blob's full size.
    pub size: u64,
    /// The part being sent (all of it without a range).
    pub range: Range<u64>,
    /// The bytes of `range`.
    pub content: Content,
}

impl Registry {
    /// The size of a blob in a repository. A link older than half the grace period is
    /// stamped afresh, so a client that saw the blob here may still reference it in a manifest
    /// for a whole grace period (what docker does after a `HEAD`).
    ///
    /// # Errors
    /// [`Error::BlobUnknown`] when the repository does not hold it.
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        match self.route(repo) {
            Some(route) => self.proxied_blob_size(&route, repo, digest).await,
            None => self.local_blob_size(repo, digest).await,
        }
    }

    /// The size of a blob this store holds for the repository (renewing an old link).
    pub(crate) async fn local_blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let unknown = || Error::BlobUnknown(digest.clone());
        let link = keys::blob_link(repo, digest);
        let Some(stamped) = self.read_link(&link).await? else {
            return Err(unknown());
        };
        if self.needs_renewal(&stamped) && !self.is_read_only() {
            let relied = blob_reliance(repo, digest);
            self.guarded(&relied, || async {
                if self.read_link(&link).await?.is_none() {
                    return Err(unknown());
                }
                self.link_blob(repo, digest).await
            })
            .await?;
        }
        match self.store.size(&keys::blob(digest)).await {
            Err(e) if e.is_not_found() => Err(unknown()),
            other => Ok(other?),
        }
    }

    /// Opens a blob for reading, whole or a range of it.
    ///
    /// # Errors
    /// [`Error::BlobUnknown`], or [`Error::RangeNotSatisfiable`] for a range outside the blob.
    pub async fn read_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobRead> {
        match self.route(repo) {
            Some(route) => self.proxied_blob(&route, repo, digest, range).await,
            None => self.local_read_blob(repo, digest, range).await,
        }
    }

    /// Opens a blob this store holds for the repository.
    pub(crate) async fn local_read_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobRead> {
        let size = self.local_blob_size(repo, digest).await?;
        let range = match range {
            None => 0..size,
            Some(r) => r.resolve(size).ok_or(Error::RangeNotSatisfiable { size })?,
        };
        let content = if range.is_empty() {
            Content::Stream(Box::pin(futures_util::stream::empty()))
        } else {
            self.store.open(&keys::blob(digest), range.clone()).await?
        };
        Ok(BlobRead {
            size,
            range,
            content,
        })
    }

    /// Removes a blob from a repository (its content stays for other repositories).
    ///
    /// # Errors
    /// [`Error::DeleteDisabled`], or [`Error::BlobUnknown`] when the repository lacks it.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        self.ensure_deletes_enabled()?;
        let link = keys::blob_link(repo, digest);
        if !self.exists(&link).await? {
            return Err(Error::BlobUnknown(digest.clone()));
        }
        self.store.delete(&link).await?;
        Ok(())
    }

    /// Mounts a blob into `repo` from `from`, or, when `from` is absent and the registry allows
    /// it, from wherever it is stored. Returns whether it was mounted.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<bool> {
        self.guarded(&blob_reliance(repo, digest), || async {
            let available = match from {
                Some(source) => self.exists(&keys::blob_link(source, digest)).await?,
                None if self.config.mount_without_from => true,
                None => false,
            } && self.exists(&keys::blob(digest)).await?;
            if available {
                self.link_blob(repo, digest).await?;
            }
            Ok(available)
        })
        .await
    }

    /// Moves verified staged content into `blobs/` (unless already there) and links it; a
    /// staged copy the content made needless is dropped.
    pub(crate) async fn commit_blob(
        &self,
        repo: &RepoName,
        staged: &Key,
        parts: &[marina_store::Part],
        length: u64,
        digest: &Digest,
    ) -> Result<()> {
        let content = keys::blob(digest);
        self.guarded(&blob_reliance(repo, digest), || async {
            if !self.exists(&content).await? {
                self.store.promote(staged, parts, length, &content).await?;
            }
            self.link_blob(repo, digest).await
        })
        .await?;
        self.store.delete(staged).await?;
        Ok(())
    }

    /// Records, stamped now, that `repo` holds the blob, and that the repository exists.
    pub(crate) async fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        self.store
            .put(&keys::blob_link(repo, digest), stamp::encode(""))
            .await?;
        self.register_repo(repo).await
    }

    /// A link or tag as stored, or `None` when missing.
    pub(crate) async fn read_link(&self, key: &Key) -> Result<Option<Stamped>> {
        stamped_if_found(self.store.get(key).await)
    }

    /// A link or tag as stored, read past the caches (for scans), or `None` when missing.
    pub(crate) async fn read_link_cold(&self, key: &Key) -> Result<Option<Stamped>> {
        stamped_if_found(self.store.get_cold(key).await)
    }

    /// Whether a stamp is old enough to renew: past half the grace period.
    pub(crate) fn needs_renewal(&self, stamped: &Stamped) -> bool {
        stamped.age(stamp::now_ms()) > self.config.gc_grace / 2
    }

    pub(crate) async fn exists(&self, key: &Key) -> Result<bool> {
        match self.store.size(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a key unless it exists: saves a durable write for the common repeat.
    pub(crate) async fn put_if_absent(&self, key: &Key, value: bytes::Bytes) -> Result<()> {
        if !self.exists(key).await? {
            self.store.put(key, value).await?;
        }
        Ok(())
    }
}

/// A read link or tag, decoded; `None` when it was not found.
fn stamped_if_found(read: marina_store::Result<bytes::Bytes>) -> Result<Option<Stamped>> {
    match read {
        Ok(raw) => Ok(Some(Stamped::decode(&raw))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The keys a blob in a repository needs: its content, its link, the repository's entry.
pub(crate) fn blob_reliance(repo: &RepoName, digest: &Digest) -> Vec<Key> {
    vec![
        keys::blob(digest),
        keys::blob_link(repo, digest),
        keys::catalog_entry(repo),
    ]
}

#[cfg(test)]
mod tests {
    use super::ByteRange;

    #[test]
    fn ranges_resolve_like_rfc_9110() {
        let size = 2048;
        assert_eq!(ByteRange::FromTo(500, 1499).resolve(size), Some(500..1500));
        assert_eq!(ByteRange::From(500).resolve(size), Some(500..2048));
        assert_eq!(ByteRange::Last(500).resolve(size), Some(1548..2048));
        assert_eq!(ByteRange::Last(5000).resolve(size), Some(0..2048));
        assert_eq!(
            ByteRange::FromTo(2000, 5000).resolve(size),
            Some(2000..2048)
        );
        assert_eq!(ByteRange::FromTo(500, 0).resolve(size), None);
        assert_eq!(ByteRange::FromTo(5000, 10000).resolve(size), None);
        assert_eq!(ByteRange::Last(0).resolve(size), None);
        assert_eq!(ByteRange::From(0).resolve(0), None);
    }
}
