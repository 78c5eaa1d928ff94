//! HGFS packets: the file protocol guest operations move file data with
//! (relayed in VIX opcode 84 or TCLO `f`).
//!
//! Layouts from open-vm-tools `lib/include/hgfsProto.h` and `hgfs.h`
//! (packed, little-endian). A packet is the 52-byte [`Header`] (the "new"
//! header, `dummy` = [`OP_NEW_HEADER`]) then an op-specific payload. V2 ops
//! (GETATTR_V2, SETATTR_V2) and the V1 ops (OPEN, CLOSE) keep their old
//! 8-byte `HgfsRequest`/`HgfsReply` prefix inside the payload; V3 and V4 ops
//! do not.
//!
//! File names are "cross-platform names": path components separated by NUL
//! bytes, the first component the share name (`root` = `/` for guest
//! operations) ([`cp_name`], [`cp_name_to_path`]).
//!
//! Both sides are here: `encode` of a request and `decode` of a reply for
//! the host (client), the reverse for the guest (server). Every decoder
//! bounds its lengths by the payload it was given.

/// Size of the new header (`HgfsHeader`).
pub const HEADER_LEN: usize = 52;
/// `HGFS_HEADER_VERSION`.
pub const HEADER_VERSION: u8 = 1;
/// `HGFS_OP_NEW_HEADER`, in the header's `dummy` field.
pub const OP_NEW_HEADER: i32 = 0xff;
/// `HGFS_PACKET_MAX`: the classic packet limit.
pub const PACKET_MAX: usize = 6144;
/// `HGFS_LARGE_PACKET_MAX` (legacy value, 15 pages plus header room): the
/// largest packet a transfer uses.
pub const LARGE_PACKET_MAX: usize = 0xF800;
/// `HGFS_LEGACY_LARGE_IO_MAX`: the most data one READ_V3/WRITE_V3 moves.
pub const LARGE_IO_MAX: usize = 15 * 4096;
/// The share name under which the guest's `/` is exported.
pub const ROOT_SHARE: &str = "root";

/// HGFS operations (`HgfsOp`).
pub mod op {
    /// Open (V1).
    pub const OPEN: i32 = 0;
    /// Read (V1).
    pub const READ: i32 = 1;
    /// Write (V1).
    pub const WRITE: i32 = 2;
    /// Close (V1).
    pub const CLOSE: i32 = 3;
    /// Get attributes (V1).
    pub const GETATTR: i32 = 7;
    /// Set attributes (V1).
    pub const SETATTR: i32 = 8;
    /// Get attributes (V2).
    pub const GETATTR_V2: i32 = 15;
    /// Set attributes (V2).
    pub const SETATTR_V2: i32 = 16;
    /// Open (V3).
    pub const OPEN_V3: i32 = 24;
    /// Read (V3).
    pub const READ_V3: i32 = 25;
    /// Write (V3).
    pub const WRITE_V3: i32 = 26;
    /// Close (V3).
    pub const CLOSE_V3: i32 = 27;
    /// Create a session (V4).
    pub const CREATE_SESSION_V4: i32 = 41;
    /// Destroy a session (V4).
    pub const DESTROY_SESSION_V4: i32 = 42;
}

/// Reply status codes (`HgfsStatus`).
pub mod status {
    /// Success.
    pub const SUCCESS: u32 = 0;
    /// No such file or directory.
    pub const NO_SUCH_FILE_OR_DIR: u32 = 1;
    /// Invalid handle.
    pub const INVALID_HANDLE: u32 = 2;
    /// Operation not permitted.
    pub const OPERATION_NOT_PERMITTED: u32 = 3;
    /// File exists.
    pub const FILE_EXISTS: u32 = 4;
    /// Not a directory.
    pub const NOT_DIRECTORY: u32 = 5;
    /// Directory not empty.
    pub const DIR_NOT_EMPTY: u32 = 6;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u32 = 7;
    /// Access denied.
    pub const ACCESS_DENIED: u32 = 8;
    /// Invalid name.
    pub const INVALID_NAME: u32 = 9;
    /// Generic error.
    pub const GENERIC_ERROR: u32 = 10;
    /// Sharing violation.
    pub const SHARING_VIOLATION: u32 = 11;
    /// No space.
    pub const NO_SPACE: u32 = 12;
    /// Operation not supported.
    pub const OPERATION_NOT_SUPPORTED: u32 = 13;
    /// Name too long.
    pub const NAME_TOO_LONG: u32 = 14;
    /// Invalid parameter.
    pub const INVALID_PARAMETER: u32 = 15;
    /// Not the same device.
    pub const NOT_SAME_DEVICE: u32 = 16;
    /// Stale session.
    pub const STALE_SESSION: u32 = 17;
    /// Too many sessions.
    pub const TOO_MANY_SESSIONS: u32 = 18;
    /// Transport error.
    pub const TRANSPORT_ERROR: u32 = 19;
}

/// A short description of a status code.
pub fn status_name(status: u32) -> &'static str {
    match status {
        status::SUCCESS => "success",
        status::NO_SUCH_FILE_OR_DIR => "no such file or directory",
        status::INVALID_HANDLE => "invalid handle",
        status::OPERATION_NOT_PERMITTED => "operation not permitted",
        status::FILE_EXISTS => "file exists",
        status::NOT_DIRECTORY => "not a directory",
        status::DIR_NOT_EMPTY => "directory not empty",
        status::PROTOCOL_ERROR => "protocol error",
        status::ACCESS_DENIED => "access denied",
        status::INVALID_NAME => "invalid name",
        status::GENERIC_ERROR => "generic error",
        status::SHARING_VIOLATION => "sharing violation",
        status::NO_SPACE => "no space left",
        status::OPERATION_NOT_SUPPORTED => "operation not supported",
        status::NAME_TOO_LONG => "name too long",
        status::INVALID_PARAMETER => "invalid parameter",
        status::NOT_SAME_DEVICE => "not the same device",
        status::STALE_SESSION => "stale session",
        status::TOO_MANY_SESSIONS => "too many sessions",
        status::TRANSPORT_ERROR => "transport error",
        _ => "unknown HGFS status",
    }
}

