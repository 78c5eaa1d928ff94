//! CIM values, object paths and instances (DSP0004 types, DSP0201 shapes).

use std::fmt::Write as _;

/// A CIM data type (DSP0004 table 2), without the array flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CimType {
    /// boolean
    Boolean,
    /// string
    String,
    /// char16
    Char16,
    /// uint8
    Uint8,
    /// sint8
    Sint8,
    /// uint16
    Uint16,
    /// sint16
    Sint16,
    /// uint32
    Uint32,
    /// sint32
    Sint32,
    /// uint64
    Uint64,
    /// sint64
    Sint64,
    /// real32
    Real32,
    /// real64
    Real64,
    /// datetime
    Datetime,
    /// A reference (the class is kept on the property).
    Reference,
}

impl CimType {
    /// The CIM-XML TYPE attribute value.
    pub fn name(self) -> &'static str {
        match self {
            CimType::Boolean => "boolean",
            CimType::String => "string",
            CimType::Char16 => "char16",
            CimType::Uint8 => "uint8",
            CimType::Sint8 => "sint8",
            CimType::Uint16 => "uint16",
            CimType::Sint16 => "sint16",
            CimType::Uint32 => "uint32",
            CimType::Sint32 => "sint32",
            CimType::Uint64 => "uint64",
            CimType::Sint64 => "sint64",
            CimType::Real32 => "real32",
            CimType::Real64 => "real64",
            CimType::Datetime => "datetime",
            CimType::Reference => "reference",
        }
    }

    /// Parse a TYPE attribute value.
    pub fn from_name(s: &str) -> Option<CimType> {
        Some(match s {
            "boolean" => CimType::Boolean,
            "string" => CimType::String,
            "char16" => CimType::Char16,
            "uint8" => CimType::Uint8,
            "sint8" => CimType::Sint8,
            "uint16" => CimType::Uint16,
            "sint16" => CimType::Sint16,
            "uint32" => CimType::Uint32,
            "sint32" => CimType::Sint32,
            "uint64" => CimType::Uint64,
            "sint64" => CimType::Sint64,
            "real32" => CimType::Real32,
            "real64" => CimType::Real64,
            "datetime" => CimType::Datetime,
            "reference" => CimType::Reference,
            _ => return None,
        })
    }

    /// Whether the type is an integer type.
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            CimType::Uint8
                | CimType::Sint8
                | CimType::Uint16
                | CimType::Sint16
                | CimType::Uint32
                | CimType::Sint32
                | CimType::Uint64
                | CimType::Sint64
        )
    }
}

/// A property, parameter or key value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// boolean
    Bool(bool),
    /// string, char16, datetime
    Str(String),
    /// unsigned integers
    Uint(u64),
    /// signed integers
    Sint(i64),
    /// reals
    Real(f64),
    /// A reference.
    Ref(Box<ObjectPath>),
    /// An embedded instance (a string property with EmbeddedInstance).
    Instance(Box<Instance>),
    /// An array.
    Array(Vec<Value>),
}

impl Value {
    /// A string value.
    pub fn s(v: impl Into<String>) -> Value {
        Value::Str(v.into())
    }

    /// Optional string: NULL when absent.
    pub fn opt(v: Option<impl Into<String>>) -> Value {
        v.map_or(Value::Null, |v| Value::Str(v.into()))
    }

    /// An array of unsigned integers.
    pub fn uints(v: &[u64]) -> Value {
        Value::Array(v.iter().map(|&x| Value::Uint(x)).collect())
    }

    /// An array of strings.
    pub fn strs<S: AsRef<str>>(v: &[S]) -> Value {
        Value::Array(v.iter().map(|x| Value::s(x.as_ref())).collect())
    }

    /// The value as CIM-XML VALUE text (not for NULL, arrays or references).
    pub fn text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.into(),
            Value::Str(s) => s.clone(),
            Value::Uint(u) => u.to_string(),
            Value::Sint(i) => i.to_string(),
            Value::Real(r) => format!("{r:e}"),
            Value::Ref(p) => p.to_string(),
            Value::Instance(i) => i.class.clone(),
            Value::Array(_) => String::new(),
        }
    }

    /// Convert textual VALUE content to a typed value.
    pub fn parse(ty: CimType, text: &str) -> Option<Value> {
        let t = text.trim();
        Some(match ty {
            CimType::Boolean => match t.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return None,
            },
            CimType::String | CimType::Char16 | CimType::Datetime => Value::Str(text.into()),
            CimType::Uint8 | CimType::Uint16 | CimType::Uint32 | CimType::Uint64 => {
                let v = parse_uint(t)?;
                let max = match ty {
                    CimType::Uint8 => u8::MAX as u64,
                    CimType::Uint16 => u16::MAX as u64,
                    CimType::Uint32 => u32::MAX as u64,
                    _ => u64::MAX,
                };
                if v > max {
                    return None;
                }
                Value::Uint(v)
            }
            CimType::Sint8 | CimType::Sint16 | CimType::Sint32 | CimType::Sint64 => {
                let v: i64 = t.parse().ok()?;
                let (lo, hi) = match ty {
                    CimType::Sint8 => (i8::MIN as i64, i8::MAX as i64),
                    CimType::Sint16 => (i16::MIN as i64, i16::MAX as i64),
                    CimType::Sint32 => (i32::MIN as i64, i32::MAX as i64),
                    _ => (i64::MIN, i64::MAX),
                };
                if v < lo || v > hi {
                    return None;
                }
                Value::Sint(v)
            }
            CimType::Real32 | CimType::Real64 => Value::Real(t.parse().ok()?),
            CimType::Reference => return None,
        })
    }
}

