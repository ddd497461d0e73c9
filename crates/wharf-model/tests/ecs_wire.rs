//! Wire-level checks of the generated ECS types against JSON as the aws CLI
//! and ECS itself send it.

use serde_json::{json, Value};
use wharf_model::ecs::{self, NetworkMode};

fn register_task_definition_json() -> Value {
    // What `aws ecs register-task-definition --cli-input-json ...` sends.
    json!({
        "family": "web",
        "networkMode": "bridge",
        "containerDefinitions": [
            {
                "name": "nginx",
                "image": "nginx:1.25",
                "memory": 256,
                "essential": true,
                "portMappings": [
                    {"containerPort": 80, "hostPort": 8080, "protocol": "tcp"}
                ],
                "environment": [
                    {"name": "MODE", "value": "prod"},
                    {"name": "EMPTY", "value": ""}
                ],
                "healthCheck": {
                    "command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
                    "interval": 30,
                    "timeout": 5,
                    "retries": 3,
                    "startPeriod": 10
                }
            }
        ]
    })
}

#[test]
fn register_task_definition_request_round_trips() {
    let wire = register_task_definition_json();
    let req: ecs::RegisterTaskDefinitionRequest = serde_json::from_value(wire.clone()).unwrap();

    assert_eq!(req.family, "web");
    assert_eq!(req.network_mode, Some(NetworkMode::Bridge));
    assert_eq!(req.task_role_arn, None);
    assert_eq!(req.container_definitions.len(), 1);
    let c = &req.container_definitions[0];
    assert_eq!(c.name.as_deref(), Some("nginx"));
    assert_eq!(c.image.as_deref(), Some("nginx:1.25"));
    assert_eq!(c.memory, Some(256));
    assert_eq!(c.essential, Some(true));
    let ports = c.port_mappings.as_ref().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].container_port, Some(80));
    assert_eq!(ports[0].host_port, Some(8080));
    assert_eq!(ports[0].protocol, Some(ecs::TransportProtocol::Tcp));
    let env = c.environment.as_ref().unwrap();
    assert_eq!(env[0].name.as_deref(), Some("MODE"));
    assert_eq!(env[0].value.as_deref(), Some("prod"));
    assert_eq!(env[1].value.as_deref(), Some(""));
    let hc = c.health_check.as_ref().unwrap();
    assert_eq!(
        hc.command,
        vec!["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
    );
    assert_eq!(hc.interval, Some(30));
    assert_eq!(hc.timeout, Some(5));
    assert_eq!(hc.retries, Some(3));
    assert_eq!(hc.start_period, Some(10));

    assert_eq!(serde_json::to_value(&req).unwrap(), wire);
}

#[test]
fn missing_required_member_is_an_error_naming_it() {
    let err =
        serde_json::from_value::<ecs::RunTaskRequest>(json!({"cluster": "default", "count": 1}))
            .unwrap_err()
            .to_string();
    assert!(err.contains("taskDefinition"), "{err}");

    let ok: ecs::RunTaskRequest =
        serde_json::from_value(json!({"taskDefinition": "web:1"})).unwrap();
    assert_eq!(ok.task_definition, "web:1");
    assert_eq!(ok.cluster, None);
}

#[test]
fn required_list_member_defaults_to_empty() {
    let req: ecs::RegisterTaskDefinitionRequest =
        serde_json::from_value(json!({"family": "web"})).unwrap();
    assert!(req.container_definitions.is_empty());
    // ...but is still always serialized.
    assert_eq!(
        serde_json::to_value(&req).unwrap(),
        json!({"family": "web", "containerDefinitions": []})
    );
}

#[test]
fn unknown_enum_values_are_kept_not_rejected() {
    let mut wire = register_task_definition_json();
    wire["networkMode"] = json!("bogus");
    let req: ecs::RegisterTaskDefinitionRequest = serde_json::from_value(wire.clone()).unwrap();
    let mode = req.network_mode.clone().unwrap();
    assert_eq!(mode, NetworkMode::Unknown("bogus".into()));
    assert!(!mode.is_known());
    assert_eq!(mode.as_str(), "bogus");
    // Unknown values go back out verbatim.
    assert_eq!(serde_json::to_value(&req).unwrap(), wire);

    assert!(NetworkMode::Bridge.is_known());
    assert_eq!(
        serde_json::to_value(NetworkMode::Bridge).unwrap(),
        json!("bridge")
    );
    assert_eq!(
        serde_json::from_value::<NetworkMode>(json!("awsvpc")).unwrap(),
        NetworkMode::Awsvpc
    );
    assert_eq!(
        serde_json::from_value::<NetworkMode>(json!("none")).unwrap(),
        NetworkMode::None
    );
    // Enum matching is exact, as in AWS.
    assert_eq!(
        NetworkMode::from("BRIDGE"),
        NetworkMode::Unknown("BRIDGE".into())
    );
}

