//! The progress line on stderr: what runs, how much is done, and the rate so far, redrawn in
//! place with `\r` a few times a second. Drawn only when stderr is a terminal, so logs stay clean.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const REDRAW_EVERY: Duration = Duration::from_millis(250);
const MIB: f64 = 1024.0 * 1024.0;

/// What the counter counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unit {
    /// Bytes, shown in MiB.
    Bytes,
    /// Whole things, with their name (`req`, `blobs`, `tags`).
    Items(&'static str),
}

/// A running counter with its progress line.
pub(crate) struct Progress {
    done: Arc<AtomicU64>,
    drawer: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts the line for `label`; `total` is shown when known.
    pub(crate) fn start(label: String, unit: Unit, total: Option<u64>) -> Self {
        let done = Arc::new(AtomicU64::new(0));
        let drawer = std::io::stderr().is_terminal().then(|| {
            let done = done.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    tokio::time::sleep(REDRAW_EVERY).await;
                    let line = render(
                        &label,
                        unit,
                        done.load(Ordering::Relaxed),
                        total,
                        started.elapsed(),
                    );
                    eprint!("\r\x1b[K{line}");
                    let _ = std::io::stderr().flush();
                }
            })
        });
        Self { done, drawer }
    }

    /// The shared counter, for the tasks doing the work.
    pub(crate) fn counter(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }

    /// Adds `n` to the counter.
    pub(crate) fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(drawer) = self.drawer.take() {
            drawer.abort();
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}

fn render(label: &str, unit: Unit, done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64().max(1e-3);
    match unit {
        Unit::Bytes => {
            let done = done as f64 / MIB;
            let total = total.map_or(String::new(), |t| format!(" / {:.0}", t as f64 / MIB));
            format!("{label}: {done:.0}{total} MiB  {:.1} MiB/s", done / seconds)
        }
        Unit::Items(name) => {
            let total = total.map_or(String::new(), |t| format!(" / {t}"));
            format!(
                "{label}: {done}{total} {name}  {:.0} {name}/s",
                done as f64 / seconds
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_amount_and_rate() {
        let line = render(
            "push-big on A",
            Unit::Bytes,
            512 << 20,
            Some(1 << 30),
            Duration::from_secs(2),
        );
        assert_eq!(line, "push-big on A: 512 / 1024 MiB  256.0 MiB/s");
        let line = render(
            "manifest-get on B",
            Unit::Items("req"),
            300,
            None,
            Duration::from_secs(3),
        );
        assert_eq!(line, "manifest-get on B: 300 req  100 req/s");
    }
}
