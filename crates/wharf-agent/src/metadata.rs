//! The task metadata endpoint, version 4, in the ECS agent's JSON: every
//! container has `ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/TOKEN`
//! and reads `…` (itself), `…/task` (its task and every container of it),
//! `…/taskWithTags` (and the task's tags), `…/stats` (Docker's stats of
//! itself) and `…/task/stats` (of every container of the task, by Docker
//! ID), whatever its network mode.
//!
//! The token is random, made when the container is created and kept in its
//! label [`TOKEN_LABEL`], so a restarted agent knows it again from Docker.
//! What is served is the task as its agent's latest pass saw it (a pass
//! follows every Docker event); stats are read from Docker when asked.

use crate::agent::NameLabel;
use crate::endpoint::{Answer, Endpoint};
use crate::runtime::{ContainerState, ContainerStatus, Health};
use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use std::time::SystemTime;
use wharf_core::agent_protocol::AssignedTask;

/// How long a stats request waits for Docker.
const STATS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The variable each container finds its metadata URI in.
pub const URI_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";
/// The label that keeps a container's token.
pub const TOKEN_LABEL: &str = "wharf.metadata-token";

/// A new container's token: 128 random bits, as hex.
pub fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// One task as the endpoint serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub task_arn: String,
    /// The task's own fields (without `Containers`).
    pub task: Map<String, Value>,
    pub containers: Vec<ContainerView>,
    pub tags: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub docker_id: String,
    /// None for a container made before tokens were.
    pub token: Option<String>,
    pub json: Value,
}

fn time(t: Option<SystemTime>) -> Option<String> {
    crate::endpoint::rfc3339(t?)
}

/// The ECS container status of what Docker shows.
fn known_status(c: &ContainerStatus) -> &'static str {
    match &c.state {
        ContainerState::Running => "RUNNING",
        ContainerState::Created => "CREATED",
        ContainerState::Exited | ContainerState::Dead => "STOPPED",
        // Still its process, paused or about to run again.
        ContainerState::Other(s) if s == "paused" || s == "restarting" => "RUNNING",
        ContainerState::Other(_) => "STOPPED",
    }
}

/// The ECS agent's error: a JSON string.
fn refused(status: StatusCode, message: &str) -> Answer {
    (status, axum::Json(Value::String(message.to_string())))
}

fn insert(m: &mut Map<String, Value>, key: &str, v: Option<impl Into<Value>>) {
    if let Some(v) = v {
        m.insert(key.to_string(), v.into());
    }
}

