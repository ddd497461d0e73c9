//! The HTTP face of the control plane: AWS JSON 1.1 on `POST /`, dispatched
//! by `X-Amz-Target` after the SigV4 signature is verified and the caller
//! is allowed the operation (see [`crate::auth`]).

use crate::auth::{self, Api};
use crate::error::ApiResult;
use crate::{agent_api, ecs, Control, Ctx};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use wharf_core::arn::Scope;
use wharf_core::clock::Millis;
use wharf_protocol::{AwsError, JSON_1_1};

/// Largest request body accepted (RegisterTaskDefinition documents are the largest).
const MAX_BODY: usize = 4 << 20;

pub fn router(control: Control) -> Router {
    Router::new()
        .route("/", axum::routing::post(handle))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            &format!("{}/{{session}}", wharf_core::exec_protocol::STREAM_PATH),
            get(crate::exec::open),
        )
        .route(
            "/metrics",
            get(|State(c): State<Control>| async move { c.metrics.prometheus() }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(control)
}

async fn handle(
    State(control): State<Control>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let peer = extensions.get::<crate::PeerAddr>().map(|p| p.0.ip());
    // A body too large (or cut off) gets an AWS error, not a plain-text one.
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let mut resp = error_response(&AwsError::new(
                e.status().as_u16(),
                "SerializationException",
                format!("Request body could not be read: {}", e.body_text()),
            ));
            set_headers(&mut resp, &request_id);
            return resp;
        }
    };
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if target.is_empty() && form {
        return handle_query(&control, &method, &uri, &headers, &body, &request_id, peer).await;
    }
    let result = dispatch(&control, &method, &uri, &headers, &body, &target, peer).await;
    match result {
        Ok(body) => {
            let mut resp = (StatusCode::OK, body).into_response();
            set_headers(&mut resp, &request_id);
            resp
        }
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(target = %target, code = %e.code, message = %e.message, "request failed");
            } else {
                tracing::debug!(target = %target, code = %e.code, message = %e.message, "request refused");
            }
            let mut resp = error_response(&e);
            set_headers(&mut resp, &request_id);
            resp
        }
    }
}

/// An AWS JSON error as a response: status, `__type`/`message` body and
/// the `X-Amzn-Errortype` header.
pub fn error_response(e: &AwsError) -> Response {
    let mut resp = (
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        e.body(),
    )
        .into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_1_1),
    );
    if let Ok(v) = HeaderValue::from_str(&e.error_type_header()) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

