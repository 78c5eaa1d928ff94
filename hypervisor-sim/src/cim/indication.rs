//! Indications (DSP1054): filters, listener destinations and subscriptions
//! created in `root/interop`, and instance indications delivered to CIM-XML
//! listeners (DSP0200 export messages):
//!
//! - `CIM_InstModification` (with `PreviousInstance`) when a VM's
//!   CIM_ComputerSystem (power state), CIM_OperatingSystem or
//!   CIM_DNSProtocolEndpoint (guest info), HVSIM_GuestTools (tools status)
//!   or one of its CIM_IPProtocolEndpoint instances changes;
//! - `CIM_InstCreation` / `CIM_InstDeletion` when a CIM_IPProtocolEndpoint
//!   appears or disappears. An endpoint is keyed by `<MAC>/<address>`, so
//!   when the guest agent reports a new address (or drops one) that is a
//!   new (or deleted) endpoint, not a modified one; a modification is a
//!   change of an address's prefix length or origin. A deletion's
//!   `SourceInstance` is the endpoint's last state.
//!
//! A filter selects an indication when the indication's class is its query
//! class or a subclass of it: `FROM CIM_InstModification` gets only
//! modifications (so a subscriber that wants to follow address changes
//! subscribes to `CIM_InstCreation` and `CIM_InstDeletion` too, or to
//! `CIM_InstIndication` for all three), and the `WHERE` clause (e.g.
//! `SourceInstance ISA CIM_IPProtocolEndpoint`) is evaluated on the
//! indication.
//!
//! Subscriptions live in memory: a restart of hvsim drops them, as it does
//! transient subscriptions on a real CIMOM. Delivery runs on one thread per
//! server, in event order; a listener that does not answer within
//! [`DELIVERY_TIMEOUT`] loses that indication (logged), and never stalls
//! the VM or the CIM operations.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::provider::{self, path_of, Snapshot, VmView, NS_CIMV2, NS_INTEROP};
use super::request::{code, CimError};
use super::schema::Schema;
use super::value::{datetime, Instance, ObjectPath, Value};
use super::wql;
use crate::vm::{Vm, VmEvent};

/// How long one delivery may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most filters, destinations and subscriptions together.
pub const MAX_DYNAMIC: usize = 256;

const FILTER: &str = "CIM_IndicationFilter";
const DEST: &str = "CIM_ListenerDestinationCIMXML";
const SUB: &str = "CIM_IndicationSubscription";
const MODIFICATION: &str = "CIM_InstModification";
const CREATION: &str = "CIM_InstCreation";
const DELETION: &str = "CIM_InstDeletion";

fn err(c: u32, m: impl Into<String>) -> CimError {
    CimError::new(c, m)
}

/// Subscription state and the delivery queue.
pub struct Indications {
    dynamic: Mutex<Vec<Instance>>,
    outbox: Mutex<Sender<(String, String)>>,
    seq: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Indications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indications").finish_non_exhaustive()
    }
}

