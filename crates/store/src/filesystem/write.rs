//! File writes: whole objects through temp file + fsync + rename + folder fsync, and streamed
//! appends that overlap receiving with writing and sync in the background as they go, so the
//! fsync that promotes them is short.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::folder_sync::FolderSyncs;
use super::release::{self, Releaser};
use super::writeback::Writebacks;
use crate::{Error, InputStream, Key, Result};

/// Bytes gathered from the input before one (vectored) write call.
const WRITE_CHUNK: usize = 1024 * 1024;
/// Bytes written between background syncs, so the disk works while bytes still arrive.
const WRITEBACK_EVERY: u64 = 2 * 1024 * 1024;

/// Whether a write must survive a crash once it returns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sync {
    /// fsync the data and the folder.
    Durable,
    /// Atomic only: readers see the old or the new content, but a crash may lose it.
    Skip,
}

/// The store's folder entries that volatile writes created and that may not be durable yet.
///
/// A volatile write (an upload session) creates files and folders without syncing their
/// folders, since losing them only means a client starts over. A durable write that lands in
/// or on such an entry first makes the entry durable, so what it acknowledges survives a crash.
/// The process is the only writer (the root is locked), and at start-up the store syncs the
/// whole filesystem, so entries not listed here are durable.
#[derive(Debug, Default)]
pub(super) struct Entries {
    fresh: Mutex<HashSet<PathBuf>>,
    /// The background syncs of staging files, running and failed.
    writebacks: Arc<Writebacks>,
    syncs: FolderSyncs,
    released: Releaser,
}

impl Entries {
    fn fresh(&self) -> MutexGuard<'_, HashSet<PathBuf>> {
        self.fresh.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_fresh(&self, path: &Path) -> bool {
        self.fresh().contains(path)
    }

    /// `path`'s entry is durable now (a durable writer racing with this one syncs it too).
    fn settled(&self, path: &Path) {
        self.fresh().remove(path);
    }

    fn mark(&self, path: &Path) {
        self.fresh().insert(path.to_owned());
    }

    /// Forgets `path` and everything under it: they are gone.
    fn forget(&self, path: &Path) {
        self.fresh().retain(|p| !p.starts_with(path));
        self.writebacks.forget(path);
    }

    /// Writes `value` to `tmp` and renames it over `path`: atomic, and durable when asked.
    pub(super) fn replace_file(
        &self,
        tmp: &Path,
        path: &Path,
        value: &[u8],
        sync: Sync,
    ) -> io::Result<()> {
        let mut file = File::create(tmp)?;
        file.write_all(value)?;
        if sync == Sync::Durable {
            file.sync_data()?;
        }
        drop(file);
        self.rename(tmp, path, sync)
    }

    /// Creates (or empties) a file durably: one folder sync, no temp file, since an empty file
    /// appears whole or not at all.
    pub(super) fn create_empty(&self, path: &Path) -> io::Result<()> {
        let dir = parent(path)?;
        self.create_dirs(dir, Sync::Durable)?;
        self.mark(path);
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        self.syncs.sync(dir)?;
        self.settled(path);
        Ok(())
    }

    /// Syncs `from`'s data (it may have been written without), renames it to `to`, creating
    /// `to`'s folders, and syncs the folder so the rename lasts. Waits for a writer still
    /// holding the file and for background syncs still running on it, and fails if one did.
    /// Bytes past `length` are cut off first (the lock keeps every writer out). A file holding
    /// fewer stays where it is: its size is returned.
    pub(super) fn promote(&self, from: &Path, length: u64, to: &Path) -> io::Result<Option<u64>> {
        let file = OpenOptions::new().write(true).open(from)?;
        file.lock()?;
        self.writebacks.settle(from)?;
        let held = file.metadata()?.len();
        if held < length {
            return Ok(Some(held));
        }
        if held > length {
            file.set_len(length)?;
        }
        file.sync_data()?;
        self.rename(from, to, Sync::Durable)?;
        self.forget(from);
        Ok(None)
    }

    fn rename(&self, from: &Path, to: &Path, sync: Sync) -> io::Result<()> {
        let dir = parent(to)?;
        self.create_dirs(dir, sync)?;
        self.mark(to);
        if sync == Sync::Skip && swap(from, to)? {
            return self.remove_unsynced(from);
        }
        let replaced = release::hold(to);
        fs::rename(from, to)?;
        self.released.release(replaced);
        if sync == Sync::Durable {
            self.syncs.sync(dir)?;
            self.settled(to);
        }
        Ok(())
    }

