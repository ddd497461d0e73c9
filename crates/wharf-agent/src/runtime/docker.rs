//! [`Runtime`] implementation backed by a real Docker daemon (bollard).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::container::{
    Config, CreateContainerOptions, ListContainersOptions, LogOutput, LogsOptions,
    RemoveContainerOptions, StartContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bollard::errors::Error as BollardError;
use bollard::image::CreateImageOptions;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, DeviceMapping, EventMessage, HealthConfig,
    HealthStatusEnum, HostConfig, HostConfigLogConfig, MountPointTypeEnum,
    PortBinding as DockerPortBinding, ResourcesUlimits,
};
use bollard::system::EventsOptions;
use bollard::volume::CreateVolumeOptions;
use bollard::{Docker, API_DEFAULT_VERSION};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};

use super::{
    BoundPort, ContainerSpec, ContainerState, ContainerStatus, Exec, ExecOutput, Health, HostInfo,
    HostSettings, LogLine, Protocol, RegistryAuth, Runtime, RuntimeError, RuntimeEvent,
    TASK_ARN_LABEL,
};

/// Default socket when `DOCKER_HOST` is unset.
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Per-request timeout (time to response headers; streams are not limited).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// How long `connect` waits for the daemon to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Minimum Docker CpuShares (as enforced by the ECS agent).
const MIN_CPU_SHARES: i64 = 2;

