//! The `[[retention]]` policies, checked before serving so a bad one stops start-up, naming
//! its pattern and the key at fault.

use marina_oci::RepoPattern;
use marina_registry::retention::Retention;
use serde::Deserialize;

use super::sources::Sources;
use super::{ConfigError, names, parse};

/// One `[[retention]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    repositories: String,
    #[serde(default)]
    delete_untagged: bool,
    keep_last: Option<usize>,
    keep_younger_than: Option<String>,
    #[serde(default)]
    keep_tags: Vec<String>,
    #[serde(default)]
    immutable_tags: Vec<String>,
}

/// The policies in file order (the first that matches a repository applies).
pub(super) fn resolve(s: &Sources<'_>) -> Result<Vec<Retention>, ConfigError> {
    let Some(list) = s.file_value(&names::RETENTION) else {
        return Ok(Vec::new());
    };
    let written: Vec<Written> = list
        .try_into()
        .map_err(|e| ConfigError(format!("[[retention]]: {e}")))?;
    written
        .into_iter()
        .map(policy)
        .collect::<Result<_, String>>()
        .map_err(|e| ConfigError(format!("[[retention]]: {e}")))
}

fn policy(w: Written) -> Result<Retention, String> {
    let text = w.repositories;
    let named = |what: String| format!("repositories = {text:?}: {what}");
    let pattern = RepoPattern::parse(&text).map_err(named)?;
    let keep_younger_than = w
        .keep_younger_than
        .map(|v| {
            parse::duration(&v).ok_or_else(|| {
                named(format!(
                    "keep_younger_than = {v:?} is not a duration such as 30d"
                ))
            })
        })
        .transpose()?;
    if w.keep_last == Some(0) && keep_younger_than.is_none() && w.keep_tags.is_empty() {
        return Err(named(
            "keep_last = 0 with no other keep rule deletes every tag; say keep_last = 1 or more"
                .into(),
        ));
    }
    for glob in w.keep_tags.iter().chain(&w.immutable_tags) {
        if glob.is_empty() {
            return Err(named("a tag pattern is empty".into()));
        }
    }
    Ok(Retention {
        pattern_text: text,
        pattern,
        delete_untagged: w.delete_untagged,
        keep_last: w.keep_last,
        keep_younger_than,
        keep_tags: w.keep_tags,
        immutable_tags: w.immutable_tags,
    })
}
