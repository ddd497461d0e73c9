//! The evaluator against the IAM User Guide's rules and examples, as tables.

use super::*;

fn p(doc: &str) -> Policy {
    Policy::parse(doc, false).unwrap_or_else(|e| panic!("{doc}: {e}"))
}

fn ctx(pairs: &[(&str, &[&str])]) -> Context {
    let mut c = Context::new();
    for (k, v) in pairs {
        c.set_many(k, v.iter().map(|s| s.to_string()).collect());
    }
    c
}

fn decide(policies: &[&Policy], action: &str, resource: &str, c: &Context) -> Decision {
    evaluate(
        &Request {
            action,
            resource,
            context: c,
            caller: None,
        },
        &PolicySet {
            identity: policies,
            ..Default::default()
        },
    )
}

const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

#[test]
fn order_default_deny_allow_explicit_deny() {
    let allow = p(ALLOW_ALL);
    let deny_run = p(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"ecs:RunTask","Resource":"*"}}"#,
    );
    let none = Context::new();
    let cases: &[(&[&Policy], &str, Decision)] = &[
        (
            &[],
            "ecs:RunTask",
            Decision::ImplicitDeny(PolicyKind::Identity),
        ),
        (&[&allow], "ecs:RunTask", Decision::Allow),
        (
            &[&allow, &deny_run],
            "ecs:RunTask",
            Decision::ExplicitDeny(PolicyKind::Identity),
        ),
        (&[&deny_run, &allow], "ecs:ListTasks", Decision::Allow),
        (
            &[&deny_run],
            "ecs:ListTasks",
            Decision::ImplicitDeny(PolicyKind::Identity),
        ),
    ];
    for (i, (policies, action, want)) in cases.iter().enumerate() {
        assert_eq!(&decide(policies, action, "*", &none), want, "case {i}");
    }
}

#[test]
fn actions_wildcards_and_case() {
    let cases = [
        ("ecs:*", "ecs:RunTask", true),
        ("ecs:*", "logs:PutLogEvents", false),
        ("ecs:Describe*", "ecs:DescribeServices", true),
        ("ecs:Describe*", "ecs:ListServices", false),
        ("ECS:runtask", "ecs:RunTask", true),
        ("ecs:Run?ask", "ecs:RunTask", true),
        ("ecs:Run?ask", "ecs:RunTTask", false),
        ("*", "iam:CreateUser", true),
        ("ecs:*Task*", "ecs:StopTask", true),
        ("ecs:*Task*", "ecs:ListServices", false),
    ];
    for (pattern, action, want) in cases {
        let doc = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"{pattern}","Resource":"*"}}]}}"#
        );
        let got = decide(&[&p(&doc)], action, "*", &Context::new()) == Decision::Allow;
        assert_eq!(got, want, "{pattern} vs {action}");
    }
}

#[test]
fn resources_are_case_sensitive_patterns() {
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:*",
        "Resource":["arn:aws:ecs:us-east-1:123456789012:cluster/prod-*","arn:aws:ecs:*:123456789012:service/prod-?/*"]}]}"#;
    let pol = p(doc);
    let cases = [
        ("arn:aws:ecs:us-east-1:123456789012:cluster/prod-web", true),
        ("arn:aws:ecs:us-east-1:123456789012:cluster/Prod-web", false),
        ("arn:aws:ecs:us-east-1:123456789012:cluster/dev", false),
        (
            "arn:aws:ecs:eu-west-1:123456789012:service/prod-a/web",
            true,
        ),
        (
            "arn:aws:ecs:eu-west-1:123456789012:service/prod-ab/web",
            false,
        ),
        ("*", false),
    ];
    for (res, want) in cases {
        let got = decide(&[&pol], "ecs:DescribeServices", res, &Context::new()) == Decision::Allow;
        assert_eq!(got, want, "{res}");
    }
}

