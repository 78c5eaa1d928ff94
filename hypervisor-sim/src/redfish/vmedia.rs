//! Virtual media slots {Cd, Usb} per VM: InsertMedia opens the image on a
//! worker thread under a Task, exports it over NBD as `VM/SLOT`; EjectMedia
//! and the inactivity reaper take it away.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use super::error::{not_found, RedfishError};
use super::{json_response, success, RfResult, Service};
use crate::media::{self, Medium, OpenOptions};
use crate::vm::Vm;

/// Longest image URL accepted.
pub const MAX_URL: usize = 2048;
/// Completed tasks kept (oldest dropped first).
pub const MAX_TASKS: usize = 64;

/// What a slot holds.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The image URL while inserted (or being inserted).
    pub image: Option<String>,
    /// The open medium once inserted.
    pub medium: Option<Arc<Medium>>,
    /// WriteProtected.
    pub write_protected: bool,
    /// VerifyCertificate for https images.
    pub verify_certificate: bool,
    /// TransferProtocolType of the image.
    pub protocol: Option<&'static str>,
    /// Image server user name.
    pub user: Option<String>,
    /// The insert task under way.
    pub inserting: Option<u32>,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            image: None,
            medium: None,
            write_protected: true,
            verify_certificate: true,
            protocol: None,
            user: None,
            inserting: None,
        }
    }
}

/// A Redfish Task.
#[derive(Debug, Clone)]
pub struct Task {
    /// Id.
    pub id: u32,
    /// What it does.
    pub name: String,
    /// New, Running, Completed or Exception.
    pub state: &'static str,
    /// Start time (ISO 8601).
    pub start: String,
    /// End time.
    pub end: Option<String>,
    /// Messages (Base registry or our GeneralError detail).
    pub messages: Vec<Value>,
}

#[derive(Debug, Default)]
struct Inner {
    slots: BTreeMap<(String, &'static str), Slot>,
    tasks: BTreeMap<u32, Task>,
    next_task: u32,
}

/// Slots and tasks of every VM.
#[derive(Debug)]
pub struct MediaState {
    inner: Mutex<Inner>,
}

/// The canonical slot name, or 404.
pub fn slot_of(s: &str) -> Result<&'static str, RedfishError> {
    match s {
        "Cd" => Ok("Cd"),
        "Usb" => Ok("Usb"),
        _ => Err(not_found("VirtualMedia", s)),
    }
}

/// The VM named in a VirtualMedia URI.
pub fn vm_of(uri: &str) -> Option<String> {
    let segs: Vec<&str> = uri.split('/').collect();
    match segs.as_slice() {
        ["", "redfish", "v1", "Managers", id, ..] => id.strip_suffix("-bmc").map(String::from),
        ["", "redfish", "v1", "Systems", vm, ..] => Some(vm.to_string()),
        _ => None,
    }
}

