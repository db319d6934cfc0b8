//! What a run measured and how it is shown: every raw figure per registry and round, the table
//! of medians with the ratio (above 1 always means registry A did better), and the JSON file.

use std::fmt::{self, Write as _};
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::Case;
use super::stats::median;

/// One number a workload measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figure {
    /// `MiB/s`, `req/s`, `blobs/s`, `p50`, `p90`, `p99`.
    pub(crate) name: &'static str,
    /// The unit of `value`.
    pub(crate) unit: &'static str,
    /// Rates are better higher, latencies lower.
    pub(crate) higher_is_better: bool,
    pub(crate) value: f64,
}

impl Figure {
    /// A throughput such as `MiB/s` or `req/s`.
    pub(crate) fn rate(unit: &'static str, value: f64) -> Self {
        Self {
            name: unit,
            unit,
            higher_is_better: true,
            value,
        }
    }

    /// A latency percentile (`p50`) in milliseconds.
    pub(crate) fn latency(name: &'static str, millis: f64) -> Self {
        Self {
            name,
            unit: "ms",
            higher_is_better: false,
            value: millis,
        }
    }

    fn label(&self) -> String {
        if self.name == self.unit {
            self.unit.to_owned()
        } else {
            format!("{} {}", self.name, self.unit)
        }
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = format_value(self.value);
        if self.name == self.unit {
            write!(f, "{value} {}", self.unit)
        } else {
            write!(f, "{} {value} {}", self.name, self.unit)
        }
    }
}

/// One workload run once on one registry.
#[derive(Debug, Serialize)]
pub(crate) struct Measurement {
    #[serde(flatten)]
    pub(crate) case: Case,
    pub(crate) registry: &'static str,
    pub(crate) round: u32,
    pub(crate) figures: Vec<Figure>,
    /// Why the workload was aborted; its figures are then empty.
    pub(crate) error: Option<String>,
}

/// A line of the table: one figure of one case, medians across rounds.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    #[serde(flatten)]
    case: Case,
    figure: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    #[serde(rename = "A")]
    a: Option<f64>,
    #[serde(rename = "B")]
    b: Option<f64>,
    /// A÷B for rates, B÷A for latencies: above 1 means A did better.
    ratio: Option<f64>,
    #[serde(skip)]
    label: String,
}

/// Everything a run measured.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Label and URL of each registry.
    pub(crate) registries: Vec<(&'static str, String)>,
    pub(crate) measurements: Vec<Measurement>,
}

impl Report {
    /// Whether any workload was aborted.
    pub(crate) fn has_failures(&self) -> bool {
        self.measurements.iter().any(|m| m.error.is_some())
    }

