//! RedbStore-specific behaviour: reopen, persisted leases, crash safety.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::next;
use wharf_store::{
    Compare, EventKind, KeyValue, Op, RangeRequest, RedbStore, Store, StoreError, Txn,
};

/// Opens the store in `dir`. A store just dropped may still be held for a
/// moment by its background work (a committer thread finishing after its
/// replies, the lease reaper mid-pass), which ends on its own: reopening
/// waits for it, as a restarted process never has to.
fn open(dir: &tempfile::TempDir) -> RedbStore {
    let path = dir.path().join("store.redb");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match RedbStore::open(&path) {
            Ok(s) => return s,
            Err(StoreError::Storage(m))
                if m.contains("already open") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("cannot open {}: {e}", path.display()),
        }
    }
}

async fn all(s: &RedbStore) -> Vec<KeyValue> {
    s.range(RangeRequest::default()).await.unwrap().kvs
}

#[tokio::test]
async fn reopen_keeps_data_and_revision() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let s = open(&dir);
        s.txn(Txn::new().then(Op::put("a", "1")).then(Op::put("b", "1")))
            .await
            .unwrap();
        s.txn(Txn::new().then(Op::put("a", "2"))).await.unwrap();
        s.txn(Txn::new().then(Op::put("c", vec![0u8, 255, 1])))
            .await
            .unwrap();
        s.txn(Txn::new().then(Op::delete("b"))).await.unwrap();
        s.txn(Txn::new().then(Op::put("big", vec![7u8; 100_000])))
            .await
            .unwrap();
        before = all(&s).await;
        assert_eq!(s.current_revision().await.unwrap(), 5);
    }
    let s = open(&dir);
    assert_eq!(s.current_revision().await.unwrap(), 5);
    assert_eq!(all(&s).await, before);
    let a = s.get("a").await.unwrap().unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 2, 2));
    assert_eq!(s.get("b").await.unwrap(), None);

    // History is not persisted: old revisions are compacted, new ones watchable.
    assert!(matches!(
        s.watch("", 3).await,
        Err(StoreError::Compacted(3))
    ));
    let mut w = s.watch("", 6).await.unwrap();
    let r = s
        .txn(
            Txn::new()
                .when(Compare::ModRevision("a".into(), 2))
                .then(Op::put("a", "3")),
        )
        .await
        .unwrap();
    assert!(r.succeeded);
    assert_eq!(r.revision, 6);
    let e = next(&mut w).await;
    assert_eq!((e.kv.mod_revision, e.kv.version), (6, 3));
    assert_eq!(e.prev.unwrap().version, 2);
}

#[tokio::test]
async fn revision_never_goes_backwards() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir);
        s.txn(Txn::new().then(Op::put("a", "1"))).await.unwrap();
        s.txn(Txn::new().then(Op::put("a", "2"))).await.unwrap();
        s.txn(Txn::new().then(Op::delete("a"))).await.unwrap();
    }
    {
        let s = open(&dir);
        assert_eq!(
            s.current_revision().await.unwrap(),
            3,
            "kept although no key is left"
        );
        assert!(all(&s).await.is_empty());
        assert_eq!(
            s.txn(Txn::new().then(Op::put("b", "x")))
                .await
                .unwrap()
                .revision,
            4
        );
        assert_eq!(
            s.txn(Txn::new().then(Op::delete("b")))
                .await
                .unwrap()
                .revision,
            5
        );
    }
    let s = open(&dir);
    assert_eq!(s.current_revision().await.unwrap(), 5);
    assert_eq!(
        s.txn(Txn::new().then(Op::put("a", "x")))
            .await
            .unwrap()
            .revision,
        6
    );
    let a = s.get("a").await.unwrap().unwrap();
    assert_eq!((a.create_revision, a.version), (6, 1));
}

