//! The conformance suite every [`Store`] backend must pass. Backends call [`run`] from their
//! tests; it panics with a message naming the broken rule.

use bytes::Bytes;
use futures_util::StreamExt;

use crate::{InputStream, Key, Store};

fn key(s: &str) -> Key {
    Key::new(s).expect("test keys are valid")
}

fn input(parts: &[&'static [u8]]) -> InputStream {
    let items: Vec<std::io::Result<Bytes>> =
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(futures_util::stream::iter(items))
}

async fn read_all(store: &dyn Store, k: &Key, range: std::ops::Range<u64>) -> Vec<u8> {
    let mut stream = store.read(k, range).await.expect("read");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("read chunk"));
    }
    out
}

/// Runs every check against an empty store.
pub async fn run(store: &dyn Store) {
    objects_round_trip(store).await;
    missing_objects_are_not_found(store).await;
    listings_are_sorted_and_paged(store).await;
    prefixes_delete_together(store).await;
    appends_resume_at_the_offset(store).await;
    promote_moves_staged_bytes(store).await;
    promote_takes_the_counted_bytes_and_refuses_missing_ones(store).await;
}

async fn objects_round_trip(store: &dyn Store) {
    let k = key("rt/object");
    store
        .put(&k, Bytes::from_static(b"hello world"))
        .await
        .expect("put");
    assert_eq!(store.get(&k).await.expect("get"), &b"hello world"[..]);
    assert_eq!(store.size(&k).await.expect("size"), 11);
    assert_eq!(read_all(store, &k, 6..11).await, b"world", "ranged read");
    store
        .put(&k, Bytes::from_static(b"replaced"))
        .await
        .expect("overwrite");
    assert_eq!(
        store.get(&k).await.expect("get"),
        &b"replaced"[..],
        "put replaces"
    );
    store.delete(&k).await.expect("delete");
    store
        .delete(&k)
        .await
        .expect("deleting a missing object is fine");
    assert!(
        store.get(&k).await.unwrap_err().is_not_found(),
        "deleted object is gone"
    );
    store
        .put(&k, Bytes::from_static(b"content"))
        .await
        .expect("put");
    store.put(&k, Bytes::new()).await.expect("empty put");
    assert_eq!(
        store.size(&k).await.expect("size"),
        0,
        "an empty put replaces content"
    );
    let volatile = key("rt/volatile");
    store
        .put_volatile(&volatile, Bytes::from_static(b"state"))
        .await
        .expect("volatile put");
    assert_eq!(
        store.get(&volatile).await.expect("get"),
        &b"state"[..],
        "volatile puts read back"
    );
    store
        .put_volatile(&volatile, Bytes::from_static(b"newer"))
        .await
        .expect("volatile put");
    assert_eq!(
        store.get(&volatile).await.expect("get"),
        &b"newer"[..],
        "and replace"
    );
}

async fn missing_objects_are_not_found(store: &dyn Store) {
    let k = key("missing/object");
    assert!(store.get(&k).await.unwrap_err().is_not_found());
    assert!(store.size(&k).await.unwrap_err().is_not_found());
    assert!(
        store
            .read(&k, 0..1)
            .await
            .err()
            .expect("read of missing")
            .is_not_found()
    );
    let none = store
        .list(&key("missing/"), None, 10)
        .await
        .expect("list of empty prefix");
    assert!(none.is_empty());
}

