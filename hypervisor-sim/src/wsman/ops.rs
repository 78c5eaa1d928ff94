//! The WS-Management operations over the CIM provider: Identify, Get,
//! Enumerate, Pull, Release and Invoke, each running the provider's own
//! operations ([`crate::cim::ops`]) and answering in DSP0227's XML or with
//! a DSP0226 fault.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::render::{self, Props};
use super::soap::{self, action, Envelope, Epr, Node, SelectorValue};
use super::soap::{NS_WSEN, NS_WSMAN, NS_WSMB, NS_WSMID};
use crate::cim::ops::{self as cimops, AssocFilter, Ctx};
use crate::cim::request::{code, CimError, Param};
use crate::cim::schema::{ClassDef, INTEROP};
use crate::cim::value::{ns_eq, Instance, ObjectPath, Value};
use crate::cim::xml::escape_into as esc;

/// Product vendor in IdentifyResponse, as an ESXi host reports it.
pub const PRODUCT_VENDOR: &str = "VMware Inc.";
/// Smallest MaxEnvelopeSize a client may ask for (DSP0226 R6.2-?: 8192).
pub const MIN_ENVELOPE: u64 = 8192;
/// The WQL dialect URI (as WinRM and openwsman name it).
pub const DIALECT_WQL: &str = "http://schemas.microsoft.com/wbem/wsman/1/WQL";
/// The CQL dialect URI (DSP0202).
pub const DIALECT_CQL: &str = "http://schemas.dmtf.org/wbem/cql/1/dsp0202.pdf";
/// The DSP0227 association filter dialect.
pub const DIALECT_ASSOC: &str = "http://schemas.dmtf.org/wbem/wsman/1/cimbinding/associationFilter";
/// The DSP0226 selector filter dialect.
pub const DIALECT_SELECTOR: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/SelectorFilter";

const FAULT_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault";
const FAULT_WSA: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault";
const FAULT_WSEN: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/fault";
const DETAIL: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/";

/// A DSP0226 fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `s:Sender` (the client's mistake) or `s:Receiver`.
    pub sender: bool,
    /// The subcode QName (`wsa:DestinationUnreachable`, ...); `None` for
    /// `s:MustUnderstand`.
    pub subcode: Option<&'static str>,
    /// The fault's action URI.
    pub action: &'static str,
    /// Reason text.
    pub reason: String,
    /// wsman:FaultDetail suffix (`InvalidResourceURI`, ...).
    pub detail: Option<&'static str>,
}

impl Fault {
    fn new(sender: bool, subcode: &'static str, reason: impl Into<String>) -> Fault {
        let action = match subcode.split(':').next() {
            Some("wsa") => FAULT_WSA,
            Some("wsen") => FAULT_WSEN,
            _ => FAULT_WSMAN,
        };
        Fault {
            sender,
            subcode: Some(subcode),
            action,
            reason: reason.into(),
            detail: None,
        }
    }

    fn detail(mut self, d: &'static str) -> Fault {
        self.detail = Some(d);
        self
    }

    /// The HTTP status for this fault (SOAP 1.2 HTTP binding: 400 for
    /// Sender faults, 500 otherwise).
    pub fn status(&self) -> u16 {
        if self.sender {
            400
        } else {
            500
        }
    }

    /// wsa:DestinationUnreachable (unknown resource URI, class, namespace
    /// or instance).
    pub fn unreachable(reason: impl Into<String>) -> Fault {
        Fault::new(true, "wsa:DestinationUnreachable", reason).detail("InvalidResourceURI")
    }

    /// wsa:ActionNotSupported.
    pub fn action_not_supported(action: &str) -> Fault {
        Fault::new(
            true,
            "wsa:ActionNotSupported",
            format!("action {action:?} is not supported by this resource"),
        )
    }

    /// wsman:InvalidSelectors with a DSP0226 fault detail.
    pub fn selectors(detail: &'static str, reason: impl Into<String>) -> Fault {
        Fault::new(true, "wsman:InvalidSelectors", reason).detail(detail)
    }

    /// s:MustUnderstand.
    pub fn must_understand(header: &str) -> Fault {
        Fault {
            sender: true,
            subcode: None,
            action: FAULT_WSA,
            reason: format!("header {header} is not understood"),
            detail: None,
        }
    }

