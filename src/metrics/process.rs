//! The process's own metrics, read from `/proc/self` at each scrape and written straight in
//! the text format (CPU time is fractional, which the recorder's counters are not): resident
//! and virtual memory, open and allowed file descriptors, CPU time and start time, under the
//! names Prometheus clients use.

use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// When the process started, as Unix seconds (taken at the first call of [`render`] or
/// [`started`]).
static STARTED: LazyLock<f64> = LazyLock::new(|| {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
});

/// Notes the start time now.
pub(super) fn started() {
    LazyLock::force(&STARTED);
}

/// The process metrics in the Prometheus text format; what cannot be read is left out.
pub(super) fn render() -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(value) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    };
    let (virtual_bytes, resident) = memory().unzip();
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        resident,
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        virtual_bytes,
    );
    let open = std::fs::read_dir("/proc/self/fd").map(|fds| fds.count() as f64);
    family(
        "process_open_fds",
        "gauge",
        "Open file descriptors.",
        open.ok(),
    );
    family(
        "process_max_fds",
        "gauge",
        "The limit on open file descriptors.",
        max_fds(),
    );
    family(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent in seconds.",
        cpu_seconds(),
    );
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
        Some(*STARTED),
    );
    out
}

/// Virtual and resident sizes in bytes, from `/proc/self/statm` (in pages).
fn memory() -> Option<(f64, f64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut fields = statm.split_whitespace().map(|f| f.parse::<u64>().ok());
    let (size, resident) = (fields.next()??, fields.next()??);
    let page = rustix::param::page_size() as f64;
    Some((size as f64 * page, resident as f64 * page))
}

/// User plus system time from `/proc/self/stat` (fields 14 and 15, after the command name).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name is in parentheses and may hold spaces: count fields after its end.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    Some((user + system) as f64 / ticks)
}

/// The soft limit on open files, from `/proc/self/limits`.
fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_process_metric_reads_on_linux() {
        let text = render();
        for name in [
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_cpu_seconds_total",
            "process_start_time_seconds",
        ] {
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing from:\n{text}"));
            let value: f64 = value.parse().unwrap();
            assert!(value >= 0.0, "{name} = {value}");
        }
    }
}
