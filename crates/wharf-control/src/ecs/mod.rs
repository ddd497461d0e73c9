//! The ECS operations, one module per resource kind.

mod agent_ops;
mod attributes;
pub(crate) mod capacity;
pub(crate) mod clusters;
pub(crate) mod exec;
mod instances;
mod protection;
mod services;
pub(crate) mod settings;
pub(crate) mod tags;
mod task_sets;
pub(crate) mod taskdefs;
pub(crate) mod tasks;

use crate::error::{cluster_not_found, ApiResult};
use crate::http::call;
use crate::records::{self, Versioned};
use crate::{Control, Ctx};
use wharf_core::records::{keys, ClusterRecord};
use wharf_protocol::AwsError;

pub use instances::connected_instances;
pub(crate) use instances::{register_in, tasks_on};

pub async fn dispatch(c: &Control, x: &Ctx, op: &str, body: &[u8]) -> ApiResult<Vec<u8>> {
    match op {
        "CreateCluster" => call(body, |r| clusters::create(c, x, r)).await,
        "DescribeClusters" => call(body, |r| clusters::describe(c, x, r)).await,
        "ListClusters" => call(body, |r| clusters::list(c, x, r)).await,
        "UpdateCluster" => call(body, |r| clusters::update(c, x, r)).await,
        "UpdateClusterSettings" => call(body, |r| clusters::update_settings(c, x, r)).await,
        "DeleteCluster" => call(body, |r| clusters::delete(c, x, r)).await,
        "RegisterTaskDefinition" => call(body, |r| taskdefs::register(c, x, r)).await,
        "DescribeTaskDefinition" => call(body, |r| taskdefs::describe(c, x, r)).await,
        "ListTaskDefinitions" => call(body, |r| taskdefs::list(c, x, r)).await,
        "ListTaskDefinitionFamilies" => call(body, |r| taskdefs::list_families(c, x, r)).await,
        "DeregisterTaskDefinition" => call(body, |r| taskdefs::deregister(c, x, r)).await,
        "DeleteTaskDefinitions" => call(body, |r| taskdefs::delete(c, x, r)).await,
        "RunTask" => call(body, |r| tasks::run(c, x, r)).await,
        "StartTask" => call(body, |r| tasks::start(c, x, r)).await,
        "StopTask" => call(body, |r| tasks::stop(c, x, r)).await,
        "DescribeTasks" => call(body, |r| tasks::describe(c, x, r)).await,
        "ListTasks" => call(body, |r| tasks::list(c, x, r)).await,
        "RegisterContainerInstance" => call(body, |r| instances::register(c, x, r)).await,
        "DeregisterContainerInstance" => call(body, |r| instances::deregister(c, x, r)).await,
        "DescribeContainerInstances" => call(body, |r| instances::describe(c, x, r)).await,
        "ListContainerInstances" => call(body, |r| instances::list(c, x, r)).await,
        "UpdateContainerInstancesState" => call(body, |r| instances::update_state(c, x, r)).await,
        "CreateService" => call(body, |r| services::create(c, x, r)).await,
        "UpdateService" => call(body, |r| services::update(c, x, r)).await,
        "DeleteService" => call(body, |r| services::delete(c, x, r)).await,
        "DescribeServices" => call(body, |r| services::describe(c, x, r)).await,
        "ListServices" => call(body, |r| services::list(c, x, r)).await,
        "ListServiceDeployments" => call(body, |r| services::list_deployments(c, x, r)).await,
        "DescribeServiceDeployments" => {
            call(body, |r| services::describe_deployments(c, x, r)).await
        }
        "DescribeServiceRevisions" => call(body, |r| services::describe_revisions(c, x, r)).await,
        "StopServiceDeployment" => call(body, |r| services::stop_deployment(c, x, r)).await,
        "ContinueServiceDeployment" => call(body, |r| services::continue_deployment(c, x, r)).await,
        "CreateCapacityProvider" => call(body, |r| capacity::create(c, x, r)).await,
        "DescribeCapacityProviders" => call(body, |r| capacity::describe(c, x, r)).await,
        "UpdateCapacityProvider" => call(body, |r| capacity::update(c, x, r)).await,
        "DeleteCapacityProvider" => call(body, |r| capacity::delete(c, x, r)).await,
        "PutClusterCapacityProviders" => {
            call(body, |r| capacity::put_cluster_providers(c, x, r)).await
        }
        "PutAccountSetting" => call(body, |r| settings::put(c, x, r)).await,
        "PutAccountSettingDefault" => call(body, |r| settings::put_default(c, x, r)).await,
        "DeleteAccountSetting" => call(body, |r| settings::delete(c, x, r)).await,
        "ListAccountSettings" => call(body, |r| settings::list(c, x, r)).await,
        "UpdateTaskProtection" => call(body, |r| protection::update(c, x, r)).await,
        "GetTaskProtection" => call(body, |r| protection::get(c, x, r)).await,
        "CreateTaskSet" => call(body, |r| task_sets::create(c, x, r)).await,
        "DescribeTaskSets" => call(body, |r| task_sets::describe(c, x, r)).await,
        "UpdateTaskSet" => call(body, |r| task_sets::update(c, x, r)).await,
        "DeleteTaskSet" => call(body, |r| task_sets::delete(c, x, r)).await,
        "UpdateServicePrimaryTaskSet" => call(body, |r| task_sets::update_primary(c, x, r)).await,
        "DiscoverPollEndpoint" => call(body, |r| agent_ops::discover_poll_endpoint(c, x, r)).await,
        "UpdateContainerAgent" => call(body, |r| agent_ops::update_container_agent(c, x, r)).await,
        "SubmitTaskStateChange" => {
            call(body, |r| agent_ops::submit_task_state_change(c, x, r)).await
        }
        "SubmitContainerStateChange" => {
            call(body, |r| agent_ops::submit_container_state_change(c, x, r)).await
        }
        "ExecuteCommand" => call(body, |r| exec::execute_command(c, x, r)).await,
        "TagResource" => call(body, |r| tags::tag(c, x, r)).await,
        "UntagResource" => call(body, |r| tags::untag(c, x, r)).await,
        "ListTagsForResource" => call(body, |r| tags::list(c, x, r)).await,
        "PutAttributes" => call(body, |r| attributes::put(c, x, r)).await,
        "ListAttributes" => call(body, |r| attributes::list(c, x, r)).await,
        "DeleteAttributes" => call(body, |r| attributes::delete(c, x, r)).await,
        _ if wharf_model::ecs::OPERATIONS.contains(&op) => Err(AwsError::client(
            "UnsupportedFeatureException",
            format!("The operation {op} is not supported by Wharf yet."),
        )),
        _ => Err(AwsError::unknown_operation(&format!(
            "{}.{op}",
            wharf_model::ecs::TARGET_PREFIX
        ))),
    }
}

/// The named cluster of the request's region if it exists and is ACTIVE.
pub(crate) async fn active_cluster(
    c: &Control,
    x: &Ctx,
    name: &str,
) -> ApiResult<Versioned<ClusterRecord>> {
    match records::get::<ClusterRecord>(c.store.as_ref(), &keys::cluster(&x.cluster_key(name)))
        .await?
    {
        Some(v) if v.value.status == "ACTIVE" => Ok(v),
        _ => Err(cluster_not_found()),
    }
}

/// The cluster a request names. The managed capacity's hidden cluster is
/// not one a user can name, nor is a cluster of another region.
pub(crate) fn cluster_name(x: &Ctx, given: Option<&str>) -> ApiResult<String> {
    if given.is_some_and(|g| !wharf_core::arn::in_region(g, x.region())) {
        return Err(cluster_not_found());
    }
    let name = wharf_core::arn::cluster_name(given).map_err(crate::error::from_core)?;
    if name == wharf_core::records::MANAGED_CLUSTER {
        return Err(cluster_not_found());
    }
    Ok(name)
}
