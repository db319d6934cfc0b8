//! A bounded cache of small objects (manifests, links, tags, small blobs) read by this process,
//! so hot reads skip the blocking-thread hand-off a file read costs. The root's lock makes this
//! process the only writer: every write forgets the key, so a cached value is never stale. A
//! write also bumps a generation, so a read that raced with it cannot insert the bytes it read
//! before the write.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

/// Objects up to this size are cached.
pub(super) const MAX_OBJECT: u64 = 64 * 1024;
/// The cache's budget, counting each entry's bytes plus its bookkeeping.
const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Bookkeeping counted per entry (key, map slot, queue slot).
const ENTRY_OVERHEAD: usize = 128;

#[derive(Debug, Default)]
pub(super) struct SmallObjects {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    objects: HashMap<String, Bytes>,
    /// Insertion order, for eviction; may hold keys since removed (skipped when popped).
    order: VecDeque<String>,
    bytes: usize,
    generation: u64,
}

impl SmallObjects {
    pub(super) fn get(&self, key: &str) -> Option<Bytes> {
        self.lock().objects.get(key).cloned()
    }

    /// The current generation, to pass to [`SmallObjects::fill`] after reading the file.
    pub(super) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Remembers what a read found, unless a write happened since `generation`.
    pub(super) fn fill(&self, key: &str, value: Bytes, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation && value.len() as u64 <= MAX_OBJECT {
            inner.insert(key, value);
        }
    }

    /// A write happened: whatever was cached for the key is gone. The cache fills from reads
    /// only, so bulk writes (100,000 tags) do not push out what is read.
    pub(super) fn wrote(&self, key: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.remove(key);
    }

    /// Every key under `prefix` is gone.
    pub(super) fn removed_prefix(&self, prefix: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        let gone: Vec<String> = inner
            .objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for key in gone {
            inner.remove(&key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn insert(&mut self, key: &str, value: Bytes) {
        self.remove(key);
        self.bytes += value.len() + ENTRY_OVERHEAD;
        self.objects.insert(key.to_owned(), value);
        self.order.push_back(key.to_owned());
        while self.bytes > MAX_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.remove(&oldest);
        }
        if self.order.len() > 2 * self.objects.len() + 1024 {
            self.order.retain(|k| self.objects.contains_key(k));
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.objects.remove(key) {
            self.bytes -= old.len() + ENTRY_OVERHEAD;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_raced_a_write_is_not_remembered() {
        let cache = SmallObjects::default();
        cache.fill("k", Bytes::from_static(b"old"), cache.generation());
        let before = cache.generation();
        cache.wrote("k");
        assert!(cache.get("k").is_none(), "a write forgets the key");
        cache.fill("k", Bytes::from_static(b"old"), before);
        assert!(
            cache.get("k").is_none(),
            "a read that began before the write is not remembered"
        );
        cache.fill("k", Bytes::from_static(b"new"), cache.generation());
        assert_eq!(cache.get("k").unwrap(), &b"new"[..]);
    }

    #[test]
    fn stays_within_its_budget_and_skips_large_objects() {
        let cache = SmallObjects::default();
        let value = Bytes::from(vec![0u8; 60 * 1024]);
        for i in 0..1000 {
            cache.fill(&format!("k{i}"), value.clone(), cache.generation());
        }
        let inner = cache.lock();
        assert!(inner.bytes <= MAX_BYTES);
        assert!(inner.objects.contains_key("k999") && !inner.objects.contains_key("k0"));
        drop(inner);
        cache.fill("big", Bytes::from(vec![0u8; 65 * 1024]), cache.generation());
        assert!(cache.get("big").is_none());
    }

    #[test]
    fn prefix_removal_forgets_everything_below() {
        let cache = SmallObjects::default();
        for key in ["a/1", "a/2", "b/1"] {
            cache.fill(key, Bytes::from_static(b"x"), cache.generation());
        }
        cache.removed_prefix("a/");
        assert!(cache.get("a/1").is_none() && cache.get("a/2").is_none());
        assert!(cache.get("b/1").is_some());
    }
}
