//! The embedded CIM provider: CIM-XML (DSP0200 1.4 operations over HTTP,
//! DSP0201 2.4 representation) at `POST /cimom`, on HTTP and HTTPS, over
//! the VM inventory. Like sfcb on ESXi (ports 5988/5989).
//!
//! * [`xml`]: the bounded request parser; [`request`]: CIM-XML requests;
//!   [`encode`]: CIM-XML responses.
//! * [`schema`]: the classes (DMTF CIM subset + `HVSIM_GuestTools`).
//! * [`provider`]: instances from the inventory; [`render`]: enumerations
//!   from per-VM cached renderings; [`ops`]: the operations;
//!   [`wql`]: queries; [`indication`]: subscriptions and delivery.
//!
//! Threat table: network clients are untrusted. Bodies are bounded by
//! `[cim] max_request` (HTTP 413 beyond), XML by depth and element count,
//! with DOCTYPE (and so entity expansion) refused; WQL by nesting depth;
//! pull contexts by [`ops::MAX_CONTEXTS`] and their timeouts; subscriptions
//! by [`indication::MAX_DYNAMIC`]. Credentials are checked before any XML is
//! parsed; ReadOnly users cannot change anything.

pub mod encode;
pub mod indication;
pub mod ops;
pub mod provider;
pub mod render;
pub mod request;
pub mod schema;
pub mod value;
pub mod wql;
pub mod xml;

use std::sync::Arc;

use crate::control::Inventory;
use crate::http::{self, Authenticator, Handler, Principal, Request, Response};
use crate::users::{Role, UserStore};
use request::{Call, CimError, CimRequest};

/// Default HTTP listener (DESIGN.md section 3).
pub const DEFAULT_HTTP: &str = "127.0.0.1:5988";
/// Default HTTPS listener.
pub const DEFAULT_HTTPS: &str = "127.0.0.1:5989";
/// Default request size limit.
pub const DEFAULT_MAX_REQUEST: usize = 1 << 20;

/// Why the CIM service could not start.
#[derive(Debug, thiserror::Error)]
pub enum CimStartError {
    /// A listener could not bind.
    #[error("cannot listen for CIM-XML or WS-Management on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS setup failed.
    #[error("CIM HTTPS: {0}")]
    Tls(#[from] http::tls::TlsError),
    /// A listener thread could not start.
    #[error("cannot start the CIM listener: {0}")]
    Thread(std::io::Error),
    /// A setting is invalid.
    #[error("invalid WBEM settings in {origin}: {msg}")]
    Settings {
        /// Where they came from.
        origin: String,
        /// What is wrong.
        msg: String,
    },
}

/// The provider state shared by all connections.
pub struct Service {
    /// Classes.
    pub schema: Arc<schema::Schema>,
    /// VMs.
    pub inventory: Inventory,
    /// The simulated host's name.
    pub host: String,
    /// Pull enumeration contexts.
    pub contexts: ops::Contexts,
    /// Indication subscriptions.
    pub indications: Arc<indication::Indications>,
    /// XML bounds.
    pub xml_limits: xml::XmlLimits,
    /// Per-VM renderings for enumerations.
    cache: render::Cache,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("host", &self.host)
            .field("vms", &self.inventory.len())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A service over `inventory`, watching its VMs for indications.
    pub fn new(inventory: Inventory, host: String) -> Arc<Service> {
        let schema = Arc::new(schema::schema());
        let indications = indication::Indications::new();
        indications.watch(
            schema.clone(),
            host.clone(),
            inventory.values().cloned().collect(),
        );
        Arc::new(Service {
            cache: render::Cache::new(&inventory),
            schema,
            inventory,
            host,
            contexts: ops::Contexts::default(),
            indications,
            xml_limits: xml::XmlLimits::default(),
        })
    }

    /// A consistent view of the VMs for one request.
    pub fn snapshot(&self) -> provider::Snapshot<'_> {
        provider::Snapshot {
            schema: &self.schema,
            host: &self.host,
            vms: self
                .inventory
                .values()
                .map(|v| provider::VmView::of(v))
                .collect(),
            dynamic: self.indications.instances(),
        }
    }

