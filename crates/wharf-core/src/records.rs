//! What the control plane stores, one JSON document per key. These are
//! domain records, not wire shapes: the API layer converts them to the
//! generated `wharf_model::ecs` types. A task definition is the exception:
//! it is a document the user wrote, kept as the validated wire shape so it
//! round-trips exactly.

use crate::clock::Millis;
use crate::lifecycle::{DesiredStatus, TaskStatus};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use wharf_model::ecs;

pub type Tags = BTreeMap<String, String>;

/// The hidden cluster whose container instances are the managed (FARGATE)
/// capacity. `~` can't appear in a cluster name, so no user can reach it.
pub const MANAGED_CLUSTER: &str = "~managed";

/// Where a cluster's objects live in the store: `REGION/NAME` (ECS is
/// regional: the same name in two regions is two clusters), or the managed
/// capacity's hidden cluster, which every region's FARGATE tasks share as
/// they share the one machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterKey(String);

impl ClusterKey {
    pub fn new(region: &str, name: &str) -> Self {
        if name == MANAGED_CLUSTER {
            return Self::managed();
        }
        Self(format!("{region}/{name}"))
    }
    pub fn managed() -> Self {
        Self(MANAGED_CLUSTER.to_string())
    }
    /// Of a record whose ARN names its region.
    pub fn of(arn: &str, name: &str) -> Self {
        Self::new(crate::arn::region_of(arn), name)
    }
    pub fn is_managed(&self) -> bool {
        self.0 == MANAGED_CLUSTER
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// From what [`Self::as_str`] gave.
    pub fn from_str_unchecked(s: &str) -> Self {
        Self(s.to_string())
    }
    /// The region (None: the managed capacity, which serves every region).
    pub fn region(&self) -> Option<&str> {
        self.0.split_once('/').map(|(r, _)| r)
    }
    /// The cluster's name, as the API shows it.
    pub fn name(&self) -> &str {
        self.0.split_once('/').map_or(&self.0, |(_, n)| n)
    }
    /// The cluster key and the rest of a key under `prefix`
    /// (`/tasks/REGION/NAME/ID` → (`REGION/NAME`, `ID`)).
    pub fn split<'a>(prefix: &str, key: &'a str) -> Option<(Self, &'a str)> {
        let rest = key.strip_prefix(prefix)?;
        if let Some(id) = rest
            .strip_prefix(MANAGED_CLUSTER)
            .and_then(|r| r.strip_prefix('/'))
        {
            return Some((Self::managed(), id));
        }
        let (region, rest) = rest.split_once('/')?;
        let (name, id) = rest.split_once('/')?;
        Some((Self::new(region, name), id))
    }
}

impl std::fmt::Display for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Store keys. Everything lives under one prefix per kind so controllers can
/// watch a kind, then under the region (ECS is regional), and under a
/// cluster so a cluster's objects are one range.
pub mod keys {
    use super::ClusterKey;