/// A [`Runtime`] talking to the local Docker daemon.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    endpoint: String,
    /// Held while a network is made: Docker (since API 1.44) no longer
    /// refuses a second network of the same name, so concurrent task
    /// starts would each create one and every later attach by name fails
    /// as ambiguous.
    network_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl DockerRuntime {
    /// Connect to the daemon at `DOCKER_HOST` (unix socket path, `unix://…`
    /// or plain-HTTP `tcp://…`), defaulting to `/var/run/docker.sock`;
    /// negotiate the API version and ping.
    pub async fn connect() -> Result<Self, RuntimeError> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| format!("unix://{DEFAULT_SOCKET}"));
        Self::connect_to(&host).await
    }

    /// Connect to an explicit endpoint: `unix:///path`, `/path` or `tcp://host:port`.
    pub async fn connect_to(endpoint: &str) -> Result<Self, RuntimeError> {
        let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
            Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else if endpoint.starts_with('/') {
            Docker::connect_with_unix(endpoint, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
            Docker::connect_with_http(endpoint, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else {
            return Err(RuntimeError::Unavailable(format!(
                "unsupported DOCKER_HOST {endpoint:?}: expected a unix socket (unix:///path) or tcp://host:port"
            )));
        }
        .map_err(|e| unavailable(endpoint, &e))?;

        let docker = match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return Err(unavailable(endpoint, &e)),
            Err(_) => {
                return Err(RuntimeError::Unavailable(format!(
                    "cannot connect to the Docker daemon at {endpoint}: no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unavailable(endpoint, &e)),
            Err(_) => {
                return Err(RuntimeError::Unavailable(format!(
                    "cannot connect to the Docker daemon at {endpoint}: ping timed out"
                )))
            }
        }
        tracing::debug!(endpoint, api_version = %docker.client_version(), "connected to docker");
        Ok(DockerRuntime {
            docker,
            endpoint: endpoint.to_string(),
            network_lock: Default::default(),
        })
    }

    /// Wrap an already-configured bollard client (no negotiation or ping).
    pub fn from_client(docker: Docker) -> Self {
        DockerRuntime {
            docker,
            endpoint: String::from("(custom)"),
            network_lock: Default::default(),
        }
    }

    /// The underlying bollard client.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Another process (a second agent on this daemon) may have created a
    /// network of the same name at the same moment: every creator keeps the
    /// oldest (ties by ID, so all agree) and removes the others, which no
    /// container can have joined while the name was ambiguous.
    async fn one_network_named(&self, name: &str) -> Result<(), RuntimeError> {
        let filters = std::collections::HashMap::from([("name", vec![name])]);
        let mut same: Vec<_> = self
            .docker
            .list_networks(Some(bollard::network::ListNetworksOptions { filters }))
            .await
            .map_err(map_err)?
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .collect();
        same.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
        for extra in same.iter().skip(1) {
            if let Some(id) = &extra.id {
                tracing::warn!(network = %name, %id, "removing a duplicate network");
                if let Err(e) = self.docker.remove_network(id).await {
                    tracing::warn!(network = %name, %id, error = %e, "could not remove a duplicate network");
                }
            }
        }
        Ok(())
    }

    /// The endpoint this runtime is connected to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The negotiated API version, e.g. "1.41".
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }
}

fn unavailable(endpoint: &str, e: &BollardError) -> RuntimeError {
    let detail = match e {
        BollardError::SocketNotFoundError(p) => format!("socket {p} does not exist"),
        other => other.to_string(),
    };
    RuntimeError::Unavailable(format!(
        "cannot connect to the Docker daemon at {endpoint}: {detail}. Is the docker daemon running?"
    ))
}

/// Map a bollard error to a [`RuntimeError`].
fn map_err(e: BollardError) -> RuntimeError {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => match status_code {
            404 => RuntimeError::NotFound(message),
            409 => RuntimeError::Conflict(message),
            _ => RuntimeError::Other(format!("docker returned {status_code}: {message}")),
        },
        BollardError::SocketNotFoundError(_)
        | BollardError::HyperResponseError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::IOError { .. }
        | BollardError::RequestTimeoutError => RuntimeError::Unavailable(e.to_string()),
        BollardError::DockerStreamError { error } => RuntimeError::Other(error),
        other => RuntimeError::Other(other.to_string()),
    }
}

fn is_status(e: &BollardError, code: u16) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

/// Split an image reference into (repository, tag) for `/images/create`.
/// A reference without tag or digest gets the tag "latest" (otherwise Docker
/// would pull every tag). A digest reference is passed whole with an empty tag.
fn split_image_ref(image: &str) -> (String, String) {
    if image.contains('@') {
        return (image.to_string(), String::new());
    }
    let last_slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[last_slash..].rfind(':') {
        Some(i) => {
            let i = last_slash + i;
            (image[..i].to_string(), image[i + 1..].to_string())
        }
        None => (image.to_string(), "latest".to_string()),
    }
}

/// The registry an image's repository is in, as Docker names it for
/// sign-in: its first component when that is a host (has a dot or a port,
/// or is `localhost`), else Docker Hub.
fn registry_of(repo: &str) -> String {
    match repo.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_string(),
        _ => "https://index.docker.io/v1/".to_string(),
    }
}

/// ECS cpu units -> Docker CpuShares. 0 means "unset" for ECS container cpu.
fn cpu_shares(cpu: Option<i64>) -> Option<i64> {
    cpu.map(|c| c.max(MIN_CPU_SHARES))
}

fn duration_ns(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn ceil_secs(d: Duration) -> i64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(s).unwrap_or(i64::MAX)
}

/// Build the bollard create-container body from a spec.
fn build_config(spec: &ContainerSpec) -> Config<String> {
    let mut exposed: HashMap<String, HashMap<(), ()>> = HashMap::new();
    let mut port_map: HashMap<String, Option<Vec<DockerPortBinding>>> = HashMap::new();
    for p in &spec.port_bindings {
        let key = format!("{}/{}", p.container_port, p.protocol);
        exposed.insert(key.clone(), HashMap::new());
        let binding = DockerPortBinding {
            host_ip: p.host_ip.clone().filter(|ip| !ip.is_empty()),
            // Empty HostPort = Docker picks an ephemeral port.
            host_port: Some(if p.host_port == 0 {
                String::new()
            } else {
                p.host_port.to_string()
            }),
        };
        port_map
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }

    let healthcheck = spec.health_check.as_ref().map(|h| HealthConfig {
        test: Some(h.command.clone()),
        interval: Some(duration_ns(h.interval)),
        timeout: Some(duration_ns(h.timeout)),
        retries: Some(i64::from(h.retries)),
        start_period: Some(duration_ns(h.start_period)),
        start_interval: None,
    });

    let host_config = HostConfig {
        cpu_shares: cpu_shares(spec.cpu_shares),
        memory: spec.memory_bytes.filter(|m| *m > 0),
        memory_reservation: spec.memory_reservation_bytes.filter(|m| *m > 0),
        network_mode: Some(spec.network_mode.as_docker()),
        port_bindings: (!port_map.is_empty()).then_some(port_map),
        binds: (!spec.binds.is_empty()).then(|| spec.binds.iter().map(|m| m.as_bind()).collect()),
        links: (!spec.links.is_empty()).then(|| spec.links.clone()),
        volumes_from: (!spec.volumes_from.is_empty()).then(|| spec.volumes_from.clone()),
        extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
        privileged: spec.privileged.then_some(true),
        readonly_rootfs: spec.readonly_rootfs.then_some(true),
        ..host_settings(&spec.host)
    };

    Config {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: (!spec.env.is_empty())
            .then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: spec.working_dir.clone().filter(|w| !w.is_empty()),
        user: spec.user.clone().filter(|u| !u.is_empty()),
        hostname: spec.hostname.clone().filter(|h| !h.is_empty()),
        labels: Some(spec.labels.clone()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        stop_timeout: spec.stop_timeout.map(ceil_secs),
        host_config: Some(host_config),
        open_stdin: spec.host.open_stdin.then_some(true),
        tty: spec.host.tty.then_some(true),
        network_disabled: spec.host.network_disabled.then_some(true),
        ..Default::default()
    }
}

/// The part of the host config taken from the definition as it is.
fn host_settings(h: &HostSettings) -> HostConfig {
    fn list(v: &[String]) -> Option<Vec<String>> {
        (!v.is_empty()).then(|| v.to_vec())
    }
    fn map(v: &[(String, String)]) -> Option<HashMap<String, String>> {
        (!v.is_empty()).then(|| v.iter().cloned().collect())
    }
    HostConfig {
        ulimits: (!h.ulimits.is_empty()).then(|| {
            h.ulimits
                .iter()
                .map(|(name, soft, hard)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(*soft),
                    hard: Some(*hard),
                })
                .collect()
        }),
        cap_add: list(&h.cap_add),
        cap_drop: list(&h.cap_drop),
        init: h.init.then_some(true),
        shm_size: h.shm_size_bytes,
        tmpfs: map(&h.tmpfs),
        devices: (!h.devices.is_empty()).then(|| {
            h.devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.host_path.clone()),
                    path_in_container: Some(d.container_path.clone()),
                    cgroup_permissions: Some(d.permissions.clone()),
                })
                .collect()
        }),
        memory_swap: h.memory_swap_bytes,
        memory_swappiness: h.swappiness,
        dns: list(&h.dns),
        dns_search: list(&h.dns_search),
        security_opt: list(&h.security_opt),
        sysctls: map(&h.sysctls),
        log_config: h
            .log_driver
            .as_ref()
            .map(|(driver, options)| HostConfigLogConfig {
                typ: Some(driver.clone()),
                config: Some(options.iter().cloned().collect()),
            }),
        pid_mode: h.pid_mode.clone(),
        ipc_mode: h.ipc_mode.clone(),
        ..Default::default()
    }
}

