//! Two replicas writing one upload session at once (a client retry through a load balancer, a
//! cut-off part landing late) on one Garage bucket. Whatever the order, the committed blob is
//! the bytes that were hashed, or the upload is refused: never another writer's bytes under
//! the digest (regression: 13 of 60 runs committed `sha256(X)` holding Y).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use marina_oci::{Digest, RepoName};
use marina_registry::{Config, Error, Registry, UploadId};
use marina_store::{InputStream, Key, Store};
use reqwest::StatusCode;
use tokio::sync::oneshot;

use crate::common::*;
use crate::garage;

const CHUNK: usize = 64 * 1024;

/// A chunk whose first half is sent at once and whose second half waits for `release`.
fn held(data: Vec<u8>) -> (InputStream, oneshot::Sender<()>) {
    let (release, wait) = oneshot::channel();
    let (first, second) = {
        let mut data = Bytes::from(data);
        let second = data.split_off(CHUNK / 2);
        (data, second)
    };
    let stream = futures_util::stream::once(async move { Ok(first) }).chain(
        futures_util::stream::once(async move {
            let _ = wait.await;
            Ok(second)
        }),
    );
    (Box::pin(stream), release)
}

/// Two registries (replicas: each has its own session locks) on one store.
fn replicas(store: &Arc<dyn Store>) -> (Registry, Registry) {
    let make = || Registry::new(Arc::clone(store), Config::default());
    (make(), make())
}

fn digest_of(data: &[u8]) -> Digest {
    sha256(data).parse().unwrap()
}

fn blob_key(digest: &Digest) -> Key {
    let hex = digest.to_string()["sha256:".len()..].to_owned();
    Key::new(format!("blobs/sha256/{}/{hex}", &hex[..2])).unwrap()
}

/// The orders in which replica A's and replica B's appends at offset 0 can meet: each append
/// loads the state, writes its part when its body ends, then saves the state.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// A finishes before B starts: B is refused with 416.
    AThenB,
    /// B runs whole while A waits for the rest of its body.
    BInsideA,
    /// Both start; A's body ends first.
    BothStartAEndsFirst,
    /// Both start; B's body ends first.
    BothStartBEndsFirst,
}

type Appending = tokio::task::JoinHandle<marina_registry::Result<marina_registry::UploadStatus>>;

/// Starts an append of `data` at offset 0 whose body ends when the returned sender fires.
fn start_append(
    replica: &Registry,
    repo: &RepoName,
    id: &UploadId,
    data: &[u8],
) -> (Appending, oneshot::Sender<()>) {
    let (body, go) = held(data.to_vec());
    let (replica, repo, id) = (replica.clone(), repo.clone(), id.clone());
    let task = tokio::spawn(async move { replica.append_upload(&repo, &id, Some(0), body).await });
    (task, go)
}

async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

/// Runs A's append of `x` and B's append of `y` in `order`; returns whether each succeeded
/// (the loser of a race may only be refused with 416).
async fn race(
    (a, b): (&Registry, &Registry),
    repo: &RepoName,
    id: &UploadId,
    (x, y): (&[u8], &[u8]),
    order: Order,
) -> (bool, bool) {
    let (a_done, b_done) = match order {
        Order::AThenB => {
            let (a_task, a_go) = start_append(a, repo, id, x);
            let _ = a_go.send(());
            let a_done = a_task.await.unwrap();
            let (b_task, b_go) = start_append(b, repo, id, y);
            let _ = b_go.send(());
            (a_done, b_task.await.unwrap())
        }
        Order::BInsideA => {
            let (a_task, a_go) = start_append(a, repo, id, x);
            settle().await;
            let (b_task, b_go) = start_append(b, repo, id, y);
            let _ = b_go.send(());
            let b_done = b_task.await.unwrap();
            let _ = a_go.send(());
            (a_task.await.unwrap(), b_done)
        }
        Order::BothStartAEndsFirst | Order::BothStartBEndsFirst => {
            let (a_task, a_go) = start_append(a, repo, id, x);
            let (b_task, b_go) = start_append(b, repo, id, y);
            settle().await;
            let a_first = matches!(order, Order::BothStartAEndsFirst);
            let (first_go, second_go) = if a_first { (a_go, b_go) } else { (b_go, a_go) };
            let _ = first_go.send(());
            settle().await;
            let _ = second_go.send(());
            (a_task.await.unwrap(), b_task.await.unwrap())
        }
    };
    for outcome in [&a_done, &b_done] {
        if let Err(e) = outcome {
            assert!(matches!(e, Error::ChunkOutOfOrder { .. }), "{order:?}: {e}");
        }
    }
    (a_done.is_ok(), b_done.is_ok())
}

