//! JSON names of a type's fields, learned from its `Deserialize` implementation.
//!
//! `validator` 0.21 names failing fields by their Rust identifier and ignores serde's
//! `rename`/`rename_all` (its derive has no serde support since 0.17). serde, for its part,
//! never exposes Rust identifiers at run time — but the code `#[derive(Deserialize)]` generates
//! hands the list of the struct's *wire* names to `Deserializer::deserialize_struct`, in
//! declaration order. [`Shape::of`] drives `T::deserialize` with a probing deserializer that
//! records those lists, recursing into each field (through `Option`, `Vec`, maps, `Box` and
//! newtypes) to learn nested structs, and feeding neutral placeholder values. It reads no
//! request data and runs only when validation has already failed.
//!
//! A Rust name reported by validator is then mapped to the wire name among the struct's
//! fields that it matches exactly or under one of serde's `rename_all` rules (`camelCase`,
//! `PascalCase`, `kebab-case`, `SCREAMING_SNAKE_CASE`, …). A field-level
//! `#[serde(rename = "other")]` that is not such a case conversion cannot be recovered and
//! the Rust name is reported; see the module docs of [`crate::validate`].

use std::borrow::Cow;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};

/// The wire field names of a struct and of the structs nested in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    fields: &'static [&'static str],
    children: Vec<(&'static str, Shape)>,
}

const MAX_PROBE_DEPTH: u8 = 12;

impl Shape {
    /// Learns the shape of `T` from its `Deserialize` implementation; empty when `T` is not
    /// a struct.
    pub fn of<T: DeserializeOwned>() -> Self {
        let mut shape = None;
        let _ = T::deserialize(Probe {
            out: &mut shape,
            depth: 0,
        });
        shape.unwrap_or_default()
    }

    /// The wire names of the fields, in declaration order (skipped fields excluded).
    pub fn fields(&self) -> &'static [&'static str] {
        self.fields
    }

    /// The shape of the struct held by the field with wire name `field`.
    pub fn child(&self, field: &str) -> Option<&Shape> {
        self.children
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, shape)| shape)
    }

    /// The wire name of the Rust field `rust`: an exact match, else the unique field it
    /// matches under a serde `rename_all` rule, else `rust` itself.
    pub fn wire_name<'a>(&self, rust: &'a str) -> Cow<'a, str> {
        let rust = rust.strip_prefix("r#").unwrap_or(rust);
        if self.fields.is_empty() || self.fields.contains(&rust) {
            return Cow::Borrowed(rust);
        }
        let mut found: Option<&'static str> = None;
        for candidate in renamings(rust) {
            if let Some(field) = self.fields.iter().find(|f| **f == candidate) {
                match found {
                    Some(previous) if previous != *field => return Cow::Borrowed(rust),
                    _ => found = Some(field),
                }
            }
        }
        match found {
            Some(field) => Cow::Borrowed(field),
            None => Cow::Borrowed(rust),
        }
    }
}

/// The names serde's `rename_all` rules give a snake_case Rust field.
fn renamings(rust: &str) -> [String; 7] {
    let words: Vec<&str> = rust.split('_').filter(|w| !w.is_empty()).collect();
    let capitalized = |w: &&str| {
        let mut chars = w.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
            None => String::new(),
        }
    };
    let pascal: String = words.iter().map(capitalized).collect();
    let camel = match words.split_first() {
        Some((first, rest)) => {
            let mut s = (*first).to_owned();
            s.extend(rest.iter().map(capitalized));
            s
        }
        None => String::new(),
    };
    [
        rust.to_lowercase(),
        rust.to_uppercase(),
        pascal,
        camel,
        rust.to_uppercase(),
        rust.replace('_', "-"),
        rust.replace('_', "-").to_uppercase(),
    ]
}

struct Probe<'r> {
    out: &'r mut Option<Shape>,
    depth: u8,
}

fn stop() -> de::value::Error {
    de::Error::custom("probe")
}

