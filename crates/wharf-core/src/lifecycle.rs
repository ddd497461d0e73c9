//! The task lifecycle as ECS defines it: lastStatus only moves forward
//! through PROVISIONING → PENDING → ACTIVATING → RUNNING → DEACTIVATING →
//! STOPPING → DEPROVISIONING → STOPPED, desiredStatus moves from RUNNING to
//! STOPPED once, and the stop code and reason are set by whatever stopped
//! the task first.

use crate::agent_protocol::TaskStateReport;
use crate::clock::Millis;
use crate::records::TaskRecord;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Provisioning => "PROVISIONING",
            TaskStatus::Pending => "PENDING",
            TaskStatus::Activating => "ACTIVATING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Deactivating => "DEACTIVATING",
            TaskStatus::Stopping => "STOPPING",
            TaskStatus::Deprovisioning => "DEPROVISIONING",
            TaskStatus::Stopped => "STOPPED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            TaskStatus::Provisioning,
            TaskStatus::Pending,
            TaskStatus::Activating,
            TaskStatus::Running,
            TaskStatus::Deactivating,
            TaskStatus::Stopping,
            TaskStatus::Deprovisioning,
            TaskStatus::Stopped,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
    /// Counted as pending in cluster and instance statistics.
    pub fn is_pending(self) -> bool {
        self < TaskStatus::Running
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DesiredStatus {
    Running,
    Stopped,
}

impl DesiredStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredStatus::Running => "RUNNING",
            DesiredStatus::Stopped => "STOPPED",
        }
    }
}

pub const STOP_USER_INITIATED: &str = "UserInitiated";
pub const STOP_ESSENTIAL_EXITED: &str = "EssentialContainerExited";
pub const STOP_FAILED_TO_START: &str = "TaskFailedToStart";
pub const ESSENTIAL_EXITED_REASON: &str = "Essential container in task exited";

/// Asks for a task to stop. The first stop wins: a later one changes nothing.
/// Returns whether the task changed.
pub fn request_stop(task: &mut TaskRecord, now: Millis, code: &str, reason: &str) -> bool {
    if task.desired_status == DesiredStatus::Stopped {
        return false;
    }
    // A running task behind a load balancer first leaves it: DEACTIVATING
    // until its targets have drained, and its containers run on meanwhile.
    if !task.load_balancers.is_empty() && task.last_status == TaskStatus::Running {
        task.last_status = TaskStatus::Deactivating;
    }
    task.desired_status = DesiredStatus::Stopped;
    task.stop_code = Some(code.to_string());
    task.stopped_reason = Some(reason.to_string());
    task.stopping_at = Some(now);
    task.version += 1;
    true
}

/// The status the task's agent is told to bring about: RUNNING while the
/// task is DEACTIVATING (its load balancer targets drain; requests still in
/// flight must finish), else the desired status.
pub fn desired_for_agent(task_last: TaskStatus, desired: DesiredStatus) -> DesiredStatus {
    if task_last == TaskStatus::Deactivating {
        DesiredStatus::Running
    } else {
        desired
    }
}

/// What applying a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    pub changed: bool,
    /// The task reached STOPPED with this report: its reservation must be
    /// given back to the instance in the same write.
    pub became_stopped: bool,
}

