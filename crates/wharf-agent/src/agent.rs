//! The host agent loop: register the host, long-poll the tasks assigned to
//! it, converge Docker to them, report what Docker shows. Level-triggered:
//! every pass looks at the full desired set and at every managed container,
//! so a restart re-adopts running containers (found by their labels) and
//! never starts a second copy.

use crate::client::{ClientError, ControlClient};
use crate::runtime::{
    ContainerSpec, ContainerState, ContainerStatus, NetworkMode, PortBinding, Protocol, Runtime,
    RuntimeEvent, TASK_ARN_LABEL,
};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use wharf_core::agent_protocol::*;
use wharf_core::records::Resources;
use wharf_model::ecs;

pub const CONTAINER_NAME_LABEL: &str = "com.amazonaws.ecs.container-name";
pub const CLUSTER_LABEL: &str = "com.amazonaws.ecs.cluster";
pub const FAMILY_LABEL: &str = "com.amazonaws.ecs.task-definition-family";
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub cluster: String,
    /// Where the agent remembers its container instance ARN across restarts.
    pub state_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("docker: {0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
}

pub struct Agent {
    client: ControlClient,
    runtime: Arc<dyn Runtime>,
    config: AgentConfig,
    wake: Notify,
    /// Tasks whose converge job is running.
    in_flight: std::sync::Mutex<HashSet<String>>,
}

fn now_ms() -> i64 {
    wharf_core::clock::Clock::now(&wharf_core::clock::SystemClock)
}

impl Agent {
    pub fn new(client: ControlClient, runtime: Arc<dyn Runtime>, config: AgentConfig) -> Self {
        Self {
            client,
            runtime,
            config,
            wake: Notify::new(),
            in_flight: Default::default(),
        }
    }

    /// Registers (or re-registers) this host; returns its container instance ARN.
    pub async fn register(&self) -> Result<String, AgentError> {
        tracing::debug!(cluster = %self.config.cluster, "registering");
        let info = self.runtime.info().await?;
        tracing::debug!(?info, "docker host");
        let arn_file = self
            .config
            .state_dir
            .join(format!("instance-{}.arn", self.config.cluster));
        let known = std::fs::read_to_string(&arn_file)
            .ok()
            .map(|s| s.trim().to_string());
        let hostname = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let attr = |n: &str, v: Option<&str>| ecs::Attribute {
            name: n.into(),
            value: v.map(str::to_string),
            ..Default::default()
        };
        let req = ecs::RegisterContainerInstanceRequest {
            cluster: Some(self.config.cluster.clone()),
            container_instance_arn: known,
            instance_identity_document: Some(
                serde_json::json!({ "instanceId": hostname }).to_string(),
            ),
            total_resources: Some(
                Resources {
                    cpu: info.cpus as i64 * 1024,
                    memory: (info.memory_bytes / (1024 * 1024)) as i64,
                    // Ports the host itself uses (SSH, Docker, the ECS agent's), as ECS reserves them.
                    tcp_ports: [22, 2375, 2376, 51678, 51679].into(),
                    udp_ports: Default::default(),
                }
                .to_wire(),
            ),
            version_info: Some(ecs::VersionInfo {
                agent_version: Some(AGENT_VERSION.into()),
                agent_hash: None,
                docker_version: Some(info.server_version.clone()),
            }),
            attributes: Some(vec![
                attr("ecs.os-type", Some(&info.os_type)),
                attr("ecs.cpu-architecture", Some(&info.architecture)),
                attr("com.amazonaws.ecs.capability.docker-remote-api.1.41", None),
                attr("ecs.capability.container-health-check", None),
                attr("ecs.capability.container-ordering", None),
                attr(
                    "com.amazonaws.ecs.capability.logging-driver.json-file",
                    None,
                ),
            ]),
            ..Default::default()
        };
        let resp: ecs::RegisterContainerInstanceResponse = self
            .client
            .call(
                "AmazonEC2ContainerServiceV20141113.RegisterContainerInstance",
                &req,
            )
            .await?;
        let arn = resp
            .container_instance
            .and_then(|c| c.container_instance_arn)
            .unwrap_or_default();
        let _ = std::fs::create_dir_all(&self.config.state_dir);
        let _ = std::fs::write(&arn_file, &arn);
        tracing::info!(%arn, cluster = %self.config.cluster, "registered container instance");
        Ok(arn)
    }

