//! PropertyCollector: which objects a spec reaches (traversal specs,
//! container views), their properties, and the updates a filter reports.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cache::Entry;
use super::model::is_a;
use super::soap::Node;
use super::val::{write, Mor, Val};
use super::{mor_of, Fault, Outcome, Service, Session, MAX_PER_SESSION};

/// A container view.
#[derive(Debug, Clone)]
pub struct View {
    /// Where it looks.
    pub container: Mor,
    /// The types it shows (empty: all).
    pub types: Vec<String>,
    /// Whole subtree, or direct children only.
    pub recursive: bool,
    /// What it shows: found when it is made, as the inventory does not
    /// change while hvsim runs (VMs are configured, not created).
    pub members: Arc<Vec<Mor>>,
}

/// Which properties of which type.
#[derive(Debug, Clone)]
struct PropSpec {
    ty: String,
    all: bool,
    paths: Vec<String>,
}

/// A traversal step or a reference to a named one.
#[derive(Debug, Clone)]
enum Sel {
    Named(String),
    Traversal(Trav),
}

#[derive(Debug, Clone)]
struct Trav {
    name: String,
    ty: String,
    path: String,
    skip: bool,
    select: Vec<Sel>,
}

#[derive(Debug, Clone)]
struct ObjSpec {
    obj: Mor,
    skip: bool,
    select: Vec<Sel>,
}

/// A PropertyFilterSpec.
#[derive(Debug, Clone)]
pub struct Spec {
    props: Vec<PropSpec>,
    objects: Vec<ObjSpec>,
}

/// A property filter and what its collector last reported of it.
#[derive(Debug)]
pub struct Filter {
    /// The collector it belongs to.
    pub collector: String,
    /// Report only changed properties (always the case here).
    pub partial: bool,
    spec: Spec,
    sent: BTreeMap<Mor, BTreeMap<String, (String, Val)>>,
}

/// The most results one RetrievePropertiesEx call returns by default.
const DEFAULT_MAX_OBJECTS: usize = 100;
/// Deepest traversal followed.
const MAX_TRAVERSAL_DEPTH: usize = 32;

fn parse_sel(n: &Node) -> Sel {
    if n.child("path").is_some() || n.xsi_type() == Some("TraversalSpec") {
        Sel::Traversal(Trav {
            name: n.text_of("name").unwrap_or("").trim().to_string(),
            ty: n.text_of("type").unwrap_or("").trim().to_string(),
            path: n.text_of("path").unwrap_or("").trim().to_string(),
            skip: n.bool_of("skip", false),
            select: n.all("selectSet").map(parse_sel).collect(),
        })
    } else {
        Sel::Named(n.text_of("name").unwrap_or("").trim().to_string())
    }
}

/// Read a PropertyFilterSpec element.
pub fn parse_spec(n: &Node) -> Result<Spec, Fault> {
    let props = n
        .all("propSet")
        .map(|p| PropSpec {
            ty: p.text_of("type").unwrap_or("").trim().to_string(),
            all: p.bool_of("all", false),
            paths: p
                .all("pathSet")
                .map(|x| x.text.trim().to_string())
                .collect(),
        })
        .collect::<Vec<_>>();
    let objects = n
        .all("objectSet")
        .map(|o| {
            Ok(ObjSpec {
                obj: o
                    .child("obj")
                    .map(mor_of)
                    .ok_or_else(|| Fault::invalid_argument("specSet.objectSet.obj"))?,
                skip: o.bool_of("skip", false),
                select: o.all("selectSet").map(parse_sel).collect(),
            })
        })
        .collect::<Result<Vec<_>, Fault>>()?;
    if props.is_empty() || objects.is_empty() {
        return Err(Fault::invalid_argument("specSet"));
    }
    Ok(Spec { props, objects })
}

fn named(sels: &[Sel], out: &mut HashMap<String, Trav>) {
    for s in sels {
        if let Sel::Traversal(t) = s {
            if !t.name.is_empty() {
                out.entry(t.name.clone()).or_insert_with(|| t.clone());
            }
            named(&t.select, out);
        }
    }
}

