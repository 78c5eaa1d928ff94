//! Redfish over HTTPS on `[redfish] listen` (default 127.0.0.1:8000), a view
//! and controller of the VM inventory like IPMI and CIM: Systems/{vm}
//! (power, boot override, guest NICs), Managers/{vm}-bmc with VirtualMedia
//! {Cd, Usb} exported over [`crate::nbd`], Chassis/{vm} with Thermal and
//! Power from the IPMI sensors, SessionService, AccountService over the
//! shared [`UserStore`], TaskService for inserts.
//!
//! * [`error`]: Base registry error bodies.
//! * [`resources`]: resource rendering.
//! * [`vmedia`]: virtual media slots, inserts and tasks.
//! * [`metadata`]: `$metadata` and the OData service document.
//! * [`protocol`]: the DSP0266 rules every request and response follows
//!   (405 + Allow, `Link: rel=describedby`, OData-Version, If-None-Match).
//! * [`proxy`]: proxy-mode virtual media slots and their WebSockets
//!   (`/nbd/{vm}/{N}`).
//!
//! Threat table: network clients are untrusted. Everything except `/redfish`,
//! `/redfish/v1/`, `/redfish/v1/odata`, `/redfish/v1/$metadata` and the login
//! POST needs Basic credentials or a session token (random 128 bits, compared
//! in a map, expiring after `[redfish] session_timeout`); sessions are bounded
//! by [`MAX_SESSIONS`]. A browser's session is a cookie plus a CSRF token
//! (random 128 bits) that every non-GET request repeats in `X-XSRF-TOKEN`
//! and a WebSocket upgrade offers as its subprotocol, compared in constant
//! time ([`Service::caller`], [`Service::caller_ws`]). Bodies are bounded by the HTTP layer (1 MiB) and
//! parsed by serde_json (no recursion bomb: serde_json limits depth to 128);
//! unknown properties and parameters are refused, not ignored. ReadOnly users
//! may only read and log out; Operators may also power, boot and media;
//! Administrators also change accounts. Image URLs are bounded by
//! [`vmedia::MAX_URL`]; what an image server sends is bounded in
//! [`crate::media`].

pub mod error;
pub mod metadata;
pub mod protocol;
pub mod proxy;
pub mod resources;
pub mod vmedia;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::control::Inventory;
use crate::http::{self, Handler, HttpConfig, HttpLimits, Request, Response};
use crate::nbd::Exports;
use crate::users::{Role, UserStore};
use error::{not_found, RedfishError};

/// Default listener (DESIGN.md section 3).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
/// Most concurrent sessions.
pub const MAX_SESSIONS: usize = 64;
/// Default session and media inactivity timeouts (seconds).
pub const DEFAULT_TIMEOUT: u64 = 1800;

/// The result of a request handler.
pub type RfResult = Result<Response, RedfishError>;

/// Why Redfish could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedfishStartError {
    /// The listener could not bind.
    #[error("cannot listen for Redfish on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS setup failed.
    #[error("Redfish HTTPS: {0}")]
    Tls(#[from] http::tls::TlsError),
    /// A thread could not start.
    #[error("cannot start the Redfish listener: {0}")]
    Thread(std::io::Error),
}

/// A login session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Resource Id.
    pub id: String,
    /// The X-Auth-Token.
    pub token: String,
    /// Who.
    pub user: String,
    /// Their IPMI user ID: a session lasts only while this account exists
    /// under this name and is enabled.
    pub uid: u8,
    /// Their role at login (requests use the account's current role).
    pub role: Role,
    /// Last use.
    pub last_used: Instant,
    /// Client-supplied context.
    pub context: Option<String>,
    /// For a cookie session (login with `X-Requested-With`): its CSRF
    /// token, the `XSRF-TOKEN` cookie's value, which every request but
    /// GET/HEAD must repeat in `X-XSRF-TOKEN` and a WebSocket upgrade in
    /// `Sec-WebSocket-Protocol`.
    pub csrf: Option<String>,
}

/// The cookie carrying a cookie session's token (HttpOnly).
pub const SESSION_COOKIE: &str = "SESSION";
/// The cookie carrying a cookie session's CSRF token (readable by the
/// page's script, which repeats it in `X-XSRF-TOKEN`).
pub const XSRF_COOKIE: &str = "XSRF-TOKEN";

/// Compare two secrets in time independent of where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut d = 0u8;
    for (x, y) in a.iter().zip(b) {
        d |= x ^ y;
    }
    // Keep the optimiser from turning the loop into an early exit.
    std::hint::black_box(d) == 0
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Cookie"))
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Options from `[redfish]`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory for `file://` images.
    pub media_dir: Option<PathBuf>,
    /// Extra CAs for `https://` images.
    pub media_ca: Option<PathBuf>,
    /// Allow `http://` images.
    pub allow_http: bool,
    /// Eject after this long without traffic.
    pub inactivity: Duration,
    /// Sessions expire after this long unused.
    pub session_timeout: Duration,
    /// Where NBD listens, for the Oem export details.
    pub nbd: Option<std::net::SocketAddr>,
    /// How long an action waits for an insert before answering with a Task.
    pub task_after: Duration,
    /// Proxy-mode slots per VM ([`proxy`]).
    pub proxy_slots: u8,
}

/// Who made a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User name.
    pub user: String,
    /// Role.
    pub role: Role,
    /// The session, when authenticated by token.
    pub session: Option<String>,
}

