//! Seeded request bodies from a [`Schema`]: mostly well-typed JSON built
//! from the real member names (with the values most likely to break
//! arithmetic or limits), mixed with wrong types, absurd numbers, huge
//! strings and lists, deep nesting, invalid UTF-8, lone surrogates and
//! truncated or empty bodies.

use crate::schema::{Schema, Shape};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::Value;
use std::fmt::Write as _;

/// Deeper than any decoder should follow (serde_json stops at 128).
const DEEP: usize = 10_000;
/// Below this depth every optional member is left out.
const MAX_DEPTH: usize = 8;

pub struct Gen<'a> {
    pub rng: StdRng,
    /// Strings worth trying: the seeded state's names and ARNs, enum values.
    pub words: &'a [String],
    /// Integer members whose in-range values are cut to at most this
    /// (the agent's long-poll `waitMillis`): out-of-range ones stay.
    pub caps: &'a [(&'a str, i128)],
}

impl Gen<'_> {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }

    fn pick<'s, T>(&mut self, items: &'s [T]) -> &'s T {
        &items[self.rng.gen_range(0..items.len())]
    }

    /// One body for an operation of `schema`.
    pub fn body(&mut self, schema: &Schema) -> Vec<u8> {
        let mut json = String::new();
        match self.rng.gen_range(0..100) {
            0..=2 => return Vec::new(),
            3 => return b" \n\t ".to_vec(),
            4..=6 => self.wrong(&mut json, 0),
            7 => nest(&mut json, DEEP, self.chance(0.5)),
            _ => self.value(&schema.root, schema, None, 0, &mut json),
        }
        self.damage(json.into_bytes(), 100)
    }

    /// A valid `example` of the operation with a member or two replaced by
    /// generated values (or left out, or one added), so the generated values
    /// reach past validation into what handlers compute with them.
    pub fn mutated(&mut self, example: &Value, schema: &Schema) -> Vec<u8> {
        let p = (2.0 / nodes(example) as f64).min(0.5);
        let mut json = String::new();
        self.emit(example, Some(&schema.root), schema, None, p, 0, &mut json);
        self.damage(json.into_bytes(), 400)
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        v: &Value,
        shape: Option<&Shape>,
        schema: &Schema,
        member: Option<&str>,
        p: f64,
        depth: usize,
        out: &mut String,
    ) {
        let shape = shape.map(|s| resolve(s, schema));
        if self.chance(p) {
            return match shape {
                Some(s) => self.value(s, schema, member, depth, out),
                None => self.wrong(out, depth),
            };
        }
        match v {
            Value::Object(map) => {
                let members = match shape {
                    Some(Shape::Struct(m)) => Some(m),
                    _ => None,
                };
                out.push('{');
                let mut first = true;
                for (k, x) in map {
                    if self.chance(p / 2.0) {
                        continue;
                    }
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    quote(out, k);
                    out.push(':');
                    let inner = match shape {
                        Some(Shape::Map(inner)) => Some(&**inner),
                        _ => members.and_then(|m| m.iter().find(|(n, _)| n == k).map(|(_, s)| s)),
                    };
                    self.emit(x, inner, schema, Some(k), p, depth + 1, out);
                }
                if let Some(m) = members.filter(|m| !m.is_empty() && self.chance(p)) {
                    let (name, s) = self.pick(m);
                    if !first {
                        out.push(',');
                    }
                    write!(out, "\"{name}\":").unwrap();
                    self.value(s, schema, Some(name), depth + 1, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                let inner = match shape {
                    Some(Shape::List(inner)) => Some(&**inner),
                    _ => None,
                };
                out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.emit(x, inner, schema, member, p, depth + 1, out);
                }
                out.push(']');
            }
            leaf => out.push_str(&leaf.to_string()),
        }
    }

    /// The body, now and then (`per` in 100 .. 1 in `per`) cut short, with
    /// invalid UTF-8 in a string, with random bytes, a BOM or a NUL.
    fn damage(&mut self, mut bytes: Vec<u8>, per: u32) -> Vec<u8> {
        match self.rng.gen_range(0..per) {
            0..=4 if !bytes.is_empty() => {
                let cut = self.rng.gen_range(0..bytes.len());
                bytes.truncate(cut);
            }
            5..=9 => {
                // Invalid UTF-8 at the start of some string (a key or a value).
                let quotes: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] == b'"').collect();
                if !quotes.is_empty() {
                    let at = *self.pick(&quotes) + 1;
                    let bad: &[&[u8]] = &[
                        b"\xff",
                        b"\xc0\x80",
                        b"\xed\xa0\x80",
                        b"\xf4\x90\x80\x80",
                        b"\xe2\x82",
                    ];
                    let bad = self.pick(bad);
                    bytes.splice(at..at, bad.iter().copied());
                }
            }
            10..=11 if !bytes.is_empty() => {
                for _ in 0..self.rng.gen_range(1..4) {
                    let i = self.rng.gen_range(0..bytes.len());
                    bytes[i] = self.rng.gen();
                }
            }
            12 => {
                bytes.splice(0..0, *b"\xef\xbb\xbf");
            }
            13 => bytes.push(0),
            _ => {}
        }
        bytes
    }

    fn value(
        &mut self,
        shape: &Shape,
        schema: &Schema,
        member: Option<&str>,
        depth: usize,
        out: &mut String,
    ) {
        let cap = member.and_then(|m| self.caps.iter().find(|(c, _)| *c == m));
        // A capped member keeps its type: a wrong one fails to decode anyway.
        if cap.is_none() && self.chance(0.06) {
            return self.wrong(out, depth);
        }
        match shape {
            Shape::Bool => out.push_str(if self.chance(0.5) { "true" } else { "false" }),
            Shape::Int(min, max) => {
                let n = self.int(*min, *max);
                match cap {
                    Some((_, cap)) if (*min..=*max).contains(&n) => {
                        write!(out, "{}", n.rem_euclid(cap + 1)).unwrap()
                    }
                    _ => write!(out, "{n}").unwrap(),
                }
            }
            Shape::Float => {
                let f = *self.pick(&[
                    "0",
                    "0.5",
                    "-1.5",
                    "1e308",
                    "-1e308",
                    "5e-324",
                    "1.7976931348623157e308",
                    "1700000000.123",
                    "-0.0",
                    "9007199254740993",
                    "1e-7",
                    "86400",
                ]);
                out.push_str(f)
            }
            Shape::Str => self.string(out),
            Shape::Any => self.wrong(out, depth),
            Shape::Optional(inner) => self.value(inner, schema, member, depth, out),
            Shape::List(inner) => {
                let n = match self.rng.gen_range(0..100) {
                    _ if depth >= MAX_DEPTH => 0,
                    0..=14 => 0,
                    15..=94 => self.rng.gen_range(1..4),
                    95..=97 => *self.pick(&[11, 21, 101]),
                    _ => *self.pick(&[1_001, 10_001]),
                };
                out.push('[');
                for i in 0..n {
                    if i > 0 {
                        out.push(',');
                    }
                    // Long lists repeat one cheap element: what is tested is the count.
                    if n > 3 && i > 0 {
                        out.push_str("\"x\"");
                    } else {
                        self.value(inner, schema, member, depth + 1, out);
                    }
                }
                out.push(']');
            }
            Shape::Map(inner) => {
                out.push('{');
                let n = if depth >= MAX_DEPTH {
                    0
                } else {
                    self.rng.gen_range(0..4)
                };
                for i in 0..n {
                    if i > 0 {
                        out.push(',');
                    }
                    self.string(out);
                    out.push(':');
                    self.value(inner, schema, member, depth + 1, out);
                }
                out.push('}');
            }
            Shape::Struct(members) => {
                out.push('{');
                let mut first = true;
                for (name, m) in members {
                    let optional = matches!(m, Shape::Optional(_));
                    let p = match (optional, depth >= MAX_DEPTH) {
                        (false, _) => 0.92,
                        (true, false) => 0.5,
                        (true, true) => 0.0,
                    };
                    // Now and then a member twice: the last one wins, or the decode refuses.
                    let times = if self.chance(0.02) { 2 } else { 1 };
                    for _ in 0..times {
                        if !self.chance(p) {
                            continue;
                        }
                        if !first {
                            out.push(',');
                        }
                        first = false;
                        write!(out, "\"{name}\":").unwrap();
                        self.value(m, schema, Some(name), depth + 1, out);
                    }
                }
                if self.chance(0.05) {
                    if !first {
                        out.push(',');
                    }
                    out.push_str("\"notAMember\":");
                    self.wrong(out, depth + 1);
                }
                out.push('}');
            }
            Shape::Recursive(name) => match schema.structs.get(name) {
                Some(s) if depth < MAX_DEPTH => self.value(&s.clone(), schema, member, depth, out),
                _ => out.push_str("{}"),
            },
        }
    }

    /// An integer of `min..=max` that arithmetic may trip on, or one just outside.
    fn int(&mut self, min: i128, max: i128) -> i128 {
        match self.rng.gen_range(0..16) {
            0 => min,
            1 => max,
            2 => max - 1,
            3 => min.saturating_add(1),
            4 => max + 1,
            5 => min - 1,
            6 => -1,
            7 => self.rng.gen_range(min.max(-1_000_000)..=max.min(1_000_000)),
            _ => *self.pick(&[
                0,
                1,
                2,
                10,
                11,
                20,
                21,
                100,
                101,
                200,
                1024,
                3653,
                10_000,
                65_535,
                65_536,
                i32::MAX as i128,
                i64::MAX as i128,
                1_700_000_000_000,
            ]),
        }
    }

    fn string(&mut self, out: &mut String) {
        match self.rng.gen_range(0..100) {
            0..=54 => {
                let w = self.pick(self.words).clone();
                quote(out, &w)
            }
            55..=64 => {
                let n = self.rng.gen_range(0..12);
                let s: String = (0..n)
                    .map(|_| self.rng.gen_range(b' '..=b'~') as char)
                    .collect();
                quote(out, &s)
            }
            65..=69 => {
                let n = *self.pick(&[256, 513, 2_001, 100_000, 1_100_000]);
                quote(out, &"a".repeat(n))
            }
            // Escapes the decoder must refuse or carry: lone surrogates,
            // a valid pair, NUL and control characters.
            70..=74 => out.push_str(self.pick::<&str>(&[
                "\"\\ud800\"",
                "\"\\udfff\"",
                "\"a\\ud800b\"",
                "\"\\ud800\\ud800\"",
                "\"\\ud83d\\ude00\"",
                "\"\\u0000\"",
                "\"\\u001f\\n\\t\"",
                "\"\\uffff\"",
                "\"\\x41\"",
                "\"\\u12\"",
            ])),
            // Expressions nested past any parser's stack.
            75..=76 => {
                let n = *self.pick(&[40, 1_000, 100_000]);
                let s = match self.rng.gen_range(0..3) {
                    0 => format!("{{ {}$.a = 1{} }}", "(".repeat(n), ")".repeat(n)),
                    1 => format!("{}attribute:a exists{}", "(".repeat(n), ")".repeat(n)),
                    _ => format!("{}agentConnected == true", "not ".repeat(n)),
                };
                quote(out, &s)
            }
            77..=79 => {
                let s = *self.pick(&[
                    "é",
                    "日本語",
                    "🦀",
                    "\u{200b}",
                    "\u{202e}abc",
                    "a\u{0301}",
                    "İ",
                    "ß",
                    "\u{fffd}",
                ]);
                quote(out, s)
            }
            _ => {
                let s = *self.pick(&[
                    "",
                    " ",
                    "*",
                    "-1",
                    "0",
                    "1e308",
                    "NaN",
                    "inf",
                    "-inf",
                    "99999999999999999999",
                    "0.25 vcpu",
                    "1e300 vcpu",
                    "inf vcpu",
                    "-5 GB",
                    "1e30 GB",
                    "9223372036854775807",
                    "arn:",
                    "arn:aws:ecs:us-east-1:000000000000:",
                    "a/b/c/d",
                    "::::",
                    "%00",
                    "b/0",
                    "f/340282366920938463463374607431768211455",
                    "f/-1",
                    "340282366920938463463374607431768211455",
                    "340282366920938463463374607431768211456",
                    "attribute:ecs.availability-zone",
                    "attribute:",
                    "memberOf(",
                    "((((((",
                    "{ $.a = 1 }",
                    "{ $.a.b.c[0] > 9223372036854775807 }",
                    "[a, b=*]",
                    "\"",
                    "?a ?b",
                ]);
                quote(out, s)
            }
        }
    }

    /// A value of any kind, likely the wrong one for where it goes.
    fn wrong(&mut self, out: &mut String, depth: usize) {
        match self.rng.gen_range(0..22) {
            0 => out.push_str("null"),
            1 => out.push_str("true"),
            2 => out.push_str("[]"),
            3 => out.push_str("{}"),
            4 => out.push_str("[1,\"a\",null,{}]"),
            5 => out.push_str("{\"a\":{\"b\":[{}]}}"),
            6 if depth < 3 => nest(out, DEEP, self.chance(0.5)),
            7 => nest(out, 100, self.chance(0.5)),
            8..=9 => self.string(out),
            _ => out.push_str(self.pick::<&str>(&[
                "0",
                "-1",
                "1e400",
                "-1e400",
                "-0",
                "0.1e-400",
                "18446744073709551615",
                "18446744073709551616",
                "-9223372036854775808",
                "-9223372036854775809",
                "9223372036854775807",
                "123456789012345678901234567890",
                "2147483648",
                "-2147483649",
                "1.5",
                "1E5",
                "01",
                "NaN",
                "Infinity",
            ])),
        }
    }
}

/// `depth` nested arrays (or objects).
fn nest(out: &mut String, depth: usize, objects: bool) {
    let (open, close) = if objects {
        ("{\"a\":", "}")
    } else {
        ("[", "]")
    };
    for _ in 0..depth {
        out.push_str(open);
    }
    out.push('1');
    for _ in 0..depth {
        out.push_str(close);
    }
}

fn quote(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

/// The shape itself, not its optionality or its name.
fn resolve<'s>(s: &'s Shape, schema: &'s Schema) -> &'s Shape {
    match s {
        Shape::Optional(inner) => resolve(inner, schema),
        Shape::Recursive(name) => schema.structs.get(name).unwrap_or(s),
        _ => s,
    }
}

fn nodes(v: &Value) -> usize {
    1 + match v {
        Value::Object(m) => m.values().map(nodes).sum(),
        Value::Array(a) => a.iter().map(nodes).sum(),
        _ => 0,
    }
}