#[test]
fn enum_helpers() {
    assert_eq!(NetworkMode::VALUES, &["bridge", "host", "awsvpc", "none"]);
    for v in NetworkMode::VALUES {
        let m = NetworkMode::from(*v);
        assert!(m.is_known(), "{v}");
        assert_eq!(m.as_str(), *v);
        assert_eq!(m.to_string(), *v);
        assert_eq!(NetworkMode::from(v.to_string()), m);
    }
    assert_eq!(NetworkMode::default(), NetworkMode::Unknown(String::new()));
    assert_eq!(ecs::Compatibility::from("EC2"), ecs::Compatibility::Ec2);
    assert_eq!(
        ecs::CapacityProviderStrategyItem::default().capacity_provider,
        ""
    );
    // A model value spelled like the catch-all keeps a distinct variant.
    assert_eq!(
        ecs::HealthStatus::from("UNKNOWN"),
        ecs::HealthStatus::UnknownValue
    );
    assert!(ecs::HealthStatus::UnknownValue.is_known());
    assert_eq!(ecs::HealthStatus::UnknownValue.as_str(), "UNKNOWN");
}

#[test]
fn error_http_status() {
    assert_eq!(
        ecs::error_http_status("ClusterNotFoundException"),
        Some(400)
    );
    assert_eq!(ecs::error_http_status("ClientException"), Some(400));
    assert_eq!(ecs::error_http_status("ServerException"), Some(500));
    assert_eq!(ecs::error_http_status("NoSuchThing"), None);
    // Exceptions are ordinary structs with a message.
    let e: ecs::ClusterNotFoundException =
        serde_json::from_value(json!({"message": "gone"})).unwrap();
    assert_eq!(e.message.as_deref(), Some("gone"));
}

#[test]
fn timestamps_are_epoch_seconds() {
    let task: ecs::Task = serde_json::from_value(json!({
        "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/default/abc",
        "createdAt": 1700000000.123,
        "startedAt": 1700000001
    }))
    .unwrap();
    assert_eq!(task.created_at, Some(1700000000.123));
    assert_eq!(task.started_at, Some(1700000001.0));
    let out = serde_json::to_value(&task).unwrap();
    assert_eq!(out["createdAt"], json!(1700000000.123));
}

#[test]
fn none_fields_are_omitted() {
    let tag = ecs::Tag {
        key: Some("team".into()),
        value: None,
    };
    assert_eq!(serde_json::to_value(&tag).unwrap(), json!({"key": "team"}));
    assert_eq!(serde_json::to_string(&ecs::Task::default()).unwrap(), "{}");
    let resp = ecs::DescribeClustersResponse::default();
    assert_eq!(serde_json::to_value(&resp).unwrap(), json!({}));
}

#[test]
fn keyword_members_are_raw_identifiers() {
    let r: ecs::Resource = serde_json::from_value(
        json!({"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]}),
    )
    .unwrap();
    assert_eq!(r.r#type.as_deref(), Some("STRINGSET"));
    assert_eq!(r.string_set_value, Some(vec!["22".to_string()]));
}

#[test]
fn service_constants() {
    assert_eq!(ecs::TARGET_PREFIX, "AmazonEC2ContainerServiceV20141113");
    assert_eq!(ecs::SIGNING_NAME, "ecs");
    assert_eq!(ecs::API_VERSION, "2014-11-13");
    assert!(ecs::OPERATIONS.contains(&"RunTask"));
    assert!(
        ecs::OPERATIONS.windows(2).all(|w| w[0] < w[1]),
        "sorted and unique"
    );
}

#[test]
fn logs_model() {
    use wharf_model::logs;
    assert_eq!(logs::TARGET_PREFIX, "Logs_20140328");
    assert_eq!(logs::SIGNING_NAME, "logs");
    assert!(logs::OPERATIONS.contains(&"PutLogEvents"));
    assert_eq!(
        logs::error_http_status("ResourceNotFoundException"),
        Some(400)
    );
    let req: logs::PutLogEventsRequest = serde_json::from_value(json!({
        "logGroupName": "/wharf/web",
        "logStreamName": "web/nginx/abc",
        "logEvents": [{"timestamp": 1700000000123i64, "message": "hello"}]
    }))
    .unwrap();
    assert_eq!(req.log_events[0].timestamp, 1700000000123);
    assert_eq!(req.log_events[0].message, "hello");
}