/// The Redfish service.
#[derive(Debug)]
pub struct Service {
    /// VMs.
    pub inventory: Inventory,
    /// Users.
    pub users: Arc<UserStore>,
    /// NBD exports.
    pub exports: Arc<Exports>,
    /// Options.
    pub opts: Options,
    /// The service UUID.
    pub uuid: String,
    sessions: Mutex<BTreeMap<String, Session>>,
    /// Virtual media slots and tasks.
    pub media: vmedia::MediaState,
    /// Proxy-mode virtual media slots.
    pub proxy: proxy::ProxySlots,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    if getrandom::getrandom(&mut b).is_err() {
        // getrandom failing means no entropy source at all; refuse to mint
        // guessable tokens.
        panic!("no entropy source for session tokens");
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A JSON response with the headers every Redfish response carries.
pub fn json_response(status: u16, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response {
        status,
        headers: vec![
            (
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            ),
            ("OData-Version".into(), "4.0".into()),
            ("Cache-Control".into(), "no-cache".into()),
        ],
        body,
    }
}

/// A weak ETag over a rendering.
pub fn etag_of(v: &Value) -> String {
    let s = serde_json::to_vec(v).unwrap_or_default();
    // FNV-1a: a change detector, not a security boundary.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("W/\"{h:016x}\"")
}

/// The response for a failed request `req`: the JSON error body; a 401
/// adds the Basic challenge unless the request came from a page's script
/// (`X-Requested-With` or a session cookie), where the browser would pop
/// up its own login dialog over the page's.
pub fn error_response(req: &Request, e: &RedfishError) -> Response {
    let mut r = json_response(e.status, &e.body());
    let browser = req.header("X-Requested-With").is_some() || cookie(req, SESSION_COOKIE).is_some();
    if e.status == 401 && !browser {
        r = r.with_header("WWW-Authenticate", "Basic realm=\"hvsim Redfish\"");
    }
    r
}

impl Service {
    /// A service over the inventory.
    pub fn new(
        inventory: Inventory,
        users: Arc<UserStore>,
        exports: Arc<Exports>,
        opts: Options,
        uuid: String,
    ) -> Arc<Service> {
        Arc::new(Service {
            media: vmedia::MediaState::new(&inventory),
            proxy: proxy::ProxySlots::new(opts.proxy_slots),
            inventory,
            users,
            exports,
            opts,
            uuid,
            sessions: Mutex::new(BTreeMap::new()),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Session>> {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let t = self.opts.session_timeout;
        s.retain(|_, v| v.last_used.elapsed() < t);
        s
    }

    /// The caller of `req`, however it authenticates: an `X-Auth-Token`
    /// session, Basic credentials, or a session cookie. A cookie is
    /// ambient (the browser sends it with any request to this host), so a
    /// cookie-authenticated request other than GET/HEAD must also carry
    /// `X-XSRF-TOKEN` equal to the session's CSRF token (compared in
    /// constant time), which only the page itself can read; else 401.
    /// Routes outside `/redfish` (the web console) call this too; WebSocket
    /// upgrades call [`Service::caller_ws`] instead.
    pub fn caller(&self, req: &Request) -> Result<Caller, RedfishError> {
        if let Some(tok) = req.header("X-Auth-Token") {
            return self.session_caller(tok, false).map(|(c, _)| c);
        }
        if let Some(h) = req.header("Authorization") {
            return self.basic_caller(req, h);
        }
        if let Some(tok) = cookie(req, SESSION_COOKIE) {
            let (c, csrf) = self.session_caller(tok, true)?;
            if req.method != "GET" && req.method != "HEAD" {
                let sent = req.header("X-XSRF-TOKEN").unwrap_or("");
                if !ct_eq(sent.as_bytes(), csrf.unwrap_or_default().as_bytes()) {
                    log::warn!(
                        "redfish: {} {} from {} with session cookie of {} but {} X-XSRF-TOKEN",
                        req.method,
                        req.target,
                        req.peer,
                        c.user,
                        if sent.is_empty() { "no" } else { "a wrong" }
                    );
                    return Err(RedfishError::new(401, "NoValidSession", &[]).explain(
                        "A request authenticated by the session cookie must carry the XSRF-TOKEN cookie's value in the X-XSRF-TOKEN header.",
                    ));
                }
            }
            return Ok(c);
        }
        Err(RedfishError::new(401, "NoValidSession", &[]))
    }

    /// The caller of a WebSocket upgrade request, and the subprotocol to
    /// echo in the 101. Browsers cannot set headers on a WebSocket, so a
    /// cookie-authenticated upgrade must offer the session's CSRF token as
    /// its subprotocol (`new WebSocket(url, [token])`, as OpenBMC's web UI
    /// does); it is compared in constant time (401 otherwise) and returned
    /// to be echoed. `X-Auth-Token` and Basic callers skip that check
    /// (`None`: echo nothing).
    pub fn caller_ws(&self, req: &Request) -> Result<(Caller, Option<String>), RedfishError> {
        if req.header("X-Auth-Token").is_some() || req.header("Authorization").is_some() {
            return self.caller(req).map(|c| (c, None));
        }
        let Some(tok) = cookie(req, SESSION_COOKIE) else {
            return Err(RedfishError::new(401, "NoValidSession", &[]));
        };
        let (c, csrf) = self.session_caller(tok, true)?;
        let csrf = csrf.unwrap_or_default();
        let offered = crate::http::ws::offered_protocols(req);
        // Every offer is compared, each in constant time.
        let ok = offered
            .iter()
            .fold(false, |ok, p| ct_eq(p.as_bytes(), csrf.as_bytes()) | ok);
        if !ok {
            log::warn!(
                "redfish: WebSocket {} from {} with session cookie of {} but {} CSRF subprotocol",
                req.target,
                req.peer,
                c.user,
                if offered.is_empty() { "no" } else { "a wrong" }
            );
            return Err(RedfishError::new(401, "NoValidSession", &[]).explain(
                "A WebSocket authenticated by the session cookie must offer the XSRF-TOKEN cookie's value as its subprotocol (Sec-WebSocket-Protocol).",
            ));
        }
        Ok((c, Some(csrf)))
    }

    /// The caller for a session token; `cookie` says it came in the
    /// session cookie (only cookie sessions are accepted there). Also
    /// returns the session's CSRF token.
    fn session_caller(
        &self,
        tok: &str,
        cookie: bool,
    ) -> Result<(Caller, Option<String>), RedfishError> {
        let mut s = self.sessions();
        if let Some(sess) = s
            .values_mut()
            .find(|v| v.token == tok && (!cookie || v.csrf.is_some()))
        {
            sess.last_used = Instant::now();
            let account = self.users.by_id(sess.uid).filter(|u| u.name == sess.user);
            match account {
                // A disabled account's sessions are refused while it is.
                Some(u) if u.enabled => {
                    sess.role = u.role;
                    return Ok((
                        Caller {
                            user: sess.user.clone(),
                            role: u.role,
                            session: Some(sess.id.clone()),
                        },
                        sess.csrf.clone(),
                    ));
                }
                Some(_) => {}
                // Deleted (over Redfish or IPMI): the session goes too.
                None => {
                    let id = sess.id.clone();
                    s.remove(&id);
                    log::info!("redfish: session {id} ended: its account is gone");
                    return Err(RedfishError::new(
                        401,
                        "AccountForSessionNoLongerExists",
                        &[],
                    ));
                }
            }
        }
        Err(RedfishError::new(401, "NoValidSession", &[]))
    }

    fn basic_caller(&self, req: &Request, h: &str) -> Result<Caller, RedfishError> {
        use base64::Engine as _;
        if let Some(rest) = h
            .strip_prefix("Basic ")
            .or_else(|| h.strip_prefix("basic "))
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if let Some((u, p)) = decoded.as_deref().and_then(|s| s.split_once(':')) {
                if let Some(user) = self.users.verify(u, p.as_bytes()) {
                    return Ok(Caller {
                        user: user.name,
                        role: user.role,
                        session: None,
                    });
                }
                log::warn!(
                    "redfish: authentication failed for user {u:?} from {}",
                    req.peer
                );
            }
        }
        Err(RedfishError::new(401, "NoValidSession", &[]))
    }

    /// Answer one request.
    pub fn answer(self: &Arc<Self>, req: &Request) -> Response {
        let (path, query) = match req.target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (req.target.as_str(), None),
        };
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        let path = if path.is_empty() { "/" } else { path };
        let r = protocol::check_request(req).and_then(|()| self.route(req, path, query));
        let resp = match r {
            Ok(r) => r,
            Err(e) => {
                log::debug!("redfish: {} {}: {e}", req.method, req.target);
                error_response(req, &e)
            }
        };
        protocol::finish(req, path, resp)
    }

    /// 404 unless `segs` names something that exists for `caller`: a
    /// resource, an action its `Actions` advertise, or a collection's
    /// `Members` (for the 405 of a method the URI does not support).
    fn exists(&self, caller: &Caller, segs: &[&str], path: &str) -> Result<(), RedfishError> {
        match segs {
            [parent @ .., "Actions", _] => {
                let v = self.get_as(caller, parent)?;
                let advertised = v["Actions"]
                    .as_object()
                    .is_some_and(|a| a.values().any(|x| x["target"].as_str() == Some(path)));
                if advertised {
                    Ok(())
                } else {
                    Err(not_found("Action", path))
                }
            }
            [parent @ .., "Members"] if protocol::allowed(path) == "POST" => {
                self.get_as(caller, parent).map(|_| ())
            }
            _ => self.get_as(caller, segs).map(|_| ()),
        }
    }

    fn route(self: &Arc<Self>, req: &Request, path: &str, query: Option<&str>) -> RfResult {
        let m = req.method.as_str();
        let get = m == "GET" || m == "HEAD";
        let public = matches!(
            path,
            "/redfish" | "/redfish/v1" | "/redfish/v1/odata" | "/redfish/v1/$metadata"
        ) || path
            .strip_prefix(metadata::SCHEMA_PATH)
            .and_then(|f| f.strip_prefix('/'))
            .is_some_and(|f| metadata::oem_schema(f).is_some());
        if public && !get {
            return Err(protocol::not_allowed(m, path));
        }
        // Unauthenticated documents (Redfish spec 13.3.1).
        match path {
            "/redfish" if get => return Ok(json_response(200, &json!({"v1": "/redfish/v1/"}))),
            "/redfish/v1" if get => return Ok(self.resource(resources::service_root(self))),
            "/redfish/v1/odata" if get => {
                return Ok(json_response(200, &metadata::service_document()))
            }
            "/redfish/v1/$metadata" if get => {
                return Ok(Response {
                    status: 200,
                    headers: vec![
                        ("Content-Type".into(), "application/xml".into()),
                        ("OData-Version".into(), "4.0".into()),
                    ],
                    body: metadata::METADATA.as_bytes().to_vec(),
                })
            }
            "/redfish/v1/SessionService/Sessions"
            | "/redfish/v1/SessionService/Sessions/Members"
                if m == "POST" =>
            {
                return self.login(req)
            }
            _ => {}
        }
        if let Some(file) = path
            .strip_prefix(metadata::SCHEMA_PATH)
            .and_then(|f| f.strip_prefix('/'))
        {
            if get {
                if let Some(xml) = metadata::oem_schema(file) {
                    return Ok(Response {
                        status: 200,
                        headers: vec![
                            ("Content-Type".into(), "application/xml".into()),
                            ("OData-Version".into(), "4.0".into()),
                        ],
                        body: xml.into_bytes(),
                    });
                }
            }
        }
        if let Some(rest) = path.strip_prefix("/nbd/") {
            return proxy::handle(self, req, rest);
        }
        if !path.starts_with("/redfish/v1/") && path != "/redfish/v1" {
            return Err(not_found("Resource", path));
        }
        let caller = self.caller(req)?;
        if let Some(q) = query {
            // $select/$expand/$filter are not implemented; `only` neither.
            if !q.is_empty() {
                return Err(RedfishError::new(400, "QueryNotSupported", &[]));
            }
        }
        let segs: Vec<&str> = path["/redfish/v1/".len().min(path.len())..]
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        if !protocol::permits(protocol::allowed(path), m) {
            self.exists(&caller, &segs, path)?;
            return Err(protocol::not_allowed(m, path));
        }
        match m {
            "GET" | "HEAD" => self.get_as(&caller, &segs).map(|v| self.resource(v)),
            "PATCH" => self.patch(req, &caller, &segs),
            "POST" => self.post(req, &caller, &segs),
            "DELETE" => self.delete(&caller, &segs),
            "PUT" => Err(RedfishError::new(405, "GeneralError", &[])),
            _ => Err(RedfishError::new(405, "GeneralError", &[])),
        }
    }

    /// A GET response with its ETag.
    fn resource(&self, mut v: Value) -> Response {
        let tag = etag_of(&v);
        // The ETag in the payload too (DSP0266), outside what it covers.
        if v.is_object() && v.get("@odata.id").is_some() {
            v["@odata.etag"] = tag.clone().into();
        }
        let r = json_response(200, &v).with_header("ETag", &tag);
        match v["@odata.type"].as_str().and_then(protocol::schema_uri) {
            Some(uri) => r.with_header("Link", &protocol::describedby(&uri)),
            None => r,
        }
    }

    fn vm(&self, name: &str) -> Result<&Arc<crate::vm::Vm>, RedfishError> {
        self.inventory
            .get(name)
            .ok_or_else(|| not_found("ComputerSystem", name))
    }

    fn bmc_vm(&self, id: &str) -> Result<&Arc<crate::vm::Vm>, RedfishError> {
        id.strip_suffix("-bmc")
            .and_then(|n| self.inventory.get(n))
            .ok_or_else(|| not_found("Manager", id))
    }

    fn get(&self, segs: &[&str]) -> Result<Value, RedfishError> {
        use resources as r;
        match segs {
            ["Systems"] => Ok(r::collection(
                "/redfish/v1/Systems",
                "ComputerSystemCollection",
                "Computer System Collection",
                self.inventory
                    .keys()
                    .map(|n| format!("/redfish/v1/Systems/{n}")),
            )),
            ["Systems", vm] => Ok(r::system(self, self.vm(vm)?)),
            ["Systems", vm, "ResetActionInfo"] => Ok(r::reset_action_info(self.vm(vm)?)),
            ["Systems", vm, "EthernetInterfaces"] => Ok(r::nic_collection(self.vm(vm)?)),
            ["Systems", vm, "EthernetInterfaces", id] => r::nic(self.vm(vm)?, id),
            ["Systems", vm, "VirtualMedia"] => Ok(r::vmedia_collection(
                &format!(
                    "/redfish/v1/Systems/{}/VirtualMedia",
                    self.vm(vm)?.info.name
                ),
                &self.vm(vm)?.info.name,
            )),
            ["Systems", vm, "VirtualMedia", slot] => {
                let v = self.vm(vm)?;
                vmedia::render(
                    self,
                    v,
                    slot,
                    &format!("/redfish/v1/Systems/{vm}/VirtualMedia/{slot}"),
                )
            }
            ["Chassis"] => Ok(r::collection(
                "/redfish/v1/Chassis",
                "ChassisCollection",
                "Chassis Collection",
                self.inventory
                    .keys()
                    .map(|n| format!("/redfish/v1/Chassis/{n}")),
            )),
            ["Chassis", vm] => Ok(r::chassis(
                self.vm(vm).map_err(|_| not_found("Chassis", vm))?,
            )),
            ["Chassis", vm, "Thermal"] => Ok(r::thermal(
                self.vm(vm).map_err(|_| not_found("Chassis", vm))?,
            )),
            ["Chassis", vm, "Power"] => {
                Ok(r::power(self.vm(vm).map_err(|_| not_found("Chassis", vm))?))
            }
            ["Managers"] => Ok(r::collection(
                "/redfish/v1/Managers",
                "ManagerCollection",
                "Manager Collection",
                self.inventory
                    .keys()
                    .map(|n| format!("/redfish/v1/Managers/{n}-bmc")),
            )),
            ["Managers", id] => Ok(r::manager(self, self.bmc_vm(id)?)),
            ["Managers", id, "VirtualMedia"] => {
                let v = self.bmc_vm(id)?;
                let base = format!("/redfish/v1/Managers/{id}/VirtualMedia");
                let mut c = r::vmedia_collection(&base, &v.info.name);
                // The proxy slots live under the manager, as in bmcweb.
                if let Some(m) = c["Members"].as_array_mut() {
                    for n in 0..self.proxy.count() {
                        m.push(json!({"@odata.id": format!("{base}/Slot_{n}")}));
                    }
                }
                c["Members@odata.count"] = c["Members"].as_array().map_or(0, |m| m.len()).into();
                Ok(c)
            }
            ["Managers", id, "VirtualMedia", slot] if self.proxy.has(slot) => {
                let v = self.bmc_vm(id)?;
                proxy::render(
                    self,
                    v,
                    slot,
                    &format!("/redfish/v1/Managers/{id}/VirtualMedia/{slot}"),
                )
            }
            ["Managers", id, "VirtualMedia", slot] => {
                let v = self.bmc_vm(id)?;
                vmedia::render(
                    self,
                    v,
                    slot,
                    &format!("/redfish/v1/Managers/{id}/VirtualMedia/{slot}"),
                )
            }
            ["SessionService"] => Ok(json!({
                "@odata.id": "/redfish/v1/SessionService",
                "@odata.type": "#SessionService.v1_1_0.SessionService",
                "Id": "SessionService",
                "Name": "Session Service",
                "ServiceEnabled": true,
                "SessionTimeout": self.opts.session_timeout.as_secs(),
                "Status": {"State": "Enabled", "Health": "OK"},
                "Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"},
            })),
            ["SessionService", "Sessions"] => Ok(r::collection(
                "/redfish/v1/SessionService/Sessions",
                "SessionCollection",
                "Session Collection",
                self.sessions()
                    .keys()
                    .map(|id| format!("/redfish/v1/SessionService/Sessions/{id}"))
                    .collect::<Vec<_>>()
                    .into_iter(),
            )),
            ["SessionService", "Sessions", id] => {
                let s = self.sessions();
                let sess = s.get(*id).ok_or_else(|| not_found("Session", id))?;
                Ok(session_json(sess))
            }
            ["AccountService"] => Ok(json!({
                "@odata.id": "/redfish/v1/AccountService",
                "@odata.type": "#AccountService.v1_5_0.AccountService",
                "Id": "AccountService",
                "Name": "Account Service",
                "ServiceEnabled": true,
                "Status": {"State": "Enabled", "Health": "OK"},
                "MinPasswordLength": 1,
                "MaxPasswordLength": crate::users::MAX_IPMI_PASSWORD,
                "Accounts": {"@odata.id": "/redfish/v1/AccountService/Accounts"},
                "Roles": {"@odata.id": "/redfish/v1/AccountService/Roles"},
            })),
            ["AccountService", "Accounts"] => Ok(r::collection(
                "/redfish/v1/AccountService/Accounts",
                "ManagerAccountCollection",
                "Accounts Collection",
                self.users
                    .list()
                    .iter()
                    .map(|u| format!("/redfish/v1/AccountService/Accounts/{}", u.id))
                    .collect::<Vec<_>>()
                    .into_iter(),
            )),
            ["AccountService", "Accounts", id] => Ok(r::account(&self.account_of(id)?)),
            ["AccountService", "Roles"] => Ok(r::collection(
                "/redfish/v1/AccountService/Roles",
                "RoleCollection",
                "Roles Collection",
                ["Administrator", "Operator", "ReadOnly"]
                    .iter()
                    .map(|r| format!("/redfish/v1/AccountService/Roles/{r}")),
            )),
            ["AccountService", "Roles", id] => r::role(id),
            ["TaskService"] => Ok(json!({
                "@odata.id": "/redfish/v1/TaskService",
                "@odata.type": "#TaskService.v1_1_0.TaskService",
                "Id": "TaskService",
                "Name": "Task Service",
                "ServiceEnabled": true,
                "CompletedTaskOverWritePolicy": "Oldest",
                "LifeCycleEventOnTaskStateChange": false,
                "Status": {"State": "Enabled", "Health": "OK"},
                "Tasks": {"@odata.id": "/redfish/v1/TaskService/Tasks"},
            })),
            ["TaskService", "Tasks"] => Ok(r::collection(
                "/redfish/v1/TaskService/Tasks",
                "TaskCollection",
                "Task Collection",
                self.media
                    .task_ids()
                    .into_iter()
                    .map(|i| format!("/redfish/v1/TaskService/Tasks/{i}")),
            )),
            ["TaskService", "Tasks", id] => self
                .media
                .task_json(id)
                .ok_or_else(|| not_found("Task", id)),
            _ => Err(not_found(
                "Resource",
                &format!("/redfish/v1/{}", segs.join("/")),
            )),
        }
    }

    /// GET as `caller`: without ConfigureUsers an account sees only itself
    /// among the accounts (ConfigureSelf).
    fn get_as(&self, caller: &Caller, segs: &[&str]) -> Result<Value, RedfishError> {
        if caller.role == Role::Administrator {
            return self.get(segs);
        }
        match segs {
            ["AccountService", "Accounts"] => Ok(resources::collection(
                "/redfish/v1/AccountService/Accounts",
                "ManagerAccountCollection",
                "Accounts Collection",
                self.users
                    .by_name(caller.user.as_bytes())
                    .map(|u| format!("/redfish/v1/AccountService/Accounts/{}", u.id))
                    .into_iter(),
            )),
            ["AccountService", "Accounts", id] => {
                let v = self.get(segs)?;
                if v["UserName"].as_str() != Some(caller.user.as_str()) {
                    return Err(RedfishError::new(403, "InsufficientPrivilege", &[])
                        .explain(format!("Without ConfigureUsers only your own account is readable, not account {id}.")));
                }
                Ok(v)
            }
            _ => self.get(segs),
        }
    }

    fn account_of(&self, id: &str) -> Result<crate::users::User, RedfishError> {
        id.parse::<u8>()
            .ok()
            .and_then(|i| self.users.by_id(i))
            .ok_or_else(|| not_found("ManagerAccount", id))
    }

    fn require(&self, caller: &Caller, role: Role) -> Result<(), RedfishError> {
        if caller.role >= role {
            Ok(())
        } else {
            Err(RedfishError::new(403, "InsufficientPrivilege", &[]))
        }
    }

    fn check_etag(&self, req: &Request, segs: &[&str]) -> Result<(), RedfishError> {
        if let Some(want) = req.header("If-Match") {
            if want.trim() == "*" {
                return Ok(());
            }
            let cur = etag_of(&self.get(segs)?);
            let strip = |s: &str| s.trim().trim_start_matches("W/").to_string();
            if !want.split(',').any(|w| strip(w) == strip(&cur)) {
                return Err(RedfishError::new(412, "PreconditionFailed", &[]));
            }
        }
        Ok(())
    }

    fn patch(&self, req: &Request, caller: &Caller, segs: &[&str]) -> RfResult {
        // A 404 for unknown resources before anything else.
        let current = self.get(segs)?;
        let body = parse_object(&req.body)?;
        self.check_etag(req, segs)?;
        // Annotations are ignored; a body of nothing else changes nothing.
        let Some(body) = protocol::strip_annotations(body) else {
            // What the caller may read (accounts: only their own unless admin).
            let mut r = self.resource(self.get_as(caller, segs)?);
            if let Ok(mut v) = serde_json::from_slice::<Value>(&r.body) {
                v["@Message.ExtendedInfo"] =
                    json!([RedfishError::new(200, "NoOperation", &[]).message_json()]);
                r.body = serde_json::to_vec(&v).unwrap_or_default();
            }
            return Ok(r);
        };
        match segs {
            ["Systems", vm] => {
                self.require(caller, Role::Operator)?;
                resources::patch_system(self.vm(vm)?, &body)?;
            }
            ["Managers", _, "VirtualMedia", slot] if self.proxy.has(slot) => {
                // Nothing of a proxy slot is writable.
                self.require(caller, Role::Operator)?;
                let k = body.keys().next().map_or("", |k| k.as_str());
                return Err(if body.is_empty() {
                    RedfishError::new(400, "NoOperation", &[])
                } else {
                    RedfishError::new(400, "PropertyNotWritable", &[k])
                });
            }
            ["Managers", _, "VirtualMedia", slot] | ["Systems", _, "VirtualMedia", slot] => {
                self.require(caller, Role::Operator)?;
                let vm = current["@odata.id"].as_str().unwrap_or("");
                let vm_name = vmedia::vm_of(vm).unwrap_or_default();
                self.media.patch(&vm_name, slot, &body)?;
            }
            ["AccountService", "Accounts", id] => {
                let u = self.account_of(id)?;
                if u.name != caller.user {
                    self.require(caller, Role::Administrator)?;
                }
                resources::patch_account(
                    &self.users,
                    &u,
                    &body,
                    caller.role == Role::Administrator,
                )?;
                // A renamed account keeps its sessions.
                if let Some(now) = self.users.by_id(u.id).filter(|n| n.name != u.name) {
                    for sess in self.sessions().values_mut().filter(|s| s.uid == u.id) {
                        sess.user.clone_from(&now.name);
                    }
                }
            }
            ["SessionService"] => {
                self.require(caller, Role::Administrator)?;
                // Nothing here is writable (the timeout is a config key).
                if let Some(k) = body.keys().next() {
                    let id = if [
                        "SessionTimeout",
                        "ServiceEnabled",
                        "Sessions",
                        "Status",
                        "Id",
                        "Name",
                    ]
                    .contains(&k.as_str())
                    {
                        "PropertyNotWritable"
                    } else {
                        "PropertyUnknown"
                    };
                    return Err(RedfishError::new(400, id, &[k]));
                }
            }
            _ => return Err(RedfishError::new(405, "GeneralError", &[])),
        }
        let v = self.get(segs)?;
        Ok(self.resource(v))
    }

    fn post(self: &Arc<Self>, req: &Request, caller: &Caller, segs: &[&str]) -> RfResult {
        match segs {
            ["Systems", vm, "Actions", action] => {
                let vm = self.vm(vm)?;
                if *action != "ComputerSystem.Reset" {
                    return Err(RedfishError::new(404, "ActionNotSupported", &[action]));
                }
                self.require(caller, Role::Operator)?;
                let body = parse_object(&req.body)?;
                resources::reset(vm, &body)?;
                Ok(json_response(200, &success()))
            }
            ["Managers", id, "VirtualMedia", slot, "Actions", action] if self.proxy.has(slot) => {
                let vm = self.bmc_vm(id)?;
                let n = proxy::slot_index(slot).unwrap_or(0);
                if *action != "VirtualMedia.EjectMedia" {
                    // Proxy slots are filled over their WebSocket only.
                    return Err(RedfishError::new(404, "ActionNotSupported", &[action]));
                }
                self.require(caller, Role::Operator)?;
                let body = parse_object(&req.body)?;
                if let Some(k) = body.keys().next() {
                    return Err(RedfishError::new(
                        400,
                        "ActionParameterUnknown",
                        &["VirtualMedia.EjectMedia", k],
                    ));
                }
                self.proxy.eject(self, &vm.info.name, n, &caller.user);
                Ok(json_response(200, &success()))
            }
            ["Managers", id, "VirtualMedia", slot, "Actions", action]
            | ["Systems", id, "VirtualMedia", slot, "Actions", action] => {
                let vm = if segs[0] == "Managers" {
                    self.bmc_vm(id)?
                } else {
                    self.vm(id)?
                };
                vmedia::slot_of(slot)?;
                self.require(caller, Role::Operator)?;
                let body = parse_object(&req.body)?;
                match *action {
                    "VirtualMedia.InsertMedia" => {
                        vmedia::insert(self, vm, slot, &body, &caller.user)
                    }
                    "VirtualMedia.EjectMedia" => {
                        if let Some(k) = body.keys().next() {
                            return Err(RedfishError::new(
                                400,
                                "ActionParameterUnknown",
                                &["VirtualMedia.EjectMedia", k],
                            ));
                        }
                        self.media.eject(self, &vm.info.name, slot)?;
                        Ok(json_response(200, &success()))
                    }
                    _ => Err(RedfishError::new(404, "ActionNotSupported", &[action])),
                }
            }
            ["SessionService", "Sessions"] | ["SessionService", "Sessions", "Members"] => {
                self.login(req)
            }
            ["AccountService", "Accounts"] | ["AccountService", "Accounts", "Members"] => {
                self.require(caller, Role::Administrator)?;
                let body = parse_object(&req.body)?;
                let u = resources::create_account(&self.users, &body)?;
                log::info!(
                    "redfish: account {} ({:?}, {}) created by {}",
                    u.id,
                    u.name,
                    u.role.as_str(),
                    caller.user
                );
                let v = resources::account(&u);
                let loc = format!("/redfish/v1/AccountService/Accounts/{}", u.id);
                Ok(json_response(201, &v)
                    .with_header("Location", &loc)
                    .with_header("ETag", &etag_of(&v)))
            }
            [.., "Actions", action] => {
                self.get(&segs[..segs.len() - 2])?;
                Err(RedfishError::new(404, "ActionNotSupported", &[action]))
            }
            _ => {
                self.get(segs)?;
                Err(RedfishError::new(405, "GeneralError", &[]))
            }
        }
    }

    fn delete(&self, caller: &Caller, segs: &[&str]) -> RfResult {
        match segs {
            ["SessionService", "Sessions", id] => {
                let mut s = self.sessions();
                let sess = s.get(*id).ok_or_else(|| not_found("Session", id))?;
                if sess.user != caller.user && caller.role != Role::Administrator {
                    return Err(RedfishError::new(403, "InsufficientPrivilege", &[]));
                }
                let cookie = sess.csrf.is_some() && caller.session.as_deref() == Some(*id);
                s.remove(*id);
                log::info!("redfish: session {id} of {} ended", caller.user);
                let mut r = no_content();
                if cookie {
                    // Logging out of the page's own session: the browser
                    // forgets both cookies.
                    r = r
                        .with_header(
                            "Set-Cookie",
                            &format!("{XSRF_COOKIE}=; Path=/; SameSite=Strict; Secure; Max-Age=0"),
                        )
                        .with_header(
                            "Set-Cookie",
                            &format!(
                                "{SESSION_COOKIE}=; Path=/; SameSite=Strict; Secure; HttpOnly; Max-Age=0"
                            ),
                        );
                }
                Ok(r)
            }
            ["AccountService", "Accounts", id] => {
                let u = self.account_of(id)?;
                self.require(caller, Role::Administrator)?;
                resources::delete_account(&self.users, u.id)?;
                let mut s = self.sessions();
                let before = s.len();
                s.retain(|_, v| v.uid != u.id);
                log::info!(
                    "redfish: account {} ({:?}) deleted by {}; {} session(s) ended",
                    u.id,
                    u.name,
                    caller.user,
                    before - s.len()
                );
                Ok(no_content())
            }
            _ => {
                self.get(segs)?;
                Err(RedfishError::new(405, "ResourceCannotBeDeleted", &[]))
            }
        }
    }

    fn login(&self, req: &Request) -> RfResult {
        let body = parse_object(&req.body)?;
        let mut user = None;
        let mut pass = None;
        let mut context = None;
        for (k, v) in &body {
            let s = v.as_str().ok_or_else(|| {
                RedfishError::new(400, "PropertyValueTypeError", &[&v.to_string(), k])
            })?;
            match k.as_str() {
                "UserName" => user = Some(s),
                "Password" => pass = Some(s),
                "Context" => context = Some(s.to_string()),
                _ => return Err(RedfishError::new(400, "PropertyUnknown", &[k])),
            }
        }
        let user = user.ok_or_else(|| RedfishError::new(400, "PropertyMissing", &["UserName"]))?;
        let pass = pass.ok_or_else(|| RedfishError::new(400, "PropertyMissing", &["Password"]))?;
        let Some(u) = self.users.verify(user, pass.as_bytes()) else {
            log::warn!("redfish: login failed for user {user:?} from {}", req.peer);
            return Err(RedfishError::new(
                401,
                "ResourceAtUriUnauthorized",
                &["/redfish/v1/SessionService/Sessions", "invalid credentials"],
            ));
        };
        let mut s = self.sessions();
        if s.len() >= MAX_SESSIONS {
            return Err(RedfishError::new(503, "SessionLimitExceeded", &[]));
        }
        let id = random_hex(8);
        let sess = Session {
            id: id.clone(),
            token: random_hex(16),
            user: u.name.clone(),
            uid: u.id,
            role: u.role,
            last_used: Instant::now(),
            context,
            // A browser login (bmcweb's rule: the X-Requested-With header
            // marks script-made requests) gets cookies instead of a token
            // header its script would have to keep somewhere.
            csrf: req.header("X-Requested-With").map(|_| random_hex(16)),
        };
        let body = session_json(&sess);
        let token = sess.token.clone();
        let csrf = sess.csrf.clone();
        s.insert(id.clone(), sess);
        log::info!(
            "redfish: {}session {id} for {} from {}",
            if csrf.is_some() { "cookie " } else { "" },
            u.name,
            req.peer
        );
        let loc = format!("/redfish/v1/SessionService/Sessions/{id}");
        let r = json_response(201, &body).with_header("Location", &loc);
        Ok(match csrf {
            None => r.with_header("X-Auth-Token", &token),
            Some(c) => r
                .with_header(
                    "Set-Cookie",
                    &format!("{XSRF_COOKIE}={c}; Path=/; SameSite=Strict; Secure"),
                )
                .with_header(
                    "Set-Cookie",
                    &format!("{SESSION_COOKIE}={token}; Path=/; SameSite=Strict; Secure; HttpOnly"),
                ),
        })
    }
}

fn no_content() -> Response {
    Response {
        status: 204,
        headers: vec![("OData-Version".into(), "4.0".into())],
        body: Vec::new(),
    }
}

fn session_json(s: &Session) -> Value {
    let mut v = json!({
        "@odata.id": format!("/redfish/v1/SessionService/Sessions/{}", s.id),
        "@odata.type": "#Session.v1_3_0.Session",
        "Id": s.id,
        "Name": format!("Session {}", s.id),
        "UserName": s.user,
        "Password": null,
    });
    if let Some(c) = &s.context {
        v["Context"] = c.clone().into();
        v["@odata.type"] = "#Session.v1_5_0.Session".into();
    }
    v
}

/// The Base `Success` message body of a completed action.
pub fn success() -> Value {
    json!({"@Message.ExtendedInfo": [RedfishError::new(200, "Success", &[]).message_json()]})
}

/// Parse a request body that must be a JSON object (empty counts as `{}`).
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, RedfishError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(RedfishError::new(400, "MalformedJSON", &[])),
    }
}