/// The direct children of an entity, as a container view sees them.
fn children(svc: &Service, m: &Mor) -> Vec<Mor> {
    let fields: &[&str] = match m.ty.as_str() {
        "Folder" => &["childEntity"],
        "Datacenter" => &["vmFolder", "hostFolder", "datastoreFolder", "networkFolder"],
        "ComputeResource" | "ClusterComputeResource" => &["host", "resourcePool"],
        "ResourcePool" => &["resourcePool", "vm"],
        _ => return Vec::new(),
    };
    let Some(obj) = svc.object(None, m) else {
        return Vec::new();
    };
    fields
        .iter()
        .filter_map(|f| obj.field(f))
        .flat_map(Val::mors)
        .collect()
}

/// A view's members.
pub fn view_members(svc: &Service, v: &View) -> Vec<Mor> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<(Mor, usize)> = children(svc, &v.container)
        .into_iter()
        .map(|c| (c, 1))
        .collect();
    while let Some((m, depth)) = queue.pop_front() {
        if !seen.insert(m.clone()) {
            continue;
        }
        if v.types.is_empty() || v.types.iter().any(|t| is_a(&m.ty, t)) {
            out.push(m.clone());
        }
        if v.recursive && depth < MAX_TRAVERSAL_DEPTH {
            queue.extend(children(svc, &m).into_iter().map(|c| (c, depth + 1)));
        }
    }
    out
}

