//! Capacity providers and capacity provider strategies: which provider each
//! new task of a RunTask or a service runs on.
//!
//! A strategy is up to 20 providers, each with a `weight` (0–1,000) and a
//! `base` (0–100,000; at most one provider has one). The base provider
//! takes the first `base` tasks; the tasks after that are split in
//! proportion to the weights. [`assign`] does that one task at a time,
//! against what already runs, so a service scaled in small steps ends up
//! where one scaled in a single step would.

use crate::error::{invalid, CoreError};
use std::collections::BTreeMap;
use wharf_model::ecs;

/// The providers every account has, run on the managed capacity.
pub const FARGATE: &str = "FARGATE";
pub const FARGATE_SPOT: &str = "FARGATE_SPOT";

/// The instance attribute naming the capacity provider an agent joined
/// (`wharf agent --capacity-provider NAME`): a custom provider is the
/// group of container instances that carry it.
pub const INSTANCE_ATTRIBUTE: &str = "wharf.capacity-provider";

/// Why a FARGATE_SPOT task is stopped by an interruption, as ECS says it.
pub const SPOT_INTERRUPTION: &str = "SpotInterruption";
pub const SPOT_INTERRUPTED_REASON: &str = "Your Spot Task was interrupted.";
/// How long an interrupted Spot task has between SIGTERM and SIGKILL.
pub const SPOT_WARNING_SECONDS: u32 = 120;

pub const MAX_STRATEGY_ITEMS: usize = 20;
const MAX_WEIGHT: i32 = 1_000;
const MAX_BASE: i32 = 100_000;

pub fn is_fargate(provider: &str) -> bool {
    provider == FARGATE || provider == FARGATE_SPOT
}

/// One validated item of a strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub provider: String,
    pub weight: u32,
    pub base: u32,
}

/// A strategy checked as ECS checks it. `associated` is the cluster's
/// providers: a strategy may only name those.
pub fn validate(
    given: &[ecs::CapacityProviderStrategyItem],
    associated: &[String],
) -> Result<Vec<Item>, CoreError> {
    if given.is_empty() {
        return Err(invalid(
            "The capacity provider strategy must contain at least one capacity provider.",
        ));
    }
    if given.len() > MAX_STRATEGY_ITEMS {
        return Err(invalid(format!(
            "A capacity provider strategy can contain at most {MAX_STRATEGY_ITEMS} capacity providers."
        )));
    }
    let mut items: Vec<Item> = vec![];
    for g in given {
        let weight = g.weight.unwrap_or(0);
        let base = g.base.unwrap_or(0);
        if !(0..=MAX_WEIGHT).contains(&weight) {
            return Err(invalid(format!(
                "The weight of capacity provider {} must be between 0 and {MAX_WEIGHT}.",
                g.capacity_provider
            )));
        }
        if !(0..=MAX_BASE).contains(&base) {
            return Err(invalid(format!(
                "The base of capacity provider {} must be between 0 and {MAX_BASE}.",
                g.capacity_provider
            )));
        }
        if items.iter().any(|i| i.provider == g.capacity_provider) {
            return Err(invalid(format!(
                "The capacity provider strategy names {} more than once.",
                g.capacity_provider
            )));
        }
        if !associated.contains(&g.capacity_provider) {
            return Err(invalid(
                "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again.",
            ));
        }
        items.push(Item {
            provider: g.capacity_provider.clone(),
            weight: weight as u32,
            base: base as u32,
        });
    }
    if items.iter().filter(|i| i.base > 0).count() > 1 {
        return Err(invalid(
            "Only one capacity provider in a capacity provider strategy can have a base value greater than zero.",
        ));
    }
    if items.iter().all(|i| i.weight == 0) {
        return Err(invalid(
            "There are no capacity providers with a weight value greater than zero defined in the capacity provider strategy. At least one capacity provider must have a weight value greater than zero specified.",
        ));
    }
    let fargate = items.iter().filter(|i| is_fargate(&i.provider)).count();
    if fargate != 0 && fargate != items.len() {
        return Err(invalid(
            "A capacity provider strategy cannot contain a mix of capacity providers using Auto Scaling groups and Fargate providers. Specify one or the other and try again.",
        ));
    }
    Ok(items)
}

/// The provider for each of `n` new tasks, given how many tasks already
/// run on each provider (`existing`). The base provider first fills its
/// base; after that each task goes to the provider furthest below its
/// share of the weights (the tasks past the base, this one included), the
/// earlier one in the strategy on a tie.
pub fn assign(strategy: &[Item], existing: &BTreeMap<String, usize>, n: usize) -> Vec<String> {
    let mut counts: Vec<usize> = strategy
        .iter()
        .map(|i| existing.get(&i.provider).copied().unwrap_or(0))
        .collect();
    if strategy.is_empty() {
        return vec![];
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let pick = (0..strategy.len())
            .find(|&k| counts[k] < strategy[k].base as usize)
            .unwrap_or_else(|| {
                // The provider furthest below its share of the tasks past
                // the base, counting this one: (m + 1) * w / W - c, scaled
                // by W to stay in integers.
                let weighted =
                    |k: usize| counts[k].saturating_sub(strategy[k].base as usize) as i128;
                let m: i128 = (0..strategy.len()).map(weighted).sum();
                let total: i128 = strategy.iter().map(|i| i128::from(i.weight)).sum();
                let deficit =
                    |k: usize| (m + 1) * i128::from(strategy[k].weight) - weighted(k) * total;
                // The first of the largest deficits; a validated strategy
                // has a weight above zero, else the first provider.
                (0..strategy.len())
                    .filter(|&k| strategy[k].weight > 0)
                    .fold(None, |best: Option<usize>, k| match best {
                        Some(b) if deficit(b) >= deficit(k) => Some(b),
                        _ => Some(k),
                    })
                    .unwrap_or(0)
            });
        counts[pick] += 1;
        out.push(strategy[pick].provider.clone());
    }
    out
}

