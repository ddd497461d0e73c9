//! What other components (the ECS service controller) read and write of
//! the load balancer's state: target groups, which load balancers use them,
//! targets and their health, and the writes that register and deregister a
//! target. The same records the API and the data plane use, so a target an
//! ECS service registers is one DescribeTargetHealth shows.

use crate::records::{
    keys, region_of, scoped, HealthRecord, ListenerRecord, Millis, RuleRecord, TargetGroupRecord,
    TargetRecord,
};
use crate::validate;
use std::collections::{BTreeMap, HashMap};
use wharf_model::elbv2 as m;
use wharf_store::typed::{self, Versioned};
use wharf_store::{Compare, Op, Store, StoreError, Txn};

/// Which load balancers (ARNs) each target group (by ARN) receives traffic
/// from, through a listener's default actions or a rule.
pub fn usage(listeners: &[ListenerRecord], rules: &[RuleRecord]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut note = |lb_arn: &str, actions: &[m::Action]| {
        for a in actions {
            for (tg, _) in validate::forward_groups(a).unwrap_or_default() {
                let lbs = out.entry(tg).or_default();
                if !lbs.iter().any(|l| l == lb_arn) {
                    lbs.push(lb_arn.to_owned());
                }
            }
        }
    };
    let lb_of: HashMap<&str, &str> = listeners
        .iter()
        .map(|l| (l.arn.as_str(), l.load_balancer_arn.as_str()))
        .collect();
    for l in listeners {
        note(&l.load_balancer_arn, &l.default_actions);
    }
    for r in rules {
        if let Some(lb_arn) = lb_of.get(r.listener_arn.as_str()) {
            note(lb_arn, &r.actions);
        }
    }
    out
}

/// Reads the usage map from the store.
pub async fn load_usage(store: &dyn Store) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
    let (listeners, _) = typed::list::<ListenerRecord>(store, keys::LISTENERS).await?;
    let (rules, _) = typed::list::<RuleRecord>(store, keys::RULES).await?;
    let listeners: Vec<ListenerRecord> = listeners.into_iter().map(|v| v.value).collect();
    let rules: Vec<RuleRecord> = rules.into_iter().map(|v| v.value).collect();
    Ok(usage(&listeners, &rules))
}

/// A target group by ARN.
pub async fn target_group(
    store: &dyn Store,
    arn: &str,
) -> Result<Option<TargetGroupRecord>, StoreError> {
    let Some(name) = crate::arn::target_group_name(arn) else {
        return Ok(None);
    };
    Ok(
        typed::get::<TargetGroupRecord>(store, &keys::target_group(&scoped(region_of(arn), name)))
            .await?
            .map(|v| v.value)
            .filter(|g| g.arn == arn),
    )
}

/// A target as the health checks judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Not registered (or its deregistration completed).
    Absent,
    Draining,
    Initial,
    Healthy,
    Unhealthy,
}

/// Every target group, target and verdict, read at once.
#[derive(Debug, Default)]
pub struct Registry {
    groups: HashMap<String, TargetGroupRecord>,
    targets: HashMap<String, Versioned<TargetRecord>>,
    health: HashMap<String, HealthRecord>,
}

impl Registry {
    pub async fn load(store: &dyn Store) -> Result<Registry, StoreError> {
        let (groups, _) = typed::list::<TargetGroupRecord>(store, keys::TARGET_GROUPS).await?;
        let (targets, _) = typed::list::<TargetRecord>(store, keys::TARGETS).await?;
        let (health, _) = typed::list::<HealthRecord>(store, keys::HEALTH).await?;
        Ok(Registry {
            groups: groups
                .into_iter()
                .map(|g| (g.value.arn.clone(), g.value))
                .collect(),
            targets: targets.into_iter().map(|t| (t.key.clone(), t)).collect(),
            health: health.into_iter().map(|h| (h.key, h.value)).collect(),
        })
    }

    pub fn group(&self, arn: &str) -> Option<&TargetGroupRecord> {
        self.groups.get(arn)
    }

