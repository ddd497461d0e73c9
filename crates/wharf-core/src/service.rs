//! Services: keep N copies of a task running and roll out new revisions.
//!
//! [`plan`] is the whole scheduler and deployment controller as a pure
//! function: given a service, its tasks and the cluster's instances at
//! `now`, it returns which tasks to start and stop and the service record
//! as it should be (deployments, counts, events). The control plane applies
//! the plan with compare-and-swap writes and calls `plan` again on the next
//! change; a simulation calls it the same way against fake hosts.
//!
//! Rolling deployments follow ECS's definitions: new tasks start while the
//! total of not-yet-stopped tasks stays within `maximumPercent` of the
//! desired count; old tasks stop only while the healthy tasks stay at or
//! above `minimumHealthyPercent`. A task is healthy when it is RUNNING and
//! its essential containers' health checks pass, or, with no health checks,
//! once it has been RUNNING for [`Settings::settle`].

use crate::clock::Millis;
use crate::lifecycle::{DesiredStatus, TaskStatus, STOP_ESSENTIAL_EXITED, STOP_FAILED_TO_START};
use crate::query::HostView;
use crate::records::{InstanceRecord, Tags, TaskRecord};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use wharf_model::ecs;

pub const STOP_SCHEDULER: &str = "ServiceSchedulerInitiated";
pub const UNHEALTHY_REASON: &str = "Task failed container health checks";
/// How ECS begins the reason of a task its load balancer's health checks
/// failed (followed by ` in (target-group ARN)`).
pub const ELB_UNHEALTHY_REASON: &str = "Task failed ELB health checks";

/// A task's standing in its load balancers' target groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbHealth {
    /// Not behind a load balancer.
    None,
    /// Not yet registered, or not yet judged healthy by every group.
    Initial,
    /// Healthy in every target group it is registered with.
    Healthy,
    /// Failing the health checks of this target group (its ARN).
    Unhealthy(String),
}
/// ECS keeps the newest 100 events of a service.
pub const MAX_EVENTS: usize = 100;

/// Tunables of the scheduler (the control plane's config, or a simulation's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long a task without health checks must be RUNNING to count as healthy.
    pub settle: Millis,
    /// First delay of the launch throttle after repeated failures; doubles
    /// with each further failure up to `throttle_max`.
    pub throttle_base: Millis,
    pub throttle_max: Millis,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            settle: 2_000,
            throttle_base: 10_000,
            throttle_max: 15 * 60_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentConfig {
    pub minimum_healthy_percent: i32,
    pub maximum_percent: i32,
    pub circuit_breaker: bool,
    pub rollback: bool,
    /// The BLUE_GREEN strategy; None is ROLLING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenConfig>,
}

/// How a blue/green deployment runs (see [`blue_green`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlueGreenConfig {
    /// How long blue keeps running after production traffic moved to green.
    pub bake_time_minutes: i32,
    /// PAUSE hooks, as given (checked: each names its stages).
    pub hooks: Vec<ecs::DeploymentLifecycleHook>,
    /// LINEAR and CANARY: production traffic moves in steps; None moves
    /// it all at once (BLUE_GREEN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<TrafficSteps>,
}

/// How LINEAR and CANARY shift production traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficSteps {
    /// LINEAR: `percent` more each step; CANARY: `percent`, then the rest.
    pub linear: bool,
    pub percent: f64,
    /// The wait after each step short of 100 %.
    pub bake_minutes: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// `ecs-svc/` and 19 digits, as ECS names deployments.
    pub id: String,
    /// PRIMARY (the newest, always first) or ACTIVE (being drained).
    pub status: String,
    pub task_definition: String,
    pub desired_count: i32,
    pub running_count: i32,
    pub pending_count: i32,
    /// Tasks of this deployment that failed while it rolled out; the
    /// circuit breaker trips on their number. Bounded by the threshold.
    pub failed_tasks: BTreeSet<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub rollout_state: String,
    pub rollout_state_reason: String,
    pub launch_type: String,
    /// The capacity provider strategy its tasks are placed by (empty: by
    /// `launch_type` alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<ecs::CapacityProviderStrategyItem>,
    /// The service deployment (see [`ServiceDeploymentRecord`]) this
    /// deployment carries out: its own, or the one it rolls back.
    #[serde(default)]
    pub service_deployment: String,
    /// Where a blue/green deployment is in its lifecycle (None: rolling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<blue_green::Lifecycle>,
}

/// ECS's "service deployment": the history of one rollout, kept after its
/// deployment has drained (ListServiceDeployments, DescribeServiceDeployments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDeploymentRecord {
    /// The numeric part of the deployment id; also its service revision's id.
    pub id: String,
    pub task_definition: String,
    /// (revision id, task definition) of what ran when it started.
    pub source: Vec<(String, String)>,
    /// PENDING, IN_PROGRESS, SUCCESSFUL, STOPPED, ROLLBACK_IN_PROGRESS,
    /// ROLLBACK_SUCCESSFUL, ROLLBACK_FAILED.
    pub status: String,
    pub status_reason: Option<String>,
    pub desired_count: i32,
    pub config: DeploymentConfig,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub finished_at: Option<Millis>,
    pub stopped_at: Option<Millis>,
    pub rollback: Option<RollbackRecord>,
    /// The service revision it deploys: how the service's tasks were to
    /// run (DescribeServiceRevisions). None in records made before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<RevisionRecord>,
    /// A blue/green deployment's stage and hooks, as it last stood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<blue_green::Lifecycle>,
}

