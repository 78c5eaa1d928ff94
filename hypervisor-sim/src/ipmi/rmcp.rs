//! RMCP, IPMI 1.5 and IPMI 2.0 (RMCP+) packet layout: parse and emit, no I/O.
//!
//! Layout facts are from the IPMI 2.0 specification (section 13: RMCP,
//! 13.6 the IPMI 1.5 session header, 13.8 the RMCP+ session header and
//! trailer, 13.28 ASF presence ping) and agree with what ipmitool sends.

/// RMCP header version 1.0 (spec 13.1.3).
pub const RMCP_VERSION: u8 = 0x06;
/// RMCP sequence number meaning "no RMCP ACK" (all IPMI traffic uses it).
pub const RMCP_SEQ_NO_ACK: u8 = 0xFF;
/// RMCP message class ASF.
pub const CLASS_ASF: u8 = 0x06;
/// RMCP message class IPMI.
pub const CLASS_IPMI: u8 = 0x07;
/// ASF's IANA enterprise number (4542).
pub const ASF_IANA: [u8; 4] = [0x00, 0x00, 0x11, 0xBE];
/// ASF Presence Ping message type.
pub const ASF_PING: u8 = 0x80;
/// ASF Presence Pong message type.
pub const ASF_PONG: u8 = 0x40;

/// Session authentication type: none.
pub const AUTH_NONE: u8 = 0x00;
/// Session authentication type: MD5.
pub const AUTH_MD5: u8 = 0x02;
/// Session authentication type: straight password.
pub const AUTH_PASSWORD: u8 = 0x04;
/// "Authentication type" 6: the RMCP+ session header format.
pub const AUTH_RMCPP: u8 = 0x06;

/// RMCP+ payload type: an IPMI message.
pub const PAYLOAD_IPMI: u8 = 0x00;
/// RMCP+ payload type: Serial over LAN.
pub const PAYLOAD_SOL: u8 = 0x01;
/// RMCP+ payload type: OEM explicit (carries IANA and OEM payload ID).
pub const PAYLOAD_OEM: u8 = 0x02;
/// RMCP+ Open Session Request.
pub const PAYLOAD_OPEN_REQ: u8 = 0x10;
/// RMCP+ Open Session Response.
pub const PAYLOAD_OPEN_RSP: u8 = 0x11;
/// RAKP Message 1.
pub const PAYLOAD_RAKP1: u8 = 0x12;
/// RAKP Message 2.
pub const PAYLOAD_RAKP2: u8 = 0x13;
/// RAKP Message 3.
pub const PAYLOAD_RAKP3: u8 = 0x14;
/// RAKP Message 4.
pub const PAYLOAD_RAKP4: u8 = 0x15;

/// Largest datagram accepted. IPMI messages are small (a LAN channel's
/// buffer is a few hundred bytes); anything longer is dropped unread.
pub const MAX_PACKET: usize = 1024;

/// The "next header" byte of an RMCP+ session trailer (spec table 13-8).
pub const NEXT_HEADER: u8 = 0x07;

/// Why a datagram was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than its headers say.
    #[error("truncated packet ({0} bytes)")]
    Truncated(usize),
    /// Longer than [`MAX_PACKET`].
    #[error("oversize packet ({0} bytes)")]
    Oversize(usize),
    /// Not RMCP version 1.0.
    #[error("not an RMCP 1.0 packet")]
    NotRmcp,
    /// A class or message type this BMC does not serve.
    #[error("unsupported RMCP class or ASF message {0:#04x}")]
    Unsupported(u8),
    /// An authentication type this BMC does not implement.
    #[error("unsupported authentication type {0:#04x}")]
    AuthType(u8),
    /// The IPMI message's checksums or length are wrong.
    #[error("malformed IPMI message")]
    BadMessage,
}

/// A parsed datagram. Borrowed slices point into the received buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// ASF Presence Ping with its message tag.
    Ping {
        /// Echoed in the pong.
        tag: u8,
    },
    /// An IPMI 1.5 session packet.
    V15(V15<'a>),
    /// An RMCP+ session packet.
    V20(V20<'a>),
}

/// The IPMI 1.5 session header and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V15<'a> {
    /// Authentication type (none, MD5, password).
    pub auth_type: u8,
    /// Session sequence number.
    pub seq: u32,
    /// Session ID (0 outside a session).
    pub session_id: u32,
    /// Authentication code, when `auth_type` is not none.
    pub auth_code: Option<[u8; 16]>,
    /// The IPMI message (length byte removed, trailing legacy pad ignored).
    pub msg: &'a [u8],
}

