//! The CIM binding's XML (DSP0227, with DSP0230's schema mapping):
//! resource URIs for classes, instances as elements in their class's
//! resource URI namespace, references and instance addresses as endpoint
//! references with selectors.
//!
//! Namespace prefixes `wsa`, `wsman`, `xsi` and `cim` are declared on the
//! response envelope ([`super::ops`]); each instance element declares its
//! own class namespace.

use std::fmt::Write as _;

use crate::cim::schema::{CimType, ClassDef, Schema};
use crate::cim::value::{Instance, ObjectPath, Value};
use crate::cim::xml::escape_into as esc;

/// Resource URI prefix of DMTF classes (`CIM_*`).
pub const DMTF_PREFIX: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/";
/// Resource URI prefix of hvsim's own classes (`HVSIM_*`), in the form
/// VMware (`http://schemas.vmware.com/wbem/wscim/1/cim-schema/2/`) and
/// OMC use for theirs.
pub const VENDOR_PREFIX: &str = "http://schemas.hvsim.dev/wbem/wscim/1/cim-schema/2/";
/// The "all classes" resource URIs of DSP0227, for filtered enumerations
/// (WQL/CQL and association filters).
pub const ALL_CLASSES: [&str; 2] = [
    "http://schemas.dmtf.org/wbem/wscim/1/*",
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/*",
];

/// The resource URI of a class.
pub fn resource_uri(class: &str) -> String {
    let prefix = if class.len() > 4 && class[..4].eq_ignore_ascii_case("CIM_") {
        DMTF_PREFIX
    } else {
        VENDOR_PREFIX
    };
    format!("{prefix}{class}")
}

/// The class a resource URI names, when it has the prefix that class's
/// schema uses (a `CIM_` class under the DMTF prefix, any other under the
/// vendor prefix).
pub fn class_name(uri: &str) -> Option<&str> {
    let uri = uri.trim();
    let (prefix, class) = if let Some(c) = uri.strip_prefix(DMTF_PREFIX) {
        (DMTF_PREFIX, c)
    } else if let Some(c) = uri.strip_prefix(VENDOR_PREFIX) {
        (VENDOR_PREFIX, c)
    } else {
        return None;
    };
    if class.is_empty() || class.contains('/') || class == "*" {
        return None;
    }
    (resource_uri(class).starts_with(prefix)).then_some(class)
}

/// Append the value text of a scalar as DSP0230 writes it.
fn scalar(out: &mut String, ty: CimType, v: &Value) {
    match v {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Sint(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Real(r) if r.is_nan() => out.push_str("NaN"),
        Value::Real(r) if r.is_infinite() => out.push_str(if *r > 0.0 { "INF" } else { "-INF" }),
        Value::Real(r) => {
            let _ = write!(out, "{r}");
        }
        Value::Str(s) if ty == CimType::Datetime => {
            out.push_str("<cim:CIM_DateTime>");
            esc(out, s);
            out.push_str("</cim:CIM_DateTime>");
        }
        other => esc(out, &other.text()),
    }
}

/// Append the inside of an endpoint reference to instance `p`: address,
/// resource URI and selectors (keys, then `__cimnamespace`).
pub fn epr_body(out: &mut String, p: &ObjectPath, address: &str, ns: &str) {
    out.push_str("<wsa:Address>");
    esc(out, address);
    out.push_str("</wsa:Address><wsa:ReferenceParameters><wsman:ResourceURI>");
    esc(out, &resource_uri(&p.class));
    out.push_str("</wsman:ResourceURI><wsman:SelectorSet>");
    for (k, v) in &p.keys {
        out.push_str("<wsman:Selector Name=\"");
        esc(out, k);
        out.push_str("\">");
        match v {
            Value::Ref(r) => {
                out.push_str("<wsa:EndpointReference>");
                epr_body(out, r, address, r.namespace.as_deref().unwrap_or(ns));
                out.push_str("</wsa:EndpointReference>");
            }
            v => esc(out, &v.text()),
        }
        out.push_str("</wsman:Selector>");
    }
    out.push_str("<wsman:Selector Name=\"__cimnamespace\">");
    esc(out, p.namespace.as_deref().unwrap_or(ns));
    out.push_str("</wsman:Selector></wsman:SelectorSet></wsa:ReferenceParameters>");
}

/// Append `<wsa:EndpointReference>` for instance `p`.
pub fn epr(out: &mut String, p: &ObjectPath, address: &str, ns: &str) {
    out.push_str("<wsa:EndpointReference>");
    epr_body(out, p, address, ns);
    out.push_str("</wsa:EndpointReference>");
}

/// How much of an instance to write.
#[derive(Debug, Clone, Copy)]
pub enum Props<'a> {
    /// Every property of the class (unset ones as `xsi:nil`).
    All,
    /// Only the properties the instance carries (a WQL projection).
    Present,
    /// Only these (DSP0227 IncludeResultProperty), by name.
    Only(&'a [String]),
}

/// Append an instance as the element `p:<Class>` in its resource URI's
/// namespace.
pub fn instance(
    out: &mut String,
    schema: &Schema,
    inst: &Instance,
    which: Props,
    address: &str,
    ns: &str,
) {
    let uri = resource_uri(&inst.class);
    out.push_str("<p:");
    out.push_str(&inst.class);
    out.push_str(" xmlns:p=\"");
    esc(out, &uri);
    out.push_str("\">");
    match schema.get(&inst.class) {
        Some(def) => properties(out, schema, def, inst, which, address, ns),
        None => {
            // Not a schema class (cannot happen for provider instances):
            // the values as strings.
            for (k, v) in &inst.props {
                element(out, schema, k, CimType::String, v, address, ns);
            }
        }
    }
    out.push_str("</p:");
    out.push_str(&inst.class);
    out.push('>');
}

fn properties(
    out: &mut String,
    schema: &Schema,
    def: &ClassDef,
    inst: &Instance,
    which: Props,
    address: &str,
    ns: &str,
) {
    // DSP0230 orders the elements by property name.
    let mut order: Vec<&crate::cim::schema::PropertyDef> = def.properties.iter().collect();
    order.sort_by(|a, b| a.name.cmp(b.name));
    for p in order {
        let present = inst
            .props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(p.name));
        let wanted = match which {
            Props::All => true,
            Props::Present => present.is_some(),
            Props::Only(list) => list.iter().any(|n| n.eq_ignore_ascii_case(p.name)),
        };
        if !wanted {
            continue;
        }
        let v = present.map_or(&Value::Null, |(_, v)| v);
        element(out, schema, p.name, p.ty, v, address, ns);
    }
}

fn element(
    out: &mut String,
    schema: &Schema,
    name: &str,
    ty: CimType,
    v: &Value,
    address: &str,
    ns: &str,
) {
    match v {
        Value::Null => {
            let _ = write!(out, "<p:{name} xsi:nil=\"true\"/>");
        }
        Value::Array(items) => {
            for it in items {
                element(out, schema, name, ty, it, address, ns);
            }
        }
        Value::Ref(r) => {
            let _ = write!(out, "<p:{name}>");
            epr_body(out, r, address, r.namespace.as_deref().unwrap_or(ns));
            let _ = write!(out, "</p:{name}>");
        }
        Value::Instance(i) => {
            let _ = write!(out, "<p:{name}>");
            // The embedded instance declares its own `p` prefix.
            instance(out, schema, i, Props::All, address, ns);
            let _ = write!(out, "</p:{name}>");
        }
        v => {
            let _ = write!(out, "<p:{name}>");
            scalar(out, ty, v);
            let _ = write!(out, "</p:{name}>");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_uris_round_trip() {
        let u = resource_uri("CIM_ComputerSystem");
        assert_eq!(
            u,
            "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ComputerSystem"
        );
        assert_eq!(class_name(&u), Some("CIM_ComputerSystem"));
        let v = resource_uri("HVSIM_GuestTools");
        assert!(v.starts_with(VENDOR_PREFIX));
        assert_eq!(class_name(&v), Some("HVSIM_GuestTools"));
        // A vendor class under the DMTF prefix (and the reverse) is not it.
        assert_eq!(class_name(&format!("{DMTF_PREFIX}HVSIM_GuestTools")), None);
        assert_eq!(
            class_name(&format!("{VENDOR_PREFIX}CIM_ComputerSystem")),
            None
        );
        assert_eq!(class_name("http://example.com/CIM_X"), None);
        assert_eq!(class_name(ALL_CLASSES[0]), None);
    }

    #[test]
    fn instance_xml() {
        let schema = crate::cim::schema::schema();
        let i = Instance::new("CIM_IPProtocolEndpoint")
            .with("Name", Value::s("a<b"))
            .with("PrefixLength", Value::Uint(24));
        let mut out = String::new();
        instance(&mut out, &schema, &i, Props::Present, "addr", "root/cimv2");
        assert_eq!(
            out,
            "<p:CIM_IPProtocolEndpoint xmlns:p=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_IPProtocolEndpoint\"><p:Name>a&lt;b</p:Name><p:PrefixLength>24</p:PrefixLength></p:CIM_IPProtocolEndpoint>"
        );
        let mut all = String::new();
        instance(&mut all, &schema, &i, Props::All, "addr", "root/cimv2");
        assert!(all.contains("<p:IPv4Address xsi:nil=\"true\"/>"), "{all}");
    }
}
