//! The ECS cluster query language: `subject operator [argument]` clauses
//! combined with `and`/`&&`, `or`/`||`, `not`/`!` and parentheses (not binds
//! tighter than and, and tighter than or). It filters ListContainerInstances
//! and drives `memberOf` placement constraints, so it is parsed once into a
//! [`Query`] and evaluated per host without allocating.
//!
//! Where ECS leaves room, Wharf decides:
//! - `matches`/`=~` patterns are wildcards, not full regular expressions:
//!   `*` (and `.*`, so the documented `t2.*` reads the same either way)
//!   matches any run of characters; everything else is literal.
//! - `attribute:` comparisons (`>`, `<`, ...) are numeric when both sides
//!   are numbers, else lexical; `agentVersion` compares dotted versions.
//! - `registeredAt` takes the documented dates (`2018-06-18`,
//!   `2018-06-18T22:28:28`, with `Z` or `+hh:mm`) or epoch milliseconds.
//! - Negated tests (`!=`, `not_in`, `not_matches`, `!exists`) are the exact
//!   negation of the positive test, so a host lacking the attribute matches
//!   `attribute:x != v`.

use crate::clock::Millis;
use crate::error::{invalid, CoreError};
use crate::records::{InstanceRecord, Resources};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::LazyLock;

/// ECS refuses longer expressions.
pub const MAX_EXPRESSION_LEN: usize = 2000;

/// What the query language and placement see of one container instance.
#[derive(Debug, Clone, Copy)]
pub struct HostView<'a> {
    pub instance: &'a InstanceRecord,
    /// What its tasks not yet STOPPED hold (their reservations).
    pub allocated: &'a Resources,
    /// Whether its agent holds a session right now.
    pub connected: bool,
    /// Tasks placed here and not yet stopped (ECS's `runningTasksCount`).
    pub running_tasks: usize,
    /// Task groups (`service:web`, `family:web`, ...) of those tasks, with
    /// how many of each; a zero count is the same as absent.
    pub groups: &'a GroupCounts,
    /// Tasks of one group placed here by a placement still under way, not
    /// yet in `groups` (so a placement of many tasks need not copy them).
    pub placing: Option<(&'a str, usize)>,
}

/// Tasks per group on one host. Hashed: placement looks up one group on
/// every host it considers, and a B-tree of heap strings costs a cache miss
/// per key compared.
pub type GroupCounts = HashMap<String, usize>;

static NO_GROUPS: LazyLock<GroupCounts> = LazyLock::new(GroupCounts::new);
/// Nothing held.
pub static NO_RESOURCES: Resources = Resources {
    cpu: 0,
    memory: 0,
    tcp_ports: std::collections::BTreeSet::new(),
    udp_ports: std::collections::BTreeSet::new(),
};

impl<'a> HostView<'a> {
    /// A view that knows only the record: connected, no tasks. Enough for
    /// expressions over attributes and instance fields.
    pub fn bare(instance: &'a InstanceRecord) -> Self {
        HostView {
            instance,
            allocated: &NO_RESOURCES,
            connected: true,
            running_tasks: 0,
            groups: &NO_GROUPS,
            placing: None,
        }
    }

    /// How many of this host's tasks belong to `group`.
    pub fn group_count(&self, group: &str) -> usize {
        let placing = match self.placing {
            Some((g, n)) if g == group => n,
            _ => 0,
        };
        self.groups.get(group).copied().unwrap_or(0) + placing
    }
}

/// A parsed expression, ready to evaluate against many hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct Query(Expr);

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Clause {
        subject: Subject,
        test: Test,
        /// The operator was the negated form (`!=`, `not_in`, ...).
        negate: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    AgentConnected,
    AgentVersion,
    Attribute(String),
    Ec2InstanceId,
    RegisteredAt,
    RunningTasksCount,
    TaskGroup,
}

impl Subject {
    fn name(&self) -> String {
        match self {
            Subject::AgentConnected => "agentConnected".into(),
            Subject::AgentVersion => "agentVersion".into(),
            Subject::Attribute(n) => format!("attribute:{n}"),
            Subject::Ec2InstanceId => "ec2InstanceId".into(),
            Subject::RegisteredAt => "registeredAt".into(),
            Subject::RunningTasksCount => "runningTasksCount".into(),
            Subject::TaskGroup => "task:group".into(),
        }
    }

