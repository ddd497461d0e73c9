//! CloudWatch Logs filter patterns, compiled once per request and matched
//! against every scanned message (so matching must be cheap).
//!
//! Supported: terms (all must appear, case-sensitive substrings), quoted
//! phrases, `?term` alternatives (at least one must appear), `-term`
//! exclusions, and JSON patterns `{ $.a.b = "x*" && ($.n > 1 || $.ok IS TRUE) }`.
//! Space-delimited patterns (`[ip, user, ...]`) are not supported yet and are
//! refused rather than matched wrongly.

use memchr::memmem::Finder;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("Invalid filter pattern")]
pub struct InvalidPattern;

/// A compiled filter pattern.
#[derive(Debug)]
pub struct Pattern(Kind);

#[derive(Debug)]
enum Kind {
    /// The empty pattern: every event.
    All,
    Text(TextPattern),
    Json(JsonExpr),
}

#[derive(Debug, Default)]
struct TextPattern {
    required: Vec<Finder<'static>>,
    any: Vec<Finder<'static>>,
    excluded: Vec<Finder<'static>>,
}

impl Pattern {
    /// Compiles a pattern; the empty pattern matches every event.
    pub fn parse(src: &str) -> Result<Self, InvalidPattern> {
        let src = src.trim();
        if src.is_empty() {
            return Ok(Pattern(Kind::All));
        }
        if src.starts_with('{') {
            let inner = src
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .ok_or(InvalidPattern)?;
            let tokens = lex(inner)?;
            let mut p = Parser {
                tokens,
                pos: 0,
                depth: 0,
            };
            let expr = p.or()?;
            if p.pos != p.tokens.len() {
                return Err(InvalidPattern);
            }
            return Ok(Pattern(Kind::Json(expr)));
        }
        if src.starts_with('[') {
            return Err(InvalidPattern);
        }
        parse_text(src).map(|t| Pattern(Kind::Text(t)))
    }

    /// Whether `message` matches. An unparsable message never matches a JSON pattern.
    pub fn matches(&self, message: &str) -> bool {
        match &self.0 {
            Kind::All => true,
            Kind::Text(t) => t.matches(message.as_bytes()),
            Kind::Json(e) => {
                let trimmed = message.trim_start();
                if !trimmed.starts_with('{') && !trimmed.starts_with('[') {
                    return false;
                }
                match serde_json::from_str::<Value>(trimmed) {
                    Ok(v) => e.eval(&v),
                    Err(_) => false,
                }
            }
        }
    }
}

impl TextPattern {
    fn matches(&self, m: &[u8]) -> bool {
        self.required.iter().all(|f| f.find(m).is_some())
            && !self.excluded.iter().any(|f| f.find(m).is_some())
            && (self.any.is_empty() || self.any.iter().any(|f| f.find(m).is_some()))
    }
}

fn parse_text(src: &str) -> Result<TextPattern, InvalidPattern> {
    let mut out = TextPattern::default();
    let mut chars = src.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&c) = chars.peek() else { break };
        let kind = match c {
            '?' | '-' => {
                chars.next();
                c
            }
            _ => ' ',
        };
        let term = if chars.next_if_eq(&'"').is_some() {
            read_quoted(&mut chars)?
        } else {
            let mut s = String::new();
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                s.push(c);
            }
            s
        };
        if term.is_empty() {
            return Err(InvalidPattern);
        }
        let finder = Finder::new(term.as_bytes()).into_owned();
        match kind {
            '?' => out.any.push(finder),
            '-' => out.excluded.push(finder),
            _ => out.required.push(finder),
        }
    }
    Ok(out)
}

/// Reads a double-quoted string whose opening quote was consumed; `\"` and `\\` escape.
fn read_quoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<String, InvalidPattern> {
    let mut s = String::new();
    loop {
        match chars.next() {
            None => return Err(InvalidPattern),
            Some('"') => return Ok(s),
            Some('\\') => s.push(chars.next().ok_or(InvalidPattern)?),
            Some(c) => s.push(c),
        }
    }
}

// ---- JSON patterns -------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Selector(Vec<Step>),
    Op(Op),
    Str(String),
    Word(String),
    And,
    Or,
    Open,
    Close,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug)]
enum JsonExpr {
    And(Box<JsonExpr>, Box<JsonExpr>),
    Or(Box<JsonExpr>, Box<JsonExpr>),
    Compare(Vec<Step>, Op, Literal),
    Is(Vec<Step>, Value),
    NotExists(Vec<Step>),
}

#[derive(Debug)]
enum Literal {
    Number(f64),
    /// A string, possibly with `*` wildcards.
    Text(String),
}

