//! One fetch per missing object: the first caller for a key runs the fetch, and callers that
//! come while it runs wait for the same outcome instead of starting their own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// The outcome of a fetch, shared by everyone who waited for it. Errors are shared as text
/// with the kind of answer they call for.
pub(crate) type Shared<T> = Result<T, Failure>;

/// Why a shared fetch failed, kept so that every waiter gets the same answer.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The upstream has no such object.
    NotFound,
    /// The upstream could not answer.
    Upstream(String),
    /// The upstream answered something wrong.
    Invalid(String),
    /// Garbage collection held the write up.
    Collecting(String),
    /// Storing what was fetched failed.
    Storage(String),
}

impl Failure {
    /// The failure of `e`, kept for every waiter.
    pub(crate) fn of(e: crate::Error) -> Self {
        use crate::Error as E;
        match e {
            E::ManifestUnknown(_) | E::BlobUnknown(_) => Self::NotFound,
            E::Upstream(m) => Self::Upstream(m),
            E::UpstreamInvalid(m) => Self::Invalid(m),
            E::Collecting(m) => Self::Collecting(m),
            other => Self::Storage(other.to_string()),
        }
    }

    /// The error a waiter answers with; `unknown` is the 404.
    pub(crate) fn into_error(self, unknown: impl FnOnce() -> crate::Error) -> crate::Error {
        use crate::Error as E;
        match self {
            Self::NotFound => unknown(),
            Self::Upstream(m) => E::Upstream(m),
            Self::Invalid(m) => E::UpstreamInvalid(m),
            Self::Collecting(m) => E::Collecting(m),
            Self::Storage(m) => E::Store(marina_store::Error::Unavailable(m)),
        }
    }
}

/// Fetches under way, by key.
#[derive(Debug)]
pub(crate) struct Flights<T> {
    running: Mutex<HashMap<String, Arc<OnceCell<Shared<T>>>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Self {
            running: Mutex::default(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// Runs `fetch` for `key` unless a fetch of it is under way; either way returns its
    /// outcome. The key is free again once the fetch ends.
    pub(crate) async fn join<F>(&self, key: &str, fetch: impl FnOnce() -> F) -> Shared<T>
    where
        F: Future<Output = Shared<T>>,
    {
        let cell = {
            let mut running = self.running();
            Arc::clone(running.entry(key.to_owned()).or_default())
        };
        let outcome = cell.get_or_init(fetch).await.clone();
        let mut running = self.running();
        if running.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            running.remove(key);
        }
        outcome
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OnceCell<Shared<T>>>>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn callers_during_a_fetch_share_it_and_later_ones_fetch_again() {
        let flights = Arc::new(Flights::<usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let call = || {
            let (flights, runs) = (Arc::clone(&flights), Arc::clone(&runs));
            tokio::spawn(async move {
                flights
                    .join("k", || async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(runs.fetch_add(1, Ordering::SeqCst))
                    })
                    .await
                    .ok()
            })
        };
        let waiting: Vec<_> = (0..10).map(|_| call()).collect();
        for w in waiting {
            assert_eq!(w.await.unwrap(), Some(0));
        }
        assert_eq!(
            call().await.unwrap(),
            Some(1),
            "the key is free after the fetch"
        );
    }
}
