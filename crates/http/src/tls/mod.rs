//! HTTPS: rustls (aws-lc-rs) with TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN, and a
//! certificate that is read again when its files change: new handshakes get the new one, open
//! connections keep theirs, nothing restarts. With a client CA, clients may also present a
//! certificate (mTLS), whose Common Name is then who they are.

mod client;

pub use client::common_name;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the certificate files are checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Where the certificate chain and its key are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundle of the CAs whose client certificates identify their holders; read at start.
    pub client_ca: Option<PathBuf>,
}

/// A certificate or key that cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct TlsError {
    path: String,
    reason: String,
}

fn error(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The certificate in force, replaced when its files change.
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// Checks client certificates, when a client CA is set.
    clients: Option<Arc<dyn ClientCertVerifier>>,
}

impl Certificates {
    /// Reads the certificate and key.
    ///
    /// # Errors
    /// When either cannot be read, the key does not fit a supported algorithm, or the client
    /// CA bundle holds no usable certificate.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let current = RwLock::new(Arc::new(read(&files)?));
        let clients = files
            .client_ca
            .as_deref()
            .map(|path| client::verifier(path, Arc::new(aws_lc_rs::default_provider())))
            .transpose()?;
        Ok(Arc::new(Self {
            files,
            current,
            clients,
        }))
    }

    /// The server configuration that serves these certificates.
    #[must_use]
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default protocol versions");
        let builder = match &self.clients {
            Some(verifier) => builder.with_client_cert_verifier(Arc::clone(verifier)),
            None => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Reads the files again whenever they change; a pair that does not read keeps the
    /// certificate in force, logged.
    pub async fn keep_current(self: Arc<Self>) {
        let mut seen = self.stamps();
        let mut ticker = tokio::time::interval(RELOAD_EVERY);
        loop {
            ticker.tick().await;
            let now = self.stamps();
            if now == seen {
                continue;
            }
            match read(&self.files) {
                Ok(key) => {
                    seen = now;
                    *self
                        .current
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(key);
                    tracing::info!(certificate = %self.files.certificate.display(), "serving the renewed certificate");
                }
                // Half-written (the key replaced before the certificate): try again next tick.
                Err(e) => {
                    tracing::warn!(error = %e, "the changed certificate does not read yet; the old one stays")
                }
            }
        }
    }

    fn stamps(&self) -> [Option<SystemTime>; 2] {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        [modified(&self.files.certificate), modified(&self.files.key)]
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ))
    }
}

/// The chain and key of `files`, checked to belong together.
fn read(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.certificate)
        .map_err(|e| error(&files.certificate, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| error(&files.certificate, e))?;
    if chain.is_empty() {
        return Err(error(&files.certificate, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| error(&files.key, e))?;
    let provider = aws_lc_rs::default_provider();
    let certified =
        CertifiedKey::from_der(chain, key, &provider).map_err(|e| error(&files.key, e))?;
    Ok(certified)
}
