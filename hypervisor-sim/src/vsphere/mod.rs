//! The vSphere API (vim25 SOAP at `/sdk`), as a standalone ESXi host
//! answers it, over hvsim's VM inventory: what pyvmomi, govc, Ansible's
//! community.vmware and Terraform call.
//!
//! * ServiceInstance (RetrieveServiceContent, CurrentTime), SessionManager
//!   (Login, Logout, SessionIsActive; the `vmware_soap_session` cookie;
//!   the shared `[[user]]` store and its roles), `Fetch` of any property
//!   (how pyvmomi reads `vm.name`);
//! * PropertyCollector: RetrievePropertiesEx / ContinueRetrievePropertiesEx /
//!   RetrieveProperties with traversal specs, CreateFilter / DestroyFilter,
//!   WaitForUpdatesEx / WaitForUpdates / CheckForUpdates with versions and
//!   timeouts ([`collector`]);
//! * ViewManager (CreateContainerView, DestroyView), SearchIndex (FindByUuid,
//!   FindByIp, FindByDnsName, their FindAll forms, FindByInventoryPath,
//!   FindChild);
//! * VirtualMachine: PowerOnVM_Task, PowerOffVM_Task, ResetVM_Task,
//!   ShutdownGuest, RebootGuest, ReconfigVM_Task (`extraConfig`
//!   `guestinfo.*` keys are the VM's guest variables), CreateSnapshot_Task
//!   (quiesce through the guest's vmbackup), RemoveSnapshot_Task,
//!   RemoveAllSnapshots_Task, RenameSnapshot, RevertToSnapshot_Task,
//!   RevertToCurrentSnapshot_Task ([`snapshots`]), CustomizeVM_Task, guest
//!   operations ([`guest`]); tasks with progress and vSphere faults;
//! * a per-VM cache of the property tree and its XML ([`cache`]).
//!
//! Every answer reads the same VMs the other services read, so a change made
//! here is seen by CIM, IPMI, Redfish and the CLI, and the reverse; a
//! property filter wakes on guest reports.
//!
//! Threat table: network clients are untrusted. Bodies are bounded by the
//! HTTP layer (4 MiB); XML by depth and element count, DOCTYPE refused
//! ([`soap`]). Every method but RetrieveServiceContent, Login and
//! CurrentTime needs a session (128-bit random key in a cookie), sessions
//! are capped ([`MAX_SESSIONS`]) and expire when unused; each session's
//! views, filters, tasks and pending results are capped; WaitForUpdates
//! waits at most [`MAX_WAIT`] per call. ReadOnly users may only read;
//! power and guest operations need Operator; ReconfigVM needs Administrator.

pub mod cache;
pub mod collector;
pub mod guest;
pub mod model;
pub mod snapshots;
pub mod soap;
pub mod val;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::control::Inventory as HvInventory;
use crate::http::{self, HttpConfig, HttpLimits, Request, Response};
use crate::users::{Role, UserStore};
use crate::vm::{PowerAction, PowerError};

use model::{Inventory, VmEntry};
use soap::Node;
use val::{Mor, Val};

/// Default listen address (`[vsphere] listen`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Most sessions at once.
pub const MAX_SESSIONS: usize = 256;
/// Most views, filters and kept tasks per session.
pub const MAX_PER_SESSION: usize = 1024;
/// Longest a WaitForUpdates call blocks.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Default seconds a session lives unused.
pub const DEFAULT_SESSION_TIMEOUT: u64 = 1800;
/// The session cookie's name, as hostd sets it.
pub const COOKIE: &str = "vmware_soap_session";

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum VsphereStartError {
    /// The configured address cannot be bound.
    #[error("cannot listen for the vSphere API on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Certificate trouble.
    #[error("vSphere API TLS: {0}")]
    Tls(String),
    /// The listener thread.
    #[error("vSphere API listener thread")]
    Thread(#[source] std::io::Error),
}

/// A vSphere fault to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The MethodFault type.
    pub kind: &'static str,
    /// The message (faultstring).
    pub msg: String,
    /// The fault's fields as XML.
    pub fields: String,
}

impl Fault {
    /// A fault without fields.
    pub fn new(kind: &'static str, msg: impl Into<String>) -> Fault {
        Fault {
            kind,
            msg: msg.into(),
            fields: String::new(),
        }
    }

    fn with(mut self, fields: String) -> Fault {
        self.fields = fields;
        self
    }

    /// `InvalidArgument` naming the argument.
    pub fn invalid_argument(name: &str) -> Fault {
        Fault::new(
            "InvalidArgument",
            format!("A specified parameter was not correct: {name}"),
        )
        .with(format!(
            "<invalidProperty>{}</invalidProperty>",
            soap::escape(name)
        ))
    }

    /// `ManagedObjectNotFound` for a reference.
    pub fn not_found(m: &Mor) -> Fault {
        Fault::new(
            "ManagedObjectNotFound",
            format!(
                "The object '{}:{}' has already been deleted or has not been completely created",
                m.ty, m.value
            ),
        )
        .with(format!(
            "<obj type=\"{}\">{}</obj>",
            soap::escape(&m.ty),
            soap::escape(&m.value)
        ))
    }

    fn no_permission(m: &Mor, privilege: &str) -> Fault {
        Fault::new(
            "NoPermission",
            format!("Permission to perform this operation was denied: {privilege}"),
        )
        .with(format!(
            "<object type=\"{}\">{}</object><privilegeId>{privilege}</privilegeId>",
            soap::escape(&m.ty),
            soap::escape(&m.value)
        ))
    }

    /// The XML of the fault as a `LocalizedMethodFault.fault` value.
    fn as_val_xml(&self) -> String {
        format!(
            "<fault xsi:type=\"{}\">{}</fault><localizedMessage>{}</localizedMessage>",
            self.kind,
            self.fields,
            soap::escape(&self.msg)
        )
    }
}

/// A method's outcome: its result (or none) or a fault.
pub type Outcome = Result<Option<Val>, Fault>;

/// A task's state.
#[derive(Debug, Clone)]
struct Task {
    id: String,
    name: String,
    description: &'static str,
    entity: Mor,
    entity_name: String,
    user: String,
    queued: SystemTime,
    completed: Option<SystemTime>,
    /// `None` while running.
    result: Option<Result<Option<Val>, Fault>>,
}

