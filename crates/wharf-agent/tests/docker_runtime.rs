//! Integration tests of `DockerRuntime` against the real local Docker daemon.
//!
//! They use the locally built image `wharf-test/busybox:latest`
//! (scripts/build-test-image.sh, run automatically) and never touch a registry.
//! Every container carries the labels `wharf-test=1` and `wharf-test-id=<unique>`;
//! a guard force-removes them even when a test fails.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use wharf_agent::runtime::{
    ContainerSpec, ContainerState, DockerRuntime, Health, HealthCheck, Mount, MountSource,
    PortBinding, Protocol, Runtime, RuntimeError, RuntimeEvent, TASK_ARN_LABEL,
};

const IMAGE: &str = "wharf-test/busybox:latest";

/// Build the test image once per test binary.
fn ensure_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-image.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "build-test-image.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{:x}{:08x}{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Per-test context: unique id, and cleanup of everything labelled with it.
struct TestCtx {
    id: String,
    rt: DockerRuntime,
    volumes: Vec<String>,
}

impl TestCtx {
    async fn new() -> Self {
        ensure_image();
        let rt = DockerRuntime::connect()
            .await
            .expect("docker daemon must be reachable for these tests");
        TestCtx {
            id: unique(),
            rt,
            volumes: Vec::new(),
        }
    }

    /// A managed spec with a unique name and the cleanup labels.
    fn spec(&self, suffix: &str, command: &[&str]) -> ContainerSpec {
        let mut labels = HashMap::new();
        labels.insert("wharf-test".to_string(), "1".to_string());
        labels.insert("wharf-test-id".to_string(), self.id.clone());
        labels.insert(
            TASK_ARN_LABEL.to_string(),
            format!("arn:aws:ecs:local:000000000000:task/test/{}", self.id),
        );
        ContainerSpec {
            name: format!("wharf-test-{}-{suffix}", self.id),
            image: IMAGE.to_string(),
            command: Some(command.iter().map(|s| s.to_string()).collect()),
            labels,
            ..Default::default()
        }
    }
}

impl Drop for TestCtx {
    fn drop(&mut self) {
        // Synchronous so that it also runs while unwinding from a panic.
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=wharf-test-id={}", self.id),
            ])
            .output();
        if let Ok(out) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-fv"])
                    .args(&ids)
                    .output();
            }
        }
        for v in &self.volumes {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", v])
                .output();
        }
    }
}

/// Wait for an event matching `pred` on `stream`, up to `timeout`.
async fn wait_event(
    stream: &mut futures::stream::BoxStream<'static, Result<RuntimeEvent, RuntimeError>>,
    timeout: Duration,
    mut pred: impl FnMut(&RuntimeEvent) -> bool,
) -> RuntimeEvent {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => panic!("timed out waiting for event"),
            Ok(None) => panic!("event stream ended"),
            Ok(Some(Err(e))) => panic!("event stream error: {e}"),
            Ok(Some(Ok(ev))) if pred(&ev) => return ev,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Poll `inspect_container` until `pred` holds, up to `timeout`.
async fn wait_status(
    rt: &DockerRuntime,
    id: &str,
    timeout: Duration,
    pred: impl Fn(&wharf_agent::runtime::ContainerStatus) -> bool,
) -> wharf_agent::runtime::ContainerStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let st = rt
            .inspect_container(id)
            .await
            .unwrap()
            .expect("container exists");
        if pred(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "timed out; last status: {st:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> u16 {
    // Ask the kernel for a free port, then release it for Docker to bind.
    let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    l.local_addr().unwrap().port()
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf)
}

#[tokio::test]
async fn connect_and_info() {
    let ctx = TestCtx::new().await;
    let info = ctx.rt.info().await.unwrap();
    println!(
        "host info: {info:?}, negotiated api {}",
        ctx.rt.api_version()
    );
    assert!(info.cpus >= 1);
    assert!(info.memory_bytes > 0);
    assert_eq!(info.os_type, "linux");
    assert!(!info.architecture.is_empty());
    assert!(!info.server_version.is_empty());
    assert!(!info.api_version.is_empty());
    assert!(ctx.rt.image_present(IMAGE).await.unwrap());
    assert!(ctx.rt.image_present("wharf-test/busybox:2").await.unwrap());
    assert!(!ctx
        .rt
        .image_present("wharf-test/does-not-exist:latest")
        .await
        .unwrap());
}

#[tokio::test]
async fn connect_to_missing_socket_is_unavailable() {
    let err = DockerRuntime::connect_to("unix:///nonexistent/docker.sock")
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    println!("{err}");
}

