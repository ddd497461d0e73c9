//! The service controller: follows the store's watch and, for every cluster
//! whose services, tasks, instances or agents changed (and once a second,
//! for what time alone changes: health settling, grace periods, the launch
//! throttle), runs the pure scheduler [`wharf_core::service::plan`] for each
//! service and applies the plan. Every write is compare-and-swap: a
//! concurrent API write makes the next pass re-plan, never clobbers it.
//!
//! One controller runs per store: `wharf server` and `wharf up` run it in
//! process (the embedded store has a single writer process; an HA store
//! would elect a leader here).

use crate::ecs::tasks::{self, Launch, Rules};
use crate::ecs::{active_cluster, connected_instances, taskdefs};
use crate::error::ApiResult;
use crate::records::{self, commit, Versioned};
use crate::{Control, Ctx};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeSet;
use std::time::Duration;
use wharf_core::arn::Scope;
use wharf_core::lifecycle::{request_stop, DesiredStatus};
use wharf_core::placement::Misfit;
use wharf_core::records::{keys, ClusterKey, InstanceRecord, TaskRecord};
use wharf_core::service::{
    at_rest, plan, LbHealth, Plan, ServiceRecord, Settings, Start, STOP_SCHEDULER,
};
use wharf_store::Txn;

/// Runs until the process ends.
pub async fn run(c: Control, settings: Settings) {
    let mut rng = StdRng::from_entropy();
    loop {
        let from = match c.store.current_revision().await {
            Ok(r) => r + 1,
            Err(e) => {
                tracing::error!(error = %e, "controller cannot read the store");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut watch = match c.store.watch("/", from).await {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "controller cannot watch the store");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // Clusters whose every service is at rest (`service::at_rest`): the
        // tick passes them by until a change to one of their keys.
        let mut resting: BTreeSet<ClusterKey> = BTreeSet::new();
        loop {
            let mut dirty: BTreeSet<ClusterKey> = BTreeSet::new();
            tokio::select! {
                ev = watch.recv() => {
                    let Some(ev) = ev else { break };
                    let mut targets_changed = concerns_targets(&ev.kv.key);
                    dirty.extend(cluster_of(&ev.kv.key));
                    // Take whatever else is already queued: one pass per burst.
                    while let Ok(ev) = watch.try_recv() {
                        targets_changed |= concerns_targets(&ev.kv.key);
                        dirty.extend(cluster_of(&ev.kv.key));
                    }
                    // A target's health or registration may concern any
                    // cluster's load-balanced service.
                    if targets_changed {
                        match clusters_with_services(&c).await {
                            Ok(all) => dirty.extend(all),
                            Err(e) => tracing::warn!(error = %e.message, "controller cannot list services"),
                        }
                    }
                    // FARGATE services of any cluster run on the managed
                    // capacity: a change there concerns them all.
                    if dirty.contains(&ClusterKey::managed()) {
                        resting.clear();
                    }
                    for cluster in &dirty {
                        resting.remove(cluster);
                    }
                }
                _ = tick.tick() => {
                    match clusters_with_services(&c).await {
                        Ok(all) => dirty = all.into_iter().filter(|c| !resting.contains(c)).collect(),
                        Err(e) => tracing::warn!(error = %e.message, "controller tick failed"),
                    }
                }
            }
            for cluster in dirty {
                match reconcile(&c, &cluster, &settings, &mut rng).await {
                    Ok(true) => {
                        resting.insert(cluster);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(%cluster, error = %e.message, "service reconcile failed; will retry");
                    }
                }
            }
        }
        tracing::warn!("store watch ended; resubscribing");
    }
}

/// Whether a key is a load balancer target or its health.
fn concerns_targets(key: &str) -> bool {
    key.starts_with(wharf_lb::records::keys::TARGETS)
        || key.starts_with(wharf_lb::records::keys::HEALTH)
}

/// The cluster a key belongs to, for the kinds the scheduler looks at.
fn cluster_of(key: &str) -> Option<ClusterKey> {
    [
        keys::SERVICES,
        keys::TASKS,
        keys::INSTANCES,
        keys::AGENT_SESSIONS,
    ]
    .iter()
    .find_map(|prefix| ClusterKey::split(prefix, key))
    .map(|(cluster, _)| cluster)
}

async fn clusters_with_services(c: &Control) -> ApiResult<BTreeSet<ClusterKey>> {
    let (all, _) = records::list::<ServiceRecord>(c.store.as_ref(), keys::SERVICES).await?;
    Ok(all
        .into_iter()
        .filter(|v| v.value.status != "INACTIVE")
        .map(|v| v.value.cluster_key())
        .collect())
}

/// One pass over a cluster's services; whether every one of them is at
/// rest (its plan changed nothing, and time alone would not change it).
pub async fn reconcile(
    c: &Control,
    cluster: &ClusterKey,
    settings: &Settings,
    rng: &mut StdRng,
) -> ApiResult<bool> {
    let (services, _) =
        records::list::<ServiceRecord>(c.store.as_ref(), &keys::services(cluster)).await?;
    if services.iter().all(|v| v.value.status == "INACTIVE") {
        return Ok(true);
    }
    let (tasks, _) = records::list::<TaskRecord>(c.store.as_ref(), &keys::tasks(cluster)).await?;
    // The cluster's instances and the managed capacity its FARGATE tasks run on.
    let mut instances = vec![];
    let mut connected = std::collections::HashSet::new();
    for capacity in [cluster.clone(), ClusterKey::managed()] {
        let (found, _) =
            records::list::<InstanceRecord>(c.store.as_ref(), &keys::instances(&capacity)).await?;
        instances.extend(found.into_iter().map(|v| v.value));
        connected.extend(connected_instances(c, &capacity).await?);
    }
    let mut synced = crate::lb_targets::sync(c, &tasks, &instances, c.clock.now()).await?;
    let lb_health = std::mem::take(&mut synced.health);
    let lb = |t: &TaskRecord| match lb_health.get(&t.id) {
        Some(h) => h.clone(),
        None if t.load_balancers.is_empty() => LbHealth::None,
        None => LbHealth::Initial,
    };
    let mut rest = true;
    for v in services
        .into_iter()
        .filter(|v| v.value.status != "INACTIVE")
    {
        let group = v.value.group();
        let mine: Vec<TaskRecord> = tasks
            .iter()
            .filter(|t| t.value.group == group)
            .map(|t| t.value.clone())
            .collect();
        let now = c.clock.now();
        let mut p = plan(
            &v.value,
            &mine,
            &instances,
            &|id| connected.contains(id),
            &lb,
            now,
            settings,
            rng,
        );
        for message in synced.events.remove(&group).unwrap_or_default() {
            p.service.event(now, message, rng);
        }
        rest &= p.start.is_empty()
            && p.stop.is_empty()
            && p.service == v.value
            && at_rest(&v.value, &mine, &lb, now, settings);
        // Traffic first: the listener rules forward as the planned record
        // says before its stops (blue's at CLEAN_UP, green's on a
        // rollback) take effect; a rule changed under us is retried.
        if !route(c, &p.service).await? {
            rest = false;
            continue;
        }
        apply(c, v, p, &mine, now, rng).await?;
    }
    Ok(rest)
}

fn scope_of(arn: &str) -> Scope {
    let mut parts = arn.split(':').skip(3);
    Scope {
        region: parts.next().unwrap_or("us-east-1").to_string(),
        account: parts.next().unwrap_or("000000000000").to_string(),
    }
}

/// Makes a blue/green service's listener rules forward as its record says
/// (`blue_green::traffic`), on every pass that plans it, so a write lost to
/// a crash is made on the next. False when a rule changed under the write.
async fn route(c: &Control, svc: &ServiceRecord) -> ApiResult<bool> {
    use wharf_lb::registry::{set_forward, Forwarded};
    let mut all = true;
    for r in wharf_core::service::blue_green::traffic(svc) {
        match set_forward(c.store.as_ref(), &r.rule, &r.groups)
            .await
            .map_err(crate::error::from_store)?
        {
            Forwarded::Missing => tracing::warn!(
                service = %svc.arn,
                rule = %r.rule,
                "blue/green listener rule is gone or no longer forwards; traffic not shifted"
            ),
            Forwarded::Changed => {
                tracing::info!(service = %svc.arn, rule = %r.rule, groups = ?r.groups, "shifted traffic")
            }
            Forwarded::Conflict => all = false,
            Forwarded::Unchanged => {}
        }
    }
    Ok(all)
}

/// Applies a plan, unless a concurrent write to the service wins (the next
/// pass re-plans from it).
async fn apply(
    c: &Control,
    v: Versioned<ServiceRecord>,
    p: Plan,
    tasks: &[TaskRecord],
    now: i64,
    rng: &mut StdRng,
) -> ApiResult<()> {
    let Plan {
        service: mut svc,
        start,
        stop,
    } = p;
    let cluster = svc.cluster_key();
    for order in &stop {
        for _ in 0..records::MAX_ATTEMPTS {
            let Some(mut t) =
                records::get::<TaskRecord>(c.store.as_ref(), &keys::task(&cluster, &order.task_id))
                    .await?
            else {
                break;
            };
            if !request_stop(&mut t.value, now, STOP_SCHEDULER, &order.reason) {
                break;
            }
            // Only while the service is as the plan read it: a stale plan
            // must not stop the tasks a concurrent rollback keeps.
            let txn = Txn::new()
                .when(t.unchanged())
                .when(v.unchanged())
                .then(t.put());
            if commit(c.store.as_ref(), txn).await? {
                break;
            }
            let current = records::get::<ServiceRecord>(c.store.as_ref(), &v.key).await?;
            if current.is_none_or(|s| s.mod_revision != v.mod_revision) {
                return Ok(());
            }
        }
    }
    for s in &start {
        launch(c, &mut svc, s, tasks, now, rng).await?;
    }
    if svc != v.value {
        svc.version = v.value.version + 1;
        let txn = Txn::new()
            .when(v.unchanged())
            .then(records::put(&v.key, &svc));
        // A concurrent UpdateService wins; the next pass re-plans from it.
        commit(c.store.as_ref(), txn).await?;
    }
    Ok(())
}

/// Starts a plan's tasks through the same placement engine as RunTask, and
/// writes ECS's events for what started and for what could not be placed.
async fn launch(
    c: &Control,
    svc: &mut ServiceRecord,
    s: &Start,
    tasks: &[TaskRecord],
    now: i64,
    rng: &mut StdRng,
) -> ApiResult<()> {
    let name = svc.name.clone();
    // In the service's region (its cluster's ARN names it).
    let x = Ctx {
        scope: scope_of(&svc.cluster_arn),
        now,
        caller: crate::auth::Caller::Root,
        host: None,
        source_ip: None,
    };
    let cluster = active_cluster(c, &x, &svc.cluster).await?;
    let td_region = wharf_core::arn::region_of(&s.task_definition);
    let td = taskdefs::resolve(c, td_region, &s.task_definition)
        .await?
        .value;
    let propagated = match svc.propagate_tags.as_deref() {
        Some("SERVICE") => Some(&svc.tags),
        Some("TASK_DEFINITION") => Some(&td.tags),
        _ => None,
    };
    let managed = svc
        .enable_ecs_managed_tags
        .then_some((svc.cluster.as_str(), Some(name.as_str())));
    let tags = tasks::task_tags(Default::default(), propagated, managed);
    let rules = Rules::parse(
        &svc.placement_constraints,
        &svc.placement_strategy,
        &td.definition,
    )?;
    // The deployment places by its own strategy; its live tasks count
    // toward the strategy's split.
    // An EXTERNAL service's task set places by its own launch type,
    // strategy, network and load balancers.
    let set = svc.task_sets.iter().find(|t| t.id == s.deployment);
    let deployment = svc.deployments.iter().find(|d| d.id == s.deployment);
    let (launch_type, given_strategy, network, load_balancers) = match (set, deployment) {
        (Some(t), _) => (
            t.launch_type.clone(),
            t.capacity_provider_strategy.clone(),
            t.network_configuration.clone(),
            t.load_balancers.clone(),
        ),
        (None, d) => (
            d.map_or(&svc.launch_type, |d| &d.launch_type).clone(),
            d.map(|d| d.capacity_provider_strategy.clone())
                .unwrap_or_default(),
            svc.network_configuration.clone(),
            deployment_load_balancers(svc, d),
        ),
    };
    let strategy = if given_strategy.is_empty() {
        vec![]
    } else {
        wharf_core::capacity::validate(&given_strategy, &cluster.value.capacity_providers)
            .map_err(crate::error::from_core)?
    };
    let on_providers = crate::ecs::capacity::per_provider(tasks.iter().filter(|t| {
        t.started_by.as_deref() == Some(s.deployment.as_str())
            && t.desired_status == DesiredStatus::Running
    }));
    let (capacity, subnet) = tasks::capacity_and_subnet(
        &svc.cluster_key(),
        &launch_type,
        &td.definition,
        network.as_ref(),
    )?;
    let mut l = Launch {
        capacity,
        subnet,
        cluster,
        overrides: Default::default(),
        launch_type,
        started_by: Some(s.deployment.clone()),
        group: svc.group(),
        tags,
        enable_execute_command: svc.enable_execute_command,
        td,
        load_balancers,
        strategy,
        on_providers,
        blocking_logs: tasks::blocking_logs(c, &x).await?,
    };
    let only = s.instance.clone().map(|i| vec![i]);
    let unplaceable = |why: String| {
        format!("(service {name}) was unable to place a task because no container instance met all of its requirements. {why} For more information, see the Troubleshooting section.")
    };
    // In batches of at most ten, one event each, as ECS starts a service's
    // tasks: a scale-out by thousands is many small commits, not one
    // transaction (and one event) holding every task.
    let mut left = s.count;
    while left > 0 {
        let batch = left.min(START_BATCH);
        let placed = match tasks::place(c, &x, &l, batch, only.as_deref(), &rules, None).await {
            Ok(placed) => placed,
            Err(e) if e.code == "InvalidParameterException" => {
                svc.event_once(
                    now,
                    60_000,
                    unplaceable(format!("Reason: {}", e.message)),
                    rng,
                );
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        left -= placed.tasks.len();
        for t in &placed.tasks {
            if let Some(p) = &t.capacity_provider_name {
                *l.on_providers.entry(p.clone()).or_default() += 1;
            }
        }
        if !placed.tasks.is_empty() {
            let ids: Vec<String> = placed
                .tasks
                .iter()
                .map(|t| format!("(task {})", t.id))
                .collect();
            svc.event(
                now,
                format!(
                    "(service {name}) has started {} tasks: {}.",
                    ids.len(),
                    ids.join(" ")
                ),
                rng,
            );
        }
        if placed.tasks.len() < batch {
            // The closest host is the one that passed the most checks.
            let why = match placed.misfits.iter().max_by_key(|(_, m)| closeness(*m)) {
                Some((arn, m)) => {
                    let id = arn.rsplit('/').next().unwrap_or(arn);
                    format!(
                        "The closest matching (container-instance {id}) {}.",
                        describe(*m)
                    )
                }
                None => "Reason: No Container Instances were found in your cluster.".into(),
            };
            svc.event_once(now, 60_000, unplaceable(why), rng);
            return Ok(());
        }
    }
    Ok(())
}

/// The load balancers a deployment's tasks register with: a blue/green
/// deployment's own group of each pair.
fn deployment_load_balancers(
    svc: &ServiceRecord,
    d: Option<&wharf_core::service::DeploymentRecord>,
) -> Vec<wharf_model::ecs::LoadBalancer> {
    let blue_green = svc.deployment_config.blue_green.is_some();
    svc.load_balancers
        .iter()
        .enumerate()
        .map(|(i, lb)| {
            let mut lb = lb.clone();
            // A blue/green service's deployment keeps the group it has
            // (blue's, replaced while it may serve again, included).
            if let (Some(d), true) = (d, blue_green || d.is_some_and(|d| d.blue_green.is_some())) {
                if let Some(g) = wharf_core::service::blue_green::group_of(svc, d, i) {
                    lb.target_group_arn = Some(g);
                }
            }
            lb
        })
        .collect()
}

/// Tasks of a service started per placement (and per event).
const START_BATCH: usize = 10;

/// How far through placement's checks a refused host got: status and
/// agent first, then CPU, memory, ports, then the constraints.
fn closeness(m: Misfit) -> u8 {
    match m {
        Misfit::NotActive => 0,
        Misfit::Disconnected => 1,
        Misfit::Cpu => 2,
        Misfit::Memory => 3,
        Misfit::Ports => 4,
        Misfit::MemberOf | Misfit::DistinctInstance => 5,
    }
}

/// How ECS's service events word a placement refusal.
fn describe(m: Misfit) -> &'static str {
    match m {
        Misfit::Cpu => "has insufficient CPU units available",
        Misfit::Memory => "has insufficient memory available",
        Misfit::Ports => "is already using a port required by your task",
        Misfit::NotActive => "is not ACTIVE",
        Misfit::Disconnected => "has a disconnected agent",
        Misfit::MemberOf => "doesn't match the memberOf placement constraint",
        Misfit::DistinctInstance => "already runs a task of this service (distinctInstance)",
    }
}
