//! The S3 backend: objects in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage) through
//! the `object_store` crate. A staging object is a run of part objects `<key>/<offset>-<nonce>`,
//! one per append, so an upload can continue from any replica. Each append writes a part of its
//! own, never one another writer also writes, and `promote` assembles exactly the parts its
//! caller names: bytes from a racing replica or a late, cut-off write are never committed. It
//! copies a single part server-side, or streams the parts into one multipart upload (any size,
//! memory bounded). Conditional writes are never used: Garage ignores them.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart,
};

use crate::{Appended, ByteStream, Error, InputStream, Key, Part, Result, Store};

/// The largest object a single `CopyObject` may copy (S3's limit).
const MAX_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// The size of each part of a multipart upload (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight per multipart upload, where the memory budget has room: memory per upload is
/// about `(this + 1) * PART_SIZE`.
const PARTS_IN_FLIGHT: u32 = 2;
/// The memory all uploads' part buffers may take together, unless configured.
pub const DEFAULT_UPLOAD_MEMORY: u64 = 256 * 1024 * 1024;
/// How long a write waits for room in the memory budget before it is refused as busy.
const MEMORY_WAIT: Duration = Duration::from_secs(20);
/// Digits of a part's offset in its name, so names sort in offset order.
const OFFSET_DIGITS: usize = 20;

/// Where and how to reach the bucket.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    /// The bucket's name.
    pub bucket: String,
    /// The region (Garage: `garage`).
    pub region: String,
    /// A custom endpoint such as `http://127.0.0.1:3900` (MinIO, Garage, Ceph); none for AWS.
    pub endpoint: Option<String>,
    /// A key prefix inside the bucket, so several registries can share one.
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual-hosted style.
    pub force_path_style: bool,
    /// Accept any TLS certificate from the endpoint.
    pub insecure_skip_verify: bool,
    /// The largest staged part promoted with one server-side copy; larger ones are streamed
    /// into a multipart upload. `None` is S3's own limit, 5 GiB (tests lower it).
    pub copy_limit: Option<u64>,
    /// The memory the part buffers of all writes in flight may take together, in bytes;
    /// `None` is [`DEFAULT_UPLOAD_MEMORY`]. Each write needs one part (8 MiB) at least.
    pub upload_memory: Option<u64>,
}

/// A store in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    bucket: Arc<dyn ObjectStore>,
    prefix: String,
    description: String,
    copy_limit: u64,
    /// One permit per part buffer the memory budget allows.
    part_buffers: Arc<tokio::sync::Semaphore>,
}

impl S3Store {
    /// Builds the client. Credentials come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
    /// and `AWS_SESSION_TOKEN`, else from the default chain (web identity, ECS, instance
    /// metadata).
    ///
    /// # Errors
    /// When the settings cannot make a client.
    pub fn new(config: &S3Config) -> Result<Self> {
        Self::build(config, AmazonS3Builder::from_env())
    }

    /// Builds the client with explicit credentials (and nothing from the environment).
    ///
    /// # Errors
    /// When the settings cannot make a client.
    pub fn with_credentials(
        config: &S3Config,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<Self> {
        let builder = AmazonS3Builder::new()
            .with_access_key_id(access_key_id)
            .with_secret_access_key(secret_access_key);
        Self::build(config, builder)
    }

    fn build(config: &S3Config, builder: AmazonS3Builder) -> Result<Self> {
        let options = ClientOptions::new()
            .with_allow_invalid_certificates(config.insecure_skip_verify)
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(300))
            .with_pool_max_idle_per_host(64);
        let mut builder = builder
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(!config.force_path_style)
            .with_client_options(options);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let bucket = builder
            .build()
            .map_err(|e| Error::Unavailable(format!("S3 settings: {e}")))?;
        let prefix = config.prefix.trim_matches('/');
        let description = format!(
            "s3://{}/{prefix} at {}",
            config.bucket,
            config.endpoint.as_deref().unwrap_or("AWS")
        );
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Ok(Self {
            bucket: Arc::new(bucket),
            prefix,
            description,
            copy_limit: config.copy_limit.unwrap_or(MAX_COPY),
            part_buffers: Arc::new(tokio::sync::Semaphore::new(part_buffers(config))),
        })
    }

