//! A control plane over loopback and agents on a fake runtime, inside one
//! process: what the agent integration tests share.

#![allow(dead_code)] // each test binary uses part of it

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
pub const IMAGE: &str = "busybox";

pub struct Host {
    pub ecs: ControlClient,
    /// The Docker daemon every agent of this host shares.
    pub runtime: FakeRuntime,
    url: String,
    agent_creds: Credentials,
}

impl Host {
    /// A control plane and one agent with `policy`, its instance connected.
    pub async fn start(policy: HostPolicy, state_dir: PathBuf) -> Host {
        let host = Host::plane().await;
        let _agent = host.agent(policy, state_dir);
        host.until("the instance connects", |h| async move {
            (h.connected().await.len() == 1).then_some(())
        })
        .await;
        host
    }

    /// A control plane with no agent yet.
    pub async fn plane() -> Host {
        let creds = Credentials {
            access_key_id: "AKIAAGENTTEST".into(),
            secret_access_key: "agent-test-secret".into(),
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
        // Agents sign with agent credentials of their own, as `wharf up`'s do.
        let agent_creds =
            wharf_control::tokens::local_agent_credentials(&control, "us-east-1", "default", 0)
                .await
                .expect("agent credentials");
        tokio::spawn(async move {
            axum::serve(listener, wharf_control::http::router(control))
                .await
                .expect("serve")
        });
        Host {
            ecs: ControlClient::new(&url, creds, "us-east-1").expect("client"),
            runtime: FakeRuntime::with_images([IMAGE]),
            url,
            agent_creds,
        }
    }

    /// Starts an agent of cluster `default` on the shared runtime; aborting
    /// the handle stops it (as a killed process, its containers stay).
    pub fn agent(&self, policy: HostPolicy, state_dir: PathBuf) -> tokio::task::JoinHandle<()> {
        let client =
            ControlClient::new(&self.url, self.agent_creds.clone(), "us-east-1").expect("client");
        let config = AgentConfig {
            cluster: "default".into(),
            state_dir,
            pull_behavior: PullBehavior::PreferCached,
            managed: false,
            policy,
            capacity_provider: None,
        };
        let agent = Arc::new(Agent::new(client, Arc::new(self.runtime.clone()), config));
        tokio::spawn(agent.run())
    }

    /// The ARNs of the connected container instances.
    pub async fn connected(&self) -> Vec<String> {
        let Ok(arns) = self.call("ListContainerInstances", json!({})).await else {
            return vec![];
        };
        let arns = arns["containerInstanceArns"].clone();
        if arns.as_array().is_none_or(Vec::is_empty) {
            return vec![];
        }
        let Ok(described) = self
            .call(
                "DescribeContainerInstances",
                json!({"containerInstances": arns}),
            )
            .await
        else {
            return vec![];
        };
        described["containerInstances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["agentConnected"] == true)
            .filter_map(|i| i["containerInstanceArn"].as_str().map(str::to_string))
            .collect()
    }

    pub async fn call(&self, op: &str, req: Value) -> Result<Value, String> {
        self.ecs
            .call(&format!("{ECS}.{op}"), &req)
            .await
            .map_err(|e| e.to_string())
    }

    /// Polls `probe` until it gives a value (10 s at most).
    pub async fn until<'a, T, F, Fut>(&'a self, what: &str, probe: F) -> T
    where
        F: Fn(&'a Host) -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        self.within(Duration::from_secs(10), what, probe).await
    }

    /// Polls `probe` until it gives a value, for `limit` at most.
    pub async fn within<'a, T, F, Fut>(&'a self, limit: Duration, what: &str, probe: F) -> T
    where
        F: Fn(&'a Host) -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = probe(self).await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Registers `family` (one container, `container` merged into its
    /// definition) with `volumes`.
    pub async fn register(&self, family: &str, volumes: Value, container: Value) {
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
    }

    /// Registers `family` and runs one task of it; returns its ARN.
    pub async fn run(&self, family: &str, volumes: Value, container: Value) -> String {
        self.register(family, volumes, container).await;
        self.run_on(family, None).await
    }

    /// Runs a task of `family`, on `instance` if given (StartTask).
    pub async fn run_on(&self, family: &str, instance: Option<&str>) -> String {
        let run = match instance {
            None => self.call("RunTask", json!({"taskDefinition": family})),
            Some(i) => self.call(
                "StartTask",
                json!({"taskDefinition": family, "containerInstances": [i]}),
            ),
        }
        .await
        .expect("run");
        run["tasks"][0]["taskArn"]
            .as_str()
            .expect("a task was placed")
            .to_string()
    }

    /// The task once its lastStatus is `status`.
    pub async fn reaches(&self, arn: &str, status: &str) -> Value {
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
    pub fn created(&self, family: &str) -> Vec<FakeCall> {
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
