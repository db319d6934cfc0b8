//! The content-discovery workflow: tags, catalog and referrers.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;

async fn json(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

async fn tag_manifest(s: &Server, repo: &str, tags: &[&str]) -> String {
    let config = s.push_blob(repo, b"{}").await;
    let body = image_manifest(
        &format!(r#"{{"mediaType":"{EMPTY_JSON}","digest":"{config}","size":2}}"#),
        &[],
        "",
    );
    for tag in tags {
        assert_eq!(
            s.put_manifest(repo, tag, OCI_MANIFEST, body.as_bytes())
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    sha256(body.as_bytes())
}

#[tokio::test]
async fn tags_list_in_byte_order_with_pagination() {
    let s = Server::start().await;
    tag_manifest(
        &s,
        "t/list",
        &["v2", "latest", "V1", "a-b", "a", "_x", "1.0"],
    )
    .await;
    let all = json(s.get("/v2/t/list/tags/list").await).await;
    assert_eq!(all["name"], "t/list");
    assert_eq!(
        all["tags"],
        serde_json::json!(["1.0", "V1", "_x", "a", "a-b", "latest", "v2"])
    );

    let first = s.get("/v2/t/list/tags/list?n=3").await;
    assert_eq!(
        header(&first, "Link"),
        r#"</v2/t/list/tags/list?n=3&last=_x>; rel="next""#
    );
    assert_eq!(
        json(first).await["tags"],
        serde_json::json!(["1.0", "V1", "_x"])
    );
    let next = s.get("/v2/t/list/tags/list?n=3&last=_x").await;
    assert_eq!(
        json(next).await["tags"],
        serde_json::json!(["a", "a-b", "latest"])
    );
    let last = s.get("/v2/t/list/tags/list?n=3&last=latest").await;
    assert!(
        last.headers().get("Link").is_none(),
        "no Link on the last page"
    );
    assert_eq!(json(last).await["tags"], serde_json::json!(["v2"]));
    let empty = json(s.get("/v2/t/list/tags/list?n=0").await).await;
    assert_eq!(empty["tags"], serde_json::json!([]));
    assert_error(
        s.get("/v2/t/list/tags/list?n=many").await,
        400,
        "UNSUPPORTED",
    )
    .await;
    assert_error(
        s.get("/v2/never/pushed/tags/list").await,
        404,
        "NAME_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn catalog_lists_repositories_a_page_at_a_time() {
    let s = Server::start().await;
    for repo in ["b", "a/z", "a", "c/d/e"] {
        s.push_blob(repo, b"x").await;
    }
    let all = json(s.get("/v2/_catalog").await).await;
    assert_eq!(
        all["repositories"],
        serde_json::json!(["a", "a/z", "b", "c/d/e"])
    );
    let first = s.get("/v2/_catalog?n=2").await;
    assert_eq!(
        header(&first, "Link"),
        r#"</v2/_catalog?n=2&last=a/z>; rel="next""#
    );
    assert_eq!(
        json(first).await["repositories"],
        serde_json::json!(["a", "a/z"])
    );
    let second = s.get("/v2/_catalog?n=2&last=a/z").await;
    assert!(second.headers().get("Link").is_none());
    assert_eq!(
        json(second).await["repositories"],
        serde_json::json!(["b", "c/d/e"])
    );
}

#[tokio::test]
async fn referrers_list_filter_and_answer_for_missing_subjects() {
    let s = Server::start().await;
    let (subject, subject_bytes) = s.push_image("ref", "v1", "subject").await;
    let empty = s.push_blob("ref", b"{}").await;
    let config = format!(r#"{{"mediaType":"{EMPTY_JSON}","digest":"{empty}","size":2}}"#);
    let subject_desc = format!(
        r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{}}}"#,
        subject_bytes.len()
    );
    let mut pushed = Vec::new();
    for (i, artifact_type) in [
        "application/x.sbom",
        "application/x.sig",
        "application/x.sig",
    ]
    .iter()
    .enumerate()
    {
        let body = image_manifest(
            &config,
            &[],
            &format!(
                r#","artifactType":"{artifact_type}","subject":{subject_desc},"annotations":{{"n":"{i}"}}"#
            ),
        );
        let digest = sha256(body.as_bytes());
        let response = s
            .put_manifest("ref", &digest, OCI_MANIFEST, body.as_bytes())
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(header(&response, "OCI-Subject"), subject);
        pushed.push((digest, body.len(), *artifact_type, i));
    }
    let response = s.get(&format!("/v2/ref/referrers/{subject}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "Content-Type"), OCI_INDEX);
    assert!(response.headers().get("OCI-Filters-Applied").is_none());
    let index = json(response).await;
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for (digest, size, artifact_type, i) in &pushed {
        let entry = listed
            .iter()
            .find(|d| d["digest"] == digest.as_str())
            .expect("listed");
        assert_eq!(entry["mediaType"], OCI_MANIFEST);
        assert_eq!(entry["size"], *size);
        assert_eq!(entry["artifactType"], *artifact_type);
        assert_eq!(
            entry["annotations"],
            serde_json::json!({ "n": i.to_string() })
        );
    }
    let filtered = s
        .get(&format!(
            "/v2/ref/referrers/{subject}?artifactType=application/x.sig"
        ))
        .await;
    assert_eq!(header(&filtered, "OCI-Filters-Applied"), "artifactType");
    assert_eq!(
        json(filtered).await["manifests"].as_array().unwrap().len(),
        2
    );
    let none = json(
        s.get(&format!(
            "/v2/ref/referrers/{subject}?artifactType=application/x.none"
        ))
        .await,
    )
    .await;
    assert_eq!(none["manifests"], serde_json::json!([]));
    let unknown = s
        .get(&format!("/v2/nowhere/referrers/{}", sha256(b"x")))
        .await;
    assert_eq!(unknown.status(), StatusCode::OK);
    assert_eq!(json(unknown).await["manifests"], serde_json::json!([]));
    assert_error(
        s.get("/v2/ref/referrers/sha256:bad").await,
        400,
        "DIGEST_INVALID",
    )
    .await;
}

#[tokio::test]
async fn referrers_of_a_subject_not_yet_pushed() {
    let s = Server::start().await;
    let empty = s.push_blob("early", b"{}").await;
    let future_subject = sha256(b"pushed later");
    let body = image_manifest(
        &format!(r#"{{"mediaType":"{EMPTY_JSON}","digest":"{empty}","size":2}}"#),
        &[],
        &format!(
            r#","artifactType":"application/x.early","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{future_subject}","size":12}}"#
        ),
    );
    let response = s
        .put_manifest(
            "early",
            &sha256(body.as_bytes()),
            OCI_MANIFEST,
            body.as_bytes(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(header(&response, "OCI-Subject"), future_subject);
    let index = json(
        s.get(&format!("/v2/early/referrers/{future_subject}"))
            .await,
    )
    .await;
    assert_eq!(index["manifests"][0]["artifactType"], "application/x.early");
}

#[tokio::test]
async fn an_image_without_artifact_type_lists_its_config_type() {
    let s = Server::start().await;
    let (subject, _) = s.push_image("cfg", "v1", "s").await;
    let config = s.push_blob("cfg", br#"{"kind":"sig"}"#).await;
    let body = image_manifest(
        &format!(r#"{{"mediaType":"application/x.sig.config","digest":"{config}","size":14}}"#),
        &[],
        &format!(r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":1}}"#),
    );
    s.put_manifest("cfg", "sig", OCI_MANIFEST, body.as_bytes())
        .await;
    let index = json(s.get(&format!("/v2/cfg/referrers/{subject}")).await).await;
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/x.sig.config"
    );
}

/// Pushes a referrer of `subject` with `artifact_type` and an annotation of `padding` bytes;
/// returns its digest.
async fn push_referrer(
    s: &Server,
    (repo, subject): (&str, &str),
    artifact_type: &str,
    (seed, padding): (usize, usize),
) -> String {
    let config = s.push_blob(repo, b"{}").await;
    let pad = "p".repeat(padding);
    let extra = format!(
        r#","artifactType":"{artifact_type}","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":2}},"annotations":{{"seed":"{seed}","pad":"{pad}"}}"#
    );
    let config = format!(r#"{{"mediaType":"{EMPTY_JSON}","digest":"{config}","size":2}}"#);
    let body = image_manifest(&config, &[], &extra);
    let digest = sha256(body.as_bytes());
    let put = s
        .put_manifest(repo, &digest, OCI_MANIFEST, body.as_bytes())
        .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    digest
}

/// Follows `Link` from `first`; returns every page's digests and body size.
async fn referrer_pages(s: &Server, first: &str) -> Vec<(Vec<String>, usize)> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(path) = next.take() {
        let response = s.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        next = response.headers().get("Link").map(|link| {
            let link = link.to_str().unwrap();
            assert!(link.ends_with(r#">; rel="next""#), "{link}");
            link[1..link.find('>').unwrap()].to_owned()
        });
        let body = response.bytes().await.unwrap();
        let index: Value = serde_json::from_slice(&body).unwrap();
        let digests = index["manifests"].as_array().unwrap().iter();
        let digests = digests
            .map(|d| d["digest"].as_str().unwrap().to_owned())
            .collect();
        pages.push((digests, body.len()));
        assert!(pages.len() < 100, "pagination does not end");
    }
    pages
}

#[tokio::test]
async fn referrers_are_paged_with_link_and_n_and_keep_their_filter() {
    let s = Server::start().await;
    let (subject, _) = s.push_image("rp", "v1", "a").await;
    let mut all = Vec::new();
    let mut signatures = Vec::new();
    for i in 0..25 {
        let kind = if i % 2 == 0 {
            "application/x.sig"
        } else {
            "application/x.sbom"
        };
        let digest = push_referrer(&s, ("rp", &subject), kind, (i, 10)).await;
        if i % 2 == 0 {
            signatures.push(digest.clone());
        }
        all.push(digest);
    }
    all.sort();
    signatures.sort();
    let pages = referrer_pages(&s, &format!("/v2/rp/referrers/{subject}?n=10")).await;
    let sizes: Vec<usize> = pages.iter().map(|(d, _)| d.len()).collect();
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(
        pages.into_iter().flat_map(|(d, _)| d).collect::<Vec<_>>(),
        all
    );
    let filtered = format!("/v2/rp/referrers/{subject}?n=10&artifactType=application%2Fx.sig");
    let pages = referrer_pages(&s, &filtered).await;
    assert_eq!(
        pages.len(),
        3,
        "the filter reads 10 stored referrers a page"
    );
    let listed: Vec<String> = pages.into_iter().flat_map(|(d, _)| d).collect();
    assert_eq!(listed, signatures, "the Link keeps the filter");
}

#[tokio::test]
async fn a_referrers_page_stays_under_4_mib() {
    let s = Server::start().await;
    let (subject, _) = s.push_image("rb", "v1", "a").await;
    for i in 0..12 {
        push_referrer(&s, ("rb", &subject), "application/x.big", (i, 700 * 1024)).await;
    }
    let pages = referrer_pages(&s, &format!("/v2/rb/referrers/{subject}")).await;
    assert!(pages.len() >= 2, "12 referrers of 700 KiB fit in one page");
    for (_, bytes) in &pages {
        assert!(*bytes < 4 * 1024 * 1024, "a page of {bytes} bytes");
    }
    assert_eq!(pages.iter().map(|(d, _)| d.len()).sum::<usize>(), 12);
}
