//! Upload sessions: start, append chunks, report progress, finish with a digest, cancel, purge.
//! The session's offset and resumable hash state live in the store, so any replica can continue
//! an upload another began.
//!
//! Sessions are written with the store's volatile writes: on the filesystem, a chunk is not
//! fsynced before its 202, only the finished blob before its 201. A chunk outlives the process;
//! a crash of the machine voids the unfinished sessions it may have cut (the store's epoch
//! changes), and they answer 404 so the client starts the blob over. None is ever committed
//! with bytes missing.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use marina_oci::{Algorithm, Digest, Hasher, RepoName};
use marina_store::{InputStream, Key};
use serde::{Deserialize, Serialize};

use crate::{Error, Registry, Result, keys};

/// An upload session id: 128 random bits written as a UUID, safe as a key component.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    fn random() -> Self {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).expect("the OS random source works");
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        Self(format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        ))
    }
}

impl FromStr for UploadId {
    type Err = Error;

    /// Anything not shaped like an id is an unknown session: it never reaches storage.
    fn from_str(s: &str) -> Result<Self> {
        let dashes = [8, 13, 18, 23];
        let valid = s.len() == 36
            && s.bytes().enumerate().all(|(i, b)| {
                if dashes.contains(&i) {
                    b == b'-'
                } else {
                    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
                }
            });
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::UploadUnknown(s.to_owned()))
        }
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an upload stands.
#[derive(Debug, Clone)]
pub struct UploadStatus {
    /// The session.
    pub id: UploadId,
    /// Bytes received so far.
    pub offset: u64,
}

/// What is persisted per session, beside its data.
#[derive(Debug, Serialize, Deserialize)]
struct SessionState {
    algorithm: String,
    offset: u64,
    /// The hasher's saved state, hex-encoded.
    hash: String,
    /// Unix seconds of the last change, for expiry.
    touched: u64,
    /// The store's volatile epoch when this was written: the session is void once it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch: Option<String>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A loaded session: its state, the hasher resumed from it, and its keys.
struct Session {
    repo: RepoName,
    id: UploadId,
    offset: u64,
    hasher: Hasher,
}

impl Session {
    fn state_key(&self) -> Key {
        keys::upload_state(&self.repo, &self.id)
    }

    fn data_key(&self) -> Key {
        keys::upload_data(&self.repo, &self.id)
    }

    fn status(&self) -> UploadStatus {
        UploadStatus {
            id: self.id.clone(),
            offset: self.offset,
        }
    }
}

impl Registry {
    /// Opens an upload session hashing with `algorithm`.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn start_upload(
        &self,
        repo: &RepoName,
        algorithm: Algorithm,
    ) -> Result<UploadStatus> {
        let session = Session {
            repo: repo.clone(),
            id: UploadId::random(),
            offset: 0,
            hasher: algorithm.hasher(),
        };
        // Marks the repository for the purge, which cannot rely on the catalog: a repository
        // whose only content is an unfinished upload is not in it.
        self.put_if_absent(&keys::uploading_entry(repo), bytes::Bytes::new())
            .await?;
        self.save_session(&session).await?;
        Ok(session.status())
    }

    /// The session's progress.
    ///
    /// # Errors
    /// [`Error::UploadUnknown`] for a missing or expired session.
    pub async fn upload_status(&self, repo: &RepoName, id: &UploadId) -> Result<UploadStatus> {
        Ok(self.load_session(repo, id).await?.status())
    }

