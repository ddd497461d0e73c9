//! The listeners' data plane, driven by the store.
//!
//! One loop follows the store's watch of `/elb/`: on every change it reads
//! the load balancer records, builds a [`Snapshot`] (each listener's routing
//! table, each target group's targets with their health) and swaps it in
//! whole, so a request sees one consistent view; then it binds listeners
//! that are new, closes those that are gone, starts and stops health
//! checkers, and completes deregistrations that have drained. Requests read
//! the snapshot without locks. Health verdicts go back to the store, which
//! is where the next snapshot (and DescribeTargetHealth, and the ECS
//! controller) reads them.

use crate::health::{Probe, Tracker};
use crate::records::{
    keys, HealthRecord, ListenerRecord, LoadBalancerRecord, Millis, RuleRecord, TargetGroupRecord,
    TargetRecord, PREFIX,
};
use crate::routing::{RequestView, Table};
use crate::validate;
use crate::LbConfig;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use wharf_model::elbv2 as m;
use wharf_store::typed::{self, Versioned};
use wharf_store::{Compare, DynStore, Op, StoreError, Txn};

type Body = BoxBody<Bytes, hyper::Error>;

fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or_default()
}

/// Reads a PEM file holding a certificate chain and its private key, as a
/// TLS server configuration offering HTTP/2 and HTTP/1.1 and the protocol
/// versions of the listener's TLS `policy` (without one: TLS 1.2 and 1.3).
pub fn load_certificate(
    path: &std::path::Path,
    policy: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match policy {
        None => vec![&rustls::version::TLS12, &rustls::version::TLS13],
        Some(p) => crate::validate::ssl_policy_versions(p)
            .ok_or_else(|| format!("unknown TLS policy {p}"))?
            .iter()
            .map(|v| {
                if *v == "TLSv1.3" {
                    &rustls::version::TLS13
                } else {
                    &rustls::version::TLS12
                }
            })
            .collect(),
    };
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("unreadable certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("unreadable private key: {e}"))?
        .ok_or("no private key in the file")?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&versions)
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A target as requests see it.
#[derive(Debug)]
pub struct Target {
    /// `TG/ID/PORT`: names it in cookies and in the in-flight registry.
    pub key: String,
    pub id: String,
    pub port: i32,
    pub addr: Option<SocketAddr>,
    pub draining: bool,
    /// `initial`, `healthy` or `unhealthy` (always `healthy` when the
    /// group's health checks are disabled).
    pub state: String,
    /// When it last became healthy (slow start counts from here).
    pub healthy_since: Millis,
    /// The registration `state` is about.
    pub registered_at: Millis,
    /// Whether a health checker has recorded a verdict on this registration.
    pub judged: bool,
    pub in_flight: Arc<AtomicUsize>,
    /// `addr` as a URI authority, made once per snapshot, not per request.
    authority: Option<http::uri::Authority>,
}

#[derive(Debug)]
pub struct Group {
    pub record: TargetGroupRecord,
    pub targets: Vec<Arc<Target>>,
    rr: AtomicUsize,
}

impl Group {
    /// The targets a request may go to: healthy ones, or, when none is
    /// healthy, every registered one (ELB fails open).
    fn candidates(&self) -> Vec<&Arc<Target>> {
        let live: Vec<&Arc<Target>> = self
            .targets
            .iter()
            .filter(|t| !t.draining && t.addr.is_some())
            .collect();
        let healthy: Vec<&Arc<Target>> = live
            .iter()
            .copied()
            .filter(|t| t.state == "healthy")
            .collect();
        if healthy.is_empty() {
            live
        } else {
            healthy
        }
    }

    /// Picks a target by the group's algorithm, honouring a sticky choice
    /// still among the candidates and slow start.
    fn pick(&self, sticky: Option<&str>, now: Millis) -> Option<Arc<Target>> {
        let candidates = self.candidates();
        if candidates.is_empty() {
            return None;
        }
        if let Some(key) = sticky {
            if let Some(t) = candidates.iter().find(|t| t.key == key) {
                return Some(Arc::clone(t));
            }
        }
        let attr = |k: &str| self.record.attributes.get(k).map(String::as_str);
        let slow_start: Millis = attr("slow_start.duration_seconds")
            .and_then(|v| v.parse::<Millis>().ok())
            .unwrap_or(0)
            .saturating_mul(1000);
        let least = attr("load_balancing.algorithm.type") == Some("least_outstanding_requests");
        for attempt in 0..4 {
            let start = self.rr.fetch_add(1, Ordering::Relaxed);
            let t = if least {
                let n = candidates.len();
                (0..n)
                    .map(|i| candidates[start.wrapping_add(i) % n])
                    .min_by_key(|t| t.in_flight.load(Ordering::Relaxed))
                    .expect("candidates is not empty")
            } else {
                candidates[start % candidates.len()]
            };
            // In slow start a target takes a share growing linearly over
            // the window: turned down with the probability still to come.
            let age = now.saturating_sub(t.healthy_since);
            if slow_start > 0 && t.state == "healthy" && age < slow_start && attempt < 3 {
                let share = age as f64 / slow_start as f64;
                if rand::random::<f64>() > share.max(0.05) {
                    continue;
                }
            }
            return Some(Arc::clone(t));
        }
        candidates.first().map(|t| Arc::clone(t))
    }
}

/// A listener as requests see it.
#[derive(Debug)]
pub struct ListenerView {
    pub record: ListenerRecord,
    pub table: Table,
    pub lb: LoadBalancerRecord,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ListenerView {
    fn lb_attr(&self, key: &str) -> Option<&str> {
        self.lb.attributes.get(key).map(String::as_str)
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(
            self.lb_attr("idle_timeout.timeout_seconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(60),
        )
    }
}

/// Everything the data plane serves, as of one store revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub listeners: HashMap<i32, Arc<ListenerView>>,
    pub groups: HashMap<String, Arc<Group>>,
    /// Targets of groups some listener uses, by key: (group, target).
    pub checked: Vec<(Arc<Group>, Arc<Target>)>,
}

/// The running data plane.
pub struct DataPlane {
    store: DynStore,
    config: LbConfig,
    state: ArcSwap<Snapshot>,
    /// In-flight request counts per target key, kept across snapshots.
    in_flight: Mutex<HashMap<String, Arc<AtomicUsize>>>,
    /// Where client connections are served: one single-threaded runtime
    /// per core, each with its own pool of connections to targets, so a
    /// request and its upstream connection never hop between threads.
    workers: Vec<Arc<Worker>>,
    next_worker: AtomicUsize,
    requests: AtomicU64,
    /// Instance targets' addresses by ID, and when they were looked up (a
    /// failed lookup is remembered too, so an unknown ID does not hold up
    /// every rebuild).
    resolved: Mutex<HashMap<String, (Option<IpAddr>, std::time::Instant)>>,
}

/// How long a looked-up instance address is used before it is looked up again.
const RESOLVE_TTL: Duration = Duration::from_secs(30);

type Client =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

/// A thread serving client connections: its runtime and its target pool.
struct Worker {
    runtime: tokio::runtime::Handle,
    client: Client,
}

impl Worker {
    fn start(n: usize) -> std::io::Result<Arc<Worker>> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("wharf-lb-{n}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(std::future::pending::<()>());
            })?;
        let runtime = rx
            .recv()
            .map_err(|_| std::io::Error::other("load balancer worker did not start"))??;
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Arc::new(Worker { runtime, client }))
    }
}