/// A task set of an EXTERNAL service: `scale` percent of the service's
/// desired count, run from its own task definition and network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSetRecord {
    /// `ecs-svc/NNN`, as deployment ids; its tasks' startedBy.
    pub id: String,
    pub arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// PRIMARY, ACTIVE or DRAINING (deleted; removed once its tasks stop).
    pub status: String,
    pub task_definition: String,
    pub launch_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<ecs::CapacityProviderStrategyItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<ecs::NetworkConfiguration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<ecs::LoadBalancer>,
    /// Percent of the service's desired count, 0 to 100.
    pub scale: f64,
    pub computed_desired_count: i32,
    pub running_count: i32,
    pub pending_count: i32,
    /// STEADY_STATE (true) or STABILIZING, and since when.
    pub stable: bool,
    pub stability_at: Millis,
    pub created_at: Millis,
    pub updated_at: Millis,
    #[serde(default)]
    pub tags: Tags,
}

impl TaskSetRecord {
    /// ceil(desired × scale / 100), as ECS rounds it.
    pub fn share_of(&self, desired: i32) -> i32 {
        let share = (f64::from(desired.max(0)) * self.scale / 100.0).ceil();
        if share.is_finite() {
            share.clamp(0.0, f64::from(i32::MAX)) as i32
        } else {
            0
        }
    }
}

/// What a service revision fixes besides its task definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionRecord {
    pub launch_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<ecs::CapacityProviderStrategyItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<ecs::LoadBalancer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<ecs::NetworkConfiguration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub reason: String,
    pub started_at: Millis,
    /// (revision id, task definition) rolled back to.
    pub target: (String, String),
}

/// How many service deployments a service remembers.
pub const MAX_HISTORY: usize = 50;

/// The id part of `ecs-svc/NNN`.
pub fn numeric_id(deployment: &str) -> &str {
    deployment.rsplit('/').next().unwrap_or(deployment)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: String,
    pub created_at: Millis,
    pub message: String,
}

/// Launch throttle: after tasks keep failing, launches wait a growing delay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throttle {
    pub failures: u32,
    pub until: Millis,
    /// When the newest failure counted so far happened.
    pub last_failure: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    pub arn: String,
    pub cluster: String,
    pub cluster_arn: String,
    /// ACTIVE, DRAINING (deleted, tasks stopping) or INACTIVE.
    pub status: String,
    pub desired_count: i32,
    pub running_count: i32,
    pub pending_count: i32,
    /// The task definition ARN of the PRIMARY deployment.
    pub task_definition: String,
    /// EC2 or FARGATE: where its tasks run (with a strategy, what its
    /// providers run on).
    pub launch_type: String,
    /// Empty unless the service was given one (or took its cluster's
    /// default); then ECS shows it instead of a launch type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<ecs::CapacityProviderStrategyItem>,
    /// REPLICA or DAEMON.
    pub scheduling_strategy: String,
    pub deployment_config: DeploymentConfig,
    pub placement_constraints: Vec<ecs::PlacementConstraint>,
    pub placement_strategy: Vec<ecs::PlacementStrategy>,
    pub health_check_grace_period_seconds: Option<i32>,
    /// PRIMARY first, then older deployments still draining.
    pub deployments: Vec<DeploymentRecord>,
    /// Newest first.
    pub events: Vec<EventRecord>,
    /// The last deployment that COMPLETED: where the breaker rolls back to.
    pub last_completed: Option<(String, String)>,
    pub throttle: Throttle,
    /// Whether the service has reached a steady state (for the event).
    pub steady: bool,
    pub created_at: Millis,
    pub created_by: Option<String>,
    pub tags: Tags,
    pub propagate_tags: Option<String>,
    pub enable_ecs_managed_tags: bool,
    pub enable_execute_command: bool,
    pub network_configuration: Option<ecs::NetworkConfiguration>,
    pub load_balancers: Vec<ecs::LoadBalancer>,
    pub service_registries: Vec<ecs::ServiceRegistry>,
    /// Service deployments, newest first, at most [`MAX_HISTORY`].
    #[serde(default)]
    pub history: Vec<ServiceDeploymentRecord>,
    /// The EXTERNAL deployment controller: no deployments, the task sets
    /// an external tool makes (CreateTaskSet) each run their share.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_sets: Vec<TaskSetRecord>,
    pub version: i64,
}

