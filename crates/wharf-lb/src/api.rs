//! The ELBv2 API over the store. Each handler reads the records it needs
//! with their revisions, validates, and writes with one compare-and-swap
//! transaction, retried on conflict; a refused request writes nothing.

use crate::arn;
use crate::records::{
    keys, HealthRecord, ListenerRecord, LoadBalancerRecord, Millis, RuleRecord, TargetGroupRecord,
    TargetRecord,
};
use crate::validate::{self, invalid_config, not_supported, validation};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::net::IpAddr;
use wharf_model::elbv2 as m;
use wharf_protocol::{query, AwsError};
use wharf_store::typed::{self, Versioned};
use wharf_store::{Compare, DynStore, Op, StoreError, Txn};

/// How many times an optimistic write is retried before giving up.
const MAX_ATTEMPTS: usize = 50;

/// What the deployment decides about load balancers.
#[derive(Debug, Clone)]
pub struct LbConfig {
    /// Where listeners bind (loopback unless configured).
    pub bind: IpAddr,
    /// Load balancers' DNS names are `NAME-ID.REGION.<dns_suffix>`.
    pub dns_suffix: String,
    /// Whether CreateListener should check that the port can be bound on
    /// this host (off in tests that only exercise the API).
    pub probe_ports: bool,
}

impl Default for LbConfig {
    fn default() -> Self {
        LbConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            dns_suffix: "elb.localhost".into(),
            probe_ports: true,
        }
    }
}

#[derive(Clone)]
pub struct Lb {
    pub store: DynStore,
    pub config: LbConfig,
}

/// The account and region a request acts in (from its signature).
#[derive(Debug, Clone)]
pub struct Scope {
    pub region: String,
    pub account: String,
}

/// The VPC a load balancer or target group is in when none is given.
pub const DEFAULT_VPC: &str = "vpc-00000000000000000";

/// Every resource of a kind at most: ELB's default quotas, and
/// what DescribeAccountLimits reports.
const LIMITS: &[(&str, u32)] = &[
    ("application-load-balancers", 50),
    ("network-load-balancers", 50),
    ("target-groups", 3000),
    ("listeners-per-application-load-balancer", 50),
    ("listeners-per-network-load-balancer", 50),
    ("rules-per-application-load-balancer", 100),
    ("targets-per-application-load-balancer", 1000),
    ("targets-per-network-load-balancer", 3000),
    ("targets-per-target-group", 1000),
    ("target-groups-per-action-on-application-load-balancer", 5),
    ("condition-values-per-alb-rule", 5),
    ("condition-wildcards-per-alb-rule", 5),
    ("certificates-per-application-load-balancer", 25),
];

fn limit(name: &str) -> usize {
    LIMITS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v as usize)
        .unwrap_or(usize::MAX)
}

fn from_store(e: StoreError) -> AwsError {
    tracing::error!(error = %e, "store failure");
    AwsError::internal(format!("Storage failure: {e}"))
}

fn contention() -> AwsError {
    AwsError::internal("Too much contention on a resource; try again.")
}

async fn get<T: DeserializeOwned>(lb: &Lb, key: &str) -> Result<Option<Versioned<T>>, AwsError> {
    typed::get(&*lb.store, key).await.map_err(from_store)
}

async fn list<T: DeserializeOwned>(lb: &Lb, prefix: &str) -> Result<Vec<Versioned<T>>, AwsError> {
    Ok(typed::list(&*lb.store, prefix).await.map_err(from_store)?.0)
}

async fn commit(lb: &Lb, txn: Txn) -> Result<bool, AwsError> {
    typed::commit(&*lb.store, txn).await.map_err(from_store)
}

/// Runs one ELBv2 action. `params` are the form parameters without
/// `Action` and `Version`.
pub async fn dispatch(
    lb: &Lb,
    scope: &Scope,
    now: Millis,
    action: &str,
    params: &[(String, String)],
    request_id: &str,
) -> Result<Vec<u8>, AwsError> {
    let api = Api { lb, scope, now };
    let api = &api;
    macro_rules! op {
        ($f:ident) => {
            query::call(&m::SCHEMA, action, params, request_id, |r| api.$f(r)).await
        };
    }
    match action {
        "CreateLoadBalancer" => op!(create_load_balancer),
        "DescribeLoadBalancers" => op!(describe_load_balancers),
        "DeleteLoadBalancer" => op!(delete_load_balancer),
        "DescribeLoadBalancerAttributes" => op!(describe_load_balancer_attributes),
        "ModifyLoadBalancerAttributes" => op!(modify_load_balancer_attributes),
        "SetSecurityGroups" => op!(set_security_groups),
        "SetSubnets" => op!(set_subnets),
        "SetIpAddressType" => op!(set_ip_address_type),
        "CreateTargetGroup" => op!(create_target_group),
        "DescribeTargetGroups" => op!(describe_target_groups),
        "ModifyTargetGroup" => op!(modify_target_group),
        "DeleteTargetGroup" => op!(delete_target_group),
        "DescribeTargetGroupAttributes" => op!(describe_target_group_attributes),
        "ModifyTargetGroupAttributes" => op!(modify_target_group_attributes),
        "RegisterTargets" => op!(register_targets),
        "DeregisterTargets" => op!(deregister_targets),
        "DescribeTargetHealth" => op!(describe_target_health),
        "CreateListener" => op!(create_listener),
        "DescribeListeners" => op!(describe_listeners),
        "ModifyListener" => op!(modify_listener),
        "DeleteListener" => op!(delete_listener),
        "DescribeListenerAttributes" => op!(describe_listener_attributes),
        "ModifyListenerAttributes" => op!(modify_listener_attributes),
        "CreateRule" => op!(create_rule),
        "DescribeRules" => op!(describe_rules),
        "ModifyRule" => op!(modify_rule),
        "DeleteRule" => op!(delete_rule),
        "SetRulePriorities" => op!(set_rule_priorities),
        "AddTags" => op!(add_tags),
        "RemoveTags" => op!(remove_tags),
        "DescribeTags" => op!(describe_tags),
        "DescribeAccountLimits" => op!(describe_account_limits),
        "DescribeSSLPolicies" => op!(describe_ssl_policies),
        other if m::OPERATIONS.contains(&other) => Err(not_supported(other)),
        other => Err(AwsError::client(
            "InvalidAction",
            format!("Could not find operation {other} for version 2015-12-01"),
        )),
    }
}

struct Api<'a> {
    lb: &'a Lb,
    scope: &'a Scope,
    now: Millis,
}

fn lb_not_found() -> AwsError {
    AwsError::client(
        "LoadBalancerNotFound",
        "One or more load balancers not found",
    )
}

fn tg_not_found() -> AwsError {
    AwsError::client("TargetGroupNotFound", "One or more target groups not found")
}

fn listener_not_found() -> AwsError {
    AwsError::client("ListenerNotFound", "One or more listeners not found")
}

fn rule_not_found() -> AwsError {
    AwsError::client("RuleNotFound", "One or more rules not found")
}

/// A page of `items` after `marker` (the key of the last item returned),
/// `page_size` 1-400 (default 400).
fn page<T>(
    items: Vec<(String, T)>,
    marker: Option<&str>,
    page_size: Option<i32>,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let size = match page_size {
        None => 400,
        Some(n) if (1..=400).contains(&n) => n as usize,
        Some(_) => return Err(validation("PageSize must be between 1 and 400")),
    };
    let mut rest: Vec<(String, T)> = match marker {
        None => items,
        Some(mk) => items.into_iter().filter(|(k, _)| k.as_str() > mk).collect(),
    };
    let next = (rest.len() > size).then(|| rest[size - 1].0.clone());
    rest.truncate(size);
    Ok((rest.into_iter().map(|(_, v)| v).collect(), next))
}

fn lb_to_wire(r: &LoadBalancerRecord, vpc: Option<&str>) -> m::LoadBalancer {
    let zones: Vec<m::AvailabilityZone> = r
        .subnets
        .iter()
        .enumerate()
        .map(|(i, s)| m::AvailabilityZone {
            zone_name: Some(zone_name(&r.arn, i)),
            subnet_id: Some(s.clone()),
            ..Default::default()
        })
        .collect();
    m::LoadBalancer {
        load_balancer_arn: Some(r.arn.clone()),
        dns_name: Some(r.dns_name.clone()),
        canonical_hosted_zone_id: Some("Z0WHARF0000000".into()),
        created_time: Some(r.created as f64 / 1000.0),
        load_balancer_name: Some(r.name.clone()),
        scheme: Some(r.scheme.as_str().into()),
        vpc_id: Some(vpc.unwrap_or(&r.vpc_id).to_owned()),
        state: Some(m::LoadBalancerState {
            code: Some(m::LoadBalancerStateEnum::Active),
            reason: None,
        }),
        r#type: Some(r.kind.as_str().into()),
        availability_zones: Some(zones),
        security_groups: (r.kind == "application").then(|| r.security_groups.clone()),
        ip_address_type: Some(r.ip_address_type.as_str().into()),
        ..Default::default()
    }
}

/// `REGIONa`, `REGIONb`, …: the zone of the n-th subnet.
fn zone_name(arn: &str, i: usize) -> String {
    let region = arn.split(':').nth(3).unwrap_or("us-east-1");
    let letter = (b'a' + (i % 26) as u8) as char;
    format!("{region}{letter}")
}

fn tg_to_wire(r: &TargetGroupRecord, lbs: Vec<String>) -> m::TargetGroup {
    let hc = &r.health_check;
    m::TargetGroup {
        target_group_arn: Some(r.arn.clone()),
        target_group_name: Some(r.name.clone()),
        protocol: Some(r.protocol.as_str().into()),
        port: Some(r.port),
        vpc_id: Some(r.vpc_id.clone()),
        health_check_protocol: Some(hc.protocol.as_str().into()),
        health_check_port: Some(hc.port.clone()),
        health_check_enabled: Some(hc.enabled),
        health_check_interval_seconds: Some(hc.interval_seconds),
        health_check_timeout_seconds: Some(hc.timeout_seconds),
        healthy_threshold_count: Some(hc.healthy_threshold),
        unhealthy_threshold_count: Some(hc.unhealthy_threshold),
        health_check_path: hc.path.clone(),
        matcher: hc.matcher.as_ref().map(|c| m::Matcher {
            http_code: Some(c.clone()),
            grpc_code: None,
        }),
        load_balancer_arns: Some(lbs),
        target_type: Some(r.target_type.as_str().into()),
        protocol_version: r.protocol_version.clone(),
        ip_address_type: Some(r.ip_address_type.as_str().into()),
        target_control_port: None,
    }
}

