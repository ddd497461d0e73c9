//! The same behavioural suite against both backends.

mod common;

use std::time::Duration;

use common::{next, quiet, Factory};
use wharf_store::{Compare, EventKind, Op, Options, RangeRequest, StoreError, Txn};

/// Generates one `#[tokio::test]` per (backend, test fn).
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod mem {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::mem).await
                }
            )*
        }
        mod redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::redb).await
                }
            )*
        }
    };
}

suite!(
    put_get_versions,
    cas_create_only,
    cas_mod_revision,
    failure_branch,
    multi_op_txn_single_revision,
    same_key_twice_in_txn,
    empty_writes_do_not_bump,
    range_prefix_paging,
    scan_visits_every_key_in_pages,
    delete,
    watch_from_zero_only_new,
    watch_replay_then_live,
    watch_future_revision,
    watch_prefix_filter,
    watch_compacted,
    watch_dropped_receiver_is_removed,
    lagging_watcher_is_closed_on_revision_boundary,
    lease_expiry,
    lease_keep_alive,
    lease_revoke,
    lease_unknown,
    lease_reassign,
    concurrent_cas_increments,
);

fn put(k: &str, v: &str) -> Txn {
    Txn::new().then(Op::put(k, v))
}

async fn put_get_versions(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    assert_eq!(s.current_revision().await.unwrap(), 0);
    assert_eq!(s.get("a").await.unwrap(), None);

    let r1 = s.txn(put("a", "1")).await.unwrap();
    assert!(r1.succeeded);
    assert_eq!(r1.revision, 1);
    let kv = s.get("a").await.unwrap().unwrap();
    assert_eq!(kv.key, "a");
    assert_eq!(kv.value, b"1");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version, kv.lease),
        (1, 1, 1, None)
    );

    assert_eq!(s.txn(put("b", "x")).await.unwrap().revision, 2);
    assert_eq!(s.txn(put("a", "2")).await.unwrap().revision, 3);
    let kv = s.get("a").await.unwrap().unwrap();
    assert_eq!(kv.value, b"2");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 3, 2));
    assert_eq!(s.current_revision().await.unwrap(), 3);

    // Recreating after a delete restarts create_revision and version.
    s.txn(Txn::new().then(Op::delete("a"))).await.unwrap();
    s.txn(put("a", "3")).await.unwrap();
    let kv = s.get("a").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
}

async fn cas_create_only(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    for cmp in [
        Compare::ModRevision("k".into(), 0),
        Compare::NotExists("k".into()),
    ] {
        let key = "k";
        s.txn(Txn::new().then(Op::delete(key))).await.unwrap();
        let first = s
            .txn(Txn::new().when(cmp.clone()).then(Op::put(key, "first")))
            .await
            .unwrap();
        assert!(first.succeeded);
        let rev = s.current_revision().await.unwrap();
        let second = s
            .txn(Txn::new().when(cmp).then(Op::put(key, "second")))
            .await
            .unwrap();
        assert!(!second.succeeded);
        assert_eq!(
            second.revision, rev,
            "failed txn must not bump the revision"
        );
        assert_eq!(s.get(key).await.unwrap().unwrap().value, b"first");
        assert_eq!(s.current_revision().await.unwrap(), rev);
    }
}

