//! The two byte-range headers a registry parses: `Content-Range` on an upload chunk, and
//! `Range` on a blob read. Public so the fuzz targets can reach them.

use marina_registry::ByteRange;

use crate::error::ApiError;

/// The first byte of an upload chunk from its `Content-Range` (`a-b`, or `bytes a-b/total`),
/// checked against the request's `Content-Length` when it has one.
///
/// # Errors
/// A 416 naming the header when the value is not a range, ends before it starts, or
/// disagrees with `Content-Length`.
pub fn chunk_start(value: &str, content_length: Option<u64>) -> Result<u64, ApiError> {
    let invalid = || ApiError::range_header_invalid("Content-Range", value);
    let spec = value.trim().trim_start_matches("bytes").trim();
    let spec = spec.split('/').next().unwrap_or("");
    let (a, b) = spec.split_once('-').ok_or_else(invalid)?;
    let (start, end) = (
        a.trim().parse::<u64>().map_err(|_| invalid())?,
        b.trim().parse::<u64>().map_err(|_| invalid())?,
    );
    if end < start {
        return Err(invalid());
    }
    if content_length.is_some_and(|n| n != end - start + 1) {
        return Err(invalid());
    }
    Ok(start)
}

/// A blob read's `Range`: `bytes=a-b`, `bytes=a-` or `bytes=-n` (one range; several are
/// refused). A range in any other unit is ignored, as RFC 9110 requires: `None`, and the whole
/// blob is sent.
///
/// # Errors
/// A 416 naming the header for a malformed range in bytes.
pub fn byte_range(value: &str) -> Result<Option<ByteRange>, ApiError> {
    let invalid = || ApiError::range_header_invalid("Range", value);
    let Some((unit, spec)) = value.trim().split_once('=') else {
        return Ok(None);
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or_else(invalid)?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| invalid());
    match (a.trim().is_empty(), b.trim().is_empty()) {
        (false, false) => Ok(Some(ByteRange::FromTo(num(a)?, num(b)?))),
        (false, true) => Ok(Some(ByteRange::From(num(a)?))),
        (true, false) => Ok(Some(ByteRange::Last(num(b)?))),
        (true, true) => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ranges_parse_and_agree_with_the_length() {
        assert_eq!(chunk_start("0-99", Some(100)).unwrap(), 0);
        assert_eq!(chunk_start("bytes 100-199/*", None).unwrap(), 100);
        for bad in ["", "5", "9-3", "a-b", "0-99"] {
            assert!(chunk_start(bad, Some(5)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn byte_ranges_parse_and_other_units_are_ignored() {
        assert_eq!(
            byte_range("bytes=1-2").unwrap(),
            Some(ByteRange::FromTo(1, 2))
        );
        assert_eq!(byte_range("BYTES=-5").unwrap(), Some(ByteRange::Last(5)));
        assert_eq!(byte_range("lines=1-2").unwrap(), None);
        assert_eq!(byte_range("nonsense").unwrap(), None);
        assert!(byte_range("bytes=x-2").is_err());
        assert!(byte_range("bytes=-").is_err());
    }
}
