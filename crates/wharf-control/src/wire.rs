//! Domain records → ECS wire shapes, and the pagination tokens ECS's List
//! operations use.

use crate::cache::OnInstance;
use crate::error::{invalid, ApiResult};
use base64::Engine;
use std::collections::BTreeMap;
use wharf_core::clock::to_epoch_seconds;
use wharf_core::lifecycle::TaskStatus;
use wharf_core::records::{tags_to_wire, ClusterRecord, InstanceRecord, Resources, TaskRecord};
use wharf_model::ecs;

fn ts(ms: Option<i64>) -> Option<f64> {
    ms.map(to_epoch_seconds)
}

pub fn task(t: &TaskRecord, with_tags: bool) -> ecs::Task {
    ecs::Task {
        task_arn: Some(t.arn.clone()),
        cluster_arn: Some(t.cluster_arn.clone()),
        task_definition_arn: Some(t.task_definition_arn.clone()),
        container_instance_arn: t.instance_arn.clone(),
        launch_type: Some(ecs::LaunchType::from(t.launch_type.as_str())),
        capacity_provider_name: t.capacity_provider_name.clone(),
        last_status: Some(t.last_status.as_str().to_string()),
        desired_status: Some(t.desired_status.as_str().to_string()),
        created_at: ts(Some(t.created_at)),
        pull_started_at: ts(t.pull_started_at),
        pull_stopped_at: ts(t.pull_stopped_at),
        started_at: ts(t.started_at),
        connectivity: t.connectivity_at.map(|_| ecs::Connectivity::Connected),
        connectivity_at: ts(t.connectivity_at),
        stopping_at: ts(t.stopping_at),
        execution_stopped_at: ts(t.execution_stopped_at),
        stopped_at: ts(t.stopped_at),
        stop_code: t.stop_code.as_deref().map(ecs::TaskStopCode::from),
        stopped_reason: t.stopped_reason.clone(),
        started_by: t.started_by.clone(),
        group: Some(t.group.clone()),
        overrides: Some(ecs::TaskOverride {
            container_overrides: Some(t.overrides.container_overrides.clone().unwrap_or_default()),
            inference_accelerator_overrides: Some(vec![]),
            ..t.overrides.clone()
        }),
        cpu: t.cpu.clone(),
        memory: t.memory.clone(),
        health_status: Some(ecs::HealthStatus::from(t.health_status.as_str())),
        tags: with_tags.then(|| tags_to_wire(&t.tags)),
        enable_execute_command: Some(t.enable_execute_command),
        version: Some(t.version),
        availability_zone: None,
        attachments: Some(t.eni.iter().map(|e| eni_attachment(t, e)).collect()),
        platform_version: (t.launch_type == "FARGATE").then(|| "1.4.0".into()),
        platform_family: (t.launch_type == "FARGATE").then(|| "Linux".into()),
        attributes: Some(vec![]),
        containers: Some(
            t.containers
                .iter()
                .map(|c| ecs::Container {
                    container_arn: Some(c.arn.clone()),
                    task_arn: Some(t.arn.clone()),
                    name: Some(c.name.clone()),
                    image: Some(c.image.clone()),
                    image_digest: c.image_digest.clone(),
                    runtime_id: c.runtime_id.clone(),
                    last_status: Some(c.last_status.clone()),
                    exit_code: c.exit_code,
                    reason: c.reason.clone(),
                    network_bindings: Some(c.network_bindings.clone()),
                    network_interfaces: Some(
                        t.eni
                            .iter()
                            .map(|e| ecs::NetworkInterface {
                                attachment_id: Some(e.attachment_id.clone()),
                                private_ipv4_address: e.private_ipv4.clone(),
                                ipv6_address: None,
                            })
                            .collect(),
                    ),
                    health_status: Some(ecs::HealthStatus::from(
                        c.health_status.as_deref().unwrap_or("UNKNOWN"),
                    )),
                    cpu: Some(c.cpu.unwrap_or(0).to_string()),
                    memory: c.memory.map(|m| m.to_string()),
                    memory_reservation: c.memory_reservation.map(|m| m.to_string()),
                    // ECS Exec's agent, which in Wharf is the host's agent:
                    // ready while the container runs.
                    managed_agents: t.enable_execute_command.then(|| {
                        vec![ecs::ManagedAgent {
                            name: Some(ecs::ManagedAgentName::ExecuteCommandAgent),
                            last_status: Some(c.last_status.clone()),
                            last_started_at: ts(t.started_at),
                            reason: None,
                        }]
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }
}

/// An awsvpc task's network interface, as ECS shows it among its attachments.
fn eni_attachment(t: &TaskRecord, e: &wharf_core::records::Eni) -> ecs::Attachment {
    let status = match (t.last_status, &e.private_ipv4) {
        (TaskStatus::Stopped, _) => "DELETED",
        (_, Some(_)) => "ATTACHED",
        _ => "PRECREATED",
    };
    let kv = |n: &str, v: String| ecs::KeyValuePair {
        name: Some(n.into()),
        value: Some(v),
    };
    let mut details = vec![
        kv("subnetId", e.subnet_id.clone()),
        kv(
            "networkInterfaceId",
            format!("eni-{}", &e.attachment_id.replace('-', "")[..17]),
        ),
    ];
    if let Some(ip) = &e.private_ipv4 {
        details.push(kv("privateIPv4Address", ip.clone()));
    }
    ecs::Attachment {
        id: Some(e.attachment_id.clone()),
        r#type: Some("ElasticNetworkInterface".into()),
        status: Some(status.into()),
        details: Some(details),
    }
}

/// Task counts for cluster and instance statistics: tasks RUNNING, and
/// tasks PENDING that are to run (kept by the placement cache).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub running: i32,
    pub pending: i32,
}

pub fn cluster(
    c: &ClusterRecord,
    instances: i32,
    counts: Counts,
    with_tags: bool,
    with_settings: bool,
) -> ecs::Cluster {
    ecs::Cluster {
        cluster_arn: Some(c.arn.clone()),
        cluster_name: Some(c.name.clone()),
        status: Some(c.status.clone()),
        registered_container_instances_count: Some(instances),
        running_tasks_count: Some(counts.running),
        pending_tasks_count: Some(counts.pending),
        active_services_count: Some(0),
        statistics: Some(vec![]),
        tags: Some(if with_tags {
            tags_to_wire(&c.tags)
        } else {
            vec![]
        }),
        settings: with_settings.then(|| {
            c.settings
                .iter()
                .map(|(k, v)| ecs::ClusterSetting {
                    name: Some(ecs::ClusterSettingName::from(k.as_str())),
                    value: Some(v.clone()),
                })
                .collect()
        }),
        capacity_providers: Some(c.capacity_providers.clone()),
        default_capacity_provider_strategy: Some(c.default_strategy.clone()),
        configuration: c.configuration.clone(),
        service_connect_defaults: c.service_connect_namespace.as_ref().map(|n| {
            ecs::ClusterServiceConnectDefaults {
                namespace: Some(n.clone()),
            }
        }),
        ..Default::default()
    }
}

/// Resources from RegisterContainerInstance's `totalResources`.
pub fn resources_from_wire(list: &[ecs::Resource]) -> ApiResult<Resources> {
    let mut r = Resources::default();
    for res in list {
        let name = res.name.as_deref().unwrap_or("");
        // ECS carries CPU and MEMORY as integers (i32) and shows them so:
        // a wider value could not be shown, and sums of them could overflow.
        let int = || -> ApiResult<i64> {
            let v = res
                .integer_value
                .map(i64::from)
                .or(res.long_value)
                .or(res.double_value.map(|d| d as i64))
                .unwrap_or(0);
            if v > i64::from(i32::MAX) {
                return Err(invalid(format!(
                    "The {name} resource may be at most {}; {v} was given.",
                    i32::MAX
                )));
            }
            Ok(v)
        };
        let ports = || -> ApiResult<std::collections::BTreeSet<u16>> {
            res.string_set_value
                .iter()
                .flatten()
                .map(|p| {
                    p.parse::<u16>()
                        .map_err(|_| invalid(format!("Invalid port '{p}' in resource {name}.")))
                })
                .collect()
        };
        match name {
            "CPU" => r.cpu = int()?,
            "MEMORY" => r.memory = int()?,
            "PORTS" => r.tcp_ports = ports()?,
            "PORTS_UDP" => r.udp_ports = ports()?,
            // GPUs and the like would be dropped: nothing places by them.
            other => {
                return Err(invalid(format!(
                    "The resource {other} is not supported by Wharf: instances offer CPU, MEMORY, PORTS and PORTS_UDP."
                )))
            }
        }
    }
    Ok(r)
}

pub fn attributes(attrs: &BTreeMap<String, Option<String>>) -> Vec<ecs::Attribute> {
    attrs
        .iter()
        .map(|(k, v)| ecs::Attribute {
            name: k.clone(),
            value: v.clone(),
            ..Default::default()
        })
        .collect()
}

/// An instance as ECS shows it, with what its tasks hold.
pub fn container_instance(
    i: &InstanceRecord,
    now: &OnInstance,
    with_tags: bool,
) -> ecs::ContainerInstance {
    let OnInstance {
        held,
        counts,
        connected,
    } = now;
    ecs::ContainerInstance {
        container_instance_arn: Some(i.arn.clone()),
        ec2_instance_id: i.hostname.clone(),
        version: Some(i.version),
        version_info: Some(ecs::VersionInfo {
            agent_version: i.agent_version.clone(),
            agent_hash: None,
            docker_version: i.docker_version.clone(),
        }),
        registered_resources: Some(wharf_core::records::Resources::to_wire(&{
            let mut r = i.registered.clone();
            r.tcp_ports = i.reserved.tcp_ports.clone();
            r.udp_ports = i.reserved.udp_ports.clone();
            r
        })),
        remaining_resources: Some(i.remaining(held).to_wire()),
        status: Some(i.status.clone()),
        agent_connected: Some(*connected),
        running_tasks_count: Some(counts.running),
        pending_tasks_count: Some(counts.pending),
        attributes: Some(attributes(&i.attributes)),
        capacity_provider_name: i
            .attributes
            .get(wharf_core::capacity::INSTANCE_ATTRIBUTE)
            .cloned()
            .flatten(),
        registered_at: Some(to_epoch_seconds(i.registered_at)),
        attachments: Some(vec![]),
        tags: with_tags.then(|| tags_to_wire(&i.tags)),
        ..Default::default()
    }
}

/// ECS's page size when maxResults is not given, and its bounds.
pub fn page_size(max_results: Option<i32>, default: usize, max: usize) -> ApiResult<usize> {
    match max_results {
        None => Ok(default),
        Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
        Some(n) => Err(invalid(format!(
            "maxResults must be between 1 and {max}; {n} was given."
        ))),
    }
}

/// One page of `items` (already in order) after the token's position.
/// Tokens are the opaque, base64-wrapped sort key of the last item returned,
/// so pages never repeat or skip an item that stays in the list.
/// A pagination token for a position (a key suffix).
pub fn encode_token(position: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(position.as_bytes())
}

/// The position a token stands for.
pub fn decode_token(token: &str) -> ApiResult<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| invalid("Invalid nextToken."))
}

pub fn paginate<T>(
    items: Vec<(String, T)>,
    token: Option<&str>,
    size: usize,
) -> ApiResult<(Vec<T>, Option<String>)> {
    let after = match token {
        None | Some("") => None,
        Some(t) => Some(decode_token(t)?),
    };
    let start = match &after {
        None => 0,
        Some(a) => items
            .iter()
            .position(|(k, _)| k == a)
            .map(|p| p + 1)
            .unwrap_or_else(|| {
                // The item was deleted since: resume at the first key past it in list order.
                items.iter().position(|(k, _)| k > a).unwrap_or(items.len())
            }),
    };
    let mut page: Vec<(String, T)> = items.into_iter().skip(start).take(size + 1).collect();
    let next = if page.len() > size {
        page.truncate(size);
        page.last().map(|(k, _)| encode_token(k))
    } else {
        None
    };
    Ok((page.into_iter().map(|(_, v)| v).collect(), next))
}

/// A service revision: what its service deployment was to run. `images`
/// are the task definition's containers (name, image); Wharf resolves tags
/// when each task starts, so there is no digest to show.
pub fn service_revision(
    scope: &wharf_core::arn::Scope,
    s: &wharf_core::service::ServiceRecord,
    h: &wharf_core::service::ServiceDeploymentRecord,
    images: Vec<ecs::ContainerImage>,
) -> ecs::ServiceRevision {
    let r = h.revision.as_ref();
    let launch = r.map(|r| r.launch_type.as_str());
    let strategy = r
        .map(|r| r.capacity_provider_strategy.clone())
        .unwrap_or_default();
    let fargate = launch == Some("FARGATE");
    ecs::ServiceRevision {
        service_revision_arn: Some(scope.service_revision(&s.cluster, &s.name, &h.id)),
        service_arn: Some(s.arn.clone()),
        cluster_arn: Some(s.cluster_arn.clone()),
        task_definition: Some(h.task_definition.clone()),
        launch_type: launch
            .filter(|_| strategy.is_empty())
            .map(ecs::LaunchType::from),
        capacity_provider_strategy: (!strategy.is_empty()).then_some(strategy),
        platform_version: fargate.then(|| "1.4.0".into()),
        platform_family: fargate.then(|| "Linux".into()),
        load_balancers: r.map(|r| r.load_balancers.clone()),
        network_configuration: r.and_then(|r| r.network_configuration.clone()),
        container_images: Some(images),
        created_at: Some(to_epoch_seconds(h.created_at)),
        ..Default::default()
    }
}

/// A task set of an EXTERNAL service.
pub fn task_set(
    s: &wharf_core::service::ServiceRecord,
    ts: &wharf_core::service::TaskSetRecord,
    with_tags: bool,
) -> ecs::TaskSet {
    let fargate = ts.launch_type == "FARGATE";
    let strategy = &ts.capacity_provider_strategy;
    ecs::TaskSet {
        id: Some(ts.id.clone()),
        task_set_arn: Some(ts.arn.clone()),
        service_arn: Some(s.arn.clone()),
        cluster_arn: Some(s.cluster_arn.clone()),
        external_id: ts.external_id.clone(),
        status: Some(ts.status.clone()),
        task_definition: Some(ts.task_definition.clone()),
        computed_desired_count: Some(ts.computed_desired_count),
        pending_count: Some(ts.pending_count),
        running_count: Some(ts.running_count),
        created_at: Some(to_epoch_seconds(ts.created_at)),
        updated_at: Some(to_epoch_seconds(ts.updated_at)),
        launch_type: strategy
            .is_empty()
            .then(|| ecs::LaunchType::from(ts.launch_type.as_str())),
        capacity_provider_strategy: (!strategy.is_empty()).then(|| strategy.clone()),
        platform_version: fargate.then(|| "1.4.0".into()),
        platform_family: fargate.then(|| "Linux".into()),
        network_configuration: ts.network_configuration.clone(),
        load_balancers: Some(ts.load_balancers.clone()),
        service_registries: Some(vec![]),
        scale: Some(ecs::Scale {
            value: Some(ts.scale),
            unit: Some(ecs::ScaleUnit::Percent),
        }),
        stability_status: Some(if ts.stable {
            ecs::StabilityStatus::SteadyState
        } else {
            ecs::StabilityStatus::Stabilizing
        }),
        stability_status_at: Some(to_epoch_seconds(ts.stability_at)),
        tags: with_tags.then(|| tags_to_wire(&ts.tags)),
        ..Default::default()
    }
}

/// One service deployment, brief (List) or full (Describe).
pub fn service_deployment(
    scope: &wharf_core::arn::Scope,
    s: &wharf_core::service::ServiceRecord,
    h: &wharf_core::service::ServiceDeploymentRecord,
) -> (ecs::ServiceDeploymentBrief, ecs::ServiceDeployment) {
    let arn = scope.service_deployment(&s.cluster, &s.name, &h.id);
    let revision = |id: &str| scope.service_revision(&s.cluster, &s.name, id);
    let status = ecs::ServiceDeploymentStatus::from(h.status.as_str());
    let current = s
        .deployments
        .iter()
        .find(|d| wharf_core::service::numeric_id(&d.id) == h.id);
    let brief = ecs::ServiceDeploymentBrief {
        service_deployment_arn: Some(arn.clone()),
        service_arn: Some(s.arn.clone()),
        cluster_arn: Some(s.cluster_arn.clone()),
        started_at: Some(to_epoch_seconds(h.created_at)),
        created_at: Some(to_epoch_seconds(h.created_at)),
        finished_at: ts(h.finished_at),
        target_service_revision_arn: Some(revision(&h.id)),
        status: Some(status.clone()),
        status_reason: h.status_reason.clone(),
    };
    let full = ecs::ServiceDeployment {
        service_deployment_arn: Some(arn),
        service_arn: Some(s.arn.clone()),
        cluster_arn: Some(s.cluster_arn.clone()),
        created_at: Some(to_epoch_seconds(h.created_at)),
        started_at: Some(to_epoch_seconds(h.created_at)),
        finished_at: ts(h.finished_at),
        stopped_at: ts(h.stopped_at),
        updated_at: Some(to_epoch_seconds(h.updated_at)),
        source_service_revisions: Some(
            h.source
                .iter()
                .map(|(id, _)| ecs::ServiceRevisionSummary {
                    arn: Some(revision(id)),
                    ..Default::default()
                })
                .collect(),
        ),
        target_service_revision: Some(ecs::ServiceRevisionSummary {
            arn: Some(revision(&h.id)),
            requested_task_count: Some(h.desired_count),
            running_task_count: current.map(|d| d.running_count),
            pending_task_count: current.map(|d| d.pending_count),
            ..Default::default()
        }),
        status: Some(status),
        status_reason: h.status_reason.clone(),
        deployment_configuration: Some(deployment_configuration(&h.config)),
        lifecycle_stage: h
            .lifecycle
            .as_ref()
            .map(|l| ecs::ServiceDeploymentLifecycleStage::from(l.shown_stage())),
        lifecycle_hook_details: h.lifecycle.as_ref().map(|l| {
            l.hooks
                .iter()
                .map(|k| ecs::DeploymentLifecycleHookDetail {
                    hook_id: Some(k.id.clone()),
                    target_type: Some(ecs::DeploymentLifecycleHookTargetType::Pause),
                    target_arn: None,
                    status: Some(ecs::DeploymentLifecycleHookStatus::from(k.status.as_str())),
                    expires_at: Some(to_epoch_seconds(k.expires_at)),
                    timeout_action: Some(ecs::DeploymentLifecycleHookAction::from(
                        k.timeout_action.as_str(),
                    )),
                })
                .collect()
        }),
        rollback: h.rollback.as_ref().map(|r| ecs::Rollback {
            reason: Some(r.reason.clone()),
            started_at: Some(to_epoch_seconds(r.started_at)),
            service_revision_arn: Some(revision(&r.target.0)),
        }),
        ..Default::default()
    };
    (brief, full)
}

/// A service's (or a service deployment's) deployment configuration.
fn deployment_configuration(
    cfg: &wharf_core::service::DeploymentConfig,
) -> ecs::DeploymentConfiguration {
    let bg = cfg.blue_green.as_ref();
    ecs::DeploymentConfiguration {
        deployment_circuit_breaker: Some(ecs::DeploymentCircuitBreaker {
            enable: cfg.circuit_breaker,
            rollback: cfg.rollback,
            ..Default::default()
        }),
        maximum_percent: Some(cfg.maximum_percent),
        minimum_healthy_percent: Some(cfg.minimum_healthy_percent),
        strategy: Some(match bg.map(|b| b.steps.as_ref().map(|t| t.linear)) {
            None => ecs::DeploymentStrategy::Rolling,
            Some(None) => ecs::DeploymentStrategy::BlueGreen,
            Some(Some(true)) => ecs::DeploymentStrategy::Linear,
            Some(Some(false)) => ecs::DeploymentStrategy::Canary,
        }),
        linear_configuration: bg
            .and_then(|b| b.steps.as_ref())
            .filter(|t| t.linear)
            .map(|t| ecs::LinearConfiguration {
                step_percent: Some(t.percent),
                step_bake_time_in_minutes: Some(t.bake_minutes),
            }),
        canary_configuration: bg
            .and_then(|b| b.steps.as_ref())
            .filter(|t| !t.linear)
            .map(|t| ecs::CanaryConfiguration {
                canary_percent: Some(t.percent),
                canary_bake_time_in_minutes: Some(t.bake_minutes),
            }),
        bake_time_in_minutes: bg.map(|b| b.bake_time_minutes),
        lifecycle_hooks: bg.map(|b| b.hooks.clone()).filter(|h| !h.is_empty()),
        ..Default::default()
    }
}

pub fn service(s: &wharf_core::service::ServiceRecord, with_tags: bool) -> ecs::Service {
    ecs::Service {
        service_arn: Some(s.arn.clone()),
        service_name: Some(s.name.clone()),
        cluster_arn: Some(s.cluster_arn.clone()),
        load_balancers: Some(s.load_balancers.clone()),
        service_registries: Some(s.service_registries.clone()),
        status: Some(s.status.clone()),
        desired_count: Some(s.desired_count),
        running_count: Some(s.running_count),
        pending_count: Some(s.pending_count),
        // With a strategy ECS shows it instead of a launch type.
        launch_type: s
            .capacity_provider_strategy
            .is_empty()
            .then(|| ecs::LaunchType::from(s.launch_type.as_str())),
        capacity_provider_strategy: (!s.capacity_provider_strategy.is_empty())
            .then(|| s.capacity_provider_strategy.clone()),
        // An EXTERNAL service has none until a task set is made primary.
        task_definition: Some(s.task_definition.clone()).filter(|t| !t.is_empty()),
        deployment_configuration: Some(deployment_configuration(&s.deployment_config)),
        deployments: Some(
            s.deployments
                .iter()
                .map(|d| ecs::Deployment {
                    id: Some(d.id.clone()),
                    status: Some(d.status.clone()),
                    task_definition: Some(d.task_definition.clone()),
                    desired_count: Some(d.desired_count),
                    pending_count: Some(d.pending_count),
                    running_count: Some(d.running_count),
                    failed_tasks: Some(d.failed_tasks.len() as i32),
                    created_at: Some(to_epoch_seconds(d.created_at)),
                    updated_at: Some(to_epoch_seconds(d.updated_at)),
                    launch_type: d
                        .capacity_provider_strategy
                        .is_empty()
                        .then(|| ecs::LaunchType::from(d.launch_type.as_str())),
                    capacity_provider_strategy: (!d.capacity_provider_strategy.is_empty())
                        .then(|| d.capacity_provider_strategy.clone()),
                    network_configuration: s.network_configuration.clone(),
                    rollout_state: Some(ecs::DeploymentRolloutState::from(
                        d.rollout_state.as_str(),
                    )),
                    rollout_state_reason: Some(d.rollout_state_reason.clone()),
                    ..Default::default()
                })
                .collect(),
        ),
        role_arn: None,
        events: Some(
            s.events
                .iter()
                .map(|e| ecs::ServiceEvent {
                    id: Some(e.id.clone()),
                    created_at: Some(to_epoch_seconds(e.created_at)),
                    message: Some(e.message.clone()),
                })
                .collect(),
        ),
        created_at: Some(to_epoch_seconds(s.created_at)),
        placement_constraints: Some(s.placement_constraints.clone()),
        placement_strategy: Some(s.placement_strategy.clone()),
        network_configuration: s.network_configuration.clone(),
        health_check_grace_period_seconds: s.health_check_grace_period_seconds,
        scheduling_strategy: Some(ecs::SchedulingStrategy::from(
            s.scheduling_strategy.as_str(),
        )),
        deployment_controller: Some(ecs::DeploymentController {
            r#type: if s.external {
                ecs::DeploymentControllerType::External
            } else {
                ecs::DeploymentControllerType::Ecs
            },
        }),
        task_sets: s.external.then(|| {
            s.task_sets
                .iter()
                .map(|ts| task_set(s, ts, false))
                .collect()
        }),
        tags: with_tags.then(|| tags_to_wire(&s.tags)),
        created_by: s.created_by.clone(),
        enable_ecs_managed_tags: Some(s.enable_ecs_managed_tags),
        propagate_tags: s.propagate_tags.as_deref().map(ecs::PropagateTags::from),
        enable_execute_command: Some(s.enable_execute_command),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_everything_once() {
        let items: Vec<(String, u32)> = (0..25).map(|i| (format!("k{i:03}"), i)).collect();
        let mut seen = vec![];
        let mut token = None;
        loop {
            let (page, next) = paginate(items.clone(), token.as_deref(), 10).unwrap();
            seen.extend(page);
            match next {
                None => break,
                Some(t) => token = Some(t),
            }
        }
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
        assert!(paginate(items, Some("!!"), 10).is_err());
    }
}
