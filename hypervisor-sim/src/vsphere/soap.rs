//! SOAP 1.1 as vim25 speaks it: requests read into a small element tree
//! (bounded), responses and faults written as text.
//!
//! Requests come from the network and are untrusted: a DOCTYPE (and so any
//! entity expansion) is refused, nesting is capped at [`MAX_DEPTH`] and the
//! element count at [`MAX_ELEMENTS`]; the body size is bounded by the HTTP
//! layer before this sees it.

use quick_xml::events::Event;
use quick_xml::Reader;

/// Deepest element nesting accepted in a request.
pub const MAX_DEPTH: usize = 64;
/// Most elements in one request.
pub const MAX_ELEMENTS: usize = 100_000;

/// The vim25 namespace.
pub const NS_VIM25: &str = "urn:vim25";

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoapError {
    /// Not well-formed XML, or a DOCTYPE.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// Too deep or too many elements.
    #[error("request too complex: {0}")]
    TooComplex(&'static str),
    /// Well-formed, but not a SOAP envelope with one operation in its body.
    #[error("not a SOAP request: {0}")]
    NotSoap(&'static str),
}

/// One element: its local name, attributes (qualified names as sent) and
/// either children or text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Local name (no prefix).
    pub name: String,
    /// Attributes: qualified name as sent, value unescaped.
    pub attrs: Vec<(String, String)>,
    /// Child elements.
    pub children: Vec<Node>,
    /// Text content (concatenated).
    pub text: String,
}

impl Node {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this local name.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child with this name.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// A plain (unprefixed) attribute, e.g. a moref's `type`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `xsi:type` attribute (any prefix), without its own prefix.
    pub fn xsi_type(&self) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.ends_with(":type"))
            .map(|(_, v)| v.rsplit(':').next().unwrap_or(v))
    }

    /// A boolean child (`true`/`1`); `default` when absent.
    pub fn bool_of(&self, name: &str, default: bool) -> bool {
        match self.text_of(name).map(str::trim) {
            Some("true") | Some("1") => true,
            Some("false") | Some("0") => false,
            _ => default,
        }
    }
}

fn local(qname: &[u8]) -> String {
    let s = String::from_utf8_lossy(qname);
    match s.rsplit_once(':') {
        Some((_, l)) => l.to_string(),
        None => s.into_owned(),
    }
}

/// Parse a document into its root element.
pub fn parse(xml: &[u8]) -> Result<Node, SoapError> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut count = 0usize;
    let mut buf = Vec::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| SoapError::Xml(e.to_string()))?;
        match ev {
            Event::DocType(_) => return Err(SoapError::Xml("DOCTYPE is not allowed".into())),
            Event::Start(ref e) | Event::Empty(ref e) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(SoapError::TooComplex("too many elements"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(SoapError::TooComplex("nested too deeply"));
                }
                if root.is_some() {
                    return Err(SoapError::Xml("content after the root element".into()));
                }
                let mut node = Node {
                    name: local(e.name().as_ref()),
                    ..Node::default()
                };
                for a in e.attributes() {
                    let a = a.map_err(|e| SoapError::Xml(e.to_string()))?;
                    let v = a
                        .unescape_value()
                        .map_err(|e| SoapError::Xml(e.to_string()))?;
                    node.attrs.push((
                        String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                        v.into_owned(),
                    ));
                }
                if matches!(ev, Event::Empty(_)) {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(node),
                        None => root = Some(node),
                    }
                } else {
                    stack.push(node);
                }
            }
            Event::End(_) => {
                let node = stack
                    .pop()
                    .ok_or_else(|| SoapError::Xml("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                if let Some(n) = stack.last_mut() {
                    let s = t.unescape().map_err(|e| SoapError::Xml(e.to_string()))?;
                    n.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err(SoapError::Xml("unexpected end of document".into()));
    }
    root.ok_or_else(|| SoapError::Xml("empty document".into()))
}

/// The operation element of a SOAP envelope (the first child of Body).
pub fn operation(envelope: &Node) -> Result<&Node, SoapError> {
    if envelope.name != "Envelope" {
        return Err(SoapError::NotSoap("the root element is not Envelope"));
    }
    let body = envelope
        .child("Body")
        .ok_or(SoapError::NotSoap("no Body"))?;
    body.children
        .first()
        .ok_or(SoapError::NotSoap("an empty Body"))
}

/// Escape text for element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

/// [`escape`] appending to `out`.
pub fn escape_into(out: &mut String, s: &str) {
    // Most text needs nothing escaped: copy it in one go.
    if !s
        .bytes()
        .any(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'') || b < 0x20)
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters: drop them.
            c if (c as u32) < 0x20 && c != '\n' && c != '\r' && c != '\t' => {}
            c => out.push(c),
        }
    }
}

