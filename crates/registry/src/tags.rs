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

    /// Points a tag at a digest; a tag that already points there is not written again.
    pub(crate) async fn set_tag(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<()> {
        let key = keys::tag(repo, tag);
        let target = digest.to_string();
        match self.store.get(&key).await {
            Ok(current) if current == target.as_bytes() => Ok(()),
            Ok(_) => Ok(self.store.put(&key, target.into()).await?),
            Err(e) if e.is_not_found() => Ok(self.store.put(&key, target.into()).await?),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes every tag of the repository that points at `digest`. Costs O(tags).
    pub(crate) async fn untag(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let wanted = digest.to_string();
        let mut last: Option<String> = None;
        loop {
            let page = self
                .store
                .list(&keys::tags(repo), last.as_deref(), 1000)
                .await?;
            for name in &page {
                let Ok(tag) = name.parse::<Tag>() else {
                    continue;
                };
                let key = keys::tag(repo, &tag);
                match self.store.get(&key).await {
                    Ok(target) if target == wanted.as_bytes() => self.store.delete(&key).await?,
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if page.len() < 1000 {
                return Ok(());
            }
            last = page.last().cloned();
        }
    }
}
