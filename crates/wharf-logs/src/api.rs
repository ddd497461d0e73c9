//! The CloudWatch Logs API (`Logs_20140328`, AWS JSON 1.1) over [`LogStore`]:
//! request validation, pagination tokens and wire shapes. The HTTP server
//! verifies the signature and hands over `(operation, body)`.

use crate::error::{invalid, LogError, LogResult};
use crate::filter::Pattern;
use crate::rules;
use crate::store::{GroupInfo, LogStore, StreamInfo, StreamSelection};
use crate::token::{self, at, Pos};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use wharf_model::logs as m;
use wharf_protocol::AwsError;

/// GetLogEvents and FilterLogEvents: default and largest page.
const MAX_EVENTS_PAGE: i32 = 10_000;
/// DescribeLogGroups and DescribeLogStreams: default and largest page.
const MAX_LIST_PAGE: i32 = 50;
/// FilterLogEvents examines at most this many events per call, then
/// returns a token (as CloudWatch Logs may return a page with few events).
const FILTER_SCAN_BUDGET: usize = 2_000_000;
const MAX_TAGS: usize = 50;
/// CloudWatch Logs' longest filterPattern.
const MAX_FILTER_PATTERN: usize = 1024;

/// Who is calling: the region and account that appear in ARNs.
#[derive(Debug, Clone)]
pub struct Scope {
    pub region: String,
    pub account: String,
}

impl Scope {
    fn group_arn(&self, group: &str) -> String {
        format!(
            "arn:aws:logs:{}:{}:log-group:{group}",
            self.region, self.account
        )
    }

    /// Where the store keeps group `name` of this region: log groups are
    /// regional, and `:` never appears in a group name.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.region)
    }

    /// The group a log group ARN names, if it is of this region (another
    /// region's group is not found here).
    fn group_from_arn(&self, arn: &str) -> LogResult<String> {
        let name = group_from_arn(arn)?;
        if arn.split(':').nth(3) != Some(self.region.as_str()) {
            return Err(LogError::GroupNotFound);
        }
        Ok(self.key(&name))
    }

    /// [`group_of`], as the store keeps it.
    fn group_of(&self, name: Option<String>, identifier: Option<String>) -> LogResult<String> {
        match identifier {
            Some(id) if name.is_none() && id.starts_with("arn:") => self.group_from_arn(&id),
            _ => group_of(name, identifier).map(|n| self.key(&n)),
        }
    }
}

/// A group's name from its store key ([`Scope::key`]).
pub fn name_of(key: &str) -> &str {
    key.split_once(':').map_or(key, |(_, name)| name)
}

/// Runs one operation. The store's work happens on a blocking thread:
/// a commit waits for the disk.
pub async fn dispatch(
    store: &LogStore,
    scope: &Scope,
    now: i64,
    op: &str,
    body: &[u8],
) -> Result<Vec<u8>, AwsError> {
    let (store, scope, op, body) = (store.clone(), scope.clone(), op.to_owned(), body.to_vec());
    tokio::task::spawn_blocking(move || dispatch_blocking(&store, &scope, now, &op, &body))
        .await
        .map_err(|e| AwsError::internal(format!("log request failed: {e}")))?
}

