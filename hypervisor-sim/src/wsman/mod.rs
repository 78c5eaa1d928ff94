//! WS-Management (DSP0226) with the CIM binding (DSP0227) at `POST /wsman`
//! over HTTPS: the same CIM provider, inventory, users and enumeration
//! contexts as CIM-XML, the way openwsman fronts sfcb on ESXi.
//!
//! * [`soap`]: the request envelope (bounded XML, namespaces, headers);
//! * [`render`]: resource URIs, instances and endpoint references;
//! * [`ops`]: Identify, Get, Enumerate/Pull/Release, Invoke, faults.
//!
//! Threat table: network clients are untrusted. Credentials are checked by
//! the HTTP layer before any XML is parsed (401 otherwise); bodies are
//! bounded by `[cim] max_request` (HTTP 413), XML by the CIM-XML parser's
//! depth and element bounds with DOCTYPE refused; enumeration contexts by
//! [`crate::cim::ops::MAX_CONTEXTS`] (shared with CIM-XML) and their
//! expiry (at most 600 s idle); responses by the client's MaxEnvelopeSize;
//! filters by the WQL parser's bounds. ReadOnly users cannot Invoke.

pub mod ops;
pub mod render;
pub mod soap;

use std::sync::Arc;

use crate::cim::Service;
use crate::http::{Handler, Request, Response};

/// Default listener (DESIGN.md section 3; ESXi serves it on 443).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5986";

/// The ProductVersion of IdentifyResponse: an ESXi 8.0 U3 host's, with the
/// build number the backdoor reports.
pub fn product_version() -> String {
    format!("VMware ESXi 8.0.3 build-{}", crate::serve::BUILD_NUMBER)
}

/// The HTTP face of WS-Management.
#[derive(Debug)]
pub struct WsmanHandler {
    /// The CIM provider.
    pub svc: Arc<Service>,
    version: String,
}

impl WsmanHandler {
    /// A handler over `svc`.
    pub fn new(svc: Arc<Service>) -> WsmanHandler {
        WsmanHandler {
            svc,
            version: product_version(),
        }
    }

    /// Answer a request body: the HTTP status and the response envelope.
    pub fn answer(
        &self,
        body: &[u8],
        principal: Option<&crate::http::Principal>,
        host: &str,
    ) -> (u16, String) {
        let env = match soap::parse(body, self.svc.xml_limits) {
            Ok(e) => e,
            Err(e) => {
                let f = match &e {
                    soap::SoapError::MustUnderstand(h) => ops::Fault::must_understand(h),
                    other => ops::Fault::schema(other.to_string()),
                };
                return (f.status(), ops::fault_envelope(&f, ""));
            }
        };
        let ctx = crate::cim::ops::Ctx {
            svc: &self.svc,
            principal,
            host,
        };
        match ops::answer(&ctx, &env, &self.version) {
            Ok(r) => (200, ops::envelope(&r.action, &env.message_id, &r.body)),
            Err(f) => {
                log::debug!("wsman: {}: {}", env.action, f.reason);
                (f.status(), ops::fault_envelope(&f, &env.message_id))
            }
        }
    }
}

/// Whether a Content-Type names SOAP 1.2 (or plain XML, which some
/// clients send) in UTF-8.
fn content_type_ok(ct: Option<&str>) -> bool {
    let Some(ct) = ct else { return true };
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    if !matches!(
        mime.as_str(),
        "application/soap+xml" | "application/xml" | "text/xml"
    ) {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            let v = v.trim().trim_matches('"');
            v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    })
}

impl Handler for WsmanHandler {
    fn handle(&self, req: &Request) -> Response {
        let path = req.target.split('?').next().unwrap_or("");
        if path != "/wsman" {
            return Response::text(404, "WS-Management is served at /wsman\n");
        }
        if req.method != "POST" {
            return Response::text(405, "WS-Management requests use POST\n")
                .with_header("Allow", "POST");
        }
        if !content_type_ok(req.header("Content-Type")) {
            return Response::text(
                415,
                "WS-Management requests are application/soap+xml in UTF-8\n",
            );
        }
        let host = req.header("Host").unwrap_or("localhost");
        let (status, xml) = self.answer(&req.body, req.principal.as_ref(), host);
        Response {
            status,
            headers: vec![(
                "Content-Type".into(),
                "application/soap+xml;charset=UTF-8".into(),
            )],
            body: xml.into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert!(content_type_ok(Some("application/soap+xml;charset=UTF-8")));
        assert!(content_type_ok(Some(
            "application/soap+xml; charset=\"utf-8\""
        )));
        assert!(content_type_ok(None));
        assert!(!content_type_ok(Some("text/plain")));
        assert!(!content_type_ok(Some(
            "application/soap+xml;charset=UTF-16"
        )));
    }
}
