//! Sorted listings for the filesystem backend. A folder is walked once, on its first listing;
//! after that its sorted key set is kept in memory and updated by this process's own writes
//! (the root's lock makes it the only writer), so a page costs O(page).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use tokio::sync::Mutex;

use crate::{Error, Key, Result};

/// How many listed prefixes are kept; the oldest is forgotten (and walked again if needed).
const MAX_PREFIXES: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct Listings {
    inner: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    sets: HashMap<String, BTreeSet<String>>,
    order: VecDeque<String>,
}

impl Listings {
    /// A page of the keys under `prefix` (stored in folder `dir`), after `start_after`.
    pub(super) async fn page(
        &self,
        prefix: &Key,
        dir: PathBuf,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let mut cache = self.inner.lock().await;
        if !cache.sets.contains_key(prefix.as_str()) {
            // Walk while holding the lock: a write that lands meanwhile updates the set after.
            let walked = tokio::task::spawn_blocking(move || walk(&dir))
                .await
                .map_err(|e| Error::io(prefix, std::io::Error::other(e.to_string())))?
                .map_err(|e| Error::io(prefix, e))?;
            cache.remember(prefix.as_str().to_owned(), walked);
        }
        let set = &cache.sets[prefix.as_str()];
        let from = start_after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(set
            .range::<str, _>((from, Bound::Unbounded))
            .take(limit)
            .cloned()
            .collect())
    }

    /// Records a key that now exists.
    pub(super) async fn inserted(&self, key: &Key) {
        let mut cache = self.inner.lock().await;
        for (prefix, rest) in splits(key.as_str()) {
            if let Some(set) = cache.sets.get_mut(prefix) {
                set.insert(rest.to_owned());
            }
        }
    }

    /// Records a key that no longer exists.
    pub(super) async fn removed(&self, key: &Key) {
        let mut cache = self.inner.lock().await;
        for (prefix, rest) in splits(key.as_str()) {
            if let Some(set) = cache.sets.get_mut(prefix) {
                set.remove(rest);
            }
        }
    }

    /// Records that every key under `prefix` is gone.
    pub(super) async fn removed_prefix(&self, prefix: &Key) {
        let gone = prefix.as_str();
        let mut cache = self.inner.lock().await;
        for (listed, set) in &mut cache.sets {
            if listed.starts_with(gone) {
                set.clear();
            } else if let Some(rest) = gone.strip_prefix(listed.as_str()) {
                set.retain(|k| !k.starts_with(rest));
            }
        }
    }
}

impl Cache {
    fn remember(&mut self, prefix: String, set: BTreeSet<String>) {
        if self.order.len() >= MAX_PREFIXES
            && let Some(old) = self.order.pop_front()
        {
            self.sets.remove(&old);
        }
        self.order.push_back(prefix.clone());
        self.sets.insert(prefix, set);
    }
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
