//! The admin endpoints `POST /admin/gc[?dry_run=true]`, `/admin/fsck[?repair=true]` and
//! `/admin/du`: they run the job in this server (the filesystem backend's folder is locked to
//! it, so `marina gc`, `fsck` and `du` ask here) and stream progress as JSON lines, then
//! `{"report": ...}` or `{"error": ...}`. They answer loopback clients, and with auth on,
//! administrators (`[auth] admins`) from anywhere.

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

use crate::auth::Auth;
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

/// Answers `/admin/...`: to loopback clients, and, with auth on, to administrators anywhere.
pub(crate) async fn answer(state: &AppState, parts: &Parts, from: IpAddr) -> Response {
    let path = parts.uri.path();
    if parts.method != Method::POST {
        let message = format!("{} {path} is not supported: use POST", parts.method);
        return refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            message,
        );
    }
    if let Err(refused) = admit(state.auth.as_deref(), parts, from).await {
        return refused.into_response();
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

/// Lets in loopback clients (an IPv4 address mapped into IPv6 counts as itself), and, with
/// auth on, administrators from anywhere.
async fn admit(auth: Option<&Auth>, parts: &Parts, from: IpAddr) -> Result<(), ApiError> {
    if from.to_canonical().is_loopback() {
        return Ok(());
    }
    match auth {
        Some(auth) => auth.admit_admin(parts, from).await,
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Denied,
            format!(
                "{} answers only clients on this machine (loopback) while auth is off",
                parts.uri.path()
            ),
        )),
    }
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::http::Request;
    use marina_auth::{Acl, Htpasswd};

    use super::*;
    use crate::auth::Policy;

    const USERS: &str = "olga:$2y$04$kE03qAJuE9P1c5hg5Drt6eiuG6FcxFBja6KvsirLhaIFePX2a0qsS\n\
                         alice:$2y$04$Zd6nwiyboEAoQP2Pp9hzTeP0qTbtdkT/UIoVyOn/e44KizIJNuUwe\n";

    fn auth() -> Auth {
        let groups = HashMap::from([("ops".to_owned(), vec!["olga".to_owned()])]);
        let rule = marina_auth::AccessRule {
            repositories: vec!["**".into()],
            authenticated: true,
            actions: vec!["pull".into(), "push".into(), "delete".into()],
            ..Default::default()
        };
        let acl = Acl::new(&[rule], &groups)
            .unwrap()
            .with_admins(&["ops".to_owned()], &groups);
        let policy = Policy {
            users: Htpasswd::parse(USERS).unwrap(),
            acl,
        };
        Auth::new(policy, None, crate::AuthSettings::default())
    }

    fn request(user: Option<&str>) -> Parts {
        let mut request = Request::post("/admin/gc");
        if let Some(user) = user {
            let pair = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{user}:pw"),
            );
            request = request.header(header::AUTHORIZATION, format!("Basic {pair}"));
        }
        request.body(()).unwrap().into_parts().0
    }

    async fn status(auth: Option<&Auth>, user: Option<&str>, from: &str) -> StatusCode {
        match admit(auth, &request(user), from.parse().unwrap()).await {
            Ok(()) => StatusCode::OK,
            Err(e) => e.into_response().status(),
        }
    }

    #[tokio::test]
    async fn loopback_is_trusted_and_others_need_an_administrator() {
        let auth = auth();
        let remote = "192.0.2.7";
        assert_eq!(status(None, None, "127.0.0.1").await, StatusCode::OK);
        assert_eq!(status(None, None, "::ffff:127.0.0.1").await, StatusCode::OK);
        assert_eq!(status(None, None, "::1").await, StatusCode::OK);
        assert_eq!(
            status(None, Some("olga"), remote).await,
            StatusCode::FORBIDDEN
        );
        let auth = Some(&auth);
        assert_eq!(status(auth, None, remote).await, StatusCode::UNAUTHORIZED);
        assert_eq!(
            status(auth, Some("alice"), remote).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(status(auth, Some("olga"), remote).await, StatusCode::OK);
        assert_eq!(
            status(auth, Some("mallory"), remote).await,
            StatusCode::UNAUTHORIZED
        );
    }
}
