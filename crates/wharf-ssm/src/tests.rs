use crate::{dispatch, Scope, Ssm};
use serde_json::{json, Value};
use std::sync::Arc;
use wharf_protocol::AwsError;
use wharf_seal::Sealer;
use wharf_store::{MemStore, RangeRequest, Store};

const NOW: i64 = 1_700_000_000_000;

struct World {
    ssm: Ssm,
    store: MemStore,
    scope: Scope,
}

fn world() -> World {
    let store = MemStore::new();
    World {
        ssm: Ssm::new(Arc::new(store.clone()), Arc::new(Sealer::ephemeral())),
        store,
        scope: Scope {
            region: "us-east-1".into(),
            account: "123456789012".into(),
        },
    }
}

impl World {
    async fn call(&self, op: &str, body: Value) -> Result<Value, AwsError> {
        let body = serde_json::to_vec(&body).unwrap();
        let out = dispatch(&self.ssm, &self.scope, NOW, op, &body).await?;
        Ok(serde_json::from_slice(&out).unwrap())
    }

    async fn ok(&self, op: &str, body: Value) -> Value {
        match self.call(op, body.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{op} {body} failed: {e}"),
        }
    }

    async fn fail(&self, op: &str, body: Value) -> AwsError {
        match self.call(op, body.clone()).await {
            Ok(v) => panic!("{op} {body} succeeded: {v}"),
            Err(e) => e,
        }
    }

    async fn put(&self, name: &str, value: &str, kind: &str) -> Value {
        self.ok(
            "PutParameter",
            json!({"Name": name, "Value": value, "Type": kind}),
        )
        .await
    }

    async fn value(&self, name: &str) -> String {
        let out = self
            .ok(
                "GetParameter",
                json!({"Name": name, "WithDecryption": true}),
            )
            .await;
        out["Parameter"]["Value"].as_str().unwrap().to_string()
    }

    /// Every stored byte (keys and values).
    async fn raw(&self) -> Vec<u8> {
        let resp = self.store.range(RangeRequest::prefix("")).await.unwrap();
        let mut out = Vec::new();
        for kv in resp.kvs {
            out.extend_from_slice(kv.key.as_bytes());
            out.extend_from_slice(&kv.value);
        }
        out
    }

    async fn by_path(&self, body: Value) -> (Vec<String>, Option<String>) {
        let out = self.ok("GetParametersByPath", body).await;
        names_of(&out)
    }
}

fn names_of(out: &Value) -> (Vec<String>, Option<String>) {
    let names = out["Parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Name"].as_str().unwrap().to_string())
        .collect();
    (names, out["NextToken"].as_str().map(str::to_string))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_err(e: &AwsError, code: &str, status: u16) {
    assert_eq!(e.code, code, "{e}");
    assert_eq!(e.status, status, "{e}");
}

#[tokio::test]
async fn put_get_versions_and_overwrite() {
    let w = world();
    let out = w.put("/app/db/host", "db1", "String").await;
    assert_eq!(out["Version"], 1);
    assert_eq!(out["Tier"], "Standard");

    let e = w
        .fail(
            "PutParameter",
            json!({"Name": "/app/db/host", "Value": "db2", "Type": "String"}),
        )
        .await;
    assert_err(&e, "ParameterAlreadyExists", 400);
    assert!(e.message.contains("set the overwrite option"));

    // Type may be left out on overwrite; the description stays.
    w.ok(
        "PutParameter",
        json!({"Name": "/app/db/host", "Value": "db2", "Overwrite": true, "Description": "the host"}),
    )
    .await;
    let out = w
        .ok(
            "PutParameter",
            json!({"Name": "/app/db/host", "Value": "db3", "Overwrite": true}),
        )
        .await;
    assert_eq!(out["Version"], 3);

    let p = w.ok("GetParameter", json!({"Name": "/app/db/host"})).await["Parameter"].clone();
    assert_eq!(p["Value"], "db3");
    assert_eq!(p["Version"], 3);
    assert_eq!(p["Type"], "String");
    assert_eq!(p["DataType"], "text");
    assert_eq!(
        p["ARN"],
        "arn:aws:ssm:us-east-1:123456789012:parameter/app/db/host"
    );
    assert_eq!(p["LastModifiedDate"], 1_700_000_000.0);
    assert!(p.get("Selector").is_none());
    assert!(p.get("SourceResult").is_none());

    let d = w
        .ok(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Name", "Values": ["/app/db/host"]}]}),
        )
        .await;
    assert_eq!(d["Parameters"][0]["Description"], "the host");
    assert!(d["Parameters"][0].get("Value").is_none());

    // Changing the type is allowed with overwrite.
    w.ok(
        "PutParameter",
        json!({"Name": "/app/db/host", "Value": "a,b", "Type": "StringList", "Overwrite": true}),
    )
    .await;
    let p = w.ok("GetParameter", json!({"Name": "/app/db/host"})).await;
    assert_eq!(p["Parameter"]["Type"], "StringList");
    assert_eq!(p["Parameter"]["Value"], "a,b");

    // A type is needed to create.
    let e = w
        .fail("PutParameter", json!({"Name": "/new", "Value": "v"}))
        .await;
    assert_err(&e, "ValidationException", 400);
}

