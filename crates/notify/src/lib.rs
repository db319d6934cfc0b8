//! Event notifications (webhooks): what happened in the registry (a manifest pushed, pulled or
//! deleted, a tag or blob deleted), kept in an on-disk spool per endpoint and delivered in
//! order, at least once, retried with exponential backoff, in Distribution's envelope or as
//! CloudEvents. Nothing here slows a request beyond writing a small file.

mod deliver;
mod event;
mod format;
pub mod metrics;
mod spool;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use marina_oci::RepoPattern;

pub use event::{Action, Actor, Event, RequestInfo, Source, Target};
pub use format::Format;

use spool::Spool;

/// One endpoint as configured.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// A name for logs, metrics and the spool folder (letters, digits, `-`, `_`).
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// Extra headers sent with every delivery (an `Authorization`, say).
    pub headers: Vec<(String, String)>,
    /// How long one delivery may take.
    pub timeout: Duration,
    /// The actions sent (pull is off unless listed).
    pub actions: Vec<Action>,
    /// The repositories whose events are sent; empty means all.
    pub repositories: Vec<RepoPattern>,
    /// The body's form.
    pub format: Format,
    /// Events older than this are dropped, logged and counted rather than delivered.
    pub max_age: Duration,
    /// Events kept waiting at most; past that, new events are dropped, logged and counted.
    pub max_queue: usize,
    /// The longest wait between two tries of the same event.
    pub max_backoff: Duration,
}

impl EndpointConfig {
    fn wants(&self, event: &Event) -> bool {
        self.actions.contains(&event.action)
            && (self.repositories.is_empty()
                || self
                    .repositories
                    .iter()
                    .any(|p| p.matches(&event.target.repository)))
    }
}

/// An endpoint with its spool and its delivery task's wake-up call.
#[derive(Debug)]
struct Endpoint {
    config: EndpointConfig,
    spool: Spool,
    wake: tokio::sync::Notify,
}

/// Every endpoint: events go in through [`Notifier::emit`], and out through the delivery
/// tasks [`Notifier::start`] spawns.
#[derive(Debug)]
pub struct Notifier {
    endpoints: Vec<Arc<Endpoint>>,
}

impl Notifier {
    /// Opens (or makes) each endpoint's spool under `spool_root`; events left there by an
    /// earlier run are delivered first.
    ///
    /// # Errors
    /// When a spool folder cannot be made or read.
    pub fn open(configs: Vec<EndpointConfig>, spool_root: &Path) -> std::io::Result<Self> {
        let endpoints = configs
            .into_iter()
            .map(|config| {
                let spool = Spool::open(&spool_root.join(&config.name), config.max_queue)?;
                Ok(Arc::new(Endpoint {
                    config,
                    spool,
                    wake: tokio::sync::Notify::new(),
                }))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Self { endpoints })
    }

    /// Whether any endpoint takes events of `action` (pull events are built only then).
    #[must_use]
    pub fn wants(&self, action: Action) -> bool {
        self.endpoints
            .iter()
            .any(|e| e.config.actions.contains(&action))
    }

    /// Queues `event` for every endpoint that takes it. Returns once it is in their spools;
    /// delivery happens later, whatever the endpoints do.
    pub async fn emit(&self, event: Event) {
        let wanting: Vec<Arc<Endpoint>> = self
            .endpoints
            .iter()
            .filter(|e| e.config.wants(&event))
            .cloned()
            .collect();
        if wanting.is_empty() {
            return;
        }
        let queued = tokio::task::spawn_blocking(move || {
            for endpoint in &wanting {
                match endpoint.spool.push(&event) {
                    Ok(true) => endpoint.wake.notify_one(),
                    Ok(false) => {
                        metrics::counted(&endpoint.config.name, metrics::Outcome::Dropped);
                        tracing::warn!(endpoint = %endpoint.config.name, event = %event.id,
                            "notification spool full: event dropped");
                    }
                    Err(e) => {
                        metrics::counted(&endpoint.config.name, metrics::Outcome::Dropped);
                        tracing::error!(endpoint = %endpoint.config.name, event = %event.id,
                            error = %e, "cannot spool a notification: event dropped");
                    }
                }
            }
        });
        let _ = queued.await;
    }

    /// Starts one delivery task per endpoint (on the current tokio runtime).
    pub fn start(&self) {
        let client = deliver::client();
        for endpoint in &self.endpoints {
            tokio::spawn(deliver::run(Arc::clone(endpoint), client.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(name: &str, url: &str, max_age: Duration) -> EndpointConfig {
        EndpointConfig {
            name: name.into(),
            url: url.into(),
            headers: Vec::new(),
            timeout: Duration::from_secs(1),
            actions: vec![Action::Push],
            repositories: vec![RepoPattern::parse("team/**").unwrap()],
            format: Format::Distribution,
            max_age,
            max_queue: 10,
            max_backoff: Duration::from_secs(1),
        }
    }

    fn push(repository: &str) -> Event {
        let target = Target {
            repository: repository.into(),
            ..Target::default()
        };
        let (request, actor) = (RequestInfo::default(), Actor::default());
        Event::new(Action::Push, target, request, actor, Source::default())
    }

    #[tokio::test]
    async fn events_past_max_age_are_dropped_not_delivered() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing listens on port 9 of the loopback: every try fails.
        let config = endpoint("old", "http://127.0.0.1:9/", Duration::from_millis(1));
        let notifier = Notifier::open(vec![config], dir.path()).unwrap();
        notifier.emit(push("team/app")).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        notifier.start();
        let spool = dir.path().join("old");
        for _ in 0..100 {
            if std::fs::read_dir(&spool).unwrap().count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the stale event is still spooled");
    }

    #[tokio::test]
    async fn only_the_actions_and_repositories_an_endpoint_takes_are_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let config = endpoint("some", "http://127.0.0.1:9/", Duration::from_secs(60));
        let notifier = Notifier::open(vec![config], dir.path()).unwrap();
        assert!(notifier.wants(Action::Push) && !notifier.wants(Action::Pull));
        notifier.emit(push("elsewhere/app")).await;
        let mut pull = push("team/app");
        pull.action = Action::Pull;
        notifier.emit(pull).await;
        notifier.emit(push("team/app")).await;
        assert_eq!(
            std::fs::read_dir(dir.path().join("some")).unwrap().count(),
            1
        );
    }
}
