//! Parameter Store's records in the store.
//!
//! # Layout
//!
//! One record per parameter, at `/ssm/{region}/parameters/{name}`, the name
//! exactly as given (names are case-sensitive). Names are of two forms only:
//! hierarchical ones begin with `/` (`/a/b` is kept at
//! `/ssm/us-east-1/parameters//a/b`) and flat ones contain no `/` at all
//! (`a` is kept at `/ssm/us-east-1/parameters/a`). So the key is the name
//! appended to the prefix, with no marker or escaping: the mapping is
//! one-to-one, and the parameters under a path `/a/b` are exactly the keys
//! under the prefix `/ssm/{region}/parameters//a/b/` — one range scan.
//!
//! `a` and `/a` would have the same ARN (`…:parameter/a`, SSM drops the
//! leading slash), so only one of the two may exist at a time: creating one
//! while the other exists is refused (`ParameterAlreadyExists`), checked in
//! the creating transaction.
//!
//! All versions of a parameter (at most 100, oldest first) live in its one
//! record, with its tags, so every change is one compare-and-swap of one
//! key. Every version's value — String, StringList and SecureString alike —
//! is sealed ([`wharf_seal::Sealer`]) bound to `{parameter ARN}#{version}`
//! and kept as base64.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// SSM keeps the 100 most recent versions of a parameter.
pub const MAX_VERSIONS: usize = 100;

/// The prefix of every parameter record of `region`.
pub fn prefix(region: &str) -> String {
    format!("/ssm/{region}/parameters/")
}

/// The key of the parameter `name` (see the module docs).
pub fn key(region: &str, name: &str) -> String {
    format!("{}{name}", prefix(region))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterRecord {
    /// The name as given (with its leading slash, if any).
    pub name: String,
    /// Oldest first; never empty; versions strictly increasing.
    pub versions: Vec<VersionRecord>,
    /// In the order they were first added.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: i64,
    /// `String`, `StringList` or `SecureString`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Base64 of the sealed value (bound to `{ARN}#{version}`).
    pub sealed: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub allowed_pattern: Option<String>,
    /// SecureString only.
    #[serde(default)]
    pub key_id: Option<String>,
    /// `Standard` or `Advanced`.
    pub tier: String,
    pub data_type: String,
    #[serde(default)]
    pub labels: Vec<String>,
    pub modified: Millis,
    pub user: String,
}

impl ParameterRecord {
    pub fn current(&self) -> Option<&VersionRecord> {
        self.versions.last()
    }

    pub fn version(&self, version: i64) -> Option<&VersionRecord> {
        self.versions.iter().find(|v| v.version == version)
    }

    pub fn labelled(&self, label: &str) -> Option<&VersionRecord> {
        self.versions
            .iter()
            .find(|v| v.labels.iter().any(|l| l == label))
    }
}
