//! IPMI commands inside a session: App, Chassis, Storage (FRU, SDR, SEL),
//! Sensor/Event and Transport (LAN, SOL). Each returns a completion code
//! and response data; privilege is checked before dispatch.

use std::time::{Duration, Instant};

use super::session::{privilege, Session};
use super::{cc, lan, netfn, rmcp, sdr, sel, sol, Bmc};
use crate::users::Role;
use crate::vm::{BootOverride, BootTarget, Power, PowerAction, PowerError};

/// IPMI's IANA enterprise number (Get Channel Info vendor ID).
const IPMI_IANA: [u8; 3] = [0xF2, 0x1B, 0x00];
/// VMware's IANA enterprise number, 6876 (Get Device ID manufacturer).
const VMWARE_IANA: [u8; 3] = [0xDC, 0x1A, 0x00];
/// The LAN channel's number.
pub const LAN_CHANNEL: u8 = 1;

/// The reply of one command.
pub type Reply = (u8, Vec<u8>);

fn ok(d: Vec<u8>) -> Reply {
    (cc::OK, d)
}

fn err(c: u8) -> Reply {
    (c, Vec::new())
}

/// Least privilege a command needs (IPMI 2.0 appendix G, abridged).
pub fn required_privilege(nf: u8, cmd: u8) -> u8 {
    match (nf, cmd) {
        (netfn::APP, 0x02 | 0x03) => privilege::ADMIN, // cold/warm reset
        (netfn::APP, 0x47 | 0x45 | 0x43 | 0x4C) => privilege::ADMIN, // user changes
        (netfn::APP, 0x2E | 0x30 | 0x40 | 0x56) => privilege::ADMIN,
        (netfn::APP, 0x22 | 0x24 | 0x4D) => privilege::OPERATOR,
        (netfn::APP, 0x48 | 0x49) => privilege::USER,
        (netfn::CHASSIS, 0x05) => privilege::ADMIN,
        (netfn::CHASSIS, 0x02 | 0x04 | 0x08) => privilege::OPERATOR,
        (netfn::SENSOR, 0x00 | 0x11 | 0x12 | 0x14 | 0x15) => privilege::ADMIN,
        (netfn::SENSOR, 0x02 | 0x13) => privilege::OPERATOR,
        (netfn::STORAGE, 0x12 | 0x24..=0x27 | 0x29) => privilege::OPERATOR,
        (netfn::STORAGE, 0x44..=0x47 | 0x49) => privilege::OPERATOR,
        (netfn::TRANSPORT, 0x01 | 0x21) => privilege::ADMIN,
        _ => privilege::USER,
    }
}

fn channel_ok(c: u8) -> bool {
    matches!(c & 0x0F, LAN_CHANNEL | 0x0E)
}

impl Bmc {
    /// Dispatch one in-session command for session `sid`.
    pub(super) fn command(&mut self, sid: u32, req: &rmcp::Request<'_>) -> Reply {
        let (nf, cmd, d) = (req.netfn, req.cmd, req.data);
        let Some(s) = self.sessions.get(sid).cloned() else {
            return err(cc::INVALID_SESSION);
        };
        if s.privilege < required_privilege(nf, cmd) {
            return err(cc::INSUFFICIENT_PRIVILEGE);
        }
        let r = self.dispatch(&s, req.rq_addr, nf, cmd, d);
        if r.0 != cc::OK {
            log::debug!(
                "{}: IPMI netfn {nf:#04x} cmd {cmd:#04x} {:02x?}: completion code {:#04x}",
                self.vm.info.name,
                &d[..d.len().min(8)],
                r.0
            );
        }
        r
    }

    fn dispatch(&mut self, s: &Session, rq_addr: u8, nf: u8, cmd: u8, d: &[u8]) -> Reply {
        match nf {
            netfn::APP => self.app(s, cmd, d),
            netfn::CHASSIS => self.chassis(cmd, d),
            netfn::STORAGE => self.storage(cmd, d),
            netfn::SENSOR => match self.event_cmd(s, rq_addr, cmd, d) {
                Some(r) => r,
                None => self.sensor(cmd, d),
            },
            netfn::TRANSPORT => self.transport(s, cmd, d),
            _ => err(cc::INVALID_COMMAND),
        }
    }

    /// Get Channel Authentication Capabilities (App 0x38): answered inside
    /// and outside sessions.
    pub(super) fn auth_capabilities(&self, d: &[u8]) -> Reply {
        if d.len() < 2 {
            return err(cc::BAD_LENGTH);
        }
        if !channel_ok(d[0]) {
            return err(cc::INVALID_FIELD);
        }
        let v2 = d[0] & 0x80 != 0;
        let mut types = 0x14u8; // straight password, MD5
        if self.sessions.policy.allow_auth_none {
            types |= 0x01;
        }
        if v2 {
            types |= 0x80;
        }
        // Non-null user names enabled; no null user, no anonymous login;
        // per-message and user-level authentication on; bit 5: K_G set.
        let status = if self.sessions.kg.is_some() {
            0x24
        } else {
            0x04
        };
        let ext = if v2 { 0x03 } else { 0x00 };
        ok(vec![LAN_CHANNEL, types, status, ext, 0, 0, 0, 0])
    }

    /// Get Channel Cipher Suites (App 0x54), inside and outside sessions.
    pub(super) fn cipher_suites(&self, d: &[u8]) -> Reply {
        if d.len() < 3 {
            return err(cc::BAD_LENGTH);
        }
        if !channel_ok(d[0]) || d[1] != 0 {
            return err(cc::INVALID_FIELD);
        }
        let mut records = Vec::new();
        for s in self.sessions.policy.suites() {
            records.extend_from_slice(&[
                0xC0,
                s.id,
                s.auth,
                0x40 | s.integrity,
                0x80 | s.confidentiality,
            ]);
        }
        let index = (d[2] & 0x3F) as usize;
        let start = (index * 16).min(records.len());
        let end = (start + 16).min(records.len());
        let mut out = vec![LAN_CHANNEL];
        out.extend_from_slice(&records[start..end]);
        ok(out)
    }

