//! A task's secrets: what its execution role reads for it before its
//! containers are created, as ECS's agent does with the role's
//! credentials. `secrets[].valueFrom` names a Secrets Manager secret (full
//! or partial ARN, with `:json-key:version-stage:version-id`) or an SSM
//! parameter (name or ARN); `repositoryCredentials` a secret holding
//! `username` and `password`.
//!
//! Each read is judged by IAM as a session of the execution role (named
//! after the task) doing `secretsmanager:GetSecretValue` or
//! `ssm:GetParameters`, with the secret's resource policy; the role must
//! trust `ecs-tasks.amazonaws.com`. The values go to the agent only: they
//! are in no record, no task description and no log.

use crate::agent_api::live_task;
use crate::error::{client, ApiResult};
use crate::{Control, Ctx};
use wharf_core::agent_protocol::{
    ContainerSecret, RegistryCredentials, TaskSecretsRequest, TaskSecretsResponse, GET_TASK_SECRETS,
};
use wharf_core::arn;
use wharf_core::records::TaskRecord;
use wharf_iam::policy::Context;
use wharf_iam::service_roles::{self, ECS_TASKS};
use wharf_iam::Principal;
use wharf_protocol::AwsError;
use wharf_secretsmanager::SecretReference;

/// ECS's words for a task whose execution role could not read what it needs.
const PREFIX: &str =
    "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed";

fn from_asm(why: impl std::fmt::Display) -> AwsError {
    client(format!(
        "{PREFIX}: unable to retrieve secret from asm: service call has been retried 1 time(s): {why}"
    ))
}

fn from_ssm(why: impl std::fmt::Display) -> AwsError {
    client(format!(
        "{PREFIX}: unable to retrieve secrets from ssm: service call has been retried 1 time(s): {why}"
    ))
}

pub(crate) async fn get(
    c: &Control,
    x: &Ctx,
    r: TaskSecretsRequest,
) -> ApiResult<TaskSecretsResponse> {
    let (task, td) =
        live_task(c, x, GET_TASK_SECRETS, &r.task_arn, "The task has stopped.").await?;
    let t = &task.value;
    let region = arn::region_of(&r.task_arn).to_string();
    let def = &td.definition;
    let containers = wharf_core::taskdef::effective_containers(def, &t.overrides);
    let mut out = TaskSecretsResponse::default();
    let wanted = containers.iter().any(|d| {
        d.secrets.as_ref().is_some_and(|s| !s.is_empty()) || d.repository_credentials.is_some()
    });
    if !wanted {
        return Ok(out);
    }
    let Some(role) = wharf_core::taskdef::execution_role(def, &t.overrides) else {
        return Err(client(format!(
            "{PREFIX}: the task has secrets to read but no execution role (executionRoleArn)"
        )));
    };
    let reader = Reader::new(c, role, t, &region)?;
    for d in &containers {
        let container = d.name.clone().unwrap_or_default();
        for s in d.secrets.iter().flatten() {
            let value = reader.read(&s.value_from).await?;
            out.secrets.push(ContainerSecret {
                container_name: container.clone(),
                name: s.name.clone(),
                value,
            });
        }
        if let Some(rc) = &d.repository_credentials {
            let text = reader.read(&rc.credentials_parameter).await?;
            let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let field = |k: &str| doc.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let (Some(username), Some(password)) = (field("username"), field("password")) else {
                return Err(from_asm(format!(
                    "the secret {} of repositoryCredentials must be JSON with a username and a password",
                    rc.credentials_parameter
                )));
            };
            out.registry_credentials.push(RegistryCredentials {
                container_name: container,
                username,
                password,
            });
        }
    }
    Ok(out)
}

/// Reads as a session of a task's execution role.
struct Reader<'a> {
    c: &'a Control,
    principal: Principal,
    /// The task's region: where a bare parameter name is.
    region: &'a str,
}