#[tokio::test]
async fn labels_and_selectors() {
    let w = world();
    for v in ["one", "two", "three"] {
        w.ok(
            "PutParameter",
            json!({"Name": "/svc/key", "Value": v, "Type": "String", "Overwrite": true}),
        )
        .await;
    }
    assert_eq!(w.value("/svc/key:1").await, "one");
    assert_eq!(w.value("/svc/key:2").await, "two");
    let out = w.ok("GetParameter", json!({"Name": "/svc/key:2"})).await;
    assert_eq!(out["Parameter"]["Selector"], ":2");
    assert_eq!(out["Parameter"]["Version"], 2);

    let e = w.fail("GetParameter", json!({"Name": "/svc/key:9"})).await;
    assert_err(&e, "ParameterVersionNotFound", 400);

    let out = w
        .ok(
            "LabelParameterVersion",
            json!({"Name": "/svc/key", "ParameterVersion": 1, "Labels": ["prod", "aws-x", "1st", "bad/label", "ok_1.2-3"]}),
        )
        .await;
    assert_eq!(out["ParameterVersion"], 1);
    assert_eq!(out["InvalidLabels"], json!(["aws-x", "1st", "bad/label"]));
    assert_eq!(w.value("/svc/key:prod").await, "one");
    assert_eq!(w.value("/svc/key:ok_1.2-3").await, "one");
    let out = w.ok("GetParameter", json!({"Name": "/svc/key:prod"})).await;
    assert_eq!(out["Parameter"]["Selector"], ":prod");

    // Without a version: the latest; the label moves.
    let out = w
        .ok(
            "LabelParameterVersion",
            json!({"Name": "/svc/key", "Labels": ["prod"]}),
        )
        .await;
    assert_eq!(out["ParameterVersion"], 3);
    assert_eq!(w.value("/svc/key:prod").await, "three");
    let h = w
        .ok("GetParameterHistory", json!({"Name": "/svc/key"}))
        .await;
    assert_eq!(h["Parameters"][0]["Labels"], json!(["ok_1.2-3"]));
    assert_eq!(h["Parameters"][2]["Labels"], json!(["prod"]));

    let e = w
        .fail(
            "LabelParameterVersion",
            json!({"Name": "/svc/key", "ParameterVersion": 7, "Labels": ["x"]}),
        )
        .await;
    assert_err(&e, "ParameterVersionNotFound", 400);
    let e = w
        .fail(
            "LabelParameterVersion",
            json!({"Name": "/nope", "Labels": ["x"]}),
        )
        .await;
    assert_err(&e, "ParameterNotFound", 400);
    let e = w
        .fail(
            "LabelParameterVersion",
            json!({"Name": "/svc/key", "Labels": ["x".repeat(101)]}),
        )
        .await;
    assert_err(&e, "ValidationException", 400);

    // At most ten labels on a version.
    let ten: Vec<String> = (0..9).map(|i| format!("l{i}")).collect();
    w.ok(
        "LabelParameterVersion",
        json!({"Name": "/svc/key", "ParameterVersion": 2, "Labels": ten}),
    )
    .await;
    w.ok(
        "LabelParameterVersion",
        json!({"Name": "/svc/key", "ParameterVersion": 2, "Labels": ["l9"]}),
    )
    .await;
    let e = w
        .fail(
            "LabelParameterVersion",
            json!({"Name": "/svc/key", "ParameterVersion": 2, "Labels": ["l10"]}),
        )
        .await;
    assert_err(&e, "ParameterVersionLabelLimitExceeded", 400);
    assert!(w
        .fail("GetParameter", json!({"Name": "/svc/key:l10"}))
        .await
        .code
        .contains("VersionNotFound"));

    let out = w
        .ok(
            "UnlabelParameterVersion",
            json!({"Name": "/svc/key", "ParameterVersion": 3, "Labels": ["prod", "nothere"]}),
        )
        .await;
    assert_eq!(out["RemovedLabels"], json!(["prod"]));
    assert_eq!(out["InvalidLabels"], json!(["nothere"]));
    let e = w
        .fail("GetParameter", json!({"Name": "/svc/key:prod"}))
        .await;
    assert_err(&e, "ParameterVersionNotFound", 400);
    let e = w
        .fail(
            "UnlabelParameterVersion",
            json!({"Name": "/svc/key", "ParameterVersion": 42, "Labels": ["x"]}),
        )
        .await;
    assert_err(&e, "ParameterVersionNotFound", 400);
    // A malformed selector.
    let e = w
        .fail("GetParameter", json!({"Name": "/svc/key:a:b"}))
        .await;
    assert_err(&e, "ValidationException", 400);
}

