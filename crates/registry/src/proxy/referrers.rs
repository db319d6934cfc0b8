//! Referrer listings under a proxy: the upstream's answer, as it is now (signatures and SBOMs
//! are pushed after their subject, so a listing is never trusted from the cache while the
//! upstream can answer). When it cannot, or has no referrers API, the cached referrers answer.

use marina_oci::{Descriptor, Digest, RepoName};
use serde::Deserialize;

use super::{OnUpstreamError, Route};
use crate::{Error, ReferrersPage, Registry, Result};

/// The part of an image index a listing needs.
#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

impl Registry {
    /// The referrers of `subject` in a proxied repository (the upstream's first page).
    pub(crate) async fn proxied_referrers(
        &self,
        route: &Route,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        window: (Option<&str>, usize, usize),
    ) -> Result<ReferrersPage> {
        let (last, _, max_bytes) = window;
        if last.is_some() {
            return self
                .local_referrers(repo, subject, artifact_type, window)
                .await;
        }
        let remote = &route.proxy.remote;
        let answer = remote
            .referrers(
                &route.upstream,
                &subject.to_string(),
                artifact_type,
                max_bytes,
            )
            .await;
        let error = match answer {
            Ok(body) => match serde_json::from_slice::<Listing>(&body) {
                Ok(listing) => {
                    let descriptors = listing
                        .manifests
                        .into_iter()
                        .filter(|d| {
                            artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t))
                        })
                        .collect();
                    return Ok(ReferrersPage {
                        descriptors,
                        next: None,
                    });
                }
                Err(e) => {
                    marina_upstream::Error::Invalid(format!("its referrers of {subject}: {e}"))
                }
            },
            Err(e) => e,
        };
        let no_api = matches!(error, marina_upstream::Error::NotFound(_));
        if !no_api {
            crate::metrics::upstream_error(&route.proxy.prefix);
        }
        if no_api || route.proxy.on_upstream_error == OnUpstreamError::ServeCached {
            return self
                .local_referrers(repo, subject, artifact_type, window)
                .await;
        }
        Err(Error::Upstream(error.to_string()))
    }
}
