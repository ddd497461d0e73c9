//! What a listener does with a request: its rules sorted by priority, each
//! condition a matcher, the first rule whose conditions all hold wins, the
//! default actions last. Built once per change of the store, read by every
//! request without locks.

use crate::records::{ListenerRecord, RuleRecord};
use crate::validate;
use std::net::IpAddr;
use wharf_model::elbv2 as m;

/// What a request is matched on.
pub struct RequestView<'a> {
    pub method: &'a str,
    /// The host without its port.
    pub host: &'a str,
    pub path: &'a str,
    /// The raw query string (without `?`).
    pub query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub source: IpAddr,
}

/// One condition, parsed for matching.
#[derive(Debug, Clone)]
enum Condition {
    Host(Vec<String>),
    Path(Vec<String>),
    Header(http::HeaderName, Vec<String>),
    Method(Vec<String>),
    /// (key or any, value) pairs.
    Query(Vec<(Option<String>, String)>),
    Source(Vec<(IpAddr, u8)>),
}

impl Condition {
    fn parse(c: &m::RuleCondition) -> Option<Condition> {
        let values = validate::condition_values(c).ok()?;
        Some(match c.field.as_deref()? {
            "host-header" => Condition::Host(values),
            "path-pattern" => Condition::Path(values),
            "http-header" => {
                let name = c.http_header_config.as_ref()?.http_header_name.as_deref()?;
                Condition::Header(http::HeaderName::from_bytes(name.as_bytes()).ok()?, values)
            }
            "http-request-method" => Condition::Method(values),
            "query-string" => Condition::Query(
                c.query_string_config
                    .as_ref()?
                    .values
                    .iter()
                    .flatten()
                    .map(|p| {
                        (
                            p.key.clone().filter(|k| !k.is_empty()),
                            p.value.clone().unwrap_or_default(),
                        )
                    })
                    .collect(),
            ),
            "source-ip" => Condition::Source(
                values
                    .iter()
                    .filter_map(|v| validate::cidr(v).ok())
                    .collect(),
            ),
            _ => return None,
        })
    }

    fn matches(&self, r: &RequestView<'_>) -> bool {
        match self {
            Condition::Host(v) => v.iter().any(|p| validate::wildcard(p, r.host, true)),
            Condition::Path(v) => v.iter().any(|p| validate::wildcard(p, r.path, false)),
            Condition::Header(name, v) => r.headers.get_all(name).iter().any(|h| {
                h.to_str()
                    .is_ok_and(|h| v.iter().any(|p| validate::wildcard(p, h, true)))
            }),
            Condition::Method(v) => v.iter().any(|m| m == r.method),
            Condition::Query(pairs) => {
                let given: Vec<(String, String)> = form_pairs(r.query);
                pairs.iter().any(|(k, v)| {
                    given.iter().any(|(gk, gv)| {
                        k.as_ref().is_none_or(|k| validate::wildcard(k, gk, true))
                            && validate::wildcard(v, gv, true)
                    })
                })
            }
            Condition::Source(nets) => nets
                .iter()
                .any(|(net, len)| validate::in_cidr(r.source, *net, *len)),
        }
    }
}

fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A rule ready to match.
#[derive(Debug, Clone)]
pub struct Route {
    pub priority: i32,
    conditions: Vec<Condition>,
    pub action: m::Action,
}

/// A listener's routing table.
#[derive(Debug, Clone)]
pub struct Table {
    routes: Vec<Route>,
    default: m::Action,
}

impl Table {
    pub fn build(listener: &ListenerRecord, rules: &[&RuleRecord]) -> Option<Table> {
        let mut routes: Vec<Route> = rules
            .iter()
            .filter_map(|r| {
                Some(Route {
                    priority: r.priority,
                    conditions: r
                        .conditions
                        .iter()
                        .map(Condition::parse)
                        .collect::<Option<_>>()?,
                    action: r.actions.first()?.clone(),
                })
            })
            .collect();
        routes.sort_by_key(|r| r.priority);
        Some(Table {
            routes,
            default: listener.default_actions.first()?.clone(),
        })
    }

