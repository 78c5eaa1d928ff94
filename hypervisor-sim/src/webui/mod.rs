//! The web console: pages served on the Redfish listener at `/`, for a
//! person who wants to see and drive the simulated host from a browser.
//!
//! * `/` and `/ui/*`: the page and its script and style, embedded in the
//!   binary ([`assets`]); no third-party code, nothing fetched at run time.
//! * `/api/session`, `/api/vms`, `/api/vms/{vm}`: what the pages show, as
//!   JSON (the VM's power, tools, guest identity, NICs, variables, memory
//!   statistics and SEL, its console and media slots).
//! * `/api/events?vm=NAME`: the same renderings as server-sent events,
//!   sent again within [`EVENT_POLL`] of each change (the VM's revision,
//!   woken early by its events, the signal vSphere's WaitForUpdatesEx and
//!   the CIM render cache use).
//!
//! Actions (power, boot override, accounts, virtual media) go to the Redfish
//! resources themselves, so they pass through the same checks and the same
//! VM model as any Redfish, IPMI or CIM client.
//!
//! Threat table: the browser's user is untrusted. Every `/api` request is
//! authenticated exactly as a Redfish request is ([`crate::redfish::Service`]'s
//! caller check: session token, session cookie with the XSRF header on
//! non-GET, or Basic); the pages themselves hold no data and are served to
//! anyone. `/api` answers only GET; there is nothing to change here that
//! Redfish does not already guard. Responses carry a Content-Security-Policy
//! that allows only this origin's scripts (no inline script), so text a guest
//! reports (hostname, variables) cannot run as code in the operator's
//! browser; the script also inserts such text only as text nodes.

pub mod assets;
pub mod live;
pub mod sol;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::http::{Handler, Request, Response};
use crate::redfish::{self, Service};
use crate::vm::Vm;

/// How often an event stream looks at its VMs' revisions when no event woke
/// it first.
pub const EVENT_POLL: Duration = Duration::from_millis(200);

/// Headers on every page and API response: no framing, no sniffing, only
/// this origin's scripts.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
];

fn secure(mut r: Response) -> Response {
    for (k, v) in SECURITY_HEADERS {
        r.headers.push(((*k).into(), (*v).into()));
    }
    r
}

