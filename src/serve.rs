//! Running the server: open storage, build the registry and router, serve until SIGTERM or
//! SIGINT (letting requests in flight finish), and purge stale uploads in the background.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use marina_registry::Registry;
use marina_store::{Store, filesystem::FileStore, s3::S3Store};

use crate::config::{Settings, StorageConfig};

/// Serves until a shutdown signal.
pub(crate) fn run(settings: Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(settings))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings.storage).await?;
    let registry = Registry::new(store, settings.registry.clone());
    tokio::spawn(purge_uploads(registry.clone()));
    let auth = settings.auth.as_ref().map(crate::auth::open).transpose()?;
    if let (Some(auth), Some(config)) = (&auth, &settings.auth) {
        tokio::spawn(crate::auth::keep_current(Arc::clone(auth), config.clone()));
    }
    let tls = match &settings.tls {
        None => None,
        Some(files) => {
            let certificates = marina_http::tls::Certificates::load(files.clone())
                .context("reading the TLS certificate")?;
            tokio::spawn(Arc::clone(&certificates).keep_current());
            Some(certificates)
        }
    };
    let options = marina_http::Options {
        limits: settings.limits,
        auth,
        tls,
    };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(listen = %settings.listen, scheme, storage = %settings.storage, "marina is serving");
    marina_http::serve(listener, registry, options, shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("stopped: every request in flight has finished");
    Ok(())
}

/// Opens the configured storage; a bucket that cannot be reached stops start-up.
async fn open_store(config: &StorageConfig) -> anyhow::Result<Arc<dyn Store>> {
    match config {
        StorageConfig::Filesystem { path } => {
            let store = FileStore::open(path)
                .with_context(|| format!("opening storage folder {}", path.display()))?;
            Ok(Arc::new(store))
        }
        StorageConfig::S3(s3) => {
            let store = S3Store::new(s3)?;
            store
                .check()
                .await
                .context("checking the S3 bucket at start-up")?;
            Ok(Arc::new(store))
        }
    }
}

/// Stale upload sessions are purged every half expiry (at most hourly).
async fn purge_uploads(registry: Registry) {
    let every = (registry.config().upload_expiry / 2)
        .clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match registry.purge_stale_uploads().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged stale upload sessions"),
            Err(e) => tracing::warn!(error = %e, "purging stale upload sessions failed"),
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown signal received; finishing requests in flight");
}
