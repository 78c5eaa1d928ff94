//! A BMC per VM: IPMI over LAN (RMCP, IPMI 1.5 sessions, IPMI 2.0 RMCP+),
//! driven by `ipmitool -I lan` and `-I lanplus`, reading and changing the
//! same VM model every other host service uses.
//!
//! * [`rmcp`]: packet layout, parse and emit (pure).
//! * [`crypto`]: MD5 auth codes, RAKP HMACs, integrity, AES-CBC-128.
//! * [`session`]: session setup (challenge/activate, Open Session, RAKP 1-4),
//!   sequence windows, timeouts, the session limit (pure).
//! * [`commands`]: the commands ipmitool uses.
//! * [`sdr`], [`sel`], [`fru`]: sensors and their records, the event log,
//!   the FRU inventory.
//! * [`lan`]: the LAN parameters `lan set` changes (simulated, persisted).
//! * [`sol`]: Serial over LAN to the console of `hvsim exec --console`.
//! * [`watchdog`]: the BMC watchdog timer, acting on the VM's power.
//! * [`pef`]: Platform Event Filtering: filters on new SEL records acting
//!   on the VM's power, alert policies stored.
//! * [`client`]: a small RMCP+ client for tests and the load tool.
//!
//! # Threat table
//!
//! | who | can send | bounded by |
//! |---|---|---|
//! | anyone who reaches the UDP port | any datagram | datagrams over 1024 bytes, bad RMCP headers, bad checksums are dropped unanswered ([`rmcp::parse`]); no state is kept for them |
//! | anyone | presence ping, Get Channel Auth Capabilities, Get Channel Cipher Suites, Get Session Challenge, Open Session | answers are fixed-size; each setup takes one of [`SessionPolicy::max_sessions`] slots, expires after 10 s, and when the table is full the oldest unfinished setup is evicted first: a setup flood never displaces an established session |
//! | anyone with a user name | RAKP 1 | unknown or disabled users get "unauthorized name"; the BMC's RAKP 2 HMAC reveals nothing without the password (offline guessing of weak passwords from a captured RAKP 2 is inherent to IPMI 2.0: use strong passwords) |
//! | a console with a wrong password | RAKP 3 / Activate Session | refused, the session slot is freed at once |
//! | cipher suite 0 / auth type none | | refused unless [`SessionPolicy`] enables them |
//! | an established session | commands at its privilege | integrity code (HMAC-SHA1-96 / HMAC-SHA256-128) checked before anything else, then the sequence window (32 wide, each number once: replays dropped), packets from another address dropped; idle sessions close after 60 s; privilege checked per command |
//! | an established session at the SOL privilege (parameter 2, User by default) | Activate / Deactivate Payload | one SOL activation per VM (0x80 for a second); any such session may deactivate it; it ends with its session (close, timeout, BMC reset) |
//! | the console holding SOL | SOL packets | accepted only in the session that activated it, after the same integrity, decryption and sequence-window checks as IPMI payloads; payloads over [`sol::MAX_PAYLOAD`] dropped; keystrokes go to the pty without blocking (a full input queue gets a partial acknowledgement); a repeated packet is acknowledged, not fed twice |
//! | the guest program on the console (`hvsim exec --console`) | unlimited output | kept in a ring of [`crate::console::RING_BYTES`] per VM, older output dropped (SOL sets the overrun flag); one packet in flight to the console, resent at most the retry count (at most 7) |
//! | an Operator session | Set/Reset Watchdog Timer, Platform Event | the watchdog acts on the VM's power as Chassis Control (also Operator) does; its countdown is at most 6553.5 s and it stops after acting; malformed data gets 0xC7/0xCC |
//! | an Administrator session | PEF configuration, K_G/K_R, user payload access, channel access, global enables | PEF acts at most once per new SEL record and only with its global action control; a K_G change applies to sessions opened afterwards; everything is validated field by field (0x80/0x82/0xC7/0xC9/0xCC) |
//! | the guest | power and OS events that become SEL entries | the SEL holds at most [`sel::MAX_ENTRIES`] records; when full new events are dropped and the overflow flag is set |