    /// Marks the key layout the store holds (see `wharf_control::migrate`).
    pub const SCHEMA_VERSION: &str = "/schema/version";
    pub fn cluster(cluster: &ClusterKey) -> String {
        format!("/clusters/{cluster}")
    }
    pub fn clusters(region: &str) -> String {
        format!("/clusters/{region}/")
    }
    pub const CLUSTERS: &str = "/clusters/";
    pub fn task_definition(region: &str, family: &str, revision: i32) -> String {
        // Zero-padded so lexicographic order is revision order.
        format!("/taskdefs/{region}/{family}/{revision:010}")
    }
    pub fn task_definition_family(region: &str, family: &str) -> String {
        format!("/taskdefs/{region}/{family}/")
    }
    pub fn task_definitions(region: &str) -> String {
        format!("/taskdefs/{region}/")
    }
    pub const TASK_DEFINITIONS: &str = "/taskdefs/";
    pub fn task(cluster: &ClusterKey, id: &str) -> String {
        format!("/tasks/{cluster}/{id}")
    }
    pub fn tasks(cluster: &ClusterKey) -> String {
        format!("/tasks/{cluster}/")
    }
    pub const TASKS: &str = "/tasks/";
    pub fn instance(cluster: &ClusterKey, id: &str) -> String {
        format!("/instances/{cluster}/{id}")
    }
    pub fn instances(cluster: &ClusterKey) -> String {
        format!("/instances/{cluster}/")
    }
    pub const INSTANCES: &str = "/instances/";
    /// Present (under a lease) while the instance's agent is connected.
    pub fn agent_session(cluster: &ClusterKey, id: &str) -> String {
        format!("/agents/{cluster}/{id}")
    }
    pub fn agent_sessions(cluster: &ClusterKey) -> String {
        format!("/agents/{cluster}/")
    }
    pub const AGENT_SESSIONS: &str = "/agents/";
    pub fn service(cluster: &ClusterKey, name: &str) -> String {
        format!("/services/{cluster}/{name}")
    }
    pub fn services(cluster: &ClusterKey) -> String {
        format!("/services/{cluster}/")
    }
    pub const SERVICES: &str = "/services/";
    /// Agent join tokens (their secrets hashed), by token ID.
    pub fn join_token(id: &str) -> String {
        format!("/auth/tokens/{id}")
    }
    pub const JOIN_TOKENS: &str = "/auth/tokens/";
    /// Agent credentials, by access key ID.
    pub fn agent_credential(access_key_id: &str) -> String {
        format!("/auth/agents/{access_key_id}")
    }
    pub const AGENT_CREDENTIALS: &str = "/auth/agents/";
    /// Custom capacity providers (FARGATE and FARGATE_SPOT are built in).
    pub fn capacity_provider(region: &str, name: &str) -> String {
        format!("/capacity-providers/{region}/{name}")
    }
    pub fn capacity_providers(region: &str) -> String {
        format!("/capacity-providers/{region}/")
    }
    pub const CAPACITY_PROVIDERS: &str = "/capacity-providers/";
    /// ECS account settings set (the root's, which are the account's).
    pub fn account_setting(region: &str, name: &str) -> String {
        format!("/account-settings/{region}/{name}")
    }
    pub fn account_settings(region: &str) -> String {
        format!("/account-settings/{region}/")
    }
    pub const ACCOUNT_SETTINGS: &str = "/account-settings/";
    /// ECS Exec sessions waiting for their two ends (under a lease).
    pub fn exec_session(id: &str) -> String {
        format!("/exec-sessions/{id}")
    }
    pub const EXEC_SESSIONS: &str = "/exec-sessions/";
    /// What a request with a client token did, by operation, region, scope
    /// and the token's SHA-256 (a token may hold any character).
    pub fn client_token(operation: &str, region: &str, scope: &str, token_sha256: &str) -> String {
        format!("/idempotency/{operation}/{region}/{scope}/{token_sha256}")
    }
    pub const CLIENT_TOKENS: &str = "/idempotency/";
}

/// Where data written before regions were kept apart now lives.
pub const DEFAULT_REGION: &str = "us-east-1";

fn default_region() -> String {
    DEFAULT_REGION.to_string()
}

/// A join token: an agent presents it once to receive credentials of its
/// own, bound to the token's cluster. Only the secret's SHA-256 is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinTokenRecord {
    pub id: String,
    pub cluster: String,
    /// The cluster's region (records from before regions: us-east-1).
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub description: String,
    /// Hex SHA-256 of the token's secret part.
    pub secret_sha256: String,
    pub created_at: Millis,
    /// None: valid until revoked.
    pub expires_at: Option<Millis>,
}