impl Indications {
    /// A new store with its delivery thread.
    pub fn new() -> Arc<Indications> {
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = std::thread::Builder::new()
            .name("cim-indications".into())
            .spawn(move || deliver_loop(rx));
        Arc::new(Indications {
            dynamic: Mutex::new(Vec::new()),
            outbox: Mutex::new(tx),
            seq: Default::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.dynamic.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The filters, destinations and subscriptions.
    pub fn instances(&self) -> Vec<Instance> {
        self.lock().clone()
    }

    /// CreateInstance of a filter, destination or subscription.
    pub fn create(
        &self,
        snap: &Snapshot,
        bit: u8,
        mut inst: Instance,
    ) -> Result<ObjectPath, CimError> {
        let schema = snap.schema;
        if bit != super::schema::INTEROP {
            return Err(err(
                code::NOT_SUPPORTED,
                "instances can be created only in root/interop (indication subscriptions)",
            ));
        }
        let class = schema
            .get(&inst.class)
            .map(|c| c.name)
            .ok_or_else(|| err(code::INVALID_CLASS, "unknown class"))?;
        let set_default = |i: &mut Instance, k: &str, v: Value| {
            if matches!(i.get(k), Value::Null) {
                i.set(k, v);
            }
        };
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match class {
            FILTER | DEST => {
                set_default(
                    &mut inst,
                    "SystemCreationClassName",
                    Value::s("CIM_ComputerSystem"),
                );
                set_default(&mut inst, "SystemName", Value::s(snap.host));
                inst.set("CreationClassName", Value::s(class));
                set_default(&mut inst, "Name", Value::s(format!("hvsim:{n}")));
            }
            SUB => {}
            _ => {
                return Err(err(
                    code::NOT_SUPPORTED,
                    format!("instances of {class} cannot be created"),
                ))
            }
        }
        inst.class = class.to_string();
        let mut dynamic = self.lock();
        match class {
            FILTER => {
                let lang = inst.get("QueryLanguage").text();
                if !lang.eq_ignore_ascii_case("WQL") {
                    return Err(err(
                        code::QUERY_LANGUAGE_NOT_SUPPORTED,
                        format!("query language {lang:?} is not supported; use WQL"),
                    ));
                }
                let q = wql::parse(&inst.get("Query").text())
                    .map_err(|e| err(code::INVALID_QUERY, e.to_string()))?;
                if !schema
                    .get(&q.class)
                    .is_some_and(|c| schema.is_a(c.name, "CIM_Indication"))
                {
                    return Err(err(
                        code::INVALID_QUERY,
                        format!("{} is not an indication class", q.class),
                    ));
                }
                set_default(&mut inst, "SourceNamespaces", Value::strs(&[NS_CIMV2]));
                set_default(
                    &mut inst,
                    "IndividualSubscriptionSupported",
                    Value::Bool(true),
                );
            }
            DEST => {
                let d = inst.get("Destination").text();
                parse_http_url(&d).ok_or_else(|| {
                    err(
                        code::INVALID_PARAMETER,
                        format!("Destination {d:?} must be an http://host:port[/path] URL"),
                    )
                })?;
                set_default(&mut inst, "PersistenceType", Value::Uint(3));
                set_default(&mut inst, "Protocol", Value::Uint(2));
            }
            _ => {
                for (k, want) in [("Filter", FILTER), ("Handler", "CIM_ListenerDestination")] {
                    let Value::Ref(r) = inst.get(k) else {
                        return Err(err(code::INVALID_PARAMETER, format!("{k} is required")));
                    };
                    let found = dynamic.iter().any(|i| {
                        schema.is_a(&i.class, want)
                            && path_of(schema, i, NS_INTEROP).same_instance(&strip_ns(r))
                    });
                    if !found {
                        return Err(err(
                            code::INVALID_PARAMETER,
                            format!("{k} {r} does not exist"),
                        ));
                    }
                }
                set_default(&mut inst, "SubscriptionState", Value::Uint(2));
                set_default(&mut inst, "OnFatalErrorPolicy", Value::Uint(2));
                inst.set(
                    "SubscriptionStartTime",
                    Value::s(datetime(std::time::SystemTime::now())),
                );
            }
        }
        let path = path_of(schema, &inst, NS_INTEROP);
        if dynamic
            .iter()
            .any(|i| path_of(schema, i, NS_INTEROP).same_instance(&path))
        {
            return Err(err(code::ALREADY_EXISTS, format!("{path} exists")));
        }
        if dynamic.len() >= MAX_DYNAMIC {
            return Err(err(
                code::SERVER_LIMITS_EXCEEDED,
                format!("at most {MAX_DYNAMIC} filters, destinations and subscriptions"),
            ));
        }
        log::info!("cim: created {path}");
        dynamic.push(inst);
        Ok(path)
    }

    /// DeleteInstance of a filter, destination or subscription.
    pub fn delete(&self, snap: &Snapshot, path: &ObjectPath) -> Result<(), CimError> {
        let schema = snap.schema;
        let mut dynamic = self.lock();
        let want = strip_ns(path);
        let Some(pos) = dynamic
            .iter()
            .position(|i| path_of(schema, i, NS_INTEROP).same_instance(&want))
        else {
            return Err(err(
                code::NOT_SUPPORTED,
                format!("{} instances cannot be deleted", path.class),
            ));
        };
        if dynamic[pos].class != SUB {
            let used = dynamic.iter().any(|s| {
                s.class == SUB
                    && ["Filter", "Handler"].iter().any(|k| match s.get(k) {
                        Value::Ref(r) => strip_ns(r).same_instance(&want),
                        _ => false,
                    })
            });
            if used {
                return Err(err(
                    code::FAILED,
                    format!("{path} is used by a subscription; delete the subscription first"),
                ));
            }
        }
        dynamic.remove(pos);
        log::info!("cim: deleted {path}");
        Ok(())
    }

    /// Deliver an indication of class `class` (an instance indication) about
    /// `source` (previously `previous`, for a modification) to every
    /// subscription whose filter selects it.
    fn publish(
        &self,
        schema: &Schema,
        host: &str,
        class: &str,
        source: Instance,
        previous: Option<Instance>,
    ) {
        let dynamic = self.lock();
        let subs: Vec<&Instance> = dynamic
            .iter()
            .filter(|i| i.class == SUB && i.get("SubscriptionState") == &Value::Uint(2))
            .collect();
        if subs.is_empty() {
            return;
        }
        let find = |r: &Value| match r {
            Value::Ref(r) => {
                let r = strip_ns(r);
                dynamic
                    .iter()
                    .find(|i| path_of(schema, i, NS_INTEROP).same_instance(&r))
            }
            _ => None,
        };
        let id = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let model_path = path_of(schema, &source, NS_CIMV2).to_string();
        for s in subs {
            let (Some(f), Some(d)) = (find(s.get("Filter")), find(s.get("Handler"))) else {
                continue;
            };
            let Ok(q) = wql::parse(&f.get("Query").text()) else {
                continue;
            };
            if !schema.is_a(class, &q.class) {
                continue;
            }
            let mut ind = Instance::new(class)
                .with("IndicationIdentifier", Value::s(format!("hvsim:{id}")))
                .with(
                    "IndicationTime",
                    Value::s(datetime(std::time::SystemTime::now())),
                )
                .with("IndicationFilterName", f.get("Name").clone())
                .with("SourceInstance", Value::Instance(Box::new(source.clone())));
            if class == MODIFICATION {
                ind.set(
                    "PreviousInstance",
                    previous
                        .clone()
                        .map_or(Value::Null, |p| Value::Instance(Box::new(p))),
                );
            }
            let ind = ind
                .with("SourceInstanceModelPath", Value::s(&model_path))
                .with("SourceInstanceHost", Value::s(host))
                .with("PerceivedSeverity", Value::Uint(2));
            if q.cond.as_ref().is_some_and(|e| !wql::eval(e, &ind, schema)) {
                continue;
            }
            let mut xml = String::new();
            super::encode::instance(&mut xml, schema, &ind, &Default::default(), None);
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"{id}\" PROTOCOLVERSION=\"1.0\"><SIMPLEEXPREQ><EXPMETHODCALL NAME=\"ExportIndication\"><EXPPARAMVALUE NAME=\"NewIndication\">{xml}</EXPPARAMVALUE></EXPMETHODCALL></SIMPLEEXPREQ></MESSAGE></CIM>\n"
            );
            let url = d.get("Destination").text();
            let _ = self
                .outbox
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send((url, body));
        }
    }

    /// Watch the events of `vms` and publish indications for them, on one
    /// thread for all of them.
    pub fn watch(self: &Arc<Self>, schema: Arc<Schema>, host: String, vms: Vec<Arc<Vm>>) {
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, vm) in vms.iter().enumerate() {
            vm.subscribe_tagged(i, tx.clone());
        }
        drop(tx);
        let me = self.clone();
        let _ = std::thread::Builder::new()
            .name("cim-watch".into())
            .spawn(move || {
                type Seen = (HashMap<&'static str, Instance>, BTreeMap<String, Instance>);
                let seen = |vm: &Vm| -> Seen {
                    let view = VmView::of(vm);
                    (
                        tracked(&view).into_iter().collect(),
                        endpoints(&schema, &view),
                    )
                };
                let mut last: Vec<Seen> = vms.iter().map(|vm| seen(vm)).collect();
                for (i, ev) in rx {
                    let (Some(vm), Some((last, last_ips))) = (vms.get(i), last.get_mut(i)) else {
                        continue;
                    };
                    let view = VmView::of(vm);
                    let force = !matches!(ev, VmEvent::GuestInfoChanged);
                    let kinds: &[&str] = match ev {
                        VmEvent::GuestInfoChanged => &["os", "dns"],
                        VmEvent::ToolsStatus { .. } => &["tools"],
                        _ => &["cs"],
                    };
                    for (k, now) in tracked(&view) {
                        if !kinds.contains(&k) {
                            continue;
                        }
                        let prev = last.insert(k, now.clone());
                        if !force && prev.as_ref() == Some(&now) {
                            continue;
                        }
                        me.publish(&schema, &host, MODIFICATION, now, prev);
                    }
                    // IP endpoints are compared after every event (an
                    // address list can change with guest info or power).
                    let ips = endpoints(&schema, &view);
                    for (class, now, prev) in endpoint_changes(last_ips, &ips) {
                        me.publish(&schema, &host, class, now, prev);
                    }
                    *last_ips = ips;
                }
            });
    }
}

/// A VM's IP endpoints by object path.
fn endpoints(schema: &Schema, v: &VmView) -> BTreeMap<String, Instance> {
    provider::ip_endpoint_instances(v)
        .into_iter()
        .map(|i| (path_of(schema, &i, NS_CIMV2).to_string(), i))
        .collect()
}

/// The indications that take endpoint set `before` to `after`: deletions,
/// then modifications, then creations, each in path order. Each is
/// (class, SourceInstance, PreviousInstance).
fn endpoint_changes(
    before: &BTreeMap<String, Instance>,
    after: &BTreeMap<String, Instance>,
) -> Vec<(&'static str, Instance, Option<Instance>)> {
    let mut out: Vec<_> = before
        .iter()
        .filter(|(k, _)| !after.contains_key(*k))
        .map(|(_, i)| (DELETION, i.clone(), None))
        .collect();
    for (k, now) in after {
        if let Some(prev) = before.get(k).filter(|p| *p != now) {
            out.push((MODIFICATION, now.clone(), Some(prev.clone())));
        }
    }
    out.extend(
        after
            .iter()
            .filter(|(k, _)| !before.contains_key(*k))
            .map(|(_, i)| (CREATION, i.clone(), None)),
    );
    out
}

fn tracked(v: &VmView) -> Vec<(&'static str, Instance)> {
    vec![
        ("cs", provider::vm_instance(v)),
        ("os", provider::os_instance(v)),
        ("dns", provider::dns_instance(v)),
        ("tools", provider::tools_instance(v)),
    ]
}

fn strip_ns(p: &ObjectPath) -> ObjectPath {
    let mut p = p.clone();
    p.namespace = None;
    p.host = None;
    p
}

/// Split `http://host:port/path` into address and path.
pub fn parse_http_url(u: &str) -> Option<(String, String)> {
    let rest = u.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if hostport.is_empty() {
        return None;
    }
    let hp = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !hostport.ends_with(']')
    {
        hostport.to_string()
    } else {
        format!("{hostport}:5988")
    };
    Some((hp, path.to_string()))
}

fn deliver_loop(rx: Receiver<(String, String)>) {
    for (url, body) in rx {
        match deliver(&url, &body) {
            Ok(200) => log::debug!("cim: indication delivered to {url}"),
            Ok(s) => log::warn!("cim: listener {url} answered HTTP {s}"),
            Err(e) => log::warn!("cim: cannot deliver an indication to {url}: {e}"),
        }
    }
}

fn deliver(url: &str, body: &str) -> std::io::Result<u16> {
    let (hp, path) = parse_http_url(url)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad URL"))?;
    let addr = hp
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, DELIVERY_TIMEOUT)?;
    s.set_read_timeout(Some(DELIVERY_TIMEOUT))?;
    s.set_write_timeout(Some(DELIVERY_TIMEOUT))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {hp}\r\nContent-Type: application/xml; charset=\"utf-8\"\r\nCIMExport: MethodRequest\r\nCIMExportMethod: ExportIndication\r\nCIMProtocolVersion: 1.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut r = BufReader::new(s.take(64 << 10));
    let mut status = String::new();
    r.read_line(&mut status)?;
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP status"))?;
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:5000"),
            Some(("127.0.0.1:5000".into(), "/".into()))
        );
        assert_eq!(
            parse_http_url("http://h/x"),
            Some(("h:5988".into(), "/x".into()))
        );
        assert_eq!(parse_http_url("https://h"), None);
        assert_eq!(parse_http_url("http://"), None);
    }

    #[test]
    fn endpoint_changes_are_deletions_modifications_creations() {
        let ep = |name: &str, prefix: u64| {
            (
                name.to_string(),
                Instance::new("CIM_IPProtocolEndpoint")
                    .with("Name", Value::s(name))
                    .with("PrefixLength", Value::Uint(prefix)),
            )
        };
        let before: BTreeMap<_, _> = [ep("m/a", 24), ep("m/b", 24), ep("m/c", 24)].into();
        let after: BTreeMap<_, _> = [ep("m/b", 25), ep("m/c", 24), ep("m/d", 24)].into();
        let got: Vec<(&str, String, Option<Value>)> = endpoint_changes(&before, &after)
            .into_iter()
            .map(|(c, i, p)| {
                (
                    c,
                    i.get("Name").text(),
                    p.map(|p| p.get("PrefixLength").clone()),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (DELETION, "m/a".to_string(), None),
                (MODIFICATION, "m/b".to_string(), Some(Value::Uint(24))),
                (CREATION, "m/d".to_string(), None),
            ]
        );
        assert!(endpoint_changes(&after, &after).is_empty());
    }
}
