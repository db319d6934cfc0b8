//! The pull-through cache in front of real registries, all on loopback: a marina that hands
//! out tokens, CNCF Distribution 2.8.2 with htpasswd (Basic), and a marina that serves
//! anonymously. What the upstream served is counted from its own metrics or access log.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use sha2::Digest as _;

use crate::common::{OCI_MANIFEST, Process, descriptor, free_port, image_manifest, noise, sha256};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A client sending Basic credentials with every request.
fn signed_in(user: &str, password: &str) -> reqwest::Client {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Basic {pair}").parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// An htpasswd line Distribution's bcrypt reads too (`$2a$`).
fn htpasswd_line(user: &str, password: &str) -> String {
    let hash = bcrypt::hash_with_result(password, 4).unwrap();
    format!(
        "{user}:{}\n",
        hash.format_for_version(bcrypt::Version::TwoA)
    )
}

/// Pushes a blob with POST then PUT (what every registry takes).
async fn push_blob(client: &reqwest::Client, base: &str, repo: &str, data: Vec<u8>) -> String {
    let digest = sha256(&data);
    let started = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED, "POST to {base}");
    let location = started.headers()["location"].to_str().unwrap().to_owned();
    let location = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let put = client
        .put(format!("{location}{separator}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED, "PUT to {base}");
    digest
}

async fn put_manifest(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    media_type: &str,
    body: &[u8],
) {
    let response = client
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "manifest to {base}");
}

/// A two-platform image: the index and every manifest and blob under it, by digest.
struct Published {
    objects: HashMap<String, Vec<u8>>,
}

async fn publish(client: &reqwest::Client, base: &str, repo: &str, seed: u64) -> Published {
    let mut objects = HashMap::new();
    let mut children = Vec::new();
    for (i, arch) in ["amd64", "arm64"].into_iter().enumerate() {
        let config =
            format!(r#"{{"architecture":"{arch}","os":"linux","seed":{seed}}}"#).into_bytes();
        // noise() seeds with `seed | 1`: odd seeds only, so that no two layers match.
        let layer = noise(200_000 + i * 1000, seed * 100 + 2 * i as u64 + 1);
        for blob in [&config, &layer] {
            let digest = push_blob(client, base, repo, blob.clone()).await;
            objects.insert(digest, blob.clone());
        }
        let manifest = image_manifest(
            &descriptor("application/vnd.oci.image.config.v1+json", &config),
            &[descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
            "",
        );
        put_manifest(
            client,
            base,
            repo,
            &sha256(manifest.as_bytes()),
            OCI_MANIFEST,
            manifest.as_bytes(),
        )
        .await;
        children.push(format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
            sha256(manifest.as_bytes()),
            manifest.len()
        ));
        objects.insert(sha256(manifest.as_bytes()), manifest.into_bytes());
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        children.join(",")
    );
    put_manifest(client, base, repo, "v1", OCI_INDEX, index.as_bytes()).await;
    objects.insert(sha256(index.as_bytes()), index.into_bytes());
    Published { objects }
}

/// Pulls `name:v1` (the index), each child and each blob through the mirror, checking bytes.
async fn pull_all(mirror: &str, name: &str, image: &Published) {
    let http = reqwest::Client::new();
    let index = http
        .get(format!("{mirror}/v2/{name}/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(index.status(), StatusCode::OK, "{name}:v1");
    let index: serde_json::Value = serde_json::from_slice(&index.bytes().await.unwrap()).unwrap();
    for child in index["manifests"].as_array().unwrap() {
        let digest = child["digest"].as_str().unwrap();
        let manifest = http
            .get(format!("{mirror}/v2/{name}/manifests/{digest}"))
            .send()
            .await
            .unwrap();
        let bytes = manifest.bytes().await.unwrap();
        assert_eq!(bytes.as_ref(), image.objects[digest].as_slice());
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
        blobs.extend(
            manifest["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_owned()),
        );
        for blob in blobs {
            let got = http
                .get(format!("{mirror}/v2/{name}/blobs/{blob}"))
                .send()
                .await
                .unwrap();
            assert_eq!(got.status(), StatusCode::OK, "{blob}");
            assert_eq!(
                got.bytes().await.unwrap().as_ref(),
                image.objects[&blob].as_slice()
            );
        }
    }
}

/// A marina with tokens (htpasswd), and its metrics address.
async fn marina_with_tokens(dir: &Path) -> (Process, String) {
    let users = dir.join("users");
    std::fs::write(&users, htpasswd_line("up", "up-pw")).unwrap();
    let ops = format!("127.0.0.1:{}", free_port());
    let process = Process::start(
        &dir.join("data"),
        &[
            "--auth-htpasswd",
            users.to_str().unwrap(),
            "--metrics-listen",
            &ops,
        ],
    )
    .await;
    (process, format!("http://{ops}"))
}

/// How many GETs of blobs and manifests a marina answered with 200, from its metrics.
async fn marina_gets(ops: &str) -> u64 {
    let text = reqwest::get(format!("{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("marina_http_request_duration_seconds_count{"))
        .filter(|l| l.contains(r#"method="GET""#) && l.contains(r#"status="200""#))
        .filter(|l| l.contains("/blobs/<digest>") || l.contains("/manifests/<reference>"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<u64>().ok()))
        .sum()
}

/// Distribution 2.8.2 with htpasswd, its access log (on its stdout) in `dir/access.log`.
struct Distribution {
    child: std::process::Child,
    base: String,
    log: std::path::PathBuf,
}

impl Distribution {
    async fn start(dir: &Path) -> Self {
        let port = free_port();
        std::fs::write(dir.join("users"), htpasswd_line("dist", "dist-pw")).unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             auth:\n  htpasswd:\n    realm: dist\n    path: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display(),
            dir.join("users").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = dir.join("access.log");
        let child = std::process::Command::new("docker-registry")
            .args(["serve", dir.join("config.yml").to_str().unwrap()])
            .env_remove("AWS_CA_BUNDLE")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
            .spawn()
            .expect(
                "docker-registry (Debian's Distribution 2.8.2) is installed by scripts/setup.sh",
            );
        // Dropping it kills and reaps it, whatever happens below.
        let distribution = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        for _ in 0..200 {
            if reqwest::get(format!("{}/v2/", distribution.base))
                .await
                .is_ok()
            {
                return distribution;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("Distribution did not start");
    }

    /// GETs of blobs and manifests it answered with 200, from its access log.
    fn gets(&self) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap();
        log.lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("HTTP/1.1\" 200"))
            .filter(|l| l.contains("/blobs/") || l.contains("/manifests/"))
            .count()
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_a_token_marina_a_basic_distribution_and_an_anonymous_marina_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["tokens", "dist", "anon", "mirror"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let (tokens, tokens_ops) = marina_with_tokens(&dir.path().join("tokens")).await;
    let dist = Distribution::start(&dir.path().join("dist")).await;
    let anon_ops = format!("127.0.0.1:{}", free_port());
    let anon = Process::start(
        &dir.path().join("anon/data"),
        &["--metrics-listen", &anon_ops],
    )
    .await;
    let anon_ops = format!("http://{anon_ops}");

    let images = [
        publish(&signed_in("up", "up-pw"), &tokens.base, "team/app", 1).await,
        publish(&signed_in("dist", "dist-pw"), &dist.base, "team/app", 2).await,
        publish(&reqwest::Client::new(), &anon.base, "public/app", 3).await,
    ];
    let password = dir.path().join("mirror/tokens-password");
    std::fs::write(&password, "up-pw\n").unwrap();
    let config = dir.path().join("mirror/marina.toml");
    std::fs::write(
        &config,
        format!(
            "[[proxy]]\nprefix = \"tokens.local\"\nremote = \"{}\"\nusername = \"up\"\n\
             password_file = \"{}\"\n\n\
             [[proxy]]\nprefix = \"dist.local\"\nremote = \"{}\"\nusername_env = \"DIST_USER\"\n\
             password_env = \"DIST_PASSWORD\"\n\n\
             [[proxy]]\nprefix = \"anon.local\"\nremote = \"{}\"\n",
            tokens.base,
            password.display(),
            dist.base,
            anon.base
        ),
    )
    .unwrap();
    let args: Vec<String> = [
        "--storage-path",
        dir.path().join("mirror/data").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec();
    let env = [
        ("DIST_USER".to_owned(), "dist".to_owned()),
        ("DIST_PASSWORD".to_owned(), "dist-pw".to_owned()),
    ];
    let mirror_ops = format!("127.0.0.1:{}", free_port());
    let mut args = args;
    args.extend(["--metrics-listen".to_owned(), mirror_ops.clone()]);
    let mirror = Process::spawn(&args, &env).await;
    let names = [
        "tokens.local/team/app",
        "dist.local/team/app",
        "anon.local/public/app",
    ];

    let counts = || async {
        (
            marina_gets(&tokens_ops).await,
            dist.gets(),
            marina_gets(&anon_ops).await,
        )
    };
    let before = counts().await;
    for (name, image) in names.iter().zip(&images) {
        pull_all(&mirror.base, name, image).await;
    }
    // Distribution logs a request once its handler returns, a moment after the last byte.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cold = counts().await;
    // An index, two manifests, four blobs: each fetched once.
    assert_eq!(cold.0 - before.0, 7, "token marina");
    assert_eq!(cold.1 - before.1, 7, "Distribution");
    assert_eq!(cold.2 - before.2, 7, "anonymous marina");
    for (name, image) in names.iter().zip(&images) {
        pull_all(&mirror.base, name, image).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warm = counts().await;
    assert_eq!(warm, cold, "a warm pull sends no upstream a GET");
    let metrics = reqwest::get(format!("http://{mirror_ops}/metrics"))
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    for proxy in ["tokens.local", "dist.local", "anon.local"] {
        for series in [
            format!(r#"marina_proxy_requests_total{{proxy="{proxy}",result="hit"}}"#),
            format!(r#"marina_proxy_requests_total{{proxy="{proxy}",result="miss"}}"#),
            format!(r#"marina_proxy_upstream_bytes_total{{proxy="{proxy}"}}"#),
        ] {
            let value = metrics
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{series} ")))
                .and_then(|v| v.parse::<f64>().ok());
            assert!(value.is_some_and(|v| v > 0.0), "{series} in:\n{metrics}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_cold_pulls_of_a_256_mib_blob_make_one_upstream_get_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let ops = format!("127.0.0.1:{}", free_port());
    let upstream = Process::start(&dir.path().join("up"), &["--metrics-listen", &ops]).await;
    let ops = format!("http://{ops}");
    let big = noise(256 << 20, 99);
    let digest = push_blob(&reqwest::Client::new(), &upstream.base, "big/blob", big).await;
    let config = dir.path().join("marina.toml");
    std::fs::write(
        &config,
        format!(
            "[[proxy]]\nprefix = \"up.local\"\nremote = \"{}\"\n",
            upstream.base
        ),
    )
    .unwrap();
    let mirror = Process::start(
        &dir.path().join("mirror"),
        &["--config", config.to_str().unwrap()],
    )
    .await;
    let before = marina_gets(&ops).await;
    let url = format!("{}/v2/up.local/big/blob/blobs/{digest}", mirror.base);
    let pulls = (0..20).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let response = reqwest::get(url).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let mut hasher = sha2::Sha256::new();
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                hasher.update(chunk.unwrap());
            }
            format!("sha256:{}", hex::encode(hasher.finalize()))
        })
    });
    for pull in futures_util::future::join_all(pulls).await {
        assert_eq!(pull.unwrap(), digest, "every client gets the right bytes");
    }
    assert_eq!(
        marina_gets(&ops).await - before,
        1,
        "one upstream GET for 20 clients"
    );
    let peak_mib = mirror.status_kib("VmHWM") / 1024;
    eprintln!("mirror peak RSS over 20 cold pulls of 256 MiB: {peak_mib} MiB");
    assert!(
        peak_mib < 128,
        "peak RSS {peak_mib} MiB: memory must not grow with the blob"
    );
}

#[test]
fn bad_proxy_settings_stop_start_up_naming_the_entry_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "prefix = \"docker.io\"\nremote = \"ftp://x\"",
            "remote = \"ftp://x\"",
        ),
        (
            "prefix = \"Docker.IO\"\nremote = \"http://x\"",
            "prefix = \"Docker.IO\"",
        ),
        (
            "prefix = \"a.io\"\nremote = \"http://x\"\ntag_ttl = \"soon\"",
            "tag_ttl = \"soon\"",
        ),
        (
            "prefix = \"a.io\"\nremote = \"http://x\"\non_upstream_error = \"retry\"",
            "on_upstream_error = \"retry\"",
        ),
        (
            "prefix = \"a.io\"\nremote = \"http://x\"\nusername = \"u\"",
            "needs a password",
        ),
        (
            "prefix = \"a.io\"\nremote = \"http://x\"\nusername = \"u\"\npassword_env = \"NO_SUCH_VAR_SET\"",
            "password_env = \"NO_SUCH_VAR_SET\"",
        ),
        (
            "prefix = \"a.io\"\nremote = \"http://x\"\nmax_size = 3",
            "unknown field `max_size`",
        ),
        (
            "prefix = \"a.io\"\nremote = \"http://x\"\nmax_bytes = \"lots\"",
            "max_bytes = \"lots\"",
        ),
        (
            "prefix = \"a.io\"\nremote = \"http://x\"\nmax_age = \"0\"",
            "max_age = \"0\"",
        ),
    ];
    // Starts marina with `toml` as its file; returns whether it failed, and its stderr.
    let start = |toml: String| {
        let config = dir.path().join("marina.toml");
        std::fs::write(&config, toml).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_marina"))
            .args(["--storage-path", dir.path().join("data").to_str().unwrap()])
            .args(["--config", config.to_str().unwrap()])
            .env_remove("MARINA_CONFIG")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stderr).into_owned();
        (!output.status.success(), said)
    };
    for (entry, named) in cases {
        let (failed, said) = start(format!("[[proxy]]\n{entry}\n"));
        assert!(failed, "{entry}: started");
        assert!(
            said.contains("[[proxy]]") && said.contains(named),
            "{entry}: {said}"
        );
    }
    let twice = "[[proxy]]\nprefix = \"a.io\"\nremote = \"http://x\"\n\
                 [[proxy]]\nprefix = \"a.io\"\nremote = \"http://y\"\n";
    let (failed, said) = start(twice.to_owned());
    assert!(failed);
    assert!(
        said.contains("[[proxy]] 2 (a.io): prefix \"a.io\" overlaps"),
        "{said}"
    );
}
