//! Throughput smoke numbers: `cargo test -p wharf-store --release --test bench -- --ignored --nocapture`

use std::time::Instant;

use wharf_store::{MemStore, Op, RedbStore, Store, Txn};

const N: usize = 10_000;

async fn single_puts(store: &dyn Store) -> f64 {
    let value = vec![b'x'; 256];
    let start = Instant::now();
    for i in 0..N {
        store
            .txn(Txn::new().then(Op::put(format!("bench/single/{i:08}"), value.clone())))
            .await
            .unwrap();
    }
    start.elapsed().as_secs_f64()
}

async fn batched_puts(store: &dyn Store, batches: usize) -> f64 {
    let value = vec![b'x'; 256];
    let per = N / batches;
    let start = Instant::now();
    for b in 0..batches {
        let mut txn = Txn::new();
        for i in 0..per {
            txn = txn.then(Op::put(
                format!("bench/batch/{:08}", b * per + i),
                value.clone(),
            ));
        }
        store.txn(txn).await.unwrap();
    }
    start.elapsed().as_secs_f64()
}

fn report(name: &str, txns: usize, secs: f64) {
    println!(
        "{name:<28} {N} puts in {txns:>5} txns: {:>8.1} ms total, {:>9.1} us/txn, {:>10.0} puts/s",
        secs * 1e3,
        secs * 1e6 / txns as f64,
        N as f64 / secs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn txn_throughput() {
    let mem = MemStore::new();
    report("MemStore single-put txns", N, single_puts(&mem).await);
    report(
        "MemStore batched (100 txns)",
        100,
        batched_puts(&mem, 100).await,
    );

    let dir = tempfile::tempdir().unwrap();
    let redb = RedbStore::open(&dir.path().join("bench.redb")).unwrap();
    report("RedbStore single-put txns", N, single_puts(&redb).await);
    report(
        "RedbStore batched (100 txns)",
        100,
        batched_puts(&redb, 100).await,
    );
    assert_eq!(redb.current_revision().await.unwrap(), (N + 100) as i64);
}
