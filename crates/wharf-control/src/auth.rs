//! Who is calling, and what they may call. Three kinds of caller sign
//! requests: the account's root (the API keys given at start), IAM
//! principals (users' access keys and STS session credentials, see
//! `wharf_iam`), and agents (credentials minted from a join token, see
//! [`crate::tokens`]). Root may call every public operation but not the
//! agent protocol; an IAM principal what its policies allow (judged by
//! `wharf_iam`'s evaluator on the checks [`crate::authz`] reads from the
//! request); an agent the agent protocol and the few public operations an
//! ECS agent's instance role allows (register its instance, ship logs),
//! for its own cluster and instances only.

use crate::authz::Check;
use crate::error::{from_store, ApiResult};
use crate::{records, Control, Ctx};
use axum::http::{HeaderMap, Method, Uri};
use wharf_core::records::{keys, AgentCredentialRecord};
use wharf_protocol::sigv4::{self, Expect};
use wharf_protocol::AwsError;

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Signed with one of the API's keys: the account's root.
    Root,
    /// Signed with agent credentials.
    Agent(AgentCaller),
    /// Signed with an IAM user's access key or STS credentials.
    Iam(wharf_iam::Caller),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCaller {
    pub access_key_id: String,
    /// The only cluster it may register instances in.
    pub cluster: String,
    /// That cluster's region.
    pub region: String,
}

impl Caller {
    /// The access key of an agent's credentials (None: root).
    pub fn agent_key(&self) -> Option<&str> {
        match self {
            Caller::Root | Caller::Iam(_) => None,
            Caller::Agent(a) => Some(&a.access_key_id),
        }
    }

    /// The principal as AWS names it in an AccessDenied message.
    pub fn arn(&self, account: &str) -> String {
        match self {
            Caller::Root => format!("arn:aws:iam::{account}:root"),
            Caller::Agent(a) => format!(
                "arn:aws:sts::{account}:assumed-role/wharf-agent/{}",
                a.access_key_id
            ),
            Caller::Iam(c) => c.principal.arn(account),
        }
    }

    /// Who the caller is as IAM and STS see it (agents have no IAM identity).
    pub fn iam(&self) -> Option<wharf_iam::Caller> {
        match self {
            Caller::Root => Some(wharf_iam::Caller {
                principal: wharf_iam::Principal::Root,
                session: None,
            }),
            Caller::Iam(c) => Some(c.clone()),
            Caller::Agent(_) => None,
        }
    }
}

/// The API a request is for, from its `X-Amz-Target` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Ecs,
    Logs,
    /// The agent protocol (`WharfAgent_v1`).
    Agent,
    /// Wharf's administration (`WharfAdmin_v1`).
    Admin,
    /// Elastic Load Balancing v2 (awsQuery: the operation is the form's
    /// `Action`, not a header).
    Elbv2,
    /// IAM and STS (awsQuery).
    Iam,
    Sts,
    /// Secrets Manager and SSM Parameter Store (JSON 1.1).
    SecretsManager,
    Ssm,
}

impl Api {
    pub fn from_prefix(prefix: &str) -> Option<Api> {
        match prefix {
            wharf_model::ecs::TARGET_PREFIX => Some(Api::Ecs),
            wharf_model::logs::TARGET_PREFIX => Some(Api::Logs),
            wharf_core::agent_protocol::TARGET_PREFIX => Some(Api::Agent),
            wharf_core::admin_protocol::TARGET_PREFIX => Some(Api::Admin),
            wharf_model::secretsmanager::TARGET_PREFIX => Some(Api::SecretsManager),
            wharf_model::ssm::TARGET_PREFIX => Some(Api::Ssm),
            _ => None,
        }
    }

    /// What its requests' signatures must bind: the service in the scope
    /// (agents and administration sign as ECS, as the ECS agent does), and
    /// `x-amz-target`, which names the operation.
    pub fn expect(self) -> Expect<'static> {
        let service = match self {
            Api::Logs => "logs",
            Api::Elbv2 => wharf_model::elbv2::SIGNING_NAME,
            Api::Iam => wharf_model::iam::SIGNING_NAME,
            Api::Sts => wharf_model::sts::SIGNING_NAME,
            Api::SecretsManager => wharf_model::secretsmanager::SIGNING_NAME,
            Api::Ssm => wharf_model::ssm::SIGNING_NAME,
            Api::Ecs | Api::Agent | Api::Admin => "ecs",
        };
        Expect {
            service,
            signed: if self.is_query() {
                &[]
            } else {
                &["x-amz-target"]
            },
        }
    }

    /// Whether it speaks awsQuery (the operation in the form, not a header).
    pub fn is_query(self) -> bool {
        matches!(self, Api::Elbv2 | Api::Iam | Api::Sts)
    }

    /// The IAM action prefix of its operations.
    pub fn action_prefix(self) -> &'static str {
        match self {
            Api::Ecs => "ecs",
            Api::Logs => "logs",
            Api::Agent => "wharf-agent",
            Api::Admin => "wharf",
            Api::Elbv2 => "elasticloadbalancing",
            Api::Iam => "iam",
            Api::Sts => "sts",
            Api::SecretsManager => "secretsmanager",
            Api::Ssm => "ssm",
        }
    }
}