    fn app(&mut self, s: &Session, cmd: u8, d: &[u8]) -> Reply {
        match cmd {
            // Get Device ID: device 0x20, no device SDRs, firmware 1.00,
            // IPMI 2.0; chassis, FRU, SEL, SDR repository and sensor device.
            0x01 => {
                let mut out = vec![0x20, 0x01, 0x01, 0x00, 0x02, 0x8F];
                out.extend_from_slice(&VMWARE_IANA);
                out.extend_from_slice(&[0x01, 0x00, 0, 0, 0, 0]);
                ok(out)
            }
            // Cold / warm reset: the BMC restarts its sessions (the
            // requester's survives long enough to close cleanly).
            0x02 | 0x03 => {
                log::info!(
                    "{}: BMC {} reset requested",
                    self.vm.info.name,
                    if cmd == 0x02 { "cold" } else { "warm" }
                );
                self.sessions.close_all_but(s.id);
                self.identify_until = None;
                if cmd == 0x02 {
                    // A cold reset starts the BMC over: the watchdog is
                    // stopped and has to be set again.
                    self.watchdog = Default::default();
                }
                ok(vec![])
            }
            0x04 => ok(vec![0x55, 0x00]), // self test passed
            0x08 | 0x37 => ok(self.guid.to_vec()),
            0x38 => self.auth_capabilities(d),
            0x54 => self.cipher_suites(d),
            0x3B => self.set_privilege(s.id, d),
            0x3C => self.close_session(s, d),
            0x3D => self.session_info(s, d),
            0x42 => {
                if d.is_empty() {
                    return err(cc::BAD_LENGTH);
                }
                if !channel_ok(d[0]) {
                    return err(cc::INVALID_FIELD);
                }
                let active = self.sessions.active().count().min(63) as u8;
                let mut out = vec![LAN_CHANNEL, 0x04, 0x01, 0x80 | active];
                out.extend_from_slice(&IPMI_IANA);
                out.extend_from_slice(&[0, 0]);
                ok(out)
            }
            0x44 => self.user_access(d),
            0x46 => {
                if d.is_empty() {
                    return err(cc::BAD_LENGTH);
                }
                let id = d[0] & 0x3F;
                if id == 0 || id > crate::users::MAX_USERS {
                    return err(cc::INVALID_FIELD);
                }
                let mut name = [0u8; 16];
                if let Some(u) = self.users.by_id(id) {
                    let b = u.name.as_bytes();
                    let n = b.len().min(16);
                    name[..n].copy_from_slice(&b[..n]);
                }
                ok(name.to_vec())
            }
            0x47 => self.set_user_password(d),
            0x43 => self.set_user_access(d),
            0x45 => self.set_user_name(d),
            0x48 => self.activate_payload(s, d),
            0x49 => self.deactivate_payload(s, d),
            0x4A => {
                if d.is_empty() {
                    return err(cc::BAD_LENGTH);
                }
                if d[0] & 0x3F != rmcp::PAYLOAD_SOL {
                    return ok(vec![0, 0, 0]);
                }
                // One SOL instance; bit 0: instance 1 active.
                ok(vec![1, self.sol.is_some() as u8, 0])
            }
            0x22 | 0x24 | 0x25 => self.watchdog_cmd(cmd, d),
            0x4C => self.set_payload_access(d),
            0x4D => self.get_payload_access(d),
            0x4E => self.payload_support(d),
            0x4F => self.payload_version(d),
            0x50 => self.oem_payload_info(d),
            0x56 => self.security_keys(d),
            0x4B => {
                if d.len() < 2 {
                    return err(cc::BAD_LENGTH);
                }
                if d[0] & 0x3F != rmcp::PAYLOAD_SOL || d[1] & 0x0F != 1 {
                    return err(cc::INVALID_FIELD);
                }
                let sid = self.sol.as_ref().map_or(0, |a| a.session);
                let mut out = sid.to_le_bytes().to_vec();
                // Payload-specific: serial port number 1.
                out.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
                ok(out)
            }
            _ => self
                .messaging(cmd, d)
                .unwrap_or_else(|| err(cc::INVALID_COMMAND)),
        }
    }

    fn set_privilege(&mut self, sid: u32, d: &[u8]) -> Reply {
        if d.is_empty() {
            return err(cc::BAD_LENGTH);
        }
        let Some(s) = self.sessions.get_mut(sid) else {
            return err(cc::INVALID_SESSION);
        };
        let want = d[0] & 0x0F;
        match want {
            0 => {}
            privilege::CALLBACK..=privilege::ADMIN if want <= s.max_priv => s.privilege = want,
            privilege::CALLBACK..=privilege::ADMIN => return err(0x81),
            _ => return err(0x80),
        }
        ok(vec![s.privilege])
    }

    fn close_session(&mut self, s: &Session, d: &[u8]) -> Reply {
        if d.len() < 4 {
            return err(cc::BAD_LENGTH);
        }
        let mut id = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
        if id == 0 {
            let Some(h) = d.get(4) else {
                return err(cc::BAD_LENGTH);
            };
            match self.sessions.active().find(|x| x.handle == *h) {
                Some(x) => id = x.id,
                None => return err(0x88), // invalid session handle
            }
        }
        if id != s.id && s.privilege < privilege::ADMIN {
            return err(cc::INSUFFICIENT_PRIVILEGE);
        }
        if self.sessions.get(id).is_none() {
            return err(0x87); // invalid session ID
        }
        self.close_after_reply = Some(id);
        ok(vec![])
    }