#[test]
fn not_action_and_not_resource() {
    // "Allow everything except IAM" and "deny everything outside one cluster".
    let pol = p(r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","NotAction":"iam:*","Resource":"*"},
        {"Effect":"Deny","Action":"ecs:*","NotResource":"arn:aws:ecs:us-east-1:1:cluster/ok"}]}"#);
    let c = Context::new();
    assert_eq!(
        decide(
            &[&pol],
            "ecs:DescribeClusters",
            "arn:aws:ecs:us-east-1:1:cluster/ok",
            &c
        ),
        Decision::Allow
    );
    assert_eq!(
        decide(
            &[&pol],
            "ecs:DescribeClusters",
            "arn:aws:ecs:us-east-1:1:cluster/no",
            &c
        ),
        Decision::ExplicitDeny(PolicyKind::Identity)
    );
    assert_eq!(
        decide(&[&pol], "iam:CreateUser", "*", &c),
        Decision::ImplicitDeny(PolicyKind::Identity)
    );
    assert_eq!(
        decide(&[&pol], "logs:PutLogEvents", "*", &c),
        Decision::Allow
    );
}

/// One condition block against request contexts.
fn cond(condition: &str, c: &Context) -> bool {
    let doc = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"ecs:RunTask","Resource":"*","Condition":{condition}}}]}}"#
    );
    decide(&[&p(&doc)], "ecs:RunTask", "*", c) == Decision::Allow
}

