//! Referrers: one descriptor per manifest that names a subject, kept under that subject so a
//! listing costs O(its referrers).

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use marina_oci::{Descriptor, Digest, RepoName};

use crate::{Registry, Result, keys};

/// How many descriptors are read at once when listing.
const READ_AHEAD: usize = 16;

impl Registry {
    /// The referrers of `subject`, optionally only those of one artifact type.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let prefix = keys::referrers(repo, subject);
        let names = self.store.list(&prefix, None, usize::MAX).await?;
        let descriptors: Vec<Option<Descriptor>> = futures_util::stream::iter(names)
            .map(|name| {
                let prefix = prefix.clone();
                async move {
                    let key = marina_store::Key::new(format!("{prefix}{name}"))
                        .expect("listed key is valid");
                    match self.store.get(&key).await {
                        Ok(raw) => Ok(serde_json::from_slice::<Descriptor>(&raw).ok()),
                        Err(e) if e.is_not_found() => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .buffered(READ_AHEAD)
            .try_collect()
            .await?;
        Ok(descriptors
            .into_iter()
            .flatten()
            .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)))
            .collect())
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
