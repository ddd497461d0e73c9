//! ExecuteCommand: opens an ECS Exec session to a container of a running
//! task (see `wharf_core::exec_protocol` for the whole path). The session
//! is a store record under a lease, so an unused one disappears by itself
//! and the agent of the task's host finds it by following the store.

use super::{active_cluster, cluster_name, tasks};
use crate::error::{from_store, invalid, ApiResult};
use crate::tokens::{random_hex, sha256_hex};
use crate::{Control, Ctx};
use std::time::Duration;
use wharf_core::exec_protocol::{split_command, ExecSessionRecord, ATTACH_SECONDS, STREAM_PATH};
use wharf_core::lifecycle::TaskStatus;
use wharf_core::records::{keys, ClusterKey};
use wharf_model::ecs;
use wharf_protocol::AwsError;
use wharf_store::{Op, Txn};

/// ECS's answer for a task run without `enableExecuteCommand` (its
/// apostrophe included).
pub(crate) const NOT_ENABLED: &str = "The execute command failed because execute command was not enabled when the task was run or the execute command agent isn\u{2019}t running. Wait and try again or run a new task with execute command enabled and try again.";

/// The longest command accepted, as bytes.
const MAX_COMMAND: usize = 4096;

fn not_connected() -> AwsError {
    AwsError::client(
        "TargetNotConnectedException",
        "The execute command cannot run because the agent of the task's host is not connected. Wait and try again.",
    )
}

/// Refuses what a cluster's ECS Exec configuration asks that Wharf cannot
/// do: session logs go to CloudWatch Logs only (no S3), and no KMS.
pub(crate) fn check_configuration(cfg: Option<&ecs::ClusterConfiguration>) -> ApiResult<()> {
    let Some(e) = cfg.and_then(|c| c.execute_command_configuration.as_ref()) else {
        return Ok(());
    };
    let unsupported = |member: &str, why: &str| {
        Err(AwsError::client(
            "InvalidParameterException",
            format!("executeCommandConfiguration.{member} is not supported by Wharf: {why}."),
        ))
    };
    if e.kms_key_id.is_some() {
        return unsupported(
            "kmsKeyId",
            "Wharf has no KMS; the session's stream is protected by the API's TLS",
        );
    }
    let override_ = e.logging == Some(ecs::ExecuteCommandLogging::Override);
    match (&e.log_configuration, override_) {
        (None, true) => {
            return Err(invalid(
                "executeCommandConfiguration.logConfiguration must be given when logging is OVERRIDE.",
            ))
        }
        (Some(_), false) => {
            return Err(invalid(
                "executeCommandConfiguration.logConfiguration may only be given when logging is OVERRIDE.",
            ))
        }
        _ => {}
    }
    let Some(l) = &e.log_configuration else {
        return Ok(());
    };
    if l.s3_bucket_name.is_some()
        || l.s3_key_prefix.is_some()
        || l.s3_encryption_enabled == Some(true)
    {
        return unsupported(
            "logConfiguration.s3BucketName",
            "Wharf has no S3; log sessions to CloudWatch Logs",
        );
    }
    if l.cloud_watch_encryption_enabled == Some(true) {
        return unsupported(
            "logConfiguration.cloudWatchEncryptionEnabled",
            "Wharf's log groups have no KMS key",
        );
    }
    if l.cloud_watch_log_group_name
        .as_deref()
        .is_none_or(str::is_empty)
    {
        return Err(invalid(
            "executeCommandConfiguration.logConfiguration.cloudWatchLogGroupName must be given.",
        ));
    }
    Ok(())
}

/// The CloudWatch Logs group a session's output goes to, as ECS chooses:
/// none with logging NONE; the cluster's group with OVERRIDE; otherwise
/// (DEFAULT) the container's awslogs group, if it logs with awslogs.
fn session_log_group(
    cluster: &wharf_core::records::ClusterRecord,
    container: Option<&ecs::ContainerDefinition>,
) -> Option<String> {
    let e = cluster
        .configuration
        .as_ref()
        .and_then(|c| c.execute_command_configuration.as_ref());
    match e.and_then(|e| e.logging.clone()) {
        Some(ecs::ExecuteCommandLogging::None) => None,
        Some(ecs::ExecuteCommandLogging::Override) => e
            .and_then(|e| e.log_configuration.as_ref())
            .and_then(|l| l.cloud_watch_log_group_name.clone()),
        _ => container
            .and_then(|d| d.log_configuration.as_ref())
            .filter(|l| l.log_driver == ecs::LogDriver::Awslogs)
            .and_then(|l| l.options.as_ref())
            .and_then(|o| o.get("awslogs-group").cloned()),
    }
}

