//! `iam-bench`: what judging a request by IAM costs (issue #16).
//!
//! Builds, through the IAM API, a user with inline policies, managed
//! policies and groups of the shapes ECS users write (wildcard actions,
//! ARN patterns, conditions, a policy variable), then times the policy
//! cache's decision for requests that are allowed, denied explicitly and
//! denied by default. The baseline measured in the same run is what every
//! request already pays: verifying its SigV4 signature. Then, through the
//! real `wharf server`, the same ECS call signed by the root (never
//! evaluated) and by the user, so the figure is also seen end to end.
//! See docs/benchmarks.md.

use clap::Parser;
use http::{HeaderMap, HeaderValue, Method, Uri};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wharf_bench::{line, start_server, wharf_bin, ACCESS_KEY, SECRET_KEY};
use wharf_iam::policy::{Context, Decision};
use wharf_iam::{Caller, Iam, Principal};
use wharf_protocol::sigv4::{self, Credentials, Expect};

#[derive(Parser)]
#[command(about = "IAM policy evaluation benchmark")]
struct Args {
    /// Evaluations of each kind.
    #[arg(long, default_value_t = 200_000)]
    evaluations: usize,
    /// Requests of each caller through the server.
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    /// A short run for CI: must finish, need not meet a target.
    #[arg(long)]
    smoke: bool,
    /// The wharf binary (default: built by cargo beside this one).
    #[arg(long, env = "WHARF_BIN")]
    wharf_bin: Option<std::path::PathBuf>,
}

const TARGET_US: f64 = 20.0;

fn statement(i: usize) -> String {
    format!(
        r#"{{"Sid":"S{i}","Effect":"Allow","Action":["ecs:Describe*","ecs:List*","logs:Get*","ecs:Update{i}*"],
        "Resource":["arn:aws:ecs:*:000000000000:cluster/team-{i}-*","arn:aws:ecs:*:000000000000:service/team-{i}-*/*"],
        "Condition":{{"StringEquals":{{"aws:RequestedRegion":["us-east-1","eu-west-1"]}},
        "StringLike":{{"ecs:cluster":"arn:aws:ecs:*:*:cluster/team-*"}}}}}}"#
    )
}

fn policy(n: usize, from: usize) -> String {
    let statements: Vec<String> = (from..from + n).map(statement).collect();
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
        statements.join(",")
    )
}

async fn iam_call(iam: &Iam, action: &str, params: &[(&str, String)]) -> anyhow::Result<String> {
    let root = Caller {
        principal: Principal::Root,
        session: None,
    };
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let out = wharf_iam::dispatch_iam(iam, &root, 0, action, &params, "bench")
        .await
        .map_err(|e| anyhow::anyhow!("{action}: {e}"))?;
    Ok(String::from_utf8(out)?)
}