fn api_json(status: u16, v: &Value) -> Response {
    secure(Response {
        status,
        headers: vec![(
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body: serde_json::to_vec(v).unwrap_or_default(),
    })
}

fn api_error(status: u16, msg: &str) -> Response {
    api_json(status, &json!({"error": msg}))
}

/// The Redfish listener's handler with the console in front (for
/// [`crate::redfish::start`]).
pub fn front(svc: Arc<Service>) -> Arc<dyn Handler> {
    Arc::new(ConsoleHandler::new(svc))
}

/// The Redfish listener's handler: the console's paths here, everything
/// else to Redfish.
#[derive(Debug)]
pub struct ConsoleHandler {
    svc: Arc<Service>,
}

impl ConsoleHandler {
    /// The console and Redfish over `svc`.
    pub fn new(svc: Arc<Service>) -> ConsoleHandler {
        ConsoleHandler { svc }
    }

    /// Answer a request for one of the console's paths; `None` for the
    /// others (Redfish's).
    pub fn answer(&self, req: &Request) -> Option<Response> {
        let path = req.target.split('?').next().unwrap_or("");
        if let Some(a) = assets::lookup(path) {
            if req.method != "GET" && req.method != "HEAD" {
                return Some(secure(
                    Response::text(405, "method not allowed\n").with_header("Allow", "GET, HEAD"),
                ));
            }
            return Some(secure(Response {
                status: 200,
                headers: vec![("Content-Type".into(), a.content_type.into())],
                body: a.body.to_vec(),
            }));
        }
        if let Some(vm) = path.strip_prefix("/console/") {
            return Some(sol::console(&self.svc, req, vm.trim_end_matches('/')));
        }
        let rest = path.strip_prefix("/api")?;
        if !rest.is_empty() && !rest.starts_with('/') {
            return None;
        }
        Some(self.api(req, rest.trim_end_matches('/')))
    }

    fn api(&self, req: &Request, rest: &str) -> Response {
        if req.method != "GET" && req.method != "HEAD" {
            return api_error(
                405,
                "the console API is read-only; actions go to /redfish/v1",
            )
            .with_header("Allow", "GET, HEAD");
        }
        let caller = match self.svc.caller(req) {
            Ok(c) => c,
            Err(e) => return api_error(e.status, "log in first (no valid session)"),
        };
        let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        match segs.as_slice() {
            ["session"] => api_json(
                200,
                &json!({
                    "user": caller.user,
                    "role": caller.role.as_str(),
                    "session": caller.session,
                }),
            ),
            ["events"] => {
                let query = req.target.split_once('?').map_or("", |(_, q)| q);
                let vm = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("vm="))
                    .map(|n| n.to_string());
                match vm {
                    None => live::events(&self.svc, req, None),
                    Some(n) => match self.svc.inventory.get(n.as_str()) {
                        Some(v) => live::events(&self.svc, req, Some(v.clone())),
                        None => api_error(404, &format!("no VM named {n:?}")),
                    },
                }
            }
            ["vms"] => api_json(
                200,
                &json!({"vms": self.svc.inventory.values().map(|v| summary(v)).collect::<Vec<_>>()}),
            ),
            ["vms", name] => match self.svc.inventory.get(*name) {
                Some(vm) => api_json(200, &detail(&self.svc, vm)),
                None => api_error(404, &format!("no VM named {name:?}")),
            },
            _ => api_error(404, &format!("no such console resource /api{rest}")),
        }
    }
}

impl Handler for ConsoleHandler {
    fn handle(&self, req: &Request) -> Response {
        match self.answer(req) {
            Some(r) => r,
            None => self.svc.answer(req),
        }
    }
}

/// The addresses a VM's guest reports, as text.
fn addresses(show: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for n in show["guest"]["nics"].as_array().into_iter().flatten() {
        for ip in n["ips"].as_array().into_iter().flatten() {
            if let Some(a) = ip["addr"].as_str() {
                out.push(a.to_string());
            }
        }
    }
    out
}

/// One line of the VM list.
pub fn summary(vm: &Vm) -> Value {
    let s = crate::vm::show_json(vm);
    json!({
        "name": vm.info.name,
        "power": s["power"],
        "tools": s["tools"]["status"],
        "hostname": s["guest"]["hostname"],
        "os": s["guest"]["os_full_name"],
        "addresses": addresses(&s),
        "revision": vm.revision(),
    })
}

/// Everything the VM page shows.
pub fn detail(svc: &Service, vm: &Vm) -> Value {
    let s = crate::vm::show_json(vm);
    let sel: Vec<Value> = vm
        .store()
        .sel_records(&vm.info.name)
        .unwrap_or_default()
        .iter()
        .filter_map(|(id, r)| <[u8; 16]>::try_from(&r[..]).ok().map(|r| (*id, r)))
        .map(|(id, r)| {
            json!({
                "id": id,
                "time": crate::ipmi::sel::timestamp(&r).map(|t| {
                    redfish::vmedia::iso8601(std::time::UNIX_EPOCH + Duration::from_secs(t.into()))
                }),
                "text": crate::ipmi::sel::describe(&r),
            })
        })
        .collect();
    let media: Vec<Value> = ["Cd", "Usb"]
        .iter()
        .map(|slot| {
            let m = svc.media.slot(&vm.info.name, slot);
            json!({
                "slot": slot,
                "inserted": m.medium.is_some(),
                "image": m.image,
            })
        })
        .collect();
    json!({
        "name": vm.info.name,
        "uuid": s["uuid"],
        "power": s["power"],
        "boot": s["boot"],
        "pending_graceful": s["pending_graceful"],
        "tools": {
            "status": s["tools"]["status"],
            // 2147483647: a guest-managed (distribution) package.
            "version": if s["tools"]["version"] == "2147483647" {
                json!("guest-managed")
            } else {
                s["tools"]["version_string"].clone()
            },
        },
        "hostname": s["guest"]["hostname"],
        "os": s["guest"]["os_name"],
        "os_full": s["guest"]["os_full_name"],
        "uptime_s": s["guest"]["uptime_s"],
        "nics": s["guest"]["nics"],
        "addresses": addresses(&s),
        "memory": s["guest"]["memory"],
        "guestinfo": s["guestinfo"],
        "memory_mb": s["memory_mb"],
        "sel": sel,
        "console": {"attached": vm.console.is_attached()},
        "media": media,
        "revision": vm.revision(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserConfig;
    use crate::store::Store;
    use crate::vm::{VmInfo, VmLimits};
    use std::collections::BTreeMap;

    fn service() -> (Arc<Service>, Arc<Store>) {
        let store = Arc::new(Store::in_memory().unwrap());
        let info = VmInfo {
            name: "vm0".into(),
            uuid: [7; 16],
            memory_mb: 1024,
            backdoor_socket: "/nonexistent".into(),
            clipboard: false,
            model: "VMware Virtual Platform".into(),
        };
        let limits = VmLimits {
            channels: Default::default(),
            max_guest_vars: 64,
        };
        let vm = Arc::new(Vm::new(info, limits, store.clone(), 1).unwrap());
        let inv: BTreeMap<_, _> = [("vm0".to_string(), vm)].into_iter().collect();
        let users = |name: &str, password: &str, role: &str| UserConfig {
            name: name.into(),
            password: password.into(),
            role: Some(role.into()),
        };
        let users = Arc::new(
            crate::users::UserStore::load(
                &[
                    users("admin", "pw", "Administrator"),
                    users("viewer", "look", "ReadOnly"),
                ],
                store.clone(),
            )
            .unwrap(),
        );
        let opts = redfish::Options {
            media_dir: None,
            media_ca: None,
            allow_http: false,
            inactivity: Duration::from_secs(60),
            session_timeout: Duration::from_secs(60),
            nbd: None,
            task_after: Duration::from_secs(2),
            proxy_slots: 0,
        };
        let svc = Service::new(
            Arc::new(inv),
            users,
            crate::nbd::Exports::new(),
            opts,
            "uuid".into(),
        );
        (svc, store)
    }

    fn req(method: &str, target: &str, basic: Option<&str>) -> Request {
        use base64::Engine as _;
        let mut headers = Vec::new();
        if let Some(b) = basic {
            let enc = base64::engine::general_purpose::STANDARD.encode(b);
            headers.push(("Authorization".to_string(), format!("Basic {enc}")));
        }
        Request {
            method: method.into(),
            target: target.into(),
            headers,
            body: Vec::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            tls: true,
            principal: None,
            takeover: Default::default(),
        }
    }

    fn body(r: &Response) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn pages_are_served_to_anyone_with_the_security_headers() {
        let (svc, _) = service();
        let h = ConsoleHandler::new(svc);
        let r = h.handle(&req("GET", "/", None));
        assert_eq!(r.status, 200);
        let csp = r
            .headers
            .iter()
            .find(|(k, _)| k == "Content-Security-Policy")
            .map(|(_, v)| v.as_str())
            .unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(h.handle(&req("GET", "/ui/app.js", None)).status, 200);
        assert_eq!(h.handle(&req("POST", "/", None)).status, 405);
        // Redfish's paths stay Redfish's.
        assert!(h.answer(&req("GET", "/redfish/v1", None)).is_none());
        assert!(h.answer(&req("GET", "/apix", None)).is_none());
    }

    #[test]
    fn the_api_needs_a_caller_and_only_reads() {
        let (svc, _) = service();
        let h = ConsoleHandler::new(svc);
        assert_eq!(h.handle(&req("GET", "/api/vms", None)).status, 401);
        assert_eq!(
            h.handle(&req("GET", "/api/vms", Some("admin:wrong")))
                .status,
            401
        );
        let r = h.handle(&req("GET", "/api/vms", Some("viewer:look")));
        assert_eq!(r.status, 200);
        assert_eq!(body(&r)["vms"][0]["name"], "vm0");
        let r = h.handle(&req("GET", "/api/session", Some("viewer:look")));
        assert_eq!(body(&r)["role"], "ReadOnly");
        assert_eq!(
            h.handle(&req("GET", "/api/vms/nope", Some("admin:pw")))
                .status,
            404
        );
        assert_eq!(
            h.handle(&req("POST", "/api/vms", Some("admin:pw"))).status,
            405
        );
        assert_eq!(
            h.handle(&req("GET", "/api/events?vm=nope", Some("admin:pw")))
                .status,
            404
        );
        // A console WebSocket needs the Operator role.
        let r = h.handle(&req("GET", "/console/vm0", Some("viewer:look")));
        assert_eq!(r.status, 403, "{:?}", String::from_utf8_lossy(&r.body));
    }

    #[test]
    fn the_vm_page_shows_power_variables_and_the_sel() {
        let (svc, store) = service();
        let vm = svc.inventory.get("vm0").unwrap().clone();
        let before = detail(&svc, &vm);
        assert_eq!(before["power"], "on");
        vm.set_var("guestinfo.note", b"<b>text</b>").unwrap();
        vm.power(crate::vm::PowerAction::Off, "test").unwrap();
        let r = crate::ipmi::sel::Sel::record_for(&crate::vm::VmEvent::PowerOn {
            source: "test".into(),
        })
        .unwrap();
        store.sel_add("vm0", 1, &r).unwrap();
        let after = detail(&svc, &vm);
        assert_eq!(after["power"], "off");
        assert_eq!(after["guestinfo"]["guestinfo.note"], "<b>text</b>");
        assert_eq!(
            after["sel"][0]["text"],
            "System ACPI power state: S0/G0 working"
        );
        assert!(after["revision"].as_u64() > before["revision"].as_u64());
        assert_eq!(after["media"][0]["slot"], "Cd");
    }
}
