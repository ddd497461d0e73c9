//! The scheduler for a service with the EXTERNAL deployment controller: no
//! deployments of ECS's making, only the task sets an external tool
//! creates. Each task set keeps `ceil(desiredCount × scale%)` tasks of its
//! own task definition (none once deleted, DRAINING); tasks of no task set
//! are stopped. The tool moves traffic and shifts scale itself, so there
//! is no rolling, no minimum or maximum percent and no circuit breaker.

use super::*;

pub(super) fn plan<R: Rng + ?Sized>(
    svc: &ServiceRecord,
    tasks: &[TaskRecord],
    instances: &[InstanceRecord],
    lb: &dyn Fn(&TaskRecord) -> LbHealth,
    now: Millis,
    s: &Settings,
    rng: &mut R,
) -> Plan {
    let mut svc = svc.clone();
    let mut stop: Vec<StopOrder> = vec![];
    let mut start: Vec<Start> = vec![];
    let mut stopping = health_stops(&svc, tasks, lb, now, &mut stop);
    let draining_service = svc.status != "ACTIVE";
    let active_instance = |id: &Option<String>| {
        id.as_deref()
            .and_then(|id| instances.iter().find(|i| i.id == id))
            .is_some_and(|i| i.status == "ACTIVE")
    };
    let lb_ok = |t: &TaskRecord| t.load_balancers.is_empty() || lb(t) == LbHealth::Healthy;
    let is_healthy = |t: &TaskRecord| healthy(t, now, s) && lb_ok(t);
    let throttled = now < svc.throttle.until;
    let desired = if draining_service {
        0
    } else {
        svc.desired_count
    };
    // Tasks of no task set (one deleted and gone) are not the service's to keep.
    let orphans: Vec<&TaskRecord> = tasks
        .iter()
        .filter(|t| {
            wanted(t)
                && !stopping.contains(t.id.as_str())
                && !svc
                    .task_sets
                    .iter()
                    .any(|ts| t.started_by.as_deref() == Some(ts.id.as_str()))
        })
        .collect();
    for t in orphans {
        stop.push(StopOrder {
            task_id: t.id.clone(),
            reason: "Task set deleted".into(),
        });
        stopping.insert(&t.id);
    }
    for ts in &mut svc.task_sets {
        let want = if ts.status == "DRAINING" {
            0
        } else {
            ts.share_of(desired)
        };
        let mine: Vec<&TaskRecord> = tasks
            .iter()
            .filter(|t| {
                wanted(t)
                    && t.started_by.as_deref() == Some(ts.id.as_str())
                    && !stopping.contains(t.id.as_str())
            })
            .collect();
        // A draining instance's tasks move; the others are the set's.
        let (mut keep, moving): (Vec<&TaskRecord>, Vec<&TaskRecord>) = mine
            .into_iter()
            .partition(|t| active_instance(&t.instance_id));
        for t in moving {
            stop.push(StopOrder {
                task_id: t.id.clone(),
                reason: "Container instance is not ACTIVE".into(),
            });
            stopping.insert(&t.id);
        }
        stop_preference(&mut keep, &is_healthy);
        let shielded =
            |t: &TaskRecord| ts.status != "DRAINING" && !draining_service && t.protected(now);
        while keep.len() > want.max(0) as usize {
            let Some(k) = keep.iter().position(|t| !shielded(t)) else {
                break;
            };
            let t = keep.remove(k);
            stop.push(StopOrder {
                task_id: t.id.clone(),
                reason: format!("Scaling activity initiated by (task set {})", ts.id),
            });
            stopping.insert(&t.id);
        }
        let missing = (want.max(0) as usize).saturating_sub(keep.len());
        if missing > 0 && !throttled {
            start.push(Start {
                deployment: ts.id.clone(),
                task_definition: ts.task_definition.clone(),
                count: missing,
                instance: None,
            });
        }
        let running = keep
            .iter()
            .filter(|t| t.last_status == TaskStatus::Running)
            .count() as i32;
        let pending = keep.len() as i32 - running;
        let stable =
            running == want && pending == 0 && missing == 0 && keep.iter().all(|t| is_healthy(t));
        if ts.computed_desired_count != want
            || ts.running_count != running
            || ts.pending_count != pending
            || ts.stable != stable
        {
            ts.updated_at = now;
        }
        if ts.stable != stable {
            ts.stability_at = now;
        }
        ts.computed_desired_count = want;
        ts.running_count = running;
        ts.pending_count = pending;
        ts.stable = stable;
    }
    // A deleted task set is gone once none of its tasks is.
    svc.task_sets.retain(|ts| {
        ts.status != "DRAINING"
            || tasks
                .iter()
                .any(|t| live(t) && t.started_by.as_deref() == Some(ts.id.as_str()))
    });
    svc.running_count = svc.task_sets.iter().map(|ts| ts.running_count).sum();
    svc.pending_count = svc.task_sets.iter().map(|ts| ts.pending_count).sum();

    stopped_event(&mut svc, &stop, now, rng);
    let settled = svc.task_sets.iter().all(|ts| ts.stable)
        && stop.is_empty()
        && start.is_empty()
        && !tasks.iter().any(|t| live(t) && !wanted(t));
    let moved = !start.is_empty() || !stop.is_empty();
    mark_steady(&mut svc, settled, moved, now, rng);
    if draining_service && !tasks.iter().any(live) {
        svc.status = "INACTIVE".into();
        svc.desired_count = 0;
        svc.task_sets.clear();
    }
    Plan {
        service: svc,
        start,
        stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{ContainerRecord, Resources};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn task_set(id: &str, td: &str, scale: f64) -> TaskSetRecord {
        TaskSetRecord {
            id: id.into(),
            arn: format!("arn:task-set/c/web/{id}"),
            external_id: None,
            status: "ACTIVE".into(),
            task_definition: td.into(),
            launch_type: "EC2".into(),
            capacity_provider_strategy: vec![],
            network_configuration: None,
            load_balancers: vec![],
            scale,
            computed_desired_count: 0,
            running_count: 0,
            pending_count: 0,
            stable: false,
            stability_at: 0,
            created_at: 0,
            updated_at: 0,
            tags: Default::default(),
        }
    }

    /// Runs plans against tasks that start at once and stop at once.
    fn run(svc: &mut ServiceRecord, tasks: &mut Vec<TaskRecord>, steps: usize) {
        let host = InstanceRecord::new(
            "i-1",
            "arn:i-1",
            "c",
            Resources {
                cpu: 4096,
                memory: 8192,
                ..Default::default()
            },
            0,
        );
        let mut rng = StdRng::seed_from_u64(5);
        for step in 0..steps {
            let now = 10_000 + step as i64 * 3_000;
            for t in tasks.iter_mut() {
                if t.desired_status == DesiredStatus::Stopped {
                    t.last_status = TaskStatus::Stopped;
                } else if t.last_status < TaskStatus::Running {
                    t.last_status = TaskStatus::Running;
                    t.started_at = Some(now);
                }
            }
            let p = plan(
                svc,
                tasks,
                std::slice::from_ref(&host),
                &|_| LbHealth::None,
                now,
                &Settings::default(),
                &mut rng,
            );
            *svc = p.service;
            for o in &p.stop {
                let t = tasks.iter_mut().find(|t| t.id == o.task_id).unwrap();
                t.desired_status = DesiredStatus::Stopped;
            }
            for st in &p.start {
                for _ in 0..st.count {
                    let n = tasks.len();
                    tasks.push(TaskRecord {
                        task_definition_arn: st.task_definition.clone(),
                        instance_id: Some("i-1".into()),
                        started_by: Some(st.deployment.clone()),
                        group: "service:web".into(),
                        containers: vec![ContainerRecord::new("app", "", "img", true, false)],
                        ..TaskRecord::new(&format!("t{n:03}"), "", "c", now)
                    });
                }
            }
        }
    }

    fn running(tasks: &[TaskRecord], set: &str) -> usize {
        tasks
            .iter()
            .filter(|t| {
                t.started_by.as_deref() == Some(set)
                    && t.last_status == TaskStatus::Running
                    && t.desired_status == DesiredStatus::Running
            })
            .count()
    }

    #[test]
    fn task_sets_run_their_share_and_a_deleted_one_drains_away() {
        let mut svc = ServiceRecord::new("web", "arn:svc/web", "c", "arn:c", 0);
        svc.external = true;
        svc.desired_count = 3;
        svc.task_sets = vec![
            task_set("blue", "td:1", 100.0),
            task_set("green", "td:2", 50.0),
        ];
        let mut tasks = vec![];
        run(&mut svc, &mut tasks, 3);
        // 3 × 100% and ceil(3 × 50%) = 2.
        assert_eq!((running(&tasks, "blue"), running(&tasks, "green")), (3, 2));
        assert!(svc.task_sets.iter().all(|ts| ts.stable));
        assert_eq!(svc.task_sets[1].computed_desired_count, 2);
        assert!(svc.steady);

        // Traffic moved: green to 100%, blue deleted.
        svc.task_sets[1].scale = 100.0;
        svc.task_sets[0].status = "DRAINING".into();
        run(&mut svc, &mut tasks, 4);
        assert_eq!((running(&tasks, "blue"), running(&tasks, "green")), (0, 3));
        assert_eq!(svc.task_sets.len(), 1, "the drained set is gone");
        assert_eq!(svc.running_count, 3);

        // Deleting the service stops everything.
        svc.status = "DRAINING".into();
        run(&mut svc, &mut tasks, 3);
        assert_eq!(svc.status, "INACTIVE");
        assert_eq!(running(&tasks, "green"), 0);
    }
}
