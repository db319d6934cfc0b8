//! The filesystem backend: one file per object under a root folder, written through a temp
//! file, fsync, rename and directory fsync, so a returned write survives a crash.

mod cache;
mod folder_sync;
mod listing;
mod release;
mod write;
mod writeback;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use std::io::Read as _;

use crate::{
    Appended, ByteStream, Content, Error, FileSlice, InputStream, Key, Part, Result, Store,
};
use cache::SmallObjects;
use listing::Listings;
use write::Entries;

/// Where temp files are written before their rename (same filesystem as the objects).
const TMP_DIR: &str = ".tmp";
/// The lock file that keeps a second process off the same root.
const LOCK_FILE: &str = ".lock";

/// Objects as files under a root folder. The process holds an exclusive lock on the root: the
/// listing cache assumes it is the only writer.
#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
    listings: Listings,
    cache: SmallObjects,
    entries: Arc<Entries>,
    boot_id: String,
    /// This process is the folder's only writer: its writers pass here.
    writers: crate::WriteBarrier,
    _lock: Arc<std::fs::File>,
}

impl FileStore {
    /// Opens (creating if needed) a store rooted at `root` and locks it for this process.
    ///
    /// # Errors
    /// When the folder cannot be created or written, or another process holds its lock.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let io = |e| Error::io(root.display(), e);
        std::fs::create_dir_all(root.join(TMP_DIR)).map_err(io)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK_FILE))
            .map_err(io)?;
        lock.try_lock().map_err(|_| Error::Io {
            key: root.display().to_string(),
            cause: std::io::Error::other(
                "another marina process is using this storage folder (its .lock is held)",
            ),
        })?;
        clear_temp_files(&root.join(TMP_DIR));
        // What an earlier process left unsynced (upload sessions, the folders just made)
        // becomes durable here, so every entry that exists now counts as durable.
        rustix::fs::syncfs(&lock).map_err(|e| io(e.into()))?;
        Ok(Self {
            root,
            listings: Listings::default(),
            cache: SmallObjects::default(),
            entries: Arc::default(),
            boot_id: boot_id(),
            writers: crate::WriteBarrier::default(),
            _lock: Arc::new(lock),
        })
    }

    fn path(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// Opens an object for reading; a small one is read whole and remembered.
    async fn load(&self, key: &Key) -> Result<Opened> {
        let generation = self.cache.generation();
        let path = self.path(key);
        let opened = blocking(key, move || open_for_read(&path)).await?;
        if let Opened::Small(bytes) = &opened {
            self.cache.fill(key.as_str(), bytes.clone(), generation);
        }
        Ok(opened)
    }

    /// After a write: the key now exists or not, for the listings and the cache.
    async fn record(&self, key: &Key, exists: bool) {
        if exists {
            self.listings.inserted(key).await;
        } else {
            self.listings.removed(key).await;
        }
        self.cache.wrote(key.as_str());
    }

    /// Runs file work that creates or removes entries off the async workers, with the record
    /// of which entries are not durable yet.
    async fn entries<T: Send + 'static>(
        &self,
        key: &Key,
        work: impl FnOnce(&Entries) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let entries = Arc::clone(&self.entries);
        blocking(key, move || work(&entries)).await
    }

    /// Writes `value` through a temp file renamed over the key: atomic, durable when asked.
    async fn replace(&self, key: &Key, value: Bytes, sync: write::Sync) -> Result<()> {
        let (tmp, path) = (self.temp_path(), self.path(key));
        self.entries(key, move |e| e.replace_file(&tmp, &path, &value, sync))
            .await?;
        self.record(key, true).await;
        Ok(())
    }

    fn temp_path(&self) -> PathBuf {
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).expect("the OS random source works");
        let name: String = id.iter().map(|b| format!("{b:02x}")).collect();
        self.root.join(TMP_DIR).join(name)
    }
}

/// A file opened for reading: small ones are read whole (and cached), large ones streamed.
enum Opened {
    Small(Bytes),
    Large(std::fs::File, u64),
}

fn open_for_read(path: &std::path::Path) -> std::io::Result<Opened> {
    let mut file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::ErrorKind::NotFound.into());
    }
    let length = meta.len();
    if length > cache::MAX_OBJECT {
        return Ok(Opened::Large(file, length));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(Opened::Small(Bytes::from(bytes)))
}

