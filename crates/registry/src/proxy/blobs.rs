//! Blobs under a proxy: from the cache when linked; else linked from content already stored
//! once the upstream confirms the repository has it; else downloaded, one download per blob
//! and repository however many clients ask, streamed to all of them as it arrives, and stored
//! once verified.

use std::sync::Arc;

use futures_util::TryStreamExt as _;
use marina_oci::{Digest, RepoName};
use marina_store::Content;

use super::download::Download;
use super::flights::Failure;
use super::{Route, count, upstream_error};
use crate::blobs::blob_reliance;
use crate::uploads::UploadId;
use crate::{BlobRead, ByteRange, Error, Registry, Result, keys};

impl Registry {
    /// The size of a proxied blob: the cache's, or the upstream's while it is not cached.
    pub(crate) async fn proxied_blob_size(
        &self,
        route: &Route,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<u64> {
        match self.local_blob_size(repo, digest).await {
            Err(Error::BlobUnknown(_)) => {}
            known => {
                count(&route.proxy, true);
                return known;
            }
        }
        if let Some(download) = self.proxying.download(&flight_key(repo, digest)) {
            return Ok(download.length);
        }
        count(&route.proxy, false);
        self.upstream_size(route, digest).await
    }

    /// Opens a proxied blob, whole or a range of it.
    pub(crate) async fn proxied_blob(
        &self,
        route: &Route,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobRead> {
        match self.local_read_blob(repo, digest, range).await {
            Err(Error::BlobUnknown(_)) => {}
            known => {
                count(&route.proxy, true);
                return known;
            }
        }
        count(&route.proxy, false);
        let running = self.proxying.download(&flight_key(repo, digest));
        if running.is_none() && self.exists(&keys::blob(digest)).await? {
            self.upstream_size(route, digest).await?;
            self.guarded(&blob_reliance(repo, digest), || {
                self.link_blob(repo, digest)
            })
            .await?;
            return self.local_read_blob(repo, digest, range).await;
        }
        let download = match running {
            Some(download) => download,
            None => self.download(route, repo, digest).await?,
        };
        let size = download.length;
        let range = match range {
            None => 0..size,
            Some(r) => r.resolve(size).ok_or(Error::RangeNotSatisfiable { size })?,
        };
        let content = Content::Stream(download.read(range.start, range.end));
        Ok(BlobRead {
            size,
            range,
            content,
        })
    }

    async fn upstream_size(&self, route: &Route, digest: &Digest) -> Result<u64> {
        let remote = &route.proxy.remote;
        remote
            .blob_size(&route.upstream, &digest.to_string())
            .await
            .map_err(|e| {
                crate::metrics::upstream_error(&route.proxy.prefix);
                upstream_error(e, || Error::BlobUnknown(digest.clone()))
            })
    }

    /// The download of the blob under way, or a new one.
    async fn download(
        &self,
        route: &Route,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Arc<Download>> {
        let key = flight_key(repo, digest);
        if let Some(download) = self.proxying.download(&key) {
            return Ok(download);
        }
        let started = self.proxying.blobs.join(&key, || async {
            match self.proxying.download(&key) {
                Some(download) => Ok(download),
                None => self
                    .start_download(route, repo, digest, &key)
                    .await
                    .map_err(Failure::of),
            }
        });
        started
            .await
            .map_err(|f| f.into_error(|| Error::BlobUnknown(digest.clone())))
    }

    /// Asks the upstream for the blob and starts writing it down; a task of its own finishes
    /// the download and stores the blob, whether or not the client that asked still listens.
    async fn start_download(
        &self,
        route: &Route,
        repo: &RepoName,
        digest: &Digest,
        key: &str,
    ) -> Result<Arc<Download>> {
        let prefix = route.proxy.prefix.clone();
        let blob = route
            .proxy
            .remote
            .blob(&route.upstream, &digest.to_string())
            .await
            .map_err(|e| {
                crate::metrics::upstream_error(&prefix);
                upstream_error(e, || Error::BlobUnknown(digest.clone()))
            })?;
        let length = blob.length.ok_or_else(|| {
            Error::UpstreamInvalid(format!("it sent blob {digest} without a Content-Length"))
        })?;
        let counted = {
            let prefix = prefix.clone();
            move |n| crate::metrics::upstream_bytes(&prefix, n)
        };
        let (download, fill) = Download::start(
            &self.config.scratch,
            digest.clone(),
            length,
            blob.body,
            counted,
        )
        .map_err(|e| {
            Error::Store(marina_store::Error::Unavailable(format!(
                "a temporary file for a download in {}: {e}",
                self.config.scratch.display()
            )))
        })?;
        self.proxying.started(key, Arc::clone(&download));
        let (registry, repo, digest, key) =
            (self.clone(), repo.clone(), digest.clone(), key.to_owned());
        let kept = Arc::clone(&download);
        tokio::spawn(async move {
            let outcome = match fill.await {
                Ok(()) => registry
                    .keep(&repo, &digest, &kept)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => {
                    crate::metrics::upstream_error(&prefix);
                    Err(e)
                }
            };
            if let Err(e) = outcome {
                tracing::warn!(proxy = %prefix, %repo, %digest, error = %e, "a proxied blob was not cached");
            }
            registry.proxying.finished(&key);
        });
        Ok(download)
    }

    /// Stores a verified download as the repository's blob.
    async fn keep(&self, repo: &RepoName, digest: &Digest, download: &Arc<Download>) -> Result<()> {
        let id = UploadId::random();
        let staged = keys::upload_data(repo, &id);
        let bytes = download
            .read(0, download.length)
            .map_err(std::io::Error::other);
        let committed = async {
            let appended = self.store.append(&staged, 0, Box::pin(bytes)).await?;
            let parts: Vec<_> = appended.part.into_iter().collect();
            self.commit_blob(repo, &staged, &parts, download.length, digest)
                .await
        };
        let outcome = committed.await;
        // Parts the promotion did not take (another replica stored the blob first) go too.
        self.store.delete_prefix(&keys::upload(repo, &id)).await?;
        outcome
    }
}

fn flight_key(repo: &RepoName, digest: &Digest) -> String {
    format!("{repo}@{digest}")
}
