//! The endpoint tasks reach at 169.254.170.2, as the ECS agent serves it:
//! task role credentials (`/v2/credentials/ID`, see [`crate::credentials`])
//! and task metadata (`/v4/TOKEN…`, see [`crate::metadata`]).
//!
//! The address is put on the host's loopback interface, so it is local to
//! the host and reached alike from a bridge container (through its
//! gateway), a host-network one and an awsvpc task's namespace (through
//! the awsvpc network's gateway); the ECS agent reaches the same with a
//! NAT rule. One endpoint serves every agent of a process (`wharf up`'s
//! two); each agent marks what it put there, and replaces or drops only
//! its own.

use crate::credentials::TaskCredentials;
use crate::metadata::TaskView;
use crate::runtime::Runtime;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// Where the ECS agent's endpoint is, and so where SDKs look.
pub const DEFAULT_ADDRESS: &str = "169.254.170.2:80";

/// A status and a JSON body.
pub type Answer = (StatusCode, axum::Json<serde_json::Value>);

struct Entry {
    /// The agent (of this process) whose task it is.
    owner: u64,
    credentials: TaskCredentials,
}

/// What every agent of this process serves: task role credentials by ID,
/// and task metadata by each container's token.
pub struct Endpoint {
    entries: RwLock<HashMap<String, Entry>>,
    metadata: RwLock<Metadata>,
    /// Docker, for `/stats` (the agents of a process share one).
    runtime: Option<Arc<dyn Runtime>>,
    /// `http://ADDRESS` (no `:80`), when served.
    base_url: Option<String>,
    /// Why tasks cannot be served, when the endpoint could not be opened.
    unavailable: Option<String>,
}

/// The tasks the metadata endpoint knows, and which container each token
/// is.
#[derive(Default)]
struct Metadata {
    /// By task ARN: the agent that put it, when, and the view.
    tasks: HashMap<String, (u64, Instant, Arc<TaskView>)>,
    tokens: HashMap<String, (String, String)>,
}

impl Endpoint {
    /// Serves at `address` (`169.254.170.2:80` unless given), with
    /// `runtime`'s stats: puts the address on the loopback interface when
    /// it is not on the host yet, then listens. An endpoint that cannot
    /// listen says why to every task with a role, which then fails to start.
    pub async fn serve(address: &str, runtime: Arc<dyn Runtime>) -> Arc<Endpoint> {
        match listen(address).await {
            Ok(listener) => {
                let base = format!("http://{}", address.trim_end_matches(":80"));
                let endpoint = Arc::new(Endpoint {
                    base_url: Some(base),
                    runtime: Some(runtime),
                    ..Endpoint::new(None)
                });
                let served = endpoint.clone();
                tracing::info!(%address, "serving task role credentials and task metadata");
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, router(served)).await {
                        tracing::error!(error = %e, "the task credentials endpoint stopped");
                    }
                });
                endpoint
            }
            Err(why) => {
                let why = format!("the task credentials endpoint {address} is not served: {why}");
                tracing::warn!("{why}; tasks with a task role will fail to start");
                Arc::new(Endpoint::new(Some(why)))
            }
        }
    }

    /// An endpoint that serves nothing, with the reason tasks are given.
    pub fn disabled(why: &str) -> Arc<Endpoint> {
        Arc::new(Endpoint::new(Some(why.to_string())))
    }

    pub(crate) fn new(unavailable: Option<String>) -> Endpoint {
        Endpoint {
            base_url: None,
            entries: RwLock::new(HashMap::new()),
            metadata: RwLock::new(Metadata::default()),
            runtime: None,
            unavailable,
        }
    }

    /// Why tasks with a role cannot be served here, if they cannot.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// `http://169.254.170.2` (or where it is served), if it is.
    pub fn base_url(&self) -> Option<&str> {
        self.base_url.as_deref()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<TaskCredentials> {
        self.read().get(id).map(|e| e.credentials.clone())
    }

    /// Whether the task's credentials under `id` are, at `now` (the
    /// agent's clock), too new to fetch again.
    pub fn fresh(&self, id: &str, task_arn: &str, now: i64) -> bool {
        self.read()
            .get(id)
            .is_some_and(|e| e.credentials.task_arn == task_arn && now < e.credentials.refresh_at)
    }

    pub fn put(&self, owner: u64, id: &str, credentials: TaskCredentials) {
        self.write()
            .insert(id.to_string(), Entry { owner, credentials });
    }

    /// The ID the task's credentials are served under, if they are.
    pub fn id_of(&self, task_arn: &str) -> Option<String> {
        self.read()
            .iter()
            .find(|(_, e)| e.credentials.task_arn == task_arn)
            .map(|(id, _)| id.clone())
    }

    /// Drops `owner`'s credentials whose task `keep` does not keep
    /// (stopped, or no longer the agent's).
    pub fn retain(&self, owner: u64, keep: impl Fn(&str) -> bool) {
        self.write()
            .retain(|_, e| e.owner != owner || keep(&e.credentials.task_arn));
    }

    /// Replaces what `owner` serves of task metadata with `views`: its
    /// tasks as a pass saw them in Docker's list taken at `listed`. A task
    /// whose view was set after that (a container created meanwhile) keeps
    /// the newer one.
    pub fn set_metadata(&self, owner: u64, views: Vec<TaskView>, listed: Instant) {
        let mut m = self.metadata.write().unwrap_or_else(|e| e.into_inner());
        m.tasks.retain(|_, (o, at, _)| *o != owner || *at > listed);
        for v in views {
            if m.tasks
                .get(&v.task_arn)
                .is_some_and(|(_, at, _)| *at > listed)
            {
                continue;
            }
            m.tasks
                .insert(v.task_arn.clone(), (owner, listed, Arc::new(v)));
        }
        let Metadata { tasks, tokens } = &mut *m;
        tokens.retain(|_, (task, _)| tasks.contains_key(task));
        for (_, _, v) in tasks.values() {
            index_tokens(tokens, v);
        }
    }

    /// Replaces one task's metadata (a container just created is served
    /// before it starts, as the ECS agent does).
    pub fn set_task_metadata(&self, owner: u64, view: TaskView) {
        let mut m = self.metadata.write().unwrap_or_else(|e| e.into_inner());
        index_tokens(&mut m.tokens, &view);
        m.tasks.insert(
            view.task_arn.clone(),
            (owner, Instant::now(), Arc::new(view)),
        );
    }

    /// The task a token's container belongs to, and the container's name.
    pub fn metadata_of(&self, token: &str) -> Option<(Arc<TaskView>, String)> {
        let m = self.metadata.read().unwrap_or_else(|e| e.into_inner());
        let (task, name) = m.tokens.get(token)?;
        let (_, _, view) = m.tasks.get(task)?;
        Some((view.clone(), name.clone()))
    }

    /// The runtime that answers `/stats`.
    pub(crate) fn runtime(&self) -> Option<Arc<dyn Runtime>> {
        self.runtime.clone()
    }
}

