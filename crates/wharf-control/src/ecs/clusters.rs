use super::{active_cluster, cluster_name};
use crate::error::{from_core, invalid, ApiResult};
use crate::records::{self, commit, Versioned};
use crate::wire::{self, paginate, Counts};
use crate::{Control, Ctx};
use wharf_core::records::{keys, tags_from_wire, ClusterRecord, InstanceRecord, MANAGED_CLUSTER};
use wharf_model::ecs;
use wharf_protocol::AwsError;
use wharf_store::{Compare, Txn};

pub async fn create(
    c: &Control,
    x: &Ctx,
    r: ecs::CreateClusterRequest,
) -> ApiResult<ecs::CreateClusterResponse> {
    let name = r.cluster_name.clone().unwrap_or_else(|| "default".into());
    super::exec::check_configuration(r.configuration.as_ref())?;
    if !wharf_core::arn::valid_name(&name) {
        return Err(invalid(
            "Cluster name can only contain letters (uppercase and lowercase), numbers, hyphens, and underscores, up to 255 characters.",
        ));
    }
    super::tags::check_tags(r.tags.as_deref().unwrap_or_default())?;
    check_settings(r.settings.as_deref().unwrap_or_default())?;
    let mut settings = std::collections::BTreeMap::new();
    for s in r.settings.iter().flatten() {
        settings.insert(
            s.name
                .as_ref()
                .map(|n| n.as_str().to_string())
                .unwrap_or_default(),
            s.value.clone().unwrap_or_default(),
        );
    }
    // A new cluster's Container Insights is the account's unless given.
    let insights = wharf_core::account_settings::CONTAINER_INSIGHTS;
    if !settings.contains_key(insights) {
        settings.insert(
            insights.to_string(),
            super::settings::effective(c, x, insights).await?,
        );
    }
    let key = keys::cluster(&x.cluster_key(&name));
    for _ in 0..records::MAX_ATTEMPTS {
        let existing = records::get::<ClusterRecord>(c.store.as_ref(), &key).await?;
        // Creating a cluster that exists returns it, as ECS does.
        if let Some(v) = &existing {
            if v.value.status == "ACTIVE" {
                return Ok(ecs::CreateClusterResponse {
                    cluster: Some(describe_one(c, &v.value, true).await?),
                });
            }
        }
        let (capacity_providers, providers) = super::capacity::associate(
            c,
            x,
            &name,
            &[],
            r.capacity_providers.as_deref().unwrap_or_default(),
        )
        .await?;
        let default_strategy = super::capacity::default_strategy(
            r.default_capacity_provider_strategy
                .as_deref()
                .unwrap_or_default(),
            &capacity_providers,
        )?;
        let record = ClusterRecord {
            name: name.clone(),
            arn: x.scope.cluster(&name),
            status: "ACTIVE".into(),
            tags: tags_from_wire(r.tags.as_deref().unwrap_or_default()),
            settings: settings.clone(),
            created_at: x.now,
            capacity_providers,
            default_strategy,
            configuration: r.configuration.clone(),
            service_connect_namespace: r
                .service_connect_defaults
                .as_ref()
                .map(|d| d.namespace.clone()),
        };
        let cmp = match &existing {
            Some(v) => v.unchanged(),
            None => Compare::NotExists(key.clone()),
        };
        let mut txn = Txn::new().when(cmp).then(records::put(&key, &record));
        for p in &providers {
            txn = txn.when(p.unchanged()).then(p.put());
        }
        if commit(c.store.as_ref(), txn).await? {
            return Ok(ecs::CreateClusterResponse {
                cluster: Some(wire::cluster(&record, 0, Counts::default(), true, true)),
            });
        }
    }
    Err(records::contention())
}

/// A cluster with its live counts.
pub(crate) async fn describe_one(
    c: &Control,
    rec: &ClusterRecord,
    with_tags: bool,
) -> ApiResult<ecs::Cluster> {
    describe_with(c, rec, with_tags, false).await
}