impl Task {
    fn info(&self) -> Val {
        let state = match &self.result {
            None => "running",
            Some(Ok(_)) => "success",
            Some(Err(_)) => "error",
        };
        let mut f = vec![
            ("key", Val::s(self.id.clone())),
            ("task", Val::mor("Task", &self.id)),
            ("name", Val::s(self.name.clone())),
            ("descriptionId", Val::s(self.description)),
            ("entity", Val::Mor(self.entity.clone())),
            ("entityName", Val::s(self.entity_name.clone())),
            ("state", Val::Enum("TaskInfoState", state.into())),
            ("cancelled", Val::Bool(false)),
            ("cancelable", Val::Bool(false)),
        ];
        match &self.result {
            Some(Err(fault)) => f.push((
                "error",
                Val::Raw("LocalizedMethodFault", fault.as_val_xml().into()),
            )),
            Some(Ok(Some(v))) => f.push(("result", Val::Any(Box::new(v.clone())))),
            _ => {}
        }
        f.extend([
            (
                "reason",
                Val::Obj(
                    "TaskReasonUser",
                    vec![("userName", Val::s(self.user.clone()))],
                ),
            ),
            ("queueTime", Val::Time(self.queued)),
            ("startTime", Val::Time(self.queued)),
        ]);
        if let Some(t) = self.completed {
            f.push(("completeTime", Val::Time(t)));
        }
        f.push(("eventChainId", Val::Int(0)));
        Val::Obj("TaskInfo", f)
    }
}

/// One logged-in client.
#[derive(Debug)]
pub struct Session {
    key: String,
    user: String,
    role: Role,
    login: SystemTime,
    last_used: Instant,
    peer: String,
    user_agent: String,
    calls: u64,
    views: HashMap<String, collector::View>,
    filters: BTreeMap<String, collector::Filter>,
    /// Results of RetrievePropertiesEx beyond maxObjects, by token.
    pending: HashMap<String, VecDeque<Val>>,
    /// What WaitForUpdates last reported, per filter.
    version: u64,
    next_id: u64,
}

impl Session {
    fn user_session(&self) -> Val {
        Val::Obj(
            "UserSession",
            vec![
                ("key", Val::s(self.key.clone())),
                ("userName", Val::s(self.user.clone())),
                ("fullName", Val::s(self.user.clone())),
                ("loginTime", Val::Time(self.login)),
                ("lastActiveTime", Val::Time(SystemTime::now())),
                ("locale", Val::s("en")),
                ("messageLocale", Val::s("en")),
                ("extensionSession", Val::Bool(false)),
                ("ipAddress", Val::s(self.peer.clone())),
                ("userAgent", Val::s(self.user_agent.clone())),
                ("callCount", Val::Long(self.calls as i64)),
            ],
        )
    }

    fn next(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!(
            "session[{}]{prefix}{}",
            &self.key[..8.min(self.key.len())],
            self.next_id
        )
    }
}

/// The vSphere API service.
#[derive(Debug)]
pub struct Service {
    inv: Inventory,
    users: Arc<UserStore>,
    sessions: Mutex<HashMap<String, Arc<Mutex<Session>>>>,
    tasks: Arc<Mutex<VecDeque<Task>>>,
    /// Snapshots taken through the API, per VM id.
    snapshots: Arc<Mutex<BTreeMap<String, snapshots::Tree>>>,
    next_task: Mutex<u64>,
    /// extraConfig keys that are not guest variables, per VM id.
    extra: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    /// Bumped on every change made through this API (tasks), so property
    /// filters see them.
    revision: Arc<std::sync::atomic::AtomicU64>,
    session_timeout: Duration,
    /// Longest one WaitForUpdates call blocks.
    max_wait: Duration,
    /// Guest file transfer URLs handed out.
    transfers: guest::Transfers,
    open: bool,
    /// The VMs' property trees and XML ([`cache`]).
    cache: cache::VmCache,
}

