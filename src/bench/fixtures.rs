//! What the workloads need in place before the clock starts, on one registry: a tagged image, a
//! small blob, a big blob, a repository with N tags, N repositories. Each is made once, when
//! first needed, and reused by later rounds. Repositories live under the run's own root
//! (`bench-1a2b3c4d/...`), so runs never collide.

use std::future::Future;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};

use super::client::RegistryClient;
use super::data::{Blob, Random};
use super::progress::{Progress, Unit};

/// Size of the small blobs: image layers, `blob-get-small`, `small-push`.
pub(crate) const SMALL_BLOB: u64 = 4096;

/// Requests in flight while setting up tags and repositories.
const SETUP_IN_FLIGHT: usize = 16;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const IMAGE_CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

/// A blob the registry holds, and where.
#[derive(Debug, Clone)]
pub(crate) struct StoredBlob {
    pub(crate) repo: String,
    pub(crate) blob: Blob,
    pub(crate) digest: String,
}

/// A repository whose one manifest carries many tags.
#[derive(Debug)]
pub(crate) struct TaggedRepo {
    pub(crate) repo: String,
    manifest: Bytes,
    pub(crate) tags: Vec<String>,
}

/// One registry under test and what has been set up on it.
#[derive(Debug)]
pub(crate) struct Fixtures {
    pub(crate) client: RegistryClient,
    root: String,
    random: Random,
    big_blob: Option<StoredBlob>,
    small_blob: Option<StoredBlob>,
    image_repo: Option<String>,
    tagged: Option<TaggedRepo>,
    catalog: Vec<String>,
}

impl Fixtures {
    /// Nothing set up yet; repositories will be named `<root>/...`.
    pub(crate) fn new(client: RegistryClient, root: &str, seed: u64) -> Self {
        Self {
            client,
            root: root.to_owned(),
            random: Random::new(seed),
            big_blob: None,
            small_blob: None,
            image_repo: None,
            tagged: None,
            catalog: Vec::new(),
        }
    }

    /// The repository named `<root>/<what>`.
    pub(crate) fn repo(&self, what: &str) -> String {
        format!("{}/{what}", self.root)
    }

    /// Fresh content of `size` bytes, unlike any other in this run.
    pub(crate) fn new_blob(&mut self, size: u64) -> Blob {
        Blob {
            seed: self.random.next_u64(),
            size,
        }
    }

    /// A seed for content the workloads make themselves.
    pub(crate) fn new_seed(&mut self) -> u64 {
        self.random.next_u64()
    }

    /// Remembers a big blob a push workload stored, for `pull-big`.
    pub(crate) fn remember_big_blob(&mut self, stored: StoredBlob) {
        self.big_blob = Some(stored);
    }

    /// A big blob of `size` bytes to pull: the last one pushed, or a new one.
    pub(crate) async fn big_blob(&mut self, size: u64, label: &str) -> anyhow::Result<StoredBlob> {
        if let Some(stored) = self.big_blob.clone().filter(|s| s.blob.size == size) {
            return Ok(stored);
        }
        let stored = self.stored_blob("pull-big", size);
        let progress = Progress::start(format!("setup {label}"), Unit::Bytes, Some(size));
        let body = stored.blob.body(0..size, progress.counter());
        self.client
            .push_blob(&stored.repo, &stored.digest, size, body)
            .await?;
        self.big_blob = Some(stored.clone());
        Ok(stored)
    }

    /// A 4 KiB blob to fetch.
    pub(crate) async fn small_blob(&mut self) -> anyhow::Result<StoredBlob> {
        if let Some(stored) = &self.small_blob {
            return Ok(stored.clone());
        }
        let stored = self.stored_blob("blob-get-small", SMALL_BLOB);
        self.client
            .push_small_blob(&stored.repo, stored.blob.bytes())
            .await?;
        self.small_blob = Some(stored.clone());
        Ok(stored)
    }

