//! The log store and the API over it, without HTTP.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use wharf_logs::filter::Pattern;
use wharf_logs::{api, at, LogError, LogStore, Pos, Scope, StreamSelection};
use wharf_model::logs::InputLogEvent;

const NOW: i64 = 1_700_000_000_000;
const DAY: i64 = 86_400_000;

fn ev(ts: i64, msg: impl Into<String>) -> InputLogEvent {
    InputLogEvent {
        timestamp: ts,
        message: msg.into(),
    }
}

fn store_with(group: &str, streams: &[&str]) -> LogStore {
    let s = LogStore::in_memory().unwrap();
    s.create_group(group, NOW, BTreeMap::new()).unwrap();
    for st in streams {
        s.create_stream(group, st, NOW).unwrap();
    }
    s
}

fn all(s: &LogStore, g: &str, st: &str) -> Vec<(i64, String)> {
    s.read_stream(g, st, 0, Pos::MAX, true, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.timestamp, e.message))
        .collect()
}

#[test]
fn a_stream_reads_in_time_order_across_batches() {
    let s = store_with("g", &["a"]);
    s.put_events(
        "g",
        "a",
        &[ev(NOW - 10, "late1"), ev(NOW - 5, "late2")],
        NOW,
    )
    .unwrap();
    s.put_events("g", "a", &[ev(NOW - 20, "early"), ev(NOW - 5, "tie")], NOW)
        .unwrap();
    assert_eq!(
        all(&s, "g", "a"),
        vec![
            (NOW - 20, "early".into()),
            (NOW - 10, "late1".into()),
            (NOW - 5, "late2".into()),
            (NOW - 5, "tie".into()),
        ]
    );
    let info = s.stream("g", "a").unwrap();
    assert_eq!(info.first_event, Some(NOW - 20));
    assert_eq!(info.last_event, Some(NOW - 5));
    assert_eq!(info.stored_bytes, 5 + 5 + 5 + 3);
    // Tail reads return the last events, oldest first.
    let tail = s.read_stream("g", "a", 0, Pos::MAX, false, 2).unwrap();
    assert_eq!(tail[0].message, "late2");
    assert_eq!(tail[1].message, "tie");
}

#[test]
fn missing_group_and_stream() {
    let s = store_with("g", &["a"]);
    let e = s.put_events("nope", "a", &[ev(NOW, "x")], NOW).unwrap_err();
    assert!(matches!(e, LogError::GroupNotFound));
    let e = s.put_events("g", "nope", &[ev(NOW, "x")], NOW).unwrap_err();
    assert!(matches!(e, LogError::StreamNotFound));
    assert!(matches!(
        s.create_group("g", NOW, BTreeMap::new()),
        Err(LogError::GroupExists)
    ));
    assert!(matches!(
        s.create_stream("g", "a", NOW),
        Err(LogError::StreamExists)
    ));
}

#[test]
fn put_rejects_old_expired_and_new_events_but_keeps_the_rest() {
    let s = store_with("g", &["a"]);
    s.update_group("g", |g| {
        g.retention_days = Some(1);
        Ok(())
    })
    .unwrap();
    let out = s
        .put_events(
            "g",
            "a",
            &[ev(NOW - DAY - 1, "expired"), ev(NOW - DAY + 1, "ok")],
            NOW,
        )
        .unwrap();
    assert_eq!(out.accepted, 1);
    let info = out.rejected.unwrap();
    assert_eq!(info.expired_log_event_end_index, Some(0));
    let out = s
        .put_events(
            "g",
            "a",
            &[ev(NOW, "ok"), ev(NOW + 3 * 3_600_000, "new")],
            NOW,
        )
        .unwrap();
    assert_eq!(out.rejected.unwrap().too_new_log_event_start_index, Some(1));
    assert_eq!(
        all(&s, "g", "a"),
        vec![(NOW - DAY + 1, "ok".into()), (NOW, "ok".into())]
    );
    // Whole-batch violations store nothing.
    assert!(s
        .put_events("g", "a", &[ev(NOW, "b"), ev(NOW - 1, "a")], NOW)
        .is_err());
    assert_eq!(all(&s, "g", "a").len(), 2);
}