impl ServiceRecord {
    /// Where its cluster's objects live (the region its cluster's ARN names).
    pub fn cluster_key(&self) -> crate::records::ClusterKey {
        crate::records::ClusterKey::of(&self.cluster_arn, &self.cluster)
    }
    /// An ACTIVE REPLICA service with ECS's defaults (desired 0, minimum
    /// 100%, maximum 200%, no breaker) and no deployment yet: callers set
    /// what the request says, then [`ServiceRecord::deploy`].
    pub fn new(name: &str, arn: &str, cluster: &str, cluster_arn: &str, now: Millis) -> Self {
        ServiceRecord {
            name: name.into(),
            arn: arn.into(),
            cluster: cluster.into(),
            cluster_arn: cluster_arn.into(),
            status: "ACTIVE".into(),
            desired_count: 0,
            running_count: 0,
            pending_count: 0,
            task_definition: String::new(),
            launch_type: "EC2".into(),
            capacity_provider_strategy: vec![],
            scheduling_strategy: "REPLICA".into(),
            deployment_config: DeploymentConfig {
                minimum_healthy_percent: 100,
                maximum_percent: 200,
                circuit_breaker: false,
                rollback: false,
                blue_green: None,
            },
            placement_constraints: vec![],
            placement_strategy: vec![],
            health_check_grace_period_seconds: None,
            deployments: vec![],
            events: vec![],
            last_completed: None,
            throttle: Throttle::default(),
            steady: false,
            created_at: now,
            created_by: None,
            tags: Default::default(),
            propagate_tags: None,
            enable_ecs_managed_tags: false,
            enable_execute_command: false,
            network_configuration: None,
            load_balancers: vec![],
            service_registries: vec![],
            history: vec![],
            external: false,
            task_sets: vec![],
            version: 1,
        }
    }

    pub fn group(&self) -> String {
        format!("service:{}", self.name)
    }

    pub fn primary(&self) -> &DeploymentRecord {
        &self.deployments[0]
    }

    /// Adds an event (newest first, at most [`MAX_EVENTS`]).
    pub fn event<R: Rng + ?Sized>(&mut self, now: Millis, message: String, rng: &mut R) {
        self.events.insert(
            0,
            EventRecord {
                id: uuid::Builder::from_random_bytes(rng.gen())
                    .into_uuid()
                    .to_string(),
                created_at: now,
                message,
            },
        );
        self.events.truncate(MAX_EVENTS);
    }

    /// Adds an event unless the same message was written in the last
    /// `within` ms: for conditions that persist (no room, throttled).
    pub fn event_once<R: Rng + ?Sized>(
        &mut self,
        now: Millis,
        within: Millis,
        message: String,
        rng: &mut R,
    ) {
        let recent = self
            .events
            .iter()
            .take_while(|e| now - e.created_at < within)
            .any(|e| e.message == message);
        if !recent {
            self.event(now, message, rng);
        }
    }

    /// Starts a new PRIMARY deployment of `task_definition`; the old ones
    /// drain. A new deployment resets the launch throttle, as in ECS.
    pub fn deploy<R: Rng + ?Sized>(&mut self, now: Millis, task_definition: &str, rng: &mut R) {
        self.start_deployment(now, task_definition, None, rng);
    }

    /// Rolls the current service deployment back to the last COMPLETED
    /// revision; false if there is none to go back to.
    pub fn rollback<R: Rng + ?Sized>(&mut self, now: Millis, reason: &str, rng: &mut R) -> bool {
        // Blue/green goes back to blue, which still runs.
        if blue_green::active(self) {
            return blue_green::rollback(self, now, reason, rng);
        }
        let Some((target_id, target_td)) = self.last_completed.clone() else {
            return false;
        };
        let current = self.deployments[0].service_deployment.clone();
        if let Some(h) = self.history.iter_mut().find(|h| h.id == current) {
            h.status = "ROLLBACK_IN_PROGRESS".into();
            h.status_reason = Some(reason.to_string());
            h.updated_at = now;
            h.rollback = Some(RollbackRecord {
                reason: reason.to_string(),
                started_at: now,
                target: (numeric_id(&target_id).to_string(), target_td.clone()),
            });
        }
        self.start_deployment(now, &target_td, Some(current), rng);
        self.deployments[0].rollout_state_reason =
            format!("ECS deployment circuit breaker: rolling back to deploymentId {target_id}.");
        let name = self.name.clone();
        self.event(
            now,
            format!("(service {name}) rolling back to deployment {target_id}."),
            rng,
        );
        true
    }

    /// The PRIMARY deployment has rolled out: it is what a rollback goes
    /// back to, and its service deployment succeeded (or rolled back).
    fn complete<R: Rng + ?Sized>(&mut self, now: Millis, rng: &mut R) {
        let d = &mut self.deployments[0];
        let id = d.id.clone();
        d.rollout_state = "COMPLETED".into();
        d.rollout_state_reason = format!("ECS deployment {id} completed.");
        d.updated_at = now;
        self.last_completed = Some((id.clone(), d.task_definition.clone()));
        let serving = d.service_deployment.clone();
        let rolled_back = self
            .history
            .iter()
            .any(|h| h.id == serving && h.status == "ROLLBACK_IN_PROGRESS");
        self.finish_history(
            &serving,
            now,
            if rolled_back {
                "ROLLBACK_SUCCESSFUL"
            } else {
                "SUCCESSFUL"
            },
            None,
        );
        self.throttle.failures = 0;
        self.throttle.until = 0;
        let name = self.name.clone();
        self.event(
            now,
            format!("(service {name}) (deployment {id}) deployment completed."),
            rng,
        );
    }

