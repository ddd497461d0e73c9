//! Ingest throughput and FilterLogEvents latency of the log store.
//!
//! `cargo run --release -p wharf-logs --example logbench [EVENTS] [BATCH]`
//! (defaults: 1,000,000 events in batches of 5,000 (the most that fit in 1 MiB here) over 10 streams, on a
//! file in a temporary directory, fsync per batch as in the server).

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wharf_logs::filter::Pattern;
use wharf_logs::{api, LogStore, Pos, Scope, StreamSelection};
use wharf_model::logs::InputLogEvent;

const STREAMS: usize = 10;

/// `bench` of us-east-1, as the store keys it (`Scope::key`).
const GROUP: &str = "us-east-1:bench";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let batch: usize = args.next().map_or(Ok(5_000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let store = LogStore::open(&dir.path().join("logs.redb"))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    // The store keeps groups by region: the API's FilterLogEvents below
    // reads us-east-1's `bench`.
    store.create_group(GROUP, now, BTreeMap::new())?;
    for s in 0..STREAMS {
        store.create_stream(GROUP, &format!("stream-{s}"), now)?;
    }

    // Events spread over the last 10 hours; 1% carry the word "needle".
    let start = now - 10 * 3_600_000;
    let step = (10 * 3_600_000 / total as i64).max(1);
    let mut bytes = 0usize;
    let t = Instant::now();
    let mut i = 0usize;
    let mut calls = 0usize;
    while i < total {
        let n = batch.min(total - i);
        let events: Vec<InputLogEvent> = (i..i + n)
            .map(|k| InputLogEvent {
                timestamp: start + k as i64 * step,
                message: format!(
                    "2024-05-01T12:00:00Z INFO request id={k} path=/api/items/{} status=200 latency_ms={}{}",
                    k % 977,
                    k % 500,
                    if k % 100 == 0 { " needle" } else { "" }
                ),
            })
            .collect();
        bytes += events.iter().map(|e| e.message.len()).sum::<usize>();
        store.put_events(GROUP, &format!("stream-{}", calls % STREAMS), &events, now)?;
        i += n;
        calls += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "ingest: {total} events ({:.1} MiB) in {calls} batches of {batch}: {secs:.2}s = {:.0} events/s",
        bytes as f64 / (1 << 20) as f64,
        total as f64 / secs
    );

    for (label, pattern, limit) in [
        ("term matching 1%", "needle", 10_000),
        ("term matching nothing", "haystack", 10_000),
        ("empty pattern, first page", "", 10_000),
    ] {
        let p = Pattern::parse(pattern)?;
        let t = Instant::now();
        let page = store.filter(
            GROUP,
            &StreamSelection::All,
            0,
            Pos::MAX,
            &p,
            limit,
            usize::MAX,
        )?;
        println!(
            "filter ({label}, store): {} events, next={} in {:.0} ms",
            page.events.len(),
            page.next.is_some(),
            t.elapsed().as_secs_f64() * 1000.0
        );
    }

    // The same through the API, JSON encoding of the response included.
    let scope = Scope {
        region: "us-east-1".into(),
        account: "000000000000".into(),
    };
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    for pattern in ["needle", "haystack"] {
        let body =
            serde_json::json!({"logGroupName": "bench", "filterPattern": pattern}).to_string();
        let t = Instant::now();
        let out = rt.block_on(api::dispatch(
            &store,
            &scope,
            now,
            "FilterLogEvents",
            body.as_bytes(),
        ))?;
        println!(
            "FilterLogEvents {pattern:?} over {total} events (API): {:.0} ms, {} response bytes",
            t.elapsed().as_secs_f64() * 1000.0,
            out.len()
        );
    }
    let t = Instant::now();
    let tail = store.read_stream(GROUP, "stream-3", 0, Pos::MAX, false, 10_000)?;
    println!(
        "GetLogEvents tail of one stream: {} events in {:.1} ms",
        tail.len(),
        t.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
