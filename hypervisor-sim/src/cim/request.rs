//! Decoding a CIM-XML operation request (DSP0201 2.4 `SIMPLEREQ`) into an
//! intrinsic or extrinsic method call with its parameters.

use super::value::{CimType, ObjectPath, Value};
use super::xml::{self, Element, XmlError, XmlLimits};

/// CIM status codes (DSP0200 1.4, table 1).
pub mod code {
    /// CIM_ERR_FAILED
    pub const FAILED: u32 = 1;
    /// CIM_ERR_ACCESS_DENIED
    pub const ACCESS_DENIED: u32 = 2;
    /// CIM_ERR_INVALID_NAMESPACE
    pub const INVALID_NAMESPACE: u32 = 3;
    /// CIM_ERR_INVALID_PARAMETER
    pub const INVALID_PARAMETER: u32 = 4;
    /// CIM_ERR_INVALID_CLASS
    pub const INVALID_CLASS: u32 = 5;
    /// CIM_ERR_NOT_FOUND
    pub const NOT_FOUND: u32 = 6;
    /// CIM_ERR_NOT_SUPPORTED
    pub const NOT_SUPPORTED: u32 = 7;
    /// CIM_ERR_ALREADY_EXISTS
    pub const ALREADY_EXISTS: u32 = 11;
    /// CIM_ERR_NO_SUCH_PROPERTY
    pub const NO_SUCH_PROPERTY: u32 = 12;
    /// CIM_ERR_TYPE_MISMATCH
    pub const TYPE_MISMATCH: u32 = 13;
    /// CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED
    pub const QUERY_LANGUAGE_NOT_SUPPORTED: u32 = 14;
    /// CIM_ERR_INVALID_QUERY
    pub const INVALID_QUERY: u32 = 15;
    /// CIM_ERR_METHOD_NOT_AVAILABLE
    pub const METHOD_NOT_AVAILABLE: u32 = 16;
    /// CIM_ERR_METHOD_NOT_FOUND
    pub const METHOD_NOT_FOUND: u32 = 17;
    /// CIM_ERR_INVALID_ENUMERATION_CONTEXT
    pub const INVALID_ENUMERATION_CONTEXT: u32 = 21;
    /// CIM_ERR_INVALID_OPERATION_TIMEOUT
    pub const INVALID_OPERATION_TIMEOUT: u32 = 22;
    /// CIM_ERR_FILTERED_ENUMERATION_NOT_SUPPORTED
    pub const FILTERED_ENUMERATION_NOT_SUPPORTED: u32 = 25;
    /// CIM_ERR_CONTINUATION_ON_ERROR_NOT_SUPPORTED
    pub const CONTINUATION_ON_ERROR_NOT_SUPPORTED: u32 = 26;
    /// CIM_ERR_SERVER_LIMITS_EXCEEDED
    pub const SERVER_LIMITS_EXCEEDED: u32 = 27;
}

/// A CIM error returned in an `ERROR` element (HTTP 200).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CIM error {code}: {description}")]
pub struct CimError {
    /// Status code ([`code`]).
    pub code: u32,
    /// What went wrong, for people.
    pub description: String,
}

impl CimError {
    /// An error with this code and text.
    pub fn new(code: u32, description: impl Into<String>) -> CimError {
        CimError {
            code,
            description: description.into(),
        }
    }
}

/// Why a request is refused at the protocol level (DSP0200 section 7: an
/// HTTP error status with a `CIMError` header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not well-formed XML or breaks a parser bound.
    #[error("request is not well-formed: {0}")]
    NotWellFormed(#[from] XmlError),
    /// Well-formed, but not a valid CIM-XML operation request.
    #[error("request is not valid CIM-XML: {0}")]
    NotValid(String),
    /// `DTDVERSION` other than 2.x.
    #[error("unsupported DTD version {0}")]
    DtdVersion(String),
    /// `CIMVERSION` other than 2.x.
    #[error("unsupported CIM version {0}")]
    CimVersion(String),
    /// `PROTOCOLVERSION` other than 1.x.
    #[error("unsupported protocol version {0}")]
    ProtocolVersion(String),
    /// `MULTIREQ`.
    #[error("multiple requests are not supported")]
    MultiReq,
}

