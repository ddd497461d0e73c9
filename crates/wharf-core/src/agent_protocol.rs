//! What the control plane and a host agent say to each other, beside the
//! public ECS operations the agent also uses (RegisterContainerInstance).
//! Carried as AWS JSON 1.1 under the target prefix [`TARGET_PREFIX`], signed
//! like any other request.
//!
//! The agent is level-triggered: [`PollRequest`] returns every task assigned
//! to the instance with its desired status, and the agent converges Docker
//! to it; it reports what it observes with [`TaskStateReport`].

use serde::{Deserialize, Serialize};
use wharf_model::ecs;

pub const TARGET_PREFIX: &str = "WharfAgent_v1";
pub const POLL: &str = "Poll";
pub const REPORT_TASK_STATE: &str = "ReportTaskState";
pub const DISCONNECT: &str = "Disconnect";
/// Registers the host as managed (FARGATE) capacity: a container instance
/// of the hidden cluster [`crate::records::MANAGED_CLUSTER`] that no user
/// sees. Body and answer are RegisterContainerInstance's.
pub const REGISTER_MANAGED: &str = "RegisterManagedCapacity";
/// Credentials of a task's role (see [`TaskCredentialsRequest`]).
pub const GET_TASK_CREDENTIALS: &str = "GetTaskCredentials";
/// What a task's execution role reads for it (see [`TaskSecretsRequest`]).
pub const GET_TASK_SECRETS: &str = "GetTaskSecrets";

/// Asks for the values of a task's `secrets` (Secrets Manager secrets and
/// SSM parameters) and its containers' `repositoryCredentials`, read with
/// the permissions of the task's execution role, as ECS's agent reads them
/// before it creates the containers. A refusal's message is the reason the
/// task stops with (`ResourceInitializationError: …`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSecretsRequest {
    pub task_arn: String,
}

#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSecretsResponse {
    /// Environment variables to set, by container.
    #[serde(default)]
    pub secrets: Vec<ContainerSecret>,
    /// Registry credentials, by container.
    #[serde(default)]
    pub registry_credentials: Vec<RegistryCredentials>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSecret {
    pub container_name: String,
    pub name: String,
    pub value: String,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCredentials {
    pub container_name: String,
    pub username: String,
    pub password: String,
}

// Never the values.
impl std::fmt::Debug for TaskSecretsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSecretsResponse")
            .field("secrets", &self.secrets.len())
            .field("registry_credentials", &self.registry_credentials.len())
            .finish()
    }
}
impl std::fmt::Debug for ContainerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerSecret")
            .field("container_name", &self.container_name)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("container_name", &self.container_name)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Asks for fresh credentials of the task role of a task on one of the
/// agent's instances, as ECS hands its agent a task's role credentials:
/// STS session credentials of the role assumed by `ecs-tasks.amazonaws.com`
/// with the task's ID as session name, revoked when the task stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCredentialsRequest {
    pub task_arn: String,
    /// The task's execution role's instead, for what the agent does on the
    /// task's behalf (a FARGATE task's awslogs delivery). Those are the
    /// agent's alone, never served to the task, and end when they expire
    /// (its last log lines are shipped after it stops).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub execution: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCredentialsResponse {
    /// The task's ID at the credentials endpoint
    /// (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is `/v2/credentials/ID`):
    /// the same for every call of the task.
    pub credentials_id: String,
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Milliseconds since the epoch.
    pub expiration: i64,
    /// When they were issued, by the server's clock: the agent times their
    /// refresh by its own clock from their lifetime, not by comparing the
    /// server's expiry with its own time.
    pub issued: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollRequest {
    pub cluster: String,
    pub container_instance_arn: String,
    /// Answer at once if anything for this instance changed after this store
    /// revision (0: answer at once); otherwise wait up to `wait_millis`.
    pub after_revision: i64,
    pub wait_millis: u64,
    /// Container instances of this cluster that own containers on the
    /// agent's Docker host besides its own (another agent sharing the
    /// daemon, or this host's earlier registration): the answer says which
    /// of them are gone, so their containers can be removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_instances: Vec<String>,
}

