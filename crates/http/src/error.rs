//! API errors: the spec's code, an HTTP status, a message, and the OCI JSON body built in
//! `IntoResponse`. Storage faults are logged in full and answered without their details.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use marina_oci::ErrorCode;
use marina_registry::Error as RegistryError;

/// An error answered with `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    detail: serde_json::Value,
    content_range: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::with_code(status, code.as_str(), message)
    }

    fn with_code(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: serde_json::Value::Null,
            content_range: None,
        }
    }

    fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Unsupported,
            format!("{path} is not an endpoint of the OCI distribution API"),
        )
    }

    pub(crate) fn method_not_allowed(method: &Method, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            format!("{method} is not supported on {path}"),
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
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::ManifestUnknown,
            format!("no manifest is tagged {raw:?}: it is not a valid tag"),
        )
    }

    pub(crate) fn pagination_invalid(key: &str, value: &str) -> Self {
        Self::with_code(
            StatusCode::BAD_REQUEST,
            "PAGINATION_NUMBER_INVALID",
            format!("query parameter {key}={value:?} is not a non-negative whole number"),
        )
    }

    pub(crate) fn range_header_invalid(name: &str, value: &str) -> Self {
        Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
            format!("{name} header {value:?} is not a valid byte range"),
        )
    }

    pub(crate) fn manifest_too_large(limit: usize) -> Self {
        RegistryError::ManifestTooLarge {
            size: limit + 1,
            limit,
        }
        .into()
    }

    pub(crate) fn body_unreadable(e: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BlobUploadInvalid,
            format!("the request body could not be read: {e}"),
        )
    }

    pub(crate) fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!(error = %what, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unknown,
            "internal server error; see the registry's log",
        )
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        use RegistryError as E;
        use StatusCode as S;
        let message = e.to_string();
        match e {
            E::BlobUnknown(d) => Self::new(S::NOT_FOUND, ErrorCode::BlobUnknown, message)
                .detail(serde_json::json!({ "digest": d.to_string() })),
            E::UploadUnknown(_) => Self::new(S::NOT_FOUND, ErrorCode::BlobUploadUnknown, message),
            E::ChunkOutOfOrder { expected, .. } => {
                let mut err = Self::new(
                    S::RANGE_NOT_SATISFIABLE,
                    ErrorCode::BlobUploadInvalid,
                    message,
                );
                err.content_range = Some(crate::handlers::uploads::range_header(expected));
                err
            }
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
                let mut err = Self::with_code(S::RANGE_NOT_SATISFIABLE, "RANGE_INVALID", message);
                err.content_range = Some(format!("bytes */{size}"));
                err
            }
            E::DeleteDisabled => Self::new(S::METHOD_NOT_ALLOWED, ErrorCode::Unsupported, message),
            E::Store(marina_store::Error::Unavailable(_)) => {
                tracing::error!(error = %message, "storage unavailable");
                Self::new(
                    S::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "storage is unavailable; try again",
                )
            }
            E::Store(_) => Self::internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{ "code": self.code, "message": self.message, "detail": self.detail }]
        });
        let mut response = crate::handlers::json(self.status, &body);
        if let Some(range) = self
            .content_range
            .and_then(|r| HeaderValue::from_str(&r).ok())
        {
            let name = if self.status == StatusCode::RANGE_NOT_SATISFIABLE
                && self.code == "RANGE_INVALID"
            {
                header::CONTENT_RANGE
            } else {
                header::RANGE
            };
            response.headers_mut().insert(name, range);
        }
        response
    }
}
