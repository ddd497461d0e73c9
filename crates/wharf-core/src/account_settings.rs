//! ECS account settings: which values Wharf accepts for each, what each
//! is when nobody set it, and which ones nobody may set. A value Wharf
//! cannot honour is refused by name, never stored.

use crate::error::{invalid, CoreError};

pub const CONTAINER_INSIGHTS: &str = "containerInsights";
pub const DEFAULT_LOG_DRIVER_MODE: &str = "defaultLogDriverMode";
pub const GUARD_DUTY_ACTIVATE: &str = "guardDutyActivate";

/// One setting's rules.
#[derive(Debug)]
pub struct Rule {
    pub name: &'static str,
    /// What it is until set (ECS's default where Wharf does the same).
    pub default: &'static str,
    /// The values that may be set.
    pub accepts: &'static [&'static str],
    /// Values ECS has that Wharf refuses, and why.
    pub refuses: &'static [(&'static str, &'static str)],
    /// Managed by AWS, not by users.
    pub read_only: bool,
}

const ON_OFF: &[&str] = &["enabled", "disabled"];
const LONG_ARNS: &[(&str, &str)] = &[(
    "disabled",
    "Wharf always uses the long ARN format (with the cluster name); it cannot be turned off.",
)];

/// Every setting of the model, in its order.
pub const RULES: &[Rule] = &[
    Rule {
        name: "serviceLongArnFormat",
        default: "enabled",
        accepts: &["enabled"],
        refuses: LONG_ARNS,
        read_only: false,
    },
    Rule {
        name: "taskLongArnFormat",
        default: "enabled",
        accepts: &["enabled"],
        refuses: LONG_ARNS,
        read_only: false,
    },
    Rule {
        name: "containerInstanceLongArnFormat",
        default: "enabled",
        accepts: &["enabled"],
        refuses: LONG_ARNS,
        read_only: false,
    },
    Rule {
        name: "awsvpcTrunking",
        default: "enabled",
        accepts: &["enabled"],
        refuses: &[(
            "disabled",
            "Wharf places awsvpc tasks with no ENI limit per instance (as with trunking); there is no limit to turn back on.",
        )],
        read_only: false,
    },
    Rule {
        // New clusters take it as their containerInsights setting.
        name: CONTAINER_INSIGHTS,
        default: "disabled",
        accepts: &["enabled", "disabled", "enhanced"],
        refuses: &[],
        read_only: false,
    },
    Rule {
        name: "fargateFIPSMode",
        default: "disabled",
        accepts: &["disabled"],
        refuses: &[(
            "enabled",
            "Wharf's managed capacity has no FIPS 140 validated mode.",
        )],
        read_only: false,
    },
    Rule {
        // Only API keys call today (the account's root, allowed
        // everything); IAM principals will be checked for ecs:TagResource.
        name: "tagResourceAuthorization",
        default: "on",
        accepts: &["on", "off"],
        refuses: &[],
        read_only: false,
    },
    Rule {
        // Wharf never retires a task for maintenance, so no wait is cut short.
        name: "fargateTaskRetirementWaitPeriod",
        default: "7",
        accepts: &["0", "7", "14"],
        refuses: &[],
        read_only: false,
    },
    Rule {
        name: GUARD_DUTY_ACTIVATE,
        default: "off",
        accepts: &[],
        refuses: &[],
        read_only: true,
    },
    Rule {
        // New tasks' containers whose logConfiguration has no `mode`.
        name: DEFAULT_LOG_DRIVER_MODE,
        default: "non-blocking",
        accepts: &["blocking", "non-blocking"],
        refuses: &[],
        read_only: false,
    },
    Rule {
        // As fargateTaskRetirementWaitPeriod: no retirement to schedule.
        name: "fargateEventWindows",
        default: "disabled",
        accepts: ON_OFF,
        refuses: &[],
        read_only: false,
    },
];

pub fn rule(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.name == name)
}

/// The rule of a setting the model names.
pub fn known(name: &str) -> Result<&'static Rule, CoreError> {
    rule(name).ok_or_else(|| invalid(format!("Unknown account setting name '{name}'.")))
}

/// The rule of a setting users may set or delete (not an AWS-managed one).
pub fn settable(name: &str) -> Result<&'static Rule, CoreError> {
    let r = known(name)?;
    if r.read_only {
        return Err(invalid(format!(
            "The {name} account setting is read-only: Amazon GuardDuty manages it."
        )));
    }
    Ok(r)
}

/// Whether `value` may be set for the setting `name`.
pub fn check(name: &str, value: &str) -> Result<&'static Rule, CoreError> {
    let r = settable(name)?;
    if let Some((_, why)) = r.refuses.iter().find(|(v, _)| *v == value) {
        return Err(invalid(format!("{name} {value}: {why}")));
    }
    if !r.accepts.contains(&value) {
        return Err(invalid(format!(
            "Invalid value '{value}' for the account setting {name}: expected {}.",
            r.accepts.join(", ")
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_setting_has_a_rule_whose_default_it_accepts() {
        for name in wharf_model::ecs::SettingName::VALUES {
            let r = rule(name).unwrap_or_else(|| panic!("no rule for {name}"));
            assert!(r.read_only || r.accepts.contains(&r.default), "{name}");
        }
    }

    #[test]
    fn what_wharf_cannot_honour_is_refused_with_why() {
        assert!(check("taskLongArnFormat", "disabled")
            .unwrap_err()
            .to_string()
            .contains("long ARN format"));
        assert!(check(GUARD_DUTY_ACTIVATE, "on")
            .unwrap_err()
            .to_string()
            .contains("read-only"));
        assert!(check(CONTAINER_INSIGHTS, "sometimes").is_err());
        assert!(check(DEFAULT_LOG_DRIVER_MODE, "blocking").is_ok());
        assert!(check("fargateTaskRetirementWaitPeriod", "3").is_err());
    }
}
