//! Policy documents as IAM reads them: parsed and compiled once, when a
//! policy is written (or the cache loads it), and evaluated with no I/O by
//! [`evaluate`], in the order the IAM User Guide's "Policy evaluation
//! logic" gives: every statement of every policy is looked at, then any
//! explicit Deny wins, an identity Allow must also be allowed by the
//! permissions boundary and the session policy when there are any, and
//! what nothing allows is denied.

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Why a document is not a policy, in IAM's words (MalformedPolicyDocument).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

fn malformed(msg: impl Into<String>) -> Malformed {
    Malformed(msg.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A compiled policy document.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone)]
struct Statement {
    sid: Option<String>,
    effect: Effect,
    action: Option<Either<Pattern>>,
    resource: Option<Either<Pattern>>,
    principal: Option<Either<PrincipalSpec>>,
    conditions: Vec<Condition>,
}

/// A list of values a statement matches, or (its `Not…` form) does not.
#[derive(Debug, Clone)]
enum Either<T> {
    Is(Vec<T>),
    Not(Vec<T>),
}

/// A `Principal` entry: `*`, or the values of one kind (`AWS`, `Service`,
/// `Federated`, `CanonicalUser`).
#[derive(Debug, Clone)]
enum PrincipalSpec {
    Anyone,
    Named { kind: String, values: Vec<String> },
}

/// A pattern with `*`, `?` and policy variables (`${aws:username}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    tokens: Vec<Token>,
    /// Actions match case-insensitively (their tokens are lower case).
    fold_case: bool,
    /// For a pattern with no `?` and no variable: its text between the
    /// `*`s, matched by substring search instead of backtracking.
    stars: Option<Stars>,
}

#[derive(Debug, Clone, PartialEq)]
struct Stars {
    /// Text before the first `*`, between each two, after the last
    /// (empty where the pattern starts or ends with `*`).
    segments: Vec<String>,
}

impl Stars {
    fn of(tokens: &[Token]) -> Option<Stars> {
        let mut segments = vec![String::new()];
        for t in tokens {
            match t {
                Token::Text(x) => segments.last_mut()?.push_str(x),
                Token::Star => segments.push(String::new()),
                Token::Question | Token::Var(_) => return None,
            }
        }
        Some(Stars { segments })
    }

