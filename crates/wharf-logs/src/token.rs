//! Pagination tokens. Event positions are `(timestamp, ingest sequence)`
//! packed into a `u128` so "after this event" is simply `pos + 1`; list
//! tokens are the last name returned, base64-encoded to stay opaque.

use crate::error::{invalid, LogResult};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// An event's place in a stream's (and a group's) total order.
pub type Pos = u128;

/// Order-preserving map of a signed timestamp to unsigned.
pub fn biased(ts: i64) -> u64 {
    (ts as u64) ^ (1 << 63)
}

pub fn unbiased(b: u64) -> i64 {
    (b ^ (1 << 63)) as i64
}

pub fn pos(ts: i64, seq: u64) -> Pos {
    (u128::from(biased(ts)) << 64) | u128::from(seq)
}

/// The first position at or after `ts`.
pub fn at(ts: i64) -> Pos {
    pos(ts, 0)
}

/// GetLogEvents tokens: `f/<39 digits>` (events after) and `b/<39 digits>` (events before).
pub fn stream_token(forward: bool, p: Pos) -> String {
    format!("{}/{:039}", if forward { 'f' } else { 'b' }, p)
}

pub fn parse_stream_token(t: &str) -> LogResult<(bool, Pos)> {
    let bad = || invalid("The specified nextToken is invalid.");
    let (dir, digits) = t.split_once('/').ok_or_else(bad)?;
    let p = digits.parse::<u128>().map_err(|_| bad())?;
    match dir {
        "f" => Ok((true, p)),
        "b" => Ok((false, p)),
        _ => Err(bad()),
    }
}

/// FilterLogEvents tokens: the position of the last event examined.
pub fn filter_token(p: Pos) -> String {
    format!("{p:039}")
}

pub fn parse_filter_token(t: &str) -> LogResult<Pos> {
    t.parse::<u128>()
        .map_err(|_| invalid("The specified nextToken is invalid."))
}

pub fn name_token(name: &str) -> String {
    URL_SAFE_NO_PAD.encode(name)
}

pub fn parse_name_token(t: &str) -> LogResult<String> {
    URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| invalid("The specified nextToken is invalid."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_like_timestamps() {
        assert!(pos(-1, 9) < pos(0, 0));
        assert!(pos(5, 1) < pos(5, 2));
        assert!(pos(5, u64::MAX) < pos(6, 0));
        assert_eq!(unbiased(biased(-42)), -42);
    }

    #[test]
    fn tokens_round_trip() {
        let p = pos(1_700_000_000_000, 77);
        assert_eq!(
            parse_stream_token(&stream_token(true, p)).unwrap(),
            (true, p)
        );
        assert_eq!(
            parse_stream_token(&stream_token(false, p)).unwrap(),
            (false, p)
        );
        assert_eq!(parse_filter_token(&filter_token(p)).unwrap(), p);
        assert_eq!(parse_name_token(&name_token("a/b:c")).unwrap(), "a/b:c");
        assert!(parse_stream_token("x/1").is_err());
    }
}