/// The view of task `t` from its containers as Docker shows them
/// (`containers`, the awsvpc pause container among them, which is not
/// shown); `launch_type` is `EC2` or `FARGATE`.
pub fn view(t: &AssignedTask, containers: &[ContainerStatus], launch_type: &str) -> TaskView {
    let td = &t.task_definition;
    let defs = wharf_core::taskdef::effective_containers(td, &t.overrides);
    let mode = td
        .network_mode
        .as_ref()
        .and_then(|m| serde_json::to_value(m).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "bridge".into());
    let pause = containers
        .iter()
        .find(|c| c.name_label() == crate::pause::CONTAINER_NAME);
    let task_ip = pause.and_then(|p| p.ip.clone());
    let mut views = vec![];
    for c in containers.iter().filter(|c| Some(*c) != pause) {
        let name = c.name_label();
        let def = defs
            .iter()
            .find(|d| d.name.as_deref() == Some(name.as_str()));
        let arn = t
            .containers
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.container_arn.clone());
        let mut m = Map::new();
        m.insert("DockerId".into(), c.id.clone().into());
        m.insert("Name".into(), name.clone().into());
        m.insert("DockerName".into(), c.name.clone().into());
        m.insert(
            "Image".into(),
            def.and_then(|d| d.image.clone())
                .unwrap_or_else(|| c.image.clone())
                .into(),
        );
        insert(&mut m, "ImageID", c.image_id.clone());
        let ports: Vec<Value> = c
            .ports
            .iter()
            .map(|p| {
                json!({"ContainerPort": p.container_port, "Protocol": p.protocol.as_str(),
                       "HostPort": p.host_port, "HostIp": p.host_ip.clone().unwrap_or_default()})
            })
            .collect();
        if !ports.is_empty() {
            m.insert("Ports".into(), ports.into());
        }
        let mut labels = c.labels.clone();
        labels.remove(TOKEN_LABEL);
        m.insert("Labels".into(), json!(labels));
        m.insert("DesiredStatus".into(), t.desired_status.clone().into());
        m.insert("KnownStatus".into(), known_status(c).into());
        if c.state == ContainerState::Exited || c.state == ContainerState::Dead {
            insert(&mut m, "ExitCode", c.exit_code);
        }
        let mut limits = Map::new();
        limits.insert("CPU".into(), def.and_then(|d| d.cpu).unwrap_or(0).into());
        insert(&mut limits, "Memory", def.and_then(|d| d.memory));
        m.insert("Limits".into(), limits.into());
        insert(&mut m, "CreatedAt", time(c.created_at));
        insert(&mut m, "StartedAt", time(c.started_at));
        if c.state != ContainerState::Running {
            insert(&mut m, "FinishedAt", time(c.finished_at));
        }
        m.insert("Type".into(), "NORMAL".into());
        if let Some(lc) = def.and_then(|d| d.log_configuration.as_ref()) {
            m.insert("LogDriver".into(), json!(lc.log_driver));
            m.insert(
                "LogOptions".into(),
                json!(lc.options.clone().unwrap_or_default()),
            );
        }
        insert(&mut m, "ContainerARN", arn);
        if let Some(h) = &c.health {
            let status = match h {
                Health::Starting => "UNKNOWN",
                Health::Healthy => "HEALTHY",
                Health::Unhealthy => "UNHEALTHY",
            };
            m.insert("Health".into(), json!({"status": status}));
        }
        let ip = match mode.as_str() {
            "awsvpc" => task_ip.clone(),
            _ => c.ip.clone(),
        };
        let mut net = Map::new();
        net.insert("NetworkMode".into(), mode.clone().into());
        net.insert(
            "IPv4Addresses".into(),
            json!(ip.into_iter().collect::<Vec<_>>()),
        );
        m.insert("Networks".into(), json!([net]));
        views.push(ContainerView {
            name,
            docker_id: c.id.clone(),
            token: c.labels.get(TOKEN_LABEL).cloned(),
            json: m.into(),
        });
    }
    let mut task = Map::new();
    let cluster = wharf_core::arn::task_id(&t.task_arn)
        .ok()
        .and_then(|(c, _)| c)
        .map(|name| {
            let prefix = t.task_arn.split(":task/").next().unwrap_or_default();
            format!("{prefix}:cluster/{name}")
        });
    insert(&mut task, "Cluster", cluster);
    task.insert("TaskARN".into(), t.task_arn.clone().into());
    insert(&mut task, "Family", td.family.clone());
    insert(&mut task, "Revision", td.revision.map(|r| r.to_string()));
    insert(
        &mut task,
        "ServiceName",
        t.group.strip_prefix("service:").map(str::to_string),
    );
    task.insert("DesiredStatus".into(), t.desired_status.clone().into());
    task.insert("KnownStatus".into(), t.last_status.clone().into());
    let mut limits = Map::new();
    // The task's CPU in vCPUs, its memory in MiB: the override's, else the
    // definition's, in any form registration takes ("1 vCPU", "2 GB").
    let cpu = t.overrides.cpu.as_deref().or(td.cpu.as_deref());
    let memory = t.overrides.memory.as_deref().or(td.memory.as_deref());
    insert(
        &mut limits,
        "CPU",
        cpu.and_then(|c| wharf_core::taskdef::parse_cpu(c).ok())
            .map(|units| units as f64 / 1024.0),
    );
    insert(
        &mut limits,
        "Memory",
        memory.and_then(|m| wharf_core::taskdef::parse_memory(m).ok()),
    );
    if !limits.is_empty() {
        task.insert("Limits".into(), limits.into());
    }
    task.insert("LaunchType".into(), launch_type.into());
    let tags = t
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    TaskView {
        task_arn: t.task_arn.clone(),
        task,
        containers: views,
        tags,
    }
}

fn with_containers(v: &TaskView) -> Map<String, Value> {
    let mut task = v.task.clone();
    task.insert(
        "Containers".into(),
        v.containers.iter().map(|c| c.json.clone()).collect(),
    );
    task
}

