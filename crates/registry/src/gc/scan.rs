//! The listing half of a garbage collection pass: every repository's keys, grouped by
//! repository, the catalog's entries and the stored contents, a page at a time.
//!
//! A repository's keys all start with `<name>/_` and no other repository's can (components
//! never start with `_`), so they come out of the sorted listing of `repos/` together.

use marina_oci::{Digest, RepoName, Tag};
use marina_store::Key;

use super::Progress;
use crate::keys::{self, REPO_MARKER};
use crate::{Registry, Result};

/// Keys listed per page.
const PAGE: usize = 1000;

/// One repository's keys, by kind.
#[derive(Debug)]
pub(crate) struct RepoKeys {
    pub(crate) name: RepoName,
    pub(crate) blobs: Vec<Digest>,
    pub(crate) manifests: Vec<Digest>,
    pub(crate) tags: Vec<Tag>,
    /// `(subject, referrer)` pairs.
    pub(crate) referrers: Vec<(Digest, Digest)>,
    /// Upload sessions and anything unexpected: they keep the repository alive.
    pub(crate) others: usize,
}

impl RepoKeys {
    fn new(name: RepoName) -> Self {
        Self {
            name,
            blobs: Vec::new(),
            manifests: Vec::new(),
            tags: Vec::new(),
            referrers: Vec::new(),
            others: 0,
        }
    }

    /// Files one key, relative to the repository (`_blobs/sha256/<hex>` and so on).
    fn add(&mut self, rest: &str) {
        let parts: Vec<&str> = rest.split('/').collect();
        let digest = |alg: &str, hex: &str| format!("{alg}:{hex}").parse::<Digest>().ok();
        let filed = match parts.as_slice() {
            ["_blobs", alg, hex] => digest(alg, hex).map(|d| self.blobs.push(d)),
            ["_manifests", alg, hex] => digest(alg, hex).map(|d| self.manifests.push(d)),
            ["_tags", tag] => tag.parse().ok().map(|t| self.tags.push(t)),
            ["_referrers", alg, hex, entry] => digest(alg, hex)
                .zip(entry.split_once('-').and_then(|(a, h)| digest(a, h)))
                .map(|pair| self.referrers.push(pair)),
            _ => None,
        };
        if filed.is_none() {
            self.others += 1;
        }
    }
}

impl RepoKeys {
    /// The storage key of each of its blob and manifest links, with the digest it names.
    pub(crate) fn links(&self) -> impl Iterator<Item = (&Digest, String)> {
        let blobs = self.blobs.iter().map(|d| (d, "_blobs"));
        let manifests = self.manifests.iter().map(|d| (d, "_manifests"));
        blobs.chain(manifests).map(|(d, kind)| {
            let key = format!("repos/{}/{kind}/{}/{}", self.name, d.algorithm(), d.hex());
            (d, key)
        })
    }

    /// The storage keys of its tags and referrer entries.
    pub(crate) fn entries(&self) -> impl Iterator<Item = String> {
        let tags = self
            .tags
            .iter()
            .map(|t| format!("repos/{}/_tags/{t}", self.name));
        let referrers = self.referrers.iter().map(|(s, r)| {
            let (sa, sh, ra, rh) = (s.algorithm(), s.hex(), r.algorithm(), r.hex());
            format!("repos/{}/_referrers/{sa}/{sh}/{ra}-{rh}", self.name)
        });
        tags.chain(referrers)
    }
}

impl Registry {
    /// Every repository that has keys, with its keys.
    pub(crate) async fn scan_repos(&self, progress: &Progress) -> Result<Vec<RepoKeys>> {
        let mut repos: Vec<RepoKeys> = Vec::new();
        self.each_key(&keys::repos(), progress, |key| {
            let Some((name, rest)) = key.split_once("/_") else {
                return;
            };
            if repos.last().is_none_or(|r| r.name.as_str() != name) {
                match name.parse::<RepoName>() {
                    Ok(repo) => repos.push(RepoKeys::new(repo)),
                    Err(_) => return tracing::warn!(key, "a key under repos/ names no repository"),
                }
            }
            if let Some(repo) = repos.last_mut() {
                repo.add(&format!("_{rest}"));
            }
        })
        .await?;
        Ok(repos)
    }

    /// The names in the catalog.
    pub(crate) async fn scan_catalog(&self, progress: &Progress) -> Result<Vec<String>> {
        let mut names = Vec::new();
        self.each_key(&keys::catalog(), progress, |key| {
            if let Some(name) = key.strip_suffix(REPO_MARKER) {
                names.push(name.to_owned());
            }
        })
        .await?;
        Ok(names)
    }

    /// The digests of every stored content (blobs and manifests alike).
    pub(crate) async fn scan_contents(&self, progress: &Progress) -> Result<Vec<Digest>> {
        let mut digests = Vec::new();
        self.each_key(&keys::contents(), progress, |key| {
            let mut parts = key.split('/');
            let (Some(alg), Some(_), Some(hex)) = (parts.next(), parts.next(), parts.next()) else {
                return;
            };
            if let Ok(d) = format!("{alg}:{hex}").parse::<Digest>() {
                digests.push(d);
            }
        })
        .await?;
        Ok(digests)
    }

    /// Calls `each` on every key under `prefix` (relative to it), in order.
    async fn each_key(
        &self,
        prefix: &Key,
        progress: &Progress,
        mut each: impl FnMut(&str),
    ) -> Result<()> {
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list(prefix, after.as_deref(), PAGE).await?;
            progress.scanned(page.len());
            for key in &page {
                each(key);
            }
            if page.len() < PAGE {
                return Ok(());
            }
            after = page.last().cloned();
        }
    }
}
