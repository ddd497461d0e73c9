//! Wharf's own operations for the account's administrators (API keys, never
//! agent credentials), under the target prefix [`TARGET_PREFIX`]: join
//! tokens for agents (`wharf token create|list|revoke`) and Spot
//! interruptions (`wharf interrupt`).

use serde::{Deserialize, Serialize};

pub const TARGET_PREFIX: &str = "WharfAdmin_v1";
pub const CREATE_JOIN_TOKEN: &str = "CreateJoinToken";
pub const LIST_JOIN_TOKENS: &str = "ListJoinTokens";
pub const REVOKE_JOIN_TOKEN: &str = "RevokeJoinToken";
pub const INTERRUPT_SPOT_TASKS: &str = "InterruptSpotTasks";

/// Interrupts FARGATE_SPOT tasks as Spot does when AWS takes the capacity
/// back: each is stopped with `stopCode: SpotInterruption`, its containers
/// get SIGTERM and two minutes before SIGKILL, and a service replaces it.
/// Names tasks, or a service (all its live FARGATE_SPOT tasks).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterruptSpotTasksRequest {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub tasks: Vec<String>,
    #[serde(default)]
    pub service: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterruptSpotTasksResponse {
    /// ARNs of the tasks interrupted.
    pub interrupted: Vec<String>,
    /// Tasks named that could not be: unknown, not FARGATE_SPOT, or
    /// already stopping.
    pub failures: Vec<SpotFailure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpotFailure {
    pub task: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateJoinTokenRequest {
    pub cluster: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Seconds until the token can no longer be used to join (agents that
    /// joined keep their credentials). None or 0: until revoked.
    #[serde(default)]
    pub expires_in_seconds: Option<i64>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateJoinTokenResponse {
    /// The whole token, shown this once: only its hash is kept.
    pub token: String,
    pub join_token: JoinToken,
}

impl std::fmt::Debug for CreateJoinTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateJoinTokenResponse")
            .field("join_token", &self.join_token)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinToken {
    pub token_id: String,
    pub cluster: String,
    /// The cluster's region (the region the token was created in).
    #[serde(default)]
    pub region: String,
    pub description: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub expires_at: Option<i64>,
    /// Agents holding credentials minted from it.
    pub agents: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListJoinTokensRequest {
    #[serde(default)]
    pub cluster: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListJoinTokensResponse {
    pub join_tokens: Vec<JoinToken>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeJoinTokenRequest {
    pub token_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeJoinTokenResponse {
    pub join_token: JoinToken,
    /// Agent credentials deleted with it.
    pub agents_revoked: usize,
    /// Container instances whose agents were disconnected.
    pub instances_disconnected: usize,
}

/// Every operation under [`TARGET_PREFIX`], sorted by name.
pub const OPERATIONS: &[&str] = &[
    CREATE_JOIN_TOKEN,
    LIST_JOIN_TOKENS,
    REVOKE_JOIN_TOKEN,
    INTERRUPT_SPOT_TASKS,
];

/// Calls `v.visit::<Input>(operation)` for every operation, in [`OPERATIONS`]
/// order, as `wharf_model::ecs::visit_operations` does for ECS.
pub fn visit_operations(v: &mut impl wharf_model::OperationVisitor) {
    v.visit::<CreateJoinTokenRequest>(CREATE_JOIN_TOKEN);
    v.visit::<ListJoinTokensRequest>(LIST_JOIN_TOKENS);
    v.visit::<RevokeJoinTokenRequest>(REVOKE_JOIN_TOKEN);
    v.visit::<InterruptSpotTasksRequest>(INTERRUPT_SPOT_TASKS);
}
