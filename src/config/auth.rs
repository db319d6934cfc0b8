//! The auth settings: the htpasswd file, the token service, the groups and the access rules.
//! What can be checked before serving is checked here, so a bad rule or file stops start-up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use marina_auth::{AccessRule, Acl};

use super::sources::Sources;
use super::{ConfigError, StorageConfig, names, parse};

/// Auth as configured: on when an htpasswd file, an external token realm or a client CA is set.
#[derive(Debug, Clone)]
pub(crate) struct AuthConfig {
    /// The htpasswd file, re-read when it changes (none: nobody signs in with a password).
    pub(crate) htpasswd: Option<PathBuf>,
    /// Tokens of another issuer, instead of marina's own.
    pub(crate) external: Option<ExternalTokens>,
    /// The configuration file the rules come from, re-read with the htpasswd file.
    pub(crate) rules_file: Option<PathBuf>,
    /// The token service, unless `auth.token.enabled = false` (Basic only).
    pub(crate) token: Option<TokenConfig>,
    pub(crate) settings: marina_http::AuthSettings,
}

/// The token service's settings.
#[derive(Debug, Clone)]
pub(crate) struct TokenConfig {
    pub(crate) service: String,
    pub(crate) issuer: String,
    /// The PEM private key; `None` on the filesystem means one kept under the storage path.
    pub(crate) key: KeySource,
}

/// An external token issuer: where clients get tokens, and how marina checks them.
#[derive(Debug, Clone)]
pub(crate) struct ExternalTokens {
    pub(crate) service: String,
    pub(crate) issuer: String,
    /// A PEM bundle of the issuer's certificates, or a JWKS file.
    pub(crate) keys: TrustedKeys,
}

/// The files an external issuer's keys are in.
#[derive(Debug, Clone)]
pub(crate) enum TrustedKeys {
    Certificates(PathBuf),
    Jwks(PathBuf),
}

/// Where the token key comes from.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    /// A configured PEM file.
    File(PathBuf),
    /// Generated at first start and kept at this path (filesystem storage only).
    Kept(PathBuf),
}

/// The auth settings, or `None` when auth is off; `client_ca` says whether client certificates
/// sign users in.
pub(super) fn resolve(
    s: &Sources<'_>,
    storage: &StorageConfig,
    client_ca: bool,
) -> Result<Option<AuthConfig>, ConfigError> {
    let file = |v: &str| (!v.is_empty()).then(|| PathBuf::from(v));
    let htpasswd = s
        .optional(&names::AUTH_HTPASSWD, "a file path", file)?
        .map(|(p, _)| p);
    let realm = s.optional(
        &names::AUTH_TOKEN_REALM,
        "an http:// or https:// URL",
        |v| (v.starts_with("http://") || v.starts_with("https://")).then(|| v.to_owned()),
    )?;
    if htpasswd.is_none() && realm.is_none() && !client_ca {
        return Ok(None);
    }
    let external = realm.as_ref().map(|_| external(s)).transpose()?;
    let enabled = s.get(
        &names::AUTH_TOKEN_ENABLED,
        "true",
        "true or false",
        parse::boolean,
    )?;
    // Without passwords there is nothing to exchange for a token: certificates sign in alone.
    let token = (enabled && external.is_none() && htpasswd.is_some())
        .then(|| token(s, storage))
        .transpose()?;
    let settings = marina_http::AuthSettings {
        token_lifetime: s.get(
            &names::AUTH_TOKEN_EXPIRY,
            "5m",
            "a duration such as 5m",
            parse::duration,
        )?,
        realm: realm.map(|(r, _)| r),
        throttle_per_user: s.get(
            &names::AUTH_THROTTLE_USER,
            "5",
            "a whole number from 1",
            count,
        )?,
        throttle_per_address: s.get(
            &names::AUTH_THROTTLE_ADDRESS,
            "30",
            "a whole number from 1",
            count,
        )?,
    };
    // Read with the rules (and again on every reload) by `read_rules`; noted here for
    // `config check`.
    s.optional(&names::AUTH_ADMINS, "a list of user or group names", |_| {
        Some(())
    })?;
    let config = AuthConfig {
        htpasswd,
        external,
        rules_file: s.file_path().map(Path::to_path_buf),
        token,
        settings,
    };
    read_rules(config.rules_file.as_deref()).map_err(ConfigError)?;
    Ok(Some(config))
}

