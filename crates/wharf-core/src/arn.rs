//! ECS resource names: building ARNs and resolving the short forms the API
//! accepts (a cluster by name or ARN, a task by ID or ARN, a task
//! definition as `family`, `family:revision` or ARN).

use crate::error::{invalid, CoreError};

/// Where resources live: the region comes from the request's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub region: String,
    pub account: String,
}

impl Scope {
    fn prefix(&self) -> String {
        format!("arn:aws:ecs:{}:{}", self.region, self.account)
    }
    pub fn cluster(&self, name: &str) -> String {
        format!("{}:cluster/{name}", self.prefix())
    }
    pub fn task(&self, cluster: &str, id: &str) -> String {
        format!("{}:task/{cluster}/{id}", self.prefix())
    }
    pub fn task_definition(&self, family: &str, revision: i32) -> String {
        format!("{}:task-definition/{family}:{revision}", self.prefix())
    }
    pub fn service(&self, cluster: &str, name: &str) -> String {
        format!("{}:service/{cluster}/{name}", self.prefix())
    }
    pub fn service_deployment(&self, cluster: &str, service: &str, id: &str) -> String {
        format!(
            "{}:service-deployment/{cluster}/{service}/{id}",
            self.prefix()
        )
    }
    pub fn service_revision(&self, cluster: &str, service: &str, id: &str) -> String {
        format!(
            "{}:service-revision/{cluster}/{service}/{id}",
            self.prefix()
        )
    }
    /// `id` is `ecs-svc/NNN`, so the ARN ends in two segments.
    pub fn task_set(&self, cluster: &str, service: &str, id: &str) -> String {
        format!("{}:task-set/{cluster}/{service}/{id}", self.prefix())
    }
    pub fn capacity_provider(&self, name: &str) -> String {
        format!("{}:capacity-provider/{name}", self.prefix())
    }
    pub fn container_instance(&self, cluster: &str, id: &str) -> String {
        format!("{}:container-instance/{cluster}/{id}", self.prefix())
    }
    pub fn container(&self, cluster: &str, task_id: &str, container_id: &str) -> String {
        format!(
            "{}:container/{cluster}/{task_id}/{container_id}",
            self.prefix()
        )
    }
}

/// The resource part of an ECS ARN (`cluster/NAME`, `task/CLUSTER/ID`, …),
/// or None if `s` is not an ECS ARN.
fn resource_of(s: &str) -> Option<&str> {
    let rest = s.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let (_partition, service, _region, _account) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if service != "ecs" {
        return None;
    }
    parts.next()
}

/// The region an ARN names; `us-east-1` for a string that is no ARN.
pub fn region_of(arn: &str) -> &str {
    arn.strip_prefix("arn:")
        .and_then(|r| r.split(':').nth(2))
        .filter(|r| !r.is_empty())
        .unwrap_or("us-east-1")
}

/// Whether `given` (a name, an ID or an ARN) can name a resource of
/// `region`: ECS is regional, so an ARN of another region names nothing.
pub fn in_region(given: &str, region: &str) -> bool {
    !given.starts_with("arn:") || region_of(given) == region
}

/// A region as a request's signature names it: lowercase letters, digits
/// and `-` (it becomes a segment of store keys).
pub fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `NAME` or a cluster ARN → the cluster name. None/empty → `default`.
pub fn cluster_name(given: Option<&str>) -> Result<String, CoreError> {
    let given = match given {
        None | Some("") => return Ok("default".to_string()),
        Some(g) => g,
    };
    if given.starts_with("arn:") {
        return resource_of(given)
            .and_then(|r| r.strip_prefix("cluster/"))
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .ok_or_else(|| invalid(format!("Invalid cluster ARN: {given}")));
    }
    Ok(given.to_string())
}

/// A capacity provider's name or ARN → its name.
pub fn capacity_provider_name(given: &str) -> Result<String, CoreError> {
    if given.starts_with("arn:") {
        return resource_of(given)
            .and_then(|r| r.strip_prefix("capacity-provider/"))
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .ok_or_else(|| invalid(format!("Invalid capacity provider ARN: {given}")));
    }
    Ok(given.to_string())
}

/// A task ID or ARN → (cluster named in the ARN if any, task ID).
pub fn task_id(given: &str) -> Result<(Option<String>, String), CoreError> {
    split_cluster_scoped(given, "task/", "task")
}

/// A service name or ARN → (cluster named in the ARN if any, service name).
pub fn service_name(given: &str) -> Result<(Option<String>, String), CoreError> {
    split_cluster_scoped(given, "service/", "service")
}

/// A service deployment ARN → (cluster, service, id).
pub fn service_deployment(given: &str) -> Result<(String, String, String), CoreError> {
    of_service(given, "service-deployment/", "service deployment")
}

/// A service revision ARN → (cluster, service, id).
pub fn service_revision(given: &str) -> Result<(String, String, String), CoreError> {
    of_service(given, "service-revision/", "service revision")
}

