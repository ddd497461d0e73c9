//! Where a task can run, and which of those hosts it goes to.
//!
//! One engine serves RunTask, StartTask and services: a host must be ACTIVE,
//! connected, have the CPU, memory and host ports the task needs, and pass
//! every placement constraint; then the strategy chain narrows the feasible
//! hosts to the best ones (each strategy breaks the previous one's ties) and
//! the rng breaks the final tie. Everything is a pure function of its inputs
//! and the rng, so a seeded rng replays the same placements.

use crate::error::{invalid, CoreError};
use crate::query::{self, HostView, Query};
use crate::records::{InstanceRecord, Resources};
use crate::taskdef::{effective_containers, parse_cpu, parse_memory};
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::{BTreeSet, HashMap};
use wharf_model::ecs::{
    self, NetworkMode, PlacementConstraintType, PlacementStrategyType, TransportProtocol,
};

/// ECS's limits per task or service.
pub const MAX_CONSTRAINTS: usize = 10;
pub const MAX_STRATEGIES: usize = 5;

/// Why an instance can't take a task, as ECS words it in `failures[]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Misfit {
    Cpu,
    Memory,
    Ports,
    /// DRAINING or deregistered.
    NotActive,
    /// Its agent is not connected.
    Disconnected,
    /// A `memberOf` expression does not match it.
    MemberOf,
    /// It already runs a task of the group under `distinctInstance`.
    DistinctInstance,
}

impl Misfit {
    pub fn reason(self) -> &'static str {
        match self {
            Misfit::Cpu => "RESOURCE:CPU",
            Misfit::Memory => "RESOURCE:MEMORY",
            Misfit::Ports => "RESOURCE:PORTS",
            Misfit::NotActive => "INACTIVE",
            Misfit::Disconnected => "AGENT",
            // ECS's own text, trailing period included.
            Misfit::MemberOf => "MemberOf placement constraint unsatisfied.",
            Misfit::DistinctInstance => "DistinctInstance placement constraint unsatisfied.",
        }
    }
}

/// A placement constraint, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// No two tasks of the group on one instance.
    DistinctInstance,
    /// Only instances the expression matches.
    MemberOf(Query),
}

impl Constraint {
    /// Whether it reads only the instance record (a `memberOf` whose
    /// expression is [`Query::is_static`]): such a constraint can be checked
    /// once per host and remembered until the host changes, instead of once
    /// per task.
    pub fn is_static(&self) -> bool {
        matches!(self, Constraint::MemberOf(q) if q.is_static())
    }

    /// Whether `host` may take a task of `group` under this constraint.
    pub fn allows(&self, host: &HostView, group: &str) -> Result<(), Misfit> {
        match self {
            Constraint::DistinctInstance if host.group_count(group) > 0 => {
                Err(Misfit::DistinctInstance)
            }
            Constraint::MemberOf(q) if !q.matches(host) => Err(Misfit::MemberOf),
            _ => Ok(()),
        }
    }
}

/// What `spread` evens tasks out over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpreadField {
    /// `instanceId` or `host`: each instance is its own bucket.
    Instance,
    /// `attribute:NAME`: instances sharing a value of NAME share a bucket.
    Attribute(String),
}

impl Strategy {
    /// The attribute a `spread(attribute:NAME)` evens out over.
    pub fn spread_attribute(&self) -> Option<&str> {
        match self {
            Strategy::Spread(SpreadField::Attribute(name)) => Some(name),
            _ => None,
        }
    }
}

/// Tasks of one group per value of one attribute, counted over a whole
/// capacity rather than the hosts a placement looks at (a sample).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValueCounts {
    pub by_value: HashMap<String, i64>,
    /// On hosts without the attribute (or with it but no value).
    pub without: i64,
}

impl ValueCounts {
    pub fn get(&self, value: Option<&str>) -> i64 {
        match value {
            Some(v) => self.by_value.get(v).copied().unwrap_or(0),
            None => self.without,
        }
    }

    pub fn add(&mut self, value: Option<&str>, n: i64) {
        match value {
            Some(v) => match self.by_value.get_mut(v) {
                Some(c) => *c += n,
                None => {
                    self.by_value.insert(v.to_string(), n);
                }
            },
            None => self.without += n,
        }
    }
}

/// The resource `binpack` packs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinpackField {
    Cpu,
    Memory,
}

/// A placement strategy, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    Random,
    Spread(SpreadField),
    Binpack(BinpackField),
}