/// Temp files left by a crash are garbage: nothing points at them.
/// The machine's boot id. Bytes written without a sync outlive the process that wrote them (the
/// kernel holds them) and are lost only when the machine goes down, which changes this id. Where
/// it cannot be read, every process counts as a new span.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map_or_else(
        |_| {
            let started = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            format!("process-{}-{}", std::process::id(), started.as_nanos())
        },
        |id| id.trim().to_owned(),
    )
}

fn clear_temp_files(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    key: &Key,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|e| Error::io(key, e)),
        Err(join) => Err(Error::io(key, std::io::Error::other(join.to_string()))),
    }
}

#[async_trait]
impl Store for FileStore {
    async fn get(&self, key: &Key) -> Result<Bytes> {
        if let Some(cached) = self.cache.get(key.as_str()) {
            return Ok(cached);
        }
        match self.load(key).await? {
            Opened::Small(bytes) => Ok(bytes),
            Opened::Large(mut file, length) => {
                blocking(key, move || {
                    let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
                    file.read_to_end(&mut bytes)?;
                    Ok(Bytes::from(bytes))
                })
                .await
            }
        }
    }

    async fn get_cold(&self, key: &Key) -> Result<Bytes> {
        if let Some(cached) = self.cache.get(key.as_str()) {
            return Ok(cached);
        }
        let path = self.path(key);
        blocking(key, move || std::fs::read(&path).map(Bytes::from)).await
    }

    async fn size(&self, key: &Key) -> Result<u64> {
        if let Some(cached) = self.cache.get(key.as_str()) {
            return Ok(cached.len() as u64);
        }
        match self.load(key).await? {
            Opened::Small(bytes) => Ok(bytes.len() as u64),
            Opened::Large(_, length) => Ok(length),
        }
    }

    async fn read(&self, key: &Key, range: Range<u64>) -> Result<ByteStream> {
        Ok(self.open(key, range).await?.into_stream())
    }

    async fn open(&self, key: &Key, range: Range<u64>) -> Result<Content> {
        let opened = match self.cache.get(key.as_str()) {
            Some(cached) => Opened::Small(cached),
            None => self.load(key).await?,
        };
        Ok(match opened {
            Opened::Small(bytes) => {
                let (start, end) = (usize::try_from(range.start), usize::try_from(range.end));
                let part = bytes.slice(start.unwrap_or(0)..end.unwrap_or(0).min(bytes.len()));
                Content::Stream(Box::pin(futures_util::stream::once(
                    async move { Ok(part) },
                )))
            }
            Opened::Large(file, _) => Content::File(FileSlice::new(file, range, key.clone())),
        })
    }

    async fn put(&self, key: &Key, value: Bytes) -> Result<()> {
        if value.is_empty() {
            // An empty file appears whole or not at all: no temp file or data sync needed.
            let path = self.path(key);
            self.entries(key, move |e| e.create_empty(&path)).await?;
            self.record(key, true).await;
            return Ok(());
        }
        self.replace(key, value, write::Sync::Durable).await
    }

    async fn put_volatile(&self, key: &Key, value: Bytes) -> Result<()> {
        self.replace(key, value, write::Sync::Skip).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let path = self.path(key);
        self.entries(key, move |e| e.remove_file(&path)).await?;
        self.record(key, false).await;
        Ok(())
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        let Some(first) = keys.first() else {
            return Ok(());
        };
        let moves: Vec<(PathBuf, PathBuf)> = keys
            .iter()
            .map(|k| (self.path(k), self.temp_path()))
            .collect();
        let removed = self
            .entries(first, move |e| e.remove_files_unsynced(moves))
            .await;
        // What was removed before a failure is gone too.
        for key in keys {
            self.record(key, false).await;
        }
        removed?;
        // One sync of the whole filesystem costs less than one per folder when the keys span
        // hundreds of folders (content is spread over 256).
        let lock = Arc::clone(&self._lock);
        blocking(first, move || {
            rustix::fs::syncfs(&*lock).map_err(std::io::Error::from)
        })
        .await
    }

