//! An endpoint's delivery task: the oldest spooled event first, POSTed until the endpoint
//! answers 2xx (waiting longer after each failure, up to the endpoint's maximum), then the
//! next; an event past the maximum age is dropped instead. One event in flight per endpoint
//! keeps their order.

use std::sync::Arc;
use std::time::Duration;

use crate::Endpoint;
use crate::metrics::{Outcome, counted};

/// The first wait after a failure; it doubles with each further failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// How often an idle task looks at its spool even if nobody woke it.
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// The HTTP client every endpoint delivers with.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("marina/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the TLS backend initializes")
}

/// Delivers the endpoint's events, forever.
pub(crate) async fn run(endpoint: Arc<Endpoint>, client: reqwest::Client) {
    let name = endpoint.config.name.clone();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let spool = &endpoint.spool;
        let next = match spool.oldest() {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(endpoint = %name, error = %e, "cannot read the notification spool");
                tokio::time::sleep(IDLE_LOOK).await;
                continue;
            }
        };
        let Some((path, queued)) = next else {
            let _ = tokio::time::timeout(IDLE_LOOK, endpoint.wake.notified()).await;
            continue;
        };
        if queued.age() > endpoint.config.max_age {
            tracing::warn!(endpoint = %name, event = %queued.event.id, age = ?queued.age(),
                "a notification older than max_age was dropped");
            counted(&name, Outcome::Dropped);
            remove(&endpoint, &path);
            continue;
        }
        match post(&endpoint, &client, &queued.event).await {
            Ok(()) => {
                counted(&name, Outcome::Delivered);
                remove(&endpoint, &path);
                backoff = FIRST_BACKOFF;
            }
            Err(why) => {
                counted(&name, Outcome::Failed);
                tracing::warn!(endpoint = %name, event = %queued.event.id, error = %why,
                    retry_in = ?backoff, "a notification was not delivered; it will be retried");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(endpoint.config.max_backoff);
            }
        }
    }
}

fn remove(endpoint: &Endpoint, path: &std::path::Path) {
    if let Err(e) = endpoint.spool.remove(path) {
        tracing::error!(endpoint = %endpoint.config.name, file = %path.display(), error = %e,
            "cannot remove a handled notification");
    }
}

/// One delivery: 2xx is success, anything else (or no answer in time) a failure.
async fn post(
    endpoint: &Endpoint,
    client: &reqwest::Client,
    event: &crate::Event,
) -> Result<(), String> {
    let config = &endpoint.config;
    let mut request = client
        .post(&config.url)
        .timeout(config.timeout)
        .header(reqwest::header::CONTENT_TYPE, config.format.content_type())
        .body(config.format.body(event));
    for (name, value) in &config.headers {
        request = request.header(name, value);
    }
    let answer = request.send().await.map_err(|e| e.to_string())?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the endpoint answered {status}"))
    }
}