/// Validates constraints as ECS does: a known type, an expression for
/// `memberOf` (which must parse) and none for `distinctInstance`.
pub fn parse_constraints(cs: &[ecs::PlacementConstraint]) -> Result<Vec<Constraint>, CoreError> {
    if cs.len() > MAX_CONSTRAINTS {
        return Err(invalid(format!(
            "Too many placement constraints: at most {MAX_CONSTRAINTS} are allowed."
        )));
    }
    cs.iter()
        .map(|c| {
            let expr = c.expression.as_deref().filter(|e| !e.trim().is_empty());
            match (&c.r#type, expr) {
                (Some(PlacementConstraintType::DistinctInstance), None) => {
                    Ok(Constraint::DistinctInstance)
                }
                (Some(PlacementConstraintType::DistinctInstance), Some(_)) => Err(invalid(
                    "A distinctInstance placement constraint does not take an expression.",
                )),
                (Some(PlacementConstraintType::MemberOf), Some(e)) => {
                    Ok(Constraint::MemberOf(query::parse(e)?))
                }
                (Some(PlacementConstraintType::MemberOf), None) => Err(invalid(
                    "A memberOf placement constraint requires an expression.",
                )),
                (Some(PlacementConstraintType::Unknown(t)), _) => Err(invalid(format!(
                    "Unknown placement constraint type '{t}'; valid types are distinctInstance and memberOf."
                ))),
                (None, _) => Err(invalid("A placement constraint requires a type.")),
            }
        })
        .collect()
}

/// Validates strategies as ECS does: `random` takes no field, `spread` needs
/// `instanceId`, `host` or `attribute:NAME`, `binpack` needs `cpu` or
/// `memory`.
pub fn parse_strategies(ss: &[ecs::PlacementStrategy]) -> Result<Vec<Strategy>, CoreError> {
    if ss.len() > MAX_STRATEGIES {
        return Err(invalid(format!(
            "Too many placement strategies: at most {MAX_STRATEGIES} are allowed."
        )));
    }
    ss.iter()
        .map(|s| {
            let field = s.field.as_deref().map(str::trim).filter(|f| !f.is_empty());
            match (&s.r#type, field) {
                (Some(PlacementStrategyType::Random), None) => Ok(Strategy::Random),
                (Some(PlacementStrategyType::Random), Some(f)) => Err(invalid(format!(
                    "The random placement strategy does not take a field (got '{f}')."
                ))),
                (Some(PlacementStrategyType::Spread), Some(f)) => {
                    if f.eq_ignore_ascii_case("instanceId") || f.eq_ignore_ascii_case("host") {
                        Ok(Strategy::Spread(SpreadField::Instance))
                    } else if let Some(n) = f.strip_prefix("attribute:").filter(|n| !n.is_empty()) {
                        Ok(Strategy::Spread(SpreadField::Attribute(n.to_string())))
                    } else {
                        Err(invalid(format!(
                            "Invalid field '{f}' for the spread placement strategy; use instanceId, host or attribute:NAME."
                        )))
                    }
                }
                (Some(PlacementStrategyType::Binpack), Some(f)) => {
                    if f.eq_ignore_ascii_case("cpu") {
                        Ok(Strategy::Binpack(BinpackField::Cpu))
                    } else if f.eq_ignore_ascii_case("memory") {
                        Ok(Strategy::Binpack(BinpackField::Memory))
                    } else {
                        Err(invalid(format!(
                            "Invalid field '{f}' for the binpack placement strategy; use cpu or memory."
                        )))
                    }
                }
                (Some(t @ (PlacementStrategyType::Spread | PlacementStrategyType::Binpack)), None) => {
                    Err(invalid(format!(
                        "The {} placement strategy requires a field.",
                        t.as_str()
                    )))
                }
                (Some(PlacementStrategyType::Unknown(t)), _) => Err(invalid(format!(
                    "Unknown placement strategy type '{t}'; valid types are random, spread and binpack."
                ))),
                (None, _) => Err(invalid("A placement strategy requires a type.")),
            }
        })
        .collect()
}

/// What one task of this definition takes from an instance.
pub fn demand(td: &ecs::TaskDefinition, overrides: &ecs::TaskOverride) -> Resources {
    let containers = effective_containers(td, overrides);
    let task_cpu = overrides
        .cpu
        .as_deref()
        .or(td.cpu.as_deref())
        .and_then(|c| parse_cpu(c).ok());
    let task_mem = overrides
        .memory
        .as_deref()
        .or(td.memory.as_deref())
        .and_then(|m| parse_memory(m).ok());
    let cpu =
        task_cpu.unwrap_or_else(|| containers.iter().map(|c| c.cpu.unwrap_or(0) as i64).sum());
    let memory = task_mem.unwrap_or_else(|| {
        containers
            .iter()
            .map(|c| c.memory.or(c.memory_reservation).unwrap_or(0) as i64)
            .sum()
    });
    let mut r = Resources {
        cpu,
        memory,
        ..Default::default()
    };
    let host_net = matches!(td.network_mode, Some(NetworkMode::Host));
    for c in &containers {
        for p in c.port_mappings.iter().flatten() {
            let host_port = if host_net {
                p.container_port
            } else {
                p.host_port
            };
            let Some(port) = host_port.filter(|p| *p > 0) else {
                continue;
            };
            match p.protocol {
                Some(TransportProtocol::Udp) => r.udp_ports.insert(port as u16),
                _ => r.tcp_ports.insert(port as u16),
            };
        }
    }
    r
}

