//! Access control: every route of the API by every kind of caller, from one table. The rows
//! come from an exhaustive match on `Endpoint`, so a new route cannot miss its row; each cell's
//! expected status follows from the rules, never written by hand.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use marina_auth::{AccessRule, Acl, Action, Htpasswd, TokenIssuer};
use marina_http::{Auth, AuthSettings, Endpoint, Policy};
use reqwest::{Method, StatusCode};

use crate::common::*;

const SERVICE: &str = "marina";

/// The registry under test: three users with growing rights in `team/**`, and the key that
/// signs its tokens (kept, so the test can forge and tamper with tokens).
struct Guarded {
    server: Server,
    key: String,
}

fn user_rule(user: &str, actions: &[&str]) -> AccessRule {
    AccessRule {
        repositories: vec!["team/**".into()],
        users: vec![user.into()],
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        ..AccessRule::default()
    }
}

fn policy() -> Policy {
    let hash = |p: &str| bcrypt::hash(p, 4).unwrap();
    let text = format!(
        "reader:{}\nwriter:{}\ndeleter:{}\n",
        hash("reader-pw"),
        hash("writer-pw"),
        hash("deleter-pw")
    );
    let rules = [
        user_rule("reader", &["pull"]),
        user_rule("writer", &["pull", "push"]),
        user_rule("deleter", &["pull", "push", "delete"]),
    ];
    Policy {
        users: Htpasswd::parse(&text).unwrap(),
        acl: Acl::new(&rules, &std::collections::HashMap::new()).unwrap(),
    }
}

/// The registry with the default settings (failed logins throttled after 5 a minute a user).
async fn guarded() -> Guarded {
    guarded_with(AuthSettings::default()).await
}

/// The registry with throttling out of the way, for tests that fail many logins on purpose.
async fn unthrottled() -> Guarded {
    let settings = AuthSettings {
        throttle_per_user: 100_000,
        throttle_per_address: 100_000,
        ..AuthSettings::default()
    };
    guarded_with(settings).await
}

async fn guarded_with(settings: AuthSettings) -> Guarded {
    let key = TokenIssuer::generate_pem().unwrap();
    let issuer = TokenIssuer::from_pem(&key, "marina", SERVICE).unwrap();
    let auth = Arc::new(Auth::new(policy(), Some(issuer), settings));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(marina_store::filesystem::FileStore::open(dir.path()).unwrap());
    let options = marina_http::Options {
        auth: Some(auth),
        ..Default::default()
    };
    let server = Server::serve_with(store, marina_registry::Config::default(), dir, options).await;
    Guarded { server, key }
}

/// The kinds of caller: the columns.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Anonymous,
    Reader,
    Writer,
    Deleter,
    WrongPassword,
    UnknownUser,
    ReaderToken,
    WriterToken,
    ExpiredToken,
    OtherRepositoryToken,
    OtherKeyToken,
    AlgNoneToken,
    TamperedToken,
    OtherAudienceToken,
}

const EVERYONE: [Who; 14] = [
    Who::Anonymous,
    Who::Reader,
    Who::Writer,
    Who::Deleter,
    Who::WrongPassword,
    Who::UnknownUser,
    Who::ReaderToken,
    Who::WriterToken,
    Who::ExpiredToken,
    Who::OtherRepositoryToken,
    Who::OtherKeyToken,
    Who::AlgNoneToken,
    Who::TamperedToken,
    Who::OtherAudienceToken,
];

