//! Blue/green deployments (ECS's BLUE_GREEN strategy). The new revision
//! (green) starts in full beside the one serving (blue), takes the test
//! listener's traffic, then production's, and blue stops once the bake
//! time has passed. The deployment moves through ECS's lifecycle stages; a
//! PAUSE hook holds a stage until ContinueServiceDeployment, or its
//! timeout, says CONTINUE or ROLLBACK. Rolling back sends the traffic to
//! blue again and stops green: blue never stopped, so nothing restarts.
//!
//! Traffic is a function of the record ([`traffic`]): the control plane
//! writes the listener rules it names after each pass, so a stage that
//! shifts traffic is over on the pass after it began.

use super::*;

pub const RECONCILE_SERVICE: &str = "RECONCILE_SERVICE";
pub const SCALE_UP: &str = "SCALE_UP";
pub const TEST_TRAFFIC_SHIFT: &str = "TEST_TRAFFIC_SHIFT";
pub const PRODUCTION_TRAFFIC_SHIFT: &str = "PRODUCTION_TRAFFIC_SHIFT";
pub const BAKE_TIME: &str = "BAKE_TIME";
pub const CLEAN_UP: &str = "CLEAN_UP";

/// The stages in order. PRE_PRODUCTION_TRAFFIC_SHIFT is a hook stage only:
/// ECS shows a deployment there as in PRODUCTION_TRAFFIC_SHIFT.
const STAGES: &[&str] = &[
    RECONCILE_SERVICE,
    "PRE_SCALE_UP",
    SCALE_UP,
    "POST_SCALE_UP",
    TEST_TRAFFIC_SHIFT,
    "POST_TEST_TRAFFIC_SHIFT",
    "PRE_PRODUCTION_TRAFFIC_SHIFT",
    PRODUCTION_TRAFFIC_SHIFT,
    "POST_PRODUCTION_TRAFFIC_SHIFT",
    BAKE_TIME,
    CLEAN_UP,
];

/// A hook's default timeout (24 hours) and action, as ECS has them.
pub const DEFAULT_HOOK_TIMEOUT_MINUTES: i32 = 1440;

/// Where a blue/green deployment is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub stage: String,
    /// When the current stage began.
    pub since: Millis,
    /// CLEAN_UP is over (or the deployment was rolled back).
    pub done: bool,
    /// The deployment (id) serving production when this one began: blue.
    pub blue: Option<String>,
    /// The target group each of the service's load balancers sends this
    /// deployment's tasks to (by the service's `loadBalancers` order).
    pub target_groups: Vec<String>,
    pub test_shifted: bool,
    /// All of production's traffic goes to green.
    pub production_shifted: bool,
    /// LINEAR and CANARY: the share (percent) of production green has
    /// while it shifts, and since when.
    #[serde(default)]
    pub production_percent: f64,
    #[serde(default)]
    pub step_since: Millis,
    /// RECONCILE_SERVICE found tasks of neither blue nor green to stop:
    /// then (only) its hooks run.
    #[serde(default)]
    pub reconciled: bool,
    /// Every hook run so far, in the order they ran.
    pub hooks: Vec<HookRecord>,
}

impl Lifecycle {
    /// The stage as ECS names it in `lifecycleStage`.
    pub fn shown_stage(&self) -> &str {
        match self.stage.as_str() {
            "PRE_PRODUCTION_TRAFFIC_SHIFT" => PRODUCTION_TRAFFIC_SHIFT,
            s => s,
        }
    }
}

/// One run of a PAUSE hook at one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookRecord {
    /// `ecs-pause-` and 43 URL-safe characters.
    pub id: String,
    pub stage: String,
    /// Its place in the service's `lifecycleHooks`.
    pub index: usize,
    /// AWAITING_ACTION, SUCCEEDED, FAILED or TIMED_OUT.
    pub status: String,
    pub expires_at: Millis,
    /// CONTINUE or ROLLBACK.
    pub timeout_action: String,
}

/// Whether the service's PRIMARY deployment is a blue/green one whose
/// lifecycle has not ended.
pub fn active(svc: &ServiceRecord) -> bool {
    svc.deployments
        .first()
        .is_some_and(|d| d.blue_green.as_ref().is_some_and(|l| !l.done))
}

