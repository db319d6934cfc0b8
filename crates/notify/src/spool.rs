//! An endpoint's queue on disk: one file per event, `<sequence>.json`, written whole (a
//! temporary file renamed into place) under a lock, so files appear in sequence order and a
//! restart finds every event not yet delivered. Bounded by a number of events.

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

/// The spool folder and the state its writers share.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    capacity: usize,
    /// The next sequence number and how many events wait.
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    next: u64,
    waiting: usize,
}

impl Spool {
    /// Opens or makes the folder, picking up where the files left off.
    pub(crate) fn open(dir: &Path, capacity: usize) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let sequences = sequences(dir)?;
        let next = sequences.last().map_or(1, |last| last + 1);
        Ok(Self {
            dir: dir.to_owned(),
            capacity,
            state: Mutex::new(State {
                next,
                waiting: sequences.len(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `event`; `false` when the spool is full (the event is not queued).
    pub(crate) fn push(&self, event: &Event) -> io::Result<bool> {
        let queued = Queued {
            queued_at: now_ms(),
            event: event.clone(),
        };
        let bytes = serde_json::to_vec(&queued).expect("events serialize");
        let mut state = self.lock();
        if state.waiting >= self.capacity {
            return Ok(false);
        }
        let name = format!("{:020}", state.next);
        let temporary = self.dir.join(format!("{name}.tmp"));
        fs::write(&temporary, &bytes)?;
        fs::rename(&temporary, self.dir.join(format!("{name}.json")))?;
        state.next += 1;
        state.waiting += 1;
        Ok(true)
    }

    /// The oldest event waiting, and its file; an unreadable file is set aside and skipped.
    pub(crate) fn oldest(&self) -> io::Result<Option<(PathBuf, Queued)>> {
        for sequence in sequences(&self.dir)? {
            let path = self.dir.join(format!("{sequence:020}.json"));
            match fs::read(&path).map(|b| serde_json::from_slice::<Queued>(&b)) {
                Ok(Ok(queued)) => return Ok(Some((path, queued))),
                Ok(Err(e)) => {
                    tracing::error!(file = %path.display(), error = %e, "an unreadable notification was set aside");
                    fs::rename(&path, path.with_extension("bad"))?;
                    self.forget();
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Removes a delivered (or dropped) event.
    pub(crate) fn remove(&self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Ok(()) => {
                self.forget();
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn forget(&self) {
        let mut state = self.lock();
        state.waiting = state.waiting.saturating_sub(1);
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
        spool.remove(&first).unwrap();
        drop(spool);
        let reopened = Spool::open(dir.path(), 10).unwrap();
        let later = event("r3");
        assert!(reopened.push(&later).unwrap());
        let mut out = Vec::new();
        while let Some((path, queued)) = reopened.oldest().unwrap() {
            out.push(queued.event);
            reopened.remove(&path).unwrap();
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
        let (path, _) = spool.oldest().unwrap().unwrap();
        spool.remove(&path).unwrap();
        assert!(spool.push(&event("d")).unwrap());
    }

    #[test]
    fn an_unreadable_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 10).unwrap();
        std::fs::write(dir.path().join(format!("{:020}.json", 0)), b"not json").unwrap();
        assert!(spool.push(&event("after")).unwrap());
        let (_, queued) = spool.oldest().unwrap().unwrap();
        assert_eq!(queued.event.target.repository, "after");
        assert!(dir.path().join(format!("{:020}.bad", 0)).exists());
    }
}
