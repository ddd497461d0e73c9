//! Generates `crates/wharf-model/src/<service>.rs` from botocore JSON models.
//!
//! Botocore models describe each shape by type; the JSON 1.1 protocol sends
//! them as plain JSON objects keyed by the member's wire name. The mapping is:
//!
//! | botocore                 | Rust                                      |
//! |--------------------------|-------------------------------------------|
//! | structure                | `struct` (serde, wire names via `rename`) |
//! | structure, `document`    | `serde_json::Value`                       |
//! | string with `enum`       | `enum` + `Unknown(String)` catch-all      |
//! | string, blob             | `String` (blobs are base64 text)          |
//! | integer / long           | `i32` / `i64`                             |
//! | double / float           | `f64`                                     |
//! | boolean                  | `bool`                                    |
//! | timestamp                | `f64` (epoch seconds)                     |
//! | list / map               | `Vec<T>` / `BTreeMap<String, T>`          |

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use crate::json::{self, Json};

/// One generated module: a botocore model file and the module it becomes.
pub struct Service {
    /// File name under `shared/aws-models/`.
    pub model: &'static str,
    /// Module name; written to `crates/wharf-model/src/<module>.rs`.
    pub module: &'static str,
    /// Only these operations and the shapes they reach (None: all). For
    /// large APIs of which Wharf serves a part (SSM's Parameter Store is
    /// 20 of its 146 operations).
    pub operations: Option<&'static [&'static str]>,
}

/// The services wharf-model carries. Add a line here (and a `pub mod` in
/// `crates/wharf-model/src/lib.rs`) to generate another one.
pub const SERVICES: &[Service] = &[
    Service {
        model: "ecs-2014-11-13.service-2.json",
        module: "ecs",
        operations: None,
    },
    Service {
        model: "logs-2014-03-28.service-2.json",
        module: "logs",
        operations: None,
    },
    Service {
        model: "elbv2-2015-12-01.service-2.json",
        module: "elbv2",
        operations: None,
    },
    Service {
        model: "iam-2010-05-08.service-2.json",
        module: "iam",
        operations: None,
    },
    Service {
        model: "sts-2011-06-15.service-2.json",
        module: "sts",
        operations: None,
    },
    Service {
        model: "secretsmanager-2017-10-17.service-2.json",
        module: "secretsmanager",
        operations: None,
    },
    Service {
        model: "ssm-2014-11-06.service-2.json",
        module: "ssm",
        operations: Some(&[
            "AddTagsToResource",
            "DeleteParameter",
            "DeleteParameters",
            "DescribeParameters",
            "GetParameter",
            "GetParameterHistory",
            "GetParameters",
            "GetParametersByPath",
            "LabelParameterVersion",
            "ListTagsForResource",
            "PutParameter",
            "RemoveTagsFromResource",
            "UnlabelParameterVersion",
        ]),
    },
];

/// Shape names that would shadow std/prelude names the generated code uses.
/// A structure or enum with one of these names gets a `Shape` suffix.
const RESERVED_TYPE_NAMES: &[&str] = &[
    "AsRef",
    "Box",
    "Clone",
    "Copy",
    "Debug",
    "Default",
    "Deserialize",
    "Drop",
    "Eq",
    "Err",
    "Fn",
    "From",
    "Hash",
    "Into",
    "Iterator",
    "None",
    "Ok",
    "Option",
    "PartialEq",
    "Result",
    "Self",
    "Send",
    "Serialize",
    "Sized",
    "Some",
    "String",
    "Sync",
    "ToOwned",
    "ToString",
    "Vec",
];

/// Rust keywords (2021, plus reserved and 2024's `gen`). Fields with these
/// names become raw identifiers (`r#type`).
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "do", "dyn",
    "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let",
    "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return",
    "static", "struct", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use",
    "virtual", "where", "while", "yield",
];

/// Wire names the generic `snake_case` rule splits badly.
const FIELD_NAME_OVERRIDES: &[(&str, &str)] = &[("memoryGiBPerVCpu", "memory_gib_per_vcpu")];

/// Keywords that cannot be raw identifiers; fields with these names get a
/// trailing underscore instead (`self_`).
const NON_RAW_KEYWORDS: &[&str] = &["crate", "self", "super", "Self"];

/// What the generator reports about a model besides the code itself.
#[derive(Debug, Default)]
pub struct Notes {
    pub renamed: Vec<(String, String)>,
    pub boxed: Vec<String>,
}