/// ISO 8601 UTC time of `t` (Howard Hinnant's civil-from-days).
pub fn iso8601(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl MediaState {
    /// Empty slots for every VM.
    pub fn new(inv: &crate::control::Inventory) -> MediaState {
        let mut inner = Inner {
            next_task: 1,
            ..Default::default()
        };
        for n in inv.keys() {
            for s in ["Cd", "Usb"] {
                inner.slots.insert((n.clone(), s), Slot::default());
            }
        }
        MediaState {
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot's state.
    pub fn slot(&self, vm: &str, slot: &'static str) -> Slot {
        self.lock()
            .slots
            .get(&(vm.to_string(), slot))
            .cloned()
            .unwrap_or_default()
    }

    /// Task ids.
    pub fn task_ids(&self) -> Vec<u32> {
        self.lock().tasks.keys().copied().collect()
    }

    /// A task's rendering.
    pub fn task_json(&self, id: &str) -> Option<Value> {
        let id: u32 = id.parse().ok()?;
        self.lock().tasks.get(&id).map(task_json)
    }

    /// PATCH a slot: VerifyCertificate (while empty).
    pub fn patch(
        &self,
        vm: &str,
        slot: &str,
        body: &Map<String, Value>,
    ) -> Result<(), RedfishError> {
        let slot = slot_of(slot)?;
        if body.is_empty() {
            return Err(RedfishError::new(400, "NoOperation", &[]));
        }
        let mut verify = None;
        for (k, v) in body {
            match k.as_str() {
                "VerifyCertificate" => {
                    verify = Some(v.as_bool().ok_or_else(|| {
                        RedfishError::new(400, "PropertyValueTypeError", &[&v.to_string(), k])
                    })?)
                }
                "Image"
                | "Inserted"
                | "WriteProtected"
                | "TransferMethod"
                | "TransferProtocolType"
                | "ImageName"
                | "MediaTypes"
                | "ConnectedVia"
                | "Id"
                | "Name"
                | "Status"
                | "Actions"
                | "UserName"
                | "Password"
                | "Oem"
                | "@odata.id"
                | "@odata.type" => return Err(RedfishError::new(400, "PropertyNotWritable", &[k])),
                _ => return Err(RedfishError::new(400, "PropertyUnknown", &[k])),
            }
        }
        let mut g = self.lock();
        let s = g
            .slots
            .get_mut(&(vm.to_string(), slot))
            .ok_or_else(|| not_found("VirtualMedia", slot))?;
        if let Some(v) = verify {
            s.verify_certificate = v;
        }
        Ok(())
    }

    /// Eject (idempotent for an empty slot).
    pub fn eject(&self, svc: &Service, vm: &str, slot: &str) -> Result<(), RedfishError> {
        let slot = slot_of(slot)?;
        let mut g = self.lock();
        let s = g
            .slots
            .get_mut(&(vm.to_string(), slot))
            .ok_or_else(|| not_found("VirtualMedia", slot))?;
        if s.inserting.is_some() {
            return Err(RedfishError::new(409, "ResourceInUse", &[]));
        }
        let verify = s.verify_certificate;
        *s = Slot {
            verify_certificate: verify,
            ..Slot::default()
        };
        drop(g);
        if svc.exports.remove(&format!("{vm}/{slot}")).is_some() {
            log::info!("{vm}: virtual media {slot} ejected");
        }
        Ok(())
    }

    fn new_task(&self, name: String) -> u32 {
        let mut g = self.lock();
        let id = g.next_task;
        g.next_task = g.next_task.wrapping_add(1).max(1);
        while g.tasks.len() >= MAX_TASKS {
            let oldest = g
                .tasks
                .iter()
                .find(|(_, t)| t.state != "Running")
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    g.tasks.remove(&k);
                }
                None => break,
            }
        }
        g.tasks.insert(
            id,
            Task {
                id,
                name,
                state: "Running",
                start: iso8601(SystemTime::now()),
                end: None,
                messages: Vec::new(),
            },
        );
        id
    }

    fn finish_task(&self, id: u32, result: &Result<(), RedfishError>) {
        let mut g = self.lock();
        if let Some(t) = g.tasks.get_mut(&id) {
            t.end = Some(iso8601(SystemTime::now()));
            match result {
                Ok(()) => {
                    t.state = "Completed";
                    t.messages = vec![RedfishError::new(200, "Success", &[]).message_json()];
                }
                Err(e) => {
                    t.state = "Exception";
                    t.messages = vec![e.message_json()];
                }
            }
        }
    }
}

fn task_json(t: &Task) -> Value {
    json!({
        "@odata.id": format!("/redfish/v1/TaskService/Tasks/{}", t.id),
        "@odata.type": "#Task.v1_4_0.Task",
        "Id": t.id.to_string(),
        "Name": t.name,
        "TaskState": t.state,
        "TaskStatus": match t.state { "Exception" => "Critical", _ => "OK" },
        "StartTime": t.start,
        "EndTime": t.end,
        "PercentComplete": if t.state == "Running" { 0 } else { 100 },
        "Messages": t.messages,
    })
}

/// VirtualMedia/{slot} of `vm`, at `uri`.
pub fn render(svc: &Service, vm: &Vm, slot: &str, uri: &str) -> Result<Value, RedfishError> {
    let slot = slot_of(slot)?;
    let s = svc.media.slot(&vm.info.name, slot);
    let inserted = s.medium.is_some();
    let image_name = s
        .image
        .as_deref()
        .and_then(|u| u.rsplit('/').next())
        .map(String::from);
    let mut v = json!({
        "@odata.id": uri,
        "@odata.type": "#VirtualMedia.v1_4_0.VirtualMedia",
        "Id": slot,
        "Name": format!("Virtual {slot}"),
        "MediaTypes": if slot == "Cd" { json!(["CD", "DVD"]) } else { json!(["USBStick"]) },
        "Image": s.image.as_deref().filter(|_| inserted),
        "ImageName": image_name.filter(|_| inserted),
        "Inserted": inserted,
        "WriteProtected": s.write_protected,
        "ConnectedVia": if inserted { "URI" } else { "NotConnected" },
        "TransferMethod": "Stream",
        "TransferProtocolType": s.protocol.filter(|_| inserted),
        "UserName": s.user.as_deref().filter(|_| inserted),
        "Password": null,
        "VerifyCertificate": s.verify_certificate,
        "Status": {"State": if inserted { "Enabled" } else { "Disabled" }, "Health": "OK"},
        "Actions": {
            "#VirtualMedia.InsertMedia": {"target": format!("{uri}/Actions/VirtualMedia.InsertMedia")},
            "#VirtualMedia.EjectMedia": {"target": format!("{uri}/Actions/VirtualMedia.EjectMedia")},
        },
    });
    if let Some(m) = &s.medium {
        v["Oem"] = json!({"Hvsim": oem_hvsim(svc, &format!("{}/{slot}", vm.info.name), m)});
    }
    Ok(v)
}

/// `Oem.Hvsim` of an inserted medium exported as `export`.
pub fn oem_hvsim(svc: &Service, export: &str, m: &Medium) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &m.counters;
    json!({
        "@odata.type": super::metadata::OEM_VMEDIA_TYPE,
        "NbdExport": export,
        "NbdUri": svc.opts.nbd.map(|a| format!("nbd://{a}/{export}")),
        "SizeBytes": m.size(),
        "ReadOnly": m.read_only(),
        "InsertedAt": iso8601(m.inserted_at),
        "IdleSeconds": m.idle().as_secs(),
        "InactivityTimeoutSeconds": svc.opts.inactivity.as_secs(),
        "Reads": c.reads.load(Relaxed),
        "BytesRead": c.bytes_read.load(Relaxed),
        "Writes": c.writes.load(Relaxed),
        "BytesWritten": c.bytes_written.load(Relaxed),
        "NbdConnections": c.connections.load(Relaxed),
    })
}