/// Finishes the session with `claimed`'s digest through `replica`, and checks the outcome: a
/// commit holds exactly `claimed`; a refusal commits nothing.
async fn finish_and_check(
    replica: &Registry,
    store: &Arc<dyn Store>,
    (repo, id): (&RepoName, &UploadId),
    claimed: &[u8],
    label: &str,
) -> bool {
    let digest = digest_of(claimed);
    let finished = replica.finish_upload(repo, id, &digest, None, None).await;
    let stored = store.get(&blob_key(&digest)).await;
    match finished {
        Ok(()) => {
            let stored = stored.unwrap_or_else(|e| panic!("{label}: committed but gone: {e}"));
            assert!(
                stored == claimed,
                "{label}: wrong bytes committed under {digest}"
            );
            true
        }
        Err(Error::DigestMismatch { .. } | Error::UploadUnknown(_)) => {
            assert!(
                stored.unwrap_err().is_not_found(),
                "{label}: a refusal committed"
            );
            false
        }
        Err(e) => panic!("{label}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writes_to_one_session_commit_the_hashed_bytes_or_nothing() {
    let node = garage::shared();
    let store: Arc<dyn Store> =
        Arc::new(garage::store(&node.endpoint(), &garage::unique_prefix("race")).await);
    let (a, b) = replicas(&store);
    let repo: RepoName = "race/session".parse().unwrap();
    let orders = [
        Order::AThenB,
        Order::BInsideA,
        Order::BothStartAEndsFirst,
        Order::BothStartBEndsFirst,
    ];
    for (round, order) in orders.into_iter().enumerate() {
        for claim_x in [true, false] {
            let x = noise(CHUNK, 2 * round as u64 + u64::from(claim_x));
            let y = noise(CHUNK, 100 + 2 * round as u64 + u64::from(claim_x));
            let id = a
                .start_upload(&repo, marina_oci::Algorithm::Sha256)
                .await
                .unwrap()
                .id;
            let (a_ok, b_ok) = race((&a, &b), &repo, &id, (&x, &y), order).await;
            assert!(a_ok || b_ok, "{order:?}: both appends were refused");
            let claimed = if claim_x { &x } else { &y };
            let label = format!(
                "{order:?}, finishing with {}",
                if claim_x { "X" } else { "Y" }
            );
            let committed = finish_and_check(&b, &store, (&repo, &id), claimed, &label).await;
            // The replica whose state was saved last wins; its own digest must commit.
            let winner_is_x = match order {
                Order::AThenB | Order::BInsideA | Order::BothStartBEndsFirst => true,
                Order::BothStartAEndsFirst => false,
            };
            assert_eq!(committed, claim_x == winner_is_x, "{label}");
        }
    }
}

/// A part write that was cut off on marina's side and lands at the server later, at an offset
/// the session already holds, is never committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_duplicate_part_is_never_committed() {
    let node = garage::shared();
    let store: Arc<dyn Store> =
        Arc::new(garage::store(&node.endpoint(), &garage::unique_prefix("late")).await);
    let (a, _) = replicas(&store);
    let repo: RepoName = "race/late".parse().unwrap();
    let x = noise(CHUNK, 7);
    let id = a
        .start_upload(&repo, marina_oci::Algorithm::Sha256)
        .await
        .unwrap()
        .id;
    let chunk: InputStream = Box::pin(futures_util::stream::iter([Ok(Bytes::from(x.clone()))]));
    a.append_upload(&repo, &id, Some(0), chunk).await.unwrap();
    let late = Bytes::from(noise(CHUNK, 8));
    let staged = Key::new(format!("repos/{repo}/_uploads/{id}/data")).unwrap();
    let late: InputStream = Box::pin(futures_util::stream::iter([Ok(late)]));
    store.append(&staged, 0, late).await.unwrap();
    assert!(finish_and_check(&a, &store, (&repo, &id), &x, "late part").await);
}

/// The measurement that found the bug, over HTTP: one session, 1 MiB of X to replica A and
/// 1 MiB of Y to replica B at the same moment, then a finish with one of the two digests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_through_two_replica_processes_never_commit_wrong_bytes() {
    let node = garage::shared();
    let env = garage::s3_env(&node.endpoint(), &garage::unique_prefix("race-http"));
    let (a, b) = (
        Process::spawn(&[], &env).await,
        Process::spawn(&[], &env).await,
    );
    let http = reqwest::Client::new();
    for round in 0..20u64 {
        let (x, y) = (noise(1 << 20, round), noise(1 << 20, 1000 + round));
        let start = http
            .post(format!("{}/v2/race/blobs/uploads/", a.base))
            .send()
            .await
            .unwrap();
        let location = header(&start, "Location").to_owned();
        let patch = |base: &str, data: &[u8]| {
            http.patch(format!("{base}{location}"))
                .header("Content-Range", format!("0-{}", data.len() - 1))
                .body(data.to_vec())
                .send()
        };
        let (pa, pb) = tokio::join!(patch(&a.base, &x), patch(&b.base, &y));
        for answer in [pa.unwrap().status(), pb.unwrap().status()] {
            assert!(
                matches!(answer.as_u16(), 202 | 416),
                "round {round}: PATCH {answer}"
            );
        }
        let claimed = if round % 2 == 0 { &x } else { &y };
        let digest = sha256(claimed);
        let via = if round % 3 == 0 { &a.base } else { &b.base };
        let put = http
            .put(format!("{via}{location}?digest={digest}"))
            .send()
            .await
            .unwrap();
        match put.status() {
            StatusCode::CREATED => {
                let got = http
                    .get(format!("{via}/v2/race/blobs/{digest}"))
                    .send()
                    .await
                    .unwrap();
                let body = got.bytes().await.unwrap();
                assert_eq!(sha256(&body), digest, "round {round}: wrong bytes served");
            }
            StatusCode::BAD_REQUEST => {
                assert_error(put, 400, "DIGEST_INVALID").await;
            }
            other => panic!("round {round}: PUT answered {other}"),
        };
    }
}
