//! Who a client is and what it may do, with no server and no storage: users from an htpasswd
//! file (bcrypt), the access rules as a pure function, Docker registry tokens (issued and
//! verified), and the throttling of failed logins.

pub mod acl;
pub mod htpasswd;
pub mod throttle;
pub mod token;

pub use acl::{AccessRule, Acl, Action, RuleError};
pub use htpasswd::{Htpasswd, HtpasswdError};
pub use throttle::Throttle;
pub use token::{
    Claims, Granted, Scope, TokenError, TokenIssuer, TokenVerifier, keys_from_certificates,
    keys_from_jwks,
};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// No credentials.
    Anonymous,
    /// A user marina signed in (htpasswd) or a token named (its `sub`).
    User(String),
}

impl Identity {
    /// The name for logs: the user, or `-`.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Anonymous => "-",
            Self::User(name) => name,
        }
    }
}
