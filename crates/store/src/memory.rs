//! The in-memory backend, for tests: a sorted map behind a lock.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::{Appended, ByteStream, Error, InputStream, Key, Part, Result, Store};

/// Objects in a `BTreeMap`; lost when dropped.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Bytes>>,
}

impl MemoryStore {
    fn lookup(&self, key: &Key) -> Result<Bytes> {
        let objects = self.objects.lock().expect("memory store lock");
        objects
            .get(key.as_str())
            .cloned()
            .ok_or_else(|| Error::NotFound(key.to_string()))
    }

    fn insert(&self, key: &Key, value: Bytes) {
        self.objects
            .lock()
            .expect("memory store lock")
            .insert(key.to_string(), value);
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &Key) -> Result<Bytes> {
        self.lookup(key)
    }

    async fn size(&self, key: &Key) -> Result<u64> {
        Ok(self.lookup(key)?.len() as u64)
    }

    async fn read(&self, key: &Key, range: Range<u64>) -> Result<ByteStream> {
        let value = self.lookup(key)?;
        let part = value.slice(
            usize::try_from(range.start).unwrap_or(usize::MAX)
                ..usize::try_from(range.end).unwrap_or(usize::MAX),
        );
        Ok(Box::pin(futures_util::stream::once(
            async move { Ok(part) },
        )))
    }

    async fn put(&self, key: &Key, value: Bytes) -> Result<()> {
        self.insert(key, value);
        Ok(())
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.objects
            .lock()
            .expect("memory store lock")
            .remove(key.as_str());
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &Key) -> Result<()> {
        let p = prefix.as_str();
        self.objects
            .lock()
            .expect("memory store lock")
            .retain(|k, _| !k.starts_with(p));
        Ok(())
    }

    async fn list(
        &self,
        prefix: &Key,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let p = prefix.as_str();
        let from = start_after.map_or_else(|| p.to_owned(), |s| format!("{p}{s}"));
        let lower = if start_after.is_some() {
            Bound::Excluded(from)
        } else {
            Bound::Included(from)
        };
        let objects = self.objects.lock().expect("memory store lock");
        Ok(objects
            .range((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(p))
            .take(limit)
            .map(|(k, _)| k[p.len()..].to_owned())
            .collect())
    }

    async fn append(&self, key: &Key, offset: u64, mut input: InputStream) -> Result<Appended> {
        let existing = self.lookup(key).unwrap_or_default();
        let keep = usize::try_from(offset).unwrap_or(usize::MAX);
        if existing.len() < keep {
            return Err(Error::io(
                key,
                std::io::Error::other("staging object is shorter than the offset"),
            ));
        }
        let mut data = BytesMut::from(&existing[..keep]);
        while let Some(chunk) = input.next().await {
            data.extend_from_slice(&chunk.map_err(Error::Input)?);
        }
        let length = data.len() as u64;
        self.insert(key, data.freeze());
        Ok(Appended::whole(length))
    }

    async fn promote(&self, staged: &Key, _: &[Part], length: u64, to: &Key) -> Result<()> {
        let mut objects = self.objects.lock().expect("memory store lock");
        if length == 0 && !objects.contains_key(staged.as_str()) {
            // An empty upload never appended anything.
            objects.insert(to.to_string(), Bytes::new());
            return Ok(());
        }
        let held = objects
            .get(staged.as_str())
            .ok_or_else(|| Error::NotFound(staged.to_string()))?
            .len() as u64;
        if held < length {
            return Err(Error::staged_length(
                staged,
                &format!("{held} bytes"),
                length,
            ));
        }
        let mut value = objects.remove(staged.as_str()).expect("checked above");
        value.truncate(usize::try_from(length).expect("held in memory"));
        objects.insert(to.to_string(), value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn passes_the_store_conformance_suite() {
        crate::testsuite::run(&super::MemoryStore::default()).await;
    }
}
