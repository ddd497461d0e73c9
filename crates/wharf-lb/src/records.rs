//! What the load balancer keeps in the store, and where.
//!
//! Each resource is its own record, so the data plane's health writes never
//! contend with API writes: `/elb/loadbalancers/LB`,
//! `/elb/targetgroups/TG`, `/elb/listeners/LB/ID`, `/elb/rules/LB/LISTENER/ID`,
//! `/elb/targets/TG/ID/PORT` (a registration; draining once deregistered)
//! and `/elb/health/TG/ID/PORT` (the health checker's verdict). `LB` and
//! `TG` are names scoped by region ([`scoped`]: `REGION:NAME`): ELB is
//! regional, so the same name in two regions is two resources.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wharf_model::elbv2 as m;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub const PREFIX: &str = "/elb/";

/// A load balancer's or target group's name as its keys hold it: in its
/// region (`:` never appears in a region or an ELB name).
pub fn scoped(region: &str, name: &str) -> String {
    format!("{region}:{name}")
}

/// The region an ELBv2 ARN names.
pub fn region_of(arn: &str) -> &str {
    arn.split(':').nth(3).unwrap_or_default()
}

impl LoadBalancerRecord {
    /// Its name as its keys hold it ([`scoped`]).
    pub fn scoped_name(&self) -> String {
        scoped(region_of(&self.arn), &self.name)
    }
}

impl TargetGroupRecord {
    /// Its name as its keys hold it ([`scoped`]).
    pub fn scoped_name(&self) -> String {
        scoped(region_of(&self.arn), &self.name)
    }
}

impl ListenerRecord {
    /// Its default rule's ARN: the listener's, as a rule, with the
    /// listener's own id as the rule id.
    pub fn default_rule_arn(&self) -> String {
        format!(
            "{}/{}",
            self.arn.replacen(":listener/", ":listener-rule/", 1),
            self.id
        )
    }
    /// Its load balancer's name as its keys hold it ([`scoped`]).
    pub fn scoped_load_balancer(&self) -> String {
        scoped(region_of(&self.arn), &self.load_balancer)
    }
}

pub mod keys {
    pub fn load_balancer(name: &str) -> String {
        format!("/elb/loadbalancers/{name}")
    }
    pub const LOAD_BALANCERS: &str = "/elb/loadbalancers/";
    pub fn target_group(name: &str) -> String {
        format!("/elb/targetgroups/{name}")
    }
    pub const TARGET_GROUPS: &str = "/elb/targetgroups/";
    pub fn listener(lb: &str, id: &str) -> String {
        format!("/elb/listeners/{lb}/{id}")
    }
    pub fn listeners_of(lb: &str) -> String {
        format!("/elb/listeners/{lb}/")
    }
    pub const LISTENERS: &str = "/elb/listeners/";
    pub fn rule(lb: &str, listener: &str, id: &str) -> String {
        format!("/elb/rules/{lb}/{listener}/{id}")
    }
    pub fn rules_of_listener(lb: &str, listener: &str) -> String {
        format!("/elb/rules/{lb}/{listener}/")
    }
    pub fn rules_of(lb: &str) -> String {
        format!("/elb/rules/{lb}/")
    }
    pub const RULES: &str = "/elb/rules/";
    pub fn target(tg: &str, id: &str, port: i32) -> String {
        format!("/elb/targets/{tg}/{id}/{port}")
    }
    pub fn targets_of(tg: &str) -> String {
        format!("/elb/targets/{tg}/")
    }
    pub const TARGETS: &str = "/elb/targets/";
    pub fn health(tg: &str, id: &str, port: i32) -> String {
        format!("/elb/health/{tg}/{id}/{port}")
    }
    pub fn health_of(tg: &str) -> String {
        format!("/elb/health/{tg}/")
    }
    pub const HEALTH: &str = "/elb/health/";
}

pub type Tags = BTreeMap<String, String>;
pub type Attributes = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancerRecord {
    pub arn: String,
    pub name: String,
    /// The 16 hex digits that end the ARN.
    pub id: String,
    /// `application` or `network`.
    pub kind: String,
    pub scheme: String,
    pub ip_address_type: String,
    pub vpc_id: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub created: Millis,
    pub dns_name: String,
    pub attributes: Attributes,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub enabled: bool,
    pub protocol: String,
    /// `traffic-port` or a port number.
    pub port: String,
    /// HTTP(S) only.
    pub path: Option<String>,
    pub interval_seconds: i32,
    pub timeout_seconds: i32,
    pub healthy_threshold: i32,
    pub unhealthy_threshold: i32,
    /// HTTP(S) only: codes and ranges, `200`, `200,202`, `200-299`.
    pub matcher: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetGroupRecord {
    pub arn: String,
    pub name: String,
    pub id: String,
    pub protocol: String,
    pub protocol_version: Option<String>,
    pub port: i32,
    pub vpc_id: String,
    /// `instance` or `ip`.
    pub target_type: String,
    pub ip_address_type: String,
    pub health_check: HealthCheck,
    pub attributes: Attributes,
    pub tags: Tags,
}

impl TargetGroupRecord {
    /// `deregistration_delay.timeout_seconds` in milliseconds.
    pub fn deregistration_delay_ms(&self) -> Millis {
        self.attributes
            .get("deregistration_delay.timeout_seconds")
            .and_then(|v| v.parse::<Millis>().ok())
            .unwrap_or(300)
            .saturating_mul(1000)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerRecord {
    pub arn: String,
    pub id: String,
    pub load_balancer_arn: String,
    pub load_balancer: String,
    pub port: i32,
    pub protocol: String,
    pub ssl_policy: Option<String>,
    pub certificates: Vec<m::Certificate>,
    pub alpn_policy: Vec<String>,
    pub default_actions: Vec<m::Action>,
    pub attributes: Attributes,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleRecord {
    pub arn: String,
    pub id: String,
    pub listener_arn: String,
    pub priority: i32,
    pub conditions: Vec<m::RuleCondition>,
    pub actions: Vec<m::Action>,
    pub tags: Tags,
}

/// A registered target. Deregistering sets `deregistered_at`: the target
/// drains for the group's deregistration delay, then the record goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRecord {
    pub id: String,
    pub port: i32,
    pub availability_zone: Option<String>,
    pub registered_at: Millis,
    pub deregistered_at: Option<Millis>,
}

/// What the health checker last concluded about a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    /// `initial`, `healthy` or `unhealthy`.
    pub state: String,
    pub reason: Option<String>,
    pub description: Option<String>,
    /// When the state was last changed.
    pub since: Millis,
    /// The registration this verdict is about (a re-registered target
    /// starts again from `initial`).
    pub registered_at: Millis,
}