    /// Operators ECS documents for this subject; attributes take them all.
    fn allows(&self, op: OpKind) -> bool {
        use OpKind::*;
        match self {
            Subject::Attribute(_) => true,
            Subject::AgentConnected | Subject::Ec2InstanceId | Subject::TaskGroup => {
                matches!(op, Eq | In | Matches)
            }
            Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => {
                matches!(op, Eq | Order)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Eq,
    Order,
    Exists,
    In,
    Matches,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Exists,
    Eq(Arg),
    /// The host's value compared with the argument gives one of these.
    Order(&'static [Ordering], Arg),
    In(Vec<Arg>),
    Matches(Pattern),
}

/// An argument with its number pre-parsed, so evaluation never re-parses it.
#[derive(Debug, Clone, PartialEq)]
struct Arg {
    text: String,
    num: Option<f64>,
}

/// Parses an expression, or says what is wrong with it in ECS's style.
pub fn parse(expr: &str) -> Result<Query, CoreError> {
    let bad = |why: String| invalid(format!("Invalid filter expression '{expr}': {why}"));
    if expr.chars().count() > MAX_EXPRESSION_LEN {
        return Err(invalid(format!(
            "Invalid filter expression: longer than {MAX_EXPRESSION_LEN} characters"
        )));
    }
    let tokens = tokenize(expr).map_err(bad)?;
    if tokens.is_empty() {
        return Err(bad("the expression is empty".into()));
    }
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let e = p.or().map_err(bad)?;
    match p.peek() {
        None => Ok(Query(e)),
        Some(Tok::Close) => Err(bad("unbalanced parentheses: unexpected ')'".into())),
        Some(t) => Err(bad(format!(
            "unexpected '{}' after a complete expression",
            t.show()
        ))),
    }
}

impl Query {
    pub fn matches(&self, host: &HostView) -> bool {
        self.0.eval(host)
    }

    /// Whether the answer depends only on the instance record (its
    /// attributes, ID, versions, registration time), not on its agent
    /// session or its tasks: then it holds for as long as the record's
    /// attributes and status do, and placement can compute it once per host
    /// instead of once per task.
    pub fn is_static(&self) -> bool {
        self.0.is_static()
    }

    /// For callers with only the record (ListContainerInstances): see
    /// [`HostView::bare`].
    pub fn matches_instance(&self, instance: &InstanceRecord) -> bool {
        self.matches(&HostView::bare(instance))
    }
}

// ---- tokens ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Op(&'static str),
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
}

impl Tok {
    fn show(&self) -> String {
        match self {
            Tok::Word(w) => w.clone(),
            Tok::Quoted(q) => format!("\"{q}\""),
            Tok::Op(o) => (*o).into(),
            Tok::Open => "(".into(),
            Tok::Close => ")".into(),
            Tok::OpenList => "[".into(),
            Tok::CloseList => "]".into(),
            Tok::Comma => ",".into(),
        }
    }
}

/// Longest first, so `==` wins over `=`-prefixed shorter symbols.
const SYMBOLS: &[&str] = &[
    "==", "!=", ">=", "<=", "=~", "!~", "&&", "||", ">", "<", "!",
];

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let single = match c {
            '(' => Some(Tok::Open),
            ')' => Some(Tok::Close),
            '[' => Some(Tok::OpenList),
            ']' => Some(Tok::CloseList),
            ',' => Some(Tok::Comma),
            _ => None,
        };
        if let Some(t) = single {
            out.push(t);
            rest = &rest[1..];
        } else if c == '"' || c == '\'' {
            let end = rest[1..]
                .find(c)
                .ok_or_else(|| "unterminated quoted string".to_string())?;
            out.push(Tok::Quoted(rest[1..1 + end].to_string()));
            rest = &rest[end + 2..];
        } else if let Some(sym) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            out.push(Tok::Op(sym));
            rest = &rest[sym.len()..];
        } else if c == '=' || c == '&' || c == '|' {
            return Err(format!("unknown operator '{c}'"));
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || "()[],\"'=!<>&|".contains(c))
                .unwrap_or(rest.len());
            out.push(Tok::Word(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    Ok(out)
}

// ---- parser ----

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
    /// Parentheses and `not`s around the current token.
    depth: usize,
}

/// Deepest nesting (parentheses and `not`s) an expression may have: the
/// parser recurses per level, and a request thread's stack is small.
pub const MAX_NESTING: usize = 32;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn eat(&mut self, words: &[&str], sym: &str) -> bool {
        let hit = match self.peek() {
            Some(Tok::Word(w)) => words.contains(&w.as_str()),
            Some(Tok::Op(o)) => *o == sym,
            _ => false,
        };
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.eat(&["or", "OR"], "||") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.unary()?;
        while self.eat(&["and", "AND"], "&&") {
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    /// One level deeper, if that is allowed.
    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!(
                "nested deeper than {MAX_NESTING} parentheses and nots"
            ));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat(&["not", "NOT"], "!") {
            self.enter()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        if self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            self.enter()?;
            let e = self.or()?;
            self.depth -= 1;
            return match self.next() {
                Some(Tok::Close) => Ok(e),
                None => Err("unbalanced parentheses: missing ')'".into()),
                Some(t) => Err(format!("expected ')' but found '{}'", t.show())),
            };
        }
        self.clause()
    }

    fn clause(&mut self) -> Result<Expr, String> {
        let subject = match self.next() {
            Some(Tok::Word(w)) => subject(&w)?,
            Some(t) => return Err(format!("expected a subject but found '{}'", t.show())),
            None => return Err("expected a subject at the end of the expression".into()),
        };
        let op = match self.next() {
            Some(Tok::Word(w)) => w,
            Some(Tok::Op("!")) => match self.next() {
                Some(Tok::Word(w)) if w == "exists" || w == "in" => format!("!{w}"),
                _ => return Err(format!("unknown operator '!' after '{}'", subject.name())),
            },
            Some(Tok::Op(o)) => o.to_string(),
            Some(t) => {
                return Err(format!(
                    "unknown operator '{}' after '{}'",
                    t.show(),
                    subject.name()
                ))
            }
            None => return Err(format!("missing operator after '{}'", subject.name())),
        };
        let (kind, negate) = match op.as_str() {
            "==" | "equals" => (OpKind::Eq, false),
            "!=" | "not_equals" => (OpKind::Eq, true),
            ">" | "greater_than" | ">=" | "greater_than_equal" | "<" | "less_than" | "<="
            | "less_than_equal" => (OpKind::Order, false),
            "exists" => (OpKind::Exists, false),
            "!exists" | "not_exists" => (OpKind::Exists, true),
            "in" => (OpKind::In, false),
            "!in" | "not_in" => (OpKind::In, true),
            "=~" | "matches" => (OpKind::Matches, false),
            "!~" | "not_matches" => (OpKind::Matches, true),
            _ => {
                return Err(format!(
                    "unknown operator '{op}' after '{}'",
                    subject.name()
                ))
            }
        };
        if !subject.allows(kind) {
            return Err(format!(
                "operator '{op}' is not valid for {}",
                subject.name()
            ));
        }
        let test = match kind {
            OpKind::Exists => Test::Exists,
            OpKind::Eq => Test::Eq(self.arg(&subject, &op)?),
            OpKind::Order => {
                let want: &'static [Ordering] = match op.as_str() {
                    ">" | "greater_than" => &[Ordering::Greater],
                    ">=" | "greater_than_equal" => &[Ordering::Greater, Ordering::Equal],
                    "<" | "less_than" => &[Ordering::Less],
                    _ => &[Ordering::Less, Ordering::Equal],
                };
                Test::Order(want, self.arg(&subject, &op)?)
            }
            OpKind::In => Test::In(self.list(&subject, &op)?),
            OpKind::Matches => Test::Matches(Pattern::new(&self.value(&op)?)),
        };
        Ok(Expr::Clause {
            subject,
            test,
            negate,
        })
    }

