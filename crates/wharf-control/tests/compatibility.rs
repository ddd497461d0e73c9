//! `docs/compatibility.md` lists every operation of the ECS model with its
//! status; this keeps the list true: each operation marked unsupported is
//! refused as unsupported by the server, and each other one is served.

use std::sync::Arc;
use wharf_control::{Control, Ctx};
use wharf_core::arn::Scope;
use wharf_core::clock::ManualClock;
use wharf_store::MemStore;

#[tokio::test]
async fn the_operations_table_matches_the_server() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/compatibility.md"
    ))
    .expect("docs/compatibility.md");
    let rows: Vec<(String, String)> = doc
        .lines()
        .filter_map(|l| {
            let mut cells = l.split('|').map(str::trim).skip(1);
            let op = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            let status = cells.next()?;
            Some((op.to_string(), status.to_string()))
        })
        .filter(|(op, _)| wharf_model::ecs::OPERATIONS.contains(&op.as_str()))
        .collect();
    let mut listed: Vec<&str> = rows.iter().map(|(op, _)| op.as_str()).collect();
    listed.sort_unstable();
    let mut all = wharf_model::ecs::OPERATIONS.to_vec();
    all.sort_unstable();
    assert_eq!(listed, all, "every operation of the model, once");

    let c = Control::new(
        Arc::new(MemStore::new()),
        Arc::new(ManualClock::new(1_700_000_000_000)),
        Default::default(),
    );
    let x = Ctx {
        scope: Scope {
            region: "us-east-1".into(),
            account: "000000000000".into(),
        },
        now: 1_700_000_000_000,
        caller: wharf_control::auth::Caller::Root,
        host: None,
    };
    for (op, status) in &rows {
        assert!(
            ["supported", "partial", "unsupported"].contains(&status.as_str()),
            "{op}: status {status}"
        );
        let answer = wharf_control::ecs::dispatch(&c, &x, op, b"{}").await;
        let refused = answer.as_ref().is_err_and(|e| {
            e.code == "UnsupportedFeatureException"
                && e.message == format!("The operation {op} is not supported by Wharf yet.")
        });
        assert_eq!(
            refused,
            status == "unsupported",
            "{op} is listed as {status}"
        );
    }
}
