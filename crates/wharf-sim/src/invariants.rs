//! What must hold after every step. A violation calls [`World::fail`],
//! which panics with the seed, the step and the recent trace.
//!
//! When each check runs:
//! - after every controller pass, fault/user action and the start of the
//!   quiet phase: [`full`] (all hosts, all tasks, all services);
//! - after every agent step: [`host`] and [`task`] for what it touched
//!   (an agent step changes one task and at most its host's allocation);
//! - for every plan, before it is applied: [`plan`]; after its starts are
//!   placed: [`after_starts`]; for every placement: [`placement`];
//! - during the quiet phase, after every controller pass: [`settled`]
//!   decides when the run is over, and a run that has not settled within
//!   `Config::quiet_ms` fails.
//!
//! The invariants:
//! 1. **Host accounting.** For every host, the reservations of its
//!    non-STOPPED tasks sum to exactly its `allocated` (CPU, memory, TCP
//!    and UDP ports), that sum is within `registered` CPU and memory, no
//!    port is taken twice or overlaps the host's own `reserved` ports, and
//!    a lost host has no live task.
//! 2. **Identity.** A task ID exists once (across all services) and stays
//!    on the instance it was placed on; placement only ever chooses an
//!    ACTIVE instance whose agent is connected at that moment.
//! 3. **Deployments** (REPLICA services; `max = floor(maximumPercent ×
//!    desired / 100)`, `min = ceil(minimumHealthyPercent × desired / 100)`):
//!    - a plan that starts tasks leaves at most `max` non-STOPPED tasks;
//!    - at every full check, non-STOPPED tasks ≤ `max`, except while a
//!      scale-in window is open (desiredCount lowered below the live count
//!      allows; closed once live ≤ `max`). Faults only ever remove tasks,
//!      and a store conflict only drops a plan, so no other window is needed;
//!    - a plan that stops any *healthy* task (as `service::healthy` counts
//!      it) leaves at least `min` healthy tasks not being stopped. Only the
//!      scheduler's own stops are judged: host loss and crashes may drop
//!      the healthy count, and health-check stops are of unhealthy tasks.
//!
//!    A deleted service (DRAINING, desired 0) is in a scale-in window.
//!    DAEMON services: at most one task the scheduler wants (desired
//!    RUNNING, not STOPPED) per instance.
//! 4. **Stopped tasks.** Every STOPPED task has a stop code, a stopped
//!    reason, `stoppingAt` and `stoppedAt`; a task asked to stop has a code
//!    and reason; `createdAt ≤ startedAt ≤ stoppingAt ≤ stoppedAt` where
//!    present, and `executionStoppedAt ≤ stoppedAt`.
//! 5. **Liveness** ([`settled`]): after faults stop, every REPLICA service
//!    has exactly `desired` RUNNING tasks, all of its single COMPLETED
//!    PRIMARY deployment, on ACTIVE instances, of a good revision; every
//!    DAEMON service has exactly one RUNNING task on every eligible ACTIVE
//!    instance and none elsewhere, with its PRIMARY COMPLETED; a deleted
//!    service is INACTIVE with no live task.
//! 6. **Rollback.** When the breaker fails a PRIMARY of a service with
//!    rollback and a last COMPLETED revision other than the failed one,
//!    the same plan makes that revision the new PRIMARY; and the service
//!    settles on it (unless the user deploys again). A blue/green
//!    deployment's failure (rollback or not) makes blue the PRIMARY again,
//!    as does the user's ROLLBACK at a PAUSE hook.
//! 7. **Blue/green.** While a blue/green deployment rolls out (its maximum
//!    is `max(200, maximumPercent)` percent), the scheduler stops no task
//!    of the deployment production traffic reaches, unless the same plan
//!    moves production away from it (health-check stops aside). The
//!    minimum-healthy rule of 3 does not apply: blue serves, untouched.

use crate::settings;
use crate::world::{daemon_eligible, Service, World};
use std::collections::{BTreeMap, BTreeSet};
use wharf_core::lifecycle::{DesiredStatus, TaskStatus};
use wharf_core::records::{Resources, TaskRecord};
use wharf_core::service::{self, Plan, ServiceRecord};

