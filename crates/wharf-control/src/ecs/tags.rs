//! Tags on clusters, task definitions, tasks, container instances,
//! services, task sets and capacity providers, stored inside each
//! resource's record (a task set's in its service's).

use crate::error::{from_core, invalid, ApiResult};
use crate::records::{self, commit};
use crate::{Control, Ctx};
use serde::{de::DeserializeOwned, Serialize};
use wharf_core::records::{
    keys, tags_to_wire, ClusterRecord, InstanceRecord, Tags, TaskDefinitionRecord, TaskRecord,
};
use wharf_core::service::ServiceRecord;
use wharf_model::ecs;
use wharf_protocol::AwsError;
use wharf_store::Txn;

/// ECS's tag rules: at most 50, keys 1–128 characters, values up to 256,
/// and the `aws:` prefix reserved.
pub(crate) fn check_tags(tags: &[ecs::Tag]) -> ApiResult<()> {
    if tags.len() > 50 {
        return Err(invalid("A resource can have at most 50 tags."));
    }
    for t in tags {
        let key = t.key.as_deref().unwrap_or("");
        if key.is_empty() || key.len() > 128 {
            return Err(invalid("Tag keys must be between 1 and 128 characters."));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid("Tag keys beginning with 'aws:' are reserved."));
        }
        if t.value.as_deref().unwrap_or("").len() > 256 {
            return Err(invalid("Tag values can be at most 256 characters."));
        }
    }
    Ok(())
}

fn not_found() -> AwsError {
    AwsError::client(
        "InvalidParameterException",
        "The specified resource could not be found.",
    )
}

/// The store key of the resource an ARN names, and which kind it is.
enum Kind {
    Cluster,
    TaskDefinition,
    Task,
    Instance,
    Service,
    CapacityProvider,
    /// A task set lives in its service's record: the key is the service's.
    TaskSet,
}

fn locate(x: &Ctx, arn: &str) -> ApiResult<(Kind, String)> {
    let region = x.region();
    let resource = arn
        .strip_prefix("arn:")
        .and_then(|r| {
            r.splitn(5, ':')
                .nth(4)
                .map(str::to_string)
                .filter(|_| r.split(':').nth(1) == Some("ecs"))
        })
        .ok_or_else(|| invalid(format!("Invalid resource ARN: {arn}")))?;
    // ECS is regional: another region's resource is not found here.
    if !wharf_core::arn::in_region(arn, region) {
        return Err(not_found());
    }
    if let Some(name) = resource.strip_prefix("cluster/") {
        return Ok((Kind::Cluster, keys::cluster(&x.cluster_key(name))));
    }
    if resource.starts_with("task-definition/") {
        let r = wharf_core::arn::task_definition_ref(arn).map_err(from_core)?;
        let rev = r
            .revision
            .ok_or_else(|| invalid("Task definition ARN must include a revision."))?;
        return Ok((
            Kind::TaskDefinition,
            keys::task_definition(region, &r.family, rev),
        ));
    }
    if resource.starts_with("task/") {
        if let (Some(cluster), id) = wharf_core::arn::task_id(arn).map_err(from_core)? {
            return Ok((Kind::Task, keys::task(&x.cluster_key(&cluster), &id)));
        }
    }
    if resource.starts_with("container-instance/") {
        if let (Some(cluster), id) =
            wharf_core::arn::container_instance_id(arn).map_err(from_core)?
        {
            return Ok((
                Kind::Instance,
                keys::instance(&x.cluster_key(&cluster), &id),
            ));
        }
    }
    if resource.starts_with("service/") {
        if let (Some(cluster), name) = wharf_core::arn::service_name(arn).map_err(from_core)? {
            return Ok((
                Kind::Service,
                keys::service(&x.cluster_key(&cluster), &name),
            ));
        }
    }
    // `task-set/CLUSTER/SERVICE/ecs-svc/NNN`: the set's ID has a `/` of its own.
    if let Some(rest) = resource.strip_prefix("task-set/") {
        let mut parts = rest.splitn(3, '/');
        if let (Some(cluster), Some(service), Some(_)) = (parts.next(), parts.next(), parts.next())
        {
            return Ok((
                Kind::TaskSet,
                keys::service(&x.cluster_key(cluster), service),
            ));
        }
    }
    if let Some(name) = resource.strip_prefix("capacity-provider/") {
        if wharf_core::capacity::is_fargate(name) {
            return Err(invalid(format!(
                "The {name} capacity provider is built in and cannot be tagged."
            )));
        }
        return Ok((
            Kind::CapacityProvider,
            keys::capacity_provider(region, name),
        ));
    }
    Err(invalid(format!(
        "Tagging is not supported for resource {arn}"
    )))
}