fn dispatch_blocking(
    store: &LogStore,
    scope: &Scope,
    now: i64,
    op: &str,
    body: &[u8],
) -> Result<Vec<u8>, AwsError> {
    let api = Api { store, scope, now };
    match op {
        "CreateLogGroup" => call(body, |r| api.create_log_group(r)),
        "DeleteLogGroup" => call(body, |r: m::DeleteLogGroupRequest| {
            store
                .delete_group(&scope.key(&r.log_group_name))
                .map(|_| Empty {})
        }),
        "DescribeLogGroups" => call(body, |r| api.describe_log_groups(r)),
        "CreateLogStream" => call(body, |r| api.create_log_stream(r)),
        "DeleteLogStream" => call(body, |r: m::DeleteLogStreamRequest| {
            store
                .delete_stream(&scope.key(&r.log_group_name), &r.log_stream_name)
                .map(|_| Empty {})
        }),
        "DescribeLogStreams" => call(body, |r| api.describe_log_streams(r)),
        "PutLogEvents" => call(body, |r| api.put_log_events(r)),
        "GetLogEvents" => call(body, |r| api.get_log_events(r)),
        "FilterLogEvents" => call(body, |r| api.filter_log_events(r)),
        "PutRetentionPolicy" => call(body, |r: m::PutRetentionPolicyRequest| {
            let days = rules::check_retention(r.retention_in_days)?;
            store
                .update_group(&scope.key(&r.log_group_name), |g| {
                    g.retention_days = Some(days);
                    Ok(())
                })
                .map(|_| Empty {})
        }),
        "DeleteRetentionPolicy" => call(body, |r: m::DeleteRetentionPolicyRequest| {
            store
                .update_group(&scope.key(&r.log_group_name), |g| {
                    g.retention_days = None;
                    Ok(())
                })
                .map(|_| Empty {})
        }),
        "TagResource" => call(body, |r: m::TagResourceRequest| {
            api.tag(&scope.group_from_arn(&r.resource_arn)?, r.tags)
        }),
        "TagLogGroup" => call(body, |r: m::TagLogGroupRequest| {
            api.tag(&scope.key(&r.log_group_name), r.tags)
        }),
        "UntagResource" => call(body, |r: m::UntagResourceRequest| {
            api.untag(&scope.group_from_arn(&r.resource_arn)?, r.tag_keys)
        }),
        "UntagLogGroup" => call(body, |r: m::UntagLogGroupRequest| {
            api.untag(&scope.key(&r.log_group_name), r.tags)
        }),
        "ListTagsForResource" => call(body, |r: m::ListTagsForResourceRequest| {
            let g = store.group(&scope.group_from_arn(&r.resource_arn)?)?;
            Ok(m::ListTagsForResourceResponse { tags: Some(g.tags) })
        }),
        "ListTagsLogGroup" => call(body, |r: m::ListTagsLogGroupRequest| {
            let g = store.group(&scope.key(&r.log_group_name))?;
            Ok(m::ListTagsLogGroupResponse { tags: Some(g.tags) })
        }),
        _ if m::OPERATIONS.contains(&op) => Err(AwsError::client(
            "InvalidOperationException",
            format!("Wharf does not implement the CloudWatch Logs operation {op} yet."),
        )),
        _ => Err(AwsError::unknown_operation(&format!(
            "{}.{op}",
            m::TARGET_PREFIX
        ))),
    }
}

#[derive(Serialize)]
struct Empty {}

/// Decodes, runs, encodes; with the errors AWS gives for bad JSON and missing members.
fn call<Req, Resp>(body: &[u8], f: impl FnOnce(Req) -> LogResult<Resp>) -> Result<Vec<u8>, AwsError>
where
    Req: DeserializeOwned,
    Resp: Serialize,
{
    let req = wharf_protocol::json::decode::<Req>(body)?;
    wharf_protocol::json::encode(&f(req)?)
}

fn check_limit(limit: Option<i32>, max: i32) -> LogResult<usize> {
    match limit {
        None => Ok(max as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(invalid(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {max}"
        ))),
    }
}

fn check_group_name(name: &str) -> LogResult<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-/#".contains(c);
    if name.is_empty() || name.len() > 512 || !name.chars().all(ok_char) {
        return Err(invalid(format!(
            "1 validation error detected: Value '{name}' at 'logGroupName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+"
        )));
    }
    Ok(())
}

fn check_stream_name(name: &str) -> LogResult<()> {
    if name.is_empty() || name.len() > 512 || name.contains([':', '*']) {
        return Err(invalid(format!(
            "1 validation error detected: Value '{name}' at 'logStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*]*"
        )));
    }
    Ok(())
}

fn check_tags(tags: &BTreeMap<String, String>) -> LogResult<()> {
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!(
            "A log group can have at most {MAX_TAGS} tags."
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.len() > 128 || v.len() > 256 || k.starts_with("aws:") {
            return Err(invalid(format!("Invalid tag: {k}")));
        }
    }
    Ok(())
}

/// The group name of a log group ARN (`arn:aws:logs:R:A:log-group:NAME`, optionally `:*`).
fn group_from_arn(arn: &str) -> LogResult<String> {
    let name = arn
        .strip_prefix("arn:")
        .and_then(|rest| rest.splitn(5, ':').nth(4))
        .and_then(|res| res.strip_prefix("log-group:"))
        .filter(|_| arn.split(':').nth(2) == Some("logs"))
        .ok_or_else(|| invalid(format!("Invalid resourceArn: {arn}")))?;
    let name = name.strip_suffix(":*").unwrap_or(name);
    if name.contains(':') {
        // A log stream or another resource under the group: not taggable.
        return Err(invalid(format!("Invalid resourceArn: {arn}")));
    }
    Ok(name.to_owned())
}