pub struct Generated {
    pub code: String,
    pub notes: Notes,
}

#[derive(Debug)]
enum Kind {
    Structure,
    Document,
    Enum(Vec<String>),
    String,
    Integer,
    Long,
    Double,
    Boolean,
    Timestamp,
    Blob,
    List(String),
    Map(String),
}

struct Model<'a> {
    file: &'a str,
    shapes: BTreeMap<&'a str, &'a Json>,
    /// Wire shape name -> Rust type name, for structures and enums.
    type_names: BTreeMap<&'a str, String>,
}

impl<'a> Model<'a> {
    fn shape(&self, name: &str) -> Result<&'a Json> {
        self.shapes
            .get(name)
            .copied()
            .ok_or_else(|| anyhow!("{}: reference to undefined shape `{name}`", self.file))
    }

    fn kind(&self, name: &str) -> Result<Kind> {
        let shape = self.shape(name)?;
        let target = |key: &str| -> Result<String> {
            shape
                .get(key)
                .get("shape")
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("{}: shape `{name}` has no `{key}.shape`", self.file))
        };
        let ty = shape.get("type").as_str().unwrap_or_default();
        Ok(match ty {
            "structure" if shape.get("document").as_bool() => Kind::Document,
            "structure" => Kind::Structure,
            "string" if !shape.get("enum").is_null() => Kind::Enum(
                shape
                    .get("enum")
                    .as_array()
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        anyhow!("{}: enum `{name}` has a non-string value", self.file)
                    })?,
            ),
            "string" => Kind::String,
            "integer" => Kind::Integer,
            "long" => Kind::Long,
            "double" | "float" => Kind::Double,
            "boolean" => Kind::Boolean,
            "timestamp" => Kind::Timestamp,
            "blob" => Kind::Blob,
            "list" => Kind::List(target("member")?),
            "map" => {
                let key = target("key")?;
                if !matches!(self.kind(&key)?, Kind::String | Kind::Enum(_)) {
                    bail!(
                        "{}: map `{name}` has non-string key shape `{key}`",
                        self.file
                    );
                }
                Kind::Map(target("value")?)
            }
            other => bail!(
                "{}: shape `{name}` has unsupported type `{other}`",
                self.file
            ),
        })
    }

    /// The Rust type for a reference to shape `name`.
    fn rust_type(&self, name: &str) -> Result<String> {
        Ok(match self.kind(name)? {
            Kind::Structure | Kind::Enum(_) => self.type_names[name].clone(),
            Kind::Document => "serde_json::Value".into(),
            Kind::String | Kind::Blob => "String".into(),
            Kind::Integer => "i32".into(),
            Kind::Long => "i64".into(),
            Kind::Double | Kind::Timestamp => "f64".into(),
            Kind::Boolean => "bool".into(),
            Kind::List(member) => format!("Vec<{}>", self.rust_type(&member)?),
            Kind::Map(value) => {
                format!(
                    "std::collections::BTreeMap<String, {}>",
                    self.rust_type(&value)?
                )
            }
        })
    }

    fn members(&self, name: &str) -> Result<Vec<(&'a str, &'a str)>> {
        self.shape(name)?
            .get("members")
            .entries()
            .iter()
            .map(|(member, def)| {
                def.get("shape")
                    .as_str()
                    .map(|target| (member.as_str(), target))
                    .ok_or_else(|| anyhow!("{}: `{name}.{member}` has no shape", self.file))
            })
            .collect()
    }

    /// Structures that shape `name` holds inline (not behind a `Vec`/map),
    /// i.e. the edges that would make a recursive type infinitely large.
    fn inline_structs(&self, name: &str) -> Result<Vec<&'a str>> {
        let mut out = Vec::new();
        for (_, target) in self.members(name)? {
            if matches!(self.kind(target)?, Kind::Structure) {
                out.push(target);
            }
        }
        Ok(out)
    }

    fn reaches(&self, from: &str, to: &str) -> Result<bool> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(cur) = stack.pop() {
            if cur == to {
                return Ok(true);
            }
            if seen.insert(cur.clone()) {
                stack.extend(self.inline_structs(&cur)?.into_iter().map(str::to_owned));
            }
        }
        Ok(false)
    }
}