/// An awsQuery request (ELBv2 today; IAM and STS next): routed by the
/// service its signature is scoped to, answered in XML.
async fn handle_query(
    control: &Control,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
    peer: Option<std::net::IpAddr>,
) -> Response {
    // Errors are in the namespace of the service the signature names.
    let namespace = match wharf_protocol::sigv4::presented(uri, headers)
        .ok()
        .as_ref()
        .map(|p| p.service())
    {
        Some(wharf_model::iam::SIGNING_NAME) => wharf_model::iam::SCHEMA.xml_namespace,
        Some(wharf_model::sts::SIGNING_NAME) => wharf_model::sts::SCHEMA.xml_namespace,
        _ => wharf_model::elbv2::SCHEMA.xml_namespace,
    };
    let (status, body) =
        match dispatch_query(control, method, uri, headers, body, request_id, peer).await {
            Ok(xml) => (StatusCode::OK, xml),
            Err(e) => {
                let e = query_error(e);
                if e.status >= 500 {
                    tracing::error!(code = %e.code, message = %e.message, "query request failed");
                } else {
                    tracing::debug!(code = %e.code, message = %e.message, "query request refused");
                }
                (
                    StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                    wharf_protocol::query::error_body(&e, namespace, request_id),
                )
            }
        };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(wharf_protocol::query::XML),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

async fn dispatch_query(
    control: &Control,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
    peer: Option<std::net::IpAddr>,
) -> ApiResult<Vec<u8>> {
    let (now_ms, now) = now(control)?;
    let presented = wharf_protocol::sigv4::presented(uri, headers)?;
    let (api, version, name) = match presented.service() {
        wharf_model::elbv2::SIGNING_NAME => (
            Api::Elbv2,
            wharf_model::elbv2::API_VERSION,
            "Elastic Load Balancing v2",
        ),
        wharf_model::iam::SIGNING_NAME => (Api::Iam, wharf_model::iam::API_VERSION, "IAM"),
        wharf_model::sts::SIGNING_NAME => (Api::Sts, wharf_model::sts::API_VERSION, "STS"),
        other => {
            return Err(AwsError::client(
                "InvalidAction",
                format!("Wharf serves no awsQuery service '{other}'"),
            ))
        }
    };
    let (caller, verified) =
        auth::authenticate(control, method, uri, headers, body, api, now).await?;
    let request = wharf_protocol::query::parse(body)?;
    if request.version != version {
        return Err(AwsError::client(
            "InvalidAction",
            format!(
                "Version '{}' is not supported; {name} is {version}",
                request.version
            ),
        ));
    }
    let ctx = ctx(control, headers, verified.region, now_ms, caller, peer)?;
    let checks = checks(
        control,
        &ctx,
        api,
        &request.action,
        None,
        Some(&request.params),
    );
    auth::authorize(control, &ctx, api, &request.action, &checks)?;
    match api {
        Api::Iam | Api::Sts => {
            let who = ctx.caller.iam().ok_or_else(|| {
                auth::access_denied(
                    &ctx,
                    &format!("{}:{}", api.action_prefix(), request.action),
                    "*",
                )
            })?;
            let (iam, action, params) = (&control.iam, &request.action, &request.params);
            if api == Api::Iam {
                wharf_iam::dispatch_iam(iam, &who, now_ms, action, params, request_id).await
            } else {
                let context = checks
                    .into_iter()
                    .next()
                    .map(|c| c.context)
                    .unwrap_or_default();
                wharf_iam::dispatch_sts(iam, &who, &context, now_ms, action, params, request_id)
                    .await
            }
        }
        _ => {
            let scope = wharf_lb::Scope {
                region: ctx.scope.region,
                account: ctx.scope.account,
            };
            wharf_lb::dispatch(
                &control.lb,
                &scope,
                now_ms,
                &request.action,
                &request.params,
                request_id,
            )
            .await
        }
    }
}

/// What IAM is asked of a request: only for IAM principals (root and
/// agents are judged without it, and their requests are not read twice).
fn checks(
    control: &Control,
    ctx: &Ctx,
    api: Api,
    op: &str,
    body: Option<&[u8]>,
    params: Option<&[(String, String)]>,
) -> Vec<crate::authz::Check> {
    // STS reads the request's keys for trust policies whoever calls.
    if !matches!(ctx.caller, auth::Caller::Iam(_)) && api != Api::Sts {
        return Vec::new();
    }
    let json = body.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
    let caller_user = match &ctx.caller {
        auth::Caller::Iam(wharf_iam::Caller {
            principal: wharf_iam::Principal::User { arn, .. },
            ..
        }) => Some(arn.as_str()),
        _ => None,
    };
    let cache = &control.iam.cache;
    let mut out = crate::authz::checks(
        api.action_prefix(),
        op,
        json.as_ref(),
        params,
        &ctx.scope,
        ctx.now,
        control.config.tls,
        &|kind, name| cache.entity_arn(kind, name),
        caller_user,
    );
    // Where the request came from, for every check it makes.
    if let Some(ip) = ctx.source_ip {
        for check in &mut out {
            check.context.set("aws:SourceIp", ip.to_string());
        }
    }
    out
}

/// For the operations that start tasks of a registered task definition:
/// judged on that revision (a bare family resolves to its latest, as the
/// handler will), and `iam:PassRole` on the roles it names, which ECS
/// hands to the tasks. A task definition that does not resolve is left to
/// the handler to refuse.
async fn task_definition_checks(
    control: &Control,
    ctx: &Ctx,
    op: &str,
    body: &[u8],
    checks: &mut Vec<crate::authz::Check>,
) -> ApiResult<()> {
    if !matches!(
        op,
        "RunTask" | "StartTask" | "CreateService" | "UpdateService" | "CreateTaskSet"
    ) {
        return Ok(());
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Ok(());
    };
    let Some(given) = json.get("taskDefinition").and_then(|t| t.as_str()) else {
        return Ok(());
    };
    let td = match crate::ecs::taskdefs::resolve(control, ctx.region(), given).await {
        Ok(td) => td,
        // Not found: the handler refuses it. Anything else (the store
        // failing) refuses here, so no role goes unchecked.
        Err(e) if e.status < 500 => return Ok(()),
        Err(e) => return Err(e),
    };
    let def = &td.value.definition;
    if matches!(op, "RunTask" | "StartTask") {
        if let (Some(first), Some(arn)) = (checks.first_mut(), &def.task_definition_arn) {
            first.resources = vec![arn.clone()];
        }
    }
    let Some(base) = checks.first().map(|c| c.context.clone()) else {
        return Ok(());
    };
    for role in [&def.task_role_arn, &def.execution_role_arn]
        .into_iter()
        .flatten()
    {
        checks.push(crate::authz::pass_role(role.clone(), &base));
    }
    Ok(())
}

/// For Secrets Manager: the secret a request names judged by its full ARN
/// (IAM policies name `secret:NAME-XXXXXX`, however the request named it),
/// its resource policy and its tags; and the request's body with that ARN
/// as its `SecretId`, for the handler. A secret that is not there is left
/// to the handler to refuse.
async fn secret_checks(
    control: &Control,
    ctx: &Ctx,
    body: &[u8],
    checks: &mut [crate::authz::Check],
) -> ApiResult<Option<Vec<u8>>> {
    let Some(first) = checks.first_mut() else {
        return Ok(None);
    };
    let Some(given) = first
        .context
        .get("secretsmanager:SecretId")
        .and_then(|v| v.first())
        .cloned()
    else {
        return Ok(None);
    };
    let scope = wharf_secretsmanager::Scope {
        region: ctx.scope.region.clone(),
        account: ctx.scope.account.clone(),
    };
    let Some(secret) = control.secrets.judged(&scope, &given).await? else {
        return Ok(None);
    };
    judge_secret(first, &secret);
    let mut json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| AwsError::serialization(e.to_string()))?;
    json["SecretId"] = serde_json::Value::String(secret.arn);
    let body = serde_json::to_vec(&json).map_err(|e| AwsError::internal(e.to_string()))?;
    Ok(Some(body))
}

