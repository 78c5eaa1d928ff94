//! Snapshots, quiesced through the guest's vmbackup as an ESXi host does
//! it (open-vm-tools services/plugins/vmbackup; facts in
//! [`protocol::vmbackup`]).
//!
//! The host sequence: TCLO `vmbackup.startWithOpts` (the guest answers
//! "OK ", reports `reset`, runs its freeze scripts and freezes), wait for
//! the event `prov.snapshotCommit`, take the snapshot (here: the optional
//! capture command), TCLO `vmbackup.snapshotDone` (the guest thaws and runs
//! its thaw scripts), wait for `req.done`. A guest error (`req.error`)
//! fails the snapshot with the guest's reason; a timeout or a failed
//! capture sends `vmbackup.abort`. Guest events arrive over RPCI
//! (`vmbackup.eventSet`, [`event_set`]); outside an operation they are
//! refused, which tells a guest the host forgot it (it thaws).
//!
//! A simulated host has no disks: `--capture CMD` is what "taking the
//! snapshot" does (e.g. copy a disk image), run while the guest is
//! quiesced. `--fault silent` makes the host stop talking after the commit,
//! like a host whose snapshot hung, to test that the guest thaws by itself.

use std::time::{Duration, Instant, SystemTime};

use protocol::host::HostMessage;
use protocol::rpc::rpci_reply;
use protocol::vmbackup::{self as wire, event, QuiesceParams, Status};
use serde_json::{json, Value};

use crate::store::{Store, StoreError};
use crate::vm::{Power, Sink, Vm};

/// How long the host waits for the guest to answer a vmbackup TCLO command.
const TCLO_WAIT: Duration = Duration::from_secs(15);
/// A guest silent this long (no event, not even `req.keepAlive`, which
/// comes every 2.5 s) has stopped responding.
const LIVENESS: Duration = Duration::from_millis(3 * wire::KEEP_ALIVE_PERIOD_MS);
/// After an abort, how long the host waits for the guest's `req.done`.
const ABORT_WAIT: Duration = Duration::from_secs(30);
/// The guest's own timer runs this much longer than the host's, so a live
/// host's abort comes first.
const GUEST_MARGIN_SECS: u32 = 5;
/// Most snapshot records kept per VM (the oldest go first).
const MAX_RECORDS: usize = 100;

/// One guest event as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestEvent {
    /// Event name.
    pub name: String,
    /// Code.
    pub code: u32,
    /// Description.
    pub desc: String,
}

/// A VM's vmbackup state.
#[derive(Debug, Default)]
pub struct BackupState {
    /// A host-driven operation is in progress: guest events are taken.
    pub active: bool,
    /// Events of the current operation, keep-alives excepted.
    pub events: Vec<GuestEvent>,
    /// Keep-alives of the current operation.
    pub keep_alives: u64,
    /// When the guest last sent an event.
    pub last_event: Option<Instant>,
    /// Snapshot records, oldest first (as `vm show --json` shows them).
    pub snapshots: Vec<Value>,
}

/// What `hvsim vm snapshot` asks for.
#[derive(Debug, Clone, Default)]
pub struct SnapshotRequest {
    /// Quiesce through the guest's tools.
    pub quiesce: bool,
    /// Seconds the host waits for each phase (quiesce, then thaw).
    pub timeout_s: u64,
    /// Run by `/bin/sh -c` while the guest is quiesced (the snapshot).
    pub capture: Option<String>,
    /// Ask the guest to run its freeze/thaw scripts.
    pub scripts: bool,
    /// Argument for the guest's scripts.
    pub script_arg: String,
    /// Fault injection: `silent` (the host stops after the commit).
    pub fault: Option<String>,
    /// Start with `vmbackup.start 0` (the guest's own settings: scripts,
    /// script argument, timeout) instead of `vmbackup.startWithOpts`.
    pub legacy_start: bool,
}

/// RPCI `vmbackup.eventSet <event> <code> <desc>`.
pub fn event_set(s: &mut Sink<'_>, args: &[u8]) -> HostMessage {
    let e = match wire::parse_event(args) {
        Ok(e) => e,
        Err(e) => {
            log::warn!("{}: bad vmbackup event: {e}", s.name());
            return rpci_reply(false, b"Invalid arguments").into();
        }
    };
    if !event::ALL.contains(&e.name) {
        log::warn!("{}: unknown vmbackup event {:?}", s.name(), e.name);
        return rpci_reply(false, b"Unknown vmbackup event").into();
    }
    let name = s.name().to_string();
    let taken = s.backup_event(|b| {
        if !b.active {
            return false;
        }
        b.last_event = Some(Instant::now());
        if e.name == event::KEEP_ALIVE {
            b.keep_alives += 1;
        } else if b.events.len() < 64 {
            b.events.push(GuestEvent {
                name: e.name.to_string(),
                code: e.code,
                desc: e.desc.to_string(),
            });
        }
        true
    });
    if taken {
        log::info!("{name}: vmbackup event {} {} {}", e.name, e.code, e.desc);
        rpci_reply(true, b"").into()
    } else {
        log::info!(
            "{name}: vmbackup event {} with no operation in progress",
            e.name
        );
        rpci_reply(false, b"No quiesce operation in progress").into()
    }
}

