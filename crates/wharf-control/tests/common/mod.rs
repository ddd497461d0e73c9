//! What the in-process tests share: a control plane on an in-memory store
//! at a fixed time, and calls of its ECS and agent operations as the root.

use serde_json::{json, Value};
use std::sync::Arc;
use wharf_control::{Control, Ctx};
use wharf_core::arn::Scope;
use wharf_core::clock::ManualClock;
use wharf_protocol::AwsError;
use wharf_store::MemStore;

pub const NOW: i64 = 1_700_000_000_000;

pub fn control() -> Control {
    Control::new(
        Arc::new(MemStore::new()),
        Arc::new(ManualClock::new(NOW)),
        Default::default(),
    )
}

/// The root of account 000000000000 in us-east-1, reaching the API as
/// `wharf.example:9070`.
pub fn ctx() -> Ctx {
    Ctx {
        scope: Scope {
            region: "us-east-1".into(),
            account: "000000000000".into(),
        },
        now: NOW,
        caller: wharf_control::auth::Caller::Root,
        host: Some("wharf.example:9070".into()),
    }
}

pub async fn ecs(c: &Control, op: &str, body: Value) -> Result<Value, AwsError> {
    let body = serde_json::to_vec(&body).unwrap();
    let out = wharf_control::ecs::dispatch(c, &ctx(), op, &body).await?;
    Ok(serde_json::from_slice(&out).unwrap())
}

pub async fn agent(c: &Control, op: &str, body: Value) -> Result<Value, AwsError> {
    let body = serde_json::to_vec(&body).unwrap();
    let out = wharf_control::agent_api::dispatch(c, &ctx(), op, &body).await?;
    Ok(serde_json::from_slice(&out).unwrap())
}

/// Cluster `c` with one instance of 1024 CPU units and 2048 MiB; its ARN.
pub async fn cluster_with_instance(c: &Control) -> String {
    ecs(c, "CreateCluster", json!({"clusterName": "c"}))
        .await
        .unwrap();
    let r = ecs(
        c,
        "RegisterContainerInstance",
        json!({"cluster": "c", "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 2048}]}),
    )
    .await
    .unwrap();
    r["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .into()
}