/// Generates the module for one model, rustfmt'ed.
pub fn generate(models_dir: &Path, service: &Service, workspace: &Path) -> Result<Generated> {
    let path = models_dir.join(service.model);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut root = json::parse(&text).with_context(|| format!("parsing {}", path.display()))?;
    if let Some(keep) = service.operations {
        keep_only(&mut root, keep).with_context(|| format!("narrowing {}", service.model))?;
    }
    give_every_operation_an_input(&mut root);
    let (raw, notes) = render(service.model, &root)?;
    let code = rustfmt(&raw, workspace)
        .with_context(|| format!("formatting the code generated from {}", service.model))?;
    Ok(Generated { code, notes })
}

/// Drops every operation not in `keep` and every shape none of the kept
/// ones reach (through inputs, outputs, errors, members, list members and
/// map keys and values).
fn keep_only(root: &mut Json, keep: &[&str]) -> Result<()> {
    let Json::Object(top) = root else {
        bail!("the model is not an object")
    };
    let mut wanted: Vec<String> = Vec::new();
    for (key, value) in top.iter_mut() {
        if key != "operations" {
            continue;
        }
        let Json::Object(ops) = value else { continue };
        ops.retain(|(name, _)| keep.contains(&name.as_str()));
        for op in keep {
            let Some((_, def)) = ops.iter().find(|(name, _)| name == op) else {
                bail!("no operation `{op}`");
            };
            for part in ["input", "output"] {
                wanted.extend(def.get(part).get("shape").as_str().map(str::to_owned));
            }
            for e in def.get("errors").as_array() {
                wanted.extend(e.get("shape").as_str().map(str::to_owned));
            }
        }
    }
    let mut reached = BTreeSet::new();
    {
        let shapes = root.get("shapes");
        while let Some(name) = wanted.pop() {
            if !reached.insert(name.clone()) {
                continue;
            }
            let shape = shapes.get(&name);
            for (_, member) in shape.get("members").entries() {
                wanted.extend(member.get("shape").as_str().map(str::to_owned));
            }
            for part in ["member", "key", "value"] {
                wanted.extend(shape.get(part).get("shape").as_str().map(str::to_owned));
            }
        }
    }
    let Json::Object(top) = root else {
        unreachable!()
    };
    for (key, value) in top.iter_mut() {
        if key == "shapes" {
            if let Json::Object(shapes) = value {
                shapes.retain(|(name, _)| reached.contains(name));
            }
        }
    }
    Ok(())
}

/// Some operations take nothing (IAM's `DeleteAccountPasswordPolicy`); each
/// gets an empty `{Operation}Request` structure, so every operation has an
/// input type to decode into.
fn give_every_operation_an_input(root: &mut Json) {
    let Json::Object(top) = root else { return };
    let mut added = Vec::new();
    for (key, value) in top.iter_mut() {
        if key != "operations" {
            continue;
        }
        let Json::Object(ops) = value else { continue };
        for (name, op) in ops.iter_mut() {
            let Json::Object(fields) = op else { continue };
            if fields.iter().any(|(k, _)| k == "input") {
                continue;
            }
            let shape = format!("{name}Request");
            fields.push((
                "input".into(),
                Json::Object(vec![("shape".into(), Json::String(shape.clone()))]),
            ));
            added.push(shape);
        }
    }
    for (key, value) in top.iter_mut() {
        if key != "shapes" {
            continue;
        }
        let Json::Object(shapes) = value else {
            continue;
        };
        for shape in &added {
            shapes.push((
                shape.clone(),
                Json::Object(vec![
                    ("type".into(), Json::String("structure".into())),
                    ("members".into(), Json::Object(Vec::new())),
                ]),
            ));
        }
    }
}

