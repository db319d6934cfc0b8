//! The `[[proxy]]` pull-through caches, checked before serving: a bad prefix or remote, two
//! proxies on one prefix, or credentials that cannot be read stop start-up, naming the entry
//! and the key.

use std::sync::Arc;

use marina_oci::RepoName;
use marina_registry::proxy::{OnUpstreamError, Proxy};
use marina_upstream::{Credentials, Remote, Settings};
use serde::Deserialize;

use super::sources::Sources;
use super::{ConfigError, names, parse};

/// One `[[proxy]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    prefix: String,
    remote: String,
    username: Option<String>,
    username_env: Option<String>,
    password_file: Option<String>,
    password_env: Option<String>,
    tag_ttl: Option<String>,
    on_upstream_error: Option<String>,
    max_bytes: Option<String>,
    max_age: Option<String>,
}

/// The proxies in file order.
pub(super) fn resolve(s: &Sources<'_>) -> Result<Vec<Arc<Proxy>>, ConfigError> {
    let Some(list) = s.file_value(&names::PROXY) else {
        return Ok(Vec::new());
    };
    let written: Vec<Written> = list
        .try_into()
        .map_err(|e| ConfigError(format!("[[proxy]]: {e}")))?;
    let mut proxies: Vec<Arc<Proxy>> = Vec::new();
    for (i, entry) in written.into_iter().enumerate() {
        let named =
            |what: String| ConfigError(format!("[[proxy]] {} ({}): {what}", i + 1, entry.prefix));
        let proxy = proxy(&entry).map_err(named)?;
        if let Some(other) = proxies.iter().find(|p| overlaps(&p.prefix, &proxy.prefix)) {
            return Err(named(format!(
                "prefix {:?} overlaps the prefix {:?} of another proxy",
                proxy.prefix, other.prefix
            )));
        }
        proxies.push(Arc::new(proxy));
    }
    Ok(proxies)
}

fn proxy(w: &Written) -> Result<Proxy, String> {
    if w.prefix.parse::<RepoName>().is_err() || w.prefix.ends_with('/') {
        return Err(format!(
            "prefix = {:?} is not a repository name such as docker.io or ghcr.io",
            w.prefix
        ));
    }
    let tag_ttl = w.tag_ttl.as_deref().unwrap_or("5m");
    let tag_ttl = parse::duration(tag_ttl)
        .ok_or_else(|| format!("tag_ttl = {tag_ttl:?} is not a duration such as 5m"))?;
    let on_upstream_error = match w.on_upstream_error.as_deref().unwrap_or("serve-cached") {
        "serve-cached" => OnUpstreamError::ServeCached,
        "fail" => OnUpstreamError::Fail,
        other => {
            return Err(format!(
                "on_upstream_error = {other:?}: expected \"serve-cached\" or \"fail\""
            ));
        }
    };
    let max_bytes = w
        .max_bytes
        .as_deref()
        .map(|v| {
            parse::size(v)
                .filter(|n| *n > 0)
                .map(|n| n as u64)
                .ok_or_else(|| format!("max_bytes = {v:?} is not a size such as 50GiB"))
        })
        .transpose()?;
    let max_age = w
        .max_age
        .as_deref()
        .map(|v| {
            parse::duration(v)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("max_age = {v:?} is not a duration such as 30d"))
        })
        .transpose()?;
    let settings = Settings {
        credentials: credentials(w)?,
        ..Settings::anonymous(&w.remote)
    };
    let remote = Remote::new(settings).map_err(|e| format!("remote = {:?}: {e}", w.remote))?;
    Ok(Proxy {
        prefix: w.prefix.clone(),
        remote,
        tag_ttl,
        on_upstream_error,
        max_bytes,
        max_age,
    })
}

/// The user name and password, from the entry, its environment variables or its file.
fn credentials(w: &Written) -> Result<Option<Credentials>, String> {
    let from_env = |key: &str, var: &str| {
        std::env::var(var).map_err(|_| format!("{key} = {var:?}, but that variable is not set"))
    };
    let username = match (&w.username, &w.username_env) {
        (Some(_), Some(_)) => return Err("set username or username_env, not both".into()),
        (Some(u), None) => Some(u.clone()),
        (None, Some(var)) => Some(from_env("username_env", var)?),
        (None, None) => None,
    };
    let password = match (&w.password_file, &w.password_env) {
        (Some(_), Some(_)) => return Err("set password_file or password_env, not both".into()),
        (Some(path), None) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("password_file = {path:?}: {e}"))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
        (None, Some(var)) => Some(from_env("password_env", var)?),
        (None, None) => None,
    };
    match (username, password) {
        (Some(username), Some(password)) => Ok(Some(Credentials { username, password })),
        (None, None) => Ok(None),
        _ => Err("a user name needs a password, and a password a user name".into()),
    }
}

/// Whether one prefix equals the other or contains it as leading components.
fn overlaps(a: &str, b: &str) -> bool {
    let under = |x: &str, y: &str| x == y || x.strip_prefix(y).is_some_and(|r| r.starts_with('/'));
    under(a, b) || under(b, a)
}

#[cfg(test)]
mod tests {
    use super::overlaps;

    #[test]
    fn prefixes_overlap_by_whole_components() {
        assert!(overlaps("docker.io", "docker.io"));
        assert!(overlaps("docker.io", "docker.io/library"));
        assert!(overlaps("ghcr.io/a", "ghcr.io"));
        assert!(!overlaps("docker.io", "docker.iox"));
        assert!(!overlaps("ghcr.io", "quay.io"));
    }
}