/// A check on one secret: on its ARN, with its resource policy and tags.
pub(crate) fn judge_secret(check: &mut crate::authz::Check, secret: &wharf_secretsmanager::Judged) {
    check.resources = vec![secret.arn.clone()];
    check.resource_policy = secret.policy.as_deref().map(resource_policy);
    for (k, v) in &secret.tags {
        check
            .context
            .set(&format!("aws:ResourceTag/{k}"), v.clone());
        check
            .context
            .set(&format!("secretsmanager:ResourceTag/{k}"), v.clone());
    }
}

/// A stored resource policy, compiled. One that no longer parses (it was
/// checked when put) denies everything, and says so: its Deny must not be
/// lost.
pub(crate) fn resource_policy(text: &str) -> std::sync::Arc<wharf_iam::policy::Policy> {
    const DENY_ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"*","Resource":"*"}]}"#;
    let policy = wharf_iam::policy::Policy::parse(text, true).or_else(|e| {
        tracing::error!(error = %e.0, "a stored resource policy does not parse; it denies everything");
        wharf_iam::policy::Policy::parse(DENY_ALL, true)
    });
    std::sync::Arc::new(policy.expect("the deny-all policy parses"))
}

/// ECS resources judged with their tags (`aws:ResourceTag/…`,
/// `ecs:ResourceTag/…`): each tagged resource of the operation's own check
/// becomes a check of its own, with its tags in the context.
async fn resource_tag_checks(
    control: &Control,
    ctx: &Ctx,
    checks: &mut Vec<crate::authz::Check>,
) -> ApiResult<()> {
    let Some(first) = checks.first_mut() else {
        return Ok(());
    };
    let mut tagged = Vec::new();
    let mut plain = Vec::new();
    for resource in std::mem::take(&mut first.resources) {
        // Wildcards (`*`, every revision of a family) name no one resource.
        let tags = if resource.starts_with("arn:aws:ecs:") && !resource.ends_with('*') {
            // A resource not there has none; the store failing refuses,
            // so no tag condition goes unjudged.
            match crate::ecs::tags::tags_of(control, ctx, &resource).await {
                Ok(tags) => tags.unwrap_or_default(),
                Err(e) if e.status >= 500 => return Err(e),
                Err(_) => Default::default(),
            }
        } else {
            Default::default()
        };
        if tags.is_empty() {
            plain.push(resource);
        } else {
            tagged.push((resource, tags));
        }
    }
    let base = first.clone();
    first.resources = plain;
    for (resource, tags) in tagged {
        let mut check = crate::authz::Check {
            resources: vec![resource],
            ..base.clone()
        };
        for (k, v) in &tags {
            check
                .context
                .set(&format!("aws:ResourceTag/{k}"), v.clone());
            check
                .context
                .set(&format!("ecs:ResourceTag/{k}"), v.clone());
        }
        checks.push(check);
    }
    Ok(())
}