#[tokio::test]
async fn version_limit_drops_the_oldest_unless_labelled() {
    let w = world();
    for i in 1..=100 {
        w.ok(
            "PutParameter",
            json!({"Name": "many", "Value": format!("v{i}"), "Type": "String", "Overwrite": true}),
        )
        .await;
    }
    let out = w
        .ok(
            "PutParameter",
            json!({"Name": "many", "Value": "v101", "Type": "String", "Overwrite": true}),
        )
        .await;
    assert_eq!(out["Version"], 101);
    let e = w.fail("GetParameter", json!({"Name": "many:1"})).await;
    assert_err(&e, "ParameterVersionNotFound", 400);
    assert_eq!(w.value("many:2").await, "v2");

    w.ok(
        "LabelParameterVersion",
        json!({"Name": "many", "ParameterVersion": 2, "Labels": ["keep"]}),
    )
    .await;
    let e = w
        .fail(
            "PutParameter",
            json!({"Name": "many", "Value": "v102", "Overwrite": true}),
        )
        .await;
    assert_err(&e, "ParameterMaxVersionLimitExceeded", 400);
    // Nothing was written.
    let p = w.ok("GetParameter", json!({"Name": "many"})).await;
    assert_eq!(p["Parameter"]["Version"], 101);
    let mut count = 0;
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"Name": "many"});
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let h = w.ok("GetParameterHistory", body).await;
        count += h["Parameters"].as_array().unwrap().len();
        match h["NextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(count, 100);
}

#[tokio::test]
async fn path_recursion_and_pagination() {
    let w = world();
    let names = [
        "/a/1", "/a/2", "/a/b/1", "/a/b/2", "/a/b/c/1", "/ab/1", "/z", "flat",
    ];
    for n in names {
        w.put(n, "v", "String").await;
    }
    let (found, token) = w.by_path(json!({"Path": "/a"})).await;
    assert_eq!(found, ["/a/1", "/a/2"]);
    assert!(token.is_none());
    let (found, _) = w.by_path(json!({"Path": "/a/", "Recursive": true})).await;
    assert_eq!(found, ["/a/1", "/a/2", "/a/b/1", "/a/b/2", "/a/b/c/1"]);
    let (found, _) = w.by_path(json!({"Path": "/"})).await;
    assert_eq!(found, ["/z", "flat"]);
    let (found, _) = w.by_path(json!({"Path": "/", "Recursive": true})).await;
    assert_eq!(found.len(), names.len());

    // Pages of two, across the whole recursive listing.
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body = json!({"Path": "/a", "Recursive": true, "MaxResults": 2});
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let (found, next) = w.by_path(body).await;
        assert!(found.len() <= 2);
        all.extend(found);
        pages += 1;
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(all, ["/a/1", "/a/2", "/a/b/1", "/a/b/2", "/a/b/c/1"]);

    let e = w
        .fail(
            "GetParametersByPath",
            json!({"Path": "/a", "NextToken": "garbage!"}),
        )
        .await;
    assert_err(&e, "InvalidNextToken", 400);
    let e = w
        .fail(
            "GetParametersByPath",
            json!({"Path": "/a", "MaxResults": 11}),
        )
        .await;
    assert_err(&e, "ValidationException", 400);
    let e = w.fail("GetParametersByPath", json!({"Path": "a"})).await;
    assert_err(&e, "ValidationException", 400);
}

#[tokio::test]
async fn by_path_filters() {
    let w = world();
    w.put("/f/plain", "p", "String").await;
    w.put("/f/list", "a,b", "StringList").await;
    w.ok(
        "PutParameter",
        json!({"Name": "/f/secret", "Value": "s1", "Type": "SecureString", "KeyId": "alias/aws/ssm"}),
    )
    .await;
    w.ok(
        "PutParameter",
        json!({"Name": "/f/secret", "Value": "s2", "Overwrite": true}),
    )
    .await;
    w.ok(
        "LabelParameterVersion",
        json!({"Name": "/f/secret", "ParameterVersion": 1, "Labels": ["old"]}),
    )
    .await;

    let (found, _) = w
        .by_path(json!({"Path": "/f", "ParameterFilters": [{"Key": "Type", "Values": ["SecureString", "StringList"]}]}))
        .await;
    assert_eq!(found, ["/f/list", "/f/secret"]);
    let (found, _) = w
        .by_path(json!({"Path": "/f", "ParameterFilters": [{"Key": "KeyId", "Option": "BeginsWith", "Values": ["alias/aws"]}]}))
        .await;
    assert_eq!(found, ["/f/secret"]);
    let out = w
        .ok(
            "GetParametersByPath",
            json!({"Path": "/f", "WithDecryption": true, "ParameterFilters": [{"Key": "Label", "Values": ["old"]}]}),
        )
        .await;
    assert_eq!(out["Parameters"].as_array().unwrap().len(), 1);
    assert_eq!(out["Parameters"][0]["Version"], 1);
    assert_eq!(out["Parameters"][0]["Value"], "s1");

    for key in ["Name", "Path", "Tier", "DataType", "tag:env"] {
        let e = w
            .fail(
                "GetParametersByPath",
                json!({"Path": "/f", "ParameterFilters": [{"Key": key, "Values": ["x"]}]}),
            )
            .await;
        assert_err(&e, "InvalidFilterKey", 400);
    }
    let e = w
        .fail(
            "GetParametersByPath",
            json!({"Path": "/f", "ParameterFilters": [{"Key": "Label", "Option": "BeginsWith", "Values": ["o"]}]}),
        )
        .await;
    assert_err(&e, "InvalidFilterOption", 400);
    let e = w
        .fail(
            "GetParametersByPath",
            json!({"Path": "/f", "ParameterFilters": [{"Key": "Bogus", "Values": ["o"]}]}),
        )
        .await;
    assert_err(&e, "ValidationException", 400);
}