/// How an operation ended.
struct Outcome {
    result: &'static str,
    error: Option<String>,
}

fn guest_reason(events: &[GuestEvent]) -> Option<String> {
    events
        .iter()
        .find(|e| e.name == event::ERROR || e.name == event::ABORTED)
        .map(|e| {
            let kind = Status::from_code(e.code).map_or("unknown code", Status::name);
            format!("{} ({kind}, code {})", e.desc.trim(), e.code)
        })
}

fn scripts_ran(events: &[GuestEvent]) -> Option<Vec<String>> {
    let done = events.iter().rev().find(|e| e.name == event::DONE)?;
    let list = done.desc.strip_prefix("scripts: ")?;
    Some(list.split(", ").map(str::to_string).collect())
}

/// Take a snapshot of `vm` as `req` says; the record (also kept in the
/// VM's state and the store). Errors only when nothing could be started.
pub fn take(vm: &Vm, store: &Store, req: &SnapshotRequest) -> Result<Value, String> {
    if vm.power_state() == Power::Off && req.quiesce {
        return Err(format!(
            "VM {} is powered off: a quiesced snapshot needs a running guest",
            vm.info.name
        ));
    }
    if let Some(f) = req.fault.as_deref() {
        if f != "silent" {
            return Err(format!("unknown fault {f:?}: the only fault is \"silent\""));
        }
        if !req.quiesce {
            return Err("--fault applies to quiesced snapshots only".into());
        }
    }
    let time = crate::redfish::vmedia::iso8601(SystemTime::now());
    let started = Instant::now();
    let (outcome, events, keep_alives) = if req.quiesce {
        if !vm.tools_running() {
            return Err(format!(
                "no guest agent is running in VM {}; cannot quiesce (take the snapshot without --quiesce)",
                vm.info.name
            ));
        }
        if !vm.backup_begin() {
            return Err(format!(
                "a quiesced snapshot of VM {} is already in progress",
                vm.info.name
            ));
        }
        let o = quiesce(vm, req);
        let (events, keep_alives) = vm.backup_end();
        (o, events, keep_alives)
    } else {
        let o = match capture(vm, req, Duration::from_secs(req.timeout_s.max(1))) {
            Ok(()) => Outcome {
                result: "ok",
                error: None,
            },
            Err(e) => Outcome {
                result: "failed",
                error: Some(e),
            },
        };
        (o, Vec::new(), 0)
    };
    let rec = json!({
        "time": time,
        "quiesced": req.quiesce && outcome.result == "ok",
        "quiesce_requested": req.quiesce,
        "result": outcome.result,
        "error": outcome.error,
        "scripts": scripts_ran(&events),
        "events": events.iter().map(|e| format!("{} {}", e.name, e.code)).collect::<Vec<_>>(),
        "keep_alives": keep_alives,
        "duration_ms": started.elapsed().as_millis() as u64,
    });
    if let Err(e) = store.add_snapshot(&vm.info.name, &rec.to_string()) {
        log::error!("{}: {e}", vm.info.name);
    }
    vm.backup_record(rec.clone(), MAX_RECORDS);
    log::info!(
        "{}: snapshot {}{}",
        vm.info.name,
        outcome.result,
        rec["error"]
            .as_str()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
    Ok(rec)
}

/// Run the capture command, if any, within `limit`.
fn capture(vm: &Vm, req: &SnapshotRequest, limit: Duration) -> Result<(), String> {
    let Some(cmd) = req.capture.as_deref() else {
        return Ok(());
    };
    let mut child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("HVSIM_VM", &vm.info.name)
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run the capture command: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(format!("the capture command failed ({st})")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the capture command did not finish within {} s",
                    limit.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("cannot wait for the capture command: {e}")),
        }
    }
}

/// What waiting for the guest gave.
enum Wait {
    /// An event at this index of the event list.
    Event(GuestEvent),
    /// The deadline passed.
    Timeout,
    /// No event for [`LIVENESS`].
    Silent,
}

