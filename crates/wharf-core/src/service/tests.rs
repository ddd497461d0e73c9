//! The scheduler's decisions, step by step, against a tiny in-memory world:
//! started tasks become RUNNING on the next step, stopped ones STOPPED.

use super::*;
use crate::records::{ContainerRecord, Resources};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn instance(id: &str) -> InstanceRecord {
    let registered = Resources {
        cpu: 4096,
        memory: 8192,
        ..Default::default()
    };
    InstanceRecord {
        hostname: Some(id.into()),
        ..InstanceRecord::new(id, &format!("arn:{id}"), "c", registered, 0)
    }
}

fn service(desired: i32, min: i32, max: i32) -> ServiceRecord {
    let mut s = ServiceRecord::new("web", "arn:svc/web", "c", "arn:c", 0);
    s.desired_count = desired;
    s.deployment_config = DeploymentConfig {
        minimum_healthy_percent: min,
        maximum_percent: max,
        circuit_breaker: true,
        rollback: true,
        blue_green: None,
    };
    s.deploy(0, "td:1", &mut StdRng::seed_from_u64(1));
    s
}

fn lb_health(now: Millis, healthy_after: Millis, failing: &[String], t: &TaskRecord) -> LbHealth {
    if t.load_balancers.is_empty() {
        LbHealth::None
    } else if failing.contains(&t.id) {
        LbHealth::Unhealthy("arn:tg/web".into())
    } else if t.last_status == TaskStatus::Running
        && t.started_at.is_some_and(|at| now >= at + healthy_after)
    {
        LbHealth::Healthy
    } else {
        LbHealth::Initial
    }
}

/// A world that runs the plan: tasks start RUNNING (or fail, for revisions
/// in `broken`), stops complete on the next step.
struct World {
    svc: ServiceRecord,
    tasks: Vec<TaskRecord>,
    instances: Vec<InstanceRecord>,
    now: Millis,
    rng: StdRng,
    next: u32,
    broken: Vec<String>,
    /// Every step's (total live, healthy) after applying the plan.
    seen: Vec<(usize, usize)>,
    /// Behind a load balancer: how long after starting a task's targets
    /// turn healthy; tasks whose targets fail instead.
    lb_healthy_after: Millis,
    lb_failing: Vec<String>,
}

impl World {
    fn new(svc: ServiceRecord) -> World {
        World {
            svc,
            tasks: vec![],
            instances: vec![instance("i-1"), instance("i-2")],
            now: 1_000,
            rng: StdRng::seed_from_u64(7),
            next: 0,
            broken: vec![],
            seen: vec![],
            lb_healthy_after: 0,
            lb_failing: vec![],
        }
    }

    /// How the world's load balancer judges a task.
    fn lb_health(&self, t: &TaskRecord) -> LbHealth {
        lb_health(self.now, self.lb_healthy_after, &self.lb_failing, t)
    }

    fn task(&mut self, deployment: &str, td: &str, instance: &str) -> TaskRecord {
        self.next += 1;
        TaskRecord {
            task_definition_arn: td.into(),
            family: "web".into(),
            revision: 1,
            instance_id: Some(instance.into()),
            started_by: Some(deployment.into()),
            group: "service:web".into(),
            containers: vec![ContainerRecord::new("app", "", "img", true, false)],
            load_balancers: self.svc.load_balancers.clone(),
            ..TaskRecord::new(&format!("t{:04}", self.next), "", "c", self.now)
        }
    }

    /// The scheduler's plan for the world as it is now.
    fn plan(&mut self) -> Plan {
        let (now, after, failing) = (self.now, self.lb_healthy_after, self.lb_failing.clone());
        let lb = move |t: &TaskRecord| lb_health(now, after, &failing, t);
        plan(
            &self.svc,
            &self.tasks,
            &self.instances,
            &|_| true,
            &lb,
            self.now,
            &Settings::default(),
            &mut self.rng,
        )
    }

