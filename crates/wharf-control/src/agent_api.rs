//! The agent-facing operations (see `wharf_core::agent_protocol`): long-poll
//! for assigned tasks, state reports, and disconnect. An agent's session is
//! a store key under a lease that each poll keeps alive, so
//! `agentConnected` is true exactly while the agent keeps polling.

use crate::auth::{access_denied, owns};
use crate::error::{from_store, invalid, ApiResult};
use crate::http::call;
use crate::records::{self, commit};
use crate::{Control, Ctx};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc::error::TryRecvError;
use wharf_core::agent_protocol::*;
use wharf_core::arn;
use wharf_core::lifecycle::apply_report;
use wharf_core::records::{
    keys, ClusterKey, InstanceRecord, TaskDefinitionRecord, TaskRecord, MANAGED_CLUSTER,
};
use wharf_protocol::AwsError;
use wharf_store::{LeaseId, Op, StoreError, Txn, WatchEvent};

/// Lease of each connected agent's session key, by instance ID (or by a
/// many-host poll's name), with the agent credentials that hold it; and per
/// agent the instances already found to be its own, so a poll or report
/// checks ownership once per instance, not under the placement cache's
/// lock on every call (ownership only changes once the owner's credentials
/// are gone, and then they call nothing).
#[derive(Default)]
pub struct Sessions(Mutex<SessionState>);

#[derive(Default)]
struct SessionState {
    leases: HashMap<String, Session>,
    owned: HashMap<String, HashSet<String>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.0.lock().expect("sessions lock")
    }

    /// Whether every one of `ids` is already known to be the caller's.
    fn known_own<S: AsRef<str>>(&self, x: &Ctx, ids: &[S]) -> bool {
        let Some(key) = x.caller.agent_key() else {
            return true;
        };
        self.lock()
            .owned
            .get(key)
            .is_some_and(|own| ids.iter().all(|id| own.contains(id.as_ref())))
    }

    fn remember_own<S: AsRef<str>>(&self, x: &Ctx, ids: &[S]) {
        let Some(key) = x.caller.agent_key() else {
            return;
        };
        let mut state = self.lock();
        let own = state.owned.entry(key.to_string()).or_default();
        for id in ids.iter().map(AsRef::as_ref) {
            if !own.contains(id) {
                own.insert(id.to_string());
            }
        }
    }
}

#[derive(Clone)]
struct Session {
    lease: LeaseId,
    agent: Option<String>,
}

/// The revision a poll after `r` watches from, refused rather than
/// overflowing; checked before the poll writes its session, so a refused
/// poll writes nothing.
fn next_revision(r: i64) -> ApiResult<i64> {
    r.checked_add(1)
        .filter(|_| r >= 0)
        .ok_or_else(|| invalid("afterRevision must be from 0 to 9223372036854775806."))
}

/// Refuses an agent an instance it did not register.
fn check_owner(x: &Ctx, op: &str, owner: Option<&str>, instance_arn: &str) -> ApiResult<()> {
    if owns(x, owner) {
        Ok(())
    } else {
        Err(access_denied(x, &format!("wharf-agent:{op}"), instance_arn))
    }
}

/// The agent credentials that registered host `id` of `capacity`, from the
/// placement cache (which holds every host a task was placed on; ownership
/// changes only when the owner's credentials are gone), else the store. Err
/// if there is no such instance.
async fn owner_of(c: &Control, capacity: &ClusterKey, id: &str) -> ApiResult<Option<String>> {
    if let Some(owner) = c.cache.peek_owner(capacity, id) {
        return Ok(owner);
    }
    records::get::<InstanceRecord>(c.store.as_ref(), &keys::instance(capacity, id))
        .await?
        .map(|v| v.value.agent)
        .ok_or_else(|| invalid("The referenced container instance was not found."))
}