    /// Star-only glob: the first part is a prefix, the last a suffix, and
    /// the ones between are found left to right (leftmost is always safe
    /// when `*` is the only wildcard).
    fn matches(&self, s: &str) -> bool {
        let s = s.as_bytes();
        let n = self.segments.len();
        if n == 1 {
            return same(s, self.segments[0].as_bytes());
        }
        let first = self.segments[0].as_bytes();
        let last = self.segments[n - 1].as_bytes();
        if s.len() < first.len() + last.len()
            || !same(&s[..first.len()], first)
            || !same(&s[s.len() - last.len()..], last)
        {
            return false;
        }
        let mut rest = &s[first.len()..s.len() - last.len()];
        for seg in &self.segments[1..n - 1] {
            match find(rest, seg.as_bytes()) {
                Some(at) => rest = &rest[at + seg.len()..],
                None => return false,
            }
        }
        true
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Text(String),
    Star,
    Question,
    Var(String),
}

#[derive(Debug, Clone)]
struct Condition {
    op: Operator,
    negated: bool,
    if_exists: bool,
    set: SetQualifier,
    /// Lower case: condition keys are case-insensitive.
    key: String,
    values: Vec<String>,
    /// For the pattern operators, the values compiled.
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetQualifier {
    Single,
    ForAllValues,
    ForAnyValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    Numeric(Cmp),
    Date(Cmp),
    Bool,
    Binary,
    Ip,
    ArnEquals,
    ArnLike,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The request context's keys and values (keys in lower case; a key may
/// carry several values, as `aws:TagKeys` does).
#[derive(Debug, Clone, Default)]
pub struct Context {
    keys: BTreeMap<String, Vec<String>>,
}

impl Context {
    pub fn new() -> Context {
        Context::default()
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.keys
            .insert(key.to_ascii_lowercase(), vec![value.into()]);
        self
    }

    pub fn set_many(&mut self, key: &str, values: Vec<String>) -> &mut Self {
        self.keys.insert(key.to_ascii_lowercase(), values);
        self
    }

    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.keys.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// `aws:CurrentTime` and `aws:EpochTime` of a request made at `now_ms`.
    pub fn set_time(&mut self, now_ms: i64) -> &mut Self {
        let at = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        self.set("aws:CurrentTime", at);
        self.set("aws:EpochTime", now_ms.div_euclid(1000).to_string())
    }
}

/// Who asks, as a trust or resource policy's `Principal` names them: the
/// kind (`AWS`, `Service`) and the names that denote the caller itself (a
/// user, a role session's own ARN), which a policy grants to directly, and
/// those that reach it only by delegation (the account's root; a session's
/// role), whose grant the caller's own policies must also allow.
#[derive(Debug, Clone)]
pub struct Caller {
    pub kind: &'static str,
    pub names: Vec<String>,
    pub delegated: Vec<String>,
}

/// One request to evaluate.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `service:Operation`.
    pub action: &'a str,
    pub resource: &'a str,
    pub context: &'a Context,
    /// Who asks, for policies with a `Principal` (trust and resource policies).
    pub caller: Option<&'a Caller>,
}

/// What one policy says of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Statements (by Sid, or `#index`) that allow.
    pub allows: Vec<String>,
    pub denies: Vec<String>,
    /// For a policy with principals: whether an allow named the caller
    /// itself (not only its account).
    pub allows_directly: bool,
    /// Whether an allow named the caller or its role (not only its
    /// account, which only delegates to the caller's own policies).
    pub allows_beyond_account: bool,
}

impl Verdict {
    fn absorb(&mut self, other: Verdict) {
        self.allows.extend(other.allows);
        self.denies.extend(other.denies);
        self.allows_directly |= other.allows_directly;
        self.allows_beyond_account |= other.allows_beyond_account;
    }
}

/// The decision, and which statements made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// An explicit Deny; the kind of policy it was in.
    ExplicitDeny(PolicyKind),
    /// Nothing allowed: the first layer that did not allow.
    ImplicitDeny(PolicyKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Identity,
    PermissionsBoundary,
    Session,
    Resource,
}

impl PolicyKind {
    /// As AWS's AccessDenied messages name it.
    pub fn describe(self) -> &'static str {
        match self {
            PolicyKind::Identity => "identity-based policy",
            PolicyKind::PermissionsBoundary => "permissions boundary",
            PolicyKind::Session => "session policy",
            PolicyKind::Resource => "resource-based policy",
        }
    }
}

/// The policies that bear on a request. Identity policies are the
/// principal's own (inline, attached, and its groups'); a boundary or a
/// session policy, when present, must also allow; a resource policy may
/// allow on its own when it names the caller (within one account).
#[derive(Debug, Default, Clone, Copy)]
pub struct PolicySet<'a> {
    pub identity: &'a [&'a Policy],
    pub boundary: Option<&'a Policy>,
    /// The session's policies, one layer (present: it must allow too).
    pub session: Option<&'a [&'a Policy]>,
    pub resource: Option<&'a Policy>,
}

/// IAM's evaluation: explicit Deny anywhere wins; then an Allow from the
/// resource policy that names the caller, or an identity Allow that the
/// boundary and the session policy (when present) also allow; else deny.
pub fn evaluate(req: &Request, set: &PolicySet) -> Decision {
    let action = req.action.to_ascii_lowercase();
    let judge = |policies: &[&Policy]| {
        let mut v = Verdict::default();
        for p in policies {
            v.absorb(p.verdict_for(req, &action));
        }
        v
    };
    let identity = judge(set.identity);
    let boundary = set.boundary.map(|p| p.verdict_for(req, &action));
    let session = set.session.map(judge);
    let resource = set.resource.map(|p| p.verdict_for(req, &action));
    for (kind, v) in [
        (PolicyKind::Identity, Some(&identity)),
        (PolicyKind::PermissionsBoundary, boundary.as_ref()),
        (PolicyKind::Session, session.as_ref()),
        (PolicyKind::Resource, resource.as_ref()),
    ] {
        if v.is_some_and(|v| !v.denies.is_empty()) {
            return Decision::ExplicitDeny(kind);
        }
    }
    if resource.as_ref().is_some_and(|v| v.allows_directly) {
        return Decision::Allow;
    }
    // A resource policy that names the caller's role grants as an identity
    // policy would (a boundary and a session policy must still allow); one
    // that names only its account delegates to the caller's own policies.
    let identity_allows =
        !identity.allows.is_empty() || resource.as_ref().is_some_and(|v| v.allows_beyond_account);
    if !identity_allows {
        return Decision::ImplicitDeny(PolicyKind::Identity);
    }
    if boundary.is_some_and(|v| v.allows.is_empty()) {
        return Decision::ImplicitDeny(PolicyKind::PermissionsBoundary);
    }
    if session.is_some_and(|v| v.allows.is_empty()) {
        return Decision::ImplicitDeny(PolicyKind::Session);
    }
    Decision::Allow
}

