//! Container-runtime layer of the host agent.
//!
//! [`Runtime`] is the narrow interface the agent loop uses to talk to the
//! container engine. [`DockerRuntime`] implements it against a real Docker
//! daemon (via bollard); [`FakeRuntime`] is a deterministic in-memory
//! implementation for unit tests.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use futures::stream::BoxStream;

mod docker;
mod fake;

pub use docker::DockerRuntime;
pub use fake::{FakeCall, FakeOp, FakeRuntime};

/// Label carried by every container the agent manages. Its value is the task ARN.
pub const TASK_ARN_LABEL: &str = "com.amazonaws.ecs.task-arn";

/// A registry's user name and password for one pull.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The interface to the container engine.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Host capacity and engine version.
    async fn info(&self) -> Result<HostInfo, RuntimeError>;

    /// Whether the image reference is present locally.
    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError>;

    /// Pull an image (always contacts the registry, even if present locally),
    /// signing in with `auth` if given (a container's repositoryCredentials).
    /// On failure the error is [`RuntimeError::ImagePull`] with the daemon's message.
    async fn pull_image(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<(), RuntimeError>;

    /// Create the named volume if it does not exist (idempotent).
    async fn ensure_volume(
        &self,
        name: &str,
        driver: Option<&str>,
        driver_opts: &HashMap<String, String>,
        labels: &HashMap<String, String>,
    ) -> Result<(), RuntimeError>;

    /// Create a user-defined bridge network if it does not exist (idempotent).
    async fn ensure_network(&self, name: &str) -> Result<(), RuntimeError>;

    /// Create image `reference` from a root filesystem tarball (`docker
    /// import`), with `cmd` as its command.
    async fn import_image(
        &self,
        reference: &str,
        rootfs_tar: Vec<u8>,
        cmd: &[&str],
    ) -> Result<(), RuntimeError>;

    /// Remove a named volume; absent is Ok.
    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError>;

    /// Create (but do not start) a container. Returns the container id.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, RuntimeError>;

    /// Start a created container. Starting a running container is Ok.
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;

    /// SIGTERM (or the image's StopSignal), then SIGKILL after `timeout`;
    /// returns once the container no longer runs, with the exit code it
    /// stopped with (an already stopped container: its last one), read so
    /// that a removal right after the exit (`docker rm`, another agent)
    /// cannot lose it. Absent is `Ok(None)`, as is one removed before its
    /// exit code could be read.
    async fn stop_container(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<i64>, RuntimeError>;

    /// Force-remove the container and its anonymous volumes; absent is Ok.
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;

    /// Inspect a container by id or name; `None` if it does not exist.
    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerStatus>, RuntimeError>;

    /// All containers (running or not) carrying the label [`TASK_ARN_LABEL`].
    async fn list_managed(&self) -> Result<Vec<ContainerStatus>, RuntimeError>;

    /// Stream of container events (start, die, health_status, oom, destroy) for
    /// managed containers. Events that happen after this call returns are
    /// delivered even if the stream is polled later. The stream ends after an
    /// error or a disconnect; the caller re-subscribes and re-lists.
    fn events(&self) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>>;

    /// The container's output, one line at a time with the engine's
    /// timestamp, from `since_nanos` (Unix time) on, following while the
    /// container runs; the stream ends when it has stopped and all is read.
    fn logs(&self, id: &str, since_nanos: i64)
        -> BoxStream<'static, Result<LogLine, RuntimeError>>;

    /// Runs `command` in running container `id` (`docker exec`) with its
    /// stdin, stdout and stderr attached, on a TTY of `tty` (columns,
    /// rows) or without one.
    async fn exec(
        &self,
        id: &str,
        command: &[String],
        tty: Option<(u16, u16)>,
    ) -> Result<Exec, RuntimeError>;

    /// Resizes the TTY of exec `exec_id`.
    async fn resize_exec(&self, exec_id: &str, cols: u16, rows: u16) -> Result<(), RuntimeError>;

    /// The exit code of exec `exec_id` once it has ended (`None` while it runs).
    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, RuntimeError>;

    /// One sample of Docker's stats for the container, in the Engine API's
    /// JSON (what the task metadata endpoint's `/stats` answers); `None`
    /// if there is no such container.
    async fn stats(&self, id: &str) -> Result<Option<serde_json::Value>, RuntimeError>;
}

/// A command running in a container (see [`Runtime::exec`]).
pub struct Exec {
    pub id: String,
    /// Its output until it ends (with a TTY, all of it is `Stdout`).
    pub output: BoxStream<'static, Result<ExecOutput, RuntimeError>>,
    /// Its stdin; shutting it down closes the command's stdin.
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutput {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the engine received it, in nanoseconds since the Unix epoch.
    pub at_nanos: i64,
    pub stderr: bool,
    /// Without the trailing newline.
    pub text: String,
}

/// Host capacity and engine version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub cpus: u32,
    pub memory_bytes: u64,
    /// e.g. "linux"
    pub os_type: String,
    /// e.g. "x86_64"
    pub architecture: String,
    /// Docker server version, e.g. "20.10.24+dfsg1".
    pub server_version: String,
    /// Server's API version, e.g. "1.41".
    pub api_version: String,
}

/// Container network mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum NetworkMode {
    #[default]
    Bridge,
    Host,
    None,
    /// Share another container's network namespace (`container:<id-or-name>`).
    Container(String),
    /// A user-defined Docker network.
    Named(String),
}

