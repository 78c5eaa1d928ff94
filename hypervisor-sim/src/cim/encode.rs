//! Writing CIM-XML (DSP0201 2.4): classes, instances, names and paths.

use std::fmt::Write as _;

use super::schema::{ClassDef, MethodDef, PropertyDef, QValue, Qualifier, Schema};
use super::value::{CimType, Instance, ObjectPath, Value};
use super::xml::escape_into as esc;

/// What to include, from the operation's parameters.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// Only properties and methods defined or overridden in the class itself.
    pub local_only: bool,
    /// Qualifiers.
    pub include_qualifiers: bool,
    /// CLASSORIGIN attributes.
    pub include_class_origin: bool,
    /// Only these properties (lower case), when set.
    pub property_list: Option<Vec<String>>,
}

impl Opts {
    fn wants(&self, p: &PropertyDef) -> bool {
        self.property_list
            .as_ref()
            .is_none_or(|l| l.iter().any(|n| n.eq_ignore_ascii_case(p.name)))
    }
}

fn qvalue(out: &mut String, v: &QValue) -> &'static str {
    match v {
        QValue::Bool(b) => {
            out.push_str(if *b {
                "<VALUE>TRUE</VALUE>"
            } else {
                "<VALUE>FALSE</VALUE>"
            });
            "boolean"
        }
        QValue::Str(s) => {
            out.push_str("<VALUE>");
            esc(out, s);
            out.push_str("</VALUE>");
            "string"
        }
        QValue::Strs(v) => {
            out.push_str("<VALUE.ARRAY>");
            for s in v {
                out.push_str("<VALUE>");
                esc(out, s);
                out.push_str("</VALUE>");
            }
            out.push_str("</VALUE.ARRAY>");
            "string"
        }
    }
}

fn qualifier(out: &mut String, q: &Qualifier, propagated: bool) {
    let mut body = String::new();
    let ty = qvalue(&mut body, &q.value);
    let _ = write!(out, "<QUALIFIER NAME=\"{}\" TYPE=\"{ty}\"", q.name);
    if propagated {
        out.push_str(" PROPAGATED=\"true\"");
    }
    if !q.overridable {
        out.push_str(" OVERRIDABLE=\"false\"");
    }
    if !q.tosubclass {
        out.push_str(" TOSUBCLASS=\"false\"");
    }
    out.push('>');
    out.push_str(&body);
    out.push_str("</QUALIFIER>");
}