fn listener_to_wire(r: &ListenerRecord) -> m::Listener {
    m::Listener {
        listener_arn: Some(r.arn.clone()),
        load_balancer_arn: Some(r.load_balancer_arn.clone()),
        port: Some(r.port),
        protocol: Some(r.protocol.as_str().into()),
        certificates: (!r.certificates.is_empty()).then(|| r.certificates.clone()),
        ssl_policy: r.ssl_policy.clone(),
        default_actions: Some(r.default_actions.clone()),
        alpn_policy: (!r.alpn_policy.is_empty()).then(|| r.alpn_policy.clone()),
        mutual_authentication: None,
    }
}

fn rule_to_wire(r: &RuleRecord) -> m::Rule {
    m::Rule {
        rule_arn: Some(r.arn.clone()),
        priority: Some(r.priority.to_string()),
        conditions: Some(r.conditions.clone()),
        actions: Some(r.actions.clone()),
        is_default: Some(false),
        transforms: None,
    }
}

/// The default rule of a listener, as DescribeRules shows it.
fn default_rule(l: &ListenerRecord) -> m::Rule {
    m::Rule {
        rule_arn: Some(l.default_rule_arn()),
        priority: Some("default".into()),
        conditions: Some(vec![]),
        actions: Some(l.default_actions.clone()),
        is_default: Some(true),
        transforms: None,
    }
}

/// The health-check protocol's defaults for a target group protocol.
fn health_defaults(protocol: &str) -> (i32, i32, i32, i32) {
    // (interval, timeout, healthy, unhealthy)
    if protocol == "TCP" {
        (30, 10, 5, 2)
    } else {
        (30, 5, 5, 2)
    }
}