async fn cas_mod_revision(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    s.txn(put("k", "v1")).await.unwrap();
    let kv = s.get("k").await.unwrap().unwrap();

    let ok = s
        .txn(
            Txn::new()
                .when(Compare::ModRevision("k".into(), kv.mod_revision))
                .then(Op::put("k", "v2")),
        )
        .await
        .unwrap();
    assert!(ok.succeeded);
    assert_eq!(ok.revision, 2);

    // The same (now stale) revision is rejected and nothing is written.
    let stale = s
        .txn(
            Txn::new()
                .when(Compare::ModRevision("k".into(), kv.mod_revision))
                .then(Op::put("k", "v3"))
                .then(Op::put("other", "x")),
        )
        .await
        .unwrap();
    assert!(!stale.succeeded);
    assert_eq!(stale.revision, 2);
    assert_eq!(s.get("k").await.unwrap().unwrap().value, b"v2");
    assert_eq!(s.get("other").await.unwrap(), None);

    // ModRevision on a missing key with a non-zero revision fails.
    assert!(
        !s.txn(
            Txn::new()
                .when(Compare::ModRevision("nope".into(), 2))
                .then(Op::put("nope", "x"))
        )
        .await
        .unwrap()
        .succeeded
    );
    // Exists / NotExists.
    assert!(
        s.txn(Txn::new().when(Compare::Exists("k".into())))
            .await
            .unwrap()
            .succeeded
    );
    assert!(
        !s.txn(Txn::new().when(Compare::Exists("nope".into())))
            .await
            .unwrap()
            .succeeded
    );
    assert!(
        !s.txn(Txn::new().when(Compare::NotExists("k".into())))
            .await
            .unwrap()
            .succeeded
    );
    // All compares must hold.
    let mixed = Txn::new()
        .when(Compare::Exists("k".into()))
        .when(Compare::Exists("nope".into()))
        .then(Op::put("x", "y"));
    assert!(!s.txn(mixed).await.unwrap().succeeded);
    assert_eq!(s.get("x").await.unwrap(), None);
    assert_eq!(s.current_revision().await.unwrap(), 2);
}

async fn failure_branch(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    let txn = Txn::new()
        .when(Compare::Exists("flag".into()))
        .then(Op::put("result", "success"))
        .otherwise(Op::put("result", "failure"))
        .otherwise(Op::put("flag", "1"));
    let r = s.txn(txn.clone()).await.unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.revision, 1);
    assert_eq!(s.get("result").await.unwrap().unwrap().value, b"failure");
    let r = s.txn(txn).await.unwrap();
    assert!(r.succeeded);
    assert_eq!(r.revision, 2);
    assert_eq!(s.get("result").await.unwrap().unwrap().value, b"success");
}

async fn multi_op_txn_single_revision(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    s.txn(put("gone", "x")).await.unwrap();
    let mut w = s.watch("", 0).await.unwrap();
    let txn = Txn::new()
        .when(Compare::NotExists("a".into()))
        .then(Op::put("a", "1"))
        .then(Op::put("b", "2"))
        .then(Op::put("c", "3"))
        .then(Op::delete("gone"));
    let r = s.txn(txn).await.unwrap();
    assert!(r.succeeded);
    assert_eq!(r.revision, 2);
    for k in ["a", "b", "c"] {
        let kv = s.get(k).await.unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision), (2, 2));
    }
    assert_eq!(s.get("gone").await.unwrap(), None);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let ev = next(&mut w).await;
        assert_eq!(ev.kv.mod_revision, 2);
        seen.push((ev.kind, ev.kv.key));
    }
    assert_eq!(
        seen,
        vec![
            (EventKind::Put, "a".to_string()),
            (EventKind::Put, "b".to_string()),
            (EventKind::Put, "c".to_string()),
            (EventKind::Delete, "gone".to_string()),
        ]
    );
    quiet(&mut w).await;
}

async fn same_key_twice_in_txn(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    let r = s
        .txn(Txn::new().then(Op::put("k", "1")).then(Op::put("k", "2")))
        .await
        .unwrap();
    assert_eq!(r.revision, 1);
    let kv = s.get("k").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.version, kv.create_revision),
        (&b"2"[..], 2, 1)
    );
    // Put then delete in one txn: the key is gone, revision bumped once.
    let r = s
        .txn(Txn::new().then(Op::put("j", "1")).then(Op::delete("j")))
        .await
        .unwrap();
    assert_eq!(r.revision, 2);
    assert_eq!(s.get("j").await.unwrap(), None);
    // Delete then put: a fresh key.
    let r = s
        .txn(Txn::new().then(Op::delete("k")).then(Op::put("k", "3")))
        .await
        .unwrap();
    assert_eq!(r.revision, 3);
    let kv = s.get("k").await.unwrap().unwrap();
    assert_eq!((kv.version, kv.create_revision, kv.mod_revision), (1, 3, 3));
}