/// Whether blue/green's scheduler has the service: its PRIMARY is rolling
/// out blue/green (a deleted service's tasks stop as any other's).
pub fn in_progress(svc: &ServiceRecord) -> bool {
    svc.status == "ACTIVE" && active(svc) && svc.deployments[0].rollout_state == "IN_PROGRESS"
}

/// The deployment whose tasks production traffic reaches now.
pub fn serving(svc: &ServiceRecord) -> Option<&DeploymentRecord> {
    let p = svc.deployments.first()?;
    match &p.blue_green {
        Some(l) if !l.production_shifted => l
            .blue
            .as_ref()
            .and_then(|b| svc.deployments.iter().find(|d| &d.id == b))
            .or(Some(p)),
        _ => Some(p),
    }
}

/// The target group deployment `d` registers its tasks with for the
/// service's `i`th load balancer.
pub fn group_of(svc: &ServiceRecord, d: &DeploymentRecord, i: usize) -> Option<String> {
    let revision = || {
        // A deployment of the rolling days: the groups it was deployed with.
        let h = svc.history.iter().find(|h| h.id == d.service_deployment)?;
        h.revision
            .as_ref()?
            .load_balancers
            .get(i)?
            .target_group_arn
            .clone()
    };
    d.blue_green
        .as_ref()
        .and_then(|l| l.target_groups.get(i).cloned())
        .or_else(revision)
        .or_else(|| svc.load_balancers.get(i)?.target_group_arn.clone())
}

/// The target group production traffic reaches for each of the service's
/// load balancers now.
pub fn serving_groups(svc: &ServiceRecord) -> Vec<Option<String>> {
    let Some(d) = serving(svc) else {
        return vec![];
    };
    (0..svc.load_balancers.len())
        .map(|i| group_of(svc, d, i))
        .collect()
}

/// The pair of target groups of a load balancer entry, and the one of the
/// pair that is not `used`.
fn other_of(lb: &ecs::LoadBalancer, used: &str) -> Option<String> {
    let primary = lb.target_group_arn.clone()?;
    let alternate = lb
        .advanced_configuration
        .as_ref()?
        .alternate_target_group_arn
        .clone()?;
    Some(if used == primary { alternate } else { primary })
}

/// Starts the lifecycle of the PRIMARY deployment [`ServiceRecord::deploy`]
/// just made: green registers with whichever group of each pair blue does
/// not use.
pub(super) fn begin(svc: &mut ServiceRecord, now: Millis) {
    let blue = svc.deployments.get(1).map(|previous| {
        match &previous.blue_green {
            // A deployment superseded before it took production: its blue
            // still serves (when it is still there).
            Some(l) if !l.production_shifted => l
                .blue
                .clone()
                .filter(|b| svc.deployments.iter().any(|d| &d.id == b))
                .unwrap_or_else(|| previous.id.clone()),
            _ => previous.id.clone(),
        }
    });
    let blue_record = blue
        .as_ref()
        .and_then(|b| svc.deployments.iter().find(|d| &d.id == b));
    let target_groups = svc
        .load_balancers
        .iter()
        .enumerate()
        .map(|(i, lb)| {
            let primary = lb.target_group_arn.clone().unwrap_or_default();
            match blue_record.and_then(|b| group_of(svc, b, i)) {
                Some(used) => other_of(lb, &used).unwrap_or(primary),
                None => primary,
            }
        })
        .collect();
    svc.deployments[0].blue_green = Some(Lifecycle {
        stage: RECONCILE_SERVICE.into(),
        since: now,
        done: false,
        blue,
        target_groups,
        test_shifted: false,
        production_shifted: false,
        production_percent: 0.0,
        step_since: now,
        reconciled: false,
        hooks: vec![],
    });
}

/// Where a listener rule (or an NLB listener) should forward: each target
/// group ARN with its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub rule: String,
    pub groups: Vec<(String, u32)>,
}

