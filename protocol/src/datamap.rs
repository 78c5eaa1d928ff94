//! DataMap, the typed field map open-vm-tools serializes onto a stream, and
//! the TCLO-over-vsock packets built from it.
//!
//! On a VMware host the guest can reach the hypervisor over vsock (CID 0,
//! port [`TCLO_VSOCK_PORT`]) instead of polling TCLO over the backdoor: the
//! host pushes each command as a packet, the guest answers with one, and
//! sends a [`PacketKind::Ping`] now and then as a heartbeat.
//!
//! Wire format of a serialized map (all integers big-endian):
//!
//! ```text
//! u32 content length
//! then entries until the content ends:
//!   i32 type (1 int64, 2 string, 3 int64 list, 4 string list)
//!   i32 field id (unique within the map)
//!   value: int64       → low 32 bits, then high 32 bits
//!          string      → i32 length, bytes
//!          int64 list  → i32 count, count × int64
//!          string list → i32 count, count × string
//! ```
//!
//! A packet is a map with field [`FIELD_TYPE`] (int64 1 data, 2 ping) and,
//! for data, [`FIELD_PAYLOAD`] (the command or reply text).

use std::io::Read;

/// vsock port of TCLO on the hypervisor (CID 0).
pub const TCLO_VSOCK_PORT: u32 = 975;
/// vsock port of RPCI on the hypervisor (CID 0).
pub const RPCI_VSOCK_PORT: u32 = 976;
/// vsock CID of the hypervisor (VMCI's hypervisor context).
pub const HYPERVISOR_CID: u32 = 0;

/// Packet field: the packet type (int64, [`PacketKind`]).
pub const FIELD_TYPE: i32 = 1;
/// Packet field: the payload (string).
pub const FIELD_PAYLOAD: i32 = 2;
/// Packet field: fast close (int64).
pub const FIELD_FAST_CLOSE: i32 = 3;

/// Largest map content accepted (TCLO messages are far smaller; a host's
/// guest messages are limited to 64 KiB).
pub const MAX_PACKET: usize = 1 << 20;

const TYPE_INT64: i32 = 1;
const TYPE_STRING: i32 = 2;
const TYPE_INT64_LIST: i32 = 3;
const TYPE_STRING_LIST: i32 = 4;

/// Why bytes are not a DataMap or not a packet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DataMapError {
    /// The data ends inside an entry.
    #[error("truncated DataMap: {0}")]
    Truncated(&'static str),
    /// The declared content length is over [`MAX_PACKET`].
    #[error("DataMap of {0} bytes is over the {MAX_PACKET}-byte limit")]
    TooLarge(usize),
    /// An entry type this format does not have.
    #[error("unknown DataMap entry type {0}")]
    UnknownType(i32),
    /// A field id appears twice.
    #[error("DataMap field {0} appears twice")]
    DuplicateField(i32),
    /// A negative length or count.
    #[error("negative length in DataMap: {0}")]
    BadLength(i32),
    /// The map is not a packet (no or wrong type field, data without payload).
    #[error("not a TCLO packet: {0}")]
    NotAPacket(&'static str),
    /// The stream failed.
    #[error("read failed: {0}")]
    Io(String),
}

/// One value of a DataMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A signed 64-bit number.
    Int64(i64),
    /// Bytes (usually text, not NUL-terminated).
    String(Vec<u8>),
    /// Numbers.
    Int64List(Vec<i64>),
    /// Byte strings.
    StringList(Vec<Vec<u8>>),
}

