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
        let next = {
            let endpoint = Arc::clone(&endpoint);
            tokio::task::spawn_blocking(move || endpoint.spool.oldest()).await
        };
        let next = match next {
            Ok(Ok(next)) => next,
            Ok(Err(e)) => {
                tracing::error!(endpoint = %name, error = %e, "cannot read the notification spool");
                tokio::time::sleep(IDLE_LOOK).await;
                continue;
            }
            Err(_) => continue,
        };
        let Some((sequence, queued)) = next else {
            let _ = tokio::time::timeout(IDLE_LOOK, endpoint.wake.notified()).await;
            continue;
        };
        if queued.age() > endpoint.config.max_age {
            tracing::warn!(endpoint = %name, event = %queued.event.id, age = ?queued.age(),
                "a notification older than max_age was dropped");
            counted(&name, Outcome::Dropped);
            remove(&endpoint, sequence).await;
            continue;
        }
        match post(&endpoint, &client, &queued.event).await {
            Ok(()) => {
                counted(&name, Outcome::Delivered);
                remove(&endpoint, sequence).await;
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

/// Removes a handled event. If its file cannot be removed, the event is forgotten all the
/// same (it would otherwise be sent again and again at once); a restart sends it again.
async fn remove(endpoint: &Arc<Endpoint>, sequence: u64) {
    let owned = Arc::clone(endpoint);
    let removed = tokio::task::spawn_blocking(move || owned.spool.remove(sequence)).await;
    if let Ok(Err(e)) = removed {
        tracing::error!(endpoint = %endpoint.config.name, sequence, error = %e,
            "cannot remove a handled notification from the spool");
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
