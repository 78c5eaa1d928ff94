//! The guest side of the GuestRPC message channel, written against a
//! [`Backdoor`] transport so it runs the same over port I/O and over a socket.
//!
//! The call sequence follows open-vm-tools `lib/message/message.c`: open with
//! the cookie flag and retry without it; send the size, then the payload over
//! HB in one operation (or 4 bytes per LB call); receive the size, the payload,
//! then acknowledge with RECVSTATUS. A checkpoint status redoes the whole send
//! or receive.

use crate::regs::{halves, hi, Regs};
use crate::{cmd, msg_type, status, BDOORHB_CMD_MESSAGE, BDOORHB_PORT, BDOOR_MAGIC, BDOOR_PORT};

/// Why a transport could not carry a backdoor call.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The underlying socket or device failed.
    #[error("backdoor transport i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The endpoint refused the frame and gave a reason.
    #[error("backdoor endpoint refused the call: {0}")]
    Refused(String),
    /// The endpoint answered something the transport cannot parse.
    #[error("backdoor endpoint protocol error: {0}")]
    Protocol(String),
}

/// One way to execute backdoor instructions: real port I/O in a VMware guest,
/// or frames to a simulator. Registers not named stay as given.
pub trait Backdoor {
    /// `in eax, dx` on the low-bandwidth port.
    fn call(&mut self, regs: Regs) -> Result<Regs, TransportError>;
    /// `rep outsb` of `data` on the high-bandwidth port. The transport supplies
    /// the buffer address (esi) and count (ecx) itself.
    fn hb_out(&mut self, regs: Regs, data: &[u8]) -> Result<Regs, TransportError>;
    /// `rep insb` into `buf` on the high-bandwidth port. The transport supplies
    /// the buffer address (edi) and count (ecx) itself.
    fn hb_in(&mut self, regs: Regs, buf: &mut [u8]) -> Result<Regs, TransportError>;
}

impl<B: Backdoor + ?Sized> Backdoor for &mut B {
    fn call(&mut self, regs: Regs) -> Result<Regs, TransportError> {
        (**self).call(regs)
    }
    fn hb_out(&mut self, regs: Regs, data: &[u8]) -> Result<Regs, TransportError> {
        (**self).hb_out(regs, data)
    }
    fn hb_in(&mut self, regs: Regs, buf: &mut [u8]) -> Result<Regs, TransportError> {
        (**self).hb_in(regs, buf)
    }
}

impl<B: Backdoor + ?Sized> Backdoor for Box<B> {
    fn call(&mut self, regs: Regs) -> Result<Regs, TransportError> {
        (**self).call(regs)
    }
    fn hb_out(&mut self, regs: Regs, data: &[u8]) -> Result<Regs, TransportError> {
        (**self).hb_out(regs, data)
    }
    fn hb_in(&mut self, regs: Regs, buf: &mut [u8]) -> Result<Regs, TransportError> {
        (**self).hb_in(regs, buf)
    }
}

