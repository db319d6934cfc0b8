//! What an append to a staging object hands back: the new length, and the name of the part
//! that holds its bytes. A caller that records the parts it hashed, and promotes exactly those,
//! can never commit bytes another writer put at the same offset.

/// The name of one append's bytes within a staging object. Backends with a single writer per
/// staging object (one file, under the caller's lock) name none.
pub type Part = String;

/// The outcome of [`crate::Store::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The staging object's length after the append.
    pub length: u64,
    /// The part holding the appended bytes, where the backend keeps parts apart.
    pub part: Option<Part>,
}

impl Appended {
    /// An append to a backend that keeps one object per staging key.
    #[must_use]
    pub fn whole(length: u64) -> Self {
        Self { length, part: None }
    }
}