#[tokio::test]
async fn secure_strings_are_sealed_and_every_value_is_sealed() {
    let w = world();
    w.ok(
        "PutParameter",
        json!({"Name": "/sec/pw", "Value": "hunter2-plaintext", "Type": "SecureString"}),
    )
    .await;
    w.put("/sec/plain", "visible-string-value", "String").await;
    w.put("listy", "item-one,item-two", "StringList").await;

    let raw = w.raw().await;
    assert!(!raw.is_empty());
    for secret in ["hunter2-plaintext", "visible-string-value", "item-one"] {
        assert!(
            !contains(&raw, secret.as_bytes()),
            "{secret} is stored in plain text"
        );
    }

    let p = w.ok("GetParameter", json!({"Name": "/sec/pw"})).await;
    let shown = p["Parameter"]["Value"].as_str().unwrap().to_string();
    assert_ne!(shown, "hunter2-plaintext");
    assert!(!shown.contains("hunter2"));
    assert_eq!(w.value("/sec/pw").await, "hunter2-plaintext");
    // String values come back plain without decryption too.
    let p = w.ok("GetParameter", json!({"Name": "/sec/plain"})).await;
    assert_eq!(p["Parameter"]["Value"], "visible-string-value");

    let d = w
        .ok(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Name", "Values": ["/sec/pw"]}]}),
        )
        .await;
    assert_eq!(d["Parameters"][0]["KeyId"], "alias/aws/ssm");
    assert_eq!(d["Parameters"][0]["Type"], "SecureString");

    // A value moved to another record does not open.
    let stolen = w
        .store
        .get("/ssm/us-east-1/parameters//sec/pw")
        .await
        .unwrap()
        .unwrap();
    let mut record: Value = serde_json::from_slice(&stolen.value).unwrap();
    record["name"] = json!("/sec/plain");
    let plain_key = "/ssm/us-east-1/parameters//sec/plain";
    w.store
        .txn(wharf_store::Txn::new().then(wharf_store::Op::put(
            plain_key,
            serde_json::to_vec(&record).unwrap(),
        )))
        .await
        .unwrap();
    let e = w
        .fail(
            "GetParameter",
            json!({"Name": "/sec/plain", "WithDecryption": true}),
        )
        .await;
    assert_err(&e, "InternalServerError", 500);

    // No KMS: a key of one's own is refused, not recorded and ignored.
    let e = w
        .fail(
            "PutParameter",
            json!({"Name": "/sec/cmk", "Value": "v", "Type": "SecureString", "KeyId": "alias/mine"}),
        )
        .await;
    assert!(e.message.contains("no KMS"), "{e:?}");
    // KeyId only for SecureString.
    let e = w
        .fail(
            "PutParameter",
            json!({"Name": "/sec/k", "Value": "v", "Type": "String", "KeyId": "alias/x"}),
        )
        .await;
    assert_err(&e, "ValidationException", 400);
}

