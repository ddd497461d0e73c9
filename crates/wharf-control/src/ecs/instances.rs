use super::{active_cluster, cluster_name};
use crate::cache::OnInstance;
use crate::error::{cluster_not_found, from_core, from_store, invalid, ApiResult};
use crate::records::{self, commit, Versioned};
use crate::wire::{self, paginate};
use crate::{Control, Ctx};
use std::collections::{BTreeMap, HashSet};
use wharf_core::arn;
use wharf_core::lifecycle::{request_stop, TaskStatus};
use wharf_core::records::{
    keys, tags_from_wire, ClusterKey, ClusterRecord, InstanceRecord, Resources, TaskRecord,
    MANAGED_CLUSTER,
};
use wharf_model::ecs;
use wharf_store::{Compare, RangeRequest, Txn};

/// Instance `id` of cluster `name` as the API reports it beside its record
/// (kept by the placement cache).
pub(crate) async fn on_instance(
    c: &Control,
    cluster: &ClusterKey,
    id: &str,
) -> ApiResult<OnInstance> {
    let view = c.cache.fresh(&c.store).await.map_err(from_store)?;
    Ok(view.on_instance(cluster, cluster, id))
}

/// The tasks stored as placed on host `id` of `capacity` (STOPPED ones
/// too, until deleted), by key from the placement cache's index of each
/// host's tasks, each read as it is now; and a revision the set is
/// complete at.
pub(crate) async fn tasks_on(
    c: &Control,
    capacity: &ClusterKey,
    id: &str,
) -> ApiResult<(Vec<Versioned<TaskRecord>>, wharf_store::Revision)> {
    let (keys, revision) = c
        .cache
        .tasks_on(&c.store, capacity, id)
        .await
        .map_err(from_store)?;
    let mut tasks = vec![];
    for key in keys {
        if let Some(t) = records::get::<TaskRecord>(c.store.as_ref(), &key).await? {
            if t.value.instance_id.as_deref() == Some(id) {
                tasks.push(t);
            }
        }
    }
    tasks.sort_by(|a, b| a.key.cmp(&b.key));
    Ok((tasks, revision))
}

/// IDs of the cluster's instances whose agent holds a live session.
pub async fn connected_instances(c: &Control, cluster: &ClusterKey) -> ApiResult<HashSet<String>> {
    let prefix = keys::agent_sessions(cluster);
    let resp = c
        .store
        .range(RangeRequest {
            prefix: prefix.clone(),
            start_after: None,
            limit: None,
        })
        .await
        .map_err(from_store)?;
    Ok(resp
        .kvs
        .into_iter()
        .filter_map(|kv| kv.key.strip_prefix(&prefix).map(str::to_string))
        .collect())
}

/// Identity the agent sends, in the shape of an EC2 instance identity document.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Identity {
    instance_id: Option<String>,
}

pub async fn register(
    c: &Control,
    x: &Ctx,
    r: ecs::RegisterContainerInstanceRequest,
) -> ApiResult<ecs::RegisterContainerInstanceResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    register_in(c, x, r, name).await
}

