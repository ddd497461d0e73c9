//! Services: CreateService, UpdateService, DeleteService, DescribeServices,
//! ListServices. Handlers only validate and write the service record; the
//! controller (see [`crate::controller`]) starts and stops the tasks.

use super::{active_cluster, cluster_name, taskdefs};
use crate::error::{from_core, invalid, unsupported, ApiResult};
use crate::idempotency::Token;
use crate::records::{self, commit, Versioned};
use crate::wire::{self, paginate};
use crate::{Control, Ctx};
use rand::SeedableRng;
use wharf_core::arn;
use wharf_core::placement;
use wharf_core::records::{keys, tags_from_wire};
use wharf_core::service::{BlueGreenConfig, DeploymentConfig, ServiceRecord};
use wharf_model::ecs;
use wharf_protocol::AwsError;
use wharf_store::Txn;

const CREATE_SERVICE: &str = "CreateService";

fn not_found() -> AwsError {
    AwsError::client("ServiceNotFoundException", "Service not found.")
}

fn not_active() -> AwsError {
    AwsError::client("ServiceNotActiveException", "Service was not ACTIVE.")
}

/// The members CreateService and UpdateService share that Wharf does not
/// act on (yet): each is refused by name when it asks for something, so
/// none is stored and silently dropped.
struct Members<'a> {
    deployment_controller: Option<&'a ecs::DeploymentController>,
    service_registries: Option<&'a [ecs::ServiceRegistry]>,
    deployment_configuration: Option<&'a ecs::DeploymentConfiguration>,
    service_connect: Option<&'a ecs::ServiceConnectConfiguration>,
    volume_configurations: Option<&'a [ecs::ServiceVolumeConfiguration]>,
    vpc_lattice: Option<&'a [ecs::VpcLatticeConfiguration]>,
    gateway_connectors: Option<&'a [ecs::GatewayConnector]>,
    monitoring: bool,
    availability_zone_rebalancing: Option<&'a ecs::AvailabilityZoneRebalancing>,
    platform_version: Option<&'a str>,
}

/// The [`Members`] of a CreateService or UpdateService request `r` (the
/// two requests name them alike).
macro_rules! members_of {
    ($r:ident) => {
        Members {
            deployment_controller: $r.deployment_controller.as_ref(),
            service_registries: $r.service_registries.as_deref(),
            deployment_configuration: $r.deployment_configuration.as_ref(),
            service_connect: $r.service_connect_configuration.as_ref(),
            volume_configurations: $r.volume_configurations.as_deref(),
            vpc_lattice: $r.vpc_lattice_configurations.as_deref(),
            gateway_connectors: $r.gateway_connectors.as_deref(),
            monitoring: $r.monitoring.is_some(),
            availability_zone_rebalancing: $r.availability_zone_rebalancing.as_ref(),
            platform_version: $r.platform_version.as_deref(),
        }
    };
}

fn refuse_unsupported(m: &Members) -> ApiResult<()> {
    let given = |v: Option<usize>| v.is_some_and(|n| n > 0);
    if m.deployment_controller.is_some_and(|d| {
        !matches!(
            d.r#type,
            ecs::DeploymentControllerType::Ecs | ecs::DeploymentControllerType::External
        )
    }) {
        return Err(unsupported(
            "The CODE_DEPLOY deployment controller (ECS and EXTERNAL are)",
        ));
    }
    if given(m.service_registries.map(<[_]>::len)) {
        return Err(unsupported("serviceRegistries"));
    }
    if m.service_connect.is_some_and(|s| s.enabled) {
        return Err(unsupported("Service Connect (serviceConnectConfiguration)"));
    }
    if given(m.volume_configurations.map(<[_]>::len)) {
        return Err(unsupported("volumeConfigurations (Amazon EBS volumes)"));
    }
    if given(m.vpc_lattice.map(<[_]>::len)) {
        return Err(unsupported("vpcLatticeConfigurations"));
    }
    if given(m.gateway_connectors.map(<[_]>::len)) {
        return Err(unsupported("gatewayConnectors"));
    }
    if m.monitoring {
        return Err(unsupported("monitoring"));
    }
    if m.availability_zone_rebalancing == Some(&ecs::AvailabilityZoneRebalancing::Enabled) {
        return Err(unsupported("availabilityZoneRebalancing ENABLED"));
    }
    super::tasks::platform_version(m.platform_version)?;
    if let Some(d) = m.deployment_configuration {
        for (member, set) in [
            (
                "deploymentConfiguration.earlySuccessCriteria",
                d.early_success_criteria.is_some(),
            ),
            (
                "deploymentConfiguration.alarms (CloudWatch alarms)",
                d.alarms.as_ref().is_some_and(|a| a.enable),
            ),
            (
                "deploymentCircuitBreaker.thresholdConfiguration",
                d.deployment_circuit_breaker
                    .as_ref()
                    .is_some_and(|b| b.threshold_configuration.is_some()),
            ),
            (
                "deploymentCircuitBreaker.resetOnHealthyTask",
                d.deployment_circuit_breaker
                    .as_ref()
                    .is_some_and(|b| b.reset_on_healthy_task == Some(false)),
            ),
        ] {
            if set {
                return Err(unsupported(member));
            }
        }
    }
    Ok(())
}

/// The service a request names (by name or ARN) in the request's cluster.
async fn find(
    c: &Control,
    x: &Ctx,
    cluster: Option<&str>,
    given: &str,
) -> ApiResult<(String, Option<Versioned<ServiceRecord>>)> {
    let (from_arn, name) = arn::service_name(given).map_err(from_core)?;
    let cluster = match from_arn {
        Some(c) => c,
        None => cluster_name(x, cluster)?,
    };
    if !arn::in_region(given, x.region()) {
        return Ok((cluster, None));
    }
    let v = records::get(
        c.store.as_ref(),
        &keys::service(&x.cluster_key(&cluster), &name),
    )
    .await?;
    Ok((cluster, v))
}

/// The named service of an ACTIVE cluster, or ServiceNotFoundException.
pub(crate) async fn existing(
    c: &Control,
    x: &Ctx,
    cluster: Option<&str>,
    given: &str,
) -> ApiResult<Versioned<ServiceRecord>> {
    let (cluster, found) = find(c, x, cluster, given).await?;
    active_cluster(c, x, &cluster).await?;
    found.ok_or_else(not_found)
}

