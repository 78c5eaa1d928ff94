//! The rest of IPMI 2.0's mandatory BMC commands: payload discovery and
//! per-user payload access, channel security keys (K_G, K_R), chassis
//! capabilities, the watchdog timer, BMC global enables and message flags,
//! the event receiver, platform events, PEF, partial SEL adds, and the
//! answers of a BMC without IPMB devices, BT interface or writable SDRs.

use std::time::{Duration, Instant};

use super::commands::{Reply, LAN_CHANNEL};
use super::session::{privilege, Session};
use super::{cc, pef, sel, watchdog, Bmc};
use crate::vm::PowerAction;

fn ok(d: Vec<u8>) -> Reply {
    (cc::OK, d)
}

fn err(c: u8) -> Reply {
    (c, Vec::new())
}

fn channel_ok(c: u8) -> bool {
    matches!(c & 0x0F, LAN_CHANNEL | 0x0E)
}

/// Sensor number of the BMC's Watchdog 2 sensor (see `sdr`).
pub const WATCHDOG_SENSOR: u8 = 0x14;
/// Sensor type Watchdog 2 (spec table 42-3).
pub const WATCHDOG_TYPE: u8 = 0x23;

/// Payload types this BMC carries: IPMI (0) and SOL (1).
const PAYLOADS: u16 = 0x0003;
/// Session setup payloads: Open Session request/response, RAKP 1-4.
const SETUP_PAYLOADS: u16 = 0x003F;

impl Bmc {
    /// Run one in-session command as user `user_id` (a session is made for
    /// it on first use), then the watchdog and PEF: how fuzz targets and
    /// unit tests reach the command parsers. The network path never calls
    /// it; `None` when the user does not exist.
    #[doc(hidden)]
    pub fn command_as(&mut self, user_id: u8, netfn: u8, cmd: u8, data: &[u8]) -> Option<Reply> {
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let found = self
            .sessions
            .active()
            .find(|s| s.peer == peer && s.user.as_ref().is_some_and(|u| u.id == user_id))
            .map(|s| s.id);
        let sid = match found {
            Some(id) => id,
            None => {
                let u = self.users.by_id(user_id)?;
                self.sessions.insert_active(u, peer)
            }
        };
        let req = super::rmcp::Request {
            rs_addr: 0x20,
            netfn,
            rs_lun: 0,
            rq_addr: 0x81,
            rq_seq: 0,
            rq_lun: 0,
            cmd,
            data,
        };
        let r = self.command(sid, &req);
        if let Some(x) = self.close_after_reply.take() {
            self.sessions.close(x);
        }
        self.tick(Instant::now());
        Some(r)
    }

