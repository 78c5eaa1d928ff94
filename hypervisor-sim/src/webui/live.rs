//! `/api/events`: the console's renderings as server-sent events.
//!
//! One stream per open page, on its connection's thread. It renders again
//! when what it shows may have changed: the VM's revision ([`Vm::revision`],
//! which every guest report, power change, tools change and variable moves),
//! its SEL, its console and media slots; it wakes at once on the VM's events
//! and at least every [`super::EVENT_POLL`] for the rest. An update is sent
//! only when the rendering differs from the last one sent. The session is
//! checked again every [`RECHECK`]: logging out (or deleting the account)
//! ends the stream.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::{sse, Request, Response};
use crate::redfish::Service;
use crate::vm::Vm;

/// How often a stream checks that its session is still valid, and sends
/// time-dependent fields (uptime) again.
pub const RECHECK: Duration = Duration::from_secs(5);

/// A copy of the parts of `req` that authenticate it, to check again later.
pub(crate) fn credentials(req: &Request) -> Request {
    Request {
        method: "GET".into(),
        target: req.target.clone(),
        headers: req
            .headers
            .iter()
            .filter(|(k, _)| {
                ["cookie", "x-auth-token", "authorization"]
                    .contains(&k.to_ascii_lowercase().as_str())
            })
            .cloned()
            .collect(),
        body: Vec::new(),
        peer: req.peer,
        tls: req.tls,
        principal: None,
        takeover: Default::default(),
    }
}

/// What decides whether a VM's page needs a new rendering, short of the
/// uptime clock: the revision, and what it does not count (whether the
/// agent still polls, which ages without a report; the SEL the BMC writes;
/// the console; the media).
type Key = (u64, bool, usize, bool, Option<String>, [bool; 2]);

fn key(svc: &Service, vm: &Vm) -> Key {
    let sel = vm
        .store()
        .sel_records(&vm.info.name)
        .map(|r| r.len())
        .unwrap_or(0);
    let media = ["Cd", "Usb"].map(|s| svc.media.slot(&vm.info.name, s).medium.is_some());
    (
        vm.revision(),
        vm.tools_running(),
        sel,
        vm.console.is_attached(),
        vm.console.holder(),
        media,
    )
}

/// Answer `/api/events` for `vm` (a VM page) or, with `None`, the VM list.
pub fn events(svc: &Arc<Service>, req: &Request, vm: Option<Arc<Vm>>) -> Response {
    let svc = svc.clone();
    let creds = credentials(req);
    sse::start(req, move |mut s| {
        let (tx, rx) = mpsc::channel();
        let vms: Vec<Arc<Vm>> = match &vm {
            Some(v) => vec![v.clone()],
            None => svc.inventory.values().cloned().collect(),
        };
        for (i, v) in vms.iter().enumerate() {
            v.subscribe_tagged(i, tx.clone());
        }
        drop(tx);
        let render = |svc: &Service| -> Value {
            match &vm {
                Some(v) => super::detail(svc, v),
                None => {
                    serde_json::json!({"vms": vms.iter().map(|v| super::summary(v)).collect::<Vec<_>>()})
                }
            }
        };
        let _ = s.retry(Duration::from_secs(2));
        let mut last_key = None;
        let mut last_sent: Option<String> = None;
        let mut checked = Instant::now();
        loop {
            let k: Vec<_> = vms.iter().map(|v| key(&svc, v)).collect();
            let due = checked.elapsed() >= RECHECK;
            if due {
                checked = Instant::now();
                if let Err(e) = svc.caller(&creds) {
                    log::info!("console: event stream to {} ended: {e}", s.peer());
                    let _ = s.send(Some("ended"), "your session has ended");
                    return;
                }
            }
            if last_key.as_ref() != Some(&k) || due {
                let data = render(&svc).to_string();
                if last_sent.as_deref() != Some(data.as_str()) {
                    if s.send(Some("update"), &data).is_err() {
                        return;
                    }
                    last_sent = Some(data);
                } else if due && s.keep_alive().is_err() {
                    return;
                }
                last_key = Some(k);
            }
            match rx.recv_timeout(super::EVENT_POLL) {
                // Several events at once need one rendering.
                Ok(_) => while rx.try_recv().is_ok() {},
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(super::EVENT_POLL),
            }
        }
    })
}
