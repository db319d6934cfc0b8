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
        let lock = {
            let mut locks = self.locks.lock().expect("session lock map");
            if locks.len() >= PRUNE_AT {
                locks.retain(|_, weak| weak.strong_count() > 0);
            }
            match locks.get(id).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(AsyncMutex::new(()));
                    locks.insert(id.to_owned(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}