/// Parse Docker's RFC 3339 timestamps; the zero time ("0001-01-01T00:00:00Z") is `None`.
fn parse_time(s: Option<&str>) -> Option<SystemTime> {
    let s = s?.trim();
    if s.is_empty() || s.starts_with("0001-") {
        return None;
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = t.unix_timestamp_nanos();
    if nanos < 0 {
        return None;
    }
    let nanos = u64::try_from(nanos).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

fn parse_ports(ports: Option<&HashMap<String, Option<Vec<DockerPortBinding>>>>) -> Vec<BoundPort> {
    let mut out = Vec::new();
    let Some(ports) = ports else { return out };
    for (key, bindings) in ports {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let (Ok(container_port), Ok(protocol)) = (port.parse::<u16>(), proto.parse::<Protocol>())
        else {
            continue;
        };
        for b in bindings.iter().flatten() {
            let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok()) else {
                continue;
            };
            out.push(BoundPort {
                container_port,
                host_port,
                protocol,
                host_ip: b.host_ip.clone().filter(|ip| !ip.is_empty()),
            });
        }
    }
    out.sort_by(|a, b| {
        (a.container_port, a.protocol.as_str(), a.host_ip.as_deref()).cmp(&(
            b.container_port,
            b.protocol.as_str(),
            b.host_ip.as_deref(),
        ))
    });
    out
}

fn status_from_inspect(c: ContainerInspectResponse) -> ContainerStatus {
    let state = c.state.unwrap_or_default();
    let config = c.config.unwrap_or_default();
    let kind = match state.status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited,
        Some(ContainerStateStatusEnum::DEAD) => ContainerState::Dead,
        Some(other) => ContainerState::Other(other.to_string()),
        None => ContainerState::Other(String::new()),
    };
    let error = state.error.filter(|e| !e.is_empty());
    let code = state.exit_code.unwrap_or(0);
    let exit_code = match kind {
        ContainerState::Exited | ContainerState::Dead => Some(code),
        // A failed start leaves the container "created" with an exit code and error.
        ContainerState::Created if code != 0 || error.is_some() => Some(code),
        // "removing" (or "restarting") says nothing of the process: one that
        // ran and ended has its exit code all the same.
        ContainerState::Other(_)
            if state.running == Some(false)
                && parse_time(state.finished_at.as_deref()).is_some() =>
        {
            Some(code)
        }
        _ => None,
    };
    let health = state.health.and_then(|h| h.status).and_then(|s| match s {
        HealthStatusEnum::STARTING => Some(Health::Starting),
        HealthStatusEnum::HEALTHY => Some(Health::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
        _ => None,
    });
    let ports = if kind == ContainerState::Running {
        parse_ports(c.network_settings.as_ref().and_then(|n| n.ports.as_ref()))
    } else {
        Vec::new()
    };
    ContainerStatus {
        image_id: c.image.clone().filter(|i| !i.is_empty()),
        created_at: parse_time(c.created.as_deref()),
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        labels: config.labels.unwrap_or_default(),
        image: config.image.or(c.image).unwrap_or_default(),
        state: kind,
        exit_code,
        oom_killed: state.oom_killed.unwrap_or(false),
        error,
        started_at: parse_time(state.started_at.as_deref()),
        finished_at: parse_time(state.finished_at.as_deref()),
        health,
        ports,
        ip: c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|nets| {
                nets.values()
                    .filter_map(|e| e.ip_address.clone())
                    .find(|ip| !ip.is_empty())
            }),
        volumes: c
            .mounts
            .iter()
            .flatten()
            .filter(|m| m.typ == Some(MountPointTypeEnum::VOLUME))
            .filter_map(|m| m.name.clone())
            .collect(),
    }
}

