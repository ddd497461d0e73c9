//! Everything under `/iam/` in memory, compiled, kept from the store's
//! watch: what authenticates a request's key and evaluates its policies
//! without a store read. Each IAM write waits until the cache has applied
//! its revision before it answers, so a key or a policy is in force for
//! the next request on this server (another server on a shared store sees
//! it when its own watch does: IAM is eventually consistent).

use crate::managed;
use crate::policy::{self, Context, Decision, Policy, PolicySet, Request};
use crate::records::{
    keys, AccessKeyRecord, GroupRecord, KeyStatus, Millis, PolicyRecord, RoleRecord, SessionOf,
    SessionRecord, UserRecord,
};
use crate::Principal;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use wharf_store::{DynStore, EventKind, Revision, StoreError, WatchEvent};

#[derive(Default)]
struct Index {
    users: HashMap<String, Entity<UserRecord>>,
    groups: HashMap<String, Entity<GroupRecord>>,
    roles: HashMap<String, Entity<RoleRecord>>,
    /// Customer managed policies by lower-cased name, and AWS managed
    /// ones, compiled (their default version) by ARN.
    policies: HashMap<String, Arc<Policy>>,
    keys: HashMap<String, AccessKeyRecord>,
    sessions: HashMap<String, Compiled<SessionRecord>>,
}

struct Entity<T> {
    record: T,
    inline: Vec<Arc<Policy>>,
    trust: Option<Arc<Policy>>,
}

struct Compiled<T> {
    record: T,
    session_policy: Option<Arc<Policy>>,
}

/// A signing key the cache knows: its secret and who it is.
#[derive(Debug, Clone)]
pub struct Credential {
    pub secret: String,
    pub principal: Principal,
    /// Temporary credentials: their session.
    pub session: Option<String>,
}

/// Why a key does not authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not a key IAM knows (it may be another kind of credential).
    Unknown,
    /// An inactive key, a session whose token is wrong or missing, or
    /// whose role is gone: "The security token included in the request is
    /// invalid."
    Invalid,
    Expired,
}

pub struct Cache {
    index: RwLock<Index>,
    applied: tokio::sync::watch::Sender<Revision>,
    ready: tokio::sync::watch::Sender<bool>,
    account: String,
}