/// The forwarding a blue/green service's listener rules should have now:
/// production to the serving deployment's groups, test to green's once
/// the test traffic has shifted. Empty for a rolling service.
pub fn traffic(svc: &ServiceRecord) -> Vec<Route> {
    if svc.deployment_config.blue_green.is_none() || svc.status == "INACTIVE" {
        return vec![];
    }
    let Some(p) = svc.deployments.first() else {
        return vec![];
    };
    let Some(prod) = serving(svc) else {
        return vec![];
    };
    let test = match &p.blue_green {
        Some(l) if !l.test_shifted => prod,
        _ => p,
    };
    // Green's weight of 999 while LINEAR or CANARY shift production.
    let split = match &p.blue_green {
        Some(l) if !l.done && !l.production_shifted && l.production_percent > 0.0 => {
            Some(((l.production_percent / 100.0 * 999.0).round() as u32).clamp(1, 998))
        }
        _ => None,
    };
    let mut out = vec![];
    for (i, lb) in svc.load_balancers.iter().enumerate() {
        let Some(adv) = &lb.advanced_configuration else {
            continue;
        };
        let mut route = |rule: &Option<String>, d: &DeploymentRecord, split: Option<u32>| {
            let (Some(rule), Some(to)) = (rule, group_of(svc, d, i)) else {
                return;
            };
            let Some(other) = other_of(lb, &to) else {
                return;
            };
            out.push(Route {
                rule: rule.clone(),
                groups: match split {
                    Some(green) => vec![(to, 999 - green), (other, green)],
                    None => vec![(to, 100), (other, 0)],
                },
            });
        };
        route(&adv.production_listener_rule, prod, split);
        route(&adv.test_listener_rule, test, None);
    }
    out
}

fn stage_index(stage: &str) -> usize {
    STAGES.iter().position(|s| *s == stage).unwrap_or(0)
}

/// `ecs-pause-` and 43 URL-safe base64 characters (256 random bits).
fn hook_id<R: Rng + ?Sized>(rng: &mut R) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let tail: String = (0..43)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("ecs-pause-{tail}")
}

/// What the hooks of the current stage say.
enum Hooks {
    /// All have succeeded (or timed out to CONTINUE): on to the next stage.
    Passed,
    /// One awaits ContinueServiceDeployment.
    Waiting,
    /// One timed out with ROLLBACK (the reason).
    RollBack(String),
}

fn run_hooks<R: Rng + ?Sized>(svc: &mut ServiceRecord, now: Millis, rng: &mut R) -> Hooks {
    let hooks = svc
        .deployment_config
        .blue_green
        .as_ref()
        .map(|b| b.hooks.clone())
        .unwrap_or_default();
    let name = svc.name.clone();
    let p = &mut svc.deployments[0];
    let deployment = p.id.clone();
    let Some(l) = p.blue_green.as_mut() else {
        return Hooks::Passed;
    };
    let stage = l.stage.clone();
    for (index, hook) in hooks.iter().enumerate() {
        let here = hook
            .lifecycle_stages
            .iter()
            .flatten()
            .any(|s| s.as_str() == stage);
        if !here {
            continue;
        }
        match l
            .hooks
            .iter_mut()
            .find(|h| h.stage == stage && h.index == index)
        {
            None => {
                let timeout = hook.timeout_configuration.as_ref();
                let minutes = timeout
                    .and_then(|t| t.timeout_in_minutes)
                    .unwrap_or(DEFAULT_HOOK_TIMEOUT_MINUTES)
                    .clamp(1, 20_160);
                let action = timeout
                    .and_then(|t| t.action.as_ref())
                    .map_or("ROLLBACK", |a| a.as_str());
                let id = hook_id(rng);
                l.hooks.push(HookRecord {
                    id: id.clone(),
                    stage: stage.clone(),
                    index,
                    status: "AWAITING_ACTION".into(),
                    expires_at: now.saturating_add(i64::from(minutes) * 60_000),
                    timeout_action: action.into(),
                });
                p.updated_at = now;
                svc.event(
                    now,
                    format!("(service {name}) (deployment {deployment}) is paused at lifecycle stage {stage}: hook {id} awaits ContinueServiceDeployment."),
                    rng,
                );
                return Hooks::Waiting;
            }
            Some(h) if h.status == "AWAITING_ACTION" => {
                if now < h.expires_at {
                    return Hooks::Waiting;
                }
                h.status = "TIMED_OUT".into();
                if h.timeout_action == "ROLLBACK" {
                    return Hooks::RollBack(format!(
                        "Lifecycle hook {} timed out at stage {stage}.",
                        h.id
                    ));
                }
            }
            // FAILED hooks rolled back when they failed.
            Some(_) => {}
        }
    }
    Hooks::Passed
}

