//! The operations ECS keeps for its container agent: where to poll
//! (DiscoverPollEndpoint), agent updates (UpdateContainerAgent), and state
//! reports (SubmitTaskStateChange, SubmitContainerStateChange). Wharf's
//! agent speaks its own protocol (`wharf_core::agent_protocol`); these map
//! onto it, so an agent of one's own making can report through the public
//! API, checked as Wharf's agent is (an agent only for its own tasks).

use super::{active_cluster, cluster_name, instances, tasks};
use crate::error::{invalid, ApiResult};
use crate::{Control, Ctx};
use wharf_core::agent_protocol::{ContainerReport, TaskStateReport};
use wharf_model::ecs;
use wharf_protocol::AwsError;

/// The version of the server, which is the agents' version too (one binary).
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Task statuses a report may give, and container statuses.
const TASK_STATUSES: &[&str] = &["PENDING", "RUNNING", "STOPPED"];
const CONTAINER_STATUSES: &[&str] = &["PENDING", "RUNNING", "STOPPED"];

fn ack() -> Option<String> {
    Some("ACK".into())
}

/// The server's own URL, as the caller reached it: Wharf's agent protocol,
/// its log and telemetry APIs are all served there.
fn own_url(c: &Control, x: &Ctx) -> String {
    format!("{}/", x.origin(c, "https", "http"))
}

pub async fn discover_poll_endpoint(
    c: &Control,
    x: &Ctx,
    r: ecs::DiscoverPollEndpointRequest,
) -> ApiResult<ecs::DiscoverPollEndpointResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    active_cluster(c, x, &name).await?;
    if let Some(given) = &r.container_instance {
        instances::find(c, &x.cluster_key(&name), given)
            .await?
            .filter(|v| v.value.status != "INACTIVE")
            .ok_or_else(|| invalid("The referenced container instance was not found."))?;
    }
    let url = own_url(c, x);
    Ok(ecs::DiscoverPollEndpointResponse {
        endpoint: Some(url.clone()),
        telemetry_endpoint: Some(url.clone()),
        service_connect_endpoint: Some(url),
    })
}

pub async fn update_container_agent(
    c: &Control,
    x: &Ctx,
    r: ecs::UpdateContainerAgentRequest,
) -> ApiResult<ecs::UpdateContainerAgentResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    active_cluster(c, x, &name).await?;
    let inst = instances::find(c, &x.cluster_key(&name), &r.container_instance)
        .await?
        .filter(|v| v.value.status != "INACTIVE")
        .ok_or_else(|| invalid("The referenced container instance was not found."))?;
    match inst.value.agent_version.as_deref() {
        None => Err(AwsError::client(
            "MissingVersionException",
            "Amazon ECS is unable to determine the current version of the container agent on the container instance and does not have enough information to proceed with an update.",
        )),
        // An agent is the `wharf` binary: it is updated by installing a
        // new one, never from the control plane.
        Some(v) => Err(AwsError::client(
            "NoUpdateAvailableException",
            format!(
                "There is no update available for your container agent (Wharf {v}; the server runs {VERSION}). A Wharf agent is updated by installing a new wharf binary on its host."
            ),
        )),
    }
}

/// Epoch seconds as ECS gives them → milliseconds, refused if not a time.
fn millis(member: &str, secs: Option<f64>) -> ApiResult<Option<i64>> {
    match secs {
        None => Ok(None),
        Some(s) if s.is_finite() && (0.0..=253_402_300_799.0).contains(&s) => {
            Ok(Some((s * 1000.0) as i64))
        }
        Some(_) => Err(invalid(format!("{member} is not a valid time."))),
    }
}

fn status_of(member: &str, given: Option<&str>, allowed: &[&str]) -> ApiResult<String> {
    match given {
        Some(s) if allowed.contains(&s) => Ok(s.to_string()),
        Some(s) => Err(invalid(format!(
            "{member} '{s}' is not one of {}.",
            allowed.join(", ")
        ))),
        None => Err(invalid(format!("{member} must be given."))),
    }
}