fn render(file: &str, root: &Json) -> Result<(String, Notes)> {
    let shapes: BTreeMap<&str, &Json> = root
        .get("shapes")
        .entries()
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    if shapes.is_empty() {
        bail!("{file}: no shapes");
    }
    let mut notes = Notes::default();
    let mut model = Model {
        file,
        shapes,
        type_names: BTreeMap::new(),
    };

    // Name the generated types.
    let mut used = BTreeSet::new();
    for &name in model.shapes.keys() {
        if !matches!(model.kind(name)?, Kind::Structure | Kind::Enum(_)) {
            continue;
        }
        // IAM names some shapes in lowerCamelCase (`userNameType`).
        let mut rust = upper_first(name);
        if RESERVED_TYPE_NAMES.contains(&rust.as_str()) {
            rust.push_str("Shape");
            notes.renamed.push((name.to_owned(), rust.clone()));
        }
        if !is_ident(&rust) || !rust.starts_with(|c: char| c.is_ascii_uppercase()) {
            bail!("{file}: shape name `{name}` is not a usable Rust type name");
        }
        if !used.insert(rust.clone()) {
            bail!("{file}: two shapes map to the Rust type `{rust}`");
        }
        model.type_names.insert(name, rust);
    }

    let meta = root.get("metadata");
    let meta_str = |key: &str| meta.get(key).as_str();
    let protocol = meta_str("protocol").ok_or_else(|| anyhow!("{file}: no metadata.protocol"))?;
    let target_prefix = meta_str("targetPrefix");
    if protocol == "json" && target_prefix.is_none() {
        bail!("{file}: a JSON protocol model without metadata.targetPrefix");
    }
    let signing_name = meta_str("signingName")
        .or_else(|| meta_str("endpointPrefix"))
        .ok_or_else(|| anyhow!("{file}: no metadata.signingName or endpointPrefix"))?;
    let api_version =
        meta_str("apiVersion").ok_or_else(|| anyhow!("{file}: no metadata.apiVersion"))?;
    let service_name = meta_str("serviceFullName").unwrap_or(signing_name);

    let mut out = String::new();
    let o = &mut out;
    writeln!(
        o,
        "// @generated by `cargo xtask codegen` from {file}. Do not edit."
    )?;
    writeln!(o)?;
    writeln!(
        o,
        "//! Wire types of {} (API version {api_version}).",
        escape_doc(service_name)
    )?;
    writeln!(o, "//!")?;
    writeln!(o, "//! Generated from the botocore model `{file}`")?;
    writeln!(o, "//! by `xtask/src/codegen.rs`.")?;
    writeln!(o)?;
    writeln!(
        o,
        "#![allow(clippy::large_enum_variant, clippy::derive_partial_eq_without_eq, \
         clippy::enum_variant_names, clippy::upper_case_acronyms, non_camel_case_types)]"
    )?;
    writeln!(o)?;
    if let Some(target_prefix) = target_prefix {
        writeln!(
            o,
            "/// The `X-Amz-Target` prefix: targets are `{{TARGET_PREFIX}}.{{Operation}}`."
        )?;
        writeln!(o, "pub const TARGET_PREFIX: &str = {};", lit(target_prefix))?;
    }
    writeln!(o, "/// The SigV4 signing name (service) of this API.")?;
    writeln!(o, "pub const SIGNING_NAME: &str = {};", lit(signing_name))?;
    writeln!(o, "/// The API version of the model these types come from.")?;
    writeln!(o, "pub const API_VERSION: &str = {};", lit(api_version))?;
    writeln!(o)?;

    let mut operations: Vec<&str> = root
        .get("operations")
        .entries()
        .iter()
        .map(|(k, op)| op.get("name").as_str().unwrap_or(k))
        .collect();
    operations.sort_unstable();
    operations.dedup();
    writeln!(o, "/// Every operation of the API, sorted by name.")?;
    writeln!(o, "pub const OPERATIONS: &[&str] = &[")?;
    for op in &operations {
        writeln!(o, "    {},", lit(op))?;
    }
    writeln!(o, "];")?;
    writeln!(o)?;

    // Each operation with its input type, so code that must cover every
    // operation (fuzzers, the operation fuzz test) can't miss a new one.
    writeln!(
        o,
        "/// Calls `v.visit::<Input>(operation)` for every operation, in [`OPERATIONS`] order."
    )?;
    writeln!(
        o,
        "pub fn visit_operations(v: &mut impl crate::OperationVisitor) {{"
    )?;
    let mut inputs = BTreeMap::new();
    for (k, op) in root.get("operations").entries() {
        let name = op.get("name").as_str().unwrap_or(k);
        let input = op
            .get("input")
            .get("shape")
            .as_str()
            .ok_or_else(|| anyhow!("{file}: operation `{name}` has no input shape"))?;
        let ty = model
            .type_names
            .get(input)
            .ok_or_else(|| anyhow!("{file}: input `{input}` of `{name}` is not a structure"))?;
        inputs.insert(name, ty);
    }
    for (name, ty) in inputs {
        writeln!(o, "    v.visit::<{ty}>({});", lit(name))?;
    }
    writeln!(o, "}}")?;
    writeln!(o)?;

    writeln!(
        o,
        "/// The HTTP status AWS answers with for the error code `code` (the"
    )?;
    writeln!(
        o,
        "/// exception's `error.code`, else its shape name), or `None` if the model"
    )?;
    writeln!(o, "/// defines no such exception.")?;
    writeln!(o, "pub fn error_http_status(code: &str) -> Option<u16> {{")?;
    writeln!(o, "    match code {{")?;
    for (&name, shape) in &model.shapes {
        if !shape.get("exception").as_bool() {
            continue;
        }
        let default = if shape.get("fault").as_bool() {
            500
        } else {
            400
        };
        let status = match shape.get("error").get("httpStatusCode") {
            Json::Null => default,
            v => v
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .ok_or_else(|| anyhow!("{file}: `{name}` has a bad error.httpStatusCode"))?,
        };
        let code = shape.get("error").get("code").as_str().unwrap_or(name);
        writeln!(o, "        {} => Some({status}),", lit(code))?;
    }
    writeln!(o, "        _ => None,")?;
    writeln!(o, "    }}")?;
    writeln!(o, "}}")?;

    if protocol == "query" {
        render_schema(o, &model, root)?;
    }

    for (&name, rust) in &model.type_names {
        writeln!(o)?;
        let shape = model.shapes[name];
        if let Some(doc) = first_sentence(shape.get("documentation").as_str().unwrap_or_default()) {
            writeln!(o, "/// {doc}")?;
        }
        match model.kind(name)? {
            Kind::Enum(values) => render_enum(o, rust, &values)?,
            Kind::Structure => render_struct(o, &model, name, rust, &mut notes)?,
            _ => unreachable!(),
        }
    }
    Ok((out, notes))
}

