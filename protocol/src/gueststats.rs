//! Guest memory statistics, the binary report of open-vm-tools' guestInfo
//! plugin (`lib/include/guestStats.h`, built by `GuestInfoEncodeStats` in
//! `services/plugins/guestInfo/perfMonLinux.c`).
//!
//! vmtoolsd sends it every `guestinfo.stats-interval` seconds (20) as the RPCI
//! message `"SetGuestInfo  8 "` (key INFO_MEMORY) followed by:
//!
//! * the packed legacy header `GuestMemInfoLegacy`, 112 bytes little-endian:
//!   u32 version (5), u32 flags (`MEMINFO_MEMTOTAL` 1<<0,
//!   `MEMINFO_HUGEPAGESTOTAL` 1<<10), u64 memTotal (KiB), u64 deprecated[9],
//!   u64 hugePagesTotal, u64 deprecated[2];
//! * then, to the end of the message, a list of stats. Each starts with a
//!   u32 mask of the data that follow (`GuestDatum` bits), then one datum per
//!   set bit, lowest bit first, each a u16 size and that many bytes:
//!   namespace (UTF-8 with its NUL; sent with the first stat only, later stats
//!   inherit it), ID, value type and unit (unsigned integers in the fewest of
//!   0, 1, 2, 4 or 8 bytes; 0 bytes is zero), and the value (integers sized
//!   the same way; doubles as 0 bytes for zero, 4 bytes when a float holds
//!   them exactly, else 8). A stat that could not be collected has no value
//!   datum.
//!
//! [`decode`] checks every length against the buffer before reading and
//! never allocates more than the input's size.

use std::fmt;

/// The only version that carries a stat list (`GUESTMEMINFO_V5`).
pub const VERSION: u32 = 5;
/// Size of the packed `GuestMemInfoLegacy` header.
pub const LEGACY_SIZE: usize = 112;
/// Namespace of vmtoolsd's built-in stats (`GUEST_TOOLS_NAMESPACE`).
pub const TOOLS_NAMESPACE: &str = "_tools/v1";

/// `GuestMemInfoLegacy.flags` bits.
pub mod legacy_flag {
    /// `memTotal` is valid.
    pub const MEMTOTAL: u32 = 1 << 0;
    /// `hugePagesTotal` is valid.
    pub const HUGEPAGESTOTAL: u32 = 1 << 10;
    /// Defined but never set by vmtoolsd.
    pub const MEMNEEDED: u32 = 1 << 13;
}

/// `GuestDatum` bits of a stat header, in the order their data follow.
pub mod datum {
    /// Escape hatch for future expansion (skipped).
    pub const PRAGMA: u32 = 0x0001;
    /// UTF-8 namespace.
    pub const NAMESPACE: u32 = 0x0002;
    /// Stat ID, an unsigned integer.
    pub const ID: u32 = 0x0004;
    /// Value type, a [`super::value_type`] number.
    pub const VALUE_TYPE_ENUM: u32 = 0x0008;
    /// Value type as text.
    pub const VALUE_TYPE_STRING: u32 = 0x0010;
    /// Unit, a [`super::unit`] number.
    pub const VALUE_UNIT_ENUM: u32 = 0x0020;
    /// Unit as text.
    pub const VALUE_UNIT_STRING: u32 = 0x0040;
    /// The value.
    pub const VALUE: u32 = 0x0080;
}

/// `GuestValueType` values.
pub mod value_type {
    /// A stat without a value.
    pub const NIL: u32 = 1;
    /// Signed 8 bits.
    pub const INT8: u32 = 2;
    /// Unsigned 8 bits.
    pub const UINT8: u32 = 3;
    /// Signed 16 bits.
    pub const INT16: u32 = 4;
    /// Unsigned 16 bits.
    pub const UINT16: u32 = 5;
    /// Signed 32 bits.
    pub const INT32: u32 = 6;
    /// Unsigned 32 bits.
    pub const UINT32: u32 = 7;
    /// Signed 64 bits.
    pub const INT64: u32 = 8;
    /// Unsigned 64 bits.
    pub const UINT64: u32 = 9;
    /// IEEE 754 single.
    pub const FLOAT: u32 = 10;
    /// IEEE 754 double (also sent in 4 bytes when a float holds it exactly).
    pub const DOUBLE: u32 = 11;
    /// NUL-terminated UTF-8.
    pub const STRING: u32 = 12;
    /// Bytes.
    pub const BINARY: u32 = 13;
}

