//! IAM's records in the store, under `/iam/` (IAM is global: no region in
//! any key). Names of users, groups, roles and policies are unique without
//! regard to case, as IAM's are, so keys hold the lower-cased name and the
//! record the name as given.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub mod keys {
    pub const PREFIX: &str = "/iam/";
    pub const USERS: &str = "/iam/users/";
    pub const GROUPS: &str = "/iam/groups/";
    pub const ROLES: &str = "/iam/roles/";
    pub const POLICIES: &str = "/iam/policies/";
    pub const ACCESS_KEYS: &str = "/iam/access-keys/";
    pub const SESSIONS: &str = "/iam/sessions/";

    pub fn user(name: &str) -> String {
        format!("{USERS}{}", name.to_ascii_lowercase())
    }
    pub fn group(name: &str) -> String {
        format!("{GROUPS}{}", name.to_ascii_lowercase())
    }
    pub fn role(name: &str) -> String {
        format!("{ROLES}{}", name.to_ascii_lowercase())
    }
    /// Customer managed policies, by name (AWS managed ones are built in).
    pub fn policy(name: &str) -> String {
        format!("{POLICIES}{}", name.to_ascii_lowercase())
    }
    pub fn access_key(id: &str) -> String {
        format!("{ACCESS_KEYS}{id}")
    }
    pub fn session(id: &str) -> String {
        format!("{SESSIONS}{id}")
    }
}

/// What users, groups and roles share: their policies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Policies {
    /// Inline policies: name → document (as given).
    #[serde(default)]
    pub inline: BTreeMap<String, String>,
    /// Managed policies attached, by ARN, in attachment order.
    #[serde(default)]
    pub attached: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub id: String,
    pub path: String,
    pub created: Millis,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub policies: Policies,
    /// The groups it is in, by name as given (the group lists it too;
    /// both change in one transaction).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Its access keys' IDs (at most two, as IAM allows).
    #[serde(default)]
    pub access_keys: Vec<String>,
    #[serde(default)]
    pub boundary: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub name: String,
    pub id: String,
    pub path: String,
    pub created: Millis,
    #[serde(default)]
    pub policies: Policies,
    /// Its users, by name as given.
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleRecord {
    pub name: String,
    pub id: String,
    pub path: String,
    pub created: Millis,
    /// The trust policy (AssumeRolePolicyDocument), as given.
    pub trust: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Seconds.
    pub max_session_duration: i32,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub policies: Policies,
    #[serde(default)]
    pub boundary: Option<String>,
    /// When a session of it last called, in whole seconds (RoleLastUsed).
    #[serde(default)]
    pub last_used: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// `v1`, `v2`, …
    pub id: String,
    pub document: String,
    pub created: Millis,
}

/// A customer managed policy: at most five versions, one the default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub name: String,
    pub id: String,
    pub path: String,
    #[serde(default)]
    pub description: Option<String>,
    pub created: Millis,
    pub updated: Millis,
    pub default_version: String,
    pub versions: Vec<PolicyVersion>,
    /// The number the next version takes.
    pub next_version: u32,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Users, groups and roles it is attached to, and those it bounds:
    /// counted in the transactions that attach and detach, so a delete
    /// never races an attach.
    #[serde(default)]
    pub attachments: u32,
    #[serde(default)]
    pub boundary_uses: u32,
}

impl PolicyRecord {
    pub fn default_document(&self) -> Option<&str> {
        self.versions
            .iter()
            .find(|v| v.id == self.default_version)
            .map(|v| v.document.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyStatus {
    Active,
    Inactive,
}

/// A user's long-term access key. The secret is kept as given: SigV4 is an
/// HMAC, so the server needs it to check a signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    pub id: String,
    pub secret: String,
    /// The user's name as given.
    pub user: String,
    pub status: KeyStatus,
    pub created: Millis,
}

/// Who a session's temporary credentials act as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionOf {
    /// AssumeRole: the role (by name as given) and the session's name.
    Role {
        role: String,
        role_id: String,
        session_name: String,
    },
    /// GetSessionToken of a user: the user itself (its ID, so a user
    /// deleted and made again does not inherit the session).
    User {
        name: String,
        #[serde(default)]
        id: String,
    },
    /// GetSessionToken of the account's root.
    Root,
}

/// Temporary credentials (STS), written under a lease that ends with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub secret: String,
    /// SHA-256 of the session token, hex.
    pub token_sha256: String,
    pub of: SessionOf,
    pub issued: Millis,
    pub expires: Millis,
    /// Session policies (AssumeRole's `Policy` and `PolicyArns`): the
    /// session may do only what they allow too.
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub policy_arns: Vec<String>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}
