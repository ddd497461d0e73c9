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
        source_ip: None,
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

/// Task definition `f` with `containers`, run on cluster `c` (with the
/// RunTask members `run` adds) once `instance`'s agent has polled, which
/// makes it placeable; the task's ARN.
#[allow(dead_code)] // not every test file runs tasks
pub async fn placed_task(c: &Control, instance: &str, containers: Value, run: Value) -> String {
    agent(
        c,
        "Poll",
        json!({"cluster": "c", "containerInstanceArn": instance,
               "afterRevision": 0, "waitMillis": 0}),
    )
    .await
    .unwrap();
    ecs(
        c,
        "RegisterTaskDefinition",
        json!({"family": "f", "containerDefinitions": containers}),
    )
    .await
    .unwrap();
    let mut body = json!({"cluster": "c", "taskDefinition": "f"});
    for (k, v) in run.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    let t = ecs(c, "RunTask", body).await.unwrap();
    t["tasks"][0]["taskArn"].as_str().unwrap().to_string()
}
