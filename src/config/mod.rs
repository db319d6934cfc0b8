//! Configuration in two stages: what the user said (flags, environment, TOML file; all
//! optional) and the validated [`Settings`]. Precedence: flag > environment > file > default.
//! A bad value names its source, the value and what is accepted.

mod auth;
mod names;
mod notifications;
pub(crate) mod parse;
mod proxy;
mod retention;
mod sources;
mod storage;

use std::fmt;
use std::net::SocketAddr;

use clap::ArgMatches;
use tracing_subscriber::EnvFilter;

use crate::logging::LogConfig;
pub(crate) use auth::{AuthConfig, KeySource, RELOAD_EVERY, TrustedKeys, read_rules};
pub(crate) use notifications::NotificationsConfig;
use sources::Sources;
pub(crate) use sources::Used;
pub(crate) use storage::StorageConfig;

/// The serve options as given on the command line or in the environment. The fields are read
/// through `ArgMatches`, which also tells each value's origin.
#[allow(dead_code)]
#[derive(clap::Args, Debug, Default)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (keys as in README's configuration table).
    #[arg(long, env = "MARINA_CONFIG", value_name = "FILE")]
    config: Option<String>,
    /// Address to listen on [default: 0.0.0.0:5000].
    #[arg(long, env = "MARINA_LISTEN", value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Storage backend: filesystem or s3 [default: filesystem].
    #[arg(long, env = "STORAGE_DRIVER", value_name = "DRIVER")]
    storage_driver: Option<String>,
    /// Deprecated alias of STORAGE_DRIVER.
    #[arg(long, env = "STORAGE_TYPE", value_name = "DRIVER", hide = true)]
    storage_type: Option<String>,
    /// Folder for the filesystem backend [default: ./registry-data].
    #[arg(long, env = "STORAGE_PATH", value_name = "DIR")]
    storage_path: Option<String>,
    /// S3 bucket (required with the s3 driver).
    #[arg(long, env = "S3_BUCKET", value_name = "BUCKET")]
    s3_bucket: Option<String>,
    /// S3 region [default: AWS_REGION, else us-east-1; Garage: garage].
    #[arg(long, env = "S3_REGION", value_name = "REGION")]
    s3_region: Option<String>,
    /// S3 endpoint URL for MinIO, Garage, Ceph... [default: AWS].
    #[arg(long, env = "S3_ENDPOINT", value_name = "URL")]
    s3_endpoint: Option<String>,
    /// Key prefix inside the bucket [default: none].
    #[arg(long, env = "S3_PREFIX", value_name = "PREFIX")]
    s3_prefix: Option<String>,
    /// Path-style addressing (endpoint/bucket/key): true or false [default: false].
    #[arg(long, env = "S3_FORCE_PATH_STYLE", value_name = "BOOL")]
    s3_force_path_style: Option<String>,
    /// Skip TLS certificate checks of the S3 endpoint: true or false [default: false].
    #[arg(long, env = "S3_INSECURE_SKIP_VERIFY", value_name = "BOOL")]
    s3_insecure_skip_verify: Option<String>,
    /// Memory all S3 uploads' part buffers may take together, e.g. 256MiB; an upload waits
    /// for room, then gets 429 [default: 256MiB; at least 8MiB].
    #[arg(long, env = "S3_UPLOAD_MEMORY", value_name = "SIZE")]
    s3_upload_memory: Option<String>,
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
    /// Connections open at once; more wait to be accepted [default: 4096].
    #[arg(long, env = "MARINA_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<String>,
    /// How long a client may take to send a request head, e.g. 30s [default: 30s].
    #[arg(long, env = "MARINA_HEADER_TIMEOUT", value_name = "DURATION")]
    header_timeout: Option<String>,
    /// How long a connection may idle between requests, or leave an answer unread, e.g. 2m
    /// [default: 120s].
    #[arg(long, env = "MARINA_IDLE_TIMEOUT", value_name = "DURATION")]
    idle_timeout: Option<String>,
    /// The slowest a request body may arrive, per second, after 30 s at any rate, e.g. 1KiB;
    /// 0 turns the check off [default: 1KiB].
    #[arg(long, env = "MARINA_MIN_BODY_RATE", value_name = "SIZE")]
    min_body_rate: Option<String>,
    /// PEM certificate chain to serve HTTPS with (with --tls-key); re-read when it changes.
    #[arg(long, env = "MARINA_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<String>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "MARINA_TLS_KEY", value_name = "FILE")]
    tls_key: Option<String>,
    /// PEM bundle of CAs whose client certificates sign clients in, their CN as the user
    /// (mTLS); turns auth on [default: off].
    #[arg(long, env = "MARINA_TLS_CLIENT_CA", value_name = "FILE")]
    tls_client_ca: Option<String>,
    /// htpasswd file (bcrypt, `htpasswd -B`); turns auth and the token service on [default: off].
    #[arg(long, env = "MARINA_AUTH_HTPASSWD", value_name = "FILE")]
    auth_htpasswd: Option<String>,
    /// Address of the operations listener (/metrics, /healthz, /readyz), e.g. 127.0.0.1:5001
    /// [default: off].
    #[arg(long, env = "MARINA_METRICS_LISTEN", value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
    /// Refuse every push, mount, manifest PUT and DELETE with 405 (maintenance, read replicas):
    /// true or false; re-read from the configuration file on SIGHUP [default: false].
    #[arg(long, env = "MARINA_READ_ONLY", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    read_only: Option<String>,
    /// How often garbage collection and retention run, e.g. 24h, 30m; 0 turns the online runs
    /// off [default: 24h].
    #[arg(long, env = "MARINA_GC_INTERVAL", value_name = "DURATION")]
    gc_interval: Option<String>,
    /// How long garbage collection spares anything after its last upload, mount, link or
    /// manifest push, e.g. 1h [default: 1h].
    #[arg(long, env = "MARINA_GC_GRACE", value_name = "DURATION")]
    gc_grace: Option<String>,
    /// Log level (error, warn, info, debug, trace) or filter directives [default: info].
    #[arg(long, env = "MARINA_LOG_LEVEL", value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "MARINA_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,
}