/// Header `flags` (`HGFS_PACKET_FLAG_*`).
pub mod packet_flags {
    /// A request.
    pub const REQUEST: u32 = 1;
    /// A reply.
    pub const REPLY: u32 = 2;
    /// `information` carries an extended error.
    pub const INFO_EXTERROR: u32 = 4;
}

/// `HgfsAttrV2.mask` bits (`HGFS_ATTR_VALID_*`).
pub mod attr_valid {
    /// type
    pub const TYPE: u64 = 1 << 0;
    /// size
    pub const SIZE: u64 = 1 << 1;
    /// creationTime
    pub const CREATE_TIME: u64 = 1 << 2;
    /// accessTime
    pub const ACCESS_TIME: u64 = 1 << 3;
    /// writeTime
    pub const WRITE_TIME: u64 = 1 << 4;
    /// attrChangeTime
    pub const CHANGE_TIME: u64 = 1 << 5;
    /// specialPerms
    pub const SPECIAL_PERMS: u64 = 1 << 6;
    /// ownerPerms
    pub const OWNER_PERMS: u64 = 1 << 7;
    /// groupPerms
    pub const GROUP_PERMS: u64 = 1 << 8;
    /// otherPerms
    pub const OTHER_PERMS: u64 = 1 << 9;
    /// flags
    pub const FLAGS: u64 = 1 << 10;
    /// allocationSize
    pub const ALLOCATION_SIZE: u64 = 1 << 11;
    /// userId
    pub const USERID: u64 = 1 << 12;
    /// groupId
    pub const GROUPID: u64 = 1 << 13;
    /// hostFileId
    pub const FILEID: u64 = 1 << 14;
    /// volumeId
    pub const VOLID: u64 = 1 << 15;
    /// effectivePerms
    pub const EFFECTIVE_PERMS: u64 = 1 << 17;
}

/// `HgfsRequestOpenV3.mask` bits (`HGFS_OPEN_VALID_*`).
pub mod open_valid {
    /// mode
    pub const MODE: u64 = 1 << 0;
    /// flags
    pub const FLAGS: u64 = 1 << 1;
    /// specialPerms
    pub const SPECIAL_PERMS: u64 = 1 << 2;
    /// ownerPerms
    pub const OWNER_PERMS: u64 = 1 << 3;
    /// groupPerms
    pub const GROUP_PERMS: u64 = 1 << 4;
    /// otherPerms
    pub const OTHER_PERMS: u64 = 1 << 5;
    /// attr
    pub const FILE_ATTR: u64 = 1 << 6;
    /// allocationSize
    pub const ALLOCATION_SIZE: u64 = 1 << 7;
    /// desiredAccess
    pub const DESIRED_ACCESS: u64 = 1 << 8;
    /// shareAccess
    pub const SHARE_ACCESS: u64 = 1 << 9;
    /// desiredLock
    pub const SERVER_LOCK: u64 = 1 << 10;
    /// fileName
    pub const FILE_NAME: u64 = 1 << 11;
}

/// Open modes (`HgfsOpenMode`).
pub mod open_mode {
    /// Read only.
    pub const READ_ONLY: u32 = 0;
    /// Write only.
    pub const WRITE_ONLY: u32 = 1;
    /// Read and write.
    pub const READ_WRITE: u32 = 2;
}

/// Open flags (`HgfsOpenFlags`): what to do when the file exists or not.
pub mod open_flags {
    /// Open an existing file.
    pub const OPEN: u32 = 0;
    /// Open an existing file and truncate it.
    pub const OPEN_EMPTY: u32 = 1;
    /// Open or create.
    pub const CREATE: u32 = 2;
    /// Create; fail if it exists.
    pub const CREATE_SAFE: u32 = 3;
    /// Create or truncate.
    pub const CREATE_EMPTY: u32 = 4;
}

/// Permission bits of one class (`HGFS_PERM_*`).
pub mod perm {
    /// Read.
    pub const READ: u8 = 4;
    /// Write.
    pub const WRITE: u8 = 2;
    /// Execute.
    pub const EXEC: u8 = 1;
}

/// File types (`HgfsFileType`).
pub mod file_type {
    /// Regular file.
    pub const REGULAR: i32 = 0;
    /// Directory.
    pub const DIRECTORY: i32 = 1;
    /// Symbolic link.
    pub const SYMLINK: i32 = 2;
}

/// `HgfsFileNameV3` case types.
pub mod case_type {
    /// Server default.
    pub const DEFAULT: i32 = 0;
    /// Case sensitive.
    pub const SENSITIVE: i32 = 1;
    /// Case insensitive.
    pub const INSENSITIVE: i32 = 2;
}

/// `HgfsFileNameV3.flags`: the name is empty and `fid` names an open handle.
pub const FILE_NAME_USE_FILE_DESC: u32 = 1;
/// `HgfsAttrHint`: set the access time.
pub const ATTR_HINT_SET_ACCESS_TIME: u64 = 1;
/// `HgfsAttrHint`: set the write time.
pub const ATTR_HINT_SET_WRITE_TIME: u64 = 2;
/// `HgfsAttrHint`: the request names a handle, not a file name.
pub const ATTR_HINT_USE_FILE_DESC: u64 = 4;
/// `HgfsSessionFlags`: the max packet size field is valid.
pub const SESSION_MAXPACKETSIZE_VALID: u32 = 1;

