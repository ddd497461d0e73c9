//! The AWS SDK for Rust against `wharf up`, unchanged but for the endpoint
//! and credentials: register, run until RUNNING on real Docker, stop and
//! read the exit code and reason; then a service that becomes stable.

use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ecs::types::{ContainerDefinition, DesiredStatus, PortMapping};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "AKIARUSTSDKTEST";
const SECRET: &str = "rust-sdk-test-secret";

struct Wharf {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Wharf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Stopped tasks keep their containers, as in ECS; remove this test's.
        if let Ok(out) = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                "label=com.amazonaws.ecs.task-definition-family=rust-sdk",
            ])
            .output()
        {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .arg("rm")
                    .arg("-f")
                    .args(&ids)
                    .output();
            }
        }
    }
}

const REGION: &str = "eu-central-1";

fn start() -> Wharf {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["up", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .env("WHARF_ACCESS_KEY_ID", KEY)
        .env("WHARF_SECRET_ACCESS_KEY", SECRET)
        .env("WHARF_LOG", "warn")
        // ECS is regional: the host joins the region the SDK signs for.
        .env("AWS_DEFAULT_REGION", REGION)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wharf up");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "wharf did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Wharf {
        child,
        url,
        _dir: dir,
    }
}

async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn rust_sdk_runs_and_stops_a_task_and_a_service() {
    if Command::new("docker")
        .arg("info")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        panic!("this test needs the Docker Engine (the CI script starts it)");
    }
    let w = start();
    let config = aws_sdk_ecs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(KEY, SECRET, None, None, "test"))
        .endpoint_url(&w.url)
        .build();
    let ecs = aws_sdk_ecs::Client::from_conf(config);

    until("the local agent to register", || async {
        ecs.list_container_instances()
            .send()
            .await
            .is_ok_and(|r| !r.container_instance_arns().is_empty())
    })
    .await;

    let td = ecs
        .register_task_definition()
        .family("rust-sdk")
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image("wharf-test/busybox:latest")
                .memory(32)
                .stop_timeout(2)
                .command("httpd")
                .command("-f")
                .command("-p")
                .command("8080")
                .port_mappings(
                    PortMapping::builder()
                        .container_port(8080)
                        .host_port(0)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("register")
        .task_definition
        .expect("task definition");
    assert_eq!(td.revision, 1);
    let arn = td.task_definition_arn.unwrap();
    assert!(arn.starts_with("arn:aws:ecs:eu-central-1:"), "{arn}");

    let run = ecs
        .run_task()
        .task_definition("rust-sdk")
        .send()
        .await
        .expect("run");
    assert!(run.failures().is_empty(), "{:?}", run.failures());
    let task_arn = run.tasks()[0].task_arn().unwrap().to_string();
    until("RUNNING", || async {
        let t = ecs.describe_tasks().tasks(&task_arn).send().await.unwrap();
        t.tasks()[0].last_status() == Some("RUNNING")
    })
    .await;
    let t = ecs.describe_tasks().tasks(&task_arn).send().await.unwrap();
    let binding = &t.tasks()[0].containers()[0].network_bindings()[0];
    assert_eq!(binding.container_port(), Some(8080));
    assert!(binding.host_port().unwrap() > 0);

    ecs.stop_task()
        .task(&task_arn)
        .reason("sdk says stop")
        .send()
        .await
        .unwrap();
    until("STOPPED", || async {
        let t = ecs.describe_tasks().tasks(&task_arn).send().await.unwrap();
        t.tasks()[0].last_status() == Some("STOPPED")
    })
    .await;
    let t = ecs.describe_tasks().tasks(&task_arn).send().await.unwrap();
    let t = &t.tasks()[0];
    assert_eq!(t.stopped_reason(), Some("sdk says stop"));
    assert_eq!(t.stop_code().map(|c| c.as_str()), Some("UserInitiated"));
    assert!(t.containers()[0].exit_code().is_some());

    // Errors come back typed, as the SDK models them.
    let err = ecs
        .describe_clusters()
        .clusters("default")
        .send()
        .await
        .map(|r| r.clusters()[0].status().map(str::to_string));
    assert_eq!(err.unwrap().as_deref(), Some("ACTIVE"));
    let missing = ecs
        .update_service()
        .service("nope")
        .desired_count(1)
        .send()
        .await;
    let e = missing.expect_err("unknown service");
    assert!(e.into_service_error().is_service_not_found_exception());

    ecs.create_service()
        .service_name("rust-sdk")
        .task_definition("rust-sdk")
        .desired_count(2)
        .send()
        .await
        .expect("create service");
    until("the service to be stable", || async {
        let s = ecs
            .describe_services()
            .services("rust-sdk")
            .send()
            .await
            .unwrap();
        let s = &s.services()[0];
        s.running_count() == 2 && s.deployments().len() == 1
    })
    .await;
    let running = ecs
        .list_tasks()
        .service_name("rust-sdk")
        .desired_status(DesiredStatus::Running)
        .send()
        .await
        .unwrap();
    assert_eq!(running.task_arns().len(), 2);
    ecs.delete_service()
        .service("rust-sdk")
        .force(true)
        .send()
        .await
        .unwrap();
    until("the service to be INACTIVE", || async {
        let s = ecs
            .describe_services()
            .services("rust-sdk")
            .send()
            .await
            .unwrap();
        s.services()[0].status() == Some("INACTIVE")
    })
    .await;
}
