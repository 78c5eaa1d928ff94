//! The guest SDK's wire format (open-vm-tools' libguestlib, vmGuestLibInt.h
//! and guestlibV3.x): what `guestlib.info.get VERSION` answers.
//!
//! Version 3 (what ESXi answers and vmware-toolbox-cmd asks first), the
//! body after `1 `:
//!
//! ```text
//! u32 version (3)   u64 session id   u32 data size     -- little endian (C memory)
//! XDR data: u32 count, then `count` stats in id order 1, 2, 3 ...:
//!   u32 id, bool valid, value (u32, u64, string<512> or opaque<> by id)
//! ```
//!
//! Version 2 is a packed C struct of 18 fixed stats (669 bytes). A host
//! answers a version it does not speak with `0 ` and the highest one it
//! does. `guestlib.stat.get ENCODING STAT [PARAM]` returns free-form text
//! (the "extended statistics" of vSphere 6.0 and later).

use crate::xdr::{Reader, Writer, XdrError};

/// The RPCI command for the fixed statistics.
pub const INFO_COMMAND: &str = "guestlib.info.get";
/// The RPCI command for the extended statistics.
pub const STAT_COMMAND: &str = "guestlib.stat.get";
/// The newest data version (what a host answers best).
pub const DATA_VERSION: u32 = 3;
/// Stat ids run from 1 to this one (`GUESTLIB_MAX_STATISTIC_ID - 1`).
pub const MAX_STAT_ID: u32 = 38;
/// Longest resource pool path in the string stat (XDR bound).
pub const STRING_SIZE: usize = 512;
/// Largest opaque stat accepted when decoding.
const MAX_OPAQUE: usize = 64 * 1024;
/// Version 2's resource pool path buffer.
const V2_PATH: usize = 512;

/// Stat ids (guestlibV3.x `GuestLibV3TypeIds`).
pub mod id {
    /// CPU reservation, MHz (u32).
    pub const CPU_RESERVATION_MHZ: u32 = 1;
    /// CPU limit, MHz (u32; all ones: unlimited).
    pub const CPU_LIMIT_MHZ: u32 = 2;
    /// CPU shares (u32).
    pub const CPU_SHARES: u32 = 3;
    /// CPU used, ms (u64).
    pub const CPU_USED_MS: u32 = 4;
    /// Host processor speed, MHz (u32).
    pub const HOST_MHZ: u32 = 5;
    /// Memory reservation, MB (u32).
    pub const MEM_RESERVATION_MB: u32 = 6;
    /// Memory limit, MB (u32; all ones: unlimited).
    pub const MEM_LIMIT_MB: u32 = 7;
    /// Memory shares (u32).
    pub const MEM_SHARES: u32 = 8;
    /// Mapped memory, MB (u32).
    pub const MEM_MAPPED_MB: u32 = 9;
    /// Active memory, MB (u32).
    pub const MEM_ACTIVE_MB: u32 = 10;
    /// Overhead memory, MB (u32).
    pub const MEM_OVERHEAD_MB: u32 = 11;
    /// Ballooned memory, MB (u32).
    pub const MEM_BALLOONED_MB: u32 = 12;
    /// Swapped memory, MB (u32).
    pub const MEM_SWAPPED_MB: u32 = 13;
    /// Shared memory, MB (u32).
    pub const MEM_SHARED_MB: u32 = 14;
    /// Memory saved by sharing, MB (u32).
    pub const MEM_SHARED_SAVED_MB: u32 = 15;
    /// Used memory, MB (u32).
    pub const MEM_USED_MB: u32 = 16;
    /// Time since power on, ms (u64).
    pub const ELAPSED_MS: u32 = 17;
    /// Resource pool path (string).
    pub const RESOURCE_POOL_PATH: u32 = 18;
    /// CPU stolen, ms (u64).
    pub const CPU_STOLEN_MS: u32 = 19;
    /// Memory target size, MB (u64).
    pub const MEM_TARGET_SIZE_MB: u32 = 20;
    /// Host physical cores (u32).
    pub const HOST_CPU_NUM_CORES: u32 = 21;
    /// Memory balloon target, MB (u32).
    pub const MEM_BALLOON_TARGET_MB: u32 = 35;
    /// Memory balloon maximum, MB (u32).
    pub const MEM_BALLOON_MAX_MB: u32 = 36;
    /// Resource pool path, any length (opaque).
    pub const RESOURCE_POOL_PATH_LONG: u32 = 37;
    /// Memory shares, 64-bit (u64).
    pub const MEM_SHARES_64: u32 = 38;
}