    /// The action for a request: the first rule by priority whose every
    /// condition holds, else the default.
    pub fn route(&self, r: &RequestView<'_>) -> &m::Action {
        self.routes
            .iter()
            .find(|route| route.conditions.iter().all(|c| c.matches(r)))
            .map(|route| &route.action)
            .unwrap_or(&self.default)
    }

    /// Every action of the table, for the target groups it needs.
    pub fn actions(&self) -> impl Iterator<Item = &m::Action> {
        self.routes.iter().map(|r| &r.action).chain([&self.default])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(tg: &str) -> m::Action {
        m::Action {
            r#type: m::ActionTypeEnum::Forward,
            target_group_arn: Some(tg.into()),
            ..Default::default()
        }
    }

    fn cond(field: &str, values: &[&str]) -> m::RuleCondition {
        m::RuleCondition {
            field: Some(field.into()),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
            ..Default::default()
        }
    }

    fn listener() -> ListenerRecord {
        ListenerRecord {
            arn: "l".into(),
            id: "1".into(),
            load_balancer_arn: "lb".into(),
            load_balancer: "lb".into(),
            port: 80,
            protocol: "HTTP".into(),
            ssl_policy: None,
            certificates: vec![],
            alpn_policy: vec![],
            default_actions: vec![forward("default")],
            attributes: Default::default(),
            tags: Default::default(),
        }
    }

    fn rule(priority: i32, conditions: Vec<m::RuleCondition>, tg: &str) -> RuleRecord {
        RuleRecord {
            arn: format!("r{priority}"),
            id: priority.to_string(),
            listener_arn: "l".into(),
            priority,
            conditions,
            actions: vec![forward(tg)],
            tags: Default::default(),
        }
    }

    fn route<'a>(t: &'a Table, method: &str, host: &str, path: &str, query: &str) -> &'a str {
        let headers = http::HeaderMap::new();
        t.route(&RequestView {
            method,
            host,
            path,
            query,
            headers: &headers,
            source: "10.0.0.1".parse().unwrap(),
        })
        .target_group_arn
        .as_deref()
        .unwrap()
    }

    #[test]
    fn lowest_priority_that_matches_wins() {
        let r1 = rule(20, vec![cond("path-pattern", &["/api/*"])], "api");
        let r2 = rule(10, vec![cond("path-pattern", &["/api/admin*"])], "admin");
        let mut q = cond("query-string", &[]);
        q.values = None;
        q.query_string_config = Some(m::QueryStringConditionConfig {
            values: Some(vec![m::QueryStringKeyValuePair {
                key: Some("v".into()),
                value: Some("2".into()),
            }]),
        });
        let r3 = rule(30, vec![q], "v2");
        let mut method = cond("http-request-method", &[]);
        method.values = None;
        method.http_request_method_config = Some(m::HttpRequestMethodConditionConfig {
            values: Some(vec!["POST".into()]),
        });
        let r4 = rule(
            40,
            vec![cond("host-header", &["*.example.com"]), method],
            "posts",
        );
        let t = Table::build(&listener(), &[&r1, &r2, &r3, &r4]).unwrap();
        assert_eq!(route(&t, "GET", "x", "/api/users", ""), "api");
        assert_eq!(route(&t, "GET", "x", "/api/admin/1", ""), "admin");
        assert_eq!(route(&t, "GET", "x", "/other", "a=1&v=2"), "v2");
        assert_eq!(route(&t, "GET", "x", "/other", "v=3"), "default");
        assert_eq!(route(&t, "POST", "A.Example.COM", "/", ""), "posts");
        assert_eq!(route(&t, "GET", "a.example.com", "/", ""), "default");
    }

    #[test]
    fn decodes_query_values() {
        assert_eq!(
            form_pairs("a=b%20c&d+e=%zz&f"),
            vec![
                ("a".to_string(), "b c".to_string()),
                ("d e".to_string(), "%zz".to_string()),
                ("f".to_string(), String::new())
            ]
        );
    }
}