/// Reads, changes and writes back the tags of a record of type T (those
/// `tags` finds in it; None: the resource is not there).
async fn edit<T>(
    c: &Control,
    key: &str,
    tags: impl Fn(&mut T) -> Option<&mut Tags> + Send,
    f: &Edit<'_>,
) -> ApiResult<Tags>
where
    T: Serialize + DeserializeOwned + Send,
{
    for _ in 0..records::MAX_ATTEMPTS {
        let Some(mut v) = records::get::<T>(c.store.as_ref(), key).await? else {
            return Err(not_found());
        };
        let Some(t) = tags(&mut v.value) else {
            return Err(not_found());
        };
        f(t)?;
        let result = t.clone();
        if commit(
            c.store.as_ref(),
            Txn::new().when(v.unchanged()).then(v.put()),
        )
        .await?
        {
            return Ok(result);
        }
    }
    Err(records::contention())
}

/// A change to a tag set; an error aborts it and nothing is written.
type Edit<'a> = dyn Fn(&mut Tags) -> ApiResult<()> + Send + Sync + 'a;

async fn apply(c: &Control, x: &Ctx, arn: &str, f: &Edit<'_>) -> ApiResult<Tags> {
    let (kind, key) = locate(x, arn)?;
    match kind {
        Kind::Cluster => edit::<ClusterRecord>(c, &key, |r| Some(&mut r.tags), f).await,
        Kind::TaskDefinition => {
            edit::<TaskDefinitionRecord>(c, &key, |r| Some(&mut r.tags), f).await
        }
        Kind::Task => edit::<TaskRecord>(c, &key, |r| Some(&mut r.tags), f).await,
        Kind::Instance => edit::<InstanceRecord>(c, &key, |r| Some(&mut r.tags), f).await,
        Kind::TaskSet => {
            let of_set = |r: &ServiceRecord| r.task_sets.iter().position(|s| s.arn == arn);
            edit::<ServiceRecord>(c, &key, |r| of_set(r).map(|k| &mut r.task_sets[k].tags), f).await
        }
        Kind::Service => edit::<ServiceRecord>(c, &key, |r| Some(&mut r.tags), f).await,
        Kind::CapacityProvider => {
            edit::<wharf_core::records::CapacityProviderRecord>(c, &key, |r| Some(&mut r.tags), f)
                .await
        }
    }
}

pub async fn tag(
    c: &Control,
    x: &Ctx,
    r: ecs::TagResourceRequest,
) -> ApiResult<ecs::TagResourceResponse> {
    check_tags(&r.tags)?;
    let new = r.tags.clone();
    apply(c, x, &r.resource_arn, &|t: &mut Tags| {
        for tag in &new {
            t.insert(
                tag.key.clone().unwrap_or_default(),
                tag.value.clone().unwrap_or_default(),
            );
        }
        if t.len() > 50 {
            return Err(invalid("A resource can have at most 50 tags."));
        }
        Ok(())
    })
    .await?;
    Ok(ecs::TagResourceResponse {})
}

pub async fn untag(
    c: &Control,
    x: &Ctx,
    r: ecs::UntagResourceRequest,
) -> ApiResult<ecs::UntagResourceResponse> {
    let keys = r.tag_keys.clone();
    apply(c, x, &r.resource_arn, &|t: &mut Tags| {
        for k in &keys {
            t.remove(k);
        }
        Ok(())
    })
    .await?;
    Ok(ecs::UntagResourceResponse {})
}

/// The tags of the resource an ARN names, read without writing (None: it
/// is not there).
pub(crate) async fn tags_of(c: &Control, x: &Ctx, arn: &str) -> ApiResult<Option<Tags>> {
    async fn read<T: DeserializeOwned>(c: &Control, key: &str) -> ApiResult<Option<T>> {
        Ok(records::get::<T>(c.store.as_ref(), key)
            .await?
            .map(|v| v.value))
    }
    let (kind, key) = locate(x, arn)?;
    Ok(match kind {
        Kind::Cluster => read::<ClusterRecord>(c, &key).await?.map(|r| r.tags),
        Kind::TaskDefinition => read::<TaskDefinitionRecord>(c, &key).await?.map(|r| r.tags),
        Kind::Task => read::<TaskRecord>(c, &key).await?.map(|r| r.tags),
        Kind::Instance => read::<InstanceRecord>(c, &key).await?.map(|r| r.tags),
        Kind::Service => read::<ServiceRecord>(c, &key).await?.map(|r| r.tags),
        Kind::TaskSet => read::<ServiceRecord>(c, &key)
            .await?
            .and_then(|r| r.task_sets.into_iter().find(|s| s.arn == arn))
            .map(|s| s.tags),
        Kind::CapacityProvider => read::<wharf_core::records::CapacityProviderRecord>(c, &key)
            .await?
            .map(|r| r.tags),
    })
}

pub async fn list(
    c: &Control,
    x: &Ctx,
    r: ecs::ListTagsForResourceRequest,
) -> ApiResult<ecs::ListTagsForResourceResponse> {
    let tags = tags_of(c, x, &r.resource_arn)
        .await?
        .ok_or_else(not_found)?;
    Ok(ecs::ListTagsForResourceResponse {
        tags: Some(tags_to_wire(&tags)),
    })
}
