//! Deterministic in-memory [`Runtime`] for unit tests of the agent loop.
//!
//! Semantics mirror Docker where it matters to the agent:
//! * `create_container` needs the image to be present (pulled or added with
//!   [`FakeRuntime::add_image`]), otherwise `NotFound`; duplicate names are `Conflict`.
//! * `start_container` emits `Started`; dynamic host ports are assigned from 32768 up.
//! * `stop_container` on a running container exits it with code 143 (SIGTERM)
//!   and emits `Died`; `remove_container` on a running one exits it with 137 and
//!   emits `Died` then `Destroyed`.
//! * Time comes from a logical clock (one second per state change), never the wall clock.
//!
//! Cloning a `FakeRuntime` yields another handle to the same state, so a test
//! can keep one handle while the agent owns another.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::stream::{BoxStream, StreamExt};
use tokio::sync::broadcast;

use super::{
    BoundPort, ContainerSpec, ContainerState, ContainerStatus, Exec, ExecOutput, Health, HostInfo,
    LogLine, MountSource, RegistryAuth, Runtime, RuntimeError, RuntimeEvent, TASK_ARN_LABEL,
};

/// First host port handed out for dynamic (host_port 0) bindings.
const FIRST_DYNAMIC_PORT: u16 = 32768;
/// Logical clock origin (2023-11-14T22:13:20Z).
const CLOCK_ORIGIN_SECS: u64 = 1_700_000_000;
const EVENT_CAPACITY: usize = 4096;

/// Operations that can be made to fail with [`FakeRuntime::fail_next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FakeOp {
    Info,
    ImagePresent,
    PullImage,
    EnsureVolume,
    CreateContainer,
    StartContainer,
    StopContainer,
    RemoveContainer,
    InspectContainer,
    ListManaged,
}

/// A record of a mutating call made on the fake (see [`FakeRuntime::calls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeCall {
    Pull(String),
    /// A pull signed in as the user.
    PullAs(String, String),
    EnsureVolume(String),
    RemoveVolume(String),
    /// Container name.
    Create(String),
    /// Container id.
    Start(String),
    /// Container id and timeout.
    Stop(String, Duration),
    /// Container id.
    Remove(String),
}

#[derive(Debug, Clone)]
enum Broadcast {
    Event(RuntimeEvent),
    Disconnect,
}

#[derive(Debug, Clone)]
struct FakeContainer {
    spec: ContainerSpec,
    status: ContainerStatus,
}

#[derive(Debug)]
struct State {
    available: bool,
    host: HostInfo,
    images: HashSet<String>,
    /// Output per container id (see [`FakeRuntime::push_log`]).
    logs: HashMap<String, Vec<LogLine>>,
    unpullable: HashMap<String, String>,
    volumes: HashMap<String, (String, HashMap<String, String>)>,
    containers: HashMap<String, FakeContainer>,
    /// Insertion order of container ids, for deterministic listing.
    order: Vec<String>,
    next_id: u64,
    next_port: u16,
    clock: u64,
    failures: HashMap<FakeOp, VecDeque<RuntimeError>>,
    calls: Vec<FakeCall>,
}

impl State {
    fn tick(&mut self) -> SystemTime {
        self.clock += 1;
        UNIX_EPOCH + Duration::from_secs(CLOCK_ORIGIN_SECS + self.clock)
    }

    /// Resolve an id or name (with or without leading '/') to an id.
    fn resolve(&self, id_or_name: &str) -> Option<String> {
        if self.containers.contains_key(id_or_name) {
            return Some(id_or_name.to_string());
        }
        let name = id_or_name.trim_start_matches('/');
        self.containers
            .iter()
            .find(|(_, c)| c.status.name == name)
            .map(|(id, _)| id.clone())
    }
}