/// Points each of the view's containers' tokens at it.
fn index_tokens(tokens: &mut HashMap<String, (String, String)>, view: &TaskView) {
    for c in &view.containers {
        if let Some(token) = &c.token {
            tokens.insert(token.clone(), (view.task_arn.clone(), c.name.clone()));
        }
    }
}

/// `2026-12-04T01:02:03.5Z`: the time format of the ECS agent's JSON.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> Option<String> {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

async fn listen(address: &str) -> Result<tokio::net::TcpListener, String> {
    let addr: SocketAddr = address
        .parse()
        .map_err(|e| format!("not an address and port ({e})"))?;
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => return Ok(l),
        Err(e) if e.kind() != std::io::ErrorKind::AddrNotAvailable => return Err(e.to_string()),
        Err(_) => {}
    }
    // Not an address of this host yet: make it one, on loopback.
    let out = tokio::process::Command::new("ip")
        .args(["address", "add", &format!("{}/32", addr.ip()), "dev", "lo"])
        .output()
        .await
        .map_err(|e| format!("cannot run `ip address add` ({e})"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Another process may have added it meanwhile.
        if !stderr.contains("File exists") {
            return Err(format!(
                "cannot add {} to the loopback interface: {}",
                addr.ip(),
                stderr.trim()
            ));
        }
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| e.to_string())
}

fn router(endpoint: Arc<Endpoint>) -> axum::Router {
    axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let endpoint = endpoint.clone();
        async move { answer(&endpoint, uri.path()).await }
    })
}

/// The answer to `GET path`.
pub async fn answer(endpoint: &Endpoint, path: &str) -> Answer {
    if path.starts_with("/v2/credentials") {
        crate::credentials::answer(endpoint, path)
    } else if let Some(rest) = path.strip_prefix("/v4/") {
        crate::metadata::answer(endpoint, rest).await
    } else {
        refusal(StatusCode::NOT_FOUND, "NotFound", "No such endpoint")
    }
}

/// The ECS agent's error body.
pub(crate) fn refusal(status: StatusCode, code: &str, message: &str) -> Answer {
    (
        status,
        axum::Json(serde_json::json!({
            "code": code,
            "message": message,
            "HTTPErrorCode": status.as_u16(),
        })),
    )
}