impl NetworkMode {
    /// The value for Docker's `HostConfig.NetworkMode`.
    pub fn as_docker(&self) -> String {
        match self {
            NetworkMode::Bridge => "bridge".into(),
            NetworkMode::Host => "host".into(),
            NetworkMode::None => "none".into(),
            NetworkMode::Container(c) => format!("container:{c}"),
            NetworkMode::Named(n) => n.clone(),
        }
    }
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Protocol {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(RuntimeError::Other(format!(
                "unsupported protocol {other:?}"
            ))),
        }
    }
}

/// A requested port publication.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PortBinding {
    pub container_port: u16,
    /// 0 = let Docker choose an ephemeral host port.
    pub host_port: u16,
    pub protocol: Protocol,
    /// Host address to bind; `None` = all addresses.
    pub host_ip: Option<String>,
}

/// An actual port publication reported by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BoundPort {
    pub container_port: u16,
    pub host_port: u16,
    pub protocol: Protocol,
    /// e.g. "0.0.0.0" or "::" (Docker may report one entry per address family).
    pub host_ip: Option<String>,
}

/// Source of a mount.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MountSource {
    /// Bind-mount a host path.
    HostPath(String),
    /// A named Docker volume.
    Volume(String),
}

/// A bind mount or named volume mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mount {
    pub source: MountSource,
    pub container_path: String,
    pub read_only: bool,
}

impl Mount {
    /// Docker `Binds` entry: `source:target[:ro]`.
    pub fn as_bind(&self) -> String {
        let src = match &self.source {
            MountSource::HostPath(p) | MountSource::Volume(p) => p.as_str(),
        };
        if self.read_only {
            format!("{src}:{}:ro", self.container_path)
        } else {
            format!("{src}:{}", self.container_path)
        }
    }
}

/// Container health check (ECS `healthCheck`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    /// Docker test array as given by ECS: `["CMD-SHELL", "..."]` or `["CMD", ...]`.
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    /// Zero = no start period.
    pub start_period: Duration,
}

impl HealthCheck {
    /// A health check with the ECS defaults (interval 30 s, timeout 5 s,
    /// 3 retries, no start period).
    pub fn new(command: Vec<String>) -> Self {
        HealthCheck {
            command,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            retries: 3,
            start_period: Duration::ZERO,
        }
    }
}

/// Everything needed to create a container. Names are chosen by the caller.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerSpec {
    /// Docker container name.
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// ECS cpu units -> Docker CpuShares (raised to the minimum of 2 if set).
    pub cpu_shares: Option<i64>,
    /// Hard memory limit.
    pub memory_bytes: Option<i64>,
    /// Soft memory limit.
    pub memory_reservation_bytes: Option<i64>,
    pub network_mode: NetworkMode,
    pub port_bindings: Vec<PortBinding>,
    pub labels: HashMap<String, String>,
    pub binds: Vec<Mount>,
    /// `"containerName:alias"` (bridge mode only).
    pub links: Vec<String>,
    /// `"containerName[:ro]"`: mount every volume of that container.
    pub volumes_from: Vec<String>,
    pub health_check: Option<HealthCheck>,
    pub stop_timeout: Option<Duration>,
    pub hostname: Option<String>,
    /// `"host:ip"` entries for /etc/hosts.
    pub extra_hosts: Vec<String>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    /// The definition's `linuxParameters`, `ulimits`, DNS, security options,
    /// sysctls, TTY and log driver, as Docker takes them.
    pub host: HostSettings,
}

impl ContainerSpec {
    /// Sets `key` in the environment, instead of any value the definition
    /// gave it (Docker keeps both, and a reader of the first would take the
    /// definition's).
    pub fn set_env(&mut self, key: &str, value: String) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value));
    }
}

