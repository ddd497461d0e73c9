//! The host agent loop: register the host, long-poll the tasks assigned to
//! it, converge Docker to them, report what Docker shows. Level-triggered:
//! every pass looks at the full desired set and at every managed container,
//! so a restart re-adopts running containers (found by their labels) and
//! never starts a second copy.

use crate::client::{ClientError, ControlClient};
use crate::deps::{self, Gate};
use crate::policy::HostPolicy;
use crate::runtime::{ContainerState, ContainerStatus, Runtime, RuntimeEvent, TASK_ARN_LABEL};
use crate::spec::{
    container_spec, task_volumes, TaskNames, AWSVPC_NETWORK, CAPACITY_LABEL, CLUSTER_LABEL,
    CONTAINER_NAME_LABEL, INSTANCE_LABEL,
};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use wharf_core::agent_protocol::*;
use wharf_core::records::Resources;
use wharf_core::records::MANAGED_CLUSTER;
use wharf_model::ecs;

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub cluster: String,
    /// Where the agent remembers its container instance ARN across restarts.
    pub state_dir: PathBuf,
    pub pull_behavior: PullBehavior,
    /// Managed (FARGATE) capacity: registers in the hidden cluster and runs
    /// the FARGATE tasks of every cluster.
    pub managed: bool,
    /// What this host refuses to run (privileged containers, host paths).
    pub policy: HostPolicy,
    /// The custom capacity provider the instance joins (the instance
    /// attribute `wharf.capacity-provider`); tasks placed by a strategy
    /// naming it run only on such instances.
    pub capacity_provider: Option<String>,
}

/// When to pull a task's image, as the ECS agent's `ECS_IMAGE_PULL_BEHAVIOR`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullBehavior {
    /// Pull; if the pull fails, use the cached image when there is one.
    #[default]
    Default,
    /// Pull; a failed pull fails the task.
    Always,
    /// Pull only if no earlier task on this host pulled it, or it is gone.
    Once,
    /// Pull only if the image is not present.
    PreferCached,
}

impl std::str::FromStr for PullBehavior {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "default" => Ok(Self::Default),
            "always" => Ok(Self::Always),
            "once" => Ok(Self::Once),
            "prefer-cached" => Ok(Self::PreferCached),
            other => Err(format!(
                "unknown image pull behavior '{other}' (default, always, once, prefer-cached)"
            )),
        }
    }
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
    in_flight: Mutex<HashSet<String>>,
    /// The last report sent per task, so an unchanged state isn't resent.
    sent: Mutex<HashMap<String, TaskStateReport>>,
    /// Images this agent has pulled (for `PullBehavior::Once`).
    pulled: Mutex<HashSet<String>>,
    /// Containers whose output is being shipped (awslogs), and those done.
    shipping: Mutex<HashSet<String>>,
    shipped: Mutex<HashSet<String>>,
    /// Who owns what on a Docker host other agents may share.
    owners: Mutex<Owners>,
    /// The endpoint at 169.254.170.2 (task role credentials and task
    /// metadata; shared by the agents of a process), and this agent's mark
    /// on what it put there.
    endpoint: Arc<crate::endpoint::Endpoint>,
    endpoint_owner: u64,
    /// FARGATE tasks' execution role credentials, which their awslogs
    /// delivery signs with (refreshed in place), by task ARN.
    execution: Mutex<HashMap<String, ExecutionSession>>,
}

struct ExecutionSession {
    creds: Arc<std::sync::RwLock<crate::client::SessionCredentials>>,
    /// When to fetch new ones (ms, this agent's clock).
    refresh_at: i64,
}

/// Several agents can share one Docker daemon (one per cluster, or two of
/// the same cluster in a test rig): each container is labelled with the
/// container instance that created it, and an agent manages only its own.
/// A container of another instance of its cluster becomes its to remove
/// once the control plane says that instance is gone (deregistered, or
/// unknown after a reset): this is how a host that lost its state
/// directory, and so registered anew, cleans up after its old self.
#[derive(Default)]
struct Owners {
    /// This agent's container instance ARN, once registered.
    me: Option<String>,
    /// Other instances of the cluster seen on the host in the last pass.
    others: HashSet<String>,
    /// Of those, the ones the control plane reported gone.
    gone: HashSet<String>,
}