/// The validated configuration.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) storage: StorageConfig,
    pub(crate) registry: marina_registry::Config,
    pub(crate) limits: marina_http::Limits,
    pub(crate) auth: Option<AuthConfig>,
    pub(crate) tls: Option<marina_http::tls::TlsFiles>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served apart from the API.
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// Whether writes are refused.
    pub(crate) read_only: bool,
    /// How often garbage collection runs online, if at all.
    pub(crate) gc_interval: Option<std::time::Duration>,
    /// Where events go, if anywhere.
    pub(crate) notifications: Option<NotificationsConfig>,
    pub(crate) log: LogConfig,
    /// Said once logging is up (deprecated or risky settings).
    pub(crate) warnings: Vec<String>,
    /// Every setting as resolved, with its origin (for `marina config check`).
    pub(crate) used: Vec<Used>,
}

/// A configuration error: one line naming source, value and what is accepted.
#[derive(Debug)]
pub(crate) struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Settings {
    /// Merges and validates every source.
    pub(crate) fn resolve(matches: &ArgMatches) -> Result<Self, ConfigError> {
        let s = Sources::new(matches, &names::CONFIG, &names::ALL)?;
        let listen = s.get(
            &names::LISTEN,
            "0.0.0.0:5000",
            "HOST:PORT such as 0.0.0.0:5000",
            |v| v.parse().ok(),
        )?;
        let (storage, warnings) = storage::resolve(&s)?;
        let registry = marina_registry::Config {
            delete_enabled: s.get(&names::DELETE, "true", "true or false", parse::boolean)?,
            max_manifest_bytes: s.get(
                &names::MANIFEST,
                "4MiB",
                "a size from 1KiB to 64MiB such as 4MiB",
                |v| parse::size(v).filter(|n| (1024..=64 << 20).contains(n)),
            )?,
            upload_expiry: s.get(
                &names::EXPIRY,
                "24h",
                "a duration such as 90s, 30m, 24h or 7d",
                parse::duration,
            )?,
            mount_without_from: s.get(&names::MOUNT, "false", "true or false", parse::boolean)?,
            gc_grace: s.get(
                &names::GC_GRACE,
                "1h",
                "a duration such as 30m, 1h or 2d",
                parse::duration,
            )?,
            retention: retention::resolve(&s)?,
            proxies: proxy::resolve(&s)?,
            scratch: scratch(&storage),
        };
        let gc_interval = s.get(
            &names::GC_INTERVAL,
            "24h",
            "a duration such as 30m or 24h, or 0 for no online runs",
            |v| match v.trim() {
                "0" => Some(None),
                other => parse::duration(other).map(Some),
            },
        )?;
        let limits = limits(&s)?;
        let tls = tls(&s)?;
        let client_ca = tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        let auth = auth::resolve(&s, &storage, client_ca)?;
        let metrics_listen = s
            .optional(
                &names::METRICS_LISTEN,
                "HOST:PORT such as 127.0.0.1:5001",
                |v| v.parse().ok(),
            )?
            .map(|(address, _)| address);
        let read_only = s.get(&names::READ_ONLY, "false", "true or false", parse::boolean)?;
        let notifications = notifications::resolve(&s, &storage)?;
        let levels = "a level (error, warn, info, debug, trace) or filter directives";
        let filter = s.get(&names::LOG_LEVEL, "info", levels, |v| {
            EnvFilter::try_new(v).ok()
        })?;
        let json = s.get(&names::LOG_FORMAT, "text", "text or json", |v| match v {
            "text" => Some(false),
            "json" => Some(true),
            _ => None,
        })?;
        Ok(Self {
            listen,
            storage,
            registry,
            limits,
            auth,
            tls,
            metrics_listen,
            read_only,
            gc_interval,
            notifications,
            log: LogConfig { filter, json },
            warnings,
            used: s.used(),
        })
    }
}