fn parse_uint(t: &str) -> Option<u64> {
    let t = t.strip_prefix('+').unwrap_or(t);
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        t.parse().ok()
    }
}

/// An instance path (DSP0201 INSTANCEPATH / LOCALINSTANCEPATH /
/// INSTANCENAME) or, with no keys, a class path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectPath {
    /// Host, when the path is a full one.
    pub host: Option<String>,
    /// Namespace, when known.
    pub namespace: Option<String>,
    /// Class name.
    pub class: String,
    /// Key bindings in class order.
    pub keys: Vec<(String, Value)>,
}

impl ObjectPath {
    /// A path of `class` with these keys.
    pub fn new(class: &str, keys: Vec<(String, Value)>) -> ObjectPath {
        ObjectPath {
            host: None,
            namespace: None,
            class: class.into(),
            keys,
        }
    }

    /// With a namespace.
    pub fn in_ns(mut self, ns: &str) -> ObjectPath {
        self.namespace = Some(ns.into());
        self
    }

    /// A key's value (names compared case-insensitively).
    pub fn key(&self, name: &str) -> Option<&Value> {
        self.keys
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether two paths name the same instance: class names and key names
    /// compared without case, values by text, namespaces only when both
    /// carry one, hosts ignored.
    pub fn same_instance(&self, other: &ObjectPath) -> bool {
        if !self.class.eq_ignore_ascii_case(&other.class) || self.keys.len() != other.keys.len() {
            return false;
        }
        if let (Some(a), Some(b)) = (&self.namespace, &other.namespace) {
            if !ns_eq(a, b) {
                return false;
            }
        }
        self.keys.iter().all(|(k, v)| {
            other.key(k).is_some_and(|w| match (v, w) {
                (Value::Ref(a), Value::Ref(b)) => a.same_instance(b),
                (a, b) => a.text() == b.text(),
            })
        })
    }
}

/// Compare namespace names: case-insensitive, leading/trailing '/' ignored.
pub fn ns_eq(a: &str, b: &str) -> bool {
    a.trim_matches('/')
        .eq_ignore_ascii_case(b.trim_matches('/'))
}

impl std::fmt::Display for ObjectPath {
    /// The WBEM URI untyped form (DSP0207): `//host/ns:Class.k="v",n=1`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(h) = &self.host {
            write!(f, "//{h}/")?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}:")?;
        }
        f.write_str(&self.class)?;
        for (i, (k, v)) in self.keys.iter().enumerate() {
            f.write_char(if i == 0 { '.' } else { ',' })?;
            match v {
                Value::Str(s) => {
                    write!(f, "{k}=\"")?;
                    for c in s.chars() {
                        if c == '"' || c == '\\' {
                            f.write_char('\\')?;
                        }
                        f.write_char(c)?;
                    }
                    f.write_char('"')?;
                }
                Value::Ref(p) => {
                    write!(f, "{k}=\"")?;
                    for c in p.to_string().chars() {
                        if c == '"' || c == '\\' {
                            f.write_char('\\')?;
                        }
                        f.write_char(c)?;
                    }
                    f.write_char('"')?;
                }
                v => write!(f, "{k}={}", v.text())?,
            }
        }
        Ok(())
    }
}

/// An instance: its class, its property values (unset ones are NULL) and,
/// once known, its path.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// The creation class.
    pub class: String,
    /// Property values by name.
    pub props: Vec<(String, Value)>,
}

impl Instance {
    /// An empty instance of `class`.
    pub fn new(class: &str) -> Instance {
        Instance {
            class: class.into(),
            props: Vec::new(),
        }
    }

    /// Set a property (builder style).
    pub fn with(mut self, name: &str, v: Value) -> Instance {
        self.set(name, v);
        self
    }

    /// Set a property.
    pub fn set(&mut self, name: &str, v: Value) {
        match self
            .props
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some((_, old)) => *old = v,
            None => self.props.push((name.to_string(), v)),
        }
    }

    /// A property value (NULL when unset).
    pub fn get(&self, name: &str) -> &Value {
        self.props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or(&Value::Null, |(_, v)| v)
    }
}

/// A CIM datetime timestamp (DSP0004 5.2.4) for a Unix time, in UTC.
pub fn datetime(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}.{:06}+000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_format() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(datetime(t), "20231114221320.000000+000");
    }

    #[test]
    fn paths_compare_loosely() {
        let a = ObjectPath::new("CIM_X", vec![("Name".into(), Value::s("a"))]).in_ns("root/cimv2");
        let b = ObjectPath::new("cim_x", vec![("NAME".into(), Value::s("a"))]);
        assert!(a.same_instance(&b));
        assert_eq!(a.to_string(), "root/cimv2:CIM_X.Name=\"a\"");
        let c = ObjectPath::new("CIM_X", vec![("Name".into(), Value::s("b"))]);
        assert!(!a.same_instance(&c));
    }

    #[test]
    fn typed_parse_checks_ranges() {
        assert_eq!(Value::parse(CimType::Uint8, "255"), Some(Value::Uint(255)));
        assert_eq!(Value::parse(CimType::Uint8, "256"), None);
        assert_eq!(Value::parse(CimType::Sint8, "-129"), None);
        assert_eq!(
            Value::parse(CimType::Boolean, "true"),
            Some(Value::Bool(true))
        );
    }
}
