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
use marina_store::{InputStream, Key, Part};
use serde::{Deserialize, Serialize};

use crate::{Error, Registry, Result, keys};

/// An upload session id: 128 random bits written as a UUID, safe as a key component.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    pub(crate) fn random() -> Self {
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

/// Keys listed per page by the upload purge.
const PURGE_PAGE: usize = 1000;

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
    /// The staged parts holding exactly the hashed bytes, in order (backends that keep parts
    /// apart name them). State from before parts were recorded has none: see [`Session::load`].
    #[serde(default)]
    parts: Option<Vec<Part>>,
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
    parts: Vec<Part>,
}

impl Session {
    fn state_key(&self) -> Key {
        keys::upload_state(&self.repo, &self.id)
    }

    fn data_key(&self) -> Key {
        keys::upload_data(&self.repo, &self.id)
    }

    /// Staged data that vanished under a session (a cancel or purge elsewhere, a replica that
    /// committed it first) means the session is gone: 404, never 500.
    fn gone_if_missing(&self, e: Error) -> Error {
        match e {
            Error::Store(store) if store.is_not_found() => {
                Error::UploadUnknown(self.id.to_string())
            }
            other => other,
        }
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
            parts: Vec::new(),
        };
        self.save_session(&session).await?;
        // Marks the repository for the purge, which cannot rely on the catalog: a repository
        // whose only content is an unfinished upload is not in it. After the state, so that a
        // purge removing the marker of a repository it saw empty finds this session when it
        // looks again (see `purge_repo_uploads`).
        self.put_if_absent(&keys::uploading_entry(repo), bytes::Bytes::new())
            .await?;
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
        let mut session = self.load_held_session(repo, id).await?;
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
        let mut session = self.load_held_session(repo, id).await?;
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
        let (staged, parts) = (session.data_key(), session.parts.as_slice());
        self.commit_blob(repo, &staged, parts, session.offset, digest)
            .await
            .map_err(|e| session.gone_if_missing(e))?;
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
        self.load_held_session(repo, id).await?;
        self.store.delete_prefix(&keys::upload(repo, id)).await?;
        Ok(())
    }

    /// Deletes every session idle for longer than the configured expiry, in every repository
    /// that ever had one, and the marker of every repository left without sessions. Returns
    /// how many sessions. A session a request of this process is working on is never idle.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn purge_stale_uploads(&self) -> Result<usize> {
        let mut purged = 0;
        let mut last: Option<String> = None;
        loop {
            let page = self
                .marked_repos(&keys::uploading(), last.as_deref(), PURGE_PAGE)
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

    /// How many upload sessions the store holds, in every repository (for the metrics).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn count_upload_sessions(&self) -> Result<usize> {
        let mut count = 0;
        let mut last: Option<String> = None;
        loop {
            let page = self
                .marked_repos(&keys::uploading(), last.as_deref(), PURGE_PAGE)
                .await?;
            for repo in page.items.iter().filter_map(|n| n.parse::<RepoName>().ok()) {
                let mut after: Option<String> = None;
                loop {
                    let prefix = keys::uploads(&repo);
                    let keys = self
                        .store
                        .list(&prefix, after.as_deref(), PURGE_PAGE)
                        .await?;
                    count += keys.iter().filter(|k| k.ends_with("/state")).count();
                    if keys.len() < PURGE_PAGE {
                        break;
                    }
                    after = keys.last().cloned();
                }
            }
            if !page.more {
                return Ok(count);
            }
            last = page.items.last().cloned();
        }
    }

    /// Purges one repository's stale sessions, a page at a time; drops its marker when none
    /// is left. The marker goes first and the sessions are listed again: a session started
    /// meanwhile wrote its state before it checked the marker, so it is seen then and the
    /// marker comes back, or it checks after the removal and writes the marker itself.
    async fn purge_repo_uploads(&self, repo: &RepoName) -> Result<usize> {
        let mut purged = 0;
        let mut after: Option<String> = None;
        let mut live = false;
        loop {
            let page = self
                .store
                .list(&keys::uploads(repo), after.as_deref(), PURGE_PAGE)
                .await?;
            for id in page.iter().filter_map(|k| k.strip_suffix("/state")) {
                match id.parse::<UploadId>() {
                    Ok(id) if self.purge_if_stale(repo, &id).await? => purged += 1,
                    _ => live = true,
                }
            }
            if page.len() < PURGE_PAGE {
                break;
            }
            after = page.last().cloned();
        }
        if !live {
            let marker = keys::uploading_entry(repo);
            self.store.delete(&marker).await?;
            if !self
                .store
                .list(&keys::uploads(repo), None, 1)
                .await?
                .is_empty()
            {
                self.store.put(&marker, bytes::Bytes::new()).await?;
            }
        }
        Ok(purged)
    }

    /// Deletes the session if it is stale and no request of this process holds it.
    async fn purge_if_stale(&self, repo: &RepoName, id: &UploadId) -> Result<bool> {
        let Some(_turn) = self.sessions.try_lock(id.as_ref()) else {
            return Ok(false);
        };
        self.delete_if_stale(repo, id).await
    }

    /// Deletes the session if it is stale; the caller holds its lock.
    async fn delete_if_stale(&self, repo: &RepoName, id: &UploadId) -> Result<bool> {
        let stale = match self.store.get(&keys::upload_state(repo, id)).await {
            Err(e) if e.is_not_found() => return Ok(false),
            Ok(raw) => serde_json::from_slice::<SessionState>(&raw)
                .map_or(true, |state| self.is_stale(&state)),
            Err(e) => return Err(e.into()),
        };
        if stale {
            self.store.delete_prefix(&keys::upload(repo, id)).await?;
        }
        Ok(stale)
    }

    /// Streams `body` into the session's data, hashing as it goes; updates offset, parts and
    /// hasher. The bytes become durable when the blob is committed.
    async fn receive(&self, session: &mut Session, body: InputStream) -> Result<()> {
        let (hashed, hasher) = crate::hashing::hash_on_the_way(body, session.hasher.clone());
        let (key, offset) = (session.data_key(), session.offset);
        let append = self.store.append(&key, offset, hashed);
        let appended = self
            .keeping_alive(session, append)
            .await?
            .map_err(|e| session.gone_if_missing(e.into()))?;
        session.hasher = hasher
            .await
            .map_err(|e| Error::BodyIncomplete(format!("hashing stopped: {e}")))?;
        session.offset = appended.length;
        session.parts.extend(appended.part);
        Ok(())
    }

    /// Runs `work` on the session, re-saving its unchanged state every third of the expiry, so
    /// that no purge, on this replica or another, takes a session for idle while a slow client
    /// is still sending to it.
    async fn keeping_alive<T>(
        &self,
        session: &Session,
        work: impl Future<Output = T>,
    ) -> Result<T> {
        let every = (self.config.upload_expiry / 3).max(std::time::Duration::from_millis(10));
        let mut work = std::pin::pin!(work);
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                done = &mut work => return Ok(done),
                _ = beat.tick() => self.save_session(session).await?,
            }
        }
    }

    /// The digest of the session's data: from the streamed hash, or, when the client chose a
    /// different algorithm than the session's, by reading the data back once.
    async fn final_digest(&self, session: &Session, algorithm: Algorithm) -> Result<Digest> {
        if session.hasher.algorithm() == algorithm {
            return Ok(session.hasher.clone().finish());
        }
        let mut hasher = algorithm.hasher();
        if session.offset > 0 {
            let (key, parts) = (session.data_key(), &session.parts);
            let mut data = self
                .store
                .read_staged(&key, parts, 0..session.offset)
                .await
                .map_err(|e| session.gone_if_missing(e.into()))?;
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
            parts: Some(session.parts.clone()),
        };
        let bytes = serde_json::to_vec(&state)
            .expect("session state serializes")
            .into();
        self.store.put_volatile(&session.state_key(), bytes).await?;
        Ok(())
    }

    /// Whether a session is past its expiry, or the machine may have lost bytes of it since.
    fn is_stale(&self, state: &SessionState) -> bool {
        let idle = Duration::from_secs(now_secs().saturating_sub(state.touched));
        let lost = state.epoch.is_some() && state.epoch.as_deref() != self.store.volatile_epoch();
        idle > self.config.upload_expiry || lost
    }

    /// Loads a session for a request that holds its lock: a stale one is deleted on the way,
    /// as the purge would.
    async fn load_held_session(&self, repo: &RepoName, id: &UploadId) -> Result<Session> {
        let loaded = self.load_session(repo, id).await;
        if matches!(loaded, Err(Error::UploadUnknown(_))) {
            self.delete_if_stale(repo, id).await?;
        }
        loaded
    }

    /// Loads a session. A stale one is unknown (the purge deletes it), and so is one whose
    /// state, written before parts were recorded, cannot say which staged bytes it hashed.
    async fn load_session(&self, repo: &RepoName, id: &UploadId) -> Result<Session> {
        let unknown = || Error::UploadUnknown(id.to_string());
        let raw = match self.store.get(&keys::upload_state(repo, id)).await {
            Err(e) if e.is_not_found() => return Err(unknown()),
            other => other?,
        };
        let state: SessionState = serde_json::from_slice(&raw).map_err(|_| unknown())?;
        if self.is_stale(&state) {
            return Err(unknown());
        }
        let (offset, hasher, parts) = state.resume().ok_or_else(unknown)?;
        Ok(Session {
            repo: repo.clone(),
            id: id.clone(),
            offset,
            hasher,
            parts,
        })
    }
}

