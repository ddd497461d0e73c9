//! Simulated hosts: one process registers many container instances through
//! RegisterContainerInstance, follows their tasks with one
//! `PollInstances` long-poll, and reports them RUNNING (and STOPPED when
//! desired so) without Docker. The control plane sees the same operations
//! real agents send, so it is the real control plane a benchmark measures.

use crate::agent::AGENT_VERSION;
use crate::client::{ClientError, ControlClient};
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use wharf_core::agent_protocol::*;
use wharf_core::records::Resources;
use wharf_model::ecs;

/// Availability zones the simulated hosts are spread over (attribute
/// `ecs.availability-zone`).
pub const ZONES: [&str; 3] = ["sim-1a", "sim-1b", "sim-1c"];
/// Instance types they cycle through (attribute `ecs.instance-type`), so a
/// memberOf constraint has something to choose.
pub const INSTANCE_TYPES: [&str; 4] = ["sim.a", "sim.b", "sim.c", "sim.d"];

/// Reports per `ReportTaskStates` request.
const REPORT_BATCH: usize = 500;
/// Report requests in flight at once.
const REPORTS_IN_FLIGHT: usize = 8;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub cluster: String,
    pub hosts: usize,
    /// CPU units (1024 per vCPU) of each host.
    pub cpu: i64,
    /// Memory of each host, MiB.
    pub memory: i64,
}

pub struct Simulator {
    client: ControlClient,
    config: SimConfig,
}

fn now_ms() -> i64 {
    wharf_core::clock::Clock::now(&wharf_core::clock::SystemClock)
}

impl Simulator {
    pub fn new(client: ControlClient, config: SimConfig) -> Self {
        Self { client, config }
    }

    fn registration(&self, n: usize) -> ecs::RegisterContainerInstanceRequest {
        let attr = |name: &str, v: &str| ecs::Attribute {
            name: name.into(),
            value: Some(v.into()),
            ..Default::default()
        };
        ecs::RegisterContainerInstanceRequest {
            cluster: Some(self.config.cluster.clone()),
            instance_identity_document: Some(
                serde_json::json!({ "instanceId": format!("sim-{n:05}") }).to_string(),
            ),
            total_resources: Some(
                Resources {
                    cpu: self.config.cpu,
                    memory: self.config.memory,
                    tcp_ports: [22].into(),
                    udp_ports: Default::default(),
                }
                .to_wire(),
            ),
            version_info: Some(ecs::VersionInfo {
                agent_version: Some(AGENT_VERSION.into()),
                agent_hash: None,
                docker_version: Some("simulated".into()),
            }),
            attributes: Some(vec![
                attr("ecs.os-type", "linux"),
                attr("ecs.availability-zone", ZONES[n % ZONES.len()]),
                attr(
                    "ecs.instance-type",
                    INSTANCE_TYPES[n % INSTANCE_TYPES.len()],
                ),
            ]),
            ..Default::default()
        }
    }

    /// Registers every simulated host (a few at a time); their ARNs.
    pub async fn register(&self) -> Result<Vec<String>, ClientError> {
        let target = "AmazonEC2ContainerServiceV20141113.RegisterContainerInstance";
        let results: Vec<Result<String, ClientError>> = futures::stream::iter(0..self.config.hosts)
            .map(|n| {
                let req = self.registration(n);
                async move {
                    let resp: ecs::RegisterContainerInstanceResponse =
                        self.client.call(target, &req).await?;
                    Ok(resp
                        .container_instance
                        .and_then(|c| c.container_instance_arn)
                        .unwrap_or_default())
                }
            })
            .buffered(16)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Registers, then follows the hosts' tasks until the process ends.
    pub async fn run(self) -> Result<(), ClientError> {
        let arns = self.register().await?;
        tracing::info!(hosts = arns.len(), cluster = %self.config.cluster, "simulated hosts registered");
        let gate = Arc::new(Semaphore::new(REPORTS_IN_FLIGHT));
        // Set when a report is lost: the next poll asks for everything, so
        // its tasks are reported again rather than left as they were.
        let resync = Arc::new(AtomicBool::new(false));
        let mut after = 0;
        loop {
            if resync.swap(false, Ordering::Relaxed) {
                after = 0;
            }
            let req = PollInstancesRequest {
                cluster: self.config.cluster.clone(),
                container_instance_arns: arns.clone(),
                after_revision: after,
                wait_millis: 10_000,
            };
            let resp: PollInstancesResponse = match self
                .client
                .call(&format!("{TARGET_PREFIX}.{POLL_INSTANCES}"), &req)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "poll failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    after = 0;
                    continue;
                }
            };
            after = resp.revision;
            let reports: Vec<TaskStateReport> =
                resp.tasks.iter().filter_map(|t| self.react(t)).collect();
            for chunk in reports.chunks(REPORT_BATCH) {
                let permit = gate.clone().acquire_owned().await.expect("never closed");
                let client = self.client.clone();
                let resync = resync.clone();
                let body = TaskStateReports {
                    reports: chunk.to_vec(),
                };
                tokio::spawn(async move {
                    let target = format!("{TARGET_PREFIX}.{REPORT_TASK_STATES}");
                    if let Err(e) = client.call::<_, Empty>(&target, &body).await {
                        tracing::warn!(error = %e, "report failed; the next poll resyncs");
                        resync.store(true, Ordering::Relaxed);
                    }
                    drop(permit);
                });
            }
        }
    }

    /// What a host that starts everything at once would report.
    fn react(&self, t: &InstanceTask) -> Option<TaskStateReport> {
        let status = match (t.desired_status.as_str(), t.last_status.as_str()) {
            ("RUNNING", "PROVISIONING" | "PENDING" | "ACTIVATING") => "RUNNING",
            ("STOPPED", last) if last != "STOPPED" => "STOPPED",
            _ => return None,
        };
        let now = now_ms();
        let stopped = status == "STOPPED";
        Some(TaskStateReport {
            pull_started_at: Some(now),
            pull_stopped_at: Some(now),
            started_at: Some(now),
            execution_stopped_at: stopped.then_some(now),
            containers: t
                .containers
                .iter()
                .map(|c| ContainerReport {
                    exit_code: stopped.then_some(0),
                    ..ContainerReport::new(&c.name, &format!("sim-{}", c.name), status)
                })
                .collect(),
            ..TaskStateReport::new(&self.config.cluster, &t.task_arn, status)
        })
    }
}