pub mod client;
pub mod commands;
pub mod crypto;
pub mod fru;
pub mod lan;
pub mod mgmt;
pub mod pef;
pub mod rmcp;
pub mod sdr;
pub mod sel;
pub mod session;
pub mod sol;
pub mod watchdog;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use session::SessionPolicy;
use session::{Session, Sessions, Stage};

use crate::config::{self, Config};
use crate::store::{Store, StoreError};
use crate::users::UserStore;
use crate::vm::{Vm, VmEvent};

/// Network functions (requests; responses are one more).
pub mod netfn {
    /// Chassis.
    pub const CHASSIS: u8 = 0x00;
    /// Sensor/Event.
    pub const SENSOR: u8 = 0x04;
    /// Application.
    pub const APP: u8 = 0x06;
    /// Storage.
    pub const STORAGE: u8 = 0x0A;
    /// Transport.
    pub const TRANSPORT: u8 = 0x0C;
}

/// Completion codes (spec table 5-2).
pub mod cc {
    /// Success.
    pub const OK: u8 = 0x00;
    /// Invalid command.
    pub const INVALID_COMMAND: u8 = 0xC1;
    /// Reservation cancelled or invalid.
    pub const RESERVATION: u8 = 0xC5;
    /// Request data length invalid.
    pub const BAD_LENGTH: u8 = 0xC7;
    /// Parameter out of range.
    pub const OUT_OF_RANGE: u8 = 0xC9;
    /// Requested sensor, data or record not present.
    pub const NOT_PRESENT: u8 = 0xCB;
    /// Invalid data field in request.
    pub const INVALID_FIELD: u8 = 0xCC;
    /// Insufficient privilege level.
    pub const INSUFFICIENT_PRIVILEGE: u8 = 0xD4;
    /// Command not supported in present state.
    pub const NOT_IN_STATE: u8 = 0xD5;
    /// Invalid session (1.5 Activate Session: 0x85).
    pub const INVALID_SESSION: u8 = 0x85;
    /// Unspecified error.
    pub const UNSPECIFIED: u8 = 0xFF;
}