/// In-memory [`Runtime`] for tests. See the module docs for its semantics.
#[derive(Debug, Clone)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Broadcast>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRuntime {
    /// An available fake with no images, 2 CPUs and 4 GiB of memory.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        FakeRuntime {
            state: Arc::new(Mutex::new(State {
                available: true,
                host: HostInfo {
                    cpus: 2,
                    memory_bytes: 4 << 30,
                    os_type: "linux".into(),
                    architecture: "x86_64".into(),
                    server_version: "fake".into(),
                    api_version: "1.41".into(),
                },
                images: HashSet::new(),
                logs: HashMap::new(),
                unpullable: HashMap::new(),
                volumes: HashMap::new(),
                containers: HashMap::new(),
                order: Vec::new(),
                next_id: 1,
                next_port: FIRST_DYNAMIC_PORT,
                clock: 0,
                failures: HashMap::new(),
                calls: Vec::new(),
            })),
            events,
        }
    }

    /// A fake with these images already present.
    pub fn with_images<I, S>(images: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let f = Self::new();
        for i in images {
            f.add_image(i);
        }
        f
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test must not poison the fake for other assertions.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, ev: RuntimeEvent) {
        // No receivers is fine.
        let _ = self.events.send(Broadcast::Event(ev));
    }

    /// Common prologue: availability check and injected failures.
    fn check(&self, st: &mut State, op: FakeOp) -> Result<(), RuntimeError> {
        if !st.available {
            return Err(RuntimeError::Unavailable(
                "fake docker daemon is down".into(),
            ));
        }
        if let Some(e) = st.failures.get_mut(&op).and_then(VecDeque::pop_front) {
            return Err(e);
        }
        Ok(())
    }

    // ---- test hooks -------------------------------------------------------

    /// Make an image present locally.
    pub fn add_image(&self, image: impl Into<String>) {
        self.lock().images.insert(image.into());
    }

    /// Remove a local image.
    pub fn remove_image(&self, image: &str) {
        self.lock().images.remove(image);
    }

    /// Make `pull_image(image)` fail with `ImagePull(message)`.
    pub fn set_unpullable(&self, image: impl Into<String>, message: impl Into<String>) {
        self.lock().unpullable.insert(image.into(), message.into());
    }

    /// Undo [`set_unpullable`](Self::set_unpullable).
    pub fn set_pullable(&self, image: &str) {
        self.lock().unpullable.remove(image);
    }

    /// Replace the host info returned by `info()`.
    pub fn set_host_info(&self, info: HostInfo) {
        self.lock().host = info;
    }

    /// Queue an error for the next call of `op` (errors queue up FIFO).
    pub fn fail_next(&self, op: FakeOp, err: RuntimeError) {
        self.lock().failures.entry(op).or_default().push_back(err);
    }

    /// Simulate the daemon going down (every call fails with `Unavailable`,
    /// open event streams yield one `Unavailable` error and end) or coming back.
    pub fn set_available(&self, available: bool) {
        let was = std::mem::replace(&mut self.lock().available, available);
        if was && !available {
            let _ = self.events.send(Broadcast::Disconnect);
        }
    }

    /// Simulate the main process of a running container exiting with `code`:
    /// the container becomes Exited and `Died` is emitted. Returns false if the
    /// container does not exist or is not running.
    pub fn exit(&self, id: &str, code: i64) -> bool {
        self.exit_inner(id, code, false)
    }

    /// Simulate an OOM kill: emits `Oom`, then the container exits with 137 and
    /// `oom_killed` set, emitting `Died`.
    pub fn oom_kill(&self, id: &str) -> bool {
        self.exit_inner(id, 137, true)
    }

    fn exit_inner(&self, id: &str, code: i64, oom: bool) -> bool {
        let mut st = self.lock();
        let Some(id) = st.resolve(id) else {
            return false;
        };
        let now = st.tick();
        let c = st.containers.get_mut(&id).expect("resolved");
        if c.status.state != ContainerState::Running {
            return false;
        }
        mark_exited(c, code, now);
        c.status.oom_killed = oom;
        let labels = c.status.labels.clone();
        drop(st);
        if oom {
            self.emit(RuntimeEvent::Oom {
                id: id.clone(),
                labels: labels.clone(),
            });
        }
        self.emit(RuntimeEvent::Died {
            id,
            labels,
            exit_code: Some(code),
        });
        true
    }

    /// Set a container's health status and emit a `Health` event.
    pub fn set_health(&self, id: &str, health: Health) -> bool {
        let mut st = self.lock();
        let Some(id) = st.resolve(id) else {
            return false;
        };
        let c = st.containers.get_mut(&id).expect("resolved");
        c.status.health = Some(health);
        let labels = c.status.labels.clone();
        drop(st);
        self.emit(RuntimeEvent::Health { id, labels, health });
        true
    }

    /// Record of mutating calls, in order.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.lock().calls.clone()
    }

    /// Clear the call record.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// The spec a container was created with.
    pub fn spec(&self, id: &str) -> Option<ContainerSpec> {
        let st = self.lock();
        let id = st.resolve(id)?;
        st.containers.get(&id).map(|c| c.spec.clone())
    }

    /// Current status of a container (no availability check).
    pub fn status(&self, id: &str) -> Option<ContainerStatus> {
        let st = self.lock();
        let id = st.resolve(id)?;
        st.containers.get(&id).map(|c| c.status.clone())
    }

    /// All containers (managed or not), in creation order.
    pub fn containers(&self) -> Vec<ContainerStatus> {
        let st = self.lock();
        st.order
            .iter()
            .filter_map(|id| st.containers.get(id).map(|c| c.status.clone()))
            .collect()
    }

    /// Appends a line to a container's output.
    pub fn push_log(&self, id: &str, line: LogLine) {
        self.lock()
            .logs
            .entry(id.to_string())
            .or_default()
            .push(line);
    }

    /// Whether a volume exists.
    pub fn has_volume(&self, name: &str) -> bool {
        self.lock().volumes.contains_key(name)
    }

    /// Number of live `events()` subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.events.receiver_count()
    }
}

