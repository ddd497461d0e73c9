//! STS: who is calling, and temporary credentials. A session is a record
//! under `/iam/sessions/` written under a store lease that ends when the
//! credentials expire; its token is kept only as a hash.

use crate::api::err;
use crate::policy::{self, Context, Decision, Request};
use crate::records::{keys, Millis, SessionOf, SessionRecord};
use crate::{new_id, new_secret, Caller, Iam, Principal};
use wharf_model::sts as m;
use wharf_protocol::AwsError;
use wharf_store::{Op, Txn};

/// A session token's length (AWS's vary; SDKs treat them as opaque).
const TOKEN_LEN: usize = 356;

/// `context` holds the request's condition keys (`aws:SecureTransport`,
/// `aws:CurrentTime`, …), which trust policies may test.
pub async fn dispatch(
    iam: &Iam,
    caller: &Caller,
    context: &Context,
    now: Millis,
    action: &str,
    params: &[(String, String)],
    request_id: &str,
) -> Result<Vec<u8>, AwsError> {
    let sts = Sts {
        iam,
        caller,
        context,
        now,
    };
    let sts = &sts;
    macro_rules! op {
        ($f:ident) => {
            wharf_protocol::query::call(&m::SCHEMA, action, params, request_id, |r| sts.$f(r)).await
        };
    }
    match action {
        "GetCallerIdentity" => op!(get_caller_identity),
        "AssumeRole" => op!(assume_role),
        "GetSessionToken" => op!(get_session_token),
        "GetAccessKeyInfo" => op!(get_access_key_info),
        other if m::SCHEMA.operation(other).is_some() => Err(AwsError::new(
            400,
            "NotImplemented",
            format!("Wharf does not implement the STS operation {other}"),
        )),
        other => Err(AwsError::client(
            "InvalidAction",
            format!("Could not find operation {other} for version 2011-06-15"),
        )),
    }
}

/// The STS operations served.
pub const SUPPORTED: &[&str] = &[
    "AssumeRole",
    "GetAccessKeyInfo",
    "GetCallerIdentity",
    "GetSessionToken",
];

struct Sts<'a> {
    iam: &'a Iam,
    caller: &'a Caller,
    context: &'a Context,
    now: Millis,
}

fn access_denied(caller: &str, action: &str, resource: &str, why: &str) -> AwsError {
    AwsError::new(
        403,
        "AccessDenied",
        format!(
            "User: {caller} is not authorized to perform: {action} on resource: {resource}{why}"
        ),
    )
}

fn refused(member: &str) -> AwsError {
    err(
        "ValidationError",
        format!("Wharf does not support {member} (there is nothing here that could honour it)"),
    )
}

fn seconds(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

/// A session to issue: who it acts as and what limits it.
pub(crate) struct Session {
    pub of: SessionOf,
    pub duration_seconds: u64,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub tags: Vec<(String, String)>,
}

/// Temporary credentials just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expires: Millis,
}

/// Writes a session under a lease that ends with it, in one transaction
/// with what `with` adds (given the new access key ID and expiry: compares
/// that must hold, and writes of the caller's own), and waits until the
/// cache knows it. `None` when one of those compares failed (nothing is
/// written).
pub(crate) async fn issue(
    iam: &Iam,
    now: Millis,
    session: Session,
    with: impl FnOnce(&str, Millis) -> (Vec<wharf_store::Compare>, Vec<Op>),
) -> Result<Option<Issued>, wharf_store::StoreError> {
    let id = new_id("ASIA", 20);
    let secret = new_secret(40);
    let token = new_secret(TOKEN_LEN);
    let duration_ms =
        i64::try_from(session.duration_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let expires = now.saturating_add(duration_ms);
    let record = SessionRecord {
        id: id.clone(),
        secret: secret.clone(),
        token_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes())),
        of: session.of,
        issued: now,
        expires,
        policy: session.policy,
        policy_arns: session.policy_arns,
        tags: session.tags,
    };
    // A little past the expiry: the cache refuses it at `expires`
    // either way, and the lease only tidies up.
    let lease = iam
        .store
        .grant_lease(std::time::Duration::from_secs(
            session.duration_seconds.saturating_add(60),
        ))
        .await?;
    let (compares, ops) = with(&id, expires);
    let mut txn = Txn::new();
    for c in compares {
        txn = txn.when(c);
    }
    for op in ops {
        txn = txn.then(op);
    }
    let txn = txn.then(Op::put_with_lease(
        keys::session(&id),
        wharf_store::typed::encode(&record),
        lease,
    ));
    let resp = iam.store.txn(txn).await?;
    if !resp.succeeded {
        let _ = iam.store.revoke_lease(lease).await;
        return Ok(None);
    }
    iam.cache.caught_up(resp.revision).await;
    Ok(Some(Issued {
        access_key_id: id,
        secret_access_key: secret,
        session_token: token,
        expires,
    }))
}

