//! Task sets of services with the EXTERNAL deployment controller: an
//! external tool creates a task set per revision, scales each by percent
//! of the service's desired count and names the primary one. They live in
//! the service record (`ServiceRecord::task_sets`), written with its
//! compare-and-swap; the controller keeps each set's share running
//! (`wharf_core::service::external`).

use super::services::{check_load_balancers, existing};
use super::{active_cluster, taskdefs};
use crate::error::{invalid, unsupported, ApiResult};
use crate::idempotency::Token;
use crate::records::{self, commit, Versioned};
use crate::wire;
use crate::{Control, Ctx};
use rand::SeedableRng;
use wharf_core::records::tags_from_wire;
use wharf_core::service::{new_deployment_id, ServiceRecord, TaskSetRecord};
use wharf_model::ecs;
use wharf_protocol::AwsError;
use wharf_store::{Compare, Txn};

const CREATE_TASK_SET: &str = "CreateTaskSet";
/// ECS's quota of task sets per service.
const MAX_TASK_SETS: usize = 5;

fn not_found() -> AwsError {
    AwsError::client(
        "TaskSetNotFoundException",
        "The specified task set does not exist.",
    )
}

/// The named EXTERNAL service, ACTIVE.
async fn external_service(
    c: &Control,
    x: &Ctx,
    cluster: &str,
    service: &str,
) -> ApiResult<Versioned<ServiceRecord>> {
    let v = existing(c, x, Some(cluster), service).await?;
    if v.value.status != "ACTIVE" {
        return Err(AwsError::client(
            "ServiceNotActiveException",
            "Service was not ACTIVE.",
        ));
    }
    if !v.value.external {
        return Err(invalid(
            "Task sets are only for services with the EXTERNAL deployment controller.",
        ));
    }
    Ok(v)
}

/// A task set by ID or ARN.
fn position(svc: &ServiceRecord, given: &str) -> Option<usize> {
    svc.task_sets
        .iter()
        .position(|ts| ts.id == given || ts.arn == given)
}

fn scale_of(given: Option<&ecs::Scale>) -> ApiResult<f64> {
    let Some(s) = given else { return Ok(100.0) };
    if s.unit
        .as_ref()
        .is_some_and(|u| *u != ecs::ScaleUnit::Percent)
    {
        return Err(invalid("The scale unit must be PERCENT."));
    }
    let v = s.value.unwrap_or(100.0);
    if !(0.0..=100.0).contains(&v) {
        return Err(invalid(format!(
            "The scale value must be between 0 and 100; {v} was given."
        )));
    }
    Ok(v)
}

