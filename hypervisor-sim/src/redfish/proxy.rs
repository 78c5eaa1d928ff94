//! Proxy-mode virtual media (OpenBMC's design, PROTOCOLS-NEXT section 5):
//! slots `Slot_0` .. `Slot_{N-1}` per VM (`[redfish] proxy_slots`, default
//! [`DEFAULT_SLOTS`]) in `Managers/{vm}-bmc/VirtualMedia`, each with a
//! WebSocket endpoint `/nbd/{vm}/{N}` (in `Oem.OpenBMC.WebSocketEndpoint`).
//! A client that connects there serves an image as an NBD server over the
//! socket's binary messages; hvsim is the NBD client
//! ([`crate::nbd::proxy`]) and exports the medium on its NBD server as
//! `VM/Slot_N`, read-only, like a legacy medium. The slot shows
//! `Inserted: true` and `ConnectedVia: "Applet"` while the socket is open;
//! closing the socket ejects; EjectMedia closes the socket, and so does the
//! inactivity timeout (`[redfish] inactivity_timeout`), as for legacy media.
//!
//! Refusals, before the upgrade: no or bad credentials (401; a cookie
//! session must offer its CSRF token as the subprotocol), a ReadOnly
//! account (403: the media privilege, ConfigureComponents, is Operator's),
//! an unknown VM or slot (404), a slot already in use (409 "slot is in
//! use": one socket per slot).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde_json::{json, Value};

use super::error::{not_found, RedfishError};
use super::vmedia::{iso8601, oem_hvsim};
use super::{RfResult, Service};
use crate::http::ws::{self, close_code, WsConfig, WsWriter};
use crate::http::Request;
use crate::media::{Backend, Medium};
use crate::nbd::proxy::{self as nbdproxy, ProxyBackend};
use crate::users::Role;
use crate::vm::Vm;

/// Proxy slots per VM unless configured.
pub const DEFAULT_SLOTS: u8 = 2;
/// Most proxy slots per VM.
pub const MAX_SLOTS: u8 = 16;
/// `@odata.type` of `Oem.OpenBMC` in a proxy slot (bmcweb's).
pub const OEM_OPENBMC_TYPE: &str = "#OpenBMCVirtualMedia.v1_0_0.VirtualMedia";
/// Largest WebSocket message accepted from the peer (a 128 KiB READ reply
/// and its header fit many times over).
pub const MAX_MESSAGE: usize = 4 << 20;