    /// Answer one decoded request: the whole response document.
    pub fn answer(&self, req: &CimRequest, principal: Option<&Principal>, host: &str) -> String {
        let mut out = String::new();
        self.answer_into(req, principal, host, &mut out);
        out
    }

    /// Append the response document to `out` (a buffer reused across
    /// requests: responses are hundreds of KiB).
    pub fn answer_into(
        &self,
        req: &CimRequest,
        principal: Option<&Principal>,
        host: &str,
        out: &mut String,
    ) {
        let ctx = ops::Ctx {
            svc: self,
            principal,
            host,
        };
        out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"");
        xml::escape_into(out, &req.id);
        out.push_str("\" PROTOCOLVERSION=\"1.0\"><SIMPLERSP>");
        let (tag, name) = match &req.call {
            Call::Intrinsic { name, .. } => ("IMETHODRESPONSE", name),
            Call::Method { name, .. } => ("METHODRESPONSE", name),
        };
        out.push('<');
        out.push_str(tag);
        out.push_str(" NAME=\"");
        xml::escape_into(out, name);
        out.push_str("\">");
        // The result is written in place; an error discards what was
        // written and answers the ERROR instead.
        let mark = out.len();
        let result = match &req.call {
            Call::Intrinsic { name, ns, params } => {
                ops::intrinsic_into(&ctx, name, ns, params, out)
            }
            Call::Method {
                name,
                target,
                params,
            } => ops::method(&ctx, name, target, params).map(|body| out.push_str(&body)),
        };
        if let Err(e) = result {
            log::debug!("cim: {name}: {e}");
            out.truncate(mark);
            error_element(out, &e);
        }
        out.push_str("</");
        out.push_str(tag);
        out.push_str("></SIMPLERSP></MESSAGE></CIM>\n");
    }
}

fn error_element(out: &mut String, e: &CimError) {
    out.push_str(&format!("<ERROR CODE=\"{}\" DESCRIPTION=\"", e.code));
    xml::escape_into(out, &e.description);
    out.push_str("\"/>");
}

/// A random number for identifiers that should not be guessable.
pub fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u32
}

/// Decode %XX escapes of CIMMethod and CIMObject header values (DSP0200 4.3).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The HTTP face of the service.
#[derive(Debug)]
pub struct CimHandler {
    /// The service.
    pub svc: Arc<Service>,
}

fn cim_error(status: u16, cim_error: &str, text: &str) -> Response {
    Response::text(status, &format!("{text}\n")).with_header("CIMError", cim_error)
}

impl CimHandler {
    fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
        if req.method == "M-POST" {
            // Extension headers arrive as NN-Name (RFC 2774), NN from Man.
            req.headers
                .iter()
                .find(|(k, _)| {
                    k.split_once('-').is_some_and(|(n, rest)| {
                        n.chars().all(|c| c.is_ascii_digit()) && rest.eq_ignore_ascii_case(name)
                    })
                })
                .map(|(_, v)| v.as_str())
                .or_else(|| req.header(name))
        } else {
            req.header(name)
        }
    }
}

/// Whether a Content-Type is acceptable: application/xml or text/xml with
/// any parameters, in any case, with or without quotes around a UTF-8
/// charset, or none at all.
pub fn content_type_ok(ct: Option<&str>) -> bool {
    let Some(ct) = ct else { return true };
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    if mime != "application/xml" && mime != "text/xml" {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            let v = v.trim().trim_matches('"').trim_matches('\'');
            v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    })
}