/// The container's settings that Docker applies as they are given.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostSettings {
    /// (name, soft, hard)
    pub ulimits: Vec<(String, i64, i64)>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Run an init process (tini) as PID 1.
    pub init: bool,
    pub shm_size_bytes: Option<i64>,
    /// Mount path -> tmpfs options (`size=…` and the mount options).
    pub tmpfs: Vec<(String, String)>,
    pub devices: Vec<DeviceSpec>,
    /// Memory plus swap, as Docker's `--memory-swap` (`memory` == no swap).
    pub memory_swap_bytes: Option<i64>,
    pub swappiness: Option<i64>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub security_opt: Vec<String>,
    pub sysctls: Vec<(String, String)>,
    pub open_stdin: bool,
    pub tty: bool,
    pub network_disabled: bool,
    /// A Docker log driver and its options; `None` is the daemon's default.
    pub log_driver: Option<(String, Vec<(String, String)>)>,
    /// `host`, or `container:<id>` to share another container's namespace.
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceSpec {
    pub host_path: String,
    pub container_path: String,
    /// Docker's cgroup permissions, e.g. `rwm`.
    pub permissions: String,
}

/// Coarse container state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Dead,
    /// paused, restarting, removing, ... (the engine's raw status string)
    Other(String),
}

/// Health check status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    /// Parse Docker's health status string ("starting", "healthy", "unhealthy").
    pub fn parse(s: &str) -> Option<Health> {
        match s.trim() {
            "starting" => Some(Health::Starting),
            "healthy" => Some(Health::Healthy),
            "unhealthy" => Some(Health::Unhealthy),
            _ => None,
        }
    }
}

/// Observed state of a container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStatus {
    pub id: String,
    /// Container name without Docker's leading '/'.
    pub name: String,
    /// Container labels. Docker merges the image's labels in (container labels win).
    pub labels: HashMap<String, String>,
    /// The image reference the container was created from.
    pub image: String,
    pub state: ContainerState,
    /// Set once the container has exited (or failed to start).
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub error: Option<String>,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    /// `None` if the container has no health check.
    pub health: Option<Health>,
    /// Published ports (only while running).
    pub ports: Vec<BoundPort>,
    /// Names of the Docker volumes mounted into the container.
    pub volumes: Vec<String>,
    /// The container's address on a user-defined network, if it has one.
    pub ip: Option<String>,
    /// The image's ID (`sha256:…`) and when the container was created, as
    /// the task metadata endpoint reports them.
    pub image_id: Option<String>,
    pub created_at: Option<SystemTime>,
}

impl ContainerStatus {
    /// The task ARN label, if any.
    pub fn task_arn(&self) -> Option<&str> {
        self.labels.get(TASK_ARN_LABEL).map(String::as_str)
    }
}

/// A container lifecycle event.
///
/// `labels` are the container's labels as carried in the event's
/// `Actor.Attributes` (with Docker's own `image`, `name` and `exitCode`
/// attributes removed).
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEvent {
    Started {
        id: String,
        labels: HashMap<String, String>,
    },
    Died {
        id: String,
        labels: HashMap<String, String>,
        exit_code: Option<i64>,
    },
    Health {
        id: String,
        labels: HashMap<String, String>,
        health: Health,
    },
    Oom {
        id: String,
        labels: HashMap<String, String>,
    },
    Destroyed {
        id: String,
        labels: HashMap<String, String>,
    },
}

impl RuntimeEvent {
    /// The container id the event is about.
    pub fn id(&self) -> &str {
        match self {
            RuntimeEvent::Started { id, .. }
            | RuntimeEvent::Died { id, .. }
            | RuntimeEvent::Health { id, .. }
            | RuntimeEvent::Oom { id, .. }
            | RuntimeEvent::Destroyed { id, .. } => id,
        }
    }

    /// The container's labels.
    pub fn labels(&self) -> &HashMap<String, String> {
        match self {
            RuntimeEvent::Started { labels, .. }
            | RuntimeEvent::Died { labels, .. }
            | RuntimeEvent::Health { labels, .. }
            | RuntimeEvent::Oom { labels, .. }
            | RuntimeEvent::Destroyed { labels, .. } => labels,
        }
    }
}

/// Errors from the container runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The daemon is unreachable.
    #[error("container runtime unavailable: {0}")]
    Unavailable(String),
    /// Pulling an image failed (message from the daemon).
    #[error("image pull failed: {0}")]
    ImagePull(String),
    /// No such container / image / volume.
    #[error("not found: {0}")]
    NotFound(String),
    /// Name already in use, or an operation conflicting with the current state.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("container runtime error: {0}")]
    Other(String),
}

impl RuntimeError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, RuntimeError::Unavailable(_))
    }
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::NotFound(_))
    }
}