#[tokio::test]
async fn get_parameters_and_history() {
    let w = world();
    w.put("/h/a", "1", "String").await;
    w.ok(
        "PutParameter",
        json!({"Name": "/h/a", "Value": "2", "Overwrite": true, "Description": "second", "AllowedPattern": "^\\d+$"}),
    )
    .await;
    w.ok(
        "PutParameter",
        json!({"Name": "/h/s", "Value": "top", "Type": "SecureString"}),
    )
    .await;

    let out = w
        .ok(
            "GetParameters",
            json!({"Names": ["/h/a", "/h/missing", "/h/a:1", "/h/a:9", "/h/s"], "WithDecryption": true}),
        )
        .await;
    let got: Vec<(&str, &str)> = out["Parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["Name"].as_str().unwrap(), p["Value"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [("/h/a", "2"), ("/h/a", "1"), ("/h/s", "top")]);
    assert_eq!(out["InvalidParameters"], json!(["/h/missing", "/h/a:9"]));
    let out = w
        .ok(
            "GetParameters",
            json!({"Names": ["arn:aws:ssm:eu-west-1:123456789012:parameter/h/a", "arn:aws:ssm:us-east-1:123456789012:parameter/h/a"]}),
        )
        .await;
    assert_eq!(out["Parameters"][0]["Value"], "2");
    assert_eq!(
        out["InvalidParameters"],
        json!(["arn:aws:ssm:eu-west-1:123456789012:parameter/h/a"])
    );
    let e = w
        .fail(
            "GetParameters",
            json!({"Names": (0..11).map(|i| format!("/n{i}")).collect::<Vec<_>>()}),
        )
        .await;
    assert_err(&e, "ValidationException", 400);

    let h = w.ok("GetParameterHistory", json!({"Name": "/h/a"})).await;
    let versions = h["Parameters"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["Value"], "1");
    assert_eq!(versions[1]["Value"], "2");
    assert_eq!(versions[1]["Description"], "second");
    assert_eq!(versions[1]["AllowedPattern"], "^\\d+$");
    assert_eq!(
        versions[1]["LastModifiedUser"],
        "arn:aws:iam::123456789012:root"
    );
    assert_eq!(versions[1]["Tier"], "Standard");

    let h = w.ok("GetParameterHistory", json!({"Name": "/h/s"})).await;
    assert_ne!(h["Parameters"][0]["Value"], "top");
    assert_eq!(h["Parameters"][0]["KeyId"], "alias/aws/ssm");
    let h = w
        .ok(
            "GetParameterHistory",
            json!({"Name": "/h/s", "WithDecryption": true}),
        )
        .await;
    assert_eq!(h["Parameters"][0]["Value"], "top");

    // History pages.
    let h = w
        .ok(
            "GetParameterHistory",
            json!({"Name": "/h/a", "MaxResults": 1}),
        )
        .await;
    assert_eq!(h["Parameters"][0]["Version"], 1);
    let t = h["NextToken"].as_str().unwrap();
    let h = w
        .ok(
            "GetParameterHistory",
            json!({"Name": "/h/a", "MaxResults": 1, "NextToken": t}),
        )
        .await;
    assert_eq!(h["Parameters"][0]["Version"], 2);
    assert!(h.get("NextToken").is_none());

    let e = w
        .fail("GetParameterHistory", json!({"Name": "/h/none"}))
        .await;
    assert_err(&e, "ParameterNotFound", 400);

    // The pattern stays with the parameter.
    let e = w
        .fail(
            "PutParameter",
            json!({"Name": "/h/a", "Value": "abc", "Overwrite": true}),
        )
        .await;
    assert_err(&e, "ParameterPatternMismatchException", 400);
    let e = w
        .fail(
            "PutParameter",
            json!({"Name": "/h/p", "Value": "abc", "Type": "String", "AllowedPattern": "(unclosed"}),
        )
        .await;
    assert_err(&e, "InvalidAllowedPatternException", 400);
}

#[tokio::test]
async fn deletes() {
    let w = world();
    w.put("/d/1", "v", "String").await;
    w.put("/d/2", "v", "String").await;
    w.put("/d/3", "v", "String").await;
    w.ok("DeleteParameter", json!({"Name": "/d/1"})).await;
    let e = w.fail("GetParameter", json!({"Name": "/d/1"})).await;
    assert_err(&e, "ParameterNotFound", 400);
    let e = w.fail("DeleteParameter", json!({"Name": "/d/1"})).await;
    assert_err(&e, "ParameterNotFound", 400);

    let out = w
        .ok(
            "DeleteParameters",
            json!({"Names": ["/d/2", "/d/1", "/d/3", "/d/2"]}),
        )
        .await;
    assert_eq!(out["DeletedParameters"], json!(["/d/2", "/d/3"]));
    assert_eq!(out["InvalidParameters"], json!(["/d/1"]));
    let (found, _) = w.by_path(json!({"Path": "/d"})).await;
    assert!(found.is_empty());
    assert!(w.raw().await.is_empty());

    // Re-created, it starts again at version 1.
    let out = w.put("/d/2", "again", "SecureString").await;
    assert_eq!(out["Version"], 1);
    assert_eq!(w.value("/d/2").await, "again");
    let e = w.fail("DeleteParameters", json!({"Names": []})).await;
    assert_err(&e, "ValidationException", 400);
}

async fn list(w: &World) -> Value {
    w.ok(
        "ListTagsForResource",
        json!({"ResourceType": "Parameter", "ResourceId": "/t/p"}),
    )
    .await["TagList"]
        .clone()
}

#[tokio::test]
async fn tags() {
    let w = world();
    w.ok(
        "PutParameter",
        json!({"Name": "/t/p", "Value": "v", "Type": "String", "Tags": [{"Key": "env", "Value": "prod"}]}),
    )
    .await;
    let e = w
        .fail(
            "PutParameter",
            json!({"Name": "/t/p", "Value": "v", "Overwrite": true, "Tags": [{"Key": "a", "Value": "b"}]}),
        )
        .await;
    assert_err(&e, "ValidationException", 400);
    assert!(e
        .message
        .contains("tags and overwrite can't be used together"));

    assert_eq!(list(&w).await, json!([{"Key": "env", "Value": "prod"}]));
    w.ok(
        "AddTagsToResource",
        json!({"ResourceType": "Parameter", "ResourceId": "/t/p", "Tags": [{"Key": "env", "Value": "dev"}, {"Key": "team", "Value": "x y"}]}),
    )
    .await;
    assert_eq!(
        list(&w).await,
        json!([{"Key": "env", "Value": "dev"}, {"Key": "team", "Value": "x y"}])
    );
    w.ok(
        "RemoveTagsFromResource",
        json!({"ResourceType": "Parameter", "ResourceId": "/t/p", "TagKeys": ["env", "absent"]}),
    )
    .await;
    assert_eq!(list(&w).await, json!([{"Key": "team", "Value": "x y"}]));

    let d = w
        .ok(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "tag:team", "Values": ["x y"]}]}),
        )
        .await;
    assert_eq!(names_of(&d).0, ["/t/p"]);
    let d = w
        .ok(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "tag:env"}]}),
        )
        .await;
    assert!(names_of(&d).0.is_empty());

    let e = w
        .fail(
            "AddTagsToResource",
            json!({"ResourceType": "Document", "ResourceId": "/t/p", "Tags": [{"Key": "a", "Value": "b"}]}),
        )
        .await;
    assert_err(&e, "InvalidResourceType", 400);
    let e = w
        .fail(
            "ListTagsForResource",
            json!({"ResourceType": "Parameter", "ResourceId": "/t/none"}),
        )
        .await;
    assert_err(&e, "InvalidResourceId", 400);
    let e = w
        .fail(
            "AddTagsToResource",
            json!({"ResourceType": "Parameter", "ResourceId": "/t/p", "Tags": [{"Key": "aws:x", "Value": "b"}]}),
        )
        .await;
    assert_err(&e, "ValidationException", 400);
    let many: Vec<Value> = (0..50)
        .map(|i| json!({"Key": format!("k{i}"), "Value": "v"}))
        .collect();
    let e = w
        .fail(
            "AddTagsToResource",
            json!({"ResourceType": "Parameter", "ResourceId": "/t/p", "Tags": many}),
        )
        .await;
    assert_err(&e, "TooManyTagsError", 400);
    assert_eq!(
        list(&w).await.as_array().unwrap().len(),
        1,
        "nothing half-written"
    );
}