async fn empty_writes_do_not_bump(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    let mut w = s.watch("", 0).await.unwrap();
    assert_eq!(s.txn(Txn::new()).await.unwrap().revision, 0);
    assert_eq!(
        s.txn(Txn::new().then(Op::delete("absent")))
            .await
            .unwrap()
            .revision,
        0
    );
    s.txn(put("a", "1")).await.unwrap();
    let r = s
        .txn(
            Txn::new()
                .when(Compare::NotExists("a".into()))
                .then(Op::put("b", "1")),
        )
        .await
        .unwrap();
    assert_eq!((r.succeeded, r.revision), (false, 1));
    assert_eq!(s.current_revision().await.unwrap(), 1);
    assert_eq!(next(&mut w).await.kv.key, "a");
    quiet(&mut w).await;
}

async fn range_prefix_paging(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    let mut txn = Txn::new();
    for k in ["a", "app/1", "app/2", "app/3", "app/10", "apq", "b/1", "ap"] {
        txn = txn.then(Op::put(k, k));
    }
    s.txn(txn).await.unwrap();
    let keys =
        |r: &wharf_store::RangeResponse| r.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();

    let all = s.range(RangeRequest::prefix("app/")).await.unwrap();
    assert_eq!(keys(&all), ["app/1", "app/10", "app/2", "app/3"]);
    assert!(!all.more);
    assert_eq!(all.revision, 1);
    assert_eq!(all.kvs[0].value, b"app/1");

    let everything = s.range(RangeRequest::default()).await.unwrap();
    assert_eq!(everything.kvs.len(), 8);
    assert!(everything.kvs.windows(2).all(|w| w[0].key < w[1].key));

    // Paging with limit + start_after.
    let page = |after: Option<&str>| RangeRequest {
        prefix: "app/".into(),
        start_after: after.map(str::to_string),
        limit: Some(2),
    };
    let p1 = s.range(page(None)).await.unwrap();
    assert_eq!(keys(&p1), ["app/1", "app/10"]);
    assert!(p1.more);
    let p2 = s.range(page(Some("app/10"))).await.unwrap();
    assert_eq!(keys(&p2), ["app/2", "app/3"]);
    assert!(!p2.more, "exactly `limit` left means no more");
    let p3 = s.range(page(Some("app/3"))).await.unwrap();
    assert!(p3.kvs.is_empty() && !p3.more);

    // start_after before the prefix, between keys, and past it.
    let r = s
        .range(RangeRequest {
            prefix: "app/".into(),
            start_after: Some("a".into()),
            limit: None,
        })
        .await
        .unwrap();
    assert_eq!(keys(&r).len(), 4);
    let r = s
        .range(RangeRequest {
            prefix: "app/".into(),
            start_after: Some("app/15".into()),
            limit: None,
        })
        .await
        .unwrap();
    assert_eq!(keys(&r), ["app/2", "app/3"]);
    let r = s
        .range(RangeRequest {
            prefix: "app/".into(),
            start_after: Some("b".into()),
            limit: None,
        })
        .await
        .unwrap();
    assert!(r.kvs.is_empty());
    // limit 0 = unlimited.
    let r = s
        .range(RangeRequest {
            prefix: "ap".into(),
            start_after: None,
            limit: Some(0),
        })
        .await
        .unwrap();
    assert_eq!(keys(&r), ["ap", "app/1", "app/10", "app/2", "app/3", "apq"]);
    assert!(s
        .range(RangeRequest::prefix("zzz"))
        .await
        .unwrap()
        .kvs
        .is_empty());
}

async fn scan_visits_every_key_in_pages(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    let mut txn = Txn::new();
    for i in 0..25 {
        txn = txn.then(Op::put(format!("p/{i:02}"), format!("{i}")));
    }
    s.txn(txn.then(Op::put("q", "other"))).await.unwrap();
    s.txn(put("p/99", "99")).await.unwrap();
    let mut seen = vec![];
    let rev = wharf_store::scan(s.as_ref(), "p/", 10, |kv| seen.push(kv.key))
        .await
        .unwrap();
    let want: Vec<String> = (0..25)
        .map(|i| format!("p/{i:02}"))
        .chain(["p/99".to_string()])
        .collect();
    assert_eq!(seen, want, "every key under the prefix, once, in order");
    assert_eq!(rev, 2);
}