/// Registers an instance in `name`: a user's cluster, or the hidden
/// managed capacity (through the agent protocol only).
pub(crate) async fn register_in(
    c: &Control,
    x: &Ctx,
    r: ecs::RegisterContainerInstanceRequest,
    name: String,
) -> ApiResult<ecs::RegisterContainerInstanceResponse> {
    crate::auth::may_register_in(x, &name)?;
    let key = x.cluster_key(&name);
    let agent = x.caller.agent_key().map(str::to_string);
    // Everything is checked before the default cluster is created: a
    // refused registration writes nothing.
    let total = wire::resources_from_wire(r.total_resources.as_deref().unwrap_or_default())?;
    if r.platform_devices.as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(crate::error::unsupported(
            "platformDevices (GPUs: task definitions' resourceRequirements are refused too)",
        ));
    }
    if total.cpu <= 0 || total.memory <= 0 {
        return Err(invalid(
            "totalResources must include positive CPU and MEMORY.",
        ));
    }
    super::tags::check_tags(r.tags.as_deref().unwrap_or_default())?;
    let identity: Identity = r
        .instance_identity_document
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    let attributes = validate_attributes(r.attributes.as_deref().unwrap_or_default())?;
    // An agent started with `--capacity-provider NAME` joins that provider.
    if let Some(p) = attributes.get(wharf_core::capacity::INSTANCE_ATTRIBUTE) {
        let p = p.as_deref().unwrap_or_default();
        let exists = !wharf_core::capacity::is_fargate(p)
            && records::get::<wharf_core::records::CapacityProviderRecord>(
                c.store.as_ref(),
                &keys::capacity_provider(x.region(), p),
            )
            .await?
            .is_some_and(|v| v.value.status == "ACTIVE");
        if !exists {
            return Err(crate::error::client(format!(
                "The capacity provider '{p}' does not exist: create it with CreateCapacityProvider before agents join it."
            )));
        }
    }
    let reregister_id = match &r.container_instance_arn {
        Some(a) => Some(arn::container_instance_id(a).map_err(from_core)?.1),
        None => None,
    };
    // Like ECS, the default cluster comes into being when an instance joins
    // it; so does the managed capacity's hidden one.
    if (name == "default" || name == MANAGED_CLUSTER)
        && records::get::<ClusterRecord>(c.store.as_ref(), &keys::cluster(&key))
            .await?
            .is_none()
    {
        let insights = wharf_core::account_settings::CONTAINER_INSIGHTS;
        let record = ClusterRecord {
            name: name.clone(),
            arn: x.scope.cluster(&name),
            status: "ACTIVE".into(),
            tags: Default::default(),
            settings: [(
                insights.to_string(),
                super::settings::effective(c, x, insights).await?,
            )]
            .into(),
            created_at: x.now,
            capacity_providers: vec![],
            configuration: None,
            service_connect_namespace: None,
            default_strategy: vec![],
        };
        let at = keys::cluster(&key);
        commit(
            c.store.as_ref(),
            Txn::new()
                .when(Compare::NotExists(at.clone()))
                .then(records::put(&at, &record)),
        )
        .await?;
    }
    let cluster = active_cluster(c, x, &name).await?;
    for _ in 0..records::MAX_ATTEMPTS {
        let existing = match &reregister_id {
            Some(id) => records::get::<InstanceRecord>(c.store.as_ref(), &keys::instance(&key, id))
                .await?
                .filter(|v| v.value.status != "INACTIVE"),
            None => None,
        };
        let (record, cmp) = match existing {
            // The same agent coming back: keep its identity and what its tasks hold.
            Some(mut v) => {
                if agent.is_some() && v.value.agent != agent {
                    // Another agent's instance, unless its credentials are gone.
                    if let Some(other) = &v.value.agent {
                        if crate::auth::credential_exists(c, other).await? {
                            return Err(crate::auth::access_denied(
                                x,
                                "ecs:RegisterContainerInstance",
                                &v.value.arn,
                            ));
                        }
                    }
                    v.value.agent = agent.clone();
                }
                v.value.registered = Resources {
                    tcp_ports: Default::default(),
                    udp_ports: Default::default(),
                    ..total.clone()
                };
                v.value.reserved = Resources {
                    cpu: 0,
                    memory: 0,
                    ..total.clone()
                };
                // Which provider it is in is what this registration says.
                v.value
                    .attributes
                    .remove(wharf_core::capacity::INSTANCE_ATTRIBUTE);
                v.value.attributes.extend(attributes.clone());
                v.value
                    .tags
                    .extend(tags_from_wire(r.tags.as_deref().unwrap_or_default()));
                if v.value.tags.len() > 50 {
                    return Err(invalid("A resource can have at most 50 tags."));
                }
                v.value.agent_version = r
                    .version_info
                    .as_ref()
                    .and_then(|i| i.agent_version.clone());
                v.value.docker_version = r
                    .version_info
                    .as_ref()
                    .and_then(|i| i.docker_version.clone());
                v.value.hostname = identity.instance_id.clone().or(v.value.hostname.clone());
                v.value.version += 1;
                let cmp = v.unchanged();
                (v.value, cmp)
            }
            None => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                let registered = Resources {
                    tcp_ports: Default::default(),
                    udp_ports: Default::default(),
                    ..total.clone()
                };
                let arn = x.scope.container_instance(&name, &id);
                let versions = r.version_info.as_ref();
                let record = InstanceRecord {
                    reserved: Resources {
                        cpu: 0,
                        memory: 0,
                        ..total.clone()
                    },
                    attributes: attributes.clone(),
                    agent_version: versions.and_then(|i| i.agent_version.clone()),
                    docker_version: versions.and_then(|i| i.docker_version.clone()),
                    hostname: identity.instance_id.clone(),
                    tags: tags_from_wire(r.tags.as_deref().unwrap_or_default()),
                    agent: agent.clone(),
                    ..InstanceRecord::new(&id, &arn, &name, registered, x.now)
                };
                (record, Compare::NotExists(keys::instance(&key, &id)))
            }
        };
        let at = keys::instance(&key, &record.id);
        let txn = Txn::new()
            .when(cluster.unchanged())
            .when(cmp)
            .then(records::put(&at, &record));
        if commit(c.store.as_ref(), txn).await? {
            let now = on_instance(c, &key, &record.id).await?;
            return Ok(ecs::RegisterContainerInstanceResponse {
                container_instance: Some(wire::container_instance(&record, &now, true)),
            });
        }
    }
    Err(records::contention())
}

