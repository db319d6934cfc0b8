//! Tags: paged listing in byte order, and finding the tags of a deleted manifest.

use marina_oci::{Digest, RepoName, Tag};

use crate::{Error, Page, Registry, Result, keys};

impl Registry {
    /// Up to `n` tags after `last`, in byte order.
    ///
    /// # Errors
    /// [`Error::NameUnknown`] when the repository does not exist.
    pub async fn list_tags(&self, repo: &RepoName, last: Option<&str>, n: usize) -> Result<Page> {
        if !self.repo_exists(repo).await? {
            return Err(Error::NameUnknown(repo.clone()));
        }
        let mut items = self
            .store
            .list(&keys::tags(repo), last, n.saturating_add(1))
            .await?;
        let more = items.len() > n;
        items.truncate(n);
        Ok(Page { items, more })
    }

    /// Points a tag at a digest, stamped with the push time (kept when a repeated push finds
    /// it pointing there already, unless the stamp is past half the grace period).
    pub(crate) async fn set_tag(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<()> {
        self.renew_link(&keys::tag(repo, tag), &digest.to_string())
            .await
    }

    /// The tags that point at `digest`.
    pub(crate) async fn tags_pointing_at(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<Tag>> {
        let wanted = digest.to_string();
        let mut found = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self
                .store
                .list(&keys::tags(repo), last.as_deref(), 1000)
                .await?;
            for tag in page.iter().filter_map(|name| name.parse::<Tag>().ok()) {
                let target = self.read_link(&keys::tag(repo, &tag)).await?;
                if target.is_some_and(|t| t.payload == wanted) {
                    found.push(tag);
                }
            }
            if page.len() < 1000 {
                return Ok(found);
            }
            last = page.last().cloned();
        }
    }
}
