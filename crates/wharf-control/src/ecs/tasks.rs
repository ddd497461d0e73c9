use super::{active_cluster, cluster_name, taskdefs};
use crate::error::{from_core, invalid, ApiResult};
use crate::records::{self, commit, Versioned};
use crate::wire;
use crate::{Control, Ctx};
use rand::SeedableRng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use wharf_core::arn;
use wharf_core::lifecycle::{request_stop, DesiredStatus, STOP_USER_INITIATED};
use wharf_core::placement::{self, Constraint, Misfit, Strategy};
use wharf_core::query::HostView;
use wharf_core::records::{
    keys, tags_from_wire, ClusterRecord, ContainerRecord, InstanceRecord, TaskDefinitionRecord,
    TaskRecord,
};
use wharf_core::taskdef::{effective_containers, validate_overrides};
use wharf_model::ecs;
use wharf_store::Txn;

/// What RunTask, StartTask and the service scheduler share.
pub(crate) struct Launch {
    pub cluster: Versioned<ClusterRecord>,
    pub td: TaskDefinitionRecord,
    pub overrides: ecs::TaskOverride,
    pub launch_type: String,
    pub started_by: Option<String>,
    pub group: String,
    pub tags: wharf_core::records::Tags,
    pub enable_execute_command: bool,
    /// The cluster whose instances take the task: the task's own for EC2,
    /// the hidden managed capacity for FARGATE.
    pub capacity: String,
    /// awsvpc: the subnet the task's network interface is "in".
    pub subnet: Option<String>,
}

/// The capacity a launch type runs on, and the subnet an awsvpc task needs.
pub(crate) fn capacity_and_subnet(
    cluster: &str,
    launch_type: &str,
    td: &ecs::TaskDefinition,
    network: Option<&ecs::NetworkConfiguration>,
) -> ApiResult<(String, Option<String>)> {
    if launch_type == "FARGATE"
        && !td
            .compatibilities
            .iter()
            .flatten()
            .any(|c| *c == ecs::Compatibility::Fargate)
    {
        return Err(crate::error::client(
            "Task definition does not support launch_type FARGATE.",
        ));
    }
    let subnet = if td.network_mode == Some(ecs::NetworkMode::Awsvpc) {
        let Some(vpc) = network.and_then(|n| n.awsvpc_configuration.as_ref()) else {
            return Err(invalid(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
            ));
        };
        let Some(first) = vpc.subnets.first() else {
            return Err(invalid("subnets can not be empty."));
        };
        Some(first.clone())
    } else {
        if network.is_some_and(|n| n.awsvpc_configuration.is_some()) {
            return Err(invalid(
                "Network Configuration is not valid for the given networkMode of this task definition.",
            ));
        }
        None
    };
    let capacity = if launch_type == "FARGATE" {
        wharf_core::records::MANAGED_CLUSTER.to_string()
    } else {
        cluster.to_string()
    };
    Ok((capacity, subnet))
}

// The request members RunTask and StartTask have in common, taken one by one.
#[allow(clippy::too_many_arguments)]
async fn prepare(
    c: &Control,
    cluster: Option<&str>,
    task_definition: &str,
    overrides: Option<&ecs::TaskOverride>,
    started_by: Option<&str>,
    group: Option<&str>,
    tags: Option<&[ecs::Tag]>,
    launch_type: Option<&ecs::LaunchType>,
    enable_execute_command: bool,
    network: Option<&ecs::NetworkConfiguration>,
) -> ApiResult<Launch> {
    let cluster = active_cluster(c, &cluster_name(cluster)?).await?;
    let td = taskdefs::resolve(c, task_definition).await?.value;
    if td.definition.status != Some(ecs::TaskDefinitionStatus::Active) {
        return Err(invalid("TaskDefinition is inactive"));
    }
    let overrides = overrides.cloned().unwrap_or_default();
    validate_overrides(&td.definition, &overrides).map_err(from_core)?;
    if let Some(s) = started_by {
        if s.len() > 128 {
            return Err(invalid("startedBy may contain up to 128 characters."));
        }
    }
    super::tags::check_tags(tags.unwrap_or_default())?;
    let launch_type = match launch_type {
        None | Some(ecs::LaunchType::Ec2) => "EC2".to_string(),
        Some(ecs::LaunchType::Fargate) => "FARGATE".to_string(),
        Some(other) => {
            return Err(invalid(format!(
                "Launch type {} is not supported.",
                other.as_str()
            )))
        }
    };
    let family = td.definition.family.clone().unwrap_or_default();
    let (capacity, subnet) =
        capacity_and_subnet(&cluster.value.name, &launch_type, &td.definition, network)?;
    Ok(Launch {
        capacity,
        subnet,
        cluster,
        overrides,
        launch_type,
        started_by: started_by.map(str::to_string),
        group: group
            .map(str::to_string)
            .unwrap_or_else(|| format!("family:{family}")),
        tags: tags_from_wire(tags.unwrap_or_default()),
        enable_execute_command,
        td,
    })
}