impl Policy {
    /// Parses and compiles a document. `with_principal`: a trust or
    /// resource policy, whose statements must name a principal; identity
    /// policies must not.
    pub fn parse(text: &str, with_principal: bool) -> Result<Policy, Malformed> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|_| malformed("This policy contains invalid Json"))?;
        let Value::Object(top) = &doc else {
            return Err(malformed("This policy contains invalid Json"));
        };
        for key in top.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(malformed(format!(
                    "Syntax errors in policy: unknown field {key}"
                )));
            }
        }
        // `2012-10-17` enables policy variables; `2008-10-17` reads `${…}`
        // as text.
        let variables =
            match top.get("Version") {
                None => false,
                Some(Value::String(v)) if v == "2012-10-17" => true,
                Some(Value::String(v)) if v == "2008-10-17" => false,
                Some(_) => return Err(malformed(
                    "The policy failed legacy parsing: Version must be 2012-10-17 or 2008-10-17",
                )),
            };
        let statements = match top.get("Statement") {
            Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
            Some(s @ Value::Object(_)) => vec![s],
            _ => return Err(malformed("Syntax errors in policy: missing Statement")),
        };
        if statements.is_empty() {
            return Err(malformed("Syntax errors in policy: missing Statement"));
        }
        let statements = statements
            .into_iter()
            .map(|s| Statement::parse(s, with_principal, variables))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy { statements })
    }

    /// One policy of all the statements of several (a session's policies
    /// are one layer).
    pub fn union(policies: &[std::sync::Arc<Policy>]) -> Policy {
        Policy {
            statements: policies
                .iter()
                .flat_map(|p| p.statements.iter().cloned())
                .collect(),
        }
    }

    /// What this policy's statements say of a request.
    pub fn verdict(&self, req: &Request) -> Verdict {
        self.verdict_for(req, &req.action.to_ascii_lowercase())
    }

    /// [`Policy::verdict`] with the action already in lower case.
    fn verdict_for(&self, req: &Request, action: &str) -> Verdict {
        let mut v = Verdict::default();
        for (i, s) in self.statements.iter().enumerate() {
            let Some(reach) = s.applies(req, action) else {
                continue;
            };
            let name = s.sid.clone().unwrap_or_else(|| format!("#{i}"));
            match s.effect {
                Effect::Allow => {
                    v.allows.push(name);
                    v.allows_directly |= reach == Reach::Caller;
                    v.allows_beyond_account |= reach != Reach::Account;
                }
                Effect::Deny => v.denies.push(name),
            }
        }
        v
    }
}

impl Statement {
    fn parse(v: &Value, with_principal: bool, variables: bool) -> Result<Statement, Malformed> {
        let Value::Object(m) = v else {
            return Err(malformed(
                "Syntax errors in policy: a Statement must be an object",
            ));
        };
        for key in m.keys() {
            if !matches!(
                key.as_str(),
                "Sid"
                    | "Effect"
                    | "Action"
                    | "NotAction"
                    | "Resource"
                    | "NotResource"
                    | "Principal"
                    | "NotPrincipal"
                    | "Condition"
            ) {
                return Err(malformed(format!(
                    "Syntax errors in policy: unknown field {key}"
                )));
            }
        }
        let sid = match m.get("Sid") {
            None => None,
            Some(Value::String(s)) if s.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Some(s.clone())
            }
            Some(_) => {
                return Err(malformed(
                    "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*",
                ))
            }
        };
        let effect = match m.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            _ => {
                return Err(malformed(
                    "Syntax errors in policy: Effect must be Allow or Deny",
                ))
            }
        };
        let action = one_of(m, "Action", "NotAction", |s| {
            validate_action(s)?;
            Ok(Pattern::compile(s, true, false))
        })?;
        if action.is_none() {
            return Err(malformed("Policy statement must contain actions."));
        }
        let resource = one_of(m, "Resource", "NotResource", |s| {
            Ok(Pattern::compile(s, false, variables))
        })?;
        let principal = one_of_principal(m)?;
        if with_principal {
            if principal.is_none() {
                return Err(malformed("Missing required field Principal"));
            }
        } else {
            if principal.is_some() {
                return Err(malformed("Policy document should not specify a principal."));
            }
            if resource.is_none() {
                return Err(malformed("Policy statement must contain resources."));
            }
        }
        let conditions = match m.get("Condition") {
            None => Vec::new(),
            Some(Value::Object(ops)) => parse_conditions(ops, variables)?,
            Some(_) => {
                return Err(malformed(
                    "Syntax errors in policy: Condition must be an object",
                ))
            }
        };
        Ok(Statement {
            sid,
            effect,
            action,
            resource,
            principal,
            conditions,
        })
    }

    /// Whether the statement applies to the request; if so, whether its
    /// principal named the caller directly (not only through its account).
    fn applies(&self, req: &Request, action: &str) -> Option<Reach> {
        if !self
            .action
            .as_ref()
            .is_some_and(|a| either_matches(a, |p| p.matches(action, req.context)))
        {
            return None;
        }
        if let Some(r) = &self.resource {
            if !either_matches(r, |p| p.matches(req.resource, req.context)) {
                return None;
            }
        }
        let reach = match &self.principal {
            None => Reach::Caller,
            Some(spec) => principal_matches(spec, req.caller?)?,
        };
        if !self.conditions.iter().all(|c| c.holds(req.context)) {
            return None;
        }
        Some(reach)
    }
}