/// Disconnects every instance registered by `agents` (credentials just
/// revoked): their session leases end and their session keys go. How many
/// instances that was.
pub(crate) async fn disconnect_agents(c: &Control, agents: &HashSet<String>) -> ApiResult<usize> {
    let leases: Vec<LeaseId> = {
        let mut state = c.sessions.lock();
        state.owned.retain(|a, _| !agents.contains(a));
        let mut out = vec![];
        state.leases.retain(|_, s| {
            let revoked = s.agent.as_ref().is_some_and(|a| agents.contains(a));
            if revoked {
                out.push(s.lease);
            }
            !revoked
        });
        out
    };
    for lease in leases {
        let _ = c.store.revoke_lease(lease).await;
    }
    // Sessions another server holds end with their lease; their keys go now.
    let owned = c
        .cache
        .fresh(&c.store)
        .await
        .map_err(from_store)?
        .owned_by(agents);
    let mut txn = Txn::new();
    for (cluster, id) in &owned {
        txn = txn.then(Op::delete(keys::agent_session(cluster, id)));
    }
    c.store.txn(txn).await.map_err(from_store)?;
    Ok(owned.len())
}

pub async fn dispatch(c: &Control, x: &Ctx, op: &str, body: &[u8]) -> ApiResult<Vec<u8>> {
    match op {
        POLL => call(body, |r| poll(c, x, r)).await,
        REPORT_TASK_STATE => call(body, |r| report(c, x, r)).await,
        POLL_INSTANCES => call(body, |r| poll_instances(c, x, r)).await,
        REPORT_TASK_STATES => call(body, |r| report_many(c, x, r)).await,
        DISCONNECT => call(body, |r| disconnect(c, x, r)).await,
        GET_TASK_CREDENTIALS => call(body, |r| crate::task_credentials::get(c, x, r)).await,
        GET_TASK_SECRETS => call(body, |r| crate::task_secrets::get(c, x, r)).await,
        wharf_core::exec_protocol::POLL_EXEC_SESSIONS => {
            call(body, |r| poll_exec_sessions(c, x, r)).await
        }
        REGISTER_MANAGED => {
            call(body, |r| {
                crate::ecs::register_in(c, x, r, MANAGED_CLUSTER.to_string())
            })
            .await
        }
        _ => Err(AwsError::unknown_operation(&format!(
            "{TARGET_PREFIX}.{op}"
        ))),
    }
}

async fn keep_session(c: &Control, x: &Ctx, cluster: &ClusterKey, id: &str) -> ApiResult<()> {
    keep_lease(
        c,
        x,
        id.to_string(),
        cluster,
        std::slice::from_ref(&id.to_string()),
    )
    .await
}

/// Keeps the session lease `name` alive, or grants a new one and puts the
/// session keys of `ids` under it: one keep-alive per poll, one write when
/// the lease has to be (re)granted.
async fn keep_lease<S: AsRef<str>>(
    c: &Control,
    x: &Ctx,
    name: String,
    cluster: &ClusterKey,
    ids: &[S],
) -> ApiResult<()> {
    let existing = c.sessions.lock().leases.get(&name).cloned();
    let agent = x.caller.agent_key().map(str::to_string);
    if let Some(s) = existing {
        if s.agent == agent && c.store.keep_alive(s.lease).await.is_ok() {
            return Ok(());
        }
    }
    let lease = c
        .store
        .grant_lease(c.config.agent_session_ttl)
        .await
        .map_err(from_store)?;
    let mut txn = Txn::new();
    for id in ids {
        txn = txn.then(Op::put_with_lease(
            keys::agent_session(cluster, id.as_ref()),
            b"1".to_vec(),
            lease,
        ));
    }
    c.store.txn(txn).await.map_err(from_store)?;
    c.sessions
        .lock()
        .leases
        .insert(name, Session { lease, agent });
    Ok(())
}

/// Whether the stored task `value` is on host `id` (an undecodable one
/// might be), decoding only that field.
fn on_host(value: &[u8], id: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Host<'a> {
        #[serde(borrow)]
        instance_id: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Host>(value).map_or(true, |h| h.instance_id.as_deref() == Some(id))
}

