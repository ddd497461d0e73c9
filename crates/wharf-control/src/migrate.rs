//! Upgrades what an older Wharf wrote to the key layout this one reads.
//!
//! Schema 2 keeps regions apart: every ECS key has a region segment after
//! its kind (`/tasks/REGION/CLUSTER/ID`), as does every idempotency key;
//! ELB keys name load balancers and target groups as `REGION:NAME`; join
//! tokens and agent credentials say their cluster's region.
//!
//! A store written before (no schema key) held one account-wide namespace,
//! so it moves whole into one region: the one the server is started for
//! (`--region`, `AWS_DEFAULT_REGION`, else us-east-1). Every ARN in the
//! moved records is rewritten to name that region, so what was one set of
//! resources stays one consistent set (a task's cluster, its task
//! definition, its service and its host all in the same region), and the
//! local host of `wharf up` keeps the instance it registered. The move is
//! one transaction, before anything is served, that writes the schema key
//! and compares on its absence: a crash midway leaves the old layout whole,
//! and two servers starting at once cannot move anything twice. Keys under
//! a lease (agent sessions, client tokens) keep their lease.

use serde_json::Value;
use wharf_core::arn::valid_region;
use wharf_core::records::{keys, MANAGED_CLUSTER};
use wharf_lb::records::{keys as elb, scoped};
use wharf_store::{scan, Compare, KeyValue, Op, Store, StoreError, Txn};

/// The layout this build writes.
pub const SCHEMA: u32 = 2;

/// Moves an older layout into `region` as [`SCHEMA`] lays it out; how many
/// keys moved or were rewritten (0 when the store already has the schema).
/// A store newer than this build is refused.
pub async fn run(store: &dyn Store, region: &str) -> Result<usize, StoreError> {
    if !valid_region(region) {
        return Err(StoreError::Storage(format!(
            "cannot upgrade the store into '{region}': not a region name"
        )));
    }
    if let Some(kv) = store.get(keys::SCHEMA_VERSION).await? {
        let found: u32 = std::str::from_utf8(&kv.value)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if found > SCHEMA {
            return Err(StoreError::Storage(format!(
                "the store has key layout {found}, newer than this wharf's {SCHEMA}: run a newer wharf"
            )));
        }
        return Ok(0);
    }
    let mut old = vec![];
    for prefix in ECS_KINDS.iter().chain(&ELB_KINDS).chain(&AUTH_KINDS) {
        scan(store, prefix, 10_000, |kv| old.push(kv)).await?;
    }
    let mut txn = Txn::new().when(Compare::NotExists(keys::SCHEMA_VERSION.to_string()));
    let mut changed = 0;
    for kv in &old {
        let Some((to, value)) = upgrade(kv, region) else {
            continue;
        };
        if to != kv.key {
            txn = txn.then(Op::delete(kv.key.clone()));
        }
        txn = txn.then(match kv.lease {
            Some(lease) => Op::put_with_lease(to, value, lease),
            None => Op::put(to, value),
        });
        changed += 1;
    }
    txn = txn.then(Op::put(keys::SCHEMA_VERSION, SCHEMA.to_string()));
    if !store.txn(txn).await?.succeeded {
        // Another server upgraded the store meanwhile.
        return Ok(0);
    }
    if changed > 0 {
        tracing::info!(keys = changed, %region, "store upgraded: its resources now live in {region}");
    }
    Ok(changed)
}

/// The ECS kinds that gained a region segment.
const ECS_KINDS: [&str; 9] = [
    keys::CLUSTERS,
    keys::TASK_DEFINITIONS,
    keys::TASKS,
    keys::INSTANCES,
    keys::AGENT_SESSIONS,
    keys::SERVICES,
    keys::CAPACITY_PROVIDERS,
    keys::ACCOUNT_SETTINGS,
    keys::CLIENT_TOKENS,
];
/// The ELB kinds whose name segment gained a region.
const ELB_KINDS: [&str; 6] = [
    elb::LOAD_BALANCERS,
    elb::TARGET_GROUPS,
    elb::LISTENERS,
    elb::RULES,
    elb::TARGETS,
    elb::HEALTH,
];
/// Keyed by ID: their records gain a region.
const AUTH_KINDS: [&str; 2] = [keys::JOIN_TOKENS, keys::AGENT_CREDENTIALS];