impl SessionState {
    /// The length, hasher and parts to resume from; `None` when the state cannot say which
    /// staged bytes it hashed (written before parts were recorded) or does not decode.
    fn resume(self) -> Option<(u64, Hasher, Vec<Part>)> {
        let parts = match self.parts {
            Some(parts) => parts,
            None if self.offset == 0 => Vec::new(),
            None => return None,
        };
        let algorithm: Algorithm = self.algorithm.parse().ok()?;
        let saved = hex::decode(&self.hash).ok()?;
        let hasher = Hasher::restore(algorithm, &saved).ok()?;
        Some((self.offset, hasher, parts))
    }
}

/// Whether stored session-state bytes decode into a session that can be resumed, the way a
/// request reads them back (the fuzz targets feed it arbitrary bytes; it must never panic).
#[must_use]
pub fn session_state_resumes(raw: &[u8]) -> bool {
    serde_json::from_slice::<SessionState>(raw)
        .ok()
        .and_then(SessionState::resume)
        .is_some()
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
    fn stored_state_resumes_only_when_it_says_what_it_hashed() {
        let hasher = Algorithm::Sha256.hasher();
        let state = |offset, parts: Option<Vec<Part>>| SessionState {
            algorithm: "sha256".into(),
            offset,
            hash: hex::encode(hasher.save()),
            touched: 0,
            epoch: None,
            parts,
        };
        let json = |s: &SessionState| serde_json::to_vec(s).unwrap();
        assert!(session_state_resumes(&json(&state(0, Some(vec![])))));
        assert!(
            session_state_resumes(&json(&state(0, None))),
            "nothing hashed yet"
        );
        assert!(
            !session_state_resumes(&json(&state(5, None))),
            "bytes, but no parts"
        );
        let mut bad_hash = state(0, Some(vec![]));
        bad_hash.hash = "zz".into();
        assert!(!session_state_resumes(&json(&bad_hash)));
        assert!(!session_state_resumes(b"{\"algorithm\":\"md5\""));
    }

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
