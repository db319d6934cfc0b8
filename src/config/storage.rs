//! The storage settings: which driver, and its folder or bucket. Settings that contradict the
//! chosen driver stop start-up rather than being ignored.

use std::fmt;
use std::path::PathBuf;

use marina_store::s3::S3Config;

use super::sources::{Origin, Sources};
use super::{ConfigError, names, parse};

/// Where the registry keeps its data.
#[derive(Debug, Clone)]
pub(crate) enum StorageConfig {
    /// Files under a folder.
    Filesystem { path: PathBuf },
    /// Objects in an S3-compatible bucket.
    S3(S3Config),
}

impl StorageConfig {
    /// The backend's name, as metrics label it.
    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Self::Filesystem { .. } => "filesystem",
            Self::S3(_) => "s3",
        }
    }
}

impl fmt::Display for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Filesystem { path } => write!(f, "filesystem:{}", path.display()),
            Self::S3(c) => write!(
                f,
                "s3://{}/{} at {}",
                c.bucket,
                c.prefix,
                c.endpoint.as_deref().unwrap_or("AWS")
            ),
        }
    }
}

/// The storage settings, and warnings to log once logging is up.
pub(super) fn resolve(s: &Sources<'_>) -> Result<(StorageConfig, Vec<String>), ConfigError> {
    let mut warnings = Vec::new();
    let (driver, driver_origin) = driver(s, &mut warnings)?;
    let storage = if driver == "s3" {
        // A container image sets STORAGE_PATH for the filesystem; the platform running it on
        // S3 cannot unset it. From the environment it is ignored, said once; elsewhere refused.
        match s.lookup(&names::PATH) {
            Some((path, Origin::Env(_))) => warnings.push(format!(
                "STORAGE_PATH={path:?} is ignored: the storage driver is s3"
            )),
            _ => refuse_if_set(s, &[&names::PATH], "s3", &driver_origin)?,
        }
        StorageConfig::S3(s3(s, &mut warnings)?)
    } else {
        refuse_if_set(
            s,
            &[&names::S3_BUCKET, &names::S3_ENDPOINT, &names::S3_PREFIX],
            "filesystem",
            &driver_origin,
        )?;
        let path = s.get(&names::PATH, "./registry-data", "a folder path", |v| {
            (!v.is_empty()).then(|| PathBuf::from(v))
        })?;
        StorageConfig::Filesystem { path }
    };
    Ok((storage, warnings))
}

/// `STORAGE_DRIVER`, or its deprecated alias `STORAGE_TYPE`; they must agree when both are set.
fn driver(s: &Sources<'_>, warnings: &mut Vec<String>) -> Result<(String, Origin), ConfigError> {
    let accepted = "filesystem or s3";
    let parse = |v: &str| matches!(v, "filesystem" | "s3").then(|| v.to_owned());
    let driver = s.optional(&names::DRIVER, accepted, parse)?;
    let alias = s.optional(&names::STORAGE_TYPE, accepted, parse)?;
    match (driver, alias) {
        (Some((d, origin)), Some((t, _))) if d != t => Err(ConfigError(format!(
            "{origin} says {d:?} but the deprecated STORAGE_TYPE says {t:?}: unset STORAGE_TYPE"
        ))),
        (Some(chosen), _) => Ok(chosen),
        (None, Some(chosen)) => {
            warnings.push("STORAGE_TYPE is deprecated: use STORAGE_DRIVER".to_owned());
            Ok(chosen)
        }
        (None, None) => {
            s.note_default(&names::DRIVER, "filesystem");
            Ok(("filesystem".to_owned(), Origin::Default))
        }
    }
}

/// A setting of the other driver means the user expects something else than they will get.
fn refuse_if_set(
    s: &Sources<'_>,
    settings: &[&super::sources::Names],
    driver: &str,
    origin: &Origin,
) -> Result<(), ConfigError> {
    for names in settings {
        if let Some((value, set_by)) = s.lookup(names) {
            return Err(ConfigError(format!(
                "{set_by} is set ({value:?}) but the storage driver is {driver} (from {origin}): \
                 choose the driver with STORAGE_DRIVER, or remove the setting"
            )));
        }
    }
    Ok(())
}

fn s3(s: &Sources<'_>, warnings: &mut Vec<String>) -> Result<S3Config, ConfigError> {
    let bucket = s.optional(&names::S3_BUCKET, "a bucket name", |v| {
        (!v.trim().is_empty()).then(|| v.trim().to_owned())
    })?;
    let Some((bucket, _)) = bucket else {
        return Err(ConfigError(
            "the s3 storage driver needs a bucket: set S3_BUCKET, --s3-bucket or storage.s3.bucket"
                .to_owned(),
        ));
    };
    let default_region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|_| "us-east-1".to_owned());
    let region = s.get(&names::S3_REGION, &default_region, "a region name", |v| {
        (!v.is_empty()).then(|| v.to_owned())
    })?;
    let endpoint = s.optional(&names::S3_ENDPOINT, "an http:// or https:// URL", |v| {
        (v.starts_with("http://") || v.starts_with("https://"))
            .then(|| v.trim_end_matches('/').to_owned())
    })?;
    let prefix = s.optional(
        &names::S3_PREFIX,
        "a key prefix of letters, digits and - _ . /",
        |v| {
            let ok = v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
                && !v.split('/').any(|part| part == "." || part == "..");
            ok.then(|| v.trim_matches('/').to_owned())
        },
    )?;
    let insecure = s.get(
        &names::S3_INSECURE,
        "false",
        "true or false",
        parse::boolean,
    )?;
    if insecure {
        warnings.push(
            "S3_INSECURE_SKIP_VERIFY is on: the S3 endpoint's TLS certificate is not checked"
                .to_owned(),
        );
    }
    Ok(S3Config {
        bucket,
        region,
        endpoint: endpoint.map(|(e, _)| e),
        prefix: prefix.map(|(p, _)| p).unwrap_or_default(),
        force_path_style: s.get(
            &names::S3_PATH_STYLE,
            "false",
            "true or false",
            parse::boolean,
        )?,
        insecure_skip_verify: insecure,
        copy_limit: None,
        upload_memory: Some(s.get(
            &names::S3_UPLOAD_MEMORY,
            "256MiB",
            "a size of at least 8MiB such as 256MiB",
            |v| parse::size(v).filter(|n| *n >= 8 << 20).map(|n| n as u64),
        )?),
    })
}