/// A strategy as the wire carries it.
pub fn to_wire(strategy: &[Item]) -> Vec<ecs::CapacityProviderStrategyItem> {
    strategy
        .iter()
        .map(|i| ecs::CapacityProviderStrategyItem {
            capacity_provider: i.provider.clone(),
            weight: Some(i.weight as i32),
            base: Some(i.base as i32),
        })
        .collect()
}

/// A capacity provider's name as CreateCapacityProvider checks it.
pub fn check_name(name: &str) -> Result<(), CoreError> {
    let ok_chars = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok_chars {
        return Err(invalid(
            "The capacity provider name can contain up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens.",
        ));
    }
    let lower = name.to_ascii_lowercase();
    if ["aws", "ecs", "fargate"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Err(invalid(
            "The capacity provider name cannot be prefixed with \"aws\", \"ecs\", or \"fargate\".",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(p: &str, weight: u32, base: u32) -> Item {
        Item {
            provider: p.into(),
            weight,
            base,
        }
    }

    fn tally(v: &[String]) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for p in v {
            *m.entry(p.clone()).or_default() += 1;
        }
        m
    }

    #[test]
    fn base_first_then_by_weight_as_the_ecs_guide_describes() {
        // The guide's example: A base 1 weight 1, B weight 4, six tasks:
        // A takes its base, the other five split 1:4.
        let s = [item("A", 1, 1), item("B", 4, 0)];
        let got = tally(&assign(&s, &BTreeMap::new(), 6));
        assert_eq!(got["A"], 2);
        assert_eq!(got["B"], 4);
    }

    #[test]
    fn a_zero_weight_base_provider_takes_only_its_base() {
        let s = [item("FARGATE", 0, 2), item("FARGATE_SPOT", 1, 0)];
        let got = assign(&s, &BTreeMap::new(), 5);
        assert_eq!(got[..2], ["FARGATE", "FARGATE"]);
        assert!(got[2..].iter().all(|p| p == "FARGATE_SPOT"));
    }

    #[test]
    fn what_runs_counts_toward_the_split() {
        let s = [item("A", 1, 0), item("B", 1, 0)];
        let existing = BTreeMap::from([("A".to_string(), 3)]);
        assert_eq!(assign(&s, &existing, 3), ["B", "B", "B"]);
    }

    #[test]
    fn validation_refuses_what_ecs_refuses() {
        let cp = |p: &str, w: Option<i32>, b: Option<i32>| ecs::CapacityProviderStrategyItem {
            capacity_provider: p.into(),
            weight: w,
            base: b,
        };
        let assoc = vec!["FARGATE".to_string(), "FARGATE_SPOT".into(), "mine".into()];
        let err = |v: &[ecs::CapacityProviderStrategyItem]| validate(v, &assoc).unwrap_err();
        assert!(err(&[cp("other", Some(1), None)])
            .to_string()
            .contains("not associated with the cluster"));
        assert!(err(&[cp("FARGATE", Some(0), Some(1))])
            .to_string()
            .contains("weight value greater than zero"));
        assert!(err(&[
            cp("FARGATE", Some(1), Some(1)),
            cp("FARGATE_SPOT", Some(1), Some(1))
        ])
        .to_string()
        .contains("Only one capacity provider"));
        assert!(
            err(&[cp("FARGATE", Some(1), None), cp("mine", Some(1), None)])
                .to_string()
                .contains("mix")
        );
        assert!(err(&[cp("FARGATE", Some(1001), None)])
            .to_string()
            .contains("weight"));
        assert!(err(&[cp("FARGATE", Some(1), Some(-1))])
            .to_string()
            .contains("base"));
        assert!(
            err(&[cp("FARGATE", Some(1), None), cp("FARGATE", Some(1), None)])
                .to_string()
                .contains("more than once")
        );
        assert!(err(&[]).to_string().contains("at least one"));
        assert_eq!(
            validate(&[cp("mine", Some(2), Some(3))], &assoc).unwrap(),
            [item("mine", 2, 3)]
        );
    }

    #[test]
    fn names_ecs_reserves_are_refused() {
        assert!(check_name("spot-pool_1").is_ok());
        for bad in ["", "awsX", "ECS-pool", "fargate2", "a b", &"x".repeat(256)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// Whatever the strategy, the base is met first and the rest keeps
        /// within one task of each provider's weighted share.
        #[test]
        fn the_split_follows_base_and_weights(
            weights in proptest::collection::vec(0u32..5, 1..5),
            base in 0u32..6,
            n in 0usize..60,
        ) {
            prop_assume!(weights.iter().any(|&w| w > 0));
            let s: Vec<Item> = weights
                .iter()
                .enumerate()
                .map(|(k, &w)| item(&format!("p{k}"), w, if k == 0 { base } else { 0 }))
                .collect();
            let got = tally(&assign(&s, &BTreeMap::new(), n));
            let count = |k: usize| got.get(&format!("p{k}")).copied().unwrap_or(0);
            let on_base = count(0).min(base as usize);
            prop_assert_eq!(on_base, (base as usize).min(n));
            let rest = n - on_base;
            let total: u32 = weights.iter().sum();
            for (k, &w) in weights.iter().enumerate() {
                let weighted = if k == 0 { count(0) - on_base } else { count(k) };
                let share = rest as f64 * f64::from(w) / f64::from(total);
                prop_assert!((weighted as f64 - share).abs() <= 1.0 + 1e-9,
                    "provider {} got {} of {} (share {})", k, weighted, rest, share);
            }
        }
    }
}
