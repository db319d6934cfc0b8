//! Where settings come from: flags and environment (through clap) and the TOML file, each
//! value with its origin so an error can name it. Precedence: flag > environment > file.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;

use super::ConfigError;

/// One setting's names in each source.
pub(super) struct Names {
    /// The clap argument id.
    pub(super) id: &'static str,
    pub(super) flag: &'static str,
    pub(super) env: &'static str,
    /// The dotted TOML key; empty when the file cannot set it.
    pub(super) key: &'static str,
}

/// Where a value came from.
#[derive(Debug, Clone)]
pub(super) enum Origin {
    Flag(&'static str),
    Env(&'static str),
    File(PathBuf, &'static str),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(flag) => write!(f, "flag {flag}"),
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::File(path, key) => write!(f, "key {key} in {}", path.display()),
            Self::Default => write!(f, "the default"),
        }
    }
}

/// The sources, merged on lookup; every value looked up is noted with its origin, for
/// `marina config check`.
pub(super) struct Sources<'a> {
    args: &'a ArgMatches,
    file: Option<(PathBuf, toml::Table)>,
    used: RefCell<Vec<Used>>,
}

/// A setting as it was resolved: its name, value and origin.
#[derive(Debug, Clone)]
pub(crate) struct Used {
    /// The TOML key, or the flag of a setting the file cannot hold.
    pub(crate) name: &'static str,
    pub(crate) value: String,
    pub(crate) origin: String,
}

impl<'a> Sources<'a> {
    /// Reads the TOML file named by `--config` / `MARINA_CONFIG`, if any, refusing unknown keys.
    pub(super) fn new(
        args: &'a ArgMatches,
        config: &Names,
        known: &[&Names],
    ) -> Result<Self, ConfigError> {
        let mut sources = Self {
            args,
            file: None,
            used: RefCell::new(Vec::new()),
        };
        if let Some((path, origin)) = sources.lookup(config) {
            let path = PathBuf::from(path);
            let table = load_file(&path, &origin)?;
            check_known_keys(&table, "", &path, known)?;
            sources.file = Some((path, table));
        }
        Ok(sources)
    }

    /// The value of a setting and its origin, from the highest-precedence source that has it.
    pub(super) fn lookup(&self, names: &Names) -> Option<(String, Origin)> {
        let from_args = (!names.id.is_empty())
            .then(|| self.args.get_one::<String>(names.id))
            .flatten();
        if let Some(value) = from_args {
            let origin = match self.args.value_source(names.id) {
                Some(ValueSource::EnvVariable) => Origin::Env(names.env),
                _ => Origin::Flag(names.flag),
            };
            return Some((value.clone(), origin));
        }
        let (path, table) = self.file.as_ref()?;
        let value = file_value(table, names.key)?;
        Some((value, Origin::File(path.clone(), names.key)))
    }

    /// A value of the file as TOML (tables and arrays of tables), for sections read whole.
    pub(super) fn file_value(&self, names: &Names) -> Option<toml::Value> {
        let (_, table) = self.file.as_ref()?;
        let (parents, leaf) = names.key.rsplit_once('.').unwrap_or(("", names.key));
        let mut current = table;
        for part in parents.split('.').filter(|p| !p.is_empty()) {
            current = current.get(part)?.as_table()?;
        }
        current.get(leaf).cloned()
    }

