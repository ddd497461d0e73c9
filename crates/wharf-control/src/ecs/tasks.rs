use super::{active_cluster, cluster_name, taskdefs};
use crate::cache::ByValue;
use crate::error::{from_core, from_store, invalid, unsupported, ApiResult};
use crate::idempotency::{Token, TokenRecord};
use crate::records::{self, commit, Versioned};
use crate::wire;
use crate::{Control, Ctx};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use wharf_core::arn;
use wharf_core::lifecycle::{request_stop, DesiredStatus, STOP_USER_INITIATED};
use wharf_core::placement::{self, Constraint, Misfit, Strategy, ValueCounts};
use wharf_core::query::HostView;
use wharf_core::records::{
    keys, tags_from_wire, ClusterKey, ClusterRecord, ContainerRecord, InstanceRecord, Resources,
    Tags, TaskDefinitionRecord, TaskRecord,
};
use wharf_core::taskdef::{effective_containers, validate_overrides};
use wharf_model::ecs;
use wharf_store::{Compare, LeaseId, Txn};

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
    pub capacity: ClusterKey,
    /// awsvpc: the subnet the task's network interface is "in".
    pub subnet: Option<String>,
    /// A service's target groups (RunTask and StartTask: none).
    pub load_balancers: Vec<ecs::LoadBalancer>,
    /// The capacity provider strategy (empty: by `launch_type` alone), and
    /// how many tasks of the same launch (a service deployment's) already
    /// run on each provider, which the strategy's split counts.
    pub strategy: Vec<wharf_core::capacity::Item>,
    pub on_providers: BTreeMap<String, usize>,
    /// The account's defaultLogDriverMode is `blocking` (read at launch).
    pub blocking_logs: bool,
}

/// The capacity a launch type runs on, and the subnet an awsvpc task needs.
pub(crate) fn capacity_and_subnet(
    cluster: &ClusterKey,
    launch_type: &str,
    td: &ecs::TaskDefinition,
    network: Option<&ecs::NetworkConfiguration>,
) -> ApiResult<(ClusterKey, Option<String>)> {
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
        // Subnet and security-group IDs are taken as given until Wharf has
        // a VPC API; a public IP is something an EC2 task never gets.
        if launch_type == "EC2" && vpc.assign_public_ip == Some(ecs::AssignPublicIp::Enabled) {
            return Err(invalid(
                "Assign public IP is not supported for this launch type.",
            ));
        }
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
        ClusterKey::managed()
    } else {
        cluster.clone()
    };
    Ok((capacity, subnet))
}

// The request members RunTask and StartTask have in common, taken one by one.
#[allow(clippy::too_many_arguments)]
async fn prepare(
    c: &Control,
    x: &Ctx,
    cluster: Option<&str>,
    task_definition: &str,
    overrides: Option<&ecs::TaskOverride>,
    started_by: Option<&str>,
    group: Option<&str>,
    tags: Option<&[ecs::Tag]>,
    launch_type: Option<&ecs::LaunchType>,
    strategy: Option<&[ecs::CapacityProviderStrategyItem]>,
    enable_execute_command: bool,
    network: Option<&ecs::NetworkConfiguration>,
) -> ApiResult<Launch> {
    let cluster = active_cluster(c, x, &cluster_name(x, cluster)?).await?;
    let (launch_type, strategy) = super::capacity::resolve(&cluster.value, launch_type, strategy)?;
    let td = taskdefs::resolve(c, x.region(), task_definition)
        .await?
        .value;
    if td.definition.status != Some(ecs::TaskDefinitionStatus::Active) {
        return Err(invalid("TaskDefinition is inactive"));
    }
    let overrides = overrides.cloned().unwrap_or_default();
    validate_overrides(&td.definition, &overrides).map_err(from_core)?;
    if let Some(role) = wharf_core::taskdef::task_role(&td.definition, &overrides) {
        crate::task_credentials::check_role(c, role, &cluster.value.arn)?;
    }
    if let Some(s) = started_by {
        if s.len() > 128 {
            return Err(invalid("startedBy may contain up to 128 characters."));
        }
    }
    super::tags::check_tags(tags.unwrap_or_default())?;
    let launch_type = launch_type_name(launch_type.as_ref())?;
    let family = td.definition.family.clone().unwrap_or_default();
    let (capacity, subnet) =
        capacity_and_subnet(&cluster.value.key(), &launch_type, &td.definition, network)?;
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
        load_balancers: vec![],
        strategy,
        on_providers: BTreeMap::new(),
        blocking_logs: blocking_logs(c, x).await?,
    })
}

/// The launch type a task runs by (none given: EC2); EXTERNAL is refused.
pub(crate) fn launch_type_name(given: Option<&ecs::LaunchType>) -> ApiResult<String> {
    match given {
        None | Some(ecs::LaunchType::Ec2) => Ok("EC2".into()),
        Some(ecs::LaunchType::Fargate) => Ok("FARGATE".into()),
        Some(other) => Err(invalid(format!(
            "Launch type {} is not supported.",
            other.as_str()
        ))),
    }
}

/// Whether new tasks' containers block on log delivery by default.
pub(crate) async fn blocking_logs(c: &Control, x: &Ctx) -> ApiResult<bool> {
    let mode =
        super::settings::effective(c, x, wharf_core::account_settings::DEFAULT_LOG_DRIVER_MODE)
            .await?;
    Ok(mode == "blocking")
}