    fn step(&mut self) {
        self.now += 3_000;
        // The "agents": pending tasks start (or fail), stopping ones stop.
        for t in &mut self.tasks {
            if t.desired_status == DesiredStatus::Stopped && t.last_status != TaskStatus::Stopped {
                t.last_status = TaskStatus::Stopped;
            } else if t.last_status < TaskStatus::Running {
                if self.broken.contains(&t.task_definition_arn) {
                    t.last_status = TaskStatus::Stopped;
                    t.desired_status = DesiredStatus::Stopped;
                    t.stop_code = Some(STOP_ESSENTIAL_EXITED.into());
                    t.stopping_at = Some(self.now);
                } else {
                    t.last_status = TaskStatus::Running;
                    t.started_at = Some(self.now);
                }
            }
        }
        let p = self.plan();
        self.svc = p.service;
        for o in &p.stop {
            let t = self.tasks.iter_mut().find(|t| t.id == o.task_id).unwrap();
            t.desired_status = DesiredStatus::Stopped;
            t.stop_code = Some(STOP_SCHEDULER.into());
            t.stopped_reason = Some(o.reason.clone());
        }
        for s in &p.start {
            for n in 0..s.count {
                // Placement takes ACTIVE instances only.
                let active: Vec<&InstanceRecord> = self
                    .instances
                    .iter()
                    .filter(|i| i.status == "ACTIVE")
                    .collect();
                let inst = s
                    .instance
                    .clone()
                    .unwrap_or_else(|| active[n % active.len()].id.clone());
                let t = self.task(&s.deployment, &s.task_definition, &inst);
                self.tasks.push(t);
            }
        }
        let live = self
            .tasks
            .iter()
            .filter(|t| t.last_status != TaskStatus::Stopped)
            .count();
        let healthy = self
            .tasks
            .iter()
            .filter(|t| {
                healthy(t, self.now, &Settings::default())
                    && matches!(self.lb_health(t), LbHealth::None | LbHealth::Healthy)
            })
            .count();
        self.seen.push((live, healthy));
    }

    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.step();
        }
    }

    /// A RUNNING task of `td` exits (its essential container stopped).
    fn crash_one(&mut self, td: &str) {
        let now = self.now;
        let victim = self
            .tasks
            .iter_mut()
            .find(|t| t.task_definition_arn == td && t.last_status == TaskStatus::Running)
            .unwrap();
        victim.last_status = TaskStatus::Stopped;
        victim.desired_status = DesiredStatus::Stopped;
        victim.stop_code = Some(STOP_ESSENTIAL_EXITED.into());
        victim.stopping_at = Some(now);
    }

    fn running(&self, td: &str) -> usize {
        self.tasks
            .iter()
            .filter(|t| {
                t.task_definition_arn == td
                    && t.last_status == TaskStatus::Running
                    && t.desired_status == DesiredStatus::Running
            })
            .count()
    }
}

#[test]
fn reaches_desired_count_and_steady_state() {
    let mut w = World::new(service(3, 100, 200));
    w.run(6);
    assert_eq!(w.running("td:1"), 3);
    assert_eq!(w.svc.running_count, 3);
    let p = w.svc.primary();
    assert_eq!(p.rollout_state, "COMPLETED");
    assert!(w.svc.steady);
    assert!(
        w.svc.events[0]
            .message
            .ends_with("has reached a steady state."),
        "{:?}",
        w.svc.events
    );
    assert_eq!(w.svc.last_completed.as_ref().unwrap().1, "td:1");
}

#[test]
fn replaces_a_task_that_dies() {
    let mut w = World::new(service(3, 100, 200));
    w.run(6);
    w.crash_one("td:1");
    w.run(4);
    assert_eq!(w.running("td:1"), 3);
}

#[test]
fn rolling_update_respects_minimum_and_maximum() {
    for (min, max) in [(100, 200), (50, 100), (0, 100), (50, 150)] {
        let mut w = World::new(service(4, min, max));
        w.run(6);
        w.seen.clear();
        let mut rng = StdRng::seed_from_u64(3);
        w.svc.deploy(w.now, "td:2", &mut rng);
        w.run(15);
        assert_eq!(w.running("td:2"), 4, "min {min} max {max}");
        assert_eq!(w.running("td:1"), 0, "min {min} max {max}");
        assert_eq!(w.svc.deployments.len(), 1, "old deployment drained");
        assert_eq!(w.svc.primary().rollout_state, "COMPLETED");
        for (live, healthy) in &w.seen {
            assert!(
                *live <= 4 * max as usize / 100,
                "min {min} max {max}: {:?}",
                w.seen
            );
            assert!(
                *healthy >= (4 * min as usize).div_ceil(100),
                "min {min} max {max}: {:?}",
                w.seen
            );
        }
    }
}

#[test]
fn circuit_breaker_rolls_back_to_the_last_completed_deployment() {
    let mut w = World::new(service(3, 100, 200));
    w.run(6);
    let good = w.svc.primary().id.clone();
    w.seen.clear();
    w.broken.push("td:bad".into());
    let mut rng = StdRng::seed_from_u64(3);
    w.svc.deploy(w.now, "td:bad", &mut rng);
    w.run(20);
    // Back on td:1 with three tasks, never below three healthy on the way.
    assert_eq!(w.svc.task_definition, "td:1");
    assert_eq!(w.running("td:1"), 3);
    assert!(w.seen.iter().all(|(_, h)| *h >= 3), "{:?}", w.seen);
    let msgs: Vec<&str> = w.svc.events.iter().map(|e| e.message.as_str()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.ends_with("deployment failed: tasks failed to start.")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains(&format!("rolling back to deployment {good}"))),
        "{msgs:?}"
    );
    // The failed deployment drained away.
    assert!(w
        .svc
        .deployments
        .iter()
        .all(|d| d.task_definition == "td:1"));
}