/// `GuestValueUnits` values vmtoolsd uses (base | scale | modifiers).
pub mod unit {
    /// A plain number.
    pub const NUMBER: u32 = 2;
    /// Bytes.
    pub const BYTES: u32 = 3;
    /// KiB.
    pub const KIB: u32 = 3 | 0x0800;
    /// MiB.
    pub const MIB: u32 = 3 | 0x1000;
    /// Pages.
    pub const PAGES: u32 = 3 | 0x8000;
    /// Huge pages.
    pub const HUGE_PAGES: u32 = 3 | 0x8800;
    /// Rate modifier.
    pub const RATE: u32 = 0x0040;
    /// Pages per second.
    pub const PAGES_PER_SECOND: u32 = PAGES | RATE;
    /// Events per second.
    pub const NUMBER_PER_SECOND: u32 = NUMBER | RATE;
    /// Percent (integers 0..100, floats 0.0..1.0).
    pub const PERCENT: u32 = NUMBER | 0x8000;
}

/// `GuestStatToolsID`: IDs of the `_tools/v1` namespace vmtoolsd sends on Linux.
pub mod id {
    /// Context switches per second (from /proc/stat).
    pub const CONTEXT_SWAP_RATE: u64 = 2;
    /// Active(file), KiB.
    pub const MEM_ACTIVE_FILE_CACHE: u64 = 3;
    /// MemFree, KiB.
    pub const MEM_FREE: u64 = 4;
    /// Memory the guest needs (physical usable less available plus 5%), KiB.
    pub const MEM_NEEDED: u64 = 5;
    /// Physical memory usable by the OS, KiB.
    pub const MEM_PHYS_USABLE: u64 = 6;
    /// pgpgin per second.
    pub const PAGE_IN_RATE: u64 = 7;
    /// pgpgout per second.
    pub const PAGE_OUT_RATE: u64 = 8;
    /// SwapFree, KiB.
    pub const SWAP_SPACE_REMAINING: u64 = 9;
    /// Page size, bytes.
    pub const PHYSICAL_PAGE_SIZE: u64 = 10;
    /// Hugepagesize, KiB.
    pub const HUGE_PAGE_SIZE: u64 = 11;
    /// HugePages_Total.
    pub const HUGE_PAGES_TOTAL: u64 = 12;
    /// The 5% surge reserve in [`MEM_NEEDED`], KiB.
    pub const MEM_NEEDED_RESERVATION: u64 = 13;
    /// MemAvailable, KiB.
    pub const MEM_AVAILABLE: u64 = 25;
    /// Buffers, KiB.
    pub const MEM_BUFFERS: u64 = 26;
    /// Cached, KiB.
    pub const MEM_CACHED: u64 = 27;
    /// SReclaimable, KiB.
    pub const MEM_SLAB_RECLAIM: u64 = 34;
    /// MemTotal, KiB.
    pub const MEM_TOTAL: u64 = 60;
    /// Runnable tasks (from /proc/stat).
    pub const CPU_RUN_QUEUE: u64 = 61;
    /// I/Os in flight (from /proc/diskstats).
    pub const DISK_REQUEST_QUEUE: u64 = 62;
    /// Average disk queue (from /proc/diskstats).
    pub const DISK_REQUEST_QUEUE_AVG: u64 = 63;
}