fn new_task(
    x: &Ctx,
    l: &Launch,
    instance: &InstanceRecord,
    need: &wharf_core::records::Resources,
) -> TaskRecord {
    // Time-ordered (UUIDv7, still 32 hex digits as ECS's): a task's key
    // lands beside the other new tasks' in the store's B-tree, so a commit
    // of many new tasks touches a few pages instead of one page each.
    let id = uuid::Uuid::now_v7().simple().to_string();
    let cluster = &l.cluster.value.name;
    let td = &l.td.definition;
    let containers = effective_containers(td, &l.overrides)
        .into_iter()
        .map(|cd| ContainerRecord {
            cpu: cd.cpu,
            memory: cd.memory,
            memory_reservation: cd.memory_reservation,
            ..ContainerRecord::new(
                cd.name.as_deref().unwrap_or_default(),
                &x.scope
                    .container(cluster, &id, &uuid::Uuid::new_v4().to_string()),
                cd.image.as_deref().unwrap_or_default(),
                cd.essential.unwrap_or(true),
                cd.health_check.is_some(),
            )
        })
        .collect();
    TaskRecord {
        cluster_arn: l.cluster.value.arn.clone(),
        task_definition_arn: td.task_definition_arn.clone().unwrap_or_default(),
        family: td.family.clone().unwrap_or_default(),
        revision: td.revision.unwrap_or(0),
        instance_id: Some(instance.id.clone()),
        // Managed capacity is never shown.
        instance_arn: (l.launch_type != "FARGATE").then(|| instance.arn.clone()),
        launch_type: l.launch_type.clone(),
        started_by: l.started_by.clone(),
        group: l.group.clone(),
        overrides: l.overrides.clone(),
        cpu: l
            .overrides
            .cpu
            .clone()
            .or_else(|| td.cpu.clone())
            .or(Some(need.cpu.to_string())),
        memory: l
            .overrides
            .memory
            .clone()
            .or_else(|| td.memory.clone())
            .or(Some(need.memory.to_string())),
        reservation: need.clone(),
        containers,
        tags: l.tags.clone(),
        enable_execute_command: l.enable_execute_command,
        eni: l.subnet.as_ref().map(|subnet| wharf_core::records::Eni {
            attachment_id: uuid::Uuid::new_v4().to_string(),
            subnet_id: subnet.clone(),
            private_ipv4: None,
        }),
        ..TaskRecord::new(&id, &x.scope.task(cluster, &id), cluster, x.now)
    }
}

/// Placement constraints and strategies of one launch.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    pub constraints: Vec<Constraint>,
    pub strategies: Vec<Strategy>,
    /// The constraints that read only the instance record (the placement
    /// cache remembers which hosts pass them), and the others.
    pub statics: Vec<Constraint>,
    pub dynamics: Vec<Constraint>,
}