fn either_matches<T>(e: &Either<T>, f: impl Fn(&T) -> bool) -> bool {
    match e {
        Either::Is(v) => v.iter().any(f),
        Either::Not(v) => !v.iter().any(f),
    }
}

/// How a statement's principal reaches the caller, nearest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reach {
    /// Its account (`…:root`): a delegation to the account's own policies.
    Account,
    /// A session's role.
    Role,
    /// The caller itself (or anyone).
    Caller,
}

/// How the spec names the caller, if it does.
fn principal_matches(spec: &Either<PrincipalSpec>, caller: &Caller) -> Option<Reach> {
    let named = |p: &PrincipalSpec| -> Option<Reach> {
        match p {
            PrincipalSpec::Anyone => Some(Reach::Caller),
            PrincipalSpec::Named { kind, values } if kind == caller.kind => values
                .iter()
                .filter_map(|v| {
                    if v == "*" || caller.names.iter().any(|n| n == v) {
                        Some(Reach::Caller)
                    } else if caller.delegated.contains(v) {
                        Some(if v.ends_with(":root") {
                            Reach::Account
                        } else {
                            Reach::Role
                        })
                    } else {
                        None
                    }
                })
                .max(),
            PrincipalSpec::Named { .. } => None,
        }
    };
    match spec {
        Either::Is(v) => v.iter().filter_map(named).max(),
        Either::Not(v) => {
            if v.iter().any(|p| named(p).is_some()) {
                None
            } else {
                Some(Reach::Caller)
            }
        }
    }
}

/// `Action` or `NotAction` (never both), as compiled values.
fn one_of<T>(
    m: &serde_json::Map<String, Value>,
    is: &str,
    not: &str,
    compile: impl Fn(&str) -> Result<T, Malformed>,
) -> Result<Option<Either<T>>, Malformed> {
    let strings = |v: &Value| -> Result<Vec<T>, Malformed> {
        let items: Vec<&Value> = match v {
            Value::String(_) => vec![v],
            Value::Array(a) if !a.is_empty() => a.iter().collect(),
            _ => {
                return Err(malformed(format!(
                    "Syntax errors in policy: {is} must be a string or a list of strings"
                )))
            }
        };
        items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => compile(s),
                _ => Err(malformed(format!(
                    "Syntax errors in policy: {is} must be a string or a list of strings"
                ))),
            })
            .collect()
    };
    match (m.get(is), m.get(not)) {
        (Some(_), Some(_)) => Err(malformed(format!(
            "Syntax errors in policy: a statement cannot have both {is} and {not}"
        ))),
        (Some(v), None) => Ok(Some(Either::Is(strings(v)?))),
        (None, Some(v)) => Ok(Some(Either::Not(strings(v)?))),
        (None, None) => Ok(None),
    }
}

