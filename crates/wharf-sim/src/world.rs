//! The simulated cluster: hosts with their agents, the services and their
//! tasks, the control plane applying plans, and the faults.
//!
//! Everything happens in [`World::run`]'s event loop. Agents report what
//! they observe through the real [`lifecycle::apply_report`], so the task
//! records go through the same state machine as in production.

use crate::{invariants, settings, Config, Report};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use wharf_core::agent_protocol::{ContainerReport, TaskStateReport};
use wharf_core::clock::Millis;
use wharf_core::lifecycle::{apply_report, request_stop, DesiredStatus, TaskStatus};
use wharf_core::placement::{self, Constraint, Strategy};
use wharf_core::query::{self, HostView};
use wharf_core::records::{ContainerRecord, InstanceRecord, Resources, TaskRecord};
use wharf_core::service::{
    self, BlueGreenConfig, DeploymentConfig, Plan, ServiceRecord, STOP_SCHEDULER,
};
use wharf_model::ecs;
use wharf_model::ecs::DeploymentLifecycleHookStage as Stage;

/// How a revision's tasks behave on the hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Good,
    /// Runs, then its essential container exits before it settles.
    Crash,
    /// Never starts (image pull fails): TaskFailedToStart.
    FailStart,
    /// Runs, but its health check fails.
    Unhealthy,
}

impl Kind {
    pub fn broken(self) -> bool {
        self != Kind::Good
    }
}

#[derive(Debug, Clone)]
pub struct Revision {
    pub arn: String,
    pub kind: Kind,
    pub need: Resources,
}

/// What the control plane knows about a host besides its record.
#[derive(Debug, Clone, Default)]
pub struct Host {
    pub connected: bool,
    /// Gone for good: deregistered, its tasks STOPPED.
    pub lost: bool,
    /// Live tasks placed here, and per group (what placement reads).
    pub running: usize,
    pub groups: wharf_core::query::GroupCounts,
    /// What those tasks hold (the store's `/allocs/` record).
    pub allocated: Resources,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub rec: ServiceRecord,
    /// The service's tasks (its group), STOPPED ones until retention passes.
    pub tasks: Vec<TaskRecord>,
    pub revisions: Vec<Revision>,
    pub constraints: Vec<Constraint>,
    pub strategies: Vec<Strategy>,
    /// Whether its revisions' essential container has a health check.
    pub checks: bool,
    /// A desiredCount decrease left more live tasks than maximumPercent of
    /// the new count; open until the live count is back within it.
    pub scaling_in: bool,
    /// The revision the circuit breaker rolled back to, until the user
    /// deploys again: where the service must end.
    pub rolled_back_to: Option<String>,
}

impl Service {
    pub fn daemon(&self) -> bool {
        self.rec.scheduling_strategy == "DAEMON"
    }
    pub fn revision(&self, arn: &str) -> &Revision {
        self.revisions
            .iter()
            .find(|r| r.arn == arn)
            .expect("plans only start known revisions")
    }
}

/// An agent's plan for one task: when it moves on, if its host is connected.
#[derive(Debug, Clone)]
struct AgentTask {
    svc: usize,
    host: usize,
    kind: Kind,
    checks: bool,
    /// PROVISIONING → PENDING.
    pending_at: Millis,
    /// PENDING → RUNNING (or a failed start).
    run_at: Millis,
    /// While RUNNING: the crash or the health verdict, once.
    verdict_at: Option<Millis>,
    /// Asked to stop: STOPPED at this time.
    stop_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Controller,
    Chaos,
    Quiet,
    Agent(String),
    Reconnect(usize),
}

pub struct World {
    pub seed: u64,
    pub cfg: Config,
    pub now: Millis,
    pub step: u64,
    rng: StdRng,
    queue: BinaryHeap<Reverse<(Millis, u64, Ev)>>,
    seq: u64,
    /// Parallel to `hosts`: the records `plan` and `place` read.
    pub instances: Vec<InstanceRecord>,
    pub hosts: Vec<Host>,
    pub services: Vec<Service>,
    agent: BTreeMap<String, AgentTask>,
    /// Every task ever created and the instance it was placed on.
    pub placed_on: BTreeMap<String, String>,
    /// Faults are over.
    pub quiet: bool,
    quiet_since: Millis,
    done: bool,
    report: Report,
    hash: u64,
    recent: VecDeque<String>,
}

const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