    fn session_info(&self, s: &Session, d: &[u8]) -> Reply {
        if d.is_empty() {
            return err(cc::BAD_LENGTH);
        }
        let active: Vec<&Session> = self.sessions.active().collect();
        let found = match d[0] {
            0x00 => Some(s),
            0xFE => d
                .get(1)
                .and_then(|h| active.iter().copied().find(|x| x.handle == *h)),
            0xFF => {
                if d.len() < 5 {
                    return err(cc::BAD_LENGTH);
                }
                let id = u32::from_le_bytes([d[1], d[2], d[3], d[4]]);
                active.iter().copied().find(|x| x.id == id)
            }
            n => active.get(n as usize - 1).copied(),
        };
        let mut out = vec![
            found.map_or(0, |x| x.handle),
            self.sessions.policy.max_sessions.min(63) as u8,
            active.len().min(63) as u8,
        ];
        let Some(x) = found else {
            return ok(out);
        };
        let proto = if x.plus { 0x10 } else { 0x00 };
        out.push(x.user.as_ref().map_or(0, |u| u.id));
        out.push(x.privilege);
        out.push(proto | LAN_CHANNEL);
        match x.peer.ip() {
            std::net::IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            std::net::IpAddr::V6(_) => out.extend_from_slice(&[0; 4]),
        }
        out.extend_from_slice(&[0; 6]); // the console's MAC is not known over UDP
        out.extend_from_slice(&x.peer.port().to_le_bytes());
        ok(out)
    }

    fn user_access(&self, d: &[u8]) -> Reply {
        if d.len() < 2 {
            return err(cc::BAD_LENGTH);
        }
        let id = d[1] & 0x3F;
        if !channel_ok(d[0]) || id == 0 || id > crate::users::MAX_USERS {
            return err(cc::INVALID_FIELD);
        }
        let users = self.users.list();
        let enabled = users.iter().filter(|u| u.enabled).count() as u8;
        let u = users.iter().find(|u| u.id == id);
        let status = match u {
            Some(u) if u.enabled => 0x40,
            Some(_) => 0x80,
            None => 0x00,
        };
        let access = match u {
            // IPMI messaging enabled, privilege limit from the role.
            Some(u) if u.enabled => 0x10 | u.role.ipmi_privilege(),
            // Disabled users (and `user priv N 15`) have no access.
            _ => 0x0F,
        };
        ok(vec![
            crate::users::MAX_USERS,
            status | enabled,
            users.len() as u8,
            access,
        ])
    }

    /// Set User Access (App 0x43): the privilege limit becomes the user's
    /// role (shared by every channel and service). No Access (0xF) disables
    /// the user (re-enabling restores the role it had); Callback and OEM
    /// have no role here and are refused.
    fn set_user_access(&mut self, d: &[u8]) -> Reply {
        if d.len() < 3 {
            return err(cc::BAD_LENGTH);
        }
        let id = d[1] & 0x3F;
        if !channel_ok(d[0]) || id == 0 || id > crate::users::MAX_USERS {
            return err(cc::INVALID_FIELD);
        }
        let Some(u) = self.users.by_id(id) else {
            return err(cc::INVALID_FIELD);
        };
        let level = d[2] & 0x0F;
        let r = match level {
            0x0F => self.users.set_enabled(id, false),
            l => match Role::from_ipmi_privilege(l) {
                Some(role) => self.users.set_role(id, role),
                None => return err(cc::INVALID_FIELD),
            },
        };
        match r {
            Ok(()) => {
                log::info!(
                    "{}: user {} given privilege {level:#x} over IPMI",
                    self.vm.info.name,
                    u.name
                );
                ok(vec![])
            }
            Err(e) => {
                log::error!("{}: user change failed: {e}", self.vm.info.name);
                err(cc::UNSPECIFIED)
            }
        }
    }

    /// Set User Name (App 0x45): renames a user; on an empty slot creates a
    /// disabled user with an empty password and the lowest role (ReadOnly),
    /// as a BMC's fresh slot has no access until enabled; an empty name
    /// deletes the user.
    fn set_user_name(&mut self, d: &[u8]) -> Reply {
        if d.len() != 17 {
            return err(cc::BAD_LENGTH);
        }
        let id = d[0] & 0x3F;
        // User 1 is the null user, which has no name.
        if !(2..=crate::users::MAX_USERS).contains(&id) {
            return err(cc::INVALID_FIELD);
        }
        let Ok(name) = std::str::from_utf8(super::session::trim_name(&d[1..])) else {
            return err(cc::INVALID_FIELD);
        };
        let existing = self.users.by_id(id);
        let r = match (&existing, name.is_empty()) {
            (None, true) => return ok(vec![]),
            (Some(_), true) => self.users.delete(id),
            (Some(_), false) => self.users.rename(id, name),
            (None, false) => self
                .users
                .create(Some(id), name, b"", Role::ReadOnly, false)
                .map(|_| ()),
        };
        match r {
            Ok(()) => {
                log::info!(
                    "{}: user {id} named {name:?} over IPMI (was {:?})",
                    self.vm.info.name,
                    existing.map(|u| u.name)
                );
                ok(vec![])
            }
            Err(e @ (crate::users::UserError::BadName | crate::users::UserError::NameTaken(_))) => {
                log::warn!("{}: set user name refused: {e}", self.vm.info.name);
                err(cc::INVALID_FIELD)
            }
            Err(e) => {
                log::error!("{}: user change failed: {e}", self.vm.info.name);
                err(cc::UNSPECIFIED)
            }
        }
    }

