//! The awsQuery protocol (ELBv2, IAM, STS): form-encoded requests
//! (`Action`, `Version`, members as dotted keys, lists as `Name.member.N`,
//! maps as `Name.entry.N.key`/`.value`), XML responses wrapped in
//! `<{Action}Response><{Action}Result>`, and XML `ErrorResponse`s.
//!
//! Both directions walk the model's shape graph ([`Schema`]) and go through
//! `serde_json::Value`, so the generated serde types serve this protocol as
//! they serve JSON 1.1: the tree is built by the schema, the types check
//! required members and enums.

use crate::AwsError;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use wharf_model::schema::{Kind, Schema, ShapeId};

/// Content type of awsQuery responses.
pub const XML: &str = "text/xml";

/// Most dotted keys or nesting a request may carry: far beyond any real
/// request, and bounds the work a hostile one can ask for.
const MAX_PARAMS: usize = 10_000;
const MAX_DEPTH: usize = 16;
/// Highest list index accepted (`Name.member.N`).
const MAX_INDEX: usize = 10_000;

/// A decoded form body: `Action`, `Version` and the operation's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub action: String,
    pub version: String,
    /// Every other parameter, as sent.
    pub params: Vec<(String, String)>,
}

/// The error a malformed request gets: awsQuery services answer
/// `ValidationError` (HTTP 400).
pub fn validation(message: impl Into<String>) -> AwsError {
    AwsError::client("ValidationError", message)
}

/// Splits a form body into `Action`, `Version` and the rest.
pub fn parse(body: &[u8]) -> Result<Request, AwsError> {
    let mut action = None;
    let mut version = None;
    let mut params = Vec::new();
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "Action" => action = Some(v.into_owned()),
            "Version" => version = Some(v.into_owned()),
            _ => {
                if params.len() == MAX_PARAMS {
                    return Err(validation(format!(
                        "A request may carry at most {MAX_PARAMS} parameters."
                    )));
                }
                params.push((k.into_owned(), v.into_owned()));
            }
        }
    }
    let action = action
        .ok_or_else(|| AwsError::client("MissingAction", "Could not find operation to perform."))?;
    Ok(Request {
        action,
        version: version.unwrap_or_default(),
        params,
    })
}

/// Dotted keys as a tree: `A.member.1.B=x` is `A → member → 1 → B = x`.
#[derive(Default, Debug)]
struct Node {
    value: Option<String>,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn build(params: &[(String, String)]) -> Result<Node, AwsError> {
        let mut root = Node::default();
        for (key, value) in params {
            let mut node = &mut root;
            for (depth, part) in key.split('.').enumerate() {
                if part.is_empty() || depth >= MAX_DEPTH {
                    return Err(validation(format!("Invalid parameter name: {key}")));
                }
                node = node.children.entry(part.to_owned()).or_default();
            }
            if node.value.replace(value.clone()).is_some() {
                return Err(validation(format!("Parameter {key} is given twice.")));
            }
        }
        Ok(root)
    }
}

/// One operation of an awsQuery service's dispatch table: decodes the
/// parameters into the operation's input type, runs the handler, encodes
/// its output as the operation's XML response.
pub async fn call<Req, Resp, F, Fut>(
    schema: &Schema,
    action: &str,
    params: &[(String, String)],
    request_id: &str,
    f: F,
) -> Result<Vec<u8>, AwsError>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, AwsError>>,
{
    let op = schema.operation(action).ok_or_else(|| {
        AwsError::client(
            "InvalidAction",
            format!("Could not find operation {action}"),
        )
    })?;
    let req = decode::<Req>(schema, op.input, params)?;
    let resp = f(req).await?;
    encode(schema, action, &resp, request_id)
}

/// Decodes an operation's input from its parameters into `T` (the
/// operation's generated input type).
pub fn decode<T: DeserializeOwned>(
    schema: &Schema,
    input: ShapeId,
    params: &[(String, String)],
) -> Result<T, AwsError> {
    let root = Node::build(params)?;
    let value = to_value(schema, input, &root, "")?;
    serde_json::from_value(value).map_err(|e| validation(describe_serde(&e.to_string())))
}