fn new_task(
    x: &Ctx,
    l: &Launch,
    instance: &InstanceRecord,
    need: &wharf_core::records::Resources,
    provider: Option<&str>,
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
        capacity_provider_name: provider.map(str::to_string),
        blocking_logs: l.blocking_logs,
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
        load_balancers: l.load_balancers.clone(),
        ..TaskRecord::new(&id, &x.scope.task(cluster, &id), cluster, x.now)
    }
}

/// Placement constraints and strategies of one launch.
#[derive(Debug, Default, Clone)]
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
        // runtimePlatform's architecture is a constraint on the host's.
        let arch = td
            .runtime_platform
            .as_ref()
            .and_then(|p| p.cpu_architecture.as_ref());
        if let Some(arch) = arch {
            all.push(ecs::PlacementConstraint {
                r#type: Some(ecs::PlacementConstraintType::MemberOf),
                expression: Some(format!(
                    "attribute:ecs.cpu-architecture == {}",
                    wharf_core::taskdef::ecs_architecture(arch)
                )),
            });
        }
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

    /// These rules, on the instances that joined a custom capacity provider.
    fn on_provider(&self, provider: &str) -> ApiResult<Rules> {
        let mut constraints = placement::parse_constraints(&[ecs::PlacementConstraint {
            r#type: Some(ecs::PlacementConstraintType::MemberOf),
            expression: Some(format!(
                "attribute:{} == {provider}",
                wharf_core::capacity::INSTANCE_ATTRIBUTE
            )),
        }])
        .map_err(from_core)?;
        constraints.extend(self.constraints.iter().cloned());
        Ok(Rules::new(constraints, self.strategies.clone()))
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
    /// The slot each task was placed on.
    slots: Vec<usize>,
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

/// Up to this many hosts passing the static constraints, every one of them
/// is ranked for every task: exact ECS semantics for every strategy, at
/// tens of microseconds per task.
const RANK_ALL_UP_TO: usize = 256;

/// The hosts a task considers, widest last.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Considered {
    /// A random sample of this many hosts that pass the static constraints.
    Sample(usize),
    /// Every host that passes the static constraints.
    Feasible,
    /// Every host, each checked against every constraint: what a refusal
    /// (and its reasons) is judged on, and what a pinned task is placed by.
    Everything,
}

/// On a large cluster a task looks at a random sample of log2(hosts) (at
/// least 8) of the hosts that pass the static constraints (remembered by
/// the cache per host generation, so a `memberOf` on attributes is
/// evaluated once per host, not once per task), as Nomad scores
/// log2(nodes) for a service job, rather than at every host. Spread by
/// attribute still ranks by the cache's counts over the whole capacity. A
/// binpack anywhere in the chain ranks every feasible host instead, as
/// ECS's binpack fills the fullest host of the cluster, which a sample
/// would rarely contain. When nothing considered fits, every host is
/// checked with every constraint, so a refusal and its reasons are never a
/// sampling artefact.
fn considered(feasible: usize, strategies: &[Strategy]) -> Considered {
    let binpack = strategies.iter().any(|s| matches!(s, Strategy::Binpack(_)));
    if feasible <= RANK_ALL_UP_TO || binpack {
        Considered::Feasible
    } else {
        Considered::Sample(((usize::BITS - feasible.leading_zeros()) as usize).max(8))
    }
}

/// A random sample of up to `n` of the hosts in `split` whose value has
/// the fewest tasks by `counts`.
fn least_used(split: &ByValue, counts: &ValueCounts, n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let least = split.iter().map(|(v, _)| counts.get(v.as_deref())).min();
    let pools: Vec<&[usize]> = split
        .iter()
        .filter(|(v, _)| Some(counts.get(v.as_deref())) == least)
        .map(|(_, hosts)| hosts.as_slice())
        .collect();
    let total: usize = pools.iter().map(|p| p.len()).sum();
    rand::seq::index::sample(rng, total, n.min(total))
        .into_iter()
        .map(|mut k| {
            for p in &pools {
                if k < p.len() {
                    return p[k];
                }
                k -= p.len();
            }
            unreachable!("k < total")
        })
        .collect()
}