/// Why a BMC could not start.
#[derive(Debug, thiserror::Error)]
pub enum BmcError {
    /// The `ipmi.listen` address does not parse.
    #[error("vm {vm}: ipmi.listen {addr:?} is not an address:port")]
    Address {
        /// The VM.
        vm: String,
        /// What was configured.
        addr: String,
    },
    /// The UDP port could not be bound.
    #[error("vm {vm}: cannot listen for IPMI on {addr}: {source}")]
    Bind {
        /// The VM.
        vm: String,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A thread could not start.
    #[error("cannot start the IPMI event thread: {0}")]
    Thread(std::io::Error),
}

/// What the event thread tracks for Chassis commands.
#[derive(Debug, Default)]
struct EventState {
    restart_cause: u8,
    last_on_by_ipmi: bool,
}

/// One VM's BMC: sessions and state; [`Bmc::handle`] answers one datagram.
#[derive(Debug)]
pub struct Bmc {
    vm: Arc<Vm>,
    users: Arc<UserStore>,
    sessions: Sessions,
    sel: Arc<Mutex<Sel>>,
    events: Arc<Mutex<EventState>>,
    guid: [u8; 16],
    fru: Vec<u8>,
    mac: [u8; 6],
    addr: SocketAddr,
    started_secs: u32,
    sdr_reservation: u16,
    sel_reservation: u16,
    boot_set_in_progress: u8,
    /// `None` off; `Some(None)` on until turned off; `Some(Some(t))` until t.
    identify_until: Option<Option<Instant>>,
    close_after_reply: Option<u32>,
    store: Arc<Store>,
    lan: lan::LanConfig,
    /// Session holding LAN "set in progress".
    lan_lock: Option<u32>,
    sol_cfg: sol::Config,
    /// Session holding SOL "set in progress".
    sol_lock: Option<u32>,
    /// The active SOL payload instance.
    sol: Option<sol::Activation>,
    /// Packets to send besides the reply (SOL output), with their peer.
    outbox: Vec<(Vec<u8>, SocketAddr)>,
    /// The watchdog timer.
    watchdog: watchdog::Watchdog,
    /// PEF configuration (persisted).
    pef: pef::Pef,
    /// Session holding PEF "set in progress".
    pef_lock: Option<u32>,
    /// PEF postponed until then (Arm PEF Postpone Timer), or disabled
    /// (`Some(None)`, value 0xFE) until re-armed.
    pef_postpone: Option<Option<Instant>>,
    /// Last SEL record PEF processed (the BMC's) and the one software set.
    pef_last_bmc: u16,
    pef_last_sw: u16,
    /// BMC global enables (App 0x2E/0x2F).
    global_enables: u8,
    /// Message flags (App 0x31): bit 3 watchdog pre-timeout.
    message_flags: u8,
    /// Chassis capabilities flags and device addresses (chassis 0x00/0x05).
    chassis_caps: [u8; 5],
    /// Event receiver slave address and LUN (S/E 0x00/0x01).
    event_receiver: [u8; 2],
    /// Users (bit n: user ID n) whose SOL payload access is disabled.
    sol_denied: u64,
    /// K_R (Set Channel Security Keys); K_G lives in the sessions.
    kr: [u8; 20],
    /// A Partial Add SEL Entry under way: reservation, bytes so far.
    partial_sel: Option<(u16, Vec<u8>)>,
    /// Channel access (App 0x40/0x41): non-volatile and volatile byte 1.
    channel_access: [u8; 2],
    /// LAN alert destination 0 (volatile; LAN parameters 18 and 19,
    /// without the selector): type, timeout, retries; address format,
    /// gateway, IP, MAC. Stored only: this BMC sends no alerts.
    alert_dest: ([u8; 3], [u8; 12]),
}

/// bmc_meta key of the SOL configuration.
const SOL_KEY: &str = "sol.config";
/// bmc_meta key of the users without SOL payload access.
const SOL_DENIED_KEY: &str = "sol.payload_denied";
/// bmc_meta key prefixes of byte strings kept in 8-byte pieces.
const PEF_KEY: &str = "pef";
const KG_KEY: &str = "key.kg";
const KR_KEY: &str = "key.kr";

/// Keep `b` as bmc_meta values `{key}.len` and `{key}.0`, `{key}.1`, ...
fn save_blob(store: &Store, vm: &str, key: &str, b: &[u8]) -> Result<(), StoreError> {
    for (i, c) in b.chunks(8).enumerate() {
        let mut a = [0u8; 8];
        a[..c.len()].copy_from_slice(c);
        store.set_bmc_meta(vm, &format!("{key}.{i}"), i64::from_le_bytes(a))?;
    }
    store.set_bmc_meta(vm, &format!("{key}.len"), b.len() as i64)
}

/// What [`save_blob`] kept, if anything.
fn load_blob(store: &Store, vm: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(n) = store.bmc_meta(vm, &format!("{key}.len"))? else {
        return Ok(None);
    };
    let n = n.clamp(0, 4096) as usize;
    let mut out = Vec::with_capacity(n);
    for i in 0..n.div_ceil(8) {
        let v = store.bmc_meta(vm, &format!("{key}.{i}"))?.unwrap_or(0);
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.truncate(n);
    Ok(Some(out))
}

use sel::Sel;

impl Bmc {
    /// A BMC for `vm` answering as if at `addr`. Subscribes to the VM's
    /// events at once; call [`Bmc::record_events`] to log them.
    pub fn new(
        vm: Arc<Vm>,
        users: Arc<UserStore>,
        store: Arc<Store>,
        addr: SocketAddr,
        policy: SessionPolicy,
    ) -> Result<Bmc, BmcError> {
        let sel = Sel::load(&vm.info.name, store.clone())?;
        let lan = lan::LanConfig::load(&store, &vm.info.name, addr)?;
        let sol_cfg = store
            .bmc_meta(&vm.info.name, SOL_KEY)?
            .map_or_else(sol::Config::default, sol::Config::unpack);
        let mut sessions = Sessions::new(policy);
        let name = &vm.info.name;
        sessions.kg = load_blob(&store, name, KG_KEY)?.filter(|k| k.iter().any(|&b| b != 0));
        let mut kr = [0u8; 20];
        if let Some(k) = load_blob(&store, name, KR_KEY)?.filter(|k| k.len() == 20) {
            kr.copy_from_slice(&k);
        }
        let pef = load_blob(&store, name, PEF_KEY)?
            .map_or_else(pef::Pef::default, |b| pef::Pef::unpack(&b));
        let sol_denied = store.bmc_meta(name, SOL_DENIED_KEY)?.unwrap_or(0) as u64;
        // PEF looks only at records logged from now on.
        let pef_last_bmc = sel.records().last().map_or(0, |r| r.0);
        for (i, l) in sessions.suite_limit.iter_mut().enumerate() {
            *l = lan.suite_limit(i);
        }
        // IPMI sends GUIDs least significant byte first (spec 20.8).
        let mut guid = vm.info.uuid;
        guid.reverse();
        let u = vm.info.uuid;
        let fru = fru::image(
            &vm.info.name,
            &config::format_uuid(&vm.info.uuid),
            env!("CARGO_PKG_VERSION"),
        );
        Ok(Bmc {
            sessions,
            store,
            lan,
            lan_lock: None,
            sol_cfg,
            sol_lock: None,
            sol: None,
            outbox: Vec::new(),
            watchdog: watchdog::Watchdog::default(),
            pef,
            pef_lock: None,
            pef_postpone: None,
            pef_last_bmc,
            pef_last_sw: 0,
            // Event message buffer off, SEL logging on.
            global_enables: 0x08,
            message_flags: 0,
            // No intrusion sensor, lockout, diagnostic interrupt or power
            // interlock; FRU, SDR, SEL and system management device: the
            // BMC (0x20).
            chassis_caps: [0x00, 0x20, 0x20, 0x20, 0x20],
            event_receiver: [0x20, 0x00],
            sol_denied,
            kr,
            partial_sel: None,
            // Always available, per-message and user-level authentication,
            // PEF alerting off (bit 5 set disables it).
            channel_access: [0x22, 0x22],
            alert_dest: ([0; 3], [0; 12]),
            sel: Arc::new(Mutex::new(sel)),
            events: Arc::default(),
            guid,
            fru,
            // Locally administered, derived from the VM's UUID.
            mac: [0x02, 0x00, u[12], u[13], u[14], u[15]],
            addr,
            started_secs: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as u32),
            sdr_reservation: 0,
            sel_reservation: 0,
            boot_set_in_progress: 0,
            identify_until: None,
            close_after_reply: None,
            vm,
            users,
        })
    }

    /// Log the VM's events in the SEL and track the restart cause, on a
    /// thread of its own, until the VM goes away.
    pub fn record_events(&self) -> std::io::Result<()> {
        let mut r = Recorder::new();
        r.add(self);
        r.spawn()
    }

    /// Answer one datagram from `peer`; `None` drops it.
    pub fn handle(&mut self, buf: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
        let pkt = match rmcp::parse(buf) {
            Ok(p) => p,
            Err(e) => {
                log::debug!("ipmi {}: dropped from {peer}: {e}", self.vm.info.name);
                return None;
            }
        };
        self.sessions.expire(Instant::now());
        match pkt {
            rmcp::Packet::Ping { tag } => Some(rmcp::pong(tag)),
            rmcp::Packet::V15(p) => self.v15(&p, peer),
            rmcp::Packet::V20(p) => self.v20(&p, peer),
        }
    }

    /// Commands answered outside any session.
    fn sessionless(
        &mut self,
        req: &rmcp::Request<'_>,
        peer: SocketAddr,
        v15: bool,
    ) -> Option<(u8, Vec<u8>)> {
        Some(match (req.netfn, req.cmd) {
            (netfn::APP, 0x38) => self.auth_capabilities(req.data),
            (netfn::APP, 0x54) => self.cipher_suites(req.data),
            (netfn::APP, 0x39) if v15 => self.sessions.challenge(&self.users, req.data, peer),
            _ => return None,
        })
    }

    fn v15(&mut self, p: &rmcp::V15<'_>, peer: SocketAddr) -> Option<Vec<u8>> {
        let req = rmcp::parse_request(p.msg).ok()?;
        if p.session_id == 0 {
            if p.auth_type != rmcp::AUTH_NONE {
                return None;
            }
            let (c, d) = self.sessionless(&req, peer, true)?;
            return Some(rmcp::emit_v15(0, 0, 0, None, &req.response(c, &d)));
        }
        let s = self.sessions.get(p.session_id)?;
        if s.plus || s.peer != peer || !Sessions::v15_authentic(s, p) {
            return None;
        }
        let id = s.id;
        let (c, d) = match s.stage {
            Stage::Challenged { .. } => {
                if (req.netfn, req.cmd) != (netfn::APP, 0x3A) {
                    return None;
                }
                let r = self.sessions.activate(id, req.data);
                if r.0 != cc::OK {
                    let s = self.sessions.get(id)?.clone();
                    self.sessions.close(id);
                    return Some(v15_reply(&s, 0, &req.response(r.0, &r.1)));
                }
                r
            }
            Stage::Active => {
                let s = self.sessions.get_mut(id)?;
                if !s.window.accept(p.seq) {
                    log::debug!("ipmi: session {id:#010x}: sequence {} refused", p.seq);
                    return None;
                }
                s.last = Instant::now();
                self.command(id, &req)
            }
            _ => return None,
        };
        let s = self.sessions.get_mut(id)?;
        let seq = s.out_seq;
        s.out_seq = s.out_seq.wrapping_add(1);
        let out = v15_reply(s, seq, &req.response(c, &d));
        if let Some(x) = self.close_after_reply.take() {
            self.sessions.close(x);
        }
        Some(out)
    }

    fn v20(&mut self, p: &rmcp::V20<'_>, peer: SocketAddr) -> Option<Vec<u8>> {
        let setup = |(t, b): session::SetupReply| rmcp::emit_v20(t, false, 0, 0, &b, None);
        let from_peer = |sessions: &Sessions, b: &[u8]| {
            b.len() >= 8
                && sessions
                    .get(u32::from_le_bytes([b[4], b[5], b[6], b[7]]))
                    .is_some_and(|s| s.plus && s.peer == peer)
        };
        match p.payload_type {
            rmcp::PAYLOAD_OPEN_REQ if p.session_id == 0 => {
                Some(setup(self.sessions.open_session(p.payload, peer)))
            }
            rmcp::PAYLOAD_RAKP1 if p.session_id == 0 && from_peer(&self.sessions, p.payload) => {
                self.sessions
                    .rakp1(p.payload, &self.users, &self.guid)
                    .map(setup)
            }
            rmcp::PAYLOAD_RAKP3 if p.session_id == 0 && from_peer(&self.sessions, p.payload) => {
                self.sessions.rakp3(p.payload, &self.guid).map(setup)
            }
            rmcp::PAYLOAD_IPMI if p.session_id == 0 => {
                if p.encrypted || p.authenticated {
                    return None;
                }
                let req = rmcp::parse_request(p.payload).ok()?;
                let (c, d) = self.sessionless(&req, peer, false)?;
                Some(rmcp::emit_v20(
                    rmcp::PAYLOAD_IPMI,
                    false,
                    0,
                    0,
                    &req.response(c, &d),
                    None,
                ))
            }
            rmcp::PAYLOAD_IPMI => {
                let id = p.session_id;
                let s = self.sessions.get_mut(id)?;
                if !s.plus || s.peer != peer || !matches!(s.stage, Stage::Active) {
                    return None;
                }
                let Some(plain) = Sessions::open_plus(s, p) else {
                    log::debug!("ipmi: session {id:#010x}: packet failed integrity, decryption or sequence checks");
                    return None;
                };
                let req = rmcp::parse_request(&plain).ok()?;
                let (c, d) = self.command(id, &req);
                let s = self.sessions.get_mut(id)?;
                let out = Sessions::seal_plus(s, rmcp::PAYLOAD_IPMI, &req.response(c, &d));
                if let Some(x) = self.close_after_reply.take() {
                    self.sessions.close(x);
                    log::info!("ipmi: session {x:#010x} closed");
                }
                Some(out)
            }
            rmcp::PAYLOAD_SOL if p.session_id != 0 => {
                let id = p.session_id;
                let s = self.sessions.get_mut(id)?;
                if !s.plus || s.peer != peer || !matches!(s.stage, Stage::Active) {
                    return None;
                }
                let plain = Sessions::open_plus(s, p)?;
                let pkt = match sol::parse(&plain) {
                    Ok(x) => x,
                    Err(e) => {
                        log::debug!("ipmi: session {id:#010x}: {e}");
                        return None;
                    }
                };
                let Some(act) = self.sol.as_mut().filter(|a| a.session == id) else {
                    log::debug!(
                        "ipmi: session {id:#010x}: SOL packet without an active SOL payload"
                    );
                    return None;
                };
                let console = self.vm.console.get();
                let ack = act.inbound(&pkt, console.as_ref(), Instant::now());
                let s = self.sessions.get_mut(id)?;
                let out = ack.map(|a| Sessions::seal_plus(s, rmcp::PAYLOAD_SOL, &a));
                self.pump_sol();
                out
            }
            _ => None,
        }
    }

    /// Whether a SOL payload is active (the server then polls the console).
    pub fn sol_active(&self) -> bool {
        self.sol.is_some()
    }

    /// Move console output to the SOL console (a new packet, or a
    /// retransmission when due) and deactivate SOL whose session is gone.
    pub fn pump_sol(&mut self) {
        let Some(act) = self.sol.as_mut() else {
            return;
        };
        self.sessions.expire(Instant::now());
        let Some(s) = self
            .sessions
            .get_mut(act.session)
            .filter(|s| matches!(s.stage, Stage::Active))
        else {
            log::info!(
                "{}: SOL deactivated: session {:#010x} closed",
                self.vm.info.name,
                act.session
            );
            self.sol = None;
            return;
        };
        let console = self.vm.console.get();
        if let Some(p) = act.poll(console.as_ref(), &self.sol_cfg, Instant::now()) {
            let pkt = Sessions::seal_plus(s, rmcp::PAYLOAD_SOL, &p);
            self.outbox.push((pkt, s.peer));
        }
    }

    /// Packets to send besides replies (SOL output).
    pub fn take_outbox(&mut self) -> Vec<(Vec<u8>, SocketAddr)> {
        std::mem::take(&mut self.outbox)
    }
}

fn v15_reply(s: &Session, seq: u32, msg: &[u8]) -> Vec<u8> {
    let code = Sessions::v15_code(s, seq, msg);
    rmcp::emit_v15(s.auth_type, seq, s.id, code, msg)
}

/// Logs the events of many BMCs' VMs in their SELs and tracks their
/// restart causes, on one thread for all of them.
#[derive(Debug)]
pub struct Recorder {
    tx: std::sync::mpsc::Sender<(usize, VmEvent)>,
    rx: std::sync::mpsc::Receiver<(usize, VmEvent)>,
    bmcs: Vec<Recorded>,
}

/// A BMC whose VM's events a [`Recorder`] logs: VM name, SEL, restart state.
type Recorded = (String, Arc<Mutex<Sel>>, Arc<Mutex<EventState>>);

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// No BMCs yet.
    pub fn new() -> Recorder {
        let (tx, rx) = std::sync::mpsc::channel();
        Recorder {
            tx,
            rx,
            bmcs: Vec::new(),
        }
    }

