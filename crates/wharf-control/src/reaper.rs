//! Forgets STOPPED tasks once their retention has passed, as ECS does after
//! about an hour, and finishes deleting task definitions (DELETE_IN_PROGRESS)
//! once no task or service deployment uses them any more.

use crate::records;
use crate::Control;
use std::collections::HashSet;
use std::time::Duration;
use wharf_core::clock::Millis;
use wharf_core::lifecycle::TaskStatus;
use wharf_core::records::{keys, TaskDefinitionRecord};
use wharf_core::service::ServiceRecord;
use wharf_model::ecs::TaskDefinitionStatus;
use wharf_store::{Compare, Op, Txn};

/// The fields of a stored task the sweeps read. Every task is read on each
/// sweep, so only these are decoded and nothing is kept but what is due.
#[derive(serde::Deserialize)]
struct TaskBrief {
    last_status: TaskStatus,
    stopped_at: Option<Millis>,
    task_definition_arn: String,
}

/// Hands every task's brief to `f`; false if the store could not be read
/// or a record did not decode (then a sweep must not act on what it saw).
async fn each_task(c: &Control, mut f: impl FnMut(wharf_store::KeyValue, TaskBrief)) -> bool {
    let mut all_read = true;
    let scanned =
        wharf_store::scan(
            c.store.as_ref(),
            keys::TASKS,
            10_000,
            |kv| match serde_json::from_slice::<TaskBrief>(&kv.value) {
                Ok(t) => f(kv, t),
                Err(e) => {
                    tracing::warn!(key = %kv.key, error = %e, "undecodable task record");
                    all_read = false;
                }
            },
        )
        .await;
    scanned.is_ok() && all_read
}

/// One sweep; returns how many tasks were removed.
pub async fn sweep(c: &Control) -> usize {
    let horizon = c.clock.now() - c.config.stopped_task_retention.as_millis() as i64;
    let mut expired = vec![];
    let read = each_task(c, |kv, t| {
        if t.last_status == TaskStatus::Stopped && t.stopped_at.is_some_and(|s| s < horizon) {
            expired.push((kv.key, kv.mod_revision));
        }
    })
    .await;
    if !read {
        return 0;
    }
    let mut removed = 0;
    for (key, revision) in expired {
        let txn = Txn::new()
            .when(Compare::ModRevision(key.clone(), revision))
            .then(Op::delete(key));
        if records::commit(c.store.as_ref(), txn)
            .await
            .unwrap_or(false)
        {
            removed += 1;
        }
    }
    removed
}

/// Removes DELETE_IN_PROGRESS task definitions nothing refers to; returns how many.
pub async fn sweep_task_definitions(c: &Control) -> usize {
    let store = c.store.as_ref();
    let Ok((defs, _)) = records::list::<TaskDefinitionRecord>(store, keys::TASK_DEFINITIONS).await
    else {
        return 0;
    };
    let doomed: Vec<_> = defs
        .into_iter()
        .filter(|v| v.value.definition.status == Some(TaskDefinitionStatus::DeleteInProgress))
        .collect();
    if doomed.is_empty() {
        return 0;
    }
    let mut in_use = HashSet::new();
    let read = each_task(c, |_, t| {
        in_use.insert(t.task_definition_arn);
    })
    .await;
    let (true, Ok((services, _))) = (
        read,
        records::list::<ServiceRecord>(store, keys::SERVICES).await,
    ) else {
        return 0;
    };
    let mut removed = 0;
    for d in doomed {
        let arn = d
            .value
            .definition
            .task_definition_arn
            .clone()
            .unwrap_or_default();
        let used = in_use.contains(&arn)
            || services.iter().any(|s| {
                s.value.status != "INACTIVE"
                    && s.value
                        .deployments
                        .iter()
                        .any(|dep| dep.task_definition == arn)
            });
        if !used {
            let txn = Txn::new()
                .when(d.unchanged())
                .then(Op::delete(d.key.clone()));
            if records::commit(store, txn).await.unwrap_or(false) {
                removed += 1;
            }
        }
    }
    removed
}

