//! Every setting's flag, environment variable and TOML key, in one table.

use super::sources::Names;

pub(super) const CONFIG: Names = Names {
    id: "config",
    flag: "--config",
    env: "MARINA_CONFIG",
    key: "",
};
pub(super) const LISTEN: Names = Names {
    id: "listen",
    flag: "--listen",
    env: "MARINA_LISTEN",
    key: "listen",
};
pub(super) const DRIVER: Names = Names {
    id: "storage_driver",
    flag: "--storage-driver",
    env: "STORAGE_DRIVER",
    key: "storage.driver",
};
pub(super) const STORAGE_TYPE: Names = Names {
    id: "storage_type",
    flag: "--storage-type",
    env: "STORAGE_TYPE",
    key: "",
};
pub(super) const PATH: Names = Names {
    id: "storage_path",
    flag: "--storage-path",
    env: "STORAGE_PATH",
    key: "storage.path",
};
pub(super) const S3_BUCKET: Names = Names {
    id: "s3_bucket",
    flag: "--s3-bucket",
    env: "S3_BUCKET",
    key: "storage.s3.bucket",
};
pub(super) const S3_REGION: Names = Names {
    id: "s3_region",
    flag: "--s3-region",
    env: "S3_REGION",
    key: "storage.s3.region",
};
pub(super) const S3_ENDPOINT: Names = Names {
    id: "s3_endpoint",
    flag: "--s3-endpoint",
    env: "S3_ENDPOINT",
    key: "storage.s3.endpoint",
};
pub(super) const S3_PREFIX: Names = Names {
    id: "s3_prefix",
    flag: "--s3-prefix",
    env: "S3_PREFIX",
    key: "storage.s3.prefix",
};
pub(super) const S3_PATH_STYLE: Names = Names {
    id: "s3_force_path_style",
    flag: "--s3-force-path-style",
    env: "S3_FORCE_PATH_STYLE",
    key: "storage.s3.force_path_style",
};
pub(super) const S3_INSECURE: Names = Names {
    id: "s3_insecure_skip_verify",
    flag: "--s3-insecure-skip-verify",
    env: "S3_INSECURE_SKIP_VERIFY",
    key: "storage.s3.insecure_skip_verify",
};
pub(super) const S3_UPLOAD_MEMORY: Names = Names {
    id: "s3_upload_memory",
    flag: "--s3-upload-memory",
    env: "S3_UPLOAD_MEMORY",
    key: "storage.s3.upload_memory",
};
pub(super) const DELETE: Names = Names {
    id: "delete_enabled",
    flag: "--delete-enabled",
    env: "MARINA_DELETE_ENABLED",
    key: "delete_enabled",
};
pub(super) const MANIFEST: Names = Names {
    id: "max_manifest_size",
    flag: "--max-manifest-size",
    env: "MARINA_MAX_MANIFEST_SIZE",
    key: "max_manifest_size",
};
pub(super) const EXPIRY: Names = Names {
    id: "upload_expiry",
    flag: "--upload-expiry",
    env: "MARINA_UPLOAD_EXPIRY",
    key: "upload_expiry",
};
pub(super) const MOUNT: Names = Names {
    id: "mount_without_from",
    flag: "--mount-without-from",
    env: "MARINA_MOUNT_WITHOUT_FROM",
    key: "mount_without_from",
};
pub(super) const MAX_CONNECTIONS: Names = Names {
    id: "max_connections",
    flag: "--max-connections",
    env: "MARINA_MAX_CONNECTIONS",
    key: "http.max_connections",
};
pub(super) const HEADER_TIMEOUT: Names = Names {
    id: "header_timeout",
    flag: "--header-timeout",
    env: "MARINA_HEADER_TIMEOUT",
    key: "http.header_timeout",
};
pub(super) const IDLE_TIMEOUT: Names = Names {
    id: "idle_timeout",
    flag: "--idle-timeout",
    env: "MARINA_IDLE_TIMEOUT",
    key: "http.idle_timeout",
};
pub(super) const MIN_BODY_RATE: Names = Names {
    id: "min_body_rate",
    flag: "--min-body-rate",
    env: "MARINA_MIN_BODY_RATE",
    key: "http.min_body_rate",
};
pub(super) const TLS_CERT: Names = Names {
    id: "tls_cert",
    flag: "--tls-cert",
    env: "MARINA_TLS_CERT",
    key: "tls.certificate",
};
pub(super) const TLS_KEY: Names = Names {
    id: "tls_key",
    flag: "--tls-key",
    env: "MARINA_TLS_KEY",
    key: "tls.key",
};
pub(super) const TLS_CLIENT_CA: Names = Names {
    id: "tls_client_ca",
    flag: "--tls-client-ca",
    env: "MARINA_TLS_CLIENT_CA",
    key: "tls.client_ca",
};
pub(super) const AUTH_HTPASSWD: Names = Names {
    id: "auth_htpasswd",
    flag: "--auth-htpasswd",
    env: "MARINA_AUTH_HTPASSWD",
    key: "auth.htpasswd",
};
/// The file-only settings of auth (no flag, no environment variable).
const fn file_only(key: &'static str) -> Names {
    Names {
        id: "",
        flag: "",
        env: "",
        key,
    }
}
pub(super) const AUTH_TOKEN_ENABLED: Names = file_only("auth.token.enabled");
pub(super) const AUTH_TOKEN_SERVICE: Names = file_only("auth.token.service");
pub(super) const AUTH_TOKEN_ISSUER: Names = file_only("auth.token.issuer");
pub(super) const AUTH_TOKEN_EXPIRY: Names = file_only("auth.token.expiry");
pub(super) const AUTH_TOKEN_KEY: Names = file_only("auth.token.key");
pub(super) const AUTH_TOKEN_REALM: Names = file_only("auth.token.realm");
pub(super) const AUTH_TOKEN_ROOTCERTBUNDLE: Names = file_only("auth.token.rootcertbundle");
pub(super) const AUTH_TOKEN_JWKS: Names = file_only("auth.token.jwks");
pub(super) const AUTH_THROTTLE_USER: Names = file_only("auth.throttle.per_user");
pub(super) const AUTH_THROTTLE_ADDRESS: Names = file_only("auth.throttle.per_address");
pub(super) const AUTH_GROUPS: Names = file_only("auth.groups");
pub(super) const AUTH_ACCESS: Names = file_only("auth.access");
pub(super) const AUTH_ADMINS: Names = file_only("auth.admins");
pub(super) const METRICS_LISTEN: Names = Names {
    id: "metrics_listen",
    flag: "--metrics-listen",
    env: "MARINA_METRICS_LISTEN",
    key: "metrics.listen",
};
pub(super) const READ_ONLY: Names = Names {
    id: "read_only",
    flag: "--read-only",
    env: "MARINA_READ_ONLY",
    key: "read_only",
};
pub(super) const GC_INTERVAL: Names = Names {
    id: "gc_interval",
    flag: "--gc-interval",
    env: "MARINA_GC_INTERVAL",
    key: "gc.interval",
};
pub(super) const GC_GRACE: Names = Names {
    id: "gc_grace",
    flag: "--gc-grace",
    env: "MARINA_GC_GRACE",
    key: "gc.grace",
};
pub(super) const RETENTION: Names = file_only("retention");
pub(super) const PROXY: Names = file_only("proxy");
pub(super) const NOTIFICATION_SPOOL: Names = file_only("notifications.spool");
pub(super) const NOTIFICATION_ENDPOINTS: Names = file_only("notifications.endpoints");
pub(super) const LOG_LEVEL: Names = Names {
    id: "log_level",
    flag: "--log-level",
    env: "MARINA_LOG_LEVEL",
    key: "log.level",
};
pub(super) const LOG_FORMAT: Names = Names {
    id: "log_format",
    flag: "--log-format",
    env: "MARINA_LOG_FORMAT",
    key: "log.format",
};