    /// One row per case and figure, in the order they ran.
    pub(crate) fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = Vec::new();
        for measured in &self.measurements {
            for figure in &measured.figures {
                let seen = rows
                    .iter()
                    .any(|r| r.case == measured.case && r.figure == figure.name);
                if !seen {
                    rows.push(self.row(measured.case, figure));
                }
            }
        }
        rows
    }

    fn row(&self, case: Case, figure: &Figure) -> Row {
        let a = self.median_of(case, "A", figure.name);
        let b = self.median_of(case, "B", figure.name);
        let ratio = match (a, b) {
            (Some(a), Some(b)) if figure.higher_is_better => Some(a / b),
            (Some(a), Some(b)) => Some(b / a),
            _ => None,
        };
        Row {
            case,
            figure: figure.name,
            unit: figure.unit,
            higher_is_better: figure.higher_is_better,
            a,
            b,
            ratio,
            label: figure.label(),
        }
    }

    /// The median across rounds of one figure on one registry; `None` if any round failed.
    fn median_of(&self, case: Case, registry: &str, figure: &str) -> Option<f64> {
        let runs = self
            .measurements
            .iter()
            .filter(|m| m.case == case && m.registry == registry);
        let mut values = Vec::new();
        for run in runs {
            run.error.is_none().then_some(())?;
            values.extend(
                run.figures
                    .iter()
                    .filter(|f| f.name == figure)
                    .map(|f| f.value),
            );
        }
        median(&values)
    }

    /// The table of medians, with a legend naming the registries and explaining the ratio.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        for (label, url) in &self.registries {
            let _ = writeln!(out, "{label} = {url}");
        }
        let compare = self.registries.len() > 1;
        if compare {
            out.push_str("ratio > 1 means A did better: A÷B for rates, B÷A for latencies\n");
        }
        let line = |cells: [&str; 5]| {
            let [workload, unit, a, b, ratio] = cells;
            if compare {
                format!("{workload:<22} {unit:<8} {a:>12} {b:>12} {ratio:>8}")
            } else {
                format!("{workload:<22} {unit:<8} {a:>12}")
            }
        };
        let _ = writeln!(out, "{}", line(["workload", "unit", "A", "B", "ratio"]));
        for row in self.rows() {
            let cell = |v: Option<f64>| v.map_or_else(|| "failed".to_owned(), format_value);
            let ratio = row.ratio.map_or(String::new(), |r| format!("{r:.2}"));
            let (case, a, b) = (row.case.to_string(), cell(row.a), cell(row.b));
            let _ = writeln!(out, "{}", line([&case, &row.label, &a, &b, &ratio]));
        }
        for failed in self.measurements.iter().filter(|m| m.error.is_some()) {
            let _ = writeln!(
                out,
                "FAILED {} on {} (round {}): {}",
                failed.case,
                failed.registry,
                failed.round,
                failed.error.as_deref().unwrap_or_default()
            );
        }
        out
    }

    /// Writes every raw figure, the table's rows and the options to `path` as JSON.
    pub(crate) fn write_json(&self, path: &Path, options: serde_json::Value) -> anyhow::Result<()> {
        let registries: serde_json::Map<String, serde_json::Value> = self
            .registries
            .iter()
            .map(|(label, url)| ((*label).to_owned(), url.clone().into()))
            .collect();
        let document = serde_json::json!({
            "registries": registries,
            "options": options,
            "ratio": "A/B for rates, B/A for latencies: above 1 means A did better",
            "summary": self.rows(),
            "measurements": self.measurements,
        });
        let text = serde_json::to_string_pretty(&document).context("encoding the JSON report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// Enough digits to compare, no more.
fn format_value(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        v if v >= 1.0 => format!("{value:.2}"),
        _ => format!("{value:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Workload;

    fn measured(registry: &'static str, round: u32, figures: Vec<Figure>) -> Measurement {
        Measurement {
            case: Case {
                workload: Workload::TagsPage,
                scale: Some(5000),
            },
            registry,
            round,
            figures,
            error: None,
        }
    }

    #[test]
    fn ratios_favour_a_when_above_one() {
        let report = Report {
            registries: vec![("A", "a".into()), ("B", "b".into())],
            measurements: vec![
                measured(
                    "A",
                    1,
                    vec![Figure::latency("p50", 1.0), Figure::rate("req/s", 300.0)],
                ),
                measured(
                    "B",
                    1,
                    vec![Figure::latency("p50", 4.0), Figure::rate("req/s", 100.0)],
                ),
                measured(
                    "A",
                    2,
                    vec![Figure::latency("p50", 3.0), Figure::rate("req/s", 100.0)],
                ),
                measured(
                    "B",
                    2,
                    vec![Figure::latency("p50", 4.0), Figure::rate("req/s", 100.0)],
                ),
            ],
        };
        let rows = report.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].a, rows[0].b, rows[0].ratio),
            (Some(2.0), Some(4.0), Some(2.0))
        );
        assert_eq!(rows[1].ratio, Some(2.0));
        let table = report.table();
        assert!(table.contains("tags-page 5000"), "{table}");
        assert!(table.contains("p50 ms"), "{table}");
    }

    #[test]
    fn a_failed_round_shows_as_failed() {
        let mut failed = measured("B", 1, vec![]);
        failed.error = Some("PUT x answered 500".into());
        let report = Report {
            registries: vec![("A", "a".into()), ("B", "b".into())],
            measurements: vec![measured("A", 1, vec![Figure::latency("p50", 1.0)]), failed],
        };
        assert!(report.has_failures());
        assert_eq!(report.rows()[0].b, None);
        assert!(report.table().contains("FAILED tags-page 5000 on B"));
    }
}
