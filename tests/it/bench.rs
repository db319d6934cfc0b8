//! `marina bench` end to end against a real marina, with tiny sizes: every workload runs on
//! both registries and the JSON file holds a positive figure for each; a refused request aborts
//! its workload with a message naming it.

use std::process::{Command, Output};

use crate::common::Process;

const WORKLOADS: [&str; 8] = [
    "push-big",
    "push-chunked",
    "pull-big",
    "manifest-get",
    "blob-get-small",
    "small-push",
    "tags-page",
    "catalog-page",
];

fn bench(args: &[&str]) -> (Output, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_marina"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run marina bench");
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    (output, text)
}

#[tokio::test]
async fn bench_runs_every_workload_and_reports_positive_figures() {
    let dir = tempfile::tempdir().unwrap();
    let marina = Process::start(&dir.path().join("data"), &[]).await;
    let json = dir.path().join("bench.json");
    let (output, text) = bench(&[
        "--url",
        &marina.base,
        "--compare",
        &marina.base,
        "--big-size",
        "4MiB",
        "--chunk-size",
        "1MiB",
        "--duration",
        "1",
        "--tags",
        "50,100",
        "--repos",
        "50",
        "--page-requests",
        "20",
        "--workloads",
        "all",
        "--settle",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("ratio > 1 means A did better"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let measurements = report["measurements"].as_array().unwrap();
    for workload in WORKLOADS {
        let runs: Vec<_> = measurements
            .iter()
            .filter(|m| m["workload"] == workload)
            .collect();
        let expected = if workload == "tags-page" { 4 } else { 2 };
        assert_eq!(runs.len(), expected, "{workload} in {report:#}");
        for run in runs {
            assert!(run["error"].is_null(), "{run:#}");
            let figures = run["figures"].as_array().unwrap();
            assert!(!figures.is_empty(), "{run:#}");
            for figure in figures {
                assert!(figure["value"].as_f64().unwrap() > 0.0, "{run:#}");
            }
        }
    }
    assert!(!report["summary"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_request_aborts_its_workload_and_names_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let marina = Process::start(&dir.path().join("data"), &[]).await;
    let (output, text) = bench(&[
        "--url",
        &marina.base,
        "--repo-prefix",
        "Not_A_Valid_Name",
        "--workloads",
        "small-push",
        "--duration",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("small-push on A aborted") && text.contains("POST") && text.contains("400"),
        "{text}"
    );
    let (output, text) = bench(&["--url", "http://127.0.0.1:9"]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("registry A at http://127.0.0.1:9 does not answer"),
        "{text}"
    );
}