/// How long a stopped container's wait may take to answer.
const WAIT_AFTER_STOP: Duration = Duration::from_secs(10);

/// Waits until the container no longer runs; its exit code, or `None` if
/// it does not exist.
async fn wait_not_running(docker: Docker, id: String) -> Result<Option<i64>, RuntimeError> {
    let opts = WaitContainerOptions {
        condition: "not-running",
    };
    let mut answers = docker.wait_container(&id, Some(opts));
    match answers.next().await {
        Some(Ok(r)) => Ok(Some(r.status_code)),
        // bollard turns a non-zero exit into an error carrying the code.
        Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(Some(code)),
        Some(Err(e)) if is_status(&e, 404) => Ok(None),
        Some(Err(e)) => Err(map_err(e)),
        None => Ok(None),
    }
}

/// Convert a Docker event into a [`RuntimeEvent`]; `None` for events we do not report.
fn event_from_message(msg: EventMessage) -> Option<RuntimeEvent> {
    let action = msg.action?;
    let actor = msg.actor?;
    let id = actor.id?;
    let mut labels = actor.attributes.unwrap_or_default();
    let exit_code = labels
        .remove("exitCode")
        .and_then(|c| c.parse::<i64>().ok());
    labels.remove("image");
    labels.remove("name");
    match action.as_str() {
        "start" => Some(RuntimeEvent::Started { id, labels }),
        "die" => Some(RuntimeEvent::Died {
            id,
            labels,
            exit_code,
        }),
        "oom" => Some(RuntimeEvent::Oom { id, labels }),
        "destroy" => Some(RuntimeEvent::Destroyed { id, labels }),
        a if a.starts_with("health_status") => {
            let status = a.split_once(':').map(|(_, s)| s).unwrap_or("");
            Health::parse(status).map(|health| RuntimeEvent::Health { id, labels, health })
        }
        _ => None,
    }
}

/// Docker's `since` format: "<seconds>.<nanoseconds>".
fn docker_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