#[test]
fn condition_operators() {
    let cluster = ctx(&[("ecs:cluster", &["arn:aws:ecs:us-east-1:1:cluster/prod"])]);
    let tags = ctx(&[
        ("aws:TagKeys", &["env", "team"]),
        ("aws:RequestTag/env", &["prod"]),
    ]);
    let empty = Context::new();
    let cases: &[(&str, &Context, bool)] = &[
        (
            r#"{"StringEquals":{"ecs:cluster":"arn:aws:ecs:us-east-1:1:cluster/prod"}}"#,
            &cluster,
            true,
        ),
        (
            r#"{"StringEquals":{"ECS:Cluster":"arn:aws:ecs:us-east-1:1:cluster/prod"}}"#,
            &cluster,
            true,
        ),
        (
            r#"{"StringEquals":{"ecs:cluster":["x","arn:aws:ecs:us-east-1:1:cluster/prod"]}}"#,
            &cluster,
            true,
        ),
        (
            r#"{"StringEquals":{"ecs:cluster":"arn:aws:ecs:us-east-1:1:cluster/PROD"}}"#,
            &cluster,
            false,
        ),
        (
            r#"{"StringEqualsIgnoreCase":{"ecs:cluster":"ARN:aws:ecs:us-east-1:1:cluster/PROD"}}"#,
            &cluster,
            true,
        ),
        (
            r#"{"StringNotEquals":{"ecs:cluster":"arn:aws:ecs:us-east-1:1:cluster/prod"}}"#,
            &cluster,
            false,
        ),
        // A negated operator holds when the key is missing.
        (r#"{"StringNotEquals":{"ecs:cluster":"x"}}"#, &empty, true),
        (r#"{"StringEquals":{"ecs:cluster":"x"}}"#, &empty, false),
        (
            r#"{"StringEqualsIfExists":{"ecs:cluster":"x"}}"#,
            &empty,
            true,
        ),
        (
            r#"{"StringEqualsIfExists":{"ecs:cluster":"x"}}"#,
            &cluster,
            false,
        ),
        (
            r#"{"StringLike":{"ecs:cluster":"*:cluster/pr*"}}"#,
            &cluster,
            true,
        ),
        (
            r#"{"StringNotLike":{"ecs:cluster":"*:cluster/pr*"}}"#,
            &cluster,
            false,
        ),
        (
            r#"{"ArnLike":{"ecs:cluster":"arn:aws:ecs:*:*:cluster/prod"}}"#,
            &cluster,
            true,
        ),
        // An ARN part's wildcard does not reach across a colon.
        (
            r#"{"ArnLike":{"ecs:cluster":"arn:aws:ecs:*:cluster/prod"}}"#,
            &cluster,
            false,
        ),
        (
            r#"{"ArnEquals":{"ecs:cluster":"arn:aws:ecs:us-east-1:1:cluster/prod"}}"#,
            &cluster,
            true,
        ),
        (
            r#"{"ArnNotLike":{"ecs:cluster":"arn:aws:ecs:*:*:cluster/dev"}}"#,
            &cluster,
            true,
        ),
        // Keys AND, values OR.
        (
            r#"{"StringEquals":{"ecs:cluster":"arn:aws:ecs:us-east-1:1:cluster/prod","aws:username":"bob"}}"#,
            &cluster,
            false,
        ),
        (r#"{"Null":{"ecs:cluster":"true"}}"#, &empty, true),
        (r#"{"Null":{"ecs:cluster":"false"}}"#, &empty, false),
        (r#"{"Null":{"ecs:cluster":"false"}}"#, &cluster, true),
        (
            r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env","team","cost"]}}"#,
            &tags,
            true,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env"]}}"#,
            &tags,
            false,
        ),
        // ForAllValues holds for a missing key; ForAnyValue does not.
        (
            r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env"]}}"#,
            &empty,
            true,
        ),
        (
            r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["team"]}}"#,
            &tags,
            true,
        ),
        (
            r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["team"]}}"#,
            &empty,
            false,
        ),
        (
            r#"{"StringEquals":{"aws:RequestTag/env":"prod"}}"#,
            &tags,
            true,
        ),
        (
            r#"{"StringEquals":{"aws:RequestTag/Env":"prod"}}"#,
            &tags,
            true,
        ),
    ];
    for (i, (c, context, want)) in cases.iter().enumerate() {
        assert_eq!(cond(c, context), *want, "case {i}: {c}");
    }
}

#[test]
fn numeric_date_bool_ip() {
    let c = ctx(&[
        ("aws:MultiFactorAuthAge", &["300"]),
        ("aws:CurrentTime", &["2026-12-03T12:00:00Z"]),
        ("aws:SecureTransport", &["true"]),
        ("aws:SourceIp", &["10.1.2.3"]),
    ]);
    let cases = [
        (
            r#"{"NumericLessThan":{"aws:MultiFactorAuthAge":"3600"}}"#,
            true,
        ),
        (
            r#"{"NumericGreaterThan":{"aws:MultiFactorAuthAge":3600}}"#,
            false,
        ),
        (
            r#"{"NumericEquals":{"aws:MultiFactorAuthAge":"300"}}"#,
            true,
        ),
        (
            r#"{"NumericNotEquals":{"aws:MultiFactorAuthAge":"300"}}"#,
            false,
        ),
        (
            r#"{"DateGreaterThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#,
            true,
        ),
        (
            r#"{"DateLessThan":{"aws:CurrentTime":"2026-01-01"}}"#,
            false,
        ),
        (r#"{"Bool":{"aws:SecureTransport":"true"}}"#, true),
        (r#"{"Bool":{"aws:SecureTransport":false}}"#, false),
        (r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#, true),
        (
            r#"{"IpAddress":{"aws:SourceIp":["192.168.0.0/16","10.1.2.3"]}}"#,
            true,
        ),
        (r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#, false),
    ];
    for (condition, want) in cases {
        assert_eq!(cond(condition, &c), want, "{condition}");
    }
}

#[test]
fn policy_variables() {
    // The User Guide's example: each user may manage only their own keys.
    let pol = p(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:*AccessKey*",
        "Resource":"arn:aws:iam::1:user/${aws:username}"}]}"#,
    );
    let bob = ctx(&[("aws:username", &["bob"])]);
    assert_eq!(
        decide(
            &[&pol],
            "iam:CreateAccessKey",
            "arn:aws:iam::1:user/bob",
            &bob
        ),
        Decision::Allow
    );
    assert_ne!(
        decide(
            &[&pol],
            "iam:CreateAccessKey",
            "arn:aws:iam::1:user/alice",
            &bob
        ),
        Decision::Allow
    );
    // A missing variable matches nothing.
    assert_ne!(
        decide(
            &[&pol],
            "iam:CreateAccessKey",
            "arn:aws:iam::1:user/bob",
            &Context::new()
        ),
        Decision::Allow
    );
    // A value's own `*` is text, not a wildcard.
    let star = ctx(&[("aws:username", &["*"])]);
    assert_ne!(
        decide(
            &[&pol],
            "iam:CreateAccessKey",
            "arn:aws:iam::1:user/bob",
            &star
        ),
        Decision::Allow
    );
    // The 2008 version reads `${…}` literally.
    let old = p(
        r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::${aws:username}"}]}"#,
    );
    assert_eq!(
        decide(
            &[&old],
            "s3:GetObject",
            "arn:aws:s3:::${aws:username}",
            &bob
        ),
        Decision::Allow
    );
    // Tags as variables in conditions.
    let team = p(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*",
        "Condition":{"StringEquals":{"aws:ResourceTag/team":"${aws:PrincipalTag/team}"}}}]}"#,
    );
    let same = ctx(&[
        ("aws:ResourceTag/team", &["web"]),
        ("aws:PrincipalTag/team", &["web"]),
    ]);
    let other = ctx(&[
        ("aws:ResourceTag/team", &["db"]),
        ("aws:PrincipalTag/team", &["web"]),
    ]);
    assert_eq!(
        decide(&[&team], "ecs:StopTask", "*", &same),
        Decision::Allow
    );
    assert_ne!(
        decide(&[&team], "ecs:StopTask", "*", &other),
        Decision::Allow
    );
}

