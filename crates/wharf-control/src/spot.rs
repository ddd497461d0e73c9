//! Spot interruptions on demand (`WharfAdmin_v1.InterruptSpotTasks`,
//! `wharf interrupt`): a FARGATE_SPOT task is stopped as Spot stops one
//! when AWS takes its capacity back, so users can test how their service
//! rides it out. The stop carries `stopCode: SpotInterruption`; the agent
//! sends SIGTERM and waits the two-minute warning before SIGKILL
//! (`AssignedTask::stop_timeout_seconds`); a service replaces the task.

use crate::ecs::{active_cluster, cluster_name, tasks};
use crate::error::{invalid, ApiResult};
use crate::records::{self, commit, Versioned};
use crate::{Control, Ctx};
use wharf_core::admin_protocol::{
    InterruptSpotTasksRequest, InterruptSpotTasksResponse, SpotFailure,
};
use wharf_core::capacity::{FARGATE_SPOT, SPOT_INTERRUPTED_REASON, SPOT_INTERRUPTION};
use wharf_core::lifecycle::{request_stop, DesiredStatus};
use wharf_core::records::{keys, TaskRecord};
use wharf_store::Txn;

pub async fn interrupt(
    c: &Control,
    x: &Ctx,
    r: InterruptSpotTasksRequest,
) -> ApiResult<InterruptSpotTasksResponse> {
    let cluster = cluster_name(x, r.cluster.as_deref())?;
    active_cluster(c, x, &cluster).await?;
    if r.tasks.is_empty() == r.service.is_none() {
        return Err(invalid(
            "Name the tasks to interrupt, or a service (all its FARGATE_SPOT tasks), not both.",
        ));
    }
    if r.tasks.len() > 100 {
        return Err(invalid("Up to 100 tasks can be interrupted at a time."));
    }
    let mut out = InterruptSpotTasksResponse {
        interrupted: vec![],
        failures: vec![],
    };
    let mut chosen: Vec<Versioned<TaskRecord>> = vec![];
    for given in &r.tasks {
        let fail = |reason: &str| SpotFailure {
            task: given.clone(),
            reason: reason.into(),
        };
        match tasks::find(c, x, Some(&cluster), given).await? {
            None => out.failures.push(fail("MISSING")),
            Some(t) if t.value.capacity_provider_name.as_deref() != Some(FARGATE_SPOT) => out
                .failures
                .push(fail("the task does not run on FARGATE_SPOT")),
            Some(t) if t.value.desired_status == DesiredStatus::Stopped => {
                out.failures.push(fail("the task is already stopping"))
            }
            Some(t) => chosen.push(t),
        }
    }
    if let Some(service) = &r.service {
        let group = format!("service:{service}");
        let (all, _) =
            records::list::<TaskRecord>(c.store.as_ref(), &keys::tasks(&x.cluster_key(&cluster)))
                .await?;
        chosen.extend(all.into_iter().filter(|t| {
            t.value.group == group
                && t.value.capacity_provider_name.as_deref() == Some(FARGATE_SPOT)
                && t.value.desired_status == DesiredStatus::Running
        }));
    }
    for mut t in chosen {
        for _ in 0..records::MAX_ATTEMPTS {
            if !request_stop(
                &mut t.value,
                x.now,
                SPOT_INTERRUPTION,
                SPOT_INTERRUPTED_REASON,
            ) {
                break;
            }
            if commit(
                c.store.as_ref(),
                Txn::new().when(t.unchanged()).then(t.put()),
            )
            .await?
            {
                tracing::info!(task = %t.value.arn, "Spot interruption");
                out.interrupted.push(t.value.arn.clone());
                break;
            }
            match records::get::<TaskRecord>(c.store.as_ref(), &t.key).await? {
                Some(fresh) => t = fresh,
                None => break,
            }
        }
    }
    Ok(out)
}