impl Rules {
    /// The request's rules plus the task definition's own memberOf constraints.
    pub fn parse(
        constraints: &[ecs::PlacementConstraint],
        strategies: &[ecs::PlacementStrategy],
        td: &ecs::TaskDefinition,
    ) -> ApiResult<Rules> {
        let mut all = constraints.to_vec();
        all.extend(td.placement_constraints.iter().flatten().map(|c| {
            ecs::PlacementConstraint {
                r#type: c
                    .r#type
                    .as_ref()
                    .map(|t| ecs::PlacementConstraintType::from(t.as_str())),
                expression: c.expression.clone(),
            }
        }));
        Ok(Rules::new(
            placement::parse_constraints(&all).map_err(from_core)?,
            placement::parse_strategies(strategies).map_err(from_core)?,
        ))
    }

    pub fn new(constraints: Vec<Constraint>, strategies: Vec<Strategy>) -> Rules {
        let (statics, dynamics) = constraints.iter().cloned().partition(Constraint::is_static);
        Rules {
            constraints,
            strategies,
            statics,
            dynamics,
        }
    }
}

/// The outcome of a placement: the tasks committed, and why the other
/// instances were refused (by instance ARN).
pub(crate) struct Placed {
    pub tasks: Vec<TaskRecord>,
    pub misfits: BTreeSet<(String, Misfit)>,
}

impl Placed {
    fn failures(&self) -> Vec<ecs::Failure> {
        self.misfits
            .iter()
            .map(|(arn, m)| ecs::Failure {
                arn: Some(arn.clone()),
                reason: Some(m.reason().to_string()),
                detail: None,
            })
            .collect()
    }
}

/// Hosts considered per task on a large cluster: a random sample of about
/// 2·log2(hosts) (at least 16), as Nomad does, rather than every host. The sample is drawn from the hosts
/// that pass the static constraints (remembered by the cache per host
/// generation, so a `memberOf` on attributes is evaluated once per host,
/// not once per task); the strategies rank it (spread by attribute counts
/// the sample's buckets). When nothing in the sample fits, every host is
/// scanned with every constraint, so a refusal and its reasons are never a
/// sampling artefact.
fn sample_size(hosts: usize) -> usize {
    (2 * (usize::BITS - hosts.leading_zeros()) as usize).max(16)
}