    /// A malformed or invalid request body.
    pub fn schema(reason: impl Into<String>) -> Fault {
        Fault::new(true, "wsman:SchemaValidationError", reason)
    }

    /// wsman:TimedOut.
    pub fn timed_out(t: Duration) -> Fault {
        Fault::new(
            false,
            "wsman:TimedOut",
            format!(
                "the operation did not complete within its OperationTimeout ({} ms)",
                t.as_millis()
            ),
        )
    }

    /// wsman:EncodingLimit.
    pub fn encoding_limit(detail: &'static str, reason: impl Into<String>) -> Fault {
        Fault::new(true, "wsman:EncodingLimit", reason).detail(detail)
    }
}

/// DSP0227's mapping of CIM status codes to faults.
fn from_cim(e: CimError) -> Fault {
    let d = e.description;
    match e.code {
        code::NOT_FOUND | code::INVALID_CLASS | code::INVALID_NAMESPACE => Fault::unreachable(d),
        code::ACCESS_DENIED => Fault::new(true, "wsman:AccessDenied", d),
        code::INVALID_QUERY => Fault::new(true, "wsen:CannotProcessFilter", d),
        code::QUERY_LANGUAGE_NOT_SUPPORTED => {
            Fault::new(true, "wsen:FilterDialectRequestedUnavailable", d)
        }
        code::INVALID_ENUMERATION_CONTEXT => Fault::new(false, "wsen:InvalidEnumerationContext", d),
        code::SERVER_LIMITS_EXCEEDED => Fault::new(false, "wsman:QuotaLimit", d),
        code::NOT_SUPPORTED | code::METHOD_NOT_FOUND | code::METHOD_NOT_AVAILABLE => {
            Fault::new(true, "wsa:ActionNotSupported", d)
        }
        code::INVALID_PARAMETER | code::TYPE_MISMATCH | code::NO_SUCH_PROPERTY => {
            Fault::new(true, "wsman:InvalidParameter", d)
        }
        _ => Fault::new(false, "wsman:InternalError", d),
    }
}

/// A successful answer: the action and the inside of `s:Body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// wsa:Action of the response ("" for Identify).
    pub action: String,
    /// The body content.
    pub body: String,
}

type R<T> = Result<T, Fault>;

/// A fresh `uuid:` message id.
pub fn message_id() -> String {
    let r = || crate::cim::random_u32();
    let (a, b, c, d) = (r(), r(), r(), r());
    format!(
        "uuid:{a:08x}-{:04x}-4{:03x}-{:04x}-{:04x}{c:08x}",
        b >> 16,
        b & 0xfff,
        0x8000 | (d >> 16 & 0x3fff),
        d & 0xffff
    )
}

const ENVELOPE_OPEN: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
    "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"",
    " xmlns:wsa=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\"",
    " xmlns:wsman=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\"",
    " xmlns:wsen=\"http://schemas.xmlsoap.org/ws/2004/09/enumeration\"",
    " xmlns:wsmb=\"http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd\"",
    " xmlns:wsmid=\"http://schemas.dmtf.org/wbem/wsman/identity/1/wsmanidentity.xsd\"",
    " xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"",
    " xmlns:cim=\"http://schemas.dmtf.org/wbem/wscim/1/common\">"
);

/// The whole response envelope for `action` and `body`, relating to the
/// request's message id.
pub fn envelope(action: &str, relates_to: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1024);
    out.push_str(ENVELOPE_OPEN);
    if action.is_empty() {
        out.push_str("<s:Header/>");
    } else {
        out.push_str("<s:Header><wsa:To>");
        out.push_str(soap::ANONYMOUS);
        out.push_str("</wsa:To><wsa:Action>");
        esc(&mut out, action);
        out.push_str("</wsa:Action>");
        if !relates_to.is_empty() {
            out.push_str("<wsa:RelatesTo>");
            esc(&mut out, relates_to);
            out.push_str("</wsa:RelatesTo>");
        }
        out.push_str("<wsa:MessageID>");
        out.push_str(&message_id());
        out.push_str("</wsa:MessageID></s:Header>");
    }
    out.push_str("<s:Body>");
    out.push_str(body);
    out.push_str("</s:Body></s:Envelope>\n");
    out
}