fn live(t: &TaskRecord) -> bool {
    t.last_status != TaskStatus::Stopped
}

fn wanted(t: &TaskRecord) -> bool {
    live(t) && t.desired_status == DesiredStatus::Running
}

pub fn max_total(s: &ServiceRecord) -> usize {
    // Blue/green runs green in full beside blue.
    let percent = match s.deployment_config.blue_green {
        Some(_) => s.deployment_config.maximum_percent.max(200),
        None => s.deployment_config.maximum_percent.max(0),
    };
    s.desired_count.max(0) as usize * percent as usize / 100
}

pub fn min_healthy(s: &ServiceRecord) -> usize {
    (s.desired_count.max(0) as usize * s.deployment_config.minimum_healthy_percent.max(0) as usize)
        .div_ceil(100)
}

pub fn live_count(s: &Service) -> usize {
    s.tasks.iter().filter(|t| live(t)).count()
}

/// Invariant 1 for one host, or for all of them (`None`) in one pass.
fn accounting(w: &World, only: Option<usize>) {
    let wanted_id = only.map(|h| w.instances[h].id.as_str());
    let mut sums: BTreeMap<&str, (Resources, usize)> = BTreeMap::new();
    for s in &w.services {
        for t in s.tasks.iter().filter(|t| live(t)) {
            let Some(on) = t.instance_id.as_deref() else {
                w.fail(format!("task {} is live but has no instance", t.id));
            };
            if wanted_id.is_some_and(|h| h != on) {
                continue;
            }
            let (sum, n) = sums.entry(on).or_default();
            *n += 1;
            sum.cpu += t.reservation.cpu;
            sum.memory += t.reservation.memory;
            for (mine, taken) in [
                (&t.reservation.tcp_ports, &mut sum.tcp_ports),
                (&t.reservation.udp_ports, &mut sum.udp_ports),
            ] {
                for p in mine {
                    if !taken.insert(*p) {
                        w.fail(format!("port {p} taken twice on {on} (task {})", t.id));
                    }
                }
            }
        }
    }
    let hosts: Vec<usize> = match only {
        Some(h) => vec![h],
        None => (0..w.instances.len()).collect(),
    };
    let none = (Resources::default(), 0);
    for h in hosts {
        let inst = &w.instances[h];
        let (sum, n) = sums.get(inst.id.as_str()).unwrap_or(&none);
        let reg = &inst.registered;
        if sum.cpu > reg.cpu || sum.memory > reg.memory {
            w.fail(format!(
                "{} over-committed: tasks take cpu {} mem {} of registered cpu {} mem {}",
                inst.id, sum.cpu, sum.memory, reg.cpu, reg.memory
            ));
        }
        if let Some(p) = sum.tcp_ports.intersection(&inst.reserved.tcp_ports).next() {
            w.fail(format!("{} gave its reserved port {p} to a task", inst.id));
        }
        if sum != &w.hosts[h].allocated {
            w.fail(format!(
                "{} allocated {:?} but its live tasks reserve {:?}",
                inst.id, w.hosts[h].allocated, sum
            ));
        }
        if *n != w.hosts[h].running {
            w.fail(format!(
                "{} counts {} running tasks, has {n} live",
                inst.id, w.hosts[h].running
            ));
        }
        if w.hosts[h].lost && *n > 0 {
            w.fail(format!("{} is lost but has {n} live tasks", inst.id));
        }
    }
}

