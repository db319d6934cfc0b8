//! Configuration in two stages: what the user said (flags, environment, TOML file; all
//! optional) and the validated [`Settings`]. Precedence: flag > environment > file > default.
//! A bad value names its source, the value and what is accepted.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;
use tracing_subscriber::EnvFilter;

use crate::logging::LogConfig;

/// The serve options as given on the command line or in the environment.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (keys as in README's configuration table).
    #[arg(long, env = "MARINA_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:5000].
    #[arg(long, env = "MARINA_LISTEN", value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Storage backend: filesystem [default: filesystem].
    #[arg(long, env = "STORAGE_DRIVER", value_name = "DRIVER")]
    storage_driver: Option<String>,
    /// Folder for the filesystem backend [default: ./registry-data].
    #[arg(long, env = "STORAGE_PATH", value_name = "DIR")]
    storage_path: Option<String>,
    /// Allow deleting manifests, tags and blobs: true or false [default: true].
    #[arg(long, env = "MARINA_DELETE_ENABLED", value_name = "BOOL")]
    delete_enabled: Option<String>,
    /// Largest manifest accepted, e.g. 4MiB or 4194304 [default: 4MiB].
    #[arg(long, env = "MARINA_MAX_MANIFEST_SIZE", value_name = "SIZE")]
    max_manifest_size: Option<String>,
    /// Idle time after which an upload session is purged, e.g. 30m, 24h, 7d [default: 24h].
    #[arg(long, env = "MARINA_UPLOAD_EXPIRY", value_name = "DURATION")]
    upload_expiry: Option<String>,
    /// Let `POST ?mount=` without `from` mount a blob from any repository: true or false
    /// [default: false].
    #[arg(long, env = "MARINA_MOUNT_WITHOUT_FROM", value_name = "BOOL")]
    mount_without_from: Option<String>,
    /// Log level (error, warn, info, debug, trace) or filter directives [default: info].
    #[arg(long, env = "MARINA_LOG_LEVEL", value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "MARINA_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone)]
enum Origin {
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

/// One setting's names in each source.
struct Names {
    id: &'static str,
    flag: &'static str,
    env: &'static str,
    key: &'static str,
}

const LISTEN: Names = Names {
    id: "listen",
    flag: "--listen",
    env: "MARINA_LISTEN",
    key: "listen",
};
const DRIVER: Names = Names {
    id: "storage_driver",
    flag: "--storage-driver",
    env: "STORAGE_DRIVER",
    key: "storage.driver",
};
const PATH: Names = Names {
    id: "storage_path",
    flag: "--storage-path",
    env: "STORAGE_PATH",
    key: "storage.path",
};
const DELETE: Names = Names {
    id: "delete_enabled",
    flag: "--delete-enabled",
    env: "MARINA_DELETE_ENABLED",
    key: "delete_enabled",
};
const MANIFEST: Names = Names {
    id: "max_manifest_size",
    flag: "--max-manifest-size",
    env: "MARINA_MAX_MANIFEST_SIZE",
    key: "max_manifest_size",
};
const EXPIRY: Names = Names {
    id: "upload_expiry",
    flag: "--upload-expiry",
    env: "MARINA_UPLOAD_EXPIRY",
    key: "upload_expiry",
};
const MOUNT: Names = Names {
    id: "mount_without_from",
    flag: "--mount-without-from",
    env: "MARINA_MOUNT_WITHOUT_FROM",
    key: "mount_without_from",
};
const LOG_LEVEL: Names = Names {
    id: "log_level",
    flag: "--log-level",
    env: "MARINA_LOG_LEVEL",
    key: "log.level",
};
const LOG_FORMAT: Names = Names {
    id: "log_format",
    flag: "--log-format",
    env: "MARINA_LOG_FORMAT",
    key: "log.format",
};

const FILE_KEYS: [&Names; 9] = [
    &LISTEN,
    &DRIVER,
    &PATH,
    &DELETE,
    &MANIFEST,
    &EXPIRY,
    &MOUNT,
    &LOG_LEVEL,
    &LOG_FORMAT,
];

/// Where the registry keeps its data.
#[derive(Debug, Clone)]
pub(crate) enum StorageConfig {
    /// Files under a folder.
    Filesystem {
        /// The folder.
        path: PathBuf,
    },
}

impl fmt::Display for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Filesystem { path } => write!(f, "filesystem:{}", path.display()),
        }
    }
}

/// The validated configuration.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) storage: StorageConfig,
    pub(crate) registry: marina_registry::Config,
    pub(crate) log: LogConfig,
}

/// A configuration error: one line naming source, value and what is accepted.
#[derive(Debug)]
pub(crate) struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The sources, merged on lookup.
struct Sources<'a> {
    args: &'a ArgMatches,
    file: Option<(PathBuf, toml::Table)>,
}

impl Sources<'_> {
    /// The value of a setting and its origin, from the highest-precedence source that has it.
    fn lookup(&self, names: &Names, given: Option<&String>) -> Option<(String, Origin)> {
        if let Some(value) = given {
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

    /// Parses a setting, or takes its default.
    fn get<T>(
        &self,
        names: &Names,
        given: Option<&String>,
        default: &str,
        accepted: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        let (raw, origin) = self
            .lookup(names, given)
            .unwrap_or_else(|| (default.to_owned(), Origin::Default));
        parse(&raw).ok_or_else(|| {
            ConfigError(format!(
                "invalid value {raw:?} for {origin}: expected {accepted}"
            ))
        })
    }
}

fn file_value(table: &toml::Table, dotted: &str) -> Option<String> {
    let mut current = table;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        let value = current.get(part)?;
        if parts.peek().is_none() {
            return Some(match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => format!("{other:?}"),
            });
        }
        current = value.as_table()?;
    }
    None
}