/// Pages through FilterLogEvents with a small limit and checks the union is
/// exactly the unpaged answer: no event repeated, none skipped.
#[test]
fn filter_pages_never_repeat_or_skip_with_many_streams_and_equal_timestamps() {
    let names: Vec<String> = (0..25).map(|i| format!("s{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let s = store_with("g", &refs);
    for (i, n) in names.iter().enumerate() {
        // Only 5 distinct timestamps: lots of ties within and across streams.
        let batch: Vec<_> = (0..40)
            .map(|j| {
                ev(
                    NOW - 100 + (j / 8) as i64,
                    format!("{n} e{j} {}", if j % 3 == 0 { "hit" } else { "miss" }),
                )
            })
            .collect();
        s.put_events("g", n, &batch, NOW + i as i64).unwrap();
    }
    let all_pat = Pattern::parse("").unwrap();
    let full = s
        .filter(
            "g",
            &StreamSelection::All,
            0,
            Pos::MAX,
            &all_pat,
            usize::MAX,
            usize::MAX,
        )
        .unwrap();
    assert_eq!(full.events.len(), 25 * 40);
    assert!(full.next.is_none());
    assert!(full
        .events
        .windows(2)
        .all(|w| w[0].event.pos() < w[1].event.pos()));
    // Interleaved across streams: the first 25 events (timestamp NOW-100) come from several streams.
    let first_streams: std::collections::BTreeSet<_> =
        full.events[..50].iter().map(|e| e.stream.clone()).collect();
    assert!(first_streams.len() > 1);

    for (pattern, limit, budget) in [
        ("", 7, usize::MAX),
        ("hit", 3, usize::MAX),
        ("hit", 1000, 11),
    ] {
        let pat = Pattern::parse(pattern).unwrap();
        let want: Vec<_> = full
            .events
            .iter()
            .filter(|e| pat.matches(&e.event.message))
            .map(|e| e.event.seq)
            .collect();
        let mut got = Vec::new();
        let mut lo = 0;
        let mut pages = 0;
        loop {
            let page = s
                .filter(
                    "g",
                    &StreamSelection::All,
                    lo,
                    Pos::MAX,
                    &pat,
                    limit,
                    budget,
                )
                .unwrap();
            assert!(page.events.len() <= limit);
            got.extend(page.events.iter().map(|e| e.event.seq));
            pages += 1;
            match page.next {
                Some(p) => lo = p + 1,
                None => break,
            }
        }
        assert_eq!(
            got, want,
            "pattern {pattern:?} limit {limit} budget {budget}"
        );
        assert!(pages > 1);
    }

    // A stream selection by prefix and by names.
    let page = s
        .filter(
            "g",
            &StreamSelection::Prefix("s0".into()),
            0,
            Pos::MAX,
            &all_pat,
            usize::MAX,
            usize::MAX,
        )
        .unwrap();
    assert_eq!(page.events.len(), 10 * 40);
    let page = s
        .filter(
            "g",
            &StreamSelection::Names(vec!["s03".into(), "s17".into(), "missing".into()]),
            at(NOW - 99),
            at(NOW - 98),
            &all_pat,
            usize::MAX,
            usize::MAX,
        )
        .unwrap();
    assert_eq!(page.events.len(), 2 * 8);
}

#[test]
fn retention_sweep_really_deletes() {
    let s = store_with("g", &["a", "b"]);
    let old: Vec<_> = (0..100).map(|i| ev(NOW - 3 * DAY + i, "old")).collect();
    let new: Vec<_> = (0..10).map(|i| ev(NOW + i, "new")).collect();
    for st in ["a", "b"] {
        s.put_events("g", st, &old, NOW).unwrap();
        s.put_events("g", st, &new, NOW).unwrap();
    }
    assert_eq!(s.sweep_retention(NOW).unwrap(), 0, "no retention set");
    s.update_group("g", |g| {
        g.retention_days = Some(1);
        Ok(())
    })
    .unwrap();
    assert_eq!(s.sweep_retention(NOW).unwrap(), 200);
    for st in ["a", "b"] {
        let left = all(&s, "g", st);
        assert_eq!(left.len(), 10);
        assert!(left.iter().all(|(_, m)| m == "new"));
        let info = s.stream("g", st).unwrap();
        assert_eq!(info.first_event, Some(NOW));
        assert_eq!(info.stored_bytes, 30);
    }
    assert_eq!(s.group("g").unwrap().stored_bytes, 60);
    assert_eq!(s.sweep_retention(NOW).unwrap(), 0);
}

#[test]
fn deleting_a_stream_or_group_deletes_its_events() {
    let s = store_with("g", &["a", "b"]);
    s.put_events("g", "a", &[ev(NOW, "a1")], NOW).unwrap();
    s.put_events("g", "b", &[ev(NOW, "b1")], NOW).unwrap();
    s.delete_stream("g", "a").unwrap();
    s.create_stream("g", "a", NOW).unwrap();
    assert!(all(&s, "g", "a").is_empty());
    assert_eq!(all(&s, "g", "b").len(), 1);
    assert_eq!(s.group("g").unwrap().stored_bytes, 2);
    s.delete_group("g").unwrap();
    s.create_group("g", NOW, BTreeMap::new()).unwrap();
    s.create_stream("g", "b", NOW).unwrap();
    assert!(all(&s, "g", "b").is_empty());
}

#[test]
fn events_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.redb");
    {
        let s = LogStore::open(&path).unwrap();
        s.create_group("g", NOW, BTreeMap::new()).unwrap();
        s.create_stream("g", "a", NOW).unwrap();
        let batch: Vec<_> = (0..1000).map(|i| ev(NOW + i, format!("m{i}"))).collect();
        s.put_events("g", "a", &batch, NOW).unwrap();
    }
    let s = LogStore::open(&path).unwrap();
    let events = all(&s, "g", "a");
    assert_eq!(events.len(), 1000);
    assert_eq!(events[999], (NOW + 999, "m999".into()));
    // Sequences continue after a restart: a new event never collides with an old one.
    s.put_events("g", "a", &[ev(NOW, "after restart")], NOW)
        .unwrap();
    assert_eq!(all(&s, "g", "a").len(), 1001);
}

// ---- through the API ------------------------------------------------------

async fn call(s: &LogStore, op: &str, body: Value) -> Result<Value, wharf_protocol::AwsError> {
    let scope = Scope {
        region: "eu-west-1".into(),
        account: "000000000000".into(),
    };
    let out = api::dispatch(s, &scope, NOW, op, body.to_string().as_bytes()).await?;
    Ok(serde_json::from_slice(&out).unwrap())
}

#[tokio::test]
async fn get_log_events_tokens() {
    // The API keeps groups by region (see `Scope::key`).
    let s = store_with("eu-west-1:g", &["a"]);
    let batch: Vec<_> = (0..25).map(|i| ev(NOW + i / 2, format!("m{i}"))).collect();
    s.put_events("eu-west-1:g", "a", &batch, NOW).unwrap();
    let msgs = |v: &Value| -> Vec<String> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect()
    };
    // From the head, forward in pages of 10.
    let mut r = call(
        &s,
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "a", "startFromHead": true, "limit": 10}),
    )
    .await
    .unwrap();
    let mut seen = msgs(&r);
    loop {
        let tok = r["nextForwardToken"].as_str().unwrap().to_owned();
        assert!(tok.starts_with("f/"));
        r = call(
            &s,
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "a", "nextToken": tok, "limit": 10}),
        )
        .await
        .unwrap();
        if msgs(&r).is_empty() {
            assert_eq!(
                r["nextForwardToken"],
                tok.as_str(),
                "the end repeats the token"
            );
            break;
        }
        seen.extend(msgs(&r));
    }
    assert_eq!(seen, (0..25).map(|i| format!("m{i}")).collect::<Vec<_>>());
    // New events show up behind the token at the end.
    let tok = r["nextForwardToken"].as_str().unwrap().to_owned();
    s.put_events("eu-west-1:g", "a", &[ev(NOW + 100, "later")], NOW)
        .unwrap();
    let r2 = call(
        &s,
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "a", "nextToken": tok}),
    )
    .await
    .unwrap();
    assert_eq!(msgs(&r2), vec!["later"]);

    // From the tail (the default), backward in pages of 10.
    let mut r = call(
        &s,
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "a", "limit": 10}),
    )
    .await
    .unwrap();
    let mut back = msgs(&r);
    assert_eq!(back.last().unwrap(), "later");
    loop {
        let tok = r["nextBackwardToken"].as_str().unwrap().to_owned();
        assert!(tok.starts_with("b/"));
        r = call(
            &s,
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "a", "nextToken": tok, "limit": 10}),
        )
        .await
        .unwrap();
        if msgs(&r).is_empty() {
            break;
        }
        let mut page = msgs(&r);
        page.extend(back);
        back = page;
    }
    assert_eq!(back.len(), 26);
    assert_eq!(back[0], "m0");
}