/// vSphere's names of the `_tools/v1` stat IDs (`GUEST_STAT_TOOLS_IDS`).
const TOOLS_NAMES: [&str; 67] = [
    "__INVALID__",
    "__NONE__",
    "guest.contextSwapRate",
    "guest.mem.activeFileCache",
    "guest.mem.free",
    "guest.mem.needed",
    "guest.mem.physUsable",
    "guest.page.inRate",
    "guest.page.outRate",
    "guest.swap.spaceRemaining",
    "guest.page.size",
    "guest.hugePage.size",
    "guest.hugePage.total",
    "guest.mem.neededReservation",
    "guest.swap.pageInRate",
    "guest.swap.pageOutRate",
    "guest.processCreationRate",
    "guest.swap.used",
    "guest.swap.filesCurrent",
    "guest.swap.filesMax",
    "guest.threadCreationRate",
    "guest.hugePage.free",
    "guest.mem.lowWaterMark",
    "guest.mem.active",
    "guest.mem.activeAnon",
    "guest.mem.available",
    "guest.mem.buffers",
    "guest.mem.cached",
    "guest.mem.committed",
    "guest.mem.dirty",
    "guest.mem.inactive",
    "guest.mem.inactiveAnon",
    "guest.mem.inactiveFile",
    "guest.mem.pinned",
    "guest.mem.slabReclaim",
    "guest.mem.swap.cached",
    "guest.page.directScanRate",
    "guest.page.faultRate",
    "guest.page.freeRate",
    "guest.page.majorFaultRate",
    "guest.page.stealRate",
    "guest.page.swapScanRate",
    "guest.swappiness",
    "guest.mem.modifiedPages",
    "guest.mem.availableToMm",
    "guest.mem.standby.core",
    "guest.mem.standby.normal",
    "guest.mem.standby.reserve",
    "guest.mem.pagedPool.resident",
    "guest.system.codeResident",
    "guest.system.driverResident",
    "guest.mem.nonPagedPool.size",
    "guest.mem.cache",
    "guest.system.freePtes",
    "guest.mem.commitLimit",
    "guest.mem.committed",
    "guest.mem.privateWorkingSet",
    "guest.disk.readRate",
    "guest.disk.writeRate",
    "guest.swap.automaticFileMax",
    "guest.mem.total",
    "guest.cpu.runQueue",
    "guest.disk.requestQueue",
    "guest.disk.requestQueueAvg",
    "guest.processor.queue",
    "guest.disk.queue",
    "guest.disk.queueAvg",
];

/// vSphere's name of a `_tools/v1` stat ID, if it has one.
pub fn tools_name(id: u64) -> Option<&'static str> {
    TOOLS_NAMES
        .get(usize::try_from(id).ok()?)
        .copied()
        .filter(|_| id >= 2)
}

/// A readable unit ("KiB", "pages/s", ...), or the number in hex.
pub fn unit_name(u: u32) -> String {
    let rate = u & unit::RATE != 0;
    let base = match u & !unit::RATE {
        1 => "",
        unit::NUMBER => "",
        unit::BYTES => "B",
        unit::KIB => "KiB",
        unit::MIB => "MiB",
        0x1803 => "GiB",
        unit::PAGES => "pages",
        unit::HUGE_PAGES => "huge pages",
        unit::PERCENT if !rate => return "%".into(),
        0x0004 => "s",
        0x4004 => "ms",
        0x4804 => "µs",
        0x5004 => "ns",
        0x0005 if rate => return "Hz".into(),
        0x0805 if rate => return "kHz".into(),
        0x1005 if rate => return "MHz".into(),
        0x1805 if rate => return "GHz".into(),
        _ => return format!("0x{u:04x}"),
    };
    match (base, rate) {
        ("", false) => "count".into(),
        ("", true) => "/s".into(),
        (b, false) => b.into(),
        (b, true) => format!("{b}/s"),
    }
}

/// A stat's value.
#[derive(Debug, Clone)]
pub enum Value {
    /// Any integer type, zero-extended.
    Unsigned(u64),
    /// A signed integer type, sign-extended.
    Signed(i64),
    /// `FLOAT` or `DOUBLE` (4-byte encodings widened).
    Float(f64),
    /// `STRING`, without its NUL.
    Text(String),
    /// `BINARY`, `NIL`, an unknown type, or a value without a type.
    Bytes(Vec<u8>),
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Unsigned(a), Value::Unsigned(b)) => a == b,
            (Value::Signed(a), Value::Signed(b)) => a == b,
            // Bitwise, so NaN round-trips compare equal.
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Text(a), Value::Text(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            _ => false,
        }
    }
}

impl Value {
    /// The value as a float, for numeric types.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Unsigned(v) => Some(v as f64),
            Value::Signed(v) => Some(v as f64),
            Value::Float(v) => Some(v),
            _ => None,
        }
    }

    /// The value as an unsigned integer, when it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Unsigned(v) => Some(v),
            Value::Signed(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// One stat of the list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stat {
    /// The namespace in force (sent or inherited); empty before any.
    pub namespace: String,
    /// The stat ID.
    pub id: u64,
    /// `GuestValueType`, if sent.
    pub value_type: Option<u32>,
    /// The value type as text, if sent.
    pub type_text: Option<String>,
    /// `GuestValueUnits`, if sent.
    pub unit: Option<u32>,
    /// The unit as text, if sent.
    pub unit_text: Option<String>,
    /// The value; `None` when the guest could not collect it.
    pub value: Option<Value>,
}