#[test]
fn failing_tasks_throttle_launches() {
    let mut svc = service(2, 100, 200);
    svc.deployment_config.circuit_breaker = false;
    let mut w = World::new(svc);
    w.broken.push("td:1".into());
    w.run(8);
    assert!(w.svc.throttle.failures >= 3);
    assert!(w.svc.throttle.until > w.now - 3_000);
    assert!(w
        .svc
        .events
        .iter()
        .any(|e| e.message.contains("unable to consistently start tasks")));
    let launched = w.tasks.len();
    w.run(1);
    assert_eq!(w.tasks.len(), launched, "throttled: no launch");
}

#[test]
fn draining_instance_tasks_are_replaced() {
    let mut w = World::new(service(2, 100, 200));
    w.run(6);
    w.instances[0].status = "DRAINING".into();
    // New tasks must land elsewhere: the world places round-robin, so keep only i-2.
    w.instances.retain(|i| i.id == "i-2");
    let mut drained = instance("i-1");
    drained.status = "DRAINING".into();
    w.instances.push(drained);
    w.run(10);
    let on_drained = w
        .tasks
        .iter()
        .filter(|t| t.instance_id.as_deref() == Some("i-1") && t.last_status != TaskStatus::Stopped)
        .count();
    assert_eq!(on_drained, 0);
}

#[test]
fn scale_in_and_delete() {
    let mut w = World::new(service(4, 100, 200));
    w.run(6);
    w.svc.desired_count = 1;
    w.run(3);
    assert_eq!(w.running("td:1"), 1);
    w.svc.status = "DRAINING".into();
    w.svc.desired_count = 0;
    w.run(3);
    assert_eq!(w.svc.status, "INACTIVE");
    assert_eq!(w.running("td:1"), 0);
}

#[test]
fn daemon_runs_one_task_per_instance() {
    let mut svc = service(0, 0, 100);
    svc.scheduling_strategy = "DAEMON".into();
    let mut w = World::new(svc);
    w.instances.push(instance("i-3"));
    w.run(4);
    for i in ["i-1", "i-2", "i-3"] {
        let n = w
            .tasks
            .iter()
            .filter(|t| t.instance_id.as_deref() == Some(i) && t.last_status == TaskStatus::Running)
            .count();
        assert_eq!(n, 1, "{i}");
    }
    assert_eq!(w.svc.desired_count, 3);
    w.instances[2].status = "DRAINING".into();
    w.run(3);
    assert_eq!(w.svc.desired_count, 2);
    assert_eq!(w.running("td:1"), 2);
}

#[test]
fn daemon_waits_for_a_stopping_task_before_replacing_it() {
    let mut svc = service(0, 0, 100);
    svc.scheduling_strategy = "DAEMON".into();
    let mut w = World::new(svc);
    w.instances.truncate(1);
    w.run(4);
    assert_eq!(w.running("td:1"), 1);
    // Its essential container exited: asked to stop, not yet STOPPED.
    let t = w
        .tasks
        .iter_mut()
        .find(|t| t.last_status == TaskStatus::Running)
        .unwrap();
    crate::lifecycle::request_stop(t, w.now, STOP_ESSENTIAL_EXITED, "exited");
    let p = w.plan();
    assert!(p.start.is_empty(), "one slot per instance: {:?}", p.start);
    // Once it is STOPPED, the replacement starts.
    w.run(3);
    assert_eq!(w.running("td:1"), 1);
}

#[test]
fn breaker_threshold_is_half_at_least_three_at_most_two_hundred() {
    assert_eq!(failure_threshold(1), 3);
    assert_eq!(failure_threshold(10), 5);
    assert_eq!(failure_threshold(11), 6);
    assert_eq!(failure_threshold(1000), 200);
}