/// The objects a spec reaches, in discovery order.
fn reach(svc: &Service, s: &Session, spec: &Spec) -> Result<Vec<Mor>, Fault> {
    let mut names = HashMap::new();
    for o in &spec.objects {
        named(&o.select, &mut names);
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for o in &spec.objects {
        if !svc.exists(Some(s), &o.obj) {
            return Err(Fault::not_found(&o.obj));
        }
        walk(
            svc,
            s,
            &o.obj,
            &o.select,
            o.skip,
            &names,
            &mut seen,
            &mut (&mut out, HashSet::new()),
            0,
        );
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn walk(
    svc: &Service,
    s: &Session,
    m: &Mor,
    select: &[Sel],
    skip: bool,
    names: &HashMap<String, Trav>,
    seen: &mut BTreeSet<(Mor, String)>,
    out: &mut (&mut Vec<Mor>, HashSet<Mor>),
    depth: usize,
) {
    if !skip && out.1.insert(m.clone()) {
        out.0.push(m.clone());
    }
    if depth >= MAX_TRAVERSAL_DEPTH {
        return;
    }
    for sel in select {
        let t = match sel {
            Sel::Traversal(t) => t,
            Sel::Named(n) => match names.get(n) {
                Some(t) => t,
                None => continue,
            },
        };
        if !is_a(&m.ty, &t.ty) {
            continue;
        }
        if !seen.insert((m.clone(), format!("{}\u{0}{}", t.name, t.path))) {
            continue;
        }
        let next = match (m.ty.as_str(), t.path.as_str()) {
            // A view's members are kept with it.
            ("ContainerView", "view") => match s.views.get(&m.value) {
                Some(v) => Arc::clone(&v.members),
                None => continue,
            },
            _ => match svc.object(Some(s), m) {
                Some(obj) => Arc::new(obj.path(&t.path).map(Val::mors).unwrap_or_default()),
                None => continue,
            },
        };
        for child in next.iter() {
            walk(
                svc,
                s,
                child,
                &t.select,
                t.skip,
                names,
                seen,
                out,
                depth + 1,
            );
        }
    }
}

/// The properties a spec asks of a VM, from its cache entry.
fn vm_props(spec: &Spec, m: &Mor, e: &Entry) -> BTreeMap<String, Val> {
    let mut out = BTreeMap::new();
    for p in spec.props.iter().filter(|p| is_a(&m.ty, &p.ty)) {
        if p.all {
            if let Val::Obj(_, fields) = &*e.obj {
                for (k, _) in fields {
                    if let Some(v) = e.property(k) {
                        out.insert((*k).to_string(), v);
                    }
                }
            }
        }
        for path in &p.paths {
            if let Some(v) = e.property(path) {
                out.insert(path.clone(), v);
            }
        }
    }
    out
}

/// The properties a spec asks of one object: path → value. A VM's come
/// from the cache, already written as XML ([`super::cache`]).
fn props_of(svc: &Service, s: &Session, spec: &Spec, m: &Mor) -> Option<BTreeMap<String, Val>> {
    if !spec.props.iter().any(|p| is_a(&m.ty, &p.ty)) {
        return None;
    }
    if m.ty == "VirtualMachine" {
        let e = svc.vm_entry(&m.value)?;
        return Some(vm_props(spec, m, &e));
    }
    let mut out = BTreeMap::new();
    let obj = svc.object(Some(s), m)?;
    for p in spec.props.iter().filter(|p| is_a(&m.ty, &p.ty)) {
        if p.all {
            if let Val::Obj(_, fields) = &*obj {
                for (k, v) in fields {
                    out.insert((*k).to_string(), v.clone());
                }
            }
        }
        for path in &p.paths {
            if let Some(v) = obj.path(path) {
                out.insert(path.clone(), v.clone());
            }
        }
    }
    Some(out)
}

fn dynamic_property(name: &str, v: &Val) -> Val {
    Val::Obj(
        "DynamicProperty",
        vec![
            ("name", Val::s(name)),
            ("val", Val::Any(Box::new(v.clone()))),
        ],
    )
}

fn object_content(m: &Mor, props: &BTreeMap<String, Val>) -> Val {
    let mut fields = vec![("obj", Val::Mor(m.clone()))];
    if !props.is_empty() {
        fields.push((
            "propSet",
            Val::List(
                "DynamicProperty",
                props.iter().map(|(k, v)| dynamic_property(k, v)).collect(),
            ),
        ));
    }
    Val::Obj("ObjectContent", fields)
}

/// What a spec asks of a VirtualMachine, as a key for the VM's cached
/// ObjectContent: `None` when it asks nothing of VMs.
fn vm_spec_key(spec: &Spec) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    let mut matched = false;
    for p in spec.props.iter().filter(|p| is_a("VirtualMachine", &p.ty)) {
        matched = true;
        if p.all {
            // Not a path: property names have no spaces.
            parts.push(" all");
        }
        parts.extend(p.paths.iter().map(String::as_str));
    }
    parts.sort_unstable();
    parts.dedup();
    matched.then(|| parts.join("\n"))
}

/// ObjectContent for every reached object that a property spec matches;
/// a VM's whole ObjectContent comes written from its cache entry. The
/// session is locked only to find the objects and to read those it owns,
/// so clients sharing a session (a multi-threaded script) run side by side.
fn retrieve(svc: &Service, session: &Mutex<Session>, spec: &Spec) -> Result<Vec<Val>, Fault> {
    let mut out = Vec::new();
    let vm_key = vm_spec_key(spec);
    let reached = reach(svc, &session.lock().unwrap(), spec)?;
    for m in reached {
        if m.ty == "VirtualMachine" {
            let (Some(key), Some(e)) = (&vm_key, svc.vm_entry(&m.value)) else {
                continue;
            };
            let xml = e.content(key, || {
                let props = vm_props(spec, &m, &e);
                let mut xml = String::new();
                super::val::write(&mut xml, "c", &object_content(&m, &props), false);
                // Only the content: Val::Raw writes the element.
                let start = "<c xsi:type=\"ObjectContent\">".len();
                xml[start..xml.len() - "</c>".len()].to_string()
            });
            out.push(Val::Raw("ObjectContent", xml));
            continue;
        }
        let Some(props) = props_of(svc, &session.lock().unwrap(), spec, &m) else {
            continue;
        };
        out.push(object_content(&m, &props));
    }
    Ok(out)
}

fn page(s: &mut Session, mut objects: VecDeque<Val>, max: usize) -> Option<Val> {
    if objects.is_empty() {
        return None;
    }
    let rest = objects.split_off(max.min(objects.len()));
    let mut fields = Vec::new();
    if !rest.is_empty() {
        let token = s.next("token");
        if s.pending.len() >= MAX_PER_SESSION {
            // Drop the oldest unread result set rather than grow without bound.
            if let Some(k) = s.pending.keys().next().cloned() {
                s.pending.remove(&k);
            }
        }
        s.pending.insert(token.clone(), rest);
        fields.push(("token", Val::s(token)));
    }
    fields.push((
        "objects",
        Val::List("ObjectContent", objects.into_iter().collect()),
    ));
    Some(Val::Obj("RetrieveResult", fields))
}

fn max_objects(op: &Node) -> usize {
    op.child("options")
        .and_then(|o| o.text_of("maxObjects"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_OBJECTS)
}

/// PropertyCollector methods.
pub(super) fn dispatch(
    svc: &Service,
    session: &Arc<Mutex<Session>>,
    this: &Mor,
    op: &Node,
) -> Outcome {
    let method = op.name.as_str();
    match method {
        "RetrievePropertiesEx" | "RetrieveProperties" => {
            let specs = op
                .all("specSet")
                .map(parse_spec)
                .collect::<Result<Vec<_>, _>>()?;
            if specs.is_empty() {
                return Err(Fault::invalid_argument("specSet"));
            }
            let mut all = VecDeque::new();
            for spec in &specs {
                all.extend(retrieve(svc, session, spec)?);
            }
            if method == "RetrieveProperties" {
                return Ok(Some(Val::List("ObjectContent", all.into_iter().collect())));
            }
            Ok(page(&mut session.lock().unwrap(), all, max_objects(op)))
        }
        "ContinueRetrievePropertiesEx" => {
            let token = op.text_of("token").unwrap_or("").trim().to_string();
            let mut s = session.lock().unwrap();
            let rest = s
                .pending
                .remove(&token)
                .ok_or_else(|| Fault::invalid_argument("token"))?;
            Ok(page(&mut s, rest, DEFAULT_MAX_OBJECTS))
        }
        "CancelRetrievePropertiesEx" => {
            let token = op.text_of("token").unwrap_or("").trim().to_string();
            session.lock().unwrap().pending.remove(&token);
            Ok(None)
        }
        "CreatePropertyCollector" => {
            let mut s = session.lock().unwrap();
            let id = s.next("pc");
            Ok(Some(Val::mor("PropertyCollector", &id)))
        }
        "DestroyPropertyCollector" => {
            let mut s = session.lock().unwrap();
            s.filters.retain(|_, f| f.collector != this.value);
            Ok(None)
        }
        "CreateFilter" => {
            let spec = parse_spec(
                op.child("spec")
                    .ok_or_else(|| Fault::invalid_argument("spec"))?,
            )?;
            let partial = op.bool_of("partialUpdates", false);
            let mut s = session.lock().unwrap();
            // Fail now on objects that do not exist, as hostd does.
            reach(svc, &s, &spec)?;
            if s.filters.len() >= MAX_PER_SESSION {
                return Err(Fault::new(
                    "InvalidState",
                    "too many property filters in this session: destroy unused ones",
                ));
            }
            let id = s.next("filter");
            s.filters.insert(
                id.clone(),
                Filter {
                    collector: this.value.clone(),
                    partial,
                    spec,
                    sent: BTreeMap::new(),
                },
            );
            Ok(Some(Val::mor("PropertyFilter", &id)))
        }
        "DestroyFilter" | "DestroyPropertyFilter" => {
            let mut s = session.lock().unwrap();
            s.filters
                .remove(&this.value)
                .ok_or_else(|| Fault::not_found(this))?;
            Ok(None)
        }
        "CancelWaitForUpdates" => Ok(None),
        "WaitForUpdatesEx" | "WaitForUpdates" | "CheckForUpdates" => {
            let version = op.text_of("version").unwrap_or("").trim().to_string();
            let max = svc.max_wait;
            let wait = match method {
                "CheckForUpdates" => Duration::ZERO,
                "WaitForUpdates" => max,
                _ => match op
                    .child("options")
                    .and_then(|o| o.text_of("maxWaitSeconds"))
                    .map(|v| v.trim().parse::<u64>())
                {
                    None => max,
                    Some(Ok(secs)) => Duration::from_secs(secs).min(max),
                    Some(Err(_)) => return Err(Fault::invalid_argument("options.maxWaitSeconds")),
                },
            };
            wait_for_updates(svc, session, &this.value, &version, wait, method)
        }
        _ => Err(Fault::new(
            "MethodNotFound",
            format!("{method} is not supported"),
        )),
    }
}

fn serialize(v: &Val) -> String {
    let mut s = String::new();
    write(&mut s, "v", v, true);
    s
}

/// One round of a collector's filters: the updates since what was sent
/// last (marking them sent), or None when nothing changed.
fn updates(
    svc: &Service,
    s: &mut Session,
    collector: &str,
    reset: bool,
) -> Result<Option<Vec<Val>>, Fault> {
    let mut filter_updates = Vec::new();
    let ids: Vec<String> = s
        .filters
        .iter()
        .filter(|(_, f)| f.collector == collector)
        .map(|(k, _)| k.clone())
        .collect();
    for id in ids {
        let spec = s.filters[&id].spec.clone();
        let mut now: BTreeMap<Mor, BTreeMap<String, (String, Val)>> = BTreeMap::new();
        for m in reach(svc, s, &spec).unwrap_or_default() {
            if let Some(props) = props_of(svc, s, &spec, &m) {
                now.insert(
                    m,
                    props
                        .into_iter()
                        .map(|(k, v)| (k, (serialize(&v), v)))
                        .collect(),
                );
            }
        }
        let f = s.filters.get_mut(&id).expect("filter");
        if reset {
            f.sent.clear();
        }
        let mut objs = Vec::new();
        for (m, props) in &now {
            match f.sent.get(m) {
                None => {
                    let changes = props.iter().map(|(k, (_, v))| change(k, Some(v))).collect();
                    objs.push(object_update("enter", m, changes));
                }
                Some(old) => {
                    let mut changes: Vec<Val> = props
                        .iter()
                        .filter(|(k, (x, _))| old.get(*k).map(|(ox, _)| ox) != Some(x))
                        .map(|(k, (_, v))| change(k, Some(v)))
                        .collect();
                    changes.extend(
                        old.keys()
                            .filter(|k| !props.contains_key(*k))
                            .map(|k| change(k, None)),
                    );
                    if !changes.is_empty() {
                        objs.push(object_update("modify", m, changes));
                    }
                }
            }
        }
        for m in f.sent.keys().filter(|m| !now.contains_key(*m)) {
            objs.push(object_update("leave", m, Vec::new()));
        }
        f.sent = now;
        if !objs.is_empty() {
            filter_updates.push(Val::Obj(
                "PropertyFilterUpdate",
                vec![
                    ("filter", Val::mor("PropertyFilter", &id)),
                    ("objectSet", Val::List("ObjectUpdate", objs)),
                ],
            ));
        }
    }
    Ok((!filter_updates.is_empty()).then_some(filter_updates))
}

fn change(name: &str, v: Option<&Val>) -> Val {
    let mut f = vec![
        ("name", Val::s(name)),
        ("op", Val::Enum("PropertyChangeOp", "assign".into())),
    ];
    if let Some(v) = v {
        f.push(("val", Val::Any(Box::new(v.clone()))));
    }
    Val::Obj("PropertyChange", f)
}

fn object_update(kind: &str, m: &Mor, changes: Vec<Val>) -> Val {
    let mut f = vec![
        ("kind", Val::Enum("ObjectUpdateKind", kind.into())),
        ("obj", Val::Mor(m.clone())),
    ];
    if !changes.is_empty() {
        f.push(("changeSet", Val::List("PropertyChange", changes)));
    }
    Val::Obj("ObjectUpdate", f)
}

fn wait_for_updates(
    svc: &Service,
    session: &Arc<Mutex<Session>>,
    collector: &str,
    version: &str,
    wait: Duration,
    method: &str,
) -> Outcome {
    let deadline = Instant::now() + wait;
    let mut reset = version.is_empty();
    let mut seen_revision = None;
    loop {
        let revision = svc.revision();
        if seen_revision != Some(revision) || reset {
            seen_revision = Some(revision);
            let mut s = session.lock().unwrap();
            if let Some(filter_set) = updates(svc, &mut s, collector, reset)? {
                s.version += 1;
                let v = s.version.to_string();
                return Ok(Some(Val::Obj(
                    "UpdateSet",
                    vec![
                        ("version", Val::s(v)),
                        ("filterSet", Val::List("PropertyFilterUpdate", filter_set)),
                        ("truncated", Val::Bool(false)),
                    ],
                )));
            }
            reset = false;
        }
        if Instant::now() >= deadline {
            // WaitForUpdatesEx answers nothing on a timeout; the legacy
            // calls answer an empty update set with the same version.
            return Ok(match method {
                "WaitForUpdatesEx" => None,
                _ => {
                    let v = session.lock().unwrap().version.to_string();
                    Some(Val::Obj(
                        "UpdateSet",
                        vec![("version", Val::s(v)), ("truncated", Val::Bool(false))],
                    ))
                }
            });
        }
        // Guest reports and power changes move the revision; a short poll
        // keeps the wait cheap without a wake-up channel per VM.
        std::thread::sleep(
            Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now())),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::cache::tests::service;
    use super::*;
    use crate::http::Request;
    use std::time::SystemTime;

    fn post(svc: &Service, cookie: Option<&str>, body: &str) -> crate::http::Response {
        let env = format!(
            "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
        );
        svc.answer(&Request {
            method: "POST".into(),
            target: "/sdk".into(),
            headers: cookie
                .map(|c| vec![("Cookie".into(), c.to_string())])
                .unwrap_or_default(),
            body: env.into_bytes(),
            peer: "127.0.0.1:1".parse().unwrap(),
            tls: true,
            principal: None,
            takeover: Default::default(),
        })
    }

    fn between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
        let a = s.find(open).unwrap() + open.len();
        &s[a..a + s[a..].find(close).unwrap()]
    }

    /// RetrievePropertiesEx over a container view: the cached answer (cold
    /// and warm) is the one written from freshly built VMs.
    #[test]
    fn cached_object_contents_equal_fresh_ones() {
        let (svc, vms, _dir) = service();
        vms[0].set_var("guestinfo.a", b"<&>").unwrap();
        let login = post(&svc, None, "<Login xmlns=\"urn:vim25\"><_this type=\"SessionManager\">ha-sessionmgr</_this><userName>u</userName><password>p</password></Login>");
        let cookie = login
            .headers
            .iter()
            .find(|(k, _)| k == "Set-Cookie")
            .map(|(_, v)| v.split(';').next().unwrap().to_string())
            .unwrap();
        let view = post(&svc, Some(&cookie), "<CreateContainerView xmlns=\"urn:vim25\"><_this type=\"ViewManager\">ViewManager</_this><container type=\"Folder\">ha-folder-root</container><type>VirtualMachine</type><recursive>true</recursive></CreateContainerView>");
        let view = String::from_utf8(view.body).unwrap();
        let view = between(&view, "<returnval type=\"ContainerView\">", "</returnval>");
        let paths = [
            "runtime.powerState",
            "name",
            "config.extraConfig",
            "guest.net",
            "nope",
        ];
        let path_xml: String = paths
            .iter()
            .map(|p| format!("<pathSet>{p}</pathSet>"))
            .collect();
        let req = format!("<RetrievePropertiesEx xmlns=\"urn:vim25\"><_this type=\"PropertyCollector\">ha-property-collector</_this><specSet><propSet><type>VirtualMachine</type>{path_xml}</propSet><objectSet><obj type=\"ContainerView\">{view}</obj><skip>true</skip><selectSet xsi:type=\"TraversalSpec\"><name>v</name><type>ContainerView</type><path>view</path><skip>false</skip></selectSet></objectSet></specSet><options/></RetrievePropertiesEx>");
        // What the answer must hold: each VM's ObjectContent written from
        // a tree built now (none of these paths depends on the time).
        let fresh = || {
            let mut want = String::new();
            for e in &svc.inventory().vms {
                let obj = svc.vm_object_for_test(e, SystemTime::now());
                let props: BTreeMap<String, Val> = paths
                    .iter()
                    .filter_map(|p| obj.path(p).map(|v| (p.to_string(), v.clone())))
                    .collect();
                let m = Mor::new("VirtualMachine", &e.id);
                write(&mut want, "objects", &object_content(&m, &props), false);
            }
            want
        };
        let mut want = fresh();
        assert!(want.contains("&lt;&amp;&gt;"));
        for round in 0..3 {
            if round == 2 {
                // Changed: rebuilt, and still equal to a fresh rendering.
                vms[2].set_var("guestinfo.b", b"x").unwrap();
                let before = want;
                want = fresh();
                assert_ne!(before, want);
            }
            let got = post(&svc, Some(&cookie), &req);
            assert_eq!(got.status, 200);
            let got = String::from_utf8(got.body).unwrap();
            let objects = between(
                &got,
                "<returnval xsi:type=\"RetrieveResult\">",
                "</returnval>",
            );
            assert_eq!(objects, want, "round {round}");
        }
    }
}