/// Why an HGFS packet did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HgfsError {
    /// The header is malformed.
    #[error("invalid HGFS header: {0}")]
    BadHeader(&'static str),
    /// The payload is too short or inconsistent.
    #[error("invalid HGFS payload: {0}")]
    BadPayload(&'static str),
    /// A packet would exceed the size limit.
    #[error("HGFS packet too large")]
    TooLarge,
    /// A path cannot be expressed as an HGFS name.
    #[error("invalid path for HGFS: {0}")]
    BadPath(&'static str),
}

#[derive(Debug)]
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], HgfsError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(HgfsError::BadPayload("payload too short"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, HgfsError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, HgfsError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn i32(&mut self) -> Result<i32, HgfsError> {
        Ok(self.u32()? as i32)
    }
    fn u64(&mut self) -> Result<u64, HgfsError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.data[self.pos..];
        self.pos = self.data.len();
        s
    }
    /// `HgfsFileName`: u32 length, then that many bytes (a NUL may follow).
    fn name(&mut self) -> Result<Vec<u8>, HgfsError> {
        let len = self.u32()? as usize;
        let name = self
            .take(len)
            .map_err(|_| HgfsError::BadPayload("file name longer than the packet"))?;
        // Skip the terminating NUL when present.
        if self.data.get(self.pos) == Some(&0) {
            self.pos += 1;
        }
        Ok(name.to_vec())
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_name(out: &mut Vec<u8>, name: &[u8]) {
    put_u32(out, u32::try_from(name.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(name);
    out.push(0);
}

// ---------------------------------------------------------------------------
// Names.

/// The cross-platform name of an absolute guest path: `root`, then the
/// components, separated by NUL (`/tmp/a` → `root\0tmp\0a`). Empty
/// components and `.` are dropped; `..` is refused (the server would too).
pub fn cp_name(path: &str) -> Result<Vec<u8>, HgfsError> {
    if !path.starts_with('/') {
        return Err(HgfsError::BadPath("not absolute"));
    }
    if path.contains('\0') {
        return Err(HgfsError::BadPath("contains NUL"));
    }
    let mut out = ROOT_SHARE.as_bytes().to_vec();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(HgfsError::BadPath("contains \"..\"")),
            c => {
                out.push(0);
                out.extend_from_slice(c.as_bytes());
            }
        }
    }
    Ok(out)
}

/// The guest path of a cross-platform name under the root share, or `None`
/// when it names another share or has an empty, `.` or `..` component.
pub fn cp_name_to_path(name: &[u8]) -> Option<String> {
    let mut parts = name.split(|&b| b == 0);
    if parts.next()? != ROOT_SHARE.as_bytes() {
        return None;
    }
    let mut path = String::new();
    for p in parts {
        if p.is_empty() || p == b"." || p == b".." || p.contains(&b'/') {
            return None;
        }
        path.push('/');
        path.push_str(std::str::from_utf8(p).ok()?);
    }
    if path.is_empty() {
        path.push('/');
    }
    Some(path)
}

// ---------------------------------------------------------------------------
// Header and packets.

/// The 52-byte `HgfsHeader` (the "44" miscounts it: 4 + 4 + 7 × 4
/// + 8 + 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// `packetSize`: header + payload.
    pub packet_size: u32,
    /// `headerSize`: 52.
    pub header_size: u32,
    /// `requestId`, echoed in the reply.
    pub request_id: u32,
    /// The op ([`op`]).
    pub op: i32,
    /// Reply status ([`status`]); 0 in requests.
    pub status: u32,
    /// [`packet_flags`].
    pub flags: u32,
    /// Extended error information.
    pub information: u32,
    /// Session id (0 before CREATE_SESSION_V4).
    pub session_id: u64,
}

impl Header {
    /// Append the 52 header bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(HEADER_VERSION);
        out.extend_from_slice(&[0, 0, 0]);
        put_i32(out, OP_NEW_HEADER);
        put_u32(out, self.packet_size);
        put_u32(out, self.header_size);
        put_u32(out, self.request_id);
        put_i32(out, self.op);
        put_u32(out, self.status);
        put_u32(out, self.flags);
        put_u32(out, self.information);
        put_u64(out, self.session_id);
        put_u64(out, 0);
    }

    /// Decode and validate: `dummy` is [`OP_NEW_HEADER`], the header size is
    /// at least 52, the packet size covers the header and fits in `data`.
    pub fn decode(data: &[u8]) -> Result<Self, HgfsError> {
        if data.len() < HEADER_LEN {
            return Err(HgfsError::BadHeader("shorter than the header"));
        }
        let mut c = Cursor::new(data);
        let _version = c.u8().map_err(|_| HgfsError::BadHeader("short"))?;
        c.take(3).map_err(|_| HgfsError::BadHeader("short"))?;
        let dummy = c.i32().map_err(|_| HgfsError::BadHeader("short"))?;
        let short = |_| HgfsError::BadHeader("short");
        let h = Header {
            packet_size: c.u32().map_err(short)?,
            header_size: c.u32().map_err(short)?,
            request_id: c.u32().map_err(short)?,
            op: c.i32().map_err(short)?,
            status: c.u32().map_err(short)?,
            flags: c.u32().map_err(short)?,
            information: c.u32().map_err(short)?,
            session_id: c.u64().map_err(short)?,
        };
        if dummy != OP_NEW_HEADER {
            return Err(HgfsError::BadHeader("not a new-style header"));
        }
        if (h.header_size as usize) < HEADER_LEN {
            return Err(HgfsError::BadHeader("header size below 52"));
        }
        if h.packet_size < h.header_size {
            return Err(HgfsError::BadHeader("packet size below header size"));
        }
        if h.packet_size as usize > data.len() {
            return Err(HgfsError::BadHeader("packet size beyond the data"));
        }
        Ok(h)
    }
}

/// A parsed packet: header and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The header.
    pub header: Header,
    /// The op-specific payload.
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Parse a packet ([`Header::decode`]).
    pub fn parse(data: &'a [u8]) -> Result<Self, HgfsError> {
        let header = Header::decode(data)?;
        Ok(Packet {
            header,
            payload: &data[header.header_size as usize..header.packet_size as usize],
        })
    }
}

/// Build a request packet (client side).
pub fn build_request(
    op: i32,
    request_id: u32,
    session_id: u64,
    payload: &[u8],
) -> Result<Vec<u8>, HgfsError> {
    build(
        op,
        request_id,
        session_id,
        0,
        packet_flags::REQUEST,
        payload,
    )
}

/// Build the reply to `request` (server side).
pub fn build_reply(request: &Header, status: u32, payload: &[u8]) -> Result<Vec<u8>, HgfsError> {
    build(
        request.op,
        request.request_id,
        request.session_id,
        status,
        packet_flags::REPLY,
        payload,
    )
}

