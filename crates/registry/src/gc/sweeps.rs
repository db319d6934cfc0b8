//! Published sweeps, the one thing collectors and writers share (see `docs/gc.md`).
//!
//! A collector publishes the keys it means to delete under `gc/sweeps/<run>` before it looks
//! again and deletes, and withdraws the list when done. A write that makes content reachable
//! runs *guarded*: it lists the published sweeps before it works, waits out any that names a
//! key its answer relies on, and starts over if its work outlasted half a collector's settling
//! time. No locks, no conditional writes: the argument rests on the order of reads and writes
//! in the store and on two durations each side measures on its own monotonic clock.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use marina_store::{Key, Store};

use crate::{Error, Registry, Result, keys};

/// How long a collector waits between publishing a sweep and looking again, when other
/// processes write to the store. Every guarded write that started before the publication has
/// finished by then. (A store this process alone writes has a barrier instead: see
/// [`settle`].)
pub(crate) const SETTLE: Duration = Duration::from_secs(5);

/// The longest a guarded write may take from its listing of the sweeps to its last write; a
/// slower one starts over (half of [`SETTLE`], leaving room for clocks that run at different rates).
const WRITE_LIMIT: Duration = Duration::from_millis(2500);

/// A collector deletes nothing once its sweep has been published this long.
pub(crate) const SWEEP_LIMIT: Duration = Duration::from_secs(120);

/// A writer that has seen a sweep for this long knows it deletes no more (its collector died).
const SWEEP_EXPIRED: Duration = Duration::from_secs(135);

/// How long a write waits for a sweep of its keys to end before it answers 503.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Attempts of a guarded write before it gives up.
const ATTEMPTS: usize = 8;

/// Published sweeps listed per page.
const PAGE: usize = 1000;

/// One published sweep as a writer knows it.
#[derive(Debug)]
pub(crate) struct Sweep {
    id: String,
    doomed: HashSet<String>,
    first_seen: Instant,
}

impl Sweep {
    fn dooms_any<'a>(&self, relied: &'a [Key]) -> Option<&'a Key> {
        relied.iter().find(|k| self.doomed.contains(k.as_str()))
    }

    fn expired(&self) -> bool {
        self.first_seen.elapsed() > SWEEP_EXPIRED
    }
}

/// The sweeps this process has read, by id (their lists never change once published).
#[derive(Debug, Default)]
pub(crate) struct Sweeps {
    known: Mutex<HashMap<String, Arc<Sweep>>>,
}

impl Sweeps {
    /// The sweeps published now and not expired.
    async fn active(&self, store: &dyn Store) -> Result<Vec<Arc<Sweep>>> {
        let ids = store.list(&keys::sweeps(), None, PAGE).await?;
        let mut active = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(sweep) = self.read(store, id).await? {
                active.push(sweep);
            }
        }
        self.forget_all_but(&ids);
        Ok(active.into_iter().filter(|s| !s.expired()).collect())
    }

    async fn read(&self, store: &dyn Store, id: &str) -> Result<Option<Arc<Sweep>>> {
        if let Some(sweep) = self.lock().get(id) {
            return Ok(Some(Arc::clone(sweep)));
        }
        let Some(key) = keys::sweep(id) else {
            return Ok(None);
        };
        let raw = match store.get(&key).await {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let sweep = Arc::new(Sweep {
            id: id.to_owned(),
            doomed: SweepList::decode(&raw).keys.into_iter().collect(),
            first_seen: Instant::now(),
        });
        let mut known = self.lock();
        Ok(Some(Arc::clone(
            known.entry(id.to_owned()).or_insert(sweep),
        )))
    }

    fn forget_all_but(&self, listed: &[String]) {
        let mut known = self.lock();
        if known.len() > listed.len() {
            known.retain(|id, _| listed.contains(id));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Sweep>>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until `sweep` is withdrawn or expired, up to [`WAIT_LIMIT`].
    async fn wait_out(&self, store: &dyn Store, sweep: &Sweep, key: &Key) -> Result<()> {
        let waiting = Instant::now();
        loop {
            let listed = store.list(&keys::sweeps(), None, PAGE).await?;
            if sweep.expired() || !listed.contains(&sweep.id) {
                return Ok(());
            }
            if waiting.elapsed() > WAIT_LIMIT {
                return Err(Error::Collecting(key.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Registry {
    /// Runs a write that makes content reachable, guarded against published sweeps (see
    /// `docs/gc.md`): waits out any published sweep that names a key in `relied` (every key
    /// the answer relies on), runs `work`, and runs it again (it must be idempotent) if it took
    /// longer than a collector's settling time allows.
    ///
    /// # Errors
    /// Those of `work`, [`Error::Collecting`] when a sweep of its keys lasts too long.
    pub(crate) async fn guarded<T, F, Fut>(&self, relied: &[Key], mut work: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let store = &*self.store;
        for _ in 0..ATTEMPTS {
            // Held while listing and working, never while waiting for a sweep to end (the
            // collector takes it exclusively before it can finish).
            let writing = match store.writers() {
                Some(barrier) => Some(barrier.read().await),
                None => None,
            };
            let started = Instant::now();
            let sweeps = self.sweeps.active(store).await?;
            if let Some((sweep, key)) = sweeps
                .iter()
                .find_map(|s| s.dooms_any(relied).map(|k| (s, k)))
            {
                drop(writing);
                self.sweeps.wait_out(store, sweep, key).await?;
                continue;
            }
            let answer = work().await?;
            drop(writing);
            if started.elapsed() <= WRITE_LIMIT {
                return Ok(answer);
            }
        }
        Err(Error::Collecting("content this request relies on".into()))
    }
}

/// Waits until every guarded write that began before now has finished: through the store's
/// barrier when this process is its only writer, by waiting [`SETTLE`] otherwise.
pub(crate) async fn settle(store: &dyn Store) {
    match store.writers() {
        Some(barrier) => drop(barrier.write().await),
        None => tokio::time::sleep(SETTLE).await,
    }
}

/// A sweep as stored: when it was published (Unix milliseconds) and the keys it deletes.
#[derive(Debug, Default)]
pub(crate) struct SweepList {
    pub(crate) published_ms: u64,
    pub(crate) keys: Vec<String>,
}

impl SweepList {
    /// `published <ms>` on the first line, then one key a line.
    pub(crate) fn encode(&self) -> Bytes {
        let mut text = format!("published {}\n", self.published_ms);
        for key in &self.keys {
            text.push_str(key);
            text.push('\n');
        }
        Bytes::from(text)
    }

    /// Reads a stored list; a damaged one names no key and counts as published long ago.
    pub(crate) fn decode(raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        let mut lines = text.lines();
        let published_ms = lines
            .next()
            .and_then(|l| l.strip_prefix("published "))
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(0);
        Self {
            published_ms,
            keys: lines.filter(|l| !l.is_empty()).map(str::to_owned).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_list_round_trips() {
        let list = SweepList {
            published_ms: 42,
            keys: vec![
                "repos/a/_blobs/sha256/ab".into(),
                "blobs/sha256/ab/abcd".into(),
            ],
        };
        let read = SweepList::decode(&list.encode());
        assert_eq!(read.published_ms, 42);
        assert_eq!(read.keys, list.keys);
        assert_eq!(SweepList::decode(b"junk").published_ms, 0);
    }
}