#[tokio::test]
async fn describe_filters_and_pages() {
    let w = world();
    w.put("/x/one", "1", "String").await;
    w.put("/x/two", "2", "StringList").await;
    w.put("/x/deep/three", "3", "SecureString").await;
    w.put("/y/four", "4", "String").await;
    w.put("five", "5", "String").await;
    w.ok(
        "PutParameter",
        json!({"Name": "/big", "Value": "x".repeat(5000), "Type": "String", "Tier": "Intelligent-Tiering"}),
    )
    .await;

    let names = |v: &Value| names_of(v).0;
    let all = w.ok("DescribeParameters", json!({})).await;
    assert_eq!(names(&all).len(), 6);
    let d = w
        .ok(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Path", "Values": ["/x"]}]}),
        )
        .await;
    assert_eq!(names(&d), ["/x/one", "/x/two"]);
    let d = w
        .ok(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Path", "Option": "Recursive", "Values": ["/x"]}, {"Key": "Type", "Values": ["SecureString"]}]}),
        )
        .await;
    assert_eq!(names(&d), ["/x/deep/three"]);
    let d = w
        .ok(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Name", "Option": "Contains", "Values": ["o"]}]}),
        )
        .await;
    assert_eq!(names(&d), ["/x/one", "/x/two", "/y/four"]);
    let d = w
        .ok(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Name", "Option": "BeginsWith", "Values": ["/x/d", "fi"]}]}),
        )
        .await;
    assert_eq!(names(&d), ["/x/deep/three", "five"]);
    let d = w
        .ok(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Tier", "Values": ["Advanced"]}]}),
        )
        .await;
    assert_eq!(names(&d), ["/big"]);
    let d = w
        .ok(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "DataType", "Values": ["text"]}]}),
        )
        .await;
    assert_eq!(names(&d).len(), 6);
    let d = w
        .ok(
            "DescribeParameters",
            json!({"Filters": [{"Key": "Type", "Values": ["StringList"]}]}),
        )
        .await;
    assert_eq!(names(&d), ["/x/two"]);

    let e = w
        .fail(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Label", "Values": ["x"]}]}),
        )
        .await;
    assert_err(&e, "InvalidFilterKey", 400);
    let e = w
        .fail(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Type", "Option": "Contains", "Values": ["x"]}]}),
        )
        .await;
    assert_err(&e, "InvalidFilterOption", 400);
    let e = w
        .fail(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Type", "Values": ["Number"]}]}),
        )
        .await;
    assert_err(&e, "InvalidFilterValue", 400);
    let e = w
        .fail("DescribeParameters", json!({"MaxResults": 51}))
        .await;
    assert_err(&e, "ValidationException", 400);

    // Pages of 4 and 2 without repeats or gaps.
    let first = w.ok("DescribeParameters", json!({"MaxResults": 4})).await;
    let (mut got, token) = names_of(&first);
    assert_eq!(got.len(), 4);
    let second = w
        .ok(
            "DescribeParameters",
            json!({"MaxResults": 4, "NextToken": token.unwrap()}),
        )
        .await;
    let (more, token) = names_of(&second);
    assert!(token.is_none());
    got.extend(more);
    assert_eq!(got, names(&all));
}