async fn delete(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    s.txn(put("a", "1")).await.unwrap();
    s.txn(put("b", "2")).await.unwrap();
    let r = s.txn(Txn::new().then(Op::delete("a"))).await.unwrap();
    assert_eq!(r.revision, 3);
    assert_eq!(s.get("a").await.unwrap(), None);
    assert!(s.get("b").await.unwrap().is_some());
    let all = s.range(RangeRequest::default()).await.unwrap();
    assert_eq!(all.kvs.len(), 1);
    assert_eq!(all.revision, 3);
    // Deleting again is a no-op.
    assert_eq!(
        s.txn(Txn::new().then(Op::delete("a")))
            .await
            .unwrap()
            .revision,
        3
    );
}

async fn watch_from_zero_only_new(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    s.txn(put("old", "1")).await.unwrap();
    let mut w0 = s.watch("", 0).await.unwrap();
    let mut w_next = s.watch("", 2).await.unwrap(); // current + 1
    quiet(&mut w0).await;
    s.txn(put("new", "1")).await.unwrap();
    s.txn(put("new", "2")).await.unwrap();
    s.txn(Txn::new().then(Op::delete("old"))).await.unwrap();
    for w in [&mut w0, &mut w_next] {
        let e = next(w).await;
        assert_eq!(
            (e.kind, e.kv.key.as_str(), e.kv.mod_revision),
            (EventKind::Put, "new", 2)
        );
        assert!(e.prev.is_none());
        let e = next(w).await;
        assert_eq!(
            (e.kind, e.kv.mod_revision, e.kv.version),
            (EventKind::Put, 3, 2)
        );
        assert_eq!(e.kv.value, b"2");
        let prev = e.prev.unwrap();
        assert_eq!((prev.mod_revision, prev.version), (2, 1));
        assert!(prev.value.is_empty(), "prev carries no value");
        let e = next(w).await;
        assert_eq!(
            (e.kind, e.kv.key.as_str(), e.kv.mod_revision),
            (EventKind::Delete, "old", 4)
        );
        assert!(e.kv.value.is_empty());
        assert_eq!(e.prev.unwrap().mod_revision, 1);
        quiet(w).await;
    }
}

async fn watch_replay_then_live(mk: Factory) {
    let h = mk(Options::default());
    let s = h.store.clone();
    for i in 0..20 {
        s.txn(put(&format!("k{}", i % 5), &i.to_string()))
            .await
            .unwrap();
    }
    // Writer keeps going while we subscribe from the past.
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 20..120 {
                s.txn(put(&format!("k{}", i % 5), &i.to_string()))
                    .await
                    .unwrap();
            }
        })
    };
    let mut w = s.watch("", 5).await.unwrap();
    for expected in 5..=120 {
        let e = next(&mut w).await;
        assert_eq!(e.kv.mod_revision, expected, "gap or duplicate");
        assert_eq!(e.kv.value, (expected - 1).to_string().as_bytes());
    }
    writer.await.unwrap();
    quiet(&mut w).await;
}

async fn watch_future_revision(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    let mut w = s.watch("", 3).await.unwrap();
    for i in 1..=4 {
        s.txn(put("k", &i.to_string())).await.unwrap();
    }
    assert_eq!(next(&mut w).await.kv.mod_revision, 3);
    assert_eq!(next(&mut w).await.kv.mod_revision, 4);
    quiet(&mut w).await;
}

async fn watch_prefix_filter(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    s.txn(put("app/0", "x")).await.unwrap();
    let mut live = s.watch("app/", 0).await.unwrap();
    let mut replay = s.watch("app/", 1).await.unwrap();
    s.txn(
        Txn::new()
            .then(Op::put("apple", "x"))
            .then(Op::put("app/1", "x"))
            .then(Op::put("b", "x")),
    )
    .await
    .unwrap();
    s.txn(put("other", "x")).await.unwrap();
    s.txn(Txn::new().then(Op::delete("app/0"))).await.unwrap();
    let e = next(&mut replay).await;
    assert_eq!((e.kv.key.as_str(), e.kv.mod_revision), ("app/0", 1));
    for w in [&mut live, &mut replay] {
        let e = next(w).await;
        assert_eq!(
            (e.kind, e.kv.key.as_str(), e.kv.mod_revision),
            (EventKind::Put, "app/1", 2)
        );
        let e = next(w).await;
        assert_eq!(
            (e.kind, e.kv.key.as_str(), e.kv.mod_revision),
            (EventKind::Delete, "app/0", 4)
        );
        quiet(w).await;
    }
}

