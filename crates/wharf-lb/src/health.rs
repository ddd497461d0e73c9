//! Target health: ELB's states and reason codes, and the hysteresis of a
//! health checker (a target changes state only after `HealthyThresholdCount`
//! or `UnhealthyThresholdCount` consecutive results the other way).

use crate::records::{HealthRecord, Millis, TargetGroupRecord, TargetRecord};

/// What DescribeTargetHealth says of a target: (state, reason, description).
pub fn describe(
    tg: &TargetGroupRecord,
    target: Option<&TargetRecord>,
    health: Option<&HealthRecord>,
    in_use: bool,
    _now: Millis,
) -> (&'static str, Option<&'static str>, Option<&'static str>) {
    let Some(t) = target else {
        return (
            "unused",
            Some("Target.NotRegistered"),
            Some("Target is not registered to the target group"),
        );
    };
    if t.deregistered_at.is_some() {
        return (
            "draining",
            Some("Target.DeregistrationInProgress"),
            Some("Target deregistration is in progress"),
        );
    }
    if !in_use {
        return (
            "unused",
            Some("Target.NotInUse"),
            Some("Target group is not configured to receive traffic from the load balancer"),
        );
    }
    if !tg.health_check.enabled {
        return (
            "unavailable",
            Some("Target.HealthCheckDisabled"),
            Some("Health checks are disabled"),
        );
    }
    match health.filter(|h| h.registered_at == t.registered_at) {
        None => (
            "initial",
            Some("Elb.RegistrationInProgress"),
            Some("Target registration is in progress"),
        ),
        Some(h) => match h.state.as_str() {
            "healthy" => ("healthy", None, None),
            "unhealthy" => (
                "unhealthy",
                Some(reason_code(h.reason.as_deref())),
                Some(reason_text(h.reason.as_deref())),
            ),
            _ => (
                "initial",
                Some("Elb.InitialHealthChecking"),
                Some("Initial health checks in progress"),
            ),
        },
    }
}

fn reason_code(r: Option<&str>) -> &'static str {
    match r {
        Some("Target.ResponseCodeMismatch") => "Target.ResponseCodeMismatch",
        Some("Target.Timeout") => "Target.Timeout",
        _ => "Target.FailedHealthChecks",
    }
}

fn reason_text(r: Option<&str>) -> &'static str {
    match r {
        Some("Target.ResponseCodeMismatch") => "Health checks failed with these codes",
        Some("Target.Timeout") => "Request timed out",
        _ => "Health checks failed",
    }
}

/// One probe's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Ok,
    /// An HTTP answer whose code the matcher does not accept.
    Mismatch(u16),
    Timeout,
    /// Connection refused or reset, or a malformed answer.
    Failed,
}

impl Probe {
    fn reason(&self) -> Option<&'static str> {
        match self {
            Probe::Ok => None,
            Probe::Mismatch(_) => Some("Target.ResponseCodeMismatch"),
            Probe::Timeout => Some("Target.Timeout"),
            Probe::Failed => Some("Target.FailedHealthChecks"),
        }
    }
}

/// A health checker's memory of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    /// `initial`, `healthy` or `unhealthy`.
    pub state: &'static str,
    pub reason: Option<&'static str>,
    ok_streak: i32,
    fail_streak: i32,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            state: "initial",
            reason: None,
            ok_streak: 0,
            fail_streak: 0,
        }
    }
}

impl Tracker {
    /// A tracker resuming from a stored verdict.
    pub fn resume(state: &str) -> Tracker {
        Tracker {
            state: match state {
                "healthy" => "healthy",
                "unhealthy" => "unhealthy",
                _ => "initial",
            },
            ..Tracker::default()
        }
    }

    /// Takes one result; true when the state changed.
    pub fn observe(
        &mut self,
        probe: &Probe,
        healthy_threshold: i32,
        unhealthy_threshold: i32,
    ) -> bool {
        if *probe == Probe::Ok {
            self.ok_streak = self.ok_streak.saturating_add(1);
            self.fail_streak = 0;
            if self.state != "healthy" && self.ok_streak >= healthy_threshold {
                self.state = "healthy";
                self.reason = None;
                return true;
            }
        } else {
            self.fail_streak = self.fail_streak.saturating_add(1);
            self.ok_streak = 0;
            if self.state != "unhealthy" && self.fail_streak >= unhealthy_threshold {
                self.state = "unhealthy";
                self.reason = probe.reason();
                return true;
            }
            if self.state == "unhealthy" && self.reason != probe.reason() {
                self.reason = probe.reason();
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_state_only_after_the_thresholds() {
        let mut t = Tracker::default();
        assert!(!t.observe(&Probe::Ok, 3, 2));
        assert!(!t.observe(&Probe::Ok, 3, 2));
        assert!(t.observe(&Probe::Ok, 3, 2));
        assert_eq!(t.state, "healthy");
        assert!(!t.observe(&Probe::Timeout, 3, 2));
        // A success in between resets the failure streak.
        assert!(!t.observe(&Probe::Ok, 3, 2));
        assert!(!t.observe(&Probe::Mismatch(500), 3, 2));
        assert!(t.observe(&Probe::Mismatch(500), 3, 2));
        assert_eq!(
            (t.state, t.reason),
            ("unhealthy", Some("Target.ResponseCodeMismatch"))
        );
        assert!(
            t.observe(&Probe::Failed, 3, 2),
            "the reason follows the latest failure"
        );
        assert_eq!(t.reason, Some("Target.FailedHealthChecks"));
    }

    #[test]
    fn initial_turns_unhealthy_after_failures() {
        let mut t = Tracker::default();
        assert!(!t.observe(&Probe::Failed, 5, 2));
        assert!(t.observe(&Probe::Failed, 5, 2));
        assert_eq!(t.state, "unhealthy");
    }
}