fn lex(src: &str) -> Result<Vec<Tok>, InvalidPattern> {
    let mut out = Vec::new();
    let mut chars = src.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let two = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, second: char| {
            chars.next();
            chars.next_if_eq(&second).is_some()
        };
        let tok = match c {
            '(' => {
                chars.next();
                Tok::Open
            }
            ')' => {
                chars.next();
                Tok::Close
            }
            '&' if two(&mut chars, '&') => Tok::And,
            '|' if two(&mut chars, '|') => Tok::Or,
            '&' | '|' => return Err(InvalidPattern),
            '=' => {
                chars.next();
                Tok::Op(Op::Eq)
            }
            '!' if two(&mut chars, '=') => Tok::Op(Op::Ne),
            '!' => return Err(InvalidPattern),
            '<' => Tok::Op(if two(&mut chars, '=') { Op::Le } else { Op::Lt }),
            '>' => Tok::Op(if two(&mut chars, '=') { Op::Ge } else { Op::Gt }),
            '"' => {
                chars.next();
                Tok::Str(read_quoted(&mut chars)?)
            }
            '$' => {
                chars.next();
                Tok::Selector(lex_selector(&mut chars)?)
            }
            _ => {
                let mut w = String::new();
                while let Some(c) =
                    chars.next_if(|c| !c.is_whitespace() && !"()=!<>&|\"".contains(*c))
                {
                    w.push(c);
                }
                if w.is_empty() {
                    return Err(InvalidPattern);
                }
                Tok::Word(w)
            }
        };
        out.push(tok);
    }
    Ok(out)
}

fn lex_selector(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<Vec<Step>, InvalidPattern> {
    let mut steps = Vec::new();
    loop {
        if chars.next_if_eq(&'.').is_some() {
            let mut key = String::new();
            while let Some(c) = chars.next_if(|c| c.is_alphanumeric() || "_-@:".contains(*c)) {
                key.push(c);
            }
            if key.is_empty() {
                return Err(InvalidPattern);
            }
            steps.push(Step::Key(key));
        } else if chars.next_if_eq(&'[').is_some() {
            let mut n = String::new();
            while let Some(c) = chars.next_if(char::is_ascii_digit) {
                n.push(c);
            }
            if chars.next() != Some(']') {
                return Err(InvalidPattern);
            }
            steps.push(Step::Index(n.parse().map_err(|_| InvalidPattern)?));
        } else {
            break;
        }
    }
    if steps.is_empty() {
        return Err(InvalidPattern);
    }
    Ok(steps)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
    /// Parentheses open around the current token.
    depth: usize,
}

/// Deepest nesting of parentheses a JSON pattern may have: the parser
/// recurses per level, and a request thread's stack is small.
pub const MAX_NESTING: usize = 32;

impl Parser {
    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn or(&mut self) -> Result<JsonExpr, InvalidPattern> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            left = JsonExpr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<JsonExpr, InvalidPattern> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            left = JsonExpr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<JsonExpr, InvalidPattern> {
        match self.next() {
            Some(Tok::Open) => {
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(InvalidPattern);
                }
                let e = self.or()?;
                self.depth -= 1;
                match self.next() {
                    Some(Tok::Close) => Ok(e),
                    _ => Err(InvalidPattern),
                }
            }
            Some(Tok::Selector(sel)) => self.comparison(sel),
            _ => Err(InvalidPattern),
        }
    }

    fn comparison(&mut self, sel: Vec<Step>) -> Result<JsonExpr, InvalidPattern> {
        match self.next() {
            Some(Tok::Op(op)) => {
                let lit = match self.next() {
                    Some(Tok::Str(s)) => Literal::Text(s),
                    Some(Tok::Word(w)) => match w.parse::<f64>() {
                        Ok(n) => Literal::Number(n),
                        Err(_) => Literal::Text(w),
                    },
                    _ => return Err(InvalidPattern),
                };
                if matches!(lit, Literal::Text(_)) && !matches!(op, Op::Eq | Op::Ne) {
                    return Err(InvalidPattern);
                }
                Ok(JsonExpr::Compare(sel, op, lit))
            }
            Some(Tok::Word(w)) if w == "IS" => match self.next() {
                Some(Tok::Word(v)) => {
                    let v = match v.as_str() {
                        "TRUE" => Value::Bool(true),
                        "FALSE" => Value::Bool(false),
                        "NULL" => Value::Null,
                        _ => return Err(InvalidPattern),
                    };
                    Ok(JsonExpr::Is(sel, v))
                }
                _ => Err(InvalidPattern),
            },
            Some(Tok::Word(w)) if w == "NOT" => match self.next() {
                Some(Tok::Word(v)) if v == "EXISTS" => Ok(JsonExpr::NotExists(sel)),
                _ => Err(InvalidPattern),
            },
            _ => Err(InvalidPattern),
        }
    }
}

fn select<'v>(mut v: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    for s in steps {
        v = match s {
            Step::Key(k) => v.get(k.as_str())?,
            Step::Index(i) => v.get(*i)?,
        };
    }
    Some(v)
}

