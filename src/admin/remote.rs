//! Asking the server that holds the storage folder to run a job, on loopback, and following
//! its JSON lines: progress, then the report or an error.

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;

use super::{Bar, Job};
use crate::config::Settings;

/// Runs `job` in the server listening on this machine per `settings`.
pub(super) async fn ask(job: &Job, settings: &Settings) -> anyhow::Result<serde_json::Value> {
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = if settings.listen.is_ipv6() {
        "[::1]"
    } else {
        "127.0.0.1"
    };
    let url = format!(
        "{scheme}://{host}:{}{}",
        settings.listen.port(),
        job.endpoint()
    );
    // The server is this machine's own, reached on loopback: its certificate names the host
    // its clients use, not 127.0.0.1.
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()?;
    let response = client.post(&url).send().await.with_context(|| {
        format!("the storage folder is locked by a running marina, which did not answer at {url}")
    })?;
    if !response.status().is_success() {
        bail!(
            "{url} answered {}: {}",
            response.status(),
            response.text().await?
        );
    }
    follow(job, response).await
}

async fn follow(job: &Job, response: reqwest::Response) -> anyhow::Result<serde_json::Value> {
    let bar = Bar::new();
    let mut body = response.bytes_stream();
    let mut pending = Vec::new();
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let mut value: serde_json::Value = serde_json::from_slice(&line)?;
            if let Some(progress) = value.get("progress") {
                bar.say(job.describe_progress(progress));
            } else if let Some(report) = value.get_mut("report") {
                bar.finish();
                return Ok(report.take());
            } else if let Some(error) = value.get("error") {
                bar.finish();
                bail!("the server's run failed: {error}");
            }
        }
    }
    bail!("the server closed the connection before its run finished")
}