/// Whether `host` can take a task needing `need` right now. Reads the
/// record in place (no copies of its port sets): placement calls this for
/// every host on every placement.
pub fn fits(host: &HostView, need: &Resources) -> Result<(), Misfit> {
    let instance = host.instance;
    if instance.status != "ACTIVE" {
        return Err(Misfit::NotActive);
    }
    if !host.connected {
        return Err(Misfit::Disconnected);
    }
    let (reg, res, alloc) = (&instance.registered, &instance.reserved, host.allocated);
    if need.cpu > reg.cpu - alloc.cpu {
        return Err(Misfit::Cpu);
    }
    if need.memory > reg.memory - alloc.memory {
        return Err(Misfit::Memory);
    }
    let taken = |p: &u16, r: &BTreeSet<u16>, a: &BTreeSet<u16>| r.contains(p) || a.contains(p);
    if need
        .tcp_ports
        .iter()
        .any(|p| taken(p, &res.tcp_ports, &alloc.tcp_ports))
        || need
            .udp_ports
            .iter()
            .any(|p| taken(p, &res.udp_ports, &alloc.udp_ports))
    {
        return Err(Misfit::Ports);
    }
    Ok(())
}

/// [`fits`], then the constraints in order: the first reason a host is
/// refused.
pub fn admits(
    host: &HostView,
    need: &Resources,
    group: &str,
    constraints: &[Constraint],
) -> Result<(), Misfit> {
    fits(host, need)?;
    constraints.iter().try_for_each(|c| c.allows(host, group))
}

/// Chooses the host (an index into `hosts`) for one task of `group`, or
/// says why each host was refused. An empty strategy chain is random, as in
/// ECS. O(hosts × strategies); allocates the candidate list and, for
/// `spread(attribute:...)`, one bucket map per strategy.
///
/// To place several tasks, update the chosen host's view (allocation,
/// `groups`, `running_tasks`) between calls: spread and distinctInstance
/// read those counts.
pub fn place<R: Rng + ?Sized>(
    hosts: &[HostView],
    need: &Resources,
    group: &str,
    constraints: &[Constraint],
    strategies: &[Strategy],
    rng: &mut R,
) -> Result<usize, Vec<(usize, Misfit)>> {
    place_in(
        hosts,
        need,
        group,
        constraints,
        strategies,
        &HashMap::new(),
        rng,
    )
}

/// [`place`] among `hosts` drawn from a larger capacity: `spread(attribute:
/// NAME)` ranks by `spread[NAME]`, the group's tasks per value over the
/// whole capacity (kept by the caller, including the tasks it has placed
/// so far), instead of counting the hosts passed in. An attribute missing
/// from `spread` is counted over `hosts`.
pub fn place_in<R: Rng + ?Sized>(
    hosts: &[HostView],
    need: &Resources,
    group: &str,
    constraints: &[Constraint],
    strategies: &[Strategy],
    spread: &HashMap<String, ValueCounts>,
    rng: &mut R,
) -> Result<usize, Vec<(usize, Misfit)>> {
    let mut candidates: Vec<usize> = (0..hosts.len())
        .filter(|&i| admits(&hosts[i], need, group, constraints).is_ok())
        .collect();
    if candidates.is_empty() {
        return Err(hosts
            .iter()
            .enumerate()
            .filter_map(|(i, h)| admits(h, need, group, constraints).err().map(|m| (i, m)))
            .collect());
    }
    // Each host's count of the group, read once (spread reads it per host,
    // and per bucket member for an attribute).
    let mut counts: Option<Vec<i64>> = None;
    for s in strategies {
        if candidates.len() == 1 {
            break;
        }
        match s {
            // Random ends the chain: later strategies have nothing to rank.
            Strategy::Random => break,
            Strategy::Spread(field) => {
                let counts = counts.get_or_insert_with(|| {
                    hosts.iter().map(|h| h.group_count(group) as i64).collect()
                });
                match field {
                    SpreadField::Instance => keep_least(&mut candidates, |i| counts[i]),
                    SpreadField::Attribute(name) => match spread.get(name) {
                        Some(totals) => keep_least(&mut candidates, |i| {
                            totals.get(attribute(hosts[i].instance, name))
                        }),
                        None => {
                            let (bucket, totals) = buckets(hosts, counts, name);
                            keep_least(&mut candidates, |i| totals[bucket[i]])
                        }
                    },
                }
            }
            Strategy::Binpack(field) => keep_least(&mut candidates, |i| {
                let (inst, held) = (hosts[i].instance, hosts[i].allocated);
                match field {
                    BinpackField::Cpu => inst.registered.cpu - held.cpu - need.cpu,
                    BinpackField::Memory => inst.registered.memory - held.memory - need.memory,
                }
            }),
        }
    }
    Ok(*candidates.choose(rng).expect("candidates is not empty"))
}

/// The host's value of an attribute; hosts without it (or with it but no
/// value) share the `None` bucket.
pub fn attribute<'a>(inst: &'a InstanceRecord, name: &str) -> Option<&'a str> {
    inst.attributes.get(name).and_then(|v| v.as_deref())
}

