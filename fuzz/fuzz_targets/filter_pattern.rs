//! CloudWatch Logs filter patterns: the first line is the pattern, the rest
//! the message. No input may panic; a pattern that parses is matched
//! against the message and a few fixed ones, and matching is repeatable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_logs::filter::Pattern;

const MESSAGES: &[&str] = &[
    "",
    "ERROR db down",
    r#"{"a": 1, "b": {"c": [1, "x", null]}, "level": "ERROR", "ok": true}"#,
    r#"[1, 2, {"a": "b"}]"#,
    "127.0.0.1 - GET /index.html 200 5.5",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, message) = text.split_once('\n').unwrap_or((&text, ""));
    let Ok(p) = Pattern::parse(pattern) else {
        return;
    };
    for m in MESSAGES.iter().copied().chain([message]) {
        assert_eq!(p.matches(m), p.matches(m), "pattern {pattern:?} on {m:?}");
    }
});