/// The user the benchmark judges: 5 inline policies and 10 managed ones of
/// 3 statements each, in 2 groups with 2 more each, and a Deny.
async fn populate(iam: &Iam) -> anyhow::Result<Principal> {
    iam_call(iam, "CreateUser", &[("UserName", "bench".into())]).await?;
    for i in 0..5 {
        iam_call(
            iam,
            "PutUserPolicy",
            &[
                ("UserName", "bench".into()),
                ("PolicyName", format!("inline{i}")),
                ("PolicyDocument", policy(3, i * 3)),
            ],
        )
        .await?;
    }
    for i in 0..10 {
        iam_call(
            iam,
            "CreatePolicy",
            &[
                ("PolicyName", format!("managed{i}")),
                ("PolicyDocument", policy(3, 100 + i * 3)),
            ],
        )
        .await?;
        iam_call(
            iam,
            "AttachUserPolicy",
            &[
                ("UserName", "bench".into()),
                (
                    "PolicyArn",
                    format!("arn:aws:iam::000000000000:policy/managed{i}"),
                ),
            ],
        )
        .await?;
    }
    for g in 0..2 {
        iam_call(iam, "CreateGroup", &[("GroupName", format!("group{g}"))]).await?;
        iam_call(
            iam,
            "AddUserToGroup",
            &[
                ("GroupName", format!("group{g}")),
                ("UserName", "bench".into()),
            ],
        )
        .await?;
        for i in 0..2 {
            iam_call(
                iam,
                "PutGroupPolicy",
                &[
                    ("GroupName", format!("group{g}")),
                    ("PolicyName", format!("p{i}")),
                    ("PolicyDocument", policy(3, 200 + g * 10 + i * 3)),
                ],
            )
            .await?;
        }
    }
    iam_call(iam, "PutUserPolicy", &[("UserName", "bench".into()), ("PolicyName", "deny".into()),
        ("PolicyDocument", r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ecs:Delete*","Resource":"arn:aws:iam::000000000000:user/${aws:username}"},{"Effect":"Deny","Action":"ecs:DeleteCluster","Resource":"*"}]}"#.into())]).await?;
    let xml = iam_call(iam, "GetUser", &[("UserName", "bench".into())]).await?;
    let id = xml
        .split("<UserId>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or_default();
    Ok(Principal::User {
        name: "bench".into(),
        id: id.into(),
        arn: "arn:aws:iam::000000000000:user/bench".into(),
    })
}

fn per_call(n: usize, elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e6 / n as f64
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let evaluations = if args.smoke { 2_000 } else { args.evaluations };
    let requests = if args.smoke { 50 } else { args.requests };
    let store: wharf_store::DynStore = Arc::new(wharf_store::MemStore::new());
    let iam = Iam::new(store, "000000000000".into());
    iam.cache.ready().await;
    let user = populate(&iam).await?;
    let statements = 5 * 3 + 10 * 3 + 2 * 2 * 3 + 2;
    println!("IAM evaluation: a user with {statements} statements in 18 policies (inline, managed, 2 groups)");

    let mut ctx = Context::new();
    ctx.set("aws:RequestedRegion", "us-east-1");
    ctx.set(
        "ecs:cluster",
        "arn:aws:ecs:us-east-1:000000000000:cluster/team-120-web",
    );
    let cases = [
        (
            "allowed (matched by a managed policy)",
            "ecs:DescribeServices",
            "arn:aws:ecs:us-east-1:000000000000:service/team-120-web/api",
            Decision::Allow,
        ),
        (
            "denied by default (no statement matches)",
            "ecs:RunTask",
            "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1",
            Decision::ImplicitDeny(wharf_iam::policy::PolicyKind::Identity),
        ),
        (
            "denied explicitly",
            "ecs:DeleteCluster",
            "arn:aws:ecs:us-east-1:000000000000:cluster/team-1-x",
            Decision::ExplicitDeny(wharf_iam::policy::PolicyKind::Identity),
        ),
    ];
    let mut worst: f64 = 0.0;
    for (what, action, resource, want) in cases {
        let got = iam.cache.authorize(&user, None, action, resource, &ctx);
        anyhow::ensure!(got == want, "{what}: expected {want:?}, got {got:?}");
        let started = Instant::now();
        for _ in 0..evaluations {
            std::hint::black_box(iam.cache.authorize(&user, None, action, resource, &ctx));
        }
        let us = per_call(evaluations, started.elapsed());
        worst = worst.max(us);
        line(
            &format!("evaluation, {what}"),
            format!("{us:.2} µs"),
            &format!("≤ {TARGET_US} µs"),
            Some(us <= TARGET_US),
        );
    }

    // Baseline: a SigV4 verification of a DescribeServices request.
    let body = br#"{"cluster":"team-120-web","services":["api"]}"#;
    let uri: Uri = "http://127.0.0.1:4566/".parse()?;
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-amz-target",
        HeaderValue::from_static("AmazonEC2ContainerServiceV20141113.DescribeServices"),
    );
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    let now = time::OffsetDateTime::now_utc();
    let creds = Credentials {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
    };
    sigv4::sign(
        &Method::POST,
        &uri,
        &mut headers,
        body,
        &creds,
        "us-east-1",
        "ecs",
        now,
    );
    let expect = Expect {
        service: "ecs",
        signed: &["x-amz-target"],
    };
    let started = Instant::now();
    for _ in 0..evaluations {
        let p = sigv4::presented(&uri, &headers).map_err(|e| anyhow::anyhow!("{e}"))?;
        std::hint::black_box(
            p.verify(
                &Method::POST,
                &uri,
                &headers,
                body,
                SECRET_KEY,
                &expect,
                now,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    let sig = per_call(evaluations, started.elapsed());
    line(
        "baseline: SigV4 verification of the same request",
        format!("{sig:.2} µs"),
        "(every request pays it)",
        None,
    );
    line(
        "slowest evaluation ÷ SigV4 verification",
        format!("{:.2}×", worst / sig),
        "",
        None,
    );

    end_to_end(&args, requests).await
}

/// DescribeClusters through the real server, as the root and as an IAM user
/// allowed it by a policy: the mean latency of each, one request at a time.
async fn end_to_end(args: &Args, requests: usize) -> anyhow::Result<()> {
    let bin = wharf_bin(args.wharf_bin.clone())?;
    let dir = tempfile::tempdir()?;
    let (_server, url) = start_server(
        &bin,
        &["server", "--listen", "127.0.0.1:0", "--ephemeral"],
        &dir.path().join("server.log"),
    )?;
    let client = wharf_bench::Client::new(&url, ACCESS_KEY, SECRET_KEY);
    let form = |action: &str, params: &[(&str, &str)]| {
        let mut f = form_urlencoded::Serializer::new(String::new());
        f.append_pair("Action", action)
            .append_pair("Version", "2010-05-08");
        for (k, v) in params {
            f.append_pair(k, v);
        }
        f.finish()
    };
    client
        .query("iam", &form("CreateUser", &[("UserName", "bench")]))
        .await?;
    client
        .query(
            "iam",
            &form(
                "PutUserPolicy",
                &[
                    ("UserName", "bench"),
                    ("PolicyName", "p"),
                    ("PolicyDocument", &policy(3, 0)),
                ],
            ),
        )
        .await?;
    client
        .query(
            "iam",
            &form(
                "AttachUserPolicy",
                &[
                    ("UserName", "bench"),
                    ("PolicyArn", "arn:aws:iam::aws:policy/ReadOnlyAccess"),
                ],
            ),
        )
        .await?;
    let key = client
        .query("iam", &form("CreateAccessKey", &[("UserName", "bench")]))
        .await?;
    let pick = |tag: &str| {
        key.split(&format!("<{tag}>"))
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or_default()
            .to_string()
    };
    let user = wharf_bench::Client::new(&url, &pick("AccessKeyId"), &pick("SecretAccessKey"));
    let call = r#"{"clusters":["default"]}"#;
    let mut means = Vec::new();
    for (who, c) in [
        ("root (not evaluated)", &client),
        ("IAM user (evaluated)", &user),
    ] {
        c.ecs("DescribeClusters", call).await?;
        let started = Instant::now();
        for _ in 0..requests {
            c.ecs("DescribeClusters", call).await?;
        }
        let us = per_call(requests, started.elapsed());
        means.push(us);
        line(
            &format!("DescribeClusters through the server, {who}"),
            format!("{us:.0} µs"),
            "",
            None,
        );
    }
    let added = means[1] - means[0];
    line(
        "what evaluation adds to a request end to end",
        format!("{added:.0} µs"),
        &format!("≤ {TARGET_US} µs beyond noise (±{:.0} µs)", means[0] * 0.1),
        None,
    );
    Ok(())
}