/// The RMCP+ session header, payload and trailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V20<'a> {
    /// Payload is encrypted.
    pub encrypted: bool,
    /// Packet carries an integrity trailer.
    pub authenticated: bool,
    /// Payload type (low 6 bits).
    pub payload_type: u8,
    /// Session ID (the BMC's for packets to it; 0 outside a session).
    pub session_id: u32,
    /// Session sequence number.
    pub seq: u32,
    /// Payload bytes (still encrypted when `encrypted`).
    pub payload: &'a [u8],
    /// Everything the integrity code covers: auth type through next header.
    pub signed: &'a [u8],
    /// Bytes after the payload: pad, pad length, next header, auth code.
    pub trailer: &'a [u8],
}

fn u32le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Parse one datagram.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, PacketError> {
    if buf.len() > MAX_PACKET {
        return Err(PacketError::Oversize(buf.len()));
    }
    if buf.len() < 4 {
        return Err(PacketError::Truncated(buf.len()));
    }
    if buf[0] != RMCP_VERSION {
        return Err(PacketError::NotRmcp);
    }
    let body = &buf[4..];
    match buf[3] & 0x1F {
        CLASS_ASF => {
            // IANA(4) type(1) tag(1) reserved(1) length(1)
            if body.len() < 8 {
                return Err(PacketError::Truncated(buf.len()));
            }
            if body[..4] != ASF_IANA || body[4] != ASF_PING {
                return Err(PacketError::Unsupported(body[4]));
            }
            Ok(Packet::Ping { tag: body[5] })
        }
        CLASS_IPMI => {
            let at = *body.first().ok_or(PacketError::Truncated(buf.len()))?;
            if at & 0x0F == AUTH_RMCPP {
                parse_v20(body, buf.len())
            } else {
                parse_v15(body, buf.len())
            }
        }
        c => Err(PacketError::Unsupported(c)),
    }
}

fn parse_v15(body: &[u8], total: usize) -> Result<Packet<'_>, PacketError> {
    let auth_type = body[0] & 0x0F;
    if !matches!(auth_type, AUTH_NONE | AUTH_MD5 | AUTH_PASSWORD) {
        return Err(PacketError::AuthType(auth_type));
    }
    let mut off = 9;
    if body.len() < off + 1 {
        return Err(PacketError::Truncated(total));
    }
    let seq = u32le(&body[1..5]);
    let session_id = u32le(&body[5..9]);
    let auth_code = if auth_type != AUTH_NONE {
        if body.len() < off + 17 {
            return Err(PacketError::Truncated(total));
        }
        let mut c = [0u8; 16];
        c.copy_from_slice(&body[off..off + 16]);
        off += 16;
        Some(c)
    } else {
        None
    };
    let len = body[off] as usize;
    off += 1;
    let msg = body
        .get(off..off + len)
        .ok_or(PacketError::Truncated(total))?;
    Ok(Packet::V15(V15 {
        auth_type,
        seq,
        session_id,
        auth_code,
        msg,
    }))
}

fn parse_v20(body: &[u8], total: usize) -> Result<Packet<'_>, PacketError> {
    // auth type(1) payload type(1) session id(4) seq(4) length(2)
    if body.len() < 12 {
        return Err(PacketError::Truncated(total));
    }
    let pt = body[1];
    let payload_type = pt & 0x3F;
    if payload_type == PAYLOAD_OEM {
        return Err(PacketError::Unsupported(payload_type));
    }
    let len = u16::from_le_bytes([body[10], body[11]]) as usize;
    let payload = body
        .get(12..12 + len)
        .ok_or(PacketError::Truncated(total))?;
    let trailer = &body[12 + len..];
    let authenticated = pt & 0x40 != 0;
    // The integrity code covers auth type through the next-header byte; the
    // caller knows the code's length and checks the rest.
    Ok(Packet::V20(V20 {
        encrypted: pt & 0x80 != 0,
        authenticated,
        payload_type,
        session_id: u32le(&body[2..6]),
        seq: u32le(&body[6..10]),
        payload,
        signed: body,
        trailer,
    }))
}

impl V20<'_> {
    /// Split off an integrity code of `code_len` bytes: the bytes it covers
    /// and the code. `None` when the trailer is malformed (pad bytes not
    /// 0xFF, pad length or next header wrong, covered length not a multiple
    /// of 4).
    pub fn integrity(&self, code_len: usize) -> Option<(&[u8], &[u8])> {
        let t = self.trailer;
        if t.len() < code_len + 2 {
            return None;
        }
        let (head, code) = t.split_at(t.len() - code_len);
        let next = head[head.len() - 1];
        let pad_len = head[head.len() - 2] as usize;
        if next != NEXT_HEADER || pad_len + 2 != head.len() || pad_len > 3 {
            return None;
        }
        if head[..pad_len].iter().any(|&b| b != 0xFF) {
            return None;
        }
        let covered = &self.signed[..self.signed.len() - code_len];
        if covered.len() & 3 != 0 {
            return None;
        }
        Some((covered, code))
    }
}