/// Sweeps every `every` until the process ends.
pub async fn run(c: Control, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let n = sweep(&c).await;
        if n > 0 {
            tracing::info!(removed = n, "forgot expired stopped tasks");
        }
        let n = sweep_task_definitions(&c).await;
        if n > 0 {
            tracing::info!(removed = n, "deleted task definitions");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use wharf_core::clock::ManualClock;
    use wharf_core::records::TaskRecord;
    use wharf_model::ecs;
    use wharf_store::MemStore;

    fn td(family: &str, status: TaskDefinitionStatus) -> TaskDefinitionRecord {
        TaskDefinitionRecord {
            definition: ecs::TaskDefinition {
                family: Some(family.into()),
                revision: Some(1),
                task_definition_arn: Some(format!("arn:td/{family}:1")),
                status: Some(status),
                ..Default::default()
            },
            tags: Default::default(),
        }
    }

    #[tokio::test]
    async fn deletes_only_unused_delete_in_progress_definitions() {
        let c = Control::new(
            Arc::new(MemStore::new()),
            Arc::new(ManualClock::new(0)),
            Default::default(),
        );
        let store = c.store.as_ref();
        let mut txn = Txn::new();
        for (f, s) in [
            ("gone", TaskDefinitionStatus::DeleteInProgress),
            ("kept", TaskDefinitionStatus::Active),
        ] {
            txn = txn.then(records::put(
                &keys::task_definition("us-east-1", f, 1),
                &td(f, s),
            ));
        }
        store.txn(txn).await.unwrap();
        assert_eq!(sweep_task_definitions(&c).await, 1);
        assert!(records::get::<TaskDefinitionRecord>(
            store,
            &keys::task_definition("us-east-1", "gone", 1)
        )
        .await
        .unwrap()
        .is_none());
        assert!(records::get::<TaskDefinitionRecord>(
            store,
            &keys::task_definition("us-east-1", "kept", 1)
        )
        .await
        .unwrap()
        .is_some());
        assert_eq!(sweep_task_definitions(&c).await, 0);
    }

    fn task(id: &str, status: TaskStatus, stopped_at: Option<i64>, td: &str) -> TaskRecord {
        TaskRecord {
            last_status: status,
            stopped_at,
            task_definition_arn: td.into(),
            ..TaskRecord::new(id, &format!("arn:task/{id}"), "c", 0)
        }
    }

    #[tokio::test]
    async fn forgets_only_tasks_stopped_longer_than_the_retention() {
        let hour = 3_600_000;
        let clock = Arc::new(ManualClock::new(10 * hour));
        let c = Control::new(Arc::new(MemStore::new()), clock, Default::default());
        let store = c.store.as_ref();
        let mut txn = Txn::new();
        for t in [
            task("old", TaskStatus::Stopped, Some(8 * hour), "arn:td/a:1"),
            task(
                "recent",
                TaskStatus::Stopped,
                Some(9 * hour + 1),
                "arn:td/a:1",
            ),
            task("running", TaskStatus::Running, None, "arn:td/a:1"),
        ] {
            txn = txn.then(records::put(
                &keys::task(
                    &wharf_core::records::ClusterKey::new("us-east-1", "c"),
                    &t.id,
                ),
                &t,
            ));
        }
        store.txn(txn).await.unwrap();
        assert_eq!(sweep(&c).await, 1);
        let left: Vec<String> = records::list::<TaskRecord>(store, keys::TASKS)
            .await
            .unwrap()
            .0
            .into_iter()
            .map(|t| t.value.id)
            .collect();
        assert_eq!(left, ["recent", "running"]);
        assert_eq!(sweep(&c).await, 0);
    }

    #[tokio::test]
    async fn keeps_a_deleted_definition_while_a_task_uses_it() {
        let c = Control::new(
            Arc::new(MemStore::new()),
            Arc::new(ManualClock::new(0)),
            Default::default(),
        );
        let store = c.store.as_ref();
        let def = td("used", TaskDefinitionStatus::DeleteInProgress);
        let t = task("t", TaskStatus::Running, None, "arn:td/used:1");
        let txn = Txn::new()
            .then(records::put(
                &keys::task_definition("us-east-1", "used", 1),
                &def,
            ))
            .then(records::put(
                &keys::task(&wharf_core::records::ClusterKey::new("us-east-1", "c"), "t"),
                &t,
            ));
        store.txn(txn).await.unwrap();
        assert_eq!(sweep_task_definitions(&c).await, 0);
        store
            .txn(Txn::new().then(Op::delete(keys::task(
                &wharf_core::records::ClusterKey::new("us-east-1", "c"),
                "t",
            ))))
            .await
            .unwrap();
        assert_eq!(sweep_task_definitions(&c).await, 1);
    }
}
