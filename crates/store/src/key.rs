//! Storage keys: `/`-separated relative paths that cannot escape the store.

use std::fmt;

/// A validated key: non-empty segments of printable ASCII, none `.` or `..`, no leading `/`.
/// A key that ends with `/` is a prefix (a folder).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

/// Why a string is not a key.
#[derive(Debug, thiserror::Error)]
#[error("invalid storage key {0:?}")]
pub struct KeyError(String);

impl Key {
    /// Validates a key. Registry code builds keys only from validated names and digests, so a
    /// failure here is a bug, and refusing it keeps the bug from reaching the disk.
    ///
    /// # Errors
    /// When a segment is empty, `.` or `..`, or a byte is not printable ASCII.
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        let body = key.strip_suffix('/').unwrap_or(&key);
        let valid = !body.is_empty()
            && body.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
            && body
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..");
        if valid {
            Ok(Self(key))
        } else {
            Err(KeyError(key))
        }
    }

    /// The key as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this key names a prefix (ends with `/`).
    #[must_use]
    pub fn is_prefix(&self) -> bool {
        self.0.ends_with('/')
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_keys_that_could_escape() {
        for bad in [
            "",
            "/",
            "/etc/passwd",
            "a/../b",
            "..",
            "a//b",
            "./a",
            "a\0b",
            "a b",
            "a\\b",
        ] {
            assert!(Key::new(bad).is_err(), "{bad:?} was accepted");
        }
        for ok in ["a", "a/b", "repos/x/_tags/", "blobs/sha256/ab/abcd"] {
            assert!(Key::new(ok).is_ok(), "{ok:?} was refused");
        }
    }
}
