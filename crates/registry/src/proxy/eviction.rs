//! Eviction of cached images, through garbage collection. A pull of a cached manifest renews
//! its link's stamp (at most every [`touch_interval`]), so the stamp says when it was last
//! pulled. Before a pass judges repositories, each proxy with `max_age` or `max_bytes` gets a
//! cutoff: manifests last pulled before it are no longer roots, and tags naming them are
//! dropped. `max_bytes` keeps the most recently pulled images whose distinct bytes fit the
//! budget. What they alone referenced then goes the way of any garbage, with the same guards.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use marina_oci::{Digest, Manifest, RepoName};

use super::{Proxy, Route, route};
use crate::gc::scan::RepoKeys;
use crate::stamp::{self, Stamped};
use crate::{Registry, Result, keys};

/// The longest time between two renewals of a pulled manifest's stamp.
const TOUCH_AT_MOST_EVERY: Duration = Duration::from_secs(3600);

/// How stale a pulled manifest's stamp may get before a pull renews it: a sixteenth of
/// `max_age`, at most an hour; `None` without a budget (nothing to renew for).
pub(crate) fn touch_interval(proxy: &Proxy) -> Option<Duration> {
    match (proxy.max_age, proxy.max_bytes) {
        (None, None) => None,
        (Some(age), _) => Some((age / 16).min(TOUCH_AT_MOST_EVERY)),
        (None, Some(_)) => Some(TOUCH_AT_MOST_EVERY),
    }
}

/// A cached manifest, for the `max_bytes` ranking.
struct Pulled {
    at_ms: u64,
    repo: RepoName,
    digest: Digest,
    media_type: String,
}

impl Registry {
    /// Renews the stamp of a manifest just served from the cache, when its proxy evicts and the
    /// stamp is older than the touch interval.
    pub(crate) async fn touch(
        &self,
        route: &Route,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<()> {
        let Some(every) = touch_interval(&route.proxy) else {
            return Ok(());
        };
        if self.is_read_only() {
            return Ok(());
        }
        let link = keys::manifest_link(repo, digest);
        let stale = |current: &Stamped| current.age(stamp::now_ms()) > every;
        // Most hits find a fresh stamp: only a renewal pays for the guard (a sweep listing).
        if !self.read_link(&link).await?.is_some_and(|c| stale(&c)) {
            return Ok(());
        }
        let relied = [keys::blob(digest), link.clone(), keys::catalog_entry(repo)];
        self.guarded(&relied, || async {
            match self.read_link(&link).await? {
                Some(current) if stale(&current) => Ok(self
                    .store
                    .put(&link, stamp::encode(&current.payload))
                    .await?),
                _ => Ok(()),
            }
        })
        .await
    }

    /// Per proxy prefix, the time (Unix ms) before which its cached manifests count as not
    /// pulled recently enough to keep.
    pub(crate) async fn eviction_cutoffs(
        &self,
        repos: &[RepoKeys],
        now_ms: u64,
    ) -> Result<HashMap<String, u64>> {
        let mut cutoffs = HashMap::new();
        for proxy in &self.config.proxies {
            let by_age = proxy.max_age.map(|age| {
                now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
            });
            let by_bytes = match proxy.max_bytes {
                Some(budget) => self.budget_cutoff(proxy, repos, budget).await?,
                None => None,
            };
            if let Some(cutoff) = by_age.into_iter().chain(by_bytes).max() {
                cutoffs.insert(proxy.prefix.clone(), cutoff);
            }
        }
        Ok(cutoffs)
    }

    /// The cutoff of a proxy's repositories under `route` (for a pass's verdict).
    pub(crate) fn cutoff_of(&self, cutoffs: &HashMap<String, u64>, repo: &RepoName) -> Option<u64> {
        let route = route(&self.config.proxies, repo)?;
        cutoffs.get(&route.proxy.prefix).copied()
    }

    /// The time before which images fall outside `budget`: newest pulled first, each image's
    /// manifest and the blobs no newer image counted, until the total passes the budget.
    async fn budget_cutoff(
        &self,
        proxy: &Proxy,
        repos: &[RepoKeys],
        budget: u64,
    ) -> Result<Option<u64>> {
        let mut pulled = self.pulled_manifests(proxy, repos).await?;
        pulled.sort_by_key(|p| std::cmp::Reverse(p.at_ms));
        let mut counted: HashSet<Digest> = HashSet::new();
        let mut total = 0u64;
        for image in pulled {
            let body = match self.store.get_cold(&keys::blob(&image.digest)).await {
                Ok(body) => body,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            total += body.len() as u64;
            if let Ok(manifest) = Manifest::parse(&body, Some(&image.media_type)) {
                let blobs = manifest.config.iter().chain(&manifest.layers);
                for blob in blobs {
                    if counted.insert(blob.digest.clone()) {
                        total += blob.size;
                    }
                }
            }
            if total > budget {
                tracing::debug!(repo = %image.repo, digest = %image.digest, "past the cache's max_bytes");
                return Ok(Some(image.at_ms + 1));
            }
        }
        Ok(None)
    }

    /// Every cached manifest under the proxy, with when it was last pulled.
    async fn pulled_manifests(&self, proxy: &Proxy, repos: &[RepoKeys]) -> Result<Vec<Pulled>> {
        let mut pulled = Vec::new();
        let mine = repos.iter().filter(|r| {
            route(&self.config.proxies, &r.name)
                .is_some_and(|route| route.proxy.prefix == proxy.prefix)
        });
        for repo in mine {
            for digest in &repo.manifests {
                let link = keys::manifest_link(&repo.name, digest);
                if let Some(Stamped { payload, at_ms }) = self.read_link_cold(&link).await? {
                    pulled.push(Pulled {
                        at_ms,
                        repo: repo.name.clone(),
                        digest: digest.clone(),
                        media_type: payload,
                    });
                }
            }
        }
        Ok(pulled)
    }
}