fn mark_exited(c: &mut FakeContainer, code: i64, now: SystemTime) {
    c.status.state = ContainerState::Exited;
    c.status.exit_code = Some(code);
    c.status.finished_at = Some(now);
    c.status.ports.clear();
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    async fn info(&self) -> Result<HostInfo, RuntimeError> {
        let mut st = self.lock();
        self.check(&mut st, FakeOp::Info)?;
        Ok(st.host.clone())
    }

    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError> {
        let mut st = self.lock();
        self.check(&mut st, FakeOp::ImagePresent)?;
        Ok(st.images.contains(image))
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        st.calls.push(match auth {
            None => FakeCall::Pull(image.to_string()),
            Some(a) => FakeCall::PullAs(image.to_string(), a.username.clone()),
        });
        self.check(&mut st, FakeOp::PullImage)?;
        if let Some(msg) = st.unpullable.get(image) {
            return Err(RuntimeError::ImagePull(msg.clone()));
        }
        st.images.insert(image.to_string());
        Ok(())
    }

    async fn ensure_volume(
        &self,
        name: &str,
        driver: Option<&str>,
        _driver_opts: &HashMap<String, String>,
        labels: &HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        st.calls.push(FakeCall::EnsureVolume(name.to_string()));
        self.check(&mut st, FakeOp::EnsureVolume)?;
        st.volumes
            .entry(name.to_string())
            .or_insert_with(|| (driver.unwrap_or("local").to_string(), labels.clone()));
        Ok(())
    }

    async fn ensure_network(&self, _name: &str) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn import_image(
        &self,
        reference: &str,
        _rootfs_tar: Vec<u8>,
        _cmd: &[&str],
    ) -> Result<(), RuntimeError> {
        self.lock().images.insert(reference.to_string());
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        st.calls.push(FakeCall::RemoveVolume(name.to_string()));
        st.volumes.remove(name);
        Ok(())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let mut st = self.lock();
        st.calls.push(FakeCall::Create(spec.name.clone()));
        self.check(&mut st, FakeOp::CreateContainer)?;
        if !st.images.contains(&spec.image) {
            return Err(RuntimeError::NotFound(format!(
                "No such image: {}",
                spec.image
            )));
        }
        if !spec.name.is_empty() && st.containers.values().any(|c| c.status.name == spec.name) {
            return Err(RuntimeError::Conflict(format!(
                "Conflict. The container name \"/{}\" is already in use",
                spec.name
            )));
        }
        let n = st.next_id;
        st.next_id += 1;
        let id = format!("{n:064x}");
        let name = if spec.name.is_empty() {
            format!("fake_{n}")
        } else {
            spec.name.clone()
        };
        let status = ContainerStatus {
            id: id.clone(),
            name,
            labels: spec.labels.clone(),
            image: spec.image.clone(),
            state: ContainerState::Created,
            exit_code: None,
            oom_killed: false,
            error: None,
            started_at: None,
            finished_at: None,
            health: None,
            ports: Vec::new(),
            ip: None,
            image_id: Some(format!("sha256:{:064x}", n)),
            created_at: Some(std::time::SystemTime::now()),
            volumes: spec
                .binds
                .iter()
                .filter_map(|m| match &m.source {
                    MountSource::Volume(v) => Some(v.clone()),
                    MountSource::HostPath(_) => None,
                })
                .collect(),
        };
        st.containers.insert(
            id.clone(),
            FakeContainer {
                spec: spec.clone(),
                status,
            },
        );
        st.order.push(id.clone());
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        st.calls.push(FakeCall::Start(id.to_string()));
        self.check(&mut st, FakeOp::StartContainer)?;
        let Some(id) = st.resolve(id) else {
            return Err(RuntimeError::NotFound(format!("No such container: {id}")));
        };
        if st.containers[&id].status.state == ContainerState::Running {
            return Ok(());
        }
        let now = st.tick();
        let mut ports = Vec::new();
        for p in &st.containers[&id].spec.port_bindings.clone() {
            let host_port = if p.host_port == 0 {
                let hp = st.next_port;
                st.next_port = st.next_port.checked_add(1).unwrap_or(FIRST_DYNAMIC_PORT);
                hp
            } else {
                p.host_port
            };
            ports.push(BoundPort {
                container_port: p.container_port,
                host_port,
                protocol: p.protocol,
                host_ip: Some(p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into())),
            });
        }
        let c = st.containers.get_mut(&id).expect("resolved");
        c.status.state = ContainerState::Running;
        c.status.exit_code = None;
        c.status.oom_killed = false;
        c.status.error = None;
        c.status.started_at = Some(now);
        c.status.finished_at = None;
        c.status.health = c.spec.health_check.as_ref().map(|_| Health::Starting);
        c.status.ports = ports;
        let labels = c.status.labels.clone();
        drop(st);
        self.emit(RuntimeEvent::Started { id, labels });
        Ok(())
    }

    async fn stop_container(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<i64>, RuntimeError> {
        let mut st = self.lock();
        st.calls.push(FakeCall::Stop(id.to_string(), timeout));
        self.check(&mut st, FakeOp::StopContainer)?;
        let Some(id) = st.resolve(id) else {
            return Ok(None);
        };
        let now = st.tick();
        let c = st.containers.get_mut(&id).expect("resolved");
        if c.status.state != ContainerState::Running {
            // As Docker's wait: a container that is not running has the last code.
            return Ok(Some(c.status.exit_code.unwrap_or(0)));
        }
        mark_exited(c, 143, now);
        let labels = c.status.labels.clone();
        drop(st);
        self.emit(RuntimeEvent::Died {
            id,
            labels,
            exit_code: Some(143),
        });
        Ok(Some(143))
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        st.calls.push(FakeCall::Remove(id.to_string()));
        self.check(&mut st, FakeOp::RemoveContainer)?;
        let Some(id) = st.resolve(id) else {
            return Ok(());
        };
        let c = st.containers.remove(&id).expect("resolved");
        st.order.retain(|x| x != &id);
        drop(st);
        let labels = c.status.labels;
        if c.status.state == ContainerState::Running {
            self.emit(RuntimeEvent::Died {
                id: id.clone(),
                labels: labels.clone(),
                exit_code: Some(137),
            });
        }
        self.emit(RuntimeEvent::Destroyed { id, labels });
        Ok(())
    }

    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerStatus>, RuntimeError> {
        let mut st = self.lock();
        self.check(&mut st, FakeOp::InspectContainer)?;
        Ok(st
            .resolve(id)
            .and_then(|id| st.containers.get(&id))
            .map(|c| c.status.clone()))
    }

    async fn list_managed(&self) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let mut st = self.lock();
        self.check(&mut st, FakeOp::ListManaged)?;
        Ok(st
            .order
            .iter()
            .filter_map(|id| st.containers.get(id))
            .filter(|c| c.status.labels.contains_key(TASK_ARN_LABEL))
            .map(|c| c.status.clone())
            .collect())
    }

    /// Echoes: the command's words on stdout, then exit code 0. A container
    /// that is not running is refused, as Docker refuses it.
    async fn exec(
        &self,
        id: &str,
        command: &[String],
        _tty: Option<(u16, u16)>,
    ) -> Result<Exec, RuntimeError> {
        let st = self.lock();
        let running = st
            .containers
            .get(id)
            .is_some_and(|c| c.status.state == super::ContainerState::Running);
        if !running {
            return Err(RuntimeError::Conflict(format!(
                "container {id} is not running"
            )));
        }
        let line = format!("{}\n", command.join(" ")).into_bytes();
        Ok(Exec {
            id: format!("exec-{id}"),
            output: futures::stream::iter([Ok(ExecOutput::Stdout(line))]).boxed(),
            input: Box::pin(tokio::io::sink()),
        })
    }

    async fn resize_exec(
        &self,
        _exec_id: &str,
        _cols: u16,
        _rows: u16,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn exec_exit_code(&self, _exec_id: &str) -> Result<Option<i64>, RuntimeError> {
        Ok(Some(0))
    }

    /// A sample with the container's ID and name, as Docker's has.
    async fn stats(&self, id: &str) -> Result<Option<serde_json::Value>, RuntimeError> {
        let st = self.lock();
        Ok(st.containers.get(id).map(|c| {
            serde_json::json!({"id": id, "name": format!("/{}", c.status.name), "cpu_stats": {}, "memory_stats": {}})
        }))
    }

    /// What was pushed so far, from `since_nanos`'s second on; never follows.
    fn logs(
        &self,
        id: &str,
        since_nanos: i64,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        let from = since_nanos.div_euclid(1_000_000_000) * 1_000_000_000;
        let lines: Vec<_> = self
            .lock()
            .logs
            .get(id)
            .into_iter()
            .flatten()
            .filter(|l| l.at_nanos >= from)
            .cloned()
            .map(Ok)
            .collect();
        futures::stream::iter(lines).boxed()
    }

    fn events(&self) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        // Subscribe under the lock so availability and subscription are consistent
        // with concurrent set_available calls.
        let st = self.lock();
        if !st.available {
            return futures::stream::once(futures::future::ready(Err(RuntimeError::Unavailable(
                "fake docker daemon is down".into(),
            ))))
            .boxed();
        }
        let rx = self.events.subscribe();
        drop(st);
        futures::stream::unfold(Some(rx), |rx| async move {
            let mut rx = rx?;
            loop {
                match rx.recv().await {
                    Ok(Broadcast::Event(ev)) => {
                        // Docker only reports managed containers on this stream.
                        if ev.labels().contains_key(TASK_ARN_LABEL) {
                            return Some((Ok(ev), Some(rx)));
                        }
                    }
                    Ok(Broadcast::Disconnect) => {
                        return Some((
                            Err(RuntimeError::Unavailable(
                                "fake docker daemon went away".into(),
                            )),
                            None,
                        ))
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        return Some((
                            Err(RuntimeError::Other(format!(
                                "event stream lagged, {n} events lost"
                            ))),
                            None,
                        ))
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{HealthCheck, PortBinding};
    use futures::FutureExt;

    const IMG: &str = "wharf-test/busybox:latest";

    fn managed(name: &str) -> ContainerSpec {
        let mut labels = HashMap::new();
        labels.insert(TASK_ARN_LABEL.to_string(), format!("arn:task/{name}"));
        ContainerSpec {
            name: name.into(),
            image: IMG.into(),
            labels,
            ..Default::default()
        }
    }

    /// Next item if one is ready right now (the fake never needs to wait).
    fn next_now(
        s: &mut BoxStream<'static, Result<RuntimeEvent, RuntimeError>>,
    ) -> Option<Option<Result<RuntimeEvent, RuntimeError>>> {
        s.next().now_or_never()
    }

    #[tokio::test]
    async fn lifecycle_and_events() {
        let rt = FakeRuntime::with_images([IMG]);
        let mut ev = rt.events();
        let id = rt.create_container(&managed("a")).await.unwrap();
        let st = rt.inspect_container(&id).await.unwrap().unwrap();
        assert_eq!(st.state, ContainerState::Created);
        assert_eq!(st.exit_code, None);
        // Lookup by name works too.
        assert_eq!(rt.inspect_container("a").await.unwrap().unwrap().id, id);

        rt.start_container(&id).await.unwrap();
        match next_now(&mut ev) {
            Some(Some(Ok(RuntimeEvent::Started { id: eid, labels }))) => {
                assert_eq!(eid, id);
                assert_eq!(labels[TASK_ARN_LABEL], "arn:task/a");
            }
            other => panic!("unexpected {other:?}"),
        }
        let st = rt.inspect_container(&id).await.unwrap().unwrap();
        assert_eq!(st.state, ContainerState::Running);
        assert!(st.started_at.is_some());

        assert!(rt.exit(&id, 3));
        assert_eq!(
            next_now(&mut ev),
            Some(Some(Ok(RuntimeEvent::Died {
                id: id.clone(),
                labels: managed("a").labels,
                exit_code: Some(3)
            })))
        );
        let st = rt.inspect_container(&id).await.unwrap().unwrap();
        assert_eq!(st.state, ContainerState::Exited);
        assert_eq!(st.exit_code, Some(3));
        assert!(st.finished_at.unwrap() > st.started_at.unwrap());
        assert!(!rt.exit(&id, 4), "exit of a stopped container is a no-op");

        rt.remove_container(&id).await.unwrap();
        assert!(matches!(
            next_now(&mut ev),
            Some(Some(Ok(RuntimeEvent::Destroyed { .. })))
        ));
        assert_eq!(rt.inspect_container(&id).await.unwrap(), None);
        // Nothing further pending.
        assert!(next_now(&mut ev).is_none());
        // Absent is Ok.
        rt.remove_container(&id).await.unwrap();
        rt.stop_container(&id, Duration::from_secs(1))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn create_requires_image_and_unique_name() {
        let rt = FakeRuntime::new();
        let err = rt.create_container(&managed("a")).await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        rt.pull_image(IMG, None).await.unwrap();
        assert!(rt.image_present(IMG).await.unwrap());
        rt.create_container(&managed("a")).await.unwrap();
        let err = rt.create_container(&managed("a")).await.unwrap_err();
        assert!(matches!(err, RuntimeError::Conflict(_)), "{err:?}");
    }

    #[tokio::test]
    async fn unpullable_images_fail() {
        let rt = FakeRuntime::new();
        rt.set_unpullable("nope:1", "manifest unknown");
        assert_eq!(
            rt.pull_image("nope:1", None).await,
            Err(RuntimeError::ImagePull("manifest unknown".into()))
        );
        assert!(!rt.image_present("nope:1").await.unwrap());
        assert_eq!(rt.calls(), vec![FakeCall::Pull("nope:1".into())]);
    }

    #[tokio::test]
    async fn stop_and_force_remove_emit_died() {
        let rt = FakeRuntime::with_images([IMG]);
        let mut ev = rt.events();
        let a = rt.create_container(&managed("a")).await.unwrap();
        let b = rt.create_container(&managed("b")).await.unwrap();
        rt.start_container(&a).await.unwrap();
        rt.start_container(&b).await.unwrap();
        for _ in 0..2 {
            assert!(matches!(
                next_now(&mut ev),
                Some(Some(Ok(RuntimeEvent::Started { .. })))
            ));
        }
        rt.stop_container(&a, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(matches!(
            next_now(&mut ev),
            Some(Some(Ok(RuntimeEvent::Died {
                exit_code: Some(143),
                ..
            })))
        ));
        rt.remove_container(&b).await.unwrap();
        assert!(matches!(
            next_now(&mut ev),
            Some(Some(Ok(RuntimeEvent::Died {
                exit_code: Some(137),
                ..
            })))
        ));
        assert!(matches!(
            next_now(&mut ev),
            Some(Some(Ok(RuntimeEvent::Destroyed { .. })))
        ));
        assert_eq!(
            rt.calls(),
            vec![
                FakeCall::Create("a".into()),
                FakeCall::Create("b".into()),
                FakeCall::Start(a.clone()),
                FakeCall::Start(b.clone()),
                FakeCall::Stop(a.clone(), Duration::from_secs(30)),
                FakeCall::Remove(b.clone()),
            ]
        );
    }

    #[tokio::test]
    async fn health_and_oom() {
        let rt = FakeRuntime::with_images([IMG]);
        let mut spec = managed("h");
        spec.health_check = Some(HealthCheck::new(vec!["CMD-SHELL".into(), "true".into()]));
        let id = rt.create_container(&spec).await.unwrap();
        rt.start_container(&id).await.unwrap();
        assert_eq!(
            rt.inspect_container(&id).await.unwrap().unwrap().health,
            Some(Health::Starting)
        );
        let mut ev = rt.events();
        assert!(rt.set_health(&id, Health::Healthy));
        assert!(matches!(
            next_now(&mut ev),
            Some(Some(Ok(RuntimeEvent::Health {
                health: Health::Healthy,
                ..
            })))
        ));
        assert_eq!(
            rt.inspect_container(&id).await.unwrap().unwrap().health,
            Some(Health::Healthy)
        );
        assert!(rt.oom_kill(&id));
        assert!(matches!(
            next_now(&mut ev),
            Some(Some(Ok(RuntimeEvent::Oom { .. })))
        ));
        assert!(matches!(
            next_now(&mut ev),
            Some(Some(Ok(RuntimeEvent::Died {
                exit_code: Some(137),
                ..
            })))
        ));
        let st = rt.inspect_container(&id).await.unwrap().unwrap();
        assert!(st.oom_killed);
        assert_eq!(st.exit_code, Some(137));
    }

    #[tokio::test]
    async fn ports_are_assigned() {
        let rt = FakeRuntime::with_images([IMG]);
        let mut spec = managed("p");
        spec.port_bindings = vec![
            PortBinding {
                container_port: 80,
                host_port: 0,
                ..Default::default()
            },
            PortBinding {
                container_port: 443,
                host_port: 8443,
                ..Default::default()
            },
        ];
        let id = rt.create_container(&spec).await.unwrap();
        assert!(rt
            .inspect_container(&id)
            .await
            .unwrap()
            .unwrap()
            .ports
            .is_empty());
        rt.start_container(&id).await.unwrap();
        let ports = rt.inspect_container(&id).await.unwrap().unwrap().ports;
        assert_eq!(ports.len(), 2);
        assert_eq!((ports[0].container_port, ports[0].host_port), (80, 32768));
        assert_eq!((ports[1].container_port, ports[1].host_port), (443, 8443));
        rt.exit(&id, 0);
        assert!(rt
            .inspect_container(&id)
            .await
            .unwrap()
            .unwrap()
            .ports
            .is_empty());
    }

    #[tokio::test]
    async fn list_managed_only_labelled() {
        let rt = FakeRuntime::with_images([IMG]);
        let a = rt.create_container(&managed("a")).await.unwrap();
        let mut unmanaged = managed("u");
        unmanaged.labels.clear();
        let _u = rt.create_container(&unmanaged).await.unwrap();
        let b = rt.create_container(&managed("b")).await.unwrap();
        let ids: Vec<_> = rt
            .list_managed()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, vec![a, b]);
        assert_eq!(rt.containers().len(), 3);
    }

    #[tokio::test]
    async fn unmanaged_events_are_filtered() {
        let rt = FakeRuntime::with_images([IMG]);
        let mut ev = rt.events();
        let mut spec = managed("u");
        spec.labels.clear();
        let id = rt.create_container(&spec).await.unwrap();
        rt.start_container(&id).await.unwrap();
        assert!(next_now(&mut ev).is_none());
    }

    #[tokio::test]
    async fn unavailable_daemon() {
        let rt = FakeRuntime::with_images([IMG]);
        let id = rt.create_container(&managed("a")).await.unwrap();
        let mut ev = rt.events();
        assert_eq!(rt.subscriber_count(), 1);
        rt.set_available(false);
        assert!(matches!(
            next_now(&mut ev),
            Some(Some(Err(RuntimeError::Unavailable(_))))
        ));
        assert_eq!(next_now(&mut ev), Some(None), "stream ends");

        assert!(rt.info().await.unwrap_err().is_unavailable());
        assert!(rt.list_managed().await.unwrap_err().is_unavailable());
        assert!(rt.start_container(&id).await.unwrap_err().is_unavailable());
        assert!(rt
            .inspect_container(&id)
            .await
            .unwrap_err()
            .is_unavailable());
        let mut ev2 = rt.events();
        assert!(matches!(
            next_now(&mut ev2),
            Some(Some(Err(RuntimeError::Unavailable(_))))
        ));
        assert_eq!(next_now(&mut ev2), Some(None));

        rt.set_available(true);
        let mut ev3 = rt.events();
        rt.start_container(&id).await.unwrap();
        assert!(matches!(
            next_now(&mut ev3),
            Some(Some(Ok(RuntimeEvent::Started { .. })))
        ));
    }

    #[tokio::test]
    async fn injected_failures_are_one_shot() {
        let rt = FakeRuntime::with_images([IMG]);
        rt.fail_next(FakeOp::CreateContainer, RuntimeError::Other("boom".into()));
        assert_eq!(
            rt.create_container(&managed("a")).await,
            Err(RuntimeError::Other("boom".into()))
        );
        rt.create_container(&managed("a")).await.unwrap();
    }

    #[tokio::test]
    async fn volumes_are_idempotent() {
        let rt = FakeRuntime::new();
        let labels = HashMap::new();
        let none = HashMap::new();
        rt.ensure_volume("v", None, &none, &labels).await.unwrap();
        rt.ensure_volume("v", Some("local"), &none, &labels)
            .await
            .unwrap();
        assert!(rt.has_volume("v"));
        assert!(!rt.has_volume("w"));
    }

    #[tokio::test]
    async fn usable_as_trait_object() {
        let fake = FakeRuntime::with_images([IMG]);
        let rt: Arc<dyn Runtime> = Arc::new(fake.clone());
        let id = rt.create_container(&managed("a")).await.unwrap();
        rt.start_container(&id).await.unwrap();
        assert!(fake.exit(&id, 0));
        assert_eq!(
            rt.inspect_container(&id).await.unwrap().unwrap().exit_code,
            Some(0)
        );
        assert_eq!(rt.info().await.unwrap().cpus, 2);
    }
}