fn deployment_config(
    given: Option<&ecs::DeploymentConfiguration>,
    daemon: bool,
    current: Option<&DeploymentConfig>,
) -> ApiResult<DeploymentConfig> {
    let (min_default, max_default) = match current {
        Some(c) => (c.minimum_healthy_percent, c.maximum_percent),
        None if daemon => (0, 100),
        None => (100, 200),
    };
    let breaker = given.and_then(|g| g.deployment_circuit_breaker.as_ref());
    let blue_green = blue_green_config(given, current, daemon)?;
    let cfg = DeploymentConfig {
        minimum_healthy_percent: given
            .and_then(|g| g.minimum_healthy_percent)
            .unwrap_or(min_default),
        maximum_percent: given.and_then(|g| g.maximum_percent).unwrap_or(max_default),
        circuit_breaker: breaker
            .map(|b| b.enable)
            .unwrap_or(current.is_some_and(|c| c.circuit_breaker)),
        rollback: breaker
            .map(|b| b.rollback)
            .unwrap_or(current.is_some_and(|c| c.rollback)),
        blue_green,
    };
    if !(0..=100).contains(&cfg.minimum_healthy_percent) {
        return Err(invalid("minimumHealthyPercent must be between 0 and 100."));
    }
    if cfg.maximum_percent < 100 && !daemon {
        return Err(invalid("maximumPercent must be at least 100."));
    }
    if cfg.maximum_percent < cfg.minimum_healthy_percent {
        return Err(invalid(
            "maximumPercent must be greater than or equal to minimumHealthyPercent.",
        ));
    }
    if daemon && cfg.maximum_percent != 100 {
        return Err(invalid(
            "The maximumPercent of a service with the DAEMON scheduling strategy must be 100.",
        ));
    }
    Ok(cfg)
}

/// The BLUE_GREEN strategy's settings: what the request gives, else what
/// the service had. Only PAUSE hooks: Wharf has no Lambda to invoke.
fn blue_green_config(
    given: Option<&ecs::DeploymentConfiguration>,
    current: Option<&DeploymentConfig>,
    daemon: bool,
) -> ApiResult<Option<BlueGreenConfig>> {
    use ecs::DeploymentStrategy as S;
    let was = current.and_then(|c| c.blue_green.clone());
    let strategy = match given.and_then(|g| g.strategy.clone()) {
        Some(s) if !s.is_known() => {
            return Err(invalid(format!(
                "strategy {} is not one of ROLLING, BLUE_GREEN, LINEAR, CANARY.",
                s.as_str()
            )))
        }
        Some(s) => s,
        None => match was.as_ref().map(|w| w.steps.as_ref().map(|t| t.linear)) {
            None => S::Rolling,
            Some(None) => S::BlueGreen,
            Some(Some(true)) => S::Linear,
            Some(Some(false)) => S::Canary,
        },
    };
    let on = matches!(strategy, S::BlueGreen | S::Linear | S::Canary);
    let bake = given.and_then(|g| g.bake_time_in_minutes);
    let hooks = given.and_then(|g| g.lifecycle_hooks.clone());
    let linear = given.and_then(|g| g.linear_configuration.as_ref());
    let canary = given.and_then(|g| g.canary_configuration.as_ref());
    if linear.is_some() && strategy != S::Linear {
        return Err(invalid(
            "linearConfiguration applies to the LINEAR deployment strategy only.",
        ));
    }
    if canary.is_some() && strategy != S::Canary {
        return Err(invalid(
            "canaryConfiguration applies to the CANARY deployment strategy only.",
        ));
    }
    if !on {
        if bake.is_some_and(|b| b != 0) {
            return Err(invalid(
                "bakeTimeInMinutes applies to the BLUE_GREEN, LINEAR and CANARY deployment strategies only.",
            ));
        }
        if hooks.as_ref().is_some_and(|h| !h.is_empty()) {
            return Err(invalid(
                "lifecycleHooks apply to the BLUE_GREEN, LINEAR and CANARY deployment strategies only.",
            ));
        }
        return Ok(None);
    }
    if daemon {
        return Err(invalid(
            "The BLUE_GREEN deployment strategy is not supported with the DAEMON scheduling strategy.",
        ));
    }
    let bake = bake.unwrap_or(was.as_ref().map_or(0, |w| w.bake_time_minutes));
    if !(0..=1440).contains(&bake) {
        return Err(invalid("bakeTimeInMinutes must be between 0 and 1440."));
    }
    let hooks = hooks.unwrap_or_else(|| was.as_ref().map(|w| w.hooks.clone()).unwrap_or_default());
    for h in &hooks {
        if h.target_type != Some(ecs::DeploymentLifecycleHookTargetType::Pause) {
            return Err(unsupported(
                "AWS_LAMBDA lifecycle hooks (Wharf has no Lambda; targetType PAUSE hooks are)",
            ));
        }
        if h.hook_target_arn.is_some() {
            return Err(invalid("hookTargetArn is not applicable for PAUSE hooks."));
        }
        if h.role_arn.is_some() {
            return Err(invalid("roleArn is not applicable for PAUSE hooks."));
        }
        if h.hook_details.is_some() {
            return Err(invalid("hookDetails is not used for PAUSE hooks."));
        }
        if h.lifecycle_stages.as_ref().is_none_or(|s| s.is_empty()) {
            return Err(invalid("A lifecycle hook must name its lifecycleStages."));
        }
        if let Some(bad) = h.lifecycle_stages.iter().flatten().find(|s| !s.is_known()) {
            return Err(invalid(format!(
                "{} is not a lifecycle stage a hook can run at.",
                bad.as_str()
            )));
        }
        if let Some(a) = h
            .timeout_configuration
            .as_ref()
            .and_then(|t| t.action.as_ref())
        {
            if !a.is_known() {
                return Err(invalid(format!(
                    "timeoutConfiguration.action {} is not one of ROLLBACK, CONTINUE.",
                    a.as_str()
                )));
            }
        }
        if let Some(t) = h
            .timeout_configuration
            .as_ref()
            .and_then(|t| t.timeout_in_minutes)
        {
            if !(1..=20_160).contains(&t) {
                return Err(invalid("timeoutInMinutes must be between 1 and 20160."));
            }
        }
    }
    // A step's share and bake: given, else kept from the same strategy,
    // else ECS's defaults.
    let kept = was
        .and_then(|w| w.steps)
        .filter(|t| t.linear == (strategy == S::Linear));
    let steps = match strategy {
        S::Linear => Some(traffic_steps(
            true,
            linear.and_then(|l| l.step_percent),
            linear.and_then(|l| l.step_bake_time_in_minutes),
            kept,
        )?),
        S::Canary => Some(traffic_steps(
            false,
            canary.and_then(|c| c.canary_percent),
            canary.and_then(|c| c.canary_bake_time_in_minutes),
            kept,
        )?),
        _ => None,
    };
    Ok(Some(BlueGreenConfig {
        bake_time_minutes: bake,
        hooks,
        steps,
    }))
}

