//! Closing removed files off the request path. On a filesystem mounted with `discard`, the last
//! close of a removed or replaced file frees its blocks and waits for the disk to discard them,
//! behind whatever else the disk is writing: 7 ms per replaced session state here, on every
//! PATCH, before such states were swapped out instead (`write::swap`). Holding removed files
//! open across the removal, and closing them on a thread of their own, moves that wait off the
//! request.

use std::fs::{self, File};
use std::path::Path;
use std::sync::mpsc;

/// Removing more entries than this from one folder holds only the first ones.
const HOLD_AT_MOST: usize = 8;
/// Batches waiting to be closed, at most. Past that, files are closed where they are released,
/// so a disk too slow to keep up costs waiting, as before, and never runs out of descriptors.
const QUEUED_AT_MOST: usize = 64;

/// Closes the files it is given on a thread of its own.
#[derive(Debug)]
pub(super) struct Releaser {
    /// `None` when no thread could be started: files are then closed where they are released.
    sender: Option<mpsc::SyncSender<Vec<File>>>,
}

impl Default for Releaser {
    fn default() -> Self {
        let (sender, receiver) = mpsc::sync_channel::<Vec<File>>(QUEUED_AT_MOST);
        let started = std::thread::Builder::new()
            .name("marina-release".into())
            .spawn(move || receiver.into_iter().for_each(drop));
        Self {
            sender: started.ok().map(|_| sender),
        }
    }
}

impl Releaser {
    /// Closes `held` on the releasing thread, or here when its queue is full (or it is gone).
    pub(super) fn release(&self, held: Vec<File>) {
        if let Some(sender) = &self.sender
            && !held.is_empty()
        {
            let _ = sender.try_send(held);
        }
    }
}

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