impl Stat {
    /// An unsigned stat of the tools namespace, as vmtoolsd sends them.
    pub fn uint(id: u64, unit: u32, value: Option<u64>) -> Stat {
        Stat {
            namespace: TOOLS_NAMESPACE.into(),
            id,
            value_type: Some(value_type::UINT64),
            unit: Some(unit),
            value: value.map(Value::Unsigned),
            ..Stat::default()
        }
    }

    /// A rate (a double) of the tools namespace.
    pub fn rate(id: u64, unit: u32, value: Option<f64>) -> Stat {
        Stat {
            namespace: TOOLS_NAMESPACE.into(),
            id,
            value_type: Some(value_type::DOUBLE),
            unit: Some(unit),
            value: value.map(Value::Float),
            ..Stat::default()
        }
    }

    /// vSphere's name for it ("guest.mem.total"), else "NAMESPACE:ID".
    pub fn name(&self) -> String {
        match tools_name(self.id) {
            Some(n) if self.namespace == TOOLS_NAMESPACE => n.into(),
            _ => format!("{}:{}", self.namespace, self.id),
        }
    }
}

/// A whole report: the legacy header and the stat list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GuestStats {
    /// `version` (5).
    pub version: u32,
    /// `flags`.
    pub flags: u32,
    /// `memTotal`, KiB (valid with [`legacy_flag::MEMTOTAL`]).
    pub mem_total_kib: u64,
    /// `hugePagesTotal` (valid with [`legacy_flag::HUGEPAGESTOTAL`]).
    pub huge_pages_total: u64,
    /// The stats, in the order sent.
    pub stats: Vec<Stat>,
}

impl GuestStats {
    /// The stat with this tools-namespace ID.
    pub fn tools_stat(&self, id: u64) -> Option<&Stat> {
        self.stats
            .iter()
            .find(|s| s.id == id && s.namespace == TOOLS_NAMESPACE)
    }

    /// The unsigned value of a tools-namespace stat.
    pub fn tools_u64(&self, id: u64) -> Option<u64> {
        self.tools_stat(id)?.value.as_ref()?.as_u64()
    }
}

/// Why a report did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// Shorter than the legacy header.
    #[error("{0} bytes: shorter than the {LEGACY_SIZE}-byte legacy header")]
    ShortHeader(usize),
    /// A version other than 5.
    #[error("version {0}: only version {VERSION} is supported")]
    Version(u32),
    /// The buffer ends inside a stat.
    #[error("stat {stat}: truncated {what} at byte {at}")]
    Truncated {
        /// Index of the stat.
        stat: usize,
        /// What was being read.
        what: &'static str,
        /// Offset in the report.
        at: usize,
    },
    /// An integer datum of a size other than 0, 1, 2, 4 or 8 bytes (or
    /// wider than its type).
    #[error("stat {stat}: {what} of {size} bytes")]
    BadSize {
        /// Index of the stat.
        stat: usize,
        /// Which datum.
        what: &'static str,
        /// Its size.
        size: usize,
    },
    /// An enum datum that does not fit 32 bits.
    #[error("stat {stat}: {what} {value} out of range")]
    Range {
        /// Index of the stat.
        stat: usize,
        /// Which datum.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// Text that is not UTF-8.
    #[error("stat {stat}: {what} is not UTF-8")]
    Utf8 {
        /// Index of the stat.
        stat: usize,
        /// Which datum.
        what: &'static str,
    },
    /// A stat without an ID datum.
    #[error("stat {0}: no ID")]
    NoId(usize),
    /// Value type 0 (`GuestTypeInvalid`, never to be sent).
    #[error("stat {0}: invalid value type 0")]
    InvalidType(usize),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    stat: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], StatsError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(StatsError::Truncated {
                stat: self.stat,
                what,
                at: self.pos,
            });
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, StatsError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// One datum: u16 size, then the bytes.
    fn datum(&mut self, what: &'static str) -> Result<&'a [u8], StatsError> {
        let b = self.take(2, what)?;
        let n = usize::from(u16::from_le_bytes([b[0], b[1]]));
        self.take(n, what)
    }

    fn uint(&mut self, what: &'static str) -> Result<u64, StatsError> {
        let d = self.datum(what)?;
        le_uint(d).ok_or(StatsError::BadSize {
            stat: self.stat,
            what,
            size: d.len(),
        })
    }

    fn enum32(&mut self, what: &'static str) -> Result<u32, StatsError> {
        let v = self.uint(what)?;
        u32::try_from(v).map_err(|_| StatsError::Range {
            stat: self.stat,
            what,
            value: v,
        })
    }

    fn text(&mut self, what: &'static str) -> Result<String, StatsError> {
        let d = self.datum(what)?;
        let d = d.strip_suffix(b"\0").unwrap_or(d);
        String::from_utf8(d.to_vec()).map_err(|_| StatsError::Utf8 {
            stat: self.stat,
            what,
        })
    }
}