/// LINEAR's `stepPercent` (3–100, default 10) and `stepBakeTimeInMinutes`
/// (default 6), or CANARY's `canaryPercent` (0.1–100, default 5) and
/// `canaryBakeTimeInMinutes` (default 10): multiples of 0.1 percent, bakes
/// of 0–1440 minutes.
fn traffic_steps(
    linear: bool,
    percent: Option<f64>,
    bake: Option<i32>,
    kept: Option<wharf_core::service::TrafficSteps>,
) -> ApiResult<wharf_core::service::TrafficSteps> {
    let (member, low, default_percent, default_bake) = match linear {
        true => ("linearConfiguration.stepPercent", 3.0, 10.0, 6),
        false => ("canaryConfiguration.canaryPercent", 0.1, 5.0, 10),
    };
    let percent = percent
        .or(kept.as_ref().map(|k| k.percent))
        .unwrap_or(default_percent);
    let tenths = percent * 10.0;
    if !(low - 1e-9..=100.0 + 1e-9).contains(&percent) || (tenths - tenths.round()).abs() > 1e-6 {
        return Err(invalid(format!(
            "{member} must be a multiple of 0.1 from {low} to 100.0."
        )));
    }
    let bake = bake
        .or(kept.as_ref().map(|k| k.bake_minutes))
        .unwrap_or(default_bake);
    if !(0..=1440).contains(&bake) {
        return Err(invalid(
            "The step bake time must be between 0 and 1440 minutes.",
        ));
    }
    Ok(wharf_core::service::TrafficSteps {
        linear,
        percent: tenths.round() / 10.0,
        bake_minutes: bake,
    })
}

fn check_placement(
    constraints: &[ecs::PlacementConstraint],
    strategies: &[ecs::PlacementStrategy],
    daemon: bool,
) -> ApiResult<()> {
    placement::parse_constraints(constraints).map_err(from_core)?;
    placement::parse_strategies(strategies).map_err(from_core)?;
    if daemon && !strategies.is_empty() {
        return Err(invalid(
            "Placement strategies are not supported with the DAEMON scheduling strategy.",
        ));
    }
    Ok(())
}

/// Checks a service's `loadBalancers` as ECS does: each names an existing
/// target group that a load balancer uses, whose target type suits the
/// task definition's network mode, and a container port the task
/// definition maps.
pub(crate) async fn check_load_balancers(
    c: &Control,
    x: &Ctx,
    lbs: &[ecs::LoadBalancer],
    td: &ecs::TaskDefinition,
    blue_green: Option<&str>,
) -> ApiResult<()> {
    if lbs.len() > 5 {
        return Err(invalid("A service can have at most 5 load balancers."));
    }
    let usage = wharf_lb::registry::load_usage(c.store.as_ref())
        .await
        .map_err(crate::error::from_store)?;
    let mode = td
        .network_mode
        .as_ref()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "bridge".into());
    let mut seen = std::collections::HashSet::new();
    for lb in lbs {
        if lb.load_balancer_name.is_some() {
            return Err(unsupported("Classic Load Balancers (loadBalancerName)"));
        }
        match (&lb.advanced_configuration, blue_green.is_some()) {
            (Some(_), false) => {
                return Err(invalid(
                    "advancedConfiguration applies to the BLUE_GREEN deployment strategy only.",
                ))
            }
            (None, true) => {
                return Err(invalid(
                    "A load balancer of a BLUE_GREEN service needs advancedConfiguration with alternateTargetGroupArn and productionListenerRule.",
                ))
            }
            _ => {}
        }
        let arn = lb.target_group_arn.as_deref().ok_or_else(|| {
            invalid("targetGroupArn must be specified for an Application or Network Load Balancer.")
        })?;
        let container = lb
            .container_name
            .as_deref()
            .ok_or_else(|| invalid("containerName must be specified for a load balancer."))?;
        let port = lb
            .container_port
            .ok_or_else(|| invalid("containerPort must be specified for a load balancer."))?;
        // ELB is regional too: another region's target group is none of ours.
        let found = match arn::in_region(arn, x.region()) {
            true => wharf_lb::registry::target_group(c.store.as_ref(), arn)
                .await
                .map_err(crate::error::from_store)?,
            false => None,
        };
        let group = found.ok_or_else(|| {
            invalid(format!(
                "The target group with targetGroupArn {arn} does not exist."
            ))
        })?;
        if let Some(adv) = &lb.advanced_configuration {
            let owner = blue_green.unwrap_or_default();
            check_blue_green_pair(c, x, owner, arn, &group, adv, &usage).await?;
        } else if !usage.contains_key(arn) {
            return Err(invalid(format!(
                "The target group with targetGroupArn {arn} does not have an associated load balancer."
            )));
        }
        match (group.target_type.as_str(), mode.as_str()) {
            ("ip", "awsvpc") | ("instance", "bridge" | "host") => {}
            (kind, mode) => {
                return Err(invalid(format!(
                    "The provided target group {arn} has target type {kind}, which is incompatible with the {mode} network mode specified in the task definition."
                )))
            }
        }
        let def = td
            .container_definitions
            .iter()
            .flatten()
            .find(|d| d.name.as_deref() == Some(container))
            .ok_or_else(|| {
                invalid(format!(
                    "The container {container} does not exist in the task definition."
                ))
            })?;
        if !def
            .port_mappings
            .iter()
            .flatten()
            .any(|m| m.container_port == Some(port))
        {
            return Err(invalid(format!(
                "The container {container} did not have a container port {port} defined."
            )));
        }
        if !seen.insert((arn.to_owned(), container.to_owned(), port)) {
            return Err(invalid(format!(
                "The load balancer {arn} for container {container} port {port} is given twice."
            )));
        }
    }
    Ok(())
}

/// A service may go from blue/green back to ROLLING between deployments,
/// and only onto the target groups production traffic reaches now: the
/// rolling deployment's tasks register there, and nothing moves traffic.
fn leave_blue_green(svc: &ServiceRecord, lbs: &[ecs::LoadBalancer]) -> ApiResult<()> {
    use wharf_core::service::blue_green;
    if blue_green::active(svc) {
        return Err(invalid(
            "A blue/green deployment is in progress: the strategy can change once it has finished.",
        ));
    }
    for (lb, serving) in lbs.iter().zip(blue_green::serving_groups(svc)) {
        if let Some(serving) = serving.filter(|s| lb.target_group_arn.as_ref() != Some(s)) {
            return Err(invalid(format!(
                "Production traffic goes to target group {serving}: a ROLLING service's targetGroupArn must be it."
            )));
        }
    }
    Ok(())
}