pub(crate) fn validate_attributes(
    attrs: &[ecs::Attribute],
) -> ApiResult<BTreeMap<String, Option<String>>> {
    let mut out = BTreeMap::new();
    for a in attrs {
        let ok_name = !a.name.is_empty()
            && a.name.len() <= 128
            && a.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-./@".contains(&b));
        if !ok_name {
            return Err(invalid(format!("Invalid attribute name '{}'.", a.name)));
        }
        if a.value.as_ref().is_some_and(|v| v.len() > 128) {
            return Err(invalid(format!(
                "The value of attribute '{}' is longer than 128 characters.",
                a.name
            )));
        }
        out.insert(a.name.clone(), a.value.clone());
    }
    Ok(out)
}

pub(crate) async fn find(
    c: &Control,
    cluster: &ClusterKey,
    given: &str,
) -> ApiResult<Option<Versioned<InstanceRecord>>> {
    let (from_arn, id) = arn::container_instance_id(given).map_err(from_core)?;
    if from_arn.as_deref().is_some_and(|n| n != cluster.name())
        || cluster.region().is_some_and(|r| !arn::in_region(given, r))
    {
        return Ok(None);
    }
    records::get(c.store.as_ref(), &keys::instance(cluster, &id)).await
}

pub async fn deregister(
    c: &Control,
    x: &Ctx,
    r: ecs::DeregisterContainerInstanceRequest,
) -> ApiResult<ecs::DeregisterContainerInstanceResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    active_cluster(c, x, &name).await?;
    let key = x.cluster_key(&name);
    // Closed to placement first: once placements under way on it have
    // settled, the task listing below sees every task it will ever have.
    let (_, id) = arn::container_instance_id(&r.container_instance).map_err(from_core)?;
    let _closing = c
        .cache
        .close(&c.store, &key, &id)
        .await
        .map_err(from_store)?;
    for _ in 0..records::MAX_ATTEMPTS {
        let Some(mut inst) = find(c, &key, &r.container_instance)
            .await?
            .filter(|v| v.value.status != "INACTIVE")
        else {
            return Err(invalid("The referenced container instance was not found."));
        };
        let (mut live, _) = tasks_on(c, &key, &inst.value.id).await?;
        live.retain(|t| t.value.last_status != TaskStatus::Stopped);
        if !live.is_empty() && !r.force.unwrap_or(false) {
            return Err(invalid("Found running tasks on the instance."));
        }
        inst.value.status = "INACTIVE".into();
        inst.value.version += 1;
        let mut txn = Txn::new().when(inst.unchanged()).then(inst.put());
        // Forced: its tasks are told to stop rather than left orphaned.
        for t in &mut live {
            if request_stop(
                &mut t.value,
                x.now,
                "InfrastructureHealth",
                "Container instance deregistered",
            ) {
                txn = txn.when(t.unchanged()).then(t.put());
            }
        }
        if commit(c.store.as_ref(), txn).await? {
            let _ = c
                .store
                .txn(Txn::new().then(wharf_store::Op::delete(keys::agent_session(
                    &key,
                    &inst.value.id,
                ))))
                .await;
            // Its session is going: reported disconnected.
            let now = OnInstance {
                connected: false,
                ..on_instance(c, &key, &inst.value.id).await?
            };
            return Ok(ecs::DeregisterContainerInstanceResponse {
                container_instance: Some(wire::container_instance(&inst.value, &now, true)),
            });
        }
    }
    Err(records::contention())
}