async fn poll(c: &Control, x: &Ctx, r: PollRequest) -> ApiResult<PollResponse> {
    let (_, id) =
        arn::container_instance_id(&r.container_instance_arn).map_err(crate::error::from_core)?;
    // The agent's cluster, in the region it signs for (the managed
    // capacity's serves every region).
    let cluster = x.cluster_key(&r.cluster);
    let after = match r.after_revision {
        0 => 0,
        n => next_revision(n)?,
    };
    let instance =
        records::get::<InstanceRecord>(c.store.as_ref(), &keys::instance(&cluster, &id)).await?;
    let Some(instance) = instance.filter(|v| v.value.status != "INACTIVE") else {
        return Ok(PollResponse {
            revision: 0,
            registered: false,
            tasks: vec![],
            gone_instances: vec![],
        });
    };
    check_owner(
        x,
        POLL,
        instance.value.agent.as_deref(),
        &instance.value.arn,
    )?;
    c.sessions.remember_own(x, &[&id]);
    keep_session(c, x, &cluster, &id).await?;
    // Managed capacity runs the FARGATE tasks of every cluster.
    let tasks_prefix = if cluster.is_managed() {
        keys::TASKS.to_string()
    } else {
        keys::tasks(&cluster)
    };
    // Containers of gone instances are news: answered without waiting.
    let gone = gone_instances(c, &cluster, &r.other_instances).await?;
    if after > 0 && gone.is_empty() {
        // Wait for a change to this cluster's tasks, or the timeout.
        let mut rx = c.store.watch(&tasks_prefix, after).await.ok();
        let wait = Duration::from_millis(r.wait_millis.min(30_000));
        if let Some(rx) = rx.as_mut() {
            let _ = tokio::time::timeout(wait, async {
                while let Some(ev) = rx.recv().await {
                    if on_host(&ev.kv.value, &id) {
                        return;
                    }
                }
            })
            .await;
        }
    }
    // This host's tasks (not a listing of the cluster).
    let (tasks, revision) = crate::ecs::tasks_on(c, &cluster, &id).await?;
    let mut defs: HashMap<String, wharf_model::ecs::TaskDefinition> = HashMap::new();
    let mut out = vec![];
    for t in tasks.into_iter().map(|v| v.value) {
        if !defs.contains_key(&t.task_definition_arn) {
            let key = t.definition_key();
            if let Some(td) = records::get::<TaskDefinitionRecord>(c.store.as_ref(), &key).await? {
                defs.insert(t.task_definition_arn.clone(), td.value.definition);
            }
        }
        let Some(td) = defs.get(&t.task_definition_arn) else {
            continue;
        };
        out.push(AssignedTask {
            task_arn: t.arn.clone(),
            task_definition: td.clone(),
            overrides: t.overrides.clone(),
            desired_status: wharf_core::lifecycle::desired_for_agent(
                t.last_status,
                t.desired_status,
            )
            .as_str()
            .into(),
            last_status: t.last_status.as_str().into(),
            stop_timeout_seconds: (t.stop_code.as_deref()
                == Some(wharf_core::capacity::SPOT_INTERRUPTION))
            .then_some(wharf_core::capacity::SPOT_WARNING_SECONDS),
            blocking_logs: t.blocking_logs,
            group: t.group.clone(),
            tags: t.tags.clone(),
            containers: t
                .containers
                .iter()
                .map(|c| AssignedContainer {
                    name: c.name.clone(),
                    container_arn: c.arn.clone(),
                })
                .collect(),
        });
    }
    Ok(PollResponse {
        revision,
        registered: true,
        tasks: out,
        gone_instances: gone,
    })
}

