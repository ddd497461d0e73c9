use super::*;
use serde_json::{json, Value as Json};
use std::sync::Arc;
use wharf_store::{MemStore, RangeRequest, Store};

const REGION: &str = "us-east-1";

struct T {
    sm: SecretsManager,
    store: Arc<MemStore>,
    scope: Scope,
}

fn setup() -> T {
    let store = Arc::new(MemStore::new());
    T {
        sm: SecretsManager::new(store.clone(), Arc::new(wharf_seal::Sealer::ephemeral())),
        store,
        scope: Scope {
            region: REGION.into(),
            account: "123456789012".into(),
        },
    }
}

fn allow_all(_: &str, _: Option<&crate::Judged>) -> Result<(), AwsError> {
    Ok(())
}

impl T {
    async fn call_at(&self, now: Millis, op: &str, body: Json) -> Result<Json, AwsError> {
        let out = dispatch(
            &self.sm,
            &self.scope,
            now,
            op,
            body.to_string().as_bytes(),
            &allow_all,
        )
        .await?;
        Ok(serde_json::from_slice(&out).unwrap())
    }
    async fn call(&self, op: &str, body: Json) -> Result<Json, AwsError> {
        self.call_at(1_000_000, op, body).await
    }
    async fn ok(&self, op: &str, body: Json) -> Json {
        self.call(op, body)
            .await
            .unwrap_or_else(|e| panic!("{op}: {e:?}"))
    }
    async fn fails(&self, op: &str, body: Json) -> AwsError {
        self.call(op, body).await.expect_err(op)
    }
}