impl Handler for CimHandler {
    fn handle(&self, req: &Request) -> Response {
        if req.method != "POST" && req.method != "M-POST" {
            return Response::text(405, "CIM-XML requests use POST or M-POST\n")
                .with_header("Allow", "POST, M-POST");
        }
        let path = req.target.split('?').next().unwrap_or("");
        if path != "/cimom" && path != "/" {
            return Response::text(404, "CIM-XML is served at /cimom\n");
        }
        if Self::header(req, "CIMExport").is_some() {
            return cim_error(
                400,
                "unsupported-operation",
                "this is a CIM server, not a listener",
            );
        }
        match Self::header(req, "CIMOperation") {
            Some(v) if v.eq_ignore_ascii_case("MethodCall") => {}
            _ => {
                return cim_error(
                    400,
                    "unsupported-operation",
                    "the CIMOperation header must be MethodCall",
                )
            }
        }
        if let Some(v) = Self::header(req, "CIMProtocolVersion") {
            if v.split('.').next().map(str::trim) != Some("1") {
                return cim_error(
                    501,
                    "unsupported-protocol-version",
                    "CIMProtocolVersion 1.x is supported",
                );
            }
        }
        if !content_type_ok(req.header("Content-Type")) {
            return Response::text(415, "CIM-XML requests are application/xml in UTF-8\n");
        }
        let parsed = match request::parse(&req.body, self.svc.xml_limits) {
            Ok(r) => r,
            Err(e) => {
                log::debug!("cim: {}: {e}", req.peer);
                let (status, hdr) = e.http();
                return cim_error(status, hdr, &e.to_string());
            }
        };
        let (call_name, call_ns) = match &parsed.call {
            Call::Intrinsic { name, ns, .. } => (name.as_str(), Some(ns.as_str())),
            Call::Method { name, .. } => (name.as_str(), None),
        };
        match Self::header(req, "CIMMethod").map(percent_decode) {
            Some(m) if m == call_name => {}
            Some(_) | None => {
                return cim_error(
                    400,
                    "header-mismatch",
                    "the CIMMethod header does not name the method in the body",
                )
            }
        }
        if let (Some(ns), Some(obj)) = (call_ns, Self::header(req, "CIMObject").map(percent_decode))
        {
            if !value::ns_eq(&obj, ns) {
                return cim_error(
                    400,
                    "header-mismatch",
                    "the CIMObject header does not name the namespace in the body",
                );
            }
        }
        let host = req.header("Host").unwrap_or("localhost");
        // The connection's buffer from its previous response (see
        // `recycle`): no large allocation per request.
        let mut xml = RESPONSE_BUFFER
            .with(|b| String::from_utf8(std::mem::take(&mut *b.borrow_mut())).unwrap_or_default());
        xml.clear();
        self.svc
            .answer_into(&parsed, req.principal.as_ref(), host, &mut xml);
        Response {
            status: 200,
            headers: vec![
                (
                    "Content-Type".into(),
                    "application/xml; charset=\"utf-8\"".into(),
                ),
                ("CIMOperation".into(), "MethodResponse".into()),
            ],
            body: xml.into_bytes(),
        }
    }

    fn recycle(&self, mut body: Vec<u8>) {
        if body.capacity() <= MAX_KEPT_BUFFER {
            body.clear();
            RESPONSE_BUFFER.with(|b| *b.borrow_mut() = body);
        }
    }
}

/// The largest response buffer a connection thread keeps for its next
/// response; larger ones are freed.
const MAX_KEPT_BUFFER: usize = 4 << 20;

thread_local! {
    /// The response buffer of this connection thread (one thread per
    /// connection, see [`crate::http`]).
    static RESPONSE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Basic authentication against the shared user store (the one the BMCs
/// use): a password changed over IPMI is the one CIM accepts, a disabled
/// user is refused, and the role is the store's.
#[derive(Debug)]
pub struct UserAuth {
    users: Arc<UserStore>,
}

impl UserAuth {
    /// Authenticate against `users`.
    pub fn new(users: Arc<UserStore>) -> UserAuth {
        UserAuth { users }
    }
}

impl Authenticator for UserAuth {
    fn authenticate(&self, user: &str, password: &str) -> Option<Principal> {
        // verify compares in constant time and refuses disabled users.
        let u = self.users.verify(user, password.as_bytes())?;
        let role = match u.role {
            Role::Administrator => "Administrator",
            Role::Operator => "Operator",
            Role::ReadOnly => "ReadOnly",
        };
        Some(Principal {
            name: u.name,
            role: role.into(),
        })
    }
}

/// Responses are built in buffers of hundreds of KiB; glibc would map and
/// unmap each one (a page fault per 4 KiB, every request). Keep such
/// buffers on the heap instead. The listeners are started by
/// [`crate::wbem`].
pub fn tune_allocator() {
    // SAFETY: mallopt only adjusts glibc allocator thresholds; the values
    // are in range and no allocation is in an inconsistent state.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// The machine's host name (the simulated host's CIM_ComputerSystem Name).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
