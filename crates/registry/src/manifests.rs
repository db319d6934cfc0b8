//! Manifests: validate and store on `PUT` (linking tags and referrers), read by tag or digest,
//! and delete.

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use marina_oci::{Algorithm, Descriptor, Digest, Manifest, ManifestKind, Reference, RepoName, Tag};

use crate::{Error, Registry, Result, keys};

/// A manifest as stored: its digest, media type and untouched bytes.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// The manifest's digest.
    pub digest: Digest,
    /// The media type it was pushed with.
    pub media_type: String,
    /// The bytes exactly as pushed.
    pub body: Bytes,
}

/// What a manifest `PUT` stored.
#[derive(Debug, Clone)]
pub struct ManifestPut {
    /// The manifest's digest.
    pub digest: Digest,
    /// The subject it refers to, if any.
    pub subject: Option<Digest>,
    /// The tags now pointing at it.
    pub tags: Vec<Tag>,
}

/// Referenced blobs and manifests checked at once when a manifest is stored: a 4 MiB index may
/// name tens of thousands.
const CHECKS_IN_FLIGHT: usize = 32;

impl Registry {
    /// Validates and stores a manifest under `reference`, plus `extra_tags`.
    ///
    /// # Errors
    /// [`Error::ManifestTooLarge`], [`Error::ManifestInvalid`], [`Error::DigestMismatch`] for a
    /// `PUT` by digest that does not match, [`Error::ManifestBlobUnknown`] for a missing blob.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<ManifestPut> {
        let limit = self.config.max_manifest_bytes;
        if body.len() > limit {
            return Err(Error::ManifestTooLarge { limit });
        }
        let manifest = Manifest::parse(&body, content_type)?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = expected.algorithm().digest_of(&body);
                if actual != *expected {
                    return Err(Error::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => Algorithm::Sha256.digest_of(&body),
        };
        self.check_references(repo, &manifest).await?;
        self.put_if_absent(&keys::blob(&digest), body.clone())
            .await?;
        let media_type = Bytes::from(manifest.media_type.clone().into_bytes());
        // The same digest means the same bytes, so an existing link already says the right thing.
        self.put_if_absent(&keys::manifest_link(repo, &digest), media_type)
            .await?;
        if let Some(subject) = &manifest.subject {
            self.add_referrer(
                repo,
                &subject.digest,
                &manifest.referrer_descriptor(digest.clone(), body.len() as u64),
            )
            .await?;
        }
        let tags = tags_of(reference, extra_tags);
        for tag in &tags {
            self.set_tag(repo, tag, &digest).await?;
        }
        self.register_repo(repo).await?;
        Ok(ManifestPut {
            digest,
            subject: manifest.subject.map(|s| s.digest),
            tags,
        })
    }

    /// Reads a manifest by tag or digest.
    ///
    /// # Errors
    /// [`Error::ManifestUnknown`].
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest> {
        let digest = self.resolve(repo, reference).await?;
        let unknown = || Error::ManifestUnknown(reference.to_string());
        let media_type = match self.store.get(&keys::manifest_link(repo, &digest)).await {
            Err(e) if e.is_not_found() => return Err(unknown()),
            other => other?,
        };
        let body = match self.store.get(&keys::blob(&digest)).await {
            Err(e) if e.is_not_found() => return Err(unknown()),
            other => other?,
        };
        Ok(StoredManifest {
            digest,
            media_type: String::from_utf8_lossy(&media_type).into_owned(),
            body,
        })
    }

    /// Deletes a tag (only the tag), or a manifest by digest with the tags pointing at it and
    /// its entry in its subject's referrers.
    ///
    /// # Errors
    /// [`Error::DeleteDisabled`], [`Error::ManifestUnknown`].
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        self.ensure_deletes_enabled()?;
        let digest = self.resolve(repo, reference).await?;
        if let Reference::Tag(tag) = reference {
            self.store.delete(&keys::tag(repo, tag)).await?;
            return Ok(());
        }
        let stored = self.get_manifest(repo, reference).await?;
        if let Ok(manifest) = Manifest::parse(&stored.body, Some(&stored.media_type))
            && let Some(subject) = manifest.subject
        {
            self.store
                .delete(&keys::referrer(repo, &subject.digest, &digest))
                .await?;
        }
        self.store
            .delete(&keys::manifest_link(repo, &digest))
            .await?;
        self.untag(repo, &digest).await
    }

    /// The digest a reference names in the repository.
    async fn resolve(&self, repo: &RepoName, reference: &Reference) -> Result<Digest> {
        match reference {
            Reference::Digest(d) => Ok(d.clone()),
            Reference::Tag(tag) => {
                let unknown = || Error::ManifestUnknown(reference.to_string());
                let raw = match self.store.get(&keys::tag(repo, tag)).await {
                    Err(e) if e.is_not_found() => return Err(unknown()),
                    other => other?,
                };
                std::str::from_utf8(&raw)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(unknown)
            }
        }
    }

    /// Every blob (or, for an index, child manifest) the manifest needs must be in the repository.
    async fn check_references(&self, repo: &RepoName, manifest: &Manifest) -> Result<()> {
        let wanted: Vec<(&Descriptor, bool)> = match manifest.kind {
            ManifestKind::Image => manifest.required_blobs().map(|d| (d, true)).collect(),
            ManifestKind::Index => manifest.manifests.iter().map(|d| (d, false)).collect(),
        };
        let wanted = futures_util::stream::iter(wanted.into_iter().map(Ok));
        wanted
            .try_for_each_concurrent(CHECKS_IN_FLIGHT, |(descriptor, is_blob)| async move {
                let key = if is_blob {
                    keys::blob_link(repo, &descriptor.digest)
                } else {
                    keys::manifest_link(repo, &descriptor.digest)
                };
                if self.exists(&key).await? {
                    Ok(())
                } else {
                    Err(Error::ManifestBlobUnknown(descriptor.digest.clone()))
                }
            })
            .await
    }
}

fn tags_of(reference: &Reference, extra: &[Tag]) -> Vec<Tag> {
    let mut tags: Vec<Tag> = match reference {
        Reference::Tag(t) => vec![t.clone()],
        Reference::Digest(_) => Vec::new(),
    };
    for tag in extra {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    tags
}
