//! The storm: 8 clients push images with shared layers (docker-style: `HEAD`, skip what is
//! there, upload the rest, then the manifest) while 2 clients delete tags and manifests, and
//! every server collects garbage every second with a 2-second grace. Through one server on the
//! filesystem, and through two replicas on one Garage bucket. Afterwards every manifest that
//! was acknowledged and not deleted pulls whole, byte for byte; once everything is deleted and
//! the grace has passed, the storage is empty.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};

use crate::common::*;
use crate::garage;

const PUSHERS: usize = 8;
const DELETERS: usize = 2;
const STORM: Duration = Duration::from_secs(12);
const GC_ARGS: [&str; 4] = ["--gc-interval", "1s", "--gc-grace", "2s"];

/// An image a server acknowledged.
#[derive(Clone, Debug)]
struct Acked {
    repo: String,
    tag: String,
    digest: String,
    manifest: Vec<u8>,
    blobs: Vec<(String, Vec<u8>)>,
    tag_deleted: bool,
    deleted: bool,
}

type Ledger = Arc<Mutex<Vec<Acked>>>;

#[tokio::test]
async fn storm_on_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(dir.path(), &GC_ARGS).await;
    let bases = vec![server.base.clone()];
    storm(&bases).await;
    let empty = wait_for_empty(|| async { fs_keys(dir.path()) }).await;
    assert_eq!(
        empty,
        Vec::<String>::new(),
        "storage is empty after deleting everything"
    );
}

#[tokio::test]
async fn storm_on_two_replicas_on_garage() {
    let node = garage::shared();
    let prefix = garage::unique_prefix("storm");
    let env = garage::s3_env(&node.endpoint(), &prefix);
    let args: Vec<String> = GC_ARGS.iter().map(|a| (*a).to_owned()).collect();
    let a = Process::spawn(&args, &env).await;
    let b = Process::spawn(&args, &env).await;
    let bases = vec![a.base.clone(), b.base.clone()];
    storm(&bases).await;
    let store = garage::store(&node.endpoint(), &prefix).await;
    let empty = wait_for_empty(|| s3_keys(&store)).await;
    assert_eq!(
        empty,
        Vec::<String>::new(),
        "the bucket is empty after deleting everything"
    );
}

/// Runs the storm through `bases`, checks every surviving image, then deletes everything.
async fn storm(bases: &[String]) {
    let ledger: Ledger = Arc::default();
    let deadline = Instant::now() + STORM;
    let mut tasks = Vec::new();
    for i in 0..PUSHERS {
        let (bases, ledger) = (bases.to_vec(), Arc::clone(&ledger));
        tasks.push(tokio::spawn(async move {
            pusher(i, &bases, &ledger, deadline).await
        }));
    }
    for i in 0..DELETERS {
        let (bases, ledger) = (bases.to_vec(), Arc::clone(&ledger));
        tasks.push(tokio::spawn(async move {
            deleter(i, &bases, &ledger, deadline).await
        }));
    }
    for task in tasks {
        task.await.expect("a storm client panicked");
    }
    let images = ledger.lock().unwrap().clone();
    let surviving: Vec<&Acked> = images.iter().filter(|i| !i.deleted).collect();
    assert!(
        images.len() >= 40,
        "only {} images were pushed",
        images.len()
    );
    assert!(
        surviving.len() >= 10 && surviving.len() < images.len(),
        "{} of {}",
        surviving.len(),
        images.len()
    );
    // Let a few collections run over what is left before checking it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let client = Client::new();
    for (n, image) in surviving.iter().enumerate() {
        check_pulls(&client, &bases[n % bases.len()], image).await;
    }
    for image in &surviving {
        let url = format!("{}/v2/{}/manifests/{}", bases[0], image.repo, image.digest);
        assert_eq!(
            client.delete(url).send().await.unwrap().status(),
            StatusCode::ACCEPTED
        );
    }
}

/// Pushes images until the deadline, recording each acknowledged one.
async fn pusher(i: usize, bases: &[String], ledger: &Ledger, deadline: Instant) {
    let client = Client::new();
    let mut n = 0;
    while Instant::now() < deadline {
        let base = &bases[(i + n) % bases.len()];
        let repo = format!("storm/r{}", (i + n) % 4);
        let image = image(i, n, &repo);
        push(&client, base, &image).await;
        ledger.lock().unwrap().push(image);
        n += 1;
    }
}

/// Deletes tags (the manifest stays) and manifests (it goes) of acknowledged images.
async fn deleter(i: usize, bases: &[String], ledger: &Ledger, deadline: Instant) {
    let client = Client::new();
    let mut n = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let pick = {
            let mut images = ledger.lock().unwrap();
            let open: Vec<usize> = (0..images.len())
                .filter(|k| !images[*k].deleted && !images[*k].tag_deleted)
                .filter(|k| k % DELETERS == i)
                .collect();
            let Some(&k) = open.get(n * 7 % open.len().max(1)) else {
                continue;
            };
            let by_digest = n % 3 != 0;
            images[k].tag_deleted = true;
            images[k].deleted = by_digest;
            (images[k].clone(), by_digest)
        };
        let (image, by_digest) = pick;
        let reference = if by_digest { &image.digest } else { &image.tag };
        let base = &bases[n % bases.len()];
        let url = format!("{base}/v2/{}/manifests/{reference}", image.repo);
        let status = client.delete(url).send().await.unwrap().status();
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "deleting {}:{reference}",
            image.repo
        );
        n += 1;
    }
}