fn random_hex(bytes: usize) -> Option<String> {
    let mut b = vec![0u8; bytes];
    getrandom::getrandom(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn mor_of(n: &Node) -> Mor {
    Mor {
        ty: n.attr("type").unwrap_or("").to_string(),
        value: n.text.trim().to_string(),
    }
}

fn role_at_least(role: Role, need: Role) -> bool {
    let rank = |r: Role| match r {
        Role::Administrator => 3,
        Role::Operator => 2,
        _ => 1,
    };
    rank(role) >= rank(need)
}

impl Service {
    /// A service over these VMs and users.
    pub fn new(
        inv: &HvInventory,
        users: Arc<UserStore>,
        session_timeout: Duration,
    ) -> Arc<Service> {
        let open = users.list().is_empty();
        Arc::new(Service {
            inv: Inventory::new(inv),
            users,
            sessions: Mutex::new(HashMap::new()),
            tasks: Arc::new(Mutex::new(VecDeque::new())),
            snapshots: Arc::new(Mutex::new(BTreeMap::new())),
            next_task: Mutex::new(0),
            extra: Mutex::new(BTreeMap::new()),
            revision: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            session_timeout,
            max_wait: MAX_WAIT,
            transfers: guest::Transfers::default(),
            open,
            cache: cache::VmCache::new(inv.len()),
        })
    }

    /// The same service with WaitForUpdates bounded by `max_wait` (tests and
    /// fuzzing, which must not block for minutes).
    pub fn with_max_wait(
        inv: &HvInventory,
        users: Arc<UserStore>,
        max_wait: Duration,
    ) -> Arc<Service> {
        let mut s = Arc::try_unwrap(Service::new(
            inv,
            users,
            Duration::from_secs(DEFAULT_SESSION_TIMEOUT),
        ))
        .expect("a new service has one owner");
        s.max_wait = max_wait;
        Arc::new(s)
    }

    /// The inventory as the API numbers it.
    pub fn inventory(&self) -> &Inventory {
        &self.inv
    }

    /// A number that changes whenever anything a property could show changes.
    pub fn revision(&self) -> u64 {
        let mut r = self.revision.load(std::sync::atomic::Ordering::SeqCst);
        for e in &self.inv.vms {
            r = r.wrapping_mul(31).wrapping_add(e.vm.revision());
            r = r.wrapping_add(u64::from(e.vm.tools_running()));
        }
        r
    }

    fn bump(&self) {
        self.revision
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The cached properties of VM `id` (see [`cache`]), rebuilt when
    /// anything they show changed.
    pub fn vm_entry(&self, id: &str) -> Option<Arc<cache::Entry>> {
        let (index, e) = self.inv.vm_index(id)?;
        let now = SystemTime::now();
        // The key is read before the data (see `cache`).
        let key = cache::Key::of(
            &e.vm,
            self.revision.load(std::sync::atomic::Ordering::SeqCst),
            now,
        );
        self.cache.entry(index, key, now, || self.vm_object(e, now))
    }

    #[cfg(test)]
    fn vm_object_for_test(&self, e: &VmEntry, now: SystemTime) -> Val {
        self.vm_object(e, now)
    }

    #[cfg(test)]
    fn reconfigure_for_test(&self, e: &VmEntry, spec: &Node) {
        self.reconfigure(e, spec).unwrap();
        self.bump();
    }

    /// Does this object exist (cheaper than building it)?
    pub fn exists(&self, session: Option<&Session>, m: &Mor) -> bool {
        match m.ty.as_str() {
            "VirtualMachine" => self.inv.vm_index(&m.value).is_some(),
            "ContainerView" => session.is_some_and(|s| s.views.contains_key(&m.value)),
            _ => self.object(session, m).is_some(),
        }
    }

    /// The properties of a managed object, as a data object of its
    /// top-level properties; `None` when it does not exist.
    pub fn object(&self, session: Option<&Session>, m: &Mor) -> Option<Arc<Val>> {
        if m.ty == "VirtualMachine" {
            return Some(self.vm_entry(&m.value)?.obj.clone());
        }
        self.uncached_object(session, m).map(Arc::new)
    }

    /// A VM's properties built afresh.
    fn vm_object(&self, e: &VmEntry, now: SystemTime) -> Val {
        let extra = self
            .extra
            .lock()
            .unwrap()
            .get(&e.id)
            .cloned()
            .unwrap_or_default();
        let mut obj = model::vm_object(e, &extra, now);
        let props = self
            .snapshots
            .lock()
            .unwrap()
            .get(&e.id)
            .and_then(|t| t.properties(&e.id));
        if let (Val::Obj(_, fields), Some((info, roots))) = (&mut obj, props) {
            fields.push(("snapshot", info));
            fields.push(("rootSnapshot", roots));
        }
        obj
    }

    fn uncached_object(&self, session: Option<&Session>, m: &Mor) -> Option<Val> {
        match m.ty.as_str() {
            "VirtualMachineSnapshot" => {
                let all = self.snapshots.lock().unwrap();
                let (vm_id, tree) = all.iter().find(|(_, t)| t.get(&m.value).is_some())?;
                tree.snapshot_object(&m.value, vm_id)
            }
            "Task" => {
                let tasks = self.tasks.lock().unwrap();
                let t = tasks.iter().find(|t| t.id == m.value)?;
                Some(Val::Obj("", vec![("info", t.info())]))
            }
            "ContainerView" => {
                let s = session?;
                let v = s.views.get(&m.value)?;
                Some(Val::Obj(
                    "",
                    vec![
                        ("container", Val::Mor(v.container.clone())),
                        (
                            "type",
                            Val::List(
                                "string",
                                v.types.iter().map(|t| Val::s(t.clone())).collect(),
                            ),
                        ),
                        ("recursive", Val::Bool(v.recursive)),
                        (
                            "view",
                            Val::List(
                                "ManagedObjectReference",
                                v.members.iter().cloned().map(Val::Mor).collect(),
                            ),
                        ),
                    ],
                ))
            }
            "PropertyFilter" => {
                let s = session?;
                let f = s.filters.get(&m.value)?;
                Some(Val::Obj("", vec![("partialUpdates", Val::Bool(f.partial))]))
            }
            "SessionManager" if m.value == "ha-sessionmgr" => {
                let mut f = vec![
                    ("defaultLocale", Val::s("en")),
                    ("messageLocaleList", Val::List("string", vec![Val::s("en")])),
                    (
                        "supportedLocaleList",
                        Val::List("string", vec![Val::s("en")]),
                    ),
                ];
                if let Some(s) = session {
                    f.push(("currentSession", s.user_session()));
                }
                Some(Val::Obj("", f))
            }
            "PropertyCollector" if m.value == "ha-property-collector" => {
                let filters = session
                    .map(|s| {
                        s.filters
                            .keys()
                            .map(|k| Val::mor("PropertyFilter", k))
                            .collect()
                    })
                    .unwrap_or_default();
                Some(Val::Obj(
                    "",
                    vec![("filter", Val::List("ManagedObjectReference", filters))],
                ))
            }
            "TaskManager" if m.value == "ha-taskmgr" => {
                let tasks = self.tasks.lock().unwrap();
                Some(Val::Obj(
                    "",
                    vec![(
                        "recentTask",
                        Val::List(
                            "ManagedObjectReference",
                            tasks.iter().map(|t| Val::mor("Task", &t.id)).collect(),
                        ),
                    )],
                ))
            }
            _ => model::static_object(m, &self.inv),
        }
    }

    fn session(&self, req: &Request) -> Option<Arc<Mutex<Session>>> {
        let cookie = req.header("Cookie")?;
        let key = cookie.split(';').find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == COOKIE).then(|| v.trim_matches('"').to_string())
        })?;
        let mut sessions = self.sessions.lock().unwrap();
        let s = sessions.get(&key)?.clone();
        let expired = s.lock().unwrap().last_used.elapsed() > self.session_timeout;
        if expired {
            sessions.remove(&key);
            return None;
        }
        Some(s)
    }

    fn expire_sessions(&self) {
        let t = self.session_timeout;
        self.sessions.lock().unwrap().retain(|_, s| {
            s.lock()
                .map(|s| s.last_used.elapsed() <= t)
                .unwrap_or(false)
        });
    }

    /// Answer one HTTP request.
    pub fn answer(&self, req: &Request) -> Response {
        let path = req.target.split('?').next().unwrap_or("");
        match (req.method.as_str(), path) {
            ("GET", "/sdk/vimServiceVersions.xml") => xml_response(200, service_versions()),
            ("GET", "/sdk/vimService.wsdl") | ("GET", "/sdk/vimService") => xml_response(
                200,
                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<definitions targetNamespace=\"urn:vim25Service\" xmlns=\"http://schemas.xmlsoap.org/wsdl/\"><!-- hvsim serves vim25 {} --></definitions>\n", model::API_VERSION),
            ),
            ("POST", "/sdk") | ("POST", "/sdk/") => self.soap(req),
            ("GET", "/guestFile") | ("PUT", "/guestFile") => self.guest_file(req),
            (_, "/sdk") | (_, "/sdk/") => Response::text(405, "use POST for SOAP requests\n").with_header("Allow", "POST"),
            _ => Response::text(404, "not found: the vSphere API is at /sdk\n"),
        }
    }

    fn soap(&self, req: &Request) -> Response {
        let env = match soap::parse(&req.body) {
            Ok(e) => e,
            Err(e) => return xml_response(500, soap::client_fault(&e.to_string())),
        };
        let op = match soap::operation(&env) {
            Ok(op) => op,
            Err(e) => return xml_response(500, soap::client_fault(&e.to_string())),
        };
        let this = op
            .child("_this")
            .map(mor_of)
            .unwrap_or_else(|| Mor::new("", ""));
        let method = op.name.as_str();
        // Methods that need no session.
        match method {
            "RetrieveServiceContent" => {
                return ok(method, Some(model::service_content()));
            }
            "CurrentTime" => return ok(method, Some(Val::Time(SystemTime::now()))),
            "Login" => return self.login(req, op),
            _ => {}
        }
        let Some(session) = self.session(req) else {
            let f =
                Fault::new("NotAuthenticated", "The session is not authenticated.").with(format!(
                    "<object type=\"{}\">{}</object><privilegeId>System.View</privilegeId>",
                    soap::escape(&this.ty),
                    soap::escape(&this.value)
                ));
            return fault_response(&f);
        };
        let outcome = {
            {
                let mut s = session.lock().unwrap();
                s.last_used = Instant::now();
                s.calls += 1;
            }
            self.dispatch(&session, &this, op)
        };
        match outcome {
            Ok(v) => {
                if method == "Logout" {
                    let key = session.lock().unwrap().key.clone();
                    self.sessions.lock().unwrap().remove(&key);
                }
                ok(method, v)
            }
            Err(f) => fault_response(&f),
        }
    }

    fn login(&self, req: &Request, op: &Node) -> Response {
        let user = op.text_of("userName").unwrap_or("").to_string();
        let password = op.text_of("password").unwrap_or("");
        let role = if self.open {
            Some(Role::Administrator)
        } else {
            self.users
                .verify(&user, password.as_bytes())
                .filter(|u| u.enabled)
                .map(|u| u.role)
        };
        let Some(role) = role else {
            log::info!("vsphere: login of {user:?} from {} refused", req.peer);
            return fault_response(&Fault::new(
                "InvalidLogin",
                "Cannot complete login due to an incorrect user name or password.",
            ));
        };
        self.expire_sessions();
        let Some(key) = random_hex(16) else {
            return fault_response(&Fault::new("SystemError", "no entropy for a session key"));
        };
        let session = Session {
            key: key.clone(),
            user: user.clone(),
            role,
            login: SystemTime::now(),
            last_used: Instant::now(),
            peer: req.peer.ip().to_string(),
            user_agent: req.header("User-Agent").unwrap_or("").to_string(),
            calls: 1,
            views: HashMap::new(),
            filters: BTreeMap::new(),
            pending: HashMap::new(),
            version: 0,
            next_id: 0,
        };
        let us = session.user_session();
        {
            let mut sessions = self.sessions.lock().unwrap();
            if sessions.len() >= MAX_SESSIONS {
                return fault_response(&Fault::new(
                    "InvalidState",
                    format!("too many sessions (at most {MAX_SESSIONS}): log out unused ones"),
                ));
            }
            sessions.insert(key.clone(), Arc::new(Mutex::new(session)));
        }
        log::info!("vsphere: {user} logged in from {}", req.peer);
        ok("Login", Some(us)).with_header(
            "Set-Cookie",
            &format!("{COOKIE}=\"{key}\"; Path=/; HttpOnly; Secure;"),
        )
    }

    fn need(
        &self,
        session: &Mutex<Session>,
        this: &Mor,
        role: Role,
        privilege: &str,
    ) -> Result<(), Fault> {
        let have = session.lock().unwrap().role;
        if role_at_least(have, role) {
            Ok(())
        } else {
            Err(Fault::no_permission(this, privilege))
        }
    }

    fn vm_of(&self, this: &Mor) -> Result<&VmEntry, Fault> {
        if this.ty != "VirtualMachine" {
            return Err(Fault::new(
                "MethodNotFound",
                format!("this method is not defined for {}", this.ty),
            ));
        }
        self.inv
            .vm(&this.value)
            .ok_or_else(|| Fault::not_found(this))
    }

    fn dispatch(&self, session: &Arc<Mutex<Session>>, this: &Mor, op: &Node) -> Outcome {
        let method = op.name.as_str();
        match method {
            "Logout" => Ok(None),
            "SessionIsActive" => {
                let id = op.text_of("sessionID").unwrap_or("");
                let user = op.text_of("userName").unwrap_or("");
                let sessions = self.sessions.lock().unwrap();
                let active = sessions
                    .get(id)
                    .map(|s| s.lock().unwrap().user == user)
                    .unwrap_or(false);
                Ok(Some(Val::Bool(active)))
            }
            "Fetch" => {
                let prop = op.text_of("prop").unwrap_or("");
                let s = session.lock().unwrap();
                let obj = self
                    .object(Some(&s), this)
                    .ok_or_else(|| Fault::not_found(this))?;
                Ok(obj.field(prop).cloned())
            }
            "RetrievePropertiesEx"
            | "RetrieveProperties"
            | "ContinueRetrievePropertiesEx"
            | "CancelRetrievePropertiesEx"
            | "CreateFilter"
            | "DestroyFilter"
            | "DestroyPropertyFilter"
            | "WaitForUpdatesEx"
            | "WaitForUpdates"
            | "CheckForUpdates"
            | "CancelWaitForUpdates"
            | "CreatePropertyCollector"
            | "DestroyPropertyCollector" => collector::dispatch(self, session, this, op),
            "CreateContainerView" => {
                let container = op
                    .child("container")
                    .map(mor_of)
                    .ok_or_else(|| Fault::invalid_argument("container"))?;
                if self.object(None, &container).is_none() {
                    return Err(Fault::not_found(&container));
                }
                let types: Vec<String> =
                    op.all("type").map(|t| t.text.trim().to_string()).collect();
                let recursive = op.bool_of("recursive", false);
                let mut s = session.lock().unwrap();
                if s.views.len() >= MAX_PER_SESSION {
                    return Err(Fault::new(
                        "InvalidState",
                        "too many views in this session: destroy unused ones",
                    ));
                }
                let id = s.next("");
                let mut view = collector::View {
                    container,
                    types,
                    recursive,
                    members: Arc::new(Vec::new()),
                };
                // Drop the session's lock while walking the inventory.
                drop(s);
                view.members = Arc::new(collector::view_members(self, &view));
                let mut s = session.lock().unwrap();
                s.views.insert(id.clone(), view);
                Ok(Some(Val::mor("ContainerView", &id)))
            }
            "DestroyView" => {
                let mut s = session.lock().unwrap();
                s.views
                    .remove(&this.value)
                    .ok_or_else(|| Fault::not_found(this))?;
                Ok(None)
            }
            "FindByUuid" | "FindAllByUuid" => {
                let uuid = op.text_of("uuid").unwrap_or("").trim().to_ascii_lowercase();
                let vm_search = op.bool_of("vmSearch", false);
                let instance = op.bool_of("instanceUuid", false);
                if !vm_search {
                    return self.find_result(method, Vec::new());
                }
                let hits = self
                    .inv
                    .vms
                    .iter()
                    .filter(|e| {
                        let u = if instance {
                            model::instance_uuid(&e.vm)
                        } else {
                            crate::config::format_uuid(&e.vm.info.uuid)
                        };
                        u == uuid
                    })
                    .map(|e| Mor::new("VirtualMachine", &e.id))
                    .collect();
                self.find_result(method, hits)
            }
            "FindByIp" | "FindAllByIp" => {
                let ip = op.text_of("ip").unwrap_or("").trim().to_string();
                if !op.bool_of("vmSearch", false) {
                    return self.find_result(method, Vec::new());
                }
                let hits = self
                    .inv
                    .vms
                    .iter()
                    .filter(|e| model::vm_has_ip(&e.vm, &ip))
                    .map(|e| Mor::new("VirtualMachine", &e.id))
                    .collect();
                self.find_result(method, hits)
            }
            "FindByDnsName" | "FindAllByDnsName" => {
                let name = op
                    .text_of("dnsName")
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                if !op.bool_of("vmSearch", false) {
                    let hits = if name == model::HOST_NAME {
                        vec![Mor::new("HostSystem", "ha-host")]
                    } else {
                        Vec::new()
                    };
                    return self.find_result(method, hits);
                }
                let hits = self
                    .inv
                    .vms
                    .iter()
                    .filter(|e| {
                        crate::cim::provider::VmView::of(&e.vm)
                            .hostname
                            .map(|h| {
                                let h = h.to_ascii_lowercase();
                                h == name || h.split('.').next() == Some(name.as_str())
                            })
                            .unwrap_or(false)
                    })
                    .map(|e| Mor::new("VirtualMachine", &e.id))
                    .collect();
                self.find_result(method, hits)
            }
            "FindByInventoryPath" => {
                let path = op
                    .text_of("inventoryPath")
                    .unwrap_or("")
                    .trim()
                    .trim_matches('/')
                    .to_string();
                Ok(self.by_inventory_path(&path).map(Val::Mor))
            }
            "FindChild" => {
                let entity = op
                    .child("entity")
                    .map(mor_of)
                    .ok_or_else(|| Fault::invalid_argument("entity"))?;
                let name = op.text_of("name").unwrap_or("");
                let s = session.lock().unwrap();
                let obj = self
                    .object(Some(&s), &entity)
                    .ok_or_else(|| Fault::not_found(&entity))?;
                let children = match entity.ty.as_str() {
                    "Datacenter" => ["vmFolder", "hostFolder", "datastoreFolder", "networkFolder"]
                        .iter()
                        .filter_map(|f| obj.field(f))
                        .flat_map(Val::mors)
                        .collect(),
                    _ => obj.field("childEntity").map(Val::mors).unwrap_or_default(),
                };
                Ok(children
                    .into_iter()
                    .find(|c| {
                        self.object(Some(&s), c)
                            .and_then(|o| o.field("name").and_then(Val::as_str).map(|n| n == name))
                            .unwrap_or(false)
                    })
                    .map(Val::Mor))
            }
            "PowerOnVM_Task" | "PowerOffVM_Task" | "ResetVM_Task" => {
                self.need(
                    session,
                    this,
                    Role::Operator,
                    "VirtualMachine.Interact.PowerOn",
                )?;
                let e = self.vm_of(this)?.clone();
                let on = e.vm.power_state() == crate::vm::Power::On;
                let (action, desc, result): (_, _, Result<Option<Val>, Fault>) = match method {
                    "PowerOnVM_Task" => (
                        PowerAction::On,
                        "VirtualMachine.powerOn",
                        if on {
                            Err(invalid_power_state("poweredOn", "poweredOn"))
                        } else {
                            Ok(None)
                        },
                    ),
                    "PowerOffVM_Task" => (
                        PowerAction::Off,
                        "VirtualMachine.powerOff",
                        if on {
                            Ok(None)
                        } else {
                            Err(invalid_power_state("poweredOff", "poweredOff"))
                        },
                    ),
                    _ => (
                        PowerAction::Reset,
                        "VirtualMachine.reset",
                        if on {
                            Ok(None)
                        } else {
                            Err(invalid_power_state("poweredOn", "poweredOff"))
                        },
                    ),
                };
                let result = result.and_then(|_| {
                    e.vm.power(action, "vsphere")
                        .map(|()| None)
                        .map_err(power_fault)
                });
                self.bump();
                Ok(Some(self.task(session, method, desc, &e, Some(result))?))
            }
            "ShutdownGuest" | "RebootGuest" => {
                self.need(
                    session,
                    this,
                    Role::Operator,
                    "VirtualMachine.Interact.PowerOff",
                )?;
                let e = self.vm_of(this)?;
                let action = if method == "ShutdownGuest" {
                    PowerAction::SoftOff
                } else {
                    PowerAction::SoftReboot
                };
                e.vm.power(action, "vsphere").map_err(power_fault)?;
                self.bump();
                Ok(None)
            }
            "ReconfigVM_Task" => {
                self.need(
                    session,
                    this,
                    Role::Administrator,
                    "VirtualMachine.Config.AdvancedConfig",
                )?;
                let e = self.vm_of(this)?.clone();
                let spec = op
                    .child("spec")
                    .ok_or_else(|| Fault::invalid_argument("spec"))?;
                let result = self.reconfigure(&e, spec);
                self.bump();
                Ok(Some(self.task(
                    session,
                    method,
                    "VirtualMachine.reconfigure",
                    &e,
                    Some(result),
                )?))
            }
            "CreateSnapshot_Task" => {
                self.need(
                    session,
                    this,
                    Role::Operator,
                    "VirtualMachine.State.CreateSnapshot",
                )?;
                let e = self.vm_of(this)?.clone();
                let name = op.text_of("name").unwrap_or("").trim().to_string();
                if name.is_empty() {
                    return Err(Fault::invalid_argument("name"));
                }
                let description = op.text_of("description").unwrap_or("").to_string();
                let quiesce = op.bool_of("quiesce", false);
                if op.bool_of("memory", false) {
                    return Err(Fault::new(
                        "NotSupported",
                        "memory snapshots are not supported by hvsim (the VM has no memory image)",
                    ));
                }
                let task = self.task(session, method, "VirtualMachine.createSnapshot", &e, None)?;
                let task_id = task.mors().remove(0).value;
                let tasks = self.tasks.clone();
                let snapshots = self.snapshots.clone();
                let extra_now = self
                    .extra
                    .lock()
                    .unwrap()
                    .get(&e.id)
                    .cloned()
                    .unwrap_or_default();
                let revision = self.revision.clone();
                let n = {
                    let mut n = self.next_task.lock().unwrap();
                    *n += 1;
                    *n
                };
                std::thread::Builder::new()
                    .name("vsphere-snapshot".into())
                    .spawn(move || {
                        let req = crate::snapshot::SnapshotRequest {
                            quiesce,
                            timeout_s: crate::control::DEFAULT_SNAPSHOT_TIMEOUT_S,
                            scripts: true,
                            ..Default::default()
                        };
                        let result = match e.vm.take_snapshot(&req) {
                            Ok(record) if record["result"] == "ok" => {
                                let id = format!("{}-snapshot-{n}", e.id);
                                let added = snapshots
                                    .lock()
                                    .unwrap()
                                    .entry(e.id.clone())
                                    .or_default()
                                    .add(snapshots::Snap {
                                        id: id.clone(),
                                        num: i32::try_from(n).unwrap_or(i32::MAX),
                                        parent: None,
                                        name,
                                        description,
                                        created: SystemTime::now(),
                                        quiesced: quiesce,
                                        extra: extra_now,
                                    });
                                // Before the task completes: a client that
                                // saw it complete reads the new snapshot.
                                revision.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                added
                                    .map(|()| Some(Val::mor("VirtualMachineSnapshot", &id)))
                                    .map_err(|msg| Fault::new("TooManySnapshotLevels", msg))
                            }
                            Ok(record) => Err(Fault::new(
                                "ApplicationQuiesceFault",
                                format!(
                                    "An error occurred while quiescing the virtual machine: {}",
                                    record["error"]
                                        .as_str()
                                        .unwrap_or("the guest did not quiesce")
                                ),
                            )),
                            Err(msg) if msg.contains("no guest agent") => {
                                Err(Fault::new("ToolsUnavailable", msg))
                            }
                            Err(msg) => Err(Fault::new("InvalidState", msg)),
                        };
                        if let Some(t) = tasks.lock().unwrap().iter_mut().find(|t| t.id == task_id)
                        {
                            t.result = Some(result);
                            t.completed = Some(SystemTime::now());
                        }
                        revision.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    })
                    .map_err(|e| Fault::new("SystemError", e.to_string()))?;
                Ok(Some(task))
            }
            "CustomizeVM_Task" => {
                self.need(
                    session,
                    this,
                    Role::Administrator,
                    "VirtualMachine.Provisioning.Customize",
                )?;
                let e = self.vm_of(this)?.clone();
                let spec = op
                    .child("spec")
                    .ok_or_else(|| Fault::invalid_argument("spec"))?;
                let macs: Vec<String> = crate::cim::provider::VmView::of(&e.vm)
                    .nics
                    .iter()
                    .map(|n| n.mac.clone())
                    .collect();
                let st = guest::customization_spec(spec, &macs)?;
                let marker = format!(
                    "vsphere-{}",
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis()
                );
                let origin = std::path::Path::new("CustomizationSpec");
                let cust = st
                    .to_cust(std::path::Path::new("."), origin, &marker)
                    .map_err(|err| Fault::new("CustomizationFault", err.to_string()))?;
                // vCenter sends a cabinet; the guest applies cust.cfg itself.
                let pkg = crate::customize::build_package(&crate::customize::PackageSpec {
                    format: protocol::deploypkg::PayloadType::Cabinet,
                    command: String::new(),
                    flags: 0,
                    process_timeout: 0,
                    files: crate::customize::native_files(&cust, None),
                })
                .map_err(|err| Fault::new("CustomizationFault", err.to_string()))?;
                let task = self.task(session, method, "VirtualMachine.customize", &e, None)?;
                let task_id = task.mors().remove(0).value;
                let tasks = self.tasks.clone();
                let revision = self.revision.clone();
                std::thread::Builder::new()
                    .name("vsphere-customize".into())
                    .spawn(move || {
                        // The task ends once the guest took the package; the
                        // guest's progress shows in `vm show` (customization).
                        let result = crate::customize::start(&e.vm, &pkg)
                            .map(|_| None)
                            .map_err(|msg| Fault::new("CustomizationFault", msg));
                        if let Some(t) = tasks.lock().unwrap().iter_mut().find(|t| t.id == task_id)
                        {
                            t.result = Some(result);
                            t.completed = Some(SystemTime::now());
                        }
                        revision.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    })
                    .map_err(|err| Fault::new("SystemError", err.to_string()))?;
                Ok(Some(task))
            }
            "RemoveSnapshot_Task" => {
                self.need(
                    session,
                    this,
                    Role::Operator,
                    "VirtualMachine.State.RemoveSnapshot",
                )?;
                let remove_children = op.bool_of("removeChildren", false);
                let e = self.with_snapshot(this, |tree| {
                    tree.remove(&this.value, remove_children);
                    Ok(())
                })?;
                self.task(
                    session,
                    method,
                    "VirtualMachineSnapshot.remove",
                    &e,
                    Some(Ok(None)),
                )
                .map(Some)
            }
            "RenameSnapshot" => {
                self.need(
                    session,
                    this,
                    Role::Operator,
                    "VirtualMachine.State.RenameSnapshot",
                )?;
                let name = op.child("name").map(|n| n.text.trim().to_string());
                if name.as_deref() == Some("") {
                    return Err(Fault::new("InvalidName", "A snapshot needs a name.")
                        .with("<name></name>".into()));
                }
                let description = op.child("description").map(|d| d.text.clone());
                self.with_snapshot(this, |tree| {
                    if let Some(s) = tree.list.iter_mut().find(|s| s.id == this.value) {
                        if let Some(n) = name {
                            s.name = n;
                        }
                        if let Some(d) = description {
                            s.description = d;
                        }
                    }
                    Ok(())
                })?;
                Ok(None)
            }
            "RevertToSnapshot_Task" | "RevertToCurrentSnapshot_Task" => {
                self.need(
                    session,
                    this,
                    Role::Operator,
                    "VirtualMachine.State.RevertToSnapshot",
                )?;
                let target = if method == "RevertToSnapshot_Task" {
                    this.clone()
                } else {
                    let e = self.vm_of(this)?;
                    let current = self
                        .snapshots
                        .lock()
                        .unwrap()
                        .get(&e.id)
                        .and_then(|t| t.current.clone());
                    match current {
                        Some(c) => Mor::new("VirtualMachineSnapshot", &c),
                        None => {
                            return Err(Fault::new(
                                "NotFound",
                                "The virtual machine has no current snapshot.",
                            ))
                        }
                    }
                };
                let mut extra = BTreeMap::new();
                let e = self.with_snapshot(&target, |tree| {
                    tree.current = Some(target.value.clone());
                    extra = tree
                        .get(&target.value)
                        .map(|s| s.extra.clone())
                        .unwrap_or_default();
                    Ok(())
                })?;
                self.extra.lock().unwrap().insert(e.id.clone(), extra);
                // The snapshot holds no memory: the VM is off after it, as
                // ESXi leaves it.
                let result = if e.vm.power_state() == crate::vm::Power::On {
                    e.vm.power(PowerAction::Off, "vsphere revert")
                        .map(|()| None)
                        .map_err(power_fault)
                } else {
                    Ok(None)
                };
                self.bump();
                let desc = if method == "RevertToSnapshot_Task" {
                    "VirtualMachineSnapshot.revert"
                } else {
                    "VirtualMachine.revertToCurrentSnapshot"
                };
                self.task(session, method, desc, &e, Some(result)).map(Some)
            }
            "RemoveAllSnapshots_Task" => {
                self.need(
                    session,
                    this,
                    Role::Operator,
                    "VirtualMachine.State.RemoveSnapshot",
                )?;
                let e = self.vm_of(this)?.clone();
                self.snapshots.lock().unwrap().remove(&e.id);
                self.bump();
                self.task(
                    session,
                    method,
                    "VirtualMachine.removeAllSnapshots",
                    &e,
                    Some(Ok(None)),
                )
                .map(Some)
            }
            m if guest::is_guest_method(m) => {
                let vm = guest::vm_arg(op).ok_or_else(|| Fault::invalid_argument("vm"))?;
                self.need(
                    session,
                    &vm,
                    Role::Operator,
                    "VirtualMachine.GuestOperations.Execute",
                )?;
                let e = self.vm_of(&vm)?.clone();
                self.guest_op(&e, op)
            }
            "CancelTask" => Err(Fault::new("InvalidState", "the task has already completed")),
            _ => {
                if self.object(Some(&session.lock().unwrap()), this).is_none()
                    && !this.ty.is_empty()
                {
                    return Err(Fault::not_found(this));
                }
                Err(Fault::new(
                    "MethodNotFound",
                    format!(
                        "Method {method} is not supported by this host (hvsim) on {}",
                        this.ty
                    ),
                )
                .with(format!(
                    "<receiver type=\"{}\">{}</receiver><method>{}</method>",
                    soap::escape(&this.ty),
                    soap::escape(&this.value),
                    soap::escape(method)
                )))
            }
        }
    }

    /// Change the tree holding snapshot `snap` (ManagedObjectNotFound when
    /// there is none); the property caches see it before this returns.
    fn with_snapshot(
        &self,
        snap: &Mor,
        change: impl FnOnce(&mut snapshots::Tree) -> Result<(), Fault>,
    ) -> Result<VmEntry, Fault> {
        if snap.ty != "VirtualMachineSnapshot" {
            return Err(Fault::new(
                "MethodNotFound",
                format!("this method is not defined for {}", snap.ty),
            ));
        }
        let vm_id = {
            let mut all = self.snapshots.lock().unwrap();
            let Some((vm_id, tree)) = all.iter_mut().find(|(_, t)| t.get(&snap.value).is_some())
            else {
                return Err(Fault::not_found(snap));
            };
            change(tree)?;
            vm_id.clone()
        };
        self.bump();
        self.inv
            .vm(&vm_id)
            .cloned()
            .ok_or_else(|| Fault::not_found(snap))
    }

    fn find_result(&self, method: &str, hits: Vec<Mor>) -> Outcome {
        if method.starts_with("FindAll") {
            Ok(Some(Val::List(
                "ManagedObjectReference",
                hits.into_iter().map(Val::Mor).collect(),
            )))
        } else {
            Ok(hits.into_iter().next().map(Val::Mor))
        }
    }

    fn by_inventory_path(&self, path: &str) -> Option<Mor> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        match parts.as_slice() {
            [] => Some(Mor::new("Folder", "ha-folder-root")),
            ["ha-datacenter"] => Some(Mor::new("Datacenter", "ha-datacenter")),
            ["ha-datacenter", "vm"] => Some(Mor::new("Folder", "ha-folder-vm")),
            ["ha-datacenter", "host"] => Some(Mor::new("Folder", "ha-folder-host")),
            ["ha-datacenter", "datastore"] => Some(Mor::new("Folder", "ha-folder-datastore")),
            ["ha-datacenter", "network"] => Some(Mor::new("Folder", "ha-folder-network")),
            ["ha-datacenter", "vm", name] => self
                .inv
                .vms
                .iter()
                .find(|e| e.vm.info.name == *name)
                .map(|e| Mor::new("VirtualMachine", &e.id)),
            ["ha-datacenter", "host", h] if *h == model::HOST_NAME => {
                Some(Mor::new("ComputeResource", "ha-compute-res"))
            }
            ["ha-datacenter", "host", h, hh]
                if *h == model::HOST_NAME && *hh == model::HOST_NAME =>
            {
                Some(Mor::new("HostSystem", "ha-host"))
            }
            ["ha-datacenter", "datastore", d] if *d == model::DATASTORE => {
                Some(Mor::new("Datastore", model::DATASTORE))
            }
            ["ha-datacenter", "network", n] if *n == model::NETWORK_NAME => {
                Some(Mor::new("Network", model::NETWORK))
            }
            _ => None,
        }
    }

    fn reconfigure(&self, e: &VmEntry, spec: &Node) -> Result<Option<Val>, Fault> {
        for opt in spec.all("extraConfig") {
            let key = opt.text_of("key").unwrap_or("").to_string();
            if key.is_empty() {
                return Err(Fault::invalid_argument("spec.extraConfig.key"));
            }
            let value = opt
                .child("value")
                .map(|v| v.text.clone())
                .unwrap_or_default();
            if let Some(var) = key.strip_prefix("guestinfo.") {
                if var.is_empty() {
                    return Err(Fault::invalid_argument("spec.extraConfig.key"));
                }
                e.vm.set_var(&key, value.as_bytes())
                    .map_err(|m| Fault::new("InvalidArgument", m))?;
            } else {
                let mut extra = self.extra.lock().unwrap();
                let map = extra.entry(e.id.clone()).or_default();
                if value.is_empty() {
                    map.remove(&key);
                } else {
                    map.insert(key, value);
                }
            }
        }
        Ok(None)
    }

    fn task(
        &self,
        session: &Mutex<Session>,
        method: &str,
        desc: &'static str,
        e: &VmEntry,
        result: Option<Result<Option<Val>, Fault>>,
    ) -> Result<Val, Fault> {
        let user = session.lock().unwrap().user.clone();
        let n = {
            let mut n = self.next_task.lock().unwrap();
            *n += 1;
            *n
        };
        let id = format!("haTask-{}-vim.{}-{n}", e.id, desc);
        let now = SystemTime::now();
        let task = Task {
            id: id.clone(),
            name: method.to_string(),
            description: desc,
            entity: Mor::new("VirtualMachine", &e.id),
            entity_name: e.vm.info.name.clone(),
            user,
            queued: now,
            completed: result.is_some().then_some(now),
            result,
        };
        let mut tasks = self.tasks.lock().unwrap();
        if tasks.len() >= MAX_PER_SESSION {
            tasks.pop_front();
        }
        tasks.push_back(task);
        Ok(Val::mor("Task", &id))
    }
}

