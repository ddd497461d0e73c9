//! `wharf logs [-f] TASK`: a task's awslogs output, read through the same
//! API (DescribeTasks, DescribeTaskDefinition, GetLogEvents) any client uses.

use anyhow::{bail, Context};
use std::time::Duration;
use wharf_agent::client::ControlClient;
use wharf_model::{ecs, logs};

const ECS: &str = "AmazonEC2ContainerServiceV20141113";

/// One container's log stream.
struct Source {
    /// Signing for the group's region (its `awslogs-region`, else the task's).
    client: ControlClient,
    container: String,
    group: String,
    stream: String,
    token: Option<String>,
}

pub async fn run(
    client: &ControlClient,
    cluster: &str,
    task: &str,
    only: Option<&str>,
    follow: bool,
) -> anyhow::Result<()> {
    let Some(t) = describe_task(client, cluster, task).await? else {
        bail!("task {task} not found in cluster {cluster}");
    };
    let td: ecs::DescribeTaskDefinitionResponse = client
        .call(
            &format!("{ECS}.DescribeTaskDefinition"),
            &ecs::DescribeTaskDefinitionRequest {
                task_definition: t.task_definition_arn.clone().unwrap_or_default(),
                ..Default::default()
            },
        )
        .await?;
    let task_id = t
        .task_arn
        .as_deref()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or_default()
        .to_string();
    let defs = td
        .task_definition
        .and_then(|d| d.container_definitions)
        .unwrap_or_default();
    let mut sources = vec![];
    for d in &defs {
        let name = d.name.clone().unwrap_or_default();
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let Some(cfg) = wharf_agent::awslogs::config(d).map_err(anyhow::Error::msg)? else {
            continue;
        };
        let runtime_id = t
            .containers
            .iter()
            .flatten()
            .find(|c| c.name.as_deref() == Some(name.as_str()))
            .and_then(|c| c.runtime_id.clone())
            .unwrap_or_default();
        sources.push(Source {
            client: cfg.client_for(client, t.task_arn.as_deref().unwrap_or_default()),
            stream: cfg.stream(&name, &task_id, &runtime_id),
            group: cfg.group,
            container: name,
            token: None,
        });
    }
    if sources.is_empty() {
        bail!(
            "no container of task {task_id} {} the awslogs log driver",
            only.map_or("uses".to_string(), |o| format!("named {o} uses"))
        );
    }
    let prefix = sources.len() > 1;
    let mut last_look = false;
    loop {
        let mut got = 0;
        for s in &mut sources {
            match drain(s).await {
                Ok(lines) => {
                    got += lines.len();
                    for l in lines {
                        if prefix {
                            println!("{} | {l}", s.container);
                        } else {
                            println!("{l}");
                        }
                    }
                }
                // The stream appears when the container starts.
                Err(_) if follow => {}
                Err(e) => return Err(e).context(format!("reading {}/{}", s.group, s.stream)),
            }
        }
        if !follow || (got == 0 && last_look) {
            return Ok(());
        }
        if got == 0 {
            // A stopped task's last lines arrive within a moment: one more look.
            last_look = describe_task(client, cluster, task)
                .await?
                .is_none_or(|t| t.last_status.as_deref() == Some("STOPPED"));
            tokio::time::sleep(Duration::from_millis(if last_look { 2000 } else { 500 })).await;
        }
    }
}

async fn describe_task(
    client: &ControlClient,
    cluster: &str,
    task: &str,
) -> anyhow::Result<Option<ecs::Task>> {
    let r: ecs::DescribeTasksResponse = client
        .call(
            &format!("{ECS}.DescribeTasks"),
            &ecs::DescribeTasksRequest {
                cluster: Some(cluster.into()),
                tasks: vec![task.into()],
                ..Default::default()
            },
        )
        .await?;
    Ok(r.tasks.unwrap_or_default().into_iter().next())
}

/// Everything the stream has past the source's token.
async fn drain(s: &mut Source) -> Result<Vec<String>, wharf_agent::client::ClientError> {
    let client = s.client.clone();
    let mut out = vec![];
    loop {
        let page: logs::GetLogEventsResponse = client
            .call(
                "Logs_20140328.GetLogEvents",
                &logs::GetLogEventsRequest {
                    log_group_name: Some(s.group.clone()),
                    log_stream_name: s.stream.clone(),
                    start_from_head: Some(true),
                    next_token: s.token.clone(),
                    ..Default::default()
                },
            )
            .await?;
        let events = page.events.unwrap_or_default();
        let same = page.next_forward_token == s.token;
        s.token = page.next_forward_token;
        let empty = events.is_empty();
        out.extend(events.into_iter().map(|e| e.message.unwrap_or_default()));
        if empty || same {
            return Ok(out);
        }
    }
}