    pub fn target(
        &self,
        group: &TargetGroupRecord,
        id: &str,
        port: i32,
    ) -> Option<&Versioned<TargetRecord>> {
        self.targets
            .get(&keys::target(&group.scoped_name(), id, port))
    }

    pub fn standing(&self, group: &TargetGroupRecord, id: &str, port: i32) -> Standing {
        let Some(t) = self.target(group, id, port) else {
            return Standing::Absent;
        };
        if t.value.deregistered_at.is_some() {
            return Standing::Draining;
        }
        if !group.health_check.enabled {
            return Standing::Healthy;
        }
        match self
            .health
            .get(&keys::health(&group.scoped_name(), id, port))
            .filter(|h| h.registered_at == t.value.registered_at)
            .map(|h| h.state.as_str())
        {
            Some("healthy") => Standing::Healthy,
            Some("unhealthy") => Standing::Unhealthy,
            _ => Standing::Initial,
        }
    }
}

/// The compare and the write that register `record` at `key`, given the
/// record there now (`prior`): a registered target is left as it is (the
/// compare only), a draining one serves again from initial health, an
/// absent one is added. The API (many targets in one transaction) and the
/// ECS controller both register through this.
pub fn registration(
    key: &str,
    prior: Option<&Versioned<TargetRecord>>,
    record: &TargetRecord,
) -> (Compare, Option<Op>) {
    match prior {
        Some(t) if t.value.deregistered_at.is_none() => (t.unchanged(), None),
        Some(t) => (t.unchanged(), Some(typed::put(key, record))),
        None => (
            Compare::NotExists(key.to_owned()),
            Some(typed::put(key, record)),
        ),
    }
}

/// The compare and the write that start draining `prior` at `now`; none if
/// it drains already.
pub fn draining(prior: &Versioned<TargetRecord>, now: Millis) -> Option<(Compare, Op)> {
    if prior.value.deregistered_at.is_some() {
        return None;
    }
    let mut drained = prior.value.clone();
    drained.deregistered_at = Some(now);
    Some((prior.unchanged(), typed::put(&prior.key, &drained)))
}

/// Registers `id:port` with `group`, as [`registration`]; nothing if it is
/// registered already. Compared against what `registry` read.
pub fn register(
    registry: &Registry,
    group: &TargetGroupRecord,
    id: &str,
    port: i32,
    now: Millis,
) -> Option<Txn> {
    let key = keys::target(&group.scoped_name(), id, port);
    let record = TargetRecord {
        id: id.to_owned(),
        port,
        availability_zone: None,
        registered_at: now,
        deregistered_at: None,
    };
    let (compare, write) = registration(&key, registry.targets.get(&key), &record);
    Some(Txn::new().when(compare).then(write?))
}

/// Starts draining `id:port` in `group`; nothing if it is not registered
/// or already draining.
pub fn deregister(
    registry: &Registry,
    group: &TargetGroupRecord,
    id: &str,
    port: i32,
    now: Millis,
) -> Option<Txn> {
    let t = registry
        .targets
        .get(&keys::target(&group.scoped_name(), id, port))?;
    let (compare, write) = draining(t, now)?;
    Some(Txn::new().when(compare).then(write))
}

/// What [`set_forward`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// No such rule or listener, or it does not forward.
    Missing,
    Unchanged,
    Changed,
    /// The record changed since it was read: try again.
    Conflict,
}

/// The listener a listener ARN or a listener's default rule ARN names,
/// or the rule a rule ARN names.
enum Forwarder {
    Listener(Versioned<ListenerRecord>),
    Rule(Versioned<RuleRecord>),
}

async fn forwarder(store: &dyn Store, arn: &str) -> Result<Option<Forwarder>, StoreError> {
    let region = region_of(arn);
    if let Some((lb, id)) = crate::arn::listener_parts(arn) {
        let l =
            typed::get::<ListenerRecord>(store, &keys::listener(&scoped(region, lb), id)).await?;
        return Ok(l.filter(|l| l.value.arn == arn).map(Forwarder::Listener));
    }
    let Some((lb, listener, id)) = crate::arn::rule_parts(arn) else {
        return Ok(None);
    };
    let lb = scoped(region, lb);
    if listener == id {
        // A default rule: the listener's ARN as a rule, its id as the rule's.
        let l = typed::get::<ListenerRecord>(store, &keys::listener(&lb, listener)).await?;
        return Ok(l
            .filter(|l| l.value.default_rule_arn() == arn)
            .map(Forwarder::Listener));
    }
    let r = typed::get::<RuleRecord>(store, &keys::rule(&lb, listener, id)).await?;
    Ok(r.filter(|r| r.value.arn == arn).map(Forwarder::Rule))
}