/// The fault envelope.
pub fn fault_envelope(f: &Fault, relates_to: &str) -> String {
    let mut body = String::from("<s:Fault><s:Code>");
    match f.subcode {
        Some(sc) => {
            let _ = write!(
                body,
                "<s:Value>{}</s:Value><s:Subcode><s:Value>{sc}</s:Value></s:Subcode>",
                if f.sender { "s:Sender" } else { "s:Receiver" }
            );
        }
        None => body.push_str("<s:Value>s:MustUnderstand</s:Value>"),
    }
    body.push_str("</s:Code><s:Reason><s:Text xml:lang=\"en-US\">");
    esc(&mut body, &f.reason);
    body.push_str("</s:Text></s:Reason>");
    if let Some(d) = f.detail {
        let _ = write!(
            body,
            "<s:Detail><wsman:FaultDetail>{DETAIL}{d}</wsman:FaultDetail></s:Detail>"
        );
    }
    body.push_str("</s:Fault>");
    envelope(f.action, relates_to, &body)
}

/// Answer one parsed request; `product_version` goes into IdentifyResponse.
pub fn answer(ctx: &Ctx, env: &Envelope, product_version: &str) -> R<Reply> {
    let started = Instant::now();
    if let Some(max) = env.max_envelope {
        if max < MIN_ENVELOPE {
            return Err(Fault::encoding_limit(
                "MinimumEnvelopeLimit",
                format!("MaxEnvelopeSize must be at least {MIN_ENVELOPE} bytes"),
            ));
        }
    }
    let body = env.body.as_ref();
    let reply = if body.is_some_and(|b| b.is(NS_WSMID, "Identify")) && env.action.is_empty() {
        identify(product_version)
    } else {
        if env.action.is_empty() {
            return Err(Fault::new(
                true,
                "wsa:MessageInformationHeaderRequired",
                "the request has no wsa:Action header",
            ));
        }
        if env.message_id.is_empty() {
            return Err(Fault::new(
                true,
                "wsa:MessageInformationHeaderRequired",
                "the request has no wsa:MessageID header",
            ));
        }
        // EPRs carry the anonymous address, as openwsman's do: selectors
        // identify the instance, and a client's wsa:To (any length) never
        // multiplies into every item.
        let op = Op {
            ctx,
            env,
            address: soap::ANONYMOUS,
        };
        match env.action.as_str() {
            action::GET => op.get()?,
            action::ENUMERATE => op.enumerate()?,
            action::PULL => op.pull()?,
            action::RELEASE => op.release()?,
            a => op.invoke(a)?,
        }
    };
    if let Some(t) = env.operation_timeout {
        // A reply that arrives after the client's deadline is of no use
        // to it (a zero timeout can never be met).
        if started.elapsed() >= t {
            return Err(Fault::timed_out(t));
        }
    }
    Ok(reply)
}

fn identify(product_version: &str) -> Reply {
    let mut body = String::from("<wsmid:IdentifyResponse><wsmid:ProtocolVersion>");
    body.push_str(soap::NS_WSMAN);
    body.push_str("</wsmid:ProtocolVersion><wsmid:ProductVendor>");
    esc(&mut body, PRODUCT_VENDOR);
    body.push_str("</wsmid:ProductVendor><wsmid:ProductVersion>");
    esc(&mut body, product_version);
    body.push_str("</wsmid:ProductVersion></wsmid:IdentifyResponse>");
    Reply {
        action: String::new(),
        body,
    }
}

/// The enumeration mode (wsman:EnumerationMode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Object,
    Epr,
    ObjectAndEpr,
}

/// Which properties of the results to show.
enum Which {
    All,
    Present,
    Only(Vec<String>),
}

/// What the resource URI and `__cimnamespace` name.
struct Target<'a> {
    class: Option<&'a ClassDef>,
    bit: u8,
    ns: &'static str,
}

struct Op<'a, 'c> {
    ctx: &'a Ctx<'c>,
    env: &'a Envelope,
    address: &'a str,
}

/// Bytes of envelope around the items of an enumeration response
/// (headers, wrappers, a context id): what MaxEnvelopeSize must leave.
const ENVELOPE_OVERHEAD: usize = 2048;

impl Op<'_, '_> {
    fn max_envelope(&self) -> usize {
        self.env
            .max_envelope
            .map_or(usize::MAX, |m| m.min(usize::MAX as u64) as usize)
    }