fn one_of_principal(
    m: &serde_json::Map<String, Value>,
) -> Result<Option<Either<PrincipalSpec>>, Malformed> {
    let spec = |v: &Value| -> Result<Vec<PrincipalSpec>, Malformed> {
        match v {
            Value::String(s) if s == "*" => Ok(vec![PrincipalSpec::Anyone]),
            Value::Object(kinds) if !kinds.is_empty() => kinds
                .iter()
                .map(|(kind, values)| {
                    if !matches!(
                        kind.as_str(),
                        "AWS" | "Service" | "Federated" | "CanonicalUser"
                    ) {
                        return Err(malformed(format!("Invalid principal in policy: {kind}")));
                    }
                    let values = match values {
                        Value::String(s) => vec![s.clone()],
                        Value::Array(a) if !a.is_empty() => a
                            .iter()
                            .map(|x| {
                                x.as_str()
                                    .map(str::to_string)
                                    .ok_or_else(|| malformed("Invalid principal in policy"))
                            })
                            .collect::<Result<_, _>>()?,
                        _ => return Err(malformed("Invalid principal in policy")),
                    };
                    let values = values
                        .into_iter()
                        .map(|v| normalise_principal(kind, v))
                        .collect::<Result<_, _>>()?;
                    Ok(PrincipalSpec::Named {
                        kind: kind.clone(),
                        values,
                    })
                })
                .collect(),
            _ => Err(malformed("Invalid principal in policy")),
        }
    };
    match (m.get("Principal"), m.get("NotPrincipal")) {
        (Some(_), Some(_)) => Err(malformed(
            "Syntax errors in policy: a statement cannot have both Principal and NotPrincipal",
        )),
        (Some(v), None) => Ok(Some(Either::Is(spec(v)?))),
        (None, Some(v)) => Ok(Some(Either::Not(spec(v)?))),
        (None, None) => Ok(None),
    }
}

/// An account ID in an `AWS` principal means the account's root; only `*`
/// may be a wildcard.
fn normalise_principal(kind: &str, v: String) -> Result<String, Malformed> {
    if kind == "AWS" && v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(format!("arn:aws:iam::{v}:root"));
    }
    if v != "*" && (v.contains('*') || v.contains('?')) {
        return Err(malformed(format!(
            "Invalid principal in policy: \"{kind}\":\"{v}\""
        )));
    }
    if kind == "AWS" && v != "*" && !v.starts_with("arn:") {
        return Err(malformed(format!(
            "Invalid principal in policy: \"AWS\":\"{v}\""
        )));
    }
    Ok(v)
}

/// `*`, or `service:Action` with wildcards in the action.
fn validate_action(s: &str) -> Result<(), Malformed> {
    if s == "*" {
        return Ok(());
    }
    match s.split_once(':') {
        Some((svc, act))
            if !svc.is_empty()
                && !act.is_empty()
                && svc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && act.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'*' | b'?' | b'-' | b'_')
                }) =>
        {
            Ok(())
        }
        _ => Err(malformed(format!(
            "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc. ({s})"
        ))),
    }
}

fn parse_conditions(
    ops: &serde_json::Map<String, Value>,
    variables: bool,
) -> Result<Vec<Condition>, Malformed> {
    let mut out = Vec::new();
    for (op_name, keys) in ops {
        let (set, rest) = if let Some(r) = op_name.strip_prefix("ForAllValues:") {
            (SetQualifier::ForAllValues, r)
        } else if let Some(r) = op_name.strip_prefix("ForAnyValue:") {
            (SetQualifier::ForAnyValue, r)
        } else {
            (SetQualifier::Single, op_name.as_str())
        };
        let (rest, if_exists) = match rest.strip_suffix("IfExists") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let (op, negated) = operator(rest)
            .ok_or_else(|| malformed(format!("Invalid Condition type : {op_name}")))?;
        if op == Operator::Null && (if_exists || set != SetQualifier::Single) {
            return Err(malformed(format!("Invalid Condition type : {op_name}")));
        }
        let Value::Object(keys) = keys else {
            return Err(malformed(format!(
                "Syntax errors in policy: the {op_name} condition must be an object"
            )));
        };
        for (key, values) in keys {
            if !key.contains(':') {
                return Err(malformed(format!(
                    "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc. ({key})"
                )));
            }
            let values: Vec<String> = match values {
                Value::Array(a) => a.iter().map(scalar).collect::<Result<_, _>>()?,
                v => vec![scalar(v)?],
            };
            if values.is_empty() {
                return Err(malformed(format!(
                    "Syntax errors in policy: the {op_name} condition on {key} has no value"
                )));
            }
            check_values(op, &values, op_name)?;
            let patterns = if matches!(
                op,
                Operator::StringLike
                    | Operator::ArnLike
                    | Operator::ArnEquals
                    | Operator::StringEquals
                    | Operator::StringEqualsIgnoreCase
            ) {
                // Equality operators still expand policy variables.
                let fold = op == Operator::StringEqualsIgnoreCase;
                values
                    .iter()
                    .map(|v| {
                        // ArnEquals takes wildcards in each part as ArnLike does.
                        if matches!(
                            op,
                            Operator::StringLike | Operator::ArnLike | Operator::ArnEquals
                        ) {
                            Pattern::compile(v, fold, variables)
                        } else {
                            Pattern::literal(v, fold, variables)
                        }
                    })
                    .collect()
            } else {
                Vec::new()
            };
            out.push(Condition {
                op,
                negated,
                if_exists,
                set,
                key: key.to_ascii_lowercase(),
                values,
                patterns,
            });
        }
    }
    Ok(out)
}