    /// Record `bmc`'s VM's events from now on.
    pub fn add(&mut self, bmc: &Bmc) {
        bmc.vm.subscribe_tagged(self.bmcs.len(), self.tx.clone());
        self.bmcs.push((
            bmc.vm.info.name.clone(),
            bmc.sel.clone(),
            bmc.events.clone(),
        ));
    }

    /// Start the thread (it ends when every VM is gone).
    pub fn spawn(self) -> std::io::Result<()> {
        let Recorder { tx, rx, bmcs } = self;
        drop(tx);
        if bmcs.is_empty() {
            return Ok(());
        }
        std::thread::Builder::new()
            .name("ipmi-sel".into())
            .spawn(move || {
                for (i, ev) in rx {
                    let Some((name, sel, events)) = bmcs.get(i) else {
                        continue;
                    };
                    {
                        let mut e = events.lock().unwrap_or_else(|p| p.into_inner());
                        // Restart causes (spec table 28-11): 0x01 chassis
                        // control command, 0x0A soft reset from the OS.
                        match &ev {
                            // 0x04 watchdog expiration, 0x08 reset via
                            // PEF (a reset or power cycle restarts it).
                            VmEvent::PowerOn { source } => {
                                e.restart_cause = 0x01;
                                e.last_on_by_ipmi = source == "ipmi";
                            }
                            VmEvent::Reset { source } => {
                                e.restart_cause = match source.as_str() {
                                    "guest" => 0x0A,
                                    "watchdog" => 0x04,
                                    "pef" => 0x08,
                                    _ => 0x01,
                                };
                            }
                            _ => {}
                        }
                    }
                    if let Some(r) = Sel::record_for(&ev) {
                        let mut s = sel.lock().unwrap_or_else(|p| p.into_inner());
                        if let Err(e) = s.add(r) {
                            log::error!("{name}: cannot log {ev:?} in the SEL: {e}");
                        }
                    }
                }
            })?;
        Ok(())
    }
}