    fn value(&mut self, op: &str) -> Result<String, String> {
        match self.next() {
            Some(Tok::Word(w) | Tok::Quoted(w)) => Ok(w),
            Some(t) => Err(format!("missing value after '{op}' (found '{}')", t.show())),
            None => Err(format!("missing value after '{op}'")),
        }
    }

    fn arg(&mut self, subject: &Subject, op: &str) -> Result<Arg, String> {
        let text = self.value(op)?;
        let num = match subject {
            Subject::RunningTasksCount => Some(
                text.parse::<u64>()
                    .map_err(|_| format!("runningTasksCount needs a whole number, not '{text}'"))?
                    as f64,
            ),
            Subject::RegisteredAt => Some(
                parse_date(&text)
                    .ok_or_else(|| format!("registeredAt needs a date, not '{text}'"))?
                    as f64,
            ),
            _ => text.parse::<f64>().ok().filter(|n| n.is_finite()),
        };
        Ok(Arg { text, num })
    }

    /// `[a, b, c]`, or `(a, b, c)`.
    fn list(&mut self, subject: &Subject, op: &str) -> Result<Vec<Arg>, String> {
        let close = match self.next() {
            Some(Tok::OpenList) => Tok::CloseList,
            Some(Tok::Open) => Tok::Close,
            _ => return Err(format!("'{op}' needs a list such as [a, b]")),
        };
        let mut items = vec![self.arg(subject, op)?];
        loop {
            match self.next() {
                Some(Tok::Comma) => items.push(self.arg(subject, op)?),
                Some(t) if t == close => return Ok(items),
                _ => return Err(format!("unterminated list after '{op}'")),
            }
        }
    }
}

