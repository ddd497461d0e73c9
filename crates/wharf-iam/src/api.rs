//! The IAM API over the store. A handler reads what it needs with its
//! revisions, validates, and writes with one compare-and-swap transaction
//! (retried on conflict) that covers every record the change touches: a
//! user and the group it joins, an entity and the managed policy it
//! attaches (whose attachment count moves with it). It then waits until
//! the cache has seen its write, so the next request is judged by it.

use crate::managed;
use crate::policy::Policy;
use crate::records::{
    keys, AccessKeyRecord, GroupRecord, KeyStatus, Millis, Policies, PolicyRecord, PolicyVersion,
    RoleRecord, UserRecord,
};
use crate::{
    group_arn, new_id, new_secret, policy_arn, role_arn, user_arn, Caller, Iam, Principal,
};
use serde::{de::DeserializeOwned, Serialize};
use wharf_model::iam as m;
use wharf_protocol::{query, AwsError};
use wharf_store::typed::{self, Versioned};
use wharf_store::{Compare, Op, StoreError, Txn};

const MAX_ATTEMPTS: usize = 50;
/// IAM's default quotas.
const MAX_ACCESS_KEYS: usize = 2;
const MAX_ATTACHED: usize = 10;
const MAX_POLICY_VERSIONS: usize = 5;
const MAX_GROUPS_PER_USER: usize = 10;
const MAX_TAGS: usize = 50;
const MAX_DOCUMENT: usize = 6144;
const MAX_TRUST_DOCUMENT: usize = 2048;

pub(crate) fn err(code: &str, message: impl Into<String>) -> AwsError {
    let status = m::error_http_status(code).unwrap_or(400);
    AwsError::new(status, code, message)
}

fn invalid(message: impl Into<String>) -> AwsError {
    err("InvalidInput", message)
}

fn from_store(e: StoreError) -> AwsError {
    tracing::error!(error = %e, "store failure");
    err("ServiceFailure", format!("Storage failure: {e}"))
}

fn contention() -> AwsError {
    err(
        "ConcurrentModification",
        "Too much contention on an entity; try again.",
    )
}

pub async fn dispatch(
    iam: &Iam,
    caller: &Caller,
    now: Millis,
    action: &str,
    params: &[(String, String)],
    request_id: &str,
) -> Result<Vec<u8>, AwsError> {
    let api = Api { iam, caller, now };
    let api = &api;
    macro_rules! op {
        ($f:ident) => {
            query::call(&m::SCHEMA, action, params, request_id, |r| api.$f(r)).await
        };
    }
    match action {
        "CreateUser" => op!(create_user),
        "GetUser" => op!(get_user),
        "ListUsers" => op!(list_users),
        "UpdateUser" => op!(update_user),
        "DeleteUser" => op!(delete_user),
        "TagUser" => op!(tag_user),
        "UntagUser" => op!(untag_user),
        "ListUserTags" => op!(list_user_tags),
        "PutUserPermissionsBoundary" => op!(put_user_boundary),
        "DeleteUserPermissionsBoundary" => op!(delete_user_boundary),
        "CreateAccessKey" => op!(create_access_key),
        "ListAccessKeys" => op!(list_access_keys),
        "UpdateAccessKey" => op!(update_access_key),
        "DeleteAccessKey" => op!(delete_access_key),
        "CreateGroup" => op!(create_group),
        "GetGroup" => op!(get_group),
        "ListGroups" => op!(list_groups),
        "DeleteGroup" => op!(delete_group),
        "AddUserToGroup" => op!(add_user_to_group),
        "RemoveUserFromGroup" => op!(remove_user_from_group),
        "ListGroupsForUser" => op!(list_groups_for_user),
        "CreateRole" => op!(create_role),
        "GetRole" => op!(get_role),
        "ListRoles" => op!(list_roles),
        "UpdateRole" => op!(update_role),
        "UpdateRoleDescription" => op!(update_role_description),
        "UpdateAssumeRolePolicy" => op!(update_assume_role_policy),
        "DeleteRole" => op!(delete_role),
        "TagRole" => op!(tag_role),
        "UntagRole" => op!(untag_role),
        "ListRoleTags" => op!(list_role_tags),
        "PutRolePermissionsBoundary" => op!(put_role_boundary),
        "DeleteRolePermissionsBoundary" => op!(delete_role_boundary),
        "CreatePolicy" => op!(create_policy),
        "GetPolicy" => op!(get_policy),
        "ListPolicies" => op!(list_policies),
        "DeletePolicy" => op!(delete_policy),
        "CreatePolicyVersion" => op!(create_policy_version),
        "GetPolicyVersion" => op!(get_policy_version),
        "ListPolicyVersions" => op!(list_policy_versions),
        "DeletePolicyVersion" => op!(delete_policy_version),
        "SetDefaultPolicyVersion" => op!(set_default_policy_version),
        "TagPolicy" => op!(tag_policy),
        "UntagPolicy" => op!(untag_policy),
        "ListPolicyTags" => op!(list_policy_tags),
        "ListEntitiesForPolicy" => op!(list_entities_for_policy),
        "AttachUserPolicy" => op!(attach_user_policy),
        "DetachUserPolicy" => op!(detach_user_policy),
        "ListAttachedUserPolicies" => op!(list_attached_user_policies),
        "AttachGroupPolicy" => op!(attach_group_policy),
        "DetachGroupPolicy" => op!(detach_group_policy),
        "ListAttachedGroupPolicies" => op!(list_attached_group_policies),
        "AttachRolePolicy" => op!(attach_role_policy),
        "DetachRolePolicy" => op!(detach_role_policy),
        "ListAttachedRolePolicies" => op!(list_attached_role_policies),
        "PutUserPolicy" => op!(put_user_policy),
        "GetUserPolicy" => op!(get_user_policy),
        "DeleteUserPolicy" => op!(delete_user_policy),
        "ListUserPolicies" => op!(list_user_policies),
        "PutGroupPolicy" => op!(put_group_policy),
        "GetGroupPolicy" => op!(get_group_policy),
        "DeleteGroupPolicy" => op!(delete_group_policy),
        "ListGroupPolicies" => op!(list_group_policies),
        "PutRolePolicy" => op!(put_role_policy),
        "GetRolePolicy" => op!(get_role_policy),
        "DeleteRolePolicy" => op!(delete_role_policy),
        "ListRolePolicies" => op!(list_role_policies),
        other if m::SCHEMA.operation(other).is_some() => Err(not_supported(other)),
        other => Err(AwsError::client(
            "InvalidAction",
            format!("Could not find operation {other} for version 2010-05-08"),
        )),
    }
}

/// The IAM operations served (the rest are refused by name).
pub const SUPPORTED: &[&str] = &[
    "AddUserToGroup",
    "AttachGroupPolicy",
    "AttachRolePolicy",
    "AttachUserPolicy",
    "CreateAccessKey",
    "CreateGroup",
    "CreatePolicy",
    "CreatePolicyVersion",
    "CreateRole",
    "CreateUser",
    "DeleteAccessKey",
    "DeleteGroup",
    "DeleteGroupPolicy",
    "DeletePolicy",
    "DeletePolicyVersion",
    "DeleteRole",
    "DeleteRolePermissionsBoundary",
    "DeleteRolePolicy",
    "DeleteUser",
    "DeleteUserPermissionsBoundary",
    "DeleteUserPolicy",
    "DetachGroupPolicy",
    "DetachRolePolicy",
    "DetachUserPolicy",
    "GetGroup",
    "GetGroupPolicy",
    "GetPolicy",
    "GetPolicyVersion",
    "GetRole",
    "GetRolePolicy",
    "GetUser",
    "GetUserPolicy",
    "ListAccessKeys",
    "ListAttachedGroupPolicies",
    "ListAttachedRolePolicies",
    "ListAttachedUserPolicies",
    "ListEntitiesForPolicy",
    "ListGroupPolicies",
    "ListGroups",
    "ListGroupsForUser",
    "ListPolicies",
    "ListPolicyTags",
    "ListPolicyVersions",
    "ListRolePolicies",
    "ListRoleTags",
    "ListRoles",
    "ListUserPolicies",
    "ListUserTags",
    "ListUsers",
    "PutGroupPolicy",
    "PutRolePermissionsBoundary",
    "PutRolePolicy",
    "PutUserPermissionsBoundary",
    "PutUserPolicy",
    "RemoveUserFromGroup",
    "SetDefaultPolicyVersion",
    "TagPolicy",
    "TagRole",
    "TagUser",
    "UntagPolicy",
    "UntagRole",
    "UntagUser",
    "UpdateAccessKey",
    "UpdateAssumeRolePolicy",
    "UpdateRole",
    "UpdateRoleDescription",
    "UpdateUser",
];

fn not_supported(op: &str) -> AwsError {
    AwsError::new(
        400,
        "NotImplemented",
        format!("Wharf does not implement the IAM operation {op}"),
    )
}

struct Api<'a> {
    iam: &'a Iam,
    caller: &'a Caller,
    now: Millis,
}

/// A user, group or role: what holds policies.
trait Holder: Serialize + DeserializeOwned + Clone + Send + Sync {
    /// `user`, `group`, `role`, as IAM's messages say.
    const KIND: &'static str;
    fn key(name: &str) -> String;
    fn name(&self) -> &str;
    fn policies(&mut self) -> &mut Policies;
    fn policies_ref(&self) -> &Policies;
}

