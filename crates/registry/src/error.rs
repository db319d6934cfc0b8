//! The registry's errors: one variant per way an OCI request can fail.

use marina_oci::{Digest, ManifestError, RepoName};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The blob is not in the repository.
    #[error("blob {0} is not in this repository")]
    BlobUnknown(Digest),
    /// The upload session does not exist (or expired, or was cancelled).
    #[error("upload session {0} is unknown or has expired")]
    UploadUnknown(String),
    /// A chunk does not start where the session ends.
    #[error("chunk starts at byte {got} but the upload holds {expected} bytes")]
    ChunkOutOfOrder {
        /// The session's length.
        expected: u64,
        /// The chunk's first byte.
        got: u64,
    },
    /// The request's body ended before its declared length (the client went away).
    #[error("the request body ended early: {0}")]
    BodyIncomplete(String),
    /// Uploaded content does not match the digest the client gave.
    #[error("content digest is {actual}, not {expected}")]
    DigestMismatch {
        /// The digest the client gave.
        expected: Digest,
        /// The digest of what was received.
        actual: Digest,
    },
    /// The manifest is unknown.
    #[error("manifest {0} is not in this repository")]
    ManifestUnknown(String),
    /// The manifest is malformed.
    #[error(transparent)]
    ManifestInvalid(#[from] ManifestError),
    /// The manifest references a blob or manifest the repository lacks.
    #[error("the manifest references {0}, which is not in this repository")]
    ManifestBlobUnknown(Digest),
    /// The manifest exceeds the size limit.
    #[error("the manifest is larger than the limit of {limit} bytes")]
    ManifestTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The repository does not exist.
    #[error("repository {0} is not known")]
    NameUnknown(RepoName),
    /// The requested byte range lies outside the blob.
    #[error("range is not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable {
        /// The blob's size.
        size: u64,
    },
    /// Deletes are turned off.
    #[error("deletes are disabled on this registry")]
    DeleteDisabled,
    /// A retention rule forbids moving or deleting the tag.
    #[error("tag {tag} is immutable under the retention rule for {rule:?}")]
    TagImmutable {
        /// The tag.
        tag: String,
        /// The pattern of the rule that protects it.
        rule: String,
    },
    /// Garbage collection is removing content this request relies on; retrying later works.
    #[error("garbage collection is removing {0}; retry in a few seconds")]
    Collecting(String),
    /// A proxy's upstream could not answer, and nothing cached could.
    #[error("{0}")]
    Upstream(String),
    /// A proxy's upstream answered something wrong (a digest mismatch); nothing was cached.
    #[error("the upstream registry failed: {0}")]
    UpstreamInvalid(String),
    /// The storage failed.
    #[error(transparent)]
    Store(marina_store::Error),
}

impl From<marina_store::Error> for Error {
    fn from(e: marina_store::Error) -> Self {
        match e {
            marina_store::Error::Input(source) => Self::BodyIncomplete(source.to_string()),
            other => Self::Store(other),
        }
    }
}

/// The registry's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