/// Refuses a report of a task the cluster does not have, or of a container
/// the task does not have (it would be dropped, not applied).
async fn check_containers(
    c: &Control,
    x: &Ctx,
    cluster: &str,
    task: &str,
    names: &[&str],
) -> ApiResult<()> {
    let t = tasks::find(c, x, Some(cluster), task)
        .await?
        .filter(|t| t.value.cluster == cluster)
        .ok_or_else(|| invalid("The referenced task was not found."))?;
    for name in names {
        if !t.value.containers.iter().any(|k| k.name == *name) {
            return Err(invalid(format!(
                "Container {name} is not a container of the task."
            )));
        }
    }
    Ok(())
}

fn task_of(r_task: Option<&String>) -> ApiResult<&str> {
    r_task
        .map(String::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("task must be given."))
}

pub async fn submit_task_state_change(
    c: &Control,
    x: &Ctx,
    r: ecs::SubmitTaskStateChangeRequest,
) -> ApiResult<ecs::SubmitTaskStateChangeResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    let task = task_of(r.task.as_ref())?;
    if r.attachments.as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(invalid(
            "attachments are not taken: a task's network interface state is Wharf's own.",
        ));
    }
    if r.managed_agents.as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(invalid(
            "managedAgents are not taken: the ECS Exec agent is Wharf's own agent.",
        ));
    }
    let status = status_of("status", r.status.as_deref(), TASK_STATUSES)?;
    let mut report = TaskStateReport::new(&name, task, &status);
    report.reason = r.reason.clone();
    report.pull_started_at = millis("pullStartedAt", r.pull_started_at)?;
    report.pull_stopped_at = millis("pullStoppedAt", r.pull_stopped_at)?;
    report.execution_stopped_at = millis("executionStoppedAt", r.execution_stopped_at)?;
    for k in r.containers.iter().flatten() {
        let container = k
            .container_name
            .as_deref()
            .ok_or_else(|| invalid("containers[].containerName must be given."))?;
        report.containers.push(ContainerReport {
            name: container.to_string(),
            runtime_id: k.runtime_id.clone(),
            image_digest: k.image_digest.clone(),
            status: status_of(
                "containers[].status",
                k.status.as_deref(),
                CONTAINER_STATUSES,
            )?,
            exit_code: k.exit_code,
            reason: k.reason.clone(),
            network_bindings: k.network_bindings.clone().unwrap_or_default(),
            health_status: None,
        });
    }
    active_cluster(c, x, &name).await?;
    let names: Vec<&str> = report.containers.iter().map(|k| k.name.as_str()).collect();
    check_containers(c, x, &name, task, &names).await?;
    crate::agent_api::report(c, x, report).await?;
    Ok(ecs::SubmitTaskStateChangeResponse {
        acknowledgment: ack(),
    })
}

pub async fn submit_container_state_change(
    c: &Control,
    x: &Ctx,
    r: ecs::SubmitContainerStateChangeRequest,
) -> ApiResult<ecs::SubmitContainerStateChangeResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    let task = task_of(r.task.as_ref())?;
    let container = r
        .container_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("containerName must be given."))?;
    let status = status_of("status", r.status.as_deref(), CONTAINER_STATUSES)?;
    // A container's change alone: the task's status is left as it is (an
    // essential container's stop still stops the task, as in ECS).
    let mut report = TaskStateReport::new(&name, task, "");
    report.containers.push(ContainerReport {
        name: container.to_string(),
        runtime_id: r.runtime_id.clone(),
        image_digest: None,
        status,
        exit_code: r.exit_code,
        reason: r.reason.clone(),
        network_bindings: r.network_bindings.clone().unwrap_or_default(),
        health_status: None,
    });
    active_cluster(c, x, &name).await?;
    check_containers(c, x, &name, task, &[container]).await?;
    crate::agent_api::report(c, x, report).await?;
    Ok(ecs::SubmitContainerStateChangeResponse {
        acknowledgment: ack(),
    })
}