fn build(
    op: i32,
    request_id: u32,
    session_id: u64,
    status: u32,
    flags: u32,
    payload: &[u8],
) -> Result<Vec<u8>, HgfsError> {
    let size = HEADER_LEN + payload.len();
    if size > LARGE_PACKET_MAX {
        return Err(HgfsError::TooLarge);
    }
    let h = Header {
        packet_size: size as u32,
        header_size: HEADER_LEN as u32,
        request_id,
        op,
        status,
        flags,
        information: 0,
        session_id,
    };
    let mut out = Vec::with_capacity(size);
    h.encode(&mut out);
    out.extend_from_slice(payload);
    Ok(out)
}

// ---------------------------------------------------------------------------
// Payloads.

/// The old `HgfsRequest`/`HgfsReply` prefix of V1/V2 payloads: id, then op
/// (request) or status (reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OldHeader {
    /// `id`.
    pub id: u32,
    /// `op` in requests, `status` in replies.
    pub op_or_status: u32,
}

impl OldHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, self.id);
        put_u32(out, self.op_or_status);
    }
    fn decode(c: &mut Cursor<'_>) -> Result<Self, HgfsError> {
        Ok(OldHeader {
            id: c.u32()?,
            op_or_status: c.u32()?,
        })
    }
}

/// One `HgfsOpCapability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capability {
    /// The op.
    pub op: i32,
    /// Capability flags (1 = supported).
    pub flags: u32,
}

/// CREATE_SESSION_V4 request (`HgfsRequestCreateSessionV4`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateSessionRequest {
    /// Largest packet the client sends.
    pub max_packet_size: u32,
    /// Session flags.
    pub flags: u32,
    /// Capabilities of the client.
    pub capabilities: Vec<Capability>,
}

fn put_caps(out: &mut Vec<u8>, caps: &[Capability]) {
    for c in caps {
        put_i32(out, c.op);
        put_u32(out, c.flags);
    }
}

fn get_caps(c: &mut Cursor<'_>, n: u32) -> Result<Vec<Capability>, HgfsError> {
    if (n as usize).saturating_mul(8) > c.data.len() - c.pos {
        return Err(HgfsError::BadPayload(
            "more capabilities than the packet holds",
        ));
    }
    (0..n)
        .map(|_| {
            Ok(Capability {
                op: c.i32()?,
                flags: c.u32()?,
            })
        })
        .collect()
}

impl CreateSessionRequest {
    /// Encode the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u32(&mut out, self.capabilities.len() as u32);
        put_u32(&mut out, self.max_packet_size);
        put_u32(&mut out, self.flags);
        put_u32(&mut out, 0);
        put_caps(&mut out, &self.capabilities);
        out
    }
    /// Decode the payload.
    pub fn decode(p: &[u8]) -> Result<Self, HgfsError> {
        let mut c = Cursor::new(p);
        let n = c.u32()?;
        let max_packet_size = c.u32()?;
        let flags = c.u32()?;
        let _reserved = c.u32()?;
        Ok(CreateSessionRequest {
            max_packet_size,
            flags,
            capabilities: get_caps(&mut c, n)?,
        })
    }
}

/// CREATE_SESSION_V4 reply (`HgfsReplyCreateSessionV4`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateSessionReply {
    /// The new session id.
    pub session_id: u64,
    /// Largest packet the server accepts.
    pub max_packet_size: u32,
    /// `identityOffset`.
    pub identity_offset: u32,
    /// Session flags.
    pub flags: u32,
    /// Capabilities of the server.
    pub capabilities: Vec<Capability>,
}

impl CreateSessionReply {
    /// Encode the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u64(&mut out, self.session_id);
        put_u32(&mut out, self.capabilities.len() as u32);
        put_u32(&mut out, self.max_packet_size);
        put_u32(&mut out, self.identity_offset);
        put_u32(&mut out, self.flags);
        put_u32(&mut out, 0);
        put_caps(&mut out, &self.capabilities);
        out
    }
    /// Decode the payload.
    pub fn decode(p: &[u8]) -> Result<Self, HgfsError> {
        let mut c = Cursor::new(p);
        let session_id = c.u64()?;
        let n = c.u32()?;
        let max_packet_size = c.u32()?;
        let identity_offset = c.u32()?;
        let flags = c.u32()?;
        let _reserved = c.u32()?;
        Ok(CreateSessionReply {
            session_id,
            max_packet_size,
            identity_offset,
            flags,
            capabilities: get_caps(&mut c, n)?,
        })
    }
}

/// DESTROY_SESSION_V4 request and reply payload: 8 reserved bytes.
pub fn destroy_session_payload() -> Vec<u8> {
    vec![0; 8]
}

/// `HgfsAttrV2` (104 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttrV2 {
    /// Which fields are valid ([`attr_valid`]).
    pub mask: u64,
    /// [`file_type`].
    pub file_type: i32,
    /// Size in bytes.
    pub size: u64,
    /// Creation time (Windows 100-ns ticks since 1601).
    pub creation_time: u64,
    /// Access time (same unit).
    pub access_time: u64,
    /// Write time (same unit).
    pub write_time: u64,
    /// Attribute change time (same unit).
    pub attr_change_time: u64,
    /// setuid/setgid/sticky as 4/2/1.
    pub special_perms: u8,
    /// Owner rwx as 4/2/1.
    pub owner_perms: u8,
    /// Group rwx.
    pub group_perms: u8,
    /// Other rwx.
    pub other_perms: u8,
    /// `HgfsAttrFlags`.
    pub flags: u64,
    /// Allocated size.
    pub allocation_size: u64,
    /// Owner uid.
    pub user_id: u32,
    /// Group gid.
    pub group_id: u32,
    /// Inode number.
    pub host_file_id: u64,
    /// Volume id.
    pub volume_id: u32,
    /// Effective permissions of the caller.
    pub effective_perms: u32,
}

/// Size of [`AttrV2`] on the wire.
pub const ATTR_V2_LEN: usize = 104;

/// Seconds between 1601-01-01 and 1970-01-01.
const EPOCH_DIFF_SECS: u64 = 11_644_473_600;

/// Unix seconds and nanoseconds to HGFS time (100-ns ticks since 1601).
pub fn unix_to_hgfs_time(secs: i64, nanos: u32) -> u64 {
    let s = (secs as i128 + EPOCH_DIFF_SECS as i128).max(0) as u64;
    s.saturating_mul(10_000_000)
        .saturating_add(u64::from(nanos / 100))
}

