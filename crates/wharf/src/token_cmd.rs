//! `wharf token create|list|revoke`: the join tokens agents register with,
//! through the `WharfAdmin_v1` operations, signed with an API key.

use crate::SignArgs;
use clap::Subcommand;
use wharf_core::admin_protocol::*;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a join token for a cluster; it is printed once.
    Create {
        /// The cluster agents that join with it register in.
        #[arg(long, env = "WHARF_CLUSTER", default_value = "default")]
        cluster: String,
        #[arg(long)]
        description: Option<String>,
        /// Seconds it can be used to join (0: until revoked).
        #[arg(long, default_value_t = 86_400)]
        expires_in: i64,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// List join tokens (never their secrets).
    List {
        #[arg(long)]
        cluster: Option<String>,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Revoke a join token: the credentials of agents that joined with it
    /// are deleted and their instances disconnected.
    Revoke {
        /// The token's ID (`wharf token list`).
        token_id: String,
        #[command(flatten)]
        sign: SignArgs,
    },
}

fn target(op: &str) -> String {
    format!("{TARGET_PREFIX}.{op}")
}

pub async fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            cluster,
            description,
            expires_in,
            sign,
        } => {
            let resp: CreateJoinTokenResponse = sign
                .client()?
                .call(
                    &target(CREATE_JOIN_TOKEN),
                    &CreateJoinTokenRequest {
                        cluster,
                        description,
                        expires_in_seconds: Some(expires_in),
                    },
                )
                .await?;
            // The token alone on stdout, for scripts; the rest on stderr.
            println!("{}", resp.token);
            eprintln!(
                "join token {} for cluster {} in {} (shown once; start agents with `wharf agent --server URL --region {} --token TOKEN`)",
                resp.join_token.token_id,
                resp.join_token.cluster,
                resp.join_token.region,
                resp.join_token.region
            );
        }
        TokenCommand::List { cluster, sign } => {
            let resp: ListJoinTokensResponse = sign
                .client()?
                .call(
                    &target(LIST_JOIN_TOKENS),
                    &ListJoinTokensRequest { cluster },
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&resp)?);
        }
        TokenCommand::Revoke { token_id, sign } => {
            let resp: RevokeJoinTokenResponse = sign
                .client()?
                .call(
                    &target(REVOKE_JOIN_TOKEN),
                    &RevokeJoinTokenRequest { token_id },
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&resp)?);
        }
    }
    Ok(())
}
