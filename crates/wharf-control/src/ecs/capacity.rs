//! Capacity providers: the built-in FARGATE and FARGATE_SPOT (the managed
//! capacity), and custom ones, which in Wharf name a group of container
//! instances (agents join one with `--capacity-provider NAME`). Clusters
//! associate providers and may carry a default strategy; RunTask and
//! services place by a strategy (`tasks::place`, `wharf_core::capacity`).

use super::{active_cluster, cluster_name};
use crate::error::{client, from_core, invalid, unsupported, ApiResult};
use crate::records::{self, commit, Versioned};
use crate::wire::{self, paginate};
use crate::{Control, Ctx};
use std::collections::BTreeMap;
use wharf_core::capacity::{self, is_fargate, Item};
use wharf_core::records::{
    keys, tags_from_wire, tags_to_wire, CapacityProviderRecord, ClusterKey, ClusterRecord,
    TaskRecord,
};
use wharf_core::service::ServiceRecord;
use wharf_model::ecs;
use wharf_protocol::AwsError;
use wharf_store::{Compare, Txn};

fn does_not_exist() -> AwsError {
    invalid("The specified capacity provider does not exist. Specify a valid name or ARN and try again.")
}

/// Managed scaling, termination protection and draining as ECS shows them
/// with their defaults filled in. Scaling (and the termination protection
/// that needs it) is refused: there is no Auto Scaling group to scale.
fn settings(
    scaling: Option<&ecs::ManagedScaling>,
    protection: Option<&ecs::ManagedTerminationProtection>,
    draining: Option<&ecs::ManagedDraining>,
    current: Option<&ecs::AutoScalingGroupProvider>,
) -> ApiResult<(
    ecs::ManagedScaling,
    ecs::ManagedTerminationProtection,
    ecs::ManagedDraining,
)> {
    if scaling.is_some_and(|s| s.status == Some(ecs::ManagedScalingStatus::Enabled)) {
        return Err(unsupported(
            "managedScaling ENABLED: a Wharf capacity provider's instances are the agents that join it (`wharf agent --capacity-provider NAME`); there is no Auto Scaling group to scale",
        ));
    }
    if protection == Some(&ecs::ManagedTerminationProtection::Enabled) {
        return Err(invalid(
            "The managed termination protection setting for the capacity provider is invalid. To enable managed termination protection for a capacity provider, managed scaling must be turned on.",
        ));
    }
    let scaling = match (scaling, current.and_then(|c| c.managed_scaling.as_ref())) {
        (Some(s), _) => {
            for (name, v, range) in [
                ("targetCapacity", s.target_capacity, 1..=100),
                (
                    "minimumScalingStepSize",
                    s.minimum_scaling_step_size,
                    1..=10_000,
                ),
                (
                    "maximumScalingStepSize",
                    s.maximum_scaling_step_size,
                    1..=10_000,
                ),
                ("instanceWarmupPeriod", s.instance_warmup_period, 0..=10_000),
            ] {
                if v.is_some_and(|v| !range.contains(&v)) {
                    return Err(invalid(format!(
                        "managedScaling.{name} must be between {} and {}.",
                        range.start(),
                        range.end()
                    )));
                }
            }
            ecs::ManagedScaling {
                status: Some(ecs::ManagedScalingStatus::Disabled),
                target_capacity: s.target_capacity.or(Some(100)),
                minimum_scaling_step_size: s.minimum_scaling_step_size.or(Some(1)),
                maximum_scaling_step_size: s.maximum_scaling_step_size.or(Some(10_000)),
                instance_warmup_period: s.instance_warmup_period.or(Some(300)),
            }
        }
        (None, Some(kept)) => kept.clone(),
        (None, None) => ecs::ManagedScaling {
            status: Some(ecs::ManagedScalingStatus::Disabled),
            target_capacity: Some(100),
            minimum_scaling_step_size: Some(1),
            maximum_scaling_step_size: Some(10_000),
            instance_warmup_period: Some(300),
        },
    };
    let draining = draining
        .cloned()
        .or_else(|| current.and_then(|c| c.managed_draining.clone()))
        .unwrap_or(ecs::ManagedDraining::Enabled);
    Ok((
        scaling,
        ecs::ManagedTerminationProtection::Disabled,
        draining,
    ))
}