/// At most this many [`PollRequest::other_instances`] are looked up per poll.
pub const MAX_OTHER_INSTANCES: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollResponse {
    pub revision: i64,
    /// False when the instance is unknown or deregistered: the agent must
    /// register again.
    pub registered: bool,
    pub tasks: Vec<AssignedTask>,
    /// Of the request's `other_instances`, those deregistered or unknown:
    /// nothing owns their containers any more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gone_instances: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedTask {
    pub task_arn: String,
    pub task_definition: ecs::TaskDefinition,
    #[serde(default)]
    pub overrides: ecs::TaskOverride,
    /// RUNNING or STOPPED.
    pub desired_status: String,
    pub last_status: String,
    /// Names of the task's containers with their ARNs, for labels.
    pub containers: Vec<AssignedContainer>,
    /// Seconds between SIGTERM and SIGKILL for every container of the
    /// stop, instead of their stopTimeout (a Spot interruption's warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_seconds: Option<u32>,
    /// The account's defaultLogDriverMode was `blocking` when the task was
    /// launched: its containers that name no delivery mode block.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocking_logs: bool,
    /// The task's group (`service:NAME` for a service's) and tags, which
    /// the task metadata endpoint reports.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "crate::records::Tags::is_empty")]
    pub tags: crate::records::Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedContainer {
    pub name: String,
    pub container_arn: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStateReport {
    pub cluster: String,
    pub task_arn: String,
    /// PENDING, RUNNING, STOPPING or STOPPED.
    pub status: String,
    pub reason: Option<String>,
    pub pull_started_at: Option<i64>,
    pub pull_stopped_at: Option<i64>,
    pub started_at: Option<i64>,
    pub execution_stopped_at: Option<i64>,
    pub containers: Vec<ContainerReport>,
    /// awsvpc: the task's own address (its network namespace's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ipv4: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerReport {
    pub name: String,
    pub runtime_id: Option<String>,
    pub image_digest: Option<String>,
    /// PENDING, RUNNING or STOPPED.
    pub status: String,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    #[serde(default)]
    pub network_bindings: Vec<ecs::NetworkBinding>,
    /// HEALTHY, UNHEALTHY or UNKNOWN, for containers with a health check.
    pub health_status: Option<String>,
}

impl TaskStateReport {
    /// A report of `status` with nothing else observed yet; callers add
    /// timestamps, a reason, containers and an address.
    pub fn new(cluster: &str, task_arn: &str, status: &str) -> Self {
        TaskStateReport {
            cluster: cluster.into(),
            task_arn: task_arn.into(),
            status: status.into(),
            reason: None,
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            execution_stopped_at: None,
            containers: vec![],
            private_ipv4: None,
        }
    }
}

impl ContainerReport {
    /// Container `name` (runtime ID `runtime_id`) in `status`, with nothing
    /// else observed yet.
    pub fn new(name: &str, runtime_id: &str, status: &str) -> Self {
        ContainerReport {
            name: name.into(),
            runtime_id: Some(runtime_id.into()),
            image_digest: None,
            status: status.into(),
            exit_code: None,
            reason: None,
            network_bindings: vec![],
            health_status: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisconnectRequest {
    pub cluster: String,
    pub container_instance_arn: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

/// Many instances in one long-poll, for a process that runs many
/// (simulated) hosts: one request instead of one long-poll per instance.
/// Body [`PollInstancesRequest`], answer [`PollInstancesResponse`].
pub const POLL_INSTANCES: &str = "PollInstances";
/// Several [`TaskStateReport`]s in one request; each is applied as by
/// [`REPORT_TASK_STATE`] (its own compare-and-swap write), concurrently, so
/// the store can commit them in one group. Body [`TaskStateReports`],
/// answer [`Empty`].
pub const REPORT_TASK_STATES: &str = "ReportTaskStates";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollInstancesRequest {
    pub cluster: String,
    pub container_instance_arns: Vec<String>,
    /// 0: every task of these instances, at once. Otherwise only the tasks
    /// of these instances changed after this revision (a delta), waiting up
    /// to `wait_millis` for the first one.
    pub after_revision: i64,
    pub wait_millis: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollInstancesResponse {
    /// Pass as the next `after_revision`.
    pub revision: i64,
    /// True when `tasks` is the full set rather than a delta (the asked-for
    /// revision was no longer in the store's history).
    pub full: bool,
    pub tasks: Vec<InstanceTask>,
}

/// A task as a many-host poll shows it: no task definition, which a
/// simulated host does not need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceTask {
    pub container_instance_id: String,
    pub task_arn: String,
    pub desired_status: String,
    pub last_status: String,
    pub containers: Vec<AssignedContainer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStateReports {
    pub reports: Vec<TaskStateReport>,
}

/// An agent's first call: it presents a join token (`wharf token create`)
/// and receives credentials of its own. The only operation not signed with
/// SigV4: the token in the body is what authenticates it. Body
/// [`JoinRequest`], answer [`JoinResponse`].
pub const JOIN: &str = "Join";

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub token: String,
    /// The region the agent signs for: refused, with nothing minted, unless
    /// it is the token's cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The cluster the credentials may register instances in.
    pub cluster: String,
    /// The cluster's region: the credentials sign for it alone.
    #[serde(default)]
    pub region: Option<String>,
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinRequest { token: <redacted> }")
    }
}

impl std::fmt::Debug for JoinResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinResponse")
            .field("access_key_id", &self.access_key_id)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// Every operation under [`TARGET_PREFIX`], sorted by name.
pub const OPERATIONS: &[&str] = &[
    DISCONNECT,
    GET_TASK_CREDENTIALS,
    GET_TASK_SECRETS,
    POLL,
    crate::exec_protocol::POLL_EXEC_SESSIONS,
    POLL_INSTANCES,
    REGISTER_MANAGED,
    REPORT_TASK_STATE,
    REPORT_TASK_STATES,
];

/// Calls `v.visit::<Input>(operation)` for every operation, in [`OPERATIONS`]
/// order, as `wharf_model::ecs::visit_operations` does for ECS.
pub fn visit_operations(v: &mut impl wharf_model::OperationVisitor) {
    v.visit::<DisconnectRequest>(DISCONNECT);
    v.visit::<TaskCredentialsRequest>(GET_TASK_CREDENTIALS);
    v.visit::<TaskSecretsRequest>(GET_TASK_SECRETS);
    v.visit::<PollRequest>(POLL);
    v.visit::<crate::exec_protocol::PollExecSessionsRequest>(
        crate::exec_protocol::POLL_EXEC_SESSIONS,
    );
    v.visit::<PollInstancesRequest>(POLL_INSTANCES);
    v.visit::<ecs::RegisterContainerInstanceRequest>(REGISTER_MANAGED);
    v.visit::<TaskStateReport>(REPORT_TASK_STATE);
    v.visit::<TaskStateReports>(REPORT_TASK_STATES);
}