/// Places `count` tasks by the placement engine, reading instances, agent
/// sessions and task groups from the watch-fed cache (no listing of the
/// cluster per call), on any host of the launch's capacity or, with `only`
/// (StartTask, a DAEMON's host), task n on the n-th named instance. Commits
/// the tasks and the instances' new allocations in one transaction that
/// compares every instance it touches: a concurrent placement on the same
/// instance, or a stale cache, makes it retry, never over-commit.
pub(crate) async fn place(
    c: &Control,
    x: &Ctx,
    l: &Launch,
    count: usize,
    only: Option<&[String]>,
    rules: &Rules,
) -> ApiResult<Placed> {
    use rand::seq::index::sample;
    let need = placement::demand(&l.td.definition, &l.overrides);
    let cluster = l.cluster.value.name.clone();
    let none = wharf_core::query::GroupCounts::new();
    for _ in 0..records::MAX_ATTEMPTS {
        let mut placed = Placed {
            tasks: vec![],
            misfits: BTreeSet::new(),
        };
        // Slots this call placed on: (record with the new allocation,
        // groups, running tasks) and the cached read it compares against.
        type Local = (InstanceRecord, wharf_core::query::GroupCounts, usize);
        let mut touched: BTreeMap<usize, (Local, Arc<Versioned<InstanceRecord>>)> = BTreeMap::new();
        {
            let mut view = c
                .cache
                .fresh(&c.store)
                .await
                .map_err(crate::error::from_store)?;
            let Some(capacity) = view.capacities.get_mut(&l.capacity) else {
                return Err(no_capacity(l));
            };
            let feasible = capacity.feasible(&rules.statics);
            let slots = &capacity.slots;
            // Slots of the named instances (unknown ones are skipped).
            let named: Option<Vec<usize>> = only.map(|ids| {
                ids.iter()
                    .filter_map(|id| capacity.slot(id))
                    .filter(|&i| slots[i].instance.is_some())
                    .collect()
            });
            if !slots.iter().any(|s| s.instance.is_some())
                || named.as_ref().is_some_and(Vec::is_empty)
            {
                return Err(no_capacity(l));
            }
            let mut rng = rand::rngs::StdRng::from_entropy();
            for n in 0..count {
                let pinned = match &named {
                    Some(named) => match named.get(n) {
                        Some(&i) => Some(i),
                        None => break,
                    },
                    None => None,
                };
                // A small cluster is scanned whole; so is a large one whose
                // sample had no fit.
                let mut full = pinned.is_some() || feasible.len() <= sample_size(feasible.len());
                loop {
                    let idxs: Vec<usize> = match pinned {
                        Some(i) => vec![i],
                        None if full => (0..slots.len())
                            .filter(|&i| slots[i].instance.is_some())
                            .collect(),
                        None => sample(&mut rng, feasible.len(), sample_size(feasible.len()))
                            .into_iter()
                            .map(|k| feasible[k])
                            .collect(),
                    };
                    let views: Vec<HostView> = idxs
                        .iter()
                        .map(|&i| {
                            let slot = &slots[i];
                            match touched.get(&i) {
                                Some(((inst, groups, running), _)) => HostView {
                                    instance: inst,
                                    connected: slot.connected,
                                    running_tasks: *running,
                                    groups,
                                },
                                None => {
                                    let h = slot.tasks(&cluster);
                                    HostView {
                                        instance: &slot.instance.as_ref().expect("has one").value,
                                        connected: slot.connected,
                                        running_tasks: h.map_or(0, |h| h.running),
                                        groups: h.map_or(&none, |h| &h.groups),
                                    }
                                }
                            }
                        })
                        .collect();
                    // A sample comes from hosts that pass the static
                    // constraints; a full scan checks them all.
                    let constraints = if full {
                        &rules.constraints
                    } else {
                        &rules.dynamics
                    };
                    match placement::place(
                        &views,
                        &need,
                        &l.group,
                        constraints,
                        &rules.strategies,
                        &mut rng,
                    ) {
                        Ok(pos) => {
                            let idx = idxs[pos];
                            drop(views);
                            let entry = touched.entry(idx).or_insert_with(|| {
                                let slot = &slots[idx];
                                let v = slot.instance.as_ref().expect("has one");
                                let h = slot.tasks(&cluster);
                                (
                                    (
                                        v.value.clone(),
                                        h.map(|h| h.groups.clone()).unwrap_or_default(),
                                        h.map_or(0, |h| h.running),
                                    ),
                                    Arc::clone(v),
                                )
                            });
                            let (inst, groups, running) = &mut entry.0;
                            inst.allocated.add(&need);
                            inst.version += 1;
                            *groups.entry(l.group.clone()).or_default() += 1;
                            *running += 1;
                            placed.tasks.push(new_task(x, l, inst, &need));
                            break;
                        }
                        Err(_) if !full => full = true,
                        Err(refusals) => {
                            for (pos, m) in refusals {
                                let arn = &views[pos].instance.arn;
                                placed.misfits.insert((arn.clone(), m));
                            }
                            break;
                        }
                    }
                }
            }
        }
        let mut txn = Txn::new().when(l.cluster.unchanged());
        for ((inst, _, _), read) in touched.values() {
            txn = txn
                .when(read.unchanged())
                .then(records::put(&read.key, inst));
        }
        for t in &placed.tasks {
            txn = txn.then(records::put(&keys::task(&cluster, &t.id), t));
        }
        if placed.tasks.is_empty() || commit(c.store.as_ref(), txn).await? {
            return Ok(placed);
        }
    }
    Err(records::contention())
}

fn no_capacity(l: &Launch) -> wharf_protocol::AwsError {
    invalid(if l.launch_type == "FARGATE" {
        "No managed (FARGATE) capacity is available: run `wharf up` to provide it."
    } else {
        "No Container Instances were found in your cluster."
    })
}