/// Start the BMC of every VM in `cfg` on its own thread. A VM without
/// `ipmi.listen` gets 127.0.0.1:6230 + its index; when that default port is
/// taken, that VM runs without a BMC (logged), while a configured address
/// that cannot be bound is an error. With `default_bmcs` false (the
/// descriptor budget has no room for them) only VMs with `ipmi.listen` get
/// one.
pub fn start(
    cfg: &Config,
    vms: &BTreeMap<String, Arc<Vm>>,
    store: Arc<Store>,
    users: Arc<UserStore>,
    default_bmcs: bool,
) -> Result<(), BmcError> {
    if users.list().is_empty() {
        log::warn!("no [[user]] configured: every IPMI login will be refused");
    }
    let mut recorder = Recorder::new();
    for (index, vc) in cfg.vm.iter().enumerate() {
        let Some(vm) = vms.get(&vc.name) else {
            continue;
        };
        let configured = vc.ipmi.as_ref().and_then(|i| i.listen.clone());
        let addr: SocketAddr = match &configured {
            Some(a) => a.parse().map_err(|_| BmcError::Address {
                vm: vc.name.clone(),
                addr: a.clone(),
            })?,
            None if !default_bmcs => continue,
            None => {
                let Some(port) = u16::try_from(index)
                    .ok()
                    .and_then(|i| config::DEFAULT_IPMI_BASE_PORT.checked_add(i))
                else {
                    log::warn!("{}: no default IPMI port left; no BMC", vc.name);
                    continue;
                };
                SocketAddr::from(([127, 0, 0, 1], port))
            }
        };
        let sock = match UdpSocket::bind(addr) {
            Ok(s) => s,
            Err(e) if configured.is_none() => {
                log::warn!(
                    "{}: default IPMI address {addr} unavailable ({e}); set ipmi.listen to give this VM a BMC",
                    vc.name
                );
                continue;
            }
            Err(source) => {
                return Err(BmcError::Bind {
                    vm: vc.name.clone(),
                    addr,
                    source,
                })
            }
        };
        let local = sock.local_addr().unwrap_or(addr);
        let bmc = Bmc::new(
            vm.clone(),
            users.clone(),
            store.clone(),
            local,
            policy_for(vc.ipmi.as_ref()),
        )?;
        recorder.add(&bmc);
        log::info!("{}: IPMI BMC on udp {local}", vc.name);
        serve(bmc, sock).map_err(|source| BmcError::Bind {
            vm: vc.name.clone(),
            addr,
            source,
        })?;
    }
    recorder.spawn().map_err(BmcError::Thread)?;
    Ok(())
}