/// Emit an ASF Presence Pong answering `tag`: IPMI supported, no security
/// extensions (spec 13.2.4).
pub fn pong(tag: u8) -> Vec<u8> {
    let mut p = vec![RMCP_VERSION, 0, RMCP_SEQ_NO_ACK, CLASS_ASF];
    p.extend_from_slice(&ASF_IANA);
    p.extend_from_slice(&[ASF_PONG, tag, 0, 16]);
    p.extend_from_slice(&ASF_IANA);
    p.extend_from_slice(&[0; 4]); // OEM defined
    p.push(0x81); // supported entities: IPMI, ASF 1.0
    p.push(0x00); // supported interactions
    p.extend_from_slice(&[0; 6]);
    p
}

/// Emit an ASF Presence Ping (for clients and tests).
pub fn ping(tag: u8) -> Vec<u8> {
    let mut p = vec![RMCP_VERSION, 0, RMCP_SEQ_NO_ACK, CLASS_ASF];
    p.extend_from_slice(&ASF_IANA);
    p.extend_from_slice(&[ASF_PING, tag, 0, 0]);
    p
}

/// Emit an IPMI 1.5 session packet. `auth` computes the auth code over the
/// message when the auth type is not none.
pub fn emit_v15(
    auth_type: u8,
    seq: u32,
    session_id: u32,
    auth_code: Option<[u8; 16]>,
    msg: &[u8],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(msg.len() + 32);
    p.extend_from_slice(&[RMCP_VERSION, 0, RMCP_SEQ_NO_ACK, CLASS_IPMI, auth_type]);
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&session_id.to_le_bytes());
    if auth_type != AUTH_NONE {
        p.extend_from_slice(&auth_code.unwrap_or([0; 16]));
    }
    p.push(msg.len() as u8);
    p.extend_from_slice(msg);
    p
}

/// Emit an RMCP+ packet. The payload is given as it goes on the wire
/// (already encrypted when `encrypted`). With `mac`, an integrity trailer is
/// added: `mac` gets the covered bytes and returns the (truncated) code.
pub fn emit_v20(
    payload_type: u8,
    encrypted: bool,
    session_id: u32,
    seq: u32,
    payload: &[u8],
    mac: Option<&MacFn<'_>>,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(payload.len() + 48);
    p.extend_from_slice(&[RMCP_VERSION, 0, RMCP_SEQ_NO_ACK, CLASS_IPMI, AUTH_RMCPP]);
    let mut pt = payload_type & 0x3F;
    if encrypted {
        pt |= 0x80;
    }
    if mac.is_some() {
        pt |= 0x40;
    }
    p.push(pt);
    p.extend_from_slice(&session_id.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    p.extend_from_slice(payload);
    if let Some(mac) = mac {
        // Covered: auth type .. next header, a multiple of 4 (spec 13.28.4).
        let covered = p.len() - 4 + 2;
        let pad = (4 - covered % 4) % 4;
        p.resize(p.len() + pad, 0xFF);
        p.push(pad as u8);
        p.push(NEXT_HEADER);
        let code = mac(&p[4..]);
        p.extend_from_slice(&code);
    }
    p
}

/// Computes an integrity code over the bytes it is given.
pub type MacFn<'a> = dyn Fn(&[u8]) -> Vec<u8> + 'a;

/// The two's-complement checksum IPMI messages use.
pub fn checksum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x)).wrapping_neg()
}

/// An IPMI request message (spec 13.8, "IPMI LAN message format").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Responder slave address (the BMC, 0x20).
    pub rs_addr: u8,
    /// Network function (even: a request).
    pub netfn: u8,
    /// Responder LUN.
    pub rs_lun: u8,
    /// Requester address (a software ID: 0x81 for ipmitool).
    pub rq_addr: u8,
    /// Requester sequence number (6 bits).
    pub rq_seq: u8,
    /// Requester LUN.
    pub rq_lun: u8,
    /// Command.
    pub cmd: u8,
    /// Request data.
    pub data: &'a [u8],
}

/// Parse an IPMI request message, checking both checksums.
pub fn parse_request(m: &[u8]) -> Result<Request<'_>, PacketError> {
    if m.len() < 7 {
        return Err(PacketError::BadMessage);
    }
    if checksum(&m[..2]) != m[2] || checksum(&m[3..m.len() - 1]) != m[m.len() - 1] {
        return Err(PacketError::BadMessage);
    }
    Ok(Request {
        rs_addr: m[0],
        netfn: m[1] >> 2,
        rs_lun: m[1] & 3,
        rq_addr: m[3],
        rq_seq: m[4] >> 2,
        rq_lun: m[4] & 3,
        cmd: m[5],
        data: &m[6..m.len() - 1],
    })
}

