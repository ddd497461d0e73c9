//! Random transaction sequences against a trivially correct model.

use std::collections::BTreeMap;

use proptest::prelude::*;
use wharf_store::{
    Compare, EventKind, KeyValue, MemStore, Op, RangeRequest, RedbStore, Revision, Store, Txn,
};

const KEYS: &[&str] = &["a", "a/1", "a/2", "ab", "b", "b/1"];

#[derive(Debug, Clone)]
enum GenCmp {
    /// ModRevision against 0, the real mod revision, or a stale one.
    ModRev(usize, u8),
    Exists(usize),
    NotExists(usize),
}

#[derive(Debug, Clone)]
enum GenOp {
    Put(usize, u8),
    Del(usize),
}

#[derive(Debug, Clone)]
struct GenTxn {
    compares: Vec<GenCmp>,
    success: Vec<GenOp>,
    failure: Vec<GenOp>,
}

fn key() -> impl Strategy<Value = usize> {
    0..KEYS.len()
}

fn gen_op() -> impl Strategy<Value = GenOp> {
    prop_oneof![
        3 => (key(), any::<u8>()).prop_map(|(k, v)| GenOp::Put(k, v)),
        1 => key().prop_map(GenOp::Del),
    ]
}

fn gen_txn() -> impl Strategy<Value = GenTxn> {
    let cmp = prop_oneof![
        (key(), 0u8..3).prop_map(|(k, c)| GenCmp::ModRev(k, c)),
        key().prop_map(GenCmp::Exists),
        key().prop_map(GenCmp::NotExists),
    ];
    (
        prop::collection::vec(cmp, 0..3),
        prop::collection::vec(gen_op(), 0..5),
        prop::collection::vec(gen_op(), 0..3),
    )
        .prop_map(|(compares, success, failure)| GenTxn {
            compares,
            success,
            failure,
        })
}

#[derive(Default)]
struct Model {
    kvs: BTreeMap<String, KeyValue>,
    rev: Revision,
}

impl Model {
    /// Turns a generated txn into a real one (ModRevision compares need the
    /// current state).
    fn build(&self, g: &GenTxn) -> Txn {
        let op = |o: &GenOp| match *o {
            GenOp::Put(k, v) => Op::put(KEYS[k], vec![v]),
            GenOp::Del(k) => Op::delete(KEYS[k]),
        };
        Txn {
            compares: g
                .compares
                .iter()
                .map(|c| match *c {
                    GenCmp::ModRev(k, c) => {
                        let cur = self.kvs.get(KEYS[k]).map_or(0, |kv| kv.mod_revision);
                        let rev = match c {
                            0 => 0,
                            1 => cur,
                            _ => (cur - 1).max(1),
                        };
                        Compare::ModRevision(KEYS[k].to_string(), rev)
                    }
                    GenCmp::Exists(k) => Compare::Exists(KEYS[k].to_string()),
                    GenCmp::NotExists(k) => Compare::NotExists(KEYS[k].to_string()),
                })
                .collect(),
            success: g.success.iter().map(op).collect(),
            failure: g.failure.iter().map(op).collect(),
        }
    }

    fn apply(&mut self, txn: &Txn) -> (bool, Revision) {
        let ok = txn.compares.iter().all(|c| match c {
            Compare::ModRevision(k, 0) => !self.kvs.contains_key(k),
            Compare::ModRevision(k, r) => self.kvs.get(k).is_some_and(|kv| kv.mod_revision == *r),
            Compare::Exists(k) => self.kvs.contains_key(k),
            Compare::NotExists(k) => !self.kvs.contains_key(k),
        });
        let ops = if ok { &txn.success } else { &txn.failure };
        let rev = self.rev + 1;
        let mut wrote = false;
        for op in ops {
            match op {
                Op::Put { key, value, .. } => {
                    let prev = self.kvs.get(key);
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.map_or(1, |p| p.version + 1),
                        lease: None,
                    };
                    self.kvs.insert(key.clone(), kv);
                    wrote = true;
                }
                Op::Delete { key } => wrote |= self.kvs.remove(key).is_some(),
            }
        }
        if wrote {
            self.rev = rev;
        }
        (ok, self.rev)
    }
}

async fn check(store: &dyn Store, txns: &[GenTxn]) -> Result<Model, TestCaseError> {
    let mut model = Model::default();
    let mut watch_a = store.watch("a", 0).await.unwrap();
    let mut last_rev = 0;
    for g in txns {
        let txn = model.build(g);
        let expected = model.apply(&txn);
        let got = store.txn(txn).await.unwrap();
        prop_assert_eq!((got.succeeded, got.revision), expected);
        prop_assert!(got.revision >= last_rev);
        last_rev = got.revision;
        let all = store.range(RangeRequest::default()).await.unwrap();
        prop_assert_eq!(all.revision, model.rev);
        prop_assert_eq!(&all.kvs, &model.kvs.values().cloned().collect::<Vec<_>>());
    }
    prop_assert_eq!(store.current_revision().await.unwrap(), model.rev);

    // Replaying the full history rebuilds the final state, and the live
    // watcher saw exactly the events under its prefix.
    let mut replay = store.watch("", 1).await.unwrap();
    let mut rebuilt: BTreeMap<String, KeyValue> = BTreeMap::new();
    let mut prev_rev = 0;
    let mut under_a = Vec::new();
    while let Ok(ev) = replay.try_recv() {
        prop_assert!(ev.kv.mod_revision >= prev_rev, "events out of order");
        prop_assert!(ev.kv.mod_revision <= prev_rev + 1, "gap in revisions");
        prev_rev = ev.kv.mod_revision;
        // prev is the key before the event, without its value.
        let before = rebuilt.get(&ev.kv.key).map(|kv| KeyValue {
            value: vec![],
            ..kv.clone()
        });
        prop_assert_eq!(ev.prev.as_ref(), before.as_ref());
        if ev.kv.key.starts_with('a') {
            under_a.push((ev.kind, ev.kv.key.clone(), ev.kv.mod_revision));
        }
        match ev.kind {
            EventKind::Put => rebuilt.insert(ev.kv.key.clone(), ev.kv.clone()),
            EventKind::Delete => rebuilt.remove(&ev.kv.key),
        };
    }
    prop_assert_eq!(prev_rev, model.rev);
    prop_assert_eq!(&rebuilt, &model.kvs);
    for expected in under_a {
        let ev = watch_a.try_recv().unwrap();
        prop_assert_eq!((ev.kind, ev.kv.key, ev.kv.mod_revision), expected);
    }
    prop_assert!(watch_a.try_recv().is_err());
    Ok(model)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn mem_store_matches_model(txns in prop::collection::vec(gen_txn(), 1..40)) {
        runtime().block_on(async {
            check(&MemStore::new(), &txns).await?;
            Ok::<(), TestCaseError>(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn redb_store_matches_model_and_reopens(txns in prop::collection::vec(gen_txn(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        runtime().block_on(async {
            let model = {
                let store = RedbStore::open(&path).unwrap();
                check(&store, &txns).await?
            };
            let store = RedbStore::open(&path).unwrap();
            prop_assert_eq!(store.current_revision().await.unwrap(), model.rev);
            let all = store.range(RangeRequest::default()).await.unwrap().kvs;
            prop_assert_eq!(all, model.kvs.values().cloned().collect::<Vec<_>>());
            Ok::<(), TestCaseError>(())
        })?;
    }
}