/// Each host's bucket (by its value of attribute `name`) and the tasks of
/// the group per bucket, counted over every ACTIVE host passed in (not only
/// feasible ones: a full zone still holds its tasks). One attribute lookup
/// and one hash per host.
fn buckets(hosts: &[HostView], counts: &[i64], name: &str) -> (Vec<usize>, Vec<i64>) {
    let mut index: HashMap<Option<&str>, usize> = HashMap::new();
    let mut totals: Vec<i64> = Vec::new();
    let bucket = hosts
        .iter()
        .zip(counts)
        .map(|(h, &n)| {
            let b = *index.entry(attribute(h.instance, name)).or_insert_with(|| {
                totals.push(0);
                totals.len() - 1
            });
            if h.instance.status == "ACTIVE" {
                totals[b] += n;
            }
            b
        })
        .collect();
    (bucket, totals)
}

/// Narrows `candidates` to those with the lowest score, keeping their
/// order; scores each candidate once.
fn keep_least(candidates: &mut Vec<usize>, score: impl Fn(usize) -> i64) {
    let scores: Vec<i64> = candidates.iter().map(|&i| score(i)).collect();
    let Some(&best) = scores.iter().min() else {
        return;
    };
    let mut k = 0;
    candidates.retain(|_| {
        k += 1;
        scores[k - 1] == best
    });
}