    /// Ends a service deployment's record with `status`.
    fn finish_history(&mut self, id: &str, now: Millis, status: &str, reason: Option<String>) {
        if let Some(h) = self.history.iter_mut().find(|h| h.id == id) {
            h.status = status.to_string();
            h.updated_at = now;
            if status == "STOPPED" {
                h.stopped_at = Some(now);
            } else {
                h.finished_at = Some(now);
            }
            if reason.is_some() {
                h.status_reason = reason;
            }
        }
    }

    fn start_deployment<R: Rng + ?Sized>(
        &mut self,
        now: Millis,
        task_definition: &str,
        rolls_back: Option<String>,
        rng: &mut R,
    ) {
        let id = new_deployment_id(rng);
        let serving = rolls_back
            .clone()
            .unwrap_or_else(|| numeric_id(&id).to_string());
        // A rollout still running is superseded by this one.
        for h in &mut self.history {
            if h.id != serving
                && matches!(
                    h.status.as_str(),
                    "PENDING" | "IN_PROGRESS" | "ROLLBACK_IN_PROGRESS"
                )
            {
                h.status = "STOPPED".into();
                h.status_reason = Some("Superseded by a newer service deployment.".into());
                h.stopped_at = Some(now);
                h.updated_at = now;
            }
        }
        if rolls_back.is_none() {
            self.history.insert(
                0,
                ServiceDeploymentRecord {
                    id: serving.clone(),
                    task_definition: task_definition.to_string(),
                    source: self
                        .deployments
                        .iter()
                        .map(|d| (numeric_id(&d.id).to_string(), d.task_definition.clone()))
                        .collect(),
                    status: "IN_PROGRESS".into(),
                    status_reason: None,
                    desired_count: self.desired_count,
                    config: self.deployment_config.clone(),
                    created_at: now,
                    updated_at: now,
                    finished_at: None,
                    stopped_at: None,
                    rollback: None,
                    revision: Some(RevisionRecord {
                        launch_type: self.launch_type.clone(),
                        capacity_provider_strategy: self.capacity_provider_strategy.clone(),
                        load_balancers: self.load_balancers.clone(),
                        network_configuration: self.network_configuration.clone(),
                    }),
                    lifecycle: None,
                },
            );
            self.history.truncate(MAX_HISTORY);
        }
        for d in &mut self.deployments {
            d.status = "ACTIVE".into();
            d.desired_count = 0;
            d.updated_at = now;
        }
        self.deployments.insert(
            0,
            DeploymentRecord {
                id,
                status: "PRIMARY".into(),
                task_definition: task_definition.to_string(),
                desired_count: self.desired_count,
                running_count: 0,
                pending_count: 0,
                failed_tasks: BTreeSet::new(),
                created_at: now,
                updated_at: now,
                rollout_state: "IN_PROGRESS".into(),
                rollout_state_reason: "ECS deployment in progress.".into(),
                launch_type: self.launch_type.clone(),
                capacity_provider_strategy: self.capacity_provider_strategy.clone(),
                service_deployment: serving,
                blue_green: None,
            },
        );
        if rolls_back.is_none() && self.deployment_config.blue_green.is_some() {
            blue_green::begin(self, now);
        }
        self.task_definition = task_definition.to_string();
        self.throttle = Throttle {
            last_failure: self.throttle.last_failure,
            ..Throttle::default()
        };
        self.steady = false;
    }
}

pub fn new_deployment_id<R: Rng + ?Sized>(rng: &mut R) -> String {
    format!(
        "ecs-svc/{:019}",
        rng.gen_range(1_000_000_000_000_000_000u64..10_000_000_000_000_000_000)
    )
}

/// ECS's circuit-breaker threshold: half the desired count, at least 3, at most 200.
pub fn failure_threshold(desired: i32) -> usize {
    ((desired.max(0) as usize).div_ceil(2)).clamp(3, 200)
}

/// Tasks to start for one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub deployment: String,
    pub task_definition: String,
    pub count: usize,
    /// DAEMON: the one instance the task must go to.
    pub instance: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopOrder {
    pub task_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub service: ServiceRecord,
    pub start: Vec<Start>,
    pub stop: Vec<StopOrder>,
}

/// A task that has not reached STOPPED still occupies its slot.
fn live(t: &TaskRecord) -> bool {
    t.last_status != TaskStatus::Stopped
}

/// Wanted by the scheduler: live and not asked to stop.
fn wanted(t: &TaskRecord) -> bool {
    live(t) && t.desired_status == DesiredStatus::Running
}

fn has_checks(t: &TaskRecord) -> bool {
    t.containers
        .iter()
        .any(|c| c.essential && c.has_health_check)
}