    /// Lists one key, proving the bucket is reachable and the credentials work.
    ///
    /// # Errors
    /// [`Error::Unavailable`] naming the bucket and the cause.
    pub async fn check(&self) -> Result<()> {
        let root = Path::from(self.prefix.as_str());
        let mut listing = self.bucket.list(Some(&root));
        match listing.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(Error::Unavailable(format!(
                "cannot reach {}: {e}",
                self.description
            ))),
        }
    }

    fn path(&self, key: &Key) -> Path {
        Path::from(format!("{}{key}", self.prefix))
    }

    /// The named parts of a staging object, in order, with their paths, offsets and sizes.
    /// Each must exist and start where the one before it ends; other part objects under the
    /// key (a racing replica's, a cut-off write's) are ignored.
    async fn named_parts(&self, staged: &Key, names: &[Part]) -> Result<Vec<(Path, u64, u64)>> {
        let folder = self.path(staged);
        let listed: Vec<_> = self
            .bucket
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|e| fault(staged, e))?;
        let sizes: std::collections::HashMap<String, (Path, u64)> = listed
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?.to_owned();
                Some((name, (meta.location, meta.size)))
            })
            .collect();
        let mut end = 0;
        let mut parts = Vec::with_capacity(names.len());
        for name in names {
            let Some((path, size)) = sizes.get(name) else {
                return Err(Error::NotFound(format!("{staged}/{name}")));
            };
            if part_offset(name) != Some(end) {
                let held = format!("part {name} where byte {end} was expected");
                return Err(Error::staged_length(staged, &held, end));
            }
            parts.push((path.clone(), end, *size));
            end += size;
        }
        Ok(parts)
    }

    /// The bytes of `parts` (from [`Self::named_parts`]) within `range`, as one stream.
    fn read_parts(&self, key: &Key, parts: Vec<(Path, u64, u64)>, range: Range<u64>) -> ByteStream {
        let bucket = Arc::clone(&self.bucket);
        let owned = key.clone();
        let pieces = parts.into_iter().filter_map(move |(path, offset, size)| {
            let start = range.start.max(offset);
            let end = range.end.min(offset + size);
            (start < end).then(|| (path, start - offset..end - offset))
        });
        let stream = futures_util::stream::iter(pieces)
            .then(move |(path, within)| {
                let bucket = Arc::clone(&bucket);
                let key = owned.clone();
                async move {
                    let options = GetOptions {
                        range: Some(within.into()),
                        ..Default::default()
                    };
                    let got = bucket
                        .get_opts(&path, options)
                        .await
                        .map_err(|e| fault(&key, e))?;
                    Ok::<_, Error>(got.into_stream().map_err(move |e| fault(&key, e)))
                }
            })
            .try_flatten();
        Box::pin(stream)
    }

    /// Streams `input` into one new object, with a single PUT when it is small and a multipart
    /// upload otherwise. Returns its length; an empty input writes nothing. Its buffers come
    /// out of the memory budget: one part's worth before it reads, more for parts in flight
    /// when there is room.
    async fn write_object(&self, path: &Path, key: &Key, mut input: InputStream) -> Result<u64> {
        let mut held = self.reserve_part(key).await?;
        // The chunks as they came, never copied into one growing buffer.
        let (mut first, mut length) = (Vec::new(), 0);
        while length < PART_SIZE as u64 {
            let Some(chunk) = input.next().await else {
                if length > 0 {
                    let payload: PutPayload = first.into_iter().collect();
                    self.bucket
                        .put(path, payload)
                        .await
                        .map_err(|e| fault(key, e))?;
                }
                return Ok(length);
            };
            let chunk: Bytes = chunk.map_err(Error::Input)?;
            length += chunk.len() as u64;
            first.push(chunk);
        }
        let in_flight = self.reserve_parts_in_flight(&mut held);
        let upload = self
            .bucket
            .put_multipart(path)
            .await
            .map_err(|e| fault(key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        for chunk in first {
            writer.put(chunk);
        }
        while let Some(chunk) = input.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(Error::Input(e));
                }
            };
            length += chunk.len() as u64;
            writer
                .wait_for_capacity(in_flight)
                .await
                .map_err(|e| fault(key, e))?;
            writer.put(chunk);
        }
        writer.finish().await.map_err(|e| fault(key, e))?;
        Ok(length)
    }

    /// Waits for one part buffer of the memory budget; refuses as busy after [`MEMORY_WAIT`].
    async fn reserve_part(&self, key: &Key) -> Result<tokio::sync::OwnedSemaphorePermit> {
        let permit = Arc::clone(&self.part_buffers).acquire_owned();
        match tokio::time::timeout(MEMORY_WAIT, permit).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Error::Busy(format!(
                "{key}: every upload buffer is in use; try again shortly"
            ))),
        }
    }

    /// Adds to `held` what room the budget has now for parts in flight (never waiting, so no
    /// write ever waits while holding buffers); returns how many parts may be in flight.
    fn reserve_parts_in_flight(&self, held: &mut tokio::sync::OwnedSemaphorePermit) -> usize {
        for extra in (1..=PARTS_IN_FLIGHT).rev() {
            if let Ok(more) = Arc::clone(&self.part_buffers).try_acquire_many_owned(extra) {
                held.merge(more);
                return extra as usize;
            }
        }
        0
    }

    /// Concatenates the first `length` bytes of part objects into one new object through a
    /// multipart upload.
    async fn concatenate(&self, parts: Vec<(Path, u64, u64)>, length: u64, to: &Key) -> Result<()> {
        let bytes = self
            .read_parts(to, parts, 0..length)
            .map_err(std::io::Error::other);
        match self.write_object(&self.path(to), to, Box::pin(bytes)).await {
            Err(Error::Input(e)) => Err(Error::Unavailable(format!(
                "reading staged parts for {to}: {e}"
            ))),
            other => other.map(|_| ()),
        }
    }
}