impl Api<'_> {
    fn prefix(&self) -> String {
        arn::prefix(&self.scope.region, &self.scope.account)
    }

    /// `name` of this region, as keys hold it: ELB is regional.
    fn here(&self, name: &str) -> String {
        crate::records::scoped(&self.scope.region, name)
    }

    /// The records of `prefix` that are this region's.
    async fn list_here<T: DeserializeOwned + HasArn>(
        &self,
        prefix: &str,
    ) -> Result<Vec<Versioned<T>>, AwsError> {
        let mut all = list::<T>(self.lb, prefix).await?;
        all.retain(|v| crate::records::region_of(v.value.arn()) == self.scope.region);
        Ok(all)
    }

    async fn lb_by_arn(&self, lb_arn: &str) -> Result<Versioned<LoadBalancerRecord>, AwsError> {
        let name = arn::load_balancer_name(lb_arn)
            .ok_or_else(|| validation(format!("'{lb_arn}' is not a valid load balancer ARN")))?;
        match get::<LoadBalancerRecord>(self.lb, &keys::load_balancer(&self.here(name))).await? {
            Some(r) if r.value.arn == lb_arn => Ok(r),
            _ => Err(lb_not_found()),
        }
    }

    async fn tg_by_arn(&self, tg_arn: &str) -> Result<Versioned<TargetGroupRecord>, AwsError> {
        let name = arn::target_group_name(tg_arn)
            .ok_or_else(|| validation(format!("'{tg_arn}' is not a valid target group ARN")))?;
        match get::<TargetGroupRecord>(self.lb, &keys::target_group(&self.here(name))).await? {
            Some(r) if r.value.arn == tg_arn => Ok(r),
            _ => Err(tg_not_found()),
        }
    }

    async fn listener_by_arn(&self, l_arn: &str) -> Result<Versioned<ListenerRecord>, AwsError> {
        let (lb, id) = arn::listener_parts(l_arn)
            .ok_or_else(|| validation(format!("'{l_arn}' is not a valid listener ARN")))?;
        match get::<ListenerRecord>(self.lb, &keys::listener(&self.here(lb), id)).await? {
            Some(r) if r.value.arn == l_arn => Ok(r),
            _ => Err(listener_not_found()),
        }
    }

    /// Which load balancers use each target group (by its ARN), from the
    /// listeners' default actions and the rules.
    async fn usage(&self) -> Result<BTreeMap<String, Vec<String>>, AwsError> {
        crate::registry::load_usage(&*self.lb.store)
            .await
            .map_err(from_store)
    }

    // ---- load balancers ----

    async fn create_load_balancer(
        &self,
        r: m::CreateLoadBalancerInput,
    ) -> Result<m::CreateLoadBalancerOutput, AwsError> {
        validate::name("LoadBalancer", &r.name)?;
        if r.customer_owned_ipv4_pool.is_some() || r.ipam_pools.is_some() {
            return Err(not_supported("Customer-owned and IPAM address pools"));
        }
        if r.enable_prefix_for_ipv6_source_nat.is_some() {
            return Err(not_supported("IPv6 source NAT"));
        }
        let kind = r
            .r#type
            .as_ref()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_else(|| "application".into());
        if !matches!(kind.as_str(), "application" | "network") {
            return Err(not_supported(&format!("Load balancer type '{kind}'")));
        }
        let scheme = r
            .scheme
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| "internet-facing".into());
        if !matches!(scheme.as_str(), "internet-facing" | "internal") {
            return Err(AwsError::client(
                "InvalidScheme",
                format!("Scheme '{scheme}' must be internet-facing or internal"),
            ));
        }
        let ip_address_type = r
            .ip_address_type
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| "ipv4".into());
        if ip_address_type != "ipv4" {
            return Err(not_supported(&format!(
                "IP address type '{ip_address_type}'"
            )));
        }
        let mut subnets = r.subnets.clone().unwrap_or_default();
        for sm in r.subnet_mappings.iter().flatten() {
            if sm.allocation_id.is_some()
                || sm.private_i_pv4_address.is_some()
                || sm.i_pv6_address.is_some()
                || sm.source_nat_ipv6_prefix.is_some()
            {
                return Err(not_supported(
                    "Elastic IPs and fixed addresses in subnet mappings",
                ));
            }
            subnets.push(
                sm.subnet_id
                    .clone()
                    .ok_or_else(|| validation("A subnet mapping must name a subnet"))?,
            );
        }
        let security_groups = r.security_groups.clone().unwrap_or_default();
        if kind == "network" && !security_groups.is_empty() {
            return Err(not_supported("Security groups on a network load balancer"));
        }
        let tags = validate::tags(r.tags.as_deref().unwrap_or_default())?;
        let key = keys::load_balancer(&self.here(&r.name));
        for _ in 0..MAX_ATTEMPTS {
            if let Some(existing) = get::<LoadBalancerRecord>(self.lb, &key).await? {
                let e = &existing.value;
                // As ELB: the same settings again return the same load balancer.
                if e.kind == kind
                    && e.scheme == scheme
                    && e.subnets == subnets
                    && e.security_groups == security_groups
                {
                    return Ok(m::CreateLoadBalancerOutput {
                        load_balancers: Some(vec![lb_to_wire(e, None)]),
                    });
                }
                return Err(AwsError::client(
                    "DuplicateLoadBalancerName",
                    format!(
                        "A load balancer with the same name '{}' exists, but with different settings",
                        r.name
                    ),
                ));
            }
            let all = self
                .list_here::<LoadBalancerRecord>(keys::LOAD_BALANCERS)
                .await?;
            let same_kind = all.iter().filter(|l| l.value.kind == kind).count();
            let quota = if kind == "network" {
                "network-load-balancers"
            } else {
                "application-load-balancers"
            };
            if same_kind >= limit(quota) {
                return Err(AwsError::client(
                    "TooManyLoadBalancers",
                    format!(
                        "The quota of {} {kind} load balancers is reached",
                        limit(quota)
                    ),
                ));
            }
            let id = arn::new_id();
            let lb_arn = format!(
                "{}loadbalancer/{}/{}/{id}",
                self.prefix(),
                arn::type_segment(&kind),
                r.name
            );
            let record = LoadBalancerRecord {
                dns_name: format!(
                    "{}-{}.{}.{}",
                    r.name.to_ascii_lowercase(),
                    &id[..10],
                    self.scope.region,
                    self.lb.config.dns_suffix
                ),
                arn: lb_arn,
                name: r.name.clone(),
                id,
                kind: kind.clone(),
                scheme: scheme.clone(),
                ip_address_type: ip_address_type.clone(),
                vpc_id: DEFAULT_VPC.into(),
                subnets: subnets.clone(),
                security_groups: security_groups.clone(),
                created: self.now,
                attributes: validate::default_attributes(validate::LOAD_BALANCER_ATTRIBUTES),
                tags: tags.clone(),
            };
            let txn = Txn::new()
                .when(Compare::NotExists(key.clone()))
                .then(typed::put(&key, &record));
            if commit(self.lb, txn).await? {
                return Ok(m::CreateLoadBalancerOutput {
                    load_balancers: Some(vec![lb_to_wire(&record, None)]),
                });
            }
        }
        Err(contention())
    }

    /// A load balancer's VPC: its target groups', once it forwards to one.
    /// Read from `usage` (see [`Api::usage`]), so a caller that has it
    /// does not list every listener and rule again.
    async fn vpc_of(
        &self,
        usage: &BTreeMap<String, Vec<String>>,
        lb_arn: &str,
    ) -> Result<Option<String>, AwsError> {
        for (tg_arn, lbs) in usage {
            if lbs.iter().any(|l| l == lb_arn) {
                if let Ok(tg) = self.tg_by_arn(tg_arn).await {
                    return Ok(Some(tg.value.vpc_id));
                }
            }
        }
        Ok(None)
    }

    async fn describe_load_balancers(
        &self,
        r: m::DescribeLoadBalancersInput,
    ) -> Result<m::DescribeLoadBalancersOutput, AwsError> {
        let arns = r.load_balancer_arns.unwrap_or_default();
        let names = r.names.unwrap_or_default();
        if !arns.is_empty() && !names.is_empty() {
            return Err(validation(
                "Load balancer names and load balancer ARNs cannot be specified at the same time",
            ));
        }
        let all = self
            .list_here::<LoadBalancerRecord>(keys::LOAD_BALANCERS)
            .await?;
        let mut picked = Vec::new();
        if !arns.is_empty() || !names.is_empty() {
            for a in &arns {
                let found = all
                    .iter()
                    .find(|l| &l.value.arn == a)
                    .ok_or_else(lb_not_found)?;
                picked.push(found.value.clone());
            }
            for n in &names {
                let found = all.iter().find(|l| &l.value.name == n).ok_or_else(|| {
                    AwsError::client(
                        "LoadBalancerNotFound",
                        format!("Load balancers '[{n}]' not found"),
                    )
                })?;
                picked.push(found.value.clone());
            }
        } else {
            picked = all.into_iter().map(|v| v.value).collect();
        }
        let items = picked.into_iter().map(|l| (l.name.clone(), l)).collect();
        let (items, next) = page(items, r.marker.as_deref(), r.page_size)?;
        let usage = self.usage().await?;
        let mut out = Vec::with_capacity(items.len());
        for l in items {
            let vpc = self.vpc_of(&usage, &l.arn).await?;
            out.push(lb_to_wire(&l, vpc.as_deref()));
        }
        Ok(m::DescribeLoadBalancersOutput {
            load_balancers: Some(out),
            next_marker: next,
        })
    }

    async fn delete_load_balancer(
        &self,
        r: m::DeleteLoadBalancerInput,
    ) -> Result<m::DeleteLoadBalancerOutput, AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let lb = match self.lb_by_arn(&r.load_balancer_arn).await {
                Ok(lb) => lb,
                // Deleting what is gone succeeds, as ELB.
                Err(e) if e.code == "LoadBalancerNotFound" => {
                    return Ok(m::DeleteLoadBalancerOutput {})
                }
                Err(e) => return Err(e),
            };
            if lb
                .value
                .attributes
                .get("deletion_protection.enabled")
                .map(String::as_str)
                == Some("true")
            {
                return Err(AwsError::client(
                    "OperationNotPermitted",
                    format!(
                        "Load balancer '{}' cannot be deleted because deletion protection is enabled",
                        lb.value.arn
                    ),
                ));
            }
            let name = lb.value.scoped_name();
            let listeners = list::<ListenerRecord>(self.lb, &keys::listeners_of(&name)).await?;
            let rules = list::<RuleRecord>(self.lb, &keys::rules_of(&name)).await?;
            let mut txn = Txn::new().when(lb.unchanged()).then(Op::delete(&lb.key));
            for l in &listeners {
                txn = txn.when(l.unchanged()).then(Op::delete(&l.key));
            }
            for rule in &rules {
                txn = txn.when(rule.unchanged()).then(Op::delete(&rule.key));
            }
            if commit(self.lb, txn).await? {
                return Ok(m::DeleteLoadBalancerOutput {});
            }
        }
        Err(contention())
    }

    async fn describe_load_balancer_attributes(
        &self,
        r: m::DescribeLoadBalancerAttributesInput,
    ) -> Result<m::DescribeLoadBalancerAttributesOutput, AwsError> {
        let lb = self.lb_by_arn(&r.load_balancer_arn).await?;
        Ok(m::DescribeLoadBalancerAttributesOutput {
            attributes: Some(lb_attributes_wire(&lb.value.attributes)),
        })
    }

    async fn modify_load_balancer_attributes(
        &self,
        r: m::ModifyLoadBalancerAttributesInput,
    ) -> Result<m::ModifyLoadBalancerAttributesOutput, AwsError> {
        let changes: Vec<_> = r
            .attributes
            .iter()
            .map(|a| (a.key.clone(), a.value.clone()))
            .collect();
        for _ in 0..MAX_ATTEMPTS {
            let mut lb = self.lb_by_arn(&r.load_balancer_arn).await?;
            let specs = validate::LOAD_BALANCER_ATTRIBUTES;
            validate::apply_attributes("Load balancer", specs, &mut lb.value.attributes, &changes)?;
            if commit(self.lb, Txn::new().when(lb.unchanged()).then(lb.put())).await? {
                return Ok(m::ModifyLoadBalancerAttributesOutput {
                    attributes: Some(lb_attributes_wire(&lb.value.attributes)),
                });
            }
        }
        Err(contention())
    }

    async fn set_security_groups(
        &self,
        r: m::SetSecurityGroupsInput,
    ) -> Result<m::SetSecurityGroupsOutput, AwsError> {
        if r.enforce_security_group_inbound_rules_on_private_link_traffic
            .is_some()
        {
            return Err(not_supported("PrivateLink security group enforcement"));
        }
        for _ in 0..MAX_ATTEMPTS {
            let mut lb = self.lb_by_arn(&r.load_balancer_arn).await?;
            if lb.value.kind != "application" {
                return Err(not_supported("Security groups on a network load balancer"));
            }
            lb.value.security_groups = r.security_groups.clone();
            if commit(self.lb, Txn::new().when(lb.unchanged()).then(lb.put())).await? {
                return Ok(m::SetSecurityGroupsOutput {
                    security_group_ids: Some(lb.value.security_groups),
                    enforce_security_group_inbound_rules_on_private_link_traffic: None,
                });
            }
        }
        Err(contention())
    }

    async fn set_subnets(&self, r: m::SetSubnetsInput) -> Result<m::SetSubnetsOutput, AwsError> {
        if r.ip_address_type.is_some()
            || r.enable_prefix_for_ipv6_source_nat.is_some()
            || r.subnet_mappings
                .iter()
                .flatten()
                .any(|s| s.allocation_id.is_some() || s.private_i_pv4_address.is_some())
        {
            return Err(not_supported("Addresses and address types in SetSubnets"));
        }
        let mut subnets = r.subnets.clone().unwrap_or_default();
        subnets.extend(
            r.subnet_mappings
                .iter()
                .flatten()
                .filter_map(|s| s.subnet_id.clone()),
        );
        for _ in 0..MAX_ATTEMPTS {
            let mut lb = self.lb_by_arn(&r.load_balancer_arn).await?;
            lb.value.subnets = subnets.clone();
            if commit(self.lb, Txn::new().when(lb.unchanged()).then(lb.put())).await? {
                return Ok(m::SetSubnetsOutput {
                    availability_zones: lb_to_wire(&lb.value, None).availability_zones,
                    ip_address_type: Some(lb.value.ip_address_type.as_str().into()),
                    enable_prefix_for_ipv6_source_nat: None,
                });
            }
        }
        Err(contention())
    }

    async fn set_ip_address_type(
        &self,
        r: m::SetIpAddressTypeInput,
    ) -> Result<m::SetIpAddressTypeOutput, AwsError> {
        self.lb_by_arn(&r.load_balancer_arn).await?;
        if r.ip_address_type.as_str() != "ipv4" {
            return Err(not_supported(&format!(
                "IP address type '{}'",
                r.ip_address_type
            )));
        }
        Ok(m::SetIpAddressTypeOutput {
            ip_address_type: Some(r.ip_address_type),
        })
    }

    // ---- target groups ----

    async fn create_target_group(
        &self,
        r: m::CreateTargetGroupInput,
    ) -> Result<m::CreateTargetGroupOutput, AwsError> {
        validate::name("TargetGroup", &r.name)?;
        if r.target_control_port.is_some() {
            return Err(not_supported("Target control ports"));
        }
        let target_type = r
            .target_type
            .as_ref()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_else(|| "instance".into());
        if !matches!(target_type.as_str(), "instance" | "ip") {
            return Err(not_supported(&format!("Target type '{target_type}'")));
        }
        let protocol = r
            .protocol
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .ok_or_else(|| {
                validation("A protocol must be specified for a target group of type instance or ip")
            })?;
        if !matches!(protocol.as_str(), "HTTP" | "TCP") {
            return Err(not_supported(&format!(
                "Target group protocol '{protocol}' (HTTP and TCP are; HTTPS to targets is not yet)"
            )));
        }
        let port = validate::port(r.port.ok_or_else(|| {
            validation("A port must be specified for a target group of type instance or ip")
        })?)?;
        let protocol_version = match r.protocol_version.as_deref() {
            None if protocol != "TCP" => Some("HTTP1".to_owned()),
            None => None,
            Some("HTTP1") if protocol != "TCP" => Some("HTTP1".to_owned()),
            Some(v) => {
                return Err(not_supported(&format!(
                    "Target group protocol version '{v}'"
                )))
            }
        };
        let ip_address_type = r
            .ip_address_type
            .as_ref()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_else(|| "ipv4".into());
        if ip_address_type != "ipv4" {
            return Err(not_supported(&format!(
                "IP address type '{ip_address_type}'"
            )));
        }
        let health = health_check(
            &protocol,
            None,
            HealthInput {
                protocol: r
                    .health_check_protocol
                    .as_ref()
                    .map(|p| p.as_str().to_owned()),
                port: r.health_check_port.clone(),
                enabled: r.health_check_enabled,
                path: r.health_check_path.clone(),
                interval: r.health_check_interval_seconds,
                timeout: r.health_check_timeout_seconds,
                healthy: r.healthy_threshold_count,
                unhealthy: r.unhealthy_threshold_count,
                matcher: r.matcher.clone(),
            },
        )?;
        let tags = validate::tags(r.tags.as_deref().unwrap_or_default())?;
        let vpc_id = r.vpc_id.clone().unwrap_or_else(|| DEFAULT_VPC.into());
        let key = keys::target_group(&self.here(&r.name));
        for _ in 0..MAX_ATTEMPTS {
            if let Some(existing) = get::<TargetGroupRecord>(self.lb, &key).await? {
                let e = &existing.value;
                if e.protocol == protocol
                    && e.port == port
                    && e.vpc_id == vpc_id
                    && e.target_type == target_type
                    && e.health_check == health
                {
                    let lbs = self.usage().await?.remove(&e.arn).unwrap_or_default();
                    return Ok(m::CreateTargetGroupOutput {
                        target_groups: Some(vec![tg_to_wire(e, lbs)]),
                    });
                }
                return Err(AwsError::client(
                    "DuplicateTargetGroupName",
                    format!(
                        "A target group with the same name '{}' exists, but with different settings",
                        r.name
                    ),
                ));
            }
            let count = self
                .list_here::<TargetGroupRecord>(keys::TARGET_GROUPS)
                .await?
                .len();
            if count >= limit("target-groups") {
                return Err(AwsError::client(
                    "TooManyTargetGroups",
                    "The quota of target groups is reached",
                ));
            }
            let id = arn::new_id();
            let record = TargetGroupRecord {
                arn: format!("{}targetgroup/{}/{id}", self.prefix(), r.name),
                name: r.name.clone(),
                id,
                protocol: protocol.clone(),
                protocol_version: protocol_version.clone(),
                port,
                vpc_id: vpc_id.clone(),
                target_type: target_type.clone(),
                ip_address_type: ip_address_type.clone(),
                health_check: health.clone(),
                attributes: validate::default_attributes(validate::TARGET_GROUP_ATTRIBUTES),
                tags: tags.clone(),
            };
            let txn = Txn::new()
                .when(Compare::NotExists(key.clone()))
                .then(typed::put(&key, &record));
            if commit(self.lb, txn).await? {
                return Ok(m::CreateTargetGroupOutput {
                    target_groups: Some(vec![tg_to_wire(&record, vec![])]),
                });
            }
        }
        Err(contention())
    }

    async fn describe_target_groups(
        &self,
        r: m::DescribeTargetGroupsInput,
    ) -> Result<m::DescribeTargetGroupsOutput, AwsError> {
        let arns = r.target_group_arns.unwrap_or_default();
        let names = r.names.unwrap_or_default();
        let filters = [
            !arns.is_empty(),
            !names.is_empty(),
            r.load_balancer_arn.is_some(),
        ];
        if filters.iter().filter(|f| **f).count() > 1 {
            return Err(validation(
                "Only one of target group ARNs, names or a load balancer ARN can be specified",
            ));
        }
        let all = self
            .list_here::<TargetGroupRecord>(keys::TARGET_GROUPS)
            .await?;
        let usage = self.usage().await?;
        let mut picked = Vec::new();
        if let Some(lb_arn) = &r.load_balancer_arn {
            self.lb_by_arn(lb_arn).await?;
            picked = all
                .into_iter()
                .filter(|t| usage.get(&t.value.arn).is_some_and(|l| l.contains(lb_arn)))
                .map(|t| t.value)
                .collect();
        } else if !arns.is_empty() || !names.is_empty() {
            for a in &arns {
                picked.push(
                    all.iter()
                        .find(|t| &t.value.arn == a)
                        .ok_or_else(tg_not_found)?
                        .value
                        .clone(),
                );
            }
            for n in &names {
                picked.push(
                    all.iter()
                        .find(|t| &t.value.name == n)
                        .ok_or_else(|| {
                            AwsError::client(
                                "TargetGroupNotFound",
                                format!("Target groups '[{n}]' not found"),
                            )
                        })?
                        .value
                        .clone(),
                );
            }
        } else {
            picked = all.into_iter().map(|t| t.value).collect();
        }
        let items = picked.into_iter().map(|t| (t.name.clone(), t)).collect();
        let (items, next) = page(items, r.marker.as_deref(), r.page_size)?;
        Ok(m::DescribeTargetGroupsOutput {
            target_groups: Some(
                items
                    .iter()
                    .map(|t| tg_to_wire(t, usage.get(&t.arn).cloned().unwrap_or_default()))
                    .collect(),
            ),
            next_marker: next,
        })
    }

    async fn modify_target_group(
        &self,
        r: m::ModifyTargetGroupInput,
    ) -> Result<m::ModifyTargetGroupOutput, AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut tg = self.tg_by_arn(&r.target_group_arn).await?;
            tg.value.health_check = health_check(
                &tg.value.protocol,
                Some(&tg.value.health_check),
                HealthInput {
                    protocol: r
                        .health_check_protocol
                        .as_ref()
                        .map(|p| p.as_str().to_owned()),
                    port: r.health_check_port.clone(),
                    enabled: r.health_check_enabled,
                    path: r.health_check_path.clone(),
                    interval: r.health_check_interval_seconds,
                    timeout: r.health_check_timeout_seconds,
                    healthy: r.healthy_threshold_count,
                    unhealthy: r.unhealthy_threshold_count,
                    matcher: r.matcher.clone(),
                },
            )?;
            if commit(self.lb, Txn::new().when(tg.unchanged()).then(tg.put())).await? {
                let lbs = self
                    .usage()
                    .await?
                    .remove(&tg.value.arn)
                    .unwrap_or_default();
                return Ok(m::ModifyTargetGroupOutput {
                    target_groups: Some(vec![tg_to_wire(&tg.value, lbs)]),
                });
            }
        }
        Err(contention())
    }

    async fn delete_target_group(
        &self,
        r: m::DeleteTargetGroupInput,
    ) -> Result<m::DeleteTargetGroupOutput, AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let tg = match self.tg_by_arn(&r.target_group_arn).await {
                Ok(tg) => tg,
                Err(e) if e.code == "TargetGroupNotFound" => {
                    return Ok(m::DeleteTargetGroupOutput {})
                }
                Err(e) => return Err(e),
            };
            if let Some(lbs) = self.usage().await?.get(&tg.value.arn) {
                return Err(AwsError::client(
                    "ResourceInUse",
                    format!(
                        "Target group '{}' is currently in use by a listener or a rule of {}",
                        tg.value.arn,
                        lbs.join(", ")
                    ),
                ));
            }
            let targets =
                list::<TargetRecord>(self.lb, &keys::targets_of(&tg.value.scoped_name())).await?;
            let health =
                list::<HealthRecord>(self.lb, &keys::health_of(&tg.value.scoped_name())).await?;
            let mut txn = Txn::new().when(tg.unchanged()).then(Op::delete(&tg.key));
            for t in targets
                .iter()
                .map(|t| &t.key)
                .chain(health.iter().map(|h| &h.key))
            {
                txn = txn.then(Op::delete(t));
            }
            // The usage read above cannot compare a listener or rule created
            // since; but every write that starts forwarding to a target group
            // also rewrites it, so this compare fails if one has.
            if commit(self.lb, txn).await? {
                return Ok(m::DeleteTargetGroupOutput {});
            }
        }
        Err(contention())
    }

    async fn describe_target_group_attributes(
        &self,
        r: m::DescribeTargetGroupAttributesInput,
    ) -> Result<m::DescribeTargetGroupAttributesOutput, AwsError> {
        let tg = self.tg_by_arn(&r.target_group_arn).await?;
        Ok(m::DescribeTargetGroupAttributesOutput {
            attributes: Some(tg_attributes_wire(&tg.value.attributes)),
        })
    }

    async fn modify_target_group_attributes(
        &self,
        r: m::ModifyTargetGroupAttributesInput,
    ) -> Result<m::ModifyTargetGroupAttributesOutput, AwsError> {
        let changes: Vec<_> = r
            .attributes
            .iter()
            .map(|a| (a.key.clone(), a.value.clone()))
            .collect();
        for _ in 0..MAX_ATTEMPTS {
            let mut tg = self.tg_by_arn(&r.target_group_arn).await?;
            let specs = validate::TARGET_GROUP_ATTRIBUTES;
            validate::apply_attributes("Target group", specs, &mut tg.value.attributes, &changes)?;
            let a = &tg.value.attributes;
            if a.get("stickiness.enabled").map(String::as_str) == Some("true") {
                let kind = a
                    .get("stickiness.type")
                    .map(String::as_str)
                    .unwrap_or("lb_cookie");
                if kind == "source_ip" && tg.value.protocol != "TCP" {
                    return Err(validation(
                        "Stickiness type 'source_ip' is only for network load balancer target groups",
                    ));
                }
                if kind != "source_ip" && tg.value.protocol == "TCP" {
                    return Err(validation(format!(
                        "Stickiness type '{kind}' is not supported for TCP target groups"
                    )));
                }
                if kind == "app_cookie"
                    && a.get("stickiness.app_cookie.cookie_name")
                        .is_none_or(|n| n.is_empty())
                {
                    return Err(validation(
                        "Stickiness type 'app_cookie' needs stickiness.app_cookie.cookie_name",
                    ));
                }
            }
            if commit(self.lb, Txn::new().when(tg.unchanged()).then(tg.put())).await? {
                return Ok(m::ModifyTargetGroupAttributesOutput {
                    attributes: Some(tg_attributes_wire(&tg.value.attributes)),
                });
            }
        }
        Err(contention())
    }

    // ---- targets ----

    fn check_target(
        &self,
        tg: &TargetGroupRecord,
        t: &m::TargetDescription,
    ) -> Result<(String, i32), AwsError> {
        if t.quic_server_id.is_some() {
            return Err(not_supported("QUIC server IDs"));
        }
        let port = validate::port(t.port.unwrap_or(tg.port))?;
        match tg.target_type.as_str() {
            "ip" => {
                let ip: IpAddr = t.id.parse().map_err(|_| {
                    AwsError::client(
                        "InvalidTarget",
                        format!("The IP address '{}' is not a valid IPv4 address", t.id),
                    )
                })?;
                if !ip.is_ipv4() {
                    return Err(AwsError::client(
                        "InvalidTarget",
                        format!("The IP address '{}' is not a valid IPv4 address", t.id),
                    ));
                }
            }
            _ => {
                if t.id.is_empty()
                    || t.id.len() > 255
                    || t.id.contains('/')
                    || t.id.parse::<IpAddr>().is_ok()
                {
                    return Err(AwsError::client(
                        "InvalidTarget",
                        format!(
                            "The target '{}' is not a valid instance ID for a target group of type instance",
                            t.id
                        ),
                    ));
                }
            }
        }
        Ok((t.id.clone(), port))
    }

    async fn register_targets(
        &self,
        r: m::RegisterTargetsInput,
    ) -> Result<m::RegisterTargetsOutput, AwsError> {
        if r.targets.is_empty() {
            return Err(validation("At least one target must be specified"));
        }
        for _ in 0..MAX_ATTEMPTS {
            let tg = self.tg_by_arn(&r.target_group_arn).await?;
            let existing =
                list::<TargetRecord>(self.lb, &keys::targets_of(&tg.value.scoped_name())).await?;
            let mut txn = Txn::new().when(tg.unchanged());
            let mut added = 0usize;
            for t in &r.targets {
                let (id, port) = self.check_target(&tg.value, t)?;
                let key = keys::target(&tg.value.scoped_name(), &id, port);
                let prior = existing.iter().find(|e| e.key == key);
                added += usize::from(prior.is_none());
                let record = TargetRecord {
                    id: id.clone(),
                    port,
                    availability_zone: t.availability_zone.clone(),
                    registered_at: self.now,
                    deregistered_at: None,
                };
                let (compare, write) = crate::registry::registration(&key, prior, &record);
                txn = txn.when(compare);
                if let Some(write) = write {
                    txn = txn.then(write);
                }
            }
            if existing.len() + added > limit("targets-per-target-group") {
                return Err(AwsError::client(
                    "TooManyTargets",
                    "The quota of targets per target group is reached",
                ));
            }
            if commit(self.lb, txn).await? {
                return Ok(m::RegisterTargetsOutput {});
            }
        }
        Err(contention())
    }

    async fn deregister_targets(
        &self,
        r: m::DeregisterTargetsInput,
    ) -> Result<m::DeregisterTargetsOutput, AwsError> {
        if r.targets.is_empty() {
            return Err(validation("At least one target must be specified"));
        }
        for _ in 0..MAX_ATTEMPTS {
            let tg = self.tg_by_arn(&r.target_group_arn).await?;
            let existing =
                list::<TargetRecord>(self.lb, &keys::targets_of(&tg.value.scoped_name())).await?;
            let mut txn = Txn::new().when(tg.unchanged());
            for t in &r.targets {
                let (id, port) = self.check_target(&tg.value, t)?;
                let key = keys::target(&tg.value.scoped_name(), &id, port);
                let Some(e) = existing.iter().find(|e| e.key == key) else {
                    return Err(AwsError::client(
                        "InvalidTarget",
                        format!(
                            "The target '{id}' with port {port} is not registered with target group '{}'",
                            tg.value.arn
                        ),
                    ));
                };
                if let Some((compare, write)) = crate::registry::draining(e, self.now) {
                    txn = txn.when(compare).then(write);
                }
            }
            if commit(self.lb, txn).await? {
                return Ok(m::DeregisterTargetsOutput {});
            }
        }
        Err(contention())
    }

    async fn describe_target_health(
        &self,
        r: m::DescribeTargetHealthInput,
    ) -> Result<m::DescribeTargetHealthOutput, AwsError> {
        if r.include.as_ref().is_some_and(|i| !i.is_empty()) {
            return Err(not_supported("Anomaly detection (Include)"));
        }
        let tg = self.tg_by_arn(&r.target_group_arn).await?.value;
        let targets = list::<TargetRecord>(self.lb, &keys::targets_of(&tg.scoped_name())).await?;
        let health = list::<HealthRecord>(self.lb, &keys::health_of(&tg.scoped_name())).await?;
        let in_use = self.usage().await?.contains_key(&tg.arn);
        let health_of = |t: &TargetRecord| {
            let key = keys::health(&tg.scoped_name(), &t.id, t.port);
            health
                .iter()
                .find(|h| h.key == key)
                .map(|h| h.value.clone())
        };
        let describe = |id: &str, port: i32, t: Option<&TargetRecord>| {
            let (state, reason, description) =
                crate::health::describe(&tg, t, t.and_then(health_of).as_ref(), in_use, self.now);
            m::TargetHealthDescription {
                target: Some(m::TargetDescription {
                    id: id.to_owned(),
                    port: Some(port),
                    availability_zone: t.and_then(|t| t.availability_zone.clone()),
                    quic_server_id: None,
                }),
                health_check_port: Some(if tg.health_check.port == "traffic-port" {
                    port.to_string()
                } else {
                    tg.health_check.port.clone()
                }),
                target_health: Some(m::TargetHealth {
                    state: Some(state.into()),
                    reason: reason.map(Into::into),
                    description: description.map(str::to_owned),
                }),
                anomaly_detection: None,
                administrative_override: None,
            }
        };
        let mut out = Vec::new();
        match r.targets.as_deref() {
            Some(asked) if !asked.is_empty() => {
                for t in asked {
                    let (id, port) = self.check_target(&tg, t)?;
                    let key = keys::target(&tg.scoped_name(), &id, port);
                    let found = targets.iter().find(|e| e.key == key).map(|e| &e.value);
                    out.push(describe(&id, port, found));
                }
            }
            _ => {
                for t in &targets {
                    out.push(describe(&t.value.id, t.value.port, Some(&t.value)));
                }
            }
        }
        Ok(m::DescribeTargetHealthOutput {
            target_health_descriptions: Some(out),
        })
    }

    // ---- listeners ----

    /// Checks the actions of a listener or rule of `lb`: every target
    /// group exists, has a protocol the load balancer can forward to, is in
    /// the load balancer's VPC and used by no other load balancer. Returns
    /// the target groups read, for the write to compare.
    async fn check_actions(
        &self,
        lb: &LoadBalancerRecord,
        actions: &[m::Action],
    ) -> Result<Vec<Versioned<TargetGroupRecord>>, AwsError> {
        let mut arns = Vec::new();
        validate::actions(actions, lb.kind == "network", |a| {
            arns.push(a.to_owned());
            Ok(())
        })?;
        let usage = self.usage().await?;
        let mut vpc = self.vpc_of(&usage, &lb.arn).await?;
        let mut read = Vec::new();
        for a in arns {
            let tg = self.tg_by_arn(&a).await?;
            let t = &tg.value;
            let compatible = if lb.kind == "network" {
                t.protocol == "TCP"
            } else {
                t.protocol != "TCP"
            };
            if !compatible {
                return Err(AwsError::client(
                    "IncompatibleProtocols",
                    format!(
                        "The target group '{}' uses protocol {}, which a {} load balancer cannot forward to",
                        t.arn, t.protocol, lb.kind
                    ),
                ));
            }
            match &vpc {
                Some(v) if *v != t.vpc_id => {
                    return Err(invalid_config(format!(
                    "The target group '{}' is in VPC '{}', but the load balancer is in VPC '{v}'",
                    t.arn, t.vpc_id
                )))
                }
                _ => vpc = Some(t.vpc_id.clone()),
            }
            if let Some(lbs) = usage.get(&t.arn) {
                if lbs.iter().any(|l| *l != lb.arn) {
                    return Err(AwsError::client(
                        "TargetGroupAssociationLimit",
                        format!(
                            "The target group '{}' is already associated with load balancer '{}'",
                            t.arn, lbs[0]
                        ),
                    ));
                }
            }
            read.push(tg);
        }
        Ok(read)
    }

    fn check_listener_protocol(
        &self,
        lb: &LoadBalancerRecord,
        protocol: &str,
        certificates: &[m::Certificate],
    ) -> Result<(), AwsError> {
        let ok = if lb.kind == "network" {
            protocol == "TCP"
        } else {
            matches!(protocol, "HTTP" | "HTTPS")
        };
        if !ok {
            return Err(AwsError::client(
                "UnsupportedProtocol",
                format!(
                    "Protocol '{protocol}' is not supported for a {} load balancer by Wharf",
                    lb.kind
                ),
            ));
        }
        if protocol == "HTTPS" {
            if certificates.len() != 1 {
                return Err(validation(
                    "An HTTPS listener needs exactly one certificate: a path to a PEM file holding the certificate chain and its key (file:///path)",
                ));
            }
            let path = certificates[0]
                .certificate_arn
                .as_deref()
                .and_then(|a| a.strip_prefix("file://"))
                .ok_or_else(|| {
                    AwsError::client(
                        "CertificateNotFound",
                        "Wharf takes certificates as file:///path/to/cert-and-key.pem until it has ACM",
                    )
                })?;
            crate::dataplane::load_certificate(std::path::Path::new(path), None).map_err(|e| {
                AwsError::client("CertificateNotFound", format!("Certificate '{path}': {e}"))
            })?;
        } else if !certificates.is_empty() {
            return Err(validation(format!(
                "A {protocol} listener cannot have certificates"
            )));
        }
        Ok(())
    }

    /// Refuses a port another listener of any load balancer holds (they
    /// all bind the same host address), and one something else holds.
    async fn check_port(&self, port: i32, except: Option<&str>) -> Result<(), AwsError> {
        let listeners = list::<ListenerRecord>(self.lb, keys::LISTENERS).await?;
        if let Some(other) = listeners
            .iter()
            .find(|l| l.value.port == port && Some(l.value.arn.as_str()) != except)
        {
            return Err(AwsError::client(
                "DuplicateListener",
                format!(
                    "Port {port} is already used by listener '{}'",
                    other.value.arn
                ),
            ));
        }
        if self.lb.config.probe_ports {
            let addr = std::net::SocketAddr::new(self.lb.config.bind, port as u16);
            if let Err(e) = std::net::TcpListener::bind(addr) {
                return Err(invalid_config(format!(
                    "Port {port} cannot be used on {}: {e}",
                    self.lb.config.bind
                )));
            }
        }
        Ok(())
    }

    async fn create_listener(
        &self,
        r: m::CreateListenerInput,
    ) -> Result<m::CreateListenerOutput, AwsError> {
        if r.mutual_authentication.is_some() {
            return Err(not_supported("Mutual TLS authentication"));
        }
        if r.alpn_policy.as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(not_supported("ALPN policies"));
        }
        let tags = validate::tags(r.tags.as_deref().unwrap_or_default())?;
        for _ in 0..MAX_ATTEMPTS {
            let lb = self.lb_by_arn(&r.load_balancer_arn).await?;
            let protocol = r
                .protocol
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .ok_or_else(|| validation("A listener protocol must be specified"))?;
            let port = validate::port(
                r.port
                    .ok_or_else(|| validation("A listener port must be specified"))?,
            )?;
            let certificates = r.certificates.clone().unwrap_or_default();
            self.check_listener_protocol(&lb.value, &protocol, &certificates)?;
            let ssl_policy = match (&r.ssl_policy, protocol.as_str()) {
                (Some(p), "HTTPS") => {
                    check_ssl_policy(p)?;
                    Some(p.clone())
                }
                (None, "HTTPS") => Some("ELBSecurityPolicy-2016-08".to_owned()),
                (Some(_), _) => return Err(validation("Only an HTTPS listener has an SSL policy")),
                (None, _) => None,
            };
            let tgs = self.check_actions(&lb.value, &r.default_actions).await?;
            let mine =
                list::<ListenerRecord>(self.lb, &keys::listeners_of(&lb.value.scoped_name()))
                    .await?;
            if let Some(same) = mine.iter().find(|l| l.value.port == port) {
                let s = &same.value;
                // As ELB: the same listener again is returned, not duplicated.
                if s.protocol == protocol
                    && s.default_actions == r.default_actions
                    && s.certificates == certificates
                {
                    return Ok(m::CreateListenerOutput {
                        listeners: Some(vec![listener_to_wire(s)]),
                    });
                }
                return Err(AwsError::client(
                    "DuplicateListener",
                    format!("A listener already exists on port {port} of this load balancer"),
                ));
            }
            let quota = if lb.value.kind == "network" {
                "listeners-per-network-load-balancer"
            } else {
                "listeners-per-application-load-balancer"
            };
            if mine.len() >= limit(quota) {
                return Err(AwsError::client(
                    "TooManyListeners",
                    "The quota of listeners per load balancer is reached",
                ));
            }
            self.check_port(port, None).await?;
            let id = arn::new_id();
            let record = ListenerRecord {
                arn: format!(
                    "{}listener/{}/{}/{}/{id}",
                    self.prefix(),
                    arn::type_segment(&lb.value.kind),
                    lb.value.name,
                    lb.value.id
                ),
                id: id.clone(),
                load_balancer_arn: lb.value.arn.clone(),
                load_balancer: lb.value.name.clone(),
                port,
                protocol,
                ssl_policy,
                certificates,
                alpn_policy: vec![],
                default_actions: r.default_actions.clone(),
                attributes: Default::default(),
                tags: tags.clone(),
            };
            let key = keys::listener(&lb.value.scoped_name(), &id);
            let mut txn = Txn::new()
                .when(lb.unchanged())
                .when(Compare::NotExists(key.clone()))
                .then(typed::put(&key, &record));
            for tg in &tgs {
                txn = txn.when(tg.unchanged()).then(tg.put());
            }
            if commit(self.lb, txn).await? {
                return Ok(m::CreateListenerOutput {
                    listeners: Some(vec![listener_to_wire(&record)]),
                });
            }
        }
        Err(contention())
    }

    async fn describe_listeners(
        &self,
        r: m::DescribeListenersInput,
    ) -> Result<m::DescribeListenersOutput, AwsError> {
        let arns = r.listener_arns.unwrap_or_default();
        let picked: Vec<ListenerRecord> =
            match (&r.load_balancer_arn, arns.is_empty()) {
                (Some(_), false) => return Err(validation(
                    "Listener ARNs and a load balancer ARN cannot be specified at the same time",
                )),
                (Some(lb_arn), true) => {
                    let lb = self.lb_by_arn(lb_arn).await?;
                    list::<ListenerRecord>(self.lb, &keys::listeners_of(&lb.value.scoped_name()))
                        .await?
                        .into_iter()
                        .map(|l| l.value)
                        .collect()
                }
                (None, false) => {
                    let mut out = Vec::new();
                    for a in &arns {
                        out.push(self.listener_by_arn(a).await?.value);
                    }
                    out
                }
                (None, true) => {
                    return Err(validation(
                        "You must specify either listener ARNs or a load balancer ARN",
                    ))
                }
            };
        let items = picked.into_iter().map(|l| (l.arn.clone(), l)).collect();
        let (items, next) = page(items, r.marker.as_deref(), r.page_size)?;
        Ok(m::DescribeListenersOutput {
            listeners: Some(items.iter().map(listener_to_wire).collect()),
            next_marker: next,
        })
    }

    async fn modify_listener(
        &self,
        r: m::ModifyListenerInput,
    ) -> Result<m::ModifyListenerOutput, AwsError> {
        if r.mutual_authentication.is_some() {
            return Err(not_supported("Mutual TLS authentication"));
        }
        if r.alpn_policy.as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(not_supported("ALPN policies"));
        }
        for _ in 0..MAX_ATTEMPTS {
            let mut l = self.listener_by_arn(&r.listener_arn).await?;
            let lb = self.lb_by_arn(&l.value.load_balancer_arn).await?;
            let v = &mut l.value;
            if let Some(p) = &r.protocol {
                v.protocol = p.as_str().to_owned();
            }
            if let Some(c) = &r.certificates {
                v.certificates = c.clone();
            }
            if v.protocol != "HTTPS" && r.certificates.is_none() {
                v.certificates.clear();
                v.ssl_policy = None;
            }
            if let Some(p) = &r.ssl_policy {
                check_ssl_policy(p)?;
                v.ssl_policy = Some(p.clone());
            } else if v.protocol == "HTTPS" && v.ssl_policy.is_none() {
                v.ssl_policy = Some("ELBSecurityPolicy-2016-08".to_owned());
            }
            self.check_listener_protocol(&lb.value, &v.protocol, &v.certificates)?;
            let mut tgs = Vec::new();
            if let Some(actions) = &r.default_actions {
                tgs = self.check_actions(&lb.value, actions).await?;
                v.default_actions = actions.clone();
            }
            if let Some(port) = r.port {
                let port = validate::port(port)?;
                if port != v.port {
                    self.check_port(port, Some(&v.arn)).await?;
                    v.port = port;
                }
            }
            let mut txn = Txn::new()
                .when(l.unchanged())
                .when(lb.unchanged())
                .then(l.put());
            for tg in &tgs {
                txn = txn.when(tg.unchanged()).then(tg.put());
            }
            if commit(self.lb, txn).await? {
                return Ok(m::ModifyListenerOutput {
                    listeners: Some(vec![listener_to_wire(&l.value)]),
                });
            }
        }
        Err(contention())
    }

    async fn delete_listener(
        &self,
        r: m::DeleteListenerInput,
    ) -> Result<m::DeleteListenerOutput, AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let l = self.listener_by_arn(&r.listener_arn).await?;
            let rules = list::<RuleRecord>(
                self.lb,
                &keys::rules_of_listener(&l.value.scoped_load_balancer(), &l.value.id),
            )
            .await?;
            let mut txn = Txn::new().when(l.unchanged()).then(Op::delete(&l.key));
            for rule in &rules {
                txn = txn.when(rule.unchanged()).then(Op::delete(&rule.key));
            }
            if commit(self.lb, txn).await? {
                return Ok(m::DeleteListenerOutput {});
            }
        }
        Err(contention())
    }

    async fn describe_listener_attributes(
        &self,
        r: m::DescribeListenerAttributesInput,
    ) -> Result<m::DescribeListenerAttributesOutput, AwsError> {
        let l = self.listener_by_arn(&r.listener_arn).await?;
        Ok(m::DescribeListenerAttributesOutput {
            attributes: Some(
                l.value
                    .attributes
                    .iter()
                    .map(|(k, v)| m::ListenerAttribute {
                        key: Some(k.clone()),
                        value: Some(v.clone()),
                    })
                    .collect(),
            ),
        })
    }

    async fn modify_listener_attributes(
        &self,
        r: m::ModifyListenerAttributesInput,
    ) -> Result<m::ModifyListenerAttributesOutput, AwsError> {
        self.listener_by_arn(&r.listener_arn).await?;
        match r.attributes.first() {
            None => Ok(m::ModifyListenerAttributesOutput {
                attributes: Some(vec![]),
            }),
            Some(a) => Err(validation(format!(
                "Listener attribute key '{}' is not recognized",
                a.key.as_deref().unwrap_or_default()
            ))),
        }
    }

    // ---- rules ----

    async fn create_rule(&self, r: m::CreateRuleInput) -> Result<m::CreateRuleOutput, AwsError> {
        if r.transforms.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(not_supported("Rule transforms"));
        }
        if !(1..=50000).contains(&r.priority) {
            return Err(validation("Rule priority must be between 1 and 50000"));
        }
        validate::conditions(&r.conditions)?;
        if r.conditions.is_empty() {
            return Err(validation("A rule must have at least one condition"));
        }
        let tags = validate::tags(r.tags.as_deref().unwrap_or_default())?;
        for _ in 0..MAX_ATTEMPTS {
            let l = self.listener_by_arn(&r.listener_arn).await?;
            let lb = self.lb_by_arn(&l.value.load_balancer_arn).await?;
            if lb.value.kind == "network" {
                return Err(invalid_config(
                    "A network load balancer's listeners have no rules",
                ));
            }
            let tgs = self.check_actions(&lb.value, &r.actions).await?;
            let rules =
                list::<RuleRecord>(self.lb, &keys::rules_of(&lb.value.scoped_name())).await?;
            if rules
                .iter()
                .any(|x| x.value.listener_arn == l.value.arn && x.value.priority == r.priority)
            {
                return Err(AwsError::client(
                    "PriorityInUse",
                    format!("Priority '{}' is currently in use", r.priority),
                ));
            }
            if rules.len() >= limit("rules-per-application-load-balancer") {
                return Err(AwsError::client(
                    "TooManyRules",
                    "The quota of rules per load balancer is reached",
                ));
            }
            let id = arn::new_id();
            let record = RuleRecord {
                arn: format!(
                    "{}listener-rule/app/{}/{}/{}/{id}",
                    self.prefix(),
                    lb.value.name,
                    lb.value.id,
                    l.value.id
                ),
                id: id.clone(),
                listener_arn: l.value.arn.clone(),
                priority: r.priority,
                conditions: r.conditions.clone(),
                actions: r.actions.clone(),
                tags: tags.clone(),
            };
            let key = keys::rule(&lb.value.scoped_name(), &l.value.id, &id);
            let mut txn = Txn::new()
                .when(l.unchanged())
                .when(lb.unchanged())
                .then(typed::put(&key, &record));
            // Every rule of the listener, so a concurrent rule with the same
            // priority makes one of the two writes retry.
            for x in &rules {
                txn = txn.when(x.unchanged());
            }
            txn = txn.when(Compare::NotExists(key.clone()));
            for tg in &tgs {
                txn = txn.when(tg.unchanged()).then(tg.put());
            }
            if commit(self.lb, txn).await? {
                return Ok(m::CreateRuleOutput {
                    rules: Some(vec![rule_to_wire(&record)]),
                });
            }
        }
        Err(contention())
    }

    async fn describe_rules(
        &self,
        r: m::DescribeRulesInput,
    ) -> Result<m::DescribeRulesOutput, AwsError> {
        let arns = r.rule_arns.unwrap_or_default();
        let mut out: Vec<(String, m::Rule)> = Vec::new();
        match (&r.listener_arn, arns.is_empty()) {
            (Some(_), false) => {
                return Err(validation(
                    "Rule ARNs and a listener ARN cannot be specified at the same time",
                ))
            }
            (None, true) => {
                return Err(validation(
                    "You must specify either rule ARNs or a listener ARN",
                ))
            }
            (Some(l_arn), true) => {
                let l = self.listener_by_arn(l_arn).await?.value;
                let mut rules: Vec<RuleRecord> = list::<RuleRecord>(
                    self.lb,
                    &keys::rules_of_listener(&l.scoped_load_balancer(), &l.id),
                )
                .await?
                .into_iter()
                .map(|x| x.value)
                .collect();
                rules.sort_by_key(|x| x.priority);
                for x in &rules {
                    out.push((format!("{:05}", x.priority), rule_to_wire(x)));
                }
                out.push(("99999".into(), default_rule(&l)));
            }
            (None, false) => {
                for (i, a) in arns.iter().enumerate() {
                    let rule = self.rule_by_arn(a).await?;
                    out.push((format!("{i:05}"), rule));
                }
            }
        }
        let (items, next) = page(out, r.marker.as_deref(), r.page_size)?;
        Ok(m::DescribeRulesOutput {
            rules: Some(items),
            next_marker: next,
        })
    }

    /// A rule by ARN, the default rule of a listener included.
    async fn rule_by_arn(&self, rule_arn: &str) -> Result<m::Rule, AwsError> {
        Ok(match self.rule_record(rule_arn).await? {
            RuleRef::Rule(x) => rule_to_wire(&x.value),
            RuleRef::Default(l) => default_rule(&l.value),
        })
    }

    async fn rule_record(&self, rule_arn: &str) -> Result<RuleRef, AwsError> {
        let (lb, listener, id) = arn::rule_parts(rule_arn)
            .ok_or_else(|| validation(format!("'{rule_arn}' is not a valid rule ARN")))?;
        if listener == id {
            if let Some(l) =
                get::<ListenerRecord>(self.lb, &keys::listener(&self.here(lb), listener)).await?
            {
                if l.value.default_rule_arn() == rule_arn {
                    return Ok(RuleRef::Default(l));
                }
            }
            return Err(rule_not_found());
        }
        match get::<RuleRecord>(self.lb, &keys::rule(&self.here(lb), listener, id)).await? {
            Some(x) if x.value.arn == rule_arn => Ok(RuleRef::Rule(x)),
            _ => Err(rule_not_found()),
        }
    }

    async fn modify_rule(&self, r: m::ModifyRuleInput) -> Result<m::ModifyRuleOutput, AwsError> {
        if r.transforms.as_ref().is_some_and(|t| !t.is_empty()) || r.reset_transforms == Some(true)
        {
            return Err(not_supported("Rule transforms"));
        }
        if let Some(c) = &r.conditions {
            validate::conditions(c)?;
        }
        for _ in 0..MAX_ATTEMPTS {
            match self.rule_record(&r.rule_arn).await? {
                RuleRef::Default(mut l) => {
                    if r.conditions.as_ref().is_some_and(|c| !c.is_empty()) {
                        return Err(AwsError::client(
                            "OperationNotPermitted",
                            "The conditions of a default rule cannot be modified",
                        ));
                    }
                    let lb = self.lb_by_arn(&l.value.load_balancer_arn).await?;
                    let mut txn = Txn::new().when(l.unchanged()).when(lb.unchanged());
                    if let Some(actions) = &r.actions {
                        for tg in self.check_actions(&lb.value, actions).await? {
                            txn = txn.when(tg.unchanged()).then(tg.put());
                        }
                        l.value.default_actions = actions.clone();
                    }
                    if commit(self.lb, txn.then(l.put())).await? {
                        return Ok(m::ModifyRuleOutput {
                            rules: Some(vec![default_rule(&l.value)]),
                        });
                    }
                }
                RuleRef::Rule(mut x) => {
                    let l = self.listener_by_arn(&x.value.listener_arn).await?;
                    let lb = self.lb_by_arn(&l.value.load_balancer_arn).await?;
                    let mut txn = Txn::new().when(x.unchanged()).when(lb.unchanged());
                    if let Some(actions) = &r.actions {
                        for tg in self.check_actions(&lb.value, actions).await? {
                            txn = txn.when(tg.unchanged()).then(tg.put());
                        }
                        x.value.actions = actions.clone();
                    }
                    if let Some(c) = &r.conditions {
                        if c.is_empty() {
                            return Err(validation("A rule must have at least one condition"));
                        }
                        x.value.conditions = c.clone();
                    }
                    if commit(self.lb, txn.then(x.put())).await? {
                        return Ok(m::ModifyRuleOutput {
                            rules: Some(vec![rule_to_wire(&x.value)]),
                        });
                    }
                }
            }
        }
        Err(contention())
    }

    async fn delete_rule(&self, r: m::DeleteRuleInput) -> Result<m::DeleteRuleOutput, AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            match self.rule_record(&r.rule_arn).await? {
                RuleRef::Default(_) => {
                    return Err(AwsError::client(
                        "OperationNotPermitted",
                        "A listener's default rule cannot be deleted",
                    ))
                }
                RuleRef::Rule(x) => {
                    let txn = Txn::new().when(x.unchanged()).then(Op::delete(&x.key));
                    if commit(self.lb, txn).await? {
                        return Ok(m::DeleteRuleOutput {});
                    }
                }
            }
        }
        Err(contention())
    }

    async fn set_rule_priorities(
        &self,
        r: m::SetRulePrioritiesInput,
    ) -> Result<m::SetRulePrioritiesOutput, AwsError> {
        if r.rule_priorities.is_empty() {
            return Err(validation("At least one rule priority must be specified"));
        }
        for _ in 0..MAX_ATTEMPTS {
            let mut changed: Vec<Versioned<RuleRecord>> = Vec::new();
            for p in &r.rule_priorities {
                let arn = p
                    .rule_arn
                    .as_deref()
                    .ok_or_else(|| validation("A rule priority must name its rule"))?;
                let prio = p
                    .priority
                    .ok_or_else(|| validation("A rule priority must have a priority"))?;
                if !(1..=50000).contains(&prio) {
                    return Err(validation("Rule priority must be between 1 and 50000"));
                }
                let mut x = match self.rule_record(arn).await? {
                    RuleRef::Rule(x) => x,
                    RuleRef::Default(_) => {
                        return Err(AwsError::client(
                            "OperationNotPermitted",
                            "The priority of a default rule cannot be changed",
                        ))
                    }
                };
                if changed.iter().any(|c| c.key == x.key) {
                    return Err(validation(format!("Rule '{arn}' is given more than once")));
                }
                x.value.priority = prio;
                changed.push(x);
            }
            // Priorities are checked against every rule of the listeners
            // touched, with the changes applied.
            let mut txn = Txn::new();
            let mut listeners: Vec<&str> = changed
                .iter()
                .map(|c| c.value.listener_arn.as_str())
                .collect();
            listeners.sort_unstable();
            listeners.dedup();
            for l_arn in listeners {
                let (lb, lid) = arn::listener_parts(l_arn).ok_or_else(listener_not_found)?;
                let all =
                    list::<RuleRecord>(self.lb, &keys::rules_of_listener(&self.here(lb), lid))
                        .await?;
                let mut seen = BTreeMap::new();
                for x in &all {
                    let prio = changed
                        .iter()
                        .find(|c| c.key == x.key)
                        .map(|c| c.value.priority)
                        .unwrap_or(x.value.priority);
                    if seen.insert(prio, ()).is_some() {
                        return Err(AwsError::client(
                            "PriorityInUse",
                            format!("Priority '{prio}' is currently in use"),
                        ));
                    }
                    txn = txn.when(x.unchanged());
                }
            }
            for c in &changed {
                txn = txn.then(c.put());
            }
            if commit(self.lb, txn).await? {
                return Ok(m::SetRulePrioritiesOutput {
                    rules: Some(changed.iter().map(|c| rule_to_wire(&c.value)).collect()),
                });
            }
        }
        Err(contention())
    }

    // ---- tags ----

    /// The record behind a taggable ARN, as raw JSON with its tags, so
    /// the tag operations serve every kind alike.
    async fn tagged(&self, a: &str) -> Result<Versioned<serde_json::Value>, AwsError> {
        let key = if let Some(n) = arn::load_balancer_name(a) {
            keys::load_balancer(&self.here(n))
        } else if let Some(n) = arn::target_group_name(a) {
            keys::target_group(&self.here(n))
        } else if let Some((lb, id)) = arn::listener_parts(a) {
            keys::listener(&self.here(lb), id)
        } else if let Some((lb, l, id)) = arn::rule_parts(a) {
            keys::rule(&self.here(lb), l, id)
        } else {
            return Err(validation(format!("'{a}' is not a valid resource ARN")));
        };
        match get::<serde_json::Value>(self.lb, &key).await? {
            Some(v) if v.value.get("arn").and_then(|x| x.as_str()) == Some(a) => Ok(v),
            _ => Err(if arn::load_balancer_name(a).is_some() {
                lb_not_found()
            } else if arn::target_group_name(a).is_some() {
                tg_not_found()
            } else if arn::listener_parts(a).is_some() {
                listener_not_found()
            } else {
                rule_not_found()
            }),
        }
    }

    async fn retag(
        &self,
        arns: &[String],
        f: impl Fn(&mut crate::records::Tags) -> Result<(), AwsError>,
    ) -> Result<(), AwsError> {
        if arns.is_empty() {
            return Err(validation("At least one resource ARN must be specified"));
        }
        for _ in 0..MAX_ATTEMPTS {
            let mut txn = Txn::new();
            for a in arns {
                let mut v = self.tagged(a).await?;
                let mut tags: crate::records::Tags =
                    serde_json::from_value(v.value["tags"].clone()).unwrap_or_default();
                f(&mut tags)?;
                validate::check_tag_count(&tags)?;
                v.value["tags"] =
                    serde_json::to_value(&tags).map_err(|e| AwsError::internal(e.to_string()))?;
                txn = txn.when(v.unchanged()).then(v.put());
            }
            if commit(self.lb, txn).await? {
                return Ok(());
            }
        }
        Err(contention())
    }

    async fn add_tags(&self, r: m::AddTagsInput) -> Result<m::AddTagsOutput, AwsError> {
        let new = validate::tags(&r.tags)?;
        self.retag(&r.resource_arns, |tags| {
            tags.extend(new.clone());
            Ok(())
        })
        .await?;
        Ok(m::AddTagsOutput {})
    }

    async fn remove_tags(&self, r: m::RemoveTagsInput) -> Result<m::RemoveTagsOutput, AwsError> {
        self.retag(&r.resource_arns, |tags| {
            for k in &r.tag_keys {
                tags.remove(k);
            }
            Ok(())
        })
        .await?;
        Ok(m::RemoveTagsOutput {})
    }

    async fn describe_tags(
        &self,
        r: m::DescribeTagsInput,
    ) -> Result<m::DescribeTagsOutput, AwsError> {
        if r.resource_arns.len() > 20 {
            return Err(validation(
                "At most 20 resource ARNs can be described at once",
            ));
        }
        let mut out = Vec::new();
        for a in &r.resource_arns {
            let v = self.tagged(a).await?;
            let tags: crate::records::Tags =
                serde_json::from_value(v.value["tags"].clone()).unwrap_or_default();
            out.push(m::TagDescription {
                resource_arn: Some(a.clone()),
                tags: Some(validate::tags_to_wire(&tags)),
            });
        }
        Ok(m::DescribeTagsOutput {
            tag_descriptions: Some(out),
        })
    }

    async fn describe_account_limits(
        &self,
        r: m::DescribeAccountLimitsInput,
    ) -> Result<m::DescribeAccountLimitsOutput, AwsError> {
        let items = LIMITS
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    m::Limit {
                        name: Some(n.to_string()),
                        max: Some(v.to_string()),
                    },
                )
            })
            .collect();
        let (limits, next) = page(items, r.marker.as_deref(), r.page_size)?;
        Ok(m::DescribeAccountLimitsOutput {
            limits: Some(limits),
            next_marker: next,
        })
    }

    async fn describe_ssl_policies(
        &self,
        r: m::DescribeSSLPoliciesInput,
    ) -> Result<m::DescribeSSLPoliciesOutput, AwsError> {
        if r.load_balancer_type
            .as_ref()
            .is_some_and(|t| t.as_str() == "gateway")
        {
            return Ok(m::DescribeSSLPoliciesOutput::default());
        }
        let names = r.names.unwrap_or_default();
        let mut out = Vec::new();
        for (name, protocols) in validate::SSL_POLICIES {
            if !names.is_empty() && !names.iter().any(|n| n == name) {
                continue;
            }
            out.push(m::SslPolicy {
                name: Some(name.to_string()),
                ssl_protocols: Some(protocols.iter().map(|p| p.to_string()).collect()),
                ciphers: None,
                supported_load_balancer_types: Some(vec!["application".into()]),
            });
        }
        for n in &names {
            if !validate::SSL_POLICIES.iter().any(|(p, _)| p == n) {
                return Err(AwsError::client(
                    "SSLPolicyNotFound",
                    format!("SSL policy '{n}' not found"),
                ));
            }
        }
        let items = out
            .into_iter()
            .map(|p| (p.name.clone().unwrap_or_default(), p))
            .collect();
        let (policies, next) = page(items, r.marker.as_deref(), r.page_size)?;
        Ok(m::DescribeSSLPoliciesOutput {
            ssl_policies: Some(policies),
            next_marker: next,
        })
    }
}