/// `SCHEMA`: every shape as data, indexed in model (name) order, and every
/// operation with its input, output and result wrapper, for the awsQuery
/// codec.
fn render_schema(o: &mut String, model: &Model<'_>, root: &Json) -> Result<()> {
    let file = model.file;
    let ids: BTreeMap<&str, usize> = model
        .shapes
        .keys()
        .enumerate()
        .map(|(i, &name)| (name, i))
        .collect();
    let id = |name: &str| -> Result<usize> {
        ids.get(name)
            .copied()
            .ok_or_else(|| anyhow!("{file}: reference to undefined shape `{name}`"))
    };
    let namespace = root
        .get("metadata")
        .get("xmlNamespace")
        .as_str()
        .ok_or_else(|| anyhow!("{file}: a query model without metadata.xmlNamespace"))?;
    writeln!(o)?;
    writeln!(o, "/// The shape graph, for the awsQuery codec.")?;
    writeln!(
        o,
        "pub static SCHEMA: crate::schema::Schema = crate::schema::Schema {{"
    )?;
    writeln!(o, "    xml_namespace: {},", lit(namespace))?;
    writeln!(o, "    shapes: &SHAPES,")?;
    writeln!(o, "    operations: &[")?;
    let mut ops: Vec<(&str, &Json)> = root
        .get("operations")
        .entries()
        .iter()
        .map(|(k, op)| (op.get("name").as_str().unwrap_or(k), op))
        .collect();
    ops.sort_by_key(|(name, _)| *name);
    for (name, op) in ops {
        let input = id(op.get("input").get("shape").as_str().unwrap_or_default())?;
        let output = match op.get("output").get("shape").as_str() {
            Some(s) => format!("Some({})", id(s)?),
            None => "None".into(),
        };
        let wrapper = match op.get("output").get("resultWrapper").as_str() {
            Some(w) => format!("Some({})", lit(w)),
            None => "None".into(),
        };
        writeln!(
            o,
            "        crate::schema::Operation {{ name: {}, input: {input}, output: {output}, \
             result_wrapper: {wrapper} }},",
            lit(name)
        )?;
    }
    writeln!(o, "    ],")?;
    writeln!(o, "}};")?;
    writeln!(o)?;
    writeln!(
        o,
        "static SHAPES: [crate::schema::Shape; {}] = [",
        model.shapes.len()
    )?;
    for (&name, shape) in &model.shapes {
        let kind = match model.kind(name)? {
            Kind::Structure => {
                let mut members = String::new();
                for (member, def) in shape.get("members").entries() {
                    for attr in ["locationName", "flattened", "xmlAttribute", "xmlNamespace"] {
                        if !def.get(attr).is_null() {
                            bail!("{file}: `{name}.{member}` uses `{attr}`, which the query codec does not support");
                        }
                    }
                    let target = def.get("shape").as_str().unwrap_or_default();
                    write!(
                        members,
                        "crate::schema::Member {{ name: {}, shape: {} }}, ",
                        lit(member),
                        id(target)?
                    )?;
                }
                format!("Structure(&[{members}])")
            }
            Kind::Document => bail!("{file}: document shape `{name}` in a query model"),
            Kind::List(member) => {
                if !shape.get("flattened").is_null()
                    || !shape.get("member").get("locationName").is_null()
                {
                    bail!(
                        "{file}: list `{name}` has a wire layout the query codec does not support"
                    );
                }
                format!("List({})", id(&member)?)
            }
            Kind::Map(value) => {
                let key = shape.get("key").get("shape").as_str().unwrap_or_default();
                format!("Map {{ key: {}, value: {} }}", id(key)?, id(&value)?)
            }
            Kind::Enum(_) | Kind::String => "String".into(),
            Kind::Integer => "Integer".into(),
            Kind::Long => "Long".into(),
            Kind::Double => "Double".into(),
            Kind::Boolean => "Boolean".into(),
            Kind::Timestamp => "Timestamp".into(),
            Kind::Blob => "Blob".into(),
        };
        writeln!(
            o,
            "    crate::schema::Shape {{ name: {}, kind: crate::schema::Kind::{kind} }},",
            lit(name)
        )?;
    }
    writeln!(o, "];")?;
    Ok(())
}

