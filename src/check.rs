//! `marina config check`: resolves the configuration exactly as serving would, prints every
//! setting with its value and origin (secrets redacted), then checks what can be checked
//! without serving: the storage answers, the TLS pair and client CA read, auth's files, rules
//! and keys read. Exits non-zero on any failure.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::ArgMatches;

use crate::config::{Settings, StorageConfig};

/// How long the storage may take to answer the check.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Environment variables that carry credentials: shown as set or not, never their values.
const SECRET_ENV: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

pub(crate) fn run(matches: &ArgMatches) -> ExitCode {
    let mut out = String::new();
    let code = report(matches, &mut out);
    // A closed stdout (`| head`) is not worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
    code
}

fn report(matches: &ArgMatches, out: &mut String) -> ExitCode {
    let settings = match Settings::resolve(matches) {
        Ok(settings) => settings,
        Err(e) => {
            let _ = writeln!(out, "FAIL configuration: {e}");
            return ExitCode::from(2);
        }
    };
    print_settings(&settings, out);
    for warning in &settings.warnings {
        let _ = writeln!(out, "warn {warning}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(out, "FAIL starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcomes = runtime.block_on(checks(&settings));
    let mut failed = false;
    for (what, outcome) in outcomes {
        let _ = match outcome {
            Ok(note) => writeln!(out, "ok   {what}: {note}"),
            Err(e) => {
                failed = true;
                writeln!(out, "FAIL {what}: {e:#}")
            }
        };
    }
    if failed {
        ExitCode::FAILURE
    } else {
        let _ = writeln!(out, "the configuration is valid");
        ExitCode::SUCCESS
    }
}

fn print_settings(settings: &Settings, out: &mut String) {
    let _ = writeln!(
        out,
        "effective configuration (value, then where it came from):"
    );
    let width = settings
        .used
        .iter()
        .map(|u| u.name.len())
        .max()
        .unwrap_or(0);
    // No setting holds a secret itself (keys and passwords are in files it names); the
    // secrets are the AWS variables and the webhooks' headers, shown below redacted.
    for used in &settings.used {
        let _ = writeln!(
            out,
            "  {:width$} = {:?}  ({})",
            used.name, used.value, used.origin
        );
    }
    for name in SECRET_ENV {
        let state = match std::env::var_os(name) {
            Some(_) => "set (redacted)",
            None => "not set",
        };
        let _ = writeln!(out, "  {name:width$} : {state}  (environment)");
    }
    for endpoint in settings.notifications.iter().flat_map(|n| &n.endpoints) {
        let headers: Vec<String> = endpoint
            .headers
            .iter()
            .map(|(name, _)| format!("{name}: (redacted)"))
            .collect();
        let events: Vec<&str> = endpoint.actions.iter().map(|a| a.as_str()).collect();
        let _ = writeln!(
            out,
            "  notifications endpoint {:?} = {} {events:?} {:?}, headers [{}]  (file)",
            endpoint.name,
            endpoint.url,
            endpoint.format,
            headers.join(", ")
        );
    }
}

type Outcome = anyhow::Result<String>;

async fn checks(settings: &Settings) -> Vec<(&'static str, Outcome)> {
    let mut outcomes = vec![("storage", storage(&settings.storage).await)];
    if let Some(files) = &settings.tls {
        let loaded = marina_http::tls::Certificates::load(files.clone())
            .map(|_| format!("{} and its key read", files.certificate.display()))
            .map_err(anyhow::Error::from);
        outcomes.push(("tls", loaded));
    }
    if let Some(auth) = &settings.auth {
        outcomes.push(("auth", crate::auth::check(auth)));
    }
    outcomes
}

/// Whether the storage answers. A filesystem folder is made if missing (as start-up would)
/// and written to, without taking its lock, so a running server's configuration can be
/// checked beside it; a bucket is opened as start-up does and listed.
async fn storage(config: &StorageConfig) -> Outcome {
    if let StorageConfig::Filesystem { path } = config {
        return writable(path).map(|()| format!("{config} is writable"));
    }
    let listed = async {
        let store = crate::serve::open_store(config).await?;
        let root = marina_store::Key::new("catalog/").expect("a valid key");
        store.list(&root, None, 1).await?;
        anyhow::Ok(())
    };
    match tokio::time::timeout(STORAGE_TIMEOUT, listed).await {
        Ok(Ok(())) => Ok(format!("{config} answers")),
        Ok(Err(e)) => Err(e.context(format!("{config}"))),
        Err(_) => anyhow::bail!(
            "{config} did not answer within {} s",
            STORAGE_TIMEOUT.as_secs()
        ),
    }
}

/// Makes `folder` if missing, and writes and removes a file in it.
fn writable(folder: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot make the storage folder {}", folder.display()))?;
    let probe = folder.join(format!(".config-check-{}", std::process::id()));
    std::fs::write(&probe, b"marina config check")
        .with_context(|| format!("cannot write in the storage folder {}", folder.display()))?;
    std::fs::remove_file(&probe).with_context(|| format!("cannot remove {}", probe.display()))?;
    Ok(())
}
