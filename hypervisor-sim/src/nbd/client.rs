//! The NBD *client* side, for proxy-mode virtual media: the peer at the
//! far end of a WebSocket (a browser page, `scripts/hvsim-nbd-proxy.py`)
//! is the NBD server and hvsim the client (OpenBMC's design: the page
//! serves a local file, the BMC reads it).
//!
//! What we send (NBD `doc/proto.md`, and what OpenBMC's NBDServer.js
//! answers): client flags FIXED_NEWSTYLE|NO_ZEROES (only the flags the
//! server offered), then NBD_OPT_GO for the default export; a server that
//! answers NBD_REP_ERR_UNSUP (NBDServer.js does) gets NBD_OPT_EXPORT_NAME.
//! Then READ requests, answered by simple replies in any order.
//!
//! Threat table: every byte from the peer is untrusted. The greeting and
//! option replies must carry their magic numbers; option reply payloads are
//! bounded by [`MAX_OPTION_REPLY`] and their number by
//! [`MAX_OPTION_REPLIES`]; the export size by [`MAX_EXPORT_SIZE`]; a reply
//! must have the simple-reply magic (structured replies were not
//! negotiated) and the handle of a request still outstanding, whose length
//! (chosen by us, at most [`MAX_READ`]) bounds the data read. Anything else
//! is a [`ProxyError`], and the caller drops the connection.

use std::io::{Read, Write};

use super::wire::*;

/// Largest READ we send (the size OpenBMC's proxy buffers are built for:
/// 128 KiB per request).
pub const MAX_READ: u32 = 128 << 10;
/// Largest option reply payload accepted.
pub const MAX_OPTION_REPLY: u32 = 4096;
/// Most option replies to one option.
pub const MAX_OPTION_REPLIES: usize = 32;
/// Largest export size accepted: 2^53, the largest integer a browser's
/// JavaScript holds exactly (NBDServer.js refuses offsets beyond it).
pub const MAX_EXPORT_SIZE: u64 = 1 << 53;

/// What the peer (the NBD server) got wrong.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The byte stream failed or ended.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The greeting was not NBDMAGIC IHAVEOPT.
    #[error(
        "the peer's greeting is not an NBD fixed newstyle greeting (magic {0:#018x} {1:#018x})"
    )]
    Greeting(u64, u64),
    /// The greeting lacks the fixed newstyle flag.
    #[error("the peer does not offer fixed newstyle negotiation (flags {0:#06x})")]
    NotFixedNewstyle(u16),
    /// An option reply with the wrong magic.
    #[error("option reply magic {0:#018x} is wrong")]
    OptionReplyMagic(u64),
    /// An option reply for another option.
    #[error("option reply for option {got}, expected {want}")]
    OptionReplyFor {
        /// The option the reply names.
        got: u32,
        /// The option we sent.
        want: u32,
    },
    /// An option reply payload over the bound.
    #[error("option reply of {0} bytes exceeds the limit of {MAX_OPTION_REPLY}")]
    OptionReplyTooLarge(u32),
    /// Too many option replies.
    #[error("more than {MAX_OPTION_REPLIES} replies to one option")]
    TooManyReplies,
    /// The server refused the export.
    #[error("the peer refused the export: option {opt} error {ty:#x} {msg:?}")]
    Refused {
        /// The option.
        opt: u32,
        /// The error reply type.
        ty: u32,
        /// Its message.
        msg: String,
    },
    /// GO finished without telling the size.
    #[error("the peer acknowledged NBD_OPT_GO without NBD_INFO_EXPORT")]
    NoSize,
    /// A malformed INFO reply.
    #[error("malformed NBD_REP_INFO reply")]
    BadInfo,
    /// An export larger than we accept.
    #[error("export size {0} exceeds the limit of 2^53 bytes")]
    TooBig(u64),
    /// A transmission reply with the wrong magic.
    #[error(
        "reply magic {0:#010x} is not a simple reply (structured replies were not negotiated)"
    )]
    ReplyMagic(u32),
    /// A reply to no outstanding request.
    #[error("reply for handle {0:#x}, which is not an outstanding request")]
    UnknownHandle(u64),
    /// The zero padding after EXPORT_NAME was not zero.
    #[error("export reply padding is not zero")]
    Padding,
}

