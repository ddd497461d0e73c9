//! Where a task can run: an instance that is ACTIVE and has the CPU, memory
//! and host ports the task asks for. RunTask picks at random among those
//! (ECS's default); the strategies and constraints of services build on
//! [`fits`].

use crate::records::{InstanceRecord, Resources};
use crate::taskdef::{effective_containers, parse_cpu, parse_memory};
use rand::seq::SliceRandom;
use rand::Rng;
use wharf_model::ecs::{self, NetworkMode, TransportProtocol};

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
}

impl Misfit {
    pub fn reason(self) -> &'static str {
        match self {
            Misfit::Cpu => "RESOURCE:CPU",
            Misfit::Memory => "RESOURCE:MEMORY",
            Misfit::Ports => "RESOURCE:PORTS",
            Misfit::NotActive => "INACTIVE",
            Misfit::Disconnected => "AGENT",
        }
    }
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

/// Whether `instance` can take a task needing `need` right now.
pub fn fits(instance: &InstanceRecord, need: &Resources, connected: bool) -> Result<(), Misfit> {
    if instance.status != "ACTIVE" {
        return Err(Misfit::NotActive);
    }
    if !connected {
        return Err(Misfit::Disconnected);
    }
    let free = instance.remaining();
    if need.cpu > free.cpu {
        return Err(Misfit::Cpu);
    }
    if need.memory > free.memory {
        return Err(Misfit::Memory);
    }
    if need.tcp_ports.iter().any(|p| free.tcp_ports.contains(p))
        || need.udp_ports.iter().any(|p| free.udp_ports.contains(p))
    {
        return Err(Misfit::Ports);
    }
    Ok(())
}

/// Picks an instance at random among those that fit; when none does, says
/// why each was refused.
pub fn choose<'a, R: Rng + ?Sized>(
    candidates: &[(&'a InstanceRecord, bool)],
    need: &Resources,
    rng: &mut R,
) -> Result<&'a InstanceRecord, Vec<(&'a InstanceRecord, Misfit)>> {
    let mut fit = Vec::new();
    let mut misfits = Vec::new();
    for (inst, connected) in candidates {
        match fits(inst, need, *connected) {
            Ok(()) => fit.push(*inst),
            Err(m) => misfits.push((*inst, m)),
        }
    }
    fit.choose(rng).copied().ok_or(misfits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn instance(cpu: i64, mem: i64) -> InstanceRecord {
        InstanceRecord {
            id: "i".into(),
            arn: "arn:i".into(),
            cluster: "default".into(),
            status: "ACTIVE".into(),
            registered: Resources {
                cpu,
                memory: mem,
                ..Default::default()
            },
            reserved: Resources {
                tcp_ports: [22].into(),
                ..Default::default()
            },
            allocated: Resources::default(),
            attributes: Default::default(),
            agent_version: None,
            docker_version: None,
            hostname: None,
            registered_at: 0,
            tags: Default::default(),
            version: 1,
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
        assert_eq!(fits(&i, &need(2048, 10, None), true), Err(Misfit::Cpu));
        assert_eq!(fits(&i, &need(10, 1024, None), true), Err(Misfit::Memory));
        assert_eq!(fits(&i, &need(10, 10, Some(22)), true), Err(Misfit::Ports));
        assert_eq!(fits(&i, &need(10, 10, Some(80)), true), Ok(()));
        i.allocated.add(&need(10, 10, Some(80)));
        assert_eq!(fits(&i, &need(10, 10, Some(80)), true), Err(Misfit::Ports));
        assert_eq!(
            fits(&i, &need(10, 10, None), false),
            Err(Misfit::Disconnected)
        );
        i.status = "DRAINING".into();
        assert_eq!(fits(&i, &need(10, 10, None), true), Err(Misfit::NotActive));
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
}
