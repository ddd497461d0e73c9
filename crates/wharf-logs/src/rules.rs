//! CloudWatch Logs' ingestion rules for PutLogEvents, as pure functions so
//! they are tested apart from storage.

use crate::error::{invalid, LogResult};
use std::ops::Range;
use wharf_model::logs::{InputLogEvent, RejectedLogEventsInfo};

pub const MAX_BATCH_EVENTS: usize = 10_000;
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Bytes CloudWatch Logs adds to each message when sizing a batch.
pub const EVENT_OVERHEAD_BYTES: usize = 26;
const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// A batch may not span more than this from first to last timestamp.
pub const MAX_BATCH_SPAN_MS: i64 = DAY_MS;
/// Events further in the future than this are rejected as too new.
pub const MAX_FUTURE_MS: i64 = 2 * HOUR_MS;
/// Events older than this are rejected as too old.
pub const MAX_AGE_MS: i64 = 14 * DAY_MS;

/// The retention periods PutRetentionPolicy accepts.
pub const RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

pub fn check_retention(days: i32) -> LogResult<u32> {
    if RETENTION_DAYS.contains(&days) {
        Ok(days as u32)
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: {RETENTION_DAYS:?}"
        )))
    }
}

/// Whole-batch rules: a violation refuses the entire call.
pub fn check_batch(events: &[InputLogEvent]) -> LogResult<()> {
    if events.is_empty() {
        return Err(invalid("1 validation error detected: Value '[]' at 'logEvents' failed to satisfy constraint: Member must have length greater than or equal to 1"));
    }
    if events.len() > MAX_BATCH_EVENTS {
        return Err(invalid(format!(
            "1 validation error detected: Value at 'logEvents' failed to satisfy constraint: Member must have length less than or equal to {MAX_BATCH_EVENTS}"
        )));
    }
    let bytes: usize = events
        .iter()
        .map(|e| e.message.len() + EVENT_OVERHEAD_BYTES)
        .sum();
    if bytes > MAX_BATCH_BYTES {
        return Err(invalid(format!(
            "Upload too large: {bytes} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    if events.windows(2).any(|w| w[1].timestamp < w[0].timestamp) {
        return Err(invalid(
            "Log events in a single PutLogEvents request must be in chronological order.",
        ));
    }
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        if last.timestamp.saturating_sub(first.timestamp) > MAX_BATCH_SPAN_MS {
            return Err(invalid(
                "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
            ));
        }
    }
    Ok(())
}

/// Which events of a (chronological) batch are stored, and what the
/// response says about the others.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub accepted: Range<usize>,
    pub rejected: Option<RejectedLogEventsInfo>,
}

/// Splits a chronological batch into too-old/expired prefix, accepted
/// middle and too-new suffix.
pub fn classify(events: &[InputLogEvent], now: i64, retention_days: Option<u32>) -> Verdict {
    let too_old = events.partition_point(|e| e.timestamp < now - MAX_AGE_MS);
    let expired = retention_days
        .map(|d| events.partition_point(|e| e.timestamp < now - i64::from(d) * DAY_MS))
        .unwrap_or(0);
    let too_new = events.partition_point(|e| e.timestamp <= now + MAX_FUTURE_MS);
    let start = too_old.max(expired).min(too_new);
    let mut info = RejectedLogEventsInfo::default();
    if too_old > 0 {
        info.too_old_log_event_end_index = Some(too_old as i32 - 1);
    }
    if expired > 0 {
        info.expired_log_event_end_index = Some(expired as i32 - 1);
    }
    if too_new < events.len() {
        info.too_new_log_event_start_index = Some(too_new as i32);
    }
    let rejected = (info != RejectedLogEventsInfo::default()).then_some(info);
    Verdict {
        accepted: start..too_new,
        rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: i64, msg: &str) -> InputLogEvent {
        InputLogEvent {
            timestamp: ts,
            message: msg.into(),
        }
    }

    #[test]
    fn batch_limits() {
        assert!(check_batch(&[]).is_err());
        let many: Vec<_> = (0..MAX_BATCH_EVENTS + 1)
            .map(|i| ev(i as i64, "x"))
            .collect();
        assert!(check_batch(&many).is_err());
        assert!(check_batch(&many[..MAX_BATCH_EVENTS]).is_ok());
        // Exactly at the byte limit passes; one byte more fails.
        let msg = "a".repeat(MAX_BATCH_BYTES - EVENT_OVERHEAD_BYTES);
        assert!(check_batch(&[ev(0, &msg)]).is_ok());
        let msg = "a".repeat(MAX_BATCH_BYTES - EVENT_OVERHEAD_BYTES + 1);
        let e = check_batch(&[ev(0, &msg)]).unwrap_err();
        assert!(e.to_string().contains("Upload too large"));
    }

    #[test]
    fn order_and_span() {
        let e = check_batch(&[ev(2, "a"), ev(1, "b")]).unwrap_err();
        assert!(e.to_string().contains("chronological"));
        assert!(check_batch(&[ev(1, "a"), ev(1, "b")]).is_ok());
        assert!(check_batch(&[ev(0, "a"), ev(DAY_MS, "b")]).is_ok());
        let e = check_batch(&[ev(0, "a"), ev(DAY_MS + 1, "b")]).unwrap_err();
        assert!(e.to_string().contains("24 hours"));
    }

    #[test]
    fn classification() {
        let now = 100 * DAY_MS;
        let batch = [
            ev(now - 15 * DAY_MS, "too old"),
            ev(now - 8 * DAY_MS, "expired under 7-day retention"),
            ev(now, "ok"),
            ev(now + MAX_FUTURE_MS, "ok at the edge"),
            ev(now + MAX_FUTURE_MS + 1, "too new"),
        ];
        let v = classify(&batch, now, None);
        assert_eq!(v.accepted, 1..4);
        let info = v.rejected.unwrap();
        assert_eq!(info.too_old_log_event_end_index, Some(0));
        assert_eq!(info.expired_log_event_end_index, None);
        assert_eq!(info.too_new_log_event_start_index, Some(4));
        let v = classify(&batch, now, Some(7));
        assert_eq!(v.accepted, 2..4);
        assert_eq!(v.rejected.unwrap().expired_log_event_end_index, Some(1));
        assert_eq!(classify(&batch[2..4], now, Some(7)).rejected, None);
    }

    #[test]
    fn retention_values() {
        assert_eq!(check_retention(30).unwrap(), 30);
        assert!(check_retention(2).is_err());
        assert!(check_retention(0).is_err());
    }
}
