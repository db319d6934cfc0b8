//! Sorted listings for the filesystem backend. A folder is walked once, on its first listing;
//! after that its sorted key set is kept in memory and updated by this process's own writes
//! (the root's lock makes it the only writer), so a page costs O(page).
//!
//! The sets are bounded in bytes: the least recently listed go first, and a folder too large
//! for the budget is walked for each listing instead of kept. A walk runs without the lock, so
//! writes never wait for one; the writes that land while it runs are logged and replayed onto
//! its result before it is kept.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::{Error, Key, Result};

/// The bytes the kept listings may take, counting each key's length plus a fixed overhead.
pub(super) const DEFAULT_BUDGET: usize = 64 * 1024 * 1024;

/// What one kept key costs beyond its bytes (the tree node's share, the `String`).
const PER_KEY: usize = 48;

#[derive(Debug)]
pub(super) struct Listings {
    inner: Mutex<Cache>,
    budget: usize,
}

impl Default for Listings {
    fn default() -> Self {
        Self::with_budget(DEFAULT_BUDGET)
    }
}

#[derive(Debug, Default)]
struct Cache {
    sets: HashMap<String, Kept>,
    /// Least recently listed first.
    order: VecDeque<String>,
    bytes: usize,
    /// Walks under way: their prefix and the writes under it since they began.
    walks: Vec<Walk>,
    next_walk: u64,
}

#[derive(Debug, Default)]
struct Kept {
    keys: BTreeSet<String>,
    bytes: usize,
}

#[derive(Debug)]
struct Walk {
    id: u64,
    prefix: String,
    changes: Vec<Change>,
}

/// A write under a listed prefix, relative to it.
#[derive(Debug, Clone)]
enum Change {
    Inserted(String),
    Removed(String),
    RemovedUnder(String),
}