/// The answer to `GET /v4/` + `rest`.
pub async fn answer(endpoint: &Endpoint, rest: &str) -> Answer {
    let (token, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Some((view, name)) = endpoint.metadata_of(token) else {
        return refused(
            StatusCode::NOT_FOUND,
            "V4 container metadata handler: unable to find a container for the ID in the request",
        );
    };
    let Some(me) = view.containers.iter().find(|c| c.name == name) else {
        return refused(
            StatusCode::NOT_FOUND,
            "V4 container metadata handler: the container is gone",
        );
    };
    let ok = |v: Value| (StatusCode::OK, axum::Json(v));
    match path {
        "" => ok(me.json.clone()),
        "task" => ok(with_containers(&view).into()),
        "taskWithTags" => {
            let mut task = with_containers(&view);
            task.insert("TaskTags".into(), view.tags.clone().into());
            ok(task.into())
        }
        "stats" | "task/stats" => {
            let Some(runtime) = endpoint.runtime() else {
                return refused(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "V4 stats handler: no Docker to ask",
                );
            };
            let of = match path {
                "stats" => std::slice::from_ref(me),
                _ => &view.containers[..],
            };
            // Each container's sample at once (Docker takes a second or so
            // for one, to have a previous CPU reading), bounded in time; a
            // container that has none is null.
            let samples = futures::future::join_all(of.iter().map(|c| {
                let runtime = runtime.clone();
                async move {
                    let got =
                        tokio::time::timeout(STATS_TIMEOUT, runtime.stats(&c.docker_id)).await;
                    let sample = match got {
                        Ok(Ok(Some(s))) => s,
                        Ok(Ok(None)) => Value::Null,
                        Ok(Err(e)) => {
                            tracing::debug!(container = %c.docker_id, error = %e, "no stats");
                            Value::Null
                        }
                        Err(_) => Value::Null,
                    };
                    (c.docker_id.clone(), sample)
                }
            }))
            .await;
            match path {
                "stats" => ok(samples
                    .into_iter()
                    .next()
                    .map(|(_, s)| s)
                    .unwrap_or(Value::Null)),
                _ => ok(Value::Object(samples.into_iter().collect())),
            }
        }
        _ => refused(StatusCode::NOT_FOUND, "V4 metadata handler: no such path"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::CONTAINER_NAME_LABEL;
    use std::collections::HashMap;

    fn status(id: &str, name: &str, state: ContainerState, token: Option<&str>) -> ContainerStatus {
        let mut labels = HashMap::from([(CONTAINER_NAME_LABEL.to_string(), name.to_string())]);
        if let Some(t) = token {
            labels.insert(TOKEN_LABEL.to_string(), t.to_string());
        }
        ContainerStatus {
            id: id.into(),
            name: format!("ecs-{name}"),
            labels,
            image: "img".into(),
            state,
            exit_code: Some(3),
            oom_killed: false,
            error: None,
            started_at: Some(SystemTime::UNIX_EPOCH),
            finished_at: Some(SystemTime::UNIX_EPOCH),
            health: Some(Health::Healthy),
            ports: vec![],
            volumes: vec![],
            ip: Some("10.1.2.3".into()),
            image_id: Some("sha256:ab".into()),
            created_at: Some(SystemTime::UNIX_EPOCH),
        }
    }

    fn task() -> AssignedTask {
        serde_json::from_value(json!({
            "taskArn": "arn:aws:ecs:eu-west-1:000000000000:task/prod/0123456789abcdef0123456789abcdef",
            "taskDefinition": {"family": "web", "revision": 7, "networkMode": "awsvpc", "cpu": "512", "memory": "1024",
                "containerDefinitions": [{"name": "app", "image": "app:1", "cpu": 128, "memory": 256,
                    "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}}]},
            "desiredStatus": "RUNNING", "lastStatus": "RUNNING", "group": "service:api",
            "tags": {"team": "blue"},
            "containers": [{"name": "app", "containerArn": "arn:aws:ecs:eu-west-1:000000000000:container/prod/0123456789abcdef0123456789abcdef/c1"}],
        }))
        .expect("task")
    }

    #[test]
    fn a_view_is_the_ecs_agent_s_v4_json() {
        let pause = status(
            "p",
            crate::pause::CONTAINER_NAME,
            ContainerState::Running,
            None,
        );
        let app = status("a", "app", ContainerState::Exited, Some("tok"));
        let v = view(&task(), &[pause, app], "FARGATE");
        assert_eq!(v.containers.len(), 1, "the pause container is not shown");
        let c = &v.containers[0];
        assert_eq!(c.token.as_deref(), Some("tok"));
        let j = &c.json;
        assert_eq!(j["Name"], "app");
        assert_eq!(j["DockerName"], "ecs-app");
        assert_eq!(j["Image"], "app:1");
        assert_eq!(j["KnownStatus"], "STOPPED");
        assert_eq!(j["ExitCode"], 3);
        assert_eq!(j["Limits"], json!({"CPU": 128, "Memory": 256}));
        let mut exited = status("b", "app", ContainerState::Other("removing".into()), None);
        assert_eq!(known_status(&exited), "STOPPED");
        exited.state = ContainerState::Other("paused".into());
        assert_eq!(known_status(&exited), "RUNNING");
        assert_eq!(j["LogDriver"], "awslogs");
        assert_eq!(j["LogOptions"], json!({"awslogs-group": "g"}));
        assert_eq!(j["Health"], json!({"status": "HEALTHY"}));
        assert_eq!(j["CreatedAt"], "1970-01-01T00:00:00Z");
        assert_eq!(
            j["Networks"],
            json!([{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.1.2.3"]}])
        );
        assert!(
            j["Labels"].get(TOKEN_LABEL).is_none(),
            "the token is not shown"
        );
        assert_eq!(
            j["ContainerARN"],
            "arn:aws:ecs:eu-west-1:000000000000:container/prod/0123456789abcdef0123456789abcdef/c1"
        );
        let t = &v.task;
        assert_eq!(
            t["Cluster"],
            "arn:aws:ecs:eu-west-1:000000000000:cluster/prod"
        );
        assert_eq!(t["Revision"], "7");
        assert_eq!(t["ServiceName"], "api");
        assert_eq!(t["Limits"], json!({"CPU": 0.5, "Memory": 1024}));
        assert_eq!(t["LaunchType"], "FARGATE");
        assert_eq!(
            v.tags,
            json!({"team": "blue"}).as_object().cloned().unwrap()
        );
        // Sizes in any form registration takes, and the task's overrides.
        let mut t = task();
        t.task_definition.cpu = Some("1 vCPU".into());
        t.task_definition.memory = Some("2 GB".into());
        assert_eq!(
            view(&t, &[], "EC2").task["Limits"],
            json!({"CPU": 1.0, "Memory": 2048})
        );
        t.overrides.cpu = Some("2048".into());
        assert_eq!(
            view(&t, &[], "EC2").task["Limits"],
            json!({"CPU": 2.0, "Memory": 2048})
        );
    }

    #[tokio::test]
    async fn a_token_reads_its_own_task_only() {
        let e = Endpoint::new(None);
        let app = status("a", "app", ContainerState::Running, Some("tok"));
        let listed = std::time::Instant::now();
        e.set_metadata(
            1,
            vec![view(&task(), std::slice::from_ref(&app), "EC2")],
            listed,
        );
        let (status, body) = answer(&e, "tok").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.0["DockerId"], "a");
        let (_, body) = answer(&e, "tok/taskWithTags").await;
        assert_eq!(body.0["TaskTags"], json!({"team": "blue"}));
        assert_eq!(body.0["Containers"][0]["Name"], "app");
        assert_eq!(answer(&e, "other").await.0, StatusCode::NOT_FOUND);
        assert_eq!(answer(&e, "tok/nope").await.0, StatusCode::NOT_FOUND);
        // Another agent's pass leaves this one's tasks; its own next pass
        // without the task drops it.
        e.set_metadata(2, vec![], std::time::Instant::now());
        assert_eq!(answer(&e, "tok").await.0, StatusCode::OK);
        e.set_metadata(1, vec![], std::time::Instant::now());
        assert_eq!(answer(&e, "tok").await.0, StatusCode::NOT_FOUND);
        // A container created after a pass listed Docker survives that
        // pass's (older) view.
        let before = std::time::Instant::now();
        e.set_task_metadata(1, view(&task(), &[app], "EC2"));
        e.set_metadata(1, vec![], before);
        assert_eq!(answer(&e, "tok").await.0, StatusCode::OK);
    }
}
