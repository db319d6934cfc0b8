//! Auth at start-up and while serving: the htpasswd file and the rules read into a policy, the
//! token key read or made, and the policy read again when either file changes or on SIGHUP.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use marina_auth::{Htpasswd, TokenIssuer, TokenVerifier, keys_from_certificates, keys_from_jwks};
use marina_http::{Auth, Policy};

use crate::config::{AuthConfig, KeySource, RELOAD_EVERY, TrustedKeys, read_rules};

/// The auth a server starts with; a bad file or key stops start-up, naming it.
pub(crate) fn open(config: &AuthConfig) -> anyhow::Result<Arc<Auth>> {
    let policy = policy(config).map_err(anyhow::Error::msg)?;
    if let Some(external) = &config.external {
        let keys = match &external.keys {
            TrustedKeys::Certificates(path) => read_keys(path, keys_from_certificates)?,
            TrustedKeys::Jwks(path) => read_keys(path, keys_from_jwks)?,
        };
        let verifier = TokenVerifier::new(keys, &external.issuer, &external.service);
        return Ok(Arc::new(Auth::external(
            policy,
            verifier,
            config.settings.clone(),
        )));
    }
    let issuer = match &config.token {
        None => None,
        Some(token) => {
            let pem = token_key(&token.key)?;
            let issuer = TokenIssuer::from_pem(&pem, &token.issuer, &token.service)
                .with_context(|| format!("the token key {}", key_path(&token.key).display()))?;
            Some(issuer)
        }
    };
    Ok(Arc::new(Auth::new(policy, issuer, config.settings.clone())))
}

/// What `marina config check` says of auth: the users, rules and keys read as start-up would
/// read them, except that a signing key still to be made is not made.
pub(crate) fn check(config: &AuthConfig) -> anyhow::Result<String> {
    policy(config).map_err(anyhow::Error::msg)?;
    let mut said = vec!["the users and access rules read".to_owned()];
    if let Some(external) = &config.external {
        match &external.keys {
            TrustedKeys::Certificates(path) => read_keys(path, keys_from_certificates).map(drop)?,
            TrustedKeys::Jwks(path) => read_keys(path, keys_from_jwks).map(drop)?,
        }
        said.push(format!(
            "tokens of issuer {:?} are trusted",
            external.issuer
        ));
    }
    match config.token.as_ref().map(|t| (t, &t.key)) {
        Some((_, KeySource::Kept(path))) if !path.exists() => said.push(format!(
            "a token signing key will be made at first start, at {}",
            path.display()
        )),
        Some((token, key)) => {
            let pem = token_key(key)?;
            TokenIssuer::from_pem(&pem, &token.issuer, &token.service)
                .with_context(|| format!("the token key {}", key_path(key).display()))?;
            said.push(format!(
                "tokens are signed with {}",
                key_path(key).display()
            ));
        }
        None => {}
    }
    Ok(said.join("; "))
}

/// An external issuer's trusted keys from `path`.
fn read_keys<T>(
    path: &Path,
    parse: fn(&str) -> Result<T, marina_auth::TokenError>,
) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token issuer's keys {}", path.display()))?;
    parse(&text).with_context(|| format!("the token issuer's keys {}", path.display()))
}

/// The users and rules as the files say now.
fn policy(config: &AuthConfig) -> Result<Policy, String> {
    let users = match &config.htpasswd {
        None => Htpasswd::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the htpasswd file {}: {e}", path.display()))?;
            Htpasswd::parse(&text).map_err(|e| format!("htpasswd file {}, {e}", path.display()))?
        }
    };
    let acl = read_rules(config.rules_file.as_deref())?;
    Ok(Policy { users, acl })
}

fn key_path(key: &KeySource) -> &Path {
    match key {
        KeySource::File(path) | KeySource::Kept(path) => path,
    }
}

/// The token key's PEM: the configured file, or the one kept under the storage path, made at
/// first start (readable by marina's user only).
fn token_key(key: &KeySource) -> anyhow::Result<String> {
    match key {
        KeySource::File(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token key {}", path.display())),
        KeySource::Kept(path) if path.exists() => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token key {}", path.display())),
        KeySource::Kept(path) => {
            let pem = TokenIssuer::generate_pem()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write_private(path, &pem)
                .with_context(|| format!("cannot keep the token key at {}", path.display()))?;
            tracing::info!(key = %path.display(), "made a token signing key (ES256)");
            Ok(pem)
        }
    }
}

fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()
}

/// Reads the users and rules again whenever the htpasswd file or the configuration file
/// changes, and on SIGHUP. A file that no longer reads keeps the policy in force, logged.
pub(crate) async fn keep_current(auth: Arc<Auth>, config: AuthConfig) {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = stamps(&config);
    let mut ticker = tokio::time::interval(RELOAD_EVERY);
    loop {
        let hangup = async {
            match hangups.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        let asked = tokio::select! {
            _ = ticker.tick() => false,
            _ = hangup => true,
        };
        let now = stamps(&config);
        if !asked && now == seen {
            continue;
        }
        seen = now;
        match policy(&config) {
            Ok(policy) => {
                auth.replace(policy);
                tracing::info!("read the users and access rules again");
            }
            Err(e) => {
                tracing::error!(error = %e, "the users and rules were not reloaded; the old ones stay in force")
            }
        }
    }
}

/// When the htpasswd and configuration files last changed.
fn stamps(config: &AuthConfig) -> [Option<SystemTime>; 2] {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    [
        config.htpasswd.as_deref().and_then(modified),
        config.rules_file.as_deref().and_then(modified),
    ]
}