impl RequestError {
    /// The HTTP status and `CIMError` header value.
    pub fn http(&self) -> (u16, &'static str) {
        match self {
            RequestError::NotWellFormed(_) => (400, "request-not-well-formed"),
            RequestError::NotValid(_) => (400, "request-not-valid"),
            RequestError::DtdVersion(_) => (501, "unsupported-dtd-version"),
            RequestError::CimVersion(_) => (501, "unsupported-cim-version"),
            RequestError::ProtocolVersion(_) => (501, "unsupported-protocol-version"),
            RequestError::MultiReq => (501, "multiple-requests-unsupported"),
        }
    }
}

fn invalid(m: impl Into<String>) -> RequestError {
    RequestError::NotValid(m.into())
}

/// A property of an instance in a request (CreateInstance).
#[derive(Debug, Clone, PartialEq)]
pub struct RawProperty {
    /// Name.
    pub name: String,
    /// Declared TYPE, if any.
    pub ty: Option<CimType>,
    /// The value.
    pub value: Param,
}

/// A parameter value as sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// An empty parameter: NULL.
    Null,
    /// `VALUE` text.
    Value(String),
    /// `VALUE.ARRAY`.
    Array(Vec<Option<String>>),
    /// `VALUE.REFERENCE`.
    Ref(ObjectPath),
    /// `VALUE.REFARRAY`.
    RefArray(Vec<ObjectPath>),
    /// `CLASSNAME`.
    ClassName(String),
    /// `INSTANCENAME`.
    InstanceName(ObjectPath),
    /// `INSTANCE` (or the instance of a `VALUE.NAMEDINSTANCE`).
    Instance {
        /// The class.
        class: String,
        /// Its properties.
        props: Vec<RawProperty>,
    },
    /// Something this server does not take as a parameter (e.g. a CLASS).
    Unsupported(String),
}

/// The call a request makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// An intrinsic method on a namespace.
    Intrinsic {
        /// Method name.
        name: String,
        /// Target namespace.
        ns: String,
        /// `IPARAMVALUE`s by name.
        params: Vec<(String, Param)>,
    },
    /// An extrinsic method on an instance or class.
    Method {
        /// Method name.
        name: String,
        /// The target object (namespace set).
        target: ObjectPath,
        /// `PARAMVALUE`s by name.
        params: Vec<(String, Param)>,
    },
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct CimRequest {
    /// `MESSAGE ID`, echoed in the response.
    pub id: String,
    /// The call.
    pub call: Call,
}

