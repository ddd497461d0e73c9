//! The shape graph of an API, as data: what a protocol codec needs to know
//! that serde types do not carry (list and map wire layout, timestamp and
//! number encodings, result wrappers). Emitted by `cargo xtask codegen` as
//! `<module>::SCHEMA` for the services whose protocol needs it (awsQuery);
//! the codecs in `wharf-protocol::query` walk it.

/// One API: its shapes (indexed by [`ShapeId`]) and operations.
#[derive(Debug)]
pub struct Schema {
    /// The namespace of XML responses (`metadata.xmlNamespace`).
    pub xml_namespace: &'static str,
    pub shapes: &'static [Shape],
    /// Sorted by name.
    pub operations: &'static [Operation],
}

/// Index into [`Schema::shapes`].
pub type ShapeId = usize;

#[derive(Debug)]
pub struct Shape {
    pub name: &'static str,
    pub kind: Kind,
}

#[derive(Debug)]
pub enum Kind {
    Structure(&'static [Member]),
    List(ShapeId),
    Map {
        key: ShapeId,
        value: ShapeId,
    },
    /// Strings and enums (an enum's values are checked by its Rust type).
    String,
    Integer,
    Long,
    Double,
    Boolean,
    /// Epoch seconds in the Rust types; ISO 8601 on the wire.
    Timestamp,
    Blob,
}

#[derive(Debug)]
pub struct Member {
    /// The wire name, which is also the serde name of the Rust field.
    pub name: &'static str,
    pub shape: ShapeId,
}

#[derive(Debug)]
pub struct Operation {
    pub name: &'static str,
    pub input: ShapeId,
    pub output: Option<ShapeId>,
    /// The element the output is wrapped in (`<CreateLoadBalancerResult>`).
    pub result_wrapper: Option<&'static str>,
}

impl Schema {
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations
            .binary_search_by(|op| op.name.cmp(name))
            .ok()
            .map(|i| &self.operations[i])
    }

    pub fn shape(&self, id: ShapeId) -> &Shape {
        &self.shapes[id]
    }
}
