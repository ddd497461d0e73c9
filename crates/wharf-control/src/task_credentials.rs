//! Task roles: the credentials an agent hands a task's containers through
//! its credentials endpoint, and their end when the task stops.
//!
//! An agent asks (`WharfAgent_v1.GetTaskCredentials`) for the role of a
//! task placed on one of its instances. The role is assumed as
//! `ecs-tasks.amazonaws.com` (its trust policy must allow that), the
//! session named after the task, and the session's access key ID is kept
//! in the task record in the same transaction, which compares the task
//! unchanged: a task that stops meanwhile gets nothing. [`revoke_stopped`]
//! follows `/tasks/` and deletes the sessions of every task that reaches
//! STOPPED, so its credentials stop working with it.

use crate::agent_api::live_task;
use crate::error::{client, from_store, invalid, ApiResult};
use crate::records::{self, MAX_ATTEMPTS};
use crate::{Control, Ctx};
use std::time::Duration;
use wharf_core::agent_protocol::{
    TaskCredentialsRequest, TaskCredentialsResponse, GET_TASK_CREDENTIALS,
};
use wharf_core::lifecycle::TaskStatus;
use wharf_core::records::{keys, RoleCredentials, TaskDefinitionRecord, TaskRecord};
use wharf_iam::service_roles::{self, Assume, ServiceRoleError, ECS_TASKS};
use wharf_store::{EventKind, Op, Txn};

/// How long each set of credentials lasts; the agent fetches new ones
/// well before (see `wharf_agent::credentials`).
pub const DURATION_SECONDS: u64 = 3600;

/// A task holds at most this many live sessions (an agent refreshing as it
/// should has two at a time; each restart of its agent adds one): a new one
/// beyond them revokes the oldest.
const MAX_LIVE_SESSIONS: usize = 8;

/// ECS's refusal of a role it cannot assume for a task.
pub(crate) fn unable_to_assume(role: &str) -> wharf_protocol::AwsError {
    client(format!(
        "ECS was unable to assume the role '{role}' that was provided for this task. Please verify that the role being passed has the proper trust relationship and permissions and that your IAM user has permissions to pass this role."
    ))
}

/// RunTask and StartTask refuse a task role that `ecs-tasks.amazonaws.com`
/// may not assume (it does not exist, or its trust policy does not name
/// the service), as ECS does, rather than start tasks that cannot get it.
pub(crate) fn check_role(c: &Control, role: &str, cluster_arn: &str) -> ApiResult<()> {
    service_roles::check(&c.iam, ECS_TASKS, role, cluster_arn, None, c.clock.now())
        .map(|_| ())
        .map_err(|_| unable_to_assume(role))
}

pub(crate) async fn get(
    c: &Control,
    x: &Ctx,
    r: TaskCredentialsRequest,
) -> ApiResult<TaskCredentialsResponse> {
    for _ in 0..MAX_ATTEMPTS {
        let (task, td) = live_task(
            c,
            x,
            GET_TASK_CREDENTIALS,
            &r.task_arn,
            "The task has stopped: its task role's credentials are revoked.",
        )
        .await?;
        let t = &task.value;
        if r.execution {
            return execution(c, &task, &td, c.clock.now()).await;
        }
        let Some(role) = wharf_core::taskdef::task_role(&td.definition, &t.overrides) else {
            return Err(invalid("The task has no task role (taskRoleArn)."));
        };
        let role = role.to_string();
        let now = c.clock.now();
        let mut held = t
            .role_credentials
            .clone()
            .unwrap_or_else(|| RoleCredentials {
                id: uuid::Uuid::new_v4().simple().to_string(),
                sessions: vec![],
            });
        held.sessions.retain(|(_, expires)| *expires > now);
        let evicted: Vec<String> = {
            let over = (held.sessions.len() + 1).saturating_sub(MAX_LIVE_SESSIONS);
            held.sessions.drain(..over).map(|(id, _)| id).collect()
        };
        let assume = Assume {
            service: ECS_TASKS,
            role_arn: &role,
            session_name: &t.id,
            source_arn: &t.cluster_arn,
            duration_seconds: DURATION_SECONDS,
        };
        let issued = service_roles::assume(&c.iam, assume, now, |akid, expires| {
            let mut updated = task.clone();
            let mut held = held.clone();
            held.sessions.push((akid.to_string(), expires));
            updated.value.role_credentials = Some(held);
            let mut ops = vec![updated.put()];
            ops.extend(
                evicted
                    .iter()
                    .map(|id| Op::delete(wharf_iam::records::keys::session(id))),
            );
            (vec![task.unchanged()], ops)
        })
        .await;
        match issued {
            Ok(Some(i)) => {
                return Ok(TaskCredentialsResponse {
                    credentials_id: held.id,
                    role_arn: role,
                    access_key_id: i.access_key_id,
                    secret_access_key: i.secret_access_key,
                    session_token: i.session_token,
                    expiration: i.expires,
                    issued: now,
                })
            }
            // The task changed meanwhile: read it again.
            Ok(None) => continue,
            Err(ServiceRoleError::Store(e)) => return Err(from_store(e)),
            Err(_) => return Err(unable_to_assume(&role)),
        }
    }
    Err(records::contention())
}

