//! Forgets STOPPED tasks once their retention has passed, as ECS does after
//! about an hour.

use crate::records;
use crate::Control;
use std::time::Duration;
use wharf_core::lifecycle::TaskStatus;
use wharf_core::records::{keys, TaskRecord};
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

/// Sweeps every `every` until the process ends.
pub async fn run(c: Control, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let n = sweep(&c).await;
        if n > 0 {
            tracing::info!(removed = n, "forgot expired stopped tasks");
        }
    }
}
