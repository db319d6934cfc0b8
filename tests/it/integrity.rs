//! `marina fsck` finds a blob corrupted on purpose and a link whose content is gone, `--repair`
//! quarantines the one and drops the other; `marina du` splits bytes into exclusive and shared.

use std::path::Path;

use serde_json::Value;

use crate::common::*;

fn content_path(dir: &Path, digest: &str) -> std::path::PathBuf {
    let hex = &digest["sha256:".len()..];
    dir.join(format!("blobs/sha256/{}/{hex}", &hex[..2]))
}

/// Runs `marina <args>` on the folder (no server holds it); returns the exit code and JSON.
fn marina(dir: &Path, args: &[&str]) -> (i32, Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marina"))
        .args(args)
        .args(["--storage-path", &dir.display().to_string()])
        .output()
        .expect("run marina");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "not one JSON line: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

async fn push(base: &str, repo: &str, data: &[u8]) -> String {
    push_blob_to(&reqwest::Client::new(), base, repo, data).await
}

#[tokio::test]
async fn fsck_finds_corruption_and_dangling_links_and_repair_fixes_both() {
    let dir = tempfile::tempdir().unwrap();
    let (corrupted, vanished, healthy);
    {
        let server = Process::start(dir.path(), &[]).await;
        corrupted = push(&server.base, "check/a", b"bytes that will rot on disk").await;
        vanished = push(&server.base, "check/a", b"bytes whose file will vanish").await;
        healthy = push(&server.base, "check/b", b"bytes that stay fine").await;
    }
    std::fs::write(
        content_path(dir.path(), &corrupted),
        b"bytes that DID rot on disk!",
    )
    .unwrap();
    std::fs::remove_file(content_path(dir.path(), &vanished)).unwrap();

    let (code, report) = marina(dir.path(), &["fsck"]);
    assert_eq!(code, 1, "{report}");
    let problems = report["problems"].as_array().unwrap();
    let faults: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p["fault"].as_str().unwrap(), p["key"].as_str().unwrap()))
        .collect();
    let hex = |d: &str| d["sha256:".len()..].to_owned();
    assert!(
        faults
            .iter()
            .any(|(f, k)| *f == "corrupt" && k.ends_with(&hex(&corrupted))),
        "{report}"
    );
    let link = format!("repos/check/a/_blobs/sha256/{}", hex(&vanished));
    assert!(faults.contains(&("dangling", link.as_str())), "{report}");
    assert!(
        !faults.iter().any(|(_, k)| k.contains(&hex(&healthy))),
        "{report}"
    );
    assert!(problems.iter().all(|p| p["repaired"] == false));

    let (code, repaired) = marina(dir.path(), &["fsck", "--repair"]);
    assert_eq!(code, 1, "the repairing run still reports what it found");
    assert!(
        repaired["problems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["repaired"] == true),
        "{repaired}"
    );
    let quarantined = dir.path().join(format!(
        "quarantine/sha256/{}/{}",
        &hex(&corrupted)[..2],
        hex(&corrupted)
    ));
    assert_eq!(
        std::fs::read(quarantined).unwrap(),
        b"bytes that DID rot on disk!"
    );

    let (code, clean) = marina(dir.path(), &["fsck"]);
    assert_eq!(code, 0, "{clean}");
    assert_eq!(clean["contents_checked"], 1, "{clean}");
    let server = Process::start(dir.path(), &[]).await;
    for (repo, digest, status) in [
        ("check/a", &corrupted, 404),
        ("check/a", &vanished, 404),
        ("check/b", &healthy, 200),
    ] {
        let got = reqwest::get(format!("{}/v2/{repo}/blobs/{digest}", server.base))
            .await
            .unwrap();
        assert_eq!(got.status().as_u16(), status, "{repo} {digest}");
    }
}

#[tokio::test]
async fn du_counts_exclusive_and_shared_bytes_per_repository() {
    let dir = tempfile::tempdir().unwrap();
    {
        let server = Process::start(dir.path(), &[]).await;
        let shared = vec![b's'; 1000];
        push(&server.base, "usage/a", &shared).await;
        push(&server.base, "usage/b", &shared).await;
        push(&server.base, "usage/a", &[b'a'; 300]).await;
        push(&server.base, "usage/b", &[b'b'; 20]).await;
    }
    let (code, usage) = marina(dir.path(), &["du"]);
    assert_eq!(code, 0);
    let repos = usage["repositories"].as_array().unwrap();
    let line = |name: &str| {
        repos
            .iter()
            .find(|r| r["repository"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(line("usage/a")["exclusive_bytes"], 300);
    assert_eq!(line("usage/a")["shared_bytes"], 1000);
    assert_eq!(line("usage/b")["exclusive_bytes"], 20);
    assert_eq!(usage["linked_bytes"], 1320, "shared content counts once");
    assert_eq!(repos[0]["repository"], "usage/a", "largest exclusive first");
}
