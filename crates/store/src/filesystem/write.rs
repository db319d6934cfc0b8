//! Durable file writes: temp file + fsync + rename + directory fsync, and streamed appends that
//! overlap receiving with writing and sync in the background as they go, so the final fsync
//! is short.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, Write};
use std::path::Path;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::{Error, InputStream, Key, Result};

/// Bytes gathered from the input before one (vectored) write call.
const WRITE_CHUNK: usize = 1024 * 1024;
/// Bytes written between background syncs, so the disk works while bytes still arrive.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// Whether a write must survive a crash once it returns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sync {
    /// fsync the data and the folder.
    Durable,
    /// Atomic only: readers see the old or the new content, but a crash may lose it.
    Skip,
}

/// Writes `value` to `tmp` and renames it over `path`: atomic, and durable when asked.
pub(super) fn replace_file(tmp: &Path, path: &Path, value: &[u8], sync: Sync) -> io::Result<()> {
    let mut file = File::create(tmp)?;
    file.write_all(value)?;
    if sync == Sync::Durable {
        file.sync_data()?;
    }
    drop(file);
    rename(tmp, path, sync)
}

/// Creates (or empties) a file durably: one folder sync, no temp file, since an empty file
/// appears whole or not at all.
pub(super) fn create_empty(path: &Path) -> io::Result<()> {
    let dir = parent(path)?;
    create_dirs(dir)?;
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    sync_dir(dir)
}

/// Syncs `from`'s data (it may have been written without), renames it to `to`, creating `to`'s
/// folders, and syncs the folder so the rename lasts.
pub(super) fn promote(from: &Path, to: &Path) -> io::Result<()> {
    File::open(from)?.sync_data()?;
    rename(from, to, Sync::Durable)
}

fn rename(from: &Path, to: &Path, sync: Sync) -> io::Result<()> {
    let dir = parent(to)?;
    create_dirs(dir)?;
    fs::rename(from, to)?;
    if sync == Sync::Durable {
        sync_dir(dir)
    } else {
        Ok(())
    }
}

fn parent(path: &Path) -> io::Result<&Path> {
    path.parent()
        .ok_or_else(|| io::Error::other("key has no parent folder"))
}

/// Removes a file (a missing one is fine) and syncs its folder.
pub(super) fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => path.parent().map_or(Ok(()), sync_dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes a folder and everything in it (a missing one is fine). Cleanup: not synced.
pub(super) fn remove_dir(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Creates a folder and its missing parents, syncing each parent so the new entries last.
fn create_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir
        .parent()
        .ok_or_else(|| io::Error::other("no parent folder"))?;
    create_dirs(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens a staging file positioned at `offset`, dropping anything stored past it. A new
/// file's folder entry is synced when the append must be durable.
pub(super) fn open_for_append(path: &Path, offset: u64, sync: Sync) -> io::Result<File> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("key has no parent folder"))?;
    let created = !path.exists();
    create_dirs(dir)?;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    if created && sync == Sync::Durable {
        sync_dir(dir)?;
    }
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

/// A file being written by a blocking thread while the next chunk is received, and synced in
/// the background as it grows.
struct Writer {
    sync: Sync,
    file: Option<File>,
    pending: Option<JoinHandle<io::Result<File>>>,
    /// Bytes written since the last background sync began.
    unsynced: u64,
    /// A background `fdatasync` in progress, on a second handle to the file.
    syncing: Option<JoinHandle<io::Result<()>>>,
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
        self.sync_in_background(&file)?;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            write_all_vectored(&mut file, &data)?;
            Ok(file)
        }));
        Ok(())
    }

    /// Once enough is written, and no earlier background sync still runs, starts an
    /// `fdatasync` beside the writes: the disk works while bytes still arrive, the page cache
    /// keeps the bytes (a pull right after a push reads memory), and the final sync is short.
    fn sync_in_background(&mut self, file: &File) -> io::Result<()> {
        let busy = self
            .syncing
            .as_ref()
            .is_some_and(|task| !task.is_finished());
        if self.unsynced < WRITEBACK_EVERY || busy {
            return Ok(());
        }
        self.unsynced = 0;
        let handle = file.try_clone()?;
        self.syncing = Some(tokio::task::spawn_blocking(move || handle.sync_data()));
        Ok(())
    }

    /// Writes what is left, syncs the file when durable, and returns.
    async fn finish(mut self, rest: Vec<Bytes>) -> io::Result<()> {
        let mut file = self.file().await?;
        if let Some(task) = self.syncing.take() {
            task.await.map_err(io::Error::other)??;
        }
        let sync = self.sync;
        tokio::task::spawn_blocking(move || {
            write_all_vectored(&mut file, &rest)?;
            if sync == Sync::Durable {
                file.sync_data()
            } else {
                Ok(())
            }
        })
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

/// Streams `input` into `file` (positioned at `offset`), durably when asked. Returns the new
/// length.
pub(super) async fn stream_into(
    file: File,
    offset: u64,
    mut input: InputStream,
    key: &Key,
    sync: Sync,
) -> Result<u64> {
    let mut writer = Writer {
        sync,
        file: Some(file),
        pending: None,
        unsynced: 0,
        syncing: None,
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