    /// Runs until the process ends, riding out control-plane and Docker outages.
    pub async fn run(self: Arc<Self>) {
        let events = self.clone();
        tokio::spawn(async move { events.follow_events().await });
        let mut arn = None;
        let mut after = 0;
        loop {
            let instance = match &arn {
                Some(a) => a,
                None => match self.register().await {
                    Ok(a) => arn.insert(a),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot register; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        continue;
                    }
                },
            };
            let poll = PollRequest {
                cluster: self.config.cluster.clone(),
                container_instance_arn: instance.clone(),
                after_revision: after,
                wait_millis: 15_000,
            };
            let target = format!("{TARGET_PREFIX}.{POLL}");
            let resp: Result<PollResponse, _> = tokio::select! {
                r = self.client.call(&target, &poll) => r,
                _ = self.wake.notified() => { after = 0; continue; }
            };
            match resp {
                Ok(r) if !r.registered => {
                    arn = None;
                    after = 0;
                }
                Ok(r) => {
                    after = r.revision;
                    if let Err(e) = self.converge(&r.tasks).await {
                        tracing::warn!(error = %e, "converge failed; will retry");
                        after = 0;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "poll failed; retrying");
                    after = 0;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Docker events wake the loop, so an exit shows within a poll round-trip.
    async fn follow_events(&self) {
        loop {
            let mut events = self.runtime.events();
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(RuntimeEvent::Died { .. })
                    | Ok(RuntimeEvent::Health { .. })
                    | Ok(RuntimeEvent::Started { .. }) => self.wake.notify_one(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "docker event stream ended");
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// One pass: make Docker match `tasks`, and report each task's state.
    pub async fn converge(self: &Arc<Self>, tasks: &[AssignedTask]) -> Result<(), AgentError> {
        let mut by_task: HashMap<String, Vec<ContainerStatus>> = HashMap::new();
        for c in self.runtime.list_managed().await? {
            if c.labels.get(CLUSTER_LABEL) == Some(&self.config.cluster) {
                by_task
                    .entry(c.labels.get(TASK_ARN_LABEL).cloned().unwrap_or_default())
                    .or_default()
                    .push(c);
            }
        }
        let assigned: HashSet<&str> = tasks.iter().map(|t| t.task_arn.as_str()).collect();
        // Containers of tasks this instance no longer has: orphans.
        for (arn, containers) in &by_task {
            if !assigned.contains(arn.as_str()) {
                for c in containers {
                    tracing::info!(task = %arn, container = %c.name, "removing orphaned container");
                    self.runtime
                        .stop_container(&c.id, Duration::from_secs(10))
                        .await?;
                    self.runtime.remove_container(&c.id).await?;
                }
            }
        }
        // Each task converges in its own background job, at most one per task
        // at a time: a slow stop (its stopTimeout) never holds back the poll
        // loop or another task's start. A finished job wakes the loop so the
        // next pass sees its result.
        for t in tasks {
            let existing = by_task.remove(&t.task_arn).unwrap_or_default();
            if !self
                .in_flight
                .lock()
                .expect("in-flight lock")
                .insert(t.task_arn.clone())
            {
                continue;
            }
            let agent = self.clone();
            let t = t.clone();
            tokio::spawn(async move {
                let result = async {
                    if let Some(report) = agent.converge_task(&t, existing).await? {
                        let _: Empty = agent
                            .client
                            .call(&format!("{TARGET_PREFIX}.{REPORT_TASK_STATE}"), &report)
                            .await?;
                    }
                    Ok::<(), AgentError>(())
                }
                .await;
                if let Err(e) = result {
                    tracing::warn!(task = %t.task_arn, error = %e, "task converge failed; will retry");
                }
                agent
                    .in_flight
                    .lock()
                    .expect("in-flight lock")
                    .remove(&t.task_arn);
                agent.wake.notify_one();
            });
        }
        Ok(())
    }

    async fn converge_task(
        &self,
        t: &AssignedTask,
        mut existing: Vec<ContainerStatus>,
    ) -> Result<Option<TaskStateReport>, AgentError> {
        if t.last_status == "STOPPED" {
            return Ok(None);
        }
        let defs = wharf_core::taskdef::effective_containers(&t.task_definition, &t.overrides);
        let mut report = TaskStateReport {
            cluster: self.config.cluster.clone(),
            task_arn: t.task_arn.clone(),
            status: "PENDING".into(),
            reason: None,
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            execution_stopped_at: None,
            containers: vec![],
        };
        let essential_exited = existing.iter().any(|c| {
            c.state != ContainerState::Running
                && defs
                    .iter()
                    .any(|d| Some(&c.name_label()) == d.name.as_ref() && d.essential != Some(false))
                && c.started_at.is_some()
        });
        if t.desired_status == "STOPPED" || essential_exited {
            for c in &existing {
                if c.state == ContainerState::Running {
                    let def = defs
                        .iter()
                        .find(|d| d.name.as_deref() == Some(c.name_label().as_str()));
                    let timeout = def.and_then(|d| d.stop_timeout).unwrap_or(30).max(0) as u64;
                    self.runtime
                        .stop_container(&c.id, Duration::from_secs(timeout))
                        .await?;
                }
            }
            let mut final_states = vec![];
            for c in &existing {
                final_states.push(
                    self.runtime
                        .inspect_container(&c.id)
                        .await?
                        .unwrap_or_else(|| c.clone()),
                );
            }
            report.status = if t.desired_status == "STOPPED"
                || final_states
                    .iter()
                    .all(|c| c.state != ContainerState::Running)
            {
                "STOPPED".into()
            } else {
                "RUNNING".into()
            };
            report.execution_stopped_at = Some(now_ms());
            report.containers = final_states
                .iter()
                .map(|c| container_report(c, "STOPPED"))
                .collect();
            return Ok(Some(report));
        }
        // Desired RUNNING: create and start what is missing, in dependency order.
        let order = wharf_core::taskdef::start_order(&defs).unwrap_or_default();
        let task_id = t.task_arn.rsplit('/').next().unwrap_or_default();
        let family = t.task_definition.family.clone().unwrap_or_default();
        let revision = t.task_definition.revision.unwrap_or(0);
        for name in &order {
            if existing.iter().any(|c| &c.name_label() == name) {
                continue;
            }
            let def = defs
                .iter()
                .find(|d| d.name.as_ref() == Some(name))
                .expect("ordered from defs");
            let image = def.image.clone().unwrap_or_default();
            if !self.runtime.image_present(&image).await? {
                report.pull_started_at.get_or_insert(now_ms());
                if let Err(e) = self.runtime.pull_image(&image).await {
                    report.status = "STOPPED".into();
                    report.reason = Some(format!("CannotPullContainerError: {e}"));
                    report.pull_stopped_at = Some(now_ms());
                    return Ok(Some(report));
                }
                report.pull_stopped_at = Some(now_ms());
            }
            let spec = container_spec(t, def, &family, revision, task_id, &self.config.cluster);
            let id = self.runtime.create_container(&spec).await?;
            if let Err(e) = self.runtime.start_container(&id).await {
                report.status = "STOPPED".into();
                report.reason = Some(format!("CannotStartContainerError: {e}"));
                return Ok(Some(report));
            }
            if let Some(s) = self.runtime.inspect_container(&id).await? {
                existing.push(s);
            }
        }
        let all_running =
            existing.iter().all(|c| c.state == ContainerState::Running) && !existing.is_empty();
        report.status = if all_running {
            "RUNNING".into()
        } else {
            "PENDING".into()
        };
        report.containers = existing
            .iter()
            .map(|c| {
                container_report(
                    c,
                    if c.state == ContainerState::Running {
                        "RUNNING"
                    } else {
                        "STOPPED"
                    },
                )
            })
            .collect();
        if report.status == t.last_status
            && t.last_status == "RUNNING"
            && existing.iter().all(|c| c.health.is_none())
        {
            return Ok(None);
        }
        Ok(Some(report))
    }
}

trait NameLabel {
    fn name_label(&self) -> String;
}

impl NameLabel for ContainerStatus {
    fn name_label(&self) -> String {
        self.labels
            .get(CONTAINER_NAME_LABEL)
            .cloned()
            .unwrap_or_default()
    }
}

fn container_report(c: &ContainerStatus, status: &str) -> ContainerReport {
    let mut seen = HashSet::new();
    ContainerReport {
        name: c.name_label(),
        runtime_id: Some(c.id.clone()),
        image_digest: None,
        status: status.into(),
        exit_code: if status == "STOPPED" {
            c.exit_code.map(|e| e as i32)
        } else {
            None
        },
        reason: c.error.clone().filter(|e| !e.is_empty()),
        // Docker lists a dynamic port once per address family; ECS shows it once.
        network_bindings: c
            .ports
            .iter()
            .filter(|p| seen.insert((p.container_port, p.host_port, p.protocol)))
            .map(|p| ecs::NetworkBinding {
                bind_ip: Some(
                    p.host_ip
                        .clone()
                        .filter(|ip| ip != "::")
                        .unwrap_or_else(|| "0.0.0.0".into()),
                ),
                container_port: Some(p.container_port as i32),
                host_port: Some(p.host_port as i32),
                protocol: Some(ecs::TransportProtocol::from(p.protocol.as_str())),
                ..Default::default()
            })
            .collect(),
        health_status: c.health.as_ref().map(|h| match h {
            crate::runtime::Health::Healthy => "HEALTHY".into(),
            crate::runtime::Health::Unhealthy => "UNHEALTHY".into(),
            crate::runtime::Health::Starting => "UNKNOWN".into(),
        }),
    }
}

fn container_spec(
    t: &AssignedTask,
    d: &ecs::ContainerDefinition,
    family: &str,
    revision: i32,
    task_id: &str,
    cluster: &str,
) -> ContainerSpec {
    let name = d.name.clone().unwrap_or_default();
    let mut labels: HashMap<String, String> = d
        .docker_labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.insert(TASK_ARN_LABEL.into(), t.task_arn.clone());
    labels.insert(CONTAINER_NAME_LABEL.into(), name.clone());
    labels.insert(CLUSTER_LABEL.into(), cluster.into());
    labels.insert(FAMILY_LABEL.into(), family.into());
    labels.insert(
        "com.amazonaws.ecs.task-definition-version".into(),
        revision.to_string(),
    );
    let network_mode = match t.task_definition.network_mode {
        Some(ecs::NetworkMode::Host) => NetworkMode::Host,
        Some(ecs::NetworkMode::None) => NetworkMode::None,
        _ => NetworkMode::Bridge,
    };
    ContainerSpec {
        // ECS agent naming: ecs-FAMILY-REVISION-CONTAINER-<unique>.
        name: format!(
            "ecs-{family}-{revision}-{name}-{}",
            &task_id[..task_id.len().min(12)]
        ),
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
        stop_timeout: d.stop_timeout.map(|s| Duration::from_secs(s.max(0) as u64)),
        health_check: d.health_check.as_ref().map(|h| {
            let secs = |v: Option<i32>, default: Duration| {
                v.map(|v| Duration::from_secs(v.max(0) as u64))
                    .unwrap_or(default)
            };
            let mut check = crate::runtime::HealthCheck::new(h.command.clone());
            check.interval = secs(h.interval, check.interval);
            check.timeout = secs(h.timeout, check.timeout);
            check.retries = h.retries.map(|r| r.max(1) as u32).unwrap_or(check.retries);
            check.start_period = secs(h.start_period, check.start_period);
            check
        }),
        ..Default::default()
    }
}