fn scalar(v: &Value) -> Result<String, Malformed> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(malformed(
            "Syntax errors in policy: condition values must be strings, numbers or booleans",
        )),
    }
}

fn check_values(op: Operator, values: &[String], name: &str) -> Result<(), Malformed> {
    let bad = |v: &str| malformed(format!("Invalid value for {name}: {v}"));
    for v in values {
        match op {
            Operator::Numeric(_) if !v.parse::<f64>().is_ok_and(f64::is_finite) => {
                return Err(bad(v))
            }
            Operator::Date(_) if parse_date(v).is_none() => return Err(bad(v)),
            Operator::Ip if parse_cidr(v).is_none() => return Err(bad(v)),
            Operator::Bool | Operator::Null
                if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") =>
            {
                return Err(bad(v))
            }
            _ => {}
        }
    }
    Ok(())
}

fn operator(name: &str) -> Option<(Operator, bool)> {
    use Operator::*;
    Some(match name {
        "StringEquals" => (StringEquals, false),
        "StringNotEquals" => (StringEquals, true),
        "StringEqualsIgnoreCase" => (StringEqualsIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (StringEqualsIgnoreCase, true),
        "StringLike" => (StringLike, false),
        "StringNotLike" => (StringLike, true),
        "NumericEquals" => (Numeric(Cmp::Eq), false),
        "NumericNotEquals" => (Numeric(Cmp::Eq), true),
        "NumericLessThan" => (Numeric(Cmp::Lt), false),
        "NumericLessThanEquals" => (Numeric(Cmp::Le), false),
        "NumericGreaterThan" => (Numeric(Cmp::Gt), false),
        "NumericGreaterThanEquals" => (Numeric(Cmp::Ge), false),
        "DateEquals" => (Date(Cmp::Eq), false),
        "DateNotEquals" => (Date(Cmp::Eq), true),
        "DateLessThan" => (Date(Cmp::Lt), false),
        "DateLessThanEquals" => (Date(Cmp::Le), false),
        "DateGreaterThan" => (Date(Cmp::Gt), false),
        "DateGreaterThanEquals" => (Date(Cmp::Ge), false),
        "Bool" => (Bool, false),
        "BinaryEquals" => (Binary, false),
        "IpAddress" => (Ip, false),
        "NotIpAddress" => (Ip, true),
        "ArnEquals" => (ArnEquals, false),
        "ArnNotEquals" => (ArnEquals, true),
        "ArnLike" => (ArnLike, false),
        "ArnNotLike" => (ArnLike, true),
        "Null" => (Null, false),
        _ => return None,
    })
}

impl Condition {
    /// Operators and keys combine with AND, values with OR; a negated
    /// operator is the positive one's NOT (so a missing key satisfies it);
    /// a missing key fails the rest unless `…IfExists`.
    fn holds(&self, ctx: &Context) -> bool {
        let present = ctx.keys.get(&self.key).filter(|v| !v.is_empty());
        if self.op == Operator::Null {
            let want_absent = self.values.iter().any(|v| v.eq_ignore_ascii_case("true"));
            let want_present = self.values.iter().any(|v| v.eq_ignore_ascii_case("false"));
            return (want_absent && present.is_none()) || (want_present && present.is_some());
        }
        let Some(request) = present else {
            return match self.set {
                SetQualifier::ForAllValues => true,
                SetQualifier::ForAnyValue => false,
                SetQualifier::Single => self.if_exists || self.negated,
            };
        };
        let one = |r: &str| -> bool {
            let m = self.matches_value(r, ctx);
            m != self.negated
        };
        match self.set {
            SetQualifier::ForAllValues => request.iter().all(|r| one(r)),
            SetQualifier::ForAnyValue => request.iter().any(|r| one(r)),
            SetQualifier::Single => {
                // A negated operator on a multivalued key holds only if no
                // value matches.
                let any = request.iter().any(|r| self.matches_value(r, ctx));
                any != self.negated
            }
        }
    }

    /// Whether one request value matches any of the condition's values.
    fn matches_value(&self, r: &str, ctx: &Context) -> bool {
        match self.op {
            Operator::StringEquals | Operator::StringEqualsIgnoreCase | Operator::StringLike => {
                let folded;
                let r = if self.op == Operator::StringEqualsIgnoreCase {
                    folded = r.to_ascii_lowercase();
                    folded.as_str()
                } else {
                    r
                };
                self.patterns.iter().any(|p| p.matches(r, ctx))
            }
            Operator::ArnEquals | Operator::ArnLike => {
                self.patterns.iter().any(|p| arn_matches(p, r, ctx))
            }
            Operator::Numeric(cmp) => {
                let Ok(r) = r.parse::<f64>() else {
                    return false;
                };
                self.values
                    .iter()
                    .filter_map(|v| v.parse::<f64>().ok())
                    .any(|v| compare(cmp, r.partial_cmp(&v)))
            }
            Operator::Date(cmp) => {
                let Some(r) = parse_date(r) else { return false };
                self.values
                    .iter()
                    .filter_map(|v| parse_date(v))
                    .any(|v| compare(cmp, Some(r.cmp(&v))))
            }
            Operator::Bool => self.values.iter().any(|v| v.eq_ignore_ascii_case(r)),
            Operator::Binary => self.values.iter().any(|v| v == r),
            Operator::Ip => {
                let Ok(ip) = r.parse::<IpAddr>() else {
                    return false;
                };
                self.values
                    .iter()
                    .filter_map(|v| parse_cidr(v))
                    .any(|net| in_cidr(ip, net))
            }
            Operator::Null => false,
        }
    }
}

fn compare(cmp: Cmp, o: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    matches!(
        (cmp, o),
        (Cmp::Eq, Some(Equal))
            | (Cmp::Lt, Some(Less))
            | (Cmp::Le, Some(Less | Equal))
            | (Cmp::Gt, Some(Greater))
            | (Cmp::Ge, Some(Greater | Equal))
    )
}

/// Epoch milliseconds of an ISO 8601 date (or date-time) or epoch seconds.
fn parse_date(s: &str) -> Option<i128> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(secs) = s.parse::<i64>() {
        return Some(secs as i128 * 1000);
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp_nanos() / 1_000_000);
    }
    let d = time::Date::parse(
        s,
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    Some(d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000)
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a = s.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

fn in_cidr(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - len as u32).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - len as u32).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// ArnLike/ArnEquals: each of the six colon-separated parts matched on its
/// own (a wildcard never spans a colon of the first five).
fn arn_matches(p: &Pattern, r: &str, ctx: &Context) -> bool {
    let Some(expanded) = p.expand(ctx) else {
        return false;
    };
    let want: Vec<&[Token]> = split_tokens(&expanded);
    let got: Vec<&str> = r.splitn(6, ':').collect();
    if want.len() != 6 || got.len() != 6 {
        return false;
    }
    want.iter()
        .zip(got)
        .all(|(w, g)| glob(w, g.as_bytes(), false))
}