pub async fn describe(
    c: &Control,
    x: &Ctx,
    r: ecs::DescribeContainerInstancesRequest,
) -> ApiResult<ecs::DescribeContainerInstancesResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    active_cluster(c, x, &name).await?;
    let key = x.cluster_key(&name);
    if r.container_instances.is_empty() || r.container_instances.len() > 100 {
        return Err(invalid(
            "containerInstances must name between 1 and 100 container instances.",
        ));
    }
    let with_tags = r
        .include
        .iter()
        .flatten()
        .any(|f| *f == ecs::ContainerInstanceField::Tags);
    let with_health = r
        .include
        .iter()
        .flatten()
        .any(|f| *f == ecs::ContainerInstanceField::ContainerInstanceHealth);
    let mut found = vec![];
    let mut failures = vec![];
    for given in &r.container_instances {
        match find(c, &key, given).await? {
            Some(v) => found.push(v.value),
            None => failures.push(ecs::Failure {
                arn: Some(if given.starts_with("arn:") {
                    given.clone()
                } else {
                    x.scope.container_instance(&name, given)
                }),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
    // One look at the cache for them all.
    let view = c.cache.fresh(&c.store).await.map_err(from_store)?;
    let out = found
        .iter()
        .map(|i| {
            let now = view.on_instance(&key, &key, &i.id);
            let mut out = wire::container_instance(i, &now, with_tags);
            if with_health {
                out.health_status = Some(health(now.connected, x.now));
            }
            out
        })
        .collect();
    drop(view);
    Ok(ecs::DescribeContainerInstancesResponse {
        container_instances: Some(out),
        failures: Some(failures),
    })
}

/// CONTAINER_INSTANCE_HEALTH: the container runtime is OK while the agent
/// holds its session (it ends it at once when Docker goes away), and
/// unknown otherwise.
fn health(connected: bool, now: i64) -> ecs::ContainerInstanceHealthStatus {
    let state = if connected {
        ecs::InstanceHealthCheckState::Ok
    } else {
        ecs::InstanceHealthCheckState::InsufficientData
    };
    ecs::ContainerInstanceHealthStatus {
        overall_status: Some(state.clone()),
        details: Some(vec![ecs::InstanceHealthCheckResult {
            r#type: Some(ecs::InstanceHealthCheckType::ContainerRuntime),
            status: Some(state),
            status_reason: (!connected).then(|| {
                "The instance's agent is not connected: it has lost its Docker Engine or the control plane.".to_string()
            }),
            last_updated: Some(wharf_core::clock::to_epoch_seconds(now)),
            last_status_change: None,
        }]),
    }
}

pub async fn list(
    c: &Control,
    x: &Ctx,
    r: ecs::ListContainerInstancesRequest,
) -> ApiResult<ecs::ListContainerInstancesResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    active_cluster(c, x, &name).await?;
    let key = x.cluster_key(&name);
    let size = wire::page_size(r.max_results, 100, 100)?;
    let filter = r
        .filter
        .as_deref()
        .map(wharf_core::query::parse)
        .transpose()
        .map_err(from_core)?;
    let (all, _) =
        records::list::<InstanceRecord>(c.store.as_ref(), &keys::instances(&key)).await?;
    let items = all
        .into_iter()
        .filter(|v| match &r.status {
            Some(s) => s.as_str() == v.value.status,
            None => v.value.status != "INACTIVE",
        })
        .filter(|v| filter.as_ref().is_none_or(|f| f.matches_instance(&v.value)))
        .map(|v| (v.value.id.clone(), v.value.arn))
        .collect();
    let (arns, next) = paginate(items, r.next_token.as_deref(), size)?;
    Ok(ecs::ListContainerInstancesResponse {
        container_instance_arns: Some(arns),
        next_token: next,
    })
}

pub async fn update_state(
    c: &Control,
    x: &Ctx,
    r: ecs::UpdateContainerInstancesStateRequest,
) -> ApiResult<ecs::UpdateContainerInstancesStateResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    let key = x.cluster_key(&name);
    active_cluster(c, x, &name)
        .await
        .map_err(|_| cluster_not_found())?;
    let status = match &r.status {
        ecs::ContainerInstanceStatus::Active => "ACTIVE",
        ecs::ContainerInstanceStatus::Draining => "DRAINING",
        other => {
            return Err(invalid(format!(
                "Container instances can only be set to ACTIVE or DRAINING, not {}.",
                other.as_str()
            )))
        }
    };
    if r.container_instances.is_empty() || r.container_instances.len() > 10 {
        return Err(invalid(
            "containerInstances must name between 1 and 10 container instances.",
        ));
    }
    // Every ID parses before the first is changed: a refusal writes nothing.
    for given in &r.container_instances {
        arn::container_instance_id(given).map_err(from_core)?;
    }
    let mut out = vec![];
    let mut failures = vec![];
    'each: for given in &r.container_instances {
        for _ in 0..records::MAX_ATTEMPTS {
            let Some(mut v) = find(c, &key, given)
                .await?
                .filter(|v| v.value.status != "INACTIVE")
            else {
                failures.push(ecs::Failure {
                    arn: Some(if given.starts_with("arn:") {
                        given.clone()
                    } else {
                        x.scope.container_instance(&name, given)
                    }),
                    reason: Some("MISSING".into()),
                    detail: None,
                });
                continue 'each;
            };
            if v.value.status != status {
                v.value.status = status.into();
                v.value.version += 1;
                if !commit(
                    c.store.as_ref(),
                    Txn::new().when(v.unchanged()).then(v.put()),
                )
                .await?
                {
                    continue;
                }
            }
            let now = on_instance(c, &key, &v.value.id).await?;
            out.push(wire::container_instance(&v.value, &now, false));
            continue 'each;
        }
        return Err(records::contention());
    }
    Ok(ecs::UpdateContainerInstancesStateResponse {
        container_instances: Some(out),
        failures: Some(failures),
    })
}