    fn set_user_password(&mut self, d: &[u8]) -> Reply {
        if d.len() < 2 {
            return err(cc::BAD_LENGTH);
        }
        let id = d[0] & 0x3F;
        let wide = d[0] & 0x80 != 0;
        let op = d[1] & 0x03;
        let Some(u) = self.users.by_id(id) else {
            return err(cc::INVALID_FIELD);
        };
        let pw = &d[2..];
        let need = if wide { 20 } else { 16 };
        let r = match op {
            0 => self.users.set_enabled(id, false),
            1 => self.users.set_enabled(id, true),
            2 | 3 if pw.len() != need => return err(cc::BAD_LENGTH),
            2 => {
                let end = pw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                self.users.set_password(id, &pw[..end])
            }
            _ => {
                let end = pw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                return if super::crypto::ct_eq(&pw[..end], &u.password) {
                    ok(vec![])
                } else {
                    err(0x80) // password test failed
                };
            }
        };
        match r {
            Ok(()) => {
                log::info!(
                    "{}: user {} changed over IPMI (operation {op})",
                    self.vm.info.name,
                    u.name
                );
                ok(vec![])
            }
            Err(e) => {
                log::error!("{}: user change failed: {e}", self.vm.info.name);
                err(cc::UNSPECIFIED)
            }
        }
    }

    fn chassis(&mut self, cmd: u8, d: &[u8]) -> Reply {
        match cmd {
            0x00 => self.chassis_capabilities(),
            0x05 => self.set_chassis_capabilities(d),
            0x01 => {
                let on = self.vm.power_state() == Power::On;
                // Power restore policy "previous" (bits 6:5 = 01).
                let b1 = on as u8 | 0x20;
                let b2 = if self.last_on_by_ipmi() { 0x10 } else { 0x00 };
                let ident = match self.identify_until {
                    Some(None) => 0x20,
                    Some(Some(t)) if Instant::now() < t => 0x10,
                    _ => 0x00,
                };
                ok(vec![b1, b2, 0x40 | ident])
            }
            0x02 => {
                let Some(&c) = d.first() else {
                    return err(cc::BAD_LENGTH);
                };
                let action = match c & 0x0F {
                    0 => PowerAction::Off,
                    1 => PowerAction::On,
                    2 => PowerAction::Cycle,
                    3 => PowerAction::Reset,
                    5 => PowerAction::SoftOff,
                    4 => return err(cc::NOT_IN_STATE), // no NMI in a simulated guest
                    _ => return err(cc::INVALID_FIELD),
                };
                match self.vm.power(action, "ipmi") {
                    Ok(()) => ok(vec![]),
                    Err(e) => {
                        log::warn!(
                            "{}: chassis control {action:?} refused: {e}",
                            self.vm.info.name
                        );
                        match e {
                            PowerError::PoweredOff(_)
                            | PowerError::NoAgent(_)
                            | PowerError::InProgress(_) => err(cc::NOT_IN_STATE),
                        }
                    }
                }
            }
            0x04 => {
                let secs = d.first().copied().unwrap_or(15);
                let force = d.get(1).is_some_and(|f| f & 1 != 0);
                self.identify_until = if force {
                    Some(None)
                } else if secs == 0 {
                    None
                } else {
                    Some(Some(Instant::now() + Duration::from_secs(secs as u64)))
                };
                ok(vec![])
            }
            0x07 => ok(vec![self.restart_cause(), LAN_CHANNEL]),
            0x08 => self.set_boot_option(d),
            0x09 => self.get_boot_option(d),
            // Get POH Counter: minutes per count, counts since power on.
            0x0F => {
                let mins = self.vm.lock().data.booted_at.elapsed().as_secs() / 60;
                let mut out = vec![60];
                out.extend_from_slice(&(mins as u32 / 60).to_le_bytes());
                ok(out)
            }
            _ => err(cc::INVALID_COMMAND),
        }
    }

    fn set_boot_option(&mut self, d: &[u8]) -> Reply {
        let Some(&p) = d.first() else {
            return err(cc::BAD_LENGTH);
        };
        let data = &d[1..];
        match p & 0x7F {
            0 => {
                let Some(&v) = data.first() else {
                    return err(cc::BAD_LENGTH);
                };
                self.boot_set_in_progress = v & 0x03;
                ok(vec![])
            }
            // Service partition selector / scan, acknowledge, initiator
            // info and mailbox: accepted, nothing in a VM uses them.
            2 | 3 | 4 | 6 | 7 => ok(vec![]),
            5 => {
                if data.len() < 5 {
                    return err(cc::BAD_LENGTH);
                }
                let valid = data[0] & 0x80 != 0;
                let target = match (data[1] >> 2) & 0x0F {
                    0x0 => BootTarget::None,
                    0x1 => BootTarget::Pxe,
                    0x2 | 0x3 | 0xB => BootTarget::Hdd,
                    0x5 | 0x8 | 0x9 => BootTarget::Cd,
                    0x6 => BootTarget::BiosSetup,
                    0xF => BootTarget::Usb,
                    _ => return err(cc::INVALID_FIELD),
                };
                let b = if valid {
                    BootOverride {
                        target,
                        persistent: data[0] & 0x40 != 0,
                        uefi: data[0] & 0x20 != 0,
                    }
                } else {
                    BootOverride::default()
                };
                log::info!("{}: boot override {b:?} set over IPMI", self.vm.info.name);
                self.vm.set_boot_override(b);
                ok(vec![])
            }
            _ => err(0x80), // parameter not supported
        }
    }

    fn get_boot_option(&self, d: &[u8]) -> Reply {
        let Some(&p) = d.first() else {
            return err(cc::BAD_LENGTH);
        };
        let p = p & 0x7F;
        let data = match p {
            0 => vec![self.boot_set_in_progress],
            3 => vec![0],
            4 => vec![0, 0],
            5 => {
                let b = self.vm.boot_override();
                let dev = match b.target {
                    BootTarget::None => 0x0,
                    BootTarget::Pxe => 0x1,
                    BootTarget::Hdd => 0x2,
                    BootTarget::Cd => 0x5,
                    BootTarget::BiosSetup => 0x6,
                    BootTarget::Usb => 0xF,
                };
                let mut b1 = 0;
                if b.target != BootTarget::None {
                    b1 |= 0x80;
                }
                if b.persistent {
                    b1 |= 0x40;
                }
                if b.uefi {
                    b1 |= 0x20;
                }
                vec![b1, dev << 2, 0, 0, 0]
            }
            _ => return err(0x80),
        };
        let mut out = vec![0x01, p];
        out.extend_from_slice(&data);
        ok(out)
    }

