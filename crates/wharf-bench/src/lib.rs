//! What the benchmarks share: starting the real `wharf` binary, percentiles,
//! and the report line that prints each figure beside its target.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The development keys `wharf` accepts on loopback.
pub const ACCESS_KEY: &str = "AKIAWHARFDEVELOPMENT";
pub const SECRET_KEY: &str = "wharf-development-secret-key-do-not-use-in-production";

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wharf_bin(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let release = !cfg!(debug_assertions);
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "-q", "-p", "wharf", "--bin", "wharf"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("cannot run cargo to build wharf")?;
    if !status.success() {
        bail!("building wharf failed");
    }
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name("wharf"))
}

/// Starts `wharf ARGS` and waits for its "serving ... on http://ADDR" line.
pub fn start_server(bin: &Path, args: &[&str], log: &Path) -> anyhow::Result<(Proc, String)> {
    let mut child = Command::new(bin)
        .args(args)
        .env("WHARF_LOG", "warn")
        // The benchmarks sign for us-east-1: `up`'s host joins it there.
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut url = None;
    for line in lines.by_ref() {
        let line = line?;
        if let Some(at) = line.find("http://") {
            url = Some(line[at..].trim().to_string());
            break;
        }
    }
    let Some(url) = url else {
        bail!("wharf {} exited before serving", args.join(" "));
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    let mut out = std::fs::File::create(log)?;
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            use std::io::Write;
            let _ = writeln!(out, "{line}");
        }
    });
    Ok((Proc(child), url))
}

/// Resident memory of a process, bytes.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// One report line: figure, target, verdict.
pub fn line(name: &str, figure: String, target: &str, met: Option<bool>) {
    let verdict = match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "-",
    };
    println!("{name:<48} {figure:>22}   target {target:<14} {verdict}");
}

/// A signed client of the API over one keep-alive connection, as the
/// SDKs keep theirs.
pub struct Client {
    addr: String,
    uri: http::Uri,
    creds: wharf_protocol::sigv4::Credentials,
    conn: tokio::sync::Mutex<
        Option<hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>>,
    >,
}

impl Client {
    pub fn new(url: &str, key: &str, secret: &str) -> Client {
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Client {
            uri: format!("http://{addr}/").parse().expect("a server URL"),
            addr,
            creds: wharf_protocol::sigv4::Credentials {
                access_key_id: key.into(),
                secret_access_key: secret.into(),
            },
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// An awsQuery call of `service` (its signing name); the XML answer.
    pub async fn query(&self, service: &str, form: &str) -> anyhow::Result<String> {
        self.send(service, None, form).await
    }

    /// An ECS JSON 1.1 call; the JSON answer.
    pub async fn ecs(&self, op: &str, body: &str) -> anyhow::Result<String> {
        self.send("ecs", Some(op), body).await
    }

    async fn send(&self, service: &str, op: Option<&str>, body: &str) -> anyhow::Result<String> {
        use http_body_util::BodyExt;
        let mut headers = http::HeaderMap::new();
        match op {
            Some(op) => {
                headers.insert(
                    "x-amz-target",
                    http::HeaderValue::from_str(&format!(
                        "AmazonEC2ContainerServiceV20141113.{op}"
                    ))?,
                );
                headers.insert(
                    "content-type",
                    http::HeaderValue::from_static("application/x-amz-json-1.1"),
                );
            }
            None => {
                headers.insert(
                    "content-type",
                    http::HeaderValue::from_static(
                        "application/x-www-form-urlencoded; charset=utf-8",
                    ),
                );
            }
        }
        wharf_protocol::sigv4::sign(
            &http::Method::POST,
            &self.uri,
            &mut headers,
            body.as_bytes(),
            &self.creds,
            "us-east-1",
            service,
            time::OffsetDateTime::now_utc(),
        );
        let mut conn = self.conn.lock().await;
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            let stream = tokio::net::TcpStream::connect(&self.addr).await?;
            let (sender, c) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = c.await;
            });
            *conn = Some(sender);
        }
        let sender = conn.as_mut().expect("connected above");
        sender.ready().await?;
        let mut req = http::Request::post(self.uri.clone()).body(http_body_util::Full::new(
            bytes::Bytes::from(body.to_string()),
        ))?;
        *req.headers_mut() = headers;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let text = String::from_utf8(resp.into_body().collect().await?.to_bytes().to_vec())?;
        if !status.is_success() {
            bail!(
                "{service} {} failed: {status} {text}",
                op.unwrap_or("query")
            );
        }
        Ok(text)
    }
}