/// A blue/green load balancer's pair of target groups and its listener
/// rules: the alternate group exists, suits the same tasks and is free
/// for this load balancer; each rule (or NLB listener) exists and forwards
/// to one of the pair.
async fn check_blue_green_pair(
    c: &Control,
    x: &Ctx,
    owner: &str,
    primary: &str,
    group: &wharf_lb::records::TargetGroupRecord,
    adv: &ecs::AdvancedConfiguration,
    usage: &std::collections::BTreeMap<String, Vec<String>>,
) -> ApiResult<()> {
    let store = c.store.as_ref();
    let alternate = adv.alternate_target_group_arn.as_deref().ok_or_else(|| {
        invalid("advancedConfiguration.alternateTargetGroupArn must be specified.")
    })?;
    if alternate == primary {
        return Err(invalid(
            "alternateTargetGroupArn must differ from targetGroupArn.",
        ));
    }
    let alt = match arn::in_region(alternate, x.region()) {
        true => wharf_lb::registry::target_group(store, alternate)
            .await
            .map_err(crate::error::from_store)?,
        false => None,
    }
    .ok_or_else(|| {
        invalid(format!(
            "The target group with targetGroupArn {alternate} does not exist."
        ))
    })?;
    if alt.target_type != group.target_type || alt.protocol != group.protocol {
        return Err(invalid(format!(
            "The alternate target group {alternate} must have the target type and protocol of {primary}."
        )));
    }
    let production = adv.production_listener_rule.as_deref().ok_or_else(|| {
        invalid("advancedConfiguration.productionListenerRule must be specified.")
    })?;
    if adv.test_listener_rule.as_deref() == Some(production) {
        return Err(invalid(
            "testListenerRule must differ from productionListenerRule.",
        ));
    }
    let mut balancer: Option<String> = None;
    for (member, rule) in [
        ("productionListenerRule", Some(production)),
        ("testListenerRule", adv.test_listener_rule.as_deref()),
    ] {
        let Some(rule) = rule else { continue };
        let found = match arn::in_region(rule, x.region()) {
            true => wharf_lb::registry::forward_of(store, rule)
                .await
                .map_err(crate::error::from_store)?,
            false => None,
        };
        let Some((lb_arn, groups)) = found else {
            return Err(invalid(format!(
                "The {member} {rule} does not exist or does not forward to a target group."
            )));
        };
        if !groups.iter().all(|(g, _)| g == primary || g == alternate) {
            return Err(invalid(format!(
                "The {member} {rule} must forward to targetGroupArn or alternateTargetGroupArn only."
            )));
        }
        match &balancer {
            Some(b) if *b != lb_arn => {
                return Err(invalid(
                    "productionListenerRule and testListenerRule must belong to the same load balancer.",
                ))
            }
            _ => balancer = Some(lb_arn),
        }
    }
    // One service moves a rule's traffic: two would undo each other.
    let (services, _) = records::list::<ServiceRecord>(store, keys::SERVICES).await?;
    let mine = [Some(production), adv.test_listener_rule.as_deref()];
    for other in services.iter().map(|v| &v.value).filter(|s| {
        s.arn != owner && s.status != "INACTIVE" && s.deployment_config.blue_green.is_some()
    }) {
        let theirs = other
            .load_balancers
            .iter()
            .filter_map(|l| l.advanced_configuration.as_ref())
            .flat_map(|a| [&a.production_listener_rule, &a.test_listener_rule])
            .flatten();
        if let Some(rule) = theirs
            .into_iter()
            .find(|r| mine.contains(&Some(r.as_str())))
        {
            return Err(invalid(format!(
                "The listener rule {rule} already shifts the traffic of service {}.",
                other.arn
            )));
        }
    }
    let lb_arn = balancer.unwrap_or_default();
    for g in [primary, alternate] {
        if usage
            .get(g)
            .is_some_and(|lbs| lbs.iter().any(|l| *l != lb_arn))
        {
            return Err(invalid(format!(
                "The target group {g} is associated with another load balancer."
            )));
        }
    }
    Ok(())
}

