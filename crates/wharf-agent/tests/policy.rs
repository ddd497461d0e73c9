//! The host policy, end to end inside one process: the real control plane
//! over loopback, the agent on the fake runtime. A refused task is reported
//! STOPPED (TaskFailedToStart, with the reason) and nothing of it reaches
//! the runtime; an allowed task still runs.

mod common;

use common::Host;
use serde_json::json;
use wharf_agent::policy::HostPolicy;

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