/// Why a message-channel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The host refused to open a channel (with and without cookies).
    #[error("the host refused to open a {0} channel")]
    Open(&'static str),
    /// The host refused the message (status bits given).
    #[error("the host refused the message (status {0:#06x})")]
    Send(u16),
    /// The host failed the receive (status bits given).
    #[error("receiving the host's reply failed (status {0:#06x})")]
    Receive(u16),
    /// The host kept reporting checkpoints.
    #[error("gave up after {0} checkpoint retries")]
    Checkpoints(u32),
    /// The host broke the protocol.
    #[error("host protocol error: {0}")]
    Protocol(&'static str),
    /// The host's reply exceeds what this guest accepts.
    #[error("the host's reply of {size} bytes exceeds the limit of {limit} bytes")]
    ReplyTooLarge {
        /// Announced size.
        size: usize,
        /// The channel's limit.
        limit: usize,
    },
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Checkpoint retries before giving up; a host that checkpoints forever is broken.
pub const MAX_CHECKPOINT_RETRIES: u32 = 16;
/// Default bound on a host reply (an OVF environment can be large).
pub const DEFAULT_MAX_REPLY: usize = 64 << 20;

/// An open GuestRPC channel.
#[derive(Debug)]
pub struct GuestChannel<B: Backdoor> {
    bd: B,
    id: u16,
    cookie_hi: u32,
    cookie_lo: u32,
    proto_name: &'static str,
    use_hb: bool,
    max_reply: usize,
    inbuf: Vec<u8>,
    closed: bool,
}

fn proto_name(proto: u32) -> &'static str {
    match proto {
        crate::proto::RPCI => "RPCI",
        crate::proto::TCLO => "TCLO",
        _ => "GuestRPC",
    }
}

fn msg_regs(sub: u16, id: u16, cookie_hi: u32, cookie_lo: u32, ebx: u32) -> Regs {
    Regs {
        eax: BDOOR_MAGIC,
        ebx,
        ecx: halves(sub, cmd::MESSAGE),
        edx: halves(id, BDOOR_PORT),
        esi: cookie_hi,
        edi: cookie_lo,
        ebp: 0,
    }
}

impl<B: Backdoor> GuestChannel<B> {
    /// Open a channel for `proto` ([`crate::proto::RPCI`] or [`crate::proto::TCLO`]).
    pub fn open(mut bd: B, proto: u32) -> Result<Self, ChannelError> {
        let mut flags = crate::GUESTMSG_FLAG_COOKIE;
        loop {
            let mut r = msg_regs(msg_type::OPEN, 0, 0, 0, proto | flags);
            r.edx = BDOOR_PORT as u32;
            let out = bd.call(r)?;
            if hi(out.ecx) & status::SUCCESS == 0 {
                if flags != 0 {
                    // Host without cookie support: open without them.
                    flags = 0;
                    continue;
                }
                return Err(ChannelError::Open(proto_name(proto)));
            }
            return Ok(GuestChannel {
                bd,
                id: hi(out.edx),
                cookie_hi: out.esi,
                cookie_lo: out.edi,
                proto_name: proto_name(proto),
                use_hb: true,
                max_reply: DEFAULT_MAX_REPLY,
                inbuf: Vec::new(),
                closed: false,
            });
        }
    }

    /// Allow or forbid the high-bandwidth port even when the host offers it.
    pub fn set_high_bandwidth(&mut self, allowed: bool) {
        self.use_hb = allowed;
    }

    /// Bound the size of a reply this channel accepts.
    pub fn set_max_reply(&mut self, limit: usize) {
        self.max_reply = limit;
    }

    /// "RPCI" or "TCLO".
    pub fn protocol_name(&self) -> &'static str {
        self.proto_name
    }

    /// The host-assigned channel id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The transport, e.g. to make plain backdoor calls between messages.
    pub fn backdoor(&mut self) -> &mut B {
        &mut self.bd
    }

    fn regs(&self, sub: u16, ebx: u32) -> Regs {
        msg_regs(sub, self.id, self.cookie_hi, self.cookie_lo, ebx)
    }

    /// Send one message.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), ChannelError> {
        let size = u32::try_from(msg.len()).map_err(|_| ChannelError::Send(0))?;
        let mut retries = 0;
        'retry: loop {
            if retries > MAX_CHECKPOINT_RETRIES {
                return Err(ChannelError::Checkpoints(MAX_CHECKPOINT_RETRIES));
            }
            retries += 1;
            let out = self.bd.call(self.regs(msg_type::SENDSIZE, size))?;
            let st = hi(out.ecx);
            if st & status::SUCCESS == 0 {
                return Err(ChannelError::Send(st));
            }
            if st & status::HB != 0 && self.use_hb {
                if msg.is_empty() {
                    return Ok(());
                }
                let r = Regs {
                    eax: BDOOR_MAGIC,
                    ebx: halves(status::SUCCESS, BDOORHB_CMD_MESSAGE),
                    ecx: size,
                    edx: halves(self.id, BDOORHB_PORT),
                    esi: 0,
                    edi: self.cookie_lo,
                    ebp: self.cookie_hi,
                };
                let out = self.bd.hb_out(r, msg)?;
                let st = hi(out.ebx);
                if st & status::SUCCESS == 0 {
                    if st & status::CPT != 0 {
                        continue 'retry;
                    }
                    return Err(ChannelError::Send(st));
                }
                return Ok(());
            }
            for chunk in msg.chunks(4) {
                let mut word = [0u8; 4];
                word[..chunk.len()].copy_from_slice(chunk);
                let out = self
                    .bd
                    .call(self.regs(msg_type::SENDPAYLOAD, u32::from_le_bytes(word)))?;
                let st = hi(out.ecx);
                if st & status::SUCCESS == 0 {
                    if st & status::CPT != 0 {
                        continue 'retry;
                    }
                    return Err(ChannelError::Send(st));
                }
            }
            return Ok(());
        }
    }

    /// Tell the host the receive failed, as open-vm-tools does, so it drops
    /// the message; the original error is what the caller sees.
    fn abort_receive(&mut self, received_any: bool) {
        let sub = if received_any {
            msg_type::RECVPAYLOAD
        } else {
            msg_type::RECVSTATUS
        };
        let _ = self.bd.call(self.regs(sub, 0));
    }

    /// Receive the host's pending message; empty when there is none. The
    /// slice stays valid until the next call on this channel.
    pub fn receive(&mut self) -> Result<&[u8], ChannelError> {
        let mut retries = 0;
        'retry: loop {
            if retries > MAX_CHECKPOINT_RETRIES {
                return Err(ChannelError::Checkpoints(MAX_CHECKPOINT_RETRIES));
            }
            retries += 1;
            let out = self.bd.call(self.regs(msg_type::RECVSIZE, 0))?;
            let st = hi(out.ecx);
            if st & status::SUCCESS == 0 {
                return Err(ChannelError::Receive(st));
            }
            if st & status::DORECV == 0 {
                self.inbuf.clear();
                return Ok(&self.inbuf[..0]);
            }
            if hi(out.edx) != msg_type::SENDSIZE {
                return Err(ChannelError::Protocol("expected SENDSIZE from the host"));
            }
            let size = out.ebx as usize;
            if size > self.max_reply {
                self.abort_receive(false);
                return Err(ChannelError::ReplyTooLarge {
                    size,
                    limit: self.max_reply,
                });
            }
            // Reuse the buffer: large replies (OVF environments) arrive
            // repeatedly, and fresh pages cost a fault each.
            self.inbuf.resize(size, 0);
            if size > 0 {
                if st & status::HB != 0 && self.use_hb {
                    let r = Regs {
                        eax: BDOOR_MAGIC,
                        ebx: halves(status::SUCCESS, BDOORHB_CMD_MESSAGE),
                        ecx: size as u32,
                        edx: halves(self.id, BDOORHB_PORT),
                        esi: self.cookie_hi,
                        edi: 0,
                        ebp: self.cookie_lo,
                    };
                    let mut buf = std::mem::take(&mut self.inbuf);
                    let res = self.bd.hb_in(r, &mut buf);
                    self.inbuf = buf;
                    let out = res?;
                    let st = hi(out.ebx);
                    if st & status::SUCCESS == 0 {
                        if st & status::CPT != 0 {
                            continue 'retry;
                        }
                        self.abort_receive(true);
                        return Err(ChannelError::Receive(st));
                    }
                } else {
                    let mut pos = 0;
                    while pos < size {
                        let out = self
                            .bd
                            .call(self.regs(msg_type::RECVPAYLOAD, status::SUCCESS as u32))?;
                        let st = hi(out.ecx);
                        if st & status::SUCCESS == 0 {
                            if st & status::CPT != 0 {
                                continue 'retry;
                            }
                            self.abort_receive(true);
                            return Err(ChannelError::Receive(st));
                        }
                        if hi(out.edx) != msg_type::SENDPAYLOAD {
                            self.abort_receive(true);
                            return Err(ChannelError::Protocol(
                                "expected SENDPAYLOAD from the host",
                            ));
                        }
                        let n = (size - pos).min(4);
                        self.inbuf[pos..pos + n].copy_from_slice(&out.ebx.to_le_bytes()[..n]);
                        pos += n;
                    }
                }
            }
            let out = self
                .bd
                .call(self.regs(msg_type::RECVSTATUS, status::SUCCESS as u32))?;
            let st = hi(out.ecx);
            if st & status::SUCCESS == 0 {
                if st & status::CPT != 0 {
                    continue 'retry;
                }
                return Err(ChannelError::Receive(st));
            }
            return Ok(&self.inbuf);
        }
    }

    /// Send a message and receive the reply.
    pub fn call(&mut self, msg: &[u8]) -> Result<&[u8], ChannelError> {
        self.send(msg)?;
        self.receive()
    }

    /// Close the channel.
    pub fn close(mut self) -> Result<(), ChannelError> {
        self.closed = true;
        let out = self.bd.call(self.regs(msg_type::CLOSE, 0))?;
        let st = hi(out.ecx);
        if st & status::SUCCESS == 0 {
            return Err(ChannelError::Send(st));
        }
        Ok(())
    }
}