    fn storage(&mut self, cmd: u8, d: &[u8]) -> Reply {
        match cmd {
            // FRU: one device, ID 0.
            0x10 => {
                if d.first() != Some(&0) {
                    return err(cc::NOT_PRESENT);
                }
                let n = self.fru.len() as u16;
                let mut out = n.to_le_bytes().to_vec();
                out.push(0);
                ok(out)
            }
            0x11 => {
                if d.len() < 4 {
                    return err(cc::BAD_LENGTH);
                }
                if d[0] != 0 {
                    return err(cc::NOT_PRESENT);
                }
                let off = u16::from_le_bytes([d[1], d[2]]) as usize;
                if off >= self.fru.len() {
                    return err(cc::OUT_OF_RANGE);
                }
                let n = (d[3] as usize).min(self.fru.len() - off).min(MAX_READ);
                let mut out = vec![n as u8];
                out.extend_from_slice(&self.fru[off..off + n]);
                ok(out)
            }
            // Write FRU Data: the FRU describes the VM (name, UUID, hvsim
            // version) and is write-protected.
            0x12 => {
                if d.len() < 4 {
                    return err(cc::BAD_LENGTH);
                }
                if d[0] != 0 {
                    return err(cc::NOT_PRESENT);
                }
                err(0x80) // write-protected offset
            }
            // Add / Partial Add / Delete SDR, Clear SDR Repository: the
            // records describe the VM's fixed sensors.
            0x24..=0x27 => err(cc::NOT_IN_STATE),
            // SDR repository time: the SEL's clock.
            0x28 => {
                let sel = self.sel.lock().unwrap_or_else(|p| p.into_inner());
                ok(sel.time().to_le_bytes().to_vec())
            }
            0x45 => self.partial_add_sel(d),
            // SDR repository.
            0x20 => {
                let mut out = vec![0x51];
                out.extend_from_slice(&(sdr::SENSORS.len() as u16).to_le_bytes());
                out.extend_from_slice(&[0, 0]); // no free space: read-only
                out.extend_from_slice(&self.started_secs.to_le_bytes());
                out.extend_from_slice(&[0; 4]);
                out.push(0x22); // non-modal update, reserve supported
                ok(out)
            }
            0x22 => {
                self.sdr_reservation = next_reservation(self.sdr_reservation);
                ok(self.sdr_reservation.to_le_bytes().to_vec())
            }
            0x23 => self.get_sdr(d),
            0x40 => {
                let sel = self.sel.lock().unwrap_or_else(|p| p.into_inner());
                let n = sel.records().len();
                let mut out = vec![0x51];
                out.extend_from_slice(&(n as u16).to_le_bytes());
                out.extend_from_slice(&(((sel::MAX_ENTRIES - n) * 16) as u16).to_le_bytes());
                out.extend_from_slice(&sel.last_add.to_le_bytes());
                out.extend_from_slice(&sel.last_erase.to_le_bytes());
                // Overflow flag; delete, partial add, reserve and
                // allocation info supported.
                out.push(((sel.overflow as u8) << 7) | 0x0F);
                ok(out)
            }
            0x41 => {
                let sel = self.sel.lock().unwrap_or_else(|p| p.into_inner());
                let free = (sel::MAX_ENTRIES - sel.records().len()) as u16;
                let mut out = (sel::MAX_ENTRIES as u16).to_le_bytes().to_vec();
                out.extend_from_slice(&16u16.to_le_bytes());
                out.extend_from_slice(&free.to_le_bytes());
                out.extend_from_slice(&free.to_le_bytes());
                out.push(1);
                ok(out)
            }
            0x42 => {
                self.sel_reservation = next_reservation(self.sel_reservation);
                ok(self.sel_reservation.to_le_bytes().to_vec())
            }
            0x43 => self.get_sel_entry(d),
            0x44 => {
                let Ok(r) = <[u8; 16]>::try_from(d) else {
                    return err(cc::BAD_LENGTH);
                };
                let mut sel = self.sel.lock().unwrap_or_else(|p| p.into_inner());
                match sel.add(r) {
                    Ok(Some(id)) => ok(id.to_le_bytes().to_vec()),
                    Ok(None) => err(0x80), // out of space
                    Err(e) => {
                        log::error!("{}: SEL: {e}", self.vm.info.name);
                        err(cc::UNSPECIFIED)
                    }
                }
            }
            0x46 => {
                if d.len() < 4 {
                    return err(cc::BAD_LENGTH);
                }
                let res = u16::from_le_bytes([d[0], d[1]]);
                if res != 0 && res != self.sel_reservation {
                    return err(cc::RESERVATION);
                }
                let mut sel = self.sel.lock().unwrap_or_else(|p| p.into_inner());
                let mut id = u16::from_le_bytes([d[2], d[3]]);
                if id == 0 {
                    id = sel.records().first().map_or(0, |r| r.0);
                } else if id == 0xFFFF {
                    id = sel.records().last().map_or(0, |r| r.0);
                }
                match sel.delete(id) {
                    Ok(true) => ok(id.to_le_bytes().to_vec()),
                    Ok(false) => err(cc::NOT_PRESENT),
                    Err(e) => {
                        log::error!("{}: SEL: {e}", self.vm.info.name);
                        err(cc::UNSPECIFIED)
                    }
                }
            }
            0x47 => {
                if d.len() < 6 {
                    return err(cc::BAD_LENGTH);
                }
                if u16::from_le_bytes([d[0], d[1]]) != self.sel_reservation {
                    return err(cc::RESERVATION);
                }
                if &d[2..5] != b"CLR" {
                    return err(cc::INVALID_FIELD);
                }
                if d[5] == 0xAA {
                    let mut sel = self.sel.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = sel.clear() {
                        log::error!("{}: SEL: {e}", self.vm.info.name);
                        return err(cc::UNSPECIFIED);
                    }
                    log::info!("{}: SEL cleared over IPMI", self.vm.info.name);
                }
                ok(vec![0x01]) // erasure completed
            }
            0x48 => {
                let sel = self.sel.lock().unwrap_or_else(|p| p.into_inner());
                ok(sel.time().to_le_bytes().to_vec())
            }
            0x29 | 0x49 => {
                if d.len() < 4 {
                    return err(cc::BAD_LENGTH);
                }
                let t = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
                let mut sel = self.sel.lock().unwrap_or_else(|p| p.into_inner());
                match sel.set_time(t) {
                    Ok(()) => ok(vec![]),
                    Err(e) => {
                        log::error!("{}: SEL: {e}", self.vm.info.name);
                        err(cc::UNSPECIFIED)
                    }
                }
            }
            // Get SEL Time UTC Offset: unspecified.
            0x5C => ok(vec![0xFF, 0x07]),
            _ => err(cc::INVALID_COMMAND),
        }
    }

