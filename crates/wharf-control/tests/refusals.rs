//! Regressions found by `fuzz_operations`: each request here was answered
//! with a panic, or refused after writing part of what it asked for.

mod common;

use common::{agent, cluster_with_instance, control, ecs};
use serde_json::{json, Value};
use wharf_control::Control;
use wharf_protocol::AwsError;

async fn revision(c: &Control) -> i64 {
    c.store.current_revision().await.unwrap()
}

/// Refused with `code`, and the store as it was.
async fn refused_unwritten(
    c: &Control,
    code: &str,
    call: impl std::future::Future<Output = Result<Value, AwsError>>,
) {
    let before = revision(c).await;
    let e = call.await.unwrap_err();
    assert_eq!(e.code, code, "{e}");
    assert_eq!(e.status, 400);
    assert_eq!(revision(c).await, before, "a refused request wrote");
}

#[tokio::test]
async fn a_refused_registration_creates_no_default_or_managed_cluster() {
    let c = control();
    // Once the default (or managed) cluster was created before the
    // resources were checked.
    refused_unwritten(
        &c,
        "InvalidParameterException",
        ecs(&c, "RegisterContainerInstance", json!({})),
    )
    .await;
    refused_unwritten(
        &c,
        "InvalidParameterException",
        agent(&c, "RegisterManagedCapacity", json!({})),
    )
    .await;
}

#[tokio::test]
async fn resources_wider_than_ecs_carries_are_refused() {
    let c = control();
    ecs(&c, "CreateCluster", json!({"clusterName": "c"}))
        .await
        .unwrap();
    for resource in [
        json!({"name": "CPU", "type": "LONG", "longValue": i64::MAX}),
        json!({"name": "MEMORY", "type": "DOUBLE", "doubleValue": 1e300}),
    ] {
        let body = json!({"cluster": "c", "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 2048}, resource]});
        refused_unwritten(
            &c,
            "InvalidParameterException",
            ecs(&c, "RegisterContainerInstance", body),
        )
        .await;
    }
}

#[tokio::test]
async fn a_poll_after_the_last_revision_there_can_be_is_refused() {
    let c = control();
    let instance = cluster_with_instance(&c).await;
    // `afterRevision + 1` overflowed: a panic in debug builds.
    let poll = json!({"cluster": "c", "containerInstanceArn": instance,
                      "afterRevision": i64::MAX, "waitMillis": 0});
    refused_unwritten(&c, "InvalidParameterException", agent(&c, "Poll", poll)).await;
    let many = json!({"cluster": "c", "containerInstanceArns": [instance],
                      "afterRevision": i64::MAX, "waitMillis": 0});
    refused_unwritten(
        &c,
        "InvalidParameterException",
        agent(&c, "PollInstances", many),
    )
    .await;
}

#[tokio::test]
async fn attributes_for_a_missing_target_change_no_instance() {
    let c = control();
    let instance = cluster_with_instance(&c).await;
    // The first attribute was written before the second's target was found missing.
    let body = json!({"cluster": "c", "attributes": [
        {"name": "color", "value": "blue", "targetId": instance},
        {"name": "size", "value": "xl", "targetId": "0123456789abcdef0123456789abcdef"}]});
    refused_unwritten(
        &c,
        "TargetNotFoundException",
        ecs(&c, "PutAttributes", body),
    )
    .await;
    // An ARN and a bare ID of one instance are one write.
    let id = instance.rsplit('/').next().unwrap();
    let body = json!({"cluster": "c", "attributes": [
        {"name": "color", "value": "blue", "targetId": instance},
        {"name": "size", "value": "xl", "targetId": id}]});
    ecs(&c, "PutAttributes", body).await.unwrap();
    let listed = ecs(
        &c,
        "ListAttributes",
        json!({"cluster": "c", "targetType": "container-instance"}),
    )
    .await
    .unwrap();
    assert_eq!(
        listed["attributes"].as_array().unwrap().len(),
        2,
        "{listed}"
    );
}

#[tokio::test]
async fn batch_calls_refuse_a_bad_name_before_changing_the_good_ones() {
    let c = control();
    let instance = cluster_with_instance(&c).await;
    let update = json!({"cluster": "c", "containerInstances": [instance, "arn:aws:ecs:bad"],
                        "status": "DRAINING"});
    refused_unwritten(
        &c,
        "InvalidParameterException",
        ecs(&c, "UpdateContainerInstancesState", update),
    )
    .await;
    ecs(
        &c,
        "RegisterTaskDefinition",
        json!({"family": "web", "containerDefinitions": [{"name": "a", "image": "x", "memory": 64}]}),
    )
    .await
    .unwrap();
    ecs(
        &c,
        "DeregisterTaskDefinition",
        json!({"taskDefinition": "web:1"}),
    )
    .await
    .unwrap();
    let delete = json!({"taskDefinitions": ["web:1", "web:x"]});
    refused_unwritten(
        &c,
        "InvalidParameterException",
        ecs(&c, "DeleteTaskDefinitions", delete),
    )
    .await;
}