/// Rolls a blue/green deployment back to blue: traffic returns to it and
/// green drains. False when there is no blue to go back to, or blue is
/// already being cleaned up.
pub(super) fn rollback<R: Rng + ?Sized>(
    svc: &mut ServiceRecord,
    now: Millis,
    reason: &str,
    rng: &mut R,
) -> bool {
    let Some(l) = svc.deployments.first().and_then(|d| d.blue_green.clone()) else {
        return false;
    };
    let Some(at) = l
        .blue
        .as_ref()
        .and_then(|b| svc.deployments.iter().position(|d| &d.id == b))
    else {
        return false;
    };
    if l.stage == CLEAN_UP || at == 0 {
        return false;
    }
    let serving = svc.deployments[0].service_deployment.clone();
    let mut blue = svc.deployments.remove(at);
    let green = &mut svc.deployments[0];
    green.status = "ACTIVE".into();
    green.desired_count = 0;
    green.rollout_state = "FAILED".into();
    green.rollout_state_reason = reason.to_string();
    green.updated_at = now;
    if let Some(gl) = green.blue_green.as_mut() {
        gl.done = true;
    }
    let lifecycle = green.blue_green.clone();
    if let Some(h) = svc.history.iter_mut().find(|h| h.id == serving) {
        h.status = "ROLLBACK_IN_PROGRESS".into();
        h.status_reason = Some(reason.to_string());
        h.updated_at = now;
        h.lifecycle = lifecycle;
        h.rollback = Some(RollbackRecord {
            reason: reason.to_string(),
            started_at: now,
            target: (
                numeric_id(&blue.id).to_string(),
                blue.task_definition.clone(),
            ),
        });
    }
    // Blue serves again; the rolling scheduler drains green and marks the
    // service deployment ROLLBACK_SUCCESSFUL once it has.
    blue.status = "PRIMARY".into();
    blue.desired_count = svc.desired_count;
    blue.rollout_state = "IN_PROGRESS".into();
    blue.rollout_state_reason = format!("Rolling back: {reason}");
    blue.service_deployment = serving;
    blue.updated_at = now;
    // Blue had production's traffic: its own lifecycle (if it had one,
    // cut short when green superseded it) is over.
    if let Some(bl) = blue.blue_green.as_mut() {
        bl.done = true;
        bl.production_shifted = true;
    }
    svc.task_definition = blue.task_definition.clone();
    let target = blue.id.clone();
    svc.deployments.insert(0, blue);
    svc.steady = false;
    let name = svc.name.clone();
    svc.event(
        now,
        format!("(service {name}) rolling back to deployment {target}."),
        rng,
    );
    true
}

