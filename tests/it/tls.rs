//! HTTPS: TLS with a test CA, HTTP/2 and HTTP/1.1 by ALPN, blobs through rustls (never the
//! zero-copy path), and a certificate renewed under load with no failed request.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use marina_http::tls::{Certificates, TlsFiles};
use reqwest::{StatusCode, Version};

use crate::common::*;

fn openssl(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?}");
}

/// A test CA (`ca.pem`) in `dir`.
fn make_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=marina test CA",
        ],
    );
}

/// A leaf certificate for 127.0.0.1 signed by the CA: `<name>.pem` and `<name>.key`.
fn make_leaf(dir: &Path, name: &str) {
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    );
}

/// A marina serving HTTPS with `live.pem`/`live.key` from `dir`, and a client trusting the CA.
async fn https(dir: &Path) -> (Server, reqwest::ClientBuilder) {
    https_with(dir, None, None).await
}

/// As [`https`], with `auth`, and client certificates signed by `client_ca` (a PEM file).
pub(crate) async fn https_with(
    dir: &Path,
    auth: Option<Arc<marina_http::Auth>>,
    client_ca: Option<std::path::PathBuf>,
) -> (Server, reqwest::ClientBuilder) {
    make_ca(dir);
    make_leaf(dir, "first");
    std::fs::copy(dir.join("first.pem"), dir.join("live.pem")).unwrap();
    std::fs::copy(dir.join("first.key"), dir.join("live.key")).unwrap();
    let files = TlsFiles {
        certificate: dir.join("live.pem"),
        key: dir.join("live.key"),
        client_ca,
    };
    let certificates = Certificates::load(files).unwrap();
    tokio::spawn(Arc::clone(&certificates).keep_current());
    let options = marina_http::Options {
        tls: Some(certificates),
        auth,
        ..Default::default()
    };
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(marina_store::filesystem::FileStore::open(data.path()).unwrap());
    let server = Server::serve_with(store, marina_registry::Config::default(), data, options).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_info(true);
    (server, client)
}