pub async fn create(
    c: &Control,
    x: &Ctx,
    r: ecs::CreateServiceRequest,
) -> ApiResult<ecs::CreateServiceResponse> {
    let cluster = active_cluster(c, x, &cluster_name(x, r.cluster.as_deref())?).await?;
    if !arn::valid_name(&r.service_name) {
        return Err(invalid(
            "Service name may contain up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores.",
        ));
    }
    refuse_unsupported(&members_of!(r))?;
    let daemon = r.scheduling_strategy == Some(ecs::SchedulingStrategy::Daemon);
    if r.deployment_controller
        .as_ref()
        .is_some_and(|d| d.r#type == ecs::DeploymentControllerType::External)
    {
        return create_external(c, x, &cluster, r).await;
    }
    let Some(td_ref) = r.task_definition.as_deref() else {
        return Err(invalid("TaskDefinition must be specified."));
    };
    let td = taskdefs::resolve(c, x.region(), td_ref).await?.value;
    if td.definition.status != Some(ecs::TaskDefinitionStatus::Active) {
        return Err(invalid("TaskDefinition is inactive"));
    }
    let desired = r.desired_count.unwrap_or(0);
    if desired < 0 {
        return Err(invalid("desiredCount must be 0 or more."));
    }
    if daemon && r.desired_count.is_some() {
        return Err(invalid(
            "The DAEMON scheduling strategy does not support a desired count for services.",
        ));
    }
    let cfg = deployment_config(r.deployment_configuration.as_ref(), daemon, None)?;
    let constraints = r.placement_constraints.clone().unwrap_or_default();
    let strategies = r.placement_strategy.clone().unwrap_or_default();
    check_placement(&constraints, &strategies, daemon)?;
    super::tags::check_tags(r.tags.as_deref().unwrap_or_default())?;
    if r.health_check_grace_period_seconds.is_some_and(|g| g < 0) {
        return Err(invalid("healthCheckGracePeriodSeconds must be 0 or more."));
    }
    let load_balancers = r.load_balancers.clone().unwrap_or_default();
    let owner = x.scope.service(&cluster.value.name, &r.service_name);
    check_load_balancers(
        c,
        x,
        &load_balancers,
        &td.definition,
        cfg.blue_green.is_some().then_some(owner.as_str()),
    )
    .await?;
    let strategy = r.capacity_provider_strategy.as_deref();
    if daemon && strategy.is_some_and(|s| !s.is_empty()) {
        return Err(invalid(
            "Capacity provider strategies are not supported for services using the DAEMON scheduling strategy.",
        ));
    }
    // A DAEMON service runs on EC2 instances whatever the cluster's default.
    let (launch, providers) = if daemon {
        (r.launch_type.clone(), vec![])
    } else {
        super::capacity::resolve(&cluster.value, r.launch_type.as_ref(), strategy)?
    };
    let launch_type = super::tasks::launch_type_name(launch.as_ref())?;
    let name = cluster.value.name.clone();
    super::tasks::capacity_and_subnet(
        &cluster.value.key(),
        &launch_type,
        &td.definition,
        r.network_configuration.as_ref(),
    )?;
    let token = Token::of(
        CREATE_SERVICE,
        x.region(),
        &name,
        r.client_token.as_deref(),
        &r,
    )?;
    let mut rng = rand::rngs::StdRng::from_entropy();
    commit_new(c, x, &cluster, &r, token, |svc| {
        svc.desired_count = desired;
        svc.launch_type = launch_type.clone();
        svc.capacity_provider_strategy = wharf_core::capacity::to_wire(&providers);
        svc.scheduling_strategy = if daemon { "DAEMON" } else { "REPLICA" }.into();
        svc.deployment_config = cfg.clone();
        svc.placement_constraints = constraints.clone();
        svc.placement_strategy = strategies.clone();
        svc.load_balancers = load_balancers.clone();
        svc.network_configuration = r.network_configuration.clone();
        svc.deploy(
            x.now,
            td.definition
                .task_definition_arn
                .as_deref()
                .unwrap_or_default(),
            &mut rng,
        );
    })
    .await
}

/// A new service with what CreateService sets whatever its controller.
fn new_service(
    x: &Ctx,
    cluster: &wharf_core::records::ClusterRecord,
    r: &ecs::CreateServiceRequest,
) -> ServiceRecord {
    let mut svc = ServiceRecord::new(
        &r.service_name,
        &x.scope.service(&cluster.name, &r.service_name),
        &cluster.name,
        &cluster.arn,
        x.now,
    );
    svc.health_check_grace_period_seconds = r.health_check_grace_period_seconds;
    svc.created_by = Some(format!("arn:aws:iam::{}:root", x.scope.account));
    svc.tags = tags_from_wire(r.tags.as_deref().unwrap_or_default());
    svc.propagate_tags = r.propagate_tags.as_ref().map(|p| p.as_str().to_string());
    svc.enable_ecs_managed_tags = r.enable_ecs_managed_tags.unwrap_or(false);
    svc.enable_execute_command = r.enable_execute_command.unwrap_or(false);
    svc
}

/// Commits the service `make` builds (once per attempt) where none is, or
/// over an INACTIVE one, in the same transaction as the request's client
/// token: a retry with the token answers with the service it made.
async fn commit_new(
    c: &Control,
    x: &Ctx,
    cluster: &Versioned<wharf_core::records::ClusterRecord>,
    r: &ecs::CreateServiceRequest,
    token: Option<Token>,
    mut make: impl FnMut(&mut ServiceRecord),
) -> ApiResult<ecs::CreateServiceResponse> {
    let key = keys::service(&cluster.value.key(), &r.service_name);
    let lease = c.tokens.for_token(c, token.as_ref()).await?;
    for _ in 0..records::MAX_ATTEMPTS {
        if let Some(token) = &token {
            if token.recall::<()>(c, CREATE_SERVICE).await?.is_some() {
                let svc = records::get::<ServiceRecord>(c.store.as_ref(), &key)
                    .await?
                    .ok_or_else(not_found)?;
                return Ok(ecs::CreateServiceResponse {
                    service: Some(wire::service(&svc.value, true)),
                });
            }
        }
        let existing: Option<Versioned<ServiceRecord>> =
            records::get(c.store.as_ref(), &key).await?;
        if existing
            .as_ref()
            .is_some_and(|v| v.value.status != "INACTIVE")
        {
            return Err(invalid("Creation of service was not idempotent."));
        }
        let mut svc = new_service(x, &cluster.value, r);
        make(&mut svc);
        let mut txn = Txn::new().when(cluster.unchanged());
        txn = match &existing {
            Some(v) => txn.when(v.unchanged()),
            None => txn.when(wharf_store::Compare::NotExists(key.clone())),
        };
        if let (Some(token), Some(lease)) = (&token, lease) {
            txn = txn
                .when(wharf_store::Compare::NotExists(token.key().to_string()))
                .then(token.remember(lease, vec![svc.arn.clone()], ()));
        }
        if commit(c.store.as_ref(), txn.then(records::put(&key, &svc))).await? {
            return Ok(ecs::CreateServiceResponse {
                service: Some(wire::service(&svc, true)),
            });
        }
    }
    Err(records::contention())
}

/// CreateService with the EXTERNAL deployment controller: the service
/// holds a desired count and a deployment configuration; what runs comes
/// from the task sets made for it (CreateTaskSet), so the members that
/// belong to a task set are refused here.
async fn create_external(
    c: &Control,
    x: &Ctx,
    cluster: &Versioned<wharf_core::records::ClusterRecord>,
    r: ecs::CreateServiceRequest,
) -> ApiResult<ecs::CreateServiceResponse> {
    for (given, member) in [
        (r.task_definition.is_some(), "taskDefinition"),
        (r.launch_type.is_some(), "launchType"),
        (
            r.capacity_provider_strategy
                .as_ref()
                .is_some_and(|s| !s.is_empty()),
            "capacityProviderStrategy",
        ),
        (
            r.load_balancers.as_ref().is_some_and(|l| !l.is_empty()),
            "loadBalancers",
        ),
        (r.network_configuration.is_some(), "networkConfiguration"),
        (r.platform_version.is_some(), "platformVersion"),
        (
            r.scheduling_strategy == Some(ecs::SchedulingStrategy::Daemon),
            "schedulingStrategy DAEMON",
        ),
    ] {
        if given {
            return Err(invalid(format!(
                "{member} cannot be specified for a service with the EXTERNAL deployment controller: give it to CreateTaskSet."
            )));
        }
    }
    let desired = r.desired_count.unwrap_or(0);
    if desired < 0 {
        return Err(invalid("desiredCount must be 0 or more."));
    }
    let cfg = deployment_config(r.deployment_configuration.as_ref(), false, None)?;
    if cfg.blue_green.is_some() {
        return Err(invalid(
            "The BLUE_GREEN deployment strategy needs the ECS deployment controller.",
        ));
    }
    let constraints = r.placement_constraints.clone().unwrap_or_default();
    let strategies = r.placement_strategy.clone().unwrap_or_default();
    check_placement(&constraints, &strategies, false)?;
    super::tags::check_tags(r.tags.as_deref().unwrap_or_default())?;
    if r.health_check_grace_period_seconds.is_some_and(|g| g < 0) {
        return Err(invalid("healthCheckGracePeriodSeconds must be 0 or more."));
    }
    let name = cluster.value.name.clone();
    let token = Token::of(
        CREATE_SERVICE,
        x.region(),
        &name,
        r.client_token.as_deref(),
        &r,
    )?;
    commit_new(c, x, cluster, &r, token, |svc| {
        svc.external = true;
        svc.desired_count = desired;
        svc.deployment_config = cfg.clone();
        svc.placement_constraints = constraints.clone();
        svc.placement_strategy = strategies.clone();
    })
    .await
}

/// What UpdateService may not change on an EXTERNAL service: its task sets'.
fn refuse_for_external(r: &ecs::UpdateServiceRequest) -> ApiResult<()> {
    for (given, member) in [
        (r.task_definition.is_some(), "taskDefinition"),
        (
            r.capacity_provider_strategy.is_some(),
            "capacityProviderStrategy",
        ),
        (r.load_balancers.is_some(), "loadBalancers"),
        (r.network_configuration.is_some(), "networkConfiguration"),
        (r.platform_version.is_some(), "platformVersion"),
        (r.force_new_deployment == Some(true), "forceNewDeployment"),
    ] {
        if given {
            return Err(invalid(format!(
                "{member} cannot be updated on a service with the EXTERNAL deployment controller: make a new task set (CreateTaskSet)."
            )));
        }
    }
    Ok(())
}

pub async fn update(
    c: &Control,
    x: &Ctx,
    r: ecs::UpdateServiceRequest,
) -> ApiResult<ecs::UpdateServiceResponse> {
    refuse_unsupported(&members_of!(r))?;
    let td = match r.task_definition.as_deref() {
        Some(given) => {
            let td = taskdefs::resolve(c, x.region(), given).await?.value;
            if td.definition.status != Some(ecs::TaskDefinitionStatus::Active) {
                return Err(invalid("TaskDefinition is inactive"));
            }
            Some(td)
        }
        None => None,
    };
    let mut rng = rand::rngs::StdRng::from_entropy();
    for _ in 0..records::MAX_ATTEMPTS {
        let mut v = existing(c, x, r.cluster.as_deref(), &r.service).await?;
        if v.value.status != "ACTIVE" {
            return Err(not_active());
        }
        let svc = &mut v.value;
        if r.deployment_controller
            .as_ref()
            .is_some_and(|d| (d.r#type == ecs::DeploymentControllerType::External) != svc.external)
        {
            return Err(unsupported("Changing a service's deployment controller"));
        }
        if svc.external {
            refuse_for_external(&r)?;
        }
        let daemon = svc.scheduling_strategy == "DAEMON";
        if let Some(n) = r.desired_count {
            if n < 0 {
                return Err(invalid("desiredCount must be 0 or more."));
            }
            if daemon {
                return Err(invalid(
                    "The DAEMON scheduling strategy does not support a desired count for services.",
                ));
            }
            svc.desired_count = n;
            svc.steady = false;
        }
        let was_blue_green = svc.deployment_config.blue_green.is_some();
        if r.deployment_configuration.is_some() {
            svc.deployment_config = deployment_config(
                r.deployment_configuration.as_ref(),
                daemon,
                Some(&svc.deployment_config),
            )?;
        }
        let blue_green = svc.deployment_config.blue_green.is_some();
        if blue_green && svc.external {
            return Err(invalid(
                "The BLUE_GREEN deployment strategy needs the ECS deployment controller.",
            ));
        }
        let mut redeploy = r.force_new_deployment == Some(true);
        // Load balancers are checked against the revision the next
        // deployment runs, and again when the strategy changes.
        let lbs = r.load_balancers.as_ref();
        if lbs.is_some() || td.is_some() || blue_green != was_blue_green {
            let def = match &td {
                Some(td) => td.definition.clone(),
                None => {
                    taskdefs::resolve(c, x.region(), &svc.task_definition)
                        .await?
                        .value
                        .definition
                }
            };
            let lbs = lbs.unwrap_or(&svc.load_balancers);
            let owner = svc.arn.clone();
            check_load_balancers(c, x, lbs, &def, blue_green.then_some(owner.as_str())).await?;
            if was_blue_green && !blue_green {
                leave_blue_green(svc, lbs)?;
            }
            redeploy |= *lbs != svc.load_balancers;
            svc.load_balancers = lbs.clone();
        }
        if let Some(g) = r.health_check_grace_period_seconds {
            if g < 0 {
                return Err(invalid("healthCheckGracePeriodSeconds must be 0 or more."));
            }
            svc.health_check_grace_period_seconds = Some(g);
        }
        if let Some(cs) = &r.placement_constraints {
            check_placement(cs, &svc.placement_strategy, daemon)?;
            redeploy |= *cs != svc.placement_constraints;
            svc.placement_constraints = cs.clone();
        }
        if let Some(ss) = &r.placement_strategy {
            check_placement(&svc.placement_constraints, ss, daemon)?;
            redeploy |= *ss != svc.placement_strategy;
            svc.placement_strategy = ss.clone();
        }
        if let Some(given) = &r.capacity_provider_strategy {
            if daemon {
                return Err(invalid(
                    "Capacity provider strategies are not supported for services using the DAEMON scheduling strategy.",
                ));
            }
            // An empty strategy asks for the cluster's default.
            let cluster = active_cluster(c, x, &svc.cluster).await?;
            let (launch, providers) = super::capacity::resolve(&cluster.value, None, Some(given))?;
            if providers.is_empty() {
                return Err(invalid(
                    "The cluster has no default capacity provider strategy: specify a capacity provider strategy.",
                ));
            }
            let strategy = wharf_core::capacity::to_wire(&providers);
            redeploy |= strategy != svc.capacity_provider_strategy;
            svc.capacity_provider_strategy = strategy;
            svc.launch_type = super::tasks::launch_type_name(launch.as_ref())?;
        }
        if let Some(n) = &r.network_configuration {
            redeploy |= Some(n) != svc.network_configuration.as_ref();
            svc.network_configuration = Some(n.clone());
        }
        if let Some(e) = r.enable_execute_command {
            svc.enable_execute_command = e;
        }
        if let Some(m) = r.enable_ecs_managed_tags {
            svc.enable_ecs_managed_tags = m;
        }
        if let Some(p) = &r.propagate_tags {
            svc.propagate_tags = Some(p.as_str().to_string());
        }
        let target = match &td {
            Some(td) => td
                .definition
                .task_definition_arn
                .clone()
                .unwrap_or_default(),
            None => svc.task_definition.clone(),
        };
        redeploy |= target != svc.task_definition;
        // An EXTERNAL service's task sets are its deployments: placement
        // changes apply to the tasks they start next.
        if redeploy && !svc.external {
            // The revision being deployed must suit the service's network.
            let def = match &td {
                Some(td) => td.definition.clone(),
                None => {
                    taskdefs::resolve(c, x.region(), &target)
                        .await?
                        .value
                        .definition
                }
            };
            super::tasks::capacity_and_subnet(
                &svc.cluster_key(),
                &svc.launch_type,
                &def,
                svc.network_configuration.as_ref(),
            )?;
            svc.deploy(x.now, &target, &mut rng);
        }
        svc.version += 1;
        if commit(
            c.store.as_ref(),
            Txn::new().when(v.unchanged()).then(v.put()),
        )
        .await?
        {
            return Ok(ecs::UpdateServiceResponse {
                service: Some(wire::service(&v.value, true)),
            });
        }
    }
    Err(records::contention())
}

pub async fn delete(
    c: &Control,
    x: &Ctx,
    r: ecs::DeleteServiceRequest,
) -> ApiResult<ecs::DeleteServiceResponse> {
    for _ in 0..records::MAX_ATTEMPTS {
        let mut v = existing(c, x, r.cluster.as_deref(), &r.service).await?;
        if v.value.status == "INACTIVE" {
            return Err(not_active());
        }
        let svc = &mut v.value;
        if svc.status == "ACTIVE" {
            if svc.scheduling_strategy == "REPLICA"
                && svc.desired_count > 0
                && r.force != Some(true)
            {
                return Err(invalid(
                    "The service cannot be stopped while it is scaled above 0.",
                ));
            }
            svc.status = "DRAINING".into();
            svc.desired_count = 0;
            svc.steady = false;
            svc.version += 1;
            for d in &mut svc.deployments {
                d.updated_at = x.now;
            }
        }
        if commit(
            c.store.as_ref(),
            Txn::new().when(v.unchanged()).then(v.put()),
        )
        .await?
        {
            return Ok(ecs::DeleteServiceResponse {
                service: Some(wire::service(&v.value, true)),
            });
        }
    }
    Err(records::contention())
}

pub async fn describe(
    c: &Control,
    x: &Ctx,
    r: ecs::DescribeServicesRequest,
) -> ApiResult<ecs::DescribeServicesResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    active_cluster(c, x, &name).await?;
    if r.services.is_empty() {
        return Err(invalid("Services cannot be empty."));
    }
    if r.services.len() > 10 {
        return Err(invalid("Services cannot contain more than 10 elements."));
    }
    let with_tags = r
        .include
        .iter()
        .flatten()
        .any(|f| *f == ecs::ServiceField::Tags);
    let mut services = vec![];
    let mut failures = vec![];
    for given in &r.services {
        match find(c, x, Some(&name), given).await? {
            (cluster, Some(v)) if cluster == name => {
                services.push(wire::service(&v.value, with_tags))
            }
            _ => failures.push(ecs::Failure {
                arn: Some(if given.starts_with("arn:") {
                    given.clone()
                } else {
                    x.scope.service(&name, given)
                }),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
    Ok(ecs::DescribeServicesResponse {
        services: Some(services),
        failures: Some(failures),
    })
}

pub async fn list(
    c: &Control,
    x: &Ctx,
    r: ecs::ListServicesRequest,
) -> ApiResult<ecs::ListServicesResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    active_cluster(c, x, &name).await?;
    let size = wire::page_size(r.max_results, 10, 100)?;
    let (all, _) =
        records::list::<ServiceRecord>(c.store.as_ref(), &keys::services(&x.cluster_key(&name)))
            .await?;
    let items = all
        .into_iter()
        .map(|v| v.value)
        .filter(|s| s.status != "INACTIVE")
        .filter(|s| {
            r.launch_type
                .as_ref()
                .is_none_or(|l| l.as_str() == s.launch_type)
        })
        .filter(|s| {
            r.scheduling_strategy
                .as_ref()
                .is_none_or(|l| l.as_str() == s.scheduling_strategy)
        })
        // Every Wharf service is the customer's: none is managed by ECS.
        .filter(|_| r.resource_management_type != Some(ecs::ResourceManagementType::Ecs))
        .map(|s| (s.name.clone(), s.arn))
        .collect();
    let (arns, next) = paginate(items, r.next_token.as_deref(), size)?;
    Ok(ecs::ListServicesResponse {
        service_arns: Some(arns),
        next_token: next,
    })
}

pub async fn list_deployments(
    c: &Control,
    x: &Ctx,
    r: ecs::ListServiceDeploymentsRequest,
) -> ApiResult<ecs::ListServiceDeploymentsResponse> {
    let size = wire::page_size(r.max_results, 20, 100)?;
    let v = existing(c, x, r.cluster.as_deref(), &r.service).await?;
    let after = r.created_at.as_ref().and_then(|c| c.after);
    let before = r.created_at.as_ref().and_then(|c| c.before);
    let items = v
        .value
        .history
        .iter()
        .filter(|h| {
            r.status
                .as_ref()
                .filter(|s| !s.is_empty())
                .is_none_or(|s| s.iter().any(|s| s.as_str() == h.status))
        })
        .filter(|h| {
            let at = wharf_core::clock::to_epoch_seconds(h.created_at);
            after.is_none_or(|a| at >= a) && before.is_none_or(|b| at <= b)
        })
        // Newest first, as ECS lists them.
        .map(|h| {
            (
                format!("{:016}/{}", i64::MAX - h.created_at, h.id),
                wire::service_deployment(&x.scope, &v.value, h).0,
            )
        })
        .collect();
    let (deployments, next) = paginate(items, r.next_token.as_deref(), size)?;
    Ok(ecs::ListServiceDeploymentsResponse {
        service_deployments: Some(deployments),
        next_token: next,
    })
}

pub async fn describe_deployments(
    c: &Control,
    x: &Ctx,
    r: ecs::DescribeServiceDeploymentsRequest,
) -> ApiResult<ecs::DescribeServiceDeploymentsResponse> {
    if r.service_deployment_arns.is_empty() || r.service_deployment_arns.len() > 20 {
        return Err(invalid(
            "serviceDeploymentArns must name between 1 and 20 service deployments.",
        ));
    }
    let mut out = vec![];
    let mut failures = vec![];
    for given in &r.service_deployment_arns {
        let (cluster, service, id) = arn::service_deployment(given).map_err(from_core)?;
        let key = keys::service(&x.cluster_key(&cluster), &service);
        let v: Option<Versioned<ServiceRecord>> = match arn::in_region(given, x.region()) {
            true => records::get(c.store.as_ref(), &key).await?,
            false => None,
        };
        match v
            .as_ref()
            .and_then(|v| v.value.history.iter().find(|h| h.id == id).map(|h| (v, h)))
        {
            Some((v, h)) => out.push(wire::service_deployment(&x.scope, &v.value, h).1),
            None => failures.push(ecs::Failure {
                arn: Some(given.clone()),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
    Ok(ecs::DescribeServiceDeploymentsResponse {
        service_deployments: Some(out),
        failures: Some(failures),
    })
}

pub async fn describe_revisions(
    c: &Control,
    x: &Ctx,
    r: ecs::DescribeServiceRevisionsRequest,
) -> ApiResult<ecs::DescribeServiceRevisionsResponse> {
    if r.service_revision_arns.is_empty() || r.service_revision_arns.len() > 20 {
        return Err(invalid(
            "serviceRevisionArns must name between 1 and 20 service revisions.",
        ));
    }
    let mut out = vec![];
    let mut failures = vec![];
    for given in &r.service_revision_arns {
        let (cluster, service, id) = arn::service_revision(given).map_err(from_core)?;
        let key = keys::service(&x.cluster_key(&cluster), &service);
        let v: Option<Versioned<ServiceRecord>> = match arn::in_region(given, x.region()) {
            true => records::get(c.store.as_ref(), &key).await?,
            false => None,
        };
        // A revision is known while its service deployment is remembered.
        let Some((v, h)) = v
            .as_ref()
            .and_then(|v| v.value.history.iter().find(|h| h.id == id).map(|h| (v, h)))
        else {
            failures.push(ecs::Failure {
                arn: Some(given.clone()),
                reason: Some("MISSING".into()),
                detail: None,
            });
            continue;
        };
        let images = match taskdefs::resolve(c, x.region(), &h.task_definition).await {
            Ok(td) => td
                .value
                .definition
                .container_definitions
                .iter()
                .flatten()
                .map(|d| ecs::ContainerImage {
                    container_name: d.name.clone(),
                    image: d.image.clone(),
                    image_digest: None,
                })
                .collect(),
            // Deleted since: the revision still says which it ran.
            Err(_) => vec![],
        };
        out.push(wire::service_revision(&x.scope, &v.value, h, images));
    }
    Ok(ecs::DescribeServiceRevisionsResponse {
        service_revisions: Some(out),
        failures: Some(failures),
    })
}

fn deployment_not_found() -> AwsError {
    AwsError::client(
        "ServiceDeploymentNotFoundException",
        "The service deployment does not exist.",
    )
}

/// The service a service deployment ARN names (in the request's region),
/// the deployment's id and its status.
async fn service_deployment(
    c: &Control,
    x: &Ctx,
    given: &str,
) -> ApiResult<(Versioned<ServiceRecord>, String, String)> {
    let (cluster, service, id) = arn::service_deployment(given).map_err(from_core)?;
    if !arn::in_region(given, x.region()) {
        // Another region's: no service of this region has it.
        return Err(deployment_not_found());
    }
    let key = keys::service(&x.cluster_key(&cluster), &service);
    let v = records::get::<ServiceRecord>(c.store.as_ref(), &key)
        .await?
        .ok_or_else(deployment_not_found)?;
    let status = v
        .value
        .history
        .iter()
        .find(|h| h.id == id)
        .map(|h| h.status.clone())
        .ok_or_else(deployment_not_found)?;
    Ok((v, id, status))
}

/// ContinueServiceDeployment: resolves a PAUSE hook of a blue/green
/// deployment in progress, continuing it or rolling it back.
pub async fn continue_deployment(
    c: &Control,
    x: &Ctx,
    r: ecs::ContinueServiceDeploymentRequest,
) -> ApiResult<ecs::ContinueServiceDeploymentResponse> {
    use wharf_core::service::blue_green::{continue_hook, ContinueError};
    if let Some(a) = r.action.as_ref().filter(|a| !a.is_known()) {
        return Err(invalid(format!(
            "action {} is not one of CONTINUE, ROLLBACK.",
            a.as_str()
        )));
    }
    let roll_back = r.action == Some(ecs::DeploymentLifecycleHookAction::Rollback);
    let mut rng = rand::rngs::StdRng::from_entropy();
    change_deployment(c, x, &r.service_deployment_arn, |svc, status| {
        if status != "IN_PROGRESS" {
            return Err(invalid(format!(
                "The service deployment is {status}; only a deployment IN_PROGRESS can be continued."
            )));
        }
        continue_hook(svc, &r.hook_id, roll_back, x.now, &mut rng).map_err(|e| match e {
            ContinueError::NoSuchHook => invalid(format!(
                "The service deployment has no lifecycle hook {}.",
                r.hook_id
            )),
            ContinueError::NotAwaiting => invalid(format!(
                "The lifecycle hook {} is not in AWAITING_ACTION status.",
                r.hook_id
            )),
            ContinueError::NothingToRollBackTo => {
                invalid("There is no previous service revision to roll back to.")
            }
        })
    })
    .await?;
    Ok(ecs::ContinueServiceDeploymentResponse {
        service_deployment_arn: Some(r.service_deployment_arn.clone()),
    })
}

/// Changes the service of a service deployment with `change`, given the
/// deployment's status (IN_PROGRESS only while it is the PRIMARY's), and
/// commits it with compare-and-swap.
async fn change_deployment(
    c: &Control,
    x: &Ctx,
    arn: &str,
    mut change: impl FnMut(&mut ServiceRecord, &str) -> ApiResult<()>,
) -> ApiResult<()> {
    for _ in 0..records::MAX_ATTEMPTS {
        let (mut v, id, mut status) = service_deployment(c, x, arn).await?;
        if v.value.deployments[0].service_deployment != id && status == "IN_PROGRESS" {
            status = "SUPERSEDED".into();
        }
        change(&mut v.value, &status)?;
        v.value.version += 1;
        if commit(
            c.store.as_ref(),
            Txn::new().when(v.unchanged()).then(v.put()),
        )
        .await?
        {
            return Ok(());
        }
    }
    Err(records::contention())
}

pub async fn stop_deployment(
    c: &Control,
    x: &Ctx,
    r: ecs::StopServiceDeploymentRequest,
) -> ApiResult<ecs::StopServiceDeploymentResponse> {
    if r.stop_type
        .as_ref()
        .is_some_and(|t| *t != ecs::StopServiceDeploymentStopType::Rollback)
    {
        return Err(invalid("The only supported stopType is ROLLBACK."));
    }
    let mut rng = rand::rngs::StdRng::from_entropy();
    change_deployment(c, x, &r.service_deployment_arn, |svc, status| {
        if status != "IN_PROGRESS" {
            return Err(AwsError::client(
                "ConflictException",
                format!(
                    "The service deployment is {status} and can't be stopped; only an IN_PROGRESS one can."
                ),
            ));
        }
        match svc.rollback(
            x.now,
            "Service deployment rolled back because of a stop request.",
            &mut rng,
        ) {
            true => Ok(()),
            false => Err(invalid(
                "There is no completed service revision to roll back to.",
            )),
        }
    })
    .await?;
    Ok(ecs::StopServiceDeploymentResponse {
        service_deployment_arn: Some(r.service_deployment_arn.clone()),
    })
}
