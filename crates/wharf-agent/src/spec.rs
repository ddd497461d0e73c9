//! How a task's container definitions become Docker containers and volumes:
//! names, labels, limits, ports, mounts, links and health checks, mapped as
//! the ECS agent maps them.

use crate::runtime::{
    ContainerSpec, DeviceSpec, HealthCheck, HostSettings, Mount, MountSource, NetworkMode,
    PortBinding, Protocol, TASK_ARN_LABEL,
};
use std::collections::HashMap;
use std::time::Duration;
use wharf_core::agent_protocol::AssignedTask;
use wharf_model::ecs;

pub const CONTAINER_NAME_LABEL: &str = "com.amazonaws.ecs.container-name";
pub const CLUSTER_LABEL: &str = "com.amazonaws.ecs.cluster";
pub const FAMILY_LABEL: &str = "com.amazonaws.ecs.task-definition-family";
pub const VERSION_LABEL: &str = "com.amazonaws.ecs.task-definition-version";
/// Marks containers run on managed (FARGATE) capacity, which the EC2 agent
/// of the same cluster must leave alone.
pub const CAPACITY_LABEL: &str = "wharf.capacity";
/// The container instance whose agent created the container: agents
/// sharing a Docker daemon leave each other's containers alone.
pub const INSTANCE_LABEL: &str = "wharf.container-instance";
/// The shared Docker network awsvpc tasks get their addresses on.
pub const AWSVPC_NETWORK: &str = "wharf-awsvpc";

/// What the agent needs to know about one task to name and label its parts.
pub struct TaskNames<'a> {
    pub task: &'a AssignedTask,
    pub cluster: &'a str,
    pub managed: bool,
    /// The creating agent's container instance ARN.
    pub instance: &'a str,
    pub family: String,
    pub revision: i32,
    pub task_id: &'a str,
}

impl<'a> TaskNames<'a> {
    pub fn new(task: &'a AssignedTask, cluster: &'a str, managed: bool, instance: &'a str) -> Self {
        TaskNames {
            task,
            cluster,
            managed,
            instance,
            family: task.task_definition.family.clone().unwrap_or_default(),
            revision: task.task_definition.revision.unwrap_or(0),
            task_id: task.task_arn.rsplit('/').next().unwrap_or_default(),
        }
    }

    /// ECS agent naming: `ecs-FAMILY-REVISION-CONTAINER-<unique>`, the
    /// unique part being the task ID's last 12 hex digits: its random end
    /// (task IDs are time-ordered, so tasks started in the same millisecond
    /// share their first digits).
    pub fn container(&self, container: &str) -> String {
        let id = self.task_id;
        format!(
            "ecs-{}-{}-{container}-{}",
            self.family,
            self.revision,
            &id[id.len().saturating_sub(12)..]
        )
    }

    /// A task-scoped volume ends with the whole task id, so that cleanup can
    /// tell it from a shared volume when the task's containers go.
    pub fn task_volume(&self, volume: &str) -> String {
        format!(
            "ecs-{}-{}-{volume}-{}",
            self.family, self.revision, self.task_id
        )
    }

    pub fn labels(&self) -> HashMap<String, String> {
        let mut l = HashMap::from([
            (TASK_ARN_LABEL.into(), self.task.task_arn.clone()),
            (CLUSTER_LABEL.into(), self.cluster.into()),
            (FAMILY_LABEL.into(), self.family.clone()),
            (VERSION_LABEL.into(), self.revision.to_string()),
            (INSTANCE_LABEL.into(), self.instance.into()),
        ]);
        if self.managed {
            l.insert(CAPACITY_LABEL.into(), "managed".into());
        }
        l
    }

    pub fn awsvpc(&self) -> bool {
        self.task.task_definition.network_mode == Some(ecs::NetworkMode::Awsvpc)
    }

