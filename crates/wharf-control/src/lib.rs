//! The control plane: the AWS-compatible API server, its handlers, and the
//! background loops that keep stored state tidy.
//!
//! A request flows: [`http`] (SigV4, `X-Amz-Target`, JSON decode) →
//! a handler in [`ecs`] or [`agent_api`] (validation through `wharf-core`,
//! then revisioned compare-and-swap writes through [`records`]) → the store.

pub mod agent_api;
pub mod auth;
pub mod authz;
pub mod cache;
pub mod controller;
pub mod ecs;
pub mod error;
pub mod exec;
pub mod http;
pub mod idempotency;
pub mod lb_targets;
pub mod metrics;
pub mod migrate;
pub mod reaper;
pub mod records;
pub mod serve;
pub mod spot;
pub mod task_credentials;
pub mod task_secrets;
pub mod tls;
pub mod tokens;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;
use wharf_core::arn::Scope;
use wharf_core::clock::Clock;
use wharf_protocol::sigv4::Credentials;
use wharf_store::DynStore;

/// How the control plane is set up.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// The account ID that appears in ARNs.
    pub account_id: String,
    /// Access keys the API accepts: the account's root. Agents sign with
    /// credentials of their own (see [`tokens`]).
    pub credentials: Vec<Credentials>,
    /// How long STOPPED tasks stay visible (ECS: about an hour).
    pub stopped_task_retention: Duration,
    /// How long an agent stays "connected" after its last poll.
    pub agent_session_ttl: Duration,
    /// Whether the API is served over TLS (exec stream URLs are `wss://`).
    pub tls: bool,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            account_id: "000000000000".into(),
            credentials: vec![],
            stopped_task_retention: Duration::from_secs(3600),
            agent_session_ttl: Duration::from_secs(30),
            tls: false,
        }
    }
}

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    pub store: DynStore,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ControlConfig>,
    pub sessions: Arc<agent_api::Sessions>,
    /// The CloudWatch Logs store behind the `Logs_20140328` operations.
    pub logs: wharf_logs::LogStore,
    /// What placement reads (see [`cache`]).
    pub cache: Arc<cache::Cache>,
    /// Latency histograms served on `GET /metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// The ELBv2 API (its records live in `store`; the listeners are
    /// served by `wharf_lb::dataplane`).
    pub lb: wharf_lb::Lb,
    /// IAM and STS, and the policy cache every request is judged by.
    pub iam: wharf_iam::Iam,
    /// The lease clientToken records are written under.
    pub tokens: Arc<idempotency::Leases>,
    /// ECS Exec sessions with one end attached.
    pub exec: Arc<exec::Relay>,
    /// Secrets Manager and Parameter Store; their values sealed with one key.
    pub secrets: wharf_secretsmanager::SecretsManager,
    pub ssm: wharf_ssm::Ssm,
}

impl Control {
    /// A control plane whose log store is in memory; see [`Control::with_logs`].
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, config: ControlConfig) -> Self {
        let sealer = Arc::new(wharf_seal::Sealer::ephemeral());
        Self {
            iam: wharf_iam::Iam::new(store.clone(), config.account_id.clone()),
            clock,
            config: Arc::new(config),
            sessions: Arc::default(),
            logs: wharf_logs::LogStore::in_memory()
                .expect("an empty in-memory log store can always be created"),
            cache: Arc::default(),
            metrics: Arc::default(),
            tokens: Arc::default(),
            exec: Arc::default(),
            lb: wharf_lb::Lb {
                store: store.clone(),
                config: wharf_lb::LbConfig::default(),
            },
            secrets: wharf_secretsmanager::SecretsManager::new(store.clone(), sealer.clone()),
            ssm: wharf_ssm::Ssm::new(store.clone(), sealer),
            store,
        }
    }

    /// Seals secrets and parameters under `sealer`'s key (the data
    /// directory's, or the key file given at start) instead of a key made
    /// for this process.
    pub fn with_sealer(mut self, sealer: Arc<wharf_seal::Sealer>) -> Self {
        self.secrets =
            wharf_secretsmanager::SecretsManager::new(self.store.clone(), sealer.clone());
        self.ssm = wharf_ssm::Ssm::new(self.store.clone(), sealer);
        self
    }

    /// Where load balancer listeners bind and how their names read.
    pub fn with_lb_config(mut self, config: wharf_lb::LbConfig) -> Self {
        self.lb.config = config;
        self
    }

    /// Serves the logs API from `logs` (a durable store for `wharf up`/`server`).
    pub fn with_logs(mut self, logs: wharf_logs::LogStore) -> Self {
        self.logs = logs;
        self
    }
}