/// How many part buffers the configured memory budget holds (one at least).
fn part_buffers(config: &S3Config) -> usize {
    let budget = config.upload_memory.unwrap_or(DEFAULT_UPLOAD_MEMORY);
    usize::try_from(budget / PART_SIZE as u64)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// A fresh part name for an append at `offset`: the offset, so names sort in order, and 64
/// random bits, so no two writes ever share a part.
fn part_name(offset: u64) -> Part {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).expect("the OS random source works");
    format!("{offset:0OFFSET_DIGITS$}-{}", hex::encode(nonce))
}

/// The offset a part name starts with.
fn part_offset(name: &str) -> Option<u64> {
    let (offset, nonce) = name.split_once('-')?;
    let valid = offset.len() == OFFSET_DIGITS && nonce.len() == 16;
    valid.then(|| offset.parse().ok()).flatten()
}

/// Every backend failure but a missing object means the bucket is out of reach for now: 503.
fn fault(key: &Key, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound(key.to_string()),
        other => Error::Unavailable(format!("{key}: {other}")),
    }
}

#[async_trait]
impl Store for S3Store {
    async fn get(&self, key: &Key) -> Result<Bytes> {
        let got = self
            .bucket
            .get(&self.path(key))
            .await
            .map_err(|e| fault(key, e))?;
        got.bytes().await.map_err(|e| fault(key, e))
    }

    async fn size(&self, key: &Key) -> Result<u64> {
        match self.bucket.head(&self.path(key)).await {
            Ok(meta) => Ok(meta.size),
            Err(e) => Err(fault(key, e)),
        }
    }

    async fn read(&self, key: &Key, range: Range<u64>) -> Result<ByteStream> {
        let options = GetOptions {
            range: Some(range.clone().into()),
            ..Default::default()
        };
        match self.bucket.get_opts(&self.path(key), options).await {
            Ok(got) => {
                let owned = key.clone();
                Ok(Box::pin(
                    got.into_stream().map_err(move |e| fault(&owned, e)),
                ))
            }
            Err(e) => Err(fault(key, e)),
        }
    }