    fn get_sdr(&self, d: &[u8]) -> Reply {
        if d.len() < 6 {
            return err(cc::BAD_LENGTH);
        }
        let res = u16::from_le_bytes([d[0], d[1]]);
        let id = u16::from_le_bytes([d[2], d[3]]);
        let (off, count) = (d[4] as usize, d[5] as usize);
        if off != 0 && res != self.sdr_reservation {
            return err(cc::RESERVATION);
        }
        let n = sdr::SENSORS.len();
        let index = match id {
            0 => 0,
            0xFFFF => n - 1,
            i => i as usize - 1,
        };
        let Some(rec) = sdr::record(index) else {
            return err(cc::NOT_PRESENT);
        };
        let next: u16 = if index + 1 < n {
            index as u16 + 2
        } else {
            0xFFFF
        };
        if off > rec.len() {
            return err(cc::OUT_OF_RANGE);
        }
        let take = if count == 0xFF {
            rec.len() - off
        } else {
            count.min(rec.len() - off)
        };
        if take > MAX_READ {
            return err(0xCA); // cannot return that many bytes
        }
        let mut out = next.to_le_bytes().to_vec();
        out.extend_from_slice(&rec[off..off + take]);
        ok(out)
    }

    fn get_sel_entry(&self, d: &[u8]) -> Reply {
        if d.len() < 6 {
            return err(cc::BAD_LENGTH);
        }
        let res = u16::from_le_bytes([d[0], d[1]]);
        let id = u16::from_le_bytes([d[2], d[3]]);
        let (off, count) = (d[4] as usize, d[5] as usize);
        if off != 0 && res != self.sel_reservation {
            return err(cc::RESERVATION);
        }
        let sel = self.sel.lock().unwrap_or_else(|p| p.into_inner());
        let recs = sel.records();
        let i = match id {
            0 if !recs.is_empty() => 0,
            0xFFFF if !recs.is_empty() => recs.len() - 1,
            _ => match recs.iter().position(|r| r.0 == id) {
                Some(i) => i,
                None => return err(cc::NOT_PRESENT),
            },
        };
        let next = recs.get(i + 1).map_or(0xFFFF, |r| r.0);
        let rec = &recs[i].1;
        if off > 16 {
            return err(cc::OUT_OF_RANGE);
        }
        let take = if count == 0xFF {
            16 - off
        } else {
            count.min(16 - off)
        };
        let mut out = next.to_le_bytes().to_vec();
        out.extend_from_slice(&rec[off..off + take]);
        ok(out)
    }

    fn sensor(&self, cmd: u8, d: &[u8]) -> Reply {
        let Some(&n) = d.first() else {
            return err(cc::BAD_LENGTH);
        };
        let Some(s) = sdr::sensor(n) else {
            return err(cc::NOT_PRESENT);
        };
        match cmd {
            0x2D => ok(sdr::reading(s, &self.vm)),
            0x27 => match sdr::thresholds(s) {
                Some(t) => ok(t),
                None => err(cc::INVALID_COMMAND),
            },
            // Get Sensor Hysteresis: one count each way.
            0x25 => match s.kind {
                sdr::Kind::Threshold { .. } => ok(vec![1, 1]),
                sdr::Kind::Discrete { .. } => ok(vec![0, 0]),
            },
            // Get Sensor Event Enable: events and scanning on, none selected.
            0x29 => ok(vec![0xC0, 0, 0, 0, 0]),
            _ => err(cc::INVALID_COMMAND),
        }
    }

    fn transport(&mut self, s: &Session, cmd: u8, d: &[u8]) -> Reply {
        match cmd {
            0x01 | 0x21 => return self.set_config(s, cmd, d),
            0x02 | 0x22 => {}
            _ => return err(cc::INVALID_COMMAND),
        }
        if d.len() < 4 {
            return err(cc::BAD_LENGTH);
        }
        if !channel_ok(d[0]) {
            return err(cc::INVALID_FIELD);
        }
        let rev_only = d[0] & 0x80 != 0;
        let data = match (cmd, d[1]) {
            // LAN alert destination type and address: only destination 0
            // (the volatile one) exists.
            (0x02, 18 | 19) if d[2] != 0 => return err(cc::OUT_OF_RANGE),
            (0x02, 18) => Some([&[0][..], &self.alert_dest.0].concat()),
            (0x02, 19) => Some([&[0][..], &self.alert_dest.1].concat()),
            (0x02, p) => self.lan_param(p),
            (_, p) => self.sol_param(p),
        };
        let Some(data) = data else {
            return err(0x80); // parameter not supported
        };
        let mut out = vec![0x11];
        if !rev_only {
            out.extend_from_slice(&data);
        }
        ok(out)
    }

