//! Custom attributes on container instances (the only target type ECS has).

use super::{active_cluster, cluster_name, instances};
use crate::error::{invalid, ApiResult};
use crate::records::{self, commit};
use crate::wire::{self, paginate};
use crate::{Control, Ctx};
use std::collections::BTreeMap;
use wharf_core::records::{keys, ClusterKey, InstanceRecord};
use wharf_model::ecs;
use wharf_protocol::AwsError;
use wharf_store::Txn;

fn target_not_found(id: &str) -> AwsError {
    AwsError::client(
        "TargetNotFoundException",
        format!("Could not find target {id}."),
    )
}

/// Puts or removes `attrs` on their instances in one transaction: every
/// target is found before anything is written, so a call refused for one
/// attribute changes none.
async fn edit(
    c: &Control,
    cluster: &ClusterKey,
    attrs: &[ecs::Attribute],
    remove: bool,
) -> ApiResult<()> {
    for a in attrs {
        if a.target_type
            .as_ref()
            .is_some_and(|t| *t != ecs::TargetType::ContainerInstance)
        {
            return Err(invalid("targetType must be container-instance."));
        }
    }
    instances::validate_attributes(attrs)?;
    if attrs
        .iter()
        .any(|a| a.name == wharf_core::capacity::INSTANCE_ATTRIBUTE)
    {
        return Err(invalid(format!(
            "The attribute {} says which capacity provider an instance's agent joined (`wharf agent --capacity-provider`); it cannot be changed.",
            wharf_core::capacity::INSTANCE_ATTRIBUTE
        )));
    }
    let mut by_target: BTreeMap<&str, Vec<&ecs::Attribute>> = BTreeMap::new();
    for a in attrs {
        let target = a
            .target_id
            .as_deref()
            .ok_or_else(|| invalid("targetId is required."))?;
        by_target.entry(target).or_default().push(a);
    }
    for _ in 0..records::MAX_ATTEMPTS {
        // By key: an ARN and a bare ID may name the same instance.
        let mut found = BTreeMap::new();
        for (target, attrs) in &by_target {
            let Some(v) = instances::find(c, cluster, target).await? else {
                return Err(target_not_found(target));
            };
            let v = found.entry(v.key.clone()).or_insert(v);
            for a in attrs {
                if remove {
                    v.value.attributes.remove(&a.name);
                } else {
                    v.value.attributes.insert(a.name.clone(), a.value.clone());
                }
            }
        }
        let mut txn = Txn::new();
        for v in found.values_mut() {
            v.value.version += 1;
            txn = txn.when(v.unchanged()).then(v.put());
        }
        if commit(c.store.as_ref(), txn).await? {
            return Ok(());
        }
    }
    Err(records::contention())
}

pub async fn put(
    c: &Control,
    x: &Ctx,
    r: ecs::PutAttributesRequest,
) -> ApiResult<ecs::PutAttributesResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    active_cluster(c, x, &name).await?;
    if r.attributes.len() > 10 {
        return Err(AwsError::client(
            "AttributeLimitExceededException",
            "You can apply up to 10 custom attributes per resource.",
        ));
    }
    edit(c, &x.cluster_key(&name), &r.attributes, false).await?;
    Ok(ecs::PutAttributesResponse {
        attributes: Some(r.attributes),
    })
}

pub async fn delete(
    c: &Control,
    x: &Ctx,
    r: ecs::DeleteAttributesRequest,
) -> ApiResult<ecs::DeleteAttributesResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    active_cluster(c, x, &name).await?;
    edit(c, &x.cluster_key(&name), &r.attributes, true).await?;
    Ok(ecs::DeleteAttributesResponse {
        attributes: Some(r.attributes),
    })
}

pub async fn list(
    c: &Control,
    x: &Ctx,
    r: ecs::ListAttributesRequest,
) -> ApiResult<ecs::ListAttributesResponse> {
    let name = cluster_name(x, r.cluster.as_deref())?;
    active_cluster(c, x, &name).await?;
    let size = wire::page_size(r.max_results, 100, 100)?;
    if r.target_type != ecs::TargetType::ContainerInstance {
        return Err(invalid("targetType must be container-instance."));
    }
    if r.attribute_value.is_some() && r.attribute_name.is_none() {
        return Err(invalid(
            "attributeValue can only be given with attributeName.",
        ));
    }
    let (all, _) =
        records::list::<InstanceRecord>(c.store.as_ref(), &keys::instances(&x.cluster_key(&name)))
            .await?;
    let mut items = vec![];
    for v in all.into_iter().filter(|v| v.value.status != "INACTIVE") {
        for (k, val) in &v.value.attributes {
            if r.attribute_name.as_ref().is_some_and(|n| n != k)
                || r.attribute_value
                    .as_ref()
                    .is_some_and(|want| Some(want) != val.as_ref())
            {
                continue;
            }
            items.push((
                format!("{}/{k}", v.value.id),
                ecs::Attribute {
                    name: k.clone(),
                    value: val.clone(),
                    target_type: Some(ecs::TargetType::ContainerInstance),
                    target_id: Some(v.value.arn.clone()),
                },
            ));
        }
    }
    let (attributes, next) = paginate(items, r.next_token.as_deref(), size)?;
    Ok(ecs::ListAttributesResponse {
        attributes: Some(attributes),
        next_token: next,
    })
}