fn subject(w: &str) -> Result<Subject, String> {
    Ok(match w {
        "agentConnected" => Subject::AgentConnected,
        "agentVersion" => Subject::AgentVersion,
        "ec2InstanceId" => Subject::Ec2InstanceId,
        "registeredAt" => Subject::RegisteredAt,
        "runningTasksCount" => Subject::RunningTasksCount,
        "task:group" => Subject::TaskGroup,
        _ => match w.strip_prefix("attribute:") {
            Some("") => return Err("attribute name is empty".into()),
            Some(n)
                if n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-:/\\@".contains(c)) =>
            {
                Subject::Attribute(n.to_string())
            }
            Some(n) => return Err(format!("invalid attribute name '{n}'")),
            None => return Err(format!("unknown subject '{w}'")),
        },
    })
}

// ---- evaluation ----

/// A host's value for one subject.
enum Val<'h> {
    /// The attribute (or instance field) is not there.
    Absent,
    /// An attribute present without a value: it exists, equals nothing.
    Empty,
    Text(&'h str),
    Num(f64),
}

impl Expr {
    fn is_static(&self) -> bool {
        match self {
            Expr::Or(a, b) | Expr::And(a, b) => a.is_static() && b.is_static(),
            Expr::Not(e) => e.is_static(),
            Expr::Clause { subject, .. } => !matches!(
                subject,
                Subject::AgentConnected | Subject::RunningTasksCount | Subject::TaskGroup
            ),
        }
    }

    fn eval(&self, h: &HostView) -> bool {
        match self {
            Expr::Or(a, b) => a.eval(h) || b.eval(h),
            Expr::And(a, b) => a.eval(h) && b.eval(h),
            Expr::Not(e) => !e.eval(h),
            Expr::Clause {
                subject,
                test,
                negate,
            } => {
                let hit = if *subject == Subject::TaskGroup {
                    // Many-valued: true when any group on the host passes.
                    h.groups
                        .iter()
                        .any(|(g, n)| *n > 0 && test.eval(subject, &Val::Text(g)))
                } else {
                    test.eval(subject, &value(subject, h))
                };
                hit != *negate
            }
        }
    }
}

/// Whether a static query (see [`Query::is_static`]) could answer
/// differently for `b` than for `a`: they differ in a field that [`value`]
/// reads for a static subject. Kept beside `value` so the two agree.
pub fn static_fields_differ(a: &InstanceRecord, b: &InstanceRecord) -> bool {
    a.agent_version != b.agent_version
        || a.attributes != b.attributes
        || a.hostname != b.hostname
        || a.registered_at != b.registered_at
}