#[test]
fn boundary_and_session_limit_identity() {
    let allow = p(ALLOW_ALL);
    let only_ecs = p(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*"}]}"#,
    );
    let c = Context::new();
    let req = |action| Request {
        action,
        resource: "*",
        context: &c,
        caller: None,
    };
    let ids = [&allow];
    let with_boundary = PolicySet {
        identity: &ids,
        boundary: Some(&only_ecs),
        ..Default::default()
    };
    assert_eq!(
        evaluate(&req("ecs:RunTask"), &with_boundary),
        Decision::Allow
    );
    assert_eq!(
        evaluate(&req("iam:CreateUser"), &with_boundary),
        Decision::ImplicitDeny(PolicyKind::PermissionsBoundary)
    );
    let session = [&only_ecs];
    let with_session = PolicySet {
        identity: &ids,
        session: Some(&session),
        ..Default::default()
    };
    assert_eq!(
        evaluate(&req("logs:PutLogEvents"), &with_session),
        Decision::ImplicitDeny(PolicyKind::Session)
    );
    // A boundary alone grants nothing.
    let none: [&Policy; 0] = [];
    let boundary_only = PolicySet {
        identity: &none,
        boundary: Some(&allow),
        ..Default::default()
    };
    assert_eq!(
        evaluate(&req("ecs:RunTask"), &boundary_only),
        Decision::ImplicitDeny(PolicyKind::Identity)
    );
}

