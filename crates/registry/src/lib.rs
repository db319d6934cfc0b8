//! The OCI registry's rules on top of a [`Store`]: upload sessions, blobs, manifests, tags,
//! referrers, the catalog, deletes, garbage collection and retention, integrity checks and
//! usage, and the pull-through cache. It knows storage keys but not HTTP.

mod blobs;
mod catalog;
mod error;
pub mod gc;
mod hashing;
mod health;
pub mod integrity;
mod keys;
mod locks;
mod manifests;
pub mod metrics;
pub mod proxy;
mod referrers;
pub mod retention;
mod stamp;
mod tags;
mod uploads;
pub mod usage;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use marina_store::Store;

pub use blobs::{BlobRead, ByteRange};
pub use error::{Error, Result};
pub use manifests::{ManifestPut, StoredManifest};
pub use referrers::ReferrersPage;
pub use uploads::{UploadId, UploadStatus, session_state_resumes};

/// A page of a sorted listing, and whether more entries follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The entries, in order.
    pub items: Vec<String>,
    /// Whether entries remain after the last one.
    pub more: bool,
}

impl Page {
    /// Where the next page starts (its `last`), while entries remain.
    #[must_use]
    pub fn next(&self) -> Option<&str> {
        self.items.last().filter(|_| self.more).map(String::as_str)
    }
}

/// The registry's behaviour switches.
#[derive(Debug, Clone)]
pub struct Config {
    /// Whether manifests, tags and blobs may be deleted.
    pub delete_enabled: bool,
    /// The largest manifest accepted, in bytes.
    pub max_manifest_bytes: usize,
    /// How long an upload session may sit idle before it is purged.
    pub upload_expiry: Duration,
    /// Whether `POST ?mount=` without `from` may mount from any repository holding the blob.
    pub mount_without_from: bool,
    /// How long garbage collection spares content after the last write that vouched for it.
    pub gc_grace: Duration,
    /// The retention policies, first match wins.
    pub retention: Vec<retention::Retention>,
    /// The pull-through caches, by prefix.
    pub proxies: Vec<Arc<proxy::Proxy>>,
    /// Where blob downloads from upstreams are written while they arrive (unnamed files).
    pub scratch: std::path::PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            delete_enabled: true,
            max_manifest_bytes: 4 * 1024 * 1024,
            upload_expiry: Duration::from_secs(24 * 3600),
            mount_without_from: false,
            gc_grace: Duration::from_secs(3600),
            retention: Vec::new(),
            proxies: Vec::new(),
            scratch: std::env::temp_dir(),
        }
    }
}

/// The registry: cheap to clone, shared by every request.
#[derive(Debug, Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    sessions: Arc<locks::SessionLocks>,
    /// The sweeps of garbage collection runs this process has read.
    sweeps: Arc<gc::sweeps::Sweeps>,
    /// Whether writes are refused (then reads refresh no link).
    read_only: Arc<AtomicBool>,
    /// This replica's random id, for its probe key and the events it sends.
    instance: Arc<str>,
    /// The pull-through caches' fetches under way and tag checks.
    proxying: Arc<proxy::State>,
}

impl Registry {
    /// A registry over `store`.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).expect("the OS random source works");
        Self {
            store,
            config: Arc::new(config),
            sessions: Arc::default(),
            sweeps: Arc::default(),
            read_only: Arc::default(),
            instance: hex::encode(id).into(),
            proxying: Arc::default(),
        }
    }

    /// This replica's random id, new at every start.
    #[must_use]
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The switch of read-only mode, shared with whoever flips it.
    #[must_use]
    pub fn read_only_switch(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.read_only)
    }

    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    /// The retention policy of `repo`, if any.
    #[must_use]
    pub fn retention_for(&self, repo: &str) -> Option<&retention::Retention> {
        retention::policy_for(&self.config.retention, repo)
    }

    /// The registry's configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn ensure_deletes_enabled(&self) -> Result<()> {
        if self.config.delete_enabled {
            Ok(())
        } else {
            Err(Error::DeleteDisabled)
        }
    }
}