/// Whether the exited container `c` is to be started again by its
/// definition's restart policy: enabled, an exit code not ignored, and
/// having run at least restartAttemptPeriod (300 s unless given), so a
/// container that keeps failing at start is not restarted forever.
fn restartable(d: &ecs::ContainerDefinition, c: &ContainerStatus) -> bool {
    let Some(rp) = d.restart_policy.as_ref().filter(|p| p.enabled) else {
        return false;
    };
    if c.state != ContainerState::Exited {
        return false;
    }
    let (Some(code), Some(started), Some(finished)) = (c.exit_code, c.started_at, c.finished_at)
    else {
        return false;
    };
    if rp
        .ignored_exit_codes
        .iter()
        .flatten()
        .any(|i| i64::from(*i) == code)
    {
        return false;
    }
    let period = Duration::from_secs(rp.restart_attempt_period.unwrap_or(300).max(0) as u64);
    finished.duration_since(started).unwrap_or_default() >= period
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
            sent: Default::default(),
            pulled: Default::default(),
            shipping: Default::default(),
            shipped: Default::default(),
            owners: Default::default(),
            endpoint: crate::endpoint::Endpoint::disabled(
                "this agent serves no task credentials endpoint",
            ),
            // A mark of its own on what it shares with the process's
            // other agents.
            endpoint_owner: rand::random(),
            execution: Default::default(),
        }
    }

    /// Serves its tasks' role credentials and metadata through `endpoint`.
    pub fn with_endpoint(mut self, endpoint: Arc<crate::endpoint::Endpoint>) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// The ID a task with a task role finds its credentials under at the
    /// endpoint, fetching them (again) from the control plane unless the
    /// endpoint holds some that are good for a while yet. A task that is
    /// `starting` and cannot have them fails with the reason; one already
    /// running keeps what it has, and the next pass tries again.
    async fn task_credentials(
        &self,
        t: &AssignedTask,
        starting: bool,
    ) -> Result<Result<Option<String>, String>, AgentError> {
        if wharf_core::taskdef::task_role(&t.task_definition, &t.overrides).is_none() {
            return Ok(Ok(None));
        }
        if let Some(why) = self.endpoint.unavailable() {
            return Ok(match starting {
                true => Err(format!("ResourceInitializationError: {why}")),
                false => Ok(None),
            });
        }
        let held = self.endpoint.id_of(&t.task_arn);
        if let Some(id) = held
            .as_ref()
            .filter(|id| self.endpoint.fresh(id, &t.task_arn, now_ms()))
        {
            return Ok(Ok(Some(id.clone())));
        }
        let req = TaskCredentialsRequest {
            task_arn: t.task_arn.clone(),
            execution: false,
        };
        let got: Result<TaskCredentialsResponse, _> = self
            .client
            .call(&format!("{TARGET_PREFIX}.{GET_TASK_CREDENTIALS}"), &req)
            .await;
        match got {
            Ok(r) => {
                self.endpoint.put(
                    self.endpoint_owner,
                    &r.credentials_id,
                    crate::credentials::TaskCredentials {
                        task_arn: t.task_arn.clone(),
                        role_arn: r.role_arn,
                        access_key_id: r.access_key_id,
                        secret_access_key: r.secret_access_key,
                        session_token: r.session_token,
                        expiration: r.expiration,
                        refresh_at: crate::credentials::refresh_at(
                            now_ms(),
                            r.expiration.saturating_sub(r.issued),
                        ),
                    },
                );
                Ok(Ok(Some(r.credentials_id)))
            }
            // Refused (a role it cannot assume, say); a server error is
            // retried by a later pass like an unreachable server.
            Err(ClientError::Api { err, .. }) if starting && err.status < 500 => Ok(Err(format!(
                "ResourceInitializationError: unable to get the task role's credentials: {}",
                err.message
            ))),
            Err(e) if starting => Err(e.into()),
            Err(e) => {
                tracing::warn!(task = %t.task_arn, error = %e, "cannot refresh the task role's credentials; keeping the current ones");
                Ok(Ok(held))
            }
        }
    }

    /// What the task's execution role reads for it (its `secrets`, its
    /// containers' registry credentials), fetched from the control plane
    /// before its containers are created; nothing if it has none or all
    /// its containers exist. Refused: the reason the task stops with.
    async fn task_secrets(
        &self,
        t: &AssignedTask,
        defs: &[wharf_model::ecs::ContainerDefinition],
        missing: bool,
    ) -> Result<Result<TaskSecretsResponse, String>, AgentError> {
        let wanted = defs.iter().any(|d| {
            d.secrets.as_ref().is_some_and(|s| !s.is_empty()) || d.repository_credentials.is_some()
        });
        if !missing || !wanted {
            return Ok(Ok(TaskSecretsResponse::default()));
        }
        let req = TaskSecretsRequest {
            task_arn: t.task_arn.clone(),
        };
        match self
            .client
            .call(&format!("{TARGET_PREFIX}.{GET_TASK_SECRETS}"), &req)
            .await
        {
            Ok(r) => Ok(Ok(r)),
            Err(ClientError::Api { err, .. }) if err.status < 500 => {
                Ok(Err(
                    if err.message.starts_with("ResourceInitializationError") {
                        err.message
                    } else {
                        format!("ResourceInitializationError: unable to pull secrets or registry auth: {}", err.message)
                    },
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A FARGATE task's execution role credentials, for its awslogs
    /// delivery (its containers never see them), fetched again well before
    /// they expire. ECS's EC2 launch type delivers with the instance
    /// role's: there, and for a task without an execution role or awslogs,
    /// the agent's own credentials sign (None). A task `starting` that
    /// cannot have them fails with the reason; a running one keeps what it
    /// has until the next pass.
    async fn execution_session(
        &self,
        t: &AssignedTask,
        defs: &[wharf_model::ecs::ContainerDefinition],
        starting: bool,
    ) -> Result<Result<(), String>, AgentError> {
        let awslogs = defs
            .iter()
            .any(|d| matches!(crate::awslogs::config(d), Ok(Some(_))));
        if !self.config.managed
            || !awslogs
            || wharf_core::taskdef::execution_role(&t.task_definition, &t.overrides).is_none()
        {
            return Ok(Ok(()));
        }
        let now = now_ms();
        let held = self
            .execution
            .lock()
            .expect("execution lock")
            .get(&t.task_arn)
            .map(|s| s.refresh_at > now);
        if held == Some(true) {
            return Ok(Ok(()));
        }
        let req = TaskCredentialsRequest {
            task_arn: t.task_arn.clone(),
            execution: true,
        };
        let got: Result<TaskCredentialsResponse, _> = self
            .client
            .call(&format!("{TARGET_PREFIX}.{GET_TASK_CREDENTIALS}"), &req)
            .await;
        match got {
            Ok(r) => {
                let fresh = crate::client::SessionCredentials {
                    creds: wharf_protocol::sigv4::Credentials {
                        access_key_id: r.access_key_id,
                        secret_access_key: r.secret_access_key,
                    },
                    token: r.session_token,
                };
                let refresh_at =
                    crate::credentials::refresh_at(now, r.expiration.saturating_sub(r.issued));
                let mut all = self.execution.lock().expect("execution lock");
                match all.get_mut(&t.task_arn) {
                    // In place: the shippers holding it sign with the new ones.
                    Some(s) => {
                        *s.creds.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                        s.refresh_at = refresh_at;
                    }
                    None => {
                        all.insert(
                            t.task_arn.clone(),
                            ExecutionSession {
                                creds: Arc::new(std::sync::RwLock::new(fresh)),
                                refresh_at,
                            },
                        );
                    }
                }
                Ok(Ok(()))
            }
            Err(ClientError::Api { err, .. }) if starting && err.status < 500 => Ok(Err(format!(
                "ResourceInitializationError: unable to get the execution role's credentials: {}",
                err.message
            ))),
            Err(e) if starting => Err(e.into()),
            Err(e) => {
                tracing::warn!(task = %t.task_arn, error = %e, "cannot refresh the execution role's credentials; keeping the current ones");
                Ok(Ok(()))
            }
        }
    }

    /// The client a container's awslogs delivery signs with: the task's
    /// execution role's session when it has one, else the agent's own; for
    /// the group's region.
    fn log_client(&self, t: &AssignedTask, cfg: &crate::awslogs::Config) -> ControlClient {
        let session = self
            .execution
            .lock()
            .expect("execution lock")
            .get(&t.task_arn)
            .map(|s| s.creds.clone());
        let client = match session {
            Some(s) => self.client.with_session(s),
            None => self.client.clone(),
        };
        cfg.client_for(&client, &t.task_arn)
    }

    /// The launch type of the tasks it runs.
    fn launch_type(&self) -> &'static str {
        if self.config.managed {
            "FARGATE"
        } else {
            "EC2"
        }
    }

    /// The cluster this agent's instance belongs to.
    fn cluster(&self) -> &str {
        if self.config.managed {
            MANAGED_CLUSTER
        } else {
            &self.config.cluster
        }
    }

    /// Whether a container is of this agent's kind: the EC2 agent's cluster's
    /// containers, or the managed agent's.
    fn of_my_kind(&self, c: &ContainerStatus) -> bool {
        let managed = c.labels.get(CAPACITY_LABEL).is_some_and(|v| v == "managed");
        if self.config.managed {
            managed
        } else {
            !managed && c.labels.get(CLUSTER_LABEL) == Some(&self.config.cluster)
        }
    }

    /// Sorts the host's containers of this agent's kind into its own (and
    /// those of gone instances, which it removes), and notes the other
    /// instances it saw for the next poll to ask about. A container without
    /// an owner label was made by a Wharf before owner labels, when one
    /// agent per cluster and host was the rule: it is adopted.
    fn mine(&self, listed: Vec<ContainerStatus>) -> Vec<ContainerStatus> {
        let mut owners = self.owners.lock().expect("owners lock");
        let mut others = HashSet::new();
        let mine = listed
            .into_iter()
            .filter(|c| self.of_my_kind(c))
            .filter(|c| match c.labels.get(INSTANCE_LABEL) {
                None => true,
                Some(owner) if owners.me.as_ref() == Some(owner) => true,
                Some(owner) => {
                    others.insert(owner.clone());
                    owners.gone.contains(owner)
                }
            })
            .collect();
        owners.gone.retain(|g| others.contains(g));
        owners.others = others;
        mine
    }

    /// Registers (or re-registers) this host; returns its container instance ARN.
    pub async fn register(&self) -> Result<String, AgentError> {
        tracing::debug!(cluster = %self.config.cluster, "registering");
        let info = self.runtime.info().await?;
        tracing::debug!(?info, "docker host");
        let arn_file = self
            .config
            .state_dir
            .join(format!("instance-{}.arn", self.cluster()));
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
            cluster: Some(self.cluster().to_string()),
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
            attributes: Some(
                [
                    attr("ecs.os-type", Some(&info.os_type)),
                    // As the ECS agent names them (Docker says aarch64).
                    attr(
                        "ecs.cpu-architecture",
                        Some(match info.architecture.as_str() {
                            "aarch64" => "arm64",
                            other => other,
                        }),
                    ),
                    attr("com.amazonaws.ecs.capability.docker-remote-api.1.41", None),
                    attr("ecs.capability.container-health-check", None),
                    attr("ecs.capability.container-ordering", None),
                    attr("ecs.capability.task-eni", None),
                    attr(
                        "com.amazonaws.ecs.capability.logging-driver.json-file",
                        None,
                    ),
                ]
                .into_iter()
                .chain(
                    self.config
                        .capacity_provider
                        .as_deref()
                        .map(|p| attr(wharf_core::capacity::INSTANCE_ATTRIBUTE, Some(p))),
                )
                .collect(),
            ),
            ..Default::default()
        };
        let target = if self.config.managed {
            format!("{TARGET_PREFIX}.{REGISTER_MANAGED}")
        } else {
            "AmazonEC2ContainerServiceV20141113.RegisterContainerInstance".to_string()
        };
        let resp: ecs::RegisterContainerInstanceResponse = self.client.call(&target, &req).await?;
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
        if self.config.policy != HostPolicy::default() {
            tracing::info!(policy = ?self.config.policy, cluster = %self.cluster(), "host policy");
        }
        let events = self.clone();
        tokio::spawn(async move { events.follow_events().await });
        let me = self.clone();
        tokio::spawn(crate::exec::follow(
            self.client.clone(),
            self.runtime.clone(),
            self.cluster().to_string(),
            move || me.owners.lock().expect("owners lock").me.clone(),
        ));
        let mut arn = None;
        let mut after = 0;
        loop {
            let instance = match &arn {
                Some(a) => a,
                None => match self.register().await {
                    Ok(a) => {
                        self.owners.lock().expect("owners lock").me = Some(a.clone());
                        arn.insert(a)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot register; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        continue;
                    }
                },
            };
            let poll = PollRequest {
                cluster: self.cluster().to_string(),
                container_instance_arn: instance.clone(),
                after_revision: after,
                wait_millis: 15_000,
                other_instances: {
                    let owners = self.owners.lock().expect("owners lock");
                    let mut others: Vec<String> = owners
                        .others
                        .iter()
                        .filter(|o| !owners.gone.contains(*o))
                        .cloned()
                        .collect();
                    others.sort();
                    others.truncate(MAX_OTHER_INSTANCES);
                    others
                },
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
                    if !r.gone_instances.is_empty() {
                        tracing::info!(instances = ?r.gone_instances, "removing the containers of gone container instances");
                        self.owners
                            .lock()
                            .expect("owners lock")
                            .gone
                            .extend(r.gone_instances);
                    }
                    match self.converge(&r.tasks).await {
                        Ok(()) => {}
                        Err(AgentError::Runtime(e)) if e.is_unavailable() => {
                            self.wait_for_docker(instance, &e).await;
                            after = 0;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "converge failed; will retry");
                            after = 0;
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
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

    /// Docker is gone: tell the control plane at once (the instance shows
    /// agentConnected=false and takes no new tasks; its tasks stay as they
    /// are in the store), then wait for Docker and resume. Containers that
    /// survived are re-adopted by the next pass.
    async fn wait_for_docker(&self, instance: &str, e: &crate::runtime::RuntimeError) {
        tracing::error!(error = %e, "Docker is unreachable; disconnecting until it returns");
        let bye = DisconnectRequest {
            cluster: self.cluster().to_string(),
            container_instance_arn: instance.to_string(),
            reason: format!("Docker unreachable: {e}"),
        };
        if let Err(e) = self
            .client
            .call::<_, Empty>(&format!("{TARGET_PREFIX}.{DISCONNECT}"), &bye)
            .await
        {
            tracing::warn!(error = %e, "could not report the disconnect");
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.runtime.info().await.is_ok() {
                tracing::info!("Docker is back; reconnecting");
                return;
            }
        }
    }

    /// Docker events wake the loop, so an exit shows within a poll
    /// round-trip. The end of the stream wakes it too: the next pass finds
    /// out whether Docker is gone.
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
            self.wake.notify_one();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// One pass: make Docker match `tasks`, and report each task's state.
    pub async fn converge(self: &Arc<Self>, tasks: &[AssignedTask]) -> Result<(), AgentError> {
        // Each task converges in its own background job, at most one per task
        // at a time: a slow stop (its stopTimeout) never holds back the poll
        // loop or another task's start. A finished job wakes the loop so the
        // next pass sees its result. Containers of tasks this instance no
        // longer has are orphans, removed the same way.
        //
        // A task's job slot is taken before Docker is listed: a job of the
        // task still running then could change its containers after the
        // list was read (create and start one, stop one), and a job given
        // that list would act on, and report, an outdated view. Once the
        // slot is ours, the task's previous job has ended and the list shows
        // all it did.
        let claimed: HashSet<String> = {
            let mut in_flight = self.in_flight.lock().expect("in-flight lock");
            tasks
                .iter()
                .filter(|t| in_flight.insert(t.task_arn.clone()))
                .map(|t| t.task_arn.clone())
                .collect()
        };
        let listed_at = std::time::Instant::now();
        let listed = match self.runtime.list_managed().await {
            Ok(listed) => listed,
            Err(e) => {
                self.in_flight
                    .lock()
                    .expect("in-flight lock")
                    .retain(|arn| !claimed.contains(arn));
                return Err(e.into());
            }
        };
        let mut by_task: HashMap<String, Vec<ContainerStatus>> = HashMap::new();
        for c in self.mine(listed) {
            by_task
                .entry(c.labels.get(TASK_ARN_LABEL).cloned().unwrap_or_default())
                .or_default()
                .push(c);
        }
        let assigned: HashSet<&str> = tasks.iter().map(|t| t.task_arn.as_str()).collect();
        // A stopped task's role credentials are no longer served.
        let live: HashSet<&str> = tasks
            .iter()
            .filter(|t| t.last_status != "STOPPED")
            .map(|t| t.task_arn.as_str())
            .collect();
        self.endpoint
            .retain(self.endpoint_owner, |arn| live.contains(arn));
        self.sent
            .lock()
            .expect("sent lock")
            .retain(|arn, _| assigned.contains(arn.as_str()));
        // A stopped task's last lines still ship with what it holds.
        self.execution
            .lock()
            .expect("execution lock")
            .retain(|arn, _| assigned.contains(arn.as_str()));
        for t in tasks {
            if let Some(containers) = by_task.get(&t.task_arn) {
                self.ship_logs(t, containers);
            }
        }
        // The task metadata endpoint serves each live task as this pass
        // sees it.
        let launch_type = self.launch_type();
        let views = tasks
            .iter()
            .filter(|t| t.last_status != "STOPPED")
            .filter_map(|t| {
                let containers = by_task.get(&t.task_arn)?;
                Some(crate::metadata::view(t, containers, launch_type))
            })
            .collect();
        self.endpoint
            .set_metadata(self.endpoint_owner, views, listed_at);
        let mut jobs = Vec::new();
        for t in tasks {
            // An assigned task's containers are never orphans, whether or
            // not its job runs in this pass.
            let existing = by_task.remove(&t.task_arn).unwrap_or_default();
            if claimed.contains(&t.task_arn) {
                jobs.push((
                    t.task_arn.clone(),
                    Job::Converge(Box::new(t.clone()), existing),
                ));
            }
        }
        for (arn, containers) in by_task.drain() {
            if self
                .in_flight
                .lock()
                .expect("in-flight lock")
                .insert(arn.clone())
            {
                jobs.push((arn, Job::RemoveOrphan(containers)));
            }
        }
        for (arn, job) in jobs {
            let agent = self.clone();
            tokio::spawn(async move {
                let acted = match agent.run_job(&arn, job).await {
                    Ok(acted) => acted,
                    Err(e) => {
                        tracing::warn!(task = %arn, error = %e, "task converge failed; will retry");
                        false
                    }
                };
                agent.in_flight.lock().expect("in-flight lock").remove(&arn);
                if acted {
                    agent.wake.notify_one();
                }
            });
        }
        Ok(())
    }

    /// Runs one job; true if it changed something the next pass should see
    /// (a report sent, containers removed). Docker changes wake the loop by
    /// their own events, so a job that found nothing to do stays quiet:
    /// otherwise every pass would wake the next, and an idle agent would spin.
    async fn run_job(&self, arn: &str, job: Job) -> Result<bool, AgentError> {
        match job {
            Job::Converge(t, existing) => {
                let Some(report) = self.converge_task(&t, existing).await? else {
                    return Ok(false);
                };
                // The same state twice is not news.
                if self.sent.lock().expect("sent lock").get(arn) == Some(&report) {
                    return Ok(false);
                }
                let _: Empty = self
                    .client
                    .call(&format!("{TARGET_PREFIX}.{REPORT_TASK_STATE}"), &report)
                    .await?;
                self.sent
                    .lock()
                    .expect("sent lock")
                    .insert(arn.to_string(), report);
            }
            Job::RemoveOrphan(containers) => {
                let task_id = arn.rsplit('/').next().unwrap_or_default();
                let mut volumes = HashSet::new();
                for c in &containers {
                    tracing::info!(task = %arn, container = %c.name, "removing orphaned container");
                    self.runtime
                        .stop_container(&c.id, Duration::from_secs(10))
                        .await?;
                    self.runtime.remove_container(&c.id).await?;
                    volumes.extend(
                        c.volumes
                            .iter()
                            .filter(|v| !task_id.is_empty() && v.ends_with(&format!("-{task_id}"))),
                    );
                }
                for v in volumes {
                    self.runtime.remove_volume(v).await?;
                }
            }
        }
        Ok(true)
    }

    /// Starts an awslogs shipper for every started container of `t` that
    /// uses the driver and has none (or has not finished).
    fn ship_logs(self: &Arc<Self>, t: &AssignedTask, containers: &[ContainerStatus]) {
        let defs = wharf_core::taskdef::effective_containers(&t.task_definition, &t.overrides);
        let task_id = t
            .task_arn
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        for c in containers.iter().filter(|c| c.started_at.is_some()) {
            let name = c.name_label();
            let Some(Ok(Some(cfg))) = defs
                .iter()
                .find(|d| d.name.as_deref() == Some(name.as_str()))
                .map(crate::awslogs::config)
            else {
                continue;
            };
            if self.shipped.lock().expect("shipped lock").contains(&c.id)
                || !self
                    .shipping
                    .lock()
                    .expect("shipping lock")
                    .insert(c.id.clone())
            {
                continue;
            }
            let agent = self.clone();
            let id = c.id.clone();
            let stream = cfg.stream(&name, &task_id, &id);
            let client = self.log_client(t, &cfg);
            tokio::spawn(async move {
                // Idempotent: an adopted container's stream may be new to the service.
                let _ = crate::awslogs::prepare(&client, &cfg, &stream).await;
                let stats = Arc::new(crate::awslogs::Stats::default());
                crate::awslogs::ship(
                    client,
                    agent.runtime.clone(),
                    id.clone(),
                    cfg,
                    stream,
                    crate::awslogs::checkpoint_path(&agent.config.state_dir, &id),
                    stats.clone(),
                )
                .await;
                // The log stream ended: the container stopped (or Docker went
                // away, in which case a later pass starts again).
                let stopped = match agent.runtime.inspect_container(&id).await {
                    Ok(Some(s)) => s.state != ContainerState::Running,
                    Ok(None) => true,
                    Err(_) => false,
                };
                if stopped {
                    agent
                        .shipped
                        .lock()
                        .expect("shipped lock")
                        .insert(id.clone());
                }
                agent.shipping.lock().expect("shipping lock").remove(&id);
            });
        }
    }

    /// Makes a present image available as `ECS_IMAGE_PULL_BEHAVIOR` says.
    /// Returns whether a pull was attempted, or why the image is unusable.
    async fn ensure_image(
        &self,
        image: &str,
        auth: Option<&crate::runtime::RegistryAuth>,
    ) -> Result<bool, String> {
        let present = self.runtime.image_present(image).await.unwrap_or(false);
        let pulled_before = self.pulled.lock().expect("pulled lock").contains(image);
        let skip = match self.config.pull_behavior {
            PullBehavior::PreferCached => present,
            PullBehavior::Once => present && pulled_before,
            PullBehavior::Always | PullBehavior::Default => false,
        };
        if skip {
            return Ok(false);
        }
        match self.runtime.pull_image(image, auth).await {
            Ok(()) => {
                self.pulled
                    .lock()
                    .expect("pulled lock")
                    .insert(image.to_string());
                Ok(true)
            }
            // The default behaviour falls back to a cached image, so a host
            // without a registry still runs what it has.
            Err(e) if present && self.config.pull_behavior == PullBehavior::Default => {
                tracing::warn!(%image, error = %e, "pull failed; using the cached image");
                Ok(true)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    async fn converge_task(
        &self,
        t: &AssignedTask,
        mut existing: Vec<ContainerStatus>,
    ) -> Result<Option<TaskStateReport>, AgentError> {
        let mut defs = wharf_core::taskdef::effective_containers(&t.task_definition, &t.overrides);
        if let Some(grace) = t.stop_timeout_seconds {
            for d in &mut defs {
                d.stop_timeout = Some(i32::try_from(grace).unwrap_or(i32::MAX));
            }
        }
        if t.last_status == "STOPPED" {
            // Level-triggered: anything of a STOPPED task still running goes.
            if existing.iter().any(|c| c.state == ContainerState::Running) {
                self.stop_containers(&defs, &existing).await?;
            }
            return Ok(None);
        }
        // The task's own cluster (for managed capacity, any cluster's).
        let task_cluster = wharf_core::arn::task_id(&t.task_arn)
            .ok()
            .and_then(|(c, _)| c)
            .unwrap_or_else(|| self.config.cluster.clone());
        let mut report = TaskStateReport::new(&task_cluster, &t.task_arn, "PENDING");
        let essential = |name: &str| {
            defs.iter()
                .any(|d| d.name.as_deref() == Some(name) && d.essential != Some(false))
        };
        // A container with a restart policy that exited after running its
        // restartAttemptPeriod is started again in place, as the ECS agent
        // does: the task goes on, essential container or not.
        if t.desired_status != "STOPPED" {
            for c in existing.iter_mut() {
                let def = defs
                    .iter()
                    .find(|d| d.name.as_deref() == Some(c.name_label().as_str()));
                if def.is_some_and(|d| restartable(d, c)) {
                    tracing::info!(task = %t.task_arn, container = %c.name, exit_code = ?c.exit_code, "restarting the container, as its restart policy says");
                    match self.runtime.start_container(&c.id).await {
                        Ok(()) => {
                            self.shipped.lock().expect("shipped lock").remove(&c.id);
                            c.state = ContainerState::Running;
                        }
                        Err(e) if e.is_unavailable() => return Err(e.into()),
                        // It stays exited, and counts as such below.
                        Err(e) => {
                            tracing::warn!(task = %t.task_arn, container = %c.name, error = %e, "the restart failed")
                        }
                    }
                }
            }
        }
        // An awsvpc task whose pause container died has lost its network:
        // as good as an essential exit.
        let essential_exited = existing.iter().any(|c| {
            let name = c.name_label();
            c.state != ContainerState::Running
                && (essential(&name) || name == crate::pause::CONTAINER_NAME)
                && c.started_at.is_some()
        });
        if t.desired_status == "STOPPED" || essential_exited {
            return self.stop_task(&defs, existing, report).await.map(Some);
        }
        // Desired RUNNING: create and start what is missing, in dependency
        // order; a container whose dependencies aren't met yet waits for a
        // later pass (a Docker event or the poll timeout brings one).
        let me = self.owners.lock().expect("owners lock").me.clone();
        let names = TaskNames::new(
            t,
            &task_cluster,
            self.config.managed,
            me.as_deref().unwrap_or_default(),
        );
        let order = wharf_core::taskdef::start_order(&defs).unwrap_or_default();
        let missing = order
            .iter()
            .any(|n| !existing.iter().any(|c| &c.name_label() == n));
        let (sources, volumes) = task_volumes(&names);
        if missing {
            // The host's policy, before anything of the task is created.
            if let Err(refused) = self.config.policy.check(&t.task_definition, &defs) {
                tracing::warn!(task = %t.task_arn, reason = %refused, "host policy refuses the task");
                report.reason = Some(format!("CannotCreateContainerError: {refused}"));
                return self.stop_task(&defs, existing, report).await.map(Some);
            }
            for v in &volumes {
                self.runtime
                    .ensure_volume(
                        &v.docker_name,
                        v.driver.as_deref(),
                        &v.driver_opts,
                        &v.labels,
                    )
                    .await?;
            }
        }
        // The task role's credentials, before any container that would
        // look for them.
        let credentials_id = match self.task_credentials(t, missing).await? {
            Ok(id) => id,
            Err(reason) => {
                tracing::warn!(task = %t.task_arn, %reason, "the task cannot start");
                report.reason = Some(reason);
                return self.stop_task(&defs, existing, report).await.map(Some);
            }
        };
        // A FARGATE task's execution role, which delivers its logs.
        if let Err(reason) = self.execution_session(t, &defs, missing).await? {
            tracing::warn!(task = %t.task_arn, %reason, "the task cannot start");
            report.reason = Some(reason);
            return self.stop_task(&defs, existing, report).await.map(Some);
        }
        // Its secrets, before any container is created.
        let secrets = match self.task_secrets(t, &defs, missing).await? {
            Ok(s) => s,
            Err(reason) => {
                tracing::warn!(task = %t.task_arn, %reason, "the task cannot start");
                report.reason = Some(reason);
                return self.stop_task(&defs, existing, report).await.map(Some);
            }
        };
        // awsvpc: the task's network namespace first, owned by its pause
        // container on the shared awsvpc network.
        let is_pause = |c: &ContainerStatus| c.name_label() == crate::pause::CONTAINER_NAME;
        if names.awsvpc() && missing && !existing.iter().any(is_pause) {
            let arch = self.runtime.info().await?.architecture;
            let made = async {
                self.runtime.ensure_network(AWSVPC_NETWORK).await?;
                crate::pause::ensure_image(self.runtime.as_ref(), &arch).await?;
                let id = self.runtime.create_container(&names.pause_spec()).await?;
                self.runtime.start_container(&id).await?;
                self.runtime.inspect_container(&id).await
            }
            .await;
            match made {
                Ok(Some(s)) => existing.push(s),
                Ok(None) => {}
                Err(e) if e.is_unavailable() => return Err(e.into()),
                Err(e) => {
                    report.reason = Some(format!("CannotStartContainerError: task network: {e}"));
                    return self.stop_task(&defs, existing, report).await.map(Some);
                }
            }
        }
        let pause = existing.iter().find(|c| is_pause(c)).cloned();
        report.private_ipv4 = pause.as_ref().and_then(|p| p.ip.clone());
        let mut waiting = false;
        for name in &order {
            if existing.iter().any(|c| &c.name_label() == name) {
                continue;
            }
            let def = defs
                .iter()
                .find(|d| d.name.as_ref() == Some(name))
                .expect("ordered from defs");
            match deps::gate(def, &existing, SystemTime::now()) {
                Gate::Ready => {}
                Gate::Wait => {
                    waiting = true;
                    continue;
                }
                Gate::Fail(why) => {
                    report.reason = Some(format!("CannotStartContainerError: {why}"));
                    return self.stop_task(&defs, existing, report).await.map(Some);
                }
            }
            let image = def.image.clone().unwrap_or_default();
            let pull_started = now_ms();
            let auth = secrets
                .registry_credentials
                .iter()
                .find(|r| &r.container_name == name)
                .map(|r| crate::runtime::RegistryAuth {
                    username: r.username.clone(),
                    password: r.password.clone(),
                });
            match self.ensure_image(&image, auth.as_ref()).await {
                Ok(false) => {}
                Ok(true) => {
                    report.pull_started_at.get_or_insert(pull_started);
                    report.pull_stopped_at = Some(now_ms());
                }
                Err(e) => {
                    report.pull_started_at.get_or_insert(pull_started);
                    report.pull_stopped_at = Some(now_ms());
                    report.reason = Some(format!("CannotPullContainerError: {e}"));
                    return self.stop_task(&defs, existing, report).await.map(Some);
                }
            }
            let mut spec =
                container_spec(&names, def, &sources, pause.as_ref().map(|p| p.id.as_str()));
            for s in secrets.secrets.iter().filter(|s| &s.container_name == name) {
                spec.set_env(&s.name, s.value.clone());
            }
            if let Some(base) = self.endpoint.base_url() {
                let token = crate::metadata::new_token();
                spec.set_env(crate::metadata::URI_ENV, format!("{base}/v4/{token}"));
                spec.labels
                    .insert(crate::metadata::TOKEN_LABEL.to_string(), token);
            }
            if let Some(id) = &credentials_id {
                let path = format!("/v2/credentials/{id}");
                match self.endpoint.base_url() {
                    // Where the SDKs look: the path is enough.
                    Some(crate::credentials::SDK_BASE) | None => {
                        spec.set_env(crate::credentials::RELATIVE_URI_ENV, path)
                    }
                    // Elsewhere: the whole URI (a relative one the
                    // definition gives would win over it, so it goes).
                    Some(base) => {
                        spec.env
                            .retain(|(k, _)| k != crate::credentials::RELATIVE_URI_ENV);
                        spec.set_env(crate::credentials::FULL_URI_ENV, format!("{base}{path}"));
                    }
                }
            }
            let id = self.runtime.create_container(&spec).await?;
            // Its metadata is served before it starts.
            if let Some(created) = self.runtime.inspect_container(&id).await? {
                let mut seen = existing.clone();
                seen.push(created);
                self.endpoint.set_task_metadata(
                    self.endpoint_owner,
                    crate::metadata::view(t, &seen, self.launch_type()),
                );
            }
            // awslogs: the log stream must exist before the container starts.
            let logs = match crate::awslogs::config(def) {
                Ok(Some(cfg)) => {
                    let stream = cfg.stream(name, names.task_id, &id);
                    let client = self.log_client(t, &cfg);
                    crate::awslogs::prepare(&client, &cfg, &stream).await
                }
                Ok(None) => Ok(()),
                Err(e) => Err(format!("CannotStartContainerError: {e}")),
            };
            if let Err(reason) = logs {
                report.reason = Some(reason);
                if let Some(s) = self.runtime.inspect_container(&id).await? {
                    existing.push(s);
                }
                return self.stop_task(&defs, existing, report).await.map(Some);
            }
            if let Err(e) = self.runtime.start_container(&id).await {
                report.reason = Some(format!("CannotStartContainerError: {e}"));
                if let Some(s) = self.runtime.inspect_container(&id).await? {
                    existing.push(s);
                }
                return self.stop_task(&defs, existing, report).await.map(Some);
            }
            if let Some(s) = self.runtime.inspect_container(&id).await? {
                existing.push(s);
            }
        }
        // RUNNING once every container exists and every essential one runs;
        // a non-essential container may already have finished its job.
        let all_created = defs.iter().all(|d| {
            existing
                .iter()
                .any(|c| Some(c.name_label().as_str()) == d.name.as_deref())
        });
        let essentials_running = existing
            .iter()
            .filter(|c| essential(&c.name_label()))
            .all(|c| c.state == ContainerState::Running)
            && pause
                .as_ref()
                .is_none_or(|p| p.state == ContainerState::Running);
        report.status = if !waiting && all_created && essentials_running {
            "RUNNING".into()
        } else {
            "PENDING".into()
        };
        report.containers = existing
            .iter()
            .filter(|c| !is_pause(c))
            .map(container_report)
            .collect();
        Ok(Some(report))
    }

    /// Stops the task's containers (dependents first) and reports it
    /// STOPPED, with `report.reason` if it failed to start. Only once none
    /// of them runs, each with the exit code it stopped with.
    async fn stop_task(
        &self,
        defs: &[ecs::ContainerDefinition],
        existing: Vec<ContainerStatus>,
        mut report: TaskStateReport,
    ) -> Result<TaskStateReport, AgentError> {
        let exits = self.stop_containers(defs, &existing).await?;
        let mut final_states = vec![];
        for c in &existing {
            let seen = self.runtime.inspect_container(&c.id).await?;
            let exit = exits.get(&c.id).copied().flatten();
            let state = match seen {
                Some(s) if s.state == ContainerState::Running => {
                    return Err(crate::runtime::RuntimeError::Other(format!(
                        "container {} still runs after it was stopped",
                        c.name
                    ))
                    .into());
                }
                Some(mut s) => {
                    s.exit_code = s.exit_code.or(exit);
                    s
                }
                // Removed meanwhile (by whoever): what it was, stopped, with
                // the code its stop saw.
                None => {
                    let mut s = c.clone();
                    if s.state == ContainerState::Running {
                        s.state = ContainerState::Exited;
                        s.exit_code = exit;
                        s.ports.clear();
                    }
                    s
                }
            };
            final_states.push(state);
        }
        report.status = "STOPPED".into();
        report.execution_stopped_at = Some(now_ms());
        report.containers = final_states
            .iter()
            .filter(|c| c.name_label() != crate::pause::CONTAINER_NAME)
            .map(container_report)
            .collect();
        Ok(report)
    }

    /// Stops running containers in waves, dependents before their
    /// dependencies, each wave concurrently and each container with its
    /// own stopTimeout (SIGTERM, then SIGKILL). Returns the exit code each
    /// stopped with, by container id.
    async fn stop_containers(
        &self,
        defs: &[ecs::ContainerDefinition],
        existing: &[ContainerStatus],
    ) -> Result<HashMap<String, Option<i64>>, AgentError> {
        let running: Vec<&ContainerStatus> = existing
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .collect();
        let timeout = |name: &str| {
            // The pause program ignores SIGTERM; it holds nothing to flush.
            if name == crate::pause::CONTAINER_NAME {
                return Duration::ZERO;
            }
            let secs = defs
                .iter()
                .find(|d| d.name.as_deref() == Some(name))
                .and_then(|d| d.stop_timeout)
                .unwrap_or(30);
            Duration::from_secs(secs.max(0) as u64)
        };
        let mut waves = deps::stop_waves(defs);
        // Containers not in the definition (none expected) go last.
        waves.push(vec![]);
        let last = waves.len() - 1;
        let mut exits = HashMap::new();
        for (i, wave) in waves.iter().enumerate() {
            let stops = running
                .iter()
                .filter(|c| {
                    let n = c.name_label();
                    wave.contains(&n)
                        || (i == last
                            && !defs.iter().any(|d| d.name.as_deref() == Some(n.as_str())))
                })
                .map(|c| async move {
                    let exit = self
                        .runtime
                        .stop_container(&c.id, timeout(&c.name_label()))
                        .await?;
                    Ok::<_, AgentError>((c.id.clone(), exit))
                });
            for r in futures::future::join_all(stops).await {
                let (id, exit) = r?;
                exits.insert(id, exit);
            }
        }
        Ok(exits)
    }
}

enum Job {
    Converge(Box<AssignedTask>, Vec<ContainerStatus>),
    RemoveOrphan(Vec<ContainerStatus>),
}

pub(crate) trait NameLabel {
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

fn container_report(c: &ContainerStatus) -> ContainerReport {
    let status = if c.state == ContainerState::Running {
        "RUNNING"
    } else {
        "STOPPED"
    };
    let mut seen = HashSet::new();
    ContainerReport {
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
        ..ContainerReport::new(&c.name_label(), &c.id, status)
    }
}