fn value<'h>(subject: &Subject, h: &HostView<'h>) -> Val<'h> {
    let text = |o: Option<&'h String>| o.map_or(Val::Absent, |s| Val::Text(s));
    let i = h.instance;
    match subject {
        Subject::AgentConnected => Val::Text(if h.connected { "true" } else { "false" }),
        Subject::AgentVersion => text(i.agent_version.as_ref()),
        Subject::Attribute(n) => match i.attributes.get(n) {
            None => Val::Absent,
            Some(None) => Val::Empty,
            Some(Some(v)) => Val::Text(v),
        },
        Subject::Ec2InstanceId => text(i.hostname.as_ref()),
        Subject::RegisteredAt => Val::Num(i.registered_at as f64),
        Subject::RunningTasksCount => Val::Num(h.running_tasks as f64),
        Subject::TaskGroup => Val::Absent, // handled by the caller
    }
}

impl Test {
    fn eval(&self, subject: &Subject, v: &Val) -> bool {
        match (self, v) {
            (Test::Exists, v) => !matches!(v, Val::Absent),
            (_, Val::Absent | Val::Empty) => false,
            (Test::Eq(arg), v) => equals(v, arg),
            (Test::In(args), v) => args.iter().any(|a| equals(v, a)),
            (Test::Order(want, arg), v) => {
                order(subject, v, arg).is_some_and(|o| want.contains(&o))
            }
            (Test::Matches(p), Val::Text(t)) => p.matches(t),
            (Test::Matches(_), Val::Num(_)) => false,
        }
    }
}

/// Text equality is exact ("1.0" is not "1"); numeric subjects compare numbers.
fn equals(v: &Val, arg: &Arg) -> bool {
    match v {
        Val::Text(t) => *t == arg.text,
        Val::Num(n) => arg.num == Some(*n),
        Val::Absent | Val::Empty => false,
    }
}

/// Numeric when both sides are numbers, by version for agentVersion, else
/// lexical.
fn order(subject: &Subject, v: &Val, arg: &Arg) -> Option<Ordering> {
    match v {
        Val::Num(n) => n.partial_cmp(&arg.num?),
        Val::Text(t) if *subject == Subject::AgentVersion => Some(version_cmp(t, &arg.text)),
        Val::Text(t) => match (t.parse::<f64>().ok().filter(|n| n.is_finite()), arg.num) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => Some((*t).cmp(arg.text.as_str())),
        },
        Val::Absent | Val::Empty => None,
    }
}