/// Why a guest SDK reply did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestlibError {
    /// Shorter than its header.
    #[error("guest SDK data of {0} bytes is shorter than its header")]
    Short(usize),
    /// Another version than asked for.
    #[error("guest SDK data has version {0}")]
    Version(u32),
    /// The data size field and the bytes disagree.
    #[error("guest SDK data size {size} but {have} bytes follow")]
    Size {
        /// Claimed.
        size: u32,
        /// Present.
        have: usize,
    },
    /// A stat out of order.
    #[error("guest SDK stat {got} where stat {want} belongs")]
    Order {
        /// Found.
        got: u32,
        /// Expected.
        want: u32,
    },
    /// The XDR part did not decode.
    #[error("guest SDK stats: {0}")]
    Xdr(#[from] XdrError),
}

/// The type of a stat's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 32-bit.
    U32,
    /// 64-bit.
    U64,
    /// Bounded string.
    Text,
    /// Opaque bytes.
    Bytes,
}

/// The value type of stat `id`.
pub fn kind(id: u32) -> Option<Kind> {
    Some(match id {
        4 | 17 | 19 | 20 | 22..=30 | 38 => Kind::U64,
        18 => Kind::Text,
        37 => Kind::Bytes,
        1..=38 => Kind::U32,
        _ => return None,
    })
}

/// A stat's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// 32-bit.
    U32(u32),
    /// 64-bit.
    U64(u64),
    /// String.
    Text(String),
    /// Opaque bytes.
    Bytes(Vec<u8>),
}

/// One stat: its value, or None when the host does not provide it
/// ("This value is not available on this host").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Id (1-based, see [`id`]).
    pub id: u32,
    /// The value when valid.
    pub value: Option<Value>,
}

/// A version 3 answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InfoV3 {
    /// Session id (changes with every power on, reset, vMotion ...).
    pub session_id: u64,
    /// Stats 1, 2, 3 ... in order.
    pub stats: Vec<Stat>,
}

impl InfoV3 {
    /// Stat `id`: Err(()) when the host did not send it at all.
    #[allow(clippy::result_unit_err)]
    pub fn get(&self, id: u32) -> Result<Option<&Value>, ()> {
        self.stats
            .get(id.checked_sub(1).ok_or(())? as usize)
            .map(|s| s.value.as_ref())
            .ok_or(())
    }
}

/// The zero value of a kind (for invalid stats).
fn zero(k: Kind) -> Value {
    match k {
        Kind::U32 => Value::U32(0),
        Kind::U64 => Value::U64(0),
        Kind::Text => Value::Text(String::new()),
        Kind::Bytes => Value::Bytes(Vec::new()),
    }
}