fn builtin(x: &Ctx, name: &str) -> ecs::CapacityProvider {
    ecs::CapacityProvider {
        capacity_provider_arn: Some(x.scope.capacity_provider(name)),
        name: Some(name.into()),
        status: Some(ecs::CapacityProviderStatus::Active),
        r#type: Some(ecs::CapacityProviderType::from(name)),
        tags: Some(vec![]),
        ..Default::default()
    }
}

fn to_wire(p: &CapacityProviderRecord, with_tags: bool) -> ecs::CapacityProvider {
    ecs::CapacityProvider {
        capacity_provider_arn: Some(p.arn.clone()),
        name: Some(p.name.clone()),
        status: Some(ecs::CapacityProviderStatus::from(p.status.as_str())),
        auto_scaling_group_provider: Some(p.auto_scaling_group.clone()),
        update_status: p
            .update_status
            .as_deref()
            .map(ecs::CapacityProviderUpdateStatus::from),
        tags: Some(if with_tags {
            tags_to_wire(&p.tags)
        } else {
            vec![]
        }),
        r#type: Some(ecs::CapacityProviderType::Ec2Autoscaling),
        ..Default::default()
    }
}

pub async fn create(
    c: &Control,
    x: &Ctx,
    r: ecs::CreateCapacityProviderRequest,
) -> ApiResult<ecs::CreateCapacityProviderResponse> {
    capacity::check_name(&r.name).map_err(from_core)?;
    if r.managed_instances_provider.is_some() {
        return Err(unsupported(
            "managedInstancesProvider (Amazon ECS Managed Instances; Wharf's managed capacity is FARGATE)",
        ));
    }
    if r.cluster.is_some() {
        return Err(invalid(
            "cluster is only for Amazon ECS Managed Instances capacity providers; associate this one with PutClusterCapacityProviders.",
        ));
    }
    let Some(asg) = r.auto_scaling_group_provider.as_ref() else {
        return Err(invalid(
            "autoScalingGroupProvider must be specified for a capacity provider.",
        ));
    };
    if asg.auto_scaling_group_arn.is_empty() {
        return Err(invalid("autoScalingGroupArn can not be empty."));
    }
    super::tags::check_tags(r.tags.as_deref().unwrap_or_default())?;
    let (scaling, protection, draining) = settings(
        asg.managed_scaling.as_ref(),
        asg.managed_termination_protection.as_ref(),
        asg.managed_draining.as_ref(),
        None,
    )?;
    let key = keys::capacity_provider(x.region(), &r.name);
    let record = CapacityProviderRecord {
        name: r.name.clone(),
        arn: x.scope.capacity_provider(&r.name),
        status: "ACTIVE".into(),
        auto_scaling_group: ecs::AutoScalingGroupProvider {
            auto_scaling_group_arn: asg.auto_scaling_group_arn.clone(),
            managed_scaling: Some(scaling),
            managed_termination_protection: Some(protection),
            managed_draining: Some(draining),
        },
        update_status: None,
        cluster: None,
        tags: tags_from_wire(r.tags.as_deref().unwrap_or_default()),
        created_at: x.now,
    };
    for _ in 0..records::MAX_ATTEMPTS {
        let existing = records::get::<CapacityProviderRecord>(c.store.as_ref(), &key).await?;
        // A deleted provider's name may be taken again.
        let cmp = match &existing {
            Some(v) if v.value.status == "ACTIVE" => {
                return Err(client(
                    "The specified capacity provider already exists. To change the configuration of an existing capacity provider, update the capacity provider.",
                ))
            }
            Some(v) => v.unchanged(),
            None => Compare::NotExists(key.clone()),
        };
        let txn = Txn::new().when(cmp).then(records::put(&key, &record));
        if commit(c.store.as_ref(), txn).await? {
            return Ok(ecs::CreateCapacityProviderResponse {
                capacity_provider: Some(to_wire(&record, true)),
            });
        }
    }
    Err(records::contention())
}

/// A custom provider by name or ARN; built-in names are the caller's to handle.
async fn find(
    c: &Control,
    x: &Ctx,
    given: &str,
) -> ApiResult<Option<Versioned<CapacityProviderRecord>>> {
    let name = wharf_core::arn::capacity_provider_name(given).map_err(from_core)?;
    if !wharf_core::arn::in_region(given, x.region()) {
        return Ok(None);
    }
    records::get(
        c.store.as_ref(),
        &keys::capacity_provider(x.region(), &name),
    )
    .await
}