const ENVELOPE_OPEN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope xmlns:soapenc=\"http://schemas.xmlsoap.org/soap/encoding/\" xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n<soapenv:Body>\n";
const ENVELOPE_CLOSE: &str = "</soapenv:Body>\n</soapenv:Envelope>";

/// A method's response envelope around `inner` (its `returnval` elements).
pub fn response(method: &str, inner: &str) -> String {
    response_with(method, inner.len(), |out| out.push_str(inner))
}

/// A method's response envelope, its content written by `inner` straight
/// into the response (`size_hint`: the content's expected length).
pub fn response_with(method: &str, size_hint: usize, inner: impl FnOnce(&mut String)) -> String {
    let mut out = String::with_capacity(
        ENVELOPE_OPEN.len() + ENVELOPE_CLOSE.len() + 2 * method.len() + 64 + size_hint,
    );
    out.push_str(ENVELOPE_OPEN);
    out.push('<');
    out.push_str(method);
    out.push_str("Response xmlns=\"");
    out.push_str(NS_VIM25);
    out.push_str("\">");
    inner(&mut out);
    out.push_str("</");
    out.push_str(method);
    out.push_str("Response>\n");
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// A vSphere fault: `fault` is the MethodFault type (`InvalidLogin`,
/// `NotAuthenticated`, `InvalidArgument`, ...), `fields` its XML content.
pub fn fault(fault: &str, msg: &str, fields: &str) -> String {
    format!(
        "{ENVELOPE_OPEN}<soapenv:Fault>\n<faultcode>ServerFaultCode</faultcode>\n<faultstring>{}</faultstring>\n<detail>\n<{fault}Fault xmlns=\"{NS_VIM25}\" xsi:type=\"{fault}\">{fields}</{fault}Fault>\n</detail>\n</soapenv:Fault>\n{ENVELOPE_CLOSE}",
        escape(msg)
    )
}

/// A fault for a request that is not SOAP at all (a client-side error).
pub fn client_fault(msg: &str) -> String {
    format!(
        "{ENVELOPE_OPEN}<soapenv:Fault>\n<faultcode>ClientFaultCode</faultcode>\n<faultstring>{}</faultstring>\n</soapenv:Fault>\n{ENVELOPE_CLOSE}",
        escape(msg)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_pyvmomi_request() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body><Login xmlns="urn:vim25"><_this type="SessionManager">ha-sessionmgr</_this><userName>admin</userName><password>a&amp;b</password></Login></soapenv:Body></soapenv:Envelope>"#;
        let env = parse(xml).unwrap();
        let op = operation(&env).unwrap();
        assert_eq!(op.name, "Login");
        assert_eq!(
            op.child("_this").unwrap().attr("type"),
            Some("SessionManager")
        );
        assert_eq!(op.text_of("_this"), Some("ha-sessionmgr"));
        assert_eq!(op.text_of("password"), Some("a&b"));
    }

    #[test]
    fn refuses_doctype_depth_and_garbage() {
        assert!(matches!(
            parse(b"<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>"),
            Err(SoapError::Xml(_))
        ));
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(
            parse(deep.as_bytes()),
            Err(SoapError::TooComplex("nested too deeply"))
        );
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"").is_err());
        assert!(operation(&parse(b"<x/>").unwrap()).is_err());
    }

    #[test]
    fn xsi_type_and_escaping() {
        let n = parse(br#"<selectSet xmlns:xsi="x" xsi:type="vim25:TraversalSpec"><name>t</name></selectSet>"#).unwrap();
        assert_eq!(n.xsi_type(), Some("TraversalSpec"));
        assert_eq!(escape("a<b>&\"'\u{1}"), "a&lt;b&gt;&amp;&quot;&apos;");
    }
}