/// Where an old key goes in `region`, and its value there (ARNs rewritten
/// to name `region`); None: it stays as it is (the managed capacity's keys,
/// which no region owns).
fn upgrade(kv: &KeyValue, region: &str) -> Option<(String, Vec<u8>)> {
    let key = kv.key.as_str();
    let to = if AUTH_KINDS.iter().any(|p| key.starts_with(p)) {
        // Keyed by ID; the record gains its cluster's region.
        let mut v: Value = serde_json::from_slice(&kv.value).ok()?;
        v.as_object_mut()?
            .insert("region".into(), Value::String(region.into()));
        return Some((key.to_string(), serde_json::to_vec(&v).ok()?));
    } else if let Some((prefix, rest)) = ELB_KINDS
        .iter()
        .find_map(|p| key.strip_prefix(p).map(|rest| (*p, rest)))
    {
        // ELB: the name segment becomes REGION:NAME.
        let (name, tail) = rest
            .split_once('/')
            .map_or((rest, None), |(n, t)| (n, Some(t)));
        let at = scoped(region, name);
        match tail {
            Some(t) => format!("{prefix}{at}/{t}"),
            None => format!("{prefix}{at}"),
        }
    } else {
        let (prefix, rest) = ECS_KINDS
            .iter()
            .find_map(|p| key.strip_prefix(p).map(|rest| (*p, rest)))?;
        let managed = rest == MANAGED_CLUSTER || rest.starts_with(&format!("{MANAGED_CLUSTER}/"));
        if managed {
            return None;
        }
        if prefix == keys::CLIENT_TOKENS {
            // `/idempotency/OPERATION/SCOPE/SHA`: the region follows the operation.
            let (operation, scoped) = rest.split_once('/')?;
            format!("{prefix}{operation}/{region}/{scoped}")
        } else {
            format!("{prefix}{region}/{rest}")
        }
    };
    let value = match serde_json::from_slice::<Value>(&kv.value) {
        Ok(mut v) => {
            rewrite_arns(&mut v, region);
            serde_json::to_vec(&v).ok()?
        }
        // Not JSON (an agent session's marker): as it is.
        Err(_) => kv.value.clone(),
    };
    Some((to, value))
}