/// The export the peer serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Export {
    /// Size in bytes.
    pub size: u64,
    /// Transmission flags as sent (we treat the export as read-only
    /// whatever they say).
    pub flags: u16,
    /// Whether NBD_OPT_GO was accepted (else EXPORT_NAME was used).
    pub go: bool,
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8]))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap_or([0; 4]))
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes(b[..2].try_into().unwrap_or([0; 2]))
}

/// An option request: IHAVEOPT, option, length, data.
pub fn option_request(opt: u32, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + data.len());
    v.extend_from_slice(&IHAVEOPT.to_be_bytes());
    v.extend_from_slice(&opt.to_be_bytes());
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// A transmission request header.
pub fn request(kind: u16, handle: u64, offset: u64, length: u32) -> [u8; REQUEST_LEN] {
    let mut h = [0u8; REQUEST_LEN];
    h[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    h[4..6].copy_from_slice(&0u16.to_be_bytes());
    h[6..8].copy_from_slice(&kind.to_be_bytes());
    h[8..16].copy_from_slice(&handle.to_be_bytes());
    h[16..24].copy_from_slice(&offset.to_be_bytes());
    h[24..28].copy_from_slice(&length.to_be_bytes());
    h
}

/// Run the handshake: read the greeting, send flags, choose the default
/// export (GO, falling back to EXPORT_NAME). `send` gets each message we
/// send (the WebSocket layer frames it).
pub fn handshake<R: Read>(
    r: &mut R,
    mut send: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Export, ProxyError> {
    let mut g = [0u8; 18];
    r.read_exact(&mut g)?;
    let (m1, m2, flags) = (be64(&g[0..]), be64(&g[8..]), be16(&g[16..]));
    if m1 != NBDMAGIC || m2 != IHAVEOPT {
        return Err(ProxyError::Greeting(m1, m2));
    }
    if flags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(ProxyError::NotFixedNewstyle(flags));
    }
    let no_zeroes = flags & FLAG_NO_ZEROES != 0;
    let client_flags = u32::from(CLIENT_FIXED_NEWSTYLE)
        | if no_zeroes {
            u32::from(CLIENT_NO_ZEROES)
        } else {
            0
        };
    // GO for the default export (empty name), no info requests.
    let mut msg = client_flags.to_be_bytes().to_vec();
    msg.extend_from_slice(&option_request(OPT_GO, &[0, 0, 0, 0, 0, 0]));
    send(&msg)?;
    let mut size = None;
    let mut tflags = 0u16;
    for _ in 0..MAX_OPTION_REPLIES {
        let mut h = [0u8; 20];
        r.read_exact(&mut h)?;
        let (magic, opt, ty, len) = (be64(&h[0..]), be32(&h[8..]), be32(&h[12..]), be32(&h[16..]));
        if magic != REPLY_MAGIC {
            return Err(ProxyError::OptionReplyMagic(magic));
        }
        if opt != OPT_GO {
            return Err(ProxyError::OptionReplyFor {
                got: opt,
                want: OPT_GO,
            });
        }
        if len > MAX_OPTION_REPLY {
            return Err(ProxyError::OptionReplyTooLarge(len));
        }
        let mut data = vec![0u8; len as usize];
        r.read_exact(&mut data)?;
        match ty {
            REP_INFO => {
                if data.len() < 2 {
                    return Err(ProxyError::BadInfo);
                }
                if be16(&data) == INFO_EXPORT {
                    if data.len() != 12 {
                        return Err(ProxyError::BadInfo);
                    }
                    size = Some(be64(&data[2..]));
                    tflags = be16(&data[10..]);
                }
            }
            REP_ACK => {
                let size = size.ok_or(ProxyError::NoSize)?;
                return checked(Export {
                    size,
                    flags: tflags,
                    go: true,
                });
            }
            REP_ERR_UNSUP => return export_name(r, &mut send, no_zeroes),
            t if t & 0x8000_0000 != 0 => {
                return Err(ProxyError::Refused {
                    opt,
                    ty: t,
                    msg: String::from_utf8_lossy(&data).into_owned(),
                })
            }
            // Other informational replies: ignored, as the spec says.
            _ => {}
        }
    }
    Err(ProxyError::TooManyReplies)
}

fn export_name<R: Read>(
    r: &mut R,
    send: &mut impl FnMut(&[u8]) -> std::io::Result<()>,
    no_zeroes: bool,
) -> Result<Export, ProxyError> {
    send(&option_request(OPT_EXPORT_NAME, &[]))?;
    let mut b = [0u8; 10];
    r.read_exact(&mut b)?;
    if !no_zeroes {
        let mut z = [0u8; 124];
        r.read_exact(&mut z)?;
        if z.iter().any(|&x| x != 0) {
            return Err(ProxyError::Padding);
        }
    }
    checked(Export {
        size: be64(&b),
        flags: be16(&b[8..]),
        go: false,
    })
}

fn checked(e: Export) -> Result<Export, ProxyError> {
    if e.size > MAX_EXPORT_SIZE {
        return Err(ProxyError::TooBig(e.size));
    }
    Ok(e)
}

/// One transmission reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The request's handle.
    pub handle: u64,
    /// 0, or the NBD error.
    pub errno: u32,
    /// The data of a successful READ.
    pub data: Vec<u8>,
}