fn next_event(vm: &Vm, seen: &mut usize, deadline: Instant) -> Wait {
    loop {
        // In steps of a second: a guest agent that went away (its TCLO
        // channel closed) will not send anything more.
        let step = deadline.min(Instant::now() + Duration::from_secs(1));
        let r = vm.backup_wait(step, |b| {
            if let Some(e) = b.events.get(*seen) {
                return Some(Wait::Event(e.clone()));
            }
            if b.last_event.is_some_and(|t| t.elapsed() >= LIVENESS) {
                return Some(Wait::Silent);
            }
            None
        });
        match r {
            Some(w) => {
                if let Wait::Event(_) = &w {
                    *seen += 1;
                }
                return w;
            }
            None if Instant::now() >= deadline => return Wait::Timeout,
            None if !vm.tools_running() => return Wait::Silent,
            None => {}
        }
    }
}

/// Send a vmbackup TCLO command; the guest's refusal or the failure as text.
fn send(vm: &Vm, cmd: &[u8]) -> Result<(), String> {
    match vm.tclo(cmd, TCLO_WAIT) {
        Ok(r) if r.starts_with(b"OK") => Ok(()),
        Ok(r) => {
            let text = String::from_utf8_lossy(&r);
            Err(text
                .strip_prefix("ERROR ")
                .unwrap_or(&text)
                .trim()
                .to_string())
        }
        Err(e) => Err(e),
    }
}

/// Abort: `vmbackup.abort`, then wait for the guest to finish.
fn abort(vm: &Vm, seen: &mut usize, why: String) -> Outcome {
    log::warn!("{}: aborting the quiesce: {why}", vm.info.name);
    if let Err(e) = send(vm, wire::ABORT.as_bytes()) {
        log::info!("{}: vmbackup.abort: {e}", vm.info.name);
    }
    let deadline = Instant::now() + ABORT_WAIT;
    loop {
        match next_event(vm, seen, deadline) {
            Wait::Event(e) if e.name == event::DONE => break,
            Wait::Event(_) => {}
            Wait::Timeout | Wait::Silent => break,
        }
    }
    Outcome {
        result: "aborted",
        error: Some(why),
    }
}