#[tokio::test]
async fn create_get_and_versions_with_staging_labels() {
    let t = setup();
    let created = t
        .ok(
            "CreateSecret",
            json!({"Name": "prod/db", "SecretString": "one", "Description": "db"}),
        )
        .await;
    let arn = created["ARN"].as_str().unwrap().to_string();
    assert!(arn.starts_with("arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-"));
    assert_eq!(
        arn.len(),
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-".len() + 6
    );
    let v1 = created["VersionId"].as_str().unwrap().to_string();
    // By name, partial ARN and full ARN alike.
    for id in [
        "prod/db",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db",
        arn.as_str(),
    ] {
        let got = t.ok("GetSecretValue", json!({"SecretId": id})).await;
        assert_eq!(got["SecretString"], "one", "{id}");
        assert_eq!(got["VersionStages"], json!(["AWSCURRENT"]));
    }
    // A full ARN with another suffix, or of another region, is not it.
    let other = format!("{}XYZ", &arn[..arn.len() - 3]);
    assert_eq!(
        t.fails("GetSecretValue", json!({"SecretId": other}))
            .await
            .code,
        "ResourceNotFoundException"
    );
    let e = t
        .fails(
            "GetSecretValue",
            json!({"SecretId": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db"}),
        )
        .await;
    assert_eq!(
        (e.code.as_str(), e.status),
        ("ResourceNotFoundException", 400)
    );

    let put = t
        .ok(
            "PutSecretValue",
            json!({"SecretId": "prod/db", "SecretString": "two"}),
        )
        .await;
    let v2 = put["VersionId"].as_str().unwrap().to_string();
    assert_eq!(put["VersionStages"], json!(["AWSCURRENT"]));
    assert_eq!(
        t.ok("GetSecretValue", json!({"SecretId": "prod/db"})).await["SecretString"],
        "two"
    );
    let prev = t
        .ok(
            "GetSecretValue",
            json!({"SecretId": "prod/db", "VersionStage": "AWSPREVIOUS"}),
        )
        .await;
    assert_eq!(
        (prev["SecretString"].as_str(), prev["VersionId"].as_str()),
        (Some("one"), Some(v1.as_str()))
    );
    t.ok(
        "PutSecretValue",
        json!({"SecretId": "prod/db", "SecretString": "three"}),
    )
    .await;
    // v1 lost AWSPREVIOUS: it is deprecated, listed only on request.
    let d = t.ok("DescribeSecret", json!({"SecretId": "prod/db"})).await;
    let stages = d["VersionIdsToStages"].as_object().unwrap();
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[&v2], json!(["AWSPREVIOUS"]));
    assert!(!stages.contains_key(&v1));
    let listed = t
        .ok("ListSecretVersionIds", json!({"SecretId": "prod/db"}))
        .await;
    assert_eq!(listed["Versions"].as_array().unwrap().len(), 2);
    let listed = t
        .ok(
            "ListSecretVersionIds",
            json!({"SecretId": "prod/db", "IncludeDeprecated": true}),
        )
        .await;
    assert_eq!(listed["Versions"].as_array().unwrap().len(), 3);
    // The old version is still readable by its ID.
    assert_eq!(
        t.ok(
            "GetSecretValue",
            json!({"SecretId": "prod/db", "VersionId": v1})
        )
        .await["SecretString"],
        "one"
    );
    let e = t
        .fails(
            "GetSecretValue",
            json!({"SecretId": "prod/db", "VersionStage": "AWSPENDING"}),
        )
        .await;
    assert!(e.message.contains("staging label: AWSPENDING"), "{e:?}");
    let e = t
        .fails(
            "GetSecretValue",
            json!({"SecretId": "prod/db", "VersionId": v1, "VersionStage": "AWSCURRENT"}),
        )
        .await;
    assert_eq!(e.code, "InvalidRequestException");
}

#[tokio::test]
async fn a_retried_request_is_one_version_and_a_changed_one_is_refused() {
    let t = setup();
    let token = "a".repeat(32);
    let body = json!({"Name": "s", "SecretString": "v", "ClientRequestToken": token});
    let a = t.ok("CreateSecret", body.clone()).await;
    let b = t.ok("CreateSecret", body).await;
    assert_eq!(a["ARN"], b["ARN"]);
    let e = t
        .fails(
            "CreateSecret",
            json!({"Name": "s", "SecretString": "other", "ClientRequestToken": token}),
        )
        .await;
    assert_eq!(e.code, "ResourceExistsException");
    let e = t
        .fails("CreateSecret", json!({"Name": "s", "SecretString": "v"}))
        .await;
    assert_eq!(e.code, "ResourceExistsException");
    let t2 = "b".repeat(32);
    t.ok(
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "w", "ClientRequestToken": t2}),
    )
    .await;
    t.ok(
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "w", "ClientRequestToken": t2}),
    )
    .await;
    let e = t
        .fails(
            "PutSecretValue",
            json!({"SecretId": "s", "SecretString": "x", "ClientRequestToken": t2}),
        )
        .await;
    assert!(
        e.message.contains("can't modify an existing version"),
        "{e:?}"
    );
    let all = t
        .ok(
            "ListSecretVersionIds",
            json!({"SecretId": "s", "IncludeDeprecated": true}),
        )
        .await;
    assert_eq!(all["Versions"].as_array().unwrap().len(), 2);
    let e = t
        .fails(
            "PutSecretValue",
            json!({"SecretId": "s", "SecretString": "x", "ClientRequestToken": "short"}),
        )
        .await;
    assert_eq!(e.code, "InvalidParameterException");
}

#[tokio::test]
async fn values_are_sealed_in_the_store() {
    let t = setup();
    t.ok(
        "CreateSecret",
        json!({"Name": "plain", "SecretString": "correct-horse-battery"}),
    )
    .await;
    t.ok(
        "CreateSecret",
        json!({"Name": "bin", "SecretBinary": "AAECAwQ="}),
    )
    .await;
    let all = t.store.range(RangeRequest::prefix("")).await.unwrap();
    assert!(!all.kvs.is_empty());
    for kv in &all.kvs {
        let text = String::from_utf8_lossy(&kv.value);
        assert!(!text.contains("correct-horse-battery"), "{}", kv.key);
        assert!(!text.contains("AAECAwQ="), "{}", kv.key);
    }
    let got = t.ok("GetSecretValue", json!({"SecretId": "bin"})).await;
    assert_eq!(got["SecretBinary"], "AAECAwQ=");
    assert!(got.get("SecretString").is_none());
    // Another server with another key cannot read them.
    let other = SecretsManager::new(t.store.clone(), Arc::new(wharf_seal::Sealer::ephemeral()));
    let e = other
        .value(&t.scope, 1, "plain", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, "DecryptionFailure");
}

