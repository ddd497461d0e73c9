//! Task scale-in protection: a service's protected task is passed by when
//! the service scales in or rolls out a deployment, until the protection
//! lapses (`wharf_core::service::plan`). StopTask, a failing health check,
//! a draining instance and a deleted service still stop it, as in ECS.

use super::{active_cluster, cluster_name, tasks};
use crate::error::{invalid, ApiResult};
use crate::records::{self, commit, Versioned};
use crate::{Control, Ctx};
use wharf_core::clock::to_epoch_seconds;
use wharf_core::lifecycle::DesiredStatus;
use wharf_core::records::TaskRecord;
use wharf_model::ecs;
use wharf_store::Txn;

const DEFAULT_MINUTES: i32 = 120;
const MAX_MINUTES: i32 = 2_880;

fn protected_task(t: &TaskRecord, now: i64) -> ecs::ProtectedTask {
    let on = t.protected(now);
    ecs::ProtectedTask {
        task_arn: Some(t.arn.clone()),
        protection_enabled: Some(on),
        expiration_date: t.protected_until.filter(|_| on).map(to_epoch_seconds),
    }
}

fn failure(arn: String, reason: &str, detail: &str) -> ecs::Failure {
    ecs::Failure {
        arn: Some(arn),
        reason: Some(reason.into()),
        detail: Some(detail.into()),
    }
}

/// The named tasks of the cluster, or a failure for each that is missing
/// or not a service's (ECS's MISSING and TASK_NOT_VALID).
async fn named(
    c: &Control,
    x: &Ctx,
    cluster: &str,
    given: &[String],
    most: usize,
) -> ApiResult<(Vec<Versioned<TaskRecord>>, Vec<ecs::Failure>)> {
    if given.is_empty() || given.len() > most {
        return Err(invalid(format!(
            "tasks must name between 1 and {most} tasks."
        )));
    }
    let (mut found, mut failures) = (vec![], vec![]);
    for g in given {
        match tasks::find(c, x, Some(cluster), g).await? {
            None => failures.push(failure(g.clone(), "MISSING", "The task was not found.")),
            Some(t) if !t.value.group.starts_with("service:") => failures.push(failure(
                t.value.arn.clone(),
                "TASK_NOT_VALID",
                "Task protection is only for the tasks of a service.",
            )),
            Some(t) => found.push(t),
        }
    }
    Ok((found, failures))
}

pub async fn update(
    c: &Control,
    x: &Ctx,
    r: ecs::UpdateTaskProtectionRequest,
) -> ApiResult<ecs::UpdateTaskProtectionResponse> {
    let cluster = cluster_name(x, Some(&r.cluster))?;
    active_cluster(c, x, &cluster).await?;
    let minutes = match (r.protection_enabled, r.expires_in_minutes) {
        (true, m) => {
            let m = m.unwrap_or(DEFAULT_MINUTES);
            if !(1..=MAX_MINUTES).contains(&m) {
                return Err(invalid(format!(
                    "expiresInMinutes must be between 1 and {MAX_MINUTES}; {m} was given."
                )));
            }
            Some(m)
        }
        (false, Some(_)) => {
            return Err(invalid(
                "expiresInMinutes can only be given with protectionEnabled true.",
            ))
        }
        (false, None) => None,
    };
    let (found, mut failures) = named(c, x, &cluster, &r.tasks, 10).await?;
    let mut protected = vec![];
    for mut t in found {
        for _ in 0..records::MAX_ATTEMPTS {
            if t.value.desired_status == DesiredStatus::Stopped {
                failures.push(failure(
                    t.value.arn.clone(),
                    "TASK_NOT_VALID",
                    "The task is stopping.",
                ));
                break;
            }
            // Each call sets the expiry anew (the window is counted from now).
            t.value.protected_until = minutes.map(|m| x.now + i64::from(m) * 60_000);
            t.value.version += 1;
            if commit(
                c.store.as_ref(),
                Txn::new().when(t.unchanged()).then(t.put()),
            )
            .await?
            {
                protected.push(protected_task(&t.value, x.now));
                break;
            }
            match records::get::<TaskRecord>(c.store.as_ref(), &t.key).await? {
                Some(fresh) => t = fresh,
                None => {
                    failures.push(failure(
                        t.value.arn.clone(),
                        "MISSING",
                        "The task was not found.",
                    ));
                    break;
                }
            }
        }
    }
    Ok(ecs::UpdateTaskProtectionResponse {
        protected_tasks: Some(protected),
        failures: Some(failures),
    })
}

pub async fn get(
    c: &Control,
    x: &Ctx,
    r: ecs::GetTaskProtectionRequest,
) -> ApiResult<ecs::GetTaskProtectionResponse> {
    let cluster = cluster_name(x, Some(&r.cluster))?;
    active_cluster(c, x, &cluster).await?;
    let (found, failures) =
        named(c, x, &cluster, r.tasks.as_deref().unwrap_or_default(), 100).await?;
    Ok(ecs::GetTaskProtectionResponse {
        protected_tasks: Some(
            found
                .iter()
                .map(|t| protected_task(&t.value, x.now))
                .collect(),
        ),
        failures: Some(failures),
    })
}
