//! The host side of the GuestRPC message channel: a pure state machine that a
//! frontend drives with the guest's registers and bytes.
//!
//! It keeps the channel table of one VM. Completed guest messages go to a
//! [`MessageSink`], whose answer becomes the host's pending message on that
//! channel. Everything the guest sends is bounded: channel count, message size,
//! HB transfer sizes; any protocol violation fails that one call with status 0
//! and leaves the other channels untouched.

use std::sync::Arc;

use crate::regs::{halves, hi, lo, Regs};
use crate::{
    msg_type, proto, status, GUESTMSG_FLAG_COOKIE, GUESTMSG_MAX_CHANNEL, GUESTMSG_MAX_IN_SIZE,
};

/// Bounds on what one VM's guest may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// Open channels per VM (real hosts: 128).
    pub max_channels: usize,
    /// Largest guest-to-host message (real hosts: 64 KiB).
    pub max_in_size: usize,
    /// Offer the high-bandwidth port.
    pub high_bandwidth: bool,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            max_channels: GUESTMSG_MAX_CHANNEL,
            max_in_size: GUESTMSG_MAX_IN_SIZE,
            high_bandwidth: true,
        }
    }
}

/// A host-to-guest message: a small head and a shared tail, so a large value
/// (an OVF environment) is sent without being copied into every reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMessage {
    head: Arc<[u8]>,
    tail: Option<Arc<[u8]>>,
}

impl HostMessage {
    /// A message made of `head` followed by the shared `tail`.
    pub fn with_tail(head: Vec<u8>, tail: Arc<[u8]>) -> Self {
        HostMessage {
            head: Arc::from(head),
            tail: Some(tail),
        }
    }

    /// Total length.
    pub fn len(&self) -> usize {
        self.head.len() + self.tail.as_ref().map_or(0, |t| t.len())
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `pos..pos+len` as at most two slices.
    pub fn range(&self, pos: usize, len: usize) -> (&[u8], &[u8]) {
        let end = pos + len;
        let h = self.head.len();
        let tail: &[u8] = self.tail.as_deref().unwrap_or(&[]);
        let a = &self.head[pos.min(h)..end.min(h)];
        let b = &tail[pos.saturating_sub(h)..end.saturating_sub(h)];
        (a, b)
    }

    /// The whole message as one vector (tests and small replies).
    pub fn to_vec(&self) -> Vec<u8> {
        let (a, b) = self.range(0, self.len());
        [a, b].concat()
    }
}

impl Default for HostMessage {
    fn default() -> Self {
        HostMessage::from(Vec::new())
    }
}

/// The bytes an HB in hands to the guest: a cheap clone of the pending
/// message and the range taken, so a frontend can send them after releasing
/// the VM lock.
#[derive(Debug, Clone)]
pub struct HbIn {
    msg: HostMessage,
    start: usize,
    len: usize,
}

impl HbIn {
    /// The bytes as at most two slices.
    pub fn slices(&self) -> (&[u8], &[u8]) {
        self.msg.range(self.start, self.len)
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl From<Vec<u8>> for HostMessage {
    fn from(head: Vec<u8>) -> Self {
        HostMessage {
            head: Arc::from(head),
            tail: None,
        }
    }
}

impl From<&[u8]> for HostMessage {
    fn from(b: &[u8]) -> Self {
        HostMessage::from(b.to_vec())
    }
}

/// Identifies a channel to the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelRef {
    /// Channel id as the guest sees it.
    pub id: u16,
    /// [`proto::RPCI`] or [`proto::TCLO`].
    pub proto: u32,
    /// The frontend's token for whoever opened it (a connection, a process).
    pub owner: u64,
}

/// Where completed guest messages go. Implemented by the VM model.
pub trait MessageSink {
    /// A whole message arrived; the return value is the host's answer (empty:
    /// nothing to send, e.g. an idle TCLO poll).
    fn message(&mut self, chan: ChannelRef, msg: &[u8]) -> HostMessage;
    /// A channel was opened.
    fn opened(&mut self, _chan: ChannelRef) {}
    /// A channel went away (guest close or frontend cleanup).
    fn closed(&mut self, _chan: ChannelRef) {}
}

/// A sink that answers nothing; for tests and fuzzing.
#[derive(Debug, Default)]
pub struct NullSink;

impl MessageSink for NullSink {
    fn message(&mut self, _chan: ChannelRef, _msg: &[u8]) -> HostMessage {
        HostMessage::default()
    }
}

#[derive(Debug)]
enum Phase {
    Idle,
    /// The guest announced `expected` bytes and is sending them.
    GuestSending {
        expected: usize,
        buf: Vec<u8>,
    },
    /// The host has a message for the guest; `pos` bytes were taken.
    HostSending {
        msg: HostMessage,
        pos: usize,
    },
}

#[derive(Debug)]
struct Channel {
    proto: u32,
    owner: u64,
    cookies: Option<(u32, u32)>,
    phase: Phase,
}

/// What a channel is doing, for inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Channel id, protocol and owner.
    pub chan: ChannelRef,
    /// Opened with cookies.
    pub cookies: bool,
}

/// One VM's channel table.
#[derive(Debug)]
pub struct ChannelTable {
    limits: HostLimits,
    slots: Vec<Option<Channel>>,
    rng: u64,
    accepting: bool,
}

fn fail() -> u16 {
    0
}

impl ChannelTable {
    /// An empty table; `seed` makes the cookies (give it something unpredictable).
    pub fn new(limits: HostLimits, seed: u64) -> Self {
        ChannelTable {
            limits,
            slots: Vec::new(),
            rng: seed | 1,
            accepting: true,
        }
    }