#[tokio::test]
async fn update_secret_and_moving_labels() {
    let t = setup();
    let v1 = t
        .ok("CreateSecret", json!({"Name": "s", "SecretString": "1"}))
        .await["VersionId"]
        .as_str()
        .unwrap()
        .to_string();
    let v2 = t
        .ok(
            "UpdateSecret",
            json!({"SecretId": "s", "SecretString": "2", "Description": "new"}),
        )
        .await["VersionId"]
        .as_str()
        .unwrap()
        .to_string();
    let d = t.ok("DescribeSecret", json!({"SecretId": "s"})).await;
    assert_eq!(d["Description"], "new");
    // Metadata only: no new version.
    let u = t
        .ok(
            "UpdateSecret",
            json!({"SecretId": "s", "KmsKeyId": "alias/aws/secretsmanager"}),
        )
        .await;
    assert!(u.get("VersionId").is_none());
    // Moving AWSCURRENT back needs RemoveFromVersionId; AWSPREVIOUS follows.
    let e = t
        .fails(
            "UpdateSecretVersionStage",
            json!({"SecretId": "s", "VersionStage": "AWSCURRENT", "MoveToVersionId": v1}),
        )
        .await;
    assert_eq!(e.code, "InvalidParameterException");
    t.ok(
        "UpdateSecretVersionStage",
        json!({"SecretId": "s", "VersionStage": "AWSCURRENT", "MoveToVersionId": v1, "RemoveFromVersionId": v2}),
    )
    .await;
    assert_eq!(
        t.ok("GetSecretValue", json!({"SecretId": "s"})).await["SecretString"],
        "1"
    );
    assert_eq!(
        t.ok(
            "GetSecretValue",
            json!({"SecretId": "s", "VersionStage": "AWSPREVIOUS"})
        )
        .await["SecretString"],
        "2"
    );
    // A label of one's own, then removed.
    t.ok(
        "UpdateSecretVersionStage",
        json!({"SecretId": "s", "VersionStage": "blue", "MoveToVersionId": v2}),
    )
    .await;
    assert_eq!(
        t.ok(
            "GetSecretValue",
            json!({"SecretId": "s", "VersionStage": "blue"})
        )
        .await["SecretString"],
        "2"
    );
    t.ok(
        "UpdateSecretVersionStage",
        json!({"SecretId": "s", "VersionStage": "blue", "RemoveFromVersionId": v2}),
    )
    .await;
    t.fails(
        "GetSecretValue",
        json!({"SecretId": "s", "VersionStage": "blue"}),
    )
    .await;
    let e = t
        .fails(
            "UpdateSecretVersionStage",
            json!({"SecretId": "s", "VersionStage": "AWSCURRENT", "RemoveFromVersionId": v1}),
        )
        .await;
    assert!(e.message.contains("AWSCURRENT"), "{e:?}");
    let e = t
        .fails(
            "UpdateSecret",
            json!({"SecretId": "s", "SecretString": "a", "SecretBinary": "AA=="}),
        )
        .await;
    assert!(e.message.contains("both"), "{e:?}");
}

