//! The storage key layout, the same on every backend. Every key is built here, from validated
//! names, tags, digests and session ids only.
//!
//! ```text
//! blobs/<alg>/<hex[0:2]>/<hex>                          content, written once
//! repos/<name>/_blobs/<alg>/<hex>                       the blob belongs to the repository
//! repos/<name>/_manifests/<alg>/<hex>                   the manifest belongs to it (holds its media type)
//! repos/<name>/_tags/<tag>                              the digest the tag points to
//! repos/<name>/_referrers/<alg>/<hex>/<alg>-<hex>       a referrer's descriptor, under its subject
//! repos/<name>/_uploads/<id>/{state,data}               an upload session
//! catalog/<name>/_repo                                  one key per repository
//! uploading/<name>/_repo                                the repository has had upload sessions
//! health/<instance>                                     a replica's readiness probe
//! gc/sweeps/<run>                                       what a garbage collection run deletes
//! ```
//! Name components never start with `_`, so `_tags` and friends cannot collide with a name.

use marina_oci::{Digest, RepoName, Tag};
use marina_store::Key;

use crate::uploads::UploadId;

fn key(s: String) -> Key {
    Key::new(s).expect("keys are built from validated parts")
}

pub(crate) fn blob(d: &Digest) -> Key {
    key(format!(
        "blobs/{}/{}/{}",
        d.algorithm(),
        &d.hex()[..2],
        d.hex()
    ))
}

pub(crate) fn blob_link(repo: &RepoName, d: &Digest) -> Key {
    key(format!("repos/{repo}/_blobs/{}/{}", d.algorithm(), d.hex()))
}

pub(crate) fn manifest_link(repo: &RepoName, d: &Digest) -> Key {
    key(format!(
        "repos/{repo}/_manifests/{}/{}",
        d.algorithm(),
        d.hex()
    ))
}

pub(crate) fn tag(repo: &RepoName, tag: &Tag) -> Key {
    key(format!("repos/{repo}/_tags/{tag}"))
}

pub(crate) fn tags(repo: &RepoName) -> Key {
    key(format!("repos/{repo}/_tags/"))
}

pub(crate) fn referrers(repo: &RepoName, subject: &Digest) -> Key {
    key(format!(
        "repos/{repo}/_referrers/{}/{}/",
        subject.algorithm(),
        subject.hex()
    ))
}

pub(crate) fn referrer(repo: &RepoName, subject: &Digest, referrer: &Digest) -> Key {
    let prefix = referrers(repo, subject);
    key(format!(
        "{prefix}{}-{}",
        referrer.algorithm(),
        referrer.hex()
    ))
}

pub(crate) fn uploads(repo: &RepoName) -> Key {
    key(format!("repos/{repo}/_uploads/"))
}

pub(crate) fn upload(repo: &RepoName, id: &UploadId) -> Key {
    key(format!("repos/{repo}/_uploads/{id}/"))
}

pub(crate) fn upload_state(repo: &RepoName, id: &UploadId) -> Key {
    key(format!("repos/{repo}/_uploads/{id}/state"))
}

pub(crate) fn upload_data(repo: &RepoName, id: &UploadId) -> Key {
    key(format!("repos/{repo}/_uploads/{id}/data"))
}

/// The suffix of a repository marker (`catalog/<name>/_repo`, `uploading/<name>/_repo`): a
/// name can be a prefix of another (`a`, `a/b`), so markers cannot be the names themselves.
pub(crate) const REPO_MARKER: &str = "/_repo";

pub(crate) fn catalog() -> Key {
    key("catalog/".to_owned())
}

pub(crate) fn catalog_entry(repo: &RepoName) -> Key {
    key(format!("catalog/{repo}{REPO_MARKER}"))
}

/// The readiness probe's key of one replica (`instance` is its random hex id).
pub(crate) fn health(instance: &str) -> Key {
    key(format!("health/{instance}"))
}

pub(crate) fn uploading() -> Key {
    key("uploading/".to_owned())
}

pub(crate) fn uploading_entry(repo: &RepoName) -> Key {
    key(format!("uploading/{repo}{REPO_MARKER}"))
}

/// Every repository's keys: `<name>/_blobs/...`, `<name>/_tags/...` and so on, relative.
pub(crate) fn repos() -> Key {
    key("repos/".to_owned())
}

/// Every blob's and manifest's content: `<alg>/<hex[0:2]>/<hex>`, relative.
pub(crate) fn contents() -> Key {
    key("blobs/".to_owned())
}

/// The published sweeps of garbage collection runs.
pub(crate) fn sweeps() -> Key {
    key("gc/sweeps/".to_owned())
}

/// One run's published sweep; `None` unless `run` is a run id (lowercase hex).
pub(crate) fn sweep(run: &str) -> Option<Key> {
    let valid = !run.is_empty()
        && run
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    valid.then(|| key(format!("gc/sweeps/{run}")))
}
