//! A run's live counters, read by a progress bar or an admin endpoint while it works.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::Serialize;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Purging stale upload sessions.
    Uploads,
    /// Listing and marking.
    Marking,
    /// Waiting for writes in flight to settle after publishing the sweep.
    Settling,
    /// Listing and marking again.
    Rechecking,
    /// Deleting.
    Sweeping,
    /// Finished.
    Done,
}

const PHASES: [Phase; 6] = [
    Phase::Uploads,
    Phase::Marking,
    Phase::Settling,
    Phase::Rechecking,
    Phase::Sweeping,
    Phase::Done,
];

/// Counters a run updates as it goes.
#[derive(Debug, Default)]
pub struct Progress {
    phase: AtomicU8,
    scanned: AtomicU64,
    freed_objects: AtomicU64,
    freed_bytes: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProgressSnapshot {
    /// The phase.
    pub phase: Phase,
    /// Keys listed so far (both passes).
    pub objects_scanned: u64,
    /// Objects deleted so far.
    pub objects_freed: u64,
    /// Bytes of content deleted so far.
    pub bytes_freed: u64,
}

impl Progress {
    /// The counters now.
    #[must_use]
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            phase: PHASES[usize::from(self.phase.load(Ordering::Relaxed)).min(PHASES.len() - 1)],
            objects_scanned: self.scanned.load(Ordering::Relaxed),
            objects_freed: self.freed_objects.load(Ordering::Relaxed),
            bytes_freed: self.freed_bytes.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn enter(&self, phase: Phase) {
        let index = PHASES.iter().position(|p| *p == phase).unwrap_or(0);
        self.phase
            .store(u8::try_from(index).unwrap_or(0), Ordering::Relaxed);
    }

    pub(crate) fn scanned(&self, keys: usize) {
        self.scanned.fetch_add(keys as u64, Ordering::Relaxed);
    }

    pub(crate) fn freed(&self, bytes: u64) {
        self.freed_objects.fetch_add(1, Ordering::Relaxed);
        self.freed_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}
