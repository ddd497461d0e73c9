//! ELBv2's input rules: names, tags, health-check settings, matchers,
//! actions, rule conditions and attributes. Everything a request carries is
//! checked here or refused: nothing is stored that the data plane would not
//! honour.

use crate::records::{Attributes, Tags};
use std::net::IpAddr;
use wharf_model::elbv2 as m;
use wharf_protocol::AwsError;

pub fn validation(msg: impl Into<String>) -> AwsError {
    AwsError::client("ValidationError", msg)
}

pub fn invalid_config(msg: impl Into<String>) -> AwsError {
    AwsError::client("InvalidConfigurationRequest", msg)
}

pub fn not_supported(what: &str) -> AwsError {
    AwsError::client(
        "OperationNotPermitted",
        format!("{what} is not supported by Wharf's load balancer."),
    )
}

/// Load balancer and target group names: 1-32 alphanumerics and hyphens,
/// no hyphen at either end.
pub fn name(kind: &str, name: &str) -> Result<(), AwsError> {
    if name.is_empty() || name.len() > 32 {
        return Err(validation(format!(
            "{kind} name cannot be longer than 32 characters"
        )));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(validation(format!(
            "{kind} name '{name}' can only contain characters that are alphanumeric characters or hyphens(-)"
        )));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(validation(format!(
            "{kind} name '{name}' cannot begin or end with a hyphen"
        )));
    }
    if kind == "LoadBalancer" && name.starts_with("internal-") {
        return Err(validation(format!(
            "Load balancer name '{name}' cannot begin with 'internal-'"
        )));
    }
    Ok(())
}

/// Tags as ELB limits them: at most 50 per resource, unique keys of 1-128
/// characters not starting with `aws:`, values up to 256.
pub fn tags(given: &[m::Tag]) -> Result<Tags, AwsError> {
    let mut out = Tags::new();
    for t in given {
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return Err(validation("Tag keys must be 1 to 128 characters long"));
        }
        if t.key.starts_with("aws:") {
            return Err(validation(format!(
                "Tag key '{}' cannot start with 'aws:'",
                t.key
            )));
        }
        let value = t.value.clone().unwrap_or_default();
        if value.chars().count() > 256 {
            return Err(validation("Tag values can be at most 256 characters long"));
        }
        if out.insert(t.key.clone(), value).is_some() {
            return Err(AwsError::client(
                "DuplicateTagKeys",
                format!("Tag key '{}' is duplicated", t.key),
            ));
        }
    }
    check_tag_count(&out)?;
    Ok(out)
}

pub fn check_tag_count(tags: &Tags) -> Result<(), AwsError> {
    if tags.len() > 50 {
        return Err(AwsError::client(
            "TooManyTags",
            "A resource can have at most 50 tags",
        ));
    }
    Ok(())
}

pub fn tags_to_wire(tags: &Tags) -> Vec<m::Tag> {
    tags.iter()
        .map(|(k, v)| m::Tag {
            key: k.clone(),
            value: Some(v.clone()),
        })
        .collect()
}

pub fn port(port: i32) -> Result<i32, AwsError> {
    if !(1..=65535).contains(&port) {
        return Err(validation(format!(
            "Port '{port}' must be between 1 and 65535"
        )));
    }
    Ok(port)
}

/// A matcher's HTTP codes: `200`, `200,202`, `200-299`, each 200-499.
pub fn http_codes(spec: &str) -> Result<Vec<(u16, u16)>, AwsError> {
    let bad = || {
        validation(format!(
            "Health check matcher HTTP code '{spec}' must be a value between 200 and 499, \
             a comma-separated list of values, or a range of values"
        ))
    };
    let mut out = Vec::new();
    for part in spec.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part.trim(), part.trim()),
        };
        let lo: u16 = lo.parse().map_err(|_| bad())?;
        let hi: u16 = hi.parse().map_err(|_| bad())?;
        if !(200..=499).contains(&lo) || !(200..=499).contains(&hi) || lo > hi {
            return Err(bad());
        }
        out.push((lo, hi));
    }
    Ok(out)
}

/// Whether `code` is one of a matcher's codes.
pub fn matches_code(spec: &str, code: u16) -> bool {
    http_codes(spec)
        .map(|ranges| ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&code)))
        .unwrap_or(false)
}

/// A source-ip condition's CIDR: (network, prefix length).
pub fn cidr(spec: &str) -> Result<(IpAddr, u8), AwsError> {
    let bad = || validation(format!("'{spec}' is not a valid CIDR block"));
    let (addr, len) = spec.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad());
    }
    Ok((addr, len))
}