fn load_file(path: &PathBuf, origin: &str) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "cannot read the configuration file {} (from {origin}): {e}",
            path.display()
        ))
    })?;
    let table: toml::Table = text.parse().map_err(|e| {
        ConfigError(format!(
            "configuration file {} is not valid TOML: {e}",
            path.display()
        ))
    })?;
    check_known_keys(&table, "", path)?;
    Ok(table)
}

/// Refuses keys marina does not know, so a typo is not silently ignored.
fn check_known_keys(table: &toml::Table, prefix: &str, path: &PathBuf) -> Result<(), ConfigError> {
    for (key, value) in table {
        let dotted = format!("{prefix}{key}");
        let known_leaf = FILE_KEYS.iter().any(|n| n.key == dotted);
        let known_table = FILE_KEYS
            .iter()
            .any(|n| n.key.starts_with(&format!("{dotted}.")));
        match value {
            toml::Value::Table(inner) if known_table => {
                check_known_keys(inner, &format!("{dotted}."), path)?
            }
            _ if known_leaf => {}
            _ => {
                let keys: Vec<&str> = FILE_KEYS.iter().map(|n| n.key).collect();
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

impl Settings {
    /// Merges and validates every source.
    pub(crate) fn resolve(args: &ServeArgs, matches: &ArgMatches) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let origin = match matches.value_source("config") {
                    Some(ValueSource::EnvVariable) => "environment variable MARINA_CONFIG",
                    _ => "flag --config",
                };
                Some((path.clone(), load_file(path, origin)?))
            }
            None => None,
        };
        let s = Sources {
            args: matches,
            file,
        };
        let listen = s.get(
            &LISTEN,
            args.listen.as_ref(),
            "0.0.0.0:5000",
            "HOST:PORT such as 0.0.0.0:5000",
            |v| v.parse().ok(),
        )?;
        s.get(
            &DRIVER,
            args.storage_driver.as_ref(),
            "filesystem",
            "filesystem",
            |v| (v == "filesystem").then_some(()),
        )?;
        let path = s.get(
            &PATH,
            args.storage_path.as_ref(),
            "./registry-data",
            "a folder path",
            |v| (!v.is_empty()).then(|| PathBuf::from(v)),
        )?;
        let storage = StorageConfig::Filesystem { path };
        let registry = marina_registry::Config {
            delete_enabled: s.get(
                &DELETE,
                args.delete_enabled.as_ref(),
                "true",
                "true or false",
                parse_bool,
            )?,
            max_manifest_bytes: s.get(
                &MANIFEST,
                args.max_manifest_size.as_ref(),
                "4MiB",
                "a size from 1KiB to 64MiB such as 4MiB",
                |v| parse_size(v).filter(|n| (1024..=64 << 20).contains(n)),
            )?,
            upload_expiry: s.get(
                &EXPIRY,
                args.upload_expiry.as_ref(),
                "24h",
                "a duration such as 90s, 30m, 24h or 7d",
                parse_duration,
            )?,
            mount_without_from: s.get(
                &MOUNT,
                args.mount_without_from.as_ref(),
                "false",
                "true or false",
                parse_bool,
            )?,
        };
        let filter = s.get(
            &LOG_LEVEL,
            args.log_level.as_ref(),
            "info",
            "a level (error, warn, info, debug, trace) or filter directives",
            |v| EnvFilter::try_new(v).ok(),
        )?;
        let json = s.get(
            &LOG_FORMAT,
            args.log_format.as_ref(),
            "text",
            "text or json",
            |v| match v {
                "text" => Some(false),
                "json" => Some(true),
                _ => None,
            },
        )?;
        Ok(Self {
            listen,
            storage,
            registry,
            log: LogConfig { filter, json },
        })
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `4194304`, `512KiB`, `4MiB`, `1GiB`, `4MB` (decimal), case-insensitive.
pub(crate) fn parse_size(v: &str) -> Option<usize> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: usize = number.parse().ok()?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// `90`, `90s`, `30m`, `24h`, `7d`; at least one second.
pub(crate) fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "" | "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        "d" => number.checked_mul(86400)?,
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("4MiB"), Some(4 << 20));
        assert_eq!(parse_size("4194304"), Some(4 << 20));
        assert_eq!(parse_size("4 mb"), Some(4_000_000));
        assert_eq!(parse_size("4XB"), None);
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("1w"), None);
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn file_values_are_read_by_dotted_key() {
        let table: toml::Table =
            "listen = \"127.0.0.1:1\"\n[storage]\npath = \"/x\"\n[log]\nlevel = \"debug\"\n"
                .parse()
                .unwrap();
        assert_eq!(file_value(&table, "storage.path").unwrap(), "/x");
        assert_eq!(file_value(&table, "listen").unwrap(), "127.0.0.1:1");
        assert!(file_value(&table, "storage.driver").is_none());
        assert!(check_known_keys(&table, "", &PathBuf::from("f.toml")).is_ok());
        let typo: toml::Table = "[storage]\npth = \"/x\"\n".parse().unwrap();
        let err = check_known_keys(&typo, "", &PathBuf::from("f.toml")).unwrap_err();
        assert!(err.0.contains("storage.pth"), "{err}");
    }
}
