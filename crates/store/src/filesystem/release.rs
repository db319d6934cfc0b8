//! Closing removed files off the request path. On a filesystem mounted with `discard`, the last
//! close of a removed or replaced file frees its blocks and waits for the disk to discard them,
//! behind whatever else the disk is writing: 7 ms per replaced session state here, on every
//! PATCH, before such states were swapped out instead (`write::swap`). Holding removed files
//! open across the removal, and closing them on a thread of their own, moves that wait off the
//! request. Files garbage collection throws away are moved aside (a rename costs a seventh of an
//! unlink here) and unlinked by a thread of their own, gently.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// Removing more entries than this from one folder holds only the first ones.
const HOLD_AT_MOST: usize = 8;
/// Batches waiting to be closed, at most. Past that, files are closed where they are released,
/// so a disk too slow to keep up costs waiting, as before, and never runs out of descriptors.
const QUEUED_AT_MOST: usize = 64;

/// Closes files on a thread of its own, and unlinks files moved aside on another.
#[derive(Debug)]
pub(super) struct Releaser {
    /// `None` when no thread could be started: files are then closed where they are released.
    closer: Option<mpsc::SyncSender<Vec<File>>>,
    /// `None` likewise: moved files are then unlinked where they are handed over.
    unlinker: Option<mpsc::SyncSender<Vec<PathBuf>>>,
}

impl Default for Releaser {
    fn default() -> Self {
        let (closer, closing) = mpsc::sync_channel::<Vec<File>>(QUEUED_AT_MOST);
        let closes = std::thread::Builder::new()
            .name("marina-release".into())
            .spawn(move || closing.into_iter().for_each(drop));
        let (unlinker, unlinking) = mpsc::sync_channel::<Vec<PathBuf>>(QUEUED_AT_MOST);
        let unlinks = std::thread::Builder::new()
            .name("marina-unlink".into())
            .spawn(move || unlink_gently(&unlinking));
        Self {
            closer: closes.ok().map(|_| closer),
            unlinker: unlinks.ok().map(|_| unlinker),
        }
    }
}

impl Releaser {
    /// Closes `held` on the releasing thread, or here when its queue is full (or it is gone).
    pub(super) fn release(&self, held: Vec<File>) {
        if let Some(sender) = &self.closer
            && !held.is_empty()
        {
            let _ = sender.try_send(held);
        }
    }

    /// Unlinks files moved aside (into the temporary folder, cleared at start should the
    /// process die first) on the unlinking thread, or here when its queue is full.
    pub(super) fn unlink(&self, moved: Vec<PathBuf>) {
        let refused = match &self.unlinker {
            _ if moved.is_empty() => return,
            Some(sender) => match sender.try_send(moved) {
                Ok(()) => return,
                Err(mpsc::TrySendError::Full(m) | mpsc::TrySendError::Disconnected(m)) => m,
            },
            None => moved,
        };
        for path in refused {
            let _ = fs::remove_file(path);
        }
    }
}

/// Unlinks batches as they come, at the lowest CPU priority, resting as long as it worked
/// after every [`UNLINK_STRETCH`] files: freeing blocks of thousands of files at once stalls
/// the disk for everyone, and nobody waits for this.
fn unlink_gently(batches: &mpsc::Receiver<Vec<PathBuf>>) {
    // On Linux, nice is per thread: this lowers only this one.
    let _ = rustix::process::setpriority_process(None, 19);
    for batch in batches {
        for stretch in batch.chunks(UNLINK_STRETCH) {
            let started = std::time::Instant::now();
            for path in stretch {
                let _ = fs::remove_file(path);
            }
            std::thread::sleep(started.elapsed());
        }
    }
}

/// Files unlinked between two rests.
const UNLINK_STRETCH: usize = 64;

/// Opens the file or folder at `path`, if any, so that removing it frees nothing yet.
pub(super) fn hold(path: &Path) -> Vec<File> {
    File::open(path).into_iter().collect()
}

/// Opens the folder at `path` and the entries directly in it (up to [`HOLD_AT_MOST`]).
pub(super) fn hold_folder(path: &Path) -> Vec<File> {
    let mut held = hold(path);
    if let Ok(entries) = fs::read_dir(path) {
        let inside = entries.flatten().take(HOLD_AT_MOST);
        held.extend(inside.filter_map(|e| File::open(e.path()).ok()));
    }
    held
}