    fn namespace(&self, sels: &[(String, SelectorValue)]) -> R<Option<(u8, &'static str)>> {
        match sels.iter().find(|(k, _)| k == "__cimnamespace") {
            None => Ok(None),
            Some((_, SelectorValue::Text(ns))) => {
                let bit = cimops::ns_bit(ns.trim()).map_err(from_cim)?;
                Ok(Some((bit, cimops::canonical_ns(ns.trim()))))
            }
            Some(_) => Err(Fault::selectors(
                "TypeMismatch",
                "__cimnamespace must be a namespace name",
            )),
        }
    }

    /// Resolve a resource URI (and namespace selector) to a class.
    fn target<'s>(
        &'s self,
        uri: &str,
        sels: &[(String, SelectorValue)],
        all_ok: bool,
    ) -> R<Target<'s>> {
        if uri.is_empty() {
            return Err(Fault::unreachable("the request has no wsman:ResourceURI"));
        }
        let ns = self.namespace(sels)?;
        let schema = &self.ctx.svc.schema;
        if render::ALL_CLASSES.contains(&uri.trim()) {
            if !all_ok {
                return Err(Fault::unreachable(format!(
                    "{uri} names all classes; this operation needs one class"
                )));
            }
            let (bit, ns) = ns.unwrap_or((crate::cim::schema::CIMV2, "root/cimv2"));
            return Ok(Target {
                class: None,
                bit,
                ns,
            });
        }
        let name = render::class_name(uri)
            .ok_or_else(|| Fault::unreachable(format!("no resource {uri}")))?;
        let c = schema
            .get(name)
            .ok_or_else(|| Fault::unreachable(format!("no class {name}")))?;
        let (bit, ns) = match ns {
            Some(x) => x,
            // Classes only in the interop namespace need no selector.
            None if c.ns == INTEROP => (INTEROP, "root/interop"),
            None => (crate::cim::schema::CIMV2, "root/cimv2"),
        };
        if c.ns & bit == 0 {
            return Err(Fault::unreachable(format!("no class {name} in {ns}")));
        }
        Ok(Target {
            class: Some(c),
            bit,
            ns,
        })
    }

    /// The instance path the selectors name, checked against the class's
    /// keys (DSP0226 InvalidSelectors details).
    fn path(&self, c: &ClassDef, sels: &[(String, SelectorValue)], ns: &str) -> R<ObjectPath> {
        let mut keys: Vec<(String, Value)> = Vec::new();
        for (i, (name, v)) in sels.iter().enumerate() {
            if sels[..i].iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                return Err(Fault::selectors(
                    "DuplicateSelectors",
                    format!("selector {name} appears twice"),
                ));
            }
            if name == "__cimnamespace" {
                continue;
            }
            let Some(p) = c.property(name).filter(|p| p.key) else {
                return Err(Fault::selectors(
                    "UnexpectedSelectors",
                    format!("{name} is not a key of {}", c.name),
                ));
            };
            let value = match v {
                SelectorValue::Epr(e) if p.ref_class.is_some() => {
                    Value::Ref(Box::new(self.epr_path(e)?))
                }
                SelectorValue::Text(t) if p.ref_class.is_none() => Value::parse(p.ty, t)
                    .ok_or_else(|| {
                        Fault::selectors(
                            "TypeMismatch",
                            format!("{t:?} is not a {} for {name}", p.ty.name()),
                        )
                    })?,
                _ => {
                    return Err(Fault::selectors(
                        "TypeMismatch",
                        format!("selector {name} has the wrong kind of value"),
                    ))
                }
            };
            keys.push((p.name.to_string(), value));
        }
        if let Some(missing) = c.keys().find(|k| !keys.iter().any(|(n, _)| n == k.name)) {
            return Err(Fault::selectors(
                "InsufficientSelectors",
                format!("{} needs the key selector {}", c.name, missing.name),
            ));
        }
        Ok(ObjectPath::new(c.name, keys).in_ns(ns))
    }

    fn epr_path(&self, e: &Epr) -> R<ObjectPath> {
        let t = self.target(&e.resource_uri, &e.selectors, false)?;
        let c = t.class.ok_or_else(|| Fault::unreachable("no class"))?;
        self.path(c, &e.selectors, t.ns)
    }

    fn get(&self) -> R<Reply> {
        let env = self.env;
        let t = self.target(&env.resource_uri, &env.selectors, false)?;
        let c = t.class.ok_or_else(|| Fault::unreachable("no class"))?;
        let path = self.path(c, &env.selectors, t.ns)?;
        let snap = self.ctx.svc.snapshot();
        let inst = cimops::find(&snap, t.bit, t.ns, &path).map_err(from_cim)?;
        let mut body = String::new();
        render::instance(
            &mut body,
            &self.ctx.svc.schema,
            &inst,
            Props::All,
            self.address,
            t.ns,
        );
        Ok(Reply {
            action: format!("{}Response", action::GET),
            body,
        })
    }

    fn enumerate(&self) -> R<Reply> {
        let env = self.env;
        let e = env
            .body
            .as_ref()
            .filter(|b| b.is(NS_WSEN, "Enumerate"))
            .ok_or_else(|| Fault::schema("the body of an Enumerate must be wsen:Enumerate"))?;
        if let Some((n, _)) = env.selectors.iter().find(|(k, _)| k != "__cimnamespace") {
            return Err(Fault::selectors(
                "UnexpectedSelectors",
                format!(
                    "Enumerate takes only the __cimnamespace selector, not {n}; use the SelectorFilter dialect"
                ),
            ));
        }
        let optimize = e.child(NS_WSMAN, "OptimizeEnumeration").is_some();
        let max_elements = match e.child(NS_WSMAN, "MaxElements") {
            Some(m) => positive(m.value(), "wsman:MaxElements")?,
            None => 1,
        };
        let mode = match e.child(NS_WSMAN, "EnumerationMode").map(Node::value) {
            None => Mode::Object,
            Some("EnumerateEPR") => Mode::Epr,
            Some("EnumerateObjectAndEPR") => Mode::ObjectAndEpr,
            Some(other) => {
                return Err(Fault::new(
                    true,
                    "wsman:UnsupportedFeature",
                    format!("enumeration mode {other:?}"),
                )
                .detail("EnumerationMode"))
            }
        };
        let timeout = match e.child(NS_WSEN, "Expires") {
            None => Duration::from_secs(cimops::DEFAULT_OPERATION_TIMEOUT),
            Some(x) => {
                let d = soap::parse_duration(x.value()).ok_or_else(|| {
                    Fault::new(
                        true,
                        "wsen:UnsupportedExpirationType",
                        "wsen:Expires must be an xs:duration",
                    )
                })?;
                if d.is_zero() || d > Duration::from_secs(cimops::MAX_OPERATION_TIMEOUT) {
                    return Err(Fault::new(
                        true,
                        "wsen:InvalidExpirationTime",
                        format!(
                            "wsen:Expires must be more than 0 and at most {} s",
                            cimops::MAX_OPERATION_TIMEOUT
                        ),
                    ));
                }
                d
            }
        };
        let filter = e
            .child(NS_WSMAN, "Filter")
            .or_else(|| e.child(NS_WSEN, "Filter"));
        let t = self.target(&env.resource_uri, &env.selectors, filter.is_some())?;
        let schema = &self.ctx.svc.schema;
        let (address, ns) = (self.address, t.ns);
        let render_one =
            |s: &mut String, path: &ObjectPath, inst: &Instance, props: Props| match mode {
                Mode::Object => render::instance(s, schema, inst, props, address, ns),
                Mode::Epr => render::epr(s, path, address, ns),
                Mode::ObjectAndEpr => {
                    s.push_str("<wsman:Item>");
                    render::instance(s, schema, inst, props, address, ns);
                    render::epr(s, path, address, ns);
                    s.push_str("</wsman:Item>");
                }
            };
        // Every item rendered, each followed by a NUL.
        let mut rendered = String::new();
        match filter {
            None => {
                // Unfiltered: from the provider's per-VM rendering cache.
                let c = t.class.ok_or_else(|| Fault::unreachable("no class"))?;
                let format = format!("wsman {mode:?} {address} {ns}");
                let each = |s: &mut String, inst: &Instance| {
                    let path = crate::cim::provider::path_of(schema, inst, ns);
                    render_one(s, &path, inst, Props::All);
                };
                crate::cim::render::enumerate_rendered(
                    self.ctx.svc,
                    t.bit,
                    c,
                    &format,
                    &each,
                    &mut rendered,
                );
            }
            Some(f) => {
                let (results, which) = self.filtered(&t, f)?;
                let props = match &which {
                    Which::All => Props::All,
                    Which::Present => Props::Present,
                    Which::Only(l) => Props::Only(l),
                };
                for (path, inst) in &results {
                    render_one(&mut rendered, path, inst, props);
                    rendered.push('\0');
                }
            }
        }
        let parts: Vec<&str> = rendered.split_terminator('\0').collect();
        let mut body = String::from("<wsen:EnumerateResponse>");
        if !optimize {
            let items = parts.iter().map(|s| s.to_string()).collect();
            let id = self
                .ctx
                .svc
                .contexts
                .open_items(KIND, items, timeout)
                .map_err(from_cim)?;
            let _ = write!(
                body,
                "<wsen:EnumerationContext>{id}</wsen:EnumerationContext></wsen:EnumerateResponse>"
            );
            return Ok(Reply {
                action: format!("{}Response", action::ENUMERATE),
                body,
            });
        }
        let budget = self.max_envelope().saturating_sub(ENVELOPE_OVERHEAD);
        let n = pack(&parts, max_elements, budget);
        if n == 0 && !parts.is_empty() {
            return Err(too_large());
        }
        let first: String = parts[..n].concat();
        let items: VecDeque<String> = parts[n..].iter().map(|s| s.to_string()).collect();
        if items.is_empty() {
            // The schema requires a context; an empty one tells clients
            // (wsl among them) there is nothing to pull.
            let _ = write!(
                body,
                "<wsen:EnumerationContext/><wsman:Items>{first}</wsman:Items><wsman:EndOfSequence/>"
            );
        } else {
            let id = self
                .ctx
                .svc
                .contexts
                .open_items(KIND, items, timeout)
                .map_err(from_cim)?;
            let _ = write!(
                body,
                "<wsen:EnumerationContext>{id}</wsen:EnumerationContext><wsman:Items>{first}</wsman:Items>"
            );
        }
        body.push_str("</wsen:EnumerateResponse>");
        Ok(Reply {
            action: format!("{}Response", action::ENUMERATE),
            body,
        })
    }

    /// The results of a filtered enumeration and which of their
    /// properties to show.
    fn filtered(&self, t: &Target, f: &Node) -> R<(Vec<(ObjectPath, Instance)>, Which)> {
        let dialect = f.attr("Dialect").unwrap_or(DIALECT_CQL).trim();
        match dialect {
            DIALECT_WQL | DIALECT_CQL => {
                let (paths, insts) =
                    cimops::run_query(self.ctx, t.bit, t.ns, f.value()).map_err(from_cim)?;
                if let (Some(c), Some(first)) = (t.class, insts.first()) {
                    if !self.ctx.svc.schema.is_a(&first.class, c.name) {
                        return Err(Fault::new(
                            true,
                            "wsen:CannotProcessFilter",
                            format!("the query selects from a class that is not a {}", c.name),
                        ));
                    }
                }
                let projected = f.value().split_whitespace().nth(1) != Some("*");
                let which = if projected { Which::Present } else { Which::All };
                Ok((paths.into_iter().zip(insts).collect(), which))
            }
            DIALECT_SELECTOR => {
                let c = t.class.ok_or_else(|| {
                    Fault::unreachable("the selector filter needs a class resource URI")
                })?;
                let set = f
                    .child(NS_WSMAN, "SelectorSet")
                    .ok_or_else(|| Fault::schema("the selector filter has no wsman:SelectorSet"))?;
                let want = soap::parse_epr(&Node {
                    children: vec![set.clone()],
                    ..Default::default()
                })
                .map_err(|e| Fault::schema(e.to_string()))?;
                let snap = self.ctx.svc.snapshot();
                let mut out = Vec::new();
                for i in snap.instances(t.bit, c) {
                    let path = snap.path(&i, t.ns);
                    let all = want.selectors.iter().all(|(k, v)| match v {
                        SelectorValue::Text(v) => {
                            path.key(k).is_some_and(|x| x.text() == *v)
                                || (k == "__cimnamespace" && ns_eq(v, t.ns))
                        }
                        SelectorValue::Epr(_) => false,
                    });
                    if all {
                        out.push((path, i));
                    }
                }
                Ok((out, Which::All))
            }
            DIALECT_ASSOC => self.associations(f),
            other => Err(Fault::new(
                true,
                "wsen:FilterDialectRequestedUnavailable",
                format!("filter dialect {other:?} is not supported; use WQL, CQL, the association or the selector filter"),
            )),
        }
    }

    /// DSP0227 8.2: AssociatedInstances (the objects at the other ends) and
    /// AssociationInstances (the associations themselves).
    fn associations(&self, f: &Node) -> R<(Vec<(ObjectPath, Instance)>, Which)> {
        let (a, refs) = match (
            f.child(NS_WSMB, "AssociatedInstances"),
            f.child(NS_WSMB, "AssociationInstances"),
        ) {
            (Some(a), None) => (a, false),
            (None, Some(a)) => (a, true),
            _ => {
                return Err(Fault::new(
                    true,
                    "wsen:CannotProcessFilter",
                    "an association filter holds one wsmb:AssociatedInstances or wsmb:AssociationInstances",
                ))
            }
        };
        let obj = a
            .child(NS_WSMB, "Object")
            .ok_or_else(|| Fault::new(true, "wsen:CannotProcessFilter", "no wsmb:Object"))?;
        let epr = soap::parse_epr(obj).map_err(|e| Fault::schema(e.to_string()))?;
        let obj_t = self.target(&epr.resource_uri, &epr.selectors, false)?;
        let c = obj_t.class.ok_or_else(|| Fault::unreachable("no class"))?;
        let path = self.path(c, &epr.selectors, obj_t.ns)?;
        let text = |n: &str| a.child(NS_WSMB, n).map(|x| x.value().to_string());
        let filter = AssocFilter {
            assoc_class: if refs {
                None
            } else {
                text("AssociationClassName")
            },
            result_class: text("ResultClassName"),
            role: text("Role"),
            result_role: if refs { None } else { text("ResultRole") },
        };
        let include: Vec<String> = a
            .children_named(NS_WSMB, "IncludeResultProperty")
            .map(|x| x.value().to_string())
            .collect();
        let snap = self.ctx.svc.snapshot();
        // The object must exist (DestinationUnreachable otherwise).
        cimops::find(&snap, obj_t.bit, obj_t.ns, &path).map_err(from_cim)?;
        let found = cimops::associated(&snap, obj_t.bit, obj_t.ns, &path, &filter, refs)
            .map_err(from_cim)?;
        let which = if include.is_empty() {
            Which::All
        } else {
            Which::Only(include)
        };
        Ok((found, which))
    }

    fn context_id(&self, body: &Node) -> R<String> {
        body.child(NS_WSEN, "EnumerationContext")
            .map(|c| c.value().to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Fault::new(
                    false,
                    "wsen:InvalidEnumerationContext",
                    "the request has no wsen:EnumerationContext",
                )
            })
    }

    fn pull(&self) -> R<Reply> {
        let p = self
            .env
            .body
            .as_ref()
            .filter(|b| b.is(NS_WSEN, "Pull"))
            .ok_or_else(|| Fault::schema("the body of a Pull must be wsen:Pull"))?;
        let id = self.context_id(p)?;
        let max = match p.child(NS_WSEN, "MaxElements") {
            Some(m) => positive(m.value(), "wsen:MaxElements")?,
            None => 1,
        };
        let mut budget = self.max_envelope().saturating_sub(ENVELOPE_OVERHEAD);
        if let Some(mc) = p.child(NS_WSEN, "MaxCharacters") {
            budget = budget.min(positive(mc.value(), "wsen:MaxCharacters")? as usize);
        }
        let mut taken = String::new();
        let mut none_fit = false;
        let end = self
            .ctx
            .svc
            .contexts
            .take(&id, KIND, |items| {
                let n = pack(items.iter(), max, budget);
                none_fit = n == 0 && !items.is_empty();
                for s in items.drain(..n) {
                    taken.push_str(&s);
                }
            })
            .map_err(from_cim)?;
        if none_fit {
            return Err(too_large());
        }
        let mut body = String::from("<wsen:PullResponse>");
        if !end {
            let _ = write!(
                body,
                "<wsen:EnumerationContext>{id}</wsen:EnumerationContext>"
            );
        }
        let _ = write!(body, "<wsen:Items>{taken}</wsen:Items>");
        if end {
            body.push_str("<wsen:EndOfSequence/>");
        }
        body.push_str("</wsen:PullResponse>");
        Ok(Reply {
            action: format!("{}Response", action::PULL),
            body,
        })
    }

    fn release(&self) -> R<Reply> {
        let r = self
            .env
            .body
            .as_ref()
            .filter(|b| b.is(NS_WSEN, "Release"))
            .ok_or_else(|| Fault::schema("the body of a Release must be wsen:Release"))?;
        let id = self.context_id(r)?;
        self.ctx.svc.contexts.close(&id, "").map_err(from_cim)?;
        Ok(Reply {
            action: format!("{}Response", action::RELEASE),
            body: String::new(),
        })
    }

    /// A custom action: `<resource URI>/<Method>` (DSP0227 Invoke).
    fn invoke(&self, act: &str) -> R<Reply> {
        let env = self.env;
        let uri = env.resource_uri.trim();
        let method = act
            .strip_prefix(uri)
            .and_then(|m| m.strip_prefix('/'))
            .filter(|m| !uri.is_empty() && !m.is_empty() && !m.contains('/'))
            .ok_or_else(|| Fault::action_not_supported(act))?;
        let t = self.target(uri, &env.selectors, false)?;
        let c = t.class.ok_or_else(|| Fault::unreachable("no class"))?;
        let m = c
            .method(method)
            .ok_or_else(|| Fault::action_not_supported(act))?;
        let path = self.path(c, &env.selectors, t.ns)?;
        let input = format!("{}_INPUT", m.name);
        let mut params: Vec<(String, Param)> = Vec::new();
        if let Some(b) = &env.body {
            if b.local != input || b.ns != uri {
                return Err(Fault::schema(format!(
                    "the body of {} must be {input} in the namespace {uri}",
                    m.name
                )));
            }
            for p in &b.children {
                let v = if p.attr("nil").is_some_and(|v| v.trim() == "true") {
                    Param::Null
                } else {
                    Param::Value(p.value().to_string())
                };
                params.push((p.local.clone(), v));
            }
        }
        let ret = cimops::method_return(self.ctx, m.name, &path, &params).map_err(from_cim)?;
        let mut body = format!("<p:{}_OUTPUT xmlns:p=\"", m.name);
        esc(&mut body, uri);
        let _ = write!(
            body,
            "\"><p:ReturnValue>{ret}</p:ReturnValue></p:{}_OUTPUT>",
            m.name
        );
        Ok(Reply {
            action: format!("{uri}/{}Response", m.name),
            body,
        })
    }
}

