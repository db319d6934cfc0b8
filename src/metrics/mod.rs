//! The metrics exporter: installs the Prometheus recorder (histogram buckets for the
//! `_seconds` metrics), describes every crate's metrics, and renders them with the process's
//! own for the operations listener.

mod process;

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: 0.5 ms to 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// How often histograms are compacted, whether or not anyone scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the recorder; from now on every metric is recorded. Returns what renders them.
pub(crate) fn install() -> anyhow::Result<marina_http::Render> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .install_recorder()?;
    marina_http::metrics::describe();
    marina_registry::metrics::describe();
    marina_store::measured::describe();
    marina_notify::metrics::describe();
    process::started();
    tokio::spawn(upkeep(handle.clone()));
    Ok(std::sync::Arc::new(move || {
        let mut text = handle.render();
        text.push_str(&process::render());
        text
    }))
}

async fn upkeep(handle: PrometheusHandle) {
    let mut ticker = tokio::time::interval(UPKEEP_EVERY);
    loop {
        ticker.tick().await;
        handle.run_upkeep();
    }
}
