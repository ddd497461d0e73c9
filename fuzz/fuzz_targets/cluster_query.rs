//! The cluster query language: bytes → `wharf_core::query::parse`, then a
//! parsed query evaluated against a few hosts. No input may panic; a query
//! that parses is negated by `not (…)`, and a static one answers the same
//! whatever the host's tasks and session.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use wharf_core::query::{self, HostView};
use wharf_core::records::{InstanceRecord, Resources};

static HOSTS: LazyLock<Vec<InstanceRecord>> = LazyLock::new(|| {
    let attrs = |pairs: &[(&str, Option<&str>)]| -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    };
    let mut a = InstanceRecord::new("i-a", "arn:a", "c", Resources::default(), 1_529_360_908_000);
    a.attributes = attrs(&[
        ("ecs.availability-zone", Some("us-east-1a")),
        ("ecs.instance-type", Some("t2.micro")),
        ("n", Some("10")),
        ("flag", None),
    ]);
    a.agent_version = Some("1.2.3".into());
    a.hostname = Some("i-0abc".into());
    let mut b = InstanceRecord::new("i-b", "arn:b", "c", Resources::default(), i64::MIN);
    b.attributes = attrs(&[("n", Some("-1e308")), ("", Some(""))]);
    b.agent_version = Some("99999999999999999999.x..".into());
    let c = InstanceRecord::new("i-c", "arn:c", "c", Resources::default(), i64::MAX);
    vec![a, b, c]
});

fuzz_target!(|data: &[u8]| {
    let Ok(expr) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(q) = query::parse(expr) else {
        return;
    };
    // Wrapped whole only when no ')' of its own can close the wrapping early.
    let negated = (!expr.contains(')'))
        .then(|| query::parse(&format!("not ({expr})")).ok())
        .flatten();
    let held = Resources {
        cpu: 1024,
        memory: 512,
        ..Default::default()
    };
    let groups: HashMap<String, usize> = [("service:web".to_string(), 2)].into();
    for h in HOSTS.iter() {
        let bare = q.matches(&HostView::bare(h));
        assert_eq!(bare, q.matches_instance(h));
        if let Some(n) = &negated {
            assert_eq!(n.matches_instance(h), !bare, "not ({expr})");
        }
        let busy = HostView {
            instance: h,
            allocated: &held,
            connected: false,
            running_tasks: 5,
            groups: &groups,
            placing: Some(("service:web", 3)),
        };
        let with_tasks = q.matches(&busy);
        if q.is_static() {
            assert_eq!(with_tasks, bare, "{expr} is static");
        }
    }
});
