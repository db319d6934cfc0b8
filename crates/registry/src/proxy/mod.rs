//! The pull-through cache: repositories under a proxy's prefix mirror an upstream registry.
//! A read that misses fetches from the upstream (`marina-upstream`), stores what it fetched
//! like any pushed content (so replicas share it, and GC and fsck see it), and answers.
//! Manifests by digest and blobs are kept; a tag is trusted for `tag_ttl`, then re-checked
//! with a `HEAD`. Concurrent misses for one object share one fetch ([`flights`]), and a blob
//! streams to every waiting client while it downloads ([`download`]).

mod blobs;
mod download;
pub(crate) mod eviction;
mod flights;
mod manifests;
mod referrers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use marina_oci::{Digest, RepoName};
use marina_upstream::Remote;

use crate::{Error, Registry};

/// What to do when the upstream cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUpstreamError {
    /// Serve what is cached, even a tag past its TTL; 503 for what never was.
    ServeCached,
    /// 503 for anything that needs the upstream.
    Fail,
}

/// One `[[proxy]]`.
#[derive(Debug)]
pub struct Proxy {
    /// The first component(s) of the local names it serves, such as `docker.io`.
    pub prefix: String,
    /// The upstream registry.
    pub remote: Remote,
    /// How long a tag's answer is trusted before it is checked again.
    pub tag_ttl: Duration,
    /// What happens when the upstream fails.
    pub on_upstream_error: OnUpstreamError,
    /// Cached images beyond this many bytes go, least recently pulled first (at GC).
    pub max_bytes: Option<u64>,
    /// Cached images not pulled for this long go (at GC).
    pub max_age: Option<Duration>,
}

impl Proxy {
    /// Whether the upstream is Docker Hub, where single names live under `library/`.
    fn is_docker_hub(&self) -> bool {
        let host = self
            .remote
            .base()
            .split_once("://")
            .map_or("", |(_, rest)| rest);
        let host = host.split(['/', ':']).next().unwrap_or("");
        matches!(
            host,
            "registry-1.docker.io" | "registry.hub.docker.com" | "index.docker.io" | "docker.io"
        )
    }
}

/// A local repository under a proxy: the proxy, and the name upstream.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) upstream: String,
}

/// Which proxy, if any, serves a repository.
pub(crate) fn route(proxies: &[Arc<Proxy>], repo: &RepoName) -> Option<Route> {
    proxies.iter().find_map(|proxy| {
        let rest = repo
            .as_str()
            .strip_prefix(&proxy.prefix)?
            .strip_prefix('/')?;
        let upstream = if proxy.is_docker_hub() && !rest.contains('/') {
            format!("library/{rest}")
        } else {
            rest.to_owned()
        };
        Some(Route {
            proxy: Arc::clone(proxy),
            upstream,
        })
    })
}

/// What one process remembers for its proxies: fetches under way, and when tags were checked.
#[derive(Debug, Default)]
pub(crate) struct State {
    manifests: flights::Flights<crate::StoredManifest>,
    blobs: flights::Flights<Arc<download::Download>>,
    /// Blob downloads under way (or storing what they fetched), by `repo@digest`.
    downloads: Mutex<HashMap<String, Arc<download::Download>>>,
    /// When each proxied `repo:tag` was last confirmed upstream.
    checked: Mutex<HashMap<String, Instant>>,
}

/// Tag checks remembered at most; past that, the memory starts afresh (tags are re-checked).
const CHECKED_AT_MOST: usize = 100_000;

impl State {
    fn fresh(&self, key: &str, ttl: Duration) -> bool {
        self.checked().get(key).is_some_and(|at| at.elapsed() < ttl)
    }

    fn confirm(&self, key: String) {
        let mut checked = self.checked();
        if checked.len() >= CHECKED_AT_MOST {
            checked.clear();
        }
        checked.insert(key, Instant::now());
    }

    fn checked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn download(&self, key: &str) -> Option<Arc<download::Download>> {
        self.downloads().get(key).cloned()
    }

    fn started(&self, key: &str, download: Arc<download::Download>) {
        self.downloads().insert(key.to_owned(), download);
    }

    fn finished(&self, key: &str) {
        self.downloads().remove(key);
    }

    fn downloads(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<download::Download>>> {
        self.downloads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Registry {
    /// Whether `repo` lies under a proxy's prefix (a read-only mirror).
    #[must_use]
    pub fn is_proxied(&self, repo: &RepoName) -> bool {
        route(&self.config.proxies, repo).is_some()
    }

    /// The proxy whose prefix is `prefix`, if any (for the `ns` query parameter).
    #[must_use]
    pub fn proxy_prefix(&self, prefix: &str) -> Option<&str> {
        self.config
            .proxies
            .iter()
            .find(|p| p.prefix == prefix)
            .map(|p| p.prefix.as_str())
    }

    pub(crate) fn route(&self, repo: &RepoName) -> Option<Route> {
        route(&self.config.proxies, repo)
    }
}

/// An upstream failure as the client sees it; `unknown` is the 404 to give.
fn upstream_error(e: marina_upstream::Error, unknown: impl FnOnce() -> Error) -> Error {
    match e {
        marina_upstream::Error::NotFound(_) => unknown(),
        invalid @ marina_upstream::Error::Invalid(_) => Error::UpstreamInvalid(invalid.to_string()),
        other => Error::Upstream(other.to_string()),
    }
}

/// Counts a hit or a miss of `proxy`.
fn count(proxy: &Proxy, hit: bool) {
    crate::metrics::proxy_request(&proxy.prefix, hit);
}

/// Whether `digest` is what `bytes` hash to under its algorithm.
fn matches(digest: &Digest, bytes: &[u8]) -> bool {
    digest.algorithm().digest_of(bytes) == *digest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(prefix: &str, remote: &str) -> Arc<Proxy> {
        let settings = marina_upstream::Settings::anonymous(remote);
        Arc::new(Proxy {
            prefix: prefix.into(),
            remote: Remote::new(settings).unwrap(),
            tag_ttl: Duration::from_secs(60),
            on_upstream_error: OnUpstreamError::ServeCached,
            max_bytes: None,
            max_age: None,
        })
    }

    fn upstream_of(proxies: &[Arc<Proxy>], name: &str) -> Option<String> {
        route(proxies, &name.parse().unwrap()).map(|r| r.upstream)
    }

    #[test]
    fn names_under_a_prefix_map_upstream_and_docker_hub_gets_library() {
        let proxies = [
            proxy("docker.io", "https://registry-1.docker.io"),
            proxy("ghcr.io", "https://ghcr.io/"),
        ];
        let up = |name| upstream_of(&proxies, name);
        assert_eq!(up("docker.io/alpine").as_deref(), Some("library/alpine"));
        assert_eq!(
            up("docker.io/bitnami/redis").as_deref(),
            Some("bitnami/redis")
        );
        assert_eq!(
            up("ghcr.io/alpine").as_deref(),
            Some("alpine"),
            "not Docker Hub"
        );
        assert_eq!(up("ghcr.io/a/b/c").as_deref(), Some("a/b/c"));
        assert_eq!(up("docker.iox/alpine"), None, "whole components only");
        assert_eq!(up("local/app"), None);
        assert_eq!(
            up("docker.io"),
            None,
            "the prefix alone is not a mirrored name"
        );
    }
}
