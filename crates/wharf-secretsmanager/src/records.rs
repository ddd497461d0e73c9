//! Secrets in the store: one record per secret under
//! `/secretsmanager/{region}/secrets/{name}` with every version in it, so
//! a new version and the staging labels it moves change in one write.
//! Values are sealed ([`wharf_seal`]) for the secret's ARN and version.

use serde::{Deserialize, Serialize};

pub type Millis = i64;

pub fn prefix(region: &str) -> String {
    format!("/secretsmanager/{region}/secrets/")
}

pub fn key(region: &str, name: &str) -> String {
    format!("{}{name}", prefix(region))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub name: String,
    /// `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX`.
    pub arn: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Recorded and reported; Wharf seals every value with its own key.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub secret_type: Option<String>,
    pub created: Millis,
    pub last_changed: Millis,
    /// The day (midnight UTC) it was last read, as Secrets Manager keeps it.
    #[serde(default)]
    pub last_accessed: Option<Millis>,
    /// When DeleteSecret was called, and when it is purged.
    #[serde(default)]
    pub deleted: Option<Millis>,
    #[serde(default)]
    pub purge_at: Option<Millis>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub policy: Option<String>,
    /// Oldest first.
    #[serde(default)]
    pub versions: Vec<Version>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub id: String,
    pub created: Millis,
    #[serde(default)]
    pub stages: Vec<String>,
    #[serde(default)]
    pub last_accessed: Option<Millis>,
    /// Base64 of the sealed value; a binary secret's value is its base64
    /// text as the wire carries it.
    pub sealed: String,
    pub binary: bool,
}

impl SecretRecord {
    pub fn version(&self, id: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.id == id)
    }

    pub fn staged(&self, stage: &str) -> Option<&Version> {
        self.versions
            .iter()
            .find(|v| v.stages.iter().any(|s| s == stage))
    }
}