async fn watch_compacted(mk: Factory) {
    let h = mk(Options {
        history_limit: 10,
        ..Options::default()
    });
    let s = &h.store;
    for i in 0..30 {
        s.txn(put("k", &i.to_string())).await.unwrap();
    }
    match s.watch("", 5).await {
        Err(StoreError::Compacted(5)) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(s.watch("", 20).await.is_err());
    // The last 10 revisions are still there.
    let mut w = s.watch("", 21).await.unwrap();
    for rev in 21..=30 {
        assert_eq!(next(&mut w).await.kv.mod_revision, rev);
    }
    quiet(&mut w).await;
    // A txn bigger than the history makes its own revision unreplayable.
    let mut big = Txn::new();
    for i in 0..15 {
        big = big.then(Op::put(format!("big/{i}"), "x"));
    }
    assert_eq!(s.txn(big).await.unwrap().revision, 31);
    assert!(matches!(
        s.watch("", 31).await,
        Err(StoreError::Compacted(31))
    ));
    assert!(s.watch("", 32).await.is_ok());
}

async fn watch_dropped_receiver_is_removed(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    let w = s.watch("", 0).await.unwrap();
    drop(w);
    // Writes keep working with a dead watcher around.
    for i in 0..3 {
        s.txn(put("k", &i.to_string())).await.unwrap();
    }
    assert_eq!(s.current_revision().await.unwrap(), 3);
}

async fn lagging_watcher_is_closed_on_revision_boundary(mk: Factory) {
    let h = mk(Options {
        watch_buffer: 5,
        ..Options::default()
    });
    let s = &h.store;
    let mut w = s.watch("", 0).await.unwrap();
    // Revisions of 2 events each: 2 revisions fit in 5 slots, the third does not.
    for i in 0..6 {
        let txn = Txn::new()
            .then(Op::put(format!("a{i}"), "x"))
            .then(Op::put(format!("b{i}"), "x"));
        s.txn(txn).await.unwrap();
    }
    let mut got = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), w.recv())
        .await
        .unwrap()
    {
        got.push(ev.kv.mod_revision);
    }
    assert_eq!(got, vec![1, 1, 2, 2], "closed after whole revisions");
    // The consumer re-watches from its last revision + 1 without losing anything.
    let mut w = s.watch("", 3).await.unwrap();
    for rev in 3..=6 {
        assert_eq!(next(&mut w).await.kv.mod_revision, rev);
        assert_eq!(next(&mut w).await.kv.mod_revision, rev);
    }
}

async fn lease_expiry(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    let lease = s.grant_lease(Duration::from_millis(300)).await.unwrap();
    let other = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    assert_ne!(lease, other);
    let mut w = s.watch("", 0).await.unwrap();
    s.txn(
        Txn::new()
            .then(Op::put_with_lease("session/a", "x", lease))
            .then(Op::put_with_lease("session/b", "y", lease))
            .then(Op::put_with_lease("session/c", "z", other))
            .then(Op::put("plain", "p")),
    )
    .await
    .unwrap();
    for _ in 0..4 {
        assert_eq!(next(&mut w).await.kind, EventKind::Put);
    }
    let e1 = next(&mut w).await;
    let e2 = next(&mut w).await;
    assert_eq!((e1.kind, e2.kind), (EventKind::Delete, EventKind::Delete));
    assert_eq!(
        (e1.kv.key.as_str(), e2.kv.key.as_str()),
        ("session/a", "session/b")
    );
    assert_eq!(e1.kv.mod_revision, 2);
    assert_eq!(e2.kv.mod_revision, 2, "one revision for the whole lease");
    assert_eq!(e1.prev.unwrap().mod_revision, 1);
    assert_eq!(s.get("session/a").await.unwrap(), None);
    assert!(s.get("session/c").await.unwrap().is_some());
    assert!(s.get("plain").await.unwrap().is_some());
    assert_eq!(s.current_revision().await.unwrap(), 2);
    assert!(matches!(s.keep_alive(lease).await, Err(StoreError::LeaseNotFound(id)) if id == lease));
    assert!(matches!(
        s.txn(Txn::new().then(Op::put_with_lease("again", "x", lease)))
            .await,
        Err(StoreError::LeaseNotFound(_))
    ));
    quiet(&mut w).await;
}