/// Loads everything, then applies the watch's events; on a compacted or
/// ended watch, loads everything again.
async fn follow(weak: std::sync::Weak<Cache>, store: DynStore) {
    let mut from: Option<Revision> = None;
    loop {
        let Some(cache) = weak.upgrade() else { return };
        let start = match from {
            Some(f) => f,
            None => match cache.reload(&store).await {
                Ok(rev) => {
                    cache.ready.send_replace(true);
                    rev + 1
                }
                Err(e) => {
                    tracing::warn!(error = %e, "IAM cache load failed; retrying");
                    drop(cache);
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        from = Some(start);
        let rx = store.watch(keys::PREFIX, start).await;
        drop(cache);
        match rx {
            Ok(mut rx) => {
                // A transaction's events share its revision: they are
                // applied together, under one write of the index, and the
                // revision published after them (a key and its user, say,
                // or a policy detached and another attached), so no request
                // is judged by half a transaction.
                let mut held: Option<WatchEvent> = None;
                loop {
                    let ev = match held.take() {
                        Some(ev) => ev,
                        None => match rx.recv().await {
                            Some(ev) => ev,
                            None => break,
                        },
                    };
                    let Some(cache) = weak.upgrade() else { return };
                    let rev = ev.revision();
                    let mut batch = vec![ev];
                    let mut asked = false;
                    loop {
                        match rx.try_recv() {
                            Ok(next) if next.revision() == rev => batch.push(next),
                            // The next revision's first event: every event
                            // of this one was sent before it.
                            Ok(next) => {
                                held = Some(next);
                                break;
                            }
                            // Nothing queued: the store sends a revision's
                            // events under the lock that moves its revision,
                            // so once it reports this revision they are all
                            // queued; drain once more.
                            Err(tokio::sync::mpsc::error::TryRecvError::Empty) if !asked => {
                                asked = true;
                                let _ = store.current_revision().await;
                            }
                            Err(_) => break,
                        }
                    }
                    cache.apply_all(&batch);
                    cache.applied.send_replace(rev);
                    from = Some(rev + 1);
                }
                // The watch ended (this watcher fell behind): watch again
                // from where it stopped, or load again if that is gone.
            }
            Err(StoreError::Compacted(_)) => from = None,
            Err(e) => {
                tracing::warn!(error = %e, "IAM watch failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

impl Cache {
    /// A cache that loads `/iam/` and then follows the watch, in a task of
    /// its own for as long as the cache lives (started on the current
    /// Tokio runtime; without one the cache stays empty).
    pub fn new(store: DynStore, account: String) -> Arc<Cache> {
        let (applied, _) = tokio::sync::watch::channel(0);
        let (ready, _) = tokio::sync::watch::channel(false);
        let cache = Arc::new(Cache {
            index: RwLock::new(Index::default()),
            applied,
            ready,
            account,
        });
        let weak = Arc::downgrade(&cache);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(follow(weak, store));
        }
        cache
    }

    /// Waits (a few seconds at most) until the first load is done.
    pub async fn ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), rx.wait_for(|r| *r)).await;
    }

    async fn reload(&self, store: &DynStore) -> Result<Revision, StoreError> {
        let mut kvs = Vec::new();
        let revision =
            wharf_store::scan(store.as_ref(), keys::PREFIX, 1000, |kv| kvs.push(kv)).await?;
        let mut index = Index::default();
        for kv in kvs {
            index.apply(&kv.key, EventKind::Put, &kv.value);
        }
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = index;
        self.applied.send_replace(revision);
        Ok(revision)
    }

    fn apply_all(&self, events: &[WatchEvent]) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        for ev in events {
            index.apply(&ev.kv.key, ev.kind, &ev.kv.value);
        }
    }

    /// Waits until the cache has applied revision `rev` (a write's own), at
    /// most a few seconds.
    pub async fn caught_up(&self, rev: Revision) {
        let mut rx = self.applied.subscribe();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            rx.wait_for(|applied| *applied >= rev),
        )
        .await;
    }

    /// The secret and principal of an access key; `token` is the request's
    /// `X-Amz-Security-Token` (temporary credentials need theirs).
    pub fn credential(
        &self,
        akid: &str,
        token: Option<&str>,
        now: Millis,
    ) -> Result<Credential, KeyError> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = index.keys.get(akid) {
            if k.status != KeyStatus::Active {
                return Err(KeyError::Invalid);
            }
            let user = index
                .users
                .get(&k.user.to_ascii_lowercase())
                .ok_or(KeyError::Invalid)?;
            return Ok(Credential {
                secret: k.secret.clone(),
                principal: Principal::user(&self.account, &user.record),
                session: None,
            });
        }
        let s = index.sessions.get(akid).ok_or(KeyError::Unknown)?;
        let s = &s.record;
        let given = token.ok_or(KeyError::Invalid)?;
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(given.as_bytes()));
        if !wharf_protocol::sigv4::constant_time_eq(hash.as_bytes(), s.token_sha256.as_bytes()) {
            return Err(KeyError::Invalid);
        }
        if s.expires <= now {
            return Err(KeyError::Expired);
        }
        let principal = match &s.of {
            SessionOf::Root => Principal::Root,
            SessionOf::User { name, id } => {
                // A user deleted (or deleted and made again) ends its sessions.
                let u = index
                    .users
                    .get(&name.to_ascii_lowercase())
                    .filter(|u| &u.record.id == id)
                    .ok_or(KeyError::Invalid)?;
                Principal::user(&self.account, &u.record)
            }
            SessionOf::Role {
                role,
                role_id,
                session_name,
            } => {
                // A session of a role deleted (or deleted and made again)
                // is over.
                let r = index
                    .roles
                    .get(&role.to_ascii_lowercase())
                    .filter(|r| &r.record.id == role_id)
                    .ok_or(KeyError::Invalid)?;
                Principal::assumed_role(&self.account, &r.record, session_name)
            }
        };
        Ok(Credential {
            secret: s.secret.clone(),
            principal,
            session: Some(s.id.clone()),
        })
    }

    /// Adds the principal's own condition keys to `ctx`: `aws:username`,
    /// `aws:userid`, `aws:PrincipalArn`, …, and `aws:PrincipalTag/…` from
    /// its user or role and its session's tags.
    pub fn principal_context(
        &self,
        principal: &Principal,
        session: Option<&str>,
        ctx: &mut Context,
    ) {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.principal_context(&self.account, principal, session, ctx);
    }

    /// IAM's decision on `action` over `resource` for `principal` (root is
    /// allowed everything and never asked). The context gets the
    /// principal's own keys ([`Cache::principal_context`]).
    pub fn authorize(
        &self,
        principal: &Principal,
        session: Option<&str>,
        action: &str,
        resource: &str,
        context: &Context,
    ) -> Decision {
        self.authorize_on(principal, session, action, resource, context, None)
    }

    /// [`Cache::authorize`] on a resource that has a policy of its own (a
    /// secret's): within the account, its statements that name the caller
    /// allow on their own, and its denies deny.
    pub fn authorize_on(
        &self,
        principal: &Principal,
        session: Option<&str>,
        action: &str,
        resource: &str,
        context: &Context,
        resource_policy: Option<&Policy>,
    ) -> Decision {
        if *principal == Principal::Root {
            return Decision::Allow;
        }
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let mut ctx = context.clone();
        index.principal_context(&self.account, principal, session, &mut ctx);
        let mut identity: Vec<&Policy> = Vec::new();
        let mut boundary_arn = None;
        match principal {
            Principal::Root => {}
            Principal::User { name, .. } => {
                if let Some(u) = index.users.get(&name.to_ascii_lowercase()) {
                    index.gather(&u.inline, &u.record.policies.attached, &mut identity);
                    for g in &u.record.groups {
                        if let Some(g) = index.groups.get(&g.to_ascii_lowercase()) {
                            index.gather(&g.inline, &g.record.policies.attached, &mut identity);
                        }
                    }
                    boundary_arn = u.record.boundary.as_deref();
                }
            }
            Principal::AssumedRole { role_name, .. } => {
                if let Some(r) = index.roles.get(&role_name.to_ascii_lowercase()) {
                    index.gather(&r.inline, &r.record.policies.attached, &mut identity);
                    boundary_arn = r.record.boundary.as_deref();
                }
            }
        }
        // A boundary that cannot be read allows nothing (never no boundary).
        let boundary = boundary_arn.map(|b| index.managed(b).unwrap_or(&NOTHING));
        // Session policies are read as they are now (a managed one's
        // default version may have changed since the session began).
        // A session that has just ended (its lease gone) allows nothing.
        let session = match session {
            Some(id) => match index.sessions.get(id) {
                Some(s) => Some(s),
                None => return Decision::ImplicitDeny(policy::PolicyKind::Session),
            },
            None => None,
        };
        let mut session_layer: Vec<&Policy> = Vec::new();
        let has_session_policy =
            session.is_some_and(|s| s.record.policy.is_some() || !s.record.policy_arns.is_empty());
        if let Some(s) = session {
            session_layer.extend(s.session_policy.as_deref());
            session_layer.extend(s.record.policy_arns.iter().filter_map(|a| index.managed(a)));
        }
        let caller = resource_policy.map(|_| principal.as_caller(&self.account));
        let req = Request {
            action,
            resource,
            context: &ctx,
            caller: caller.as_ref(),
        };
        policy::evaluate(
            &req,
            &PolicySet {
                identity: &identity,
                boundary,
                session: has_session_policy.then_some(session_layer.as_slice()),
                resource: resource_policy,
            },
        )
    }

    /// The ARN of the user, role or group of that name (`kind` is `user`,
    /// `role` or `group`), with its path, as IAM judges requests on it.
    pub fn entity_arn(&self, kind: &str, name: &str) -> Option<String> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let key = name.to_ascii_lowercase();
        let a = &self.account;
        match kind {
            "user" => index
                .users
                .get(&key)
                .map(|u| crate::user_arn(a, &u.record.path, &u.record.name)),
            "role" => index
                .roles
                .get(&key)
                .map(|r| crate::role_arn(a, &r.record.path, &r.record.name)),
            "group" => index
                .groups
                .get(&key)
                .map(|g| crate::group_arn(a, &g.record.path, &g.record.name)),
            _ => None,
        }
    }

    /// The compiled trust policy of a role and the role, for AssumeRole.
    pub fn role_by_arn(&self, arn: &str) -> Option<(RoleRecord, Arc<Policy>)> {
        let name = arn
            .strip_prefix(&format!("arn:aws:iam::{}:role/", self.account))?
            .rsplit('/')
            .next()?;
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let r = index.roles.get(&name.to_ascii_lowercase())?;
        // The path is part of the ARN: `role/team/app` is not `role/app`.
        if crate::role_arn(&self.account, &r.record.path, &r.record.name) != arn {
            return None;
        }
        Some((r.record.clone(), r.trust.clone()?))
    }

    /// How many users, groups and roles have `arn` attached (IAM's
    /// AttachmentCount), and how many use it as a boundary.
    pub fn attachment_counts(&self, arn: &str) -> (i32, i32) {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let attached = |p: &crate::records::Policies| p.attached.iter().any(|a| a == arn);
        let a = index
            .users
            .values()
            .filter(|u| attached(&u.record.policies))
            .count()
            + index
                .groups
                .values()
                .filter(|g| attached(&g.record.policies))
                .count()
            + index
                .roles
                .values()
                .filter(|r| attached(&r.record.policies))
                .count();
        let b = index
            .users
            .values()
            .filter(|u| u.record.boundary.as_deref() == Some(arn))
            .count()
            + index
                .roles
                .values()
                .filter(|r| r.record.boundary.as_deref() == Some(arn))
                .count();
        (a as i32, b as i32)
    }

    /// The users, groups and roles `arn` is attached to, by kind.
    pub fn entities_for(&self, arn: &str) -> (Vec<UserRecord>, Vec<GroupRecord>, Vec<RoleRecord>) {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let has = |p: &crate::records::Policies| p.attached.iter().any(|a| a == arn);
        let mut users: Vec<_> = index
            .users
            .values()
            .filter(|u| has(&u.record.policies))
            .map(|u| u.record.clone())
            .collect();
        let mut groups: Vec<_> = index
            .groups
            .values()
            .filter(|g| has(&g.record.policies))
            .map(|g| g.record.clone())
            .collect();
        let mut roles: Vec<_> = index
            .roles
            .values()
            .filter(|r| has(&r.record.policies))
            .map(|r| r.record.clone())
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        (users, groups, roles)
    }

    /// The users in a group.
    pub fn members_of(&self, group: &str) -> Vec<UserRecord> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let mut users: Vec<_> = index
            .users
            .values()
            .filter(|u| {
                u.record
                    .groups
                    .iter()
                    .any(|g| g.eq_ignore_ascii_case(group))
            })
            .map(|u| u.record.clone())
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }
}

