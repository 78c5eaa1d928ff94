//! vim25 values: managed object references and data objects, and how they
//! are written as XML in responses (property values, method results).
//!
//! The encoding rules the clients (pyvmomi, govmomi) rely on:
//! * where the declared type is `anyType` (a property value, `OptionValue.value`)
//!   every value carries `xsi:type`; data objects always do (their fields
//!   may be of a subtype);
//! * an array inside a data object is the field repeated; an array in an
//!   `anyType` position is one element of type `ArrayOfX` holding `<X>` items;
//! * a method returning an array repeats `returnval`;
//! * a managed object reference is `<tag type="Type">value</tag>`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use super::soap::{escape, escape_into};

/// A managed object reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mor {
    /// Managed object type (`VirtualMachine`, `Folder`, ...).
    pub ty: String,
    /// Its id (`ha-folder-root`, `1`, ...).
    pub value: String,
}

impl Mor {
    /// A reference.
    pub fn new(ty: &str, value: &str) -> Mor {
        Mor {
            ty: ty.into(),
            value: value.into(),
        }
    }
}

/// A value of the vim25 type system.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// xsd:string.
    Str(String),
    /// xsd:int.
    Int(i32),
    /// xsd:long.
    Long(i64),
    /// xsd:boolean.
    Bool(bool),
    /// xsd:dateTime.
    Time(SystemTime),
    /// An enum value of the named enum type.
    Enum(&'static str, String),
    /// A managed object reference.
    Mor(Mor),
    /// A data object of the named type with its set fields in order.
    Obj(&'static str, Vec<(&'static str, Val)>),
    /// An array of the named element type (`string`, `int`,
    /// `ManagedObjectReference`, `GuestNicInfo`, ...).
    List(&'static str, Vec<Val>),
    /// A value in an `anyType` field inside a data object: written with
    /// its `xsi:type`.
    Any(Box<Val>),
    /// A data object of the named type whose content is ready-made XML
    /// (a fault inside a `LocalizedMethodFault`, a cached ObjectContent).
    Raw(&'static str, Arc<str>),
    /// A value already written for an `anyType` position (from
    /// [`prerender`]): what goes between `<tag` and `</tag>`, so it can be
    /// placed under any element name.
    Pre(Arc<str>),
}

impl Val {
    /// A string value.
    pub fn s(v: impl Into<String>) -> Val {
        Val::Str(v.into())
    }

    /// A reference value.
    pub fn mor(ty: &str, value: &str) -> Val {
        Val::Mor(Mor::new(ty, value))
    }

    /// The field `name` of a data object.
    pub fn field(&self, name: &str) -> Option<&Val> {
        match self {
            Val::Obj(_, fields) => fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v),
            Val::Any(v) => v.field(name),
            _ => None,
        }
    }

    /// Follow a dotted property path (`summary.config.name`).
    pub fn path(&self, path: &str) -> Option<&Val> {
        let mut cur = self;
        for part in path.split('.') {
            cur = cur.field(part)?;
        }
        Some(cur)
    }

    /// The references this value holds (one, or an array of them).
    pub fn mors(&self) -> Vec<Mor> {
        match self {
            Val::Mor(m) => vec![m.clone()],
            Val::List(_, items) => items.iter().flat_map(Val::mors).collect(),
            _ => Vec::new(),
        }
    }

    /// The text of a string or enum value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) | Val::Enum(_, s) => Some(s),
            Val::Any(v) => v.as_str(),
            _ => None,
        }
    }
}

fn primitive_xsd(v: &Val) -> Option<&'static str> {
    Some(match v {
        Val::Str(_) => "xsd:string",
        Val::Int(_) => "xsd:int",
        Val::Long(_) => "xsd:long",
        Val::Bool(_) => "xsd:boolean",
        Val::Time(_) => "xsd:dateTime",
        _ => return None,
    })
}

/// An xsd:dateTime in UTC with milliseconds.
pub fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
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
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn text(v: &Val) -> String {
    match v {
        Val::Str(s) | Val::Enum(_, s) => escape(s),
        Val::Int(i) => i.to_string(),
        Val::Long(i) => i.to_string(),
        Val::Bool(b) => b.to_string(),
        Val::Time(t) => format_time(*t),
        Val::Mor(m) => escape(&m.value),
        _ => String::new(),
    }
}

/// `ArrayOfX` for element type `X` (`string` → `ArrayOfString`).
pub fn array_type(elem: &str) -> String {
    let mut c = elem.chars();
    match c.next() {
        Some(f) => format!("ArrayOf{}{}", f.to_ascii_uppercase(), c.as_str()),
        None => "ArrayOfAnyType".into(),
    }
}

