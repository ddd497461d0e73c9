//! The host policy, end to end inside one process: the real control plane
//! over loopback, the agent on the fake runtime. A refused task is reported
//! STOPPED (TaskFailedToStart, with the reason) and nothing of it reaches
//! the runtime; an allowed task still runs.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wharf_agent::agent::{Agent, AgentConfig, PullBehavior};
use wharf_agent::client::ControlClient;
use wharf_agent::policy::HostPolicy;
use wharf_agent::runtime::{FakeCall, FakeRuntime};
use wharf_control::{Control, ControlConfig};
use wharf_core::clock::SystemClock;
use wharf_protocol::sigv4::Credentials;

const ECS: &str = "AmazonEC2ContainerServiceV20141113";
const IMAGE: &str = "busybox";

struct Host {
    ecs: ControlClient,
    runtime: FakeRuntime,
}

impl Host {
    /// A control plane and one agent with `policy`, its instance connected.
    async fn start(policy: HostPolicy, state_dir: PathBuf) -> Host {
        let creds = Credentials {
            access_key_id: "AKIAPOLICYTEST".into(),
            secret_access_key: "policy-test-secret".into(),
        };
        let control = Control::new(
            Arc::new(wharf_store::MemStore::new()),
            Arc::new(SystemClock),
            ControlConfig {
                credentials: vec![creds.clone()],
                ..Default::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        // The agent signs with agent credentials of its own, as `wharf up`'s do.
        let agent_creds = wharf_control::tokens::local_agent_credentials(&control, "default", 0)
            .await
            .expect("agent credentials");
        tokio::spawn(async move {
            axum::serve(listener, wharf_control::http::router(control))
                .await
                .expect("serve")
        });
        let runtime = FakeRuntime::with_images([IMAGE]);
        let client = ControlClient::new(&url, creds, "us-east-1").expect("client");
        let agent_client = ControlClient::new(&url, agent_creds, "us-east-1").expect("client");
        let config = AgentConfig {
            cluster: "default".into(),
            state_dir,
            pull_behavior: PullBehavior::PreferCached,
            managed: false,
            policy,
        };
        let agent = Arc::new(Agent::new(agent_client, Arc::new(runtime.clone()), config));
        tokio::spawn(agent.run());
        let host = Host {
            ecs: client,
            runtime,
        };
        host.until("the instance connects", |h| async move {
            let arns = h.call("ListContainerInstances", json!({})).await.ok()?;
            let arns = arns["containerInstanceArns"].as_array()?.clone();
            let described = h
                .call(
                    "DescribeContainerInstances",
                    json!({"containerInstances": arns}),
                )
                .await
                .ok()?;
            (described["containerInstances"][0]["agentConnected"] == true).then_some(())
        })
        .await;
        host
    }

    async fn call(&self, op: &str, req: Value) -> Result<Value, String> {
        self.ecs
            .call(&format!("{ECS}.{op}"), &req)
            .await
            .map_err(|e| e.to_string())
    }

    /// Polls `probe` until it gives a value (10 s at most).
    async fn until<'a, T, F, Fut>(&'a self, what: &str, probe: F) -> T
    where
        F: Fn(&'a Host) -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = probe(self).await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Registers `family` and runs one task of it; returns its ARN.
    async fn run(&self, family: &str, volumes: Value, container: Value) -> String {
        let mut def = json!({"name": "app", "image": IMAGE, "memory": 16});
        def.as_object_mut()
            .expect("object")
            .extend(container.as_object().expect("object").clone());
        self.call(
            "RegisterTaskDefinition",
            json!({"family": family, "volumes": volumes, "containerDefinitions": [def]}),
        )
        .await
        .expect("register");
        let run = self
            .call("RunTask", json!({"taskDefinition": family}))
            .await
            .expect("run");
        run["tasks"][0]["taskArn"]
            .as_str()
            .expect("a task was placed")
            .to_string()
    }

    /// The task once its lastStatus is `status`.
    async fn reaches(&self, arn: &str, status: &str) -> Value {
        self.until(&format!("{arn} is {status}"), |h| async move {
            let d = h
                .call("DescribeTasks", json!({"tasks": [arn]}))
                .await
                .ok()?;
            let t = d["tasks"][0].clone();
            (t["lastStatus"] == status).then_some(t)
        })
        .await
    }

    /// Whatever the runtime was asked to create for `family`.
    fn created(&self, family: &str) -> Vec<FakeCall> {
        let prefix = format!("ecs-{family}-");
        self.runtime
            .calls()
            .into_iter()
            .filter(|c| {
                matches!(c, FakeCall::Create(n) | FakeCall::EnsureVolume(n) if n.starts_with(&prefix))
            })
            .collect()
    }
}

#[tokio::test]
async fn refused_tasks_stop_before_anything_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = dir.path().join("allowed");
    std::fs::create_dir_all(&allowed).expect("mkdir");
    let host = Host::start(
        HostPolicy {
            disable_privileged: true,
            host_volume_allowlist: Some(vec![allowed.clone()]),
        },
        dir.path().join("agent"),
    )
    .await;

    let escape = format!("{}/../etc", allowed.display());
    let refused = [
        (
            "root",
            json!([{"name": "scratch"}]),
            json!({"privileged": true, "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/s"}]}),
            "container app is privileged, and this host refuses privileged containers (ECS_DISABLE_PRIVILEGED)".to_string(),
        ),
        (
            "etc",
            json!([{"name": "etc", "host": {"sourcePath": "/etc"}}]),
            json!({"mountPoints": [{"sourceVolume": "etc", "containerPath": "/host-etc"}]}),
            "volume etc: host path /etc is outside the directories this host allows (WHARF_HOST_VOLUME_ALLOWLIST)".to_string(),
        ),
        (
            "dotdot",
            json!([{"name": "up", "host": {"sourcePath": escape}}]),
            json!({"mountPoints": [{"sourceVolume": "up", "containerPath": "/up"}]}),
            format!("volume up: host path {escape} is not an absolute path without '..', which this host requires (WHARF_HOST_VOLUME_ALLOWLIST)"),
        ),
    ];
    for (family, volumes, container, reason) in refused {
        let arn = host.run(family, volumes, container).await;
        let t = host.reaches(&arn, "STOPPED").await;
        assert_eq!(t["stopCode"], "TaskFailedToStart", "{family}");
        assert_eq!(
            t["stoppedReason"],
            format!("CannotCreateContainerError: {reason}")
        );
        assert_eq!(t["containers"][0]["lastStatus"], "STOPPED", "{family}");
        assert_eq!(host.created(family), [], "{family}");
    }

    // A task within the policy runs, its host directory mounted.
    let data = allowed.join("data");
    let fine = host
        .run(
            "fine",
            json!([{"name": "data", "host": {"sourcePath": format!("{}/", data.display())}}]),
            json!({"mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}]}),
        )
        .await;
    let t = host.reaches(&fine, "RUNNING").await;
    assert_eq!(t["desiredStatus"], "RUNNING");
    let made = host.runtime.containers();
    let app = made
        .iter()
        .find(|c| c.name.starts_with("ecs-fine-"))
        .expect("the allowed task's container");
    let binds: Vec<String> = host
        .runtime
        .spec(&app.id)
        .expect("spec")
        .binds
        .iter()
        .map(|m| m.as_bind())
        .collect();
    assert_eq!(binds, [format!("{}/:/data", data.display())]);
}

#[tokio::test]
async fn without_the_switches_privileged_containers_and_host_paths_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Host::start(HostPolicy::default(), dir.path().join("agent")).await;
    let arn = host
        .run(
            "anything",
            json!([{"name": "etc", "host": {"sourcePath": "/etc"}}]),
            json!({"privileged": true, "mountPoints": [{"sourceVolume": "etc", "containerPath": "/host-etc"}]}),
        )
        .await;
    host.reaches(&arn, "RUNNING").await;
    assert_eq!(host.created("anything").len(), 1);
}