/// What a valid caller may do in `team/**`, by the rules; `None` for callers whose
/// credentials are refused.
fn rights(who: Who) -> Option<&'static [Action]> {
    use Action::{Delete, Pull, Push};
    match who {
        Who::Anonymous => Some(&[]),
        Who::Reader | Who::ReaderToken => Some(&[Pull]),
        Who::Writer | Who::WriterToken => Some(&[Pull, Push]),
        Who::Deleter | Who::OtherRepositoryToken => Some(&[Pull, Push, Delete]),
        _ => None,
    }
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// The Authorization header of a caller, for repository `repo`.
async fn credentials(g: &Guarded, who: Who, repo: &str) -> Option<String> {
    let all = "pull,push,delete";
    Some(match who {
        Who::Anonymous => return None,
        Who::Reader => basic("reader", "reader-pw"),
        Who::Writer => basic("writer", "writer-pw"),
        Who::Deleter => basic("deleter", "deleter-pw"),
        Who::WrongPassword => basic("reader", "not-it"),
        Who::UnknownUser => basic("mallory", "reader-pw"),
        Who::ReaderToken => bearer(&fetch_token(g, "reader-pw", "reader", repo, all).await),
        Who::WriterToken => bearer(&fetch_token(g, "writer-pw", "writer", repo, all).await),
        Who::OtherRepositoryToken => {
            bearer(&fetch_token(g, "deleter-pw", "deleter", "team/elsewhere", all).await)
        }
        Who::ExpiredToken => bearer(&forge(&g.key, SERVICE, repo, |c| c["exp"] = 1_000.into())),
        Who::OtherKeyToken => bearer(&forge(
            &TokenIssuer::generate_pem().unwrap(),
            SERVICE,
            repo,
            |_| {},
        )),
        Who::OtherAudienceToken => bearer(&forge(&g.key, "elsewhere", repo, |_| {})),
        Who::AlgNoneToken => {
            let token = forge(&g.key, SERVICE, repo, |_| {});
            let payload = token.split('.').nth(1).unwrap();
            let none = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"alg":"none","typ":"JWT"}"#);
            bearer(&format!("{none}.{payload}."))
        }
        Who::TamperedToken => {
            // A reader's valid token whose payload was edited to grant everything.
            let token = fetch_token(g, "reader-pw", "reader", repo, all).await;
            let parts: Vec<&str> = token.split('.').collect();
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let mut claims: serde_json::Value =
                serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
            claims["access"][0]["actions"] = serde_json::json!(["pull", "push", "delete"]);
            bearer(&format!(
                "{}.{}.{}",
                parts[0],
                b64.encode(claims.to_string()),
                parts[2]
            ))
        }
    })
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A token from the token endpoint, signed in with Basic.
async fn fetch_token(g: &Guarded, password: &str, user: &str, repo: &str, actions: &str) -> String {
    let url = format!("/auth/token?service={SERVICE}&scope=repository:{repo}:{actions}");
    let response = g
        .server
        .request(Method::GET, &url)
        .header("Authorization", basic(user, password))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "token for {user}");
    let body: serde_json::Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// A token signed with `key` for `audience`, granting everything in `repo`, then edited.
fn forge(key: &str, audience: &str, repo: &str, edit: impl Fn(&mut serde_json::Value)) -> String {
    let now = marina_auth::token::unix_now();
    let mut claims = serde_json::json!({
        "iss": "marina", "sub": "deleter", "aud": audience, "exp": now + 300, "nbf": now - 1,
        "iat": now, "jti": "forged",
        "access": [{ "type": "repository", "name": repo, "actions": ["pull", "push", "delete"] }],
    });
    edit(&mut claims);
    let key = jsonwebtoken::EncodingKey::from_ec_pem(key.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &key,
    )
    .unwrap()
}

/// What a route needs, from an exhaustive match on the endpoint: a new endpoint fails to
/// compile here until its need is stated.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    /// Any valid caller but an anonymous one (`GET /v2/`, the catalog: no anonymous rules).
    SignedIn,
    /// An action in the cell's repository.
    Repository(Action),
    /// The token endpoint: anonymous or valid Basic credentials.
    TokenEndpoint,
}

fn need(endpoint: &Endpoint) -> (&'static str, Need) {
    use Action::{Delete, Pull, Push};
    use Endpoint as E;
    match endpoint {
        E::Base => ("Base", Need::SignedIn),
        E::Catalog { .. } => ("Catalog", Need::SignedIn),
        E::ListTags { .. } => ("ListTags", Need::Repository(Pull)),
        E::GetManifest { .. } => ("GetManifest", Need::Repository(Pull)),
        E::PutManifest { .. } => ("PutManifest", Need::Repository(Push)),
        E::DeleteManifest { .. } => ("DeleteManifest", Need::Repository(Delete)),
        E::GetBlob { .. } => ("GetBlob", Need::Repository(Pull)),
        E::DeleteBlob { .. } => ("DeleteBlob", Need::Repository(Delete)),
        E::StartUpload { .. } => ("StartUpload", Need::Repository(Push)),
        E::GetUpload { .. } => ("GetUpload", Need::Repository(Push)),
        E::PatchUpload { .. } => ("PatchUpload", Need::Repository(Push)),
        E::FinishUpload { .. } => ("FinishUpload", Need::Repository(Push)),
        E::CancelUpload { .. } => ("CancelUpload", Need::Repository(Push)),
        E::Referrers { .. } => ("Referrers", Need::Repository(Pull)),
    }
}