/// The exec sessions waiting for this instance's agent: every one when
/// `after_revision` is 0, else those opened after it, answered at once when
/// there are any, else when one is opened or the wait ends.
async fn poll_exec_sessions(
    c: &Control,
    x: &Ctx,
    r: wharf_core::exec_protocol::PollExecSessionsRequest,
) -> ApiResult<wharf_core::exec_protocol::PollExecSessionsResponse> {
    use wharf_core::exec_protocol::{ExecSession, ExecSessionRecord, PollExecSessionsResponse};
    let (_, id) =
        arn::container_instance_id(&r.container_instance_arn).map_err(crate::error::from_core)?;
    let after = match r.after_revision {
        0 => 0,
        n => next_revision(n)?,
    };
    let cluster = x.cluster_key(&r.cluster);
    let owner = owner_of(c, &cluster, &id).await?;
    check_owner(x, POLL, owner.as_deref(), &r.container_instance_arn)?;
    let mine = |s: &ExecSessionRecord| s.capacity == cluster.as_str() && s.instance_id == id;
    let waiting = |all: Vec<records::Versioned<ExecSessionRecord>>| -> Vec<ExecSession> {
        all.into_iter()
            .filter(|v| v.mod_revision >= after)
            .map(|v| v.value)
            .filter(|s| mine(s))
            .map(|s| ExecSession {
                session_id: s.session_id,
                task_arn: s.task_arn,
                container_name: s.container_name,
                command: s.command,
                agent_token: s.agent_token,
                log_group: s.log_group,
            })
            .collect()
    };
    let (all, revision) = records::list(c.store.as_ref(), keys::EXEC_SESSIONS).await?;
    let sessions = waiting(all);
    if after == 0 || !sessions.is_empty() {
        return Ok(PollExecSessionsResponse { revision, sessions });
    }
    if let Ok(mut rx) = c.store.watch(keys::EXEC_SESSIONS, after).await {
        let wait = Duration::from_millis(r.wait_millis.min(30_000));
        let _ = tokio::time::timeout(wait, async {
            while let Some(ev) = rx.recv().await {
                let opened = ev.kind == wharf_store::EventKind::Put
                    && serde_json::from_slice::<ExecSessionRecord>(&ev.kv.value)
                        .is_ok_and(|s| mine(&s));
                if opened {
                    return;
                }
            }
        })
        .await;
    }
    let (all, revision) = records::list(c.store.as_ref(), keys::EXEC_SESSIONS).await?;
    Ok(PollExecSessionsResponse {
        revision,
        sessions: waiting(all),
    })
}

/// Which of `others` (container instance ARNs an agent found on its Docker
/// host) are of `cluster` and deregistered or unknown. Instances of another
/// cluster are never reported: an agent only learns about its own cluster.
async fn gone_instances(
    c: &Control,
    cluster: &ClusterKey,
    others: &[String],
) -> ApiResult<Vec<String>> {
    let mut gone = vec![];
    for other in others.iter().take(MAX_OTHER_INSTANCES) {
        let Ok((Some(of), id)) = arn::container_instance_id(other) else {
            continue;
        };
        if of != cluster.name() {
            continue;
        }
        // Of the region its ARN names: the same host may have been an
        // instance of this cluster name in another region (its `wharf up
        // --region` changed), whose containers go once it is deregistered.
        let at = match cluster.is_managed() {
            true => cluster.clone(),
            false => ClusterKey::new(arn::region_of(other), &of),
        };
        let record =
            records::get::<InstanceRecord>(c.store.as_ref(), &keys::instance(&at, &id)).await?;
        if record.is_none_or(|v| v.value.status == "INACTIVE" || v.value.arn != *other) {
            gone.push(other.clone());
        }
    }
    Ok(gone)
}

/// The task `task_arn` names and its task definition, for its host's
/// agent only (`op` is what it asks), and only while it has not stopped
/// (`stopped`: the refusal's words).
pub(crate) async fn live_task(
    c: &Control,
    x: &Ctx,
    op: &str,
    task_arn: &str,
    stopped: &str,
) -> ApiResult<(
    wharf_store::typed::Versioned<TaskRecord>,
    TaskDefinitionRecord,
)> {
    let (Some(name), id) = arn::task_id(task_arn).map_err(crate::error::from_core)? else {
        return Err(invalid("taskArn must be the task's full ARN."));
    };
    let cluster = ClusterKey::new(arn::region_of(task_arn), &name);
    let Some(task) =
        records::get::<TaskRecord>(c.store.as_ref(), &keys::task(&cluster, &id)).await?
    else {
        return Err(invalid("The referenced task was not found."));
    };
    check_task_owner(c, x, op, &task.value).await?;
    if task.value.last_status == wharf_core::lifecycle::TaskStatus::Stopped {
        return Err(crate::error::client(stopped));
    }
    let key = task.value.definition_key();
    let Some(td) = records::get::<TaskDefinitionRecord>(c.store.as_ref(), &key).await? else {
        return Err(invalid("The task's task definition was not found."));
    };
    Ok((task, td.value))
}

