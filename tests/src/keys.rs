//! The keys a config struct accepts, read from its `Deserialize` impl.
//!
//! The docs check (`tests/tests/docs.rs`) holds the configuration references
//! against the code with this: [`config_keys`] drives a type's derived
//! `Deserialize` with a deserializer that answers every struct with all of
//! its fields, so the dotted path of every key a TOML file may set comes out
//! (`cim.http`, `vm.ipmi.listen`), including nested tables and arrays of
//! tables, without a list kept by hand.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

/// Every dotted key path the config type `T` accepts.
///
/// Maps with free-form keys (e.g. `guestinfo = { ... }`) count as one key.
/// Fails when `T`'s `Deserialize` cannot be driven this way (a custom
/// implementation that refuses the probe's placeholder values); the error
/// names the key.
pub fn config_keys<T: DeserializeOwned>() -> Result<BTreeSet<String>, String> {
    let found = RefCell::new(BTreeSet::new());
    T::deserialize(Probe {
        path: "",
        found: &found,
    })
    .map_err(|e| e.0)?;
    Ok(found.into_inner())
}

/// Why probing failed.
#[derive(Debug)]
struct ProbeError(String);

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        ProbeError(msg.to_string())
    }
}

/// Answers every request with a placeholder value, every struct with all
/// of its fields; records each field's path.
#[derive(Debug, Clone, Copy)]
struct Probe<'a> {
    path: &'a str,
    found: &'a RefCell<BTreeSet<String>>,
}

// Borrow juggling: a Probe for a child needs an owned path string that
// lives as long as the call, so child probes are made inside the calls.
impl Probe<'_> {
    fn child(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.path)
        }
    }
}

macro_rules! placeholder {
    ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
            visitor.$visit($($value)?).map_err(|e: ProbeError| ProbeError(format!("{}: {e}", self.path)))
        })*
    };
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = ProbeError;

    placeholder! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i8(0),
        deserialize_i16 => visit_i16(0),
        deserialize_i32 => visit_i32(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u8(0),
        deserialize_u16 => visit_u16(0),
        deserialize_u32 => visit_u32(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f32(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('x'),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_bytes => visit_bytes(b""),
        deserialize_byte_buf => visit_bytes(b""),
        deserialize_unit => visit_unit(),
        deserialize_identifier => visit_str(""),
        deserialize_ignored_any => visit_unit(),
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        // A type that decides by what it is given (untagged, custom): a
        // string is what TOML gives most often.
        visitor.visit_str("")
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        // One element, so the element type (an array of tables) is probed.
        visitor.visit_seq(OneElement { probe: Some(self) })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        // Free-form keys: the map itself is the key users write.
        visitor.visit_map(de::value::MapDeserializer::<
            std::iter::Empty<((), ())>,
            ProbeError,
        >::new(std::iter::empty()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        let mut found = self.found.borrow_mut();
        for f in fields {
            found.insert(self.child(f));
        }
        drop(found);
        visitor.visit_map(Fields {
            probe: self,
            fields,
            next: 0,
            path: String::new(),
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        let first = variants
            .first()
            .ok_or_else(|| ProbeError(format!("{}: an enum without variants", self.path)))?;
        visitor.visit_enum((*first).into_deserializer())
    }
}

/// A struct's fields as a map, each value probed under its own path.
struct Fields<'a> {
    probe: Probe<'a>,
    fields: &'static [&'static str],
    next: usize,
    path: String,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        self.path = self.probe.child(field);
        seed.deserialize((*field).into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ProbeError> {
        seed.deserialize(Probe {
            path: &self.path,
            found: self.probe.found,
        })
    }
}

/// A sequence of one probed element.
struct OneElement<'a> {
    probe: Option<Probe<'a>>,
}

impl<'de> de::SeqAccess<'de> for OneElement<'_> {
    type Error = ProbeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ProbeError> {
        match self.probe.take() {
            Some(p) => seed.deserialize(p).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::HashMap;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        listen: String,
        port: Option<u16>,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    #[serde(rename_all = "kebab-case")]
    enum Mode {
        Fast,
        Slow,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Top {
        name: String,
        #[serde(default)]
        vm: Vec<Inner>,
        sub: Option<Inner>,
        vars: HashMap<String, String>,
        mode: Mode,
        #[serde(rename = "renamed-key")]
        renamed: bool,
    }

    #[test]
    fn every_nested_key_is_found() {
        let keys = config_keys::<Top>().unwrap();
        let want = [
            "mode",
            "name",
            "renamed-key",
            "sub",
            "sub.listen",
            "sub.port",
            "vars",
            "vm",
            "vm.listen",
            "vm.port",
        ];
        assert_eq!(keys.iter().map(String::as_str).collect::<Vec<_>>(), want);
    }
}
