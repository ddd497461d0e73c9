//! What a request asks IAM: its action (`ecs:RunTask`), the resources it
//! acts on as ARNs (the cluster, service, task, task definition, log group,
//! load balancer, user or role it names; `*` where the service has no
//! resource-level permission for the action, as AWS's Service
//! Authorization Reference lists them), and the request's condition keys
//! (`ecs:cluster`, `aws:RequestTag/…`, `aws:TagKeys`, `aws:RequestedRegion`,
//! the time). Read from the request before it is decoded for its handler,
//! so every operation is judged the same way, supported or not.

use wharf_core::arn::{self, Scope};
use wharf_iam::policy::Context;

/// One check: `action` on each resource, with the context.
#[derive(Debug, Clone)]
pub struct Check {
    pub action: String,
    pub resources: Vec<String>,
    pub context: Context,
    /// The policy of the resource itself (a secret's), judged with the
    /// caller's own.
    pub resource_policy: Option<std::sync::Arc<wharf_iam::policy::Policy>>,
}

/// The IAM users, roles and groups as they are stored: `(kind, name)` →
/// the entity's ARN with its path (None: no such entity).
pub type Entities<'a> = &'a dyn Fn(&str, &str) -> Option<String>;

/// The checks of one request: the operation's own, and `iam:PassRole` for
/// each role a task definition or service hands to ECS. `caller_user` is
/// the calling user's ARN, which IAM operations act on when they name no
/// user.
#[allow(clippy::too_many_arguments)]
pub fn checks(
    prefix: &str,
    op: &str,
    json: Option<&serde_json::Value>,
    query: Option<&[(String, String)]>,
    scope: &Scope,
    now_ms: i64,
    secure: bool,
    entities: Entities,
    caller_user: Option<&str>,
) -> Vec<Check> {
    let mut context = Context::new();
    context.set("aws:RequestedRegion", scope.region.clone());
    context.set_time(now_ms);
    context.set("aws:SecureTransport", secure.to_string());
    let null = serde_json::Value::Null;
    let v = json.unwrap_or(&null);
    let param = |name: &str| -> Option<&str> {
        query?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut resources = Vec::new();
    let mut extra = Vec::new();
    match prefix {
        "ecs" => {
            ecs_resources(op, v, scope, &mut resources, &mut context);
            request_tags(v.get("tags"), "key", "value", &mut context);
            tag_keys(v.get("tagKeys"), &mut context);
            // The roles a request hands to ECS: a task definition's, a
            // RunTask/StartTask override's, a service's (`role`).
            let overrides = v.get("overrides").unwrap_or(&null);
            let roles = [
                v.get("taskRoleArn"),
                v.get("executionRoleArn"),
                overrides.get("taskRoleArn"),
                overrides.get("executionRoleArn"),
                v.get("role"),
            ];
            for role in roles.into_iter().flatten() {
                if let Some(role) = role.as_str() {
                    // A role may be named without its ARN (CreateService's `role`).
                    let arn = if role.starts_with("arn:") {
                        role.to_string()
                    } else {
                        entities("role", role).unwrap_or_else(|| {
                            format!("arn:aws:iam::{}:role/{role}", scope.account)
                        })
                    };
                    extra.push(pass_role(arn, &context));
                }
            }
        }
        "logs" => {
            let group = v.get("logGroupName").and_then(|g| g.as_str());
            let stream = v.get("logStreamName").and_then(|g| g.as_str());
            match (group, stream) {
                (Some(g), Some(s)) => resources.push(format!(
                    "arn:aws:logs:{}:{}:log-group:{g}:log-stream:{s}",
                    scope.region, scope.account
                )),
                (Some(g), None) => resources.push(format!(
                    "arn:aws:logs:{}:{}:log-group:{g}",
                    scope.region, scope.account
                )),
                _ => {}
            }
            if let Some(arn) = v.get("resourceArn").and_then(|g| g.as_str()) {
                resources.push(arn.to_string());
            }
            tag_keys(v.get("tagKeys"), &mut context);
            // UntagLogGroup's `tags` is a list of keys.
            tag_keys(v.get("tags").filter(|t| t.is_array()), &mut context);
            if let Some(serde_json::Value::Object(tags)) = v.get("tags") {
                let mut keys = Vec::new();
                for (k, val) in tags {
                    if let Some(val) = val.as_str() {
                        context.set(&format!("aws:RequestTag/{k}"), val);
                    }
                    keys.push(k.clone());
                }
                context.set_many("aws:TagKeys", keys);
            }
        }
        "elasticloadbalancing" => {
            for member in [
                "LoadBalancerArn",
                "TargetGroupArn",
                "ListenerArn",
                "RuleArn",
            ] {
                if let Some(a) = param(member) {
                    resources.push(a.to_string());
                }
            }
            let mut i = 1;
            while let Some(a) = param(&format!("ResourceArns.member.{i}")) {
                resources.push(a.to_string());
                i += 1;
            }
            query_tags(&param, &mut context);
        }
        "iam" => {
            let account = &scope.account;
            // Judged on the entity as stored (its path, its name's case);
            // one not made yet on the path and name the request gives.
            let path = if op.starts_with("Create") {
                param("Path").unwrap_or("/")
            } else {
                "/"
            };
            let entity = |kind: &str, name: &str| {
                entities(kind, name)
                    .unwrap_or_else(|| format!("arn:aws:iam::{account}:{kind}{path}{name}"))
            };
            match param("UserName") {
                Some(n) => resources.push(entity("user", n)),
                // These act on the caller when they name no user.
                None if matches!(
                    op,
                    "GetUser"
                        | "CreateAccessKey"
                        | "ListAccessKeys"
                        | "UpdateAccessKey"
                        | "DeleteAccessKey"
                ) =>
                {
                    resources.extend(caller_user.map(str::to_string))
                }
                None => {}
            }
            // A rename or a move needs permission on where the user ends up.
            if op == "UpdateUser" && (param("NewUserName").is_some() || param("NewPath").is_some())
            {
                let now = param("UserName").and_then(|n| entities("user", n));
                // The stored path and name, from the ARN `…:user{path}{name}`.
                let (path_now, name_now) = now
                    .as_deref()
                    .and_then(|a| a.split_once(":user"))
                    .and_then(|(_, rest)| rest.rsplit_once('/'))
                    .map(|(p, n)| (format!("{p}/"), n.to_string()))
                    .unwrap_or_else(|| ("/".into(), param("UserName").unwrap_or("").into()));
                let path = param("NewPath").map_or(path_now, str::to_string);
                let name = param("NewUserName").map_or(name_now, str::to_string);
                resources.push(format!("arn:aws:iam::{account}:user{path}{name}"));
            }
            if let Some(n) = param("RoleName") {
                resources.push(entity("role", n));
            }
            if let Some(n) = param("GroupName") {
                resources.push(entity("group", n));
            }
            if let Some(a) = param("PolicyArn") {
                resources.push(a.to_string());
            }
            if op == "CreatePolicy" {
                if let Some(n) = param("PolicyName") {
                    resources.push(format!("arn:aws:iam::{account}:policy{path}{n}"));
                }
            }
            query_tags(&param, &mut context);
        }
        "secretsmanager" => {
            // The secret as given; the server puts its full ARN in its
            // place (see `http::secret_checks`). A secret not made yet is
            // judged on its name and a suffix no pattern but `*` matches.
            match (op, v.get("Name").and_then(|n| n.as_str())) {
                ("CreateSecret", Some(name)) => {
                    resources.push(format!(
                        "arn:aws:secretsmanager:{}:{}:secret:{name}-??????",
                        scope.region, scope.account
                    ));
                    context.set("secretsmanager:Name", name);
                }
                _ => {
                    if let Some(id) = v.get("SecretId").and_then(|n| n.as_str()) {
                        resources.push(id.to_string());
                        context.set("secretsmanager:SecretId", id);
                    }
                }
            }
            request_tags(v.get("Tags"), "Key", "Value", &mut context);
            tag_keys(v.get("TagKeys"), &mut context);
        }
        "ssm" => {
            let ssm_scope = wharf_ssm::Scope {
                region: scope.region.clone(),
                account: scope.account.clone(),
            };
            // Judged on the parameter's ARN (without a `:version` or
            // `:label` selector); a malformed name as given, for the
            // handler to refuse.
            let parameter = |given: &str| {
                wharf_ssm::Ssm::parameter_arn(&ssm_scope, given)
                    .unwrap_or_else(|_| given.to_string())
            };
            for member in ["Name", "Path", "ResourceId"] {
                if let Some(n) = v.get(member).and_then(|n| n.as_str()) {
                    resources.push(parameter(n));
                }
            }
            if let Some(names) = v.get("Names").and_then(|n| n.as_array()) {
                resources.extend(names.iter().filter_map(|n| n.as_str()).map(parameter));
            }
            request_tags(v.get("Tags"), "Key", "Value", &mut context);
            tag_keys(v.get("TagKeys"), &mut context);
        }
        _ => {}
    }
    if resources.is_empty() {
        resources.push("*".into());
    }
    let mut out = vec![Check {
        action: format!("{prefix}:{op}"),
        resources,
        context,
        resource_policy: None,
    }];
    out.extend(extra);
    out
}

/// `iam:PassRole` on a role ECS is handed for its tasks.
pub fn pass_role(role_arn: String, base: &Context) -> Check {
    let mut context = base.clone();
    context.set("iam:PassedToService", "ecs-tasks.amazonaws.com");
    Check {
        action: "iam:PassRole".into(),
        resources: vec![role_arn],
        context,
        resource_policy: None,
    }
}

/// ECS's resources by operation, and `ecs:cluster`.
fn ecs_resources(
    op: &str,
    v: &serde_json::Value,
    scope: &Scope,
    out: &mut Vec<String>,
    ctx: &mut Context,
) {
    let s = |name: &str| v.get(name).and_then(|x| x.as_str());
    let list = |name: &str| -> Vec<&str> {
        v.get(name)
            .and_then(|x| x.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default()
    };
    let cluster = arn::cluster_name(s("cluster")).unwrap_or_else(|_| "default".into());
    let cluster_arn = scope.cluster(&cluster);
    let named_cluster = |given: &str| match arn::cluster_name(Some(given)) {
        Ok(n) => scope.cluster(&n),
        Err(_) => given.to_string(),
    };
    let task = |given: &str| match arn::task_id(given) {
        Ok((c, id)) => scope.task(c.as_deref().unwrap_or(&cluster), &id),
        Err(_) => given.to_string(),
    };
    let service = |given: &str| match arn::service_name(given) {
        Ok((c, n)) => scope.service(c.as_deref().unwrap_or(&cluster), &n),
        Err(_) => given.to_string(),
    };
    let instance = |given: &str| match arn::container_instance_id(given) {
        Ok((c, id)) => scope.container_instance(c.as_deref().unwrap_or(&cluster), &id),
        Err(_) => given.to_string(),
    };
    // A family without a revision stands for every revision.
    let task_definition = |given: &str| match arn::task_definition_ref(given) {
        Ok(r) => match r.revision {
            Some(n) => scope.task_definition(&r.family, n),
            None => format!(
                "arn:aws:ecs:{}:{}:task-definition/{}:*",
                scope.region, scope.account, r.family
            ),
        },
        Err(_) => given.to_string(),
    };
    let scoped = !matches!(
        op,
        "CreateCluster"
            | "ListClusters"
            | "RegisterTaskDefinition"
            | "DeregisterTaskDefinition"
            | "DeleteTaskDefinitions"
            | "DescribeTaskDefinition"
            | "ListTaskDefinitions"
            | "ListTaskDefinitionFamilies"
            | "PutAccountSetting"
            | "PutAccountSettingDefault"
            | "DeleteAccountSetting"
            | "ListAccountSettings"
            | "CreateCapacityProvider"
            | "UpdateCapacityProvider"
            | "DeleteCapacityProvider"
            | "DescribeCapacityProviders"
            | "TagResource"
            | "UntagResource"
            | "ListTagsForResource"
    );
    if scoped {
        ctx.set("ecs:cluster", cluster_arn.clone());
    }
    match op {
        "DescribeClusters" => {
            let given = list("clusters");
            if given.is_empty() {
                out.push(scope.cluster("default"));
            }
            out.extend(given.into_iter().map(named_cluster));
        }
        "DeleteCluster"
        | "UpdateCluster"
        | "UpdateClusterSettings"
        | "PutClusterCapacityProviders"
        | "RegisterContainerInstance"
        | "ListContainerInstances"
        | "ListServices"
        | "DescribeServiceDeployments"
        | "ListServiceDeployments" => out.push(cluster_arn.clone()),
        "RunTask" | "StartTask" => {
            if let Some(t) = s("taskDefinition") {
                out.push(task_definition(t));
            }
        }
        "StopTask" | "ExecuteCommand" | "UpdateTaskProtection" | "GetTaskProtection" => {
            if let Some(t) = s("task") {
                out.push(task(t));
            }
            out.extend(list("tasks").into_iter().map(task));
        }
        "DescribeTasks" => out.extend(list("tasks").into_iter().map(task)),
        "CreateService" => {
            if let Some(n) = s("serviceName") {
                out.push(scope.service(&cluster, n));
            }
        }
        "UpdateService"
        | "DeleteService"
        | "CreateTaskSet"
        | "UpdateTaskSet"
        | "DeleteTaskSet"
        | "UpdateServicePrimaryTaskSet"
        | "DescribeTaskSets" => {
            if let Some(n) = s("service") {
                out.push(service(n));
            }
        }
        "DescribeServices" => out.extend(list("services").into_iter().map(service)),
        "DescribeContainerInstances" | "UpdateContainerInstancesState" => {
            out.extend(list("containerInstances").into_iter().map(instance))
        }
        "DeregisterContainerInstance" => {
            if let Some(i) = s("containerInstance") {
                out.push(instance(i));
            }
        }
        "ListTasks" => {
            if let Some(i) = s("containerInstance") {
                out.push(instance(i));
            }
        }
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            if let Some(a) = s("resourceArn") {
                out.push(a.to_string());
            }
        }
        "UpdateCapacityProvider" | "DeleteCapacityProvider" | "CreateCapacityProvider" => {
            if let Some(n) = s("name").or(s("capacityProvider")) {
                match arn::capacity_provider_name(n) {
                    Ok(n) => out.push(scope.capacity_provider(&n)),
                    Err(_) => out.push(n.to_string()),
                }
            }
        }
        _ => {}
    }
}

/// `aws:RequestTag/KEY` and `aws:TagKeys` from a list of tag objects.
fn request_tags(tags: Option<&serde_json::Value>, key: &str, value: &str, ctx: &mut Context) {
    let Some(tags) = tags.and_then(|t| t.as_array()) else {
        return;
    };
    let mut keys = Vec::new();
    for t in tags {
        if let Some(k) = t.get(key).and_then(|k| k.as_str()) {
            if let Some(v) = t.get(value).and_then(|v| v.as_str()) {
                ctx.set(&format!("aws:RequestTag/{k}"), v);
            }
            keys.push(k.to_string());
        }
    }
    ctx.set_many("aws:TagKeys", keys);
}

/// `aws:TagKeys` from a list of keys (an untag request's).
fn tag_keys(keys: Option<&serde_json::Value>, ctx: &mut Context) {
    let Some(keys) = keys.and_then(|k| k.as_array()) else {
        return;
    };
    let keys: Vec<String> = keys
        .iter()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    ctx.set_many("aws:TagKeys", keys);
}

/// `aws:RequestTag/KEY` and `aws:TagKeys` from awsQuery's `Tags.member.N`
/// (`Key`/`Value`) or `TagKeys.member.N`.
fn query_tags<'a>(param: &dyn Fn(&str) -> Option<&'a str>, ctx: &mut Context) {
    let mut keys = Vec::new();
    for i in 1.. {
        let Some(k) = param(&format!("Tags.member.{i}.Key")) else {
            break;
        };
        if let Some(v) = param(&format!("Tags.member.{i}.Value")) {
            ctx.set(&format!("aws:RequestTag/{k}"), v);
        }
        keys.push(k.to_string());
    }
    for i in 1.. {
        let Some(k) = param(&format!("TagKeys.member.{i}")) else {
            break;
        };
        keys.push(k.to_string());
    }
    if !keys.is_empty() {
        ctx.set_many("aws:TagKeys", keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            region: "eu-west-1".into(),
            account: "123456789012".into(),
        }
    }

    fn ecs(op: &str, body: serde_json::Value) -> Vec<Check> {
        checks(
            "ecs",
            op,
            Some(&body),
            None,
            &scope(),
            1_700_000_000_000,
            false,
            &|_, _| None,
            None,
        )
    }

    #[test]
    fn ecs_requests_name_their_resources() {
        let arn = |r: &str| format!("arn:aws:ecs:eu-west-1:123456789012:{r}");
        let cases = [
            (
                "RunTask",
                serde_json::json!({"cluster": "prod", "taskDefinition": "web:3"}),
                vec![arn("task-definition/web:3")],
            ),
            (
                "RunTask",
                serde_json::json!({"taskDefinition": "web"}),
                vec![arn("task-definition/web:*")],
            ),
            (
                "DescribeServices",
                serde_json::json!({"cluster": "prod", "services": ["a", arn("service/other/b")]}),
                vec![arn("service/prod/a"), arn("service/other/b")],
            ),
            (
                "StopTask",
                serde_json::json!({"cluster": "prod", "task": "0123"}),
                vec![arn("task/prod/0123")],
            ),
            (
                "DescribeClusters",
                serde_json::json!({}),
                vec![arn("cluster/default")],
            ),
            ("ListClusters", serde_json::json!({}), vec!["*".to_string()]),
            (
                "CreateService",
                serde_json::json!({"cluster": "c", "serviceName": "s"}),
                vec![arn("service/c/s")],
            ),
        ];
        for (op, body, want) in cases {
            let got = ecs(op, body);
            assert_eq!(got[0].action, format!("ecs:{op}"));
            assert_eq!(got[0].resources, want, "{op}");
        }
        let run = ecs(
            "RunTask",
            serde_json::json!({"cluster": "prod", "taskDefinition": "web:3"}),
        );
        assert_eq!(
            run[0].context.get("ecs:cluster"),
            Some(&[arn("cluster/prod")][..])
        );
        assert_eq!(
            run[0].context.get("aws:RequestedRegion"),
            Some(&["eu-west-1".to_string()][..])
        );
    }

    #[test]
    fn roles_handed_to_ecs_need_pass_role() {
        let got = ecs(
            "RunTask",
            serde_json::json!({"taskDefinition": "web:1",
                "overrides": {"taskRoleArn": "arn:aws:iam::123456789012:role/app"}}),
        );
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].action, "iam:PassRole");
        assert_eq!(got[1].resources, ["arn:aws:iam::123456789012:role/app"]);
        assert_eq!(
            got[1].context.get("iam:PassedToService"),
            Some(&["ecs-tasks.amazonaws.com".to_string()][..])
        );
        let service = ecs(
            "CreateService",
            serde_json::json!({"serviceName": "s", "role": "ecsServiceRole"}),
        );
        assert_eq!(
            service[1].resources,
            ["arn:aws:iam::123456789012:role/ecsServiceRole"]
        );
        let tags = ecs(
            "TagResource",
            serde_json::json!({"resourceArn": "arn:x",
            "tags": [{"key": "team", "value": "web"}]}),
        );
        assert_eq!(
            tags[0].context.get("aws:RequestTag/team"),
            Some(&["web".to_string()][..])
        );
        assert_eq!(
            tags[0].context.get("aws:TagKeys"),
            Some(&["team".to_string()][..])
        );
    }

    #[test]
    fn iam_requests_are_judged_on_the_stored_entity() {
        let params = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let stored = |kind: &str, name: &str| {
            (kind == "user" && name.eq_ignore_ascii_case("admin"))
                .then(|| "arn:aws:iam::123456789012:user/admins/Admin".to_string())
        };
        let iam = |op: &str, p: &[(&str, &str)], me: Option<&str>| {
            let p = params(p);
            checks("iam", op, None, Some(&p), &scope(), 0, false, &stored, me)
        };
        // The stored path and case, whatever case the request uses.
        let got = iam("DeleteUser", &[("UserName", "ADMIN")], None);
        assert_eq!(
            got[0].resources,
            ["arn:aws:iam::123456789012:user/admins/Admin"]
        );
        // A new user on the path it is made on.
        let got = iam("CreateUser", &[("UserName", "bob"), ("Path", "/ci/")], None);
        assert_eq!(got[0].resources, ["arn:aws:iam::123456789012:user/ci/bob"]);
        // No user named: the caller.
        let me = "arn:aws:iam::123456789012:user/carol";
        let got = iam("CreateAccessKey", &[], Some(me));
        assert_eq!(got[0].resources, [me]);
        let got = iam(
            "TagUser",
            &[
                ("UserName", "bob"),
                ("Tags.member.1.Key", "team"),
                ("Tags.member.1.Value", "web"),
            ],
            None,
        );
        assert_eq!(
            got[0].context.get("aws:RequestTag/team"),
            Some(&["web".to_string()][..])
        );
        assert_eq!(
            got[0].context.get("aws:TagKeys"),
            Some(&["team".to_string()][..])
        );
        let got = iam(
            "UpdateUser",
            &[("UserName", "admin"), ("NewPath", "/x/")],
            None,
        );
        assert_eq!(
            got[0].resources,
            [
                "arn:aws:iam::123456789012:user/admins/Admin",
                "arn:aws:iam::123456789012:user/x/Admin"
            ]
        );
        let got = iam(
            "UpdateUser",
            &[("UserName", "admin"), ("NewUserName", "boss")],
            None,
        );
        assert_eq!(
            got[0].resources[1],
            "arn:aws:iam::123456789012:user/admins/boss"
        );
        let untag = ecs(
            "UntagResource",
            serde_json::json!({"resourceArn": "arn:x", "tagKeys": ["a", "b"]}),
        );
        assert_eq!(
            untag[0].context.get("aws:TagKeys"),
            Some(&["a".to_string(), "b".to_string()][..])
        );
    }
}
