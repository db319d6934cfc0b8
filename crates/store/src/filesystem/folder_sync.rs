//! Group commit for folder entries: writers that changed the same folder at about the same
//! time share one fsync of it instead of queueing one each.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The folders being synced, and the writers waiting on them.
#[derive(Debug, Default)]
pub(super) struct FolderSyncs {
    folders: Mutex<HashMap<PathBuf, Folder>>,
    finished: Condvar,
}

/// One folder's syncs, numbered as they start. Only one runs at a time.
#[derive(Debug, Default)]
struct Folder {
    started: u64,
    finished: u64,
    running: bool,
    writers: usize,
}

impl FolderSyncs {
    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, Folder>> {
        self.folders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the caller's earlier changes to `dir`'s entries durable. A sync that starts after
    /// this call covers them: the caller waits for the next one to start and finish, running
    /// it itself when no other writer is. (Called on blocking threads.)
    pub(super) fn sync(&self, dir: &Path) -> io::Result<()> {
        let mut folders = self.lock();
        let folder = folders.entry(dir.to_owned()).or_default();
        folder.writers += 1;
        let wanted = folder.started + 1;
        let result = loop {
            let folder = folders.get_mut(dir).expect("registered above");
            if folder.finished >= wanted {
                break Ok(());
            }
            if folder.running {
                folders = self
                    .finished
                    .wait(folders)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            folder.running = true;
            folder.started += 1;
            let number = folder.started;
            drop(folders);
            let synced = File::open(dir).and_then(|d| d.sync_all());
            folders = self.lock();
            let folder = folders.get_mut(dir).expect("registered above");
            folder.running = false;
            if synced.is_ok() {
                folder.finished = number;
            }
            self.finished.notify_all();
            if synced.is_err() {
                break synced;
            }
        };
        let folder = folders.get_mut(dir).expect("registered above");
        folder.writers -= 1;
        if folder.writers == 0 {
            folders.remove(dir);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writers_to_one_folder_all_return_synced() {
        let dir = tempfile::tempdir().unwrap();
        let syncs = FolderSyncs::default();
        std::thread::scope(|scope| {
            for i in 0..16 {
                let (syncs, dir) = (&syncs, dir.path());
                scope.spawn(move || {
                    std::fs::write(dir.join(i.to_string()), b"x").unwrap();
                    syncs.sync(dir).unwrap();
                });
            }
        });
        assert!(syncs.lock().is_empty(), "finished folders are forgotten");
    }

    #[test]
    fn a_failed_sync_reaches_every_writer_and_nobody_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let syncs = FolderSyncs::default();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                let (syncs, missing) = (&syncs, &missing);
                scope.spawn(move || assert!(syncs.sync(missing).is_err()));
            }
        });
        assert!(syncs.lock().is_empty());
    }
}