fn invalid_power_state(requested: &str, existing: &str) -> Fault {
    Fault::new(
        "InvalidPowerState",
        "The attempted operation cannot be performed in the current state.",
    )
    .with(format!(
        "<requestedState>{requested}</requestedState><existingState>{existing}</existingState>"
    ))
}

fn power_fault(e: PowerError) -> Fault {
    match e {
        PowerError::PoweredOff(_) => invalid_power_state("poweredOn", "poweredOff"),
        PowerError::NoAgent(_) => Fault::new(
            "ToolsUnavailable",
            "Cannot complete operation because VMware Tools is not running in this virtual machine.",
        ),
        PowerError::InProgress(_) => Fault::new("TaskInProgress", e.to_string()),
        #[allow(unreachable_patterns)]
        other => Fault::new("InvalidState", other.to_string()),
    }
}

fn xml_response(status: u16, body: String) -> Response {
    Response {
        status,
        headers: vec![("Content-Type".into(), "text/xml; charset=utf-8".into())],
        body: body.into_bytes(),
    }
}

/// The largest answer lately, to size the next one's buffer in one go
/// (answers of many objects are hundreds of KiB).
static ANSWER_SIZE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(4096);

fn ok(method: &str, v: Option<Val>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let hint = ANSWER_SIZE.load(Relaxed);
    let body = soap::response_with(method, hint, |out| val::returnval_into(out, v.as_ref()));
    // Follow the size up at once and down slowly, never beyond 8 MiB.
    let next = if body.len() > hint {
        body.len()
    } else {
        hint - (hint - body.len()) / 16
    };
    ANSWER_SIZE.store(next.min(8 << 20), Relaxed);
    xml_response(200, body)
}