pub async fn describe(
    c: &Control,
    x: &Ctx,
    r: ecs::DescribeCapacityProvidersRequest,
) -> ApiResult<ecs::DescribeCapacityProvidersResponse> {
    let size = wire::page_size(r.max_results, 10, 10)?;
    let with_tags = r
        .include
        .iter()
        .flatten()
        .any(|f| *f == ecs::CapacityProviderField::Tags);
    let in_cluster = match r.cluster.as_deref() {
        Some(given) => Some(
            active_cluster(c, x, &cluster_name(x, Some(given))?)
                .await?
                .value
                .capacity_providers,
        ),
        None => None,
    };
    let (all, _) = records::list::<CapacityProviderRecord>(
        c.store.as_ref(),
        &keys::capacity_providers(x.region()),
    )
    .await?;
    let mut found: Vec<(String, ecs::CapacityProvider)> = vec![];
    let mut failures = vec![];
    match r.capacity_providers.as_deref().filter(|v| !v.is_empty()) {
        Some(names) => {
            if names.len() > 100 {
                return Err(invalid(
                    "Up to 100 capacity providers can be described at a time.",
                ));
            }
            for given in names {
                let name = wharf_core::arn::capacity_provider_name(given).map_err(from_core)?;
                let p = if !wharf_core::arn::in_region(given, x.region()) {
                    None
                } else if is_fargate(&name) {
                    Some(builtin(x, &name))
                } else {
                    all.iter()
                        .find(|v| v.value.name == name)
                        .map(|v| to_wire(&v.value, with_tags))
                };
                match p {
                    Some(p) => found.push((name, p)),
                    None => failures.push(ecs::Failure {
                        arn: Some(x.scope.capacity_provider(&name)),
                        reason: Some("MISSING".into()),
                        detail: None,
                    }),
                }
            }
        }
        None => {
            for name in [capacity::FARGATE, capacity::FARGATE_SPOT] {
                found.push((name.into(), builtin(x, name)));
            }
            for v in all.iter().filter(|v| v.value.status == "ACTIVE") {
                found.push((v.value.name.clone(), to_wire(&v.value, with_tags)));
            }
        }
    }
    if let Some(names) = in_cluster {
        found.retain(|(n, _)| names.contains(n));
    }
    // In the order asked for (or built-ins first, then by name): the page
    // token is the position, as sort keys would reorder the answer.
    let items = found
        .into_iter()
        .enumerate()
        .map(|(k, (_, p))| (format!("{k:06}"), p))
        .collect();
    let (page, next) = paginate(items, r.next_token.as_deref(), size)?;
    Ok(ecs::DescribeCapacityProvidersResponse {
        capacity_providers: Some(page),
        failures: Some(failures),
        next_token: next,
    })
}

pub async fn update(
    c: &Control,
    x: &Ctx,
    r: ecs::UpdateCapacityProviderRequest,
) -> ApiResult<ecs::UpdateCapacityProviderResponse> {
    if r.managed_instances_provider.is_some() {
        return Err(unsupported(
            "managedInstancesProvider (Amazon ECS Managed Instances)",
        ));
    }
    if r.cluster.is_some() {
        return Err(invalid(
            "cluster is only for Amazon ECS Managed Instances capacity providers.",
        ));
    }
    if is_fargate(&r.name) {
        return Err(client(
            "The FARGATE and FARGATE_SPOT capacity providers are reserved and cannot be updated.",
        ));
    }
    let Some(change) = r.auto_scaling_group_provider.as_ref() else {
        return Err(invalid(
            "autoScalingGroupProvider must be specified to update a capacity provider.",
        ));
    };
    for _ in 0..records::MAX_ATTEMPTS {
        let Some(mut v) = find(c, x, &r.name)
            .await?
            .filter(|v| v.value.status == "ACTIVE")
        else {
            return Err(does_not_exist());
        };
        let (scaling, protection, draining) = settings(
            change.managed_scaling.as_ref(),
            change.managed_termination_protection.as_ref(),
            change.managed_draining.as_ref(),
            Some(&v.value.auto_scaling_group),
        )?;
        let asg = &mut v.value.auto_scaling_group;
        asg.managed_scaling = Some(scaling);
        asg.managed_termination_protection = Some(protection);
        asg.managed_draining = Some(draining);
        v.value.update_status = Some("UPDATE_COMPLETE".into());
        if commit(
            c.store.as_ref(),
            Txn::new().when(v.unchanged()).then(v.put()),
        )
        .await?
        {
            return Ok(ecs::UpdateCapacityProviderResponse {
                capacity_provider: Some(to_wire(&v.value, true)),
            });
        }
    }
    Err(records::contention())
}

