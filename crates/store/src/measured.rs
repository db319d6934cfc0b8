//! A [`Store`] that times every operation of the store it wraps and counts its failures, by
//! backend and operation. For reads, the time is until the bytes start to flow.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use metrics::{Counter, Histogram, Unit, counter, describe_counter, describe_histogram, histogram};

use crate::{Appended, ByteStream, Content, Error, InputStream, Key, Part, Result, Store};

/// Store operation durations, by backend and operation.
pub const OPERATION_DURATION: &str = "marina_store_operation_duration_seconds";
/// Store operations that failed, by backend and operation (a missing object, or a client's
/// body breaking off, is not the store failing).
pub const ERRORS: &str = "marina_store_errors_total";

/// Describes the metrics above to the recorder (once, at start).
pub fn describe() {
    describe_histogram!(
        OPERATION_DURATION,
        Unit::Seconds,
        "Time a store operation took (reads: until the bytes start), by backend and operation."
    );
    describe_counter!(
        ERRORS,
        "Store operations that failed (a missing object is an answer, not a failure), by \
         backend and operation."
    );
}

/// The operations measured, in the order of [`Measured`]'s handle arrays.
const OPERATIONS: [&str; 13] = [
    "get",
    "size",
    "read",
    "open",
    "put",
    "put_volatile",
    "delete",
    "delete_many",
    "delete_prefix",
    "list",
    "append",
    "read_staged",
    "promote",
];

/// `inner`, measured under the backend name `backend`. The metric handles are made once (so
/// after the recorder is installed), and an operation costs a clock read and an atomic add,
/// not a label lookup.
#[derive(Debug)]
pub struct Measured {
    inner: Arc<dyn Store>,
    durations: [Histogram; OPERATIONS.len()],
    errors: [Counter; OPERATIONS.len()],
}

impl Measured {
    /// Measures `inner`, naming it `backend` (`filesystem`, `s3`) in the labels.
    #[must_use]
    pub fn new(inner: Arc<dyn Store>, backend: &'static str) -> Self {
        let labels = |operation: &'static str| [("backend", backend), ("operation", operation)];
        Self {
            inner,
            durations: OPERATIONS.map(|op| histogram!(OPERATION_DURATION, &labels(op))),
            errors: OPERATIONS.map(|op| counter!(ERRORS, &labels(op))),
        }
    }

    /// Records how `operation` went, started at `started`, and passes its outcome on.
    fn record<T>(
        &self,
        operation: &'static str,
        started: Instant,
        outcome: Result<T>,
    ) -> Result<T> {
        let index = OPERATIONS
            .iter()
            .position(|op| *op == operation)
            .expect("every measured operation is in OPERATIONS");
        self.durations[index].record(started.elapsed().as_secs_f64());
        if matches!(&outcome, Err(e) if !matches!(e, Error::NotFound(_) | Error::Input(_))) {
            self.errors[index].increment(1);
        }
        outcome
    }
}

#[async_trait]
impl Store for Measured {
    async fn get(&self, key: &Key) -> Result<Bytes> {
        let started = Instant::now();
        self.record("get", started, self.inner.get(key).await)
    }

    async fn get_cold(&self, key: &Key) -> Result<Bytes> {
        let started = Instant::now();
        self.record("get", started, self.inner.get_cold(key).await)
    }

    async fn size(&self, key: &Key) -> Result<u64> {
        let started = Instant::now();
        self.record("size", started, self.inner.size(key).await)
    }

    async fn read(&self, key: &Key, range: Range<u64>) -> Result<ByteStream> {
        let started = Instant::now();
        self.record("read", started, self.inner.read(key, range).await)
    }

    async fn open(&self, key: &Key, range: Range<u64>) -> Result<Content> {
        let started = Instant::now();
        self.record("open", started, self.inner.open(key, range).await)
    }

    async fn put(&self, key: &Key, value: Bytes) -> Result<()> {
        let started = Instant::now();
        self.record("put", started, self.inner.put(key, value).await)
    }

    async fn put_volatile(&self, key: &Key, value: Bytes) -> Result<()> {
        let started = Instant::now();
        let outcome = self.inner.put_volatile(key, value).await;
        self.record("put_volatile", started, outcome)
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let started = Instant::now();
        self.record("delete", started, self.inner.delete(key).await)
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        let started = Instant::now();
        let outcome = self.inner.delete_many(keys).await;
        self.record("delete_many", started, outcome)
    }

    async fn delete_prefix(&self, prefix: &Key) -> Result<()> {
        let started = Instant::now();
        let outcome = self.inner.delete_prefix(prefix).await;
        self.record("delete_prefix", started, outcome)
    }

    async fn list(
        &self,
        prefix: &Key,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let started = Instant::now();
        let outcome = self.inner.list(prefix, start_after, limit).await;
        self.record("list", started, outcome)
    }

    async fn append(&self, key: &Key, offset: u64, input: InputStream) -> Result<Appended> {
        let started = Instant::now();
        let outcome = self.inner.append(key, offset, input).await;
        self.record("append", started, outcome)
    }

    fn volatile_epoch(&self) -> Option<&str> {
        self.inner.volatile_epoch()
    }

    fn writers(&self) -> Option<&crate::WriteBarrier> {
        self.inner.writers()
    }

    async fn read_staged(
        &self,
        staged: &Key,
        parts: &[Part],
        range: Range<u64>,
    ) -> Result<ByteStream> {
        let started = Instant::now();
        let outcome = self.inner.read_staged(staged, parts, range).await;
        self.record("read_staged", started, outcome)
    }

    async fn promote(&self, staged: &Key, parts: &[Part], length: u64, to: &Key) -> Result<()> {
        let started = Instant::now();
        let outcome = self.inner.promote(staged, parts, length, to).await;
        self.record("promote", started, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_measured_store_passes_the_conformance_suite() {
        let store = Measured::new(Arc::new(crate::memory::MemoryStore::default()), "memory");
        crate::testsuite::run(&store).await;
    }
}
