//! `lb-bench`: what a Wharf load balancer listener costs (issue #14).
//!
//! Starts a small HTTP backend in this process, the real `wharf server`
//! with one listener forwarding to it, and, when installed, HAProxy and
//! nginx proxying the same backend. The same load generator (hyper, one
//! keep-alive connection per worker) then measures each path in the same
//! run: closed-loop throughput with many connections, and latency at a fixed
//! request rate (open loop: latency counted from when a request was due,
//! so a stall is not hidden). Every figure is printed beside its target.
//! See docs/benchmarks.md.

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use wharf_bench::{line, ms, pct, start_server, wharf_bin, Proc, ACCESS_KEY, SECRET_KEY};
use wharf_protocol::sigv4::{self, Credentials};

#[derive(Parser, Clone)]
#[command(about = "Load balancer data-plane benchmark")]
struct Args {
    /// Seconds of each measurement.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Connections of the throughput runs.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Requests per second of the latency runs.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// A short run for CI: must finish, need not meet a target.
    #[arg(long)]
    smoke: bool,
    /// The wharf binary (default: built by cargo beside this one).
    #[arg(long, env = "WHARF_BIN")]
    wharf_bin: Option<std::path::PathBuf>,
}

/// The backend: answers every request with a small body, keep-alive, on
/// one thread of its own.
fn backend() -> anyhow::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("backend runtime");
        rt.block_on(async move {
            let listener = TcpListener::from_std(std_listener).expect("backend listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from_static(b"hello from the backend\n"),
                            )))
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    Ok(addr)
}

/// One keep-alive connection to `addr`.
async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
) -> anyhow::Result<()> {
    sender.ready().await?;
    let req = Request::get("/")
        .header("host", addr.to_string())
        .body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    if !status.is_success() {
        bail!("answered {status}");
    }
    Ok(())
}