/// Healthy as deployments count it.
pub fn healthy(t: &TaskRecord, now: Millis, s: &Settings) -> bool {
    wanted(t)
        && t.last_status == TaskStatus::Running
        && if has_checks(t) {
            t.health_status == "HEALTHY"
        } else {
            t.started_at
                .is_some_and(|at| now >= at.saturating_add(s.settle))
        }
}

/// A stop that means the task failed (for the breaker and the throttle),
/// rather than one the user or the scheduler asked for.
fn failed(t: &TaskRecord) -> bool {
    match t.stop_code.as_deref() {
        Some(STOP_FAILED_TO_START) | Some(STOP_ESSENTIAL_EXITED) => true,
        Some(STOP_SCHEDULER) => t
            .stopped_reason
            .as_deref()
            .is_some_and(|r| r == UNHEALTHY_REASON || r.starts_with(ELB_UNHEALTHY_REASON)),
        _ => false,
    }
}

/// Pending tasks go first, then unhealthy ones, then the newest: what
/// can be stopped at the least cost to the service.
fn stop_preference(tasks: &mut [&TaskRecord], healthy: &dyn Fn(&TaskRecord) -> bool) {
    tasks.sort_by_key(|t| {
        (
            t.last_status == TaskStatus::Running,
            healthy(t),
            std::cmp::Reverse(t.created_at),
            t.id.clone(),
        )
    });
}

/// Whether time alone can no longer change what [`plan`] decides for this
/// service while its tasks and the cluster's instances stay as they are: it
/// has reached a steady state, no launch is throttled, and every live task
/// is RUNNING, wanted, and past the windows `plan` reads of the clock (the
/// settle time and the health-check grace period). A controller may skip
/// such a service until something about it changes.
pub fn at_rest(
    svc: &ServiceRecord,
    tasks: &[TaskRecord],
    lb: &dyn Fn(&TaskRecord) -> LbHealth,
    now: Millis,
    s: &Settings,
) -> bool {
    let grace = svc.health_check_grace_period_seconds.unwrap_or(0).max(0) as Millis * 1000;
    svc.steady
        && now >= svc.throttle.until
        // Protection that lapses lets a waiting scale-in or deployment on.
        && !tasks.iter().any(|t| wanted(t) && t.protected(now))
        && tasks.iter().filter(|t| live(t)).all(|t| {
            wanted(t)
                && (t.load_balancers.is_empty() || lb(t) == LbHealth::Healthy)
                && t.last_status == TaskStatus::Running
                && t.started_at
                    .is_some_and(|at| now >= at.saturating_add(s.settle.max(grace)))
        })
}

/// Reaching a steady state is an event; leaving it is noted once the plan
/// moves something (`moved`).
fn mark_steady<R: Rng + ?Sized>(
    svc: &mut ServiceRecord,
    settled: bool,
    moved: bool,
    now: Millis,
    rng: &mut R,
) {
    if settled && !svc.steady {
        svc.steady = true;
        let message = format!("(service {}) has reached a steady state.", svc.name);
        svc.event(now, message, rng);
    } else if !settled && moved {
        svc.steady = false;
    }
}

/// The event for the tasks a plan stops, as ECS writes it.
fn stopped_event<R: Rng + ?Sized>(
    svc: &mut ServiceRecord,
    stop: &[StopOrder],
    now: Millis,
    rng: &mut R,
) {
    if stop.is_empty() {
        return;
    }
    let list: Vec<String> = stop
        .iter()
        .map(|o| format!("(task {})", o.task_id))
        .collect();
    let message = format!(
        "(service {}) has stopped {} running tasks: {}.",
        svc.name,
        list.len(),
        list.join(" ")
    );
    svc.event(now, message, rng);
}

/// Health checks that fail (after the grace period) stop the task; the
/// scheduler then replaces it. Returns the tasks so stopped.
fn health_stops<'t>(
    svc: &ServiceRecord,
    tasks: &'t [TaskRecord],
    lb: &dyn Fn(&TaskRecord) -> LbHealth,
    now: Millis,
    stop: &mut Vec<StopOrder>,
) -> BTreeSet<&'t str> {
    let grace = svc.health_check_grace_period_seconds.unwrap_or(0).max(0) as Millis * 1000;
    let mut stopping: BTreeSet<&str> = BTreeSet::new();
    for t in tasks.iter().filter(|t| wanted(t)) {
        // startedAt is the agent's word: any i64.
        let past_grace = t
            .started_at
            .is_some_and(|at| now >= at.saturating_add(grace));
        if t.health_status == "UNHEALTHY" && past_grace {
            stop.push(StopOrder {
                task_id: t.id.clone(),
                reason: UNHEALTHY_REASON.into(),
            });
            stopping.insert(&t.id);
        } else if let (LbHealth::Unhealthy(group), true) = (lb(t), past_grace) {
            stop.push(StopOrder {
                task_id: t.id.clone(),
                reason: format!("{ELB_UNHEALTHY_REASON} in (target-group {group})"),
            });
            stopping.insert(&t.id);
        }
    }
    stopping
}