/// Decode a request body.
pub fn parse(body: &[u8], limits: XmlLimits) -> Result<CimRequest, RequestError> {
    let root = xml::parse(body, limits)?;
    if root.name != "CIM" {
        return Err(invalid("the root element is not CIM"));
    }
    let major = |v: Option<&str>| v.map(|v| v.split('.').next().unwrap_or("").trim().to_string());
    match major(root.attr("DTDVERSION")).as_deref() {
        Some("2") => {}
        _ => {
            return Err(RequestError::DtdVersion(
                root.attr("DTDVERSION").unwrap_or("(none)").into(),
            ))
        }
    }
    match major(root.attr("CIMVERSION")).as_deref() {
        Some("2") => {}
        _ => {
            return Err(RequestError::CimVersion(
                root.attr("CIMVERSION").unwrap_or("(none)").into(),
            ))
        }
    }
    let msg = root
        .child("MESSAGE")
        .ok_or_else(|| invalid("no MESSAGE element"))?;
    let id = msg
        .attr("ID")
        .ok_or_else(|| invalid("MESSAGE has no ID"))?
        .to_string();
    match major(msg.attr("PROTOCOLVERSION")).as_deref() {
        Some("1") => {}
        _ => {
            return Err(RequestError::ProtocolVersion(
                msg.attr("PROTOCOLVERSION").unwrap_or("(none)").into(),
            ))
        }
    }
    if msg.child("MULTIREQ").is_some() {
        return Err(RequestError::MultiReq);
    }
    let simple = msg
        .child("SIMPLEREQ")
        .ok_or_else(|| invalid("MESSAGE holds no SIMPLEREQ"))?;
    if let Some(call) = simple.child("IMETHODCALL") {
        let name = call
            .attr("NAME")
            .ok_or_else(|| invalid("IMETHODCALL has no NAME"))?
            .to_string();
        let ns = local_namespace(
            call.child("LOCALNAMESPACEPATH")
                .ok_or_else(|| invalid("IMETHODCALL has no LOCALNAMESPACEPATH"))?,
        )?;
        let mut params = Vec::new();
        for p in call.children_named("IPARAMVALUE") {
            let pname = p
                .attr("NAME")
                .ok_or_else(|| invalid("IPARAMVALUE has no NAME"))?;
            if params
                .iter()
                .any(|(n, _): &(String, Param)| n.eq_ignore_ascii_case(pname))
            {
                return Err(invalid(format!("parameter {pname} given twice")));
            }
            params.push((pname.to_string(), param_value(p)?));
        }
        return Ok(CimRequest {
            id,
            call: Call::Intrinsic { name, ns, params },
        });
    }
    if let Some(call) = simple.child("METHODCALL") {
        let name = call
            .attr("NAME")
            .ok_or_else(|| invalid("METHODCALL has no NAME"))?
            .to_string();
        let target = if let Some(lip) = call.child("LOCALINSTANCEPATH") {
            let ns = local_namespace(
                lip.child("LOCALNAMESPACEPATH")
                    .ok_or_else(|| invalid("LOCALINSTANCEPATH has no LOCALNAMESPACEPATH"))?,
            )?;
            instance_name(
                lip.child("INSTANCENAME")
                    .ok_or_else(|| invalid("LOCALINSTANCEPATH has no INSTANCENAME"))?,
            )?
            .in_ns(&ns)
        } else if let Some(lcp) = call.child("LOCALCLASSPATH") {
            let ns = local_namespace(
                lcp.child("LOCALNAMESPACEPATH")
                    .ok_or_else(|| invalid("LOCALCLASSPATH has no LOCALNAMESPACEPATH"))?,
            )?;
            ObjectPath::new(&class_name(lcp.child("CLASSNAME"))?, Vec::new()).in_ns(&ns)
        } else {
            return Err(invalid(
                "METHODCALL has no LOCALINSTANCEPATH or LOCALCLASSPATH",
            ));
        };
        let mut params = Vec::new();
        for p in call.children_named("PARAMVALUE") {
            let pname = p
                .attr("NAME")
                .ok_or_else(|| invalid("PARAMVALUE has no NAME"))?;
            params.push((pname.to_string(), param_value(p)?));
        }
        return Ok(CimRequest {
            id,
            call: Call::Method {
                name,
                target,
                params,
            },
        });
    }
    Err(invalid("SIMPLEREQ holds no IMETHODCALL or METHODCALL"))
}

fn local_namespace(e: &Element) -> Result<String, RequestError> {
    let parts: Vec<&str> = e
        .children_named("NAMESPACE")
        .map(|n| n.attr("NAME").unwrap_or(""))
        .collect();
    if parts.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return Err(invalid(
            "LOCALNAMESPACEPATH needs NAMESPACE elements with names",
        ));
    }
    Ok(parts.join("/"))
}

fn class_name(e: Option<&Element>) -> Result<String, RequestError> {
    let e = e.ok_or_else(|| invalid("CLASSNAME expected"))?;
    let n = e
        .attr("NAME")
        .ok_or_else(|| invalid("CLASSNAME has no NAME"))?;
    if n.is_empty() || !n.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(invalid(format!("{n:?} is not a class name")));
    }
    Ok(n.to_string())
}

fn key_value(e: &Element) -> Result<Value, RequestError> {
    match e.name.as_str() {
        "KEYVALUE" => {
            let text = e.text.clone();
            let ty = e.attr("TYPE").and_then(CimType::from_name);
            Ok(match (e.attr("VALUETYPE").unwrap_or("string"), ty) {
                (_, Some(t)) if t != CimType::Reference => Value::parse(t, &text)
                    .ok_or_else(|| invalid(format!("key value {text:?} is not a {}", t.name())))?,
                ("boolean", _) => Value::parse(CimType::Boolean, &text)
                    .ok_or_else(|| invalid("bad boolean key value"))?,
                ("numeric", _) => {
                    let t = text.trim();
                    if let Ok(u) = t.parse::<u64>() {
                        Value::Uint(u)
                    } else if let Ok(i) = t.parse::<i64>() {
                        Value::Sint(i)
                    } else {
                        Value::Real(t.parse().map_err(|_| invalid("bad numeric key value"))?)
                    }
                }
                _ => Value::Str(text),
            })
        }
        "VALUE.REFERENCE" => Ok(Value::Ref(Box::new(reference(e)?))),
        other => Err(invalid(format!("{other} is not a key value"))),
    }
}

