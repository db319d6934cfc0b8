//! Names, tags, references and digests: whatever parses prints back to itself and parses
//! again to the same value.
#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use marina_oci::{Digest, Reference, RepoName, Tag};

fn round_trips<T: FromStr + ToString + PartialEq + std::fmt::Debug>(text: &str) {
    if let Ok(parsed) = text.parse::<T>() {
        let printed = parsed.to_string();
        let again = printed.parse::<T>().ok();
        assert_eq!(
            again.as_ref(),
            Some(&parsed),
            "{text:?} printed as {printed:?}"
        );
    }
}

fuzz_target!(|data: &str| {
    round_trips::<RepoName>(data);
    round_trips::<Tag>(data);
    round_trips::<Reference>(data);
    round_trips::<Digest>(data);
});
