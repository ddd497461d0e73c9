use crate::error::{client, from_core, invalid, ApiResult};
use crate::records::{self, commit, Versioned};
use crate::wire::{self, paginate};
use crate::{Control, Ctx};
use std::collections::BTreeMap;
use wharf_core::arn::{task_definition_ref, TaskDefRef};
use wharf_core::clock::to_epoch_seconds;
use wharf_core::records::{keys, tags_from_wire, tags_to_wire, TaskDefinitionRecord};
use wharf_model::ecs::{self, TaskDefinitionStatus};
use wharf_store::{Compare, Txn};

fn status(td: &TaskDefinitionRecord) -> TaskDefinitionStatus {
    td.definition
        .status
        .clone()
        .unwrap_or(TaskDefinitionStatus::Active)
}

/// All revisions of a family, oldest first.
async fn family(
    c: &Control,
    region: &str,
    family: &str,
) -> ApiResult<Vec<Versioned<TaskDefinitionRecord>>> {
    let prefix = keys::task_definition_family(region, family);
    Ok(records::list(c.store.as_ref(), &prefix).await?.0)
}

/// Resolves `family`, `family:rev` or an ARN. A bare family means its latest
/// ACTIVE revision.
pub(crate) async fn resolve(
    c: &Control,
    region: &str,
    given: &str,
) -> ApiResult<Versioned<TaskDefinitionRecord>> {
    let TaskDefRef {
        family: fam,
        revision,
    } = task_definition_ref(given).map_err(from_core)?;
    if !wharf_core::arn::in_region(given, region) {
        return Err(client("Unable to describe task definition."));
    }
    let found = match revision {
        Some(rev) => {
            records::get(c.store.as_ref(), &keys::task_definition(region, &fam, rev)).await?
        }
        None => family(c, region, &fam)
            .await?
            .into_iter()
            .rev()
            .find(|v| status(&v.value) == TaskDefinitionStatus::Active),
    };
    found
        .filter(|v| status(&v.value) != TaskDefinitionStatus::DeleteInProgress)
        .ok_or_else(|| client("Unable to describe task definition."))
}

pub async fn register(
    c: &Control,
    x: &Ctx,
    r: ecs::RegisterTaskDefinitionRequest,
) -> ApiResult<ecs::RegisterTaskDefinitionResponse> {
    let mut td = wharf_core::taskdef::validate(&r).map_err(from_core)?;
    super::tags::check_tags(r.tags.as_deref().unwrap_or_default())?;
    let tags = tags_from_wire(r.tags.as_deref().unwrap_or_default());
    for _ in 0..records::MAX_ATTEMPTS {
        let existing = family(c, x.region(), &r.family).await?;
        let revision = existing
            .last()
            .and_then(|v| v.value.definition.revision)
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| client(format!("The family {} has no revision left.", r.family)))?;
        td.revision = Some(revision);
        td.task_definition_arn = Some(x.scope.task_definition(&r.family, revision));
        td.registered_at = Some(to_epoch_seconds(x.now));
        td.registered_by = Some(format!("arn:aws:iam::{}:root", x.scope.account));
        let key = keys::task_definition(x.region(), &r.family, revision);
        let record = TaskDefinitionRecord {
            definition: td.clone(),
            tags: tags.clone(),
        };
        let txn = Txn::new()
            .when(Compare::NotExists(key.clone()))
            .then(records::put(&key, &record));
        if commit(c.store.as_ref(), txn).await? {
            return Ok(ecs::RegisterTaskDefinitionResponse {
                task_definition: Some(td),
                tags: Some(tags_to_wire(&tags)),
            });
        }
    }
    Err(records::contention())
}

pub async fn describe(
    c: &Control,
    x: &Ctx,
    r: ecs::DescribeTaskDefinitionRequest,
) -> ApiResult<ecs::DescribeTaskDefinitionResponse> {
    let v = resolve(c, x.region(), &r.task_definition).await?;
    let with_tags = r
        .include
        .iter()
        .flatten()
        .any(|f| *f == ecs::TaskDefinitionField::Tags);
    Ok(ecs::DescribeTaskDefinitionResponse {
        task_definition: Some(v.value.definition),
        tags: with_tags.then(|| tags_to_wire(&v.value.tags)),
    })
}

pub async fn list(
    c: &Control,
    x: &Ctx,
    r: ecs::ListTaskDefinitionsRequest,
) -> ApiResult<ecs::ListTaskDefinitionsResponse> {
    let size = wire::page_size(r.max_results, 100, 100)?;
    let want = r.status.clone().unwrap_or(TaskDefinitionStatus::Active);
    if !want.is_known() {
        return Err(invalid(format!("Invalid status '{}'.", want.as_str())));
    }
    let prefix = match &r.family_prefix {
        Some(f) => keys::task_definition_family(x.region(), f),
        None => keys::task_definitions(x.region()),
    };
    let (all, _) = records::list::<TaskDefinitionRecord>(c.store.as_ref(), &prefix).await?;
    let mut items: Vec<(String, String)> = all
        .into_iter()
        .filter(|v| status(&v.value) == want)
        .map(|v| {
            (
                v.key,
                v.value.definition.task_definition_arn.unwrap_or_default(),
            )
        })
        .collect();
    if r.sort == Some(ecs::SortOrder::Desc) {
        items.reverse();
    }
    let (arns, next) = paginate(items, r.next_token.as_deref(), size)?;
    Ok(ecs::ListTaskDefinitionsResponse {
        task_definition_arns: Some(arns),
        next_token: next,
    })
}