#[test]
fn at_rest_only_once_steady_settled_and_unthrottled() {
    let s = Settings::default();
    let mut w = World::new(service(3, 100, 200));
    // Starting: tasks not yet RUNNING, then not yet settled.
    w.step();
    assert!(!at_rest(&w.svc, &w.tasks, &|_| LbHealth::None, w.now, &s));
    w.run(6);
    assert!(w.svc.steady);
    assert!(at_rest(&w.svc, &w.tasks, &|_| LbHealth::None, w.now, &s));
    // A replacement that has just started is inside the settle window.
    let t = w
        .tasks
        .iter_mut()
        .find(|t| t.last_status == TaskStatus::Running)
        .unwrap();
    t.started_at = Some(w.now - 1);
    assert!(!at_rest(&w.svc, &w.tasks, &|_| LbHealth::None, w.now, &s));
    assert!(at_rest(
        &w.svc,
        &w.tasks,
        &|_| LbHealth::None,
        w.now + s.settle,
        &s
    ));
    // A health-check grace period longer than the settle time counts too.
    w.svc.health_check_grace_period_seconds = Some(60);
    assert!(!at_rest(
        &w.svc,
        &w.tasks,
        &|_| LbHealth::None,
        w.now + s.settle,
        &s
    ));
    assert!(at_rest(
        &w.svc,
        &w.tasks,
        &|_| LbHealth::None,
        w.now + 60_000,
        &s
    ));
    // A throttled launch waits on the clock.
    w.svc.throttle.until = w.now + 120_000;
    assert!(!at_rest(
        &w.svc,
        &w.tasks,
        &|_| LbHealth::None,
        w.now + 60_000,
        &s
    ));
    // A task asked to stop is not at rest.
    w.svc.throttle.until = 0;
    w.tasks[0].desired_status = DesiredStatus::Stopped;
    assert!(!at_rest(
        &w.svc,
        &w.tasks,
        &|_| LbHealth::None,
        w.now + 60_000,
        &s
    ));
}

#[test]
fn a_start_time_at_the_end_of_time_is_not_past_any_window() {
    // startedAt comes from the agent: i64::MAX once overflowed `at + settle`.
    let s = Settings::default();
    let mut w = World::new(service(2, 100, 200));
    w.svc.health_check_grace_period_seconds = Some(i32::MAX);
    w.run(4);
    for t in &mut w.tasks {
        t.started_at = Some(i64::MAX);
        t.health_status = "UNHEALTHY".into();
    }
    assert!(!at_rest(&w.svc, &w.tasks, &|_| LbHealth::None, w.now, &s));
    assert!(w.tasks.iter().all(|t| !healthy(t, w.now, &s)));
    // Not past the grace period: no unhealthy task is replaced.
    let p = w.plan();
    assert!(p.stop.is_empty(), "{:?}", p.stop);
}

fn behind_a_load_balancer(mut svc: ServiceRecord) -> ServiceRecord {
    svc.load_balancers = vec![ecs::LoadBalancer {
        target_group_arn: Some("arn:tg/web".into()),
        container_name: Some("app".into()),
        container_port: Some(80),
        ..Default::default()
    }];
    svc
}

#[test]
fn a_rolling_update_behind_a_load_balancer_waits_for_healthy_targets() {
    for (min, max) in [(100, 200), (50, 100)] {
        let mut w = World::new(behind_a_load_balancer(service(4, min, max)));
        // Targets take four steps (12 s) to pass the health checks.
        w.lb_healthy_after = 12_000;
        w.run(10);
        assert_eq!(w.running("td:1"), 4);
        assert!(w.svc.steady, "steady once targets are healthy");
        w.seen.clear();
        w.svc.deploy(w.now, "td:2", &mut StdRng::seed_from_u64(3));
        w.run(40);
        assert_eq!(w.running("td:2"), 4, "min {min} max {max}");
        assert_eq!(w.running("td:1"), 0, "min {min} max {max}");
        for (live, healthy) in &w.seen {
            assert!(*live <= 4 * max as usize / 100, "{:?}", w.seen);
            assert!(
                *healthy >= (4 * min as usize).div_ceil(100),
                "min {min} max {max}: healthy by the load balancer fell below the minimum: {:?}",
                w.seen
            );
        }
    }
}

#[test]
fn a_task_failing_elb_health_checks_is_replaced_after_the_grace_period() {
    let mut svc = behind_a_load_balancer(service(2, 100, 200));
    svc.health_check_grace_period_seconds = Some(30);
    let mut w = World::new(svc);
    w.run(6);
    let victim = w.tasks[0].id.clone();
    w.lb_failing.push(victim.clone());
    // Inside the grace period (counted from the task's start) nothing happens.
    w.tasks[0].started_at = Some(w.now);
    w.run(5);
    let t = w.tasks.iter().find(|t| t.id == victim).unwrap();
    assert_eq!(t.desired_status, DesiredStatus::Running);
    w.run(6);
    let t = w.tasks.iter().find(|t| t.id == victim).unwrap();
    assert_eq!(t.desired_status, DesiredStatus::Stopped);
    assert_eq!(
        t.stopped_reason.as_deref(),
        Some("Task failed ELB health checks in (target-group arn:tg/web)")
    );
    w.run(4);
    assert_eq!(w.running("td:1"), 2, "replaced");
}