/// A DataMap: field ids to values, in insertion order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataMap {
    entries: Vec<(i32, Value)>,
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn i32(&mut self, what: &'static str) -> Result<i32, DataMapError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<4>()
            .ok_or(DataMapError::Truncated(what))?;
        self.buf = rest;
        Ok(i32::from_be_bytes(*head))
    }

    fn len(&mut self, what: &'static str) -> Result<usize, DataMapError> {
        let n = self.i32(what)?;
        usize::try_from(n).map_err(|_| DataMapError::BadLength(n))
    }

    fn i64(&mut self) -> Result<i64, DataMapError> {
        let low = self.i32("int64")? as u32;
        let high = self.i32("int64")? as u32;
        Ok(((u64::from(high) << 32) | u64::from(low)) as i64)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DataMapError> {
        let n = self.len("string length")?;
        if n > self.buf.len() {
            return Err(DataMapError::Truncated("string"));
        }
        let (s, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(s.to_vec())
    }
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_i32(out, v as u32 as i32);
    put_i32(out, (v as u64 >> 32) as u32 as i32);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_i32(out, b.len() as i32);
    out.extend_from_slice(b);
}

impl DataMap {
    /// An empty map.
    pub fn new() -> DataMap {
        DataMap::default()
    }

    /// Set field `id` (replacing an earlier value).
    pub fn set(&mut self, id: i32, v: Value) {
        match self.entries.iter_mut().find(|(k, _)| *k == id) {
            Some(e) => e.1 = v,
            None => self.entries.push((id, v)),
        }
    }

    /// The value of field `id`.
    pub fn get(&self, id: i32) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| *k == id).map(|(_, v)| v)
    }

    /// Field `id` if it is a number.
    pub fn int64(&self, id: i32) -> Option<i64> {
        match self.get(id)? {
            Value::Int64(n) => Some(*n),
            _ => None,
        }
    }

    /// Field `id` if it is a string.
    pub fn string(&self, id: i32) -> Option<&[u8]> {
        match self.get(id)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The wire bytes: the content length, then the entries.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = vec![0; 4];
        for (id, v) in &self.entries {
            let ty = match v {
                Value::Int64(_) => TYPE_INT64,
                Value::String(_) => TYPE_STRING,
                Value::Int64List(_) => TYPE_INT64_LIST,
                Value::StringList(_) => TYPE_STRING_LIST,
            };
            put_i32(&mut out, ty);
            put_i32(&mut out, *id);
            match v {
                Value::Int64(n) => put_i64(&mut out, *n),
                Value::String(s) => put_bytes(&mut out, s),
                Value::Int64List(l) => {
                    put_i32(&mut out, l.len() as i32);
                    l.iter().for_each(|n| put_i64(&mut out, *n));
                }
                Value::StringList(l) => {
                    put_i32(&mut out, l.len() as i32);
                    l.iter().for_each(|s| put_bytes(&mut out, s));
                }
            }
        }
        let len = (out.len() - 4) as u32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        out
    }

    /// Parse map content (the bytes after the 4-byte length).
    pub fn deserialize_content(content: &[u8]) -> Result<DataMap, DataMapError> {
        if content.len() > MAX_PACKET {
            return Err(DataMapError::TooLarge(content.len()));
        }
        let mut c = Cursor { buf: content };
        let mut map = DataMap::new();
        while !c.buf.is_empty() {
            let ty = c.i32("entry type")?;
            let id = c.i32("field id")?;
            if map.get(id).is_some() {
                return Err(DataMapError::DuplicateField(id));
            }
            let v = match ty {
                TYPE_INT64 => Value::Int64(c.i64()?),
                TYPE_STRING => Value::String(c.bytes()?),
                TYPE_INT64_LIST => {
                    let n = c.len("list length")?;
                    if n > c.buf.len() / 8 {
                        return Err(DataMapError::Truncated("int64 list"));
                    }
                    Value::Int64List((0..n).map(|_| c.i64()).collect::<Result<_, _>>()?)
                }
                TYPE_STRING_LIST => {
                    let n = c.len("list length")?;
                    if n > c.buf.len() / 4 {
                        return Err(DataMapError::Truncated("string list"));
                    }
                    Value::StringList((0..n).map(|_| c.bytes()).collect::<Result<_, _>>()?)
                }
                t => return Err(DataMapError::UnknownType(t)),
            };
            map.entries.push((id, v));
        }
        Ok(map)
    }

    /// Parse a whole serialized map (length prefix included); bytes after
    /// the declared content are ignored, as open-vm-tools ignores them.
    pub fn deserialize(buf: &[u8]) -> Result<DataMap, DataMapError> {
        let (head, rest) = buf
            .split_first_chunk::<4>()
            .ok_or(DataMapError::Truncated("length"))?;
        let len = u32::from_be_bytes(*head) as usize;
        if len > MAX_PACKET {
            return Err(DataMapError::TooLarge(len));
        }
        let content = rest.get(..len).ok_or(DataMapError::Truncated("content"))?;
        DataMap::deserialize_content(content)
    }
}

/// What a TCLO-over-vsock packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// A command (host to guest) or a reply (guest to host).
    Data,
    /// The guest's heartbeat.
    Ping,
}

/// One TCLO-over-vsock packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Data or ping.
    pub kind: PacketKind,
    /// The command or reply text (none in a ping).
    pub payload: Option<Vec<u8>>,
}