/// Credentials an agent signs with: distinct from API keys, good only for
/// the agent protocol (and the few public operations an agent needs) in
/// one cluster, for the container instances registered with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentCredentialRecord {
    pub access_key_id: String,
    /// SigV4 needs the secret itself to check an HMAC, as AWS keeps it.
    pub secret_access_key: String,
    pub cluster: String,
    /// The cluster's region; the managed capacity's agents serve every region.
    #[serde(default = "default_region")]
    pub region: String,
    /// The join token it was minted from (None: `wharf up`'s own agents).
    pub token_id: Option<String>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub name: String,
    pub arn: String,
    pub status: String,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    pub created_at: Millis,
    /// FARGATE and/or FARGATE_SPOT, as associated (the built-in providers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_providers: Vec<String>,
    /// executeCommandConfiguration and managedStorageConfiguration, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<ecs::ClusterConfiguration>,
    /// The Service Connect namespace new services default to, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect_namespace: Option<String>,
    /// What RunTask and CreateService use when they name neither a launch
    /// type nor a strategy (validated against `capacity_providers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_strategy: Vec<ecs::CapacityProviderStrategyItem>,
}

impl ClusterRecord {
    /// Where its objects live (the region its ARN names).
    pub fn key(&self) -> ClusterKey {
        ClusterKey::of(&self.arn, &self.name)
    }
}

/// An account setting someone set (PutAccountSetting for the root, or
/// PutAccountSettingDefault: one and the same until IAM principals exist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountSettingRecord {
    pub name: String,
    pub value: String,
    pub updated_at: Millis,
}

/// A custom capacity provider: in Wharf, the group of container instances
/// whose agents joined it (`wharf agent --capacity-provider NAME`). Its
/// Auto Scaling group is kept as given; nothing scales it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityProviderRecord {
    pub name: String,
    pub arn: String,
    /// ACTIVE, or INACTIVE once deleted (kept so Describe can say so, and
    /// replaced by a new provider of the same name).
    pub status: String,
    pub auto_scaling_group: ecs::AutoScalingGroupProvider,
    /// DELETE_COMPLETE once deleted, UPDATE_COMPLETE after an update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<String>,
    /// The one cluster it is associated with (PutClusterCapacityProviders
    /// writes both records in one transaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default)]
    pub tags: Tags,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDefinitionRecord {
    pub definition: ecs::TaskDefinition,
    #[serde(default)]
    pub tags: Tags,
}

/// CPU units, MiB of memory and host ports: what an instance offers and
/// what a task takes from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu: i64,
    pub memory: i64,
    #[serde(default)]
    pub tcp_ports: BTreeSet<u16>,
    #[serde(default)]
    pub udp_ports: BTreeSet<u16>,
}

impl Resources {
    /// As ECS lists resources: CPU, MEMORY, PORTS, PORTS_UDP.
    pub fn to_wire(&self) -> Vec<ecs::Resource> {
        let r = self;
        let ports = |p: &std::collections::BTreeSet<u16>| {
            p.iter().map(|p| p.to_string()).collect::<Vec<_>>()
        };
        vec![
            ecs::Resource {
                name: Some("CPU".into()),
                r#type: Some("INTEGER".into()),
                integer_value: Some(r.cpu as i32),
                double_value: Some(0.0),
                long_value: Some(0),
                ..Default::default()
            },
            ecs::Resource {
                name: Some("MEMORY".into()),
                r#type: Some("INTEGER".into()),
                integer_value: Some(r.memory as i32),
                double_value: Some(0.0),
                long_value: Some(0),
                ..Default::default()
            },
            ecs::Resource {
                name: Some("PORTS".into()),
                r#type: Some("STRINGSET".into()),
                string_set_value: Some(ports(&r.tcp_ports)),
                double_value: Some(0.0),
                long_value: Some(0),
                integer_value: Some(0),
            },
            ecs::Resource {
                name: Some("PORTS_UDP".into()),
                r#type: Some("STRINGSET".into()),
                string_set_value: Some(ports(&r.udp_ports)),
                double_value: Some(0.0),
                long_value: Some(0),
                integer_value: Some(0),
            },
        ]
    }