/// Decode an `INSTANCENAME`.
pub fn instance_name(e: &Element) -> Result<ObjectPath, RequestError> {
    if e.name != "INSTANCENAME" {
        return Err(invalid(format!("INSTANCENAME expected, not {}", e.name)));
    }
    let class = e
        .attr("CLASSNAME")
        .ok_or_else(|| invalid("INSTANCENAME has no CLASSNAME"))?;
    let mut keys = Vec::new();
    for kb in e.children.iter() {
        match kb.name.as_str() {
            "KEYBINDING" => {
                let n = kb
                    .attr("NAME")
                    .ok_or_else(|| invalid("KEYBINDING has no NAME"))?;
                let v = kb
                    .children
                    .first()
                    .ok_or_else(|| invalid("KEYBINDING has no value"))?;
                keys.push((n.to_string(), key_value(v)?));
            }
            "KEYVALUE" | "VALUE.REFERENCE" => keys.push((String::new(), key_value(kb)?)),
            other => return Err(invalid(format!("{other} inside INSTANCENAME"))),
        }
    }
    Ok(ObjectPath::new(class, keys))
}

fn namespace_path(e: &Element) -> Result<(Option<String>, String), RequestError> {
    let host = e.child("HOST").map(|h| h.text.trim().to_string());
    let ns = local_namespace(
        e.child("LOCALNAMESPACEPATH")
            .ok_or_else(|| invalid("NAMESPACEPATH has no LOCALNAMESPACEPATH"))?,
    )?;
    Ok((host, ns))
}

/// Decode a `VALUE.REFERENCE`.
pub fn reference(e: &Element) -> Result<ObjectPath, RequestError> {
    let inner = e
        .children
        .first()
        .ok_or_else(|| invalid("empty VALUE.REFERENCE"))?;
    match inner.name.as_str() {
        "INSTANCENAME" => instance_name(inner),
        "LOCALINSTANCEPATH" => {
            let ns = local_namespace(
                inner
                    .child("LOCALNAMESPACEPATH")
                    .ok_or_else(|| invalid("LOCALINSTANCEPATH has no LOCALNAMESPACEPATH"))?,
            )?;
            Ok(instance_name(
                inner
                    .child("INSTANCENAME")
                    .ok_or_else(|| invalid("LOCALINSTANCEPATH has no INSTANCENAME"))?,
            )?
            .in_ns(&ns))
        }
        "INSTANCEPATH" => {
            let (host, ns) = namespace_path(
                inner
                    .child("NAMESPACEPATH")
                    .ok_or_else(|| invalid("INSTANCEPATH has no NAMESPACEPATH"))?,
            )?;
            let mut p = instance_name(
                inner
                    .child("INSTANCENAME")
                    .ok_or_else(|| invalid("INSTANCEPATH has no INSTANCENAME"))?,
            )?
            .in_ns(&ns);
            p.host = host;
            Ok(p)
        }
        "CLASSNAME" => Ok(ObjectPath::new(&class_name(Some(inner))?, Vec::new())),
        "LOCALCLASSPATH" | "CLASSPATH" => {
            let cn = class_name(inner.child("CLASSNAME"))?;
            Ok(ObjectPath::new(&cn, Vec::new()))
        }
        other => Err(invalid(format!("{other} inside VALUE.REFERENCE"))),
    }
}

fn value_array(e: &Element) -> Vec<Option<String>> {
    e.children
        .iter()
        .map(|v| (v.name == "VALUE").then(|| v.text.clone()))
        .collect()
}