#[test]
fn trust_policies_name_principals() {
    let trust = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"},
            {"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sts:AssumeRole"},
            {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/ci"},"Action":"sts:AssumeRole"}]}"#,
        true,
    )
    .unwrap();
    let c = Context::new();
    let judge = |caller: &Caller| {
        trust.verdict(&Request {
            action: "sts:AssumeRole",
            resource: "arn:aws:iam::123456789012:role/r",
            context: &c,
            caller: Some(caller),
        })
    };
    let ecs = Caller {
        kind: "Service",
        names: vec!["ecs-tasks.amazonaws.com".into()],
        delegated: vec![],
    };
    let v = judge(&ecs);
    assert!(v.allows_directly && !v.allows.is_empty());
    let ci = Caller {
        kind: "AWS",
        names: vec!["arn:aws:iam::123456789012:user/ci".into()],
        delegated: vec!["arn:aws:iam::123456789012:root".into()],
    };
    assert!(judge(&ci).allows_directly);
    // Another user of the account is trusted only through the account:
    // its own policy must also allow sts:AssumeRole.
    let bob = Caller {
        kind: "AWS",
        names: vec!["arn:aws:iam::123456789012:user/bob".into()],
        delegated: vec!["arn:aws:iam::123456789012:root".into()],
    };
    let v = judge(&bob);
    assert!(!v.allows.is_empty() && !v.allows_directly);
    let stranger = Caller {
        kind: "AWS",
        names: vec!["arn:aws:iam::999999999999:user/x".into()],
        delegated: vec!["arn:aws:iam::999999999999:root".into()],
    };
    assert!(judge(&stranger).allows.is_empty());
    // A role's session is named directly only by its own ARN: a grant to
    // its role is delegation (the session's policies still apply).
    let role_trust = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/ci"},"Action":"sts:AssumeRole"}]}"#,
        true,
    )
    .unwrap();
    let session = Caller {
        kind: "AWS",
        names: vec!["arn:aws:sts::123456789012:assumed-role/ci/s1".into()],
        delegated: vec![
            "arn:aws:iam::123456789012:role/ci".into(),
            "arn:aws:iam::123456789012:root".into(),
        ],
    };
    let v = role_trust.verdict(&Request {
        action: "sts:AssumeRole",
        resource: "arn:aws:iam::123456789012:role/r",
        context: &c,
        caller: Some(&session),
    });
    assert!(!v.allows.is_empty() && !v.allows_directly);
    let ec2 = Caller {
        kind: "Service",
        names: vec!["ec2.amazonaws.com".into()],
        delegated: vec![],
    };
    assert!(judge(&ec2).allows.is_empty());
}

