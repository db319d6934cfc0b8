//! Durable file writes: temp file + fsync + rename + directory fsync, and streamed appends that
//! overlap receiving with writing and flush to disk as they go.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::Path;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::{Error, InputStream, Key, Result};

/// Bytes gathered from the input before one write call.
const WRITE_CHUNK: usize = 1024 * 1024;
/// Bytes written between flushes to disk, so the final fsync has little left to do.
const FLUSH_EVERY: u64 = 32 * 1024 * 1024;

/// Writes `value` to `tmp`, syncs it, and renames it over `path` durably.
pub(super) fn replace_file(tmp: &Path, path: &Path, value: &[u8]) -> io::Result<()> {
    let mut file = File::create(tmp)?;
    file.write_all(value)?;
    file.sync_data()?;
    drop(file);
    rename_durably(tmp, path)
}

/// Renames `from` to `to`, creating `to`'s folders, and syncs the folder so the rename lasts.
pub(super) fn rename_durably(from: &Path, to: &Path) -> io::Result<()> {
    let dir = to
        .parent()
        .ok_or_else(|| io::Error::other("key has no parent folder"))?;
    create_dirs(dir)?;
    fs::rename(from, to)?;
    sync_dir(dir)
}

/// Removes a file (a missing one is fine) and syncs its folder.
pub(super) fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => path.parent().map_or(Ok(()), sync_dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes a folder and everything in it (a missing one is fine).
pub(super) fn remove_dir(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => path.parent().map_or(Ok(()), sync_dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
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

/// Opens a staging file positioned at `offset`, dropping anything stored past it.
pub(super) fn open_for_append(path: &Path, offset: u64) -> io::Result<File> {
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
    if created {
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

/// A file being written by a blocking thread while the next chunk is received.
struct Writer {
    file: Option<File>,
    pending: Option<JoinHandle<io::Result<File>>>,
    unflushed: u64,
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

    /// Starts writing `data` on a blocking thread; flushes when enough is unflushed.
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        let mut file = self.file().await?;
        self.unflushed += data.len() as u64;
        let flush = self.unflushed >= FLUSH_EVERY;
        if flush {
            self.unflushed = 0;
        }
        self.pending = Some(tokio::task::spawn_blocking(move || {
            file.write_all(&data)?;
            if flush {
                file.sync_data()?;
            }
            Ok(file)
        }));
        Ok(())
    }

    /// Writes what is left, syncs the file, and returns.
    async fn finish(mut self, rest: Bytes) -> io::Result<()> {
        let mut file = self.file().await?;
        tokio::task::spawn_blocking(move || {
            file.write_all(&rest)?;
            file.sync_data()
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// Streams `input` into `file` (positioned at `offset`), durably. Returns the new length.
pub(super) async fn stream_into(
    file: File,
    offset: u64,
    mut input: InputStream,
    key: &Key,
) -> Result<u64> {
    let mut writer = Writer {
        file: Some(file),
        pending: None,
        unflushed: 0,
    };
    let mut buf = BytesMut::with_capacity(WRITE_CHUNK);
    let mut length = offset;
    while let Some(chunk) = input.next().await {
        let chunk = chunk.map_err(Error::Input)?;
        length += chunk.len() as u64;
        buf.extend_from_slice(&chunk);
        if buf.len() >= WRITE_CHUNK {
            let full = std::mem::replace(&mut buf, BytesMut::with_capacity(WRITE_CHUNK));
            writer
                .write(full.freeze())
                .await
                .map_err(|e| Error::io(key, e))?;
        }
    }
    writer
        .finish(buf.freeze())
        .await
        .map_err(|e| Error::io(key, e))?;
    Ok(length)
}
