//! Closing removed files off the request path. On a filesystem mounted with `discard`, the last
//! close of a removed or replaced file frees its blocks and waits for the disk to discard them,
//! behind whatever else the disk is writing: 7 ms per replaced session state here, on every
//! PATCH, before such states were swapped out instead (`write::swap`). Holding removed files
//! open across the removal, and closing them on a thread of their own, moves that wait off the
//! request. Files garbage collection throws away are moved aside (a rename costs a seventh of an
//! unlink here) and unlinked on the same thread.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// Removing more entries than this from one folder holds only the first ones.
const HOLD_AT_MOST: usize = 8;
/// Batches waiting to be closed, at most. Past that, files are closed where they are released,
/// so a disk too slow to keep up costs waiting, as before, and never runs out of descriptors.
const QUEUED_AT_MOST: usize = 64;

/// What the releasing thread does.
#[derive(Debug)]
enum Work {
    /// Close these files.
    Close(Vec<File>),
    /// Unlink these files, moved aside into the temporary folder (cleared at start, should the
    /// process die first).
    Unlink(Vec<PathBuf>),
}

impl Work {
    fn run(self) {
        match self {
            Self::Close(files) => drop(files),
            Self::Unlink(paths) => {
                for path in paths {
                    let _ = fs::remove_file(path);
                }
            }
        }
    }
}

/// Closes and unlinks the files it is given on a thread of its own.
#[derive(Debug)]
pub(super) struct Releaser {
    /// `None` when no thread could be started: the work is then done where it is handed over.
    sender: Option<mpsc::SyncSender<Work>>,
}

impl Default for Releaser {
    fn default() -> Self {
        let (sender, receiver) = mpsc::sync_channel::<Work>(QUEUED_AT_MOST);
        let started = std::thread::Builder::new()
            .name("marina-release".into())
            .spawn(move || receiver.into_iter().for_each(Work::run));
        Self {
            sender: started.ok().map(|_| sender),
        }
    }
}

impl Releaser {
    /// Closes `held` on the releasing thread, or here when its queue is full (or it is gone).
    pub(super) fn release(&self, held: Vec<File>) {
        if !held.is_empty() {
            self.hand_over(Work::Close(held));
        }
    }

    /// Unlinks files moved aside on the releasing thread, or here when its queue is full.
    pub(super) fn unlink(&self, moved: Vec<PathBuf>) {
        if !moved.is_empty() {
            self.hand_over(Work::Unlink(moved));
        }
    }

    fn hand_over(&self, work: Work) {
        let refused = match &self.sender {
            Some(sender) => match sender.try_send(work) {
                Ok(()) => return,
                Err(mpsc::TrySendError::Full(w) | mpsc::TrySendError::Disconnected(w)) => w,
            },
            None => work,
        };
        refused.run();
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
