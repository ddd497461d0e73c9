//! Upgrades what an older Wharf wrote to the key layout this one reads.
//!
//! Schema 2 keeps regions apart: every ECS key has a region segment after
//! its kind (`/tasks/REGION/CLUSTER/ID`), as does every idempotency key;
//! ELB keys name load balancers and target groups as `REGION:NAME`.
//! A store written before (no schema key) moves, at startup and before
//! anything is served, in one transaction that also writes the schema key
//! and compares on its absence: a crash midway leaves the old layout whole,
//! and a second server starting at once cannot move anything twice.
//!
//! Each record goes to the region its ARN names (for the objects of a
//! cluster, the ARN of the cluster it belongs to), so data written through
//! `--region eu-west-1` stays in eu-west-1; what names no region (account
//! settings, client tokens without resources) goes to us-east-1. Keys put
//! under a lease (agent sessions, client tokens) keep their lease.

use serde::Deserialize;
use std::collections::HashMap;
use wharf_core::arn::region_of;
use wharf_core::records::{keys, ClusterKey, DEFAULT_REGION, MANAGED_CLUSTER};
use wharf_lb::records::{keys as elb, scoped};
use wharf_store::{scan, Compare, KeyValue, Op, Store, StoreError, Txn};

/// The layout this build writes.
pub const SCHEMA: u32 = 2;

/// Moves an older layout to [`SCHEMA`]; how many keys moved (0 when the
/// store already has it). A store newer than this build is refused.
pub async fn run(store: &dyn Store) -> Result<usize, StoreError> {
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
    for prefix in OLD_KINDS {
        scan(store, prefix, 10_000, |kv| old.push(kv)).await?;
    }
    let moves = plan(&old);
    let mut txn = Txn::new().when(Compare::NotExists(keys::SCHEMA_VERSION.to_string()));
    for (kv, to) in old.iter().zip(&moves) {
        let Some(to) = to else { continue };
        txn = txn.then(Op::delete(kv.key.clone())).then(match kv.lease {
            Some(lease) => Op::put_with_lease(to.clone(), kv.value.clone(), lease),
            None => Op::put(to.clone(), kv.value.clone()),
        });
    }
    txn = txn.then(Op::put(keys::SCHEMA_VERSION, SCHEMA.to_string()));
    let moved = moves.iter().flatten().count();
    if !store.txn(txn).await?.succeeded {
        // Another server upgraded the store meanwhile.
        return Ok(0);
    }
    if moved > 0 {
        tracing::info!(
            keys = moved,
            "store upgraded: resources now live in their regions"
        );
    }
    Ok(moved)
}