#[tokio::test]
async fn deletion_has_a_recovery_window() {
    let t = setup();
    t.ok("CreateSecret", json!({"Name": "s", "SecretString": "v"}))
        .await;
    let e = t
        .fails(
            "DeleteSecret",
            json!({"SecretId": "s", "RecoveryWindowInDays": 3}),
        )
        .await;
    assert_eq!(e.code, "InvalidParameterException");
    let e = t
        .fails(
            "DeleteSecret",
            json!({"SecretId": "s", "RecoveryWindowInDays": 7, "ForceDeleteWithoutRecovery": true}),
        )
        .await;
    assert!(e.message.contains("conjunction"), "{e:?}");
    let d = t
        .ok(
            "DeleteSecret",
            json!({"SecretId": "s", "RecoveryWindowInDays": 7}),
        )
        .await;
    assert_eq!(
        d["DeletionDate"].as_f64().unwrap(),
        (1_000_000.0 + 7.0 * 86_400_000.0) / 1000.0
    );
    let e = t.fails("GetSecretValue", json!({"SecretId": "s"})).await;
    assert!(e.message.contains("marked for deletion"), "{e:?}");
    assert!(t.ok("DescribeSecret", json!({"SecretId": "s"})).await["DeletedDate"].is_number());
    let e = t
        .fails("CreateSecret", json!({"Name": "s", "SecretString": "v"}))
        .await;
    assert!(e.message.contains("scheduled for deletion"), "{e:?}");
    assert_eq!(
        t.ok("ListSecrets", json!({})).await["SecretList"],
        json!([])
    );
    assert_eq!(
        t.ok("ListSecrets", json!({"IncludePlannedDeletion": true}))
            .await["SecretList"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    t.ok("RestoreSecret", json!({"SecretId": "s"})).await;
    assert_eq!(
        t.ok("GetSecretValue", json!({"SecretId": "s"})).await["SecretString"],
        "v"
    );
    // After the window the secret is gone, and its name free.
    t.ok(
        "DeleteSecret",
        json!({"SecretId": "s", "RecoveryWindowInDays": 7}),
    )
    .await;
    let later = 1_000_000 + 7 * 86_400_000 + 1;
    let e = t
        .call_at(later, "DescribeSecret", json!({"SecretId": "s"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "ResourceNotFoundException");
    t.call_at(
        later,
        "CreateSecret",
        json!({"Name": "s", "SecretString": "again"}),
    )
    .await
    .unwrap();
    // Forced: at once.
    t.call_at(
        later,
        "DeleteSecret",
        json!({"SecretId": "s", "ForceDeleteWithoutRecovery": true}),
    )
    .await
    .unwrap();
    assert!(t
        .store
        .range(RangeRequest::prefix("/secretsmanager/"))
        .await
        .unwrap()
        .kvs
        .is_empty());
}

#[tokio::test]
async fn list_filters_sorts_and_pages() {
    let t = setup();
    for (i, name) in ["app/a", "app/b", "db/c", "db/d", "other"]
        .iter()
        .enumerate()
    {
        t.call_at(
            1000 + i as i64,
            "CreateSecret",
            json!({"Name": name, "SecretString": "v", "Description": format!("Number {i}"), "Tags": [{"Key": "team", "Value": if i % 2 == 0 {"red"} else {"blue"}}]}),
        )
        .await
        .unwrap();
    }
    let names = |v: &Json| -> Vec<String> {
        v["SecretList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Name"].as_str().unwrap().to_string())
            .collect()
    };
    let all = t.ok("ListSecrets", json!({})).await;
    assert_eq!(names(&all), ["app/a", "app/b", "db/c", "db/d", "other"]);
    assert!(all.get("NextToken").is_none());
    let by = t
        .ok(
            "ListSecrets",
            json!({"Filters": [{"Key": "name", "Values": ["db/"]}]}),
        )
        .await;
    assert_eq!(names(&by), ["db/c", "db/d"]);
    let not = t
        .ok(
            "ListSecrets",
            json!({"Filters": [{"Key": "name", "Values": ["!db/"]}]}),
        )
        .await;
    assert_eq!(names(&not), ["app/a", "app/b", "other"]);
    let tagged = t
        .ok(
            "ListSecrets",
            json!({"Filters": [{"Key": "tag-value", "Values": ["blue"]}]}),
        )
        .await;
    assert_eq!(names(&tagged), ["app/b", "db/d"]);
    let desc = t
        .ok(
            "ListSecrets",
            json!({"Filters": [{"Key": "description", "Values": ["number 3"]}]}),
        )
        .await;
    assert_eq!(names(&desc), ["db/d"]);
    let words = t
        .ok(
            "ListSecrets",
            json!({"Filters": [{"Key": "all", "Values": ["RED"]}]}),
        )
        .await;
    assert_eq!(names(&words), ["app/a", "db/c", "other"]);
    let rev = t
        .ok(
            "ListSecrets",
            json!({"SortOrder": "desc", "SortBy": "name"}),
        )
        .await;
    assert_eq!(names(&rev), ["other", "db/d", "db/c", "app/b", "app/a"]);
    // Pages of two, in order, each secret once.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"MaxResults": 2});
        if let Some(tok) = &token {
            body["NextToken"] = json!(tok);
        }
        let page = t.ok("ListSecrets", body).await;
        seen.extend(names(&page));
        match page.get("NextToken").and_then(|v| v.as_str()) {
            Some(tok) => token = Some(tok.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["app/a", "app/b", "db/c", "db/d", "other"]);
    assert_eq!(
        t.fails("ListSecrets", json!({"NextToken": "!!"}))
            .await
            .code,
        "InvalidNextTokenException"
    );
    assert_eq!(
        t.fails("ListSecrets", json!({"MaxResults": 0})).await.code,
        "InvalidParameterException"
    );
    assert_eq!(
        t.fails(
            "ListSecrets",
            json!({"Filters": [{"Key": "color", "Values": ["x"]}]})
        )
        .await
        .code,
        "InvalidParameterException"
    );
}

#[tokio::test]
async fn tags_policies_and_batch_reads() {
    let t = setup();
    t.ok("CreateSecret", json!({"Name": "a", "SecretString": "1"}))
        .await;
    t.ok("CreateSecret", json!({"Name": "b", "SecretString": "2"}))
        .await;
    t.ok(
        "TagResource",
        json!({"SecretId": "a", "Tags": [{"Key": "k", "Value": "v"}]}),
    )
    .await;
    let e = t
        .fails(
            "TagResource",
            json!({"SecretId": "a", "Tags": [{"Key": "aws:x", "Value": "v"}]}),
        )
        .await;
    assert!(e.message.contains("aws:"), "{e:?}");
    assert_eq!(
        t.ok("DescribeSecret", json!({"SecretId": "a"})).await["Tags"],
        json!([{"Key": "k", "Value": "v"}])
    );
    t.ok("UntagResource", json!({"SecretId": "a", "TagKeys": ["k"]}))
        .await;
    assert!(t
        .ok("DescribeSecret", json!({"SecretId": "a"}))
        .await
        .get("Tags")
        .is_none());

    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/r"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
    t.ok(
        "PutResourcePolicy",
        json!({"SecretId": "a", "ResourcePolicy": policy}),
    )
    .await;
    assert_eq!(
        t.ok("GetResourcePolicy", json!({"SecretId": "a"})).await["ResourcePolicy"],
        policy
    );
    let public = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
    let e = t
        .fails(
            "PutResourcePolicy",
            json!({"SecretId": "a", "ResourcePolicy": public, "BlockPublicPolicy": true}),
        )
        .await;
    assert_eq!(e.code, "PublicPolicyException");
    let e = t
        .fails(
            "PutResourcePolicy",
            json!({"SecretId": "a", "ResourcePolicy": "{"}),
        )
        .await;
    assert_eq!(e.code, "MalformedPolicyDocumentException");
    let v = t
        .ok(
            "ValidateResourcePolicy",
            json!({"ResourcePolicy": "{\"Statement\": 1}"}),
        )
        .await;
    assert_eq!(v["PolicyValidationPassed"], false);
    t.ok("DeleteResourcePolicy", json!({"SecretId": "a"})).await;
    assert!(t
        .ok("GetResourcePolicy", json!({"SecretId": "a"}))
        .await
        .get("ResourcePolicy")
        .is_none());

    // The guard is asked for each secret; a refusal is that secret's error.
    let deny_b = |_: &str, s: Option<&crate::Judged>| -> Result<(), AwsError> {
        if s.is_some_and(|s| s.arn.contains(":secret:b-")) {
            Err(AwsError::client("AccessDeniedException", "no"))
        } else {
            Ok(())
        }
    };
    let body = json!({"SecretIdList": ["a", "b", "missing"]}).to_string();
    let out = dispatch(
        &t.sm,
        &t.scope,
        5,
        "BatchGetSecretValue",
        body.as_bytes(),
        &deny_b,
    )
    .await
    .unwrap();
    let out: Json = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["SecretValues"].as_array().unwrap().len(), 1);
    assert_eq!(out["SecretValues"][0]["SecretString"], "1");
    let codes: Vec<&str> = out["Errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ErrorCode"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["AccessDeniedException", "ResourceNotFoundException"]
    );
}

#[tokio::test]
async fn refusals_name_what_is_not_done() {
    let t = setup();
    let e = t.fails("CreateSecret", json!({"Name": "bad name!"})).await;
    assert_eq!(
        (e.code.as_str(), e.status),
        ("InvalidParameterException", 400)
    );
    let e = t
        .fails(
            "CreateSecret",
            json!({"Name": "r", "AddReplicaRegions": [{"Region": "eu-west-1"}]}),
        )
        .await;
    assert!(e.message.contains("replicate"), "{e:?}");
    t.ok("CreateSecret", json!({"Name": "r"})).await;
    let e = t.fails("GetSecretValue", json!({"SecretId": "r"})).await;
    assert!(e.message.contains("AWSCURRENT"), "{e:?}");
    let e = t.fails("RotateSecret", json!({"SecretId": "r"})).await;
    assert!(e.message.contains("rotate"), "{e:?}");
    let e = t.fails("PutSecretValue", json!({"SecretId": "r"})).await;
    assert!(e.message.contains("SecretString or SecretBinary"), "{e:?}");
    let e = t
        .fails(
            "CreateSecret",
            json!({"Name": "big", "SecretString": "x".repeat(65_537)}),
        )
        .await;
    assert_eq!(e.code, "InvalidParameterException");
    assert_eq!(
        t.fails("Nope", json!({})).await.code,
        "UnknownOperationException"
    );
    assert_eq!(
        t.call("DescribeSecret", json!({"SecretId": 5}))
            .await
            .unwrap_err()
            .code,
        "SerializationException"
    );
}

#[tokio::test]
async fn random_passwords_keep_their_rules() {
    let t = setup();
    for _ in 0..20 {
        let p = t
            .ok(
                "GetRandomPassword",
                json!({"PasswordLength": 12, "ExcludePunctuation": true}),
            )
            .await;
        let p = p["RandomPassword"].as_str().unwrap();
        assert_eq!(p.len(), 12);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(p.chars().any(|c| c.is_ascii_lowercase()));
        assert!(p.chars().any(|c| c.is_ascii_uppercase()));
        assert!(p.chars().any(|c| c.is_ascii_digit()));
    }
    let p = t
        .ok("GetRandomPassword", json!({"ExcludeCharacters": "abc"}))
        .await;
    let p = p["RandomPassword"].as_str().unwrap();
    assert_eq!(p.len(), 32);
    assert!(!p.contains(['a', 'b', 'c']));
    assert_eq!(
        t.fails("GetRandomPassword", json!({"PasswordLength": 0}))
            .await
            .code,
        "InvalidParameterException"
    );
    let e = t
        .fails(
            "GetRandomPassword",
            json!({"PasswordLength": 2, "IncludeSpace": true}),
        )
        .await;
    assert_eq!(e.code, "InvalidParameterException");
}

#[tokio::test]
async fn version_pages_neither_repeat_nor_skip_as_versions_come() {
    let t = setup();
    t.ok("CreateSecret", json!({"Name": "s", "SecretString": "0"}))
        .await;
    for i in 1..5 {
        t.call_at(
            1_000_000 + i,
            "PutSecretValue",
            json!({"SecretId": "s", "SecretString": i.to_string()}),
        )
        .await
        .unwrap();
    }
    let ids = |v: &Json| -> Vec<String> {
        v["Versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["VersionId"].as_str().unwrap().to_string())
            .collect()
    };
    let first = t
        .ok(
            "ListSecretVersionIds",
            json!({"SecretId": "s", "IncludeDeprecated": true, "MaxResults": 2}),
        )
        .await;
    // A version added between pages comes first, not in the next page.
    t.call_at(
        2_000_000,
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "new"}),
    )
    .await
    .unwrap();
    let mut seen = ids(&first);
    let mut token = first["NextToken"].as_str().map(str::to_string);
    while let Some(tok) = token {
        let page = t
            .ok("ListSecretVersionIds", json!({"SecretId": "s", "IncludeDeprecated": true, "MaxResults": 2, "NextToken": tok}))
            .await;
        seen.extend(ids(&page));
        token = page["NextToken"].as_str().map(str::to_string);
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 5);
    let e = t
        .fails(
            "ListSecretVersionIds",
            json!({"SecretId": "s", "NextToken": "%%"}),
        )
        .await;
    assert_eq!(e.code, "InvalidNextTokenException");
    // No KMS: a key of one's own is refused, not recorded and ignored.
    let e = t
        .fails(
            "CreateSecret",
            json!({"Name": "k", "KmsKeyId": "arn:aws:kms:us-east-1:1:key/x"}),
        )
        .await;
    assert!(e.message.contains("no KMS"), "{e:?}");
}