/// Where the store keeps a value sealed under the key it was first served
/// with, so a server given another key refuses to start instead of
/// sealing new values under it and failing to open the old ones.
const SEAL_CHECK_KEY: &str = "/seal/check";
const SEAL_CHECK: &[u8] = b"wharf seal check";

/// Whether `sealer`'s key is the one the store's secrets are sealed with
/// (the first server to start records it). Err says what to do.
pub async fn check_seal_key(
    store: &dyn wharf_store::Store,
    sealer: &wharf_seal::Sealer,
) -> Result<(), String> {
    let found = store
        .get(SEAL_CHECK_KEY)
        .await
        .map_err(|e| format!("cannot read the store: {e}"))?;
    match found {
        Some(kv) => match sealer.open(SEAL_CHECK_KEY, &kv.value) {
            Ok(v) if v == SEAL_CHECK => Ok(()),
            _ => Err("the secrets key does not open this store's secrets: give the key file the store's secrets were sealed with (--secrets-key-file, or the data directory's secrets.key)".into()),
        },
        None => {
            let txn = wharf_store::Txn::new()
                .when(wharf_store::Compare::NotExists(SEAL_CHECK_KEY.into()))
                .then(wharf_store::Op::put(
                    SEAL_CHECK_KEY,
                    sealer.seal(SEAL_CHECK_KEY, SEAL_CHECK),
                ));
            let done = store
                .txn(txn)
                .await
                .map_err(|e| format!("cannot write the store: {e}"))?;
            if done.succeeded {
                Ok(())
            } else {
                // Another server recorded its key first: it must be ours.
                Box::pin(check_seal_key(store, sealer)).await
            }
        }
    }
}

/// Per-request context: who is calling, where, and when.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub scope: Scope,
    pub now: wharf_core::clock::Millis,
    pub caller: auth::Caller,
    /// The request's Host header (what a stream URL names).
    pub host: Option<String>,
    /// The address the request came from (`aws:SourceIp`).
    pub source_ip: Option<std::net::IpAddr>,
}

/// The peer address of a connection, put in each of its requests'
/// extensions by [`serve::serve`].
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

impl Ctx {
    /// The server as this request reached it: `scheme://HOST` (the Host
    /// header; `localhost` without one), `secure` or `plain` by whether the
    /// API is served over TLS (`https`/`http`, `wss`/`ws`).
    pub fn origin(&self, c: &Control, secure: &str, plain: &str) -> String {
        let scheme = if c.config.tls { secure } else { plain };
        format!("{scheme}://{}", self.host.as_deref().unwrap_or("localhost"))
    }

    /// The region the request is signed for: every resource it names lives there.
    pub fn region(&self) -> &str {
        &self.scope.region
    }
    /// Where the request's region keeps the cluster `name`.
    pub fn cluster_key(&self, name: &str) -> wharf_core::records::ClusterKey {
        wharf_core::records::ClusterKey::new(&self.scope.region, name)
    }
}

#[cfg(test)]
impl Ctx {
    /// A caller in us-east-1 of account 000000000000 at time 0.
    pub(crate) fn for_tests() -> Ctx {
        Ctx {
            scope: Scope {
                region: "us-east-1".into(),
                account: "000000000000".into(),
            },
            now: 0,
            caller: auth::Caller::Root,
            host: None,
            source_ip: None,
        }
    }
}