#[tokio::test]
async fn run_with_env_command_labels_and_ports() {
    let ctx = TestCtx::new().await;
    let static_port = free_port();
    let mut spec = ctx.spec(
        "web",
        &[
            "sh",
            "-c",
            "echo \"$GREETING\" > /tmp/index.html && exec httpd -f -p 8080 -h /tmp",
        ],
    );
    spec.env = vec![("GREETING".into(), "hello from wharf".into())];
    spec.port_bindings = vec![
        PortBinding {
            container_port: 8080,
            host_port: 0,
            protocol: Protocol::Tcp,
            host_ip: None,
        },
        PortBinding {
            container_port: 8080,
            host_port: static_port,
            protocol: Protocol::Tcp,
            host_ip: Some("127.0.0.1".into()),
        },
    ];
    let id = ctx.rt.create_container(&spec).await.unwrap();
    let created = ctx.rt.inspect_container(&id).await.unwrap().unwrap();
    assert_eq!(created.state, ContainerState::Created);
    assert_eq!(created.name, spec.name);
    assert_eq!(created.image, IMAGE);
    assert_eq!(created.exit_code, None);

    // Duplicate names conflict.
    let dup = ctx.rt.create_container(&spec).await.unwrap_err();
    assert!(matches!(dup, RuntimeError::Conflict(_)), "{dup:?}");

    ctx.rt.start_container(&id).await.unwrap();
    let st = ctx.rt.inspect_container(&id).await.unwrap().unwrap();
    println!("status: {st:#?}");
    assert_eq!(st.state, ContainerState::Running);
    assert!(st.started_at.is_some());
    assert_eq!(st.health, None);
    assert_eq!(st.labels.get("wharf-test-id"), Some(&ctx.id));
    assert!(st.task_arn().unwrap().contains(&ctx.id));

    let dynamic = st
        .ports
        .iter()
        .find(|p| p.container_port == 8080 && p.host_port != static_port)
        .expect("dynamic port bound");
    assert!(dynamic.host_port > 0);
    assert_eq!(dynamic.protocol, Protocol::Tcp);
    let fixed = st
        .ports
        .iter()
        .find(|p| p.host_port == static_port)
        .expect("static port bound");
    assert_eq!(fixed.container_port, 8080);
    assert_eq!(fixed.host_ip.as_deref(), Some("127.0.0.1"));

    // The env var reached the command, and both ports are really published.
    for port in [dynamic.host_port, static_port] {
        let deadline = Instant::now() + Duration::from_secs(10);
        let body = loop {
            match http_get(port) {
                Ok(b) if b.contains("hello") => break b,
                other => {
                    assert!(Instant::now() < deadline, "GET :{port} failed: {other:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        assert!(body.contains("hello from wharf"), "{body}");
    }

    // Start on a running container is fine.
    ctx.rt.start_container(&id).await.unwrap();

    ctx.rt
        .stop_container(&id, Duration::from_secs(5))
        .await
        .unwrap();
    let st = ctx.rt.inspect_container(&id).await.unwrap().unwrap();
    assert_eq!(st.state, ContainerState::Exited);
    assert!(st.exit_code.is_some());
    assert!(st.finished_at.is_some());
    assert!(st.ports.is_empty());
    // Stopping again is Ok.
    ctx.rt
        .stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();

    ctx.rt.remove_container(&id).await.unwrap();
    assert_eq!(ctx.rt.inspect_container(&id).await.unwrap(), None);
    // Absent is Ok for stop and remove.
    ctx.rt.remove_container(&id).await.unwrap();
    ctx.rt
        .stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(ctx
        .rt
        .start_container(&id)
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn events_report_start_and_exit_code() {
    let ctx = TestCtx::new().await;
    // Subscribe before creating: events after this call must not be lost even
    // though the stream is first polled later.
    let mut events = ctx.rt.events();
    let spec = ctx.spec("exit3", &["sh", "-c", "exit 3"]);
    let id = ctx.rt.create_container(&spec).await.unwrap();
    let t0 = Instant::now();
    ctx.rt.start_container(&id).await.unwrap();

    let started = wait_event(&mut events, Duration::from_secs(5), |e| e.id() == id).await;
    match &started {
        RuntimeEvent::Started { labels, .. } => {
            assert_eq!(labels.get("wharf-test-id"), Some(&ctx.id));
            assert!(labels.contains_key(TASK_ARN_LABEL));
            assert!(!labels.contains_key("image") && !labels.contains_key("name"));
        }
        other => panic!("expected Started, got {other:?}"),
    }
    let died = wait_event(&mut events, Duration::from_secs(5), |e| e.id() == id).await;
    match died {
        RuntimeEvent::Died {
            exit_code, labels, ..
        } => {
            assert_eq!(exit_code, Some(3));
            assert_eq!(labels.get("wharf-test-id"), Some(&ctx.id));
        }
        other => panic!("expected Died, got {other:?}"),
    }
    println!("start -> die observed in {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(5));

    let st = ctx.rt.inspect_container(&id).await.unwrap().unwrap();
    assert_eq!(st.state, ContainerState::Exited);
    assert_eq!(st.exit_code, Some(3));
    assert!(!st.oom_killed);

    ctx.rt.remove_container(&id).await.unwrap();
    let destroyed = wait_event(&mut events, Duration::from_secs(5), |e| e.id() == id).await;
    assert!(
        matches!(destroyed, RuntimeEvent::Destroyed { .. }),
        "{destroyed:?}"
    );
}

#[tokio::test]
async fn unmanaged_containers_are_not_reported() {
    let ctx = TestCtx::new().await;
    let mut events = ctx.rt.events();
    let mut unmanaged = ctx.spec("unmanaged", &["true"]);
    unmanaged.labels.remove(TASK_ARN_LABEL);
    let uid = ctx.rt.create_container(&unmanaged).await.unwrap();
    ctx.rt.start_container(&uid).await.unwrap();
    let managed = ctx.spec("managed", &["true"]);
    let mid = ctx.rt.create_container(&managed).await.unwrap();
    ctx.rt.start_container(&mid).await.unwrap();
    // The first event about either of ours must be the managed one.
    let ev = wait_event(&mut events, Duration::from_secs(5), |e| {
        e.id() == uid || e.id() == mid
    })
    .await;
    assert_eq!(ev.id(), mid);
    let listed: Vec<String> = ctx
        .rt
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert!(listed.contains(&mid));
    assert!(!listed.contains(&uid));
}

#[tokio::test]
async fn stop_kills_container_ignoring_sigterm() {
    let ctx = TestCtx::new().await;
    let spec = ctx.spec("stubborn", &["sh", "-c", "trap \"\" TERM; sleep 60"]);
    let id = ctx.rt.create_container(&spec).await.unwrap();
    ctx.rt.start_container(&id).await.unwrap();
    wait_status(&ctx.rt, &id, Duration::from_secs(5), |s| {
        s.state == ContainerState::Running
    })
    .await;
    let t0 = Instant::now();
    ctx.rt
        .stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    let took = t0.elapsed();
    println!("stop with 1s timeout took {took:?}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let st = ctx.rt.inspect_container(&id).await.unwrap().unwrap();
    assert_eq!(st.state, ContainerState::Exited);
    assert_eq!(st.exit_code, Some(137), "SIGKILLed");
}

#[tokio::test]
async fn stop_returns_the_exit_code_of_a_container_removed_as_it_exits() {
    let ctx = TestCtx::new().await;
    let spec = ctx.spec("reaped", &["sh", "-c", "trap \"\" TERM; sleep 60"]);
    let id = ctx.rt.create_container(&spec).await.unwrap();
    ctx.rt.start_container(&id).await.unwrap();
    wait_status(&ctx.rt, &id, Duration::from_secs(5), |s| {
        s.state == ContainerState::Running
    })
    .await;
    // Someone else (`docker rm -f`, another agent taking it for an orphan)
    // stops it too and removes it the moment it has exited.
    let other = DockerRuntime::connect().await.unwrap();
    let reaper = async {
        other
            .stop_container(&id, Duration::from_secs(1))
            .await
            .unwrap();
        other.remove_container(&id).await.unwrap();
    };
    let (ours, ()) = tokio::join!(ctx.rt.stop_container(&id, Duration::from_secs(1)), reaper);
    assert_eq!(ours.unwrap(), Some(137), "SIGKILLed, whoever removed it");
    assert_eq!(ctx.rt.inspect_container(&id).await.unwrap(), None);
    assert_eq!(
        ctx.rt
            .stop_container(&id, Duration::from_secs(1))
            .await
            .unwrap(),
        None,
        "gone"
    );
}

#[tokio::test]
async fn health_checks_report_healthy_and_unhealthy() {
    let ctx = TestCtx::new().await;
    let mut events = ctx.rt.events();
    let hc = |cmd: &str| HealthCheck {
        command: vec!["CMD-SHELL".into(), cmd.into()],
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        retries: 1,
        start_period: Duration::ZERO,
    };
    let mut good = ctx.spec("healthy", &["sleep", "60"]);
    good.health_check = Some(hc("test -d /tmp"));
    let mut bad = ctx.spec("unhealthy", &["sleep", "60"]);
    bad.health_check = Some(hc("exit 1"));
    let good_id = ctx.rt.create_container(&good).await.unwrap();
    let bad_id = ctx.rt.create_container(&bad).await.unwrap();
    ctx.rt.start_container(&good_id).await.unwrap();
    ctx.rt.start_container(&bad_id).await.unwrap();

    let st = ctx.rt.inspect_container(&good_id).await.unwrap().unwrap();
    assert!(
        matches!(st.health, Some(Health::Starting) | Some(Health::Healthy)),
        "{st:?}"
    );

    let good_st = wait_status(&ctx.rt, &good_id, Duration::from_secs(15), |s| {
        s.health == Some(Health::Healthy)
    })
    .await;
    let bad_st = wait_status(&ctx.rt, &bad_id, Duration::from_secs(15), |s| {
        s.health == Some(Health::Unhealthy)
    })
    .await;
    assert_eq!(good_st.state, ContainerState::Running);
    assert_eq!(bad_st.state, ContainerState::Running);

    // The event stream reports both transitions too.
    let mut seen_good = false;
    let mut seen_bad = false;
    while !(seen_good && seen_bad) {
        let ev = wait_event(&mut events, Duration::from_secs(10), |e| {
            matches!(e, RuntimeEvent::Health { .. })
        })
        .await;
        if let RuntimeEvent::Health { id, health, .. } = ev {
            if id == good_id && health == Health::Healthy {
                seen_good = true;
            }
            if id == bad_id && health == Health::Unhealthy {
                seen_bad = true;
            }
        }
    }
}

#[tokio::test]
async fn pull_of_unknown_image_fails_fast() {
    let ctx = TestCtx::new().await;
    let res = tokio::time::timeout(
        Duration::from_secs(60),
        ctx.rt.pull_image("wharf-test/does-not-exist:latest", None),
    )
    .await
    .expect("pull must fail, not hang");
    match res {
        Err(RuntimeError::ImagePull(msg)) => {
            println!("pull error: {msg}");
            assert!(!msg.is_empty());
        }
        other => panic!("expected ImagePull error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_with_missing_image_is_not_found() {
    let ctx = TestCtx::new().await;
    let mut spec = ctx.spec("noimage", &["true"]);
    spec.image = "wharf-test/does-not-exist:latest".into();
    let err = ctx.rt.create_container(&spec).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn list_managed_finds_labelled_containers() {
    let ctx = TestCtx::new().await;
    let a = ctx
        .rt
        .create_container(&ctx.spec("a", &["sleep", "30"]))
        .await
        .unwrap();
    let b = ctx
        .rt
        .create_container(&ctx.spec("b", &["true"]))
        .await
        .unwrap();
    ctx.rt.start_container(&a).await.unwrap();
    let all = ctx.rt.list_managed().await.unwrap();
    let ours: Vec<_> = all
        .iter()
        .filter(|c| c.labels.get("wharf-test-id") == Some(&ctx.id))
        .collect();
    assert_eq!(ours.len(), 2, "{ours:#?}");
    let sa = ours.iter().find(|c| c.id == a).unwrap();
    let sb = ours.iter().find(|c| c.id == b).unwrap();
    assert_eq!(sa.state, ContainerState::Running);
    assert_eq!(sb.state, ContainerState::Created);
    assert!(all.iter().all(|c| c.task_arn().is_some()));
}

#[tokio::test]
async fn resources_volumes_and_host_config_are_applied() {
    let mut ctx = TestCtx::new().await;
    let vol = format!("wharf-test-vol-{}", ctx.id);
    ctx.volumes.push(vol.clone());
    let mut vlabels = HashMap::new();
    vlabels.insert("wharf-test".to_string(), "1".to_string());
    // driverOpts reach Docker: a local tmpfs volume.
    let opts = HashMap::from([
        ("type".to_string(), "tmpfs".to_string()),
        ("device".to_string(), "tmpfs".to_string()),
        ("o".to_string(), "size=4m".to_string()),
    ]);
    ctx.rt
        .ensure_volume(&vol, None, &opts, &vlabels)
        .await
        .unwrap();
    ctx.rt
        .ensure_volume(&vol, Some("local"), &opts, &vlabels)
        .await
        .unwrap();
    let made = ctx.rt.client().inspect_volume(&vol).await.unwrap();
    assert_eq!(made.options, opts);

    let mut spec = ctx.spec(
        "res",
        &["sh", "-c", "echo data > /data/f && cat /data/f && id -u"],
    );
    spec.memory_bytes = Some(64 << 20);
    spec.memory_reservation_bytes = Some(32 << 20);
    spec.cpu_shares = Some(1);
    spec.stop_timeout = Some(Duration::from_secs(7));
    spec.binds = vec![Mount {
        source: MountSource::Volume(vol.clone()),
        container_path: "/data".into(),
        read_only: false,
    }];
    spec.extra_hosts = vec!["wharf.internal:10.1.2.3".into()];
    spec.hostname = Some("wharf-host".into());
    spec.working_dir = Some("/tmp".into());
    spec.user = Some("65534".into());
    spec.readonly_rootfs = true;
    let id = ctx.rt.create_container(&spec).await.unwrap();

    let raw = ctx.rt.client().inspect_container(&id, None).await.unwrap();
    let hc = raw.host_config.unwrap();
    assert_eq!(hc.memory, Some(64 << 20));
    assert_eq!(hc.memory_reservation, Some(32 << 20));
    assert_eq!(hc.cpu_shares, Some(2), "ECS minimum of 2 shares");
    assert_eq!(hc.network_mode.as_deref(), Some("bridge"));
    assert_eq!(hc.readonly_rootfs, Some(true));
    assert_eq!(
        hc.extra_hosts,
        Some(vec!["wharf.internal:10.1.2.3".to_string()])
    );
    let cfg = raw.config.unwrap();
    assert_eq!(cfg.stop_timeout, Some(7));
    assert_eq!(cfg.hostname.as_deref(), Some("wharf-host"));
    assert_eq!(cfg.working_dir.as_deref(), Some("/tmp"));
    assert_eq!(cfg.user.as_deref(), Some("65534"));

    // Also check through the docker CLI, which is what an operator would see.
    let out = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.MemoryReservation}}",
            &id,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{} {}", 64u64 << 20, 32u64 << 20)
    );

    // Named volume is writable by... root only, so run this one as root.
    let mut spec_root = spec.clone();
    spec_root.name = format!("{}-root", spec.name);
    spec_root.user = None;
    let rid = ctx.rt.create_container(&spec_root).await.unwrap();
    ctx.rt.start_container(&rid).await.unwrap();
    let st = wait_status(&ctx.rt, &rid, Duration::from_secs(10), |s| {
        s.state == ContainerState::Exited
    })
    .await;
    assert_eq!(st.exit_code, Some(0), "{st:?}");
    let logs = Command::new("docker")
        .args(["logs", &rid])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "data\n0\n");
}

#[tokio::test]
async fn failed_start_is_reported() {
    let ctx = TestCtx::new().await;
    let spec = ctx.spec("badcmd", &["/does/not/exist"]);
    let id = ctx.rt.create_container(&spec).await.unwrap();
    let err = ctx.rt.start_container(&id).await.unwrap_err();
    println!("start error: {err:?}");
    assert!(!err.is_unavailable(), "{err:?}");
    let st = ctx.rt.inspect_container(&id).await.unwrap().unwrap();
    println!(
        "after failed start: state={:?} exit_code={:?} error={:?}",
        st.state, st.exit_code, st.error
    );
    assert!(st.exit_code.is_some_and(|c| c != 0), "{st:?}");
    assert!(st.error.is_some(), "{st:?}");
}

/// Docker (API ≥ 1.44) no longer refuses a second network of one name, so
/// concurrent task starts, in one agent or two, must still leave one.
#[tokio::test]
async fn concurrent_ensure_network_leaves_one_network() {
    let name = format!("wharf-test-net-{}", unique());
    let one = DockerRuntime::connect().await.expect("docker");
    // A second runtime stands for another agent process (its own lock).
    let two = DockerRuntime::connect().await.expect("docker");
    let calls = (0..6).map(|i| {
        let rt = if i % 2 == 0 { one.clone() } else { two.clone() };
        let name = name.clone();
        async move { rt.ensure_network(&name).await }
    });
    for r in futures::future::join_all(calls).await {
        r.expect("ensure_network");
    }
    let listed = Command::new("docker")
        .args(["network", "ls", "-q", "--filter", &format!("name=^{name}$")])
        .output()
        .expect("docker network ls");
    let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    for id in &ids {
        let _ = Command::new("docker").args(["network", "rm", id]).output();
    }
    assert_eq!(ids.len(), 1, "networks named {name}: {ids:?}");
}