/// HGFS time to Unix seconds and nanoseconds.
pub fn hgfs_time_to_unix(t: u64) -> (i64, u32) {
    let secs = (t / 10_000_000) as i64 - EPOCH_DIFF_SECS as i64;
    (secs, ((t % 10_000_000) * 100) as u32)
}

impl AttrV2 {
    /// The Unix mode bits (`0o7777`) from the four permission fields.
    pub fn mode(&self) -> u32 {
        (u32::from(self.special_perms & 7) << 9)
            | (u32::from(self.owner_perms & 7) << 6)
            | (u32::from(self.group_perms & 7) << 3)
            | u32::from(self.other_perms & 7)
    }

    /// Set the four permission fields from Unix mode bits and mark them
    /// valid.
    pub fn set_mode(&mut self, mode: u32) {
        self.special_perms = ((mode >> 9) & 7) as u8;
        self.owner_perms = ((mode >> 6) & 7) as u8;
        self.group_perms = ((mode >> 3) & 7) as u8;
        self.other_perms = (mode & 7) as u8;
        self.mask |= attr_valid::SPECIAL_PERMS
            | attr_valid::OWNER_PERMS
            | attr_valid::GROUP_PERMS
            | attr_valid::OTHER_PERMS;
    }

    /// Append the 104 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.mask);
        put_i32(out, self.file_type);
        put_u64(out, self.size);
        put_u64(out, self.creation_time);
        put_u64(out, self.access_time);
        put_u64(out, self.write_time);
        put_u64(out, self.attr_change_time);
        out.extend_from_slice(&[
            self.special_perms,
            self.owner_perms,
            self.group_perms,
            self.other_perms,
        ]);
        put_u64(out, self.flags);
        put_u64(out, self.allocation_size);
        put_u32(out, self.user_id);
        put_u32(out, self.group_id);
        put_u64(out, self.host_file_id);
        put_u32(out, self.volume_id);
        put_u32(out, self.effective_perms);
        put_u64(out, 0);
    }

    fn decode(c: &mut Cursor<'_>) -> Result<Self, HgfsError> {
        let a = AttrV2 {
            mask: c.u64()?,
            file_type: c.i32()?,
            size: c.u64()?,
            creation_time: c.u64()?,
            access_time: c.u64()?,
            write_time: c.u64()?,
            attr_change_time: c.u64()?,
            special_perms: c.u8()?,
            owner_perms: c.u8()?,
            group_perms: c.u8()?,
            other_perms: c.u8()?,
            flags: c.u64()?,
            allocation_size: c.u64()?,
            user_id: c.u32()?,
            group_id: c.u32()?,
            host_file_id: c.u64()?,
            volume_id: c.u32()?,
            effective_perms: c.u32()?,
        };
        let _reserved = c.u64()?;
        Ok(a)
    }
}

/// GETATTR_V2 request (`HgfsRequestGetattrV2`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetattrV2Request {
    /// Old header id.
    pub id: u32,
    /// `HgfsAttrHint`.
    pub hints: u64,
    /// Handle when [`ATTR_HINT_USE_FILE_DESC`].
    pub handle: u32,
    /// Cross-platform name ([`cp_name`]).
    pub name: Vec<u8>,
}

impl GetattrV2Request {
    /// Encode the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        OldHeader {
            id: self.id,
            op_or_status: op::GETATTR_V2 as u32,
        }
        .encode(&mut out);
        put_u64(&mut out, self.hints);
        put_u32(&mut out, self.handle);
        put_name(&mut out, &self.name);
        out
    }
    /// Decode the payload.
    pub fn decode(p: &[u8]) -> Result<Self, HgfsError> {
        let mut c = Cursor::new(p);
        let h = OldHeader::decode(&mut c)?;
        Ok(GetattrV2Request {
            id: h.id,
            hints: c.u64()?,
            handle: c.u32()?,
            name: c.name()?,
        })
    }
}

/// GETATTR_V2 reply (`HgfsReplyGetattrV2`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetattrV2Reply {
    /// Old header id.
    pub id: u32,
    /// Old header status.
    pub status: u32,
    /// Attributes.
    pub attr: AttrV2,
    /// Symlink target (cross-platform form); empty otherwise.
    pub symlink_target: Vec<u8>,
}

impl GetattrV2Reply {
    /// Encode the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        OldHeader {
            id: self.id,
            op_or_status: self.status,
        }
        .encode(&mut out);
        self.attr.encode(&mut out);
        put_name(&mut out, &self.symlink_target);
        out
    }
    /// Decode the payload.
    pub fn decode(p: &[u8]) -> Result<Self, HgfsError> {
        let mut c = Cursor::new(p);
        let h = OldHeader::decode(&mut c)?;
        let attr = AttrV2::decode(&mut c)?;
        let symlink_target = if c.pos < p.len() {
            c.name()?
        } else {
            Vec::new()
        };
        Ok(GetattrV2Reply {
            id: h.id,
            status: h.op_or_status,
            attr,
            symlink_target,
        })
    }
}

/// SETATTR_V2 request (`HgfsRequestSetattrV2`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetattrV2Request {
    /// Old header id.
    pub id: u32,
    /// `HgfsAttrHint`.
    pub hints: u64,
    /// What to set (mask says which).
    pub attr: AttrV2,
    /// Handle when [`ATTR_HINT_USE_FILE_DESC`].
    pub handle: u32,
    /// Cross-platform name.
    pub name: Vec<u8>,
}

impl SetattrV2Request {
    /// Encode the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        OldHeader {
            id: self.id,
            op_or_status: op::SETATTR_V2 as u32,
        }
        .encode(&mut out);
        put_u64(&mut out, self.hints);
        self.attr.encode(&mut out);
        put_u32(&mut out, self.handle);
        put_name(&mut out, &self.name);
        out
    }
    /// Decode the payload.
    pub fn decode(p: &[u8]) -> Result<Self, HgfsError> {
        let mut c = Cursor::new(p);
        let h = OldHeader::decode(&mut c)?;
        Ok(SetattrV2Request {
            id: h.id,
            hints: c.u64()?,
            attr: AttrV2::decode(&mut c)?,
            handle: c.u32()?,
            name: c.name()?,
        })
    }
}

