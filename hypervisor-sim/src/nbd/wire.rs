//! NBD wire layout: magic numbers, option and command codes, and the pure
//! parsers and encoders (numbers from the NBD project's `doc/proto.md`).

/// "NBDMAGIC", the first 8 bytes the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT": newstyle negotiation, and the prefix of every option.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of an option reply.
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of a transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Magic of a structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Handshake flag: fixed newstyle.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1;
/// Handshake flag: no 124 zero bytes after EXPORT_NAME.
pub const FLAG_NO_ZEROES: u16 = 2;
/// Client flag: fixed newstyle.
pub const CLIENT_FIXED_NEWSTYLE: u16 = 1;
/// Client flag: no zeroes.
pub const CLIENT_NO_ZEROES: u16 = 2;

/// Option: choose an export, old way (no error path).
pub const OPT_EXPORT_NAME: u32 = 1;
/// Option: abort.
pub const OPT_ABORT: u32 = 2;
/// Option: list exports.
pub const OPT_LIST: u32 = 3;
/// Option: describe an export.
pub const OPT_INFO: u32 = 6;
/// Option: describe and choose an export.
pub const OPT_GO: u32 = 7;
/// Option: structured replies.
pub const OPT_STRUCTURED_REPLY: u32 = 8;

/// Reply: done.
pub const REP_ACK: u32 = 1;
/// Reply: an export name (LIST).
pub const REP_SERVER: u32 = 2;
/// Reply: export information (INFO/GO).
pub const REP_INFO: u32 = 3;
/// Error: unsupported option.
pub const REP_ERR_UNSUP: u32 = 0x8000_0001;
/// Error: invalid option data.
pub const REP_ERR_INVALID: u32 = 0x8000_0003;
/// Error: no such export.
pub const REP_ERR_UNKNOWN: u32 = 0x8000_0006;

/// Info: size and flags.
pub const INFO_EXPORT: u16 = 0;
/// Info: name.
pub const INFO_NAME: u16 = 1;
/// Info: block sizes.
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Transmission flag: flags are valid.
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
/// Read-only export.
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
/// FLUSH supported.
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
/// Several connections see one consistent export.
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;

/// Command: read.
pub const CMD_READ: u16 = 0;
/// Command: write.
pub const CMD_WRITE: u16 = 1;
/// Command: disconnect.
pub const CMD_DISC: u16 = 2;
/// Command: flush.
pub const CMD_FLUSH: u16 = 3;
/// Command flag: force unit access.
pub const CMD_FLAG_FUA: u16 = 1;

/// Structured reply flag: last chunk.
pub const REPLY_FLAG_DONE: u16 = 1;
/// Chunk: nothing.
pub const REPLY_TYPE_NONE: u16 = 0;
/// Chunk: data at an offset.
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
/// Chunk: an error with a message.
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) + 1;

/// Errno values on the wire.
pub const EPERM: u32 = 1;
/// I/O error.
pub const EIO: u32 = 5;
/// Invalid request.
pub const EINVAL: u32 = 22;
/// No space (write past the end).
pub const ENOSPC: u32 = 28;
/// Server shutting down (medium ejected).
pub const ESHUTDOWN: u32 = 108;

/// Bytes of a transmission request header.
pub const REQUEST_LEN: usize = 28;
/// Largest option payload accepted.
pub const MAX_OPTION: usize = 4096;
/// Largest READ/WRITE payload (also the advertised maximum block size).
pub const MAX_PAYLOAD: usize = 32 << 20;
/// Advertised minimum block size.
pub const MIN_BLOCK: u32 = 1;
/// Advertised preferred block size.
pub const PREFERRED_BLOCK: u32 = 4096;

/// What the peer got wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The client does not speak fixed newstyle.
    #[error("client does not support fixed newstyle negotiation")]
    NotFixedNewstyle,
    /// An option without IHAVEOPT.
    #[error("option magic {0:#x} is not IHAVEOPT")]
    OptionMagic(u64),
    /// An option payload over [`MAX_OPTION`].
    #[error("option payload of {0} bytes is too large")]
    OptionTooLarge(u32),
    /// A request with the wrong magic.
    #[error("request magic {0:#x} is wrong")]
    RequestMagic(u32),
    /// A WRITE payload over [`MAX_PAYLOAD`].
    #[error("write payload of {0} bytes is too large")]
    PayloadTooLarge(u32),
    /// Malformed INFO/GO data.
    #[error("malformed INFO/GO request: {0}")]
    BadInfo(&'static str),
}

/// A transmission request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Command flags.
    pub flags: u16,
    /// Command.
    pub kind: u16,
    /// Client's cookie, echoed.
    pub handle: u64,
    /// Offset.
    pub offset: u64,
    /// Length.
    pub length: u32,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Parse a request header.