/// Whether `ip` lies in the network `net/len`.
pub fn in_cidr(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    let ip = match (ip, net) {
        (IpAddr::V6(v6), IpAddr::V4(_)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        _ => ip,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// ALB's wildcard match: `*` any run of characters, `?` one character;
/// case-insensitive for hosts, case-sensitive for paths.
pub fn wildcard(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let norm = |s: &str| -> Vec<char> {
        if case_insensitive {
            s.to_ascii_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let (p, t) = (norm(pattern), norm(text));
    // Iterative glob with one backtrack point: linear for ALB's patterns.
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Validates a rule's conditions (up to five, host-header and
/// path-pattern at most once each, each value within ALB's limits).
pub fn conditions(conds: &[m::RuleCondition]) -> Result<(), AwsError> {
    if conds.len() > 5 {
        return Err(AwsError::client(
            "TooManyConditions",
            "A rule can have at most 5 conditions",
        ));
    }
    let mut seen = Vec::new();
    let mut total_values = 0usize;
    for c in conds {
        let field = c
            .field
            .as_deref()
            .ok_or_else(|| validation("A condition must have a field"))?;
        if c.regex_values.is_some()
            || c.host_header_config
                .as_ref()
                .is_some_and(|h| h.regex_values.is_some())
            || c.path_pattern_config
                .as_ref()
                .is_some_and(|h| h.regex_values.is_some())
            || c.http_header_config
                .as_ref()
                .is_some_and(|h| h.regex_values.is_some())
        {
            return Err(not_supported("Regular-expression conditions (RegexValues)"));
        }
        if matches!(field, "host-header" | "path-pattern") && seen.contains(&field) {
            return Err(validation(format!(
                "A rule can have only one '{field}' condition"
            )));
        }
        seen.push(field);
        let values = condition_values(c)?;
        if values.is_empty() {
            return Err(validation(format!(
                "A '{field}' condition must have at least one value"
            )));
        }
        total_values += values.len();
        for v in &values {
            let bad_length = v.is_empty() || v.chars().count() > 128;
            let bad_method = v.len() > 40
                || !v
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c == '-');
            match field {
                "host-header" | "path-pattern" if bad_length => {
                    return Err(validation(format!(
                        "Condition value '{v}' must be 1 to 128 characters long"
                    )));
                }
                "http-request-method" if bad_length || bad_method => {
                    return Err(validation(format!(
                        "HTTP request method '{v}' may contain only A-Z, hyphens and underscores"
                    )));
                }
                "source-ip" => {
                    cidr(v)?;
                }
                _ => {}
            }
        }
        match field {
            "host-header" | "path-pattern" | "http-request-method" | "source-ip" => {}
            "http-header" => {
                let name = c
                    .http_header_config
                    .as_ref()
                    .and_then(|h| h.http_header_name.as_deref())
                    .unwrap_or_default();
                if name.is_empty()
                    || name.len() > 40
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                {
                    return Err(validation(format!(
                        "HTTP header name '{name}' is not valid"
                    )));
                }
            }
            "query-string" => {}
            other => {
                return Err(validation(format!(
                    "Condition field '{other}' must be one of [http-header, http-request-method, \
                     host-header, path-pattern, query-string, source-ip]"
                )))
            }
        }
    }
    if total_values > 5 {
        return Err(AwsError::client(
            "TooManyConditionValues",
            "A rule can have at most 5 condition values",
        ));
    }
    Ok(())
}

/// A condition's values, from its `*Config` or the legacy `Values`
/// (query-string pairs as `key=value`).
pub fn condition_values(c: &m::RuleCondition) -> Result<Vec<String>, AwsError> {
    let field = c.field.as_deref().unwrap_or_default();
    let config: Option<Vec<String>> = match field {
        "host-header" => c.host_header_config.as_ref().and_then(|h| h.values.clone()),
        "path-pattern" => c
            .path_pattern_config
            .as_ref()
            .and_then(|h| h.values.clone()),
        "http-header" => c.http_header_config.as_ref().and_then(|h| h.values.clone()),
        "http-request-method" => c
            .http_request_method_config
            .as_ref()
            .and_then(|h| h.values.clone()),
        "source-ip" => c.source_ip_config.as_ref().and_then(|h| h.values.clone()),
        "query-string" => c.query_string_config.as_ref().and_then(|q| {
            q.values.as_ref().map(|pairs| {
                pairs
                    .iter()
                    .map(|p| {
                        format!(
                            "{}={}",
                            p.key.clone().unwrap_or_default(),
                            p.value.clone().unwrap_or_default()
                        )
                    })
                    .collect()
            })
        }),
        _ => None,
    };
    match (config, &c.values) {
        (Some(_), Some(legacy)) if !legacy.is_empty() => Err(validation(
            "A condition cannot have both 'Values' and a condition configuration",
        )),
        (Some(v), _) => Ok(v),
        (None, Some(v)) if matches!(field, "host-header" | "path-pattern") => Ok(v.clone()),
        (None, Some(_)) => Err(validation(format!(
            "A '{field}' condition must be given in its configuration ({field} config)"
        ))),
        (None, None) => Ok(Vec::new()),
    }
}

/// Validates actions: at most one of each kind, exactly one final
/// (forward, redirect or fixed-response) and it last by `Order`.
/// `target_groups` is called for every target group ARN an action names.
pub fn actions(
    actions: &[m::Action],
    network: bool,
    mut target_group: impl FnMut(&str) -> Result<(), AwsError>,
) -> Result<(), AwsError> {
    if actions.is_empty() {
        return Err(validation("At least one action must be specified"));
    }
    if actions.len() > 1 {
        return Err(AwsError::client(
            "TooManyActions",
            "Wharf's load balancer supports one action per rule (forward, redirect or fixed-response)",
        ));
    }
    let a = &actions[0];
    if let Some(order) = a.order {
        if !(1..=50000).contains(&order) {
            return Err(validation("Action order must be between 1 and 50000"));
        }
    }
    let present = [
        a.target_group_arn.is_some() || a.forward_config.is_some(),
        a.redirect_config.is_some(),
        a.fixed_response_config.is_some(),
    ];
    let kind = a.r#type.as_str();
    match kind {
        "forward" => {
            if present[1] || present[2] {
                return Err(validation(
                    "A forward action cannot have a redirect or fixed-response configuration",
                ));
            }
            let groups = forward_groups(a)?;
            for (arn, _) in &groups {
                target_group(arn)?;
            }
            if let Some(fc) = &a.forward_config {
                if let Some(s) = &fc.target_group_stickiness_config {
                    if let Some(d) = s.duration_seconds {
                        if !(1..=604_800).contains(&d) {
                            return Err(validation(
                                "Target group stickiness duration must be between 1 and 604800 seconds",
                            ));
                        }
                    }
                }
            }
        }
        "redirect" | "fixed-response" if network => {
            return Err(invalid_config(format!(
                "Action type '{kind}' is not supported on a network load balancer"
            )))
        }
        "redirect" => {
            if present[0] || present[2] {
                return Err(validation(
                    "A redirect action takes only a redirect configuration",
                ));
            }
            let r = a.redirect_config.as_ref().ok_or_else(|| {
                validation("A redirect action must have a redirect configuration")
            })?;
            if !matches!(r.status_code.as_str(), "HTTP_301" | "HTTP_302") {
                return Err(validation(
                    "Redirect status code must be HTTP_301 or HTTP_302",
                ));
            }
            if let Some(p) = &r.protocol {
                if !matches!(p.as_str(), "HTTP" | "HTTPS" | "#{protocol}") {
                    return Err(validation(
                        "Redirect protocol must be HTTP, HTTPS or #{protocol}",
                    ));
                }
            }
            if let Some(path) = &r.path {
                if !path.starts_with('/') {
                    return Err(validation("Redirect path must start with a '/'"));
                }
            }
            if let Some(port) = &r.port {
                if port != "#{port}" && port.parse::<u16>().ok().filter(|p| *p > 0).is_none() {
                    return Err(validation("Redirect port must be 1-65535 or #{port}"));
                }
            }
        }
        "fixed-response" => {
            if present[0] || present[1] {
                return Err(validation(
                    "A fixed-response action takes only a fixed-response configuration",
                ));
            }
            let f = a.fixed_response_config.as_ref().ok_or_else(|| {
                validation("A fixed-response action must have a fixed-response configuration")
            })?;
            let code = &f.status_code;
            let ok = code.len() == 3
                && code.bytes().all(|b| b.is_ascii_digit())
                && matches!(code.as_bytes()[0], b'2' | b'4' | b'5');
            if !ok {
                return Err(validation(format!(
                    "Fixed-response status code '{code}' must be 2XX, 4XX or 5XX"
                )));
            }
            if let Some(ct) = &f.content_type {
                if !matches!(
                    ct.as_str(),
                    "text/plain"
                        | "text/css"
                        | "text/html"
                        | "application/javascript"
                        | "application/json"
                ) {
                    return Err(validation(format!(
                        "Fixed-response content type '{ct}' must be one of text/plain, text/css, \
                         text/html, application/javascript, application/json"
                    )));
                }
            }
            if f.message_body.as_ref().is_some_and(|b| b.len() > 1024) {
                return Err(validation(
                    "Fixed-response message body can be at most 1024 characters",
                ));
            }
        }
        other => {
            return Err(not_supported(&format!("Action type '{other}'")));
        }
    }
    if network && kind != "forward" {
        return Err(invalid_config("A network load balancer can only forward"));
    }
    Ok(())
}

/// The (target group ARN, weight) pairs a forward action sends to.
pub fn forward_groups(a: &m::Action) -> Result<Vec<(String, u32)>, AwsError> {
    let mut out: Vec<(String, u32)> = Vec::new();
    if let Some(fc) = &a.forward_config {
        for t in fc.target_groups.iter().flatten() {
            let arn = t
                .target_group_arn
                .clone()
                .ok_or_else(|| validation("A forward target group must have an ARN"))?;
            let weight = t.weight.unwrap_or(1);
            if !(0..=999).contains(&weight) {
                return Err(validation("Target group weight must be between 0 and 999"));
            }
            if out.iter().any(|(a, _)| *a == arn) {
                return Err(validation(format!(
                    "Target group '{arn}' appears more than once in the forward action"
                )));
            }
            out.push((arn, weight as u32));
        }
    }
    if let Some(arn) = &a.target_group_arn {
        match out.as_slice() {
            [] => out.push((arn.clone(), 1)),
            [(only, _)] if only == arn => {}
            _ => {
                return Err(validation(
                    "TargetGroupArn and ForwardConfig must name the same single target group",
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(validation("A forward action must name a target group"));
    }
    if out.len() > 5 {
        return Err(AwsError::client(
            "TooManyTargetGroups",
            "A forward action can have at most 5 target groups",
        ));
    }
    Ok(out)
}

/// The TLS policies an HTTPS listener may name, by the protocol versions
/// each allows, which the listener then offers (rustls has TLS 1.2 and 1.3).
pub const SSL_POLICIES: &[(&str, &[&str])] = &[
    ("ELBSecurityPolicy-2016-08", &["TLSv1.2"]),
    (
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
        &["TLSv1.2", "TLSv1.3"],
    ),
    ("ELBSecurityPolicy-TLS13-1-3-2021-06", &["TLSv1.3"]),
    ("ELBSecurityPolicy-TLS-1-2-2017-01", &["TLSv1.2"]),
    ("ELBSecurityPolicy-FS-1-2-Res-2020-10", &["TLSv1.2"]),
];

/// The protocol versions of a TLS policy, if Wharf knows it.
pub fn ssl_policy_versions(name: &str) -> Option<&'static [&'static str]> {
    SSL_POLICIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
}

/// An attribute Wharf knows: its default, and whether a value is one the
/// data plane honours (`Err` says why not).
pub struct AttributeSpec {
    pub key: &'static str,
    pub default: &'static str,
    pub check: fn(&str) -> Result<(), String>,
}

fn bool_value(v: &str) -> Result<(), String> {
    matches!(v, "true" | "false")
        .then_some(())
        .ok_or_else(|| "must be true or false".into())
}

fn only(default: &'static str) -> impl Fn(&str) -> Result<(), String> {
    move |v: &str| {
        (v == default)
            .then_some(())
            .ok_or_else(|| format!("only '{default}' is supported by Wharf"))
    }
}

fn int_in(v: &str, lo: i64, hi: i64) -> Result<(), String> {
    match v.parse::<i64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(()),
        _ => Err(format!("must be an integer from {lo} to {hi}")),
    }
}

fn r#false(v: &str) -> Result<(), String> {
    only("false")(v)
}

pub const TARGET_GROUP_ATTRIBUTES: &[AttributeSpec] = &[
    AttributeSpec {
        key: "deregistration_delay.timeout_seconds",
        default: "300",
        check: |v| int_in(v, 0, 3600),
    },
    AttributeSpec {
        key: "stickiness.enabled",
        default: "false",
        check: bool_value,
    },
    AttributeSpec {
        key: "stickiness.type",
        default: "lb_cookie",
        check: |v| {
            matches!(v, "lb_cookie")
                .then_some(())
                .ok_or_else(|| "only lb_cookie stickiness is supported by Wharf".into())
        },
    },
    AttributeSpec {
        key: "stickiness.lb_cookie.duration_seconds",
        default: "86400",
        check: |v| int_in(v, 1, 604_800),
    },
    AttributeSpec {
        key: "stickiness.app_cookie.cookie_name",
        default: "",
        // app_cookie stickiness is refused (stickiness.type), so its
        // settings can only keep their defaults.
        check: |v| only("")(v),
    },
    AttributeSpec {
        key: "stickiness.app_cookie.duration_seconds",
        default: "86400",
        check: |v| only("86400")(v),
    },
    AttributeSpec {
        key: "slow_start.duration_seconds",
        default: "0",
        check: |v| {
            if v == "0" {
                Ok(())
            } else {
                int_in(v, 30, 900)
            }
        },
    },
    AttributeSpec {
        key: "load_balancing.algorithm.type",
        default: "round_robin",
        check: |v| {
            matches!(v, "round_robin" | "least_outstanding_requests")
                .then_some(())
                .ok_or_else(|| "must be round_robin or least_outstanding_requests".into())
        },
    },
    AttributeSpec {
        key: "load_balancing.algorithm.anomaly_mitigation",
        default: "off",
        check: |v| only("off")(v),
    },
    AttributeSpec {
        key: "load_balancing.cross_zone.enabled",
        default: "use_load_balancer_configuration",
        check: |v| {
            matches!(v, "use_load_balancer_configuration" | "true")
                .then_some(())
                .ok_or_else(|| "Wharf's load balancer always balances across zones".into())
        },
    },
    AttributeSpec {
        key: "lambda.multi_value_headers.enabled",
        default: "false",
        check: r#false,
    },
    AttributeSpec {
        key: "proxy_protocol_v2.enabled",
        default: "false",
        check: r#false,
    },
    AttributeSpec {
        key: "preserve_client_ip.enabled",
        default: "false",
        check: r#false,
    },
    AttributeSpec {
        key: "deregistration_delay.connection_termination.enabled",
        default: "false",
        check: r#false,
    },
];

pub const LOAD_BALANCER_ATTRIBUTES: &[AttributeSpec] = &[
    AttributeSpec {
        key: "deletion_protection.enabled",
        default: "false",
        check: bool_value,
    },
    AttributeSpec {
        key: "idle_timeout.timeout_seconds",
        default: "60",
        check: |v| int_in(v, 1, 4000),
    },
    AttributeSpec {
        key: "routing.http2.enabled",
        default: "true",
        check: bool_value,
    },
    AttributeSpec {
        key: "access_logs.s3.enabled",
        default: "false",
        check: r#false,
    },
    AttributeSpec {
        key: "access_logs.s3.bucket",
        default: "",
        check: |v| only("")(v),
    },
    AttributeSpec {
        key: "access_logs.s3.prefix",
        default: "",
        check: |v| only("")(v),
    },
    AttributeSpec {
        key: "routing.http.drop_invalid_header_fields.enabled",
        default: "false",
        check: r#false,
    },
    AttributeSpec {
        key: "routing.http.xff_client_port.enabled",
        default: "false",
        check: bool_value,
    },
    AttributeSpec {
        key: "routing.http.xff_header_processing.mode",
        default: "append",
        check: |v| {
            matches!(v, "append" | "preserve" | "remove")
                .then_some(())
                .ok_or_else(|| "must be append, preserve or remove".into())
        },
    },
    AttributeSpec {
        key: "routing.http.preserve_host_header.enabled",
        default: "false",
        check: bool_value,
    },
    AttributeSpec {
        key: "routing.http.x_amzn_tls_version_and_cipher_suite.enabled",
        default: "false",
        check: r#false,
    },
    AttributeSpec {
        key: "routing.http.desync_mitigation_mode",
        default: "defensive",
        check: |v| only("defensive")(v),
    },
    AttributeSpec {
        key: "waf.fail_open.enabled",
        default: "false",
        check: r#false,
    },
    AttributeSpec {
        key: "load_balancing.cross_zone.enabled",
        default: "true",
        check: |v| only("true")(v),
    },
    AttributeSpec {
        key: "client_keep_alive.seconds",
        default: "3600",
        // Connections are closed only when idle (idle_timeout), never by age.
        check: |v| only("3600")(v),
    },
];

/// The defaults of every attribute in `specs`.
pub fn default_attributes(specs: &[AttributeSpec]) -> Attributes {
    specs
        .iter()
        .map(|s| (s.key.to_owned(), s.default.to_owned()))
        .collect()
}

/// Applies `changes` to `attrs`, refusing an unknown key or a value Wharf
/// would not honour; nothing is changed unless every change is valid.
pub fn apply_attributes(
    kind: &str,
    specs: &[AttributeSpec],
    attrs: &mut Attributes,
    changes: &[(Option<String>, Option<String>)],
) -> Result<(), AwsError> {
    let mut next = attrs.clone();
    for (key, value) in changes {
        let key = key
            .as_deref()
            .ok_or_else(|| validation("An attribute must have a key"))?;
        let value = value.clone().unwrap_or_default();
        let spec = specs
            .iter()
            .find(|s| s.key == key)
            .ok_or_else(|| validation(format!("{kind} attribute key '{key}' is not recognized")))?;
        (spec.check)(&value).map_err(|why| {
            validation(format!(
                "{kind} attribute '{key}' value '{value}' is not valid: {why}"
            ))
        })?;
        next.insert(key.to_owned(), value);
    }
    *attrs = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("LoadBalancer", "web-1").is_ok());
        assert!(name("LoadBalancer", "-web").is_err());
        assert!(name("LoadBalancer", "internal-web").is_err());
        assert!(name("TargetGroup", "internal-web").is_ok());
        assert!(name("TargetGroup", &"a".repeat(33)).is_err());
        assert!(name("TargetGroup", "a_b").is_err());
    }

    #[test]
    fn matcher_codes() {
        assert!(matches_code("200", 200));
        assert!(!matches_code("200", 201));
        assert!(matches_code("200,202", 202));
        assert!(matches_code("200-299", 250));
        assert!(!matches_code("200-299", 301));
        assert!(http_codes("100").is_err());
        assert!(http_codes("300-200").is_err());
        assert!(http_codes("abc").is_err());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("/api/*", "/api/users", false));
        assert!(!wildcard("/api/*", "/API/users", false));
        assert!(wildcard("*.example.com", "A.Example.com", true));
        assert!(wildcard("/img/?.png", "/img/a.png", false));
        assert!(!wildcard("/img/?.png", "/img/ab.png", false));
        assert!(wildcard("*", "", false));
        assert!(wildcard("/a*b*c", "/axxbyyc", false));
        assert!(!wildcard("/a*b*c", "/axxbyy", false));
    }

    #[test]
    fn cidrs() {
        let (net, len) = cidr("10.0.0.0/8").unwrap();
        assert!(in_cidr("10.1.2.3".parse().unwrap(), net, len));
        assert!(!in_cidr("11.1.2.3".parse().unwrap(), net, len));
        assert!(in_cidr("::ffff:10.0.0.1".parse().unwrap(), net, len));
        let (net, len) = cidr("0.0.0.0/0").unwrap();
        assert!(in_cidr("1.2.3.4".parse().unwrap(), net, len));
        assert!(cidr("10.0.0.0/33").is_err());
        assert!(cidr("10.0.0.0").is_err());
    }

    #[test]
    fn attributes_refuse_what_is_not_honoured() {
        let mut attrs = default_attributes(TARGET_GROUP_ATTRIBUTES);
        let set = |k: &str, v: &str| vec![(Some(k.to_owned()), Some(v.to_owned()))];
        assert!(apply_attributes(
            "Target group",
            TARGET_GROUP_ATTRIBUTES,
            &mut attrs,
            &set("deregistration_delay.timeout_seconds", "5")
        )
        .is_ok());
        assert_eq!(attrs["deregistration_delay.timeout_seconds"], "5");
        let e = apply_attributes(
            "Target group",
            TARGET_GROUP_ATTRIBUTES,
            &mut attrs,
            &set("proxy_protocol_v2.enabled", "true"),
        )
        .unwrap_err();
        assert!(e.message.contains("only 'false'"), "{}", e.message);
        assert!(apply_attributes(
            "Target group",
            TARGET_GROUP_ATTRIBUTES,
            &mut attrs,
            &set("nope", "1")
        )
        .is_err());
        assert!(apply_attributes(
            "Target group",
            TARGET_GROUP_ATTRIBUTES,
            &mut attrs,
            &set("slow_start.duration_seconds", "10")
        )
        .is_err());
    }
}
