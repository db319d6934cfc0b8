//! Manifests: validate and store on `PUT` (linking tags and referrers), read by tag or digest,
//! and delete.

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use marina_oci::{Algorithm, Digest, Manifest, ManifestKind, Reference, RepoName, Tag};
use marina_store::Key;

use crate::{Error, Registry, Result, keys, stamp};

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
        let tags = tags_of(reference, extra_tags);
        self.check_mutable(repo, &tags, &digest).await?;
        let relied = reliance(repo, &manifest, &digest, &tags);
        let put = || self.store_manifest(repo, &manifest, &digest, &body, &tags);
        self.guarded(&relied, put).await?;
        Ok(ManifestPut {
            digest,
            subject: manifest.subject.map(|s| s.digest),
            tags,
        })
    }

    /// Writes a checked manifest's content, link, referrer entry and tags, renewing the links
    /// of what it references.
    async fn store_manifest(
        &self,
        repo: &RepoName,
        manifest: &Manifest,
        digest: &Digest,
        body: &Bytes,
        tags: &[Tag],
    ) -> Result<()> {
        self.check_references(repo, manifest).await?;
        self.put_if_absent(&keys::blob(digest), body.clone())
            .await?;
        let link = keys::manifest_link(repo, digest);
        self.renew_link(&link, &manifest.media_type).await?;
        if let Some(subject) = &manifest.subject {
            let descriptor = manifest.referrer_descriptor(digest.clone(), body.len() as u64);
            self.add_referrer(repo, &subject.digest, &descriptor)
                .await?;
        }
        for tag in tags {
            self.set_tag(repo, tag, digest).await?;
        }
        self.register_repo(repo).await
    }

    /// Writes a link or tag saying `payload`, stamped now, unless it says so already with a
    /// stamp younger than half the grace period.
    pub(crate) async fn renew_link(&self, key: &Key, payload: &str) -> Result<()> {
        match self.read_link(key).await? {
            Some(current) if current.payload == payload && !self.needs_renewal(&current) => Ok(()),
            _ => Ok(self.store.put(key, stamp::encode(payload)).await?),
        }
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
        match self.route(repo) {
            Some(route) => self.proxied_manifest(&route, repo, reference).await,
            None => self.local_manifest(repo, reference).await,
        }
    }

    /// Reads a manifest this store holds, by tag or digest.
    pub(crate) async fn local_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest> {
        let digest = self.resolve(repo, reference).await?;
        let unknown = || Error::ManifestUnknown(reference.to_string());
        let Some(link) = self.read_link(&keys::manifest_link(repo, &digest)).await? else {
            return Err(unknown());
        };
        let body = match self.store.get(&keys::blob(&digest)).await {
            Err(e) if e.is_not_found() => return Err(unknown()),
            other => other?,
        };
        Ok(StoredManifest {
            digest,
            media_type: link.payload,
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
            self.check_deletable(repo, std::slice::from_ref(tag))?;
            self.store.delete(&keys::tag(repo, tag)).await?;
            return Ok(());
        }
        let stored = self.local_manifest(repo, reference).await?;
        let tags = self.tags_pointing_at(repo, &digest).await?;
        self.check_deletable(repo, &tags)?;
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
        for tag in &tags {
            self.store.delete(&keys::tag(repo, tag)).await?;
        }
        Ok(())
    }

    /// Refuses to move an immutable tag that points elsewhere.
    async fn check_mutable(&self, repo: &RepoName, tags: &[Tag], digest: &Digest) -> Result<()> {
        let Some(policy) = self.retention_for(repo.as_str()) else {
            return Ok(());
        };
        for tag in tags.iter().filter(|t| policy.is_immutable(t.as_str())) {
            let current = self.read_link(&keys::tag(repo, tag)).await?;
            if current.is_some_and(|c| c.payload != digest.to_string()) {
                return Err(Error::TagImmutable {
                    tag: tag.to_string(),
                    rule: policy.pattern_text.clone(),
                });
            }
        }
        Ok(())
    }

    /// Refuses to delete immutable tags.
    fn check_deletable(&self, repo: &RepoName, tags: &[Tag]) -> Result<()> {
        let Some(policy) = self.retention_for(repo.as_str()) else {
            return Ok(());
        };
        match tags.iter().find(|t| policy.is_immutable(t.as_str())) {
            Some(tag) => Err(Error::TagImmutable {
                tag: tag.to_string(),
                rule: policy.pattern_text.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The digest a reference names in the repository.
    async fn resolve(&self, repo: &RepoName, reference: &Reference) -> Result<Digest> {
        match reference {
            Reference::Digest(d) => Ok(d.clone()),
            Reference::Tag(tag) => {
                let unknown = || Error::ManifestUnknown(reference.to_string());
                let Some(target) = self.read_link(&keys::tag(repo, tag)).await? else {
                    return Err(unknown());
                };
                target.payload.parse().map_err(|_| unknown())
            }
        }
    }

    /// Every blob (or, for an index, child manifest) the manifest needs must be in the
    /// repository. Renews links past half the grace period.
    async fn check_references(&self, repo: &RepoName, manifest: &Manifest) -> Result<()> {
        let wanted = futures_util::stream::iter(referenced(manifest).into_iter().map(Ok));
        wanted
            .try_for_each_concurrent(CHECKS_IN_FLIGHT, |(digest, is_blob)| async move {
                let key = if is_blob {
                    keys::blob_link(repo, &digest)
                } else {
                    keys::manifest_link(repo, &digest)
                };
                let Some(link) = self.read_link(&key).await? else {
                    return Err(Error::ManifestBlobUnknown(digest));
                };
                if self.needs_renewal(&link) {
                    self.store.put(&key, stamp::encode(&link.payload)).await?;
                }
                Ok(())
            })
            .await
    }
}

/// What a manifest needs in its repository: `(digest, is a blob)`, children being manifests.
pub(crate) fn referenced(manifest: &Manifest) -> Vec<(Digest, bool)> {
    match manifest.kind {
        ManifestKind::Image => manifest
            .required_blobs()
            .map(|d| (d.digest.clone(), true))
            .collect(),
        ManifestKind::Index => manifest
            .manifests
            .iter()
            .map(|d| (d.digest.clone(), false))
            .collect(),
    }
}

/// Every key a stored manifest relies on: its content, link, referrer entry, tags and
/// repository entry, and the link and content of everything it references.
fn reliance(repo: &RepoName, manifest: &Manifest, digest: &Digest, tags: &[Tag]) -> Vec<Key> {
    let mut keys = vec![
        keys::blob(digest),
        keys::manifest_link(repo, digest),
        keys::catalog_entry(repo),
    ];
    if let Some(subject) = &manifest.subject {
        keys.push(keys::referrer(repo, &subject.digest, digest));
    }
    keys.extend(tags.iter().map(|t| keys::tag(repo, t)));
    for (d, is_blob) in referenced(manifest) {
        let link = if is_blob {
            keys::blob_link(repo, &d)
        } else {
            keys::manifest_link(repo, &d)
        };
        keys.extend([link, keys::blob(&d)]);
    }
    keys
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