impl Listings {
    /// Listings kept within `budget` bytes.
    pub(super) fn with_budget(budget: usize) -> Self {
        Self {
            inner: Mutex::default(),
            budget,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A page of the keys under `prefix` (stored in folder `dir`), after `start_after`.
    pub(super) async fn page(
        &self,
        prefix: &Key,
        dir: PathBuf,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        if let Some(page) = self.lock().page(prefix.as_str(), start_after, limit) {
            return Ok(page);
        }
        let id = self.lock().begin_walk(prefix.as_str());
        let walked = tokio::task::spawn_blocking(move || walk(&dir)).await;
        let mut cache = self.lock();
        let changes = cache.end_walk(id);
        let mut keys = walked
            .map_err(|e| Error::io(prefix, std::io::Error::other(e.to_string())))?
            .map_err(|e| Error::io(prefix, e))?;
        for change in changes {
            change.apply(&mut keys);
        }
        let page = page_of(&keys, start_after, limit);
        cache.remember(prefix.as_str().to_owned(), keys, self.budget);
        Ok(page)
    }

    /// Records a key that now exists.
    pub(super) async fn inserted(&self, key: &Key) {
        self.lock()
            .record(key.as_str(), |rest| Change::Inserted(rest.to_owned()));
    }

    /// Records a key that no longer exists.
    pub(super) async fn removed(&self, key: &Key) {
        self.lock()
            .record(key.as_str(), |rest| Change::Removed(rest.to_owned()));
    }

    /// Records that every key under `prefix` is gone.
    pub(super) async fn removed_prefix(&self, prefix: &Key) {
        let gone = prefix.as_str();
        let mut cache = self.lock();
        let listed: Vec<String> = cache.sets.keys().cloned().collect();
        for prefix in listed {
            cache.change(&prefix, &removal_under(&prefix, gone));
        }
        for walk in &mut cache.walks {
            let change = removal_under(&walk.prefix, gone);
            walk.changes.push(change);
        }
    }
}

/// The removal of everything under `gone`, as seen from the listed `prefix`.
fn removal_under(prefix: &str, gone: &str) -> Change {
    if prefix.starts_with(gone) {
        Change::RemovedUnder(String::new())
    } else {
        let rest = gone.strip_prefix(prefix).unwrap_or("\u{10FFFF}");
        Change::RemovedUnder(rest.to_owned())
    }
}

impl Change {
    fn apply(&self, keys: &mut BTreeSet<String>) -> isize {
        let cost = |k: &str| isize::try_from(k.len() + PER_KEY).unwrap_or(isize::MAX);
        match self {
            Self::Inserted(k) if keys.insert(k.clone()) => cost(k),
            Self::Removed(k) if keys.remove(k) => -cost(k),
            Self::RemovedUnder(rest) => {
                let gone: Vec<String> = keys
                    .iter()
                    .filter(|k| k.starts_with(rest.as_str()))
                    .cloned()
                    .collect();
                gone.iter()
                    .map(|k| {
                        keys.remove(k);
                        -cost(k)
                    })
                    .sum()
            }
            _ => 0,
        }
    }
}

impl Cache {
    /// A page from a kept set, marking it recently used; `None` when it is not kept.
    fn page(
        &mut self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Option<Vec<String>> {
        let page = page_of(&self.sets.get(prefix)?.keys, start_after, limit);
        if let Some(at) = self.order.iter().position(|p| p == prefix) {
            let used = self.order.remove(at).expect("position is in range");
            self.order.push_back(used);
        }
        Some(page)
    }

    fn begin_walk(&mut self, prefix: &str) -> u64 {
        self.next_walk += 1;
        let id = self.next_walk;
        let prefix = prefix.to_owned();
        self.walks.push(Walk {
            id,
            prefix,
            changes: Vec::new(),
        });
        id
    }

    fn end_walk(&mut self, id: u64) -> Vec<Change> {
        let at = self
            .walks
            .iter()
            .position(|w| w.id == id)
            .expect("a walk ends once");
        self.walks.swap_remove(at).changes
    }

    /// Applies a write to every kept set and every walk whose prefix holds `key`.
    fn record(&mut self, key: &str, change: impl Fn(&str) -> Change) {
        for (prefix, rest) in splits(key) {
            if self.sets.contains_key(prefix) {
                self.change(prefix, &change(rest));
            }
        }
        for walk in &mut self.walks {
            if let Some(rest) = key.strip_prefix(walk.prefix.as_str()) {
                walk.changes.push(change(rest));
            }
        }
    }

    fn change(&mut self, prefix: &str, change: &Change) {
        if let Some(kept) = self.sets.get_mut(prefix) {
            let delta = change.apply(&mut kept.keys);
            kept.bytes = kept.bytes.saturating_add_signed(delta);
            self.bytes = self.bytes.saturating_add_signed(delta);
        }
    }

    /// Keeps a walked set, forgetting the least recently listed ones to stay within `budget`;
    /// a set larger than the whole budget is not kept.
    fn remember(&mut self, prefix: String, keys: BTreeSet<String>, budget: usize) {
        let bytes = keys.iter().map(|k| k.len() + PER_KEY).sum::<usize>();
        if bytes > budget || self.sets.contains_key(&prefix) {
            return;
        }
        while self.bytes + bytes > budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.sets.remove(&old) {
                self.bytes -= gone.bytes;
            }
        }
        self.order.push_back(prefix.clone());
        self.bytes += bytes;
        self.sets.insert(prefix, Kept { keys, bytes });
    }
}

fn page_of(keys: &BTreeSet<String>, start_after: Option<&str>, limit: usize) -> Vec<String> {
    let from = start_after.map_or(Bound::Unbounded, Bound::Excluded);
    keys.range::<str, _>((from, Bound::Unbounded))
        .take(limit)
        .cloned()
        .collect()
}

/// Every way to cut a key into a folder prefix (ending in `/`) and the rest.
fn splits(key: &str) -> impl Iterator<Item = (&str, &str)> {
    key.match_indices('/')
        .map(move |(i, _)| key.split_at(i + 1))
}

/// All file paths under `dir`, relative to it, `/`-separated. A missing folder lists nothing.
fn walk(dir: &Path) -> std::io::Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = format!("{rel}{name}");
            if entry.file_type()?.is_dir() {
                stack.push((entry.path(), format!("{child}/")));
            } else {
                found.insert(child);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    fn touch(root: &Path, rel: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }

    #[tokio::test]
    async fn kept_listings_stay_within_their_byte_budget() {
        let dir = tempfile::tempdir().unwrap();
        for folder in ["a", "b", "c"] {
            for i in 0..10 {
                touch(dir.path(), &format!("{folder}/{i:04}"));
            }
        }
        // Room for two folders of ten 4-byte keys, not three.
        let listings = Listings::with_budget(2 * 10 * (4 + PER_KEY));
        for folder in ["a", "b", "c"] {
            let prefix = key(&format!("{folder}/"));
            let page = listings.page(&prefix, dir.path().join(folder), None, 100);
            assert_eq!(page.await.unwrap().len(), 10);
        }
        let cache = listings.lock();
        assert!(
            cache.bytes <= 2 * 10 * (4 + PER_KEY),
            "{} bytes kept",
            cache.bytes
        );
        assert!(
            !cache.sets.contains_key("a/"),
            "the least recently listed went first"
        );
        assert!(cache.sets.contains_key("c/"));
    }

    #[tokio::test]
    async fn a_folder_larger_than_the_budget_is_listed_but_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..10 {
            touch(dir.path(), &format!("big/{i:04}"));
        }
        let listings = Listings::with_budget(5 * (4 + PER_KEY));
        let prefix = key("big/");
        let page = listings.page(&prefix, dir.path().join("big"), Some("0004"), 3);
        assert_eq!(page.await.unwrap(), ["0005", "0006", "0007"]);
        assert!(listings.lock().sets.is_empty());
    }

    #[tokio::test]
    async fn writes_during_a_walk_are_replayed_onto_its_result() {
        let listings = Listings::default();
        let id = listings.lock().begin_walk("r/");
        listings.inserted(&key("r/new")).await;
        listings.removed(&key("r/old")).await;
        listings.removed_prefix(&key("r/gone/")).await;
        let mut walked: BTreeSet<String> = ["old", "kept", "gone/x"].map(String::from).into();
        for change in listings.lock().end_walk(id) {
            change.apply(&mut walked);
        }
        assert_eq!(walked.into_iter().collect::<Vec<_>>(), ["kept", "new"]);
    }
}