/// The HTTP face of the service.
#[derive(Debug)]
pub struct RedfishHandler(pub Arc<Service>);

impl Handler for RedfishHandler {
    fn handle(&self, req: &Request) -> Response {
        self.0.answer(req)
    }
}

/// What answers on the Redfish listener, made from the service: a
/// [`RedfishHandler`], or a front that serves its own paths and passes
/// Redfish's on (the web console, [`crate::webui`], which `serve` wires in).
pub type Front = fn(Arc<Service>) -> Arc<dyn Handler>;

/// A running Redfish service.
#[derive(Debug)]
pub struct RedfishServer {
    /// The service.
    pub service: Arc<Service>,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
}

/// Start Redfish and NBD from the config; `None` when disabled or the default
/// port is taken.
pub fn start(
    cfg: &Config,
    inventory: Inventory,
    users: Arc<UserStore>,
    state_dir: &Path,
    front: Front,
) -> anyhow::Result<Option<RedfishServer>> {
    let rc = &cfg.redfish;
    if rc.enabled == Some(false) {
        return Ok(None);
    }
    let exports = Exports::new();
    let nbd = crate::nbd::start(cfg.nbd.listen.as_deref(), exports.clone())?;
    let addr = rc.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listener = match http::bind(addr) {
        Ok(l) => l,
        Err(e) if rc.listen.is_none() => {
            log::warn!("default Redfish address {addr} unavailable ({e}); set [redfish] listen to serve Redfish");
            return Ok(None);
        }
        Err(source) => {
            return Err(RedfishStartError::Bind {
                addr: addr.into(),
                source,
            }
            .into())
        }
    };
    let paths = match (&rc.certificate, &rc.key) {
        (Some(c), Some(k)) => http::tls::CertPaths {
            cert: cfg.resolve(c),
            key: cfg.resolve(k),
        },
        _ => http::tls::ensure_self_signed(
            &state_dir.join("tls"),
            "redfish",
            &["localhost".into(), "127.0.0.1".into(), "::1".into()],
        )
        .map_err(RedfishStartError::Tls)?,
    };
    let tls = http::tls::server_config(&paths).map_err(RedfishStartError::Tls)?;
    let opts = Options {
        media_dir: rc.media_dir.as_ref().map(|p| cfg.resolve(p)),
        media_ca: rc.media_ca.as_ref().map(|p| cfg.resolve(p)),
        allow_http: rc.allow_http.unwrap_or(false),
        inactivity: Duration::from_secs(rc.inactivity_timeout.unwrap_or(DEFAULT_TIMEOUT)),
        session_timeout: Duration::from_secs(rc.session_timeout.unwrap_or(DEFAULT_TIMEOUT)),
        nbd,
        task_after: Duration::from_secs(2),
        proxy_slots: match rc.proxy_slots {
            None => proxy::DEFAULT_SLOTS,
            Some(n) if n <= proxy::MAX_SLOTS => n,
            Some(n) => anyhow::bail!(
                "[redfish] proxy_slots = {n}: at most {} proxy virtual media slots per VM",
                proxy::MAX_SLOTS
            ),
        },
    };
    let uuid = crate::config::format_uuid(&crate::config::uuid_from_name("hvsim-redfish-service"));
    let svc = Service::new(inventory, users, exports, opts, uuid);
    vmedia::spawn_reaper(svc.clone()).map_err(RedfishStartError::Thread)?;
    let local = listener.local_addr().map_err(RedfishStartError::Thread)?;
    let hc = HttpConfig {
        limits: HttpLimits::default(),
        auth: None,
        realm: "hvsim Redfish".into(),
        local_only: false,
        name: "redfish".into(),
    };
    http::spawn(listener, Some(tls), hc, front(svc.clone())).map_err(RedfishStartError::Thread)?;
    log::info!(
        "Redfish over HTTPS on {local} (certificate {})",
        paths.cert.display()
    );
    Ok(Some(RedfishServer {
        service: svc,
        addr: local,
    }))
}
