//! A small, bounded XML reader for CIM-XML requests, and escaping for the
//! writer side.
//!
//! CIM-XML (DSP0201) needs elements, attributes and text only. Everything an
//! attacker could use to make a parser do unbounded work is refused: a
//! DOCTYPE (and with it every entity declaration), references to entities
//! other than the five predefined ones, nesting deeper than
//! [`XmlLimits::max_depth`] and more than [`XmlLimits::max_elements`]
//! elements. The body size is bounded by the HTTP layer before this runs.

use quick_xml::events::Event;
use quick_xml::Reader;

/// Bounds on a parsed document.
#[derive(Debug, Clone, Copy)]
pub struct XmlLimits {
    /// Deepest element nesting accepted (the deepest legal CIM-XML request
    /// is about 12 levels).
    pub max_depth: usize,
    /// Most elements in one document.
    pub max_elements: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        XmlLimits {
            max_depth: 48,
            max_elements: 200_000,
        }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed XML.
    #[error("malformed XML at byte {pos}: {msg}")]
    Malformed {
        /// Byte offset.
        pos: u64,
        /// What the parser said.
        msg: String,
    },
    /// A document type declaration (and so entity declarations).
    #[error("DOCTYPE declarations are not accepted")]
    Doctype,
    /// Nesting beyond the limit.
    #[error("elements nested deeper than {0} levels")]
    TooDeep(usize),
    /// Too many elements.
    #[error("more than {0} elements")]
    TooManyElements(usize),
    /// No root element, or text/elements after it.
    #[error("the document must have exactly one root element")]
    NoSingleRoot,
}

/// An element with its attributes, child elements and text (concatenated
/// character data directly inside it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Tag name.
    pub name: String,
    /// Attributes in document order.
    pub attrs: Vec<(String, String)>,
    /// Child elements.
    pub children: Vec<Element>,
    /// Character data directly inside this element.
    pub text: String,
}

impl Element {
    /// An attribute's value (names are case-sensitive in XML).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child with this tag name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this tag name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }
}

fn malformed(reader: &Reader<&[u8]>, e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed {
        pos: reader.buffer_position(),
        msg: e.to_string(),
    }
}

/// Parse a whole document into its root element.
pub fn parse(bytes: &[u8], limits: XmlLimits) -> Result<Element, XmlError> {
    let mut reader = Reader::from_reader(bytes);
    let cfg = reader.config_mut();
    cfg.check_end_names = true;
    cfg.check_comments = true;
    cfg.expand_empty_elements = false;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let ev = reader.read_event().map_err(|e| malformed(&reader, e))?;
        match ev {
            Event::Start(ref s) | Event::Empty(ref s) => {
                if root.is_some() {
                    return Err(XmlError::NoSingleRoot);
                }
                count += 1;
                if count > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::TooDeep(limits.max_depth));
                }
                let name = std::str::from_utf8(s.name().as_ref())
                    .map_err(|e| malformed(&reader, e))?
                    .to_string();
                let mut attrs = Vec::new();
                for a in s.attributes().with_checks(true) {
                    let a = a.map_err(|e| malformed(&reader, e))?;
                    let k = std::str::from_utf8(a.key.as_ref())
                        .map_err(|e| malformed(&reader, e))?
                        .to_string();
                    let v = a
                        .unescape_value()
                        .map_err(|e| malformed(&reader, e))?
                        .into_owned();
                    attrs.push((k, v));
                }
                let el = Element {
                    name,
                    attrs,
                    ..Default::default()
                };
                if matches!(ev, Event::Empty(_)) {
                    match stack.last_mut() {
                        Some(p) => p.children.push(el),
                        None => root = Some(el),
                    }
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| malformed(&reader, "stray end tag"))?;
                match stack.last_mut() {
                    Some(p) => p.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| malformed(&reader, e))?;
                match stack.last_mut() {
                    Some(p) => p.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(XmlError::NoSingleRoot),
                }
            }
            Event::CData(c) => {
                let text = std::str::from_utf8(&c).map_err(|e| malformed(&reader, e))?;
                match stack.last_mut() {
                    Some(p) => p.text.push_str(text),
                    None => return Err(XmlError::NoSingleRoot),
                }
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => {
                if !stack.is_empty() {
                    return Err(malformed(&reader, "unexpected end of document"));
                }
                return root.ok_or(XmlError::NoSingleRoot);
            }
        }
    }
}

/// Append `s` escaped for XML text or a double-quoted attribute. Characters
/// XML 1.0 cannot carry at all (most C0 controls) become U+FFFD, so a guest
/// that reports a hostname with control bytes cannot break a client's parser.
pub fn escape_into(out: &mut String, s: &str) {
    let clean = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
            || c >= '\u{10000}'
    };
    if s.bytes()
        .all(|b| !matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'') && (b >= 0x20 || b == b'\t'))
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
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            c if clean(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

/// `s` escaped (see [`escape_into`]).
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    escape_into(&mut o, s);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_elements_attributes_and_text() {
        let d = parse(
            br#"<?xml version="1.0"?><A x="1&amp;2"><B/><C>t &lt; u<![CDATA[<v>]]></C></A>"#,
            XmlLimits::default(),
        )
        .unwrap();
        assert_eq!(d.name, "A");
        assert_eq!(d.attr("x"), Some("1&2"));
        assert_eq!(d.children.len(), 2);
        assert_eq!(d.child("C").unwrap().text, "t < u<v>");
    }

    #[test]
    fn refuses_doctype_entities_depth_and_garbage() {
        let lim = XmlLimits::default();
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><a>&x;</a>"#;
        assert_eq!(parse(bomb, lim), Err(XmlError::Doctype));
        assert!(matches!(
            parse(b"<a>&x;</a>", lim),
            Err(XmlError::Malformed { .. })
        ));
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert_eq!(parse(deep.as_bytes(), lim), Err(XmlError::TooDeep(48)));
        assert!(parse(b"<a><b></a></b>", lim).is_err());
        assert!(parse(b"<a>", lim).is_err());
        assert!(parse(b"", lim).is_err());
        assert!(parse(b"<a/><b/>", lim).is_err());
        assert!(parse(b"<a x='1' x='2'/>", lim).is_err());
        let many = "<a>".to_string() + &"<b/>".repeat(20) + "</a>";
        let small = XmlLimits {
            max_depth: 4,
            max_elements: 10,
        };
        assert_eq!(
            parse(many.as_bytes(), small),
            Err(XmlError::TooManyElements(10))
        );
    }

    #[test]
    fn escaping_is_safe() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(escape("x\u{1}y"), "x\u{FFFD}y");
        assert_eq!(escape("plain"), "plain");
    }
}