/// Every endpoint variant `need` names: the rows must cover them all.
const VARIANTS: [&str; 14] = [
    "Base",
    "Catalog",
    "ListTags",
    "GetManifest",
    "PutManifest",
    "DeleteManifest",
    "GetBlob",
    "DeleteBlob",
    "StartUpload",
    "GetUpload",
    "PatchUpload",
    "FinishUpload",
    "CancelUpload",
    "Referrers",
];

/// What a token of this caller grants in the cell's repository (`None`: no token).
fn token_grants(who: Who) -> Option<&'static [Action]> {
    match who {
        Who::ReaderToken => Some(&[Action::Pull]),
        Who::WriterToken => Some(&[Action::Pull, Action::Push]),
        Who::OtherRepositoryToken => Some(&[]),
        _ => None,
    }
}

/// The status a caller must get on a route that answers `success` when allowed.
fn expected(who: Who, need: Need, success: u16) -> u16 {
    let Some(rights) = rights(who) else {
        return 401;
    };
    let anonymous = who == Who::Anonymous;
    match need {
        Need::TokenEndpoint if token_grants(who).is_some() => 401,
        Need::TokenEndpoint => success,
        Need::SignedIn if anonymous => 401,
        Need::SignedIn => success,
        Need::Repository(action) => match token_grants(who) {
            Some(granted) if granted.contains(&action) => success,
            Some(_) if rights.contains(&action) => 401,
            None if rights.contains(&action) => success,
            _ if anonymous => 401,
            _ => 403,
        },
    }
}

/// What one cell needs in place: an image tagged v1 in its repository and an open session.
struct Fixture {
    repo: String,
    manifest: Vec<u8>,
    manifest_digest: String,
    layer: String,
    session: String,
    mountable: String,
}

async fn fixture(g: &Guarded, cell: usize) -> Fixture {
    let repo = format!("team/c{cell}");
    let admin = basic("deleter", "deleter-pw");
    let push = |path: String, body: Vec<u8>| {
        g.server
            .request(Method::POST, &path)
            .header("Authorization", &admin)
            .body(body)
            .send()
    };
    let layer = format!("layer {cell}").into_bytes();
    let config = b"{}".to_vec();
    for blob in [&layer, &config] {
        let answer = push(
            format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(blob)),
            blob.clone(),
        )
        .await
        .unwrap();
        assert_eq!(answer.status(), StatusCode::CREATED);
    }
    let manifest = image_manifest(
        &descriptor(EMPTY_JSON, &config),
        &[descriptor(OCI_MANIFEST, &layer)],
        "",
    );
    let put = g
        .server
        .request(Method::PUT, &format!("/v2/{repo}/manifests/v1"))
        .header("Authorization", &admin)
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let start = push(format!("/v2/{repo}/blobs/uploads/"), Vec::new())
        .await
        .unwrap();
    let session = header(&start, "Location").to_owned();
    let mountable = format!("mount me {cell}").into_bytes();
    let source = push(
        format!("/v2/team/src/blobs/uploads/?digest={}", sha256(&mountable)),
        mountable.clone(),
    )
    .await
    .unwrap();
    assert_eq!(source.status(), StatusCode::CREATED);
    Fixture {
        repo,
        manifest_digest: sha256(manifest.as_bytes()),
        manifest: manifest.into_bytes(),
        layer: sha256(&layer),
        session,
        mountable: sha256(&mountable),
    }
}