    async fn delete_prefix(&self, prefix: &Key) -> Result<()> {
        let path = self.path(prefix);
        self.entries(prefix, move |e| e.remove_dir(&path)).await?;
        self.listings.removed_prefix(prefix).await;
        self.cache.removed_prefix(prefix.as_str());
        Ok(())
    }

    async fn list(
        &self,
        prefix: &Key,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let dir = self.path(prefix);
        self.listings.page(prefix, dir, start_after, limit).await
    }

    async fn append(&self, key: &Key, offset: u64, input: InputStream) -> Result<Appended> {
        let path = self.path(key);
        let opened = path.clone();
        let file = self
            .entries(key, move |e| e.open_for_append(&opened, offset))
            .await?;
        let entries = Arc::clone(&self.entries);
        let length = write::stream_into(file, path, entries, offset, input, key).await?;
        self.record(key, true).await;
        Ok(Appended::whole(length))
    }

    fn volatile_epoch(&self) -> Option<&str> {
        Some(&self.boot_id)
    }

    fn writers(&self) -> Option<&crate::WriteBarrier> {
        Some(&self.writers)
    }

    /// The one process holding the folder writes each staging file under the caller's lock,
    /// so the file is exactly what was counted up to `length`: parts are not needed.
    async fn promote(&self, staged: &Key, _: &[Part], length: u64, to: &Key) -> Result<()> {
        let (from, dest) = (self.path(staged), self.path(to));
        let held = match self
            .entries(to, move |e| e.promote(&from, length, &dest))
            .await
        {
            // An empty upload never appended anything, so it has no file.
            Err(e) if e.is_not_found() && length == 0 => return self.put(to, Bytes::new()).await,
            other => other?,
        };
        if let Some(held) = held {
            return Err(Error::staged_length(
                staged,
                &format!("{held} bytes"),
                length,
            ));
        }
        self.record(staged, false).await;
        self.record(to, true).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_store_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        crate::testsuite::run(&store).await;
    }

    #[tokio::test]
    async fn deleted_files_are_moved_aside_then_unlinked_and_none_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let keys: Vec<Key> = (0..50)
            .map(|i| Key::new(format!("blobs/{:02x}/{i}", i % 7)).unwrap())
            .collect();
        for key in &keys {
            store
                .put(key, Bytes::from_static(b"garbage"))
                .await
                .unwrap();
        }
        store.delete_many(&keys).await.unwrap();
        for key in &keys {
            assert!(store.size(key).await.unwrap_err().is_not_found(), "{key}");
        }
        let temp = dir.path().join(TMP_DIR);
        let left = || std::fs::read_dir(&temp).unwrap().count();
        for _ in 0..200 {
            if left() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            left(),
            0,
            "the releasing thread unlinks what was moved aside"
        );
        // Moved aside, and the process gone before the unlink: the next start clears it.
        std::fs::write(temp.join("moved-aside"), b"garbage").unwrap();
        drop(store);
        let _again = FileStore::open(dir.path()).unwrap();
        assert_eq!(left(), 0);
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_root() {
        let dir = tempfile::tempdir().unwrap();
        let _first = FileStore::open(dir.path()).unwrap();
        let err = FileStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("another marina process"), "{err}");
    }

    #[tokio::test]
    async fn listings_see_files_written_before_start() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::new("a/b/c").unwrap();
        {
            let store = FileStore::open(dir.path()).unwrap();
            store.put(&key, Bytes::from_static(b"x")).await.unwrap();
        }
        let store = FileStore::open(dir.path()).unwrap();
        let page = store
            .list(&Key::new("a/").unwrap(), None, 10)
            .await
            .unwrap();
        assert_eq!(page, ["b/c"]);
    }

    #[tokio::test]
    async fn a_failed_append_leaves_no_object_visible_at_the_final_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let staged = Key::new("staging/x").unwrap();
        let input = futures_util::stream::iter([
            Ok(Bytes::from_static(b"partial")),
            Err(std::io::Error::other("client went away")),
        ]);
        let err = store.append(&staged, 0, Box::pin(input)).await.unwrap_err();
        assert!(matches!(err, Error::Input(_)));
        assert!(
            store
                .size(&Key::new("final/x").unwrap())
                .await
                .unwrap_err()
                .is_not_found()
        );
    }
}