/// Credentials of the task's execution role, for its agent: issued on the
/// condition that the task is unchanged (so not stopped meanwhile), and
/// not listed in it: they are not revoked at its stop but expire, as the
/// agent still ships its last log lines with them.
async fn execution(
    c: &Control,
    task: &wharf_store::typed::Versioned<TaskRecord>,
    td: &TaskDefinitionRecord,
    now: i64,
) -> ApiResult<TaskCredentialsResponse> {
    let t = &task.value;
    let Some(role) = wharf_core::taskdef::execution_role(&td.definition, &t.overrides) else {
        return Err(invalid(
            "The task has no execution role (executionRoleArn).",
        ));
    };
    let role = role.to_string();
    let assume = Assume {
        service: ECS_TASKS,
        role_arn: &role,
        session_name: &t.id,
        source_arn: &t.cluster_arn,
        duration_seconds: DURATION_SECONDS,
    };
    let issued =
        service_roles::assume(&c.iam, assume, now, |_, _| (vec![task.unchanged()], vec![])).await;
    match issued {
        Ok(Some(i)) => Ok(TaskCredentialsResponse {
            credentials_id: String::new(),
            role_arn: role,
            access_key_id: i.access_key_id,
            secret_access_key: i.secret_access_key,
            session_token: i.session_token,
            expiration: i.expires,
            issued: now,
        }),
        Ok(None) => Err(records::contention()),
        Err(ServiceRoleError::Store(e)) => Err(from_store(e)),
        Err(_) => Err(unable_to_assume(&role)),
    }
}

/// The fields of a stored task revocation reads.
#[derive(serde::Deserialize)]
struct Brief {
    last_status: TaskStatus,
    #[serde(default)]
    role_credentials: Option<RoleCredentials>,
}

/// The sessions to revoke of the stored task `value`: those of a STOPPED
/// task (only records that mention role credentials are decoded).
fn due(value: &[u8]) -> Vec<String> {
    if memchr::memmem::find(value, b"\"role_credentials\":{").is_none() {
        return vec![];
    }
    match serde_json::from_slice::<Brief>(value) {
        Ok(Brief {
            last_status: TaskStatus::Stopped,
            role_credentials: Some(held),
        }) => held.sessions.into_iter().map(|(id, _)| id).collect(),
        _ => vec![],
    }
}

/// Deletes the sessions, retrying until the store takes it: a stopped
/// task's record may be reaped before anything would look at it again.
async fn revoke(c: &Control, sessions: Vec<String>) {
    // Deleting a session already gone (expired, revoked) writes nothing.
    for chunk in sessions.chunks(128) {
        let mut txn = Txn::new();
        for id in chunk {
            txn = txn.then(Op::delete(wharf_iam::records::keys::session(id)));
        }
        let mut wait = Duration::from_millis(100);
        while let Err(e) = c.store.txn(txn.clone()).await {
            tracing::warn!(error = %e, "cannot revoke stopped tasks' role credentials; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }
}

/// Revokes the task-role sessions of every task that reaches STOPPED: a
/// scan first (what stopped while no server followed), then the watch;
/// a watch that ends (fell behind) scans again.
pub async fn revoke_stopped(c: Control) {
    loop {
        let mut sessions = vec![];
        let scanned = wharf_store::scan(c.store.as_ref(), keys::TASKS, 10_000, |kv| {
            sessions.extend(due(&kv.value))
        })
        .await;
        let revision = match scanned {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot scan tasks for role credentials; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        revoke(&c, sessions).await;
        let Ok(mut rx) = c.store.watch(keys::TASKS, revision + 1).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        while let Some(ev) = rx.recv().await {
            if ev.kind == EventKind::Put {
                let sessions = due(&ev.kv.value);
                revoke(&c, sessions).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_stopped_task_s_sessions_are_due() {
        let mut t = TaskRecord::new("t", "arn:aws:ecs:eu-west-1:0:task/c/t", "c", 0);
        assert!(due(&serde_json::to_vec(&t).unwrap()).is_empty());
        t.role_credentials = Some(RoleCredentials {
            id: "x".into(),
            sessions: vec![("ASIA1".into(), 10), ("ASIA2".into(), 20)],
        });
        assert!(
            due(&serde_json::to_vec(&t).unwrap()).is_empty(),
            "a running task keeps its credentials"
        );
        t.last_status = TaskStatus::Stopped;
        assert_eq!(due(&serde_json::to_vec(&t).unwrap()), ["ASIA1", "ASIA2"]);
    }
}
