//! SOAP 1.2 envelopes of WS-Management requests (DSP0226): the bounded XML
//! reader of the CIM-XML side ([`crate::cim::xml`]) followed by namespace
//! resolution, then the addressing and WS-Management headers and the body.

use std::time::Duration;

use crate::cim::xml::{self, Element, XmlError, XmlLimits};

/// SOAP 1.2 envelope namespace.
pub const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Addressing (the 2004/08 version DSP0226 1.x uses).
pub const NS_WSA: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
/// WS-Management.
pub const NS_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
/// WS-Enumeration.
pub const NS_WSEN: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration";
/// WS-Transfer.
pub const NS_WXF: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer";
/// WS-Management identity (Identify).
pub const NS_WSMID: &str = "http://schemas.dmtf.org/wbem/wsman/identity/1/wsmanidentity.xsd";
/// The CIM binding (DSP0227) schema.
pub const NS_WSMB: &str = "http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd";
/// XML Schema instance (xsi:nil).
pub const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// DSP0230 common types (cim:CIM_DateTime).
pub const NS_CIM: &str = "http://schemas.dmtf.org/wbem/wscim/1/common";
/// The anonymous reply address.
pub const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";

/// Action URIs.
pub mod action {
    /// WS-Transfer Get.
    pub const GET: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get";
    /// WS-Enumeration Enumerate.
    pub const ENUMERATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate";
    /// WS-Enumeration Pull.
    pub const PULL: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull";
    /// WS-Enumeration Release.
    pub const RELEASE: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Release";
}

/// An element with its namespace resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Namespace URI ("" for none).
    pub ns: String,
    /// Local name.
    pub local: String,
    /// Attributes by local name (namespace declarations removed), with
    /// their namespace.
    pub attrs: Vec<(String, String, String)>,
    /// Child elements.
    pub children: Vec<Node>,
    /// Text directly inside.
    pub text: String,
}

impl Node {
    /// Whether this element is `{ns}local`.
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.ns == ns && self.local == local
    }

    /// The first child `{ns}local`.
    pub fn child(&self, ns: &str, local: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.is(ns, local))
    }

    /// Every child `{ns}local`.
    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        local: &'a str,
    ) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.is(ns, local))
    }

    /// An attribute by local name, in no namespace or any.
    pub fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(_, l, _)| l == local)
            .map(|(_, _, v)| v.as_str())
    }

    /// Whether `s:mustUnderstand` is true on this header.
    pub fn must_understand(&self) -> bool {
        self.attrs.iter().any(|(ns, l, v)| {
            ns == NS_SOAP && l == "mustUnderstand" && matches!(v.trim(), "true" | "1")
        })
    }

    /// The trimmed text.
    pub fn value(&self) -> &str {
        self.text.trim()
    }
}

fn split(q: &str) -> (Option<&str>, &str) {
    match q.split_once(':') {
        Some((p, l)) => (Some(p), l),
        None => (None, q),
    }
}

fn resolve(e: &Element, scope: &mut Vec<(String, String)>) -> Result<Node, SoapError> {
    let mark = scope.len();
    for (k, v) in &e.attrs {
        if k == "xmlns" {
            scope.push((String::new(), v.clone()));
        } else if let Some(p) = k.strip_prefix("xmlns:") {
            scope.push((p.to_string(), v.clone()));
        }
    }
    let lookup = |scope: &[(String, String)], p: Option<&str>| -> Result<String, SoapError> {
        let p = p.unwrap_or("");
        if p == "xml" {
            return Ok("http://www.w3.org/XML/1998/namespace".into());
        }
        match scope.iter().rev().find(|(k, _)| k == p) {
            Some((_, v)) => Ok(v.clone()),
            None if p.is_empty() => Ok(String::new()),
            None => Err(SoapError::Invalid(format!(
                "namespace prefix {p:?} is not declared"
            ))),
        }
    };
    let (p, local) = split(&e.name);
    let ns = lookup(scope, p)?;
    let mut attrs = Vec::new();
    for (k, v) in &e.attrs {
        if k == "xmlns" || k.starts_with("xmlns:") {
            continue;
        }
        let (p, l) = split(k);
        // Unprefixed attributes are in no namespace.
        let ans = match p {
            Some(_) => lookup(scope, p)?,
            None => String::new(),
        };
        attrs.push((ans, l.to_string(), v.clone()));
    }
    let mut children = Vec::with_capacity(e.children.len());
    for c in &e.children {
        children.push(resolve(c, scope)?);
    }
    let node = Node {
        ns,
        local: local.to_string(),
        attrs,
        children,
        text: e.text.clone(),
    };
    scope.truncate(mark);
    Ok(node)
}

/// Why a body is not a WS-Management request this server can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoapError {
    /// Not well-formed XML, or beyond the parser bounds.
    #[error("{0}")]
    Xml(#[from] XmlError),
    /// Well-formed but not a SOAP 1.2 envelope as DSP0226 describes.
    #[error("{0}")]
    Invalid(String),
    /// A header marked mustUnderstand that this server does not know.
    #[error("header {0} is not understood")]
    MustUnderstand(String),
}

