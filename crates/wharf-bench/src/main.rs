//! `wharf-bench`: the control plane at scale (issue #4). Starts the real
//! `wharf server` on a temporary data directory and `wharf agent
//! --simulate N` beside it, drives the ECS API over loopback with signed
//! requests from this separate process, and prints every figure beside its
//! target. See docs/benchmarks.md.

use anyhow::{bail, Context};
use clap::Parser;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wharf_agent::client::ControlClient;
use wharf_bench::{line, ms, pct, rss, start_server, wharf_bin, Proc};
use wharf_protocol::sigv4::Credentials;

const ECS: &str = "AmazonEC2ContainerServiceV20141113";
const CLUSTER: &str = "bench";
use wharf_bench::{ACCESS_KEY, SECRET_KEY};

#[derive(Parser, Clone)]
#[command(about = "Wharf control-plane benchmark (C1M-shaped)")]
struct Args {
    /// Simulated hosts.
    #[arg(long, default_value_t = 5000)]
    hosts: usize,
    /// Tasks to place.
    #[arg(long, default_value_t = 1_000_000)]
    tasks: usize,
    /// Services (task families, each its own task group).
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Concurrent RunTask callers while placing.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Stop placing after this many seconds (the figures say so).
    #[arg(long, default_value_t = 600)]
    max_secs: u64,
    /// Request rate of the API-latency phase, per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of each API-latency run.
    #[arg(long, default_value_t = 5)]
    api_secs: u64,
    /// Skip the Docker start-latency comparison.
    #[arg(long)]
    no_docker: bool,
    /// A small run for CI: must finish, need not meet a target.
    #[arg(long)]
    smoke: bool,
    /// The wharf binary (default: built by cargo beside this one).
    #[arg(long, env = "WHARF_BIN")]
    wharf_bin: Option<PathBuf>,
}

struct Bench {
    client: ControlClient,
    args: Args,
}

impl Bench {
    async fn call(&self, op: &str, body: Value) -> anyhow::Result<Value> {
        Ok(self.client.call(&format!("{ECS}.{op}"), &body).await?)
    }

    fn run_task(&self, service: usize, count: usize) -> Value {
        json!({
            "cluster": CLUSTER,
            "taskDefinition": format!("svc-{service}"),
            "count": count,
            "group": format!("service:svc-{service}"),
            "placementConstraints": [
                {"type": "memberOf", "expression": "attribute:ecs.instance-type != sim.d"}
            ],
            "placementStrategy": [
                {"type": "spread", "field": "attribute:ecs.availability-zone"},
                {"type": "spread", "field": "instanceId"}
            ]
        })
    }

    async fn setup(&self) -> anyhow::Result<()> {
        self.call("CreateCluster", json!({"clusterName": CLUSTER}))
            .await?;
        for s in 0..self.args.services {
            self.call(
                "RegisterTaskDefinition",
                json!({
                    "family": format!("svc-{s}"),
                    "containerDefinitions": [{
                        "name": "app", "image": "wharf-test/busybox:latest",
                        "cpu": 10, "memory": 32, "essential": true
                    }]
                }),
            )
            .await?;
        }
        Ok(())
    }

    async fn wait_hosts(&self, n: usize, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let r = self
                .call("DescribeClusters", json!({"clusters": [CLUSTER]}))
                .await?;
            let have = r["clusters"][0]["registeredContainerInstancesCount"]
                .as_u64()
                .unwrap_or(0) as usize;
            if have >= n {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("only {have} of {n} simulated hosts registered");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The server's placement-decision histogram (`GET /metrics`): each
/// bucket's upper bound and cumulative count.
async fn decision_histogram(url: &str) -> anyhow::Result<Vec<(Duration, u64)>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut text = String::new();
    conn.read_to_string(&mut text).await?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("wharf_placement_decision_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, n) = l.split_once("\"} ")?;
            let le = Duration::try_from_secs_f64(le.parse().ok()?).ok()?;
            Some((le, n.parse().ok()?))
        })
        .collect())
}

