//! Container dependencies (`dependsOn`) at start, and their reverse at stop.
//! Pure functions over what Docker shows, so each converge pass can decide
//! again from scratch.

use crate::runtime::{ContainerState, ContainerStatus, Health};
use crate::spec::CONTAINER_NAME_LABEL;
use std::time::{Duration, SystemTime};
use wharf_model::ecs::{self, ContainerCondition};

/// How long a container waits for its dependencies when its definition has
/// no `startTimeout` (the ECS agent's `ECS_CONTAINER_START_TIMEOUT` default).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(180);

/// Whether a container may be created now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Ready,
    /// A dependency has not reached its condition yet.
    Wait,
    /// A dependency can never reach its condition; the task can't start.
    Fail(String),
}

fn named<'a>(existing: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    existing
        .iter()
        .find(|c| c.labels.get(CONTAINER_NAME_LABEL).map(String::as_str) == Some(name))
}

/// Decides whether `def` can start, given the task's containers as Docker
/// shows them. A dependency that can no longer be met (exited non-zero for
/// SUCCESS, exited for HEALTHY, or past the waiting container's
/// `startTimeout`) fails the task rather than leaving it PENDING for ever.
pub fn gate(def: &ecs::ContainerDefinition, existing: &[ContainerStatus], now: SystemTime) -> Gate {
    let timeout = def
        .start_timeout
        .map(|s| Duration::from_secs(s.max(0) as u64))
        .unwrap_or(DEFAULT_START_TIMEOUT);
    let me = def.name.as_deref().unwrap_or_default();
    let mut gate = Gate::Ready;
    for d in def.depends_on.iter().flatten() {
        let Some(dep) = named(existing, &d.container_name) else {
            gate = Gate::Wait;
            continue;
        };
        let exited = matches!(dep.state, ContainerState::Exited | ContainerState::Dead);
        let code = dep.exit_code.unwrap_or(-1);
        let met = match d.condition {
            ContainerCondition::Start => dep.started_at.is_some() || exited,
            ContainerCondition::Complete => exited,
            ContainerCondition::Success if exited && code != 0 => {
                return Gate::Fail(format!(
                    "dependency container '{}' of '{me}' exited with code {code}; condition SUCCESS can't be met",
                    d.container_name
                ))
            }
            ContainerCondition::Success => exited,
            ContainerCondition::Healthy if exited => {
                return Gate::Fail(format!(
                    "dependency container '{}' of '{me}' exited before it became HEALTHY",
                    d.container_name
                ))
            }
            ContainerCondition::Healthy => dep.health == Some(Health::Healthy),
            ContainerCondition::Unknown(_) => true,
        };
        if met {
            continue;
        }
        let since = dep.started_at.unwrap_or(now);
        if now.duration_since(since).unwrap_or_default() > timeout {
            return Gate::Fail(format!(
                "timed out after {}s waiting for dependency container '{}' of '{me}' to reach {}",
                timeout.as_secs(),
                d.container_name,
                d.condition.as_str()
            ));
        }
        gate = Gate::Wait;
    }
    gate
}