pub async fn delete(
    c: &Control,
    x: &Ctx,
    r: ecs::DeleteCapacityProviderRequest,
) -> ApiResult<ecs::DeleteCapacityProviderResponse> {
    if r.cluster.is_some() {
        return Err(invalid(
            "cluster is only for Amazon ECS Managed Instances capacity providers.",
        ));
    }
    let name = wharf_core::arn::capacity_provider_name(&r.capacity_provider).map_err(from_core)?;
    if is_fargate(&name) {
        return Err(client(
            "The FARGATE and FARGATE_SPOT capacity providers are reserved and cannot be deleted. Disassociate them from a cluster with PutClusterCapacityProviders.",
        ));
    }
    for _ in 0..records::MAX_ATTEMPTS {
        let Some(mut v) = find(c, x, &name)
            .await?
            .filter(|v| v.value.status == "ACTIVE")
        else {
            return Err(does_not_exist());
        };
        if let Some(cluster) = &v.value.cluster {
            return Err(client(format!(
                "The specified capacity provider is associated with cluster {cluster}. Remove it from the cluster with PutClusterCapacityProviders, then delete it."
            )));
        }
        v.value.status = "INACTIVE".into();
        v.value.update_status = Some("DELETE_COMPLETE".into());
        if commit(
            c.store.as_ref(),
            Txn::new().when(v.unchanged()).then(v.put()),
        )
        .await?
        {
            return Ok(ecs::DeleteCapacityProviderResponse {
                capacity_provider: Some(to_wire(&v.value, false)),
            });
        }
    }
    Err(records::contention())
}

/// What associating `wanted` with `cluster` changes: the custom providers'
/// records to write (newly associated, or let go), each compared in the
/// same transaction as the cluster. Refuses a provider that does not
/// exist or belongs to another cluster.
pub(crate) async fn associate(
    c: &Control,
    x: &Ctx,
    cluster: &str,
    current: &[String],
    wanted: &[String],
) -> ApiResult<(Vec<String>, Vec<Versioned<CapacityProviderRecord>>)> {
    let mut names: Vec<String> = vec![];
    let mut changed = vec![];
    for given in wanted {
        let name = wharf_core::arn::capacity_provider_name(given).map_err(from_core)?;
        if names.contains(&name) {
            continue;
        }
        if !is_fargate(&name) {
            let Some(mut v) = find(c, x, given)
                .await?
                .filter(|v| v.value.status == "ACTIVE")
            else {
                return Err(does_not_exist());
            };
            match v.value.cluster.as_deref() {
                Some(other) if other != cluster => {
                    return Err(invalid(format!(
                        "The capacity provider {name} is already associated with cluster {other}: a capacity provider can be associated with one cluster."
                    )))
                }
                Some(_) => {}
                None => {
                    v.value.cluster = Some(cluster.to_string());
                    changed.push(v);
                }
            }
        }
        names.push(name);
    }
    for gone in current.iter().filter(|p| !names.contains(p)) {
        if is_fargate(gone) {
            continue;
        }
        if let Some(mut v) = find(c, x, gone).await? {
            if v.value.cluster.as_deref() == Some(cluster) {
                v.value.cluster = None;
                changed.push(v);
            }
        }
    }
    Ok((names, changed))
}

/// A default strategy for a cluster with `providers` (empty: none).
pub(crate) fn default_strategy(
    given: &[ecs::CapacityProviderStrategyItem],
    providers: &[String],
) -> ApiResult<Vec<ecs::CapacityProviderStrategyItem>> {
    if given.is_empty() {
        return Ok(vec![]);
    }
    let items = capacity::validate(given, providers).map_err(from_core)?;
    Ok(capacity::to_wire(&items))
}

