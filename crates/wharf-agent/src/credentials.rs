//! The task credentials endpoint, as the ECS agent serves it: a task with a
//! task role has `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/ID`
//! in every container's environment, and `GET
//! http://169.254.170.2/v2/credentials/ID` answers the role's current
//! credentials in the ECS agent's JSON, which the SDKs' container
//! credential provider reads unchanged.
//!
//! The ID is 128 random bits that only the task's own containers are told:
//! a task cannot name another's.
//!
//! Credentials come from the control plane (`GetTaskCredentials`) and are
//! fetched again well before they expire; the entry goes when the task
//! stops, and the control plane revokes the sessions themselves then. The
//! server they are served by is [`crate::endpoint`].

use crate::endpoint::{refusal, rfc3339, Answer, Endpoint};
use axum::http::StatusCode;

/// The variable a task's containers find their credentials' path in.
pub const RELATIVE_URI_ENV: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
/// Where the SDKs send a relative URI.
pub const SDK_BASE: &str = "http://169.254.170.2";
/// The variable that names the whole URI, when the endpoint is elsewhere.
pub const FULL_URI_ENV: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
/// Fetch new credentials once less than this is left of the current ones
/// (SDKs refresh theirs 15 minutes before expiry, so the endpoint must
/// already hold newer ones by then).
pub const REFRESH_BEFORE_MS: i64 = 30 * 60 * 1000;

/// One task's role credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCredentials {
    pub task_arn: String,
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Milliseconds since the epoch.
    pub expiration: i64,
    /// When to fetch new ones, by the agent's own clock.
    pub refresh_at: i64,
}

/// When credentials received at `now` (the agent's clock) that last
/// `lifetime_ms` are to be fetched again: [`REFRESH_BEFORE_MS`] before they
/// expire, or half way for credentials shorter than that.
pub fn refresh_at(now: i64, lifetime_ms: i64) -> i64 {
    let ahead = lifetime_ms
        .saturating_sub(REFRESH_BEFORE_MS)
        .max(lifetime_ms / 2)
        .max(0);
    now.saturating_add(ahead)
}

/// The answer to `GET /v2/credentials…` (`path`).
pub fn answer(endpoint: &Endpoint, path: &str) -> Answer {
    let id = match path.strip_prefix("/v2/credentials") {
        Some("") | Some("/") => "",
        Some(rest) if rest.starts_with('/') && !rest[1..].contains('/') => &rest[1..],
        _ => return refusal(StatusCode::NOT_FOUND, "NotFound", "No such endpoint"),
    };
    if id.is_empty() {
        return refusal(
            StatusCode::BAD_REQUEST,
            "InvalidIdInRequest",
            "CredentialsV2Request: No Credential ID in the request",
        );
    }
    let Some(c) = endpoint.get(id) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "InvalidIdInRequest",
            "CredentialsV2Request: Credentials not found",
        );
    };
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({
            "RoleArn": c.role_arn,
            "AccessKeyId": c.access_key_id,
            "SecretAccessKey": c.secret_access_key,
            "Token": c.session_token,
            "Expiration": expiry(c.expiration),
        })),
    )
}

/// `2026-12-04T01:02:03Z`: expiry times to the second, as the ECS agent
/// writes them.
fn expiry(ms: i64) -> String {
    let secs = u64::try_from(ms.div_euclid(1000)).unwrap_or(0);
    rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(task: &str, expiration: i64) -> TaskCredentials {
        TaskCredentials {
            task_arn: task.into(),
            role_arn: "arn:aws:iam::000000000000:role/app".into(),
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: "token".into(),
            expiration,
            refresh_at: expiration - REFRESH_BEFORE_MS,
        }
    }

    #[test]
    fn answers_in_the_ecs_agent_s_shape() {
        let e = Endpoint::new(None);
        e.put(1, "abc", creds("task/1", 1_764_810_123_000));
        let (status, body) = answer(&e, "/v2/credentials/abc");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.0["AccessKeyId"], "ASIAEXAMPLE");
        assert_eq!(body.0["Token"], "token");
        assert_eq!(body.0["RoleArn"], "arn:aws:iam::000000000000:role/app");
        assert_eq!(body.0["Expiration"], "2025-12-04T01:02:03Z");
        let (status, body) = answer(&e, "/v2/credentials/abd");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body.0["code"], "InvalidIdInRequest");
        let (status, _) = answer(&e, "/v2/credentials/");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        for other in [
            "/v1/metadata",
            "/v2/credentialsabc",
            "/v2/credentials/abc/x",
        ] {
            assert_eq!(answer(&e, other).0, StatusCode::NOT_FOUND, "{other}");
        }
    }

    #[test]
    fn an_agent_drops_only_its_own_tasks_entries() {
        let e = Endpoint::new(None);
        e.put(1, "a", creds("task/1", 0));
        e.put(2, "b", creds("task/2", 0));
        e.retain(1, |_| false);
        assert!(e.get("a").is_none());
        assert!(
            e.get("b").is_some(),
            "another agent's task keeps its credentials"
        );
        assert_eq!(e.id_of("task/2").as_deref(), Some("b"));
    }

    #[test]
    fn credentials_are_fetched_again_half_an_hour_before_they_expire() {
        let e = Endpoint::new(None);
        let now = 1_000_000_000;
        e.put(1, "a", creds("task/1", now + REFRESH_BEFORE_MS + 1));
        assert!(e.fresh("a", "task/1", now));
        assert!(!e.fresh("a", "task/1", now + 1), "due for a refresh");
        assert!(!e.fresh("a", "task/2", now), "an ID is one task's");
        assert!(!e.fresh("b", "task/1", now));
        // Timed by the agent's own clock, from the credentials' lifetime.
        assert_eq!(refresh_at(5_000, 3_600_000), 5_000 + 1_800_000);
        assert_eq!(refresh_at(5_000, 1_000_000), 5_000 + 500_000);
        assert_eq!(refresh_at(i64::MAX, 3_600_000), i64::MAX);
        assert_eq!(refresh_at(5_000, -1), 5_000);
    }
}