/// Write `v` as element `tag`; `typed` puts `xsi:type` on it (an `anyType`
/// position).
pub fn write(out: &mut String, tag: &str, v: &Val, typed: bool) {
    match v {
        Val::Any(inner) => write(out, tag, inner, true),
        Val::Pre(x) => {
            out.push('<');
            out.push_str(tag);
            out.push_str(x);
            close(out, tag);
        }
        Val::Mor(m) => {
            open(out, tag);
            out.push_str(" type=\"");
            escape_into(out, &m.ty);
            out.push('"');
            if typed {
                out.push_str(" xsi:type=\"ManagedObjectReference\"");
            }
            out.push('>');
            escape_into(out, &m.value);
            close(out, tag);
        }
        Val::Enum(ty, s) => {
            open(out, tag);
            if typed {
                typ(out, ty);
            }
            out.push('>');
            escape_into(out, s);
            close(out, tag);
        }
        Val::Obj(ty, fields) => {
            open(out, tag);
            typ(out, ty);
            out.push('>');
            for (name, fv) in fields {
                match fv {
                    Val::List(_, items) => {
                        for it in items {
                            write(out, name, it, false);
                        }
                    }
                    other => write(out, name, other, false),
                }
            }
            close(out, tag);
        }
        Val::Raw(ty, xml) => {
            open(out, tag);
            typ(out, ty);
            out.push('>');
            out.push_str(xml);
            close(out, tag);
        }
        Val::List(elem, items) => {
            // Only in an anyType position: ArrayOfX with <X> items.
            open(out, tag);
            typ(out, &array_type(elem));
            out.push('>');
            for it in items {
                write(out, elem, it, false);
            }
            close(out, tag);
        }
        prim => {
            open(out, tag);
            if typed {
                typ(out, primitive_xsd(prim).unwrap_or("xsd:string"));
            }
            out.push('>');
            match prim {
                Val::Str(s) => escape_into(out, s),
                Val::Int(i) => {
                    let _ = write!(out, "{i}");
                }
                Val::Long(i) => {
                    let _ = write!(out, "{i}");
                }
                Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                other => out.push_str(&text(other)),
            }
            close(out, tag);
        }
    }
}

fn open(out: &mut String, tag: &str) {
    out.push('<');
    out.push_str(tag);
}

fn typ(out: &mut String, ty: &str) {
    out.push_str(" xsi:type=\"");
    out.push_str(ty);
    out.push('"');
}

fn close(out: &mut String, tag: &str) {
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

/// `v` written for an `anyType` position, to be placed later as a
/// [`Val::Pre`] under any element name.
pub fn prerender(v: &Val) -> Arc<str> {
    let mut s = String::new();
    write(&mut s, "v", v, true);
    // Strip the "<v" before and the "</v>" after.
    Arc::from(&s[2..s.len() - 4])
}

/// A method result: nothing for `None`, one `returnval` per array item, or
/// one `returnval`.
pub fn returnval(v: Option<&Val>) -> String {
    let mut out = String::new();
    returnval_into(&mut out, v);
    out
}

/// [`returnval`] appending to `out`.
pub fn returnval_into(out: &mut String, v: Option<&Val>) {
    match v {
        None => {}
        Some(Val::List(_, items)) => {
            for it in items {
                write(out, "returnval", it, false);
            }
        }
        Some(v @ (Val::Mor(_) | Val::Obj(..) | Val::Raw(..) | Val::Pre(_))) => {
            write(out, "returnval", v, false)
        }
        Some(v) => write(out, "returnval", v, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn encodes_as_vim25_does() {
        let mut out = String::new();
        let v = Val::Obj(
            "GuestNicInfo",
            vec![
                ("macAddress", Val::s("00:50:56:00:00:01")),
                (
                    "ipAddress",
                    Val::List("string", vec![Val::s("10.0.0.1"), Val::s("fe80::1")]),
                ),
                ("connected", Val::Bool(true)),
            ],
        );
        write(&mut out, "val", &v, true);
        assert_eq!(out, "<val xsi:type=\"GuestNicInfo\"><macAddress>00:50:56:00:00:01</macAddress><ipAddress>10.0.0.1</ipAddress><ipAddress>fe80::1</ipAddress><connected>true</connected></val>");
        let mut out = String::new();
        write(
            &mut out,
            "val",
            &Val::List(
                "ManagedObjectReference",
                vec![Val::mor("VirtualMachine", "1")],
            ),
            true,
        );
        assert_eq!(out, "<val xsi:type=\"ArrayOfManagedObjectReference\"><ManagedObjectReference type=\"VirtualMachine\">1</ManagedObjectReference></val>");
        assert_eq!(
            returnval(Some(&Val::s("a<b"))),
            "<returnval xsi:type=\"xsd:string\">a&lt;b</returnval>"
        );
    }

    #[test]
    fn prerendered_values_write_as_the_value_does() {
        let v = Val::List("string", vec![Val::s("a&b"), Val::s("c")]);
        let pre = Val::Pre(prerender(&v));
        for tag in ["val", "x"] {
            let (mut a, mut b) = (String::new(), String::new());
            write(&mut a, tag, &v, true);
            write(&mut b, tag, &pre, true);
            assert_eq!(a, b);
        }
        let (mut a, mut b) = (String::new(), String::new());
        let obj = |v| Val::Obj("DynamicProperty", vec![("name", Val::s("n")), ("val", v)]);
        write(&mut a, "p", &obj(Val::Any(Box::new(v.clone()))), false);
        write(&mut b, "p", &obj(Val::Any(Box::new(pre))), false);
        assert_eq!(a, b);
    }

    #[test]
    fn times_are_iso8601_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_876_600_123);
        assert_eq!(format_time(t), "2025-12-04T19:30:00.123Z");
    }

    #[test]
    fn paths_resolve() {
        let v = Val::Obj(
            "X",
            vec![("summary", Val::Obj("S", vec![("name", Val::s("vm0"))]))],
        );
        assert_eq!(v.path("summary.name").and_then(Val::as_str), Some("vm0"));
        assert!(v.path("summary.nope").is_none());
    }
}
