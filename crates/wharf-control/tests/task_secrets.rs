//! A task's secrets as its agent asks for them (`GetTaskSecrets`): read
//! with the execution role's permissions, each refusal in ECS's words.

mod common;

use common::{agent, cluster_with_instance, control, ecs, NOW};
use serde_json::{json, Value};
use wharf_control::Control;

async fn iam(c: &Control, action: &str, params: &[(&str, &str)]) {
    let root = wharf_iam::Caller {
        principal: wharf_iam::Principal::Root,
        session: None,
    };
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    wharf_iam::dispatch_iam(&c.iam, &root, NOW, action, &params, "t")
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"));
}

async fn sm(c: &Control, op: &str, body: Value) -> Value {
    let scope = wharf_secretsmanager::Scope {
        region: "us-east-1".into(),
        account: "000000000000".into(),
    };
    let allow = |_: &str, _: Option<&wharf_secretsmanager::Judged>| Ok(());
    let out = wharf_secretsmanager::dispatch(
        &c.secrets,
        &scope,
        NOW,
        op,
        body.to_string().as_bytes(),
        &allow,
    )
    .await
    .unwrap();
    serde_json::from_slice(&out).unwrap()
}

async fn ssm(c: &Control, op: &str, body: Value) {
    let scope = wharf_ssm::Scope {
        region: "us-east-1".into(),
        account: "000000000000".into(),
    };
    wharf_ssm::dispatch(&c.ssm, &scope, NOW, op, body.to_string().as_bytes())
        .await
        .unwrap();
}

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// A role `name` that ECS tasks may assume, allowed `actions` on everything.
async fn role(c: &Control, name: &str, trust: &str, actions: &[&str]) -> String {
    iam(
        c,
        "CreateRole",
        &[("RoleName", name), ("AssumeRolePolicyDocument", trust)],
    )
    .await;
    if !actions.is_empty() {
        let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]});
        iam(
            c,
            "PutRolePolicy",
            &[
                ("RoleName", name),
                ("PolicyName", "p"),
                ("PolicyDocument", &policy.to_string()),
            ],
        )
        .await;
    }
    format!("arn:aws:iam::000000000000:role/{name}")
}