/// VirtualMedia.InsertMedia.
pub fn insert(
    svc: &Arc<Service>,
    vm: &Vm,
    slot: &str,
    body: &Map<String, Value>,
    who: &str,
) -> RfResult {
    const ACTION: &str = "VirtualMedia.InsertMedia";
    let slot = slot_of(slot)?;
    let tyerr = |v: &Value, k: &str| {
        RedfishError::new(
            400,
            "ActionParameterValueTypeError",
            &[&v.to_string(), k, ACTION],
        )
    };
    let mut image = None;
    let mut inserted = true;
    let mut wp = true;
    let mut proto = None;
    let mut user = None;
    let mut pass = None;
    for (k, v) in body {
        match k.as_str() {
            "Image" => image = Some(v.as_str().ok_or_else(|| tyerr(v, k))?.to_string()),
            "Inserted" => inserted = v.as_bool().ok_or_else(|| tyerr(v, k))?,
            "WriteProtected" => wp = v.as_bool().ok_or_else(|| tyerr(v, k))?,
            "TransferMethod" => {
                let s = v.as_str().ok_or_else(|| tyerr(v, k))?;
                if s != "Stream" {
                    return Err(RedfishError::new(
                        400,
                        "ActionParameterValueNotInList",
                        &[s, k, ACTION],
                    ));
                }
            }
            "TransferProtocolType" => {
                proto = Some(v.as_str().ok_or_else(|| tyerr(v, k))?.to_string())
            }
            "UserName" => user = Some(v.as_str().ok_or_else(|| tyerr(v, k))?.to_string()),
            "Password" => pass = Some(v.as_str().ok_or_else(|| tyerr(v, k))?.to_string()),
            _ => {
                return Err(RedfishError::new(
                    400,
                    "ActionParameterUnknown",
                    &[ACTION, k],
                ))
            }
        }
    }
    let image = image
        .ok_or_else(|| RedfishError::new(400, "ActionParameterMissing", &[ACTION, "Image"]))?;
    if !inserted {
        return Err(RedfishError::new(
            400,
            "ActionParameterValueNotInList",
            &["false", "Inserted", ACTION],
        ));
    }
    if slot == "Cd" && !wp {
        return Err(RedfishError::new(
            400,
            "ActionParameterValueNotInList",
            &["false", "WriteProtected", ACTION],
        ));
    }
    if image.len() > MAX_URL {
        return Err(RedfishError::new(
            400,
            "ActionParameterValueFormatError",
            &["(too long)", "Image", ACTION],
        ));
    }
    let Some(scheme) = media::protocol_of(&image) else {
        return Err(RedfishError::new(
            400,
            "ActionParameterValueFormatError",
            &[&image, "Image", ACTION],
        ));
    };
    if let Some(p) = &proto {
        if !p.eq_ignore_ascii_case(scheme) {
            return Err(RedfishError::new(
                400,
                "ActionParameterValueNotInList",
                &[p, "TransferProtocolType", ACTION],
            ));
        }
    }
    let name = vm.info.name.clone();
    let verify;
    {
        let mut g = svc.media.lock();
        let s = g
            .slots
            .get_mut(&(name.clone(), slot))
            .ok_or_else(|| not_found("VirtualMedia", slot))?;
        if s.medium.is_some() || s.inserting.is_some() {
            return Err(RedfishError::new(409, "ResourceInUse", &[]));
        }
        verify = s.verify_certificate;
        s.inserting = Some(0);
    }
    let task = svc
        .media
        .new_task(format!("Insert {image} into {name} {slot}"));
    {
        let mut g = svc.media.lock();
        if let Some(s) = g.slots.get_mut(&(name.clone(), slot)) {
            s.inserting = Some(task);
        }
    }
    let opts = OpenOptions {
        media_dir: svc.opts.media_dir.clone(),
        allow_http: svc.opts.allow_http,
        verify,
        ca_file: svc.opts.media_ca.clone(),
        credentials: user.clone().map(|u| (u, pass.unwrap_or_default())),
        write: !wp,
    };
    let (tx, rx) = mpsc::channel();
    let s2 = svc.clone();
    let who = who.to_string();
    let spawned = std::thread::Builder::new()
        .name("redfish-insert".into())
        .spawn(move || {
            let r = media::open(&image, &opts)
                .map_err(|e| {
                    // Remote errors name the URL themselves.
                    let why = match &e {
                        media::MediaError::Remote { msg, .. } => msg.clone(),
                        e => e.to_string(),
                    };
                    RedfishError::general(400, &format!("cannot insert {image}: {why}"))
                })
                .map(|backend| {
                    let m = Arc::new(Medium::new(image.clone(), backend, wp));
                    let size = m.size();
                    let mut g = s2.media.lock();
                    if let Some(s) = g.slots.get_mut(&(name.clone(), slot)) {
                        s.image = Some(image.clone());
                        s.medium = Some(m.clone());
                        s.write_protected = wp;
                        s.protocol = Some(scheme);
                        s.user = user;
                    }
                    drop(g);
                    s2.exports.insert(&format!("{name}/{slot}"), m);
                    log::info!("{name}: {image} ({size} bytes) inserted as {slot} by {who}");
                });
            if let Err(e) = &r {
                log::error!("{name}: {}", e.message);
            }
            {
                let mut g = s2.media.lock();
                if let Some(s) = g.slots.get_mut(&(name.clone(), slot)) {
                    s.inserting = None;
                }
            }
            s2.media.finish_task(task, &r);
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        let err = RedfishError::general(503, &format!("cannot start the insert: {e}"));
        svc.media.finish_task(task, &Err(err.clone()));
        let mut g = svc.media.lock();
        if let Some(s) = g.slots.get_mut(&(vm.info.name.clone(), slot)) {
            s.inserting = None;
        }
        return Err(err);
    }
    match rx.recv_timeout(svc.opts.task_after) {
        Ok(Ok(())) => Ok(json_response(200, &success())),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            let uri = format!("/redfish/v1/TaskService/Tasks/{task}");
            let body = svc
                .media
                .task_json(&task.to_string())
                .unwrap_or(Value::Null);
            Ok(json_response(202, &body).with_header("Location", &uri))
        }
    }
}