#[test]
fn not_at_rest_while_a_target_is_not_healthy() {
    let s = Settings::default();
    let mut w = World::new(behind_a_load_balancer(service(2, 100, 200)));
    w.run(6);
    let later = w.now + 60_000;
    assert!(at_rest(&w.svc, &w.tasks, &|_| LbHealth::Healthy, later, &s));
    assert!(!at_rest(
        &w.svc,
        &w.tasks,
        &|_| LbHealth::Initial,
        later,
        &s
    ));
}

#[test]
fn draining_an_instance_behind_a_load_balancer_keeps_the_minimum_serving() {
    let mut w = World::new(behind_a_load_balancer(service(2, 100, 200)));
    w.lb_healthy_after = 9_000;
    w.run(8);
    assert_eq!(w.running("td:1"), 2);
    w.seen.clear();
    // Only i-2 takes new tasks; i-1 drains.
    w.instances.retain(|i| i.id == "i-2");
    let mut drained = instance("i-1");
    drained.status = "DRAINING".into();
    w.instances.push(drained);
    w.run(20);
    let live_on_drained = w
        .tasks
        .iter()
        .filter(|t| t.instance_id.as_deref() == Some("i-1") && t.last_status != TaskStatus::Stopped)
        .count();
    assert_eq!(live_on_drained, 0, "every task left the draining instance");
    assert_eq!(w.running("td:1"), 2);
    for (_, healthy) in &w.seen {
        assert!(
            *healthy >= 2,
            "serving tasks fell below the minimum: {:?}",
            w.seen
        );
    }
}

#[test]
fn scale_in_passes_protected_tasks_by_until_protection_lapses() {
    let mut w = World::new(service(3, 100, 200));
    w.run(6);
    let until = w.now + 30_000;
    let ids: Vec<String> = w.tasks.iter().take(2).map(|t| t.id.clone()).collect();
    for t in w.tasks.iter_mut().filter(|t| ids.contains(&t.id)) {
        t.protected_until = Some(until);
    }
    w.svc.desired_count = 0;
    w.run(3);
    // Only the unprotected task went; the service is not at rest while
    // protection holds, so its lapse is noticed.
    assert_eq!(w.running("td:1"), 2);
    let lb = |_: &TaskRecord| LbHealth::None;
    assert!(!at_rest(&w.svc, &w.tasks, &lb, w.now, &Settings::default()));
    while w.now < until {
        w.step();
    }
    w.run(2);
    assert_eq!(w.running("td:1"), 0);
}

#[test]
fn a_deployment_waits_for_a_protected_task_of_the_old_revision() {
    let mut w = World::new(service(2, 0, 100));
    w.run(6);
    let old = w.tasks[0].id.clone();
    let until = w.now + 60_000;
    w.tasks[0].protected_until = Some(until);
    let mut rng = StdRng::seed_from_u64(3);
    w.svc.deploy(w.now, "td:2", &mut rng);
    w.run(10);
    let kept = w.tasks.iter().find(|t| t.id == old).unwrap();
    assert_eq!(kept.desired_status, DesiredStatus::Running, "protected");
    assert_eq!(
        w.running("td:2"),
        1,
        "maximum 100%: room for one new task only"
    );
    while w.now < until {
        w.step();
    }
    w.run(6);
    assert_eq!(w.running("td:1"), 0);
    assert_eq!(w.running("td:2"), 2);
}

mod blue_green {
    use super::super::blue_green::{continue_hook, traffic, Route};
    use super::*;

    const BLUE_TG: &str = "arn:tg/blue";
    const GREEN_TG: &str = "arn:tg/green";
    const PROD: &str = "arn:rule/prod";
    const TEST: &str = "arn:rule/test";

    fn pause(stage: ecs::DeploymentLifecycleHookStage) -> ecs::DeploymentLifecycleHook {
        ecs::DeploymentLifecycleHook {
            target_type: Some(ecs::DeploymentLifecycleHookTargetType::Pause),
            lifecycle_stages: Some(vec![stage]),
            ..Default::default()
        }
    }

    /// Three tasks behind a load balancer, deployed blue/green.
    fn world(hooks: Vec<ecs::DeploymentLifecycleHook>, bake: i32) -> World {
        let mut s = ServiceRecord::new("web", "arn:svc/web", "c", "arn:c", 0);
        s.desired_count = 3;
        s.deployment_config.blue_green = Some(BlueGreenConfig {
            bake_time_minutes: bake,
            hooks,
            steps: None,
        });
        s.load_balancers = vec![ecs::LoadBalancer {
            target_group_arn: Some(BLUE_TG.into()),
            container_name: Some("app".into()),
            container_port: Some(80),
            advanced_configuration: Some(ecs::AdvancedConfiguration {
                alternate_target_group_arn: Some(GREEN_TG.into()),
                production_listener_rule: Some(PROD.into()),
                test_listener_rule: Some(TEST.into()),
                role_arn: None,
            }),
            ..Default::default()
        }];
        s.deploy(0, "td:1", &mut StdRng::seed_from_u64(1));
        let mut w = World::new(s);
        w.run(8);
        assert_eq!(w.running("td:1"), 3);
        assert_eq!(w.svc.primary().rollout_state, "COMPLETED");
        w
    }