impl DataPlane {
    /// A data plane with one worker thread per core (it serves nothing until
    /// [`DataPlane::run`]).
    pub fn new(store: DynStore, config: LbConfig) -> std::io::Result<Arc<DataPlane>> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = (0..cores)
            .map(Worker::start)
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Arc::new(DataPlane {
            store,
            config,
            state: ArcSwap::from_pointee(Snapshot::default()),
            in_flight: Mutex::new(HashMap::new()),
            workers,
            next_worker: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            resolved: Mutex::new(HashMap::new()),
        }))
    }

    /// The current snapshot (for tests and metrics).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.state.load_full()
    }

    /// Requests served since start.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Follows the store until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut listeners: HashMap<i32, (JoinHandle<()>, String)> = HashMap::new();
        let mut checkers: HashMap<String, JoinHandle<()>> = HashMap::new();
        let mut bind_failed: HashSet<i32> = HashSet::new();
        loop {
            let revision = match self.rebuild().await {
                Ok(rev) => rev,
                Err(e) => {
                    tracing::warn!(error = %e, "load balancer snapshot failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let snap = self.snapshot();
            tracing::trace!(
                revision,
                listeners = snap.listeners.len(),
                "load balancer snapshot"
            );
            self.reconcile_listeners(&snap, &mut listeners, &mut bind_failed);
            self.reconcile_checkers(&snap, &mut checkers);
            if let Err(e) = self.sweep_drained(&snap).await {
                tracing::warn!(error = %e, "completing deregistrations failed");
            }
            // Wait for a change (a second at most: draining and failed
            // binds are retried on the tick).
            let mut watch = match self.store.watch(PREFIX, revision + 1).await {
                Ok(w) => w,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let tick = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(tick);
            tokio::select! {
                ev = watch.recv() => {
                    if ev.is_some() {
                        // Let a burst of writes settle into one rebuild.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                _ = &mut tick => {}
            }
        }
    }

    async fn rebuild(&self) -> Result<i64, StoreError> {
        let store = &*self.store;
        let (lbs, revision) =
            typed::list::<LoadBalancerRecord>(store, keys::LOAD_BALANCERS).await?;
        let (tgs, _) = typed::list::<TargetGroupRecord>(store, keys::TARGET_GROUPS).await?;
        let (listeners, _) = typed::list::<ListenerRecord>(store, keys::LISTENERS).await?;
        let (rules, _) = typed::list::<RuleRecord>(store, keys::RULES).await?;
        let (targets, _) = typed::list::<TargetRecord>(store, keys::TARGETS).await?;
        let (health, _) = typed::list::<HealthRecord>(store, keys::HEALTH).await?;
        let health: HashMap<&str, &HealthRecord> = health
            .iter()
            .map(|h| (h.key.trim_start_matches(keys::HEALTH), &h.value))
            .collect();
        let lbs: HashMap<&str, &LoadBalancerRecord> = lbs
            .iter()
            .map(|l| (l.value.arn.as_str(), &l.value))
            .collect();

        let mut snap = Snapshot::default();
        let mut by_group: BTreeMap<&str, Vec<&Versioned<TargetRecord>>> = BTreeMap::new();
        for t in &targets {
            let rest = t.key.trim_start_matches(keys::TARGETS);
            if let Some((tg, _)) = rest.split_once('/') {
                by_group.entry(tg).or_default().push(t);
            }
        }
        for tg in &tgs {
            let g = &tg.value;
            let mut members = Vec::new();
            for t in by_group.get(g.scoped_name().as_str()).into_iter().flatten() {
                let key = t.key.trim_start_matches(keys::TARGETS).to_owned();
                let h = health
                    .get(key.as_str())
                    .filter(|h| h.registered_at == t.value.registered_at);
                let state = if !g.health_check.enabled {
                    "healthy".to_owned()
                } else {
                    h.map(|h| h.state.clone())
                        .unwrap_or_else(|| "initial".into())
                };
                let addr = self
                    .resolve(&g.target_type, &t.value.id, t.value.port)
                    .await;
                members.push(Arc::new(Target {
                    in_flight: self.counter(&key),
                    authority: addr.and_then(|a| a.to_string().parse().ok()),
                    key,
                    id: t.value.id.clone(),
                    port: t.value.port,
                    addr,
                    draining: t.value.deregistered_at.is_some(),
                    healthy_since: h.map(|h| h.since).unwrap_or(t.value.registered_at),
                    registered_at: t.value.registered_at,
                    judged: h.is_some(),
                    state,
                }));
            }
            snap.groups.insert(
                g.arn.clone(),
                Arc::new(Group {
                    record: g.clone(),
                    targets: members,
                    rr: AtomicUsize::new(0),
                }),
            );
        }
        let mut used = HashSet::new();
        for l in &listeners {
            let l = &l.value;
            let Some(lb) = lbs.get(l.load_balancer_arn.as_str()) else {
                continue;
            };
            let mine: Vec<&RuleRecord> = rules
                .iter()
                .map(|r| &r.value)
                .filter(|r| r.listener_arn == l.arn)
                .collect();
            let Some(table) = Table::build(l, &mine) else {
                continue;
            };
            for a in table.actions() {
                for (tg, _) in validate::forward_groups(a).unwrap_or_default() {
                    used.insert(tg);
                }
            }
            let tls = if l.protocol == "HTTPS" {
                let path = l
                    .certificates
                    .first()
                    .and_then(|c| c.certificate_arn.as_deref())
                    .and_then(|a| a.strip_prefix("file://"));
                match path
                    .map(|p| load_certificate(std::path::Path::new(p), l.ssl_policy.as_deref()))
                {
                    Some(Ok(c)) => Some(c),
                    other => {
                        tracing::warn!(listener = %l.arn, error = ?other.map(|r| r.err()), "HTTPS listener has no usable certificate");
                        continue;
                    }
                }
            } else {
                None
            };
            snap.listeners.insert(
                l.port,
                Arc::new(ListenerView {
                    record: l.clone(),
                    table,
                    lb: (*lb).clone(),
                    tls,
                }),
            );
        }
        for (arn, g) in &snap.groups {
            if used.contains(arn) && g.record.health_check.enabled {
                for t in &g.targets {
                    if !t.draining {
                        snap.checked.push((Arc::clone(g), Arc::clone(t)));
                    }
                }
            }
        }
        // Drop counters of targets that are gone.
        {
            let live: HashSet<&str> = snap
                .groups
                .values()
                .flat_map(|g| g.targets.iter().map(|t| t.key.as_str()))
                .collect();
            let mut counters = self.in_flight.lock().expect("in-flight lock");
            counters.retain(|k, c| live.contains(k.as_str()) || c.load(Ordering::Relaxed) > 0);
        }
        self.state.store(Arc::new(snap));
        Ok(revision)
    }

    /// Where an instance or IP target is reached: an `ip` target's ID is its
    /// address; an `instance` target's ID is the container instance's
    /// `ec2InstanceId` (the host name its agent reported), resolved on this
    /// host.
    async fn resolve(&self, target_type: &str, id: &str, port: i32) -> Option<SocketAddr> {
        let port = u16::try_from(port).ok()?;
        if let Ok(ip) = id.parse::<IpAddr>() {
            return Some(SocketAddr::new(ip, port));
        }
        if target_type == "ip" {
            return None;
        }
        if let Some((ip, at)) = self.resolved.lock().expect("resolved lock").get(id) {
            if at.elapsed() < RESOLVE_TTL {
                return ip.map(|ip| SocketAddr::new(ip, port));
            }
        }
        let lookup = tokio::net::lookup_host((id, port));
        let ip = match tokio::time::timeout(Duration::from_secs(2), lookup).await {
            Ok(Ok(mut addrs)) => addrs.find(|a| a.is_ipv4()).map(|a| a.ip()),
            _ => None,
        };
        if ip.is_none() {
            tracing::warn!(id, "cannot resolve instance target");
        }
        self.resolved
            .lock()
            .expect("resolved lock")
            .insert(id.to_owned(), (ip, std::time::Instant::now()));
        ip.map(|ip| SocketAddr::new(ip, port))
    }

    fn counter(&self, key: &str) -> Arc<AtomicUsize> {
        let mut counters = self.in_flight.lock().expect("in-flight lock");
        Arc::clone(counters.entry(key.to_owned()).or_default())
    }

    fn reconcile_listeners(
        self: &Arc<Self>,
        snap: &Snapshot,
        running: &mut HashMap<i32, (JoinHandle<()>, String)>,
        bind_failed: &mut HashSet<i32>,
    ) {
        running.retain(|port, (task, protocol)| {
            let keep = snap
                .listeners
                .get(port)
                .is_some_and(|l| (l.record.protocol == "TCP") == (protocol == "TCP"))
                && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (port, view) in &snap.listeners {
            if running.contains_key(port) {
                continue;
            }
            let addr = SocketAddr::new(self.config.bind, *port as u16);
            let std_listener = match std::net::TcpListener::bind(addr) {
                Ok(l) => l,
                Err(e) => {
                    if bind_failed.insert(*port) {
                        tracing::error!(%addr, error = %e, listener = %view.record.arn, "cannot bind listener; retrying every second");
                    }
                    continue;
                }
            };
            bind_failed.remove(port);
            if std_listener.set_nonblocking(true).is_err() {
                continue;
            }
            let Ok(listener) = TcpListener::from_std(std_listener) else {
                continue;
            };
            tracing::info!(%addr, protocol = %view.record.protocol, listener = %view.record.arn, "listener serving");
            let me = Arc::clone(self);
            let port = *port;
            let task = if view.record.protocol == "TCP" {
                tokio::spawn(async move { me.serve_tcp(listener, port).await })
            } else {
                tokio::spawn(async move { me.serve_http(listener, port).await })
            };
            running.insert(port, (task, view.record.protocol.clone()));
        }
    }

    fn reconcile_checkers(
        self: &Arc<Self>,
        snap: &Snapshot,
        running: &mut HashMap<String, JoinHandle<()>>,
    ) {
        let mut wanted: HashMap<String, (Arc<Group>, Arc<Target>)> = HashMap::new();
        for (g, t) in &snap.checked {
            // Restart a checker when its group's settings change, and when
            // the target is registered anew (a checker judges one registration).
            let fingerprint = format!(
                "{}|{}|{:?}|{:?}",
                t.key, t.registered_at, g.record.health_check, t.addr
            );
            wanted.insert(fingerprint, (Arc::clone(g), Arc::clone(t)));
        }
        running.retain(|k, task| {
            let keep = wanted.contains_key(k) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (k, (g, t)) in wanted {
            if running.contains_key(&k) {
                continue;
            }
            let me = Arc::clone(self);
            running.insert(k, tokio::spawn(async move { me.check(g, t).await }));
        }
    }

    /// Probes one target on its group's interval and writes each change of
    /// verdict to the store.
    async fn check(self: Arc<Self>, group: Arc<Group>, target: Arc<Target>) {
        let hc = group.record.health_check.clone();
        let tg = group.record.scoped_name();
        let key = keys::health(&tg, &target.id, target.port);
        let target_key = keys::target(&tg, &target.id, target.port);
        // The snapshot holds the registration and its last verdict: resume
        // from it, so a restart does not send healthy targets back to initial.
        let mut tracker = Tracker::resume(&target.state);
        if !target.judged {
            self.record_health(&key, &target_key, target.registered_at, &tracker)
                .await;
        }
        let interval = Duration::from_secs(hc.interval_seconds.max(1) as u64);
        let timeout = Duration::from_secs(hc.timeout_seconds.max(1) as u64);
        let port = if hc.port == "traffic-port" {
            target.port
        } else {
            hc.port.parse().unwrap_or(target.port)
        };
        // The first probe goes at once: a new target should not wait an
        // interval to start counting towards healthy.
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            // An instance that cannot be found fails its checks.
            let probe = match target.addr.map(|a| SocketAddr::new(a.ip(), port as u16)) {
                Some(addr) => self.probe(&hc, addr, timeout).await,
                None => Probe::Failed,
            };
            let changed = tracker.observe(&probe, hc.healthy_threshold, hc.unhealthy_threshold);
            if changed {
                tracing::info!(target = %target.key, state = tracker.state, reason = ?tracker.reason, "target health changed");
                self.record_health(&key, &target_key, target.registered_at, &tracker)
                    .await;
            }
        }
    }

    async fn record_health(
        &self,
        key: &str,
        target_key: &str,
        registered_at: Millis,
        tracker: &Tracker,
    ) {
        let record = HealthRecord {
            state: tracker.state.to_owned(),
            reason: tracker.reason.map(str::to_owned),
            description: None,
            since: now_ms(),
            registered_at,
        };
        // Only while the registration it judges is the current one.
        let txn = Txn::new()
            .when(Compare::Exists(target_key.to_owned()))
            .then(typed::put(key, &record));
        if let Err(e) = self.store.txn(txn).await {
            tracing::warn!(key, error = %e, "recording target health failed");
        }
    }

    async fn probe(
        &self,
        hc: &crate::records::HealthCheck,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Probe {
        let attempt = async {
            let stream = TcpStream::connect(addr).await.map_err(|_| Probe::Failed)?;
            if hc.protocol == "TCP" {
                return Ok(Probe::Ok);
            }
            let _ = stream.set_nodelay(true);
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                    .await
                    .map_err(|_| Probe::Failed)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let req = Request::get(hc.path.as_deref().unwrap_or("/"))
                .header(header::HOST, addr.to_string())
                .header(header::USER_AGENT, "ELB-HealthChecker/2.0")
                .header(header::CONNECTION, "close")
                .body(Empty::new())
                .map_err(|_| Probe::Failed)?;
            let resp = sender.send_request(req).await.map_err(|_| Probe::Failed)?;
            let code = resp.status().as_u16();
            let matcher = hc.matcher.as_deref().unwrap_or("200");
            Ok(if validate::matches_code(matcher, code) {
                Probe::Ok
            } else {
                Probe::Mismatch(code)
            })
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(p)) | Ok(Err(p)) => p,
            Err(_) => Probe::Timeout,
        }
    }

    /// Completes deregistrations: a draining target goes once it has no
    /// request in flight (after a second, so a request that chose it from
    /// the previous snapshot has counted itself) or its group's
    /// deregistration delay has passed.
    async fn sweep_drained(&self, snap: &Snapshot) -> Result<(), StoreError> {
        let now = now_ms();
        for g in snap.groups.values() {
            let delay = g.record.deregistration_delay_ms();
            for t in g.targets.iter().filter(|t| t.draining) {
                let key = keys::target(&g.record.scoped_name(), &t.id, t.port);
                let Some(reg) = typed::get::<TargetRecord>(&*self.store, &key).await? else {
                    continue;
                };
                let Some(since) = reg.value.deregistered_at else {
                    continue;
                };
                let idle = t.in_flight.load(Ordering::Relaxed) == 0 && now - since >= 1000;
                if idle || now - since >= delay {
                    let txn = Txn::new()
                        .when(reg.unchanged())
                        .then(Op::delete(&key))
                        .then(Op::delete(keys::health(
                            &g.record.scoped_name(),
                            &t.id,
                            t.port,
                        )));
                    self.store.txn(txn).await?;
                    tracing::info!(target = %t.key, "deregistration complete");
                }
            }
        }
        Ok(())
    }

    async fn serve_http(self: Arc<Self>, listener: TcpListener, port: i32) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let me = Arc::clone(&self);
            // Each connection is served on one worker thread, start to end.
            let n = self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len();
            let worker = Arc::clone(&self.workers[n]);
            let Ok(stream) = stream.into_std() else {
                continue;
            };
            worker.runtime.clone().spawn(async move {
                let Ok(stream) = TcpStream::from_std(stream) else {
                    return;
                };
                let Some(view) = me.snapshot().listeners.get(&port).cloned() else {
                    return;
                };
                let http2 = view.lb_attr("routing.http2.enabled") != Some("false");
                let tls = view.tls.is_some();
                let service = {
                    let me = Arc::clone(&me);
                    hyper::service::service_fn(move |req| {
                        let me = Arc::clone(&me);
                        let worker = Arc::clone(&worker);
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                me.handle(req, port, peer, tls, &worker.client).await,
                            )
                        }
                    })
                };
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                // A kept-alive connection idle past the load balancer's idle
                // timeout is closed, as ELB closes it (hyper times the wait
                // for each request's head).
                builder
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(view.idle_timeout());
                if !http2 {
                    builder = builder.http1_only();
                }
                let result = match &view.tls {
                    Some(config) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(config));
                        let Ok(Ok(tls)) =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                                .await
                        else {
                            return;
                        };
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(tls), service)
                            .await
                    }
                    None => {
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "client connection ended");
                }
            });
        }
    }

    async fn serve_tcp(self: Arc<Self>, listener: TcpListener, port: i32) {
        loop {
            let Ok((mut client, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let me = Arc::clone(&self);
            tokio::spawn(async move {
                let snap = me.snapshot();
                let Some(view) = snap.listeners.get(&port) else {
                    return;
                };
                let Some(group) =
                    choose_group(&view.record.default_actions, &snap, None).map(|(g, _)| g)
                else {
                    return;
                };
                let Some(target) = group.pick(None, now_ms()) else {
                    return;
                };
                let Some(addr) = target.addr else { return };
                let _guard = InFlight::new(&target.in_flight);
                match TcpStream::connect(addr).await {
                    Ok(mut upstream) => {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    Err(e) => tracing::debug!(%peer, %addr, error = %e, "TCP target unreachable"),
                }
            });
        }
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        port: i32,
        peer: SocketAddr,
        tls: bool,
        client: &Client,
    ) -> Response<Body> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let snap = self.snapshot();
        let Some(view) = snap.listeners.get(&port).cloned() else {
            return elb_error(StatusCode::SERVICE_UNAVAILABLE);
        };
        let host_header = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let host = host_header
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map(|(h, _)| h)
            .unwrap_or(&host_header)
            .to_owned();
        let action = {
            let view_req = RequestView {
                method: req.method().as_str(),
                host: &host,
                path: req.uri().path(),
                query: req.uri().query().unwrap_or(""),
                headers: req.headers(),
                source: peer.ip(),
            };
            view.table.route(&view_req)
        };
        match action.r#type.as_str() {
            "fixed-response" => fixed_response(action),
            "redirect" => redirect(action, &req, &host, port, tls),
            _ => {
                self.forward(req, action, &snap, &view, peer, tls, client)
                    .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        action: &m::Action,
        snap: &Snapshot,
        view: &ListenerView,
        peer: SocketAddr,
        tls: bool,
        client: &Client,
    ) -> Response<Body> {
        let cookies = cookies(req.headers());
        let Some((group, group_cookie)) = choose_group(
            std::slice::from_ref(action),
            snap,
            cookies.get("AWSALBTG").map(String::as_str),
        ) else {
            return elb_error(StatusCode::SERVICE_UNAVAILABLE);
        };
        let attrs = &group.record.attributes;
        let sticky = attrs.get("stickiness.enabled").map(String::as_str) == Some("true");
        let now = now_ms();
        let Some(target) = group.pick(
            if sticky {
                cookies.get("AWSALB").map(String::as_str)
            } else {
                None
            },
            now,
        ) else {
            return elb_error(StatusCode::SERVICE_UNAVAILABLE);
        };

        // The request as the target gets it.
        let upgrade = req.headers().contains_key(header::UPGRADE);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        if !parts.headers.contains_key(header::HOST) {
            if let Some(a) = parts.uri.authority() {
                if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                    parts.headers.insert(header::HOST, v);
                }
            }
        }
        strip_hop_by_hop(&mut parts.headers, upgrade);
        add_forwarded(&mut parts.headers, view, peer, tls);
        let client_version = parts.version;
        parts.version = http::Version::HTTP_11;
        let bodiless = body_is_empty(&parts.headers);
        // Safe to send again elsewhere when nothing of it can have taken
        // effect: it never reached the target, or it is an idempotent request
        // without a body and no byte of an answer came back.
        let replayable = bodiless
            && !upgrade
            && matches!(
                parts.method,
                http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
            );
        let idle = view.idle_timeout();
        let mut tried = Vec::new();
        let mut current = target;
        let mut body = Some(body.boxed());
        loop {
            let (Some(_), Some(authority)) = (current.addr, current.authority.clone()) else {
                return elb_error(StatusCode::BAD_GATEWAY);
            };
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(http::uri::Scheme::HTTP);
            uri.authority = Some(authority);
            uri.path_and_query = Some(path.clone());
            let Ok(uri) = http::Uri::from_parts(uri) else {
                return elb_error(StatusCode::BAD_REQUEST);
            };
            let mut out = Request::from_parts(
                parts.clone(),
                body.take()
                    .unwrap_or_else(|| Empty::new().map_err(|e| match e {}).boxed()),
            );
            *out.uri_mut() = uri;
            let guard = InFlight::new(&current.in_flight);
            let result = tokio::time::timeout(idle, client.request(out)).await;
            match result {
                Err(_) => return elb_error(StatusCode::GATEWAY_TIMEOUT),
                Ok(Err(e)) => {
                    drop(guard);
                    // Another target, at most twice: a connection refused
                    // (nothing sent), or one lost before any answer to a
                    // request that may be repeated.
                    if ((e.is_connect() && bodiless) || replayable) && tried.len() < 2 {
                        tried.push(current.key.clone());
                        if let Some(next) = group
                            .candidates()
                            .into_iter()
                            .find(|t| !tried.contains(&t.key))
                        {
                            current = Arc::clone(next);
                            continue;
                        }
                    }
                    tracing::debug!(target = %current.key, error = %e, "target failed");
                    return elb_error(StatusCode::BAD_GATEWAY);
                }
                Ok(Ok(mut resp)) => {
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                        if let Some(client_up) = client_upgrade {
                            let server_up = hyper::upgrade::on(&mut resp);
                            tokio::spawn(async move {
                                let _guard = guard;
                                if let (Ok(c), Ok(s)) = (client_up.await, server_up.await) {
                                    let _ = tokio::io::copy_bidirectional(
                                        &mut TokioIo::new(c),
                                        &mut TokioIo::new(s),
                                    )
                                    .await;
                                }
                            });
                            let (parts, _) = resp.into_parts();
                            return Response::from_parts(
                                parts,
                                Empty::new().map_err(|e| match e {}).boxed(),
                            );
                        }
                    }
                    let (mut rparts, rbody) = resp.into_parts();
                    strip_hop_by_hop(&mut rparts.headers, false);
                    // The client's protocol, not the target's (an HTTP/1.0
                    // target answers an HTTP/1.1 or HTTP/2 client).
                    rparts.version = client_version;
                    if sticky {
                        let secs = attrs
                            .get("stickiness.lb_cookie.duration_seconds")
                            .map(String::as_str)
                            .unwrap_or("86400");
                        set_cookie(&mut rparts.headers, "AWSALB", &current.key, secs);
                    }
                    if let Some((name, secs)) = &group_cookie {
                        set_cookie(&mut rparts.headers, "AWSALBTG", name, secs);
                    }
                    // The request stays in flight until its body is sent.
                    let body = GuardedBody {
                        inner: rbody,
                        _guard: guard,
                    };
                    return Response::from_parts(rparts, body.boxed());
                }
            }
        }
    }
}

/// The group-stickiness cookie to set: (group name, max age in seconds).
type GroupCookie = (String, String);

/// The target group a forward action sends this request to, by weight
/// (or by the group-stickiness cookie), with the cookie to set if the
/// action has group stickiness.
fn choose_group(
    actions: &[m::Action],
    snap: &Snapshot,
    sticky_group: Option<&str>,
) -> Option<(Arc<Group>, Option<GroupCookie>)> {
    let action = actions.first()?;
    // The common case: one target group, no weights, no group stickiness.
    if action.forward_config.is_none() {
        let arn = action.target_group_arn.as_deref()?;
        return Some((Arc::clone(snap.groups.get(arn)?), None));
    }
    let groups = validate::forward_groups(action).ok()?;
    let stickiness = action
        .forward_config
        .as_ref()
        .and_then(|f| f.target_group_stickiness_config.as_ref())
        .filter(|s| s.enabled == Some(true));
    let cookie = |g: &Group| {
        stickiness.map(|s| {
            (
                g.record.name.clone(),
                s.duration_seconds.unwrap_or(3600).to_string(),
            )
        })
    };
    if let (Some(_), Some(name)) = (stickiness, sticky_group) {
        if let Some((arn, _)) = groups
            .iter()
            .find(|(arn, w)| *w > 0 && snap.groups.get(arn).is_some_and(|g| g.record.name == name))
        {
            let g = Arc::clone(snap.groups.get(arn)?);
            let c = cookie(&g);
            return Some((g, c));
        }
    }
    let total: u32 = groups.iter().map(|(_, w)| *w).sum();
    let arn = if groups.len() == 1 || total == 0 {
        &groups[0].0
    } else {
        let mut n = rand::random::<u32>() % total;
        let mut chosen = &groups[0].0;
        for (arn, w) in &groups {
            if n < *w {
                chosen = arn;
                break;
            }
            n -= w;
        }
        chosen
    };
    let g = Arc::clone(snap.groups.get(arn)?);
    let c = cookie(&g);
    Some((g, c))
}

/// Counts a request in flight on a target while alive.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(c: &Arc<AtomicUsize>) -> InFlight {
        c.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(c))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted in flight until sent.
