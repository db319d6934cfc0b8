//! Online garbage collection and retention: mark from tags, index children, referrers of live
//! subjects, configs and layers; publish what is unmarked and older than the grace period;
//! look again after writes in flight have settled; delete what both passes doomed. Safe with
//! pushes, deletes and other collectors running on any replica; `docs/gc.md` has the proof.

mod mark;
mod progress;
mod run;
pub(crate) mod scan;
pub(crate) mod sweeps;

pub use progress::{Phase, Progress, ProgressSnapshot};
pub use run::{Options, Report};

use serde::{Deserialize, Serialize};

/// What kind of object a doomed key is, in the order a sweep deletes them: what points comes
/// before what is pointed at, so a run cut short leaves nothing dangling that the next run
/// would not find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A tag a retention policy drops.
    Tag,
    /// A referrer entry under its subject.
    Referrer,
    /// A manifest's link in a repository.
    Manifest,
    /// A blob's link in a repository.
    BlobLink,
    /// Stored content no link names.
    Content,
    /// The catalog entry of a repository left empty.
    CatalogEntry,
}

/// One key a run deletes (or, in a dry run, would delete), and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Doomed {
    /// The storage key.
    pub key: String,
    /// What it is.
    pub kind: Kind,
    /// Its repository, unless it is shared content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The tag or digest it stands for.
    pub what: String,
    /// The rule that dooms it.
    pub reason: String,
}
