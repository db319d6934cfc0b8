//! `Content-Range` and `Range`: a start or range, or a 416, never a panic; a range that
//! resolves lies within the blob.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marina_http::ranges::{byte_range, chunk_start};

fuzz_target!(|input: (&str, Option<u64>, u64)| {
    let (value, content_length, size) = input;
    let _ = chunk_start(value, content_length);
    if let Ok(Some(range)) = byte_range(value)
        && let Some(span) = range.resolve(size)
    {
        assert!(
            span.start < span.end && span.end <= size,
            "{value:?} on {size}: {span:?}"
        );
    }
});