/// Eject media idle longer than the inactivity timeout.
pub fn spawn_reaper(svc: Arc<Service>) -> std::io::Result<()> {
    let every =
        (svc.opts.inactivity / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
    std::thread::Builder::new()
        .name("redfish-media-reaper".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let idle: Vec<(String, &'static str)> = svc
                .media
                .lock()
                .slots
                .iter()
                .filter(|(_, s)| {
                    s.medium
                        .as_ref()
                        .is_some_and(|m| m.idle() >= svc.opts.inactivity)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for (vm, slot) in idle {
                log::warn!(
                    "{vm}: virtual media {slot} idle for {} s: ejected",
                    svc.opts.inactivity.as_secs()
                );
                let _ = svc.media.eject(&svc, &vm, slot);
            }
            for (vm, n) in svc.proxy.idle(svc.opts.inactivity) {
                log::warn!(
                    "{vm}: proxy virtual media Slot_{n} idle for {} s: ejected",
                    svc.opts.inactivity.as_secs()
                );
                svc.proxy.eject(&svc, &vm, n, "the inactivity timeout");
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00+00:00");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        assert_eq!(iso8601(t), "2024-02-29T23:59:59+00:00");
    }

    #[test]
    fn uris_name_their_vm() {
        assert_eq!(
            vm_of("/redfish/v1/Managers/vm0-bmc/VirtualMedia/Cd").as_deref(),
            Some("vm0")
        );
        assert_eq!(
            vm_of("/redfish/v1/Systems/a/VirtualMedia/Usb").as_deref(),
            Some("a")
        );
        assert_eq!(vm_of("/x"), None);
    }
}