/// Parse and namespace-resolve a document.
pub fn parse_tree(body: &[u8], limits: XmlLimits) -> Result<Node, SoapError> {
    let root = xml::parse(body, limits)?;
    resolve(&root, &mut Vec::new())
}

/// One selector (DSP0226 wsman:Selector): a text value or, for reference
/// keys, an endpoint reference.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectorValue {
    /// Text.
    Text(String),
    /// A nested EPR.
    Epr(Box<Epr>),
}

/// An endpoint reference: resource URI and selectors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Epr {
    /// wsa:Address.
    pub address: String,
    /// wsman:ResourceURI.
    pub resource_uri: String,
    /// wsman:SelectorSet, in order.
    pub selectors: Vec<(String, SelectorValue)>,
}

fn selectors(set: &Node) -> Result<Vec<(String, SelectorValue)>, SoapError> {
    let mut out = Vec::new();
    for s in set.children_named(NS_WSMAN, "Selector") {
        let name = s
            .attr("Name")
            .ok_or_else(|| SoapError::Invalid("a wsman:Selector has no Name".into()))?
            .to_string();
        let v = match s.child(NS_WSA, "EndpointReference") {
            Some(epr) => SelectorValue::Epr(Box::new(parse_epr(epr)?)),
            None => SelectorValue::Text(s.text.clone()),
        };
        out.push((name, v));
    }
    Ok(out)
}

/// Read an EPR's parts (the children of wsa:EndpointReference or of an
/// element with the same content, like wsmb:Object).
pub fn parse_epr(n: &Node) -> Result<Epr, SoapError> {
    let params = n.child(NS_WSA, "ReferenceParameters");
    let rp = params.unwrap_or(n);
    Ok(Epr {
        address: n
            .child(NS_WSA, "Address")
            .map(|a| a.value().to_string())
            .unwrap_or_default(),
        resource_uri: rp
            .child(NS_WSMAN, "ResourceURI")
            .map(|a| a.value().to_string())
            .unwrap_or_default(),
        selectors: match rp.child(NS_WSMAN, "SelectorSet") {
            Some(s) => selectors(s)?,
            None => Vec::new(),
        },
    })
}

/// A parsed request envelope.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// wsa:Action ("" when absent).
    pub action: String,
    /// wsa:To.
    pub to: String,
    /// wsa:MessageID.
    pub message_id: String,
    /// wsman:ResourceURI.
    pub resource_uri: String,
    /// wsman:SelectorSet.
    pub selectors: Vec<(String, SelectorValue)>,
    /// Whether a wsman:SelectorSet header was present.
    pub has_selector_set: bool,
    /// wsman:OptionSet options: name and value.
    pub options: Vec<(String, String)>,
    /// wsman:OperationTimeout.
    pub operation_timeout: Option<Duration>,
    /// wsman:MaxEnvelopeSize in bytes.
    pub max_envelope: Option<u64>,
    /// The body's first element, if any.
    pub body: Option<Node>,
}

/// Headers this server understands (anything else marked mustUnderstand
/// is refused with s:MustUnderstand).
fn understood(h: &Node) -> bool {
    (h.ns == NS_WSA
        && matches!(
            h.local.as_str(),
            "Action" | "To" | "MessageID" | "ReplyTo" | "FaultTo" | "From"
        ))
        || (h.ns == NS_WSMAN
            && matches!(
                h.local.as_str(),
                "ResourceURI"
                    | "SelectorSet"
                    | "OptionSet"
                    | "OperationTimeout"
                    | "MaxEnvelopeSize"
                    | "Locale"
                    | "DataLocale"
            ))
}

/// Parse a request body.
pub fn parse(body: &[u8], limits: XmlLimits) -> Result<Envelope, SoapError> {
    let root = parse_tree(body, limits)?;
    if !root.is(NS_SOAP, "Envelope") {
        return Err(SoapError::Invalid(format!(
            "the document is a {{{}}}{}, not a SOAP 1.2 Envelope",
            root.ns, root.local
        )));
    }
    let mut env = Envelope::default();
    if let Some(h) = root.child(NS_SOAP, "Header") {
        for c in &h.children {
            match (c.ns.as_str(), c.local.as_str()) {
                (NS_WSA, "Action") => env.action = c.value().to_string(),
                (NS_WSA, "To") => env.to = c.value().to_string(),
                (NS_WSA, "MessageID") => env.message_id = c.value().to_string(),
                (NS_WSMAN, "ResourceURI") => env.resource_uri = c.value().to_string(),
                (NS_WSMAN, "SelectorSet") => {
                    env.has_selector_set = true;
                    env.selectors = selectors(c)?;
                }
                (NS_WSMAN, "OptionSet") => {
                    for o in c.children_named(NS_WSMAN, "Option") {
                        env.options.push((
                            o.attr("Name").unwrap_or("").to_string(),
                            o.value().to_string(),
                        ));
                    }
                }
                (NS_WSMAN, "OperationTimeout") => {
                    env.operation_timeout = Some(parse_duration(c.value()).ok_or_else(|| {
                        SoapError::Invalid(format!(
                            "wsman:OperationTimeout {:?} is not an xs:duration",
                            c.value()
                        ))
                    })?);
                }
                (NS_WSMAN, "MaxEnvelopeSize") => {
                    env.max_envelope = Some(c.value().parse().map_err(|_| {
                        SoapError::Invalid(format!(
                            "wsman:MaxEnvelopeSize {:?} is not a number",
                            c.value()
                        ))
                    })?);
                }
                _ if c.must_understand() && !understood(c) => {
                    return Err(SoapError::MustUnderstand(format!(
                        "{{{}}}{}",
                        c.ns, c.local
                    )))
                }
                _ => {}
            }
        }
    }
    let b = root
        .child(NS_SOAP, "Body")
        .ok_or_else(|| SoapError::Invalid("the envelope has no s:Body".into()))?;
    env.body = b.children.first().cloned();
    Ok(env)
}

