//! ECS services behind load balancers: the controller's side of it. Each
//! pass over a cluster registers the targets of its RUNNING load-balanced
//! tasks, deregisters those of tasks leaving (DEACTIVATING) or gone, lets a
//! DEACTIVATING task go on to stop once its targets have drained, and says
//! how each task stands in its target groups for the scheduler's plan.
//!
//! A target is where the load balancer reaches the task's container port:
//! for an `ip` target group the task's own address (awsvpc); for an
//! `instance` target group the container instance's `ec2InstanceId` and the
//! host port Docker bound (bridge and host networking).

use crate::error::{from_store, ApiResult};
use crate::records::{commit, Versioned};
use crate::Control;
use std::collections::{HashMap, HashSet};
use wharf_core::lifecycle::{DesiredStatus, TaskStatus};
use wharf_core::records::{InstanceRecord, TaskRecord};
use wharf_core::service::LbHealth;
use wharf_lb::records::TargetGroupRecord;
use wharf_lb::registry::{self, Registry, Standing};
use wharf_store::Txn;

/// Where `group` reaches `task`'s `container`:`port`, once known.
pub fn target_of(
    task: &TaskRecord,
    instances: &[InstanceRecord],
    group: &TargetGroupRecord,
    container: &str,
    port: i32,
) -> Option<(String, i32)> {
    if group.target_type == "ip" {
        let ip = task.eni.as_ref()?.private_ipv4.clone()?;
        return Some((ip, port));
    }
    let instance = instances
        .iter()
        .find(|i| Some(&i.id) == task.instance_id.as_ref())?;
    let id = instance.hostname.clone()?;
    let c = task.containers.iter().find(|c| c.name == container)?;
    let host_port = c
        .network_bindings
        .iter()
        .find(|b| b.container_port == Some(port))
        .and_then(|b| b.host_port)?;
    Some((id, host_port))
}

/// What a pass did and found.
#[derive(Debug, Default)]
pub struct Synced {
    /// The standing of each load-balanced task, by task id.
    pub health: HashMap<String, LbHealth>,
    /// The service events ECS writes for it, by task group
    /// (`service:NAME`): targets registered, deregistered.
    pub events: HashMap<String, Vec<String>>,
}

/// One pass for `tasks` (a cluster's, with their revisions).
pub async fn sync(
    c: &Control,
    tasks: &[Versioned<TaskRecord>],
    instances: &[InstanceRecord],
    now: i64,
) -> ApiResult<Synced> {
    let mut out = Synced::default();
    if tasks.iter().all(|t| t.value.load_balancers.is_empty()) {
        return Ok(out);
    }
    // (group, registered?, target group) -> targets, for the events.
    let mut changed: std::collections::BTreeMap<(String, bool, String), usize> = Default::default();
    let reg = Registry::load(c.store.as_ref()).await.map_err(from_store)?;
    // Targets RUNNING tasks hold: a task that stopped must not deregister
    // the same host port a newer task now serves on.
    let mut wanted: HashSet<(String, String, i32)> = HashSet::new();
    let mut plans = Vec::new();
    for v in tasks.iter().filter(|v| !v.value.load_balancers.is_empty()) {
        let t = &v.value;
        let mut targets = Vec::new();
        for lb in &t.load_balancers {
            let (Some(arn), Some(container), Some(port)) = (
                lb.target_group_arn.as_deref(),
                lb.container_name.as_deref(),
                lb.container_port,
            ) else {
                continue;
            };
            let Some(group) = reg.group(arn) else {
                continue;
            };
            let target = target_of(t, instances, group, container, port);
            if let Some((id, p)) = &target {
                if t.last_status == TaskStatus::Running
                    && t.desired_status == DesiredStatus::Running
                {
                    wanted.insert((group.arn.clone(), id.clone(), *p));
                }
            }
            targets.push((group, target));
        }
        plans.push((v, targets));
    }
    for (v, targets) in plans {
        let t = &v.value;
        let serving =
            t.last_status == TaskStatus::Running && t.desired_status == DesiredStatus::Running;
        let mut health = LbHealth::Healthy;
        let mut drained = true;
        for (group, target) in &targets {
            let Some((id, port)) = target else {
                // Not yet bound: the task cannot be healthy behind this group.
                if health == LbHealth::Healthy {
                    health = LbHealth::Initial;
                }
                continue;
            };
            let standing = reg.standing(group, id, *port);
            let txn: Option<Txn> = if serving {
                registry::register(&reg, group, id, *port, now)
            } else if !wanted.contains(&(group.arn.clone(), id.clone(), *port)) {
                registry::deregister(&reg, group, id, *port, now)
            } else {
                None
            };
            if let Some(txn) = txn {
                let action = if serving {
                    "registered"
                } else {
                    "deregistering"
                };
                if commit(c.store.as_ref(), txn).await? {
                    tracing::info!(task = %t.id, target_group = %group.arn, %id, port, "{action} target");
                    *changed
                        .entry((t.group.clone(), serving, group.arn.clone()))
                        .or_default() += 1;
                }
            }
            if !matches!(standing, Standing::Absent)
                && !wanted.contains(&(group.arn.clone(), id.clone(), *port))
            {
                drained = false;
            }
            health = match (&health, standing) {
                (LbHealth::Unhealthy(_), _) => health,
                (_, Standing::Unhealthy) => LbHealth::Unhealthy(group.arn.clone()),
                (LbHealth::Healthy, Standing::Healthy) => LbHealth::Healthy,
                _ => LbHealth::Initial,
            };
        }
        if targets.is_empty() {
            // Its target groups are gone: nothing to wait for.
            health = LbHealth::Healthy;
        }
        if t.last_status == TaskStatus::Deactivating && drained {
            release(c, v).await?;
        }
        out.health.insert(t.id.clone(), health);
    }
    for ((group, registered, arn), n) in changed {
        let Some(service) = group.strip_prefix("service:") else {
            continue;
        };
        let verb = if registered {
            "registered"
        } else {
            "deregistered"
        };
        out.events.entry(group.clone()).or_default().push(format!(
            "(service {service}) {verb} {n} targets in (target-group {arn})"
        ));
    }
    Ok(out)
}

/// Lets a DEACTIVATING task, its targets drained, go on to stop: STOPPING,
/// which its agent sees as desired STOPPED.
async fn release(c: &Control, v: &Versioned<TaskRecord>) -> ApiResult<()> {
    let mut next = v.clone();
    next.value.last_status = TaskStatus::Stopping;
    next.value.version += 1;
    if commit(
        c.store.as_ref(),
        Txn::new().when(v.unchanged()).then(next.put()),
    )
    .await?
    {
        tracing::info!(task = %v.value.id, "targets drained; stopping");
    }
    Ok(())
}