    /// Removes a file (a missing one is fine) and syncs its folder.
    pub(super) fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self.remove_unsynced(path) {
            Ok(()) => {
                self.forget(path);
                path.parent().map_or(Ok(()), |dir| self.syncs.sync(dir))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(path);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Removes files (missing ones are fine) without syncing their folders: the caller syncs
    /// the whole filesystem once after. Each `(file, aside)` pair moves the file to `aside`, a
    /// fresh name in the temporary folder; the releasing thread unlinks it later.
    pub(super) fn remove_files_unsynced(
        &self,
        moves: Vec<(std::path::PathBuf, std::path::PathBuf)>,
    ) -> io::Result<()> {
        let mut moved = Vec::with_capacity(moves.len());
        let mut outcome = Ok(());
        for (path, aside) in moves {
            match fs::rename(&path, &aside) {
                Ok(()) => moved.push(aside),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
            self.forget(&path);
        }
        self.released.unlink(moved);
        outcome
    }

    /// Removes a file without syncing its folder (a volatile write's leftover), closing it on
    /// the releasing thread.
    fn remove_unsynced(&self, path: &Path) -> io::Result<()> {
        let held = release::hold(path);
        let removed = fs::remove_file(path);
        self.released.release(held);
        removed
    }

    /// Removes a folder and everything in it (a missing one is fine). Cleanup: not synced.
    pub(super) fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let held = release::hold_folder(path);
        let removed = fs::remove_dir_all(path);
        self.released.release(held);
        match removed {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => {
                self.forget(path);
                Ok(())
            }
        }
    }

    /// Creates a folder and its missing parents. When durable, every folder on the way is
    /// made durable in its parent (new ones, and fresh ones a volatile write left).
    ///
    /// Every new entry is listed as fresh before it exists and unlisted only once its folder
    /// is synced, so a writer that finds an entry unlisted can rely on it being durable.
    fn create_dirs(&self, dir: &Path, sync: Sync) -> io::Result<()> {
        if dir.is_dir() {
            if sync == Sync::Durable && self.is_fresh(dir) {
                self.settle(dir)?;
            }
            return Ok(());
        }
        let up = parent(dir)?;
        self.create_dirs(up, sync)?;
        self.mark(dir);
        match fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if sync == Sync::Durable {
            self.syncs.sync(up)?;
            self.settled(dir);
        }
        Ok(())
    }

    /// Makes an existing folder's entry durable, with its parents'.
    fn settle(&self, dir: &Path) -> io::Result<()> {
        let up = parent(dir)?;
        self.create_dirs(up, Sync::Durable)?;
        self.syncs.sync(up)?;
        self.settled(dir);
        Ok(())
    }

    /// Opens a staging file positioned at `offset`, dropping anything stored past it. Appends
    /// are volatile: neither the file nor its folder entry is synced here; promoting the file
    /// syncs what the blob needs.
    ///
    /// The open file holds an exclusive lock until every handle to it is closed. A request cut
    /// off mid-body may leave a write of its own still landing on a blocking thread; the next
    /// append waits for it here, so a stale write cannot land after this one truncates. It
    /// does not wait for a background sync still running (it holds no lock): the promotion does.
    pub(super) fn open_for_append(&self, path: &Path, offset: u64) -> io::Result<File> {
        self.create_dirs(parent(path)?, Sync::Skip)?;
        if !path.exists() {
            self.mark(path);
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        file.lock()?;
        self.writebacks.check(path)?;
        let len = file.metadata()?.len();
        if len < offset {
            return Err(io::Error::other(format!(
                "staging file holds {len} bytes but the upload expects {offset}"
            )));
        }
        if len > offset {
            file.set_len(offset)?;
        }
        file.seek(io::SeekFrom::Start(offset))?;
        Ok(file)
    }
}

/// Swaps the files at `from` and `to` atomically, when `to` exists; false when it does not.
///
/// A volatile replacement swaps rather than renames over the old file: ext4 writes a file
/// renamed over another to disk at once (`auto_da_alloc`), and then frees, and with `discard`
/// discards, the block the old one took. A swapped-out file that lived only in the page cache
/// is removed without touching the disk: on every PATCH, that is one write and one discard fewer.
fn swap(from: &Path, to: &Path) -> io::Result<bool> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

fn parent(path: &Path) -> io::Result<&Path> {
    path.parent()
        .ok_or_else(|| io::Error::other("key has no parent folder"))
}

/// A file being written by a blocking thread while the next chunk is received, and synced in
/// the background as it grows.
struct Writer {
    file: Option<File>,
    pending: Option<JoinHandle<io::Result<File>>>,
    /// Bytes written since the last background sync began.
    unsynced: u64,
    /// A background `fdatasync` in progress, on a descriptor of its own.
    syncing: Option<JoinHandle<io::Result<()>>>,
    /// Where background syncs are recorded, for the requests after this one.
    entries: Arc<Entries>,
    path: PathBuf,
}

impl Writer {
    /// Waits for the write in flight and takes the file back.
    async fn file(&mut self) -> io::Result<File> {
        match (self.pending.take(), self.file.take()) {
            (Some(task), _) => task.await.map_err(io::Error::other)?,
            (None, Some(file)) => Ok(file),
            (None, None) => Err(io::Error::other("writer lost its file")),
        }
    }

    /// Starts writing `data` on a blocking thread.
    async fn write(&mut self, data: Vec<Bytes>) -> io::Result<()> {
        let mut file = self.file().await?;
        self.unsynced += data.iter().map(|b| b.len() as u64).sum::<u64>();
        self.sync_in_background().await?;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            write_all_vectored(&mut file, &data)?;
            Ok(file)
        }));
        Ok(())
    }