/// The reply payload of ops whose reply is only the old header
/// (SETATTR_V2, CLOSE): id and status.
pub fn old_reply_payload(id: u32, status: u32) -> Vec<u8> {
    let mut out = Vec::new();
    OldHeader {
        id,
        op_or_status: status,
    }
    .encode(&mut out);
    out
}

/// Decode a reply payload that is only the old header: (id, status).
pub fn decode_old_reply(p: &[u8]) -> Result<(u32, u32), HgfsError> {
    let mut c = Cursor::new(p);
    let h = OldHeader::decode(&mut c)?;
    Ok((h.id, h.op_or_status))
}

/// OPEN (V1) request (`HgfsRequestOpen`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpenRequest {
    /// Old header id.
    pub id: u32,
    /// [`open_mode`].
    pub mode: u32,
    /// [`open_flags`].
    pub flags: u32,
    /// Owner permissions for a created file.
    pub permissions: u8,
    /// Cross-platform name.
    pub name: Vec<u8>,
}

impl OpenRequest {
    /// Encode the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        OldHeader {
            id: self.id,
            op_or_status: op::OPEN as u32,
        }
        .encode(&mut out);
        put_u32(&mut out, self.mode);
        put_u32(&mut out, self.flags);
        out.push(self.permissions);
        put_name(&mut out, &self.name);
        out
    }
    /// Decode the payload.
    pub fn decode(p: &[u8]) -> Result<Self, HgfsError> {
        let mut c = Cursor::new(p);
        let h = OldHeader::decode(&mut c)?;
        Ok(OpenRequest {
            id: h.id,
            mode: c.u32()?,
            flags: c.u32()?,
            permissions: c.u8()?,
            name: c.name()?,
        })
    }
}

/// OPEN (V1) reply (`HgfsReplyOpen`): id, status, handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenReply {
    /// Old header id.
    pub id: u32,
    /// Old header status.
    pub status: u32,
    /// The handle.
    pub handle: u32,
}

impl OpenReply {
    /// Encode the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = old_reply_payload(self.id, self.status);
        put_u32(&mut out, self.handle);
        out
    }
    /// Decode the payload.
    pub fn decode(p: &[u8]) -> Result<Self, HgfsError> {
        let mut c = Cursor::new(p);
        let h = OldHeader::decode(&mut c)?;
        Ok(OpenReply {
            id: h.id,
            status: h.op_or_status,
            handle: c.u32()?,
        })
    }
}

/// CLOSE (V1) request (`HgfsRequestClose`): id and handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloseRequest {
    /// Old header id.
    pub id: u32,
    /// The handle to close.
    pub handle: u32,
}

impl CloseRequest {
    /// Encode the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        OldHeader {
            id: self.id,
            op_or_status: op::CLOSE as u32,
        }
        .encode(&mut out);
        put_u32(&mut out, self.handle);
        out
    }
    /// Decode the payload.
    pub fn decode(p: &[u8]) -> Result<Self, HgfsError> {
        let mut c = Cursor::new(p);
        let h = OldHeader::decode(&mut c)?;
        Ok(CloseRequest {
            id: h.id,
            handle: c.u32()?,
        })
    }
}

/// CLOSE_V3 request (`HgfsRequestCloseV3`): handle and 8 reserved bytes;
/// the reply is 8 reserved bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloseV3Request {
    /// The handle to close.
    pub handle: u32,
}

impl CloseV3Request {
    /// Encode the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u32(&mut out, self.handle);
        put_u64(&mut out, 0);
        out
    }
    /// Decode the payload.
    pub fn decode(p: &[u8]) -> Result<Self, HgfsError> {
        let mut c = Cursor::new(p);
        let handle = c.u32()?;
        let _ = c.u64()?;
        Ok(CloseV3Request { handle })
    }
}

/// OPEN_V3 request (`HgfsRequestOpenV3`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpenV3Request {
    /// Which fields are valid ([`open_valid`]).
    pub mask: u64,
    /// [`open_mode`].
    pub mode: u32,
    /// [`open_flags`].
    pub flags: u32,
    /// Special permissions for a created file.
    pub special_perms: u8,
    /// Owner permissions for a created file.
    pub owner_perms: u8,
    /// Group permissions for a created file.
    pub group_perms: u8,
    /// Other permissions for a created file.
    pub other_perms: u8,
    /// `HgfsAttrFlags`.
    pub attr: u64,
    /// Allocation size.
    pub allocation_size: u64,
    /// Desired access (Windows).
    pub desired_access: u32,
    /// Share access (Windows).
    pub share_access: u32,
    /// Desired lock.
    pub desired_lock: i32,
    /// `HgfsFileNameV3.flags`.
    pub name_flags: u32,
    /// `HgfsFileNameV3.caseType`.
    pub case_type: i32,
    /// `HgfsFileNameV3.fid`.
    pub fid: u32,
    /// Cross-platform name.
    pub name: Vec<u8>,
}

impl OpenV3Request {
    /// Encode the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u64(&mut out, self.mask);
        put_u32(&mut out, self.mode);
        put_u32(&mut out, self.flags);
        out.extend_from_slice(&[
            self.special_perms,
            self.owner_perms,
            self.group_perms,
            self.other_perms,
        ]);
        put_u64(&mut out, self.attr);
        put_u64(&mut out, self.allocation_size);
        put_u32(&mut out, self.desired_access);
        put_u32(&mut out, self.share_access);
        put_i32(&mut out, self.desired_lock);
        put_u64(&mut out, 0);
        put_u64(&mut out, 0);
        put_u32(&mut out, u32::try_from(self.name.len()).unwrap_or(u32::MAX));
        put_u32(&mut out, self.name_flags);
        put_i32(&mut out, self.case_type);
        put_u32(&mut out, self.fid);
        out.extend_from_slice(&self.name);
        out.push(0);
        out
    }
    /// Decode the payload.
    pub fn decode(p: &[u8]) -> Result<Self, HgfsError> {
        let mut c = Cursor::new(p);
        let mask = c.u64()?;
        let mode = c.u32()?;
        let flags = c.u32()?;
        let special_perms = c.u8()?;
        let owner_perms = c.u8()?;
        let group_perms = c.u8()?;
        let other_perms = c.u8()?;
        let attr = c.u64()?;
        let allocation_size = c.u64()?;
        let desired_access = c.u32()?;
        let share_access = c.u32()?;
        let desired_lock = c.i32()?;
        let _r1 = c.u64()?;
        let _r2 = c.u64()?;
        let len = c.u32()? as usize;
        let name_flags = c.u32()?;
        let case_type = c.i32()?;
        let fid = c.u32()?;
        let name = c
            .take(len)
            .map_err(|_| HgfsError::BadPayload("file name longer than the packet"))?
            .to_vec();
        Ok(OpenV3Request {
            mask,
            mode,
            flags,
            special_perms,
            owner_perms,
            group_perms,
            other_perms,
            attr,
            allocation_size,
            desired_access,
            share_access,
            desired_lock,
            name_flags,
            case_type,
            fid,
            name,
        })
    }
}