    /// Allow or refuse new channels (a powered-off VM has no guest to talk to).
    pub fn set_accepting(&mut self, accepting: bool) {
        self.accepting = accepting;
    }

    /// The limits in force.
    pub fn limits(&self) -> HostLimits {
        self.limits
    }

    /// Open channels.
    pub fn open_count(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// The open channels.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref().map(|c| ChannelInfo {
                    chan: ChannelRef {
                        id: i as u16,
                        proto: c.proto,
                        owner: c.owner,
                    },
                    cookies: c.cookies.is_some(),
                })
            })
            .collect()
    }

    fn next_cookie(&mut self) -> u32 {
        // splitmix64: cheap, well mixed; the seed supplies the unpredictability.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as u32
    }

    fn chan_ref(&self, id: u16) -> Option<ChannelRef> {
        self.slots
            .get(id as usize)
            .and_then(|s| s.as_ref())
            .map(|c| ChannelRef {
                id,
                proto: c.proto,
                owner: c.owner,
            })
    }

    /// Look up a channel and check its cookies.
    fn lookup(&mut self, id: u16, cookie_hi: u32, cookie_lo: u32) -> Option<&mut Channel> {
        let ch = self.slots.get_mut(id as usize)?.as_mut()?;
        match ch.cookies {
            Some((h, l)) if (h, l) != (cookie_hi, cookie_lo) => None,
            _ => Some(ch),
        }
    }

    /// Handle the MESSAGE backdoor command (LB port). `owner` is the
    /// frontend's token for the caller.
    pub fn message(&mut self, regs: Regs, owner: u64, sink: &mut dyn MessageSink) -> Regs {
        let mut out = regs;
        let sub = hi(regs.ecx);
        let id = hi(regs.edx);
        let set = |out: &mut Regs, st: u16| out.ecx = halves(st, lo(regs.ecx));
        match sub {
            msg_type::OPEN => {
                let flags = regs.ebx & GUESTMSG_FLAG_COOKIE;
                let p = regs.ebx & !GUESTMSG_FLAG_COOKIE;
                if !self.accepting || (p != proto::RPCI && p != proto::TCLO) {
                    set(&mut out, fail());
                    return out;
                }
                let slot = match self.slots.iter().position(|s| s.is_none()) {
                    Some(i) => i,
                    None if self.slots.len() < self.limits.max_channels => {
                        self.slots.push(None);
                        self.slots.len() - 1
                    }
                    None => {
                        set(&mut out, fail());
                        return out;
                    }
                };
                let cookies = if flags != 0 {
                    Some((self.next_cookie(), self.next_cookie()))
                } else {
                    None
                };
                self.slots[slot] = Some(Channel {
                    proto: p,
                    owner,
                    cookies,
                    phase: Phase::Idle,
                });
                let (h, l) = cookies.unwrap_or((0, 0));
                out.edx = halves(slot as u16, lo(regs.edx));
                out.esi = h;
                out.edi = l;
                set(&mut out, status::SUCCESS);
                let r = ChannelRef {
                    id: slot as u16,
                    proto: p,
                    owner,
                };
                sink.opened(r);
                out
            }
            msg_type::CLOSE => {
                if self.lookup(id, regs.esi, regs.edi).is_none() {
                    set(&mut out, fail());
                    return out;
                }
                let r = self.chan_ref(id);
                self.slots[id as usize] = None;
                self.trim();
                if let Some(r) = r {
                    sink.closed(r);
                }
                set(&mut out, status::SUCCESS);
                out
            }
            _ => {
                let hb = self.limits.high_bandwidth;
                let max_in = self.limits.max_in_size;
                let Some(r) = self.chan_ref(id) else {
                    set(&mut out, fail());
                    return out;
                };
                let Some(ch) = self.lookup(id, regs.esi, regs.edi) else {
                    set(&mut out, fail());
                    return out;
                };
                let hb_bit = if hb { status::HB } else { 0 };
                let st = match sub {
                    msg_type::SENDSIZE => {
                        let n = regs.ebx as usize;
                        if n > max_in {
                            ch.phase = Phase::Idle;
                            fail()
                        } else {
                            ch.phase = Phase::GuestSending {
                                expected: n,
                                buf: Vec::with_capacity(n),
                            };
                            if n == 0 {
                                Self::complete(ch, r, sink);
                            }
                            status::SUCCESS | hb_bit
                        }
                    }
                    msg_type::SENDPAYLOAD => match &mut ch.phase {
                        Phase::GuestSending { expected, buf } => {
                            let n = (*expected - buf.len()).min(4);
                            buf.extend_from_slice(&regs.ebx.to_le_bytes()[..n]);
                            if buf.len() == *expected {
                                Self::complete(ch, r, sink);
                            }
                            status::SUCCESS
                        }
                        _ => fail(),
                    },
                    msg_type::RECVSIZE => match &mut ch.phase {
                        Phase::HostSending { msg, pos } => {
                            *pos = 0;
                            out.ebx = msg.len() as u32;
                            out.edx = halves(msg_type::SENDSIZE, lo(regs.edx));
                            status::SUCCESS | status::DORECV | hb_bit
                        }
                        Phase::Idle => status::SUCCESS,
                        Phase::GuestSending { .. } => fail(),
                    },
                    msg_type::RECVPAYLOAD => {
                        if regs.ebx & status::SUCCESS as u32 == 0 {
                            // The guest gave up on the message.
                            ch.phase = Phase::Idle;
                            status::SUCCESS
                        } else {
                            match &mut ch.phase {
                                Phase::HostSending { msg, pos } if *pos < msg.len() => {
                                    let n = (msg.len() - *pos).min(4);
                                    let (a, b) = msg.range(*pos, n);
                                    let mut word = [0u8; 4];
                                    word[..a.len()].copy_from_slice(a);
                                    word[a.len()..a.len() + b.len()].copy_from_slice(b);
                                    *pos += n;
                                    out.ebx = u32::from_le_bytes(word);
                                    out.edx = halves(msg_type::SENDPAYLOAD, lo(regs.edx));
                                    status::SUCCESS
                                }
                                _ => fail(),
                            }
                        }
                    }
                    msg_type::RECVSTATUS => match ch.phase {
                        Phase::HostSending { .. } => {
                            ch.phase = Phase::Idle;
                            status::SUCCESS
                        }
                        _ => fail(),
                    },
                    _ => fail(),
                };
                set(&mut out, st);
                out
            }
        }
    }

    fn complete(ch: &mut Channel, r: ChannelRef, sink: &mut dyn MessageSink) {
        let Phase::GuestSending { buf, .. } = std::mem::replace(&mut ch.phase, Phase::Idle) else {
            return;
        };
        let reply = sink.message(r, &buf);
        if !reply.is_empty() {
            ch.phase = Phase::HostSending { msg: reply, pos: 0 };
        }
    }

    fn trim(&mut self) {
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
    }

    /// Handle `rep outsb` on the HB port: the guest's message bytes.
    /// Status goes back in ebx high 16; ecx is left at 0 (all consumed).
    pub fn hb_out(&mut self, regs: Regs, data: &[u8], sink: &mut dyn MessageSink) -> Regs {
        let mut out = regs;
        let id = hi(regs.edx);
        let st = self.hb_out_inner(id, regs, data, sink);
        out.ebx = halves(st, lo(regs.ebx));
        if st & status::SUCCESS != 0 {
            out.ecx = 0;
        }
        out
    }

    fn hb_out_inner(
        &mut self,
        id: u16,
        regs: Regs,
        data: &[u8],
        sink: &mut dyn MessageSink,
    ) -> u16 {
        if !self.limits.high_bandwidth || lo(regs.ebx) != crate::BDOORHB_CMD_MESSAGE {
            return fail();
        }
        let Some(r) = self.chan_ref(id) else {
            return fail();
        };
        // HB out carries cookie high in ebp and cookie low in edi.
        let Some(ch) = self.lookup(id, regs.ebp, regs.edi) else {
            return fail();
        };
        match &mut ch.phase {
            Phase::GuestSending { expected, buf } if data.len() <= *expected - buf.len() => {
                buf.extend_from_slice(data);
                if buf.len() == *expected {
                    Self::complete(ch, r, sink);
                }
                status::SUCCESS
            }
            _ => {
                ch.phase = Phase::Idle;
                fail()
            }
        }
    }

    /// Handle `rep insb` of `count` bytes on the HB port. On success the
    /// bytes to hand over come back with the registers.
    pub fn hb_in(&mut self, regs: Regs, count: usize) -> (Regs, Option<HbIn>) {
        let mut out = regs;
        let id = hi(regs.edx);
        let ok = self.limits.high_bandwidth && lo(regs.ebx) == crate::BDOORHB_CMD_MESSAGE;
        // HB in carries cookie high in esi and cookie low in ebp.
        let ch = if ok {
            self.lookup(id, regs.esi, regs.ebp)
        } else {
            None
        };
        match ch {
            Some(Channel {
                phase: Phase::HostSending { msg, pos },
                ..
            }) if count <= msg.len() - *pos => {
                let start = *pos;
                *pos += count;
                out.ebx = halves(status::SUCCESS, lo(regs.ebx));
                out.ecx = 0;
                let data = HbIn {
                    msg: msg.clone(),
                    start,
                    len: count,
                };
                (out, Some(data))
            }
            _ => {
                out.ebx = halves(fail(), lo(regs.ebx));
                (out, None)
            }
        }
    }

    /// Close every channel `owner` opened (its connection or process went away).
    pub fn close_owned_by(&mut self, owner: u64, sink: &mut dyn MessageSink) -> usize {
        let mut n = 0;
        for i in 0..self.slots.len() {
            if matches!(&self.slots[i], Some(c) if c.owner == owner) {
                let r = self.chan_ref(i as u16);
                self.slots[i] = None;
                n += 1;
                if let Some(r) = r {
                    sink.closed(r);
                }
            }
        }
        self.trim();
        n
    }

    /// Close every channel (VM reset or power off).
    pub fn reset(&mut self, sink: &mut dyn MessageSink) {
        for i in 0..self.slots.len() {
            if let Some(r) = self.chan_ref(i as u16) {
                self.slots[i] = None;
                sink.closed(r);
            }
        }
        self.slots.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::{Backdoor, GuestChannel, TransportError};
    use crate::{cmd, BDOOR_MAGIC, BDOOR_PORT};

    /// Answers RPCI with "1 " + the message; TCLO with nothing.
    #[derive(Debug, Default)]
    struct Echo {
        opened: usize,
        closed: usize,
    }

    impl MessageSink for Echo {
        fn message(&mut self, chan: ChannelRef, msg: &[u8]) -> HostMessage {
            if chan.proto == proto::TCLO {
                return HostMessage::default();
            }
            HostMessage::with_tail(b"1 ".to_vec(), Arc::from(msg))
        }
        fn opened(&mut self, _: ChannelRef) {
            self.opened += 1;
        }
        fn closed(&mut self, _: ChannelRef) {
            self.closed += 1;
        }
    }

    /// The guest channel wired straight to a host table.
    #[derive(Debug)]
    struct Loop<'a> {
        table: &'a mut ChannelTable,
        sink: Echo,
        owner: u64,
    }

    impl Backdoor for Loop<'_> {
        fn call(&mut self, regs: Regs) -> Result<Regs, TransportError> {
            assert_eq!(lo(regs.ecx), cmd::MESSAGE);
            Ok(self.table.message(regs, self.owner, &mut self.sink))
        }
        fn hb_out(&mut self, regs: Regs, data: &[u8]) -> Result<Regs, TransportError> {
            Ok(self.table.hb_out(regs, data, &mut self.sink))
        }
        fn hb_in(&mut self, regs: Regs, buf: &mut [u8]) -> Result<Regs, TransportError> {
            let (out, data) = self.table.hb_in(regs, buf.len());
            if let Some(d) = data {
                let (a, b) = d.slices();
                buf[..a.len()].copy_from_slice(a);
                buf[a.len()..].copy_from_slice(b);
            }
            Ok(out)
        }
    }

    fn table() -> ChannelTable {
        ChannelTable::new(HostLimits::default(), 42)
    }

    #[test]
    fn round_trip_hb_and_lb() {
        let mut t = table();
        for hb in [true, false] {
            let lp = Loop {
                table: &mut t,
                sink: Echo::default(),
                owner: 1,
            };
            let mut ch = GuestChannel::open(lp, proto::RPCI).unwrap();
            ch.set_high_bandwidth(hb);
            let msg: Vec<u8> = (0..10_001u32).map(|i| (i % 251) as u8).collect();
            let reply = ch.call(&msg).unwrap().to_vec();
            assert_eq!(&reply[..2], b"1 ");
            assert_eq!(&reply[2..], &msg[..]);
            ch.close().unwrap();
        }
        assert_eq!(t.open_count(), 0);
    }

    #[test]
    fn tclo_idle_poll_has_nothing_to_receive() {
        let mut t = table();
        let lp = Loop {
            table: &mut t,
            sink: Echo::default(),
            owner: 1,
        };
        let mut ch = GuestChannel::open(lp, proto::TCLO).unwrap();
        assert_eq!(ch.call(b"").unwrap(), b"");
    }

    fn open(t: &mut ChannelTable, owner: u64, flags: u32) -> Regs {
        let mut r = Regs::command(cmd::MESSAGE, proto::RPCI | flags);
        r.ecx = halves(msg_type::OPEN, cmd::MESSAGE);
        t.message(r, owner, &mut NullSink)
    }

    #[test]
    fn cookies_are_checked() {
        let mut t = table();
        let out = open(&mut t, 1, GUESTMSG_FLAG_COOKIE);
        assert_eq!(hi(out.ecx), status::SUCCESS);
        assert_ne!((out.esi, out.edi), (0, 0));
        let mut r = Regs::command(cmd::MESSAGE, 4);
        r.ecx = halves(msg_type::SENDSIZE, cmd::MESSAGE);
        r.edx = halves(hi(out.edx), BDOOR_PORT);
        r.esi = out.esi;
        r.edi = out.edi ^ 1;
        assert_eq!(
            hi(t.message(r, 1, &mut NullSink).ecx),
            0,
            "wrong cookie must fail"
        );
        r.edi = out.edi;
        assert_eq!(
            hi(t.message(r, 1, &mut NullSink).ecx),
            status::SUCCESS | status::HB
        );
        // HB out with the LB cookie layout (ebp missing) fails too.
        let hb = Regs {
            eax: BDOOR_MAGIC,
            ebx: halves(status::SUCCESS, 0),
            ecx: 4,
            edx: halves(hi(out.edx), crate::BDOORHB_PORT),
            esi: out.esi,
            edi: out.edi,
            ebp: 0,
        };
        assert_eq!(hi(t.hb_out(hb, b"abcd", &mut NullSink).ebx), 0);
    }

    #[test]
    fn channel_limit_and_owner_cleanup() {
        let mut t = table();
        let mut ok = 0;
        for _ in 0..200 {
            if hi(open(&mut t, 7, GUESTMSG_FLAG_COOKIE).ecx) & status::SUCCESS != 0 {
                ok += 1;
            }
        }
        assert_eq!(ok, GUESTMSG_MAX_CHANNEL);
        assert_eq!(hi(open(&mut t, 8, 0).ecx), 0, "table full");
        let mut sink = Echo::default();
        assert_eq!(t.close_owned_by(7, &mut sink), GUESTMSG_MAX_CHANNEL);
        assert_eq!(sink.closed, GUESTMSG_MAX_CHANNEL);
        assert_eq!(hi(open(&mut t, 8, 0).ecx), status::SUCCESS);
    }

    #[test]
    fn oversize_and_out_of_order_fail_cleanly() {
        let mut t = table();
        let out = open(&mut t, 1, 0);
        let id = hi(out.edx);
        let call = |t: &mut ChannelTable, sub: u16, ebx: u32| {
            let mut r = Regs::command(cmd::MESSAGE, ebx);
            r.ecx = halves(sub, cmd::MESSAGE);
            r.edx = halves(id, BDOOR_PORT);
            hi(t.message(r, 1, &mut NullSink).ecx)
        };
        assert_eq!(
            call(
                &mut t,
                msg_type::SENDSIZE,
                (GUESTMSG_MAX_IN_SIZE + 1) as u32
            ),
            0
        );
        assert_eq!(
            call(&mut t, msg_type::SENDPAYLOAD, 0),
            0,
            "no message announced"
        );
        assert_eq!(
            call(&mut t, msg_type::RECVPAYLOAD, 1),
            0,
            "nothing to receive"
        );
        assert_eq!(call(&mut t, msg_type::RECVSTATUS, 1), 0);
        assert_eq!(call(&mut t, 99, 0), 0, "unknown subcommand");
        assert_eq!(
            call(&mut t, msg_type::SENDSIZE, GUESTMSG_MAX_IN_SIZE as u32) & status::SUCCESS,
            status::SUCCESS
        );
        assert_eq!(call(&mut t, msg_type::RECVSIZE, 0), 0, "send not finished");
        // channel that does not exist
        let mut r = Regs::command(cmd::MESSAGE, 0);
        r.ecx = halves(msg_type::SENDSIZE, cmd::MESSAGE);
        r.edx = halves(99, BDOOR_PORT);
        assert_eq!(hi(t.message(r, 1, &mut NullSink).ecx), 0);
        // unknown protocol
        let mut r = Regs::command(cmd::MESSAGE, 0x1234_5678);
        r.ecx = halves(msg_type::OPEN, cmd::MESSAGE);
        assert_eq!(hi(t.message(r, 1, &mut NullSink).ecx), 0);
    }

    #[test]
    fn host_message_ranges() {
        let m = HostMessage::with_tail(b"1 ".to_vec(), Arc::from(&b"abc"[..]));
        assert_eq!(m.len(), 5);
        assert_eq!(m.range(0, 5), (&b"1 "[..], &b"abc"[..]));
        assert_eq!(m.range(1, 2), (&b" "[..], &b"a"[..]));
        assert_eq!(m.range(3, 2), (&b""[..], &b"bc"[..]));
        assert_eq!(m.to_vec(), b"1 abc");
    }
}