impl Holder for UserRecord {
    const KIND: &'static str = "user";
    fn key(name: &str) -> String {
        keys::user(name)
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn policies(&mut self) -> &mut Policies {
        &mut self.policies
    }
    fn policies_ref(&self) -> &Policies {
        &self.policies
    }
}

impl Holder for GroupRecord {
    const KIND: &'static str = "group";
    fn key(name: &str) -> String {
        keys::group(name)
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn policies(&mut self) -> &mut Policies {
        &mut self.policies
    }
    fn policies_ref(&self) -> &Policies {
        &self.policies
    }
}

impl Holder for RoleRecord {
    const KIND: &'static str = "role";
    fn key(name: &str) -> String {
        keys::role(name)
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn policies(&mut self) -> &mut Policies {
        &mut self.policies
    }
    fn policies_ref(&self) -> &Policies {
        &self.policies
    }
}

/// A user or role: what has tags.
trait Tagged: Holder {
    fn tags(&mut self) -> &mut Vec<(String, String)>;
}

impl Tagged for UserRecord {
    fn tags(&mut self) -> &mut Vec<(String, String)> {
        &mut self.tags
    }
}

impl Tagged for RoleRecord {
    fn tags(&mut self) -> &mut Vec<(String, String)> {
        &mut self.tags
    }
}

fn no_such<T: Holder>(name: &str) -> AwsError {
    err(
        "NoSuchEntity",
        format!("The {} with name {name} cannot be found.", T::KIND),
    )
}

/// A managed policy an ARN names.
enum Named {
    Aws(&'static managed::Managed),
    Customer(Box<Versioned<PolicyRecord>>),
}

impl Named {
    fn arn(&self, account: &str) -> String {
        match self {
            Named::Aws(p) => p.arn(),
            Named::Customer(p) => policy_arn(account, &p.value.path, &p.value.name),
        }
    }
}

// ---- validation ----

fn check_name(member: &str, name: &str, max: usize) -> Result<(), AwsError> {
    let ok = !name.is_empty()
        && name.chars().count() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(err(
            "ValidationError",
            format!(
                "1 validation error detected: Value '{name}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have length between 1 and {max}"
            ),
        ))
    }
}

fn check_path(member: &str, path: Option<&str>) -> Result<String, AwsError> {
    let path = path.unwrap_or("/");
    let ok = path.starts_with('/')
        && path.ends_with('/')
        && path.len() <= 512
        && path.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if ok {
        Ok(path.to_string())
    } else {
        Err(err(
            "ValidationError",
            format!(
                "1 validation error detected: Value '{path}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007F]+\\u002F)"
            ),
        ))
    }
}

fn parse_document(doc: &str, trust: bool) -> Result<Policy, AwsError> {
    let max = if trust {
        MAX_TRUST_DOCUMENT
    } else {
        MAX_DOCUMENT
    };
    if doc.chars().filter(|c| !c.is_whitespace()).count() > max {
        return Err(err(
            "LimitExceeded",
            format!("Cannot exceed quota for PolicySize: {max}"),
        ));
    }
    Policy::parse(doc, trust).map_err(|e| err("MalformedPolicyDocument", e.0))
}

fn check_tags(tags: &[m::Tag]) -> Result<(), AwsError> {
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err(invalid(format!(
                "The tag {}={} is not valid: keys are 1 to 128 characters, values at most 256.",
                t.key, t.value
            )));
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid(
                "User-created tags cannot begin with the reserved prefix 'aws:'.",
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in tags {
        if !seen.insert(t.key.to_ascii_lowercase()) {
            return Err(invalid(format!("Duplicate tag keys found: {}", t.key)));
        }
    }
    Ok(())
}

/// `tags` merged into `into` (keys without regard to case, as IAM keeps them).
fn merge_tags(into: &mut Vec<(String, String)>, tags: &[m::Tag]) -> Result<(), AwsError> {
    check_tags(tags)?;
    for t in tags {
        match into
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(&t.key))
        {
            Some(e) => e.1 = t.value.clone(),
            None => into.push((t.key.clone(), t.value.clone())),
        }
    }
    if into.len() > MAX_TAGS {
        return Err(err(
            "LimitExceeded",
            format!("Cannot exceed quota for TagsPerEntity: {MAX_TAGS}"),
        ));
    }
    Ok(())
}

fn untag(from: &mut Vec<(String, String)>, keys: &[String]) {
    from.retain(|(k, _)| !keys.iter().any(|x| x.eq_ignore_ascii_case(k)));
}

fn wire_tags(tags: &[(String, String)]) -> Vec<m::Tag> {
    tags.iter()
        .map(|(k, v)| m::Tag {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// IAM returns policy documents URL-encoded (SDKs decode them).
fn encode_document(doc: &str) -> String {
    percent_encoding::utf8_percent_encode(doc, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
        .replace("%7E", "~")
}

fn seconds(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

/// IAM's Marker/MaxItems paging over items in key order.
fn page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    marker: Option<&str>,
    max_items: Option<i32>,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let max = match max_items {
        None => 100,
        Some(n) if (1..=1000).contains(&n) => n as usize,
        Some(n) => {
            return Err(err(
                "ValidationError",
                format!("1 validation error detected: Value '{n}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 1000"),
            ))
        }
    };
    let mut items: Vec<(String, T)> = items.into_iter().map(|t| (key(&t), t)).collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(m) = marker {
        if m.is_empty() {
            return Err(invalid("Invalid Marker."));
        }
        items.retain(|(k, _)| k.as_str() > m);
    }
    let truncated = items.len() > max;
    items.truncate(max);
    let next = if truncated {
        items.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    Ok((items.into_iter().map(|(_, t)| t).collect(), next))
}

fn path_prefix_ok(path: &str, prefix: Option<&str>) -> bool {
    prefix.is_none_or(|p| path.starts_with(p))
}

impl Api<'_> {
    fn account(&self) -> &str {
        &self.iam.account
    }

    async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>, AwsError> {
        typed::get(&*self.iam.store, key).await.map_err(from_store)
    }

    async fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, AwsError> {
        Ok(typed::list(&*self.iam.store, prefix)
            .await
            .map_err(from_store)?
            .0
            .into_iter()
            .map(|v| v.value)
            .collect())
    }

    /// Commits; false if a compare failed. A commit is in force (in the
    /// cache) before this returns.
    async fn commit(&self, txn: Txn) -> Result<bool, AwsError> {
        let resp = self.iam.store.txn(txn).await.map_err(from_store)?;
        if resp.succeeded {
            self.iam.cache.caught_up(resp.revision).await;
        }
        Ok(resp.succeeded)
    }

    async fn need<T: Holder>(&self, name: &str) -> Result<Versioned<T>, AwsError> {
        self.get::<T>(&T::key(name))
            .await?
            .ok_or_else(|| no_such::<T>(name))
    }

    /// Reads one record, changes it, writes it back if nothing changed it
    /// meanwhile; retried.
    async fn modify<T: Holder>(
        &self,
        name: &str,
        mut f: impl FnMut(&mut T) -> Result<(), AwsError>,
    ) -> Result<T, AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut v = self.need::<T>(name).await?;
            f(&mut v.value)?;
            if self
                .commit(Txn::new().when(v.unchanged()).then(v.put()))
                .await?
            {
                return Ok(v.value);
            }
        }
        Err(contention())
    }

    /// The managed policy an ARN names (an AWS managed one, or one of this
    /// account's).
    async fn named(&self, arn: &str) -> Result<Named, AwsError> {
        if let Some(p) = managed::find(arn) {
            return Ok(Named::Aws(p));
        }
        let prefix = format!("arn:aws:iam::{}:policy/", self.account());
        let Some(rest) = arn.strip_prefix(&prefix) else {
            if arn.starts_with("arn:aws:iam::") && arn.contains(":policy/") {
                return Err(err(
                    "NoSuchEntity",
                    format!("Policy {arn} does not exist or is not attachable."),
                ));
            }
            return Err(invalid(format!("ARN {arn} is not valid.")));
        };
        let name = rest.rsplit('/').next().unwrap_or(rest);
        match self.get::<PolicyRecord>(&keys::policy(name)).await? {
            Some(p) if policy_arn(self.account(), &p.value.path, &p.value.name) == arn => {
                Ok(Named::Customer(Box::new(p)))
            }
            _ => Err(err(
                "NoSuchEntity",
                format!("Policy {arn} does not exist or is not attachable."),
            )),
        }
    }

    /// The caller's user for operations whose `UserName` defaults to it.
    fn own_user(&self, given: Option<String>) -> Result<Option<String>, AwsError> {
        if given.is_some() {
            return Ok(given);
        }
        match &self.caller.principal {
            Principal::User { name, .. } => Ok(Some(name.clone())),
            Principal::Root => Ok(None),
            Principal::AssumedRole { .. } => Err(err(
                "ValidationError",
                "Must specify userName when calling with non-User credentials",
            )),
        }
    }

    // ---- users ----

    fn user_out(&self, u: &UserRecord) -> m::User {
        m::User {
            path: u.path.clone(),
            user_name: u.name.clone(),
            user_id: u.id.clone(),
            arn: user_arn(self.account(), &u.path, &u.name),
            create_date: seconds(u.created),
            permissions_boundary: u.boundary.as_deref().map(boundary_out),
            tags: (!u.tags.is_empty()).then(|| wire_tags(&u.tags)),
            ..Default::default()
        }
    }

    async fn create_user(
        &self,
        r: m::CreateUserRequest,
    ) -> Result<m::CreateUserResponse, AwsError> {
        check_name("userName", &r.user_name, 64)?;
        let path = check_path("path", r.path.as_deref())?;
        let mut tags = Vec::new();
        merge_tags(&mut tags, r.tags.as_deref().unwrap_or_default())?;
        for _ in 0..MAX_ATTEMPTS {
            let key = keys::user(&r.user_name);
            if self.get::<UserRecord>(&key).await?.is_some() {
                return Err(err(
                    "EntityAlreadyExists",
                    format!("User with name {} already exists.", r.user_name),
                ));
            }
            let mut txn = Txn::new().when(Compare::NotExists(key.clone()));
            if let Some(b) = &r.permissions_boundary {
                let named = self.named(b).await?;
                txn = self.use_as_boundary(txn, named, 1)?;
            }
            let user = UserRecord {
                name: r.user_name.clone(),
                id: new_id("AIDA", 21),
                path: path.clone(),
                created: self.now,
                tags: tags.clone(),
                policies: Policies::default(),
                groups: Vec::new(),
                access_keys: Vec::new(),
                boundary: r.permissions_boundary.clone(),
            };
            if self.commit(txn.then(typed::put(&key, &user))).await? {
                return Ok(m::CreateUserResponse {
                    user: Some(self.user_out(&user)),
                });
            }
        }
        Err(contention())
    }

    /// Counts a boundary use on a customer policy (in the same transaction).
    fn use_as_boundary(&self, txn: Txn, named: Named, delta: i64) -> Result<Txn, AwsError> {
        Ok(match named {
            Named::Aws(_) => txn,
            Named::Customer(mut p) => {
                let txn = txn.when(p.unchanged());
                p.value.boundary_uses = (p.value.boundary_uses as i64 + delta).max(0) as u32;
                txn.then(p.put())
            }
        })
    }

    async fn get_user(&self, r: m::GetUserRequest) -> Result<m::GetUserResponse, AwsError> {
        let Some(name) = self.own_user(r.user_name)? else {
            // The root: GetUser answers with the account.
            return Ok(m::GetUserResponse {
                user: m::User {
                    path: "/".into(),
                    user_id: self.account().to_string(),
                    arn: format!("arn:aws:iam::{}:root", self.account()),
                    create_date: 0.0,
                    ..Default::default()
                },
            });
        };
        let u = self.need::<UserRecord>(&name).await?;
        Ok(m::GetUserResponse {
            user: self.user_out(&u.value),
        })
    }

    async fn list_users(&self, r: m::ListUsersRequest) -> Result<m::ListUsersResponse, AwsError> {
        let users: Vec<UserRecord> = self.list(keys::USERS).await?;
        let users = users
            .into_iter()
            .filter(|u| path_prefix_ok(&u.path, r.path_prefix.as_deref()))
            .collect();
        let (users, marker) = page(
            users,
            |u| u.name.to_ascii_lowercase(),
            r.marker.as_deref(),
            r.max_items,
        )?;
        Ok(m::ListUsersResponse {
            users: users.iter().map(|u| self.user_out(u)).collect(),
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }

    async fn update_user(&self, r: m::UpdateUserRequest) -> Result<(), AwsError> {
        let path = match &r.new_path {
            Some(p) => Some(check_path("newPath", Some(p))?),
            None => None,
        };
        let new_name = r.new_user_name.clone();
        if let Some(n) = &new_name {
            check_name("newUserName", n, 64)?;
        }
        match new_name {
            Some(n) if !n.eq_ignore_ascii_case(&r.user_name) => {
                // A rename moves the record, its keys' owner and its
                // groups' member lists, in one transaction.
                for _ in 0..MAX_ATTEMPTS {
                    let u = self.need::<UserRecord>(&r.user_name).await?;
                    let new_key = keys::user(&n);
                    if self.get::<UserRecord>(&new_key).await?.is_some() {
                        return Err(err(
                            "EntityAlreadyExists",
                            format!("User with name {n} already exists."),
                        ));
                    }
                    let mut txn = Txn::new()
                        .when(u.unchanged())
                        .when(Compare::NotExists(new_key.clone()))
                        .then(Op::delete(u.key.clone()));
                    for k in &u.value.access_keys {
                        if let Some(mut kr) =
                            self.get::<AccessKeyRecord>(&keys::access_key(k)).await?
                        {
                            kr.value.user = n.clone();
                            txn = txn.when(kr.unchanged()).then(kr.put());
                        }
                    }
                    for g in &u.value.groups {
                        if let Some(mut gr) = self.get::<GroupRecord>(&keys::group(g)).await? {
                            for mname in gr.value.members.iter_mut() {
                                if mname.eq_ignore_ascii_case(&r.user_name) {
                                    *mname = n.clone();
                                }
                            }
                            txn = txn.when(gr.unchanged()).then(gr.put());
                        }
                    }
                    let mut user = u.value.clone();
                    user.name = n.clone();
                    if let Some(p) = &path {
                        user.path = p.clone();
                    }
                    if self.commit(txn.then(typed::put(&new_key, &user))).await? {
                        return Ok(());
                    }
                }
                Err(contention())
            }
            other => {
                self.modify::<UserRecord>(&r.user_name, |u| {
                    if let Some(n) = &other {
                        u.name = n.clone();
                    }
                    if let Some(p) = &path {
                        u.path = p.clone();
                    }
                    Ok(())
                })
                .await?;
                Ok(())
            }
        }
    }

    async fn delete_user(&self, r: m::DeleteUserRequest) -> Result<(), AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let u = self.need::<UserRecord>(&r.user_name).await?;
            let conflict = |what: &str| {
                err(
                    "DeleteConflict",
                    format!("Cannot delete entity, must {what} first."),
                )
            };
            if !u.value.access_keys.is_empty() {
                return Err(conflict("delete access keys"));
            }
            if !u.value.policies.inline.is_empty() {
                return Err(conflict("delete policies"));
            }
            if !u.value.policies.attached.is_empty() {
                return Err(conflict("detach all policies"));
            }
            if !u.value.groups.is_empty() {
                return Err(conflict("remove user from all groups"));
            }
            let txn = Txn::new()
                .when(u.unchanged())
                .then(Op::delete(u.key.clone()));
            let txn = self
                .release_boundary(txn, u.value.boundary.as_deref())
                .await?;
            if self.commit(txn).await? {
                return Ok(());
            }
        }
        Err(contention())
    }

    async fn tag_user(&self, r: m::TagUserRequest) -> Result<(), AwsError> {
        self.tag::<UserRecord>(&r.user_name, &r.tags).await
    }

    async fn untag_user(&self, r: m::UntagUserRequest) -> Result<(), AwsError> {
        self.untag::<UserRecord>(&r.user_name, &r.tag_keys).await
    }

    async fn list_user_tags(
        &self,
        r: m::ListUserTagsRequest,
    ) -> Result<m::ListUserTagsResponse, AwsError> {
        let (tags, marker) = self
            .list_tags::<UserRecord>(&r.user_name, r.marker.as_deref(), r.max_items)
            .await?;
        Ok(m::ListUserTagsResponse {
            tags,
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }

    async fn tag_role(&self, r: m::TagRoleRequest) -> Result<(), AwsError> {
        self.tag::<RoleRecord>(&r.role_name, &r.tags).await
    }

    async fn untag_role(&self, r: m::UntagRoleRequest) -> Result<(), AwsError> {
        self.untag::<RoleRecord>(&r.role_name, &r.tag_keys).await
    }

    async fn list_role_tags(
        &self,
        r: m::ListRoleTagsRequest,
    ) -> Result<m::ListRoleTagsResponse, AwsError> {
        let (tags, marker) = self
            .list_tags::<RoleRecord>(&r.role_name, r.marker.as_deref(), r.max_items)
            .await?;
        Ok(m::ListRoleTagsResponse {
            tags,
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }

    async fn tag<T: Tagged>(&self, name: &str, tags: &[m::Tag]) -> Result<(), AwsError> {
        self.modify::<T>(name, |e| merge_tags(e.tags(), tags))
            .await
            .map(drop)
    }

    async fn untag<T: Tagged>(&self, name: &str, keys: &[String]) -> Result<(), AwsError> {
        self.modify::<T>(name, |e| {
            untag(e.tags(), keys);
            Ok(())
        })
        .await
        .map(drop)
    }

    async fn list_tags<T: Tagged>(
        &self,
        name: &str,
        marker: Option<&str>,
        max: Option<i32>,
    ) -> Result<(Vec<m::Tag>, Option<String>), AwsError> {
        let mut e = self.need::<T>(name).await?;
        let tags = std::mem::take(e.value.tags());
        let (tags, marker) = page(tags, |t| t.0.to_ascii_lowercase(), marker, max)?;
        Ok((wire_tags(&tags), marker))
    }

    /// Gives a deleted entity's boundary use back (in its transaction).
    async fn release_boundary(&self, txn: Txn, boundary: Option<&str>) -> Result<Txn, AwsError> {
        match boundary {
            Some(b) => match self.named(b).await {
                Ok(named) => self.use_as_boundary(txn, named, -1),
                Err(_) => Ok(txn),
            },
            None => Ok(txn),
        }
    }

    async fn set_boundary<T: Holder>(
        &self,
        name: &str,
        boundary: Option<&str>,
        slot: fn(&mut T) -> &mut Option<String>,
    ) -> Result<(), AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut e = self.need::<T>(name).await?;
            let old = slot(&mut e.value).clone();
            if old.as_deref() == boundary {
                return Ok(());
            }
            let mut txn = Txn::new().when(e.unchanged());
            if let Some(b) = boundary {
                let named = self.named(b).await?;
                txn = self.use_as_boundary(txn, named, 1)?;
            }
            if let Some(o) = &old {
                if let Ok(named) = self.named(o).await {
                    txn = self.use_as_boundary(txn, named, -1)?;
                }
            }
            *slot(&mut e.value) = boundary.map(str::to_string);
            if self.commit(txn.then(e.put())).await? {
                return Ok(());
            }
        }
        Err(contention())
    }

    async fn put_user_boundary(
        &self,
        r: m::PutUserPermissionsBoundaryRequest,
    ) -> Result<(), AwsError> {
        self.set_boundary::<UserRecord>(&r.user_name, Some(&r.permissions_boundary), |u| {
            &mut u.boundary
        })
        .await
    }

    async fn delete_user_boundary(
        &self,
        r: m::DeleteUserPermissionsBoundaryRequest,
    ) -> Result<(), AwsError> {
        self.set_boundary::<UserRecord>(&r.user_name, None, |u| &mut u.boundary)
            .await
    }

    // ---- access keys ----

    async fn create_access_key(
        &self,
        r: m::CreateAccessKeyRequest,
    ) -> Result<m::CreateAccessKeyResponse, AwsError> {
        let Some(name) = self.own_user(r.user_name)? else {
            return Err(invalid(
                "Wharf's root keys are the ones it was started with; create a user for more keys.",
            ));
        };
        for _ in 0..MAX_ATTEMPTS {
            let mut u = self.need::<UserRecord>(&name).await?;
            if u.value.access_keys.len() >= MAX_ACCESS_KEYS {
                return Err(err(
                    "LimitExceeded",
                    format!("Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS}"),
                ));
            }
            let key = AccessKeyRecord {
                id: new_id("AKIA", 20),
                secret: new_secret(40),
                user: u.value.name.clone(),
                status: KeyStatus::Active,
                created: self.now,
            };
            u.value.access_keys.push(key.id.clone());
            let k = keys::access_key(&key.id);
            let txn = Txn::new()
                .when(u.unchanged())
                .when(Compare::NotExists(k.clone()))
                .then(u.put())
                .then(typed::put(&k, &key));
            if self.commit(txn).await? {
                return Ok(m::CreateAccessKeyResponse {
                    access_key: m::AccessKey {
                        user_name: key.user,
                        access_key_id: key.id,
                        status: m::StatusType::Active,
                        secret_access_key: key.secret,
                        create_date: Some(seconds(key.created)),
                    },
                });
            }
        }
        Err(contention())
    }

    async fn user_key(
        &self,
        user: Option<String>,
        id: &str,
    ) -> Result<Versioned<AccessKeyRecord>, AwsError> {
        let name = self.own_user(user)?;
        let missing = || {
            err(
                "NoSuchEntity",
                format!("The Access Key with id {id} cannot be found."),
            )
        };
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(missing());
        }
        let k = self
            .get::<AccessKeyRecord>(&keys::access_key(id))
            .await?
            .ok_or_else(missing)?;
        match name {
            Some(n) if !n.eq_ignore_ascii_case(&k.value.user) => Err(missing()),
            None => Err(missing()),
            _ => Ok(k),
        }
    }

    async fn list_access_keys(
        &self,
        r: m::ListAccessKeysRequest,
    ) -> Result<m::ListAccessKeysResponse, AwsError> {
        let Some(name) = self.own_user(r.user_name)? else {
            return Ok(m::ListAccessKeysResponse {
                access_key_metadata: Vec::new(),
                is_truncated: Some(false),
                marker: None,
            });
        };
        let u = self.need::<UserRecord>(&name).await?;
        let mut out = Vec::new();
        for id in &u.value.access_keys {
            if let Some(k) = self.get::<AccessKeyRecord>(&keys::access_key(id)).await? {
                out.push(k.value);
            }
        }
        let (keys, marker) = page(out, |k| k.id.clone(), r.marker.as_deref(), r.max_items)?;
        Ok(m::ListAccessKeysResponse {
            access_key_metadata: keys
                .into_iter()
                .map(|k| m::AccessKeyMetadata {
                    user_name: Some(k.user),
                    access_key_id: Some(k.id),
                    status: Some(match k.status {
                        KeyStatus::Active => m::StatusType::Active,
                        KeyStatus::Inactive => m::StatusType::Inactive,
                    }),
                    create_date: Some(seconds(k.created)),
                })
                .collect(),
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }

    async fn update_access_key(&self, r: m::UpdateAccessKeyRequest) -> Result<(), AwsError> {
        let status = match r.status {
            m::StatusType::Active => KeyStatus::Active,
            m::StatusType::Inactive => KeyStatus::Inactive,
            other => {
                return Err(err(
                    "ValidationError",
                    format!("1 validation error detected: Value '{other}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"),
                ))
            }
        };
        for _ in 0..MAX_ATTEMPTS {
            let mut k = self.user_key(r.user_name.clone(), &r.access_key_id).await?;
            k.value.status = status;
            if self
                .commit(Txn::new().when(k.unchanged()).then(k.put()))
                .await?
            {
                return Ok(());
            }
        }
        Err(contention())
    }

    async fn delete_access_key(&self, r: m::DeleteAccessKeyRequest) -> Result<(), AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let k = self.user_key(r.user_name.clone(), &r.access_key_id).await?;
            let mut txn = Txn::new()
                .when(k.unchanged())
                .then(Op::delete(k.key.clone()));
            if let Some(mut u) = self.get::<UserRecord>(&keys::user(&k.value.user)).await? {
                u.value.access_keys.retain(|id| id != &k.value.id);
                txn = txn.when(u.unchanged()).then(u.put());
            }
            if self.commit(txn).await? {
                return Ok(());
            }
        }
        Err(contention())
    }

    // ---- groups ----

    fn group_out(&self, g: &GroupRecord) -> m::Group {
        m::Group {
            path: g.path.clone(),
            group_name: g.name.clone(),
            group_id: g.id.clone(),
            arn: group_arn(self.account(), &g.path, &g.name),
            create_date: seconds(g.created),
        }
    }

    async fn create_group(
        &self,
        r: m::CreateGroupRequest,
    ) -> Result<m::CreateGroupResponse, AwsError> {
        check_name("groupName", &r.group_name, 128)?;
        let path = check_path("path", r.path.as_deref())?;
        let key = keys::group(&r.group_name);
        let group = GroupRecord {
            name: r.group_name.clone(),
            id: new_id("AGPA", 21),
            path,
            created: self.now,
            policies: Policies::default(),
            members: Vec::new(),
        };
        let txn = Txn::new()
            .when(Compare::NotExists(key.clone()))
            .then(typed::put(&key, &group));
        if !self.commit(txn).await? {
            return Err(err(
                "EntityAlreadyExists",
                format!("Group with name {} already exists.", r.group_name),
            ));
        }
        Ok(m::CreateGroupResponse {
            group: self.group_out(&group),
        })
    }

    async fn get_group(&self, r: m::GetGroupRequest) -> Result<m::GetGroupResponse, AwsError> {
        let g = self.need::<GroupRecord>(&r.group_name).await?;
        let mut users = Vec::new();
        for n in &g.value.members {
            if let Some(u) = self.get::<UserRecord>(&keys::user(n)).await? {
                users.push(u.value);
            }
        }
        let (users, marker) = page(
            users,
            |u| u.name.to_ascii_lowercase(),
            r.marker.as_deref(),
            r.max_items,
        )?;
        Ok(m::GetGroupResponse {
            group: self.group_out(&g.value),
            users: users.iter().map(|u| self.user_out(u)).collect(),
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }

    async fn list_groups(
        &self,
        r: m::ListGroupsRequest,
    ) -> Result<m::ListGroupsResponse, AwsError> {
        let groups: Vec<GroupRecord> = self.list(keys::GROUPS).await?;
        let groups = groups
            .into_iter()
            .filter(|g| path_prefix_ok(&g.path, r.path_prefix.as_deref()))
            .collect();
        let (groups, marker) = page(
            groups,
            |g| g.name.to_ascii_lowercase(),
            r.marker.as_deref(),
            r.max_items,
        )?;
        Ok(m::ListGroupsResponse {
            groups: groups.iter().map(|g| self.group_out(g)).collect(),
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }

    async fn delete_group(&self, r: m::DeleteGroupRequest) -> Result<(), AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let g = self.need::<GroupRecord>(&r.group_name).await?;
            let conflict = |what: &str| {
                err(
                    "DeleteConflict",
                    format!("Cannot delete entity, must {what} first."),
                )
            };
            if !g.value.members.is_empty() {
                return Err(conflict("remove users from group"));
            }
            if !g.value.policies.inline.is_empty() {
                return Err(conflict("delete policies"));
            }
            if !g.value.policies.attached.is_empty() {
                return Err(conflict("detach all policies"));
            }
            let txn = Txn::new()
                .when(g.unchanged())
                .then(Op::delete(g.key.clone()));
            if self.commit(txn).await? {
                return Ok(());
            }
        }
        Err(contention())
    }

    async fn membership(&self, group: &str, user: &str, join: bool) -> Result<(), AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut g = self.need::<GroupRecord>(group).await?;
            let mut u = self.need::<UserRecord>(user).await?;
            let is_member = u
                .value
                .groups
                .iter()
                .any(|x| x.eq_ignore_ascii_case(&g.value.name));
            if join {
                if is_member {
                    return Ok(());
                }
                if u.value.groups.len() >= MAX_GROUPS_PER_USER {
                    return Err(err(
                        "LimitExceeded",
                        format!("Cannot exceed quota for GroupsPerUser: {MAX_GROUPS_PER_USER}"),
                    ));
                }
                u.value.groups.push(g.value.name.clone());
                g.value.members.push(u.value.name.clone());
            } else {
                if !is_member {
                    return Err(err(
                        "NoSuchEntity",
                        format!("User {} is not in group {}.", u.value.name, g.value.name),
                    ));
                }
                u.value
                    .groups
                    .retain(|x| !x.eq_ignore_ascii_case(&g.value.name));
                g.value
                    .members
                    .retain(|x| !x.eq_ignore_ascii_case(&u.value.name));
            }
            let txn = Txn::new()
                .when(g.unchanged())
                .when(u.unchanged())
                .then(g.put())
                .then(u.put());
            if self.commit(txn).await? {
                return Ok(());
            }
        }
        Err(contention())
    }

    async fn add_user_to_group(&self, r: m::AddUserToGroupRequest) -> Result<(), AwsError> {
        self.membership(&r.group_name, &r.user_name, true).await
    }

    async fn remove_user_from_group(
        &self,
        r: m::RemoveUserFromGroupRequest,
    ) -> Result<(), AwsError> {
        self.membership(&r.group_name, &r.user_name, false).await
    }

    async fn list_groups_for_user(
        &self,
        r: m::ListGroupsForUserRequest,
    ) -> Result<m::ListGroupsForUserResponse, AwsError> {
        let u = self.need::<UserRecord>(&r.user_name).await?;
        let mut groups = Vec::new();
        for n in &u.value.groups {
            if let Some(g) = self.get::<GroupRecord>(&keys::group(n)).await? {
                groups.push(g.value);
            }
        }
        let (groups, marker) = page(
            groups,
            |g| g.name.to_ascii_lowercase(),
            r.marker.as_deref(),
            r.max_items,
        )?;
        Ok(m::ListGroupsForUserResponse {
            groups: groups.iter().map(|g| self.group_out(g)).collect(),
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }

    // ---- roles ----

    fn role_out(&self, r: &RoleRecord, with_document: bool) -> m::Role {
        m::Role {
            path: r.path.clone(),
            role_name: r.name.clone(),
            role_id: r.id.clone(),
            arn: role_arn(self.account(), &r.path, &r.name),
            create_date: seconds(r.created),
            assume_role_policy_document: with_document.then(|| encode_document(&r.trust)),
            description: r.description.clone(),
            max_session_duration: Some(r.max_session_duration),
            permissions_boundary: r.boundary.as_deref().map(boundary_out),
            tags: (!r.tags.is_empty()).then(|| wire_tags(&r.tags)),
            role_last_used: with_document.then(|| m::RoleLastUsed {
                last_used_date: r.last_used.map(seconds),
                region: None,
            }),
            ..Default::default()
        }
    }

    async fn create_role(
        &self,
        r: m::CreateRoleRequest,
    ) -> Result<m::CreateRoleResponse, AwsError> {
        check_name("roleName", &r.role_name, 64)?;
        let path = check_path("path", r.path.as_deref())?;
        parse_document(&r.assume_role_policy_document, true)?;
        let max = check_session_duration(r.max_session_duration)?;
        check_description(r.description.as_deref())?;
        let mut tags = Vec::new();
        merge_tags(&mut tags, r.tags.as_deref().unwrap_or_default())?;
        for _ in 0..MAX_ATTEMPTS {
            let key = keys::role(&r.role_name);
            if self.get::<RoleRecord>(&key).await?.is_some() {
                return Err(err(
                    "EntityAlreadyExists",
                    format!("Role with name {} already exists.", r.role_name),
                ));
            }
            let mut txn = Txn::new().when(Compare::NotExists(key.clone()));
            if let Some(b) = &r.permissions_boundary {
                let named = self.named(b).await?;
                txn = self.use_as_boundary(txn, named, 1)?;
            }
            let role = RoleRecord {
                name: r.role_name.clone(),
                id: new_id("AROA", 21),
                path: path.clone(),
                created: self.now,
                trust: r.assume_role_policy_document.clone(),
                description: r.description.clone(),
                max_session_duration: max,
                tags: tags.clone(),
                policies: Policies::default(),
                boundary: r.permissions_boundary.clone(),
                last_used: None,
            };
            if self.commit(txn.then(typed::put(&key, &role))).await? {
                return Ok(m::CreateRoleResponse {
                    role: self.role_out(&role, true),
                });
            }
        }
        Err(contention())
    }

    async fn get_role(&self, r: m::GetRoleRequest) -> Result<m::GetRoleResponse, AwsError> {
        let role = self.need::<RoleRecord>(&r.role_name).await?;
        Ok(m::GetRoleResponse {
            role: self.role_out(&role.value, true),
        })
    }

    async fn list_roles(&self, r: m::ListRolesRequest) -> Result<m::ListRolesResponse, AwsError> {
        let roles: Vec<RoleRecord> = self.list(keys::ROLES).await?;
        let roles = roles
            .into_iter()
            .filter(|x| path_prefix_ok(&x.path, r.path_prefix.as_deref()))
            .collect();
        let (roles, marker) = page(
            roles,
            |x| x.name.to_ascii_lowercase(),
            r.marker.as_deref(),
            r.max_items,
        )?;
        Ok(m::ListRolesResponse {
            roles: roles
                .iter()
                .map(|x| {
                    // ListRoles gives the trust policy but neither tags nor last use.
                    let mut out = self.role_out(x, true);
                    out.tags = None;
                    out.role_last_used = None;
                    out
                })
                .collect(),
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }

    async fn update_role(
        &self,
        r: m::UpdateRoleRequest,
    ) -> Result<m::UpdateRoleResponse, AwsError> {
        check_description(r.description.as_deref())?;
        let max = match r.max_session_duration {
            Some(_) => Some(check_session_duration(r.max_session_duration)?),
            None => None,
        };
        self.modify::<RoleRecord>(&r.role_name, |x| {
            if let Some(d) = &r.description {
                x.description = Some(d.clone());
            }
            if let Some(m) = max {
                x.max_session_duration = m;
            }
            Ok(())
        })
        .await?;
        Ok(m::UpdateRoleResponse {})
    }

    async fn update_role_description(
        &self,
        r: m::UpdateRoleDescriptionRequest,
    ) -> Result<m::UpdateRoleDescriptionResponse, AwsError> {
        check_description(Some(&r.description))?;
        let role = self
            .modify::<RoleRecord>(&r.role_name, |x| {
                x.description = Some(r.description.clone());
                Ok(())
            })
            .await?;
        Ok(m::UpdateRoleDescriptionResponse {
            role: Some(self.role_out(&role, true)),
        })
    }

    async fn update_assume_role_policy(
        &self,
        r: m::UpdateAssumeRolePolicyRequest,
    ) -> Result<(), AwsError> {
        parse_document(&r.policy_document, true)?;
        self.modify::<RoleRecord>(&r.role_name, |x| {
            x.trust = r.policy_document.clone();
            Ok(())
        })
        .await
        .map(drop)
    }

    async fn delete_role(&self, r: m::DeleteRoleRequest) -> Result<(), AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let role = self.need::<RoleRecord>(&r.role_name).await?;
            if !role.value.policies.inline.is_empty() {
                return Err(err(
                    "DeleteConflict",
                    "Cannot delete entity, must delete policies first.",
                ));
            }
            if !role.value.policies.attached.is_empty() {
                return Err(err(
                    "DeleteConflict",
                    "Cannot delete entity, must detach all policies first.",
                ));
            }
            let txn = Txn::new()
                .when(role.unchanged())
                .then(Op::delete(role.key.clone()));
            let txn = self
                .release_boundary(txn, role.value.boundary.as_deref())
                .await?;
            if self.commit(txn).await? {
                return Ok(());
            }
        }
        Err(contention())
    }

    async fn put_role_boundary(
        &self,
        r: m::PutRolePermissionsBoundaryRequest,
    ) -> Result<(), AwsError> {
        self.set_boundary::<RoleRecord>(&r.role_name, Some(&r.permissions_boundary), |x| {
            &mut x.boundary
        })
        .await
    }

    async fn delete_role_boundary(
        &self,
        r: m::DeleteRolePermissionsBoundaryRequest,
    ) -> Result<(), AwsError> {
        self.set_boundary::<RoleRecord>(&r.role_name, None, |x| &mut x.boundary)
            .await
    }

    // ---- managed policies ----

    fn policy_out(&self, named: &Named) -> m::Policy {
        match named {
            Named::Aws(p) => {
                let (a, b) = self.iam.cache.attachment_counts(&p.arn());
                m::Policy {
                    policy_name: Some(p.name.into()),
                    policy_id: Some(managed::id_of(p.name)),
                    arn: Some(p.arn()),
                    path: Some(p.path.into()),
                    default_version_id: Some("v1".into()),
                    attachment_count: Some(a),
                    permissions_boundary_usage_count: Some(b),
                    is_attachable: Some(true),
                    description: Some(p.description.into()),
                    create_date: Some(0.0),
                    update_date: Some(0.0),
                    tags: None,
                }
            }
            Named::Customer(v) => {
                let p = &v.value;
                m::Policy {
                    policy_name: Some(p.name.clone()),
                    policy_id: Some(p.id.clone()),
                    arn: Some(policy_arn(self.account(), &p.path, &p.name)),
                    path: Some(p.path.clone()),
                    default_version_id: Some(p.default_version.clone()),
                    attachment_count: Some(p.attachments as i32),
                    permissions_boundary_usage_count: Some(p.boundary_uses as i32),
                    is_attachable: Some(true),
                    description: p.description.clone(),
                    create_date: Some(seconds(p.created)),
                    update_date: Some(seconds(p.updated)),
                    tags: (!p.tags.is_empty()).then(|| wire_tags(&p.tags)),
                }
            }
        }
    }

    async fn create_policy(
        &self,
        r: m::CreatePolicyRequest,
    ) -> Result<m::CreatePolicyResponse, AwsError> {
        check_name("policyName", &r.policy_name, 128)?;
        let path = check_path("path", r.path.as_deref())?;
        parse_document(&r.policy_document, false)?;
        if r.description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 1000)
        {
            return Err(err(
                "ValidationError",
                "Description must be at most 1000 characters.",
            ));
        }
        let mut tags = Vec::new();
        merge_tags(&mut tags, r.tags.as_deref().unwrap_or_default())?;
        let key = keys::policy(&r.policy_name);
        let policy = PolicyRecord {
            name: r.policy_name.clone(),
            id: new_id("ANPA", 21),
            path,
            description: r.description.clone(),
            created: self.now,
            updated: self.now,
            default_version: "v1".into(),
            versions: vec![PolicyVersion {
                id: "v1".into(),
                document: r.policy_document.clone(),
                created: self.now,
            }],
            next_version: 2,
            tags,
            attachments: 0,
            boundary_uses: 0,
        };
        let txn = Txn::new()
            .when(Compare::NotExists(key.clone()))
            .then(typed::put(&key, &policy));
        if !self.commit(txn).await? {
            return Err(err(
                "EntityAlreadyExists",
                format!(
                    "A policy called {} already exists. Duplicate names are not allowed.",
                    r.policy_name
                ),
            ));
        }
        let v = Versioned {
            value: policy,
            key,
            mod_revision: 0,
        };
        Ok(m::CreatePolicyResponse {
            policy: Some(self.policy_out(&Named::Customer(Box::new(v)))),
        })
    }

    async fn get_policy(&self, r: m::GetPolicyRequest) -> Result<m::GetPolicyResponse, AwsError> {
        let named = self.named(&r.policy_arn).await?;
        Ok(m::GetPolicyResponse {
            policy: Some(self.policy_out(&named)),
        })
    }

    async fn list_policies(
        &self,
        r: m::ListPoliciesRequest,
    ) -> Result<m::ListPoliciesResponse, AwsError> {
        let scope = r.scope.clone().unwrap_or(m::PolicyScopeType::All);
        let mut all: Vec<m::Policy> = Vec::new();
        if matches!(scope, m::PolicyScopeType::All | m::PolicyScopeType::Aws) {
            all.extend(
                managed::POLICIES
                    .iter()
                    .map(|p| self.policy_out(&Named::Aws(p))),
            );
        }
        if matches!(scope, m::PolicyScopeType::All | m::PolicyScopeType::Local) {
            let records = typed::list::<PolicyRecord>(&*self.iam.store, keys::POLICIES)
                .await
                .map_err(from_store)?
                .0;
            all.extend(
                records
                    .into_iter()
                    .map(|v| self.policy_out(&Named::Customer(Box::new(v)))),
            );
        }
        if !scope.is_known() {
            return Err(err(
                "ValidationError",
                format!("Invalid scope {scope}: All, AWS or Local"),
            ));
        }
        let only_attached = r.only_attached.unwrap_or(false);
        let usage = r.policy_usage_filter.clone();
        let filtered = all
            .into_iter()
            .filter(|p| path_prefix_ok(p.path.as_deref().unwrap_or("/"), r.path_prefix.as_deref()))
            .filter(|p| {
                let used = p.attachment_count.unwrap_or(0) > 0;
                let bounds = p.permissions_boundary_usage_count.unwrap_or(0) > 0;
                match &usage {
                    Some(m::PolicyUsageType::PermissionsPolicy) => !only_attached || used,
                    Some(m::PolicyUsageType::PermissionsBoundary) => !only_attached || bounds,
                    _ => !only_attached || used || bounds,
                }
            })
            .collect();
        let (policies, marker) = page(
            filtered,
            |p| p.arn.clone().unwrap_or_default(),
            r.marker.as_deref(),
            r.max_items,
        )?;
        Ok(m::ListPoliciesResponse {
            policies: Some(policies),
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }

    async fn customer(&self, arn: &str) -> Result<Versioned<PolicyRecord>, AwsError> {
        match self.named(arn).await? {
            Named::Customer(p) => Ok(*p),
            Named::Aws(_) => Err(invalid(format!(
                "Policy {arn} is an AWS managed policy, which cannot be changed."
            ))),
        }
    }

    async fn delete_policy(&self, r: m::DeletePolicyRequest) -> Result<(), AwsError> {
        let p = self.customer(&r.policy_arn).await?;
        if p.value.attachments > 0 || p.value.boundary_uses > 0 {
            return Err(err(
                "DeleteConflict",
                "Cannot delete a policy attached to entities.",
            ));
        }
        if p.value.versions.len() > 1 {
            return Err(err(
                "DeleteConflict",
                "Cannot delete a policy with non-default versions; delete them first.",
            ));
        }
        if !self
            .commit(
                Txn::new()
                    .when(p.unchanged())
                    .then(Op::delete(p.key.clone())),
            )
            .await?
        {
            return Err(contention());
        }
        Ok(())
    }

    async fn modify_policy(
        &self,
        arn: &str,
        mut f: impl FnMut(&mut PolicyRecord) -> Result<(), AwsError>,
    ) -> Result<PolicyRecord, AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut p = self.customer(arn).await?;
            f(&mut p.value)?;
            p.value.updated = self.now;
            if self
                .commit(Txn::new().when(p.unchanged()).then(p.put()))
                .await?
            {
                return Ok(p.value);
            }
        }
        Err(contention())
    }

    async fn create_policy_version(
        &self,
        r: m::CreatePolicyVersionRequest,
    ) -> Result<m::CreatePolicyVersionResponse, AwsError> {
        parse_document(&r.policy_document, false)?;
        let set_default = r.set_as_default.unwrap_or(false);
        let mut id = String::new();
        let p = self
            .modify_policy(&r.policy_arn, |p| {
                if p.versions.len() >= MAX_POLICY_VERSIONS {
                    return Err(err(
                        "LimitExceeded",
                        format!("A managed policy can have up to {MAX_POLICY_VERSIONS} versions. Before you create a new version, you must delete an existing version."),
                    ));
                }
                id = format!("v{}", p.next_version);
                p.next_version = p.next_version.saturating_add(1);
                p.versions.push(PolicyVersion {
                    id: id.clone(),
                    document: r.policy_document.clone(),
                    created: self.now,
                });
                if set_default {
                    p.default_version = id.clone();
                }
                Ok(())
            })
            .await?;
        Ok(m::CreatePolicyVersionResponse {
            policy_version: Some(m::PolicyVersion {
                document: None,
                version_id: Some(id.clone()),
                is_default_version: Some(p.default_version == id),
                create_date: Some(seconds(self.now)),
            }),
        })
    }

    async fn get_policy_version(
        &self,
        r: m::GetPolicyVersionRequest,
    ) -> Result<m::GetPolicyVersionResponse, AwsError> {
        let version = match self.named(&r.policy_arn).await? {
            Named::Aws(p) => (r.version_id == "v1").then(|| m::PolicyVersion {
                document: Some(encode_document(p.document)),
                version_id: Some("v1".into()),
                is_default_version: Some(true),
                create_date: Some(0.0),
            }),
            Named::Customer(p) => p
                .value
                .versions
                .iter()
                .find(|v| v.id == r.version_id)
                .map(|v| m::PolicyVersion {
                    document: Some(encode_document(&v.document)),
                    version_id: Some(v.id.clone()),
                    is_default_version: Some(v.id == p.value.default_version),
                    create_date: Some(seconds(v.created)),
                }),
        };
        let version = version.ok_or_else(|| {
            err(
                "NoSuchEntity",
                format!(
                    "Policy {} version {} does not exist or is not attachable.",
                    r.policy_arn, r.version_id
                ),
            )
        })?;
        Ok(m::GetPolicyVersionResponse {
            policy_version: Some(version),
        })
    }

    async fn list_policy_versions(
        &self,
        r: m::ListPolicyVersionsRequest,
    ) -> Result<m::ListPolicyVersionsResponse, AwsError> {
        let versions: Vec<m::PolicyVersion> = match self.named(&r.policy_arn).await? {
            Named::Aws(_) => vec![m::PolicyVersion {
                document: None,
                version_id: Some("v1".into()),
                is_default_version: Some(true),
                create_date: Some(0.0),
            }],
            Named::Customer(p) => p
                .value
                .versions
                .iter()
                .rev()
                .map(|v| m::PolicyVersion {
                    document: None,
                    version_id: Some(v.id.clone()),
                    is_default_version: Some(v.id == p.value.default_version),
                    create_date: Some(seconds(v.created)),
                })
                .collect(),
        };
        // Newest first, as IAM lists them: the key is the version number
        // counted down.
        let (versions, marker) = page(
            versions,
            |v| {
                let n: u32 = v
                    .version_id
                    .as_deref()
                    .and_then(|s| s.strip_prefix('v'))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                format!("{:010}", u32::MAX - n)
            },
            r.marker.as_deref(),
            r.max_items,
        )?;
        Ok(m::ListPolicyVersionsResponse {
            versions: Some(versions),
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }

    async fn delete_policy_version(
        &self,
        r: m::DeletePolicyVersionRequest,
    ) -> Result<(), AwsError> {
        self.modify_policy(&r.policy_arn, |p| {
            if p.default_version == r.version_id {
                return Err(err(
                    "DeleteConflict",
                    "Cannot delete the default version of a policy.",
                ));
            }
            let before = p.versions.len();
            p.versions.retain(|v| v.id != r.version_id);
            if p.versions.len() == before {
                return Err(err(
                    "NoSuchEntity",
                    format!(
                        "Policy {} version {} does not exist.",
                        r.policy_arn, r.version_id
                    ),
                ));
            }
            Ok(())
        })
        .await
        .map(drop)
    }

    async fn set_default_policy_version(
        &self,
        r: m::SetDefaultPolicyVersionRequest,
    ) -> Result<(), AwsError> {
        self.modify_policy(&r.policy_arn, |p| {
            if !p.versions.iter().any(|v| v.id == r.version_id) {
                return Err(err(
                    "NoSuchEntity",
                    format!(
                        "Policy {} version {} does not exist.",
                        r.policy_arn, r.version_id
                    ),
                ));
            }
            p.default_version = r.version_id.clone();
            Ok(())
        })
        .await
        .map(drop)
    }

    async fn tag_policy(&self, r: m::TagPolicyRequest) -> Result<(), AwsError> {
        self.modify_policy(&r.policy_arn, |p| merge_tags(&mut p.tags, &r.tags))
            .await
            .map(drop)
    }

    async fn untag_policy(&self, r: m::UntagPolicyRequest) -> Result<(), AwsError> {
        self.modify_policy(&r.policy_arn, |p| {
            untag(&mut p.tags, &r.tag_keys);
            Ok(())
        })
        .await
        .map(drop)
    }

    async fn list_policy_tags(
        &self,
        r: m::ListPolicyTagsRequest,
    ) -> Result<m::ListPolicyTagsResponse, AwsError> {
        let tags = match self.named(&r.policy_arn).await? {
            Named::Aws(_) => Vec::new(),
            Named::Customer(p) => p.value.tags,
        };
        let (tags, marker) = page(
            tags,
            |t| t.0.to_ascii_lowercase(),
            r.marker.as_deref(),
            r.max_items,
        )?;
        Ok(m::ListPolicyTagsResponse {
            tags: wire_tags(&tags),
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }

    async fn list_entities_for_policy(
        &self,
        r: m::ListEntitiesForPolicyRequest,
    ) -> Result<m::ListEntitiesForPolicyResponse, AwsError> {
        let arn = self.named(&r.policy_arn).await?.arn(self.account());
        if r.policy_usage_filter == Some(m::PolicyUsageType::PermissionsBoundary) {
            return Err(not_supported(
                "ListEntitiesForPolicy with PolicyUsageFilter PermissionsBoundary",
            ));
        }
        let (users, groups, roles) = self.iam.cache.entities_for(&arn);
        let prefix = r.path_prefix.as_deref();
        let want = |k: m::EntityType| r.entity_filter.is_none() || r.entity_filter == Some(k);
        // One page over the three kinds, keyed by kind then name.
        let mut all: Vec<(String, u8, String, String)> = Vec::new();
        if want(m::EntityType::User) {
            all.extend(
                users
                    .into_iter()
                    .filter(|u| path_prefix_ok(&u.path, prefix))
                    .map(|u| {
                        (
                            format!("u/{}", u.name.to_ascii_lowercase()),
                            0,
                            u.name,
                            u.id,
                        )
                    }),
            );
        }
        if want(m::EntityType::Group) {
            all.extend(
                groups
                    .into_iter()
                    .filter(|g| path_prefix_ok(&g.path, prefix))
                    .map(|g| {
                        (
                            format!("g/{}", g.name.to_ascii_lowercase()),
                            1,
                            g.name,
                            g.id,
                        )
                    }),
            );
        }
        if want(m::EntityType::Role) {
            all.extend(
                roles
                    .into_iter()
                    .filter(|x| path_prefix_ok(&x.path, prefix))
                    .map(|x| {
                        (
                            format!("r/{}", x.name.to_ascii_lowercase()),
                            2,
                            x.name,
                            x.id,
                        )
                    }),
            );
        }
        let (page_items, marker) = page(all, |e| e.0.clone(), r.marker.as_deref(), r.max_items)?;
        let mut out = m::ListEntitiesForPolicyResponse {
            policy_groups: Some(Vec::new()),
            policy_users: Some(Vec::new()),
            policy_roles: Some(Vec::new()),
            is_truncated: Some(marker.is_some()),
            marker,
        };
        for (_, kind, name, id) in page_items {
            match kind {
                0 => out
                    .policy_users
                    .get_or_insert_default()
                    .push(m::PolicyUser {
                        user_name: Some(name),
                        user_id: Some(id),
                    }),
                1 => out
                    .policy_groups
                    .get_or_insert_default()
                    .push(m::PolicyGroup {
                        group_name: Some(name),
                        group_id: Some(id),
                    }),
                _ => out
                    .policy_roles
                    .get_or_insert_default()
                    .push(m::PolicyRole {
                        role_name: Some(name),
                        role_id: Some(id),
                    }),
            }
        }
        Ok(out)
    }

    // ---- attached and inline policies (users, groups, roles alike) ----

    async fn attach<T: Holder>(&self, name: &str, arn: &str) -> Result<(), AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut e = self.need::<T>(name).await?;
            let named = self.named(arn).await?;
            let arn = named.arn(self.account());
            if e.value.policies_ref().attached.contains(&arn) {
                return Ok(());
            }
            if e.value.policies_ref().attached.len() >= MAX_ATTACHED {
                return Err(err(
                    "LimitExceeded",
                    format!(
                        "Cannot exceed quota for PoliciesPer{}: {MAX_ATTACHED}",
                        capitalised(T::KIND)
                    ),
                ));
            }
            e.value.policies().attached.push(arn);
            let mut txn = Txn::new().when(e.unchanged()).then(e.put());
            if let Named::Customer(mut p) = named {
                txn = txn.when(p.unchanged());
                p.value.attachments = p.value.attachments.saturating_add(1);
                txn = txn.then(p.put());
            }
            if self.commit(txn).await? {
                return Ok(());
            }
        }
        Err(contention())
    }

    async fn detach<T: Holder>(&self, name: &str, arn: &str) -> Result<(), AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut e = self.need::<T>(name).await?;
            if !e.value.policies_ref().attached.iter().any(|a| a == arn) {
                return Err(err("NoSuchEntity", format!("Policy {arn} was not found.")));
            }
            e.value.policies().attached.retain(|a| a != arn);
            let mut txn = Txn::new().when(e.unchanged()).then(e.put());
            if let Ok(Named::Customer(mut p)) = self.named(arn).await {
                txn = txn.when(p.unchanged());
                p.value.attachments = p.value.attachments.saturating_sub(1);
                txn = txn.then(p.put());
            }
            if self.commit(txn).await? {
                return Ok(());
            }
        }
        Err(contention())
    }

    async fn list_attached<T: Holder>(
        &self,
        name: &str,
        prefix: Option<&str>,
        marker: Option<&str>,
        max: Option<i32>,
    ) -> Result<(Vec<m::AttachedPolicy>, Option<String>), AwsError> {
        let e = self.need::<T>(name).await?;
        let mut out = Vec::new();
        for arn in &e.value.policies_ref().attached {
            let (path, pname) = match self.named(arn).await {
                Ok(Named::Aws(p)) => (p.path.to_string(), p.name.to_string()),
                Ok(Named::Customer(p)) => (p.value.path, p.value.name),
                Err(_) => continue,
            };
            if path_prefix_ok(&path, prefix) {
                out.push(m::AttachedPolicy {
                    policy_name: Some(pname),
                    policy_arn: Some(arn.clone()),
                });
            }
        }
        page(
            out,
            |p| p.policy_arn.clone().unwrap_or_default(),
            marker,
            max,
        )
    }

    async fn put_inline<T: Holder>(
        &self,
        name: &str,
        policy: &str,
        doc: &str,
    ) -> Result<(), AwsError> {
        check_name("policyName", policy, 128)?;
        parse_document(doc, false)?;
        self.modify::<T>(name, |e| {
            let inline = &mut e.policies().inline;
            // Names are case-insensitive: a put under another case replaces.
            let existing = inline
                .keys()
                .find(|k| k.eq_ignore_ascii_case(policy))
                .cloned();
            if let Some(k) = existing {
                inline.remove(&k);
            }
            inline.insert(policy.to_string(), doc.to_string());
            Ok(())
        })
        .await
        .map(drop)
    }

    async fn get_inline<T: Holder>(
        &self,
        name: &str,
        policy: &str,
    ) -> Result<(String, String, String), AwsError> {
        let e = self.need::<T>(name).await?;
        let found = e
            .value
            .policies_ref()
            .inline
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(policy));
        match found {
            Some((k, doc)) => Ok((e.value.name().to_string(), k.clone(), encode_document(doc))),
            None => Err(err(
                "NoSuchEntity",
                format!("The {} policy with name {policy} cannot be found.", T::KIND),
            )),
        }
    }

    async fn delete_inline<T: Holder>(&self, name: &str, policy: &str) -> Result<(), AwsError> {
        self.modify::<T>(name, |e| {
            let inline = &mut e.policies().inline;
            let existing = inline
                .keys()
                .find(|k| k.eq_ignore_ascii_case(policy))
                .cloned();
            match existing {
                Some(k) => {
                    inline.remove(&k);
                    Ok(())
                }
                None => Err(err(
                    "NoSuchEntity",
                    format!("The {} policy with name {policy} cannot be found.", T::KIND),
                )),
            }
        })
        .await
        .map(drop)
    }

    async fn list_inline<T: Holder>(
        &self,
        name: &str,
        marker: Option<&str>,
        max: Option<i32>,
    ) -> Result<(Vec<String>, Option<String>), AwsError> {
        let e = self.need::<T>(name).await?;
        let names: Vec<String> = e.value.policies_ref().inline.keys().cloned().collect();
        page(names, |n| n.to_ascii_lowercase(), marker, max)
    }

    async fn attach_user_policy(&self, r: m::AttachUserPolicyRequest) -> Result<(), AwsError> {
        self.attach::<UserRecord>(&r.user_name, &r.policy_arn).await
    }
    async fn detach_user_policy(&self, r: m::DetachUserPolicyRequest) -> Result<(), AwsError> {
        self.detach::<UserRecord>(&r.user_name, &r.policy_arn).await
    }
    async fn attach_group_policy(&self, r: m::AttachGroupPolicyRequest) -> Result<(), AwsError> {
        self.attach::<GroupRecord>(&r.group_name, &r.policy_arn)
            .await
    }
    async fn detach_group_policy(&self, r: m::DetachGroupPolicyRequest) -> Result<(), AwsError> {
        self.detach::<GroupRecord>(&r.group_name, &r.policy_arn)
            .await
    }
    async fn attach_role_policy(&self, r: m::AttachRolePolicyRequest) -> Result<(), AwsError> {
        self.attach::<RoleRecord>(&r.role_name, &r.policy_arn).await
    }
    async fn detach_role_policy(&self, r: m::DetachRolePolicyRequest) -> Result<(), AwsError> {
        self.detach::<RoleRecord>(&r.role_name, &r.policy_arn).await
    }

    async fn list_attached_user_policies(
        &self,
        r: m::ListAttachedUserPoliciesRequest,
    ) -> Result<m::ListAttachedUserPoliciesResponse, AwsError> {
        let (p, marker) = self
            .list_attached::<UserRecord>(
                &r.user_name,
                r.path_prefix.as_deref(),
                r.marker.as_deref(),
                r.max_items,
            )
            .await?;
        Ok(m::ListAttachedUserPoliciesResponse {
            attached_policies: Some(p),
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }
    async fn list_attached_group_policies(
        &self,
        r: m::ListAttachedGroupPoliciesRequest,
    ) -> Result<m::ListAttachedGroupPoliciesResponse, AwsError> {
        let (p, marker) = self
            .list_attached::<GroupRecord>(
                &r.group_name,
                r.path_prefix.as_deref(),
                r.marker.as_deref(),
                r.max_items,
            )
            .await?;
        Ok(m::ListAttachedGroupPoliciesResponse {
            attached_policies: Some(p),
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }
    async fn list_attached_role_policies(
        &self,
        r: m::ListAttachedRolePoliciesRequest,
    ) -> Result<m::ListAttachedRolePoliciesResponse, AwsError> {
        let (p, marker) = self
            .list_attached::<RoleRecord>(
                &r.role_name,
                r.path_prefix.as_deref(),
                r.marker.as_deref(),
                r.max_items,
            )
            .await?;
        Ok(m::ListAttachedRolePoliciesResponse {
            attached_policies: Some(p),
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }

    async fn put_user_policy(&self, r: m::PutUserPolicyRequest) -> Result<(), AwsError> {
        self.put_inline::<UserRecord>(&r.user_name, &r.policy_name, &r.policy_document)
            .await
    }
    async fn put_group_policy(&self, r: m::PutGroupPolicyRequest) -> Result<(), AwsError> {
        self.put_inline::<GroupRecord>(&r.group_name, &r.policy_name, &r.policy_document)
            .await
    }
    async fn put_role_policy(&self, r: m::PutRolePolicyRequest) -> Result<(), AwsError> {
        self.put_inline::<RoleRecord>(&r.role_name, &r.policy_name, &r.policy_document)
            .await
    }

    async fn get_user_policy(
        &self,
        r: m::GetUserPolicyRequest,
    ) -> Result<m::GetUserPolicyResponse, AwsError> {
        let (user_name, policy_name, policy_document) = self
            .get_inline::<UserRecord>(&r.user_name, &r.policy_name)
            .await?;
        Ok(m::GetUserPolicyResponse {
            user_name,
            policy_name,
            policy_document,
        })
    }
    async fn get_group_policy(
        &self,
        r: m::GetGroupPolicyRequest,
    ) -> Result<m::GetGroupPolicyResponse, AwsError> {
        let (group_name, policy_name, policy_document) = self
            .get_inline::<GroupRecord>(&r.group_name, &r.policy_name)
            .await?;
        Ok(m::GetGroupPolicyResponse {
            group_name,
            policy_name,
            policy_document,
        })
    }
    async fn get_role_policy(
        &self,
        r: m::GetRolePolicyRequest,
    ) -> Result<m::GetRolePolicyResponse, AwsError> {
        let (role_name, policy_name, policy_document) = self
            .get_inline::<RoleRecord>(&r.role_name, &r.policy_name)
            .await?;
        Ok(m::GetRolePolicyResponse {
            role_name,
            policy_name,
            policy_document,
        })
    }

    async fn delete_user_policy(&self, r: m::DeleteUserPolicyRequest) -> Result<(), AwsError> {
        self.delete_inline::<UserRecord>(&r.user_name, &r.policy_name)
            .await
    }
    async fn delete_group_policy(&self, r: m::DeleteGroupPolicyRequest) -> Result<(), AwsError> {
        self.delete_inline::<GroupRecord>(&r.group_name, &r.policy_name)
            .await
    }
    async fn delete_role_policy(&self, r: m::DeleteRolePolicyRequest) -> Result<(), AwsError> {
        self.delete_inline::<RoleRecord>(&r.role_name, &r.policy_name)
            .await
    }

    async fn list_user_policies(
        &self,
        r: m::ListUserPoliciesRequest,
    ) -> Result<m::ListUserPoliciesResponse, AwsError> {
        let (policy_names, marker) = self
            .list_inline::<UserRecord>(&r.user_name, r.marker.as_deref(), r.max_items)
            .await?;
        Ok(m::ListUserPoliciesResponse {
            policy_names,
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }
    async fn list_group_policies(
        &self,
        r: m::ListGroupPoliciesRequest,
    ) -> Result<m::ListGroupPoliciesResponse, AwsError> {
        let (policy_names, marker) = self
            .list_inline::<GroupRecord>(&r.group_name, r.marker.as_deref(), r.max_items)
            .await?;
        Ok(m::ListGroupPoliciesResponse {
            policy_names,
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }
    async fn list_role_policies(
        &self,
        r: m::ListRolePoliciesRequest,
    ) -> Result<m::ListRolePoliciesResponse, AwsError> {
        let (policy_names, marker) = self
            .list_inline::<RoleRecord>(&r.role_name, r.marker.as_deref(), r.max_items)
            .await?;
        Ok(m::ListRolePoliciesResponse {
            policy_names,
            is_truncated: Some(marker.is_some()),
            marker,
        })
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn boundary_out(arn: &str) -> m::AttachedPermissionsBoundary {
    m::AttachedPermissionsBoundary {
        permissions_boundary_type: Some(
            m::PermissionsBoundaryAttachmentType::PermissionsBoundaryPolicy,
        ),
        permissions_boundary_arn: Some(arn.to_string()),
    }
}

/// MaxSessionDuration: an hour by default, one to twelve hours.
fn check_session_duration(d: Option<i32>) -> Result<i32, AwsError> {
    match d {
        None => Ok(3600),
        Some(s) if (3600..=43200).contains(&s) => Ok(s),
        Some(s) => Err(err(
            "ValidationError",
            format!("1 validation error detected: Value '{s}' at 'maxSessionDuration' failed to satisfy constraint: Member must have value between 3600 and 43200"),
        )),
    }
}

fn check_description(d: Option<&str>) -> Result<(), AwsError> {
    match d {
        Some(d) if d.chars().count() > 1000 => Err(err(
            "ValidationError",
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 1000",
        )),
        _ => Ok(()),
    }
}