impl Index {
    fn apply(&mut self, key: &str, kind: EventKind, value: &[u8]) {
        let put = kind == EventKind::Put;
        let decode = |what: &str| -> Option<serde_json::Value> {
            match serde_json::from_slice(value) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::error!(key, error = %e, "unreadable {what} record");
                    None
                }
            }
        };
        if let Some(name) = key.strip_prefix(keys::USERS) {
            self.users.remove(name);
            if put {
                if let Some(r) =
                    decode("user").and_then(|v| serde_json::from_value::<UserRecord>(v).ok())
                {
                    let inline = compile_inline(&r.policies.inline);
                    self.users.insert(
                        name.into(),
                        Entity {
                            record: r,
                            inline,
                            trust: None,
                        },
                    );
                }
            }
        } else if let Some(name) = key.strip_prefix(keys::GROUPS) {
            self.groups.remove(name);
            if put {
                if let Some(r) =
                    decode("group").and_then(|v| serde_json::from_value::<GroupRecord>(v).ok())
                {
                    let inline = compile_inline(&r.policies.inline);
                    self.groups.insert(
                        name.into(),
                        Entity {
                            record: r,
                            inline,
                            trust: None,
                        },
                    );
                }
            }
        } else if let Some(name) = key.strip_prefix(keys::ROLES) {
            self.roles.remove(name);
            if put {
                if let Some(r) =
                    decode("role").and_then(|v| serde_json::from_value::<RoleRecord>(v).ok())
                {
                    let inline = compile_inline(&r.policies.inline);
                    let trust = Policy::parse(&r.trust, true).ok().map(Arc::new);
                    self.roles.insert(
                        name.into(),
                        Entity {
                            record: r,
                            inline,
                            trust,
                        },
                    );
                }
            }
        } else if let Some(name) = key.strip_prefix(keys::POLICIES) {
            self.policies.remove(name);
            if put {
                if let Some(r) =
                    decode("policy").and_then(|v| serde_json::from_value::<PolicyRecord>(v).ok())
                {
                    if let Some(p) = r
                        .default_document()
                        .and_then(|d| Policy::parse(d, false).ok())
                    {
                        self.policies.insert(name.into(), Arc::new(p));
                    }
                }
            }
        } else if let Some(id) = key.strip_prefix(keys::ACCESS_KEYS) {
            self.keys.remove(id);
            if put {
                if let Some(r) = decode("access key").and_then(|v| serde_json::from_value(v).ok()) {
                    self.keys.insert(id.into(), r);
                }
            }
        } else if let Some(id) = key.strip_prefix(keys::SESSIONS) {
            self.sessions.remove(id);
            if put {
                if let Some(r) =
                    decode("session").and_then(|v| serde_json::from_value::<SessionRecord>(v).ok())
                {
                    // A session policy that cannot be read allows nothing.
                    let session_policy = r.policy.as_deref().map(|d| {
                        Arc::new(Policy::parse(d, false).unwrap_or_else(|_| Policy::union(&[])))
                    });
                    self.sessions.insert(
                        id.into(),
                        Compiled {
                            record: r,
                            session_policy,
                        },
                    );
                }
            }
        }
    }

    fn principal_context(
        &self,
        account: &str,
        principal: &Principal,
        session: Option<&str>,
        ctx: &mut Context,
    ) {
        principal.describe(account, ctx);
        let tags = match principal {
            Principal::Root => None,
            Principal::User { name, .. } => self
                .users
                .get(&name.to_ascii_lowercase())
                .map(|u| &u.record.tags),
            Principal::AssumedRole { role_name, .. } => self
                .roles
                .get(&role_name.to_ascii_lowercase())
                .map(|r| &r.record.tags),
        };
        let session_tags = session
            .and_then(|s| self.sessions.get(s))
            .map(|s| &s.record.tags);
        // A session's tags win over its role's of the same key.
        for (k, v) in tags.into_iter().chain(session_tags).flatten() {
            ctx.set(&format!("aws:PrincipalTag/{k}"), v.clone());
        }
    }

    /// A managed policy's default version, customer or AWS.
    fn managed(&self, arn: &str) -> Option<&Policy> {
        if let Some(p) = BUILT_IN.get().and_then(|b| b.get(arn)) {
            return Some(p);
        }
        let name = arn.rsplit('/').next()?;
        self.policies.get(&name.to_ascii_lowercase()).map(|p| &**p)
    }

    fn gather<'a>(
        &'a self,
        inline: &'a [Arc<Policy>],
        attached: &[String],
        out: &mut Vec<&'a Policy>,
    ) {
        out.extend(inline.iter().map(|p| &**p));
        out.extend(attached.iter().filter_map(|a| self.managed(a)));
    }
}