/// Makes every ECS, ELB and Logs ARN in `v` name `region`.
fn rewrite_arns(v: &mut Value, region: &str) {
    match v {
        Value::String(s) => {
            for service in ["ecs", "elasticloadbalancing", "logs"] {
                let head = format!("arn:aws:{service}:");
                if let Some(rest) = s.strip_prefix(&head) {
                    if let Some((_, tail)) = rest.split_once(':') {
                        *s = format!("{head}{region}:{tail}");
                    }
                    return;
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_arns(i, region)),
        Value::Object(map) => map.values_mut().for_each(|i| rewrite_arns(i, region)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wharf_core::records::{AgentCredentialRecord, ClusterRecord, InstanceRecord, TaskRecord};
    use wharf_store::MemStore;

    fn cluster(name: &str, region: &str) -> Vec<u8> {
        serde_json::to_vec(&ClusterRecord {
            name: name.into(),
            arn: format!("arn:aws:ecs:{region}:000000000000:cluster/{name}"),
            status: "ACTIVE".into(),
            tags: Default::default(),
            settings: Default::default(),
            created_at: 0,
            capacity_providers: vec![],
            configuration: None,
            service_connect_namespace: None,
            default_strategy: vec![],
        })
        .unwrap()
    }

    async fn record<T: serde::de::DeserializeOwned>(store: &MemStore, key: &str) -> T {
        let kv = store.get(key).await.unwrap().expect("the key exists");
        serde_json::from_slice(&kv.value).unwrap()
    }

    async fn keys_under(store: &MemStore, prefix: &str) -> Vec<String> {
        let mut all = vec![];
        scan(store, prefix, 100, |kv| all.push(kv.key))
            .await
            .unwrap();
        all
    }

    /// A store as schema 1 wrote it, with ARNs of two regions (a CLI signing
    /// for eu-west-1, `wharf up`'s agent for us-east-1): everything moves
    /// into the one region the server starts for, ARNs and all, once.
    #[tokio::test]
    async fn an_old_store_moves_whole_into_the_server_s_region_once() {
        let store = MemStore::new();
        let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
        let mut task = TaskRecord::new(
            "t1",
            "arn:aws:ecs:eu-west-1:0:task/default/t1",
            "default",
            0,
        );
        task.cluster_arn = "arn:aws:ecs:us-east-1:0:cluster/default".into();
        task.task_definition_arn = "arn:aws:ecs:eu-west-1:0:task-definition/web:1".into();
        let inst = |cluster: &str| {
            serde_json::to_vec(&InstanceRecord::new(
                "i1",
                &format!("arn:aws:ecs:us-east-1:0:container-instance/{cluster}/i1"),
                cluster,
                Default::default(),
                0,
            ))
            .unwrap()
        };
        let cred = serde_json::json!({"access_key_id": "AWAGLOCALX", "secret_access_key": "s",
            "cluster": "default", "token_id": null, "created_at": 0});
        let old = Txn::new()
            .then(Op::put("/clusters/default", cluster("default", "us-east-1")))
            .then(Op::put("/clusters/~managed", cluster("~managed", "us-east-1")))
            .then(Op::put("/tasks/default/t1", serde_json::to_vec(&task).unwrap()))
            .then(Op::put("/instances/default/i1", inst("default")))
            .then(Op::put_with_lease("/agents/default/i1", "1", lease))
            .then(Op::put("/instances/~managed/m1", inst("~managed")))
            .then(Op::put("/auth/agents/AWAGLOCALX", serde_json::to_vec(&cred).unwrap()))
            .then(Op::put(
                "/account-settings/containerInsights",
                b"{\"name\":\"containerInsights\",\"value\":\"enabled\",\"updated_at\":0}".to_vec(),
            ))
            .then(Op::put(
                "/elb/targetgroups/tg",
                b"{\"arn\":\"arn:aws:elasticloadbalancing:eu-west-1:0:targetgroup/tg/1\"}".to_vec(),
            ))
            .then(Op::put("/elb/targets/tg/10.0.0.1/80", b"{}".to_vec()))
            .then(Op::put_with_lease(
                "/idempotency/RunTask/default/abc",
                b"{\"fingerprint\":\"f\",\"resourceIds\":[\"arn:aws:ecs:eu-west-1:0:task/default/t1\"],\"outcome\":[]}".to_vec(),
                lease,
            ));
        store.txn(old).await.unwrap();

        assert_eq!(run(&store, "eu-west-1").await.unwrap(), 9);
        assert_eq!(
            keys_under(&store, "/clusters/").await,
            ["/clusters/eu-west-1/default", "/clusters/~managed"]
        );
        assert_eq!(
            keys_under(&store, "/tasks/").await,
            ["/tasks/eu-west-1/default/t1"]
        );
        assert_eq!(
            keys_under(&store, "/instances/").await,
            ["/instances/eu-west-1/default/i1", "/instances/~managed/m1"]
        );
        assert_eq!(
            keys_under(&store, "/agents/").await,
            ["/agents/eu-west-1/default/i1"]
        );
        assert_eq!(
            keys_under(&store, "/account-settings/").await,
            ["/account-settings/eu-west-1/containerInsights"]
        );
        assert_eq!(
            keys_under(&store, "/idempotency/").await,
            ["/idempotency/RunTask/eu-west-1/default/abc"]
        );
        assert_eq!(
            keys_under(&store, "/elb/targetgroups/").await,
            ["/elb/targetgroups/eu-west-1:tg"]
        );
        assert_eq!(
            keys_under(&store, "/elb/targets/").await,
            ["/elb/targets/eu-west-1:tg/10.0.0.1/80"]
        );
        // Every ARN now names the region, so the records agree with their keys.
        let t: TaskRecord = record(&store, "/tasks/eu-west-1/default/t1").await;
        assert_eq!(t.cluster_arn, "arn:aws:ecs:eu-west-1:0:cluster/default");
        assert_eq!(
            t.task_definition_arn,
            "arn:aws:ecs:eu-west-1:0:task-definition/web:1"
        );
        assert_eq!(t.cluster_key().as_str(), "eu-west-1/default");
        let c: ClusterRecord = record(&store, "/clusters/eu-west-1/default").await;
        assert_eq!(c.arn, "arn:aws:ecs:eu-west-1:000000000000:cluster/default");
        // The local agent keeps its key, now for the region.
        let a: AgentCredentialRecord = record(&store, "/auth/agents/AWAGLOCALX").await;
        assert_eq!(
            (a.cluster.as_str(), a.region.as_str()),
            ("default", "eu-west-1")
        );
        // Leased keys keep their lease.
        let session = store
            .get("/agents/eu-west-1/default/i1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(session.lease, Some(lease));
        store.revoke_lease(lease).await.unwrap();
        assert!(keys_under(&store, "/agents/").await.is_empty());
        assert!(keys_under(&store, "/idempotency/").await.is_empty());

        // Once: a second start finds the schema and moves nothing, even
        // keys that look like the old layout.
        store
            .txn(Txn::new().then(Op::put("/clusters/late", cluster("late", "us-east-1"))))
            .await
            .unwrap();
        assert_eq!(run(&store, "us-east-1").await.unwrap(), 0);
        assert!(store.get("/clusters/late").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_store_of_a_newer_layout_is_refused_and_left_alone() {
        let store = MemStore::new();
        store
            .txn(Txn::new().then(Op::put(keys::SCHEMA_VERSION, "3")))
            .await
            .unwrap();
        let e = run(&store, "us-east-1").await.unwrap_err();
        assert!(e.to_string().contains("newer than this wharf's"), "{e}");
        assert!(run(&MemStore::new(), "Bad/Region").await.is_err());
    }

    #[tokio::test]
    async fn an_empty_store_gets_the_schema_key() {
        let store = MemStore::new();
        assert_eq!(run(&store, "us-east-1").await.unwrap(), 0);
        let v = store.get(keys::SCHEMA_VERSION).await.unwrap().unwrap();
        assert_eq!(v.value, b"2");
    }
}