struct Run {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

/// Closed loop: `connections` workers, each sending its next request as
/// soon as the last is answered, for `secs`.
async fn throughput(addr: SocketAddr, connections: usize, secs: u64) -> anyhow::Result<Run> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..connections {
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(65_536);
            let mut errors = 0usize;
            let mut sender = None;
            while Instant::now() < deadline {
                if sender.is_none() {
                    sender = connect(addr).await.ok();
                    if sender.is_none() {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
                let t = Instant::now();
                match get(sender.as_mut().expect("connected"), addr).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(_) => {
                        errors += 1;
                        sender = None;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    Ok(Run {
        rps: lat.len() as f64 / elapsed,
        p50: pct(&lat, 0.50),
        p99: pct(&lat, 0.99),
        errors,
    })
}

/// Open loop at `rate` requests/s over 16 connections, each request's
/// latency counted from when it was due.
async fn latency(addr: SocketAddr, rate: u64, secs: u64) -> anyhow::Result<Run> {
    const WORKERS: u64 = 16;
    let total = rate.saturating_mul(secs);
    let interval = Duration::from_secs_f64(WORKERS as f64 / rate.max(1) as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        workers.push(tokio::spawn(async move {
            let mut sender = connect(addr).await?;
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let offset = interval.mul_f64(w as f64 / WORKERS as f64);
            let mut k = 0u32;
            loop {
                let due = start + offset + interval * k;
                if (k as u64) * WORKERS + w >= total {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                match get(&mut sender, addr).await {
                    Ok(()) => lat.push(due.elapsed()),
                    Err(_) => {
                        errors += 1;
                        sender = connect(addr).await?;
                    }
                }
                k += 1;
            }
            anyhow::Ok((lat, errors))
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await??;
        lat.extend(l);
        errors += e;
    }
    lat.sort_unstable();
    Ok(Run {
        rps: lat.len() as f64 / secs.max(1) as f64,
        p50: pct(&lat, 0.50),
        p99: pct(&lat, 0.99),
        errors,
    })
}

/// A signed ELBv2 call; its XML answer.
async fn elbv2(api: SocketAddr, params: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Version", "2015-12-01");
    for (k, v) in params {
        form.append_pair(k, v);
    }
    let body = form.finish();
    let uri: http::Uri = format!("http://{api}/").parse()?;
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "content-type",
        http::HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
    );
    sigv4::sign(
        &http::Method::POST,
        &uri,
        &mut headers,
        body.as_bytes(),
        &Credentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
        },
        "us-east-1",
        "elasticloadbalancing",
        time::OffsetDateTime::now_utc(),
    );
    let stream = TcpStream::connect(api).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::post(uri).body(Full::new(Bytes::from(body)))?;
    *req.headers_mut() = headers;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let text = String::from_utf8(resp.into_body().collect().await?.to_bytes().to_vec())?;
    if !status.is_success() {
        bail!("{} failed: {status} {text}", params[0].1);
    }
    Ok(text)
}

fn between(xml: &str, tag: &str) -> anyhow::Result<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open).context("no such element")? + open.len();
    let end = xml[start..]
        .find(&format!("</{tag}>"))
        .context("unclosed")?
        + start;
    Ok(xml[start..end].to_string())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A Wharf listener on `port` forwarding to `backend`, its target healthy.
async fn wharf_listener(api: SocketAddr, port: u16, backend: SocketAddr) -> anyhow::Result<()> {
    let lb = elbv2(api, &[("Action", "CreateLoadBalancer"), ("Name", "bench")]).await?;
    let lb = between(&lb, "LoadBalancerArn")?;
    let backend_port = backend.port().to_string();
    let tg = elbv2(
        api,
        &[
            ("Action", "CreateTargetGroup"),
            ("Name", "bench"),
            ("Protocol", "HTTP"),
            ("Port", &backend_port),
            ("TargetType", "ip"),
            ("HealthCheckIntervalSeconds", "5"),
            ("HealthCheckTimeoutSeconds", "2"),
            ("HealthyThresholdCount", "2"),
        ],
    )
    .await?;
    let tg = between(&tg, "TargetGroupArn")?;
    let port = port.to_string();
    elbv2(
        api,
        &[
            ("Action", "CreateListener"),
            ("LoadBalancerArn", &lb),
            ("Protocol", "HTTP"),
            ("Port", &port),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &tg),
        ],
    )
    .await?;
    elbv2(
        api,
        &[
            ("Action", "RegisterTargets"),
            ("TargetGroupArn", &tg),
            ("Targets.member.1.Id", "127.0.0.1"),
        ],
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let h = elbv2(
            api,
            &[("Action", "DescribeTargetHealth"), ("TargetGroupArn", &tg)],
        )
        .await?;
        if h.contains("<State>healthy</State>") {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("the benchmark's target never turned healthy")
}

/// HAProxy proxying `backend` on `port`, if it is installed.
fn haproxy(dir: &Path, port: u16, backend: SocketAddr) -> anyhow::Result<Option<Proc>> {
    if Command::new("haproxy").arg("-v").output().is_err() {
        return Ok(None);
    }
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  \
             timeout server 60s\n  option http-keep-alive\nfrontend f\n  bind 127.0.0.1:{port}\n  \
             default_backend b\nbackend b\n  http-reuse always\n  server s1 {backend}\n"
        ),
    )?;
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Some(Proc(child)))
}

/// nginx proxying `backend` on `port` with upstream keep-alive, if installed.
fn nginx(dir: &Path, port: u16, backend: SocketAddr) -> anyhow::Result<Option<Nginx>> {
    let bin = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|b| Command::new(b).arg("-v").output().is_ok());
    let Some(bin) = bin else {
        return Ok(None);
    };
    let d = dir.display();
    let cfg = dir.join("nginx.conf");
    std::fs::write(
        &cfg,
        format!(
            "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/nginx.err;\n\
             events {{ worker_connections 8192; }}\nhttp {{\n  access_log off;\n  \
             client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n  \
             uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n  \
             upstream b {{ server {backend}; keepalive 256; }}\n  \
             server {{ listen 127.0.0.1:{port}; keepalive_requests 1000000;\n    \
             location / {{ proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n}}\n"
        ),
    )?;
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Some(Nginx(Proc(child))))
}

/// nginx's master, asked to stop its workers before it is killed (a
/// killed master leaves them serving).
struct Nginx(Proc);

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = self.0 .0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.0 .0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

async fn wait_serving(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut s) = connect(addr).await {
            if get(&mut s, addr).await.is_ok() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("nothing serves {addr}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.secs = 1;
        args.connections = 8;
        args.rate = 200;
    }
    let bin = wharf_bin(args.wharf_bin.clone())?;
    let dir = tempfile::tempdir()?;
    let backend = backend()?;
    let (_server, url) = start_server(
        &bin,
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().join("data").to_str().context("utf-8 path")?,
        ],
        &dir.path().join("server.log"),
    )?;
    let api: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("server address {url}"))?;
    let wharf_port = free_port()?;
    wharf_listener(api, wharf_port, backend).await?;
    let mut paths: Vec<(&str, SocketAddr)> = vec![
        ("direct", backend),
        ("wharf", SocketAddr::from(([127, 0, 0, 1], wharf_port))),
    ];
    let haproxy_port = free_port()?;
    let _haproxy = haproxy(dir.path(), haproxy_port, backend)?;
    if _haproxy.is_some() {
        paths.push(("haproxy", SocketAddr::from(([127, 0, 0, 1], haproxy_port))));
    }
    let nginx_port = free_port()?;
    let _nginx = nginx(dir.path(), nginx_port, backend)?;
    if _nginx.is_some() {
        paths.push(("nginx", SocketAddr::from(([127, 0, 0, 1], nginx_port))));
    }
    for (name, addr) in &paths {
        wait_serving(*addr).await.with_context(|| {
            format!(
                "{name} does not serve (its files are in {})",
                dir.path().display()
            )
        })?;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "lb-bench: backend {backend}, wharf listener :{wharf_port}; {} connections for {} s, then {} req/s for {} s; {cores} cores shared by load generator, proxy and backend",
        args.connections, args.secs, args.rate, args.secs
    );
    if _haproxy.is_none() || _nginx.is_none() {
        println!(
            "  (install haproxy and nginx to compare with them: apt-get install haproxy nginx)"
        );
    }
    let mut results: Vec<(&str, Run, Run)> = Vec::new();
    for (name, addr) in &paths {
        // Warm up connections and pools.
        throughput(*addr, args.connections, 1).await?;
        let t = throughput(*addr, args.connections, args.secs).await?;
        let l = latency(*addr, args.rate, args.secs).await?;
        println!(
            "  {name:<8} {:>9.0} req/s  p50 {}  p99 {}  | at {} req/s: p50 {}  p99 {}  | errors {}",
            t.rps,
            ms(t.p50),
            ms(t.p99),
            args.rate,
            ms(l.p50),
            ms(l.p99),
            t.errors + l.errors
        );
        results.push((name, t, l));
    }
    let find = |n: &str| results.iter().find(|(name, ..)| *name == n);
    let (Some((_, dt, dl)), Some((_, wt, wl))) = (find("direct"), find("wharf")) else {
        bail!("missing a run");
    };
    println!();
    let judge = |met: bool| (!args.smoke).then_some(met);
    let share = wt.rps / dt.rps.max(1.0);
    line(
        "throughput through a listener / direct",
        format!("{:.0}%", share * 100.0),
        ">= 80%",
        judge(share >= 0.8),
    );
    let added = wl.p99.saturating_sub(dl.p99);
    line(
        &format!("added p99 at {} req/s", args.rate),
        ms(added),
        "<= 0.5 ms",
        judge(added <= Duration::from_micros(500)),
    );
    line(
        "requests/s through one listener",
        format!("{:.0}", wt.rps),
        ">= 20,000",
        judge(wt.rps >= 20_000.0),
    );
    for reference in ["haproxy", "nginx"] {
        if let Some((_, rt, rl)) = find(reference) {
            line(
                &format!("wharf / {reference} throughput"),
                format!("{:.0}%", wt.rps / rt.rps.max(1.0) * 100.0),
                "(reference)",
                None,
            );
            line(
                &format!("wharf - {reference} p99 at {} req/s", args.rate),
                format!(
                    "{:+.3} ms",
                    (wl.p99.as_secs_f64() - rl.p99.as_secs_f64()) * 1e3
                ),
                "(reference)",
                None,
            );
        }
    }
    let errors: usize = results.iter().map(|(_, t, l)| t.errors + l.errors).sum();
    line(
        "failed requests (all paths)",
        errors.to_string(),
        "0",
        Some(errors == 0),
    );
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    Ok(())
}
