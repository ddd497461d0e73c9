//! Roles a service assumes on the account's behalf, as ECS assumes a
//! task's role as `ecs-tasks.amazonaws.com` and hands the credentials to
//! the task's containers. The role's trust policy must name the service;
//! the session acts as `assumed-role/ROLE/SESSION` with the role's
//! permissions.

use crate::policy::{Caller, Context, Request};
use crate::records::{Millis, RoleRecord, SessionOf};
use crate::sts::{issue, Issued, Session};
use crate::Iam;
use wharf_store::{Compare, Op, StoreError};

/// The service principal ECS task roles trust.
pub const ECS_TASKS: &str = "ecs-tasks.amazonaws.com";

#[derive(Debug, thiserror::Error)]
pub enum ServiceRoleError {
    #[error("the role {0} does not exist")]
    NoSuchRole(String),
    #[error("the trust policy of {role} does not allow {service} to assume it")]
    NotTrusted { role: String, service: String },
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

/// The role `role_arn` if its trust policy lets `service` assume it at
/// `now` when acting for `source_arn` (a trust policy may test
/// `aws:SourceArn` and `aws:SourceAccount`, as AWS's confused-deputy advice
/// has it, the time, the region, and `sts:RoleSessionName` once the
/// session's name is known).
pub fn check(
    iam: &Iam,
    service: &str,
    role_arn_given: &str,
    source_arn: &str,
    session_name: Option<&str>,
    now: Millis,
) -> Result<RoleRecord, ServiceRoleError> {
    let (role, trust) = iam
        .cache
        .role_by_arn(role_arn_given)
        .ok_or_else(|| ServiceRoleError::NoSuchRole(role_arn_given.to_string()))?;
    let mut context = Context::default();
    context.set("aws:SourceAccount", iam.account.clone());
    context.set("aws:SourceArn", source_arn.to_string());
    context.set("aws:PrincipalServiceName", service.to_string());
    context.set("aws:PrincipalType", "Service");
    context.set_time(now);
    if let Some(region) = source_arn.split(':').nth(3).filter(|r| !r.is_empty()) {
        context.set("aws:RequestedRegion", region.to_string());
    }
    if let Some(name) = session_name {
        context.set("sts:RoleSessionName", name.to_string());
    }
    let caller = Caller {
        kind: "Service",
        names: vec![service.to_string()],
        delegated: vec![],
    };
    let verdict = trust.verdict(&Request {
        action: "sts:AssumeRole",
        resource: role_arn_given,
        context: &context,
        caller: Some(&caller),
    });
    // A service has no identity policies of its own: the trust policy
    // must grant to it by name.
    if !verdict.denies.is_empty() || !verdict.allows_directly {
        return Err(ServiceRoleError::NotTrusted {
            role: role_arn_given.to_string(),
            service: service.to_string(),
        });
    }
    Ok(role)
}

/// A role a service assumes for a resource of its own.
#[derive(Debug, Clone, Copy)]
pub struct Assume<'a> {
    pub service: &'a str,
    pub role_arn: &'a str,
    pub session_name: &'a str,
    /// What the service acts for (`aws:SourceArn`): an ECS task's cluster.
    pub source_arn: &'a str,
    pub duration_seconds: u64,
}