/// A little-endian unsigned integer of 0, 1, 2, 4 or 8 bytes.
fn le_uint(d: &[u8]) -> Option<u64> {
    if !matches!(d.len(), 0 | 1 | 2 | 4 | 8) {
        return None;
    }
    let mut b = [0u8; 8];
    b[..d.len()].copy_from_slice(d);
    Some(u64::from_le_bytes(b))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Width in bytes of an integer value type, and whether it is signed.
fn int_type(t: u32) -> Option<(usize, bool)> {
    Some(match t {
        value_type::INT8 => (1, true),
        value_type::UINT8 => (1, false),
        value_type::INT16 => (2, true),
        value_type::UINT16 => (2, false),
        value_type::INT32 => (4, true),
        value_type::UINT32 => (4, false),
        value_type::INT64 => (8, true),
        value_type::UINT64 => (8, false),
        _ => return None,
    })
}

fn decode_value(stat: usize, t: Option<u32>, d: &[u8]) -> Result<Value, StatsError> {
    let bad = || StatsError::BadSize {
        stat,
        what: "value",
        size: d.len(),
    };
    match t {
        Some(value_type::FLOAT | value_type::DOUBLE) => match d.len() {
            0 => Ok(Value::Float(0.0)),
            4 => Ok(Value::Float(f64::from(f32::from_le_bytes([
                d[0], d[1], d[2], d[3],
            ])))),
            8 => Ok(Value::Float(f64::from_bits(u64_at(d, 0)))),
            _ => Err(bad()),
        },
        Some(value_type::STRING) => {
            let d = d.strip_suffix(b"\0").unwrap_or(d);
            String::from_utf8(d.to_vec())
                .map(Value::Text)
                .map_err(|_| StatsError::Utf8 {
                    stat,
                    what: "value",
                })
        }
        Some(t) => match int_type(t) {
            Some((width, signed)) => {
                if d.len() > width {
                    return Err(bad());
                }
                let v = le_uint(d).ok_or_else(bad)?;
                if signed && !d.is_empty() {
                    let shift = 64 - 8 * d.len() as u32;
                    Ok(Value::Signed(((v << shift) as i64) >> shift))
                } else if signed {
                    Ok(Value::Signed(0))
                } else {
                    Ok(Value::Unsigned(v))
                }
            }
            None => Ok(Value::Bytes(d.to_vec())),
        },
        None => Ok(Value::Bytes(d.to_vec())),
    }
}

/// Decode a report (the bytes after `"SetGuestInfo  8 "`).
pub fn decode(buf: &[u8]) -> Result<GuestStats, StatsError> {
    if buf.len() < LEGACY_SIZE {
        return Err(StatsError::ShortHeader(buf.len()));
    }
    let version = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if version != VERSION {
        return Err(StatsError::Version(version));
    }
    let mut out = GuestStats {
        version,
        flags: u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]),
        mem_total_kib: u64_at(buf, 8),
        huge_pages_total: u64_at(buf, 8 + 8 + 72),
        stats: Vec::new(),
    };
    let mut r = Reader {
        buf,
        pos: LEGACY_SIZE,
        stat: 0,
    };
    let mut namespace = String::new();
    while r.pos < buf.len() {
        let flags = r.u32("stat header")?;
        let mut s = Stat::default();
        let mut has_id = false;
        for bit in 0..32 {
            let b = 1u32 << bit;
            if flags & b == 0 {
                continue;
            }
            match b {
                datum::NAMESPACE => namespace = r.text("namespace")?,
                datum::ID => {
                    s.id = r.uint("ID")?;
                    has_id = true;
                }
                datum::VALUE_TYPE_ENUM => s.value_type = Some(r.enum32("value type")?),
                datum::VALUE_TYPE_STRING => s.type_text = Some(r.text("value type text")?),
                datum::VALUE_UNIT_ENUM => s.unit = Some(r.enum32("unit")?),
                datum::VALUE_UNIT_STRING => s.unit_text = Some(r.text("unit text")?),
                datum::VALUE => {
                    if s.value_type == Some(0) {
                        return Err(StatsError::InvalidType(r.stat));
                    }
                    let d = r.datum("value")?;
                    s.value = Some(decode_value(r.stat, s.value_type, d)?);
                }
                // PRAGMA and bits defined later: each datum says its size,
                // so it can be skipped.
                _ => {
                    r.datum("datum")?;
                }
            }
        }
        if !has_id {
            return Err(StatsError::NoId(r.stat));
        }
        s.namespace.clone_from(&namespace);
        out.stats.push(s);
        r.stat += 1;
    }
    Ok(out)
}