impl World {
    pub fn new(seed: u64, cfg: Config) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let n_hosts = rng.gen_range(cfg.hosts.0..=cfg.hosts.1);
        let mut w = World {
            seed,
            now: 0,
            step: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            instances: vec![],
            hosts: vec![],
            services: vec![],
            agent: BTreeMap::new(),
            placed_on: BTreeMap::new(),
            quiet: false,
            quiet_since: 0,
            done: false,
            report: Report {
                seed,
                ..Report::default()
            },
            hash: 0xcbf2_9ce4_8422_2325,
            recent: VecDeque::new(),
            rng,
            cfg,
        };
        for _ in 0..n_hosts {
            w.add_host();
        }
        let n = w
            .rng
            .gen_range(w.cfg.replica_services.0..=w.cfg.replica_services.1);
        for i in 0..n {
            let s = w.new_service(i, false);
            w.services.push(s);
        }
        let d = w.new_service(n, true);
        w.services.push(d);
        w.report.hosts = n_hosts;
        w.report.services = w.services.len();
        w.at(0, Ev::Controller);
        w.at(w.cfg.chaos_ms, Ev::Chaos);
        w.at(w.cfg.fault_ms, Ev::Quiet);
        w
    }

    fn at(&mut self, t: Millis, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq, ev)));
    }

    /// Appends a line to the trace: folded into the hash (FNV-1a), and
    /// kept for failure messages.
    pub fn trace(&mut self, line: String) {
        let line = format!("[{} t={}] {line}", self.step, self.now);
        for b in line.bytes().chain([b'\n']) {
            self.hash ^= b as u64;
            self.hash = self.hash.wrapping_mul(0x100_0000_01b3);
        }
        if self.recent.len() == 40 {
            self.recent.pop_front();
        }
        self.recent.push_back(line.clone());
        if self.cfg.keep_trace {
            self.report.trace.push(line);
        }
    }

    /// Panics with what's needed to replay: the seed, the step, the time
    /// and the last trace lines (every line in a replay).
    pub fn fail(&self, msg: String) -> ! {
        // A replay keeps the whole trace: all of it, then.
        let recent: Vec<&str> = match self.cfg.keep_trace {
            true => self.report.trace.iter().map(String::as_str).collect(),
            false => self.recent.iter().map(String::as_str).collect(),
        };
        panic!(
            "wharf-sim seed {} step {} t={}ms: {msg}\n--- last trace lines ---\n{}\n--- replay: WHARF_SIM_SEED={} cargo test -p wharf-sim replay -- --nocapture",
            self.seed,
            self.step,
            self.now,
            recent.join("\n"),
            self.seed
        )
    }

    pub fn report(&self) -> Report {
        let mut r = self.report.clone();
        r.steps = self.step;
        r.end_ms = self.now;
        r.settle_ms = self.now - self.quiet_since;
        r.trace_hash = self.hash;
        r
    }

    fn add_host(&mut self) {
        let n = self.instances.len();
        let id = format!("i-{n:05}");
        let zone = ZONES[self.rng.gen_range(0..3)];
        let big = self.rng.gen_bool(0.5);
        let mut attributes = BTreeMap::new();
        attributes.insert("ecs.availability-zone".into(), Some(zone.into()));
        attributes.insert(
            "ecs.instance-type".into(),
            Some(if big { "m5.xlarge" } else { "m5.large" }.into()),
        );
        let registered = Resources {
            cpu: if big { 4096 } else { 2048 },
            memory: if big { 16384 } else { 8192 },
            ..Default::default()
        };
        let arn = format!("arn:aws:ecs:sim:container-instance/sim/{id}");
        self.instances.push(InstanceRecord {
            reserved: Resources {
                tcp_ports: [22, 2375, 51678].into(),
                ..Default::default()
            },
            attributes,
            agent_version: Some("sim".into()),
            hostname: Some(id.clone()),
            ..InstanceRecord::new(&id, &arn, "sim", registered, self.now)
        });
        self.hosts.push(Host {
            connected: true,
            ..Host::default()
        });
    }

    fn new_service(&mut self, i: usize, daemon: bool) -> Service {
        let rng = &mut self.rng;
        let name = if daemon {
            "daemon".to_string()
        } else {
            format!("svc{i}")
        };
        // Configs that can always make progress for a desired count ≥ 2.
        let (min, max) = if daemon {
            (0, 100)
        } else {
            *[
                (100, 200),
                (50, 100),
                (0, 100),
                (50, 150),
                (100, 150),
                (50, 200),
            ]
            .choose(rng)
            .unwrap()
        };
        let circuit_breaker = !daemon && rng.gen_bool(0.7);
        let strategy = |t: ecs::PlacementStrategyType, f: Option<&str>| ecs::PlacementStrategy {
            r#type: Some(t),
            field: f.map(String::from),
        };
        use ecs::PlacementStrategyType::{Binpack, Random, Spread};
        let placement_strategy = match rng.gen_range(0..5) {
            0 => vec![],
            1 => vec![strategy(Random, None)],
            2 => vec![strategy(Spread, Some("instanceId"))],
            3 => vec![
                strategy(Spread, Some("attribute:ecs.availability-zone")),
                strategy(Spread, Some("instanceId")),
            ],
            _ => vec![strategy(Binpack, Some("memory"))],
        };
        let mut placement_constraints = vec![];
        if daemon && rng.gen_bool(0.5) {
            placement_constraints.push(ecs::PlacementConstraint {
                r#type: Some(ecs::PlacementConstraintType::MemberOf),
                expression: Some("attribute:ecs.availability-zone != zone-c".into()),
            });
        } else if !daemon && rng.gen_bool(0.25) {
            placement_constraints.push(ecs::PlacementConstraint {
                r#type: Some(ecs::PlacementConstraintType::DistinctInstance),
                expression: None,
            });
        }
        let mut rec = ServiceRecord::new(
            &name,
            &format!("arn:aws:ecs:sim:service/sim/{name}"),
            "sim",
            "arn:aws:ecs:sim:cluster/sim",
            0,
        );
        rec.desired_count = if daemon { 0 } else { rng.gen_range(2..=12) };
        rec.scheduling_strategy = if daemon { "DAEMON" } else { "REPLICA" }.into();
        rec.deployment_config = DeploymentConfig {
            minimum_healthy_percent: min,
            maximum_percent: max,
            circuit_breaker,
            rollback: circuit_breaker && rng.gen_bool(0.8),
            blue_green: (!daemon && rng.gen_bool(0.3)).then(|| blue_green(rng)),
        };
        rec.placement_constraints = placement_constraints;
        rec.placement_strategy = placement_strategy;
        rec.health_check_grace_period_seconds = if rng.gen_bool(0.5) {
            Some(rng.gen_range(0..=20))
        } else {
            None
        };
        let constraints = placement::parse_constraints(&rec.placement_constraints)
            .expect("the sim's constraints are valid");
        let strategies = placement::parse_strategies(&rec.placement_strategy)
            .expect("the sim's strategies are valid");
        let checks = rng.gen_bool(0.5);
        let mut s = Service {
            rec: rec.clone(),
            tasks: vec![],
            revisions: vec![],
            constraints,
            strategies,
            checks,
            scaling_in: false,
            rolled_back_to: None,
        };
        let first = self.new_revision(&mut s, Kind::Good);
        rec.deploy(0, &first, &mut self.rng);
        s.rec = rec;
        s
    }

    /// Registers a new revision of the service's family; its demand comes
    /// from a real task definition through [`placement::demand`].
    fn new_revision(&mut self, s: &mut Service, kind: Kind) -> String {
        let rng = &mut self.rng;
        let daemon = s.daemon();
        let n = s.revisions.len() + 1;
        let family = s.rec.name.clone();
        let arn = format!("arn:aws:ecs:sim:task-definition/{family}:{n}");
        // A service keeps its host port across revisions, if it has one;
        // svcN uses 8000 + N so that services never collide on ports.
        let port = if daemon {
            // Half the daemons hold a host port, half don't: without one,
            // only the scheduler keeps two of its tasks off one instance.
            (n == 1 && rng.gen_bool(0.5)
                || s.revisions
                    .first()
                    .is_some_and(|r| !r.need.tcp_ports.is_empty()))
            .then_some(9100)
        } else if n == 1 {
            let index: i32 = family.trim_start_matches("svc").parse().unwrap_or(0);
            rng.gen_bool(0.3).then_some(8000 + index)
        } else {
            s.revisions[0].need.tcp_ports.first().map(|p| *p as i32)
        };
        let td = ecs::TaskDefinition {
            family: Some(family.clone()),
            task_definition_arn: Some(arn.clone()),
            container_definitions: Some(vec![ecs::ContainerDefinition {
                name: Some("app".into()),
                image: Some(format!("{family}:{n}")),
                essential: Some(true),
                // A daemon takes only its port: a rolling update stops the
                // old daemon task first, and a replica service may take the
                // CPU it freed; nothing evicts it, so a daemon needing CPU
                // could stay unplaced on a full host forever (as in ECS,
                // where capacity for daemons is reserved by the operator).
                cpu: Some(if daemon { 0 } else { rng.gen_range(1..=8) * 64 }),
                memory: Some(if daemon {
                    0
                } else {
                    rng.gen_range(1..=8) * 128
                }),
                port_mappings: port.map(|p| {
                    vec![ecs::PortMapping {
                        container_port: Some(80),
                        host_port: Some(p),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let need = placement::demand(&td, &Default::default());
        s.revisions.push(Revision {
            arn: arn.clone(),
            kind: if kind == Kind::Unhealthy && !s.checks {
                Kind::Crash
            } else {
                kind
            },
            need,
        });
        arn
    }

    pub fn run(&mut self) {
        while !self.done {
            let Some(Reverse((t, _, ev))) = self.queue.pop() else {
                self.fail("the event queue ran dry".into());
            };
            debug_assert!(t >= self.now, "time never goes back");
            self.now = t;
            self.step += 1;
            match ev {
                Ev::Controller => {
                    self.controller();
                    self.close_windows();
                    invariants::full(self);
                    if self.quiet {
                        if invariants::settled(self).is_ok() {
                            self.trace("all services settled".into());
                            self.done = true;
                        } else if self.now >= self.quiet_since + self.cfg.quiet_ms {
                            let why = invariants::settled(self).unwrap_err();
                            self.fail(format!(
                                "liveness: not settled {} ms after faults stopped: {why}",
                                self.cfg.quiet_ms
                            ));
                        }
                    }
                    let next = self.now + self.cfg.tick_ms;
                    self.at(next, Ev::Controller);
                }
                Ev::Chaos => {
                    if !self.quiet {
                        self.chaos();
                        invariants::full(self);
                        let next = self.now + self.cfg.chaos_ms;
                        self.at(next, Ev::Chaos);
                    }
                }
                Ev::Quiet => {
                    self.begin_quiet();
                    invariants::full(self);
                }
                Ev::Agent(id) => {
                    if let Some(host) = self.agent_step(&id) {
                        invariants::host(self, host);
                        invariants::task(self, &id);
                    }
                }
                Ev::Reconnect(h) => {
                    if !self.quiet && !self.hosts[h].lost {
                        self.reconnect(h);
                    }
                }
            }
        }
    }

    // ---- the control plane -------------------------------------------

    /// A scale-in window closes once the live count is within the maximum.
    fn close_windows(&mut self) {
        for s in &mut self.services {
            if s.scaling_in && invariants::live_count(s) <= invariants::max_total(&s.rec) {
                s.scaling_in = false;
            }
        }
    }

    /// One controller pass: `plan` for every service, each plan applied
    /// (or discarded, as a lost compare-and-swap would).
    fn controller(&mut self) {
        self.collect_garbage();
        let index: BTreeMap<String, usize> = self
            .instances
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        for si in 0..self.services.len() {
            let plan = {
                let hosts = &self.hosts;
                let connected = |id: &str| index.get(id).is_some_and(|&i| hosts[i].connected);
                let s = &self.services[si];
                service::plan(
                    &s.rec,
                    &s.tasks,
                    &self.instances,
                    &connected,
                    &|_| service::LbHealth::None,
                    self.now,
                    &settings(),
                    &mut self.rng,
                )
            };
            self.report.plans += 1;
            self.check_rest(si, &plan, &index);
            if !self.quiet && self.rng.gen_bool(self.cfg.conflict_p) {
                self.report.plans_discarded += 1;
                self.trace(format!(
                    "{} plan discarded (write conflict)",
                    plan.service.name
                ));
                continue;
            }
            let rolled_back_to = invariants::plan(self, si, &plan);
            self.apply(si, plan);
            if let Some(td) = rolled_back_to {
                self.report.rollbacks += 1;
                self.trace(format!(
                    "{} rolled back to {td}",
                    self.services[si].rec.name
                ));
                self.services[si].rolled_back_to = Some(td);
            }
        }
    }

    /// A service `service::at_rest` calls at rest, whose plan changes
    /// nothing now, must have a plan that changes nothing an hour later
    /// either (the controller skips such services on its clock tick).
    fn check_rest(&mut self, si: usize, now: &Plan, index: &BTreeMap<String, usize>) {
        let s = &self.services[si];
        let quiet_now = now.start.is_empty() && now.stop.is_empty() && now.service == s.rec;
        if !quiet_now
            || !service::at_rest(
                &s.rec,
                &s.tasks,
                &|_| service::LbHealth::None,
                self.now,
                &settings(),
            )
        {
            return;
        }
        self.report.rests += 1;
        let hosts = &self.hosts;
        let connected = |id: &str| index.get(id).is_some_and(|&i| hosts[i].connected);
        let later = service::plan(
            &s.rec,
            &s.tasks,
            &self.instances,
            &connected,
            &|_| service::LbHealth::None,
            self.now + 3_600_000,
            &settings(),
            &mut StdRng::seed_from_u64(0),
        );
        if !later.start.is_empty() || !later.stop.is_empty() || later.service != s.rec {
            self.fail(format!(
                "{} was at rest, yet an hour later its plan starts {} and stops {} tasks{}",
                s.rec.name,
                later.start.iter().map(|st| st.count).sum::<usize>(),
                later.stop.len(),
                if later.service != s.rec {
                    " and changes the service"
                } else {
                    ""
                }
            ));
        }
    }

    fn apply(&mut self, si: usize, plan: Plan) {
        let name = plan.service.name.clone();
        let before = self.services[si].rec.primary().id.clone();
        self.services[si].rec = plan.service;
        if self.services[si].rec.primary().id != before {
            self.trace(format!(
                "{name} new primary {} {}",
                self.services[si].rec.primary().id,
                self.services[si].rec.task_definition
            ));
        }
        for o in &plan.stop {
            let t = self.services[si]
                .tasks
                .iter_mut()
                .find(|t| t.id == o.task_id)
                .unwrap_or_else(|| panic!("plan stops unknown task {}", o.task_id));
            if request_stop(t, self.now, STOP_SCHEDULER, &o.reason) {
                self.asked_to_stop(&o.task_id);
            }
            self.trace(format!("{name} stop {} ({})", o.task_id, o.reason));
        }
        let mut started = 0;
        for st in &plan.start {
            let rev = self.services[si].revision(&st.task_definition).clone();
            for _ in 0..st.count {
                let chosen = {
                    let views: Vec<HostView> = self
                        .instances
                        .iter()
                        .zip(&self.hosts)
                        .map(|(instance, h)| HostView {
                            instance,
                            allocated: &h.allocated,
                            connected: h.connected,
                            running_tasks: h.running,
                            groups: &h.groups,
                            placing: None,
                        })
                        .collect();
                    let s = &self.services[si];
                    let group = s.rec.group();
                    match &st.instance {
                        // DAEMON: only the named instance will do.
                        Some(id) => {
                            let i = views
                                .iter()
                                .position(|v| &v.instance.id == id)
                                .expect("daemon starts name known instances");
                            placement::place(
                                &views[i..=i],
                                &rev.need,
                                &group,
                                &s.constraints,
                                &s.strategies,
                                &mut self.rng,
                            )
                            .map(|_| i)
                        }
                        None => placement::place(
                            &views,
                            &rev.need,
                            &group,
                            &s.constraints,
                            &s.strategies,
                            &mut self.rng,
                        ),
                    }
                };
                match chosen {
                    Ok(h) => {
                        invariants::placement(self, h);
                        self.create_task(si, h, &st.deployment, &rev);
                        started += 1;
                    }
                    Err(misfits) => {
                        // The control plane writes a service event and
                        // retries on the next pass.
                        self.report.placement_failures += 1;
                        let mut why: BTreeMap<&str, usize> = BTreeMap::new();
                        for (_, m) in &misfits {
                            *why.entry(m.reason()).or_default() += 1;
                        }
                        let on = st.instance.as_deref().unwrap_or("any host");
                        self.trace(format!("{name} no room on {on} for {}: {why:?}", rev.arn));
                        break;
                    }
                }
            }
        }
        if started > 0 {
            invariants::after_starts(self, si);
        }
    }

    fn create_task(&mut self, si: usize, h: usize, deployment: &str, rev: &Revision) {
        let id = format!("{:032x}", self.rng.gen::<u128>());
        self.hosts[h].allocated.add(&rev.need);
        let inst = &mut self.instances[h];
        inst.version += 1;
        let inst_id = inst.id.clone();
        let inst_arn = inst.arn.clone();
        let s = &self.services[si];
        let group = s.rec.group();
        let checks = s.checks;
        *self.hosts[h].groups.entry(group.clone()).or_insert(0) += 1;
        self.hosts[h].running += 1;
        if self.placed_on.insert(id.clone(), inst_id.clone()).is_some() {
            self.fail(format!("task id {id} created twice"));
        }
        let revision = rev.arn.rsplit(':').next().unwrap().parse().unwrap_or(1);
        let task = TaskRecord {
            cluster_arn: s.rec.cluster_arn.clone(),
            task_definition_arn: rev.arn.clone(),
            family: s.rec.name.clone(),
            revision,
            instance_id: Some(inst_id.clone()),
            instance_arn: Some(inst_arn),
            started_by: Some(deployment.to_string()),
            group,
            reservation: rev.need.clone(),
            containers: vec![ContainerRecord::new(
                "app",
                &format!("arn:aws:ecs:sim:container/sim/{id}/app"),
                "img",
                true,
                checks,
            )],
            ..TaskRecord::new(
                &id,
                &format!("arn:aws:ecs:sim:task/sim/{id}"),
                "sim",
                self.now,
            )
        };
        self.services[si].tasks.push(task);
        // Slow starts: most take seconds, some a minute (a big image pull).
        let pending_at = self.now + self.rng.gen_range(100..2_000);
        let run_at = pending_at
            + if self.rng.gen_bool(0.1) {
                self.rng.gen_range(20_000..60_000)
            } else {
                self.rng.gen_range(500..8_000)
            };
        self.agent.insert(
            id.clone(),
            AgentTask {
                svc: si,
                host: h,
                kind: rev.kind,
                checks,
                pending_at,
                run_at,
                verdict_at: None,
                stop_at: None,
            },
        );
        self.report.tasks_started += 1;
        self.trace(format!(
            "{} start {id} {} on {inst_id}",
            self.services[si].rec.name, rev.arn
        ));
        self.at(pending_at, Ev::Agent(id));
    }

    /// The agent learns of a stop on its next poll and takes a while.
    fn asked_to_stop(&mut self, id: &str) {
        let delay = self.rng.gen_range(200..5_000);
        let at = self.now + delay;
        if let Some(a) = self.agent.get_mut(id) {
            a.stop_at.get_or_insert(at);
            self.at(at, Ev::Agent(id.to_string()));
        }
    }

    /// A task reached STOPPED: its reservation goes back to the instance.
    fn release(&mut self, si: usize, h: usize, ti: usize) {
        let t = &self.services[si].tasks[ti];
        self.hosts[h].allocated.remove(&t.reservation);
        self.instances[h].version += 1;
        let host = &mut self.hosts[h];
        host.running -= 1;
        let n = host.groups.get_mut(&t.group).expect("group counted");
        *n -= 1;
        if *n == 0 {
            host.groups.remove(&t.group);
        }
    }

    /// Forgets STOPPED tasks past retention, as the reaper does.
    fn collect_garbage(&mut self) {
        let horizon = self.now - self.cfg.retention_ms;
        for s in &mut self.services {
            s.tasks.retain(|t| {
                let keep = t.last_status != TaskStatus::Stopped
                    || t.stopped_at.is_none_or(|at| at >= horizon);
                if !keep {
                    self.agent.remove(&t.id);
                }
                keep
            });
        }
    }

    // ---- agents --------------------------------------------------------

    fn report_for(t: &TaskRecord, status: &str, container: ContainerReport) -> TaskStateReport {
        TaskStateReport {
            containers: vec![container],
            ..TaskStateReport::new(&t.cluster, &t.arn, status)
        }
    }

    fn container(status: &str) -> ContainerReport {
        ContainerReport::new("app", "docker-app", status)
    }

    /// Moves one task along if its agent is connected and something is due;
    /// returns the task's host when the task is still known.
    fn agent_step(&mut self, id: &str) -> Option<usize> {
        let a = self.agent.get(id)?.clone();
        let (si, h) = (a.svc, a.host);
        if self.hosts[h].lost || !self.hosts[h].connected {
            // A disconnected agent makes no progress; reconnecting wakes it.
            return Some(h);
        }
        let ti = self.services[si].tasks.iter().position(|t| t.id == id)?;
        let now = self.now;
        let t = &self.services[si].tasks[ti];
        if t.last_status == TaskStatus::Stopped {
            return Some(h);
        }
        let mut next = None;
        let mut report = None;
        let mut line = String::new();
        if t.desired_status == DesiredStatus::Stopped {
            let stop_at = a.stop_at.unwrap_or(now);
            if now >= stop_at {
                let mut c = Self::container("STOPPED");
                c.exit_code = Some(if t.stop_code.as_deref() == Some(STOP_SCHEDULER) {
                    143
                } else {
                    1
                });
                let mut r = Self::report_for(t, "STOPPED", c);
                r.execution_stopped_at = Some(now);
                report = Some(r);
                line = "STOPPED".into();
            } else {
                next = Some(stop_at);
            }
        } else {
            match t.last_status {
                TaskStatus::Provisioning if now >= a.pending_at => {
                    report = Some(Self::report_for(t, "PENDING", Self::container("PENDING")));
                    next = Some(a.run_at);
                    line = "PENDING".into();
                }
                TaskStatus::Pending | TaskStatus::Activating if now >= a.run_at => {
                    if a.kind == Kind::FailStart {
                        let mut r = Self::report_for(t, "STOPPED", Self::container("STOPPED"));
                        r.reason = Some("CannotPullContainerError: pull access denied".into());
                        r.execution_stopped_at = Some(now);
                        report = Some(r);
                        line = "failed to start".into();
                    } else {
                        let mut c = Self::container("RUNNING");
                        if a.checks {
                            c.health_status = Some("UNKNOWN".into());
                        }
                        let mut r = Self::report_for(t, "RUNNING", c);
                        r.started_at = Some(now);
                        report = Some(r);
                        line = "RUNNING".into();
                        // A crash comes before the task would count as
                        // healthy (settle); a health verdict after a few checks.
                        let verdict = match a.kind {
                            Kind::Crash => Some(now + self.rng.gen_range(100..1_500)),
                            _ if a.checks => Some(now + self.rng.gen_range(1_000..15_000)),
                            _ => None,
                        };
                        self.agent.get_mut(id).unwrap().verdict_at = verdict;
                        next = verdict;
                    }
                }
                TaskStatus::Running => {
                    if let Some(v) = a.verdict_at {
                        if now >= v {
                            self.agent.get_mut(id).unwrap().verdict_at = None;
                            let r = match a.kind {
                                Kind::Crash => {
                                    let mut c = Self::container("STOPPED");
                                    c.exit_code = Some(1);
                                    line = "essential container exited".into();
                                    Self::report_for(t, "RUNNING", c)
                                }
                                k => {
                                    let mut c = Self::container("RUNNING");
                                    let verdict = if k == Kind::Unhealthy {
                                        "UNHEALTHY"
                                    } else {
                                        "HEALTHY"
                                    };
                                    c.health_status = Some(verdict.into());
                                    line = verdict.into();
                                    Self::report_for(t, "RUNNING", c)
                                }
                            };
                            report = Some(r);
                        } else {
                            next = Some(v);
                        }
                    }
                }
                // Not due yet (woken early, e.g. by a reconnect).
                TaskStatus::Provisioning => next = Some(a.pending_at),
                TaskStatus::Pending | TaskStatus::Activating => next = Some(a.run_at),
                _ => {}
            }
        }
        if let Some(r) = report {
            let t = &mut self.services[si].tasks[ti];
            let was_stop_requested = t.desired_status == DesiredStatus::Stopped;
            let applied = apply_report(t, &r, now);
            let now_stop_requested = t.desired_status == DesiredStatus::Stopped;
            if applied.became_stopped {
                self.release(si, h, ti);
            } else if !was_stop_requested && now_stop_requested {
                // The essential container exited: the agent stops the rest.
                self.asked_to_stop(id);
            }
            self.trace(format!("agent {id} {line}"));
        }
        if let Some(n) = next {
            self.at(n.max(now), Ev::Agent(id.to_string()));
        }
        Some(h)
    }

    fn reconnect(&mut self, h: usize) {
        self.hosts[h].connected = true;
        self.trace(format!("{} reconnected", self.instances[h].id));
        let ids: Vec<String> = self
            .agent
            .iter()
            .filter(|(_, a)| a.host == h)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.at(self.now, Ev::Agent(id));
        }
    }

    // ---- faults and user actions --------------------------------------

    fn chaos(&mut self) {
        let roll = self.rng.gen_range(0..100);
        let n = self.instances.len();
        let lost = self.hosts.iter().filter(|h| h.lost).count();
        let draining = self
            .instances
            .iter()
            .filter(|i| i.status == "DRAINING")
            .count();
        let pick = |w: &mut World, ok: &dyn Fn(&World, usize) -> bool| {
            let c: Vec<usize> = (0..n).filter(|&i| ok(w, i)).collect();
            c.choose(&mut w.rng).copied()
        };
        match roll {
            0..=3 if lost < n / 8 => {
                if let Some(h) = pick(self, &|w, i| !w.hosts[i].lost) {
                    self.lose_host(h);
                }
            }
            4..=5 => {
                self.add_host();
                self.report.hosts_joined += 1;
                let id = self.instances.last().unwrap().id.clone();
                self.trace(format!("{id} joined"));
            }
            6..=13 => {
                // One host, or sometimes a whole zone's worth, for a while.
                let k = if self.rng.gen_bool(0.2) { n / 10 } else { 1 };
                for _ in 0..k.max(1) {
                    if let Some(h) = pick(self, &|w, i| w.hosts[i].connected) {
                        self.hosts[h].connected = false;
                        let back = self.now + self.rng.gen_range(2_000..60_000);
                        self.at(back, Ev::Reconnect(h));
                        self.report.disconnects += 1;
                        self.trace(format!("{} disconnected", self.instances[h].id));
                    }
                }
            }
            14..=16 if draining + lost < n / 6 => {
                if let Some(h) = pick(self, &|w, i| w.instances[i].status == "ACTIVE") {
                    self.instances[h].status = "DRAINING".into();
                    self.report.drains += 1;
                    self.trace(format!("{} DRAINING", self.instances[h].id));
                }
            }
            17 => {
                if let Some(h) = pick(self, &|w, i| w.instances[i].status == "DRAINING") {
                    self.instances[h].status = "ACTIVE".into();
                    self.trace(format!("{} ACTIVE again", self.instances[h].id));
                }
            }
            18..=21 => {
                let si = self.rng.gen_range(0..self.services.len());
                if self.services[si].rec.status != "ACTIVE" {
                    return;
                }
                let kind = if self.rng.gen_bool(0.6) {
                    Kind::Good
                } else {
                    *[Kind::Crash, Kind::FailStart, Kind::Unhealthy]
                        .choose(&mut self.rng)
                        .unwrap()
                };
                self.deploy(si, kind);
            }
            26..=29 => {
                // The user answers a blue/green deployment's PAUSE hook.
                let waiting: Vec<(usize, String)> = self
                    .services
                    .iter()
                    .enumerate()
                    .filter_map(|(si, s)| Some((si, awaiting_hook(&s.rec)?)))
                    .collect();
                let Some((si, hook)) = waiting.choose(&mut self.rng).cloned() else {
                    return;
                };
                let roll_back = self.rng.gen_bool(0.3);
                let now = self.now;
                let s = &mut self.services[si];
                let blue = s
                    .rec
                    .primary()
                    .blue_green
                    .as_ref()
                    .and_then(|l| l.blue.clone());
                let blue_td = blue.and_then(|b| {
                    s.rec
                        .deployments
                        .iter()
                        .find(|d| d.id == b)
                        .map(|d| d.task_definition.clone())
                });
                let answered = service::blue_green::continue_hook(
                    &mut s.rec,
                    &hook,
                    roll_back,
                    now,
                    &mut self.rng,
                );
                if roll_back && answered.is_ok() {
                    s.rolled_back_to = blue_td;
                    self.report.rollbacks += 1;
                }
                if let Err(e) = answered {
                    let name = self.services[si].rec.name.clone();
                    self.fail(format!("{name}: hook {hook} awaits action, yet {e:?}"));
                }
                let name = self.services[si].rec.name.clone();
                self.trace(format!(
                    "user {} {name} at hook {hook}",
                    if roll_back { "rolls back" } else { "continues" }
                ));
            }
            22..=25 => {
                let replicas: Vec<usize> = (0..self.services.len())
                    .filter(|&i| {
                        let s = &self.services[i];
                        !s.daemon() && s.rec.status == "ACTIVE"
                    })
                    .collect();
                let Some(&si) = replicas.choose(&mut self.rng) else {
                    return;
                };
                if roll == 25 && replicas.len() > 1 {
                    self.delete(si);
                } else {
                    let desired = self.rng.gen_range(2..=12);
                    self.scale(si, desired);
                }
            }
            _ => {}
        }
    }

    /// The instance is gone: deregistered (INACTIVE), its tasks stopped at
    /// once since no agent will ever report them.
    fn lose_host(&mut self, h: usize) {
        self.hosts[h].lost = true;
        self.hosts[h].connected = false;
        self.instances[h].status = "INACTIVE".into();
        self.report.hosts_lost += 1;
        let id = self.instances[h].id.clone();
        self.trace(format!("{id} lost"));
        for si in 0..self.services.len() {
            for ti in 0..self.services[si].tasks.len() {
                let t = &mut self.services[si].tasks[ti];
                if t.instance_id.as_deref() != Some(id.as_str())
                    || t.last_status == TaskStatus::Stopped
                {
                    continue;
                }
                request_stop(
                    t,
                    self.now,
                    "InfrastructureHealth",
                    "Container instance deregistered",
                );
                let mut r = Self::report_for(t, "STOPPED", Self::container("STOPPED"));
                r.execution_stopped_at = Some(self.now);
                if apply_report(t, &r, self.now).became_stopped {
                    self.release(si, h, ti);
                }
            }
        }
    }

    /// UpdateService with a new revision of the given kind.
    fn deploy(&mut self, si: usize, kind: Kind) {
        let mut s = self.services[si].clone();
        let arn = self.new_revision(&mut s, kind);
        s.rec.deploy(self.now, &arn, &mut self.rng);
        s.rolled_back_to = None;
        self.services[si] = s;
        self.report.deploys += 1;
        if kind.broken() {
            self.report.broken_deploys += 1;
        }
        self.trace(format!(
            "user deploys {arn} ({kind:?}) to {}",
            self.services[si].rec.name
        ));
    }

    /// UpdateService with a new desiredCount.
    fn scale(&mut self, si: usize, desired: i32) {
        let s = &mut self.services[si];
        let old = s.rec.desired_count;
        s.rec.desired_count = desired;
        if invariants::live_count(s) > invariants::max_total(&s.rec) {
            s.scaling_in = true;
        }
        self.report.scale_changes += 1;
        let name = s.rec.name.clone();
        self.trace(format!("user scales {name} {old} -> {desired}"));
    }

    /// DeleteService with force: the service drains to INACTIVE.
    fn delete(&mut self, si: usize) {
        let s = &mut self.services[si];
        s.rec.status = "DRAINING".into();
        s.rec.desired_count = 0;
        s.scaling_in = true;
        let name = s.rec.name.clone();
        self.report.deletes += 1;
        self.trace(format!("user deletes {name}"));
    }

    /// Faults stop: every agent reconnects, and a service left deploying a
    /// broken revision that the breaker won't roll back gets a good one.
    fn begin_quiet(&mut self) {
        self.quiet = true;
        self.quiet_since = self.now;
        self.trace("faults stop".into());
        for h in 0..self.hosts.len() {
            if !self.hosts[h].lost && !self.hosts[h].connected {
                self.reconnect(h);
            }
        }
        for si in 0..self.services.len() {
            let s = &self.services[si];
            let p = s.rec.primary();
            if s.rec.status != "ACTIVE" || !s.revision(&p.task_definition).kind.broken() {
                continue;
            }
            let cfg = &s.rec.deployment_config;
            let rescued_by_breaker = cfg.circuit_breaker
                && cfg.rollback
                && p.rollout_state == "IN_PROGRESS"
                && s.rec.last_completed.as_ref().is_some_and(|(_, td)| {
                    td != &p.task_definition && !s.revision(td).kind.broken()
                });
            if !rescued_by_breaker {
                self.deploy(si, Kind::Good);
            }
        }
    }
}

/// A blue/green configuration: sometimes a bake time, sometimes a PAUSE hook
/// at a random stage with a timeout (well within the liveness bound) that
/// continues or rolls back.
fn blue_green(rng: &mut StdRng) -> BlueGreenConfig {
    let stages = [
        Stage::ReconcileService,
        Stage::PreScaleUp,
        Stage::PostScaleUp,
        Stage::TestTrafficShift,
        Stage::PostTestTrafficShift,
        Stage::PreProductionTrafficShift,
        Stage::ProductionTrafficShift,
        Stage::PostProductionTrafficShift,
    ];
    let hooks = if rng.gen_bool(0.6) {
        let action = if rng.gen_bool(0.5) {
            ecs::DeploymentLifecycleHookAction::Continue
        } else {
            ecs::DeploymentLifecycleHookAction::Rollback
        };
        vec![ecs::DeploymentLifecycleHook {
            target_type: Some(ecs::DeploymentLifecycleHookTargetType::Pause),
            lifecycle_stages: Some(vec![stages.choose(rng).unwrap().clone()]),
            timeout_configuration: Some(ecs::DeploymentLifecycleHookTimeoutConfiguration {
                timeout_in_minutes: Some(rng.gen_range(1..=2)),
                action: Some(action),
            }),
            ..Default::default()
        }]
    } else {
        vec![]
    };
    let steps = match rng.gen_range(0..4) {
        0 => Some(service::TrafficSteps {
            linear: true,
            percent: 34.0,
            bake_minutes: rng.gen_range(0..=1),
        }),
        1 => Some(service::TrafficSteps {
            linear: false,
            percent: 10.0,
            bake_minutes: rng.gen_range(0..=1),
        }),
        _ => None,
    };
    BlueGreenConfig {
        bake_time_minutes: i32::from(rng.gen_bool(0.3)),
        hooks,
        steps,
    }
}

/// The id of the PAUSE hook a service's blue/green deployment waits at.
fn awaiting_hook(rec: &ServiceRecord) -> Option<String> {
    if !service::blue_green::in_progress(rec) {
        return None;
    }
    let l = rec.primary().blue_green.as_ref()?;
    l.hooks
        .iter()
        .find(|h| h.status == "AWAITING_ACTION")
        .map(|h| h.id.clone())
}

/// Instances a DAEMON service must run on: ACTIVE and matching its memberOf
/// constraints (as `plan` decides).
pub fn daemon_eligible(s: &Service, i: &InstanceRecord) -> bool {
    i.status == "ACTIVE"
        && s.rec.placement_constraints.iter().all(|c| {
            c.r#type != Some(ecs::PlacementConstraintType::MemberOf)
                || c.expression
                    .as_deref()
                    .and_then(|e| query::parse(e).ok())
                    .is_some_and(|q| q.matches(&HostView::bare(i)))
        })
}