/// OPEN_V3 reply (`HgfsReplyOpenV3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenV3Reply {
    /// The handle.
    pub handle: u32,
    /// Lock acquired.
    pub acquired_lock: i32,
    /// Reply flags.
    pub flags: u32,
}

impl OpenV3Reply {
    /// Encode the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u32(&mut out, self.handle);
        put_i32(&mut out, self.acquired_lock);
        put_u32(&mut out, self.flags);
        put_u32(&mut out, 0);
        out
    }
    /// Decode the payload.
    pub fn decode(p: &[u8]) -> Result<Self, HgfsError> {
        let mut c = Cursor::new(p);
        Ok(OpenV3Reply {
            handle: c.u32()?,
            acquired_lock: c.i32()?,
            flags: c.u32()?,
        })
    }
}

/// READ_V3 request (`HgfsRequestReadV3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadV3Request {
    /// Handle.
    pub handle: u32,
    /// File offset.
    pub offset: u64,
    /// Bytes wanted.
    pub required_size: u32,
}

impl ReadV3Request {
    /// Encode the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u32(&mut out, self.handle);
        put_u64(&mut out, self.offset);
        put_u32(&mut out, self.required_size);
        put_u64(&mut out, 0);
        out
    }
    /// Decode the payload.
    pub fn decode(p: &[u8]) -> Result<Self, HgfsError> {
        let mut c = Cursor::new(p);
        let r = ReadV3Request {
            handle: c.u32()?,
            offset: c.u64()?,
            required_size: c.u32()?,
        };
        let _ = c.u64()?;
        Ok(r)
    }
}

/// Encode a READ_V3 reply payload: `actualSize`, 8 reserved, the data.
pub fn encode_read_v3_reply(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + data.len());
    put_u32(&mut out, data.len() as u32);
    put_u64(&mut out, 0);
    out.extend_from_slice(data);
    out
}

/// Decode a READ_V3 reply payload into the data it carries; `actualSize`
/// must fit in the payload.
pub fn decode_read_v3_reply(p: &[u8]) -> Result<&[u8], HgfsError> {
    let mut c = Cursor::new(p);
    let n = c.u32()? as usize;
    let _ = c.u64()?;
    c.take(n)
        .map_err(|_| HgfsError::BadPayload("read size beyond the packet"))
}

/// WRITE_V3 request (`HgfsRequestWriteV3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteV3Request<'a> {
    /// Handle.
    pub handle: u32,
    /// `HGFS_WRITE_APPEND` (1) or 0.
    pub flags: u8,
    /// File offset.
    pub offset: u64,
    /// The data.
    pub data: &'a [u8],
}

impl<'a> WriteV3Request<'a> {
    /// Encode the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(25 + self.data.len());
        put_u32(&mut out, self.handle);
        out.push(self.flags);
        put_u64(&mut out, self.offset);
        put_u32(&mut out, self.data.len() as u32);
        put_u64(&mut out, 0);
        out.extend_from_slice(self.data);
        out
    }
    /// Decode the payload; `requiredSize` must fit in it.
    pub fn decode(p: &'a [u8]) -> Result<Self, HgfsError> {
        let mut c = Cursor::new(p);
        let handle = c.u32()?;
        let flags = c.u8()?;
        let offset = c.u64()?;
        let n = c.u32()? as usize;
        let _ = c.u64()?;
        let data = c
            .take(n)
            .map_err(|_| HgfsError::BadPayload("write size beyond the packet"))?;
        let _ = c.rest();
        Ok(WriteV3Request {
            handle,
            flags,
            offset,
            data,
        })
    }
}

/// Encode a WRITE_V3 reply payload: `actualSize`, 8 reserved.
pub fn encode_write_v3_reply(written: u32) -> Vec<u8> {
    let mut out = Vec::new();
    put_u32(&mut out, written);
    put_u64(&mut out, 0);
    out
}