pub async fn create(
    c: &Control,
    x: &Ctx,
    r: ecs::CreateTaskSetRequest,
) -> ApiResult<ecs::CreateTaskSetResponse> {
    if r.service_registries.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(unsupported("serviceRegistries"));
    }
    super::tasks::platform_version(r.platform_version.as_deref())?;
    super::tags::check_tags(r.tags.as_deref().unwrap_or_default())?;
    let scale = scale_of(r.scale.as_ref())?;
    let td = taskdefs::resolve(c, x.region(), &r.task_definition)
        .await?
        .value;
    if td.definition.status != Some(ecs::TaskDefinitionStatus::Active) {
        return Err(invalid("TaskDefinition is inactive"));
    }
    let load_balancers = r.load_balancers.clone().unwrap_or_default();
    check_load_balancers(c, x, &load_balancers, &td.definition, None).await?;
    let first = external_service(c, x, &r.cluster, &r.service).await?;
    let cluster = active_cluster(c, x, &first.value.cluster).await?;
    let (launch, providers) = super::capacity::resolve(
        &cluster.value,
        r.launch_type.as_ref(),
        r.capacity_provider_strategy.as_deref(),
    )?;
    let launch_type = super::tasks::launch_type_name(launch.as_ref())?;
    super::tasks::capacity_and_subnet(
        &cluster.value.key(),
        &launch_type,
        &td.definition,
        r.network_configuration.as_ref(),
    )?;
    let scope = first.value.cluster.clone();
    let token = Token::of(
        CREATE_TASK_SET,
        x.region(),
        &scope,
        r.client_token.as_deref(),
        &r,
    )?;
    let lease = c.tokens.for_token(c, token.as_ref()).await?;
    let mut rng = rand::rngs::StdRng::from_entropy();
    for _ in 0..records::MAX_ATTEMPTS {
        let mut v = external_service(c, x, &r.cluster, &r.service).await?;
        if let Some(token) = &token {
            if let Some(made) = token.recall::<()>(c, CREATE_TASK_SET).await? {
                let found = made
                    .resource_ids
                    .first()
                    .and_then(|arn| position(&v.value, arn))
                    .ok_or_else(not_found)?;
                return Ok(ecs::CreateTaskSetResponse {
                    task_set: Some(wire::task_set(&v.value, &v.value.task_sets[found], true)),
                });
            }
        }
        if v.value.task_sets.len() >= MAX_TASK_SETS {
            return Err(AwsError::client(
                "LimitExceededException",
                format!("A service can have at most {MAX_TASK_SETS} task sets."),
            ));
        }
        let svc = &mut v.value;
        let id = new_deployment_id(&mut rng);
        let mut set = TaskSetRecord {
            arn: x.scope.task_set(&svc.cluster, &svc.name, &id),
            id,
            external_id: r.external_id.clone(),
            status: "ACTIVE".into(),
            task_definition: td
                .definition
                .task_definition_arn
                .clone()
                .unwrap_or_default(),
            launch_type: launch_type.clone(),
            capacity_provider_strategy: wharf_core::capacity::to_wire(&providers),
            network_configuration: r.network_configuration.clone(),
            load_balancers: load_balancers.clone(),
            scale,
            computed_desired_count: 0,
            running_count: 0,
            pending_count: 0,
            stable: false,
            stability_at: x.now,
            created_at: x.now,
            updated_at: x.now,
            tags: tags_from_wire(r.tags.as_deref().unwrap_or_default()),
        };
        set.computed_desired_count = set.share_of(svc.desired_count);
        svc.task_sets.push(set.clone());
        svc.steady = false;
        svc.version += 1;
        let mut txn = Txn::new().when(v.unchanged()).then(v.put());
        if let (Some(token), Some(lease)) = (&token, lease) {
            txn = txn
                .when(Compare::NotExists(token.key().to_string()))
                .then(token.remember(lease, vec![set.arn.clone()], ()));
        }
        if commit(c.store.as_ref(), txn).await? {
            return Ok(ecs::CreateTaskSetResponse {
                task_set: Some(wire::task_set(&v.value, &set, true)),
            });
        }
    }
    Err(records::contention())
}

pub async fn describe(
    c: &Control,
    x: &Ctx,
    r: ecs::DescribeTaskSetsRequest,
) -> ApiResult<ecs::DescribeTaskSetsResponse> {
    let v = external_service(c, x, &r.cluster, &r.service).await?;
    let with_tags = r
        .include
        .iter()
        .flatten()
        .any(|f| *f == ecs::TaskSetField::Tags);
    let (mut sets, mut failures) = (vec![], vec![]);
    match r.task_sets.as_deref().filter(|t| !t.is_empty()) {
        None => {
            sets = v
                .value
                .task_sets
                .iter()
                .map(|ts| wire::task_set(&v.value, ts, with_tags))
                .collect()
        }
        Some(given) => {
            for g in given {
                match position(&v.value, g) {
                    Some(k) => {
                        sets.push(wire::task_set(&v.value, &v.value.task_sets[k], with_tags))
                    }
                    None => failures.push(ecs::Failure {
                        arn: Some(g.clone()),
                        reason: Some("MISSING".into()),
                        detail: None,
                    }),
                }
            }
        }
    }
    Ok(ecs::DescribeTaskSetsResponse {
        task_sets: Some(sets),
        failures: Some(failures),
    })
}

