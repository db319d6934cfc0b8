//! The admin endpoints `POST /admin/gc[?dry_run=true]`, `/admin/fsck[?repair=true]` and
//! `/admin/du`: they run the job in this server (the filesystem backend's folder is locked to
//! it, so `marina gc`, `fsck` and `du` ask here) and stream progress as JSON lines, then
//! `{"report": ...}` or `{"error": ...}`. They answer loopback clients only.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use marina_oci::ErrorCode;
use marina_registry::Registry;
use marina_registry::gc::{Options, Progress};
use marina_registry::integrity::CheckProgress;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::handlers::AppState;

/// How often progress is looked at: a line goes out when the phase changes, or every
/// [`QUIET`] otherwise.
const TICK: Duration = Duration::from_millis(20);
/// The longest time between two progress lines.
const QUIET: Duration = Duration::from_millis(500);

/// Where the admin endpoints live.
pub(crate) const PREFIX: &str = "/admin/";

/// A job's work, and a look at its progress.
struct Job {
    work: Pin<Box<dyn Future<Output = Result<Value, String>> + Send>>,
    progress: Box<dyn Fn() -> Value + Send>,
}

/// Answers `/admin/...`.
pub(crate) fn answer(state: &AppState, parts: &Parts, from: IpAddr) -> Response {
    let path = parts.uri.path();
    if parts.method != Method::POST {
        let message = format!("{} {path} is not supported: use POST", parts.method);
        return refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            message,
        );
    }
    if !from.is_loopback() {
        let message = format!("{path} answers only clients on this machine (loopback)");
        return refusal(StatusCode::FORBIDDEN, ErrorCode::Denied, message);
    }
    let flag = |name: &str| {
        let on = [format!("{name}=true"), format!("{name}=1")];
        parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| on.contains(&p.to_owned())))
    };
    let writes = path == "/admin/gc" || (path == "/admin/fsck" && flag("repair"));
    if writes && state.read_only.load(Ordering::Relaxed) {
        return ApiError::read_only(&parts.method).into_response();
    }
    let registry = state.registry.clone();
    let job = match path {
        "/admin/gc" => gc(registry, flag("dry_run")),
        "/admin/fsck" => fsck(registry, flag("repair")),
        "/admin/du" => du(registry),
        _ => {
            let message =
                format!("{path} is not an admin endpoint: /admin/gc, /admin/fsck, /admin/du");
            return refusal(StatusCode::NOT_FOUND, ErrorCode::Unsupported, message);
        }
    };
    let (lines, receiver) = mpsc::channel(4);
    match &state.background {
        Some(runtime) => drop(runtime.spawn(run(job, lines))),
        None => drop(tokio::spawn(run(job, lines))),
    }
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|line| (Ok::<_, Infallible>(line), receiver))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(body))
        .expect("static response parts are valid")
}

fn refusal(status: StatusCode, code: ErrorCode, message: String) -> Response {
    ApiError::new(status, code, message).into_response()
}

fn gc(registry: Registry, dry_run: bool) -> Job {
    let progress = Arc::new(Progress::default());
    let shown = Arc::clone(&progress);
    Job {
        work: Box::pin(async move {
            let report = registry
                .collect_garbage(Options { dry_run }, &progress)
                .await;
            report.map(|r| json!(r)).map_err(|e| e.to_string())
        }),
        progress: Box::new(move || json!(shown.snapshot())),
    }
}

fn fsck(registry: Registry, repair: bool) -> Job {
    let progress = Arc::new(CheckProgress::default());
    let shown = Arc::clone(&progress);
    Job {
        work: Box::pin(async move {
            let report = registry.check_integrity(repair, &progress).await;
            report.map(|r| json!(r)).map_err(|e| e.to_string())
        }),
        progress: Box::new(move || {
            let [contents, bytes, entries, problems] = shown.snapshot();
            json!({ "contents": contents, "bytes": bytes, "entries": entries, "problems": problems })
        }),
    }
}

fn du(registry: Registry) -> Job {
    let progress = Arc::new(Progress::default());
    let shown = Arc::clone(&progress);
    Job {
        work: Box::pin(async move {
            let usage = registry.usage(&progress).await;
            usage.map(|u| json!(u)).map_err(|e| e.to_string())
        }),
        progress: Box::new(move || json!(shown.snapshot())),
    }
}

/// Runs the job, sending progress lines and the report at the end. The job goes on if the
/// client leaves.
async fn run(job: Job, lines: mpsc::Sender<Bytes>) {
    let Job { mut work, progress } = job;
    let mut tick = tokio::time::interval(TICK);
    let (mut shown, mut last_line) = (Value::Null, tokio::time::Instant::now());
    let last = loop {
        tokio::select! {
            outcome = &mut work => break match outcome {
                Ok(report) => json!({ "report": report }),
                Err(e) => json!({ "error": e }),
            },
            _ = tick.tick() => {
                let now = progress();
                let phase = now.get("phase").cloned().unwrap_or(Value::Null);
                if phase != shown || last_line.elapsed() >= QUIET {
                    let _ = lines.try_send(json_line(&json!({ "progress": now })));
                    (shown, last_line) = (phase, tokio::time::Instant::now());
                }
            }
        }
    };
    let _ = lines.send(json_line(&last)).await;
}

fn json_line(value: &Value) -> Bytes {
    let mut line = serde_json::to_vec(value).expect("JSON values serialize");
    line.push(b'\n');
    Bytes::from(line)
}