/// Groups containers for stopping: those nothing depends on first, then
/// their dependencies, so dependencies are reversed at stop. Each group may
/// stop concurrently.
pub fn stop_waves(defs: &[ecs::ContainerDefinition]) -> Vec<Vec<String>> {
    // depth(c) = 1 + depth of its deepest dependent; leaves (no dependents) are 0.
    let mut depth: std::collections::HashMap<&str, usize> = defs
        .iter()
        .filter_map(|d| d.name.as_deref())
        .map(|n| (n, 0))
        .collect();
    // Dependency chains are acyclic (validated at registration) and at most
    // as long as the container list.
    for _ in 0..defs.len() {
        let mut changed = false;
        for d in defs {
            let mine = depth[d.name.as_deref().unwrap_or_default()];
            for dep in d.depends_on.iter().flatten() {
                if let Some(v) = depth.get_mut(dep.container_name.as_str()) {
                    if *v < mine + 1 {
                        *v = mine + 1;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    let max = depth.values().copied().max().unwrap_or(0);
    (0..=max)
        .map(|level| {
            defs.iter()
                .filter_map(|d| d.name.clone())
                .filter(|n| depth[n.as_str()] == level)
                .collect()
        })
        .filter(|w: &Vec<String>| !w.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn def(name: &str, deps: &[(&str, &str)]) -> ecs::ContainerDefinition {
        ecs::ContainerDefinition {
            name: Some(name.into()),
            depends_on: Some(
                deps.iter()
                    .map(|(n, c)| ecs::ContainerDependency {
                        container_name: n.to_string(),
                        condition: ContainerCondition::from(*c),
                    })
                    .collect(),
            ),
            start_timeout: Some(60),
            ..Default::default()
        }
    }

    fn status(
        name: &str,
        state: ContainerState,
        code: Option<i64>,
        health: Option<Health>,
    ) -> ContainerStatus {
        ContainerStatus {
            id: name.into(),
            name: name.into(),
            labels: HashMap::from([(CONTAINER_NAME_LABEL.to_string(), name.to_string())]),
            image: "i".into(),
            state,
            exit_code: code,
            oom_killed: false,
            error: None,
            started_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1000)),
            finished_at: None,
            health,
            ports: vec![],
            volumes: vec![],
            ip: None,
            image_id: None,
            created_at: None,
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn each_condition_waits_then_opens() {
        let running = [status(
            "a",
            ContainerState::Running,
            None,
            Some(Health::Starting),
        )];
        let ok0 = [status("a", ContainerState::Exited, Some(0), None)];
        let healthy = [status(
            "a",
            ContainerState::Running,
            None,
            Some(Health::Healthy),
        )];
        assert_eq!(
            gate(&def("b", &[("a", "START")]), &[], at(1001)),
            Gate::Wait
        );
        assert_eq!(
            gate(&def("b", &[("a", "START")]), &running, at(1001)),
            Gate::Ready
        );
        assert_eq!(
            gate(&def("b", &[("a", "COMPLETE")]), &running, at(1001)),
            Gate::Wait
        );
        assert_eq!(
            gate(&def("b", &[("a", "COMPLETE")]), &ok0, at(1001)),
            Gate::Ready
        );
        assert_eq!(
            gate(&def("b", &[("a", "SUCCESS")]), &running, at(1001)),
            Gate::Wait
        );
        assert_eq!(
            gate(&def("b", &[("a", "SUCCESS")]), &ok0, at(1001)),
            Gate::Ready
        );
        assert_eq!(
            gate(&def("b", &[("a", "HEALTHY")]), &running, at(1001)),
            Gate::Wait
        );
        assert_eq!(
            gate(&def("b", &[("a", "HEALTHY")]), &healthy, at(1001)),
            Gate::Ready
        );
    }

    #[test]
    fn unreachable_conditions_fail() {
        let failed = [status("a", ContainerState::Exited, Some(3), None)];
        let Gate::Fail(why) = gate(&def("b", &[("a", "SUCCESS")]), &failed, at(1001)) else {
            panic!("SUCCESS on exit 3 must fail");
        };
        assert!(why.contains("exited with code 3"), "{why}");
        assert!(matches!(
            gate(&def("b", &[("a", "HEALTHY")]), &failed, at(1001)),
            Gate::Fail(_)
        ));
        // COMPLETE accepts any exit code.
        assert_eq!(
            gate(&def("b", &[("a", "COMPLETE")]), &failed, at(1001)),
            Gate::Ready
        );
        // Waiting past startTimeout (60 s after the dependency started) fails.
        let running = [status(
            "a",
            ContainerState::Running,
            None,
            Some(Health::Starting),
        )];
        assert_eq!(
            gate(&def("b", &[("a", "HEALTHY")]), &running, at(1059)),
            Gate::Wait
        );
        let Gate::Fail(why) = gate(&def("b", &[("a", "HEALTHY")]), &running, at(1061)) else {
            panic!("past startTimeout must fail");
        };
        assert!(why.contains("timed out after 60s"), "{why}");
    }

    #[test]
    fn stop_reverses_dependencies() {
        let defs = [
            def("db", &[]),
            def("migrate", &[("db", "HEALTHY")]),
            def("app", &[("migrate", "SUCCESS"), ("db", "START")]),
            def("sidecar", &[]),
        ];
        assert_eq!(
            stop_waves(&defs),
            vec![
                vec!["app".to_string(), "sidecar".into()],
                vec!["migrate".into()],
                vec!["db".into()]
            ]
        );
    }
}