    pub fn add(&mut self, r: &Resources) {
        self.cpu += r.cpu;
        self.memory += r.memory;
        self.tcp_ports.extend(&r.tcp_ports);
        self.udp_ports.extend(&r.udp_ports);
    }
    pub fn remove(&mut self, r: &Resources) {
        self.cpu -= r.cpu;
        self.memory -= r.memory;
        for p in &r.tcp_ports {
            self.tcp_ports.remove(p);
        }
        for p in &r.udp_ports {
            self.udp_ports.remove(p);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub id: String,
    pub arn: String,
    pub cluster: String,
    /// ACTIVE, DRAINING or INACTIVE (deregistered, kept until its tasks are gone).
    pub status: String,
    pub registered: Resources,
    /// Ports the host itself uses, reported at registration (never offered).
    #[serde(default)]
    pub reserved: Resources,
    #[serde(default)]
    pub attributes: BTreeMap<String, Option<String>>,
    pub agent_version: Option<String>,
    pub docker_version: Option<String>,
    pub hostname: Option<String>,
    pub registered_at: Millis,
    #[serde(default)]
    pub tags: Tags,
    /// ECS's per-object version, bumped on every change.
    pub version: i64,
    /// Access key of the agent credentials it was registered with: only
    /// they may poll and report for it (None: registered with an API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

impl InstanceRecord {
    /// Where its cluster's objects live (the region its ARN names).
    pub fn cluster_key(&self) -> ClusterKey {
        ClusterKey::of(&self.arn, &self.cluster)
    }
    /// An ACTIVE instance just registered with `registered` resources:
    /// nothing reserved or allocated, no attributes, versions, hostname or
    /// tags yet; callers fill in what the registration says.
    pub fn new(
        id: &str,
        arn: &str,
        cluster: &str,
        registered: Resources,
        registered_at: Millis,
    ) -> Self {
        InstanceRecord {
            id: id.into(),
            arn: arn.into(),
            cluster: cluster.into(),
            status: "ACTIVE".into(),
            registered,
            reserved: Resources::default(),
            attributes: Default::default(),
            agent_version: None,
            docker_version: None,
            hostname: None,
            registered_at,
            tags: Default::default(),
            version: 1,
            agent: None,
        }
    }

    /// What is left with `held` taken by its tasks (ECS's
    /// `remainingResources`: free CPU and memory, and the ports in use).
    /// What tasks hold is not stored with the instance: it is the sum of
    /// the reservations of its tasks not yet STOPPED.
    pub fn remaining(&self, held: &Resources) -> Resources {
        let mut r = Resources {
            cpu: self.registered.cpu - held.cpu,
            memory: self.registered.memory - held.memory,
            tcp_ports: self.reserved.tcp_ports.clone(),
            udp_ports: self.reserved.udp_ports.clone(),
        };
        r.tcp_ports.extend(&held.tcp_ports);
        r.udp_ports.extend(&held.udp_ports);
        r
    }
}

/// Stored compactly: absent optional fields are left out (a running task
/// has many), as the record is held in memory for every task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub arn: String,
    pub image: String,
    pub essential: bool,
    pub has_health_check: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// PENDING, RUNNING or STOPPED.
    pub last_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_bindings: Vec<ecs::NetworkBinding>,
    /// HEALTHY, UNHEALTHY or UNKNOWN; None when the container has no health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub arn: String,
    pub cluster: String,
    pub cluster_arn: String,
    pub task_definition_arn: String,
    pub family: String,
    pub revision: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_arn: Option<String>,
    pub launch_type: String,
    /// The capacity provider of the strategy that placed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_name: Option<String>,
    /// The account's defaultLogDriverMode was `blocking` at launch (else
    /// non-blocking, ECS's default; a flag, as it is kept for every task).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocking_logs: bool,
    /// Task scale-in protection (UpdateTaskProtection) holds until then:
    /// its service's scale-in and deployments pass it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_until: Option<Millis>,
    pub last_status: TaskStatus,
    pub desired_status: DesiredStatus,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    pub group: String,
    #[serde(default)]
    pub overrides: ecs::TaskOverride,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// What placement took from the instance; given back when the task stops.
    pub reservation: Resources,
    pub containers: Vec<ContainerRecord>,
    pub health_status: String,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    pub enable_execute_command: bool,
    /// awsvpc: the task's network interface (attachment id, subnet, address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eni: Option<Eni>,
    /// The target groups its service registers it with (from the service
    /// at launch): the controller registers the task once RUNNING, and a
    /// stop waits in DEACTIVATING until the targets have drained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<ecs::LoadBalancer>,
    /// Its task role's credentials, once its agent asked for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_credentials: Option<RoleCredentials>,
    pub version: i64,
}

/// A task's task-role credentials: the ID its containers ask the
/// credentials endpoint by, and the STS sessions issued for it so far
/// (those not yet expired), which are revoked when it stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleCredentials {
    pub id: String,
    /// Access key ID and expiry of each live session.
    pub sessions: Vec<(String, Millis)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eni {
    pub attachment_id: String,
    pub subnet_id: String,
    pub private_ipv4: Option<String>,
}

impl ContainerRecord {
    /// A container of a task just placed: PENDING, nothing observed yet.
    pub fn new(
        name: &str,
        arn: &str,
        image: &str,
        essential: bool,
        has_health_check: bool,
    ) -> Self {
        ContainerRecord {
            name: name.into(),
            arn: arn.into(),
            image: image.into(),
            essential,
            has_health_check,
            runtime_id: None,
            image_digest: None,
            last_status: "PENDING".into(),
            exit_code: None,
            reason: None,
            network_bindings: vec![],
            health_status: has_health_check.then(|| "UNKNOWN".into()),
            cpu: None,
            memory: None,
            memory_reservation: None,
        }
    }
}

impl TaskRecord {
    /// The key of the task definition revision it runs.
    pub fn definition_key(&self) -> String {
        keys::task_definition(
            crate::arn::region_of(&self.task_definition_arn),
            &self.family,
            self.revision,
        )
    }

    /// Where its cluster's objects live (the region its cluster's ARN names).
    pub fn cluster_key(&self) -> ClusterKey {
        ClusterKey::of(&self.cluster_arn, &self.cluster)
    }
    /// Whether task scale-in protection holds at `now`.
    pub fn protected(&self, now: Millis) -> bool {
        self.protected_until.is_some_and(|until| now < until)
    }

    /// A task just placed (PROVISIONING, desired RUNNING) with nothing
    /// observed yet; callers fill in what the launch says.
    pub fn new(id: &str, arn: &str, cluster: &str, created_at: Millis) -> Self {
        TaskRecord {
            id: id.into(),
            arn: arn.into(),
            cluster: cluster.into(),
            cluster_arn: String::new(),
            task_definition_arn: String::new(),
            family: String::new(),
            revision: 0,
            instance_id: None,
            instance_arn: None,
            launch_type: "EC2".into(),
            capacity_provider_name: None,
            blocking_logs: false,
            protected_until: None,
            last_status: TaskStatus::Provisioning,
            desired_status: DesiredStatus::Running,
            created_at,
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            connectivity_at: None,
            stopping_at: None,
            execution_stopped_at: None,
            stopped_at: None,
            stop_code: None,
            stopped_reason: None,
            started_by: None,
            group: String::new(),
            overrides: Default::default(),
            cpu: None,
            memory: None,
            reservation: Resources::default(),
            containers: vec![],
            health_status: "UNKNOWN".into(),
            tags: Default::default(),
            enable_execute_command: false,
            eni: None,
            load_balancers: vec![],
            role_credentials: None,
            version: 1,
        }
    }
}

pub fn tags_from_wire(tags: &[ecs::Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect()
}

pub fn tags_to_wire(tags: &Tags) -> Vec<ecs::Tag> {
    tags.iter()
        .map(|(k, v)| ecs::Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}