/// Every setting the file may hold (and the rest, whose empty key the file check skips).
pub(super) const ALL: [&Names; 47] = [
    &CONFIG,
    &LISTEN,
    &DRIVER,
    &STORAGE_TYPE,
    &PATH,
    &S3_BUCKET,
    &S3_REGION,
    &S3_ENDPOINT,
    &S3_PREFIX,
    &S3_PATH_STYLE,
    &S3_INSECURE,
    &S3_UPLOAD_MEMORY,
    &DELETE,
    &MANIFEST,
    &EXPIRY,
    &MOUNT,
    &MAX_CONNECTIONS,
    &HEADER_TIMEOUT,
    &IDLE_TIMEOUT,
    &MIN_BODY_RATE,
    &TLS_CERT,
    &TLS_KEY,
    &TLS_CLIENT_CA,
    &AUTH_HTPASSWD,
    &AUTH_TOKEN_ENABLED,
    &AUTH_TOKEN_SERVICE,
    &AUTH_TOKEN_ISSUER,
    &AUTH_TOKEN_EXPIRY,
    &AUTH_TOKEN_KEY,
    &AUTH_TOKEN_REALM,
    &AUTH_TOKEN_ROOTCERTBUNDLE,
    &AUTH_TOKEN_JWKS,
    &AUTH_THROTTLE_USER,
    &AUTH_THROTTLE_ADDRESS,
    &AUTH_GROUPS,
    &AUTH_ACCESS,
    &AUTH_ADMINS,
    &METRICS_LISTEN,
    &READ_ONLY,
    &GC_INTERVAL,
    &GC_GRACE,
    &RETENTION,
    &PROXY,
    &NOTIFICATION_SPOOL,
    &NOTIFICATION_ENDPOINTS,
    &LOG_LEVEL,
    &LOG_FORMAT,
];