/// Image `n` of pusher `i`: a base layer every image shares, one of three middle layers, and
/// a layer and config of its own.
fn image(i: usize, n: usize, repo: &str) -> Acked {
    let config = format!(r#"{{"os":"linux","pusher":{i},"n":{n}}}"#).into_bytes();
    let layers = [
        b"the base layer every image shares".to_vec(),
        format!("middle layer {}", (i + n) % 3).into_bytes(),
        noise(2048 + n, (i * 1000 + n) as u64),
    ];
    let manifest = image_manifest(
        &descriptor("application/vnd.oci.image.config.v1+json", &config),
        &layers
            .iter()
            .map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l))
            .collect::<Vec<_>>(),
        "",
    )
    .into_bytes();
    let mut blobs = vec![(sha256(&config), config)];
    blobs.extend(layers.into_iter().map(|l| (sha256(&l), l)));
    Acked {
        repo: repo.to_owned(),
        tag: format!("p{i}-{n}"),
        digest: sha256(&manifest),
        manifest,
        blobs,
        tag_deleted: false,
        deleted: false,
    }
}

/// Pushes like docker: `HEAD` each blob and upload only the missing; then the manifest. A
/// manifest refused for a blob collected meanwhile is retried after uploading every blob; a
/// 503 (a sweep of something the push relies on) after a pause.
async fn push(client: &Client, base: &str, image: &Acked) {
    for attempt in 0..20 {
        let skip_present = attempt == 0;
        for (digest, data) in &image.blobs {
            upload(client, base, &image.repo, digest, data, skip_present).await;
        }
        let url = format!("{base}/v2/{}/manifests/{}", image.repo, image.tag);
        let put = client
            .put(url)
            .header("Content-Type", OCI_MANIFEST)
            .body(image.manifest.clone())
            .send()
            .await
            .unwrap();
        match put.status() {
            StatusCode::CREATED => return,
            StatusCode::SERVICE_UNAVAILABLE => tokio::time::sleep(Duration::from_millis(500)).await,
            StatusCode::BAD_REQUEST => {
                let body = put.text().await.unwrap();
                assert!(body.contains("MANIFEST_BLOB_UNKNOWN"), "{body}");
            }
            other => panic!(
                "manifest PUT answered {other}: {}",
                put.text().await.unwrap()
            ),
        }
    }
    panic!("{}:{} was never accepted", image.repo, image.tag);
}

async fn upload(
    client: &Client,
    base: &str,
    repo: &str,
    digest: &str,
    data: &[u8],
    skip_present: bool,
) {
    loop {
        if skip_present {
            let head = client
                .head(format!("{base}/v2/{repo}/blobs/{digest}"))
                .send()
                .await
                .unwrap();
            if head.status() == StatusCode::OK {
                return;
            }
        }
        let url = format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}");
        let post = client.post(url).body(data.to_vec()).send().await.unwrap();
        match post.status() {
            StatusCode::CREATED => return,
            StatusCode::SERVICE_UNAVAILABLE => tokio::time::sleep(Duration::from_millis(500)).await,
            other => panic!(
                "blob upload answered {other}: {}",
                post.text().await.unwrap()
            ),
        }
    }
}

/// The image pulls whole: its manifest by digest (and by tag unless the tag was deleted), and
/// every blob, byte for byte.
async fn check_pulls(client: &Client, base: &str, image: &Acked) {
    let what = format!(
        "{}@{} (tag {} deleted: {})",
        image.repo, image.digest, image.tag, image.tag_deleted
    );
    let mut references = vec![image.digest.clone()];
    if !image.tag_deleted {
        references.push(image.tag.clone());
    }
    for reference in references {
        let url = format!("{base}/v2/{}/manifests/{reference}", image.repo);
        let got = client
            .get(url)
            .header("Accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), StatusCode::OK, "{what}: manifest {reference}");
        assert_eq!(got.bytes().await.unwrap(), image.manifest, "{what}");
    }
    for (digest, data) in &image.blobs {
        let got = client
            .get(format!("{base}/v2/{}/blobs/{digest}", image.repo))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), StatusCode::OK, "{what}: blob {digest}");
        assert_eq!(
            &got.bytes().await.unwrap()[..],
            &data[..],
            "{what}: blob {digest}"
        );
    }
}

/// Polls `keys` until it is empty or 60 s passed; returns the last listing.
async fn wait_for_empty<F, Fut>(keys: F) -> Vec<String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = keys().await;
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every file under a storage folder, but its lock and temp files.
fn fs_keys(dir: &std::path::Path) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .filter(|p| p != ".lock" && !p.starts_with(".tmp"))
        .collect()
}

/// Every key under a store's registry prefixes.
pub(crate) async fn s3_keys(store: &marina_store::s3::S3Store) -> Vec<String> {
    use marina_store::Store as _;
    let mut keys = Vec::new();
    for prefix in ["blobs/", "repos/", "catalog/", "uploading/", "gc/"] {
        let key = marina_store::Key::new(prefix).unwrap();
        let listed = store.list(&key, None, usize::MAX).await.expect("list");
        keys.extend(listed.into_iter().map(|k| format!("{prefix}{k}")));
    }
    keys
}
