//! What to send in `Authorization`: Basic credentials once the upstream asked for them, or a
//! Bearer token per scope, fetched from the challenge's realm and kept until shortly before it
//! expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use crate::challenge::Challenge;
use crate::{Credentials, Error};

/// A token is dropped this long before the upstream says it expires.
const MARGIN: Duration = Duration::from_secs(10);
/// The lifetime of a token whose answer gives none (the token spec's default).
const DEFAULT_LIFETIME: u64 = 60;
/// Tokens kept at most; past that the expired ones go, then all.
const KEPT_AT_MOST: usize = 10_000;

/// The token service's answer.
#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Signing in to one upstream.
#[derive(Debug)]
pub(crate) struct Tokens {
    http: reqwest::Client,
    credentials: Option<Credentials>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The upstream asked for Basic credentials.
    basic: bool,
    /// Bearer tokens by scope, with when they stop being used.
    bearer: HashMap<String, (String, Instant)>,
}

impl Tokens {
    pub(crate) fn new(http: reqwest::Client, credentials: Option<Credentials>) -> Self {
        Self {
            http,
            credentials,
            state: Mutex::default(),
        }
    }

    /// The `Authorization` value for a request in `scope`, if marina has one.
    pub(crate) fn authorization(&self, scope: &str) -> Option<String> {
        let state = self.state();
        if let Some((token, until)) = state.bearer.get(scope)
            && Instant::now() < *until
        {
            return Some(format!("Bearer {token}"));
        }
        state.basic.then(|| self.basic()).flatten()
    }

    /// Answers a challenge for `scope`: remembers that Basic is wanted, or fetches a token.
    pub(crate) async fn sign_in(&self, challenge: &Challenge, scope: &str) -> Result<(), Error> {
        match challenge {
            Challenge::Basic if self.credentials.is_some() => {
                self.state().basic = true;
                Ok(())
            }
            Challenge::Basic => Err(Error::Refused(
                "the upstream wants a user name and password, and none is configured".into(),
            )),
            Challenge::Bearer { realm, service, .. } => {
                let (token, lifetime) = self.fetch(realm, service.as_deref(), scope).await?;
                let until = Instant::now() + lifetime.saturating_sub(MARGIN);
                let mut state = self.state();
                if state.bearer.len() >= KEPT_AT_MOST {
                    let now = Instant::now();
                    state.bearer.retain(|_, (_, until)| *until > now);
                    if state.bearer.len() >= KEPT_AT_MOST {
                        state.bearer.clear();
                    }
                }
                state.bearer.insert(scope.to_owned(), (token, until));
                Ok(())
            }
        }
    }

    /// Asks the token service for a token, with the credentials when there are some.
    async fn fetch(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(String, Duration), Error> {
        let mut query = vec![("scope", scope)];
        query.extend(service.map(|s| ("service", s)));
        let mut request = self.http.get(realm).query(&query);
        if let Some(value) = self.basic() {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let failed = |e: String| Error::Unavailable(format!("the token service {realm}: {e}"));
        let response = request.send().await.map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Error::Refused(format!(
                "the token service {realm} refused the credentials ({status})"
            )));
        }
        if !status.is_success() {
            return Err(failed(format!("answered {status}")));
        }
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| Error::Invalid(format!("the token service {realm}: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Invalid(format!("the token service {realm} sent no token")))?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(DEFAULT_LIFETIME));
        Ok((token, lifetime))
    }

    fn basic(&self) -> Option<String> {
        self.credentials.as_ref().map(|c| {
            let pair = format!("{}:{}", c.username, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