/// Verifies a request's signature against the API keys and the agents'
/// credentials; who signed it.
pub async fn authenticate(
    c: &Control,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    api: Api,
    now: time::OffsetDateTime,
) -> ApiResult<(Caller, sigv4::Verified)> {
    let expect = api.expect();
    let presented = sigv4::presented(uri, headers)?;
    presented.check(&expect, now)?;
    let akid = presented.access_key_id();
    let (secret, caller) = match c
        .config
        .credentials
        .iter()
        .find(|k| k.access_key_id == akid)
    {
        Some(k) => (k.secret_access_key.clone(), Caller::Root),
        // IAM's keys are in memory; an agent's are read from the store.
        None => match iam_credential(c, akid, presented.security_token(), now).await? {
            Some(found) => found,
            None => {
                let Some(agent) = agent_credential(c, akid).await? else {
                    return Err(AwsError::unrecognized_client());
                };
                (
                    agent.secret_access_key,
                    Caller::Agent(AgentCaller {
                        access_key_id: agent.access_key_id,
                        cluster: agent.cluster,
                        region: agent.region,
                    }),
                )
            }
        },
    };
    let verified = presented.verify(method, uri, headers, body, &secret, &expect, now)?;
    // A presigned URL that left the body unsigned vouches for no body.
    if !verified.body_signed && !body.is_empty() {
        return Err(AwsError::invalid_signature(
            "A presigned request with an UNSIGNED-PAYLOAD cannot carry a body.",
        ));
    }
    Ok((caller, verified))
}

/// An IAM user's key or STS credentials: its secret and who it is (None:
/// not a key IAM knows); temporary credentials need their session token.
async fn iam_credential(
    c: &Control,
    akid: &str,
    token: Option<&str>,
    now: time::OffsetDateTime,
) -> ApiResult<Option<(String, Caller)>> {
    c.iam.cache.ready().await;
    let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    match c.iam.cache.credential(akid, token, now_ms) {
        Ok(cred) => Ok(Some((
            cred.secret,
            Caller::Iam(wharf_iam::Caller {
                principal: cred.principal,
                session: cred.session,
            }),
        ))),
        Err(wharf_iam::cache::KeyError::Unknown) => Ok(None),
        Err(wharf_iam::cache::KeyError::Expired) => Err(AwsError::client(
            "ExpiredTokenException",
            "The security token included in the request is expired",
        )),
        Err(wharf_iam::cache::KeyError::Invalid) => Err(AwsError::unrecognized_client()),
    }
}

async fn agent_credential(c: &Control, akid: &str) -> ApiResult<Option<AgentCredentialRecord>> {
    // Access key IDs are short and plain; anything else is no key of ours
    // (and never becomes a store key).
    if akid.is_empty() || akid.len() > 128 || !akid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    Ok(
        records::get::<AgentCredentialRecord>(c.store.as_ref(), &keys::agent_credential(akid))
            .await?
            .map(|v| v.value),
    )
}

/// Public operations an agent's credentials may call, as the ECS agent's
/// instance role (AmazonEC2ContainerServiceforEC2Role) allows them.
const AGENT_ECS_OPERATIONS: &[&str] = &[
    "RegisterContainerInstance",
    "DiscoverPollEndpoint",
    "SubmitTaskStateChange",
    "SubmitContainerStateChange",
];
const AGENT_LOGS_OPERATIONS: &[&str] = &[
    "CreateLogGroup",
    "CreateLogStream",
    "PutLogEvents",
    "DescribeLogStreams",
];

