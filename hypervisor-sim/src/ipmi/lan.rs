//! The LAN configuration parameters `lan set` may change (Set LAN
//! Configuration Parameters, Transport 0x01): IP address source, IP
//! address, subnet mask, default and backup gateway (address and MAC), and
//! the maximum privilege of each cipher suite. They are simulated values,
//! kept per VM in the state database (`bmc_meta`, keys `lan.*`) and shown by
//! `lan print`; they never move the BMC's UDP socket. The cipher suite
//! privileges are enforced when a session opens.

use std::net::{IpAddr, SocketAddr};

use super::cc;
use super::session::privilege;
use crate::store::{Store, StoreError};

/// Set LAN Configuration Parameters completion codes (spec table 23-4).
pub mod setcc {
    /// Parameter not supported.
    pub const NOT_SUPPORTED: u8 = 0x80;
    /// Another session has set "set in progress".
    pub const IN_PROGRESS: u8 = 0x81;
    /// Attempt to write a read-only parameter.
    pub const READ_ONLY: u8 = 0x82;
}

/// Parameters that can be read but not written here.
const READ_ONLY: &[u8] = &[1, 5, 8, 22, 23];

/// The writable LAN parameters of one BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanConfig {
    /// IP address source (0 unspecified, 1 static, 2 DHCP, 3 BIOS, 4 other).
    pub source: u8,
    /// IP address.
    pub ip: [u8; 4],
    /// Subnet mask.
    pub mask: [u8; 4],
    /// Default gateway address.
    pub gateway: [u8; 4],
    /// Default gateway MAC.
    pub gateway_mac: [u8; 6],
    /// Backup gateway address.
    pub backup: [u8; 4],
    /// Backup gateway MAC.
    pub backup_mac: [u8; 6],
    /// Maximum privilege per cipher suite entry, one nibble each, entry 1 in
    /// the low nibble of the first byte (parameter 24 without its reserved byte).
    pub suite_privs: [u8; 8],
}

const KEYS: [&str; 8] = [
    "lan.source",
    "lan.ip",
    "lan.mask",
    "lan.gateway",
    "lan.gateway_mac",
    "lan.backup",
    "lan.backup_mac",
    "lan.cipher_privs",
];

fn pack(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a[..b.len()].copy_from_slice(b);
    i64::from_le_bytes(a)
}

fn unpack<const N: usize>(v: i64) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&v.to_le_bytes()[..N]);
    out
}

impl LanConfig {
    /// The defaults for a BMC listening on `addr`: static, the listen
    /// address (8 or 24 bit mask), no gateway, every suite Administrator.
    pub fn defaults(addr: SocketAddr) -> LanConfig {
        let ip = match addr.ip() {
            IpAddr::V4(a) => a.octets(),
            IpAddr::V6(_) => [0; 4],
        };
        let mask = if ip[0] == 127 {
            [255, 0, 0, 0]
        } else {
            [255, 255, 255, 0]
        };
        let a = privilege::ADMIN;
        LanConfig {
            source: 1,
            ip,
            mask,
            gateway: [0; 4],
            gateway_mac: [0; 6],
            backup: [0; 4],
            backup_mac: [0; 6],
            suite_privs: [a | a << 4; 8],
        }
    }

    /// The stored values of `vm` over the defaults.
    pub fn load(store: &Store, vm: &str, addr: SocketAddr) -> Result<LanConfig, StoreError> {
        let mut c = LanConfig::defaults(addr);
        let get = |k: &str| store.bmc_meta(vm, k);
        if let Some(v) = get(KEYS[0])? {
            c.source = v as u8;
        }
        if let Some(v) = get(KEYS[1])? {
            c.ip = unpack(v);
        }
        if let Some(v) = get(KEYS[2])? {
            c.mask = unpack(v);
        }
        if let Some(v) = get(KEYS[3])? {
            c.gateway = unpack(v);
        }
        if let Some(v) = get(KEYS[4])? {
            c.gateway_mac = unpack(v);
        }
        if let Some(v) = get(KEYS[5])? {
            c.backup = unpack(v);
        }
        if let Some(v) = get(KEYS[6])? {
            c.backup_mac = unpack(v);
        }
        if let Some(v) = get(KEYS[7])? {
            c.suite_privs = unpack(v);
        }
        Ok(c)
    }

    fn save(&self, store: &Store, vm: &str, p: u8) -> Result<(), StoreError> {
        let (k, v) = match p {
            4 => (KEYS[0], self.source as i64),
            3 => (KEYS[1], pack(&self.ip)),
            6 => (KEYS[2], pack(&self.mask)),
            12 => (KEYS[3], pack(&self.gateway)),
            13 => (KEYS[4], pack(&self.gateway_mac)),
            14 => (KEYS[5], pack(&self.backup)),
            15 => (KEYS[6], pack(&self.backup_mac)),
            24 => (KEYS[7], pack(&self.suite_privs)),
            _ => return Ok(()),
        };
        store.set_bmc_meta(vm, k, v)
    }