struct GuardedBody {
    inner: Incoming,
    _guard: InFlight,
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

fn body_is_empty(h: &http::HeaderMap) -> bool {
    !h.contains_key(header::TRANSFER_ENCODING)
        && h.get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(h: &mut http::HeaderMap, keep_upgrade: bool) {
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter(|s| !s.is_empty() && s != "upgrade")
        .collect();
    for name in named {
        h.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        if keep_upgrade && matches!(*name, "connection" | "upgrade") {
            continue;
        }
        h.remove(*name);
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn add_forwarded(h: &mut http::HeaderMap, view: &ListenerView, peer: SocketAddr, tls: bool) {
    let client = if view.lb_attr("routing.http.xff_client_port.enabled") == Some("true") {
        peer.to_string()
    } else {
        peer.ip().to_string()
    };
    match view
        .lb_attr("routing.http.xff_header_processing.mode")
        .unwrap_or("append")
    {
        "remove" => {
            h.remove("x-forwarded-for");
        }
        "preserve" => {}
        _ => {
            let joined = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(prior) if !prior.is_empty() => format!("{prior}, {client}"),
                _ => client,
            };
            if let Ok(v) = HeaderValue::from_str(&joined) {
                h.insert("x-forwarded-for", v);
            }
        }
    }
    h.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    if let Ok(v) = HeaderValue::from_str(&view.record.port.to_string()) {
        h.insert("x-forwarded-port", v);
    }
    if !h.contains_key("x-amzn-trace-id") {
        let secs = now_ms() / 1000;
        let random: [u8; 12] = rand::random();
        let id = format!("Root=1-{secs:08x}-{}", hex::encode(random));
        if let Ok(v) = HeaderValue::from_str(&id) {
            h.insert("x-amzn-trace-id", v);
        }
    }
}

fn cookies(h: &http::HeaderMap) -> HashMap<String, String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .map(|(k, v)| (k.to_owned(), unescape(v)))
        .collect()
}

/// A cookie value as [`set_cookie`] escaped it (`%XX`), back to its bytes.
fn unescape(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn set_cookie(h: &mut http::HeaderMap, name: &str, value: &str, max_age: &str) {
    let value: String = value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("{name}={value}; Max-Age={max_age}; Path=/")) {
        h.append(header::SET_COOKIE, v);
    }
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).map_err(|e| match e {}).boxed());
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
    resp
}

