//! The conformance suite every [`Store`] backend must pass. Backends call [`run`] from their
//! tests; it panics with a message naming the broken rule.

use bytes::Bytes;
use futures_util::StreamExt;

use crate::{InputStream, Key, Part, Store};

fn key(s: &str) -> Key {
    Key::new(s).expect("test keys are valid")
}

fn input(parts: &[&'static [u8]]) -> InputStream {
    let items: Vec<std::io::Result<Bytes>> =
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(futures_util::stream::iter(items))
}

async fn read_all(store: &dyn Store, k: &Key, range: std::ops::Range<u64>) -> Vec<u8> {
    collect(store.read(k, range).await.expect("read")).await
}

/// Runs every check against an empty store.
pub async fn run(store: &dyn Store) {
    objects_round_trip(store).await;
    missing_objects_are_not_found(store).await;
    listings_are_sorted_and_paged(store).await;
    prefixes_delete_together(store).await;
    many_keys_delete_at_once(store).await;
    appends_resume_at_the_offset(store).await;
    promote_moves_staged_bytes(store).await;
    promote_takes_the_counted_bytes_and_refuses_missing_ones(store).await;
    promote_of_an_empty_upload_that_never_appended(store).await;
    racing_appends_commit_the_counted_part(store).await;
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

async fn many_keys_delete_at_once(store: &dyn Store) {
    let keys: Vec<Key> = (0..1500)
        .map(|i| key(&format!("many/{}/{i:04}", i % 7)))
        .collect();
    for k in &keys {
        store.put(k, Bytes::from_static(b"x")).await.expect("put");
    }
    store
        .put(&key("many/kept"), Bytes::new())
        .await
        .expect("put");
    let mut doomed = keys.clone();
    doomed.push(key("many/never/written"));
    store.delete_many(&doomed).await.expect("delete many");
    store.delete_many(&[]).await.expect("deleting nothing");
    assert_eq!(
        store.list(&key("many/"), None, 10_000).await.expect("list"),
        ["kept"]
    );
    assert!(store.get(&keys[0]).await.unwrap_err().is_not_found());
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

/// A staging object as its writer tracks it, the way the registry's upload sessions do: the
/// parts it counted and its length. An append that failed changes nothing here.
struct Tracked<'a> {
    store: &'a dyn Store,
    key: Key,
    parts: Vec<(u64, Part)>,
    length: u64,
}

impl<'a> Tracked<'a> {
    fn new(store: &'a dyn Store, k: &str) -> Self {
        Self {
            store,
            key: key(k),
            parts: Vec::new(),
            length: 0,
        }
    }

    /// Appends at `offset` (the tracked length, or an earlier part's end for a retry).
    async fn append(&mut self, offset: u64, input: InputStream) -> crate::Result<u64> {
        let appended = self.store.append(&self.key, offset, input).await?;
        self.parts.retain(|(end, _)| *end <= offset);
        if let Some(part) = appended.part {
            self.parts.push((appended.length, part));
        }
        self.length = appended.length;
        Ok(appended.length)
    }

    fn part_names(&self) -> Vec<Part> {
        self.parts.iter().map(|(_, part)| part.clone()).collect()
    }

    async fn read(&self, range: std::ops::Range<u64>) -> Vec<u8> {
        let names = self.part_names();
        let stream = self.store.read_staged(&self.key, &names, range).await;
        collect(stream.expect("read staged")).await
    }

    async fn promote(&self, length: u64, to: &Key) -> crate::Result<()> {
        self.store
            .promote(&self.key, &self.part_names(), length, to)
            .await
    }
}

async fn collect(mut stream: crate::ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("read chunk"));
    }
    out
}

