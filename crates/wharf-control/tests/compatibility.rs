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
        source_ip: None,
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

/// The IAM section's list of supported operations is the server's: each
/// listed operation is dispatched (whatever it answers to an empty request,
/// it is not `NotImplemented`), each other operation of the model answers
/// `NotImplemented`; STS likewise.
#[tokio::test]
async fn the_iam_and_sts_lists_match_the_server() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/compatibility.md"
    ))
    .expect("docs/compatibility.md");
    let section = doc
        .split("## IAM and STS")
        .nth(1)
        .expect("an IAM and STS section");
    let listed = section
        .split("Supported IAM operations")
        .nth(1)
        .and_then(|s| s.split("\n\n").next())
        .expect("the list of supported IAM operations");
    let mut named: Vec<&str> = listed
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| wharf_model::iam::OPERATIONS.contains(w))
        .collect();
    named.sort_unstable();
    let mut supported = wharf_iam::api::SUPPORTED.to_vec();
    supported.sort_unstable();
    assert_eq!(named, supported, "docs list the IAM operations served");

    let store: wharf_store::DynStore = Arc::new(MemStore::new());
    let iam = wharf_iam::Iam::new(store, "000000000000".into());
    let root = wharf_iam::Caller {
        principal: wharf_iam::Principal::Root,
        session: None,
    };
    for (ops, served, is_iam) in [
        (
            wharf_model::iam::OPERATIONS,
            wharf_iam::api::SUPPORTED,
            true,
        ),
        (
            wharf_model::sts::OPERATIONS,
            wharf_iam::sts::SUPPORTED,
            false,
        ),
    ] {
        for op in ops {
            let answer = if is_iam {
                wharf_iam::dispatch_iam(&iam, &root, 0, op, &[], "t").await
            } else {
                wharf_iam::dispatch_sts(&iam, &root, &Default::default(), 0, op, &[], "t").await
            };
            let unimplemented = answer.as_ref().is_err_and(|e| e.code == "NotImplemented");
            assert_eq!(
                unimplemented,
                !served.contains(op),
                "{op}: {:?}",
                answer.map(|b| String::from_utf8_lossy(&b).into_owned())
            );
        }
    }
    for op in wharf_iam::sts::SUPPORTED {
        assert!(section.contains(&format!("`{op}`")), "docs name STS {op}");
    }
}