pub(crate) fn secure(server: &Server, path: &str) -> String {
    format!("https://{}{path}", server.addr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_go_over_https_with_http2_and_http1() {
    let certs = tempfile::tempdir().unwrap();
    let (server, client) = https(certs.path()).await;
    let client = client.build().unwrap();
    let base = client.get(secure(&server, "/v2/")).send().await.unwrap();
    assert_eq!(base.status(), StatusCode::OK);
    assert_eq!(base.version(), Version::HTTP_2, "ALPN offers h2");
    let blob = noise(9 * 1024 * 1024 + 7, 5);
    let digest = sha256(&blob);
    let pushed = client
        .post(secure(
            &server,
            &format!("/v2/tls/blobs/uploads/?digest={digest}"),
        ))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), StatusCode::CREATED);
    let http1 = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(certs.path().join("ca.pem")).unwrap())
                .unwrap(),
        )
        .http1_only()
        .build()
        .unwrap();
    for (label, client) in [("h2", &client), ("http/1.1", &http1)] {
        let pulled = client
            .get(secure(&server, &format!("/v2/tls/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(pulled.status(), StatusCode::OK, "{label}");
        assert!(
            pulled.bytes().await.unwrap() == blob,
            "{label}: the pulled bytes differ"
        );
    }
    let plain = reqwest::get(format!("http://{}/v2/", server.addr())).await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP is not served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_failed_request() {
    let certs = tempfile::tempdir().unwrap();
    let (server, client) = https(certs.path()).await;
    let blob = noise(256 * 1024, 6);
    let digest = sha256(&blob);
    let client = client.build().unwrap();
    let pushed = client.post(secure(
        &server,
        &format!("/v2/renew/blobs/uploads/?digest={digest}"),
    ));
    assert_eq!(
        pushed.body(blob.clone()).send().await.unwrap().status(),
        StatusCode::CREATED
    );
    make_leaf(certs.path(), "second");
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut pullers = Vec::new();
    for i in 0..4 {
        // Half the pullers open a new connection for every request, so handshakes happen
        // throughout the swap; the rest keep theirs.
        let fresh = i % 2 == 0;
        let (client, url) = (
            client.clone(),
            secure(&server, &format!("/v2/renew/blobs/{digest}")),
        );
        let (done, failed, stop, blob) = (done.clone(), failed.clone(), stop.clone(), blob.clone());
        let ca = std::fs::read(certs.path().join("ca.pem")).unwrap();
        pullers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let client = if fresh {
                    let ca = reqwest::Certificate::from_pem(&ca).unwrap();
                    reqwest::Client::builder()
                        .add_root_certificate(ca)
                        .build()
                        .unwrap()
                } else {
                    client.clone()
                };
                let ok = match client.get(&url).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        r.bytes().await.is_ok_and(|b| b == blob)
                    }
                    _ => false,
                };
                let counter = if ok { &done } else { &failed };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The new pair goes in the way tools write it: key first, then the certificate.
    std::fs::copy(
        certs.path().join("second.key"),
        certs.path().join("live.key"),
    )
    .unwrap();
    std::fs::copy(
        certs.path().join("second.pem"),
        certs.path().join("live.pem"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    stop.store(true, Ordering::SeqCst);
    for puller in pullers {
        puller.await.unwrap();
    }
    let (done, failed) = (done.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert_eq!(
        failed,
        0,
        "{failed} of {} pulls failed during the renewal",
        done + failed
    );
    assert!(done > 20, "only {done} pulls ran");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.path().join("ca.pem")).unwrap())
        .unwrap();
    let fresh = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_info(true)
        .build()
        .unwrap();
    let answer = fresh.get(secure(&server, "/v2/")).send().await.unwrap();
    let served = answer
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec));
    let second = pem_der(&std::fs::read_to_string(certs.path().join("second.pem")).unwrap());
    assert_eq!(
        served,
        Some(second),
        "a new connection gets the renewed certificate"
    );
}

/// The DER bytes of the first PEM block.
fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// Regression: over HTTP/2 there is no Host header, and the challenge sent clients to
/// `https://localhost/auth/token`, without the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_realm_names_the_https_address_over_http2() {
    let certs = tempfile::tempdir().unwrap();
    let key = marina_auth::TokenIssuer::generate_pem().unwrap();
    let issuer = marina_auth::TokenIssuer::from_pem(&key, "marina", "marina").unwrap();
    let auth = marina_http::Auth::new(Default::default(), Some(issuer), Default::default());
    let (server, client) = https_with(certs.path(), Some(Arc::new(auth)), None).await;
    let answer = client
        .build()
        .unwrap()
        .get(secure(&server, "/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.version(), Version::HTTP_2);
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let realm = format!("realm=\"https://{}/auth/token\"", server.addr());
    assert!(
        header(&answer, "WWW-Authenticate").contains(&realm),
        "{}",
        header(&answer, "WWW-Authenticate")
    );
}

/// A client CA of its own in `dir/clients`, and a certificate from it for each of `names`
/// (`<name>.pem` holding certificate and key, as `reqwest::Identity` reads them).
fn make_client_certificates(dir: &Path, names: &[&str]) -> std::path::PathBuf {
    let clients = dir.join("clients");
    std::fs::create_dir_all(&clients).unwrap();
    make_ca(&clients);
    for name in names {
        make_leaf(&clients, name);
        let leaf = std::fs::read_to_string(clients.join(format!("{name}.pem"))).unwrap();
        let key = std::fs::read_to_string(clients.join(format!("{name}.key"))).unwrap();
        std::fs::write(clients.join(format!("{name}.identity")), leaf + &key).unwrap();
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_signs_its_holder_in_by_its_common_name() {
    let certs = tempfile::tempdir().unwrap();
    // make_leaf names every certificate CN=127.0.0.1: that is the client's user name here.
    let clients = make_client_certificates(certs.path(), &["good"]);
    let stranger = tempfile::tempdir().unwrap();
    let strangers = make_client_certificates(stranger.path(), &["forged"]);
    let rules = [marina_auth::AccessRule {
        repositories: vec!["certified/**".into()],
        users: vec!["127.0.0.1".into()],
        actions: vec!["pull".into(), "push".into()],
        ..Default::default()
    }];
    let policy = marina_http::Policy {
        acl: marina_auth::Acl::new(&rules, &Default::default()).unwrap(),
        ..Default::default()
    };
    let auth = marina_http::Auth::new(policy, None, Default::default());
    let (server, client) = https_with(
        certs.path(),
        Some(Arc::new(auth)),
        Some(clients.join("ca.pem")),
    )
    .await;
    let identity = |path: std::path::PathBuf| {
        reqwest::Identity::from_pem(&std::fs::read(path).unwrap()).unwrap()
    };
    let holder = client
        .identity(identity(clients.join("good.identity")))
        .build()
        .unwrap();
    let blob = noise(70_000, 9);
    let digest = sha256(&blob);
    let push = |client: &reqwest::Client, repo: &str| {
        client
            .post(secure(
                &server,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            ))
            .body(blob.clone())
            .send()
    };
    assert_eq!(
        push(&holder, "certified/app").await.unwrap().status(),
        StatusCode::CREATED,
        "the certificate's CN may push where the rules say"
    );
    assert_eq!(
        push(&holder, "elsewhere").await.unwrap().status(),
        StatusCode::FORBIDDEN,
        "and nowhere else"
    );
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.path().join("ca.pem")).unwrap())
        .unwrap();
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .build()
        .unwrap();
    let answer = anonymous
        .get(secure(
            &server,
            &format!("/v2/certified/app/blobs/{digest}"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        StatusCode::UNAUTHORIZED,
        "no certificate: anonymous"
    );
    let forged = reqwest::Client::builder()
        .add_root_certificate(ca)
        .identity(identity(strangers.join("forged.identity")))
        .build()
        .unwrap();
    let refused = forged
        .get(secure(
            &server,
            &format!("/v2/certified/app/blobs/{digest}"),
        ))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a certificate from another CA fails the handshake"
    );
}