    /// The configuration file, if there is one.
    pub(super) fn file_path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(path, _)| path.as_path())
    }

    /// Parses a setting that has a default.
    pub(super) fn get<T>(
        &self,
        names: &Names,
        default: &str,
        accepted: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        let (raw, origin) = self
            .lookup(names)
            .unwrap_or_else(|| (default.to_owned(), Origin::Default));
        self.note(names, &raw, &origin);
        parse(&raw).ok_or_else(|| invalid(&raw, &origin, accepted))
    }

    /// Notes a value looked up (the first time only).
    fn note(&self, names: &Names, raw: &str, origin: &Origin) {
        let name = if names.key.is_empty() {
            names.flag
        } else {
            names.key
        };
        let mut used = self.used.borrow_mut();
        if !used.iter().any(|u| u.name == name) {
            used.push(Used {
                name,
                value: raw.to_owned(),
                origin: origin.to_string(),
            });
        }
    }

    /// Notes that a setting resolved in code took its default.
    pub(super) fn note_default(&self, names: &Names, default: &str) {
        self.note(names, default, &Origin::Default);
    }

    /// Every setting looked up so far, in order.
    pub(super) fn used(&self) -> Vec<Used> {
        self.used.borrow().clone()
    }

    /// Parses a setting that may be absent.
    pub(super) fn optional<T>(
        &self,
        names: &Names,
        accepted: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<(T, Origin)>, ConfigError> {
        self.lookup(names)
            .map(|(raw, origin)| {
                self.note(names, &raw, &origin);
                parse(&raw)
                    .map(|v| (v, origin.clone()))
                    .ok_or_else(|| invalid(&raw, &origin, accepted))
            })
            .transpose()
    }
}

fn invalid(raw: &str, origin: &Origin, accepted: &str) -> ConfigError {
    ConfigError(format!(
        "invalid value {raw:?} for {origin}: expected {accepted}"
    ))
}

fn file_value(table: &toml::Table, dotted: &str) -> Option<String> {
    let (parents, leaf) = dotted
        .rsplit_once('.')
        .map_or(("", dotted), |(p, l)| (p, l));
    let mut current = table;
    for part in parents.split('.').filter(|p| !p.is_empty()) {
        current = current.get(part)?.as_table()?;
    }
    Some(match current.get(leaf)? {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => {
            let shown: Vec<String> = items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => format!("{s:?}"),
                    other => format!("{other:?}"),
                })
                .collect();
            format!("[{}]", shown.join(", "))
        }
        other => format!("{other:?}"),
    })
}

fn load_file(path: &Path, origin: &Origin) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "cannot read the configuration file {} (from {origin}): {e}",
            path.display()
        ))
    })?;
    text.parse().map_err(|e| {
        ConfigError(format!(
            "configuration file {} is not valid TOML: {e}",
            path.display()
        ))
    })
}

/// Refuses keys marina does not know, so a typo is not silently ignored.
fn check_known_keys(
    table: &toml::Table,
    prefix: &str,
    path: &Path,
    known: &[&Names],
) -> Result<(), ConfigError> {
    for (key, value) in table {
        let dotted = format!("{prefix}{key}");
        let is_leaf = known.iter().any(|n| !n.key.is_empty() && n.key == dotted);
        let is_table = known
            .iter()
            .any(|n| n.key.starts_with(&format!("{dotted}.")));
        match value {
            toml::Value::Table(inner) if is_table => {
                check_known_keys(inner, &format!("{dotted}."), path, known)?
            }
            _ if is_leaf => {}
            _ => {
                let keys: Vec<&str> = known
                    .iter()
                    .map(|n| n.key)
                    .filter(|k| !k.is_empty())
                    .collect();
                return Err(ConfigError(format!(
                    "unknown key {dotted} in {}: known keys are {}",
                    path.display(),
                    keys.join(", ")
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Names = Names {
        id: "a",
        flag: "--a",
        env: "A",
        key: "listen",
    };
    const B: Names = Names {
        id: "b",
        flag: "--b",
        env: "B",
        key: "storage.s3.bucket",
    };

    #[test]
    fn file_values_are_read_by_dotted_key() {
        let table: toml::Table = "listen = \"127.0.0.1:1\"\n[storage.s3]\nbucket = \"b\"\n"
            .parse()
            .unwrap();
        assert_eq!(file_value(&table, "storage.s3.bucket").unwrap(), "b");
        assert_eq!(file_value(&table, "listen").unwrap(), "127.0.0.1:1");
        assert!(file_value(&table, "storage.driver").is_none());
        assert!(check_known_keys(&table, "", Path::new("f.toml"), &[&A, &B]).is_ok());
        let typo: toml::Table = "[storage.s3]\nbukket = \"x\"\n".parse().unwrap();
        let err = check_known_keys(&typo, "", Path::new("f.toml"), &[&A, &B]).unwrap_err();
        assert!(err.0.contains("storage.s3.bukket"), "{err}");
    }
}
