//! Background syncs of staging files: which are still running, and which failed.
//!
//! A staging file is synced in the background as it grows, on a descriptor of its own, so the
//! next chunk of an upload need not wait for the last one's sync. Linux reports a failed
//! writeback once, to the descriptors open when it failed, so a failure is recorded here, and
//! the promotion waits for the syncs still running before it looks.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
pub(super) struct Writebacks {
    state: Mutex<State>,
    /// Signalled whenever a sync ends.
    ended: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Syncs running, per staging file.
    running: HashMap<PathBuf, usize>,
    /// Staging files a sync failed on, with the error. Their bytes may not be on disk, and a
    /// later fsync through another descriptor need not say so, so they are refused until removed.
    failed: HashMap<PathBuf, String>,
}

/// A sync in progress; dropping it ends it, as failed unless [`Running::ended`] said otherwise.
pub(super) struct Running {
    writebacks: Arc<Writebacks>,
    path: PathBuf,
    outcome: Option<String>,
}

impl Running {
    /// Records how the sync ended.
    pub(super) fn ended(mut self, result: &io::Result<()>) {
        self.outcome = result.as_ref().err().map(ToString::to_string);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut state = self.writebacks.lock();
        if let Some(error) = self.outcome.take() {
            state.failed.insert(self.path.clone(), error);
        }
        if let Some(count) = state.running.get_mut(&self.path) {
            *count -= 1;
            if *count == 0 {
                state.running.remove(&self.path);
            }
        }
        self.writebacks.ended.notify_all();
    }
}

impl Writebacks {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A sync of `path` begins. Until it ends, [`Writebacks::settle`] on the path waits; if it
    /// is dropped without [`Running::ended`], it counts as failed.
    pub(super) fn start(self: &Arc<Self>, path: &Path) -> Running {
        *self.lock().running.entry(path.to_owned()).or_default() += 1;
        Running {
            writebacks: Arc::clone(self),
            path: path.to_owned(),
            outcome: Some("the sync stopped before it finished".to_owned()),
        }
    }

    /// Fails if a sync of `path` that has ended failed. Syncs still running are not waited for.
    pub(super) fn check(&self, path: &Path) -> io::Result<()> {
        failure(&self.lock(), path)
    }

    /// Waits for every sync of `path` still running, then fails if any sync of it failed.
    /// Call it holding the file's lock, so no writer starts another meanwhile.
    pub(super) fn settle(&self, path: &Path) -> io::Result<()> {
        let state = self.lock();
        let state = self
            .ended
            .wait_while(state, |s| s.running.contains_key(path))
            .unwrap_or_else(PoisonError::into_inner);
        failure(&state, path)
    }

    /// Forgets the failures of `path` and everything under it: they are gone.
    pub(super) fn forget(&self, path: &Path) {
        self.lock().failed.retain(|p, _| !p.starts_with(path));
    }
}

fn failure(state: &State, path: &Path) -> io::Result<()> {
    state.failed.get(path).map_or(Ok(()), |e| {
        Err(io::Error::other(format!(
            "an earlier sync of this upload's data failed: {e}"
        )))
    })
}