/// Splits tokens at the first five colons of text tokens.
fn split_tokens(tokens: &[Token]) -> Vec<&[Token]> {
    // A text token holding colons is split by `expand`, so here each colon
    // is its own `Text(":")` token.
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        if parts.len() < 5 && *t == Token::Text(":".into()) {
            parts.push(&tokens[start..i]);
            start = i + 1;
        }
    }
    parts.push(&tokens[start..]);
    parts
}

impl Pattern {
    /// `*` and `?` are wildcards; `${key}` is a policy variable when
    /// `variables` (and `${*}`, `${?}`, `${$}` the literal characters).
    pub fn compile(s: &str, fold_case: bool, variables: bool) -> Pattern {
        Pattern::build(s, fold_case, variables, true)
    }

    /// No wildcards; variables still expand.
    fn literal(s: &str, fold_case: bool, variables: bool) -> Pattern {
        Pattern::build(s, fold_case, variables, false)
    }

    fn build(s: &str, fold_case: bool, variables: bool, wildcards: bool) -> Pattern {
        let s = if fold_case {
            s.to_ascii_lowercase()
        } else {
            s.to_string()
        };
        let mut tokens = Vec::new();
        let mut text = String::new();
        let mut rest = s.as_str();
        while let Some(c) = rest.chars().next() {
            if variables && rest.starts_with("${") {
                if let Some(end) = rest.find('}') {
                    let name = &rest[2..end];
                    rest = &rest[end + 1..];
                    match name {
                        "*" | "?" | "$" => text.push_str(name),
                        _ => {
                            flush(&mut text, &mut tokens);
                            tokens.push(Token::Var(name.to_ascii_lowercase()));
                        }
                    }
                    continue;
                }
            }
            rest = &rest[c.len_utf8()..];
            match c {
                '*' if wildcards => {
                    flush(&mut text, &mut tokens);
                    tokens.push(Token::Star);
                }
                '?' if wildcards => {
                    flush(&mut text, &mut tokens);
                    tokens.push(Token::Question);
                }
                ':' => {
                    // Colons stand alone, so ARN matching can split on them.
                    flush(&mut text, &mut tokens);
                    tokens.push(Token::Text(":".into()));
                }
                c => text.push(c),
            }
        }
        flush(&mut text, &mut tokens);
        let stars = Stars::of(&tokens);
        Pattern {
            tokens,
            fold_case,
            stars,
        }
    }

