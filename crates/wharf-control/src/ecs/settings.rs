//! Account settings (`/account-settings/NAME`). Settings are kept for the
//! account only, not per IAM principal: the root's own setting and the
//! account default are one (PutAccountSetting by the root and
//! PutAccountSettingDefault write the same record), a `principalArn` other
//! than the root's is refused, and so is an IAM principal's
//! PutAccountSetting/DeleteAccountSetting of its own setting (it may set
//! the account's with PutAccountSettingDefault, if its policies allow). What each value does, or why it is
//! refused, is `wharf_core::account_settings`.

use crate::error::{from_core, invalid, ApiResult};
use crate::records::{self, commit};
use crate::wire::{self, paginate};
use crate::{Control, Ctx};
use wharf_core::account_settings::{self as rules, RULES};
use wharf_core::records::{keys, AccountSettingRecord};
use wharf_model::ecs;
use wharf_store::{Op, Txn};

fn root(x: &Ctx) -> String {
    format!("arn:aws:iam::{}:root", x.scope.account)
}

/// The principal a request names (its own when none): only the root. A
/// write of an IAM principal's own setting is refused.
fn principal(x: &Ctx, given: Option<&str>, writes: bool) -> ApiResult<String> {
    let root = root(x);
    if writes && given.is_none() && !matches!(x.caller, crate::auth::Caller::Root) {
        return Err(invalid(format!(
            "Wharf keeps account settings for the account, not for each IAM principal: {} cannot have a setting of its own. Set the account's with PutAccountSettingDefault.",
            x.caller.arn(&x.scope.account)
        )));
    }
    match given {
        None => Ok(root),
        Some(p) if p == root => Ok(root),
        Some(p) => Err(invalid(format!(
            "Wharf keeps account settings for the account only: principalArn must be the root ({root}), not {p}."
        ))),
    }
}

fn setting(x: &Ctx, name: &str, value: &str) -> ecs::Setting {
    let managed = rules::rule(name).is_some_and(|r| r.read_only);
    ecs::Setting {
        name: Some(ecs::SettingName::from(name)),
        value: Some(value.to_string()),
        principal_arn: Some(root(x)),
        r#type: Some(if managed {
            ecs::SettingType::AwsManaged
        } else {
            ecs::SettingType::User
        }),
    }
}

/// The value in effect for `name`: as set, else the default.
pub(crate) async fn effective(c: &Control, x: &Ctx, name: &str) -> ApiResult<String> {
    let key = keys::account_setting(x.region(), name);
    let set = records::get::<AccountSettingRecord>(c.store.as_ref(), &key).await?;
    Ok(match set {
        Some(v) => v.value.value,
        None => rules::rule(name).map_or("", |r| r.default).to_string(),
    })
}

async fn put_value(
    c: &Control,
    x: &Ctx,
    name: &ecs::SettingName,
    value: &str,
) -> ApiResult<ecs::Setting> {
    let name = name.as_str();
    rules::check(name, value).map_err(from_core)?;
    let record = AccountSettingRecord {
        name: name.to_string(),
        value: value.to_string(),
        updated_at: x.now,
    };
    // The last writer wins, as in ECS: nothing is read first.
    let key = keys::account_setting(x.region(), name);
    commit(
        c.store.as_ref(),
        Txn::new().then(records::put(&key, &record)),
    )
    .await?;
    Ok(setting(x, name, value))
}

pub async fn put(
    c: &Control,
    x: &Ctx,
    r: ecs::PutAccountSettingRequest,
) -> ApiResult<ecs::PutAccountSettingResponse> {
    principal(x, r.principal_arn.as_deref(), true)?;
    Ok(ecs::PutAccountSettingResponse {
        setting: Some(put_value(c, x, &r.name, &r.value).await?),
    })
}

pub async fn put_default(
    c: &Control,
    x: &Ctx,
    r: ecs::PutAccountSettingDefaultRequest,
) -> ApiResult<ecs::PutAccountSettingDefaultResponse> {
    Ok(ecs::PutAccountSettingDefaultResponse {
        setting: Some(put_value(c, x, &r.name, &r.value).await?),
    })
}

pub async fn delete(
    c: &Control,
    x: &Ctx,
    r: ecs::DeleteAccountSettingRequest,
) -> ApiResult<ecs::DeleteAccountSettingResponse> {
    principal(x, r.principal_arn.as_deref(), true)?;
    let name = r.name.as_str();
    let rule = rules::settable(name).map_err(from_core)?;
    let key = keys::account_setting(x.region(), name);
    let was = records::get::<AccountSettingRecord>(c.store.as_ref(), &key).await?;
    commit(c.store.as_ref(), Txn::new().then(Op::delete(key))).await?;
    // The setting as it was; the default applies from now on.
    let value = was.map_or(rule.default.to_string(), |v| v.value.value);
    Ok(ecs::DeleteAccountSettingResponse {
        setting: Some(setting(x, name, &value)),
    })
}

pub async fn list(
    c: &Control,
    x: &Ctx,
    r: ecs::ListAccountSettingsRequest,
) -> ApiResult<ecs::ListAccountSettingsResponse> {
    principal(x, r.principal_arn.as_deref(), false)?;
    let size = wire::page_size(r.max_results, 10, 10)?;
    if r.value.is_some() && r.name.is_none() {
        return Err(invalid("value can only be specified together with name."));
    }
    if let Some(n) = &r.name {
        rules::known(n.as_str()).map_err(from_core)?;
    }
    let (set, _) = records::list::<AccountSettingRecord>(
        c.store.as_ref(),
        &keys::account_settings(x.region()),
    )
    .await?;
    let value_of = |name: &str| {
        set.iter()
            .find(|v| v.value.name == name)
            .map(|v| v.value.value.clone())
    };
    // Effective: every setting, as set or by default; otherwise only
    // those set. In the model's order, so the page token is a position.
    let items: Vec<(String, ecs::Setting)> = RULES
        .iter()
        .enumerate()
        .filter(|(_, rule)| r.name.as_ref().is_none_or(|n| n.as_str() == rule.name))
        .filter_map(|(k, rule)| {
            let value = match value_of(rule.name) {
                Some(v) => v,
                None if r.effective_settings == Some(true) => rule.default.to_string(),
                None => return None,
            };
            if r.value.as_ref().is_some_and(|want| *want != value) {
                return None;
            }
            Some((format!("{k:03}"), setting(x, rule.name, &value)))
        })
        .collect();
    let (page, next) = paginate(items, r.next_token.as_deref(), size)?;
    Ok(ecs::ListAccountSettingsResponse {
        settings: Some(page),
        next_token: next,
    })
}