/// A task of a definition whose one container has `secrets`, run with
/// `execution_role`; its ARN.
async fn task(
    c: &Control,
    instance: &str,
    family: &str,
    execution_role: &str,
    secrets: Value,
) -> String {
    agent(c, "Poll", json!({"cluster": "c", "containerInstanceArn": instance, "afterRevision": 0, "waitMillis": 0}))
        .await
        .unwrap();
    ecs(c, "RegisterTaskDefinition", json!({"family": family, "executionRoleArn": execution_role,
        "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 32, "secrets": secrets}]}))
        .await
        .unwrap();
    let t = ecs(
        c,
        "RunTask",
        json!({"cluster": "c", "taskDefinition": family}),
    )
    .await
    .unwrap();
    t["tasks"][0]["taskArn"].as_str().unwrap().to_string()
}

async fn secrets_of(c: &Control, task: &str) -> Result<Vec<(String, String)>, String> {
    match agent(c, "GetTaskSecrets", json!({"taskArn": task})).await {
        Ok(v) => Ok(v["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().into(),
                    s["value"].as_str().unwrap().into(),
                )
            })
            .collect()),
        Err(e) => Err(e.message),
    }
}

#[tokio::test]
async fn values_by_reference_key_and_stage() {
    let c = control();
    let instance = cluster_with_instance(&c).await;
    let exec = role(
        &c,
        "exec",
        TRUST,
        &["secretsmanager:GetSecretValue", "ssm:GetParameters"],
    )
    .await;
    let arn = sm(
        &c,
        "CreateSecret",
        json!({"Name": "db", "SecretString": r#"{"password":"one","port":5432}"#}),
    )
    .await["ARN"]
        .as_str()
        .unwrap()
        .to_string();
    sm(
        &c,
        "PutSecretValue",
        json!({"SecretId": "db", "SecretString": r#"{"password":"two","port":5432}"#}),
    )
    .await;
    ssm(
        &c,
        "PutParameter",
        json!({"Name": "/app/token", "Value": "tok", "Type": "SecureString"}),
    )
    .await;
    ssm(
        &c,
        "PutParameter",
        json!({"Name": "plain", "Value": "p", "Type": "String"}),
    )
    .await;
    let partial = arn.rsplit_once('-').unwrap().0.to_string();
    let t = task(
        &c,
        &instance,
        "f",
        &exec,
        json!([
        {"name": "NOW", "valueFrom": format!("{arn}:password::")},
        {"name": "BEFORE", "valueFrom": format!("{partial}:password:AWSPREVIOUS:")},
        {"name": "PORT", "valueFrom": format!("{arn}:port::")},
        {"name": "TOKEN", "valueFrom": "arn:aws:ssm:us-east-1:000000000000:parameter/app/token"},
        {"name": "PLAIN", "valueFrom": "plain"}]),
    )
    .await;
    let got = secrets_of(&c, &t).await.unwrap();
    let pairs: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("NOW", "two"),
            ("BEFORE", "one"),
            ("PORT", "5432"),
            ("TOKEN", "tok"),
            ("PLAIN", "p")
        ]
    );
}

#[tokio::test]
async fn each_refusal_stops_the_task_in_ecs_words() {
    let c = control();
    let instance = cluster_with_instance(&c).await;
    let arn = sm(
        &c,
        "CreateSecret",
        json!({"Name": "db", "SecretString": "{}"}),
    )
    .await["ARN"]
        .as_str()
        .unwrap()
        .to_string();
    sm(
        &c,
        "CreateSecret",
        json!({"Name": "bin", "SecretBinary": "AAE="}),
    )
    .await;
    let prefix = "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed";
    // The role may read nothing.
    let none = role(&c, "none", TRUST, &[]).await;
    let t = task(
        &c,
        &instance,
        "a",
        &none,
        json!([{"name": "X", "valueFrom": arn.clone()}]),
    )
    .await;
    let why = secrets_of(&c, &t).await.unwrap_err();
    assert!(
        why.starts_with(&format!("{prefix}: unable to retrieve secret from asm")),
        "{why}"
    );
    assert!(
        why.contains("AccessDeniedException: User: arn:aws:sts::000000000000:assumed-role/none/"),
        "{why}"
    );
    assert!(why.contains(&format!("secretsmanager:GetSecretValue on resource: {arn} because no identity-based policy allows")), "{why}");
    // A role tasks may not assume.
    let other = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let ec2 = role(&c, "ec2", other, &["secretsmanager:*"]).await;
    let t = task(
        &c,
        &instance,
        "b",
        &ec2,
        json!([{"name": "X", "valueFrom": arn.clone()}]),
    )
    .await;
    let why = secrets_of(&c, &t).await.unwrap_err();
    assert!(why.contains("unable to assume the execution role"), "{why}");
    // A key the secret lacks, a binary secret, a secret that is not there.
    let all = role(
        &c,
        "all",
        TRUST,
        &["secretsmanager:GetSecretValue", "ssm:GetParameters"],
    )
    .await;
    for (family, value_from, words) in [
        ("c1", format!("{arn}:password::"), "did not contain json key password"),
        ("c2", "arn:aws:secretsmanager:us-east-1:000000000000:secret:bin".to_string(), "is binary"),
        ("c3", "arn:aws:secretsmanager:us-east-1:000000000000:secret:gone".to_string(), "ResourceNotFoundException"),
        ("c4", "arn:aws:secretsmanager:us-east-1:111111111111:secret:db".to_string(), "another account"),
        ("c5", "/not/there".to_string(), "unable to retrieve secrets from ssm: service call has been retried 1 time(s): invalid parameters: /not/there"),
        ("c6", "arn:aws:s3:::bucket/key".to_string(), "neither a Secrets Manager secret nor an SSM parameter"),
    ] {
        let t = task(&c, &instance, family, &all, json!([{"name": "X", "valueFrom": value_from}])).await;
        let why = secrets_of(&c, &t).await.unwrap_err();
        assert!(why.starts_with(prefix) && why.contains(words), "{family}: {why}");
    }
}
