//! The error codes of the distribution spec, as they appear in an error body.

/// A code from the spec's error table (plus `UNAVAILABLE` for storage outages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The blob is unknown to the repository.
    BlobUnknown,
    /// The upload failed or its request was out of order.
    BlobUploadInvalid,
    /// The upload session is unknown or expired.
    BlobUploadUnknown,
    /// The content does not match the digest given.
    DigestInvalid,
    /// A manifest references a blob the repository does not have.
    ManifestBlobUnknown,
    /// The manifest is malformed or inconsistent.
    ManifestInvalid,
    /// The manifest is unknown to the repository.
    ManifestUnknown,
    /// The repository name is invalid.
    NameInvalid,
    /// The repository is unknown.
    NameUnknown,
    /// A length or size does not match.
    SizeInvalid,
    /// Authentication is required.
    Unauthorized,
    /// Access is denied.
    Denied,
    /// The operation is not supported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
    /// The storage is out of reach for now (not in the spec's table; clients treat it as any 503).
    Unavailable,
    /// An internal fault (CNCF Distribution's code for a 500).
    Unknown,
}

impl ErrorCode {
    /// The code as written in the `code` field of an error body.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Self::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Self::ManifestInvalid => "MANIFEST_INVALID",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameInvalid => "NAME_INVALID",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::SizeInvalid => "SIZE_INVALID",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Denied => "DENIED",
            Self::Unsupported => "UNSUPPORTED",
            Self::TooManyRequests => "TOOMANYREQUESTS",
            Self::Unavailable => "UNAVAILABLE",
            Self::Unknown => "UNKNOWN",
        }
    }
}