/// `logGroupName` or `logGroupIdentifier` (a name or an ARN), exactly one.
fn group_of(name: Option<String>, identifier: Option<String>) -> LogResult<String> {
    match (name, identifier) {
        (Some(n), None) => Ok(n),
        (None, Some(id)) if id.starts_with("arn:") => group_from_arn(&id),
        (None, Some(id)) => Ok(id),
        (Some(_), Some(_)) => Err(invalid(
            "LogGroupName and LogGroupIdentifier are mutually exclusive parameters.",
        )),
        (None, None) => Err(invalid(
            "Either LogGroupName or LogGroupIdentifier must be specified.",
        )),
    }
}

struct Api<'a> {
    store: &'a LogStore,
    scope: &'a Scope,
    now: i64,
}

impl Api<'_> {
    fn create_log_group(&self, r: m::CreateLogGroupRequest) -> LogResult<Empty> {
        check_group_name(&r.log_group_name)?;
        let tags = r.tags.unwrap_or_default();
        check_tags(&tags)?;
        self.store
            .create_group(&self.scope.key(&r.log_group_name), self.now, tags)?;
        Ok(Empty {})
    }

    fn log_group(&self, g: GroupInfo) -> m::LogGroup {
        let name = name_of(&g.name).to_string();
        let arn = self.scope.group_arn(&name);
        m::LogGroup {
            log_group_name: Some(name),
            creation_time: Some(g.created),
            retention_in_days: g.retention_days.map(|d| d as i32),
            metric_filter_count: Some(0),
            arn: Some(format!("{arn}:*")),
            log_group_arn: Some(arn),
            stored_bytes: Some(g.stored_bytes as i64),
            log_group_class: Some(m::LogGroupClass::Standard),
            deletion_protection_enabled: Some(false),
            ..Default::default()
        }
    }

    fn describe_log_groups(
        &self,
        r: m::DescribeLogGroupsRequest,
    ) -> LogResult<m::DescribeLogGroupsResponse> {
        let limit = check_limit(r.limit, MAX_LIST_PAGE)?;
        if r.log_group_name_prefix.is_some() && r.log_group_name_pattern.is_some() {
            return Err(invalid(
                "LogGroupNamePrefix and LogGroupNamePattern are mutually exclusive parameters.",
            ));
        }
        let after = r
            .next_token
            .as_deref()
            .map(token::parse_name_token)
            .transpose()?
            .map(|name| self.scope.key(&name));
        let prefix = self.scope.key(&r.log_group_name_prefix.unwrap_or_default());
        let mut groups = match r.log_group_name_pattern {
            // A case-insensitive substring match over every group (groups are few).
            Some(pattern) => {
                let pattern = pattern.to_lowercase();
                let all = self.scope.key("");
                let mut all = self.store.list_groups(&all, after.as_deref(), usize::MAX)?;
                all.retain(|g| name_of(&g.name).to_lowercase().contains(&pattern));
                all.truncate(limit + 1);
                all
            }
            None => self
                .store
                .list_groups(&prefix, after.as_deref(), limit + 1)?,
        };
        let more = groups.len() > limit;
        groups.truncate(limit);
        let next_token = more
            .then(|| groups.last().map(|g| token::name_token(name_of(&g.name))))
            .flatten();
        Ok(m::DescribeLogGroupsResponse {
            log_groups: Some(groups.into_iter().map(|g| self.log_group(g)).collect()),
            next_token,
        })
    }

    fn create_log_stream(&self, r: m::CreateLogStreamRequest) -> LogResult<Empty> {
        check_stream_name(&r.log_stream_name)?;
        self.store.create_stream(
            &self.scope.key(&r.log_group_name),
            &r.log_stream_name,
            self.now,
        )?;
        Ok(Empty {})
    }

    fn log_stream(&self, group: &str, s: StreamInfo) -> m::LogStream {
        m::LogStream {
            arn: Some(format!(
                "{}:log-stream:{}",
                self.scope.group_arn(name_of(group)),
                s.name
            )),
            log_stream_name: Some(s.name),
            creation_time: Some(s.created),
            first_event_timestamp: s.first_event,
            last_event_timestamp: s.last_event,
            last_ingestion_time: s.last_ingestion,
            stored_bytes: Some(s.stored_bytes as i64),
            ..Default::default()
        }
    }

    fn describe_log_streams(
        &self,
        r: m::DescribeLogStreamsRequest,
    ) -> LogResult<m::DescribeLogStreamsResponse> {
        let group = self
            .scope
            .group_of(r.log_group_name, r.log_group_identifier)?;
        let limit = check_limit(r.limit, MAX_LIST_PAGE)?;
        let by_time = match r.order_by {
            None | Some(m::OrderBy::LogStreamName) => false,
            Some(m::OrderBy::LastEventTime) => true,
            Some(m::OrderBy::Unknown(v)) => {
                return Err(invalid(format!(
                    "1 validation error detected: Value '{v}' at 'orderBy' failed to satisfy constraint: Member must satisfy enum value set: [LogStreamName, LastEventTime]"
                )))
            }
        };
        if by_time && r.log_stream_name_prefix.is_some() {
            return Err(invalid(
                "Cannot order by LastEventTime with a logStreamNamePrefix.",
            ));
        }
        let descending = r.descending.unwrap_or(false);
        let after = r
            .next_token
            .as_deref()
            .map(token::parse_name_token)
            .transpose()?;
        let prefix = r.log_stream_name_prefix.unwrap_or_default();
        let mut streams = if !by_time && !descending {
            // The common case reads one page straight from the name index.
            self.store
                .list_streams(&group, &prefix, after.as_deref(), limit + 1)?
        } else {
            // Other orders sort the group's streams; the token is the last name returned.
            let mut all = self.store.list_streams(&group, &prefix, None, usize::MAX)?;
            if by_time {
                all.sort_by(|a, b| {
                    (a.last_event.unwrap_or(i64::MIN), &a.name)
                        .cmp(&(b.last_event.unwrap_or(i64::MIN), &b.name))
                });
            }
            if descending {
                all.reverse();
            }
            let start = match &after {
                Some(a) => all.iter().position(|s| &s.name == a).map_or(0, |i| i + 1),
                None => 0,
            };
            all.into_iter().skip(start).take(limit + 1).collect()
        };
        let more = streams.len() > limit;
        streams.truncate(limit);
        let next_token = more
            .then(|| streams.last().map(|s| token::name_token(&s.name)))
            .flatten();
        Ok(m::DescribeLogStreamsResponse {
            log_streams: Some(
                streams
                    .into_iter()
                    .map(|s| self.log_stream(&group, s))
                    .collect(),
            ),
            next_token,
        })
    }

    fn put_log_events(&self, r: m::PutLogEventsRequest) -> LogResult<m::PutLogEventsResponse> {
        // sequenceToken is accepted and ignored, as CloudWatch Logs now does.
        let out = self.store.put_events(
            &self.scope.key(&r.log_group_name),
            &r.log_stream_name,
            &r.log_events,
            self.now,
        )?;
        Ok(m::PutLogEventsResponse {
            next_sequence_token: Some(format!("{:056}", out.next_seq)),
            rejected_log_events_info: out.rejected,
            rejected_entity_info: None,
        })
    }

    fn get_log_events(&self, r: m::GetLogEventsRequest) -> LogResult<m::GetLogEventsResponse> {
        let group = self
            .scope
            .group_of(r.log_group_name, r.log_group_identifier)?;
        let limit = check_limit(r.limit, MAX_EVENTS_PAGE)?;
        let lo0 = r.start_time.map_or(0, at);
        // endTime is exclusive for GetLogEvents.
        let hi0 = r.end_time.map_or(Pos::MAX, at);
        let token = r
            .next_token
            .as_deref()
            .map(token::parse_stream_token)
            .transpose()?;
        // (lo, hi, read forward?, forward token if empty, backward token if empty)
        let (lo, hi, forward, f_empty, b_empty) = match token {
            Some((true, t)) => (
                lo0.max(t.saturating_add(1)),
                hi0,
                true,
                t,
                t.saturating_add(1),
            ),
            Some((false, t)) => (lo0, hi0.min(t), false, t.saturating_sub(1), t),
            None => (
                lo0,
                hi0,
                r.start_from_head.unwrap_or(false),
                lo0.saturating_sub(1),
                lo0,
            ),
        };
        let events = self
            .store
            .read_stream(&group, &r.log_stream_name, lo, hi, forward, limit)?;
        let f = events.last().map_or(f_empty, |e| e.pos());
        let b = events.first().map_or(b_empty, |e| e.pos());
        Ok(m::GetLogEventsResponse {
            events: Some(
                events
                    .into_iter()
                    .map(|e| m::OutputLogEvent {
                        timestamp: Some(e.timestamp),
                        message: Some(e.message),
                        ingestion_time: Some(e.ingestion_time),
                    })
                    .collect(),
            ),
            next_forward_token: Some(token::stream_token(true, f)),
            next_backward_token: Some(token::stream_token(false, b)),
        })
    }

    fn filter_log_events(
        &self,
        r: m::FilterLogEventsRequest,
    ) -> LogResult<m::FilterLogEventsResponse> {
        let group = self
            .scope
            .group_of(r.log_group_name, r.log_group_identifier)?;
        let limit = check_limit(r.limit, MAX_EVENTS_PAGE)?;
        let selection = match (r.log_stream_names, r.log_stream_name_prefix) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "You cannot specify both LogStreamNames and LogStreamNamePrefix.",
                ))
            }
            (Some(names), None) => StreamSelection::Names(names),
            (None, Some(p)) => StreamSelection::Prefix(p),
            (None, None) => StreamSelection::All,
        };
        let source = r.filter_pattern.as_deref().unwrap_or("");
        if source.chars().count() > MAX_FILTER_PATTERN {
            return Err(invalid(format!(
                "1 validation error detected: Value at 'filterPattern' failed to satisfy constraint: Member must have length less than or equal to {MAX_FILTER_PATTERN}"
            )));
        }
        let pattern =
            Pattern::parse(source).map_err(|e| LogError::InvalidParameter(e.to_string()))?;
        let mut lo = r.start_time.map_or(0, at);
        // endTime is inclusive for FilterLogEvents.
        let hi = r.end_time.map_or(Pos::MAX, |e| at(e.saturating_add(1)));
        if let Some(t) = r.next_token.as_deref() {
            lo = lo.max(token::parse_filter_token(t)?.saturating_add(1));
        }
        let page = self.store.filter(
            &group,
            &selection,
            lo,
            hi,
            &pattern,
            limit,
            FILTER_SCAN_BUDGET,
        )?;
        Ok(m::FilterLogEventsResponse {
            events: Some(
                page.events
                    .into_iter()
                    .map(|f| m::FilteredLogEvent {
                        event_id: Some(format!("{:056}", f.event.pos())),
                        log_stream_name: Some(f.stream.to_string()),
                        timestamp: Some(f.event.timestamp),
                        message: Some(f.event.message),
                        ingestion_time: Some(f.event.ingestion_time),
                    })
                    .collect(),
            ),
            searched_log_streams: None,
            next_token: page.next.map(token::filter_token),
        })
    }

    fn tag(&self, group: &str, tags: BTreeMap<String, String>) -> LogResult<Empty> {
        check_tags(&tags)?;
        self.store.update_group(group, |g| {
            let mut merged = g.tags.clone();
            merged.extend(tags);
            check_tags(&merged)?;
            g.tags = merged;
            Ok(())
        })?;
        Ok(Empty {})
    }

    fn untag(&self, group: &str, keys: Vec<String>) -> LogResult<Empty> {
        self.store.update_group(group, |g| {
            for k in &keys {
                g.tags.remove(k);
            }
            Ok(())
        })?;
        Ok(Empty {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert_eq!(
            group_from_arn("arn:aws:logs:eu-west-1:000000000000:log-group:/ecs/web").unwrap(),
            "/ecs/web"
        );
        assert_eq!(
            group_from_arn("arn:aws:logs:eu-west-1:000000000000:log-group:a:*").unwrap(),
            "a"
        );
        assert!(group_from_arn("arn:aws:ecs:eu-west-1:0:log-group:a").is_err());
        assert!(group_from_arn("arn:aws:logs:eu-west-1:0:log-group:a:log-stream:s").is_err());
        assert!(group_from_arn("nonsense").is_err());
    }
}