enum RuleRef {
    Rule(Versioned<RuleRecord>),
    Default(Versioned<ListenerRecord>),
}

fn check_ssl_policy(p: &str) -> Result<(), AwsError> {
    if validate::SSL_POLICIES.iter().any(|(n, _)| *n == p) {
        Ok(())
    } else {
        Err(AwsError::client(
            "SSLPolicyNotFound",
            format!("SSL policy '{p}' not found"),
        ))
    }
}

fn lb_attributes_wire(a: &crate::records::Attributes) -> Vec<m::LoadBalancerAttribute> {
    a.iter()
        .map(|(k, v)| m::LoadBalancerAttribute {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

fn tg_attributes_wire(a: &crate::records::Attributes) -> Vec<m::TargetGroupAttribute> {
    a.iter()
        .map(|(k, v)| m::TargetGroupAttribute {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

struct HealthInput {
    protocol: Option<String>,
    port: Option<String>,
    enabled: Option<bool>,
    path: Option<String>,
    interval: Option<i32>,
    timeout: Option<i32>,
    healthy: Option<i32>,
    unhealthy: Option<i32>,
    matcher: Option<m::Matcher>,
}

/// The health check of a target group of `protocol`: `prior`'s settings
/// (or the protocol's defaults) with `given` applied, validated.
fn health_check(
    protocol: &str,
    prior: Option<&crate::records::HealthCheck>,
    given: HealthInput,
) -> Result<crate::records::HealthCheck, AwsError> {
    let (interval, timeout, healthy, unhealthy) = health_defaults(protocol);
    let mut hc = prior.cloned().unwrap_or(crate::records::HealthCheck {
        enabled: true,
        protocol: if protocol == "TCP" {
            "TCP".into()
        } else {
            protocol.to_owned()
        },
        port: "traffic-port".into(),
        path: (protocol != "TCP").then(|| "/".to_owned()),
        interval_seconds: interval,
        timeout_seconds: timeout,
        healthy_threshold: healthy,
        unhealthy_threshold: unhealthy,
        matcher: (protocol != "TCP").then(|| "200".to_owned()),
    });
    if let Some(p) = given.protocol {
        if p == "HTTPS" {
            return Err(not_supported("HTTPS health checks"));
        }
        if !matches!(p.as_str(), "HTTP" | "TCP") {
            return Err(validation(format!(
                "Health check protocol '{p}' must be HTTP, HTTPS or TCP"
            )));
        }
        if protocol != "TCP" && p == "TCP" {
            return Err(validation(
                "Health check protocol TCP is not supported for HTTP or HTTPS target groups",
            ));
        }
        if hc.protocol != p && p != "TCP" {
            hc.path.get_or_insert_with(|| "/".into());
            hc.matcher.get_or_insert_with(|| "200".into());
        }
        hc.protocol = p;
    }
    if let Some(port) = given.port {
        if port != "traffic-port" {
            let n: i32 = port.parse().map_err(|_| {
                validation(format!(
                    "Health check port '{port}' must be 'traffic-port' or a port number"
                ))
            })?;
            validate::port(n)?;
        }
        hc.port = port;
    }
    if let Some(e) = given.enabled {
        if !e && protocol == "TCP" {
            return Err(validation(
                "Health checks cannot be disabled for a TCP target group",
            ));
        }
        hc.enabled = e;
    }
    if let Some(path) = given.path {
        if hc.protocol == "TCP" {
            return Err(validation("A TCP health check has no path"));
        }
        if !path.starts_with('/') || path.len() > 1024 {
            return Err(validation(
                "Health check path must start with a '/' and be at most 1024 characters",
            ));
        }
        hc.path = Some(path);
    }
    if let Some(i) = given.interval {
        if !(5..=300).contains(&i) {
            return Err(validation(
                "Health check interval must be between 5 and 300 seconds",
            ));
        }
        hc.interval_seconds = i;
    }
    if let Some(t) = given.timeout {
        if !(2..=120).contains(&t) {
            return Err(validation(
                "Health check timeout must be between 2 and 120 seconds",
            ));
        }
        hc.timeout_seconds = t;
    }
    for (v, slot, what) in [
        (given.healthy, &mut hc.healthy_threshold, "Healthy"),
        (given.unhealthy, &mut hc.unhealthy_threshold, "Unhealthy"),
    ] {
        if let Some(n) = v {
            if !(2..=10).contains(&n) {
                return Err(validation(format!(
                    "{what} threshold count must be between 2 and 10"
                )));
            }
            *slot = n;
        }
    }
    if hc.timeout_seconds >= hc.interval_seconds {
        return Err(validation(
            "Health check timeout must be smaller than the interval",
        ));
    }
    if let Some(mt) = given.matcher {
        if mt.grpc_code.is_some() {
            return Err(not_supported("gRPC health check matchers"));
        }
        if hc.protocol == "TCP" {
            return Err(validation("A TCP health check has no matcher"));
        }
        let code = mt
            .http_code
            .ok_or_else(|| validation("A matcher must have an HTTP code"))?;
        validate::http_codes(&code)?;
        hc.matcher = Some(code);
    }
    Ok(hc)
}

/// Records that carry their ARN (which names their region).
trait HasArn {
    fn arn(&self) -> &str;
}

impl HasArn for LoadBalancerRecord {
    fn arn(&self) -> &str {
        &self.arn
    }
}

impl HasArn for TargetGroupRecord {
    fn arn(&self) -> &str {
        &self.arn
    }
}