/// `1.14.5` < `1.9.0` lexically but not as versions: compare dot-separated
/// parts numerically where both are numbers.
fn version_cmp(a: &str, b: &str) -> Ordering {
    let mut xs = a.split(['.', '-']);
    let mut ys = b.split(['.', '-']);
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// A wildcard pattern, split on `*` once at parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern(Vec<String>);

impl Pattern {
    fn new(p: &str) -> Self {
        Pattern(
            p.replace(".*", "*")
                .split('*')
                .map(str::to_string)
                .collect(),
        )
    }

    fn matches(&self, s: &str) -> bool {
        let parts = &self.0;
        let (first, last) = (&parts[0], &parts[parts.len() - 1]);
        if parts.len() == 1 {
            return s == first;
        }
        if s.len() < first.len() + last.len() || !s.starts_with(first.as_str()) {
            return false;
        }
        if !s.ends_with(last.as_str()) {
            return false;
        }
        let mut middle = &s[first.len()..s.len() - last.len()];
        for part in &parts[1..parts.len() - 1] {
            match middle.find(part.as_str()) {
                Some(at) => middle = &middle[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

/// `2018-06-18`, `2018-06-18T22:28:28`, with `Z` or `±hh:mm`, or epoch millis.
fn parse_date(s: &str) -> Option<Millis> {
    if let Ok(ms) = s.parse::<Millis>() {
        return Some(ms);
    }
    let num = |r: &str| -> Option<i64> {
        (!r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
            .then(|| r.parse().ok())
            .flatten()
    };
    let (date, time) = s.split_once('T').unwrap_or((s, ""));
    let mut d = date.splitn(3, '-');
    let (y, m, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    // Four-digit years, as ISO 8601 writes them: the day arithmetic below
    // overflowed on a year of nine digits.
    if !(0..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let (clock, offset) = if time.is_empty() {
        ("00:00:00", 0)
    } else if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(at) = time.rfind(['+', '-']) {
        let (h, mi) = time[at + 1..].split_once(':')?;
        let (h, mi) = (num(h)?, num(mi)?);
        if h > 23 || mi > 59 {
            return None;
        }
        let sign = if time.as_bytes()[at] == b'-' { -1 } else { 1 };
        (&time[..at], sign * (h * 60 + mi))
    } else {
        (time, 0)
    };
    let mut c = clock.splitn(3, ':');
    let (hh, mm, ss) = (num(c.next()?)?, num(c.next()?)?, num(c.next()?)?);
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss - offset * 60;
    Some(secs * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst() -> InstanceRecord {
        // registered at 2018-06-18T22:28:28Z
        let registered_at = 1_529_360_908_000;
        InstanceRecord {
            attributes: [
                ("ecs.os-type".to_string(), Some("linux".to_string())),
                (
                    "ecs.instance-type".to_string(),
                    Some("t2.micro".to_string()),
                ),
                (
                    "ecs.availability-zone".to_string(),
                    Some("us-east-1a".to_string()),
                ),
                ("slots".to_string(), Some("12".to_string())),
                ("gpu".to_string(), None),
            ]
            .into(),
            agent_version: Some("1.14.5".into()),
            hostname: Some("i-abcd1234".into()),
            ..InstanceRecord::new("i", "a", "c", Resources::default(), registered_at)
        }
    }

    /// Evaluates `expr` on a connected host with 3 tasks: 2 of service:web,
    /// 1 of family:batch.
    fn eval(expr: &str) -> bool {
        let i = inst();
        let groups: GroupCounts = [
            ("service:web".to_string(), 2),
            ("family:batch".to_string(), 1),
        ]
        .into();
        let host = HostView {
            running_tasks: 3,
            groups: &groups,
            ..HostView::bare(&i)
        };
        parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .matches(&host)
    }

    fn err(expr: &str) -> String {
        match parse(expr) {
            Err(CoreError::InvalidParameter(m)) => m,
            other => panic!("{expr}: expected InvalidParameter, got {other:?}"),
        }
    }

    #[test]
    fn static_only_when_nothing_but_the_record_is_read() {
        let st = |e: &str| parse(e).unwrap().is_static();
        assert!(st("attribute:ecs.instance-type != sim.d"));
        assert!(st("ec2InstanceId in [a, b] or registeredAt > 2018-06-18"));
        assert!(st("not (agentVersion >= 1.2.0 and attribute:x exists)"));
        assert!(!st("attribute:x exists and runningTasksCount == 0"));
        assert!(!st("agentConnected == true"));
        assert!(!st("not task:group == service:web"));
    }

    #[test]
    fn equality_in_both_spellings() {
        assert!(eval("attribute:ecs.os-type == linux"));
        assert!(eval("attribute:ecs.os-type equals linux"));
        assert!(!eval("attribute:ecs.os-type == windows"));
        assert!(eval("attribute:ecs.os-type != windows"));
        assert!(!eval("attribute:ecs.os-type not_equals linux"));
        assert!(eval("ec2InstanceId == i-abcd1234"));
        assert!(eval("agentConnected == true"));
        assert!(!eval("agentConnected != true"));
        assert!(eval("agentVersion == 1.14.5"));
        // Absent attributes equal nothing, so `!=` holds for them.
        assert!(!eval("attribute:missing == x"));
        assert!(eval("attribute:missing != x"));
        // Present without a value: exists, but equals nothing.
        assert!(!eval("attribute:gpu == x"));
        // Without spaces too.
        assert!(eval("attribute:ecs.os-type==linux"));
    }

    #[test]
    fn exists_and_not_exists() {
        assert!(eval("attribute:gpu exists"));
        assert!(!eval("attribute:gpu !exists"));
        assert!(!eval("attribute:gpu not_exists"));
        assert!(eval("attribute:missing not_exists"));
        assert!(eval("attribute:missing !exists"));
        assert!(!eval("attribute:missing exists"));
    }

    #[test]
    fn in_and_not_in_lists() {
        assert!(eval(
            "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]"
        ));
        assert!(eval("ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']"));
        assert!(eval("attribute:ecs.os-type in (windows, linux)"));
        assert!(!eval("attribute:ecs.os-type not_in [windows, linux]"));
        assert!(!eval("attribute:ecs.os-type !in [linux]"));
        assert!(eval("attribute:ecs.os-type not_in [windows]"));
        assert!(!eval("attribute:missing in [a]"));
    }

    #[test]
    fn wildcard_matches() {
        assert!(eval("attribute:ecs.instance-type =~ t2.*"));
        assert!(eval("attribute:ecs.instance-type matches t2*"));
        assert!(eval("attribute:ecs.instance-type =~ *.micro"));
        assert!(eval("attribute:ecs.instance-type =~ t*mi*o"));
        assert!(eval("attribute:ecs.instance-type =~ t2.micro"));
        assert!(!eval("attribute:ecs.instance-type =~ g2.*"));
        assert!(!eval("attribute:ecs.instance-type =~ t2"));
        assert!(!eval("attribute:ecs.instance-type =~ *large"));
        assert!(eval("attribute:ecs.instance-type !~ g2.*"));
        assert!(!eval("attribute:ecs.instance-type not_matches t2.*"));
        assert!(eval("ec2InstanceId =~ i-*"));
        let p = Pattern::new("a*a");
        assert!(p.matches("aa") && p.matches("aba") && !p.matches("a"));
    }

    #[test]
    fn ordering_is_numeric_by_version_or_by_date() {
        assert!(eval("runningTasksCount > 1"));
        assert!(eval("runningTasksCount greater_than_equal 3"));
        assert!(!eval("runningTasksCount < 3"));
        assert!(eval("runningTasksCount less_than_equal 3"));
        assert!(eval("runningTasksCount == 3"));
        // "12" > "9" as numbers though not as text.
        assert!(eval("attribute:slots > 9"));
        assert!(!eval("attribute:slots less_than 9"));
        // Lexical when either side is not a number.
        assert!(eval("attribute:ecs.os-type > abc"));
        assert!(!eval("attribute:missing > 0"));
        // 1.14.5 is newer than 1.9.0, though not lexically.
        assert!(eval("agentVersion > 1.9.0"));
        assert!(eval("agentVersion < 1.15"));
        assert!(eval("registeredAt > 2018-06-18"));
        assert!(eval("registeredAt < 2018-06-19T00:00:00Z"));
        assert!(eval("registeredAt == 2018-06-18T22:28:28Z"));
        assert!(eval("registeredAt == 2018-06-18T22:28:28+00:00"));
        assert!(eval("registeredAt == 2018-06-18T23:28:28+01:00"));
        assert!(eval("registeredAt >= 2018-06-18T22:28:28"));
        assert!(eval("registeredAt == 1529360908000"));
    }

    #[test]
    fn task_group_looks_at_every_group_on_the_host() {
        assert!(eval("task:group == service:web"));
        assert!(eval("task:group == 'family:batch'"));
        assert!(!eval("task:group == service:db"));
        assert!(eval("task:group != service:db"));
        assert!(!eval("task:group != service:web"));
        assert!(eval("task:group in [service:db, family:batch]"));
        assert!(eval("task:group =~ service:*"));
        assert!(eval("not(task:group == database)"));
    }

    #[test]
    fn precedence_parentheses_and_not() {
        // and binds tighter than or: true or (false and false).
        assert!(eval(
            "attribute:ecs.os-type == linux or attribute:x exists and attribute:y exists"
        ));
        // Parentheses override it: (true or false) and false.
        assert!(!eval(
            "(attribute:ecs.os-type == linux or attribute:x exists) and attribute:y exists"
        ));
        // not binds tighter than and: (not false) and true.
        assert!(eval("not attribute:x exists and attribute:gpu exists"));
        assert!(!eval("not (attribute:x exists or attribute:gpu exists)"));
        assert!(eval("!attribute:x exists && attribute:gpu exists"));
        assert!(eval("!(attribute:x exists) || attribute:x exists"));
        assert!(eval("not not attribute:gpu exists"));
        assert!(eval(
            "attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone in [us-east-1a, us-east-1b] and not(task:group == service:db)"
        ));
        assert!(eval("((attribute:gpu exists))"));
    }

    #[test]
    fn quoted_values_keep_spaces_and_keywords() {
        let mut i = inst();
        i.attributes
            .insert("team".into(), Some("data and ml".into()));
        let q = parse("attribute:team == \"data and ml\"").unwrap();
        assert!(q.matches_instance(&i));
        let q = parse("attribute:team in ['x', 'data and ml']").unwrap();
        assert!(q.matches_instance(&i));
        // A bare view is connected and has no tasks.
        assert!(parse("agentConnected == true and runningTasksCount == 0")
            .unwrap()
            .matches_instance(&i));
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let cases = [
            ("", "the expression is empty"),
            ("   ", "the expression is empty"),
            ("foo == bar", "unknown subject 'foo'"),
            ("attribute: == x", "attribute name is empty"),
            ("attribute:x ~ y", "unknown operator '~'"),
            ("attribute:x = y", "unknown operator '='"),
            ("attribute:x", "missing operator after 'attribute:x'"),
            ("attribute:x ==", "missing value after '=='"),
            ("attribute:x == )", "missing value after '=='"),
            ("attribute:x in x", "'in' needs a list"),
            ("attribute:x in [a, b", "unterminated list"),
            ("(attribute:x exists", "missing ')'"),
            ("attribute:x exists)", "unexpected ')'"),
            (
                "attribute:x exists attribute:y exists",
                "unexpected 'attribute:y'",
            ),
            ("attribute:x exists and", "expected a subject"),
            ("attribute:x == 'abc", "unterminated quoted string"),
            ("runningTasksCount > many", "needs a whole number"),
            ("registeredAt < yesterday", "needs a date"),
            ("registeredAt < 2018-13-01", "needs a date"),
            ("agentConnected > 1", "not valid for agentConnected"),
            (
                "runningTasksCount exists",
                "not valid for runningTasksCount",
            ),
            ("ec2InstanceId < i-1", "not valid for ec2InstanceId"),
        ];
        for (expr, why) in cases {
            let m = err(expr);
            assert!(
                m.starts_with(&format!("Invalid filter expression '{expr}': ")),
                "{expr}: {m}"
            );
            assert!(m.contains(why), "{expr}: {m} lacks {why}");
        }
        let long = format!("attribute:x == {}", "a".repeat(MAX_EXPRESSION_LEN));
        assert!(err(&long).contains("longer than 2000 characters"));
        let just = format!("attribute:x == {}", "a".repeat(MAX_EXPRESSION_LEN - 15));
        assert_eq!(just.len(), MAX_EXPRESSION_LEN);
        assert!(parse(&just).is_ok());
    }

    #[test]
    fn nesting_is_bounded_not_a_stack_overflow() {
        let parens = |n: usize| format!("{}agentConnected == true{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&parens(MAX_NESTING)).is_ok());
        assert!(parse(&parens(MAX_NESTING + 1)).is_err());
        let nots = |n: usize| format!("{}agentConnected == true", "not ".repeat(n));
        assert!(parse(&nots(MAX_NESTING)).is_ok());
        assert!(parse(&nots(MAX_NESTING + 1)).is_err());
        // Within the length limit, these recursed once per level.
        assert!(parse(&parens(990)).is_err());
        assert!(parse(&"!".repeat(1_990)).is_err());
    }

    #[test]
    fn dates_out_of_range_are_refused_not_overflowed() {
        // Found by fuzz/cluster_query: a nine-digit year overflowed.
        for d in [
            "403699999-02-18T22:01:00",
            "99999999999999999-01-01",
            "2018-06-18T22:28:28+99999999999999:00",
            "2018-06-18T22:28:28+24:00",
        ] {
            let e = parse(&format!("registeredAt >= {d}")).unwrap_err();
            assert_eq!(e.code(), "InvalidParameterException", "{d}");
        }
        let h = inst();
        assert!(parse("registeredAt >= 0000-01-01")
            .unwrap()
            .matches_instance(&h));
        assert!(parse("registeredAt < 9999-12-31T23:59:59-23:59")
            .unwrap()
            .matches_instance(&h));
    }
}