#[tokio::test]
async fn api_errors_and_listing() {
    let s = LogStore::in_memory().unwrap();
    let e = call(&s, "DescribeLogStreams", json!({"logGroupName": "nope"}))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        (
            "ResourceNotFoundException",
            "The specified log group does not exist."
        )
    );
    call(
        &s,
        "CreateLogGroup",
        json!({"logGroupName": "/ecs/web", "tags": {"team": "a"}}),
    )
    .await
    .unwrap();
    let e = call(&s, "CreateLogGroup", json!({"logGroupName": "/ecs/web"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "ResourceAlreadyExistsException");
    let e = call(&s, "CreateLogGroup", json!({"logGroupName": "bad name"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
    let e = call(&s, "PutLogEvents", json!({"logGroupName": "/ecs/web", "logStreamName": "x", "logEvents": [{"timestamp": NOW, "message": "m"}]})).await.unwrap_err();
    assert_eq!(e.message, "The specified log stream does not exist.");
    let e = call(&s, "CreateExportTask", json!({})).await.unwrap_err();
    assert_eq!(e.code, "InvalidOperationException");
    let e = call(&s, "NoSuchThing", json!({})).await.unwrap_err();
    assert_eq!(e.code, "UnknownOperationException");
    let e = call(
        &s,
        "PutRetentionPolicy",
        json!({"logGroupName": "/ecs/web", "retentionInDays": 2}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
    let e = call(
        &s,
        "FilterLogEvents",
        json!({"logGroupName": "/ecs/web", "filterPattern": "{ $.a = "}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("InvalidParameterException", "Invalid filter pattern")
    );

    for (st, ts) in [("b", NOW - 5), ("a", NOW - 1), ("c", NOW - 9)] {
        call(
            &s,
            "CreateLogStream",
            json!({"logGroupName": "/ecs/web", "logStreamName": st}),
        )
        .await
        .unwrap();
        call(&s, "PutLogEvents", json!({"logGroupName": "/ecs/web", "logStreamName": st, "logEvents": [{"timestamp": ts, "message": "m"}]})).await.unwrap();
    }
    let names = |v: &Value| -> Vec<String> {
        v["logStreams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["logStreamName"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = call(
        &s,
        "DescribeLogStreams",
        json!({"logGroupName": "/ecs/web", "orderBy": "LastEventTime", "descending": true}),
    )
    .await
    .unwrap();
    assert_eq!(names(&r), ["a", "b", "c"]);
    let r = call(
        &s,
        "DescribeLogStreams",
        json!({"logGroupName": "/ecs/web", "limit": 2}),
    )
    .await
    .unwrap();
    assert_eq!(names(&r), ["a", "b"]);
    let r = call(
        &s,
        "DescribeLogStreams",
        json!({"logGroupName": "/ecs/web", "limit": 2, "nextToken": r["nextToken"]}),
    )
    .await
    .unwrap();
    assert_eq!(names(&r), ["c"]);
    assert!(r.get("nextToken").is_none());
    let e = call(
        &s,
        "DescribeLogStreams",
        json!({"logGroupName": "/ecs/web", "orderBy": "LastEventTime", "logStreamNamePrefix": "a"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");

    let r = call(
        &s,
        "DescribeLogGroups",
        json!({"logGroupNamePrefix": "/ecs"}),
    )
    .await
    .unwrap();
    let g = &r["logGroups"][0];
    assert_eq!(
        g["arn"],
        "arn:aws:logs:eu-west-1:000000000000:log-group:/ecs/web:*"
    );
    assert_eq!(g["storedBytes"], 3);
    let arn = "arn:aws:logs:eu-west-1:000000000000:log-group:/ecs/web";
    call(
        &s,
        "TagResource",
        json!({"resourceArn": arn, "tags": {"env": "dev"}}),
    )
    .await
    .unwrap();
    call(
        &s,
        "UntagResource",
        json!({"resourceArn": arn, "tagKeys": ["team"]}),
    )
    .await
    .unwrap();
    let r = call(&s, "ListTagsForResource", json!({"resourceArn": arn}))
        .await
        .unwrap();
    assert_eq!(r["tags"], json!({"env": "dev"}));
}

/// Listings start at the token: names after it under the prefix, in order,
/// whether the token sorts before, inside or after the prefix's names.
#[test]
fn listings_resume_after_the_token_within_the_prefix() {
    let s = store_with("g", &["a", "b/1", "b/2", "b/3", "c"]);
    for name in ["a", "b/1", "b/2", "b/3"] {
        s.create_group(name, NOW, BTreeMap::new()).unwrap();
    }
    let groups = |after: Option<&str>, limit| -> Vec<String> {
        let found = s.list_groups("b/", after, limit).unwrap();
        found.into_iter().map(|g| g.name).collect()
    };
    let streams = |after: Option<&str>, limit| -> Vec<String> {
        let found = s.list_streams("g", "b/", after, limit).unwrap();
        found.into_iter().map(|st| st.name).collect()
    };
    for list in [
        &groups as &dyn Fn(Option<&str>, usize) -> Vec<String>,
        &streams,
    ] {
        assert_eq!(list(None, 2), ["b/1", "b/2"]);
        assert_eq!(list(Some("b/2"), 10), ["b/3"]);
        assert_eq!(list(Some("b/1x"), 10), ["b/2", "b/3"]);
        assert_eq!(list(Some("a"), 10), ["b/1", "b/2", "b/3"]);
        assert!(list(Some("b/3"), 10).is_empty());
        assert!(list(Some("c"), 10).is_empty());
    }
}

#[tokio::test]
async fn filter_patterns_longer_or_deeper_than_allowed_are_refused() {
    // The API keeps groups by region (see `Scope::key`).
    let s = store_with("eu-west-1:g", &["a"]);
    // A million nested parentheses once overflowed the request thread's stack.
    for pattern in [
        format!(
            "{{ {}$.a = 1{} }}",
            "(".repeat(1_000_000),
            ")".repeat(1_000_000)
        ),
        "a".repeat(1025),
        format!("{{ {}$.a = 1{} }}", "(".repeat(40), ")".repeat(40)),
    ] {
        let e = call(
            &s,
            "FilterLogEvents",
            json!({"logGroupName": "g", "filterPattern": pattern}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, "InvalidParameterException", "{e}");
    }
    let just = "a".repeat(1024);
    call(
        &s,
        "FilterLogEvents",
        json!({"logGroupName": "g", "filterPattern": just}),
    )
    .await
    .unwrap();
}

/// Log groups are regional: the same name in two regions is two groups,
/// and an ARN of another region names nothing.
#[tokio::test]
async fn log_groups_of_two_regions_are_apart() {
    let s = LogStore::in_memory().unwrap();
    let in_region = |region: &str, op: &'static str, body: Value| {
        let s = s.clone();
        let scope = Scope {
            region: region.into(),
            account: "000000000000".into(),
        };
        async move {
            let out = api::dispatch(&s, &scope, NOW, op, body.to_string().as_bytes()).await?;
            Ok::<Value, wharf_protocol::AwsError>(serde_json::from_slice(&out).unwrap())
        }
    };
    let create = json!({"logGroupName": "/ecs/web"});
    in_region("us-east-1", "CreateLogGroup", create.clone())
        .await
        .unwrap();
    // The same name in another region is another group, not a conflict.
    in_region("eu-west-1", "CreateLogGroup", create.clone())
        .await
        .unwrap();
    let e = in_region("eu-west-1", "CreateLogGroup", create)
        .await
        .unwrap_err();
    assert_eq!(e.code, "ResourceAlreadyExistsException");
    let eu = in_region("eu-west-1", "DescribeLogGroups", json!({}))
        .await
        .unwrap();
    let groups = eu["logGroups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["logGroupName"], "/ecs/web");
    assert_eq!(
        groups[0]["logGroupArn"],
        "arn:aws:logs:eu-west-1:000000000000:log-group:/ecs/web"
    );
    in_region(
        "eu-west-1",
        "DeleteLogGroup",
        json!({"logGroupName": "/ecs/web"}),
    )
    .await
    .unwrap();
    let us = in_region("us-east-1", "DescribeLogGroups", json!({}))
        .await
        .unwrap();
    assert_eq!(us["logGroups"].as_array().unwrap().len(), 1, "{us}");
    let arn = "arn:aws:logs:us-east-1:000000000000:log-group:/ecs/web";
    let tags = json!({"resourceArn": arn});
    in_region("us-east-1", "ListTagsForResource", tags.clone())
        .await
        .unwrap();
    let e = in_region("eu-west-1", "ListTagsForResource", tags)
        .await
        .unwrap_err();
    assert_eq!(e.code, "ResourceNotFoundException");
}