#[tokio::test]
async fn leases_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (long, short);
    {
        let s = open(&dir);
        long = s.grant_lease(Duration::from_secs(60)).await.unwrap();
        short = s.grant_lease(Duration::from_millis(1500)).await.unwrap();
        s.txn(
            Txn::new()
                .then(Op::put_with_lease("long/1", "x", long))
                .then(Op::put_with_lease("long/2", "x", long))
                .then(Op::put_with_lease("short/1", "x", short)),
        )
        .await
        .unwrap();
    }
    let s = open(&dir);
    // The short lease's deadline restarted at open, so its key is still here.
    assert_eq!(s.get("short/1").await.unwrap().unwrap().lease, Some(short));
    s.keep_alive(long).await.unwrap();
    let fresh = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    assert!(fresh != long && fresh != short, "lease ids are not reused");

    let mut w = s.watch("", 0).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!(
        (e.kind, e.kv.key.as_str(), e.kv.mod_revision),
        (EventKind::Delete, "short/1", 2)
    );
    s.revoke_lease(long).await.unwrap();
    for key in ["long/1", "long/2"] {
        let e = next(&mut w).await;
        assert_eq!(
            (e.kind, e.kv.key.as_str(), e.kv.mod_revision),
            (EventKind::Delete, key, 3)
        );
    }
    drop(w);
    drop(s);
    // Expiry and revocation were durable too.
    let s = open(&dir);
    assert!(all(&s).await.is_empty());
    assert_eq!(s.current_revision().await.unwrap(), 3);
    assert!(matches!(
        s.keep_alive(long).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(matches!(
        s.keep_alive(short).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    s.keep_alive(fresh).await.unwrap();
}

/// Construction outside a runtime works; the store is usable from a runtime
/// created afterwards (and the lease reaper starts there).
#[test]
fn open_outside_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mem = wharf_store::MemStore::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for store in [&s as &dyn Store, &mem as &dyn Store] {
            let lease = store.grant_lease(Duration::from_millis(100)).await.unwrap();
            store
                .txn(Txn::new().then(Op::put_with_lease("k", "v", lease)))
                .await
                .unwrap();
            let mut w = store.watch("", 0).await.unwrap();
            assert_eq!(next(&mut w).await.kind, EventKind::Delete);
        }
    });
}

#[test]
fn not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage");
    std::fs::write(&path, vec![0x42u8; 10_000]).unwrap();
    assert!(matches!(
        RedbStore::open(&path),
        Err(StoreError::Storage(_))
    ));
}

/// The child half of `acknowledged_writes_survive_kill`: writes until killed,
/// printing each acknowledged revision.
#[tokio::test]
#[ignore = "run by acknowledged_writes_survive_kill"]
async fn crash_child() {
    let Ok(path) = std::env::var("WHARF_STORE_CRASH_PATH") else {
        return;
    };
    let s = RedbStore::open(std::path::Path::new(&path)).unwrap();
    for i in 0u64.. {
        let txn = Txn::new()
            .then(Op::put(format!("k/{i}"), i.to_string()))
            .then(Op::put("last", i.to_string()));
        let r = s.txn(txn).await.unwrap();
        println!("acked {i} {}", r.revision);
    }
}

#[test]
fn acknowledged_writes_survive_kill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WHARF_STORE_CRASH_PATH", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut last = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("acked ") else {
            continue;
        };
        let mut parts = rest.split(' ').map(|p| p.parse::<i64>().unwrap());
        let (i, rev) = (parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(rev, i + 1);
        last = Some(i);
        if i >= 200 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let last = last.expect("child acknowledged writes");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = RedbStore::open(&path).unwrap();
        let rev = s.current_revision().await.unwrap();
        assert!(
            rev > last,
            "acked revision {} lost (store at {rev})",
            last + 1
        );
        // Every acknowledged write is there, and the store is consistent.
        let kvs = s.range(RangeRequest::prefix("k/")).await.unwrap().kvs;
        assert_eq!(kvs.len() as i64, rev);
        for i in 0..=last {
            let kv = s.get(&format!("k/{i}")).await.unwrap().unwrap();
            assert_eq!(kv.mod_revision, i + 1);
        }
        let last_kv = s.get("last").await.unwrap().unwrap();
        assert_eq!(last_kv.mod_revision, rev);
        assert_eq!(last_kv.version, rev);
    });
}

/// Concurrent txns are committed in groups: each still sees the writes of
/// those grouped before it, so compare-and-swap stays exclusive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_commits_keep_compare_and_swap_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(open(&dir));
    let tries = (0..64).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            let create = s
                .txn(
                    Txn::new()
                        .when(Compare::ModRevision("once".into(), 0))
                        .then(Op::put("once", format!("{i}"))),
                )
                .await
                .unwrap();
            s.txn(Txn::new().then(Op::put(format!("k{i}"), "v")))
                .await
                .unwrap();
            create.succeeded
        })
    });
    let mut wins = 0;
    for t in tries.collect::<Vec<_>>() {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    assert_eq!(s.current_revision().await.unwrap(), 65);
    drop(s);
    let s = open(&dir);
    assert_eq!(all(&s).await.len(), 65);
    assert_eq!(s.current_revision().await.unwrap(), 65);
}
