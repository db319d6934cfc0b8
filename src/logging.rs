//! Log output: a level or filter directives, as text or JSON lines, to stderr.

use tracing_subscriber::EnvFilter;

/// How to log.
#[derive(Debug, Clone)]
pub(crate) struct LogConfig {
    /// `info`, `debug`, ... or full filter directives (`marina_http=debug,info`).
    pub(crate) filter: EnvFilter,
    /// JSON lines instead of text.
    pub(crate) json: bool,
}

pub(crate) fn init(config: &LogConfig) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(config.filter.clone())
        .with_writer(std::io::stderr);
    if config.json {
        builder.json().flatten_event(true).init();
    } else {
        builder.with_ansi(false).init();
    }
}