    /// The tokens with variables replaced by the context's values (`None`:
    /// a variable the context lacks, so the pattern matches nothing).
    fn expand<'a>(&'a self, ctx: &Context) -> Option<std::borrow::Cow<'a, [Token]>> {
        if !self.tokens.iter().any(|t| matches!(t, Token::Var(_))) {
            return Some(std::borrow::Cow::Borrowed(&self.tokens));
        }
        let mut out = Vec::new();
        for t in &self.tokens {
            match t {
                Token::Var(name) => {
                    let value = ctx.keys.get(name)?.first()?;
                    let value = if self.fold_case {
                        value.to_ascii_lowercase()
                    } else {
                        value.clone()
                    };
                    // A value's own colons are text, not ARN separators,
                    // and its `*` is no wildcard.
                    out.push(Token::Text(value));
                }
                t => out.push(t.clone()),
            }
        }
        Some(std::borrow::Cow::Owned(out))
    }

    /// Whether `s` (lower case already for a case-folding pattern) matches.
    pub fn matches(&self, s: &str, ctx: &Context) -> bool {
        if let Some(stars) = &self.stars {
            return stars.matches(s);
        }
        match self.expand(ctx) {
            Some(tokens) => glob(&tokens, s.as_bytes(), self.fold_case),
            None => false,
        }
    }
}

/// Where `needle` first occurs in `hay`. Haystacks are short (an ARN), so
/// a scan beats setting up a substring searcher, and comparing the rest
/// only where the first and last bytes agree beats a comparison at every
/// offset.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let Some(&first) = needle.first() else {
        return Some(0);
    };
    let end = needle.len() - 1;
    let last_byte = needle[end];
    let last = hay.len().checked_sub(needle.len())?;
    (0..=last).find(|&i| {
        hay[i] == first && hay[i + end] == last_byte && same(&hay[i..i + needle.len()], needle)
    })
}

/// Byte equality without a call to `memcmp`: the strings compared here are
/// a few bytes long, and a policy compares hundreds of them per request.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn flush(text: &mut String, tokens: &mut Vec<Token>) {
    if !text.is_empty() {
        tokens.push(Token::Text(std::mem::take(text)));
    }
}

/// Glob matching with backtracking over the last `*` (linear in practice).
fn glob(tokens: &[Token], s: &[u8], fold_case: bool) -> bool {
    let eq = |a: &[u8], b: &[u8]| {
        if fold_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    let (mut t, mut i) = (0usize, 0usize);
    let mut back: Option<(usize, usize)> = None;
    loop {
        if t < tokens.len() {
            match &tokens[t] {
                Token::Star => {
                    back = Some((t, i));
                    t += 1;
                    continue;
                }
                Token::Question => {
                    if i < s.len() {
                        // One character, not one byte.
                        let len = utf8_len(s[i]);
                        i = (i + len).min(s.len());
                        t += 1;
                        continue;
                    }
                }
                Token::Text(x) | Token::Var(x) => {
                    let x = x.as_bytes();
                    if s.len() >= i + x.len() && eq(&s[i..i + x.len()], x) {
                        i += x.len();
                        t += 1;
                        continue;
                    }
                }
            }
        } else if i == s.len() {
            return true;
        }
        match back {
            Some((bt, bi)) if bi < s.len() => {
                let next = bi + utf8_len(s[bi]);
                back = Some((bt, next));
                t = bt + 1;
                i = next.min(s.len());
            }
            _ => return false,
        }
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests;