macro_rules! probe_with {
    ($($method:ident => $visit:ident($value:expr)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            visitor.$visit($value)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = de::value::Error;

    probe_with!(
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i8(0),
        deserialize_i16 => visit_i16(0),
        deserialize_i32 => visit_i32(0),
        deserialize_i64 => visit_i64(0),
        deserialize_i128 => visit_i128(0),
        deserialize_u8 => visit_u8(0),
        deserialize_u16 => visit_u16(0),
        deserialize_u32 => visit_u32(0),
        deserialize_u64 => visit_u64(0),
        deserialize_u128 => visit_u128(0),
        deserialize_f32 => visit_f32(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('a'),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
        deserialize_identifier => visit_str(""),
    );

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(stop())
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.depth >= MAX_PROBE_DEPTH {
            return visitor.visit_none();
        }
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.depth >= MAX_PROBE_DEPTH {
            return Err(stop());
        }
        visitor.visit_seq(ProbeOne {
            out: self.out,
            depth: self.depth + 1,
            done: false,
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        Err(stop())
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        Err(stop())
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.depth >= MAX_PROBE_DEPTH {
            return Err(stop());
        }
        visitor.visit_map(ProbeOne {
            out: self.out,
            depth: self.depth + 1,
            done: false,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if self.depth >= MAX_PROBE_DEPTH {
            return Err(stop());
        }
        let shape = self.out.insert(Shape {
            fields,
            children: Vec::new(),
        });
        visitor.visit_map(ProbeStruct {
            shape,
            index: 0,
            depth: self.depth + 1,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        Err(stop())
    }
}

/// Walks a struct's fields in order, probing each value.
struct ProbeStruct<'r> {
    shape: &'r mut Shape,
    index: usize,
    depth: u8,
}

impl<'de> de::MapAccess<'de> for ProbeStruct<'_> {
    type Error = de::value::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.shape.fields.get(self.index) {
            Some(name) => seed
                .deserialize(de::value::BorrowedStrDeserializer::new(name))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let name = self.shape.fields.get(self.index).copied().unwrap_or("");
        self.index += 1;
        let mut child = None;
        let result = seed.deserialize(Probe {
            out: &mut child,
            depth: self.depth,
        });
        if let Some(child) = child {
            self.shape.children.push((name, child));
        }
        result
    }
}

/// A sequence or map with one element, so the element type's shape is learned.
struct ProbeOne<'r> {
    out: &'r mut Option<Shape>,
    depth: u8,
    done: bool,
}

impl<'de> de::SeqAccess<'de> for ProbeOne<'_> {
    type Error = de::value::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        if std::mem::replace(&mut self.done, true) {
            return Ok(None);
        }
        seed.deserialize(Probe {
            out: self.out,
            depth: self.depth,
        })
        .map(Some)
    }
}

impl<'de> de::MapAccess<'de> for ProbeOne<'_> {
    type Error = de::value::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        if self.done {
            return Ok(None);
        }
        seed.deserialize(Probe {
            out: &mut None,
            depth: self.depth,
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        self.done = true;
        seed.deserialize(Probe {
            out: self.out,
            depth: self.depth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Outer {
        full_name: String,
        home_address: Option<Address>,
        line_items: Vec<Item>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    #[allow(dead_code)]
    struct Address {
        zip_code: String,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Item {
        #[serde(rename = "quantity")]
        qty: u32,
        r#type: String,
    }

    #[test]
    fn learns_nested_wire_names_without_input() {
        let shape = Shape::of::<Outer>();
        assert_eq!(shape.fields(), ["fullName", "homeAddress", "lineItems"]);
        assert_eq!(shape.wire_name("full_name"), "fullName");
        let address = shape.child("homeAddress").unwrap();
        assert_eq!(address.wire_name("zip_code"), "ZIP_CODE");
        let item = shape.child("lineItems").unwrap();
        assert_eq!(item.wire_name("r#type"), "type");
        // A free-form rename is not a case conversion: the Rust name is kept.
        assert_eq!(item.wire_name("qty"), "qty");
    }

    #[test]
    fn recursive_types_terminate() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Node {
            children: Vec<Node>,
            parent: Option<Box<Node>>,
        }
        let shape = Shape::of::<Node>();
        assert_eq!(shape.fields(), ["children", "parent"]);
    }
}