/// The slot number of a proxy slot name (`Slot_0` -> 0).
pub fn slot_index(name: &str) -> Option<u8> {
    let n = name.strip_prefix("Slot_")?;
    if n.is_empty() || n.len() > 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The WebSocket endpoint of a proxy slot.
pub fn endpoint(vm: &str, n: u8) -> String {
    format!("/nbd/{vm}/{n}")
}

#[derive(Debug)]
enum SlotState {
    Empty,
    /// Upgraded or upgrading, NBD handshake under way.
    Connecting {
        gen: u64,
        writer: Option<WsWriter>,
    },
    /// Serving.
    Open {
        gen: u64,
        backend: Arc<ProxyBackend>,
        medium: Arc<Medium>,
        user: String,
        since: SystemTime,
    },
}

#[derive(Debug, Default)]
struct Inner {
    slots: BTreeMap<(String, u8), SlotState>,
    next_gen: u64,
}

/// The proxy slots of every VM.
#[derive(Debug)]
pub struct ProxySlots {
    count: u8,
    inner: Mutex<Inner>,
}

impl ProxySlots {
    /// `count` slots per VM.
    pub fn new(count: u8) -> ProxySlots {
        ProxySlots {
            count,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Slots per VM.
    pub fn count(&self) -> u8 {
        self.count
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `name` is one of our slots.
    pub fn has(&self, name: &str) -> bool {
        slot_index(name).is_some_and(|n| n < self.count)
    }

    /// Whether slot `n` of `vm` has an open socket.
    pub fn inserted(&self, vm: &str, n: u8) -> bool {
        matches!(
            self.lock().slots.get(&(vm.to_string(), n)),
            Some(SlotState::Open { .. })
        )
    }

    /// Claim a slot for a new socket.
    fn reserve(&self, svc: &Arc<Service>, vm: &str, n: u8) -> Result<Reservation, RedfishError> {
        let mut g = self.lock();
        g.next_gen += 1;
        let gen = g.next_gen;
        let e = g
            .slots
            .entry((vm.to_string(), n))
            .or_insert(SlotState::Empty);
        if !matches!(e, SlotState::Empty) {
            return Err(RedfishError::new(409, "ResourceInUse", &[])
                .explain(format!("Proxy slot Slot_{n} of {vm}: slot is in use (one WebSocket per slot); eject it or use another slot.")));
        }
        *e = SlotState::Connecting { gen, writer: None };
        Ok(Reservation {
            svc: svc.clone(),
            vm: vm.to_string(),
            n,
            gen,
        })
    }

    /// Free slot `n` of `vm` if it still belongs to session `gen`: the
    /// export goes, the slot is empty.
    fn release(&self, svc: &Service, vm: &str, n: u8, gen: u64) {
        let mut g = self.lock();
        let key = (vm.to_string(), n);
        let mine = match g.slots.get(&key) {
            Some(SlotState::Connecting { gen: x, .. }) | Some(SlotState::Open { gen: x, .. }) => {
                *x == gen
            }
            _ => false,
        };
        if !mine {
            return;
        }
        let old = g.slots.insert(key, SlotState::Empty);
        drop(g);
        if let Some(SlotState::Open { .. }) = old {
            svc.exports.remove(&format!("{vm}/Slot_{n}"));
        }
    }

    /// The open slots whose medium has been idle at least `t`.
    pub fn idle(&self, t: std::time::Duration) -> Vec<(String, u8)> {
        self.lock()
            .slots
            .iter()
            .filter(|(_, s)| matches!(s, SlotState::Open { medium, .. } if medium.idle() >= t))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// EjectMedia: close the socket (idempotent for an empty slot).
    pub fn eject(&self, svc: &Service, vm: &str, n: u8, who: &str) {
        let mut g = self.lock();
        let key = (vm.to_string(), n);
        let old = g.slots.insert(key, SlotState::Empty);
        drop(g);
        match old {
            Some(SlotState::Open { backend, .. }) => {
                svc.exports.remove(&format!("{vm}/Slot_{n}"));
                backend.disconnect(&format!("ejected by {who}"));
                log::info!("{vm}: proxy virtual media Slot_{n} ejected by {who}");
            }
            Some(SlotState::Connecting {
                writer: Some(w), ..
            }) => {
                let _ = w.close(close_code::NORMAL, &format!("ejected by {who}"));
                w.shutdown();
            }
            _ => {}
        }
    }
}

/// A claimed slot; dropped before the medium is open, it frees the slot.
#[derive(Debug)]
struct Reservation {
    svc: Arc<Service>,
    vm: String,
    n: u8,
    gen: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.svc
            .proxy
            .release(&self.svc, &self.vm, self.n, self.gen);
    }
}

/// `Managers/{vm}-bmc/VirtualMedia/Slot_N`.
pub fn render(svc: &Service, vm: &Vm, slot: &str, uri: &str) -> Result<Value, RedfishError> {
    let n = slot_index(slot)
        .filter(|n| *n < svc.proxy.count)
        .ok_or_else(|| not_found("VirtualMedia", slot))?;
    let name = &vm.info.name;
    let g = svc.proxy.lock();
    let open = match g.slots.get(&(name.clone(), n)) {
        Some(SlotState::Open {
            medium,
            user,
            since,
            backend,
            ..
        }) => Some((
            medium.clone(),
            user.clone(),
            *since,
            backend.peer().to_string(),
        )),
        _ => None,
    };
    drop(g);
    let inserted = open.is_some();
    let mut v = json!({
        "@odata.id": uri,
        "@odata.type": "#VirtualMedia.v1_4_0.VirtualMedia",
        "Id": slot,
        "Name": "Virtual Removable Media",
        "MediaTypes": ["CD", "USBStick"],
        "Inserted": inserted,
        "WriteProtected": true,
        "ConnectedVia": if inserted { "Applet" } else { "NotConnected" },
        "TransferMethod": "Stream",
        "TransferProtocolType": "OEM",
        "Status": {"State": if inserted { "Enabled" } else { "Disabled" }, "Health": "OK"},
        "Actions": {
            "#VirtualMedia.EjectMedia": {"target": format!("{uri}/Actions/VirtualMedia.EjectMedia")},
        },
        "Oem": {"OpenBMC": {
            "@odata.type": OEM_OPENBMC_TYPE,
            "WebSocketEndpoint": endpoint(name, n),
        }},
    });
    if let Some((m, user, since, peer)) = open {
        v["Oem"]["Hvsim"] = oem_hvsim(svc, &format!("{name}/{slot}"), &m);
        v["UserName"] = user.into();
        v["ImageName"] = format!("proxy from {peer} since {}", iso8601(since)).into();
    }
    Ok(v)
}

/// `GET /nbd/{vm}/{N}`: authenticate, claim the slot, upgrade.
pub fn handle(svc: &Arc<Service>, req: &Request, rest: &str) -> RfResult {
    let (caller, proto) = svc.caller_ws(req)?;
    let (vm, n) = rest
        .split_once('/')
        .ok_or_else(|| not_found("VirtualMedia", rest))?;
    let vm = svc
        .inventory
        .get(vm)
        .ok_or_else(|| not_found("Manager", &format!("{vm}-bmc")))?
        .info
        .name
        .clone();
    let n = Some(n)
        .filter(|s| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u8>().ok())
        .filter(|i| *i < svc.proxy.count)
        .ok_or_else(|| not_found("VirtualMedia", &format!("Slot_{n}")))?;
    if caller.role < Role::Operator {
        log::warn!(
            "{vm}: proxy media socket on Slot_{n} refused for {} ({}): needs Operator",
            caller.user,
            caller.role.as_str()
        );
        return Err(RedfishError::new(403, "InsufficientPrivilege", &[]));
    }
    // A valid handshake before claiming the slot, so a bad one is told so.
    if let Err(r) = ws::check(req) {
        return Ok(r);
    }
    let resv = svc.proxy.reserve(svc, &vm, n)?;
    let cfg = WsConfig {
        max_message: MAX_MESSAGE,
        read_timeout: Some(nbdproxy::HANDSHAKE_TIMEOUT),
        write_timeout: Some(std::time::Duration::from_secs(30)),
    };
    let user = caller.user.clone();
    Ok(ws::upgrade(req, proto.as_deref(), cfg, move |conn| {
        serve(resv, conn, user)
    }))
}

fn serve(resv: Reservation, conn: ws::WsConn, user: String) {
    let svc = resv.svc.clone();
    let (vm, n, gen) = (resv.vm.clone(), resv.n, resv.gen);
    let peer = conn.peer();
    let (rx, tx) = conn.split();
    {
        let mut g = svc.proxy.lock();
        match g.slots.get_mut(&(vm.clone(), n)) {
            Some(SlotState::Connecting { gen: x, writer }) if *x == gen => {
                *writer = Some(tx.clone());
            }
            // Ejected while the 101 went out.
            _ => {
                let _ = tx.close(close_code::NORMAL, "ejected");
                tx.shutdown();
                return;
            }
        }
    }
    let (backend, pump) = match nbdproxy::start(rx, tx.clone()) {
        Ok(x) => x,
        Err(e) => {
            log::warn!("{vm}: proxy media Slot_{n} from {peer}: NBD handshake failed: {e}");
            let _ = tx.close(close_code::PROTOCOL, &format!("NBD handshake failed: {e}"));
            tx.shutdown();
            return;
        }
    };
    let export = format!("{vm}/Slot_{n}");
    let size = backend.export().size;
    let medium = Arc::new(Medium::new(
        format!("ws://{peer}{}", endpoint(&vm, n)),
        backend.clone() as Arc<dyn Backend>,
        true,
    ));
    {
        let mut g = svc.proxy.lock();
        let key = (vm.clone(), n);
        match g.slots.get(&key) {
            Some(SlotState::Connecting { gen: x, .. }) if *x == gen => {
                svc.exports.insert(&export, medium.clone());
                g.slots.insert(
                    key,
                    SlotState::Open {
                        gen,
                        backend: backend.clone(),
                        medium,
                        user: user.clone(),
                        since: SystemTime::now(),
                    },
                );
            }
            _ => {
                drop(g);
                backend.disconnect("ejected");
                return;
            }
        }
    }
    log::info!(
        "{vm}: proxy virtual media Slot_{n} ({size} bytes) inserted by {user} from {peer}, exported as {export}"
    );
    let why = pump.run();
    log::info!("{vm}: proxy virtual media Slot_{n} ended: {why}");
    // `resv` drops here: the export goes and the slot is free again
    // (unless EjectMedia already did that).
    drop(resv);
}
