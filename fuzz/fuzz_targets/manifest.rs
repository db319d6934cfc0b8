//! Manifest and index inspection on any bytes and content type: a manifest or an error, never
//! a panic; what it says it references can be listed and described.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marina_oci::Manifest;

const TYPES: [Option<&str>; 5] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
];

fuzz_target!(|input: (u8, &[u8])| {
    let (which, bytes) = input;
    let content_type = TYPES[usize::from(which) % TYPES.len()];
    if let Ok(manifest) = Manifest::parse(bytes, content_type) {
        let _ = manifest.required_blobs().count();
        let _ = manifest.effective_artifact_type();
    }
});