/// Bytes of the smallest encoding of an unsigned integer (0 for zero).
fn uint_len(v: u64) -> usize {
    match v {
        0 => 0,
        1..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    }
}

fn put_datum(out: &mut Vec<u8>, d: &[u8]) {
    // Text is cut to fit by put_text; bytes longer than a datum can hold
    // (never decoded, so never re-encoded) are cut here.
    let d = &d[..d.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(d.len() as u16).to_le_bytes());
    out.extend_from_slice(d);
}

fn put_uint(out: &mut Vec<u8>, v: u64) {
    put_datum(out, &v.to_le_bytes()[..uint_len(v)]);
}

/// Text with its NUL; text too long for that goes without the NUL (the
/// decoder takes both), and text longer than a datum is cut at a character.
fn put_text(out: &mut Vec<u8>, t: &str) {
    let max = usize::from(u16::MAX);
    if t.len() < max {
        let mut b = Vec::with_capacity(t.len() + 1);
        b.extend_from_slice(t.as_bytes());
        b.push(0);
        put_datum(out, &b);
    } else {
        let mut end = max;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        put_datum(out, &t.as_bytes()[..end]);
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Unsigned(u) => put_uint(out, *u),
        Value::Signed(i) => {
            let n = match *i {
                0 => 0,
                -0x80..=0x7f => 1,
                -0x8000..=0x7fff => 2,
                -0x8000_0000..=0x7fff_ffff => 4,
                _ => 8,
            };
            put_datum(out, &i.to_le_bytes()[..n]);
        }
        Value::Float(f) => {
            if f.to_bits() == 0 {
                put_datum(out, &[]);
            } else if f64::from(*f as f32).to_bits() == f.to_bits() {
                put_datum(out, &(*f as f32).to_le_bytes());
            } else {
                put_datum(out, &f.to_le_bytes());
            }
        }
        Value::Text(t) => put_text(out, t),
        Value::Bytes(b) => put_datum(out, b),
    }
}

