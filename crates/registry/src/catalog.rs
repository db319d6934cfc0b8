//! The catalog: one marker key per repository, listed a page at a time.

use marina_oci::RepoName;
use marina_store::Key;

use crate::keys::{self, REPO_MARKER};
use crate::{Page, Registry, Result};

impl Registry {
    /// Up to `n` repository names after `last`, ordered by their path components.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn catalog(&self, last: Option<&str>, n: usize) -> Result<Page> {
        self.marked_repos(&keys::catalog(), last, n).await
    }

    /// Up to `n` repository names after `last` among the markers under `prefix`.
    pub(crate) async fn marked_repos(
        &self,
        prefix: &Key,
        last: Option<&str>,
        n: usize,
    ) -> Result<Page> {
        let start_after = last.map(|name| format!("{name}{REPO_MARKER}"));
        let keys = self
            .store
            .list(prefix, start_after.as_deref(), n.saturating_add(1))
            .await?;
        let mut items: Vec<String> = keys
            .iter()
            .filter_map(|k| k.strip_suffix(REPO_MARKER))
            .map(str::to_owned)
            .collect();
        let more = items.len() > n;
        items.truncate(n);
        Ok(Page { items, more })
    }

    /// Whether anything was ever pushed to the repository.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        self.exists(&keys::catalog_entry(repo)).await
    }

    pub(crate) async fn register_repo(&self, repo: &RepoName) -> Result<()> {
        self.put_if_absent(&keys::catalog_entry(repo), bytes::Bytes::new())
            .await
    }
}