/// [`describe_one`], with DescribeClusters' STATISTICS when asked: tasks
/// running and pending, and services active and draining, by launch type
/// (FARGATE: the managed capacity), from the same reads as the counts.
async fn describe_with(
    c: &Control,
    rec: &ClusterRecord,
    with_tags: bool,
    with_statistics: bool,
) -> ApiResult<ecs::Cluster> {
    // Counted by the placement cache: a cluster of a million tasks is not
    // listed per call.
    let now = c
        .cache
        .fresh(&c.store)
        .await
        .map_err(crate::error::from_store)?
        .on_cluster(&rec.key());
    let (services, _) = records::list::<wharf_core::service::ServiceRecord>(
        c.store.as_ref(),
        &keys::services(&rec.key()),
    )
    .await?;
    let mut cluster = wire::cluster(rec, now.registered, now.counts, with_tags, true);
    cluster.active_services_count = Some(
        services
            .iter()
            .filter(|s| s.value.status == "ACTIVE")
            .count() as i32,
    );
    if with_statistics {
        let count_services = |status: &str, fargate: bool| {
            services
                .iter()
                .filter(|s| {
                    s.value.status == status && (s.value.launch_type == "FARGATE") == fargate
                })
                .count() as i32
        };
        let stat = |name: &str, value: i32| ecs::KeyValuePair {
            name: Some(name.into()),
            value: Some(value.to_string()),
        };
        cluster.statistics = Some(vec![
            stat(
                "runningEC2TasksCount",
                now.counts.running - now.fargate.running,
            ),
            stat("runningFargateTasksCount", now.fargate.running),
            stat(
                "pendingEC2TasksCount",
                now.counts.pending - now.fargate.pending,
            ),
            stat("pendingFargateTasksCount", now.fargate.pending),
            stat("activeEC2ServiceCount", count_services("ACTIVE", false)),
            stat("activeFargateServiceCount", count_services("ACTIVE", true)),
            stat("drainingEC2ServiceCount", count_services("DRAINING", false)),
            stat(
                "drainingFargateServiceCount",
                count_services("DRAINING", true),
            ),
        ]);
    }
    Ok(cluster)
}