/// The connection limits.
fn limits(s: &Sources<'_>) -> Result<marina_http::Limits, ConfigError> {
    let defaults = marina_http::Limits::default();
    let duration = "a duration such as 30s or 2m";
    Ok(marina_http::Limits {
        max_connections: s.get(
            &names::MAX_CONNECTIONS,
            "4096",
            "a whole number from 1",
            |v| v.parse().ok().filter(|n| *n >= 1),
        )?,
        header_timeout: s.get(&names::HEADER_TIMEOUT, "30s", duration, parse::duration)?,
        idle_timeout: s.get(&names::IDLE_TIMEOUT, "120s", duration, parse::duration)?,
        min_body_rate: s.get(
            &names::MIN_BODY_RATE,
            "1KiB",
            "a size such as 1KiB, or 0",
            |v| parse::size(v).map(|n| n as u64),
        )?,
        body_grace: defaults.body_grace,
    })
}

/// The certificate and key to serve HTTPS with (both, or neither), and the client CA.
fn tls(s: &Sources<'_>) -> Result<Option<marina_http::tls::TlsFiles>, ConfigError> {
    let path = |v: &str| (!v.is_empty()).then(|| std::path::PathBuf::from(v));
    let certificate = s.optional(&names::TLS_CERT, "a file path", path)?;
    let key = s.optional(&names::TLS_KEY, "a file path", path)?;
    let client_ca = s.optional(&names::TLS_CLIENT_CA, "a file path", path)?;
    match (certificate, key) {
        (Some((certificate, _)), Some((key, _))) => Ok(Some(marina_http::tls::TlsFiles {
            certificate,
            key,
            client_ca: client_ca.map(|(p, _)| p),
        })),
        (None, None) => match client_ca {
            None => Ok(None),
            Some((_, origin)) => Err(ConfigError(format!(
                "{origin} is set, but client certificates need HTTPS: set --tls-cert and --tls-key"
            ))),
        },
        (Some((_, origin)), None) | (None, Some((_, origin))) => Err(ConfigError(format!(
            "{origin} is set but not its pair: HTTPS needs both --tls-cert and --tls-key"
        ))),
    }
}

/// Where proxied blobs are written while they download: the storage folder's temporary
/// folder on the filesystem (the same disk, not a RAM-backed /tmp), the system's otherwise.
fn scratch(storage: &StorageConfig) -> std::path::PathBuf {
    match storage {
        StorageConfig::Filesystem { path } => path.join(".tmp"),
        StorageConfig::S3(_) => std::env::temp_dir(),
    }
}
