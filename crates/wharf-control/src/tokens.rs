//! Join tokens and the agent credentials minted from them. An operator
//! creates a token for a cluster (`wharf token create`, printed once, kept
//! only as a hash); an agent presents it once (`WharfAgent_v1.Join`) and
//! receives credentials of its own, good for that cluster's agent protocol
//! and for the instances it registers with them. Revoking a token deletes
//! every credential minted from it and disconnects their instances.

use crate::error::{from_store, invalid, ApiResult};
use crate::http::call;
use crate::records::{self, commit};
use crate::{Control, Ctx};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use wharf_core::admin_protocol::*;
use wharf_core::agent_protocol::{JoinRequest, JoinResponse};
use wharf_core::clock::Millis;
use wharf_core::records::{keys, AgentCredentialRecord, JoinTokenRecord, MANAGED_CLUSTER};
use wharf_protocol::sigv4::{constant_time_eq, Credentials};
use wharf_protocol::AwsError;
use wharf_store::{Compare, Op, Txn};

/// What every token starts with, so a leaked one is easy to recognise
/// (and to scan for).
const TOKEN_PREFIX: &str = "wharf-join";
/// The longest a token may stay valid: ten years.
const MAX_EXPIRY_SECS: i64 = 10 * 365 * 24 * 3600;

pub async fn dispatch(c: &Control, x: &Ctx, op: &str, body: &[u8]) -> ApiResult<Vec<u8>> {
    match op {
        CREATE_JOIN_TOKEN => call(body, |r| create(c, x, r)).await,
        LIST_JOIN_TOKENS => call(body, |r| list(c, x, r)).await,
        REVOKE_JOIN_TOKEN => call(body, |r| revoke(c, x, r)).await,
        INTERRUPT_SPOT_TASKS => call(body, |r| crate::spot::interrupt(c, x, r)).await,
        _ => Err(AwsError::unknown_operation(&format!(
            "{TARGET_PREFIX}.{op}"
        ))),
    }
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

pub(crate) fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// An access key ID shaped like AWS's (20 upper-case letters and digits),
/// `AWAG` for "agent".
fn new_access_key_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut buf = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    let tail: String = buf
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    format!("AWAG{tail}")
}

fn new_secret() -> String {
    random_hex(24)
}

async fn create(
    c: &Control,
    x: &Ctx,
    r: CreateJoinTokenRequest,
) -> ApiResult<CreateJoinTokenResponse> {
    if !wharf_core::arn::valid_name(&r.cluster) {
        return Err(invalid(
            "Cluster name can only contain letters (uppercase and lowercase), numbers, hyphens, and underscores, up to 255 characters.",
        ));
    }
    let description = r.description.unwrap_or_default();
    if description.len() > 255 {
        return Err(invalid("description must be at most 255 characters."));
    }
    let expires_at = match r.expires_in_seconds {
        None | Some(0) => None,
        Some(s) if (1..=MAX_EXPIRY_SECS).contains(&s) => Some(
            x.now
                .checked_add(s * 1000)
                .ok_or_else(|| invalid("expiresInSeconds is too large."))?,
        ),
        Some(_) => {
            return Err(invalid(format!(
                "expiresInSeconds must be from 0 (never) to {MAX_EXPIRY_SECS}."
            )))
        }
    };
    let id = random_hex(8);
    let secret = random_hex(32);
    let record = JoinTokenRecord {
        id: id.clone(),
        cluster: r.cluster,
        region: x.region().to_string(),
        description,
        secret_sha256: sha256_hex(&secret),
        created_at: x.now,
        expires_at,
    };
    let key = keys::join_token(&id);
    let txn = Txn::new()
        .when(Compare::NotExists(key.clone()))
        .then(records::put(&key, &record));
    if !commit(c.store.as_ref(), txn).await? {
        return Err(records::contention());
    }
    tracing::info!(token = %id, cluster = %record.cluster, region = %record.region, "join token created");
    Ok(CreateJoinTokenResponse {
        token: format!("{TOKEN_PREFIX}.{id}.{secret}"),
        join_token: wire(&record, 0),
    })
}

fn wire(t: &JoinTokenRecord, agents: usize) -> JoinToken {
    JoinToken {
        token_id: t.id.clone(),
        cluster: t.cluster.clone(),
        region: t.region.clone(),
        description: t.description.clone(),
        created_at: t.created_at,
        expires_at: t.expires_at,
        agents,
    }
}

async fn all_credentials(c: &Control) -> ApiResult<Vec<AgentCredentialRecord>> {
    let (creds, _) =
        records::list::<AgentCredentialRecord>(c.store.as_ref(), keys::AGENT_CREDENTIALS).await?;
    Ok(creds.into_iter().map(|v| v.value).collect())
}

async fn list(c: &Control, x: &Ctx, r: ListJoinTokensRequest) -> ApiResult<ListJoinTokensResponse> {
    let (tokens, _) = records::list::<JoinTokenRecord>(c.store.as_ref(), keys::JOIN_TOKENS).await?;
    let creds = all_credentials(c).await?;
    let join_tokens = tokens
        .into_iter()
        .map(|v| v.value)
        .filter(|t| t.region == x.region() && r.cluster.as_ref().is_none_or(|c| *c == t.cluster))
        .map(|t| {
            let agents = creds
                .iter()
                .filter(|a| a.token_id.as_deref() == Some(t.id.as_str()))
                .count();
            wire(&t, agents)
        })
        .collect();
    Ok(ListJoinTokensResponse { join_tokens })
}