/// Applies what an agent observed. Statuses never move backwards, so a
/// late or repeated report is harmless.
pub fn apply_report(task: &mut TaskRecord, report: &TaskStateReport, now: Millis) -> Applied {
    let before = task.clone();
    let was_stopped = task.last_status == TaskStatus::Stopped;

    for c in &report.containers {
        let Some(rec) = task.containers.iter_mut().find(|r| r.name == c.name) else {
            continue;
        };
        let rank = |s: &str| match s {
            "PENDING" => 0,
            "RUNNING" => 1,
            "STOPPED" => 2,
            _ => -1,
        };
        if rank(&c.status) >= rank(&rec.last_status) && rank(&c.status) >= 0 {
            rec.last_status = c.status.clone();
        }
        if c.runtime_id.is_some() {
            rec.runtime_id = c.runtime_id.clone();
        }
        if c.image_digest.is_some() {
            rec.image_digest = c.image_digest.clone();
        }
        if c.exit_code.is_some() {
            rec.exit_code = c.exit_code;
        }
        if c.reason.is_some() {
            rec.reason = c.reason.clone();
        }
        if !c.network_bindings.is_empty() {
            rec.network_bindings = c.network_bindings.clone();
        }
        if rec.has_health_check {
            if let Some(h) = &c.health_status {
                rec.health_status = Some(h.clone());
            }
        }
    }

    // An essential container that stopped stops the task.
    if task.desired_status == DesiredStatus::Running {
        let exited = task
            .containers
            .iter()
            .any(|c| c.essential && c.last_status == "STOPPED");
        let status = TaskStatus::parse(&report.status);
        // The agent gives a reason only when it could not start the task
        // (pull, create, dependency); a container that ran and exited, even
        // at once, is an essential container exit.
        if let (Some(TaskStatus::Stopped), Some(reason)) = (status, &report.reason) {
            let reason = reason.clone();
            request_stop(task, now, STOP_FAILED_TO_START, &reason);
        } else if exited || status == Some(TaskStatus::Stopped) {
            request_stop(task, now, STOP_ESSENTIAL_EXITED, ESSENTIAL_EXITED_REASON);
        }
    }

    if let Some(status) = TaskStatus::parse(&report.status) {
        if status > task.last_status {
            task.last_status = status;
            match status {
                TaskStatus::Running => {
                    task.started_at
                        .get_or_insert(report.started_at.unwrap_or(now));
                    task.connectivity_at.get_or_insert(now);
                }
                TaskStatus::Stopped => {
                    task.execution_stopped_at
                        .get_or_insert(report.execution_stopped_at.unwrap_or(now));
                    task.stopped_at = Some(now);
                    task.stopping_at.get_or_insert(now);
                    // A task can't be stopped with containers still running.
                    for c in &mut task.containers {
                        c.last_status = "STOPPED".into();
                    }
                }
                _ => {}
            }
        }
    }
    if let (Some(eni), Some(ip)) = (task.eni.as_mut(), &report.private_ipv4) {
        eni.private_ipv4 = Some(ip.clone());
    }
    if report.pull_started_at.is_some() && task.pull_started_at.is_none() {
        task.pull_started_at = report.pull_started_at;
    }
    if report.pull_stopped_at.is_some() && task.pull_stopped_at.is_none() {
        task.pull_stopped_at = report.pull_stopped_at;
    }
    task.health_status = task_health(task).to_string();

    let changed = *task != before;
    if changed && task.version == before.version {
        task.version += 1;
    }
    Applied {
        changed,
        became_stopped: !was_stopped && task.last_status == TaskStatus::Stopped,
    }
}