    fn route(w: &World, rule: &str) -> Vec<(String, u32)> {
        traffic(&w.svc)
            .into_iter()
            .find(|r: &Route| r.rule == rule)
            .map(|r| r.groups)
            .unwrap()
    }

    fn to(tg: &str) -> Vec<(String, u32)> {
        let other = if tg == BLUE_TG { GREEN_TG } else { BLUE_TG };
        vec![(tg.to_string(), 100), (other.to_string(), 0)]
    }

    fn stage(w: &World) -> String {
        w.svc.primary().blue_green.as_ref().unwrap().stage.clone()
    }

    fn history_status(w: &World) -> String {
        w.svc.history[0].status.clone()
    }

    #[test]
    fn green_runs_in_full_beside_blue_then_takes_the_traffic() {
        let mut w = world(vec![], 0);
        assert_eq!(route(&w, PROD), to(BLUE_TG));
        w.seen.clear();
        w.svc.deploy(w.now, "td:2", &mut StdRng::seed_from_u64(3));
        let mut both = false;
        for _ in 0..20 {
            w.step();
            both |= w.running("td:1") == 3 && w.running("td:2") == 3;
        }
        assert!(both, "green ran in full beside blue");
        assert_eq!(w.running("td:1"), 0);
        assert_eq!(w.running("td:2"), 3);
        assert_eq!(w.svc.primary().rollout_state, "COMPLETED");
        assert_eq!(history_status(&w), "SUCCESSFUL");
        assert_eq!(stage(&w), "CLEAN_UP");
        // Green took the alternate group and now has production and test.
        assert_eq!(route(&w, PROD), to(GREEN_TG));
        assert_eq!(route(&w, TEST), to(GREEN_TG));
        // Blue never stopped before green served: never fewer than 3 healthy.
        assert!(
            w.seen.iter().all(|(_, healthy)| *healthy >= 3),
            "{:?}",
            w.seen
        );
        // The next deployment goes back to the first group.
        w.svc.deploy(w.now, "td:3", &mut StdRng::seed_from_u64(4));
        w.run(20);
        assert_eq!(w.running("td:3"), 3);
        assert_eq!(route(&w, PROD), to(BLUE_TG));
    }

    /// td:2 deployed and paused at POST_SCALE_UP, both revisions running.
    fn paused_after_scale_up() -> World {
        let mut w = world(
            vec![pause(ecs::DeploymentLifecycleHookStage::PostScaleUp)],
            0,
        );
        w.svc.deploy(w.now, "td:2", &mut StdRng::seed_from_u64(3));
        w.run(15);
        w
    }

    #[test]
    fn a_pause_hook_holds_its_stage_until_continued() {
        let mut w = paused_after_scale_up();
        assert_eq!(stage(&w), "POST_SCALE_UP");
        assert_eq!(w.running("td:1"), 3);
        assert_eq!(w.running("td:2"), 3);
        assert_eq!(route(&w, PROD), to(BLUE_TG));
        assert_eq!(route(&w, TEST), to(BLUE_TG));
        let hook = w.svc.primary().blue_green.as_ref().unwrap().hooks[0].clone();
        assert_eq!(hook.status, "AWAITING_ACTION");
        assert!(hook.id.starts_with("ecs-pause-") && hook.id.len() == 53);
        assert_eq!(hook.timeout_action, "ROLLBACK");
        assert_eq!(
            hook.expires_at,
            w.now - 15 * 3_000 + 3_000 * 3 + 1440 * 60_000
        );
        let mut rng = StdRng::seed_from_u64(5);
        assert_eq!(
            continue_hook(&mut w.svc, "ecs-pause-nope", false, w.now, &mut rng),
            Err(super::super::blue_green::ContinueError::NoSuchHook)
        );
        continue_hook(&mut w.svc, &hook.id, false, w.now, &mut rng).unwrap();
        assert_eq!(
            continue_hook(&mut w.svc, &hook.id, false, w.now, &mut rng),
            Err(super::super::blue_green::ContinueError::NotAwaiting)
        );
        w.run(15);
        assert_eq!(w.running("td:2"), 3);
        assert_eq!(w.running("td:1"), 0);
        assert_eq!(history_status(&w), "SUCCESSFUL");
        assert_eq!(route(&w, PROD), to(GREEN_TG));
    }