/// Refuses an agent a task not placed on one of its instances: only the
/// agent of the host a task was placed on reports it, or gets its role's
/// credentials.
pub(crate) async fn check_task_owner(
    c: &Control,
    x: &Ctx,
    op: &str,
    task: &TaskRecord,
) -> ApiResult<()> {
    let host = task.instance_id.as_deref().unwrap_or_default();
    if c.sessions.known_own(x, &[host]) {
        return Ok(());
    }
    let capacity = if task.launch_type == "FARGATE" {
        ClusterKey::managed()
    } else {
        task.cluster_key()
    };
    let owner = match &task.instance_id {
        Some(host) => owner_of(c, &capacity, host).await.ok().flatten(),
        None => None,
    };
    check_owner(x, op, owner.as_deref(), &task.arn)?;
    c.sessions.remember_own(x, &[host]);
    Ok(())
}

pub(crate) async fn report(c: &Control, x: &Ctx, r: TaskStateReport) -> ApiResult<Empty> {
    let (from_arn, id) = arn::task_id(&r.task_arn).map_err(crate::error::from_core)?;
    // A managed host reports the tasks of every region: the task's ARN
    // names its own.
    let name = from_arn.unwrap_or_else(|| r.cluster.clone());
    let region = match r.task_arn.starts_with("arn:") {
        true => arn::region_of(&r.task_arn),
        false => x.region(),
    };
    let cluster = ClusterKey::new(region, &name);
    for _ in 0..records::MAX_ATTEMPTS {
        let Some(mut task) =
            records::get::<TaskRecord>(c.store.as_ref(), &keys::task(&cluster, &id)).await?
        else {
            return Err(invalid("The referenced task was not found."));
        };
        check_task_owner(c, x, REPORT_TASK_STATE, &task.value).await?;
        let applied = apply_report(&mut task.value, &r, x.now);
        if !applied.changed {
            return Ok(Empty {});
        }
        // Reaching STOPPED gives the task's reservation back: what a host
        // holds is summed from its live tasks (see `cache`).
        let txn = Txn::new().when(task.unchanged()).then(task.put());
        if commit(c.store.as_ref(), txn).await? {
            return Ok(Empty {});
        }
    }
    Err(records::contention())
}

async fn disconnect(c: &Control, x: &Ctx, r: DisconnectRequest) -> ApiResult<Empty> {
    let (_, id) =
        arn::container_instance_id(&r.container_instance_arn).map_err(crate::error::from_core)?;
    let cluster = x.cluster_key(&r.cluster);
    let owner = owner_of(c, &cluster, &id).await?;
    check_owner(x, DISCONNECT, owner.as_deref(), &r.container_instance_arn)?;
    tracing::info!(instance = %id, reason = %r.reason, "agent disconnected");
    let session = c.sessions.lock().leases.remove(&id);
    if let Some(s) = session {
        let _ = c.store.revoke_lease(s.lease).await;
    }
    c.store
        .txn(Txn::new().then(Op::delete(keys::agent_session(&cluster, &id))))
        .await
        .map_err(from_store)?;
    Ok(Empty {})
}

/// One lease for the sessions of every instance of a many-host poll.
async fn keep_sessions(c: &Control, x: &Ctx, cluster: &ClusterKey, ids: &[&str]) -> ApiResult<()> {
    let Some(first) = ids.first() else {
        return Ok(());
    };
    keep_lease(
        c,
        x,
        format!("many:{cluster}:{first}:{}", ids.len()),
        cluster,
        ids,
    )
    .await
}