    /// Appends a chunk. `start`, from `Content-Range`, must equal the session's length.
    ///
    /// # Errors
    /// [`Error::ChunkOutOfOrder`] when `start` is off (nothing changes), [`Error::UploadUnknown`],
    /// [`Error::BodyIncomplete`] when the body breaks off (the session keeps its old length).
    pub async fn append_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        start: Option<u64>,
        body: InputStream,
    ) -> Result<UploadStatus> {
        let _turn = self.sessions.lock(id.as_ref()).await;
        let mut session = self.load_session(repo, id).await?;
        check_start(&session, start)?;
        self.receive(&mut session, body).await?;
        self.save_session(&session).await?;
        Ok(session.status())
    }

    /// Finishes an upload: appends the optional last chunk, checks the digest, and commits the
    /// blob into the repository.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`] leaves the session as it was before this request.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        start: Option<u64>,
        body: Option<InputStream>,
    ) -> Result<()> {
        let _turn = self.sessions.lock(id.as_ref()).await;
        let mut session = self.load_session(repo, id).await?;
        if let Some(body) = body {
            check_start(&session, start)?;
            self.receive(&mut session, body).await?;
        }
        let actual = self.final_digest(&session, digest.algorithm()).await?;
        if actual != *digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        self.commit_blob(repo, &session.data_key(), session.offset, digest)
            .await?;
        self.store.delete_prefix(&keys::upload(repo, id)).await?;
        Ok(())
    }

    /// Uploads a whole blob in one request (`POST ?digest=`). It is a session like any other
    /// (so a crash leaves nothing the expiry purge does not find), begun and finished at once.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`] stores nothing.
    pub async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: InputStream,
    ) -> Result<()> {
        let session = self.start_upload(repo, digest.algorithm()).await?;
        let outcome = self
            .finish_upload(repo, &session.id, digest, None, Some(body))
            .await;
        if outcome.is_err() {
            self.store
                .delete_prefix(&keys::upload(repo, &session.id))
                .await?;
        }
        outcome
    }

    /// Cancels a session and drops its data.
    ///
    /// # Errors
    /// [`Error::UploadUnknown`] for a missing session.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        let _turn = self.sessions.lock(id.as_ref()).await;
        self.load_session(repo, id).await?;
        self.store.delete_prefix(&keys::upload(repo, id)).await?;
        Ok(())
    }

    /// Deletes every session idle for longer than the configured expiry, in every repository
    /// that ever had one. Returns how many.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn purge_stale_uploads(&self) -> Result<usize> {
        let mut purged = 0;
        let mut last: Option<String> = None;
        loop {
            let page = self
                .marked_repos(&keys::uploading(), last.as_deref(), 1000)
                .await?;
            for name in &page.items {
                let Ok(repo) = name.parse::<RepoName>() else {
                    continue;
                };
                purged += self.purge_repo_uploads(&repo).await?;
            }
            if !page.more {
                return Ok(purged);
            }
            last = page.items.last().cloned();
        }
    }

    async fn purge_repo_uploads(&self, repo: &RepoName) -> Result<usize> {
        let keys = self
            .store
            .list(&keys::uploads(repo), None, usize::MAX)
            .await?;
        let mut purged = 0;
        for id in keys.iter().filter_map(|k| k.strip_suffix("/state")) {
            let Ok(id) = id.parse::<UploadId>() else {
                continue;
            };
            if matches!(
                self.load_session(repo, &id).await,
                Err(Error::UploadUnknown(_))
            ) {
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// Streams `body` into the session's data, hashing as it goes; updates offset and hasher.
    /// The bytes become durable when the blob is committed.
    async fn receive(&self, session: &mut Session, body: InputStream) -> Result<()> {
        let (hashed, hasher) = crate::hashing::hash_on_the_way(body, session.hasher.clone());
        let (key, offset) = (session.data_key(), session.offset);
        session.offset = self.store.append(&key, offset, hashed).await?;
        session.hasher = hasher
            .await
            .map_err(|e| Error::BodyIncomplete(format!("hashing stopped: {e}")))?;
        Ok(())
    }

    /// The digest of the session's data: from the streamed hash, or, when the client chose a
    /// different algorithm than the session's, by reading the data back once.
    async fn final_digest(&self, session: &Session, algorithm: Algorithm) -> Result<Digest> {
        if session.hasher.algorithm() == algorithm {
            return Ok(session.hasher.clone().finish());
        }
        let mut hasher = algorithm.hasher();
        if session.offset > 0 {
            let mut data = self
                .store
                .read(&session.data_key(), 0..session.offset)
                .await?;
            while let Some(chunk) = data.next().await {
                hasher.update(&chunk?);
            }
        }
        Ok(hasher.finish())
    }

    async fn save_session(&self, session: &Session) -> Result<()> {
        let state = SessionState {
            algorithm: session.hasher.algorithm().to_string(),
            offset: session.offset,
            hash: hex::encode(session.hasher.save()),
            touched: now_secs(),
            epoch: self.store.volatile_epoch().map(str::to_owned),
        };
        let bytes = serde_json::to_vec(&state)
            .expect("session state serializes")
            .into();
        self.store.put_volatile(&session.state_key(), bytes).await?;
        Ok(())
    }

    /// Loads a session; an expired one, or one the machine may have lost bytes of since, is
    /// deleted and reported unknown.
    async fn load_session(&self, repo: &RepoName, id: &UploadId) -> Result<Session> {
        let unknown = || Error::UploadUnknown(id.to_string());
        let raw = match self.store.get(&keys::upload_state(repo, id)).await {
            Err(e) if e.is_not_found() => return Err(unknown()),
            other => other?,
        };
        let state: SessionState = serde_json::from_slice(&raw).map_err(|_| unknown())?;
        let idle = Duration::from_secs(now_secs().saturating_sub(state.touched));
        let lost = state.epoch.is_some() && state.epoch.as_deref() != self.store.volatile_epoch();
        if idle > self.config.upload_expiry || lost {
            self.store.delete_prefix(&keys::upload(repo, id)).await?;
            return Err(unknown());
        }
        let algorithm: Algorithm = state.algorithm.parse().map_err(|_| unknown())?;
        let saved = hex::decode(&state.hash).map_err(|_| unknown())?;
        let hasher = Hasher::restore(algorithm, &saved).map_err(|_| unknown())?;
        Ok(Session {
            repo: repo.clone(),
            id: id.clone(),
            offset: state.offset,
            hasher,
        })
    }
}

impl AsRef<str> for UploadId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn check_start(session: &Session, start: Option<u64>) -> Result<()> {
    match start {
        Some(got) if got != session.offset => Err(Error::ChunkOutOfOrder {
            expected: session.offset,
            got,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_shaped_and_round_trip() {
        let id = UploadId::random();
        assert_eq!(id.to_string().parse::<UploadId>().unwrap(), id);
        assert_ne!(UploadId::random(), id);
    }

    #[test]
    fn ids_that_could_touch_storage_are_refused() {
        for bad in [
            "",
            "..",
            "../../etc",
            "ABCDEF00-0000-4000-8000-000000000000",
            "x".repeat(36).as_str(),
        ] {
            assert!(bad.parse::<UploadId>().is_err(), "{bad:?} accepted");
        }
    }
}