async fn revoke(
    c: &Control,
    x: &Ctx,
    r: RevokeJoinTokenRequest,
) -> ApiResult<RevokeJoinTokenResponse> {
    // A token is its cluster's region's, as ListJoinTokens shows it.
    let Some(token) =
        records::get::<JoinTokenRecord>(c.store.as_ref(), &keys::join_token(&r.token_id))
            .await?
            .filter(|t| t.value.region == x.region())
    else {
        return Err(AwsError::client(
            "ResourceNotFoundException",
            format!("Join token {} not found.", r.token_id),
        ));
    };
    let minted: Vec<AgentCredentialRecord> = all_credentials(c)
        .await?
        .into_iter()
        .filter(|a| a.token_id.as_deref() == Some(r.token_id.as_str()))
        .collect();
    // One transaction: the token and every credential minted from it go
    // together, so no agent keeps a key of a revoked token.
    let mut txn = Txn::new().then(Op::delete(token.key.clone()));
    for a in &minted {
        txn = txn.then(Op::delete(keys::agent_credential(&a.access_key_id)));
    }
    c.store.txn(txn).await.map_err(from_store)?;
    let revoked: HashSet<String> = minted.into_iter().map(|a| a.access_key_id).collect();
    let disconnected = crate::agent_api::disconnect_agents(c, &revoked).await?;
    tracing::info!(
        token = %r.token_id,
        agents = revoked.len(),
        instances = disconnected,
        "join token revoked"
    );
    Ok(RevokeJoinTokenResponse {
        join_token: wire(&token.value, 0),
        agents_revoked: revoked.len(),
        instances_disconnected: disconnected,
    })
}

/// `WharfAgent_v1.Join`: a valid token buys new agent credentials.
pub async fn join(c: &Control, now: Millis, body: &[u8]) -> ApiResult<Vec<u8>> {
    call(body, |r: JoinRequest| async move {
        let refused = || {
            AwsError::client(
                "UnrecognizedClientException",
                "The join token is invalid, expired or revoked.",
            )
        };
        let mut parts = r.token.splitn(3, '.');
        let (Some(TOKEN_PREFIX), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(refused());
        };
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(refused());
        }
        let Some(token) =
            records::get::<JoinTokenRecord>(c.store.as_ref(), &keys::join_token(id)).await?
        else {
            return Err(refused());
        };
        let t = token.value.clone();
        if !constant_time_eq(sha256_hex(secret).as_bytes(), t.secret_sha256.as_bytes())
            || t.expires_at.is_some_and(|e| e <= now)
        {
            return Err(refused());
        }
        if let Some(region) = r.region.as_deref().filter(|r| *r != t.region) {
            return Err(AwsError::client(
                "InvalidParameterException",
                format!(
                    "The join token is for cluster {} in region {}, and the agent signs for {region}: start the agent with --region {}.",
                    t.cluster, t.region, t.region
                ),
            ));
        }
        let cred = AgentCredentialRecord {
            access_key_id: new_access_key_id(),
            secret_access_key: new_secret(),
            cluster: t.cluster.clone(),
            region: t.region.clone(),
            token_id: Some(t.id.clone()),
            created_at: now,
        };
        let key = keys::agent_credential(&cred.access_key_id);
        // Minted only while the token still exists: a join racing a
        // revocation cannot outlive it.
        let txn = Txn::new()
            .when(token.unchanged())
            .when(Compare::NotExists(key.clone()))
            .then(records::put(&key, &cred));
        if !commit(c.store.as_ref(), txn).await? {
            return Err(refused());
        }
        tracing::info!(token = %t.id, agent = %cred.access_key_id, cluster = %t.cluster, "agent joined");
        Ok(JoinResponse {
            access_key_id: cred.access_key_id,
            secret_access_key: cred.secret_access_key,
            cluster: cred.cluster,
            region: Some(cred.region),
        })
    })
    .await
}

/// Credentials for the agents `wharf up` runs in its own process, one set
/// per cluster they serve: created once, the same after every restart (so
/// the instances they registered stay theirs).
pub async fn local_agent_credentials(
    c: &Control,
    region: &str,
    cluster: &str,
    now: Millis,
) -> ApiResult<Credentials> {
    // One key per cluster name, whatever the region (so an upgraded
    // `wharf up` still owns the instance it registered): the record says
    // which region it signs for, the one `up` runs for now.
    let tag = if cluster == MANAGED_CLUSTER {
        "MANAGED".to_string()
    } else {
        sha256_hex(cluster)[..12].to_ascii_uppercase()
    };
    let akid = format!("AWAGLOCAL{tag}");
    let key = keys::agent_credential(&akid);
    loop {
        if let Some(mut v) = records::get::<AgentCredentialRecord>(c.store.as_ref(), &key).await? {
            if v.value.region != region {
                v.value.region = region.to_string();
                commit(
                    c.store.as_ref(),
                    Txn::new().when(v.unchanged()).then(v.put()),
                )
                .await?;
                continue;
            }
            return Ok(Credentials {
                access_key_id: v.value.access_key_id,
                secret_access_key: v.value.secret_access_key,
            });
        }
        let cred = AgentCredentialRecord {
            access_key_id: akid.clone(),
            secret_access_key: new_secret(),
            cluster: cluster.to_string(),
            region: region.to_string(),
            token_id: None,
            created_at: now,
        };
        let txn = Txn::new()
            .when(Compare::NotExists(key.clone()))
            .then(records::put(&key, &cred));
        commit(c.store.as_ref(), txn).await?;
    }
}
