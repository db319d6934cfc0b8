//! The S3 backend: objects in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage) through
//! the `object_store` crate. A staging object is a run of part objects `<key>/<offset>`, one
//! per append, so an upload can continue from any replica; `promote` copies a single part
//! server-side, or streams the parts into one multipart upload (any size, memory bounded).
//! Conditional writes are never used: Garage ignores them.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart,
};

use crate::{ByteStream, Error, InputStream, Key, Result, Store};

/// The largest object a single `CopyObject` may copy (S3's limit).
const MAX_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// The size of each part of a multipart upload (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight per multipart upload: memory per upload is about `(this + 1) * PART_SIZE`.
const PARTS_IN_FLIGHT: usize = 2;
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
}

/// A store in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    bucket: Arc<dyn ObjectStore>,
    prefix: String,
    description: String,
    copy_limit: u64,
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

    /// The part objects of a staging object, in offset order, with their offsets and sizes.
    async fn parts(&self, staged: &Key) -> Result<Vec<(Path, u64, u64)>> {
        let folder = self.path(staged);
        let listed: Vec<_> = self
            .bucket
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|e| fault(staged, e))?;
        let mut parts: Vec<(Path, u64, u64)> = listed
            .into_iter()
            .filter_map(|meta| {
                let offset = meta.location.filename()?.parse().ok()?;
                Some((meta.location, offset, meta.size))
            })
            .collect();
        parts.sort_by_key(|(_, offset, _)| *offset);
        Ok(parts)
    }

    /// A staging object read as one: its parts' bytes within `range`.
    async fn read_parts(&self, key: &Key, range: Range<u64>) -> Result<ByteStream> {
        let parts = self.parts(key).await?;
        if parts.is_empty() {
            return Err(Error::NotFound(key.to_string()));
        }
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
        Ok(Box::pin(stream))
    }

    /// Streams `input` into one new object, with a single PUT when it is small and a multipart
    /// upload otherwise. Returns its length; an empty input writes nothing.
    async fn write_object(&self, path: &Path, key: &Key, mut input: InputStream) -> Result<u64> {
        let mut first = BytesMut::new();
        while first.len() < PART_SIZE {
            match input.next().await {
                Some(chunk) => first.extend_from_slice(&chunk.map_err(Error::Input)?),
                None => {
                    let length = first.len() as u64;
                    if length > 0 {
                        let payload = PutPayload::from(first.freeze());
                        self.bucket
                            .put(path, payload)
                            .await
                            .map_err(|e| fault(key, e))?;
                    }
                    return Ok(length);
                }
            }
        }
        let upload = self
            .bucket
            .put_multipart(path)
            .await
            .map_err(|e| fault(key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut length = first.len() as u64;
        writer.put(first.freeze());
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
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|e| fault(key, e))?;
            writer.put(chunk);
        }
        writer.finish().await.map_err(|e| fault(key, e))?;
        Ok(length)
    }

    /// Concatenates part objects into one new object through a multipart upload.
    async fn concatenate(&self, parts: Vec<(Path, u64, u64)>, to: &Key) -> Result<()> {
        let bucket = Arc::clone(&self.bucket);
        let key = to.clone();
        let bytes = futures_util::stream::iter(parts)
            .then(move |(path, _, _)| {
                let bucket = Arc::clone(&bucket);
                let key = key.clone();
                async move {
                    let got = bucket
                        .get(&path)
                        .await
                        .map_err(|e| std::io::Error::other(fault(&key, e)))?;
                    Ok::<_, std::io::Error>(got.into_stream().map_err(std::io::Error::other))
                }
            })
            .try_flatten();
        match self.write_object(&self.path(to), to, Box::pin(bytes)).await {
            Err(Error::Input(e)) => Err(Error::Unavailable(format!(
                "reading staged parts for {to}: {e}"
            ))),
            other => other.map(|_| ()),
        }
    }
}

/// How many bytes staged parts hold from offset 0 on, when each starts where the one before it
/// ends; `None` when there is a gap or an overlap. A part PUT that was cut off on marina's side
/// can still complete at the server after a retry wrote the same offset, with other bytes.
fn tiled_length(parts: &[(Path, u64, u64)]) -> Option<u64> {
    parts.iter().try_fold(0, |end, (_, start, size)| {
        (*start == end).then_some(end + size)
    })
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
            Err(object_store::Error::NotFound { .. }) => {
                let parts = self.parts(key).await?;
                if parts.is_empty() {
                    return Err(Error::NotFound(key.to_string()));
                }
                Ok(parts.iter().map(|(_, _, size)| size).sum())
            }
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
            Err(object_store::Error::NotFound { .. }) => self.read_parts(key, range).await,
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

    async fn append(&self, key: &Key, offset: u64, input: InputStream) -> Result<u64> {
        let mut held = 0;
        for (path, start, size) in self.parts(key).await? {
            if start >= offset {
                self.bucket.delete(&path).await.map_err(|e| fault(key, e))?;
            } else {
                held = held.max(start + size);
            }
        }
        if held != offset {
            let message = format!("staging holds {held} bytes but the upload expects {offset}");
            return Err(Error::io(key, std::io::Error::other(message)));
        }
        let part = Path::from(format!("{}/{offset:0OFFSET_DIGITS$}", self.path(key)));
        Ok(offset + self.write_object(&part, key, input).await?)
    }

    async fn promote(&self, staged: &Key, length: u64, to: &Key) -> Result<()> {
        let mut parts = self.parts(staged).await?;
        // Parts from a request cut off after they were stored, which the caller never counted.
        parts.retain(|(_, start, _)| *start < length);
        match tiled_length(&parts) {
            Some(held) if held == length => {}
            Some(held) => {
                return Err(Error::staged_length(
                    staged,
                    &format!("{held} bytes"),
                    length,
                ));
            }
            None => {
                let held = "parts with a gap or an overlap between them";
                return Err(Error::staged_length(staged, held, length));
            }
        }
        match parts.as_slice() {
            [] => self.put(to, Bytes::new()).await?,
            [(path, _, size)] if *size <= self.copy_limit => {
                self.bucket
                    .copy(path, &self.path(to))
                    .await
                    .map_err(|e| fault(to, e))?;
            }
            _ => self.concatenate(parts.clone(), to).await?,
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

    fn parts(spans: &[(u64, u64)]) -> Vec<(Path, u64, u64)> {
        let path = |start: &u64| Path::from(format!("s/data/{start:0OFFSET_DIGITS$}"));
        spans.iter().map(|(s, n)| (path(s), *s, *n)).collect()
    }

    #[test]
    fn staged_parts_count_only_when_they_run_gap_free_from_zero() {
        assert_eq!(tiled_length(&parts(&[])), Some(0));
        assert_eq!(tiled_length(&parts(&[(0, 3), (3, 4)])), Some(7));
        // A late write of a shorter chunk over a retried longer one leaves a gap; a longer one
        // an overlap; neither may be committed.
        assert_eq!(tiled_length(&parts(&[(0, 3), (6, 4)])), None);
        assert_eq!(tiled_length(&parts(&[(0, 8), (6, 4)])), None);
        assert_eq!(tiled_length(&parts(&[(2, 5)])), None);
    }
}
