//! Running the server: open storage, build the registry and router, serve until SIGTERM or
//! SIGINT (letting requests in flight finish), purge stale uploads and collect garbage in the
//! background, serve the operations listener, and re-read the configuration on SIGHUP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::ArgMatches;
use marina_registry::Registry;
use marina_store::{Store, filesystem::FileStore, measured::Measured, s3::S3Store};

use crate::config::{Settings, StorageConfig};

/// Serves until a shutdown signal.
pub(crate) fn run(settings: Settings, matches: ArgMatches) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(settings, matches))
}

async fn serve(settings: Settings, matches: ArgMatches) -> anyhow::Result<()> {
    let render = settings
        .metrics_listen
        .map(|_| crate::metrics::install())
        .transpose()
        .context("installing the metrics recorder")?;
    let mut store = open_store(&settings.storage).await?;
    if render.is_some() {
        store = Arc::new(Measured::new(store, settings.storage.backend()));
    }
    let registry = Registry::new(store, settings.registry.clone());
    let read_only = registry.read_only_switch();
    read_only.store(settings.read_only, Ordering::Relaxed);
    if settings.read_only {
        tracing::warn!("read-only: pushes, mounts, manifest PUTs and deletes are refused");
    }
    tokio::spawn(reread_on_hangup(matches, Arc::clone(&read_only)));
    tokio::spawn(purge_uploads(registry.clone(), Arc::clone(&read_only)));
    let background = background_runtime()?;
    if let Some(every) = settings.gc_interval {
        let collect = collect_garbage_every(registry.clone(), every, Arc::clone(&read_only));
        background.spawn(collect);
    }
    let health = Arc::new(marina_http::health::Health::new(
        registry.clone(),
        Arc::clone(&read_only),
    ));
    if let (Some(address), Some(render)) = (settings.metrics_listen, render) {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for metrics on {address}"))?;
        tracing::info!(listen = %address, "serving /metrics, /healthz and /readyz");
        let ops = marina_http::serve_ops(
            listener,
            registry.clone(),
            Arc::clone(&health),
            render,
            shutdown_signal(),
        );
        tokio::spawn(async move {
            if let Err(e) = ops.await {
                tracing::error!(error = %e, "the operations listener failed");
            }
        });
    }
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
    let notifier = match &settings.notifications {
        None => None,
        Some(config) => {
            let notifier = marina_notify::Notifier::open(config.endpoints.clone(), &config.spool)
                .with_context(|| {
                format!("opening the notification spool {}", config.spool.display())
            })?;
            notifier.start();
            Some(Arc::new(notifier))
        }
    };
    let options = marina_http::Options {
        limits: settings.limits,
        auth,
        tls,
        read_only,
        notifier,
        health: Some(health),
        background: Some(background),
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
pub(crate) async fn open_store(config: &StorageConfig) -> anyhow::Result<Arc<dyn Store>> {
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

/// Stale upload sessions are purged every half expiry (at most hourly), unless read-only.
async fn purge_uploads(registry: Registry, read_only: Arc<AtomicBool>) {
    let every = (registry.config().upload_expiry / 2)
        .clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if read_only.load(Ordering::Relaxed) {
            continue;
        }
        match registry.purge_stale_uploads().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged stale upload sessions"),
            Err(e) => tracing::warn!(error = %e, "purging stale upload sessions failed"),
        }
    }
}

/// A runtime for background work (garbage collection, admin jobs): one worker and a few
/// blocking threads, all at nice 10, so that serving always comes first on a busy machine. It
/// lives as long as the process.
fn background_runtime() -> anyhow::Result<tokio::runtime::Handle> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(8)
        .thread_name("marina-background")
        .on_thread_start(|| {
            // On Linux, nice is per thread: this lowers only the thread that starts.
            let _ = rustix::process::setpriority_process(None, 10);
        })
        .enable_all()
        .build()
        .context("starting the background runtime")?;
    let handle = runtime.handle().clone();
    std::mem::forget(runtime);
    Ok(handle)
}

/// Runs garbage collection every `every`, unless read-only; serving never pauses for it. The
/// first run comes one interval after start.
async fn collect_garbage_every(registry: Registry, every: Duration, read_only: Arc<AtomicBool>) {
    let start = tokio::time::Instant::now() + every;
    let mut ticker = tokio::time::interval_at(start, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if read_only.load(Ordering::Relaxed) {
            tracing::info!("read-only: garbage collection skipped");
            continue;
        }
        // The run logs its outcome and records its metrics.
        let progress = marina_registry::gc::Progress::default();
        let _ = registry
            .collect_garbage(marina_registry::gc::Options::default(), &progress)
            .await;
    }
}

/// On SIGHUP, resolves the configuration again (the file re-read; flags and environment as at
/// start) and applies what can change while serving: read-only mode. (Auth reloads its users
/// and rules on the same signal.) A configuration that no longer resolves changes nothing.
async fn reread_on_hangup(matches: ArgMatches, read_only: Arc<AtomicBool>) {
    let hangup = tokio::signal::unix::SignalKind::hangup();
    let Ok(mut hangups) = tokio::signal::unix::signal(hangup) else {
        return;
    };
    while hangups.recv().await.is_some() {
        match Settings::resolve(&matches) {
            Ok(settings) => {
                let before = read_only.swap(settings.read_only, Ordering::Relaxed);
                if before != settings.read_only {
                    tracing::warn!(read_only = settings.read_only, "read-only mode changed");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the configuration does not resolve; nothing changed")
            }
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