/// The fields of a stored task a many-host poll reads: decoding only these
/// skips the rest of the record's allocation.
#[derive(serde::Deserialize)]
struct Brief {
    arn: String,
    instance_id: Option<String>,
    last_status: wharf_core::lifecycle::TaskStatus,
    desired_status: wharf_core::lifecycle::DesiredStatus,
    containers: Vec<BriefContainer>,
}

#[derive(serde::Deserialize)]
struct BriefContainer {
    name: String,
    arn: String,
}

fn brief(value: &[u8], ids: &HashSet<&str>) -> Option<InstanceTask> {
    let b: Brief = serde_json::from_slice(value).ok()?;
    let iid = b.instance_id.filter(|i| ids.contains(i.as_str()))?;
    Some(InstanceTask {
        container_instance_id: iid,
        task_arn: b.arn,
        desired_status: wharf_core::lifecycle::desired_for_agent(b.last_status, b.desired_status)
            .as_str()
            .into(),
        last_status: b.last_status.as_str().into(),
        containers: b
            .containers
            .into_iter()
            .map(|c| AssignedContainer {
                name: c.name,
                container_arn: c.arn,
            })
            .collect(),
    })
}

/// Poll for many instances at once: the full set at revision 0, then deltas
/// read from the store's watch history, so a poll costs what changed rather
/// than what exists.
async fn poll_instances(
    c: &Control,
    x: &Ctx,
    r: PollInstancesRequest,
) -> ApiResult<PollInstancesResponse> {
    let after = match r.after_revision {
        0 => 0,
        n => next_revision(n)?,
    };
    let mut owned = vec![];
    for a in &r.container_instance_arns {
        owned.push(
            arn::container_instance_id_ref(a)
                .map_err(crate::error::from_core)?
                .1,
        );
    }
    let cluster = x.cluster_key(&r.cluster);
    if !c.sessions.known_own(x, &owned) {
        // Only instances this caller registered, each already known.
        {
            let view = c.cache.fresh(&c.store).await.map_err(from_store)?;
            for (arn, id) in r.container_instance_arns.iter().zip(&owned) {
                check_owner(x, POLL_INSTANCES, view.owner(&cluster, id).flatten(), arn)?;
            }
        }
        c.sessions.remember_own(x, &owned);
    }
    keep_sessions(c, x, &cluster, &owned).await?;
    let ids: HashSet<&str> = owned.into_iter().collect();
    let prefix = if cluster.is_managed() {
        keys::TASKS.to_string()
    } else {
        keys::tasks(&cluster)
    };
    if after > 0 {
        match c.store.watch(&prefix, after).await {
            Ok(mut rx) => {
                let deadline =
                    tokio::time::Instant::now() + Duration::from_millis(r.wait_millis.min(30_000));
                let mut changed: BTreeMap<String, InstanceTask> = BTreeMap::new();
                let mut last = r.after_revision;
                let mut take = |ev: WatchEvent, changed: &mut BTreeMap<String, InstanceTask>| {
                    last = ev.kv.mod_revision;
                    if ev.kind == wharf_store::EventKind::Put {
                        if let Some(t) = brief(&ev.kv.value, &ids) {
                            changed.insert(t.task_arn.clone(), t);
                        }
                    }
                };
                // Wait for the first change of ours, then take what is queued.
                let mut closed = false;
                loop {
                    let ev = if changed.is_empty() {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(ev)) => ev,
                            Ok(None) => {
                                closed = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    } else {
                        match rx.try_recv() {
                            Ok(ev) => ev,
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => {
                                closed = true;
                                break;
                            }
                        }
                    };
                    take(ev, &mut changed);
                }
                // What was queued may end partway through a revision (the
                // store may be sending it right now), and a revision
                // answered is never asked for again. The store sends a
                // revision's events and moves its revision under one lock:
                // once it says `current`, everything up to `current` is
                // queued, so drain again and answer `current`. (A watcher the
                // store closed for falling behind ends at a whole revision:
                // answer the last one received.) Events past `current` may be
                // sent again by the next poll; a repeat is harmless.
                let mut revision = None;
                if !closed {
                    let current = c.store.current_revision().await.map_err(from_store)?;
                    loop {
                        match rx.try_recv() {
                            Ok(ev) => take(ev, &mut changed),
                            Err(TryRecvError::Empty) => {
                                revision = Some(current);
                                break;
                            }
                            Err(TryRecvError::Disconnected) => break,
                        }
                    }
                }
                let revision = revision.unwrap_or(last);
                return Ok(PollInstancesResponse {
                    revision,
                    full: false,
                    tasks: changed.into_values().collect(),
                });
            }
            Err(StoreError::Compacted(_)) => {}
            Err(e) => return Err(from_store(e)),
        }
    }
    let mut tasks = vec![];
    // A delta from the first page's revision replays whatever changed while
    // the later pages were read (a repeat is harmless to a level-triggered
    // host; a miss would not be).
    let revision = wharf_store::scan(c.store.as_ref(), &prefix, 10_000, |kv| {
        tasks.extend(brief(&kv.value, &ids))
    })
    .await
    .map_err(from_store)?;
    Ok(PollInstancesResponse {
        revision,
        full: true,
        tasks,
    })
}