/// What every replica plan does first: failed tasks feed the breaker and
/// the launch throttle, failing health checks stop their tasks, and the
/// breaker trips (rolling back if it may). Returns the tasks so stopped.
fn failures_and_breaker<'t, R: Rng + ?Sized>(
    svc: &mut ServiceRecord,
    tasks: &'t [TaskRecord],
    lb: &dyn Fn(&TaskRecord) -> LbHealth,
    now: Millis,
    s: &Settings,
    stop: &mut Vec<StopOrder>,
    rng: &mut R,
) -> BTreeSet<&'t str> {
    let name = svc.name.clone();
    // Failures of the rolling-out deployment feed the breaker; any new
    // failure feeds the launch throttle.
    let mut newest_failure = svc.throttle.last_failure;
    for t in tasks.iter().filter(|t| failed(t)) {
        let at = t.stopping_at.or(t.stopped_at).unwrap_or(t.created_at);
        if at > svc.throttle.last_failure {
            newest_failure = newest_failure.max(at);
            svc.throttle.failures += 1;
        }
        let Some(d) = svc
            .deployments
            .iter_mut()
            .find(|d| Some(&d.id) == t.started_by.as_ref())
        else {
            continue;
        };
        if d.rollout_state == "IN_PROGRESS"
            && d.failed_tasks.len() < failure_threshold(d.desired_count.max(svc.desired_count))
            && d.failed_tasks.insert(t.id.clone())
        {
            d.updated_at = now;
        }
    }
    if newest_failure > svc.throttle.last_failure {
        svc.throttle.last_failure = newest_failure;
        if svc.throttle.failures >= 3 {
            let exp = (svc.throttle.failures - 3).min(20);
            svc.throttle.until = now + (s.throttle_base << exp).min(s.throttle_max);
            svc.event_once(
                now,
                60_000,
                format!("(service {name}) is unable to consistently start tasks successfully. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide."),
                rng,
            );
        }
    }

    let stopping = health_stops(svc, tasks, lb, now, stop);

    // Circuit breaker on the PRIMARY deployment.
    let threshold = failure_threshold(svc.desired_count);
    let p = svc.deployments[0].clone();
    if svc.deployment_config.circuit_breaker
        && p.rollout_state == "IN_PROGRESS"
        && p.failed_tasks.len() >= threshold
    {
        let d = &mut svc.deployments[0];
        d.rollout_state = "FAILED".into();
        d.rollout_state_reason = "ECS deployment circuit breaker: tasks failed to start.".into();
        d.updated_at = now;
        svc.event(
            now,
            format!(
                "(service {name}) (deployment {}) deployment failed: tasks failed to start.",
                p.id
            ),
            rng,
        );
        // Blue/green goes back to blue, rollback or not: blue still has
        // production's traffic, and green must not replace it.
        let blue_green = blue_green::active(svc);
        let can_roll_back = blue_green
            || svc
                .last_completed
                .as_ref()
                .is_some_and(|(_, td)| *td != p.task_definition);
        if !((svc.deployment_config.rollback || blue_green)
            && can_roll_back
            && svc.rollback(
                now,
                "ECS deployment circuit breaker: tasks failed to start.",
                rng,
            ))
        {
            svc.finish_history(
                &p.service_deployment,
                now,
                if svc
                    .history
                    .iter()
                    .any(|h| h.id == p.service_deployment && h.status == "ROLLBACK_IN_PROGRESS")
                {
                    "ROLLBACK_FAILED"
                } else {
                    "STOPPED"
                },
                Some("ECS deployment circuit breaker: tasks failed to start.".into()),
            );
            // A blue/green deployment with no blue to go back to ends here.
            if let Some(l) = svc.deployments[0].blue_green.as_mut() {
                l.done = true;
            }
        }
    }

    stopping
}

/// Each deployment's running and pending counts (its wanted tasks not
/// being stopped now); the PRIMARY wants `desired`, the others nothing.
fn count_deployments(
    svc: &mut ServiceRecord,
    tasks: &[TaskRecord],
    stopping: &BTreeSet<&str>,
    desired: i32,
) {
    for (i, d) in svc.deployments.iter_mut().enumerate() {
        let (mut running, mut pending) = (0, 0);
        for t in tasks.iter().filter(|t| {
            t.started_by.as_deref() == Some(d.id.as_str())
                && wanted(t)
                && !stopping.contains(t.id.as_str())
        }) {
            if t.last_status == TaskStatus::Running {
                running += 1;
            } else {
                pending += 1;
            }
        }
        d.running_count = running;
        d.pending_count = pending;
        d.desired_count = if i == 0 { desired } else { 0 };
    }
}

