//! Repository names, tags and references, validated by the spec's grammar before they are used.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The longest repository name accepted (the limit CNCF Distribution applies too).
pub const MAX_NAME_LEN: usize = 255;
/// The longest tag the spec's grammar allows.
pub const MAX_TAG_LEN: usize = 128;

/// Why a name, tag or reference is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The repository name breaks the spec's grammar.
    #[error(
        "repository name {0:?} is invalid: components of lowercase letters and digits, \
         separated by '.', '_', '__' or dashes, joined by '/'"
    )]
    Name(String),
    /// The repository name is longer than allowed.
    #[error("repository name is {0} characters long; at most {MAX_NAME_LEN} are allowed")]
    NameTooLong(usize),
    /// The tag breaks `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    #[error("tag {0:?} is invalid: it must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    Tag(String),
    /// A reference that looks like a digest but is not a valid one.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A repository name such as `library/alpine`: safe to use as a run of path components.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// The name as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong(s.len()));
        }
        if s.split('/').all(is_name_component) {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::Name(s.to_owned()))
        }
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, checked without a regex engine.
fn is_name_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    let mut separator = String::new();
    for &b in bytes {
        if alnum(&b) {
            let ok = matches!(separator.as_str(), "" | "." | "_" | "__")
                || separator.bytes().all(|s| s == b'-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator.push(char::from(b));
        } else {
            return false;
        }
    }
    true
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag such as `latest`: safe to use as a single path component.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// The tag as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let valid = (1..=MAX_TAG_LEN).contains(&bytes.len())
            && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::Tag(s.to_owned()))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest URL names: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A mutable tag.
    Tag(Tag),
    /// An immutable digest.
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = NameError;

    /// A reference with a `:` is a digest (tags cannot contain one); anything else is a tag.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Self::Digest(s.parse()?))
        } else {
            Ok(Self::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(t) => t.fmt(f),
            Self::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_of_the_spec_grammar() {
        for ok in [
            "a",
            "library/alpine",
            "a/b/c/d",
            "my-app",
            "my--app",
            "my.app",
            "my_app",
            "my__app",
            "0a",
            "conformance-ab1/cross",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok:?} was refused");
        }
    }

    #[test]
    fn refuses_names_outside_the_grammar() {
        let long = "a".repeat(256);
        for bad in [
            "",
            "/",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "%2e%2e",
            "A",
            "Upper/case",
            "a___b",
            "a_.b",
            ".a",
            "a.",
            "-a",
            "a b",
            "a\0b",
            "/etc/passwd",
            "a/_tags",
            long.as_str(),
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn tags_follow_the_grammar() {
        let max = "t".repeat(128);
        let over = "t".repeat(129);
        for ok in ["latest", "v1.0.0", "_x", "A-b_c.d", max.as_str()] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok:?} was refused");
        }
        for bad in ["", ".x", "-x", "a/b", "..", "a:b", "a\0", over.as_str()] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert!(matches!("latest".parse(), Ok(Reference::Tag(_))));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(d.parse(), Ok(Reference::Digest(_))));
        assert!("sha256:nothex".parse::<Reference>().is_err());
    }
}