impl<'a> Reader<'a> {
    fn new(c: &'a Control, role: &str, t: &TaskRecord, region: &'a str) -> ApiResult<Reader<'a>> {
        let assumed = service_roles::check(
            &c.iam,
            ECS_TASKS,
            role,
            &t.cluster_arn,
            Some(&t.id),
            c.clock.now(),
        )
        .map_err(|e| {
            client(format!(
                "{PREFIX}: ECS was unable to assume the execution role '{role}': {e}"
            ))
        })?;
        let role_arn = role.to_string();
        let account = &c.config.account_id;
        Ok(Reader {
            c,
            principal: Principal::AssumedRole {
                arn: format!(
                    "arn:aws:sts::{account}:assumed-role/{}/{}",
                    assumed.name, t.id
                ),
                role_name: assumed.name,
                role_id: assumed.id,
                role_arn,
                session_name: t.id.clone(),
            },
            region,
        })
    }

    /// Whether the role's session may do `action` on `resource`, as IAM
    /// would answer it: AccessDeniedException's text if not.
    fn allowed(
        &self,
        action: &str,
        resource: &str,
        region: &str,
        secret: Option<&wharf_secretsmanager::Judged>,
    ) -> Result<(), String> {
        let mut check = crate::authz::Check {
            action: action.to_string(),
            resources: vec![resource.to_string()],
            context: Context::new(),
            resource_policy: None,
        };
        check.context.set("aws:RequestedRegion", region.to_string());
        check.context.set("aws:SecureTransport", "true");
        check.context.set_time(self.c.clock.now());
        // A secret's resource policy and tags, as for a GetSecretValue.
        if let Some(secret) = secret {
            crate::http::judge_secret(&mut check, secret);
        }
        let decision = self.c.iam.cache.authorize_on(
            &self.principal,
            None,
            action,
            resource,
            &check.context,
            check.resource_policy.as_deref(),
        );
        let who = match &self.principal {
            Principal::AssumedRole { arn, .. } => arn.as_str(),
            _ => "",
        };
        match crate::auth::denial(&decision, action) {
            None => Ok(()),
            Some(why) => Err(format!(
                "AccessDeniedException: User: {who} is not authorized to perform: {action} on resource: {resource}{why}"
            )),
        }
    }

    /// The text one `valueFrom` names.
    async fn read(&self, value_from: &str) -> ApiResult<String> {
        if let Some(r) = SecretReference::parse(value_from) {
            return self.secret(&r).await;
        }
        if value_from.starts_with("arn:") && !value_from.starts_with("arn:aws:ssm:") {
            return Err(client(format!(
                "{PREFIX}: '{value_from}' is neither a Secrets Manager secret nor an SSM parameter"
            )));
        }
        self.parameter(value_from).await
    }

    async fn secret(&self, r: &SecretReference) -> ApiResult<String> {
        let parts: Vec<&str> = r.secret_id.split(':').collect();
        let (region, account) = (parts[3], parts[4]);
        if !arn::valid_region(region) {
            return Err(from_asm(format!("'{}' names no region", r.secret_id)));
        }
        if account != self.c.config.account_id {
            return Err(from_asm(format!(
                "ResourceNotFoundException: Secrets Manager can't find the specified secret ({} is another account's)",
                r.secret_id
            )));
        }
        let scope = wharf_secretsmanager::Scope {
            region: region.to_string(),
            account: account.to_string(),
        };
        let sm = &self.c.secrets;
        let Some(judged) = sm.judged(&scope, &r.secret_id).await? else {
            return Err(from_asm(format!(
                "ResourceNotFoundException: Secrets Manager can't find the specified secret: {}",
                r.secret_id
            )));
        };
        let arn = judged.arn.clone();
        self.allowed("secretsmanager:GetSecretValue", &arn, region, Some(&judged))
            .map_err(from_asm)?;
        let now = self.c.clock.now();
        let v = sm
            .value(
                &scope,
                now,
                &arn,
                r.version_id.as_deref(),
                r.version_stage.as_deref(),
            )
            .await
            .map_err(|e| match e.status {
                500.. => e,
                _ => from_asm(format!("{}: {}", e.code, e.message)),
            })?;
        let Some(text) = v.string else {
            return Err(from_asm(format!(
                "the secret {arn} is binary: a task's secrets must be strings"
            )));
        };
        r.pick(&text)
            .map_err(|why| from_asm(format!("retrieved secret from Secrets Manager: {why}")))
    }

    async fn parameter(&self, value_from: &str) -> ApiResult<String> {
        let region = match value_from.strip_prefix("arn:aws:ssm:") {
            Some(rest) => rest.split(':').next().unwrap_or_default(),
            None => self.region,
        };
        if !arn::valid_region(region) {
            return Err(from_ssm(format!("invalid parameters: {value_from}")));
        }
        let scope = wharf_ssm::Scope {
            region: region.to_string(),
            account: self.c.config.account_id.clone(),
        };
        let arn = wharf_ssm::Ssm::parameter_arn(&scope, value_from)
            .map_err(|_| from_ssm(format!("invalid parameters: {value_from}")))?;
        self.allowed("ssm:GetParameters", &arn, region, None)
            .map_err(from_ssm)?;
        self.c
            .ssm
            .value(&scope, value_from)
            .await
            .map_err(|e| match e.status {
                500.. => e,
                _ => from_ssm(format!("invalid parameters: {value_from}")),
            })
    }
}