/// ELB's own error page for `status` (502, 503, 504, …).
fn elb_error(status: StatusCode) -> Response<Body> {
    let text = format!(
        "<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n<center><h1>{status}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    full(status, "text/html", text)
}

fn fixed_response(action: &m::Action) -> Response<Body> {
    let Some(f) = &action.fixed_response_config else {
        return elb_error(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let status = f
        .status_code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    full(
        status,
        f.content_type
            .as_deref()
            .unwrap_or("text/plain; charset=utf-8"),
        f.message_body.clone().unwrap_or_default(),
    )
}

/// A redirect action's `Location`: each component the configuration gives
/// (with `#{protocol}`, `#{host}`, `#{port}`, `#{path}`, `#{query}` standing
/// for the request's own), the request's otherwise.
fn redirect(
    action: &m::Action,
    req: &Request<Incoming>,
    host: &str,
    port: i32,
    tls: bool,
) -> Response<Body> {
    let Some(r) = &action.redirect_config else {
        return elb_error(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let protocol = if tls { "HTTPS" } else { "HTTP" };
    let path = req.uri().path();
    let path_no_slash = path.trim_start_matches('/');
    let query = req.uri().query().unwrap_or("");
    let fill = |s: &str| {
        s.replace("#{protocol}", protocol)
            .replace("#{host}", host)
            .replace("#{port}", &port.to_string())
            .replace("#{path}", path_no_slash)
            .replace("#{query}", query)
    };
    let proto = fill(r.protocol.as_deref().unwrap_or("#{protocol}")).to_ascii_lowercase();
    let to_host = fill(r.host.as_deref().unwrap_or("#{host}"));
    let to_port = fill(r.port.as_deref().unwrap_or("#{port}"));
    let to_path = match &r.path {
        Some(p) => fill(p),
        None => path.to_owned(),
    };
    let to_query = fill(r.query.as_deref().unwrap_or("#{query}"));
    let default_port = if proto == "https" { "443" } else { "80" };
    let mut location = format!("{proto}://{to_host}");
    if to_port != default_port {
        location.push(':');
        location.push_str(&to_port);
    }
    location.push_str(&to_path);
    if !to_query.is_empty() {
        location.push('?');
        location.push_str(&to_query);
    }
    let status = if r.status_code.as_str() == "HTTP_301" {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::FOUND
    };
    let mut resp = full(status, "text/html", "");
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sticky target's key (`REGION:TG/ID/PORT`) comes back from the
    /// client's cookie as it was set, escapes and all.
    #[test]
    fn cookie_values_read_back_as_set() {
        let key = "eu-west-1:pair/127.0.0.1/8080";
        let mut set = http::HeaderMap::new();
        set_cookie(&mut set, "AWSALB", key, "60");
        let sent = set[header::SET_COOKIE].to_str().unwrap();
        assert!(sent.starts_with("AWSALB=eu-west-1%3Apair/"), "{sent}");
        let mut req = http::HeaderMap::new();
        let pair = sent.split(';').next().unwrap();
        req.insert(header::COOKIE, format!("other=1; {pair}").parse().unwrap());
        assert_eq!(cookies(&req)["AWSALB"], key);
        assert_eq!(unescape("100%"), "100%");
    }
}