    /// The awsvpc task's pause container, which owns its network namespace.
    pub fn pause_spec(&self) -> ContainerSpec {
        let mut labels = self.labels();
        labels.insert(
            CONTAINER_NAME_LABEL.into(),
            crate::pause::CONTAINER_NAME.into(),
        );
        let td = &self.task.task_definition;
        // The namespaces the task's containers share are the pause
        // container's: its net.* sysctls are theirs (a later container's
        // value wins, as in ECS), and its IPC namespace is shareable when
        // the task shares one.
        let mut sysctls: Vec<(String, String)> = vec![];
        for c in td.container_definitions.iter().flatten() {
            for (k, v) in net_sysctls(c) {
                sysctls.retain(|(have, _)| *have != k);
                sysctls.push((k, v));
            }
        }
        ContainerSpec {
            name: self.container("internalecspause"),
            image: crate::pause::IMAGE.into(),
            network_mode: NetworkMode::Named(AWSVPC_NETWORK.into()),
            labels,
            memory_bytes: Some(6 * 1024 * 1024),
            host: HostSettings {
                sysctls,
                ipc_mode: (td.ipc_mode == Some(ecs::IpcMode::Task)).then(|| "shareable".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// A Docker volume the task needs before its containers are created.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumePlan {
    pub docker_name: String,
    pub driver: Option<String>,
    /// The driver's options (`driverOpts`), as given.
    pub driver_opts: HashMap<String, String>,
    pub labels: HashMap<String, String>,
}

/// Where each task volume comes from: a host path is bind-mounted; a Docker
/// volume is task-scoped (named after the task, removed with it) unless its
/// scope is `shared`; a volume with neither is a task-scoped local volume,
/// as ECS gives a Docker-managed path. Returns the mount source per volume
/// name and the volumes to create.
pub fn task_volumes(n: &TaskNames) -> (HashMap<String, MountSource>, Vec<VolumePlan>) {
    let mut sources = HashMap::new();
    let mut create = vec![];
    for v in n.task.task_definition.volumes.iter().flatten() {
        let Some(name) = v.name.clone() else { continue };
        if let Some(path) = v.host.as_ref().and_then(|h| h.source_path.clone()) {
            sources.insert(name, MountSource::HostPath(path));
            continue;
        }
        let cfg = v.docker_volume_configuration.clone().unwrap_or_default();
        let shared = cfg.scope == Some(ecs::Scope::Shared);
        let docker_name = if shared {
            name.clone()
        } else {
            n.task_volume(&name)
        };
        // A shared volume is created only when autoprovision asks for it;
        // otherwise Docker's own create-on-mount applies.
        if !shared || cfg.autoprovision == Some(true) {
            let mut labels: HashMap<String, String> =
                cfg.labels.clone().unwrap_or_default().into_iter().collect();
            if !shared {
                labels.extend(n.labels());
            }
            create.push(VolumePlan {
                docker_name: docker_name.clone(),
                driver: cfg.driver.clone(),
                driver_opts: cfg
                    .driver_opts
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                labels,
            });
        }
        sources.insert(name, MountSource::Volume(docker_name));
    }
    (sources, create)
}

/// The Docker container for one container definition of the task.
/// `pause`: the id of the awsvpc task's pause container, whose network
/// namespace the container joins (ports are then the task's own, not
/// published on the host).
pub fn container_spec(
    n: &TaskNames,
    d: &ecs::ContainerDefinition,
    volumes: &HashMap<String, MountSource>,
    pause: Option<&str>,
) -> ContainerSpec {
    let name = d.name.clone().unwrap_or_default();
    let mut labels: HashMap<String, String> = d
        .docker_labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(n.labels());
    labels.insert(CONTAINER_NAME_LABEL.into(), name.clone());
    let network_mode = match (pause, &n.task.task_definition.network_mode) {
        (Some(id), _) => NetworkMode::Container(id.to_string()),
        (None, Some(ecs::NetworkMode::Host)) => NetworkMode::Host,
        (None, Some(ecs::NetworkMode::None)) => NetworkMode::None,
        _ => NetworkMode::Bridge,
    };
    let secs = |v: Option<i32>, default: Duration| {
        v.map(|v| Duration::from_secs(v.max(0) as u64))
            .unwrap_or(default)
    };
    ContainerSpec {
        name: n.container(&name),
        image: d.image.clone().unwrap_or_default(),
        command: d.command.clone(),
        entrypoint: d.entry_point.clone(),
        env: d
            .environment
            .iter()
            .flatten()
            .map(|kv| {
                (
                    kv.name.clone().unwrap_or_default(),
                    kv.value.clone().unwrap_or_default(),
                )
            })
            .collect(),
        working_dir: d.working_directory.clone(),
        user: d.user.clone(),
        cpu_shares: d.cpu.filter(|c| *c > 0).map(i64::from),
        memory_bytes: d.memory.map(|m| m as i64 * 1024 * 1024),
        memory_reservation_bytes: d.memory_reservation.map(|m| m as i64 * 1024 * 1024),
        network_mode,
        port_bindings: d
            .port_mappings
            .iter()
            .flatten()
            .filter(|_| pause.is_none())
            .map(|p| PortBinding {
                container_port: p.container_port.unwrap_or(0) as u16,
                host_port: p.host_port.unwrap_or(0) as u16,
                protocol: if p.protocol == Some(ecs::TransportProtocol::Udp) {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
                host_ip: None,
            })
            .collect(),
        labels,
        binds: d
            .mount_points
            .iter()
            .flatten()
            .filter_map(|m| {
                Some(Mount {
                    source: volumes.get(m.source_volume.as_deref()?)?.clone(),
                    container_path: m.container_path.clone()?,
                    read_only: m.read_only.unwrap_or(false),
                })
            })
            .collect(),
        // ECS links name the other container of the task; Docker needs its
        // real name. "name" alone links under the same alias.
        links: d
            .links
            .iter()
            .flatten()
            .map(|l| {
                let (target, alias) = l.split_once(':').unwrap_or((l, l));
                format!("{}:{alias}", n.container(target))
            })
            .collect(),
        volumes_from: d
            .volumes_from
            .iter()
            .flatten()
            .filter_map(|v| {
                let name = n.container(v.source_container.as_deref()?);
                Some(if v.read_only == Some(true) {
                    format!("{name}:ro")
                } else {
                    name
                })
            })
            .collect(),
        stop_timeout: d.stop_timeout.map(|s| Duration::from_secs(s.max(0) as u64)),
        health_check: d.health_check.as_ref().map(|h| {
            let mut check = HealthCheck::new(h.command.clone());
            check.interval = secs(h.interval, check.interval);
            check.timeout = secs(h.timeout, check.timeout);
            check.retries = h.retries.map(|r| r.max(1) as u32).unwrap_or(check.retries);
            check.start_period = secs(h.start_period, check.start_period);
            check
        }),
        hostname: d.hostname.clone().filter(|_| pause.is_none()),
        extra_hosts: d
            .extra_hosts
            .iter()
            .flatten()
            .map(|h| format!("{}:{}", h.hostname, h.ip_address))
            .collect(),
        privileged: d.privileged == Some(true),
        readonly_rootfs: d.readonly_root_filesystem == Some(true),
        host: host_settings(n, d, pause),
    }
}

fn net_sysctls(d: &ecs::ContainerDefinition) -> impl Iterator<Item = (String, String)> + '_ {
    d.system_controls.iter().flatten().filter_map(|s| {
        let ns = s.namespace.clone()?;
        ns.starts_with("net.")
            .then(|| (ns, s.value.clone().unwrap_or_default()))
    })
}

const MIB: i64 = 1024 * 1024;

/// The definition's members Docker applies as they are (validated at
/// registration, see `wharf_core::container_rules`).
fn host_settings(n: &TaskNames, d: &ecs::ContainerDefinition, pause: Option<&str>) -> HostSettings {
    let lp = d.linux_parameters.clone().unwrap_or_default();
    let caps = lp.capabilities.clone().unwrap_or_default();
    let td = &n.task.task_definition;
    let share = |task_mode: bool, host: bool| match (host, task_mode, pause) {
        (true, _, _) => Some("host".to_string()),
        (false, true, Some(id)) => Some(format!("container:{id}")),
        _ => None,
    };
    HostSettings {
        ulimits: d
            .ulimits
            .iter()
            .flatten()
            .map(|u| {
                (
                    u.name.as_str().to_string(),
                    i64::from(u.soft_limit),
                    i64::from(u.hard_limit),
                )
            })
            .collect(),
        cap_add: caps.add.unwrap_or_default(),
        cap_drop: caps.drop.unwrap_or_default(),
        init: lp.init_process_enabled == Some(true),
        shm_size_bytes: lp.shared_memory_size.map(|m| i64::from(m) * MIB),
        tmpfs: lp
            .tmpfs
            .iter()
            .flatten()
            .map(|t| {
                let mut opts = vec![format!("size={}m", t.size)];
                opts.extend(t.mount_options.iter().flatten().cloned());
                (t.container_path.clone(), opts.join(","))
            })
            .collect(),
        devices: lp
            .devices
            .iter()
            .flatten()
            .map(|dev| DeviceSpec {
                host_path: dev.host_path.clone(),
                container_path: dev
                    .container_path
                    .clone()
                    .unwrap_or_else(|| dev.host_path.clone()),
                permissions: match dev.permissions.as_deref() {
                    None | Some([]) => "rwm".into(),
                    Some(p) => p
                        .iter()
                        .map(|p| match p {
                            ecs::DeviceCgroupPermission::Read => 'r',
                            ecs::DeviceCgroupPermission::Write => 'w',
                            _ => 'm',
                        })
                        .collect(),
                },
            })
            .collect(),
        memory_swap_bytes: lp.max_swap.and_then(|swap| {
            let memory = i64::from(d.memory?);
            memory.checked_add(i64::from(swap))?.checked_mul(MIB)
        }),
        swappiness: lp.swappiness.map(i64::from),
        dns: d.dns_servers.clone().unwrap_or_default(),
        dns_search: d.dns_search_domains.clone().unwrap_or_default(),
        security_opt: d.docker_security_options.clone().unwrap_or_default(),
        // With awsvpc, net.* sysctls are the pause container's (above).
        sysctls: d
            .system_controls
            .iter()
            .flatten()
            .filter_map(|s| Some((s.namespace.clone()?, s.value.clone()?)))
            .filter(|(k, _)| pause.is_none() || !k.starts_with("net."))
            .collect(),
        open_stdin: d.interactive == Some(true),
        tty: d.pseudo_terminal == Some(true),
        network_disabled: d.disable_networking == Some(true),
        log_driver: d
            .log_configuration
            .as_ref()
            .map(|lc| log_driver(lc, n.task.blocking_logs)),
        pid_mode: share(
            td.pid_mode == Some(ecs::PidMode::Task),
            td.pid_mode == Some(ecs::PidMode::Host),
        ),
        ipc_mode: match &td.ipc_mode {
            Some(ecs::IpcMode::None) => Some("none".into()),
            Some(m) => share(*m == ecs::IpcMode::Task, *m == ecs::IpcMode::Host),
            None => None,
        },
    }
}

/// The Docker log driver and options of a logConfiguration. The delivery
/// mode is the container's own `mode`, else non-blocking when it sets a
/// `max-buffer-size`, else the account's defaultLogDriverMode at launch
/// (`blocking_default`; ECS's default is non-blocking).
fn log_driver(
    lc: &ecs::LogConfiguration,
    blocking_default: bool,
) -> (String, Vec<(String, String)>) {
    let options = lc.options.clone().unwrap_or_default();
    let mode = match options.get("mode") {
        Some(m) => m.clone(),
        None if options.contains_key("max-buffer-size") || !blocking_default => {
            "non-blocking".to_string()
        }
        None => "blocking".to_string(),
    };
    let delivery = std::iter::once(("mode".to_string(), mode)).chain(
        options
            .get("max-buffer-size")
            .map(|s| ("max-buffer-size".to_string(), s.clone())),
    );
    match &lc.log_driver {
        // The agent ships awslogs output itself, reading it back from
        // Docker: a driver Docker can read, delivering as asked.
        ecs::LogDriver::Awslogs => ("json-file".to_string(), delivery.collect()),
        other => (
            other.as_str().to_string(),
            options
                .into_iter()
                .filter(|(k, _)| k != "mode" && k != "max-buffer-size")
                .chain(delivery)
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(td: serde_json::Value) -> AssignedTask {
        serde_json::from_value(serde_json::json!({
            "taskArn": "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef",
            "taskDefinition": td,
            "overrides": {},
            "desiredStatus": "RUNNING",
            "lastStatus": "PENDING",
            "containers": [],
        }))
        .expect("assigned task")
    }

    #[test]
    fn log_delivery_mode_is_the_containers_else_the_accounts_default() {
        let lc = |driver: &str, opts: &[(&str, &str)]| ecs::LogConfiguration {
            log_driver: ecs::LogDriver::from(driver),
            options: Some(
                opts.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            secret_options: None,
        };
        let opts =
            |v: Vec<(String, String)>| -> HashMap<String, String> { v.into_iter().collect() };
        // awslogs logs to json-file, delivering as the account default says.
        let (driver, o) = log_driver(&lc("awslogs", &[("awslogs-group", "g")]), false);
        assert_eq!(driver, "json-file");
        assert_eq!(
            opts(o),
            HashMap::from([("mode".into(), "non-blocking".into())])
        );
        let (_, o) = log_driver(&lc("awslogs", &[]), true);
        assert_eq!(opts(o)["mode"], "blocking");
        // The container's own mode wins; a buffer size means non-blocking.
        let (_, o) = log_driver(&lc("syslog", &[("mode", "blocking"), ("tag", "t")]), false);
        assert_eq!(
            opts(o),
            HashMap::from([
                ("mode".into(), "blocking".into()),
                ("tag".into(), "t".into())
            ])
        );
        let (_, o) = log_driver(&lc("json-file", &[("max-buffer-size", "4m")]), true);
        assert_eq!(
            opts(o),
            HashMap::from([
                ("mode".into(), "non-blocking".into()),
                ("max-buffer-size".into(), "4m".into())
            ])
        );
    }

    #[test]
    fn maps_volumes_links_and_mounts() {
        let t = task(serde_json::json!({
            "family": "web", "revision": 3,
            "volumes": [
                {"name": "data", "host": {"sourcePath": "/srv/data"}},
                {"name": "scratch"},
                {"name": "cache", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": true, "driver": "local"}},
            ],
            "containerDefinitions": [
                {"name": "db", "image": "db"},
                {"name": "app", "image": "app", "links": ["db:database", "db"],
                 "volumesFrom": [{"sourceContainer": "db", "readOnly": true}],
                 "mountPoints": [
                    {"sourceVolume": "data", "containerPath": "/data", "readOnly": true},
                    {"sourceVolume": "scratch", "containerPath": "/tmp/s"},
                    {"sourceVolume": "cache", "containerPath": "/cache"}]}
            ]
        }));
        let instance = "arn:aws:ecs:us-east-1:000000000000:container-instance/default/i1";
        let n = TaskNames::new(&t, "default", false, instance);
        let (sources, create) = task_volumes(&n);
        let scratch = "ecs-web-3-scratch-0123456789abcdef0123456789abcdef";
        assert_eq!(sources["data"], MountSource::HostPath("/srv/data".into()));
        assert_eq!(sources["scratch"], MountSource::Volume(scratch.into()));
        assert_eq!(sources["cache"], MountSource::Volume("cache".into()));
        let created: Vec<&str> = create.iter().map(|v| v.docker_name.as_str()).collect();
        assert_eq!(created, [scratch, "cache"]);
        assert_eq!(create[0].labels[TASK_ARN_LABEL], t.task_arn);
        assert!(!create[1].labels.contains_key(TASK_ARN_LABEL));

        let app = &t.task_definition.container_definitions.as_ref().unwrap()[1];
        let spec = container_spec(&n, app, &sources, None);
        assert_eq!(spec.name, "ecs-web-3-app-456789abcdef");
        assert_eq!(
            spec.links,
            [
                "ecs-web-3-db-456789abcdef:database",
                "ecs-web-3-db-456789abcdef:db"
            ]
        );
        assert_eq!(spec.volumes_from, ["ecs-web-3-db-456789abcdef:ro"]);
        let binds: Vec<String> = spec.binds.iter().map(Mount::as_bind).collect();
        assert_eq!(
            binds,
            [
                "/srv/data:/data:ro",
                &format!("{scratch}:/tmp/s"),
                "cache:/cache"
            ]
        );
        assert_eq!(spec.labels[CONTAINER_NAME_LABEL], "app");
        assert_eq!(spec.labels[VERSION_LABEL], "3");
        assert_eq!(spec.labels[INSTANCE_LABEL], instance);
    }
}