fn render_struct(
    o: &mut String,
    model: &Model<'_>,
    name: &str,
    rust: &str,
    notes: &mut Notes,
) -> Result<()> {
    let shape = model.shapes[name];
    let required: BTreeSet<&str> = shape
        .get("required")
        .as_array()
        .iter()
        .filter_map(Json::as_str)
        .collect();
    let members = model.members(name)?;
    for r in &required {
        if !members.iter().any(|(m, _)| m == r) {
            bail!("{}: `{name}` requires undefined member `{r}`", model.file);
        }
    }
    writeln!(
        o,
        "#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]"
    )?;
    writeln!(o, "pub struct {rust} {{")?;
    let mut fields = BTreeSet::new();
    for (member, target) in members {
        let field = field_name(member);
        if !fields.insert(field.clone()) {
            bail!(
                "{}: two members of `{name}` map to the field `{field}`",
                model.file
            );
        }
        let kind = model.kind(target)?;
        let mut ty = model.rust_type(target)?;
        if matches!(kind, Kind::Structure) && model.reaches(target, name)? {
            ty = format!("Box<{ty}>");
            notes.boxed.push(format!("{name}.{member}"));
        }
        // Two attributes rather than one long one, so rustfmt keeps each on
        // one line.
        writeln!(o, "    #[serde(rename = {})]", lit(member))?;
        if required.contains(member) {
            if matches!(kind, Kind::List(_) | Kind::Map(_)) {
                writeln!(o, "    #[serde(default)]")?;
            }
            writeln!(o, "    pub {field}: {ty},")?;
        } else {
            writeln!(
                o,
                "    #[serde(default, skip_serializing_if = \"Option::is_none\")]"
            )?;
            writeln!(o, "    pub {field}: Option<{ty}>,")?;
        }
    }
    writeln!(o, "}}")?;
    Ok(())
}

