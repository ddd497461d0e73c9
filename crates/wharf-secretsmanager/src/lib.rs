//! AWS Secrets Manager for Wharf (`secretsmanager`, AWS JSON 1.1): secrets
//! with versions and staging labels (`AWSCURRENT`, `AWSPREVIOUS`, your
//! own), deletion with a recovery window, tags and resource policies, kept
//! in the store with every value sealed ([`wharf_seal`]).
//!
//! The crate knows nothing of HTTP or of who may call: the server verifies
//! the signature, asks IAM, and hands over `(operation, body)` to
//! [`dispatch`]. Operations that act on many secrets at once
//! (BatchGetSecretValue) ask the server's [`Guard`] for each.

mod api;
pub mod records;
pub mod reference;

pub use api::{dispatch, Guard};
pub use reference::SecretReference;

use std::sync::Arc;
use wharf_protocol::AwsError;
use wharf_seal::Sealer;
use wharf_store::DynStore;

/// The region and account that appear in ARNs and keys.
#[derive(Debug, Clone)]
pub struct Scope {
    pub region: String,
    pub account: String,
}

/// Secrets Manager over one store.
#[derive(Clone)]
pub struct SecretsManager {
    store: DynStore,
    sealer: Arc<Sealer>,
}

/// What IAM judges a request on a secret by: its full ARN, its resource
/// policy, its tags (`aws:ResourceTag/…`).
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub arn: String,
    pub policy: Option<String>,
    pub tags: Vec<(String, String)>,
}

impl Judged {
    pub(crate) fn of(s: &records::SecretRecord) -> Judged {
        Judged {
            arn: s.arn.clone(),
            policy: s.policy.clone(),
            tags: s.tags.clone(),
        }
    }
}

/// A secret's value as a task receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub arn: String,
    pub version_id: String,
    pub string: Option<String>,
    /// Base64, as the wire carries it.
    pub binary: Option<String>,
}

impl SecretsManager {
    pub fn new(store: DynStore, sealer: Arc<Sealer>) -> SecretsManager {
        SecretsManager { store, sealer }
    }

    /// The full ARN of the secret `secret_id` (a name, a partial or a full
    /// ARN) names, as IAM judges requests on it; None if there is none.
    pub async fn arn_of(&self, scope: &Scope, secret_id: &str) -> Result<Option<String>, AwsError> {
        Ok(api::find(self, scope, secret_id, 0)
            .await?
            .map(|s| s.value.arn))
    }

    /// What IAM judges a request on that secret by, if it exists.
    pub async fn judged(&self, scope: &Scope, secret_id: &str) -> Result<Option<Judged>, AwsError> {
        Ok(api::find(self, scope, secret_id, 0)
            .await?
            .map(|s| Judged::of(&s.value)))
    }

    /// The value GetSecretValue would give (by version ID, else stage,
    /// else `AWSCURRENT`), for a task's `secrets`.
    pub async fn value(
        &self,
        scope: &Scope,
        now: i64,
        secret_id: &str,
        version_id: Option<&str>,
        version_stage: Option<&str>,
    ) -> Result<Value, AwsError> {
        api::value(self, scope, now, secret_id, version_id, version_stage).await
    }
}