pub fn parse_request(h: &[u8; REQUEST_LEN]) -> Result<Request, WireError> {
    let magic = be32(&h[0..4]);
    if magic != REQUEST_MAGIC {
        return Err(WireError::RequestMagic(magic));
    }
    Ok(Request {
        flags: be16(&h[4..6]),
        kind: be16(&h[6..8]),
        handle: be64(&h[8..16]),
        offset: be64(&h[16..24]),
        length: be32(&h[24..28]),
    })
}

/// Parse an option header: option and payload length.
pub fn parse_option_header(h: &[u8; 16]) -> Result<(u32, u32), WireError> {
    let magic = be64(&h[0..8]);
    if magic != IHAVEOPT {
        return Err(WireError::OptionMagic(magic));
    }
    Ok((be32(&h[8..12]), be32(&h[12..16])))
}

/// An INFO or GO request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    /// Export name.
    pub name: String,
    /// Information asked for.
    pub infos: Vec<u16>,
}

/// Parse INFO/GO data: name length, name, count, info types.
pub fn parse_info_request(d: &[u8]) -> Result<InfoRequest, WireError> {
    if d.len() < 6 {
        return Err(WireError::BadInfo("too short"));
    }
    let n = be32(&d[0..4]) as usize;
    let rest = &d[4..];
    if n > rest.len().saturating_sub(2) {
        return Err(WireError::BadInfo("name length past the end"));
    }
    let name = std::str::from_utf8(&rest[..n])
        .map_err(|_| WireError::BadInfo("name is not UTF-8"))?
        .to_string();
    let rest = &rest[n..];
    let count = be16(&rest[0..2]) as usize;
    let rest = &rest[2..];
    if rest.len() != count * 2 {
        return Err(WireError::BadInfo("info count does not match the length"));
    }
    let infos = rest.chunks_exact(2).map(be16).collect();
    Ok(InfoRequest { name, infos })
}

/// Option reply header.
pub fn option_reply(opt: u32, ty: u32, len: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0..8].copy_from_slice(&REPLY_MAGIC.to_be_bytes());
    b[8..12].copy_from_slice(&opt.to_be_bytes());
    b[12..16].copy_from_slice(&ty.to_be_bytes());
    b[16..20].copy_from_slice(&len.to_be_bytes());
    b
}

/// NBD_INFO_EXPORT payload.
pub fn info_export(size: u64, flags: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.extend_from_slice(&INFO_EXPORT.to_be_bytes());
    v.extend_from_slice(&size.to_be_bytes());
    v.extend_from_slice(&flags.to_be_bytes());
    v
}

/// NBD_INFO_NAME payload.
pub fn info_name(name: &str) -> Vec<u8> {
    let mut v = INFO_NAME.to_be_bytes().to_vec();
    v.extend_from_slice(name.as_bytes());
    v
}

/// NBD_INFO_BLOCK_SIZE payload.
pub fn info_block_size(min: u32, preferred: u32, max: u32) -> Vec<u8> {
    let mut v = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
    v.extend_from_slice(&min.to_be_bytes());
    v.extend_from_slice(&preferred.to_be_bytes());
    v.extend_from_slice(&max.to_be_bytes());
    v
}

/// Simple reply header.
pub fn simple_reply(errno: u32, handle: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&errno.to_be_bytes());
    b[8..16].copy_from_slice(&handle.to_be_bytes());
    b
}

/// Structured reply chunk header.
pub fn structured_header(flags: u16, ty: u16, handle: u64, len: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&ty.to_be_bytes());
    b[8..16].copy_from_slice(&handle.to_be_bytes());
    b[16..20].copy_from_slice(&len.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let mut h = [0u8; REQUEST_LEN];
        h[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        h[6..8].copy_from_slice(&CMD_WRITE.to_be_bytes());
        h[8..16].copy_from_slice(&7u64.to_be_bytes());
        h[16..24].copy_from_slice(&4096u64.to_be_bytes());
        h[24..28].copy_from_slice(&512u32.to_be_bytes());
        let r = parse_request(&h).unwrap();
        assert_eq!(
            (r.kind, r.handle, r.offset, r.length),
            (CMD_WRITE, 7, 4096, 512)
        );
        h[0] = 0;
        assert!(matches!(parse_request(&h), Err(WireError::RequestMagic(_))));
    }

    #[test]
    fn info_requests() {
        let mut d = 4u32.to_be_bytes().to_vec();
        d.extend_from_slice(b"vm/C");
        d.extend_from_slice(&2u16.to_be_bytes());
        d.extend_from_slice(&INFO_NAME.to_be_bytes());
        d.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        let r = parse_info_request(&d).unwrap();
        assert_eq!(r.name, "vm/C");
        assert_eq!(r.infos, vec![INFO_NAME, INFO_BLOCK_SIZE]);
        assert!(parse_info_request(&d[..d.len() - 1]).is_err());
        let mut huge = u32::MAX.to_be_bytes().to_vec();
        huge.extend_from_slice(&[0, 0]);
        assert!(parse_info_request(&huge).is_err());
    }
}