fn quiesce(vm: &Vm, req: &SnapshotRequest) -> Outcome {
    let timeout = Duration::from_secs(req.timeout_s.max(1));
    let params = QuiesceParams {
        create_manifest: false,
        quiesce_apps: true,
        quiesce_fs: true,
        writable_snapshot: false,
        exec_scripts: req.scripts,
        script_arg: req.script_arg.clone(),
        timeout: (req.timeout_s.min(u32::MAX as u64 - 10) as u32) + GUEST_MARGIN_SECS,
        disk_uuids: String::new(),
    };
    let cmd = if req.legacy_start {
        // generateManifests 0: a manifest would be written to the guest's
        // config directory.
        format!("{} 0", wire::START).into_bytes()
    } else {
        let mut cmd = format!("{} ", wire::START_WITH_OPTS).into_bytes();
        cmd.extend_from_slice(&params.encode());
        cmd
    };
    if let Err(e) = send(vm, &cmd) {
        return Outcome {
            result: "failed",
            error: Some(format!("the guest refused to quiesce: {e}")),
        };
    }
    let mut seen = 0;
    let mut events = Vec::new();
    // Phase 1: until the guest is quiesced.
    let deadline = Instant::now() + timeout;
    loop {
        match next_event(vm, &mut seen, deadline) {
            Wait::Event(e) if e.name == event::SNAPSHOT_COMMIT => break,
            Wait::Event(e) if e.name == event::DONE => {
                events.push(e);
                return Outcome {
                    result: "failed",
                    error: Some(guest_reason(&events).unwrap_or_else(|| {
                        "the guest ended the operation without quiescing".into()
                    })),
                };
            }
            Wait::Event(e) => events.push(e),
            Wait::Timeout => {
                let mut why = format!(
                    "timed out after {} s waiting for the guest to quiesce",
                    timeout.as_secs()
                );
                if let Some(g) = guest_reason(&events) {
                    why.push_str(&format!("; guest: {g}"));
                }
                return abort(vm, &mut seen, why);
            }
            Wait::Silent => {
                return abort(
                    vm,
                    &mut seen,
                    "the guest stopped responding (no event, no keep-alive)".into(),
                );
            }
        }
    }
    // Quiesced: take the snapshot.
    if req.fault.as_deref() == Some("silent") {
        log::warn!(
            "{}: fault injected: the host goes silent after the commit",
            vm.info.name
        );
        let limit =
            Instant::now() + timeout + Duration::from_secs(GUEST_MARGIN_SECS.into()) + ABORT_WAIT;
        let mut evs = Vec::new();
        loop {
            match next_event(vm, &mut seen, limit) {
                Wait::Event(e) => {
                    let done = e.name == event::DONE;
                    evs.push(e);
                    if done {
                        break;
                    }
                }
                // Keep-alives stopping is what a hung guest looks like too.
                Wait::Silent if vm.tools_running() => std::thread::sleep(Duration::from_secs(1)),
                Wait::Silent | Wait::Timeout => break,
            }
        }
        let mut why = "the host went silent after the commit (fault injected)".to_string();
        match guest_reason(&evs) {
            Some(g) => why.push_str(&format!("; the guest gave up by itself: {g}")),
            None => why.push_str("; the guest never gave up"),
        }
        return Outcome {
            result: "failed",
            error: Some(why),
        };
    }
    if let Err(e) = capture(vm, req, timeout) {
        return abort(vm, &mut seen, format!("snapshot failed: {e}"));
    }
    if let Err(e) = send(vm, wire::SNAPSHOT_DONE.as_bytes()) {
        let _ = send(vm, wire::ABORT.as_bytes());
        return Outcome {
            result: "failed",
            error: Some(format!("the guest refused vmbackup.snapshotDone: {e}")),
        };
    }
    // Phase 2: until the guest is done (thawed, thaw scripts run).
    let deadline = Instant::now() + timeout;
    loop {
        match next_event(vm, &mut seen, deadline) {
            Wait::Event(e) if e.name == event::DONE => break,
            Wait::Event(e) => events.push(e),
            Wait::Timeout | Wait::Silent => {
                return Outcome {
                    result: "failed",
                    error: Some(format!(
                        "the guest did not finish thawing within {} s",
                        timeout.as_secs()
                    )),
                };
            }
        }
    }
    match guest_reason(&events) {
        None => Outcome {
            result: "ok",
            error: None,
        },
        Some(g) => Outcome {
            result: "failed",
            error: Some(format!("the guest reported: {g}")),
        },
    }
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS snapshots (
         vm     TEXT NOT NULL,
         seq    INTEGER NOT NULL,
         record TEXT NOT NULL,
         PRIMARY KEY (vm, seq)
     ) WITHOUT ROWID;";

impl Store {
    /// Create the snapshot table if missing.
    pub fn ensure_snapshot_schema(&self) -> Result<(), StoreError> {
        self.conn().execute_batch(SCHEMA).map_err(|e| self.err(e))
    }

    /// The snapshot records of `vm` (JSON), oldest first, at most `max`.
    pub fn snapshots(&self, vm: &str, max: usize) -> Result<Vec<Value>, StoreError> {
        self.ensure_snapshot_schema()?;
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT record FROM (SELECT seq, record FROM snapshots WHERE vm = ?1 \
                 ORDER BY seq DESC LIMIT ?2) ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(rusqlite::params![vm, max as i64], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let texts = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(texts
            .iter()
            .filter_map(|t| serde_json::from_str(t).ok())
            .collect())
    }

    /// Append a snapshot record of `vm`; durable when this returns.
    pub fn add_snapshot(&self, vm: &str, record: &str) -> Result<(), StoreError> {
        self.ensure_snapshot_schema()?;
        self.conn()
            .prepare_cached(
                "INSERT INTO snapshots (vm, seq, record) VALUES (?1, \
                 (SELECT COALESCE(MAX(seq), 0) + 1 FROM snapshots WHERE vm = ?1), ?2)",
            )
            .and_then(|mut st| st.execute(rusqlite::params![vm, record]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_persist_in_order() {
        let s = Store::in_memory().unwrap();
        for i in 0..3 {
            s.add_snapshot("vm0", &json!({"n": i}).to_string()).unwrap();
        }
        s.add_snapshot("vm1", "{\"n\": 9}").unwrap();
        let v = s.snapshots("vm0", 2).unwrap();
        assert_eq!(v, [json!({"n": 1}), json!({"n": 2})]);
    }

    #[test]
    fn reasons_and_scripts_from_events() {
        let ev = |n: &str, c: u32, d: &str| GuestEvent {
            name: n.into(),
            code: c,
            desc: d.into(),
        };
        let evs = [
            ev("reset", 0, ""),
            ev("req.error", 2, "Custom quiesce script failed."),
            ev("req.done", 0, "scripts: a freeze, a freezeFail"),
        ];
        assert_eq!(
            guest_reason(&evs).unwrap(),
            "Custom quiesce script failed. (script error, code 2)"
        );
        assert_eq!(scripts_ran(&evs).unwrap(), ["a freeze", "a freezeFail"]);
        assert_eq!(scripts_ran(&evs[..2]), None);
    }
}
