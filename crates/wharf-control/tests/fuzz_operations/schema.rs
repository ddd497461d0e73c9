//! The shape of a request type, read from its own `Deserialize` impl: a
//! deserializer that answers every request for a value with a minimal one
//! and notes what was asked for (struct members by wire name, integer
//! widths, lists, maps). So the generated bodies use exactly the member
//! names and types the server decodes, for every operation, with no list
//! kept by hand.

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

#[derive(Debug, Clone)]
pub enum Shape {
    Bool,
    /// An integer of this range.
    Int(i128, i128),
    Float,
    Str,
    /// Any JSON (a `document`).
    Any,
    /// `Option<T>`: a member that may be left out.
    Optional(Box<Shape>),
    List(Box<Shape>),
    Map(Box<Shape>),
    Struct(Vec<(&'static str, Shape)>),
    /// A struct that contains itself, by name (see [`Schema::structs`]).
    Recursive(&'static str),
}

/// A request type's shape, and every struct in it by name (for [`Shape::Recursive`]).
pub struct Schema {
    pub root: Shape,
    pub structs: HashMap<&'static str, Shape>,
}

pub fn of<T: DeserializeOwned>() -> Schema {
    let tracer = Tracer::default();
    T::deserialize(Probe(&tracer)).unwrap_or_else(|e| panic!("tracing a request type: {e}"));
    let mut st = tracer.0.into_inner();
    let root = st.out.pop().expect("the root shape");
    Schema {
        root,
        structs: st.structs,
    }
}

#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

#[derive(Default)]
struct State {
    /// Shapes of the values probed so far, innermost last: a container
    /// takes its children's off the top when its visitor returns.
    out: Vec<Shape>,
    /// Structs being probed, outermost first.
    open: Vec<&'static str>,
    /// Inside a recursive struct: options, lists and maps are answered
    /// empty, so the probe ends.
    shallow: usize,
    structs: HashMap<&'static str, Shape>,
}

#[derive(Default)]
struct Tracer(RefCell<State>);

impl Tracer {
    fn push(&self, s: Shape) {
        self.0.borrow_mut().out.push(s);
    }
    fn height(&self) -> usize {
        self.0.borrow().out.len()
    }
    fn take_from(&self, height: usize) -> Vec<Shape> {
        self.0.borrow_mut().out.split_off(height)
    }
    fn shallow(&self) -> bool {
        self.0.borrow().shallow > 0
    }
}

struct Probe<'t>(&'t Tracer);

macro_rules! int {
    ($($method:ident $visit:ident $t:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            self.0.push(Shape::Int(<$t>::MIN as i128, <$t>::MAX as i128));
            v.$visit(0)
        }
    )*};
}

impl<'de, 't> de::Deserializer<'de> for Probe<'t> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.push(Shape::Any);
        v.visit_unit()
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.push(Shape::Bool);
        v.visit_bool(false)
    }
    int!(
        deserialize_i8 visit_i8 i8, deserialize_i16 visit_i16 i16,
        deserialize_i32 visit_i32 i32, deserialize_i64 visit_i64 i64,
        deserialize_u8 visit_u8 u8, deserialize_u16 visit_u16 u16,
        deserialize_u32 visit_u32 u32, deserialize_u64 visit_u64 u64
    );
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.push(Shape::Float);
        v.visit_f32(0.0)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.push(Shape::Float);
        v.visit_f64(0.0)
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.push(Shape::Str);
        v.visit_char('a')
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.push(Shape::Str);
        v.visit_str("")
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        if self.0.shallow() {
            self.0.push(Shape::Any);
            return v.visit_none();
        }
        let h = self.0.height();
        let value = v.visit_some(Probe(self.0))?;
        let inner = self.0.take_from(h).pop().unwrap_or(Shape::Any);
        self.0.push(Shape::Optional(Box::new(inner)));
        Ok(value)
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.push(Shape::Any);
        v.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(v)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let h = self.0.height();
        let n = if self.0.shallow() { 0 } else { 1 };
        let value = v.visit_seq(Elements(self.0, n))?;
        let inner = self.0.take_from(h).pop().unwrap_or(Shape::Any);
        self.0.push(Shape::List(Box::new(inner)));
        Ok(value)
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("tuples are not in the AWS JSON protocol"))
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        _: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::custom("tuples are not in the AWS JSON protocol"))
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let h = self.0.height();
        let entries = if self.0.shallow() {
            &[][..]
        } else {
            &["k"][..]
        };
        let value = v.visit_map(Members(self.0, entries, 0))?;
        let inner = self.0.take_from(h).pop().unwrap_or(Shape::Any);
        self.0.push(Shape::Map(Box::new(inner)));
        Ok(value)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let recursive = {
            let mut st = self.0 .0.borrow_mut();
            let recursive = st.shallow > 0 || st.open.contains(&name);
            if recursive {
                st.shallow += 1;
            } else {
                st.open.push(name);
            }
            recursive
        };
        let h = self.0.height();
        let value = v.visit_map(Members(self.0, fields, 0));
        let members = self.0.take_from(h);
        let mut st = self.0 .0.borrow_mut();
        if recursive {
            st.shallow -= 1;
            st.out.push(Shape::Recursive(name));
        } else {
            st.open.pop();
            let shape = Shape::Struct(fields.iter().copied().zip(members).collect());
            st.structs.insert(name, shape.clone());
            st.out.push(shape);
        }
        value
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!(
            "enum {name}: AWS JSON enums are strings"
        )))
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_any(v)
    }
}

/// A list of `n` elements, each probed.
struct Elements<'t>(&'t Tracer, usize);

impl<'de> de::SeqAccess<'de> for Elements<'_> {
    type Error = Error;
    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.1 == 0 {
            return Ok(None);
        }
        self.1 -= 1;
        seed.deserialize(Probe(self.0)).map(Some)
    }
}

/// An object with one member per key, each value probed.
struct Members<'t>(&'t Tracer, &'static [&'static str], usize);

impl<'de> de::MapAccess<'de> for Members<'_> {
    type Error = Error;
    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(key) = self.1.get(self.2) else {
            return Ok(None);
        };
        self.2 += 1;
        seed.deserialize(IntoDeserializer::<Error>::into_deserializer(*key))
            .map(Some)
    }
    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(Probe(self.0))
    }
}