fn raw_instance(e: &Element) -> Result<Param, RequestError> {
    let class = e
        .attr("CLASSNAME")
        .ok_or_else(|| invalid("INSTANCE has no CLASSNAME"))?
        .to_string();
    let mut props = Vec::new();
    for p in e.children.iter() {
        let name = || {
            p.attr("NAME")
                .map(str::to_string)
                .ok_or_else(|| invalid(format!("{} has no NAME", p.name)))
        };
        let ty = p.attr("TYPE").and_then(CimType::from_name);
        let value = match p.name.as_str() {
            "QUALIFIER" => continue,
            "PROPERTY" => match p.child("VALUE") {
                Some(v) => Param::Value(v.text.clone()),
                None => Param::Null,
            },
            "PROPERTY.ARRAY" => match p.child("VALUE.ARRAY") {
                Some(v) => Param::Array(value_array(v)),
                None => Param::Null,
            },
            "PROPERTY.REFERENCE" => match p.child("VALUE.REFERENCE") {
                Some(v) => Param::Ref(reference(v)?),
                None => Param::Null,
            },
            other => return Err(invalid(format!("{other} inside INSTANCE"))),
        };
        props.push(RawProperty {
            name: name()?,
            ty: if p.name == "PROPERTY.REFERENCE" {
                Some(CimType::Reference)
            } else {
                ty
            },
            value,
        });
    }
    Ok(Param::Instance { class, props })
}

fn param_value(p: &Element) -> Result<Param, RequestError> {
    let Some(v) = p.children.first() else {
        return Ok(if p.text.trim().is_empty() {
            Param::Null
        } else {
            Param::Value(p.text.clone())
        });
    };
    Ok(match v.name.as_str() {
        "VALUE" => Param::Value(v.text.clone()),
        "VALUE.ARRAY" => Param::Array(value_array(v)),
        "VALUE.REFERENCE" => Param::Ref(reference(v)?),
        "VALUE.REFARRAY" => {
            Param::RefArray(v.children.iter().map(reference).collect::<Result<_, _>>()?)
        }
        "CLASSNAME" => Param::ClassName(class_name(Some(v))?),
        "INSTANCENAME" => Param::InstanceName(instance_name(v)?),
        "INSTANCE" => raw_instance(v)?,
        "VALUE.NAMEDINSTANCE" => raw_instance(
            v.child("INSTANCE")
                .ok_or_else(|| invalid("VALUE.NAMEDINSTANCE has no INSTANCE"))?,
        )?,
        other => Param::Unsupported(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EI: &str = r#"<?xml version="1.0" encoding="utf-8" ?>
<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1001" PROTOCOLVERSION="1.0"><SIMPLEREQ>
<IMETHODCALL NAME="GetInstance"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH>
<IPARAMVALUE NAME="InstanceName"><INSTANCENAME CLASSNAME="CIM_ComputerSystem">
<KEYBINDING NAME="CreationClassName"><KEYVALUE VALUETYPE="string">CIM_ComputerSystem</KEYVALUE></KEYBINDING>
<KEYBINDING NAME="Name"><KEYVALUE>abc</KEYVALUE></KEYBINDING></INSTANCENAME></IPARAMVALUE>
<IPARAMVALUE NAME="LocalOnly"><VALUE>FALSE</VALUE></IPARAMVALUE>
<IPARAMVALUE NAME="PropertyList"><VALUE.ARRAY><VALUE>Name</VALUE></VALUE.ARRAY></IPARAMVALUE>
</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"#;

    #[test]
    fn decodes_an_intrinsic_call() {
        let r = parse(EI.as_bytes(), XmlLimits::default()).unwrap();
        assert_eq!(r.id, "1001");
        let Call::Intrinsic { name, ns, params } = r.call else {
            panic!()
        };
        assert_eq!(name, "GetInstance");
        assert_eq!(ns, "root/cimv2");
        let Param::InstanceName(p) = &params[0].1 else {
            panic!()
        };
        assert_eq!(p.key("name"), Some(&Value::s("abc")));
        assert_eq!(params[1].1, Param::Value("FALSE".into()));
        assert_eq!(params[2].1, Param::Array(vec![Some("Name".into())]));
    }

    #[test]
    fn protocol_errors_are_classified() {
        let e = parse(b"<CIM/>", XmlLimits::default()).unwrap_err();
        assert_eq!(e.http().1, "unsupported-dtd-version");
        let e = parse(
            br#"<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><MULTIREQ/></MESSAGE></CIM>"#,
            XmlLimits::default(),
        )
        .unwrap_err();
        assert_eq!(e, RequestError::MultiReq);
        let e = parse(b"<CIM", XmlLimits::default()).unwrap_err();
        assert_eq!(e.http(), (400, "request-not-well-formed"));
        let e = parse(
            br#"<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ/></MESSAGE></CIM>"#,
            XmlLimits::default(),
        )
        .unwrap_err();
        assert_eq!(e.http(), (400, "request-not-valid"));
    }
}