/// One step of a blue/green deployment in progress; `stop` and `stopping`
/// hold what the breaker and health checks already stopped.
#[allow(clippy::too_many_arguments)]
pub(super) fn plan<'t, R: Rng + ?Sized>(
    mut svc: ServiceRecord,
    tasks: &'t [TaskRecord],
    instances: &[InstanceRecord],
    lb: &dyn Fn(&TaskRecord) -> LbHealth,
    now: Millis,
    s: &Settings,
    mut stop: Vec<StopOrder>,
    mut stopping: BTreeSet<&'t str>,
    rng: &mut R,
) -> Plan {
    let is_healthy = |t: &TaskRecord| {
        healthy(t, now, s) && (t.load_balancers.is_empty() || lb(t) == LbHealth::Healthy)
    };
    let desired = svc.desired_count.max(0) as usize;
    let green = svc.deployments[0].id.clone();
    let blue = svc.deployments[0]
        .blue_green
        .as_ref()
        .and_then(|l| l.blue.clone());
    let of = |t: &TaskRecord, id: &str| t.started_by.as_deref() == Some(id);
    // Tasks of neither green nor blue (a deployment superseded midway).
    let stray = |t: &TaskRecord| !of(t, &green) && blue.as_deref().is_none_or(|b| !of(t, b));
    let has_stray = tasks.iter().any(|t| live(t) && stray(t));
    let active_instance = |t: &TaskRecord| {
        t.instance_id
            .as_deref()
            .and_then(|id| instances.iter().find(|i| i.id == id))
            .is_some_and(|i| i.status == "ACTIVE")
    };
    if has_stray {
        if let Some(l) = svc.deployments[0].blue_green.as_mut() {
            l.reconciled |= l.stage == RECONCILE_SERVICE;
        }
    }

    let mut entered_now = false;
    let mut rolled_back = None;
    while let Some(l) = svc.deployments[0].blue_green.clone() {
        let stage = l.stage.clone();
        let green_tasks: Vec<&TaskRecord> = tasks
            .iter()
            .filter(|t| of(t, &green) && wanted(t) && !stopping.contains(t.id.as_str()))
            .collect();
        let done = match stage.as_str() {
            RECONCILE_SERVICE => !has_stray,
            SCALE_UP => green_tasks.len() == desired && green_tasks.iter().all(|t| is_healthy(t)),
            TEST_TRAFFIC_SHIFT => !entered_now || svc.load_balancers.is_empty(),
            PRODUCTION_TRAFFIC_SHIFT if l.production_shifted => {
                !entered_now || svc.load_balancers.is_empty()
            }
            PRODUCTION_TRAFFIC_SHIFT => {
                // LINEAR or CANARY: the next step once this one has baked.
                let steps = svc
                    .deployment_config
                    .blue_green
                    .as_ref()
                    .and_then(|b| b.steps.clone());
                let bake = steps.as_ref().map_or(0, |t| t.bake_minutes.max(0));
                let d = &mut svc.deployments[0];
                if let (Some(l), true) = (
                    d.blue_green.as_mut(),
                    now >= l.step_since.saturating_add(i64::from(bake) * 60_000),
                ) {
                    let next = match steps {
                        Some(t) if t.linear => l.production_percent + t.percent,
                        _ => 100.0,
                    };
                    l.production_percent = next.min(100.0);
                    l.production_shifted = next >= 100.0 - 1e-9;
                    l.step_since = now;
                    d.updated_at = now;
                }
                false
            }
            BAKE_TIME => {
                let bake = svc
                    .deployment_config
                    .blue_green
                    .as_ref()
                    .map_or(0, |b| b.bake_time_minutes.max(0));
                blue.is_none() || now >= l.since.saturating_add(i64::from(bake) * 60_000)
            }
            CLEAN_UP => !tasks
                .iter()
                .any(|t| live(t) && !of(t, &green) && !stopping.contains(t.id.as_str())),
            _ => true,
        };
        if !done {
            break;
        }
        // RECONCILE_SERVICE happens only when there was something to
        // reconcile; a first deployment has no blue to hold for (or to
        // roll back to), so its hooks and bake time do not apply.
        let skip_hooks = blue.is_none() || (stage == RECONCILE_SERVICE && !l.reconciled);
        if !skip_hooks {
            match run_hooks(&mut svc, now, rng) {
                Hooks::Passed => {}
                Hooks::Waiting => break,
                Hooks::RollBack(reason) => {
                    rolled_back = Some(reason);
                    break;
                }
            }
        }
        let d = &mut svc.deployments[0];
        let Some(l) = d.blue_green.as_mut() else {
            break;
        };
        d.updated_at = now;
        if stage == CLEAN_UP {
            l.done = true;
            svc.complete(now, rng);
            break;
        }
        let next = STAGES[(stage_index(&stage) + 1).min(STAGES.len() - 1)];
        l.stage = next.into();
        l.since = now;
        l.test_shifted |= next == TEST_TRAFFIC_SHIFT;
        if next == PRODUCTION_TRAFFIC_SHIFT {
            // All at once, or the first step of LINEAR or CANARY.
            match svc
                .deployment_config
                .blue_green
                .as_ref()
                .and_then(|b| b.steps.as_ref())
            {
                Some(t) if t.percent < 100.0 && !svc.load_balancers.is_empty() => {
                    l.production_percent = t.percent;
                    l.step_since = now;
                }
                _ => {
                    l.production_percent = 100.0;
                    l.production_shifted = true;
                }
            }
        }
        entered_now = true;
    }
    if let Some(reason) = rolled_back {
        if !rollback(&mut svc, now, &reason, rng) {
            // Nothing to go back to: the deployment stops where it is.
            let serving = svc.deployments[0].service_deployment.clone();
            let d = &mut svc.deployments[0];
            d.rollout_state = "FAILED".into();
            d.rollout_state_reason = reason.clone();
            if let Some(l) = d.blue_green.as_mut() {
                l.done = true;
            }
            svc.finish_history(&serving, now, "STOPPED", Some(reason));
        }
    }

    let mut start = vec![];
    let stage = svc.deployments[0]
        .blue_green
        .as_ref()
        .map(|l| stage_index(&l.stage))
        .unwrap_or(0);
    let still_green = svc.deployments[0].id == green;
    let reason = format!("Scaling activity initiated by (deployment {green})");
    if still_green {
        let cleaning = stage >= stage_index(CLEAN_UP);
        let mut going: Vec<(&TaskRecord, String)> = vec![];
        let retire = |t: &TaskRecord| !active_instance(t);
        let moved = || "Container instance is not ACTIVE".to_string();
        // What production reaches keeps its minimum healthy while a
        // draining host's tasks move, as in a rolling deployment.
        let serving_id = serving(&svc).map(|d| d.id.clone()).unwrap_or_default();
        let min_healthy =
            (desired * svc.deployment_config.minimum_healthy_percent.max(0) as usize).div_ceil(100);
        let mut serving_healthy = tasks
            .iter()
            .filter(|t| of(t, &serving_id) && !stopping.contains(t.id.as_str()) && is_healthy(t))
            .count();
        for t in tasks
            .iter()
            .filter(|t| wanted(t) && !stopping.contains(t.id.as_str()))
        {
            let blue_task = blue.as_deref().is_some_and(|b| of(t, b));
            if stray(t) {
                // A deployment superseded midway: it goes at once.
                going.push((t, reason.clone()));
            } else if retire(t) {
                if of(t, &serving_id) && is_healthy(t) {
                    if serving_healthy <= min_healthy {
                        continue;
                    }
                    serving_healthy -= 1;
                }
                going.push((t, moved()));
            } else if blue_task && cleaning && !t.protected(now) {
                // Blue goes at CLEAN_UP; a protected task waits for its
                // protection to lapse.
                going.push((t, reason.clone()));
            }
        }
        // Beyond what a lowered desired count leaves, blue's excess goes.
        if let (Some(b), false) = (&blue, cleaning) {
            let mut kept: Vec<&TaskRecord> = tasks
                .iter()
                .filter(|t| of(t, b) && wanted(t) && !stopping.contains(t.id.as_str()))
                .filter(|t| !retire(t))
                .collect();
            stop_preference(&mut kept, &is_healthy);
            let excess = kept.len().saturating_sub(desired);
            going.extend(kept.into_iter().take(excess).map(|t| (t, reason.clone())));
        }
        for (t, why) in going {
            stop.push(StopOrder {
                task_id: t.id.clone(),
                reason: why,
            });
            stopping.insert(t.id.as_str());
        }
        // Tasks stopping (now or before) hold their slots until STOPPED,
        // as in a rolling deployment; blue and green together stay within
        // twice the desired count (or maximumPercent).
        let percent = svc.deployment_config.maximum_percent.max(200) as usize;
        let mut room =
            (desired * percent / 100).saturating_sub(tasks.iter().filter(|t| live(t)).count());
        let throttled = now < svc.throttle.until;
        // Blue keeps the desired count while it may serve again: lost
        // tasks are replaced until CLEAN_UP.
        if let (Some(b), false, false) = (&blue, cleaning, throttled) {
            if let Some(d) = svc.deployments.iter().find(|d| &d.id == b) {
                let live_blue = tasks.iter().filter(|t| of(t, b) && live(t)).count();
                let count = desired.saturating_sub(live_blue).min(room);
                if count > 0 {
                    room -= count;
                    start.push(Start {
                        deployment: b.clone(),
                        task_definition: d.task_definition.clone(),
                        count,
                        instance: None,
                    });
                }
            }
        }
        // From SCALE_UP on, green runs the desired count in full.
        if stage >= stage_index(SCALE_UP) {
            let mut keep: Vec<&TaskRecord> = tasks
                .iter()
                .filter(|t| of(t, &green) && wanted(t) && !stopping.contains(t.id.as_str()))
                .collect();
            stop_preference(&mut keep, &is_healthy);
            while keep.len() > desired {
                let t = keep.remove(0);
                stop.push(StopOrder {
                    task_id: t.id.clone(),
                    reason: reason.clone(),
                });
            }
            let live_green = tasks.iter().filter(|t| of(t, &green) && live(t)).count();
            let count = desired.saturating_sub(live_green).min(room);
            if count > 0 && !throttled {
                start.push(Start {
                    deployment: green.clone(),
                    task_definition: svc.deployments[0].task_definition.clone(),
                    count,
                    instance: None,
                });
            }
        }
    }
    stopped_event(&mut svc, &stop, now, rng);

    // Counts; drained deployments go, except blue while green may still
    // roll back to it.
    let stopped: BTreeSet<&str> = stop.iter().map(|o| o.task_id.as_str()).collect();
    let keep_blue = svc.deployments[0]
        .blue_green
        .as_ref()
        .filter(|l| !l.done)
        .and_then(|l| l.blue.clone());
    let desired_now = svc.desired_count;
    count_deployments(&mut svc, tasks, &stopped, desired_now);
    let first = svc.deployments[0].clone();
    svc.deployments = std::iter::once(first)
        .chain(
            svc.deployments[1..]
                .iter()
                .filter(|d| {
                    keep_blue.as_deref() == Some(d.id.as_str())
                        || tasks.iter().any(|t| live(t) && of(t, &d.id))
                })
                .cloned(),
        )
        .collect();
    svc.running_count = svc.deployments.iter().map(|d| d.running_count).sum();
    svc.pending_count = svc.deployments.iter().map(|d| d.pending_count).sum();
    // The service deployment shows where its lifecycle stands (a rollback
    // recorded green's last standing itself).
    let p = &svc.deployments[0];
    if let (Some(l), id, true) = (&p.blue_green, p.service_deployment.clone(), still_green) {
        let l = l.clone();
        if let Some(h) = svc.history.iter_mut().find(|h| h.id == id) {
            if h.lifecycle.as_ref() != Some(&l) {
                h.lifecycle = Some(l);
                h.updated_at = now;
            }
        }
    }
    let settled =
        !in_progress(&svc) && svc.deployments.len() == 1 && stop.is_empty() && start.is_empty();
    mark_steady(
        &mut svc,
        settled,
        !stop.is_empty() || !start.is_empty(),
        now,
        rng,
    );
    Plan {
        service: svc,
        start,
        stop,
    }
}

