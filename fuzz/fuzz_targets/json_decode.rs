//! Bytes → every request type of every service, decoded as the server
//! decodes them (`wharf_protocol::json::decode`). No input may panic, and
//! whatever decodes must encode and decode back to itself. The first byte
//! picks the operation (ECS, then CloudWatch Logs, then the agent's).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use wharf_model::OperationVisitor;
use wharf_protocol::json::{decode, encode};

type Check = fn(&[u8]);

struct Collect(Vec<Check>);

impl OperationVisitor for Collect {
    fn visit<Input>(&mut self, _: &'static str)
    where
        Input:
            serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug + 'static,
    {
        self.0.push(round_trip::<Input>);
    }
}

fn round_trip<T>(body: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(request) = decode::<T>(body) else {
        return;
    };
    let again = encode(&request).expect("a decoded request encodes");
    let back = decode::<T>(&again).expect("an encoded request decodes");
    assert_eq!(back, request, "{}", String::from_utf8_lossy(&again));
}

static CHECKS: LazyLock<Vec<Check>> = LazyLock::new(|| {
    let mut c = Collect(vec![]);
    wharf_model::ecs::visit_operations(&mut c);
    wharf_model::logs::visit_operations(&mut c);
    wharf_core::agent_protocol::visit_operations(&mut c);
    c.0
});

fuzz_target!(|data: &[u8]| {
    if let Some((&op, body)) = data.split_first() {
        CHECKS[usize::from(op) % CHECKS.len()](body);
    }
});