    #[test]
    fn rolling_back_at_a_hook_returns_traffic_to_blue_and_stops_green() {
        let mut w = world(
            vec![pause(
                ecs::DeploymentLifecycleHookStage::PostTestTrafficShift,
            )],
            0,
        );
        w.svc.deploy(w.now, "td:2", &mut StdRng::seed_from_u64(3));
        w.run(15);
        assert_eq!(stage(&w), "POST_TEST_TRAFFIC_SHIFT");
        // Test traffic reaches green; production still blue.
        assert_eq!(route(&w, TEST), to(GREEN_TG));
        assert_eq!(route(&w, PROD), to(BLUE_TG));
        let hook = w.svc.primary().blue_green.as_ref().unwrap().hooks[0]
            .id
            .clone();
        w.seen.clear();
        continue_hook(
            &mut w.svc,
            &hook,
            true,
            w.now,
            &mut StdRng::seed_from_u64(5),
        )
        .unwrap();
        assert_eq!(w.svc.task_definition, "td:1");
        assert_eq!(route(&w, TEST), to(BLUE_TG));
        assert_eq!(route(&w, PROD), to(BLUE_TG));
        assert_eq!(history_status(&w), "ROLLBACK_IN_PROGRESS");
        w.run(10);
        assert_eq!(w.running("td:1"), 3);
        assert_eq!(w.running("td:2"), 0);
        assert_eq!(w.svc.deployments.len(), 1);
        assert_eq!(history_status(&w), "ROLLBACK_SUCCESSFUL");
        let lifecycle = w.svc.history[0].lifecycle.as_ref().unwrap();
        assert_eq!(lifecycle.hooks[0].status, "FAILED");
        // Blue kept serving throughout.
        assert!(
            w.seen.iter().all(|(_, healthy)| *healthy >= 3),
            "{:?}",
            w.seen
        );
    }

    #[test]
    fn hooks_time_out_to_their_action() {
        for (action, rolled_back) in [
            (ecs::DeploymentLifecycleHookAction::Continue, false),
            (ecs::DeploymentLifecycleHookAction::Rollback, true),
        ] {
            let mut hook = pause(ecs::DeploymentLifecycleHookStage::PreScaleUp);
            hook.timeout_configuration = Some(ecs::DeploymentLifecycleHookTimeoutConfiguration {
                timeout_in_minutes: Some(1),
                action: Some(action),
            });
            let mut w = world(vec![hook], 0);
            w.svc.deploy(w.now, "td:2", &mut StdRng::seed_from_u64(3));
            w.run(5);
            assert_eq!(stage(&w), "PRE_SCALE_UP");
            assert_eq!(
                w.running("td:2"),
                0,
                "nothing starts before PRE_SCALE_UP passes"
            );
            w.now += 60_000;
            w.run(20);
            let timed_out = w.svc.history[0].lifecycle.as_ref().unwrap().hooks[0].clone();
            assert_eq!(timed_out.status, "TIMED_OUT");
            if rolled_back {
                assert_eq!(history_status(&w), "ROLLBACK_SUCCESSFUL");
                assert_eq!(w.running("td:1"), 3);
            } else {
                assert_eq!(history_status(&w), "SUCCESSFUL");
                assert_eq!(w.running("td:2"), 3);
            }
        }
    }

    #[test]
    fn blue_runs_through_the_bake_time() {
        let mut w = world(vec![], 1);
        w.svc.deploy(w.now, "td:2", &mut StdRng::seed_from_u64(3));
        w.run(12);
        assert_eq!(stage(&w), "BAKE_TIME");
        assert_eq!(route(&w, PROD), to(GREEN_TG));
        assert_eq!(w.running("td:1"), 3, "blue keeps running while green bakes");
        w.now += 60_000;
        w.run(5);
        assert_eq!(w.running("td:1"), 0);
        assert_eq!(history_status(&w), "SUCCESSFUL");
    }

    /// Green's share (percent, rounded) of production's weights.
    fn green_share(w: &World, green: &str) -> u32 {
        let groups = route(w, PROD);
        let total: u32 = groups.iter().map(|(_, n)| n).sum();
        let g = groups.iter().find(|(tg, _)| tg == green).unwrap().1;
        (g * 100 + total / 2) / total
    }