/// The load balancer (ARN) whose listener a rule or listener ARN names,
/// and the target groups its forward action sends to; None when it does
/// not exist or does not forward.
pub async fn forward_of(
    store: &dyn Store,
    arn: &str,
) -> Result<Option<(String, Vec<(String, u32)>)>, StoreError> {
    let (lb_arn, actions) = match forwarder(store, arn).await? {
        None => return Ok(None),
        Some(Forwarder::Listener(l)) => (l.value.load_balancer_arn, l.value.default_actions),
        Some(Forwarder::Rule(r)) => {
            // A rule's load balancer is its listener's.
            let listener = match crate::arn::listener_parts(&r.value.listener_arn) {
                Some((lb, id)) => {
                    let key = keys::listener(&scoped(region_of(&r.value.listener_arn), lb), id);
                    typed::get::<ListenerRecord>(store, &key).await?
                }
                None => None,
            };
            let Some(l) = listener else {
                return Ok(None);
            };
            (l.value.load_balancer_arn, r.value.actions)
        }
    };
    Ok(actions
        .iter()
        .find(|a| a.r#type == m::ActionTypeEnum::Forward)
        .and_then(|a| validate::forward_groups(a).ok())
        .map(|groups| (lb_arn, groups)))
}

/// Makes the forward action of a listener rule (a default rule included)
/// or of a listener (an NLB's, by its ARN) send to `groups` by weight,
/// keeping its group stickiness: how ECS shifts a blue/green service's
/// traffic. Compare-and-swap: a concurrent change is a `Conflict`.
pub async fn set_forward(
    store: &dyn Store,
    arn: &str,
    groups: &[(String, u32)],
) -> Result<Forwarded, StoreError> {
    let shifted = |actions: &[m::Action]| -> Option<Vec<m::Action>> {
        let at = actions
            .iter()
            .position(|a| a.r#type == m::ActionTypeEnum::Forward)?;
        let old = &actions[at];
        let new = m::Action {
            r#type: m::ActionTypeEnum::Forward,
            order: old.order,
            forward_config: Some(m::ForwardActionConfig {
                target_groups: Some(
                    groups
                        .iter()
                        .map(|(arn, w)| m::TargetGroupTuple {
                            target_group_arn: Some(arn.clone()),
                            weight: Some(i32::try_from(*w).unwrap_or(999).min(999)),
                        })
                        .collect(),
                ),
                target_group_stickiness_config: old
                    .forward_config
                    .as_ref()
                    .and_then(|f| f.target_group_stickiness_config.clone()),
            }),
            ..Default::default()
        };
        let mut out = actions.to_vec();
        out[at] = new;
        Some(out)
    };
    let Some(f) = forwarder(store, arn).await? else {
        return Ok(Forwarded::Missing);
    };
    let current = match &f {
        Forwarder::Listener(l) => &l.value.default_actions,
        Forwarder::Rule(r) => &r.value.actions,
    };
    let Some(actions) = shifted(current) else {
        return Ok(Forwarded::Missing);
    };
    let same = actions == *current;
    let (guard, op) = match f {
        Forwarder::Listener(mut l) => {
            l.value.default_actions = actions;
            (l.unchanged(), l.put())
        }
        Forwarder::Rule(mut r) => {
            r.value.actions = actions;
            (r.unchanged(), r.put())
        }
    };
    if same {
        return Ok(Forwarded::Unchanged);
    }
    Ok(
        match typed::commit(store, Txn::new().when(guard).then(op)).await? {
            true => Forwarded::Changed,
            false => Forwarded::Conflict,
        },
    )
}