/// Whether the caller may call `op` of `api` at all (handlers then check
/// which cluster, instance or task); for an IAM principal, whether its
/// policies allow each of the request's `checks`.
pub fn authorize(c: &Control, x: &Ctx, api: Api, op: &str, checks: &[Check]) -> ApiResult<()> {
    // Agent credentials are for their cluster's region (the managed
    // capacity's serve every region); their log writes may go to any.
    if let Caller::Agent(a) = &x.caller {
        if matches!(api, Api::Agent | Api::Ecs)
            && a.cluster != wharf_core::records::MANAGED_CLUSTER
            && a.region != x.region()
        {
            return Err(access_denied(
                x,
                &format!("{}:{op}", api.action_prefix()),
                &format!(
                    "* (these agent credentials are for cluster {} in region {}: start the agent with --region {})",
                    a.cluster, a.region, a.region
                ),
            ));
        }
    }
    let allowed = match (&x.caller, api) {
        (Caller::Root | Caller::Iam(_), Api::Agent) => false,
        (Caller::Root, _) => true,
        // GetSessionToken's credentials may not call IAM, nor STS but to
        // assume a role or ask who they are, as STS restricts them.
        (Caller::Iam(who), Api::Iam | Api::Sts)
            if who.session.is_some()
                && !matches!(who.principal, wharf_iam::Principal::AssumedRole { .. })
                && !(api == Api::Sts && matches!(op, "AssumeRole" | "GetCallerIdentity")) =>
        {
            let mut e = access_denied(x, &format!("{}:{op}", api.action_prefix()), "*");
            e.message.push_str(
                " (credentials from GetSessionToken cannot call IAM, or STS but AssumeRole and GetCallerIdentity)",
            );
            return Err(e);
        }
        // STS judges its own requests (the trust policy decides AssumeRole;
        // no permission is needed to ask who one is).
        (Caller::Iam(_), Api::Sts) => true,
        (Caller::Iam(who), _) => return evaluate(c, x, who, checks),
        (Caller::Agent(_), Api::Agent) => true,
        (Caller::Agent(_), Api::Ecs) => AGENT_ECS_OPERATIONS.contains(&op),
        (Caller::Agent(_), Api::Logs) => AGENT_LOGS_OPERATIONS.contains(&op),
        (
            Caller::Agent(_),
            Api::Admin | Api::Elbv2 | Api::Iam | Api::Sts | Api::SecretsManager | Api::Ssm,
        ) => false,
    };
    if allowed {
        return Ok(());
    }
    let mut e = access_denied(x, &format!("{}:{op}", api.action_prefix()), "*");
    if api == Api::Agent {
        e.message.push_str(
            " (the agent protocol takes agent credentials: start the agent with a join token from `wharf token create`)",
        );
    }
    Err(e)
}

/// IAM's decision on each check; the first resource refused is the error.
fn evaluate(c: &Control, x: &Ctx, who: &wharf_iam::Caller, checks: &[Check]) -> ApiResult<()> {
    for check in checks {
        for resource in &check.resources {
            let decision = c.iam.cache.authorize_on(
                &who.principal,
                who.session.as_deref(),
                &check.action,
                resource,
                &check.context,
                check.resource_policy.as_deref(),
            );
            let Some(why) = denial(&decision, &check.action) else {
                continue;
            };
            let mut e = access_denied(x, &check.action, resource);
            e.message.push_str(&why);
            return Err(e);
        }
    }
    Ok(())
}

/// How AWS's AccessDenied message ends for a decision that refuses
/// (None: it allows).
pub fn denial(decision: &wharf_iam::policy::Decision, action: &str) -> Option<String> {
    use wharf_iam::policy::Decision;
    match decision {
        Decision::Allow => None,
        Decision::ExplicitDeny(kind) => Some(format!(
            " with an explicit deny in {} {}",
            article(kind.describe()),
            kind.describe()
        )),
        Decision::ImplicitDeny(kind) => Some(format!(
            " because no {} allows the {action} action",
            kind.describe()
        )),
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// ECS's AccessDeniedException: "User: … is not authorized to perform: …
/// on resource: …".
pub fn access_denied(x: &Ctx, action: &str, resource: &str) -> AwsError {
    AwsError::client(
        "AccessDeniedException",
        format!(
            "User: {} is not authorized to perform: {action} on resource: {resource}",
            x.caller.arn(&x.scope.account)
        ),
    )
}

/// Whether an instance registered by `owner` (its agent credentials' key)
/// is the caller's: root's always, an agent's only if it registered it.
pub fn owns(x: &Ctx, owner: Option<&str>) -> bool {
    match x.caller.agent_key() {
        None => true,
        Some(key) => owner == Some(key),
    }
}

/// Whether the caller, if an agent, may register in `cluster`.
pub fn may_register_in(x: &Ctx, cluster: &str) -> ApiResult<()> {
    match &x.caller {
        Caller::Agent(a) if a.cluster != cluster => Err(access_denied(
            x,
            "ecs:RegisterContainerInstance",
            &x.scope.cluster(cluster),
        )),
        _ => Ok(()),
    }
}

/// Whether agent credentials `akid` still exist (an instance whose
/// registering credentials were revoked may be taken over).
pub async fn credential_exists(c: &Control, akid: &str) -> ApiResult<bool> {
    Ok(c.store
        .get(&keys::agent_credential(akid))
        .await
        .map_err(from_store)?
        .is_some())
}