const KIND: &str = "wsman";

fn too_large() -> Fault {
    Fault::encoding_limit(
        "MaxEnvelopeSize",
        "the next item does not fit in the MaxEnvelopeSize the client gave",
    )
}

/// How many of the first `items` fit in `max` items and `budget` bytes.
fn pack<S: AsRef<str>>(items: impl IntoIterator<Item = S>, max: u64, budget: usize) -> usize {
    let mut size = 0usize;
    let mut n = 0usize;
    for s in items {
        let s = s.as_ref();
        if n as u64 >= max || size + s.len() > budget {
            break;
        }
        size += s.len();
        n += 1;
    }
    n
}

fn positive(s: &str, what: &str) -> R<u64> {
    match s.trim().parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(Fault::new(
            true,
            "wsman:InvalidParameter",
            format!("{what} must be a positive integer"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_xml() {
        let f = Fault::selectors("InsufficientSelectors", "needs Name");
        let x = fault_envelope(&f, "uuid:1");
        assert!(
            x.contains(
                "<s:Value>s:Sender</s:Value><s:Subcode><s:Value>wsman:InvalidSelectors</s:Value>"
            ),
            "{x}"
        );
        assert!(x.contains("faultDetail/InsufficientSelectors"));
        assert!(x.contains("<wsa:RelatesTo>uuid:1</wsa:RelatesTo>"));
        assert!(x.contains(FAULT_WSMAN));
        assert_eq!(f.status(), 400);
        assert_eq!(Fault::timed_out(Duration::ZERO).status(), 500);
        crate::cim::xml::parse(x.as_bytes(), Default::default()).unwrap();
    }

    #[test]
    fn packing_respects_count_and_size() {
        let items: VecDeque<String> = ["aaaa", "bbbb", "cccc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(pack(&items, 2, 100), 2);
        assert_eq!(pack(&items, 10, 9), 2);
        assert_eq!(pack(&items, 10, 3), 0);
    }

    #[test]
    fn message_ids_look_like_uuids() {
        let m = message_id();
        assert_eq!(m.len(), 41, "{m}");
        assert!(m.starts_with("uuid:"));
        assert_ne!(m, message_id());
    }
}