    /// Set LAN (0x01) or SOL (0x21) Configuration Parameters.
    fn set_config(&mut self, s: &Session, cmd: u8, d: &[u8]) -> Reply {
        if d.len() < 3 {
            return err(cc::BAD_LENGTH);
        }
        if !channel_ok(d[0]) {
            return err(cc::INVALID_FIELD);
        }
        let (p, v) = (d[1], &d[2..]);
        let name = self.vm.info.name.clone();
        if p == 0 {
            if v.len() != 1 {
                return err(cc::BAD_LENGTH);
            }
            let lock = if cmd == 0x01 {
                &mut self.lan_lock
            } else {
                &mut self.sol_lock
            };
            return match v[0] & 0x03 {
                0 | 2 => {
                    *lock = None;
                    ok(vec![])
                }
                1 => match *lock {
                    Some(o) if o != s.id && self.sessions.get(o).is_some() => {
                        err(lan::setcc::IN_PROGRESS)
                    }
                    _ => {
                        *lock = Some(s.id);
                        ok(vec![])
                    }
                },
                _ => err(cc::INVALID_FIELD),
            };
        }
        let lock = if cmd == 0x01 {
            self.lan_lock
        } else {
            self.sol_lock
        };
        if lock.is_some_and(|o| o != s.id && self.sessions.get(o).is_some()) {
            return err(lan::setcc::IN_PROGRESS);
        }
        if cmd == 0x01 && matches!(p, 18 | 19) {
            let want = if p == 18 { 4 } else { 13 };
            if v.len() != want {
                return err(cc::BAD_LENGTH);
            }
            if v[0] != 0 {
                return err(cc::OUT_OF_RANGE);
            }
            if p == 18 {
                if !matches!(v[1] & 0x07, 0 | 6 | 7) || v[1] & 0x78 != 0 || v[3] & 0xF8 != 0 {
                    return err(cc::INVALID_FIELD);
                }
                self.alert_dest.0.copy_from_slice(&v[1..]);
            } else {
                // IPv4 address and MAC format only.
                if v[1] & 0xF0 != 0 || v[2] & 0xFE != 0 {
                    return err(cc::INVALID_FIELD);
                }
                self.alert_dest.1.copy_from_slice(&v[1..]);
            }
            log::info!("{name}: LAN alert destination parameter {p} set over IPMI");
            return ok(vec![]);
        }
        if cmd == 0x01 {
            return match self.lan.set(&self.store, &name, p, v) {
                Ok(()) => {
                    for (i, l) in self.sessions.suite_limit.iter_mut().enumerate() {
                        *l = self.lan.suite_limit(i);
                    }
                    log::info!("{name}: LAN parameter {p} set over IPMI");
                    ok(vec![])
                }
                Err(c) => err(c),
            };
        }
        let mut c = self.sol_cfg;
        match (p, v.len()) {
            (1, 1) => c.enabled = v[0] & 1 != 0,
            (2, 1) => {
                let lvl = v[0] & 0x0F;
                if !(privilege::USER..=privilege::ADMIN).contains(&lvl) {
                    return err(cc::INVALID_FIELD);
                }
                c.auth = v[0] & 0xCF;
            }
            (3, 2) => {
                if v[0] == 0 || v[1] == 0 {
                    return err(cc::INVALID_FIELD);
                }
                c.accumulate = v[0];
                c.threshold = v[1];
            }
            (4, 2) => {
                if v[0] > 7 {
                    return err(cc::INVALID_FIELD);
                }
                c.retry_count = v[0];
                c.retry_interval = v[1];
            }
            (5 | 6, 1) => {
                if !matches!(v[0] & 0x0F, 0 | 6..=0x0A) {
                    return err(cc::INVALID_FIELD);
                }
                if p == 5 {
                    c.rate_nv = v[0] & 0x0F;
                }
                c.rate_v = v[0] & 0x0F;
            }
            (1..=6, _) => return err(cc::BAD_LENGTH),
            // The payload channel and port are the BMC's own LAN channel and
            // UDP port.
            (7 | 8, _) => return err(lan::setcc::READ_ONLY),
            _ => return err(lan::setcc::NOT_SUPPORTED),
        }
        if let Err(e) = self.store.set_bmc_meta(&name, super::SOL_KEY, c.pack()) {
            log::error!("{name}: cannot store the SOL configuration: {e}");
            return err(cc::UNSPECIFIED);
        }
        self.sol_cfg = c;
        log::info!("{name}: SOL parameter {p} set over IPMI");
        ok(vec![])
    }