pub async fn put_cluster_providers(
    c: &Control,
    x: &Ctx,
    r: ecs::PutClusterCapacityProvidersRequest,
) -> ApiResult<ecs::PutClusterCapacityProvidersResponse> {
    let name = cluster_name(x, Some(&r.cluster))?;
    for _ in 0..records::MAX_ATTEMPTS {
        let mut v = active_cluster(c, x, &name).await?;
        let (providers, changed) = associate(
            c,
            x,
            &name,
            &v.value.capacity_providers,
            &r.capacity_providers,
        )
        .await?;
        let strategy = default_strategy(&r.default_capacity_provider_strategy, &providers)?;
        let removed: Vec<&String> = v
            .value
            .capacity_providers
            .iter()
            .filter(|p| !providers.contains(p))
            .collect();
        if !removed.is_empty() {
            in_use(c, &v.value.key(), &removed).await?;
        }
        v.value.capacity_providers = providers;
        v.value.default_strategy = strategy;
        let mut txn = Txn::new().when(v.unchanged()).then(v.put());
        for p in &changed {
            txn = txn.when(p.unchanged()).then(p.put());
        }
        if commit(c.store.as_ref(), txn).await? {
            return Ok(ecs::PutClusterCapacityProvidersResponse {
                cluster: Some(super::clusters::describe_one(c, &v.value, true).await?),
            });
        }
    }
    Err(records::contention())
}

/// Refuses taking `removed` from a cluster while a service's strategy or a
/// task not yet stopped uses one. (A rare call: it reads the cluster's tasks.)
async fn in_use(c: &Control, cluster: &ClusterKey, removed: &[&String]) -> ApiResult<()> {
    let busy = || {
        AwsError::client(
            "ResourceInUseException",
            "The specified capacity provider is in use and cannot be removed.",
        )
    };
    let (services, _) =
        records::list::<ServiceRecord>(c.store.as_ref(), &keys::services(cluster)).await?;
    let uses = |s: &[ecs::CapacityProviderStrategyItem]| {
        s.iter()
            .any(|i| removed.iter().any(|p| **p == i.capacity_provider))
    };
    for s in services.iter().filter(|s| s.value.status != "INACTIVE") {
        if uses(&s.value.capacity_provider_strategy)
            || s.value
                .deployments
                .iter()
                .any(|d| uses(&d.capacity_provider_strategy))
        {
            return Err(busy());
        }
    }
    let (tasks, _) = records::list::<TaskRecord>(c.store.as_ref(), &keys::tasks(cluster)).await?;
    if tasks.iter().any(|t| {
        t.value.last_status != wharf_core::lifecycle::TaskStatus::Stopped
            && t.value
                .capacity_provider_name
                .as_ref()
                .is_some_and(|n| removed.contains(&n))
    }) {
        return Err(busy());
    }
    Ok(())
}

/// Where a RunTask or a service places: by its launch type, or by a
/// capacity provider strategy (its own, else the cluster's default).
/// Returns the launch type the providers run on and the strategy (empty:
/// the launch type alone).
pub(crate) fn resolve(
    cluster: &ClusterRecord,
    launch_type: Option<&ecs::LaunchType>,
    strategy: Option<&[ecs::CapacityProviderStrategyItem]>,
) -> ApiResult<(Option<ecs::LaunchType>, Vec<Item>)> {
    let strategy = strategy.filter(|s| !s.is_empty());
    if launch_type.is_some() && strategy.is_some() {
        return Err(invalid(
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
        ));
    }
    let given = match (launch_type, strategy) {
        (Some(l), _) => return Ok((Some(l.clone()), vec![])),
        (None, Some(s)) => s,
        (None, None) if !cluster.default_strategy.is_empty() => &cluster.default_strategy,
        (None, None) => return Ok((None, vec![])),
    };
    let items = capacity::validate(given, &cluster.capacity_providers).map_err(from_core)?;
    let launch_type = if is_fargate(&items[0].provider) {
        ecs::LaunchType::Fargate
    } else {
        ecs::LaunchType::Ec2
    };
    Ok((Some(launch_type), items))
}

/// How many of `tasks` (live ones) run on each provider.
pub(crate) fn per_provider<'a>(
    tasks: impl Iterator<Item = &'a TaskRecord>,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in tasks {
        if let Some(p) = &t.capacity_provider_name {
            *counts.entry(p.clone()).or_default() += 1;
        }
    }
    counts
}