/// A scalar VALUE's text.
fn scalar(out: &mut String, schema: &Schema, v: &Value) {
    out.push_str("<VALUE>");
    match v {
        Value::Instance(i) => {
            let mut inner = String::new();
            instance(&mut inner, schema, i, &Opts::default(), None);
            esc(out, &inner);
        }
        Value::Str(s) => esc(out, s),
        Value::Bool(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
        Value::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Sint(i) => {
            let _ = write!(out, "{i}");
        }
        other => esc(out, &other.text()),
    }
    out.push_str("</VALUE>");
}

/// A property of an instance or class with its value.
fn property(
    out: &mut String,
    schema: &Schema,
    p: &PropertyDef,
    v: &Value,
    opts: &Opts,
    in_class: bool,
) {
    let origin = |out: &mut String| {
        if opts.include_class_origin {
            let _ = write!(out, " CLASSORIGIN=\"{}\"", p.class_origin);
        }
        if in_class && p.propagated {
            out.push_str(" PROPAGATED=\"true\"");
        }
    };
    let quals = |out: &mut String| {
        if opts.include_qualifiers {
            for q in &p.qualifiers {
                qualifier(out, q, p.propagated);
            }
        }
    };
    if let Some(rc) = p.ref_class {
        let _ = write!(
            out,
            "<PROPERTY.REFERENCE NAME=\"{}\" REFERENCECLASS=\"{rc}\"",
            p.name
        );
        origin(out);
        out.push('>');
        quals(out);
        if let Value::Ref(path) = v {
            value_reference(out, schema, path);
        }
        out.push_str("</PROPERTY.REFERENCE>");
    } else if p.array {
        let _ = write!(
            out,
            "<PROPERTY.ARRAY NAME=\"{}\" TYPE=\"{}\"",
            p.name,
            p.ty.name()
        );
        origin(out);
        out.push('>');
        quals(out);
        if let Value::Array(items) = v {
            out.push_str("<VALUE.ARRAY>");
            for it in items {
                match it {
                    Value::Null => out.push_str("<VALUE.NULL/>"),
                    it => scalar(out, schema, it),
                }
            }
            out.push_str("</VALUE.ARRAY>");
        }
        out.push_str("</PROPERTY.ARRAY>");
    } else {
        let _ = write!(
            out,
            "<PROPERTY NAME=\"{}\" TYPE=\"{}\"",
            p.name,
            p.ty.name()
        );
        if p.embedded {
            out.push_str(" EmbeddedObject=\"instance\"");
        }
        origin(out);
        out.push('>');
        quals(out);
        if !matches!(v, Value::Null | Value::Array(_)) {
            scalar(out, schema, v);
        }
        out.push_str("</PROPERTY>");
    }
}

/// An `INSTANCE`. With `restrict` set (DeepInheritance false on a
/// superclass), only that class's properties are included.
pub fn instance(
    out: &mut String,
    schema: &Schema,
    inst: &Instance,
    opts: &Opts,
    restrict: Option<&ClassDef>,
) {
    let _ = write!(out, "<INSTANCE CLASSNAME=\"{}\">", inst.class);
    if let Some(def) = schema.get(&inst.class) {
        // Values in class order, found in one pass (providers spell property
        // names as the schema does; other spellings fall back to a search).
        let mut vals: Vec<&Value> = vec![&Value::Null; def.properties.len()];
        for (k, v) in &inst.props {
            if let Some(i) = def.properties.iter().position(|p| p.name == k).or_else(|| {
                def.properties
                    .iter()
                    .position(|p| p.name.eq_ignore_ascii_case(k))
            }) {
                vals[i] = v;
            }
        }
        for (p, v) in def.properties.iter().zip(vals) {
            if !opts.wants(p) || restrict.is_some_and(|r| r.property(p.name).is_none()) {
                continue;
            }
            property(out, schema, p, v, opts, false);
        }
    }
    out.push_str("</INSTANCE>");
}

fn key_type(schema: &Schema, class: &str, key: &str, v: &Value) -> CimType {
    schema
        .get(class)
        .and_then(|c| c.property(key))
        .map(|p| p.ty)
        .unwrap_or(match v {
            Value::Bool(_) => CimType::Boolean,
            Value::Uint(_) => CimType::Uint64,
            Value::Sint(_) => CimType::Sint64,
            Value::Real(_) => CimType::Real64,
            Value::Ref(_) => CimType::Reference,
            _ => CimType::String,
        })
}

/// An `INSTANCENAME`.
pub fn instance_name(out: &mut String, schema: &Schema, p: &ObjectPath) {
    let _ = write!(out, "<INSTANCENAME CLASSNAME=\"{}\">", p.class);
    for (k, v) in &p.keys {
        let _ = write!(out, "<KEYBINDING NAME=\"{k}\">");
        match v {
            Value::Ref(r) => value_reference(out, schema, r),
            v => {
                let ty = key_type(schema, &p.class, k, v);
                let vt = match ty {
                    CimType::Boolean => "boolean",
                    t if t.is_integer() || matches!(t, CimType::Real32 | CimType::Real64) => {
                        "numeric"
                    }
                    _ => "string",
                };
                let _ = write!(out, "<KEYVALUE VALUETYPE=\"{vt}\" TYPE=\"{}\">", ty.name());
                esc(out, &v.text());
                out.push_str("</KEYVALUE>");
            }
        }
        out.push_str("</KEYBINDING>");
    }
    out.push_str("</INSTANCENAME>");
}

/// A `LOCALNAMESPACEPATH`.
pub fn local_ns(out: &mut String, ns: &str) {
    out.push_str("<LOCALNAMESPACEPATH>");
    for part in ns.split('/').filter(|s| !s.is_empty()) {
        out.push_str("<NAMESPACE NAME=\"");
        esc(out, part);
        out.push_str("\"/>");
    }
    out.push_str("</LOCALNAMESPACEPATH>");
}

/// An `INSTANCEPATH` (host and namespace from the path, else the defaults).
pub fn instance_path(out: &mut String, schema: &Schema, p: &ObjectPath, host: &str, ns: &str) {
    out.push_str("<INSTANCEPATH><NAMESPACEPATH><HOST>");
    esc(out, p.host.as_deref().unwrap_or(host));
    out.push_str("</HOST>");
    local_ns(out, p.namespace.as_deref().unwrap_or(ns));
    out.push_str("</NAMESPACEPATH>");
    instance_name(out, schema, p);
    out.push_str("</INSTANCEPATH>");
}

/// A `VALUE.REFERENCE`: with a namespace as `LOCALINSTANCEPATH` (or
/// `INSTANCEPATH` with a host), else `INSTANCENAME`.
pub fn value_reference(out: &mut String, schema: &Schema, p: &ObjectPath) {
    out.push_str("<VALUE.REFERENCE>");
    match (&p.host, &p.namespace) {
        (Some(h), Some(ns)) => instance_path(out, schema, p, h, ns),
        (None, Some(ns)) => {
            out.push_str("<LOCALINSTANCEPATH>");
            local_ns(out, ns);
            instance_name(out, schema, p);
            out.push_str("</LOCALINSTANCEPATH>");
        }
        _ => instance_name(out, schema, p),
    }
    out.push_str("</VALUE.REFERENCE>");
}

fn method(out: &mut String, m: &MethodDef, opts: &Opts) {
    let _ = write!(out, "<METHOD NAME=\"{}\" TYPE=\"{}\"", m.name, m.ret.name());
    if opts.include_class_origin {
        let _ = write!(out, " CLASSORIGIN=\"{}\"", m.class_origin);
    }
    if m.propagated {
        out.push_str(" PROPAGATED=\"true\"");
    }
    out.push('>');
    if opts.include_qualifiers {
        for q in &m.qualifiers {
            qualifier(out, q, m.propagated);
        }
    }
    for p in &m.params {
        let (tag, attr) = match (p.ref_class, p.array) {
            (Some(rc), false) => ("PARAMETER.REFERENCE", format!("REFERENCECLASS=\"{rc}\"")),
            (Some(rc), true) => ("PARAMETER.REFARRAY", format!("REFERENCECLASS=\"{rc}\"")),
            (None, true) => ("PARAMETER.ARRAY", format!("TYPE=\"{}\"", p.ty.name())),
            (None, false) => ("PARAMETER", format!("TYPE=\"{}\"", p.ty.name())),
        };
        let _ = write!(out, "<{tag} NAME=\"{}\" {attr}>", p.name);
        if opts.include_qualifiers {
            for q in &p.qualifiers {
                qualifier(out, q, false);
            }
        }
        let _ = write!(out, "</{tag}>");
    }
    out.push_str("</METHOD>");
}

/// A `CLASS`.
pub fn class(out: &mut String, schema: &Schema, c: &ClassDef, opts: &Opts) {
    let _ = write!(out, "<CLASS NAME=\"{}\"", c.name);
    if let Some(s) = c.superclass {
        let _ = write!(out, " SUPERCLASS=\"{s}\"");
    }
    out.push('>');
    if opts.include_qualifiers {
        for q in &c.qualifiers {
            qualifier(out, q, false);
        }
    }
    for p in &c.properties {
        if (opts.local_only && p.propagated) || !opts.wants(p) {
            continue;
        }
        property(out, schema, p, &Value::Null, opts, true);
    }
    for m in &c.methods {
        if opts.local_only && m.propagated {
            continue;
        }
        method(out, m, opts);
    }
    out.push_str("</CLASS>");
}