/// Picks an instance at random among those that fit; when none does, says
/// why each was refused. RunTask without constraints or strategies: a thin
/// wrapper over [`place`].
pub fn choose<'a, R: Rng + ?Sized>(
    candidates: &[(&'a InstanceRecord, bool)],
    need: &Resources,
    rng: &mut R,
) -> Result<&'a InstanceRecord, Vec<(&'a InstanceRecord, Misfit)>> {
    let views: Vec<HostView> = candidates
        .iter()
        .map(|(instance, connected)| HostView {
            connected: *connected,
            ..HostView::bare(instance)
        })
        .collect();
    place(&views, need, "", &[], &[], rng)
        .map(|i| candidates[i].0)
        .map_err(|refusals| {
            refusals
                .into_iter()
                .map(|(i, m)| (candidates[i].0, m))
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::BTreeMap;

    fn instance(cpu: i64, mem: i64) -> InstanceRecord {
        let registered = Resources {
            cpu,
            memory: mem,
            ..Default::default()
        };
        InstanceRecord {
            reserved: Resources {
                tcp_ports: [22].into(),
                ..Default::default()
            },
            ..InstanceRecord::new("i", "arn:i", "default", registered, 0)
        }
    }

    fn td(json: serde_json::Value) -> ecs::TaskDefinition {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn demand_sums_containers_and_static_ports() {
        let t = td(
            serde_json::json!({"networkMode": "bridge", "containerDefinitions": [
                {"name": "a", "cpu": 128, "memory": 64, "portMappings": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]},
                {"name": "b", "memoryReservation": 32, "portMappings": [{"containerPort": 53, "hostPort": 53, "protocol": "udp"}]}
            ]}),
        );
        let d = demand(&t, &Default::default());
        assert_eq!((d.cpu, d.memory), (128, 96));
        assert_eq!(d.tcp_ports.into_iter().collect::<Vec<_>>(), vec![8080]);
        assert_eq!(d.udp_ports.into_iter().collect::<Vec<_>>(), vec![53]);
    }

    #[test]
    fn task_level_sizes_and_overrides_win() {
        let t = td(
            serde_json::json!({"cpu": "512", "memory": "1 GB", "containerDefinitions": [{"name": "a", "memory": 64}]}),
        );
        assert_eq!(demand(&t, &Default::default()).memory, 1024);
        let o: ecs::TaskOverride =
            serde_json::from_value(serde_json::json!({"memory": "2048"})).unwrap();
        assert_eq!(demand(&t, &o).memory, 2048);
    }

    #[test]
    fn refuses_with_ecs_reasons() {
        let mut i = instance(1024, 512);
        let need = |cpu, memory, port: Option<u16>| Resources {
            cpu,
            memory,
            tcp_ports: port.into_iter().collect(),
            ..Default::default()
        };
        let mut held = Resources::default();
        let check = |i: &InstanceRecord, held: &Resources, need: Resources, connected: bool| {
            let host = HostView {
                allocated: held,
                connected,
                ..HostView::bare(i)
            };
            fits(&host, &need)
        };
        assert_eq!(
            check(&i, &held, need(2048, 10, None), true),
            Err(Misfit::Cpu)
        );
        assert_eq!(
            check(&i, &held, need(10, 1024, None), true),
            Err(Misfit::Memory)
        );
        assert_eq!(
            check(&i, &held, need(10, 10, Some(22)), true),
            Err(Misfit::Ports)
        );
        assert_eq!(check(&i, &held, need(10, 10, Some(80)), true), Ok(()));
        held.add(&need(10, 10, Some(80)));
        assert_eq!(
            check(&i, &held, need(10, 10, Some(80)), true),
            Err(Misfit::Ports)
        );
        held.add(&need(1000, 10, None));
        assert_eq!(check(&i, &held, need(30, 10, None), true), Err(Misfit::Cpu));
        assert_eq!(check(&i, &held, need(10, 10, None), true), Ok(()));
        assert_eq!(
            check(&i, &held, need(10, 10, None), false),
            Err(Misfit::Disconnected)
        );
        i.status = "DRAINING".into();
        assert_eq!(
            check(&i, &held, need(10, 10, None), true),
            Err(Misfit::NotActive)
        );
        assert_eq!(Misfit::Memory.reason(), "RESOURCE:MEMORY");
    }

    #[test]
    fn choose_is_deterministic_for_a_seed_and_only_picks_fits() {
        let small = instance(100, 100);
        let mut big = instance(4096, 4096);
        big.id = "big".into();
        let cands = [(&small, true), (&big, true)];
        let need = Resources {
            cpu: 512,
            memory: 256,
            ..Default::default()
        };
        for seed in 0..20 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            assert_eq!(choose(&cands, &need, &mut rng).unwrap().id, "big");
        }
        let huge = Resources {
            cpu: 1 << 20,
            memory: 1,
            ..Default::default()
        };
        let err = choose(&cands, &huge, &mut rand::rngs::StdRng::seed_from_u64(1)).unwrap_err();
        assert!(err.iter().all(|(_, m)| *m == Misfit::Cpu));
    }

    /// Hosts and what runs on them, as a controller would hold them between
    /// placements.
    struct Fleet {
        hosts: Vec<InstanceRecord>,
        held: Vec<Resources>,
        connected: Vec<bool>,
        groups: Vec<query::GroupCounts>,
        running: Vec<usize>,
    }

    impl Fleet {
        fn new(hosts: Vec<InstanceRecord>) -> Self {
            let n = hosts.len();
            Fleet {
                hosts,
                held: vec![Resources::default(); n],
                connected: vec![true; n],
                groups: vec![query::GroupCounts::new(); n],
                running: vec![0; n],
            }
        }

        fn views(&self) -> Vec<HostView<'_>> {
            (0..self.hosts.len())
                .map(|i| HostView {
                    instance: &self.hosts[i],
                    allocated: &self.held[i],
                    connected: self.connected[i],
                    running_tasks: self.running[i],
                    groups: &self.groups[i],
                    placing: None,
                })
                .collect()
        }

        fn place(
            &mut self,
            need: &Resources,
            group: &str,
            cs: &[Constraint],
            ss: &[Strategy],
            rng: &mut rand::rngs::StdRng,
        ) -> Result<usize, Vec<(usize, Misfit)>> {
            let i = place(&self.views(), need, group, cs, ss, rng)?;
            self.held[i].add(need);
            *self.groups[i].entry(group.to_string()).or_insert(0) += 1;
            self.running[i] += 1;
            Ok(i)
        }

        /// Places `n` tasks of "web", returning the hosts chosen.
        fn place_n(
            &mut self,
            n: usize,
            need: &Resources,
            cs: &[Constraint],
            ss: &[Strategy],
            seed: u64,
        ) -> Vec<usize> {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..n)
                .map(|_| self.place(need, "web", cs, ss, &mut rng).expect("placed"))
                .collect()
        }
    }

    fn host(id: &str, cpu: i64, mem: i64, zone: &str) -> InstanceRecord {
        let mut i = instance(cpu, mem);
        i.id = id.into();
        i.arn = format!("arn:{id}");
        i.hostname = Some(id.into());
        i.attributes
            .insert("ecs.availability-zone".into(), Some(zone.into()));
        i
    }

    fn need(cpu: i64, memory: i64) -> Resources {
        Resources {
            cpu,
            memory,
            ..Default::default()
        }
    }

    fn strategies(json: serde_json::Value) -> Result<Vec<Strategy>, CoreError> {
        parse_strategies(&serde_json::from_value::<Vec<ecs::PlacementStrategy>>(json).unwrap())
    }

    fn constraints(json: serde_json::Value) -> Result<Vec<Constraint>, CoreError> {
        parse_constraints(&serde_json::from_value::<Vec<ecs::PlacementConstraint>>(json).unwrap())
    }

    fn counts(chosen: &[usize], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &i in chosen {
            c[i] += 1;
        }
        c
    }

    #[test]
    fn binpack_picks_the_fullest_host_that_fits() {
        let mut f = Fleet::new(vec![
            host("roomy", 4096, 8192, "a"),
            host("snug", 4096, 1024, "a"),
            host("tiny", 4096, 256, "a"),
        ]);
        let ss = strategies(serde_json::json!([{"type": "binpack", "field": "memory"}])).unwrap();
        // tiny cannot hold 512 MiB; snug is the fullest that can.
        let chosen = f.place_n(2, &need(10, 512), &[], &ss, 1);
        assert_eq!(chosen, vec![1, 1]);
        // snug is now full; roomy is next.
        assert_eq!(f.place_n(1, &need(10, 512), &[], &ss, 1), vec![0]);
        // Binpack on CPU looks at CPU only.
        let mut f = Fleet::new(vec![host("a", 1024, 100, "a"), host("b", 2048, 100, "a")]);
        let cpu = strategies(serde_json::json!([{"type": "binpack", "field": "cpu"}])).unwrap();
        assert_eq!(f.place_n(3, &need(512, 1), &[], &cpu, 7), vec![0, 0, 1]);
    }

    #[test]
    fn spread_by_instance_evens_out_hosts() {
        let mut f = Fleet::new(
            (0..4)
                .map(|i| host(&format!("h{i}"), 4096, 4096, "a"))
                .collect(),
        );
        // Tasks of another group do not count.
        f.groups[0].insert("service:other".into(), 5);
        let ss =
            strategies(serde_json::json!([{"type": "spread", "field": "instanceId"}])).unwrap();
        let chosen = f.place_n(10, &need(1, 1), &[], &ss, 3);
        assert_eq!(
            counts(&chosen, 4).iter().max().unwrap() - counts(&chosen, 4).iter().min().unwrap(),
            1
        );
        // Each round of 4 covers every host once.
        let mut first: Vec<usize> = chosen[..4].to_vec();
        first.sort();
        assert_eq!(first, vec![0, 1, 2, 3]);
        assert_eq!(
            strategies(serde_json::json!([{"type": "spread", "field": "host"}])).unwrap(),
            ss
        );
    }

    #[test]
    fn spread_by_attribute_evens_out_zones() {
        // Zone a has three hosts, b one, c two, and one host has no zone.
        let mut hosts = vec![
            host("a1", 4096, 4096, "a"),
            host("a2", 4096, 4096, "a"),
            host("a3", 4096, 4096, "a"),
            host("b1", 4096, 4096, "b"),
            host("c1", 4096, 4096, "c"),
            host("c2", 4096, 4096, "c"),
        ];
        let mut nozone = host("x", 4096, 4096, "");
        nozone.attributes.clear();
        hosts.push(nozone);
        let zone_of = |i: usize| ["a", "a", "a", "b", "c", "c", "-"][i];
        let mut f = Fleet::new(hosts);
        let ss = strategies(
            serde_json::json!([{"type": "spread", "field": "attribute:ecs.availability-zone"}]),
        )
        .unwrap();
        let chosen = f.place_n(12, &need(1, 1), &[], &ss, 5);
        let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
        for &i in &chosen {
            *per_zone.entry(zone_of(i)).or_insert(0) += 1;
        }
        // Four buckets (a, b, c, no zone), three tasks each.
        assert_eq!(
            per_zone.values().copied().collect::<Vec<_>>(),
            vec![3, 3, 3, 3]
        );
    }

    #[test]
    fn spread_by_attribute_counts_tasks_on_hosts_that_cannot_take_more() {
        // a1 is full but already runs 2 web tasks: zone a is ahead.
        let mut f = Fleet::new(vec![
            host("a1", 100, 100, "a"),
            host("a2", 4096, 4096, "a"),
            host("b1", 4096, 4096, "b"),
        ]);
        f.held[0] = need(100, 100);
        f.groups[0].insert("web".into(), 2);
        let ss = strategies(
            serde_json::json!([{"type": "spread", "field": "attribute:ecs.availability-zone"}]),
        )
        .unwrap();
        assert_eq!(f.place_n(2, &need(1, 1), &[], &ss, 9), vec![2, 2]);
    }

    #[test]
    fn spread_by_attribute_ranks_by_the_capacity_counts_it_is_given() {
        // The two hosts passed in run nothing, but the capacity's zone b
        // already has 5 tasks of the group and zone a 2: a wins, whatever
        // the seed.
        let f = Fleet::new(vec![
            host("b1", 4096, 4096, "b"),
            host("a1", 4096, 4096, "a"),
        ]);
        let ss = strategies(
            serde_json::json!([{"type": "spread", "field": "attribute:ecs.availability-zone"}]),
        )
        .unwrap();
        let mut zones = ValueCounts::default();
        zones.add(Some("b"), 5);
        zones.add(Some("a"), 2);
        let spread = [("ecs.availability-zone".to_string(), zones)].into();
        for seed in 0..8 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let i = place_in(&f.views(), &need(1, 1), "web", &[], &ss, &spread, &mut rng);
            assert_eq!(i, Ok(1));
        }
        // Without them, the hosts passed in are all there is: a tie.
        let picked: BTreeSet<usize> = (0..16)
            .map(|seed| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                place(&f.views(), &need(1, 1), "web", &[], &ss, &mut rng).unwrap()
            })
            .collect();
        assert_eq!(picked, [0, 1].into());
    }

    #[test]
    fn distinct_instance_refuses_a_second_task_of_the_group() {
        let mut f = Fleet::new(vec![
            host("h0", 4096, 4096, "a"),
            host("h1", 4096, 4096, "a"),
        ]);
        let cs = constraints(serde_json::json!([{"type": "distinctInstance"}])).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let a = f.place(&need(1, 1), "web", &cs, &[], &mut rng).unwrap();
        let b = f.place(&need(1, 1), "web", &cs, &[], &mut rng).unwrap();
        assert_ne!(a, b);
        let refused = f.place(&need(1, 1), "web", &cs, &[], &mut rng).unwrap_err();
        assert_eq!(
            refused,
            vec![(0, Misfit::DistinctInstance), (1, Misfit::DistinctInstance)]
        );
        assert_eq!(
            Misfit::DistinctInstance.reason(),
            "DistinctInstance placement constraint unsatisfied."
        );
        // Another group is not held back.
        assert!(f.place(&need(1, 1), "batch", &cs, &[], &mut rng).is_ok());
    }

    #[test]
    fn member_of_filters_and_resource_reasons_come_first() {
        let mut small = host("small", 100, 100, "b");
        small.attributes.insert("gpu".into(), None);
        let mut f = Fleet::new(vec![
            host("h0", 4096, 4096, "a"),
            host("h1", 4096, 4096, "b"),
            small,
        ]);
        f.connected[0] = false;
        let cs = constraints(serde_json::json!([
            {"type": "memberOf", "expression": "attribute:ecs.availability-zone == b"}
        ]))
        .unwrap();
        let chosen = f.place_n(5, &need(50, 50), &cs, &[], 2);
        assert!(chosen.iter().all(|&i| i == 1 || i == 2), "{chosen:?}");
        let gpu = constraints(serde_json::json!([
            {"type": "memberOf", "expression": "attribute:gpu exists and runningTasksCount < 1"}
        ]))
        .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let refused = f
            .place(&need(10, 10), "web", &gpu, &[], &mut rng)
            .unwrap_err();
        // small already runs a task (or is full), h1 lacks a GPU, h0 is offline.
        assert_eq!(refused[0], (0, Misfit::Disconnected));
        assert_eq!(refused[1], (1, Misfit::MemberOf));
        assert!(matches!(
            refused[2].1,
            Misfit::MemberOf | Misfit::Cpu | Misfit::Memory
        ));
        assert_eq!(
            Misfit::MemberOf.reason(),
            "MemberOf placement constraint unsatisfied."
        );
    }

    #[test]
    fn spread_by_zone_then_binpack_by_memory() {
        let mut f = Fleet::new(vec![
            host("a-roomy", 4096, 4096, "a"),
            host("a-snug", 4096, 1024, "a"),
            host("b-roomy", 4096, 4096, "b"),
            host("b-snug", 4096, 2048, "b"),
        ]);
        let ss = strategies(serde_json::json!([
            {"type": "spread", "field": "attribute:ecs.availability-zone"},
            {"type": "binpack", "field": "memory"}
        ]))
        .unwrap();
        let chosen = f.place_n(4, &need(1, 512), &[], &ss, 11);
        // Zones alternate; within a zone the fullest host that fits wins.
        let zones: Vec<char> = chosen
            .iter()
            .map(|&i| f.hosts[i].id.chars().next().unwrap())
            .collect();
        assert_eq!(zones.iter().filter(|z| **z == 'a').count(), 2);
        assert_ne!(zones[0], zones[1]);
        assert_eq!(counts(&chosen, 4), vec![0, 2, 0, 2]);
    }

    #[test]
    fn same_seed_same_choices() {
        let fleet = || {
            Fleet::new(
                (0..8)
                    .map(|i| host(&format!("h{i}"), 4096, 4096, ["a", "b"][i % 2]))
                    .collect(),
            )
        };
        for ss in [
            vec![],
            vec![Strategy::Random],
            vec![Strategy::Spread(SpreadField::Attribute(
                "ecs.availability-zone".into(),
            ))],
        ] {
            let a = fleet().place_n(20, &need(1, 1), &[], &ss, 42);
            let b = fleet().place_n(20, &need(1, 1), &[], &ss, 42);
            assert_eq!(a, b);
            let c = fleet().place_n(20, &need(1, 1), &[], &ss, 43);
            assert_ne!(a, c, "a different seed should differ somewhere");
        }
    }

    #[test]
    fn validates_constraints_and_strategies_as_ecs_does() {
        let msg = |r: Result<Vec<Constraint>, CoreError>| match r {
            Err(CoreError::InvalidParameter(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(msg(constraints(serde_json::json!([{"type": "memberOf"}])))
            .contains("requires an expression"));
        assert!(msg(constraints(
            serde_json::json!([{"type": "distinctInstance", "expression": "attribute:x exists"}])
        ))
        .contains("does not take an expression"));
        assert!(msg(constraints(serde_json::json!([{"type": "sameHost"}])))
            .contains("Unknown placement constraint type 'sameHost'"));
        assert!(msg(constraints(
            serde_json::json!([{"expression": "attribute:x exists"}])
        ))
        .contains("requires a type"));
        assert!(msg(constraints(
            serde_json::json!([{"type": "memberOf", "expression": "foo == bar"}])
        ))
        .contains("unknown subject 'foo'"));
        let eleven: Vec<_> = (0..11)
            .map(|_| serde_json::json!({"type": "distinctInstance"}))
            .collect();
        assert!(msg(constraints(serde_json::Value::Array(eleven))).contains("at most 10"));
        let ten: Vec<_> = (0..10)
            .map(|_| serde_json::json!({"type": "distinctInstance"}))
            .collect();
        assert_eq!(
            constraints(serde_json::Value::Array(ten)).unwrap().len(),
            10
        );

        let smsg = |r: Result<Vec<Strategy>, CoreError>| match r {
            Err(CoreError::InvalidParameter(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(smsg(strategies(
            serde_json::json!([{"type": "binpack", "field": "disk"}])
        ))
        .contains("use cpu or memory"));
        assert!(smsg(strategies(serde_json::json!([{"type": "binpack"}])))
            .contains("binpack placement strategy requires a field"));
        assert!(smsg(strategies(serde_json::json!([{"type": "spread"}])))
            .contains("spread placement strategy requires a field"));
        assert!(smsg(strategies(
            serde_json::json!([{"type": "spread", "field": "zone"}])
        ))
        .contains("instanceId, host or attribute:NAME"));
        assert!(smsg(strategies(
            serde_json::json!([{"type": "random", "field": "cpu"}])
        ))
        .contains("does not take a field"));
        assert!(smsg(strategies(serde_json::json!([{"type": "firstFit"}])))
            .contains("Unknown placement strategy type 'firstFit'"));
        let six: Vec<_> = (0..6)
            .map(|_| serde_json::json!({"type": "random"}))
            .collect();
        assert!(smsg(strategies(serde_json::Value::Array(six))).contains("at most 5"));
        assert_eq!(
            strategies(serde_json::json!([
                {"type": "random"},
                {"type": "spread", "field": "attribute:ecs.availability-zone"},
                {"type": "binpack", "field": "CPU"}
            ]))
            .unwrap(),
            vec![
                Strategy::Random,
                Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
                Strategy::Binpack(BinpackField::Cpu)
            ]
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::{
            any, prop, prop_assert, prop_assert_eq, prop_oneof, proptest, Just,
        };
        use proptest::strategy::Strategy as Gen;

        fn arb_host() -> impl Gen<Value = (InstanceRecord, Resources, bool, Option<u8>)> {
            (
                0i64..4096,
                0i64..4096,
                0i64..4096,
                0i64..4096,
                prop::collection::btree_set(8000u16..8004, 0..3),
                prop_oneof![Just("ACTIVE"), Just("ACTIVE"), Just("DRAINING")],
                prop::option::of(0u8..3),
                any::<bool>(),
                prop::option::of(0u8..3),
            )
                .prop_map(
                    |(cpu, mem, used_cpu, used_mem, ports, status, zone, connected, web)| {
                        let mut i = host("h", cpu, mem, "");
                        i.attributes.clear();
                        if let Some(z) = zone {
                            i.attributes.insert("zone".into(), Some(format!("z{z}")));
                        }
                        i.status = status.into();
                        let held = Resources {
                            cpu: used_cpu.min(cpu),
                            memory: used_mem.min(mem),
                            tcp_ports: ports,
                            ..Default::default()
                        };
                        (i, held, connected, web)
                    },
                )
        }

        fn arb_strategy() -> impl Gen<Value = super::Strategy> {
            prop_oneof![
                Just(super::Strategy::Random),
                Just(super::Strategy::Spread(SpreadField::Instance)),
                Just(super::Strategy::Spread(SpreadField::Attribute(
                    "zone".into()
                ))),
                Just(super::Strategy::Binpack(BinpackField::Cpu)),
                Just(super::Strategy::Binpack(BinpackField::Memory)),
            ]
        }

        proptest! {
            #[test]
            fn never_places_where_the_task_does_not_fit_or_is_not_allowed(
                hosts in prop::collection::vec(arb_host(), 0..12),
                cpu in 0i64..1500,
                mem in 0i64..1500,
                port in prop::option::of(8000u16..8004),
                distinct in any::<bool>(),
                zone in prop::option::of(0u8..3),
                ss in prop::collection::vec(arb_strategy(), 0..4),
                seed in any::<u64>(),
            ) {
                let mut f = Fleet::new(hosts.iter().map(|h| h.0.clone()).collect());
                for (i, h) in hosts.iter().enumerate() {
                    f.held[i] = h.1.clone();
                    f.connected[i] = h.2;
                    if let Some(n) = h.3 {
                        f.groups[i].insert("web".into(), n as usize);
                    }
                }
                let mut cs = vec![];
                if distinct {
                    cs.push(Constraint::DistinctInstance);
                }
                if let Some(z) = zone {
                    cs.push(Constraint::MemberOf(query::parse(&format!("attribute:zone == z{z}")).unwrap()));
                }
                let need = Resources { cpu, memory: mem, tcp_ports: port.into_iter().collect(), ..Default::default() };
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                for _ in 0..4 {
                    let views = f.views();
                    let ok = |i: usize| {
                        let v = &views[i];
                        let free_port = port.is_none_or(|p| !v.allocated.tcp_ports.contains(&p) && p != 22);
                        v.instance.status == "ACTIVE"
                            && v.connected
                            && v.instance.registered.cpu - v.allocated.cpu >= cpu
                            && v.instance.registered.memory - v.allocated.memory >= mem
                            && free_port
                            && (!distinct || v.group_count("web") == 0)
                            && zone.is_none_or(|z| attribute(v.instance, "zone") == Some(format!("z{z}").as_str()))
                    };
                    match place(&views, &need, "web", &cs, &ss, &mut rng) {
                        Ok(i) => {
                            prop_assert!(ok(i), "chose host {} which should be refused", i);
                            drop(views);
                            f.held[i].add(&need);
                            *f.groups[i].entry("web".into()).or_insert(0) += 1;
                        }
                        Err(refusals) => {
                            prop_assert!((0..views.len()).all(|i| !ok(i)), "refused a feasible host");
                            prop_assert_eq!(refusals.len(), views.len());
                            break;
                        }
                    }
                }
            }
        }
    }
}