/// A task's health is its essential containers' health: UNHEALTHY if any is,
/// HEALTHY if all that have a check are, UNKNOWN otherwise.
pub fn task_health(task: &TaskRecord) -> &'static str {
    let checked: Vec<_> = task
        .containers
        .iter()
        .filter(|c| c.essential && c.has_health_check)
        .collect();
    if checked
        .iter()
        .any(|c| c.health_status.as_deref() == Some("UNHEALTHY"))
    {
        "UNHEALTHY"
    } else if !checked.is_empty()
        && checked
            .iter()
            .all(|c| c.health_status.as_deref() == Some("HEALTHY"))
    {
        "HEALTHY"
    } else {
        "UNKNOWN"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent_protocol::ContainerReport;
    use crate::records::ContainerRecord;

    fn container(name: &str, essential: bool) -> ContainerRecord {
        ContainerRecord::new(name, &format!("arn:c/{name}"), "img", essential, false)
    }

    fn task() -> TaskRecord {
        TaskRecord {
            cluster_arn: "arn:c".into(),
            task_definition_arn: "arn:td".into(),
            family: "web".into(),
            revision: 1,
            instance_id: Some("i1".into()),
            instance_arn: Some("arn:i1".into()),
            group: "family:web".into(),
            containers: vec![container("app", true), container("sidecar", false)],
            ..TaskRecord::new("t1", "arn:t1", "default", 1000)
        }
    }

    fn report(status: &str, containers: Vec<ContainerReport>) -> TaskStateReport {
        TaskStateReport {
            containers,
            ..TaskStateReport::new("default", "arn:t1", status)
        }
    }

    fn c(name: &str, status: &str, exit: Option<i32>) -> ContainerReport {
        ContainerReport {
            exit_code: exit,
            ..ContainerReport::new(name, &format!("docker-{name}"), status)
        }
    }

    #[test]
    fn runs_then_essential_exit_stops_task() {
        let mut t = task();
        let a = apply_report(
            &mut t,
            &report("RUNNING", vec![c("app", "RUNNING", None)]),
            2000,
        );
        assert!(a.changed && !a.became_stopped);
        assert_eq!(t.last_status, TaskStatus::Running);
        assert_eq!(t.started_at, Some(2000));

        apply_report(
            &mut t,
            &report("RUNNING", vec![c("app", "STOPPED", Some(3))]),
            3000,
        );
        assert_eq!(t.desired_status, DesiredStatus::Stopped);
        assert_eq!(t.stop_code.as_deref(), Some(STOP_ESSENTIAL_EXITED));
        assert_eq!(t.stopped_reason.as_deref(), Some(ESSENTIAL_EXITED_REASON));
        assert_eq!(t.containers[0].exit_code, Some(3));

        let a = apply_report(
            &mut t,
            &report("STOPPED", vec![c("sidecar", "STOPPED", Some(137))]),
            4000,
        );
        assert!(a.became_stopped);
        assert_eq!(t.stopped_at, Some(4000));
        assert!(t.containers.iter().all(|c| c.last_status == "STOPPED"));
    }

    #[test]
    fn non_essential_exit_keeps_task_running() {
        let mut t = task();
        apply_report(
            &mut t,
            &report("RUNNING", vec![c("sidecar", "STOPPED", Some(0))]),
            2000,
        );
        assert_eq!(t.desired_status, DesiredStatus::Running);
    }

    #[test]
    fn status_never_moves_backwards_and_repeats_are_noops() {
        let mut t = task();
        apply_report(&mut t, &report("RUNNING", vec![]), 2000);
        let a = apply_report(&mut t, &report("PENDING", vec![]), 2500);
        assert_eq!(t.last_status, TaskStatus::Running);
        assert!(!a.changed);
        let v = t.version;
        let a = apply_report(&mut t, &report("RUNNING", vec![]), 2600);
        assert!(!a.changed);
        assert_eq!(t.version, v);
    }

    #[test]
    fn user_stop_wins_over_later_causes() {
        let mut t = task();
        apply_report(&mut t, &report("RUNNING", vec![]), 2000);
        assert!(request_stop(&mut t, 2500, STOP_USER_INITIATED, "done"));
        apply_report(
            &mut t,
            &report("STOPPED", vec![c("app", "STOPPED", Some(143))]),
            3000,
        );
        assert_eq!(t.stop_code.as_deref(), Some(STOP_USER_INITIATED));
        assert_eq!(t.stopped_reason.as_deref(), Some("done"));
        assert_eq!(t.stopping_at, Some(2500));
        assert!(!request_stop(&mut t, 4000, STOP_USER_INITIATED, "again"));
    }

    #[test]
    fn failure_to_start_is_task_failed_to_start() {
        let mut t = task();
        let mut r = report("STOPPED", vec![]);
        r.reason = Some("CannotPullContainerError: no such image".into());
        let a = apply_report(&mut t, &r, 2000);
        assert!(a.became_stopped);
        assert_eq!(t.stop_code.as_deref(), Some(STOP_FAILED_TO_START));
        assert!(t
            .stopped_reason
            .as_deref()
            .unwrap()
            .starts_with("CannotPullContainerError"));
    }

    #[test]
    fn health_aggregates_essential_containers() {
        let mut t = task();
        t.containers[0].has_health_check = true;
        let mut r = c("app", "RUNNING", None);
        r.health_status = Some("HEALTHY".into());
        apply_report(&mut t, &report("RUNNING", vec![r.clone()]), 2000);
        assert_eq!(t.health_status, "HEALTHY");
        r.health_status = Some("UNHEALTHY".into());
        apply_report(&mut t, &report("RUNNING", vec![r]), 3000);
        assert_eq!(t.health_status, "UNHEALTHY");
    }
}