/// The rows: one request per route, and the status it answers when allowed. The mount's
/// source is `team/src`: a caller whose token grants nothing there gets a session (202).
fn rows(f: &Fixture) -> Vec<(Method, String, Vec<u8>, u16)> {
    let r = &f.repo;
    let abc = sha256(b"abc");
    vec![
        (Method::GET, "/v2/".into(), vec![], 200),
        (Method::GET, "/v2/_catalog".into(), vec![], 200),
        (Method::GET, format!("/v2/{r}/tags/list"), vec![], 200),
        (Method::GET, format!("/v2/{r}/manifests/v1"), vec![], 200),
        (Method::HEAD, format!("/v2/{r}/manifests/v1"), vec![], 200),
        (
            Method::PUT,
            format!("/v2/{r}/manifests/v2"),
            f.manifest.clone(),
            201,
        ),
        (
            Method::DELETE,
            format!("/v2/{r}/manifests/{}", f.manifest_digest),
            vec![],
            202,
        ),
        (
            Method::GET,
            format!("/v2/{r}/blobs/{}", f.layer),
            vec![],
            200,
        ),
        (
            Method::HEAD,
            format!("/v2/{r}/blobs/{}", f.layer),
            vec![],
            200,
        ),
        (
            Method::DELETE,
            format!("/v2/{r}/blobs/{}", f.layer),
            vec![],
            202,
        ),
        (Method::POST, format!("/v2/{r}/blobs/uploads/"), vec![], 202),
        (
            Method::POST,
            format!("/v2/{r}/blobs/uploads/?digest={abc}"),
            b"abc".to_vec(),
            201,
        ),
        (
            Method::POST,
            format!("/v2/{r}/blobs/uploads/?mount={}&from=team/src", f.mountable),
            vec![],
            201,
        ),
        (Method::GET, f.session.clone(), vec![], 204),
        (Method::PATCH, f.session.clone(), b"abc".to_vec(), 202),
        (
            Method::PUT,
            format!("{}?digest={abc}", f.session),
            b"abc".to_vec(),
            201,
        ),
        (Method::DELETE, f.session.clone(), vec![], 204),
        (
            Method::GET,
            format!("/v2/{r}/referrers/{}", f.manifest_digest),
            vec![],
            200,
        ),
        (
            Method::GET,
            format!("/auth/token?service={SERVICE}&scope=repository:{r}:pull"),
            vec![],
            200,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_by_every_caller_answers_what_the_rules_say() {
    let g = unthrottled().await;
    let mut covered = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    let mut cell = 0;
    for row in 0..rows(&fixture(&g, 0).await).len() {
        for who in EVERYONE {
            cell += 1;
            let f = fixture(&g, cell).await;
            let (method, path, body, success) = rows(&f).swap_remove(row);
            let (target, query) = path.split_once('?').unwrap_or((&path, ""));
            let need = match Endpoint::parse(&method, target, Some(query)) {
                Ok(endpoint) => {
                    let (variant, need) = need(&endpoint);
                    covered.insert(variant);
                    need
                }
                Err(_) => Need::TokenEndpoint,
            };
            let mount = path.contains("mount=");
            let source_in_token = token_grants(who).is_none();
            let want = match expected(who, need, success) {
                201 if mount && !source_in_token => 202,
                other => other,
            };
            let mut request = g.server.request(method.clone(), &path).body(body);
            if let Some(value) = credentials(&g, who, &f.repo).await {
                request = request.header("Authorization", value);
            }
            let answer = request.send().await.unwrap();
            let got = answer.status().as_u16();
            if got != want {
                failures.push(format!(
                    "{method} {path} as {who:?}: {got}, expected {want}"
                ));
            } else if got == 401 {
                let challenge = answer.headers().get("WWW-Authenticate");
                assert!(
                    challenge.is_some(),
                    "{method} {path} as {who:?}: 401 without a challenge"
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let missing: Vec<_> = VARIANTS.iter().filter(|v| !covered.contains(*v)).collect();
    assert!(missing.is_empty(), "routes without a row: {missing:?}");
}

#[tokio::test]
async fn a_challenge_leads_a_client_to_a_token_that_works() {
    let g = guarded().await;
    let f = fixture(&g, 1).await;
    let path = format!("/v2/{}/manifests/v1", f.repo);
    let refused = g.server.get(&path).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let challenge = header(&refused, "WWW-Authenticate").to_owned();
    assert!(
        challenge.starts_with("Bearer realm=\"http://"),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!("service=\"{SERVICE}\"")),
        "{challenge}"
    );
    let scope = format!("scope=\"repository:{}:pull\"", f.repo);
    assert!(challenge.contains(&scope), "{challenge}");
    let token = fetch_token(&g, "reader-pw", "reader", &f.repo, "pull").await;
    let pulled = g
        .server
        .request(Method::GET, &path)
        .header("Authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), StatusCode::OK);
    let body = assert_error(
        g.server
            .request(Method::PUT, &path)
            .header("Authorization", bearer(&token))
            .header("Content-Type", OCI_MANIFEST)
            .body(f.manifest.clone())
            .send()
            .await
            .unwrap(),
        403,
        "DENIED",
    )
    .await;
    assert!(body.contains("reader may not push"), "{body}");
}

#[tokio::test]
async fn the_oauth_form_gives_refresh_tokens_and_refuses_wrong_passwords() {
    let g = guarded().await;
    let form = |fields: &str| {
        g.server
            .request(Method::POST, "/auth/token")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(fields.to_owned())
            .send()
    };
    let wrong = form("grant_type=password&username=reader&password=nope&service=marina")
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        wrong.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let signed_in = form("grant_type=password&username=writer&password=writer-pw&service=marina&scope=repository:team/x:push&access_type=offline&client_id=test").await.unwrap();
    assert_eq!(signed_in.status(), StatusCode::OK);
    let body: serde_json::Value = signed_in.json().await.unwrap();
    let refresh = body["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    assert!(
        body["access_token"].is_string() && body["expires_in"] == 300,
        "{body}"
    );
    let refreshed = form(&format!("grant_type=refresh_token&refresh_token={refresh}&service=marina&scope=repository:team/x:pull")).await.unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let access = refreshed.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = g
        .server
        .request(Method::GET, "/v2/team/x/tags/list")
        .header("Authorization", bearer(&access))
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.status(),
        StatusCode::NOT_FOUND,
        "authorized, and the repository is empty"
    );
    let misuse = g
        .server
        .request(Method::GET, "/v2/team/x/tags/list")
        .header("Authorization", bearer(&refresh))
        .send()
        .await
        .unwrap();
    assert_eq!(
        misuse.status(),
        StatusCode::UNAUTHORIZED,
        "a refresh token is no access token"
    );
}

#[tokio::test]
async fn failed_logins_are_throttled_per_user_but_not_per_bad_token() {
    let g = guarded().await;
    for _ in 0..5 {
        let wrong = g
            .server
            .request(Method::GET, "/v2/")
            .header("Authorization", basic("reader", "nope"));
        assert_eq!(
            wrong.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let throttled = g
        .server
        .request(Method::GET, "/v2/")
        .header("Authorization", basic("reader", "reader-pw"));
    let throttled = throttled.send().await.unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&throttled, "Retry-After").parse::<u64>().unwrap() > 0);
    let other = g
        .server
        .request(Method::GET, "/v2/")
        .header("Authorization", basic("writer", "writer-pw"));
    assert_eq!(
        other.send().await.unwrap().status(),
        StatusCode::OK,
        "others on the address sign in"
    );
    for _ in 0..10 {
        let bad = g
            .server
            .request(Method::GET, "/v2/")
            .header("Authorization", "Bearer not.a.token");
        assert_eq!(bad.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    let still = g
        .server
        .request(Method::GET, "/v2/")
        .header("Authorization", basic("deleter", "deleter-pw"));
    assert_eq!(
        still.send().await.unwrap().status(),
        StatusCode::OK,
        "bad tokens are not failed logins"
    );
}

#[tokio::test]
async fn the_catalog_lists_only_what_the_caller_may_pull() {
    let g = guarded().await;
    fixture(&g, 1).await;
    let admin = basic("deleter", "deleter-pw");
    let outside = g.server.request(
        Method::POST,
        &format!("/v2/private/x/blobs/uploads/?digest={}", sha256(b"p")),
    );
    let outside = outside
        .header("Authorization", &admin)
        .body(b"p".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        outside.status(),
        StatusCode::FORBIDDEN,
        "deleter's rules stop at team/**"
    );
    let listed = g
        .server
        .request(Method::GET, "/v2/_catalog")
        .header("Authorization", basic("reader", "reader-pw"));
    let body: serde_json::Value = listed.send().await.unwrap().json().await.unwrap();
    assert_eq!(
        body["repositories"],
        serde_json::json!(["team/c1", "team/src"])
    );
}

/// Regression: the challenge of a mount asked only for the target, so the token a client
/// fetched could not read the source and every mount fell back to an upload.
#[tokio::test]
async fn a_mount_challenge_asks_for_the_source_too_and_its_token_mounts() {
    let g = guarded().await;
    let f = fixture(&g, 1).await;
    let path = format!(
        "/v2/{}/blobs/uploads/?mount={}&from=team/src",
        f.repo, f.mountable
    );
    let refused = g.server.request(Method::POST, &path).send().await.unwrap();
    let challenge = header(&refused, "WWW-Authenticate").to_owned();
    let scope = format!(
        "scope=\"repository:{}:pull,push repository:team/src:pull\"",
        f.repo
    );
    assert!(challenge.contains(&scope), "{challenge}");
    let asked = format!("repository:{}:pull,push repository:team/src:pull", f.repo);
    let url = format!(
        "/auth/token?service={SERVICE}&scope={}",
        asked.replace(' ', "%20")
    );
    let token = g
        .server
        .request(Method::GET, &url)
        .header("Authorization", basic("writer", "writer-pw"));
    let token: serde_json::Value = token.send().await.unwrap().json().await.unwrap();
    let bearer = bearer(token["token"].as_str().unwrap());
    let mounted = g
        .server
        .request(Method::POST, &path)
        .header("Authorization", bearer);
    assert_eq!(mounted.send().await.unwrap().status(), StatusCode::CREATED);
}

/// An external issuer (Distribution's model): marina issues no tokens, sends clients to the
/// issuer's realm, checks tokens against the issuer's certificates or JWKS, and lets their
/// `access` claim decide.
#[tokio::test]
async fn another_issuers_tokens_are_trusted_by_its_certificates_or_its_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    };
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "raw.key",
    ]);
    run(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", "raw.key", "-out", "key.pem",
    ]);
    run(&[
        "req",
        "-x509",
        "-key",
        "key.pem",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-subj",
        "/CN=issuer",
    ]);
    let key = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    let issuer = TokenIssuer::from_pem(&key, "other-issuer", SERVICE).unwrap();
    let certificates = std::fs::read_to_string(dir.path().join("cert.pem")).unwrap();
    let bundles = [
        (
            "certificates",
            marina_auth::keys_from_certificates(&certificates).unwrap(),
        ),
        (
            "jwks",
            marina_auth::keys_from_jwks(&issuer.jwks().to_string()).unwrap(),
        ),
    ];
    for (label, keys) in bundles {
        let verifier = marina_auth::TokenVerifier::new(keys, "other-issuer", SERVICE);
        let settings = AuthSettings {
            realm: Some("https://issuer.invalid/token".into()),
            ..AuthSettings::default()
        };
        let auth = Arc::new(Auth::external(Policy::default(), verifier, settings));
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(marina_store::filesystem::FileStore::open(dir.path()).unwrap());
        let options = marina_http::Options {
            auth: Some(auth),
            ..Default::default()
        };
        let s = Server::serve_with(store, marina_registry::Config::default(), dir, options).await;
        let challenge = s.get("/v2/").await;
        assert_eq!(
            header(&challenge, "WWW-Authenticate"),
            format!("Bearer realm=\"https://issuer.invalid/token\",service=\"{SERVICE}\""),
            "{label}"
        );
        let grant = marina_auth::Granted {
            kind: "repository".into(),
            name: "team/x".into(),
            actions: vec!["pull".into()],
        };
        let (token, _) = issuer
            .issue("carol", vec![grant], Duration::from_secs(60), false)
            .unwrap();
        let with = |method: Method, path: &str| {
            s.request(method, path)
                .header("Authorization", bearer(&token))
                .send()
        };
        assert_eq!(
            with(Method::GET, "/v2/team/x/tags/list")
                .await
                .unwrap()
                .status(),
            StatusCode::NOT_FOUND,
            "{label}: pull granted, the repository is empty"
        );
        let push = with(Method::POST, "/v2/team/x/blobs/uploads/")
            .await
            .unwrap();
        assert_eq!(push.status(), StatusCode::UNAUTHORIZED, "{label}");
        assert!(
            header(&push, "WWW-Authenticate").contains("insufficient_scope"),
            "{label}"
        );
        let elsewhere = with(Method::GET, "/v2/team/y/tags/list").await.unwrap();
        assert_eq!(
            elsewhere.status(),
            StatusCode::UNAUTHORIZED,
            "{label}: the claim decides, not rules"
        );
        let forged = TokenIssuer::from_pem(
            &TokenIssuer::generate_pem().unwrap(),
            "other-issuer",
            SERVICE,
        )
        .unwrap();
        let grant = marina_auth::Granted {
            kind: "repository".into(),
            name: "team/x".into(),
            actions: vec!["pull".into()],
        };
        let (forged, _) = forged
            .issue("carol", vec![grant], Duration::from_secs(60), false)
            .unwrap();
        let refused = s
            .request(Method::GET, "/v2/team/x/tags/list")
            .header("Authorization", bearer(&forged));
        assert_eq!(
            refused.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "{label}: another key"
        );
        assert_eq!(
            s.get("/auth/token").await.status(),
            StatusCode::NOT_FOUND,
            "{label}: no tokens issued here"
        );
    }
}
