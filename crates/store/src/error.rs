//! The storage layer's errors.

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No object under that key.
    #[error("no object under key {0}")]
    NotFound(String),
    /// The input stream failed (for example, the client went away mid-upload).
    #[error("reading the input failed: {0}")]
    Input(std::io::Error),
    /// The backend failed. (The cause is in the message, so it is not also a `source`: error
    /// chains would print it twice.)
    #[error("storage I/O failed on {key}: {cause}")]
    Io {
        /// The key being worked on.
        key: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// The backend cannot be reached for now.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// Too many writes are under way for the memory they may use; the client should retry.
    #[error("storage is busy: {0}")]
    Busy(String),
}

impl Error {
    /// Wraps an I/O error met while working on `key`; a missing file becomes [`Error::NotFound`].
    pub fn io(key: impl std::fmt::Display, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            Self::NotFound(key.to_string())
        } else {
            Self::Io {
                key: key.to_string(),
                cause: source,
            }
        }
    }

    /// A staging object that does not hold the bytes its writer counted: nothing is promoted.
    pub(crate) fn staged_length(key: impl std::fmt::Display, held: &str, expected: u64) -> Self {
        Self::io(
            key,
            std::io::Error::other(format!(
                "the staged data holds {held}, not the {expected} bytes the upload counted; \
                 nothing was committed"
            )),
        )
    }

    /// Whether this is [`Error::NotFound`].
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }
}

/// The storage layer's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