async fn listings_are_sorted_and_paged(store: &dyn Store) {
    let prefix = key("list/");
    // Listed once before the writes, so a cached listing must follow them.
    assert!(
        store
            .list(&prefix, None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    for name in ["b", "a", "c/d", "a-b", "z", "c/a"] {
        store
            .put(&key(&format!("list/{name}")), Bytes::new())
            .await
            .expect("put");
    }
    store
        .put(&key("listx"), Bytes::new())
        .await
        .expect("put sibling");
    let all = store.list(&prefix, None, 100).await.expect("list");
    assert_eq!(
        all,
        ["a", "a-b", "b", "c/a", "c/d", "z"],
        "byte order, recursive, prefix only"
    );
    let page = store
        .list(&prefix, Some("a-b"), 2)
        .await
        .expect("list page");
    assert_eq!(
        page,
        ["b", "c/a"],
        "start_after is exclusive and limit holds"
    );
    store.delete(&key("list/b")).await.expect("delete");
    let after = store.list(&prefix, Some("a-b"), 2).await.expect("list");
    assert_eq!(after, ["c/a", "c/d"], "deleted keys leave the listing");
}

async fn prefixes_delete_together(store: &dyn Store) {
    for k in ["tree/a/1", "tree/a/2", "tree/b"] {
        store.put(&key(k), Bytes::new()).await.expect("put");
    }
    assert_eq!(
        store
            .list(&key("tree/"), None, 10)
            .await
            .expect("list")
            .len(),
        3
    );
    store
        .delete_prefix(&key("tree/a/"))
        .await
        .expect("delete prefix");
    store
        .delete_prefix(&key("tree/none/"))
        .await
        .expect("deleting a missing prefix is fine");
    assert_eq!(
        store.list(&key("tree/"), None, 10).await.expect("list"),
        ["b"]
    );
}

/// A staging object's bytes, read the way the registry reads one (`size`, then `read`).
async fn staged(store: &dyn Store, k: &Key) -> Vec<u8> {
    let size = store.size(k).await.expect("staged size");
    read_all(store, k, 0..size).await
}

async fn appends_resume_at_the_offset(store: &dyn Store) {
    let k = key("stage/a/data");
    assert_eq!(
        store.append(&k, 0, input(&[b"abc"])).await.expect("append"),
        3
    );
    assert_eq!(
        store
            .append(&k, 3, input(&[b"de", b"f"]))
            .await
            .expect("append"),
        6
    );
    assert_eq!(
        store.append(&k, 6, input(&[b"ghi"])).await.expect("append"),
        9
    );
    assert_eq!(staged(store, &k).await, b"abcdefghi");
    assert_eq!(
        read_all(store, &k, 2..7).await,
        b"cdefg",
        "a range across appends"
    );
    // A retry from an earlier append's end replaces what came after it.
    assert_eq!(
        store.append(&k, 3, input(&[b"XYZ"])).await.expect("append"),
        6
    );
    assert_eq!(staged(store, &k).await, b"abcXYZ");
    assert!(
        store.append(&k, 100, input(&[b"gap"])).await.is_err(),
        "a gap is refused"
    );
    let failing: InputStream = Box::pin(futures_util::stream::iter([
        Ok(Bytes::from_static(b"more")),
        Err(std::io::Error::other("client went away")),
    ]));
    assert!(matches!(
        store.append(&k, 6, failing).await,
        Err(crate::Error::Input(_))
    ));
    assert_eq!(
        store
            .append(&k, 6, input(&[b"!"]))
            .await
            .expect("append after failure"),
        7
    );
    assert_eq!(staged(store, &k).await, b"abcXYZ!");
    assert_eq!(
        store
            .append(&key("stage/empty"), 0, input(&[]))
            .await
            .expect("empty"),
        0
    );
}

async fn promote_takes_the_counted_bytes_and_refuses_missing_ones(store: &dyn Store) {
    let staged = key("stage/c/data");
    store
        .append(&staged, 0, input(&[b"cont"]))
        .await
        .expect("append");
    // An append whose caller never counted it: its request was cut off after the bytes landed.
    store
        .append(&staged, 4, input(&[b"ent"]))
        .await
        .expect("append");
    let dest = key("final/sha/cd/content");
    let refused = store.promote(&staged, 8, &dest).await.unwrap_err();
    assert!(refused.to_string().contains("7 bytes"), "{refused}");
    assert!(store.size(&dest).await.unwrap_err().is_not_found());
    assert_eq!(store.size(&staged).await.expect("still staged"), 7);
    store.promote(&staged, 4, &dest).await.expect("promote");
    assert_eq!(store.get(&dest).await.expect("get"), &b"cont"[..]);
}

async fn promote_moves_staged_bytes(store: &dyn Store) {
    let staged = key("stage/b/data");
    store
        .append(&staged, 0, input(&[b"con"]))
        .await
        .expect("append");
    store
        .append(&staged, 3, input(&[b"tent"]))
        .await
        .expect("append");
    let dest = key("final/sha/ab/content");
    store.promote(&staged, 7, &dest).await.expect("promote");
    assert_eq!(store.get(&dest).await.expect("get"), &b"content"[..]);
    assert!(
        store.size(&staged).await.unwrap_err().is_not_found(),
        "staged object moved"
    );
}