/// A verified request's context: its region (from the signature), the
/// account, the time, who called.
fn ctx(
    control: &Control,
    headers: &HeaderMap,
    region: String,
    now: Millis,
    caller: auth::Caller,
    source_ip: Option<std::net::IpAddr>,
) -> ApiResult<Ctx> {
    // The region becomes a segment of store keys: refused unless it reads
    // as a region does.
    if !wharf_core::arn::valid_region(&region) {
        return Err(AwsError::client(
            "InvalidSignatureException",
            format!("Credential should be scoped to a valid region, not '{region}'."),
        ));
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(Ctx {
        scope: Scope {
            region,
            account: control.config.account_id.clone(),
        },
        now,
        caller,
        host,
        source_ip,
    })
}

/// The control plane's clock, as milliseconds and as the time SigV4 checks against.
fn now(control: &Control) -> ApiResult<(Millis, time::OffsetDateTime)> {
    let ms: Millis = control.clock.now();
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .map_err(|e| AwsError::internal(e.to_string()))?;
    Ok((ms, t))
}

/// The awsQuery codes and statuses of the errors every API shares (AWS
/// names them differently in its JSON and query services).
fn query_error(mut e: AwsError) -> AwsError {
    let (code, status) = match e.code.as_str() {
        "InvalidSignatureException" => ("SignatureDoesNotMatch", 403),
        "UnrecognizedClientException" => ("InvalidClientTokenId", 403),
        "MissingAuthenticationTokenException" => ("MissingAuthenticationToken", 403),
        "IncompleteSignatureException" => ("IncompleteSignature", 400),
        "AccessDeniedException" => ("AccessDenied", 403),
        "ExpiredTokenException" => ("ExpiredToken", 403),
        "SerializationException" => ("ValidationError", 400),
        "ServerException" => ("InternalFailure", 500),
        _ => return e,
    };
    e.code = code.into();
    e.status = status;
    e
}

fn set_headers(resp: &mut Response, request_id: &str) {
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_1_1),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
}