pub async fn run(c: &Control, x: &Ctx, r: ecs::RunTaskRequest) -> ApiResult<ecs::RunTaskResponse> {
    let count = r.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(invalid("count must be between 1 and 10."));
    }
    let l = prepare(
        c,
        r.cluster.as_deref(),
        &r.task_definition,
        r.overrides.as_ref(),
        r.started_by.as_deref(),
        r.group.as_deref(),
        r.tags.as_deref(),
        r.launch_type.as_ref(),
        r.enable_execute_command.unwrap_or(false),
        r.network_configuration.as_ref(),
    )
    .await?;
    let rules = Rules::parse(
        r.placement_constraints.as_deref().unwrap_or_default(),
        r.placement_strategy.as_deref().unwrap_or_default(),
        &l.td.definition,
    )?;
    let placed = place(c, x, &l, count as usize, None, &rules).await?;
    Ok(ecs::RunTaskResponse {
        tasks: Some(placed.tasks.iter().map(|t| wire::task(t, true)).collect()),
        failures: Some(placed.failures()),
    })
}

pub async fn start(
    c: &Control,
    x: &Ctx,
    r: ecs::StartTaskRequest,
) -> ApiResult<ecs::StartTaskResponse> {
    if r.container_instances.is_empty() || r.container_instances.len() > 10 {
        return Err(invalid(
            "containerInstances must name between 1 and 10 container instances.",
        ));
    }
    let l = prepare(
        c,
        r.cluster.as_deref(),
        &r.task_definition,
        r.overrides.as_ref(),
        r.started_by.as_deref(),
        r.group.as_deref(),
        r.tags.as_deref(),
        None,
        r.enable_execute_command.unwrap_or(false),
        r.network_configuration.as_ref(),
    )
    .await?;
    let mut ids = vec![];
    for given in &r.container_instances {
        let (_, id) = arn::container_instance_id(given).map_err(from_core)?;
        ids.push(id);
    }
    // StartTask names its instances: no strategy, but the task
    // definition's constraints still hold.
    let rules = Rules::parse(&[], &[], &l.td.definition)?;
    let placed = place(c, x, &l, ids.len(), Some(&ids), &rules).await?;
    Ok(ecs::StartTaskResponse {
        tasks: Some(placed.tasks.iter().map(|t| wire::task(t, true)).collect()),
        failures: Some(placed.failures()),
    })
}

/// Finds a task by ID or ARN in the request's cluster.
pub(crate) async fn find(
    c: &Control,
    cluster: Option<&str>,
    given: &str,
) -> ApiResult<Option<Versioned<TaskRecord>>> {
    let (from_arn, id) = arn::task_id(given).map_err(from_core)?;
    let cluster = match from_arn {
        Some(name) => name,
        None => cluster_name(cluster)?,
    };
    records::get(c.store.as_ref(), &keys::task(&cluster, &id)).await
}

pub async fn stop(
    c: &Control,
    x: &Ctx,
    r: ecs::StopTaskRequest,
) -> ApiResult<ecs::StopTaskResponse> {
    let name = cluster_name(r.cluster.as_deref())?;
    active_cluster(c, &name).await?;
    let reason = r
        .reason
        .clone()
        .unwrap_or_else(|| "Task stopped by user".into());
    if reason.len() > 255 {
        return Err(invalid("reason may contain up to 255 characters."));
    }
    for _ in 0..records::MAX_ATTEMPTS {
        let Some(mut v) = find(c, Some(&name), &r.task).await? else {
            return Err(invalid("The referenced task was not found."));
        };
        if !request_stop(&mut v.value, x.now, STOP_USER_INITIATED, &reason) {
            return Ok(ecs::StopTaskResponse {
                task: Some(wire::task(&v.value, true)),
            });
        }
        if commit(
            c.store.as_ref(),
            Txn::new().when(v.unchanged()).then(v.put()),
        )
        .await?
        {
            return Ok(ecs::StopTaskResponse {
                task: Some(wire::task(&v.value, true)),
            });
        }
    }
    Err(records::contention())
}

