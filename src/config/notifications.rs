//! The notification settings: `[notifications]` with its `spool` folder and its
//! `[[notifications.endpoints]]`, checked before serving so a bad endpoint stops start-up,
//! naming it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use marina_notify::{Action, EndpointConfig, Format};
use marina_oci::RepoPattern;
use serde::Deserialize;

use super::sources::Sources;
use super::{ConfigError, StorageConfig, names, parse};

/// Where events go, and where they wait.
#[derive(Debug, Clone)]
pub(crate) struct NotificationsConfig {
    /// A local folder: each replica spools the events of the requests it served.
    pub(crate) spool: PathBuf,
    pub(crate) endpoints: Vec<EndpointConfig>,
}

/// One `[[notifications.endpoints]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    name: String,
    url: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default = "default_events")]
    events: Vec<String>,
    #[serde(default)]
    repositories: Vec<String>,
    #[serde(default = "default_format")]
    format: String,
    #[serde(default = "default_max_age")]
    max_age: String,
    #[serde(default = "default_max_queue")]
    max_queue: usize,
    #[serde(default = "default_backoff")]
    backoff: String,
}

fn default_timeout() -> String {
    "5s".into()
}
fn default_events() -> Vec<String> {
    vec!["push".into(), "delete".into()]
}
fn default_format() -> String {
    "distribution".into()
}
fn default_max_age() -> String {
    "24h".into()
}
fn default_max_queue() -> usize {
    100_000
}
fn default_backoff() -> String {
    "60s".into()
}

/// The notification settings, or `None` when no endpoint is configured.
pub(super) fn resolve(
    s: &Sources<'_>,
    storage: &StorageConfig,
) -> Result<Option<NotificationsConfig>, ConfigError> {
    let Some(list) = s.file_value(&names::NOTIFICATION_ENDPOINTS) else {
        return Ok(None);
    };
    let written: Vec<Written> = list
        .try_into()
        .map_err(|e| ConfigError(format!("[[notifications.endpoints]]: {e}")))?;
    let mut seen = HashSet::new();
    let endpoints = written
        .into_iter()
        .map(|w| {
            if !seen.insert(w.name.clone()) {
                return Err(format!("two endpoints are named {:?}", w.name));
            }
            endpoint(w)
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| ConfigError(format!("[[notifications.endpoints]]: {e}")))?;
    if endpoints.is_empty() {
        return Ok(None);
    }
    let spool = s
        .optional(&names::NOTIFICATION_SPOOL, "a folder path", |v| {
            (!v.is_empty()).then(|| PathBuf::from(v))
        })?
        .map(|(path, _)| path);
    let spool = match (spool, storage) {
        (Some(path), _) => path,
        (None, StorageConfig::Filesystem { path }) => path.join(".notifications"),
        (None, StorageConfig::S3(_)) => {
            return Err(ConfigError(
                "notifications on S3 need notifications.spool: a local folder of each replica, \
                 where it keeps the events of the requests it served until they are delivered"
                    .to_owned(),
            ));
        }
    };
    Ok(Some(NotificationsConfig { spool, endpoints }))
}

/// One endpoint, checked.
fn endpoint(w: Written) -> Result<EndpointConfig, String> {
    let name = w.name;
    let named = |what: String| format!("endpoint {name:?}: {what}");
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name {
        return Err(named("the name must be letters, digits, - and _".into()));
    }
    let url = reqwest::Url::parse(&w.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| named(format!("url {:?} is not an http:// or https:// URL", w.url)))?;
    let duration = |key: &str, value: &str| {
        parse::duration(value)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                named(format!(
                    "{key} {value:?} is not a duration such as 5s or 24h"
                ))
            })
    };
    let actions = w
        .events
        .iter()
        .map(|e| match e.as_str() {
            "push" => Ok(Action::Push),
            "pull" => Ok(Action::Pull),
            "delete" => Ok(Action::Delete),
            other => Err(named(format!(
                "unknown event {other:?} (push, pull or delete)"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let repositories = w
        .repositories
        .iter()
        .map(|p| RepoPattern::parse(p).map_err(named))
        .collect::<Result<Vec<_>, _>>()?;
    let format = Format::parse(&w.format).ok_or_else(|| {
        named(format!(
            "format {:?} is not distribution or cloudevents",
            w.format
        ))
    })?;
    for (header, value) in &w.headers {
        let valid = reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_str(value).is_ok();
        if !valid {
            return Err(named(format!(
                "header {header:?} is not a valid HTTP header"
            )));
        }
    }
    if w.max_queue == 0 {
        return Err(named("max_queue must be at least 1".into()));
    }
    Ok(EndpointConfig {
        url: url.to_string(),
        headers: w.headers.into_iter().collect(),
        timeout: duration("timeout", &w.timeout)?,
        actions,
        repositories,
        format,
        max_age: duration("max_age", &w.max_age)?,
        max_queue: w.max_queue,
        max_backoff: duration("backoff", &w.backoff)?.max(Duration::from_millis(250)),
        name,
    })
}