/// Encode a version 3 answer (the reply body after `1 `). Stats must be in
/// id order from 1; a value of the wrong kind is sent as not valid.
pub fn encode_v3(info: &InfoV3) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(info.stats.len() as u32);
    for s in &info.stats {
        let Some(k) = kind(s.id) else { continue };
        w.u32(s.id);
        let v = s.value.as_ref().filter(|v| {
            matches!(
                (k, v),
                (Kind::U32, Value::U32(_))
                    | (Kind::U64, Value::U64(_))
                    | (Kind::Text, Value::Text(_))
                    | (Kind::Bytes, Value::Bytes(_))
            )
        });
        w.bool(v.is_some());
        match v.cloned().unwrap_or_else(|| zero(k)) {
            Value::U32(x) => w.u32(x),
            Value::U64(x) => {
                w.u32((x >> 32) as u32);
                w.u32(x as u32);
            }
            Value::Text(t) => {
                let t: String = t.chars().take(STRING_SIZE).collect();
                let mut end = t.len().min(STRING_SIZE);
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                w.string(&t[..end]);
            }
            Value::Bytes(b) => w.opaque(&b),
        }
    }
    let data = w.into_bytes();
    let mut out = Vec::with_capacity(16 + data.len());
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&info.session_id.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// Decode a version 3 answer. Like libguestlib, stats past the ones this
/// side knows are ignored.
pub fn decode_v3(body: &[u8]) -> Result<InfoV3, GuestlibError> {
    if body.len() < 16 {
        return Err(GuestlibError::Short(body.len()));
    }
    let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let version = le32(&body[0..4]);
    if version != 3 {
        return Err(GuestlibError::Version(version));
    }
    let mut sid = [0u8; 8];
    sid.copy_from_slice(&body[4..12]);
    let size = le32(&body[12..16]);
    let data = &body[16..];
    if size as usize > data.len() {
        return Err(GuestlibError::Size {
            size,
            have: data.len(),
        });
    }
    let mut r = Reader::new(&data[..size as usize]);
    let count = r.u32()?.min(MAX_STAT_ID);
    let mut stats = Vec::with_capacity(count as usize);
    for want in 1..=count {
        let got = r.u32()?;
        if got != want {
            return Err(GuestlibError::Order { got, want });
        }
        let k = kind(got).ok_or(GuestlibError::Order { got, want })?;
        let valid = r.bool("valid")?;
        let value = match k {
            Kind::U32 => Value::U32(r.u32()?),
            Kind::U64 => {
                let hi = u64::from(r.u32()?);
                Value::U64(hi << 32 | u64::from(r.u32()?))
            }
            Kind::Text => Value::Text(r.string("resourcePoolPath", STRING_SIZE)?),
            Kind::Bytes => Value::Bytes(r.opaque("resourcePoolPathLong", MAX_OPAQUE)?),
        };
        stats.push(Stat {
            id: got,
            value: valid.then_some(value),
        });
    }
    Ok(InfoV3 {
        session_id: u64::from_le_bytes(sid),
        stats,
    })
}

/// Encode the version 2 answer from the first 18 stats of `info`: a packed
/// C struct (u32 version, u64 session, then per stat a Bool and its value;
/// a 32-bit stat is padded to 8 bytes, a 64-bit one to 12, the path is a
/// Bool and 512 bytes).
pub fn encode_v2(info: &InfoV3) -> Vec<u8> {
    let mut out = Vec::with_capacity(669);
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&info.session_id.to_le_bytes());
    for sid in 1..=18u32 {
        let v = info.get(sid).ok().flatten();
        match kind(sid) {
            Some(Kind::U64) => {
                let x = match v {
                    Some(Value::U64(x)) => Some(*x),
                    _ => None,
                };
                out.extend_from_slice(&[u8::from(x.is_some()), 0, 0, 0]);
                out.extend_from_slice(&x.unwrap_or(0).to_le_bytes());
            }
            Some(Kind::Text) => {
                let t = match v {
                    Some(Value::Text(t)) => Some(t.as_bytes()),
                    _ => None,
                };
                out.push(u8::from(t.is_some()));
                let mut buf = [0u8; V2_PATH];
                let t = t.unwrap_or_default();
                let n = t.len().min(V2_PATH - 1);
                buf[..n].copy_from_slice(&t[..n]);
                out.extend_from_slice(&buf);
            }
            _ => {
                let x = match v {
                    Some(Value::U32(x)) => Some(*x),
                    _ => None,
                };
                out.extend_from_slice(&[u8::from(x.is_some()), 0, 0, 0]);
                out.extend_from_slice(&x.unwrap_or(0).to_le_bytes());
            }
        }
    }
    out
}