    /// Once enough is written, and no earlier background sync still runs, starts an
    /// `fdatasync` beside the writes: the disk works while bytes still arrive, the page cache
    /// keeps the bytes (a pull right after a push reads memory), and the final sync is short.
    /// It syncs through a descriptor of its own, which does not hold the file's lock, so the
    /// next chunk need not wait for it. A finished sync's failure ends the write.
    async fn sync_in_background(&mut self) -> io::Result<()> {
        self.collect_finished_sync().await?;
        if self.unsynced < WRITEBACK_EVERY || self.syncing.is_some() {
            return Ok(());
        }
        self.unsynced = 0;
        let running = self.entries.writebacks.start(&self.path);
        let path = self.path.clone();
        self.syncing = Some(tokio::task::spawn_blocking(move || {
            let synced = File::open(path).and_then(|handle| handle.sync_data());
            running.ended(&synced);
            synced
        }));
        Ok(())
    }

    async fn collect_finished_sync(&mut self) -> io::Result<()> {
        match self.syncing.take_if(|task| task.is_finished()) {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }

    /// Writes what is left, without waiting for a background sync still running: the
    /// promotion waits for it and learns whether it failed.
    async fn finish(mut self, rest: Vec<Bytes>) -> io::Result<()> {
        let mut file = self.file().await?;
        self.collect_finished_sync().await?;
        tokio::task::spawn_blocking(move || write_all_vectored(&mut file, &rest))
            .await
            .map_err(io::Error::other)?
    }
}

/// Writes every chunk, as few system calls as the kernel allows (no copy into one buffer).
fn write_all_vectored(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Streams `input` into `file` (opened by [`Entries::open_for_append`] at `path`, positioned at
/// `offset`), volatile. Returns the new length.
pub(super) async fn stream_into(
    file: File,
    path: PathBuf,
    entries: Arc<Entries>,
    offset: u64,
    mut input: InputStream,
    key: &Key,
) -> Result<u64> {
    let mut writer = Writer {
        file: Some(file),
        pending: None,
        unsynced: 0,
        syncing: None,
        entries,
        path,
    };
    let (mut batch, mut batched) = (Vec::new(), 0);
    let mut length = offset;
    while let Some(chunk) = input.next().await {
        let chunk = chunk.map_err(Error::Input)?;
        length += chunk.len() as u64;
        batched += chunk.len();
        batch.push(chunk);
        if batched >= WRITE_CHUNK {
            batched = 0;
            writer
                .write(std::mem::take(&mut batch))
                .await
                .map_err(|e| Error::io(key, e))?;
        }
    }
    writer.finish(batch).await.map_err(|e| Error::io(key, e))?;
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(entries: &Entries, root: &Path) -> Vec<String> {
        let mut paths: Vec<String> = entries
            .fresh()
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect();
        paths.sort();
        paths
    }

    #[test]
    fn a_durable_write_settles_the_fresh_entries_it_lands_in() {
        let dir = tempfile::tempdir().unwrap();
        let (root, entries) = (dir.path(), Entries::default());
        let state = root.join("r/u/s/state");
        entries
            .replace_file(&root.join("t1"), &state, b"{}", Sync::Skip)
            .unwrap();
        entries
            .open_for_append(&root.join("r/u/s/data"), 0)
            .unwrap();
        let all = ["r", "r/u", "r/u/s", "r/u/s/data", "r/u/s/state"];
        assert_eq!(fresh(&entries, root), all);
        entries
            .replace_file(&root.join("t2"), &state, b"{}", Sync::Durable)
            .unwrap();
        assert_eq!(fresh(&entries, root), ["r/u/s/data"]);
        entries
            .promote(&root.join("r/u/s/data"), 0, &root.join("r/b/x"))
            .unwrap();
        assert!(fresh(&entries, root).is_empty());
    }

    #[test]
    fn a_volatile_replacement_swaps_in_the_new_file_and_removes_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let (root, entries) = (dir.path(), Entries::default());
        let (state, tmp) = (root.join("u/s/state"), root.join("t"));
        for value in ["old", "new"] {
            entries
                .replace_file(&tmp, &state, value.as_bytes(), Sync::Skip)
                .unwrap();
            assert_eq!(fs::read_to_string(&state).unwrap(), value);
            assert!(!tmp.exists(), "the swapped-out file is left at {tmp:?}");
        }
    }

    #[test]
    fn a_durable_write_beside_fresh_folders_settles_only_its_own_path() {
        let dir = tempfile::tempdir().unwrap();
        let (root, entries) = (dir.path(), Entries::default());
        entries
            .replace_file(
                &root.join("t1"),
                &root.join("r/u/s/state"),
                b"{}",
                Sync::Skip,
            )
            .unwrap();
        entries.create_empty(&root.join("r/b/link")).unwrap();
        assert_eq!(fresh(&entries, root), ["r/u", "r/u/s", "r/u/s/state"]);
    }

    #[test]
    fn removed_and_promoted_entries_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let (root, entries) = (dir.path(), Entries::default());
        for session in ["s", "t"] {
            let data = root.join(format!("r/u/{session}/data"));
            entries.open_for_append(&data, 0).unwrap();
        }
        entries.remove_dir(&root.join("r/u/s")).unwrap();
        assert_eq!(fresh(&entries, root), ["r", "r/u", "r/u/t", "r/u/t/data"]);
        entries
            .promote(&root.join("r/u/t/data"), 0, &root.join("blobs/x"))
            .unwrap();
        assert_eq!(fresh(&entries, root), ["r", "r/u", "r/u/t"]);
    }

    /// Runs `act` on another thread, calls `let_go` (closing a locked file, ending a sync)
    /// 100 ms later, and checks that `act` finished only after that.
    fn assert_waits_for(let_go: impl FnOnce(), act: impl FnOnce() + Send, what: &str) {
        let released = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                act();
                released.load(std::sync::atomic::Ordering::SeqCst)
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            released.store(true, std::sync::atomic::Ordering::SeqCst);
            let_go();
            assert!(waiter.join().unwrap(), "{what}");
        });
    }

    #[test]
    fn an_append_waits_for_an_earlier_writer_of_the_same_file_to_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let (data, entries) = (dir.path().join("u/data"), Entries::default());
        let earlier = entries.open_for_append(&data, 0).unwrap();
        assert_waits_for(
            || drop(earlier),
            || drop(entries.open_for_append(&data, 0).unwrap()),
            "the second append opened while the first held it",
        );
    }

    #[test]
    fn a_failed_background_sync_refuses_the_file_until_it_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (root, entries) = (dir.path(), Entries::default());
        let (data, blob) = (root.join("r/u/s/data"), root.join("blobs/x"));
        drop(entries.open_for_append(&data, 0).unwrap());
        let sync = entries.writebacks.start(&data);
        sync.ended(&Err(io::Error::other("the disk said EIO")));
        let refused = entries.open_for_append(&data, 0).unwrap_err();
        assert!(
            refused.to_string().contains("the disk said EIO"),
            "{refused}"
        );
        assert!(entries.promote(&data, 0, &blob).is_err());
        assert!(!blob.exists(), "nothing was promoted");
        entries.remove_dir(&root.join("r/u/s")).unwrap();
        drop(entries.open_for_append(&data, 0).unwrap());
        entries.promote(&data, 0, &blob).unwrap();
    }

    #[test]
    fn promotion_waits_for_a_sync_still_running() {
        let dir = tempfile::tempdir().unwrap();
        let (data, entries) = (dir.path().join("u/data"), Entries::default());
        drop(entries.open_for_append(&data, 0).unwrap());
        let running = entries.writebacks.start(&data);
        assert_waits_for(
            || running.ended(&Ok(())),
            || {
                assert_eq!(
                    entries.promote(&data, 0, &dir.path().join("b/x")).unwrap(),
                    None
                )
            },
            "the promotion went ahead while a sync ran",
        );
    }

    #[test]
    fn a_sync_that_stops_unfinished_counts_as_failed() {
        let dir = tempfile::tempdir().unwrap();
        let (data, entries) = (dir.path().join("u/data"), Entries::default());
        drop(entries.open_for_append(&data, 0).unwrap());
        drop(entries.writebacks.start(&data));
        assert!(entries.promote(&data, 0, &dir.path().join("b/x")).is_err());
    }

    #[test]
    fn the_next_chunk_does_not_wait_for_the_last_ones_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (data, entries) = (dir.path().join("u/data"), Entries::default());
        drop(entries.open_for_append(&data, 0).unwrap());
        let _running = entries.writebacks.start(&data);
        let (done, waited) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| done.send(entries.open_for_append(&data, 0).is_ok()));
            let opened = waited.recv_timeout(std::time::Duration::from_secs(5));
            assert_eq!(opened, Ok(true), "the append waited for the sync");
        });
    }
}