/// Places `count` tasks by the placement engine, reading instances, agent
/// sessions and task groups from the watch-fed cache (no listing of the
/// cluster per call), on any host of the launch's capacity or, with `only`
/// (StartTask, a DAEMON's host), task n on the n-th named instance. Commits
/// the tasks in one transaction that compares every instance record it
/// placed on (a host drained or deregistered meanwhile makes it retry).
/// What each host holds is the cache's sum over its live tasks plus the
/// placements reserved in it and not yet seen committed, so concurrent
/// placements never over-commit a host.
pub(crate) async fn place(
    c: &Control,
    x: &Ctx,
    l: &Launch,
    count: usize,
    only: Option<&[String]>,
    rules: &Rules,
    token: Option<(&Token, LeaseId)>,
) -> ApiResult<Placed> {
    use rand::seq::index::sample;
    let need = placement::demand(&l.td.definition, &l.overrides);
    let cluster = l.cluster.value.key();
    let none = wharf_core::query::GroupCounts::new();
    let started = std::time::Instant::now();
    for _ in 0..records::MAX_ATTEMPTS {
        let mut placed = Placed {
            tasks: vec![],
            slots: vec![],
            misfits: BTreeSet::new(),
        };
        // Slots this call placed on: what they hold with its tasks, how
        // many it put there, and the record the commit compares against.
        struct Touched {
            held: Resources,
            placed: usize,
            instance: Arc<Versioned<InstanceRecord>>,
        }
        let mut touched: BTreeMap<usize, Touched> = BTreeMap::new();
        let task_keys: Vec<String>;
        {
            let mut view = c
                .cache
                .fresh(&c.store)
                .await
                .map_err(crate::error::from_store)?;
            let Some(capacity) = view.capacities.get_mut(l.capacity.as_str()) else {
                return Err(no_capacity(l));
            };
            // The provider of each task (by the strategy), and the rules
            // each set of them is placed by: a custom provider's tasks go
            // only to the instances that joined it.
            let providers: Vec<Option<String>> = if l.strategy.is_empty() {
                vec![None; count]
            } else {
                wharf_core::capacity::assign(&l.strategy, &l.on_providers, count)
                    .into_iter()
                    .map(Some)
                    .collect()
            };
            let mut custom: Vec<(String, Rules)> = vec![];
            for p in providers.iter().flatten() {
                if !wharf_core::capacity::is_fargate(p) && !custom.iter().any(|(n, _)| n == p) {
                    custom.push((p.clone(), rules.on_provider(p)?));
                }
            }
            // The group's tasks per value of each attribute spread by, over
            // the whole capacity (a sample alone would not see the zone a
            // task went to a moment ago); this call adds its own as it goes.
            let mut spread: HashMap<String, ValueCounts> = rules
                .strategies
                .iter()
                .filter_map(Strategy::spread_attribute)
                .map(|a| (a.to_string(), capacity.spread_counts(a, &cluster, &l.group)))
                .collect();
            // What each rule set considers: the hosts passing its static
            // constraints, and whether it samples them. Sampling under
            // spread by attribute first samples the hosts of the
            // least-used values only: a sample of the whole set can miss
            // the zone the spread asks for (nine hosts of three zones miss
            // one of them 2.6% of the time).
            struct Pool {
                feasible: Arc<Vec<usize>>,
                scope_of_any: Considered,
                directing: Option<(String, Arc<ByValue>)>,
            }
            let mut pool = |r: &Rules| {
                let feasible = capacity.feasible(&r.statics);
                let scope_of_any = considered(feasible.len(), &r.strategies);
                let directing = match (scope_of_any, r.strategies.first()) {
                    (Considered::Sample(_), Some(s)) => s
                        .spread_attribute()
                        .map(|a| (a.to_string(), capacity.feasible_by_value(&r.statics, a))),
                    _ => None,
                };
                Pool {
                    feasible,
                    scope_of_any,
                    directing,
                }
            };
            let base_pool = pool(rules);
            let custom_pools: Vec<Pool> = custom.iter().map(|(_, r)| pool(r)).collect();
            // A task's rules and pool: its custom provider's, else the launch's.
            let placed_by = |p: &Option<String>| {
                p.as_ref()
                    .and_then(|p| custom.iter().position(|(n, _)| n == p))
                    .map_or((rules, &base_pool), |k| (&custom[k].1, &custom_pools[k]))
            };
            let slots = &capacity.slots;
            // A host being deregistered is passed by.
            let open = |i: usize| slots[i].instance.is_some() && slots[i].closing == 0;
            // Slots of the named instances (unknown ones are skipped).
            let named: Option<Vec<usize>> = only.map(|ids| {
                ids.iter()
                    .filter_map(|id| capacity.slot(id))
                    .filter(|&i| open(i))
                    .collect()
            });
            if !(0..slots.len()).any(open) || named.as_ref().is_some_and(Vec::is_empty) {
                return Err(no_capacity(l));
            }
            let mut rng = rand::rngs::StdRng::from_entropy();
            for (n, provider) in providers.iter().enumerate() {
                let (rules, pool) = placed_by(provider);
                let Pool {
                    feasible,
                    scope_of_any,
                    directing,
                } = pool;
                let scope_of_any = *scope_of_any;
                let pinned = match &named {
                    Some(named) => match named.get(n) {
                        Some(&i) => Some(i),
                        None => break,
                    },
                    None => None,
                };
                let mut scope = match pinned {
                    Some(_) => Considered::Everything,
                    None => scope_of_any,
                };
                loop {
                    let idxs: Vec<usize> = match (pinned, scope) {
                        (Some(i), _) => vec![i],
                        (None, Considered::Everything) => {
                            (0..slots.len()).filter(|&i| open(i)).collect()
                        }
                        (None, Considered::Feasible) => {
                            feasible.iter().copied().filter(|&i| open(i)).collect()
                        }
                        (None, Considered::Sample(n)) => match directing {
                            Some((attr, split)) => least_used(split, &spread[attr], n, &mut rng)
                                .into_iter()
                                .filter(|&i| open(i))
                                .collect(),
                            None => sample(&mut rng, feasible.len(), n)
                                .into_iter()
                                .map(|k| feasible[k])
                                .filter(|&i| open(i))
                                .collect(),
                        },
                    };
                    let views: Vec<HostView> = idxs
                        .iter()
                        .map(|&i| {
                            let slot = &slots[i];
                            let h = slot.tasks(&cluster);
                            let t = touched.get(&i);
                            HostView {
                                instance: &slot.instance.as_ref().expect("has one").value,
                                allocated: t.map_or(&slot.held, |t| &t.held),
                                connected: slot.connected,
                                running_tasks: h.map_or(0, |h| h.running)
                                    + t.map_or(0, |t| t.placed),
                                groups: h.map_or(&none, |h| &h.groups),
                                placing: t.map(|t| (l.group.as_str(), t.placed)),
                            }
                        })
                        .collect();
                    // Feasible hosts pass the static constraints already.
                    let constraints = if scope == Considered::Everything {
                        &rules.constraints
                    } else {
                        &rules.dynamics
                    };
                    // A sample of the least-used values' hosts ties on the
                    // spread that chose them: the rest of the chain ranks.
                    let strategies = match (scope, directing) {
                        (Considered::Sample(_), Some(_)) => &rules.strategies[1..],
                        _ => &rules.strategies[..],
                    };
                    match placement::place_in(
                        &views,
                        &need,
                        &l.group,
                        constraints,
                        strategies,
                        &spread,
                        &mut rng,
                    ) {
                        Ok(pos) => {
                            let idx = idxs[pos];
                            drop(views);
                            let slot = &slots[idx];
                            let t = touched.entry(idx).or_insert_with(|| Touched {
                                held: slot.held.clone(),
                                placed: 0,
                                instance: Arc::clone(slot.instance.as_ref().expect("has one")),
                            });
                            t.held.add(&need);
                            t.placed += 1;
                            for (attr, counts) in &mut spread {
                                counts.add(placement::attribute(&t.instance.value, attr), 1);
                            }
                            let task =
                                new_task(x, l, &t.instance.value, &need, provider.as_deref());
                            placed.slots.push(idx);
                            placed.tasks.push(task);
                            break;
                        }
                        Err(_) if scope != Considered::Everything => scope = Considered::Everything,
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
            task_keys = placed
                .tasks
                .iter()
                .map(|t| keys::task(&cluster, &t.id))
                .collect();
            // Reserved before the lock is let go: the next placement counts
            // these tasks whether or not the watch has brought them.
            for (key, &slot) in task_keys.iter().zip(&placed.slots) {
                view.reserve(&l.capacity, slot, key, &cluster, &l.group, &need);
            }
        }
        if placed.tasks.is_empty() {
            return Ok(placed);
        }
        let decided = started.elapsed();
        // The instance records are compared, not written: a host drained or
        // deregistered meanwhile makes this retry.
        let mut txn = Txn::new().when(l.cluster.unchanged());
        for t in touched.values() {
            txn = txn.when(t.instance.unchanged());
        }
        for (t, key) in placed.tasks.iter().zip(&task_keys) {
            txn = txn.then(records::put(key, t));
        }
        // The token is taken in the same commit: of two requests racing
        // with one token, one places and the other finds its record.
        if let Some((token, lease)) = token {
            txn = txn
                .when(Compare::NotExists(token.key().to_string()))
                .then(token.remember(
                    lease,
                    placed.tasks.iter().map(|t| t.arn.clone()).collect(),
                    placed.failures(),
                ));
        }
        // Committed apart from this request, so that a caller who goes
        // away cannot leave the reservations behind: they are released
        // exactly when the commit did not happen.
        let (store, cache) = (c.store.clone(), c.cache.clone());
        let committed = tokio::spawn(async move {
            let committed = commit(store.as_ref(), txn).await;
            if !matches!(committed, Ok(true)) {
                cache.release(&task_keys);
            }
            committed
        })
        .await
        .map_err(|e| wharf_protocol::AwsError::internal(format!("placement commit failed: {e}")))?;
        if committed? {
            c.metrics
                .placement_decision
                .record(decided, placed.tasks.len() as u64);
            return Ok(placed);
        }
        if let Some((token, _)) = token {
            if c.store
                .get(token.key())
                .await
                .map_err(from_store)?
                .is_some()
            {
                // Another request with the token placed: the caller answers with it.
                break;
            }
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
    let mut l = prepare(
        c,
        x,
        r.cluster.as_deref(),
        &r.task_definition,
        r.overrides.as_ref(),
        r.started_by.as_deref(),
        r.group.as_deref(),
        r.tags.as_deref(),
        r.launch_type.as_ref(),
        r.capacity_provider_strategy.as_deref(),
        r.enable_execute_command.unwrap_or(false),
        r.network_configuration.as_ref(),
    )
    .await?;
    platform_version(r.platform_version.as_deref())?;
    standalone_members(
        &mut l,
        r.propagate_tags.as_ref(),
        r.enable_ecs_managed_tags,
        r.volume_configurations.as_deref(),
    )?;
    let rules = Rules::parse(
        r.placement_constraints.as_deref().unwrap_or_default(),
        r.placement_strategy.as_deref().unwrap_or_default(),
        &l.td.definition,
    )?;
    // The token belongs to the cluster the request names.
    let cluster = l.cluster.value.key();
    let token = Token::of(
        RUN_TASK,
        x.region(),
        cluster.name(),
        r.client_token.as_deref(),
        &r,
    )?;
    if let Some(token) = &token {
        if let Some(first) = token.recall(c, RUN_TASK).await? {
            return run_again(c, &cluster, first).await;
        }
    }
    let lease = c.tokens.for_token(c, token.as_ref()).await?;
    let guard = token.as_ref().zip(lease);
    let placed = match place(c, x, &l, count as usize, None, &rules, guard).await {
        Ok(placed) => placed,
        Err(e) => {
            // A request with the same token may have placed meanwhile.
            if let Some(token) = &token {
                if let Some(first) = token.recall(c, RUN_TASK).await? {
                    return run_again(c, &cluster, first).await;
                }
            }
            return Err(e);
        }
    };
    Ok(ecs::RunTaskResponse {
        tasks: Some(placed.tasks.iter().map(|t| wire::task(t, true)).collect()),
        failures: Some(placed.failures()),
    })
}

const RUN_TASK: &str = "RunTask";

/// Wharf's managed capacity is one platform version, 1.4.0 (LATEST).
pub(crate) fn platform_version(v: Option<&str>) -> ApiResult<()> {
    match v {
        None | Some("LATEST") | Some("1.4.0") => Ok(()),
        Some(v) => Err(invalid(format!(
            "The specified platform version ({v}) does not exist: Wharf's managed capacity is platform version 1.4.0 (LATEST)."
        ))),
    }
}

/// The tags a task starts with: its own, the ones `propagateTags` copies
/// (its own win), and with `enableECSManagedTags` (cluster, service) ECS's
/// `aws:ecs:clusterName` and `aws:ecs:serviceName`.
pub(crate) fn task_tags(
    own: Tags,
    propagated: Option<&Tags>,
    managed: Option<(&str, Option<&str>)>,
) -> Tags {
    let mut tags = propagated.cloned().unwrap_or_default();
    tags.extend(own);
    if let Some((cluster, service)) = managed {
        tags.insert("aws:ecs:clusterName".into(), cluster.into());
        if let Some(service) = service {
            tags.insert("aws:ecs:serviceName".into(), service.into());
        }
    }
    tags
}

/// RunTask's and StartTask's propagateTags and enableECSManagedTags, applied
/// to what `prepare` made; the members neither can act on, refused.
fn standalone_members(
    l: &mut Launch,
    propagate: Option<&ecs::PropagateTags>,
    managed_tags: Option<bool>,
    volume_configurations: Option<&[ecs::TaskVolumeConfiguration]>,
) -> ApiResult<()> {
    let propagated = match propagate {
        None | Some(ecs::PropagateTags::None) => None,
        Some(ecs::PropagateTags::TaskDefinition) => Some(&l.td.tags),
        Some(ecs::PropagateTags::Service) => {
            return Err(invalid(
                "The SERVICE option of propagateTags is only for tasks of a service; a standalone task can propagate TASK_DEFINITION tags.",
            ))
        }
        Some(other) => {
            return Err(invalid(format!(
                "Invalid propagateTags '{}'.",
                other.as_str()
            )))
        }
    };
    let cluster = l.cluster.value.name.clone();
    l.tags = task_tags(
        std::mem::take(&mut l.tags),
        propagated,
        (managed_tags == Some(true)).then_some((cluster.as_str(), None)),
    );
    if volume_configurations.is_some_and(|v| !v.is_empty()) {
        return Err(unsupported("volumeConfigurations (Amazon EBS volumes)"));
    }
    Ok(())
}

/// The answer to a RunTask retried with its clientToken: the tasks the
/// first request started, as they are now, and its failures.
async fn run_again(
    c: &Control,
    cluster: &ClusterKey,
    first: TokenRecord<Vec<ecs::Failure>>,
) -> ApiResult<ecs::RunTaskResponse> {
    let mut tasks = vec![];
    for task_arn in &first.resource_ids {
        let (_, id) = arn::task_id(task_arn).map_err(from_core)?;
        if let Some(t) =
            records::get::<TaskRecord>(c.store.as_ref(), &keys::task(cluster, &id)).await?
        {
            tasks.push(wire::task(&t.value, true));
        }
    }
    Ok(ecs::RunTaskResponse {
        tasks: Some(tasks),
        failures: Some(first.outcome),
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
    let mut l = prepare(
        c,
        x,
        r.cluster.as_deref(),
        &r.task_definition,
        r.overrides.as_ref(),
        r.started_by.as_deref(),
        r.group.as_deref(),
        r.tags.as_deref(),
        // StartTask names its instances: they are EC2 capacity.
        Some(&ecs::LaunchType::Ec2),
        None,
        r.enable_execute_command.unwrap_or(false),
        r.network_configuration.as_ref(),
    )
    .await?;
    standalone_members(
        &mut l,
        r.propagate_tags.as_ref(),
        r.enable_ecs_managed_tags,
        r.volume_configurations.as_deref(),
    )?;
    // An instance that is not (or no longer) the cluster's is a failure.
    let cluster = l.cluster.value.name.clone();
    let (mut ids, mut missing) = (vec![], vec![]);
    for given in &r.container_instances {
        let (_, id) = arn::container_instance_id(given).map_err(from_core)?;
        match super::instances::find(c, &l.cluster.value.key(), given).await? {
            Some(v) if v.value.status != "INACTIVE" => ids.push(id),
            _ => missing.push(ecs::Failure {
                arn: Some(x.scope.container_instance(&cluster, &id)),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
    if ids.is_empty() {
        return Ok(ecs::StartTaskResponse {
            tasks: Some(vec![]),
            failures: Some(missing),
        });
    }
    // StartTask names its instances: no strategy, but the task
    // definition's constraints still hold.
    let rules = Rules::parse(&[], &[], &l.td.definition)?;
    let placed = place(c, x, &l, ids.len(), Some(&ids), &rules, None).await?;
    let mut failures = placed.failures();
    failures.extend(missing);
    Ok(ecs::StartTaskResponse {
        tasks: Some(placed.tasks.iter().map(|t| wire::task(t, true)).collect()),
        failures: Some(failures),
    })
}

/// Finds a task by ID or ARN in the request's cluster.
pub(crate) async fn find(
    c: &Control,
    x: &Ctx,
    cluster: Option<&str>,
    given: &str,
) -> ApiResult<Option<Versioned<TaskRecord>>> {
    let (from_arn, id) = arn::task_id(given).map_err(from_core)?;
    if !arn::in_region(given, x.region()) {
        return Ok(None);
    }
    let cluster = match from_arn {
        Some(name) => name,
        None => cluster_name(x, cluster)?,
    };
    records::get(c.store.as_ref(), &keys::task(&x.cluster_key(&cluster), &id)).await
}

pub async fn stop(
    c: &Control,
    x: &Ctx,
    r: ecs::StopTaskRequest,
) -> ApiResult<ecs::StopTaskResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    active_cluster(c, x, &name).await?;
    let reason = r
        .reason
        .clone()
        .unwrap_or_else(|| "Task stopped by user".into());
    if reason.len() > 255 {
        return Err(invalid("reason may contain up to 255 characters."));
    }
    for _ in 0..records::MAX_ATTEMPTS {
        let Some(mut v) = find(c, x, Some(&name), &r.task).await? else {
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
    let name = cluster_name(x, r.cluster.as_deref())?;
    active_cluster(c, x, &name).await?;
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
        match find(c, x, Some(&name), given).await? {
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
    x: &Ctx,
    r: ecs::ListTasksRequest,
) -> ApiResult<ecs::ListTasksResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    active_cluster(c, x, &name).await?;
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
    if r.daemon_name.is_some() {
        // Wharf has no daemons (the Daemon operations are unsupported), so
        // no task is a daemon's.
        return Ok(ecs::ListTasksResponse {
            task_arns: Some(vec![]),
            next_token: None,
        });
    }
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
    let prefix = keys::tasks(&x.cluster_key(&name));
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

#[cfg(test)]
mod tests {
    use crate::{Control, Ctx};
    use serde_json::{json, Value};
    use std::sync::Arc;
    use wharf_core::clock::ManualClock;
    use wharf_core::records::keys;
    use wharf_store::{
        LeaseId, MemStore, Op, RangeRequest, RangeResponse, Revision, Store, StoreError, Txn,
        TxnResponse, WatchEvent,
    };

    /// A store whose writes take 0-5 ms, so that concurrent placements
    /// really overlap between deciding and committing, and a later write
    /// may land first.
    struct SlowWrites(MemStore);

    #[async_trait::async_trait]
    impl Store for SlowWrites {
        async fn get(&self, key: &str) -> Result<Option<wharf_store::KeyValue>, StoreError> {
            self.0.get(key).await
        }
        async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
            self.0.range(req).await
        }
        async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
            let wait = rand::random::<u64>() % 5_000;
            tokio::time::sleep(std::time::Duration::from_micros(wait)).await;
            self.0.txn(txn).await
        }
        async fn watch(
            &self,
            prefix: &str,
            from: Revision,
        ) -> Result<tokio::sync::mpsc::Receiver<WatchEvent>, StoreError> {
            self.0.watch(prefix, from).await
        }
        async fn current_revision(&self) -> Result<Revision, StoreError> {
            self.0.current_revision().await
        }
        async fn grant_lease(&self, ttl: std::time::Duration) -> Result<LeaseId, StoreError> {
            self.0.grant_lease(ttl).await
        }
        async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
            self.0.keep_alive(lease).await
        }
        async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
            self.0.revoke_lease(lease).await
        }
    }

    async fn ecs(c: &Control, op: &str, body: Value) -> Result<Value, String> {
        let body = serde_json::to_vec(&body).unwrap();
        crate::ecs::dispatch(c, &Ctx::for_tests(), op, &body)
            .await
            .map(|b| serde_json::from_slice(&b).unwrap())
            .map_err(|e| format!("{e:?}"))
    }

    fn remaining_cpu(instance: &Value) -> i64 {
        instance["remainingResources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "CPU")
            .unwrap()["integerValue"]
            .as_i64()
            .unwrap()
    }

    /// A host of `cluster_on`: CPU units, MiB, availability zone.
    type Host = (i64, i64, Option<&'static str>);

    /// Cluster `c` on `store` with connected instances `hosts` and task
    /// definition `web` needing `need` (CPU units, MiB); the instance ARNs.
    async fn cluster_on(
        store: wharf_store::DynStore,
        need: (i64, i64),
        hosts: impl IntoIterator<Item = Host>,
    ) -> (Control, Vec<String>) {
        let c = Control::new(store, Arc::new(ManualClock::new(0)), Default::default());
        ecs(&c, "CreateCluster", json!({"clusterName": "c"}))
            .await
            .unwrap();
        ecs(
            &c,
            "RegisterTaskDefinition",
            json!({"family": "web", "containerDefinitions": [
                {"name": "app", "image": "x", "cpu": need.0, "memory": need.1}
            ]}),
        )
        .await
        .unwrap();
        let mut arns = vec![];
        for (cpu, memory, zone) in hosts {
            let attributes: Vec<Value> = zone
                .map(|z| json!({"name": "ecs.availability-zone", "value": z}))
                .into_iter()
                .collect();
            let r = ecs(
                &c,
                "RegisterContainerInstance",
                json!({"cluster": "c", "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": memory}
                ], "attributes": attributes}),
            )
            .await
            .unwrap();
            let arn = r["containerInstance"]["containerInstanceArn"]
                .as_str()
                .unwrap()
                .to_string();
            let id = arn.rsplit('/').next().unwrap();
            c.store
                .txn(Txn::new().then(Op::put(
                    keys::agent_session(
                        &wharf_core::records::ClusterKey::new("us-east-1", "c"),
                        id,
                    ),
                    b"1".to_vec(),
                )))
                .await
                .unwrap();
            arns.push(arn);
        }
        (c, arns)
    }

    /// A store with slow writes, a cluster `c` of `hosts` connected
    /// instances of 1024 CPU units, and task definition `web` needing 256;
    /// the instance ARNs.
    async fn cluster(hosts: usize) -> (Control, Vec<String>) {
        let store = Arc::new(SlowWrites(MemStore::new()));
        cluster_on(store, (256, 64), vec![(1024, 4096, None); hosts]).await
    }

    #[tokio::test]
    async fn spread_by_zone_balances_the_whole_cluster_not_the_sample() {
        // 300 hosts in 3 zones: more than are ranked whole, so each task
        // sees a sample of them; the zone counts must still be the
        // cluster's.
        let zone = |n: usize| ["a", "b", "c"][n % 3];
        let hosts = (0..300).map(|n| (1024, 4096, Some(zone(n))));
        let (c, arns) = cluster_on(Arc::new(MemStore::new()), (1, 8), hosts).await;
        let zone_of: std::collections::HashMap<String, &str> = arns
            .into_iter()
            .enumerate()
            .map(|(n, arn)| (arn, zone(n)))
            .collect();
        let mut per_zone = std::collections::BTreeMap::new();
        // One task per call, then ten per call.
        for count in [1, 1, 1, 1, 1, 1, 10, 10, 10, 10] {
            let r = ecs(
                &c,
                "RunTask",
                json!({"cluster": "c", "taskDefinition": "web", "count": count,
                       "placementStrategy": [
                           {"type": "spread", "field": "attribute:ecs.availability-zone"}]}),
            )
            .await
            .unwrap();
            for t in r["tasks"].as_array().unwrap() {
                let zone = zone_of[t["containerInstanceArn"].as_str().unwrap()];
                *per_zone.entry(zone).or_insert(0) += 1;
            }
            let counts: Vec<i32> = per_zone.values().copied().collect();
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(
                hi - lo <= 1 && (counts.len() == 3 || *hi == 1),
                "zones uneven after a call of {count}: {per_zone:?}"
            );
        }
        assert_eq!(per_zone.values().sum::<i32>(), 46);
    }

    #[tokio::test]
    async fn binpack_fills_the_fullest_host_first_on_a_cluster_larger_than_a_sample() {
        let hosts = vec![(4096, 2048, None); 40];
        let (c, _) = cluster_on(Arc::new(MemStore::new()), (100, 512), hosts).await;
        // Four tasks fill a host's memory: eight tasks, one at a time, fill
        // exactly two hosts, as ECS's binpack does.
        let mut hosts = std::collections::BTreeMap::new();
        for _ in 0..8 {
            let r = ecs(
                &c,
                "RunTask",
                json!({"cluster": "c", "taskDefinition": "web",
                       "placementStrategy": [{"type": "binpack", "field": "memory"}]}),
            )
            .await
            .unwrap();
            let on = r["tasks"][0]["containerInstanceArn"]
                .as_str()
                .unwrap()
                .to_string();
            *hosts.entry(on).or_insert(0) += 1;
        }
        assert_eq!(
            hosts.values().copied().collect::<Vec<_>>(),
            [4, 4],
            "{hosts:?}"
        );
    }

    async fn describe(c: &Control, arns: &[String]) -> Vec<Value> {
        let r = ecs(
            c,
            "DescribeContainerInstances",
            json!({"cluster": "c", "containerInstances": arns}),
        )
        .await
        .unwrap();
        r["containerInstances"].as_array().unwrap().clone()
    }

    /// `callers` RunTask calls of `request` at once; every task they placed.
    async fn run_at_once(c: &Arc<Control>, callers: usize, request: Value) -> Vec<Value> {
        let calls: Vec<_> = (0..callers)
            .map(|_| {
                let (c, request) = (c.clone(), request.clone());
                tokio::spawn(async move { ecs(&c, "RunTask", request).await.unwrap() })
            })
            .collect();
        let mut tasks = vec![];
        for call in calls {
            let r = call.await.unwrap();
            tasks.extend(r["tasks"].as_array().unwrap().iter().cloned());
        }
        tasks
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_placements_spread_by_instance_count_each_others_tasks() {
        // Commits take 0-5 ms, so most of these calls decide while others'
        // tasks are reserved and not yet committed: the spread must count
        // them, or calls that tie pile onto the same hosts.
        let store = Arc::new(SlowWrites(MemStore::new()));
        let (c, arns) = cluster_on(store, (16, 64), vec![(1024, 4096, None); 4]).await;
        let request = json!({"cluster": "c", "taskDefinition": "web",
                             "placementStrategy": [{"type": "spread", "field": "instanceId"}]});
        let tasks = run_at_once(&Arc::new(c), 16, request).await;
        let mut per_host = std::collections::HashMap::new();
        for t in &tasks {
            let on = t["containerInstanceArn"].as_str().unwrap().to_string();
            *per_host.entry(on).or_insert(0) += 1;
        }
        for arn in &arns {
            assert_eq!(per_host.get(arn), Some(&4), "{per_host:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_placements_fill_hosts_exactly_and_a_stop_gives_room_back() {
        let (c, arns) = cluster(3).await;
        let c = Arc::new(c);
        // 16 callers want 48 tasks; 3 hosts have room for 4 each.
        let request = json!({"cluster": "c", "taskDefinition": "web", "count": 3});
        let tasks = run_at_once(&c, 16, request).await;
        assert_eq!(tasks.len(), 12, "every slot taken once, none twice");
        for arn in &arns {
            let on = tasks
                .iter()
                .filter(|t| t["containerInstanceArn"] == arn.as_str())
                .count();
            assert_eq!(on, 4, "{arn} runs {on} tasks of 256 of its 1024 CPU");
        }
        for i in describe(&c, &arns).await {
            assert_eq!(remaining_cpu(&i), 0);
        }
        let refused = ecs(
            &c,
            "RunTask",
            json!({"cluster": "c", "taskDefinition": "web"}),
        )
        .await
        .unwrap();
        assert_eq!(refused["tasks"].as_array().unwrap().len(), 0);
        assert_eq!(refused["failures"][0]["reason"], "RESOURCE:CPU");

        // The agent reports one task STOPPED: its host has room again.
        let stopped = &tasks[0];
        let report = json!({
            "cluster": "c",
            "taskArn": stopped["taskArn"],
            "status": "STOPPED",
            "containers": [],
        });
        crate::agent_api::dispatch(
            &c,
            &Ctx::for_tests(),
            wharf_core::agent_protocol::REPORT_TASK_STATE,
            &serde_json::to_vec(&report).unwrap(),
        )
        .await
        .unwrap();
        let host = stopped["containerInstanceArn"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            remaining_cpu(&describe(&c, std::slice::from_ref(&host)).await[0]),
            256
        );
        let again = ecs(
            &c,
            "RunTask",
            json!({"cluster": "c", "taskDefinition": "web"}),
        )
        .await
        .unwrap();
        assert_eq!(again["tasks"][0]["containerInstanceArn"], host.as_str());
    }

    #[tokio::test]
    async fn a_host_closed_for_deregistration_takes_no_task_until_reopened() {
        let (c, arns) = cluster(1).await;
        let id = arns[0].rsplit('/').next().unwrap();
        let run = || {
            ecs(
                &c,
                "RunTask",
                json!({"cluster": "c", "taskDefinition": "web"}),
            )
        };
        let closing = c
            .cache
            .close(
                &c.store,
                &wharf_core::records::ClusterKey::new("us-east-1", "c"),
                id,
            )
            .await
            .unwrap();
        let refused = run().await.unwrap_err();
        assert!(refused.contains("No Container Instances"), "{refused}");
        drop(closing);
        let placed = run().await.unwrap();
        assert_eq!(placed["tasks"][0]["containerInstanceArn"], arns[0].as_str());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deregistration_racing_placements_never_leaves_a_task_on_an_inactive_host() {
        for _ in 0..5 {
            let (c, arns) = cluster(1).await;
            let c = Arc::new(c);
            // A stream of placements, and a deregistration in its middle.
            let runs: Vec<_> = (0..12u64)
                .map(|n| {
                    let c = c.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_micros(500 * n)).await;
                        ecs(
                            &c,
                            "RunTask",
                            json!({"cluster": "c", "taskDefinition": "web"}),
                        )
                        .await
                    })
                })
                .collect();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            let dereg = ecs(
                &c,
                "DeregisterContainerInstance",
                json!({"cluster": "c", "containerInstance": arns[0]}),
            )
            .await;
            for r in runs {
                let _ = r.await.unwrap();
            }
            let listed = ecs(&c, "ListTasks", json!({"cluster": "c"})).await.unwrap();
            let live = listed["taskArns"].as_array().unwrap().len();
            // Refused while it had tasks; once deregistered, it never gets one.
            match dereg {
                Ok(_) => assert_eq!(live, 0, "a task was placed on a deregistered host"),
                Err(e) => assert!(e.contains("Found running tasks") && live > 0, "{e}"),
            }
        }
    }
}