fn render_enum(o: &mut String, rust: &str, values: &[String]) -> Result<()> {
    let mut variants: Vec<String> = Vec::new();
    for value in values {
        let mut v = variant_name(value);
        if v == "Unknown" || v == "Self" {
            v.push_str("Value");
        }
        if variants.contains(&v) {
            let base = v.clone();
            let mut n = 2;
            while variants.contains(&v) {
                v = format!("{base}{n}");
                n += 1;
            }
        }
        variants.push(v);
    }
    writeln!(o, "#[derive(Debug, Clone, PartialEq, Eq, Hash)]")?;
    writeln!(o, "pub enum {rust} {{")?;
    for (variant, value) in variants.iter().zip(values) {
        writeln!(o, "    /// `{}`", value.replace('`', "'"))?;
        writeln!(o, "    {variant},")?;
    }
    writeln!(
        o,
        "    /// A value this model does not know; kept verbatim."
    )?;
    writeln!(o, "    Unknown(String),")?;
    writeln!(o, "}}")?;
    writeln!(o)?;
    writeln!(o, "impl {rust} {{")?;
    writeln!(o, "    /// Every known value, in model order.")?;
    write!(o, "    pub const VALUES: &[&str] = &[")?;
    for value in values {
        write!(o, "{}, ", lit(value))?;
    }
    writeln!(o, "];")?;
    writeln!(o)?;
    writeln!(o, "    /// The wire value.")?;
    writeln!(o, "    pub fn as_str(&self) -> &str {{")?;
    writeln!(o, "        match self {{")?;
    for (variant, value) in variants.iter().zip(values) {
        writeln!(o, "            Self::{variant} => {},", lit(value))?;
    }
    writeln!(o, "            Self::Unknown(s) => s,")?;
    writeln!(o, "        }}")?;
    writeln!(o, "    }}")?;
    writeln!(o)?;
    writeln!(o, "    /// Whether this is one of [`Self::VALUES`].")?;
    writeln!(o, "    pub fn is_known(&self) -> bool {{")?;
    writeln!(o, "        !matches!(self, Self::Unknown(_))")?;
    writeln!(o, "    }}")?;
    writeln!(o, "}}")?;
    writeln!(o)?;
    writeln!(o, "impl From<&str> for {rust} {{")?;
    writeln!(o, "    fn from(s: &str) -> Self {{")?;
    writeln!(o, "        match s {{")?;
    for (variant, value) in variants.iter().zip(values) {
        writeln!(o, "            {} => Self::{variant},", lit(value))?;
    }
    writeln!(o, "            other => Self::Unknown(other.to_owned()),")?;
    writeln!(o, "        }}")?;
    writeln!(o, "    }}")?;
    writeln!(o, "}}")?;
    writeln!(o)?;
    writeln!(
        o,
        "impl From<String> for {rust} {{
    fn from(s: String) -> Self {{
        match Self::from(s.as_str()) {{
            Self::Unknown(_) => Self::Unknown(s),
            known => known,
        }}
    }}
}}

impl std::fmt::Display for {rust} {{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {{
        f.write_str(self.as_str())
    }}
}}

impl Default for {rust} {{
    fn default() -> Self {{
        Self::Unknown(String::new())
    }}
}}

impl serde::Serialize for {rust} {{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {{
        serializer.serialize_str(self.as_str())
    }}
}}

impl<'de> serde::Deserialize<'de> for {rust} {{
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {{
        <String as serde::Deserialize>::deserialize(deserializer).map(Self::from)
    }}
}}"
    )?;
    Ok(())
}

/// `camelCase`/`PascalCase` wire name -> `snake_case` field name; keywords
/// become raw identifiers (`type` -> `r#type`).
fn upper_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

pub fn field_name(wire: &str) -> String {
    if let Some((_, field)) = FIELD_NAME_OVERRIDES.iter().find(|(w, _)| *w == wire) {
        return (*field).to_owned();
    }
    let chars: Vec<char> = wire.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "f_");
    }
    if NON_RAW_KEYWORDS.contains(&out.as_str()) {
        out.push('_');
    } else if KEYWORDS.contains(&out.as_str()) {
        out.insert_str(0, "r#");
    }
    out
}

/// Enum value -> `UpperCamelCase` variant, one word per alphanumeric run:
/// `awsvpc` -> `Awsvpc`, `FARGATE_SPOT` -> `FargateSpot`, `us-east-1` ->
/// `UsEast1`, `ecs.capability` -> `EcsCapability`. Runs that mix cases keep
/// their inner casing (`containerInsights` -> `ContainerInsights`).
pub fn variant_name(value: &str) -> String {
    let mut out = String::new();
    for run in value
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|r| !r.is_empty())
    {
        let mixed = run.chars().any(|c| c.is_ascii_lowercase())
            && run.chars().any(|c| c.is_ascii_uppercase());
        let mut chars = run.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
        }
        if mixed {
            out.extend(chars);
        } else {
            out.extend(chars.map(|c| c.to_ascii_lowercase()));
        }
    }
    if out.is_empty() {
        out.push_str("Empty");
    } else if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    out
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Rust string literal.
fn lit(s: &str) -> String {
    format!("{s:?}")
}