/// Resolves the hook `hook_id` of the PRIMARY deployment's lifecycle, as
/// ContinueServiceDeployment asks: CONTINUE lets the stage end, ROLLBACK
/// goes back to blue.
pub fn continue_hook<R: Rng + ?Sized>(
    svc: &mut ServiceRecord,
    hook_id: &str,
    roll_back: bool,
    now: Millis,
    rng: &mut R,
) -> Result<(), ContinueError> {
    let name = svc.name.clone();
    let p = svc
        .deployments
        .first_mut()
        .ok_or(ContinueError::NotAwaiting)?;
    let deployment = p.id.clone();
    let hook = p
        .blue_green
        .as_mut()
        .and_then(|l| l.hooks.iter_mut().find(|h| h.id == hook_id))
        .ok_or(ContinueError::NoSuchHook)?;
    if hook.status != "AWAITING_ACTION" {
        return Err(ContinueError::NotAwaiting);
    }
    if roll_back {
        let was = hook.status.clone();
        hook.status = "FAILED".into();
        let reason = format!("Rolled back at lifecycle hook {hook_id}.");
        if !rollback(svc, now, &reason, rng) {
            if let Some(h) = svc.deployments[0]
                .blue_green
                .as_mut()
                .and_then(|l| l.hooks.iter_mut().find(|h| h.id == hook_id))
            {
                h.status = was;
            }
            return Err(ContinueError::NothingToRollBackTo);
        }
    } else {
        hook.status = "SUCCEEDED".into();
        p.updated_at = now;
        // DescribeServiceDeployments shows it at once.
        let (serving, lifecycle) = (p.service_deployment.clone(), p.blue_green.clone());
        if let Some(h) = svc.history.iter_mut().find(|h| h.id == serving) {
            h.lifecycle = lifecycle;
            h.updated_at = now;
        }
        svc.steady = false;
        svc.event(
            now,
            format!("(service {name}) (deployment {deployment}) continues past hook {hook_id}."),
            rng,
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContinueError {
    NoSuchHook,
    NotAwaiting,
    NothingToRollBackTo,
}