#[async_trait::async_trait]
impl Runtime for DockerRuntime {
    async fn info(&self) -> Result<HostInfo, RuntimeError> {
        let info = self.docker.info().await.map_err(map_err)?;
        let version = self.docker.version().await.map_err(map_err)?;
        Ok(HostInfo {
            cpus: info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            memory_bytes: info
                .mem_total
                .and_then(|m| u64::try_from(m).ok())
                .unwrap_or(0),
            os_type: info.os_type.unwrap_or_else(|| "linux".into()),
            architecture: info.architecture.unwrap_or_default(),
            server_version: info.server_version.or(version.version).unwrap_or_default(),
            api_version: version
                .api_version
                .unwrap_or_else(|| self.docker.client_version().to_string()),
        })
    }

    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 404) => Ok(false),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<(), RuntimeError> {
        let (repo, tag) = split_image_ref(image);
        let credentials = auth.map(|a| bollard::auth::DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.clone()),
            serveraddress: Some(registry_of(&repo)),
            ..Default::default()
        });
        let opts = CreateImageOptions {
            from_image: repo,
            tag,
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(opts), None, credentials);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(status) = info.status {
                        tracing::trace!(image, status, "pull progress");
                    }
                }
                Err(e) => {
                    return Err(match map_err(e) {
                        RuntimeError::Unavailable(m) => RuntimeError::Unavailable(m),
                        RuntimeError::NotFound(m)
                        | RuntimeError::Conflict(m)
                        | RuntimeError::ImagePull(m)
                        | RuntimeError::Other(m) => {
                            // Strip our "docker returned NNN: " prefix: keep the daemon's text.
                            let m = match m.strip_prefix("docker returned ") {
                                Some(rest) => rest
                                    .split_once(": ")
                                    .map(|(_, msg)| msg.to_string())
                                    .unwrap_or(m.clone()),
                                None => m,
                            };
                            RuntimeError::ImagePull(m)
                        }
                    });
                }
            }
        }
        Ok(())
    }

    async fn ensure_volume(
        &self,
        name: &str,
        driver: Option<&str>,
        driver_opts: &HashMap<String, String>,
        labels: &HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(map_err(e)),
        }
        let opts = CreateVolumeOptions {
            name: name.to_string(),
            driver: driver.unwrap_or("local").to_string(),
            driver_opts: driver_opts.clone(),
            labels: labels.clone(),
        };
        self.docker.create_volume(opts).await.map_err(map_err)?;
        Ok(())
    }

    async fn ensure_network(&self, name: &str) -> Result<(), RuntimeError> {
        let _one_at_a_time = self.network_lock.lock().await;
        match self.docker.inspect_network::<String>(name, None).await {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, 404) => {
                let opts = bollard::network::CreateNetworkOptions {
                    name: name.to_string(),
                    driver: "bridge".to_string(),
                    check_duplicate: true,
                    ..Default::default()
                };
                match self.docker.create_network(opts).await {
                    Ok(_) => {}
                    // Created concurrently by another agent (older daemons).
                    Err(e) if is_status(&e, 409) => {}
                    Err(e) => return Err(map_err(e)),
                }
            }
            // Ambiguous: made twice already (see below).
            Err(e) if is_status(&e, 400) => {}
            Err(e) => return Err(map_err(e)),
        }
        self.one_network_named(name).await
    }

    async fn import_image(
        &self,
        reference: &str,
        rootfs_tar: Vec<u8>,
        cmd: &[&str],
    ) -> Result<(), RuntimeError> {
        let (repo, tag) = split_image_ref(reference);
        let change = format!(
            "CMD {}",
            serde_json::to_string(cmd).map_err(|e| RuntimeError::Other(e.to_string()))?
        );
        let opts = CreateImageOptions {
            from_src: "-".to_string(),
            repo,
            tag,
            changes: vec![change.as_str()],
            ..Default::default()
        };
        let mut stream = self
            .docker
            .create_image(Some(opts), Some(rootfs_tar.into()), None);
        while let Some(item) = stream.next().await {
            item.map_err(map_err)?;
        }
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        match self.docker.remove_volume(name, None).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let opts = CreateContainerOptions {
            name: spec.name.clone(),
            platform: None,
        };
        let resp = self
            .docker
            .create_container(Some(opts), build_config(spec))
            .await
            .map_err(map_err)?;
        for w in &resp.warnings {
            tracing::warn!(container = %spec.name, "docker create warning: {w}");
        }
        Ok(resp.id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        // 304 (already started) is a success for bollard.
        self.docker
            .start_container(id, None::<StartContainerOptions<String>>)
            .await
            .map_err(map_err)
    }

    async fn stop_container(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<i64>, RuntimeError> {
        let t = ceil_secs(timeout);
        // The request only returns once the container is stopped, which may take
        // the whole grace period: make sure the HTTP timeout outlasts it.
        let needed = Duration::from_secs(u64::try_from(t).unwrap_or(0) + 30);
        let docker = if needed > self.docker.timeout() {
            self.docker.clone().with_timeout(needed)
        } else {
            self.docker.clone()
        };
        // Wait for the exit while stopping: Docker answers the wait as the
        // container exits, so whoever removes it right after (`docker rm -f`,
        // another agent) cannot take its exit code away. A wait that reaches a
        // stopped container answers at once with its last code.
        let waiter = tokio::spawn(wait_not_running(docker.clone(), id.to_string()));
        let stopped = docker
            .stop_container(id, Some(StopContainerOptions { t }))
            .await;
        match stopped {
            // Stopped, already stopped, or gone (the wait may still have
            // seen it exit).
            Ok(()) => {}
            Err(e) if is_status(&e, 304) || is_status(&e, 404) => {}
            Err(e) => {
                waiter.abort();
                return Err(map_err(e));
            }
        }
        let waiting = waiter.abort_handle();
        let waited = tokio::time::timeout(WAIT_AFTER_STOP, waiter).await;
        waiting.abort();
        let waited = match waited {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => Err(RuntimeError::Other(format!("waiting for {id}: {join}"))),
            Err(elapsed) => Err(RuntimeError::Other(format!("waiting for {id}: {elapsed}"))),
        };
        match waited {
            Ok(Some(code)) => Ok(Some(code)),
            // The wait did not get an answer: the container is gone (nothing
            // more to learn), or what Docker shows now tells.
            Ok(None) | Err(_) => match self.inspect_container(id).await? {
                None => Ok(None),
                Some(s) if s.state == ContainerState::Running => Err(RuntimeError::Other(format!(
                    "container {id} still runs after it was stopped"
                ))),
                Some(s) => Ok(s.exit_code),
            },
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let opts = RemoveContainerOptions {
            v: true,
            force: true,
            link: false,
        };
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            // "removal of container … is already in progress"
            Err(BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerStatus>, RuntimeError> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(Some(status_from_inspect(c))),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn list_managed(&self) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![TASK_ARN_LABEL.to_string()]);
        let summaries = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters,
                ..Default::default()
            }))
            .await
            .map_err(map_err)?;
        let mut out = Vec::with_capacity(summaries.len());
        for s in summaries {
            let Some(id) = s.id else { continue };
            // A container may disappear between list and inspect.
            if let Some(status) = self.inspect_container(&id).await? {
                out.push(status);
            }
        }
        Ok(out)
    }

    fn events(&self) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert("label".into(), vec![TASK_ARN_LABEL.into()]);
        filters.insert(
            "event".into(),
            ["start", "die", "health_status", "oom", "destroy"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        // `since` = now: the request is only sent when the stream is first
        // polled; replaying from the subscription time means nothing that
        // happens in between is lost.
        let opts = EventsOptions::<String> {
            since: Some(docker_timestamp(SystemTime::now())),
            until: None,
            filters,
        };
        self.docker
            .events(Some(opts))
            .map_err(map_err)
            .try_filter_map(|msg| futures::future::ready(Ok(event_from_message(msg))))
            // End the stream after the first error.
            .scan(false, |failed, item| {
                if *failed {
                    return futures::future::ready(None);
                }
                *failed = item.is_err();
                futures::future::ready(Some(item))
            })
            .boxed()
    }

    async fn exec(
        &self,
        id: &str,
        command: &[String],
        tty: Option<(u16, u16)>,
    ) -> Result<Exec, RuntimeError> {
        use bollard::exec::{
            CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults,
        };
        let created = self
            .docker
            .create_exec(
                id,
                CreateExecOptions::<String> {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(tty.is_some()),
                    cmd: Some(command.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(map_err)?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: tty.is_some(),
                    output_capacity: None,
                }),
            )
            .await
            .map_err(map_err)?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(RuntimeError::Other("the exec started detached".into()));
        };
        if let Some((cols, rows)) = tty {
            // The TTY exists once the exec runs; an early resize can fail harmlessly.
            let _ = self
                .docker
                .resize_exec(
                    &created.id,
                    ResizeExecOptions {
                        width: cols,
                        height: rows,
                    },
                )
                .await;
        }
        let output = output
            .map_ok(|chunk| match chunk {
                bollard::container::LogOutput::StdErr { message } => {
                    ExecOutput::Stderr(message.to_vec())
                }
                other => ExecOutput::Stdout(other.into_bytes().to_vec()),
            })
            .map_err(map_err)
            .boxed();
        Ok(Exec {
            id: created.id,
            output,
            input,
        })
    }

    async fn resize_exec(&self, exec_id: &str, cols: u16, rows: u16) -> Result<(), RuntimeError> {
        self.docker
            .resize_exec(
                exec_id,
                bollard::exec::ResizeExecOptions {
                    width: cols,
                    height: rows,
                },
            )
            .await
            .map_err(map_err)
    }

    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, RuntimeError> {
        let inspected = self.docker.inspect_exec(exec_id).await.map_err(map_err)?;
        Ok(match inspected.running {
            Some(true) => None,
            _ => inspected.exit_code,
        })
    }

    async fn stats(&self, id: &str) -> Result<Option<serde_json::Value>, RuntimeError> {
        let opts = bollard::container::StatsOptions {
            stream: false,
            one_shot: false,
        };
        let mut samples = self.docker.stats(id, Some(opts));
        match samples.next().await {
            Some(Ok(s)) => {
                Ok(Some(serde_json::to_value(s).map_err(|e| {
                    RuntimeError::Other(format!("docker stats: {e}"))
                })?))
            }
            Some(Err(e)) if is_status(&e, 404) => Ok(None),
            Some(Err(e)) => Err(map_err(e)),
            None => Ok(None),
        }
    }

    fn logs(
        &self,
        id: &str,
        since_nanos: i64,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        let opts = LogsOptions::<String> {
            follow: true,
            stdout: true,
            stderr: true,
            // Whole seconds: lines of the same second before `since_nanos`
            // are the caller's to skip.
            since: since_nanos.div_euclid(1_000_000_000),
            timestamps: true,
            ..Default::default()
        };
        self.docker
            .logs(id, Some(opts))
            .map_err(map_err)
            .try_filter_map(|out| futures::future::ready(Ok(log_line(out))))
            .boxed()
    }
}