/// Applies each report as its own write, all at once: the store groups
/// concurrent writes into one commit.
async fn report_many(c: &Control, x: &Ctx, r: TaskStateReports) -> ApiResult<Empty> {
    let results =
        futures::future::join_all(r.reports.into_iter().map(|rep| report(c, x, rep))).await;
    results
        .into_iter()
        .find(Result::is_err)
        .unwrap_or(Ok(Empty {}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use wharf_core::clock::ManualClock;
    use wharf_store::MemStore;

    /// Tasks written fifty to a revision by two writers while a many-host
    /// poller follows them by deltas: every task reaches the poller, none
    /// is lost to a revision answered while it was still being queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_host_poll_deltas_lose_no_task_written_meanwhile() {
        let c = Arc::new(Control::new(
            Arc::new(MemStore::new()),
            Arc::new(ManualClock::new(0)),
            Default::default(),
        ));
        const TXNS: usize = 200;
        const PER_TXN: usize = 50;
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let c = c.clone();
                tokio::spawn(async move {
                    for n in 0..TXNS / 2 {
                        let mut txn = Txn::new();
                        for k in 0..PER_TXN {
                            let id = format!("w{w}-{n:04}-{k}");
                            let mut t = TaskRecord::new(&id, &format!("arn:{id}"), "c", 0);
                            t.instance_id = Some("i1".into());
                            txn = txn.then(records::put(
                                &keys::task(
                                    &wharf_core::records::ClusterKey::new("us-east-1", "c"),
                                    &id,
                                ),
                                &t,
                            ));
                        }
                        c.store.txn(txn).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        let mut seen = HashSet::new();
        let mut after = 0;
        let mut deadline = std::time::Instant::now() + Duration::from_secs(60);
        while seen.len() < TXNS * PER_TXN && std::time::Instant::now() < deadline {
            // Once the writers are done, a few more polls must do.
            if writers.iter().all(|w| w.is_finished()) {
                deadline = deadline.min(std::time::Instant::now() + Duration::from_secs(2));
            }
            let r = poll_instances(
                &c,
                &Ctx::for_tests(),
                PollInstancesRequest {
                    cluster: "c".into(),
                    container_instance_arns: vec!["i1".into()],
                    after_revision: after,
                    wait_millis: 200,
                },
            )
            .await
            .unwrap();
            after = r.revision;
            seen.extend(r.tasks.into_iter().map(|t| t.task_arn));
        }
        for w in writers {
            w.await.unwrap();
        }
        assert_eq!(
            seen.len(),
            TXNS * PER_TXN,
            "tasks never delivered to the poller"
        );
    }
}