#[test]
fn malformed_documents_are_refused() {
    let cases = [
        ("not json", false),
        (r#"{"Version":"2012-10-17"}"#, false),
        (r#"{"Version":"2012-10-17","Statement":[]}"#, false),
        (
            r#"{"Version":"2011-01-01","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            false,
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}"#,
            false,
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Resource":"*"}]}"#,
            false,
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*"}]}"#,
            false,
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"RunTask","Resource":"*"}]}"#,
            false,
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","NotAction":"x:y","Resource":"*"}]}"#,
            false,
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringSortOf":{"a:b":"c"}}}]}"#,
            false,
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"NumericLessThan":{"a:b":"ten"}}}]}"#,
            false,
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Principal":"*"}]}"#,
            false,
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"no spaces","Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            false,
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole"}]}"#,
            true,
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:user/*"},"Action":"sts:AssumeRole"}]}"#,
            true,
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Robot":"x"},"Action":"sts:AssumeRole"}]}"#,
            true,
        ),
    ];
    for (doc, trust) in cases {
        assert!(Policy::parse(doc, trust).is_err(), "accepted: {doc}");
    }
}

#[test]
fn glob_edge_cases() {
    let c = Context::new();
    let m = |pat: &str, s: &str| Pattern::compile(pat, false, true).matches(s, &c);
    assert!(m("*", ""));
    assert!(m("a*b*c", "aXXbYYc"));
    assert!(!m("a*b*c", "aXXbYY"));
    assert!(m("a**", "a"));
    assert!(m("?é", "xé"));
    assert!(!m("?", ""));
    assert!(m("${*}", "*"));
    assert!(!m("${*}", "x"));
    assert!(m("a${?}", "a?"));
}

#[test]
fn star_patterns_agree_with_backtracking() {
    let patterns = [
        "*",
        "a*",
        "*a",
        "a*b",
        "*a*",
        "a*b*c",
        "arn:aws:ecs:*:1:cluster/*",
        "**",
        "ab",
        "",
        "a*a*a",
        "*:*",
        "x*y*",
    ];
    let inputs = [
        "",
        "a",
        "b",
        "ab",
        "aab",
        "abc",
        "aXbYc",
        "aaa",
        "aa",
        "arn:aws:ecs:us-east-1:1:cluster/x",
        "arn:aws:ecs:us-east-1:2:cluster/x",
        "::",
        "xy",
        "xay",
        "yx",
    ];
    let c = Context::new();
    for p in patterns {
        let compiled = Pattern::compile(p, false, true);
        assert!(compiled.stars.is_some(), "{p} should take the fast path");
        for s in inputs {
            assert_eq!(
                compiled.matches(s, &c),
                glob(&compiled.tokens, s.as_bytes(), false),
                "{p} vs {s}"
            );
        }
    }
}

#[test]
fn a_resource_policy_grants_to_whom_it_names() {
    let grant = |principal: &str, effect: &str| {
        let doc = format!(
            r#"{{"Statement":[{{"Effect":"{effect}","Principal":{{"AWS":"{principal}"}},"Action":"secretsmanager:GetSecretValue","Resource":"*"}}]}}"#
        );
        Policy::parse(&doc, true).unwrap()
    };
    let session = Caller {
        kind: "AWS",
        names: vec!["arn:aws:sts::111111111111:assumed-role/r/s".into()],
        delegated: vec![
            "arn:aws:iam::111111111111:role/r".into(),
            "arn:aws:iam::111111111111:root".into(),
        ],
    };
    let c = Context::new();
    let req = Request {
        action: "secretsmanager:GetSecretValue",
        resource: "arn:aws:secretsmanager:r:1:secret:s-abcdef",
        context: &c,
        caller: Some(&session),
    };
    let allow_all = p(r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#);
    let narrow =
        p(r#"{"Statement":[{"Effect":"Allow","Action":"ecs:ListClusters","Resource":"*"}]}"#);
    let judge = |identity: &[&Policy], resource: &Policy, session_policy: Option<&[&Policy]>| {
        evaluate(
            &req,
            &PolicySet {
                identity,
                boundary: None,
                session: session_policy,
                resource: Some(resource),
            },
        )
    };
    // The session itself, or its role: enough on their own (a session
    // policy must still allow a grant to the role).
    for named in [
        "arn:aws:sts::111111111111:assumed-role/r/s",
        "arn:aws:iam::111111111111:role/r",
    ] {
        assert_eq!(
            judge(&[], &grant(named, "Allow"), None),
            Decision::Allow,
            "{named}"
        );
    }
    assert_eq!(
        judge(
            &[],
            &grant("arn:aws:iam::111111111111:role/r", "Allow"),
            Some(&[&narrow])
        ),
        Decision::ImplicitDeny(PolicyKind::Session)
    );
    // The account only delegates: the caller's own policies must allow.
    for account in ["arn:aws:iam::111111111111:root", "111111111111"] {
        assert_eq!(
            judge(&[], &grant(account, "Allow"), None),
            Decision::ImplicitDeny(PolicyKind::Identity),
            "{account}"
        );
        assert_eq!(
            judge(&[&allow_all], &grant(account, "Allow"), None),
            Decision::Allow
        );
        assert_eq!(
            judge(&[&allow_all], &grant(account, "Deny"), None),
            Decision::ExplicitDeny(PolicyKind::Resource)
        );
    }
    // Someone else: nothing.
    assert_eq!(
        judge(
            &[],
            &grant("arn:aws:iam::111111111111:user/other", "Allow"),
            None
        ),
        Decision::ImplicitDeny(PolicyKind::Identity)
    );
}
