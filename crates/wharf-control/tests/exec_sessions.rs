//! ExecuteCommand's checks, in ECS's words, and the session the agent of
//! the task's host then finds (the stream itself is tested end to end in
//! tests/e2e/test_exec.py).

mod common;

use common::{agent, cluster_with_instance, control, ecs, placed_task};
use serde_json::{json, Value};
use wharf_control::Control;

/// A cluster with one instance and a running two-container task (exec
/// enabled or not): the instance's ARN and the task's.
async fn running_task(c: &Control, exec: bool) -> (String, String) {
    let instance = cluster_with_instance(c).await;
    let task = placed_task(
        c,
        &instance,
        json!([{"name": "app", "image": "busybox", "memory": 32},
               {"name": "side", "image": "busybox", "memory": 32}]),
        json!({"enableExecuteCommand": exec}),
    )
    .await;
    let running = |name: &str| json!({"name": name, "status": "RUNNING", "runtimeId": name});
    agent(
        c,
        "ReportTaskState",
        json!({"cluster": "c", "taskArn": task, "status": "RUNNING",
               "containers": [running("app"), running("side")]}),
    )
    .await
    .unwrap();
    (instance, task)
}

fn exec_request(task: &str, container: Option<&str>) -> Value {
    let mut r = json!({"cluster": "c", "task": task, "interactive": true,
                       "command": "sh -c 'echo \"a b\"'"});
    if let Some(name) = container {
        r["container"] = json!(name);
    }
    r
}

async fn refused(c: &Control, body: Value, code: &str, message: &str) {
    let before = c.store.current_revision().await.unwrap();
    let e = ecs(c, "ExecuteCommand", body).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.status), (code, 400), "{e}");
    assert!(e.message.contains(message), "{}", e.message);
    assert_eq!(
        c.store.current_revision().await.unwrap(),
        before,
        "a refused ExecuteCommand wrote"
    );
}

#[tokio::test]
async fn execute_command_refuses_what_ecs_refuses() {
    let c = control();
    let (instance, task) = running_task(&c, true).await;
    let mut passive = exec_request(&task, Some("app"));
    passive["interactive"] = json!(false);
    refused(
        &c,
        passive,
        "InvalidParameterException",
        "Interactive is the only mode supported currently.",
    )
    .await;
    refused(
        &c,
        exec_request(&task, None),
        "InvalidParameterException",
        "more than one container",
    )
    .await;
    refused(
        &c,
        exec_request(&task, Some("nope")),
        "InvalidParameterException",
        "nope is not a container",
    )
    .await;
    let mut unclosed = exec_request(&task, Some("app"));
    unclosed["command"] = json!("echo 'open");
    refused(&c, unclosed, "InvalidParameterException", "quotes closed").await;
    let mut elsewhere = exec_request(&task, Some("app"));
    elsewhere["cluster"] = json!("missing");
    refused(
        &c,
        elsewhere,
        "ClusterNotFoundException",
        "Cluster not found",
    )
    .await;
    // The host's agent has gone: nothing could run the command.
    agent(
        &c,
        "Disconnect",
        json!({"cluster": "c", "containerInstanceArn": instance, "reason": "test"}),
    )
    .await
    .unwrap();
    refused(
        &c,
        exec_request(&task, Some("app")),
        "TargetNotConnectedException",
        "not connected",
    )
    .await;
}

#[tokio::test]
async fn a_task_run_without_execute_command_is_refused_in_ecs_words() {
    let c = control();
    let (_, task) = running_task(&c, false).await;
    refused(
        &c,
        exec_request(&task, Some("app")),
        "InvalidParameterException",
        "execute command was not enabled when the task was run",
    )
    .await;
}

#[tokio::test]
async fn the_session_waits_for_the_agent_of_the_tasks_host() {
    let c = control();
    let (instance, task) = running_task(&c, true).await;
    let poll = |after: i64| {
        json!({"cluster": "c", "containerInstanceArn": instance,
               "afterRevision": after, "waitMillis": 10})
    };
    let before = agent(&c, "PollExecSessions", poll(0)).await.unwrap();
    assert_eq!(before["sessions"], json!([]));

    let r = ecs(&c, "ExecuteCommand", exec_request(&task, Some("side")))
        .await
        .unwrap();
    assert_eq!(r["taskArn"], json!(task));
    assert_eq!(r["containerName"], json!("side"));
    assert_eq!(r["interactive"], json!(true));
    let id = r["session"]["sessionId"].as_str().unwrap();
    assert!(id.starts_with("ecs-execute-command-"), "{id}");
    assert_eq!(
        r["session"]["streamUrl"],
        json!(format!("ws://wharf.example:9070/wharf/exec/{id}"))
    );
    let token = r["session"]["tokenValue"].as_str().unwrap();
    assert_eq!(token.len(), 64);

    // Seen by a poll after the last one, with the command split as a shell
    // would, and the agent's own token (not the caller's).
    let after = before["revision"].as_i64().unwrap();
    let seen = agent(&c, "PollExecSessions", poll(after)).await.unwrap();
    let sessions = seen["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{seen}");
    let s = &sessions[0];
    assert_eq!(s["sessionId"], json!(id));
    assert_eq!(s["taskArn"], json!(task));
    assert_eq!(s["containerName"], json!("side"));
    assert_eq!(s["command"], json!(["sh", "-c", "echo \"a b\""]));
    let agent_token = s["agentToken"].as_str().unwrap();
    assert_eq!(agent_token.len(), 64);
    assert_ne!(agent_token, token);

    // A poll after that one waits, and finds nothing new.
    let later = seen["revision"].as_i64().unwrap();
    let quiet = agent(&c, "PollExecSessions", poll(later)).await.unwrap();
    assert_eq!(quiet["sessions"], json!([]));
}

#[tokio::test]
async fn a_task_with_execute_command_shows_its_managed_agent() {
    let c = control();
    let (_, task) = running_task(&c, true).await;
    let d = ecs(
        &c,
        "DescribeTasks",
        json!({"cluster": "c", "tasks": [task]}),
    )
    .await
    .unwrap();
    let agents = &d["tasks"][0]["containers"][0]["managedAgents"];
    assert_eq!(agents[0]["name"], json!("ExecuteCommandAgent"));
    assert_eq!(agents[0]["lastStatus"], json!("RUNNING"));
}