/// One step of the service scheduler. `tasks` are the service's tasks (its
/// group), `instances` the cluster's, with `connected` agents; `lb` says how
/// a task stands in its target groups (a task behind a load balancer counts
/// as healthy only once every group does).
#[allow(clippy::too_many_arguments)]
pub fn plan<R: Rng + ?Sized>(
    svc: &ServiceRecord,
    tasks: &[TaskRecord],
    instances: &[InstanceRecord],
    connected: &dyn Fn(&str) -> bool,
    lb: &dyn Fn(&TaskRecord) -> LbHealth,
    now: Millis,
    s: &Settings,
    rng: &mut R,
) -> Plan {
    let lb_ok = |t: &TaskRecord| t.load_balancers.is_empty() || lb(t) == LbHealth::Healthy;
    let is_healthy = |t: &TaskRecord| healthy(t, now, s) && lb_ok(t);
    let mut svc = svc.clone();
    let mut stop: Vec<StopOrder> = vec![];
    let mut start: Vec<Start> = vec![];
    if svc.external && svc.status != "INACTIVE" {
        return external::plan(&svc, tasks, instances, lb, now, s, rng);
    }
    if svc.status == "INACTIVE" || svc.deployments.is_empty() {
        return Plan {
            service: svc,
            start,
            stop,
        };
    }
    let active_instance = |id: &Option<String>| {
        id.as_deref()
            .and_then(|id| instances.iter().find(|i| i.id == id))
            .is_some_and(|i| i.status == "ACTIVE")
    };

    let mut stopping = failures_and_breaker(&mut svc, tasks, lb, now, s, &mut stop, rng);
    if blue_green::in_progress(&svc) {
        return blue_green::plan(svc, tasks, instances, lb, now, s, stop, stopping, rng);
    }

    let primary = svc.deployments[0].id.clone();
    let draining_service = svc.status != "ACTIVE";
    let mut to_start = 0usize;
    let mut daemon_starts = vec![];
    if svc.scheduling_strategy == "DAEMON" {
        // One task on every ACTIVE instance that meets the memberOf
        // constraints; old revisions are stopped first on each instance
        // (a daemon's default: minimum 0%, maximum 100%).
        // Linear in instances + tasks: queries parsed once, tasks indexed
        // by instance (a daemon spans every host of the cluster).
        let queries: Vec<crate::query::Query> = svc
            .placement_constraints
            .iter()
            .filter(|c| c.r#type == Some(ecs::PlacementConstraintType::MemberOf))
            .filter_map(|c| {
                c.expression
                    .as_deref()
                    .and_then(|e| crate::query::parse(e).ok())
            })
            .collect();
        let member = |i: &InstanceRecord| {
            let view = HostView {
                connected: connected(&i.id),
                ..HostView::bare(i)
            };
            queries.iter().all(|q| q.matches(&view))
        };
        let eligible: BTreeSet<&str> = instances
            .iter()
            .filter(|i| !draining_service && i.status == "ACTIVE" && member(i))
            .map(|i| i.id.as_str())
            .collect();
        svc.desired_count = eligible.len() as i32;
        let mut live_on: BTreeMap<&str, usize> = BTreeMap::new();
        for t in tasks.iter().filter(|t| live(t)) {
            if let Some(i) = t.instance_id.as_deref() {
                *live_on.entry(i).or_default() += 1;
            }
        }
        // The current deployment's wanted tasks, oldest id first per host:
        // any beyond the first on a host is a duplicate.
        let mut kept: BTreeSet<&str> = BTreeSet::new();
        let mut candidates: Vec<&TaskRecord> = tasks
            .iter()
            .filter(|t| wanted(t) && !stopping.contains(t.id.as_str()))
            .collect();
        candidates.sort_by(|a, b| a.id.cmp(&b.id));
        for t in candidates {
            let host = t.instance_id.as_deref().unwrap_or_default();
            let current = t.started_by.as_deref() == Some(primary.as_str());
            if !eligible.contains(host) || !current || !kept.insert(host) {
                stop.push(StopOrder {
                    task_id: t.id.clone(),
                    reason: format!("Scaling activity initiated by (deployment {primary})"),
                });
                stopping.insert(&t.id);
            }
        }
        for i in &eligible {
            // A task still live here, wanted or stopping, of any deployment
            // (a crashed or unhealthy one of the current deployment too),
            // holds the instance's one slot until it is STOPPED.
            if !live_on.contains_key(i) && connected(i) {
                daemon_starts.push(i.to_string());
            }
        }
    } else {
        let desired = if draining_service {
            0
        } else {
            svc.desired_count.max(0) as usize
        };
        let cfg = &svc.deployment_config;
        let max_total = desired * cfg.maximum_percent.max(0) as usize / 100;
        let min_healthy = (desired * cfg.minimum_healthy_percent.max(0) as usize).div_ceil(100);
        let remaining: Vec<&TaskRecord> = tasks
            .iter()
            .filter(|t| wanted(t) && !stopping.contains(t.id.as_str()))
            .collect();
        // Keep: the PRIMARY deployment's tasks on ACTIVE instances.
        // Retire: older deployments' tasks, and tasks on draining hosts.
        let (mut keep, mut retire): (Vec<&TaskRecord>, Vec<&TaskRecord>) =
            remaining.into_iter().partition(|t| {
                t.started_by.as_deref() == Some(primary.as_str()) && active_instance(&t.instance_id)
            });
        stop_preference(&mut keep, &is_healthy);
        // Scale in: extra PRIMARY tasks go, whatever the minimum, except
        // those under task protection (a deleted service's go too).
        let shielded = |t: &TaskRecord| !draining_service && t.protected(now);
        while keep.len() > desired {
            let Some(k) = keep.iter().position(|t| !shielded(t)) else {
                break;
            };
            let t = keep.remove(k);
            stop.push(StopOrder {
                task_id: t.id.clone(),
                reason: format!("Scaling activity initiated by (deployment {primary})"),
            });
            stopping.insert(&t.id);
        }
        // Start up to the maximum; stopping tasks still count until STOPPED.
        let total = tasks.iter().filter(|t| live(t)).count();
        let throttled = now < svc.throttle.until;
        to_start = desired
            .saturating_sub(keep.len())
            .min(max_total.saturating_sub(total));
        if throttled {
            to_start = 0;
        }
        // Retire old tasks while the healthy stay at or above the minimum:
        // not-healthy ones cost nothing, healthy ones only down to the minimum.
        let mut healthy_now = tasks
            .iter()
            .filter(|t| !stopping.contains(t.id.as_str()) && is_healthy(t))
            .count();
        stop_preference(&mut retire, &is_healthy);
        // Older deployments drain first.
        retire.sort_by_key(|t| {
            svc.deployments
                .iter()
                .position(|d| Some(&d.id) == t.started_by.as_ref())
                .map_or(0, |p| usize::MAX - p)
        });
        for t in retire {
            // A RUNNING task not failing its checks is treated as healthy
            // here even while it settles: it is about to serve, and the
            // minimum must hold for what users see running.
            // Behind a load balancer, serving means its targets are healthy.
            let serving =
                t.last_status == TaskStatus::Running && t.health_status != "UNHEALTHY" && lb_ok(t);
            if serving && healthy_now <= min_healthy {
                continue;
            }
            // A deployment waits for a protected task; a draining host
            // (the operator's call, as StopTask is) does not.
            if active_instance(&t.instance_id) && shielded(t) {
                continue;
            }
            let reason = if !active_instance(&t.instance_id) {
                "Container instance is not ACTIVE".to_string()
            } else {
                format!("Scaling activity initiated by (deployment {primary})")
            };
            stop.push(StopOrder {
                task_id: t.id.clone(),
                reason,
            });
            if serving {
                healthy_now = healthy_now.saturating_sub(1);
            }
        }
    }

    if to_start > 0 {
        start.push(Start {
            deployment: primary.clone(),
            task_definition: svc.deployments[0].task_definition.clone(),
            count: to_start,
            instance: None,
        });
    }
    if now >= svc.throttle.until {
        for i in daemon_starts {
            start.push(Start {
                deployment: primary.clone(),
                task_definition: svc.deployments[0].task_definition.clone(),
                count: 1,
                instance: Some(i),
            });
        }
    }

    stopped_event(&mut svc, &stop, now, rng);

    // Counts, drained deployments, completion and steady state.
    let stopping_ids: BTreeSet<&str> = stop.iter().map(|o| o.task_id.as_str()).collect();
    let desired_now = if draining_service {
        0
    } else {
        svc.desired_count
    };
    count_deployments(&mut svc, tasks, &stopping_ids, desired_now);
    let still_live = |d: &DeploymentRecord| {
        tasks
            .iter()
            .any(|t| live(t) && t.started_by.as_deref() == Some(d.id.as_str()))
    };
    let before = svc.deployments.len();
    let first = svc.deployments[0].clone();
    svc.deployments = std::iter::once(first)
        .chain(
            svc.deployments[1..]
                .iter()
                .filter(|d| still_live(d))
                .cloned(),
        )
        .collect();
    let drained_old = before > svc.deployments.len();
    svc.running_count = svc.deployments.iter().map(|d| d.running_count).sum();
    svc.pending_count = svc.deployments.iter().map(|d| d.pending_count).sum();

    let p = &svc.deployments[0];
    let p_healthy = tasks
        .iter()
        .filter(|t| {
            t.started_by.as_deref() == Some(p.id.as_str())
                && !stopping_ids.contains(t.id.as_str())
                && is_healthy(t)
        })
        .count() as i32;
    let settled = svc.deployments.len() == 1
        && p.running_count == desired_now
        && p.pending_count == 0
        && p_healthy == desired_now
        && stop.is_empty()
        && start.is_empty()
        && !tasks.iter().any(|t| live(t) && !wanted(t));
    if settled && p.rollout_state == "IN_PROGRESS" {
        svc.complete(now, rng);
    }
    let moved = drained_old || !start.is_empty() || !stop.is_empty();
    mark_steady(&mut svc, settled, moved, now, rng);
    if draining_service && !tasks.iter().any(live) {
        svc.status = "INACTIVE".into();
        svc.desired_count = 0;
    }
    Plan {
        service: svc,
        start,
        stop,
    }
}

pub mod blue_green;
mod external;

#[cfg(test)]
mod tests;