/// Decode a WRITE_V3 reply payload: the bytes written.
pub fn decode_write_v3_reply(p: &[u8]) -> Result<u32, HgfsError> {
    Cursor::new(p).u32()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_checks() {
        let pkt = build_request(op::READ_V3, 9, 0x1122, &[1, 2, 3]).unwrap();
        assert_eq!(pkt.len(), 55);
        assert_eq!(pkt[0], 1);
        assert_eq!(&pkt[4..8], &[0xff, 0, 0, 0]);
        let p = Packet::parse(&pkt).unwrap();
        assert_eq!(p.header.request_id, 9);
        assert_eq!(p.header.op, op::READ_V3);
        assert_eq!(p.header.session_id, 0x1122);
        assert_eq!(p.header.flags, packet_flags::REQUEST);
        assert_eq!(p.payload, &[1, 2, 3]);
        let r = build_reply(&p.header, status::ACCESS_DENIED, &[]).unwrap();
        let rp = Packet::parse(&r).unwrap();
        assert_eq!(rp.header.status, status::ACCESS_DENIED);
        assert_eq!(rp.header.flags, packet_flags::REPLY);
        assert!(Packet::parse(&pkt[..46]).is_err());
        let mut bad = pkt.clone();
        bad[4] = 0;
        assert!(Packet::parse(&bad).is_err());
        let mut bad = pkt.clone();
        bad[12] = 10; // header size 10
        assert!(Packet::parse(&bad).is_err());
        assert_eq!(
            build_request(0, 0, 0, &vec![0; LARGE_PACKET_MAX]),
            Err(HgfsError::TooLarge)
        );
    }

    #[test]
    fn names() {
        assert_eq!(cp_name("/tmp/a b").unwrap(), b"root\0tmp\0a b");
        assert_eq!(cp_name("/").unwrap(), b"root");
        assert_eq!(cp_name("//x/./y/").unwrap(), b"root\0x\0y");
        assert!(cp_name("rel").is_err());
        assert!(cp_name("/a/../b").is_err());
        assert_eq!(cp_name_to_path(b"root\0tmp\0a").unwrap(), "/tmp/a");
        assert_eq!(cp_name_to_path(b"root").unwrap(), "/");
        assert!(cp_name_to_path(b"other\0x").is_none());
        assert!(cp_name_to_path(b"root\0..\0etc").is_none());
        assert!(cp_name_to_path(b"root\0a/b").is_none());
    }

    #[test]
    fn sessions() {
        let r = CreateSessionRequest {
            max_packet_size: LARGE_PACKET_MAX as u32,
            flags: SESSION_MAXPACKETSIZE_VALID,
            capabilities: vec![Capability {
                op: op::READ_V3,
                flags: 1,
            }],
        };
        let e = r.encode();
        assert_eq!(e.len(), 24);
        assert_eq!(CreateSessionRequest::decode(&e).unwrap(), r);
        let mut bad = e.clone();
        bad[0] = 200;
        assert!(CreateSessionRequest::decode(&bad).is_err());
        let rep = CreateSessionReply {
            session_id: 77,
            max_packet_size: 1000,
            identity_offset: 0,
            flags: 0,
            capabilities: vec![],
        };
        assert_eq!(CreateSessionReply::decode(&rep.encode()).unwrap(), rep);
    }

    #[test]
    fn attrs() {
        let mut a = AttrV2 {
            mask: attr_valid::TYPE | attr_valid::SIZE,
            file_type: file_type::REGULAR,
            size: 12345,
            access_time: unix_to_hgfs_time(1_700_000_000, 5_000),
            ..Default::default()
        };
        a.set_mode(0o4751);
        assert_eq!(a.mode(), 0o4751);
        let mut buf = Vec::new();
        a.encode(&mut buf);
        assert_eq!(buf.len(), ATTR_V2_LEN);
        assert_eq!(hgfs_time_to_unix(a.access_time), (1_700_000_000, 5_000));
        assert_eq!(hgfs_time_to_unix(unix_to_hgfs_time(0, 0)), (0, 0));
        let g = GetattrV2Reply {
            id: 1,
            status: 0,
            attr: a,
            symlink_target: b"x".to_vec(),
        };
        assert_eq!(GetattrV2Reply::decode(&g.encode()).unwrap(), g);
        let gr = GetattrV2Request {
            id: 2,
            hints: 0,
            handle: 0,
            name: cp_name("/etc/passwd").unwrap(),
        };
        assert_eq!(GetattrV2Request::decode(&gr.encode()).unwrap(), gr);
        let sr = SetattrV2Request {
            id: 3,
            hints: 0,
            attr: a,
            handle: 0,
            name: cp_name("/f").unwrap(),
        };
        assert_eq!(SetattrV2Request::decode(&sr.encode()).unwrap(), sr);
        assert_eq!(decode_old_reply(&old_reply_payload(3, 8)).unwrap(), (3, 8));
        let mut bad = gr.encode();
        bad[20] = 0xff;
        assert!(GetattrV2Request::decode(&bad).is_err());
    }

    #[test]
    fn open_read_write_close() {
        let o = OpenV3Request {
            mask: open_valid::MODE | open_valid::FLAGS | open_valid::FILE_NAME,
            mode: open_mode::WRITE_ONLY,
            flags: open_flags::CREATE_EMPTY,
            owner_perms: 6,
            name: cp_name("/tmp/f").unwrap(),
            ..Default::default()
        };
        let e = o.encode();
        assert_eq!(
            e.len(),
            8 + 4 + 4 + 4 + 8 + 8 + 4 + 4 + 4 + 16 + 16 + 10 + 1
        );
        assert_eq!(OpenV3Request::decode(&e).unwrap(), o);
        let or = OpenV3Reply {
            handle: 5,
            acquired_lock: 0,
            flags: 0,
        };
        assert_eq!(OpenV3Reply::decode(&or.encode()).unwrap(), or);
        let o1 = OpenRequest {
            id: 1,
            mode: open_mode::READ_ONLY,
            flags: open_flags::OPEN,
            permissions: 0,
            name: cp_name("/x").unwrap(),
        };
        assert_eq!(OpenRequest::decode(&o1.encode()).unwrap(), o1);
        let o1r = OpenReply {
            id: 1,
            status: 0,
            handle: 4,
        };
        assert_eq!(OpenReply::decode(&o1r.encode()).unwrap(), o1r);
        let r = ReadV3Request {
            handle: 5,
            offset: 1 << 33,
            required_size: 4096,
        };
        assert_eq!(r.encode().len(), 24);
        assert_eq!(ReadV3Request::decode(&r.encode()).unwrap(), r);
        let rr = encode_read_v3_reply(b"hello");
        assert_eq!(decode_read_v3_reply(&rr).unwrap(), b"hello");
        assert!(decode_read_v3_reply(&rr[..15]).is_err());
        let w = WriteV3Request {
            handle: 5,
            flags: 0,
            offset: 10,
            data: b"data",
        };
        assert_eq!(w.encode().len(), 25 + 4);
        assert_eq!(WriteV3Request::decode(&w.encode()).unwrap(), w);
        assert!(WriteV3Request::decode(&w.encode()[..27]).is_err());
        assert_eq!(decode_write_v3_reply(&encode_write_v3_reply(4)).unwrap(), 4);
        let c = CloseRequest { id: 1, handle: 5 };
        assert_eq!(CloseRequest::decode(&c.encode()).unwrap(), c);
        let c3 = CloseV3Request { handle: 5 };
        assert_eq!(CloseV3Request::decode(&c3.encode()).unwrap(), c3);
        assert_eq!(destroy_session_payload().len(), 8);
    }
}