    fn lan_param(&self, p: u8) -> Option<Vec<u8>> {
        if let Some(v) = self.lan.get(p) {
            return Some(v);
        }
        let mut types = 0x14;
        if self.sessions.policy.allow_auth_none {
            types |= 0x01;
        }
        let suites: Vec<u8> = self.sessions.policy.suites().map(|s| s.id).collect();
        Some(match p {
            0 => vec![self.in_progress(self.lan_lock)],
            1 => vec![types],
            2 => vec![types, types, types, types, 0x00],
            5 => self.mac.to_vec(),
            // Primary RMCP port: the BMC's UDP port. No secondary (secure
            // RMCP) port: parameter 9 is not supported.
            8 => self.addr.port().to_le_bytes().to_vec(),
            7 => vec![0x40, 0x40, 0x10],
            10 | 11 => vec![0x00],
            16 => {
                let mut c = b"public".to_vec();
                c.resize(18, 0);
                c
            }
            17 => vec![0x00],
            20 => vec![0x00, 0x00],
            21 => vec![0x00],
            22 => vec![suites.len() as u8],
            23 => {
                let mut v = vec![0x00];
                v.extend_from_slice(&suites);
                v
            }
            26 => vec![0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
            // IPv6: this BMC has none. Parameter 50 (IPv6/IPv4 support),
            // the IPv6 status (55), addresses, routers (64 and up) and the
            // other IPv6 parameters are not supported (0x80), as on an
            // IPv4-only BMC; the addressing enables only say "IPv6
            // disabled" (IPv4 only), which is true of it.
            51 => vec![0x00],
            _ => return None,
        })
    }

    fn sol_param(&self, p: u8) -> Option<Vec<u8>> {
        let c = &self.sol_cfg;
        Some(match p {
            0 => vec![self.in_progress(self.sol_lock)],
            // Enabled only while a console is attached to the VM.
            1 => vec![(c.enabled && self.vm.console.is_attached()) as u8],
            2 => vec![c.auth],
            3 => vec![c.accumulate, c.threshold],
            4 => vec![c.retry_count, c.retry_interval],
            5 => vec![c.rate_nv],
            6 => vec![c.rate_v],
            7 => vec![LAN_CHANNEL],
            8 => self.addr.port().to_le_bytes().to_vec(),
            _ => return None,
        })
    }

    fn in_progress(&self, lock: Option<u32>) -> u8 {
        lock.is_some_and(|o| self.sessions.get(o).is_some()) as u8
    }

    /// Activate Payload (App 0x48): SOL instance 1, one at a time.
    fn activate_payload(&mut self, s: &Session, d: &[u8]) -> Reply {
        if d.len() < 6 {
            return err(cc::BAD_LENGTH);
        }
        if d[0] & 0x3F != rmcp::PAYLOAD_SOL || d[1] & 0x0F != 1 {
            return err(cc::INVALID_FIELD);
        }
        let name = &self.vm.info.name;
        if !s.plus {
            return err(cc::INVALID_COMMAND); // SOL needs RMCP+
        }
        if s.privilege < self.sol_cfg.auth & 0x0F {
            return err(cc::INSUFFICIENT_PRIVILEGE);
        }
        if !self.sol_cfg.enabled {
            log::warn!("{name}: sol activate refused: SOL disabled (sol set enabled true)");
            return err(0x81); // payload type disabled
        }
        if self.payload_refused(s) {
            log::warn!(
                "{name}: sol activate refused: user {:?} has no SOL payload access (sol payload enable)",
                s.user.as_ref().map(|u| &u.name)
            );
            return err(0x81); // payload type disabled for this user
        }
        let Some(console) = self.vm.console.get() else {
            log::warn!(
                "{name}: sol activate refused: no console attached (start the guest with `hvsim exec --console`)"
            );
            return err(0x81);
        };
        if let Some(a) = &self.sol {
            log::warn!(
                "{name}: sol activate refused: already active in session {:#010x}",
                a.session
            );
            return err(0x80); // payload already active on another session
        }
        let encrypted = s
            .keys
            .as_ref()
            .is_some_and(|k| k.suite.confidentiality != super::crypto::CRYPT_NONE);
        if d[2] & 0x80 != 0 && !encrypted {
            return err(0x83); // cannot activate with encryption
        }
        if self.sol_cfg.auth & 0x80 != 0 && !encrypted {
            return err(0x84); // cannot activate without encryption
        }
        // One activation per VM, shared with the web console.
        let claim = match self
            .vm
            .console
            .claim(name, &format!("IPMI session {:#010x}", s.id))
        {
            Ok(c) => c,
            Err(why) => {
                log::warn!("{name}: sol activate refused: {why}");
                return err(0x80); // payload already active on another session
            }
        };
        self.sol = Some(sol::Activation::new(s.id, Some(&console)).with_claim(claim));
        log::info!("{name}: SOL activated by session {:#010x}", s.id);
        let size = (sol::MAX_PAYLOAD as u16).to_le_bytes();
        let mut out = vec![0, 0, 0, 0];
        out.extend_from_slice(&size); // inbound
        out.extend_from_slice(&size); // outbound
        out.extend_from_slice(&self.addr.port().to_le_bytes());
        out.extend_from_slice(&[0xFF, 0xFF]); // no VLAN
        ok(out)
    }

    /// Deactivate Payload (App 0x49); any session allowed to activate SOL
    /// may end it (ipmitool's `sol deactivate` from a new session).
    fn deactivate_payload(&mut self, s: &Session, d: &[u8]) -> Reply {
        if d.len() < 2 {
            return err(cc::BAD_LENGTH);
        }
        if d[0] & 0x3F != rmcp::PAYLOAD_SOL || d[1] & 0x0F != 1 {
            return err(cc::INVALID_FIELD);
        }
        if s.privilege < self.sol_cfg.auth & 0x0F {
            return err(cc::INSUFFICIENT_PRIVILEGE);
        }
        let Some(a) = self.sol.take() else {
            return err(0x80); // payload already deactivated
        };
        if a.session != s.id {
            // Tell the console that held it.
            if let Some(o) = self.sessions.get_mut(a.session) {
                let pkt = sol::emit(0, 0, 0, sol::status::DEACTIVATING, &[]);
                let peer = o.peer;
                let out = super::session::Sessions::seal_plus(o, rmcp::PAYLOAD_SOL, &pkt);
                self.outbox.push((out, peer));
            }
        }
        log::info!(
            "{}: SOL deactivated by session {:#010x}",
            self.vm.info.name,
            s.id
        );
        ok(vec![])
    }

    fn last_on_by_ipmi(&self) -> bool {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_on_by_ipmi
    }

    fn restart_cause(&self) -> u8 {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .restart_cause
    }
}

/// Largest data part of one FRU or SDR read (the rest comes in more reads).
const MAX_READ: usize = 64;

fn next_reservation(r: u16) -> u16 {
    match r.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileges() {
        assert_eq!(required_privilege(netfn::CHASSIS, 0x01), privilege::USER);
        assert_eq!(
            required_privilege(netfn::CHASSIS, 0x02),
            privilege::OPERATOR
        );
        assert_eq!(required_privilege(netfn::APP, 0x47), privilege::ADMIN);
    }
}