/// Emit a request message (for clients and tests).
pub fn emit_request(netfn: u8, cmd: u8, rq_seq: u8, data: &[u8]) -> Vec<u8> {
    let mut m = vec![0x20, netfn << 2];
    m.push(checksum(&m));
    m.extend_from_slice(&[0x81, rq_seq << 2, cmd]);
    m.extend_from_slice(data);
    m.push(checksum(&m[3..]));
    m
}

impl Request<'_> {
    /// The response message: completion code `cc` then `data`.
    pub fn response(&self, cc: u8, data: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(data.len() + 8);
        m.push(self.rq_addr);
        m.push(((self.netfn | 1) << 2) | self.rq_lun);
        m.push(checksum(&m));
        m.push(self.rs_addr);
        m.push((self.rq_seq << 2) | self.rs_lun);
        m.push(self.cmd);
        m.push(cc);
        m.extend_from_slice(data);
        m.push(checksum(&m[3..]));
        m
    }
}

/// A response message as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    /// Network function (odd).
    pub netfn: u8,
    /// Requester sequence number echoed.
    pub rq_seq: u8,
    /// Command.
    pub cmd: u8,
    /// Completion code.
    pub cc: u8,
    /// Data after the completion code.
    pub data: &'a [u8],
}

/// Parse a response message (for clients and tests).
pub fn parse_response(m: &[u8]) -> Result<Response<'_>, PacketError> {
    if m.len() < 8 || checksum(&m[..2]) != m[2] || checksum(&m[3..m.len() - 1]) != m[m.len() - 1] {
        return Err(PacketError::BadMessage);
    }
    Ok(Response {
        netfn: m[1] >> 2,
        rq_seq: m[4] >> 2,
        cmd: m[5],
        cc: m[6],
        data: &m[7..m.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_pong() {
        let p = ping(7);
        assert_eq!(parse(&p), Ok(Packet::Ping { tag: 7 }));
        let r = pong(7);
        assert_eq!(r.len(), 28);
        assert_eq!(&r[8..12], &[ASF_PONG, 7, 0, 16]);
    }

    #[test]
    fn v15_roundtrip_and_request() {
        // Get Channel Authentication Capabilities, laid out as ipmitool -I lan
        // builds it (channel 0x0E with the v2.0 bit, privilege 4).
        let golden = [
            0x06, 0x00, 0xff, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09,
            0x20, 0x18, 0xc8, 0x81, 0x00, 0x38, 0x8e, 0x04, 0xb5,
        ];
        let Packet::V15(v) = parse(&golden).unwrap() else {
            panic!()
        };
        assert_eq!(v.auth_type, AUTH_NONE);
        let rq = parse_request(v.msg).unwrap();
        assert_eq!((rq.netfn, rq.cmd, rq.data), (0x06, 0x38, &[0x8e, 0x04][..]));
        assert_eq!(emit_v15(0, 0, 0, None, v.msg), golden);
        assert_eq!(emit_request(0x06, 0x38, 0, &[0x8e, 0x04]), v.msg);
        let rsp = rq.response(0, &[1, 2]);
        let r = parse_response(&rsp).unwrap();
        assert_eq!((r.netfn, r.cmd, r.cc, r.data), (0x07, 0x38, 0, &[1, 2][..]));
    }

    #[test]
    fn v20_trailer_roundtrip() {
        let mac = |b: &[u8]| vec![b.len() as u8; 12];
        for n in 0..9 {
            let payload = vec![0xAB; n];
            let p = emit_v20(0, false, 0x1234, 5, &payload, Some(&mac));
            let Packet::V20(v) = parse(&p).unwrap() else {
                panic!()
            };
            assert_eq!(v.payload, &payload[..]);
            let (covered, code) = v.integrity(12).expect("trailer");
            assert_eq!(covered.len() % 4, 0);
            assert_eq!(code, &mac(covered)[..]);
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(parse(&[]), Err(PacketError::Truncated(0))));
        assert!(matches!(
            parse(b"thump\0\0\0\0\0"),
            Err(PacketError::NotRmcp)
        ));
        assert!(matches!(
            parse(&[6, 0, 0xff, 7, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0]),
            Err(PacketError::Truncated(_))
        ));
        assert!(matches!(
            parse(&vec![6; MAX_PACKET + 1]),
            Err(PacketError::Oversize(_))
        ));
        assert!(parse_request(&[0x20, 0x18, 0, 0x81, 0, 0x01, 0]).is_err());
    }
}
