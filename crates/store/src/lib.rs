//! The storage layer: the [`Store`] trait (bytes under keys), its backends, and the
//! conformance suite every backend passes. It knows nothing of OCI or HTTP.

mod content;
mod error;
pub mod filesystem;
mod key;
pub mod measured;
pub mod memory;
pub mod s3;
mod staging;
pub mod testsuite;

use std::ops::Range;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

pub use content::{Content, FileSlice};
pub use error::{Error, Result};
pub use key::{Key, KeyError};
pub use staging::{Appended, Part};

/// Writers hold it shared; whoever must wait for the writes under way takes it exclusively.
pub type WriteBarrier = tokio::sync::RwLock<()>;

/// A stream of bytes read from a store.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// A stream of bytes to write, such as a request body. Its errors are the source's own.
pub type InputStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// An object store: whole objects under keys, plus append-only staging objects for uploads.
///
/// Every write is atomic and durable when it returns: a reader sees the old object or the new
/// one, never part of one, and a write that returned survives a crash. Volatile writes
/// ([`Store::put_volatile`], [`Store::append`]) are atomic too, and survive a crash of the
/// process but not always one of the machine.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Reads a whole object. Meant for small objects (manifests, links, session state).
    async fn get(&self, key: &Key) -> Result<Bytes>;

    /// Like [`Store::get`], but keeps what it reads out of any cache: for scans that read
    /// everything once (garbage collection, integrity checks), which would otherwise push out
    /// what requests read again and again.
    async fn get_cold(&self, key: &Key) -> Result<Bytes> {
        self.get(key).await
    }

    /// The size of an object in bytes.
    async fn size(&self, key: &Key) -> Result<u64>;

    /// Streams `range` of an object (already checked to lie within it).
    async fn read(&self, key: &Key, range: Range<u64>) -> Result<ByteStream>;

    /// Opens `range` of an object to send it on: as [`Content::File`] where a backend has the
    /// object as a local file worth handing to the kernel, otherwise as [`Store::read`]'s stream.
    async fn open(&self, key: &Key, range: Range<u64>) -> Result<Content> {
        Ok(Content::Stream(self.read(key, range).await?))
    }

    /// Stores a whole object, replacing any object under that key.
    async fn put(&self, key: &Key, value: Bytes) -> Result<()>;

    /// Like [`Store::put`], atomic too, but it need not survive a crash of the machine, only
    /// one of the process (see [`Store::volatile_epoch`]): for state whose loss only means a
    /// client starts over (an unfinished upload). Backends whose writes are always durable
    /// keep the default.
    async fn put_volatile(&self, key: &Key, value: Bytes) -> Result<()> {
        self.put(key, value).await
    }

    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, key: &Key) -> Result<()>;

    /// Deletes every object in `keys` (missing ones are fine), durably when it returns, as
    /// cheaply as the backend can: the filesystem syncs each folder once, S3 sends a thousand
    /// keys a request. A failure may leave some deleted.
    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        for key in keys {
            self.delete(key).await?;
        }
        Ok(())
    }

    /// Deletes every object whose key starts with `prefix` (a folder-like prefix). It is for
    /// cleaning up what nothing points at any more, so the removal need not survive a crash.
    async fn delete_prefix(&self, prefix: &Key) -> Result<()>;

    /// Up to `limit` keys under `prefix`, relative to it, in byte order, starting after
    /// `start_after` (relative too). Costs O(limit), not O(objects under prefix).
    async fn list(
        &self,
        prefix: &Key,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>>;

    /// Writes `input` into the staging object `key` from byte `offset` on, discarding anything
    /// stored past `offset` before. `offset` is 0 or a length an earlier `append` returned.
    /// Returns the new length and the part that holds the bytes once they are stored,
    /// volatile: they survive a crash of the process, and one of the machine once
    /// [`Store::promote`] made them durable. If it fails, the bytes up to `offset` are
    /// untouched. A staging object is read with [`Store::read_staged`].
    async fn append(&self, key: &Key, offset: u64, input: InputStream) -> Result<Appended>;

    /// Names the span in which volatile writes stay readable: it changes whenever they may
    /// have been lost. State built on volatile writes records it, and is void once it differs.
    /// `None`, the default, means volatile writes are as durable as any other.
    fn volatile_epoch(&self) -> Option<&str> {
        None
    }

    /// The barrier every writer of this store passes, when this process is its only writer
    /// (a locked folder): a writer holds it shared while it works, so taking it exclusively
    /// waits for every write under way. `None`, the default, means other processes write too.
    fn writers(&self) -> Option<&WriteBarrier> {
        None
    }

    /// Streams `range` of the staging object `staged` as made of `parts` (what the appends that
    /// built it returned, in order). Backends that keep one file per staging object read it.
    async fn read_staged(
        &self,
        staged: &Key,
        parts: &[Part],
        range: Range<u64>,
    ) -> Result<ByteStream> {
        let _ = parts;
        self.read(staged, range).await
    }

    /// Makes the first `length` bytes of the staging object `staged`, as made of `parts`,
    /// readable as the immutable object `to`, atomically and durably, and removes it from
    /// staging. Only the named parts count: bytes a write the caller never counted stored
    /// (a request cut off on marina's side, a racing write from another replica) are never
    /// committed. Bytes staged past `length` are dropped. Fails, changing nothing, when fewer
    /// are staged; [`Error::NotFound`] when the staging object or a named part is gone.
    async fn promote(&self, staged: &Key, parts: &[Part], length: u64, to: &Key) -> Result<()>;
}
