//! Manifests under a proxy: by digest, fetched once and kept; by tag, trusted for the TTL,
//! then re-checked with a `HEAD` and fetched again only when the digest moved.

use bytes::Bytes;
use marina_oci::{Algorithm, Digest, Manifest, Reference, RepoName, Tag};

use super::flights::Failure;
use super::{OnUpstreamError, Route, count, matches, upstream_error};
use crate::{Error, Registry, Result, StoredManifest, keys};

impl Registry {
    /// A manifest of a proxied repository, from the cache or the upstream.
    pub(crate) async fn proxied_manifest(
        &self,
        route: &Route,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest> {
        let cached = match self.local_manifest(repo, reference).await {
            Ok(m) => Some(m),
            Err(Error::ManifestUnknown(_)) => None,
            Err(e) => return Err(e),
        };
        match (reference, cached) {
            (Reference::Digest(_), Some(m)) => self.served(route, repo, m).await,
            (Reference::Digest(_), None) => self.fetch_manifest(route, repo, reference).await,
            (Reference::Tag(tag), cached) => self.proxied_tag(route, repo, tag, cached).await,
        }
    }

    /// A tag: the cached answer while fresh, else whatever the upstream says now.
    async fn proxied_tag(
        &self,
        route: &Route,
        repo: &RepoName,
        tag: &Tag,
        cached: Option<StoredManifest>,
    ) -> Result<StoredManifest> {
        let checked = format!("{repo}:{tag}");
        let Some(cached) = cached else {
            let fetched = self
                .fetch_manifest(route, repo, &Reference::Tag(tag.clone()))
                .await?;
            self.proxying.confirm(checked);
            return Ok(fetched);
        };
        if self.proxying.fresh(&checked, route.proxy.tag_ttl) {
            return self.served(route, repo, cached).await;
        }
        let head = route
            .proxy
            .remote
            .manifest_head(&route.upstream, tag.as_str())
            .await;
        match head {
            Ok(head) if head.digest.as_deref() == Some(&cached.digest.to_string()) => {
                self.proxying.confirm(checked);
                self.served(route, repo, cached).await
            }
            Ok(_) => {
                let fetched = self
                    .fetch_manifest(route, repo, &Reference::Tag(tag.clone()))
                    .await?;
                self.proxying.confirm(checked);
                Ok(fetched)
            }
            Err(e) => {
                let stale = self.stale_or_fail(route, e, cached, tag)?;
                self.served(route, repo, stale).await
            }
        }
    }

    /// Answers with a cached manifest: counts the hit, and notes the pull for eviction.
    async fn served(
        &self,
        route: &Route,
        repo: &RepoName,
        cached: StoredManifest,
    ) -> Result<StoredManifest> {
        count(&route.proxy, true);
        self.touch(route, repo, &cached.digest).await?;
        Ok(cached)
    }

    /// The upstream failed re-checking a cached tag: serve it anyway, or fail, as configured.
    fn stale_or_fail(
        &self,
        route: &Route,
        e: marina_upstream::Error,
        cached: StoredManifest,
        tag: &Tag,
    ) -> Result<StoredManifest> {
        crate::metrics::upstream_error(&route.proxy.prefix);
        let unknown = || Error::ManifestUnknown(tag.to_string());
        match e {
            marina_upstream::Error::NotFound(_) => Err(unknown()),
            e if route.proxy.on_upstream_error == OnUpstreamError::ServeCached => {
                tracing::warn!(proxy = %route.proxy.prefix, %tag, error = %e,
                    "serving a cached tag past its TTL: the upstream failed");
                Ok(cached)
            }
            e => Err(upstream_error(e, unknown)),
        }
    }

    /// Fetches a manifest (one fetch however many ask at once), checks it, and stores it.
    async fn fetch_manifest(
        &self,
        route: &Route,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest> {
        count(&route.proxy, false);
        let key = format!("{repo}@{reference}");
        let fetched = self
            .proxying
            .manifests
            .join(&key, || async {
                self.fetch_and_store(route, repo, reference)
                    .await
                    .map_err(Failure::of)
            })
            .await;
        fetched.map_err(|f| f.into_error(|| Error::ManifestUnknown(reference.to_string())))
    }

    async fn fetch_and_store(
        &self,
        route: &Route,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest> {
        let unknown = || Error::ManifestUnknown(reference.to_string());
        let fetched = route
            .proxy
            .remote
            .manifest(
                &route.upstream,
                &reference.to_string(),
                self.config.max_manifest_bytes,
            )
            .await
            .map_err(|e| {
                crate::metrics::upstream_error(&route.proxy.prefix);
                upstream_error(e, unknown)
            })?;
        crate::metrics::upstream_bytes(&route.proxy.prefix, fetched.body.len());
        let digest = verified_digest(reference, fetched.digest.as_deref(), &fetched.body)?;
        let manifest = Manifest::parse(&fetched.body, fetched.media_type.as_deref())
            .map_err(|e| Error::UpstreamInvalid(format!("its manifest {reference}: {e}")))?;
        let tag = match reference {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        };
        self.store_proxied(repo, &manifest, &digest, &fetched.body, tag)
            .await?;
        Ok(StoredManifest {
            digest,
            media_type: manifest.media_type,
            body: fetched.body,
        })
    }

    /// Stores a fetched manifest like a pushed one, except that what it references need not be
    /// here yet (it is fetched when asked for).
    async fn store_proxied(
        &self,
        repo: &RepoName,
        manifest: &Manifest,
        digest: &Digest,
        body: &Bytes,
        tag: Option<&Tag>,
    ) -> Result<()> {
        let mut relied = vec![
            keys::blob(digest),
            keys::manifest_link(repo, digest),
            keys::catalog_entry(repo),
        ];
        relied.extend(tag.map(|t| keys::tag(repo, t)));
        self.guarded(&relied, || async {
            self.put_if_absent(&keys::blob(digest), body.clone())
                .await?;
            self.renew_link(&keys::manifest_link(repo, digest), &manifest.media_type)
                .await?;
            if let Some(subject) = &manifest.subject {
                let descriptor = manifest.referrer_descriptor(digest.clone(), body.len() as u64);
                self.add_referrer(repo, &subject.digest, &descriptor)
                    .await?;
            }
            if let Some(tag) = tag {
                self.set_tag(repo, tag, digest).await?;
            }
            self.register_repo(repo).await
        })
        .await
    }
}

/// The digest of fetched manifest bytes, checked against the digest asked for, or else the one
/// the upstream announced; a mismatch stores nothing.
fn verified_digest(reference: &Reference, announced: Option<&str>, body: &[u8]) -> Result<Digest> {
    let expected = match reference {
        Reference::Digest(d) => Some(d.clone()),
        Reference::Tag(_) => announced.and_then(|a| a.parse::<Digest>().ok()),
    };
    match expected {
        Some(expected) if !matches(&expected, body) => Err(Error::UpstreamInvalid(format!(
            "it sent a manifest for {reference} whose digest is {}, not {expected}; nothing \
             was cached",
            expected.algorithm().digest_of(body)
        ))),
        Some(expected) => Ok(expected),
        None => Ok(Algorithm::Sha256.digest_of(body)),
    }
}
