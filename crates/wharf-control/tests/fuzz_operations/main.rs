//! No input can crash or hang the server, or make it write what it refuses
//! (issue #11): every operation of every service the server dispatches —
//! ECS, CloudWatch Logs and the agent protocol, enumerated from the model
//! and `agent_protocol`, so a new operation is fuzzed without a change
//! here — gets seeded-random bodies (see [`bodies`]) against a control
//! plane holding a little real state. Each call must answer within 5 s,
//! without a panic, with a result or a 4xx AWS error; after an error the
//! store (and the log store) must be exactly as before.
//!
//! `WHARF_FUZZ_SEED=N` changes the seed, `WHARF_FUZZ_OP=Service.Operation`
//! replays one operation, `WHARF_FUZZ_ITERATIONS=N` sets the bodies per
//! operation. A failure prints its seed, operation and body, and writes the
//! body to a file beside the test binary's temporary directory.

mod bodies;
mod examples;
mod schema;

use rand::SeedableRng;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wharf_control::{Control, ControlConfig, Ctx};
use wharf_core::agent_protocol::REPORT_TASK_STATES;
use wharf_core::arn::Scope;
use wharf_core::clock::ManualClock;
use wharf_core::records::{keys, ClusterKey};
use wharf_protocol::AwsError;
use wharf_store::{MemStore, Op, Txn};

const NOW: i64 = 1_700_000_000_000;
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Bodies per operation the server implements; operations it refuses as
/// unsupported answer before decoding, so a few bodies do.
const ITERATIONS: usize = 60;
const UNSUPPORTED_ITERATIONS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Service {
    Ecs,
    Logs,
    Agent,
    /// `WharfAdmin_v1`: join tokens.
    Admin,
    /// `WharfAgent_v1.Join`, which the server routes apart (no signature).
    Join,
    /// Elastic Load Balancing v2 (awsQuery): the generated JSON bodies are
    /// flattened into form parameters by the model's schema; a body that is
    /// no JSON is sent as a raw form.
    Elbv2,
    /// IAM and STS, awsQuery too, called as the account's root.
    Iam,
    Sts,
    /// Secrets Manager and SSM Parameter Store (JSON 1.1).
    SecretsManager,
    Ssm,
}

impl Service {
    /// The shape graph of an awsQuery service.
    fn query_schema(self) -> Option<&'static wharf_model::schema::Schema> {
        match self {
            Service::Elbv2 => Some(&wharf_model::elbv2::SCHEMA),
            Service::Iam => Some(&wharf_model::iam::SCHEMA),
            Service::Sts => Some(&wharf_model::sts::SCHEMA),
            _ => None,
        }
    }
}

struct Operation {
    service: Service,
    name: &'static str,
    schema: schema::Schema,
}

/// Collects each operation's schema from its input type.
struct Collect(Service, Vec<Operation>);