/// Assumes the role: a session committed in one transaction with what
/// `with` adds (see [`crate::sts`]'s `issue`). `None` when one of `with`'s
/// compares failed and nothing was written.
pub async fn assume(
    iam: &Iam,
    a: Assume<'_>,
    now: Millis,
    with: impl FnOnce(&str, Millis) -> (Vec<Compare>, Vec<Op>),
) -> Result<Option<Issued>, ServiceRoleError> {
    let role = check(
        iam,
        a.service,
        a.role_arn,
        a.source_arn,
        Some(a.session_name),
        now,
    )?;
    let session = Session {
        of: SessionOf::Role {
            role: role.name.clone(),
            role_id: role.id.clone(),
            session_name: a.session_name.to_string(),
        },
        duration_seconds: a.duration_seconds,
        policy: None,
        policy_arns: vec![],
        tags: vec![],
    };
    Ok(issue(iam, now, session, with).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Caller, Principal};
    use std::sync::Arc;

    const ROLE: &str = "arn:aws:iam::000000000000:role/app";

    async fn iam_with_role(trust: &str) -> Iam {
        let iam = Iam::new(
            Arc::new(wharf_store::MemStore::new()),
            "000000000000".into(),
        );
        iam.cache.ready().await;
        let root = Caller {
            principal: Principal::Root,
            session: None,
        };
        let params = [
            ("RoleName".to_string(), "app".to_string()),
            ("AssumeRolePolicyDocument".to_string(), trust.to_string()),
        ];
        crate::dispatch_iam(&iam, &root, 0, "CreateRole", &params, "r")
            .await
            .expect("CreateRole");
        iam
    }

    fn trust(principal: &str, condition: &str) -> String {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{principal},"Action":"sts:AssumeRole"{condition}}}]}}"#
        )
    }

    #[tokio::test]
    async fn only_a_trust_policy_that_names_the_service_lets_it_assume_the_role() {
        let source = "arn:aws:ecs:eu-west-1:000000000000:cluster/default";
        for (principal, condition, trusted) in [
            (r#"{"Service":"ecs-tasks.amazonaws.com"}"#, "", true),
            (
                r#"{"Service":["ec2.amazonaws.com","ecs-tasks.amazonaws.com"]}"#,
                "",
                true,
            ),
            (r#"{"Service":"ec2.amazonaws.com"}"#, "", false),
            // The account's root is not the service.
            (r#"{"AWS":"arn:aws:iam::000000000000:root"}"#, "", false),
            (
                r#"{"Service":"ecs-tasks.amazonaws.com"}"#,
                r#","Condition":{"StringEquals":{"aws:SourceAccount":"000000000000"},"ArnLike":{"aws:SourceArn":"arn:aws:ecs:eu-west-1:000000000000:*"}}"#,
                true,
            ),
            (
                r#"{"Service":"ecs-tasks.amazonaws.com"}"#,
                r#","Condition":{"StringEquals":{"aws:SourceAccount":"111111111111"}}"#,
                false,
            ),
            (
                r#"{"Service":"ecs-tasks.amazonaws.com"}"#,
                r#","Condition":{"DateLessThan":{"aws:CurrentTime":"1971-01-01T00:00:00Z"}}"#,
                true,
            ),
            (
                r#"{"Service":"ecs-tasks.amazonaws.com"}"#,
                r#","Condition":{"DateGreaterThan":{"aws:CurrentTime":"1971-01-01T00:00:00Z"}}"#,
                false,
            ),
        ] {
            let iam = iam_with_role(&trust(principal, condition)).await;
            let got = check(&iam, ECS_TASKS, ROLE, source, None, 0);
            assert_eq!(got.is_ok(), trusted, "{principal} {condition}: {got:?}");
        }
        // A Deny in the trust policy wins, on the time or the session's name.
        let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"},{"Effect":"Deny","Principal":"*","Action":"sts:AssumeRole","Condition":{"DateGreaterThan":{"aws:CurrentTime":"1971-01-01T00:00:00Z"}}},{"Effect":"Deny","Principal":"*","Action":"sts:AssumeRole","Condition":{"StringLike":{"sts:RoleSessionName":"bad*"}}}]}"#;
        let iam = iam_with_role(deny).await;
        assert!(check(&iam, ECS_TASKS, ROLE, source, Some("good"), 0).is_ok());
        assert!(check(&iam, ECS_TASKS, ROLE, source, None, 1_764_000_000_000).is_err());
        assert!(check(&iam, ECS_TASKS, ROLE, source, Some("bad1"), 0).is_err());
        let iam = iam_with_role(&trust(r#"{"Service":"ecs-tasks.amazonaws.com"}"#, "")).await;
        assert!(matches!(
            check(
                &iam,
                ECS_TASKS,
                "arn:aws:iam::000000000000:role/other",
                source,
                None,
                0
            ),
            Err(ServiceRoleError::NoSuchRole(_))
        ));
        assert!(
            matches!(
                check(
                    &iam,
                    ECS_TASKS,
                    "arn:aws:iam::000000000000:role/team/app",
                    source,
                    None,
                    0
                ),
                Err(ServiceRoleError::NoSuchRole(_)),
            ),
            "the path is part of the role's ARN"
        );
    }

    #[tokio::test]
    async fn a_session_commits_with_the_caller_s_writes_or_not_at_all() {
        let iam = iam_with_role(&trust(r#"{"Service":"ecs-tasks.amazonaws.com"}"#, "")).await;
        let a = Assume {
            service: ECS_TASKS,
            role_arn: ROLE,
            session_name: "0123456789abcdef0123456789abcdef",
            source_arn: "arn:aws:ecs:eu-west-1:000000000000:cluster/default",
            duration_seconds: 3600,
        };
        let refused = assume(&iam, a, 1_000, |_, _| {
            (vec![Compare::Exists("/tasks/x".into())], vec![])
        })
        .await
        .expect("store");
        assert!(refused.is_none(), "a failed compare issues nothing");
        let issued = assume(&iam, a, 1_000, |akid, expires| {
            (
                vec![],
                vec![Op::put("/tasks/x", format!("{akid} {expires}"))],
            )
        })
        .await
        .expect("store")
        .expect("issued");
        assert_eq!(issued.expires, 1_000 + 3_600_000);
        let written = iam.store.get("/tasks/x").await.unwrap().unwrap();
        assert_eq!(
            written.value,
            format!("{} 3601000", issued.access_key_id).into_bytes()
        );
        let c = iam
            .cache
            .credential(&issued.access_key_id, Some(&issued.session_token), 2_000)
            .expect("the session authenticates");
        assert_eq!(
            c.principal.arn("000000000000"),
            "arn:aws:sts::000000000000:assumed-role/app/0123456789abcdef0123456789abcdef"
        );
        assert!(iam
            .cache
            .credential(&issued.access_key_id, Some("wrong"), 2_000)
            .is_err());
    }
}