/// Invariant 4 for one task.
fn stopped_task(w: &World, t: &TaskRecord) {
    let bad = |why: &str| w.fail(format!("task {}: {why}: {t:?}", t.id));
    if t.desired_status == DesiredStatus::Stopped
        && (t.stop_code.is_none() || t.stopped_reason.is_none())
    {
        bad("asked to stop without a stop code and reason");
    }
    if t.last_status == TaskStatus::Stopped {
        if t.stop_code.is_none() || t.stopped_reason.is_none() {
            bad("STOPPED without a stop code and reason");
        }
        if t.stopping_at.is_none() || t.stopped_at.is_none() {
            bad("STOPPED without stoppingAt and stoppedAt");
        }
        if t.desired_status != DesiredStatus::Stopped {
            bad("STOPPED but desired RUNNING");
        }
    }
    let times = [
        Some(t.created_at),
        t.started_at,
        t.stopping_at,
        t.stopped_at,
    ];
    let present: Vec<i64> = times.iter().flatten().copied().collect();
    if present.windows(2).any(|p| p[0] > p[1]) {
        bad("timestamps out of order (created ≤ started ≤ stopping ≤ stopped)");
    }
    if let (Some(e), Some(s)) = (t.execution_stopped_at, t.stopped_at) {
        if e > s {
            bad("executionStoppedAt after stoppedAt");
        }
    }
}

/// After an agent step: the host it touched.
pub fn host(w: &World, h: usize) {
    accounting(w, Some(h));
}

/// After an agent step: the task it touched.
pub fn task(w: &World, id: &str) {
    if let Some(t) = w
        .services
        .iter()
        .flat_map(|s| &s.tasks)
        .find(|t| t.id == id)
    {
        stopped_task(w, t);
    }
}

/// Invariant 2 at placement: the chosen host was ACTIVE and connected.
pub fn placement(w: &World, h: usize) {
    let (i, host) = (&w.instances[h], &w.hosts[h]);
    if i.status != "ACTIVE" || !host.connected || host.lost {
        w.fail(format!(
            "placed a task on {} which is {} (connected {}, lost {})",
            i.id, i.status, host.connected, host.lost
        ));
    }
}

/// Invariants 3 (minimum healthy) and 6 for a plan, before it is applied.
/// Returns the revision the breaker rolled back to, if it did.
pub fn plan(w: &World, si: usize, plan: &Plan) -> Option<String> {
    let s = &w.services[si];
    let name = &s.rec.name;
    let blue_green = service::blue_green::in_progress(&s.rec);
    if blue_green {
        serving_kept(w, s, plan);
    } else if !s.daemon() {
        let stops: BTreeSet<&str> = plan.stop.iter().map(|o| o.task_id.as_str()).collect();
        let healthy: Vec<&TaskRecord> = s
            .tasks
            .iter()
            .filter(|t| service::healthy(t, w.now, &settings()))
            .collect();
        if healthy.iter().any(|t| stops.contains(t.id.as_str())) {
            let left = healthy
                .iter()
                .filter(|t| !stops.contains(t.id.as_str()))
                .count();
            let min = min_healthy(&plan.service);
            if left < min {
                w.fail(format!(
                    "{name}: the scheduler stops healthy tasks leaving {left} healthy of {} (minimum {min}, desired {}); stops {:?}",
                    healthy.len(),
                    plan.service.desired_count,
                    plan.stop
                ));
            }
        }
    }
    let old = s.rec.primary();
    let failed_now = plan
        .service
        .deployments
        .iter()
        .find(|d| d.id == old.id)
        .is_some_and(|d| d.rollout_state == "FAILED");
    if old.rollout_state != "IN_PROGRESS" || !failed_now {
        return None;
    }
    let cfg = &s.rec.deployment_config;
    if blue_green {
        // Blue/green goes back to blue, whatever `rollback` says.
        let blue = old.blue_green.as_ref().and_then(|l| l.blue.as_ref());
        let b = blue.and_then(|b| s.rec.deployments.iter().find(|d| &d.id == b))?;
        let p = plan.service.primary();
        if p.id != b.id {
            w.fail(format!(
                "{name}: breaker failed blue/green {} but did not go back to blue {} (primary now {})",
                old.id, b.id, p.id
            ));
        }
        return Some(b.task_definition.clone());
    }
    let target = s.rec.last_completed.as_ref().map(|(_, td)| td);
    match target {
        Some(td) if cfg.rollback && td != &old.task_definition => {
            let p = plan.service.primary();
            if &p.task_definition != td || p.id == old.id {
                w.fail(format!(
                    "{name}: breaker failed {} but did not roll back to the last completed {td} (primary now {} {})",
                    old.id, p.id, p.task_definition
                ));
            }
            Some(td.clone())
        }
        _ => None,
    }
}