    /// A repository holding an image tagged `latest`.
    pub(crate) async fn image_repo(&mut self) -> anyhow::Result<String> {
        if let Some(repo) = &self.image_repo {
            return Ok(repo.clone());
        }
        let repo = self.repo("manifest-get");
        self.push_image(&repo, "latest").await?;
        self.image_repo = Some(repo.clone());
        Ok(repo)
    }

    /// A repository with `count` tags on one manifest. Counts must come in ascending order:
    /// the same repository grows.
    pub(crate) async fn tagged(
        &mut self,
        count: usize,
        label: &str,
    ) -> anyhow::Result<&TaggedRepo> {
        if self.tagged.is_none() {
            let repo = self.repo("tags-page");
            let manifest = self.push_image(&repo, "t0000000").await?;
            let tags = vec!["t0000000".to_owned()];
            self.tagged = Some(TaggedRepo {
                repo,
                manifest,
                tags,
            });
        }
        let tagged = self.tagged.as_mut().expect("set just above");
        let have = tagged.tags.len();
        let new_tags: Vec<String> = (have..count).map(|i| format!("t{i:07}")).collect();
        let progress = Progress::start(
            format!("setup {label}"),
            Unit::Items("tags"),
            Some(count.saturating_sub(have) as u64),
        );
        let pushes = new_tags.iter().map(|tag| {
            let manifest = tagged.manifest.clone();
            self.client
                .put_manifest(&tagged.repo, tag, OCI_MANIFEST, manifest)
        });
        in_flight(pushes, &progress).await?;
        tagged.tags.extend(new_tags);
        Ok(tagged)
    }

    /// At least `count` repositories, each made by pushing one tiny blob to it.
    pub(crate) async fn catalog(&mut self, count: usize, label: &str) -> anyhow::Result<&[String]> {
        let have = self.catalog.len();
        let names: Vec<String> = (have..count)
            .map(|i| self.repo(&format!("catalog/r{i:06}")))
            .collect();
        let tiny = Bytes::from_static(b"marina bench catalog entry\n");
        let progress = Progress::start(
            format!("setup {label}"),
            Unit::Items("repos"),
            Some(names.len() as u64),
        );
        let client = &self.client;
        let pushes = names.iter().map(|repo| {
            let tiny = tiny.clone();
            async move { client.push_small_blob(repo, tiny).await.map(drop) }
        });
        in_flight(pushes, &progress).await?;
        self.catalog.extend(names);
        Ok(&self.catalog)
    }

    /// A new blob's identity, stored under `<root>/<what>` (not pushed yet).
    fn stored_blob(&mut self, what: &str, size: u64) -> StoredBlob {
        let blob = self.new_blob(size);
        StoredBlob {
            repo: self.repo(what),
            digest: blob.digest(),
            blob,
        }
    }

    /// Pushes a config, a 4 KiB layer and an OCI manifest naming them, tagged `tag`; returns
    /// the manifest.
    async fn push_image(&mut self, repo: &str, tag: &str) -> anyhow::Result<Bytes> {
        let config = Bytes::from_static(IMAGE_CONFIG);
        let layer = self.new_blob(SMALL_BLOB).bytes();
        let config_digest = self.client.push_small_blob(repo, config.clone()).await?;
        let layer_digest = self.client.push_small_blob(repo, layer).await?;
        let manifest = Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{SMALL_BLOB}}}]}}"#,
            config.len()
        ));
        self.client
            .put_manifest(repo, tag, OCI_MANIFEST, manifest.clone())
            .await?;
        Ok(manifest)
    }
}

/// Runs `requests` with [`SETUP_IN_FLIGHT`] at a time, counting each done; stops at the first
/// error.
async fn in_flight<F>(requests: impl Iterator<Item = F>, progress: &Progress) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    futures_util::stream::iter(requests)
        .buffer_unordered(SETUP_IN_FLIGHT)
        .try_for_each(|()| {
            progress.add(1);
            std::future::ready(Ok(()))
        })
        .await
}
