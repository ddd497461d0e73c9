//! The operations. A handler finds the secret (by name, partial or full
//! ARN), validates, and writes the whole record back with one
//! compare-and-swap (retried on conflict), so a new version and the
//! staging labels it takes from others change together.

use crate::records::{self, Millis, SecretRecord, Version};
use crate::{Scope, SecretsManager, Value};
use base64::Engine as _;
use rand::Rng;
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use wharf_model::secretsmanager as m;
use wharf_protocol::AwsError;
use wharf_store::typed::{self, Versioned};
use wharf_store::{Compare, Op, StoreError, Txn};

const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";
const MAX_ATTEMPTS: usize = 50;
const MAX_VALUE: usize = 65_536;
const MAX_VERSIONS: usize = 100;
const MAX_TAGS: usize = 50;
const MAX_STAGES_PER_VERSION: usize = 20;
const MAX_POLICY: usize = 20_480;
const DAY_MS: Millis = 86_400_000;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Asks whether the caller may do `action` on a secret (None: on `*`), for
/// operations that name their secrets in the answer, not the request.
pub type Guard<'a> = &'a (dyn Fn(&str, Option<&crate::Judged>) -> Result<(), AwsError> + Sync);

fn err(code: &str, message: impl Into<String>) -> AwsError {
    AwsError::new(m::error_http_status(code).unwrap_or(400), code, message)
}

fn invalid(message: impl Into<String>) -> AwsError {
    err("InvalidParameterException", message)
}

fn not_found() -> AwsError {
    err(
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret.",
    )
}

fn marked_for_deletion() -> AwsError {
    err(
        "InvalidRequestException",
        "You can't perform this operation on the secret because it was marked for deletion.",
    )
}

fn from_store(e: StoreError) -> AwsError {
    tracing::error!(error = %e, "store failure");
    err("InternalServiceError", format!("Storage failure: {e}"))
}

fn contention() -> AwsError {
    err(
        "InternalServiceError",
        "Too many concurrent changes to the secret; try again.",
    )
}

/// A page token: the sort key of the last item of the page before.
fn read_token(token: &str) -> Result<String, AwsError> {
    B64.decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            err(
                "InvalidNextTokenException",
                "The NextToken value is invalid.",
            )
        })
}