/// Invariant 7 for a blue/green plan: the scheduler never stops a task of
/// the deployment production traffic goes to (health-check stops aside)
/// unless the same plan moves production away from it.
fn serving_kept(w: &World, s: &crate::world::Service, plan: &Plan) {
    let Some(serving) = service::blue_green::serving(&s.rec).map(|d| d.id.clone()) else {
        return;
    };
    // Green serving already (a first deployment): its scale-in is the user's.
    if serving == s.rec.primary().id {
        return;
    }
    let still = service::blue_green::serving(&plan.service).is_some_and(|d| d.id == serving);
    if !still {
        return;
    }
    // Health-check stops aside; a draining host's tasks move while the
    // healthy stay at the minimum; anything else only as excess.
    let moving = |o: &&service::StopOrder| o.reason == "Container instance is not ACTIVE";
    let stops: BTreeSet<&str> = plan
        .stop
        .iter()
        .filter(|o| {
            o.reason != service::UNHEALTHY_REASON
                && !o.reason.starts_with(service::ELB_UNHEALTHY_REASON)
                && !moving(o)
        })
        .map(|o| o.task_id.as_str())
        .collect();
    let moved: BTreeSet<&str> = plan
        .stop
        .iter()
        .filter(moving)
        .map(|o| o.task_id.as_str())
        .collect();
    let serving_wanted: Vec<&TaskRecord> = s
        .tasks
        .iter()
        .filter(|t| wanted(t) && t.started_by.as_deref() == Some(serving.as_str()))
        .collect();
    let stopped = serving_wanted
        .iter()
        .filter(|t| stops.contains(t.id.as_str()))
        .count();
    let moved_here = serving_wanted
        .iter()
        .filter(|t| moved.contains(t.id.as_str()))
        .count();
    // Stops and moves are distinct orders: what is neither stays.
    let staying = serving_wanted.len() - moved_here;
    let floor = staying.min(plan.service.desired_count.max(0) as usize);
    if staying.saturating_sub(stopped) < floor {
        w.fail(format!(
            "{}: blue/green stops {stopped} of the {} tasks of {serving}, which production traffic still reaches (desired {})",
            s.rec.name,
            serving_wanted.len(),
            plan.service.desired_count
        ));
    }
    let healthy_left = serving_wanted
        .iter()
        .filter(|t| service::healthy(t, w.now, &settings()))
        .filter(|t| !moved.contains(t.id.as_str()) && !stops.contains(t.id.as_str()))
        .count();
    let moved_healthy = serving_wanted
        .iter()
        .any(|t| moved.contains(t.id.as_str()) && service::healthy(t, w.now, &settings()));
    if moved_healthy && healthy_left < min_healthy(&plan.service) {
        w.fail(format!(
            "{}: blue/green moves healthy tasks of {serving} off draining hosts leaving {healthy_left} healthy (minimum {})",
            s.rec.name,
            min_healthy(&plan.service)
        ));
    }
}

/// Invariant 3 (maximum) right after a plan's tasks were placed.
pub fn after_starts(w: &World, si: usize) {
    let s = &w.services[si];
    if s.daemon() {
        return;
    }
    let (n, max) = (live_count(s), max_total(&s.rec));
    if n > max {
        w.fail(format!(
            "{}: started tasks up to {n} live, maximum is {max} (desired {}, maximumPercent {})",
            s.rec.name, s.rec.desired_count, s.rec.deployment_config.maximum_percent
        ));
    }
}