impl Packet {
    /// A data packet carrying `payload` (an empty one is left out of the
    /// map, as open-vm-tools does).
    pub fn data(payload: &[u8]) -> Packet {
        Packet {
            kind: PacketKind::Data,
            payload: Some(payload.to_vec()),
        }
    }

    /// A heartbeat.
    pub fn ping() -> Packet {
        Packet {
            kind: PacketKind::Ping,
            payload: None,
        }
    }

    /// The wire bytes, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = DataMap::new();
        let ty = match self.kind {
            PacketKind::Data => 1,
            PacketKind::Ping => 2,
        };
        m.set(FIELD_TYPE, Value::Int64(ty));
        if let Some(p) = self.payload.as_ref().filter(|p| !p.is_empty()) {
            m.set(FIELD_PAYLOAD, Value::String(p.clone()));
        }
        m.serialize()
    }

    /// Parse packet content (after the 4-byte length). A packet without a
    /// type field is data, as open-vm-tools only looks at the payload.
    pub fn decode(content: &[u8]) -> Result<Packet, DataMapError> {
        Packet::from_map(&DataMap::deserialize_content(content)?)
    }

    /// The packet a parsed map is (its other fields, such as
    /// [`FIELD_FAST_CLOSE`], are left to the caller).
    pub fn from_map(m: &DataMap) -> Result<Packet, DataMapError> {
        let kind = match m.get(FIELD_TYPE) {
            None | Some(Value::Int64(1)) => PacketKind::Data,
            Some(Value::Int64(2)) => PacketKind::Ping,
            Some(_) => return Err(DataMapError::NotAPacket("type is not 1 (data) or 2 (ping)")),
        };
        let payload = match m.get(FIELD_PAYLOAD) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(DataMapError::NotAPacket("payload is not a string")),
        };
        // open-vm-tools leaves the payload out when it is empty.
        let payload = match (kind, payload) {
            (PacketKind::Data, None) => Some(Vec::new()),
            (PacketKind::Ping, Some(p)) if p.is_empty() => None,
            (_, p) => p,
        };
        Ok(Packet { kind, payload })
    }
}