fn of_service(given: &str, kind: &str, what: &str) -> Result<(String, String, String), CoreError> {
    let bad = || invalid(format!("Invalid {what} ARN: {given}"));
    let res = resource_of(given)
        .and_then(|r| r.strip_prefix(kind))
        .ok_or_else(bad)?;
    let mut parts = res.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(c), Some(s), Some(id)) if !c.is_empty() && !s.is_empty() && !id.is_empty() => {
            Ok((c.into(), s.into(), id.into()))
        }
        _ => Err(bad()),
    }
}

/// A container instance ID or ARN → (cluster named in the ARN if any, ID).
pub fn container_instance_id(given: &str) -> Result<(Option<String>, String), CoreError> {
    split_cluster_scoped(given, "container-instance/", "container instance")
}

/// [`container_instance_id`], borrowed from `given` (a many-host poll
/// reads thousands per call).
pub fn container_instance_id_ref(given: &str) -> Result<(Option<&str>, &str), CoreError> {
    split_cluster_scoped_ref(given, "container-instance/", "container instance")
}

fn split_cluster_scoped(
    given: &str,
    kind: &str,
    what: &str,
) -> Result<(Option<String>, String), CoreError> {
    let (cluster, id) = split_cluster_scoped_ref(given, kind, what)?;
    Ok((cluster.map(str::to_string), id.to_string()))
}

fn split_cluster_scoped_ref<'a>(
    given: &'a str,
    kind: &str,
    what: &str,
) -> Result<(Option<&'a str>, &'a str), CoreError> {
    if !given.starts_with("arn:") {
        if given.is_empty() || given.contains('/') {
            return Err(invalid(format!("Invalid {what} identifier: {given}")));
        }
        return Ok((None, given));
    }
    let res = resource_of(given)
        .and_then(|r| r.strip_prefix(kind))
        .ok_or_else(|| invalid(format!("Invalid {what} ARN: {given}")))?;
    match res.split_once('/') {
        Some((cluster, id)) if !cluster.is_empty() && !id.is_empty() => Ok((Some(cluster), id)),
        // Old-style ARNs carry no cluster name.
        None if !res.is_empty() => Ok((None, res)),
        _ => Err(invalid(format!("Invalid {what} ARN: {given}"))),
    }
}

/// How a request names a task definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDefRef {
    pub family: String,
    /// None: the latest ACTIVE revision.
    pub revision: Option<i32>,
}

pub fn task_definition_ref(given: &str) -> Result<TaskDefRef, CoreError> {
    let bad = || invalid(format!("Invalid revision number. Number: {given}"));
    let body = if given.starts_with("arn:") {
        resource_of(given)
            .and_then(|r| r.strip_prefix("task-definition/"))
            .ok_or_else(|| invalid(format!("Invalid task definition ARN: {given}")))?
    } else {
        given
    };
    match body.rsplit_once(':') {
        Some((family, rev)) => {
            let revision: i32 = rev.parse().map_err(|_| bad())?;
            if revision < 1 || family.is_empty() {
                return Err(bad());
            }
            Ok(TaskDefRef {
                family: family.into(),
                revision: Some(revision),
            })
        }
        None if !body.is_empty() => Ok(TaskDefRef {
            family: body.into(),
            revision: None,
        }),
        None => Err(invalid("Task definition can not be empty.")),
    }
}

/// Names of families, clusters and containers: letters, digits, `-`, `_`, 1–255.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            region: "us-east-1".into(),
            account: "000000000000".into(),
        }
    }

    #[test]
    fn builds_new_style_arns() {
        assert_eq!(
            scope().task("prod", "abc"),
            "arn:aws:ecs:us-east-1:000000000000:task/prod/abc"
        );
        assert_eq!(
            scope().task_definition("web", 3),
            "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3"
        );
    }

    #[test]
    fn resolves_short_forms() {
        assert_eq!(cluster_name(None).unwrap(), "default");
        assert_eq!(
            cluster_name(Some(&scope().cluster("prod"))).unwrap(),
            "prod"
        );
        assert!(cluster_name(Some("arn:aws:ecs:us-east-1:0:task/x/y")).is_err());
        assert_eq!(
            task_id(&scope().task("prod", "abc")).unwrap(),
            (Some("prod".into()), "abc".into())
        );
        assert_eq!(task_id("abc").unwrap(), (None, "abc".into()));
        assert_eq!(
            task_definition_ref("web:2").unwrap(),
            TaskDefRef {
                family: "web".into(),
                revision: Some(2)
            }
        );
        assert_eq!(task_definition_ref("web").unwrap().revision, None);
        assert_eq!(
            task_definition_ref(&scope().task_definition("web", 7))
                .unwrap()
                .revision,
            Some(7)
        );
        assert!(task_definition_ref("web:zero").is_err());
        assert!(task_definition_ref("web:0").is_err());
    }

    #[test]
    fn names() {
        assert!(valid_name("web-1_a"));
        assert!(!valid_name("web 1"));
        assert!(!valid_name(""));
    }
}
