//! Who the client is and whether it may do what it asks, decided once per request between
//! parsing the endpoint and dispatching it: Basic credentials against the htpasswd file, a
//! Bearer token marina issued, or nobody. A refusal carries the challenge clients follow
//! (`Bearer realm=...,service=...,scope=...`, or `Basic`). `/auth/token` issues the tokens.

mod gate;
mod token_endpoint;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use marina_auth::{Acl, Granted, Htpasswd, Identity, Throttle, TokenIssuer, TokenVerifier};

pub(crate) use gate::{Caller, authenticate, authorize};

use axum::http::request::Parts;

use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::metrics::{AuthFailure, auth_failed};
pub(crate) use token_endpoint::answer as token_endpoint;

/// The users and rules in force; replaced whole when their files change.
#[derive(Debug, Default)]
pub struct Policy {
    /// The htpasswd users.
    pub users: Htpasswd,
    /// The access rules.
    pub acl: Acl,
}

/// The settings of the token service and the challenges.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// How long an access token lasts.
    pub token_lifetime: Duration,
    /// The realm to send clients to for tokens; `None` is `<scheme>://<Host>/auth/token`.
    pub realm: Option<String>,
    /// Failed logins a minute per user before they are throttled.
    pub throttle_per_user: usize,
    /// Failed logins a minute per source address before it is throttled.
    pub throttle_per_address: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            token_lifetime: Duration::from_secs(300),
            realm: None,
            throttle_per_user: 5,
            throttle_per_address: 30,
        }
    }
}

/// Authentication and authorization for one server.
#[derive(Debug)]
pub struct Auth {
    policy: RwLock<Arc<Policy>>,
    /// Issues and verifies tokens; without it, clients sign in with Basic on every request.
    issuer: Option<TokenIssuer>,
    /// Tokens of another issuer (its realm is in the settings): their `access` claim decides.
    external: Option<TokenVerifier>,
    settings: AuthSettings,
    throttle: Throttle,
}

impl Auth {
    /// Auth with `policy`, issuing tokens with `issuer` (or challenging for Basic without one).
    #[must_use]
    pub fn new(policy: Policy, issuer: Option<TokenIssuer>, settings: AuthSettings) -> Self {
        let throttle = Throttle::new(settings.throttle_per_user, settings.throttle_per_address);
        Self {
            policy: RwLock::new(Arc::new(policy)),
            issuer,
            external: None,
            settings,
            throttle,
        }
    }

    /// Auth that issues no tokens but trusts another issuer's, verified by `verifier` (its keys,
    /// issuer and audience); `settings.realm` sends clients to it.
    #[must_use]
    pub fn external(policy: Policy, verifier: TokenVerifier, settings: AuthSettings) -> Self {
        Self {
            external: Some(verifier),
            ..Self::new(policy, None, settings)
        }
    }

    /// The verifier of the tokens this server accepts, its own or another issuer's.
    fn verifier(&self) -> Option<&TokenVerifier> {
        self.issuer
            .as_ref()
            .map(TokenIssuer::verifier)
            .or(self.external.as_ref())
    }

    /// The service tokens are for, when tokens are on.
    fn service(&self) -> Option<&str> {
        match (&self.issuer, &self.external) {
            (Some(issuer), _) => Some(issuer.service()),
            (None, Some(external)) => Some(external.audience()),
            (None, None) => None,
        }
    }

    /// Puts new users and rules in force (a changed htpasswd file, SIGHUP).
    pub fn replace(&self, policy: Policy) {
        *self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(policy);
    }

    fn policy(&self) -> Arc<Policy> {
        Arc::clone(
            &self
                .policy
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Admits a caller to the admin jobs from another machine: an administrator signed in
    /// (Basic, a token or a client certificate); 401 for nobody, 403 for anyone else.
    pub(crate) async fn admit_admin(&self, request: &Parts, from: IpAddr) -> Result<(), ApiError> {
        let caller = authenticate(self, request, from, &Endpoint::Base).await?;
        if self.policy().acl.is_admin(&caller.identity) {
            return Ok(());
        }
        match caller.identity {
            Identity::Anonymous => Err(ApiError::unauthorized("Basic realm=\"marina\"".to_owned())
                .with_message("the admin jobs need an administrator's credentials")),
            Identity::User(name) => {
                auth_failed(AuthFailure::Denied);
                Err(ApiError::denied(&format!(
                    "{name} is not an administrator (auth.admins)"
                )))
            }
        }
    }

    /// Whether `caller` may pull from `repository` (a mount source, a catalog entry).
    pub(crate) fn may_pull(&self, caller: &Caller, repository: &str) -> bool {
        gate::allows(self, caller, repository, marina_auth::Action::Pull)
    }

    /// Checks a user's password off the async workers, counting failures (for the throttle
    /// and the metrics); `Throttled` when the user or address is (with how long to wait).
    async fn sign_in(&self, user: &str, password: &str, from: IpAddr) -> SignIn {
        if let Some(wait) = self.throttle.wait(user, from) {
            auth_failed(AuthFailure::Throttled);
            return SignIn::Throttled(wait);
        }
        let policy = self.policy();
        let (owned_user, owned_password) = (user.to_owned(), password.to_owned());
        let valid =
            tokio::task::spawn_blocking(move || policy.users.verify(&owned_user, &owned_password))
                .await
                .unwrap_or(false);
        if valid {
            SignIn::Valid(Identity::User(user.to_owned()))
        } else {
            self.throttle.failed(user, from);
            auth_failed(AuthFailure::Password);
            SignIn::Invalid
        }
    }

    /// What `identity` may do of what `scopes` ask: each asked action the rules allow.
    fn grant(&self, identity: &Identity, scopes: &[marina_auth::Scope]) -> Vec<Granted> {
        let policy = self.policy();
        scopes
            .iter()
            .filter_map(|scope| match scope.kind.as_str() {
                "repository" => {
                    let allowed = policy.acl.allowed(identity, &scope.name);
                    let actions = allowed
                        .into_iter()
                        .filter(|a| {
                            scope
                                .actions
                                .iter()
                                .any(|asked| asked == a.as_str() || asked == "*")
                        })
                        .map(|a| a.as_str().to_owned())
                        .collect();
                    Some(Granted {
                        kind: scope.kind.clone(),
                        name: scope.name.clone(),
                        actions,
                    })
                }
                "registry" if scope.name == "catalog" => {
                    let actions = if policy.acl.may_pull_somewhere(identity) {
                        vec!["*".to_owned()]
                    } else {
                        Vec::new()
                    };
                    Some(Granted {
                        kind: scope.kind.clone(),
                        name: scope.name.clone(),
                        actions,
                    })
                }
                _ => None,
            })
            .collect()
    }
}

/// The outcome of a password check.
enum SignIn {
    Valid(Identity),
    Invalid,
    Throttled(Duration),
}