/// serde's "missing field `X`" as AWS words it.
fn describe_serde(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return format!(
            "1 validation error detected: Value null at '{name}' failed to satisfy constraint: \
             Member must not be null"
        );
    }
    format!("Invalid request: {message}")
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn to_value(schema: &Schema, id: ShapeId, node: &Node, path: &str) -> Result<Value, AwsError> {
    let shape = schema.shape(id);
    let scalar = || -> Result<&str, AwsError> {
        if !node.children.is_empty() {
            return Err(validation(format!("{path} takes a value, not members.")));
        }
        node.value
            .as_deref()
            .ok_or_else(|| validation(format!("{path} has no value.")))
    };
    let invalid =
        |what: &str, v: &str| validation(format!("Value '{v}' at '{path}' is not {what}."));
    Ok(match &shape.kind {
        Kind::Structure(members) => {
            if node.value.as_deref().is_some_and(|v| !v.is_empty()) {
                return Err(validation(format!("{path} takes members, not a value.")));
            }
            let mut out = Map::new();
            for (name, child) in &node.children {
                let member = members.iter().find(|m| m.name == name).ok_or_else(|| {
                    validation(format!("Unknown parameter: {}", join(path, name)))
                })?;
                out.insert(
                    member.name.to_owned(),
                    to_value(schema, member.shape, child, &join(path, name))?,
                );
            }
            Value::Object(out)
        }
        Kind::List(member) => {
            // botocore sends an empty list as `Name=` with no members.
            let mut items = Vec::new();
            for (key, child) in &node.children {
                if key != "member" {
                    return Err(validation(format!(
                        "Unknown parameter: {}",
                        join(path, key)
                    )));
                }
                for (i, (index, item)) in indexed(child, &join(path, "member"))?.enumerate() {
                    if index != i + 1 {
                        return Err(validation(format!("{path}.member.{} is missing.", i + 1)));
                    }
                    items.push(to_value(
                        schema,
                        *member,
                        item,
                        &format!("{path}.member.{index}"),
                    )?);
                }
            }
            if node.value.as_deref().is_some_and(|v| !v.is_empty()) {
                return Err(validation(format!(
                    "{path} is a list: give {path}.member.N."
                )));
            }
            Value::Array(items)
        }
        Kind::Map { key, value } => {
            let mut out = Map::new();
            for (name, child) in &node.children {
                if name != "entry" {
                    return Err(validation(format!(
                        "Unknown parameter: {}",
                        join(path, name)
                    )));
                }
                for (index, entry) in indexed(child, &join(path, "entry"))? {
                    let at = format!("{path}.entry.{index}");
                    let (Some(k), Some(v)) =
                        (entry.children.get("key"), entry.children.get("value"))
                    else {
                        return Err(validation(format!("{at} needs a key and a value.")));
                    };
                    if entry.children.len() != 2 {
                        return Err(validation(format!("{at} takes only a key and a value.")));
                    }
                    let Value::String(k) = to_value(schema, *key, k, &format!("{at}.key"))? else {
                        return Err(validation(format!("{at}.key must be a string.")));
                    };
                    let v = to_value(schema, *value, v, &format!("{at}.value"))?;
                    if out.insert(k.clone(), v).is_some() {
                        return Err(validation(format!("{path} has the key {k} twice.")));
                    }
                }
            }
            Value::Object(out)
        }
        Kind::String | Kind::Blob => Value::String(scalar()?.to_owned()),
        Kind::Integer => {
            let v = scalar()?;
            Value::from(v.parse::<i32>().map_err(|_| invalid("an integer", v))?)
        }
        Kind::Long => {
            let v = scalar()?;
            Value::from(v.parse::<i64>().map_err(|_| invalid("an integer", v))?)
        }
        Kind::Double => {
            let v = scalar()?;
            let f = v
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .ok_or_else(|| invalid("a number", v))?;
            Value::Number(f)
        }
        Kind::Boolean => match scalar()? {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            v => return Err(invalid("a boolean", v)),
        },
        Kind::Timestamp => {
            let v = scalar()?;
            let secs = parse_timestamp(v).ok_or_else(|| invalid("a timestamp", v))?;
            Value::Number(Number::from_f64(secs).ok_or_else(|| invalid("a timestamp", v))?)
        }
    })
}