    /// Get Channel Payload Support (App 0x4E).
    pub(super) fn payload_support(&self, d: &[u8]) -> Reply {
        let Some(&c) = d.first() else {
            return err(cc::BAD_LENGTH);
        };
        if !channel_ok(c) {
            return err(cc::INVALID_FIELD);
        }
        let mut out = PAYLOADS.to_le_bytes().to_vec();
        out.extend_from_slice(&SETUP_PAYLOADS.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // no OEM payloads
        ok(out)
    }

    /// Get Channel Payload Version (App 0x4F): both payloads are 1.0.
    pub(super) fn payload_version(&self, d: &[u8]) -> Reply {
        if d.len() < 2 {
            return err(cc::BAD_LENGTH);
        }
        if !channel_ok(d[0]) {
            return err(cc::INVALID_FIELD);
        }
        match d[1] & 0x3F {
            t if t < 16 && PAYLOADS & (1 << t) != 0 => ok(vec![0x10]),
            _ => err(0x80), // payload type not available on this channel
        }
    }

    /// Get Channel OEM Payload Info (App 0x50): no OEM payloads.
    pub(super) fn oem_payload_info(&self, d: &[u8]) -> Reply {
        if d.len() < 7 {
            return err(cc::BAD_LENGTH);
        }
        if !channel_ok(d[0]) {
            return err(cc::INVALID_FIELD);
        }
        err(0x80) // OEM payload not supported
    }

    /// Whether user `id` may activate SOL (Set User Payload Access).
    pub(super) fn sol_allowed(&self, id: u8) -> bool {
        self.sol_denied & (1u64 << (id & 0x3F)) == 0
    }

    /// Set User Payload Access (App 0x4C): SOL (standard payload 1) per
    /// user; other payload bits are refused, as this BMC has no such
    /// payloads.
    pub(super) fn set_payload_access(&mut self, d: &[u8]) -> Reply {
        if d.len() != 6 {
            return err(cc::BAD_LENGTH);
        }
        let id = d[1] & 0x3F;
        if !channel_ok(d[0]) || id == 0 || id > crate::users::MAX_USERS {
            return err(cc::INVALID_FIELD);
        }
        if d[2] & !0x02 != 0 || d[3] != 0 || d[4] != 0 || d[5] != 0 {
            return err(cc::INVALID_FIELD);
        }
        let disable = match d[1] >> 6 {
            0 => false,
            1 => true,
            _ => return err(cc::INVALID_FIELD),
        };
        if d[2] & 0x02 == 0 {
            return ok(vec![]); // nothing to change
        }
        let mut denied = self.sol_denied;
        if disable {
            denied |= 1 << id;
        } else {
            denied &= !(1 << id);
        }
        let name = &self.vm.info.name;
        if let Err(e) = self
            .store
            .set_bmc_meta(name, super::SOL_DENIED_KEY, denied as i64)
        {
            log::error!("{name}: cannot store payload access: {e}");
            return err(cc::UNSPECIFIED);
        }
        self.sol_denied = denied;
        log::info!(
            "{name}: SOL payload {} for user {id} over IPMI",
            if disable { "disabled" } else { "enabled" }
        );
        ok(vec![])
    }

    /// Get User Payload Access (App 0x4D).
    pub(super) fn get_payload_access(&self, d: &[u8]) -> Reply {
        if d.len() < 2 {
            return err(cc::BAD_LENGTH);
        }
        let id = d[1] & 0x3F;
        if !channel_ok(d[0]) || id == 0 || id > crate::users::MAX_USERS {
            return err(cc::INVALID_FIELD);
        }
        ok(vec![if self.sol_allowed(id) { 0x02 } else { 0 }, 0, 0, 0])
    }

    /// Set Channel Security Keys (App 0x56): read or set K_R (key 0) and
    /// K_G (key 1). The keys cannot be locked. A non-zero K_G makes every
    /// RMCP+ session's integrity key from it (consoles then need `-k`/`-y`).
    pub(super) fn security_keys(&mut self, d: &[u8]) -> Reply {
        if d.len() < 3 {
            return err(cc::BAD_LENGTH);
        }
        if !channel_ok(d[0]) || d[2] > 1 {
            return err(cc::INVALID_FIELD);
        }
        let kg = d[2] == 1;
        match d[1] & 0x03 {
            // Read: lock status "not lockable", then the key.
            0 => {
                let mut out = vec![0];
                match (kg, &self.sessions.kg) {
                    (true, Some(k)) => {
                        let mut v = k.clone();
                        v.resize(20, 0);
                        out.extend_from_slice(&v);
                    }
                    (true, None) => out.extend_from_slice(&[0; 20]),
                    (false, _) => out.extend_from_slice(&self.kr),
                }
                ok(out)
            }
            1 => {
                let v = &d[3..];
                if v.len() != 20 {
                    return err(cc::BAD_LENGTH);
                }
                let name = self.vm.info.name.clone();
                let key = if kg { super::KG_KEY } else { super::KR_KEY };
                if let Err(e) = super::save_blob(&self.store, &name, key, v) {
                    log::error!("{name}: cannot store a channel key: {e}");
                    return err(cc::UNSPECIFIED);
                }
                if kg {
                    self.sessions.kg = v.iter().any(|&b| b != 0).then(|| v.to_vec());
                } else {
                    self.kr.copy_from_slice(v);
                }
                log::info!("{name}: {} set over IPMI", if kg { "K_G" } else { "K_R" });
                ok(vec![0])
            }
            2 => err(0x80), // key is not lockable
            _ => err(cc::INVALID_FIELD),
        }
    }

    /// Get Chassis Capabilities (chassis 0x00).
    pub(super) fn chassis_capabilities(&self) -> Reply {
        ok(self.chassis_caps.to_vec())
    }

    /// Set Chassis Capabilities (chassis 0x05): the flags (no intrusion
    /// sensor, lockout, diagnostic interrupt or interlock exist in a VM, so
    /// only the provided-feature bits a VM has may be set: none) and the
    /// device addresses.
    pub(super) fn set_chassis_capabilities(&mut self, d: &[u8]) -> Reply {
        if !(5..=6).contains(&d.len()) {
            return err(cc::BAD_LENGTH);
        }
        if d[0] & 0x0F != 0 || d[1..5].iter().any(|a| a & 1 != 0) {
            return err(cc::INVALID_FIELD);
        }
        self.chassis_caps.copy_from_slice(&d[..5]);
        ok(vec![])
    }

    /// Watchdog commands (App 0x22, 0x24, 0x25).
    pub(super) fn watchdog_cmd(&mut self, cmd: u8, d: &[u8]) -> Reply {
        let now = Instant::now();
        let r = match cmd {
            0x22 => self.watchdog.reset(now),
            0x24 => self.watchdog.set(d, now),
            _ => return ok(self.watchdog.get(now)),
        };
        match r {
            Ok(()) => {
                if cmd == 0x24 {
                    log::info!(
                        "{}: watchdog set: {:02x?}",
                        self.vm.info.name,
                        &d[..d.len().min(6)]
                    );
                }
                ok(vec![])
            }
            Err(c) => err(c),
        }
    }

    /// Whether the serve loop should wake up on its own (watchdog running,
    /// PEF looking at new SEL records, a postpone timer counting).
    pub fn timers_active(&self) -> bool {
        self.watchdog.running() || self.pef.enabled()
    }

    /// Run the watchdog and PEF up to `now`.
    pub fn tick(&mut self, now: Instant) {
        // A powered-down system stops the watchdog (it has nothing to
        // watch until it starts again).
        if self.watchdog.running() && self.vm.power_state() == crate::vm::Power::Off {
            log::info!("{}: watchdog stopped: the VM is off", self.vm.info.name);
            self.watchdog.stop(now);
        }
        while let Some(ev) = self.watchdog.poll(now) {
            self.watchdog_event(ev);
        }
        self.run_pef(now);
    }

    fn log_sel(&self, rec: [u8; 16]) {
        if self.global_enables & 0x08 == 0 {
            return;
        }
        let mut s = self.sel.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = s.add(rec) {
            log::error!("{}: SEL: {e}", self.vm.info.name);
        }
    }

    fn watchdog_event(&mut self, ev: watchdog::Event) {
        let name = self.vm.info.name.clone();
        let record = |offset: u8, interrupt: u8, timer_use: u8| {
            sel::system_event(
                0x20,
                WATCHDOG_TYPE,
                WATCHDOG_SENSOR,
                0x6F,
                [0xC0 | offset, (interrupt << 4) | timer_use, 0xFF],
            )
        };
        match ev {
            watchdog::Event::PreTimeout {
                interrupt,
                timer_use,
                log,
            } => {
                log::info!("{name}: watchdog pre-timeout (interrupt type {interrupt})");
                self.message_flags |= 0x08;
                if log {
                    self.log_sel(record(0x08, interrupt, timer_use));
                }
            }
            watchdog::Event::Expired {
                action,
                interrupt,
                timer_use,
                log,
            } => {
                log::warn!("{name}: watchdog expired: {action:?}");
                if log {
                    self.log_sel(record(action.event_offset(), interrupt, timer_use));
                }
                let a = match action {
                    watchdog::Action::None => return,
                    watchdog::Action::Reset => PowerAction::Reset,
                    watchdog::Action::PowerDown => PowerAction::Off,
                    watchdog::Action::PowerCycle => PowerAction::Cycle,
                };
                if let Err(e) = self.vm.power(a, "watchdog") {
                    log::warn!("{name}: watchdog action {a:?}: {e}");
                }
            }
        }
    }

    fn run_pef(&mut self, now: Instant) {
        let last = {
            let s = self.sel.lock().unwrap_or_else(|p| p.into_inner());
            s.records().last().map_or(0, |r| r.0)
        };
        if !self.pef.enabled() {
            self.pef_last_bmc = last;
            return;
        }
        match self.pef_postpone {
            Some(None) => return,
            Some(Some(t)) if now < t => return,
            Some(Some(_)) => self.pef_postpone = None,
            None => {}
        }
        if last == self.pef_last_bmc {
            return;
        }
        let new: Vec<(u16, [u8; 16])> = {
            let s = self.sel.lock().unwrap_or_else(|p| p.into_inner());
            s.records()
                .iter()
                .filter(|r| r.0 > self.pef_last_bmc)
                .copied()
                .collect()
        };
        self.pef_last_bmc = last;
        let name = self.vm.info.name.clone();
        for (id, rec) in new {
            let v = self.pef.evaluate(&rec);
            if v.matched == 0 {
                continue;
            }
            log::info!(
                "{name}: PEF: SEL record {id:#06x} matched filters {:#06x}, actions {:#04x}",
                v.matched,
                v.actions
            );
            let a = match v.power() {
                Some(pef::action::POWER_DOWN) => PowerAction::Off,
                Some(pef::action::POWER_CYCLE) => PowerAction::Cycle,
                Some(_) => PowerAction::Reset,
                None => continue,
            };
            if let Err(e) = self.vm.power(a, "pef") {
                log::warn!("{name}: PEF action {a:?}: {e}");
            }
        }
    }

    /// Sensor/Event commands other than sensors: event receiver, platform
    /// event, PEF. `None` for sensor commands.
    pub(super) fn event_cmd(
        &mut self,
        s: &Session,
        rq_addr: u8,
        cmd: u8,
        d: &[u8],
    ) -> Option<Reply> {
        Some(match cmd {
            0x00 => {
                if d.len() < 2 {
                    return Some(err(cc::BAD_LENGTH));
                }
                // 0xFF disables event message generation; else an even
                // slave address.
                if d[0] != 0xFF && d[0] & 1 != 0 {
                    return Some(err(cc::INVALID_FIELD));
                }
                self.event_receiver = [d[0], d[1] & 0x03];
                ok(vec![])
            }
            0x01 => ok(self.event_receiver.to_vec()),
            0x02 => self.platform_event(rq_addr, d),
            0x10 => ok(pef::capabilities()),
            0x11 => self.pef_postpone_cmd(d),
            0x12 => self.set_pef(s, d),
            0x13 => self.get_pef(d),
            0x14 => {
                if d.len() < 3 {
                    return Some(err(cc::BAD_LENGTH));
                }
                let id = u16::from_le_bytes([d[1], d[2]]);
                match d[0] & 1 {
                    0 => self.pef_last_sw = id,
                    _ => self.pef_last_bmc = id,
                }
                ok(vec![])
            }
            0x15 => {
                let s = self.sel.lock().unwrap_or_else(|p| p.into_inner());
                let last = s.records().last().map_or(0xFFFF, |r| r.0);
                let mut out = s.last_add.to_le_bytes().to_vec();
                out.extend_from_slice(&last.to_le_bytes());
                out.extend_from_slice(&self.pef_last_sw.to_le_bytes());
                out.extend_from_slice(&self.pef_last_bmc.to_le_bytes());
                ok(out)
            }
            _ => return None,
        })
    }

    /// Platform Event (S/E 0x02): logs the event in the SEL (PEF then sees
    /// it). Over LAN the generator is the requester's software ID; an
    /// 8-byte request carries the generator ID first.
    fn platform_event(&mut self, rq_addr: u8, d: &[u8]) -> Reply {
        // Generator ID: the software ID, and (byte 2) the channel it came
        // in on.
        let (gen, ev) = match d.len() {
            8 => (d[0] as u16, &d[1..]),
            5..=7 => (rq_addr as u16 | (LAN_CHANNEL as u16) << 12, d),
            _ => return err(cc::BAD_LENGTH),
        };
        if !matches!(ev[0], 0x03 | 0x04) {
            return err(cc::INVALID_FIELD);
        }
        let data = [
            ev[4],
            ev.get(5).copied().unwrap_or(0xFF),
            ev.get(6).copied().unwrap_or(0xFF),
        ];
        let mut rec = sel::system_event(gen, ev[1], ev[2], ev[3], data);
        rec[9] = ev[0];
        log::info!(
            "{}: platform event: sensor type {:#04x} number {:#04x} type {:#04x} data {data:02x?}",
            self.vm.info.name,
            ev[1],
            ev[2],
            ev[3]
        );
        self.log_sel(rec);
        ok(vec![])
    }

    /// Arm PEF Postpone Timer (S/E 0x11).
    fn pef_postpone_cmd(&mut self, d: &[u8]) -> Reply {
        let Some(&v) = d.first() else {
            return err(cc::BAD_LENGTH);
        };
        let now = Instant::now();
        match v {
            0x00 => self.pef_postpone = None,
            0xFE => self.pef_postpone = Some(None),
            0xFF => {}
            n => self.pef_postpone = Some(Some(now + Duration::from_secs(n as u64))),
        }
        let left = match self.pef_postpone {
            None => 0,
            Some(None) => 0xFE,
            Some(Some(t)) => t
                .saturating_duration_since(now)
                .as_secs_f64()
                .ceil()
                .min(253.0) as u8,
        };
        ok(vec![left])
    }

    fn set_pef(&mut self, s: &Session, d: &[u8]) -> Reply {
        if d.len() < 2 {
            return err(cc::BAD_LENGTH);
        }
        let (p, v) = (d[0] & 0x7F, &d[1..]);
        let held = |o: Option<u32>, bmc: &Bmc| {
            o.is_some_and(|o| o != s.id && bmc.sessions.get(o).is_some())
        };
        if p == 0 {
            if v.len() != 1 {
                return err(cc::BAD_LENGTH);
            }
            return match v[0] & 0x03 {
                0 | 2 => {
                    self.pef_lock = None;
                    ok(vec![])
                }
                1 if held(self.pef_lock, self) => err(pef::setcc::IN_PROGRESS),
                1 => {
                    self.pef_lock = Some(s.id);
                    ok(vec![])
                }
                _ => err(cc::INVALID_FIELD),
            };
        }
        if held(self.pef_lock, self) {
            return err(pef::setcc::IN_PROGRESS);
        }
        let was = self.pef.enabled();
        let mut new = self.pef.clone();
        if let Err(c) = new.set(p, v) {
            return err(c);
        }
        let name = self.vm.info.name.clone();
        if let Err(e) = super::save_blob(&self.store, &name, super::PEF_KEY, &new.pack()) {
            log::error!("{name}: cannot store the PEF configuration: {e}");
            return err(cc::UNSPECIFIED);
        }
        if !was && new.enabled() {
            // PEF acts on events logged from now on.
            let s = self.sel.lock().unwrap_or_else(|p| p.into_inner());
            self.pef_last_bmc = s.records().last().map_or(0, |r| r.0);
        }
        self.pef = new;
        log::info!("{name}: PEF parameter {p} set over IPMI");
        ok(vec![])
    }

    fn get_pef(&self, d: &[u8]) -> Reply {
        if d.len() < 3 {
            return err(cc::BAD_LENGTH);
        }
        let p = d[0] & 0x7F;
        let data = if p == 0 {
            Ok(vec![self
                .pef_lock
                .is_some_and(|o| self.sessions.get(o).is_some())
                as u8])
        } else {
            self.pef.get(p, d[1], d[2])
        };
        match data {
            Ok(v) => {
                let mut out = vec![0x11];
                if d[0] & 0x80 == 0 {
                    out.extend_from_slice(&v);
                }
                ok(out)
            }
            Err(c) => err(c),
        }
    }

    /// Partial Add SEL Entry (Storage 0x45).
    pub(super) fn partial_add_sel(&mut self, d: &[u8]) -> Reply {
        if d.len() < 6 {
            return err(cc::BAD_LENGTH);
        }
        let res = u16::from_le_bytes([d[0], d[1]]);
        if res != self.sel_reservation {
            return err(cc::RESERVATION);
        }
        let id = u16::from_le_bytes([d[2], d[3]]);
        let (off, last, data) = (d[4] as usize, d[5] & 0x01 != 0, &d[6..]);
        let mut buf = match self.partial_sel.take() {
            Some((r, b)) if r == res && id == 0 && off == b.len() && off != 0 => b,
            _ if off == 0 && id == 0 => Vec::new(),
            _ => return err(0x80), // record rejected: out of order
        };
        if buf.len() + data.len() > 16 {
            return err(cc::OUT_OF_RANGE);
        }
        buf.extend_from_slice(data);
        if !last {
            self.partial_sel = Some((res, buf));
            return ok(vec![0, 0]);
        }
        let Ok(rec) = <[u8; 16]>::try_from(&buf[..]) else {
            return err(0x80); // incomplete record
        };
        let mut sel = self.sel.lock().unwrap_or_else(|p| p.into_inner());
        match sel.add(rec) {
            Ok(Some(id)) => ok(id.to_le_bytes().to_vec()),
            Ok(None) => err(0x80),
            Err(e) => {
                log::error!("{}: SEL: {e}", self.vm.info.name);
                err(cc::UNSPECIFIED)
            }
        }
    }

    /// App commands of BMC messaging: global enables, message flags, the
    /// message queue, Send Message, Master Write-Read, channel access.
    /// `None` when not one of them.
    pub(super) fn messaging(&mut self, cmd: u8, d: &[u8]) -> Option<Reply> {
        Some(match cmd {
            0x2E => {
                let Some(&v) = d.first() else {
                    return Some(err(cc::BAD_LENGTH));
                };
                // OEM bits and the (absent) receive-message-queue and
                // event-buffer interrupts of a system interface stay off.
                if v & 0xF0 != 0 {
                    return Some(err(cc::INVALID_FIELD));
                }
                self.global_enables = v;
                ok(vec![])
            }
            0x2F => ok(vec![self.global_enables]),
            0x30 => {
                let Some(&v) = d.first() else {
                    return Some(err(cc::BAD_LENGTH));
                };
                self.message_flags &= !v;
                ok(vec![])
            }
            0x31 => ok(vec![self.message_flags]),
            // Get Message: nothing is ever queued (no IPMB devices).
            0x33 => err(0x80),
            // Read Event Message Buffer: the buffer is empty.
            0x35 => err(0x80),
            0x34 => {
                let Some(&c) = d.first() else {
                    return Some(err(cc::BAD_LENGTH));
                };
                match c & 0x0F {
                    // The primary IPMB has no device to answer.
                    0 => err(0x83), // NAK on write
                    _ => err(cc::INVALID_FIELD),
                }
            }
            // Master Write-Read: no private or public I2C bus.
            0x52 => {
                if d.len() < 3 {
                    return Some(err(cc::BAD_LENGTH));
                }
                err(0x83) // NAK on write
            }
            0x40 => self.set_channel_access(d),
            0x41 => {
                if d.len() < 2 {
                    return Some(err(cc::BAD_LENGTH));
                }
                if !channel_ok(d[0]) {
                    return Some(err(cc::INVALID_FIELD));
                }
                let i = match d[1] >> 6 {
                    1 => 0,
                    2 => 1,
                    _ => return Some(err(cc::INVALID_FIELD)),
                };
                ok(vec![self.channel_access[i], privilege::ADMIN])
            }
            _ => return None,
        })
    }

    /// Set Channel Access (App 0x40): the access mode must stay "always
    /// available" (this channel is how the BMC is reached), PEF alerting
    /// and per-message/user-level authentication switches are kept; the
    /// privilege limit stays Administrator (roles limit each user).
    fn set_channel_access(&mut self, d: &[u8]) -> Reply {
        if d.len() < 3 {
            return err(cc::BAD_LENGTH);
        }
        if !channel_ok(d[0]) {
            return err(cc::INVALID_FIELD);
        }
        let (a, p) = (d[1], d[2]);
        if a >> 6 == 3 || p >> 6 == 3 {
            return err(cc::INVALID_FIELD);
        }
        if a >> 6 != 0 && a & 0x07 != 2 {
            return err(0x83); // access mode not supported on this channel
        }
        if p >> 6 != 0 && p & 0x0F != privilege::ADMIN {
            return err(cc::INVALID_FIELD);
        }
        let v = (a & 0x38) | 0x02;
        match a >> 6 {
            1 => self.channel_access[0] = v,
            2 => self.channel_access[1] = v,
            _ => {}
        }
        ok(vec![])
    }

    /// Activate Payload's check of the user's payload access.
    pub(super) fn payload_refused(&self, s: &Session) -> bool {
        let id = s.user.as_ref().map_or(0, |u| u.id);
        !self.sol_allowed(id)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use super::*;
    use crate::config::UserConfig;
    use crate::store::Store;
    use crate::users::UserStore;
    use crate::vm::{Power, Vm, VmInfo, VmLimits};

    fn bmc() -> (Bmc, Arc<Vm>) {
        let store = Arc::new(Store::in_memory().unwrap());
        let info = VmInfo {
            name: "vm0".into(),
            uuid: [3; 16],
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
        let user = |name: &str, role: &str| UserConfig {
            name: name.into(),
            password: "password".into(),
            role: Some(role.into()),
        };
        let users = UserStore::load(
            &[user("admin", "Administrator"), user("oper", "Operator")],
            store.clone(),
        )
        .unwrap();
        let addr: SocketAddr = "127.0.0.1:623".parse().unwrap();
        let b = Bmc::new(
            vm.clone(),
            Arc::new(users),
            store,
            addr,
            super::super::SessionPolicy::default(),
        )
        .unwrap();
        (b, vm)
    }

    fn run(b: &mut Bmc, nf: u8, cmd: u8, d: &[u8]) -> Reply {
        b.command_as(2, nf, cmd, d).unwrap()
    }

    #[test]
    fn watchdog_expiry_powers_down_and_logs() {
        let (mut b, vm) = bmc();
        assert_eq!(run(&mut b, 0x06, 0x24, &[0x04, 0x02, 0, 0, 1, 0]).0, 0);
        assert_eq!(run(&mut b, 0x06, 0x22, &[]).0, 0);
        b.tick(Instant::now() + Duration::from_millis(150));
        assert_eq!(vm.power_state(), Power::Off);
        let sel = b.sel.lock().unwrap();
        let r = sel.records().last().unwrap().1;
        assert_eq!(
            (r[10], r[11], r[13] & 0x0F),
            (WATCHDOG_TYPE, WATCHDOG_SENSOR, 2)
        );
    }

    #[test]
    fn pef_filter_acts_on_platform_events_and_honours_postpone() {
        let (mut b, vm) = bmc();
        let mut f = vec![
            6,
            1,
            0x80,
            pef::action::POWER_DOWN,
            0,
            0,
            0xFF,
            0xFF,
            0x05,
            0xFF,
            0x6F,
        ];
        f.extend_from_slice(&[0x01, 0x00]);
        f.extend_from_slice(&[0; 9]);
        assert_eq!(run(&mut b, 0x04, 0x12, &f).0, 0);
        assert_eq!(run(&mut b, 0x04, 0x12, &[2, pef::action::POWER_DOWN]).0, 0);
        assert_eq!(run(&mut b, 0x04, 0x12, &[1, 1]).0, 0);
        // Postponed: nothing happens until the timer is disarmed.
        assert_eq!(run(&mut b, 0x04, 0x11, &[0xFE]), (0, vec![0xFE]));
        let ev = [0x04, 0x05, 0x01, 0x6F, 0x00, 0xFF, 0xFF];
        assert_eq!(run(&mut b, 0x04, 0x02, &ev).0, 0);
        assert_eq!(vm.power_state(), Power::On);
        assert_eq!(run(&mut b, 0x04, 0x11, &[0x00]), (0, vec![0]));
        assert_eq!(vm.power_state(), Power::Off);
        // The operator cannot change PEF.
        assert_eq!(
            b.command_as(3, 0x04, 0x12, &[1, 0]).unwrap().0,
            cc::INSUFFICIENT_PRIVILEGE
        );
        assert!(b.command_as(9, 0x04, 0x12, &[1, 0]).is_none());
    }

    #[test]
    fn payload_access_is_kept_per_user() {
        let (mut b, _) = bmc();
        assert_eq!(run(&mut b, 0x06, 0x4D, &[1, 3]), (0, vec![2, 0, 0, 0]));
        assert_eq!(run(&mut b, 0x06, 0x4C, &[1, 0x43, 2, 0, 0, 0]).0, 0);
        assert_eq!(run(&mut b, 0x06, 0x4D, &[1, 3]), (0, vec![0, 0, 0, 0]));
        assert!(!b.sol_allowed(3) && b.sol_allowed(2));
        assert_eq!(run(&mut b, 0x06, 0x4C, &[1, 0x03, 2, 0, 0, 0]).0, 0);
        assert!(b.sol_allowed(3));
    }

    #[test]
    fn arbitrary_commands_never_panic() {
        let (mut b, _) = bmc();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let r = next();
            let nf = [0x00, 0x04, 0x06, 0x0A, 0x0C][(r % 5) as usize];
            // Skip resets and session changes that would end the session.
            let cmd = match (r >> 8) as u8 {
                0x02 | 0x03 | 0x3C if nf == 0x06 => 0x01,
                c => c,
            };
            let n = ((r >> 16) % 24) as usize;
            let d: Vec<u8> = (0..n)
                .map(|i| (r >> (24 + i % 5 * 8)) as u8 ^ i as u8)
                .collect();
            let user = if r >> 63 == 1 { 3 } else { 2 };
            let (_, out) = b.command_as(user, nf, cmd, &d).unwrap();
            assert!(out.len() <= 256);
        }
    }
}
