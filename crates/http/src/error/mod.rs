//! API errors: the spec's code, an HTTP status, a message, and the OCI JSON body built in
//! `IntoResponse`. Storage faults are logged in full and answered without their details.

use axum::http::{HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use marina_oci::ErrorCode;
use marina_registry::Error as RegistryError;

use StatusCode as S;

mod faults;

/// An error answered with `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    detail: serde_json::Value,
    /// One extra header: `Range` (an upload's offset) or `Content-Range` (a blob's size).
    header: Option<(HeaderName, String)>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: serde_json::Value::Null,
            header: None,
        }
    }

    fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    fn header(mut self, name: HeaderName, value: String) -> Self {
        self.header = Some((name, value));
        self
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn not_found(path: &str) -> Self {
        let message = format!("{path} is not an endpoint of the OCI distribution API");
        Self::new(StatusCode::NOT_FOUND, ErrorCode::Unsupported, message)
    }

    pub(crate) fn method_not_allowed(method: &Method, path: &str) -> Self {
        let message = format!("{method} is not supported on {path}");
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            message,
        )
    }

    pub(crate) fn read_only(method: &Method) -> Self {
        let message = format!(
            "the registry is read-only (maintenance or a read replica): {method} is refused; \
             pulls and listings work"
        );
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            message,
        )
    }

    pub(crate) fn name_invalid(e: &impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::NameInvalid,
            e.to_string(),
        )
    }

    pub(crate) fn digest_invalid(e: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::DigestInvalid,
            e.to_string(),
        )
    }

    pub(crate) fn tag_invalid(e: &impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::ManifestInvalid,
            e.to_string(),
        )
    }

    pub(crate) fn manifest_unknown_tag(raw: &str) -> Self {
        let message = format!("no manifest is tagged {raw:?}: it is not a valid tag");
        Self::new(StatusCode::NOT_FOUND, ErrorCode::ManifestUnknown, message)
    }

    pub(crate) fn pagination_invalid(key: &str, value: &str) -> Self {
        let message = format!("query parameter {key}={value:?} is not a non-negative whole number");
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::Unsupported, message)
    }

    pub(crate) fn range_header_invalid(name: &str, value: &str) -> Self {
        let message = format!("{name} header {value:?} is not a valid byte range");
        Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
            message,
        )
    }

    pub(crate) fn body_unreadable(e: impl std::fmt::Display) -> Self {
        let message = format!("the request body could not be read: {e}");
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BlobUploadInvalid,
            message,
        )
    }

    /// No or wrong credentials: 401 with the challenge that says how to sign in.
    pub(crate) fn unauthorized(challenge: String) -> Self {
        let message = "authentication required: sign in, or bring a token for this scope";
        Self::new(S::UNAUTHORIZED, ErrorCode::Unauthorized, message)
            .header(header::WWW_AUTHENTICATE, challenge)
    }

    /// Signed in, but the rules do not allow it: 403.
    pub(crate) fn denied(message: &str) -> Self {
        Self::new(S::FORBIDDEN, ErrorCode::Denied, message)
    }

    /// Too many failed logins: 429 with how long to wait.
    pub(crate) fn throttled(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs().max(1);
        let message = format!("too many failed logins; try again in {seconds} s");
        Self::new(S::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests, message)
            .header(header::RETRY_AFTER, seconds.to_string())
    }

    /// The same answer with another message.
    pub(crate) fn with_message(mut self, message: &str) -> Self {
        message.clone_into(&mut self.message);
        self
    }

    /// A storage fault, logged once per burst. A full disk answers 507, a fault that may pass
    /// (an I/O error, an object store out of reach) 503 with `Retry-After`, an upload that
    /// found no room in the memory budget 429 with `Retry-After`; anything else means
    /// marina's own state is off: 500.
    fn storage(fault: &marina_store::Error, message: &str) -> Self {
        use marina_store::Error as F;
        let io = match fault {
            F::Io { cause, .. } => Some(cause),
            F::Unavailable(_) => None,
            F::Busy(_) => {
                let message = "the registry is busy with other uploads; try again shortly";
                return Self::new(S::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests, message)
                    .header(header::RETRY_AFTER, faults::RETRY_AFTER_SECS.to_string());
            }
            F::NotFound(_) | F::Input(_) => return Self::internal(message),
        };
        faults::log(message);
        if io.is_some_and(faults::is_out_of_space) {
            let message = "the registry is out of storage space; nothing was stored";
            return Self::new(S::INSUFFICIENT_STORAGE, ErrorCode::Unavailable, message);
        }
        let message = "storage is unavailable; try again";
        Self::new(S::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, message)
            .header(header::RETRY_AFTER, faults::RETRY_AFTER_SECS.to_string())
    }

    /// A fault of marina or its storage: logged in full, answered without details. No spec
    /// code fits a 5xx, so it carries `UNKNOWN`, as CNCF Distribution's does.
    pub(crate) fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!(error = %what, "internal error");
        let message = "internal server error; see the registry's log";
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unknown,
            message,
        )
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        use RegistryError as E;
        let message = e.to_string();
        match e {
            E::BlobUnknown(d) => Self::new(S::NOT_FOUND, ErrorCode::BlobUnknown, message)
                .detail(serde_json::json!({ "digest": d.to_string() })),
            E::UploadUnknown(_) => Self::new(S::NOT_FOUND, ErrorCode::BlobUploadUnknown, message),
            E::ChunkOutOfOrder { expected, .. } => Self::new(
                S::RANGE_NOT_SATISFIABLE,
                ErrorCode::BlobUploadInvalid,
                message,
            )
            .header(
                header::RANGE,
                crate::handlers::uploads::range_header(expected),
            ),
            E::BodyIncomplete(_) => {
                Self::new(S::BAD_REQUEST, ErrorCode::BlobUploadInvalid, message)
            }
            E::DigestMismatch { .. } => {
                Self::new(S::BAD_REQUEST, ErrorCode::DigestInvalid, message)
            }
            E::ManifestUnknown(_) => Self::new(S::NOT_FOUND, ErrorCode::ManifestUnknown, message),
            E::ManifestInvalid(_) => Self::new(S::BAD_REQUEST, ErrorCode::ManifestInvalid, message),
            E::ManifestBlobUnknown(d) => {
                Self::new(S::BAD_REQUEST, ErrorCode::ManifestBlobUnknown, message)
                    .detail(serde_json::json!({ "digest": d.to_string() }))
            }
            E::ManifestTooLarge { .. } => {
                Self::new(S::PAYLOAD_TOO_LARGE, ErrorCode::SizeInvalid, message)
            }
            E::NameUnknown(_) => Self::new(S::NOT_FOUND, ErrorCode::NameUnknown, message),
            E::RangeNotSatisfiable { size } => {
                Self::new(S::RANGE_NOT_SATISFIABLE, ErrorCode::SizeInvalid, message)
                    .header(header::CONTENT_RANGE, format!("bytes */{size}"))
            }
            E::DeleteDisabled => Self::new(S::METHOD_NOT_ALLOWED, ErrorCode::Unsupported, message),
            E::TagImmutable { .. } => Self::new(S::CONFLICT, ErrorCode::Denied, message),
            E::Collecting(_) => Self::new(S::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, message)
                .header(header::RETRY_AFTER, "5".to_owned()),
            E::Upstream(_) => Self::new(S::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, message),
            E::UpstreamInvalid(_) => Self::new(S::BAD_GATEWAY, ErrorCode::Unavailable, message),
            E::Store(fault) => Self::storage(&fault, &message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{ "code": self.code.as_str(), "message": self.message, "detail": self.detail }]
        });
        let mut response = crate::handlers::json(self.status, &body);
        if let Some((name, value)) = self.header {
            response
                .headers_mut()
                .insert(name, crate::handlers::value(value));
        }
        response
    }
}