impl wharf_model::OperationVisitor for Collect {
    fn visit<Input>(&mut self, name: &'static str)
    where
        Input:
            serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug + 'static,
    {
        self.1.push(Operation {
            service: self.0,
            name,
            schema: schema::of::<Input>(),
        });
    }
}

fn operations() -> Vec<Operation> {
    let mut all = vec![];
    let mut ecs = Collect(Service::Ecs, vec![]);
    wharf_model::ecs::visit_operations(&mut ecs);
    let mut logs = Collect(Service::Logs, vec![]);
    wharf_model::logs::visit_operations(&mut logs);
    let mut agent = Collect(Service::Agent, vec![]);
    wharf_core::agent_protocol::visit_operations(&mut agent);
    let mut admin = Collect(Service::Admin, vec![]);
    wharf_core::admin_protocol::visit_operations(&mut admin);
    let mut elbv2 = Collect(Service::Elbv2, vec![]);
    wharf_model::elbv2::visit_operations(&mut elbv2);
    let mut iam = Collect(Service::Iam, vec![]);
    wharf_model::iam::visit_operations(&mut iam);
    let mut sts = Collect(Service::Sts, vec![]);
    wharf_model::sts::visit_operations(&mut sts);
    let mut sm = Collect(Service::SecretsManager, vec![]);
    wharf_model::secretsmanager::visit_operations(&mut sm);
    let mut ssm = Collect(Service::Ssm, vec![]);
    wharf_model::ssm::visit_operations(&mut ssm);
    let mut join = Collect(Service::Join, vec![]);
    wharf_model::OperationVisitor::visit::<wharf_core::agent_protocol::JoinRequest>(
        &mut join,
        wharf_core::agent_protocol::JOIN,
    );
    for (c, names) in [
        (&ecs, wharf_model::ecs::OPERATIONS),
        (&logs, wharf_model::logs::OPERATIONS),
        (&agent, wharf_core::agent_protocol::OPERATIONS),
        (&admin, wharf_core::admin_protocol::OPERATIONS),
        (&elbv2, wharf_model::elbv2::OPERATIONS),
        (&iam, wharf_model::iam::OPERATIONS),
        (&sts, wharf_model::sts::OPERATIONS),
        (&sm, wharf_model::secretsmanager::OPERATIONS),
        (&ssm, wharf_model::ssm::OPERATIONS),
    ] {
        let visited: Vec<&str> = c.1.iter().map(|o| o.name).collect();
        assert_eq!(
            visited, names,
            "{:?}: visit_operations and OPERATIONS differ",
            c.0
        );
    }
    all.extend(ecs.1);
    all.extend(logs.1);
    all.extend(agent.1);
    all.extend(admin.1);
    all.extend(join.1);
    all.extend(elbv2.1);
    all.extend(iam.1);
    all.extend(sts.1);
    all.extend(sm.1);
    all.extend(ssm.1);
    all
}

/// A JSON body as awsQuery parameters, laid out by the model's schema:
/// members dotted, lists as `.member.N` (an empty one as `Name=`), maps as
/// `.entry.N.key`/`.value`; a value of the wrong kind goes as its JSON text.
fn form_params(
    schema: &wharf_model::schema::Schema,
    id: wharf_model::schema::ShapeId,
    v: &Value,
    prefix: &str,
    out: &mut Vec<(String, String)>,
) {
    use wharf_model::schema::Kind;
    let join = |name: &str| {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        }
    };
    match (&schema.shape(id).kind, v) {
        (Kind::Structure(members), Value::Object(map)) => {
            for (k, val) in map {
                match members.iter().find(|m| m.name == k) {
                    Some(m) => form_params(schema, m.shape, val, &join(k), out),
                    None => out.push((join(k), scalar(val))),
                }
            }
        }
        (Kind::List(member), Value::Array(items)) if !prefix.is_empty() => {
            if items.is_empty() {
                out.push((prefix.to_owned(), String::new()));
            }
            for (i, item) in items.iter().enumerate() {
                form_params(
                    schema,
                    *member,
                    item,
                    &format!("{prefix}.member.{}", i + 1),
                    out,
                );
            }
        }
        (Kind::Map { value, .. }, Value::Object(map)) if !prefix.is_empty() => {
            for (i, (k, val)) in map.iter().enumerate() {
                let entry = format!("{prefix}.entry.{}", i + 1);
                out.push((format!("{entry}.key"), k.clone()));
                form_params(schema, *value, val, &format!("{entry}.value"), out);
            }
        }
        (_, Value::Null) => {}
        (_, v) => out.push((prefix.to_owned(), scalar(v))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn ctx() -> Ctx {
    Ctx {
        scope: Scope {
            region: "us-east-1".into(),
            account: "000000000000".into(),
        },
        now: NOW,
        caller: wharf_control::auth::Caller::Root,
        host: None,
        source_ip: None,
    }
}

async fn dispatch(
    c: &Control,
    service: Service,
    op: &str,
    body: &[u8],
) -> Result<Vec<u8>, AwsError> {
    let x = ctx();
    match service {
        Service::Ecs => wharf_control::ecs::dispatch(c, &x, op, body).await,
        Service::Agent => wharf_control::agent_api::dispatch(c, &x, op, body).await,
        Service::Admin => wharf_control::tokens::dispatch(c, &x, op, body).await,
        Service::Join => wharf_control::tokens::join(c, x.now, body).await,
        Service::Elbv2 | Service::Iam | Service::Sts => {
            let schema = service.query_schema().unwrap();
            let params = match (serde_json::from_slice::<Value>(body), schema.operation(op)) {
                (Ok(v), Some(o)) => {
                    let mut params = vec![];
                    form_params(schema, o.input, &v, "", &mut params);
                    params
                }
                _ => wharf_protocol::query::parse(&[b"Action=x&".as_slice(), body].concat())
                    .map(|r| r.params)
                    .unwrap_or_default(),
            };
            let root = wharf_iam::Caller {
                principal: wharf_iam::Principal::Root,
                session: None,
            };
            match service {
                Service::Iam => {
                    wharf_iam::dispatch_iam(&c.iam, &root, x.now, op, &params, "fuzz").await
                }
                Service::Sts => {
                    wharf_iam::dispatch_sts(
                        &c.iam,
                        &root,
                        &Default::default(),
                        x.now,
                        op,
                        &params,
                        "fuzz",
                    )
                    .await
                }
                _ => {
                    let scope = wharf_lb::Scope {
                        region: x.scope.region,
                        account: x.scope.account,
                    };
                    wharf_lb::dispatch(&c.lb, &scope, x.now, op, &params, "fuzz").await
                }
            }
        }
        Service::Logs => {
            let scope = wharf_logs::Scope {
                region: x.scope.region,
                account: x.scope.account,
            };
            wharf_logs::dispatch(&c.logs, &scope, x.now, op, body).await
        }
        Service::SecretsManager => {
            let scope = wharf_secretsmanager::Scope {
                region: x.scope.region,
                account: x.scope.account,
            };
            let allow = |_: &str, _: Option<&wharf_secretsmanager::Judged>| Ok(());
            wharf_secretsmanager::dispatch(&c.secrets, &scope, x.now, op, body, &allow).await
        }
        Service::Ssm => {
            let scope = wharf_ssm::Scope {
                region: x.scope.region,
                account: x.scope.account,
            };
            wharf_ssm::dispatch(&c.ssm, &scope, x.now, op, body).await
        }
    }
}

async fn call(c: &Control, service: Service, op: &str, body: Value) -> Value {
    let body = serde_json::to_vec(&body).unwrap();
    let out = dispatch(c, service, op, &body)
        .await
        .unwrap_or_else(|e| panic!("seeding {op}: {e}"));
    serde_json::from_slice(&out).unwrap()
}

/// A control plane with one of everything, so handlers get past "not
/// found": cluster `fuzz` with an instance (connected), two revisions of
/// `web` (the first deregistered), two tasks, a service, and a log group
/// with a stream of events. Returns the names and ARNs to build bodies from.
async fn seeded() -> (Control, Vec<String>) {
    let (c, words, _) = seeded_with_names().await;
    (c, words)
}

/// The seeded state's task, instance and service deployment ARNs, and
/// its load balancer's.
#[derive(Clone)]
struct Names {
    task: String,
    instance: String,
    deployment: String,
    load_balancer: String,
    target_group: String,
    listener: String,
    rule: String,
}

/// An ELBv2 call while seeding; its XML answer.
async fn query(c: &Control, action: &str, params: &[(&str, &str)]) -> String {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let scope = wharf_lb::Scope {
        region: "us-east-1".into(),
        account: "000000000000".into(),
    };
    let out = wharf_lb::dispatch(&c.lb, &scope, NOW, action, &params, "seed")
        .await
        .unwrap_or_else(|e| panic!("seeding {action}: {e}"));
    String::from_utf8(out).unwrap()
}

fn between(xml: &str, open: &str, close: &str) -> String {
    let start = xml.find(open).expect(open) + open.len();
    let end = xml[start..].find(close).expect(close) + start;
    xml[start..end].to_string()
}

async fn seeded_with_names() -> (Control, Vec<String>, Names) {
    let config = ControlConfig {
        // No session may expire while an operation is fuzzed.
        agent_session_ttl: Duration::from_secs(3600),
        ..Default::default()
    };
    let c = Control::new(
        Arc::new(MemStore::new()),
        Arc::new(ManualClock::new(NOW)),
        config,
    )
    .with_lb_config(wharf_lb::LbConfig {
        // What this host has bound is no concern of the fuzzer.
        probe_ports: false,
        ..Default::default()
    });
    use Service::*;
    let mut words: Vec<String> = vec![];
    let pool = call(
        &c,
        Ecs,
        "CreateCapacityProvider",
        json!({"name": "pool", "autoScalingGroupProvider": {"autoScalingGroupArn": "asg"}}),
    )
    .await;
    words.push(
        pool["capacityProvider"]["capacityProviderArn"]
            .as_str()
            .unwrap()
            .into(),
    );
    let cluster = call(
        &c,
        Ecs,
        "CreateCluster",
        json!({"clusterName": "fuzz", "capacityProviders": ["FARGATE", "pool"]}),
    )
    .await;
    words.push(cluster["cluster"]["clusterArn"].as_str().unwrap().into());
    for _ in 0..2 {
        let td = call(
            &c,
            Ecs,
            "RegisterTaskDefinition",
            json!({"family": "web", "containerDefinitions": [{"name": "app", "image": "x",
                   "cpu": 16, "memory": 64, "portMappings": [{"containerPort": 80}]}]}),
        )
        .await;
        words.push(
            td["taskDefinition"]["taskDefinitionArn"]
                .as_str()
                .unwrap()
                .into(),
        );
    }
    call(
        &c,
        Ecs,
        "DeregisterTaskDefinition",
        json!({"taskDefinition": "web:1"}),
    )
    .await;
    let instance = call(
        &c,
        Ecs,
        "RegisterContainerInstance",
        json!({"cluster": "fuzz", "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 8192}],
            "attributes": [{"name": "ecs.availability-zone", "value": "us-east-1a"}]}),
    )
    .await;
    let instance_arn = instance["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let instance_id = instance_arn.rsplit('/').next().unwrap().to_string();
    c.store
        .txn(Txn::new().then(Op::put(
            keys::agent_session(&ClusterKey::new("us-east-1", "fuzz"), &instance_id),
            b"1".to_vec(),
        )))
        .await
        .unwrap();
    let run = call(
        &c,
        Ecs,
        "RunTask",
        json!({"cluster": "fuzz", "taskDefinition": "web", "count": 2}),
    )
    .await;
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    for t in run["tasks"].as_array().unwrap() {
        let arn = t["taskArn"].as_str().unwrap();
        words.push(arn.into());
        words.push(arn.rsplit('/').next().unwrap().into());
    }
    let svc = call(
        &c,
        Ecs,
        "CreateService",
        json!({"cluster": "fuzz", "serviceName": "svc", "taskDefinition": "web", "desiredCount": 1}),
    )
    .await;
    words.push(svc["service"]["serviceArn"].as_str().unwrap().into());
    call(
        &c,
        Ecs,
        "CreateService",
        json!({"cluster": "fuzz", "serviceName": "ext", "desiredCount": 1,
               "deploymentController": {"type": "EXTERNAL"}}),
    )
    .await;
    let set = call(
        &c,
        Ecs,
        "CreateTaskSet",
        json!({"cluster": "fuzz", "service": "ext", "taskDefinition": "web"}),
    )
    .await;
    words.push(set["taskSet"]["id"].as_str().unwrap().into());
    let deployments = call(
        &c,
        Ecs,
        "ListServiceDeployments",
        json!({"cluster": "fuzz", "service": "svc"}),
    )
    .await;
    let deployment = deployments["serviceDeployments"][0]["serviceDeploymentArn"]
        .as_str()
        .unwrap()
        .to_string();
    words.push(deployment.clone());
    call(
        &c,
        Logs,
        "CreateLogGroup",
        json!({"logGroupName": "/fuzz/group"}),
    )
    .await;
    call(
        &c,
        Logs,
        "CreateLogStream",
        json!({"logGroupName": "/fuzz/group", "logStreamName": "s1"}),
    )
    .await;
    call(
        &c,
        Logs,
        "PutLogEvents",
        json!({"logGroupName": "/fuzz/group", "logStreamName": "s1", "logEvents": [
            {"timestamp": NOW - 2, "message": "{\"a\": 1, \"level\": \"ERROR\"}"},
            {"timestamp": NOW - 1, "message": "plain text ERROR 42"},
            {"timestamp": NOW, "message": "[127.0.0.1, GET, 200]"}]}),
    )
    .await;
    let lb = query(
        &c,
        "CreateLoadBalancer",
        &[("Name", "lb"), ("Subnets.member.1", "subnet-1")],
    )
    .await;
    let lb_arn = between(&lb, "<LoadBalancerArn>", "</LoadBalancerArn>");
    let tg = query(
        &c,
        "CreateTargetGroup",
        &[
            ("Name", "tg"),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("TargetType", "ip"),
        ],
    )
    .await;
    let tg_arn = between(&tg, "<TargetGroupArn>", "</TargetGroupArn>");
    let listener = query(
        &c,
        "CreateListener",
        &[
            ("LoadBalancerArn", &lb_arn),
            ("Protocol", "HTTP"),
            ("Port", "18080"),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &tg_arn),
        ],
    )
    .await;
    let listener_arn = between(&listener, "<ListenerArn>", "</ListenerArn>");
    let rule = query(
        &c,
        "CreateRule",
        &[
            ("ListenerArn", &listener_arn),
            ("Priority", "10"),
            ("Conditions.member.1.Field", "path-pattern"),
            ("Conditions.member.1.Values.member.1", "/a/*"),
            ("Actions.member.1.Type", "forward"),
            ("Actions.member.1.TargetGroupArn", &tg_arn),
        ],
    )
    .await;
    let rule_arn = between(&rule, "<RuleArn>", "</RuleArn>");
    query(
        &c,
        "RegisterTargets",
        &[
            ("TargetGroupArn", &tg_arn),
            ("Targets.member.1.Id", "10.0.0.1"),
        ],
    )
    .await;
    // IAM: a user with a key and an inline policy, a group it is in, a
    // role, a managed policy attached to the role.
    let iam = |action: &'static str, params: Vec<(&'static str, String)>| {
        let c = c.clone();
        async move {
            let params: Vec<(String, String)> = params
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            let root = wharf_iam::Caller {
                principal: wharf_iam::Principal::Root,
                session: None,
            };
            wharf_iam::dispatch_iam(&c.iam, &root, NOW, action, &params, "seed")
                .await
                .unwrap_or_else(|e| panic!("seeding {action}: {e}"))
        }
    };
    let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*"}]}"#;
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com","AWS":"arn:aws:iam::000000000000:root"},"Action":["sts:AssumeRole","sts:TagSession"]}]}"#;
    iam("CreateUser", vec![("UserName", "fuzz-user".into())]).await;
    let key =
        String::from_utf8(iam("CreateAccessKey", vec![("UserName", "fuzz-user".into())]).await)
            .unwrap();
    words.push(between(&key, "<AccessKeyId>", "</AccessKeyId>"));
    iam(
        "PutUserPolicy",
        vec![
            ("UserName", "fuzz-user".into()),
            ("PolicyName", "inline".into()),
            ("PolicyDocument", allow.into()),
        ],
    )
    .await;
    iam("CreateGroup", vec![("GroupName", "fuzz-group".into())]).await;
    iam(
        "AddUserToGroup",
        vec![
            ("GroupName", "fuzz-group".into()),
            ("UserName", "fuzz-user".into()),
        ],
    )
    .await;
    iam(
        "CreateRole",
        vec![
            ("RoleName", "fuzz-role".into()),
            ("AssumeRolePolicyDocument", trust.into()),
        ],
    )
    .await;
    let policy = String::from_utf8(
        iam(
            "CreatePolicy",
            vec![
                ("PolicyName", "fuzz-policy".into()),
                ("PolicyDocument", allow.into()),
            ],
        )
        .await,
    )
    .unwrap();
    let policy_arn = between(&policy, "<Arn>", "</Arn>");
    iam(
        "AttachRolePolicy",
        vec![
            ("RoleName", "fuzz-role".into()),
            ("PolicyArn", policy_arn.clone()),
        ],
    )
    .await;
    words.extend(
        [
            "fuzz-user",
            "fuzz-group",
            "fuzz-role",
            "fuzz-policy",
            "inline",
            "v1",
            "arn:aws:iam::000000000000:role/fuzz-role",
            "arn:aws:iam::aws:policy/AdministratorAccess",
            allow,
            trust,
        ]
        .map(String::from),
    );
    words.push(policy_arn);
    words.extend([
        lb_arn.clone(),
        tg_arn.clone(),
        listener_arn.clone(),
        rule_arn.clone(),
    ]);
    words.extend(
        [
            "lb",
            "tg",
            "10.0.0.1",
            "HTTP",
            "HTTPS",
            "TCP",
            "forward",
            "redirect",
            "fixed-response",
            "instance",
            "ip",
            "application",
            "network",
            "path-pattern",
            "host-header",
            "http-header",
            "query-string",
            "source-ip",
            "http-request-method",
            "deregistration_delay.timeout_seconds",
            "stickiness.enabled",
            "slow_start.duration_seconds",
            "load_balancing.algorithm.type",
            "idle_timeout.timeout_seconds",
            "200-299",
            "10.0.0.0/8",
        ]
        .map(String::from),
    );
    words.extend(
        [
            instance_arn.as_str(),
            &instance_id,
            "fuzz",
            "default",
            "~managed",
            "web",
            "web:1",
            "web:2",
            "web:0",
            "web:99999999999",
            "svc",
            "/fuzz/group",
            "arn:aws:logs:us-east-1:000000000000:log-group:/fuzz/group",
            "arn:aws:logs:us-east-1:000000000000:log-group:/fuzz/group:*",
            "s1",
            // Enum values and vocabulary handlers branch on.
            "EC2",
            "FARGATE",
            "EXTERNAL",
            "awsvpc",
            "bridge",
            "host",
            "none",
            "DAEMON",
            "REPLICA",
            "TAGS",
            "ACTIVE",
            "INACTIVE",
            "DRAINING",
            "DELETE_IN_PROGRESS",
            "RUNNING",
            "STOPPED",
            "PENDING",
            "PROVISIONING",
            "HEALTHY",
            "UNHEALTHY",
            "tcp",
            "udp",
            "CPU",
            "MEMORY",
            "PORTS",
            "PORTS_UDP",
            "INTEGER",
            "memberOf",
            "distinctInstance",
            "spread",
            "binpack",
            "random",
            "instanceId",
            "cpu",
            "memory",
            "host",
            "attribute:ecs.availability-zone",
            "attribute:ecs.availability-zone == us-east-1a",
            "attribute:ecs.instance-type =~ t2.*",
            "registeredAt > 2018-06-18T22:28:28Z",
            "agentVersion >= 1.2.3 and not (runningTasksCount > 3 || task:group == service:svc)",
            "ec2InstanceId in [a, b, c]",
            "LastEventTime",
            "LogStreamName",
            "ROLLBACK",
            "DESC",
            "ASC",
            "CMD",
            "CMD-SHELL",
            "START",
            "COMPLETE",
            "SUCCESS",
            "ECS",
            "containerInsights",
            "enabled",
            "ERROR",
            "{ $.a = 1 }",
            "{ $.level = \"ERROR\" || $.a > 0 }",
            "[ip, verb, status >= 200]",
            "?ERROR ?42",
            "-ERROR",
            "\"plain text\"",
        ]
        .map(String::from),
    );
    // A secret and parameters, for Secrets Manager and SSM.
    let secret = call(
        &c,
        Service::SecretsManager,
        "CreateSecret",
        json!({"Name": "fuzz-secret", "SecretString": "{\"k\":\"v\"}"}),
    )
    .await;
    words.push(secret["ARN"].as_str().unwrap().into());
    call(
        &c,
        Service::Ssm,
        "PutParameter",
        json!({"Name": "/fuzz/p", "Value": "v", "Type": "SecureString"}),
    )
    .await;
    call(
        &c,
        Service::Ssm,
        "PutParameter",
        json!({"Name": "flat", "Value": "a,b", "Type": "StringList"}),
    )
    .await;
    words.extend(
        [
            "fuzz-secret",
            "AWSCURRENT",
            "AWSPREVIOUS",
            "/fuzz/p",
            "/fuzz",
            "flat",
            "Parameter",
            "SecureString",
        ]
        .map(String::from),
    );
    let names = Names {
        task,
        instance: instance_arn,
        deployment,
        load_balancer: lb_arn,
        target_group: tg_arn,
        listener: listener_arn,
        rule: rule_arn,
    };
    (c, words, names)
}

/// Everything the log store holds.
fn logs_snapshot(c: &Control) -> String {
    let mut out = String::new();
    let l = &c.logs;
    for g in l.list_groups("", None, usize::MAX).unwrap() {
        out.push_str(&format!("{g:?}\n"));
        for s in l.list_streams(&g.name, "", None, usize::MAX).unwrap() {
            out.push_str(&format!("  {s:?}\n"));
            for e in l
                .read_stream(&g.name, &s.name, 0, u128::MAX, true, usize::MAX)
                .unwrap()
            {
                out.push_str(&format!("    {e:?}\n"));
            }
        }
    }
    out
}

/// What the service holds, to tell that a refused call wrote nothing.
async fn state(c: &Control, service: Service) -> String {
    match service {
        Service::Logs => logs_snapshot(c),
        _ => format!("revision {}", c.store.current_revision().await.unwrap()),
    }
}

/// Codes an answer may carry: the model's exceptions and the protocol's own.
fn known_code(service: Service, code: &str) -> bool {
    let modeled = match service {
        Service::Ecs | Service::Agent | Service::Admin | Service::Join => {
            wharf_model::ecs::error_http_status(code)
        }
        Service::Logs => wharf_model::logs::error_http_status(code),
        Service::Elbv2 => wharf_model::elbv2::error_http_status(code),
        Service::Iam => wharf_model::iam::error_http_status(code),
        Service::Sts => wharf_model::sts::error_http_status(code),
        Service::SecretsManager => wharf_model::secretsmanager::error_http_status(code),
        Service::Ssm => wharf_model::ssm::error_http_status(code),
    };
    modeled.is_some()
        || matches!(
            code,
            "SerializationException"
                | "UnknownOperationException"
                | "ValidationException"
                // Join and token revocation, as AWS's auth and lookups answer.
                | "UnrecognizedClientException"
                | "ResourceNotFoundException"
                // awsQuery's own: bad parameters, unknown actions.
                | "ValidationError"
                | "InvalidAction"
                | "MissingAction"
                // IAM and STS: operations Wharf does not implement, and
                // AssumeRole's refusal.
                | "NotImplemented"
                | "AccessDenied"
        )
}

/// What is wrong with one call, if anything.
async fn check(c: &Control, service: Service, op: &str, body: Vec<u8>) -> Option<String> {
    let before = state(c, service).await;
    let (c2, op, body) = (c.clone(), op.to_string(), body);
    let name = op.clone();
    let call = tokio::spawn(async move { dispatch(&c2, service, &name, &body).await });
    let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Err(_) => return Some(format!("no answer within {CALL_TIMEOUT:?}")),
        Ok(Err(e)) if e.is_panic() => {
            let p = e.into_panic();
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Some(format!("panicked: {msg}"));
        }
        Ok(Err(e)) => return Some(format!("task failed: {e}")),
        Ok(Ok(r)) => r,
    };
    match result {
        Ok(out) if service.query_schema().is_some() => {
            let xml = String::from_utf8_lossy(&out);
            (!(xml.starts_with(&format!("<{op}Response"))
                && xml.ends_with(&format!("</{op}Response>"))))
            .then(|| format!("answered with a body that is not its XML response: {xml:?}"))
        }
        Ok(out) => match serde_json::from_slice::<Value>(&out) {
            Ok(v) if v.is_object() => None,
            _ => Some(format!(
                "answered with a body that is not a JSON object: {:?}",
                String::from_utf8_lossy(&out)
            )),
        },
        Err(e) if !(400..500).contains(&e.status) => Some(format!("answered {}: {e}", e.status)),
        Err(e) if !known_code(service, &e.code) => Some(format!("unknown error code: {e}")),
        // Each report of a batch is its own write, by design (ARCHITECTURE:
        // ReportTaskStates): one refused leaves the others applied.
        Err(_) if (service, op.as_str()) == (Service::Agent, REPORT_TASK_STATES) => None,
        Err(e) => {
            let after = state(c, service).await;
            (after != before).then(|| format!("refused ({e}) but wrote: {before} -> {after}"))
        }
    }
}

fn fnv(s: &str, seed: u64) -> u64 {
    s.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_body_crashes_hangs_or_writes_when_refused() {
    let seed: u64 = env("WHARF_FUZZ_SEED").unwrap_or(11);
    let only: Option<String> = env("WHARF_FUZZ_OP");
    let iterations: usize = env("WHARF_FUZZ_ITERATIONS").unwrap_or(ITERATIONS);
    let started = Instant::now();
    let mut findings = vec![];
    let mut calls = 0;
    let ops = operations();
    eprintln!("TIME schemas {:?}", started.elapsed());
    let (probe, probe_words, probe_names) = seeded_with_names().await;
    for op in ops {
        let full = format!("{:?}.{}", op.service, op.name);
        if only.as_deref().is_some_and(|o| o != full) {
            continue;
        }
        let op_started = Instant::now();
        // An operation refused as unsupported before decoding needs few
        // bodies, and no state of its own.
        let unsupported = match dispatch(&probe, op.service, op.name, b"{}").await {
            Err(e) => {
                matches!(
                    e.code.as_str(),
                    "UnsupportedFeatureException" | "InvalidOperationException"
                ) && e.message.contains("not")
                    || (matches!(op.service, Service::Iam | Service::Sts)
                        && e.code == "NotImplemented")
                    || (op.service == Service::SecretsManager
                        && e.message.starts_with("Wharf does not"))
                    || (op.service == Service::Elbv2
                        && e.code == "OperationNotPermitted"
                        && e.message
                            .ends_with("is not supported by Wharf's load balancer.")
                        && e.message.starts_with(op.name))
            }
            Ok(_) => false,
        };
        let (c, words, names) = if unsupported {
            (probe.clone(), probe_words.clone(), probe_names.clone())
        } else {
            seeded_with_names().await
        };
        let examples = examples::of(op.service, op.name, &names);
        let seeded_in = op_started.elapsed();
        let n = if unsupported {
            UNSUPPORTED_ITERATIONS
        } else {
            iterations
        };
        let mut gen = bodies::Gen {
            rng: rand::rngs::StdRng::seed_from_u64(fnv(&full, seed)),
            words: &words,
            caps: &[("waitMillis", 20)],
        };
        for i in 0..n {
            // Half from a valid example where there is one, half from the schema alone.
            let body = match examples.get(i / 2 % examples.len().max(1)) {
                Some(example) if i % 2 == 0 => gen.mutated(example, &op.schema),
                _ => gen.body(&op.schema),
            };
            calls += 1;
            if let Some(what) = check(&c, op.service, op.name, body.clone()).await {
                let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("fuzz-{full}-{seed}-{i}.json"));
                let _ = std::fs::write(&file, &body);
                let shown = String::from_utf8_lossy(&body[..body.len().min(600)]).into_owned();
                findings.push(format!(
                    "{full} (WHARF_FUZZ_SEED={seed}, body {i}, {} bytes, saved in {}): {what}\n    body: {shown}",
                    body.len(),
                    file.display()
                ));
                if findings.len() >= 40 {
                    break;
                }
            }
        }
        if std::env::var("WHARF_FUZZ_TIMES").is_ok() {
            eprintln!(
                "TIME {full} {:?} seed {:?}",
                op_started.elapsed(),
                seeded_in
            );
        }
    }
    // Names that are no operation at all.
    let (c, _) = seeded().await;
    for service in [
        Service::Ecs,
        Service::Logs,
        Service::Agent,
        Service::Elbv2,
        Service::Iam,
        Service::Sts,
        Service::SecretsManager,
        Service::Ssm,
    ] {
        for op in [
            "",
            "Nonexistent",
            "createCluster",
            "CreateCluster ",
            "\u{0}",
        ] {
            if let Some(what) = check(&c, service, op, b"{}".to_vec()).await {
                findings.push(format!("{service:?} operation {op:?}: {what}"));
            }
        }
    }
    eprintln!("{calls} calls in {:.1?}", started.elapsed());
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
}
