//! Forgets STOPPED tasks once their retention has passed, as ECS does after
//! about an hour, and finishes deleting task definitions (DELETE_IN_PROGRESS)
//! once no task or service deployment uses them any more.

use crate::records;
use crate::Control;
use std::time::Duration;
use wharf_core::lifecycle::TaskStatus;
use wharf_core::records::{keys, TaskDefinitionRecord, TaskRecord};
use wharf_core::service::ServiceRecord;
use wharf_model::ecs::TaskDefinitionStatus;
use wharf_store::Txn;

/// One sweep; returns how many tasks were removed.
pub async fn sweep(c: &Control) -> usize {
    let horizon = c.clock.now() - c.config.stopped_task_retention.as_millis() as i64;
    let Ok((tasks, _)) = records::list::<TaskRecord>(c.store.as_ref(), keys::TASKS).await else {
        return 0;
    };
    let mut removed = 0;
    for t in tasks {
        let expired = t.value.last_status == TaskStatus::Stopped
            && t.value.stopped_at.is_some_and(|s| s < horizon);
        if expired {
            let txn = Txn::new()
                .when(t.unchanged())
                .then(wharf_store::Op::delete(t.key.clone()));
            if records::commit(c.store.as_ref(), txn)
                .await
                .unwrap_or(false)
            {
                removed += 1;
            }
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
    let (Ok((tasks, _)), Ok((services, _))) = (
        records::list::<TaskRecord>(store, keys::TASKS).await,
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
        let used = tasks.iter().any(|t| t.value.task_definition_arn == arn)
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
                .then(wharf_store::Op::delete(d.key.clone()));
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
            txn = txn.then(records::put(&keys::task_definition(f, 1), &td(f, s)));
        }
        store.txn(txn).await.unwrap();
        assert_eq!(sweep_task_definitions(&c).await, 1);
        assert!(
            records::get::<TaskDefinitionRecord>(store, &keys::task_definition("gone", 1))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            records::get::<TaskDefinitionRecord>(store, &keys::task_definition("kept", 1))
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(sweep_task_definitions(&c).await, 0);
    }
}
