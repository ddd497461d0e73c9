#![allow(dead_code)]

use std::time::Duration;

use tempfile::TempDir;
use tokio::sync::mpsc::Receiver;
use wharf_store::{DynStore, MemStore, Options, RedbStore, WatchEvent};

/// A store plus whatever must outlive it.
pub struct Harness {
    pub store: DynStore,
    pub dir: Option<TempDir>,
}

pub type Factory = fn(Options) -> Harness;

pub fn mem(opts: Options) -> Harness {
    Harness {
        store: std::sync::Arc::new(MemStore::with_options(opts)),
        dir: None,
    }
}

pub fn redb(opts: Options) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open_with_options(&dir.path().join("store.redb"), opts).unwrap();
    Harness {
        store: std::sync::Arc::new(store),
        dir: Some(dir),
    }
}

pub async fn next(rx: &mut Receiver<WatchEvent>) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("timed out waiting for a watch event")
        .expect("watch channel closed")
}

/// Asserts that no event arrives for a little while.
pub async fn quiet(rx: &mut Receiver<WatchEvent>) {
    if let Ok(ev) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
        panic!("unexpected watch event: {ev:?}");
    }
}