impl JsonExpr {
    fn eval(&self, doc: &Value) -> bool {
        match self {
            JsonExpr::And(a, b) => a.eval(doc) && b.eval(doc),
            JsonExpr::Or(a, b) => a.eval(doc) || b.eval(doc),
            JsonExpr::Is(sel, want) => select(doc, sel) == Some(want),
            JsonExpr::NotExists(sel) => select(doc, sel).is_none(),
            JsonExpr::Compare(sel, op, lit) => {
                let Some(v) = select(doc, sel) else {
                    return false;
                };
                match lit {
                    Literal::Number(n) => {
                        let got = match v {
                            Value::Number(x) => x.as_f64(),
                            Value::String(s) => s.parse::<f64>().ok(),
                            _ => None,
                        };
                        let Some(got) = got else { return false };
                        match op {
                            Op::Eq => got == *n,
                            Op::Ne => got != *n,
                            Op::Lt => got < *n,
                            Op::Le => got <= *n,
                            Op::Gt => got > *n,
                            Op::Ge => got >= *n,
                        }
                    }
                    Literal::Text(pat) => {
                        let got = match v {
                            Value::String(s) => s.clone(),
                            Value::Bool(b) => b.to_string(),
                            Value::Number(n) => n.to_string(),
                            _ => return false,
                        };
                        let eq = glob(pat, &got);
                        if *op == Op::Ne {
                            !eq
                        } else {
                            eq
                        }
                    }
                }
            }
        }
    }
}

/// `*` matches any run of characters; everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, msg: &str) -> bool {
        Pattern::parse(p).expect("valid pattern").matches(msg)
    }

    #[test]
    fn empty_matches_everything() {
        assert!(m("", "anything"));
        assert!(m("   ", ""));
    }

    #[test]
    fn terms_all_required_case_sensitive() {
        assert!(m("ERROR db", "ERROR: db down"));
        assert!(!m("ERROR db", "ERROR: cache down"));
        assert!(!m("error", "ERROR"));
    }

    #[test]
    fn quoted_phrase() {
        assert!(m("\"db down\"", "ERROR: db down"));
        assert!(!m("\"db down\"", "down db"));
        assert!(m(r#""say \"hi\"""#, r#"they say "hi""#));
    }

    #[test]
    fn alternatives_and_exclusions() {
        assert!(m("?ERROR ?WARN", "WARN low disk"));
        assert!(!m("?ERROR ?WARN", "INFO ok"));
        assert!(m("ERROR -timeout", "ERROR refused"));
        assert!(!m("ERROR -timeout", "ERROR timeout"));
        assert!(!m("ERROR -\"read timeout\"", "ERROR read timeout"));
    }

    #[test]
    fn json_equality_and_wildcards() {
        let msg = r#"{"level":"ERROR","user":{"id":"u-17","name":"Ann"},"tags":["a","b"]}"#;
        assert!(m(r#"{ $.level = "ERROR" }"#, msg));
        assert!(m("{ $.level = ERROR }", msg));
        assert!(m(r#"{ $.user.id = "u-*" }"#, msg));
        assert!(m(r#"{ $.user.name != "Bob" }"#, msg));
        assert!(!m(r#"{ $.user.name != "Ann" }"#, msg));
        assert!(m(r#"{ $.tags[1] = "b" }"#, msg));
        assert!(!m(r#"{ $.missing = "x" }"#, msg));
        assert!(m("{ $.missing NOT EXISTS }", msg));
        assert!(!m(r#"{ $.level = "ERROR" }"#, "not json ERROR"));
    }

    #[test]
    fn json_numbers_and_logic() {
        let msg = r#"{"latency":250,"status":"500","ok":false}"#;
        assert!(m("{ $.latency > 100 }", msg));
        assert!(!m("{ $.latency <= 100 }", msg));
        assert!(m("{ $.status = 500 }", msg));
        assert!(m("{ $.latency > 1000 || $.status >= 500 }", msg));
        assert!(!m("{ $.latency > 1000 && $.status >= 500 }", msg));
        assert!(m(
            "{ ($.latency > 1000 || $.ok IS FALSE) && $.status = 500 }",
            msg
        ));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for p in [
            "{ $.a = }",
            "{ $.a = 1",
            "{ a = 1 }",
            "{ $.a > \"x\" }",
            "{ ($.a = 1 }",
            "{ $.a = 1 & $.b = 2 }",
            "\"unterminated",
            "[ip, user]",
            "?",
        ] {
            assert_eq!(Pattern::parse(p).err(), Some(InvalidPattern), "{p}");
        }
    }

    #[test]
    fn glob_wildcards() {
        assert!(glob("a*c", "abbbc"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "a-b-c"));
        assert!(!glob("a*b*c", "a-c-b"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn nesting_is_bounded_not_a_stack_overflow() {
        let nested = |n: usize| format!("{{ {}$.a = 1{} }}", "(".repeat(n), ")".repeat(n));
        assert!(m(&nested(MAX_NESTING), r#"{"a": 1}"#));
        assert!(Pattern::parse(&nested(MAX_NESTING + 1)).is_err());
        // Recursed once per level, this overflowed the stack.
        assert!(Pattern::parse(&nested(1_000_000)).is_err());
    }
}