/// Incremental packet reader for non-blocking streams: feed what arrived,
/// take whole packets out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Append bytes read from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole packet, `Ok(None)` if more bytes are needed. After an
    /// error the stream is out of step: close it.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, DataMapError> {
        let Some(head) = self.buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*head) as usize;
        if len > MAX_PACKET {
            return Err(DataMapError::TooLarge(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let p = Packet::decode(&self.buf[4..4 + len]);
        self.buf.drain(..4 + len);
        p.map(Some)
    }
}

/// Read one packet from a blocking stream; `Ok(None)` at a clean end of
/// stream (between packets).
pub fn read_packet(r: &mut impl Read) -> Result<Option<Packet>, DataMapError> {
    read_map(r)?.map(|m| Packet::from_map(&m)).transpose()
}

/// Read one serialized map from a blocking stream (a packet with all its
/// fields); `Ok(None)` at a clean end of stream (between maps).
pub fn read_map(r: &mut impl Read) -> Result<Option<DataMap>, DataMapError> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(DataMapError::Truncated("length")),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataMapError::Io(e.to_string())),
        }
    }
    let len = u32::from_be_bytes(head) as usize;
    if len > MAX_PACKET {
        return Err(DataMapError::TooLarge(len));
    }
    let mut content = vec![0; len];
    r.read_exact(&mut content).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => DataMapError::Truncated("content"),
        _ => DataMapError::Io(e.to_string()),
    })?;
    DataMap::deserialize_content(&content).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_and_data_have_open_vm_tools_bytes() {
        // DataMap_Serialize of {1: int64 2}: length 16, type 1, id 1,
        // low word 2, high word 0.
        assert_eq!(
            Packet::ping().encode(),
            [0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0]
        );
        let d = Packet::data(b"OK ").encode();
        assert_eq!(&d[..4], &(16u32 + 4 + 4 + 4 + 3).to_be_bytes());
        assert_eq!(
            &d[20..],
            [0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3, b'O', b'K', b' ']
        );
        assert_eq!(Packet::decode(&d[4..]).unwrap(), Packet::data(b"OK "));
    }

    #[test]
    fn every_value_type_round_trips() {
        let mut m = DataMap::new();
        m.set(7, Value::Int64(-2));
        m.set(8, Value::String(b"\0x".to_vec()));
        m.set(9, Value::Int64List(vec![i64::MIN, 0, i64::MAX]));
        m.set(10, Value::StringList(vec![vec![], b"ab".to_vec()]));
        let wire = m.serialize();
        assert_eq!(DataMap::deserialize(&wire).unwrap(), m);
        assert_eq!(m.int64(7), Some(-2));
        assert_eq!(m.string(8), Some(&b"\0x"[..]));
    }

    #[test]
    fn bad_maps_are_errors() {
        let ping = Packet::ping().encode();
        for cut in 0..ping.len() {
            assert!(DataMap::deserialize(&ping[..cut]).is_err(), "cut at {cut}");
        }
        let mut dup = DataMap::new().serialize();
        for _ in 0..2 {
            dup.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        let n = (dup.len() - 4) as u32;
        dup[..4].copy_from_slice(&n.to_be_bytes());
        assert_eq!(
            DataMap::deserialize(&dup),
            Err(DataMapError::DuplicateField(5))
        );
        assert_eq!(
            DataMap::deserialize_content(&[0, 0, 0, 9, 0, 0, 0, 1]),
            Err(DataMapError::UnknownType(9))
        );
        assert_eq!(
            DataMap::deserialize_content(&[0, 0, 0, 2, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]),
            Err(DataMapError::BadLength(-1))
        );
        // A list count far beyond the data is refused before allocating.
        assert!(DataMap::deserialize_content(&[0, 0, 0, 3, 0, 0, 0, 1, 0x7f, 0, 0, 0]).is_err());
        assert_eq!(
            DataMap::deserialize(&[0x7f, 0, 0, 0]),
            Err(DataMapError::TooLarge(0x7f00_0000))
        );
        let mut m = DataMap::new();
        m.set(FIELD_TYPE, Value::Int64(7));
        assert!(matches!(
            Packet::decode(&m.serialize()[4..]),
            Err(DataMapError::NotAPacket(_))
        ));
        // An empty reply goes without a payload field and comes back empty.
        let empty = Packet::data(b"").encode();
        assert_eq!(
            empty,
            Packet::ping()
                .encode()
                .iter()
                .enumerate()
                .map(|(i, b)| if i == 15 { 1 } else { *b })
                .collect::<Vec<u8>>()
        );
        assert_eq!(Packet::decode(&empty[4..]).unwrap(), Packet::data(b""));
    }

    #[test]
    fn read_map_keeps_the_fast_close_field() {
        // What open-vm-tools' Socket_SendPacket sends with fast close.
        let mut m = DataMap::new();
        m.set(FIELD_TYPE, Value::Int64(1));
        m.set(
            FIELD_PAYLOAD,
            Value::String(b"info-get guestinfo.x".to_vec()),
        );
        m.set(FIELD_FAST_CLOSE, Value::Int64(1));
        let wire = [m.serialize(), Packet::data(b"log hi").encode()].concat();
        let mut r = &wire[..];
        let got = read_map(&mut r).unwrap().unwrap();
        assert_eq!(got.int64(FIELD_FAST_CLOSE), Some(1));
        assert_eq!(
            Packet::from_map(&got).unwrap(),
            Packet::data(b"info-get guestinfo.x")
        );
        let next = read_map(&mut r).unwrap().unwrap();
        assert_eq!(next.int64(FIELD_FAST_CLOSE), None);
        assert_eq!(read_packet(&mut &wire[wire.len()..]).unwrap(), None);
        assert_eq!(read_map(&mut r).unwrap(), None);
    }

    #[test]
    fn decoder_takes_packets_split_anywhere() {
        let mut wire = Packet::data(b"reset").encode();
        wire.extend(Packet::ping().encode());
        wire.extend(Packet::data(b"ping").encode());
        for step in 1..wire.len() {
            let mut d = Decoder::new();
            let mut got = vec![];
            for chunk in wire.chunks(step) {
                d.feed(chunk);
                while let Some(p) = d.next_packet().unwrap() {
                    got.push(p);
                }
            }
            assert_eq!(
                got,
                vec![
                    Packet::data(b"reset"),
                    Packet::ping(),
                    Packet::data(b"ping")
                ]
            );
        }
        let mut r = &wire[..];
        assert_eq!(read_packet(&mut r).unwrap(), Some(Packet::data(b"reset")));
        assert_eq!(read_packet(&mut r).unwrap(), Some(Packet::ping()));
        assert_eq!(read_packet(&mut r).unwrap(), Some(Packet::data(b"ping")));
        assert_eq!(read_packet(&mut r).unwrap(), None);
    }
}
