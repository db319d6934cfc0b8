//! Content digests (`algorithm:hex`), the algorithms marina accepts, and a resumable hasher.

use std::fmt;
use std::str::FromStr;

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm marina accepts. Others (even ones the spec registers) are refused, so
/// every digest that reaches a storage key has a known, fixed shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the default.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as written in a digest.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// The length of the hex-encoded digest.
    #[must_use]
    pub fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }

    /// A fresh hasher for this algorithm.
    #[must_use]
    pub fn hasher(self) -> Hasher {
        match self {
            Self::Sha256 => Hasher::Sha256(Sha256::new()),
            Self::Sha512 => Hasher::Sha512(Box::new(Sha512::new())),
        }
    }

    /// The digest of `data` under this algorithm.
    #[must_use]
    pub fn digest_of(self, data: &[u8]) -> Digest {
        let mut hasher = self.hasher();
        hasher.update(data);
        hasher.finish()
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(Self::Sha256),
            "sha512" => Ok(Self::Sha512),
            other => Err(DigestError::UnsupportedAlgorithm(other.to_owned())),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a digest marina accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `:` separates algorithm and encoded part.
    #[error("digest {0:?} is not of the form algorithm:hex")]
    Malformed(String),
    /// The algorithm is not sha256 or sha512.
    #[error("digest algorithm {0:?} is not supported (accepted: sha256, sha512)")]
    UnsupportedAlgorithm(String),
    /// The encoded part has the wrong length or non-lowercase-hex characters.
    #[error("digest {0:?} does not have the {1} lowercase hex characters its algorithm needs")]
    BadHex(String, usize),
}

/// A validated digest: a supported algorithm and lowercase hex of exactly the right length.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// The digest's algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex-encoded part, safe to use as a path component.
    #[must_use]
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Builds a digest from an algorithm and a hex part (validated).
    ///
    /// # Errors
    /// When `hex` is not lowercase hex of the algorithm's length.
    pub fn from_parts(algorithm: Algorithm, hex: &str) -> Result<Self, DigestError> {
        let valid = hex.len() == algorithm.hex_len()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(DigestError::BadHex(
                format!("{algorithm}:{hex}"),
                algorithm.hex_len(),
            ));
        }
        Ok(Self {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Malformed(s.to_owned()))?;
        Self::from_parts(alg.parse()?, hex).map_err(|_| {
            DigestError::BadHex(
                s.to_owned(),
                alg.parse::<Algorithm>().map_or(0, Algorithm::hex_len),
            )
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A streaming hasher whose state can be saved between requests (and replicas) and resumed.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(Sha256),
    /// SHA-512 state (boxed: it is twice the size).
    Sha512(Box<Sha512>),
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    /// The algorithm this hasher computes.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Sha256(_) => Algorithm::Sha256,
            Self::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// The digest of everything fed so far.
    #[must_use]
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Self::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Self::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }

    /// The internal state, to persist between the chunks of an upload.
    #[must_use]
    pub fn save(&self) -> Vec<u8> {
        match self {
            Self::Sha256(h) => h.serialize().to_vec(),
            Self::Sha512(h) => h.serialize().to_vec(),
        }
    }

    /// Resumes a hasher from [`Hasher::save`]'s bytes.
    ///
    /// # Errors
    /// When the bytes are not a saved state of that algorithm.
    pub fn restore(algorithm: Algorithm, state: &[u8]) -> Result<Self, DigestError> {
        let bad = || DigestError::Malformed(format!("saved {algorithm} hasher state"));
        Ok(match algorithm {
            Algorithm::Sha256 => {
                let state = state.try_into().map_err(|_| bad())?;
                Self::Sha256(Sha256::deserialize(state).map_err(|_| bad())?)
            }
            Algorithm::Sha512 => {
                let state = state.try_into().map_err(|_| bad())?;
                Self::Sha512(Box::new(Sha512::deserialize(state).map_err(|_| bad())?))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_valid_digests() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY_SHA256);
        assert_eq!(Algorithm::Sha256.digest_of(b""), d);
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../../../etc/passwd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85\0",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn saved_state_resumes_to_the_same_digest() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut first = alg.hasher();
            first.update(b"hello, ");
            let mut resumed = Hasher::restore(alg, &first.save()).unwrap();
            resumed.update(b"world");
            assert_eq!(resumed.finish(), alg.digest_of(b"hello, world"));
        }
    }

    #[test]
    fn restore_rejects_garbage() {
        assert!(Hasher::restore(Algorithm::Sha256, b"short").is_err());
    }
}