/// A policy with no statements: allows nothing.
static NOTHING: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(|| Policy::union(&[]));

/// AWS managed policies, compiled once.
static BUILT_IN: std::sync::OnceLock<HashMap<String, Policy>> = std::sync::OnceLock::new();

pub(crate) fn init_built_in() {
    BUILT_IN.get_or_init(|| {
        managed::POLICIES
            .iter()
            .filter_map(|m| Some((m.arn(), Policy::parse(m.document, false).ok()?)))
            .collect()
    });
}

fn compile_inline(docs: &std::collections::BTreeMap<String, String>) -> Vec<Arc<Policy>> {
    docs.values()
        .filter_map(|d| match Policy::parse(d, false) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                tracing::error!(error = %e, "a stored inline policy does not parse");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{AccessKeyRecord, KeyStatus, UserRecord};
    use wharf_store::{Op, Txn};

    /// A user and its key written in one transaction (the key first) are
    /// never seen apart: a reader finds the key with its user, or neither.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_is_never_seen_half_applied() {
        let store: DynStore = Arc::new(wharf_store::MemStore::new());
        let cache = Cache::new(store.clone(), "000000000000".into());
        cache.ready().await;
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (cache, done) = (cache.clone(), done.clone());
            tokio::task::spawn_blocking(move || {
                let mut half = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    for i in 0..200 {
                        if let Err(KeyError::Invalid) =
                            cache.credential(&format!("AKIA{i}"), None, 0)
                        {
                            half += 1;
                        }
                    }
                }
                half
            })
        };
        for i in 0..200 {
            let user = UserRecord {
                name: format!("u{i}"),
                id: format!("AIDA{i}"),
                path: "/".into(),
                created: 0,
                tags: vec![],
                policies: Default::default(),
                groups: vec![],
                access_keys: vec![format!("AKIA{i}")],
                boundary: None,
            };
            let key = AccessKeyRecord {
                id: format!("AKIA{i}"),
                secret: "s".into(),
                user: user.name.clone(),
                status: KeyStatus::Active,
                created: 0,
            };
            let txn = Txn::new()
                .then(Op::put(
                    keys::access_key(&key.id),
                    wharf_store::typed::encode(&key),
                ))
                .then(Op::put(
                    keys::user(&user.name),
                    wharf_store::typed::encode(&user),
                ));
            let rev = store.txn(txn).await.unwrap().revision;
            cache.caught_up(rev).await;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(reader.await.unwrap(), 0, "a key was seen without its user");
    }
}