/// Parse the argument of `guestlib.info.get`: the version asked for.
pub fn parse_info_request(args: &[u8]) -> Option<u32> {
    let t = std::str::from_utf8(args).ok()?;
    t.trim_matches(|c: char| c == '\0' || c.is_ascii_whitespace())
        .parse()
        .ok()
}

/// Output encodings of `guestlib.stat.get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `name = value` lines (the default).
    Text,
    /// JSON.
    Json,
    /// XML.
    Xml,
    /// YAML.
    Yaml,
}

/// A parsed `guestlib.stat.get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatRequest<'a> {
    /// Output encoding.
    pub encoding: Encoding,
    /// Stat name ("" lists the stats).
    pub stat: &'a str,
    /// Its parameter (`vnet MAC`, `vscsi scsi0:0`).
    pub param: &'a str,
}

/// Parse the arguments of `guestlib.stat.get` (`ENCODING STAT PARAM`,
/// any of them empty, separated by single spaces). None when the encoding
/// is unknown or the text is not UTF-8.
pub fn parse_stat_request(args: &[u8]) -> Option<StatRequest<'_>> {
    let t = std::str::from_utf8(args).ok()?;
    let t = t.trim_end_matches('\0');
    let mut it = t.split(' ').filter(|s| !s.is_empty());
    let encoding = match it.next() {
        None | Some("text") => Encoding::Text,
        Some("json") => Encoding::Json,
        Some("xml") => Encoding::Xml,
        Some("yaml") => Encoding::Yaml,
        Some(_) => return None,
    };
    let stat = it.next().unwrap_or("");
    let param = it.next().unwrap_or("");
    if it.next().is_some() {
        return None;
    }
    Some(StatRequest {
        encoding,
        stat,
        param,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> InfoV3 {
        let stats = (1..=MAX_STAT_ID)
            .map(|i| Stat {
                id: i,
                value: match kind(i).unwrap() {
                    Kind::U32 => Some(Value::U32(i * 10)),
                    Kind::U64 => Some(Value::U64(u64::from(i) << 33)),
                    Kind::Text => Some(Value::Text("/pool".into())),
                    Kind::Bytes => None,
                },
            })
            .collect();
        InfoV3 {
            session_id: 0x1234_5678_9abc_def0,
            stats,
        }
    }

    #[test]
    fn v3_round_trip() {
        let info = sample();
        let b = encode_v3(&info);
        assert_eq!(&b[..4], &[3, 0, 0, 0]);
        assert_eq!(decode_v3(&b).unwrap(), info);
        assert_eq!(
            info.get(id::CPU_LIMIT_MHZ),
            Ok(Some(&Value::U32(20))),
            "ids are 1-based"
        );
        assert_eq!(info.get(39), Err(()));
        assert!(decode_v3(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn v2_is_the_packed_struct() {
        let b = encode_v2(&sample());
        assert_eq!(b.len(), 669);
        assert_eq!(&b[12..20], &[1, 0, 0, 0, 10, 0, 0, 0]);
    }

    #[test]
    fn stat_requests_as_vmware_toolbox_cmd_sends_them() {
        let r = parse_stat_request(b"   ").unwrap();
        assert_eq!((r.encoding, r.stat, r.param), (Encoding::Text, "", ""));
        let r = parse_stat_request(b"json vnet 00:50:56:01:02:03").unwrap();
        assert_eq!(
            (r.encoding, r.stat, r.param),
            (Encoding::Json, "vnet", "00:50:56:01:02:03")
        );
        assert!(parse_stat_request(b"csv session ").is_none());
        assert_eq!(parse_info_request(b"3\0"), Some(3));
        assert_eq!(parse_info_request(b"x"), None);
    }
}