/// How often an active SOL payload looks for console output.
const SOL_POLL: std::time::Duration = std::time::Duration::from_millis(10);
/// How often the watchdog and PEF look at the time and the SEL.
const TIMER_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Answer datagrams on `sock` with `bmc`, on a thread of its own.
pub fn serve(mut bmc: Bmc, sock: UdpSocket) -> std::io::Result<()> {
    let name = bmc.vm.info.name.clone();
    std::thread::Builder::new()
        .name(format!("ipmi-{name}"))
        .spawn(move || {
            // One byte more than accepted, so oversize datagrams are seen.
            let mut buf = vec![0u8; rmcp::MAX_PACKET + 1];
            let mut polling = None;
            let mut backoff = crate::budget::AcceptBackoff::new(&format!("{name}: IPMI socket"));
            loop {
                // While SOL is active, wake up to move console output and
                // retransmit even when the console sends nothing; while
                // the watchdog runs or PEF is on, to act in time.
                let want = if bmc.sol_active() {
                    Some(SOL_POLL)
                } else if bmc.timers_active() {
                    Some(TIMER_POLL)
                } else {
                    None
                };
                if want != polling {
                    polling = want;
                    if let Err(e) = sock.set_read_timeout(want) {
                        log::warn!("{name}: IPMI socket timeout: {e}");
                    }
                }
                match sock.recv_from(&mut buf) {
                    Ok((n, peer)) => {
                        backoff.accepted();
                        if let Some(out) = bmc.handle(&buf[..n], peer) {
                            if let Err(e) = sock.send_to(&out, peer) {
                                log::debug!("{name}: IPMI send to {peer}: {e}");
                            }
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => {
                        // Logged once per interval, paced like an accept loop.
                        backoff.failed(&e);
                        continue;
                    }
                }
                bmc.pump_sol();
                bmc.tick(Instant::now());
                for (out, peer) in bmc.take_outbox() {
                    if let Err(e) = sock.send_to(&out, peer) {
                        log::debug!("{name}: IPMI send to {peer}: {e}");
                    }
                }
            }
        })?;
    Ok(())
}

/// The session policy a VM's `ipmi` table asks for; secure defaults.
fn policy_for(c: Option<&crate::config::IpmiConfig>) -> SessionPolicy {
    let mut p = SessionPolicy::default();
    if let Some(c) = c {
        p.allow_cipher_zero = c.allow_cipher_suite_0;
        p.allow_auth_none = c.allow_auth_none;
        if let Some(n) = c.max_sessions {
            p.max_sessions = n.clamp(1, 64);
        }
        if let Some(t) = c.session_timeout {
            p.idle_timeout = std::time::Duration::from_secs(t.clamp(1, 3600));
        }
    }
    p
}