/// Read one simple reply; `outstanding(handle)` says how many data bytes
/// the request with that handle expects (`None`: no such request).
pub fn read_reply<R: Read>(
    r: &mut R,
    mut outstanding: impl FnMut(u64) -> Option<u32>,
) -> Result<Reply, ProxyError> {
    let mut h = [0u8; 16];
    r.read_exact(&mut h)?;
    let magic = be32(&h);
    if magic != SIMPLE_REPLY_MAGIC {
        return Err(ProxyError::ReplyMagic(magic));
    }
    let errno = be32(&h[4..]);
    let handle = be64(&h[8..]);
    let len = outstanding(handle).ok_or(ProxyError::UnknownHandle(handle))?;
    let mut data = Vec::new();
    if errno == 0 {
        // `len` is our own request's, at most MAX_READ.
        data = vec![0u8; len.min(MAX_READ) as usize];
        r.read_exact(&mut data)?;
    }
    Ok(Reply {
        handle,
        errno,
        data,
    })
}

/// The bytes of a DISC request (sent on eject).
pub fn disconnect() -> [u8; REQUEST_LEN] {
    request(CMD_DISC, 0, 0, 0)
}

/// Write every message of `send` into `w` (for tests and fuzzing).
pub fn into_writer<W: Write>(w: &mut W) -> impl FnMut(&[u8]) -> std::io::Result<()> + '_ {
    move |b| w.write_all(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greeting(flags: u16) -> Vec<u8> {
        let mut v = NBDMAGIC.to_be_bytes().to_vec();
        v.extend_from_slice(&IHAVEOPT.to_be_bytes());
        v.extend_from_slice(&flags.to_be_bytes());
        v
    }

    fn opt_reply(opt: u32, ty: u32, data: &[u8]) -> Vec<u8> {
        let mut v = option_reply(opt, ty, data.len() as u32).to_vec();
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn openbmc_style_server_falls_back_to_export_name() {
        // NBDServer.js: ERR_UNSUP for GO, then size + flags (no zeroes).
        let mut peer = greeting(3);
        peer.extend(opt_reply(OPT_GO, REP_ERR_UNSUP, &[]));
        peer.extend_from_slice(&(64u64 << 20).to_be_bytes());
        peer.extend_from_slice(&3u16.to_be_bytes());
        let mut sent = Vec::new();
        let e = handshake(&mut &peer[..], into_writer(&mut sent)).unwrap();
        assert_eq!(
            e,
            Export {
                size: 64 << 20,
                flags: 3,
                go: false
            }
        );
        // Flags 3, GO (empty name, no infos), then EXPORT_NAME.
        let mut want = 3u32.to_be_bytes().to_vec();
        want.extend(option_request(OPT_GO, &[0; 6]));
        want.extend(option_request(OPT_EXPORT_NAME, &[]));
        assert_eq!(sent, want);
    }

    #[test]
    fn go_with_info_and_zeroes() {
        let mut peer = greeting(3);
        let mut info = INFO_EXPORT.to_be_bytes().to_vec();
        info.extend_from_slice(&4096u64.to_be_bytes());
        info.extend_from_slice(&1u16.to_be_bytes());
        peer.extend(opt_reply(OPT_GO, REP_INFO, &info));
        peer.extend(opt_reply(
            OPT_GO,
            REP_INFO,
            &[0, 3, 0, 0, 0, 1, 0, 0, 16, 0, 0, 2, 0, 0],
        ));
        peer.extend(opt_reply(OPT_GO, REP_ACK, &[]));
        let e = handshake(&mut &peer[..], |_: &[u8]| Ok(())).unwrap();
        assert_eq!((e.size, e.go), (4096, true));
        // Without NO_ZEROES: client flags 1 and 124 zeroes are read.
        let mut peer = greeting(1);
        peer.extend(opt_reply(OPT_GO, REP_ERR_UNSUP, &[]));
        peer.extend_from_slice(&512u64.to_be_bytes());
        peer.extend_from_slice(&3u16.to_be_bytes());
        peer.extend_from_slice(&[0; 124]);
        let mut sent = Vec::new();
        let e = handshake(&mut &peer[..], into_writer(&mut sent)).unwrap();
        assert_eq!(e.size, 512);
        assert_eq!(&sent[..4], &1u32.to_be_bytes());
    }

    #[test]
    fn bad_peers_get_clear_errors() {
        let mut bad = greeting(3);
        bad[0] = b'X';
        assert!(matches!(
            handshake(&mut &bad[..], |_: &[u8]| Ok(())),
            Err(ProxyError::Greeting(..))
        ));
        assert!(matches!(
            handshake(&mut &greeting(0)[..], |_: &[u8]| Ok(())),
            Err(ProxyError::NotFixedNewstyle(0))
        ));
        let mut big = greeting(3);
        big.extend(option_reply(OPT_GO, REP_INFO, 1 << 30));
        assert!(matches!(
            handshake(&mut &big[..], |_: &[u8]| Ok(())),
            Err(ProxyError::OptionReplyTooLarge(_))
        ));
        let mut huge = greeting(3);
        huge.extend(opt_reply(OPT_GO, REP_ERR_UNSUP, &[]));
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&3u16.to_be_bytes());
        assert!(matches!(
            handshake(&mut &huge[..], |_: &[u8]| Ok(())),
            Err(ProxyError::TooBig(_))
        ));
        let mut refused = greeting(3);
        refused.extend(opt_reply(OPT_GO, REP_ERR_UNKNOWN, b"no such export"));
        let e = handshake(&mut &refused[..], |_: &[u8]| Ok(())).unwrap_err();
        assert!(e.to_string().contains("no such export"), "{e}");
        // Replies: magic, handle and length are checked.
        let mut r = simple_reply(0, 7).to_vec();
        r.extend_from_slice(b"abcd");
        let got = read_reply(&mut &r[..], |h| (h == 7).then_some(4)).unwrap();
        assert_eq!(got.data, b"abcd");
        assert!(matches!(
            read_reply(&mut &r[..], |_| None),
            Err(ProxyError::UnknownHandle(7))
        ));
        let s = structured_header(1, 0, 7, 0);
        assert!(matches!(
            read_reply(&mut &s[..], |_| Some(0)),
            Err(ProxyError::ReplyMagic(_))
        ));
        let e = read_reply(&mut &simple_reply(5, 7)[..], |_| Some(4096)).unwrap();
        assert_eq!((e.errno, e.data.len()), (5, 0));
    }
}
