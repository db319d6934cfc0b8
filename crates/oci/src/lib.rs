//! The OCI vocabulary marina speaks: digests, repository names, tags, references, media types,
//! manifest inspection and the spec's error codes. No I/O, no async, no HTTP.

pub mod digest;
pub mod error_code;
pub mod manifest;
pub mod media_type;
pub mod name;
pub mod pattern;
pub mod time;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error_code::ErrorCode;
pub use manifest::{Descriptor, Manifest, ManifestError, ManifestKind};
pub use name::{NameError, Reference, RepoName, Tag};
pub use pattern::{RepoPattern, glob_matches};