/// The first sentence of a botocore HTML documentation string, as one line
/// of Markdown: tags stripped (`<code>` becomes backticks), entities decoded,
/// whitespace collapsed, at most ~200 characters.
pub fn first_sentence(html: &str) -> Option<String> {
    let mut text = String::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        text.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            rest = &rest[start..];
            break;
        };
        let tag = rest[start + 1..start + end].trim().to_ascii_lowercase();
        if tag == "code" || tag == "/code" {
            text.push('`');
        } else if tag.starts_with('p')
            || tag.starts_with("/p")
            || tag.starts_with("li")
            || tag == "br"
        {
            text.push(' ');
        }
        rest = &rest[start + end + 1..];
    }
    text.push_str(rest);
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = text.replace("``", "");

    // Cut after the first ". " that does not end an abbreviation.
    let mut end = text.len();
    for (i, _) in text.match_indices(". ") {
        let word = text[..i]
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .trim_start_matches(['(', '`']);
        if !matches!(
            word.to_ascii_lowercase().as_str(),
            "e.g" | "i.e" | "etc" | "vs" | "approx"
        ) {
            end = i + 1;
            break;
        }
    }
    let mut sentence = text[..end].trim().to_owned();
    const CAP: usize = 200;
    if sentence.chars().count() > CAP {
        let cut: String = sentence.chars().take(CAP).collect();
        let cut = match cut.rfind(' ') {
            Some(i) if i > CAP / 2 => cut[..i].to_owned(),
            _ => cut,
        };
        sentence = format!("{}...", cut.trim_end_matches([',', ';', ':', ' ']));
    }
    if sentence.matches('`').count() % 2 == 1 {
        sentence.retain(|c| c != '`');
    }
    let sentence = escape_doc(&sentence);
    (!sentence.is_empty()).then_some(sentence)
}

/// Escapes Markdown/rustdoc-significant characters outside code spans.
fn escape_doc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_code = false;
    for c in s.chars() {
        match c {
            '`' => in_code = !in_code,
            '[' | ']' | '<' | '>' | '*' | '_' | '\\' if !in_code => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
    out
}

/// Runs `rustfmt --edition 2021` over `code` (via stdin/stdout).
fn rustfmt(code: &str, workspace: &Path) -> Result<String> {
    let rustfmt = std::env::var_os("RUSTFMT").unwrap_or_else(|| "rustfmt".into());
    let mut child = Command::new(&rustfmt)
        .args(["--edition", "2021"])
        .current_dir(workspace)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", rustfmt.to_string_lossy()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = code.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow!("rustfmt stdin writer panicked"))??;
    if !output.status.success() {
        bail!(
            "rustfmt failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).context("rustfmt printed non-UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names() {
        assert_eq!(field_name("family"), "family");
        assert_eq!(field_name("taskRoleArn"), "task_role_arn");
        assert_eq!(
            field_name("enableECSManagedTags"),
            "enable_ecs_managed_tags"
        );
        assert_eq!(field_name("ipv6Address"), "ipv6_address");
        assert_eq!(field_name("ec2InstanceId"), "ec2_instance_id");
        assert_eq!(field_name("type"), "r#type");
        assert_eq!(field_name("self"), "self_");
    }

    #[test]
    fn variant_names() {
        assert_eq!(variant_name("awsvpc"), "Awsvpc");
        assert_eq!(variant_name("RUNNING"), "Running");
        assert_eq!(variant_name("us-east-1"), "UsEast1");
        assert_eq!(variant_name("ecs.capability"), "EcsCapability");
        assert_eq!(variant_name("FARGATE_SPOT"), "FargateSpot");
        assert_eq!(variant_name("EC2"), "Ec2");
        assert_eq!(variant_name("containerInsights"), "ContainerInsights");
        assert_eq!(variant_name("1"), "V1");
    }

    #[test]
    fn docs() {
        assert_eq!(
            first_sentence("<p>The <code>family</code> name, e.g. web. More text.</p>").as_deref(),
            Some("The `family` name, e.g. web.")
        );
        assert_eq!(
            first_sentence("<p>A [b] &lt;c&gt;.</p>").as_deref(),
            Some("A \\[b\\] \\<c\\>.")
        );
        assert_eq!(first_sentence("  "), None);
    }
}