impl Sts<'_> {
    fn account(&self) -> &str {
        &self.iam.account
    }

    async fn get_caller_identity(
        &self,
        _: m::GetCallerIdentityRequest,
    ) -> Result<m::GetCallerIdentityResponse, AwsError> {
        let p = &self.caller.principal;
        Ok(m::GetCallerIdentityResponse {
            user_id: Some(p.user_id(self.account())),
            account: Some(self.account().to_string()),
            arn: Some(p.arn(self.account())),
        })
    }

    async fn get_access_key_info(
        &self,
        _: m::GetAccessKeyInfoRequest,
    ) -> Result<m::GetAccessKeyInfoResponse, AwsError> {
        // One account: every key Wharf knows is its.
        Ok(m::GetAccessKeyInfoResponse {
            account: Some(self.account().to_string()),
        })
    }

    /// Writes a session under a lease that ends with it, and waits until
    /// the cache knows it.
    async fn issue(
        &self,
        of: SessionOf,
        duration: i32,
        policy: Option<String>,
        policy_arns: Vec<String>,
        tags: Vec<(String, String)>,
    ) -> Result<m::Credentials, AwsError> {
        let session = Session {
            of,
            duration_seconds: duration as u64,
            policy,
            policy_arns,
            tags,
        };
        let issued = issue(self.iam, self.now, session, |_, _| (vec![], vec![]))
            .await
            .map_err(|e| err("ServiceFailure", format!("Storage failure: {e}")))?
            .ok_or_else(|| err("ServiceFailure", "The session was not written."))?;
        Ok(m::Credentials {
            access_key_id: issued.access_key_id,
            secret_access_key: issued.secret_access_key,
            session_token: issued.session_token,
            expiration: seconds(issued.expires),
        })
    }

    async fn assume_role(
        &self,
        r: m::AssumeRoleRequest,
    ) -> Result<m::AssumeRoleResponse, AwsError> {
        let caller_arn = self.caller.principal.arn(self.account());
        for (given, member) in [
            (r.serial_number.is_some(), "SerialNumber (MFA devices)"),
            (r.token_code.is_some(), "TokenCode (MFA devices)"),
            (r.source_identity.is_some(), "SourceIdentity"),
            (r.provided_contexts.is_some(), "ProvidedContexts"),
            (r.transitive_tag_keys.is_some(), "TransitiveTagKeys"),
            (
                r.minimum_session_token_size.is_some(),
                "MinimumSessionTokenSize",
            ),
        ] {
            if given {
                return Err(refused(member));
            }
        }
        let session_name = &r.role_session_name;
        if session_name.len() < 2
            || session_name.len() > 64
            || !session_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        {
            return Err(err(
                "ValidationError",
                format!("1 validation error detected: Value '{session_name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64"),
            ));
        }
        let denied = |why: &str| access_denied(&caller_arn, "sts:AssumeRole", &r.role_arn, why);
        if self.caller.principal == Principal::Root {
            return Err(denied(" (Roles may not be assumed by root accounts)"));
        }
        let (role, trust) = self
            .iam
            .cache
            .role_by_arn(&r.role_arn)
            .ok_or_else(|| denied(""))?;
        // Role chaining keeps a session to an hour, as AWS does.
        let chained = matches!(self.caller.principal, Principal::AssumedRole { .. });
        let max = if chained {
            3600
        } else {
            role.max_session_duration
        };
        let duration = r.duration_seconds.unwrap_or(3600);
        if duration < 900 {
            return Err(err(
                "ValidationError",
                format!("1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"),
            ));
        }
        if duration > max {
            return Err(err(
                "ValidationError",
                format!(
                    "The requested DurationSeconds exceeds the {} set for this role.",
                    if chained {
                        "1 hour session limit for roles assumed by role chaining"
                    } else {
                        "MaxSessionDuration"
                    }
                ),
            ));
        }
        let mut tags: Vec<(String, String)> = Vec::new();
        for t in r.tags.iter().flatten() {
            if t.key.to_ascii_lowercase().starts_with("aws:") {
                return Err(err(
                    "ValidationError",
                    "Session tags cannot begin with the reserved prefix 'aws:'.",
                ));
            }
            if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
                return Err(err(
                    "ValidationError",
                    format!("The session tag {} is not valid: keys are 1 to 128 characters, values at most 256.", t.key),
                ));
            }
            if tags.iter().any(|(k, _)| k.eq_ignore_ascii_case(&t.key)) {
                return Err(err(
                    "ValidationError",
                    format!(
                        "Duplicate tag keys found: {}. Tag keys are case insensitive.",
                        t.key
                    ),
                ));
            }
            tags.push((t.key.clone(), t.value.clone()));
        }
        if tags.len() > 50 {
            return Err(err(
                "ValidationError",
                "A session can have at most 50 tags.",
            ));
        }
        if let Some(doc) = &r.policy {
            if doc.len() > 2048 {
                return Err(err(
                    "PackedPolicyTooLarge",
                    "Packed policy consumes more than 100% of the allotted space (2048 characters).",
                ));
            }
            policy::Policy::parse(doc, false).map_err(|e| err("MalformedPolicyDocument", e.0))?;
        }
        let mut policy_arns = Vec::new();
        for d in r.policy_arns.iter().flatten() {
            let Some(arn) = &d.arn else {
                return Err(err("ValidationError", "PolicyArns entries need an arn."));
            };
            policy_arns.push(arn.clone());
        }
        if policy_arns.len() > 10 {
            return Err(err(
                "ValidationError",
                "1 validation error detected: Value at 'policyArns' failed to satisfy constraint: Member must have length less than or equal to 10",
            ));
        }

        // The request's own condition keys, the caller's, and AssumeRole's.
        let mut ctx = self.context.clone();
        self.iam.cache.principal_context(
            &self.caller.principal,
            self.caller.session.as_deref(),
            &mut ctx,
        );
        ctx.set("sts:RoleSessionName", session_name.clone());
        if let Some(x) = &r.external_id {
            ctx.set("sts:ExternalId", x.clone());
        }
        let keys: Vec<String> = tags.iter().map(|(k, _)| k.clone()).collect();
        for (k, v) in &tags {
            ctx.set(&format!("aws:RequestTag/{k}"), v.clone());
        }
        if !keys.is_empty() {
            ctx.set_many("aws:TagKeys", keys);
        }
        self.trusted(&trust, "sts:AssumeRole", &r.role_arn, &ctx)?;
        if !tags.is_empty() {
            self.trusted(&trust, "sts:TagSession", &r.role_arn, &ctx)?;
        }
        // Each session policy ARN must name a managed policy.
        for arn in &policy_arns {
            if crate::managed::find(arn).is_none() {
                let name = arn.rsplit('/').next().unwrap_or_default();
                let found = wharf_store::typed::get::<crate::records::PolicyRecord>(
                    &*self.iam.store,
                    &keys::policy(name),
                )
                .await
                .map_err(|e| err("ServiceFailure", e.to_string()))?
                .is_some_and(|p| {
                    crate::policy_arn(self.account(), &p.value.path, &p.value.name) == *arn
                });
                if !found {
                    return Err(err(
                        "ValidationError",
                        format!("Policy {arn} does not exist."),
                    ));
                }
            }
        }
        let credentials = self
            .issue(
                SessionOf::Role {
                    role: role.name.clone(),
                    role_id: role.id.clone(),
                    session_name: session_name.clone(),
                },
                duration,
                r.policy.clone(),
                policy_arns,
                tags,
            )
            .await?;
        Ok(m::AssumeRoleResponse {
            credentials: Some(credentials),
            assumed_role_user: Some(m::AssumedRoleUser {
                assumed_role_id: format!("{}:{session_name}", role.id),
                arn: format!(
                    "arn:aws:sts::{}:assumed-role/{}/{session_name}",
                    self.account(),
                    role.name
                ),
            }),
            packed_policy_size: r
                .policy
                .as_ref()
                .map(|p| (p.len() * 100 / 2048).min(100) as i32),
            ..Default::default()
        })
    }

    /// Whether the role's trust policy and the caller's own policies let
    /// the caller do `action` on the role: an explicit Deny in either
    /// refuses; a trust policy that names the caller itself (a user, this
    /// very session) grants on its own; one that reaches the caller only
    /// by delegation (its account, its session's role) needs the caller's
    /// policies to allow too, boundary and session policy included.
    fn trusted(
        &self,
        trust: &policy::Policy,
        action: &str,
        role_arn: &str,
        ctx: &Context,
    ) -> Result<(), AwsError> {
        let caller_arn = self.caller.principal.arn(self.account());
        let as_caller = self.caller.principal.as_caller(self.account());
        let verdict = trust.verdict(&Request {
            action,
            resource: role_arn,
            context: ctx,
            caller: Some(&as_caller),
        });
        if !verdict.denies.is_empty() {
            return Err(access_denied(
                &caller_arn,
                action,
                role_arn,
                " with an explicit deny in a resource-based policy",
            ));
        }
        let identity = self.iam.cache.authorize(
            &self.caller.principal,
            self.caller.session.as_deref(),
            action,
            role_arn,
            ctx,
        );
        let allowed = match identity {
            Decision::ExplicitDeny(_) => false,
            Decision::Allow => !verdict.allows.is_empty(),
            Decision::ImplicitDeny(_) => verdict.allows_directly,
        };
        if allowed {
            Ok(())
        } else {
            Err(access_denied(&caller_arn, action, role_arn, ""))
        }
    }

    async fn get_session_token(
        &self,
        r: m::GetSessionTokenRequest,
    ) -> Result<m::GetSessionTokenResponse, AwsError> {
        for (given, member) in [
            (r.serial_number.is_some(), "SerialNumber (MFA devices)"),
            (r.token_code.is_some(), "TokenCode (MFA devices)"),
            (
                r.minimum_session_token_size.is_some(),
                "MinimumSessionTokenSize",
            ),
        ] {
            if given {
                return Err(refused(member));
            }
        }
        if self.caller.session.is_some() {
            return Err(AwsError::new(
                403,
                "AccessDenied",
                "Cannot call GetSessionToken with session credentials",
            ));
        }
        let (of, max) = match &self.caller.principal {
            Principal::Root => (SessionOf::Root, 3600),
            Principal::User { name, id, .. } => (
                SessionOf::User {
                    name: name.clone(),
                    id: id.clone(),
                },
                129_600,
            ),
            Principal::AssumedRole { .. } => {
                return Err(AwsError::new(
                    403,
                    "AccessDenied",
                    "Cannot call GetSessionToken with session credentials",
                ))
            }
        };
        let duration = r
            .duration_seconds
            .unwrap_or(if max == 3600 { 3600 } else { 43_200 });
        if !(900..=max).contains(&duration) {
            return Err(err(
                "ValidationError",
                format!("1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and {max}"),
            ));
        }
        let credentials = self
            .issue(of, duration, None, Vec::new(), Vec::new())
            .await?;
        Ok(m::GetSessionTokenResponse {
            credentials: Some(credentials),
            ..Default::default()
        })
    }
}