/// Parse an xs:duration (`PT60S`, `PT0.500S`, `P1DT2H`, ...). Years and
/// months are refused (no fixed length); so are negative durations.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => {
            if t.is_empty() {
                return None;
            }
            (d, t)
        }
        None => (rest, ""),
    };
    if date.is_empty() && time.is_empty() {
        return None;
    }
    let mut secs = 0f64;
    let mut num = String::new();
    for c in date.chars() {
        match c {
            '0'..='9' => num.push(c),
            'D' => {
                secs += num.parse::<f64>().ok()? * 86_400.0;
                num.clear();
            }
            _ => return None,
        }
    }
    if !num.is_empty() {
        return None;
    }
    for c in time.chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'H' | 'M' | 'S' => {
                let v: f64 = num.parse().ok()?;
                secs += v * match c {
                    'H' => 3600.0,
                    'M' => 60.0,
                    _ => 1.0,
                };
                num.clear();
            }
            _ => return None,
        }
    }
    if !num.is_empty() || !secs.is_finite() || secs > 1e9 {
        return None;
    }
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &str = r#"<?xml version="1.0"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:wsman="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd">
  <s:Header>
    <wsa:Action s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/09/transfer/Get</wsa:Action>
    <wsa:To s:mustUnderstand="true">https://h/wsman</wsa:To>
    <wsman:ResourceURI s:mustUnderstand="true">http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ComputerSystem</wsman:ResourceURI>
    <wsa:MessageID s:mustUnderstand="true">uuid:1</wsa:MessageID>
    <wsman:MaxEnvelopeSize s:mustUnderstand="true">32768</wsman:MaxEnvelopeSize>
    <wsman:OperationTimeout>PT60.000S</wsman:OperationTimeout>
    <wsman:SelectorSet>
      <wsman:Selector Name="Name">abc</wsman:Selector>
      <wsman:Selector Name="CreationClassName">CIM_ComputerSystem</wsman:Selector>
    </wsman:SelectorSet>
  </s:Header>
  <s:Body/>
</s:Envelope>"#;

    #[test]
    fn reads_a_get() {
        let e = parse(GET.as_bytes(), XmlLimits::default()).unwrap();
        assert_eq!(e.action, action::GET);
        assert_eq!(e.message_id, "uuid:1");
        assert_eq!(e.max_envelope, Some(32768));
        assert_eq!(e.operation_timeout, Some(Duration::from_secs(60)));
        assert_eq!(e.selectors.len(), 2);
        assert_eq!(
            e.selectors[0],
            ("Name".into(), SelectorValue::Text("abc".into()))
        );
        assert!(e.body.is_none());
    }

    #[test]
    fn refuses_unknown_must_understand_and_bad_prefixes() {
        let x = GET.replace(
            "<wsa:MessageID",
            "<wsa:Foo s:mustUnderstand=\"true\">x</wsa:Foo><wsa:MessageID",
        );
        assert!(matches!(
            parse(x.as_bytes(), XmlLimits::default()),
            Err(SoapError::MustUnderstand(_))
        ));
        let x = GET.replace("<s:Body/>", "<s:Body><q:X/></s:Body>");
        assert!(matches!(
            parse(x.as_bytes(), XmlLimits::default()),
            Err(SoapError::Invalid(_))
        ));
        assert!(matches!(
            parse(b"<a/>", XmlLimits::default()),
            Err(SoapError::Invalid(_))
        ));
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a/>"#;
        assert!(matches!(
            parse(bomb.as_bytes(), XmlLimits::default()),
            Err(SoapError::Xml(XmlError::Doctype))
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT60S"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("PT0.5S"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_duration("P1DT1H1M1S"),
            Some(Duration::from_secs(90061))
        );
        assert_eq!(parse_duration("PT0S"), Some(Duration::ZERO));
        for bad in ["", "P", "PT", "60", "P1Y", "-PT1S", "PTS", "PT1.2.3S"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