impl<B: Backdoor> Drop for GuestChannel<B> {
    fn drop(&mut self) {
        if !self.closed {
            let r = self.regs(msg_type::CLOSE, 0);
            let _ = self.bd.call(r);
        }
    }
}

/// The parsed answer to an RPCI message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpciReply {
    /// True for "1 ", false for "0 ".
    pub ok: bool,
    /// The text after the status.
    pub body: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;

    /// A scripted host: checks each call against the expected registers and
    /// answers with the given ones.
    #[derive(Debug, Default)]
    struct Script {
        steps: Vec<(&'static str, Regs, Regs, Vec<u8>)>,
        at: usize,
        sent: Vec<u8>,
    }

    impl Script {
        fn new(steps: Vec<(&'static str, Regs, Regs, Vec<u8>)>) -> Self {
            Script {
                steps,
                ..Default::default()
            }
        }

        fn step(&mut self, op: &str, regs: Regs) -> (Regs, Vec<u8>) {
            let (want_op, want, answer, data) = self.steps[self.at].clone();
            assert_eq!((op, regs), (want_op, want), "call {}", self.at);
            self.at += 1;
            (answer, data)
        }
    }

    impl Backdoor for Script {
        fn call(&mut self, regs: Regs) -> Result<Regs, TransportError> {
            Ok(self.step("in", regs).0)
        }
        fn hb_out(&mut self, regs: Regs, data: &[u8]) -> Result<Regs, TransportError> {
            self.sent.extend_from_slice(data);
            Ok(self.step("outsb", regs).0)
        }
        fn hb_in(&mut self, regs: Regs, buf: &mut [u8]) -> Result<Regs, TransportError> {
            let (r, d) = self.step("insb", regs);
            buf.copy_from_slice(&d);
            Ok(r)
        }
    }

    const M: u32 = 0x564D_5868;

    fn r(eax: u32, ebx: u32, ecx: u32, edx: u32, esi: u32, edi: u32, ebp: u32) -> Regs {
        Regs {
            eax,
            ebx,
            ecx,
            edx,
            esi,
            edi,
            ebp,
        }
    }

    /// The register sequence of open-vm-tools' Message_Open/Send/Receive/Close
    /// for one RPCI round trip over HB, on a host that first refuses cookies.
    #[test]
    fn golden_hb_round_trip_with_cookie_fallback() {
        let mut s = Script::new(vec![
            // OPEN with the cookie flag: refused.
            (
                "in",
                r(M, 0xC943_5052, 0x0000_001E, 0x5658, 0, 0, 0),
                r(M, 0, 0, 0x5658, 0, 0, 0),
                vec![],
            ),
            // OPEN without it: channel 3, no cookies.
            (
                "in",
                r(M, 0x4943_5052, 0x0000_001E, 0x5658, 0, 0, 0),
                r(M, 0, 0x0001_0000, 0x0003_5658, 0, 0, 0),
                vec![],
            ),
            // SENDSIZE 5: success + HB.
            (
                "in",
                r(M, 5, 0x0001_001E, 0x0003_5658, 0, 0, 0),
                r(M, 5, 0x0081_0000, 0x0003_5658, 0, 0, 0),
                vec![],
            ),
            // rep outsb of the 5 bytes on 0x5659.
            (
                "outsb",
                r(M, 0x0001_0000, 5, 0x0003_5659, 0, 0, 0),
                r(M, 0x0001_0000, 0, 0x0003_5659, 0, 0, 0),
                vec![],
            ),
            // RECVSIZE: 3 bytes waiting, type SENDSIZE, HB.
            (
                "in",
                r(M, 0, 0x0003_001E, 0x0003_5658, 0, 0, 0),
                r(M, 3, 0x0083_0000, 0x0001_5658, 0, 0, 0),
                vec![],
            ),
            // rep insb of 3 bytes.
            (
                "insb",
                r(M, 0x0001_0000, 3, 0x0003_5659, 0, 0, 0),
                r(M, 0x0001_0000, 0, 0x0003_5659, 0, 0, 0),
                b"1 x".to_vec(),
            ),
            // RECVSTATUS success.
            (
                "in",
                r(M, 1, 0x0005_001E, 0x0003_5658, 0, 0, 0),
                r(M, 1, 0x0001_0000, 0x0003_5658, 0, 0, 0),
                vec![],
            ),
            // CLOSE.
            (
                "in",
                r(M, 0, 0x0006_001E, 0x0003_5658, 0, 0, 0),
                r(M, 0, 0x0001_0000, 0x0003_5658, 0, 0, 0),
                vec![],
            ),
        ]);
        let mut ch = GuestChannel::open(&mut s, proto::RPCI).unwrap();
        assert_eq!(ch.id(), 3);
        assert_eq!(ch.call(b"hello").unwrap(), b"1 x");
        ch.close().unwrap();
        assert_eq!(s.at, s.steps.len());
        assert_eq!(s.sent, b"hello");
    }

    /// LB path with cookies: 4 bytes per SENDPAYLOAD, little endian, the last
    /// word zero-padded; a checkpoint in the middle redoes the whole send.
    #[test]
    fn golden_lb_send_with_checkpoint_and_receive() {
        let (ch_hi, ck_lo) = (0xAAAA_0001, 0xBBBB_0002);
        let e = 0x0001_5658;
        let mut s = Script::new(vec![
            (
                "in",
                r(M, 0xC943_5052, 0x1E, 0x5658, 0, 0, 0),
                r(M, 0, 0x0001_0000, e, ch_hi, ck_lo, 0),
                vec![],
            ),
            (
                "in",
                r(M, 6, 0x0001_001E, e, ch_hi, ck_lo, 0),
                r(M, 6, 0x0001_0000, e, 0, 0, 0),
                vec![],
            ),
            (
                "in",
                r(M, 0x6463_6261, 0x0002_001E, e, ch_hi, ck_lo, 0),
                r(M, 0, 0x0010_0000, e, 0, 0, 0),
                vec![],
            ),
            // redo from SENDSIZE
            (
                "in",
                r(M, 6, 0x0001_001E, e, ch_hi, ck_lo, 0),
                r(M, 6, 0x0001_0000, e, 0, 0, 0),
                vec![],
            ),
            (
                "in",
                r(M, 0x6463_6261, 0x0002_001E, e, ch_hi, ck_lo, 0),
                r(M, 0, 0x0001_0000, e, 0, 0, 0),
                vec![],
            ),
            (
                "in",
                r(M, 0x0000_6665, 0x0002_001E, e, ch_hi, ck_lo, 0),
                r(M, 0, 0x0001_0000, e, 0, 0, 0),
                vec![],
            ),
            // receive 5 bytes over LB
            (
                "in",
                r(M, 0, 0x0003_001E, e, ch_hi, ck_lo, 0),
                r(M, 5, 0x0003_0000, 0x0001_5658, 0, 0, 0),
                vec![],
            ),
            (
                "in",
                r(M, 1, 0x0004_001E, e, ch_hi, ck_lo, 0),
                r(M, 0x6C61_7620, 0x0001_0000, 0x0002_5658, 0, 0, 0),
                vec![],
            ),
            (
                "in",
                r(M, 1, 0x0004_001E, e, ch_hi, ck_lo, 0),
                r(M, 0x0000_0021, 0x0001_0000, 0x0002_5658, 0, 0, 0),
                vec![],
            ),
            (
                "in",
                r(M, 1, 0x0005_001E, e, ch_hi, ck_lo, 0),
                r(M, 0, 0x0001_0000, e, 0, 0, 0),
                vec![],
            ),
            (
                "in",
                r(M, 0, 0x0006_001E, e, ch_hi, ck_lo, 0),
                r(M, 0, 0x0001_0000, e, 0, 0, 0),
                vec![],
            ),
        ]);
        let mut ch = GuestChannel::open(&mut s, proto::RPCI).unwrap();
        assert_eq!(ch.call(b"abcdef").unwrap(), b" val!");
        drop(ch);
        assert_eq!(s.at, s.steps.len());
    }

    #[test]
    fn refused_open_and_oversize_reply() {
        let mut s = Script::new(vec![
            (
                "in",
                r(M, 0xCF4C_4354, 0x1E, 0x5658, 0, 0, 0),
                r(M, 0, 0, 0, 0, 0, 0),
                vec![],
            ),
            (
                "in",
                r(M, 0x4F4C_4354, 0x1E, 0x5658, 0, 0, 0),
                r(M, 0, 0, 0, 0, 0, 0),
                vec![],
            ),
        ]);
        let err = GuestChannel::open(&mut s, proto::TCLO).unwrap_err();
        assert_eq!(err.to_string(), "the host refused to open a TCLO channel");

        let mut s = Script::new(vec![
            (
                "in",
                r(M, 0xC943_5052, 0x1E, 0x5658, 0, 0, 0),
                r(M, 0, 0x0001_0000, 0x5658, 0, 0, 0),
                vec![],
            ),
            (
                "in",
                r(M, 0, 0x0003_001E, 0x5658, 0, 0, 0),
                r(M, 100, 0x0003_0000, 0x0001_5658, 0, 0, 0),
                vec![],
            ),
            // the guest tells the host it gives up (RECVSTATUS with status 0)
            (
                "in",
                r(M, 0, 0x0005_001E, 0x5658, 0, 0, 0),
                r(M, 0, 0x0001_0000, 0, 0, 0, 0),
                vec![],
            ),
            (
                "in",
                r(M, 0, 0x0006_001E, 0x5658, 0, 0, 0),
                r(M, 0, 0x0001_0000, 0, 0, 0, 0),
                vec![],
            ),
        ]);
        let mut ch = GuestChannel::open(&mut s, proto::RPCI).unwrap();
        ch.set_max_reply(99);
        assert!(matches!(
            ch.receive(),
            Err(ChannelError::ReplyTooLarge {
                size: 100,
                limit: 99
            })
        ));
        drop(ch);
        assert_eq!(s.at, s.steps.len());
    }

    #[test]
    fn endless_checkpoints_give_up() {
        #[derive(Debug)]
        struct AlwaysCpt;
        impl Backdoor for AlwaysCpt {
            fn call(&mut self, regs: Regs) -> Result<Regs, TransportError> {
                let st = if hi(regs.ecx) == msg_type::SENDPAYLOAD {
                    status::CPT
                } else {
                    status::SUCCESS
                };
                Ok(Regs {
                    ecx: (st as u32) << 16,
                    ..regs
                })
            }
            fn hb_out(&mut self, _: Regs, _: &[u8]) -> Result<Regs, TransportError> {
                unreachable!()
            }
            fn hb_in(&mut self, _: Regs, _: &mut [u8]) -> Result<Regs, TransportError> {
                unreachable!()
            }
        }
        let mut ch = GuestChannel::open(AlwaysCpt, proto::RPCI).unwrap();
        assert!(matches!(ch.send(b"x"), Err(ChannelError::Checkpoints(_))));
    }
}
