//! Agents sharing one Docker daemon, as several `wharf agent` processes on
//! one machine do: each manages only the containers its own instance
//! created. A host that lost its state directory registers anew and leaves
//! its old instance's containers alone until that instance is deregistered,
//! then removes them.

mod common;

use common::Host;
use serde_json::json;
use std::time::Duration;
use wharf_agent::policy::HostPolicy;
use wharf_agent::runtime::{ContainerState, FakeCall, TASK_ARN_LABEL};

/// The runtime IDs of the task's containers that are running.
fn running(host: &Host, task: &str) -> Vec<String> {
    host.runtime
        .containers()
        .into_iter()
        .filter(|c| c.labels.get(TASK_ARN_LABEL).map(String::as_str) == Some(task))
        .filter(|c| c.state == ContainerState::Running)
        .map(|c| c.id)
        .collect()
}

fn removals(host: &Host) -> Vec<FakeCall> {
    host.runtime
        .calls()
        .into_iter()
        .filter(|c| matches!(c, FakeCall::Remove(_) | FakeCall::Stop(..)))
        .collect()
}

#[tokio::test]
async fn agents_on_one_daemon_keep_to_their_own_containers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Host::plane().await;
    let a = host.agent(HostPolicy::default(), dir.path().join("a"));
    let first = host
        .until(
            "agent a connects",
            |h| async move { h.connected().await.pop() },
        )
        .await;
    let _b = host.agent(HostPolicy::default(), dir.path().join("b"));
    let second = host
        .until("agent b connects", |h| {
            let first = first.clone();
            async move { h.connected().await.into_iter().find(|i| *i != first) }
        })
        .await;

    host.register("web", json!([]), json!({})).await;
    let on_a = host.run_on("web", Some(&first)).await;
    let on_b = host.run_on("web", Some(&second)).await;
    host.reaches(&on_a, "RUNNING").await;
    host.reaches(&on_b, "RUNNING").await;
    // Each agent has seen the other's container start (a Docker event wakes
    // every agent) and passed over it more than once: nothing was stopped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(removals(&host), []);
    assert_eq!(running(&host, &on_a).len(), 1);
    assert_eq!(running(&host, &on_b).len(), 1);

    // Agent a dies and comes back without its state directory: a new
    // instance. The old one is still registered (merely disconnected), so
    // its container is left alone.
    a.abort();
    let _a2 = host.agent(HostPolicy::default(), dir.path().join("a-again"));
    let third = host
        .until("the new agent connects", |h| {
            let (first, second) = (first.clone(), second.clone());
            async move {
                h.connected()
                    .await
                    .into_iter()
                    .find(|i| *i != first && *i != second)
            }
        })
        .await;
    let on_new = host.run_on("web", Some(&third)).await;
    host.reaches(&on_new, "RUNNING").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(removals(&host), []);
    assert_eq!(running(&host, &on_a).len(), 1);

    // Deregistered, the old instance owns nothing: its container goes, and
    // only its container, by the next poll of an agent that sees it (a
    // long poll lasts 15 s).
    host.call(
        "DeregisterContainerInstance",
        json!({"containerInstance": first, "force": true}),
    )
    .await
    .expect("deregister");
    host.within(
        Duration::from_secs(30),
        "the old instance's container is removed",
        |h| {
            let on_a = on_a.clone();
            async move {
                h.runtime
                    .containers()
                    .iter()
                    .all(|c| c.labels.get(TASK_ARN_LABEL) != Some(&on_a))
                    .then_some(())
            }
        },
    )
    .await;
    assert_eq!(running(&host, &on_b).len(), 1);
    assert_eq!(running(&host, &on_new).len(), 1);
    host.reaches(&on_b, "RUNNING").await;
    host.reaches(&on_new, "RUNNING").await;
}