/// The children of a `member`/`entry` node by index, in index order.
fn indexed<'a>(
    node: &'a Node,
    path: &str,
) -> Result<impl Iterator<Item = (usize, &'a Node)>, AwsError> {
    let mut out = Vec::with_capacity(node.children.len());
    for (key, child) in &node.children {
        match key.parse::<usize>() {
            // Digits only: `+1` parses as 1, and would name a member that
            // whoever reads the parameters by their plain name (the IAM
            // checks) does not see.
            Ok(i)
                if (1..=MAX_INDEX).contains(&i)
                    && !key.starts_with('0')
                    && key.bytes().all(|b| b.is_ascii_digit()) =>
            {
                out.push((i, child))
            }
            _ => return Err(validation(format!("Invalid index {key} in {path}.{key}"))),
        }
    }
    if node.value.is_some() {
        return Err(validation(format!("{path} needs an index.")));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter())
}

fn parse_timestamp(v: &str) -> Option<f64> {
    if let Ok(t) = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339) {
        return Some(t.unix_timestamp_nanos() as f64 / 1e9);
    }
    v.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// ISO 8601 with milliseconds, as AWS query services write timestamps.
fn format_timestamp(secs: f64) -> String {
    let nanos = (secs * 1e9) as i128;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => "1970-01-01T00:00:00.000Z".into(),
    }
}

/// The XML response of a successful call: `output` (the operation's
/// generated output type) inside `<{Action}Response><{Action}Result>`, and
/// the request id in `ResponseMetadata`.
pub fn encode<T: Serialize>(
    schema: &Schema,
    action: &str,
    output: &T,
    request_id: &str,
) -> Result<Vec<u8>, AwsError> {
    let op = schema
        .operation(action)
        .ok_or_else(|| AwsError::internal(format!("no operation {action} in the schema")))?;
    let value = serde_json::to_value(output).map_err(|e| AwsError::internal(e.to_string()))?;
    let mut out = String::with_capacity(512);
    let _ = write!(out, "<{action}Response xmlns=\"{}\">", schema.xml_namespace);
    if let (Some(shape), Some(wrapper)) = (op.output, op.result_wrapper) {
        let _ = write!(out, "<{wrapper}>");
        write_members(&mut out, schema, shape, &value);
        let _ = write!(out, "</{wrapper}>");
    }
    let _ = write!(
        out,
        "<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        escape(request_id)
    );
    Ok(out.into_bytes())
}

fn write_members(out: &mut String, schema: &Schema, id: ShapeId, value: &Value) {
    let (Kind::Structure(members), Value::Object(map)) = (&schema.shape(id).kind, value) else {
        return;
    };
    for m in members.iter() {
        if let Some(v) = map.get(m.name) {
            if v.is_null() {
                continue;
            }
            let _ = write!(out, "<{}>", m.name);
            write_value(out, schema, m.shape, v);
            let _ = write!(out, "</{}>", m.name);
        }
    }
}

fn write_value(out: &mut String, schema: &Schema, id: ShapeId, value: &Value) {
    match (&schema.shape(id).kind, value) {
        (Kind::Structure(_), _) => write_members(out, schema, id, value),
        (Kind::List(member), Value::Array(items)) => {
            for item in items {
                out.push_str("<member>");
                write_value(out, schema, *member, item);
                out.push_str("</member>");
            }
        }
        (Kind::Map { key: _, value: v }, Value::Object(map)) => {
            for (k, item) in map {
                let _ = write!(out, "<entry><key>{}</key><value>", escape(k));
                write_value(out, schema, *v, item);
                out.push_str("</value></entry>");
            }
        }
        (Kind::Timestamp, Value::Number(n)) => {
            out.push_str(&format_timestamp(n.as_f64().unwrap_or_default()))
        }
        (_, Value::String(s)) => out.push_str(&escape(s)),
        (_, Value::Number(n)) => {
            let _ = write!(out, "{n}");
        }
        (_, Value::Bool(b)) => {
            let _ = write!(out, "{b}");
        }
        _ => {}
    }
}

