//! Identity for Wharf: the IAM API (users, access keys, groups, roles,
//! managed and inline policies), STS (caller identity, assumed roles,
//! session tokens), and the policy evaluator every service's requests go
//! through. Records live in the store under `/iam/`; [`cache::Cache`]
//! keeps them compiled in memory from its watch, so authenticating a key
//! and evaluating a request read no store.
//!
//! The account's root (the API keys Wharf is started with) is allowed
//! everything and is never evaluated; every other principal is allowed
//! only what its policies allow.

pub mod api;
pub mod cache;
pub mod managed;
pub mod policy;
pub mod records;
pub mod service_roles;
pub mod sts;

use records::{RoleRecord, UserRecord};
use std::sync::Arc;
use wharf_store::DynStore;

/// Who a verified request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The account's root.
    Root,
    User {
        name: String,
        id: String,
        arn: String,
    },
    /// A session of a role (AssumeRole, a task's role).
    AssumedRole {
        role_name: String,
        role_id: String,
        role_arn: String,
        session_name: String,
        /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
        arn: String,
    },
}

impl Principal {
    pub fn user(account: &str, u: &UserRecord) -> Principal {
        Principal::User {
            name: u.name.clone(),
            id: u.id.clone(),
            arn: user_arn(account, &u.path, &u.name),
        }
    }

    pub fn assumed_role(account: &str, r: &RoleRecord, session: &str) -> Principal {
        Principal::AssumedRole {
            role_name: r.name.clone(),
            role_id: r.id.clone(),
            role_arn: role_arn(account, &r.path, &r.name),
            session_name: session.to_string(),
            arn: format!("arn:aws:sts::{account}:assumed-role/{}/{session}", r.name),
        }
    }

    /// The ARN GetCallerIdentity and AccessDenied messages give.
    pub fn arn(&self, account: &str) -> String {
        match self {
            Principal::Root => format!("arn:aws:iam::{account}:root"),
            Principal::User { arn, .. } | Principal::AssumedRole { arn, .. } => arn.clone(),
        }
    }

    /// GetCallerIdentity's `UserId`.
    pub fn user_id(&self, account: &str) -> String {
        match self {
            Principal::Root => account.to_string(),
            Principal::User { id, .. } => id.clone(),
            Principal::AssumedRole {
                role_id,
                session_name,
                ..
            } => format!("{role_id}:{session_name}"),
        }
    }

    /// The global condition keys that describe the principal.
    pub fn describe(&self, account: &str, ctx: &mut policy::Context) {
        ctx.set("aws:PrincipalAccount", account);
        ctx.set("aws:userid", self.user_id(account));
        match self {
            Principal::Root => {
                ctx.set("aws:PrincipalArn", self.arn(account));
                ctx.set("aws:PrincipalType", "Account");
            }
            Principal::User { name, arn, .. } => {
                ctx.set("aws:username", name.clone());
                ctx.set("aws:PrincipalArn", arn.clone());
                ctx.set("aws:PrincipalType", "User");
            }
            Principal::AssumedRole { role_arn, .. } => {
                ctx.set("aws:PrincipalArn", role_arn.clone());
                ctx.set("aws:PrincipalType", "AssumedRole");
            }
        }
    }

    /// As a trust policy's `Principal` sees the caller: a user or a
    /// session by its own ARN; its account, and a session's role, only by
    /// delegation.
    pub fn as_caller(&self, account: &str) -> policy::Caller {
        let root = format!("arn:aws:iam::{account}:root");
        let (names, mut delegated) = match self {
            Principal::Root => (vec![root.clone()], vec![]),
            Principal::User { arn, .. } => (vec![arn.clone()], vec![]),
            Principal::AssumedRole { role_arn, arn, .. } => {
                (vec![arn.clone()], vec![role_arn.clone()])
            }
        };
        delegated.push(root);
        policy::Caller {
            kind: "AWS",
            names,
            delegated,
        }
    }
}

/// A verified caller as IAM and STS handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    /// The session of temporary credentials, if that is what signed.
    pub session: Option<String>,
}

pub fn user_arn(account: &str, path: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:user{path}{name}")
}
pub fn role_arn(account: &str, path: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:role{path}{name}")
}
pub fn group_arn(account: &str, path: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:group{path}{name}")
}
pub fn policy_arn(account: &str, path: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:policy{path}{name}")
}

/// IAM and STS over one store, for one account.
#[derive(Clone)]
pub struct Iam {
    pub store: DynStore,
    pub cache: Arc<cache::Cache>,
    pub account: String,
}

impl Iam {
    /// IAM over `store`; its cache loads and follows the store in the
    /// background (see [`cache::Cache::new`]).
    pub fn new(store: DynStore, account: String) -> Iam {
        cache::init_built_in();
        let cache = cache::Cache::new(store.clone(), account.clone());
        Iam {
            store,
            cache,
            account,
        }
    }
}

/// Runs one IAM action (awsQuery; `params` without `Action` and `Version`).
pub use api::dispatch as dispatch_iam;
/// Runs one STS action.
pub use sts::dispatch as dispatch_sts;

/// A random identifier of IAM's shape: `prefix`, then upper-case letters
/// and digits, `len` characters in all.
pub(crate) fn new_id(prefix: &str, len: usize) -> String {
    random(prefix, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", len)
}

/// A secret access key (or session token): base64's alphabet.
pub(crate) fn new_secret(len: usize) -> String {
    random(
        "",
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        len,
    )
}

fn random(prefix: &str, alphabet: &[u8], len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut s = prefix.to_string();
    while s.len() < len {
        s.push(alphabet[rng.gen_range(0..alphabet.len())] as char);
    }
    s
}