#[tokio::test]
async fn validation_errors() {
    let w = world();
    let put = |name: &str| json!({"Name": name, "Value": "v", "Type": "String"});
    for bad in [
        "aws-thing",
        "/ssm/x",
        "SSMfoo",
        "a/b",
        "/a//b",
        "/a/",
        "has space",
        "/a/b$",
        "",
    ] {
        let e = w.fail("PutParameter", put(bad)).await;
        assert_err(&e, "ValidationException", 400);
    }
    let deep: String = (0..16).map(|i| format!("/l{i}")).collect();
    let e = w.fail("PutParameter", put(&deep)).await;
    assert_err(&e, "HierarchyLevelLimitExceededException", 400);
    let ok_deep: String = (0..15).map(|i| format!("/l{i}")).collect();
    w.ok("PutParameter", put(&ok_deep)).await;
    let e = w
        .fail("PutParameter", put(&format!("/{}", "n".repeat(1000))))
        .await;
    assert_err(&e, "ValidationException", 400);

    // Spaces at the ends are trimmed.
    w.ok("PutParameter", put("  trimmed ")).await;
    assert_eq!(w.value("trimmed").await, "v");

    // `a` and `/a` would share an ARN.
    let e = w.fail("PutParameter", put("/trimmed")).await;
    assert_err(&e, "ParameterAlreadyExists", 400);

    for (body, code) in [
        (
            json!({"Name": "/v/1", "Value": "", "Type": "String"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/v/1", "Value": "x", "Type": "Number"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/v/1", "Value": "x", "Type": "String", "Tier": "Gold"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/v/1", "Value": "x", "Type": "String", "DataType": "aws:ec2:image"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/v/1", "Value": "x", "Type": "String", "DataType": "nonsense"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/v/1", "Value": "x", "Type": "String", "Policies": "[{\"Type\":\"Expiration\"}]"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/v/1", "Value": "x".repeat(4097), "Type": "String"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/v/1", "Value": "x".repeat(8193), "Type": "String", "Tier": "Advanced"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/v/1", "Value": "{{ssm:other}}", "Type": "String"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/v/1", "Value": "x", "Type": "String", "AllowedPattern": "^y$"}),
            "ParameterPatternMismatchException",
        ),
        (
            json!({"Name": "/v/1", "Type": "String"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/v/1", "Value": 5, "Type": "String"}),
            "SerializationException",
        ),
    ] {
        let e = w.fail("PutParameter", body.clone()).await;
        assert_err(&e, code, 400);
    }
    assert!(w
        .fail("GetParameter", json!({"Name": "/v/1"}))
        .await
        .code
        .contains("ParameterNotFound"));

    let e = w
        .fail(
            "PutParameter",
            json!({"Name": "/v/2", "Value": "x", "Type": "String", "DataType": "aws:ec2:image"}),
        )
        .await;
    assert!(e.message.contains("EC2"), "{e}");

    // Advanced stays advanced.
    let out = w
        .ok(
            "PutParameter",
            json!({"Name": "/v/adv", "Value": "x".repeat(5000), "Type": "String", "Tier": "Advanced"}),
        )
        .await;
    assert_eq!(out["Tier"], "Advanced");
    let out = w
        .ok(
            "PutParameter",
            json!({"Name": "/v/adv", "Value": "small", "Overwrite": true}),
        )
        .await;
    assert_eq!(out["Tier"], "Advanced");
    let e = w
        .fail(
            "PutParameter",
            json!({"Name": "/v/adv", "Value": "small", "Overwrite": true, "Tier": "Standard"}),
        )
        .await;
    assert_err(&e, "ValidationException", 400);

    let e = w.fail("GetParameter", json!({"Name": "no such"})).await;
    assert_err(&e, "ValidationException", 400);
    let e = w.fail("GetParameter", json!({})).await;
    assert_err(&e, "ValidationException", 400);
    let e = w.call("GetParameter", json!([])).await.unwrap_err();
    assert_err(&e, "SerializationException", 400);
    let e = dispatch(&w.ssm, &w.scope, NOW, "SendCommand", b"{}")
        .await
        .unwrap_err();
    assert_eq!(e.code, "UnknownOperationException");
    assert!(e.message.contains("AmazonSSM.SendCommand"));
    let e = dispatch(&w.ssm, &w.scope, NOW, "GetParameter", b"not json")
        .await
        .unwrap_err();
    assert_err(&e, "SerializationException", 400);
    let e = w
        .fail(
            "GetParameterHistory",
            json!({"Name": "/l0", "MaxResults": 0}),
        )
        .await;
    assert_err(&e, "ValidationException", 400);
    // Huge versions in selectors and labels are refused, not overflowed.
    let e = w
        .fail(
            "GetParameter",
            json!({"Name": "/l0:99999999999999999999999"}),
        )
        .await;
    assert_err(&e, "ValidationException", 400);
    let e = w
        .fail(
            "UnlabelParameterVersion",
            json!({"Name": "trimmed", "ParameterVersion": i64::MAX, "Labels": ["x"]}),
        )
        .await;
    assert_err(&e, "ParameterVersionNotFound", 400);
}

#[tokio::test]
async fn parameter_arn_and_value() {
    let w = world();
    let s = &w.scope;
    let arn = |r: &str| Ssm::parameter_arn(s, r);
    assert_eq!(
        arn("/a/b").unwrap(),
        "arn:aws:ssm:us-east-1:123456789012:parameter/a/b"
    );
    assert_eq!(
        arn("a").unwrap(),
        "arn:aws:ssm:us-east-1:123456789012:parameter/a"
    );
    assert_eq!(
        arn("/a/b:3").unwrap(),
        "arn:aws:ssm:us-east-1:123456789012:parameter/a/b"
    );
    assert_eq!(
        arn("arn:aws:ssm:us-east-1:123456789012:parameter/a/b").unwrap(),
        "arn:aws:ssm:us-east-1:123456789012:parameter/a/b"
    );
    assert_eq!(
        arn("arn:aws:ssm:us-east-1:123456789012:parameter/a/b:prod").unwrap(),
        "arn:aws:ssm:us-east-1:123456789012:parameter/a/b"
    );
    for bad in [
        "arn:aws:ssm:eu-west-1:123456789012:parameter/a/b",
        "arn:aws:ssm:us-east-1:999999999999:parameter/a/b",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:x",
        "arn:aws:ssm:us-east-1:123456789012:document/x",
        "arn:aws:ssm:us-east-1",
        "has space",
        "",
    ] {
        assert!(arn(bad).is_err(), "{bad}");
    }

    w.ok(
        "PutParameter",
        json!({"Name": "/app/secret", "Value": "s3cr3t", "Type": "SecureString"}),
    )
    .await;
    w.ok(
        "PutParameter",
        json!({"Name": "/app/secret", "Value": "n3w", "Overwrite": true}),
    )
    .await;
    w.ok(
        "LabelParameterVersion",
        json!({"Name": "/app/secret", "ParameterVersion": 1, "Labels": ["first"]}),
    )
    .await;
    w.put("flat", "flat-value", "String").await;

    assert_eq!(w.ssm.value(s, "/app/secret").await.unwrap(), "n3w");
    assert_eq!(w.ssm.value(s, "/app/secret:1").await.unwrap(), "s3cr3t");
    assert_eq!(w.ssm.value(s, "/app/secret:first").await.unwrap(), "s3cr3t");
    assert_eq!(
        w.ssm
            .value(s, "arn:aws:ssm:us-east-1:123456789012:parameter/app/secret")
            .await
            .unwrap(),
        "n3w"
    );
    assert_eq!(
        w.ssm
            .value(
                s,
                "arn:aws:ssm:us-east-1:123456789012:parameter/app/secret:1"
            )
            .await
            .unwrap(),
        "s3cr3t"
    );
    assert_eq!(
        w.ssm
            .value(s, "arn:aws:ssm:us-east-1:123456789012:parameter/flat")
            .await
            .unwrap(),
        "flat-value"
    );
    let e = w.ssm.value(s, "/app/none").await.unwrap_err();
    assert_err(&e, "ParameterNotFound", 400);
    let e = w.ssm.value(s, "/app/secret:7").await.unwrap_err();
    assert_err(&e, "ParameterVersionNotFound", 400);
    let e = w.ssm.value(s, "/app/secret:nolabel").await.unwrap_err();
    assert_err(&e, "ParameterVersionNotFound", 400);

    // Through the API, an ARN works as a name.
    let p = w
        .ok(
            "GetParameter",
            json!({"Name": "arn:aws:ssm:us-east-1:123456789012:parameter/app/secret", "WithDecryption": true}),
        )
        .await;
    assert_eq!(p["Parameter"]["Value"], "n3w");
    assert_eq!(p["Parameter"]["Name"], "/app/secret");

    // Another region's parameters are apart.
    let other = Scope {
        region: "eu-west-1".into(),
        account: s.account.clone(),
    };
    let e = w.ssm.value(&other, "/app/secret").await.unwrap_err();
    assert_err(&e, "ParameterNotFound", 400);
}

#[tokio::test]
async fn concurrent_overwrites_each_get_a_version() {
    let w = Arc::new(world());
    let mut tasks = Vec::new();
    w.put("/c/n", "0", "String").await;
    for i in 0..16 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            w.ok(
                "PutParameter",
                json!({"Name": "/c/n", "Value": format!("{i}"), "Overwrite": true}),
            )
            .await["Version"]
                .as_i64()
                .unwrap()
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=17).collect::<Vec<i64>>());
}