fn fault_response(f: &Fault) -> Response {
    xml_response(500, soap::fault(f.kind, &f.msg, &f.fields))
}

/// `/sdk/vimServiceVersions.xml`: the API versions clients may ask for.
pub fn service_versions() -> String {
    let prior: String = model::PRIOR_VERSIONS
        .iter()
        .map(|v| format!("      <version>{v}</version>\n"))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<namespaces version=\"1.0\">\n  <namespace>\n    <name>urn:vim25</name>\n    <version>{}</version>\n    <priorVersions>\n{prior}    </priorVersions>\n  </namespace>\n</namespaces>\n",
        model::API_VERSION
    )
}

/// The HTTP handler.
#[derive(Debug)]
pub struct VsphereHandler(pub Arc<Service>);

impl http::Handler for VsphereHandler {
    fn handle(&self, req: &Request) -> Response {
        self.0.answer(req)
    }
}

/// A running vSphere API.
#[derive(Debug)]
pub struct VsphereServer {
    /// The service.
    pub service: Arc<Service>,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
}

/// Start the vSphere API from the config; `None` when off (`listen = ""`)
/// or when the default port is taken.
pub fn start(
    cfg: &Config,
    inventory: HvInventory,
    users: Arc<UserStore>,
    state_dir: &std::path::Path,
) -> anyhow::Result<Option<VsphereServer>> {
    let vc = &cfg.vsphere;
    let addr = vc.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    if addr.is_empty() {
        return Ok(None);
    }
    let listener = match http::bind(addr) {
        Ok(l) => l,
        Err(e) if vc.listen.is_none() => {
            log::warn!("default vSphere API address {addr} unavailable ({e}); set [vsphere] listen to serve it");
            return Ok(None);
        }
        Err(source) => {
            return Err(VsphereStartError::Bind {
                addr: addr.into(),
                source,
            }
            .into())
        }
    };
    let paths = match (&vc.certificate, &vc.key) {
        (Some(c), Some(k)) => http::tls::CertPaths {
            cert: cfg.resolve(c),
            key: cfg.resolve(k),
        },
        _ => http::tls::ensure_self_signed(
            &state_dir.join("tls"),
            "vsphere",
            &["localhost".into(), "127.0.0.1".into(), "::1".into()],
        )
        .map_err(|e| VsphereStartError::Tls(e.to_string()))?,
    };
    let tls =
        http::tls::server_config(&paths).map_err(|e| VsphereStartError::Tls(e.to_string()))?;
    let timeout = Duration::from_secs(vc.session_timeout.unwrap_or(DEFAULT_SESSION_TIMEOUT));
    let service = Service::new(&inventory, users, timeout);
    if service.open {
        log::warn!(
            "vsphere: no [[user]] configured: any user name and password log in as Administrator"
        );
    }
    let local = listener.local_addr().map_err(VsphereStartError::Thread)?;
    let hc = HttpConfig {
        limits: HttpLimits {
            max_body: guest::MAX_TRANSFER_BYTES + (1 << 20),
            idle_timeout: MAX_WAIT + Duration::from_secs(30),
            ..HttpLimits::default()
        },
        auth: None,
        realm: "hvsim vSphere".into(),
        local_only: false,
        name: "vsphere".into(),
    };
    http::spawn(
        listener,
        Some(tls),
        hc,
        Arc::new(VsphereHandler(service.clone())),
    )
    .map_err(VsphereStartError::Thread)?;
    log::info!(
        "vSphere API (vim25 {}) over HTTPS on {local}/sdk (certificate {})",
        model::API_VERSION,
        paths.cert.display()
    );
    Ok(Some(VsphereServer {
        service,
        addr: local,
    }))
}