/// The `p` quantile of what was recorded between two readings of a
/// histogram: the upper bound of the bucket that holds it (at most ~19%
/// above the true value).
fn histogram_pct(before: &[(Duration, u64)], after: &[(Duration, u64)], p: f64) -> Duration {
    let delta: Vec<(Duration, u64)> = after
        .iter()
        .zip(before.iter().map(|b| b.1).chain(std::iter::repeat(0)))
        .map(|(&(le, a), b)| (le, a - b))
        .collect();
    let total = delta.last().map_or(0, |d| d.1);
    let rank = ((total as f64 * p).ceil() as u64).max(1);
    delta
        .iter()
        .find(|d| d.1 >= rank)
        .map_or(Duration::ZERO, |d| d.0)
}

/// What the placement phase measured.
struct Placement {
    placed: usize,
    failed_calls: usize,
    elapsed: Duration,
    call_latency: Vec<Duration>,
    rss_at_100k: Option<u64>,
    arns: Vec<String>,
}

async fn place_all(b: &Arc<Bench>, server_pid: u32) -> Placement {
    let next = Arc::new(AtomicUsize::new(0));
    let placed = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let rss_100k = Arc::new(Mutex::new(None));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let arns = Arc::new(Mutex::new(Vec::new()));
    let total = b.args.tasks;
    let deadline = Instant::now() + Duration::from_secs(b.args.max_secs);
    let start = Instant::now();
    let mut workers = vec![];
    for _ in 0..b.args.concurrency {
        let (b, next, placed, failed) = (b.clone(), next.clone(), placed.clone(), failed.clone());
        let (rss_100k, lat, arns) = (rss_100k.clone(), lat.clone(), arns.clone());
        workers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::from_entropy();
            loop {
                let k = next.fetch_add(10, Ordering::Relaxed);
                if k >= total || Instant::now() > deadline {
                    return;
                }
                let count = (total - k).min(10);
                let service = (k / 10) % b.args.services;
                let t0 = Instant::now();
                match b.call("RunTask", b.run_task(service, count)).await {
                    Ok(r) => {
                        let d = t0.elapsed();
                        let tasks = r["tasks"].as_array().cloned().unwrap_or_default();
                        let before = placed.fetch_add(tasks.len(), Ordering::Relaxed);
                        if before < 100_000 && before + tasks.len() >= 100_000 {
                            *rss_100k.lock().unwrap() = Some(rss(server_pid));
                        }
                        lat.lock().unwrap().push(d);
                        // Keep a sample of ARNs for DescribeTasks.
                        if rng.gen_ratio(1, 20) {
                            if let Some(a) = tasks.first().and_then(|t| t["taskArn"].as_str()) {
                                arns.lock().unwrap().push(a.to_string());
                            }
                        }
                    }
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("RunTask failed: {e}");
                        }
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = start.elapsed();
    let mut call_latency = std::mem::take(&mut *lat.lock().unwrap());
    call_latency.sort();
    let arns = std::mem::take(&mut *arns.lock().unwrap());
    let rss_at_100k = *rss_100k.lock().unwrap();
    Placement {
        placed: placed.load(Ordering::Relaxed),
        failed_calls: failed.load(Ordering::Relaxed),
        elapsed,
        call_latency,
        rss_at_100k,
        arns,
    }
}

/// Open-loop load at `rate`/s for `secs`: latencies, and how many requests
/// were not sent because `MAX_IN_FLIGHT` were still outstanding.
async fn paced<F, Fut>(rate: u64, secs: u64, f: F) -> (Vec<Duration>, usize, usize)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    const MAX_IN_FLIGHT: usize = 256;
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut skipped = 0;
    let mut handles = vec![];
    for _ in 0..rate * secs {
        tick.tick().await;
        if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            skipped += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (fut, in_flight, lat, errors) = (f(), in_flight.clone(), lat.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            let t0 = Instant::now();
            if fut.await {
                lat.lock().unwrap().push(t0.elapsed());
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        }));
    }
    futures::future::join_all(handles).await;
    let mut v = std::mem::take(&mut *lat.lock().unwrap());
    v.sort();
    (v, skipped, errors.load(Ordering::Relaxed))
}