/// A Docker log frame (`<RFC 3339 nanos> <text>\n`) as a [`LogLine`].
fn log_line(out: LogOutput) -> Option<LogLine> {
    let (stderr, bytes) = match out {
        LogOutput::StdOut { message } | LogOutput::Console { message } => (false, message),
        LogOutput::StdErr { message } => (true, message),
        LogOutput::StdIn { .. } => return None,
    };
    let raw = String::from_utf8_lossy(&bytes);
    let (stamp, text) = raw.split_once(' ').unwrap_or((raw.as_ref(), ""));
    let at =
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    Some(LogLine {
        at_nanos: i64::try_from(at.unix_timestamp_nanos()).ok()?,
        stderr,
        text: text.strip_suffix('\n').unwrap_or(text).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{HealthCheck, Mount, MountSource, NetworkMode, PortBinding};

    #[test]
    fn image_refs_split() {
        assert_eq!(
            split_image_ref("busybox"),
            ("busybox".into(), "latest".into())
        );
        assert_eq!(
            split_image_ref("wharf-test/busybox:2"),
            ("wharf-test/busybox".into(), "2".into())
        );
        assert_eq!(
            split_image_ref("localhost:5000/foo"),
            ("localhost:5000/foo".into(), "latest".into())
        );
        assert_eq!(
            split_image_ref("localhost:5000/foo:1.2"),
            ("localhost:5000/foo".into(), "1.2".into())
        );
        assert_eq!(
            split_image_ref("foo@sha256:abcd"),
            ("foo@sha256:abcd".into(), String::new())
        );
    }

    #[test]
    fn config_mapping() {
        let spec = ContainerSpec {
            name: "c".into(),
            image: "img".into(),
            cpu_shares: Some(0),
            memory_bytes: Some(64 << 20),
            memory_reservation_bytes: Some(32 << 20),
            network_mode: NetworkMode::Container("other".into()),
            port_bindings: vec![
                PortBinding {
                    container_port: 80,
                    host_port: 0,
                    ..Default::default()
                },
                PortBinding {
                    container_port: 53,
                    host_port: 5353,
                    protocol: Protocol::Udp,
                    host_ip: Some("127.0.0.1".into()),
                },
            ],
            binds: vec![Mount {
                source: MountSource::Volume("vol".into()),
                container_path: "/data".into(),
                read_only: true,
            }],
            health_check: Some(HealthCheck {
                command: vec!["CMD-SHELL".into(), "true".into()],
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
                retries: 2,
                start_period: Duration::ZERO,
            }),
            stop_timeout: Some(Duration::from_millis(1500)),
            env: vec![("A".into(), "b=c".into())],
            ..Default::default()
        };
        let c = build_config(&spec);
        let hc = c.host_config.as_ref().unwrap();
        assert_eq!(hc.cpu_shares, Some(2));
        assert_eq!(hc.memory, Some(64 << 20));
        assert_eq!(hc.memory_reservation, Some(32 << 20));
        assert_eq!(hc.network_mode.as_deref(), Some("container:other"));
        assert_eq!(hc.binds, Some(vec!["vol:/data:ro".to_string()]));
        let pb = hc.port_bindings.as_ref().unwrap();
        assert_eq!(
            pb["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("")
        );
        assert_eq!(
            pb["53/udp"].as_ref().unwrap()[0],
            DockerPortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some("5353".into())
            }
        );
        let exposed = c.exposed_ports.as_ref().unwrap();
        assert!(exposed.contains_key("80/tcp") && exposed.contains_key("53/udp"));
        let h = c.healthcheck.as_ref().unwrap();
        assert_eq!(h.interval, Some(1_000_000_000));
        assert_eq!(h.timeout, Some(500_000_000));
        assert_eq!(h.retries, Some(2));
        assert_eq!(c.stop_timeout, Some(2));
        assert_eq!(c.env, Some(vec!["A=b=c".to_string()]));
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time(Some("0001-01-01T00:00:00Z")), None);
        let t = parse_time(Some("2024-01-02T03:04:05.123456789Z")).unwrap();
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), 1_704_164_645);
        assert_eq!(d.subsec_nanos(), 123_456_789);
    }

    #[test]
    fn a_container_being_removed_keeps_its_exit_code() {
        let inspected = |status, running| ContainerInspectResponse {
            state: Some(bollard::models::ContainerState {
                status: Some(status),
                running: Some(running),
                exit_code: Some(137),
                started_at: Some("2024-01-02T03:04:05Z".into()),
                finished_at: Some(
                    if running {
                        "0001-01-01T00:00:00Z"
                    } else {
                        "2024-01-02T03:04:09Z"
                    }
                    .into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = status_from_inspect(inspected(ContainerStateStatusEnum::REMOVING, false));
        assert_eq!(s.state, ContainerState::Other("removing".into()));
        assert_eq!(s.exit_code, Some(137));
        // Removed while it still ran: no exit yet.
        let s = status_from_inspect(inspected(ContainerStateStatusEnum::REMOVING, true));
        assert_eq!(s.exit_code, None);
    }

    #[test]
    fn events_convert() {
        let mut attrs = HashMap::new();
        attrs.insert("exitCode".to_string(), "3".to_string());
        attrs.insert("image".to_string(), "img".to_string());
        attrs.insert("name".to_string(), "n".to_string());
        attrs.insert(TASK_ARN_LABEL.to_string(), "arn".to_string());
        let msg = |action: &str| EventMessage {
            action: Some(action.into()),
            actor: Some(bollard::models::EventActor {
                id: Some("abc".into()),
                attributes: Some(attrs.clone()),
            }),
            ..Default::default()
        };
        let mut labels = HashMap::new();
        labels.insert(TASK_ARN_LABEL.to_string(), "arn".to_string());
        assert_eq!(
            event_from_message(msg("die")),
            Some(RuntimeEvent::Died {
                id: "abc".into(),
                labels: labels.clone(),
                exit_code: Some(3)
            })
        );
        assert_eq!(
            event_from_message(msg("health_status: unhealthy")),
            Some(RuntimeEvent::Health {
                id: "abc".into(),
                labels: labels.clone(),
                health: Health::Unhealthy
            })
        );
        assert_eq!(event_from_message(msg("exec_start: sh")), None);
    }
}