pub async fn execute_command(
    c: &Control,
    x: &Ctx,
    r: ecs::ExecuteCommandRequest,
) -> ApiResult<ecs::ExecuteCommandResponse> {
    let cluster_given = cluster_name(x, r.cluster.as_deref())?;
    let cluster = active_cluster(c, x, &cluster_given).await?;
    if !r.interactive {
        return Err(invalid("Interactive is the only mode supported currently."));
    }
    if r.command.len() > MAX_COMMAND {
        return Err(invalid(format!(
            "command may contain up to {MAX_COMMAND} characters."
        )));
    }
    let command = split_command(&r.command)
        .ok_or_else(|| invalid("command must name a program, with any quotes closed."))?;
    if r.task.is_empty() {
        return Err(invalid("task should not be null or empty."));
    }
    let task = tasks::find(c, x, Some(&cluster.value.name), &r.task)
        .await?
        .filter(|t| t.value.cluster == cluster.value.name)
        .ok_or_else(|| invalid("The specified task was not found."))?
        .value;
    if !task.enable_execute_command {
        return Err(invalid(NOT_ENABLED));
    }
    if task.last_status != TaskStatus::Running {
        return Err(invalid(format!(
            "The execute command failed because the task is {}; it must be RUNNING.",
            task.last_status.as_str()
        )));
    }
    let container =
        match (&r.container, task.containers.as_slice()) {
            (Some(name), all) => all.iter().find(|k| &k.name == name).ok_or_else(|| {
                invalid(format!(
                    "The container {name} is not a container of the task."
                ))
            })?,
            (None, [only]) => only,
            (None, _) => return Err(invalid(
                "The task has more than one container: name the container to run the command in.",
            )),
        };
    if container.last_status != "RUNNING" {
        return Err(invalid(format!(
            "The execute command failed because container {} is {}; it must be RUNNING.",
            container.name, container.last_status
        )));
    }
    let instance_id = task.instance_id.clone().ok_or_else(not_connected)?;
    let capacity = if task.launch_type == "FARGATE" {
        ClusterKey::managed()
    } else {
        task.cluster_key()
    };
    let connected = c
        .store
        .get(&keys::agent_session(&capacity, &instance_id))
        .await
        .map_err(from_store)?;
    if connected.is_none() {
        return Err(not_connected());
    }
    let td = crate::records::get::<wharf_core::records::TaskDefinitionRecord>(
        c.store.as_ref(),
        &task.definition_key(),
    )
    .await?;
    let definition = td.as_ref().and_then(|td| {
        td.value
            .definition
            .container_definitions
            .iter()
            .flatten()
            .find(|d| d.name.as_deref() == Some(container.name.as_str()))
    });
    let log_group = session_log_group(&cluster.value, definition);
    let session_id = format!("ecs-execute-command-{}", random_hex(9));
    let token = random_hex(32);
    let lease = c
        .store
        .grant_lease(Duration::from_secs(ATTACH_SECONDS))
        .await
        .map_err(from_store)?;
    let record = ExecSessionRecord {
        session_id: session_id.clone(),
        capacity: capacity.as_str().to_string(),
        instance_id,
        task_arn: task.arn.clone(),
        container_name: container.name.clone(),
        command,
        client_token_sha256: sha256_hex(&token),
        agent_token: random_hex(32),
        log_group,
        lease,
        created_at: x.now,
    };
    c.store
        .txn(Txn::new().then(Op::put_with_lease(
            keys::exec_session(&session_id),
            crate::records::encode(&record),
            lease,
        )))
        .await
        .map_err(from_store)?;
    tracing::info!(session = %session_id, task = %task.arn, container = %container.name, "exec session opened");
    let origin = x.origin(c, "wss", "ws");
    Ok(ecs::ExecuteCommandResponse {
        cluster_arn: Some(cluster.value.arn.clone()),
        container_arn: Some(container.arn.clone()),
        container_name: Some(container.name.clone()),
        interactive: Some(true),
        session: Some(ecs::Session {
            stream_url: Some(format!("{origin}{STREAM_PATH}/{session_id}")),
            session_id: Some(session_id),
            token_value: Some(token),
        }),
        task_arn: Some(task.arn),
    })
}