async fn dispatch(
    control: &Control,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    target: &str,
    peer: Option<std::net::IpAddr>,
) -> ApiResult<Vec<u8>> {
    let (now_ms, now) = now(control)?;
    let parts = target.split_once('.');
    let api = parts.and_then(|(prefix, _)| Api::from_prefix(prefix));
    // Joining is the one call a token in the body authenticates: the agent
    // has no credentials yet.
    if api == Some(Api::Agent)
        && parts.is_some_and(|(_, op)| op == wharf_core::agent_protocol::JOIN)
    {
        return crate::tokens::join(control, now_ms, body).await;
    }
    // As AWS: who is calling first, then whether the operation exists.
    let (caller, verified) = auth::authenticate(
        control,
        method,
        uri,
        headers,
        body,
        api.unwrap_or(Api::Ecs),
        now,
    )
    .await?;
    let (_, op) = parts.ok_or_else(|| {
        if target.is_empty() {
            AwsError::client("UnknownOperationException", "Missing X-Amz-Target header.")
        } else {
            AwsError::unknown_operation(target)
        }
    })?;
    let api = api.ok_or_else(|| AwsError::unknown_operation(target))?;
    let ctx = ctx(control, headers, verified.region, now_ms, caller, peer)?;
    let mut checks = checks(control, &ctx, api, op, Some(body), None);
    if api == Api::Ecs && !checks.is_empty() {
        task_definition_checks(control, &ctx, op, body, &mut checks).await?;
        resource_tag_checks(control, &ctx, &mut checks).await?;
    }
    // The secret judged is the one the handler acts on: it is handed the
    // full ARN IAM judged (a secret deleted and made again under the name
    // meanwhile is not it).
    let resolved;
    let mut body = body;
    if api == Api::SecretsManager && !checks.is_empty() {
        if let Some(b) = secret_checks(control, &ctx, body, &mut checks).await? {
            resolved = b;
            body = &resolved;
        }
    }
    auth::authorize(control, &ctx, api, op, &checks)?;
    match api {
        Api::Ecs => ecs::dispatch(control, &ctx, op, body).await,
        Api::Agent => agent_api::dispatch(control, &ctx, op, body).await,
        Api::Admin => crate::tokens::dispatch(control, &ctx, op, body).await,
        // Never from a target prefix: awsQuery requests go by `handle_query`.
        Api::Elbv2 | Api::Iam | Api::Sts => Err(AwsError::unknown_operation(target)),
        Api::SecretsManager => {
            let scope = wharf_secretsmanager::Scope {
                region: ctx.scope.region.clone(),
                account: ctx.scope.account.clone(),
            };
            let base = checks
                .first()
                .map(|c| c.context.clone())
                .unwrap_or_default();
            // BatchGetSecretValue: each secret as GetSecretValue judges it.
            let guard = |action: &str, secret: Option<&wharf_secretsmanager::Judged>| {
                let mut check = crate::authz::Check {
                    action: action.to_string(),
                    resources: vec!["*".to_string()],
                    context: base.clone(),
                    resource_policy: None,
                };
                if let Some(secret) = secret {
                    judge_secret(&mut check, secret);
                }
                let op = action.split_once(':').map_or(action, |(_, op)| op);
                auth::authorize(control, &ctx, api, op, &[check])
            };
            wharf_secretsmanager::dispatch(&control.secrets, &scope, ctx.now, op, body, &guard)
                .await
        }
        Api::Ssm => {
            let scope = wharf_ssm::Scope {
                region: ctx.scope.region.clone(),
                account: ctx.scope.account.clone(),
            };
            wharf_ssm::dispatch(&control.ssm, &scope, ctx.now, op, body).await
        }
        Api::Logs => {
            let scope = wharf_logs::Scope {
                region: ctx.scope.region,
                account: ctx.scope.account,
            };
            wharf_logs::dispatch(&control.logs, &scope, ctx.now, op, body).await
        }
    }
}

pub use wharf_protocol::json::{decode, encode};

/// Decodes, runs a handler, encodes: one operation of a dispatch table.
pub async fn call<Req, Resp, F, Fut>(body: &[u8], f: F) -> ApiResult<Vec<u8>>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = ApiResult<Resp>>,
{
    let req = decode::<Req>(body)?;
    encode(&f(req).await?)
}