/// RunTask accepted → RUNNING in DescribeTasks on `wharf up`'s Docker
/// agent, against `docker run -d` of the same container; medians of `n`.
async fn docker_ratio(bin: &Path, dir: &Path, n: usize) -> anyhow::Result<(Duration, Duration)> {
    let image = "wharf-test/busybox:latest";
    let present = Command::new("docker")
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        bail!("image {image} is not present (scripts/build-test-image.sh builds it)");
    }
    let data = dir.join("up");
    let (_up, url) = start_server(
        bin,
        &[
            "up",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &dir.join("up.log"),
    )?;
    let client = ControlClient::new(
        &url,
        Credentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
        },
        "us-east-1",
    )?;
    let call = |op: &'static str, body: Value| {
        let client = client.clone();
        async move { client.call::<_, Value>(&format!("{ECS}.{op}"), &body).await }
    };
    call(
        "RegisterTaskDefinition",
        json!({"family": "bench-start", "containerDefinitions": [{
            "name": "app", "image": image, "memory": 32, "essential": true,
            "command": ["sleep", "3600"]}]}),
    )
    .await?;
    // The local agent registers asynchronously.
    let t = Instant::now();
    loop {
        // `default` exists once the agent's registration created it.
        let r = call("ListContainerInstances", json!({}))
            .await
            .unwrap_or_default();
        if r["containerInstanceArns"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            break;
        }
        if t.elapsed() > Duration::from_secs(30) {
            bail!("wharf up's agent did not register");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut wharf = vec![];
    let mut plain = vec![];
    for _ in 0..n {
        let t0 = Instant::now();
        let r = call("RunTask", json!({"taskDefinition": "bench-start"})).await?;
        let arn = r["tasks"][0]["taskArn"]
            .as_str()
            .context("RunTask placed nothing")?
            .to_string();
        loop {
            let d = call("DescribeTasks", json!({"tasks": [arn.clone()]})).await?;
            match d["tasks"][0]["lastStatus"].as_str() {
                Some("RUNNING") => break,
                Some("STOPPED") => bail!("the benchmark task stopped: {d}"),
                _ => {}
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("task not RUNNING after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        wharf.push(t0.elapsed());
        call("StopTask", json!({"task": arn})).await?;

        let t0 = Instant::now();
        let out = Command::new("docker")
            .args(["run", "-d", "--rm", image, "sleep", "3600"])
            .output()?;
        plain.push(t0.elapsed());
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let _ = Command::new("docker")
            .args(["rm", "-f", &id])
            .stdout(Stdio::null())
            .status();
    }
    wharf.sort();
    plain.sort();
    Ok((wharf[n / 2], plain[n / 2]))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.hosts = 50;
        args.tasks = 2_000;
        args.services = 10;
        args.concurrency = 8;
        args.rate = 100;
        args.api_secs = 1;
        args.no_docker = true;
    }
    let bin = wharf_bin(args.wharf_bin.clone())?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("server");
    let (server, url) = start_server(
        &bin,
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &dir.path().join("server.log"),
    )?;
    let pid = server.0.id();
    let client = ControlClient::new(
        &url,
        Credentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
        },
        "us-east-1",
    )?;
    let b = Arc::new(Bench {
        client,
        args: args.clone(),
    });
    println!(
        "wharf-bench: {} simulated hosts, {} tasks, {} services, {} callers; server {url} (redb on {})",
        args.hosts,
        args.tasks,
        args.services,
        args.concurrency,
        data.display()
    );
    b.setup().await?;

    // The simulated hosts join as agents do: with a join token.
    let token: wharf_core::admin_protocol::CreateJoinTokenResponse = b
        .client
        .call(
            "WharfAdmin_v1.CreateJoinToken",
            &wharf_core::admin_protocol::CreateJoinTokenRequest {
                cluster: CLUSTER.into(),
                description: Some("wharf-bench".into()),
                expires_in_seconds: None,
            },
        )
        .await?;
    let t = Instant::now();
    let _agent = Proc(
        Command::new(&bin)
            .args(["agent", "--simulate", &args.hosts.to_string()])
            .args(["--server", &url, "--token", &token.token])
            .arg("--data-dir")
            .arg(dir.path().join("agent"))
            .args(["--region", "us-east-1"])
            .env("WHARF_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log"))?)
            .spawn()?,
    );
    b.wait_hosts(args.hosts, Duration::from_secs(600)).await?;
    // Sessions exist from the simulator's first poll, just after registering.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let registered_in = t.elapsed();
    let rss_base = rss(pid);

    // Placement latency per task: one caller, one task per RunTask, on the
    // empty cluster, then throughput with many callers.
    let mut single = vec![];
    let before = decision_histogram(&url).await?;
    for i in 0..1000 {
        let t0 = Instant::now();
        b.call("RunTask", b.run_task(i % args.services, 1)).await?;
        single.push(t0.elapsed());
    }
    single.sort();
    let single_decided = decision_histogram(&url).await?;
    let p = place_all(&b, pid).await;
    let loaded_decided = decision_histogram(&url).await?;
    let rss_end = rss(pid);
    let rate = p.placed as f64 / p.elapsed.as_secs_f64();
    let done = p.placed >= args.tasks;

    println!();
    println!("{:<48} {:>22}   target", "figure", "measured");
    line(
        "simulated hosts registered",
        format!("{} in {:.1} s", args.hosts, registered_in.as_secs_f64()),
        "",
        None,
    );
    line(
        "placement throughput (placed + committed)",
        format!("{rate:.0} tasks/s"),
        ">= 10000/s",
        Some(rate >= 10_000.0),
    );
    let to_1m = 1_000_000.0 / rate;
    line(
        if args.tasks == 1_000_000 && done {
            "time to place 1,000,000 tasks"
        } else {
            "time to place 1,000,000 tasks (extrapolated)"
        },
        format!("{to_1m:.1} s"),
        "<= 100 s",
        Some(to_1m <= 100.0),
    );
    let decision = |p| histogram_pct(&before, &single_decided, p);
    line(
        "placement decision p50 (server, 1 caller)",
        ms(decision(0.5)),
        "",
        None,
    );
    line(
        "placement decision p99 (server, 1 caller)",
        ms(decision(0.99)),
        "<= 1 ms",
        Some(decision(0.99) <= Duration::from_millis(1)),
    );
    let loaded = |p| histogram_pct(&single_decided, &loaded_decided, p);
    line(
        &format!(
            "placement decision p50 / p99 ({} callers)",
            args.concurrency
        ),
        format!("{} / {}", ms(loaded(0.5)), ms(loaded(0.99))),
        "",
        None,
    );
    line(
        "RunTask(count=1) end to end p50 (1 caller)",
        ms(pct(&single, 0.5)),
        "",
        None,
    );
    line(
        "RunTask(count=1) end to end p99 (1 caller)",
        ms(pct(&single, 0.99)),
        "",
        None,
    );
    line(
        &format!(
            "RunTask(count=10) p50 under load ({} callers)",
            args.concurrency
        ),
        ms(pct(&p.call_latency, 0.5)),
        "",
        None,
    );
    line(
        &format!(
            "RunTask(count=10) p99 under load ({} callers)",
            args.concurrency
        ),
        ms(pct(&p.call_latency, 0.99)),
        "",
        None,
    );
    line(
        "tasks placed / RunTask calls failed",
        format!(
            "{} / {}{}",
            p.placed,
            p.failed_calls,
            if done { "" } else { " (time cap)" }
        ),
        "",
        None,
    );
    let per_task = |rss: u64, n: usize| rss.saturating_sub(rss_base) as f64 / n.max(1) as f64;
    if let Some(r) = p.rss_at_100k {
        let b = per_task(r, 100_000);
        line(
            "server memory per task at 100,000 tasks",
            format!("{b:.0} B"),
            "<= 2048 B",
            Some(b <= 2048.0),
        );
    }
    let b_end = per_task(rss_end, p.placed + single.len());
    line(
        &format!(
            "server memory per task at {} tasks",
            p.placed + single.len()
        ),
        format!("{b_end:.0} B"),
        "<= 2048 B",
        Some(b_end <= 2048.0),
    );
    line(
        "server RSS: base / end",
        format!("{} / {} MiB", rss_base >> 20, rss_end >> 20),
        "",
        None,
    );

    // API latency at a fixed rate from this process.
    let arns = Arc::new(p.arns);
    let describe = {
        let (b, arns) = (b.clone(), arns.clone());
        move || {
            let (b, arns) = (b.clone(), arns.clone());
            async move {
                let i = rand::thread_rng().gen_range(0..arns.len().max(1));
                let Some(arn) = arns.get(i) else { return false };
                b.call("DescribeTasks", json!({"cluster": CLUSTER, "tasks": [arn]}))
                    .await
                    .is_ok()
            }
        }
    };
    let list = {
        let b = b.clone();
        move || {
            let b = b.clone();
            async move {
                b.call("ListTasks", json!({"cluster": CLUSTER, "maxResults": 100}))
                    .await
                    .is_ok()
            }
        }
    };
    let run = {
        let b = b.clone();
        move || {
            let b = b.clone();
            async move {
                let s = rand::thread_rng().gen_range(0..b.args.services);
                b.call("RunTask", b.run_task(s, 1)).await.is_ok()
            }
        }
    };
    let (d, d_skip, d_err) = paced(args.rate, args.api_secs, describe).await;
    let (l, l_skip, l_err) = paced(args.rate, args.api_secs, list).await;
    let (r, r_skip, r_err) = paced(args.rate, args.api_secs, run).await;
    for (name, v, skip, err, target) in [
        ("DescribeTasks", &d, d_skip, d_err, Some(5)),
        ("ListTasks", &l, l_skip, l_err, None),
        ("RunTask", &r, r_skip, r_err, None),
    ] {
        let sent = v.len() + err;
        let achieved = sent as f64 / args.api_secs as f64;
        line(
            &format!(
                "{name} p50 @ {} req/s (achieved {achieved:.0}/s)",
                args.rate
            ),
            ms(pct(v, 0.5)),
            "",
            None,
        );
        line(
            &format!("{name} p99 ({skip} not sent: 256 in flight, {err} errors)"),
            ms(pct(v, 0.99)),
            if target.is_some() { "<= 5 ms" } else { "" },
            target.map(|t| pct(v, 0.99) <= Duration::from_millis(t) && skip == 0),
        );
    }

    // Cluster-wide reads at this scale: their counts come from the
    // placement cache, not from listing every task of the cluster.
    let some = b
        .call(
            "ListContainerInstances",
            json!({"cluster": CLUSTER, "maxResults": 10}),
        )
        .await?;
    for (name, body) in [
        ("DescribeClusters", json!({"clusters": [CLUSTER]})),
        (
            "DescribeContainerInstances",
            json!({"cluster": CLUSTER, "containerInstances": some["containerInstanceArns"]}),
        ),
    ] {
        let mut took = vec![];
        for _ in 0..20 {
            let t = Instant::now();
            b.call(name, body.clone()).await?;
            took.push(t.elapsed());
        }
        took.sort();
        line(
            &format!("{name} p50 / max (20 calls, 1 caller)"),
            format!("{} / {}", ms(pct(&took, 0.5)), ms(pct(&took, 1.0))),
            "",
            None,
        );
    }

    // Check the simulated hosts really ran what was placed.
    let sample: Vec<&String> = arns.iter().take(100).collect();
    if !sample.is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = b
            .call(
                "DescribeTasks",
                json!({"cluster": CLUSTER, "tasks": sample}),
            )
            .await?;
        let running = r["tasks"]
            .as_array()
            .map(|ts| ts.iter().filter(|t| t["lastStatus"] == "RUNNING").count())
            .unwrap_or(0);
        line(
            "sampled tasks RUNNING (reported by sim hosts)",
            format!("{running} of {}", sample.len()),
            "",
            None,
        );
    }
    drop(server);

    if !args.no_docker {
        match docker_ratio(&bin, dir.path(), 5).await {
            Ok((w, d)) => {
                let ratio = w.as_secs_f64() / d.as_secs_f64();
                line("docker: RunTask -> RUNNING (median of 5)", ms(w), "", None);
                line(
                    "docker: plain `docker run -d` (median of 5)",
                    ms(d),
                    "",
                    None,
                );
                line(
                    "docker start overhead",
                    format!("{ratio:.2}x"),
                    "<= 1.2x",
                    Some(ratio <= 1.2),
                );
            }
            Err(e) => println!("docker start latency not measured: {e:#}"),
        }
    }
    Ok(())
}
