//! The socket frontend's wire format: one register frame per backdoor
//! instruction, plus the bytes of a string instruction.
//!
//! A request is a 36-byte header, little endian:
//!
//! | bytes | field                                                     |
//! |-------|-----------------------------------------------------------|
//! | 0     | op: 1 = `in` (LB port), 2 = `rep outsb` (HB out), 3 = `rep insb` (HB in) |
//! | 1     | version, [`FRAME_VERSION`]                                |
//! | 2..4  | reserved, zero                                            |
//! | 4..32 | eax ebx ecx edx esi edi ebp                               |
//! | 32..36| length: HB out bytes that follow, or HB in bytes wanted   |
//!
//! A reply has the same header; byte 0 is 0 for success (then `length` bytes of
//! HB in data follow) or 1 for a refused frame (then `length` bytes of UTF-8
//! explanation follow and the endpoint closes the connection).

use crate::Regs;

/// Size of a request or reply header.
pub const HEADER_LEN: usize = 36;
/// The frame format version this crate speaks.
pub const FRAME_VERSION: u8 = 1;

/// What the guest executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `in eax, dx` on the low-bandwidth port.
    In,
    /// `rep outsb` on the high-bandwidth port: guest bytes follow.
    HbOut,
    /// `rep insb` on the high-bandwidth port: the guest wants `length` bytes.
    HbIn,
}

impl Op {
    fn code(self) -> u8 {
        match self {
            Op::In => 1,
            Op::HbOut => 2,
            Op::HbIn => 3,
        }
    }
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Unknown op byte.
    #[error("unknown frame op {0}")]
    BadOp(u8),
    /// Another frame version.
    #[error("frame version {0} is not supported (want {FRAME_VERSION})")]
    BadVersion(u8),
    /// Reserved bytes not zero.
    #[error("reserved frame bytes are not zero")]
    Reserved,
    /// Length over the endpoint's limit.
    #[error("frame length {len} exceeds the limit of {limit} bytes")]
    TooLong {
        /// Declared length.
        len: u32,
        /// The endpoint's limit.
        limit: u32,
    },
    /// Reply kind byte unknown.
    #[error("unknown reply kind {0}")]
    BadKind(u8),
}

/// A decoded request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The instruction.
    pub op: Op,
    /// Registers at the instruction.
    pub regs: Regs,
    /// HB out: bytes that follow; HB in: bytes wanted; `in`: zero.
    pub len: u32,
}

fn put_regs(out: &mut [u8; HEADER_LEN], regs: &Regs) {
    for (i, v) in regs.to_array().iter().enumerate() {
        out[4 + i * 4..8 + i * 4].copy_from_slice(&v.to_le_bytes());
    }
}

fn get_regs(h: &[u8; HEADER_LEN]) -> Regs {
    let mut a = [0u32; 7];
    for (i, v) in a.iter_mut().enumerate() {
        *v = u32::from_le_bytes([h[4 + i * 4], h[5 + i * 4], h[6 + i * 4], h[7 + i * 4]]);
    }
    Regs::from_array(a)
}

fn get_len(h: &[u8; HEADER_LEN]) -> u32 {
    u32::from_le_bytes([h[32], h[33], h[34], h[35]])
}

impl Request {
    /// The header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = self.op.code();
        h[1] = FRAME_VERSION;
        put_regs(&mut h, &self.regs);
        h[32..36].copy_from_slice(&self.len.to_le_bytes());
        h
    }

    /// Parse a header. `limit` bounds HB lengths in both directions; an `in`
    /// frame must carry length zero.
    pub fn decode(h: &[u8; HEADER_LEN], limit: u32) -> Result<Request, FrameError> {
        let op = match h[0] {
            1 => Op::In,
            2 => Op::HbOut,
            3 => Op::HbIn,
            other => return Err(FrameError::BadOp(other)),
        };
        if h[1] != FRAME_VERSION {
            return Err(FrameError::BadVersion(h[1]));
        }
        if h[2] != 0 || h[3] != 0 {
            return Err(FrameError::Reserved);
        }
        let len = get_len(h);
        let limit = if op == Op::In { 0 } else { limit };
        if len > limit {
            return Err(FrameError::TooLong { len, limit });
        }
        Ok(Request {
            op,
            regs: get_regs(h),
            len,
        })
    }
}

/// A decoded reply header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// False when the endpoint refused the frame (the payload explains why).
    pub ok: bool,
    /// Registers after the instruction.
    pub regs: Regs,
    /// Bytes that follow.
    pub len: u32,
}

impl Reply {
    /// The header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = if self.ok { 0 } else { 1 };
        h[1] = FRAME_VERSION;
        put_regs(&mut h, &self.regs);
        h[32..36].copy_from_slice(&self.len.to_le_bytes());
        h
    }

    /// Parse a header; `limit` bounds the bytes that follow.
    pub fn decode(h: &[u8; HEADER_LEN], limit: u32) -> Result<Reply, FrameError> {
        let ok = match h[0] {
            0 => true,
            1 => false,
            other => return Err(FrameError::BadKind(other)),
        };
        if h[1] != FRAME_VERSION {
            return Err(FrameError::BadVersion(h[1]));
        }
        let len = get_len(h);
        if len > limit {
            return Err(FrameError::TooLong { len, limit });
        }
        Ok(Reply {
            ok,
            regs: get_regs(h),
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_golden_bytes_both_ways() {
        let req = Request {
            op: Op::In,
            regs: Regs::command(crate::cmd::GETVERSION, 0),
            len: 0,
        };
        let bytes = req.encode();
        let golden: [u8; HEADER_LEN] = [
            1, 1, 0, 0, // op, version, reserved
            0x68, 0x58, 0x4d, 0x56, // eax = magic
            0, 0, 0, 0, // ebx
            10, 0, 0, 0, // ecx = GETVERSION
            0x58, 0x56, 0, 0, // edx = port
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // esi edi ebp
            0, 0, 0, 0, // len
        ];
        assert_eq!(bytes, golden);
        assert_eq!(Request::decode(&golden, 0).unwrap(), req);
    }

    #[test]
    fn request_limits_and_garbage() {
        let mut h = Request {
            op: Op::HbOut,
            regs: Regs::default(),
            len: 100,
        }
        .encode();
        assert!(Request::decode(&h, 100).is_ok());
        assert_eq!(
            Request::decode(&h, 99),
            Err(FrameError::TooLong {
                len: 100,
                limit: 99
            })
        );
        h[0] = 9;
        assert_eq!(Request::decode(&h, 100), Err(FrameError::BadOp(9)));
        h[0] = 1;
        assert!(matches!(
            Request::decode(&h, 100),
            Err(FrameError::TooLong { limit: 0, .. })
        ));
        h[0] = 2;
        h[1] = 7;
        assert_eq!(Request::decode(&h, 100), Err(FrameError::BadVersion(7)));
        h[1] = 1;
        h[3] = 1;
        assert_eq!(Request::decode(&h, 100), Err(FrameError::Reserved));
    }

    #[test]
    fn reply_round_trip() {
        let r = Reply {
            ok: false,
            regs: Regs::from_array([1, 2, 3, 4, 5, 6, 7]),
            len: 12,
        };
        assert_eq!(Reply::decode(&r.encode(), 12).unwrap(), r);
        assert!(Reply::decode(&r.encode(), 11).is_err());
    }
}