/// The external issuer's settings: its keys, its name, and the service (audience) tokens name.
fn external(s: &Sources<'_>) -> Result<ExternalTokens, ConfigError> {
    let file = |v: &str| (!v.is_empty()).then(|| PathBuf::from(v));
    let bundle = s.optional(&names::AUTH_TOKEN_ROOTCERTBUNDLE, "a file path", file)?;
    let jwks = s.optional(&names::AUTH_TOKEN_JWKS, "a file path", file)?;
    let keys = match (bundle, jwks) {
        (Some((path, _)), None) => TrustedKeys::Certificates(path),
        (None, Some((path, _))) => TrustedKeys::Jwks(path),
        _ => {
            return Err(ConfigError(
                "auth.token.realm names another token issuer: set exactly one of \
                 auth.token.rootcertbundle (its certificates, PEM) or auth.token.jwks (its JWKS)"
                    .to_owned(),
            ));
        }
    };
    let text = |names, default: &str| {
        s.get(names, default, "a name", |v| {
            (!v.is_empty()).then(|| v.to_owned())
        })
    };
    Ok(ExternalTokens {
        service: text(&names::AUTH_TOKEN_SERVICE, "marina")?,
        issuer: text(&names::AUTH_TOKEN_ISSUER, "marina")?,
        keys,
    })
}

fn count(v: &str) -> Option<usize> {
    v.parse().ok().filter(|n| *n >= 1)
}

fn token(s: &Sources<'_>, storage: &StorageConfig) -> Result<TokenConfig, ConfigError> {
    let text = |names, default: &str| {
        s.get(names, default, "a name", |v| {
            (!v.is_empty()).then(|| v.to_owned())
        })
    };
    let key = match s.optional(&names::AUTH_TOKEN_KEY, "a file path", |v| {
        (!v.is_empty()).then(|| PathBuf::from(v))
    })? {
        Some((path, _)) => KeySource::File(path),
        None => match storage {
            StorageConfig::Filesystem { path } => KeySource::Kept(path.join(".token-key.pem")),
            StorageConfig::S3(_) => {
                return Err(ConfigError(
                    "auth.token.key is required on S3: every replica must sign and verify tokens \
                     with the same key (a PEM P-256 EC or RSA private key, PKCS#8)"
                        .to_owned(),
                ));
            }
        },
    };
    Ok(TokenConfig {
        service: text(&names::AUTH_TOKEN_SERVICE, "marina")?,
        issuer: text(&names::AUTH_TOKEN_ISSUER, "marina")?,
        key,
    })
}

/// The groups and access rules of a configuration file's table, checked.
fn acl_of(table: Option<&toml::Table>) -> Result<Acl, String> {
    let auth = table
        .and_then(|t| t.get("auth"))
        .and_then(toml::Value::as_table);
    let section = |key: &str| auth.and_then(|a| a.get(key)).cloned();
    let groups: HashMap<String, Vec<String>> = match section("groups") {
        Some(v) => v
            .try_into()
            .map_err(|e| format!("[auth.groups]: expected name = [\"user\", ...]: {e}"))?,
        None => HashMap::new(),
    };
    let rules: Vec<AccessRule> = match section("access") {
        Some(v) => v.try_into().map_err(|e| format!("[[auth.access]]: {e}"))?,
        None => Vec::new(),
    };
    let admins: Vec<String> = match section("admins") {
        Some(v) => v
            .try_into()
            .map_err(|e| format!("auth.admins: expected [\"user or group\", ...]: {e}"))?,
        None => Vec::new(),
    };
    let acl = Acl::new(&rules, &groups).map_err(|e| e.to_string())?;
    Ok(acl.with_admins(&admins, &groups))
}

/// The rules of the configuration file as it is now (at start, and on every reload).
pub(crate) fn read_rules(file: Option<&Path>) -> Result<Acl, String> {
    let Some(path) = file else {
        return acl_of(None);
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    acl_of(Some(&table)).map_err(|e| format!("{}: {e}", path.display()))
}

/// How often the htpasswd file is checked for changes.
pub(crate) const RELOAD_EVERY: Duration = Duration::from_secs(2);
