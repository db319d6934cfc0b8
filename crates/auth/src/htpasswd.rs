//! Users and their bcrypt password hashes, from an htpasswd file (what `htpasswd -B` writes).
//! Any other kind of hash is refused when the file is read: a weak hash never signs anyone in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// How long a successful password check is remembered, so a client that sends Basic
/// credentials with every request pays for bcrypt once, not each time.
const REMEMBER: Duration = Duration::from_secs(60);

/// The most remembered checks; past it, the oldest are forgotten.
const REMEMBERED: usize = 10_000;

/// A line of the file that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct HtpasswdError {
    /// The line, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// The users of an htpasswd file.
#[derive(Debug, Default)]
pub struct Htpasswd {
    hashes: HashMap<String, String>,
    /// Successful checks: a digest of user and password, and when.
    remembered: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Htpasswd {
    /// Reads the file's text: `user:hash` lines, blank lines and `#` comments.
    ///
    /// # Errors
    /// The first line that is not a user with a bcrypt hash, or names a user twice.
    pub fn parse(text: &str) -> Result<Self, HtpasswdError> {
        let mut hashes = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |reason: &str| HtpasswdError {
                line: index + 1,
                reason: reason.to_owned(),
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| error("expected user:hash"))?;
            if user.is_empty() {
                return Err(error("the user name is empty"));
            }
            if !is_bcrypt(hash) {
                return Err(error(&format!(
                    "the hash of {user:?} is not bcrypt ($2y$, $2b$ or $2a$); \
                     write the file with `htpasswd -B`"
                )));
            }
            if hashes.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err(error(&format!("{user:?} is listed twice")));
            }
        }
        Ok(Self {
            hashes,
            remembered: Mutex::default(),
        })
    }

    /// Whether the file names this user.
    #[must_use]
    pub fn has_user(&self, user: &str) -> bool {
        self.hashes.contains_key(user)
    }

    /// Whether `password` is `user`'s. Slow (bcrypt) unless it succeeded recently: call it off
    /// the async workers.
    #[must_use]
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.hashes.get(user) else {
            return false;
        };
        let key = remember_key(user, password);
        let now = Instant::now();
        if self
            .lock()
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < REMEMBER)
        {
            return true;
        }
        let valid = bcrypt::verify(password, hash).unwrap_or(false);
        if valid {
            let mut remembered = self.lock();
            if remembered.len() >= REMEMBERED {
                remembered.retain(|_, at| now.duration_since(*at) < REMEMBER);
                if remembered.len() >= REMEMBERED {
                    remembered.clear();
                }
            }
            remembered.insert(key, now);
        }
        valid
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) && hash.len() == 60
}

/// What a successful check is remembered by: never the password itself.
fn remember_key(user: &str, password: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(user.as_bytes());
    hasher.update([0]);
    hasher.update(password.as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(password: &str) -> String {
        bcrypt::hash(password, 4).unwrap()
    }

    #[test]
    fn bcrypt_users_sign_in_with_their_password_only() {
        let text = format!("# users\n\nalice:{}\nbob:{}\n", hash("a-secret"), hash("b"));
        let users = Htpasswd::parse(&text).unwrap();
        assert!(users.verify("alice", "a-secret"));
        assert!(users.verify("alice", "a-secret"), "remembered");
        assert!(!users.verify("alice", "b"));
        assert!(!users.verify("carol", "a-secret"));
        assert!(users.has_user("bob"));
    }

    #[test]
    fn other_hashes_are_refused_with_their_line() {
        let cases = [
            ("alice:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=", 1, "not bcrypt"),
            ("\nbob:$apr1$abc$def", 2, "not bcrypt"),
            ("carol:plain", 1, "not bcrypt"),
            ("no-colon", 1, "user:hash"),
        ];
        for (text, line, reason) in cases {
            let error = Htpasswd::parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text}");
            assert!(error.reason.contains(reason), "{text}: {}", error.reason);
        }
        let twice = format!("a:{0}\na:{0}\n", hash("x"));
        assert!(
            Htpasswd::parse(&twice)
                .unwrap_err()
                .reason
                .contains("twice")
        );
    }
}