async fn appends_resume_at_the_offset(store: &dyn Store) {
    let mut staged = Tracked::new(store, "stage/a/data");
    assert_eq!(staged.append(0, input(&[b"abc"])).await.expect("append"), 3);
    let two_chunks = input(&[b"de", b"f"]);
    assert_eq!(staged.append(3, two_chunks).await.expect("append"), 6);
    assert_eq!(staged.append(6, input(&[b"ghi"])).await.expect("append"), 9);
    assert_eq!(staged.read(0..9).await, b"abcdefghi");
    assert_eq!(staged.read(2..7).await, b"cdefg", "a range across appends");
    // A retry from an earlier append's end replaces what came after it.
    assert_eq!(staged.append(3, input(&[b"XYZ"])).await.expect("append"), 6);
    assert_eq!(staged.read(0..6).await, b"abcXYZ");
    let failing: InputStream = Box::pin(futures_util::stream::iter([
        Ok(Bytes::from_static(b"more")),
        Err(std::io::Error::other("client went away")),
    ]));
    assert!(matches!(
        staged.append(6, failing).await,
        Err(crate::Error::Input(_))
    ));
    let after = staged.append(6, input(&[b"!"])).await;
    assert_eq!(after.expect("append after failure"), 7);
    assert_eq!(staged.read(0..7).await, b"abcXYZ!");
    let mut empty = Tracked::new(store, "stage/empty/data");
    assert_eq!(empty.append(0, input(&[])).await.expect("empty"), 0);
}

async fn promote_takes_the_counted_bytes_and_refuses_missing_ones(store: &dyn Store) {
    let mut staged = Tracked::new(store, "stage/c/data");
    staged.append(0, input(&[b"cont"])).await.expect("append");
    // An append its caller never counted: its request was cut off after the bytes landed.
    let uncounted = store.append(&staged.key, 4, input(&[b"ent"])).await;
    uncounted.expect("append");
    let dest = key("final/sha/cd/content");
    assert!(staged.promote(8, &dest).await.is_err(), "8 bytes promoted");
    assert!(store.size(&dest).await.unwrap_err().is_not_found());
    assert_eq!(staged.read(0..4).await, b"cont", "still staged");
    staged.promote(4, &dest).await.expect("promote");
    assert_eq!(store.get(&dest).await.expect("get"), &b"cont"[..]);
}

async fn promote_moves_staged_bytes(store: &dyn Store) {
    let mut staged = Tracked::new(store, "stage/b/data");
    staged.append(0, input(&[b"con"])).await.expect("append");
    staged.append(3, input(&[b"tent"])).await.expect("append");
    let dest = key("final/sha/ab/content");
    staged.promote(7, &dest).await.expect("promote");
    assert_eq!(store.get(&dest).await.expect("get"), &b"content"[..]);
    let again = staged.promote(7, &key("final/sha/ab/again")).await;
    assert!(again.unwrap_err().is_not_found(), "staged object moved");
}

/// Regression: an upload finished without ever appending (an empty blob through a session)
/// failed with 500 on the filesystem and in memory.
async fn promote_of_an_empty_upload_that_never_appended(store: &dyn Store) {
    let staged = Tracked::new(store, "stage/never/data");
    let dest = key("final/sha/e3/empty");
    staged.promote(0, &dest).await.expect("promote empty");
    assert_eq!(store.get(&dest).await.expect("get"), &b""[..]);
    let mut appended_nothing = Tracked::new(store, "stage/nothing/data");
    appended_nothing
        .append(0, input(&[]))
        .await
        .expect("empty append");
    let dest = key("final/sha/e3/empty2");
    appended_nothing
        .promote(0, &dest)
        .await
        .expect("promote empty");
    assert_eq!(store.get(&dest).await.expect("get"), &b""[..]);
}

/// Two writers append at one offset (two replicas serving one session). Where a backend keeps
/// parts apart, each writer's own part is what gets committed: never the other's bytes.
async fn racing_appends_commit_the_counted_part(store: &dyn Store) {
    let mut x = Tracked::new(store, "stage/race/data");
    let mut y = Tracked::new(store, "stage/race/data");
    x.append(0, input(&[b"ours"])).await.expect("append x");
    y.append(0, input(&[b"them"])).await.expect("append y");
    if x.parts.is_empty() {
        return; // one file per staging object: its single writer takes turns under a lock
    }
    let dest = key("final/sha/ra/x");
    x.promote(4, &dest).await.expect("promote x");
    assert_eq!(store.get(&dest).await.expect("get"), &b"ours"[..]);
    let late = y.promote(4, &key("final/sha/ra/y")).await;
    assert!(
        late.unwrap_err().is_not_found(),
        "the loser's part outlived the commit"
    );
}