    /// The value of a writable parameter (`None` for the others).
    pub fn get(&self, p: u8) -> Option<Vec<u8>> {
        Some(match p {
            3 => self.ip.to_vec(),
            4 => vec![self.source],
            6 => self.mask.to_vec(),
            12 => self.gateway.to_vec(),
            13 => self.gateway_mac.to_vec(),
            14 => self.backup.to_vec(),
            15 => self.backup_mac.to_vec(),
            24 => {
                let mut v = vec![0];
                v.extend_from_slice(&self.suite_privs);
                v
            }
            _ => return None,
        })
    }

    /// Write parameter `p` (not 0, set in progress, which the caller
    /// handles) and persist it; `Err` is the completion code.
    pub fn set(&mut self, store: &Store, vm: &str, p: u8, d: &[u8]) -> Result<(), u8> {
        let want = match p {
            3 | 6 | 12 | 14 => 4,
            4 => 1,
            13 | 15 => 6,
            24 => 9,
            _ if READ_ONLY.contains(&p) => return Err(setcc::READ_ONLY),
            _ => return Err(setcc::NOT_SUPPORTED),
        };
        if d.len() != want {
            return Err(cc::BAD_LENGTH);
        }
        let four = || [d[0], d[1], d[2], d[3]];
        let six = || [d[0], d[1], d[2], d[3], d[4], d[5]];
        let mut new = self.clone();
        match p {
            3 => new.ip = four(),
            4 if d[0] & 0x0F <= 4 => new.source = d[0] & 0x0F,
            4 => return Err(cc::INVALID_FIELD),
            6 => {
                let m = u32::from_be_bytes(four());
                if m.leading_ones() + m.trailing_zeros() != 32 {
                    return Err(cc::INVALID_FIELD);
                }
                new.mask = four();
            }
            12 => new.gateway = four(),
            13 => new.gateway_mac = six(),
            14 => new.backup = four(),
            15 => new.backup_mac = six(),
            _ => {
                // 24: one reserved byte, then a nibble per suite entry.
                if d[1..].iter().any(|b| b & 0x0F > 5 || b >> 4 > 5) {
                    return Err(cc::INVALID_FIELD);
                }
                new.suite_privs.copy_from_slice(&d[1..]);
            }
        }
        new.save(store, vm, p).map_err(|e| {
            log::error!("{vm}: cannot store LAN parameter {p}: {e}");
            cc::UNSPECIFIED
        })?;
        *self = new;
        Ok(())
    }

    /// The highest privilege allowed over cipher suite entry `index` (the
    /// position in the suite list): 0 when the entry is unused (refused).
    pub fn suite_limit(&self, index: usize) -> u8 {
        let Some(b) = self.suite_privs.get(index / 2) else {
            return 0;
        };
        let n = if index.is_multiple_of(2) {
            b & 0x0F
        } else {
            b >> 4
        };
        // OEM (5) has no meaning here: treat it as Administrator.
        n.min(privilege::ADMIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_validates_and_persists() {
        let store = Store::in_memory().unwrap();
        store.ensure_bmc_schema().unwrap();
        let addr: SocketAddr = "127.0.0.1:623".parse().unwrap();
        let mut c = LanConfig::load(&store, "vm0", addr).unwrap();
        assert_eq!(c, LanConfig::defaults(addr));
        assert_eq!(c.set(&store, "vm0", 5, &[0; 6]), Err(setcc::READ_ONLY));
        assert_eq!(c.set(&store, "vm0", 99, &[0]), Err(setcc::NOT_SUPPORTED));
        assert_eq!(
            c.set(&store, "vm0", 6, &[255, 0, 255, 0]),
            Err(cc::INVALID_FIELD)
        );
        assert_eq!(c.set(&store, "vm0", 3, &[10, 0, 0]), Err(cc::BAD_LENGTH));
        c.set(&store, "vm0", 3, &[10, 1, 2, 3]).unwrap();
        c.set(&store, "vm0", 6, &[255, 255, 0, 0]).unwrap();
        c.set(&store, "vm0", 4, &[2]).unwrap();
        let mut privs = vec![0, 0x32];
        privs.extend_from_slice(&[0; 7]);
        c.set(&store, "vm0", 24, &privs).unwrap();
        assert_eq!(
            (c.suite_limit(0), c.suite_limit(1), c.suite_limit(2)),
            (2, 3, 0)
        );
        let again = LanConfig::load(&store, "vm0", addr).unwrap();
        assert_eq!(again, c);
        assert_eq!(again.ip, [10, 1, 2, 3]);
    }
}
