//! Deterministic pseudo-random content, generated on the fly from a seed: any byte range of a
//! blob can be produced without the bytes before it, so a 1 GiB blob is hashed and sent piece by
//! piece and never held in memory. Also the run's random numbers and the sha256 digest strings.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

/// Bytes handed to the HTTP client at a time.
const PIECE: u64 = 256 * 1024;

/// The 64-bit finaliser of splitmix64: a good mix of any counter.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// A blob's content: `size` bytes, the same for the same seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blob {
    pub(crate) seed: u64,
    pub(crate) size: u64,
}

impl Blob {
    /// The bytes in `range`, which must lie within the blob.
    pub(crate) fn slice(&self, range: Range<u64>) -> Bytes {
        let first_word = range.start / 8;
        let words = range.end.div_ceil(8) - first_word;
        let mut buffer = vec![0u8; usize::try_from(words * 8).expect("piece fits in memory")];
        for (i, word) in buffer.chunks_exact_mut(8).enumerate() {
            let index = first_word + i as u64;
            let value = mix(self.seed.wrapping_add(index.wrapping_mul(GOLDEN)));
            word.copy_from_slice(&value.to_le_bytes());
        }
        let skip = (range.start % 8) as usize;
        let length = (range.end - range.start) as usize;
        Bytes::from(buffer).slice(skip..skip + length)
    }

    /// The whole blob in one piece (for small blobs).
    pub(crate) fn bytes(&self) -> Bytes {
        self.slice(0..self.size)
    }

    /// The bytes in `range`, a piece at a time.
    pub(crate) fn pieces(&self, range: Range<u64>) -> impl Iterator<Item = Bytes> + Send + use<> {
        let blob = *self;
        (range.start..range.end)
            .step_by(PIECE as usize)
            .map(move |start| blob.slice(start..(start + PIECE).min(range.end)))
    }

    /// A request body streaming the bytes of `range`, adding each piece's length to `sent`.
    pub(crate) fn body(&self, range: Range<u64>, sent: Arc<AtomicU64>) -> reqwest::Body {
        let pieces = self.pieces(range).map(move |piece| {
            sent.fetch_add(piece.len() as u64, Ordering::Relaxed);
            Ok::<_, std::convert::Infallible>(piece)
        });
        reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
    }

    /// The sha256 digest of the whole blob, computed piece by piece.
    pub(crate) fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for piece in self.pieces(0..self.size) {
            hasher.update(&piece);
        }
        digest_string(hasher)
    }
}

/// `sha256:<hex>` of what the hasher has seen.
pub(crate) fn digest_string(hasher: Sha256) -> String {
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// `sha256:<hex>` of `data`.
pub(crate) fn sha256(data: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(data);
    digest_string(hasher)
}

/// A stream of random numbers (splitmix64), for seeds, repository suffixes and `last` values.
#[derive(Debug, Clone)]
pub(crate) struct Random(u64);

impl Random {
    /// The sequence that starts from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Seeded from the clock and the process id, so every run differs.
    pub(crate) fn from_entropy() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self(mix(nanos ^ u64::from(std::process::id()).rotate_left(32)))
    }

    /// The next number.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// A number in `0..bound` (bound > 0).
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_range_matches_the_whole() {
        let blob = Blob {
            seed: 7,
            size: 3 * PIECE + 13,
        };
        let whole = blob.bytes();
        assert_eq!(whole.len() as u64, blob.size);
        assert_eq!(blob.slice(5..29), whole.slice(5..29));
        let pieced: Vec<u8> = blob.pieces(3..blob.size).flat_map(|p| p.to_vec()).collect();
        assert_eq!(pieced, whole[3..]);
        assert_eq!(blob.digest(), sha256(&whole));
    }

    #[test]
    fn seeds_give_different_content() {
        let a = Blob { seed: 1, size: 64 };
        let b = Blob { seed: 2, size: 64 };
        assert_ne!(a.bytes(), b.bytes());
        assert_eq!(a.bytes(), Blob { seed: 1, size: 64 }.bytes());
    }
}
