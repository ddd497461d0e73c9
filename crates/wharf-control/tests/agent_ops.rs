//! The operations ECS keeps for its container agent, answered as Wharf's
//! agent protocol would: where to poll, agent updates, state reports.

mod common;

use common::{cluster_with_instance, control, ecs, placed_task};
use serde_json::{json, Value};
use wharf_control::Control;

/// A task of two containers (`app` essential) placed on the instance of
/// cluster `c`; its ARN.
async fn two_container_task(c: &Control, instance: &str) -> String {
    let containers = json!([
        {"name": "app", "image": "busybox", "memory": 32},
        {"name": "side", "image": "busybox", "memory": 32, "essential": false}]);
    placed_task(c, instance, containers, json!({})).await
}

async fn task(c: &Control, arn: &str) -> Value {
    ecs(c, "DescribeTasks", json!({"cluster": "c", "tasks": [arn]}))
        .await
        .unwrap()["tasks"][0]
        .clone()
}

async fn refused(c: &Control, op: &str, body: Value, code: &str, words: &str) {
    let before = c.store.current_revision().await.unwrap();
    let e = ecs(c, op, body).await.unwrap_err();
    assert_eq!(e.code, code, "{e}");
    assert!(e.message.contains(words), "{}", e.message);
    assert_eq!(c.store.current_revision().await.unwrap(), before);
}

#[tokio::test]
async fn the_poll_endpoint_is_the_server_itself() {
    let c = control();
    let instance = cluster_with_instance(&c).await;
    let r = ecs(
        &c,
        "DiscoverPollEndpoint",
        json!({"cluster": "c", "containerInstance": instance}),
    )
    .await
    .unwrap();
    let url = json!("http://wharf.example:9070/");
    assert_eq!(r["endpoint"], url);
    assert_eq!(r["telemetryEndpoint"], url);
    assert_eq!(r["serviceConnectEndpoint"], url);
    refused(
        &c,
        "DiscoverPollEndpoint",
        json!({"cluster": "nope"}),
        "ClusterNotFoundException",
        "Cluster not found",
    )
    .await;
    refused(
        &c,
        "DiscoverPollEndpoint",
        json!({"cluster": "c", "containerInstance": "0123456789abcdef0123456789abcdef"}),
        "InvalidParameterException",
        "container instance was not found",
    )
    .await;
}

#[tokio::test]
async fn an_agent_is_updated_by_installing_wharf_not_by_the_api() {
    let c = control();
    let unversioned = cluster_with_instance(&c).await;
    refused(
        &c,
        "UpdateContainerAgent",
        json!({"cluster": "c", "containerInstance": unversioned}),
        "MissingVersionException",
        "unable to determine the current version",
    )
    .await;
    let versioned = ecs(
        &c,
        "RegisterContainerInstance",
        json!({"cluster": "c", "versionInfo": {"agentVersion": "0.1.0"}, "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 2048}]}),
    )
    .await
    .unwrap()["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    refused(
        &c,
        "UpdateContainerAgent",
        json!({"cluster": "c", "containerInstance": versioned}),
        "NoUpdateAvailableException",
        "Wharf 0.1.0",
    )
    .await;
}

#[tokio::test]
async fn state_changes_apply_as_the_agents_reports_do() {
    let c = control();
    let instance = cluster_with_instance(&c).await;
    let arn = two_container_task(&c, &instance).await;
    let r = ecs(
        &c,
        "SubmitTaskStateChange",
        json!({"cluster": "c", "task": arn, "status": "RUNNING", "pullStartedAt": 1_700_000_000.5,
               "containers": [
                   {"containerName": "app", "status": "RUNNING", "runtimeId": "rt-app",
                    "networkBindings": [{"containerPort": 80, "hostPort": 32768, "protocol": "tcp"}]},
                   {"containerName": "side", "status": "RUNNING", "runtimeId": "rt-side"}]}),
    )
    .await
    .unwrap();
    assert_eq!(r["acknowledgment"], json!("ACK"));
    let t = task(&c, &arn).await;
    assert_eq!(t["lastStatus"], json!("RUNNING"));
    assert_eq!(t["pullStartedAt"], json!(1_700_000_000.5));
    assert_eq!(t["containers"][0]["runtimeId"], json!("rt-app"));
    assert_eq!(
        t["containers"][0]["networkBindings"][0]["hostPort"],
        json!(32768)
    );

    // The non-essential container stops: the task goes on.
    ecs(
        &c,
        "SubmitContainerStateChange",
        json!({"cluster": "c", "task": arn, "containerName": "side", "status": "STOPPED", "exitCode": 0}),
    )
    .await
    .unwrap();
    let t = task(&c, &arn).await;
    assert_eq!(t["desiredStatus"], json!("RUNNING"));
    assert_eq!(t["containers"][1]["lastStatus"], json!("STOPPED"));

    // What would be dropped or is not the caller's to say is refused, unwritten.
    for (body, words) in [
        (
            json!({"cluster": "c", "task": arn, "containerName": "ghost", "status": "STOPPED"}),
            "ghost is not a container",
        ),
        (
            json!({"cluster": "c", "task": arn, "containerName": "app", "status": "EXPLODED"}),
            "is not one of",
        ),
        (
            json!({"cluster": "c", "task": "0123456789abcdef0123456789abcdef", "containerName": "app",
                "status": "STOPPED"}),
            "task was not found",
        ),
    ] {
        refused(
            &c,
            "SubmitContainerStateChange",
            body,
            "InvalidParameterException",
            words,
        )
        .await;
    }
    refused(
        &c,
        "SubmitTaskStateChange",
        json!({"cluster": "c", "task": arn, "status": "RUNNING",
               "attachments": [{"attachmentArn": "a", "status": "ATTACHED"}]}),
        "InvalidParameterException",
        "attachments are not taken",
    )
    .await;

    // The essential container exits: the task stops, as ECS stops it.
    ecs(
        &c,
        "SubmitContainerStateChange",
        json!({"cluster": "c", "task": arn, "containerName": "app", "status": "STOPPED",
               "exitCode": 3, "reason": "done"}),
    )
    .await
    .unwrap();
    let t = task(&c, &arn).await;
    assert_eq!(t["desiredStatus"], json!("STOPPED"));
    assert_eq!(t["stopCode"], json!("EssentialContainerExited"));
    assert_eq!(t["containers"][0]["exitCode"], json!(3));
}