    async fn put(&self, key: &Key, value: Bytes) -> Result<()> {
        self.bucket
            .put(&self.path(key), PutPayload::from(value))
            .await
            .map_err(|e| fault(key, e))?;
        Ok(())
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        match self.bucket.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(fault(key, e)),
        }
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        let Some(first) = keys.first() else {
            return Ok(());
        };
        let paths: Vec<object_store::Result<Path>> =
            keys.iter().map(|k| Ok(self.path(k))).collect();
        let locations = futures_util::stream::iter(paths).boxed();
        let outcomes: Vec<object_store::Result<Path>> =
            self.bucket.delete_stream(locations).collect().await;
        for outcome in outcomes {
            match outcome {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(fault(first, e)),
            }
        }
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &Key) -> Result<()> {
        let folder = self.path(prefix);
        let locations = self
            .bucket
            .list(Some(&folder))
            .map_ok(|meta| meta.location)
            .boxed();
        let deleted: Vec<Path> = self
            .bucket
            .delete_stream(locations)
            .try_collect()
            .await
            .map_err(|e| fault(prefix, e))?;
        tracing::debug!(prefix = %prefix, deleted = deleted.len(), "deleted prefix");
        Ok(())
    }

    async fn list(
        &self,
        prefix: &Key,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let folder = self.path(prefix);
        let strip = format!("{folder}/");
        let listing = match start_after {
            Some(after) => self
                .bucket
                .list_with_offset(Some(&folder), &Path::from(format!("{strip}{after}"))),
            None => self.bucket.list(Some(&folder)),
        };
        let metas: Vec<_> = listing
            .take(limit)
            .try_collect()
            .await
            .map_err(|e| fault(prefix, e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| m.location.as_ref().strip_prefix(&strip).map(str::to_owned))
            .collect())
    }

    async fn append(&self, key: &Key, offset: u64, input: InputStream) -> Result<Appended> {
        let name = part_name(offset);
        let path = Path::from(format!("{}/{name}", self.path(key)));
        let written = self.write_object(&path, key, input).await?;
        Ok(Appended {
            length: offset + written,
            part: (written > 0).then_some(name),
        })
    }

    async fn read_staged(
        &self,
        staged: &Key,
        parts: &[Part],
        range: Range<u64>,
    ) -> Result<ByteStream> {
        let parts = self.named_parts(staged, parts).await?;
        Ok(self.read_parts(staged, parts, range))
    }

    async fn promote(&self, staged: &Key, parts: &[Part], length: u64, to: &Key) -> Result<()> {
        let mut parts = self.named_parts(staged, parts).await?;
        let held: u64 = parts.iter().map(|(_, _, size)| size).sum();
        if held < length {
            return Err(Error::staged_length(
                staged,
                &format!("{held} bytes"),
                length,
            ));
        }
        // The last part may hold bytes past `length` only when the caller counted fewer.
        parts.retain(|(_, start, _)| *start < length);
        match parts.as_slice() {
            [] => self.put(to, Bytes::new()).await?,
            [(path, _, size)] if *size == length && *size <= self.copy_limit => {
                self.bucket
                    .copy(path, &self.path(to))
                    .await
                    .map_err(|e| fault(to, e))?;
            }
            _ => self.concatenate(parts, length, to).await?,
        }
        self.delete_prefix(
            &Key::new(format!("{staged}/"))
                .map_err(|e| Error::io(staged, std::io::Error::other(e)))?,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_sort_by_offset_and_never_repeat() {
        let (a, b) = (part_name(5), part_name(5));
        assert_ne!(a, b);
        assert_eq!(part_offset(&a), Some(5));
        assert!(part_name(9) < part_name(10));
        for bad in ["5", "00000000000000000005", "x-0011223344556677", "5-00"] {
            assert_eq!(part_offset(bad), None, "{bad}");
        }
    }
}