pub async fn list_families(
    c: &Control,
    x: &Ctx,
    r: ecs::ListTaskDefinitionFamiliesRequest,
) -> ApiResult<ecs::ListTaskDefinitionFamiliesResponse> {
    let size = wire::page_size(r.max_results, 100, 100)?;
    let (all, _) = records::list::<TaskDefinitionRecord>(
        c.store.as_ref(),
        &keys::task_definitions(x.region()),
    )
    .await?;
    // family -> has an ACTIVE revision
    let mut families: BTreeMap<String, bool> = BTreeMap::new();
    for v in all {
        let fam = v.value.definition.family.clone().unwrap_or_default();
        if r.family_prefix
            .as_deref()
            .is_some_and(|p| !fam.starts_with(p))
        {
            continue;
        }
        let active = status(&v.value) == TaskDefinitionStatus::Active;
        *families.entry(fam).or_default() |= active;
    }
    let want = r
        .status
        .clone()
        .unwrap_or(ecs::TaskDefinitionFamilyStatus::Active);
    let items = families
        .into_iter()
        .filter(|(_, active)| match want {
            ecs::TaskDefinitionFamilyStatus::Active => *active,
            ecs::TaskDefinitionFamilyStatus::Inactive => !*active,
            _ => true,
        })
        .map(|(f, _)| (f.clone(), f))
        .collect();
    let (families, next) = paginate(items, r.next_token.as_deref(), size)?;
    Ok(ecs::ListTaskDefinitionFamiliesResponse {
        families: Some(families),
        next_token: next,
    })
}

pub async fn deregister(
    c: &Control,
    x: &Ctx,
    r: ecs::DeregisterTaskDefinitionRequest,
) -> ApiResult<ecs::DeregisterTaskDefinitionResponse> {
    let parsed = task_definition_ref(&r.task_definition).map_err(from_core)?;
    if parsed.revision.is_none() {
        return Err(invalid(
            "TaskDefinition must include a revision number, in the form family:revision.",
        ));
    }
    for _ in 0..records::MAX_ATTEMPTS {
        let mut v = resolve(c, x.region(), &r.task_definition).await?;
        if status(&v.value) == TaskDefinitionStatus::Active {
            v.value.definition.status = Some(TaskDefinitionStatus::Inactive);
            v.value.definition.deregistered_at = Some(to_epoch_seconds(x.now));
            if !commit(
                c.store.as_ref(),
                Txn::new().when(v.unchanged()).then(v.put()),
            )
            .await?
            {
                continue;
            }
        }
        return Ok(ecs::DeregisterTaskDefinitionResponse {
            task_definition: Some(v.value.definition),
        });
    }
    Err(records::contention())
}

pub async fn delete(
    c: &Control,
    x: &Ctx,
    r: ecs::DeleteTaskDefinitionsRequest,
) -> ApiResult<ecs::DeleteTaskDefinitionsResponse> {
    if r.task_definitions.is_empty() || r.task_definitions.len() > 10 {
        return Err(invalid(
            "Between 1 and 10 task definitions can be deleted at a time.",
        ));
    }
    // Every name parses before the first is deleted: a refusal writes nothing.
    let refs = r
        .task_definitions
        .iter()
        .map(|given| task_definition_ref(given).map(|parsed| (given, parsed)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(from_core)?;
    let mut deleted = vec![];
    let mut failures = vec![];
    'each: for (given, parsed) in refs {
        let Some(rev) = parsed.revision else {
            failures.push(failure(given, "The specified task definition identifier is invalid. Specify a valid name or ARN and try again."));
            continue;
        };
        // Another region's ARN names none of this region's revisions.
        if !wharf_core::arn::in_region(given, x.region()) {
            failures.push(failure(given, "The specified task definition does not exist. Specify a valid name or ARN and try again."));
            continue;
        }
        for _ in 0..records::MAX_ATTEMPTS {
            let Some(mut v) = records::get::<TaskDefinitionRecord>(
                c.store.as_ref(),
                &keys::task_definition(x.region(), &parsed.family, rev),
            )
            .await?
            else {
                failures.push(failure(given, "The specified task definition does not exist. Specify a valid name or ARN and try again."));
                continue 'each;
            };
            match status(&v.value) {
                TaskDefinitionStatus::Active => {
                    failures.push(failure(
                        given,
                        "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
                    ));
                    continue 'each;
                }
                TaskDefinitionStatus::DeleteInProgress => {
                    deleted.push(v.value.definition);
                    continue 'each;
                }
                _ => {}
            }
            // Kept (hidden) while tasks still refer to it; the reaper removes it after.
            v.value.definition.status = Some(TaskDefinitionStatus::DeleteInProgress);
            v.value.definition.delete_requested_at = Some(to_epoch_seconds(x.now));
            if commit(
                c.store.as_ref(),
                Txn::new().when(v.unchanged()).then(v.put()),
            )
            .await?
            {
                deleted.push(v.value.definition);
                continue 'each;
            }
        }
        return Err(records::contention());
    }
    Ok(ecs::DeleteTaskDefinitionsResponse {
        task_definitions: Some(deleted),
        failures: Some(failures),
    })
}

fn failure(arn: &str, reason: &str) -> ecs::Failure {
    ecs::Failure {
        arn: Some(arn.to_string()),
        reason: Some(reason.to_string()),
        detail: None,
    }
}