/// Changes one task set of the service with `f` and writes the service.
async fn edit(
    c: &Control,
    x: &Ctx,
    cluster: &str,
    service: &str,
    task_set: &str,
    f: impl Fn(&mut ServiceRecord, usize) -> ApiResult<()>,
) -> ApiResult<ecs::TaskSet> {
    for _ in 0..records::MAX_ATTEMPTS {
        let mut v = external_service(c, x, cluster, service).await?;
        let k = position(&v.value, task_set).ok_or_else(not_found)?;
        f(&mut v.value, k)?;
        v.value.steady = false;
        v.value.version += 1;
        if commit(
            c.store.as_ref(),
            Txn::new().when(v.unchanged()).then(v.put()),
        )
        .await?
        {
            return Ok(wire::task_set(&v.value, &v.value.task_sets[k], false));
        }
    }
    Err(records::contention())
}

pub async fn update(
    c: &Control,
    x: &Ctx,
    r: ecs::UpdateTaskSetRequest,
) -> ApiResult<ecs::UpdateTaskSetResponse> {
    let scale = scale_of(Some(&r.scale))?;
    let ts = edit(c, x, &r.cluster, &r.service, &r.task_set, |svc, k| {
        if svc.task_sets[k].status == "DRAINING" {
            return Err(invalid("The task set is being deleted."));
        }
        let desired = svc.desired_count;
        let set = &mut svc.task_sets[k];
        set.scale = scale;
        set.computed_desired_count = set.share_of(desired);
        set.updated_at = x.now;
        Ok(())
    })
    .await?;
    Ok(ecs::UpdateTaskSetResponse { task_set: Some(ts) })
}

pub async fn delete(
    c: &Control,
    x: &Ctx,
    r: ecs::DeleteTaskSetRequest,
) -> ApiResult<ecs::DeleteTaskSetResponse> {
    let force = r.force == Some(true);
    let ts = edit(c, x, &r.cluster, &r.service, &r.task_set, |svc, k| {
        let set = &mut svc.task_sets[k];
        if set.status == "PRIMARY" && !force {
            return Err(invalid(
                "The primary task set can be deleted only with force: make another task set primary first.",
            ));
        }
        // Its tasks stop; it is gone once they have.
        set.status = "DRAINING".into();
        set.computed_desired_count = 0;
        set.updated_at = x.now;
        Ok(())
    })
    .await?;
    Ok(ecs::DeleteTaskSetResponse { task_set: Some(ts) })
}

pub async fn update_primary(
    c: &Control,
    x: &Ctx,
    r: ecs::UpdateServicePrimaryTaskSetRequest,
) -> ApiResult<ecs::UpdateServicePrimaryTaskSetResponse> {
    let ts = edit(
        c,
        x,
        &r.cluster,
        &r.service,
        &r.primary_task_set,
        |svc, k| {
            if svc.task_sets[k].status == "DRAINING" {
                return Err(invalid("The task set is being deleted."));
            }
            for (n, set) in svc.task_sets.iter_mut().enumerate() {
                if n == k {
                    set.status = "PRIMARY".into();
                    set.updated_at = x.now;
                } else if set.status == "PRIMARY" {
                    set.status = "ACTIVE".into();
                    set.updated_at = x.now;
                }
            }
            // The primary task set's revision is the service's.
            svc.task_definition = svc.task_sets[k].task_definition.clone();
            svc.launch_type = svc.task_sets[k].launch_type.clone();
            svc.capacity_provider_strategy = svc.task_sets[k].capacity_provider_strategy.clone();
            svc.network_configuration = svc.task_sets[k].network_configuration.clone();
            svc.load_balancers = svc.task_sets[k].load_balancers.clone();
            Ok(())
        },
    )
    .await?;
    Ok(ecs::UpdateServicePrimaryTaskSetResponse { task_set: Some(ts) })
}
