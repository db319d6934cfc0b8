//! The content-management workflow: deleting tags, manifests and blobs.

use reqwest::{Method, StatusCode};

use crate::common::*;

async fn delete(s: &Server, path: &str) -> reqwest::Response {
    s.request(Method::DELETE, path).send().await.unwrap()
}

#[tokio::test]
async fn deleting_a_tag_removes_only_the_tag() {
    let s = Server::start().await;
    let (digest, _) = s.push_image("dt", "v1", "a").await;
    let bytes = s
        .get(&format!("/v2/dt/manifests/{digest}"))
        .await
        .bytes()
        .await;
    let second = s
        .put_manifest("dt", "v2", OCI_MANIFEST, &bytes.unwrap())
        .await;
    assert_eq!(second.status(), StatusCode::CREATED, "tagging v2");
    assert_eq!(
        delete(&s, "/v2/dt/manifests/v1").await.status(),
        StatusCode::ACCEPTED
    );
    assert_error(s.get("/v2/dt/manifests/v1").await, 404, "MANIFEST_UNKNOWN").await;
    assert_eq!(s.get("/v2/dt/manifests/v2").await.status(), StatusCode::OK);
    assert_eq!(
        s.get(&format!("/v2/dt/manifests/{digest}")).await.status(),
        StatusCode::OK
    );
    assert_error(
        delete(&s, "/v2/dt/manifests/v1").await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn deleting_a_manifest_removes_its_tags() {
    let s = Server::start().await;
    let (digest, bytes) = s.push_image("dm", "v1", "a").await;
    let also = s.put_manifest("dm", "also", OCI_MANIFEST, &bytes).await;
    assert_eq!(also.status(), StatusCode::CREATED, "tagging 'also'");
    let listed = s.get("/v2/dm/tags/list").await.text().await.unwrap();
    assert!(
        listed.contains("\"also\""),
        "'also' was never tagged: {listed}"
    );
    let (other, _) = s.push_image("dm", "other", "b").await;
    assert_eq!(
        delete(&s, &format!("/v2/dm/manifests/{digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_error(
        s.get(&format!("/v2/dm/manifests/{digest}")).await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_eq!(
        s.head(&format!("/v2/dm/manifests/{digest}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_error(s.get("/v2/dm/manifests/v1").await, 404, "MANIFEST_UNKNOWN").await;
    let tags: serde_json::Value =
        serde_json::from_slice(&s.get("/v2/dm/tags/list").await.bytes().await.unwrap()).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["other"]));
    assert_eq!(
        header(
            &s.get("/v2/dm/manifests/other").await,
            "Docker-Content-Digest"
        ),
        other
    );
    assert_error(
        delete(&s, &format!("/v2/dm/manifests/{digest}")).await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn deleting_a_referrer_removes_it_from_the_listing() {
    let s = Server::start().await;
    let (subject, _) = s.push_image("dr", "v1", "a").await;
    let empty = s.push_blob("dr", b"{}").await;
    let body = image_manifest(
        &format!(r#"{{"mediaType":"{EMPTY_JSON}","digest":"{empty}","size":2}}"#),
        &[],
        &format!(
            r#","artifactType":"application/x.sig","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":1}}"#
        ),
    );
    let digest = sha256(body.as_bytes());
    let put = s
        .put_manifest("dr", &digest, OCI_MANIFEST, body.as_bytes())
        .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let listing = format!("/v2/dr/referrers/{subject}");
    let before: serde_json::Value =
        serde_json::from_slice(&s.get(&listing).await.bytes().await.unwrap()).unwrap();
    assert_eq!(
        before["manifests"][0]["digest"], digest,
        "the referrer was never listed: {before}"
    );
    assert_eq!(
        delete(&s, &format!("/v2/dr/manifests/{digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let after: serde_json::Value =
        serde_json::from_slice(&s.get(&listing).await.bytes().await.unwrap()).unwrap();
    assert_eq!(after["manifests"], serde_json::json!([]));
}

#[tokio::test]
async fn deleting_a_blob() {
    let s = Server::start().await;
    let digest = s.push_blob("db", b"bye").await;
    let also = s.push_blob("db2", b"bye").await;
    assert_eq!(
        delete(&s, &format!("/v2/db/blobs/{digest}")).await.status(),
        StatusCode::ACCEPTED
    );
    assert_error(
        s.get(&format!("/v2/db/blobs/{digest}")).await,
        404,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(
        s.head(&format!("/v2/db/blobs/{digest}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&format!("/v2/db2/blobs/{also}")).await.status(),
        StatusCode::OK,
        "other repositories keep it"
    );
    assert_error(
        delete(&s, &format!("/v2/db/blobs/{digest}")).await,
        404,
        "BLOB_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn deletes_can_be_disabled() {
    let s = Server::start_with(marina_registry::Config {
        delete_enabled: false,
        ..Default::default()
    })
    .await;
    let (digest, _) = s.push_image("off", "v1", "a").await;
    let blob = s.push_blob("off", b"kept").await;
    for path in [
        format!("/v2/off/manifests/{digest}"),
        "/v2/off/manifests/v1".to_owned(),
        format!("/v2/off/blobs/{blob}"),
    ] {
        assert_error(delete(&s, &path).await, 405, "UNSUPPORTED").await;
    }
    assert_eq!(s.get("/v2/off/manifests/v1").await.status(), StatusCode::OK);
    assert_eq!(
        s.get(&format!("/v2/off/blobs/{blob}")).await.status(),
        StatusCode::OK
    );
}