/// Everything that can be checked at any time.
pub fn full(w: &World) {
    accounting(w, None);
    let mut seen = BTreeSet::new();
    for s in &w.services {
        for t in &s.tasks {
            if !seen.insert(t.id.as_str()) {
                w.fail(format!("task id {} appears twice", t.id));
            }
            if w.placed_on.get(&t.id) != t.instance_id.as_ref() {
                w.fail(format!(
                    "task {} placed on {:?} now claims {:?}",
                    t.id,
                    w.placed_on.get(&t.id),
                    t.instance_id
                ));
            }
            stopped_task(w, t);
        }
        if s.daemon() {
            let mut per: BTreeMap<&str, Vec<&TaskRecord>> = BTreeMap::new();
            for t in s.tasks.iter().filter(|t| live(t)) {
                let here = per
                    .entry(t.instance_id.as_deref().unwrap_or(""))
                    .or_default();
                here.push(t);
                if here.len() > 1 {
                    let what: Vec<_> = here
                        .iter()
                        .map(|t| (&t.id, t.last_status, t.desired_status, &t.stopped_reason))
                        .collect();
                    w.fail(format!(
                        "{}: two live daemon tasks on {:?} (maximumPercent 100): {what:?}",
                        s.rec.name, t.instance_id
                    ));
                }
            }
        } else if !s.scaling_in {
            let (n, max) = (live_count(s), max_total(&s.rec));
            if n > max {
                w.fail(format!(
                    "{}: {n} live tasks, maximum is {max} (desired {}, maximumPercent {})",
                    s.rec.name, s.rec.desired_count, s.rec.deployment_config.maximum_percent
                ));
            }
        }
    }
}

/// Invariant 5 (and the end of 6): whether every service has settled, or
/// the first reason one has not.
pub fn settled(w: &World) -> Result<(), String> {
    for s in &w.services {
        let name = &s.rec.name;
        if s.rec.status != "ACTIVE" {
            // Deleted: drained to INACTIVE with nothing left running.
            if s.rec.status != "INACTIVE" || live_count(s) > 0 {
                return Err(format!(
                    "{name}: deleted but {} with {} live tasks",
                    s.rec.status,
                    live_count(s)
                ));
            }
            continue;
        }
        let p = s.rec.primary();
        if p.rollout_state != "COMPLETED" {
            return Err(format!("{name}: primary {} is {}", p.id, p.rollout_state));
        }
        if s.rec.deployments.len() != 1 {
            return Err(format!("{name}: {} deployments", s.rec.deployments.len()));
        }
        if s.revision(&p.task_definition).kind.broken() {
            return Err(format!("{name}: settled on broken {}", p.task_definition));
        }
        if let Some(td) = &s.rolled_back_to {
            if &p.task_definition != td {
                return Err(format!(
                    "{name}: rolled back to {td} but runs {}",
                    p.task_definition
                ));
            }
        }
        let ok = |t: &TaskRecord| {
            wanted(t)
                && t.last_status == TaskStatus::Running
                && t.started_by.as_ref() == Some(&p.id)
        };
        if let Some(t) = s.tasks.iter().find(|t| live(t) && !ok(t)) {
            return Err(format!(
                "{name}: task {} is {:?}/{:?} of {:?}",
                t.id, t.last_status, t.desired_status, t.started_by
            ));
        }
        if s.daemon() {
            for i in &w.instances {
                let n = s
                    .tasks
                    .iter()
                    .filter(|t| live(t) && t.instance_id.as_ref() == Some(&i.id))
                    .count();
                let want = usize::from(daemon_eligible(s, i));
                if n != want {
                    return Err(format!("{name}: {n} tasks on {} ({})", i.id, i.status));
                }
            }
        } else {
            let n = live_count(s);
            if n != s.rec.desired_count as usize || s.rec.running_count != s.rec.desired_count {
                return Err(format!(
                    "{name}: {n} running, running_count {}, desired {}",
                    s.rec.running_count, s.rec.desired_count
                ));
            }
            for t in &s.tasks {
                let on = w
                    .instances
                    .iter()
                    .find(|i| t.instance_id.as_ref() == Some(&i.id));
                if live(t) && on.is_none_or(|i| i.status != "ACTIVE") {
                    return Err(format!("{name}: task {} on a non-ACTIVE instance", t.id));
                }
            }
        }
    }
    Ok(())
}
