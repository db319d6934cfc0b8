//! A real OCI client, the `oci-client` crate, against marina: multi-layer images, an index
//! with platform selection, chunked pushes, an artifact with a subject and its referrers,
//! paginated tags, and signing in with tokens over HTTPS.

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest, Platform,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::common::*;

fn client(platform: Option<&'static str>) -> Client {
    let mut config = ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    };
    if let Some(arch) = platform {
        config.platform_resolver = Some(Box::new(move |entries: &[ImageIndexEntry]| {
            entries
                .iter()
                .find(|e| {
                    e.platform
                        .as_ref()
                        .is_some_and(|p| p.architecture == arch.into())
                })
                .map(|e| e.digest.clone())
        }));
    }
    Client::new(config)
}

fn reference(s: &Server, repo_and_tag: &str) -> Reference {
    format!("{}/{repo_and_tag}", s.addr()).parse().unwrap()
}

fn layer(text: &str) -> ImageLayer {
    ImageLayer::oci_v1(text.as_bytes().to_vec(), None)
}

fn config(arch: &str) -> Config {
    Config::oci_v1(
        format!(r#"{{"architecture":"{arch}","os":"linux"}}"#).into_bytes(),
        None,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_and_pulls_a_multi_layer_image() {
    let s = Server::start().await;
    let c = client(None);
    let image = reference(&s, "client/image:v1");
    let layers = vec![
        layer("first layer"),
        layer("second layer"),
        layer("third layer"),
    ];
    c.push(
        &image,
        &layers,
        config("amd64"),
        &RegistryAuth::Anonymous,
        None,
    )
    .await
    .unwrap();
    let pulled = c
        .pull(
            &image,
            &RegistryAuth::Anonymous,
            vec![oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE],
        )
        .await
        .unwrap();
    let manifest = pulled.manifest.expect("manifest");
    let order: Vec<String> = manifest.layers.iter().map(|l| l.digest.clone()).collect();
    let sent: Vec<String> = layers.iter().map(ImageLayer::sha256_digest).collect();
    assert_eq!(order, sent, "the manifest keeps the layer order");
    // The client fetches layers concurrently, so match them by digest.
    let mut got: Vec<String> = pulled
        .layers
        .iter()
        .map(ImageLayer::sha256_digest)
        .collect();
    got.sort();
    let mut want = sent.clone();
    want.sort();
    assert_eq!(got, want, "every layer's bytes came back");
    assert_eq!(
        pulled.config.data.as_ref(),
        br#"{"architecture":"amd64","os":"linux"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_chunked_and_pulls_one_platform_of_an_index() {
    let s = Server::start().await;
    let pusher = client(None);
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let image = reference(&s, &format!("client/multi:{arch}"));
        let content = format!("{arch} layer ").repeat(100_000);
        let stream = futures_util::stream::iter(
            content
                .as_bytes()
                .chunks(64 * 1024)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        let pushed = pusher
            .push_blob_stream_chunked(&image, stream)
            .await
            .unwrap();
        assert_eq!(pushed.blob_digest, sha256(content.as_bytes()));
        let cfg = config(arch);
        let cfg_digest = sha256(&cfg.data);
        pusher
            .push_blob(&image, cfg.data.clone(), &cfg_digest)
            .await
            .unwrap();
        let manifest = OciImageManifest {
            config: OciDescriptor {
                media_type: cfg.media_type.clone(),
                digest: cfg_digest,
                size: cfg.data.len() as i64,
                ..Default::default()
            },
            layers: vec![OciDescriptor {
                media_type: oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE.into(),
                digest: pushed.blob_digest.clone(),
                size: content.len() as i64,
                ..Default::default()
            }],
            ..Default::default()
        };
        pusher
            .push_manifest(&image, &manifest.clone().into())
            .await
            .unwrap();
        let (raw, digest) = pusher
            .pull_manifest_raw(&image, &RegistryAuth::Anonymous, &[OCI_MANIFEST])
            .await
            .unwrap();
        let served = s.get(&format!("/v2/client/multi/manifests/{digest}")).await;
        let served = served.bytes().await.unwrap();
        assert_eq!(served, raw, "the client and a plain GET see the same bytes");
        assert_eq!(sha256(&served), digest, "the bytes are the ones addressed");
        let parsed: serde_json::Value = serde_json::from_slice(&served).unwrap();
        assert_eq!(parsed["layers"][0]["digest"], pushed.blob_digest.as_str());
        assert_eq!(parsed["config"]["digest"], manifest.config.digest.as_str());
        let size = served.len();
        entries.push(ImageIndexEntry {
            media_type: OCI_MANIFEST.into(),
            digest,
            size: size as i64,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                os_version: None,
                os_features: None,
                variant: None,
                features: None,
            }),
            annotations: None,
            artifact_type: None,
        });
    }
    let index = OciImageIndex {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: entries,
        artifact_type: None,
        annotations: None,
    };
    let list = reference(&s, "client/multi:latest");
    pusher
        .push_manifest_list(&list, &RegistryAuth::Anonymous, index)
        .await
        .unwrap();
    let arm = client(Some("arm64"));
    let pulled = arm
        .pull(
            &list,
            &RegistryAuth::Anonymous,
            vec![oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE],
        )
        .await
        .unwrap();
    assert!(
        pulled.layers[0].data.starts_with(b"arm64 layer"),
        "the arm64 image was chosen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_refers_to_an_image_and_shows_in_its_referrers() {
    let s = Server::start().await;
    let c = client(None);
    let image = reference(&s, "client/art:v1");
    c.push(
        &image,
        &[layer("subject layer")],
        config("amd64"),
        &RegistryAuth::Anonymous,
        None,
    )
    .await
    .unwrap();
    let (subject_bytes, subject_digest) = c
        .pull_manifest_raw(&image, &RegistryAuth::Anonymous, &[OCI_MANIFEST])
        .await
        .unwrap();
    let empty = Config::new(b"{}".to_vec(), EMPTY_JSON.into(), None);
    let mut manifest = OciImageManifest::build(&[layer("signature bytes")], &empty, None);
    manifest.artifact_type = Some("application/vnd.example.signature".into());
    manifest.subject = Some(OciDescriptor {
        media_type: OCI_MANIFEST.into(),
        digest: subject_digest.clone(),
        size: subject_bytes.len() as i64,
        ..Default::default()
    });
    let artifact = reference(&s, "client/art:sig");
    c.push(
        &artifact,
        &[layer("signature bytes")],
        empty,
        &RegistryAuth::Anonymous,
        Some(manifest),
    )
    .await
    .unwrap();
    let subject_ref = reference(&s, &format!("client/art@{subject_digest}"));
    let referrers = c.pull_referrers(&subject_ref, None).await.unwrap();
    assert_eq!(referrers.manifests.len(), 1);
    assert_eq!(
        referrers.manifests[0].artifact_type.as_deref(),
        Some("application/vnd.example.signature")
    );
    let filtered = c
        .pull_referrers(&subject_ref, Some("application/vnd.example.other"))
        .await
        .unwrap();
    assert!(filtered.manifests.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_tags_a_page_at_a_time() {
    let s = Server::start().await;
    let c = client(None);
    for tag in ["a", "b", "c", "d", "e"] {
        c.push(
            &reference(&s, &format!("client/tags:{tag}")),
            &[layer("same")],
            config("amd64"),
            &RegistryAuth::Anonymous,
            None,
        )
        .await
        .unwrap();
    }
    let image = reference(&s, "client/tags:a");
    let first = c
        .list_tags(&image, &RegistryAuth::Anonymous, Some(2), None)
        .await
        .unwrap();
    assert_eq!(first.tags, ["a", "b"]);
    let second = c
        .list_tags(&image, &RegistryAuth::Anonymous, Some(2), Some("b"))
        .await
        .unwrap();
    assert_eq!(second.tags, ["c", "d"]);
    let rest = c
        .list_tags(&image, &RegistryAuth::Anonymous, Some(2), Some("d"))
        .await
        .unwrap();
    assert_eq!(rest.tags, ["e"]);
}

/// marina over HTTPS with htpasswd and tokens: alice may push and pull in `team/**`.
async fn signed_in_registry(certs: &std::path::Path) -> Server {
    let users = format!("alice:{}\n", bcrypt::hash("alice-pw", 4).unwrap());
    let rules = [marina_auth::AccessRule {
        repositories: vec!["team/**".into()],
        users: vec!["alice".into()],
        actions: vec!["pull".into(), "push".into()],
        ..Default::default()
    }];
    let policy = marina_http::Policy {
        users: marina_auth::Htpasswd::parse(&users).unwrap(),
        acl: marina_auth::Acl::new(&rules, &Default::default()).unwrap(),
    };
    let key = marina_auth::TokenIssuer::generate_pem().unwrap();
    let issuer = marina_auth::TokenIssuer::from_pem(&key, "marina", "marina").unwrap();
    let auth = marina_http::Auth::new(policy, Some(issuer), Default::default());
    let (server, _) = crate::tls::https_with(certs, Some(std::sync::Arc::new(auth)), None).await;
    server
}

/// A client over HTTPS that trusts the test CA in `certs`.
fn https_client(certs: &std::path::Path) -> Client {
    use oci_client::client::{Certificate, CertificateEncoding};
    Client::new(ClientConfig {
        protocol: ClientProtocol::Https,
        extra_root_certificates: vec![Certificate {
            encoding: CertificateEncoding::Pem,
            data: std::fs::read(certs.join("ca.pem")).unwrap(),
        }],
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_in_with_a_token_over_https_to_push_and_pull() {
    let certs = tempfile::tempdir().unwrap();
    let server = signed_in_registry(certs.path()).await;
    let c = https_client(certs.path());
    let image = reference(&server, "team/signed:v1");
    let alice = RegistryAuth::Basic("alice".into(), "alice-pw".into());
    let layers = vec![layer("a layer pushed with a token")];
    c.push(&image, &layers, config("amd64"), &alice, None)
        .await
        .expect("alice pushes with a token");
    let wrong = RegistryAuth::Basic("alice".into(), "wrong".into());
    let refused = https_client(certs.path())
        .push(&image, &layers, config("amd64"), &wrong, None)
        .await;
    assert!(refused.is_err(), "a wrong password pushes nothing");
    // oci-client keeps a token per registry and action whatever the credentials, so each
    // identity gets a client of its own.
    let media = vec![oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE];
    let anonymous = https_client(certs.path())
        .pull(&image, &RegistryAuth::Anonymous, media.clone())
        .await;
    assert!(anonymous.is_err(), "an anonymous pull is refused");
    let pulled = https_client(certs.path())
        .pull(&image, &alice, media)
        .await
        .expect("alice pulls");
    assert_eq!(pulled.layers.len(), 1);
    assert_eq!(
        pulled.layers[0].data.as_ref(),
        b"a layer pushed with a token"
    );
}