pub async fn describe(
    c: &Control,
    x: &Ctx,
    r: ecs::DescribeTasksRequest,
) -> ApiResult<ecs::DescribeTasksResponse> {
    let name = cluster_name(r.cluster.as_deref())?;
    active_cluster(c, &name).await?;
    if r.tasks.is_empty() {
        return Err(invalid("Tasks cannot be empty."));
    }
    if r.tasks.len() > 100 {
        return Err(invalid("Up to 100 tasks can be described at a time."));
    }
    let with_tags = r
        .include
        .iter()
        .flatten()
        .any(|f| *f == ecs::TaskField::Tags);
    let mut tasks = vec![];
    let mut failures = vec![];
    for given in &r.tasks {
        match find(c, Some(&name), given).await? {
            Some(v) if v.value.cluster == name => tasks.push(wire::task(&v.value, with_tags)),
            _ => failures.push(ecs::Failure {
                arn: Some(if given.starts_with("arn:") {
                    given.clone()
                } else {
                    x.scope.task(&name, given)
                }),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
    Ok(ecs::DescribeTasksResponse {
        tasks: Some(tasks),
        failures: Some(failures),
    })
}

pub async fn list(
    c: &Control,
    _x: &Ctx,
    r: ecs::ListTasksRequest,
) -> ApiResult<ecs::ListTasksResponse> {
    let name = cluster_name(r.cluster.as_deref())?;
    active_cluster(c, &name).await?;
    let size = wire::page_size(r.max_results, 100, 100)?;
    let instance = r
        .container_instance
        .as_deref()
        .map(|i| arn::container_instance_id(i).map(|(_, id)| id))
        .transpose()
        .map_err(from_core)?;
    let desired = match &r.desired_status {
        None | Some(ecs::DesiredStatus::Running) => Some(DesiredStatus::Running),
        Some(ecs::DesiredStatus::Stopped) => Some(DesiredStatus::Stopped),
        Some(ecs::DesiredStatus::Pending) => None,
        Some(other) => {
            return Err(invalid(format!(
                "Invalid desiredStatus '{}'.",
                other.as_str()
            )))
        }
    };
    let group = r
        .service_name
        .as_deref()
        .map(|s| format!("service:{}", s.rsplit('/').next().unwrap_or(s)));
    // Read in key (task ID) order from the token on, a chunk at a time,
    // until a page is full: a call costs what it returns (and what its
    // filters skip), not the size of the cluster. Only the listed fields
    // are decoded.
    #[derive(serde::Deserialize)]
    struct Brief {
        arn: String,
        family: String,
        started_by: Option<String>,
        instance_id: Option<String>,
        launch_type: String,
        group: String,
        desired_status: DesiredStatus,
    }
    let prefix = keys::tasks(&name);
    let mut start_after = match r.next_token.as_deref() {
        None | Some("") => None,
        Some(t) => Some(format!("{prefix}{}", wire::decode_token(t)?)),
    };
    let mut arns = vec![];
    let mut next = None;
    'pages: loop {
        let resp = c
            .store
            .range(wharf_store::RangeRequest {
                prefix: prefix.clone(),
                start_after: start_after.take(),
                limit: Some(1_000),
            })
            .await
            .map_err(crate::error::from_store)?;
        for kv in &resp.kvs {
            let Ok(t) = serde_json::from_slice::<Brief>(&kv.value) else {
                continue;
            };
            let keep = Some(t.desired_status) == desired
                && r.family.as_ref().is_none_or(|f| *f == t.family)
                && r.started_by
                    .as_ref()
                    .is_none_or(|s| Some(s) == t.started_by.as_ref())
                && instance
                    .as_ref()
                    .is_none_or(|i| Some(i) == t.instance_id.as_ref())
                && r.launch_type
                    .as_ref()
                    .is_none_or(|l| l.as_str() == t.launch_type)
                && group.as_ref().is_none_or(|g| *g == t.group);
            if !keep {
                continue;
            }
            if arns.len() == size {
                // One more exists: the page ends at the last one taken.
                next = arns
                    .last()
                    .and_then(|a: &String| a.rsplit('/').next())
                    .map(wire::encode_token);
                break 'pages;
            }
            arns.push(t.arn);
        }
        if !resp.more {
            break;
        }
        start_after = resp.kvs.last().map(|kv| kv.key.clone());
    }
    Ok(ecs::ListTasksResponse {
        task_arns: Some(arns),
        next_token: next,
    })
}
