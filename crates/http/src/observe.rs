//! What every response gets on its way out: a request id, the API version header, a log line
//! (method, route template, status, bytes, duration), its metrics, and a 500 with an OCI body
//! for a panic.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::connection::{Activity, ConnectionInfo};
use crate::handlers::{RouteTemplate, value};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static PROCESS_TAG: LazyLock<String> = LazyLock::new(|| {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the OS random source works");
    b.iter().map(|x| format!("{x:02x}")).collect()
});

/// Logs and labels one request, and counts it on its connection until its answer is written.
pub(crate) async fn observe(request: Request, next: Next) -> Response {
    let under_way = request
        .extensions()
        .get::<ConnectInfo<ConnectionInfo>>()
        .map(|info| UnderWay::start(&info.0.activity));
    let id = format!(
        "{}-{:x}",
        *PROCESS_TAG,
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    );
    let method = request.method().clone();
    let started = Instant::now();
    let span = tracing::info_span!("request", id = %id);
    let mut request = request;
    request
        .extensions_mut()
        .insert(crate::events::RequestId(id.clone()));
    let received = crate::metrics::on().then(|| Arc::new(AtomicU64::new(0)));
    let request = match &received {
        Some(seen) => request.map(|body| {
            Body::new(Observed {
                body,
                seen: Some(Arc::clone(seen)),
                _guard: None,
            })
        }),
        None => request,
    };
    let mut response = next.run(request).instrument(span.clone()).await;
    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map_or("-", |r| r.0);
    let user = response
        .extensions()
        .get::<marina_auth::Identity>()
        .map_or("-", marina_auth::Identity::name)
        .to_owned();
    let bytes = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| http_body::Body::size_hint(response.body()).exact());
    tracing::info!(
        parent: &span,
        method = %method,
        route,
        user,
        status = response.status().as_u16(),
        bytes,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    crate::metrics::Finished {
        method: &method,
        route,
        status: response.status(),
        took: started.elapsed(),
        received: received.map_or(0, |r| r.load(Ordering::Relaxed)),
        sent: if method == Method::HEAD {
            0
        } else {
            bytes.unwrap_or(0)
        },
    }
    .record();
    let h = response.headers_mut();
    h.insert("Docker-Distribution-API-Version", value("registry/2.0"));
    h.insert("X-Request-Id", value(id));
    match under_way {
        Some(guard) => response.map(|body| {
            Body::new(Observed {
                body,
                seen: None,
                _guard: Some(guard),
            })
        }),
        None => response,
    }
}

/// A request counted on its connection and in flight; it stops counting when dropped (the
/// answer written, abandoned, or the handler panicked).
struct UnderWay {
    activity: Activity,
    _in_flight: crate::metrics::InFlight,
}

impl UnderWay {
    fn start(activity: &Activity) -> Self {
        activity.request_started();
        Self {
            activity: activity.clone(),
            _in_flight: crate::metrics::InFlight::start(),
        }
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        self.activity.request_finished();
    }
}

/// A body on its way: a request's, counting the bytes read from it, or an answer's, holding
/// its request's [`UnderWay`] until the server drops it.
struct Observed {
    body: Body,
    seen: Option<Arc<AtomicU64>>,
    _guard: Option<UnderWay>,
}

impl http_body::Body for Observed {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let (std::task::Poll::Ready(Some(Ok(frame))), Some(seen)) = (&polled, &self.seen)
            && let Some(data) = frame.data_ref()
        {
            seen.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A handler panicked: answer 500 with an OCI body; the server keeps serving.
pub(crate) fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = what, "a request handler panicked");
    let body = serde_json::json!({
        "errors": [{ "code": "UNKNOWN", "message": "internal server error; see the registry's log", "detail": null }]
    });
    crate::handlers::json(StatusCode::INTERNAL_SERVER_ERROR, &body)
}