async fn lease_keep_alive(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    let lease = s.grant_lease(Duration::from_millis(400)).await.unwrap();
    s.txn(Txn::new().then(Op::put_with_lease("k", "v", lease)))
        .await
        .unwrap();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.keep_alive(lease).await.unwrap();
    }
    assert!(
        s.get("k").await.unwrap().is_some(),
        "kept alive for 1.2s > ttl"
    );
    let mut w = s.watch("", 0).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!((e.kind, e.kv.key.as_str()), (EventKind::Delete, "k"));
    assert_eq!(s.get("k").await.unwrap(), None);
}

async fn lease_revoke(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    let lease = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        s.current_revision().await.unwrap(),
        0,
        "granting does not write keys"
    );
    let mut txn = Txn::new();
    for i in 0..5 {
        txn = txn.then(Op::put_with_lease(format!("l/{i}"), "x", lease));
    }
    s.txn(txn).await.unwrap();
    let mut w = s.watch("", 0).await.unwrap();
    s.revoke_lease(lease).await.unwrap();
    for i in 0..5 {
        let e = next(&mut w).await;
        assert_eq!(
            (e.kind, e.kv.key.clone(), e.kv.mod_revision),
            (EventKind::Delete, format!("l/{i}"), 2)
        );
    }
    quiet(&mut w).await;
    assert!(s
        .range(RangeRequest::prefix("l/"))
        .await
        .unwrap()
        .kvs
        .is_empty());
    assert!(matches!(
        s.revoke_lease(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    // Revoking a lease without keys writes nothing.
    let empty = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    s.revoke_lease(empty).await.unwrap();
    assert_eq!(s.current_revision().await.unwrap(), 2);
}

async fn lease_unknown(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    let txn = Txn::new()
        .then(Op::put("a", "1"))
        .then(Op::put_with_lease("b", "1", 12345));
    assert!(matches!(
        s.txn(txn).await,
        Err(StoreError::LeaseNotFound(12345))
    ));
    assert_eq!(s.get("a").await.unwrap(), None, "nothing written");
    assert_eq!(s.current_revision().await.unwrap(), 0);
    assert!(matches!(
        s.keep_alive(12345).await,
        Err(StoreError::LeaseNotFound(12345))
    ));
    // An unknown lease in the branch that is not taken is fine.
    let txn = Txn::new()
        .when(Compare::Exists("nope".into()))
        .then(Op::put_with_lease("b", "1", 12345))
        .otherwise(Op::put("c", "1"));
    assert!(!s.txn(txn).await.unwrap().succeeded);
    assert!(s.get("c").await.unwrap().is_some());
}

async fn lease_reassign(mk: Factory) {
    let h = mk(Options::default());
    let s = &h.store;
    let l1 = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    let l2 = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    s.txn(
        Txn::new()
            .then(Op::put_with_lease("a", "1", l1))
            .then(Op::put_with_lease("b", "1", l1)),
    )
    .await
    .unwrap();
    // Move "a" to l2, detach "b" from any lease.
    s.txn(
        Txn::new()
            .then(Op::put_with_lease("a", "2", l2))
            .then(Op::put("b", "2")),
    )
    .await
    .unwrap();
    s.revoke_lease(l1).await.unwrap();
    assert!(s.get("a").await.unwrap().is_some());
    assert_eq!(s.get("b").await.unwrap().unwrap().lease, None);
    assert_eq!(
        s.current_revision().await.unwrap(),
        2,
        "l1 had no keys left"
    );
    s.revoke_lease(l2).await.unwrap();
    assert_eq!(s.get("a").await.unwrap(), None);
    assert!(s.get("b").await.unwrap().is_some());
}

async fn concurrent_cas_increments(mk: Factory) {
    let h = mk(Options::default());
    let s = h.store.clone();
    s.txn(put("counter", "0")).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                loop {
                    let kv = s.get("counter").await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    let txn = Txn::new()
                        .when(Compare::ModRevision("counter".into(), kv.mod_revision))
                        .then(Op::put("counter", (n + 1).to_string()));
                    if s.txn(txn).await.unwrap().succeeded {
                        break;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let kv = s.get("counter").await.unwrap().unwrap();
    assert_eq!(kv.value, b"40");
    assert_eq!((kv.version, kv.mod_revision), (41, 41));
}