/// XML text with `&`, `<`, `>`, `"` and `'` escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// An error as awsQuery services answer it: `<ErrorResponse>` with the
/// error's type (Sender for 4xx, Receiver for 5xx), code and message.
pub fn error_body(e: &AwsError, xml_namespace: &str, request_id: &str) -> Vec<u8> {
    let kind = if e.status >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    format!(
        "<ErrorResponse xmlns=\"{xml_namespace}\"><Error><Type>{kind}</Type><Code>{}</Code>\
         <Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        escape(&e.code),
        escape(&e.message),
        escape(request_id)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_model::elbv2;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn input(op: &str) -> ShapeId {
        elbv2::SCHEMA.operation(op).unwrap().input
    }

    #[test]
    fn decodes_lists_of_structures_and_scalars() {
        let req: elbv2::CreateTargetGroupInput = decode(
            &elbv2::SCHEMA,
            input("CreateTargetGroup"),
            &params(&[
                ("Name", "web"),
                ("Protocol", "HTTP"),
                ("Port", "80"),
                ("HealthCheckEnabled", "true"),
                ("Matcher.HttpCode", "200-299"),
                ("Tags.member.2.Key", "b"),
                ("Tags.member.1.Key", "a"),
                ("Tags.member.1.Value", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(req.name, "web");
        assert_eq!(req.port, Some(80));
        assert_eq!(req.health_check_enabled, Some(true));
        assert_eq!(req.matcher.unwrap().http_code.as_deref(), Some("200-299"));
        let tags = req.tags.unwrap();
        assert_eq!(tags[0].key, "a");
        assert_eq!(tags[0].value.as_deref(), Some("1"));
        assert_eq!(tags[1].key, "b");
    }

    #[test]
    fn refuses_what_it_cannot_place() {
        let shape = input("CreateTargetGroup");
        let bad = |pairs: &[(&str, &str)]| {
            decode::<elbv2::CreateTargetGroupInput>(&elbv2::SCHEMA, shape, &params(pairs))
                .unwrap_err()
        };
        assert!(bad(&[("Name", "a"), ("Bogus", "1")])
            .message
            .contains("Unknown parameter: Bogus"));
        assert!(bad(&[("Name", "a"), ("Port", "99999999999")])
            .message
            .contains("not an integer"));
        assert!(bad(&[("Name", "a"), ("Tags.member.2.Key", "x")])
            .message
            .contains("member.1 is missing"));
        assert!(bad(&[("Name", "a"), ("Tags.member.0.Key", "x")])
            .message
            .contains("Invalid index"));
        assert!(bad(&[("Name", "a"), ("Tags.member.+1.Key", "x")])
            .message
            .contains("Invalid index"));
        assert!(bad(&[("Port", "1")])
            .message
            .contains("Value null at 'Name'"));
        assert!(bad(&[("Name", "a"), ("Name", "b")])
            .message
            .contains("twice"));
        assert_eq!(
            bad(&[("Name", "a"), ("HealthCheckEnabled", "yes")]).code,
            "ValidationError"
        );
    }

    #[test]
    fn empty_list_is_an_empty_value() {
        let req: elbv2::DescribeLoadBalancersInput = decode(
            &elbv2::SCHEMA,
            input("DescribeLoadBalancers"),
            &params(&[("Names", "")]),
        )
        .unwrap();
        assert_eq!(req.names, Some(vec![]));
    }

    #[test]
    fn encodes_wrapped_xml() {
        let out = elbv2::DescribeTagsOutput {
            tag_descriptions: Some(vec![elbv2::TagDescription {
                resource_arn: Some("arn:a<b".into()),
                tags: Some(vec![elbv2::Tag {
                    key: "k".into(),
                    value: Some("v&w".into()),
                }]),
            }]),
        };
        let xml = String::from_utf8(encode(&elbv2::SCHEMA, "DescribeTags", &out, "rid").unwrap())
            .unwrap();
        assert_eq!(
            xml,
            "<DescribeTagsResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">\
             <DescribeTagsResult><TagDescriptions><member><ResourceArn>arn:a&lt;b</ResourceArn>\
             <Tags><member><Key>k</Key><Value>v&amp;w</Value></member></Tags></member>\
             </TagDescriptions></DescribeTagsResult><ResponseMetadata><RequestId>rid</RequestId>\
             </ResponseMetadata></DescribeTagsResponse>"
        );
    }

    #[test]
    fn timestamps_are_iso8601() {
        assert_eq!(
            format_timestamp(1_700_000_000.5),
            "2023-11-14T22:13:20.500Z"
        );
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20.500Z"),
            Some(1_700_000_000.5)
        );
    }

    #[test]
    fn form_body_splits_action() {
        let r =
            parse(b"Action=DescribeTags&Version=2015-12-01&ResourceArns.member.1=a%2Fb").unwrap();
        assert_eq!(r.action, "DescribeTags");
        assert_eq!(r.version, "2015-12-01");
        assert_eq!(r.params, params(&[("ResourceArns.member.1", "a/b")]));
        assert_eq!(parse(b"Version=1").unwrap_err().code, "MissingAction");
    }
}