/// Encode a report as vmtoolsd does: the legacy header, then each stat with
/// its namespace only where it differs from the previous stat's.
pub fn encode(r: &GuestStats) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEGACY_SIZE + r.stats.len() * 24);
    out.extend_from_slice(&r.version.to_le_bytes());
    out.extend_from_slice(&r.flags.to_le_bytes());
    out.extend_from_slice(&r.mem_total_kib.to_le_bytes());
    out.extend_from_slice(&[0; 72]);
    out.extend_from_slice(&r.huge_pages_total.to_le_bytes());
    out.extend_from_slice(&[0; 16]);
    let mut namespace = "";
    for s in &r.stats {
        let mut flags = datum::ID;
        if s.namespace != namespace {
            flags |= datum::NAMESPACE;
        }
        let opt = [
            (s.value_type.is_some(), datum::VALUE_TYPE_ENUM),
            (s.type_text.is_some(), datum::VALUE_TYPE_STRING),
            (s.unit.is_some(), datum::VALUE_UNIT_ENUM),
            (s.unit_text.is_some(), datum::VALUE_UNIT_STRING),
            (s.value.is_some(), datum::VALUE),
        ];
        for (on, bit) in opt {
            if on {
                flags |= bit;
            }
        }
        out.extend_from_slice(&flags.to_le_bytes());
        if flags & datum::NAMESPACE != 0 {
            put_text(&mut out, &s.namespace);
            namespace = &s.namespace;
        }
        put_uint(&mut out, s.id);
        if let Some(t) = s.value_type {
            put_uint(&mut out, u64::from(t));
        }
        if let Some(t) = &s.type_text {
            put_text(&mut out, t);
        }
        if let Some(u) = s.unit {
            put_uint(&mut out, u64::from(u));
        }
        if let Some(t) = &s.unit_text {
            put_text(&mut out, t);
        }
        if let Some(v) = &s.value {
            put_value(&mut out, v);
        }
    }
    out
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Unsigned(v) => write!(f, "{v}"),
            Value::Signed(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Text(t) => write!(f, "{t}"),
            Value::Bytes(b) => write!(f, "{} bytes", b.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GuestStats {
        GuestStats {
            version: VERSION,
            flags: legacy_flag::MEMTOTAL | legacy_flag::HUGEPAGESTOTAL,
            mem_total_kib: 16_315_128,
            huge_pages_total: 0,
            stats: vec![
                Stat::uint(id::HUGE_PAGE_SIZE, unit::KIB, Some(2048)),
                Stat::uint(id::MEM_FREE, unit::KIB, Some(1_234_567)),
                Stat::uint(id::HUGE_PAGES_TOTAL, unit::HUGE_PAGES, Some(0)),
                Stat::rate(id::PAGE_IN_RATE, unit::PAGES_PER_SECOND, Some(0.0)),
                Stat::rate(id::PAGE_OUT_RATE, unit::PAGES_PER_SECOND, Some(12.5)),
                Stat::rate(id::CONTEXT_SWAP_RATE, unit::NUMBER_PER_SECOND, Some(0.1)),
                Stat::rate(id::PAGE_IN_RATE, unit::PAGES_PER_SECOND, None),
                Stat::uint(id::MEM_TOTAL, unit::KIB, Some(u64::MAX)),
            ],
        }
    }

    #[test]
    fn layout_matches_vmtoolsd() {
        let b = encode(&sample());
        assert_eq!(&b[..4], &5u32.to_le_bytes());
        assert_eq!(&b[4..8], &0x401u32.to_le_bytes());
        assert_eq!(&b[8..16], &16_315_128u64.to_le_bytes());
        // First stat: ID|type|unit|namespace|value, "_tools/v1\0", id 11 in
        // one byte, type 9 in one byte, unit 0x0803 in two bytes, 2048 in two.
        let s = &b[LEGACY_SIZE..];
        assert_eq!(&s[..4], &0xaeu32.to_le_bytes());
        assert_eq!(&s[4..6], &10u16.to_le_bytes());
        assert_eq!(&s[6..16], b"_tools/v1\0");
        assert_eq!(&s[16..19], &[1, 0, 11]);
        assert_eq!(&s[19..22], &[1, 0, 9]);
        assert_eq!(&s[22..26], &[2, 0, 0x03, 0x08]);
        assert_eq!(&s[26..30], &[2, 0, 0x00, 0x08]);
        // Second stat: no namespace.
        assert_eq!(&s[30..34], &0xacu32.to_le_bytes());
        // A zero rate is a value of 0 bytes; 12.5 fits a float; 0.1 does not.
        let d = decode(&b).unwrap();
        assert_eq!(d, sample());
        let hp = encode(&GuestStats {
            stats: vec![Stat::uint(id::HUGE_PAGES_TOTAL, unit::HUGE_PAGES, Some(0))],
            ..sample()
        });
        assert_eq!(
            &hp[LEGACY_SIZE + 4 + 12..],
            &[1, 0, 12, 1, 0, 9, 2, 0, 0x03, 0x88, 0, 0]
        );
    }

    #[test]
    fn round_trips_every_kind_of_value() {
        let mut r = sample();
        r.stats.push(Stat {
            namespace: "other/ns".into(),
            id: 70_000,
            value_type: Some(value_type::INT16),
            type_text: Some("short".into()),
            unit: Some(0x1234),
            unit_text: Some("widgets".into()),
            value: Some(Value::Signed(-2)),
        });
        r.stats.push(Stat {
            namespace: "other/ns".into(),
            id: 1,
            value_type: Some(value_type::STRING),
            value: Some(Value::Text("hello".into())),
            ..Stat::default()
        });
        r.stats.push(Stat {
            namespace: "other/ns".into(),
            id: 2,
            value_type: Some(value_type::BINARY),
            value: Some(Value::Bytes(vec![1, 2, 3])),
            ..Stat::default()
        });
        r.stats.push(Stat::rate(3, unit::NUMBER, Some(f64::NAN)));
        let d = decode(&encode(&r)).unwrap();
        assert_eq!(d, r);
        assert_eq!(d.stats[8].name(), "other/ns:70000");
        assert_eq!(d.stats[0].name(), "guest.hugePage.size");
        assert_eq!(d.tools_u64(id::MEM_FREE), Some(1_234_567));
    }

    #[test]
    fn bad_input_is_an_error() {
        let good = encode(&sample());
        assert_eq!(decode(&good[..50]), Err(StatsError::ShortHeader(50)));
        let mut v4 = good.clone();
        v4[0] = 4;
        assert_eq!(decode(&v4), Err(StatsError::Version(4)));
        // A cut between stats leaves the stats before it; any other cut is
        // a clear error, never a panic.
        let mut cuts = 0;
        for cut in LEGACY_SIZE + 1..good.len() {
            match decode(&good[..cut]) {
                Ok(d) => assert!(sample().stats.starts_with(&d.stats), "{cut}"),
                Err(StatsError::Truncated { .. }) => cuts += 1,
                Err(e) => panic!("{cut}: {e}"),
            }
        }
        assert!(cuts > good.len() - LEGACY_SIZE - sample().stats.len() - 1);
        // An ID of 3 bytes.
        let mut bad = good[..LEGACY_SIZE].to_vec();
        bad.extend_from_slice(&datum::ID.to_le_bytes());
        bad.extend_from_slice(&[3, 0, 1, 2, 3]);
        assert!(matches!(decode(&bad), Err(StatsError::BadSize { .. })));
        // No ID.
        let mut bad = good[..LEGACY_SIZE].to_vec();
        bad.extend_from_slice(&datum::VALUE_UNIT_ENUM.to_le_bytes());
        bad.extend_from_slice(&[1, 0, 3]);
        assert_eq!(decode(&bad), Err(StatsError::NoId(0)));
        // A uint8 value in 8 bytes.
        let mut bad = good[..LEGACY_SIZE].to_vec();
        bad.extend_from_slice(&(datum::ID | datum::VALUE_TYPE_ENUM | datum::VALUE).to_le_bytes());
        bad.extend_from_slice(&[1, 0, 4, 1, 0, 3, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(matches!(decode(&bad), Err(StatsError::BadSize { .. })));
        // A unit wider than 32 bits.
        let mut bad = good[..LEGACY_SIZE].to_vec();
        bad.extend_from_slice(&(datum::ID | datum::VALUE_UNIT_ENUM).to_le_bytes());
        bad.extend_from_slice(&[1, 0, 4, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(matches!(decode(&bad), Err(StatsError::Range { .. })));
        // A pragma and an unknown datum are skipped.
        let mut ok = good[..LEGACY_SIZE].to_vec();
        ok.extend_from_slice(&(datum::PRAGMA | datum::ID | 0x100).to_le_bytes());
        ok.extend_from_slice(&[2, 0, 9, 9, 1, 0, 60, 1, 0, 7]);
        let d = decode(&ok).unwrap();
        assert_eq!(d.stats[0].id, 60);
        assert!(d.stats[0].value.is_none());
    }

    /// Every single-byte change of a report decodes to an error or to a
    /// report that re-encodes to itself (the fuzz target's property, here
    /// exhaustively for one report).
    #[test]
    fn mutations_never_panic() {
        let good = encode(&sample());
        for at in 0..good.len() {
            for v in [0u8, 1, 2, 3, 4, 7, 8, 9, 0x7f, 0x80, 0xfe, 0xff] {
                let mut b = good.clone();
                b[at] = v;
                if let Ok(d) = decode(&b) {
                    assert_eq!(decode(&encode(&d)).unwrap(), d, "byte {at} = {v}");
                }
            }
        }
    }

    #[test]
    fn units_read_well() {
        assert_eq!(unit_name(unit::KIB), "KiB");
        assert_eq!(unit_name(unit::PAGES_PER_SECOND), "pages/s");
        assert_eq!(unit_name(unit::HUGE_PAGES), "huge pages");
        assert_eq!(unit_name(unit::BYTES), "B");
        assert_eq!(unit_name(unit::NUMBER), "count");
        assert_eq!(unit_name(unit::NUMBER_PER_SECOND), "/s");
        assert_eq!(unit_name(unit::PERCENT), "%");
        assert_eq!(unit_name(0xf003), "0xf003");
        assert_eq!(tools_name(60), Some("guest.mem.total"));
        assert_eq!(tools_name(0), None);
        assert_eq!(tools_name(67), None);
    }
}