fn seconds(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

/// Runs one operation (`op` is the part after `secretsmanager.`).
pub async fn dispatch(
    sm: &SecretsManager,
    scope: &Scope,
    now: Millis,
    op: &str,
    body: &[u8],
    guard: Guard<'_>,
) -> Result<Vec<u8>, AwsError> {
    let api = Api { sm, scope, now };
    let api = &api;
    match op {
        "CreateSecret" => call(body, |r| api.create(r)).await,
        "DescribeSecret" => call(body, |r| api.describe(r)).await,
        "GetSecretValue" => call(body, |r| api.get_value(r)).await,
        "BatchGetSecretValue" => call(body, |r| api.batch_get_value(r, guard)).await,
        "PutSecretValue" => call(body, |r| api.put_value(r)).await,
        "UpdateSecret" => call(body, |r| api.update(r)).await,
        "UpdateSecretVersionStage" => call(body, |r| api.update_stage(r)).await,
        "ListSecrets" => call(body, |r| api.list(r)).await,
        "ListSecretVersionIds" => call(body, |r| api.list_versions(r)).await,
        "DeleteSecret" => call(body, |r| api.delete(r)).await,
        "RestoreSecret" => call(body, |r| api.restore(r)).await,
        "TagResource" => call(body, |r| api.tag(r)).await,
        "UntagResource" => call(body, |r| api.untag(r)).await,
        "PutResourcePolicy" => call(body, |r| api.put_policy(r)).await,
        "GetResourcePolicy" => call(body, |r| api.get_policy(r)).await,
        "DeleteResourcePolicy" => call(body, |r| api.delete_policy(r)).await,
        "ValidateResourcePolicy" => call(body, |r| api.validate_policy(r)).await,
        "GetRandomPassword" => call(body, |r| async move { random_password(r) }).await,
        "RotateSecret" | "CancelRotateSecret" => Err(err(
            "InvalidRequestException",
            "Wharf does not rotate secrets: rotation runs a Lambda function, and Wharf has none. \
             Put a new value with PutSecretValue instead.",
        )),
        "ReplicateSecretToRegions"
        | "RemoveRegionsFromReplication"
        | "StopReplicationToReplica"
        | "AssociateCrossAccountReplica"
        | "DisassociateCrossAccountReplica" => Err(err(
            "InvalidRequestException",
            format!("Wharf does not replicate secrets ({op}): each region's secrets are its own."),
        )),
        "ListResourcePolicies" => Err(err(
            "InvalidRequestException",
            "Wharf keeps one resource policy per secret: read it with GetResourcePolicy.",
        )),
        _ => Err(AwsError::unknown_operation(&format!(
            "{}.{op}",
            m::TARGET_PREFIX
        ))),
    }
}

async fn call<Req, Resp, F, Fut>(body: &[u8], f: F) -> Result<Vec<u8>, AwsError>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Result<Resp, AwsError>>,
{
    let req = wharf_protocol::json::decode::<Req>(body)?;
    wharf_protocol::json::encode(&f(req).await?)
}

#[derive(Serialize)]
struct Empty {}

/// The secret `secret_id` names (a name, a partial ARN, or a full ARN
/// with its suffix), if it exists in this region and account. One whose
/// recovery window has passed is purged here and is not found.
pub(crate) async fn find(
    sm: &SecretsManager,
    scope: &Scope,
    secret_id: &str,
    now: Millis,
) -> Result<Option<Versioned<SecretRecord>>, AwsError> {
    let found = match secret_id.strip_prefix("arn:") {
        None => get(sm, scope, secret_id).await?,
        Some(_) => {
            let parts: Vec<&str> = secret_id.splitn(7, ':').collect();
            let [_, _, "secretsmanager", region, account, "secret", rest] = parts[..] else {
                return Ok(None);
            };
            if region != scope.region || account != scope.account {
                return Ok(None);
            }
            // A partial ARN is the name; a full one ends in `-XXXXXX`.
            match get(sm, scope, rest).await? {
                Some(s) if s.value.arn == secret_id || !has_suffix(rest) => Some(s),
                _ => match rest.rsplit_once('-').filter(|(_, s)| s.len() == 6) {
                    Some((name, _)) => get(sm, scope, name)
                        .await?
                        .filter(|s| s.value.arn == secret_id),
                    None => None,
                },
            }
        }
    };
    match found {
        Some(s) if now > 0 && s.value.purge_at.is_some_and(|at| at <= now) => {
            // Its recovery window is over: gone (a conflict means it changed,
            // a restore perhaps; the next read decides).
            let txn = Txn::new()
                .when(s.unchanged())
                .then(Op::delete(s.key.clone()));
            typed::commit(sm.store.as_ref(), txn)
                .await
                .map_err(from_store)?;
            Ok(None)
        }
        other => Ok(other),
    }
}

fn has_suffix(name: &str) -> bool {
    name.rsplit_once('-').is_some_and(|(_, s)| s.len() == 6)
}

async fn get(
    sm: &SecretsManager,
    scope: &Scope,
    name: &str,
) -> Result<Option<Versioned<SecretRecord>>, AwsError> {
    if !valid_name(name) {
        return Ok(None);
    }
    typed::get(sm.store.as_ref(), &records::key(&scope.region, name))
        .await
        .map_err(from_store)
}

fn valid_name(name: &str) -> bool {
    (1..=512).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
}

/// A secret as an operation needs it: found, and not marked for deletion.
async fn live(
    sm: &SecretsManager,
    scope: &Scope,
    secret_id: &str,
    now: Millis,
) -> Result<Versioned<SecretRecord>, AwsError> {
    let s = find(sm, scope, secret_id, now)
        .await?
        .ok_or_else(not_found)?;
    if s.value.deleted.is_some() {
        return Err(marked_for_deletion());
    }
    Ok(s)
}

/// Reads, changes and writes back one secret, retried on conflict.
/// `change` may refuse; it is called again on each attempt.
async fn update<T>(
    sm: &SecretsManager,
    scope: &Scope,
    secret_id: &str,
    now: Millis,
    allow_deleted: bool,
    mut change: impl FnMut(&mut SecretRecord) -> Result<T, AwsError>,
) -> Result<(T, SecretRecord), AwsError> {
    for _ in 0..MAX_ATTEMPTS {
        let mut s = find(sm, scope, secret_id, now)
            .await?
            .ok_or_else(not_found)?;
        if s.value.deleted.is_some() && !allow_deleted {
            return Err(marked_for_deletion());
        }
        let out = change(&mut s.value)?;
        let txn = Txn::new().when(s.unchanged()).then(s.put());
        if typed::commit(sm.store.as_ref(), txn)
            .await
            .map_err(from_store)?
        {
            return Ok((out, s.value));
        }
    }
    Err(contention())
}

fn check_token(token: &Option<String>) -> Result<String, AwsError> {
    match token {
        None => Ok(uuid::Uuid::new_v4().to_string()),
        Some(t) if (32..=64).contains(&t.len()) => Ok(t.clone()),
        Some(t) => Err(invalid(format!(
            "ClientRequestToken must be 32 to 64 characters long, not {}.",
            t.len()
        ))),
    }
}

/// The value a request gives, exactly one of a string and a binary.
fn given_value(
    string: &Option<String>,
    binary: &Option<String>,
) -> Result<Option<(String, bool)>, AwsError> {
    match (string, binary) {
        (Some(_), Some(_)) => Err(invalid(
            "You can't specify both a binary secret value and a string secret value in the same secret.",
        )),
        (Some(s), None) => {
            if s.len() > MAX_VALUE {
                return Err(invalid(format!(
                    "SecretString must be at most {MAX_VALUE} bytes."
                )));
            }
            Ok(Some((s.clone(), false)))
        }
        (None, Some(b)) => {
            let bytes = B64
                .decode(b)
                .map_err(|_| AwsError::serialization("SecretBinary is not valid base64."))?;
            if bytes.len() > MAX_VALUE {
                return Err(invalid(format!(
                    "SecretBinary must be at most {MAX_VALUE} bytes."
                )));
            }
            Ok(Some((b.clone(), true)))
        }
        (None, None) => Ok(None),
    }
}

fn check_tags(tags: &[m::Tag]) -> Result<Vec<(String, String)>, AwsError> {
    let mut out = Vec::new();
    for t in tags {
        let key = t.key.clone().unwrap_or_default();
        let value = t.value.clone().unwrap_or_default();
        if key.is_empty() || key.len() > 128 || value.len() > 256 {
            return Err(invalid(
                "A tag's key must be 1 to 128 characters and its value at most 256.",
            ));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid(format!(
                "Tag key '{key}' is invalid: the aws: prefix is reserved for AWS use."
            )));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn merge_tags(
    into: &mut Vec<(String, String)>,
    tags: Vec<(String, String)>,
) -> Result<(), AwsError> {
    for (k, v) in tags {
        match into.iter_mut().find(|(key, _)| *key == k) {
            Some(t) => t.1 = v,
            None => into.push((k, v)),
        }
    }
    if into.len() > MAX_TAGS {
        return Err(err(
            "LimitExceededException",
            format!("A secret can have at most {MAX_TAGS} tags."),
        ));
    }
    Ok(())
}

fn check_stages(stages: &[String]) -> Result<(), AwsError> {
    if stages.is_empty() || stages.len() > MAX_STAGES_PER_VERSION {
        return Err(invalid(format!(
            "VersionStages must have 1 to {MAX_STAGES_PER_VERSION} staging labels."
        )));
    }
    if stages.iter().any(|s| s.is_empty() || s.len() > 256) {
        return Err(invalid("A staging label must be 1 to 256 characters."));
    }
    Ok(())
}

/// Moves `stage` onto `to`: off every other version, and when it is
/// `AWSCURRENT`, `AWSPREVIOUS` onto the version that had it.
fn move_stage(s: &mut SecretRecord, stage: &str, to: &str) {
    let had: Vec<String> = s
        .versions
        .iter()
        .filter(|v| v.id != to && v.stages.iter().any(|x| x == stage))
        .map(|v| v.id.clone())
        .collect();
    for v in s.versions.iter_mut() {
        if v.id != to {
            v.stages.retain(|x| x != stage);
        }
    }
    if let Some(v) = s.versions.iter_mut().find(|v| v.id == to) {
        if !v.stages.iter().any(|x| x == stage) {
            v.stages.push(stage.to_string());
        }
    }
    if stage == CURRENT {
        if let Some(old) = had.first() {
            for v in s.versions.iter_mut() {
                v.stages.retain(|x| x != PREVIOUS);
            }
            if let Some(v) = s.versions.iter_mut().find(|v| v.id == *old) {
                v.stages.push(PREVIOUS.to_string());
            }
        }
    }
}

impl SecretsManager {
    fn seal(&self, arn: &str, version: &str, plaintext: &str) -> String {
        B64.encode(
            self.sealer
                .seal(&format!("{arn}#{version}"), plaintext.as_bytes()),
        )
    }

    fn open(&self, arn: &str, v: &Version) -> Result<String, AwsError> {
        let sealed = B64.decode(&v.sealed).map_err(|_| undecryptable())?;
        let plain = self
            .sealer
            .open(&format!("{arn}#{}", v.id), &sealed)
            .map_err(|_| undecryptable())?;
        String::from_utf8(plain).map_err(|_| undecryptable())
    }
}

fn undecryptable() -> AwsError {
    tracing::error!("a secret's value does not open with this server's key");
    err(
        "DecryptionFailure",
        "Secrets Manager can't decrypt the protected secret text using the provided KMS key: \
         it was sealed under another key than this server's (is the same --secrets-key-file given \
         to every server?).",
    )
}

/// Adds version `id` with `value` (staged `AWSCURRENT` unless `stages`
/// says otherwise). False if that version exists with the same value (a
/// retried request); refused if it exists with another.
fn add_version(
    sm: &SecretsManager,
    s: &mut SecretRecord,
    id: &str,
    (value, binary): &(String, bool),
    stages: Option<&[String]>,
    now: Millis,
) -> Result<bool, AwsError> {
    if let Some(v) = s.version(id) {
        if v.binary == *binary && sm.open(&s.arn, v)? == *value {
            return Ok(false);
        }
        return Err(err(
            "ResourceExistsException",
            "You can't modify an existing version, you can only create a new version.",
        ));
    }
    let stages: Vec<String> = stages.map_or_else(|| vec![CURRENT.to_string()], <[String]>::to_vec);
    s.versions.push(Version {
        id: id.to_string(),
        created: now,
        stages: Vec::new(),
        last_accessed: None,
        sealed: sm.seal(&s.arn, id, value),
        binary: *binary,
    });
    for stage in &stages {
        move_stage(s, stage, id);
    }
    // Versions without a label are deprecated; the oldest go first.
    while s.versions.len() > MAX_VERSIONS {
        match s.versions.iter().position(|v| v.stages.is_empty()) {
            Some(i) => {
                s.versions.remove(i);
            }
            None => {
                return Err(err(
                    "LimitExceededException",
                    format!(
                        "A secret can have at most {MAX_VERSIONS} versions with staging labels."
                    ),
                ))
            }
        }
    }
    s.last_changed = now;
    Ok(true)
}

fn version_to_stages(s: &SecretRecord) -> std::collections::BTreeMap<String, Vec<String>> {
    s.versions
        .iter()
        .filter(|v| !v.stages.is_empty())
        .map(|v| (v.id.clone(), v.stages.clone()))
        .collect()
}

fn tags_out(tags: &[(String, String)]) -> Vec<m::Tag> {
    tags.iter()
        .map(|(k, v)| m::Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

fn day_of(ms: Millis) -> Millis {
    ms.div_euclid(DAY_MS) * DAY_MS
}

/// The version a GetSecretValue-shaped request selects.
fn select<'a>(
    s: &'a SecretRecord,
    version_id: Option<&str>,
    stage: Option<&str>,
) -> Result<&'a Version, AwsError> {
    match (version_id, stage) {
        (Some(id), stage) => {
            let v = s.version(id).ok_or_else(|| {
                err(
                    "ResourceNotFoundException",
                    format!(
                        "Secrets Manager can't find the specified secret value for VersionId: {id}"
                    ),
                )
            })?;
            if let Some(stage) = stage {
                if !v.stages.iter().any(|x| x == stage) {
                    return Err(err(
                        "InvalidRequestException",
                        "You provided a VersionStage that is not associated to the provided VersionId.",
                    ));
                }
            }
            Ok(v)
        }
        (None, stage) => {
            let stage = stage.unwrap_or(CURRENT);
            s.staged(stage).ok_or_else(|| {
                err(
                    "ResourceNotFoundException",
                    format!(
                        "Secrets Manager can't find the specified secret value for staging label: {stage}"
                    ),
                )
            })
        }
    }
}

/// GetSecretValue's work, shared with a task's `secrets`: the value, and
/// the day it was read recorded (one write a day at most).
pub(crate) async fn value(
    sm: &SecretsManager,
    scope: &Scope,
    now: Millis,
    secret_id: &str,
    version_id: Option<&str>,
    stage: Option<&str>,
) -> Result<Value, AwsError> {
    let s = live(sm, scope, secret_id, now).await?;
    let v = select(&s.value, version_id, stage)?;
    let text = sm.open(&s.value.arn, v)?;
    let out = Value {
        arn: s.value.arn.clone(),
        version_id: v.id.clone(),
        string: (!v.binary).then(|| text.clone()),
        binary: v.binary.then_some(text),
    };
    let today = day_of(now);
    if s.value.last_accessed != Some(today) || v.last_accessed != Some(today) {
        let mut changed = s.clone();
        changed.value.last_accessed = Some(today);
        let id = v.id.clone();
        if let Some(v) = changed.value.versions.iter_mut().find(|v| v.id == id) {
            v.last_accessed = Some(today);
        }
        // Best effort: a concurrent change wins, and the next read records it.
        let txn = Txn::new().when(changed.unchanged()).then(changed.put());
        if let Err(e) = typed::commit(sm.store.as_ref(), txn).await {
            tracing::warn!(error = %e, "recording a secret's last access failed");
        }
    }
    Ok(out)
}

struct Api<'a> {
    sm: &'a SecretsManager,
    scope: &'a Scope,
    now: Millis,
}

impl Api<'_> {
    async fn create(&self, r: m::CreateSecretRequest) -> Result<m::CreateSecretResponse, AwsError> {
        if !valid_name(&r.name) {
            return Err(invalid(
                "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!",
            ));
        }
        if r.add_replica_regions
            .as_ref()
            .is_some_and(|v| !v.is_empty())
            || r.force_overwrite_replica_secret == Some(true)
        {
            return Err(err(
                "InvalidRequestException",
                "Wharf does not replicate secrets: AddReplicaRegions and ForceOverwriteReplicaSecret are not supported.",
            ));
        }
        if r.cross_account_primary_arn.is_some() {
            return Err(err(
                "InvalidRequestException",
                "Wharf does not replicate secrets across accounts: CrossAccountPrimaryARN is not supported.",
            ));
        }
        check_description(&r.description)?;
        check_kms_key(&r.kms_key_id)?;
        let token = check_token(&r.client_request_token)?;
        let value = given_value(&r.secret_string, &r.secret_binary)?;
        let tags = check_tags(r.tags.as_deref().unwrap_or_default())?;
        if tags.len() > MAX_TAGS {
            return Err(err(
                "LimitExceededException",
                format!("A secret can have at most {MAX_TAGS} tags."),
            ));
        }
        let key = records::key(&self.scope.region, &r.name);
        for _ in 0..MAX_ATTEMPTS {
            let existing: Option<Versioned<SecretRecord>> =
                find(self.sm, self.scope, &r.name, self.now).await?;
            if let Some(s) = existing {
                if s.value.deleted.is_some() {
                    return Err(err(
                        "InvalidRequestException",
                        "You can't create this secret because a secret with this name is already scheduled for deletion.",
                    ));
                }
                // A retry of this very request (same token, same value).
                if let Some(value) = &value {
                    if let Some(v) = s.value.version(&token) {
                        if v.binary == value.1 && self.sm.open(&s.value.arn, v)? == value.0 {
                            return Ok(m::CreateSecretResponse {
                                arn: Some(s.value.arn.clone()),
                                name: Some(s.value.name.clone()),
                                version_id: Some(token),
                                ..Default::default()
                            });
                        }
                    }
                }
                return Err(err(
                    "ResourceExistsException",
                    format!(
                        "The operation failed because the secret {} already exists.",
                        r.name
                    ),
                ));
            }
            let mut s = SecretRecord {
                name: r.name.clone(),
                arn: format!(
                    "arn:aws:secretsmanager:{}:{}:secret:{}-{}",
                    self.scope.region,
                    self.scope.account,
                    r.name,
                    suffix()
                ),
                description: r.description.clone(),
                kms_key_id: r.kms_key_id.clone(),
                secret_type: r.r#type.clone(),
                created: self.now,
                last_changed: self.now,
                last_accessed: None,
                deleted: None,
                purge_at: None,
                tags: tags.clone(),
                policy: None,
                versions: Vec::new(),
            };
            if let Some(value) = &value {
                add_version(self.sm, &mut s, &token, value, None, self.now)?;
            }
            let txn = Txn::new()
                .when(Compare::NotExists(key.clone()))
                .then(typed::put(&key, &s));
            if typed::commit(self.sm.store.as_ref(), txn)
                .await
                .map_err(from_store)?
            {
                return Ok(m::CreateSecretResponse {
                    arn: Some(s.arn),
                    name: Some(s.name),
                    version_id: value.is_some().then_some(token),
                    ..Default::default()
                });
            }
        }
        Err(contention())
    }

    async fn describe(
        &self,
        r: m::DescribeSecretRequest,
    ) -> Result<m::DescribeSecretResponse, AwsError> {
        let s = find(self.sm, self.scope, &r.secret_id, self.now)
            .await?
            .ok_or_else(not_found)?
            .value;
        Ok(m::DescribeSecretResponse {
            arn: Some(s.arn.clone()),
            name: Some(s.name.clone()),
            r#type: s.secret_type.clone(),
            description: s.description.clone(),
            kms_key_id: s.kms_key_id.clone(),
            rotation_enabled: Some(false),
            last_changed_date: Some(seconds(s.last_changed)),
            last_accessed_date: s.last_accessed.map(seconds),
            deleted_date: s.deleted.map(seconds),
            tags: (!s.tags.is_empty()).then(|| tags_out(&s.tags)),
            version_ids_to_stages: Some(version_to_stages(&s)),
            created_date: Some(seconds(s.created)),
            ..Default::default()
        })
    }

    async fn get_value(
        &self,
        r: m::GetSecretValueRequest,
    ) -> Result<m::GetSecretValueResponse, AwsError> {
        let v = value(
            self.sm,
            self.scope,
            self.now,
            &r.secret_id,
            r.version_id.as_deref(),
            r.version_stage.as_deref(),
        )
        .await?;
        let s = find(self.sm, self.scope, &v.arn, self.now)
            .await?
            .ok_or_else(not_found)?
            .value;
        let version = s.version(&v.version_id);
        Ok(m::GetSecretValueResponse {
            arn: Some(s.arn.clone()),
            name: Some(s.name.clone()),
            version_id: Some(v.version_id.clone()),
            secret_binary: v.binary,
            secret_string: v.string,
            version_stages: version.map(|x| x.stages.clone()),
            created_date: version.map(|x| seconds(x.created)),
        })
    }

    async fn batch_get_value(
        &self,
        r: m::BatchGetSecretValueRequest,
        guard: Guard<'_>,
    ) -> Result<m::BatchGetSecretValueResponse, AwsError> {
        let ids: Vec<String> = match (&r.secret_id_list, &r.filters) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "Either SecretIdList or Filters must be provided, not both.",
                ))
            }
            (None, None) => {
                return Err(invalid("Either SecretIdList or Filters must be provided."))
            }
            (Some(ids), None) => {
                if r.next_token.is_some() {
                    return Err(invalid(
                        "NextToken can be used only with Filters, not with SecretIdList.",
                    ));
                }
                if ids.is_empty() || ids.len() > 20 {
                    return Err(invalid("SecretIdList must name 1 to 20 secrets."));
                }
                if r.max_results.is_some() {
                    return Err(invalid(
                        "MaxResults can be used only with Filters, not with SecretIdList.",
                    ));
                }
                ids.clone()
            }
            (None, Some(filters)) => {
                if r.max_results.is_some_and(|n| !(1..=20).contains(&n)) {
                    return Err(invalid("MaxResults must be between 1 and 20."));
                }
                // Listing by filters is ListSecrets, and needs its permission.
                guard("secretsmanager:ListSecrets", None)?;
                let page = self
                    .list(m::ListSecretsRequest {
                        filters: Some(filters.clone()),
                        max_results: Some(r.max_results.unwrap_or(20)),
                        next_token: r.next_token.clone(),
                        ..Default::default()
                    })
                    .await?;
                let ids = page
                    .secret_list
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|e| e.arn)
                    .collect::<Vec<_>>();
                return self.batch_values(ids, page.next_token, guard).await;
            }
        };
        self.batch_values(ids, None, guard).await
    }

    async fn batch_values(
        &self,
        ids: Vec<String>,
        next_token: Option<String>,
        guard: Guard<'_>,
    ) -> Result<m::BatchGetSecretValueResponse, AwsError> {
        let mut values = Vec::new();
        let mut errors = Vec::new();
        for id in ids {
            let result = async {
                let s = find(self.sm, self.scope, &id, self.now)
                    .await?
                    .ok_or_else(not_found)?
                    .value;
                guard(
                    "secretsmanager:GetSecretValue",
                    Some(&crate::Judged::of(&s)),
                )?;
                let arn = s.arn;
                self.get_value(m::GetSecretValueRequest {
                    secret_id: arn,
                    ..Default::default()
                })
                .await
            }
            .await;
            match result {
                Ok(v) => values.push(m::SecretValueEntry {
                    arn: v.arn,
                    name: v.name,
                    version_id: v.version_id,
                    secret_binary: v.secret_binary,
                    secret_string: v.secret_string,
                    version_stages: v.version_stages,
                    created_date: v.created_date,
                }),
                Err(e) if e.status < 500 => errors.push(m::APIErrorType {
                    secret_id: Some(id),
                    error_code: Some(e.code),
                    message: Some(e.message),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(m::BatchGetSecretValueResponse {
            secret_values: Some(values),
            next_token,
            errors: Some(errors),
        })
    }

    async fn put_value(
        &self,
        r: m::PutSecretValueRequest,
    ) -> Result<m::PutSecretValueResponse, AwsError> {
        if r.rotation_token.is_some() {
            return Err(invalid(
                "RotationToken is for rotation functions, and Wharf does not rotate secrets.",
            ));
        }
        let token = check_token(&r.client_request_token)?;
        let value = given_value(&r.secret_string, &r.secret_binary)?
            .ok_or_else(|| invalid("You must provide either SecretString or SecretBinary."))?;
        if let Some(stages) = &r.version_stages {
            check_stages(stages)?;
        }
        let (_, s) = update(self.sm, self.scope, &r.secret_id, self.now, false, |s| {
            add_version(
                self.sm,
                s,
                &token,
                &value,
                r.version_stages.as_deref(),
                self.now,
            )
        })
        .await?;
        Ok(m::PutSecretValueResponse {
            arn: Some(s.arn.clone()),
            name: Some(s.name.clone()),
            version_id: Some(token.clone()),
            version_stages: s.version(&token).map(|v| v.stages.clone()),
        })
    }

    async fn update(&self, r: m::UpdateSecretRequest) -> Result<m::UpdateSecretResponse, AwsError> {
        check_description(&r.description)?;
        check_kms_key(&r.kms_key_id)?;
        let value = given_value(&r.secret_string, &r.secret_binary)?;
        let token = check_token(&r.client_request_token)?;
        let (_, s) = update(self.sm, self.scope, &r.secret_id, self.now, false, |s| {
            if let Some(d) = &r.description {
                s.description = Some(d.clone());
            }
            if let Some(k) = &r.kms_key_id {
                s.kms_key_id = Some(k.clone());
            }
            if let Some(t) = &r.r#type {
                s.secret_type = Some(t.clone());
            }
            s.last_changed = self.now;
            if let Some(value) = &value {
                add_version(self.sm, s, &token, value, None, self.now)?;
            }
            Ok(())
        })
        .await?;
        Ok(m::UpdateSecretResponse {
            arn: Some(s.arn),
            name: Some(s.name),
            version_id: value.is_some().then_some(token),
        })
    }

    async fn update_stage(
        &self,
        r: m::UpdateSecretVersionStageRequest,
    ) -> Result<m::UpdateSecretVersionStageResponse, AwsError> {
        check_stages(std::slice::from_ref(&r.version_stage))?;
        if r.remove_from_version_id.is_none() && r.move_to_version_id.is_none() {
            return Err(invalid(
                "You must specify RemoveFromVersionId, MoveToVersionId, or both.",
            ));
        }
        let stage = r.version_stage.clone();
        let (_, s) = update(self.sm, self.scope, &r.secret_id, self.now, false, |s| {
            let holder = s.staged(&stage).map(|v| v.id.clone());
            if let Some(from) = &r.remove_from_version_id {
                if s.version(from).is_none() {
                    return Err(err(
                        "ResourceNotFoundException",
                        format!("Secrets Manager can't find the specified secret value for VersionId: {from}"),
                    ));
                }
                if holder.as_deref() != Some(from.as_str()) {
                    return Err(invalid(format!(
                        "The staging label {stage} is not attached to version {from}."
                    )));
                }
            } else if let (Some(holder), Some(to)) = (&holder, &r.move_to_version_id) {
                if holder != to {
                    return Err(invalid(format!(
                        "The staging label {stage} is currently attached to version {holder}. \
                         You must specify RemoveFromVersionId to move it."
                    )));
                }
            }
            match &r.move_to_version_id {
                Some(to) => {
                    if s.version(to).is_none() {
                        return Err(err(
                            "ResourceNotFoundException",
                            format!("Secrets Manager can't find the specified secret value for VersionId: {to}"),
                        ));
                    }
                    if s.version(to).is_some_and(|v| {
                        !v.stages.contains(&stage) && v.stages.len() >= MAX_STAGES_PER_VERSION
                    }) {
                        return Err(err(
                            "LimitExceededException",
                            format!("A version can have at most {MAX_STAGES_PER_VERSION} staging labels."),
                        ));
                    }
                    move_stage(s, &stage, to);
                }
                None => {
                    if stage == CURRENT {
                        return Err(invalid(
                            "You can't remove the AWSCURRENT staging label: move it to another version with MoveToVersionId.",
                        ));
                    }
                    for v in s.versions.iter_mut() {
                        v.stages.retain(|x| *x != stage);
                    }
                }
            }
            s.last_changed = self.now;
            Ok(())
        })
        .await?;
        Ok(m::UpdateSecretVersionStageResponse {
            arn: Some(s.arn),
            name: Some(s.name),
        })
    }

    async fn list(&self, r: m::ListSecretsRequest) -> Result<m::ListSecretsResponse, AwsError> {
        let max = match r.max_results {
            None => 100,
            Some(n @ 1..=100) => n as usize,
            Some(_) => return Err(invalid("MaxResults must be between 1 and 100.")),
        };
        let filters = r.filters.clone().unwrap_or_default();
        for f in &filters {
            let key = f
                .key
                .as_ref()
                .ok_or_else(|| invalid("A filter needs a Key."))?;
            if !key.is_known() {
                return Err(invalid(format!(
                    "Invalid filter key {key}: use one of {}.",
                    m::FilterNameStringType::VALUES.join(", ")
                )));
            }
            if f.values
                .as_ref()
                .is_none_or(|v| v.is_empty() || v.len() > 10)
            {
                return Err(invalid(format!("Filter {key} needs 1 to 10 values.")));
            }
        }
        let desc = matches!(r.sort_order, Some(m::SortOrderType::Desc));
        let sort_by = r.sort_by.clone().unwrap_or(m::SortByType::CreatedDate);
        if !sort_by.is_known() {
            return Err(invalid(format!("Invalid SortBy value {sort_by}.")));
        }
        if r.sort_order.as_ref().is_some_and(|o| !o.is_known()) {
            return Err(invalid("SortOrder must be asc or desc."));
        }
        let (all, _) = typed::list::<SecretRecord>(
            self.sm.store.as_ref(),
            &records::prefix(&self.scope.region),
        )
        .await
        .map_err(from_store)?;
        let include_deleted = r.include_planned_deletion == Some(true);
        let mut rows: Vec<(String, SecretRecord)> = all
            .into_iter()
            .map(|v| v.value)
            .filter(|s| s.purge_at.is_none_or(|at| at > self.now))
            .filter(|s| include_deleted || s.deleted.is_none())
            .filter(|s| {
                filters
                    .iter()
                    .all(|f| matches_filter(s, f, &self.scope.region))
            })
            .map(|s| {
                let at = |ms: Option<Millis>| format!("{:020}", ms.unwrap_or(0).max(0));
                let order = match &sort_by {
                    m::SortByType::Name => s.name.clone(),
                    m::SortByType::LastAccessedDate => at(s.last_accessed),
                    m::SortByType::LastChangedDate => at(Some(s.last_changed)),
                    _ => at(Some(s.created)),
                };
                (format!("{order}\u{0}{}", s.name), s)
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        if desc {
            rows.reverse();
        }
        if let Some(token) = &r.next_token {
            let after = read_token(token)?;
            rows.retain(|(k, _)| if desc { *k < after } else { *k > after });
        }
        let more = rows.len() > max;
        rows.truncate(max);
        let next_token = more
            .then(|| rows.last().map(|(k, _)| B64.encode(k)))
            .flatten();
        Ok(m::ListSecretsResponse {
            secret_list: Some(
                rows.into_iter()
                    .map(|(_, s)| m::SecretListEntry {
                        arn: Some(s.arn.clone()),
                        name: Some(s.name.clone()),
                        r#type: s.secret_type.clone(),
                        description: s.description.clone(),
                        kms_key_id: s.kms_key_id.clone(),
                        rotation_enabled: Some(false),
                        last_changed_date: Some(seconds(s.last_changed)),
                        last_accessed_date: s.last_accessed.map(seconds),
                        deleted_date: s.deleted.map(seconds),
                        tags: (!s.tags.is_empty()).then(|| tags_out(&s.tags)),
                        secret_versions_to_stages: Some(version_to_stages(&s)),
                        created_date: Some(seconds(s.created)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            next_token,
        })
    }

    async fn list_versions(
        &self,
        r: m::ListSecretVersionIdsRequest,
    ) -> Result<m::ListSecretVersionIdsResponse, AwsError> {
        let max = match r.max_results {
            None => 100,
            Some(n @ 1..=100) => n as usize,
            Some(_) => return Err(invalid("MaxResults must be between 1 and 100.")),
        };
        let s = find(self.sm, self.scope, &r.secret_id, self.now)
            .await?
            .ok_or_else(not_found)?
            .value;
        // Newest first, as Secrets Manager lists them; a page goes on after
        // the version its token names (by creation, then ID), so versions
        // that come or go between pages are never repeated or skipped.
        let order = |v: &Version| format!("{:020}\u{0}{}", v.created.max(0), v.id);
        let after = r.next_token.as_deref().map(read_token).transpose()?;
        let include = r.include_deprecated == Some(true);
        let mut versions = Vec::new();
        let mut next = None;
        let mut ordered: Vec<(String, &Version)> =
            s.versions.iter().map(|v| (order(v), v)).collect();
        ordered.sort_by(|a, b| b.0.cmp(&a.0));
        let mut last: Option<&str> = None;
        for (key, v) in &ordered {
            if after.as_ref().is_some_and(|a| key >= a) {
                continue;
            }
            if !include && v.stages.is_empty() {
                continue;
            }
            if versions.len() == max {
                next = last.map(|k| B64.encode(k));
                break;
            }
            last = Some(key);
            versions.push(m::SecretVersionsListEntry {
                version_id: Some(v.id.clone()),
                version_stages: Some(v.stages.clone()),
                last_accessed_date: v.last_accessed.map(seconds),
                created_date: Some(seconds(v.created)),
                kms_key_ids: Some(vec![s
                    .kms_key_id
                    .clone()
                    .unwrap_or_else(|| "DefaultEncryptionKey".into())]),
            });
        }
        Ok(m::ListSecretVersionIdsResponse {
            versions: Some(versions),
            next_token: next,
            arn: Some(s.arn),
            name: Some(s.name),
        })
    }

    async fn delete(&self, r: m::DeleteSecretRequest) -> Result<m::DeleteSecretResponse, AwsError> {
        let force = r.force_delete_without_recovery == Some(true);
        if force && r.recovery_window_in_days.is_some() {
            return Err(invalid(
                "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
            ));
        }
        let days = r.recovery_window_in_days.unwrap_or(30);
        if !(7..=30).contains(&days) {
            return Err(invalid(
                "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).",
            ));
        }
        if force {
            for _ in 0..MAX_ATTEMPTS {
                let s = find(self.sm, self.scope, &r.secret_id, self.now)
                    .await?
                    .ok_or_else(not_found)?;
                let txn = Txn::new()
                    .when(s.unchanged())
                    .then(Op::delete(s.key.clone()));
                if typed::commit(self.sm.store.as_ref(), txn)
                    .await
                    .map_err(from_store)?
                {
                    return Ok(m::DeleteSecretResponse {
                        arn: Some(s.value.arn),
                        name: Some(s.value.name),
                        deletion_date: Some(seconds(self.now)),
                    });
                }
            }
            return Err(contention());
        }
        let purge_at = self.now.saturating_add(days * DAY_MS);
        let (_, s) = update(self.sm, self.scope, &r.secret_id, self.now, false, |s| {
            s.deleted = Some(self.now);
            s.purge_at = Some(purge_at);
            Ok(())
        })
        .await?;
        Ok(m::DeleteSecretResponse {
            arn: Some(s.arn),
            name: Some(s.name),
            deletion_date: Some(seconds(purge_at)),
        })
    }

    async fn restore(
        &self,
        r: m::RestoreSecretRequest,
    ) -> Result<m::RestoreSecretResponse, AwsError> {
        let (_, s) = update(self.sm, self.scope, &r.secret_id, self.now, true, |s| {
            s.deleted = None;
            s.purge_at = None;
            Ok(())
        })
        .await?;
        Ok(m::RestoreSecretResponse {
            arn: Some(s.arn),
            name: Some(s.name),
        })
    }

    async fn tag(&self, r: m::TagResourceRequest) -> Result<Empty, AwsError> {
        let tags = check_tags(&r.tags)?;
        update(self.sm, self.scope, &r.secret_id, self.now, false, |s| {
            merge_tags(&mut s.tags, tags.clone())
        })
        .await?;
        Ok(Empty {})
    }

    async fn untag(&self, r: m::UntagResourceRequest) -> Result<Empty, AwsError> {
        update(self.sm, self.scope, &r.secret_id, self.now, false, |s| {
            s.tags.retain(|(k, _)| !r.tag_keys.contains(k));
            Ok(())
        })
        .await?;
        Ok(Empty {})
    }

    async fn put_policy(
        &self,
        r: m::PutResourcePolicyRequest,
    ) -> Result<m::PutResourcePolicyResponse, AwsError> {
        one_policy(&r.policy_name)?;
        let policy = check_policy(&r.resource_policy)?;
        if r.block_public_policy == Some(true) && is_public(&policy) {
            return Err(err(
                "PublicPolicyException",
                "This resource policy will grant public access to the secret.",
            ));
        }
        let (_, s) = update(self.sm, self.scope, &r.secret_id, self.now, false, |s| {
            s.policy = Some(r.resource_policy.clone());
            Ok(())
        })
        .await?;
        Ok(m::PutResourcePolicyResponse {
            arn: Some(s.arn),
            name: Some(s.name),
            policy_name: None,
        })
    }

    async fn get_policy(
        &self,
        r: m::GetResourcePolicyRequest,
    ) -> Result<m::GetResourcePolicyResponse, AwsError> {
        one_policy(&r.policy_name)?;
        let s = live(self.sm, self.scope, &r.secret_id, self.now)
            .await?
            .value;
        Ok(m::GetResourcePolicyResponse {
            arn: Some(s.arn),
            name: Some(s.name),
            resource_policy: s.policy,
            policy_name: None,
        })
    }

    async fn delete_policy(
        &self,
        r: m::DeleteResourcePolicyRequest,
    ) -> Result<m::DeleteResourcePolicyResponse, AwsError> {
        one_policy(&r.policy_name)?;
        let (_, s) = update(self.sm, self.scope, &r.secret_id, self.now, false, |s| {
            s.policy = None;
            Ok(())
        })
        .await?;
        Ok(m::DeleteResourcePolicyResponse {
            arn: Some(s.arn),
            name: Some(s.name),
            policy_name: None,
        })
    }

    async fn validate_policy(
        &self,
        r: m::ValidateResourcePolicyRequest,
    ) -> Result<m::ValidateResourcePolicyResponse, AwsError> {
        if let Some(id) = &r.secret_id {
            live(self.sm, self.scope, id, self.now).await?;
        }
        let errors = match check_policy(&r.resource_policy) {
            Ok(_) => Vec::new(),
            Err(e) => vec![m::ValidationErrorsEntry {
                check_name: Some("SYNTAX_CHECK".into()),
                error_message: Some(e.message),
            }],
        };
        Ok(m::ValidateResourcePolicyResponse {
            policy_validation_passed: Some(errors.is_empty()),
            validation_errors: Some(errors),
        })
    }
}

fn one_policy(name: &Option<String>) -> Result<(), AwsError> {
    match name {
        None => Ok(()),
        Some(_) => Err(invalid(
            "Wharf keeps one resource policy per secret: PolicyName is not supported.",
        )),
    }
}

fn check_policy(text: &str) -> Result<serde_json::Value, AwsError> {
    if text.len() > MAX_POLICY {
        return Err(err(
            "MalformedPolicyDocumentException",
            format!("The resource policy is longer than {MAX_POLICY} characters."),
        ));
    }
    wharf_iam::policy::Policy::parse(text, true).map_err(|e| {
        err(
            "MalformedPolicyDocumentException",
            format!("This resource policy contains a syntax error: {}", e.0),
        )
    })?;
    serde_json::from_str(text).map_err(|_| {
        err(
            "MalformedPolicyDocumentException",
            "This resource policy contains invalid Json",
        )
    })
}

/// Whether an Allow statement grants to anyone without a condition.
fn is_public(policy: &serde_json::Value) -> bool {
    let statements = match policy.get("Statement") {
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(s) => vec![s.clone()],
        None => Vec::new(),
    };
    statements.iter().any(|s| {
        let anyone = |p: &serde_json::Value| match p {
            serde_json::Value::String(s) => s == "*",
            serde_json::Value::Array(a) => a.iter().any(|v| v == "*"),
            _ => false,
        };
        s.get("Effect").and_then(|e| e.as_str()) == Some("Allow")
            && (s.get("NotPrincipal").is_some()
                || (s.get("Condition").is_none()
                    && s.get("Principal")
                        .is_some_and(|p| anyone(p) || p.get("AWS").is_some_and(anyone))))
    })
}

/// There is no KMS: a key of one's own would be accepted and ignored.
fn check_kms_key(k: &Option<String>) -> Result<(), AwsError> {
    match k.as_deref() {
        None | Some("alias/aws/secretsmanager" | "aws/secretsmanager") => Ok(()),
        Some(k) => Err(invalid(format!(
            "KmsKeyId {k} is not supported: Wharf has no KMS and seals every value with its own key; omit KmsKeyId or give alias/aws/secretsmanager."
        ))),
    }
}

fn check_description(d: &Option<String>) -> Result<(), AwsError> {
    if d.as_ref().is_some_and(|d| d.len() > 2048) {
        return Err(invalid("Description must be at most 2048 characters."));
    }
    Ok(())
}

fn suffix() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..6)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// ListSecrets' filters: prefix matches (`!` negates), `all` over words.
fn matches_filter(s: &SecretRecord, f: &m::Filter, region: &str) -> bool {
    let values = f.values.as_deref().unwrap_or_default();
    let key = f.key.clone().unwrap_or_default();
    values.iter().any(|raw| {
        let (negate, value) = match raw.strip_prefix('!') {
            Some(v) => (true, v),
            None => (false, raw.as_str()),
        };
        let lower = value.to_lowercase();
        let prefix_of = |field: &str, fold: bool| {
            if fold {
                field.to_lowercase().starts_with(&lower)
            } else {
                field.starts_with(value)
            }
        };
        let hit = match &key {
            m::FilterNameStringType::Description => {
                s.description.as_deref().is_some_and(|d| prefix_of(d, true))
            }
            m::FilterNameStringType::Name => prefix_of(&s.name, false),
            m::FilterNameStringType::TagKey => s.tags.iter().any(|(k, _)| prefix_of(k, false)),
            m::FilterNameStringType::TagValue => s.tags.iter().any(|(_, v)| prefix_of(v, false)),
            m::FilterNameStringType::PrimaryRegion => prefix_of(region, false),
            m::FilterNameStringType::OwningService => false,
            _ => lower.split_whitespace().all(|word| {
                let fields = [s.name.as_str(), s.description.as_deref().unwrap_or("")];
                fields
                    .into_iter()
                    .chain(s.tags.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]))
                    .any(|field| field.to_lowercase().contains(word))
            }),
        };
        hit != negate
    })
}

fn random_password(
    r: m::GetRandomPasswordRequest,
) -> Result<m::GetRandomPasswordResponse, AwsError> {
    let length = r.password_length.unwrap_or(32);
    if !(1..=4096).contains(&length) {
        return Err(invalid("PasswordLength must be between 1 and 4096."));
    }
    let excluded = r.exclude_characters.unwrap_or_default();
    if excluded.len() > 4096 {
        return Err(invalid(
            "ExcludeCharacters must be at most 4096 characters.",
        ));
    }
    let mut classes: Vec<Vec<char>> = Vec::new();
    let class =
        |chars: &str| -> Vec<char> { chars.chars().filter(|c| !excluded.contains(*c)).collect() };
    if r.exclude_lowercase != Some(true) {
        classes.push(class("abcdefghijklmnopqrstuvwxyz"));
    }
    if r.exclude_uppercase != Some(true) {
        classes.push(class("ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
    }
    if r.exclude_numbers != Some(true) {
        classes.push(class("0123456789"));
    }
    if r.exclude_punctuation != Some(true) {
        classes.push(class("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"));
    }
    if r.include_space == Some(true) {
        classes.push(class(" "));
    }
    classes.retain(|c| !c.is_empty());
    let each = r.require_each_included_type != Some(false);
    let length = length as usize;
    if classes.is_empty() || (each && classes.len() > length) {
        return Err(invalid(
            "The password can't be made: every character type is excluded, or the length is shorter than the number of types it must include.",
        ));
    }
    let all: Vec<char> = classes.iter().flatten().copied().collect();
    let mut rng = rand::thread_rng();
    let mut out: Vec<char> = (0..length)
        .map(|_| all[rng.gen_range(0..all.len())])
        .collect();
    if each {
        // One of each type at distinct random places.
        let mut places: Vec<usize> = (0..length).collect();
        for class in &classes {
            let i = rng.gen_range(0..places.len());
            let at = places.swap_remove(i);
            out[at] = class[rng.gen_range(0..class.len())];
        }
    }
    Ok(m::GetRandomPasswordResponse {
        random_password: Some(out.into_iter().collect()),
    })
}

#[cfg(test)]
mod tests;