pub async fn describe(
    c: &Control,
    x: &Ctx,
    r: ecs::DescribeClustersRequest,
) -> ApiResult<ecs::DescribeClustersResponse> {
    let names = r
        .clusters
        .clone()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec!["default".into()]);
    if names.len() > 100 {
        return Err(invalid("Up to 100 clusters can be described at a time."));
    }
    let included = |field: ecs::ClusterField| r.include.iter().flatten().any(|f| *f == field);
    let with_tags = included(ecs::ClusterField::Tags);
    let with_settings = included(ecs::ClusterField::Settings);
    let with_configurations = included(ecs::ClusterField::Configurations);
    let with_statistics = included(ecs::ClusterField::Statistics);
    let with_attachments = included(ecs::ClusterField::Attachments);
    let mut clusters = vec![];
    let mut failures = vec![];
    for given in names {
        let name = wharf_core::arn::cluster_name(Some(&given)).map_err(from_core)?;
        let key = keys::cluster(&x.cluster_key(&name));
        let found = match wharf_core::arn::in_region(&given, x.region()) {
            true => records::get::<ClusterRecord>(c.store.as_ref(), &key).await?,
            false => None,
        };
        match found {
            Some(v) if name != MANAGED_CLUSTER => {
                // What `include` does not ask for is absent, as in ECS.
                let mut cluster = describe_with(c, &v.value, with_tags, with_statistics).await?;
                if !with_settings {
                    cluster.settings = None;
                }
                if !with_configurations {
                    cluster.configuration = None;
                }
                // Attachments are what managed scaling makes for a
                // capacity provider: Wharf scales nothing, so there are none.
                if with_attachments {
                    cluster.attachments = Some(vec![]);
                }
                clusters.push(cluster)
            }
            _ => failures.push(ecs::Failure {
                // As given when an ARN (of another region, say).
                arn: Some(match given.starts_with("arn:") {
                    true => given.clone(),
                    false => x.scope.cluster(&name),
                }),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
    Ok(ecs::DescribeClustersResponse {
        clusters: Some(clusters),
        failures: Some(failures),
    })
}

pub async fn list(
    c: &Control,
    x: &Ctx,
    r: ecs::ListClustersRequest,
) -> ApiResult<ecs::ListClustersResponse> {
    let size = wire::page_size(r.max_results, 100, 100)?;
    let (all, _) =
        records::list::<ClusterRecord>(c.store.as_ref(), &keys::clusters(x.region())).await?;
    let items = all
        .into_iter()
        .filter(|v| v.value.status == "ACTIVE" && v.value.name != MANAGED_CLUSTER)
        .map(|v| (v.value.name.clone(), v.value.arn))
        .collect();
    let (arns, next) = paginate(items, r.next_token.as_deref(), size)?;
    Ok(ecs::ListClustersResponse {
        cluster_arns: Some(arns),
        next_token: next,
    })
}

pub async fn update(
    c: &Control,
    x: &Ctx,
    r: ecs::UpdateClusterRequest,
) -> ApiResult<ecs::UpdateClusterResponse> {
    let name = cluster_name(x, Some(&r.cluster))?;
    check_settings(r.settings.as_deref().unwrap_or_default())?;
    super::exec::check_configuration(r.configuration.as_ref())?;
    for _ in 0..records::MAX_ATTEMPTS {
        let mut v = active_cluster(c, x, &name).await?;
        for s in r.settings.iter().flatten() {
            let key = s
                .name
                .as_ref()
                .map(|n| n.as_str().to_string())
                .unwrap_or_default();
            v.value
                .settings
                .insert(key, s.value.clone().unwrap_or_default());
        }
        if let Some(cfg) = &r.configuration {
            v.value.configuration = Some(cfg.clone());
        }
        if let Some(d) = &r.service_connect_defaults {
            v.value.service_connect_namespace = Some(d.namespace.clone());
        }
        if commit(
            c.store.as_ref(),
            Txn::new().when(v.unchanged()).then(v.put()),
        )
        .await?
        {
            return Ok(ecs::UpdateClusterResponse {
                cluster: Some(describe_one(c, &v.value, true).await?),
            });
        }
    }
    Err(records::contention())
}

/// UpdateCluster's `settings` alone.
pub async fn update_settings(
    c: &Control,
    x: &Ctx,
    r: ecs::UpdateClusterSettingsRequest,
) -> ApiResult<ecs::UpdateClusterSettingsResponse> {
    let out = update(
        c,
        x,
        ecs::UpdateClusterRequest {
            cluster: r.cluster,
            settings: Some(r.settings),
            ..Default::default()
        },
    )
    .await?;
    Ok(ecs::UpdateClusterSettingsResponse {
        cluster: out.cluster,
    })
}

/// A cluster's `settings` as given: containerInsights, with the values
/// its account setting takes.
fn check_settings(given: &[ecs::ClusterSetting]) -> ApiResult<()> {
    for s in given {
        let name = s.name.as_ref().map(|n| n.as_str()).unwrap_or_default();
        if name != wharf_core::account_settings::CONTAINER_INSIGHTS {
            return Err(invalid(format!("Invalid cluster setting name '{name}'.")));
        }
        wharf_core::account_settings::check(name, s.value.as_deref().unwrap_or_default())
            .map_err(from_core)?;
    }
    Ok(())
}

pub async fn delete(
    c: &Control,
    x: &Ctx,
    r: ecs::DeleteClusterRequest,
) -> ApiResult<ecs::DeleteClusterResponse> {
    let name = cluster_name(x, Some(&r.cluster))?;
    for _ in 0..records::MAX_ATTEMPTS {
        let mut v: Versioned<ClusterRecord> = active_cluster(c, x, &name).await?;
        let (instances, _) = records::list::<InstanceRecord>(
            c.store.as_ref(),
            &keys::instances(&x.cluster_key(&name)),
        )
        .await?;
        if instances.iter().any(|i| i.value.status != "INACTIVE") {
            return Err(AwsError::client(
                "ClusterContainsContainerInstancesException",
                "The Cluster cannot be deleted while Container Instances are active or draining.",
            ));
        }
        let (services, _) = records::list::<wharf_core::service::ServiceRecord>(
            c.store.as_ref(),
            &keys::services(&x.cluster_key(&name)),
        )
        .await?;
        if services.iter().any(|s| s.value.status != "INACTIVE") {
            return Err(AwsError::client(
                "ClusterContainsServicesException",
                "The Cluster cannot be deleted while Services are active.",
            ));
        }
        let live = c
            .cache
            .fresh(&c.store)
            .await
            .map_err(crate::error::from_store)?
            .on_cluster(&x.cluster_key(&name))
            .live;
        if live > 0 {
            return Err(AwsError::client(
                "ClusterContainsTasksException",
                "The Cluster cannot be deleted while Tasks are active.",
            ));
        }
        // Its custom capacity providers are let go with it.
        let (_, providers) =
            super::capacity::associate(c, x, &name, &v.value.capacity_providers, &[]).await?;
        v.value.status = "INACTIVE".into();
        // RunTask compares on the cluster record too, so no task slips in meanwhile.
        let mut txn = Txn::new().when(v.unchanged()).then(v.put());
        for p in &providers {
            txn = txn.when(p.unchanged()).then(p.put());
        }
        if commit(c.store.as_ref(), txn).await? {
            let mut cluster = wire::cluster(&v.value, 0, Counts::default(), false, true);
            cluster.tags = Some(vec![]);
            return Ok(ecs::DeleteClusterResponse {
                cluster: Some(cluster),
            });
        }
    }
    Err(records::contention())
}