/// The kinds that gained a region segment.
const OLD_KINDS: [&str; 15] = [
    elb::LOAD_BALANCERS,
    elb::TARGET_GROUPS,
    elb::LISTENERS,
    elb::RULES,
    elb::TARGETS,
    elb::HEALTH,
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

#[derive(Deserialize)]
struct Arn {
    #[serde(default)]
    arn: String,
}

#[derive(Deserialize)]
struct ClusterArn {
    #[serde(default)]
    cluster_arn: String,
}

#[derive(Deserialize)]
struct TaskDefinitionArn {
    definition: TaskDefinitionArnInner,
}

#[derive(Deserialize)]
struct TaskDefinitionArnInner {
    #[serde(rename = "taskDefinitionArn", default)]
    arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenResources {
    #[serde(default)]
    resource_ids: Vec<String>,
}

/// Where each old key goes (None: it stays, as the managed capacity's do).
fn plan(old: &[KeyValue]) -> Vec<Option<String>> {
    let region = |arn: &str| match arn.is_empty() {
        true => DEFAULT_REGION.to_string(),
        false => region_of(arn).to_string(),
    };
    let decode = |kv: &KeyValue| serde_json::from_slice::<Arn>(&kv.value).map(|a| a.arn);
    // A target's (and its health's) region is its target group's.
    let mut group_region: HashMap<&str, String> = HashMap::new();
    for kv in old {
        if let Some(name) = kv.key.strip_prefix(elb::TARGET_GROUPS) {
            group_region.insert(name, region(&decode(kv).unwrap_or_default()));
        }
    }
    // An agent session's region is its instance's.
    let mut instance_region: HashMap<(&str, &str), String> = HashMap::new();
    for kv in old {
        if let Some((cluster, id)) = split_old(keys::INSTANCES, &kv.key) {
            instance_region.insert((cluster, id), region(&decode(kv).unwrap_or_default()));
        }
    }
    old.iter()
        .map(|kv| {
            let key = kv.key.as_str();
            // ELB: the name segment becomes REGION:NAME (none had a `:`).
            for prefix in [
                elb::LOAD_BALANCERS,
                elb::TARGET_GROUPS,
                elb::LISTENERS,
                elb::RULES,
            ] {
                if let Some(rest) = key.strip_prefix(prefix) {
                    let (name, tail) = rest
                        .split_once('/')
                        .map_or((rest, None), |(n, t)| (n, Some(t)));
                    if name.contains(':') {
                        return None;
                    }
                    let at = scoped(&region(&decode(kv).unwrap_or_default()), name);
                    return Some(match tail {
                        Some(t) => format!("{prefix}{at}/{t}"),
                        None => format!("{prefix}{at}"),
                    });
                }
            }
            for prefix in [elb::TARGETS, elb::HEALTH] {
                if let Some((name, tail)) = key.strip_prefix(prefix).and_then(|r| r.split_once('/'))
                {
                    if name.contains(':') {
                        return None;
                    }
                    let r = group_region
                        .get(name)
                        .map_or(DEFAULT_REGION, String::as_str);
                    return Some(format!("{prefix}{}/{tail}", scoped(r, name)));
                }
            }
            if let Some(name) = key.strip_prefix(keys::CLUSTERS) {
                if name == MANAGED_CLUSTER || name.contains('/') {
                    return None;
                }
                let r = region(&decode(kv).unwrap_or_default());
                return Some(keys::cluster(&ClusterKey::new(&r, name)));
            }
            if let Some(rest) = key.strip_prefix(keys::TASK_DEFINITIONS) {
                let arn = serde_json::from_slice::<TaskDefinitionArn>(&kv.value)
                    .map(|t| t.definition.arn)
                    .unwrap_or_default();
                return Some(format!("{}{}/{rest}", keys::TASK_DEFINITIONS, region(&arn)));
            }
            for prefix in [keys::TASKS, keys::SERVICES] {
                if let Some((cluster, id)) = split_old(prefix, key) {
                    let arn = serde_json::from_slice::<ClusterArn>(&kv.value)
                        .map(|c| c.cluster_arn)
                        .unwrap_or_default();
                    let at = ClusterKey::new(&region(&arn), cluster);
                    return Some(format!("{prefix}{at}/{id}"));
                }
            }
            if let Some((cluster, id)) = split_old(keys::INSTANCES, key) {
                if cluster == MANAGED_CLUSTER {
                    return None;
                }
                let r = instance_region
                    .get(&(cluster, id))
                    .map_or(DEFAULT_REGION, String::as_str);
                let at = ClusterKey::new(r, cluster);
                return Some(keys::instance(&at, id));
            }
            if let Some((cluster, id)) = split_old(keys::AGENT_SESSIONS, key) {
                if cluster == MANAGED_CLUSTER {
                    return None;
                }
                let r = instance_region
                    .get(&(cluster, id))
                    .map_or(DEFAULT_REGION, String::as_str);
                return Some(keys::agent_session(&ClusterKey::new(r, cluster), id));
            }
            if let Some(name) = key.strip_prefix(keys::CAPACITY_PROVIDERS) {
                let r = region(&decode(kv).unwrap_or_default());
                return Some(keys::capacity_provider(&r, name));
            }
            if let Some(name) = key.strip_prefix(keys::ACCOUNT_SETTINGS) {
                return Some(keys::account_setting(DEFAULT_REGION, name));
            }
            if let Some(rest) = key.strip_prefix(keys::CLIENT_TOKENS) {
                let (operation, scoped) = rest.split_once('/')?;
                let first = serde_json::from_slice::<TokenResources>(&kv.value)
                    .ok()
                    .and_then(|t| t.resource_ids.into_iter().next())
                    .unwrap_or_default();
                return Some(format!(
                    "{}{operation}/{}/{scoped}",
                    keys::CLIENT_TOKENS,
                    region(&first)
                ));
            }
            None
        })
        .collect()
}

/// (cluster, rest) of an old cluster-scoped key `PREFIX/CLUSTER/REST`.
fn split_old<'a>(prefix: &str, key: &'a str) -> Option<(&'a str, &'a str)> {
    key.strip_prefix(prefix)?.split_once('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wharf_core::records::{ClusterRecord, InstanceRecord, TaskRecord};
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

    /// A store as schema 1 wrote it: clusters in two regions, a task, an
    /// instance with its leased session, the managed capacity, a setting.
    #[tokio::test]
    async fn an_old_store_moves_into_the_regions_its_arns_name_once() {
        let store = MemStore::new();
        let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
        let mut task = TaskRecord::new("t1", "arn:aws:ecs:eu-west-1:0:task/web/t1", "web", 0);
        task.cluster_arn = "arn:aws:ecs:eu-west-1:000000000000:cluster/web".into();
        let inst = |cluster: &str, region: &str| {
            serde_json::to_vec(&InstanceRecord::new(
                "i1",
                &format!("arn:aws:ecs:{region}:0:container-instance/{cluster}/i1"),
                cluster,
                Default::default(),
                0,
            ))
            .unwrap()
        };
        let old = Txn::new()
            .then(Op::put("/clusters/default", cluster("default", "us-east-1")))
            .then(Op::put("/clusters/web", cluster("web", "eu-west-1")))
            .then(Op::put("/clusters/~managed", cluster("~managed", "us-east-1")))
            .then(Op::put("/tasks/web/t1", serde_json::to_vec(&task).unwrap()))
            .then(Op::put("/instances/default/i1", inst("default", "us-east-1")))
            .then(Op::put_with_lease("/agents/default/i1", "1", lease))
            .then(Op::put("/instances/~managed/m1", inst("~managed", "us-east-1")))
            .then(Op::put(
                "/account-settings/containerInsights",
                b"{\"name\":\"containerInsights\",\"value\":\"enabled\",\"updated_at\":0}".to_vec(),
            ))
            .then(Op::put(
                "/elb/targetgroups/tg",
                b"{\"arn\":\"arn:aws:elasticloadbalancing:eu-west-1:0:targetgroup/tg/1\"}".to_vec(),
            ))
            .then(Op::put("/elb/targets/tg/10.0.0.1/80", b"{}".to_vec()))
            .then(Op::put(
                "/elb/listeners/web/l1",
                b"{\"arn\":\"arn:aws:elasticloadbalancing:us-east-1:0:listener/app/web/1/l1\"}".to_vec(),
            ))
            .then(Op::put_with_lease(
                "/idempotency/RunTask/web/abc",
                b"{\"fingerprint\":\"f\",\"resourceIds\":[\"arn:aws:ecs:eu-west-1:0:task/web/t1\"],\"outcome\":[]}".to_vec(),
                lease,
            ));
        store.txn(old).await.unwrap();

        assert_eq!(run(&store).await.unwrap(), 10);
        let keys_now = |prefix: &'static str| {
            let store = &store;
            async move {
                let mut all = vec![];
                scan(store, prefix, 100, |kv| all.push(kv.key))
                    .await
                    .unwrap();
                all
            }
        };
        assert_eq!(
            keys_now("/clusters/").await,
            [
                "/clusters/eu-west-1/web",
                "/clusters/us-east-1/default",
                "/clusters/~managed"
            ]
        );
        assert_eq!(keys_now("/tasks/").await, ["/tasks/eu-west-1/web/t1"]);
        assert_eq!(
            keys_now("/instances/").await,
            ["/instances/us-east-1/default/i1", "/instances/~managed/m1"]
        );
        assert_eq!(keys_now("/agents/").await, ["/agents/us-east-1/default/i1"]);
        assert_eq!(
            keys_now("/account-settings/").await,
            ["/account-settings/us-east-1/containerInsights"]
        );
        assert_eq!(
            keys_now("/idempotency/").await,
            ["/idempotency/RunTask/eu-west-1/web/abc"]
        );
        assert_eq!(
            keys_now("/elb/targetgroups/").await,
            ["/elb/targetgroups/eu-west-1:tg"]
        );
        assert_eq!(
            keys_now("/elb/targets/").await,
            ["/elb/targets/eu-west-1:tg/10.0.0.1/80"]
        );
        assert_eq!(
            keys_now("/elb/listeners/").await,
            ["/elb/listeners/us-east-1:web/l1"]
        );
        // Moved values are the same bytes; leased keys keep their lease.
        let moved = store.get("/tasks/eu-west-1/web/t1").await.unwrap().unwrap();
        assert_eq!(moved.value, serde_json::to_vec(&task).unwrap());
        let session = store
            .get("/agents/us-east-1/default/i1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(session.lease, Some(lease));
        store.revoke_lease(lease).await.unwrap();
        assert!(keys_now("/agents/").await.is_empty());
        assert!(keys_now("/idempotency/").await.is_empty());

        // Once: a second start finds the schema and moves nothing, even
        // keys that look like the old layout.
        store
            .txn(Txn::new().then(Op::put("/clusters/late", cluster("late", "us-east-1"))))
            .await
            .unwrap();
        assert_eq!(run(&store).await.unwrap(), 0);
        assert!(store.get("/clusters/late").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_store_of_a_newer_layout_is_refused_and_left_alone() {
        let store = MemStore::new();
        store
            .txn(Txn::new().then(Op::put(keys::SCHEMA_VERSION, "3")))
            .await
            .unwrap();
        let e = run(&store).await.unwrap_err();
        assert!(e.to_string().contains("newer than this wharf's"), "{e}");
    }

    #[tokio::test]
    async fn an_empty_store_gets_the_schema_key() {
        let store = MemStore::new();
        assert_eq!(run(&store).await.unwrap(), 0);
        let v = store.get(keys::SCHEMA_VERSION).await.unwrap().unwrap();
        assert_eq!(v.value, b"2");
    }
}
