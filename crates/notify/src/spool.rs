//! An endpoint's queue on disk: one file per event, `<sequence>.json`, written whole (a
//! temporary file renamed into place) under a lock, so files appear in sequence order and a
//! restart finds every event not yet delivered (a crash of the process loses nothing; the
//! files are not synced, so a crash of the machine may). The order waiting is also kept in
//! memory, so the reader never lists the folder. Bounded by a number of events.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::Event;

/// An event as spooled, with when it was queued (for the maximum age).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Queued {
    /// Unix milliseconds.
    pub(crate) queued_at: u64,
    pub(crate) event: Event,
}

impl Queued {
    /// How long ago it was queued.
    pub(crate) fn age(&self) -> std::time::Duration {
        std::time::Duration::from_millis(now_ms().saturating_sub(self.queued_at))
    }
}

/// The spool folder and the state its writer and its reader share.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The sequence number of the next event.
    next: u64,
    /// The sequence numbers waiting, oldest first (so the reader never lists the folder).
    waiting: VecDeque<u64>,
}

impl Spool {
    /// Opens or makes the folder, picking up where the files left off.
    pub(crate) fn open(dir: &Path, capacity: usize) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let waiting: VecDeque<u64> = sequences(dir)?.into();
        let next = waiting.back().map_or(1, |last| last + 1);
        Ok(Self {
            dir: dir.to_owned(),
            capacity,
            state: Mutex::new(State { next, waiting }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn path(&self, sequence: u64) -> PathBuf {
        self.dir.join(format!("{sequence:020}.json"))
    }

    /// Queues `event`; `false` when the spool is full (the event is not queued).
    pub(crate) fn push(&self, event: &Event) -> io::Result<bool> {
        let queued = Queued {
            queued_at: now_ms(),
            event: event.clone(),
        };
        let bytes = serde_json::to_vec(&queued).expect("events serialize");
        let mut state = self.lock();
        if state.waiting.len() >= self.capacity {
            return Ok(false);
        }
        let sequence = state.next;
        let temporary = self.dir.join(format!("{sequence:020}.tmp"));
        fs::write(&temporary, &bytes)?;
        fs::rename(&temporary, self.path(sequence))?;
        state.next += 1;
        state.waiting.push_back(sequence);
        Ok(true)
    }

    /// The oldest event waiting, and its sequence number. A file that no longer reads is set
    /// aside (`.bad`) and one that is gone is forgotten; both are skipped.
    pub(crate) fn oldest(&self) -> io::Result<Option<(u64, Queued)>> {
        loop {
            let Some(sequence) = self.lock().waiting.front().copied() else {
                return Ok(None);
            };
            let path = self.path(sequence);
            match fs::read(&path).map(|b| serde_json::from_slice::<Queued>(&b)) {
                Ok(Ok(queued)) => return Ok(Some((sequence, queued))),
                Ok(Err(e)) => {
                    tracing::error!(file = %path.display(), error = %e, "an unreadable notification was set aside");
                    fs::rename(&path, path.with_extension("bad"))?;
                    self.forget(sequence);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.forget(sequence),
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes a delivered (or dropped) event; it is no longer waiting even if its file
    /// cannot be removed (then a restart finds it again).
    pub(crate) fn remove(&self, sequence: u64) -> io::Result<()> {
        let removed = fs::remove_file(self.path(sequence));
        self.forget(sequence);
        match removed {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn forget(&self, sequence: u64) {
        self.lock().waiting.retain(|s| *s != sequence);
    }
}

/// The sequence numbers of the events in `dir`, in order.
fn sequences(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found: Vec<u64> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let name = name.to_str()?;
            name.strip_suffix(".json")?.parse().ok()
        })
        .collect();
    found.sort_unstable();
    Ok(found)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Actor, RequestInfo, Source, Target};

    fn event(repository: &str) -> Event {
        let target = Target {
            repository: repository.into(),
            ..Target::default()
        };
        Event::new(
            Action::Push,
            target,
            RequestInfo::default(),
            Actor::default(),
            Source::default(),
        )
    }

    #[test]
    fn events_come_out_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 10).unwrap();
        let sent: Vec<Event> = (0..3).map(|i| event(&format!("r{i}"))).collect();
        for e in &sent {
            assert!(spool.push(e).unwrap());
        }
        let (first, queued) = spool.oldest().unwrap().unwrap();
        assert_eq!(queued.event, sent[0]);
        spool.remove(first).unwrap();
        drop(spool);
        let reopened = Spool::open(dir.path(), 10).unwrap();
        let later = event("r3");
        assert!(reopened.push(&later).unwrap());
        let mut out = Vec::new();
        while let Some((sequence, queued)) = reopened.oldest().unwrap() {
            out.push(queued.event);
            reopened.remove(sequence).unwrap();
        }
        assert_eq!(out, vec![sent[1].clone(), sent[2].clone(), later]);
    }

    #[test]
    fn a_full_spool_refuses_new_events() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 2).unwrap();
        assert!(spool.push(&event("a")).unwrap());
        assert!(spool.push(&event("b")).unwrap());
        assert!(!spool.push(&event("c")).unwrap());
        let (sequence, _) = spool.oldest().unwrap().unwrap();
        spool.remove(sequence).unwrap();
        assert!(spool.push(&event("d")).unwrap());
    }

    #[test]
    fn an_unreadable_file_is_set_aside_and_a_vanished_one_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{:020}.json", 0)), b"not json").unwrap();
        let spool = Spool::open(dir.path(), 3).unwrap();
        assert!(spool.push(&event("gone")).unwrap());
        std::fs::remove_file(dir.path().join(format!("{:020}.json", 1))).unwrap();
        assert!(spool.push(&event("after")).unwrap());
        assert!(
            !spool.push(&event("no room")).unwrap(),
            "three files count until read"
        );
        let (_, queued) = spool.oldest().unwrap().unwrap();
        assert_eq!(queued.event.target.repository, "after");
        assert!(dir.path().join(format!("{:020}.bad", 0)).exists());
        assert!(
            spool.push(&event("room again")).unwrap(),
            "the skipped files no longer count"
        );
    }
}
