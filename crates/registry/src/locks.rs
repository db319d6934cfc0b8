//! Per-session locks, so two requests on one upload session in this process take turns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Prune dead entries when the map grows past this.
const PRUNE_AT: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct SessionLocks {
    locks: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

impl SessionLocks {
    /// Waits for the session's lock; it is released when the guard drops.
    pub(crate) async fn lock(&self, id: &str) -> OwnedMutexGuard<()> {
        self.entry(id).lock_owned().await
    }

    /// The session's lock if no request holds it now.
    pub(crate) fn try_lock(&self, id: &str) -> Option<OwnedMutexGuard<()>> {
        self.entry(id).try_lock_owned().ok()
    }

    fn entry(&self, id: &str) -> Arc<AsyncMutex<()>> {
        let mut locks = self.locks.lock().expect("session lock map");
        if locks.len() >= PRUNE_AT {
            locks.retain(|_, weak| weak.strong_count() > 0);
        }
        if let Some(lock) = locks.get(id).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(AsyncMutex::new(()));
        locks.insert(id.to_owned(), Arc::downgrade(&lock));
        lock
    }
}