    #[test]
    fn linear_and_canary_move_production_in_steps() {
        for (linear, percent, expect) in [
            (true, 30.0, vec![30, 60, 90, 100]),
            (false, 5.0, vec![5, 100]),
        ] {
            let mut w = world(vec![], 0);
            w.svc.deployment_config.blue_green.as_mut().unwrap().steps = Some(TrafficSteps {
                linear,
                percent,
                bake_minutes: 1,
            });
            w.svc.deploy(w.now, "td:2", &mut StdRng::seed_from_u64(3));
            w.run(12);
            assert_eq!(stage(&w), "PRODUCTION_TRAFFIC_SHIFT");
            let mut seen = vec![green_share(&w, GREEN_TG)];
            for _ in 0..5 {
                w.now += 60_000;
                w.run(2);
                let share = if stage(&w) == "PRODUCTION_TRAFFIC_SHIFT" {
                    green_share(&w, GREEN_TG)
                } else {
                    100
                };
                if seen.last() != Some(&share) {
                    seen.push(share);
                }
                // Blue serves its share until the last step.
                if share < 100 {
                    assert_eq!(w.running("td:1"), 3, "linear {linear}: {seen:?}");
                }
            }
            assert_eq!(seen, expect, "linear {linear}");
            w.run(5);
            assert_eq!(history_status(&w), "SUCCESSFUL");
            assert_eq!(w.running("td:1"), 0);
            assert_eq!(route(&w, PROD), to(GREEN_TG));
        }
    }

    #[test]
    fn blue_is_kept_whole_while_it_serves_and_protection_holds_clean_up() {
        let mut w = paused_after_scale_up();
        assert_eq!(stage(&w), "POST_SCALE_UP");
        // A blue task dies while the deployment waits: blue is made whole.
        w.crash_one("td:1");
        w.run(4);
        assert_eq!(w.running("td:1"), 3);
        // A protected blue task holds CLEAN_UP until its protection lapses.
        let until = w.now + 60_000;
        let kept = w
            .tasks
            .iter_mut()
            .find(|t| t.task_definition_arn == "td:1" && t.last_status == TaskStatus::Running)
            .unwrap();
        kept.protected_until = Some(until);
        let kept = kept.id.clone();
        let hook = w.svc.primary().blue_green.as_ref().unwrap().hooks[0]
            .id
            .clone();
        continue_hook(
            &mut w.svc,
            &hook,
            false,
            w.now,
            &mut StdRng::seed_from_u64(5),
        )
        .unwrap();
        w.run(10);
        assert_eq!(stage(&w), "CLEAN_UP");
        assert_eq!(w.running("td:1"), 1);
        assert!(w
            .tasks
            .iter()
            .any(|t| t.id == kept && t.desired_status == DesiredStatus::Running));
        w.now = until;
        w.run(4);
        assert_eq!(w.running("td:1"), 0);
        assert_eq!(history_status(&w), "SUCCESSFUL");
    }

    #[test]
    fn a_draining_hosts_green_tasks_move() {
        let mut w = world(vec![], 0);
        w.instances.push(instance("i-3"));
        w.instances[0].status = "DRAINING".into();
        w.svc.deploy(w.now, "td:2", &mut StdRng::seed_from_u64(3));
        w.run(20);
        assert_eq!(w.running("td:2"), 3);
        assert_eq!(history_status(&w), "SUCCESSFUL");
        assert!(w.tasks.iter().all(
            |t| t.instance_id.as_deref() != Some("i-1") || t.last_status == TaskStatus::Stopped
        ));
    }

    #[test]
    fn a_tripped_breaker_goes_back_to_blue_even_without_rollback() {
        let mut w = world(vec![], 0);
        w.svc.deployment_config.circuit_breaker = true;
        w.svc.deployment_config.rollback = false;
        w.broken.push("td:bad".into());
        w.seen.clear();
        w.svc.deploy(w.now, "td:bad", &mut StdRng::seed_from_u64(3));
        w.run(40);
        assert_eq!(history_status(&w), "ROLLBACK_SUCCESSFUL");
        assert_eq!(w.svc.task_definition, "td:1");
        assert_eq!(w.running("td:1"), 3);
        assert_eq!(w.svc.deployments.len(), 1);
        assert_eq!(route(&w, PROD), to(BLUE_TG));
        assert!(
            w.seen.iter().all(|(_, healthy)| *healthy >= 3),
            "{:?}",
            w.seen
        );
    }

    #[test]
    fn a_deployment_superseded_midway_is_reconciled_away() {
        let mut w = paused_after_scale_up();
        assert_eq!(w.running("td:2"), 3);
        // td:3 replaces td:2 before it took any traffic: td:2 goes, blue stays.
        w.svc.deploy(w.now, "td:3", &mut StdRng::seed_from_u64(4));
        w.run(15);
        assert_eq!(w.running("td:2"), 0);
        assert_eq!(w.running("td:1"), 3);
        assert_eq!(w.running("td:3"), 3);
        assert_eq!(stage(&w), "POST_SCALE_UP");
        // td:3 registers with the group blue does not use.
        let l = w.svc.primary().blue_green.as_ref().unwrap();
        assert_eq!(l.target_groups, vec![GREEN_TG.to_string()]);
        assert_eq!(route(&w, PROD), to(BLUE_TG));
    }
}
